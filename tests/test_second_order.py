"""Second derivatives: symbolic second partials, and the generated second-order functions, against PyTorch float64."""

import numpy as np
import pytest
import sympy as sp

import symgrad
from symgrad import Dense, Network, Sample, Softmax, get_loss
from symgrad.spec import load

torch = pytest.importorskip("torch", reason="PyTorch is the oracle; install the test extra to run it")
F = torch.nn.functional

MAZUR = ["w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8"]


def torch_mazur(theta):
    W1, W2 = theta[:4].reshape(2, 2), theta[4:].reshape(2, 2)
    x = torch.tensor([0.05, 0.10], dtype=torch.float64)
    t = torch.tensor([0.01, 0.99], dtype=torch.float64)
    o = torch.sigmoid(W2 @ torch.sigmoid(W1 @ x + 0.35) + 0.60)
    return ((t - o) ** 2 / 2).sum()


def evaluate(der, expr):
    """expr (in forward-step symbols) at the model's sample, 30 digits."""
    prog = der.scalar.program
    sample = der.model.sample
    values = {s: float(v) for s, v in zip(prog.inputs, sample.x)}
    values.update({s: float(v) for s, v in zip(prog.targets, [] if sample.t is None else sample.t)})
    init = der.model.init_params()
    values.update({s: float(init[prog.params[s][0]].reshape(-1)[prog.params[s][1]]) for s in prog.params})
    env = der.scalar.evaluate(values)
    return float(expr.xreplace({k: sp.Float(v, 30) for k, v in env.items() if k in expr.free_symbols}))


def test_symbolic_hessian_of_the_worked_example_matches_torch():
    der = symgrad.derive(load("examples/mazur.toml"))
    theta = torch.tensor([0.15, 0.20, 0.25, 0.30, 0.40, 0.45, 0.50, 0.55], dtype=torch.float64)
    H = torch.func.hessian(torch_mazur)(theta).numpy()
    for i, a in enumerate(MAZUR):
        for j, b in enumerate(MAZUR):
            assert evaluate(der, der.hessian(a, b)) == pytest.approx(H[i, j], rel=1e-12, abs=1e-16), (a, b)


def test_symbolic_hessian_is_symmetric_and_expanded_agrees():
    der = symgrad.derive(load("examples/mazur.toml"))
    ab, ba = der.hessian("w1", "w5"), der.hessian("w5", "w1")
    assert evaluate(der, ab) == pytest.approx(evaluate(der, ba), rel=1e-13)
    expanded = der.hessian("w1", "w5", "expanded")
    assert expanded.free_symbols <= set(der.scalar.program.params) | set(der.scalar.program.inputs) | set(
        der.scalar.program.targets)
    assert evaluate(der, expanded) == pytest.approx(evaluate(der, ab), rel=1e-13)
    # the factored form is written in the named steps, not in the weights of the other layer
    assert {s.name for s in der.hessian("w5", "w5").free_symbols} == {"out_h1", "out_o1", "target_o1"}


def test_symbolic_hessian_of_an_expression_model_is_sympys_diff():
    der = symgrad.derive(load("examples/sigmoid_neuron.toml"))
    w, b, xs = sp.symbols("w b x", real=True)
    f = 1 / (1 + sp.exp(-(w * xs + b)))
    at = {w: 0.0, b: 0.0, xs: 1.0}
    for p, q in [("w", "w"), ("w", "b"), ("b", "b")]:
        direct = float(sp.diff(f, sp.Symbol(p, real=True), sp.Symbol(q, real=True)).subs(at))
        assert evaluate(der, der.hessian(p, q)) == pytest.approx(direct, abs=1e-15)


def test_symbolic_hessian_through_a_softmax_layer():
    net = Network("smx", 2, [Dense("h", 3, activation="tanh"), Dense("o", 3), Softmax("sm")],
                  get_loss("softmax_cross_entropy", reduction="sum"), init="xavier", seed=3,
                  sample=Sample(x=[0.3, -0.7], t=[0.2, 0.5, 0.3]))
    der = symgrad.derive(net)
    names = [s.name for s in der.scalar.grads]
    p = {k: torch.tensor(v, dtype=torch.float64) for k, v in net.init_params().items()}

    def E(theta):
        parts, k = {}, 0
        for q in net.params:
            parts[q.name] = theta[k:k + q.size].reshape(q.shape)
            k += q.size
        a = torch.tanh(parts["h.weight"] @ torch.tensor([0.3, -0.7], dtype=torch.float64) + parts["h.bias"])
        z = parts["o.weight"] @ a + parts["o.bias"]
        return -(torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64) * torch.log_softmax(z, 0)).sum()

    theta = torch.cat([p[q.name].reshape(-1) for q in net.params])
    H = torch.func.hessian(E)(theta).numpy()
    for i, j in [(0, 0), (0, 10), (7, 12), (14, 14), (9, 3)]:
        assert evaluate(der, der.hessian(names[i], names[j])) == pytest.approx(H[i, j], rel=1e-11, abs=1e-14)


