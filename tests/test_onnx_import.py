"""ONNX import: graphs built with onnx.helper and exported by PyTorch match after import; params_file is checked."""

import io
import warnings

import numpy as np
import pytest

import symgrad
from symgrad.cli import main
from symgrad.errors import SpecError
from symgrad.render import npz_bytes

onnx = pytest.importorskip("onnx", reason="ONNX import needs the onnx package (the onnx or test extra)")
torch = pytest.importorskip("torch", reason="PyTorch float64 is the gradient oracle; install the test extra")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

F = torch.nn.functional
TORCH_ACT = {"identity": lambda a: a, "relu": F.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "softplus": F.softplus,
             "gelu": F.gelu}


def _graph(nodes, consts, n_in, n_out, opset=17):
    """A float64 model from nodes reading 'x' and writing 'y'; consts: {name: array} as initializers."""
    inits = [numpy_helper.from_array(np.asarray(v, dtype=np.float64), name=k) for k, v in consts.items()]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["batch", n_in])],
                              [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["batch", n_out])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _import(tmp_path, model, loss="mse"):
    """Run `symgrad import` on model; the loaded spec and the generated NumPy module."""
    onnx.save(model, tmp_path / "m.onnx")
    assert main(["import", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "net.toml"), "--loss", loss]) == 0
    net = symgrad.load(tmp_path / "net.toml")
    symgrad.generate(net, "numpy", tmp_path / "gen")
    return net, symgrad.import_generated("net", tmp_path / "gen")


def _torch_loss_and_grads(net, params, x, t):
    """MSE loss and {param: gradient} by PyTorch float64 over the imported layers."""
    p = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    a = torch.tensor(x)
    for layer in net.layers:
        if getattr(layer, "kind", "dense") == "softmax":
            a = torch.softmax(a, dim=1)
            continue
        a = F.linear(a, p[f"{layer.name}.weight"], p.get(f"{layer.name}.bias"))
        act = layer.activation
        if act.name == "leaky_relu":
            a = F.leaky_relu(a, float(act.params["negative_slope"]))
        elif act.name == "elu":
            a = F.elu(a, float(act.params["alpha"]))
        else:
            a = TORCH_ACT[act.name](a)
    loss = F.mse_loss(a, torch.tensor(t))
    loss.backward()
    return loss.item(), {k: v.grad.numpy() for k, v in p.items()}


def _check(net, mod, model, n_in, n_out):
    """Forward against onnx's reference evaluator; loss and gradients against PyTorch float64."""
    rng = np.random.default_rng(0)
    x, t = rng.normal(size=(6, n_in)), rng.uniform(size=(6, n_out))
    params = net.init_params()
    (expected,) = ReferenceEvaluator(model).run(None, {"x": x})
    np.testing.assert_allclose(mod.forward(params, x), expected, rtol=1e-12, atol=1e-14)
    E, grads = mod.loss_and_gradients(params, x, t)
    E_torch, g_torch = _torch_loss_and_grads(net, params, x, t)
    assert E == pytest.approx(E_torch, rel=1e-12)
    assert set(grads) == set(g_torch)
    for k in grads:
        np.testing.assert_allclose(grads[k], g_torch[k], rtol=1e-9, atol=1e-13)


def _weights(seed, *shapes):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s) for s in shapes]


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_with_alpha_beta_and_activations(tmp_path, trans_b):
    w1, b1, w2, b2 = _weights(1, (3, 4) if trans_b == 0 else (4, 3), (4,), (4, 2) if trans_b == 0 else (2, 4), (1, 2))
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["z1"], name="fc1", alpha=0.5, beta=2.0, transB=trans_b),
             helper.make_node("Tanh", ["z1"], ["a1"], name="act1"),
             helper.make_node("Gemm", ["a1", "w2", "b2"], ["z2"], name="fc2", transB=trans_b),
             helper.make_node("LeakyRelu", ["z2"], ["y"], name="act2", alpha=0.25)]
    model = _graph(nodes, {"w1": w1, "b1": b1, "w2": w2, "b2": b2}, 3, 2)
    net, mod = _import(tmp_path, model)
    assert [layer.activation.name for layer in net.layers] == ["tanh", "leaky_relu"]
    assert net.layers[1].activation.params["negative_slope"] == 0.25
    _check(net, mod, model, 3, 2)


def test_matmul_add_activations_and_softmax(tmp_path):
    w1, b1, w2, w3, b3 = _weights(2, (3, 5), (5,), (5, 4), (4, 3), (3,))
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["m1"], name="mm1"),
             helper.make_node("Add", ["b1", "m1"], ["z1"], name="bias1"),  # the constant first
             helper.make_node("Sigmoid", ["z1"], ["a1"]),
             helper.make_node("MatMul", ["a1", "w2"], ["z2"], name="mm2"),  # no bias
             helper.make_node("Elu", ["z2"], ["a2"], alpha=0.75),
             helper.make_node("Identity", ["a2"], ["a2i"]),
             helper.make_node("MatMul", ["a2i", "w3"], ["m3"]),
             helper.make_node("Add", ["m3", "b3"], ["z3"]),
             helper.make_node("Softplus", ["z3"], ["a3"]),
             helper.make_node("Softmax", ["a3"], ["y"], name="sm", axis=1)]
    model = _graph(nodes, {"w1": w1, "b1": b1, "w2": w2, "w3": w3, "b3": b3}, 3, 3)
    net, mod = _import(tmp_path, model)
    assert symgrad.from_onnx(tmp_path / "m.onnx").describe() == net.describe()
    assert [p.name for p in net.params] == ["linear1.weight", "linear1.bias", "linear2.weight", "linear3.weight", "linear3.bias"]
    assert net.layers[-1].kind == "softmax"
    _check(net, mod, model, 3, 3)


def test_pytorch_export_matches_pytorch(tmp_path):
    nn = torch.nn
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 4, bias=False), nn.Tanh(), nn.Linear(4, 3),
                           nn.Softmax(dim=1))
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, torch.zeros(1, 3), buf, dynamo=False, input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {0: "batch"}})
    except Exception as exc:  # the exporter may need onnxscript or be unavailable in this build
        pytest.skip(f"torch.onnx.export (TorchScript exporter) does not work here: {type(exc).__name__}: {exc}")
    model = onnx.load_from_string(buf.getvalue())
    net, mod = _import(tmp_path, model, loss="softmax_cross_entropy")
    params = net.init_params()
    module = module.double()
    for k, v in symgrad.to_state_dict(params, net).items():  # the float32 weights, exactly
        np.testing.assert_array_equal(v.numpy(), module.state_dict()[k].numpy())
    rng = np.random.default_rng(3)
    x = rng.normal(size=(7, 3))
    t = np.eye(3)[rng.integers(3, size=7)]
    xt = torch.tensor(x)
    np.testing.assert_allclose(mod.forward(params, x), module(xt).detach().numpy(), rtol=1e-12, atol=1e-15)
    logits = module[:-1](xt)
    loss = F.cross_entropy(logits, torch.tensor(t.argmax(axis=1)))
    loss.backward()
    E, grads = mod.loss_and_gradients(params, x, t)
    assert E == pytest.approx(loss.item(), rel=1e-12)
    for k, g in symgrad.to_state_dict(grads, net).items():
        np.testing.assert_allclose(g.numpy(), dict(module.named_parameters())[k].grad.numpy(), rtol=1e-9, atol=1e-13)


