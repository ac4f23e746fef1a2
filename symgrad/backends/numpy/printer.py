"""The NumPy backend's printers: SymPy's NumPy and Python printers, subclassed only where symgrad's output differs.

Each records the module's helper functions it calls (``_sigmoid``, ``_erf``, ...) in ``helpers``
while it prints, so the module defines exactly those.
"""

import sympy as sp
from sympy.printing.numpy import NumPyPrinter as _NumPyPrinter
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.pycode import PythonCodePrinter

from symgrad.backends.printers import PrintedPrecedence, renamed
from symgrad.ops.functions import sigmoid, step


class _PythonNumbers(PrintedPrecedence):
    """Shared by the Python printers: renamed symbols, float literals with every digit, 1/x for x**-1."""

    def __init__(self, settings=None, names=None, helpers=None):
        super().__init__(settings)
        self.names = names or {}
        self.helpers = set() if helpers is None else helpers  # the module's helper functions this printer called

    def _helper(self, name, expr):
        """``name(arg)``, recording that the module needs the helper ``name``."""
        self.helpers.add(name)
        return "%s(%s)" % (name, self._print(expr.args[0]))

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
        return self._helper("_sigmoid", expr)

    def in_place(self, expr, target):
        """Code overwriting the array ``target`` with ``expr`` = f(target) for a one-argument f; None if f has none."""
        f = expr.func
        if f is sp.Function or len(expr.args) != 1:
            return None
        if f is sigmoid:
            self.helpers.add("_sigmoid_")
            return f"_sigmoid_({target})"
        if f is step:
            return f"np.greater({target}, 0.0, out={target})"  # NaN -> 0, as step(out) in the C code
        code = NumPyPrinter({"fully_qualified_modules": True}, {expr.args[0]: target}, set()).doprint(expr)
        head = code.split("(", 1)[0]
        if code.startswith("np.") and code in (f"{head}({target})", f"{head}({target}, 0.0)"):
            return f"{code[:-1]}, out={target})"
        return None

    def _print_softplus(self, expr):
        return "np.logaddexp(0.0, %s)" % self._print(expr.args[0])

    def _print_relu(self, expr):
        return "np.maximum(%s, 0.0)" % self._print(expr.args[0])

    def _print_step(self, expr):
        return "np.heaviside(%s, 0.0)" % self._print(expr.args[0])

    def _print_erf(self, expr):
        return self._helper("_erf", expr)

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
        self.helpers.add(fn)
        code = self._print(args[-1])
        for a in reversed(args[:-1]):
            code = "%s(%s, %s)" % (fn, self._print(a), code)
        return code

    def _print_sigmoid(self, expr):
        return self._helper("_sigmoid1", expr)

    def _print_softplus(self, expr):
        return self._helper("_softplus1", expr)

    def _print_relu(self, expr):
        return "max(%s, 0.0)" % self._print(expr.args[0])

    def _print_step(self, expr):
        return "(1.0 if %s > 0 else 0.0)" % self._print(expr.args[0])


def math_code(expr, names=None, helpers=None):
    """Plain-Python source for one scalar expression; ``names`` maps symbols to identifiers."""
    expr = sp.sympify(expr)
    expr = expr.xreplace({r: sp.Float(r, 17) for r in expr.atoms(sp.Rational) if not r.is_Integer})
    return MathPrinter({"fully_qualified_modules": True}, names, helpers).doprint(expr)


def numpy_code(expr, names=None, helpers=None):
    """NumPy source for one expression; ``names`` renames symbols (e.g. y -> a2)."""
    expr = sp.sympify(expr)
    expr = expr.xreplace({r: sp.Float(r, 17) for r in expr.atoms(sp.Rational) if not r.is_Integer})
    return NumPyPrinter({"fully_qualified_modules": True, "allow_unknown_functions": False}, names, helpers).doprint(expr)
