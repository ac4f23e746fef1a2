"""The model classes: what a spec describes, checked on construction.

* :class:`Network` — layers in order (``net = W a + b``, ``out = f(net)``) and a loss;
* :class:`ExpressionModel` — output expressions of named inputs and named scalar parameters.

Every check raises :class:`~symgrad.errors.SpecError` naming the key and the problem.
"""

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from symgrad.checks import (
    INIT_SCHEMES,
    check_model_name,
    check_name,
    choice_message,
    finite_array,
    input_names,
    names,
    unit_names,
)
from symgrad.errors import ExpressionError, SpecError
from symgrad.limits import check, check_expression
from symgrad.ops.base import Layer
from symgrad.ops.dense import Dense, Param
from symgrad.ops.functions import stabilize
from symgrad.ops.losses import get_loss
from symgrad.ops.losses import y as LOSS_Y
from symgrad.ops.parse import parse_expression
from symgrad.spec.config import Sample, TrainConfig


def loss_or_error(**kw):
    """get_loss, its refusal as a SpecError on the key 'loss'."""
    try:
        return get_loss(**kw)
    except ExpressionError as exc:
        raise SpecError(str(exc), "loss") from None


@dataclass
class _ModelBase:
    def _finish_common(self):
        check_model_name(self.name)
        if self.loss is None:
            raise SpecError("a loss is required", "loss")
        self._check_sample()
        self._check_expects()

    def _check_sample(self):
        if self.sample is None:
            return
        s = self.sample
        if not isinstance(s, Sample):
            raise SpecError("sample must be a Sample", "sample")
        if s.x is None:
            if s.seed is None:
                raise SpecError("give x (and t), or a seed for a random sample", "sample.x")
            if isinstance(s.seed, bool) or not isinstance(s.seed, int) or s.seed < 0:
                raise SpecError(f"seed must be a non-negative integer, got {s.seed!r}", "sample.seed")
            rng = np.random.default_rng(s.seed)
            s.x = rng.uniform(0.0, 1.0, len(self.inputs))
            if s.t is None:
                s.t = np.eye(len(self.outputs))[rng.integers(len(self.outputs))]
        s.x = finite_array(s.x, "sample.x", (len(self.inputs),))
        if s.t is not None:
            s.t = finite_array(s.t, "sample.t", (len(self.outputs),))
        elif self.loss.uses_target:
            raise SpecError("the loss uses targets t, so the sample needs t", "sample.t")

    def _check_expects(self):
        for k, e in enumerate(self.expects):
            key = f"expect[{k}]"
            if e.what not in ("gradient", "output", "loss", "value", "updated"):
                raise SpecError(f"what must be gradient, output, loss, value or updated, got {e.what!r}", f"{key}.what")
            if not isinstance(e.value, (int, float)) or not math.isfinite(e.value):
                raise SpecError("value must be a finite number", f"{key}.value")
            if e.what != "loss" and not e.name:
                raise SpecError(f"a {e.what} check needs a name", f"{key}.name")

    def __repr__(self):  # the dataclass repr of every layer and parameter array is kilobytes long
        return f"<{type(self).__name__} {self.name!r}: {self.describe()}>"

    def _check_layers_and_init(self):
        """A network's layer list and its [init] scheme and seed."""
        if not isinstance(self.layers, (list, tuple)) or not self.layers:
            raise SpecError("at least one layer is required", "layers")
        if self.init not in INIT_SCHEMES:
            raise SpecError(choice_message("init scheme", self.init, INIT_SCHEMES), "init.scheme")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise SpecError("seed must be a non-negative integer", "init.seed")

    @property
    def n_inputs(self):
        return len(self.inputs)

    @property
    def n_outputs(self):
        return len(self.outputs)

    @property
    def param_names(self):
        return tuple(p.name for p in self.params)

    @property
    def trainable_params(self):
        return tuple(p for p in self.params if p.trainable)

    def scalar_owner(self):
        """Map scalar name -> (param name, flat index)."""
        owner = {}
        for p in self.params:
            for k, s in enumerate(p.scalar_names):
                owner[s] = (p.name, k)
        return owner

    def init_params(self):
        """The parameter values: given values, or the seeded scheme (the same draws the generated module makes)."""
        from symgrad.core.init import init_values

        return init_values(self)


