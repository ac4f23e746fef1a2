"""Parameter-free layer kinds by name: what ``kind = "..."`` in a spec's ``[[layers]]`` may say besides dense."""

from symgrad.errors import ExpressionError
from symgrad.ops.base import Layer
from symgrad.ops.conv import Conv1d, Conv2d
from symgrad.ops.pool import AvgPool1d, AvgPool2d, MaxPool1d, MaxPool2d
from symgrad.ops.recurrent import GRU, LSTM, RNN
from symgrad.ops.shape import Add, Concat, Flatten, Transpose
from symgrad.ops.softmax import Softmax

LAYERS = {"softmax": Softmax}
# layers on shaped values (graph networks): kind -> TensorOp subclass
TENSOR_LAYERS = {c.kind: c for c in (Conv1d, Conv2d, MaxPool1d, MaxPool2d, AvgPool1d, AvgPool2d, Flatten, Add, Concat,
                                     Transpose, RNN, LSTM, GRU)}


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
        raise ExpressionError(f"unknown layer kind {kind!r} (dense, {', '.join(list(LAYERS) + list(TENSOR_LAYERS))})")
    return LAYERS[kind](name, neurons)
