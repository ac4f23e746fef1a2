"""The C package of graph networks against PyTorch float64: forward, loss and every gradient through the package's
Python wrapper, for convolutions (every stride/padding/dilation/bias option, odd sizes, "same" with an even
kernel, 1x1), max/avg pooling (padding, overlapping windows, ties), flatten, add, concat and dense over the last
axis, at batch 1 and larger; the kernels header compiled on its own; a LeNet-like package compiled with -Werror.

Few packages are compiled (module-scoped fixtures), each with many layer kinds, so the file runs in seconds.
"""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from graph_specs import NET_ACTIVATIONS, net_activations_spec, torch_activation

from symgrad.api import generate, import_generated
from symgrad.backends.c.codegen import c_sources
from symgrad.backends.c.helpers import select
from symgrad.ops.layers import TENSOR_LAYERS
from symgrad.spec.loader import from_dict

torch = pytest.importorskip("torch")
F = torch.nn.functional
pytestmark = pytest.mark.skipif(not shutil.which("cc") and not shutil.which("gcc"), reason="no C compiler")
COMPILERS = [cc for cc in ("gcc", "clang") if shutil.which(cc)]
STATIC = Path(__file__).resolve().parent.parent / "templates" / "c"

# 2-D: strides, paddings (asymmetric "same" of an even kernel), dilations, with and without bias; a 1x1
# convolution into overlapping max pooling (ties, with integer inputs); average pooling with padding; a residual
# add, a channel concat, a feature concat of flattened branches; a frozen bias.
NET_2D = {
    "input_shape": [2, 9, 8],
    "layers": [
        {"kind": "conv2d", "name": "c1", "out_channels": 3, "kernel_size": [3, 2], "stride": [2, 1],
         "padding": [1, 0], "dilation": [1, 2], "activation": "tanh"},
        {"kind": "conv2d", "name": "c2", "input": "x", "out_channels": 3, "kernel_size": 2, "padding": "same",
         "bias": "none", "activation": "relu"},
        {"kind": "conv2d", "name": "c3", "out_channels": 3, "kernel_size": 3, "padding": "same", "dilation": 2,
         "activation": "sigmoid", "freeze": ["bias"]},
        {"kind": "add", "name": "res", "inputs": ["c2", "c3"]},
        {"kind": "avgpool2d", "name": "p1", "kernel_size": [3, 4], "stride": 2, "padding": [1, 1]},
        {"kind": "conv2d", "name": "one", "input": "x", "out_channels": 1, "kernel_size": 1, "bias": "none"},
        {"kind": "maxpool2d", "name": "p2", "kernel_size": 3, "stride": 2, "padding": 1},
        {"kind": "concat", "name": "cat", "inputs": ["p1", "p2"]},
        {"kind": "maxpool2d", "name": "p3", "input": "c1", "kernel_size": 2, "stride": 1},
        {"kind": "flatten", "name": "f1", "input": "cat"},
        {"kind": "flatten", "name": "f2", "input": "p3"},
        {"kind": "concat", "name": "feat", "inputs": ["f1", "f2"]},
        {"name": "out", "units": 3, "activation": "tanh"},
    ],
    "loss": {"kind": "mse"},
}

# 1-D: strided, dilated and padded convolutions, pooling, dense over the last axis of a (C, L) value (with a
# shared bias), an add of a value with itself, softmax.
NET_1D = {
    "input_shape": [3, 17],
    "layers": [
        {"kind": "conv1d", "name": "c1", "out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 2,
         "dilation": 2, "activation": "tanh"},
        {"kind": "maxpool1d", "name": "p1", "kernel_size": 3, "stride": 2, "padding": 1},
        {"kind": "avgpool1d", "name": "p2", "input": "c1", "kernel_size": 3, "stride": 2, "padding": 1},
        {"kind": "conv1d", "name": "c2", "input": "x", "out_channels": 2, "kernel_size": 4, "padding": "same",
         "bias": "none", "activation": "relu"},
        {"kind": "maxpool1d", "name": "p3", "kernel_size": 5, "stride": 4, "padding": 2},
        {"kind": "concat", "name": "cat", "inputs": ["p1", "p2", "p3"]},
        {"name": "d1", "units": 3, "activation": "sigmoid", "bias": "shared"},
        {"kind": "flatten", "name": "flat"},
        {"kind": "add", "name": "twice", "inputs": ["flat", "flat"]},
        {"name": "out", "units": 4, "activation": "softmax"},
    ],
    "loss": {"kind": "softmax_cross_entropy"},
}

