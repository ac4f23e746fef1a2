"""Convolution layers (``conv1d``, ``conv2d``): PyTorch's cross-correlation, its parameters and rules.

Forward: ``z[o, p] = sum_{c, k} W[o, c, k] x[c, s*p + dl*k - pad] + b[o]`` for every output position p.
Backward, with d = dE/dz: the weight gradient is the cross-correlation of the input with the delta,
``dE/dW[o, c, k] = sum_p d[o, p] x[c, s*p + dl*k - pad]``; the bias gradient sums the delta over
positions; the input delta is the full convolution of the delta with the flipped kernel,
``dE/dx[c, i] = sum_{o, p, k: s*p + dl*k - pad = i} d[o, p] W[o, c, k]`` (stride and dilation
place the delta's entries s apart and the kernel's dl apart).
"""

import itertools
import math

import numpy as np
import sympy as sp

from symgrad.checks import INIT_SCHEMES, choice_message, finite_array, flatten_names, names
from symgrad.limits import check
from symgrad.ops.dense import Param
from symgrad.ops.tensor import TensorOp, c_block, c_terms, c_window, pair, show, spatial_input
from symgrad.sizes import CONV_GEMM_MIN_WORK


class Conv(TensorOp):
    """conv1d / conv2d: ``out_channels`` kernels of ``kernel_size`` slid over the input with stride, padding, dilation."""

    dims = 2
    keys = {"out_channels": None, "kernel_size": None, "stride": 1, "padding": 0, "dilation": 1, "bias": "unit",
            "weight": None, "bias_value": None, "weight_names": None, "bias_names": None, "freeze": (), "init": None}
    has_activation = True
    kernels = ("_conv", "_conv_backward")
    rule = ("the weight gradient is the cross-correlation of the layer's input with its delta; the input delta is "
            "the full convolution of the delta with the flipped kernel; the bias gradient sums the delta over positions")

    def build(self, key, in_shapes, init, taken):
        (shape,) = in_shapes
        d = self.dims
        spatial_input(self, shape, d, key)
        oc = self.out_channels
        if isinstance(oc, bool) or not isinstance(oc, int) or oc < 1:
            raise self.error("out_channels must be a positive integer", f"{key}.out_channels")
        if self.kernel_size is None:
            raise self.error("kernel_size is required", f"{key}.kernel_size")
        k = pair(self.kernel_size, d, f"{key}.kernel_size", self, "kernel_size")
        s = pair(self.stride, d, f"{key}.stride", self, "stride")
        dl = pair(self.dilation, d, f"{key}.dilation", self, "dilation")
        if self.padding == "same":
            if s != (1,) * d:
                raise self.error("padding = \"same\" needs stride 1 (as PyTorch)", f"{key}.padding")
            pad = tuple((t // 2, t - t // 2) for t in (dli * (ki - 1) for ki, dli in zip(k, dl)))
        elif isinstance(self.padding, str):
            raise self.error(f"padding must be an integer, a list of {d} integers or \"same\", got {self.padding!r}",
                             f"{key}.padding")
        else:
            pad = tuple((p, p) for p in pair(self.padding, d, f"{key}.padding", self, "padding", 0))
        out = tuple((n + lo + hi - dli * (ki - 1) - 1) // si + 1
                    for n, (lo, hi), ki, si, dli in zip(shape[1:], pad, k, s, dl))
        if any(o < 1 for o in out):
            raise self.error(f"input {show(shape)}, kernel {show(k)} with padding {[p[0] for p in pad]} and dilation "
                             f"{show(dl)} gives an empty output", f"{key}.kernel_size")
        check("SYMGRAD_MAX_PARAMS", oc * math.prod(out), f"the output size of layer {self.name!r}", f"{key}.out_channels")
        if self.bias not in ("unit", "none"):
            raise self.error(choice_message("bias", self.bias, ("unit", "none")), f"{key}.bias")
        self.k, self.s, self.dl, self.pad = k, s, dl, pad
        return (oc,) + out, self._params(key, shape[0], init)

    def _params(self, key, channels, default_init):
        name, oc, k = self.name, self.out_channels, self.k
        shape = (oc, channels) + k
        size = math.prod(shape)
        check("SYMGRAD_MAX_PARAMS", size, f"the weight count of layer {name!r}", f"{key}.out_channels")
        scheme = self.init or default_init
        if scheme not in INIT_SCHEMES:
            raise self.error(choice_message("init scheme", scheme, INIT_SCHEMES), f"{key}.init")
        freeze = [self.freeze] if isinstance(self.freeze, str) else list(self.freeze)
        if set(freeze) - {"weight", "bias"} or not all(isinstance(f, str) for f in freeze):
            raise self.error("freeze lists 'weight' and/or 'bias'", f"{key}.freeze")
        value = None if self.weight is None else finite_array(self.weight, f"{key}.weight", shape)
        default = [f"{name}_w" + "_".join(str(i + 1) for i in idx) for idx in np.ndindex(*shape)]
        given = None if self.weight_names is None else flatten_names(self.weight_names, shape, f"{key}.weight_names")
        wnames = names(given, size, f"{key}.weight_names", default)
        fan_in, fan_out = channels * int(np.prod(k)), oc * int(np.prod(k))
        params = [Param(f"{name}.weight", shape, value, tuple(wnames), "weight" not in freeze, scheme, fan_in, fan_out)]
        if self.bias == "unit":
            bval = None if self.bias_value is None else finite_array(self.bias_value, f"{key}.bias_value", (oc,))
            bnames = names(self.bias_names, oc, f"{key}.bias_names", [f"{name}_b{j + 1}" for j in range(oc)])
            params.append(Param(f"{name}.bias", (oc,), bval, tuple(bnames), "bias" not in freeze, "zeros", fan_in, fan_out))
        elif self.bias_value is not None:
            raise self.error("the layer has bias = \"none\"", f"{key}.bias_value")
        return params

    def describe(self):
        pad = [p[0] for p in self.pad] if all(lo == hi for lo, hi in self.pad) else "same"
        plural = "" if self.out_channels == 1 else "s"
        return (f"{self.kind}({self.out_channels} channel{plural}, kernel {show(self.k)}, stride {show(self.s)}, "
                f"padding {pad}, dilation {show(self.dl)}, bias {self.bias})")

    def sympy_forward(self, xs, params):
        (x,) = xs
        w = params[0]
        b = params[1] if len(params) > 1 else None
        c_in, size = x.shape[0], x.shape[1:]
        padded = np.full(tuple(n + lo + hi for n, (lo, hi) in zip(size, self.pad)), sp.S.Zero, dtype=object)
        padded = np.stack([padded.copy() for _ in range(c_in)])
        padded[(slice(None),) + tuple(slice(lo, lo + n) for (lo, _), n in zip(self.pad, size))] = x
        out_size = tuple((n + lo + hi - dl * (k - 1) - 1) // s + 1
                         for n, (lo, hi), k, s, dl in zip(size, self.pad, self.k, self.s, self.dl))
        z = np.empty((self.out_channels,) + out_size, dtype=object)
        for o in range(self.out_channels):
            for p in itertools.product(*map(range, out_size)):
                terms = [w[(o, c) + k] * padded[(c,) + tuple(si * pi + dli * ki for si, pi, dli, ki in
                                                            zip(self.s, p, self.dl, k))]
                         for c in range(c_in) for k in itertools.product(*map(range, self.k))]
                z[(o,) + p] = sp.Add(*terms) + (b[o] if b is not None else 0)
        return z

    def _args(self):
        return f"{self.s!r}, {self.pad!r}, {self.dl!r}"

    def numpy_forward(self, node, ins, ps, out):
        b = ps[1] if len(ps) > 1 else "None"
        return [f"{out}, {out}_cols = _conv({ins[0]}, {ps[0]}, {b}, {self._args()})  # {node.name}: {self.describe()}"]

    def numpy_backward(self, node, ins, ps, out, d, dins, dps):
        dx = dins[0] or "_"
        dw = dps[0] or "_"
        db = (dps[1] if len(dps) > 1 else None) or "_"
        need_b = len(dps) > 1 and dps[1] is not None
        shape = f"{ins[0]}.shape"
        return [f"{dx}, {dw}, {db} = _conv_backward({d}, {out}_cols, {ps[0]}, {shape}, {self._args()}, "
                f"{dins[0] is not None}, {need_b})  # {node.name}"]

    second_kernels = ("_conv_jvp", "_conv_rbackward")

    def numpy_jvp(self, node, ins, rins, ps, vps, out, rout):
        """R{z} = conv(R{x}, W) + conv(x, V) + V_b (bilinear in x and W)."""
        vw, vb = vps[0], vps[1] if len(vps) > 1 else None
        return [f"{rout}, {rout}_cols = _conv_jvp({out}, {rins[0]}, {out}_cols, {ps[0]}, {vw}, {vb}, {self._args()})"
                f"  # {node.name}: R{{z}}"]

    def numpy_rbackward(self, node, ins, rins, ps, vps, out, rout, d, rd, dins, rdins, rdps):
        """dx, R{dx} = col2im(W^T R{d} + V^T d), R{dW} = R{d} cols^T + d R{cols}^T, R{db} = sum R{d}."""
        need_b = len(rdps) > 1 and rdps[1] is not None
        names = [dins[0] or "_", rdins[0] or "_", rdps[0] or "_", (rdps[1] if need_b else None) or "_"]
        rcols = f"{rout}_cols" if rins[0] is not None else None
        return [f"{', '.join(names)} = _conv_rbackward({d}, {rd}, {out}_cols, {rcols}, {ps[0]}, {vps[0]}, "
                f"{ins[0]}.shape, {self._args()}, {dins[0] is not None}, {rdps[0] is not None}, {need_b})  # {node.name}"]

    # -- C: loops for small layers, im2col and one GEMM per sample for large ones (sizes.CONV_GEMM_MIN_WORK)

    def _c_sizes(self, node):
        """(output positions, c * kernel entries, whether the layer takes the im2col + GEMM path)."""
        plane, ck = int(np.prod(node.shape[1:])), node.in_shapes[0][0] * int(np.prod(self.k))
        return plane, ck, self.out_channels * plane * ck >= CONV_GEMM_MIN_WORK

    def _c_window(self, node):
        return c_window(node.in_shapes[0], node.shape, self.k, self.s, self.pad, self.dl)

    def c_forward(self, node, ins, ps, out, cx):
        b = ps[1] if len(ps) > 1 else "0"
        plane, ck, gemm = self._c_sizes(node)
        if gemm:
            call = cx.call("symgrad_conv_forward_gemm", f"&g, batch, {ins[0]}, {ps[0]}, {b}, {out}, "
                           f"{cx.scratch('COLS', ck * plane)}")
        else:
            call = cx.call("symgrad_conv_forward", f"&g, batch, {ins[0]}, {ps[0]}, {b}, {out}")
        return c_block(f"{node.name}: {self.describe()}", self._c_window(node), [call])

    def c_backward(self, node, ins, ps, out, d, dins, dps, cx):
        dx, dw = dins[0] or "0", dps[0] or "0"
        db = (dps[1] if len(dps) > 1 else None) or "0"
        plane, ck, gemm = self._c_sizes(node)
        if gemm:
            scratch = (f"{cx.scratch('COLS', ck * plane)}, {cx.scratch('TMP', self.out_channels * ck)}, "
                       f"{cx.scratch('T', ck * plane)}")
            call = cx.call("symgrad_conv_backward_gemm", f"&g, batch, {ins[0]}, {ps[0]}, {d}, {dx}, {dw}, {db}, {scratch}")
        else:
            call = cx.call("symgrad_conv_backward", f"&g, batch, {ins[0]}, {ps[0]}, {d}, {dx}, {dw}, {db}")
        return c_block(f"{node.name} backward: {self.rule}", self._c_window(node), [call])

    # -- C second order: conv is bilinear in x and W, so each R-pass calls the first-order kernels once per term

    def _c_fwd(self, node, x, w, b, z, cx):
        plane, ck, gemm = self._c_sizes(node)
        if gemm:
            return cx.call("symgrad_conv_forward_gemm", f"&g, batch, {x}, {w}, {b}, {z}, {cx.scratch('COLS', ck * plane)}")
        return cx.call("symgrad_conv_forward", f"&g, batch, {x}, {w}, {b}, {z}")

    def _c_bwd(self, node, x, w, d, dx, dw, db, cx):
        plane, ck, gemm = self._c_sizes(node)
        if gemm:
            scratch = (f"{cx.scratch('COLS', ck * plane)}, {cx.scratch('TMP', self.out_channels * ck)}, "
                       f"{cx.scratch('T', ck * plane)}")
            return cx.call("symgrad_conv_backward_gemm", f"&g, batch, {x}, {w}, {d}, {dx}, {dw}, {db}, {scratch}")
        return cx.call("symgrad_conv_backward", f"&g, batch, {x}, {w}, {d}, {dx}, {dw}, {db}")

    def c_jvp(self, node, ins, rins, ps, vps, out, rout, cx):
        """R{z} = conv(R{x}, W) + conv(x, V) + v_b."""
        vb = vps[1] if len(vps) > 1 else None
        terms = ([(rins[0], ps[0], "0")] if rins[0] is not None else []) + (
            [(ins[0], vps[0], vb or "0")] if vps[0] is not None else [])
        calls = [lambda dst, x=x, w=w, b=b: [self._c_fwd(node, x, w, b, dst, cx)] for x, w, b in terms]
        lines = c_terms(calls, rout, node.size, cx)
        if vb is not None and vps[0] is None:
            plane = int(np.prod(node.shape[1:]))
            lines.append(cx.call("symgrad_add_bias", f"batch, {self.out_channels}, {plane}, {vb}, {rout}"))
        comment = f"{node.name}: R{{z}} = conv(R{{x}}, W) + conv(x, V) + v_b"
        return c_block(comment, self._c_window(node), lines) if terms else [f"/* {comment} */", *lines]

    def c_rbackward(self, node, ins, rins, ps, vps, out, rout, d, rd, dins, rdins, rdps, cx):
        """dx, R{dx} = conv_x(W, R{d}) + conv_x(V, d), R{dW} = conv_w(x, R{d}) + conv_w(R{x}, d), R{db} = sum R{d}."""
        rdb = rdps[1] if len(rdps) > 1 else None
        calls = [self._c_bwd(node, ins[0], ps[0], d, dins[0], "0", "0", cx)] if dins[0] is not None else []
        if rdins[0] is not None or rdps[0] is not None or rdb is not None:
            calls.append(self._c_bwd(node, ins[0], ps[0], rd, rdins[0] or "0", rdps[0] or "0", rdb or "0", cx))
        if rdins[0] is not None and vps[0] is not None:
            n = int(np.prod(node.in_shapes[0]))
            calls += [self._c_bwd(node, ins[0], vps[0], d, cx.temp("Q", n), "0", "0", cx),
                      cx.call("symgrad_add_to", f"(size_t)batch * {n}, Q, {rdins[0]}")]
        if rdps[0] is not None and rins[0] is not None:
            nw = int(np.prod(node.params[0].shape))
            calls += [self._c_bwd(node, rins[0], ps[0], d, "0", cx.scratch("P", nw), "0", cx),
                      cx.call("symgrad_add_to", f"{nw}, P, {rdps[0]}")]
        return c_block(f"{node.name}: R of the backward (bilinear: one kernel call per term)", self._c_window(node), calls)


class Conv1d(Conv):
    kind = "conv1d"
    dims = 1


class Conv2d(Conv):
    kind = "conv2d"
    dims = 2
