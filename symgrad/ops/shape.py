"""Layers that reshape or join values: ``flatten``, ``add`` (residual merges) and ``concat``.

Their rules are the simplest of all and the ones graphs turn on: flatten's delta is the output delta
reshaped back; an ``add`` hands its delta unchanged to every input (so a fork — a value read by two
layers — receives the sum of its branches' deltas: the residual rule); a ``concat`` hands each input
its own slice of the delta. ``add`` and ``concat`` take an activation (``relu(a + b)``, the residual
block); the delta they hand on is then dE/d(sum) = dE/d(out) * f'(sum). ``flatten`` and ``transpose``
take none: they only rearrange their input (in C a flatten is its input's memory), and an elementwise
activation commutes with them, so it belongs on the layer they read.
"""

import numpy as np

from symgrad.ops.tensor import TensorOp, c_zero, show

REARRANGES = (" (it only rearranges its input; an elementwise activation on the layer it reads gives the same "
              "values)")


class Flatten(TensorOp):
    """(C, ...) -> (C*...) in PyTorch's (row-major) order."""

    kind = "flatten"
    why_no_activation = REARRANGES
    fresh_grads = False
    view = True  # row-major (batch, C, ...) is already (batch, C*...)
    passes_delta = True
    rule = "flatten's delta is the output delta reshaped back to the input's shape"

    def build(self, key, in_shapes, init, taken):
        return (int(np.prod(in_shapes[0])),), []

    def sympy_forward(self, xs, params):
        return xs[0].reshape(-1)

    def numpy_forward(self, node, ins, ps, out):
        return [f"{out} = {ins[0]}.reshape({ins[0]}.shape[0], -1)  # {node.name}: flatten"]

    def numpy_backward(self, node, ins, ps, out, d, dins, dps):
        if dins[0] is None:
            return []
        return [f"{dins[0]} = {d}.reshape({ins[0]}.shape)  # {node.name}: flatten backward"]

    def numpy_jvp(self, node, ins, rins, ps, vps, out, rout):
        """R{out} = R{x} flattened (linear)."""
        return [f"{rout} = {rins[0]}.reshape({rins[0]}.shape[0], -1)  # {node.name}: R of flatten"]


class Merge(TensorOp):
    """A layer of two or more inputs (``inputs = ["a", "b"]``)."""

    merges = True
    has_activation = True
    fresh_grads = False


class Add(Merge):
    """out = a + b + ...: inputs of the same shape."""

    kind = "add"
    passes_delta = True
    rule = "an add hands its delta unchanged to every input; a value read by several layers sums their deltas"

    def build(self, key, in_shapes, init, taken):
        first = in_shapes[0]
        for s in in_shapes[1:]:
            if s != first:
                raise self.error(f"add needs inputs of one shape, got {', '.join(show(t) for t in in_shapes)}",
                                 f"{key}.inputs")
        return first, []

    def sympy_forward(self, xs, params):
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out

    def numpy_forward(self, node, ins, ps, out):
        return [f"{out} = {' + '.join(ins)}  # {node.name}: add"]

    def c_forward(self, node, ins, ps, out, cx):
        return [f"for (size_t _q = 0; _q < (size_t)batch * {node.size}; ++_q) {{  /* {node.name}: add */",
                f"    {out}[_q] = {' + '.join(f'{i}[_q]' for i in ins)};", "}"]

    def numpy_backward(self, node, ins, ps, out, d, dins, dps):
        return [f"{di} = {d}  # {node.name}: add passes its delta on" for di in dins if di is not None]

    def numpy_jvp(self, node, ins, rins, ps, vps, out, rout):
        """R{a + b + ...} = R{a} + R{b} + ... (inputs with no R left out)."""
        return [f"{rout} = {' + '.join(r for r in rins if r is not None)}  # {node.name}: R of add"]

    def c_jvp(self, node, ins, rins, ps, vps, out, rout, cx):
        """R{a + b + ...} = R{a} + R{b} + ... (inputs with no R left out)."""
        terms = [f"{r}[_q]" for r in rins if r is not None]
        if not terms:
            return c_zero(rout, node.size)
        return [f"for (size_t _q = 0; _q < (size_t)batch * {node.size}; ++_q) {{  /* {node.name}: R of add */",
                f"    {rout}[_q] = {' + '.join(terms)};", "}"]


