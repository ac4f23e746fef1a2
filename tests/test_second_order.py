"""Second derivatives: symbolic second partials, and the generated second-order functions, against PyTorch float64."""

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
