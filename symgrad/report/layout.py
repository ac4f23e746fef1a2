"""Derivation reports laid out: the content built once (content.build), printed for one format, laid out by templates.

Formats: ``tex`` (standalone LaTeX), ``pdf`` (that LaTeX through pdflatex), ``md`` (GitHub Markdown
with ``$...$`` math) and ``html`` (one self-contained file, math as presentation MathML, no scripts).
Expressions are printed by SymPy's LaTeX and MathML printers, subclassed only to print numbers with
``digits`` significant digits, the Leibniz symbol, and (in the substituted forms) every symbol as
its value.
"""

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import sympy as sp
from sympy.printing.latex import LatexPrinter
from sympy.printing.mathml import MathMLPresentationPrinter

from symgrad.errors import ToolError
from symgrad.escape import html, latex, markdown
from symgrad.render import render
from symgrad.report.blocks import Aligned, Diagram, Math, Subst, Table, Text
from symgrad.report.content import build
from symgrad.report.notation import latex_name, mathml_name
from symgrad.report.numbers import number
from symgrad.spec import as_model

FORMATS = ("md", "tex", "html", "pdf")
TEX_PACKAGES = "texlive-latex-base texlive-latex-recommended texlive-latex-extra texlive-pictures"


class ReportLatexPrinter(LatexPrinter):
    """LaTeX with products as a·b in the order given, numbers to ``digits``, and optional values."""

    def __init__(self, digits=9, values=None):
        super().__init__({"mul_symbol": "dot", "order": "none"})
        self.digits, self.values = digits, values

    def _print(self, expr, **kwargs):
        if self.values is not None and isinstance(expr, sp.Basic) and not expr.is_Number and expr in self.values:
            v = self.values[expr]
            s = self._number(v)
            return r"\left(%s\right)" % s if v < 0 else s
        return super()._print(expr, **kwargs)

    def _number(self, v):
        m, e = number(v, self.digits)
        return m if e is None else r"%s \cdot 10^{%d}" % (m, e)

    def _print_Float(self, expr):
        return self._number(float(expr))

    def _print_Partial(self, expr):
        return r"\frac{\partial %s}{\partial %s}" % (self._print(expr.args[0]), self._print(expr.args[1]))

    def _print_Symbol(self, expr, style="plain"):
        return latex_name(expr)

    def _print_Function(self, expr, exp=None):
        """The report's f and f' applied: f'(net), not the upright operator name SymPy gives a name with a prime."""
        if expr.func.__name__ in ("f", "f'"):
            s = r"%s\left(%s\right)" % (expr.func.__name__, ", ".join(self._print(a) for a in expr.args))
            return s if exp is None else r"%s^{%s}" % (s, exp)
        return super()._print_Function(expr, exp)


class ReportMathMLPrinter(MathMLPresentationPrinter):
    """Presentation MathML with the same choices as ReportLatexPrinter."""

    def __init__(self, digits=9, values=None):
        super().__init__({"mul_symbol": "dot", "order": "none"})
        self.digits, self.values = digits, values

    def _el(self, tag, *children, text=None, **attributes):
        e = self.dom.createElement(tag)
        for k, v in attributes.items():
            e.setAttribute(k, v)
        if text is not None:
            e.appendChild(self.dom.createTextNode(text))
        for c in children:
            e.appendChild(c)
        return e

    def _print(self, expr, **kwargs):
        if self.values is not None and isinstance(expr, sp.Basic) and not expr.is_Number and expr in self.values:
            v = self.values[expr]
            n = self._number(v)
            return self._el("mrow", self._el("mo", text="("), n, self._el("mo", text=")")) if v < 0 else n
        return super()._print(expr, **kwargs)

    def _number(self, v):
        m, e = number(v, self.digits)
        if m.startswith("-"):
            mant = self._el("mrow", self._el("mo", text="\u2212"), self._el("mn", text=m[1:]))
        else:
            mant = self._el("mn", text=m)
        if e is None:
            return mant
        return self._el("mrow", mant, self._el("mo", text="\u00b7"),
                        self._el("msup", self._el("mn", text="10"), self._el("mn", text=str(e))))

    def _print_Float(self, expr):
        return self._number(float(expr))

    def _ordered(self, order, method, expr):
        old = self._settings["order"]
        self._settings["order"] = order
        try:
            return method(expr)
        finally:
            self._settings["order"] = old

    def _print_Mul(self, expr):
        """Factors in the order given (the parent reorders unless order is 'old')."""
        return self._ordered("old", super()._print_Mul, expr)

    def _print_Add(self, expr):
        return self._ordered("none", super()._print_Add, expr)

    def _print_Symbol(self, sym, style="plain"):
        return mathml_name(sym, self._el)

    _print_MatrixSymbol = _print_Symbol

    def _print_Partial(self, expr):
        def part(a):
            return self._el("mrow", self._el("mo", text="\u2202"), self._print(a))
        return self._el("mfrac", part(expr.args[0]), part(expr.args[1]))

    def _print_sigmoid(self, expr):
        return self._el("mrow", self._el("mi", text="\u03c3"), self._el("mo", text="("), self._print(expr.args[0]),
                        self._el("mo", text=")"))


