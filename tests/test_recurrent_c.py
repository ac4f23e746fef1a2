"""The C package of recurrent networks against PyTorch float64 (nn.RNN, nn.LSTM, nn.GRU, the state detached every
bptt_steps) and against the NumPy module: forward, loss and every gradient through the package's Python wrapper
for stacked layers, truncation, both outputs, no bias, a dense layer on every step, conv1d -> transpose -> lstm,
sequences longer than the kernels' blocks of 32 steps, and random networks; float32; frozen weights in the flat
call; strict compiles under gcc and clang; AddressSanitizer and UBSan.

Few packages are compiled (a module-scoped fixture), so the file runs in tens of seconds; the random networks are
``SYMGRAD_PROPERTY_EXAMPLES`` (default 4) packages more.
"""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from test_recurrent import check, spec

from conftest import ROOT
from symgrad.api import generate, import_generated
from symgrad.backends.c.codegen import c_sources

pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not shutil.which("cc") and not shutil.which("gcc"), reason="no C compiler")
COMPILERS = [cc for cc in ("gcc", "clang") if shutil.which(cc)]
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
N_RANDOM = int(os.environ.get("SYMGRAD_PROPERTY_EXAMPLES", 4))

NETS = {
    # three kinds stacked: every step of an LSTM into a truncated GRU into a relu RNN's last state
    "stack": ([{"kind": "lstm", "name": "l1", "hidden_size": 5, "return_sequences": True},
               {"kind": "gru", "name": "l2", "hidden_size": 4, "return_sequences": True, "bptt_steps": 4},
               {"kind": "rnn", "name": "l3", "hidden_size": 3, "activation": "relu"},
               {"name": "out", "units": 1}], (11, 3), "mse"),
    # a signal through a convolution, read as a sequence; every step of a truncated LSTM through two dense layers
    "convt": ([{"kind": "conv1d", "name": "conv", "out_channels": 4, "kernel_size": 3, "activation": "tanh"},
               {"kind": "transpose", "name": "steps"},
               {"kind": "lstm", "name": "rec", "hidden_size": 3, "return_sequences": True, "bptt_steps": 2},
               {"name": "hid", "units": 3, "activation": "tanh"}, {"name": "out", "units": 2}], (2, 9), "half_sse"),
    # no biases, every step's output in the loss as the network's output (transposed), the random tests' longest length
    "gru_seq": ([{"kind": "gru", "name": "rec", "hidden_size": 6, "bias": "none", "return_sequences": True},
                 {"kind": "transpose", "name": "out"}], (20, 1), "mse"),
    # 70 steps (three blocks of the weight gradients), 4H = 160 gate rows and F = 9 (every width of the products)
    "long_seq": ([{"kind": "lstm", "name": "rec", "hidden_size": 40, "bptt_steps": 25},
              {"kind": "transpose", "name": "back", "input": "x"},
              {"kind": "rnn", "name": "side", "hidden_size": 2, "input": "back"},
              {"kind": "concat", "name": "both", "inputs": ["rec", "side"]},
              {"name": "out", "units": 2}], (70, 9), "mse"),
}


def model(name, layers, shape, loss):
    return spec(layers, shape, loss, name=name)


def pair(tmp, m, dtype="float64"):
    """(NumPy module, C package) of model m."""
    generate(m, "numpy", tmp)
    generate(m, "c", tmp, dtype=dtype)
    return import_generated(m.name, tmp), import_generated(f"{m.name}_c", tmp)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """{name: (model, NumPy module, C package)} of NETS, and the stack as a float32 package."""
    tmp = tmp_path_factory.mktemp("recurrent_c")
    mp = pytest.MonkeyPatch()
    mp.setenv("SYMGRAD_CACHE", str(tmp / "cache"))
    out = {}
    for name, (layers, shape, loss) in NETS.items():
        m = model(name, layers, shape, loss)
        out[name] = (m, *pair(tmp, m))
    m = model("stack32", *NETS["stack"])
    out["stack32"] = (m, *pair(tmp / "f32", m, "float32"))
    mp.undo()
    return out


