"""Layers on shaped values (graph networks): the op interface every shaped layer kind follows.

A graph network's value at a layer has a per-sample shape: ``(C, L)`` / ``(C, H, W)`` for signals
and images, ``(T, F)`` for sequences, ``(n,)`` for flat vectors. A :class:`TensorOp` states, in one
place, everything about its kind:

* ``build``: its output shape from its input shapes (or a SpecError naming the layer and the
  shapes), and its parameters as :class:`~symgrad.ops.dense.Param` (PyTorch names and layouts);
* ``sympy_forward``: its output as SymPy expressions of its inputs and parameters, element by
  element — the definition the report derives rules from on a small instance, and the reference
  the tests check the array code against;
* ``numpy_forward`` / ``numpy_backward``: lines of NumPy code calling the kernels of
  :mod:`symgrad.backends.numpy.kernels` (each op names the kernels it calls);
* ``c_forward`` / ``c_backward``: lines of C calling the static kernels of templates/c/symgrad_conv.h
  and symgrad_rnn.h (and symgrad_gemm.h) through a context that records each kernel, scratch buffer and
  per-batch buffer of the layer's own they use (:class:`symgrad.backends.c.graph.Context`); ``view`` and
  ``passes_delta`` say when no C is needed;
* ``numpy_jvp`` / ``numpy_rbackward``: lines for the second-order functions (``--second-order``), Pearlmutter's
  R-operator op by op: R of the output from R of the inputs and the direction on the parameters, and R of the
  input deltas and parameter gradients from R of the output delta (``second_kernels`` names their kernels);
* ``c_jvp`` / ``c_rbackward``: the same R-passes as C lines over the kernels of the first-order C (a bilinear
  op calls them once per term, the direction in the weight's place or R of the input in the input's);
* ``rule``: the backward rule in words, for reports and generated docstrings.

An activation (``activation = "tanh"`` on a dense, convolution, pooling, add or concat layer: the kinds
whose ``has_activation`` is True) is applied by the graph backend after the op, elementwise, as for
dense chains; ``numpy_backward`` and ``c_backward`` receive dE/d(op output), the activation's derivative
already applied, and so does every input of an op that ``passes_delta``.
"""

from dataclasses import dataclass, field

import numpy as np

from symgrad.errors import SpecError


@dataclass
class Node:
    """One built layer of a graph network: its op, producers, shapes, parameters and activation."""

    name: str
    op: object  # TensorOp
    inputs: tuple  # producer names, "x" for the network input
    in_shapes: tuple  # per-sample shapes of the inputs
    shape: tuple  # per-sample shape of the output
    params: list = field(default_factory=list)  # Params, in the op's order (weight, bias, ...)
    activation: object = None  # Activation applied after the op, or None

    @property
    def size(self):
        return int(np.prod(self.shape))

    @property
    def kind(self):
        return self.op.kind


