"""Code printers: SymPy's printers, subclassed only where symgrad's output differs."""

import sympy as sp
from sympy.printing.numpy import NumPyPrinter as _NumPyPrinter
from sympy.printing.precedence import PRECEDENCE, precedence
from sympy.printing.pycode import PythonCodePrinter


def renamed(names, sym):
    """The code for ``sym`` in ``names``, which maps symbols (or, for generic ones, their names) to code; else None."""
    code = names.get(sym)
    return code if code is not None else names.get(sym.name)


class PrintedPrecedence:
    """Brackets from the precedence of the text a printer really writes, not of the SymPy node.

    Overrides may print a node as text of another precedence (``x**2`` as ``x*x``, ``x**-1`` as
    ``1/x``, a number as a literal); SymPy's own ``_print_Mul``/``_print_Pow`` bracket their
    arguments through :meth:`parenthesize`, so overriding it here keeps every override correct
    (``a/(u)**2`` stays ``a/(u*u)``).
    """

    def printed_precedence(self, expr):
        """Precedence of ``self._print(expr)``; overrides that change it say so in ``_printed_as``."""
        kind = self._printed_as(expr)
        return PRECEDENCE[kind] if kind else precedence(expr)

    def _printed_as(self, expr):
        """The operator the printed text of ``expr`` ends up as ('Mul', 'Add', ...), or None if SymPy's."""
        if expr.is_Pow and expr.exp == -1:
            return "Mul"  # 1/x
        if expr.is_Number and expr.is_negative:
            return "Add"  # a literal with a minus sign
        return None

    def _print_Mul(self, expr, **kwargs):
        """-(a*b/c) as ``-`` and the positive product: SymPy brackets a negative product's factors at
        the level of a sum, which would leave ``a/u*u`` for ``-a/u**2`` once u**2 prints as u*u."""
        if expr.could_extract_minus_sign() and not expr.is_number:
            return "-" + self.parenthesize(-expr, PRECEDENCE["Mul"], strict=True)
        return super()._print_Mul(expr, **kwargs)

    def parenthesize(self, item, level, strict=False):
        prec = self.printed_precedence(item)
        if prec < level or (not strict and prec <= level):
            return "(%s)" % self._print(item)
        return self._print(item)


class _PythonNumbers(PrintedPrecedence):
    """Shared by the Python printers: renamed symbols, float literals with every digit, 1/x for x**-1."""

    def __init__(self, settings=None, names=None):
        super().__init__(settings)
        self.names = names or {}

    def _print_Symbol(self, expr):
        return renamed(self.names, expr) or expr.name

    def _print_Rational(self, expr):
        return repr(float(expr))

    def _print_Half(self, expr):
        return "0.5"

    def _print_Float(self, expr):
        return repr(float(expr))

    def _print_Pow(self, expr, rational=False):
        if expr.exp == -1:
            return "1/%s" % self.parenthesize(expr.base, PRECEDENCE["Mul"])
        return super()._print_Pow(expr, rational)


