"""Recurrent configs of benchmarks/run.py: one gradient call of LSTM(8 -> 32) or GRU(8 -> 32), then dense 1,
on sequences of 50 steps (MSE, float64): the generated NumPy module and C package (its dict call and its bound
call, as run.py names them), beside PyTorch eager (nn.LSTM / nn.GRU, its fused kernels), JAX jit with lax.scan
and a hand-written NumPy BPTT.

    python benchmarks/run.py --recurrent [--rounds N] [--out FILE]

Implementations are interleaved round by round in a shuffled order, as in run.py; medians over rounds in
microseconds. Every implementation's gradients are checked against the generated module's first.
"""

import random
import statistics
import sys
import tempfile
import time

import numpy as np
from run import _busy, calibrate, machine, other_load, settle  # run.py puts the repository on sys.path

from symgrad.api import generate, import_generated
from symgrad.spec.loader import from_dict

CONFIGS = [("lstm", 8, 32, 50, 1), ("lstm", 8, 32, 50, 64), ("gru", 8, 32, 50, 1), ("gru", 8, 32, 50, 64)]
COLUMNS = ["symgrad NumPy", "symgrad C (Python)", "symgrad C bound call (Python)", "PyTorch", "JAX jit (scan)",
           "hand NumPy"]
C = "symgrad C bound call (Python)"  # the C package's fastest call: the ratios are the peers' times over its


def model_for(kind, F, H, T):
    return from_dict({"name": f"bench_{kind}", "input_shape": [T, F], "init": {"scheme": "uniform", "seed": 0},
                      "layers": [{"kind": kind, "name": "rec", "hidden_size": H}, {"name": "out", "units": 1}],
                      "loss": "mse"})


def _sig(v):
    return 1.0 / (1.0 + np.exp(-v))


def hand_numpy(kind, p, x, t):
    """Textbook BPTT written by hand: a per-step loop with the caches in lists (what one writes for a course)."""
    Wi, Wh, bi, bh = p["rec.weight_ih"], p["rec.weight_hh"], p["rec.bias_ih"], p["rec.bias_hh"]
    Wo, bo = p["out.weight"], p["out.bias"]
    B, T, _ = x.shape
    H = Wh.shape[1]
    h, c, cache = np.zeros((B, H)), np.zeros((B, H)), []
    for s in range(T):
        if kind == "lstm":
            a = x[:, s] @ Wi.T + bi + h @ Wh.T + bh
            i, f, g, o = _sig(a[:, :H]), _sig(a[:, H:2 * H]), np.tanh(a[:, 2 * H:3 * H]), _sig(a[:, 3 * H:])
            cp, c = c, f * c + i * g
            cache.append((h, cp, i, f, g, o, np.tanh(c)))
            h = o * np.tanh(c)
        else:
            gi, gh = x[:, s] @ Wi.T + bi, h @ Wh.T + bh
            r, z = _sig(gi[:, :H] + gh[:, :H]), _sig(gi[:, H:2 * H] + gh[:, H:2 * H])
            n = np.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
            cache.append((h, r, z, n, gh[:, 2 * H:]))
            h = (1 - z) * n + z * h
    y = h @ Wo.T + bo
    E = ((y - t) ** 2).mean()
    dy = 2 * (y - t) / y.size
    grads = {"out.weight": dy.T @ h, "out.bias": dy.sum(0)}
    dh, dc = dy @ Wo, np.zeros((B, H))
    dWi, dWh, dbi, dbh = np.zeros_like(Wi), np.zeros_like(Wh), np.zeros_like(bi), np.zeros_like(bh)
    for s in reversed(range(T)):
        if kind == "lstm":
            hp, cp, i, f, g, o, tc = cache[s]
            dc = dc + dh * o * (1 - tc ** 2)
            da = np.hstack([dc * g * i * (1 - i), dc * cp * f * (1 - f), dc * i * (1 - g ** 2), dh * tc * o * (1 - o)])
            dai = dah = da
            dc = dc * f
            dh_direct = 0.0
        else:
            hp, r, z, n, hn = cache[s]
            dn = dh * (1 - z) * (1 - n ** 2)
            dr, dz = dn * hn * r * (1 - r), dh * (hp - n) * z * (1 - z)
            dai, dah = np.hstack([dr, dz, dn]), np.hstack([dr, dz, dn * r])
            dh_direct = dh * z
        dWi += dai.T @ x[:, s]
        dWh += dah.T @ hp
        dbi += dai.sum(0)
        dbh += dah.sum(0)
        dh = dah @ Wh + dh_direct
    grads.update({"rec.weight_ih": dWi, "rec.weight_hh": dWh, "rec.bias_ih": dbi, "rec.bias_hh": dbh})
    return E, grads


def torch_impl(kind, p, x, t):
    import torch

    F, H = p["rec.weight_ih"].shape[1], p["rec.weight_hh"].shape[1]
    rec = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(F, H, batch_first=True).double()
    lin = torch.nn.Linear(H, 1).double()
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(rec, f"{name}_l0").copy_(torch.tensor(p[f"rec.{name}"]))
        lin.weight.copy_(torch.tensor(p["out.weight"]))
        lin.bias.copy_(torch.tensor(p["out.bias"]))
    params = [rec.weight_ih_l0, rec.weight_hh_l0, rec.bias_ih_l0, rec.bias_hh_l0, lin.weight, lin.bias]
    tx, tt = torch.tensor(x), torch.tensor(t)

    def run():
        out, _ = rec(tx)
        E = ((lin(out[:, -1]) - tt) ** 2).mean()
        return torch.autograd.grad(E, params)

    names = ["rec.weight_ih", "rec.weight_hh", "rec.bias_ih", "rec.bias_hh", "out.weight", "out.bias"]
    return run, {n: g.numpy() for n, g in zip(names, run())}


