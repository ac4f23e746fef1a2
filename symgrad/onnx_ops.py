"""The ONNX operators symgrad reads: one handler per ``op_type`` in ``OPS``, each adding its node to a :class:`Graph`.

Gemm, MatMul and Conv open a layer with weights, an Add of a constant right after a MatMul is its bias,
an activation right after a dense, convolution, pooling, add or concat layer is its activation (so
``Relu(Add(a, b))`` is one add layer, the residual block), MaxPool, AveragePool, Flatten and Concat are
their layers, an Add of two computed tensors is an ``add`` layer (a residual connection), Softmax is a
softmax layer, Identity passes its input on. A new operator is one more entry (the recurrent operators and
the shape and layout nodes around them are in ``onnx_recurrent.py``).
"""

from dataclasses import dataclass, field

import numpy as np

from symgrad.errors import SpecError, printable

FUSED = "symgrad"  # the domain of the nodes PATTERNS make
PREFIX = {"dense": "linear", "conv1d": "conv", "conv2d": "conv", "maxpool1d": "maxpool", "maxpool2d": "maxpool",
          "avgpool1d": "avgpool", "avgpool2d": "avgpool"}  # layer kind -> the stem of its default names
ACTIVATED = ("dense", "conv1d", "conv2d", "add", "concat", "maxpool1d", "maxpool2d", "avgpool1d", "avgpool2d")  # layer
# kinds that take an activation (a flatten takes none)


def node_name(node):
    """How messages name a node: ``Conv node 'conv1'``."""
    return f"{node.op_type} node {printable(node.name or '(unnamed)')!r}"


@dataclass
class Graph:
    """What the nodes read so far built: spec tables of the layers, their weights, and which layer computes each tensor."""

    file: str
    consts: dict  # tensor name -> float64 array (initializers and Constant outputs)
    readers: dict  # tensor name -> the nodes reading it
    outputs: tuple  # the graph's output tensors
    producer: dict  # tensor name -> the layer computing it ("x": the network input)
    rank: dict  # tensor name -> its per-sample rank (dimensions after the batch)
    layers: list = field(default_factory=list)  # spec tables, in order
    sources: dict = field(default_factory=dict)  # layer name -> the names of the layers it reads
    made_by: dict = field(default_factory=dict)  # layer name -> the node that opened it
    views: dict = field(default_factory=dict)  # tensor -> read(node): the layer computing it, decided when it is read
    shapes: dict = field(default_factory=dict)  # tensor -> a shape computed at run time: ints, "batch", None (unknown)
    seqs: dict = field(default_factory=dict)  # tensor -> (arrangement, read) around recurrent operators (onnx_recurrent)
    zeros: set = field(default_factory=set)  # tensors that are zeros filled at run time (ConstantOfShape)
    values: dict = field(default_factory=dict)  # parameter name -> float64 array
    counts: dict = field(default_factory=dict)  # name stem -> layers with that stem so far

    def error(self, node, problem):
        """A SpecError about ``node`` at the key graph.node."""
        return SpecError(f"{node_name(node)}: {problem}", "graph.node", self.file)

    def const(self, node, name, what):
        """The constant tensor ``name`` as float64; a computed tensor there is an error."""
        if name not in self.consts:
            raise self.error(node, f"its {what} {printable(name)!r} is computed, not a constant: only weights stored "
                                   "in the model (initializers or Constant nodes) are supported")
        return self.consts[name]

    def data(self, node, tensor=None):
        """The layer (or "x") computing the node's data input: its first input unless ``tensor`` is given."""
        tensor = node.input[0] if tensor is None else tensor
        if tensor in self.consts:
            raise self.error(node, f"its input {printable(tensor)!r} is a constant: it must be computed from the "
                                   "graph's input")
        if tensor in self.producer:
            return self.producer[tensor]
        if tensor in self.views:
            return self.views[tensor](node)
        raise self.error(node, f"its input {printable(tensor)!r} is not a value symgrad computes from the graph's input "
                               "(a shape, zeros, a recurrent output in ONNX's own arrangement, or a state)")

    def table(self, name):
        """The spec table of layer ``name``."""
        return next(t for t in self.layers if t["name"] == name)

    def only_reader(self, node, tensor, what):
        """Refuse when ``tensor`` is read elsewhere too: the node's ``what`` happens inside the layer computing it."""
        others = [r for r in self.readers.get(tensor, []) if r is not node]
        if others or tensor in self.outputs:
            where = node_name(others[0]) if others else "the graph's output"
            raise self.error(node, f"its input {printable(tensor)!r} is also read by {where}: symgrad applies {what} "
                                   "inside the layer, so the value before it cannot be read elsewhere")

    def add_layer(self, node, kind, sources, table, rank):
        """Append a layer of ``kind`` reading ``sources`` (layer names or "x"); its output has per-sample ``rank`` (None:
        the node's outputs are read through views)."""
        stem = PREFIX.get(kind, kind)
        self.counts[stem] = self.counts.get(stem, 0) + 1
        table = {"kind": kind, "name": f"{stem}{self.counts[stem]}", **table}
        self.layers.append(table)
        self.sources[table["name"]] = tuple(sources)
        self.made_by[table["name"]] = node
        if rank is not None:
            self.produce(node, table["name"], rank)
        return table

    def produce(self, node, layer, rank):
        """The node's output is computed by ``layer`` and has per-sample ``rank``."""
        self.producer[node.output[0]] = layer
        self.rank[node.output[0]] = rank

    def store(self, node, layer, what, value):
        """Keep ``value`` as the parameter ``<layer>.<what>`` (float64); NaN or inf is the node's error."""
        if not np.all(np.isfinite(value)):
            raise self.error(node, "its weights hold NaN or infinite values")
        self.values[f"{layer['name']}.{what}"] = np.asarray(value, dtype=np.float64)