def test_symbolic_hessian_refuses_unknown_names_and_forms():
    der = symgrad.derive(load("examples/mazur.toml"))
    with pytest.raises(KeyError, match="b1"):
        der.hessian("w1", "b1")  # frozen
    with pytest.raises(ValueError, match="form"):
        der.hessian("w1", "w2", "flat")


# ---------------------------------------------------------------------------------------------
# Generated NumPy modules against PyTorch float64

TORCH_ACTS = {
    "identity": lambda z: z, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu,
    "leaky_relu": lambda z: F.leaky_relu(z, 0.01), "elu": F.elu, "softplus": lambda z: F.softplus(z, threshold=1e9),
    "silu": F.silu, "gelu": F.gelu, "softmax": lambda z: torch.softmax(z, dim=-1),
}
TORCH_LOSSES = {
    "half_sse": lambda a, t: (t - a) ** 2 / 2, "sse": lambda a, t: (t - a) ** 2, "mse": lambda a, t: (t - a) ** 2,
    "bce": lambda a, t: -(t * torch.log(a) + (1 - t) * torch.log(1 - a)),
    "softmax_cross_entropy": lambda a, t: -t * torch.log(a),
}


def flatten(mod, d):
    """A dict shaped like the gradients as one vector in HESSIAN_ORDER."""
    return np.concatenate([np.reshape(d[name], -1) for name, _ in mod.HESSIAN_ORDER])


def unflatten(mod, vec):
    out, k = {}, 0
    for name, shape in mod.HESSIAN_ORDER:
        n = int(np.prod(shape))
        out[name] = np.asarray(vec[k:k + n], dtype=np.float64).reshape(shape)
        k += n
    return out


def build2(tmp_path, model):
    out = tmp_path / f"gen_{model.name}"
    symgrad.generate(model, "numpy", out, second_order=True)
    return symgrad.import_generated(model.name, out)


class TorchNet:
    """E(theta, x) of a Network in PyTorch float64, theta the trainable parameters flattened in HESSIAN_ORDER."""

    def __init__(self, model, mod, params):
        self.model, self.mod = model, mod
        self.fixed = {k: torch.tensor(np.asarray(v, dtype=np.float64)) for k, v in params.items()}
        self.theta = torch.tensor(flatten(mod, params)) if mod.TRAINABLE else torch.zeros(0, dtype=torch.float64)

    def unflatten(self, theta):
        p, k = dict(self.fixed), 0
        for name, shape in self.mod.HESSIAN_ORDER:
            n = int(np.prod(shape))
            p[name] = theta[k:k + n].reshape(shape)
            k += n
        return p

    def forward(self, theta, x):
        p, a = self.unflatten(theta), x
        for layer in self.model.layers:
            if getattr(layer, "is_layer", False):
                a = TORCH_ACTS[layer.kind](a)
                continue
            z = a @ p[f"{layer.name}.weight"].T
            if f"{layer.name}.bias" in p:
                z = z + p[f"{layer.name}.bias"]
            act = layer.activation
            a = TORCH_ACTS[act.kind if act.is_layer else act.name](z)
        return a

    def loss(self, theta, x, t):
        loss = self.model.loss
        per = TORCH_LOSSES[loss.name](self.forward(theta, x), t).sum(dim=-1)
        if loss.average_outputs:
            per = per / self.model.n_outputs
        return per.mean() if loss.reduction == "mean" else per.sum()


def close(actual, ref, rel=1e-10, what="", floor=1e-300):
    """|actual - ref| <= rel * max(|ref|, floor): ``floor`` where every entry is tiny because units saturate (1 - y of
    a sigmoid near 1 keeps eps / (1 - y) relative accuracy in any float64 implementation)."""
    actual, ref = np.asarray(actual), np.asarray(ref)
    assert actual.shape == ref.shape, (what, actual.shape, ref.shape)
    scale = max(np.abs(ref).max(), floor)
    assert np.abs(actual - ref).max() <= rel * scale, (what, np.abs(actual - ref).max() / scale)


