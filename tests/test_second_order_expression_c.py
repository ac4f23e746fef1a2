"""Expression models' second-order C functions: random specs against the NumPy module and torch.func float64."""

import os
import shutil

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from test_random_specs import ExpressionReference, expression_specs, gcc_strict, load_spec, prop_settings, to_toml, torch_expr, uses_t
from test_second_order import close, flatten, unflatten

import symgrad
from symgrad import ExpressionModel, get_loss
from symgrad.spec import load

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="no C compiler (install gcc)")


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    """Compiled C packages go to a temporary cache, not the user's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYMGRAD_CACHE", str(tmp_path_factory.mktemp("symgrad-cache")))
        yield


def torch_loss_term(loss, y, t):
    """The README's per-output loss term l(y, t) in torch."""
    kind = loss.get("kind")
    if kind == "half_sse":
        return (t - y) ** 2 / 2
    if kind in ("sse", "mse"):
        return (t - y) ** 2
    if kind == "bce":
        return -(t * torch.log(y) + (1 - t) * torch.log(1 - y))
    return torch_expr(loss["expression"], {"y": y, "t": t})


class TorchExpression:
    """Outputs and E of an expression spec in torch float64; theta the trainable parameters in HESSIAN_ORDER."""

    def __init__(self, spec, mod, params):
        self.ref = ExpressionReference(spec)
        ex = spec["expression"]
        self.texts = [(ex["outputs"] if "outputs" in ex else {"y": ex["output"]})[n] for n in self.ref.outputs]
        self.order = [name for name, _ in mod.HESSIAN_ORDER]
        self.fixed = {k: torch.tensor(float(v), dtype=torch.float64) for k, v in params.items()}
        self.theta = torch.tensor([float(params[k]) for k in self.order], dtype=torch.float64)

    def outputs(self, theta, X):
        names = dict(self.fixed, **{k: theta[i] for i, k in enumerate(self.order)})
        names.update({n: X[:, k] for k, n in enumerate(self.ref.inputs)})
        return torch.stack([torch.broadcast_to(torch.as_tensor(torch_expr(e, names), dtype=torch.float64), X.shape[:1])
                            for e in self.texts], dim=1)

    def loss_of(self, Y, T):
        ref = self.ref
        avg = ref.loss.get("average_outputs", ref.loss.get("kind") in ("mse", "bce"))
        per = torch_loss_term(ref.loss, Y, T if T is not None else torch.zeros_like(Y)).sum(dim=1)
        per = per / Y.shape[1] if avg else per
        return per.mean() if ref.reduction == "mean" else per.sum()

    def E(self, theta, X, T):
        return self.loss_of(self.outputs(theta, X), T)


def require(condition, why):
    """Skip a drawn example that does not meet ``condition``; in a fixed test, fail with ``why``."""
    if currently_in_test_context():
        assume(condition)
    assert condition, why


def check_spec(spec, seed, tmp_path, batches=(1, 4)):
    """C's input_gradients, jacobian, hvp, gauss_newton_vp and hessian against the NumPy module and torch.func."""
    model = load_spec(to_toml(spec), tmp_path)
    symgrad.generate(model, "numpy", tmp_path / "np", second_order=True)
    symgrad.generate(model, "c", tmp_path / "c", second_order=True)
    gcc_strict(tmp_path / "c" / f"{model.name}_c" / f"{model.name}.c")
    npm = symgrad.import_generated(model.name, tmp_path / "np")
    cm = symgrad.import_generated(f"{model.name}_c", tmp_path / "c")
    assert cm.HESSIAN_ORDER == npm.HESSIAN_ORDER and cm.N_TRAINABLE == npm.N_TRAINABLE
    rng = np.random.default_rng(seed)
    ex = spec["expression"]
    params = {p: np.array(float(v) * rng.uniform(0.5, 1.5)) for p, v in ex["params"].items()}
    ref = TorchExpression(spec, cm, params)
    for n in batches:
        x = rng.uniform(-1.5, 1.5, size=(n, model.n_inputs))
        t = rng.uniform(0.1, 0.9, size=(n, model.n_outputs)) if uses_t(spec["loss"]) else None
        trow = [None] * n if t is None else t
        require(not any(ref.ref.tie(params, x[r], trow[r]) for r in range(n)), "a kink of abs/max/min at a tie")
        X, T = torch.tensor(x), None if t is None else torch.tensor(t)
        theta = ref.theta
        H = torch.func.hessian(lambda th: ref.E(th, X, T))(theta).numpy() if theta.numel() else np.zeros((0, 0))
        gx = torch.func.grad(lambda xx: ref.E(theta, xx, T))(X).numpy()
        J = torch.func.jacrev(lambda xx: ref.outputs(theta, xx).sum(0))(X).permute(1, 0, 2).numpy()
        require(all(np.all(np.isfinite(a)) for a in (H, gx, J)), "the reference is not finite for these data")
        mine = cm.hessian(params, x, t)
        v = rng.normal(size=theta.numel())
        if v.size:
            close(mine, H, 1e-10, "hessian vs torch.func", floor=1e-5)
            close(mine, npm.hessian(params, x, t), 1e-12, "hessian vs NumPy", floor=1e-3)
            assert np.abs(mine - mine.T).max() <= 1e-13 * max(np.abs(mine).max(), 1e-300)
            hv = flatten(cm, cm.hvp(params, x, t, unflatten(cm, v)))
            _, jvp = torch.func.jvp(torch.func.grad(lambda th: ref.E(th, X, T)), (theta,), (torch.tensor(v),))
            close(hv, jvp.numpy(), 1e-10, "hvp vs jvp over grad", floor=1e-5)
            close(hv, flatten(npm, npm.hvp(params, x, t, unflatten(npm, v))), 1e-12, "hvp vs NumPy", floor=1e-3)
            close(hv, mine @ v, 1e-12, "hvp == hessian @ v", floor=1e-3)
        else:
            assert mine.shape == (0, 0) and cm.hvp(params, x, t, {}) == {}
        close(cm.input_gradients(params, x, t), gx, 1e-10, "input_gradients vs torch.func", floor=1e-5)
        close(cm.input_gradients(params, x, t), npm.input_gradients(params, x, t), 1e-12, "input_gradients vs NumPy", floor=1e-3)
        close(cm.jacobian(params, x), J, 1e-10, "jacobian vs torch.func", floor=1e-5)
        close(cm.jacobian(params, x), npm.jacobian(params, x), 1e-12, "jacobian vs NumPy", floor=1e-3)
        if model.loss.convex and v.size:
            Jp = torch.func.jacrev(lambda th: ref.outputs(th, X))(theta).reshape(-1, theta.numel())
            Hl = torch.func.hessian(lambda y: ref.loss_of(y, T))(ref.outputs(theta, X).detach())
            G = (Jp.T @ Hl.reshape(Jp.shape[0], Jp.shape[0]) @ Jp).numpy()
            gn = flatten(cm, cm.gauss_newton_vp(params, x, t, unflatten(cm, v)))
            close(gn, G @ v, 1e-10, "gauss_newton_vp vs J^T H_loss J v", floor=1e-5)
            close(gn, flatten(npm, npm.gauss_newton_vp(params, x, t, unflatten(npm, v))), 1e-12, "gauss_newton_vp vs NumPy", floor=1e-3)
        elif not model.loss.convex:
            with pytest.raises(ValueError, match="second derivative"):
                cm.gauss_newton_vp(params, x, t, unflatten(cm, v))


