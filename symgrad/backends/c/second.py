"""C loops for a network's second-order functions: the R-operator over the layer program, as the NumPy module runs it.

Per layer k the work buffer holds Z{k}, A{k} (forward), RZ{k}, R{k} (R-forward), D{k}, RD{k}, G{k-1},
RG{k-1} (backward); products are three small kernels (``sg2_nt``, ``sg2_nn``, ``sg2_tn``) over the loop
code's GEMM kernels (the host BLAS when the package hands it over); elementwise expressions and the
ops' ``jvp``, ``vjp`` and ``rvjp`` are printed by the CPrinter. No function allocates:
``<name>_second_workspace_size(batch)`` values of work come from the caller.
"""

import re

import sympy as sp

from symgrad.backends.c.loops import for_all
from symgrad.backends.c.second_expression import straight_hessian_body
from symgrad.ops.activations import net as NET
from symgrad.ops.base import symbols
from symgrad.sizes import UNROLL_LIMIT

KERNELS = {  # over the loop code's GEMM kernels (templates/c/symgrad_gemm.h: host BLAS when handed over, else loops)
    "sg2_nt": """/* Z (batch x m) = A (batch x n) W^T (W m x n), or Z += when acc; P (batch x m) and T (n x m) scratch */
static void sg2_nt(int batch, int m, int n, const real *A, const real *W, real *Z, int acc, real *P, real *T)
{
    symgrad_gemm_nt(batch, m, n, A, W, acc ? P : Z, T);
    if (acc) {
        for (size_t q = 0; q < (size_t)batch * m; ++q) {
            Z[q] += P[q];
        }
    }
}""",
    "sg2_nn": """/* G (batch x n) = D (batch x m) W (W m x n), or G += when acc; P (batch x n) scratch */
static void sg2_nn(int batch, int m, int n, const real *D, const real *W, real *G, int acc, real *P)
{
    symgrad_gemm_nn(batch, n, m, D, W, acc ? P : G);
    if (acc) {
        for (size_t q = 0; q < (size_t)batch * n; ++q) {
            G[q] += P[q];
        }
    }
}""",
    "sg2_tn": """/* GW (m x n) += D^T A (D batch x m, A batch x n); P (m x n) scratch */
static void sg2_tn(int batch, int m, int n, const real *D, const real *A, real *GW, real *P)
{
    symgrad_gemm_tn(m, n, batch, D, A, P);
    for (size_t q = 0; q < (size_t)m * n; ++q) {
        GW[q] += P[q];
    }
}""",
}
GEMM = {"sg2_nt": "symgrad_gemm_nt", "sg2_nn": "symgrad_gemm_nn", "sg2_tn": "symgrad_gemm_tn"}


def _mirrored(starts, nt):
    """Lines filling H below each layer's rows from its transpose, in 16 x 16 tiles (rows from ``starts[b]`` hold the
    entries from ``starts[b]`` on; the entries before it are those rows' columns in the rows above)."""
    lines = []
    for b in range(1, len(starts)):
        r0, r1 = starts[b], starts[b + 1] if b + 1 < len(starts) else nt
        lines += [f"for (int _i0 = {r0}; _i0 < {r1}; _i0 += 16) {{", f"    for (int _j0 = 0; _j0 < {r0}; _j0 += 16) {{",
                  f"        for (int _i = _i0; _i < _i0 + 16 && _i < {r1}; ++_i) {{",
                  f"            for (int _j = _j0; _j < _j0 + 16 && _j < {r0}; ++_j) {{",
                  f"                H[(size_t)_i * {nt} + _j] = H[(size_t)_j * {nt} + _i];", "            }", "        }", "    }", "}"]
    return lines


def _rows(body):
    return ["for (int _r = 0; _r < batch; ++_r) {"] + ["    " + line for line in body] + ["}"]