class Concat(Merge):
    """Inputs joined along the first per-sample axis (channels, or features of flat inputs)."""

    kind = "concat"
    rule = "a concat hands each input its own slice of the delta"

    def build(self, key, in_shapes, init, taken):
        rest = {s[1:] for s in in_shapes}
        if len(rest) != 1:
            raise self.error("concat needs inputs that differ only in their first axis, got "
                             f"{', '.join(show(t) for t in in_shapes)}", f"{key}.inputs")
        self.bounds = np.cumsum([0] + [s[0] for s in in_shapes]).tolist()
        return (self.bounds[-1],) + in_shapes[0][1:], []

    def sympy_forward(self, xs, params):
        return np.concatenate(xs, axis=0)

    def numpy_forward(self, node, ins, ps, out):
        return [f"{out} = np.concatenate(({', '.join(ins)},), axis=1)  # {node.name}: concat"]

    def numpy_backward(self, node, ins, ps, out, d, dins, dps):
        return [f"{di} = {d}[:, {lo}:{hi}]  # {node.name}: concat backward"
                for di, lo, hi in zip(dins, self.bounds, self.bounds[1:]) if di is not None]

    def numpy_jvp(self, node, ins, rins, ps, vps, out, rout):
        """R{concat(a, b, ...)} = concat(R{a}, R{b}, ...), zeros for an input with no R."""
        parts = [r if r is not None else f"np.zeros_like({x})" for r, x in zip(rins, ins)]
        return [f"{rout} = np.concatenate(({', '.join(parts)},), axis=1)  # {node.name}: R of concat"]

    def _c_slices(self, node):
        """(per-sample offset, per-sample size) of each input's slice of the output."""
        inner = int(np.prod(node.shape[1:]))
        return [(lo * inner, (hi - lo) * inner) for lo, hi in zip(self.bounds, self.bounds[1:])]

    def c_forward(self, node, ins, ps, out, cx):
        n = node.size
        return [f"/* {node.name}: concat */"] + [
            cx.call("symgrad_copy_block", f"batch, {size}, {src}, {size}, {out} + {at}, {n}")
            for src, (at, size) in zip(ins, self._c_slices(node))]

    def c_jvp(self, node, ins, rins, ps, vps, out, rout, cx):
        """R{concat(a, b, ...)} = concat(R{a}, R{b}, ...), zeros for an input with no R."""
        n, lines = node.size, [f"/* {node.name}: R of concat */"]
        for r, (at, size) in zip(rins, self._c_slices(node)):
            lines += (c_zero(rout, size, at, n) if r is None else
                      [cx.call("symgrad_copy_block", f"batch, {size}, {r}, {size}, {rout} + {at}, {n}")])
        return lines

    def c_backward(self, node, ins, ps, out, d, dins, dps, cx):
        n = node.size
        return [f"/* {node.name} backward: {self.rule} */"] + [
            cx.call("symgrad_copy_block", f"batch, {size}, {d} + {at}, {n}, {di}, {size}")
            for di, (at, size) in zip(dins, self._c_slices(node)) if di is not None]

class Transpose(TensorOp):
    """(A, B) -> (B, A): a conv1d output (channels, length) read as a sequence (steps, features), and back."""

    kind = "transpose"
    why_no_activation = REARRANGES
    fresh_grads = False
    rule = "transpose's delta is the output delta transposed back"

    def build(self, key, in_shapes, init, taken):
        (shape,) = in_shapes
        if len(shape) != 2:
            raise self.error(f"transpose swaps the two axes of a (channels, length) or (steps, features) value, "
                             f"got {show(shape)}", f"{key}.input")
        return shape[::-1], []

    def sympy_forward(self, xs, params):
        return xs[0].T

    def numpy_forward(self, node, ins, ps, out):
        return [f"{out} = {ins[0]}.swapaxes(1, 2)  # {node.name}: transpose"]

    def numpy_backward(self, node, ins, ps, out, d, dins, dps):
        if dins[0] is None:
            return []
        return [f"{dins[0]} = {d}.swapaxes(1, 2)  # {node.name}: transpose backward"]

    def numpy_jvp(self, node, ins, rins, ps, vps, out, rout):
        """R{x^T} = R{x}^T (linear)."""
        return [f"{rout} = {rins[0]}.swapaxes(1, 2)  # {node.name}: R of transpose"]

    def c_forward(self, node, ins, ps, out, cx):
        rows, cols = node.in_shapes[0]
        return [f"/* {node.name}: transpose */", cx.call("symgrad_transpose", f"batch, {rows}, {cols}, {ins[0]}, {out}")]

    def c_jvp(self, node, ins, rins, ps, vps, out, rout, cx):
        """R{x^T} = R{x}^T (linear)."""
        rows, cols = node.in_shapes[0]
        return [f"/* {node.name}: R of transpose */", cx.call("symgrad_transpose", f"batch, {rows}, {cols}, {rins[0]}, {rout}")]

    def c_backward(self, node, ins, ps, out, d, dins, dps, cx):
        rows, cols = node.shape
        return [f"/* {node.name} backward: {self.rule} */",
                cx.call("symgrad_transpose", f"batch, {rows}, {cols}, {d}, {dins[0]}")]