def test_float_attributes_read_as_the_decimal_written():
    from symgrad.onnx_ops import attributes

    node = helper.make_node("LeakyRelu", ["z"], ["y"], alpha=0.1)  # stored as float32 0.100000001...
    assert attributes(node) == {"alpha": 0.1}


def _fails(tmp_path, model, capsys, *args):
    """`symgrad import` exits 2 and leaves no file behind; returns its message."""
    onnx.save(model, tmp_path / "m.onnx")
    assert main(["import", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "net.toml"), *args]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    return capsys.readouterr().err


def test_unsupported_operator_names_operator_and_node(tmp_path, capsys):
    (w,) = _weights(4, (3, 2))
    nodes = [helper.make_node("MatMul", ["x", "w"], ["z"], name="mm"), helper.make_node("Mul", ["z", "z"], ["y"], name="square")]
    err = _fails(tmp_path, _graph(nodes, {"w": w}, 3, 2), capsys)
    assert "m.onnx: key 'graph.node': Mul node 'square': operator Mul is not supported (supported: Gemm, MatMul" in err


@pytest.mark.parametrize("nodes, message", [
    ([helper.make_node("Relu", ["x"], ["y"], name="r")], "Relu node 'r': an activation must follow a Gemm or a MatMul"),
    ([helper.make_node("MatMul", ["x", "w"], ["z"], name="mm"), helper.make_node("Add", ["z", "x"], ["s"], name="res"),
      helper.make_node("Relu", ["s"], ["r"]), helper.make_node("Tanh", ["r"], ["y"], name="after")],
     "Tanh node 'after': an activation must follow a Gemm or a MatMul (with its bias Add), a Conv, an Add of two computed "
     "values, a Concat, a MaxPool or an AveragePool that has none; it follows layer 'add1' (add, activation relu)"),
    ([helper.make_node("Gemm", ["x", "w"], ["y"], name="g", transA=1)], "Gemm node 'g': transA=1 is not supported"),
    ([helper.make_node("MatMul", ["x", "w"], ["z"]), helper.make_node("Softmax", ["z"], ["y"], name="s", axis=0)],
     "Softmax node 's': axis=0 is not supported"),
    ([helper.make_node("MatMul", ["x", "x"], ["y"], name="xx")], "MatMul node 'xx': its second input 'x' is computed"),
    ([helper.make_node("MatMul", ["x", "w"], ["z"]), helper.make_node("Relu", ["x"], ["y"], name="skip")],
     "Relu node 'skip': an activation must follow a Gemm or a MatMul (with its bias Add), a Conv, an Add of two "
     "computed values, a Concat, a MaxPool or an AveragePool that has none; it follows the graph's input"),
])
def test_graphs_outside_the_supported_subset_are_refused(tmp_path, capsys, nodes, message):
    err = _fails(tmp_path, _graph(nodes, {"w": np.ones((3, 3))}, 3, 3), capsys)
    assert message in err


def test_bad_loss_and_name_are_refused_before_writing(tmp_path, capsys):
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
    model = _graph(nodes, {"w": np.ones((3, 2))}, 3, 2)
    assert "option --loss" in _fails(tmp_path, model, capsys, "--loss", "msee")
    assert "option --name" in _fails(tmp_path, model, capsys, "--name", "class")


def test_not_an_onnx_file(tmp_path, capsys):
    (tmp_path / "m.onnx").write_text("not a model")
    assert main(["import", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "net.toml")]) == 2
    assert "m.onnx: cannot read the ONNX model" in capsys.readouterr().err


def test_import_is_deterministic(tmp_path):
    model = _graph([helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)], {"w": np.ones((2, 3)), "b": [1.0, 2.0]}, 3, 2)
    onnx.save(model, tmp_path / "m.onnx")
    outs = []
    for k in range(2):
        assert main(["import", str(tmp_path / "m.onnx"), "-o", str(tmp_path / f"o{k}" / "net.toml")]) == 0
        outs.append([(tmp_path / f"o{k}" / f).read_bytes() for f in ("net.toml", "net.npz")])
    assert outs[0] == outs[1]


# params_file in a spec

SPEC = """name = "net"
inputs = 2
params_file = "w.npz"

[[layers]]
name = "h"
units = 2

[loss]
kind = "mse"
"""


def _spec(tmp_path, arrays):
    (tmp_path / "spec.toml").write_text(SPEC)
    if arrays is not None:
        (tmp_path / "w.npz").write_bytes(npz_bytes(arrays))
    return tmp_path / "spec.toml"


def test_params_file_gives_the_values(tmp_path):
    net = symgrad.load(_spec(tmp_path, {"h.weight": [[1.0, 2.0], [3.0, 4.0]], "h.bias": [5.0, 6.0]}))
    np.testing.assert_array_equal(net.init_params()["h.weight"], [[1, 2], [3, 4]])
    np.testing.assert_array_equal(net.init_params()["h.bias"], [5, 6])


@pytest.mark.parametrize("arrays, message", [
    (None, "w.npz: file not found"),
    ({"h.weight": np.eye(2)}, "w.npz: no array 'h.bias' (the model's parameters: h.weight, h.bias)"),
    ({"h.weight": np.eye(2), "h.bias": [0.0, 0.0], "o.weight": [1.0]}, "w.npz: array 'o.weight' is not a parameter"),
    ({"h.weight": np.eye(3), "h.bias": [0.0, 0.0]}, "w.npz: array 'h.weight' has shape (3, 3), the model needs (2, 2)"),
    ({"h.weight": [[1.0, np.nan], [0.0, 1.0]], "h.bias": [0.0, 0.0]},
     "w.npz: array 'h.weight' has a NaN or infinite value at index (0, 1)"),
    ({"h.weight": np.eye(2), "h.bias": np.array(["a", "b"])}, "w.npz: array 'h.bias' holds <U1, not numbers"),
])
def test_params_file_errors_name_file_key_and_problem(tmp_path, arrays, message):
    with pytest.raises(SpecError) as err:
        symgrad.load(_spec(tmp_path, arrays))
    assert str(err.value).endswith(f"spec.toml: key 'params_file' (line 3): {message}") or message in str(err.value)
    assert "spec.toml: key 'params_file' (line 3): w.npz: " in str(err.value)
    assert message in str(err.value)


def test_params_file_is_never_unpickled(tmp_path):
    path = _spec(tmp_path, None)
    buf = io.BytesIO()
    np.savez(buf, **{"h.weight": np.array([{"a": 1}], dtype=object), "h.bias": np.zeros(2)})
    (tmp_path / "w.npz").write_bytes(buf.getvalue())
    with pytest.raises(SpecError, match="key 'params_file'.*w.npz: cannot read parameters"):
        symgrad.load(path)


# graph networks: convolutions, pooling, flatten, residual adds, concats


def _shaped(nodes, consts, in_shape, opset=17):
    """A float64 model from nodes reading 'x' of shape (batch, *in_shape) and writing 'y' (batch, outputs)."""
    inits = [numpy_helper.from_array(np.asarray(v, dtype=np.float64), name=k) for k, v in consts.items()]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["batch", *in_shape])],
                              [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["batch", "outputs"])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _conv_op(at, x, w, b=None):
    d = w.dim() - 2
    pads = at.get("pads", [0] * 2 * d)
    flat = [p for k in reversed(range(d)) for p in (pads[k], pads[d + k])]  # F.pad: the last axis first
    conv = F.conv1d if d == 1 else F.conv2d
    return conv(F.pad(x, flat), w, b, stride=at.get("strides", 1), dilation=at.get("dilations", 1))


