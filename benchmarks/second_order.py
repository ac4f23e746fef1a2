"""Second order: symgrad's generated hvp (NumPy and C) beside one gradient call of the same module, torch.func's hvp
and JAX's jit jvp(grad) (float64); and the full Hessian of small networks from symgrad's C package (the dict call and
the bound call) beside CasADi's generated Hessian C; and LeNet-5's hvp (examples/lenet5.toml) for graph networks.
Implementations are interleaved round by round as run.py does.

Imported by run.py, which appends the tables to its report; ``python benchmarks/second_order.py`` runs it alone.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))  # run.py beside this file

from symgrad.api import generate, import_generated  # noqa: E402

HVP_CONFIGS = [("8-16-16-4", (8, 16, 16, 4), 64), ("784-128-64-10", (784, 128, 64, 10), 64)]
GRAPH_HVP_CONFIGS = [("LeNet-5", 64)]  # graph networks
COLUMNS = ["NumPy hvp", "NumPy gradient", "C hvp (Python)", "C gradient (Python)", "torch.func hvp", "torch gradient",
           "JAX jit hvp"]
HESSIAN_CONFIGS = [("2-2-2", (2, 2, 2), 1, "mazur"), ("8-16-16-4", (8, 16, 16, 4), 1, "half_sse")]
HESSIAN_COLUMNS = ["C hessian (Python)", "C hessian bound call (Python)", "CasADi C Hessian (ctypes)"]


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


def jax_hvp(model, params, x, t, v):
    """(hvp call, its result): jax.jit of jvp over grad of run.py's JAX loss, float64, block_until_ready."""
    import jax
    import jax.numpy as jnp
    from run import jax_loss

    loss, theta = jax_loss(model, params)
    jx, jt = jnp.asarray(x), jnp.asarray(t)
    jv = {k: jnp.asarray(v[k]) for k in theta}
    hvp = jax.jit(lambda th, d: jax.jvp(lambda p: jax.grad(loss)(p, jx, jt), (th,), (d,))[1])
    out = hvp(theta, jv)

    def run():
        jax.block_until_ready(hvp(theta, jv))

    return run, {k: np.asarray(val) for k, val in out.items()}


def interleaved(impls, rounds):
    """{name: [microseconds per call, one per round]}: every implementation once per round, in a shuffled order, with
    run.py's calibration (calls per sample) and its load reading; (samples, share of the CPUs other processes used)."""
    from run import _busy, calibrate, other_load

    busy = _busy()
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
    return samples, other_load(busy, _busy())


def bench_hvp(label, sizes, batch, rounds, peers, workdir):
    from run import inputs, model_for  # run.py's helpers

    name = "h_" + "_".join(map(str, sizes))
    model = model_for(sizes, "half_sse", name)
    generate(model, "numpy", workdir, second_order=True)
    npm = import_generated(name, workdir)
    params = npm.init_params()
    x, t = inputs(model, batch, "half_sse")
    impls, notes, agree = {}, [], {}
    rng = np.random.default_rng(1)
    v = {k: rng.normal(size=params[k].shape) for k in npm.TRAINABLE}
    refs = {}
    if "torch" in peers:
        th, tg, refs["torch.func hvp"], v = torch_hvp(model, params, x, t)
        impls["torch.func hvp"], impls["torch gradient"] = th, tg
    mine = npm.hvp(params, x, t, v)
    impls["NumPy hvp"] = lambda: npm.hvp(params, x, t, v)
    impls["NumPy gradient"] = lambda: npm.loss_and_gradients(params, x, t)
    if "jax" in peers:
        try:
            impls["JAX jit hvp"], refs["JAX jit hvp"] = jax_hvp(model, params, x, t, v)
        except Exception as exc:  # a peer failing is a note, not a crash
            notes.append(f"JAX jit hvp failed: {type(exc).__name__}: {str(exc)[:200]}")
    try:
        generate(model, "c", workdir, second_order=True)
        cm = import_generated(f"{name}_c", workdir)
        cp = cm.init_params()
        impls["C hvp (Python)"] = lambda: cm.hvp(cp, x, t, v)
        impls["C gradient (Python)"] = lambda: cm.loss_and_gradients(cp, x, t)
        refs["C hvp"] = cm.hvp(cp, x, t, v)
    except Exception as exc:  # a missing compiler is a note, not a crash
        notes.append(f"symgrad C hvp skipped: {type(exc).__name__}: {exc}")
    for k, ref in refs.items():
        agree[k] = max(float(np.max(np.abs(ref[n] - mine[n]))) for n in mine)
    samples, load = interleaved(impls, rounds)
    return {"label": f"{label}, b={batch}", "samples": samples, "notes": notes, "agree": agree, "load": load,
            "rounds": rounds, "times": {k: statistics.median(s) for k, s in samples.items()}}


