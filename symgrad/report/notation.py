"""How a report typesets a symbol's name: its base, superscript and subscript, in LaTeX and in MathML.

* The report's own notation (names with braces, ``^`` or a prime: ``delta^{(2)}_{3}``, ``a^{(0)}``,
  ``h_{j}``, ``f'_2``; and ``eta``) and the derivation's symbols (``net_h1``, ``E_total``,
  ``delta_o1``) are a base, an optional superscript and a subscript: a Greek name is its letter
  (delta -> δ), one letter stays italic, a word is upright (net, out, target); a subscript that is a
  letter and digits (h1, m36) is italic, a longer name upright (total, linear2_1).
* A user's name (an identifier, so never mistaken for notation) is one symbol: a letter with digits
  is subscripted as SymPy does (w1 -> w_1), a Greek name is its letter, and any other name is set
  upright as written (fc1_w36_531, hidden_w1_1).
"""

import re

import sympy as sp
from sympy.printing.latex import greek_letters_set
from sympy.printing.pretty.pretty_symbology import greek_unicode

from symgrad.symbols import Derived

_SHORT = re.compile(r"([A-Za-z])(\d*)")


def parts(symbol):
    """(base, superscript or None, subscript or None) of a symbol; each a (kind, text) with kind greek|letter|word|raw."""
    name = symbol.name
    if name.endswith("^+"):  # a parameter after the update: the user's name, marked +
        base, _, sub = parts(sp.Symbol(name[:-2]))
        return base, ("raw", "+"), sub
    sup = sub = None
    if "^{" in name:  # delta^{(2)}_{3}, w^{hh}_{11}: a superscript in braces, then the subscript
        name, rest = name.split("^{", 1)
        k, rest = rest.split("}", 1)
        sup = ("raw", k)
        sub = rest[1:].strip("{}") if rest.startswith("_") else None
    elif (isinstance(symbol, Derived) or re.search(r"[{'^]", name)) and "_" in name:
        name, sub = name.split("_", 1)
        sub = sub.strip("{}")
    elif _SHORT.fullmatch(name) and name[1:]:
        name, sub = name[0], name[1:]  # a user's w1: w with subscript 1
    return _piece(name, base=True), sup, None if sub is None else _piece(sub, base=False)


def _piece(text, base):
    if text in greek_letters_set:
        return ("greek", text)
    if len(text) == 1 or (base and text.endswith("'") and len(text) == 2) or re.fullmatch(r"\d+|[A-Za-z]\d+", text):
        return ("letter", text)
    return ("word", text)


_PARTIAL = re.compile(r"\\partial E / \\partial (.+)")  # the upstream gradient dE/da^{(l)} as one vector symbol


def latex_name(symbol):
    """The LaTeX of a symbol's name."""
    m = _PARTIAL.fullmatch(symbol.name)
    if m:
        return r"\frac{\partial E}{\partial %s}" % latex_name(sp.Symbol(m.group(1)))
    base, sup, sub = parts(symbol)
    s = _latex_piece(base)
    if sub is not None:
        s += "_{%s}" % _latex_piece(sub)
    if sup is not None:
        s += "^{%s}" % _latex_piece(sup)
    return s


def _latex_piece(piece):
    kind, text = piece
    if kind == "greek":
        return "\\" + text
    if kind == "word":
        return r"\mathrm{%s}" % text.replace("_", r"\_")
    return text


def mathml_name(symbol, el):
    """The MathML element of a symbol's name; ``el(tag, *children, text=...)`` makes elements."""
    m = _PARTIAL.fullmatch(symbol.name)
    if m:
        return el("mfrac", el("mrow", el("mo", text="\u2202"), el("mi", text="E")),
                  el("mrow", el("mo", text="\u2202"), mathml_name(sp.Symbol(m.group(1)), el)))
    base, sup, sub = parts(symbol)
    b = _mathml_piece(base, el)
    if sub is not None and sup is not None:
        return el("msubsup", b, _mathml_piece(sub, el), _mathml_piece(sup, el))
    if sub is not None:
        return el("msub", b, _mathml_piece(sub, el))
    if sup is not None:
        return el("msup", b, _mathml_piece(sup, el))
    return b


def _mathml_piece(piece, el):
    kind, text = piece
    if kind == "greek":
        return el("mi", text=greek_unicode[text])
    if kind == "word":
        return el("mi", text=text, mathvariant="normal")
    if kind == "raw":
        return el("mrow", *[el("mn" if c.isdigit() else "mi" if c.isalpha() else "mo", text=c)
                            for c in re.findall(r"\d+|.", text)])
    m = _SHORT.fullmatch(text)
    if m and m.group(2):
        return el("mrow", el("mi", text=m.group(1)), el("mn", text=m.group(2)))
    return el("mn" if text.isdigit() else "mi", text=text)