@dataclass(repr=False)
class Network(_ModelBase):
    """Dense layers in order and a loss."""

    name: str
    inputs: object  # list of names or a count
    layers: list
    loss: object = None
    outputs: list | None = None
    sample: Sample | None = None
    init: str = "xavier"
    seed: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)
    expects: list = field(default_factory=list)
    description: str = ""
    source: str = "<python>"

    kind = "network"

    def __post_init__(self):
        self.inputs = input_names(self.inputs)
        self._check_layers_and_init()
        if isinstance(self.loss, str):
            self.loss = loss_or_error(kind=self.loss)
        self._build_layers()
        last = self.layers[-1]
        if self.outputs is None:
            self.outputs = list(last.neurons)
        else:
            if len(self.outputs) != last.units:
                raise SpecError(f"{len(self.outputs)} output names for {last.units} output units", "outputs")
            self.outputs = [check_name(n, f"outputs[{k}]", "output name") for k, n in enumerate(self.outputs)]
        for k, layer in enumerate(self.layers[:-1]):
            if isinstance(layer, Dense) and layer.activation.is_layer:
                raise SpecError(f"{layer.activation.kind} is only allowed on the output layer", f"layers[{k}].activation")
        last_op = last if isinstance(last, Layer) else last.activation
        if self.loss is not None and self.loss.needs_softmax and getattr(last_op, "kind", None) != "softmax":
            raise SpecError(f"loss {self.loss.name} needs a softmax output layer", "loss.kind")
        if self.loss is not None and not last_op.is_layer:  # the derivation simplifies dl/dy * f'(net)
            check_expression(sp.diff(self.loss.expr, LOSS_Y) * last_op.derivative_in_out(),
                             "loss.expression" if self.loss.name == "custom" else "loss")
        self._finish_common()
        self._check_unique_names()

    def _build_layers(self):
        """Check each layer and build the checked copies (the given Dense objects are not changed) and the params."""
        fan_in = len(self.inputs)
        self.params, built, n_params = [], [], 0
        taken = set(self.inputs) | set(self.outputs or ()) | {str(getattr(d, "name", "")) for d in self.layers}
        taken |= {str(n) for d in self.layers for n in (getattr(d, "neurons", None) or ())}
        for k, d in enumerate(self.layers):
            key = f"layers[{k}]"
            if not isinstance(d, (Dense, Layer)):
                raise SpecError("each layer must be a Dense or a parameter-free layer (symgrad.ops.base.Layer)", key)
            check_name(d.name, f"{key}.name", "layer name")
            if any(b.name == d.name for b in built):
                raise SpecError(f"layer name {d.name!r} is used twice", f"{key}.name")
            if isinstance(d, Dense) and d.input is not None:
                raise SpecError("input names a layer to read in a graph network (GraphNetwork); a Network is a chain",
                                f"{key}.input")
            if isinstance(d, Layer):
                layer = copy.copy(d)
                layer.units = d.units(fan_in)
                layer.neurons = names(d.neurons, layer.units, f"{key}.neurons", unit_names(d.name, layer.units, taken))
                params = []
            else:
                n_params += d.units * fan_in + (d.units if d.bias == "unit" else 1) if isinstance(d.units, int) else 0
                check("SYMGRAD_MAX_PARAMS", n_params, f"the parameter count up to layer {d.name!r}", f"{key}.units")
                layer, params = d.build(key, fan_in, self.init, taken)
            self.params += params
            built.append(layer)
            fan_in = layer.units
        self.layers = built

    def _check_unique_names(self):
        seen = {}
        groups = [("inputs", self.inputs), ("outputs", self.outputs)]
        for k, d in enumerate(self.layers):
            groups.append((f"layers[{k}].name", [d.name]))
            groups.append((f"layers[{k}].neurons", d.neurons if k < len(self.layers) - 1 else []))
        for p in self.params:
            groups.append((p.name, p.scalar_names))
        for key, group in groups:
            for s in group:
                if s in seen:
                    raise SpecError(f"name {s!r} is used twice (also in {seen[s]})", key)
                seen[s] = key
        last = self.layers[-1]
        if self.outputs != list(last.neurons):
            for s in last.neurons:
                if s in seen and seen[s] != "outputs":
                    raise SpecError(f"name {s!r} is used twice (also in {seen[s]})", f"layers[{len(self.layers) - 1}].neurons")

    def layer_params(self, k):
        """(weight Param, bias Param or None) of layer k; (None, None) for a parameter-free layer."""
        name = self.layers[k].name
        by = {p.name: p for p in self.params}
        return by.get(f"{name}.weight"), by.get(f"{name}.bias")

    def describe(self):
        sizes = "-".join(str(n) for n in [self.n_inputs] + [d.units for d in self.layers])
        acts = ", ".join(f"{d.name}: {d.kind if isinstance(d, Layer) else d.activation.name}" for d in self.layers)
        return f"{sizes} network ({acts}), loss {self.loss.name} ({self.loss.reduction} over the batch)"


