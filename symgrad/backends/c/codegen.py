"""The C backend: print the forward and backward programs as C99, plus a ctypes package over them.

Three code shapes:

* ``unrolled`` — the neuron-level program as straight-line code with common subexpressions pulled
  out, looped over the batch: every weight a local constant, nothing but arithmetic (expression models);
* ``loops`` — the layer program as loops over the batch and units, with the three matrix products per
  layer in small kernels that gcc vectorises, or ``cblas_?gemm`` when built with BLAS (networks);
* ``hybrid`` — loops, with the straight-line code for one sample in front (networks up to UNROLL_LIMIT
  parameters, where that is the fastest per-sample call).

No generated function allocates: the caller passes the parameter block, inputs, targets, outputs,
gradients and a work buffer of ``<name>_workspace_size(batch)`` values.
"""

import re
from pathlib import Path

import sympy as sp

from symgrad.backends.c import build as _build
from symgrad.backends.c.printer import CPrinter
from symgrad.backends.numpy.codegen import init_lines as _init_lines
from symgrad.core.derivation import derive_layers, live_assignments, ops_estimate, straight_line
from symgrad.core.explain import formula_lines
from symgrad.errors import SpecError, ToolError
from symgrad.escape import c_string
from symgrad.ops.activations import net as NET
from symgrad.render import python_tuple, render, write_folder_atomic
from symgrad.version import __version__

BLAS_MIN_WORK = 4096  # m*n*k below which the built-in kernels beat a BLAS call (8-16-16-4: 1.07 vs 1.7 us at batch 1)
UNROLL_LIMIT = 40  # networks with at most this many scalar parameters get a straight-line path for batch 1
# (measured per gradient call at batch 1, gcc -O3 -march=native, straight-line / loops: 2-2-2 (10 parameters) 0.035 /
# 0.10 us, 3-5-2 (32) 0.096 / 0.123, 4-6-3 (51) 0.136 / 0.121, 4-8-8-2 (130) 0.34 / 0.27, 8-16-16-4 (484) 0.88 / 0.69;
# at batch 64 the loops win at every size: 2-2-2 0.80 vs 2.2 us)


_POW2 = """\
/* 2^n for an integer n in [-1022, 1023], straight from the bits. */
static inline double symgrad_pow2(int64_t n)
{
    const uint64_t bits = (uint64_t)(n + 1023) << 52;
    double s;
    memcpy(&s, &bits, sizeof s);
    return s;
}"""

_EXPM1R = """\
/* e^r - 1 for |r| <= ln(2)/2: r + r^2 (1/2 + r/6 + ... + r^12/14!), the sum by Estrin's scheme (short
 * dependency chains: fast one at a time, and loops over it vectorise). */
static inline double symgrad_expm1r(double r)
{
    const double r2 = r * r, r4 = r2 * r2;
    const double a0 = 1.0 / 2 + r * (1.0 / 6), a1 = 1.0 / 24 + r * (1.0 / 120), a2 = 1.0 / 720 + r * (1.0 / 5040),
        a3 = 1.0 / 40320 + r * (1.0 / 362880), a4 = 1.0 / 3628800 + r * (1.0 / 39916800),
        a5 = 1.0 / 479001600 + r * (1.0 / 6227020800), a6 = 1.0 / 87178291200;
    const double b0 = a0 + a1 * r2, b1 = a2 + a3 * r2, b2 = a4 + a5 * r2;
    return r + r2 * (b0 + (b1 + (b2 + a6 * r4) * r4) * r4);
}"""

_EXP = """\
/* exp(x) = 2^n (1 + expm1(r)), n = round(x / ln 2), r = x - n ln 2 (ln 2 in two parts, n ln2_hi exact).
 * Within 1 ulp of the correctly rounded value on all doubles (subnormal results, inf and NaN included); no
 * branches. */
static inline double symgrad_exp(double x)
{
    const double xc = x < -746.0 ? -746.0 : (x > 710.0 ? 710.0 : x);
    const double k = xc * 1.4426950408889634 + 0x1.8p52;  /* round(x / ln 2) in the low bits of k */
    const double n = k - 0x1.8p52;
    const double r = (xc - n * 0x1.62e42fee00000p-1) - n * 0x1.a39ef35793c76p-33;
    const double p = 1 + symgrad_expm1r(r);
    uint64_t kb;
    memcpy(&kb, &k, sizeof kb);
    const int64_t ni = (int64_t)(kb - 0x4338000000000000ULL);
    const int64_t n1 = (int64_t)((uint64_t)(ni + 2048) >> 1) - 1024;  /* 2^n = 2^n1 2^(n - n1), both normal */
    return p * symgrad_pow2(n1) * symgrad_pow2(ni - n1);
}"""

