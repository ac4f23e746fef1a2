"""NumPy source for a network's layer program: forward, loss and backward as lists of lines.

One GEMM per dense layer forward and two backward (``delta W`` and ``delta^T a``), as ``ndarray.dot``
calls (the same BLAS call as ``@`` without the ufunc and ``__array_function__`` dispatch: 16x16 at
batch 1, 0.6 instead of 1.6 us per product). Elementwise work is printed by SymPy and done in place
where the expression allows (:mod:`~symgrad.backends.numpy.inplace`). A parameter-free layer prints
its own code when it has ``numpy_forward`` (softmax), else per-unit columns from its SymPy forward
and its vector-Jacobian product.
"""

import sympy as sp

from symgrad.backends.numpy.inplace import in_place
from symgrad.ops.activations import net as NET
from symgrad.ops.activations import out as OUT
from symgrad.ops.base import symbols


def network_bodies(der, pr):
    """{"forward", "loss", "backward": lines, "grads": [(param, name)], "y": output name} for a LayerDerivation."""
    model, layers = der.program.model, der.program.layers
    L = len(layers)
    dense = [s for s in layers if s.dense]
    unpack = ", ".join(f"W{s.index + 1}" + (f", b{s.index + 1}" if s.bias is not None else "") for s in dense)
    fwd = [f"{unpack}{',' if len(model.params) == 1 else ''} = _params(params)"]
    for s in layers:
        fwd += _forward(s, der, pr)
    y = f"a{L}"
    names = {"y": y, "t": "t", "net": f"z{L}"}
    lossl, shared, loss_term, delta_out = _loss(der, names, pr)
    back, grads = _backward(der, pr, names, shared, delta_out, y)
    order = {p.name: i for i, p in enumerate(model.params)}
    grads.sort(key=lambda g: order[g[0]])
    return {"forward": fwd, "loss": lossl, "backward": back, "grads": grads, "y": y}


def _forward(s, der, pr):
    """Lines computing a{k} from a{k-1}."""
    k = s.index + 1
    z, a = f"z{k}", f"a{k}"
    lines = []
    if s.dense:
        unit = "unit" if s.units == 1 else "units"
        lines.append(f"{z} = a{k - 1}.dot(W{k}.T)  # net of layer {s.layer.name!r}: {s.units} {unit}")
        if s.bias is not None:
            lines.append(f"{z} += b{k}")
    else:
        z = f"a{k - 1}"
    op = s.op
    if not s.elementwise:
        if hasattr(op, "numpy_forward"):
            if not s.dense:
                lines.append(f"z{k} = a{k - 1}.copy()")
                z = f"z{k}"
            return lines + op.numpy_forward(z, a, k)
        return lines + _layer_forward(op, z, a, s.units if s.dense else s.fan_in, s.units, k, pr)
    steps = in_place(op.at(NET), NET, z, pr) if not der.keeps_net[s.index] else None
    if steps is not None:
        return lines + steps + [f"{a} = {z}  # {op.name}, in place"]
    return lines + [f"{a} = {pr(op.at(NET), {'net': z})}  # {op.name}"]


def _columns(prefix, name, n):
    return {sym: f"{name}[:, {j}]" for j, sym in enumerate(symbols(prefix, n))}


def _layer_forward(op, z, a, n_in, n_out, k, pr):
    """a = op(z) column by column from the op's SymPy forward, common subexpressions computed once."""
    exprs = op.forward(symbols("x", n_in))
    return _assign_columns(exprs, _columns("x", z, n_in), a, z, f"_f{k}_", pr, f"# {op.kind} layer, unit by unit")


def _assign_columns(exprs, names, target, like, prefix, pr, comment):
    shared, reduced = sp.cse(exprs, symbols=sp.numbered_symbols(prefix))
    names = dict(names)
    lines = [comment]
    for sym, e in shared:
        lines.append(f"{sym.name} = {pr(e, names)}")
        names[sym] = sym.name
    lines.append(f"{target} = np.empty(({like}.shape[0], {len(exprs)}), dtype=DTYPE)")
    lines += [f"{target}[:, {j}] = {pr(e, names)}" for j, e in enumerate(reduced)]
    return lines


