"""ONNX import: a chain of supported ONNX operators becomes a spec (TOML text) and its weights (.npz).

The graph is read node by node in its (topological) order; each node must read the tensor the
previous one wrote. ``OPS`` maps an ``op_type`` to the function that adds that node to the layers
being built, so a new layer kind is one more entry: Gemm and MatMul open a dense layer, an Add of
a constant right after a MatMul is its bias, an activation right after a dense layer is its
activation, Softmax is a parameter-free softmax layer, Identity passes its input on.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from symgrad.checks import check_model_name
from symgrad.errors import SpecError, ToolError, printable
from symgrad.render import check_output_file, npz_bytes, write_atomic
from symgrad.spec.loader import from_dict

INSTALL = "the onnx package is not installed: pip install onnx (or pip install 'symgrad[onnx]')"


def _onnx():
    """The onnx package, or a ToolError saying what to install."""
    try:
        import onnx
        import onnx.numpy_helper  # noqa: F401
    except ImportError:
        raise ToolError(INSTALL) from None
    return onnx


@dataclass
class _Chain:
    """What the nodes read so far built: spec tables of the layers, their weights, and the tensor the chain ends in."""

    file: str
    consts: dict  # tensor name -> ndarray (initializers and Constant outputs)
    current: str  # the tensor holding the running activation
    layers: list = field(default_factory=list)  # spec tables, in order
    values: dict = field(default_factory=dict)  # parameter name -> float64 array
    counts: dict = field(default_factory=dict)  # layer kind -> layers of that kind so far
    open: dict | None = None  # the dense layer an activation or a bias Add may still complete

    def error(self, node, problem):
        return SpecError(f"{node.op_type} node {printable(node.name or '(unnamed)')!r}: {problem}", "graph.node", self.file)

    def const(self, node, name, what):
        """The constant tensor ``name`` as float64; a computed tensor there is an error."""
        if name not in self.consts:
            raise self.error(node, f"its {what} {printable(name)!r} is computed, not a constant: only weights stored "
                                   "in the model (initializers or Constant nodes) are supported")
        return self.consts[name]

    def data_input(self, node, tensor=None):
        """Check that the node reads the chain's tensor (as its first input unless ``tensor`` is given)."""
        tensor = tensor if tensor is not None else (node.input[0] if node.input else None)
        if tensor != self.current:
            got = printable(tensor) if tensor else "nothing"
            raise self.error(node, f"reads {got!r}, not {printable(self.current)!r} (the previous node's output): "
                                   "only a chain of layers is supported")

    def add_layer(self, kind, table):
        self.counts[kind] = self.counts.get(kind, 0) + 1
        table = {"kind": kind, "name": f"{'linear' if kind == 'dense' else kind}{self.counts[kind]}", **table}
        self.layers.append(table)
        return table


def _dense(g, node, weight, bias):
    """Open a dense layer with weight (units x inputs) and bias ((units,) or None)."""
    if not np.all(np.isfinite(weight)) or (bias is not None and not np.all(np.isfinite(bias))):
        raise g.error(node, "its weights hold NaN or infinite values")
    layer = g.add_layer("dense", {"units": weight.shape[0]})
    g.values[f"{layer['name']}.weight"] = weight
    if bias is None:
        layer["bias"] = "none"
    else:
        g.values[f"{layer['name']}.bias"] = bias
    g.open = layer


def _bias(g, node, c, units, what):
    """A bias tensor broadcast to (units,): a scalar, (units,) or (1, units)."""
    if c.size not in (1, units) or (c.ndim == 2 and c.shape[0] != 1) or c.ndim > 2:
        raise g.error(node, f"its {what} has shape {c.shape}; expected a scalar, ({units},) or (1, {units})")
    return np.broadcast_to(c.reshape(-1), (units,)).astype(np.float64)