_TANH = """\
/* tanh(x) = sign(x) m / (m + 2), m = expm1(2|x|) = 2^n expm1(r) + (2^n - 1); within 4 ulp; no branches. */
static inline double symgrad_tanh(double x)
{
    const double a = 2 * fabs(x);
    const double k = a * 1.4426950408889634 + 0x1.8p52;
    const double n = k - 0x1.8p52;
    const double r = (a - n * 0x1.62e42fee00000p-1) - n * 0x1.a39ef35793c76p-33;
    const double q = symgrad_expm1r(r);
    uint64_t kb;
    memcpy(&kb, &k, sizeof kb);
    const double s = symgrad_pow2((int64_t)((kb - 0x4338000000000000ULL) & 1023));  /* n <= 58 unless |x| > 20 */
    const double m = s * q + (s - 1);
    return copysign(a > 40.0 ? 1.0 : m / (m + 2), x);  /* tanh(x) rounds to +-1 above |x| = 19.1 */
}"""

_SIGMOID = """\
/* sigma(x) = 1 / (1 + exp(-x)) for x >= 0, exp(x) / (1 + exp(x)) below: no overflow at any x, no branches. */
static inline double symgrad_sigmoid(double x)
{
    const double e = symgrad_exp(-fabs(x));
    const double p = 1 / (1 + e);
    return x >= 0 ? p : e * p;
}"""

_SIGMOID_SCALAR = """\
/* sigma(x) = 1 / (1 + exp(-x)), and exp(x) where that is sigma(x) to the last bit (x <= -708, where exp(-x)
 * would overflow), one value at a time: libm's exp, whose latency is lower than symgrad_exp's. */
static inline double symgrad_sigmoid1(double x)
{
    return x > -708.0 ? 1 / (1 + exp(-x)) : exp(x);
}"""

_SOFTPLUS_SCALAR = """\
/* softplus(x) = log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)), without overflow, one value at a time (libm). */
static inline double symgrad_softplus1(double x)
{
    return fmax(x, 0) + log1p(exp(-fabs(x)));
}"""

_SOFTPLUS = """\
/* softplus(x) = log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)), without overflow. */
static inline double symgrad_softplus(double x)
{
    return fmax(x, 0) + log1p(symgrad_exp(-fabs(x)));
}"""


def _math_helpers(text, ctype):
    """The helpers the function bodies call, in dependency order (clang rejects unused static functions).

    Loop code takes symgrad's own exp and tanh (and the sigmoid and softplus over them): branch-free, so
    the elementwise loops vectorise (1.2 vs 15 ns per tanh with -march=native), and the same on every libm.
    Straight-line code computes one value at a time, where libm's table-driven exp has the shorter latency
    (2-2-2 gradient: 40 vs 58 ns): its sigmoid1 and softplus1 call libm. float code calls the double
    helpers and rounds once.
    """
    f = "f" if ctype == "float" else ""
    used = [fn for fn in ("exp", "tanh", "sigmoid", "softplus", "sigmoid1", "softplus1") if f"symgrad_{fn}{f}(" in text]
    helpers = []
    if {"exp", "tanh", "sigmoid", "softplus"} & set(used):
        helpers += [_POW2, _EXPM1R]
    if {"exp", "sigmoid", "softplus"} & set(used):
        helpers.append(_EXP)
    table = {"tanh": _TANH, "sigmoid": _SIGMOID, "softplus": _SOFTPLUS, "sigmoid1": _SIGMOID_SCALAR,
             "softplus1": _SOFTPLUS_SCALAR}
    helpers += [table[fn] for fn in used if fn in table]
    if f:
        helpers += [f"static inline float symgrad_{fn}f(float x)\n{{\n    return (float)symgrad_{fn}(x);\n}}" for fn in used]
    return helpers


