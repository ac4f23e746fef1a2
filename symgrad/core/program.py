"""The forward computation as an ordered program of named steps.

Two granularities read the same model:

* :class:`ScalarProgram` — one step per neuron (``net_h1 = w1*i1 + w2*i2 + b1``,
  ``out_h1 = sigma(net_h1)``, ``E_o1 = (target_o1 - out_o1)**2/2``, ``E_total = E_o1 + E_o2``), as
  the worked examples write it. Reports, per-parameter symbolic gradients and unrolled code read it.
* :class:`LayerProgram` — one step per layer on whole arrays (``net = a W^T + b``, ``out = f(net)``)
  for batched code. Its elementwise parts are the same SymPy expressions of ``x``/``y``/``t``.

Nothing here expands the network into one expression: each step refers to earlier steps by name.
"""

from dataclasses import dataclass, field

import sympy as sp

from symgrad.ops.activations import net as NET
from symgrad.ops.activations import out as OUT
from symgrad.ops.functions import softplus
from symgrad.ops.losses import t as T
from symgrad.ops.losses import y as Y
from symgrad.symbols import derived

SCALAR_LIMIT = 5000  # networks with more scalar parameters get no per-neuron program


@dataclass
class Step:
    """``sym = expr``; ``local`` overrides d(expr)/d(s) for symbols where a cheaper form is known."""

    sym: sp.Symbol
    expr: sp.Expr
    kind: str  # input | net | out | max | sum | output | loss_term | loss
    layer: int | None = None
    unit: int | None = None
    local: dict = field(default_factory=dict)
    no_grad: bool = False  # a shift that cancels (softmax's max): no derivative flows through it


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
    a = inputs
    for k, layer in enumerate(model.layers):
        wp, bp = model.layer_params(k)
        W = [[sp.Symbol(wp.scalar_names[j * len(a) + i], real=True) for i in range(len(a))] for j in range(layer.units)]
        for idx, s in enumerate(wp.scalar_names):
            params[sp.Symbol(s, real=True)] = (wp.name, idx)
        if bp is not None:
            bsyms = [sp.Symbol(s, real=True) for s in bp.scalar_names]
            for idx, s in enumerate(bsyms):
                params[s] = (bp.name, idx)
        nets, outs = [], []
        for j, neuron in enumerate(layer.neurons):
            expr = sp.Add(*[W[j][i] * a[i] for i in range(len(a))], evaluate=False)
            if bp is not None:
                expr = sp.Add(expr, bsyms[j if len(bsyms) > 1 else 0], evaluate=False)
            net = derived(f"net_{neuron}", "net", neuron)
            steps.append(Step(net, expr, "net", k, j))
            nets.append(net)
        act = layer.activation
        logs = {}
        if act.is_softmax:
            m = derived(f"max_{layer.name}", "max", layer.name)
            steps.append(Step(m, sp.Max(*nets), "max", k, no_grad=True))
            s_sym = derived(f"S_{layer.name}", "S", layer.name)
            steps.append(Step(s_sym, sp.Add(*[sp.exp(n - m) for n in nets]), "sum", k))
            for j, neuron in enumerate(layer.neurons):
                o = derived(f"out_{neuron}", "out", neuron)
                steps.append(Step(o, sp.exp(nets[j] - m) / s_sym, "out", k, j))
                outs.append(o)
                logs[sp.log(o)] = nets[j] - m - sp.log(s_sym)  # log softmax without log(0)
        else:
            d = act.derivative_in_out()
            for j, neuron in enumerate(layer.neurons):
                o = derived(f"out_{neuron}", "out", neuron)
                local = {nets[j]: d.subs({OUT: o, NET: nets[j]})}
                steps.append(Step(o, act.at(nets[j]), "out", k, j, local=local))
                outs.append(o)
                if act.name == "sigmoid":  # log(sigmoid(net)) = -softplus(-net), log(1 - sigmoid(net)) = -softplus(net)
                    logs[sp.log(o)] = -softplus(-nets[j])
                    logs[sp.log(1 - o)] = -softplus(nets[j])
        a = outs
    return _with_loss(model, steps, inputs, params, a, logs)


def _expression_program(model):
    inputs = [model.symbols[n] for n in model.inputs]
    params = {model.symbols[p.name]: (p.name, 0) for p in model.params}
    steps, outs = [], []
    for name, expr in model.outputs_expr.items():
        o = derived(name, "output", name)
        steps.append(Step(o, expr, "output", None, len(outs)))
        outs.append(o)
    return _with_loss(model, steps, inputs, params, outs)


def _with_loss(model, steps, inputs, params, outs, logs=None):
    """Loss steps E_j = l(out_j, target_j), with logs of outputs in stable forms (``logs``), and E_total."""
    loss = model.loss
    targets = [derived(f"target_{n}", "target", n) for n in model.outputs]
    terms = []
    for o, tg, name in zip(outs, targets, model.outputs):
        e = derived(f"E_{name}", "E", name)
        steps.append(Step(e, loss.expr.subs({Y: o, T: tg}).subs(logs or {}), "loss_term"))
        terms.append(e)
    scale = sp.Rational(1, len(outs)) if loss.average_outputs else sp.S.One
    total = derived("E_total", "E_total")
    steps.append(Step(total, scale * sp.Add(*terms), "loss"))
    return ScalarProgram(model, steps, inputs, targets, params, outs, total, scale)


@dataclass
class LayerStep:
    """One dense layer on arrays: ``net = a W^T + b``, ``out = f(net)``."""

    index: int
    layer: object  # Dense
    weight: object  # Param
    bias: object  # Param or None
    fan_in: int


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
        steps.append(LayerStep(k, layer, w, b, fan_in))
        fan_in = layer.units
    return LayerProgram(model, steps, model.loss)
