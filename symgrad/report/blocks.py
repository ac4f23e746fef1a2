"""What a report is made of: sections of blocks holding SymPy expressions, numbers and text.

Blocks never hold format-specific strings; layout.py prints them as LaTeX, Markdown or HTML (MathML).
"""

from dataclasses import dataclass, field

import sympy as sp


def sym(name):
    """A real SymPy symbol named name (report symbols such as delta^{(2)}_{3})."""
    return sp.Symbol(name, real=True)


class Partial(sp.Expr):
    """The Leibniz symbol d(num)/d(den), printed as a fraction of partials."""

    is_commutative = True

    def __new__(cls, num, den):
        return sp.Expr.__new__(cls, num, den)

    def _latex(self, printer):
        return r"\frac{\partial %s}{\partial %s}" % (printer._print(self.args[0]), printer._print(self.args[1]))


@dataclass
class Subst:
    """An expression printed with every symbol (and Leibniz factor) replaced by its number."""

    expr: sp.Expr


@dataclass
class Math:
    """A displayed chain of equalities ``parts[0] = parts[1] = ...`` (expressions, Subst or floats)."""

    parts: list
    split: bool = False  # a sum in the parts is broken into one line per term


@dataclass
class Aligned:
    """Math blocks displayed as one, their = signs in one column (the forward pass)."""

    steps: list


@dataclass
class Text:
    """A paragraph: str pieces, inline expressions and floats."""

    frags: list


@dataclass
class Table:
    """Header strings and rows of cells (str, expression, Subst or float)."""

    header: list
    rows: list


@dataclass
class Diagram:
    """The network drawing as SVG and as TikZ."""

    svg: str
    tikz: str


@dataclass
class Section:
    """A titled list of blocks."""

    title: str
    blocks: list = field(default_factory=list)


@dataclass
class Report:
    """Title, sections, and the number map that Subst parts are printed with."""

    title: str
    sections: list
    values: dict  # symbol or Partial -> float
    digits: int

