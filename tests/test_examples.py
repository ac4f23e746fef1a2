"""The seeds' worked examples, reproduced exactly by the generated modules."""

import numpy as np
import pytest

import symgrad
from conftest import ROOT, central_differences
from symgrad.api import derive


def shown(value, text):
    """value agrees with a number as the text prints it (rounded to the text's decimals)."""
    decimals = len(text.split(".")[1])
    return round(float(value), decimals) == float(text)


@pytest.fixture(scope="module")
def mazur():
    from generated import mazur

    return mazur


def test_mazur_worked_example_to_nine_digits(mazur):
    p = mazur.init_params()
    x, t = [0.05, 0.10], [0.01, 0.99]
    out = mazur.forward(p, x)
    assert shown(out[0], "0.75136507") and shown(out[1], "0.772928465")
    E, g = mazur.loss_and_gradients(p, x, t)
    assert shown(E, "0.298371109")
    assert shown(g["output.weight"][0, 0], "0.082167041")  # dE/dw5
    assert shown(g["hidden.weight"][0, 0], "0.000438568")  # dE/dw1
    assert set(g) == {"hidden.weight", "output.weight"}  # biases b1, b2 are frozen


def test_mazur_update_matches_the_worked_example(mazur):
    p = mazur.init_params()
    g = mazur.gradients(p, [0.05, 0.10], [0.01, 0.99])
    w_out = p["output.weight"] - mazur.LEARNING_RATE * g["output.weight"]
    w_hid = p["hidden.weight"] - mazur.LEARNING_RATE * g["hidden.weight"]
    for v, text in zip(w_out.ravel(), ["0.35891648", "0.408666186", "0.511301270", "0.561370121"]):
        assert shown(v, text)
    for v, text in zip(w_hid.ravel(), ["0.149780716", "0.19956143", "0.24975114", "0.29950229"]):
        assert shown(v, text)


def test_mazur_chain_rule_factors_from_the_scalar_derivation():
    d = derive(ROOT / "examples/mazur.toml")
    prog = d.scalar.program
    m = d.model
    values = dict(zip(prog.inputs, m.sample.x)) | dict(zip(prog.targets, m.sample.t))
    init = m.init_params()
    values |= {s: float(init[n].reshape(-1)[i]) for s, (n, i) in prog.params.items()}
    env = {s.name: v for s, v in d.scalar.evaluate(values).items()}
    assert shown(env["dE_dout_o1"], "0.74136507")
    assert shown(env["out_o1"] * (1 - env["out_o1"]), "0.186815602")
    assert shown(env["out_h1"], "0.593269992")
    assert shown(env["dE_dw5"], "0.082167041")
    assert shown(env["net_h1"], "0.3775")


def test_mazur_torch_matches_pytorch_snippet(build):
    model = symgrad.load(ROOT / "examples/mazur_torch.toml")
    mod = build(model)
    p = mod.init_params()
    E, g = mod.loss_and_gradients(p, [0.05, 0.10], [0.01, 0.99])
    assert round(E, 4) == 0.2984
    assert np.round(mod.forward(p, [0.05, 0.10]), 4).tolist() == [0.7514, 0.7729]
    assert set(g) == set(mod.PARAM_NAMES)  # every parameter trains
    fd = central_differences(mod, p, [0.05, 0.10], [0.01, 0.99])
    for k in g:
        np.testing.assert_allclose(g[k], fd[k], rtol=1e-7, atol=1e-10)


def test_single_neuron_hand_calculation_and_its_wrong_gradient(build):
    mod = build(symgrad.load(ROOT / "examples/single_neuron.toml"))
    p = mod.init_params()
    x, t = [0.5, 0.8], [0.8]
    y = mod.forward(p, x)[0]
    assert round(y, 2) == 0.47
    E, g = mod.loss_and_gradients(p, x, t)
    assert round(E, 4) == 0.0545
    a = 1 / (1 + np.exp(-0.73))
    # the output is linear: dE/dw5 = (y - t) * a, not (y - t) * a * a (1 - a) as the text says
    assert g["output.weight"][0, 0] == pytest.approx((y - 0.8) * a, rel=1e-12)
    assert g["output.weight"][0, 0] == pytest.approx(-0.222738, abs=1e-6)
    assert abs(g["output.weight"][0, 0] - (-0.033)) > 0.1


def test_sigmoid_neuron_partials_are_a_quarter(build):
    mod = build(symgrad.load(ROOT / "examples/sigmoid_neuron.toml"))
    E, g = mod.loss_and_gradients(mod.init_params(), [1.0], [0.0])
    assert E == 0.5
    assert g["w"] == 0.25 and g["b"] == 0.25


def test_regression_relu_gradients_match_finite_differences(build):
    mod = build(symgrad.load(ROOT / "examples/regression_relu.toml"))
    p = mod.init_params()
    x = np.linspace(-1, 1, 10).reshape(-1, 1)
    y = 2 * x + 3
    g = mod.gradients(p, x, y)
    fd = central_differences(mod, p, x, y)
    for k in g:
        np.testing.assert_allclose(g[k], fd[k], rtol=1e-6, atol=1e-9)


def test_mnist_mlp_generates_fast_and_uses_matrix_products(tmp_path):
    import time

    start = time.perf_counter()
    symgrad.generate(ROOT / "examples/mnist_mlp.toml", "numpy", tmp_path)
    assert time.perf_counter() - start < 10  # seconds, not minutes (the benchmark measures it precisely)
    text = (tmp_path / "mnist_mlp.py").read_text()
    body = text[text.index("def loss_and_gradients"):text.index("def gradients")]
    forward = text[text.index("def _forward"):text.index("def forward")]

    def gemms(code):
        return [line for line in code.splitlines() if ".dot(" in line and "ones.dot" not in line]

    assert len(gemms(forward)) == 3  # one GEMM per layer forward, done once for forward, loss and gradients
    assert len(gemms(body)) == 2 * 3 - 1  # two backward (none into x)
    assert "_forward(params, a0)" in body
    assert body.count("= ones.dot(d") == 3  # bias gradients: column sums as vector-matrix products
    assert "logsumexp" in text or "np.log(sum3)" in text


def test_mnist_mlp_matches_finite_differences_on_a_few_entries(build):
    mod = build(symgrad.load(ROOT / "examples/mnist_mlp.toml"))
    p = mod.init_params()
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(4, 784))
    y = np.eye(10)[rng.integers(0, 10, 4)]
    g = mod.gradients(p, x, y)
    h = 1e-6
    for name, idx in [("fc1.weight", (3, 400)), ("fc2.bias", (5,)), ("fc3.weight", (2, 7)), ("fc3.bias", (9,))]:
        q = {k: v.copy() for k, v in p.items()}
        q[name][idx] += h
        ep = mod.loss(q, x, y)
        q[name][idx] -= 2 * h
        em = mod.loss(q, x, y)
        assert g[name][idx] == pytest.approx((ep - em) / (2 * h), rel=1e-5, abs=1e-9)