def _loss(der, names, pr):
    """(loss lines, shared subexpression names, loss term, output delta): the loss and the delta share work."""
    model, L = der.program.model, len(der.program.layers)
    c = der.scale
    scale = "s" if c == 1 else f"s * {pr(c)}"
    lossl = ["s = 1.0 / a0.shape[0]" if model.loss.reduction == "mean" else "s = 1.0"]
    last = der.program.layers[-1]
    for sym in der.logs:
        lossl.append(last.op.numpy_log(f"z{L}", L))
        names[sym.name] = sym.name
    shared, (loss_term, delta_out) = sp.cse([der.loss_term, der.delta_out], symbols=sp.numbered_symbols("e"))
    for_loss = set(loss_term.free_symbols)
    for sym, expr in reversed(shared):
        if sym in for_loss:
            for_loss |= expr.free_symbols
    delta_only = []  # shared names the loss does not use: computed with the backward pass, not in loss()
    for sym, expr in shared:
        (lossl if sym in for_loss else delta_only).append(f"{sym.name} = {pr(expr, names)}")
        names[sym.name] = sym.name
    total = _batch_sum(loss_term, names, pr)
    lossl.append(f"E = -{scale} * {total[1:]}" if total.startswith("-") else f"E = {scale} * {total}")
    return lossl, (shared, delta_only, scale), loss_term, delta_out


def _backward(der, pr, names, shared_info, delta_out, y):
    """Lines computing every trainable gradient, from the output delta down to the lowest trained layer."""
    model, layers = der.program.model, der.program.layers
    shared, delta_only, scale = shared_info
    L = len(layers)
    back, grads = list(delta_only), []
    lowest = min((s.index for s in layers if s.dense and (s.weight.trainable or (s.bias is not None and s.bias.trainable))),
                 default=None)
    if lowest is None:
        return back, grads
    back += _output_delta(der, pr, names, {sym.name for sym, _ in shared}, delta_out, y)
    c = der.scale
    if not (c == 1 and model.loss.reduction == "sum"):
        back.append(f"d{L} *= {scale}")
    have_ones = False
    for s in reversed(layers):
        k = s.index + 1
        if s.dense:
            if s.weight.trainable:
                back.append(f"gW{k} = d{k}.T.dot(a{k - 1})  # dE/dW of {s.layer.name!r}")
                grads.append((s.weight.name, f"gW{k}"))
            if s.bias is not None and s.bias.trainable:
                if s.bias.shape and not have_ones:
                    have_ones = True
                    pr.need("_ones")
                    back.append("ones = _ones(a0.shape[0])  # column sums over the batch as products")
                back.append(f"gb{k} = ones.dot(d{k})" if s.bias.shape else f"gb{k} = np.asarray(d{k}.sum())")
                grads.append((s.bias.name, f"gb{k}"))
        if s.index <= lowest:
            break
        prev = layers[s.index - 1]
        j = k - 1
        incoming = f"d{j}" if prev.elementwise and prev.dense else f"g{j}"
        if s.dense:
            back.append(f"{incoming} = d{k}.dot(W{k})  # dE/da of {prev.layer.name!r}")
        else:
            back.append(f"{incoming} = d{k}  # dE/da of {prev.layer.name!r}")
        back += _op_backward(prev, der, pr, incoming, j)
    return back, grads


def _output_delta(der, pr, names, owned, delta_out, y):
    """Lines computing d{L}: dE/d(input of the output layer's op), per unit of the loss scale."""
    L = len(der.program.layers)
    last = der.program.layers[-1]
    if der.output == "fused":
        return last.op.numpy_delta(pr(delta_out, names), y, f"d{L}")
    if der.output == "vjp":
        z = f"z{L}" if last.dense else f"a{L - 1}"
        return [f"g{L} = {pr(delta_out, names)}  # dE/dy per unit of the loss scale"] + _vjp(last, pr, z, f"g{L}", f"d{L}", L)
    inplace = _product_in_place(delta_out, f"d{L}", names, owned, {"y"}, pr)
    lines = inplace or [f"d{L} = {pr(delta_out, names)}"]
    lines[-1] += "  # dE/dnet of the output layer, per unit of the loss scale"
    return lines


