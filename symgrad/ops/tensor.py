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
* ``rule``: the backward rule in words, for reports and generated docstrings.

An activation (``activation = "tanh"`` on a dense or convolution layer) is applied by the graph
backend after the op, elementwise, as for dense chains; ``numpy_backward`` receives dE/d(op output).
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
    merges = False  # takes ``inputs = [...]`` (two or more) instead of ``input``
    rule = ""  # the backward rule in words
    kernels = ()  # names of the NumPy kernels its code calls

    def __init__(self, name, **args):
        self.name = name
        allowed = self.allowed()
        for key in args:
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

    fresh_grads = True  # numpy_backward's input gradients are new arrays (not views of d)


def pair(value, d, key, op, what, minimum=1):
    """An int or a list of d ints (``kernel_size = 3`` or ``[3, 2]``) as a d-tuple, each >= minimum."""
    vals = [value] * d if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(vals, (list, tuple)) or len(vals) != d or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in vals):
        raise op.error(f"{what} must be an integer or a list of {d} integers, got {value!r}", key)
    if any(v < minimum for v in vals):
        raise op.error(f"{what} must be at least {minimum}, got {value!r}", key)
    return tuple(vals)


def show(shape):
    """A per-sample shape as 6x14x14."""
    return "x".join(str(n) for n in shape)