def bench_hessian(label, sizes, batch, loss, rounds, peers, workdir):
    """The full Hessian: symgrad's C package (dict call, bound call) and CasADi's SX Hessian compiled with run.py's flags."""
    from run import CasadiC, inputs, model_for

    name = "hs_" + "_".join(map(str, sizes))
    model = model_for(sizes, loss, name)
    x, t = inputs(model, batch, loss)
    impls, notes, agree = {}, [], {}
    H = None
    try:
        generate(model, "c", workdir, second_order=True)
        cm = import_generated(f"{model.name}_c", workdir)
        p = cm.init_params()
        H = cm.hessian(p, x, t)
        impls["C hessian (Python)"] = lambda: cm.hessian(p, x, t)
        bound = np.empty_like(H)
        impls["C hessian bound call (Python)"] = cm.bind_hessian(cm.pack(p), np.ascontiguousarray(x), np.ascontiguousarray(t),
                                                                 bound)
        impls["C hessian bound call (Python)"]()
        agree["C hessian bound call"] = float(np.max(np.abs(bound - H)))
    except Exception as exc:  # a missing compiler is a note, not a crash
        notes.append(f"symgrad C hessian skipped: {type(exc).__name__}: {str(exc)[:200]}")
    if "casadi" not in peers:
        notes.append("CasADi is not installed: its Hessian column shows –")
    elif H is not None:
        try:
            start = time.perf_counter()
            cas = CasadiC(model, p, x, t, tempfile.mkdtemp(dir=workdir), "SX", hessian=True)
            notes.append(f"CasADi's SX Hessian of {label} (b={batch}): {cas.src.stat().st_size / 1e6:.1f} MB of C, "
                         f"{cas.sparsity.nnz():,} nonzeros, built (symbolic + codegen + gcc, or the cached library) "
                         f"in {time.perf_counter() - start:.0f} s")
            impls["CasADi C Hessian (ctypes)"] = cas.call
            agree["CasADi C Hessian"] = float(np.max(np.abs(cas.hessian() - H)))
        except Exception as exc:  # a peer failing is a note, not a crash
            notes.append(f"CasADi Hessian of {label} failed: {type(exc).__name__}: {str(exc)[:200]}")
    samples, load = interleaved(impls, rounds)
    return {"label": f"{label}, b={batch}", "samples": samples, "notes": notes, "agree": agree, "load": load,
            "rounds": rounds, "times": {k: statistics.median(s) for k, s in samples.items()}}


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
    samples, load = interleaved(impls, rounds)
    return {"label": f"{label}, b={batch}", "samples": samples, "notes": notes, "agree": agree, "load": load, "rounds": rounds,
            "times": {k: statistics.median(s) for k, s in samples.items()}}


def _ratio(r, a, b):
    sa, sb = r["samples"].get(a), r["samples"].get(b)
    return None if not sa or not sb else statistics.median(p / q for p, q in zip(sa, sb))


def _f(v):
    return "–" if v is None else f"{v:,.2f}" if v < 10 else f"{v:,.1f}" if v < 1000 else f"{v:,.0f}"


def _load(r):
    return f"{r['rounds']} rounds" + ("" if r["load"] is None else f", other processes used {r['load']:.0%} of the CPUs")


