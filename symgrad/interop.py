"""PyTorch interchange: an ``nn.Sequential`` becomes a symgrad Network; parameters go to and from state_dicts.

Children are read in order (nested ``nn.Sequential`` flattened, keys ``block.0``): an ``nn.Linear``
becomes a Dense layer with its weights, an activation module right after it becomes that layer's
activation, ``nn.Softmax`` becomes a parameter-free :class:`~symgrad.ops.softmax.Softmax` layer, and
``nn.Identity``, ``nn.Dropout`` and ``nn.Flatten()`` are skipped (they are the identity on a batch of
rows in eval mode). With convolutions, pooling or recurrent layers (``nn.RNN``, ``nn.LSTM``, ``nn.GRU``)
the module becomes a GraphNetwork, with a ``transpose`` layer inserted where a Conv1d (or 1-D pooling) child's
(channels, length) output meets a recurrent child reading (steps, features), or the reverse: the
``x.transpose(1, 2)`` such a forward must do. A forward that is not one chain of values (a residual block,
a fork and join of branches) is refused, as the children's order cannot say it; torch.fx traces it to tell.
The network keeps ``torch_keys``: {symgrad parameter name: state_dict key}.
"""

from collections import OrderedDict

import numpy as np

from symgrad.checks import check_name
from symgrad.errors import SpecError
from symgrad.ops.dense import Dense
from symgrad.ops.softmax import Softmax
from symgrad.spec.model import Network
from symgrad.torch_trace import check_chain

INSTALL = "PyTorch is not installed: pip install torch (or pip install 'symgrad[test]')"
SUPPORTED = ("Linear, Sigmoid, Tanh, ReLU, LeakyReLU, ELU, Softplus (beta=1, threshold=20), SiLU, GELU (approximate='none'), "
             "Softmax (dim=-1 or 1), Identity, Dropout, Flatten (start_dim=1, end_dim=-1), nested Sequential; with "
             "input_shape: Conv1d, Conv2d (groups=1, padding_mode='zeros'), MaxPool1d/2d (dilation=1), AvgPool1d/2d "
             "(count_include_pad=True), ceil_mode=False, RNN/LSTM/GRU (batch_first=True, one direction, proj_size=0, dropout=0)")


def _torch():
    """The torch package, or an ImportError saying what to install."""
    try:
        import torch
    except ImportError:
        raise ImportError(INSTALL) from None
    return torch


def _activation(child, key):
    """(symgrad activation name, its parameters) for a supported activation module; None for anything else."""
    nn = _torch().nn
    kind = type(child)
    if kind in (nn.Sigmoid, nn.Tanh, nn.ReLU, nn.SiLU):
        return {nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.ReLU: "relu", nn.SiLU: "silu"}[kind], None
    if kind is nn.LeakyReLU:
        return "leaky_relu", {"negative_slope": float(child.negative_slope)}
    if kind is nn.ELU:
        return "elu", {"alpha": float(child.alpha)}
    if kind is nn.Softplus:
        if child.beta != 1 or child.threshold != 20:
            raise SpecError(f"Softplus(beta={child.beta}, threshold={child.threshold}) is not supported: "
                            "only beta=1 with the default threshold=20", key)
        return "softplus", None
    if kind is nn.GELU:
        if child.approximate != "none":
            raise SpecError(f"GELU(approximate={child.approximate!r}) is not supported: only approximate='none'", key)
        return "gelu", None
    return None


def _skipped(child):
    """Whether a child is the identity on a batch of rows (Identity, Dropout in eval mode, Flatten of dims 1..-1)."""
    nn = _torch().nn
    if type(child) is nn.Flatten:
        return child.start_dim == 1 and child.end_dim == -1
    return type(child) in (nn.Identity, nn.Dropout)


def _children(module, prefix=""):
    """(dotted path, child) in order; nested nn.Sequential containers are flattened."""
    nn = _torch().nn
    for name, child in module.named_children():
        path = f"{prefix}{name}"
        if type(child) is nn.Sequential:
            yield from _children(child, path + ".")
        else:
            yield path, child


