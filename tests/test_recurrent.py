"""Recurrent layers (rnn, lstm, gru) against PyTorch float64 nn.RNN / nn.LSTM / nn.GRU with batch_first=True.

Forward, loss and every gradient to 1e-10 relative for random sizes, lengths 1..20, batch 1 and larger, the
last state or every step, bias or none, stacked layers, after a conv1d, and truncated BPTT (PyTorch's state
detached every bptt_steps steps). The SymPy definition (used by reports) agrees with the NumPy kernels.
"""

import numpy as np
import pytest
import sympy as sp

from symgrad.errors import SpecError
from symgrad.spec.loader import from_dict

torch = pytest.importorskip("torch")
TOL = 1e-10


def spec(layers, input_shape, loss="mse", name="rec"):
    return from_dict({"name": name, "input_shape": list(input_shape), "layers": layers, "loss": {"kind": loss}})


def torch_forward(model, params, x):
    """The model's output in PyTorch float64 (params: name -> tensor), the state detached every bptt_steps."""
    import torch.nn.functional as F
    from torch.func import functional_call

    vals = {"x": x}
    for n in model.nodes:
        a = vals[n.inputs[0]]
        P = {p.name.rsplit(".", 1)[1]: params[p.name] for p in n.params}
        op = n.op
        if n.kind in ("rnn", "lstm", "gru"):
            cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[n.kind]
            extra = {"nonlinearity": op.activation} if n.kind == "rnn" else {}
            mod = cls(op.F, op.H, bias=op.bias == "unit", batch_first=True, **extra).double()
            weights = {f"{k}_l0": v for k, v in P.items()}
            k = op.bptt_steps or op.T
            outs, state = [], None
            for s in range(0, op.T, k):
                o, state = functional_call(mod, weights, (a[:, s:s + k],) if state is None else (a[:, s:s + k], state))
                state = tuple(v.detach() for v in state) if isinstance(state, tuple) else state.detach()
                outs.append(o)
            o = torch.cat(outs, 1)
            z = o if op.return_sequences else o[:, -1]
        elif n.kind == "dense":
            z = a @ P["weight"].T + (P["bias"] if "bias" in P else 0)
        elif n.kind == "conv1d":
            z = F.conv1d(a, P["weight"], P.get("bias"), stride=op.s, padding=[p[0] for p in op.pad], dilation=op.dl)
        elif n.kind == "transpose":
            z = a.transpose(1, 2)
        elif n.kind == "concat":
            z = torch.cat([vals[s] for s in n.inputs], 1)
        else:
            raise AssertionError(n.kind)
        act = n.activation.name if n.activation is not None else "identity"
        vals[n.name] = {"identity": lambda v: v, "tanh": torch.tanh, "relu": torch.relu}[act](z)
    return vals[model.nodes[-1].name]


def check(model, build, batch, seed=0, module=None):
    """Forward, loss and gradients of the generated module (or ``module``) against PyTorch; the worst relative error."""
    m = module or build(model)
    rng = np.random.default_rng(seed)
    params = {k: rng.normal(scale=0.6, size=v.shape) for k, v in m.init_params().items()}
    x = rng.normal(size=(batch,) + model.input_shape)
    t = rng.normal(size=(batch,) + model.output_shape)
    E, g = m.loss_and_gradients(params, x, t)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    y = torch_forward(model, tp, torch.tensor(x))
    tt = torch.tensor(t)
    L = ((y - tt) ** 2).mean() if model.loss.name == "mse" else ((y - tt) ** 2).sum() / 2
    L.backward()
    errs = {"loss": abs(E - L.item()) / abs(L.item())}
    ref = y.detach().numpy()
    errs["forward"] = np.abs(m.forward(params, x) - ref).max() / np.abs(ref).max()
    assert set(g) == set(params)
    for k, v in g.items():
        r = tp[k].grad.numpy()
        errs[k] = np.abs(v - r).max() / max(np.abs(r).max(), 1e-300) if np.abs(r).max() else np.abs(v).max()
    bad = {k: e for k, e in errs.items() if not e < TOL}
    assert not bad, bad
    return max(errs.values())


