"""Second derivatives, derived from the first-order programs with the chain rule once more.

Neuron level — the exact second partial d^2E/(da db) of two scalar parameters, step by step:
``dE/da`` is the factored chain of local derivatives in the forward steps' symbols (``out_o1``,
``out_h1``, ...); its derivative along ``b`` is ``sum_s d(dE/da)/ds * ds/db`` over the steps ``s``
it reads (plus ``b`` itself), where the forward sensitivity ``ds/db`` is the chain of the steps'
local derivatives again. Nothing is expanded unless ``form="expanded"`` asks for it.

Layer level — Pearlmutter's R-operator ``R{.} = d/d eps (.)(theta + eps v)`` on the layer program:
``R{z} = R{a} W^T + a V^T + v_b``, ``R{a} = f'(z) R{z}`` (an op's ``jvp``), and backward
``R{delta} = R{g} f'(z) + g f''(z) R{z}`` (an op's ``rvjp``), ``R{dE/dW} = R{delta}^T a + delta^T R{a}``,
``R{g} = R{delta} W + delta V``. :class:`LayerSecond` holds the elementwise expressions that needs:
f'' of each activation and the output delta's derivative along its net input, all from ``sympy.diff``.
Graph networks take the same output rule (:func:`output_rdelta`) and each shaped layer's R-passes from its op
(``numpy_jvp``, ``numpy_rbackward`` in :mod:`symgrad.ops.tensor`).
"""

from dataclasses import dataclass

import sympy as sp

from symgrad.core.derivation import _simplest
from symgrad.ops.activations import net as NET
from symgrad.ops.activations import out as OUT
from symgrad.ops.losses import y as Y


@dataclass
class Term:
    """One term of d(dE/da)/db: ``outer`` = d(dE/da)/d(sym) times ``inner`` = d(sym)/db."""

    sym: sp.Symbol
    outer: sp.Expr
    inner: sp.Expr

    @property
    def expr(self):
        return self.outer * self.inner


class ScalarSecond:
    """Second partials of E over the neuron-level derivation (small networks and expression models)."""

    def __init__(self, sder):
        self.sder = sder
        self.program = sder.program
        self._tangent = {}

    def local(self, step, v):
        """d(step)/dv as the first-order derivation states it (rewritten in the step's own value)."""
        d = step.local.get(v)
        if d is None:
            d = sp.diff(step.expr, v)
            if not step.expr.is_Atom:
                d = d.subs(step.expr, step.sym)
        return d

    def sensitivity(self, sym, b):
        """d(sym)/db for a forward symbol or leaf, as a chain of local derivatives (memoised)."""
        if sym == b:
            return sp.S.One
        key = (sym, b)
        if key not in self._tangent:
            step = self.program._index.get(sym)
            if step is None or step.no_grad:
                self._tangent[key] = sp.S.Zero
            else:
                deps = sorted(step.expr.free_symbols, key=lambda v: v.name)
                self._tangent[key] = sp.Add(*[self.local(step, v) * self.sensitivity(v, b) for v in deps
                                              if self.sensitivity(v, b) != 0])
        return self._tangent[key]

    def terms(self, a, b):
        """The nonzero terms of d^2E/(da db): every symbol that dE/da reads, with both factors."""
        first = self.sder.factored(a)
        out = []
        for s in sorted(first.free_symbols, key=lambda v: v.name):
            inner = self.sensitivity(s, b)
            if inner != 0:
                outer = sp.diff(first, s)
                if outer != 0:
                    out.append(Term(s, outer, inner))
        return out

    def factored(self, a, b):
        """d^2E/(da db) in the forward steps' symbols (sum over the symbols dE/da reads)."""
        return sp.Add(*[t.expr for t in self.terms(a, b)])

    def expanded(self, a, b):
        """d^2E/(da db) in inputs, targets and parameters only."""
        expr = self.factored(a, b)
        for s in reversed(self.program.steps):
            expr = expr.subs(s.sym, s.expr)
        return expr


@dataclass
class LayerSecond:
    """The elementwise expressions the layer-level R-operator needs, per layer and at the output.

    ``second[k]`` is f''(net) of layer k in out and net (None for parameter-free layers);
    ``rdelta``: for an elementwise output, d(delta_out)/d(net) (R{delta} = rdelta * R{net}); for a
    fused output (softmax), dh/dy of its h (R{h} = rdelta * R{y}); for a vjp output, l''(y).
    ``curvature`` is l''(y, t), the loss Hessian at the outputs that Gauss-Newton products use.
    """

    first: object  # the LayerDerivation
    second: list
    rdelta: sp.Expr
    curvature: sp.Expr
    convex: bool


def output_rdelta(output, delta_out, fprime, loss):
    """R{delta} at the output per unit of R{net} (elementwise: d delta/dy f'(net) + d delta/d net), of R{y} (fused:
    dh/dy), or l''(y) (an output op's vjp); ``fprime`` is f'(net) of the output activation in y (and net)."""
    if output == "elementwise":
        return _simplest(sp.diff(delta_out, Y) * fprime + sp.diff(delta_out, NET))
    if output == "fused":
        return _simplest(sp.diff(delta_out, Y))
    return loss.second_derivative()


def derive_second(lder):
    """The LayerSecond of a LayerDerivation."""
    prog = lder.program
    loss = prog.model.loss
    last = prog.layers[-1]
    second = [s.op.second_derivative_in_out() if s.elementwise else None for s in prog.layers]
    fprime = last.op.derivative_in_out().subs(OUT, Y) if lder.output == "elementwise" else None
    rdelta = output_rdelta(lder.output, lder.delta_out, fprime, loss)
    return LayerSecond(lder, second, rdelta, loss.second_derivative(), loss.convex)