@prop_settings(int(os.environ.get("SYMGRAD_SECOND_ORDER_EXAMPLES", 8)))
@given(spec=expression_specs(max_depth=2), seed=st.integers(0, 2**32 - 1))
def test_random_expression_models_in_c(tmp_path_factory, spec, seed):
    check_spec(spec, seed, tmp_path_factory.mktemp("spec"))


def test_kinks_follow_torch_and_the_limit_refuses(tmp_path):
    """abs, max, min and relu: their second derivatives away from the kink as torch.func has them (DiracDelta -> 0)."""
    spec = {"name": "kinks", "inputs": ["u", "k"], "loss": {"kind": "mse", "reduction": "sum"},
            "expression": {"outputs": {"p": "abs(w*u) + max(w*u, b*k) + relu(b*u)**2", "q": "min(u, b)*erf(w) + k*b"},
                           "params": {"w": 0.4, "b": -0.7, "c": 0.3}, "freeze": ["c"]}}
    check_spec(spec, 3, tmp_path, batches=(1, 5))
    model = load_spec(to_toml(spec), tmp_path)
    cm = symgrad.import_generated("kinks_c", tmp_path / "c")
    assert cm.HESSIAN_ORDER == (("w", ()), ("b", ())) and not (tmp_path / "c" / "kinks_c" / "kinks.c").read_text().count("malloc")
    x, t = np.array([[0.5, -1.0], [1.2, 0.3]]), np.array([[0.2, 0.4], [0.7, 0.1]])
    p, H = cm.init_params(), np.full((2, 2), np.nan)
    cm.bind_hessian(cm.pack(p), x, t, H)()  # the one-argument C call writes what hessian() returns
    np.testing.assert_array_equal(H, cm.hessian(p, x, t))
    cm._second_order.limit = 1
    with pytest.raises(ValueError, match="at most 1 x 1.*use hvp"):
        cm.hessian(cm.init_params(), x, t)
    assert model.kind == "expression"


def test_worked_expression_examples_compile_in_float32(tmp_path):
    for model in (load("examples/sigmoid_neuron.toml"),
                  ExpressionModel("two_out", inputs=["u", "v"], outputs_expr={"p": "sigmoid(a*u + b*v)", "q": "tanh(a*b - u)"},
                                  params_init={"a": 0.4, "b": -0.7}, loss=get_loss("half_sse"))):
        symgrad.generate(model, "c", tmp_path, second_order=True, dtype="float32")
        gcc_strict(tmp_path / f"{model.name}_c" / f"{model.name}.c")
        symgrad.generate(model, "numpy", tmp_path, second_order=True)
        c32 = symgrad.import_generated(f"{model.name}_c", tmp_path)
        npm = symgrad.import_generated(model.name, tmp_path)
        p = {k: np.asarray(v, dtype=np.float32) for k, v in c32.init_params().items()}
        x = np.array([[0.3, -0.2], [1.1, 0.4]], dtype=np.float32)[:, :model.n_inputs]
        t = np.array([[0.2, 0.7], [0.9, 0.1]], dtype=np.float32)[:, :model.n_outputs] if model.loss.uses_target else None
        H = c32.hessian(p, x, t)
        assert H.dtype == np.float32
        np.testing.assert_allclose(H, npm.hessian({k: v.astype(np.float64) for k, v in p.items()}, x.astype(np.float64),
                                                  None if t is None else t.astype(np.float64)), rtol=1e-4, atol=1e-6)


def test_names_of_the_second_order_arguments(tmp_path):
    """A parameter or input called v, gx, J, H or out (the functions' own arguments) is renamed, NumPy and C alike."""
    spec = {"name": "argnames", "inputs": ["gx", "J"], "loss": "mse",
            "expression": {"outputs": {"H": "tanh(v*gx + out*J)", "work": "sigmoid(v - J)"}, "params": {"v": 0.4, "out": -0.7}}}
    check_spec(spec, 5, tmp_path, batches=(3,))
