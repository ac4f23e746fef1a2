"""Losses as a table of per-output SymPy expressions l(y, t).

The loss of a batch is ``E = R_b( c * sum_j l(y_bj, t_bj) )`` where ``c`` is ``1/n_outputs`` for
losses that average over outputs (PyTorch's MSELoss and BCELoss) and ``R_b`` is the batch
reduction, ``sum`` or ``mean``.
"""

from dataclasses import dataclass

import sympy as sp

from symgrad.errors import ExpressionError
from symgrad.ops.parse import parse_expression
from symgrad.symbols import derived

y = derived("y", "generic", "y")
t = derived("t", "generic", "t")


@dataclass(frozen=True)
class Loss:
    """A loss: per-output term, whether it averages over outputs, and the batch reduction."""

    name: str
    expr: sp.Expr  # in y, t
    average_outputs: bool
    reduction: str  # "sum" | "mean"
    needs_softmax: bool = False
    latex: str = ""
    rule: str = "SymPy's derivative of the loss expression"  # the report's name for dl/dy
    convex: bool = False  # l''(y) >= 0 for targets in [0, 1]: the Gauss-Newton matrix at y is PSD

    def second_derivative(self):
        """d^2 l / dy^2 from sympy.diff."""
        return sp.diff(self.expr, y, 2)

    def derivative(self):
        """dl/dy from sympy.diff."""
        return sp.diff(self.expr, y)

    @property
    def uses_target(self):
        return t in self.expr.free_symbols


# name -> (l(y, t), average over outputs, default batch reduction, needs softmax, LaTeX of E)
LOSSES = {
    "half_sse": ((t - y) ** 2 / 2, False, "sum", False, r"\sum_j \tfrac{1}{2}(t_j - y_j)^2"),
    "sse": ((t - y) ** 2, False, "sum", False, r"\sum_j (t_j - y_j)^2"),
    "mse": ((t - y) ** 2, True, "mean", False, r"\frac{1}{n}\sum_j (t_j - y_j)^2"),
    "bce": (-(t * sp.log(y) + (1 - t) * sp.log(1 - y)), True, "mean", False,
            r"-\frac{1}{n}\sum_j \left(t_j \log y_j + (1 - t_j)\log(1 - y_j)\right)"),
    "softmax_cross_entropy": (-t * sp.log(y), False, "mean", True, r"-\sum_j t_j \log y_j"),
}
POWER = "power rule with the chain rule (the inner derivative of t - y is -1)"
LOG = "derivative of the logarithm, d log(y)/dy = 1/y"
RULES = {"half_sse": POWER, "sse": POWER, "mse": POWER, "bce": LOG, "softmax_cross_entropy": LOG}
ALIASES = {"cross_entropy": "softmax_cross_entropy", "ce": "softmax_cross_entropy", "binary_cross_entropy": "bce"}
REDUCTIONS = ("sum", "mean")


def get_loss(kind=None, expression=None, reduction=None, average_outputs=None):
    """A Loss from a built-in name, or from an expression of y and t (text or SymPy)."""
    if reduction is not None and reduction not in REDUCTIONS:
        raise ExpressionError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    if expression is not None:
        if isinstance(expression, sp.Basic):
            names = {s.name: s for s in expression.free_symbols}
            extra = set(names) - {"y", "t"}
            if extra:
                raise ExpressionError(f"loss may only use y and t, found {', '.join(sorted(extra))}")
            expr = expression.subs({names[k]: v for k, v in (("y", y), ("t", t)) if k in names})
        else:
            expr = parse_expression(expression, {"y": y, "t": t})
        if y not in expr.free_symbols:
            raise ExpressionError("loss expression does not depend on y")
        latex = r"\sum_j " + sp.latex(expr.subs({y: sp.Symbol("y_j"), t: sp.Symbol("t_j")}))
        return Loss("custom", expr, bool(average_outputs), reduction or "sum", latex=latex)
    if kind is None:
        raise ExpressionError("give a loss kind or an expression")
    key = ALIASES.get(kind, kind)
    if key not in LOSSES:
        raise ExpressionError(f"unknown loss {kind!r} (built-ins: {', '.join(LOSSES)}; or expression = \"...\" of y and t)")
    expr, avg, red, soft, latex = LOSSES[key]
    if average_outputs is not None:
        avg = bool(average_outputs)
    return Loss(key, expr, avg, reduction or red, soft, latex, RULES[key], convex=True)
