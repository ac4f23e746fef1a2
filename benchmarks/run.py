"""Time one gradient call (forward + loss + backward, all parameter gradients, float64) of symgrad's
generated code beside PyTorch, JAX, CasADi, hand-written NumPy and the GEMM floor, in one run.

    python benchmarks/run.py [--quick] [--configs 2-2-2/1,8-16-16-4/64] [--rounds N] [--out FILE] [--hvp | --no-hvp]
    python benchmarks/run.py --recurrent [--rounds N] [--out FILE]   (LSTM/GRU configs: benchmarks/recurrent.py)

Implementations are interleaved round by round in a shuffled order (fixed seed), so a noisy machine
hurts them all alike; the table gives medians over rounds in microseconds and the ratios the targets
are stated in. Missing peers (torch, jax, casadi, a C compiler) are skipped with a note.
"""

import argparse
import ctypes
import hashlib
import importlib.util
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # second_order.py beside this file

import symgrad  # noqa: E402
from symgrad.api import generate, import_generated  # noqa: E402
from symgrad.backends.c.build import DEFAULT_CFLAGS  # noqa: E402

LOOP_RUNS = 5  # runs of each C loop driver (~0.2 s each) per config
CFLAGS = DEFAULT_CFLAGS.split()  # every C column (symgrad's and CasADi's) is compiled with the same flags

CONFIGS = [  # (label, sizes, batch, loss)
    ("2-2-2", (2, 2, 2), 1, "mazur"),
    ("8-16-16-4", (8, 16, 16, 4), 1, "half_sse"),
    ("8-16-16-4", (8, 16, 16, 4), 64, "half_sse"),
    ("784-128-64-10", (784, 128, 64, 10), 64, "half_sse"),
    ("784-128-64-10", (784, 128, 64, 10), 1024, "half_sse"),
    ("1024-1024-1024-10", (1024, 1024, 1024, 10), 256, "half_sse"),
    ("784-128-64-10 CE", (784, 128, 64, 10), 64, "softmax_cross_entropy"),
]
COLUMNS = ["symgrad NumPy", "symgrad C (Python)", "symgrad C bound call (Python)", "symgrad C loop (in C)", "PyTorch",
           "PyTorch 1 thread", "JAX jit", "CasADi C (ctypes)", "CasADi C loop (in C)", "hand NumPy", "GEMM floor",
           "PyTorch GEMM floor"]


def model_for(sizes, loss, name):
    """tanh hidden layers, sigmoid output with half-SSE (or softmax with cross-entropy)."""
    if loss == "mazur":
        return symgrad.load(ROOT / "examples/mazur.toml")
    layers = [symgrad.Dense(f"l{k}", n, activation="tanh") for k, n in enumerate(sizes[1:-1])]
    last = "softmax" if loss == "softmax_cross_entropy" else "sigmoid"
    layers.append(symgrad.Dense(f"l{len(sizes) - 2}", sizes[-1], activation=last))
    return symgrad.Network(name, sizes[0], layers, symgrad.get_loss(loss), init="xavier", seed=0,
                           sample=symgrad.Sample(None, None, seed=0))


def inputs(model, batch, loss):
    """Seeded inputs in [0, 1) and targets (one-hot rows for cross-entropy)."""
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(batch, model.n_inputs))
    t = (np.eye(model.n_outputs)[rng.integers(0, model.n_outputs, batch)] if loss == "softmax_cross_entropy"
         else rng.uniform(0.05, 0.95, size=(batch, model.n_outputs)))
    return x, t


def layer_arrays(model, params):
    """[(W, b or None, shared, activation name, bias trainable)] in layer order."""
    out = []
    for k, layer in enumerate(model.layers):
        w, b = model.layer_params(k)
        out.append((params[w.name], None if b is None else params[b.name], b is not None and b.shape == (),
                    layer.activation.name, b is not None and b.trainable))
    return out


# ---------------------------------------------------------------------------------------------
# implementations: each returns (callable doing one gradient call, {param name: gradient} from one call)

def hand_numpy(model, params, x, t):
    """Textbook backprop in NumPy (what one writes by hand): loss and every trainable gradient."""
    layers = layer_arrays(model, params)
    softmax = layers[-1][3] == "softmax"
    mean = model.loss.reduction == "mean"

    def run():
        acts = [x]
        a = x
        for W, b, _, act, _ in layers:
            z = a @ W.T
            if b is not None:
                z = z + b
            if act == "tanh":
                a = np.tanh(z)
            elif act == "sigmoid":
                a = 1 / (1 + np.exp(-z))
            else:
                e = np.exp(z - z.max(axis=1, keepdims=True))
                a = e / e.sum(axis=1, keepdims=True)
            acts.append(a)
        s = 1 / x.shape[0] if mean else 1.0
        err = a - t
        if softmax:
            E = -np.sum(t * np.log(a)) * s
            d = err * s
        else:
            E = 0.5 * np.sum(err**2) * s
            d = err * a * (1 - a) * s
        grads = {"E": E}
        for k in range(len(layers) - 1, -1, -1):
            W, _, shared, _, train_b = layers[k]
            grads[k] = (d.T @ acts[k], (d.sum() if shared else d.sum(axis=0)) if train_b else None)
            if k:
                a_prev = acts[k]
                d = (d @ W) * (1 - a_prev**2) if layers[k - 1][3] == "tanh" else (d @ W) * a_prev * (1 - a_prev)
        return grads

    def named():
        g = run()
        out = {}
        for k, layer in enumerate(model.layers):
            w, b = model.layer_params(k)
            if w.trainable:
                out[w.name] = g[k][0]
            if b is not None and b.trainable:
                out[b.name] = g[k][1]
        return out

    return run, named()