def hessian_matches_differences(mod, params, x, t, h=1e-5):
    """Every column of mod.hessian against central differences of mod.gradients, (g(p + h e_i) - g(p - h e_i)) / 2h."""
    H, flat = mod.hessian(params, x, t), flatten(mod, params)
    for i in range(flat.size):
        cols = []
        for sign in (1, -1):
            moved = flat.copy()
            moved[i] += sign * h
            cols.append(flatten(mod, mod.gradients({**params, **unflatten(mod, moved)}, x, t)))
        np.testing.assert_allclose(H[:, i], (cols[0] - cols[1]) / (2 * h), rtol=1e-6, atol=1e-9)


def check_against_torch(mod, model, params, x, t, rel=1e-10):
    """Every second-order function of mod against torch.func on the same model and sample."""
    ref = TorchNet(model, mod, params)
    X, T = torch.tensor(x), torch.tensor(t)
    theta = ref.theta
    H = torch.func.hessian(lambda th: ref.loss(th, X, T))(theta).numpy()
    mine = mod.hessian(params, x, t)
    close(mine, H, rel, "hessian")
    assert np.abs(mine - mine.T).max() <= 1e-13 * max(np.abs(mine).max(), 1e-300)
    rng = np.random.default_rng(0)
    v = rng.normal(size=theta.shape[0])
    hv = mod.hvp(params, x, t, unflatten(mod, v))
    _, jvp = torch.func.jvp(torch.func.grad(lambda th: ref.loss(th, X, T)), (theta,), (torch.tensor(v),))
    close(flatten(mod, hv), jvp.numpy(), rel, "hvp")
    close(flatten(mod, hv), mine @ v, 1e-12, "hvp == hessian @ v")
    gx = torch.func.grad(lambda xx: ref.loss(theta, xx, T))(X).numpy()
    close(mod.input_gradients(params, x, t), gx, rel, "input_gradients")
    J = torch.func.vmap(torch.func.jacrev(lambda xr: ref.forward(theta, xr[None])[0]))(X).numpy()
    close(mod.jacobian(params, x), J, rel, "jacobian")
    if model.loss.convex:
        Jp = torch.func.jacrev(lambda th: ref.forward(th, X))(theta)  # (batch, n_out, P)
        a = ref.forward(theta, X).detach()
        Hl = torch.func.hessian(lambda y: TorchNet.loss_of(model, y, T))(a)  # (b, n, b, n)
        nb = Jp.shape[0] * Jp.shape[1]
        G = (Jp.reshape(nb, -1).T @ Hl.reshape(nb, nb) @ Jp.reshape(nb, -1)).detach().numpy()
        close(flatten(mod, mod.gauss_newton_vp(params, x, t, unflatten(mod, v))), G @ v, rel, "gauss_newton_vp")
        assert np.linalg.eigvalsh(G).min() >= -1e-12 * max(np.abs(G).max(), 1e-300)


def _loss_of(model, a, t):
    loss = model.loss
    per = TORCH_LOSSES[loss.name](a, t).sum(dim=-1)
    if loss.average_outputs:
        per = per / model.n_outputs
    return per.mean() if loss.reduction == "mean" else per.sum()


TorchNet.loss_of = staticmethod(_loss_of)


def make(name, sizes, hidden, last, loss, reduction=None, bias="unit", seed=0, extra=()):
    layers = [Dense(f"l{k + 1}", n, activation=hidden) for k, n in enumerate(sizes[1:-1])]
    layers.append(Dense(f"l{len(sizes) - 1}", sizes[-1], activation=last, bias=bias))
    return Network(name, sizes[0], layers + list(extra), get_loss(loss, None, reduction), init="xavier", seed=seed)


def data(model, batch, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, model.n_inputs))
    if model.loss.name == "softmax_cross_entropy":
        t = rng.dirichlet(np.ones(model.n_outputs), size=batch)
    else:
        t = rng.uniform(0.05, 0.95, size=(batch, model.n_outputs))
    return x, t


HIDDEN = ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "silu", "gelu"]


