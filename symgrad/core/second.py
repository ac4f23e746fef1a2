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

from symgrad.core.derivation import _simplest, live_assignments
from symgrad.ops.activations import net as NET
from symgrad.ops.activations import out as OUT
from symgrad.ops.losses import t as T
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


def without_deltas(expr):
    """expr with every DiracDelta (the second derivative of abs, max, min at their kink) set to 0, as PyTorch does."""
    return expr.replace(lambda e: isinstance(e, sp.DiracDelta), lambda e: sp.S.Zero)


def _expand(expr, steps):
    for s in reversed(steps):
        expr = expr.xreplace({s.sym: s.expr})
    return expr


@dataclass
class ExpressionPartials:
    """Per-sample derivatives of an expression model in its parameters, inputs and targets (what its second-order code prints).

    ``input_grads[i]`` = dE/dx_i, ``jacobian[j * n_in + i]`` = d out_j/d x_i, ``hessian[k]`` = d^2E/(dp dq) and
    ``gauss_newton[k]`` = c sum_j l''(out_j) d out_j/dp d out_j/dq for ``pairs[k]`` = (p, q), p <= q, indices into
    ``trained`` (the trainable parameter symbols in program order). E is the per-sample loss before the batch factor.
    """

    trained: list
    input_grads: list
    jacobian: list
    pairs: list
    hessian: list
    gauss_newton: list


def expression_partials(model, sder):
    """The ExpressionPartials of an ExpressionModel from sympy.diff of its expanded expressions."""
    prog = sder.program
    E = _expand(prog.loss, prog.steps)
    outs = [_expand(o, prog.steps) for o in prog.outputs]
    trained = list(sder.grads)
    grads = [sp.diff(E, v) for v in prog.inputs]
    jac = [sp.diff(o, v) for o in outs for v in prog.inputs]
    pairs = [(i, j) for i in range(len(trained)) for j in range(i, len(trained))]
    hess = [without_deltas(sp.diff(E, trained[i], trained[j])) for i, j in pairs]
    curv = model.loss.second_derivative()
    jp = {(o, p): sp.diff(outs[o], trained[p]) for o in range(len(outs)) for p in range(len(trained))}
    gn = [without_deltas(prog.scale * sp.Add(*[curv.subs({Y: outs[o], T: prog.targets[o]}) * jp[o, i] * jp[o, j]
                                               for o in range(len(outs))])) for i, j in pairs]
    return ExpressionPartials(trained, grads, jac, pairs, hess, gn)


@dataclass
class StraightHessian:
    """The per-sample Hessian as straight-line code: forward-mode derivatives of the straight-line gradient code.

    ``assignments`` extend the gradient's live body: each local partial d(rhs)/d(s) once (``_dl*``), and for each
    trainable parameter q the tangent d(lhs)/dq of every assignment that depends on q (``_dt*``);
    ``entries[k]`` = d^2E/(dp dq) for ``pairs[k]`` = (p, q), p <= q, indices into ``trained``.
    """

    trained: list
    assignments: list
    pairs: list
    entries: list


def straight_hessian(sl):
    """The StraightHessian of a StraightLine: sympy.diff of each assignment, chained along every trainable parameter."""
    from sympy.codegen.ast import Assignment

    body, _ = sl.live_body()
    trained = [p for p, _ in sl.grads]
    names = (f"_dl{k}" for k in range(10**9))
    tnames = (f"_dt{k}" for k in range(10**9))
    local, out = {}, list(body)

    def partial(expr, s, key, value=None):
        """d(expr)/d(s) as a symbol (assigned once per key) or a number; in ``value`` where it holds expr."""
        if key not in local:
            d = without_deltas(sp.diff(expr, s))
            if value is not None and not expr.is_Atom:
                d = d.xreplace({expr: value})  # sigma'(net) = out (1 - out), as the derivation writes it
            if not (d.is_Number or d.is_Symbol):
                sym = sp.Symbol(next(names), real=True)
                out.append(Assignment(sym, d))
                d = sym
            local[key] = d
        return local[key]

    def tangent(expr, key, t, value=None):
        """d(expr)/dq from the tangents t of the symbols it reads."""
        return sp.Add(*[partial(expr, s, (key, s), value) * t[s] for s in sorted(expr.free_symbols, key=lambda v: v.name)
                        if t.get(s, 0) != 0])

    tangents = []
    for q in trained:
        t = {q: sp.S.One}
        for a in body:
            d = tangent(a.rhs, a.lhs, t, a.lhs)
            if d != 0:
                if not (d.is_Number or d.is_Symbol):
                    sym = sp.Symbol(next(tnames), real=True)
                    out.append(Assignment(sym, d))
                    d = sym
                t[a.lhs] = d
        tangents.append(t)
    grads = [sp.sympify(g) for _, g in sl.grads]
    pairs = [(i, j) for i in range(len(trained)) for j in range(i, len(trained))]
    entries = [tangent(grads[i], ("grad", i), tangents[j]) for i, j in pairs]
    live, _ = live_assignments(out, set().union(*[sp.sympify(e).free_symbols for e in entries]))
    return StraightHessian(trained, live, pairs, entries)