def _gemm(g, node):
    """Y = alpha * A B' + beta * C with B' = B or B^T: a dense layer with W = alpha B'^T, b = beta C."""
    g.data_input(node)
    at = _attributes(node)
    if at.get("transA", 0):
        raise g.error(node, "transA=1 is not supported (the input must be rows of samples)")
    b = g.const(node, node.input[1], "weight B")
    if b.ndim != 2:
        raise g.error(node, f"its weight B has shape {b.shape}; expected a matrix")
    weight = at.get("alpha", 1.0) * (b if at.get("transB", 0) else b.T)
    has_c = len(node.input) > 2 and node.input[2]
    bias = at.get("beta", 1.0) * _bias(g, node, g.const(node, node.input[2], "bias C"), weight.shape[0], "bias C") if has_c else None
    _dense(g, node, weight, bias)


def _matmul(g, node):
    """Y = A B with a constant matrix B: a dense layer with W = B^T and no bias (an Add may follow)."""
    g.data_input(node)
    b = g.const(node, node.input[1], "second input")
    if b.ndim != 2:
        raise g.error(node, f"its second input has shape {b.shape}; expected a matrix")
    _dense(g, node, b.T.copy(), None)


def _add(g, node):
    """Y = A + C with a constant C right after a dense layer without a bias: that layer's bias."""
    inputs = list(node.input)
    data = [n for n in inputs if n not in g.consts]
    if len(data) != 1:
        raise g.error(node, "an Add of two computed tensors (a residual connection) is not supported")
    layer = g.open
    if layer is None or layer.get("bias") != "none" or "activation" in layer:
        raise g.error(node, "an Add of a constant is supported only as the bias right after a MatMul")
    g.data_input(node, data[0])
    c = g.consts[inputs[1] if inputs[0] == data[0] else inputs[0]]
    g.values[f"{layer['name']}.bias"] = _bias(g, node, c, layer["units"], "constant")
    del layer["bias"]


def _activation(name, params=()):
    """A handler that sets the open dense layer's activation; params: (ONNX attribute, symgrad parameter, default)."""
    def handler(g, node):
        g.data_input(node)
        if g.open is None or "activation" in g.open:
            raise g.error(node, "an activation must follow a Gemm or a MatMul (with its bias Add)")
        at = _attributes(node)
        g.open["activation"] = name
        if params:
            g.open["activation_params"] = {p: at.get(a, d) for a, p, d in params}
    return handler


def _gelu(g, node):
    if _attributes(node).get("approximate", "none") != "none":
        raise g.error(node, "only approximate='none' (the exact erf form) is supported")
    _activation("gelu")(g, node)


def _softmax(g, node):
    """Softmax over the features (axis -1 or 1 of a batch of rows): a parameter-free softmax layer."""
    g.data_input(node)
    axis = _attributes(node).get("axis", -1)
    if axis not in (-1, 1):
        raise g.error(node, f"axis={axis} is not supported: only -1 or 1 (over the features)")
    if not g.layers:
        raise g.error(node, "Softmax comes before any Gemm or MatMul: the first layer must be dense")
    g.add_layer("softmax", {})
    g.open = None


def _identity(g, node):
    g.data_input(node)


# op_type -> handler(chain, node): Conv, MaxPool, AveragePool, Flatten, Add of two tensors and Concat join as their layers land
OPS = {
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Add": _add,
    "Relu": _activation("relu"),
    "Sigmoid": _activation("sigmoid"),
    "Tanh": _activation("tanh"),
    "Softplus": _activation("softplus"),
    "LeakyRelu": _activation("leaky_relu", [("alpha", "negative_slope", 0.01)]),
    "Elu": _activation("elu", [("alpha", "alpha", 1.0)]),
    "Gelu": _gelu,
    "Softmax": _softmax,
    "Identity": _identity,
}


