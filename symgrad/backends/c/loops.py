"""Loop C over the layer program: per layer three matrix products (templates/c/symgrad_gemm.h) and elementwise
loops; and the hybrid of that with straight-line code for one sample."""

import re
from functools import cached_property

import sympy as sp

from symgrad.backends.c import layers as c_layers
from symgrad.backends.c.unrolled import Unrolled, at, for_rows
from symgrad.core.derivation import ops_estimate
from symgrad.core.derive import derive
from symgrad.ops.activations import net as NET


def for_all(n, body):
    """``body`` inside a loop over the ``_q`` of a batch-by-``n`` array."""
    count = "(size_t)batch" if n == 1 else f"(size_t)batch * {n}"
    return [f"for (size_t _q = 0; _q < {count}; ++_q) {{"] + ["    " + line for line in body] + ["}"]


def for_units(n, body):
    """``body(j)`` over the units ``j`` of a row ``n`` wide (one unit: the statements for unit 0, no loop)."""
    if n == 1:
        return body(0)
    return [f"for (int _j = 0; _j < {n}; ++_j) {{"] + ["    " + line for line in body("_j")] + ["}"]


def plus(base, j):
    """``base + j``, or ``base`` for unit 0."""
    return base if j == 0 else f"{base} + {j}"


class Loops:
    """Function bodies of loops over the layer program."""

    def __init__(self, model, layout, pr):
        self.model, self.pr, self.dtype = model, pr, pr.dtype
        self.der = derive(model).layers
        self.steps = self.der.program.layers
        self.off = {p["name"]: p["offset"] for p in layout}
        self.sizes = [model.n_inputs] + [s.units for s in self.steps]
        self.kernels = set()  # the symgrad_gemm_* kernels called

    def helpers(self):
        """The symgrad_* helpers the bodies call (math helpers and GEMM kernels)."""
        return self.pr.helpers | self.kernels

    def _gemm(self, kind, args):
        """A call of the GEMM kernel ``symgrad_gemm_<kind>``, recorded."""
        self.kernels.add(f"symgrad_gemm_{kind}")
        return f"symgrad_gemm_{kind}({args});"

    def _keeps_z(self, s):
        """Whether layer s keeps its op's input in a Z buffer (the backward pass or an op's own code needs it)."""
        return self.der.keeps_net[s.index] or (not s.elementwise and (s.dense or hasattr(s.op, "c_forward_row")))

    @cached_property
    def _buffers(self):
        """Work-buffer layout: scratch T for a transposed weight matrix, then activations (and nets kept for the
        backward pass) per layer, then two deltas."""
        parts = {}
        for s in self.steps:
            parts[f"A{s.index + 1}"] = s.units
            if self._keeps_z(s):
                parts[f"Z{s.index + 1}"] = s.units
        width = max(self.sizes[1:])
        parts["D0"] = width
        parts["D1"] = width
        scratch = max((s.fan_in * s.units for s in self.steps if s.dense), default=0)
        offset, pos = [("T", "0", scratch)], [str(scratch)]  # T: a transposed weight matrix (symgrad_gemm_nt)
        for name, n in parts.items():
            offset.append((name, " + ".join(pos), n))
            pos.append("(size_t)batch" if n == 1 else f"(size_t)batch * {n}")
        return offset, " + ".join(pos)

    def _declared(self, lines):
        """The body with the work-buffer pointers it uses declared first."""
        text = "\n".join(lines)
        decl = [f"real *restrict {name} = work + {start};" for name, start, _ in self._buffers[0]
                if re.search(rf"\b{name}\b", text)]
        return decl + ["const real *restrict A0 = x;"] + lines

    def _z(self, layer):
        """The buffer of layer ``layer``'s nets: Z<layer> when kept, else its activations A<layer> hold them first."""
        return f"Z{layer}" if any(n == f"Z{layer}" for n, _, _ in self._buffers[0]) else f"A{layer}"

    def _bias(self, b, j):
        """`` + b[j]`` for the bias parameter ``b`` (a scalar bias shared by all units, or none)."""
        if b is None:
            return ""
        return f" + params[{self.off[b.name]}]" if not b.shape else f" + params[{plus(self.off[b.name], j)}]"

    def _row_op(self, s, z, a, first, head=()):
        """Per row: an op with C of its own (softmax) from the net input ``first`` (a C expression in _j)."""
        n = s.units
        exp = lambda arg: self.pr.helper("exp", arg)  # noqa: E731
        return for_rows([*head, f"real *restrict zr = {z} + (size_t)_r * {n};", f"real *restrict ar = {a} + (size_t)_r * {n};",
                         *s.op.c_forward_row(n, first, exp, f"log{self.pr.suffix}")])

    def _activate(self, z, a, n_out, b, act):
        """Per entry: net = z + bias (kept in z when z is not a), a = f(net)."""
        def entry(j):
            lines = [f"const size_t _q = {at('_r', n_out, j)};"] if n_out > 1 else []  # one unit: _q counts rows
            lines.append(f"const real net = {z}[_q]{self._bias(b, j)};")
            if z != a:
                lines.append(f"{z}[_q] = net;")
            return lines + [f"{a}[_q] = {self.pr.doprint(act.at(NET))};"]

        if n_out == 1:
            return for_all(1, entry(0))
        return for_rows(for_units(n_out, entry))

    def _forward_lines(self):
        lines = []
        for s in self.steps:
            k, n_in, n_out = s.index, s.fan_in, s.units
            z, a = self._z(k + 1), f"A{k + 1}"
            if not s.dense:
                lines.append(f"/* layer {k + 1} {s.layer.name!r} forward: {s.op.kind} ({n_in} -> {n_out}) */")
                if hasattr(s.op, "c_forward_row"):
                    lines += self._row_op(s, z, a, "xr[_j]", [f"const real *restrict xr = A{k} + (size_t)_r * {n_in};"])
                else:
                    lines += c_layers.forward_rows(s.op, n_in, n_out, f"A{k}", a, self.pr.renamed, k + 1)
                continue
            what = sp.sstr(s.op.at(NET)) if s.elementwise else s.op.kind
            lines.append(f"/* layer {k + 1} {s.layer.name!r} forward: net = a W^T + b ({n_in} -> {n_out}), out = {what} */")
            lines.append(self._gemm("nt", f"batch, {n_out}, {n_in}, A{k}, params + {self.off[s.weight.name]}, {z}, T"))
            if s.elementwise:
                lines += self._activate(z, a, n_out, s.bias, s.op)
            elif hasattr(s.op, "c_forward_row"):
                lines += self._row_op(s, z, a, f"zr[_j]{self._bias(s.bias, '_j')}")
            else:  # a parameter-free layer as the activation: the biased nets, then its rows
                if s.bias is not None:
                    lines += for_rows(for_units(n_out, lambda j: [f"{z}[{at('_r', n_out, j)}] += {self._bias(s.bias, j)[3:]};"]))
                lines += c_layers.forward_rows(s.op, n_out, n_out, z, a, self.pr.renamed, k + 1)
        return lines

    def _names(self, L):
        return {"y": f"A{L}[_q]", "t": "t[_q]", "net": f"{self._z(L)}[_q]", "logy": f"{self._z(L)}[_q]"}

    def _loss_lines(self):
        L = len(self.steps)
        c = self.der.scale
        scale = "1" if self.model.loss.reduction == "sum" else "(real)1 / batch"
        if c != 1:
            scale = f"{scale} * ({self.pr.doprint(c)})"
        term = self.pr.renamed(self._names(L)).doprint(self.der.loss_term)
        return ["real _E = 0;"] + for_all(self.sizes[-1], [f"_E += {term};"]) + [f"const real _s = {scale};"]

    def forward(self):
        L = len(self.steps)
        return self._declared(self._forward_lines() + for_all(self.sizes[-1], [f"y[_q] = A{L}[_q];"]))

    def loss(self):
        return self._declared(self._forward_lines() + self._loss_lines() + ["return _s * _E;"])

    def _zero_grads(self):
        """Frozen entries are 0; biases accumulate, so they start at 0 (trained weights are overwritten)."""
        lines = []
        for p in self.model.params:
            if not p.trainable or p.name.endswith(".bias"):
                if p.size == 1:
                    lines.append(f"grad[{self.off[p.name]}] = 0;")
                else:
                    lines += [f"for (int _i = 0; _i < {p.size}; ++_i) {{", f"    grad[{self.off[p.name]} + _i] = 0;", "}"]
        return lines

    def _op_input(self, s):
        """The buffer holding the input of layer s's op: its nets (dense) or the previous layer's outputs."""
        return self._z(s.index + 1) if s.dense else f"A{s.index}"

    def _delta_out(self, cp):
        """The delta of the output layer's op input (dE/dnet for a dense layer) into D0, scaled by _s."""
        L, n_out, der = len(self.steps), self.sizes[-1], self.der
        last = self.steps[-1]
        if der.output == "fused":
            return for_rows([f"real *restrict dr = D0 + (size_t)_r * {n_out};",
                             *last.op.c_delta_row(n_out, cp.doprint(der.delta_out), f"A{L}")])
        if der.output == "vjp":
            g = for_all(n_out, [f"D1[_q] = _s * ({cp.doprint(der.delta_out)});"])
            return g + c_layers.vjp_rows(last.op, last.units if last.dense else last.fan_in, n_out, self._op_input(last),
                                         f"A{L}", "D1", "D0", self.pr.renamed, L)
        return for_all(n_out, [f"D0[_q] = _s * ({cp.doprint(der.delta_out)});"])

    def _grads(self, s, d):
        """Layer s's weight and bias gradients from its delta d."""
        k, w, b = s.index, s.weight, s.bias
        n_in, n_o = s.fan_in, s.units
        lines = []
        if w.trainable:
            lines.append(self._gemm("tn", f"{n_o}, {n_in}, batch, {d}, A{k}, grad + {self.off[w.name]}") + "  /* dE/dW */")
        if b is not None and b.trainable:
            def accumulate(j):
                target = f"grad[{plus(self.off[b.name], j) if b.shape else self.off[b.name]}]"
                return [f"{target} += {d}[{at('_r', n_o, j)}];"]

            lines += for_rows(for_units(n_o, accumulate))
        return lines

    def _op_backward(self, s, g):
        """(lines, buffer) turning g = dE/d(outputs of layer s) into dE/d(input of its op)."""
        if not s.elementwise:
            d = "D1" if g == "D0" else "D0"
            n_in = s.units if s.dense else s.fan_in
            return c_layers.vjp_rows(s.op, n_in, s.units, self._op_input(s), f"A{s.index + 1}", g, d, self.pr.renamed,
                                     s.index + 1), d
        fp = self.der.derivs[s.index]
        if fp == 1:
            return [], g
        k = s.index + 1
        fpc = self.pr.renamed({"out": f"A{k}[_q]", "net": f"{self._z(k)}[_q]"}).doprint(fp)
        return for_all(s.units, [f"{g}[_q] *= {fpc};"]), g

    def backward(self):
        L = len(self.steps)
        lines = self._forward_lines() + self._loss_lines() + self._zero_grads()
        lowest = min((s.index for s in self.steps if s.dense and any(p.trainable for p in (s.weight, s.bias) if p)),
                     default=None)
        if lowest is None:
            return self._declared(lines + ["return _s * _E;"])
        lines.append(f"/* layer {L} {self.steps[-1].layer.name!r} backward: delta = dE/dnet */")
        lines += self._delta_out(self.pr.renamed(self._names(L)))
        d, k = "D0", L - 1
        while True:
            s = self.steps[k]
            if s.dense:
                lines += self._grads(s, d)
            if k == lowest:
                break
            prev = self.steps[k - 1]
            if s.dense:
                g = "D1" if d == "D0" else "D0"
                lines.append(f"/* layer {k} {prev.layer.name!r} backward: delta = (delta W) * f'(net) */")
                lines.append(self._gemm("nn", f"batch, {s.fan_in}, {s.units}, {d}, params + {self.off[s.weight.name]}, {g}"))
            else:
                g = d
                lines.append(f"/* layer {k} {prev.layer.name!r} backward: through {s.op.kind} */")
            more, d = self._op_backward(prev, g)
            lines += more
            k -= 1
        return self._declared(lines + ["return _s * _E;"])

    def workspace(self):
        return self._buffers[1]

    def count(self):
        return ops_estimate(self.model)


class Hybrid:
    """Loop code with the straight-line program in front for one sample: batch 1 takes the unrolled code
    (scalar, libm's exp: the shortest latency), other batches the loops (vectorised activations)."""

    def __init__(self, model, layout, pr):
        self.unrolled = Unrolled(model, layout, pr)
        self.loops = Loops(model, layout, pr)

    def helpers(self):
        """The symgrad_* helpers both kinds of code call."""
        return self.unrolled.helpers() | self.loops.helpers()

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
