"""The C packages' second-order functions for graph networks: the NumPy module's contract and numbers, PyTorch float64.

Random graphs from tests/graph_specs.py and named ones (forward-mode Jacobian, max-pool ties and ReLU at 0, f'' of
net-input activations on adds, pools and concats, a softmax output under a squared error, transpose with a dense layer
over leading axes and frozen parameters, a convolution on the im2col + GEMM path) and random recurrent networks (rnn,
lstm, gru; last state or every step, truncated, frozen weights, behind conv1d and transpose, stacked): hvp,
gauss_newton_vp, hessian (small
graphs), input_gradients and jacobian against the NumPy module to 1e-12 and against torch.func to 1e-10 (the checks of
tests/test_graph_second.py), batch 1 and larger, strict C99. The default run builds a few packages (C compiles are
slow); ``SYMGRAD_SECOND_ORDER_ALL=1`` builds every one.
"""

import os
import shutil
import subprocess

import numpy as np
import pytest
from graph_specs import net_activations_spec, random_graph, torch_loss
from test_graph_second import cells_loss, check, data, flatten, random_recurrent, unflatten

import symgrad
from symgrad.spec import from_dict

torch = pytest.importorskip("torch")
CC = [c for c in (shutil.which("gcc"), shutil.which("clang")) if c]
pytestmark = pytest.mark.skipif(not CC, reason="no C compiler (install gcc)")
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-c"]
ALL = bool(os.environ.get("SYMGRAD_SECOND_ORDER_ALL"))


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SYMGRAD_CACHE", str(tmp_path_factory.getbasetemp() / "symgrad-cache"))


