"""The neuron-level program of a small graph network: each layer unrolled element by element into named steps.

Every layer's ``sympy_forward`` (its definition, stated by its op) is applied to arrays of symbols, and
each element of its output becomes a named step, so the reverse-mode derivation of
:func:`~symgrad.core.derivation.derive_scalar`, the neuron-level report and ``Derivation.gradient``
work for small graph networks as for dense chains. An element of layer ``L`` at index ``[c, i, j]``
is ``net_L_c_i_j`` before its activation and ``out_L_c_i_j`` after it (0-based, as the inputs
``x_c_i_j``); a flat dense layer's elements are its neurons (``net_o1``, ``out_o1``). Flatten, and
concat without an activation, make no steps: their outputs are their inputs' symbols, rearranged.

Max pooling's local derivative is stated, not left to SymPy: SymPy differentiates ``Max`` into
Heaviside functions, which are 1/2 at ties, while PyTorch (and the generated code) send the whole
delta to the first maximum of the window. The step's ``local`` holds that indicator.
"""

import math

import numpy as np
import sympy as sp

from symgrad.core.program import _with_loss
from symgrad.ops.activations import net as NET
from symgrad.ops.activations import out as OUT
from symgrad.ops.base import Step
from symgrad.ops.dense import DenseOp
from symgrad.ops.pool import MaxPool
from symgrad.sizes import GRAPH_SCALAR_TERMS
from symgrad.symbols import derived


def terms(model):
    """How many terms the unrolled program's steps have (what derive_scalar's work grows with), without building it."""
    total = 0
    for node in model.nodes:
        op = node.op
        if isinstance(op, DenseOp):
            per = node.in_shapes[0][-1] + 1
        elif hasattr(op, "k"):  # convolution and pooling windows
            per = math.prod(op.k) * (node.in_shapes[0][0] if op.kind.startswith("conv") else 1) + 1
        else:
            per = len(node.inputs)
        total += node.size * (per + (node.activation is not None))
    return total


def small(model):
    """Whether the graph network gets the neuron-level program (at most GRAPH_SCALAR_TERMS terms)."""
    return terms(model) <= GRAPH_SCALAR_TERMS


def first_max(entries, i):
    """1 where entries[i] is the window's maximum and no earlier entry equals it (PyTorch's choice), else 0."""
    e = entries[i]
    cond = sp.And(*[e > o for o in entries[:i]], *[e >= o for o in entries[i + 1:]])
    return sp.Piecewise((1, cond), (0, True))


def _labels(model, node, last):
    """The element names of a node's output: neuron names for a flat dense layer, else name_c_i_j (0-based)."""
    built = getattr(node.op, "built", None)
    if last and len(node.shape) == 1 and list(model.outputs) != [f"y{j + 1}" for j in range(node.size)]:
        return list(model.outputs)
    if built is not None and len(node.shape) == 1:
        return list(built.neurons)
    return [node.name + "_" + "_".join(map(str, idx)) for idx in np.ndindex(*node.shape)]


def _param_symbols(p, params):
    """The scalar symbols of parameter p as an array of its shape; records them in params."""
    syms = [sp.Symbol(s, real=True) for s in p.scalar_names]
    for idx, s in enumerate(syms):
        params[s] = (p.name, idx)
    arr = np.empty(len(syms), dtype=object)
    arr[:] = syms
    return arr.reshape(p.shape)


def _max_locals(op, x):
    """{output index: {window entry: first-max indicator}} of a max pooling layer on the symbol array x."""
    out = {}
    for idx, entries in op.windows(x).items():
        real = [e for e in entries if isinstance(e, sp.Symbol)]
        out[idx] = {e: first_max(real, i) for i, e in enumerate(real)}
    return out


def _node_steps(node, k, z, labels, locals_, rule, last):
    """(steps, output array, logs) of node k from its op's output array z; logs (stable forms of log(out) for the
    loss) only for the last node."""
    act = node.activation
    steps, logs = [], {}
    flat = list(z.reshape(-1))
    what = f"layer {node.name} ({node.kind})"
    if act is None:
        outs = []
        for j, (e, lab, idx) in enumerate(zip(flat, labels, np.ndindex(*node.shape))):
            if isinstance(e, sp.Symbol):  # a value passed on unchanged (a window of one entry)
                outs.append(e)
                continue
            o = derived(f"out_{lab}", "out", lab)
            steps.append(Step(o, e, "out", k, j, local=locals_.get(idx, {}), meaning=f"output of {what}", rule=rule))
            outs.append(o)
        return steps, _array(outs, node.shape), logs
    nets = []
    for j, (e, lab, idx) in enumerate(zip(flat, labels, np.ndindex(*node.shape))):
        n = derived(f"net_{lab}", "net", lab)
        local = locals_.get(idx, {})  # a max pooling's first-max indicator, as without an activation
        steps.append(Step(n, e, "net", k, j, local=local, meaning=f"net input of {what}",
                          rule="" if node.params else rule))  # a weighted sum keeps the dense layer's wording
        nets.append(n)
    outs = [derived(f"out_{lab}", "out", lab) for lab in labels]
    if act.is_layer:  # softmax and the like over the whole (flat) output
        new, logs = act.steps(nets, outs, k, node.name)
        return steps + new, _array(outs, node.shape), logs
    d = act.derivative_in_out()
    for j, (n, o) in enumerate(zip(nets, outs)):
        steps.append(Step(o, act.at(n), "out", k, j, local={n: d.subs({OUT: o, NET: n})},
                          meaning=f"output of {what} (after the activation)", rule=act.describe_rule()))
        if last:
            logs.update(act.log_forms(o, n))
    return steps, _array(outs, node.shape), logs


def _array(items, shape):
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    return arr.reshape(shape)


def graph_program(model):
    """The neuron-level ScalarProgram of a GraphNetwork: every layer element by element, then the loss."""
    inputs = [sp.Symbol(n, real=True) for n in model.inputs]
    values = {"x": _array(inputs, model.input_shape)}
    params, steps, logs = {}, [], {}
    for k, node in enumerate(model.nodes):
        xs = [values[s] for s in node.inputs]
        ps = [_param_symbols(p, params) for p in node.params]
        z = np.asarray(node.op.sympy_forward(xs, ps), dtype=object).reshape(node.shape)
        locals_ = _max_locals(node.op, xs[0]) if isinstance(node.op, MaxPool) else {}
        last = k == len(model.nodes) - 1
        new, values[node.name], logs = _node_steps(node, k, z, _labels(model, node, last), locals_, node.op.rule, last)
        steps += new
    outs = list(values[model.nodes[-1].name].reshape(-1))
    return _with_loss(model, steps, inputs, params, outs, logs)

