"""The backward program, derived from the forward program with the chain rule.

Scalar (per-neuron) form — reverse mode over named steps, as micrograd does over values:
``dE/dv = sum over steps c that use v of dE/dc * dc/dv``, each local derivative ``dc/dv`` from
``sympy.diff`` (or the step's cheaper rewrite, e.g. sigma' = out (1 - out)). Every adjoint keeps its
terms, so a report can show the Leibniz factors and the sum over paths.

Layer (array) form — the same rule on whole layers:
``delta^L = dE/dy * f'(net^L)`` (simplified by SymPy as one elementwise expression, which fuses
sigmoid + BCE into ``y - t`` and softmax + cross-entropy into ``y sum(t) - t``),
``delta^l = (delta^{l+1} W^{l+1}) * f'(net^l)``, ``dE/dW^l = delta^l^T a^{l-1}``, ``dE/db^l = sum_b delta^l``.
"""

import math
from dataclasses import dataclass, field

import sympy as sp
from sympy.codegen.ast import Assignment, CodeBlock

from symgrad.core.program import layer_program, scalar_program
from symgrad.ops.activations import net as NET
from symgrad.ops.activations import out as OUT
from symgrad.ops.losses import y as Y
from symgrad.symbols import Derived, Namer, derived, leaf_key


@dataclass
class Adjoint:
    """``sym = dE/d(of) = sum_k factor_k * local_k``, with ``factor_k`` the adjoint of the k-th consumer."""

    sym: sp.Symbol
    of: sp.Symbol
    terms: list  # [(consumer adjoint symbol or 1, consumer symbol, local derivative expr)]

    @property
    def expr(self):
        return sp.Add(*[f * d for f, _, d in self.terms])


@dataclass
class ScalarDerivation:
    """Forward steps and the adjoint steps that run backward through them."""

    program: object
    adjoints: list  # in backward order
    grads: dict = field(default_factory=dict)  # param symbol -> adjoint symbol

    def adjoint_of(self, sym):
        return self._by_of.get(sym)

    def __post_init__(self):
        self._by_of = {a.of: a for a in self.adjoints}
        self._by_sym = {a.sym: a for a in self.adjoints}

    def evaluate(self, values):
        """Numbers for every forward and adjoint symbol given leaf values {symbol: float}."""
        env = dict(values)
        for s in self.program.steps:
            env[s.sym] = _num(s.expr, env)
        for a in self.adjoints:
            env[a.sym] = sum(_num(f, env) * _num(d, env) for f, _, d in a.terms) if a.terms else 0.0
        return env

    def factored(self, param):
        """dE/dparam as a product of local derivatives summed over paths, in forward-step symbols."""
        a = self._by_of[param]
        return sp.Add(*[self._chain(f) * d for f, _, d in a.terms])

    def _chain(self, f):
        if f == 1:
            return sp.S.One
        a = self._by_sym[f]
        return sp.Add(*[self._chain(g) * d for g, _, d in a.terms])

    def expanded(self, param):
        """dE/dparam in inputs, targets and parameters only (small models: it grows fast)."""
        expr = self.factored(param)
        for s in reversed(self.program.steps):
            expr = expr.subs(s.sym, s.expr)
        return expr


def _num(expr, env):
    if isinstance(expr, (int, float)):
        return float(expr)
    if expr.is_Symbol:
        return float(env[expr])
    return float(sp.N(expr.xreplace({k: sp.Float(v, 30) for k, v in env.items() if k in expr.free_symbols}), 30))


def adjoint_name(sym):
    """Adjoint symbol of a forward or leaf symbol: delta_h1 for net_h1, dE_dw5 for w5 (keyed by sym, not its name)."""
    key = ("adjoint",) + leaf_key(sym)
    if isinstance(sym, Derived) and sym.key[0] == "net":
        return derived("delta_" + sym.key[1], *key)
    return derived("dE_d" + sym.name, *key)


