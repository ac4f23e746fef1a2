"""Reports of graph networks: conv_tiny's numbers against its generated module and PyTorch float64, the layer
rules derived by SymPy (stride, dilation, padding included), the layer-level report of a LeNet-sized network,
the diagram of a graph with a fork and merges, and Markdown, LaTeX and HTML output."""

import difflib
import re
import shutil
import subprocess

import numpy as np
import pytest
import sympy as sp

import symgrad
from conftest import ROOT
from symgrad.core import graph_rules as R
from symgrad.core.derive import derive
from symgrad.core.graph_scalar import first_max
from symgrad.report.content import build
from symgrad.report.graph import GraphReport
from symgrad.report.graph_rules import rule_blocks
from symgrad.report.layout import _Layout, report
from symgrad.report.numbers import fmt

torch = pytest.importorskip("torch")
F = torch.nn.functional
EX = ROOT / "examples"
GOLDEN = ROOT / "tests" / "golden"

ACT = {"identity": lambda z: z, "relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
       "softmax": lambda z: torch.softmax(z, -1)}


def torch_run(model, P, x, t):
    """PyTorch float64 forward and backward of a graph network: (E, {param: grad}, {layer: (z, a)}) for one sample;
    z (before the activation) keeps its gradient."""
    params = {k: torch.tensor(np.asarray(v, dtype=np.float64), requires_grad=True) for k, v in P.items()}
    vals, inner = {"x": torch.tensor(np.asarray(x, dtype=np.float64))[None]}, {}
    for n in model.nodes:
        ins = [vals[s] for s in n.inputs]
        ps = [params[p.name] for p in n.params]
        op, k = n.op, n.op.kind
        if k.startswith("conv"):
            f = F.conv1d if k == "conv1d" else F.conv2d
            xp = F.pad(ins[0], [v for lo, hi in reversed(op.pad) for v in (lo, hi)])
            z = f(xp, ps[0], ps[1] if len(ps) > 1 else None, stride=op.s, dilation=op.dl)
        elif k.startswith(("maxpool", "avgpool")):
            f = {"maxpool1d": F.max_pool1d, "maxpool2d": F.max_pool2d, "avgpool1d": F.avg_pool1d,
                 "avgpool2d": F.avg_pool2d}[k]
            z = f(ins[0], op.k, op.s, [p[0] for p in op.pad])
        elif k == "flatten":
            z = ins[0].flatten(1)
        elif k == "add":
            z = sum(ins[1:], ins[0])
        elif k == "concat":
            z = torch.cat(ins, 1)
        else:
            z = ins[0] @ ps[0].T + (ps[1] if len(ps) > 1 else 0)
        z.retain_grad()
        a = ACT[n.activation.name if n.activation is not None else "identity"](z)
        if a is not z:
            a.retain_grad()
        vals[n.name], inner[n.name] = a, (z, a)
    y = vals[model.nodes[-1].name]
    tt = torch.tensor(np.asarray(t, dtype=np.float64))[None]
    E = {"half_sse": lambda: ((tt - y) ** 2).sum() / 2, "mse": lambda: ((tt - y) ** 2).mean(),
         "softmax_cross_entropy": lambda: -(tt * torch.log(y)).sum()}[model.loss.name]()
    E.backward()
    return E.item(), {k: v.grad.numpy() for k, v in params.items()}, inner


# -- conv_tiny: the neuron-level report, number by number


@pytest.fixture(scope="module")
def tiny():
    model = symgrad.load(EX / "conv_tiny.toml")
    rep = build(model)
    values = {s.name: v for s, v in rep.values.items() if isinstance(s, sp.Symbol)}
    P = model.init_params()
    E, grads, inner = torch_run(model, P, model.sample.x, model.sample.t)
    return model, rep, values, P, (E, grads, inner)