def _own_name(path):
    """Whether a child's name can name a layer (nn.Sequential's "0", "1" and nested "block.0" cannot)."""
    try:
        return check_name(path, "module") == path
    except SpecError:
        return False


def _layer_name(path, kind, count, taken):
    """The child's own name when it can name a layer, else ``<kind><count>`` with ``_`` added while taken."""
    if _own_name(path):
        return path
    name = f"{kind}{count}"
    while name in taken:
        name += "_"
    taken.add(name)
    return name


def _array(value):
    """A float64 NumPy copy of a tensor (any device, any dtype) or an array-like."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().double().numpy()
    return np.array(value, dtype=np.float64)


def _dense(linear, name):
    """A Dense layer holding an nn.Linear's weight and bias as float64; parameters without requires_grad are frozen."""
    bias = linear.bias
    frozen = tuple(n for n in ("weight", "bias") if getattr(linear, n) is not None and not getattr(linear, n).requires_grad)
    return Dense(name, linear.out_features, weight=_array(linear.weight), bias="none" if bias is None else "unit",
                 bias_value=None if bias is None else _array(bias), freeze=frozen)


def _input_count(input_shape, in_features):
    """in_features, checked against ``input_shape`` (an int or a tuple without the batch dimension) when given."""
    if input_shape is None:
        return in_features
    shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
    if not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape):
        raise SpecError(f"input_shape must be a positive integer or a tuple of them, got {input_shape!r}", "input_shape")
    if int(np.prod(shape)) != in_features:
        raise SpecError(f"input_shape {shape} has {int(np.prod(shape))} values but the first Linear takes "
                        f"{in_features} inputs", "input_shape")
    return in_features


def _recurrent_kinds():
    """{torch recurrent module class: symgrad layer class}."""
    from symgrad.ops.recurrent import GRU, LSTM, RNN

    nn = _torch().nn
    return {nn.RNN: RNN, nn.LSTM: LSTM, nn.GRU: GRU}


def _shaped_kinds():
    nn = _torch().nn
    return (nn.Conv1d, nn.Conv2d, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, *_recurrent_kinds())


def from_torch(module, loss="mse", input_shape=None, name=None, return_sequences=False):
    """A symgrad model with the weights (float64) of a torch module whose children run in sequence.

    A chain of Linear layers and activations becomes a Network; with convolutions, pooling or recurrent
    layers it becomes a GraphNetwork, and ``input_shape`` ((C, L), (C, H, W), or (T, F) for sequences) is
    required. A recurrent child (or the module itself) returns (output, state) in PyTorch, so its module's
    forward hands the next child the output sequence ``out`` (batch, T, H): a recurrent child followed by
    another one passes every step, and the last one passes its last step ``out[:, -1]`` (= h_n of the top
    layer), or with ``return_sequences=True`` every step (a Linear after it then applies to each step).
    ``num_layers = n`` becomes n stacked layers ``<name>_l0 .. <name>_l<n-1>`` (one layer keeps ``<name>``).
    Between a Conv1d/pooling child and a recurrent one a ``transpose`` layer (``transpose1``, ...) is inserted.
    """
    nn = _torch().nn
    if not isinstance(module, nn.Module):
        raise SpecError(f"expected a torch.nn.Module, got {type(module).__name__}", "module")
    steps = check_chain(module, _torch(), tuple(_recurrent_kinds()), list(_children(module)))
    if isinstance(module, tuple(_recurrent_kinds())) or any(isinstance(c, _shaped_kinds()) for _, c in _children(module)):
        return _graph_from_torch(module, loss, input_shape, name, return_sequences, steps)
    if return_sequences:
        raise SpecError("return_sequences applies to a module with a recurrent child (RNN, LSTM, GRU)", "return_sequences")
    children = [(f"module[{p}]", p, c) for p, c in _children(module)]
    kept = [(k, p, c) for k, p, c in children if not _skipped(c)]
    if not kept:
        raise SpecError(f"{type(module).__name__} has no layers to convert: give an nn.Sequential (or a module whose "
                        f"children run in sequence) of {SUPPORTED}", "module")
    taken = {p for _, p, _ in kept if _own_name(p)}
    layers, keys, counts, prev = [], {}, {"linear": 0, "softmax": 0}, None  # prev: (key, child) of the last child
    for key, path, child in kept:
        kind = type(child).__name__
        if type(child) is nn.Linear:
            counts["linear"] += 1
            layers.append(_dense(child, _layer_name(path, "linear", counts["linear"], taken)))
            keys.update({f"{layers[-1].name}.{p}": f"{path}.{p}" for p in ("weight", "bias") if getattr(child, p) is not None})
        elif type(child) is nn.Softmax:
            if child.dim not in (-1, 1):
                raise SpecError(f"Softmax(dim={child.dim}) is not supported: only dim=-1 or dim=1 (over the features)", key)
            if not layers:
                raise SpecError("Softmax comes before any Linear: the first layer must be a Linear", key)
            counts["softmax"] += 1
            layers.append(Softmax(_layer_name(path, "softmax", counts["softmax"], taken)))
        else:
            act = _activation(child, key)
            if act is None:
                raise SpecError(f"{kind} is not supported (supported: {SUPPORTED})", key)
            if prev is None or type(prev[1]) is not nn.Linear:
                after = "comes first" if prev is None else f"follows {type(prev[1]).__name__} at {prev[0]}"
                raise SpecError(f"activation {kind} {after}: an activation must follow a Linear", key)
            layers[-1].activation, layers[-1].activation_params = act
        prev = (key, child)
    first = next(c for _, _, c in kept if type(c) is nn.Linear)
    net = Network(name or "torch_model", _input_count(input_shape, first.in_features), layers, loss)
    net.torch_keys = keys
    return net