def random_case(seed):
    """A random one-layer recurrent network (kind, sizes, bias, output, truncation) and a batch size."""
    rng = np.random.default_rng(1000 + seed)
    kind = ["rnn", "lstm", "gru"][seed % 3]
    T, F, H = int(rng.integers(1, 21)), int(rng.integers(1, 6)), int(rng.integers(1, 7))
    layer = {"kind": kind, "name": "rec", "hidden_size": H, "bias": ["unit", "none"][int(rng.integers(0, 4) == 0)],
             "return_sequences": bool(rng.integers(0, 2))}
    if kind == "rnn":
        layer["activation"] = ["tanh", "relu"][int(rng.integers(0, 2))]
    if rng.integers(0, 3) == 0:
        layer["bptt_steps"] = int(rng.integers(1, T + 2))
    layers = [layer, {"name": "out", "units": int(rng.integers(1, 4))}]
    return spec(layers, (T, F), ["mse", "half_sse"][seed % 2]), [1, int(rng.integers(2, 7))][seed // 3 % 2]


@pytest.mark.parametrize("seed", range(24))
def test_random_layers_match_pytorch(build, seed):
    model, batch = random_case(seed)
    check(model, build, batch, seed)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("sequences", [False, True])
@pytest.mark.parametrize("bptt", [None, 1, 3])
def test_every_kind_output_and_truncation(build, kind, sequences, bptt):
    layer = {"kind": kind, "name": "rec", "hidden_size": 3, "return_sequences": sequences}
    if bptt:
        layer["bptt_steps"] = bptt
    model = spec([layer, {"name": "out", "units": 2}], (7, 2))
    m = build(model)
    check(model, build, 4, module=m)
    check(model, build, 1, seed=1, module=m)


def test_stacked_layers_match_pytorch(build):
    layers = [{"kind": "lstm", "name": "l1", "hidden_size": 5, "return_sequences": True},
              {"kind": "gru", "name": "l2", "hidden_size": 4, "return_sequences": True, "bptt_steps": 4},
              {"kind": "rnn", "name": "l3", "hidden_size": 3, "activation": "relu"},
              {"name": "out", "units": 1}]
    check(spec(layers, (11, 3)), build, 5)


def test_after_conv1d_through_transpose(build):
    layers = [{"kind": "conv1d", "name": "conv", "out_channels": 4, "kernel_size": 3, "activation": "tanh"},
              {"kind": "transpose", "name": "steps"},
              {"kind": "gru", "name": "rec", "hidden_size": 3},
              {"name": "out", "units": 2}]
    model = spec(layers, (2, 9))
    assert model.node("steps").shape == (7, 4)
    check(model, build, 3)


def test_input_projection_and_sequence_output_per_step_dense(build):
    """A dense layer on every step of a sequence output, the loss averaged over every element."""
    layers = [{"kind": "rnn", "name": "rec", "hidden_size": 4, "return_sequences": True},
              {"name": "hid", "units": 3, "activation": "tanh"}, {"name": "out", "units": 1}]
    model = spec(layers, (6, 2))
    assert model.output_shape == (6, 1)
    check(model, build, 3)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_sympy_definition_agrees_with_the_kernels(build, kind):
    """sympy_forward (what reports derive from) gives the module's outputs and, by sympy.diff, its gradients."""
    layers = [{"kind": kind, "name": "rec", "hidden_size": 2, "return_sequences": True}, {"name": "out", "units": 1}]
    model = spec(layers, (2, 1), loss="half_sse")
    m = build(model)
    rng = np.random.default_rng(3)
    params = {k: rng.normal(size=v.shape) for k, v in m.init_params().items()}
    x = rng.normal(size=model.input_shape)
    node, w, b = model.nodes[0], params["out.weight"], params["out.bias"][0]
    grads = m.gradients(params, x, np.zeros(model.output_shape))

    def loss(arrays):
        y = node.op.sympy_forward([x.astype(object)], arrays).dot(w.T.astype(object)) + b
        return y, sum(v**2 for v in y.ravel()) / 2

    numbers = [params[p.name].astype(object) for p in node.params]
    y, _ = loss(numbers)
    np.testing.assert_allclose(np.array(y, dtype=float).ravel(), m.forward(params, x).ravel(), rtol=1e-12)
    s = sp.Symbol("s", real=True)
    for j, p in enumerate(node.params):
        for i in {(0,) * len(p.shape), tuple(n - 1 for n in p.shape)}:  # the first and last entries
            arrays = [a.copy() for a in numbers]
            arrays[j][i] = s
            dE = sp.diff(loss(arrays)[1], s).subs(s, params[p.name][i])
            assert float(dE) == pytest.approx(grads[p.name][i], rel=1e-10, abs=1e-12), (p.name, i)


def test_local_derivatives_come_from_sympy():
    lstm = spec([{"kind": "lstm", "name": "rec", "hidden_size": 2}], (3, 1)).nodes[0].op
    rows = dict(lstm.local_derivatives())
    i, g = sp.symbols("i g", real=True)
    assert sp.simplify(rows["dc_t/di * di/da_i"] - g * i * (1 - i)) == 0
    assert sp.sstr(rows["dc_t/dc_{t-1} (the cell-state path)"]) == "f"
    gru = spec([{"kind": "gru", "name": "rec", "hidden_size": 2}], (3, 1)).nodes[0].op
    assert sp.sstr(dict(gru.local_derivatives())["dh_t/dh_{t-1} (directly, besides W_hh)"]) == "z"


@pytest.mark.parametrize("layer, message", [
    ({"kind": "lstm", "name": "r"}, "hidden_size must be a positive integer"),
    ({"kind": "gru", "name": "r", "hidden_size": 2, "bptt_steps": 0}, "bptt_steps must be a positive integer"),
    ({"kind": "rnn", "name": "r", "hidden_size": 2, "activation": "sigmoid"}, "unknown activation"),
    ({"kind": "rnn", "name": "r", "hidden_size": 2, "return_sequences": 1}, "return_sequences must be true or false"),
    ({"kind": "lstm", "name": "r", "hidden_size": 2, "bias": "shared"}, "unknown bias"),
    ({"kind": "lstm", "name": "r", "hidden_size": 2, "weight_hh": [[1.0]]}, "expected shape (8, 2)"),
])
def test_spec_errors_name_the_layer(layer, message):
    with pytest.raises(SpecError) as exc:
        spec([layer, {"name": "out", "units": 1}], (4, 2))
    assert message in str(exc.value) and ("layer 'r'" in str(exc.value) or "layers[0]" in str(exc.value))


def test_a_signal_needs_transpose_before_a_recurrent_layer():
    with pytest.raises(SpecError, match="transpose"):
        spec([{"kind": "lstm", "name": "r", "hidden_size": 2}], (2, 3, 4))


def test_elman_toy_example_matches_pytorch():
    """examples/elman_toy.toml's worked sample: the committed module against nn.RNN(1, 2) + nn.Linear(2, 1)."""
    import symgrad
    from conftest import ROOT
    from generated import elman_toy

    model = symgrad.load(ROOT / "examples/elman_toy.toml")
    p = elman_toy.init_params()
    x, t = model.sample.x, model.sample.t
    E, g = elman_toy.loss_and_gradients(p, x, t)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in p.items()}
    y = torch_forward(model, tp, torch.tensor(x[None]))[0]
    L = ((y - torch.tensor(t)) ** 2).sum() / 2
    L.backward()
    assert E == pytest.approx(L.item(), rel=1e-14)
    for k in g:
        np.testing.assert_allclose(g[k], tp[k].grad.numpy(), rtol=1e-12, atol=1e-15, err_msg=k)