def _dense(g, node, weight, bias, rank):
    """Open a dense layer with weight (units x inputs) and bias ((units,) or None) reading the node's data input."""
    layer = g.add_layer(node, "dense", [g.data(node)], {"units": weight.shape[0]}, rank)
    g.store(node, layer, "weight", weight)
    if bias is None:
        layer["bias"] = "none"
    else:
        g.store(node, layer, "bias", bias)


def _bias(g, node, c, units, what):
    """A bias tensor broadcast to (units,): a scalar, (units,) or (1, units)."""
    if c.size not in (1, units) or (c.ndim == 2 and c.shape[0] != 1) or c.ndim > 2:
        raise g.error(node, f"its {what} has shape {c.shape}; expected a scalar, ({units},) or (1, {units})")
    return np.broadcast_to(c.reshape(-1), (units,)).astype(np.float64)


def _gemm(g, node):
    """Y = alpha * A B' + beta * C with B' = B or B^T: a dense layer with W = alpha B'^T, b = beta C."""
    g.data(node)
    at = attributes(node)
    if at.get("transA", 0):
        raise g.error(node, "transA=1 is not supported (the input must be rows of samples)")
    if g.rank[node.input[0]] != 1:
        raise g.error(node, "it reads a value with more than one axis per sample: a Flatten must come first")
    b = g.const(node, node.input[1], "weight B")
    if b.ndim != 2:
        raise g.error(node, f"its weight B has shape {b.shape}; expected a matrix")
    weight = at.get("alpha", 1.0) * (b if at.get("transB", 0) else b.T)
    has_c = len(node.input) > 2 and node.input[2]
    bias = at.get("beta", 1.0) * _bias(g, node, g.const(node, node.input[2], "bias C"), weight.shape[0], "bias C") if has_c else None
    _dense(g, node, weight, bias, 1)


def _matmul(g, node):
    """Y = A B with a constant matrix B: a dense layer over the last axis with W = B^T and no bias (an Add may follow)."""
    g.data(node)
    b = g.const(node, node.input[1], "second input")
    if b.ndim != 2:
        raise g.error(node, f"its second input has shape {b.shape}; expected a matrix")
    _dense(g, node, b.T.copy(), None, g.rank[node.input[0]])


def _add(g, node):
    """A + C with a constant C right after a dense layer without a bias: its bias; A + B of two computed tensors: an add layer."""
    inputs = list(node.input)
    data = [n for n in inputs if n not in g.consts]
    if not data:
        raise g.error(node, "an Add of two constants has nothing to compute")
    if len(data) == 2:
        ranks = {g.rank[n] for n in data}
        if len(ranks) != 1:
            raise g.error(node, "its inputs have different numbers of axes: an add of two values needs one shape "
                                "(no broadcasting)")
        g.add_layer(node, "add", [g.data(node, n) for n in data], {}, ranks.pop())
        return
    source = g.data(node, data[0])
    layer = None if source == "x" else g.table(source)
    if layer is None or layer["kind"] != "dense" or layer.get("bias") != "none" or "activation" in layer:
        raise g.error(node, "an Add of a constant is supported only as the bias right after a MatMul")
    g.only_reader(node, data[0], "a bias")
    c = g.consts[inputs[1] if inputs[0] == data[0] else inputs[0]]
    g.store(node, layer, "bias", _bias(g, node, c, layer["units"], "constant"))
    del layer["bias"]
    g.produce(node, source, g.rank[data[0]])


