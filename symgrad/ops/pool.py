"""Pooling layers (``maxpool1d/2d``, ``avgpool1d/2d``): window maxima and means, and where their deltas go.

Max pooling routes each window's delta to the entry its maximum came from (on ties the first in the
window, as PyTorch), and sums where windows overlap. Average pooling spreads a window's delta evenly,
``dE/dx = sum over windows containing x of d / |window|``, padding counted as zeros (PyTorch's default
``count_include_pad=True``); ``ceil_mode`` is not offered (PyTorch's default, floor). A pooling layer
takes an activation, applied to the pooled values (``relu(maxpool(x))``).
"""

import itertools

import numpy as np
import sympy as sp

from symgrad.ops.tensor import TensorOp, c_block, c_window, c_zero, pair, show, spatial_input


class Pool(TensorOp):
    """A pooling layer over ``kernel_size`` windows, ``stride`` (default kernel_size) apart, with ``padding``."""

    dims = 2
    has_activation = True
    keys = {"kernel_size": None, "stride": None, "padding": 0}
    fill = 0.0

    def build(self, key, in_shapes, init, taken):
        (shape,) = in_shapes
        d = self.dims
        spatial_input(self, shape, d, key)
        if self.kernel_size is None:
            raise self.error("kernel_size is required", f"{key}.kernel_size")
        k = pair(self.kernel_size, d, f"{key}.kernel_size", self, "kernel_size")
        s = k if self.stride is None else pair(self.stride, d, f"{key}.stride", self, "stride")
        p = pair(self.padding, d, f"{key}.padding", self, "padding", 0)
        if any(2 * pi > ki for pi, ki in zip(p, k)):
            raise self.error(f"padding {list(p)} is more than half the kernel {show(k)} (as PyTorch refuses)",
                             f"{key}.padding")
        out = tuple((n + 2 * pi - ki) // si + 1 for n, pi, ki, si in zip(shape[1:], p, k, s))
        if any(o < 1 for o in out):
            raise self.error(f"input {show(shape)}, kernel {show(k)} with padding {list(p)} gives an empty output",
                             f"{key}.kernel_size")
        self.k, self.s, self.pad = k, s, tuple((pi, pi) for pi in p)
        return (shape[0],) + out, []

    def describe(self):
        return f"{self.kind}(kernel {show(self.k)}, stride {show(self.s)}, padding {[p[0] for p in self.pad]})"

    def _args(self):
        return f"{self.k!r}, {self.s!r}, {self.pad!r}"

    def c_forward(self, node, ins, ps, out, cx):
        window = c_window(node.in_shapes[0], node.shape, self.k, self.s, self.pad)
        return c_block(f"{node.name}: {self.describe()}", window,
                       [cx.call(f"symgrad_{self.c_kernel}_forward", f"&g, batch, {ins[0]}, {out}")])

    def c_backward(self, node, ins, ps, out, d, dins, dps, cx):
        if dins[0] is None:
            return []
        window = c_window(node.in_shapes[0], node.shape, self.k, self.s, self.pad)
        args = f"&g, batch, {ins[0]}, {d}, {dins[0]}" if self.c_kernel == "maxpool" else f"&g, batch, {d}, {dins[0]}"
        return c_block(f"{node.name} backward: {self.rule}", window, [cx.call(f"symgrad_{self.c_kernel}_backward", args)])

    def c_jvp(self, node, ins, rins, ps, vps, out, rout, cx):
        """R{z}: max pooling reads R{x} at the forward's maxima, average pooling averages R{x} (both linear in R{x})."""
        if rins[0] is None:
            return c_zero(rout, node.size)
        window = c_window(node.in_shapes[0], node.shape, self.k, self.s, self.pad)
        call = (cx.call("symgrad_maxpool_jvp", f"&g, batch, {ins[0]}, {rins[0]}, {rout}") if self.c_kernel == "maxpool"
                else cx.call("symgrad_avgpool_forward", f"&g, batch, {rins[0]}, {rout}"))
        return c_block(f"{node.name}: R of {self.kind}", window, [call])

    def windows(self, x):
        """{output index: [the input entries (SymPy) of its window]} for a per-sample object array x."""
        size = x.shape[1:]
        padded = np.full((x.shape[0],) + tuple(n + 2 * lo for n, (lo, _) in zip(size, self.pad)), self.fill, dtype=object)
        padded[(slice(None),) + tuple(slice(lo, lo + n) for (lo, _), n in zip(self.pad, size))] = x
        out = tuple((n + 2 * lo - k) // s + 1 for n, (lo, _), k, s in zip(size, self.pad, self.k, self.s))
        return {(c,) + p: [padded[(c,) + tuple(si * pi + ki for si, pi, ki in zip(self.s, p, k))]
                           for k in itertools.product(*map(range, self.k))]
                for c in range(x.shape[0]) for p in itertools.product(*map(range, out))}

    def sympy_forward(self, xs, params):
        wins = self.windows(xs[0])
        shape = tuple(max(i[a] for i in wins) + 1 for a in range(len(next(iter(wins)))))
        z = np.empty(shape, dtype=object)
        for idx, entries in wins.items():
            z[idx] = self.reduce(entries)
        return z


class MaxPool(Pool):
    kernels = ("_maxpool", "_maxpool_backward")
    c_kernel = "maxpool"
    fill = sp.S.NegativeInfinity
    rule = ("max pooling routes each window's delta to the entry its maximum came from (the first on ties, as "
            "PyTorch); overlapping windows add")

    def reduce(self, entries):
        return sp.Max(*entries)

    def numpy_forward(self, node, ins, ps, out):
        return [f"{out}, {out}_arg = _maxpool({ins[0]}, {self._args()})  # {node.name}: {self.describe()}"]

    def numpy_backward(self, node, ins, ps, out, d, dins, dps):
        if dins[0] is None:
            return []
        return [f"{dins[0]} = _maxpool_backward({d}, {out}_arg, {ins[0]}.shape, {self._args()})  # {node.name}"]

    second_kernels = ("_maxpool_jvp",)

    def numpy_jvp(self, node, ins, rins, ps, vps, out, rout):
        """R{z} = R{x} at each window's maximum (the forward's argmax fixes the routing)."""
        return [f"{rout} = _maxpool_jvp({rins[0]}, {out}_arg, {self._args()})  # {node.name}: R at the forward's maxima"]


class AvgPool(Pool):
    kernels = ("_avgpool", "_avgpool_backward")
    c_kernel = "avgpool"
    fill = sp.S.Zero
    rule = "average pooling spreads each window's delta evenly over its entries (padding counts as zeros)"

    def reduce(self, entries):
        return sp.Add(*entries) / len(entries)

    def numpy_forward(self, node, ins, ps, out):
        return [f"{out} = _avgpool({ins[0]}, {self._args()})  # {node.name}: {self.describe()}"]

    def numpy_backward(self, node, ins, ps, out, d, dins, dps):
        if dins[0] is None:
            return []
        return [f"{dins[0]} = _avgpool_backward({d}, {ins[0]}.shape, {self._args()})  # {node.name}"]

    def numpy_jvp(self, node, ins, rins, ps, vps, out, rout):
        """R{z} = the window means of R{x} (average pooling is linear)."""
        return [f"{rout} = _avgpool({rins[0]}, {self._args()})  # {node.name}: R of average pooling (linear)"]


class MaxPool1d(MaxPool):
    kind, dims = "maxpool1d", 1


class MaxPool2d(MaxPool):
    kind, dims = "maxpool2d", 2


class AvgPool1d(AvgPool):
    kind, dims = "avgpool1d", 1


class AvgPool2d(AvgPool):
    kind, dims = "avgpool2d", 2