LENET = {
    "input_shape": [1, 28, 28],
    "layers": [
        {"kind": "conv2d", "name": "conv1", "out_channels": 6, "kernel_size": 5, "padding": 2, "activation": "tanh"},
        {"kind": "avgpool2d", "name": "pool1", "kernel_size": 2},
        {"kind": "conv2d", "name": "conv2", "out_channels": 16, "kernel_size": 5, "activation": "tanh"},
        {"kind": "avgpool2d", "name": "pool2", "kernel_size": 2},
        {"kind": "flatten", "name": "flat"},
        {"name": "fc1", "units": 120, "activation": "tanh"},
        {"name": "fc2", "units": 84, "activation": "tanh"},
        {"name": "fc3", "units": 10, "activation": "softmax"},
    ],
    "loss": {"kind": "softmax_cross_entropy"},
}


def model(spec, name):
    return from_dict({"name": name, **spec})


def package(tmp, spec, name, dtype="float64"):
    m = model(spec, name)
    generate(m, "c", tmp, dtype=dtype)
    return m, import_generated(f"{name}_c", tmp)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """{name: (model, package)}: the 2-D and 1-D nets with every convolution as loops, and as im2col + GEMM;
    the 2-D net in float32."""
    tmp = tmp_path_factory.mktemp("graph_c")
    mp = pytest.MonkeyPatch()
    mp.setenv("SYMGRAD_CACHE", str(tmp / "cache"))
    out = {"net2d_f32": package(tmp, NET_2D, "net2d_f32", "float32")}  # the sizes' own choice of paths
    mp.setattr("symgrad.ops.conv.CONV_GEMM_MIN_WORK", 10**12)
    out.update(net2d=package(tmp, NET_2D, "net2d"), net1d=package(tmp, NET_1D, "net1d"))
    mp.setattr("symgrad.ops.conv.CONV_GEMM_MIN_WORK", 0)
    out["net2d_gemm"] = package(tmp, NET_2D, "net2d_gemm")
    out["net1d_gemm"] = package(tmp, NET_1D, "net1d_gemm")
    mp.undo()
    return out


def torch_forward(m, params, x, net=False):
    """The network in PyTorch (functional), layer by layer: its output, or (net) the last layer's net input."""
    vals = {"x": x}
    for n in m.nodes:
        ins = [vals[s] for s in n.inputs]
        k, op = n.op.kind, n.op
        P = [params[p.name] for p in n.params]
        if k.startswith("conv"):
            f = F.conv1d if k == "conv1d" else F.conv2d
            xx = F.pad(ins[0], [v for lo, hi in reversed(op.pad) for v in (lo, hi)])
            z = f(xx, P[0], P[1] if len(P) > 1 else None, stride=op.s, dilation=op.dl)
        elif k.startswith(("maxpool", "avgpool")):
            f = getattr(F, f"{k[:3]}_pool{k[-2:]}")
            z = f(ins[0], op.k, op.s, [p[0] for p in op.pad])
        elif k == "flatten":
            z = ins[0].reshape(ins[0].shape[0], -1)
        elif k == "add":
            z = sum(ins[1:], ins[0])
        elif k == "concat":
            z = torch.cat(ins, 1)
        else:
            z = ins[0] @ P[0].T + (P[1] if len(P) > 1 else 0)
        vals[n.name] = torch_activation(n.activation)(z)
    return z if net else vals[m.nodes[-1].name]


def torch_loss(m, params, x, t):
    if m.loss.name == "mse":
        return ((torch_forward(m, params, x) - t) ** 2).mean()
    return -(t * torch.log_softmax(torch_forward(m, params, x, net=True), -1)).sum() / x.shape[0]


