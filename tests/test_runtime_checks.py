"""Generated modules check what they are given, and stay finite and accurate at extreme inputs."""

import warnings

import numpy as np
import pytest

from symgrad import Dense, Network, get_loss


@pytest.fixture(scope="module")
def mazur():
    from generated import mazur

    return mazur


@pytest.mark.parametrize("x,msg", [
    (np.zeros(3), r"x must have shape \(batch, 2\) or \(2,\)"),
    (np.zeros((2, 2, 2)), "x must have shape"),
    (np.zeros((0, 2)), "x must have shape"),
    (np.array(["a", "b"]), "x must hold real numbers"),
    (np.array([1 + 2j, 0]), "x must hold real numbers"),
])
def test_bad_inputs_raise_value_error(mazur, x, msg):
    with pytest.raises(ValueError, match=msg):
        mazur.forward(mazur.init_params(), x)


def test_missing_and_misshapen_params(mazur):
    p = mazur.init_params()
    del p["output.weight"]
    with pytest.raises(ValueError, match="params is missing 'output.weight'"):
        mazur.loss(p, [0.1, 0.2], [0.0, 1.0])
    p = mazur.init_params()
    p["hidden.weight"] = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"params\['hidden.weight'\] has shape \(2, 3\), expected \(2, 2\)"):
        mazur.gradients(p, [0.1, 0.2], [0.0, 1.0])


def test_targets_must_match_rows_and_width(mazur):
    with pytest.raises(ValueError, match="x has 2 rows but y has 1"):
        mazur.loss(mazur.init_params(), np.zeros((2, 2)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"y must have shape \(batch, 2\)"):
        mazur.loss(mazur.init_params(), np.zeros((2, 2)), np.zeros((2, 3)))


def test_nan_inputs_are_refused_when_checks_are_on(mazur):
    with np.errstate(invalid="ignore"):
        assert np.isnan(mazur.forward(mazur.init_params(), [np.nan, 0.0])).all()
    mazur.CHECK_FINITE = True
    try:
        with pytest.raises(ValueError, match="x contains NaN"):
            mazur.forward(mazur.init_params(), [np.nan, 0.0])
    finally:
        mazur.CHECK_FINITE = False


# ---------------------------------------------------------------------------------------------
# Numerical stability at extremes, against PyTorch's fused stable forms

def one_layer(build, act, loss, units=2):
    model = Network(f"x_{act}_{loss}", 1, [Dense("o", units, activation=act, weight=[[1.0]] * units,
                                                 bias_value=[0.0] * units)], get_loss(loss))
    return build(model)


@pytest.mark.parametrize("act", ["sigmoid", "softplus", "tanh", "silu", "relu", "elu"])
def test_activations_finite_at_plus_minus_1000(build, act):
    torch = pytest.importorskip("torch", reason="PyTorch's stable forms are the reference")
    mod = one_layer(build, act, "half_sse")
    x = np.array([[1000.0], [-1000.0], [30.0], [-30.0]])
    t = np.zeros((4, 2))
    p = mod.init_params()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        E, g = mod.loss_and_gradients(p, x, t)
        y = mod.forward(p, x)
        E50, g50 = mod.loss_and_gradients(p, np.repeat(x, 50, axis=0), np.repeat(t, 50, axis=0))  # array path
    assert E50 == pytest.approx(50 * E, rel=1e-12)
    np.testing.assert_allclose(g50["o.weight"], 50 * g["o.weight"], rtol=2e-3)  # 1 - out rounds differently
    tw = torch.tensor(p["o.weight"], requires_grad=True)
    z = torch.tensor(x) @ tw.T
    ty = {"sigmoid": torch.sigmoid, "softplus": torch.nn.functional.softplus,
          "tanh": torch.tanh, "silu": torch.nn.functional.silu, "relu": torch.relu,
          "elu": torch.nn.functional.elu}[act](z)
    (ty**2 / 2).sum().backward()
    assert np.all(np.isfinite(y)) and np.isfinite(E) and np.all(np.isfinite(g["o.weight"]))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12)
    # f'(net) written as out(1 - out) loses relative precision where out rounds to 1 (x = 30): PyTorch's
    # sigmoid backward does the same, so compare with the exact value at a tolerance that states it
    exact = exact_gradient(act, x[:, 0])
    np.testing.assert_allclose(g["o.weight"][:, 0], exact, rtol=2e-3, atol=1e-20)
    np.testing.assert_allclose(tw.grad.numpy()[:, 0], exact, rtol=2e-3, atol=1e-20)


def exact_gradient(act, xs):
    """dE/dw for E = sum over samples and both units of f(w x)^2 / 2 at w = 1, in 50-digit arithmetic."""
    import sympy as sp

    z = sp.Symbol("z")
    f = {"sigmoid": 1 / (1 + sp.exp(-z)), "softplus": sp.log(1 + sp.exp(z)), "tanh": sp.tanh(z),
         "silu": z / (1 + sp.exp(-z)), "relu": sp.Max(z, 0), "elu": sp.Piecewise((z, z > 0), (sp.exp(z) - 1, True))}[act]
    total = sum((f * sp.diff(f, z) * z).subs(z, sp.Integer(int(v))).evalf(50) for v in xs)
    return [float(total)] * 2


def test_softmax_cross_entropy_with_logits_of_1e4(build):
    torch = pytest.importorskip("torch", reason="PyTorch's cross_entropy is the reference")
    model = Network("ce", 3, [Dense("o", 3, activation="softmax", weight=np.eye(3) * 1e4, bias="none")],
                    get_loss("softmax_cross_entropy"))
    mod = build(model)
    p = mod.init_params()
    x = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, -1.0]])
    t = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        E, g = mod.loss_and_gradients(p, x, t)
    tw = torch.tensor(p["o.weight"], requires_grad=True)
    te = torch.nn.functional.cross_entropy(torch.tensor(x) @ tw.T, torch.tensor(t))
    te.backward()
    assert E == pytest.approx(te.item(), rel=1e-12)
    np.testing.assert_allclose(g["o.weight"], tw.grad.numpy(), rtol=1e-12, atol=1e-300)


def test_bce_with_saturated_sigmoid_is_computed_from_logits(build):
    torch = pytest.importorskip("torch", reason="PyTorch's binary_cross_entropy_with_logits is the reference")
    mod = one_layer(build, "sigmoid", "bce", units=1)
    text = open(mod.__file__).read()
    assert "log(y) with y = sigmoid(net) is computed as -softplus(-net)" in text
    x = np.array([[800.0], [-800.0], [40.0], [-40.0]])
    t = np.array([[0.0], [1.0], [0.0], [1.0]])
    p = mod.init_params()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        E, g = mod.loss_and_gradients(p, x, t)
    tw = torch.tensor(p["o.weight"], requires_grad=True)
    te = torch.nn.functional.binary_cross_entropy_with_logits(torch.tensor(x) @ tw.T, torch.tensor(t))
    te.backward()
    assert np.isfinite(E) and E == pytest.approx(te.item(), rel=1e-12)
    np.testing.assert_allclose(g["o.weight"], tw.grad.numpy(), rtol=1e-12)
