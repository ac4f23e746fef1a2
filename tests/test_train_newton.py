"""The damped Newton and Levenberg-Marquardt (Gauss-Newton) steps against a reference from torch.func and numpy.linalg."""

from pathlib import Path

import numpy as np
import pytest

import symgrad
from symgrad.errors import SpecError
from symgrad.spec import load

torch = pytest.importorskip("torch", reason="PyTorch is the oracle; install the test extra to run it")
ROOT = Path(__file__).resolve().parent.parent


def spec_with(tmp_path, example, train):
    text = (ROOT / "examples" / f"{example}.toml").read_text()
    text = text.replace("[train]\nlearning_rate = 0.5\n", "")
    path = tmp_path / f"{example}.toml"
    path.write_text(text + "\n[train]\n" + train + "\n")
    return load(path)


def mazur_torch(theta, x, t):
    W1, W2 = theta[:4].reshape(2, 2), theta[4:].reshape(2, 2)
    o = torch.sigmoid(torch.sigmoid(x @ W1.T + 0.35) @ W2.T + 0.60)
    return o, ((t - o) ** 2 / 2).sum()


@pytest.mark.parametrize("target", ["numpy", "c"])
@pytest.mark.parametrize("optimizer", ["newton", "gauss_newton"])
def test_one_step_on_the_worked_example(tmp_path, monkeypatch, optimizer, target):
    monkeypatch.setenv("SYMGRAD_CACHE", str(tmp_path / "cache"))
    model = spec_with(tmp_path, "mazur", f'optimizer = "{optimizer}"\nlearning_rate = 0.7\ndamping = 0.05')
    symgrad.generate(model, target, tmp_path)  # the optimizer brings the second-order functions along
    mod = symgrad.import_generated("mazur" + ("_c" if target == "c" else ""), tmp_path)
    x = np.array([[0.05, 0.10], [0.6, -0.3]])
    t = np.array([[0.01, 0.99], [0.4, 0.2]])
    p = mod.init_params()
    new, state, E = mod.train_step(p, mod.init_state(p), x, t)

    theta = torch.tensor(np.concatenate([p["hidden.weight"].ravel(), p["output.weight"].ravel()]))
    X, T = torch.tensor(x), torch.tensor(t)
    g = torch.func.grad(lambda th: mazur_torch(th, X, T)[1])(theta).numpy()
    if optimizer == "newton":
        C = torch.func.hessian(lambda th: mazur_torch(th, X, T)[1])(theta).numpy()
    else:
        J = torch.func.jacrev(lambda th: mazur_torch(th, X, T)[0])(theta).reshape(4, 8).numpy()
        C = J.T @ J  # H_loss = I for half the sum of squared errors
    ref = theta.numpy() - 0.7 * np.linalg.solve(C + 0.05 * np.eye(8), g)
    mine = np.concatenate([new["hidden.weight"].ravel(), new["output.weight"].ravel()])
    np.testing.assert_allclose(mine, ref, rtol=1e-10, atol=1e-14)
    assert E == pytest.approx(float(mazur_torch(theta, X, T)[1]), rel=1e-12)
    assert state["step"] == 1
    np.testing.assert_array_equal(new["hidden.bias"], p["hidden.bias"])  # frozen


@pytest.mark.parametrize("target", ["numpy", "c"])
def test_newton_on_the_sigmoid_neuron_against_finite_differences(tmp_path, monkeypatch, target):
    monkeypatch.setenv("SYMGRAD_CACHE", str(tmp_path / "cache"))
    model = spec_with(tmp_path, "sigmoid_neuron", 'optimizer = "newton"\nlearning_rate = 1.0\ndamping = 0.5')
    symgrad.generate(model, target, tmp_path)  # an expression model: C's second order is SymPy's, as NumPy's
    mod = symgrad.import_generated("sigmoid_neuron" + ("_c" if target == "c" else ""), tmp_path)
    p = {"w": np.array(0.3), "b": np.array(-0.2)}
    x = np.array([[1.0], [2.0], [-0.5]])
    new, _, _ = mod.train_step(p, mod.init_state(p), x, None)

    def E(w, b):  # independent reference: the model's function written out, differentiated numerically
        return float(np.sum(1 / (1 + np.exp(-(w * x[:, 0] + b)))))

    h = 1e-4
    g = np.array([(E(0.3 + h, -0.2) - E(0.3 - h, -0.2)) / (2 * h), (E(0.3, -0.2 + h) - E(0.3, -0.2 - h)) / (2 * h)])
    H = np.empty((2, 2))
    H[0, 0] = (E(0.3 + h, -0.2) - 2 * E(0.3, -0.2) + E(0.3 - h, -0.2)) / h**2
    H[1, 1] = (E(0.3, -0.2 + h) - 2 * E(0.3, -0.2) + E(0.3, -0.2 - h)) / h**2
    H[0, 1] = H[1, 0] = (E(0.3 + h, -0.2 + h) - E(0.3 + h, -0.2 - h) - E(0.3 - h, -0.2 + h) + E(0.3 - h, -0.2 - h)) / (4 * h * h)
    ref = np.array([0.3, -0.2]) - np.linalg.solve(H + 0.5 * np.eye(2), g)
    np.testing.assert_allclose([float(new["w"]), float(new["b"])], ref, rtol=1e-6)


def test_newton_trains_the_worked_example_down(tmp_path):
    model = spec_with(tmp_path, "mazur", 'optimizer = "gauss_newton"\nlearning_rate = 1.0\ndamping = 0.01')
    symgrad.generate(model, "numpy", tmp_path)
    mod = symgrad.import_generated("mazur", tmp_path)
    p, x, t = mod.init_params(), np.array([[0.05, 0.10]]), np.array([[0.01, 0.99]])
    state = mod.init_state(p)
    losses = []
    for _ in range(5):
        p, state, E = mod.train_step(p, state, x, t)
        losses.append(E)
    assert losses[-1] < 0.01 * losses[0]  # 0.298 -> 0.0019 in 5 steps


def test_second_order_optimizers_refuse_weight_decay(tmp_path):
    with pytest.raises(SpecError, match="weight_decay"):
        spec_with(tmp_path, "mazur", 'optimizer = "newton"\nweight_decay = 0.1')
