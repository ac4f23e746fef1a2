"""Hessian-vector products: symgrad's generated hvp (NumPy and C) beside one gradient call of the same module
and torch.func's hvp (jvp over grad, float64), interleaved round by round as run.py does; dense networks, and
LeNet-5 (examples/lenet5.toml) for graph networks (NumPy: the C backend has no graph second order).

Imported by run.py, which appends the table to its report; ``python benchmarks/second_order.py`` runs it alone.
"""

import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from symgrad.api import generate, import_generated  # noqa: E402

HVP_CONFIGS = [("8-16-16-4", (8, 16, 16, 4), 64), ("784-128-64-10", (784, 128, 64, 10), 64)]
GRAPH_HVP_CONFIGS = [("LeNet-5", 64)]  # graph networks: NumPy only
COLUMNS = ["NumPy hvp", "NumPy gradient", "C hvp (Python)", "C gradient (Python)", "torch.func hvp", "torch gradient"]


def torch_hvp(model, params, x, t):
    """(hvp call, gradient call, hvp result) in torch.func over the same network (tanh hidden, sigmoid out, half-SSE)."""
    import torch

    names = [p.name for p in model.params]
    tp = {k: torch.tensor(v, dtype=torch.float64) for k, v in params.items()}
    tx, tt = torch.tensor(x), torch.tensor(t)
    acts = [lay.activation.name for lay in model.layers]

    def E(p):
        a = tx
        for lay, act in zip(model.layers, acts):
            z = a @ p[f"{lay.name}.weight"].T + p[f"{lay.name}.bias"]
            a = torch.tanh(z) if act == "tanh" else torch.sigmoid(z)
        return ((tt - a) ** 2).sum() / 2

    grad = torch.func.grad(E)
    rng = np.random.default_rng(1)
    v = {k: torch.tensor(rng.normal(size=params[k].shape)) for k in names}

    def hvp():
        return torch.func.jvp(grad, (tp,), (v,))[1]

    return hvp, lambda: grad(tp), {k: val.numpy() for k, val in hvp().items()}, {k: val.numpy() for k, val in v.items()}


def bench_hvp(label, sizes, batch, rounds, peers, workdir):
    from run import inputs, model_for  # run.py's helpers (this module is imported from there)

    name = "h_" + "_".join(map(str, sizes))
    model = model_for(sizes, "half_sse", name)
    generate(model, "numpy", workdir, second_order=True)
    npm = import_generated(name, workdir)
    params = npm.init_params()
    x, t = inputs(model, batch, "half_sse")
    impls, notes, agree = {}, [], {}
    rng = np.random.default_rng(1)
    v = {k: rng.normal(size=params[k].shape) for k in npm.TRAINABLE}
    if "torch" in peers:
        th, tg, ref, v = torch_hvp(model, params, x, t)
        impls["torch.func hvp"], impls["torch gradient"] = th, tg
    else:
        ref = None
    mine = npm.hvp(params, x, t, v)
    impls["NumPy hvp"] = lambda: npm.hvp(params, x, t, v)
    impls["NumPy gradient"] = lambda: npm.loss_and_gradients(params, x, t)
    try:
        generate(model, "c", workdir, second_order=True)
        cm = import_generated(f"{name}_c", workdir)
        cp = cm.init_params()
        impls["C hvp (Python)"] = lambda: cm.hvp(cp, x, t, v)
        impls["C gradient (Python)"] = lambda: cm.loss_and_gradients(cp, x, t)
        agree["C hvp"] = max(float(np.max(np.abs(cm.hvp(cp, x, t, v)[k] - mine[k]))) for k in mine)
    except Exception as exc:  # a missing compiler is a note, not a crash
        notes.append(f"symgrad C hvp skipped: {type(exc).__name__}: {exc}")
    if ref is not None:
        agree["torch.func hvp"] = max(float(np.max(np.abs(ref[k] - mine[k]))) for k in mine)
    samples = _interleaved(impls, rounds)
    return {"label": f"{label}, b={batch}", "samples": samples, "notes": notes, "agree": agree,
            "times": {k: statistics.median(s) for k, s in samples.items()}}