def _pool_op(kind):
    def run(at, x):
        d, k = x.dim() - 2, at["kernel_shape"]
        s, p = at.get("strides", [1] * d), at.get("pads", [0] * 2 * d)[:d]
        if kind == "max":
            return (F.max_pool1d if d == 1 else F.max_pool2d)(x, k, s, p)
        return (F.avg_pool1d if d == 1 else F.avg_pool2d)(x, k, s, p, count_include_pad=bool(at.get("count_include_pad", 0)))
    return run


# op_type -> torch float64 function of (attributes, *inputs): the oracle runs the ONNX graph itself
TORCH_OPS = {
    "Conv": _conv_op, "MaxPool": _pool_op("max"), "AveragePool": _pool_op("avg"),
    "Flatten": lambda at, x: x.flatten(1), "Add": lambda at, a, b: a + b, "Mul": lambda at, a, b: a * b,
    "Div": lambda at, a, b: a / b, "Erf": lambda at, a: torch.erf(a), "MatMul": lambda at, a, b: a @ b,
    "Gemm": lambda at, a, b, c=None: at.get("alpha", 1.0) * a @ (b.T if at.get("transB", 0) else b)
    + (0 if c is None else at.get("beta", 1.0) * c),
    "Concat": lambda at, *xs: torch.cat(xs, at["axis"]), "Softmax": lambda at, a: torch.softmax(a, at.get("axis", -1)),
    "Relu": lambda at, a: F.relu(a), "Sigmoid": lambda at, a: torch.sigmoid(a), "Tanh": lambda at, a: torch.tanh(a),
    "Softplus": lambda at, a: F.softplus(a), "LeakyRelu": lambda at, a: F.leaky_relu(a, at.get("alpha", 0.01)),
    "Elu": lambda at, a: F.elu(a, at.get("alpha", 1.0)), "Gelu": lambda at, a: F.gelu(a),
    "Identity": lambda at, a: a,
    "Reshape": lambda at, a, s: a.reshape([a.shape[k] if d == 0 else d for k, d in enumerate(s.long().tolist())]),
}


def _onnx_in_torch(model, x, leaves):
    """The ONNX graph's output computed by PyTorch float64, with the initializers as the given leaf tensors."""
    vals = {**leaves, "x": torch.tensor(x)}
    for n in model.graph.node:
        at = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type == "Constant":
            vals[n.output[0]] = torch.tensor(numpy_helper.to_array(at["value"]).astype(np.float64))
            continue
        vals[n.output[0]] = TORCH_OPS[n.op_type](at, *[vals[i] for i in n.input if i])
    return vals[model.graph.output[0].name]


def _worst(a, b):
    """The largest difference relative to the largest entry of b."""
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / max(np.abs(np.asarray(b)).max(), 1e-300))


def _check_graph(tmp_path, model, run_torch=None, batch=3, seed=0):
    """Import, generate NumPy, compare forward, loss and every gradient with PyTorch float64 to 1e-10 relative.

    run_torch(x, leaves) gives the oracle's output from leaves {initializer name: tensor}; by default the ONNX graph
    itself run by PyTorch. Each symgrad parameter is matched to the initializer holding the same numbers (a MatMul's
    transposed).
    """
    net, mod = _import(tmp_path, model)
    inits = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    params = net.init_params()
    match = {}
    for p, v in params.items():
        same = [(k, tr) for k, a in inits.items() for tr in (False, True)[:1 + (a.ndim == 2)]
                if (a.T if tr else a).shape == v.shape and np.array_equal(a.T if tr else a, v)]
        assert len(same) == 1, (p, same)
        match[p] = same[0]
    rng = np.random.default_rng(seed)
    chain = net.kind != "graph"
    x = rng.normal(size=(batch, *((net.n_inputs,) if chain else net.input_shape)))
    t = rng.normal(size=(batch, *((net.n_outputs,) if chain else net.output_shape)))
    leaves = {k: torch.tensor(v, requires_grad=True) for k, v in inits.items()}
    y = (run_torch or (lambda x, leaves: _onnx_in_torch(model, x, leaves)))(x, leaves)
    loss = F.mse_loss(y, torch.tensor(t))
    loss.backward()
    assert _worst(mod.forward(params, x), y.detach().numpy()) < 1e-10
    E, grads = mod.loss_and_gradients(params, x, t)
    assert abs(E - loss.item()) < 1e-10 * abs(loss.item())
    assert set(grads) == set(params)
    ref = {p: leaves[k].grad.numpy().T if tr else leaves[k].grad.numpy() for p, (k, tr) in match.items()}
    errors = {p: _worst(g, ref[p]) for p, g in grads.items()}
    assert max(errors.values()) < 1e-10, errors
    return net


def _const(name, value):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value, dtype=np.float64)))


def test_conv2d_relu_maxpool_flatten_gemm(tmp_path):
    w1, b1, w2, b2 = _weights(5, (3, 2, 3, 3), (3,), (4, 12), (4,))
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c"], name="conv", strides=[2, 1], pads=[1, 0, 1, 0],
                              dilations=[1, 2]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "w2", "b2"], ["z"], transB=1),
             helper.make_node("Tanh", ["z"], ["y"])]
    net = _check_graph(tmp_path, _shaped(nodes, {"w1": w1, "b1": b1, "w2": w2, "b2": b2}, (2, 5, 7)))
    assert symgrad.from_onnx(tmp_path / "m.onnx", name="net").describe() == net.describe()
    assert [n.kind for n in net.nodes] == ["conv2d", "maxpool2d", "flatten", "dense"]
    assert [n.name for n in net.nodes] == ["conv1", "maxpool1", "flatten1", "linear1"]
    assert net.param_names == ("conv1.weight", "conv1.bias", "linear1.weight", "linear1.bias")
    text = (tmp_path / "net.toml").read_text()
    assert "input_shape = [2, 5, 7]" in text and 'kind = "conv2d"' in text and "stride = [2, 1]" in text


def test_conv1d_same_padding_avgpool_matmul_add(tmp_path):
    """Asymmetric pads that are PyTorch's padding="same" split, average pooling counting its padding, no conv bias."""
    w1, w2, b2 = _weights(6, (3, 2, 4), (6, 5), (5,))
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], pads=[1, 2]),
             helper.make_node("Sigmoid", ["c"], ["s"]),
             helper.make_node("AveragePool", ["s"], ["p"], kernel_shape=[3], strides=[3], pads=[1, 1], count_include_pad=1),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("MatMul", ["f", "w2"], ["m"]),
             helper.make_node("Add", ["m", "b2"], ["z"]),
             helper.make_node("Softplus", ["z"], ["y"])]
    net = _check_graph(tmp_path, _shaped(nodes, {"w1": w1, "w2": w2, "b2": b2}, (2, 5)))
    assert net.nodes[0].op.padding == "same" and net.nodes[0].op.bias == "none"
    assert net.nodes[1].kind == "avgpool1d"


def test_residual_add(tmp_path):
    """Two dense blocks with skip connections on a flat input: add layers reading the input and earlier layers."""
    w1, b1, w2, b2, w3 = _weights(7, (5, 4), (5,), (4, 5), (4,), (4, 2))
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["a"]),
             helper.make_node("Gemm", ["a", "w2", "b2"], ["g"], transB=1),
             helper.make_node("Add", ["x", "g"], ["r1"], name="skip1"),
             helper.make_node("Add", ["r1", "x"], ["r2"], name="skip2"),
             helper.make_node("MatMul", ["r2", "w3"], ["y"])]
    net = _check_graph(tmp_path, _shaped(nodes, {"w1": w1, "b1": b1, "w2": w2, "b2": b2, "w3": w3}, (4,)))
    assert [(n.name, n.inputs) for n in net.nodes] == [
        ("linear1", ("x",)), ("linear2", ("linear1",)), ("add1", ("x", "linear2")), ("add2", ("add1", "x")),
        ("linear3", ("add2",))]