def test_lstm_sine_example_trains_to_the_noise_level():
    """symgrad train's loop on examples/lstm_sine.npz (x shaped (N, 16, 1)): the MSE falls near the noise's 0.0025."""
    import symgrad
    from conftest import ROOT
    from symgrad.train.data import load_data
    from symgrad.train.fit import fit

    model = symgrad.load(ROOT / "examples/lstm_sine.toml")
    x, y = load_data(ROOT / "examples/lstm_sine.npz", model)
    assert x.shape == (480, 16, 1) and y.shape == (480, 1)
    result = fit(model, x, y, epochs=25)
    assert result.losses[-1] < 0.01 < result.losses[0]


def test_shaped_data_files(tmp_path):
    """An .npz holds a sequence model's x shaped (N, T, F) or flat (N, T*F); a CSV names the flat columns."""
    from symgrad.train.data import load_data

    model = spec([{"kind": "gru", "name": "r", "hidden_size": 2, "return_sequences": True}], (3, 2))
    x = np.arange(24.0).reshape(4, 3, 2)
    y = -np.arange(24.0).reshape(4, 3, 2)
    for name, arrays in (("shaped", {"x": x, "y": y}), ("flat", {"x": x.reshape(4, -1), "y": y.reshape(4, -1)})):
        np.savez(tmp_path / f"{name}.npz", **arrays)
        gx, gy = load_data(tmp_path / f"{name}.npz", model)
        np.testing.assert_array_equal(gx, x)
        np.testing.assert_array_equal(gy, y)
    np.savez(tmp_path / "bad.npz", x=x.reshape(4, 2, 3), y=y)
    with pytest.raises(SpecError, match=r"expected \(N, 6\) or \(N, 3, 2\)"):
        load_data(tmp_path / "bad.npz", model)
    header = ",".join(model.inputs + model.outputs)
    rows = "\n".join(",".join(map(str, r)) for r in np.hstack([x.reshape(4, -1), y.reshape(4, -1)]))
    (tmp_path / "d.csv").write_text(header + "\n" + rows + "\n")
    gx, gy = load_data(tmp_path / "d.csv", model)
    np.testing.assert_array_equal(gx, x)
    np.testing.assert_array_equal(gy, y)


