"""A new activation and a new parameter-free layer kind, defined here and nowhere in symgrad/.

The activation (shifted softplus, written with exp and log) gets its stable form from the rewrite
table; the layer (L2 normalisation, which couples its units) states only its SymPy forward. The
NumPy module, the C package and the report all come out right, checked against central differences.
"""

import numpy as np
import pytest
import sympy as sp

import symgrad
from symgrad.ops.activations import ACTIVATIONS, Activation, register_activation, x
from symgrad.ops.base import Layer
from symgrad.ops.layers import LAYERS, register_layer

SPEC = """
name = "newops"
inputs = 3
[[layers]]
name = "h"
units = 4
activation = "ssp"
[[layers]]
kind = "l2norm"
name = "norm"
[[layers]]
name = "out"
units = 2
activation = "sigmoid"
[loss]
kind = "mse"
[sample]
x = [0.3, -0.8, 0.5]
t = [0.2, 0.9]
"""


class L2Norm(Layer):
    """out_j = x_j / sqrt(eps + sum_k x_k^2)."""

    kind = "l2norm"
    rule = "quotient rule: each output divides by the norm of all inputs"
    meaning = "a unit of the normalised vector"

    def forward(self, xs):
        norm = sp.sqrt(sp.Rational(1, 100) + sp.Add(*[v**2 for v in xs]))
        return [v / norm for v in xs]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    register_activation("ssp", lambda: Activation("ssp", sp.log(1 + sp.exp(x)) - sp.log(2), latex=r"\log(1 + e^x) - \log 2"))
    register_layer(L2Norm)
    path = tmp_path_factory.mktemp("spec") / "newops.toml"
    path.write_text(SPEC)
    yield symgrad.load(path)
    ACTIVATIONS.pop("ssp")
    LAYERS.pop("l2norm")


def _central(module, params, x, t, h=1e-6):
    grads = {}
    for name, value in params.items():
        g = np.zeros_like(value)
        for i in np.ndindex(value.shape):
            up = {k: v.copy() for k, v in params.items()}
            dn = {k: v.copy() for k, v in params.items()}
            up[name][i] += h
            dn[name][i] -= h
            g[i] = (module.loss(up, x, t) - module.loss(dn, x, t)) / (2 * h)
        grads[name] = g
    return grads


def _check(module, batch):
    rng = np.random.default_rng(batch)
    params = module.init_params()
    x, t = rng.normal(size=(batch, 3)), rng.uniform(size=(batch, 2))
    E, grads = module.loss_and_gradients(params, x, t)
    assert E == pytest.approx(module.loss(params, x, t), rel=1e-12)
    for name, g in _central(module, params, x, t).items():
        np.testing.assert_allclose(grads[name], g, rtol=1e-6, atol=1e-9)


def test_the_activation_gets_its_stable_form(model):
    act = model.layers[0].activation
    assert act.expr == symgrad.ops.functions.softplus(x) - sp.log(2)
    assert act.notes


@pytest.mark.parametrize("batch", [1, 5, 40])
def test_numpy_module_matches_central_differences(model, tmp_path, batch):
    symgrad.generate(model, "numpy", tmp_path)
    module = symgrad.import_generated("newops", tmp_path)
    _check(module, batch)
    big = module.forward(module.init_params(), np.full((2, 3), 1000.0))
    assert np.all(np.isfinite(big))  # softplus, not log(1 + exp(x))


@pytest.mark.parametrize("shape", ["unrolled", "loops", "hybrid"])
def test_c_package_matches_central_differences(model, tmp_path, shape):
    symgrad.generate(model, "c", tmp_path, shape=shape)
    module = symgrad.import_generated("newops_c", tmp_path)
    for batch in (1, 5):
        _check(module, batch)


def test_report_shows_the_layer_and_checks_every_gradient(model):
    text = symgrad.report(model, "md")
    assert "quotient rule: each output divides by the norm of all inputs" in text
    assert "a unit of the normalised vector" in text
    rep = symgrad.report.__wrapped__ if hasattr(symgrad.report, "__wrapped__") else None
    assert rep is None
    from symgrad.report.content import build

    built = build(model)
    tables = [b for s in built.sections for b in s.blocks if type(b).__name__ == "Table" and "relative error" in b.header]
    assert tables and all(row[-1] < 1e-6 for row in tables[0].rows)