def test_concat_of_two_branches_with_softmax_output(tmp_path):
    w1, b1, w2, w3, b3 = _weights(8, (2, 1, 3, 3), (2,), (3, 1, 1, 1), (4, 20), (4,))
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Elu", ["c1"], ["a1"], alpha=0.5),
             helper.make_node("Conv", ["x", "w2"], ["c2"]),
             helper.make_node("Concat", ["a1", "c2"], ["cat"], axis=1),
             helper.make_node("AveragePool", ["cat"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "w3", "b3"], ["z"], transB=1),
             helper.make_node("Softmax", ["z"], ["y"], axis=1)]
    net = _check_graph(tmp_path, _shaped(nodes, {"w1": w1, "b1": b1, "w2": w2, "w3": w3, "b3": b3}, (1, 4, 5)))
    assert net.node("concat1").inputs == ("conv1", "conv2")
    assert net.node("conv2").inputs == ("x",)
    assert net.nodes[-1].activation.kind == "softmax"


def test_activations_after_add_concat_and_pools_are_fused(tmp_path):
    """Relu(Add(x, conv(relu(conv(x))))), the residual block, and activations after MaxPool, AveragePool and Concat: each
    becomes its layer's activation."""
    w1, b1, w2, w3, b3 = _weights(12, (2, 2, 3, 3), (2,), (2, 2, 3, 3), (3, 16), (3,))
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["x", "c2"], ["s"], name="skip"),
             helper.make_node("Relu", ["s"], ["block"]),
             helper.make_node("MaxPool", ["block"], ["mp"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Tanh", ["mp"], ["mpa"]),
             helper.make_node("AveragePool", ["block"], ["ap"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                              count_include_pad=1),
             helper.make_node("LeakyRelu", ["ap"], ["apa"], alpha=0.2),
             helper.make_node("Concat", ["mpa", "apa"], ["cat"], axis=1),
             helper.make_node("Sigmoid", ["cat"], ["cata"]),
             helper.make_node("Flatten", ["cata"], ["f"]),
             helper.make_node("Gemm", ["f", "w3", "b3"], ["y"], transB=1)]
    net = _check_graph(tmp_path, _shaped(nodes, {"w1": w1, "b1": b1, "w2": w2, "w3": w3, "b3": b3}, (2, 4, 4)))
    acts = {n.name: n.activation and n.activation.name for n in net.nodes}
    assert acts == {"conv1": "relu", "conv2": "identity", "add1": "relu", "maxpool1": "tanh", "avgpool1": "leaky_relu",
                    "concat1": "sigmoid", "flatten1": None, "linear1": "identity"}
    assert net.node("add1").inputs == ("x", "conv2")
    text = (tmp_path / "net.toml").read_text()
    assert 'kind = "add"\nname = "add1"\ninputs = ["x", "conv2"]\nactivation = "relu"' in text
    assert "activation_params = { negative_slope = 0.2 }" in text


def _gelu_subgraph(z, y):
    """The nodes PyTorch's exporter writes for the exact GELU before opset 20."""
    return [_const("sqrt2", np.sqrt(2.0)), helper.make_node("Div", [z, "sqrt2"], ["g_div"]),
            helper.make_node("Erf", ["g_div"], ["g_erf"]), _const("one", 1.0),
            helper.make_node("Add", ["g_erf", "one"], ["g_add"]), helper.make_node("Mul", [z, "g_add"], ["g_mul"]),
            _const("half", 0.5), helper.make_node("Mul", ["g_mul", "half"], [y], name="gelu_out")]


ACTIVATIONS = {
    "relu": [helper.make_node("Relu", ["c"], ["a"])],
    "sigmoid": [helper.make_node("Sigmoid", ["c"], ["a"])],
    "tanh": [helper.make_node("Tanh", ["c"], ["a"])],
    "softplus": [helper.make_node("Softplus", ["c"], ["a"])],
    "leaky_relu": [helper.make_node("LeakyRelu", ["c"], ["a"], alpha=0.25)],  # float32 holds these alphas exactly
    "elu": [helper.make_node("Elu", ["c"], ["a"], alpha=0.75)],
    "gelu": [helper.make_node("Gelu", ["c"], ["a"])],  # the operator of opset 20
    "silu": [helper.make_node("Sigmoid", ["c"], ["sg"]), helper.make_node("Mul", ["sg", "c"], ["a"])],
    "gelu_erf": _gelu_subgraph("c", "a"),
}


@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_each_activation_after_a_convolution(tmp_path, act):
    w1, w2, b2 = _weights(9, (2, 2, 2), (3, 8), (3,))
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"]), *ACTIVATIONS[act],
             helper.make_node("Flatten", ["a"], ["f"]), helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], transB=1)]
    net = _check_graph(tmp_path, _shaped(nodes, {"w1": w1, "w2": w2, "b2": b2}, (2, 5), opset=20))
    assert net.nodes[0].activation.name == act.removesuffix("_erf")


def test_fused_activations_after_dense_layers_keep_a_chain(tmp_path):
    """SiLU and GELU subgraphs after Gemm layers of a flat input still give a dense Network."""
    w1, w2 = _weights(10, (4, 3), (2, 4))
    nodes = [helper.make_node("Gemm", ["x", "w1"], ["c"], transB=1), *ACTIVATIONS["silu"],
             helper.make_node("Gemm", ["a", "w2"], ["c2"], transB=1), *_gelu_subgraph("c2", "y")]
    net = _check_graph(tmp_path, _graph(nodes, {"w1": w1, "w2": w2}, 3, 2))
    assert net.kind != "graph" and [d.activation.name for d in net.layers] == ["silu", "gelu"]
    assert "inputs = 3" in (tmp_path / "net.toml").read_text()


def _conv_then(*nodes, conv=None, in_shape=(2, 6, 6), opset=20):
    """A conv2d on x (weight 'w', 3 out channels, 2x2 kernel) followed by ``nodes`` that end in 'y'."""
    first = conv or helper.make_node("Conv", ["x", "w"], ["c"], name="conv")
    return _shaped([first, *nodes], {"w": np.ones((3, in_shape[0], 2, 2)), "w2": np.ones((3, 3, 2, 2))}, in_shape, opset)