def _check_recurrent(child, key):
    """Refuse what symgrad's recurrent layers do not offer: batch_first=False, two directions, proj_size, dropout."""
    refused = [("batch_first=False", not child.batch_first), ("bidirectional=True", child.bidirectional),
               (f"proj_size={getattr(child, 'proj_size', 0)}", getattr(child, "proj_size", 0)),
               (f"dropout={child.dropout}", child.dropout > 0)]
    for what, bad in refused:
        if bad:
            raise SpecError(f"{type(child).__name__}({what}) is not supported: only batch_first=True, one direction, "
                            "proj_size=0 and dropout=0", key)


def _recurrent(child, path, lname, sequences):
    """The stacked symgrad layers of a torch RNN/LSTM/GRU and their state_dict keys ({symgrad name: torch key})."""
    from symgrad.ops.recurrent import WEIGHTS

    layers, keys = [], {}
    prefix = f"{path}." if path else ""
    for k in range(child.num_layers):
        layer = lname if child.num_layers == 1 else f"{lname}_l{k}"
        tensors = {w: getattr(child, f"{w}_l{k}") for w in WEIGHTS if child.bias or not w.startswith("bias")}
        args = {w: _array(t) for w, t in tensors.items()}
        if type(child) is _torch().nn.RNN:
            args["activation"] = child.nonlinearity
        layers.append(_recurrent_kinds()[type(child)](
            layer, hidden_size=child.hidden_size, bias="unit" if child.bias else "none",
            return_sequences=sequences or k < child.num_layers - 1,
            freeze=tuple(w for w, t in tensors.items() if not t.requires_grad), **args))
        keys.update({f"{layer}.{w}": f"{prefix}{w}_l{k}" for w in tensors})
    return layers, keys