def compare(m, pkg, B, seed=0, tol=1e-10, params=None, x=None):
    """Forward, loss and every gradient of the package against PyTorch float64; the largest relative error."""
    rng = np.random.default_rng(seed)
    if params is None:
        params = {k: rng.normal(size=v.shape) for k, v in pkg.init_params().items()}
    x = rng.normal(size=(B,) + m.input_shape) if x is None else x
    t = rng.uniform(size=(B,) + m.output_shape)
    dt = pkg.DTYPE
    cp = {k: v.astype(dt) for k, v in params.items()}
    E, g = pkg.loss_and_gradients(cp, x.astype(dt), t.astype(dt))
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    y = torch_forward(m, tp, torch.tensor(x))
    L = torch_loss(m, tp, torch.tensor(x), torch.tensor(t))
    L.backward()
    errs = {"loss": abs(E - L.item()) / max(1.0, abs(L.item())),
            "loss()": abs(pkg.loss(cp, x.astype(dt), t.astype(dt)) - L.item()) / max(1.0, abs(L.item()))}
    out = pkg.forward(cp, x.astype(dt))
    assert out.shape == y.shape
    errs["forward"] = np.max(np.abs(out - y.detach().numpy())) / np.max(np.abs(y.detach().numpy()))
    assert set(g) == set(pkg.TRAINABLE)
    for k, v in g.items():
        ref = tp[k].grad.numpy()
        assert v.shape == ref.shape, k
        errs[k] = np.max(np.abs(v - ref)) / max(1e-300, np.max(np.abs(ref)))
    worst = max(errs, key=errs.get)
    assert errs[worst] < tol, (worst, errs[worst])
    return errs[worst]


@pytest.mark.parametrize("name", ["net2d", "net2d_gemm", "net1d", "net1d_gemm"])
@pytest.mark.parametrize("B", [1, 5])
def test_float64_matches_pytorch(built, name, B):
    m, pkg = built[name]
    compare(m, pkg, B, seed=B)


def test_float32_is_close_to_pytorch(built):
    m, pkg = built["net2d_f32"]
    compare(m, pkg, 4, tol=1e-3)  # sums of deltas that nearly cancel (a bias gradient) lose digits in float32


@pytest.mark.parametrize("name", ["net2d", "net2d_gemm"])
def test_max_pool_ties_go_to_the_first_maximum(built, name):
    """Integer inputs and a 1x1 kernel of ones: the max pool over its output sees many equal values whose
    channels differ, so the 1x1 kernel's gradient depends on which entry of a tie receives the delta."""
    m, pkg = built[name]
    rng = np.random.default_rng(3)
    params = {k: rng.normal(size=v.shape) for k, v in pkg.init_params().items()}
    params["one.weight"] = np.ones((1, 2, 1, 1))
    x = rng.integers(0, 3, size=(3,) + m.input_shape).astype(float)
    compare(m, pkg, 3, params=params, x=x)


def test_single_sample_shapes_and_errors(built):
    m, pkg = built["net2d"]
    params = pkg.init_params()
    x = np.random.default_rng(0).normal(size=m.input_shape)
    assert pkg.forward(params, x).shape == m.output_shape
    np.testing.assert_array_equal(pkg.forward(params, x), pkg.forward(params, x[None])[0])
    assert np.isfinite(pkg.loss(params, x, np.zeros(m.output_shape)))
    assert pkg.INPUT_SHAPE == m.input_shape and pkg.OUTPUT_SHAPE == m.output_shape
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 2, 9, 8\) or \(2, 9, 8\)"):
        pkg.forward(params, np.zeros((2, 9, 9)))


def test_flat_and_bound_calls_read_rows_and_zero_frozen_entries(built):
    m, pkg = built["net2d"]
    rng = np.random.default_rng(4)
    params = {k: rng.normal(size=v.shape) for k, v in pkg.init_params().items()}
    x, t = rng.normal(size=(3,) + m.input_shape), rng.uniform(size=(3,) + m.output_shape)
    E, g = pkg.loss_and_gradients(params, x, t)
    theta, grad = pkg.pack(params), np.full(pkg.N_PARAMS, np.nan)
    rows, trows = x.reshape(3, -1), t.reshape(3, -1)
    assert pkg.loss_and_gradients_flat(theta, rows, trows, grad) == E
    for name, v in pkg.unpack(grad).items():
        np.testing.assert_array_equal(v, g[name] if name in g else 0)
    grad[:] = np.nan
    assert pkg.bind(theta, rows, trows, grad)() == E
    assert "c3.bias" not in g and not pkg.unpack(grad)["c3.bias"].any()


def test_argument_checks_match_the_numpy_module(built, tmp_path):
    m, c = built["net1d"]
    generate(m, "numpy", tmp_path)
    n = import_generated("net1d", tmp_path)
    p = n.init_params()
    x, y = np.zeros((2, 3, 17)), np.zeros((2, 4))
    cases = [("forward", (p, np.zeros((2, 3, 16)))), ("loss", (p, x, np.zeros((2, 5)))),
             ("loss", (p, x, np.zeros((3, 4)))), ("loss", (p, np.array([["a"] * 17] * 3), np.zeros(4))),
             ("forward", (p, np.zeros((0, 3, 17)))), ("forward", (p, 3.0)), ("gradients", ({}, x, y))]
    for f, args in cases:
        messages = []
        for mod in (n, c):
            with pytest.raises(ValueError) as exc:
                getattr(mod, f)(*args)
            messages.append(str(exc.value))
        assert messages[0] == messages[1]