@pytest.mark.parametrize("act", HIDDEN)
def test_every_activation_against_torch(tmp_path, act):
    model = make(f"act_{act}", [3, 4, 3, 2], act, act, "half_sse", seed=2)
    mod = build2(tmp_path, model)
    for batch in (1, 7):
        x, t = data(model, batch, 3)
        check_against_torch(mod, model, mod.init_params(), x, t)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("loss", ["half_sse", "sse", "mse", "bce", "softmax_cross_entropy"])
def test_every_loss_against_torch(tmp_path, loss, reduction):
    last = {"bce": "sigmoid", "softmax_cross_entropy": "softmax"}.get(loss, "tanh")
    model = make(f"loss_{loss}_{reduction}", [3, 5, 3], "tanh", last, loss, reduction, seed=4)
    mod = build2(tmp_path, model)
    for batch in (1, 6):
        x, t = data(model, batch, 5 + batch)
        check_against_torch(mod, model, mod.init_params(), x, t)


@pytest.mark.parametrize("where", ["output", "middle"])
def test_softmax_layers_against_torch(tmp_path, where):
    if where == "output":
        model = Network("sm_out", 3, [Dense("h", 4, activation="elu"), Dense("o", 3), Softmax("sm")],
                        get_loss("softmax_cross_entropy"), init="xavier", seed=5)
    else:
        model = Network("sm_mid", 3, [Dense("h", 4), Softmax("sm"), Dense("o", 2, activation="sigmoid")],
                        get_loss("bce"), init="xavier", seed=6)
    mod = build2(tmp_path, model)
    for batch in (1, 5):
        x, t = data(model, batch, batch)
        check_against_torch(mod, model, mod.init_params(), x, t)


def test_bias_modes_and_frozen_layers_against_torch(tmp_path):
    model = Network("mixed", 3, [Dense("a", 4, activation="tanh", bias="shared"),
                                 Dense("b", 3, activation="sigmoid", bias="none"),
                                 Dense("c", 2, activation="softplus", freeze=("weight",)),
                                 Dense("d", 2, activation="identity", freeze=("bias",))],
                    get_loss("mse"), init="xavier", seed=8)
    mod = build2(tmp_path, model)
    x, t = data(model, 4, 9)
    check_against_torch(mod, model, mod.init_params(), x, t)
    frozen_below = Network("frozen_below", 2, [Dense("a", 3, activation="tanh", freeze=("weight", "bias")),
                                               Dense("b", 2, activation="sigmoid", bias="shared")],
                           get_loss("half_sse"), init="xavier", seed=1)
    mod = build2(tmp_path, frozen_below)
    x, t = data(frozen_below, 3, 2)
    check_against_torch(mod, frozen_below, mod.init_params(), x, t)


def test_worked_example_against_torch_and_central_differences(tmp_path):
    model = load("examples/mazur.toml")
    mod = build2(tmp_path, model)
    p = mod.init_params()
    x, t = np.array([[0.05, 0.10]]), np.array([[0.01, 0.99]])
    check_against_torch(mod, model, p, x, t, rel=1e-12)
    H, h = mod.hessian(p, x, t), 1e-5
    flat = flatten(mod, p)
    for i in range(flat.size):
        cols = []
        for sign in (1, -1):
            q = dict(p)
            moved = flat.copy()
            moved[i] += sign * h
            q.update(unflatten(mod, moved))
            cols.append(flatten(mod, mod.gradients(q, x, t)))
        np.testing.assert_allclose(H[:, i], (cols[0] - cols[1]) / (2 * h), rtol=1e-6, atol=1e-10)
    blocks = mod.hessian_blocks(H)
    assert blocks["output.weight", "hidden.weight"].shape == (2, 2, 2, 2)
    assert blocks["output.weight", "output.weight"][0, 0, 0, 0] == H[4, 4]
    assert mod.HESSIAN_ORDER == (("hidden.weight", (2, 2)), ("output.weight", (2, 2)))


def test_relu_second_derivative_at_zero_is_zero_as_in_torch(tmp_path):
    model = Network("relu0", 2, [Dense("h", 2, activation="relu", weight=[[1.0, -1.0], [0.5, 0.5]], bias_value=[0.0, -1.0]),
                                 Dense("o", 1, activation="relu", weight=[[1.0, 2.0]], bias_value=[0.0])],
                    get_loss("half_sse"))
    mod = build2(tmp_path, model)
    x, t = np.array([[1.0, 1.0], [2.0, 0.0]]), np.array([[0.5], [0.2]])  # nets of exactly 0 in both layers
    check_against_torch(mod, model, mod.init_params(), x, t)