class _Layout:
    """Prints blocks to strings of one format."""

    def __init__(self, fmt, report):
        self.fmt, self.rep = fmt, report
        self.digits = report.digits

    def expr(self, e, values=False):
        vals = self.rep.values if values else None
        if self.fmt == "html":
            p = ReportMathMLPrinter(self.digits, vals)
            return p._print(e).toxml() if not isinstance(e, float) else p._number(e).toxml()
        p = ReportLatexPrinter(self.digits, vals)
        return p._number(e) if isinstance(e, float) else p.doprint(e)

    def part(self, x):
        if isinstance(x, Subst):
            return self.expr(x.expr, values=True)
        return self.expr(float(x) if isinstance(x, (int, float)) else x)

    def inline(self, frag):
        if isinstance(frag, str):
            return _TEXT[self.fmt](frag)
        s = self.part(frag)
        if self.fmt == "html":
            return f"<math>{s}</math>"
        return f"${s}$"

    def frags(self, frags):
        return "".join(self.inline(f) for f in frags)

    def _rows(self, m):
        """(left side, relation, right side) per line of a Math block; a split sum gets one line per term."""
        if m.split:
            lhs, rhs = m.parts
            terms = [self.part(t) for t in (rhs.args if isinstance(rhs, sp.Add) else [rhs])]
            return [(self.part(lhs), "=", terms[0])] + [("", "+", t) for t in terms[1:]]
        parts = [self.part(p) for p in m.parts]
        if len(parts) == 1:
            return [(parts[0], None, None)]
        return [(parts[0], "=", parts[1])] + [("", "=", p) for p in parts[2:]]

    def math(self, m):
        """One displayed block: a Math, or an Aligned list of them sharing one column of = signs."""
        groups = [self._rows(x) for x in (m.steps if isinstance(m, Aligned) else [m])]
        if self.fmt == "html":
            rows = []
            for g, group in enumerate(groups):
                for r, (lhs, rel, rhs) in enumerate(group):
                    gap = ' class="step"' if g and not r else ""
                    right = f"<mtd><mo>{rel}</mo>{rhs}</mtd>" if rel else "<mtd></mtd>"
                    rows.append(f"<mtr{gap}><mtd>{lhs}</mtd>{right}</mtr>")
            return '<math display="block"><mtable>' + "".join(rows) + "</mtable></math>"
        lines, seps = [], []
        for g, group in enumerate(groups):
            for r, (lhs, rel, rhs) in enumerate(group):
                seps.append(r" \\[0.6em]" if g and not r else r" \\")  # a little space before each further step
                lines.append(lhs if rel is None else f"{lhs} &= {rhs}".lstrip() if rel == "=" else rf"&\quad + {rhs}")
        body = lines[0] + "".join(f"{sep}\n{line}" for sep, line in zip(seps[1:], lines[1:]))
        if self.fmt == "tex":
            return "\\begin{align*}\n" + body + "\n\\end{align*}"
        return "$$\n\\begin{aligned}\n" + body + "\n\\end{aligned}\n$$"

    def table(self, t):
        cell = self.inline
        if self.fmt == "html":
            head = "".join(f"<th>{html(h)}</th>" for h in t.header)
            body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in r) + "</tr>\n" for r in t.rows)
            return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>"
        if self.fmt == "md":
            lines = ["| " + " | ".join(markdown(h) for h in t.header) + " |", "|" + "---|" * len(t.header)]
            lines += ["| " + " | ".join(cell(c) if isinstance(c, str) else cell(c).replace("|", r"\|") for c in r) + " |"
                      for r in t.rows]  # text cells: markdown() already escaped | (math: escaped here)
            return "\n".join(lines)
        cols = "l" * len(t.header)
        lines = [r"\begin{longtable}{%s}" % cols, r"\toprule", " & ".join(latex(h) for h in t.header) + r" \\",
                 r"\midrule", r"\endhead"]
        lines += [" & ".join(cell(c) for c in r) + r" \\" for r in t.rows]
        lines += [r"\bottomrule", r"\end{longtable}"]
        return "\n".join(lines)

    def block(self, b):
        if isinstance(b, (Math, Aligned)):
            return self.math(b)
        if isinstance(b, Text):
            return self.frags(b.frags)
        if isinstance(b, Table):
            return self.table(b)
        if isinstance(b, Diagram):
            return b.tikz if self.fmt == "tex" else b.svg
        raise TypeError(type(b).__name__)


