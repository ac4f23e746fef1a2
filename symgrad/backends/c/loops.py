"""Loop C over the layer program: per layer three matrix products (templates/c/symgrad_gemm.h) and elementwise
loops; and the hybrid of that with straight-line code for one sample."""

import re

import sympy as sp

from symgrad.backends.c.unrolled import Unrolled, at, for_rows
from symgrad.core.derivation import derive_layers, ops_estimate
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
        self.der = derive_layers(model)
        self.off = {p["name"]: p["offset"] for p in layout}
        self.sizes = [model.n_inputs] + [lay.units for lay in model.layers]
        self.kernels = set()  # the symgrad_gemm_* kernels called

    def helpers(self):
        """The symgrad_* helpers the bodies call (math helpers and GEMM kernels)."""
        return self.pr.helpers | self.kernels

    def _gemm(self, kind, args):
        """A call of the GEMM kernel ``symgrad_gemm_<kind>``, recorded."""
        self.kernels.add(f"symgrad_gemm_{kind}")
        return f"symgrad_gemm_{kind}({args});"

    def _buffers(self):
        """Work-buffer layout: scratch T for a transposed weight matrix, then activations (and nets kept for the
        backward pass) per layer, then two deltas."""
        parts = {}
        for k, lay in enumerate(self.model.layers):
            parts[f"A{k + 1}"] = lay.units
            if self.der.keeps_net[k] or lay.activation.is_softmax:
                parts[f"Z{k + 1}"] = lay.units
        width = max(self.sizes[1:])
        parts["D0"] = width
        parts["D1"] = width
        scratch = max(a * b for a, b in zip(self.sizes, self.sizes[1:]))
        offset, pos = [("T", "0", scratch)], [str(scratch)]  # T: a transposed weight matrix (symgrad_gemm_nt)
        for name, n in parts.items():
            offset.append((name, " + ".join(pos), n))
            pos.append("(size_t)batch" if n == 1 else f"(size_t)batch * {n}")
        return offset, " + ".join(pos)

    def _declared(self, lines):
        """The body with the work-buffer pointers it uses declared first."""
        text = "\n".join(lines)
        decl = [f"real *restrict {name} = work + {start};" for name, start, _ in self._buffers()[0]
                if re.search(rf"\b{name}\b", text)]
        return decl + ["const real *restrict A0 = x;"] + lines

    def _z(self, layer):
        """The buffer of layer ``layer``'s nets: Z<layer> when kept, else its activations A<layer> hold them first."""
        return f"Z{layer}" if any(n == f"Z{layer}" for n, _, _ in self._buffers()[0]) else f"A{layer}"

    def _bias(self, b, j):
        """`` + b[j]`` for the bias parameter ``b`` (a scalar bias shared by all units, or none)."""
        if b is None:
            return ""
        return f" + params[{self.off[b.name]}]" if not b.shape else f" + params[{plus(self.off[b.name], j)}]"

    def _softmax(self, z, a, n_out, b):
        """Per row: add the bias, then a = softmax(net) and z = log softmax(net), both stable."""
        return for_rows([
            f"real *restrict zr = {z} + (size_t)_r * {n_out};",
            f"real *restrict ar = {a} + (size_t)_r * {n_out};",
            f"for (int _j = 0; _j < {n_out}; ++_j) {{", f"    zr[_j] = zr[_j]{self._bias(b, '_j')};", "}",
            "real m = zr[0];",
            f"for (int _j = 1; _j < {n_out}; ++_j) {{", "    m = zr[_j] > m ? zr[_j] : m;", "}",
            "real s = 0;",
            f"for (int _j = 0; _j < {n_out}; ++_j) {{", f"    ar[_j] = {self.pr.helper('exp', 'zr[_j] - m')};",
            "    s += ar[_j];", "}",
            f"const real logs = log{self.pr.suffix}(s);",
            f"for (int _j = 0; _j < {n_out}; ++_j) {{", "    ar[_j] /= s;",
            "    zr[_j] = zr[_j] - m - logs;  /* log softmax, stable */", "}",
        ])

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
        for k, lay in enumerate(self.model.layers):
            n_in, n_out = self.sizes[k], self.sizes[k + 1]
            w, b = self.model.layer_params(k)
            act = lay.activation
            z, a = self._z(k + 1), f"A{k + 1}"
            lines.append(f"/* layer {k + 1} {lay.name!r} forward: net = a W^T + b ({n_in} -> {n_out}), "
                         f"out = {'softmax' if act.is_softmax else sp.sstr(act.at(NET))} */")
            lines.append(self._gemm("nt", f"batch, {n_out}, {n_in}, A{k}, params + {self.off[w.name]}, {z}, T"))
            lines += self._softmax(z, a, n_out, b) if act.is_softmax else self._activate(z, a, n_out, b, act)
        return lines

    def _names(self, L):
        return {"y": f"A{L}[_q]", "t": "t[_q]", "net": f"{self._z(L)}[_q]", "logy": f"{self._z(L)}[_q]"}

    def _loss_lines(self):
        L = len(self.model.layers)
        c = self.der.scale
        scale = "1" if self.model.loss.reduction == "sum" else "(real)1 / batch"
        if c != 1:
            scale = f"{scale} * ({self.pr.doprint(c)})"
        term = self.pr.renamed(self._names(L)).doprint(self.der.loss_term)
        return ["real _E = 0;"] + for_all(self.sizes[-1], [f"_E += {term};"]) + [f"const real _s = {scale};"]

    def forward(self):
        L = len(self.model.layers)
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

    def _delta_out(self, cp):
        """The output layer's delta = dE/dnet into D0 (scaled by _s)."""
        L, n_out, der = len(self.model.layers), self.sizes[-1], self.der
        if der.softmax:
            return for_rows([
                f"real *restrict dr = D0 + (size_t)_r * {n_out};", "real hs = 0;",
                f"for (int _j = 0; _j < {n_out}; ++_j) {{", f"    const size_t _q = (size_t)_r * {n_out} + _j;",
                f"    dr[_j] = {cp.doprint(der.delta_out)};", "    hs += dr[_j];", "}",
                f"for (int _j = 0; _j < {n_out}; ++_j) {{",
                f"    dr[_j] = _s * (dr[_j] - A{L}[(size_t)_r * {n_out} + _j] * hs);", "}",
            ])
        return for_all(n_out, [f"D0[_q] = _s * ({cp.doprint(der.delta_out)});"])

    def _layer_backward(self, k, d, lowest):
        """(lines, delta buffer of layer k) for layer k + 1's weight and bias gradients and layer k's delta."""
        model = self.model
        w, b = model.layer_params(k)
        n_in, n_o = self.sizes[k], self.sizes[k + 1]
        lines = []
        if w.trainable:
            lines.append(self._gemm("tn", f"{n_o}, {n_in}, batch, {d}, A{k}, grad + {self.off[w.name]}") + "  /* dE/dW */")
        if b is not None and b.trainable:
            def accumulate(j):
                target = f"grad[{plus(self.off[b.name], j) if b.shape else self.off[b.name]}]"
                return [f"{target} += {d}[{at('_r', n_o, j)}];"]

            lines += for_rows(for_units(n_o, accumulate))
        if k == lowest:
            return lines, d
        nd = "D1" if d == "D0" else "D0"
        lines.append(f"/* layer {k} {model.layers[k - 1].name!r} backward: delta = (delta W) * f'(net) */")
        lines.append(self._gemm("nn", f"batch, {n_in}, {n_o}, {d}, params + {self.off[w.name]}, {nd}"))
        fp = self.der.derivs[k - 1]
        if fp != 1:
            fpc = self.pr.renamed({"out": f"A{k}[_q]", "net": f"{self._z(k)}[_q]"}).doprint(fp)
            lines += for_all(n_in, [f"{nd}[_q] *= {fpc};"])
        return lines, nd

    def backward(self):
        model = self.model
        L = len(model.layers)
        lines = self._forward_lines() + self._loss_lines() + self._zero_grads()
        lowest = min((k for k in range(L) if any(p.trainable for p in model.layer_params(k) if p is not None)), default=None)
        if lowest is None:
            return self._declared(lines + ["return _s * _E;"])
        lines.append(f"/* layer {L} {model.layers[-1].name!r} backward: delta = dE/dnet */")
        lines += self._delta_out(self.pr.renamed(self._names(L)))
        d = "D0"
        for k in range(L - 1, lowest - 1, -1):
            more, d = self._layer_backward(k, d, lowest)
            lines += more
        return self._declared(lines + ["return _s * _E;"])

    def workspace(self):
        return self._buffers()[1]

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
