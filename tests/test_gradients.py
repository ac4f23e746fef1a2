"""Every activation and loss: generated gradients against central differences and PyTorch float64."""

import numpy as np
import pytest

import symgrad
from conftest import central_differences
from symgrad import Dense, Network, get_loss

ACTIVATIONS = ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "silu", "gelu",
               "x*tanh(log(1 + exp(x)))", "sin(x) + x**2/4"]
LOSSES = [("half_sse", None), ("sse", None), ("mse", None), ("bce", None), ("softmax_cross_entropy", None),
          (None, "(t - y)**4/4 + abs(y)")]


def make_net(sizes, hidden, last, loss, seed=0, bias="unit", reduction=None, name="net"):
    layers = [Dense(f"l{k + 1}", n, activation=hidden) for k, n in enumerate(sizes[1:-1])]
    layers.append(Dense(f"l{len(sizes) - 1}", sizes[-1], activation=last, bias=bias))
    kind, expr = loss
    return Network(name, sizes[0], layers, get_loss(kind, expr, reduction), init="xavier", seed=seed)


def sample(model, batch, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, model.n_inputs))
    if model.loss.name == "softmax_cross_entropy":
        y = rng.dirichlet(np.ones(model.n_outputs), size=batch)
    else:
        y = rng.uniform(0.05, 0.95, size=(batch, model.n_outputs))
    return x, y


def output_activation(loss):
    return {"bce": "sigmoid", "softmax_cross_entropy": "softmax"}.get(loss[0], "tanh")


@pytest.mark.parametrize("batch", [5, 300], ids=["per-sample path", "array path"])
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_activation_gradients_match_finite_differences(build, act, batch):
    model = make_net([3, 4, 2], act, "identity", ("half_sse", None), seed=1)
    mod = build(model)
    p = mod.init_params()
    x, y = sample(model, batch, 2)
    g = mod.gradients(p, x, y)
    fd = central_differences(mod, p, x, y)
    noise = 1e-9 * max(1.0, abs(mod.loss(p, x, y)))  # central differences lose ~eps*|E|/h absolutely
    for k in g:
        np.testing.assert_allclose(g[k], fd[k], rtol=1e-6, atol=1e-8 + noise)


@pytest.mark.parametrize("loss", LOSSES, ids=lambda v: v if isinstance(v, str) else None)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_loss_gradients_match_finite_differences(build, loss, reduction):
    model = make_net([3, 4, 3], "tanh", output_activation(loss), loss, seed=3, reduction=reduction)
    mod = build(model)
    p = mod.init_params()
    x, y = sample(model, 4, 5)
    g = mod.gradients(p, x, y)
    fd = central_differences(mod, p, x, y)
    for k in g:
        np.testing.assert_allclose(g[k], fd[k], rtol=1e-6, atol=1e-8)


def test_shared_bias_and_frozen_layers(build):
    layers = [Dense("h", 3, activation="sigmoid", bias="shared", freeze=["weight"]),
              Dense("o", 2, activation="identity", bias="none")]
    model = Network("sb", 2, layers, get_loss("half_sse"))
    mod = build(model)
    p = mod.init_params()
    assert mod.PARAM_SHAPES == {"h.weight": (3, 2), "h.bias": (), "o.weight": (2, 3)}
    assert mod.TRAINABLE == ("h.bias", "o.weight")
    x, y = sample(model, 3, 0)
    g = mod.gradients(p, x, y)
    assert set(g) == {"h.bias", "o.weight"}
    fd = central_differences(mod, p, x, y)
    for k in g:
        np.testing.assert_allclose(g[k], fd[k], rtol=1e-6, atol=1e-9)


def test_expression_model_with_two_outputs(build):
    model = symgrad.ExpressionModel(
        "expr2", ["u", "v"], {"p": "a*u**2 + sin(b*v)", "q": "exp(-a*v)*b"}, {"a": 0.7, "b": -1.3},
        loss=get_loss("mse"),
    )
    mod = build(model)
    p = mod.init_params()
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 2)), rng.normal(size=(6, 2))
    g = mod.gradients(p, x, y)
    fd = central_differences(mod, p, x, y)
    for k in g:
        np.testing.assert_allclose(g[k], fd[k], rtol=1e-7, atol=1e-10)


