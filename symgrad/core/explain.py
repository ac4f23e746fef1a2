"""Plain-text statements of the math a generated module computes (for its docstrings)."""

import sympy as sp

from symgrad.ops.activations import net as NET


def _s(expr):
    return sp.sstr(expr)


def formula_lines(model, der):
    """Lines stating the forward and backward formulas of ``model``."""
    if model.kind == "expression":
        return _expression_lines(model, der)
    if model.kind == "graph":
        return _graph_lines(model, der)
    lines = ["Forward, with a0 = x (batch, n_in) and layers l = 1..L:",
             "    z_l = a_{l-1} @ W_l.T + b_l",
             "    a_l = f_l(z_l)"]
    for s in der.program.layers:
        k, layer = s.index, s.layer
        f = f"f(net) = {_s(s.op.at(NET))}" if s.elementwise else s.op.formula()
        head = f"dense, bias {layer.bias}" if s.dense else "parameter-free"
        lines.append(f"    layer {k + 1} {layer.name!r}: {s.fan_in} -> {s.units}, {head}, {f}")
        if s.elementwise:
            lines.append(f"        f'(net) = {_s(der.derivs[k])}")
    lines += _loss_lines(model, der, "Backward (chain rule, d_l = dE/dz_l):")
    lines += ["    d_l = (d_{l+1} @ W_{l+1}) * f_l'(z_l)",
              "    dE/dW_l = d_l.T @ a_{l-1};  dE/db_l = sum over the batch of d_l (over units too if shared)"]
    return lines


def _loss_lines(model, der, backward):
    """The loss, the stable form it is computed in, and the output layer's delta under the heading ``backward``."""
    loss = model.loss
    c = "" if der.scale == 1 else f"{_s(der.scale)} * "
    red = "1/batch" if loss.reduction == "mean" else "1"
    lines = [f"Loss ({loss.name}): E = s * {c}sum over batch and outputs of l(y, t), s = {red},",
             f"    l(y, t) = {_s(loss.expr)}"]
    if der.loss_term != loss.expr:
        lines.append(f"    computed as {_s(der.loss_term)}")
    lines.append(backward)
    if der.output == "fused":
        lines.append(f"    h = y * dl/dy = {_s(der.delta_out)};  d_L = s * {c}(h - y * sum_j h_j)")
    elif der.output == "vjp":
        lines.append(f"    g = dl/dy = {_s(der.delta_out)};  d_L = s * {c}(vector-Jacobian product of the output layer with g)")
    else:
        lines.append(f"    d_L = s * {c}dl/dy * f_L'(z_L) = s * {c}({_s(der.delta_out)})")
    return lines


def _expression_lines(model, der):
    prog = der.program
    lines = ["Forward:"]
    for s in prog.steps:
        lines.append(f"    {s.sym} = {_s(s.expr)}")
    red = "mean" if model.loss.reduction == "mean" else "sum"
    lines.append(f"Loss: E = {red} over the batch of E_total")
    lines.append("Gradients (chain rule):")
    for p_sym in der.grads:
        lines.append(f"    dE/d{p_sym} = {_s(der.factored(p_sym))}")
    return lines


def _graph_lines(model, der):
    """The layers of a graph network with their shapes and rules, the loss and the output delta."""
    lines = [f"Forward, with a0 = x (batch, {', '.join(map(str, model.input_shape))}) and layers k = 1..L:"]
    index = {"x": 0, **{n.name: k for k, n in enumerate(model.nodes, 1)}}
    for k, n in enumerate(model.nodes, 1):
        src = ", ".join(f"a{index[s]}" for s in n.inputs)
        act = n.activation
        f = "" if act is None or act.is_layer or act.at(NET) == NET else f", a = {_s(act.at(NET))} of net"
        if act is not None and act.is_layer:
            f = f", then {act.formula()}"
        lines.append(f"    a{k} = layer {n.name!r} ({src}): {n.op.describe()}{f} -> {tuple(n.shape)}")
        if der.derivs[k - 1] is not None and der.derivs[k - 1] != 1:
            lines.append(f"        f'(net) = {_s(der.derivs[k - 1])}")
    lines += _loss_lines(model, der, "Backward (chain rule, in reverse layer order; a value read by several layers "
                                     "sums their deltas):")
    seen = set()
    for n in model.nodes:
        if n.op.kind not in seen and n.op.rule:
            seen.add(n.op.kind)
            lines.append(f"    {n.op.kind}: {n.op.rule}")
    return lines