def test_softmax_vjp_is_the_derivative_of_its_forward():
    from symgrad.ops.base import Layer, symbols
    from symgrad.ops.softmax import Softmax

    xs, us, gs = symbols("x", 3), symbols("u", 3), symbols("g", 3)
    op = Softmax()
    fast = op.vjp(xs, us, gs)
    generic = Layer.vjp(op, xs, us, gs)  # from sympy.diff of the forward
    values = {**dict(zip(xs, [0.3, -1.2, 2.0])), **dict(zip(gs, [0.5, -0.25, 1.5]))}
    outs = [e.subs(values) for e in op.forward(xs)]
    values.update(dict(zip(us, outs)))
    for a, b in zip(fast, generic):
        assert float(a.subs(values)) == pytest.approx(float(b.subs(values)), rel=1e-12)


SOFTMAX_NETS = {
    "output, cross-entropy": (["d:4:tanh", "s", "d:3:identity", "s"], "softmax_cross_entropy"),
    "hidden": (["d:4:tanh", "s", "d:2:sigmoid"], "mse"),
    "first": (["s", "d:3:relu", "d:2:identity"], "half_sse"),
    "two in a row, mse": (["d:3:identity", "s", "s"], "mse"),
}


def _softmax_spec(layers, loss):
    lines = ['name = "sm"', "inputs = 3", f'loss = "{loss}"']
    for k, code in enumerate(layers):
        if code == "s":
            lines += ["[[layers]]", 'kind = "softmax"', f'name = "s{k}"']
        else:
            _, units, act = code.split(":")
            lines += ["[[layers]]", f'name = "d{k}"', f"units = {units}", f'activation = "{act}"']
    return "\n".join(lines) + "\n"


def _torch_loss(model, params, x, t):
    """The same network in PyTorch float64: layers in order, the loss as the README defines it."""
    import torch

    a = torch.tensor(x)
    for layer in model.layers:
        if getattr(layer, "is_layer", False):
            a = torch.softmax(a, dim=1)
            continue
        a = a @ params[f"{layer.name}.weight"].T + params[f"{layer.name}.bias"]
        a = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu}.get(layer.activation.name, lambda v: v)(a)
    tt = torch.tensor(t)
    if model.loss.name == "softmax_cross_entropy":
        return -(tt * torch.log(a)).sum() / len(x)
    if model.loss.name == "mse":
        return ((a - tt) ** 2).mean()
    return ((a - tt) ** 2).sum() / 2


@pytest.mark.parametrize("target", ["numpy", "c"])
@pytest.mark.parametrize("case", list(SOFTMAX_NETS))
def test_softmax_layer_anywhere_matches_pytorch(tmp_path, case, target):
    torch = pytest.importorskip("torch")
    path = tmp_path / "sm.toml"
    path.write_text(_softmax_spec(*SOFTMAX_NETS[case]))
    model = symgrad.load(path)
    symgrad.generate(model, target, tmp_path)
    module = symgrad.import_generated("sm" if target == "numpy" else "sm_c", tmp_path)
    rng = np.random.default_rng(5)
    for batch in (1, 7):
        x = rng.normal(size=(batch, 3))
        t = rng.dirichlet(np.ones(model.n_outputs), size=batch)
        params = module.init_params()
        E, grads = module.loss_and_gradients(params, x, t)
        tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
        ref = _torch_loss(model, tp, x, t)
        ref.backward()
        assert E == pytest.approx(ref.item(), rel=1e-10)
        for name, g in grads.items():
            np.testing.assert_allclose(g, tp[name].grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)


def test_a_layer_op_as_the_output_activation(tmp_path):
    """A registered layer op used as a dense layer's activation (as softmax is): NumPy and C loops agree with
    central differences."""
    register_activation("l2act", lambda: L2Norm())
    try:
        model = symgrad.Network("l2out", 3, [symgrad.Dense("h", 4, activation="tanh"),
                                             symgrad.Dense("o", 2, activation="l2act")], "mse")
        symgrad.generate(model, "numpy", tmp_path)
        _check(symgrad.import_generated("l2out", tmp_path), 40)
        for shape in ("loops", "unrolled"):
            symgrad.generate(model, "c", tmp_path / shape, shape=shape)
            _check(symgrad.import_generated("l2out_c", tmp_path / shape), 40)
    finally:
        ACTIVATIONS.pop("l2act")
