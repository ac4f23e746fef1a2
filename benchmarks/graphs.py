"""Time one gradient call of symgrad's generated code for graph networks (convolutions, pooling) beside the peers.

    python benchmarks/graphs.py [--rounds N] [--configs lenet5/64,...] [--out FILE]

Configs: LeNet-5 (examples/lenet5.toml) at batch 1 and 64, and a 1-D CNN on length-256 signals at batch 1
and 64. Columns: the generated NumPy module, the generated C package through its Python wrapper (when the
C backend builds the model), PyTorch eager float64 (default threads and one thread), JAX jit float64, and
the GEMM floor: the same im2col and dense matrix products alone, on preallocated arrays. Implementations
are interleaved round by round in a shuffled order; the table gives medians in microseconds and ratios.
``benchmarks/run.py`` runs this table after its own.
"""

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import symgrad  # noqa: E402
from symgrad.api import generate, import_generated  # noqa: E402

SIGNAL = {"name": "conv1d_256", "input_shape": [1, 256], "loss": "softmax_cross_entropy", "init": {"scheme": "he"},
          "layers": [
              {"kind": "conv1d", "name": "conv1", "out_channels": 8, "kernel_size": 7, "padding": "same", "activation": "relu"},
              {"kind": "maxpool1d", "name": "pool1", "kernel_size": 2},
              {"kind": "conv1d", "name": "conv2", "out_channels": 16, "kernel_size": 5, "activation": "relu"},
              {"kind": "avgpool1d", "name": "pool2", "kernel_size": 2},
              {"kind": "flatten", "name": "flat"},
              {"name": "out", "units": 10, "activation": "softmax"}]}
CONFIGS = [("lenet5", 1), ("lenet5", 64), ("conv1d_256", 1), ("conv1d_256", 64)]
COLUMNS = ["symgrad NumPy", "symgrad C (Python)", "PyTorch", "PyTorch 1 thread", "JAX jit", "GEMM floor"]


def model_for(name):
    return symgrad.load(ROOT / "examples/lenet5.toml") if name == "lenet5" else symgrad.spec.from_dict(SIGNAL)


def data(model, batch):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch,) + model.input_shape)
    return x, np.eye(model.n_outputs)[rng.integers(model.n_outputs, size=batch)]


def torch_loss(model, tp, tx, tt):
    """The graph's cross-entropy loss in PyTorch (F.conv*, F.*pool*; tp: name -> tensor, tt: class indices)."""
    import torch
    import torch.nn.functional as F

    pool = {"maxpool1d": F.max_pool1d, "maxpool2d": F.max_pool2d, "avgpool1d": F.avg_pool1d, "avgpool2d": F.avg_pool2d}
    acts = {"relu": torch.relu, "tanh": torch.tanh}
    vals = {"x": tx}
    for n in model.nodes:
        a, op, P = vals[n.inputs[0]], n.op, [tp[p.name] for p in n.params]
        if op.kind.startswith("conv"):
            conv = F.conv1d if op.kind == "conv1d" else F.conv2d
            a = F.pad(a, [v for lo, hi in reversed(op.pad) for v in (lo, hi)])
            z = conv(a, P[0], P[1] if len(P) > 1 else None, stride=op.s, dilation=op.dl)
        elif op.kind in pool:
            z = pool[op.kind](a, op.k, op.s, [p[0] for p in op.pad])
        elif op.kind == "flatten":
            z = a.reshape(a.shape[0], -1)
        else:
            z = a @ P[0].T + P[1]
        name = n.activation.name if n.activation is not None else "identity"
        vals[n.name] = acts[name](z) if name in acts else z  # softmax: cross_entropy takes the logits
    return F.cross_entropy(vals[model.nodes[-1].name], tt)


def torch_impl(model, params, x, t, threads=None):
    """One autograd gradient call of the same graph in PyTorch float64 (F.conv*, F.*pool*, cross-entropy)."""
    import torch

    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    tx, tt = torch.tensor(x), torch.tensor(t.argmax(axis=1))

    def run():
        return torch.autograd.grad(torch_loss(model, tp, tx, tt), list(tp.values()))

    if threads is None:
        return run
    default = torch.get_num_threads()

    def one_thread():
        torch.set_num_threads(threads)
        try:
            return run()
        finally:
            torch.set_num_threads(default)
    return one_thread