def gemm_floor(model, params, x, t):
    """Only the matrix products backprop needs (one forward, two backward per layer; none into x), preallocated."""
    Ws = [params[model.layer_params(k)[0].name] for k in range(len(model.layers))]
    B = x.shape[0]
    zs = [np.empty((B, W.shape[0])) for W in Ws]
    ds = [np.ones((B, W.shape[0])) for W in Ws]
    gs = [np.empty_like(W) for W in Ws]

    def run():
        a = x
        for k, W in enumerate(Ws):
            np.matmul(a, W.T, out=zs[k])
            a = zs[k]
        for k in range(len(Ws) - 1, -1, -1):
            np.matmul(ds[k].T, x if k == 0 else zs[k - 1], out=gs[k])
            if k:
                np.matmul(ds[k], Ws[k], out=ds[k - 1])

    return run, None


def torch_impl(model, params, x, t, threads=None):
    import torch

    tp = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    trainable = [tp[p.name] for p in model.params if p.trainable]
    layers = [(tp[model.layer_params(k)[0].name],
               None if model.layer_params(k)[1] is None else tp[model.layer_params(k)[1].name], lay.activation.name)
              for k, lay in enumerate(model.layers)]
    tx, tt = torch.tensor(x), torch.tensor(t)
    mean = model.loss.reduction == "mean"

    def run():
        if threads:
            torch.set_num_threads(threads)
        a = tx
        for W, b, act in layers:
            z = a @ W.T
            if b is not None:
                z = z + b
            a = z if act == "softmax" else (torch.tanh(z) if act == "tanh" else torch.sigmoid(z))
        if layers[-1][2] == "softmax":
            E = torch.nn.functional.cross_entropy(a, tt, reduction="mean" if mean else "sum")
        else:
            E = ((tt - a) ** 2).sum() / 2 / (tx.shape[0] if mean else 1)
        return torch.autograd.grad(E, trainable)

    def restore():
        if threads:
            torch.set_num_threads(default_threads)

    default_threads = torch.get_num_threads()
    g = run()
    restore()
    named = {p.name: gi.numpy() for p, gi in zip([p for p in model.params if p.trainable], g)}
    if threads:
        def timed():
            run()
            torch.set_num_threads(default_threads)
        return timed, named
    return run, named


def jax_loss(model, params):
    """(loss(theta, x, t) in JAX float64, {name: trainable array}): the network and its loss, for jit and grad."""
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    names = [p.name for p in model.params if p.trainable]
    frozen = {p.name: jnp.asarray(params[p.name]) for p in model.params if not p.trainable}
    spec = [(model.layer_params(k)[0].name, None if model.layer_params(k)[1] is None else model.layer_params(k)[1].name,
             lay.activation.name) for k, lay in enumerate(model.layers)]
    mean = model.loss.reduction == "mean"

    def loss(theta, x, t):
        p = dict(frozen, **theta)
        a = x
        for w, b, act in spec:
            z = a @ p[w].T + (p[b] if b else 0.0)
            a = z if act == "softmax" else (jnp.tanh(z) if act == "tanh" else jax.nn.sigmoid(z))
        if spec[-1][2] == "softmax":
            E = -(t * jax.nn.log_softmax(a, axis=1)).sum()
        else:
            E = ((t - a) ** 2).sum() / 2
        return E / x.shape[0] if mean else E

    return loss, {n: jnp.asarray(params[n]) for n in names}


def jax_impl(model, params, x, t):
    import jax
    import jax.numpy as jnp

    loss, theta = jax_loss(model, params)
    g = jax.jit(jax.grad(loss))
    jx, jt = jnp.asarray(x), jnp.asarray(t)
    out = g(theta, jx, jt)

    def run():
        r = g(theta, jx, jt)
        jax.block_until_ready(r)

    return run, {n: np.asarray(out[n]) for n in theta}