def agree_with_numpy(m, npm, cm, batch, seed, rtol=1e-12):
    """Forward, loss and gradients of the C package and the NumPy module on random parameters and data."""
    rng = np.random.default_rng(seed)
    p = {k: rng.normal(scale=0.6, size=v.shape) for k, v in npm.init_params().items()}
    x, t = rng.normal(size=(batch,) + m.input_shape), rng.normal(size=(batch,) + m.output_shape)
    En, gn = npm.loss_and_gradients(p, x, t)
    Ec, gc = cm.loss_and_gradients(p, x, t)
    assert Ec == pytest.approx(En, rel=rtol)
    assert cm.loss(p, x, t) == pytest.approx(En, rel=rtol)
    np.testing.assert_allclose(cm.forward(p, x), npm.forward(p, x), rtol=rtol, atol=rtol * np.abs(npm.forward(p, x)).max())
    assert set(gc) == set(gn)
    for k in gn:
        np.testing.assert_allclose(gc[k], gn[k], rtol=rtol, atol=rtol * max(1e-300, np.abs(gn[k]).max()), err_msg=k)


@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("batch", [1, 5])
def test_packages_match_pytorch_and_the_numpy_module(built, name, batch):
    m, npm, cm = built[name]
    check(m, None, batch, seed=batch, module=cm)
    agree_with_numpy(m, npm, cm, batch, seed=batch + 10)


def test_float32_package_is_close_to_float64(built):
    m, npm, cm = built["stack32"]
    assert cm.DTYPE == np.float32
    rng = np.random.default_rng(2)
    p = {k: rng.normal(scale=0.6, size=v.shape) for k, v in npm.init_params().items()}
    x, t = rng.normal(size=(4,) + m.input_shape), rng.normal(size=(4,) + m.output_shape)
    E, g = npm.loss_and_gradients(p, x, t)
    E32, g32 = cm.loss_and_gradients({k: v.astype(np.float32) for k, v in p.items()}, x.astype(np.float32),
                                     t.astype(np.float32))
    assert E32 == pytest.approx(E, rel=1e-5)
    for k in g:
        assert g32[k].dtype == np.float32
        np.testing.assert_allclose(g32[k], g[k], rtol=0, atol=1e-5 * np.abs(g[k]).max(), err_msg=k)


def random_net(seed):
    """A random recurrent network: an optional conv1d -> transpose front, 1-3 stacked rnn/lstm/gru layers (random
    sizes, bias, truncation, output), an optional dense layer on every step, a dense output; and a batch size."""
    rng = np.random.default_rng(2000 + seed)
    layers = []
    if rng.integers(0, 4) == 0:
        shape = (int(rng.integers(1, 4)), int(rng.integers(3, 21)))
        layers += [{"kind": "conv1d", "name": "conv", "out_channels": int(rng.integers(1, 5)),
                    "kernel_size": int(rng.integers(1, 4)), "activation": "tanh"},
                   {"kind": "transpose", "name": "steps"}]
    else:
        shape = (int(rng.integers(1, 21)), int(rng.integers(1, 6)))
    depth = int(rng.integers(1, 4))
    for i in range(depth):
        kind = ["rnn", "lstm", "gru"][int(rng.integers(0, 3))]
        layer = {"kind": kind, "name": f"r{i}", "hidden_size": int(rng.integers(1, 10)),
                 "bias": ["unit", "none"][int(rng.integers(0, 4) == 0)],
                 "return_sequences": i < depth - 1 or bool(rng.integers(0, 2))}
        if kind == "rnn":
            layer["activation"] = ["tanh", "relu"][int(rng.integers(0, 2))]
        if rng.integers(0, 3) == 0:
            layer["bptt_steps"] = int(rng.integers(1, 22))
        layers.append(layer)
    if layers[-1]["return_sequences"] and rng.integers(0, 2):
        layers.append({"name": "hid", "units": int(rng.integers(1, 4)), "activation": "tanh"})
    layers.append({"name": "out", "units": int(rng.integers(1, 4))})
    return model(f"rand{seed}", layers, shape, ["mse", "half_sse"][seed % 2]), int(rng.integers(2, 7))


@pytest.mark.parametrize("seed", range(N_RANDOM))
def test_random_networks_match_pytorch_and_the_numpy_module(tmp_path, monkeypatch, seed):
    monkeypatch.setenv("SYMGRAD_CACHE", str(tmp_path / "cache"))
    m, batch = random_net(seed)
    npm, cm = pair(tmp_path, m)
    for b in (1, batch):
        check(m, None, b, seed=b, module=cm)
        agree_with_numpy(m, npm, cm, b, seed=b + 10)


