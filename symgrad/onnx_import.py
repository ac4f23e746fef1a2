"""ONNX import: a graph of supported ONNX operators becomes a spec (TOML text) and its weights (.npz).

The graph is read node by node in its (topological) order; :data:`symgrad.onnx_ops.OPS` and
:data:`symgrad.onnx_recurrent.OPS` map each ``op_type`` to the handler that adds the node to the layers
being built. Before that, ``PATTERNS`` fuse the subgraphs exporters write for activations older opsets
lack (SiLU as x * Sigmoid(x), GELU as its erf form) into one node each.

A chain from a (batch, features) input through dense and softmax layers becomes a ``Network`` spec
(``inputs = n``); any other graph a graph network spec (``input_shape``, layers naming ``input``/``inputs``).
"""

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from symgrad.checks import check_model_name
from symgrad.errors import SpecError, ToolError, printable
from symgrad.limits import read_bounded
from symgrad.onnx_ops import FUSED, OPS, Graph, node_name
from symgrad.onnx_recurrent import OPS as SEQUENCE_OPS
from symgrad.render import check_output_file, npz_bytes, write_files_atomic
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


# -- patterns: subgraphs that compute one activation, fused into one node before the handlers run


def _only(readers, tensor, op_type):
    """The one node reading ``tensor`` when it is an ``op_type`` node, else None."""
    nodes = readers.get(tensor, [])
    return nodes[0] if len(nodes) == 1 and nodes[0].op_type == op_type and nodes[0].domain in ("", "ai.onnx") else None


def _other(node, tensor, consts, value):
    """Whether the node's input besides ``tensor`` is the constant ``value`` (to float32 precision)."""
    rest = [n for n in node.input if n != tensor]
    return len(rest) == 1 and rest[0] in consts and consts[rest[0]].size == 1 and \
        abs(float(consts[rest[0]].reshape(-1)[0]) - value) <= 1e-6 * abs(value)


def _silu_pattern(node, readers, consts):
    """Sigmoid(z) read only by Mul(z, Sigmoid(z)): x * sigmoid(x)."""
    if node.op_type != "Sigmoid":
        return None
    z, s = node.input[0], node.output[0]
    mul = _only(readers, s, "Mul")
    if mul is None or sorted(mul.input) != sorted([z, s]):
        return None
    return [node, mul], ("SiLU", FUSED)


def _gelu_pattern(node, readers, consts):
    """Div(z, sqrt 2) -> Erf -> Add 1 -> Mul z -> Mul 0.5 (PyTorch's export of the exact GELU before opset 20)."""
    if node.op_type != "Div" or not _other(node, node.input[0], consts, math.sqrt(2)):
        return None
    z = node.input[0]
    erf = _only(readers, node.output[0], "Erf")
    add = erf and _only(readers, erf.output[0], "Add")
    mul = add and _other(add, erf.output[0], consts, 1.0) and _only(readers, add.output[0], "Mul")
    half = mul and sorted(mul.input) == sorted([z, add.output[0]]) and _only(readers, mul.output[0], "Mul")
    if not half or not _other(half, mul.output[0], consts, 0.5):
        return None
    return [node, erf, add, mul, half], ("Gelu", "")


PATTERNS = (_silu_pattern, _gelu_pattern)


def _readers(nodes):
    """{tensor name: the nodes reading it, in order}."""
    out = {}
    for node in nodes:
        for name in node.input:
            if name and node not in out.setdefault(name, []):
                out[name].append(node)
    return out


def _fuse(nodes, consts, outputs):
    """The nodes with each subgraph a pattern recognises replaced by one node at its last node's place (a subgraph
    whose inner values are graph outputs is left as it is)."""
    from onnx import helper

    readers = _readers(nodes)
    replaced = {}  # id(node) -> the fused node at that place, or None (removed)
    for node in nodes:
        if id(node) in replaced:
            continue
        for pattern in PATTERNS:
            found = pattern(node, readers, consts)
            if found and not any(p.output[0] in outputs for p in found[0][:-1]):
                parts, (op_type, domain) = found
                last = parts[-1]
                fused = helper.make_node(op_type, [node.input[0]], [last.output[0]], name=last.name or node.name,
                                         domain=domain)
                replaced.update({id(p): None for p in parts})
                replaced[id(last)] = fused
                break
    return [replaced.get(id(n), n) for n in nodes if replaced.get(id(n), n) is not None]


# -- reading a model


