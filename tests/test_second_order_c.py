"""The C packages' second-order functions: the NumPy contract, against PyTorch float64, strict C99."""

import os
import shutil
import subprocess

import numpy as np
import pytest
from test_second_order import check_against_torch, data, make

import symgrad
from symgrad import Dense, Network, Softmax, get_loss
from symgrad.spec import load

CC = [c for c in (shutil.which("gcc"), shutil.which("clang")) if c]
pytestmark = pytest.mark.skipif(not CC, reason="no C compiler (install gcc)")
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-c"]

MODELS = {
    "mazur": lambda: load("examples/mazur.toml"),
    "elu_tanh_mse": lambda: make("c_elu", [3, 4, 3, 2], "elu", "tanh", "mse", "mean", seed=2),
    "gelu_softmax_ce": lambda: make("c_ce", [3, 5, 3], "gelu", "softmax", "softmax_cross_entropy", seed=4),
    "softplus_sigmoid_bce": lambda: make("c_bce", [3, 5, 3], "softplus", "sigmoid", "bce", seed=4),
    "relu_leaky_silu": lambda: Network("c_relu", 3, [Dense("a", 4, activation="relu"), Dense("b", 3, activation="leaky_relu"),
                                                     Dense("c", 2, activation="silu")], get_loss("sse"), init="xavier", seed=3),
    "softmax_middle": lambda: Network("c_sm_mid", 3, [Dense("h", 4), Softmax("sm"), Dense("o", 2, activation="sigmoid")],
                                      get_loss("bce"), init="xavier", seed=6),
    "softmax_layer_out": lambda: Network("c_sm_out", 3, [Dense("h", 4, activation="elu"), Dense("o", 3), Softmax("sm")],
                                         get_loss("softmax_cross_entropy"), init="xavier", seed=5),
    "bias_modes_frozen": lambda: Network("c_mixed", 3, [Dense("a", 4, activation="tanh", bias="shared"),
                                                        Dense("b", 3, activation="sigmoid", bias="none"),
                                                        Dense("c", 2, activation="softplus", freeze=("weight",)),
                                                        Dense("d", 2, activation="identity", freeze=("bias",))],
                                         get_loss("mse"), init="xavier", seed=8),
    "loops_hessian_frozen": lambda: Network("c_loops", 4, [Dense("a", 6, activation="tanh"),
                                                           Dense("b", 3, activation="sigmoid", freeze=("weight",)),
                                                           Softmax("sm"), Dense("c", 2, activation="softplus")], get_loss("mse"),
                                            init="xavier", seed=9),
}


# the default run builds five packages (every op kind and bias mode, both C hessian code paths among them);
# SYMGRAD_SECOND_ORDER_ALL=1 builds all
DEFAULT = ("mazur", "relu_leaky_silu", "softmax_layer_out", "bias_modes_frozen", "loops_hessian_frozen")
CHOSEN = list(MODELS) if os.environ.get("SYMGRAD_SECOND_ORDER_ALL") else list(DEFAULT)


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SYMGRAD_CACHE", str(tmp_path_factory.getbasetemp() / "symgrad-cache"))


@pytest.mark.parametrize("which", CHOSEN)
def test_c_second_order_against_torch(tmp_path, which):
    model = MODELS[which]()
    symgrad.generate(model, "c", tmp_path, second_order=True)
    source = tmp_path / f"{model.name}_c" / f"{model.name}.c"
    for cc in CC if which in ("mazur", "softmax_layer_out") else CC[:1]:
        res = subprocess.run([cc, *STRICT, str(source), "-o", str(tmp_path / "x.o")], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr[-3000:]
    text = source.read_text()
    assert "malloc" not in text
    hessian = text[text.index(f"void {model.name}_hessian("):]
    # up to UNROLL_LIMIT parameters straight-line forward-mode code over the gradient's; above, the R-passes per column
    assert ("_dt0" in hessian) == (sum(p.size for p in model.params) <= 40) != ("sg2_" in hessian[:hessian.index("\n}")])
    mod = symgrad.import_generated(f"{model.name}_c", tmp_path)
    for batch in (1, 5):
        x, t = data(model, batch, batch)
        check_against_torch(mod, model, mod.init_params(), x, t)


def test_c_and_numpy_agree_and_refusals(tmp_path):
    model = make("c_np", [3, 4, 2], "tanh", "identity", "half_sse", seed=1)
    symgrad.generate(model, "c", tmp_path, second_order=True)
    symgrad.generate(model, "numpy", tmp_path, second_order=True)
    cm = symgrad.import_generated("c_np_c", tmp_path)
    npm = symgrad.import_generated("c_np", tmp_path)
    x, t = data(model, 3, 0)
    p = npm.init_params()
    np.testing.assert_allclose(cm.hessian(p, x, t), npm.hessian(p, x, t), rtol=1e-12, atol=1e-15)
    assert cm.HESSIAN_ORDER == npm.HESSIAN_ORDER
    theta, H = cm.pack(p), np.full((cm.N_TRAINABLE, cm.N_TRAINABLE), np.nan)
    call = cm.bind_hessian(theta, np.ascontiguousarray(x), np.ascontiguousarray(t), H)
    call()  # one C call, in place
    np.testing.assert_allclose(H, npm.hessian(p, x, t), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(cm._second_order._columns(p, x, t, "hvp"), H, rtol=1e-12, atol=1e-15)  # one hvp per column
    with pytest.raises(ValueError, match=r"H must be .* shape \(26, 26\)"):
        cm.bind_hessian(theta, x, t, np.empty((26, 25)))
    with pytest.raises(ValueError, match="theta must be"):
        cm.bind_hessian(theta[:-1], x, t, H)
    cm._second_order.limit = 3
    with pytest.raises(ValueError, match="hvp"):
        cm.hessian(p, x, t)
    with pytest.raises(ValueError, match="missing 'l1.bias'"):
        cm.hvp(p, x, t, {"l1.weight": np.zeros((4, 3))})


def test_graph_hessian_in_one_c_call(tmp_path):
    """conv_tiny: the C package's hessian (one hvp per trainable entry, in C) and its bound call equal the NumPy module's."""
    model = load("examples/conv_tiny.toml")
    symgrad.generate(model, "numpy", tmp_path, second_order=True)
    symgrad.generate(model, "c", tmp_path, second_order=True)
    npm, cm = symgrad.import_generated("conv_tiny", tmp_path), symgrad.import_generated("conv_tiny_c", tmp_path)
    x = np.random.default_rng(3).uniform(size=(3, 1, 4, 4))
    t = np.random.default_rng(4).uniform(size=(3, 2))
    want = npm.hessian(npm.init_params(), x, t)
    H = cm.hessian(cm.init_params(), x, t)
    np.testing.assert_allclose(H, want, rtol=1e-12, atol=1e-14)
    bound = np.empty_like(H)
    cm.bind_hessian(cm.pack(cm.init_params()), x.reshape(3, -1).copy(), t.copy(), bound)()
    np.testing.assert_array_equal(bound, H)


def test_default_c_package_is_unchanged(tmp_path):
    from symgrad.pipeline import render

    files = render("examples/mazur.toml", "c")
    assert "_hvp" not in files["mazur_c/mazur.c"] and "mazur_c/_second.py" not in files