@pytest.mark.parametrize("variant", [{}, {"return_sequences": True}, {"bptt_steps": 2}, {"activation": "relu"},
                                     {"bias": "none", "return_sequences": True, "bptt_steps": 1}])
def test_elman_report_sums_through_time_to_the_module_gradients(variant):
    """The report's worked backward pass (one term per step) gives the generated module's gradients."""
    from symgrad.report.recurrent import RecurrentReport

    layer = {"kind": "rnn", "name": "rnn", "hidden_size": 2, **variant}
    model = from_dict({"name": "elman", "input_shape": [4, 1], "layers": [layer, {"name": "out", "units": 1}],
                       "loss": "half_sse", "sample": {"x": [[1.0], [0.5], [-1.0], [0.3]],
                                                      "t": [[0.3]] * (4 if variant.get("return_sequences") else 1)}})
    rep = RecurrentReport(model, model.init_params(), 9)
    built = rep.build()
    assert set(rep.worked) == {p.name for p in model.nodes[0].params}
    for name, g in rep.worked.items():
        np.testing.assert_allclose(g, rep.grads[name], rtol=1e-12, atol=1e-15, err_msg=name)
    titles = [s.title for s in built.sections]
    assert "Forward pass, step by step" in titles and "Gradients through time: every step adds a term" in titles


def test_reports_of_the_recurrent_examples():
    """elman_toy works every W_hh gradient as a sum over the 3 steps; lstm_sine states the gates and their deltas."""
    import symgrad
    from conftest import ROOT
    from symgrad.report.layout import report

    text = report(symgrad.load(ROOT / "examples/elman_toy.toml"))
    whh = [line for line in text.splitlines() if line.startswith(r"\frac{\partial E}{\partial w_{") and "^{hh}} &=" in line]
    assert len(whh) == 4 and all(line.count(r"\delta_") == 3 for line in whh)
    lstm = report(symgrad.load(ROOT / "examples/lstm_sine.toml"))
    assert "the cell-state path" in lstm and r"o \cdot \left(1 - \tanh^{2}{\left(c_{t} \right)}\right)" in lstm


@pytest.fixture(scope="module")
def c_kernels(tmp_path_factory):
    """templates/c/symgrad_rnn.h compiled on its own (-Wall -Wextra -Werror -pedantic) with tests/rnn_kernels.c."""
    import ctypes
    import shutil
    import subprocess

    from conftest import ROOT

    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    lib = tmp_path_factory.mktemp("rnn_c") / "rnn_kernels.so"
    subprocess.run([cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2", "-shared", "-fPIC",
                    "-I", str(ROOT / "templates/c"), str(ROOT / "tests/rnn_kernels.c"), "-o", str(lib), "-lm"], check=True)
    return ctypes.CDLL(str(lib))