def bench_graph_hvp(label, batch, rounds, peers, workdir):
    """A graph network's row (LeNet-5, examples/lenet5.toml): NumPy and C hvp and gradient, torch.func hvp and gradient."""
    import graphs  # benchmarks/graphs.py: the model, its data and its PyTorch loss

    model = graphs.model_for("lenet5")
    generate(model, "numpy", workdir, second_order=True)
    npm = import_generated(model.name, workdir)
    params = npm.init_params()
    x, t = graphs.data(model, batch)
    rng = np.random.default_rng(1)
    v = {k: rng.normal(size=params[k].shape) for k in npm.TRAINABLE}
    mine = npm.hvp(params, x, t, v)
    impls = {"NumPy hvp": lambda: npm.hvp(params, x, t, v), "NumPy gradient": lambda: npm.loss_and_gradients(params, x, t)}
    agree, notes = {}, []
    try:
        generate(model, "c", workdir, second_order=True)
        cm = import_generated(f"{model.name}_c", workdir)
        cp = cm.init_params()
        impls["C hvp (Python)"] = lambda: cm.hvp(cp, x, t, v)
        impls["C gradient (Python)"] = lambda: cm.loss_and_gradients(cp, x, t)
        agree["C hvp"] = max(float(np.max(np.abs(cm.hvp(cp, x, t, v)[k] - mine[k]))) for k in mine)
    except Exception as exc:  # a missing compiler is a note, not a crash
        notes.append(f"symgrad C hvp skipped: {type(exc).__name__}: {exc}")
    if "torch" in peers:
        import torch

        tp = {k: torch.tensor(val) for k, val in params.items()}
        tv = {k: torch.tensor(val) for k, val in v.items()}
        tx, tt = torch.tensor(x), torch.tensor(t.argmax(axis=1))
        grad = torch.func.grad(lambda p: graphs.torch_loss(model, p, tx, tt))
        impls["torch.func hvp"] = lambda: torch.func.jvp(grad, (tp,), (tv,))[1]
        impls["torch gradient"] = lambda: grad(tp)
        ref = impls["torch.func hvp"]()
        agree["torch.func hvp"] = max(float(np.max(np.abs(ref[k].numpy() - mine[k]))) for k in mine)
    times = _interleaved(impls, rounds)
    return {"label": f"{label}, b={batch}", "samples": times, "notes": notes, "agree": agree,
            "times": {k: statistics.median(s) for k, s in times.items()}}


def _interleaved(impls, rounds):
    """{name: [microseconds per call, one per round]}, the implementations in a shuffled order each round."""
    from run import calibrate

    plan = {k: calibrate(fn)[0] for k, fn in impls.items()}
    samples = {k: [] for k in impls}
    order = list(impls)
    shuffle = random.Random(0)
    for _ in range(rounds):
        shuffle.shuffle(order)
        for k in order:
            fn, n = impls[k], plan[k]
            start = time.perf_counter()
            for _ in range(n):
                fn()
            samples[k].append((time.perf_counter() - start) / n * 1e6)
    return samples


def _ratio(r, a, b):
    sa, sb = r["samples"].get(a), r["samples"].get(b)
    return None if not sa or not sb else statistics.median(p / q for p, q in zip(sa, sb))


def hvp_lines(rows, peers):
    """Markdown lines: the times (microseconds, medians over rounds) and the ratios the issue states targets in."""
    def f(v):
        return "–" if v is None else f"{v:,.1f}" if v < 1000 else f"{v:,.0f}"

    lines = ["Hessian-vector products (float64, exact; microseconds, median over rounds):", "",
             "| config | " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for r in rows:
        lines.append(f"| {r['label']} | " + " | ".join(f(r["times"].get(c)) for c in COLUMNS) + " |")
    lines += ["", "| config | NumPy hvp / NumPy gradient | C hvp / C gradient | NumPy hvp / torch.func hvp | "
              "C hvp / torch.func hvp |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        vals = [_ratio(r, "NumPy hvp", "NumPy gradient"), _ratio(r, "C hvp (Python)", "C gradient (Python)"),
                _ratio(r, "NumPy hvp", "torch.func hvp"), _ratio(r, "C hvp (Python)", "torch.func hvp")]
        lines.append(f"| {r['label']} | " + " | ".join("–" if v is None else f"{v:.2f}" for v in vals) + " |")
    lines += ["", "hvp agreement (max abs difference from the NumPy module's hvp): "
              + "; ".join(f"{r['label']}: " + ", ".join(f"{k} {v:.1e}" for k, v in r["agree"].items()) for r in rows)]
    notes = sorted({n for r in rows for n in r["notes"]})
    notes.append("JAX jit jvp(grad) is not timed: JAX is not installed on this machine" if "jax" not in peers
                 else "JAX is installed but its hvp column is not implemented here")
    return lines + [""] + [f"- {n}" for n in notes]


def main(rounds=15):
    peers = set()
    try:
        import torch  # noqa: F401
        peers.add("torch")
    except ImportError:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        rows = [bench_hvp(label, sizes, batch, rounds, peers, tmp) for label, sizes, batch in HVP_CONFIGS]
        rows += [bench_graph_hvp(label, batch, rounds, peers, tmp) for label, batch in GRAPH_HVP_CONFIGS]
    print("\n".join(hvp_lines(rows, peers)))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
