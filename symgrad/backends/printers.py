"""What every backend's printer shares: renamed symbols and brackets from the printed text's precedence."""

from sympy.printing.precedence import PRECEDENCE, precedence


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
        if expr.could_extract_minus_sign() and not expr.is_Rational:
            return "-" + self.parenthesize(-expr, PRECEDENCE["Mul"], strict=True)
        return super()._print_Mul(expr, **kwargs)

    def parenthesize(self, item, level, strict=False):
        prec = self.printed_precedence(item)
        if prec < level or (not strict and prec <= level):
            return "(%s)" % self._print(item)
        return self._print(item)