def _gemm_helpers(ctype, blas, name, code):
    """The run-time BLAS hook and the GEMM kernels ``code`` calls (an unused static function is a warning)."""
    g = "s" if ctype == "float" else "d"

    def hook(trans_a, trans_b, lda, ldb):
        return (f"    if (symgrad_gemm && big) {{  /* a BLAS handed over at run time ({name}_set_gemm) */\n"
                f"        symgrad_gemm(101, {trans_a}, {trans_b}, m, n, k, 1, A, {lda}, B, {ldb}, 0, C, n);\n"
                "        return;\n    }\n")

    def call(trans_a, trans_b, lda, ldb):
        return (f"    cblas_{g}gemm(CblasRowMajor, {trans_a}, {trans_b}, m, n, k, 1, A, {lda}, B, {ldb}, 0, C, n);\n"
                if blas else "")

    def body(hooked, blas_call, loops):
        size = f"    const int big = (long long)m * n * k >= {BLAS_MIN_WORK};  /* smaller products: the loops below win */\n"
        if not blas:
            return size + hooked + loops
        return size + hooked + f"#ifdef SYMGRAD_USE_BLAS\n    if (big) {{\n    {blas_call}        return;\n    }}\n#endif\n{loops}"

    nt = body(hook(111, 112, "k", "k"), call("CblasNoTrans", "CblasTrans", "k", "k"), """\
    for (int p = 0; p < k; ++p) {  /* T = B^T, so the products run along contiguous rows */
        for (int j = 0; j < n; ++j) {
            T[(size_t)p * n + j] = B[(size_t)j * k + p];
        }
    }
    symgrad_gemm_nn(m, n, k, A, T, C);
""")
    rows4 = """    int i = 0;
    for (; i + 4 <= m; i += 4) {  /* four rows of C at a time: each row of B is loaded once for all four */
        real *restrict c0 = C + (size_t)i * n;
        real *restrict c1 = c0 + n;
        real *restrict c2 = c1 + n;
        real *restrict c3 = c2 + n;
        for (int j = 0; j < n; ++j) {
            c0[j] = 0;
            c1[j] = 0;
            c2[j] = 0;
            c3[j] = 0;
        }
        for (int p = 0; p < k; ++p) {
            const real a0 = A[AI(i, p)], a1 = A[AI(i + 1, p)], a2 = A[AI(i + 2, p)], a3 = A[AI(i + 3, p)];
            const real *restrict b = B + (size_t)p * n;
            for (int j = 0; j < n; ++j) {
                c0[j] += a0 * b[j];
                c1[j] += a1 * b[j];
                c2[j] += a2 * b[j];
                c3[j] += a3 * b[j];
            }
        }
    }
    for (; i < m; ++i) {
        real *restrict c = C + (size_t)i * n;
        for (int j = 0; j < n; ++j) {
            c[j] = 0;
        }
        for (int p = 0; p < k; ++p) {
            const real a = A[AI(i, p)];
            const real *restrict b = B + (size_t)p * n;
            for (int j = 0; j < n; ++j) {
                c[j] += a * b[j];
            }
        }
    }
"""
    tn = body(hook(112, 111, "m", "n"), call("CblasTrans", "CblasNoTrans", "m", "n"), rows4.replace("AI(i, p)", "(size_t)p * m + i")
              .replace("AI(i + 1, p)", "(size_t)p * m + i + 1").replace("AI(i + 2, p)", "(size_t)p * m + i + 2")
              .replace("AI(i + 3, p)", "(size_t)p * m + i + 3"))
    nn = body(hook(111, 111, "k", "n"), call("CblasNoTrans", "CblasNoTrans", "k", "n"), rows4.replace("AI(i, p)", "(size_t)i * k + p")
              .replace("AI(i + 1, p)", "(size_t)(i + 1) * k + p").replace("AI(i + 2, p)", "(size_t)(i + 2) * k + p")
              .replace("AI(i + 3, p)", "(size_t)(i + 3) * k + p"))
    setter = (f"static {name}_gemm64 symgrad_gemm = 0;\n\nvoid {name}_set_gemm({name}_gemm64 gemm)\n{{\n"
              "    symgrad_gemm = gemm;\n}")
    kernels = {
        "symgrad_gemm_nn": f"/* C (m x n) = A B, A (m x k), B (k x n). */\nstatic void symgrad_gemm_nn(int m, int n, int k, "
        f"const real *restrict A, const real *restrict B, real *restrict C)\n{{\n{nn}}}",
        "symgrad_gemm_nt": f"/* C (m x n) = A B^T, A (m x k), B (n x k); T is scratch for k x n values. */\nstatic void "
        f"symgrad_gemm_nt(int m, int n, int k, const real *restrict A, const real *restrict B, real *restrict C, "
        f"real *restrict T)\n{{\n{nt}}}",
        "symgrad_gemm_tn": f"/* C (m x n) = A^T B, A (k x m), B (k x n). */\nstatic void symgrad_gemm_tn(int m, int n, int k, "
        f"const real *restrict A, const real *restrict B, real *restrict C)\n{{\n{tn}}}",
    }
    called = {k for k in kernels if k + "(" in code}
    if "symgrad_gemm_nt" in called:
        called.add("symgrad_gemm_nn")  # nt transposes B, then calls nn
    return [setter] + [text for k, text in kernels.items() if k in called]