def derive_scalar(model_or_program):
    """Reverse-mode derivation of the per-neuron program."""
    prog = model_or_program if hasattr(model_or_program, "steps") else scalar_program(model_or_program)
    wanted = set(prog.params)
    step_syms = {s.sym for s in prog.steps}
    consumers = {}
    for s in prog.steps:
        if s.no_grad:
            continue
        for v in sorted(s.expr.free_symbols, key=lambda v: v.name):
            if v in step_syms or v in wanted:
                consumers.setdefault(v, []).append(s)
    needed = _needed(prog, consumers, wanted)
    adjoints = []
    adj_sym = {prog.loss: sp.S.One}
    for s in reversed(prog.steps):
        if s.sym == prog.loss:
            continue
        if s.sym in needed:
            adjoints.append(_adjoint(s.sym, consumers, adj_sym))
            adj_sym[s.sym] = adjoints[-1].sym
    grads = {}
    for p in prog.params:
        p_name, _ = prog.params[p]
        if not _trainable(prog.model, p_name):
            continue
        adjoints.append(_adjoint(p, consumers, adj_sym))
        grads[p] = adjoints[-1].sym
    return ScalarDerivation(prog, adjoints, grads)


def _trainable(model, pname):
    return any(q.name == pname and q.trainable for q in model.params)


def _needed(prog, consumers, params):
    """Forward symbols with a path to a trainable parameter (only their adjoints are needed)."""
    trainable = {p for p in params if _trainable(prog.model, prog.params[p][0])}
    needed = set()
    for s in prog.steps:
        if s.expr.free_symbols & (trainable | needed) and not s.no_grad:
            needed.add(s.sym)
    return needed


def _adjoint(v, consumers, adj_sym):
    terms = []
    for c in consumers.get(v, []):
        if c.sym not in adj_sym:
            continue
        local = c.local.get(v)
        if local is None:
            local = sp.diff(c.expr, v)
            if not c.expr.is_Atom:
                local = local.subs(c.expr, c.sym)  # reuse the forward value the step holds
        if local != 0:
            terms.append((adj_sym[c.sym], c.sym, local))
    return Adjoint(adjoint_name(v), v, terms)


# ---------------------------------------------------------------------------------------------
# Layer (array) form

@dataclass
class LayerDerivation:
    """The batched forward/backward program and the elementwise expressions it needs.

    The output layer's delta is ``scale * delta_out`` computed elementwise when its op is elementwise
    (``output = "elementwise"``); an op that fuses the loss into its own rule gives ``delta_out`` as
    its h (softmax: delta = h - y sum(h), ``"fused"``); any other parameter-free output layer gets
    ``delta_out = dl/dy`` and its vector-Jacobian product (``"vjp"``).
    """

    program: object
    loss_term: sp.Expr  # l per output in y, t, net (and an op's log symbol); stable rewrites applied
    delta_out: sp.Expr  # see the class docstring
    output: str  # elementwise | fused | vjp
    derivs: list  # f'(net) per layer in out (and net when needed); None for parameter-free layers
    keeps_net: list  # whether layer k's backward needs net as well as out
    scale: sp.Expr  # c: 1/n_out for output-averaging losses
    rewrites: list  # human-readable notes of the stability rewrites applied
    logs: dict = field(default_factory=dict)  # {symbol: note} of the logs the forward code computes stably