@pytest.mark.parametrize("model, message", [
    (_conv_then(conv=helper.make_node("Conv", ["x", "w"], ["y"], name="grouped", group=2), in_shape=(6, 4, 4)),
     "Conv node 'grouped': group=2 is not supported: only group=1"),
    (_conv_then(conv=helper.make_node("Conv", ["x", "w"], ["y"], name="lopsided", pads=[0, 1, 1, 0])),
     "Conv node 'lopsided': pads=[0, 1, 1, 0] is not supported: symgrad pads both ends of an axis equally, or as "
     "padding \"same\""),
    (_conv_then(conv=helper.make_node("Conv", ["x", "w"], ["y"], name="strided", pads=[0, 0, 1, 1], strides=[2, 2])),
     "Conv node 'strided': pads=[0, 0, 1, 1] is not supported"),
    (_conv_then(helper.make_node("MaxPool", ["c"], ["y"], name="ceil", kernel_shape=[2, 2], ceil_mode=1)),
     "MaxPool node 'ceil': ceil_mode=1 is not supported (symgrad's pooling: ceil_mode=0)"),
    (_conv_then(helper.make_node("MaxPool", ["c"], ["y"], name="dil", kernel_shape=[2, 2], dilations=[2, 2])),
     "MaxPool node 'dil': dilations=[2, 2] is not supported"),
    (_conv_then(helper.make_node("MaxPool", ["c"], ["y"], name="odd", kernel_shape=[3, 3], pads=[1, 0, 0, 0])),
     "MaxPool node 'odd': pads=[1, 0, 0, 0] is not supported: symgrad pads both ends of an axis equally"),
    (_conv_then(helper.make_node("AveragePool", ["c"], ["y"], name="avg", kernel_shape=[2, 2], pads=[1, 1, 1, 1])),
     "AveragePool node 'avg': count_include_pad=0 with padding is not supported"),
    (_conv_then(helper.make_node("AveragePool", ["c"], ["y"], name="wide", kernel_shape=[2, 2], pads=[2, 2, 2, 2],
                                 count_include_pad=1)),
     "AveragePool node 'wide': layer 'avgpool1': padding [2, 2] is more than half the kernel 2x2"),
    (_conv_then(helper.make_node("Flatten", ["c"], ["y"], name="flat2", axis=2)),
     "Flatten node 'flat2': axis=2 is not supported: only axis=1"),
    (_conv_then(helper.make_node("Conv", ["x", "w"], ["c2"]), helper.make_node("Concat", ["c", "c2"], ["y"], name="cat",
                                                                               axis=2)),
     "Concat node 'cat': axis=2 is not supported: only axis=1"),
    (_conv_then(helper.make_node("Conv", ["c", "w2"], ["c2"]), helper.make_node("Add", ["c", "c2"], ["y"], name="res")),
     "Add node 'res': layer 'add1': add needs inputs of one shape, got 3x5x5, 3x4x4"),
    (_conv_then(helper.make_node("Relu", ["c"], ["r"]), helper.make_node("Add", ["c", "r"], ["y"], name="both")),
     "Relu node '(unnamed)': its input 'c' is also read by Add node 'both': symgrad applies an activation inside the "
     "layer"),
    (_conv_then(helper.make_node("Reshape", ["c", "w"], ["y"], name="reshape")),
     "Reshape node 'reshape': a Reshape to [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1] is "
     "not supported: only to (batch, -1)"),
    (_conv_then(helper.make_node("Gelu", ["c"], ["y"], name="tanh_gelu", approximate="tanh")),
     "Gelu node 'tanh_gelu': only approximate='none'"),
    (_conv_then(helper.make_node("Gemm", ["c", "w"], ["y"], name="unflat")),
     "Gemm node 'unflat': it reads a value with more than one axis per sample: a Flatten must come first"),
    (_conv_then(helper.make_node("Softmax", ["c"], ["y"], name="sm")),
     "Softmax node 'sm': Softmax of a value with more than one axis per sample is not supported"),
    (_conv_then(helper.make_node("Conv", ["x", "w"], ["unused"], name="dead"), helper.make_node("Relu", ["c"], ["y"])),
     "Conv node 'dead': its output does not reach the graph's output"),
])
def test_graph_nodes_outside_the_supported_subset_are_refused(tmp_path, capsys, model, message):
    err = _fails(tmp_path, model, capsys)
    assert f"m.onnx: key 'graph.node': {message}" in err, err


def test_softmax_inside_a_graph_must_be_the_output_activation(tmp_path, capsys):
    (w,) = _weights(11, (3, 3))
    nodes = [helper.make_node("Gemm", ["x", "w"], ["z"], transB=1), helper.make_node("Softmax", ["z"], ["s"], name="sm"),
             helper.make_node("Add", ["s", "x"], ["y"])]
    err = _fails(tmp_path, _shaped(nodes, {"w": w}, (3,)), capsys)
    assert "Softmax node 'sm': in a graph network softmax is only the output's activation" in err


def test_onnx_file_size_limit(tmp_path, capsys, monkeypatch):
    model = _graph([helper.make_node("MatMul", ["x", "w"], ["y"])], {"w": np.ones((3, 2))}, 3, 2)
    size = len(model.SerializeToString())
    monkeypatch.setenv("SYMGRAD_MAX_ONNX_BYTES", str(size - 1))
    err = _fails(tmp_path, model, capsys)
    assert (f"m.onnx: the ONNX model file's size in bytes is {size}, more than the limit of {size - 1} (set the "
            "environment variable SYMGRAD_MAX_ONNX_BYTES to raise it)") in err
    monkeypatch.setenv("SYMGRAD_MAX_ONNX_BYTES", str(size))
    assert main(["import", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "net.toml")]) == 0
    with pytest.raises(SpecError, match="cannot read the ONNX model: a directory"):
        symgrad.from_onnx(tmp_path)


def test_a_failed_rename_leaves_the_previous_pair(tmp_path, capsys, monkeypatch):
    """The .npz is renamed in first, the spec last; when the spec's rename fails the old .npz comes back."""
    import os

    import symgrad.render

    model = _graph([helper.make_node("MatMul", ["x", "w"], ["y"])], {"w": np.ones((3, 2))}, 3, 2)
    onnx.save(model, tmp_path / "m.onnx")
    (tmp_path / "net.toml").write_text("old spec")
    (tmp_path / "net.npz").write_bytes(b"old weights")
    real = os.replace

    def failing(src, dst):
        if str(dst).endswith("net.toml"):
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(symgrad.render.os, "replace", failing)
    assert main(["import", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "net.toml")]) == 2
    assert "cannot write" in capsys.readouterr().err
    assert (tmp_path / "net.toml").read_text() == "old spec"
    assert (tmp_path / "net.npz").read_bytes() == b"old weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "net.npz", "net.toml"]
    (tmp_path / "net.toml").unlink()
    (tmp_path / "net.npz").unlink()
    assert main(["import", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "net.toml")]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # the new .npz is taken away again


def _export(module, x, opset=None):
    """The ONNX model PyTorch's TorchScript exporter writes (skips the test where it cannot run here)."""
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, x, buf, dynamo=False, input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {0: "batch"}}, **({"opset_version": opset} if opset else {}))
    except Exception as exc:  # the exporter may need onnxscript, missing here; any other failure is the test's
        if not isinstance(exc, ImportError) and "onnxscript" not in str(exc):
            raise
        pytest.skip(f"torch.onnx.export (TorchScript exporter) does not work here: {type(exc).__name__}: {exc}")
    return onnx.load_from_string(buf.getvalue())


