"""Checks shared by the ops, the model classes and the loader: names, numbers, choices."""

import difflib
import keyword
import re

import numpy as np

from symgrad.errors import SpecError
from symgrad.limits import check

INIT_SCHEMES = ("xavier", "he", "uniform", "zeros")
BIAS_MODES = ("unit", "shared", "none")
C_KEYWORDS = frozenset(
    "auto break case char const continue default do double else enum extern float for goto if inline int long "
    "register restrict return short signed sizeof static struct switch typedef union unsigned void volatile while "
    "_Bool _Complex _Imaginary".split()
)
# a model name is a module name, a C prefix and a header file name: it must not shadow what generated code imports
MODEL_RESERVED = frozenset(
    "np numpy math ctypes functools generated symgrad main "
    "assert complex ctype errno fenv float inttypes iso646 limits locale setjmp signal stdarg stdbool stddef stdint "
    "stdio stdlib string tgmath time wchar wctype stdalign stdnoreturn threads uchar stdatomic".split()
)


def check_name(name, key, what="name"):
    """A user name (input, parameter, neuron, output, layer): any identifier that starts with a letter.

    Generated code never uses a user name where it could mean something else: symgrad.symbols maps
    names that Python or C reserve to other identifiers, and reports keep the name as written.
    """
    if not isinstance(name, str):
        raise SpecError(f"{what} must be a string, got {type(name).__name__}", key)
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
        raise SpecError(f"{what} {name!r} is not an identifier (letters, digits and _; starting with a letter)", key)
    if len(name) > 63:
        raise SpecError(f"{what} {name!r} is longer than 63 characters", key)
    return name


def check_model_name(name, key="name"):
    """A model name also names the generated module, its C functions and header: keywords and shadowing names are refused."""
    check_name(name, key, "model name")
    if keyword.iskeyword(name) or name in C_KEYWORDS:
        raise SpecError(f"model name {name!r} is a Python or C keyword (try {name}_model)", key)
    if name.lower().startswith("symgrad") or name in MODEL_RESERVED:
        raise SpecError(f"model name {name!r} would shadow a module or header that generated code uses "
                        f"(try {name}_model)", key)
    return name


def input_names(inputs):
    """Input names from a list of names, or from a count n (x1..xn)."""
    if isinstance(inputs, bool) or not isinstance(inputs, (int, list, tuple)):
        raise SpecError("inputs must be a count or a list of names", "inputs")
    if isinstance(inputs, int):
        if inputs < 1:
            raise SpecError("inputs must be at least 1", "inputs")
        check("SYMGRAD_MAX_PARAMS", inputs, "the number of inputs", "inputs")
        inputs = [f"x{k + 1}" for k in range(inputs)]
    names = [check_name(n, f"inputs[{k}]", "input name") for k, n in enumerate(inputs)]
    if not names:
        raise SpecError("at least one input is required", "inputs")
    for k, n in enumerate(names):
        if n in names[:k]:
            raise SpecError(f"input name {n!r} is used twice", "inputs")
    return names


def check_numbers(value, key):
    """Refuse anything but numbers in a (nested) list: booleans and numeric strings are not numbers."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, np.ndarray):
            if v.dtype.kind not in "fiu":
                raise SpecError(f"expected numbers, got an array of {v.dtype}", key)
        elif isinstance(v, (list, tuple)):
            stack.extend(reversed(v))
        elif isinstance(v, (bool, np.bool_)):
            raise SpecError(f"expected numbers, got the boolean {str(bool(v)).lower()}", key)
        elif not isinstance(v, (int, float, np.integer, np.floating)):
            what = f"the string {v!r} (write numbers without quotes)" if isinstance(v, str) else f"{type(v).__name__} {v!r}"
            raise SpecError(f"expected numbers, got {what}", key)


def finite_array(value, key, shape=None):
    check_numbers(value, key)
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise SpecError("expected numbers", key) from None
    if arr.dtype == object:
        raise SpecError("expected a rectangular array of numbers", key)
    if not np.all(np.isfinite(arr)):
        raise SpecError("numbers must be finite (no nan or inf)", key)
    if shape is not None and arr.shape != tuple(shape):
        raise SpecError(f"expected shape {tuple(shape)}, got {arr.shape}", key)
    return arr


def choice_message(what, value, choices):
    close = difflib.get_close_matches(str(value), choices, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {what} {value!r}{hint}; choose one of {', '.join(choices)}"


def flatten_names(names, shape, key):
    if isinstance(names, (list, tuple)) and names and all(isinstance(r, (list, tuple)) for r in names):
        if len(names) != shape[0] or any(len(r) != shape[1] for r in names):
            raise SpecError(f"expected {shape[0]} rows of {shape[1]} names", key)
        return [s for r in names for s in r]
    return names


# ---------------------------------------------------------------------------------------------
# TOML loading


def names(given, n, key, default):
    """The given names (n of them, each checked), or the default list."""
    if given is None:
        return default
    if isinstance(given, str):
        given = [given]
    if len(given) != n:
        raise SpecError(f"expected {n} names, got {len(given)}", key)
    return [check_name(s, f"{key}[{k}]") for k, s in enumerate(given)]


def unit_names(layer, n, taken=()):
    """Default neuron names of a layer: <layer>1..<layer>n, or <layer>_1.. when the layer's name ends in a digit
    (unit 1 of linear2 is linear2_1, never linear21) or when the plain names are taken (layer x beside input x1)."""
    plain = [f"{layer}{j + 1}" for j in range(n)]
    if layer[-1:].isdigit() or set(plain) & set(taken):
        return [f"{layer}_{j + 1}" for j in range(n)]
    return plain