@pytest.mark.parametrize("seed", range(24))
def test_c_kernels_match_the_numpy_kernels(c_kernels, seed):
    """Forward states and every gradient of the C header against the NumPy kernels (which match PyTorch)."""
    import ctypes

    from symgrad.backends.numpy import recurrent as K

    rng = np.random.default_rng(seed)
    kind = seed % 4  # rnn tanh, rnn relu, lstm, gru
    G = (1, 1, 4, 3)[kind]
    B, T, F, H = int(rng.integers(1, 4)), int(rng.integers(1, 9)), int(rng.integers(1, 4)), int(rng.integers(1, 14))
    bptt = int(rng.integers(0, 4))
    seq, bias = bool(rng.integers(0, 2)), seed % 3 != 2
    wih, whh = rng.normal(size=(G * H, F)), rng.normal(size=(G * H, H))
    bih, bhh = (rng.normal(size=G * H), rng.normal(size=G * H)) if bias else (None, None)
    x = rng.normal(size=(B, T, F))
    dy = rng.normal(size=(B, T, H) if seq else (B, H))
    if kind < 2:
        h = K._rnn(x, wih, whh, bih, bhh, kind == 1)
        want = K._rnn_backward(dy, h, x, wih, whh, bptt, True, bias, kind == 1)
    else:
        forward, backward = (K._lstm, K._lstm_backward) if kind == 2 else (K._gru, K._gru_backward)
        h, s = forward(x, wih, whh, bih, bhh)
        want = backward(dy, h, s, x, wih, whh, bptt, True, bias)
    P = ctypes.POINTER(ctypes.c_double)

    def ptr(a):
        return None if a is None else a.ctypes.data_as(P)

    ch, gates, states, states2 = np.empty((B, T, H)), np.empty((B, T, G * H)), np.empty((B, T, H)), np.empty((B, T, H))
    sizes = [ctypes.c_int(v) for v in (kind, B, T, F, H)]
    c_kernels.rnn_forward(*sizes, ptr(wih), ptr(whh), ptr(bih), ptr(bhh), ptr(x), ptr(ch), ptr(gates), ptr(states),
                          ptr(states2), ptr(np.empty((F + H + 3) * G * H)))
    np.testing.assert_allclose(ch, h, rtol=1e-12, atol=1e-14)
    got = [np.empty((B, T, F)), np.empty_like(wih), np.empty_like(whh)] + \
        ([np.empty(G * H), np.empty(G * H)] if bias else [None, None])
    c_kernels.rnn_backward(*sizes, ctypes.c_int(bptt), ctypes.c_int(seq), ptr(wih), ptr(whh), ptr(bih), ptr(bhh),
                           ptr(x), ptr(ch), ptr(gates), ptr(states), ptr(states2), ptr(dy), ptr(np.empty(3 * H + (F + H) * G * H)),
                           *[ptr(a) for a in got])
    for name, a, b in zip(("dx", "dW_ih", "dW_hh", "db_ih", "db_hh"), got, want):
        if b is not None:
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12 * max(1.0, np.abs(b).max()), err_msg=name)


def test_python_api_builds_the_same_network(build):
    """GraphNetwork with LSTM/GRU objects, as the README shows, is the TOML spec's network."""
    from symgrad import Dense
    from symgrad.ops.recurrent import GRU, LSTM
    from symgrad.spec.graph import GraphNetwork

    model = GraphNetwork("seq", [6, 2], [LSTM("l1", hidden_size=3, return_sequences=True),
                                         GRU("l2", hidden_size=2, bptt_steps=4), Dense("out", 1)], loss="mse")
    same = spec([{"kind": "lstm", "name": "l1", "hidden_size": 3, "return_sequences": True},
                 {"kind": "gru", "name": "l2", "hidden_size": 2, "bptt_steps": 4}, {"name": "out", "units": 1}], (6, 2))
    assert model.describe() == same.describe()
    check(model, build, 2)


def test_frozen_weights_and_float32(build):
    """Frozen weight_hh and bias_ih get no gradient; the float32 module agrees with float64 to float32 precision."""
    model = spec([{"kind": "lstm", "name": "r", "hidden_size": 4, "return_sequences": True,
                   "freeze": ["weight_hh", "bias_ih"]}, {"name": "out", "units": 2}], (7, 3))
    m64, m32 = build(model), build(model, "float32")
    rng = np.random.default_rng(0)
    x, t = rng.normal(size=(4, 7, 3)), rng.normal(size=(4, 7, 2))
    p = m64.init_params()
    E, g = m64.loss_and_gradients(p, x, t)
    E32, g32 = m32.loss_and_gradients({k: v.astype(np.float32) for k, v in p.items()}, x.astype(np.float32),
                                      t.astype(np.float32))
    assert set(g) == set(g32) == {"r.weight_ih", "r.bias_hh", "out.weight", "out.bias"}
    assert E32 == pytest.approx(E, rel=1e-5)
    for k in g:
        assert g32[k].dtype == np.float32
        np.testing.assert_allclose(g32[k], g[k], rtol=0, atol=1e-5 * np.abs(g[k]).max(), err_msg=k)