def test_frozen_weights_get_no_gradient_and_zeros_in_the_flat_call(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMGRAD_CACHE", str(tmp_path / "cache"))
    m = model("frozen", [{"kind": "lstm", "name": "r", "hidden_size": 4, "return_sequences": True,
                          "freeze": ["weight_hh", "bias_ih"]},
                         {"kind": "gru", "name": "g", "hidden_size": 3, "freeze": ["weight_ih"]},
                         {"name": "out", "units": 2}], (7, 3), "mse")
    npm, cm = pair(tmp_path, m)
    agree_with_numpy(m, npm, cm, 4, seed=0)
    rng = np.random.default_rng(1)
    p = cm.init_params()
    x, t = rng.normal(size=(3,) + m.input_shape), rng.normal(size=(3,) + m.output_shape)
    E, g = cm.loss_and_gradients(p, x, t)
    assert set(g) == {"r.weight_ih", "r.bias_hh", "g.weight_hh", "g.bias_ih", "g.bias_hh", "out.weight", "out.bias"}
    grad = np.full(cm.N_PARAMS, np.nan)
    assert cm.bind(cm.pack(p), x.reshape(3, -1), t.reshape(3, -1), grad)() == E
    for name, v in cm.unpack(grad).items():
        np.testing.assert_array_equal(v, g[name] if name in g else 0)


@pytest.mark.parametrize("cc", COMPILERS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_every_kind_compiles_strictly_and_deterministically(tmp_path, dtype, cc):
    files = c_sources(model("all_kinds", *NETS["stack"]), dtype)[0]
    assert c_sources(model("all_kinds", *NETS["stack"]), dtype)[0] == files
    conv = c_sources(model("conv_rnn", *NETS["convt"]), dtype)[0]
    for name, text in {**files, **conv}.items():
        (tmp_path / name).write_text(text)
    for name in ("all_kinds", "conv_rnn"):
        res = subprocess.run([cc, *STRICT, "-O2", "-c", str(tmp_path / f"{name}.c"), "-o", str(tmp_path / f"{name}.o")],
                             capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
    text = files["all_kinds.c"]
    for kernel in ("symgrad_lstm_backward", "symgrad_gru_backward", "symgrad_rnn_backward"):
        assert f"{kernel}(&L" in text


def test_sanitizers_report_nothing(tmp_path):
    """Every recurrent kernel and the transpose under AddressSanitizer and UBSan, at batch 5 (main.c's --bench)."""
    cc = shutil.which("gcc") or shutil.which("cc")
    for net in (model("san", *NETS["convt"]), model("san2", *NETS["stack"])):
        generate(net, "c", tmp_path, with_main=True)
        d, exe = tmp_path / f"{net.name}_c", tmp_path / net.name
        res = subprocess.run([cc, "-std=c99", "-g", "-O1", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                              str(d / "main.c"), str(d / f"{net.name}.c"), "-lm", "-o", str(exe)],
                             capture_output=True, text=True)
        if res.returncode != 0 and "asan" in res.stderr.lower():
            pytest.skip("the compiler has no AddressSanitizer runtime")
        assert res.returncode == 0, res.stderr
        run = subprocess.run([str(exe), "--bench", "2", "5"], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        assert "runtime error" not in run.stderr and "ERROR" not in run.stderr


def test_cli_writes_the_c_package_of_a_recurrent_example(tmp_path):
    """symgrad generate --target c on examples/elman_toy.toml: the package gives the NumPy module's numbers."""
    res = subprocess.run([sys.executable, "-m", "symgrad", "generate", "examples/elman_toy.toml", "--target", "c", "-o",
                          str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                         env=dict(os.environ, SYMGRAD_CACHE=str(tmp_path / "cache")))
    assert res.returncode == 0, res.stderr
    import symgrad

    m = symgrad.load(ROOT / "examples/elman_toy.toml")
    cm = import_generated("elman_toy_c", tmp_path)
    generate(m, "numpy", tmp_path)
    npm = import_generated("elman_toy", tmp_path)
    p = npm.init_params()
    E, g = cm.loss_and_gradients(p, m.sample.x, m.sample.t)
    En, gn = npm.loss_and_gradients(p, m.sample.x, m.sample.t)
    assert E == pytest.approx(En, rel=1e-14)
    for k in gn:
        np.testing.assert_allclose(g[k], gn[k], rtol=1e-13, atol=1e-16, err_msg=k)