def _layout(model):
    """Each parameter's offset in the flat vector and its header macro (injective: layers hid and HID differ)."""
    out, offset, macros = [], 0, set()
    for p in model.params:
        macro = base = p.name.upper().replace(".", "_")
        k = 2
        while macro in macros:  # upper-casing merged two names: number the later one
            macro, k = f"{base}_{k}", k + 1
        macros.add(macro)
        out.append({"name": p.name, "offset": offset, "size": p.size, "shape": p.shape, "trainable": p.trainable,
                    "macro": macro, "scalars": p.scalar_names})
        offset += p.size
    return out, offset


class _Unrolled:
    """Function bodies of straight-line code over the neuron-level program."""

    def __init__(self, model, layout, pr):
        self.model = model
        self.sl = straight_line(model)
        self.prog = self.sl.derivation.program
        self.pr = CPrinter(pr.dtype, self.sl.namer(model.name).ids, vector_math=False)
        self.offsets = {}
        for p in layout:
            for k, s in enumerate(p["scalars"]):
                self.offsets[s] = p["offset"] + k

    def _prologue(self, needed):
        """The parameters the body reads, as local constants (c_sources voids the arguments it never reads)."""
        params = [s for s in self.prog.params if s in needed]
        if not params:
            return []
        return ["/* parameters */"] + [f"const real {self.pr.doprint(s)} = params[{self.offsets[s.name]}];" for s in params]

    def _row(self, needed):
        n_in, n_out = self.model.n_inputs, self.model.n_outputs
        lines = []
        for k, s in enumerate(self.prog.inputs):
            if s in needed:
                lines.append(f"const real {self.pr.doprint(s)} = x[(size_t)_r * {n_in} + {k}];")
        for k, s in enumerate(self.prog.targets):
            if s in needed:
                lines.append(f"const real {self.pr.doprint(s)} = t[(size_t)_r * {n_out} + {k}];")
        return lines

    def _assign(self, assignments):
        return [f"const real {self.pr.doprint(a.lhs)} = {self.pr.doprint(a.rhs)};" for a in assignments]

    def forward(self):
        body, needed = live_assignments(self.sl.forward, self.prog.outputs)
        n_out = self.model.n_outputs
        loop = self._row(needed) + self._assign(body)
        loop += [f"y[(size_t)_r * {n_out} + {k}] = {self.pr.doprint(o)};" for k, o in enumerate(self.prog.outputs)]
        return self._prologue(needed) + _for_rows(loop)

    def forward_one(self):
        """The forward body for batch 1 (no row loop)."""
        body, needed = live_assignments(self.sl.forward, self.prog.outputs)
        lines = self._prologue(needed) + ["const int _r = 0;"] + self._row(needed) + self._assign(body)
        return lines + [f"y[{k}] = {self.pr.doprint(o)};" for k, o in enumerate(self.prog.outputs)] + ["return;"]

    def loss_one(self):
        """The loss body for batch 1 (the mean of one sample is the sum)."""
        body, needed = live_assignments(self.sl.loss, [self.prog.loss])
        return (self._prologue(needed) + ["const int _r = 0;"] + self._row(needed) + self._assign(body)
                + [f"return {self.pr.doprint(self.prog.loss)};"])

    def _scale(self):
        return "1" if self.model.loss.reduction == "sum" else "(real)1 / batch"

    def loss(self):
        body, needed = live_assignments(self.sl.loss, [self.prog.loss])
        loop = self._row(needed) + self._assign(body) + [f"_E += {self.pr.doprint(self.prog.loss)};"]
        return self._prologue(needed) + ["real _E = 0;"] + _for_rows(loop) + [f"return {self._scale()} * _E;"]

    def _backward_parts(self):
        """(symbols used, the per-row lines, the printed gradients, the whole one-sample body after the prologue)."""
        body, needed = self.sl.live_body()
        row = self._row(needed) + self._assign(body)
        grads = [self.pr.doprint(g) for _, g in self.sl.grads]
        stored = {self.offsets[p.name]: g for (p, _), g in zip(self.sl.grads, grads)}
        one = (["const int _r = 0;"] + row + [f"grad[{i}] = {stored.get(i, '0')};" for i in range(self._total())]
               + [f"return {self.pr.doprint(self.prog.loss)};"])
        return needed, row, grads, one

    def _total(self):
        return sum(p.size for p in self.model.params)

    def backward_one(self):
        """The backward body for batch 1: each gradient stored once known, no accumulators."""
        needed, _, _, one = self._backward_parts()
        return self._prologue(needed) + one

    def backward(self):
        needed, row, grads, one = self._backward_parts()
        n = len(grads)
        loop = row + [f"_E += {self.pr.doprint(self.prog.loss)};"] + [f"_g{k} += {g};" for k, g in enumerate(grads)]
        lines = self._prologue(needed)
        lines += ["if (batch == 1) {  /* one sample: each gradient is stored once known, no accumulators */"]
        lines += ["    " + line for line in one] + ["}"]
        lines.append("real _E = 0;")
        if n:
            lines.append("real " + ", ".join(f"_g{k} = 0" for k in range(n)) + ";")
        lines += _for_rows(loop)
        lines.append(f"const real _s = {self._scale()};")
        written = {self.offsets[p.name]: f"_s * _g{k}" for k, (p, _) in enumerate(self.sl.grads)}
        lines += [f"grad[{i}] = {written.get(i, '0')};" for i in range(self._total())]
        lines.append("return _s * _E;")
        return lines

    def workspace(self):
        return "0"

    def count(self):
        return len(self.sl.body)