def test_conv_tiny_report_numbers_equal_the_generated_module_and_torch(tiny):
    from generated import conv_tiny as mod

    model, rep, values, P, (E, grads, inner) = tiny
    Em, gm = mod.loss_and_gradients(P, model.sample.x, model.sample.t)
    assert values["E_total"] == pytest.approx(Em, rel=1e-13) and values["E_total"] == pytest.approx(E, rel=1e-13)
    y = mod.forward(P, model.sample.x)
    for j, o in enumerate(model.outputs):
        assert values[f"out_{o}"] == pytest.approx(y[j], rel=1e-13)
    owner = model.scalar_owner()
    for name, (pname, idx) in owner.items():
        got = values[f"dE_d{name}"]
        assert got == pytest.approx(gm[pname].reshape(-1)[idx], rel=1e-12, abs=1e-15), name
        assert got == pytest.approx(grads[pname].reshape(-1)[idx], rel=1e-12, abs=1e-15), name
    for layer in ("conv", "pool", "out"):  # every forward value, every dE/dout and every delta of every layer
        z, a = inner[layer]
        for idx in np.ndindex(*a.shape[1:]):
            label = model.outputs[idx[0]] if layer == "out" else f"{layer}_" + "_".join(map(str, idx))
            assert values[f"out_{label}"] == pytest.approx(a[(0,) + idx].item(), abs=1e-15), label
            assert values[f"dE_dout_{label}"] == pytest.approx(a.grad[(0,) + idx].item(), abs=1e-15), label
            if layer != "pool":
                assert values[f"net_{label}"] == pytest.approx(z[(0,) + idx].item(), abs=1e-15), label
                assert values[f"delta_{label}"] == pytest.approx(z.grad[(0,) + idx].item(), abs=1e-15), label


def test_conv_tiny_report_text_shows_every_gradient_and_the_expects_hold(tiny):
    model, rep, values, P, _ = tiny
    text = report(model, "md")
    for name in model.scalar_owner():
        assert f"{fmt(values[f'dE_d{name}'])}" in text, name
    assert text.count("| confirmed |") == len(model.expects) and "WRONG" not in text
    assert "Delta shorthand: $\\delta_{\\mathrm{conv\\_0\\_1\\_1}}$" in text  # the convolution's deltas, one by one
    assert "\\theta\\left(" in text and "\\begin{cases}" in text  # SymPy's Heaviside, then the first-max rule


def test_conv_tiny_tie_goes_to_the_first_maximum(tiny):
    """The top-right pooling window ties at 0.1875: the delta goes to conv[0, 0, 2] (first), not conv[0, 1, 1]."""
    model, rep, values, P, (E, grads, inner) = tiny
    z, a = inner["conv"]
    assert a[0, 0, 0, 2].item() == a[0, 0, 1, 1].item() == 0.1875
    prog = derive(model).scalar.program
    step = next(s for s in prog.steps if s.sym.name == "out_pool_0_0_1")
    local = {v.name: d for v, d in step.local.items()}
    at = {s: sp.Float(values[s.name]) for s in step.expr.free_symbols}
    assert local["out_conv_0_0_2"].subs(at) == 1 and local["out_conv_0_1_1"].subs(at) == 0
    assert values["dE_dk12"] == pytest.approx(grads["conv.weight"][0, 0, 0, 1], rel=1e-12)


def test_conv_tiny_finite_differences_explain_the_tie(tiny):
    """The tie is a kink of E in k12, k21, k22: central differences average two slopes; the gradient is one of them."""
    model, rep, values, P, _ = tiny
    sec = next(s for s in rep.sections if s.title.startswith("Summary"))
    kinks = [b.frags for b in sec.blocks if len(getattr(b, "frags", ())) > 1 and "kink here" in str(b.frags[1])]
    assert sorted(f[0].args[1].name for f in kinks) == ["k12", "k21", "k22"]
    for partial, _, up, _, down, _ in kinks:
        g = values[f"dE_d{partial.args[1].name}"]
        assert min(abs(g - up), abs(g - down)) < 1e-6 and abs(up - down) > 1e-2


SMALL_RESIDUAL = """
name = "small_res"
input_shape = [1, 5]
[[layers]]
kind = "conv1d"
name = "a"
out_channels = 2
kernel_size = 2
activation = "relu"
[[layers]]
kind = "conv1d"
name = "b"
out_channels = 2
kernel_size = 1
activation = "tanh"
[[layers]]
kind = "add"
name = "res"
inputs = ["a", "b"]
[[layers]]
kind = "avgpool1d"
name = "ap"
kernel_size = 2
[[layers]]
kind = "flatten"
name = "flat"
[[layers]]
name = "o"
units = 3
activation = "softmax"
[loss]
kind = "softmax_cross_entropy"
"""