class _Block(torch.nn.Module):
    """conv -> SiLU -> avg pool; a residual branch; a concat with a GELU branch; flatten -> linear."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.act = nn.SiLU()
        self.res = nn.Conv2d(3, 3, 3, padding="same", bias=False)
        self.side = nn.Conv2d(2, 2, 2, stride=2, dilation=1)
        self.gelu = nn.GELU()
        self.pool = nn.AvgPool2d(2, padding=1)
        self.mpool = nn.MaxPool2d(2)
        self.fc = nn.Linear(5 * 2 * 2, 4)

    def forward(self, x):
        a = self.act(self.conv(x))
        a = self.mpool(a + torch.tanh(self.res(a)))
        b = self.gelu(self.side(x))
        return self.fc(torch.flatten(self.pool(torch.cat([a, b], 1)), 1))


@pytest.mark.parametrize("opset", [17, 20])  # GELU as the erf subgraph, and as the Gelu operator
def test_pytorch_export_of_a_graph_matches_pytorch(tmp_path, opset):
    torch.manual_seed(1)
    module = _Block()
    model = _export(module, torch.zeros(1, 2, 6, 6), opset)
    module = module.double()
    net = _check_graph(tmp_path, model, lambda x, leaves: torch.func.functional_call(module, leaves, (torch.tensor(x),)))
    assert {n.kind for n in net.nodes} == {"conv2d", "add", "maxpool2d", "concat", "avgpool2d", "flatten", "dense"}
    assert [n.activation.name for n in net.nodes if n.kind == "conv2d"] == ["silu", "tanh", "gelu"]


class _ResNetBlock(torch.nn.Module):
    """A ResNet basic block relu(x + conv(relu(conv(x)))), then relu(maxpool) and sigmoid(avgpool) branches joined by a
    concat under tanh, flatten -> linear."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.conv1 = nn.Conv2d(3, 3, 3, padding=1)
        self.conv2 = nn.Conv2d(3, 3, 3, padding=1, bias=False)
        self.mpool = nn.MaxPool2d(2)
        self.apool = nn.AvgPool2d(2)
        self.fc = nn.Linear(6 * 3 * 2, 2)

    def forward(self, x):
        out = torch.relu(x + self.conv2(torch.relu(self.conv1(x))))
        a, b = torch.relu(self.mpool(out)), torch.sigmoid(self.apool(out))
        return self.fc(torch.flatten(torch.tanh(torch.cat([a, b], 1)), 1))


def test_pytorch_export_of_a_resnet_block_matches_pytorch(tmp_path):
    torch.manual_seed(2)
    module = _ResNetBlock()
    model = _export(module, torch.zeros(1, 3, 6, 5))
    module = module.double()
    net = _check_graph(tmp_path, model, lambda x, leaves: torch.func.functional_call(module, leaves, (torch.tensor(x),)))
    assert [(n.kind, n.activation and n.activation.name) for n in net.nodes] == [
        ("conv2d", "relu"), ("conv2d", "identity"), ("add", "relu"), ("maxpool2d", "relu"), ("avgpool2d", "sigmoid"),
        ("concat", "tanh"), ("flatten", None), ("dense", "identity")]


# recurrent layers and reshapes: PyTorch's exports, and graphs built with onnx.helper


class _Recurrent(torch.nn.Module):
    """A recurrent module (batch_first) into a Linear: its last step out[:, -1], every step, or the top layer's h_n[-1]."""

    def __init__(self, rnn, read):
        super().__init__()
        self.rnn, self.read, self.fc = rnn, read, torch.nn.Linear(rnn.hidden_size, 2)

    def forward(self, x):
        out, h = self.rnn(x)
        if self.read == "h_n":
            return self.fc((h[0] if isinstance(h, tuple) else h)[-1])
        return self.fc(out[:, -1] if self.read == "last" else out)


class _ConvLSTM(torch.nn.Module):
    """Conv1d over (channels, length), transposed to (steps, features) for an LSTM, last step into a Linear."""

    def __init__(self):
        super().__init__()
        self.conv, self.rnn, self.fc = torch.nn.Conv1d(2, 3, 3), torch.nn.LSTM(3, 4, batch_first=True), torch.nn.Linear(4, 2)

    def forward(self, x):
        out, _ = self.rnn(torch.relu(self.conv(x)).transpose(1, 2))
        return self.fc(out[:, -1])


class _ViewMLP(torch.nn.Module):
    """x.view(x.size(0), -1) into Linear -> Tanh -> Linear."""

    def __init__(self):
        super().__init__()
        self.fc, self.fc2 = torch.nn.Linear(12, 5), torch.nn.Linear(5, 2)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc(x.view(x.size(0), -1))))


def _torch_name(p):
    """The PyTorch parameter a symgrad parameter of the modules above comes from: lstm2.weight_ih <- rnn.weight_ih_l1."""
    stem, what = p.split(".")
    if what.startswith(("weight_", "bias_")):
        return f"rnn.{what}_l{int(stem[-1]) - 1}"
    return {"linear1": "fc", "linear2": "fc2", "conv1": "conv"}[stem] + "." + what


def _check_module(tmp_path, module, in_shape, seed=0, model=None):
    """Export module (unless the model is given), import it, generate NumPy; the weights are PyTorch's (float32, exactly),
    and forward, loss and every gradient agree with the module in float64 to 1e-10 relative."""
    torch.manual_seed(seed)
    model = model or _export(module, torch.zeros(2, *in_shape))
    net, mod = _import(tmp_path, model)
    module = module.double()
    params = net.init_params()
    theirs = dict(module.named_parameters())
    assert {_torch_name(p) for p in params} == set(theirs)
    for p, v in params.items():
        np.testing.assert_array_equal(v, theirs[_torch_name(p)].detach().numpy())
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3, *in_shape))
    y = module(torch.tensor(x))
    t = rng.normal(size=tuple(y.shape))
    loss = F.mse_loss(y, torch.tensor(t))
    loss.backward()
    assert _worst(mod.forward(params, x), y.detach().numpy()) < 1e-10
    E, grads = mod.loss_and_gradients(params, x, t)
    assert abs(E - loss.item()) < 1e-10 * abs(loss.item())
    assert set(grads) == set(params)
    errors = {p: _worst(g, theirs[_torch_name(p)].grad.numpy()) for p, g in grads.items()}
    assert max(errors.values()) < 1e-10, errors
    return net


@pytest.mark.parametrize("make, read, kinds", [
    (lambda: torch.nn.RNN(3, 4, batch_first=True), "last", [("rnn", False)]),
    (lambda: torch.nn.RNN(3, 4, 2, nonlinearity="relu", bias=False, batch_first=True), "seq", [("rnn", True)] * 2),
    (lambda: torch.nn.LSTM(3, 4, batch_first=True), "seq", [("lstm", True)]),
    (lambda: torch.nn.LSTM(3, 4, 2, batch_first=True), "last", [("lstm", True), ("lstm", False)]),
    (lambda: torch.nn.GRU(3, 4, batch_first=True), "last", [("gru", False)]),
    (lambda: torch.nn.GRU(3, 4, 2, batch_first=True), "seq", [("gru", True)] * 2),
    (lambda: torch.nn.GRU(3, 4, 2, batch_first=True), "h_n", [("gru", True), ("gru", False)]),
    (lambda: torch.nn.LSTM(3, 4, 2, batch_first=True), "h_n", [("lstm", True), ("lstm", False)]),
])
def test_pytorch_export_of_recurrent_layers_matches_pytorch(tmp_path, make, read, kinds):
    torch.manual_seed(5)
    module = _Recurrent(make(), read)
    net = _check_module(tmp_path, module, (5, 3))
    assert net.input_shape == (5, 3)
    assert [(n.kind, n.op.return_sequences) for n in net.nodes if n.kind != "dense"] == kinds
    rnn = module.rnn
    acts = [rnn.nonlinearity] * rnn.num_layers if isinstance(rnn, torch.nn.RNN) else []
    assert [n.op.activation for n in net.nodes if n.kind == "rnn"] == acts


def test_pytorch_export_of_conv1d_transpose_lstm_matches_pytorch(tmp_path):
    torch.manual_seed(6)
    net = _check_module(tmp_path, _ConvLSTM(), (2, 7))
    assert [n.kind for n in net.nodes] == ["conv1d", "transpose", "lstm", "dense"]


