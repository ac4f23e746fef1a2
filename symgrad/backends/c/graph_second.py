"""C for a graph network's second-order functions: the R-operator over the graph, op by op, as the NumPy module runs it.

Buffers, batch-major in the work array after the fixed-size scratch: per layer k ``Z{k}`` and ``A{k}`` (forward; a
layer without activation writes ``A{k}`` only, a flatten is its input's memory), ``RZ{k}`` and ``R{k}`` = R{A{k}}
(each op's ``c_jvp``), ``G{k}`` = dE/dA{k}, ``RG{k}`` = R{G{k}} (a fork's branches write ``G{k}_{consumer}_{pos}`` and
are added; an add or flatten hands its own on), ``D{k}`` = G{k} f'(Z{k}) and ``RD{k}`` = RG{k} f'(Z{k}) + G{k} f''(Z{k})
RZ{k} (each op's ``c_rbackward``); ``Q`` holds a bilinear layer's second term before it is added, and a recurrent layer
keeps R of its steps in buffers of its own. The Jacobian is reverse mode (one backward per output) or forward mode (one
R-forward per input), whichever runs fewer. No function allocates: ``<name>_second_workspace_size(batch)`` values of
work come from the caller.
"""

import re

from symgrad.backends.c.graph import Context, _plain
from symgrad.backends.c.loops import for_all
from symgrad.core.derive import derive
from symgrad.core.second import output_rdelta
from symgrad.errors import SpecError
from symgrad.ops.activations import net as NET
from symgrad.ops.activations import out as OUT
from symgrad.ops.losses import y as Y

OVERWRITES = ("lstm", "gru")  # their first-order backward writes its gate deltas over the forward's gate values


class SecondContext(Context):
    """The graph C Context with per-sample temporaries (``temp``: the largest size asked for under each name)."""

    def __init__(self):
        super().__init__()
        self.temp_sizes = {}

    def temp(self, name, size):
        """The per-sample temporary ``name`` of at least ``size`` values per sample."""
        self.temp_sizes[name] = max(self.temp_sizes.get(name, 0), size)
        return name


def _rows(body):
    return ["for (int _r = 0; _r < batch; ++_r) {"] + ["    " + line for line in body] + ["}"]


def _per_row(n, sums, assign):
    """Per row of n values: the sums ``{name: expr}`` over the row, then the ``assign`` lines for each entry (``_q``)."""
    q = f"    const size_t _q = (size_t)_r * {n} + _j;"
    body = []
    if sums:
        body += [f"real {s} = 0;" for s in sums] + [f"for (int _j = 0; _j < {n}; ++_j) {{", q]
        body += [f"    {s} += {e};" for s, e in sums.items()] + ["}"]
    return _rows(body + [f"for (int _j = 0; _j < {n}; ++_j) {{", q] + ["    " + a for a in assign] + ["}"])


