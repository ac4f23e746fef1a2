"""The bundled graph-network examples (LeNet-5, a residual MLP, a 1-D signal CNN) against PyTorch, and trained."""

import subprocess
import sys

import numpy as np
import pytest
from graph_specs import reference

from conftest import ROOT
from symgrad.spec import load

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("name", ["lenet5", "resnet_mlp", "conv1d_signal"])
def test_example_matches_pytorch(name, build):
    model = load(ROOT / "examples" / f"{name}.toml")
    mod = build(model)
    params = mod.init_params()
    rng = np.random.default_rng(0)
    for batch in (1, 7):
        x = rng.normal(size=(batch,) + model.input_shape)
        if model.loss.name == "softmax_cross_entropy":
            t = np.eye(model.n_outputs)[rng.integers(model.n_outputs, size=batch)]
        else:
            t = rng.normal(size=(batch,) + model.output_shape)
        E, y, ref = reference(model, params, x, t)
        got, grads = mod.loss_and_gradients(params, x, t)
        assert abs(got - E) <= 1e-10 * abs(E)
        assert np.allclose(mod.forward(params, x), y, rtol=1e-10, atol=1e-14)
        for k, g in grads.items():
            scale = np.max(np.abs(ref[k]))
            assert np.max(np.abs(g - ref[k])) <= 1e-10 * scale, k


def test_lenet5_shapes_and_parameter_count():
    model = load(ROOT / "examples/lenet5.toml")
    assert [n.shape for n in model.nodes] == [(6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 5, 5), (400,), (120,), (84,),
                                              (10,)]
    assert sum(p.size for p in model.params) == 61706  # LeNet-5's count as PyTorch reports it


def test_conv1d_signal_trains(tmp_path):
    """`symgrad train` on the bundled signals: the loss falls well below chance (log 3 = 1.10)."""
    out = tmp_path / "p.npz"
    res = subprocess.run([sys.executable, "-m", "symgrad", "train", "examples/conv1d_signal.toml", "--data",
                          "examples/conv1d_signal.npz", "--epochs", "8", "-q", "-o", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    final = float(res.stdout.split("final loss on the 600 training samples: ")[1].split()[0])
    assert final < 0.2, res.stdout
    assert set(np.load(out)) == {"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "out.weight", "out.bias"}
