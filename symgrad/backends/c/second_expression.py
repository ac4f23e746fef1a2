"""C for an expression model's second-order functions: SymPy's derivatives of its expressions as straight-line code.

The same per-sample derivatives as the NumPy module (:func:`~symgrad.core.second.expression_partials`),
CSE'd and printed by the CPrinter in the straight-line code's names (:class:`~symgrad.backends.c.unrolled.Unrolled`),
inside one loop over the batch rows: dE/dx and d out/d x are stored per row; the Hessian (or Gauss-Newton)
entries of the upper triangle are summed over the rows in locals, and hvp multiplies that small symmetric
matrix by v once, after the loop. Nothing needs a work buffer (its size is 0).
"""

import sympy as sp
from sympy.codegen.ast import Assignment, CodeBlock

from symgrad.backends.c.unrolled import Unrolled, at, for_rows
from symgrad.core.derive import derive
from symgrad.core.second import expression_partials, straight_hessian


class CExpressionSecond:
    """Function bodies of the second-order C functions of an ExpressionModel (the layout, a CPrinter)."""

    def __init__(self, model, layout, pr):
        self.model = model
        self.code = Unrolled(model, layout, pr)
        self.code.pr.helpers = pr.helpers  # libm helpers it prints are the source's, as the first-order code's are
        self.pr = self.code.pr
        self.d = expression_partials(model, derive(model).scalar)
        self.n_params = sum(p["size"] for p in layout)

    def _block(self, exprs, prefix):
        """(CSE'd const declarations, the printed value of each expr) for one row."""
        syms = [sp.Symbol(f"_{prefix}{k}_") for k in range(len(exprs))]
        block = CodeBlock(*[Assignment(s, e) for s, e in zip(syms, exprs)]).cse(
            symbols=sp.numbered_symbols(f"_{prefix}"), order="none")
        values, lines = {}, []
        for a in block.args:
            if a.lhs in syms:
                values[a.lhs] = self.pr.doprint(a.rhs)
            else:
                lines.append(f"const real {self.pr.doprint(a.lhs)} = {self.pr.doprint(a.rhs)};")
        return lines, [values[s] for s in syms]

    def _needed(self, exprs):
        return set().union(*[sp.sympify(e).free_symbols for e in exprs])

    def _scale(self):
        return ["const real _s = 1;"] if self.model.loss.reduction == "sum" else ["const real _s = (real)1 / batch;"]

    def input_gradients(self):
        exprs = self.d.input_grads
        needed = self._needed(exprs)
        lines, values = self._block(exprs, "d")
        n = self.model.n_inputs
        row = self.code._row(needed) + lines + [f"gx[{at('_r', n, i)}] = _s * ({v});" for i, v in enumerate(values)]
        return self.code._prologue(needed) + self._scale() + for_rows(row)

    def jacobian(self):
        exprs = self.d.jacobian
        needed = self._needed(exprs)
        lines, values = self._block(exprs, "j")
        n = self.model.n_inputs * self.model.n_outputs
        row = self.code._row(needed) + lines + [f"J[{at('_r', n, k)}] = {v};" for k, v in enumerate(values)]
        return self.code._prologue(needed) + for_rows(row)

    def product(self, exprs):
        """hvp's (or gauss_newton_vp's) body: the matrix of ``exprs`` (upper triangle) summed over rows, times v."""
        d = self.d
        if not d.trained:
            return [f"for (int _i = 0; _i < {self.n_params}; ++_i) {{", "    out[_i] = 0;", "}"]
        needed = self._needed(exprs)
        lines, values = self._block(exprs, "h")
        acc = [f"_H{k}" for k in range(len(exprs))]
        body = self.code._prologue(needed) + ["real " + ", ".join(f"{a} = 0" for a in acc) + ";"]
        body += for_rows(self.code._row(needed) + lines + [f"{a} += {v};" for a, v in zip(acc, values)])
        body += self._scale()
        offsets = [self.code.offsets[s.name] for s in d.trained]
        body += [f"const real _v{k} = v[{o}];" for k, o in enumerate(offsets)]
        entry = {}
        for (i, j), a in zip(d.pairs, acc):
            entry[i, j] = entry[j, i] = a
        written = {o: "_s * (" + " + ".join(f"{entry[k, q]} * _v{q}" for q in range(len(offsets))) + ")"
                   for k, o in enumerate(offsets)}
        return body + [f"out[{i}] = {written.get(i, '0')};" for i in range(self.n_params)]

    def hessian(self):
        """<name>_hessian's body: the summed upper triangle written into H (N_TRAINABLE x N_TRAINABLE) and mirrored."""
        d = self.d
        if not d.trained:
            return []
        needed = self._needed(d.hessian)
        lines, values = self._block(d.hessian, "h")
        acc = [f"_H{k}" for k in range(len(values))]
        body = self.code._prologue(needed) + ["real " + ", ".join(f"{a} = 0" for a in acc) + ";"]
        body += for_rows(self.code._row(needed) + lines + [f"{a} += {v};" for a, v in zip(acc, values)])
        nt = len(d.trained)
        body += self._scale()
        for (i, j), a in zip(d.pairs, acc):
            body.append(f"H[{i * nt + j}] = _s * {a};" if i == j else f"H[{i * nt + j}] = H[{j * nt + i}] = _s * {a};")
        return body

    def bodies(self):
        return {"input_gradients": self.input_gradients(), "jacobian": self.jacobian(),
                "hvp": self.product(self.d.hessian), "gauss_newton_vp": self.product(self.d.gauss_newton),
                "hessian": self.hessian()}

    def workspace(self):
        return "0"

    def hessian_workspace(self):
        return "0"

    def kernel_sources(self):
        return []

    def gemm_helpers(self):
        return set()


def straight_hessian_body(model, layout, pr):
    """<name>_hessian's body for a small network: per row its straight-line gradient code and the forward-mode
    derivatives of that code along each trainable parameter (:func:`~symgrad.core.second.straight_hessian`), the
    upper triangle summed over rows in locals, then scaled into H and mirrored."""
    code = Unrolled(model, layout, pr)
    code.pr.helpers = pr.helpers
    sh = straight_hessian(code.sl)
    if not sh.trained:
        return []
    values = [code.pr.doprint(e) for e in sh.entries]
    needed = set().union(*[a.rhs.free_symbols for a in sh.assignments], *[e.free_symbols for e in sh.entries])
    acc = [f"_H{k}" for k in range(len(values))]
    body = code._prologue(needed) + ["real " + ", ".join(f"{a} = 0" for a in acc) + ";"]
    body += for_rows(code._row(needed) + code._assign(sh.assignments) + [f"{a} += {v};" for a, v in zip(acc, values)])
    body += ["const real _s = 1;"] if model.loss.reduction == "sum" else ["const real _s = (real)1 / batch;"]
    nt = len(sh.trained)
    for (i, j), a in zip(sh.pairs, acc):
        body.append(f"H[{i * nt + j}] = _s * {a};" if i == j else f"H[{i * nt + j}] = H[{j * nt + i}] = _s * {a};")
    return body