def test_float32_module_agrees_with_float64(build):
    model = make_net([4, 5, 3], "tanh", "sigmoid", ("bce", None), seed=4)
    m64, m32 = build(model), build(model, "float32")
    p = m64.init_params()
    x, y = sample(model, 7, 1)
    g64 = m64.gradients(p, x, y)
    g32 = m32.gradients(m32.init_params(), x, y)
    assert m32.DTYPE == np.float32
    for k in g64:
        assert g32[k].dtype == np.float32
        np.testing.assert_allclose(g32[k], g64[k], rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# PyTorch float64 as the oracle

TORCH_ACTS = {
    "identity": lambda F, z: z, "sigmoid": lambda F, z: F.sigmoid(z), "tanh": lambda F, z: F.tanh(z),
    "relu": lambda F, z: F.relu(z), "leaky_relu": lambda F, z: F.leaky_relu(z, 0.01), "elu": lambda F, z: F.elu(z),
    "softplus": lambda F, z: F.softplus(z, threshold=1e9), "silu": lambda F, z: F.silu(z),
    "gelu": lambda F, z: F.gelu(z), "softmax": lambda F, z: F.softmax(z, dim=1),
}


def torch_loss(torch, F, name, reduction, y, t):
    if name == "half_sse":
        e = ((t - y) ** 2 / 2).sum(dim=1)
    elif name == "sse":
        e = ((t - y) ** 2).sum(dim=1)
    elif name == "mse":
        return F.mse_loss(y, t, reduction="mean") if reduction == "mean" else F.mse_loss(y, t, reduction="sum") / y.shape[1]
    elif name == "bce":
        e = F.binary_cross_entropy(y, t, reduction="none").mean(dim=1)
    else:
        raise AssertionError(name)
    return e.mean() if reduction == "mean" else e.sum()


@pytest.mark.parametrize("seed", range(12))
def test_random_networks_against_pytorch(build, seed):
    torch = pytest.importorskip("torch", reason="PyTorch is the oracle; install the test extra to run it")
    F = torch.nn.functional
    rng = np.random.default_rng(100 + seed)
    depth = int(rng.integers(1, 4))
    sizes = [int(n) for n in rng.integers(1, 7, size=depth + 1)]
    acts = [str(a) for a in rng.choice([a for a in TORCH_ACTS if a != "softmax"], size=depth)]
    loss = ["half_sse", "sse", "mse", "bce", "softmax_cross_entropy"][seed % 5]
    reduction = ["sum", "mean"][seed % 2]
    last = {"bce": "sigmoid", "softmax_cross_entropy": "softmax"}.get(loss, acts[-1])
    if loss == "softmax_cross_entropy":
        sizes[-1] = max(sizes[-1], 2)
    layers = [Dense(f"l{k}", sizes[k + 1], activation=acts[k]) for k in range(depth - 1)]
    layers.append(Dense(f"l{depth - 1}", sizes[-1], activation=last))
    model = Network(f"rand{seed}", sizes[0], layers, get_loss(loss, None, reduction), init="xavier", seed=seed)
    mod = build(model)
    p = mod.init_params()
    batch = int(rng.integers(1, 9)) if seed % 2 else int(rng.integers(40, 120))  # per-sample and array paths
    x, y = sample(model, batch, seed)
    E, g = mod.loss_and_gradients(p, x, y)

    tp = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in p.items()}
    a = torch.tensor(x)
    for k in range(depth):
        z = a @ tp[f"l{k}.weight"].T + tp[f"l{k}.bias"]
        a = TORCH_ACTS[model.layers[k].activation.name](F, z)
    tt = torch.tensor(y)
    if loss == "softmax_cross_entropy":
        te = F.cross_entropy(z, tt, reduction=reduction)
    else:
        te = torch_loss(torch, F, loss, reduction, a, tt)
    te.backward()
    np.testing.assert_allclose(mod.forward(p, x), a.detach().numpy(), rtol=1e-10, atol=1e-13)
    assert E == pytest.approx(te.item(), rel=1e-10, abs=1e-13)
    for k in g:
        np.testing.assert_allclose(g[k], tp[k].grad.numpy(), rtol=1e-10, atol=1e-13, err_msg=k)


@pytest.mark.parametrize("loss", LOSSES[:5], ids=lambda v: v[0])
def test_per_sample_path_agrees_with_array_path(build, loss):
    """Small networks take straight-line per-sample code for small batches and array code for big ones."""
    model = make_net([2, 3, 2], "sigmoid", output_activation(loss), loss, seed=7, reduction="sum")
    mod = build(model)
    assert "_loss_and_gradients_rows" in open(mod.__file__).read()
    p = mod.init_params()
    x, y = sample(model, 200, 3)  # 200 rows: the array path
    E, g = mod.loss_and_gradients(p, x, y)
    parts = [mod.loss_and_gradients(p, x[i:i + 1], y[i:i + 1]) for i in range(200)]  # one row: per-sample path
    assert E == pytest.approx(sum(e for e, _ in parts), rel=1e-12)
    for k in g:
        np.testing.assert_allclose(g[k], sum(gp[k] for _, gp in parts), rtol=1e-11, atol=1e-14)


def test_output_delta_in_place_never_overwrites_a_value_a_later_factor_reads(build):
    """l = (y - t)^2 sigmoid(y) after silu: the output delta is sigma(y) (t - y) ... (e1 (sigma(y) - 1) + 2),
    a product that reads sigma(y) twice; multiplying in place into sigma(y) gave gradients 13% off."""
    model = make_net([3, 3, 2], "tanh", "silu", (None, "(y - t)**2*sigmoid(y)"), seed=2, reduction="mean")
    mod = build(model)
    x, y = sample(model, 40, 3)
    p = mod.init_params()
    g = mod.gradients(p, x, y)
    for name, fd in central_differences(mod, p, x, y).items():
        np.testing.assert_allclose(g[name], fd, rtol=1e-6, atol=1e-9, err_msg=name)