class CasadiC:
    """CasADi SX (or MX) gradient of the same network compiled to C with gcc and CFLAGS, called via ctypes and in a C loop."""

    def __init__(self, model, params, x, t, workdir, kind="SX", hessian=False):
        """``hessian``: f returns E and CasADi's Hessian of E in theta (its own sparse column-major form) instead."""
        import casadi as ca

        S = getattr(ca, kind)
        names = [p.name for p in model.params if p.trainable]
        sizes = {p.name: p.size for p in model.params}
        theta = S.sym("theta", sum(sizes[n] for n in names))
        syms, pos = {}, 0
        for p in model.params:
            if p.trainable:
                syms[p.name] = ca.reshape(theta[pos:pos + p.size], p.shape[1] if len(p.shape) == 2 else 1,
                                          p.shape[0] if p.shape else 1).T if len(p.shape) == 2 else theta[pos:pos + p.size]
                pos += p.size
            else:
                syms[p.name] = ca.DM(np.atleast_1d(params[p.name]))
        B = x.shape[0]
        X = S.sym("x", B, model.n_inputs)
        T = S.sym("t", B, model.n_outputs)
        a = X
        for k, layer in enumerate(model.layers):
            w, b = model.layer_params(k)
            z = ca.mtimes(a, syms[w.name].T)
            if b is not None:
                z = z + ca.repmat(ca.reshape(syms[b.name], 1, -1) if b.shape else syms[b.name], B, 1 if b.shape else layer.units)
            act = layer.activation.name
            a = ca.tanh(z) if act == "tanh" else 1 / (1 + ca.exp(-z))
        E = ca.sumsqr(T - a) / 2
        f = ca.Function("f", [theta, X, T], [E, ca.hessian(E, theta)[0] if hessian else ca.gradient(E, theta)])
        self.names, self.sizes, self.model, self.sparsity = names, sizes, model, f.sparsity_out(1)
        cg = ca.CodeGenerator("casadi_f.c", {"with_header": True})
        cg.add(f)
        old = os.getcwd()
        os.chdir(workdir)
        try:
            cg.generate()
        finally:
            os.chdir(old)
        src = Path(workdir) / "casadi_f.c"
        lib = compiled(src, CASADI_HESSIAN_COMPILE_TIMEOUT if hessian else CASADI_COMPILE_TIMEOUT)
        self.lib = ctypes.CDLL(str(lib))
        self.fn = self.lib.f
        self.fn.restype = ctypes.c_int
        # arguments in CasADi's column-major layout
        flat = np.concatenate([np.asarray(params[n]).reshape(-1) for n in names])  # row-major weights match W.T reshape
        self.theta = np.ascontiguousarray(flat)
        self.x = np.asfortranarray(x).reshape(-1, order="F").copy()
        self.t = np.asfortranarray(t).reshape(-1, order="F").copy()
        self.E = np.zeros(1)
        self.g = np.zeros(f.nnz_out(1))
        sz = [ctypes.c_longlong() for _ in range(4)]
        self.lib.f_work(*[ctypes.byref(s) for s in sz])
        self.w = np.zeros(max(1, sz[3].value))
        self.iw = np.zeros(max(1, sz[2].value), dtype=np.int64)
        P = ctypes.POINTER(ctypes.c_double)
        self.arg = (P * 3)(*[a.ctypes.data_as(P) for a in (self.theta, self.x, self.t)])
        self.res = (P * 2)(*[a.ctypes.data_as(P) for a in (self.E, self.g)])
        self.args = (self.arg, self.res, self.iw.ctypes.data_as(ctypes.c_void_p), self.w.ctypes.data_as(P), 0)
        self.workdir, self.src = Path(workdir), src

    def call(self):
        self.fn(*self.args)

    def gradients(self):
        self.call()
        out, pos = {}, 0
        for n in self.names:
            out[n] = self.g[pos:pos + self.sizes[n]].reshape(np.shape(self.model.init_params()[n]))
            pos += self.sizes[n]
        return out

    def hessian(self):
        """The dense Hessian from one call (its sparse output scattered into a matrix)."""
        self.call()
        rows, cols = self.sparsity.get_triplet()
        H = np.zeros(self.sparsity.shape)
        H[rows, cols] = self.g
        return H

    def c_loop(self, n_calls):
        """A function running f n_calls times in a C loop (a small driver around the generated code): us per call."""
        driver = self.workdir / "casadi_main.c"
        driver.write_text(f"""#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "casadi_f.h"
int main(void) {{
    static casadi_real theta[{self.theta.size}] = {{{_c_numbers(self.theta)}}};
    static casadi_real x[{self.x.size}] = {{{_c_numbers(self.x)}}};
    static casadi_real t[{self.t.size}] = {{{_c_numbers(self.t)}}};
    static casadi_real E[1], g[{self.g.size}], w[{self.w.size}]; static casadi_int iw[{self.iw.size}];
    const casadi_real *arg[3] = {{theta, x, t}}; casadi_real *res[2] = {{E, g}};
    struct timespec t0, t1; volatile double sink = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long k = 0; k < {n_calls}; ++k) {{ x[0] += 1e-30; f(arg, res, iw, w, 0); sink += E[0]; }}
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("%.6f\\n", ((t1.tv_sec - t0.tv_sec) * 1e6 + (t1.tv_nsec - t0.tv_nsec) / 1e3) / {n_calls});
    return 0;
}}
""")
        exe = self.workdir / "casadi_main"
        subprocess.run(["gcc", *CFLAGS, "-I", str(self.workdir), str(driver), str(self.src), "-o", str(exe), "-lm"], check=True,
                       capture_output=True)
        return lambda: float(subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout)