def jax_impl(model, params, x, t):
    """jax.jit(jax.grad) of the same graph in float64 (lax.conv_general_dilated, lax.reduce_window)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from jax import lax

    def loss(p, x, t):
        vals = {"x": x}
        for n in model.nodes:
            a, op = vals[n.inputs[0]], n.op
            d = len(getattr(op, "k", ()))
            if op.kind.startswith("conv"):
                z = lax.conv_general_dilated(a, p[n.params[0].name], op.s, list(op.pad), rhs_dilation=op.dl)
                if len(n.params) > 1:
                    z = z + p[n.params[1].name].reshape((-1,) + (1,) * d)
            elif "pool" in op.kind:
                window, strides = (1, 1) + op.k, (1, 1) + op.s
                pads = ((0, 0), (0, 0)) + tuple(op.pad)
                if op.kind.startswith("max"):
                    z = lax.reduce_window(a, -jnp.inf, lax.max, window, strides, pads)
                else:
                    z = lax.reduce_window(a, 0.0, lax.add, window, strides, pads) / float(np.prod(op.k))
            elif op.kind == "flatten":
                z = a.reshape(a.shape[0], -1)
            else:
                z = a @ p[n.params[0].name].T + p[n.params[1].name]
            name = n.activation.name if n.activation is not None else "identity"
            vals[n.name] = jnp.tanh(z) if name == "tanh" else jnp.maximum(z, 0) if name == "relu" else z
        logits = vals[model.nodes[-1].name]
        return -jnp.mean(jnp.sum(t * jax.nn.log_softmax(logits, axis=1), axis=1))

    grad = jax.jit(jax.grad(loss))
    jp, jx, jt = ({k: jnp.asarray(v) for k, v in params.items()}, jnp.asarray(x), jnp.asarray(t))
    return lambda: jax.block_until_ready(grad(jp, jx, jt))


def gemm_floor(module, model, params, x):
    """The products of the generated code alone (im2col forward, two backward products per layer), preallocated."""
    products = []
    shapes = {"x": model.input_shape}
    for n in model.nodes:
        shapes[n.name] = n.shape
        if not n.params:
            continue
        w = np.asarray(params[n.params[0].name])
        w2 = w.reshape(w.shape[0], -1)
        cols = int(np.prod(n.shape[1:])) * x.shape[0] if n.op.kind.startswith("conv") else x.shape[0]
        a = np.ones((w2.shape[1], cols))
        d = np.ones((w2.shape[0], cols))
        outs = (np.empty((w2.shape[0], cols)), np.empty(w2.shape), np.empty((w2.shape[1], cols)))
        products.append((w2, a, d, outs))

    def run():
        for w2, a, d, (z, gw, ga) in products:
            np.dot(w2, a, out=z)
            np.dot(d, a.T, out=gw)
            np.dot(w2.T, d, out=ga)
    return run


def calibrate(fn, budget=0.02):
    fn()
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    return max(1, int(budget / max(once, 1e-7)))


def bench(name, batch, rounds, workdir):
    model = model_for(name)
    generate(model, "numpy", workdir)
    npm = import_generated(model.name, workdir)
    params = npm.init_params()
    x, t = data(model, batch)
    impls = {"symgrad NumPy": lambda: npm.loss_and_gradients(params, x, t), "GEMM floor": gemm_floor(npm, model, params, x)}
    notes = []
    try:
        generate(model, "c", workdir)
        cm = import_generated(model.name + "_c", workdir)
        impls["symgrad C (Python)"] = lambda: cm.loss_and_gradients(params, x, t)
    except Exception as exc:  # noqa: BLE001 - a missing backend or compiler is a note in the table
        notes.append(f"C: {type(exc).__name__}: {str(exc)[:80]}")
    for col, make in (("PyTorch", lambda: torch_impl(model, params, x, t)),
                      ("PyTorch 1 thread", lambda: torch_impl(model, params, x, t, 1)),
                      ("JAX jit", lambda: jax_impl(model, params, x, t))):
        try:
            impls[col] = make()
        except ImportError as exc:
            notes.append(f"{col}: {exc}")
    counts = {k: calibrate(f) for k, f in impls.items()}
    samples = {k: [] for k in impls}
    order = list(impls)
    rng = random.Random(0)
    for _ in range(rounds):
        rng.shuffle(order)
        for k in order:
            f, n = impls[k], counts[k]
            start = time.perf_counter()
            for _ in range(n):
                f()
            samples[k].append((time.perf_counter() - start) / n * 1e6)
    return {"label": f"{name} b={batch}", "us": {k: statistics.median(v) for k, v in samples.items()}, "notes": notes}


def table(rows):
    """The Markdown table: medians in microseconds, then the ratios the targets are stated in."""
    lines = ["| config | " + " | ".join(COLUMNS) + " | NumPy / PyTorch | C / PyTorch | NumPy / GEMM floor |",
             "|---|" + "---|" * (len(COLUMNS) + 3)]
    for r in rows:
        us = r["us"]
        cells = [f"{us[c]:.0f}" if c in us else "—" for c in COLUMNS]

        def ratio(a, b):
            return f"{us[a] / us[b]:.2f}" if a in us and b in us else "—"
        lines.append(f"| {r['label']} | " + " | ".join(cells) + f" | {ratio('symgrad NumPy', 'PyTorch')} | "
                     f"{ratio('symgrad C (Python)', 'PyTorch')} | {ratio('symgrad NumPy', 'GEMM floor')} |")
    notes = sorted({n for r in rows for n in r["notes"]})
    return "\n".join(lines + ([""] + [f"- {n}" for n in notes] if notes else []))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--configs", help="comma-separated name/batch, e.g. lenet5/64")
    ap.add_argument("--out", help="also write the Markdown table to this file")
    args = ap.parse_args(argv)
    configs = [c for c in CONFIGS if not args.configs or f"{c[0]}/{c[1]}" in args.configs.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, batch in configs:
            print(f"... {name}, b={batch}", file=sys.stderr, flush=True)
            rows.append(bench(name, batch, args.rounds, tmp))
    text = "Graph networks: one gradient call (float64), median microseconds\n\n" + table(rows)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return rows


if __name__ == "__main__":
    main()
