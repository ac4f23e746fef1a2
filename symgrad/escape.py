"""User text in generated files: one escaping function per target language, so spec text is shown, never run.

User text is everything a spec (or its file name) chooses: the description, the spec path shown in headers,
``[[expect]]`` sources, names where they appear in prose. Each function returns text that, placed where its
name says, reads back as the same characters and cannot end the literal, comment or element around it:

* every output shows invisible and line-breaking characters (C0/C1 controls, format characters such as bidi
  overrides, surrogates, U+2028, U+2029) as Python-style escapes: ``\\n``, ``\\x00``, ``\\u2028``;
* code outputs (Python, C) also double the backslash, so the escape notation stays unambiguous; a Python
  string or docstring holding :func:`python_string` text evaluates to exactly the original text;
* a C comment never contains ``*/``, ``/*`` or a trigraph; a C string literal is printable ASCII;
* LaTeX, HTML and Markdown get their special characters quoted (Markdown: raw HTML as entities, inline
  syntax backslash-escaped, no line breaks), so text cannot become markup, commands or script.

render.environment() registers these as Jinja filters, and render.render() marks the context's user text so
that a template printing it without one of them fails to render.
"""

import html as _html
import unicodedata

__all__ = ["python_string", "python_comment", "c_comment", "c_string", "latex", "html", "markdown", "FILTERS"]

_HIDDEN = frozenset(("Cc", "Cf", "Cs", "Zl", "Zp"))
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def is_hidden(c):
    """Whether a character is invisible or breaks lines (controls, format characters, surrogates, separators)."""
    return unicodedata.category(c) in _HIDDEN


def escape_code(c):
    """Python notation of one character: \\n, \\r, \\t, \\x1b, \\u2028 or \\U000e0001."""
    if c in _SHORT:
        return _SHORT[c]
    o = ord(c)
    return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"


def python_string(s):
    """Body of a Python "..." string or \"\"\"...\"\"\" docstring that evaluates to exactly ``s``."""
    out = []
    for c in str(s):
        if c == "\\" or c == '"':
            out.append("\\" + c)
        elif is_hidden(c):
            out.append(escape_code(c))
        else:
            out.append(c)
    return "".join(out)


def python_comment(s):
    """Text for a Python ``#`` comment: one line, backslashes doubled, hidden characters as escapes."""
    return "".join("\\\\" if c == "\\" else escape_code(c) if is_hidden(c) else c for c in str(s))


def c_comment(s):
    """Text for a C block comment: no ``*/``, ``/*`` or ``??`` trigraph, and no edge a neighbour could complete."""
    s = str(s)
    out = []
    for i, c in enumerate(s):
        prev = s[i - 1] if i else ""
        if c == "\\":
            out.append("\\\\")
        elif is_hidden(c):
            out.append(escape_code(c))
        elif (c == "/" and prev == "*") or (c == "*" and prev == "/") or (c == "?" and prev == "?"):
            out.append("\\" + c)
        else:
            out.append(c)
    if s and s[0] in "*/?":
        out.insert(0, " ")  # so that a "/", "*" or "?" before the text cannot pair with its first character
    if s and s[-1] in "*/?":
        out.append(" ")
    return "".join(out)


def c_string(s):
    """Body of a C "..." string literal with exactly the UTF-8 bytes of ``s`` (printable ASCII, octal escapes)."""
    out = []
    for b in str(s).encode("utf-8", "surrogatepass"):
        c = chr(b)
        if c in '\\"?':
            out.append("\\" + c)
        elif c in _SHORT:
            out.append(_SHORT[c])
        elif 0x20 <= b < 0x7F:
            out.append(c)
        else:
            out.append(f"\\{b:03o}")  # octal: at most three digits, so a following digit cannot join it
    return "".join(out)


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}"}
_TEX_UNICODE = {"σ": r"$\sigma$", "δ": r"$\delta$", "η": r"$\eta$", "∂": r"$\partial$", "⊙": r"$\odot$",
                "→": r"$\to$", "×": r"$\times$", "←": r"$\leftarrow$", "−": "-", "⁺": r"$^{+}$", "²": r"$^{2}$",
                "ᵀ": r"$^{T}$", "Σ": r"$\Sigma$", "—": "---", "…": r"\dots{}"}
_TEX_DIRECT = 0x180  # Latin-1 and Latin Extended-A: printed by pdflatex's utf8 input with T1 fonts


def latex(s):
    """LaTeX text mode: special characters quoted; hidden and unprintable characters shown as \\x00, \\u2028."""
    out = []
    for c in str(s):
        if c in _TEX:
            out.append(_TEX[c])
        elif c in _TEX_UNICODE:
            out.append(_TEX_UNICODE[c])
        elif is_hidden(c) or ord(c) >= _TEX_DIRECT:
            out.append(r"\textbackslash{}" + escape_code(c)[1:])
        else:
            out.append(c)
    return "".join(out)


def html(s):
    """HTML text or attribute value: markup characters as entities, hidden characters as escapes."""
    return _html.escape("".join(escape_code(c) if is_hidden(c) else c for c in str(s)), quote=True)


_MD_ENTITY = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_MD_PUNCT = frozenset("\\`*_[]$~|#")
_MD_BLOCK_START = frozenset("+-=")


def markdown(s):
    """Markdown inline text: raw HTML as entities, inline syntax escaped, one line (breaks shown as \\n)."""
    s = str(s)
    out = []
    for i, c in enumerate(s):
        if c in _MD_ENTITY:
            out.append(_MD_ENTITY[c])
        elif c in _MD_PUNCT or (i == 0 and c in _MD_BLOCK_START):
            out.append("\\" + c)
        elif c in ".)" and s[:i].isdigit() and i:
            out.append("\\" + c)  # "1." at the start of a block would begin a list
        elif is_hidden(c):
            out.append("\\" + escape_code(c))  # \\n in the source renders as \n
        else:
            out.append(c)
    return "".join(out)


FILTERS = {"py_str": python_string, "py_comment": python_comment, "c_comment": c_comment, "c_str": c_string,
           "latex": latex, "html": html, "md": markdown}
