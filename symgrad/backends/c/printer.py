"""C99 printer: SymPy's ``C99CodePrinter``, subclassed only where symgrad's output differs."""

import sympy as sp
from sympy.codegen.ast import float32, float64, real
from sympy.printing.c import C99CodePrinter
from sympy.printing.precedence import PRECEDENCE

from symgrad.backends.printers import PrintedPrecedence, renamed

C_TYPES = {"float64": ("double", float64, ""), "float32": ("float", float32, "f")}


class CPrinter(PrintedPrecedence, C99CodePrinter):
    """C99 with stable helpers for symgrad's functions, x*x for squares, one-line ternaries."""

    def __init__(self, dtype="float64", names=None, vector_math=True):
        ctype, ast_type, suffix = C_TYPES[dtype]
        self.vector_math = vector_math  # exp/tanh as symgrad's branch-free helpers (loops) or libm's (scalar code)
        super().__init__({"type_aliases": {real: ast_type}, "math_macros": {}})
        self.suffix = suffix
        self.dtype = dtype
        self.names = names or {}
        self.helpers = set()  # the symgrad_* helpers printed so far (templates/c/symgrad_math.h)

    def renamed(self, names):
        """A printer like this one with other ``names``, recording its helpers in the same set."""
        pr = self.__class__(self.dtype, names, self.vector_math)
        pr.helpers = self.helpers
        return pr

    def helper(self, name, arg):
        """``symgrad_<name>(arg)`` for this dtype, recorded in ``helpers``."""
        fn = f"symgrad_{name}{self.suffix}"
        self.helpers.add(fn)
        return f"{fn}({arg})"

    def _print_Symbol(self, expr):
        return renamed(self.names, expr) or super()._print_Symbol(expr)

    def _printed_as(self, expr):
        if expr.is_Pow and (expr.exp == 2 or expr.exp == 3) and not (expr.base.is_Number and expr.exp.is_Number):
            return "Mul"  # x*x, x*x*x
        if expr.is_number and not expr.is_Atom and not expr.has(sp.Function):
            value = sp.Float(expr.evalf(17), 17)  # printed as a literal
            return "Add" if value.is_negative else "Atom"
        if expr.is_Rational:
            return "Add" if expr.is_negative else "Atom"  # a literal (_print_Rational)
        return super()._printed_as(expr)

    def _print_Rational(self, expr):
        """A literal with every digit (0.5, not 1.0/2.0)."""
        return self._print(sp.Float(expr, 17))

    def _print_BooleanTrue(self, expr):
        return "1"  # C99 without <stdbool.h>

    def _print_BooleanFalse(self, expr):
        return "0"

    def _print_Pow(self, expr):
        if expr.base.is_Number and expr.exp.is_Number:  # constants such as 1/sqrt(2): a literal, no M_* macro
            return self._print(sp.Float(expr.evalf(17), 17))
        if expr.exp == 2 or expr.exp == 3:
            base = self.parenthesize(expr.base, PRECEDENCE["Mul"])
            return "*".join([base] * int(expr.exp))
        return super()._print_Pow(expr)

    def _print_NumberSymbol(self, expr):
        """pi, E, ... as literals: the M_* macros are not in strict C99."""
        return self._print(sp.Float(expr.evalf(17), 17))

    def _print_Mul(self, expr, **kwargs):
        if expr.is_number:
            return self._print(sp.Float(expr.evalf(17), 17))
        return super()._print_Mul(expr, **kwargs)

    def _print_Add(self, expr, **kwargs):
        """A sum of numbers (1.9 + pi) as one literal, as _printed_as says: printed term by term, a product
        around it lost its brackets (h*(1.9 + pi) became h*1.9 + pi)."""
        if expr.is_number and not expr.has(sp.Function):
            return self._print(sp.Float(expr.evalf(17), 17))
        return super()._print_Add(expr, **kwargs)

    def _print_Piecewise(self, expr):
        """Nested ternaries on one line; the last condition is True."""
        *pairs, (last, cond) = expr.args
        if cond != sp.true:
            raise ValueError("Piecewise without a default branch")
        code = self._print(last)
        for value, c in reversed(pairs):
            code = "((%s) ? %s : %s)" % (self._print(c), self._print(value), code)
        return code

    def _print_exp(self, expr):
        """symgrad's branch-free exp (templates/c/symgrad_math.h), over which loops vectorise; else libm's."""
        if not self.vector_math:
            return super()._print_exp(expr)
        return self.helper("exp", self._print(expr.args[0]))

    def _print_tanh(self, expr):
        if not self.vector_math:
            return super()._print_tanh(expr)
        return self.helper("tanh", self._print(expr.args[0]))

    def _print_sigmoid(self, expr):
        one = "" if self.vector_math else "1"  # symgrad_sigmoid1: one value at a time, over libm's exp
        return self.helper(f"sigmoid{one}", self._print(expr.args[0]))

    def _print_softplus(self, expr):
        one = "" if self.vector_math else "1"
        return self.helper(f"softplus{one}", self._print(expr.args[0]))

    def _print_relu(self, expr):
        """x <= 0 ? 0 : x, which keeps NaN as np.maximum(x, 0) does (fmax drops it); one compare and mask."""
        x = self._print(expr.args[0])
        return "((%s) <= 0 ? 0 : (%s))" % (x, x)

    def _print_step(self, expr):
        one, zero = ("1.0F", "0.0F") if self.suffix else ("1.0", "0.0")
        return "((%s) > 0 ? %s : %s)" % (self._print(expr.args[0]), one, zero)


def c_code(expr, dtype="float64", names=None, vector_math=True):
    """C source for one expression; ``names`` renames symbols (e.g. y -> Y[k])."""
    return CPrinter(dtype, names, vector_math).doprint(sp.sympify(expr))
