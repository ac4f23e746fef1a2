"""symgrad report --hessian: the second-derivative sections, their numbers against PyTorch, every format."""

import numpy as np
import pytest

from symgrad.cli import main
from symgrad.errors import SpecError
from symgrad.report.content import build
from symgrad.report.layout import layout, report
from symgrad.spec import load

torch = pytest.importorskip("torch", reason="PyTorch is the oracle; install the test extra to run it")


def torch_hessian():
    def E(theta):
        W1, W2 = theta[:4].reshape(2, 2), theta[4:].reshape(2, 2)
        x = torch.tensor([0.05, 0.10], dtype=torch.float64)
        t = torch.tensor([0.01, 0.99], dtype=torch.float64)
        return ((t - torch.sigmoid(W2 @ torch.sigmoid(W1 @ x + 0.35) + 0.60)) ** 2 / 2).sum()

    theta = torch.tensor([0.15, 0.20, 0.25, 0.30, 0.40, 0.45, 0.50, 0.55], dtype=torch.float64)
    return torch.func.hessian(E)(theta).numpy(), torch.func.grad(E)(theta).numpy()


def test_worked_example_sections_and_numbers():
    rep = build(load("examples/mazur.toml"), hessian=True)
    titles = [s.title for s in rep.sections]
    assert titles[-4:-1] == ["Second derivatives", "The Hessian", "A damped Newton step"]
    H, g = torch_hessian()
    matrix = next(b for b in rep.sections[-3].blocks if type(b).__name__ == "Table")
    np.testing.assert_allclose(np.array([row[1:] for row in matrix.rows], dtype=float), H, rtol=1e-12, atol=1e-18)
    checks = [b for b in rep.sections[-3].blocks if type(b).__name__ == "Table"][1]
    assert len(checks.rows) == 36 and max(float(r[3]) for r in checks.rows) < 1e-6
    newton = [b for b in rep.sections[-2].blocks if type(b).__name__ == "Table"][0]
    s = np.linalg.solve(H + 1e-3 * np.eye(8), g)
    np.testing.assert_allclose([float(r[4]) for r in newton.rows], s, rtol=1e-9)
    text = layout(rep, "md")
    assert "The block of w5, w6, w7, w8" in text and "The mixed entry of w1 and w5" in text
    assert "Eigenvalues (ascending)" in text and "indefinite" in text


@pytest.mark.parametrize("fmt", ["md", "tex", "html"])
def test_every_format(fmt):
    text = report("examples/sigmoid_neuron.toml", fmt, hessian=True)
    assert "Second derivatives" in text and "damped Newton" in text


def test_command_line(tmp_path):
    out = tmp_path / "m.html"
    assert main(["report", "examples/mazur.toml", "--hessian", "-o", str(out)]) == 0
    assert "The Hessian" in out.read_text()
    assert main(["report", "examples/mazur.toml", "-o", str(tmp_path / "plain.md")]) == 0
    assert "Second derivatives" not in (tmp_path / "plain.md").read_text()


def test_large_networks_are_refused():
    with pytest.raises(SpecError, match="hessian"):
        build(load("examples/mnist_mlp.toml"), hessian=True)


def test_small_graph_hessian_against_pytorch():
    """conv_tiny: every entry of the report's Hessian equals torch.func.hessian's (ties routed to the first maximum)."""
    F = torch.nn.functional
    model = load("examples/conv_tiny.toml")
    x = torch.tensor(model.sample.x, dtype=torch.float64).reshape(1, 1, 4, 4)
    t = torch.tensor(model.sample.t, dtype=torch.float64)
    values = [torch.tensor(np.asarray(p.value, dtype=float)) for p in model.params]
    sizes = [v.numel() for v in values]

    def E(theta):
        k, c, v, d = (chunk.reshape(val.shape) for chunk, val in zip(torch.split(theta, sizes), values))
        a = F.max_pool2d(torch.relu(F.conv2d(x, k, c)), 2, 1).flatten(1)
        return ((t - torch.sigmoid(a @ v.T + d)) ** 2 / 2).sum()

    theta = torch.cat([v.flatten() for v in values])
    H = torch.func.hessian(E)(theta).numpy()
    rep = build(model, hessian=True)
    sec = next(s for s in rep.sections if s.title == "The Hessian")
    checks = next(b for b in sec.blocks if type(b).__name__ == "Table")
    upper = [H[i, j] for i in range(len(H)) for j in range(i, len(H))]
    np.testing.assert_allclose([float(r[1]) for r in checks.rows], upper, rtol=1e-10, atol=1e-15)
    note = [b for b in sec.blocks if type(b).__name__ == "Text" and "disagree" in str(b.frags)]
    assert note, "the ties of conv_tiny's pooling window make some central differences straddle a jump"


@pytest.mark.parametrize("example", ["elman_toy", "lenet5"])
def test_models_the_neuron_level_hessian_does_not_cover_are_refused(example):
    with pytest.raises(SpecError, match="--second-order"):
        build(load(f"examples/{example}.toml"), hessian=True)
