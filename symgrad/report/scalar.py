"""The neuron-level report of a small model, read off the scalar derivation.

Every number comes from that derivation: forward values and adjoints from its ``evaluate``, each local
derivative evaluated the same way, finite differences of the loss from ``evaluate`` at shifted leaves.
"""

import numpy as np
import sympy as sp

from symgrad.core.derivation import _num as value
from symgrad.core.derive import derive
from symgrad.errors import SpecError
from symgrad.ops.losses import t as T
from symgrad.ops.losses import y as Y
from symgrad.report.blocks import Aligned, Diagram, Math, Partial, Section, Subst, Table, Text, sym
from symgrad.report.diagram import Values, diagram
from symgrad.report.hessian import hessian_sections
from symgrad.report.layers import vector_section
from symgrad.report.numbers import rel
from symgrad.report.rules import rule
from symgrad.report.sections import checks_section, make_report, training_section

MAX_PATHS = 8  # longer sums over paths are shown only through the deltas


def _display(expr, first):
    """expr with each product's factors ordered so that those in ``first`` lead (w1·i1, not i1·w1)."""
    if isinstance(expr, sp.Add):
        terms = []
        for a in expr.args:
            a = _display(a, first)
            terms += list(a.args) if isinstance(a, sp.Add) else [a]
        return sp.Add(*terms, evaluate=False)
    if isinstance(expr, sp.Mul):
        args = sorted(expr.args, key=lambda a: (a.is_Number is False, a not in first))
        return sp.Mul(*args, evaluate=False)
    return expr