def compiled(src, timeout):
    """``src`` built with ``gcc CFLAGS -shared``: a shared library, cached by the source's and the flags' hash (in
    $SYMGRAD_CACHE/bench, default ~/.cache/symgrad/bench), so CasADi's large Hessian sources compile once per machine."""
    text = Path(src).read_bytes()
    key = hashlib.sha256(text + " ".join(CFLAGS).encode()).hexdigest()[:24]
    cache = Path(os.environ.get("SYMGRAD_CACHE", Path.home() / ".cache" / "symgrad")) / "bench"
    lib = cache / f"casadi_{key}.so"
    if lib.exists():
        return lib
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f"casadi_{key}.{os.getpid()}.tmp.so"
    try:
        subprocess.run(["gcc", *CFLAGS, "-fPIC", "-shared", str(src), "-o", str(tmp), "-lm"], check=True, capture_output=True,
                       timeout=timeout)
    except subprocess.TimeoutExpired:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"gcc -O3 did not compile CasADi's {len(text) // 1024:,} KiB of C in {timeout} s") from None
    os.replace(tmp, lib)
    return lib


def _c_numbers(a):
    """A C initialiser list of the values of a (exact: 17 significant digits)."""
    return ", ".join(f"{v:.17g}" for v in np.ravel(a))


def symgrad_c_loop(model, workdir, batch, n_calls):
    """A function running the generated main.c's --bench loop once: microseconds per gradient call."""
    generate(model, "c", workdir, with_main=True, blas="auto")
    d = Path(workdir) / f"{model.name}_c"
    exe = Path(workdir) / f"{model.name}_main"
    flags = list(CFLAGS)
    link = ["-lm"]
    if shutil.which("gcc") and model.kind == "network" and "SYMGRAD_USE_BLAS" in (d / f"{model.name}.c").read_text():
        probe = subprocess.run(["gcc", "-xc", "-", "-o", os.devnull, "-lopenblas"], input="#include <cblas.h>\nint main(void){return 0;}",
                               capture_output=True, text=True)
        if probe.returncode == 0:
            flags.append("-DSYMGRAD_USE_BLAS")
            link.insert(0, "-lopenblas")
    subprocess.run(["gcc", "-std=c99", *flags, str(d / "main.c"), str(d / f"{model.name}.c"), "-o", str(exe), *link],
                   check=True, capture_output=True)

    def run():
        # the generated main() keeps arrays of N_PARAMS on the stack: allow the hard limit (wide networks)
        out = subprocess.run(["sh", "-c", 'ulimit -s "$(ulimit -H -s)" 2>/dev/null; exec "$0" "$@"', str(exe), "--bench",
                              str(n_calls), str(batch)], capture_output=True, text=True, check=True).stdout
        return float(out.strip().splitlines()[-1].split(":")[1].split()[0])
    return run


def torch_gemm_floor(model, params, x, t):
    """PyTorch's BLAS alone: the GEMM floor's products with torch.matmul(out=...) on preallocated tensors."""
    import torch

    Ws = [torch.tensor(params[model.layer_params(k)[0].name]) for k in range(len(model.layers))]
    tx = torch.tensor(x)
    B = x.shape[0]
    zs = [torch.empty((B, W.shape[0]), dtype=torch.float64) for W in Ws]
    ds = [torch.ones((B, W.shape[0]), dtype=torch.float64) for W in Ws]
    gs = [torch.empty_like(W) for W in Ws]

    def run():
        a = tx
        for k, W in enumerate(Ws):
            torch.matmul(a, W.T, out=zs[k])
            a = zs[k]
        for k in range(len(Ws) - 1, -1, -1):
            torch.matmul(ds[k].T, tx if k == 0 else zs[k - 1], out=gs[k])
            if k:
                torch.matmul(ds[k], Ws[k], out=ds[k - 1])

    return run, None


# ---------------------------------------------------------------------------------------------

def _busy():
    """(machine busy seconds from /proc/stat, this process's and its waited children's CPU seconds, wall time)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        busy = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    except (OSError, ValueError, IndexError):
        busy = None
    t = os.times()
    return busy, t.user + t.system + t.children_user + t.children_system, time.perf_counter()


def other_load(before, after):
    """Fraction of the machine's CPU time that other processes used between two _busy() readings."""
    if before[0] is None or after[0] is None:
        return None
    wall = (after[2] - before[2]) * (os.cpu_count() or 1)
    return max(0.0, ((after[0] - before[0]) - (after[1] - before[1])) / wall) if wall > 0 else None


def settle(max_wait, quiet=0.1):
    """Wait (at most max_wait seconds) until other processes use under `quiet` of the CPUs for a whole second."""
    deadline = time.perf_counter() + max_wait
    while time.perf_counter() < deadline:
        before = _busy()
        time.sleep(1.0)
        load = other_load(before, _busy())
        if load is None or load < quiet:
            return load
    return None


def calibrate(fn, budget=0.002):
    """Calls per timing sample so that one sample takes about `budget` seconds (and the seconds per call)."""
    fn()
    n, once = 1, 0.0
    while True:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        once = (time.perf_counter() - start) / n
        if once * n >= budget / 4 or n >= 1 << 16:
            break
        n *= 4
    return max(1, int(budget / max(once, 1e-8))), once


