"""How a report writes numbers: one formatting for every part of it, and the relative error it shows."""


def fmt(v, digits=9):
    """v with ``digits`` significant digits, as plain text (1.5e-05 for small numbers)."""
    return f"{v:.{digits}g}"


def number(v, digits):
    """(mantissa, exponent or None) of fmt(v, digits), for printers that set the power of ten themselves."""
    s = fmt(v, digits)
    if "e" in s:
        m, e = s.split("e")
        return m, int(e)
    return s, None


def rel(a, b):
    """|a - b| relative to the larger of |a| and |b|."""
    return abs(a - b) / max(abs(a), abs(b), 1e-300)