class ScalarReport:
    """Neuron-by-neuron report from the scalar derivation."""

    def __init__(self, model, init, params, digits, steps, hessian=False):
        self.model, self.digits, self.steps, self.hessian = model, digits, steps, hessian
        self.der = derive(model).scalar
        prog = self.prog = self.der.program
        self.E = prog.loss
        self.leaves = {}
        for s, v in zip(prog.inputs, np.ravel(model.sample.x)):
            self.leaves[s] = float(v)
        t = model.sample.t if model.sample.t is not None else np.zeros(len(prog.targets))
        for s, v in zip(prog.targets, np.ravel(t)):
            self.leaves[s] = float(v)
        for s, (pname, idx) in prog.params.items():
            self.leaves[s] = float(np.asarray(init[pname]).reshape(-1)[idx])
        self.env = self.der.evaluate(self.leaves)
        self.values = dict(self.env)
        self.eta = sym("eta")
        self.values[self.eta] = float(model.train.learning_rate)
        by_sym = {a.sym: a for a in self.der.adjoints}
        for a in self.der.adjoints:
            self.values[Partial(self.E, a.of)] = self.env[a.sym]
            for f, c, d in a.terms:
                self.values[Partial(c, a.of)] = value(d, self.env)
        self.by_sym = by_sym
        names = {s.name: s for s in self.der.grads}
        if params:
            missing = [p for p in params if p not in names]
            if missing:
                raise SpecError(f"no trainable scalar parameter {missing[0]!r} (have: {', '.join(names)})", "params")
            self.chosen = [names[p] for p in params]
        else:
            self.chosen = sorted(self.der.grads, key=lambda s: -(self._layer_of(s) or 0))
        self.explained = set()

    def _layer_of(self, p):
        for s in self.prog.steps:
            if p in s.expr.free_symbols and s.kind == "net":
                return s.layer
        return None

    def build(self):
        m = self.model
        secs = [self._model_section(), self._forward_section(), self._loss_section(), self._backward_section()]
        if m.kind == "network":
            secs.append(vector_section(m))
        secs += [self._update_section(), self._summary_section()]
        if self.hessian:
            secs += hessian_sections(self)
        secs.append(checks_section(m, self._lookup))
        if self.steps:
            secs.append(training_section(self.steps, self._loss_at, self._grad_at, self._flat(), m.train.learning_rate))
        rewrites = list(getattr(m, "rewrites", [])) + (derive(m).layers.rewrites if m.kind == "network" else [])
        return make_report(m, secs, rewrites, self.values, self.digits)

    # -- sections

    def _model_section(self):
        m, prog = self.model, self.prog
        sec = Section("The model")
        sec.blocks.append(Text([m.description or m.describe()]))
        if m.kind == "network":
            svg, tikz = diagram(m, self._diagram_values())
            sec.blocks.append(Diagram(svg, tikz))
        rows = []
        for s in prog.inputs:
            rows.append([s, "input", self.leaves[s]])
        for s in prog.targets:
            rows.append([s, "target", self.leaves[s]])
        for s, (pname, idx) in prog.params.items():
            trains = any(q.name == pname and q.trainable for q in m.params)
            rows.append([s, f"parameter ({pname}{'' if trains else ', frozen'})", self.leaves[s]])
        rows.append([self.eta, "learning rate", self.values[self.eta]])
        sec.blocks.append(Text(["Symbols and their values:"]))
        sec.blocks.append(Table(["symbol", "meaning", "value"], rows))
        sym_rows = []
        for s in prog.steps:
            meaning = s.meaning
            sym_rows.append([s.sym, meaning])
        sec.blocks.append(Table(["symbol", "meaning"], sym_rows))
        return sec

    def _diagram_values(self):
        """The sample's forward values per neuron, the parameters and their gradients, for the drawing."""
        prog = self.prog
        neurons = {(0, r): self.leaves[s] for r, s in enumerate(prog.inputs)}
        for s in prog.steps:  # a unit's last step before the loss is its output
            if s.layer is not None and s.unit is not None and s.kind != "net":
                neurons[s.layer + 1, s.unit] = self.env[s.sym]
        grads = {g.name: self.values[Partial(self.E, g)] for g in self.der.grads if Partial(self.E, g) in self.values}
        return Values(neurons, {s.name: self.leaves[s] for s in prog.params}, grads)

    def _step_math(self, s):
        shown = _display(s.expr, set(self.prog.params))
        parts = [s.sym, shown]
        if not shown.is_Symbol:
            parts.append(Subst(shown))
        parts.append(self.env[s.sym])
        return Math(parts)

    def _forward_section(self):
        sec = Section("Forward pass")
        sec.blocks.append(Text(["Each step: the formula, the formula with the numbers substituted, the value."]))
        sec.blocks.append(Aligned([self._step_math(s) for s in self.prog.steps if s.kind not in ("loss_term", "loss")]))
        return sec

    def _loss_section(self):
        sec = Section("The loss")
        loss = self.model.loss
        scale = [] if self.prog.scale == 1 else [" times the constant ", self.prog.scale]
        sec.blocks.append(Text([f"Loss {loss.name}: the error of each output is ", loss.expr.subs({Y: sym("y"), T: sym("t")}),
                                " with output y and target t; the total error is their sum", *scale, "."]))
        for s in self.prog.steps:
            if s.kind in ("loss_term", "loss"):
                sec.blocks.append(self._step_math(s))
        return sec

    def _paths(self, v):
        """Chains of (consumer, symbol) pairs from E down to v."""
        if v == self.E:
            return [[]]
        a = self.der.adjoint_of(v)
        out = []
        for _, c, _ in a.terms:
            out += [p + [(c, v)] for p in self._paths(c)]
        return out

    def _merge(self, path):
        """Fold a leading d E/d E_o1 = 1 (a plain sum) into the next factor: d E/d out_o1."""
        if len(path) > 1 and path[0][0] == self.E and self.prog.scale == 1:
            return [(self.E, path[1][1])] + path[2:]
        return path

    def _explain(self, v, blocks):
        """Blocks deriving dE/dv (after those of v's consumers), once per symbol."""
        if v in self.explained or v == self.E:
            return
        a = self.der.adjoint_of(v)
        for _, c, _ in a.terms:
            self._explain(c, blocks)
        self.explained.add(v)
        is_net = v.name.startswith("net_")
        lhs = Partial(self.E, v)
        terms = []
        for f, c, d in a.terms:
            cstep = self.prog.step_of(c)
            blocks.append(Text(["Factor ", Partial(c, v), f" — {rule(cstep, v, self.prog)}:"]))
            raw = sp.diff(cstep.expr, v)
            parts = [Partial(c, v)]
            for e in (raw, d):
                if all(e != q for q in parts if isinstance(q, sp.Basic)):
                    parts.append(e)
            if not d.is_Symbol and not d.is_Number:
                parts.append(Subst(d))
            if not d.is_Number:
                parts.append(value(d, self.env))
            blocks.append(Math(parts))
            up = sp.S.One if c == self.E else (f if c.name.startswith("net_") else Partial(self.E, c))
            if up == sp.S.One:
                terms.append(Partial(c, v))
            else:
                terms.append(sp.Mul(up, Partial(c, v), evaluate=False))
        chain = sp.Add(*terms, evaluate=False) if len(terms) > 1 else terms[0] if terms else sp.S.Zero
        if is_net:
            blocks.append(Text(["Delta shorthand: ", a.sym, " = ", lhs, f", the error signal of neuron {v.name[4:]}; "
                                "the later steps use it instead of the whole chain."]))
            blocks.append(Math([a.sym, lhs, chain, Subst(chain), self.env[a.sym]]))
        elif chain != lhs:
            blocks.append(Math([lhs, chain, Subst(chain), self.env[a.sym]]))

    def _backward_section(self):
        sec = Section("Backward pass")
        sec.blocks.append(Text(["Every gradient is a product of local derivatives (chain rule), summed over all paths "
                                "from the parameter to the error E; each local derivative is derived by SymPy "
                                "and evaluated with the forward values above."]))
        for p in self.chosen:
            sub = []
            paths = [self._merge(q) for q in self._paths(p)]
            sub.append(Text([f"Gradient of the parameter {p.name}"
                             + (f", a sum over {len(paths)} paths through the later layers:" if len(paths) > 1 else ":")]))
            if len(paths) <= MAX_PATHS:
                leib = sp.Add(*[sp.Mul(*[Partial(c, v) for c, v in q], evaluate=False) for q in paths], evaluate=False)
                sub.append(Math([Partial(self.E, p), leib], split=True))
            self._explain(p, sub)
            sec.blocks += sub
        return sec

    def _update_section(self):
        sec = Section("The update")
        sec.blocks.append(Text(["One step of gradient descent with learning rate ", self.eta, " = ", self.values[self.eta],
                                ": ", sp.Symbol("w^+"), " = ", sp.Symbol("w") - self.eta * Partial(self.E, sp.Symbol("w")),
                                ". All gradients use the weights from before the update."]))
        for p in self.der.grads:
            new = sym(p.name + "^+")
            expr = p - self.eta * Partial(self.E, p)
            self.values[new] = self.leaves[p] - self.values[self.eta] * self.env[self.der.grads[p]]
            sec.blocks.append(Math([new, expr, Subst(expr), self.values[new]]))
        return sec

    def _summary_section(self):
        sec = Section("Summary and finite-difference check")
        sec.blocks.append(Text(["Central differences (E(p + h) - E(p - h)) / 2h with h = 1e-6 on the loss alone."]))
        rows = []
        for p, g in self.der.grads.items():
            fd = self._fd(p)
            rows.append([Partial(self.E, p), self.env[g], fd, rel(self.env[g], fd)])
        sec.blocks.append(Table(["gradient", "value", "finite difference", "relative error"], rows))
        return sec

    def _loss_with(self, leaves):
        return self.der.evaluate(leaves)[self.E]

    def _fd(self, p, h=1e-6):
        lv = dict(self.leaves)
        lv[p] = self.leaves[p] + h
        ep = self._loss_with(lv)
        lv[p] = self.leaves[p] - h
        return (ep - self._loss_with(lv)) / (2 * h)

    def _lookup(self, e):
        if e.what == "loss":
            return self.env[self.E]
        names = {s.name: s for s in self.env if isinstance(s, sp.Symbol)}
        if e.what == "output":
            outs = list(self.model.outputs)
            return self.env[self.prog.outputs[outs.index(e.name)]] if e.name in outs else None
        if e.what == "value":
            return self.env.get(names.get(e.name))
        g = {p.name: p for p in self.der.grads}.get(e.name)
        if g is None:
            return None
        if e.what == "gradient":
            return self.env[self.der.grads[g]]
        return self.leaves[g] - self.values[self.eta] * self.env[self.der.grads[g]]

    def _flat(self):
        return np.array([self.leaves[p] for p in self.der.grads])

    def _loss_at(self, w):
        lv = dict(self.leaves)
        lv.update(zip(self.der.grads, w))
        return self._loss_with(lv)

    def _grad_at(self, w):
        lv = dict(self.leaves)
        lv.update(zip(self.der.grads, w))
        env = self.der.evaluate(lv)
        return np.array([env[g] for g in self.der.grads.values()])