def bench_config(label, sizes, batch, loss, rounds, peers, workdir):
    name = "b_" + "_".join(map(str, sizes)) + ("_ce" if loss == "softmax_cross_entropy" else "")
    model = model_for(sizes, loss, name)
    if loss == "mazur":
        name = model.name
    start = time.perf_counter()
    generate(model, "numpy", workdir)
    gen_numpy = time.perf_counter() - start
    notes, gen_c, cm = [], None, None
    has_cc = shutil.which("gcc") is not None
    if not has_cc:
        notes.append("no gcc: the symgrad C and CasADi columns are skipped")
    elif importlib.util.find_spec("symgrad.backends.c.codegen") is None:
        notes.append("symgrad.backends.c.codegen does not exist yet: the symgrad C columns show –")
    else:
        try:
            start = time.perf_counter()
            generate(model, "c", workdir, blas="auto")
            gen_c = time.perf_counter() - start
            cm = import_generated(f"{model.name}_c", workdir)
        except Exception as exc:  # a backend failing is a note, not a crash
            notes.append(f"symgrad C failed: {type(exc).__name__}: {exc}")
            cm = None
    npm = import_generated(model.name, workdir)
    params = npm.init_params()
    x, t = inputs(model, batch, loss)
    reference = npm.gradients(params, x, t)
    impls, tags = {}, {}
    impls["symgrad NumPy"] = (lambda: npm.loss_and_gradients(params, x, t), reference)

    def attempt(column, make):
        try:
            impls[column] = make()
        except Exception as exc:  # a peer failing is a note, not a crash
            notes.append(f"{column} failed: {type(exc).__name__}: {str(exc)[:200]}")

    if cm is not None:
        own = cm.init_params()  # the package's own dict (views of one vector, kept so by train_step), same values
        for name, value in params.items():
            own[name][...] = value
        attempt("symgrad C (Python)", lambda: (lambda: cm.loss_and_gradients(own, x, t), cm.gradients(own, x, t)))
        attempt("symgrad C bound call (Python)", lambda: (cm.bind(cm.pack(params), np.ascontiguousarray(x),
                                                                  np.ascontiguousarray(t), np.empty(cm.N_PARAMS)), None))
    impls["hand NumPy"] = hand_numpy(model, params, x, t)
    impls["GEMM floor"] = gemm_floor(model, params, x, t)
    if "torch" in peers:
        attempt("PyTorch", lambda: torch_impl(model, params, x, t))
        attempt("PyTorch 1 thread", lambda: torch_impl(model, params, x, t, threads=1))
        if sizes[0] >= 784:
            attempt("PyTorch GEMM floor", lambda: torch_gemm_floor(model, params, x, t))
    if "jax" in peers:
        attempt("JAX jit", lambda: jax_impl(model, params, x, t))
    casadi = None
    kind = casadi_kind(sizes, batch, loss)
    if "casadi" in peers and has_cc and kind is None:
        notes.append("CasADi: – for softmax cross-entropy (not built) and for networks where even MX code is hopeless "
                     "(over 1e7 multiply-adds per call: gcc -O3 takes over 10 minutes on its MX code at 784-128-64-10, b=1024)")
    elif "casadi" in peers and has_cc:
        try:
            casadi = CasadiC(model, params, x, t, tempfile.mkdtemp(dir=workdir), kind)
            impls["CasADi C (ctypes)"] = (casadi.call, casadi.gradients())
            if kind == "MX":
                tags["CasADi C (ctypes)"] = tags["CasADi C loop (in C)"] = " (MX)"
                notes.append("CasADi (MX): batched configurations use MX, whose generated C calls casadi_mtimes loops; "
                             "SX expands every scalar and does not compile in reasonable time there")
        except Exception as exc:  # a peer failing is a note, not a crash
            notes.append(f"CasADi failed: {type(exc).__name__}: {str(exc)[:200]}")
    samples = {k: [] for k in impls}
    busy_start = _busy()
    calibrated = {k: calibrate(fn) for k, (fn, _) in impls.items()}
    counts = {k: c[0] for k, c in calibrated.items()}
    per_round = sum(max(c[0] * c[1], c[1]) for c in calibrated.values())
    rounds = max(min(rounds, 7), min(rounds, int(ROUND_SECONDS / per_round)))
    order = list(impls)
    shuffler = random.Random(0)
    for _ in range(rounds):
        shuffler.shuffle(order)
        for k in order:
            fn, n = impls[k][0], counts[k]
            start = time.perf_counter()
            for _ in range(n):
                fn()
            samples[k].append((time.perf_counter() - start) / n * 1e6)
    result = {k: statistics.median(v) for k, v in samples.items()}
    load = other_load(busy_start, _busy())
    loops = {}
    if cm is not None:
        n_calls = max(10, int(2e5 / max(0.05, result.get("symgrad C bound call (Python)", 100.0))))
        try:
            loops["symgrad C loop (in C)"] = symgrad_c_loop(model, tempfile.mkdtemp(dir=workdir), batch, n_calls)
        except Exception as exc:  # the C backend failing is a note, not a crash
            notes.append(f"symgrad C loop failed: {type(exc).__name__}: {str(exc)[:200]}")
    if casadi is not None:
        try:
            loops["CasADi C loop (in C)"] = casadi.c_loop(max(10, int(2e5 / max(0.05, result["CasADi C (ctypes)"]))))
        except Exception as exc:  # a peer failing is a note, not a crash
            notes.append(f"CasADi C loop failed: {type(exc).__name__}: {str(exc)[:200]}")
    for _ in range(LOOP_RUNS):  # the C loops alternate too, run by run, and give medians and paired ratios
        for k in shuffler.sample(sorted(loops), len(loops)):
            samples.setdefault(k, []).append(loops[k]())
    for k in loops:
        result[k] = statistics.median(samples[k])
    agree = {}
    for k, (_, grads) in impls.items():
        if grads is not None:
            agree[k] = max(float(np.max(np.abs(np.asarray(grads[n]) - reference[n]))) for n in reference)
    memory = None
    if batch >= 1024:
        memory = peak_memory(npm, params, x, t, reference, sizes)
    return {"label": f"{label}, b={batch}", "times": result, "samples": samples, "rounds": rounds, "load": load, "agree": agree,
            "gen": (gen_numpy, gen_c), "notes": notes,
            "memory": memory, "sizes": sizes, "batch": batch, "tags": tags}