def test_small_residual_graph_gets_the_neuron_level_report_with_torch_numbers():
    """A fork (a read by b and res), an add, average pooling and a softmax output, neuron by neuron, no [sample]."""
    model = _load(SMALL_RESIDUAL)
    rep = build(model)
    assert "Backward pass" in [s.title for s in rep.sections] and "seed 0" in rep.sections[0].blocks[0].frags[0]
    values = {s.name: v for s, v in rep.values.items() if isinstance(s, sp.Symbol)}
    x = np.array([values[f"x_0_{i}"] for i in range(5)]).reshape(1, 5)
    t = np.array([values[f"target_{o}"] for o in model.outputs])
    E, grads, inner = torch_run(model, model.init_params(), x, t)
    assert values["E_total"] == pytest.approx(E, rel=1e-13)
    for name, (pname, idx) in model.scalar_owner().items():
        assert values[f"dE_d{name}"] == pytest.approx(grads[pname].reshape(-1)[idx], rel=1e-11, abs=1e-15), name
    z, _ = inner["a"]  # the forked layer's deltas: the sum over its two readers
    for idx in np.ndindex(*z.shape[1:]):
        assert values["delta_a_" + "_".join(map(str, idx))] == pytest.approx(z.grad[(0,) + idx].item(), abs=1e-15)


RES_RELU = """
name = "res_relu"
description = "a residual block: relu(x + W2 relu(W1 x + b1) + b2), then a dense output"
input_shape = [3]
[[layers]]
name = "h"
units = 3
activation = "relu"
weight = [[0.5, -0.4, 0.3], [-0.6, 0.2, 0.1], [0.3, 0.7, -0.5]]
bias_value = [0.1, -0.2, 0.05]
[[layers]]
name = "f"
units = 3
weight = [[0.4, -0.3, 0.2], [-0.5, 0.6, 0.1], [0.2, 0.1, -0.7]]
bias_value = [0.0, 0.1, -0.1]
[[layers]]
kind = "add"
name = "block"
inputs = ["x", "f"]
activation = "relu"
[[layers]]
name = "o"
units = 1
weight = [[0.8, -0.6, 0.5]]
bias_value = [0.2]
[loss]
kind = "half_sse"
[sample]
x = [0.9, -0.8, 0.3]
t = [0.5]
"""


def _labels(model, node):
    """The report's element names of a layer: its neurons (a flat dense layer), else name_c_i."""
    built = getattr(node.op, "built", None)
    if built is not None and len(node.shape) == 1:
        return list(model.outputs) if node is model.nodes[-1] else list(built.neurons)
    return [node.name + "_" + "_".join(map(str, idx)) for idx in np.ndindex(*node.shape)]


def test_residual_block_relu_of_the_sum_report_numbers():
    """relu(x + f): the add's net input, output and delta, neuron by neuron, equal PyTorch's; where the sum is negative
    the relu cuts the delta (delta_block_1 = 0), so f2's weights get no gradient."""
    model = _load(RES_RELU)
    rep = build(model)
    values = {s.name: v for s, v in rep.values.items() if isinstance(s, sp.Symbol)}
    E, grads, inner = torch_run(model, model.init_params(), model.sample.x, model.sample.t)
    assert values["E_total"] == pytest.approx(E, rel=1e-13) and values["E_total"] == pytest.approx(0.42614912, rel=1e-12)
    for name, (pname, idx) in model.scalar_owner().items():
        assert values[f"dE_d{name}"] == pytest.approx(grads[pname].reshape(-1)[idx], rel=1e-12, abs=1e-15), name
    for node in model.nodes:
        z, a = inner[node.name]
        for j, label in enumerate(_labels(model, node)):
            assert values[f"net_{label}"] == pytest.approx(z[0, j].item(), rel=1e-13, abs=1e-15), label
            assert values[f"out_{label}"] == pytest.approx(a[0, j].item(), rel=1e-13, abs=1e-15), label
            assert values[f"delta_{label}"] == pytest.approx(z.grad[0, j].item(), rel=1e-13, abs=1e-15), label
    assert values["net_block_1"] == pytest.approx(-1.18) and values["delta_block_1"] == 0 < values["dE_dout_block_1"] ** 2
    assert values["net_block_0"] == pytest.approx(0.9 + values["out_f1"]) and values["out_block_2"] == pytest.approx(0.392)
    assert all(values[f"dE_df_w2_{i}"] == 0 for i in (1, 2, 3))
    text = report(model, "md").replace("\\_", "_")
    assert "| block | add |  | x, f | 3 and 3 → 3 | 0 | relu |" in text
    assert "— an add hands its delta unchanged to every input" in text  # the add's own rule, not w·a
    assert "derivative of ReLU" in text and "WRONG" not in text