class TensorOp:
    """A layer kind on shaped values; subclasses set ``kind``, ``keys`` and the methods below."""

    kind = ""
    keys = {}  # spec key -> default, besides kind, name, input/inputs and (if has_activation) activation
    has_activation = False
    why_no_activation = ""  # the reason an error gives, where has_activation is False
    merges = False  # takes ``inputs = [...]`` (two or more) instead of ``input``
    rule = ""  # the backward rule in words
    kernels = ()  # names of the NumPy kernels its code calls

    def __init__(self, name, **args):
        self.name = name
        allowed = self.allowed()
        for key in args:
            if key not in allowed and key in ("activation", "activation_params"):
                raise SpecError(f"layer {name!r}: {self.kind} takes no activation{self.why_no_activation}", key)
            if key not in allowed:
                raise SpecError(f"layer {name!r}: {self.kind} has no argument {key!r} "
                                f"(its arguments: {', '.join(sorted(allowed))})", key)
        self.args = {**allowed, **args}

    @classmethod
    def allowed(cls):
        """{argument: default}: the kind's own keys, input or inputs, and activation where it has one."""
        base = {"inputs": None} if cls.merges else {"input": None}
        if cls.has_activation:
            base.update(activation="identity", activation_params=None)
        return {**base, **cls.keys}

    def __getattr__(self, key):
        args = self.__dict__.get("args", {})
        if key in args:
            return args[key]
        raise AttributeError(key)

    def error(self, message, key=None):
        """A SpecError about this layer (``key`` is the spec key under the layer)."""
        return SpecError(f"layer {self.name!r}: {message}", key)

    def build(self, key, in_shapes, init, taken):
        """(output shape, [Param]) for these per-sample input shapes; raises SpecError."""
        raise NotImplementedError

    def describe(self):
        """One line for docstrings: the kind and its arguments."""
        args = ", ".join(f"{k}={v!r}" for k, v in self.args.items() if k in self.keys and v != self.keys[k])
        return f"{self.kind}({args})" if args else self.kind

    def sympy_forward(self, xs, params):
        """The output (an object ndarray of SymPy expressions) for inputs ``xs`` (object ndarrays, one per
        input) and ``params`` (object ndarrays in the op's parameter order)."""
        raise NotImplementedError

    def numpy_forward(self, node, ins, ps, out):
        """Lines assigning ``out`` (batch, *node.shape) from the input arrays ``ins`` and parameters ``ps``.

        Values the backward pass needs are assigned to names starting with ``out`` + "_".
        """
        raise NotImplementedError

    def numpy_backward(self, node, ins, ps, out, d, dins, dps):
        """Lines assigning ``dins[i]`` = dE/d(input i) and ``dps[j]`` = dE/d(param j) from ``d`` = dE/d(out).

        A None entry is not needed (the network input, a frozen parameter). The input gradients may be
        views of ``d`` (ops whose ``fresh_grads`` is False): the caller never writes into them.
        """
        raise NotImplementedError

    def numpy_jvp(self, node, ins, rins, ps, vps, out, rout):
        """Lines assigning ``rout`` = R{out}, the output's derivative along a direction: ``rins[i]`` = R{input i}
        and ``vps[j]`` = the direction of parameter j (None entries are zero), with the forward's values (``out``_...).

        Values the R-backward needs are assigned to names starting with ``rout`` + "_".
        """
        raise NotImplementedError

    def numpy_rbackward(self, node, ins, rins, ps, vps, out, rout, d, rd, dins, rdins, rdps):
        """Lines assigning ``dins[i]`` = dE/d(input i), ``rdins[i]`` = R{dE/d(input i)} and ``rdps[j]`` = R{dE/d(param j)}
        from ``d`` = dE/d(out) and ``rd`` = R{d} (None entries are not needed).

        This default serves parameter-free ops that are linear in their inputs once the forward is fixed (max
        pooling routes by the forward's argmax): R of the backward is the backward applied to R{d}.
        """
        return (self.numpy_backward(node, ins, ps, out, d, dins, [None] * len(ps))
                + self.numpy_backward(node, ins, ps, out, rd, rdins, [None] * len(ps)))

    second_kernels = ()  # names of the NumPy kernels its R-passes call

    fresh_grads = True  # numpy_backward's input gradients are new arrays (not views of d)
    view = False  # C: the output is the input's memory (no forward code); such an op takes no activation
    passes_delta = False  # C: every input's delta is dE/d(op output) itself (no backward code)

    def c_forward(self, node, ins, ps, out, cx):
        """C lines writing ``out`` (batch, *node.shape) from the input buffers ``ins`` and parameter pointers
        ``ps``; ``cx.call`` records the kernels called, ``cx.scratch`` the scratch buffers used, ``cx.buffer`` the
        layer's own buffers kept for the backward pass."""
        raise NotImplementedError

    def c_backward(self, node, ins, ps, out, d, dins, dps, cx):
        """C lines writing ``dins[i]`` = dE/d(input i) and ``dps[j]`` = dE/d(param j) whole from the buffer ``d``
        = dE/d(out); a None entry is not needed."""
        raise NotImplementedError

    def c_jvp(self, node, ins, rins, ps, vps, out, rout, cx):
        """C lines writing ``rout`` = R{out} whole from ``rins[i]`` = R{input i} and the direction pointers ``vps[j]``
        (None entries are zero); a bilinear op's second term goes through ``cx.temp`` and ``symgrad_add_to``."""
        raise NotImplementedError

    def c_rbackward(self, node, ins, rins, ps, vps, out, rout, d, rd, dins, rdins, rdps, cx):
        """C lines writing ``dins[i]``, ``rdins[i]`` = R{dE/d(input i)} and ``rdps[j]`` = R{dE/d(param j)} whole from
        ``d`` and ``rd`` = R{d}; this default serves parameter-free ops linear in their inputs once the forward is
        fixed: the backward applied to d and to R{d}."""
        lines = self.c_backward(node, ins, ps, out, d, dins, [None] * len(ps), cx) if any(dins) else []
        return lines + (self.c_backward(node, ins, ps, out, rd, rdins, [None] * len(ps), cx) if any(rdins) else [])