def derive_layers(model):
    """Derive the array-level backward program of a Network."""
    prog = layer_program(model)
    last = prog.layers[-1]
    loss = model.loss
    g = sp.diff(loss.expr, Y)
    rewrites, logs = [], {}
    term = loss.expr
    if last.elementwise:
        d = last.op.derivative_in_out().subs(OUT, Y)
        delta, output = _simplest(g * d), "elementwise"
        for old, new in last.op.log_forms(Y, NET).items():
            if term.has(old):
                term = term.subs(old, new)
                rewrites.append(f"{sp.sstr(old)} with y = {sp.sstr(last.op.at(NET))} is computed as {sp.sstr(new)}")
    else:
        fused = last.op.output_delta(g, Y, last.units)
        delta, output = (g, "vjp") if fused is None else (fused, "fused")
        stable = last.op.loss_logs()
        if stable and term.has(sp.log(Y)):
            term = term.subs(sp.log(Y), stable["log"])
            rewrites.append(stable["note"])
            logs[stable["log"]] = stable["note"]
    derivs = [s.op.derivative_in_out() if s.elementwise else None for s in prog.layers]
    keeps = [d is not None and NET in d.free_symbols for d in derivs]
    keeps[-1] = NET in delta.free_symbols or NET in term.free_symbols
    scale = sp.Rational(1, last.units) if loss.average_outputs else sp.S.One
    return LayerDerivation(prog, term, delta, output, derivs, keeps, scale, rewrites, logs)


def _simplest(expr):
    """The shorter of expr and its simplification (by operation count)."""
    s = sp.factor_terms(sp.simplify(expr))
    return s if sp.count_ops(s) <= sp.count_ops(expr) else expr


def ops_estimate(model):
    """Floating-point operations of one forward+backward sample through the layer program."""
    n = model.n_inputs
    total = 0
    for layer in model.layers:
        total += 6 * n * layer.units + 4 * layer.units
        n = layer.units
    return total


def isclose(a, b, rel=1e-9):
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-300)


@dataclass
class StraightLine:
    """Per-sample straight-line code: forward, loss and backward assignments with CSE temporaries."""

    derivation: ScalarDerivation
    forward: list  # Assignments computing the outputs only (CSE'd)
    loss: list  # Assignments computing E_total only (CSE'd)
    body: list  # Assignments of forward + loss + backward (CSE'd)
    grads: list  # [(param symbol, expr giving dE/dparam per sample)] for trainable scalars, in program order

    def live_body(self):
        """(the body's assignments that the loss and the gradients need, every symbol they read)."""
        roots = {self.derivation.program.loss}.union(*[sp.sympify(g).free_symbols for _, g in self.grads])
        return live_assignments(self.body, roots)

    def namer(self, model_name):
        """Identifiers for every symbol of this code: user names first, then the derivation's own."""
        prog = self.derivation.program
        namer = Namer(model_name).add(list(prog.params) + list(prog.inputs))
        return namer.add([s.sym for s in prog.steps] + list(prog.targets) + [a.lhs for a in self.body])


def straight_line(model_or_derivation, prefix="_c"):
    """The neuron-level program as CSE'd assignments; adjoints that are constants or copies are inlined."""
    der = model_or_derivation
    if not isinstance(der, ScalarDerivation):
        der = derive_scalar(model_or_derivation)
    prog = der.program
    body = [Assignment(s.sym, s.expr) for s in prog.steps]
    trivial = {}
    for a in der.adjoints:
        expr = a.expr.xreplace(trivial)
        if expr.is_Number or expr.is_Symbol:
            trivial[a.sym] = expr  # dE/dE_o1 = 1 and the like: substituted, not assigned
        else:
            body.append(Assignment(a.sym, expr))
    full = CodeBlock(*body).cse(symbols=sp.numbered_symbols(prefix), order="none")

    def only(targets):
        needed = set(targets)
        for s in reversed(prog.steps):
            if s.sym in needed:
                needed |= s.expr.free_symbols
        steps = [Assignment(s.sym, s.expr) for s in prog.steps if s.sym in needed]
        return list(CodeBlock(*steps).cse(symbols=sp.numbered_symbols(prefix), order="none").args) if steps else []

    grads = [(p, trivial.get(a, a)) for p, a in der.grads.items()]
    return StraightLine(der, only(prog.outputs), only([prog.loss]), list(full.args), grads)


def live_assignments(assignments, roots):
    """The assignments that the roots depend on, in order (dead ones dropped)."""
    needed = set(roots)
    kept = []
    for a in reversed(assignments):
        if a.lhs in needed:
            kept.append(a)
            needed |= a.rhs.free_symbols
    return kept[::-1], needed