# prose of every format goes through symgrad.escape: user text (descriptions, [[expect]] sources) included
_TEXT = {"html": html, "tex": latex, "md": markdown}


def layout(rep, fmt):
    """The report laid out by templates/report/report.<fmt>.j2."""
    lay = _Layout(fmt, rep)
    sections = [{"title": s.title, "blocks": [lay.block(b) for b in s.blocks]} for s in rep.sections]
    title = _TEXT[fmt](rep.title)
    return render(f"report/report.{fmt}.j2", title=title, sections=sections)


def report(spec, fmt="md", params=None, digits=9, steps=0, param_values=None, hessian=False):
    """The derivation report of ``spec`` (path or model) as text (``fmt`` md, tex or html; pdf: use write_report)."""
    if fmt not in ("md", "tex", "html"):
        raise ValueError(f"format must be md, tex or html (pdf: write_report), got {fmt!r}")
    model = as_model(spec)
    return layout(build(model, params, digits, steps, param_values, hessian), fmt)


def latex_summary(spec, digits=9):
    """LaTeX math (for Jupyter's MathJax): every reported gradient, its value and its finite-difference check."""
    rep = build(as_model(spec), None, digits)
    lay = _Layout("md", rep)
    table = next(b for sec in rep.sections if sec.title.startswith("Summary") for b in sec.blocks if isinstance(b, Table))
    head = " & ".join(r"\text{%s}" % latex(h) for h in table.header)
    rows = [" & ".join(lay.part(c) if not isinstance(c, str) else r"\text{%s}" % latex(c) for c in row) for row in table.rows]
    body = " \\\\\n".join([head, r"\hline"] + rows)
    return "$$\n\\begin{array}{l%s}\n%s\n\\end{array}\n$$" % ("r" * (len(table.header) - 1), body.replace(r"\hline \\", r"\hline"))


def _latex_error(log):
    """One line from a pdflatex log: its first error ("! ...") and the source line it names."""
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("!"):
            where = next((ln.split(" ", 1)[0] for ln in lines[i + 1:i + 12] if re.match(r"l\.\d+", ln)), "")
            return line.lstrip("! ").strip() + (f" (report.tex {where.replace('l.', 'line ')})" if where else "")
    return lines[-1].strip() if lines else "no log"


def pdf(tex):
    """PDF bytes of a LaTeX document, built with pdflatex in a temporary folder."""
    exe = shutil.which("pdflatex")
    if exe is None:
        raise ToolError(f"pdflatex is not installed; install the Debian packages {TEX_PACKAGES}")
    with tempfile.TemporaryDirectory(prefix="symgrad-report-") as tmp:
        Path(tmp, "report.tex").write_text(tex, encoding="utf-8")
        for _ in range(2):  # longtable needs a second pass for its column widths
            r = subprocess.run([exe, "-interaction=nonstopmode", "-halt-on-error", "report.tex"], cwd=tmp,
                               capture_output=True, text=True, errors="replace", timeout=300)
            if r.returncode != 0:
                raise ToolError(f"pdflatex failed: {_latex_error(r.stdout)}")
        return Path(tmp, "report.pdf").read_bytes()