def test_train_step_lowers_the_loss(built):
    m, pkg = built["net1d"]
    rng = np.random.default_rng(1)
    x, t = rng.normal(size=(8,) + m.input_shape), rng.dirichlet(np.ones(4), size=8)
    params, state = pkg.init_params(), None
    state = pkg.init_state(params)
    first = pkg.loss(params, x, t)
    for _ in range(5):
        params, state, _ = pkg.train_step(params, state, x, t)
    assert pkg.loss(params, x, t) < first


STANDALONE = r"""
#include <math.h>
#include <stdio.h>
typedef double real;
typedef void (*gemm64)(int, int, int, long long, long long, long long, real, const real *, long long, const real *,
    long long, real, real *, long long);
static gemm64 symgrad_gemm = 0;
#define SYMGRAD_BLAS_MIN_WORK 4096
#include "symgrad_gemm.h"
#include "symgrad_conv.h"

int main(void)
{
    /* a 2x5x4 input, 3 kernels of 2x3, stride (2, 1), padding (1, 2), dilation (1, 2): both paths agree */
    const symgrad_window g = {.c = 2, .h = 5, .w = 4, .o = 3, .oh = 3, .ow = 4, .kh = 2, .kw = 3, .sh = 2, .sw = 1,
        .ph = 1, .pw = 2, .dh = 1, .dw = 2};
    real x[2 * 40], w[36], b[3], z1[2 * 36], z2[2 * 36], d[2 * 36];
    real dx1[80], dw1[36], db1[3], dx2[80], dw2[36], db2[3], cols[144], tmp[36], T[144];
    for (int i = 0; i < 80; ++i) x[i] = sin(i + 1.0);
    for (int i = 0; i < 36; ++i) w[i] = cos(i + 0.5);
    for (int i = 0; i < 72; ++i) d[i] = sin(0.3 * i);
    for (int i = 0; i < 3; ++i) b[i] = i - 1.0;
    symgrad_conv_forward(&g, 2, x, w, b, z1);
    symgrad_conv_forward_gemm(&g, 2, x, w, b, z2, cols);
    symgrad_conv_backward(&g, 2, x, w, d, dx1, dw1, db1);
    symgrad_conv_backward_gemm(&g, 2, x, w, d, dx2, dw2, db2, cols, tmp, T);
    double err = 0;
    for (int i = 0; i < 72; ++i) err = fmax(err, fabs(z1[i] - z2[i]));
    for (int i = 0; i < 80; ++i) err = fmax(err, fabs(dx1[i] - dx2[i]));
    for (int i = 0; i < 36; ++i) err = fmax(err, fabs(dw1[i] - dw2[i]));
    for (int i = 0; i < 3; ++i) err = fmax(err, fabs(db1[i] - db2[i]));
    for (int i = 0; i < 72; ++i) printf("%.17g ", z1[i]);
    printf("\n");
    for (int i = 0; i < 80; ++i) printf("%.17g ", dx1[i]);
    printf("\n");
    for (int i = 0; i < 36; ++i) printf("%.17g ", dw1[i]);
    printf("\n%.17g\n", err);
    return 0;
}
"""