def test_pytorch_export_of_a_view_flatten_matches_pytorch(tmp_path):
    torch.manual_seed(7)
    net = _check_module(tmp_path, _ViewMLP(), (3, 4))
    assert [n.kind for n in net.nodes] == ["flatten", "dense", "dense"]


ONNX_GATES = {"RNN": ("h", "h"), "LSTM": ("iofc", "ifco"), "GRU": ("zrh", "rzh")}  # ONNX's order; PyTorch's, in ONNX's letters


def _onnx_weights(op, rnn):
    """W, R, B of a one-layer PyTorch recurrent module in ONNX's layout: gate blocks in ONNX's order, B = [Wb, Rb]."""
    onnx_order, torch_order = ONNX_GATES[op]
    H = rnn.hidden_size

    def blocks(a):
        a = a.detach().numpy().astype(np.float64)
        return np.concatenate([a[torch_order.index(c) * H:(torch_order.index(c) + 1) * H] for c in onnx_order])
    w, r = blocks(rnn.weight_ih_l0)[None], blocks(rnn.weight_hh_l0)[None]
    b = np.concatenate([blocks(rnn.bias_ih_l0), blocks(rnn.bias_hh_l0)])[None] if rnn.bias else None
    return w, r, b


def _recurrent_graph(op, module, layout, read, at=None, extra=(), in_shape=(5, 3)):
    """x -> op (its weights from module.rnn) -> the output ``read`` ("seq" or "last") in ``layout``'s arrangement ->
    MatMul + Add of module.fc; ``extra`` (name, value) are inputs 4... (sequence_lens, initial_h, ...)."""
    w, r, b = _onnx_weights(op, module.rnn)
    consts = {"W": w, "R": r, "fcw": module.fc.weight.detach().numpy().T, "fcb": module.fc.bias.detach().numpy()}
    if b is not None:
        consts["B"] = b
    inputs = ["x" if layout else "xt", "W", "R", "B" if b is not None else ""] + [name for name, _ in extra]
    consts.update({name: v for name, v in extra if name})
    nodes = [] if layout else [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2])]
    outs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    at = {"hidden_size": module.rnn.hidden_size, "layout": layout, **({"linear_before_reset": 1} if op == "GRU" else {}),
          **(at or {})}
    nodes.append(helper.make_node(op, inputs, outs, name="rec", **at))
    axis = {("seq", 0): 1, ("seq", 1): 2, ("last", 0): 0, ("last", 1): 1}[read, layout]
    nodes += [_const("axes", np.array([axis])), helper.make_node("Squeeze", ["Y" if read == "seq" else "Y_h", "axes"], ["s"])]
    if read == "seq" and not layout:
        nodes.append(helper.make_node("Transpose", ["s"], ["bt"], perm=[1, 0, 2]))
    nodes += [helper.make_node("MatMul", ["bt" if read == "seq" and not layout else "s", "fcw"], ["m"]),
              helper.make_node("Add", ["m", "fcb"], ["y"])]
    model = _shaped(nodes, consts, in_shape)
    for n in model.graph.node:  # Constant values as int64, as ONNX wants axes
        if n.op_type == "Constant":
            n.attribute[0].t.CopyFrom(numpy_helper.from_array(np.array([axis], dtype=np.int64)))
    return model


@pytest.mark.parametrize("op, make, layout, read, at", [
    ("LSTM", lambda: torch.nn.LSTM(3, 4, batch_first=True), 1, "seq", {}),
    ("LSTM", lambda: torch.nn.LSTM(3, 4, batch_first=True), 0, "last", {"activations": ["Sigmoid", "Tanh", "Tanh"]}),
    ("GRU", lambda: torch.nn.GRU(3, 4, bias=False, batch_first=True), 0, "last", {"direction": "forward"}),
    ("GRU", lambda: torch.nn.GRU(3, 4, batch_first=True), 1, "last", {}),
    ("RNN", lambda: torch.nn.RNN(3, 4, nonlinearity="relu", batch_first=True), 1, "last", {"activations": ["Relu"]}),
    ("RNN", lambda: torch.nn.RNN(3, 4, batch_first=True), 0, "seq", {}),
])
def test_onnx_recurrent_operators_in_both_layouts(tmp_path, op, make, layout, read, at):
    torch.manual_seed(8)
    module = _Recurrent(make(), read)
    zeros = [("", None), ("h0", np.zeros((1, 3, 4)))] if op == "GRU" and not layout else []  # initial_h all zeros
    model = _recurrent_graph(op, module, layout, read, at, zeros)
    if at.get("activations") != ["Relu"]:  # onnx's reference RNN has no Relu: the graph is ONNX's reading of the module
        x = np.random.default_rng(1).normal(size=(3, 5, 3))
        (expected,) = ReferenceEvaluator(model).run(None, {"x": x})
        np.testing.assert_allclose(expected, module.double()(torch.tensor(x)).detach().numpy(), rtol=1e-12, atol=1e-14)
    net = _check_module(tmp_path, module.float(), (5, 3), model=model)
    assert [n.kind for n in net.nodes] == [op.lower(), "dense"]
    assert net.nodes[0].op.return_sequences == (read == "seq")