def _graph_from_torch(module, loss, input_shape, name, return_sequences=False, steps=None):
    """A GraphNetwork from a sequence of Conv/Pool/Flatten/Linear/recurrent children and activations (input_shape
    required)."""
    from symgrad.ops.conv import Conv1d, Conv2d
    from symgrad.ops.pool import AvgPool1d, AvgPool2d, MaxPool1d, MaxPool2d
    from symgrad.ops.shape import Flatten, Transpose
    from symgrad.spec.graph import GraphNetwork

    nn = _torch().nn
    if input_shape is None:
        raise SpecError("a module with convolutions, pooling or recurrent layers needs input_shape, e.g. (1, 28, 28), "
                        "or (T, F) for sequences", "input_shape")
    pools = {nn.MaxPool1d: MaxPool1d, nn.MaxPool2d: MaxPool2d, nn.AvgPool1d: AvgPool1d, nn.AvgPool2d: AvgPool2d}
    recurrent = _recurrent_kinds()
    children = [("", module)] if type(module) in recurrent else list(_children(module))
    last_recurrent = max((i for i, (_, c) in enumerate(children) if type(c) in recurrent), default=-1)
    if return_sequences and last_recurrent < 0:
        raise SpecError("return_sequences applies to a module with a recurrent child (RNN, LSTM, GRU)", "return_sequences")
    layers, keys, taken, count, turns = [], {}, set(), 0, 0
    prev, axes = None, None  # axes: the last value's layout, "channels" (C, L) or "steps" (T, F), where it is one
    channels = (nn.Conv1d, nn.MaxPool1d, nn.AvgPool1d)
    for i, (path, child) in enumerate(children):
        key, kind = f"module[{path}]" if path else "module", type(child)
        count += 1
        lname = _layer_name(path, kind.__name__.lower(), count, taken)
        if kind in (nn.Identity, nn.Dropout):
            continue
        if axes == "channels" and kind in recurrent or axes == "steps" and kind in channels:
            turns += 1
            layers.append(Transpose(_layer_name("", "transpose", turns, taken)))  # forward's x.transpose(1, 2)
        if kind in channels:
            axes = "channels"
        elif kind in recurrent:
            axes = "steps" if return_sequences or i < last_recurrent else None
        elif kind in (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.Flatten):
            axes = None
        if kind in (nn.Conv1d, nn.Conv2d):
            if child.groups != 1 or child.padding_mode != "zeros":
                raise SpecError(f"{kind.__name__} with groups={child.groups}, padding_mode={child.padding_mode!r} is not "
                                "supported (groups=1, padding_mode='zeros')", key)
            pad = child.padding if isinstance(child.padding, str) else list(child.padding)
            pad = 0 if pad == "valid" else pad
            frozen = tuple(n for n in ("weight", "bias") if getattr(child, n) is not None and not getattr(child, n).requires_grad)
            cls = Conv1d if kind is nn.Conv1d else Conv2d
            layers.append(cls(lname, out_channels=child.out_channels, kernel_size=list(child.kernel_size),
                              stride=list(child.stride), padding=pad, dilation=list(child.dilation),
                              bias="none" if child.bias is None else "unit", weight=_array(child.weight),
                              bias_value=None if child.bias is None else _array(child.bias), freeze=frozen))
            keys.update({f"{lname}.{p}": f"{path}.{p}" for p in ("weight", "bias") if getattr(child, p) is not None})
        elif kind in pools:
            if getattr(child, "ceil_mode", False) or getattr(child, "dilation", 1) not in (1, (1,), (1, 1)) \
                    or getattr(child, "return_indices", False) or not getattr(child, "count_include_pad", True) \
                    or getattr(child, "divisor_override", None) is not None:
                raise SpecError(f"{kind.__name__} options are not supported: ceil_mode, dilation, return_indices, "
                                "count_include_pad=False and divisor_override are not offered", key)
            layers.append(pools[kind](lname, kernel_size=_ints(child.kernel_size), stride=_ints(child.stride),
                                      padding=_ints(child.padding)))
        elif kind in recurrent:
            _check_recurrent(child, key)
            want, seen = "every" if return_sequences or i < last_recurrent else "last", (steps or {}).get(path)
            if seen and seen != want:
                said = {"every": "every step", "last": "the last step"}
                fix = ("pass return_sequences=True" if i == last_recurrent else
                       "a recurrent child before another hands on every step") if seen == "every" else (
                    "leave out return_sequences=True" if i == last_recurrent else
                    "a recurrent child before another must hand on every step")
                raise SpecError(f"the forward hands on {said[seen]} of {path!r}, but the converted model would take "
                                f"{said[want]}: {fix}", key)
            stacked, more = _recurrent(child, path, lname, return_sequences or i < last_recurrent)
            layers += stacked
            keys.update(more)
        elif kind is nn.Flatten:
            if not (child.start_dim == 1 and child.end_dim == -1):
                raise SpecError("only Flatten(start_dim=1, end_dim=-1) is supported", key)
            layers.append(Flatten(lname))
        elif kind is nn.Linear:
            layers.append(_dense(child, lname))
            keys.update({f"{lname}.{p}": f"{path}.{p}" for p in ("weight", "bias") if getattr(child, p) is not None})
        elif kind is nn.Softmax and prev is not None and type(prev) is nn.Linear and child.dim in (-1, 1):
            layers[-1].activation = "softmax"
        else:
            act = _activation(child, key)
            if act is None:
                raise SpecError(f"{kind.__name__} is not supported (supported: {SUPPORTED})", key)
            if prev is None or type(prev) not in (nn.Linear, nn.Conv1d, nn.Conv2d, *pools):
                raise SpecError(f"activation {kind.__name__} must follow a Linear, a convolution or a pooling", key)
            target = layers[-1]
            if isinstance(target, Dense):
                target.activation, target.activation_params = act
            else:
                target.args["activation"], target.args["activation_params"] = act
        prev = child
    net = GraphNetwork(name or "torch_model", list(input_shape), layers, loss)
    net.torch_keys = keys
    return net


