"""The report's second-derivative sections (``symgrad report --hessian``), read off the neuron-level derivation.

Each entry d^2E/(da db) is the derivative of the factored dE/da along b (core/second.py): a sum over
the symbols s that dE/da reads of d(dE/da)/ds times the sensitivity ds/db, both evaluated with the
forward values. Then the whole Hessian with central differences of the gradient, its eigenvalues,
and one damped Newton step beside the gradient step.
"""

import numpy as np
import sympy as sp

from symgrad.core.derivation import _num as value
from symgrad.core.derive import derive
from symgrad.report.blocks import Math, Partial, Section, Subst, Table, Text
from symgrad.report.numbers import rel
from symgrad.sizes import SMALL_LIMIT

TABLE_LIMIT = 12  # the matrix is printed as a table up to this many parameters


def second(E, a, b):
    """The Leibniz symbol of d^2E/(da db), as the derivative of dE/da along b."""
    return Partial(Partial(E, a), b)


class HessianSections:
    """Builds the sections from a ScalarReport (its derivation, values and leaves)."""

    def __init__(self, rep):
        self.rep = rep
        self.der = rep.der
        self.ss = derive(rep.model).scalar_second
        self.params = list(self.der.grads)
        self.E = rep.E

    def entry(self, a, b):
        return value(self.ss.factored(a, b), self.rep.env)

    def matrix(self):
        n = len(self.params)
        H = np.empty((n, n))
        for i, a in enumerate(self.params):
            for j in range(i, n):
                H[i, j] = H[j, i] = self.entry(a, self.params[j])
        return H

    def _block_params(self):
        """The output layer's trainable scalars (networks), else every trainable scalar (at most 4)."""
        m, prog = self.rep.model, self.rep.prog
        if m.kind == "network":
            last = [lay for lay in m.layers if not getattr(lay, "is_layer", False)][-1]
            block = [p for p in self.params if prog.params[p][0] == f"{last.name}.weight"]
            if block:
                return block[:4]
        return self.params[-4:]

    def _mixed(self, block):
        """(a hidden-layer parameter, an output parameter) whose entry is derived factor by factor, or None."""
        m, prog = self.rep.model, self.rep.prog
        if m.kind != "network":
            return (self.params[0], self.params[1]) if len(self.params) > 1 else None
        first = [lay for lay in m.layers if not getattr(lay, "is_layer", False)][0]
        hidden = [p for p in self.params if prog.params[p][0] == f"{first.name}.weight" and p not in block]
        return (hidden[0], block[0]) if hidden and block else None

    def derivation_section(self):
        rep, E = self.rep, self.E
        sec = Section("Second derivatives")
        sec.blocks.append(Text(["A second derivative is the chain rule applied to a gradient. The gradient ", Partial(E, sp.Symbol("a")),
                                " above is a product of local derivatives written in the forward values; its derivative "
                                "along b is the sum, over every value s it reads, of its partial derivative in s times the "
                                "sensitivity ", Partial(sp.Symbol("s"), sp.Symbol("b")),
                                " of that value (again a chain of local derivatives), all evaluated with the forward pass."]))
        block = self._block_params()
        names = ", ".join(p.name for p in block)
        sec.blocks.append(Text([f"The block of {names}:"]))
        for i, a in enumerate(block):
            for b in block[i:]:
                f = self.ss.factored(a, b)
                key = second(E, a, b)
                rep.values[key] = value(f, rep.env)
                sec.blocks.append(Math([key, f] if f.is_Number else [key, f, Subst(f), rep.values[key]]))
        mixed = self._mixed(block)
        if mixed:
            sec.blocks += self._factors(*mixed)
        return sec

    def _factors(self, a, b):
        rep, E = self.rep, self.E
        blocks = [Text([f"The mixed entry of {a.name} and {b.name}, factor by factor. The gradient of {a.name} is"])]
        first = self.der.factored(a)
        blocks.append(Math([Partial(E, a), first, Subst(first), rep.env[self.der.grads[a]]]))
        terms = self.ss.terms(a, b)
        g = self.der.grads[a]
        blocks.append(Text(["Write ", g, " for this expression of the forward values. It reads ",
                            ", ".join(t.sym.name for t in terms), f", which depend on {b.name}; for each, the partial "
                            f"derivative of {g.name} (the other values held) and the sensitivity:"]))
        products = []
        for t in terms:
            outer, inner = Partial(g, t.sym), Partial(t.sym, b)
            rep.values[outer], rep.values[inner] = value(t.outer, rep.env), value(t.inner, rep.env)
            blocks.append(Math([outer, t.outer, Subst(t.outer), rep.values[outer]]))
            blocks.append(Math([inner, t.inner] + ([Subst(t.inner)] if not t.inner.is_Number else []) + [rep.values[inner]]))
            products.append(sp.Mul(outer, inner, evaluate=False))
        total = sp.Add(*products, evaluate=False) if len(products) > 1 else products[0]
        key = second(E, a, b)
        rep.values[key] = self.entry(a, b)
        blocks.append(Math([key, total, Subst(total), rep.values[key]]))
        return blocks

    def matrix_sections(self):
        E = self.E
        H = self.matrix()
        n = len(self.params)
        sec = Section("The Hessian")
        if n <= TABLE_LIMIT:
            sec.blocks.append(Text(["Every second derivative, rows and columns in parameter order:"]))
            sec.blocks.append(Table([""] + [p.name for p in self.params],
                                    [[p.name] + [float(v) for v in row] for p, row in zip(self.params, H)]))
        fd = self._fd()
        sec.blocks.append(Text(["Central differences of the gradient, (g(p + h e_b) - g(p - h e_b)) / 2h with h = 1e-5:"]))
        rows = []
        for i, a in enumerate(self.params):
            for j in range(i, n):
                rows.append([second(E, a, self.params[j]), float(H[i, j]), float(fd[i, j]), rel(H[i, j], fd[i, j])])
        sec.blocks.append(Table(["entry", "value", "finite difference", "relative error"], rows))
        off = [r[0] for r in rows if r[3] > 1e-4]
        if off:
            sec.blocks.append(Text([f"{len(off)} of the {len(rows)} entries disagree with their finite difference (the "
                                    "first: ", off[0], "). The gradient is not smooth there: a max-pooling tie or a ReLU "
                                    "at 0 makes it jump when a parameter moves, and a central difference across the jump "
                                    "measures the jump divided by 2h. The Hessian shown is the derivative on the side the "
                                    "gradient takes (PyTorch's convention), where it is smooth."]))
        eig = np.linalg.eigvalsh(H)
        kind = ("positive definite" if eig[0] > 0 else "positive semi-definite" if eig[0] == 0
                else "indefinite" if eig[-1] > 0 else "negative semi-definite")
        sec.blocks.append(Text(["Eigenvalues (ascending): "] + [x for v in eig for x in (float(v), ", ")][:-1]
                               + [f". The Hessian is {kind} at these parameters."]))
        return [sec, self._newton(H)]

    def _fd(self, h=1e-5):
        w = self.rep._flat()
        cols = [(self.rep._grad_at(w + h * e) - self.rep._grad_at(w - h * e)) / (2 * h) for e in np.eye(len(w))]
        return np.array(cols).T

    def _newton(self, H):
        rep = self.rep
        lam = float(rep.model.train.damping)
        eta = float(rep.values[rep.eta])
        w = rep._flat()
        g = rep._grad_at(w)
        s = np.linalg.solve(H + lam * np.eye(len(w)), g)
        sec = Section("A damped Newton step")
        sec.blocks.append(Text([f"The damped Newton step solves (H + λI) s = g with λ = {lam:g} (the spec's damping) and "
                                f"moves w − s; beside it the gradient step w − η g with η = {eta:g}."]))
        rows = [[p.name, float(w[k]), float(g[k]), float(w[k] - eta * g[k]), float(s[k]), float(w[k] - s[k])]
                for k, p in enumerate(self.params)]
        sec.blocks.append(Table(["parameter", "w", "gradient g", "gradient step", "Newton step s", "Newton step w − s"], rows))
        after = rep._loss_at(w - s)
        sec.blocks.append(Table(["", "loss E"], [["before", rep._loss_at(w)], ["after the gradient step", rep._loss_at(w - eta * g)],
                                                 ["after the damped Newton step", after]]))
        low = float(np.linalg.eigvalsh(H)[0])
        if low + lam <= 0:
            sec.blocks.append(Text(["H + λI is not positive definite here (smallest eigenvalue of H ", low, "), so s need not "
                                    "point downhill" + (" and the loss rises" if after > rep._loss_at(w) else "")
                                    + ": a damping above the size of that eigenvalue, or the Gauss-Newton matrix "
                                    "(optimizer gauss_newton), gives a descent direction."]))
        return sec


def hessian_refusal(model):
    """Why ``--hessian`` does not cover this model, and what does."""
    n = sum(p.size for p in model.params)
    what = (f"it derives them neuron by neuron, for models of at most {SMALL_LIMIT} parameters (this one has {n})"
            if n > SMALL_LIMIT else "it covers dense networks, expression models and small graph networks, not "
            "recurrent layers")
    return (f"--hessian: {what}; the generated hvp and hessian (symgrad generate --second-order) give this model's "
            "second derivatives")


def hessian_sections(rep):
    """The sections ``--hessian`` adds to a neuron-level report."""
    hs = HessianSections(rep)
    return [hs.derivation_section()] + hs.matrix_sections()
