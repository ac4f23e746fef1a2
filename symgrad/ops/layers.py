"""Parameter-free layer kinds by name: what ``kind = "..."`` in a spec's ``[[layers]]`` may say besides dense."""

from symgrad.errors import ExpressionError
from symgrad.ops.base import Layer
from symgrad.ops.softmax import Softmax

LAYERS = {"softmax": Softmax}


def register_layer(cls):
    """Make ``cls`` (a :class:`~symgrad.ops.base.Layer` subclass) usable as ``kind = cls.kind``; returns cls."""
    if not (isinstance(cls, type) and issubclass(cls, Layer)) or not str(cls.kind).isidentifier():
        raise ValueError("register a Layer subclass with an identifier as its kind")
    if cls.kind in LAYERS or cls.kind == "dense":
        raise ValueError(f"layer kind {cls.kind!r} is taken")
    LAYERS[cls.kind] = cls
    return cls


def get_layer(kind, name, neurons=None):
    """A parameter-free layer of the given kind."""
    if kind not in LAYERS:
        raise ExpressionError(f"unknown layer kind {kind!r} (dense, {', '.join(LAYERS)})")
    return LAYERS[kind](name, neurons)