def jax_impl(kind, p, x, t):
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    H = p["rec.weight_hh"].shape[1]

    def loss(q, x, t):
        xs = jnp.swapaxes(x, 0, 1) @ q["rec.weight_ih"].T + q["rec.bias_ih"]  # (T, B, G*H)

        def step(carry, gi):
            h, c = carry
            gh = h @ q["rec.weight_hh"].T + q["rec.bias_hh"]
            if kind == "lstm":
                a = gi + gh
                i, f = jax.nn.sigmoid(a[:, :H]), jax.nn.sigmoid(a[:, H:2 * H])
                g, o = jnp.tanh(a[:, 2 * H:3 * H]), jax.nn.sigmoid(a[:, 3 * H:])
                c = f * c + i * g
                return (o * jnp.tanh(c), c), None
            r, z = jax.nn.sigmoid(gi[:, :H] + gh[:, :H]), jax.nn.sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
            n = jnp.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
            return ((1 - z) * n + z * h, c), None

        zero = jnp.zeros((x.shape[0], H))
        (h, _), _ = jax.lax.scan(step, (zero, zero), xs)
        return ((h @ q["out.weight"].T + q["out.bias"] - t) ** 2).mean()

    g = jax.jit(jax.grad(loss))
    q = {k: jnp.asarray(v) for k, v in p.items()}
    jx, jt = jnp.asarray(x), jnp.asarray(t)
    out = g(q, jx, jt)

    def run():
        jax.block_until_ready(g(q, jx, jt))

    return run, {k: np.asarray(v) for k, v in out.items()}


def bench(kind, F, H, T, B, rounds, workdir):
    model = model_for(kind, F, H, T)
    generate(model, "numpy", workdir)
    generate(model, "c", workdir)
    m, cm = import_generated(model.name, workdir), import_generated(f"{model.name}_c", workdir)
    p = m.init_params()
    rng = np.random.default_rng(1)
    x, t = rng.normal(size=(B, T, F)), rng.normal(size=(B, 1))
    ref = m.gradients(p, x, t)
    own = cm.init_params()  # the package's own dict (views of one vector), as run.py times it
    for name, value in p.items():
        own[name][...] = value
    grad = np.empty(cm.N_PARAMS)
    bound = cm.bind(cm.pack(p), x.reshape(B, -1), t, grad)  # flat rows (B, T*F), as the bound call reads them
    bound()
    impls = {"symgrad NumPy": (lambda: m.loss_and_gradients(p, x, t), ref),
             "symgrad C (Python)": (lambda: cm.loss_and_gradients(own, x, t), cm.gradients(own, x, t)),
             C: (bound, {k: v.copy() for k, v in cm.unpack(grad).items()}),
             "hand NumPy": (lambda: hand_numpy(kind, p, x, t), hand_numpy(kind, p, x, t)[1])}
    for col, make in (("PyTorch", torch_impl), ("JAX jit (scan)", jax_impl)):
        try:
            impls[col] = make(kind, p, x, t)
        except ImportError:
            pass
    agree = {}
    for col, (_, g) in impls.items():
        agree[col] = max(float(np.abs(g[k] - ref[k]).max() / np.abs(ref[k]).max()) for k in ref)
    busy = _busy()
    calls = {col: calibrate(fn)[0] for col, (fn, _) in impls.items()}
    times = {col: [] for col in impls}
    order = list(impls)
    shuffle = random.Random(0)
    for _ in range(rounds):
        shuffle.shuffle(order)
        for col in order:
            fn, n = impls[col][0], calls[col]
            start = time.perf_counter()
            for _ in range(n):
                fn()
            times[col].append((time.perf_counter() - start) / n * 1e6)
    return {col: statistics.median(v) for col, v in times.items()}, agree, other_load(busy, _busy())


def main(rounds=21, out=None, settle_wait=30):
    lines = [f"Machine: {machine()}", "",
             "One gradient call (forward, loss, backward, every parameter), float64, microseconds (median):", "",
             "| config | " + " | ".join(COLUMNS) + " | PyTorch / NumPy | JAX / NumPy | PyTorch / C | JAX / C |",
             "|---|" + "---|" * (len(COLUMNS) + 4)]
    notes = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind, F, H, T, B in CONFIGS:
            print(f"... {kind}({F}->{H}) T={T}, b={B}", file=sys.stderr, flush=True)
            settle(settle_wait)
            med, agree, load = bench(kind, F, H, T, B, rounds, tmp)
            cells = [f"{med[c]:.0f}" if c in med else "—" for c in COLUMNS]
            ratios = [f"{med[c] / med[s]:.2f}" if c in med else "—" for s in ("symgrad NumPy", C)
                      for c in ("PyTorch", "JAX jit (scan)")]
            lines.append(f"| {kind.upper()}({F}->{H})->1, T={T}, b={B} | " + " | ".join(cells + ratios) + " |")
            notes.append(f"- {kind} b={B}: largest relative gradient difference to the NumPy module: "
                         + ", ".join(f"{c} {v:.1e}" for c, v in agree.items())
                         + ("" if load is None else f"; other processes used {load:.0%} of the CPUs meanwhile"))
    text = "\n".join(lines + ["", "Agreement:"] + notes) + "\n"
    print(text)
    if out:
        with open(out, "w") as f:
            f.write(text)