def test_expression_models(tmp_path):
    model = load("examples/sigmoid_neuron.toml")
    mod = build2(tmp_path, model)
    p = {"w": np.array(0.3), "b": np.array(-0.2)}
    x = np.array([[1.0], [0.5], [-2.0]])
    H = mod.hessian(p, x, None)

    def E(th, xx):
        return torch.sigmoid(th[0] * xx[:, 0] + th[1]).sum()

    theta = torch.tensor([0.3, -0.2], dtype=torch.float64)
    close(H, torch.func.hessian(lambda th: E(th, torch.tensor(x)))(theta).numpy(), 1e-12)
    gx = torch.func.grad(lambda xx: E(theta, xx))(torch.tensor(x)).numpy()
    close(mod.input_gradients(p, x, None), gx, 1e-12)
    close(mod.jacobian(p, x), gx[:, None, :], 1e-12)
    close(flatten(mod, mod.hvp(p, x, None, {"w": 1.0, "b": -2.0})), H @ [1.0, -2.0], 1e-13)
    with pytest.raises(ValueError, match="Gauss-Newton|second derivative"):
        mod.gauss_newton_vp(p, x, None, {"w": 1.0, "b": 0.0})


def test_expression_model_with_two_outputs_and_bce(tmp_path):
    from symgrad import ExpressionModel

    model = ExpressionModel("expr2", inputs=["u", "v"], outputs_expr={"p": "sigmoid(a*u + b*v)", "q": "sigmoid(a*b - u)"},
                            params_init={"a": 0.4, "b": -0.7}, loss=get_loss("bce"))
    mod = build2(tmp_path, model)
    p = mod.init_params()
    x, t = np.array([[0.2, 0.9], [1.5, -0.3]]), np.array([[0.3, 0.8], [0.6, 0.1]])

    def out(th, xx):
        return torch.stack([torch.sigmoid(th[0] * xx[..., 0] + th[1] * xx[..., 1]), torch.sigmoid(th[0] * th[1] - xx[..., 0])], -1)

    def E(th, xx):
        return TORCH_LOSSES["bce"](out(th, xx), torch.tensor(t)).sum(-1).div(2).mean()

    theta, X = torch.tensor([0.4, -0.7], dtype=torch.float64), torch.tensor(x)
    H = torch.func.hessian(lambda th: E(th, X))(theta).numpy()
    close(mod.hessian(p, x, t), H, 1e-11)
    close(mod.input_gradients(p, x, t), torch.func.grad(lambda xx: E(theta, xx))(X).numpy(), 1e-11)
    close(mod.jacobian(p, x), torch.func.vmap(torch.func.jacrev(lambda r: out(theta, r)))(X).numpy(), 1e-11)
    Jp = torch.func.jacrev(lambda th: out(th, X))(theta).reshape(4, 2)
    a = out(theta, X)
    Hl = torch.func.hessian(lambda y: TORCH_LOSSES["bce"](y, torch.tensor(t)).sum(-1).div(2).mean())(a).reshape(4, 4)
    close(flatten(mod, mod.gauss_newton_vp(p, x, t, {"a": 1.0, "b": 0.5})), (Jp.T @ Hl @ Jp).numpy() @ [1.0, 0.5], 1e-11)


def test_hessian_size_limit_and_argument_checks(tmp_path):
    model = make("limit", [3, 4, 2], "tanh", "identity", "half_sse")
    mod = build2(tmp_path, model)
    x, t = data(model, 2, 0)
    mod.HESSIAN_LIMIT = 5
    with pytest.raises(ValueError, match="hvp"):
        mod.hessian(mod.init_params(), x, t)
    with pytest.raises(ValueError, match="missing 'l2.bias'"):
        mod.hvp(mod.init_params(), x, t, {"l1.weight": np.zeros((4, 3)), "l1.bias": np.zeros(4), "l2.weight": np.zeros((2, 4))})
    with pytest.raises(ValueError, match="shape"):
        mod.hessian_blocks(np.zeros((3, 3)))


def test_custom_loss_refuses_gauss_newton(tmp_path):
    model = Network("custom_gn", 2, [Dense("o", 2, activation="tanh")], get_loss(None, "(t - y)**4/4 - y**3"))
    mod = build2(tmp_path, model)
    x, t = data(model, 2, 0)
    with pytest.raises(ValueError, match="never negative"):
        mod.gauss_newton_vp(mod.init_params(), x, t, {"o.weight": np.ones((2, 2)), "o.bias": np.ones(2)})