def test_derivation_gives_per_parameter_gradients_of_small_graphs():
    d = symgrad.derive(EX / "conv_tiny.toml")
    assert d.small and d.scalar is not None
    g = d.gradient("k11")
    assert {s.name for s in g.free_symbols} >= {"x_0_0_0", "out_o1", "target_o1", "v1"}
    assert d.gradient("v1", "expanded").free_symbols <= set(d.scalar.program.params) | set(
        d.scalar.program.inputs) | set(d.scalar.program.targets)
    lenet = symgrad.derive(_load(LENET))
    assert not lenet.small
    with pytest.raises(ValueError):
        lenet.gradient("conv1_b1")


def test_the_numpy_module_of_a_graph_has_no_per_sample_path():
    text = (ROOT / "generated" / "conv_tiny.py").read_text()
    assert "_loss_and_gradients_rows" not in text and "def _conv(" in text


# -- the rules, derived


CONV = [dict(), dict(stride=2, size=4), dict(dilation=2, size=4), dict(padding=1), dict(padding="same"),
        dict(stride=2, dilation=2, padding=1, size=5), dict(dims=1, size=6, kernel=3, stride=2, dilation=2, padding=1),
        dict(channels=(2, 3)), dict(stride=(1, 2), size=(3, 5), padding=(0, 1), bias=False)]


@pytest.mark.parametrize("args", CONV, ids=str)
def test_convolution_rules_hold(args):
    rc = R.conv_check(**args)
    assert rc.holds and {g[0] for g in rc.groups} >= {"weights", "inputs"}


def test_a_wrong_rule_is_caught():
    """The check is not vacuous: the input delta with the kernel not flipped, or the weight gradient without the
    stride's spreading, disagree with SymPy's derivative."""
    rc = R.conv_check(stride=2, size=5)
    x = np.array([v for v, _, _ in rc.groups[2][2]], dtype=object).reshape(1, 5, 5)
    w = np.array([v for v, _, _ in rc.groups[0][2]], dtype=object).reshape(1, 1, 2, 2)
    delta = np.array(sorted({s for _, d, _ in rc.groups[1][2] for s in d.free_symbols}, key=str),
                     dtype=object).reshape(1, 2, 2)
    unflipped = R.conv_input_rule(delta, R.flip(w[0, 0])[None, None], (5, 5), (2, 2), (1, 1), ((0, 0), (0, 0)))
    assert not all(R._same(d, s) for (_, d, _), s in zip(rc.groups[2][2], unflipped[0].flat))
    unspread = R.conv_weight_rule(x, delta, (2, 2), (1, 1), (1, 1), ((0, 0), (0, 0)))
    assert not all(R._same(d, s) for (_, d, _), s in zip(rc.groups[0][2], unspread.flat))


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("args", [dict(), dict(stride=2), dict(padding=1), dict(dims=1, size=5, kernel=3, stride=2,
                                                                                padding=1)], ids=str)
def test_pooling_rules_hold(kind, args):
    assert R.pool_check(kind, **args).holds


@pytest.mark.parametrize("check", [R.flatten_check, R.concat_check, R.add_check, R.fork_check, R.dense_check,
                                   lambda: R.dense_check(rows=2)], ids=["flatten", "concat", "add", "fork", "dense",
                                                                        "dense-rows"])
