"""SymPy functions that the printers emit in numerically stable form.

Each one knows its own derivative (``fdiff``), so ``sympy.diff`` works on them exactly as on
built-ins, and each can be rewritten into elementary functions for display or expansion.
"""

import sympy as sp


def _power(tex, exp):
    """f(x)^{exp} as LaTeX: SymPy's LaTeX printer passes ``exp`` for powers of a function."""
    return tex if exp is None else r"%s^{%s}" % (tex, exp)


class sigmoid(sp.Function):
    """sigma(x) = 1 / (1 + exp(-x)); sigma'(x) = sigma(x) (1 - sigma(x))."""

    nargs = 1

    def fdiff(self, argindex=1):
        s = sigmoid(self.args[0])
        return s * (1 - s)

    @classmethod
    def eval(cls, arg):
        if arg.is_zero:
            return sp.Rational(1, 2)
        return None

    def _eval_rewrite_as_exp(self, arg, **kwargs):
        return 1 / (1 + sp.exp(-arg))

    def _eval_evalf(self, prec):
        return (1 / (1 + sp.exp(-self.args[0]))).evalf(prec)

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_is_positive(self):
        return self.args[0].is_real

    def _latex(self, printer, exp=None):
        return _power(r"\sigma\left(%s\right)" % printer._print(self.args[0]), exp)


class softplus(sp.Function):
    """softplus(x) = log(1 + exp(x)); softplus'(x) = sigma(x)."""

    nargs = 1

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])

    def _eval_rewrite_as_exp(self, arg, **kwargs):
        return sp.log(1 + sp.exp(arg))

    def _eval_rewrite_as_log(self, arg, **kwargs):
        return sp.log(1 + sp.exp(arg))

    def _eval_evalf(self, prec):
        return sp.log(1 + sp.exp(self.args[0])).evalf(prec)

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_is_positive(self):
        return self.args[0].is_real

    def _latex(self, printer, exp=None):
        return _power(r"\operatorname{softplus}\left(%s\right)" % printer._print(self.args[0]), exp)


class step(sp.Function):
    """step(x) = 1 if x > 0 else 0 (the derivative of ReLU, with step(0) = 0 as in PyTorch)."""

    nargs = 1

    def fdiff(self, argindex=1):
        return sp.S.Zero

    @classmethod
    def eval(cls, arg):
        if arg.is_positive:
            return sp.S.One
        if arg.is_nonpositive:
            return sp.S.Zero
        return None

    def _eval_evalf(self, prec):
        return sp.Float(1 if self.args[0] > 0 else 0, prec)

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_is_nonnegative(self):
        return self.args[0].is_real

    def _latex(self, printer, exp=None):
        return _power(r"\mathbb{1}\left[%s > 0\right]" % printer._print(self.args[0]), exp)


class relu(sp.Function):
    """relu(x) = max(x, 0); relu'(x) = step(x)."""

    nargs = 1

    def fdiff(self, argindex=1):
        return step(self.args[0])

    @classmethod
    def eval(cls, arg):
        if arg.is_nonnegative:
            return arg
        if arg.is_nonpositive:
            return sp.S.Zero
        return None

    def _eval_rewrite_as_Max(self, arg, **kwargs):
        return sp.Max(arg, 0)

    def _eval_evalf(self, prec):
        return sp.Max(self.args[0], 0).evalf(prec)

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_is_nonnegative(self):
        return self.args[0].is_real

    def _latex(self, printer, exp=None):
        return _power(r"\operatorname{ReLU}\left(%s\right)" % printer._print(self.args[0]), exp)


def to_elementary(expr):
    """Rewrite symgrad's functions into exp/log/Max so plain SymPy can expand or compare them."""
    return expr.replace(
        lambda e: isinstance(e, (sigmoid, softplus, relu, step)),
        lambda e: {
            sigmoid: lambda a: 1 / (1 + sp.exp(-a)),
            softplus: lambda a: sp.log(1 + sp.exp(a)),
            relu: lambda a: sp.Max(a, 0),
            step: lambda a: sp.Heaviside(a, 0),
        }[type(e)](e.args[0]),
    )


_a = sp.Wild("a")
# (pattern, replacement, note): elementary forms that overflow or lose precision, and their stable forms
STABLE_REWRITES = (
    (1 / (1 + sp.exp(-_a)), sigmoid(_a), "1/(1 + exp(-a)) = sigmoid(a)"),
    (sp.exp(_a) / (1 + sp.exp(_a)), sigmoid(_a), "exp(a)/(1 + exp(a)) = sigmoid(a)"),
    (sp.log(1 + sp.exp(_a)), softplus(_a), "log(1 + exp(a)) = softplus(a)"),
    (sp.log(sigmoid(_a)), -softplus(-_a), "log(sigmoid(a)) = -softplus(-a)"),
    (sp.log(1 - sigmoid(_a)), -softplus(_a), "log(1 - sigmoid(a)) = -softplus(a)"),
)


def stabilize(expr):
    """(expr with the STABLE_REWRITES applied, notes of the ones that fired)."""
    notes = []
    for pattern, replacement, note in STABLE_REWRITES:
        new = expr.replace(pattern, replacement)
        if new != expr:
            notes.append(note)
            expr = new
    return expr, notes


def log_forms(value, expr):
    """{log(g(value)): stable form in expr's arguments} for g = value, 1 - value where value = expr (sigmoid(u): softplus)."""
    forms = {}
    for g in (value, 1 - value):
        stable, notes = stabilize(sp.log(g.subs(value, expr)))
        if notes:
            forms[sp.log(g)] = stable
    return forms
