"""The forward computation as an ordered program of named steps.

Two granularities read the same model:

* :class:`ScalarProgram` — one step per neuron (``net_h1 = w1*i1 + w2*i2 + b1``,
  ``out_h1 = sigma(net_h1)``, ``E_o1 = (target_o1 - out_o1)**2/2``, ``E_total = E_o1 + E_o2``), as
  the worked examples write it. Reports, per-parameter symbolic gradients and unrolled code read it.
* :class:`LayerProgram` — one step per layer on whole arrays (``net = a W^T + b``, ``out = f(net)``)
  for batched code. Its elementwise parts are the same SymPy expressions of ``x``/``y``/``t``.

Nothing here expands the network into one expression: each step refers to earlier steps by name.
"""

from dataclasses import dataclass

import sympy as sp

from symgrad.ops.activations import net as NET
from symgrad.ops.activations import out as OUT
from symgrad.ops.base import Step
from symgrad.ops.functions import log_forms
from symgrad.ops.losses import t as T
from symgrad.ops.losses import y as Y
from symgrad.sizes import SCALAR_LIMIT
from symgrad.symbols import derived


@dataclass
class ScalarProgram:
    """Per-sample forward steps; ``inputs``/``targets``/``params`` are the leaf symbols."""

    model: object
    steps: list
    inputs: list  # symbols
    targets: list  # symbols (one per output)
    params: dict  # scalar symbol -> (param name, flat index)
    outputs: list  # symbols of the model outputs
    loss: sp.Symbol
    scale: sp.Expr  # c in E = c * sum_j l_j (1/n for losses that average over outputs)

    def step_of(self, sym):
        return self._index[sym]

    def __post_init__(self):
        self._index = {s.sym: s for s in self.steps}


def scalar_program(model):
    """The neuron-level forward program of a Network or ExpressionModel."""
    if model.kind == "expression":
        return _expression_program(model)
    n_params = sum(p.size for p in model.params)
    if n_params > SCALAR_LIMIT:
        raise ValueError(f"{model.name} has {n_params} scalar parameters; per-neuron programs stop at {SCALAR_LIMIT}")
    inputs = [sp.Symbol(n, real=True) for n in model.inputs]
    params = {}
    steps = []
    a, logs = inputs, {}
    for k, layer in enumerate(model.layers):
        outs = [derived(f"out_{n}", "out", n) for n in layer.neurons]
        if getattr(layer, "is_layer", False):  # a parameter-free layer: its own steps
            new, logs = layer.steps(a, outs, k, layer.name)
            steps += new
            a = outs
            continue
        new = layer.net_steps(k, a, *model.layer_params(k), params)
        steps += new
        nets = [s.sym for s in new]
        act = layer.activation
        if act.is_layer:  # softmax and the like: a parameter-free layer over the nets
            new, logs = act.steps(nets, outs, k, layer.name)
            steps += new
        else:
            d = act.derivative_in_out()
            logs = {}
            for j, (n, o) in enumerate(zip(nets, outs)):
                local = {n: d.subs({OUT: o, NET: n})}
                steps.append(Step(o, act.at(n), "out", k, j, local=local, meaning="output of a neuron (after the activation)",
                                  rule=act.describe_rule()))
                logs.update(act.log_forms(o, n))
        a = outs
    return _with_loss(model, steps, inputs, params, a, logs)


def _expression_program(model):
    inputs = [model.symbols[n] for n in model.inputs]
    params = {model.symbols[p.name]: (p.name, 0) for p in model.params}
    steps, outs, logs = [], [], {}
    for name, expr in model.outputs_expr.items():
        o = derived(name, "output", name)
        steps.append(Step(o, expr, "output", None, len(outs), meaning="model output"))
        outs.append(o)
        logs.update(log_forms(o, expr))
    return _with_loss(model, steps, inputs, params, outs, logs)


def _with_loss(model, steps, inputs, params, outs, logs=None):
    """Loss steps E_j = l(out_j, target_j), with logs of outputs in stable forms (``logs``), and E_total."""
    loss = model.loss
    targets = [derived(f"target_{n}", "target", n) for n in model.outputs]
    terms = []
    for o, tg, name in zip(outs, targets, model.outputs):
        e = derived(f"E_{name}", "E", name)
        steps.append(Step(e, loss.expr.subs({Y: o, T: tg}).subs(logs or {}), "loss_term", meaning="error of one output",
                          rule=loss.rule))
        terms.append(e)
    scale = sp.Rational(1, len(outs)) if loss.average_outputs else sp.S.One
    total = derived("E_total", "E_total")
    rule = "sum rule: the total error is a sum of the output errors" + (" times a constant" if scale != 1 else "")
    steps.append(Step(total, scale * sp.Add(*terms), "loss", meaning="total error E", rule=rule))
    return ScalarProgram(model, steps, inputs, targets, params, outs, total, scale)


@dataclass
class LayerStep:
    """One layer on arrays: dense ``net = a W^T + b`` then ``out = op(net)``, or a parameter-free ``out = op(a)``."""

    index: int
    layer: object  # Dense or a parameter-free layer
    weight: object  # Param, or None for a parameter-free layer
    bias: object  # Param or None
    fan_in: int
    units: int
    op: object  # the elementwise Activation or the parameter-free layer op applied to the net (or the input)

    @property
    def dense(self):
        return self.weight is not None

    @property
    def elementwise(self):
        return not getattr(self.op, "is_layer", False)


@dataclass
class LayerProgram:
    """The batched forward program: layers in order, then the loss."""

    model: object
    layers: list
    loss: object


def layer_program(model):
    """The array-level forward program of a Network."""
    steps, fan_in = [], model.n_inputs
    for k, layer in enumerate(model.layers):
        w, b = model.layer_params(k)
        op = layer if w is None else layer.activation
        steps.append(LayerStep(k, layer, w, b, fan_in, layer.units, op))
        fan_in = layer.units
    return LayerProgram(model, steps, model.loss)