def test_shape_and_merge_rules_hold(check):
    assert check().holds


def test_first_max_breaks_ties_as_torch():
    a, b, c, d = sp.symbols("a b c d", real=True)
    entries = [a, b, c, d]
    for vals in ([1.0, 3.0, 3.0, 2.0], [2.0, 2.0, 2.0, 2.0], [0.0, -1.0, 0.0, 5.0]):
        x = torch.tensor(vals, dtype=torch.float64, requires_grad=True)
        F.max_pool1d(x[None, None], 4).sum().backward()
        ours = [float(first_max(entries, i).subs(dict(zip(entries, vals)))) for i in range(4)]
        assert ours == x.grad.tolist()


def test_rules_section_golden():
    """The derived conv2d rule as Markdown, byte for byte (update: set SYMGRAD_UPDATE_GOLDEN=1)."""
    import os

    lay = _Layout("md", type("R", (), {"digits": 9, "values": {}})())
    text = "\n\n".join(lay.block(b) for b in rule_blocks(R.conv_check())) + "\n"
    path = GOLDEN / "conv2d_rule.md"
    if os.environ.get("SYMGRAD_UPDATE_GOLDEN"):
        path.write_text(text)
    old = path.read_text()
    if old != text:
        diff = "".join(difflib.unified_diff(old.splitlines(True), text.splitlines(True), "golden", "new"))
        pytest.fail(f"tests/golden/conv2d_rule.md differs (SYMGRAD_UPDATE_GOLDEN=1 updates it):\n{diff[:3000]}")


# -- the layer-level report of a LeNet-sized network, and a graph with a fork and merges


LENET = """
name = "lenet"
input_shape = [1, 28, 28]
[[layers]]
kind = "conv2d"
name = "conv1"
out_channels = 6
kernel_size = 5
padding = 2
activation = "tanh"
[[layers]]
kind = "avgpool2d"
name = "pool1"
kernel_size = 2
[[layers]]
kind = "conv2d"
name = "conv2"
out_channels = 16
kernel_size = 5
activation = "tanh"
[[layers]]
kind = "maxpool2d"
name = "pool2"
kernel_size = 2
[[layers]]
kind = "flatten"
name = "flat"
[[layers]]
name = "fc1"
units = 120
activation = "tanh"
[[layers]]
name = "fc2"
units = 84
activation = "relu"
[[layers]]
name = "fc3"
units = 10
activation = "softmax"
[loss]
kind = "softmax_cross_entropy"
[sample]
seed = 3
"""

RESIDUAL = """
name = "resid"
input_shape = [2, 6]
[[layers]]
kind = "conv1d"
name = "c1"
out_channels = 3
kernel_size = 3
padding = 1
activation = "relu"
[[layers]]
kind = "conv1d"
name = "c2"
out_channels = 3
kernel_size = 3
padding = "same"
dilation = 2
activation = "tanh"
[[layers]]
kind = "add"
name = "res"
inputs = ["c1", "c2"]
[[layers]]
kind = "maxpool1d"
name = "mp"
kernel_size = 2
[[layers]]
kind = "avgpool1d"
name = "ap"
kernel_size = 2
input = "c1"
[[layers]]
kind = "concat"
name = "cat"
inputs = ["mp", "ap"]
[[layers]]
kind = "flatten"
name = "flat"
[[layers]]
name = "o"
units = 2
[loss]
kind = "mse"
[sample]
seed = 1
"""


def _load(text):
    """A model from spec text (written to a temporary file: the loader reads files)."""
    import tempfile
    from pathlib import Path

    name = re.search(r'name = "(\w+)"', text).group(1)
    path = Path(tempfile.mkdtemp(prefix="symgrad-graph-report-")) / f"{name}.toml"
    path.write_text(text)
    return symgrad.load(path)


# the same graph with activations on the add, the pools and the concat
RESIDUAL_ACT = RESIDUAL.replace('inputs = ["c1", "c2"]', 'inputs = ["c1", "c2"]\nactivation = "relu"').replace(
    'kernel_size = 2\n', 'kernel_size = 2\nactivation = "tanh"\n').replace(
    'inputs = ["mp", "ap"]', 'inputs = ["mp", "ap"]\nactivation = "sigmoid"').replace('"resid"', '"resid_act"')