def _attributes(node):
    """{name: value}; float attributes (float32 in ONNX) as the shortest decimal that gives the same float32."""
    from onnx import helper

    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if isinstance(v, float):
            v = float(np.format_float_positional(np.float32(v), unique=True, trim="0"))
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def read_onnx(path):
    """(number of inputs, [spec layer tables], {parameter name: float64 array}) of the ONNX model at path."""
    onnx = _onnx()
    shown = printable(Path(path).name)
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except FileNotFoundError:
        raise SpecError("file not found", file=shown) from None
    except Exception as exc:  # protobuf's DecodeError, onnx's ValidationError, OSError
        raise SpecError(f"cannot read the ONNX model: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                        file=shown) from None
    graph = model.graph
    consts = {t.name: onnx.numpy_helper.to_array(t).astype(np.float64) for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in consts]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise SpecError(f"the graph has {len(inputs)} inputs and {len(graph.output)} outputs; only one of each is supported",
                        "graph", shown)
    dims = [d.dim_value or None for d in inputs[0].type.tensor_type.shape.dim]
    if inputs[0].type.tensor_type.HasField("shape") and len(dims) != 2:
        raise SpecError(f"input {printable(inputs[0].name)!r} has {len(dims)} dimensions; only (batch, features) is supported",
                        "graph.input", shown)
    g = _Chain(shown, consts, inputs[0].name)
    for node in graph.node:
        if node.op_type == "Constant":
            consts[node.output[0]] = onnx.numpy_helper.to_array(node.attribute[0].t).astype(np.float64)
            continue
        if node.domain not in ("", "ai.onnx") or node.op_type not in OPS:
            raise g.error(node, f"operator {node.op_type} is not supported (supported: {', '.join(OPS)})")
        OPS[node.op_type](g, node)
        g.current = node.output[0]
    if g.current != graph.output[0].name:
        raise SpecError(f"the graph's output {printable(graph.output[0].name)!r} is not the end of the chain of layers",
                        "graph.output", shown)
    if not g.layers:
        raise SpecError("the graph has no Gemm or MatMul layer", "graph", shown)
    n_in = g.values[f"{g.layers[0]['name']}.weight"].shape[1]
    if dims and dims[1] not in (None, n_in):
        raise SpecError(f"input {printable(inputs[0].name)!r} has {dims[1]} features, the first layer takes {n_in}",
                        "graph.input", shown)
    return n_in, g.layers, g.values


def _toml_string(text):
    """A TOML basic string."""
    escapes = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
    return '"' + "".join(escapes.get(c, c if c.isprintable() else f"\\u{ord(c):04x}" if ord(c) < 0x10000
                                      else f"\\U{ord(c):08x}") for c in text) + '"'


def _toml_value(v):
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    return _toml_string(v) if isinstance(v, str) else repr(v)


def spec_text(name, n_inputs, layers, loss, params_file, source):
    """The spec of an imported model as TOML (keys in the order the README's tables list them)."""
    lines = [f"# imported from {printable(source)} by symgrad import; weights in {printable(params_file)}",
             f"name = {_toml_string(name)}", f"inputs = {n_inputs}", f"params_file = {_toml_string(params_file)}", ""]
    for layer in layers:
        lines.append("[[layers]]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in layer.items() if not (k == "kind" and v == "dense")]
        lines.append("")
    lines += ["[loss]", f"kind = {_toml_string(loss)}", ""]
    return "\n".join(lines)


def from_onnx(path, loss="mse", name="onnx_model"):
    """A symgrad Network with the weights of the ONNX model at path."""
    n_in, layers, values = read_onnx(path)
    text = spec_text(name, n_in, layers, loss, "<arrays>", Path(path).name)
    return _model(text, values, name)


def _model(text, values, source):
    """The Network the spec text describes, with the values its params_file will hold."""
    import tomllib

    from symgrad.spec.loader import with_values

    data = tomllib.loads(text)
    del data["params_file"]
    model = from_dict(data, source)
    model.params = with_values(model.params, values)
    return model


def import_onnx(path, spec, loss="mse", name=None):
    """Write ``spec`` (TOML) and its weights beside it (same name, .npz); returns the paths written."""
    spec = Path(spec)
    if spec.suffix != ".toml":
        raise SpecError(f"{printable(spec)} does not end in .toml", "--out")
    weights = spec.with_suffix(".npz")
    check_output_file(spec)
    check_output_file(weights)
    name = name or spec.stem
    check_model_name(name, "--name" if name != spec.stem else "--out")
    n_in, layers, values = read_onnx(path)
    text = spec_text(name, n_in, layers, loss, weights.name, Path(path).name)
    try:
        _model(text, values, spec.name)  # what is written loads
    except SpecError as exc:
        raise SpecError(exc.message, "--loss" if exc.key and exc.key.startswith("loss") else exc.key, printable(spec)) from None
    return [write_atomic(weights, npz_bytes(values)), write_atomic(spec, text)]