@dataclass(repr=False)
class ExpressionModel(_ModelBase):
    """Output expressions of named inputs and named scalar parameters."""

    name: str
    inputs: list
    outputs_expr: object  # {output name: expression} or a single expression
    params_init: dict = field(default_factory=dict)  # name -> value
    loss: object = None
    freeze: tuple = ()
    sample: Sample | None = None
    train: TrainConfig = field(default_factory=TrainConfig)
    expects: list = field(default_factory=list)
    description: str = ""
    source: str = "<python>"

    kind = "expression"

    def __post_init__(self):
        self.inputs = input_names(self.inputs)
        if not isinstance(self.params_init, dict) or not self.params_init:
            raise SpecError("at least one parameter is required", "expression.params")
        for n, v in self.params_init.items():
            check_name(n, f"expression.params.{n}", "parameter name")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise SpecError("parameter values must be finite numbers", f"expression.params.{n}")
        self.symbols = {n: sp.Symbol(n, real=True) for n in list(self.inputs) + list(self.params_init)}
        if len(self.symbols) != len(self.inputs) + len(self.params_init):
            dup = sorted(set(self.inputs) & set(self.params_init))
            raise SpecError(f"name {dup[0]!r} is both an input and a parameter", "expression.params")
        single = not isinstance(self.outputs_expr, dict)  # output = "..." (named y), located at its own key
        if single:
            self.outputs_expr = {"y": self.outputs_expr}
        if not self.outputs_expr:
            raise SpecError("at least one output expression is required", "expression.outputs")
        exprs = {}
        self.rewrites = []
        for n, e in self.outputs_expr.items():
            key = "expression.output" if single else f"expression.outputs.{n}"
            check_name(n, key, "output name")
            if n in self.symbols:
                hint = " (output = \"...\" names its output y: use [expression.outputs] to name it)" if n == "y" else ""
                raise SpecError(f"output name {n!r} is also an input or parameter{hint}", key)
            try:
                if isinstance(e, sp.Basic):
                    bad = {s.name for s in e.free_symbols} - set(self.symbols)
                    if bad:
                        raise ExpressionError(f"unknown name(s) {', '.join(sorted(bad))}")
                    e = e.subs({s: self.symbols[s.name] for s in e.free_symbols})
                else:
                    e = parse_expression(e, self.symbols)
            except ExpressionError as exc:
                raise SpecError(str(exc), key) from None
            e, notes = stabilize(sp.sympify(e))
            self.rewrites += [f"{n}: {note}" for note in notes]
            if any(sp.diff(e, self.symbols[p]).has(sp.Derivative, sp.Subs, sp.DiracDelta) for p in self.params_init):
                raise SpecError("expression has no usable derivative with respect to its parameters", key)
            exprs[n] = e
        self.outputs_expr = exprs
        self.outputs = list(exprs)
        if isinstance(self.loss, str):
            self.loss = loss_or_error(kind=self.loss)
        if self.loss is not None and self.loss.needs_softmax:
            raise SpecError("softmax cross-entropy needs a network with a softmax output layer", "loss.kind")
        if isinstance(self.freeze, str) or not all(isinstance(f, str) for f in self.freeze):
            raise SpecError("freeze lists parameter names (strings)", "expression.freeze")
        frozen = set(self.freeze)
        if frozen - set(self.params_init):
            raise SpecError(f"unknown parameter(s) {', '.join(sorted(frozen - set(self.params_init)))}", "expression.freeze")
        self.params = [Param(n, (), np.array(float(v)), (n,), n not in frozen) for n, v in self.params_init.items()]
        self._finish_common()

    def describe(self):
        outs = "; ".join(f"{n} = {e}" for n, e in self.outputs_expr.items())
        return f"expression model {outs}, loss {self.loss.name}"