SMALL_ACT = """
name = "small_act"
input_shape = [1, 6]
[[layers]]
kind = "conv1d"
name = "a"
out_channels = 2
kernel_size = 2
activation = "relu"
[[layers]]
kind = "conv1d"
name = "b"
out_channels = 2
kernel_size = 1
[[layers]]
kind = "add"
name = "res"
inputs = ["a", "b"]
activation = "relu"
[[layers]]
kind = "maxpool1d"
name = "mp"
kernel_size = 2
stride = 1
activation = "tanh"
[[layers]]
kind = "avgpool1d"
name = "ap"
input = "res"
kernel_size = 2
stride = 1
activation = "sigmoid"
[[layers]]
kind = "concat"
name = "cat"
inputs = ["mp", "ap"]
activation = "relu"
[[layers]]
kind = "flatten"
name = "flat"
[[layers]]
name = "o"
units = 2
[loss]
kind = "mse"
[sample]
seed = 2
"""


def test_small_graph_with_activations_on_adds_pools_and_concats_report_numbers():
    """SMALL_ACT neuron by neuron: every layer's net input, output and delta equal PyTorch's (max pooling keeps its
    first-max rule under the activation)."""
    model = _load(SMALL_ACT)
    rep = build(model)
    assert "Backward pass" in [s.title for s in rep.sections]
    step = next(s for s in derive(model).scalar.program.steps if s.sym.name == "net_mp_1_2")
    assert sorted(v.name for v in step.local) == ["out_res_1_2", "out_res_1_3"]  # the first-max indicator, not Heaviside
    values = {s.name: v for s, v in rep.values.items() if isinstance(s, sp.Symbol)}
    E, grads, inner = torch_run(model, model.init_params(), model.sample.x, model.sample.t)
    assert values["E_total"] == pytest.approx(E, rel=1e-13)
    for name, (pname, idx) in model.scalar_owner().items():
        assert values[f"dE_d{name}"] == pytest.approx(grads[pname].reshape(-1)[idx], rel=1e-11, abs=1e-15), name
    for node in model.nodes:
        if node.kind == "flatten":
            continue
        z, a = inner[node.name]
        for label, idx in zip(_labels(model, node), np.ndindex(*node.shape)):
            assert values[f"out_{label}"] == pytest.approx(a[(0,) + idx].item(), rel=1e-13, abs=1e-15), label
            if node.activation is not None:  # a net input of its own (a convolution, or under an activation)
                assert values[f"net_{label}"] == pytest.approx(z[(0,) + idx].item(), rel=1e-13, abs=1e-15), label
                assert values[f"delta_{label}"] == pytest.approx(z.grad[(0,) + idx].item(), rel=1e-11, abs=1e-15), label


@pytest.mark.parametrize("spec", [LENET, RESIDUAL, RESIDUAL_ACT], ids=["lenet", "residual", "residual_act"])
def test_layer_level_report_numbers_equal_torch(spec):
    model = _load(spec)
    rep = GraphReport(model, model.init_params(), None, 9, 0)
    E, grads, inner = torch_run(model, rep.P, model.sample.x, model.sample.t)
    assert rep.E == pytest.approx(E, rel=1e-12)
    for name, g in rep.grads.items():
        np.testing.assert_allclose(g, grads[name], rtol=1e-10, atol=1e-14 * np.abs(grads[name]).max(), err_msg=name)
    for k, n in enumerate(model.nodes, 1):
        z, a = inner[n.name]
        np.testing.assert_allclose(rep.out(n.name), a[0].detach().numpy(), rtol=1e-12, atol=1e-14, err_msg=n.name)
        if rep.delta(k) is not None:
            np.testing.assert_allclose(rep.delta(k), z.grad[0].numpy(), rtol=1e-10, atol=1e-14, err_msg=n.name)
    built = rep.build()
    section = next(s for s in built.sections if s.title.startswith("Selected"))
    assert len(rep.picked) == len(model.trainable_params) and section.blocks
    owner = model.scalar_owner()
    for name in rep.picked:  # each rule, evaluated on the traced arrays, gives the module's gradient
        pname, idx = owner[name]
        k = next(i for i, n in enumerate(model.nodes, 1) if any(p.name == pname for p in n.params))
        p = next(q for q in model.nodes[k - 1].params if q.name == pname)
        _, v = rep.rule_value(model.nodes[k - 1], k, p, np.unravel_index(idx, p.shape))
        assert v == pytest.approx(float(rep.grads[pname].reshape(-1)[idx]), rel=1e-10, abs=1e-15), name