class GraphSecondC:
    """Function bodies of a graph network's second-order C functions (the model, the parameter layout, a CPrinter)."""

    def __init__(self, model, layout, pr):
        self.model, self.pr = model, pr
        self.der = der = derive(model).graph
        self.nodes, self.L = der.nodes, len(der.nodes)
        act = self.nodes[-1].activation
        if act is not None and act.is_layer and act.kind != "softmax":
            raise SpecError(f"second-order functions in C need an elementwise or softmax output layer, not {act.kind!r}",
                            "--second-order")
        self.off = {p["name"]: p["offset"] for p in layout}
        self.n_params = sum(p["size"] for p in layout)
        fprime = None if der.output != "elementwise" else 1 if act is None else act.derivative_in_out().subs(OUT, Y)
        self.rdelta = output_rdelta(der.output, der.delta_out, fprime, model.loss)
        self.curvature = model.loss.second_derivative()
        self.cx, self.sizes = SecondContext(), {}
        self.index = {"x": 0, **{n.name: k + 1 for k, n in enumerate(self.nodes)}}
        self.a, self.z, self.r, self.rz = {0: "A0"}, {}, {0: "R0"}, {}
        for k, node in enumerate(self.nodes, 1):
            if node.op.view:
                j = self.index[node.inputs[0]]
                self.a[k] = self.z[k] = self.a[j]
                self.r[k] = self.rz[k] = self.r[j]
                continue
            self.a[k], self.r[k] = f"A{k}", f"R{k}"
            self.z[k], self.rz[k] = (f"A{k}", f"R{k}") if _plain(node) else (f"Z{k}", f"RZ{k}")

    # -- buffers and names

    def _buf(self, name, size):
        if name != "A0":
            self.sizes.setdefault(name, size)
        return name

    def _size(self, j):
        return self.model.n_inputs if j == 0 else self.nodes[j - 1].size

    def _params(self, node):
        return [f"params + {self.off[p.name]}" for p in node.params]

    def _elem(self, expr, k, extra=None):
        names = {"out": f"{self.a[k]}[_q]", "net": f"{self.z.get(k, self.a[k])}[_q]", "y": f"{self.a[k]}[_q]",
                 "t": "t[_q]", "logy": f"{self.z.get(k, self.a[k])}[_q]", **(extra or {})}
        return self.pr.renamed(names).doprint(expr)

    # -- passes

    def forward(self):
        """Z{k} and A{k} of every layer (no activation in place: f' and f'' read both)."""
        lines = []
        for k, node in enumerate(self.nodes, 1):
            if node.op.view:
                lines.append(f"/* {node.name}: {node.op.describe()} (the same memory) */")
                continue
            n, act = node.size, node.activation
            ins = [self.a[self.index[s]] for s in node.inputs]
            z, a = self._buf(self.z[k], n), self._buf(self.a[k], n)
            lines += node.op.c_forward(node, ins, self._params(node), z, self.cx)
            if _plain(node):
                continue
            if act.is_layer:
                row = [f"real *restrict zr = {z} + (size_t)_r * {n};", f"real *restrict ar = {a} + (size_t)_r * {n};",
                       *act.c_forward_row(n, "zr[_j]", lambda arg: self.pr.helper("exp", arg), f"log{self.pr.suffix}")]
                lines += _rows(row)
            else:
                lines += for_all(n, [f"{a}[_q] = {self.pr.renamed({'net': f'{z}[_q]'}).doprint(act.at(NET))};"])
        return lines

    def _r(self, j, seeded):
        if j == 0:
            return self._buf("R0", self.model.n_inputs) if seeded else None
        return self.r[j] if seeded or self.der.needs_delta[j - 1] else None

    def r_forward(self, seeded=False):
        """RZ{k} and R{k} along the direction v, or from R0 with no parameter direction (``seeded``)."""
        lines = []
        for k, node in enumerate(self.nodes, 1):
            if node.op.view or not (seeded or self.der.needs_delta[k - 1]):
                continue
            n, act = node.size, node.activation
            rins = [self._r(self.index[s], seeded) for s in node.inputs]
            vps = [None if seeded or not p.trainable else f"v + {self.off[p.name]}" for p in node.params]
            ins = [self.a[self.index[s]] for s in node.inputs]
            rz, r = self._buf(self.rz[k], n), self._buf(self.r[k], n)
            lines += node.op.c_jvp(node, ins, rins, self._params(node), vps, self.z[k], rz, self.cx)
            if _plain(node):
                continue
            if act.is_layer:  # softmax: R{a} = a (R{z} - sum a R{z})
                a = self.a[k]
                lines += _per_row(n, {"s": f"{a}[_q] * {rz}[_q]"}, [f"{r}[_q] = {a}[_q] * ({rz}[_q] - s);"])
            else:
                lines += for_all(n, [f"{r}[_q] = ({self._elem(self.der.derivs[k - 1], k)}) * {rz}[_q];"])
        return lines

    def scale(self):
        c = self.der.scale
        s = "1" if self.model.loss.reduction == "sum" else "(real)1 / batch"
        return [f"const real _s = {s}{'' if c == 1 else f' * ({self.pr.doprint(c)})'};"]

    def _softmax_vjp(self, g, d):
        a, n = self.a[self.L], self.nodes[-1].size
        return _per_row(n, {"s": f"{g}[_q] * {a}[_q]"}, [f"{d}[_q] = {a}[_q] * ({g}[_q] - s);"])

    def output(self, second):
        """D{L} = dE/dZ{L} and, with ``second``, RD{L} = R{D{L}}."""
        L, n, der = self.L, self.nodes[-1].size, self.der
        d, rd, a, r = self._buf(f"D{L}", n), f"RD{L}", self.a[L], self.r[L]
        if second:
            self._buf(rd, n)
        h, rh = self._elem(der.delta_out, L), self._elem(self.rdelta, L)
        if der.output == "elementwise":
            return for_all(n, [f"{d}[_q] = _s * ({h});"] + ([f"{rd}[_q] = _s * ({rh}) * {self.rz[L]}[_q];"] if second else []))
        if der.output == "fused":  # R{h - y sum h}, h = h(y): R{h} - R{y} sum h - y sum R{h}
            sums = {"hs": h, **({"rhs": f"({rh}) * {r}[_q]"} if second else {})}
            body = [f"{d}[_q] = _s * ({h} - {a}[_q] * hs);"]
            if second:
                body.append(f"{rd}[_q] = _s * (({rh}) * {r}[_q] - {r}[_q] * hs - {a}[_q] * rhs);")
            return _per_row(n, sums, body)
        g = self._buf(f"G{L}", n)
        lines = for_all(n, [f"{g}[_q] = _s * ({h});"]) + self._softmax_vjp(g, d)
        if second:  # R of the softmax vjp: R{a} (g - g.a) + a (R{g} - (R{g}.a + g.R{a}))
            rg = self._buf(f"RG{L}", n)
            lines += for_all(n, [f"{rg}[_q] = _s * ({rh}) * {r}[_q];"])
            lines += _per_row(n, {"s1": f"{g}[_q] * {a}[_q]", "s2": f"{rg}[_q] * {a}[_q] + {g}[_q] * {r}[_q]"},
                              [f"{rd}[_q] = {r}[_q] * ({g}[_q] - s1) + {a}[_q] * ({rg}[_q] - s2);"])
        return lines

    def _through_output(self, g, d):
        """Lines turning ``g`` = dE/dA{L} into ``d`` = dE/dZ{L} through the output activation."""
        L, n, node = self.L, self.nodes[-1].size, self.nodes[-1]
        if _plain(node):
            return for_all(n, [f"{d}[_q] = {g}[_q];"])
        if node.activation.is_layer:
            return self._softmax_vjp(g, d)
        return for_all(n, [f"{d}[_q] = {g}[_q] * ({self._elem(self.der.derivs[L - 1], L)});"])

    def curvature_output(self):
        """RD{L} for Gauss-Newton: the loss curvature times R{y}, sent back through the output activation."""
        L, n = self.L, self.nodes[-1].size
        rg, rd = self._buf(f"RG{L}", n), self._buf(f"RD{L}", n)
        lines = for_all(n, [f"{rg}[_q] = _s * ({self._elem(self.curvature, L)}) * {self.r[L]}[_q];"])
        return lines + self._through_output(rg, rd)

    def backward(self, mode):
        """(lines, [dE/dx contributions]) from D{L} (and RD{L}) down: ``mode`` "hvp" (D and RD, R of the parameter
        gradients into out), "gn" (the first-order backward of RD, into out) or "input" (D down to the input)."""
        der, index, cx = self.der, self.index, self.cx
        to_input, lines, parts = mode == "input", [], {}
        for k in range(self.L, 0, -1):
            node = self.nodes[k - 1]
            if not (to_input or der.needs_delta[k - 1]):
                continue
            if k < self.L:
                more, d, rd = self._gather(k, parts.pop(k), mode)
                lines += more
            else:
                d, rd = f"D{k}", f"RD{k}"
            dins, rdins = [], []
            for pos, s in enumerate(node.inputs):
                j = index[s]
                if not (to_input or (j > 0 and der.needs_delta[j - 1])):
                    dins.append(None)
                    rdins.append(None)
                    continue
                if node.op.passes_delta:
                    g, rg = d, rd
                else:
                    g = self._buf(f"G{j}_{k}_{pos}", self._size(j)) if mode != "gn" else None
                    rg = self._buf(f"RG{j}_{k}_{pos}", self._size(j)) if mode != "input" else None
                dins.append(g)
                rdins.append(rg)
                parts.setdefault(j, []).append((g, rg))
            if node.op.passes_delta:
                continue
            rdps = [f"out + {self.off[p.name]}" if p.trainable and not to_input else None for p in node.params]
            ins, ps = [self.a[index[s]] for s in node.inputs], self._params(node)
            if mode == "hvp":
                rins = [self._r(index[s], False) for s in node.inputs]
                vps = [f"v + {self.off[p.name]}" if p.trainable else None for p in node.params]
                lines += node.op.c_rbackward(node, ins, rins, ps, vps, self.z[k], self.rz[k], d, rd, dins, rdins, rdps, cx)
            elif mode == "gn" and any(v is not None for v in rdins + rdps):
                lines += node.op.c_backward(node, ins, ps, self.z[k], rd, rdins, rdps, cx)
            elif mode == "input" and any(v is not None for v in dins):
                lines += node.op.c_backward(node, ins, ps, self.z[k], d, dins, [None] * len(ps), cx)
        return lines, [g for g, _ in parts.get(0, [])]

    def _sum(self, name, parts, n):
        if len(parts) == 1:
            return [], parts[0]
        name = self._buf(name, n)
        return for_all(n, [f"{name}[_q] = {' + '.join(f'{p}[_q]' for p in parts)};  /* a fork: the branches add */"]), name

    def _gather(self, k, parts, mode):
        """(lines, D{k}, RD{k}) from the contributions to G{k} (and RG{k})."""
        node, n = self.nodes[k - 1], self.nodes[k - 1].size
        lines, g, rg = [], None, None
        if mode != "gn":
            lines, g = self._sum(f"G{k}", [p for p, _ in parts], n)
        if mode != "input":
            more, rg = self._sum(f"RG{k}", [p for _, p in parts], n)
            lines += more
        if _plain(node):
            return lines, g, rg
        fp = self._elem(self.der.derivs[k - 1], k)
        d, rd, body = self._buf(f"D{k}", n) if g else None, self._buf(f"RD{k}", n) if rg else None, []
        if g:
            body.append(f"{d}[_q] = {g}[_q] * ({fp});")
        if mode == "gn":
            body.append(f"{rd}[_q] = {rg}[_q] * ({fp});")
        elif mode == "hvp":
            fpp = node.activation.second_derivative_in_out()
            extra = "" if fpp == 0 else f" + {g}[_q] * ({self._elem(fpp, k)}) * {self.rz[k]}[_q]"
            body.append(f"{rd}[_q] = {rg}[_q] * ({fp}){extra};  /* R{{g}} f'(z) + g f''(z) R{{z}} */")
        return lines + for_all(n, body), d, rd

    # -- function bodies

    def bodies(self):
        model, L = self.model, self.L
        n_in, n_out = model.n_inputs, model.n_outputs
        fwd = self.forward()
        back, gx = self.backward("input")
        out = {"input_gradients": fwd + self.scale() + self.output(False) + back
               + for_all(n_in, [f"gx[_q] = {' + '.join(f'{g}[_q]' for g in gx)};"])}
        if n_out <= n_in:  # reverse mode: one backward per output
            seed, _ = self._buf(f"G{L}", n_out), self._buf(f"D{L}", n_out)
            body = for_all(n_out, [f"{seed}[_q] = (_q % {n_out}) == (size_t)_o;"]) + self._through_output(seed, f"D{L}")
            back, gx = self.backward("input")
            total = " + ".join(f"{g}[_q]" for g in gx)
            body += back + for_all(n_in, [f"J[((_q / {n_in}) * {n_out} + (size_t)_o) * {n_in} + _q % {n_in}] = {total};"])
            again = any(node.kind in OVERWRITES for node in self.nodes)  # each output's backward needs the gates again
            jac = [f"for (int _o = 0; _o < {n_out}; ++_o) {{"] + ["    " + ln for ln in (fwd if again else []) + body] + ["}"]
            jac = jac if again else fwd + jac
        else:  # forward mode: one R-forward per input
            body = for_all(n_in, [f"{self._buf('R0', n_in)}[_q] = (_q % {n_in}) == (size_t)_i;"]) + self.r_forward(True)
            body += for_all(n_out, [f"J[_q * {n_in} + (size_t)_i] = {self.r[L]}[_q];"])
            jac = fwd + [f"for (int _i = 0; _i < {n_in}; ++_i) {{"] + ["    " + ln for ln in body] + ["}"]
        out["jacobian"] = jac
        zero = [f"for (int _i = 0; _i < {self.n_params}; ++_i) {{", "    out[_i] = 0;", "}"]
        if not any(p.trainable for p in model.params):
            out["hvp"] = out["gauss_newton_vp"] = zero
        else:
            rf = self.r_forward()
            out["hvp"] = fwd + rf + self.scale() + self.output(True) + zero + self.backward("hvp")[0]
            out["gauss_newton_vp"] = fwd + rf + self.scale() + self.curvature_output() + zero + self.backward("gn")[0]
        self._layout()
        return {name: self._declared(body) for name, body in out.items()}

    def _layout(self):
        cx = self.cx
        self.starts, fixed, per = [], 0, 0
        for name, n in sorted(cx.scratch_sizes.items()):
            self.starts.append((name, str(fixed)))
            fixed += n
        for name, n in {**self.sizes, **cx.batch_sizes, **cx.temp_sizes}.items():
            self.starts.append((name, f"{fixed} + (size_t)batch * {per}"))
            per += n
        self.total = f"{fixed} + (size_t)batch * {per}"

    def _declared(self, lines):
        text = "\n".join(lines)
        decl = [f"real *restrict {name} = work + {start};" for name, start in self.starts if re.search(rf"\b{name}\b", text)]
        decl += ["const real *restrict A0 = x;"] if re.search(r"\bA0\b", text) else []
        return decl + ([] if re.search(r"\bbatch\b", "\n".join(decl) + text) else ["(void)batch;"]) + lines

    def workspace(self):
        return self.total

    def helpers(self):
        """The static C helpers the functions call."""
        return set(self.cx.kernels)
