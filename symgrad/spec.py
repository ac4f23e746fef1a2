"""Model descriptions: the Python objects, and their loading and checking from TOML files.

Two kinds of model:

* :class:`Network` — dense layers in order (``net = W a + b``, ``out = f(net)``) and a loss;
* :class:`ExpressionModel` — output expressions of named inputs and named scalar parameters.

Every check raises :class:`~symgrad.errors.SpecError` naming the key and the problem; the loader
adds the file and, where it can find it, the line.
"""

import difflib
import keyword
import math
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sympy as sp

from .activations import get_activation
from .errors import SpecError
from .functions import stabilize
from .limits import check, check_expression, limit
from .losses import get_loss
from .losses import y as LOSS_Y
from .safe_expr import ExpressionError, parse_expression

INIT_SCHEMES = ("xavier", "he", "uniform", "zeros")
BIAS_MODES = ("unit", "shared", "none")
C_KEYWORDS = frozenset(
    "auto break case char const continue default do double else enum extern float for goto if inline int long "
    "register restrict return short signed sizeof static struct switch typedef union unsigned void volatile while "
    "_Bool _Complex _Imaginary".split()
)
# a model name is a module name, a C prefix and a header file name: it must not shadow what generated code imports
MODEL_RESERVED = frozenset(
    "np numpy math ctypes functools generated symgrad main "
    "assert complex ctype errno fenv float inttypes iso646 limits locale setjmp signal stdarg stdbool stddef stdint "
    "stdio stdlib string tgmath time wchar wctype stdalign stdnoreturn threads uchar stdatomic".split()
)


def check_name(name, key, what="name"):
    """A user name (input, parameter, neuron, output, layer): any identifier that starts with a letter.

    Generated code never uses a user name where it could mean something else: symgrad.symbols maps
    names that Python or C reserve to other identifiers, and reports keep the name as written.
    """
    if not isinstance(name, str):
        raise SpecError(f"{what} must be a string, got {type(name).__name__}", key)
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
        raise SpecError(f"{what} {name!r} is not an identifier (letters, digits and _; starting with a letter)", key)
    if len(name) > 63:
        raise SpecError(f"{what} {name!r} is longer than 63 characters", key)
    return name


def check_model_name(name, key="name"):
    """A model name also names the generated module, its C functions and header: keywords and shadowing names are refused."""
    check_name(name, key, "model name")
    if keyword.iskeyword(name) or name in C_KEYWORDS:
        raise SpecError(f"model name {name!r} is a Python or C keyword (try {name}_model)", key)
    if name.lower().startswith("symgrad") or name in MODEL_RESERVED:
        raise SpecError(f"model name {name!r} would shadow a module or header that generated code uses "
                        f"(try {name}_model)", key)
    return name


def _input_names(inputs):
    """Input names from a list of names, or from a count n (x1..xn)."""
    if isinstance(inputs, bool) or not isinstance(inputs, (int, list, tuple)):
        raise SpecError("inputs must be a count or a list of names", "inputs")
    if isinstance(inputs, int):
        if inputs < 1:
            raise SpecError("inputs must be at least 1", "inputs")
        check("SYMGRAD_MAX_PARAMS", inputs, "the number of inputs", "inputs")
        inputs = [f"x{k + 1}" for k in range(inputs)]
    names = [check_name(n, f"inputs[{k}]", "input name") for k, n in enumerate(inputs)]
    if not names:
        raise SpecError("at least one input is required", "inputs")
    for k, n in enumerate(names):
        if n in names[:k]:
            raise SpecError(f"input name {n!r} is used twice", "inputs")
    return names