def peak_memory(npm, params, x, t, reference, sizes):
    """(peak bytes, returned gradient bytes, array budget, fixed bytes) of one NumPy gradient call (tracemalloc).

    The budget is the forward activations plus one delta per layer. The same call on the first quarter of the
    batch tells the batch-sized part from a fixed part (the dicts, tuples and frames of any Python call).
    """
    def measure(rows):
        npm.loss_and_gradients(params, x[:rows], t[:rows])
        tracemalloc.start()
        npm.loss_and_gradients(params, x[:rows], t[:rows])
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak - sum(v.nbytes for v in reference.values()) - 2 * sum(rows * n * 8 for n in sizes[1:])

    batch = x.shape[0]
    over_full, over_quarter = measure(batch), measure(batch // 4)
    grads = sum(v.nbytes for v in reference.values())
    budget = 2 * sum(batch * n * 8 for n in sizes[1:])
    return budget + grads + over_full, grads, budget, over_quarter if over_full == over_quarter else None


CASADI_COMPILE_TIMEOUT = 60
# 8-16-16-4's SX Hessian is 24 MB of C: gcc -O3 took 69 min and 11 GB here. The compiled library is cached, so the
# column appears once a machine has built it: SYMGRAD_BENCH_HESSIAN_COMPILE=14400 (seconds) waits for that build.
CASADI_HESSIAN_COMPILE_TIMEOUT = int(os.environ.get("SYMGRAD_BENCH_HESSIAN_COMPILE", 600))
ROUND_SECONDS = 15  # time for the rounds of one config; slow configs get fewer rounds (at least 7)


def casadi_kind(sizes, batch, loss):
    """SX for per-sample small networks, MX for batched ones while feasible, None where CasADi is not run."""
    if loss == "softmax_cross_entropy":
        return None
    if batch == 1 and sum(sizes) < 100:
        return "SX"
    work = batch * sum(a * b for a, b in zip(sizes, sizes[1:]))
    return "MX" if work <= 1e7 else None


def symbolic_gradients_time():
    """Seconds to derive the per-parameter symbolic gradients of every weight of 8-16-16-4 (for reports)."""
    model = model_for((8, 16, 16, 4), "half_sse", "sym8")
    start = time.perf_counter()
    d = symgrad.derive(model)
    for p in model.params:
        if p.name.endswith(".weight"):
            for s in p.scalar_names:
                d.gradient(s)
    return time.perf_counter() - start


def fmt(v):
    if v is None:
        return "–"
    return f"{v:,.2f}" if v < 10 else f"{v:,.1f}" if v < 1000 else f"{v:,.0f}"


def pratio(r, a, b):
    """a / b for one config: the median of the per-round ratios when both were timed in the rounds."""
    sa, sb = r["samples"].get(a), r["samples"].get(b)
    if sa and sb:
        return statistics.median(x / y for x, y in zip(sa, sb))
    return ratio(r["times"].get(a), r["times"].get(b))


def ratio(a, b):
    return None if a is None or b is None else a / b


def report(rows, sym_time, peers, out, hvp=()):
    lines = ["| config | " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for r in rows:
        lines.append(f"| {r['label']} | " + " | ".join(fmt(r["times"].get(c)) + r["tags"].get(c, "") for c in COLUMNS)
                     + " |")
    lines += ["", "Ratios (same run):", "",
              "| config | NumPy / hand | NumPy / GEMM floor | NumPy / PyTorch | NumPy / JAX | C (Py) / CasADi ctypes | "
              "C bound (Py) / CasADi ctypes | C loop / CasADi C loop | C (Py) / hand | C (Py) / NumPy | "
              "GEMM floor / PyTorch GEMM floor |",
              "|---|" + "---:|" * 10]
    for r in rows:
        vals = [pratio(r, "symgrad NumPy", "hand NumPy"), pratio(r, "symgrad NumPy", "GEMM floor"),
                pratio(r, "symgrad NumPy", "PyTorch"), pratio(r, "symgrad NumPy", "JAX jit"),
                pratio(r, "symgrad C (Python)", "CasADi C (ctypes)"),
                pratio(r, "symgrad C bound call (Python)", "CasADi C (ctypes)"),
                pratio(r, "symgrad C loop (in C)", "CasADi C loop (in C)"),
                pratio(r, "symgrad C (Python)", "hand NumPy"), pratio(r, "symgrad C (Python)", "symgrad NumPy"),
                pratio(r, "GEMM floor", "PyTorch GEMM floor")]
        lines.append(f"| {r['label']} | " + " | ".join("–" if v is None else f"{v:.2f}" for v in vals) + " |")
    lines += ["", "Gradient agreement (max abs difference from the symgrad NumPy module):", ""]
    for r in rows:
        busy = "" if r["load"] is None else f", other processes used {r['load']:.0%} of the CPUs"
        lines.append(f"- {r['label']} ({r['rounds']} rounds{busy}): " + ", ".join(f"{k} {v:.1e}" for k, v in r["agree"].items()))
    lines += ["", "Derivation + generation time (seconds): "
              + "; ".join(f"{r['label']}: NumPy {r['gen'][0]:.2f}, C {r['gen'][1]:.2f}" for r in rows)]
    if sym_time is not None:
        lines.append(f"Per-parameter symbolic gradients of every weight of 8-16-16-4: {sym_time:.2f} s")
    for r in rows:
        if r["memory"]:
            peak, grads, budget, fixed = r["memory"]
            over = peak - grads - budget
            verdict = ("PASS" if over <= 0 else
                       f"PASS: the {over:,} bytes over do not grow with the batch (Python objects, no array)"
                       if fixed is not None and over < 64 * 1024 else "FAIL")
            lines.append(f"Peak memory of one NumPy gradient call (tracemalloc), {r['label']}: {peak / 1024:,.0f} KiB; "
                         f"without the {grads / 1024:,.0f} KiB of returned gradients {(peak - grads) / 1024:,.0f} KiB, "
                         f"against {budget / 1024:,.0f} KiB of forward activations plus one delta per layer -> "
                         f"{verdict} ({over / 1024:+,.1f} KiB)")
    if hvp:
        lines += [""] + list(hvp)
    lines += ["", "Targets:", ""] + targets(rows, sym_time)
    busy = [r["label"] for r in rows if r["load"] is not None and r["load"] > 0.1]
    if busy:
        lines += ["", f"WARNING: other processes used over 10% of the CPUs while timing {'; '.join(busy)}: multi-threaded "
                      "BLAS (NumPy, PyTorch, the C module) slows down by up to 10x under such contention; rerun on a quiet "
                      "machine before trusting those rows."]
    notes = sorted({n for r in rows for n in r["notes"]}) + [f"{p} not installed (or --no-peers): its columns show –"
                                                            for p in ("torch", "jax", "casadi") if p not in peers]
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        Path(out).write_text(text)


def targets(rows, sym_time):
    out = []

    def check(what, value, limit):
        if value is None:
            out.append(f"- {what}: not measured")
        else:
            out.append(f"- {what}: {value:.2f} (target <= {limit}) {'PASS' if value <= limit else 'FAIL'}")

    for r in rows:
        label = r["label"]
        small = r["batch"] == 1 and sum(r["sizes"]) < 100
        if small:
            check(f"{label}: NumPy / hand NumPy", pratio(r, "symgrad NumPy", "hand NumPy"), 0.5)
            check(f"{label}: C (Python) / CasADi ctypes", pratio(r, "symgrad C (Python)", "CasADi C (ctypes)"), 1.0)
            check(f"{label}: C bound call (Python) / CasADi ctypes",
                  pratio(r, "symgrad C bound call (Python)", "CasADi C (ctypes)"), 1.0)
            check(f"{label}: C loop / CasADi C loop", pratio(r, "symgrad C loop (in C)", "CasADi C loop (in C)"), 1.0)
        elif r["batch"] == 64 and r["sizes"][0] == 8:
            check(f"{label}: NumPy / hand NumPy", pratio(r, "symgrad NumPy", "hand NumPy"), 0.8)
            check(f"{label}: C (Python) / hand NumPy", pratio(r, "symgrad C (Python)", "hand NumPy"), 0.5)
        elif r["sizes"][0] >= 784:
            check(f"{label}: NumPy / GEMM floor", pratio(r, "symgrad NumPy", "GEMM floor"), 1.1)
            check(f"{label}: NumPy / PyTorch", pratio(r, "symgrad NumPy", "PyTorch"), 1.0)
            check(f"{label}: NumPy / JAX", pratio(r, "symgrad NumPy", "JAX jit"), 1.0)
            check(f"{label}: C (Python) / NumPy", pratio(r, "symgrad C (Python)", "symgrad NumPy"), 1.2)
        if r["sizes"] == (784, 128, 64, 10) and r["batch"] == 64 and "CE" not in label:
            check("derivation + generation of 784-128-64-10, NumPy (s)", r["gen"][0], 2.0)
    if sym_time is not None:
        check("per-parameter symbolic gradients of 8-16-16-4 (s)", sym_time, 5.0)
    return out


def machine():
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores (nproc), {cpu}; Python "
            f"{platform.python_version()}, NumPy {np.__version__} with {blas_info()}")


def blas_info():
    """NumPy's BLAS (name, version, threading) as NumPy reports it."""
    try:
        cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        conf = cfg.get("openblas configuration", "").split()[2:]
        return f"{cfg.get('name', '?')} {cfg.get('version', '')}" + (f" ({' '.join(conf)})" if conf else "")
    except Exception:  # older NumPy: no dict form
        return "unknown BLAS"


def peer_versions(peers):
    out = []
    for mod in sorted(peers):
        out.append(f"{mod} {__import__(mod).__version__}")
    return ", ".join(out) or "no peers"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the 2-2-2 config only, few rounds (a smoke run)")
    ap.add_argument("--configs", help="comma-separated label/batch, e.g. 2-2-2/1,784-128-64-10/64 (softmax row: '784-128-64-10 CE/64')")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 41, quick 3)")
    ap.add_argument("--out", help="also write the Markdown to this file")
    ap.add_argument("--no-peers", action="store_true", help="skip PyTorch, JAX and CasADi")
    ap.add_argument("--no-graphs", action="store_true", help="skip the graph-network table (benchmarks/graphs.py)")
    ap.add_argument("--hvp", action=argparse.BooleanOptionalAction, default=None,
                    help="time Hessian-vector products and full Hessians after the gradient configs (default: on, off with "
                         "--quick or --configs)")
    ap.add_argument("--settle", type=float, default=None,
                    help="before each config wait up to this many seconds for other processes to go quiet (default 30, quick 0)")
    ap.add_argument("--recurrent", action="store_true", help="the recurrent configs instead (benchmarks/recurrent.py)")
    args = ap.parse_args(argv)
    if args.recurrent:
        import recurrent

        return recurrent.main(args.rounds or (3 if args.quick else 21), args.out,
                              args.settle if args.settle is not None else (0 if args.quick else 30))
    configs = CONFIGS[:1] if args.quick else CONFIGS
    if args.configs:
        wanted = set(args.configs.split(","))
        configs = [c for c in CONFIGS if f"{c[0]}/{c[2]}" in wanted]
    rounds = args.rounds or (3 if args.quick else 41)
    peers = set()
    if not args.no_peers:
        for mod in ("torch", "jax", "casadi"):
            try:
                __import__(mod)
                peers.add(mod)
            except ImportError:
                pass
    print(f"Machine: {machine()}\n")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, sizes, batch, loss in configs:
            print(f"... {label}, b={batch}", file=sys.stderr, flush=True)
            wait = args.settle if args.settle is not None else (0 if args.quick else 30)
            settle(wait)
            row = bench_config(label, sizes, batch, loss, rounds, peers, tmp)
            if wait and row["load"] is not None and row["load"] > 0.1:  # the machine was busy: once more, when quiet
                print(f"... {label}, b={batch} again: other processes used {row['load']:.0%} of the CPUs", file=sys.stderr,
                      flush=True)
                settle(wait)
                again = bench_config(label, sizes, batch, loss, rounds, peers, tmp)
                row = again if again["load"] is None or again["load"] < row["load"] else row
            rows.append(row)
        hvp_rows, hessian_rows = [], []
        if args.hvp if args.hvp is not None else not (args.quick or args.configs):
            from second_order import GRAPH_HVP_CONFIGS, HESSIAN_CONFIGS, HVP_CONFIGS, bench_graph_hvp, bench_hessian, bench_hvp
            for label, sizes, batch in HVP_CONFIGS:
                print(f"... hvp {label}, b={batch}", file=sys.stderr, flush=True)
                settle(args.settle if args.settle is not None else (0 if args.quick else 30))
                hvp_rows.append(bench_hvp(label, sizes, batch, min(rounds, 15), peers, tmp))
            for label, batch in GRAPH_HVP_CONFIGS:
                print(f"... hvp {label}, b={batch}", file=sys.stderr, flush=True)
                settle(args.settle if args.settle is not None else (0 if args.quick else 30))
                hvp_rows.append(bench_graph_hvp(label, batch, min(rounds, 15), peers, tmp))
            for label, sizes, batch, loss in HESSIAN_CONFIGS:
                print(f"... hessian {label}, b={batch}", file=sys.stderr, flush=True)
                settle(args.settle if args.settle is not None else (0 if args.quick else 30))
                hessian_rows.append(bench_hessian(label, sizes, batch, loss, min(rounds, 15), peers, tmp))
    sym_time = None if args.quick else symbolic_gradients_time()
    second = []
    if hvp_rows:
        from second_order import hessian_lines, hvp_lines
        second = hvp_lines(hvp_rows, peers) + [""] + hessian_lines(hessian_rows)
    report(rows, sym_time, peers, args.out, second)
    if not (args.quick or args.no_graphs or args.configs):
        import graphs  # benchmarks/graphs.py, beside this script

        graph_rows = graphs.main(["--rounds", str(max(5, rounds // 3))])
        if args.out:
            with open(args.out, "a") as f:
                f.write("\n" + graphs.table(graph_rows) + "\n")


if __name__ == "__main__":
    main()