class CSecond:
    """Function bodies of the second-order C functions of a network (a LayerSecond, the layout, a CPrinter)."""

    def __init__(self, second, layout, pr):
        self.second, self.der, self.pr = second, second.first, pr
        self.layers = self.der.program.layers
        self.model = self.der.program.model
        self.L = len(self.layers)
        self.off = {p["name"]: p["offset"] for p in layout}
        self.n_params = sum(p["size"] for p in layout)
        self.layout = layout
        self.trained_ranges = [(p["offset"], p["size"]) for p in layout if p["trainable"]]
        self.width = [self.model.n_inputs] + [s.units for s in self.layers]
        trained = [s.index for s in self.layers if s.dense and any(p.trainable for p in (s.weight, s.bias) if p)]
        self.lowest = min(trained, default=None)
        self.kernels = set()

    def _k(self, name, args):
        self.kernels.add(name)
        scratch = {"sg2_nt": ", P, T", "sg2_nn": ", P", "sg2_tn": ", P"}[name]
        return f"{name}({args}{scratch});"

    def _elem(self, expr, k):
        return self.pr.renamed({"out": f"A{k}[_q]", "net": f"Z{k}[_q]", "y": f"A{k}[_q]", "t": "t[_q]"}).doprint(expr)

    def _op_rows(self, exprs, inputs, dst, n_dst, prefix):
        """Per row: dst = exprs of the row pointers ``inputs`` ({symbol prefix: (buffer, width)}), CSE'd."""
        names, decl = {}, []
        for sym_prefix, (buf, n) in inputs.items():
            decl.append(f"const real *restrict {sym_prefix}r = {buf} + (size_t)_r * {n};")
            names.update({s: f"{sym_prefix}r[{j}]" for j, s in enumerate(symbols(sym_prefix, n))})
        shared, reduced = sp.cse(exprs, symbols=sp.numbered_symbols(prefix))
        body = []
        for sym, e in shared:
            body.append(f"const real {sym.name} = {self.pr.renamed(names).doprint(e)};")
            names[sym] = sym.name
        body += [f"{dst}[(size_t)_r * {n_dst} + {j}] = {self.pr.renamed(names).doprint(e)};" for j, e in enumerate(reduced)]
        text = "\n".join(body)
        return _rows([d for d in decl if re.search(rf"\b{d.split(' = ')[0].split()[-1]}\[", text)] + body)

    def _in(self, s):
        k = s.index + 1
        return (f"Z{k}", f"RZ{k}", s.units) if s.dense else (f"A{k - 1}", f"R{k - 1}", s.fan_in)

    def _bias(self, b, buf, k, n):
        """buf{k} += the bias (from ``buf`` "params" or "v") of each unit."""
        off = self.off[b.name]
        src = f"{buf}[{off} + _j]" if b.shape else f"{buf}[{off}]"
        return _rows([f"for (int _j = 0; _j < {n}; ++_j) {{", f"    Z{k}[(size_t)_r * {n} + _j] += {src};", "}"]) \
            if buf == "params" else _rows([f"for (int _j = 0; _j < {n}; ++_j) {{", f"    RZ{k}[(size_t)_r * {n} + _j] += {src};", "}"])

    def forward(self):
        lines = []
        for s in self.layers:
            k, n = s.index + 1, s.units
            if s.dense:
                lines.append(self._k("sg2_nt", f"batch, {n}, {s.fan_in}, A{k - 1}, params + {self.off[s.weight.name]}, Z{k}, 0"))
                if s.bias is not None:
                    lines += self._bias(s.bias, "params", k, n)
            if s.elementwise:
                lines += for_all(n, [f"A{k}[_q] = {self._elem(s.op.at(NET), k)};"])
            elif hasattr(s.op, "c_forward_row"):
                src = f"Z{k}" if s.dense else f"A{k - 1}"
                exp = lambda arg: self.pr.helper("exp", arg)  # noqa: E731
                lines += _rows([f"const real *restrict nr = {src} + (size_t)_r * {n};", f"real *restrict zr = S{k} + (size_t)_r * {n};",
                                f"real *restrict ar = A{k} + (size_t)_r * {n};",
                                *s.op.c_forward_row(n, "nr[_j]", exp, f"log{self.pr.suffix}")])
            else:
                x, _, n_in = self._in(s)
                lines += self._op_rows(s.op.forward(symbols("x", n_in)), {"x": (x, n_in)}, f"A{k}", n, f"_f{k}_")
        return lines

    def r_forward(self, seeded=False, start=None):
        """R{z}, R{a} along v from the lowest trained layer up; ``seeded``: from R0, no parameter direction;
        ``start``: from RZ of dense layer ``start`` (set by the caller) up, no parameter direction."""
        lines = []
        seeded = seeded or start is not None
        for s in self.layers:
            k, i, n = s.index + 1, s.index, s.units
            if not seeded and (self.lowest is None or i < self.lowest) or start is not None and i < start:
                continue
            prev = seeded or i > self.lowest
            if s.dense and i != start:
                if prev:
                    lines.append(self._k("sg2_nt", f"batch, {n}, {s.fan_in}, R{k - 1}, params + {self.off[s.weight.name]}, RZ{k}, 0"))
                if not seeded and s.weight.trainable:
                    lines.append(self._k("sg2_nt", f"batch, {n}, {s.fan_in}, A{k - 1}, v + {self.off[s.weight.name]}, RZ{k}, {int(prev)}"))
                elif not prev:
                    lines += for_all(n, [f"RZ{k}[_q] = 0;"])
                if not seeded and s.bias is not None and s.bias.trainable:
                    lines += self._bias(s.bias, "v", k, n)
            x, rx, n_in = self._in(s)
            if s.elementwise:
                fp = self.der.derivs[i]
                lines += for_all(n, [f"R{k}[_q] = RZ{k}[_q];" if fp == 1 else f"R{k}[_q] = ({self._elem(fp, k)}) * RZ{k}[_q];"])
            else:
                ins = {"x": (x, n_in), "u": (f"A{k}", n), "r": (rx, n_in)}
                lines += self._op_rows(s.op.jvp(symbols("x", n_in), symbols("u", n), symbols("r", n_in)), ins, f"R{k}", n, f"_j{k}_")
        return lines

    def scale(self):
        c = self.der.scale
        s = "1" if self.model.loss.reduction == "sum" else "(real)1 / batch"
        return [f"const real _s = {s}{'' if c == 1 else f' * ({self.pr.doprint(c)})'};"]

    def _vjp(self, s, g, dst, prefix):
        k, n = s.index + 1, s.units
        x, _, n_in = self._in(s)
        ins = {"x": (x, n_in), "u": (f"A{k}", n), "g": (g, n)}
        return self._op_rows(s.op.vjp(symbols("x", n_in), symbols("u", n), symbols("g", n)), ins, dst, n_in, prefix)

    def _rvjp(self, s, g, rg, dst):
        k, n = s.index + 1, s.units
        x, rx, n_in = self._in(s)
        has_r = s.dense or (self.lowest is not None and s.index - 1 >= self.lowest)
        rs = symbols("r", n_in) if has_r else [sp.S.Zero] * n_in
        ins = {"x": (x, n_in), "u": (f"A{k}", n), "g": (g, n), "q": (rg, n), **({"r": (rx, n_in)} if has_r else {})}
        exprs = s.op.rvjp(symbols("x", n_in), symbols("u", n), symbols("g", n), rs, symbols("q", n))
        return self._op_rows(exprs, ins, dst, n_in, f"_s{k}_")

    def output(self, second):
        s, L, n = self.layers[-1], self.L, self.layers[-1].units
        if self.der.output == "elementwise":
            body = [f"D{L}[_q] = _s * ({self._elem(self.der.delta_out, L)});"]
            if second:
                body.append(f"RD{L}[_q] = _s * ({self._elem(self.second.rdelta, L)}) * RZ{L}[_q];")
            return for_all(n, body)
        if self.der.output == "fused":
            h, rh = self._elem(self.der.delta_out, L), self._elem(self.second.rdelta, L)
            q = f"const size_t _q = (size_t)_r * {n} + _j;"
            first = ["real hs = 0;", *(["real rhs = 0;"] if second else []), f"for (int _j = 0; _j < {n}; ++_j) {{", f"    {q}",
                     f"    hs += {h};", *([f"    rhs += ({rh}) * R{L}[_q];"] if second else []), "}",
                     f"for (int _j = 0; _j < {n}; ++_j) {{", f"    {q}", f"    D{L}[_q] = _s * ({h} - A{L}[_q] * hs);",
                     *([f"    RD{L}[_q] = _s * (({rh}) * R{L}[_q] - R{L}[_q] * hs - A{L}[_q] * rhs);"] if second else []), "}"]
            return _rows(first)
        lines = for_all(n, [f"G{L}[_q] = _s * ({self._elem(self.der.delta_out, L)});"]) + self._vjp(s, f"G{L}", f"D{L}", f"_b{L}_")
        if second:
            lines += for_all(n, [f"RG{L}[_q] = _s * ({self._elem(self.second.rdelta, L)}) * R{L}[_q];"])
            lines += self._rvjp(s, f"G{L}", f"RG{L}", f"RD{L}")
        return lines

    def curvature_output(self):
        s, L, n = self.layers[-1], self.L, self.layers[-1].units
        lines = for_all(n, [f"RG{L}[_q] = _s * ({self._elem(self.second.curvature, L)}) * R{L}[_q];"])
        if s.elementwise:
            fp = self.der.derivs[s.index]
            return lines + for_all(n, [f"RD{L}[_q] = RG{L}[_q]{'' if fp == 1 else f' * ({self._elem(fp, L)})'};"])
        return lines + self._vjp(s, f"RG{L}", f"RD{L}", f"_g{L}_")

    def backward(self, second=False, to_input=False, gauss_newton=False, r_only=False, start=None):
        """Lines from D{L} (RD{L}) down, writing parameter entries into ``out`` (hv or grad layout).

        ``r_only``: only the R{.} lines (the D{k} and G{k} they read were computed before, once); ``start``: down to
        dense layer ``start`` only, R{.} zero below it and no parameter direction (r_forward's ``start``).
        """
        lines = []
        stop = start if start is not None else -1 if to_input else self.lowest
        lowest = start if start is not None else self.lowest
        for s in reversed(self.layers):
            k, i, n = s.index + 1, s.index, s.units
            if s.dense and not to_input:
                w, b = s.weight, s.bias
                if w.trainable:
                    lines.append(self._k("sg2_tn", f"batch, {n}, {s.fan_in}, RD{k}, A{k - 1}, out + {self.off[w.name]}"))
                    if not gauss_newton and i > lowest:
                        lines.append(self._k("sg2_tn", f"batch, {n}, {s.fan_in}, D{k}, R{k - 1}, out + {self.off[w.name]}"))
                if b is not None and b.trainable:
                    target = f"out[{self.off[b.name]} + _j]" if b.shape else f"out[{self.off[b.name]}]"
                    lines += _rows([f"for (int _j = 0; _j < {n}; ++_j) {{", f"    {target} += RD{k}[(size_t)_r * {n} + _j];", "}"])
            if i <= stop:
                break
            j = k - 1
            if s.dense:
                W = f"params + {self.off[s.weight.name]}"
                if gauss_newton:
                    lines.append(self._k("sg2_nn", f"batch, {n}, {s.fan_in}, RD{k}, {W}, RG{j}, 0"))
                else:
                    if not r_only:
                        lines.append(self._k("sg2_nn", f"batch, {n}, {s.fan_in}, D{k}, {W}, G{j}, 0"))
                    if second:
                        lines.append(self._k("sg2_nn", f"batch, {n}, {s.fan_in}, RD{k}, {W}, RG{j}, 0"))
                        if s.weight.trainable and start is None:
                            lines.append(self._k("sg2_nn", f"batch, {n}, {s.fan_in}, D{k}, v + {self.off[s.weight.name]}, RG{j}, 1"))
            else:
                body = [f"RG{j}[_q] = RD{k}[_q];"] if gauss_newton else ([] if r_only else [f"G{j}[_q] = D{k}[_q];"]) + (
                    [f"RG{j}[_q] = RD{k}[_q];"] if second else [])
                lines += for_all(s.fan_in, body)
            if i == 0:
                break
            lines += self._op_back(self.layers[i - 1], second, gauss_newton, r_only)
        return lines

    def _op_back(self, s, second, gauss_newton, r_only=False):
        k, i, n = s.index + 1, s.index, s.units
        if s.elementwise:
            fp, fpp = self.der.derivs[i], self.second.second[i]
            f = "" if fp == 1 else f" * ({self._elem(fp, k)})"
            if gauss_newton:
                return for_all(n, [f"RD{k}[_q] = RG{k}[_q]{f};"])
            body = [] if r_only else [f"D{k}[_q] = G{k}[_q]{f};"]
            if second:
                body.append(f"RD{k}[_q] = RG{k}[_q]{f}" + ("" if fpp == 0 else f" + G{k}[_q] * ({self._elem(fpp, k)}) * RZ{k}[_q]") + ";")
            return for_all(n, body)
        if gauss_newton:
            return self._vjp(s, f"RG{k}", f"RD{k}", f"_g{k}_")
        lines = [] if r_only else self._vjp(s, f"G{k}", f"D{k}", f"_b{k}_")
        return lines + (self._rvjp(s, f"G{k}", f"RG{k}", f"RD{k}") if second else [])

    # -- function bodies

    def _zero_out(self):
        return [f"for (int _i = 0; _i < {self.n_params}; ++_i) {{", "    out[_i] = 0;", "}"]

    def bodies(self):
        L = self.L
        fwd = self.forward()
        n_in, n_out = self.width[0], self.width[-1]
        gx = self.scale() + self.output(False) + self.backward(to_input=True)
        gx += for_all(n_in, ["gx[_q] = G0[_q];"])
        seed = for_all(n_in, [f"R0[_q] = (_q % {n_in}) == (size_t)_i;"])
        jac = [f"for (int _i = 0; _i < {n_in}; ++_i) {{"] + ["    " + ln for ln in seed]
        jac += ["    " + ln for ln in self.r_forward(seeded=True)]
        jac += ["    " + ln for ln in for_all(n_out, [f"J[_q * {n_in} + (size_t)_i] = R{L}[_q];"])] + ["}"]
        out = {"input_gradients": fwd + gx, "jacobian": fwd + jac}
        if self.lowest is None:
            out["hvp"] = out["gauss_newton_vp"] = self._zero_out()
        else:
            rf = self.r_forward()
            out["hvp"] = fwd + rf + self.scale() + self.output(True) + self._zero_out() + self.backward(second=True)
            out["gauss_newton_vp"] = (fwd + rf + self.scale() + self.curvature_output() + self._zero_out()
                                      + self.backward(second=True, gauss_newton=True))
        out = {name: self._declared(body) for name, body in out.items()}
        out["hessian"] = self.hessian() if self.n_params > UNROLL_LIMIT else \
            straight_hessian_body(self.model, self.layout, self.pr)
        return out

    def hessian(self):
        """The body of <name>_hessian for networks above UNROLL_LIMIT: one forward and first-order backward pass, then
        per trainable entry p (a weight W[u, j] or a bias b[u] of dense layer l) its column of H by the R-passes along
        the unit direction: R{z_l} = a_{l-1, j} (or 1) in unit u, R-forward above l, R-backward down to l only; the
        entries of layers >= l are stored in row and column p (H is symmetric: the rest come from lower layers'
        columns). ``out`` is the last N_PARAMS values of the work buffer."""
        if self.lowest is None:
            return []
        nt = sum(n for _, n in self.trained_ranges)
        pos, k0 = {}, 0
        for o, n in self.trained_ranges:
            pos[o] = k0
            k0 += n
        body = self.forward() + self.scale() + self.output(False) + self.backward(to_input=True)
        blocks = []  # where each dense layer's rows start in H: a row holds the entries of its layer and those above
        for s in self.layers:
            if not s.dense or not any(p is not None and p.trainable for p in (s.weight, s.bias)):
                continue
            li, k, n, fan = s.index, s.index + 1, s.units, s.fan_in
            first = min(self.off[p.name] for p in (s.weight, s.bias) if p is not None)
            column = self.r_forward(start=li) + self.output(True)
            column += [f"for (int _i = {first}; _i < {self.n_params}; ++_i) {{", "    out[_i] = 0;", "}"]
            column += self.backward(second=True, r_only=True, start=li)
            for o, size in self.trained_ranges:
                if o >= first:
                    column += [f"for (int _k = 0; _k < {size}; ++_k) {{",
                               f"    H[(size_t)_col * {nt} + {pos[o]} + _k] = out[{o} + _k];", "}"]
            blocks.append(min(pos[o] for o, _ in self.trained_ranges if o >= first))
            for p in (s.weight, s.bias):
                if p is None or not p.trainable:
                    continue
                o = self.off[p.name]
                if p is s.weight:
                    head = [f"for (int _wu = 0; _wu < {n}; ++_wu) {{", f"for (int _wj = 0; _wj < {fan}; ++_wj) {{",
                            f"const int _col = {pos[o]} + _wu * {fan} + _wj;"]
                    seed = f"(_q == _wu) ? A{k - 1}[(size_t)_r * {fan} + _wj] : 0"
                    tail = ["}", "}"]
                elif p.shape:
                    head = [f"for (int _wu = 0; _wu < {n}; ++_wu) {{", f"const int _col = {pos[o]} + _wu;"]
                    seed, tail = "_q == _wu", ["}"]
                else:
                    head, seed, tail = ["{", f"const int _col = {pos[o]};"], "1", ["}"]
                seeding = _rows([f"for (int _q = 0; _q < {n}; ++_q) {{", f"    RZ{k}[(size_t)_r * {n} + _q] = {seed};", "}"])
                body += head + ["    " + ln for ln in seeding + column] + tail
        return [f"real *restrict out = work + {self.workspace()};"] + self._declared(body + _mirrored(sorted(set(blocks)), nt))

    def hessian_workspace(self):
        return "0" if self.n_params <= UNROLL_LIMIT else f"{self.workspace()} + {self.n_params}"

    def buffers(self):
        """[(name, values per row of the batch, values besides)]: per-layer arrays, then the products' scratch."""
        names = []
        for k in range(1, self.L + 1):
            names += [(f"{p}{k}", self.width[k], 0) for p in ("Z", "A", "S", "RZ", "R", "D", "RD", "G", "RG")]
        names += [("R0", self.width[0], 0), ("G0", self.width[0], 0), ("RG0", self.width[0], 0)]
        weights = max((s.fan_in * s.units for s in self.layers if s.dense), default=0)
        return names + [("P", max(self.width), weights), ("T", 0, weights)]

    def workspace(self):
        return f"(size_t)batch * {sum(n for _, n, _ in self.buffers())} + {sum(c for _, _, c in self.buffers())}"

    def _declared(self, lines):
        text, decl, rows, fixed = "\n".join(lines), [], 0, 0
        for name, n, c in self.buffers():
            if re.search(rf"\b{name}\b", text):
                decl.append(f"real *restrict {name} = work + (size_t)batch * {rows} + {fixed};")
            rows, fixed = rows + n, fixed + c
        return decl + ["const real *restrict A0 = x;"] + lines

    def kernel_sources(self):
        return [KERNELS[k] for k in sorted(self.kernels)]

    def gemm_helpers(self):
        """The GEMM kernels of templates/c/symgrad_gemm.h that the second-order kernels call."""
        return {GEMM[k] for k in self.kernels}