class NumPyPrinter(_PythonNumbers, _NumPyPrinter):
    """NumPy code with ``np.`` as the module alias and stable forms of symgrad's functions."""

    printmethod = "_symgrad_numpy"

    def _module_format(self, fqn, register=True):
        fqn = super()._module_format(fqn, register)
        return "np." + fqn[6:] if fqn.startswith("numpy.") else fqn

    def _print_Relational(self, expr):
        """Infix comparisons: they broadcast over arrays as the function forms do."""
        op = {"==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}[expr.rel_op]
        return "(%s %s %s)" % (self._print(expr.lhs), op, self._print(expr.rhs))

    def _print_Max(self, expr):
        return self._nested("np.maximum", expr.args)

    def _print_Min(self, expr):
        return self._nested("np.minimum", expr.args)

    def _nested(self, fn, args):
        """fn(a, fn(b, c)): a pairwise NaN-propagating reduction without functools."""
        code = self._print(args[-1])
        for a in reversed(args[:-1]):
            code = "%s(%s, %s)" % (fn, self._print(a), code)
        return code

    def _print_sigmoid(self, expr):
        return "_sigmoid(%s)" % self._print(expr.args[0])

    def _print_softplus(self, expr):
        return "np.logaddexp(0.0, %s)" % self._print(expr.args[0])

    def _print_relu(self, expr):
        return "np.maximum(%s, 0.0)" % self._print(expr.args[0])

    def _print_step(self, expr):
        return "np.heaviside(%s, 0.0)" % self._print(expr.args[0])

    def _print_erf(self, expr):
        return "_erf(%s)" % self._print(expr.args[0])

    def _print_Piecewise(self, expr):
        """Nested np.where, last condition True.

        np.where evaluates every branch everywhere, so for ``(f, v > 0), (g, True)`` the default
        branch is printed as g(min(v, 0)): equal where it is taken, and no overflow where it is not
        (elu's exp(x) at x = 1000).
        """
        *pairs, (last, cond) = expr.args
        if cond != sp.true:
            raise ValueError("Piecewise without a default branch")
        if len(pairs) == 1 and isinstance(pairs[0][1], (sp.StrictGreaterThan, sp.GreaterThan)) \
                and pairs[0][1].lhs.is_Symbol and pairs[0][1].rhs == 0 and last.has(sp.exp):
            v = pairs[0][1].lhs
            clamp = sp.Symbol(f"np.minimum({self._print(v)}, 0.0)")
            last = last.xreplace({v: clamp})
        code = self._print(last)
        for value, c in reversed(pairs):
            code = "np.where(%s, %s, %s)" % (self._print(c), self._print(value), code)
        return code


class MathPrinter(_PythonNumbers, PythonCodePrinter):
    """Plain-Python float code (``math`` module) for straight-line per-sample paths."""

    def _printed_as(self, expr):
        if expr.is_Pow and expr.exp == 2:
            return "Mul"  # x*x
        return super()._printed_as(expr)

    def _print_Pow(self, expr, rational=False):
        if expr.exp == 2:
            return "%s*%s" % ((self.parenthesize(expr.base, PRECEDENCE["Mul"]),) * 2)
        return super()._print_Pow(expr, rational)

    def _print_Max(self, expr):
        return self._nested("_max1", expr.args)

    def _print_Min(self, expr):
        return self._nested("_min1", expr.args)

    def _nested(self, fn, args):
        code = self._print(args[-1])
        for a in reversed(args[:-1]):
            code = "%s(%s, %s)" % (fn, self._print(a), code)
        return code

    def _print_sigmoid(self, expr):
        return "_sigmoid1(%s)" % self._print(expr.args[0])

    def _print_softplus(self, expr):
        return "_softplus1(%s)" % self._print(expr.args[0])

    def _print_relu(self, expr):
        return "max(%s, 0.0)" % self._print(expr.args[0])

    def _print_step(self, expr):
        return "(1.0 if %s > 0 else 0.0)" % self._print(expr.args[0])


def math_code(expr, names=None):
    """Plain-Python source for one scalar expression; ``names`` maps symbols to identifiers."""
    expr = sp.sympify(expr)
    expr = expr.xreplace({r: sp.Float(r, 17) for r in expr.atoms(sp.Rational) if not r.is_Integer})
    return MathPrinter({"fully_qualified_modules": True}, names).doprint(expr)


def numpy_code(expr, names=None):
    """NumPy source for one expression; ``names`` renames symbols (e.g. y -> a2)."""
    expr = sp.sympify(expr)
    expr = expr.xreplace({r: sp.Float(r, 17) for r in expr.atoms(sp.Rational) if not r.is_Integer})
    return NumPyPrinter({"fully_qualified_modules": True, "allow_unknown_functions": False}, names).doprint(expr)
