"""Random graph-network specs (as the TOML tables the README's spec reference describes) and a PyTorch reference."""

import numpy as np

ACTIVATIONS = ("identity", "relu", "tanh", "sigmoid")


def random_graph(rng, dims=None, batch_norm=False):
    """A spec dict: a few shaped layers (conv/pool with random options), optional forks joined by add or concat, a dense
    output; every layer but the flatten with a random activation (identity included)."""
    d = dims or int(rng.integers(1, 3))
    c = int(rng.integers(1, 4))
    size = [int(rng.integers(5, 10)) for _ in range(d)]
    layers, shapes = [], {"x": [c] + size}
    prev = "x"

    def conv(name, src, shape, same=False):
        k = [int(rng.integers(1, 4)) for _ in range(d)]
        dl = [int(rng.integers(1, 3)) for _ in range(d)]
        s = [int(rng.integers(1, 3)) for _ in range(d)]
        if same:
            pad, s = "same", [1] * d
        else:
            pad = [int(rng.integers(0, 3)) for _ in range(d)]
        out = []
        for n, ki, si, di, pi in zip(shape[1:], k, s, dl, [0] * d if pad == "same" else pad):
            o = n if pad == "same" else (n + 2 * pi - di * (ki - 1) - 1) // si + 1
            if o < 1:
                return None, None
            out.append(o)
        oc = int(rng.integers(1, 4))
        layer = {"kind": f"conv{d}d", "name": name, "input": src, "out_channels": oc,
                 "kernel_size": k if rng.random() < 0.5 else k[0] if len(set(k)) == 1 else k,
                 "stride": s, "padding": pad, "dilation": dl, "bias": "unit" if rng.random() < 0.7 else "none",
                 "activation": str(rng.choice(ACTIVATIONS))}
        return layer, [oc] + out

    def pool(name, src, shape):
        k = [int(rng.integers(1, 4)) for _ in range(d)]
        s = [int(rng.integers(1, 3)) for _ in range(d)]
        p = [int(rng.integers(0, ki // 2 + 1)) for ki in k]
        out = [(n + 2 * pi - ki) // si + 1 for n, ki, si, pi in zip(shape[1:], k, s, p)]
        if min(out) < 1:
            return None, None
        kind = ("max" if rng.random() < 0.5 else "avg") + f"pool{d}d"
        return {"kind": kind, "name": name, "input": src, "kernel_size": k, "stride": s, "padding": p,
                "activation": str(rng.choice(ACTIVATIONS))}, [shape[0]] + out

    n = 0
    for _ in range(int(rng.integers(1, 4))):
        n += 1
        r = rng.random()
        if r < 0.25 and len(layers) >= 0:  # a residual fork: two "same" convs of equal channels, added
            layer, shape = conv(f"c{n}", prev, shapes[prev], same=True)
            if layer is None:
                continue
            layer["out_channels"] = shapes[prev][0]
            shape[0] = shapes[prev][0]
            layers.append(layer)
            shapes[layer["name"]] = shape
            merge = "add" if rng.random() < 0.6 else "concat"
            layers.append({"kind": merge, "name": f"m{n}", "inputs": [prev, layer["name"]],
                           "activation": str(rng.choice(ACTIVATIONS))})  # relu(a + b): the residual block
            shapes[f"m{n}"] = shape if merge == "add" else [2 * shape[0]] + shape[1:]
            prev = f"m{n}"
            continue
        layer, shape = (conv if r < 0.7 else pool)(f"l{n}", prev, shapes[prev])
        if layer is None:
            continue
        layers.append(layer)
        shapes[layer["name"]] = shape
        prev = layer["name"]
    if not layers or layers[-1]["kind"] in ("add", "concat") and prev == "x":
        layer, shape = conv("c0", "x", shapes["x"], same=True)
        layers.append(layer)
        shapes["c0"] = shape
        prev = "c0"
    layers.append({"kind": "flatten", "name": "flat", "input": prev})
    n_out = int(rng.integers(1, 4))
    softmax = rng.random() < 0.3 and n_out > 1
    layers.append({"name": "out", "units": n_out, "activation": "softmax" if softmax else str(rng.choice(ACTIVATIONS)),
                   "bias": str(rng.choice(["unit", "shared", "none"]))})
    loss = "softmax_cross_entropy" if softmax else str(rng.choice(["mse", "half_sse"]))
    return {"name": "g", "input_shape": [c] + size, "layers": layers, "loss": loss}


NET_ACTIVATIONS = [("gelu", None), ("elu", {"alpha": 0.7}), ("silu", None), ("softplus", None),
                   ("leaky_relu", {"negative_slope": 0.2})]


def net_activations_spec(act, params):
    """A residual 1-D graph with ``act`` (whose derivative may need the net input) on its add, pools and concat."""
    on = {"activation": act, **({"activation_params": params} if params else {})}
    return {"input_shape": [2, 6], "loss": "mse", "layers": [
        {"kind": "conv1d", "name": "c", "out_channels": 2, "kernel_size": 3, "padding": "same", **on},
        {"kind": "add", "name": "s", "inputs": ["x", "c"], **on},
        {"kind": "maxpool1d", "name": "mp", "kernel_size": 2, **on},
        {"kind": "avgpool1d", "name": "ap", "input": "s", "kernel_size": 2, **on},
        {"kind": "concat", "name": "cat", "inputs": ["mp", "ap"], **on},
        {"kind": "flatten", "name": "f"},
        {"name": "out", "units": 2}]}


def torch_activation(act):
    """PyTorch's function for a node's Activation (None: the identity), its parameters applied."""
    import torch
    import torch.nn.functional as F

    if act is None:
        return lambda z: z
    p = act.params
    return {"identity": lambda z: z, "relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
            "softmax": lambda z: torch.softmax(z, -1), "gelu": F.gelu, "silu": F.silu, "softplus": F.softplus,
            "elu": lambda z: F.elu(z, float(p.get("alpha", 1.0))),
            "leaky_relu": lambda z: F.leaky_relu(z, float(p.get("negative_slope", 0.01)))}[act.name]


def torch_loss(model, params, x, t):
    """(E, output) of a GraphNetwork in PyTorch float64, from its nodes (an independent forward)."""
    import torch
    import torch.nn.functional as F

    vals = {"x": x}
    for n in model.nodes:
        ins = [vals[s] for s in n.inputs]
        k, op = n.op.kind, n.op
        P = [params[p.name] for p in n.params]
        if k.startswith("conv"):
            f = F.conv1d if k == "conv1d" else F.conv2d
            xx = F.pad(ins[0], [v for lo, hi in reversed(op.pad) for v in (lo, hi)])
            z = f(xx, P[0], P[1] if len(P) > 1 else None, stride=op.s, dilation=op.dl)
        elif k.startswith("maxpool") or k.startswith("avgpool"):
            f = {"maxpool1d": F.max_pool1d, "maxpool2d": F.max_pool2d, "avgpool1d": F.avg_pool1d,
                 "avgpool2d": F.avg_pool2d}[k]
            z = f(ins[0], op.k, op.s, [p[0] for p in op.pad])
        elif k == "flatten":
            z = ins[0].reshape(ins[0].shape[0], -1)
        elif k == "add":
            z = sum(ins[1:], ins[0])
        elif k == "concat":
            z = torch.cat(ins, 1)
        else:
            z = ins[0] @ P[0].T + (P[1] if len(P) > 1 else 0)
        vals[n.name] = torch_activation(n.activation)(z)
    y = vals[model.nodes[-1].name]
    name = model.loss.name
    if name == "mse":
        E = ((y - t) ** 2).mean()
    elif name == "half_sse":
        E = ((y - t) ** 2).sum() / 2
    elif name == "softmax_cross_entropy":
        E = -(t * torch.log(y)).sum() / y.shape[0]
    else:
        raise ValueError(name)
    return E, y


def reference(model, params, x, t):
    """(E, y, {param: gradient}) from PyTorch float64."""
    import torch

    tp = {k: torch.tensor(np.asarray(v, dtype=np.float64), requires_grad=True) for k, v in params.items()}
    E, y = torch_loss(model, tp, torch.tensor(x), torch.tensor(t))
    E.backward()
    return E.item(), y.detach().numpy(), {k: v.grad.numpy() for k, v in tp.items() if v.grad is not None}