def _activation(name, params=()):
    """A handler that sets the activation of the layer it reads (dense, convolution, pooling, add or concat); params:
    (ONNX attribute, symgrad parameter, default)."""
    def handler(g, node):
        source = g.data(node)
        layer = None if source == "x" else g.table(source)
        if layer is None or layer["kind"] not in ACTIVATED or "activation" in layer:
            after = "the graph's input" if layer is None else f"layer {layer['name']!r} ({layer['kind']}" + \
                (f", activation {layer['activation']})" if "activation" in layer else ")")
            raise g.error(node, f"an activation must follow a Gemm or a MatMul (with its bias Add), a Conv, an Add of "
                                f"two computed values, a Concat, a MaxPool or an AveragePool that has none; it follows "
                                f"{after} (symgrad's flatten layers take none)")
        g.only_reader(node, node.input[0], "an activation")
        at = attributes(node)
        layer["activation"] = name
        if params:
            layer["activation_params"] = {p: at.get(a, d) for a, p, d in params}
        g.produce(node, source, g.rank[node.input[0]])
    return handler


def _gelu(g, node):
    """Gelu (approximate="none"): x * Phi(x), the layer's gelu activation."""
    if attributes(node).get("approximate", "none") != "none":
        raise g.error(node, "only approximate='none' (the exact erf form) is supported")
    _activation("gelu")(g, node)


def _softmax(g, node):
    """Softmax over the features (axis -1 or 1 of a batch of rows): a parameter-free softmax layer."""
    source = g.data(node)
    axis = attributes(node).get("axis", -1)
    if axis not in (-1, 1):
        raise g.error(node, f"axis={axis} is not supported: only -1 or 1 (over the features)")
    if not g.layers:
        raise g.error(node, "Softmax comes before any Gemm or MatMul: the first layer must be dense")
    if g.rank[node.input[0]] != 1:
        raise g.error(node, "Softmax of a value with more than one axis per sample is not supported: only over the features")
    g.add_layer(node, "softmax", [source], {}, 1)


def _identity(g, node):
    """Identity: its output is its input's layer."""
    g.produce(node, g.data(node), g.rank[node.input[0]])