def _ints(v):
    """A PyTorch int-or-tuple argument as a list of ints."""
    return [int(a) for a in v] if isinstance(v, (tuple, list)) else int(v)


def torch_keys(model):
    """{symgrad parameter name: state_dict key}: the keys from_torch kept, else those of the nn.Sequential in layer order."""
    keys = getattr(model, "torch_keys", None)
    if keys is not None:
        return dict(keys)
    keys, index = {}, 0
    for k, layer in enumerate(model.layers):
        if isinstance(layer, Dense):
            weight, bias = model.layer_params(k)
            keys[weight.name] = f"{index}.weight"
            if bias is not None:
                if bias.shape == ():
                    raise SpecError("a shared bias has no nn.Linear counterpart", f"layers[{k}].bias")
                keys[bias.name] = f"{index}.bias"
            index += 1 if layer.activation.name == "identity" else 2
        else:
            index += 1
    return keys


def to_state_dict(params, model):
    """An OrderedDict of float64 torch tensors keyed as the converted torch module's state_dict."""
    torch = _torch()
    shapes = {p.name: p.shape for p in model.params}
    out = OrderedDict()
    for name, key in torch_keys(model).items():
        if name not in params:
            raise SpecError(f"params has no {name!r} (state_dict key {key!r})", name)
        value = _array(params[name])
        if value.shape != shapes[name]:
            raise SpecError(f"shape mismatch: the model has {shapes[name]}, params has {value.shape}", name)
        out[key] = torch.tensor(value, dtype=torch.float64)
    return out


def load_state_dict(state_dict, model):
    """A params dict (float64 arrays) for the generated module from a torch state_dict (tensors or arrays)."""
    keys = torch_keys(model)
    shapes = {p.name: p.shape for p in model.params}
    unexpected = sorted(set(state_dict) - set(keys.values()))
    if unexpected:
        raise SpecError(f"unexpected key {unexpected[0]!r} (the model's keys: {', '.join(keys.values())})", unexpected[0])
    params = {}
    for name, key in keys.items():
        if key not in state_dict:
            raise SpecError(f"missing key {key!r} (parameter {name})", key)
        value = _array(state_dict[key])
        if value.shape != shapes[name]:
            raise SpecError(f"shape mismatch for {key!r}: the model has {shapes[name]}, the state_dict has {value.shape}", key)
        params[name] = value
    return params