def _for_rows(body):
    return ["for (int _r = 0; _r < batch; ++_r) {"] + ["    " + line for line in body] + ["}"]


class _Loops:
    """Function bodies of loops over the layer program."""

    def __init__(self, model, layout, pr):
        self.model, self.pr, self.dtype = model, pr, pr.dtype
        self.der = derive_layers(model)
        self.off = {p["name"]: p["offset"] for p in layout}
        self.sizes = [model.n_inputs] + [lay.units for lay in model.layers]

    def _buffers(self):
        """Work-buffer layout: scratch T for a transposed weight matrix, then activations (and nets kept for the
        backward pass) per layer, then two deltas."""
        parts = {}
        for k, lay in enumerate(self.model.layers):
            parts[f"A{k + 1}"] = lay.units
            if self.der.keeps_net[k] or lay.activation.is_layer:
                parts[f"Z{k + 1}"] = lay.units
        width = max(self.sizes[1:])
        parts["D0"] = width
        parts["D1"] = width
        scratch = max(a * b for a, b in zip(self.sizes, self.sizes[1:]))
        offset, pos = [("T", "0", scratch)], [str(scratch)]  # T: a transposed weight matrix (symgrad_gemm_nt)
        for name, n in parts.items():
            offset.append((name, " + ".join(pos), n))
            pos.append(f"(size_t)batch * {n}")
        return offset, " + ".join(pos)

    def _declared(self, lines):
        """The body with the work-buffer pointers it uses declared first."""
        import re

        text = "\n".join(lines)
        decl = [f"real *restrict {name} = work + {start};" for name, start, _ in self._buffers()[0]
                if re.search(rf"\b{name}\b", text)]
        return decl + ["const real *restrict A0 = x;"] + lines

    def _forward_lines(self):
        lines = []
        bufs = {name for name, _, _ in self._buffers()[0]}
        for k, lay in enumerate(self.model.layers):
            n_in, n_out = self.sizes[k], self.sizes[k + 1]
            w, b = self.model.layer_params(k)
            act = lay.activation
            z = f"Z{k + 1}" if f"Z{k + 1}" in bufs else f"A{k + 1}"
            a = f"A{k + 1}"
            lines.append(f"/* layer {k + 1} {lay.name!r} forward: net = a W^T + b ({n_in} -> {n_out}), "
                         f"out = {'softmax' if act.is_layer else sp.sstr(act.at(NET))} */")
            lines.append(f"symgrad_gemm_nt(batch, {n_out}, {n_in}, A{k}, params + {self.off[w.name]}, {z}, T);")
            bias = "" if b is None else (f" + params[{self.off[b.name]}]" if not b.shape else f" + params[{self.off[b.name]} + _j]")
            if act.is_layer:
                lines += _for_rows([
                    f"real *restrict zr = {z} + (size_t)_r * {n_out};",
                    f"real *restrict ar = {a} + (size_t)_r * {n_out};",
                    f"for (int _j = 0; _j < {n_out}; ++_j) {{", f"    zr[_j] = zr[_j]{bias};", "}",
                    "real m = zr[0];",
                    f"for (int _j = 1; _j < {n_out}; ++_j) {{", "    m = zr[_j] > m ? zr[_j] : m;", "}",
                    "real s = 0;",
                    f"for (int _j = 0; _j < {n_out}; ++_j) {{", f"    ar[_j] = symgrad_exp{self.pr.suffix}(zr[_j] - m);",
                    "    s += ar[_j];", "}",
                    f"const real logs = log{self.pr.suffix}(s);",
                    f"for (int _j = 0; _j < {n_out}; ++_j) {{", "    ar[_j] /= s;",
                    "    zr[_j] = zr[_j] - m - logs;  /* log softmax, stable */", "}",
                ])
            else:
                inner = [f"const size_t _q = (size_t)_r * {n_out} + _j;", f"const real net = {z}[_q]{bias};"]
                if z != a:
                    inner.append(f"{z}[_q] = net;")
                inner.append(f"{a}[_q] = {self.pr.doprint(act.at(NET))};")
                lines += _for_rows([f"for (int _j = 0; _j < {n_out}; ++_j) {{"] + ["    " + s for s in inner] + ["}"])
        return lines

    def _names(self, L):
        z = f"Z{L}" if any(n == f"Z{L}" for n, _, _ in self._buffers()[0]) else f"A{L}"
        return {"y": f"A{L}[_q]", "t": "t[_q]", "net": f"{z}[_q]", "logy": f"{z}[_q]"}

    def _loss_lines(self):
        L = len(self.model.layers)
        n_out = self.sizes[-1]
        c = self.der.scale
        scale = "1" if self.model.loss.reduction == "sum" else "(real)1 / batch"
        if c != 1:
            scale = f"{scale} * ({self.pr.doprint(c)})"
        term = self.pr.__class__(self.dtype, self._names(L)).doprint(self.der.loss_term)
        return ["real _E = 0;", f"for (size_t _q = 0; _q < (size_t)batch * {n_out}; ++_q) {{", f"    _E += {term};", "}",
                f"const real _s = {scale};"]

    def forward(self):
        L = len(self.model.layers)
        n_out = self.sizes[-1]
        return self._declared(self._forward_lines() + [f"for (size_t _q = 0; _q < (size_t)batch * {n_out}; ++_q) {{",
                                                       f"    y[_q] = A{L}[_q];", "}"])

    def loss(self):
        return self._declared(self._forward_lines() + self._loss_lines() + ["return _s * _E;"])

    def backward(self):
        der, model = self.der, self.model
        L = len(model.layers)
        lines = self._forward_lines() + self._loss_lines()
        for p in model.params:  # frozen entries are 0; biases accumulate; trained weights are overwritten
            if not p.trainable or p.name.endswith(".bias"):
                lines += [f"for (int _i = 0; _i < {p.size}; ++_i) {{", f"    grad[{self.off[p.name]} + _i] = 0;", "}"]
        lowest = min((k for k in range(L) if any(p.trainable for p in model.layer_params(k) if p is not None)), default=None)
        if lowest is None:
            return self._declared(lines + ["return _s * _E;"])
        n_out = self.sizes[-1]
        names = self._names(L)
        cp = self.pr.__class__(self.dtype, names)
        d = "D0"
        lines.append(f"/* layer {L} {model.layers[-1].name!r} backward: delta = dE/dnet */")
        if der.output == "fused":
            lines += _for_rows([
                f"real *restrict dr = D0 + (size_t)_r * {n_out};", "real hs = 0;",
                f"for (int _j = 0; _j < {n_out}; ++_j) {{", f"    const size_t _q = (size_t)_r * {n_out} + _j;",
                f"    dr[_j] = {cp.doprint(der.delta_out)};", "    hs += dr[_j];", "}",
                f"for (int _j = 0; _j < {n_out}; ++_j) {{",
                f"    dr[_j] = _s * (dr[_j] - A{L}[(size_t)_r * {n_out} + _j] * hs);", "}",
            ])
        else:
            lines += [f"for (size_t _q = 0; _q < (size_t)batch * {n_out}; ++_q) {{",
                      f"    D0[_q] = _s * ({cp.doprint(der.delta_out)});", "}"]
        for k in range(L - 1, lowest - 1, -1):
            w, b = model.layer_params(k)
            n_in, n_o = self.sizes[k], self.sizes[k + 1]
            if w.trainable:
                lines.append(f"symgrad_gemm_tn({n_o}, {n_in}, batch, {d}, A{k}, grad + {self.off[w.name]});  /* dE/dW */")
            if b is not None and b.trainable:
                target = f"grad[{self.off[b.name]}{' + _j' if b.shape else ''}]"
                lines += _for_rows([f"for (int _j = 0; _j < {n_o}; ++_j) {{",
                                    f"    {target} += {d}[(size_t)_r * {n_o} + _j];", "}"])
            if k > lowest:
                nd = "D1" if d == "D0" else "D0"
                prev = model.layers[k - 1]
                lines.append(f"/* layer {k} {prev.name!r} backward: delta = (delta W) * f'(net) */")
                lines.append(f"symgrad_gemm_nn(batch, {n_in}, {n_o}, {d}, params + {self.off[w.name]}, {nd});")
                fp = der.derivs[k - 1]
                if fp != 1:
                    zname = f"Z{k}" if any(n == f"Z{k}" for n, _, _ in self._buffers()[0]) else f"A{k}"
                    fpc = self.pr.__class__(self.dtype, {"out": f"A{k}[_q]", "net": f"{zname}[_q]"}).doprint(fp)
                    lines += [f"for (size_t _q = 0; _q < (size_t)batch * {n_in}; ++_q) {{", f"    {nd}[_q] *= {fpc};", "}"]
                d = nd
        return self._declared(lines + ["return _s * _E;"])

    def workspace(self):
        return self._buffers()[1]

    def count(self):
        return ops_estimate(self.model)


