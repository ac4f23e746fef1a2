"""Bounds on the work a spec or a command line can ask for, each raisable by an environment variable.

Every limit is checked before the work it bounds starts, and a refusal is a SpecError that names
the limit, the value asked for and the variable that raises it.
"""

import math
import os
import stat

import sympy as sp

from symgrad.errors import SpecError

# variable -> (default, what it bounds)
LIMITS = {
    "SYMGRAD_MAX_SPEC_BYTES": (1_000_000, "size of a spec file in bytes"),
    "SYMGRAD_MAX_PARAMS": (5_000_000, "scalar parameters (and inputs or units) of a model"),
    "SYMGRAD_MAX_TERMS": (2_000, "terms of an expression once its powers and products are multiplied out"),
    "SYMGRAD_MAX_STEPS": (1_000, "gradient steps of report --steps"),
    "SYMGRAD_MAX_ONNX_BYTES": (200_000_000, "size of an ONNX model file in bytes"),
}


def limit(name):
    """The current value of limit ``name``: its environment variable if set, else the default."""
    default, _ = LIMITS[name]
    text = os.environ.get(name)
    if text is None or not text.strip():
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise SpecError(f"environment variable {name} must be a positive integer, got {text!r}")
    return value


def check(name, value, what, key=None, file=None):
    """Refuse ``value`` above limit ``name``, saying what was asked for and how to raise the limit."""
    bound = limit(name)
    if value > bound:
        raise SpecError(f"{what} is {value}, more than the limit of {bound} (set the environment variable {name} "
                        f"to raise it)", key, file)


def read_bounded(path, name, noun):
    """The bytes of a regular file of at most limit ``name`` bytes (``noun`` names the file in messages)."""
    bound = limit(name)
    try:
        st = os.stat(path)  # before opening: opening a FIFO would block, reading /dev/zero would never end
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise SpecError(f"cannot read the {noun}: {kind}", file=path)
        check(name, st.st_size, f"the {noun} file's size in bytes", file=path)
        with open(path, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise SpecError(f"cannot read the {noun}: not a regular file", file=path)
            data = f.read(bound + 1)
    except FileNotFoundError:
        raise SpecError("file not found", file=path) from None
    except OSError as exc:
        raise SpecError(f"cannot read file: {exc.strerror or exc}", file=path) from None
    check(name, len(data), f"the {noun} file's size in bytes", file=path)
    return data


def expanded_terms(expr, cap=10**12):
    """An upper bound on the number of terms of ``expr`` multiplied out (capped), without expanding it."""
    return min(_terms(sp.sympify(expr), {}, cap), cap)


def _terms(e, memo, cap):
    if e in memo:
        return memo[e]
    if e.is_Atom:
        n = 1
    elif e.is_Add:
        n = sum(_terms(a, memo, cap) for a in e.args)
    elif e.is_Mul:
        n = 1
        for a in e.args:
            n = min(n * _terms(a, memo, cap), cap)
    elif e.is_Pow and e.exp.is_Integer and abs(e.exp) > 1:  # a negative power is multiplied out below a fraction bar
        k, power = _terms(e.base, memo, cap), abs(int(e.exp))
        degree = _degree(e.base, {})
        n = min(_multinomial(power, k, cap), _monomials(None if degree is None else degree * power,
                                                        len(e.base.free_symbols), cap))
    else:  # a function or a non-integer power: one term, but its arguments are multiplied out on their own
        n = max([1] + [_terms(a, memo, cap) for a in e.args])
    memo[e] = min(n, cap)
    return memo[e]


def _multinomial(n, k, cap):
    """Terms of (a_1 + ... + a_k)**n multiplied out: C(n + k - 1, k - 1)."""
    if k <= 1:
        return 1
    return min(math.comb(n + k - 1, min(k - 1, n)), cap)


def _monomials(degree, variables, cap):
    """Monomials of total degree <= degree in ``variables`` variables (non-polynomial parts counted as variables)."""
    if degree is None:
        return cap
    return min(math.comb(degree + variables, variables), cap) if variables else 1


def _degree(e, memo):
    """Total degree of ``e`` as a polynomial in its free symbols and non-polynomial subexpressions (None: unknown)."""
    if e in memo:
        return memo[e]
    if e.is_Symbol:
        d = 1
    elif e.is_Number or not e.free_symbols:
        d = 0
    elif e.is_Add:
        parts = [_degree(a, memo) for a in e.args]
        d = None if None in parts else max(parts)
    elif e.is_Mul:
        parts = [_degree(a, memo) for a in e.args]
        d = None if None in parts else sum(parts)
    elif e.is_Pow and e.exp.is_Integer and e.exp > 0:
        b = _degree(e.base, memo)
        d = None if b is None else b * int(e.exp)
    else:
        d = None
    memo[e] = d
    return d


def expression_too_large(expr):
    """The refusal message for an expression whose multiplied-out form exceeds SYMGRAD_MAX_TERMS terms, else None."""
    bound = limit("SYMGRAD_MAX_TERMS")
    n = expanded_terms(expr, cap=10 * bound)
    if n <= bound:
        return None
    shown = f"{n}" if n < 10 * bound else f"more than {10 * bound}"
    return (f"expression multiplies out to {shown} terms, more than the limit of {bound} (set the environment "
            f"variable SYMGRAD_MAX_TERMS to raise it)")


def check_expression(expr, key=None):
    """Refuse (SpecError at ``key``) an expression whose multiplied-out form exceeds SYMGRAD_MAX_TERMS terms."""
    message = expression_too_large(expr)
    if message:
        raise SpecError(message, key)