def _op_backward(s, der, pr, g, j):
    """Lines turning g = dE/d(out of layer j) into d{j} = dE/d(input of its op)."""
    if not s.elementwise:
        z = f"z{j}" if s.dense else f"a{j - 1}"
        return _vjp(s, pr, z, g, f"d{j}", j)
    fp = der.derivs[s.index]
    if fp == 1:
        return []
    if not der.keeps_net[s.index]:
        steps = in_place(fp, OUT, f"a{j}", pr)
        if steps is not None:
            return steps + [f"{g} *= a{j}  # times f'(net) = {sp.sstr(fp)}"]
    return [f"{g} *= {pr(fp, {'out': f'a{j}', 'net': f'z{j}'})}  # times f'(net)"]


def _vjp(s, pr, z, g, target, k):
    """target = the vector-Jacobian product of layer s's op at input z with g, column by column."""
    n_in, n_out = s.fan_in if not s.dense else s.units, s.units
    xs, outs, ds = symbols("x", n_in), symbols("u", n_out), symbols("g", n_out)
    names = {**_columns("x", z, n_in), **_columns("u", f"a{k}", n_out), **_columns("g", g, n_out)}
    return _assign_columns(s.op.vjp(xs, outs, ds), names, target, g, f"_b{k}_", pr,
                           f"# {s.op.kind} layer backward: vector-Jacobian product")


def _batch_sum(term, names, pr):
    """Python source for the sum of ``term`` over the batch and outputs: c*u**2 and c*u*v as one dot product."""
    coeff, factors = term.as_coeff_mul()
    arrays = [f for f in factors if f.is_Symbol and f.name in names]
    if len(factors) == 1 and factors[0].is_Pow and factors[0].exp == 2 and factors[0].base.is_Symbol \
            and factors[0].base.name in names:
        u = names[factors[0].base.name]
        arrays = [u, u]
    elif len(factors) == 2 and len(arrays) == 2:
        arrays = [names[f.name] for f in arrays]
    else:
        return f"float(np.sum({pr(term, names)}))"
    dot = f"float(np.vdot({arrays[0]}, {arrays[1]}))"
    return dot if coeff == 1 else f"-{dot}" if coeff == -1 else f"{pr(coeff)} * {dot}"


def _product_in_place(expr, target, names, owned, writable, pr):
    """Lines computing ``target = expr`` for a product, multiplying in place into one of the owned arrays.

    Factors that are a writable array plus a number (y - 1) are formed in place too, once no later
    factor needs that array. None when expr is not such a product.
    """
    coeff, factors = expr.as_coeff_mul()
    # the base array is overwritten: no other factor may read it (e0 * (e0 - 1) would read the product)
    base = next((f for f in factors if f.is_Symbol and f.name in owned
                 and not any(g != f and g.has(f) for g in factors)), None)
    if base is None:
        return None
    rest = [f for f in factors if f != base]
    plain = [f for f in rest if f.is_Symbol or f.is_Number]
    other = [f for f in rest if not (f.is_Symbol or f.is_Number)]
    lines = [f"{target} = {names[base.name]}"]
    lines += [f"{target} *= {pr(f, names)}" for f in plain]
    for k, f in enumerate(other):
        c, u = f.as_coeff_add()
        later = other[k + 1:]
        if len(u) == 1 and u[0].is_Symbol and u[0].name in writable and not any(g.has(u[0]) for g in later) and c != 0:
            a = names[u[0].name]
            lines += [f"{a} -= {pr(-c)}" if c < 0 else f"{a} += {pr(c)}", f"{target} *= {a}"]
        elif (len(u) == 1 and u[0].is_Mul and u[0].args == (-1, u[0].args[1]) and u[0].args[1].is_Symbol
              and u[0].args[1].name in writable and not any(g.has(u[0].args[1]) for g in later)):
            a = names[u[0].args[1].name]
            lines += [f"np.subtract({pr(c)}, {a}, out={a})", f"{target} *= {a}"]
        else:
            lines.append(f"{target} *= {pr(f, names)}")
    if coeff == -1:
        lines.append(f"np.negative({target}, out={target})")
    elif coeff != 1:
        lines.append(f"{target} *= {pr(coeff)}")
    return lines