class _Hybrid:
    """Loop code with the straight-line program in front for one sample: batch 1 takes the unrolled code
    (scalar, libm's exp: the shortest latency), other batches the loops (vectorised activations)."""

    def __init__(self, model, layout, pr):
        self.unrolled = _Unrolled(model, layout, pr)
        self.loops = _Loops(model, layout, pr)

    @staticmethod
    def _join(one, loops):
        return (["if (batch == 1) {  /* one sample: straight-line code */"] + ["    " + line for line in one] + ["}"]
                + loops)

    def forward(self):
        return self._join(self.unrolled.forward_one(), self.loops.forward())

    def loss(self):
        return self._join(self.unrolled.loss_one(), self.loops.loss())

    def backward(self):
        return self._join(self.unrolled.backward_one(), self.loops.backward())

    def workspace(self):
        return self.loops.workspace()

    def count(self):
        return self.loops.count()


def _void_unused(lines, args):
    """``(void)arg;`` in front of a body for each argument it never reads (a model that ignores x or t)."""
    text = "\n".join(lines)
    return [f"(void){a};" for a in args if not re.search(rf"\b{a}\b", text)] + lines


def c_sources(model, dtype="float64", shape="auto", blas="no"):
    """{file name: text} of the header, the source and the ctypes package for ``model``."""
    if model.kind != "network" and shape in ("loops", "hybrid"):
        raise SpecError(f"--shape {shape} needs a network; expression models have unrolled code only", "--shape")
    n_scalars = sum(p.size for p in model.params)
    if shape == "auto":
        shape = "unrolled" if model.kind != "network" else "hybrid" if n_scalars <= UNROLL_LIMIT else "loops"
    layout, n_params = _layout(model)
    pr = CPrinter(dtype)
    ctype = "double" if dtype == "float64" else "float"
    body = {"unrolled": _Unrolled, "hybrid": _Hybrid, "loops": _Loops}[shape](model, layout, pr)
    forward, loss, backward = body.forward(), body.loss(), body.backward()
    forward = _void_unused(forward, ("params", "x", "y", "work"))
    loss = _void_unused(loss, ("params", "x", "t", "work"))
    backward = _void_unused(backward, ("params", "x", "t", "grad", "work"))
    text = "\n".join(forward + loss + backward)
    helpers = _math_helpers(text, ctype)
    use_blas = shape != "unrolled" and blas != "no"
    if shape != "unrolled":
        helpers += _gemm_helpers(ctype, use_blas, model.name, text)
    name = model.name
    der = derive_layers(model) if model.kind == "network" else straight_line(model).derivation
    common = dict(version=__version__, source=model.source, name=name, summary=model.describe(), ctype=ctype,
                  prefix=name.upper(), n_inputs=model.n_inputs, n_outputs=model.n_outputs, n_params=n_params,
                  layout=layout)
    header = render("c/header.h.j2", guard=f"SYMGRAD_{name.upper()}_H", gemm_hook=shape != "unrolled", **common)
    source = render("c/source.c.j2", shape=shape, ops=body.count(), formulas=formula_lines(model, der), blas=use_blas,
                    helpers=helpers,
                    helpers_need_bits=any("symgrad_pow2" in h for h in helpers), workspace=body.workspace(),
                    forward=forward, loss=loss, backward=backward, **common)
    return {f"{name}.h": header, f"{name}.c": source}, shape, use_blas