@pytest.mark.parametrize("act", ["x*tanh(log(1 + exp(x)))", "sin(x) + x**2/4"])
def test_custom_activations_against_central_differences_of_the_gradients(tmp_path, act):
    model = make("custom_act", [2, 3, 2], act, "identity", "mse", seed=3)
    mod = build2(tmp_path, model)
    p = mod.init_params()
    x, t = data(model, 3, 1)
    hessian_matches_differences(mod, p, x, t)


def test_command_line_flag_and_default_output(tmp_path):
    from symgrad.cli import main

    assert main(["generate", "examples/mazur.toml", "-o", str(tmp_path / "a"), "--second-order"]) == 0
    assert main(["generate", "examples/mazur.toml", "-o", str(tmp_path / "b")]) == 0
    with_second = (tmp_path / "a" / "mazur.py").read_text()
    plain = (tmp_path / "b" / "mazur.py").read_text()
    assert "def hvp(" in with_second and "def hvp(" not in plain
    from pathlib import Path

    assert plain == (Path(__file__).resolve().parent.parent / "generated" / "mazur.py").read_text()


def test_float32_module_agrees_with_float64(tmp_path):
    model = make("f32", [3, 4, 2], "tanh", "sigmoid", "bce", seed=1)
    symgrad.generate(model, "numpy", tmp_path / "a", dtype="float32", second_order=True)
    symgrad.generate(model, "numpy", tmp_path / "b", second_order=True)
    lo, hi = symgrad.import_generated("f32", tmp_path / "a"), symgrad.import_generated("f32", tmp_path / "b")
    x, t = data(model, 4, 0)
    H32, H64 = lo.hessian(lo.init_params(), x, t), hi.hessian(hi.init_params(), x, t)
    assert H32.dtype == np.float32
    close(H32, H64, 1e-5, "float32 hessian")


def test_softmax_first_and_frozen_lower_layers(tmp_path):
    first = Network("e_first", 3, [Softmax("sm"), Dense("o", 2, activation="tanh")], get_loss("half_sse"), init="xavier", seed=1)
    frozen = Network("e_frozen", 3, [Dense("h", 3, activation="tanh", freeze=("weight", "bias")), Softmax("sm"),
                                     Dense("o", 2, activation="sigmoid")], get_loss("bce"), init="xavier", seed=1)
    for model in (first, frozen):
        mod = build2(tmp_path, model)
        x, t = data(model, 3, 1)
        check_against_torch(mod, model, mod.init_params(), x, t)
    none = Network("e_none", 2, [Dense("h", 3, activation="tanh", freeze=("weight", "bias")), Softmax("sm")],
                   get_loss("softmax_cross_entropy"), init="xavier", seed=1)
    mod = build2(tmp_path, none)
    x, t = data(none, 3, 1)
    p = mod.init_params()
    ref = TorchNet(none, mod, p)
    X, T = torch.tensor(x), torch.tensor(t)
    assert mod.hvp(p, x, t, {}) == {} and mod.hessian(p, x, t).shape == (0, 0)
    close(mod.input_gradients(p, x, t), torch.func.grad(lambda xx: ref.loss(ref.theta, xx, T))(X).numpy(), 1e-10)
    close(mod.jacobian(p, x), torch.func.vmap(torch.func.jacrev(lambda r: ref.forward(ref.theta, r[None])[0]))(X).numpy(), 1e-10)


def test_second_order_files_are_deterministic_and_ruff_clean(tmp_path):
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    outs = []
    for seed in ("0", "4242"):
        out = tmp_path / f"h{seed}"
        env = dict(os.environ, PYTHONHASHSEED=seed)
        for example in ("mazur_torch", "sigmoid_neuron"):  # a network, an expression model
            subprocess.run([sys.executable, "-m", "symgrad", "generate", f"examples/{example}.toml", "-o", str(out),
                            "--second-order"], cwd=root, env=env, check=True, capture_output=True)
        outs.append({p.name: p.read_bytes() for p in sorted(out.glob("*.py"))})
    assert outs[0] == outs[1]
    if shutil.which("ruff"):
        res = subprocess.run(["ruff", "check", "--no-cache", "--isolated", str(tmp_path / "h0")], capture_output=True, text=True)
        assert res.returncode == 0, res.stdout + res.stderr
