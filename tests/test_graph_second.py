"""Second-order functions of graph networks (NumPy) against PyTorch float64 through torch.func.

Random graphs from tests/graph_specs.py (convolutions, max and average pooling, flatten, add, concat, dense; every
activation and loss it draws) and random recurrent networks (rnn, lstm, gru; last state or every step, bias or none,
truncated BPTT, frozen weights, after conv1d and transpose): hessian against ``torch.func.hessian``, hvp against
``jvp`` over ``grad``, input_gradients against ``grad``, jacobian against ``jacrev``, gauss_newton_vp against
J^T H_loss J v, all to 1e-10 relative to the largest entry; the Hessian symmetric, hvp equal to hessian @ v; batch
1 and larger. The default run is bounded (tens of seconds); ``SYMGRAD_PROPERTY_EXAMPLES=200`` draws more.
"""

import os

import numpy as np
import pytest
import sympy as sp
from graph_specs import random_graph, torch_loss
from test_second_order import flatten, hessian_matches_differences, unflatten

import symgrad
from symgrad.spec import from_dict, load

torch = pytest.importorskip("torch")
N = int(os.environ.get("SYMGRAD_PROPERTY_EXAMPLES", 25))
N_GRAPHS = max(1, N // 2)  # each example builds a module and several Hessians
N_RECURRENT = max(3, N // 3)


def build2(tmp_path, model):
    out = tmp_path / f"gen_{model.name}"
    symgrad.generate(model, "numpy", out, second_order=True)
    return symgrad.import_generated(model.name, out)


def close(actual, ref, rel=1e-10, what="", floor=1e-300):
    """|actual - ref| <= rel times the largest |ref| (or ``floor`` when every entry is smaller)."""
    actual, ref = np.asarray(actual), np.asarray(ref)
    assert actual.shape == ref.shape, (what, actual.shape, ref.shape)
    scale = max(np.abs(ref).max() if ref.size else 0.0, floor)
    assert np.abs(actual - ref).max(initial=0.0) <= rel * scale, (what, np.abs(actual - ref).max() / scale)


# -- a PyTorch reference for recurrent graphs: the cells written out (checked against nn.RNN/LSTM/GRU below)

ACTS = {"identity": lambda v: v, "tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid}


def torch_cells(model, P, x):
    """The output of a graph of dense, conv1d, transpose, rnn, lstm and gru layers in PyTorch, the state detached
    every bptt_steps steps (as the first-order tests' nn.RNN/LSTM/GRU reference does)."""
    import torch.nn.functional as F

    vals = {"x": x}
    for n in model.nodes:
        a, op = vals[n.inputs[0]], n.op
        p = [P[q.name] for q in n.params]
        if n.kind in ("rnn", "lstm", "gru"):
            wih, whh = p[0], p[1]
            bih, bhh = (p[2], p[3]) if len(p) > 2 else (0.0, 0.0)
            H = op.H
            h = c = torch.zeros(a.shape[0], H, dtype=a.dtype)
            outs = []
            for t in range(op.T):
                if t and op.truncate and t % op.truncate == 0:
                    h, c = h.detach(), c.detach()
                gi, gh = a[:, t] @ wih.T + bih, h @ whh.T + bhh
                if n.kind == "rnn":
                    h = ACTS[op.activation](gi + gh)
                elif n.kind == "lstm":
                    i, f, g, o = (gi + gh).split(H, dim=1)
                    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                    h = torch.sigmoid(o) * torch.tanh(c)
                else:
                    r = torch.sigmoid(gi[:, :H] + gh[:, :H])
                    z = torch.sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
                    nn_ = torch.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
                    h = (1 - z) * nn_ + z * h
                outs.append(h)
            v = torch.stack(outs, 1) if op.return_sequences else outs[-1]
        elif n.kind == "dense":
            v = a @ p[0].T + (p[1] if len(p) > 1 else 0)
        elif n.kind == "conv1d":
            v = F.conv1d(a, p[0], p[1] if len(p) > 1 else None, stride=op.s, padding=[q[0] for q in op.pad],
                         dilation=op.dl)
        elif n.kind == "transpose":
            v = a.transpose(1, 2)
        else:
            raise AssertionError(n.kind)
        vals[n.name] = ACTS[n.activation.name if n.activation is not None else "identity"](v)
    return vals[model.nodes[-1].name]


def cells_loss(model, P, x, t):
    y = torch_cells(model, P, x)
    E = ((y - t) ** 2).mean() if model.loss.name == "mse" else ((y - t) ** 2).sum() / 2
    return E, y


# -- the comparison


class Reference:
    """E(theta) and y(theta, x) in PyTorch, theta the trainable parameters flattened in HESSIAN_ORDER."""

    def __init__(self, model, mod, params, loss):
        self.model, self.mod, self.loss_fn = model, mod, loss
        self.fixed = {k: torch.tensor(np.asarray(v, dtype=np.float64)) for k, v in params.items()}
        self.theta = torch.cat([self.fixed[n].reshape(-1) for n, _ in mod.HESSIAN_ORDER] + [torch.zeros(0).double()])

    def params(self, theta):
        p, k = dict(self.fixed), 0
        for name, shape in self.mod.HESSIAN_ORDER:
            n = int(np.prod(shape))
            p[name] = theta[k:k + n].reshape(shape)
            k += n
        return p

    def loss(self, theta, x, t):
        return self.loss_fn(self.model, self.params(theta), x, t)[0]

    def output(self, theta, x, t):
        return self.loss_fn(self.model, self.params(theta), x, t)[1]


def check(mod, model, params, x, t, loss=torch_loss, hessian=True, rel=1e-10, floor=1e-300):
    """Every second-order function of mod against torch.func on the same model, parameters and batch; ``floor``: the
    smallest scale errors are relative to (saturated units make products that are differences of larger terms)."""
    ref = Reference(model, mod, params, loss)
    X, T, theta = torch.tensor(x), torch.tensor(t), ref.theta
    rng = np.random.default_rng(0)
    v = rng.normal(size=theta.shape[0])
    hv = flatten(mod, mod.hvp(params, x, t, unflatten(mod, v)))
    _, jvp = torch.func.jvp(torch.func.grad(lambda th: ref.loss(th, X, T)), (theta,), (torch.tensor(v),))
    close(hv, jvp.numpy(), rel, "hvp", floor)
    if hessian:
        H = mod.hessian(params, x, t)
        close(H, torch.func.hessian(lambda th: ref.loss(th, X, T))(theta).numpy(), rel, "hessian", floor)
        assert np.abs(H - H.T).max() <= 1e-13 * max(np.abs(H).max(), 1e-300)
        close(hv, H @ v, 1e-12, "hvp == hessian @ v", floor)
        blocks = mod.hessian_blocks(H)
        (a, sa), (b, sb) = mod.HESSIAN_ORDER[0], mod.HESSIAN_ORDER[-1]
        assert blocks[a, b].shape == sa + sb
    gx = torch.func.grad(lambda xx: ref.loss(theta, xx, T))(X).numpy()
    close(mod.input_gradients(params, x, t), gx, rel, "input_gradients", floor)
    J = torch.func.jacrev(lambda xx: ref.output(theta, xx, T).reshape(xx.shape[0], -1))(X)  # (b, n_out, b, *in)
    J = torch.stack([J[i, :, i] for i in range(x.shape[0])]).numpy()
    close(mod.jacobian(params, x), J, rel, "jacobian", floor)
    close(mod.jacobian(params, x[0]), J[0], rel, "jacobian of one sample", floor)
    y, Jv = torch.func.jvp(lambda th: ref.output(th, X, T), (theta,), (torch.tensor(v),))  # J v
    _, HJv = torch.func.jvp(torch.func.grad(lambda yy: _loss_at(model, yy, T)), (y,), (Jv,))  # H_loss J v
    _, pull = torch.func.vjp(lambda th: ref.output(th, X, T), theta)
    close(flatten(mod, mod.gauss_newton_vp(params, x, t, unflatten(mod, v))), pull(HJv)[0].numpy(), rel,
          "gauss_newton_vp", floor)


def _loss_at(model, y, t):
    name = model.loss.name
    if name in ELEMENT_LOSSES:
        return element_loss(model.loss, y, t)
    assert name == "softmax_cross_entropy", name
    return -(t * torch.log(y)).sum() / y.shape[0]


def data(model, rng, batch):
    x = rng.normal(size=(batch,) + model.input_shape)
    if model.loss.name == "softmax_cross_entropy":
        t = rng.dirichlet(np.ones(model.n_outputs), size=batch)
    else:
        t = rng.uniform(size=(batch,) + model.output_shape)
    return x, t


@pytest.mark.parametrize("seed", range(N_GRAPHS))
def test_random_graph_second_order_matches_torch(tmp_path, seed):
    rng = np.random.default_rng(2000 + seed)
    model = from_dict(random_graph(rng))
    mod = build2(tmp_path, model)
    params = {k: rng.normal(scale=0.7, size=v.shape) for k, v in mod.init_params().items()}
    small = mod.N_TRAINABLE <= 400
    for batch in (1, 3):
        x, t = data(model, rng, batch)
        check(mod, model, params, x, t, hessian=small, floor=1e-3)  # the first-order graph tests' floor


def random_recurrent(seed):
    """A random recurrent graph: kind, sizes, bias, last state or every step, truncation, frozen weights, and
    sometimes a conv1d and transpose in front or a dense layer on every step."""
    rng = np.random.default_rng(3000 + seed)
    kind = ("rnn", "lstm", "gru")[seed % 3]
    T, F, H = int(rng.integers(1, 8)), int(rng.integers(1, 4)), int(rng.integers(1, 4))
    layer = {"kind": kind, "name": "rec", "hidden_size": H, "bias": ("unit", "none")[int(rng.integers(0, 4) == 0)],
             "return_sequences": bool(rng.integers(0, 2))}
    if kind == "rnn":
        layer["activation"] = ("tanh", "relu")[int(rng.integers(0, 2))]
    if rng.integers(0, 2):
        layer["bptt_steps"] = int(rng.integers(1, T + 2))
    if rng.integers(0, 4) == 0:
        layer["freeze"] = [str(rng.choice(["weight_ih", "weight_hh"]))] + (["bias_hh"] if layer["bias"] == "unit" else [])
    layers, shape = [layer], (T, F)
    if rng.integers(0, 3) == 0:
        layers = [{"kind": "conv1d", "name": "conv", "out_channels": F, "kernel_size": 2, "padding": 1,
                   "activation": "tanh"}, {"kind": "transpose", "name": "steps"}] + layers
        shape = (F, T - 1) if T > 1 else (F, 1)  # kernel 2 and padding 1 add one step; kernel 3 keeps one
        if T == 1:
            layers[0]["kernel_size"] = 3
    if layer["return_sequences"] and rng.integers(0, 2):
        layers.append({"name": "hid", "units": 2, "activation": "tanh"})
    layers.append({"name": "out", "units": int(rng.integers(1, 3))})
    spec = {"name": f"rec{seed}", "input_shape": list(shape), "layers": layers,
            "loss": {"kind": ("mse", "half_sse")[seed % 2]}}
    return from_dict(spec), rng


@pytest.mark.parametrize("seed", range(N_RECURRENT))
def test_random_recurrent_second_order_matches_torch(tmp_path, seed):
    model, rng = random_recurrent(seed)
    mod = build2(tmp_path, model)
    params = {k: rng.normal(scale=0.6, size=v.shape) for k, v in mod.init_params().items()}
    for batch in (1, 4):
        x, t = data(model, rng, batch)
        check(mod, model, params, x, t, loss=cells_loss)


def test_the_torch_cells_are_pytorchs_modules():
    """The written-out reference cells give nn.RNN/LSTM/GRU's outputs (the first-order tests' reference)."""
    from test_recurrent import torch_forward

    for seed in range(6):
        model, rng = random_recurrent(seed)
        P = {p.name: torch.tensor(rng.normal(size=p.shape)) for p in model.params}
        x = torch.tensor(rng.normal(size=(3,) + model.input_shape))
        close(torch_cells(model, P, x).numpy(), torch_forward(model, P, x).numpy(), 1e-13)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_every_cell_with_truncation_every_step_and_stacked(tmp_path, kind):
    layers = [{"kind": kind, "name": "r1", "hidden_size": 3, "return_sequences": True, "bptt_steps": 2},
              {"kind": "gru" if kind != "gru" else "lstm", "name": "r2", "hidden_size": 2, "return_sequences": True},
              {"name": "out", "units": 2}]
    model = from_dict({"name": f"stack_{kind}", "input_shape": [5, 2], "layers": layers, "loss": "mse"})
    mod = build2(tmp_path, model)
    rng = np.random.default_rng(7)
    params = {k: rng.normal(scale=0.6, size=v.shape) for k, v in mod.init_params().items()}
    x, t = data(model, rng, 3)
    check(mod, model, params, x, t, loss=cells_loss)


def test_jacobian_in_forward_mode_when_outputs_outnumber_inputs(tmp_path):
    """5 inputs, 12 outputs: the Jacobian is one R-forward per input (the other path of jacobian())."""
    spec = {"name": "wide", "input_shape": [1, 5], "loss": "half_sse", "layers": [
        {"kind": "conv1d", "name": "c", "out_channels": 2, "kernel_size": 2, "activation": "sigmoid"},
        {"kind": "maxpool1d", "name": "p", "kernel_size": 2, "stride": 1},
        {"kind": "flatten", "name": "f"}, {"name": "out", "units": 12, "activation": "tanh"}]}
    model = from_dict(spec)
    mod = build2(tmp_path, model)
    assert model.n_outputs > model.n_inputs
    rng = np.random.default_rng(1)
    x, t = data(model, rng, 2)
    check(mod, model, mod.init_params(), x, t)


def test_lenet5_hvp_matches_torch(tmp_path):
    """The LeNet-5 example (conv, max pooling, dense; 61,706 parameters): hvp, input gradients and the Jacobian."""
    model = load("examples/lenet5.toml")
    mod = build2(tmp_path, model)
    rng = np.random.default_rng(3)
    params = mod.init_params()
    x, t = data(model, rng, 2)
    check(mod, model, params, x, t, hessian=False)
    with pytest.raises(ValueError, match="hvp"):
        mod.hessian(params, x, t)


def test_max_pool_ties_and_relu_at_zero_follow_torch(tmp_path):
    """Tied window maxima route R to the first maximum and ReLU'' = 0 at a net input of exactly 0, as in PyTorch."""
    spec = {"name": "ties", "input_shape": [1, 4, 4], "loss": "half_sse", "layers": [
        {"kind": "conv2d", "name": "c", "out_channels": 1, "kernel_size": 1, "weight": [[[[1.0]]]], "bias_value": [0.0],
         "activation": "relu"},
        {"kind": "maxpool2d", "name": "p", "kernel_size": 2},
        {"kind": "flatten", "name": "f"}, {"name": "out", "units": 2, "activation": "sigmoid"}]}
    model = from_dict(spec)
    mod = build2(tmp_path, model)
    x = np.array([[[[1.0, 1.0, 0.0, -1.0], [1.0, 0.5, 0.0, 0.0], [2.0, 3.0, 3.0, 3.0], [-1.0, 0.0, 3.0, 3.0]]]])
    t = np.array([[0.2, 0.7]])
    check(mod, model, mod.init_params(), x, t)


def test_newton_training_on_a_graph(tmp_path):
    """optimizer = "newton" on a graph network: the step solves (H + damping I) s = g with the module's own Hessian."""
    spec = {"name": "gnewton", "input_shape": [1, 6], "loss": "half_sse",
            "layers": [{"kind": "conv1d", "name": "c", "out_channels": 2, "kernel_size": 3, "activation": "tanh"},
                       {"kind": "avgpool1d", "name": "p", "kernel_size": 2}, {"kind": "flatten", "name": "f"},
                       {"name": "out", "units": 1}],
            "train": {"optimizer": "newton", "learning_rate": 0.5, "damping": 0.1}}
    model = from_dict(spec)
    out = tmp_path / "gen"
    symgrad.generate(model, "numpy", out)  # the optimizer brings the second-order functions along
    mod = symgrad.import_generated(model.name, out)
    p = mod.init_params()
    rng = np.random.default_rng(0)
    x, t = data(model, rng, 5)
    new, _, E = mod.train_step(p, mod.init_state(p), x, t)
    H = mod.hessian(p, x, t)
    g = flatten(mod, mod.gradients(p, x, t))
    s = np.linalg.solve(H + 0.1 * np.eye(len(g)), g)
    close(flatten(mod, new), flatten(mod, p) - 0.5 * s, 1e-12)
    assert mod.loss(new, x, t) < E


def test_gate_second_derivatives_are_sympys():
    """The R-backward kernels' sigma'' R{a} = (1 - 2s) R{s} and tanh'' R{a} = -2 g R{g}: SymPy's f'' over f'."""
    from symgrad.ops.activations import out as OUT
    from symgrad.ops.recurrent import SIGMOID, TANH

    for act, factor in ((SIGMOID, 1 - 2 * OUT), (TANH, -2 * OUT)):
        assert sp.simplify(act.second_derivative_in_out() - factor * act.derivative_in_out()) == 0


def test_second_order_graph_files_are_deterministic_and_first_order_unchanged(tmp_path):
    """The same second-order modules under any hash seed, ruff-clean; without the flag, the checked-in file."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    outs = []
    for seed in ("0", "4242"):
        out = tmp_path / f"h{seed}"
        code = ("import symgrad\nfor e in ('conv_tiny', 'lstm_sine'):\n"
                f"    symgrad.generate(symgrad.load(f'examples/{{e}}.toml'), 'numpy', {str(out)!r}, second_order=True)")
        subprocess.run([sys.executable, "-c", code], cwd=root, env=dict(os.environ, PYTHONHASHSEED=seed), check=True,
                       capture_output=True)
        outs.append({name: (out / f"{name}.py").read_bytes() for name in ("conv_tiny", "lstm_sine")})
    assert outs[0] == outs[1] and all(b"def hvp(" in text for text in outs[0].values())
    if shutil.which("ruff"):
        res = subprocess.run(["ruff", "check", "--no-cache", "--isolated", str(tmp_path / "h0")], capture_output=True,
                             text=True)
        assert res.returncode == 0, res.stdout + res.stderr
    model = load("examples/conv_tiny.toml")
    symgrad.generate(model, "numpy", tmp_path / "plain")
    plain = (tmp_path / "plain" / f"{model.name}.py").read_text()
    assert plain == (root / "generated" / f"{model.name}.py").read_text()


EXTRA_ACTS = {"leaky_relu": lambda v: torch.nn.functional.leaky_relu(v, 0.01), "elu": torch.nn.functional.elu,
              "softplus": lambda v: torch.nn.functional.softplus(v, threshold=1e9), "silu": torch.nn.functional.silu,
              "gelu": torch.nn.functional.gelu, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "identity": lambda v: v,
              "softmax": lambda v: torch.softmax(v, -1)}
ELEMENT_LOSSES = {"bce": lambda y, t: -(t * torch.log(y) + (1 - t) * torch.log(1 - y)), "sse": lambda y, t: (y - t) ** 2,
                  "mse": lambda y, t: (y - t) ** 2, "half_sse": lambda y, t: (y - t) ** 2 / 2}


def element_loss(loss, y, t):
    """The loss of a batch from its per-element terms, averaged over the outputs and the batch as ``loss`` says."""
    per = ELEMENT_LOSSES[loss.name](y, t).sum(dim=-1)
    if loss.average_outputs:
        per = per / y.shape[-1]
    return per.mean() if loss.reduction == "mean" else per.sum()


def small_loss(model, P, x, t):
    """(E, y) of a conv2d -> avgpool2d -> flatten -> dense graph with any activation and these losses, in PyTorch."""
    import torch.nn.functional as F

    a = x
    for n in model.nodes:
        p = [P[q.name] for q in n.params]
        if n.kind == "conv2d":
            a = F.conv2d(a, p[0], p[1] if len(p) > 1 else None, padding=[q[0] for q in n.op.pad])
        elif n.kind == "avgpool2d":
            a = F.avg_pool2d(a, n.op.k, n.op.s)
        elif n.kind == "flatten":
            a = a.reshape(a.shape[0], -1)
        else:
            a = a @ p[0].T + (p[1] if len(p) > 1 else 0)
        if n.activation is not None:
            a = EXTRA_ACTS[n.activation.name](a)
    return element_loss(model.loss, a, t), a


@pytest.mark.parametrize("act", ["leaky_relu", "elu", "softplus", "silu", "gelu"])
def test_every_activation_in_a_conv_graph(tmp_path, act):
    loss = {"elu": "bce", "gelu": "sse"}.get(act, "half_sse")
    spec = {"name": f"act_{act}", "input_shape": [2, 4, 4], "loss": loss, "layers": [
        {"kind": "conv2d", "name": "c", "out_channels": 2, "kernel_size": 2, "padding": 1, "activation": act},
        {"kind": "avgpool2d", "name": "p", "kernel_size": 2},
        {"kind": "flatten", "name": "f"},
        {"name": "h", "units": 3, "activation": act},
        {"name": "out", "units": 2, "activation": "sigmoid" if loss == "bce" else "tanh"}]}
    model = from_dict(spec)
    mod = build2(tmp_path, model)
    rng = np.random.default_rng(5)
    params = {k: rng.normal(scale=0.8, size=v.shape) for k, v in mod.init_params().items()}
    for batch in (1, 3):
        x = rng.normal(size=(batch,) + model.input_shape)
        t = rng.uniform(0.05, 0.95, size=(batch,) + model.output_shape)
        check(mod, model, params, x, t, loss=small_loss)


def test_frozen_layers_and_a_bias_only_direction(tmp_path):
    """A frozen lower convolution (no R below the first trainable layer), a conv whose only trainable parameter is its
    bias (R{z} = v_b), a frozen dense bias; the Hessian also against central differences of the module's gradients."""
    spec = {"name": "frozen", "input_shape": [1, 5, 5], "loss": "half_sse", "layers": [
        {"kind": "conv2d", "name": "c1", "out_channels": 2, "kernel_size": 2, "activation": "tanh",
         "freeze": ["weight", "bias"]},
        {"kind": "conv2d", "name": "c2", "out_channels": 2, "kernel_size": 2, "activation": "softplus",
         "freeze": ["weight"]},
        {"kind": "avgpool2d", "name": "p", "kernel_size": 3},
        {"kind": "flatten", "name": "f"},
        {"name": "out", "units": 2, "activation": "sigmoid", "freeze": ["bias"]}]}
    model = from_dict(spec)
    mod = build2(tmp_path, model)
    assert mod.TRAINABLE == ("c2.bias", "out.weight")
    rng = np.random.default_rng(2)
    params = {k: rng.normal(size=v.shape) for k, v in mod.init_params().items()}
    x = rng.normal(size=(3,) + model.input_shape)
    t = rng.uniform(size=(3, 2))
    check(mod, model, params, x, t, loss=small_loss)
    hessian_matches_differences(mod, params, x, t)


def test_float32_graph_module_agrees_with_float64(tmp_path):
    model, rng = random_recurrent(1)  # an lstm
    symgrad.generate(model, "numpy", tmp_path / "a", dtype="float32", second_order=True)
    symgrad.generate(model, "numpy", tmp_path / "b", second_order=True)
    lo, hi = symgrad.import_generated(model.name, tmp_path / "a"), symgrad.import_generated(model.name, tmp_path / "b")
    params = {k: rng.normal(scale=0.5, size=v.shape) for k, v in hi.init_params().items()}
    x, t = data(model, rng, 3)
    H32, H64 = lo.hessian(params, x, t), hi.hessian(params, x, t)
    assert H32.dtype == np.float32
    close(H32, H64, 1e-4, "float32 hessian")
    assert lo.jacobian(params, x).dtype == np.float32


@pytest.mark.parametrize("loss", ["half_sse", "mse"])
def test_softmax_output_under_a_squared_error(tmp_path, loss):
    """A softmax output under a loss other than cross-entropy: R{delta} has the dh/dy term cross-entropy cancels."""
    spec = {"name": f"smx_{loss}", "input_shape": [1, 4, 4], "loss": loss, "layers": [
        {"kind": "conv2d", "name": "c", "out_channels": 2, "kernel_size": 2, "activation": "elu"},
        {"kind": "avgpool2d", "name": "p", "kernel_size": 2, "stride": 1},
        {"kind": "flatten", "name": "f"}, {"name": "out", "units": 3, "activation": "softmax"}]}
    model = from_dict(spec)
    mod = build2(tmp_path, model)
    rng = np.random.default_rng(4)
    params = {k: rng.normal(size=v.shape) for k, v in mod.init_params().items()}
    for batch in (1, 3):
        x, t = data(model, rng, batch)
        check(mod, model, params, x, t, loss=small_loss)


def test_a_graph_with_nothing_to_train(tmp_path):
    spec = {"name": "none", "input_shape": [1, 3, 3], "loss": "half_sse", "layers": [
        {"kind": "conv2d", "name": "c", "out_channels": 1, "kernel_size": 2, "activation": "tanh",
         "freeze": ["weight", "bias"]},
        {"kind": "flatten", "name": "f"}, {"name": "out", "units": 2, "freeze": ["weight", "bias"]}]}
    model = from_dict(spec)
    mod = build2(tmp_path, model)
    rng = np.random.default_rng(0)
    x, t = data(model, rng, 2)
    p = mod.init_params()
    assert mod.hvp(p, x, t, {}) == {} and mod.hessian(p, x, t).shape == (0, 0)
    ref = Reference(model, mod, p, small_loss)
    X, T = torch.tensor(x), torch.tensor(t)
    close(mod.input_gradients(p, x, t), torch.func.grad(lambda xx: ref.loss(ref.theta, xx, T))(X).numpy())