def package_files(model, dtype="float64", shape="auto", with_main=False, blas="no"):
    """{file name: text} of the package ``<name>_c/`` for a model (or its Derivation)."""
    model = getattr(model, "model", model)
    files, shape, use_blas = c_sources(model, dtype, shape, blas)
    name = model.name
    layout, n_params = _layout(model)
    init, needs_rng = _init_lines(model)
    from symgrad.train.optim import train_context

    files["__init__.py"] = render(
        "c/package.py.j2", version=__version__, source=model.source, name=name, summary=model.describe(),
        dtype="np.float64" if dtype == "float64" else "np.float32", shape=shape, blas=blas if use_blas else "no",
        param_names=[p.name for p in model.params], shapes=[(p.name, p.shape) for p in model.params],
        trainable=[p.name for p in model.params if p.trainable], layout=layout, n_params=n_params,
        n_inputs=model.n_inputs, n_outputs=model.n_outputs, input_names=python_tuple(model.inputs),
        output_names=python_tuple(model.outputs), seed=getattr(model, "seed", 0), init=init, needs_rng=needs_rng,
        learning_rate=repr(float(model.train.learning_rate)), uses_target=model.loss.uses_target,
        train=train_context(model), build_code=_build_code(), gemm_hook=shape != "unrolled",
    )
    if with_main:
        files["main.c"] = _main_source(model, layout, dtype)
    return files