def _check_numbers(value, key):
    """Refuse anything but numbers in a (nested) list: booleans and numeric strings are not numbers."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, np.ndarray):
            if v.dtype.kind not in "fiu":
                raise SpecError(f"expected numbers, got an array of {v.dtype}", key)
        elif isinstance(v, (list, tuple)):
            stack.extend(reversed(v))
        elif isinstance(v, (bool, np.bool_)):
            raise SpecError(f"expected numbers, got the boolean {str(bool(v)).lower()}", key)
        elif not isinstance(v, (int, float, np.integer, np.floating)):
            what = f"the string {v!r} (write numbers without quotes)" if isinstance(v, str) else f"{type(v).__name__} {v!r}"
            raise SpecError(f"expected numbers, got {what}", key)


def _finite_array(value, key, shape=None):
    _check_numbers(value, key)
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise SpecError("expected numbers", key) from None
    if arr.dtype == object:
        raise SpecError("expected a rectangular array of numbers", key)
    if not np.all(np.isfinite(arr)):
        raise SpecError("numbers must be finite (no nan or inf)", key)
    if shape is not None and arr.shape != tuple(shape):
        raise SpecError(f"expected shape {tuple(shape)}, got {arr.shape}", key)
    return arr


@dataclass(frozen=True)
class Param:
    """One parameter tensor: its PyTorch-style name, shape, value, scalar names and whether it trains."""

    name: str
    shape: tuple
    value: np.ndarray | None  # None: drawn by the init scheme
    scalar_names: tuple  # flat, row-major, one per entry
    trainable: bool
    init: str = "zeros"  # scheme used when value is None
    fan_in: int = 1
    fan_out: int = 1

    @property
    def size(self):
        return int(np.prod(self.shape)) if self.shape else 1


@dataclass
class Dense:
    """A dense layer: ``net = W a + b``, ``out = f(net)``; W has rows = units, columns = inputs."""

    name: str
    units: int
    activation: object = "identity"
    activation_params: dict | None = None
    weight: object = None
    bias: str = "unit"
    bias_value: object = None
    neurons: list | None = None
    weight_names: list | None = None
    bias_names: list | None = None
    freeze: tuple = ()
    init: str | None = None


@dataclass
class Sample:
    """The worked-example sample: one input row and its target row."""

    x: np.ndarray | None
    t: np.ndarray | None
    seed: int | None = None  # with no x given: x ~ U(0, 1) and a one-hot t, drawn from this seed


@dataclass
class Expect:
    """A value a text claims (a gradient, output, loss, or forward value) that checks confirm or refute."""

    what: str  # gradient | output | loss | value
    name: str | None
    value: float
    rel_tol: float = 1e-6
    abs_tol: float = 0.0
    source: str = ""


OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw")
SCHEDULES = ("constant", "step", "exponential", "cosine")


@dataclass
class TrainConfig:
    """Optimizer settings the spec gives (used by reports' update step and by training).

    ``optimizer`` is sgd, momentum (sgd with ``momentum`` > 0), nesterov (momentum with the
    look-ahead), adam or adamw; ``sgd`` with ``momentum`` > 0 (and ``nesterov``) means the same as
    torch.optim.SGD. Schedules count optimizer steps: lr(k) after k steps.
    """

    learning_rate: float = 0.1
    optimizer: str = "sgd"
    momentum: float = 0.0
    nesterov: bool = False
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    schedule: str = "constant"
    step_size: int = 1
    gamma: float = 0.1
    total_steps: int = 1000
    min_lr: float = 0.0
    epochs: int = 10
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise SpecError(_choice_msg("optimizer", self.optimizer, OPTIMIZERS), "train.optimizer")
        if self.schedule not in SCHEDULES:
            raise SpecError(_choice_msg("schedule", self.schedule, SCHEDULES), "train.schedule")
        for key, lo, hi, closed in (("learning_rate", 0, math.inf, False), ("momentum", 0, 1, True), ("beta1", 0, 1, True),
                                    ("beta2", 0, 1, True), ("eps", 0, math.inf, False), ("weight_decay", 0, math.inf, True),
                                    ("gamma", 0, math.inf, False), ("min_lr", 0, math.inf, True)):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not (
                    (lo <= v if closed else lo < v) and v < hi):
                where = f"{'[' if closed else '('}{lo}, {hi})".replace("inf", "infinity")
                raise SpecError(f"{key} must be a number in {where}, got {v!r}", f"train.{key}")
        for key in ("step_size", "total_steps", "epochs", "batch_size"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise SpecError(f"{key} must be a positive integer, got {v!r}", f"train.{key}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise SpecError(f"seed must be a non-negative integer, got {self.seed!r}", "train.seed")
        if not isinstance(self.nesterov, bool):
            raise SpecError("nesterov must be true or false", "train.nesterov")
        if self.optimizer in ("momentum", "nesterov") and self.momentum == 0:
            raise SpecError(f"optimizer {self.optimizer!r} needs momentum > 0", "train.momentum")
        if self.nesterov and (self.optimizer not in ("sgd", "nesterov") or self.momentum == 0):
            raise SpecError("nesterov needs optimizer sgd (or nesterov) and momentum > 0", "train.nesterov")

    @property
    def kind(self):
        """The update rule: sgd, momentum, nesterov, adam or adamw."""
        if self.optimizer == "sgd" and self.momentum > 0:
            return "nesterov" if self.nesterov else "momentum"
        return self.optimizer


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
        s.x = _finite_array(s.x, "sample.x", (len(self.inputs),))
        if s.t is not None:
            s.t = _finite_array(s.t, "sample.t", (len(self.outputs),))
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
        from .init import init_values

        return init_values(self)


@dataclass
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
        self.inputs = _input_names(self.inputs)
        if not isinstance(self.layers, (list, tuple)) or not self.layers:
            raise SpecError("at least one layer is required", "layers")
        if self.init not in INIT_SCHEMES:
            raise SpecError(_choice_msg("init scheme", self.init, INIT_SCHEMES), "init.scheme")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise SpecError("seed must be a non-negative integer", "init.seed")
        if isinstance(self.loss, str):
            self.loss = _loss_or_error(kind=self.loss)
        self._build_layers()
        last = self.layers[-1]
        if self.outputs is None:
            self.outputs = list(last.neurons)
        else:
            if len(self.outputs) != last.units:
                raise SpecError(f"{len(self.outputs)} output names for {last.units} output units", "outputs")
            self.outputs = [check_name(n, f"outputs[{k}]", "output name") for k, n in enumerate(self.outputs)]
        for k, layer in enumerate(self.layers):
            if layer.activation.is_softmax and k != len(self.layers) - 1:
                raise SpecError("softmax is only allowed on the output layer", f"layers[{k}].activation")
        if self.loss is not None and self.loss.needs_softmax and not last.activation.is_softmax:
            raise SpecError(f"loss {self.loss.name} needs a softmax output layer", "loss.kind")
        if self.loss is not None and not last.activation.is_softmax:  # the derivation simplifies dl/dy * f'(net)
            check_expression(sp.diff(self.loss.expr, LOSS_Y) * last.activation.derivative_in_out(),
                             "loss.expression" if self.loss.name == "custom" else "loss")
        self._finish_common()
        self._check_unique_names()

    def _build_layers(self):
        fan_in = len(self.inputs)
        self.params = []
        built = []
        n_params = 0
        for k, d in enumerate(self.layers):
            key = f"layers[{k}]"
            if not isinstance(d, Dense):
                raise SpecError("each layer must be a Dense", key)
            check_name(d.name, f"{key}.name", "layer name")
            if any(b.name == d.name for b in built):
                raise SpecError(f"layer name {d.name!r} is used twice", f"{key}.name")
            if isinstance(d.units, bool) or not isinstance(d.units, int) or d.units < 1:
                raise SpecError("units must be a positive integer", f"{key}.units")
            n_params += d.units * fan_in + (d.units if d.bias == "unit" else 1)
            check("SYMGRAD_MAX_PARAMS", n_params, f"the parameter count up to layer {d.name!r}", f"{key}.units")
            try:
                d.activation = get_activation(d.activation, d.activation_params)
            except ExpressionError as exc:
                where = "activation_params" if str(exc).startswith("activation parameter") else "activation"
                raise SpecError(str(exc), f"{key}.{where}") from None
            if d.bias not in BIAS_MODES:
                raise SpecError(_choice_msg("bias", d.bias, BIAS_MODES), f"{key}.bias")
            d.neurons = self._names(d.neurons, d.units, f"{key}.neurons", [f"{d.name}{j + 1}" for j in range(d.units)])
            scheme = d.init or self.init
            if scheme not in INIT_SCHEMES:
                raise SpecError(_choice_msg("init scheme", scheme, INIT_SCHEMES), f"{key}.init")
            freeze = [d.freeze] if isinstance(d.freeze, str) else list(d.freeze)
            if not all(isinstance(f, str) for f in freeze):
                raise SpecError("freeze lists 'weight' and/or 'bias' (strings)", f"{key}.freeze")
            frozen = set(freeze)
            if frozen - {"weight", "bias"}:
                raise SpecError("freeze lists 'weight' and/or 'bias'", f"{key}.freeze")
            shape = (d.units, fan_in)
            weight = None if d.weight is None else _finite_array(d.weight, f"{key}.weight", shape)
            wnames = self._names(
                None if d.weight_names is None else _flatten_names(d.weight_names, shape, f"{key}.weight_names"),
                d.units * fan_in, f"{key}.weight_names",
                [f"{d.name}_w{j + 1}_{i + 1}" for j in range(d.units) for i in range(fan_in)],
            )
            self.params.append(Param(f"{d.name}.weight", shape, weight, tuple(wnames), "weight" not in frozen,
                                     scheme, fan_in, d.units))
            if d.bias != "none":
                bshape = (d.units,) if d.bias == "unit" else ()
                bias = None
                if d.bias_value is not None:
                    bias = _finite_array(d.bias_value, f"{key}.bias_value")
                    if bias.shape == () and bshape == (d.units,):
                        bias = np.full(bshape, float(bias))
                    if bias.shape != bshape:
                        raise SpecError(f"expected {'one number' if not bshape else f'{d.units} numbers'}, got shape {bias.shape}",
                                        f"{key}.bias_value")
                n = d.units if d.bias == "unit" else 1
                default = [f"{d.name}_b{j + 1}" for j in range(n)] if n > 1 else [f"{d.name}_b"]
                bnames = self._names(d.bias_names, n, f"{key}.bias_names", default)
                self.params.append(Param(f"{d.name}.bias", bshape, bias, tuple(bnames), "bias" not in frozen,
                                         "zeros", fan_in, d.units))
            elif d.bias_value is not None or "bias" in frozen:
                raise SpecError("the layer has bias = \"none\"", f"{key}.bias_value" if d.bias_value is not None else f"{key}.freeze")
            built.append(d)
            fan_in = d.units
        self.layers = built

    @staticmethod
    def _names(names, n, key, default):
        if names is None:
            return default
        if isinstance(names, str):
            names = [names]
        if len(names) != n:
            raise SpecError(f"expected {n} names, got {len(names)}", key)
        return [check_name(s, f"{key}[{k}]") for k, s in enumerate(names)]

    def _check_unique_names(self):
        seen = {}
        groups = [("inputs", self.inputs), ("outputs", self.outputs)]
        for k, d in enumerate(self.layers):
            groups.append((f"layers[{k}].name", [d.name]))
            groups.append((f"layers[{k}].neurons", d.neurons if k < len(self.layers) - 1 else []))
        for p in self.params:
            groups.append((p.name, p.scalar_names))
        for key, names in groups:
            for s in names:
                if s in seen:
                    raise SpecError(f"name {s!r} is used twice (also in {seen[s]})", key)
                seen[s] = key
        last = self.layers[-1]
        if self.outputs != list(last.neurons):
            for s in last.neurons:
                if s in seen and seen[s] != "outputs":
                    raise SpecError(f"name {s!r} is used twice (also in {seen[s]})", f"layers[{len(self.layers) - 1}].neurons")

    def layer_params(self, k):
        """(weight Param, bias Param or None) of layer k."""
        name = self.layers[k].name
        by = {p.name: p for p in self.params}
        return by[f"{name}.weight"], by.get(f"{name}.bias")

    def describe(self):
        sizes = "-".join(str(n) for n in [self.n_inputs] + [d.units for d in self.layers])
        acts = ", ".join(f"{d.name}: {d.activation.name}" for d in self.layers)
        return f"{sizes} network ({acts}), loss {self.loss.name} ({self.loss.reduction} over the batch)"


@dataclass
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
        self.inputs = _input_names(self.inputs)
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
        if not isinstance(self.outputs_expr, dict):
            self.outputs_expr = {"y": self.outputs_expr}
        if not self.outputs_expr:
            raise SpecError("at least one output expression is required", "expression.outputs")
        exprs = {}
        self.rewrites = []
        for n, e in self.outputs_expr.items():
            key = f"expression.outputs.{n}"
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
            self.loss = _loss_or_error(kind=self.loss)
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


def _choice_msg(what, value, choices):
    close = difflib.get_close_matches(str(value), choices, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {what} {value!r}{hint}; choose one of {', '.join(choices)}"


def _loss_or_error(**kw):
    try:
        return get_loss(**kw)
    except ExpressionError as exc:
        raise SpecError(str(exc), "loss") from None


def _flatten_names(names, shape, key):
    if isinstance(names, (list, tuple)) and names and all(isinstance(r, (list, tuple)) for r in names):
        if len(names) != shape[0] or any(len(r) != shape[1] for r in names):
            raise SpecError(f"expected {shape[0]} rows of {shape[1]} names", key)
        return [s for r in names for s in r]
    return names


# ---------------------------------------------------------------------------------------------
# TOML loading

TOP_KEYS = {"name", "description", "inputs", "outputs", "init", "layers", "expression", "loss", "sample", "expect", "train"}
LAYER_KEYS = {"name", "units", "activation", "activation_params", "weight", "bias", "bias_value", "neurons", "weight_names",
              "bias_names", "freeze", "init"}
INIT_KEYS = {"scheme", "seed"}
LOSS_KEYS = {"kind", "expression", "reduction", "average_outputs"}
SAMPLE_KEYS = {"x", "t", "seed"}
EXPECT_KEYS = {"what", "name", "value", "rel_tol", "abs_tol", "source"}
EXPRESSION_KEYS = {"output", "outputs", "params", "freeze"}
TRAIN_KEYS = {f.name for f in TrainConfig.__dataclass_fields__.values()}


def _check_keys(table, allowed, prefix):
    if not isinstance(table, dict):
        raise SpecError("expected a table", prefix or None)
    for k in table:
        if k not in allowed:
            close = difflib.get_close_matches(k, sorted(allowed), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise SpecError(f"unknown key{hint}; allowed: {', '.join(sorted(allowed))}", f"{prefix}.{k}" if prefix else k)


def _typed(table, key, types, prefix, default=None, required=False):
    full = f"{prefix}.{key}" if prefix else key
    if key not in table:
        if required:
            raise SpecError("missing required key", full)
        return default
    v = table[key]
    if isinstance(v, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise SpecError(f"expected {_type_names(types)}, got a boolean", full)
    if not isinstance(v, types):
        raise SpecError(f"expected {_type_names(types)}, got {type(v).__name__}", full)
    if isinstance(v, float) and not math.isfinite(v):
        raise SpecError("numbers must be finite (no nan or inf)", full)
    return v


def _text(table, key, prefix, default=""):
    """A free-text value (description, source): any characters but NUL and other control characters.

    Tabs and line breaks (\\n, \\r, U+0085) are allowed: generated files show them as escapes. A control character is almost
    surely a mistake, and NUL cannot reach C or most tools, so both are refused here with their code point.
    """
    v = _typed(table, key, str, prefix, default)
    for i, c in enumerate(v):
        if (ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0) and c not in "\t\n\r\x85":
            raise SpecError(f"control character U+{ord(c):04X} at position {i} is not allowed in text "
                            "(tabs and line breaks are)", f"{prefix}.{key}" if prefix else key)
    return v


def _type_names(types):
    names = {int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table", bool: "true/false"}
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join(names.get(t, t.__name__) for t in types)


def from_dict(data, source="<dict>"):
    """A Network or ExpressionModel from the parsed TOML table (raises SpecError)."""
    _check_keys(data, TOP_KEYS, "")
    name = _typed(data, "name", str, "", required=True)
    description = _text(data, "description", "")
    inputs = _typed(data, "inputs", (list, int), "", required=True)
    outputs = _typed(data, "outputs", list, "", None)
    loss = _load_loss(data)
    sample = _load_sample(data)
    expects = _load_expects(data)
    train = _load_train(data)
    has_layers, has_expr = "layers" in data, "expression" in data
    if has_layers == has_expr:
        raise SpecError("give either [[layers]] (a network) or [expression] (an expression model)",
                        "layers" if has_layers else None)
    if has_expr:
        if outputs is not None:
            raise SpecError("an expression model names its outputs in [expression]", "outputs")
        ex = _typed(data, "expression", dict, "")
        _check_keys(ex, EXPRESSION_KEYS, "expression")
        if ("output" in ex) == ("outputs" in ex):
            raise SpecError("give output = \"...\" or an [expression.outputs] table", "expression.output")
        outs = _typed(ex, "outputs", dict, "expression") if "outputs" in ex else {"y": _typed(ex, "output", str, "expression")}
        for k, v in outs.items():
            if not isinstance(v, str):
                raise SpecError("expected an expression string", f"expression.outputs.{k}")
        params = _typed(ex, "params", dict, "expression", required=True)
        freeze = _typed(ex, "freeze", list, "expression", [])
        return ExpressionModel(name, inputs, outs, params, loss, tuple(freeze), sample, train, expects, description, source)
    init = _typed(data, "init", dict, "", {})
    _check_keys(init, INIT_KEYS, "init")
    layers_data = _typed(data, "layers", list, "", required=True)
    layers = []
    for k, ld in enumerate(layers_data):
        p = f"layers[{k}]"
        _check_keys(ld, LAYER_KEYS, p)
        layers.append(Dense(
            name=_typed(ld, "name", str, p, required=True),
            units=_typed(ld, "units", int, p, required=True),
            activation=_typed(ld, "activation", str, p, "identity"),
            activation_params=_typed(ld, "activation_params", dict, p, None),
            weight=_typed(ld, "weight", list, p, None),
            bias=_typed(ld, "bias", str, p, "unit"),
            bias_value=_typed(ld, "bias_value", (int, float, list), p, None),
            neurons=_typed(ld, "neurons", list, p, None),
            weight_names=_typed(ld, "weight_names", list, p, None),
            bias_names=_typed(ld, "bias_names", (list, str), p, None),
            freeze=tuple(_typed(ld, "freeze", (list, str), p, ())),
            init=_typed(ld, "init", str, p, None),
        ))
    return Network(
        name, inputs, layers, loss, outputs, sample,
        _typed(init, "scheme", str, "init", "xavier"), _typed(init, "seed", int, "init", 0),
        train, expects, description, source,
    )


def _load_loss(data):
    ld = _typed(data, "loss", (dict, str), "", required=True)
    if isinstance(ld, str):
        return _loss_or_error(kind=ld)
    _check_keys(ld, LOSS_KEYS, "loss")
    kind = _typed(ld, "kind", str, "loss", None)
    expr = _typed(ld, "expression", str, "loss", None)
    if (kind is None) == (expr is None):
        raise SpecError("give kind = \"...\" or expression = \"...\" (not both)", "loss.kind")
    try:
        return get_loss(kind, expr, _typed(ld, "reduction", str, "loss", None), _typed(ld, "average_outputs", bool, "loss", None))
    except ExpressionError as exc:
        key = "loss.expression" if expr is not None else ("loss.reduction" if "reduction" in str(exc) else "loss.kind")
        raise SpecError(str(exc), key) from None


def _load_sample(data):
    sd = _typed(data, "sample", dict, "", None)
    if sd is None:
        return None
    _check_keys(sd, SAMPLE_KEYS, "sample")
    seed = _typed(sd, "seed", int, "sample", None)
    x = _typed(sd, "x", list, "sample", required=seed is None)
    t = _typed(sd, "t", list, "sample", None)
    if seed is not None and x is not None:
        raise SpecError("give x (and t) or a seed, not both", "sample.seed")
    return Sample(None if x is None else _finite_array(x, "sample.x"), None if t is None else _finite_array(t, "sample.t"), seed)


def _load_expects(data):
    items = _typed(data, "expect", list, "", [])
    out = []
    for k, ed in enumerate(items):
        p = f"expect[{k}]"
        _check_keys(ed, EXPECT_KEYS, p)
        out.append(Expect(
            _typed(ed, "what", str, p, required=True), _typed(ed, "name", str, p, None),
            float(_typed(ed, "value", (int, float), p, required=True)),
            float(_typed(ed, "rel_tol", (int, float), p, 1e-6)), float(_typed(ed, "abs_tol", (int, float), p, 0.0)),
            _text(ed, "source", p),
        ))
    return out


def _load_train(data):
    td = _typed(data, "train", dict, "", {})
    _check_keys(td, TRAIN_KEYS, "train")
    kw = {}
    for f in TrainConfig.__dataclass_fields__.values():
        if f.name in td:
            typ = {"float": (int, float), "int": int, "str": str, "bool": bool}[f.type if isinstance(f.type, str) else f.type.__name__]
            kw[f.name] = _typed(td, f.name, typ, "train")
            if typ == (int, float):
                kw[f.name] = float(kw[f.name])
    return TrainConfig(**kw)


def _line_of(text, key):
    """Best-effort line number of a dotted key like ``layers[1].activation`` in TOML text."""
    if not key or not text:
        return None
    lines = text.splitlines()
    parts = key.split(".")
    start = 0
    first = parts[0]
    m = re.fullmatch(r"(\w+)\[(\d+)\]", first)
    if m:
        table, idx = m.group(1), int(m.group(2))
        headers = [i for i, ln in enumerate(lines) if re.match(rf"\s*\[\[\s*{table}\s*\]\]", ln)]
        if idx < len(headers):
            start = headers[idx]
            parts = parts[1:]
        else:
            return None
    elif len(parts) > 1:
        for i, ln in enumerate(lines):
            if re.match(rf"\s*\[\s*{re.escape(first)}\s*\]", ln):
                start = i
                parts = parts[1:]
                break
    if not parts:
        return start + 1
    leaf = re.sub(r"\[\d+\]$", "", parts[-1])
    for i in range(start, len(lines)):
        if re.match(rf"\s*{re.escape(leaf)}\s*=", lines[i]):
            return i + 1
    return start + 1 if start else None


def load(path):
    """Load and check a spec file; raises SpecError naming the file, key and line."""
    path = Path(path)
    text = _read_spec(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise SpecError(f"TOML syntax error: {exc}", file=path, line=int(m.group(1)) if m else None) from None
    except RecursionError:
        raise SpecError("TOML nested too deeply (arrays or tables inside each other)", file=path) from None
    try:
        return from_dict(data, source=_display_path(path))
    except SpecError as exc:
        raise exc.located(_display_path(path), _line_of(text, exc.key)) from None
    except RecursionError:
        raise SpecError("spec nested too deeply", file=_display_path(path)) from None


def _read_spec(path):
    """The text of a spec file: a regular file of at most SYMGRAD_MAX_SPEC_BYTES, UTF-8, a leading BOM dropped."""
    bound = limit("SYMGRAD_MAX_SPEC_BYTES")
    try:
        st = os.stat(path)  # before opening: opening a FIFO would block, reading /dev/zero would never end
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise SpecError(f"cannot read the spec: {kind}", file=path)
        check("SYMGRAD_MAX_SPEC_BYTES", st.st_size, "the spec file's size in bytes", file=path)
        with open(path, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise SpecError("cannot read the spec: not a regular file", file=path)
            data = f.read(bound + 1)
    except FileNotFoundError:
        raise SpecError("file not found", file=path) from None
    except OSError as exc:
        raise SpecError(f"cannot read file: {exc.strerror or exc}", file=path) from None
    check("SYMGRAD_MAX_SPEC_BYTES", len(data), "the spec file's size in bytes", file=path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"cannot read file: not UTF-8 text ({exc.reason} at byte {exc.start})", file=path) from None
    return text[1:] if text.startswith("\ufeff") else text


def _display_path(path):
    """The path as given when relative, else relative to the working directory if inside it (no absolute paths)."""
    path = Path(path)
    if not path.is_absolute():
        return path.as_posix()
    try:
        return path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return path.name
