"""NumPy source for a graph network: each layer's op prints its own lines, the activations and loss are printed here.

Names: ``a0`` is the input x (batch, *input_shape); layer k (1-based) computes ``z{k}`` with its op and
``a{k}`` = f(z{k}) (the same array where the activation runs in place: an op that takes an activation
returns a new array, never a view of its input, so this writes no other layer's value); its parameters are ``W{k}``,
``b{k}``. Backward, in reverse layer order: ``g{k}`` = dE/da{k} (a fork's branches summed), ``d{k}`` =
dE/dz{k}, ``gW{k}``/``gb{k}`` the parameter gradients. The kernels the ops call are copied into the
module from :mod:`~symgrad.backends.numpy.kernels`.
"""

import sympy as sp

from symgrad.backends.numpy.inplace import in_place
from symgrad.backends.numpy.kernels import closure
from symgrad.backends.numpy.network import _batch_sum
from symgrad.ops.activations import net as NET
from symgrad.ops.activations import out as OUT


def _param_names(k, node):
    """W{k}, b{k}; a recurrent layer's weight_ih, bias_hh, ... are Wih{k}, bhh{k}, ..."""
    short = [p.name.rsplit(".", 1)[1].replace("weight", "W").replace("bias", "b").replace("_", "") for p in node.params]
    return [(s if s.isidentifier() else f"p{j}_") + str(k) for j, s in enumerate(short)]


def _input_names(node, index):
    return [f"a{index[s]}" for s in node.inputs]


def graph_bodies(der, pr):
    """{"forward", "loss", "backward", "grads", "y", "kernels"} for a GraphDerivation."""
    model, nodes = der.model, der.nodes
    index = {"x": 0, **{n.name: k + 1 for k, n in enumerate(nodes)}}
    pnames = [n for k, node in enumerate(nodes) for n in _param_names(k + 1, node)]
    fwd = [f"{', '.join(pnames)}{',' if len(pnames) == 1 else ''} = _params(params)"] if pnames else []
    kernels = set()
    for k, node in enumerate(nodes, 1):
        kernels.update(node.op.kernels)
        fwd += _forward(node, k, der, index, pr)
    L = len(nodes)
    names = {"y": f"a{L}", "t": "t", "net": f"z{L}"}
    lossl, delta_lines = _loss(der, names, pr)
    back, grads = _backward(der, index, delta_lines, pr)
    order = {p.name: i for i, p in enumerate(model.params)}
    grads.sort(key=lambda g: order[g[0]])
    return {"forward": fwd, "loss": lossl, "backward": back, "grads": grads, "y": f"a{L}",
            "kernels": sorted(closure(kernels))}


def _forward(node, k, der, index, pr):
    """Lines computing a{k}: the op into z{k}, then the activation (in place where it can)."""
    act = node.activation
    plain = _plain(node)
    z, a = f"z{k}", f"a{k}"
    lines = node.op.numpy_forward(node, _input_names(node, index), _param_names(k, node), a if plain else z)
    if plain:
        return lines
    if act.is_layer:
        return lines + act.numpy_forward(z, a, k)
    steps = None if der.keeps_net[k - 1] else in_place(act.at(NET), NET, z, pr)
    if steps is not None:
        return lines + steps + [f"{a} = {z}  # {act.name}, in place"]
    return lines + [f"{a} = {pr(act.at(NET), {'net': z})}  # {act.name}"]


def _loss(der, names, pr):
    """(loss lines, lines computing d{L} per unit of the loss scale and scaling it)."""
    model, L = der.model, len(der.nodes)
    c = der.scale
    scale = "s" if c == 1 else f"s * {pr(c)}"
    lossl = ["s = 1.0 / a0.shape[0]" if model.loss.reduction == "mean" else "s = 1.0"]
    act = der.nodes[-1].activation
    for sym in der.logs:
        lossl.append(act.numpy_log(f"z{L}", L))
        names[sym.name] = sym.name
    total = _batch_sum(der.loss_term, names, pr)
    lossl.append(f"E = -{scale} * {total[1:]}" if total.startswith("-") else f"E = {scale} * {total}")
    if der.output == "fused":
        delta = act.numpy_delta(pr(der.delta_out, names), f"a{L}", f"d{L}")
    else:
        delta = [f"d{L} = {pr(der.delta_out, names)}  # dE/dz of the output layer, per unit of the loss scale"]
    if not (c == 1 and model.loss.reduction == "sum"):
        delta.append(f"d{L} *= {scale}")
    return lossl, delta


def _backward(der, index, delta_lines, pr):
    """Lines from the output delta down to the lowest layer with a trainable parameter below or at it."""
    nodes = der.nodes
    L = len(nodes)
    back, grads = [], []
    if not der.needs_delta[-1]:
        return back, grads
    back += delta_lines
    parts = {}  # node index -> [(name of a contribution to g, whether it is a new array)]
    for k in range(L, 0, -1):
        node = nodes[k - 1]
        if not der.needs_delta[k - 1]:
            continue
        if k < L:
            back += _gather(k, parts.pop(k), der, pr)
        ins = _input_names(node, index)
        dins = []
        for pos, s in enumerate(node.inputs):
            j = index[s]
            wanted = j > 0 and der.needs_delta[j - 1]
            dins.append(f"g{j}_{k}_{pos}" if wanted else None)
            if wanted:
                parts.setdefault(j, []).append((dins[-1], node.op.fresh_grads))
        dps = []
        for p, name in zip(node.params, _param_names(k, node)):
            dps.append(f"g{name}" if p.trainable else None)
            if p.trainable:
                grads.append((p.name, f"g{name}"))
        back += node.op.numpy_backward(node, ins, _param_names(k, node), f"a{k}" if _plain(node) else f"z{k}",
                                       f"d{k}", dins, dps)
    return back, grads


def _plain(node):
    act = node.activation
    return act is None or (not act.is_layer and act.at(NET) == NET)


def _gather(k, parts, der, pr):
    """Lines computing d{k} = dE/dz{k} from the contributions to g{k} = dE/da{k}."""
    lines, fresh = [], False
    if len(parts) == 1:
        g, fresh = parts[0]
    else:
        g = f"g{k}"
        lines.append(f"{g} = {' + '.join(name for name, _ in parts)}  # a fork: the branches' deltas add")
        fresh = True
    node = der.nodes[k - 1]
    fp = der.derivs[k - 1]
    if fp is None or fp == 1 or _plain(node):
        return lines + [f"d{k} = {g}"]
    if not der.keeps_net[k - 1] and fresh:
        steps = in_place(fp, OUT, f"a{k}", pr)
        if steps is not None:
            return lines + steps + [f"{g} *= a{k}  # times f'(net) = {sp.sstr(fp)}", f"d{k} = {g}"]
    product = sp.Symbol("_g") * fp  # brackets from SymPy: g * (1 - out**2), never g * 1 - out**2
    return lines + [f"d{k} = {pr(product, {'_g': g, 'out': f'a{k}', 'net': f'z{k}'})}  # times f'(net)"]