def _padding(g, node, at, kernel, strides, dilations):
    """[(before, after)] per spatial axis from ``pads`` or ``auto_pad``."""
    d = len(kernel)
    auto = at.get("auto_pad", "NOTSET")
    if auto == "VALID":
        return [(0, 0)] * d
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        if any(s != 1 for s in strides):
            raise g.error(node, f"auto_pad={auto} with strides {strides} is not supported: only with stride 1")
        totals = [dl * (k - 1) for k, dl in zip(kernel, dilations)]
        return [(t // 2, t - t // 2) if auto == "SAME_UPPER" else (t - t // 2, t // 2) for t in totals]
    if auto != "NOTSET":
        raise g.error(node, f"auto_pad={auto} is not supported")
    pads = at.get("pads", [0] * 2 * d)
    return list(zip(pads[:d], pads[d:]))


def _spatial(g, node, what):
    """The number of spatial axes (1 or 2) of the node's input: (channels, length) or (channels, height, width)."""
    d = g.rank[node.input[0]] - 1
    if d not in (1, 2):
        raise g.error(node, f"{what} needs an input of shape (batch, channels, length) or (batch, channels, height, "
                            f"width), got {d + 2} dimensions")
    return d


def _conv(g, node):
    """Y = W * X + B (cross-correlation, group 1): a conv1d or conv2d layer; its weight is PyTorch's layout already."""
    source = g.data(node)
    at = attributes(node)
    d = _spatial(g, node, "Conv")
    w = g.const(node, node.input[1], "weight W")
    if at.get("group", 1) != 1:
        raise g.error(node, f"group={at['group']} is not supported: only group=1")
    if w.ndim != d + 2:
        raise g.error(node, f"its weight W has shape {w.shape}; expected {d + 2} dimensions")
    kernel = list(w.shape[2:])
    if list(at.get("kernel_shape", kernel)) != kernel:
        raise g.error(node, f"kernel_shape={at['kernel_shape']} does not match its weight's {kernel}")
    strides, dilations = list(at.get("strides", [1] * d)), list(at.get("dilations", [1] * d))
    pads = _padding(g, node, at, kernel, strides, dilations)
    if all(lo == hi for lo, hi in pads):
        padding = [lo for lo, _ in pads]
    elif strides == [1] * d and pads == [(t // 2, t - t // 2) for t in (dl * (k - 1) for k, dl in zip(kernel, dilations))]:
        padding = "same"
    else:
        raise g.error(node, f"pads={[lo for lo, _ in pads] + [hi for _, hi in pads]} is not supported: symgrad pads "
                            "both ends of an axis equally, or as padding \"same\" (stride 1, the smaller half first)")
    table = {"out_channels": w.shape[0], "kernel_size": kernel, "stride": strides, "padding": padding,
             "dilation": dilations}
    layer = g.add_layer(node, f"conv{d}d", [source], table, d + 1)
    g.store(node, layer, "weight", w)
    if len(node.input) > 2 and node.input[2]:
        g.store(node, layer, "bias", g.const(node, node.input[2], "bias B"))
    else:
        layer["bias"] = "none"


def _pool(kind):
    """A handler for MaxPool (kind "maxpool") or AveragePool ("avgpool"): floor mode, equal padding at both ends."""
    def handler(g, node):
        source = g.data(node)
        at = attributes(node)
        d = _spatial(g, node, node.op_type)
        for attr, ok in (("ceil_mode", 0), ("storage_order", 0), ("dilations", [1] * d)):
            if attr in at and at[attr] != ok:
                raise g.error(node, f"{attr}={at[attr]} is not supported (symgrad's pooling: {attr}={ok})")
        if len(node.output) > 1 and node.output[1]:
            raise g.error(node, "its second output (Indices) is not supported")
        kernel = list(at["kernel_shape"])
        strides = list(at.get("strides", [1] * d))
        pads = _padding(g, node, at, kernel, strides, [1] * d)
        if any(lo != hi for lo, hi in pads):
            raise g.error(node, f"pads={[lo for lo, _ in pads] + [hi for _, hi in pads]} is not supported: symgrad "
                                "pads both ends of an axis equally")
        padding = [lo for lo, _ in pads]
        if kind == "avgpool" and any(padding) and not at.get("count_include_pad", 0):
            raise g.error(node, "count_include_pad=0 with padding is not supported: symgrad's average pooling counts "
                                "the padding as zeros (count_include_pad=1, PyTorch's default)")
        g.add_layer(node, f"{kind}{d}d", [source], {"kernel_size": kernel, "stride": strides, "padding": padding}, d + 1)
    return handler


def _flatten(g, node):
    """Flatten(axis=1): a flatten layer, or nothing when each sample is already flat."""
    source = g.data(node)
    rank = g.rank[node.input[0]]
    axis = attributes(node).get("axis", 1)
    if (axis + rank + 1 if axis < 0 else axis) != 1:
        raise g.error(node, f"axis={axis} is not supported: only axis=1 (every sample flattened, the batch kept)")
    if rank == 1:
        g.produce(node, source, 1)
    else:
        g.add_layer(node, "flatten", [source], {}, 1)


def _concat(g, node):
    """Concat along axis 1 (channels, or features) of two or more computed tensors: a concat layer."""
    ranks = {g.rank.get(n) for n in node.input}
    sources = [g.data(node, n) for n in node.input]
    if len(ranks) != 1 or len(sources) < 2:
        raise g.error(node, "a Concat needs two or more inputs with the same number of axes")
    rank = ranks.pop()
    axis = attributes(node)["axis"]
    if (axis + rank + 1 if axis < 0 else axis) != 1:
        raise g.error(node, f"axis={axis} is not supported: only axis=1 (channels, or features)")
    g.add_layer(node, "concat", sources, {}, rank)


# op_type -> handler(graph, node); "symgrad.X" are the nodes PATTERNS fuse
OPS = {
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Add": _add,
    "Conv": _conv,
    "MaxPool": _pool("maxpool"),
    "AveragePool": _pool("avgpool"),
    "Flatten": _flatten,
    "Concat": _concat,
    "Relu": _activation("relu"),
    "Sigmoid": _activation("sigmoid"),
    "Tanh": _activation("tanh"),
    "Softplus": _activation("softplus"),
    "LeakyRelu": _activation("leaky_relu", [("alpha", "negative_slope", 0.01)]),
    "Elu": _activation("elu", [("alpha", "alpha", 1.0)]),
    "Gelu": _gelu,
    f"{FUSED}.SiLU": _activation("silu"),
    "Softmax": _softmax,
    "Identity": _identity,
}


def attributes(node):
    """{name: value}; float attributes (float32 in ONNX) as the shortest decimal that gives the same float32."""
    from onnx import helper

    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if isinstance(v, float):
            v = float(np.format_float_positional(np.float32(v), unique=True, trim="0"))
        if isinstance(v, list):
            v = [x.decode() if isinstance(x, bytes) else x for x in v]
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out