def build_both(tmp_path, model, dtype="float64", compilers=CC[:1]):
    """(the C package, the NumPy module) of ``model`` with second-order functions; the C source compiled strictly."""
    symgrad.generate(model, "c", tmp_path, dtype=dtype, second_order=True)
    symgrad.generate(model, "numpy", tmp_path / "np", second_order=True)
    source = tmp_path / f"{model.name}_c" / f"{model.name}.c"
    for cc in compilers:
        res = subprocess.run([cc, *STRICT, str(source), "-o", str(tmp_path / "x.o")], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr[-3000:]
    assert "malloc" not in source.read_text()
    return symgrad.import_generated(f"{model.name}_c", tmp_path), symgrad.import_generated(model.name, tmp_path / "np")


def same(a, b, rel=1e-12, what="", floor=1e-300):
    """|a - b| <= rel times the largest |b| or ``floor``, whichever is larger (1 when b is all zeros)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (what, a.shape, b.shape)
    scale = max(np.abs(b).max(initial=0.0), 1.0 if not b.any() else floor)
    assert np.abs(a - b).max(initial=0.0) <= rel * scale, (what, np.abs(a - b).max() / scale)


def against_numpy(cm, nm, params, x, t, hessian=True, rel=1e-12, floor=1e-300):
    """Every second-order function of the C package against the NumPy module's (``floor`` as in :func:`same`)."""
    rng = np.random.default_rng(5)
    v = unflatten(nm, rng.normal(size=nm.N_TRAINABLE))
    for fn in ("hvp", "gauss_newton_vp"):
        same(flatten(cm, getattr(cm, fn)(params, x, t, v)), flatten(nm, getattr(nm, fn)(params, x, t, v)), rel, fn, floor)
    same(cm.input_gradients(params, x, t), nm.input_gradients(params, x, t), rel, "input_gradients", floor)
    same(cm.jacobian(params, x), nm.jacobian(params, x), rel, "jacobian", floor)
    same(cm.jacobian(params, x[0]), nm.jacobian(params, x[0]), rel, "jacobian of one sample", floor)
    same(cm.input_gradients(params, x[0], t[0]), nm.input_gradients(params, x[0], t[0]), rel, "one sample", floor)
    if hessian:
        same(cm.hessian(params, x, t), nm.hessian(params, x, t), rel, "hessian", floor)
    assert cm.HESSIAN_ORDER == nm.HESSIAN_ORDER and cm.HESSIAN_LIMIT == nm.HESSIAN_LIMIT


# the default run: a residual add over the input, max pooling with a softmax output, average pooling, concat and add
RANDOM = list(range(14)) if ALL else [0, 3, 4, 7]


@pytest.mark.parametrize("seed", RANDOM)
def test_random_graph_c_second_order(tmp_path, seed):
    rng = np.random.default_rng(2000 + seed)  # the graphs of tests/test_graph_second.py
    model = from_dict(random_graph(rng))
    cm, nm = build_both(tmp_path, model)
    params = {k: rng.normal(scale=0.7, size=v.shape) for k, v in cm.init_params().items()}
    small = cm.N_TRAINABLE <= 400
    for batch in (1, 3):
        x, t = data(model, rng, batch)
        # saturated units make tiny products that are differences of much larger terms, summed in another order: the
        # same absolute bound (1e-13) as the torch comparison's 1e-10 relative to at least 1e-3
        against_numpy(cm, nm, params, x, t, hessian=small, floor=0.1)
        check(cm, model, params, x, t, hessian=small, floor=1e-3)


# recurrent layers (tests/test_graph_second.py's random recurrent graphs, rnn, lstm and gru by turns): by default an
# lstm truncated every 2 steps, a gru on every step, a relu rnn behind conv1d and transpose with W_ih and b_hh frozen,
# a gru of 3 units on its last step, an rnn with W_hh frozen and two dense layers after it
RECURRENT = list(range(45)) if ALL else [1, 2, 9, 5, 24]


@pytest.mark.parametrize("seed", RECURRENT)
def test_random_recurrent_c_second_order(tmp_path, seed):
    model, rng = random_recurrent(seed)
    cm, nm = build_both(tmp_path, model)
    params = {k: rng.normal(scale=0.6, size=v.shape) for k, v in cm.init_params().items()}
    for batch in (1, 4):
        x, t = data(model, rng, batch)
        against_numpy(cm, nm, params, x, t)
        check(cm, model, params, x, t, loss=cells_loss)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"] if ALL else ["lstm"])
def test_stacked_recurrent_layers_truncated_on_every_step(tmp_path, kind):
    layers = [{"kind": kind, "name": "r1", "hidden_size": 3, "return_sequences": True, "bptt_steps": 2},
              {"kind": "gru" if kind != "gru" else "lstm", "name": "r2", "hidden_size": 2, "return_sequences": True},
              {"name": "out", "units": 2}]
    model = from_dict({"name": f"cstack_{kind}", "input_shape": [5, 2], "layers": layers, "loss": "mse"})
    cm, nm = build_both(tmp_path, model)
    rng = np.random.default_rng(7)
    params = {k: rng.normal(scale=0.6, size=v.shape) for k, v in cm.init_params().items()}
    x, t = data(model, rng, 3)
    against_numpy(cm, nm, params, x, t)
    check(cm, model, params, x, t, loss=cells_loss)


def _spec(name, input_shape, layers, loss="half_sse"):
    return {"name": name, "input_shape": input_shape, "loss": loss, "layers": layers}


NAMED = {
    "wide": _spec("wide", [1, 5], [  # 12 outputs from 5 inputs: the Jacobian in forward mode
        {"kind": "conv1d", "name": "c", "out_channels": 2, "kernel_size": 2, "activation": "sigmoid"},
        {"kind": "maxpool1d", "name": "p", "kernel_size": 2, "stride": 1},
        {"kind": "flatten", "name": "f"}, {"name": "out", "units": 12, "activation": "tanh"}]),
    "ties": _spec("ties", [1, 4, 4], [  # tied maxima route R to the first; ReLU'' = 0 at a net input of 0
        {"kind": "conv2d", "name": "c", "out_channels": 1, "kernel_size": 1, "weight": [[[[1.0]]]], "bias_value": [0.0],
         "activation": "relu"},
        {"kind": "maxpool2d", "name": "p", "kernel_size": 2},
        {"kind": "flatten", "name": "f"}, {"name": "out", "units": 2, "activation": "sigmoid"}]),
    "softmax_mse": _spec("smse", [2, 5], [  # a softmax output under mse: R through the softmax vjp
        {"kind": "conv1d", "name": "c", "out_channels": 2, "kernel_size": 2, "activation": "elu"},
        {"kind": "avgpool1d", "name": "p", "kernel_size": 2, "stride": 1},
        {"kind": "flatten", "name": "f"}, {"name": "out", "units": 3, "activation": "softmax"}], loss="mse"),
    "transpose_frozen": _spec("tfroz", [2, 6], [  # dense over leading axes; frozen weight and bias
        {"kind": "conv1d", "name": "c", "out_channels": 3, "kernel_size": 3, "padding": 1, "activation": "tanh",
         "freeze": ["weight"]},
        {"kind": "transpose", "name": "tr"},
        {"name": "d", "units": 2, "activation": "sigmoid", "bias": "shared"},
        {"name": "out", "units": 2, "freeze": ["bias"]}]),  # outputs (6, 2): a value per step
    "gemm_conv": _spec("gconv", [3, 10, 10], [  # 4 x 64 positions x 27: the im2col + GEMM kernels
        {"kind": "conv2d", "name": "c", "out_channels": 4, "kernel_size": 3, "activation": "silu"},
        {"kind": "conv2d", "name": "c2", "out_channels": 2, "kernel_size": 2, "stride": 2},
        {"kind": "flatten", "name": "f"}, {"name": "out", "units": 2, "activation": "sigmoid"}], loss="mse"),
    "flatten_out": _spec("fout", [2, 5], [  # the output is a flatten: its R and delta are its input's
        {"kind": "conv1d", "name": "c", "out_channels": 2, "kernel_size": 2, "activation": "tanh"},
        {"kind": "flatten", "name": "f"}], loss="mse"),
    "gelu_merges": {"name": "gelu", **net_activations_spec("gelu", None)},
    "elu_merges": {"name": "elu", **net_activations_spec("elu", {"alpha": 0.7})},
}
DEFAULT_NAMED = ("wide", "ties", "softmax_mse", "transpose_frozen", "flatten_out", "gelu_merges")


@pytest.mark.parametrize("which", list(NAMED) if ALL else list(DEFAULT_NAMED))
def test_named_graph_c_second_order(tmp_path, which):
    model = from_dict(NAMED[which])
    cm, nm = build_both(tmp_path, model, compilers=CC if which == "ties" else CC[:1])
    rng = np.random.default_rng(11)
    params = {k: rng.normal(scale=0.6, size=v.shape) for k, v in cm.init_params().items()}
    if which == "ties":
        params = cm.init_params()
        x = np.array([[[[1.0, 1.0, 0.0, -1.0], [1.0, 0.5, 0.0, 0.0], [2.0, 3.0, 3.0, 3.0], [-1.0, 0.0, 3.0, 3.0]]]])
        x = np.concatenate([x, x[:, :, ::-1]])
        t = np.array([[0.2, 0.7], [0.9, 0.1]])
    else:
        x, t = data(model, rng, 4)
    if which == "wide":
        assert model.n_outputs > model.n_inputs
    against_numpy(cm, nm, params, x, t)
    check(cm, model, params, x, t, loss=cells_loss if which == "transpose_frozen" else torch_loss, floor=1e-3)
    if which == "transpose_frozen":
        v = {name: np.ones(shape) for name, shape in cm.HESSIAN_ORDER}
        assert "c.weight" not in cm.hvp(params, x, t, v) and "out.bias" not in cm.hvp(params, x, t, v)


@pytest.mark.parametrize("which", ["softmax_mse", "lstm"])
def test_float32_package_is_close(tmp_path, which):
    model = from_dict(NAMED["softmax_mse"]) if which == "softmax_mse" else random_recurrent(1)[0]
    cm, nm = build_both(tmp_path, model, dtype="float32")
    rng = np.random.default_rng(2)
    params = {k: rng.normal(scale=0.6, size=v.shape) for k, v in nm.init_params().items()}
    x, t = data(model, rng, 3)
    v = unflatten(nm, rng.normal(size=nm.N_TRAINABLE))
    hv = cm.hvp(params, x, t, v)
    assert all(a.dtype == np.float32 for a in hv.values())
    same(flatten(cm, hv), flatten(nm, nm.hvp(params, x, t, v)), 1e-4, "float32 hvp")
    same(cm.hessian(params, x, t), nm.hessian(params, x, t), 1e-4, "float32 hessian")
    same(cm.jacobian(params, x), nm.jacobian(params, x), 1e-4, "float32 jacobian")


def test_newton_training_step_of_a_c_graph_package(tmp_path):
    """optimizer = "newton" on a graph network in C: the same step as the NumPy module's, and the loss falls."""
    spec = _spec("cnewton", [1, 6], [
        {"kind": "conv1d", "name": "c", "out_channels": 2, "kernel_size": 3, "activation": "tanh"},
        {"kind": "avgpool1d", "name": "p", "kernel_size": 2}, {"kind": "flatten", "name": "f"}, {"name": "out", "units": 1}])
    spec["train"] = {"optimizer": "newton", "learning_rate": 0.5, "damping": 0.1}
    model = from_dict(spec)
    symgrad.generate(model, "c", tmp_path)  # the optimizer brings the second-order functions along
    symgrad.generate(model, "numpy", tmp_path / "np")
    cm = symgrad.import_generated(f"{model.name}_c", tmp_path)
    nm = symgrad.import_generated(model.name, tmp_path / "np")
    p = nm.init_params()
    x, t = data(model, np.random.default_rng(0), 5)
    new, _, E = cm.train_step(cm.init_params(), cm.init_state(cm.init_params()), x, t)
    ref, _, E_ref = nm.train_step(p, nm.init_state(p), x, t)
    same(flatten(cm, new), flatten(nm, ref), 1e-12, "newton step")
    assert abs(E - E_ref) <= 1e-12 * abs(E_ref) and cm.loss(new, x, t) < E


def test_a_graph_with_every_parameter_frozen(tmp_path):
    """No direction to move along: hvp and gauss_newton_vp are empty dicts, input gradients and Jacobian as NumPy's."""
    spec = _spec("frozen", [2, 5], [
        {"kind": "conv1d", "name": "c", "out_channels": 2, "kernel_size": 2, "activation": "tanh",
         "freeze": ["weight", "bias"]},
        {"kind": "flatten", "name": "f"}, {"name": "out", "units": 2, "freeze": ["weight", "bias"]}])
    model = from_dict(spec)
    cm, nm = build_both(tmp_path, model)
    x, t = data(model, np.random.default_rng(4), 3)
    p = cm.init_params()
    assert cm.hvp(p, x, t, {}) == {} == cm.gauss_newton_vp(p, x, t, {}) and cm.hessian(p, x, t).shape == (0, 0)
    same(cm.input_gradients(p, x, t), nm.input_gradients(p, x, t), what="input_gradients")
    same(cm.jacobian(p, x), nm.jacobian(p, x), what="jacobian")
