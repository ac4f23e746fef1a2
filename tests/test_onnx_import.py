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
    from symgrad.onnx_import import _attributes

    node = helper.make_node("LeakyRelu", ["z"], ["y"], alpha=0.1)  # stored as float32 0.100000001...
    assert _attributes(node) == {"alpha": 0.1}


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
    ([helper.make_node("MatMul", ["x", "w"], ["z"], name="mm"), helper.make_node("Add", ["z", "x"], ["y"], name="res")],
     "Add node 'res': an Add of two computed tensors (a residual connection) is not supported"),
    ([helper.make_node("Gemm", ["x", "w"], ["y"], name="g", transA=1)], "Gemm node 'g': transA=1 is not supported"),
    ([helper.make_node("MatMul", ["x", "w"], ["z"]), helper.make_node("Softmax", ["z"], ["y"], name="s", axis=0)],
     "Softmax node 's': axis=0 is not supported"),
    ([helper.make_node("MatMul", ["x", "x"], ["y"], name="xx")], "MatMul node 'xx': its second input 'x' is computed"),
    ([helper.make_node("MatMul", ["x", "w"], ["z"]), helper.make_node("Relu", ["x"], ["y"], name="skip")],
     "Relu node 'skip': reads 'x', not 'z'"),
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