@dataclass
class Imported:
    """An imported graph: the per-sample input shape, the spec tables of its layers, its weights, and which node
    opened each layer."""

    input_shape: tuple
    layers: list
    values: dict
    made_by: dict
    chain: bool  # a Network (``inputs = n``), else a graph network (``input_shape``)

    def input_line(self):
        """The spec line giving the input: ``inputs = n`` for a chain, else ``input_shape = [...]``."""
        return f"inputs = {self.input_shape[0]}" if self.chain else f"input_shape = {list(self.input_shape)}"


def _load(path):
    """The checked ModelProto at path (at most SYMGRAD_MAX_ONNX_BYTES), or a SpecError naming the file."""
    onnx = _onnx()
    shown = printable(Path(path).name)
    try:
        data = read_bounded(path, "SYMGRAD_MAX_ONNX_BYTES", "ONNX model")
    except SpecError as exc:
        raise SpecError(exc.message, file=shown) from None
    try:
        model = onnx.load_model_from_string(data)
        onnx.checker.check_model(model)
    except Exception as exc:  # protobuf's DecodeError, onnx's ValidationError
        raise SpecError(f"cannot read the ONNX model: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                        file=shown) from None
    return model


def _constant(node):
    """The value of a Constant node as float64."""
    from onnx import helper, numpy_helper

    v = helper.get_attribute_value(node.attribute[0])
    return (numpy_helper.to_array(v) if hasattr(v, "dims") else np.array(v)).astype(np.float64)


def read_onnx(path):
    """The :class:`Imported` graph of the ONNX model at path."""
    onnx = _onnx()
    shown = printable(Path(path).name)
    model = _load(path)
    graph = model.graph
    consts = {t.name: onnx.numpy_helper.to_array(t).astype(np.float64) for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in consts]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise SpecError(f"the graph has {len(inputs)} inputs and {len(graph.output)} outputs; only one of each is supported",
                        "graph", shown)
    x = inputs[0]
    dims = [d.dim_value or None for d in x.type.tensor_type.shape.dim] if x.type.tensor_type.HasField("shape") else [None, None]
    if len(dims) not in (2, 3, 4):
        raise SpecError(f"input {printable(x.name)!r} has {len(dims)} dimensions; supported: (batch, features), "
                        "(batch, channels, length), (batch, channels, height, width)", "graph.input", shown)
    nodes = []
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            consts[node.output[0]] = _constant(node)
        else:
            nodes.append(node)
    nodes = _fuse(nodes, consts, {o.name for o in graph.output})
    g = Graph(shown, consts, _readers(nodes), tuple(o.name for o in graph.output), {x.name: "x"}, {x.name: len(dims) - 1})
    handlers = {**OPS, **SEQUENCE_OPS}
    for node in nodes:
        key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        if key not in handlers:
            supported = ", ".join(k for k in handlers if "." not in k)
            raise g.error(node, f"operator {key} is not supported (supported: {supported}; SiLU and GELU as the "
                                "subgraphs PyTorch exports)")
        handlers[key](g, node)
    y = graph.output[0].name
    writer = next((n for n in nodes if y in n.output), None)
    out = g.data(writer, y) if writer is not None and y not in g.producer else g.producer.get(y, "x")
    if out == "x":
        raise SpecError("the graph has no Gemm, MatMul or Conv layer", "graph", shown)
    _check_used(g, out)
    chain = len(dims) == 2 and all(t["kind"] in ("dense", "softmax") for t in g.layers) and all(
        g.sources[t["name"]] == ((g.layers[k - 1]["name"],) if k else ("x",)) for k, t in enumerate(g.layers))
    if chain:
        n_in = g.values[f"{g.layers[0]['name']}.weight"].shape[1]
        if dims[1] not in (None, n_in):
            raise SpecError(f"input {printable(x.name)!r} has {dims[1]} features, the first layer takes {n_in}",
                            "graph.input", shown)
        return Imported((n_in,), g.layers, g.values, g.made_by, True)
    if None in dims[1:]:
        raise SpecError(f"input {printable(x.name)!r} has shape {['?' if n is None else n for n in dims]}: a graph "
                        "network needs every dimension but the batch known", "graph.input", shown)
    return Imported(tuple(dims[1:]), _graph_tables(g), g.values, g.made_by, False)


def _check_used(g, out):
    """Refuse a layer the output does not depend on (symgrad's graphs end in the output layer)."""
    used = {out}
    for t in reversed(g.layers):
        if t["name"] in used:
            used.update(g.sources[t["name"]])
    for t in g.layers:
        if t["name"] not in used:
            raise g.error(g.made_by[t["name"]], "its output does not reach the graph's output")


def _graph_tables(g):
    """The layers as graph-network tables: ``input``/``inputs`` where a layer does not read the one before it, and a
    final softmax as the activation of the dense layer before it."""
    layers = list(g.layers)
    for k, t in enumerate(layers):
        if t["kind"] == "softmax":
            source = g.sources[t["name"]][0]
            prev = layers[k - 1] if k else None
            if k != len(layers) - 1 or prev is None or prev["name"] != source or prev["kind"] != "dense" \
                    or "activation" in prev or any(source in s for n, s in g.sources.items() if n != t["name"]):
                raise g.error(g.made_by[t["name"]], "in a graph network softmax is only the output's activation: it must "
                                                    "be the last node and follow a Gemm or MatMul without an activation")
            prev["activation"] = "softmax"
            layers.pop()
    out = []
    for k, t in enumerate(layers):
        sources = list(g.sources[t["name"]])
        head = {"kind": t["kind"], "name": t["name"]}
        if t["kind"] in ("add", "concat"):
            head["inputs"] = sources
        elif sources != [layers[k - 1]["name"] if k else "x"]:
            head["input"] = sources[0]
        out.append({**head, **t})
    return out


def _toml_string(text):
    """A TOML basic string."""
    escapes = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
    return '"' + "".join(escapes.get(c, c if c.isprintable() else f"\\u{ord(c):04x}" if ord(c) < 0x10000
                                      else f"\\U{ord(c):08x}") for c in text) + '"'


def _toml_value(v):
    """A TOML value: a string, boolean, number, list or inline table."""
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    return _toml_string(v) if isinstance(v, str) else repr(v)


def spec_text(name, imported, loss, params_file, source):
    """The spec of an imported model as TOML (keys in the order the README's tables list them)."""
    lines = [f"# imported from {printable(source)} by symgrad import; weights in {printable(params_file)}",
             f"name = {_toml_string(name)}", imported.input_line(), f"params_file = {_toml_string(params_file)}", ""]
    for layer in imported.layers:
        lines.append("[[layers]]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in layer.items() if not (k == "kind" and v == "dense")]
        lines.append("")
    lines += ["[loss]", f"kind = {_toml_string(loss)}", ""]
    return "\n".join(lines)


def from_onnx(path, loss="mse", name="onnx_model"):
    """A symgrad Network (a chain) or GraphNetwork with the weights of the ONNX model at path."""
    imported = read_onnx(path)
    text = spec_text(name, imported, loss, "<arrays>", Path(path).name)
    return _model(text, imported, name, printable(Path(path).name))


def _model(text, imported, source, shown):
    """The model the spec text describes, with the values its params_file will hold; a layer's error names its node."""
    import tomllib

    from symgrad.spec.loader import with_values

    data = tomllib.loads(text)
    del data["params_file"]
    try:
        model = from_dict(data, source)
    except SpecError as exc:
        key = exc.key or ""
        if not key.startswith("layers["):
            raise
        layer = imported.layers[int(key[len("layers["):key.index("]")])]
        node = imported.made_by[layer["name"]]
        raise SpecError(f"{node_name(node)}: {exc.message}", "graph.node", shown) from None
    model.params = with_values(model.params, imported.values)
    return model


def import_onnx(path, spec, loss="mse", name=None):
    """Write ``spec`` (TOML) and its weights beside it (same name, .npz) as a pair; returns the paths written."""
    spec = Path(spec)
    if spec.suffix != ".toml":
        raise SpecError(f"{printable(spec)} does not end in .toml", "--out")
    weights = spec.with_suffix(".npz")
    check_output_file(spec)
    check_output_file(weights)
    name = name or spec.stem
    check_model_name(name, "--name" if name != spec.stem else "--out")
    imported = read_onnx(path)
    text = spec_text(name, imported, loss, weights.name, Path(path).name)
    try:
        _model(text, imported, spec.name, printable(Path(path).name))  # what is written loads
    except SpecError as exc:
        if exc.key == "graph.node":
            raise
        raise SpecError(exc.message, "--loss" if exc.key and exc.key.startswith("loss") else exc.key, printable(spec)) from None
    return write_files_atomic({weights: npz_bytes(imported.values), spec: text})
