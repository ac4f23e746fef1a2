"""The derivation of a model, computed once and shared by every backend, report and trainer."""

from functools import cached_property

from symgrad.core.derivation import derive_layers, derive_scalar, straight_line
from symgrad.core.graph import derive_graph
from symgrad.core.graph_scalar import graph_program
from symgrad.core.graph_scalar import small as small_graph
from symgrad.core.second import ScalarSecond, derive_second
from symgrad.sizes import SCALAR_LIMIT


class Derivation:
    """A model with its backward programs: neuron level (small models), layer level (networks), straight-line code."""

    def __init__(self, model):
        self.model = model

    @property
    def small(self):
        """Whether the model gets the neuron-level program (expression models, networks up to SCALAR_LIMIT,
        graph networks whose unrolled layers have up to GRAPH_SCALAR_TERMS terms)."""
        if self.model.kind == "graph":
            return small_graph(self.model)
        return self.model.kind == "expression" or sum(p.size for p in self.model.params) <= SCALAR_LIMIT

    @cached_property
    def scalar(self):
        """The neuron-level ScalarDerivation, or None for large networks."""
        if not self.small:
            return None
        return derive_scalar(graph_program(self.model) if self.model.kind == "graph" else self.model)

    @cached_property
    def layers(self):
        """The array-level LayerDerivation of a network (None for expression models)."""
        return derive_layers(self.model) if self.model.kind == "network" else None

    @cached_property
    def graph(self):
        """The GraphDerivation of a graph network (None for other models)."""
        return derive_graph(self.model) if self.model.kind == "graph" else None

    @cached_property
    def straight(self):
        """The neuron-level program as CSE'd straight-line assignments."""
        return straight_line(self.scalar)

    def __repr__(self):
        m = self.model
        scalars = [s for p in m.trainable_params for s in p.scalar_names]
        if len(scalars) <= 12:
            shown = ", ".join(scalars)
        else:
            shown = ", ".join(f"{p.name} {p.shape}" for p in m.trainable_params) + f" ({len(scalars)} scalars)"
        return f"<Derivation of {m.name!r}: {m.describe()}; gradients of {shown or 'nothing (all frozen)'}>"

    @cached_property
    def second(self):
        """The layer-level second-order expressions (LayerSecond) of a network (None for expression models)."""
        return derive_second(self.layers) if self.layers is not None else None

    @cached_property
    def scalar_second(self):
        """Second partials over the neuron-level derivation (ScalarSecond)."""
        self._param("", "second partials")
        return ScalarSecond(self.scalar)

    def _param(self, name, what="per-parameter symbolic gradients"):
        if self.scalar is None:
            raise ValueError(f"{self.model.name} is too large for {what}")
        if not name:
            return None
        sym = next((s for s in self.scalar.grads if s.name == name), None)
        if sym is None:
            raise KeyError(f"no trainable scalar parameter {name!r}")
        return sym

    def gradient(self, name, form="factored"):
        """The exact dE/d(name) of a scalar parameter as a SymPy expression ('factored' or 'expanded')."""
        sym = self._param(name)
        return self.scalar.factored(sym) if form == "factored" else self.scalar.expanded(sym)

    def hessian(self, a, b, form="factored"):
        """The exact d^2E/(da db) of two trainable scalar parameters as SymPy ('factored' or 'expanded').

        'factored' is written in the forward steps' symbols (out_h1, out_o1, ...): the derivative of
        the factored dE/da along b, step by step; 'expanded' in inputs, targets and parameters only.
        """
        if form not in ("factored", "expanded"):
            raise ValueError(f"form must be 'factored' or 'expanded', got {form!r}")
        sa, sb = self._param(a, "symbolic second partials"), self._param(b, "symbolic second partials")
        second = self.scalar_second
        return second.factored(sa, sb) if form == "factored" else second.expanded(sa, sb)


def derive(model, cls=Derivation):
    """The model's Derivation: computed once per model object and shared by every consumer.

    ``cls`` may be a subclass (the API's adds Jupyter displays); it takes over what was computed.
    """
    cached = model.__dict__.get("_derivation")
    if not isinstance(cached, cls):
        fresh = cls(model)
        if cached is not None:
            fresh.__dict__.update({k: v for k, v in cached.__dict__.items() if k != "model"})
        cached = model.__dict__["_derivation"] = fresh
    return cached