def _ratio_table(rows, header, pairs):
    lines = ["| config | " + " | ".join(header) + " |", "|---|" + "---:|" * len(header)]
    for r in rows:
        vals = [_ratio(r, a, b) for a, b in pairs]
        lines.append(f"| {r['label']} | " + " | ".join("–" if v is None else f"{v:.2f}" for v in vals) + " |")
    return lines


def hvp_lines(rows, peers):
    """Markdown lines: the times (microseconds, medians over rounds) and the ratios the issue states targets in."""
    lines = ["Hessian-vector products (float64, exact; microseconds, median over rounds):", "",
             "| config | " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for r in rows:
        lines.append(f"| {r['label']} | " + " | ".join(_f(r["times"].get(c)) for c in COLUMNS) + " |")
    lines += [""] + _ratio_table(rows, ["NumPy hvp / NumPy gradient", "C hvp / C gradient", "NumPy hvp / torch.func hvp",
                                        "C hvp / torch.func hvp", "NumPy hvp / JAX hvp", "C hvp / JAX hvp"],
                                 [("NumPy hvp", "NumPy gradient"), ("C hvp (Python)", "C gradient (Python)"),
                                  ("NumPy hvp", "torch.func hvp"), ("C hvp (Python)", "torch.func hvp"),
                                  ("NumPy hvp", "JAX jit hvp"), ("C hvp (Python)", "JAX jit hvp")])
    lines += ["", "hvp agreement (max abs difference from the NumPy module's hvp): "
              + "; ".join(f"{r['label']} ({_load(r)}): " + ", ".join(f"{k} {v:.1e}" for k, v in r["agree"].items())
                          for r in rows)]
    notes = sorted({n for r in rows for n in r["notes"]})
    if "jax" not in peers:
        notes.append("JAX jit jvp(grad) is not timed: JAX is not installed on this machine")
    if "torch" not in peers:
        notes.append("torch.func is not timed: PyTorch is not installed on this machine")
    return lines + [""] + [f"- {n}" for n in notes]


def hessian_lines(rows):
    """Markdown lines: the full Hessian's times (microseconds, medians over rounds) and symgrad / CasADi."""
    lines = ["Full Hessian in C (float64; microseconds, median over rounds):", "",
             "| config | " + " | ".join(HESSIAN_COLUMNS) + " |", "|---|" + "---:|" * len(HESSIAN_COLUMNS)]
    for r in rows:
        lines.append(f"| {r['label']} | " + " | ".join(_f(r["times"].get(c)) for c in HESSIAN_COLUMNS) + " |")
    lines += [""] + _ratio_table(rows, ["C hessian (Py) / CasADi", "C hessian bound (Py) / CasADi"],
                                 [("C hessian (Python)", "CasADi C Hessian (ctypes)"),
                                  ("C hessian bound call (Python)", "CasADi C Hessian (ctypes)")])
    lines += ["", "Hessian agreement (max abs difference from the C package's hessian()): "
              + "; ".join(f"{r['label']} ({_load(r)}): " + ", ".join(f"{k} {v:.1e}" for k, v in r["agree"].items())
                          for r in rows)]
    return lines + [""] + [f"- {n}" for n in sorted({n for r in rows for n in r["notes"]})]


def peers_installed():
    found = set()
    for mod in ("torch", "jax", "casadi"):
        try:
            __import__(mod)
            found.add(mod)
        except ImportError:
            pass
    return found


def main(rounds=15):
    peers = peers_installed()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [bench_hvp(label, sizes, batch, rounds, peers, tmp) for label, sizes, batch in HVP_CONFIGS]
        rows += [bench_graph_hvp(label, batch, rounds, peers, tmp) for label, batch in GRAPH_HVP_CONFIGS]
        hess = [bench_hessian(label, sizes, batch, loss, rounds, peers, tmp) for label, sizes, batch, loss in HESSIAN_CONFIGS]
    print("\n".join(hvp_lines(rows, peers) + [""] + hessian_lines(hess)))


if __name__ == "__main__":
    main()