def pair(value, d, key, op, what, minimum=1):
    """An int or a list of d ints (``kernel_size = 3`` or ``[3, 2]``) as a d-tuple, each >= minimum."""
    vals = [value] * d if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(vals, (list, tuple)) or len(vals) != d or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in vals):
        raise op.error(f"{what} must be an integer or a list of {d} integers, got {value!r}", key)
    if any(v < minimum for v in vals):
        raise op.error(f"{what} must be at least {minimum}, got {value!r}", key)
    return tuple(vals)


def c_window(in_shape, out_shape, kernel, stride, padding, dilation=None):
    """The C initializer of a symgrad_window (templates/c/symgrad_conv.h); a 1-D layer is a 2-D one of height 1."""
    d = len(kernel)
    lift = (lambda v, one: tuple(v)) if d == 2 else (lambda v, one: (one,) + tuple(v))
    (h, w), (oh, ow) = lift(in_shape[1:], 1), lift(out_shape[1:], 1)
    (kh, kw), (sh, sw) = lift(kernel, 1), lift(stride, 1)
    (ph, pw), (dh, dw) = lift([lo for lo, _ in padding], 0), lift(dilation or (1,) * d, 1)
    return (f"{{.c = {in_shape[0]}, .h = {h}, .w = {w}, .o = {out_shape[0]}, .oh = {oh}, .ow = {ow}, .kh = {kh}, "
            f".kw = {kw}, .sh = {sh}, .sw = {sw}, .ph = {ph}, .pw = {pw}, .dh = {dh}, .dw = {dw}}}")


def c_block(comment, window, calls):
    """A C block: the comment, ``const symgrad_window g = window;`` and the calls."""
    return [f"{{  /* {comment} */", f"    const symgrad_window g = {window};", *("    " + c for c in calls), "}"]


def spatial_input(op, shape, d, key):
    """Refuse an input that is not (channels, length) for d = 1 or (channels, height, width) for d = 2."""
    if len(shape) != d + 1:
        want = "(channels, length)" if d == 1 else "(channels, height, width)"
        raise op.error(f"{op.kind} needs an input of shape {want}, got {show(shape)}", f"{key}.input")


def c_zero(buf, n, at=0, step=None):
    """C lines setting ``n`` values per sample of ``buf`` to 0 (from offset ``at`` of rows ``step`` wide)."""
    if step is None:
        return [f"for (size_t _q = 0; _q < (size_t)batch * {n}; ++_q) {{", f"    {buf}[_q] = 0;", "}"]
    return ["for (int _r = 0; _r < batch; ++_r) {", f"    for (int _i = 0; _i < {n}; ++_i) {{",
            f"        {buf}[(size_t)_r * {step} + {at} + _i] = 0;", "    }", "}"]


def c_terms(calls, out, n, cx):
    """C lines summing the terms of a bilinear R-pass into ``out`` (``n`` values per sample): ``calls`` are functions
    of a destination buffer returning its lines; the first writes ``out``, each later one ``Q`` and is added."""
    if not calls:
        return c_zero(out, n)
    lines = calls[0](out)
    for call in calls[1:]:
        lines += call(cx.temp("Q", n)) + [cx.call("symgrad_add_to", f"(size_t)batch * {n}, Q, {out}")]
    return lines


def show(shape):
    """A per-sample shape as 6x14x14."""
    return "x".join(str(n) for n in shape)