def _refused(op, at=None, extra=(), layout=0, read="last", rnn=None):
    """A recurrent graph _recurrent_graph builds, for the refusal tests."""
    torch.manual_seed(9)
    make = {"RNN": torch.nn.RNN, "LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}[op]
    return _recurrent_graph(op, _Recurrent(rnn or make(3, 4, batch_first=True), read), layout, read, at, extra)


def _with(model, change):
    """The model after change(nodes) edits its node list in place."""
    change(model.graph.node)
    return model


@pytest.mark.parametrize("model, message", [
    (_refused("LSTM", {"direction": "reverse"}), "LSTM node 'rec': direction=reverse is not supported"),
    (_refused("GRU", {"direction": "bidirectional"}), "GRU node 'rec': direction=bidirectional is not supported"),
    (_refused("LSTM", {"clip": 3.0}), "LSTM node 'rec': clip is not supported"),
    (_refused("LSTM", {"input_forget": 1}), "LSTM node 'rec': input_forget=1 is not supported"),
    (_refused("RNN", {"activations": ["Sigmoid"]}), "RNN node 'rec': activations=['Sigmoid'] is not supported: only "
                                                    "['Tanh'] or ['Relu']"),
    (_refused("LSTM", {"activations": ["Sigmoid", "Tanh", "Relu"]}), "LSTM node 'rec': activations="),
    (_refused("RNN", {"activations": ["Relu"], "activation_alpha": [0.5]}), "RNN node 'rec': activation_alpha is not "
                                                                            "supported"),
    (_refused("GRU", {"linear_before_reset": 0}), "GRU node 'rec': linear_before_reset=0 is not supported: symgrad's "
                                                  "GRU is PyTorch's"),
    (_refused("GRU", {"layout": 2}), "GRU node 'rec': layout=2 is not supported"),
    (_refused("RNN", extra=[("lens", np.full(3, 5))]), "RNN node 'rec': input sequence_lens is not supported"),
    (_refused("RNN", extra=[("", None), ("h0", np.full((1, 3, 4), 0.5))]),
     "RNN node 'rec': input initial_h 'h0' is not zeros: symgrad's recurrent layers start from a zero state"),
    (_refused("LSTM", extra=[("", None), ("", None), ("c0", np.ones((1, 3, 4)))]), "input initial_c 'c0' is not zeros"),
    (_refused("LSTM", extra=[("", None), ("", None), ("", None), ("p", np.zeros((1, 12)))]),
     "LSTM node 'rec': input P is not supported"),
    (_refused("LSTM", {"layout": 1}), "LSTM node 'rec': its input X 'xt' is not a sequence in layout=1's order: "
                                      "(batch, steps, features)"),
    (_with(_refused("LSTM"), lambda nodes: nodes[1].input.__setitem__(0, "x")),  # the Transpose before it left out
     "LSTM node 'rec': its input X 'x' is not a sequence in layout=0's order: (steps, batch, features)"),
    (_with(_refused("LSTM"), lambda nodes: nodes[-1].input.__setitem__(0, "Y_c")), "LSTM node 'rec': its output Y_c"),
    (_with(_refused("GRU"), lambda nodes: nodes[0].attribute[0].ints.__setitem__(slice(None), [2, 1, 0])),
     "Transpose node '(unnamed)': perm=[2, 1, 0] is not supported"),
    (_refused("LSTM", {"hidden_size": 3}), "LSTM node 'rec': its weights W (1, 16, 3) and R (1, 16, 4) do not fit "
                                           "hidden_size=3 with 4 gate blocks"),
    (_with(_refused("GRU"), lambda nodes: nodes[3].input.__setitem__(0, "Y")),
     "Squeeze node '(unnamed)': a Squeeze is supported only of the direction axis"),
])
def test_recurrent_graphs_outside_the_supported_subset_are_refused(tmp_path, capsys, model, message):
    assert message in _fails(tmp_path, model, capsys)


def test_a_recurrent_layer_read_at_every_step_and_at_the_last_is_refused(tmp_path, capsys):
    model = _refused("GRU", read="seq")  # the sequence into the MatMul; add the last step into the Add
    model.graph.node.extend([_const("a0", np.array([0])), helper.make_node("Squeeze", ["Y_h", "a0"], ["h"]),
                             helper.make_node("Gemm", ["h", "g"], ["z"], name="fc2", transB=1),
                             helper.make_node("Add", ["y", "z"], ["y2"])])
    model.graph.initializer.append(numpy_helper.from_array(np.ones((2, 4)), "g"))
    model.graph.output[0].name = "y2"
    err = _fails(tmp_path, model, capsys)
    assert "Gemm node 'fc2': it reads the last step of layer 'gru1', which another node reads every step of" in err


@pytest.mark.parametrize("shape, message", [
    ([0, 3, -1], "Reshape node 'r': a Reshape to [0, 3, -1] is not supported: only to (batch, -1)"),
    ([-1, 12], "a Reshape to [-1, 12] is not supported"),
    ([0, -1], None),
])
def test_reshape_only_as_a_flatten(tmp_path, capsys, shape, message):
    (w,) = _weights(2, (2, 12))
    nodes = [helper.make_node("Constant", [], ["s"], value=numpy_helper.from_array(np.array(shape, dtype=np.int64))),
             helper.make_node("Reshape", ["x", "s"], ["f"], name="r"), helper.make_node("Gemm", ["f", "w"], ["y"], transB=1)]
    model = _shaped(nodes, {"w": w}, (3, 4))
    if message:
        assert message in _fails(tmp_path, model, capsys)
    else:
        assert [n.kind for n in _check_graph(tmp_path, model).nodes] == ["flatten", "dense"]


class _SeqConv(torch.nn.Module):
    """An LSTM's sequence transposed to (channels, length) for a Conv1d, flattened by x.view into a Linear."""

    def __init__(self):
        super().__init__()
        self.rnn, self.conv, self.fc = torch.nn.LSTM(3, 4, batch_first=True), torch.nn.Conv1d(4, 2, 3), torch.nn.Linear(6, 2)

    def forward(self, x):
        out, _ = self.rnn(x)
        c = self.conv(out.transpose(1, 2))
        return self.fc(c.view(c.size(0), -1))


class _LastStep(torch.nn.Module):
    """A GRU's last step is the output."""

    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.GRU(3, 4, 2, batch_first=True)

    def forward(self, x):
        return self.rnn(x)[0][:, -1]


def test_pytorch_export_of_a_sequence_into_a_convolution_matches_pytorch(tmp_path):
    torch.manual_seed(10)
    net = _check_module(tmp_path, _SeqConv(), (5, 3))
    assert [n.kind for n in net.nodes] == ["lstm", "transpose", "conv1d", "flatten", "dense"]
    assert net.nodes[0].op.return_sequences


def test_pytorch_export_ending_in_the_last_step_matches_pytorch(tmp_path):
    torch.manual_seed(11)
    net = _check_module(tmp_path, _LastStep(), (5, 3))
    assert [(n.kind, n.op.return_sequences) for n in net.nodes] == [("gru", True), ("gru", False)]


def test_pytorch_export_of_a_sequence_first_recurrent_layer_is_refused(tmp_path, capsys):
    module = _Recurrent(torch.nn.LSTM(3, 4), "last")  # batch_first=False: the graph's axis 0 is the steps
    err = _fails(tmp_path, _export(module, torch.zeros(5, 2, 3)), capsys)
    assert "LSTM node '/rnn/LSTM': its input X 'x' is not a sequence in layout=0's order" in err


@pytest.mark.parametrize("index, message", [
    (np.array(3, dtype=np.int64), "Gather node 'g': indices 3 along axis 0 do not pick entries of the shape it reads"),
    (np.array(-1, dtype=np.int64), "Gather node 'g': a Gather is supported only of a shape, of a recurrent output's last"),
])
def test_gather_outside_a_shape_or_a_sequence_is_refused(tmp_path, capsys, index, message):
    data = "s" if index == 3 else "x"  # a shape (batch, 3, 4) has entries 0..2; x itself is no recurrent output
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Constant", [], ["i"], value=numpy_helper.from_array(index)),
             helper.make_node("Gather", [data, "i"], ["y"], name="g", axis=0 if index == 3 else 1)]
    assert message in _fails(tmp_path, _shaped(nodes, {}, (3, 4)), capsys)


@pytest.mark.parametrize("value, message", [
    (0.0, None),
    (0.5, "ConstantOfShape node 'fill': value=[0.5] is not supported: only zeros"),
])
def test_initial_state_from_constant_of_shape(tmp_path, capsys, value, message):
    torch.manual_seed(12)
    module = _Recurrent(torch.nn.RNN(3, 4, batch_first=True), "last")
    model = _recurrent_graph("RNN", module, 0, "last", extra=[("", None)])
    model.graph.node[1].input.append("h0")  # initial_h = ConstantOfShape([1, batch, 4]) computed from Shape(x)
    shape_nodes = [helper.make_node("Shape", ["x"], ["sx"]), _const("zero", np.array(0)),
                   helper.make_node("Gather", ["sx", "zero"], ["n"]), _const("ax", np.array([0])),
                   helper.make_node("Unsqueeze", ["n", "ax"], ["n1"]), _const("one", np.array([1])),
                   _const("four", np.array([4])), helper.make_node("Concat", ["one", "n1", "four"], ["shp"], axis=0),
                   helper.make_node("ConstantOfShape", ["shp"], ["h0"], name="fill",
                                    value=numpy_helper.from_array(np.array([value])))]
    for n in shape_nodes:
        if n.op_type == "Constant":  # shapes and indices are int64 in ONNX
            t = n.attribute[0].t
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.int64)))
    for k, n in enumerate(shape_nodes):
        model.graph.node.insert(k, n)
    if message:
        assert message in _fails(tmp_path, model, capsys)
    else:
        assert [n.kind for n in _check_module(tmp_path, module, (5, 3), model=model).nodes] == ["rnn", "dense"]