def generate_c(model, out_dir, dtype="float64", shape="auto", with_main=False, build=False, blas="no"):
    """Write ``<out_dir>/<name>_c/`` (header, source, ctypes package, optional main.c); returns the paths."""
    model = getattr(model, "model", model)
    files = package_files(model, dtype, shape, with_main, blas)
    pkg = Path(out_dir) / f"{model.name}_c"
    written = write_folder_atomic(pkg, files)
    if build:
        use_blas = shape != "unrolled" and blas != "no" and model.kind == "network"
        try:
            _build.build_library(pkg / f"{model.name}.c", blas if use_blas else "no")
        except _build.BuildError as exc:
            raise ToolError(str(exc)) from None
    return written


def _build_code():
    """The part of symgrad/build.py that every generated package carries (so it needs no symgrad)."""
    text = Path(_build.__file__).read_text()
    return text.split("# --- copied into generated C packages from here ---\n", 1)[1].strip()


def _main_source(model, layout, dtype):
    """A main() that runs the worked sample forward and backward and prints the numbers (and times a loop)."""
    import numpy as np

    values = model.init_params()
    flat = np.concatenate([np.asarray(values[p.name], dtype=np.float64).reshape(-1) for p in model.params])
    sample = model.sample
    if sample is None:
        x = np.zeros(model.n_inputs)
        t = np.zeros(model.n_outputs)
    else:
        x = sample.x
        t = sample.t if sample.t is not None else np.zeros(model.n_outputs)
    return render(
        "c/main.c.j2", version=__version__, source=model.source, name=model.name,
        ctype="double" if dtype == "float64" else "float", fmt=".17g" if dtype == "float64" else ".9g",
        params=_c_array(flat), x=_c_array(x), t=_c_array(t), layout=layout, n_params=len(flat),
        n_inputs=model.n_inputs, n_outputs=model.n_outputs, prefix=model.name.upper(),
        output_names=list(model.outputs),
        scalar_names=_c_strings([s if p.trainable else "" for p in model.params for s in p.scalar_names])
        if len(flat) <= 1000 else "",
    )


def _c_strings(names):
    quoted = [f'"{c_string(n)}"' for n in names]
    return ",\n        ".join(", ".join(quoted[i:i + 8]) for i in range(0, len(quoted), 8))


def _c_array(values):
    items = [repr(float(v)) for v in values]
    lines, line = [], []
    for item in items:
        line.append(item)
        if len(line) == 8:
            lines.append(", ".join(line))
            line = []
    if line:
        lines.append(", ".join(line))
    return ",\n    ".join(lines)