def test_layer_level_report_states_shapes_rules_and_forks():
    model = _load(RESIDUAL)
    text = report(model, "md").replace("\\_", "_")
    assert "Backward pass, layer by layer" in text and "Layer rules, derived by SymPy" in text
    assert "c1 (conv1d(3 channels" in text and "read by c2, res, ap: their deltas add" in text
    assert "A fork (residual connection)" in text and "the derived sum and the rule agree" in text
    assert "DISAGREE" not in text
    assert "3x6 and 3x6 → 3x6" in text and "3x3 and 3x3 → 6x3" in text  # the add and the concat's shapes


def test_graph_diagram_names_the_activations_of_merges_and_pools_and_fits_long_labels():
    from symgrad.report.graph_diagram import graph_diagram

    model = _load(SMALL_ACT.replace('activation = "sigmoid"', 'activation = "leaky_relu"'))
    svg, tikz = graph_diagram(model)
    assert ">add, relu</text>" in svg and ">maxpool1d, tanh</text>" in svg and ">concat, relu</text>" in svg
    assert re.search(r'textLength="120" lengthAdjust="spacingAndGlyphs">avgpool1d, leaky_relu</text>', svg)
    assert svg.count("textLength") == 1 and r"add, relu\\ 2x5" in tikz


def test_graph_diagram_draws_the_fork_and_the_merges():
    from symgrad.report.graph_diagram import graph_diagram

    model = _load(RESIDUAL)
    svg, tikz = graph_diagram(model)
    assert svg.count("<rect") == len(model.nodes) + 1
    assert svg.count("marker-end") == sum(len(n.inputs) for n in model.nodes)  # one arrow per input, merges included
    assert svg.count(" C ") >= 2  # the edges that skip columns (c1 -> res, ap -> cat) are routed around boxes
    assert tikz.count(r"\draw[->") == svg.count("marker-end") and tikz.count(r"\node[") == svg.count("<rect")


# -- formats


@pytest.mark.parametrize("fmt_", ["md", "tex", "html"])
def test_conv_tiny_renders_in_every_format(fmt_):
    text = report(EX / "conv_tiny.toml", fmt_)
    assert "0.132013771" in text  # the loss
    if fmt_ == "html":
        assert text.startswith("<!DOCTYPE html>") and "<svg" in text and "<math" in text and "\\frac" not in text
    if fmt_ == "tex":
        assert r"\begin{tikzpicture}" in text and r"\begin{document}" in text


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
@pytest.mark.parametrize("spec", ["conv_tiny", "lenet"])
def test_graph_reports_compile_with_pdflatex(tmp_path, spec):
    model = symgrad.load(EX / "conv_tiny.toml") if spec == "conv_tiny" else _load(LENET)
    (tmp_path / "r.tex").write_text(report(model, "tex"))
    r = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "r.tex"], cwd=tmp_path,
                       capture_output=True, text=True, errors="replace", timeout=300)
    assert r.returncode == 0, r.stdout[-3000:]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed (Debian: chromium)")
def test_conv_tiny_html_renders_in_chromium(tmp_path):
    html = tmp_path / "conv_tiny.html"
    html.write_text(report(EX / "conv_tiny.toml", "html"))
    flags = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(flags + ["--dump-dom", html.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert dom.count("<math") > 200 and "<mfrac>" in dom and "<svg" in dom and "<mtable>" in dom
    text = re.sub(r"<[^>]+>", "", dom)
    for raw in ("\\frac", "$$", "\\cdot", "\\left", "\\partial", "\\theta"):
        assert raw not in text