def test_kernels_header_compiles_on_its_own_and_both_paths_agree_with_pytorch(tmp_path):
    src = tmp_path / "main.c"
    src.write_text(STANDALONE)
    exe = tmp_path / "main"
    cc = shutil.which("gcc") or shutil.which("cc")
    subprocess.run([cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-Wno-unused-function", "-O2", "-I", str(STATIC), str(src),
                    "-o", str(exe), "-lm"], check=True, capture_output=True)
    lines = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.splitlines()
    z, dx, dw = (np.array(line.split(), dtype=float) for line in lines[:3])
    assert float(lines[3]) < 1e-12
    x = torch.tensor(np.sin(np.arange(80) + 1.0).reshape(2, 2, 5, 4), requires_grad=True)
    w = torch.tensor(np.cos(np.arange(36) + 0.5).reshape(3, 2, 2, 3), requires_grad=True)
    zt = F.conv2d(F.pad(x, [2, 2, 1, 1]), w, torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64), stride=(2, 1), dilation=(1, 2))
    assert zt.shape == (2, 3, 3, 4)
    zt.backward(torch.tensor(np.sin(0.3 * np.arange(72)).reshape(zt.shape)))
    np.testing.assert_allclose(z, zt.detach().numpy().ravel(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, x.grad.numpy().ravel(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, w.grad.numpy().ravel(), rtol=1e-12, atol=1e-12)


def test_every_kernel_section_is_selectable():
    conv = select({"symgrad_conv_backward_gemm", "symgrad_maxpool_backward"})[2]
    assert list(conv)[0] == "symgrad_window"
    assert {"symgrad_im2col", "symgrad_col2im"} <= set(conv)


@pytest.mark.parametrize("cc", COMPILERS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_lenet_like_compiles_strictly_and_deterministically(tmp_path, dtype, cc):
    m = model(LENET, "lenet_like")
    files = c_sources(m, dtype)[0]
    assert c_sources(model(LENET, "lenet_like"), dtype)[0] == files
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    res = subprocess.run([cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O1", "-c",
                          str(tmp_path / "lenet_like.c"), "-o", str(tmp_path / "lenet_like.o")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "symgrad_conv_forward_gemm" in files["lenet_like.c"]  # conv1 and conv2 are large: im2col + GEMM


def test_sanitizers_report_nothing(tmp_path):
    """Every kernel under AddressSanitizer and UBSan, at batch 5 (main.c's --bench); at the default threshold the
    2-D net has convolutions on both paths (c3 is im2col + GEMM, the others loops)."""
    x = np.sin(np.arange(2 * 9 * 8)).round(1).tolist()  # rounded: max-pool ties
    m = from_dict({"name": "san", **NET_2D, "sample": {"x": x, "t": [0.1, 0.2, 0.3]}})
    generate(m, "c", tmp_path, with_main=True)
    d, exe = tmp_path / "san_c", tmp_path / "san"
    source = (d / "san.c").read_text()
    assert "symgrad_conv_forward_gemm(" in source and "symgrad_conv_forward(" in source
    cc = shutil.which("gcc") or shutil.which("cc")
    res = subprocess.run([cc, "-std=c99", "-g", "-O1", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                          str(d / "main.c"), str(d / "san.c"), "-lm", "-o", str(exe)], capture_output=True, text=True)
    if res.returncode != 0 and "asan" in res.stderr.lower():
        pytest.skip("the compiler has no AddressSanitizer runtime")
    assert res.returncode == 0, res.stderr
    run = subprocess.run([str(exe), "--bench", "2", "5"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "runtime error" not in run.stderr and "ERROR" not in run.stderr


ACTS = ("tanh", "relu", "identity", "sigmoid")


def random_graph(seed):
    """A random 2-D graph: convolutions and pools on random earlier values, adds and concats of matching
    ones (forks everywhere), pools, adds and concats with random activations, every value left unread flattened
    into one concat, a dense output."""
    rng = np.random.default_rng(seed)
    acts = np.random.default_rng(seed + 100)  # activations of pools and merges, drawn apart: the same graphs as before
    shapes, layers, read = {"x": (2, 7, 6)}, [], set()

    def add(layer):
        layers.append(layer)
        sources = layer.get("inputs", [layer.get("input")])
        if layer.get("kind") in TENSOR_LAYERS:
            args = {k: v for k, v in layer.items() if k not in ("kind", "name")}
            op = TENSOR_LAYERS[layer["kind"]](layer["name"], **args)
            shapes[layer["name"]] = op.build("", tuple(shapes[s] for s in sources), "xavier", set())[0]
        read.update(sources)

    for k in range(6):
        name = f"l{k}"
        src = list(shapes)[rng.integers(len(shapes))]
        c, h, w = shapes[src]
        choice = rng.integers(4)
        if choice == 0 or min(h, w) < 3:
            add({"kind": "conv2d", "name": name, "input": src, "out_channels": int(rng.integers(1, 4)),
                 "kernel_size": [int(rng.integers(1, 3)), int(rng.integers(1, 4))], "padding": "same",
                 "dilation": int(rng.integers(1, 3)), "bias": ["unit", "none"][rng.integers(2)],
                 "activation": ["tanh", "relu", "identity", "sigmoid"][rng.integers(4)]})
        elif choice == 1:
            add({"kind": "conv2d", "name": name, "input": src, "out_channels": int(rng.integers(1, 4)),
                 "kernel_size": 2, "stride": int(rng.integers(1, 3)), "padding": int(rng.integers(0, 2)),
                 "activation": "tanh"})
        elif choice == 2:
            add({"kind": ["maxpool2d", "avgpool2d"][rng.integers(2)], "name": name, "input": src, "kernel_size": 2,
                 "stride": int(rng.integers(1, 3)), "padding": int(rng.integers(0, 2)),
                 "activation": ACTS[acts.integers(len(ACTS))]})
        else:
            same = [s for s in shapes if shapes[s][1:] == (h, w)]
            other = same[rng.integers(len(same))]
            kind = "add" if shapes[other] == shapes[src] else "concat"
            add({"kind": kind, "name": name, "inputs": [src, other], "activation": ACTS[acts.integers(len(ACTS))]})
    loose = [s for s in shapes if s not in read and s != "x"]
    for s in loose:
        add({"kind": "flatten", "name": f"flat_{s}", "input": s})
    if len(loose) > 1:
        add({"kind": "concat", "name": "all", "inputs": [f"flat_{s}" for s in loose]})
    add({"name": "out", "units": 2, "activation": "sigmoid"})
    return {"input_shape": [2, 7, 6], "layers": layers, "loss": {"kind": "mse"}}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_graphs_match_pytorch(tmp_path, monkeypatch, seed):
    monkeypatch.setenv("SYMGRAD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("symgrad.ops.conv.CONV_GEMM_MIN_WORK", 100 * seed)  # seed 0: every conv as GEMM
    m, pkg = package(tmp_path, random_graph(seed), f"rand{seed}")
    for B in (1, 3):
        compare(m, pkg, B, seed=B)


# The residual block relu(stem + conv(relu(conv(stem)))), an add of one value twice under tanh, pools and a concat
# with activations (their deltas pass f'); then a flat net whose output layer is an add under sigmoid.
RESNET_2D = {
    "input_shape": [2, 6, 5],
    "layers": [
        {"kind": "conv2d", "name": "stem", "out_channels": 3, "kernel_size": 3, "padding": "same", "activation": "relu"},
        {"kind": "conv2d", "name": "c1", "out_channels": 3, "kernel_size": 3, "padding": "same", "activation": "relu"},
        {"kind": "conv2d", "name": "c2", "out_channels": 3, "kernel_size": 3, "padding": "same"},
        {"kind": "add", "name": "block", "inputs": ["stem", "c2"], "activation": "relu"},
        {"kind": "add", "name": "twice", "inputs": ["block", "block"], "activation": "tanh"},
        {"kind": "maxpool2d", "name": "mp", "kernel_size": 2, "stride": 1, "activation": "sigmoid"},
        {"kind": "avgpool2d", "name": "ap", "input": "block", "kernel_size": 2, "stride": 1, "activation": "tanh"},
        {"kind": "concat", "name": "cat", "inputs": ["mp", "ap"], "activation": "relu"},
        {"kind": "flatten", "name": "flat"},
        {"name": "out", "units": 3, "activation": "softmax"},
    ],
    "loss": {"kind": "softmax_cross_entropy"},
}
ADD_OUT = {
    "input_shape": [4],
    "layers": [{"name": "d1", "units": 3, "activation": "tanh"}, {"name": "d2", "input": "x", "units": 3},
               {"kind": "add", "name": "out", "inputs": ["d1", "d2"], "activation": "sigmoid"}],
    "loss": {"kind": "mse"},
}


@pytest.mark.parametrize("spec", [RESNET_2D, ADD_OUT], ids=["resnet", "add_out"])
def test_activations_on_adds_pools_and_concats_match_pytorch(tmp_path, monkeypatch, spec):
    monkeypatch.setenv("SYMGRAD_CACHE", str(tmp_path / "cache"))
    m, pkg = package(tmp_path, spec, "act")
    for B in (1, 4):
        compare(m, pkg, B, seed=B)


@pytest.mark.parametrize("act, params", NET_ACTIVATIONS[:2] + NET_ACTIVATIONS[4:], ids=["gelu", "elu", "leaky_relu"])
def test_net_input_activations_on_adds_pools_and_concats_match_pytorch(tmp_path, monkeypatch, act, params):
    """gelu and elu keep Z buffers (their derivatives need the net input), leaky_relu takes a parameter."""
    monkeypatch.setenv("SYMGRAD_CACHE", str(tmp_path / "cache"))
    m, pkg = package(tmp_path, net_activations_spec(act, params), "acts")
    compare(m, pkg, 3, seed=3)
