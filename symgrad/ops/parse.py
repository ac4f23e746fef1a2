"""Parse expression text from spec files into SymPy without ever calling eval, exec or sympify.

The text is parsed by Python's ``ast`` module and walked node by node; only numbers, the names
the caller allows, the whitelisted functions below and the operators + - * / ** are accepted.
Anything else (attribute access, subscripts, lambdas, keywords, dunder names, huge exponents)
raises :class:`ExpressionError` before any SymPy object is built.
"""

import ast
import math

import sympy as sp

from symgrad.errors import ExpressionError
from symgrad.limits import expression_too_large
from symgrad.ops.functions import relu, sigmoid, softplus

MAX_LENGTH = 2000
MAX_DEPTH = 60
MAX_EXPONENT = 64

FUNCTIONS = {
    "exp": sp.exp,
    "log": sp.log,
    "sqrt": sp.sqrt,
    "sin": sp.sin,
    "cos": sp.cos,
    "tan": sp.tan,
    "tanh": sp.tanh,
    "sinh": sp.sinh,
    "cosh": sp.cosh,
    "atan": sp.atan,
    "erf": sp.erf,
    "abs": sp.Abs,
    "sigmoid": sigmoid,
    "softplus": softplus,
    "relu": relu,
    "max": sp.Max,
    "min": sp.Min,
}
CONSTANTS = {"pi": sp.pi, "e": sp.E}
_BINOPS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}


def parse_expression(text, names):
    """Return the SymPy expression for ``text``; ``names`` maps allowed variable names to symbols."""
    if not isinstance(text, str):
        raise ExpressionError(f"expected an expression string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression longer than {MAX_LENGTH} characters")
    if not text.strip():
        raise ExpressionError("empty expression")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"cannot parse {text!r}: {exc.msg}") from None
    expr = _Builder(names, text).build(tree.body, 0)
    too_large = expression_too_large(expr)
    if too_large:
        raise ExpressionError(f"{too_large} in {text!r}")
    return expr


class _Builder:
    def __init__(self, names, text):
        self.names = names
        self.text = text

    def fail(self, msg):
        raise ExpressionError(f"{msg} in {self.text!r}")

    def build(self, node, depth):
        """The SymPy value of ``node``, refused where a constant part is not a finite real double."""
        value = self._build(node, depth)
        if value.is_number:
            self.constant(value, node)
        elif value.has(sp.zoo, sp.nan, sp.oo, sp.I):
            self.fail(f"{ast.unparse(node)} is not a finite real expression")
        return value

    def constant(self, value, node):
        """Refuse a constant subexpression that is complex, infinite, undefined or beyond double range."""
        text = ast.unparse(node)
        if value.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
            self.fail(f"{text} is infinite or undefined")
        for f in value.atoms(sp.exp, sp.sinh, sp.cosh):  # evaluating exp(1e300) would take forever: bound it first
            arg = f.args[0]
            if abs(complex(arg.evalf(17))) > 709:
                self.fail(f"{text} overflows a double")
        try:
            v = complex(value.evalf(17))
        except (TypeError, ValueError, OverflowError):
            self.fail(f"{text} is not a finite real number")
        if v.imag != 0 or value.has(sp.I):
            self.fail(f"{text} is complex")
        if not math.isfinite(v.real) or abs(v.real) > 1.7976931348623157e308:
            self.fail(f"{text} overflows a double")

    def _build(self, node, depth):
        if depth > MAX_DEPTH:
            self.fail("expression nested too deeply")
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                self.fail(f"constant {node.value!r} is not a number")
            if isinstance(node.value, int):
                if abs(node.value) > 10**15:
                    self.fail(f"integer {node.value} is too large")
                return sp.Integer(node.value)
            if node.value != node.value or node.value in (float("inf"), float("-inf")):
                self.fail("non-finite constant")
            return sp.Float(repr(node.value))
        if isinstance(node, ast.Name):
            name = node.id
            if name.startswith("_"):
                self.fail(f"name {name!r} is not allowed")
            if name in self.names:
                return self.names[name]
            if name in CONSTANTS:
                return CONSTANTS[name]
            if name in FUNCTIONS:
                self.fail(f"function {name!r} used without arguments")
            allowed = ", ".join(sorted(self.names)) or "none"
            self.fail(f"unknown name {name!r} (allowed variables: {allowed})")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = self.build(node.operand, depth + 1)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.Pow):
                return self.power(node, depth)
            op = _BINOPS.get(type(node.op))
            if op is None:
                self.fail(f"operator {type(node.op).__name__} is not allowed")
            left = self.build(node.left, depth + 1)
            right = self.build(node.right, depth + 1)
            if isinstance(node.op, ast.Div) and right.is_zero:
                self.fail("division by zero")
            return op(left, right)
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                what = node.func.id if isinstance(node.func, ast.Name) else "this callee"
                self.fail(f"call of {what!r} is not allowed (functions: {', '.join(sorted(FUNCTIONS))})")
            if node.keywords:
                self.fail("keyword arguments are not allowed")
            args = [self.build(a, depth + 1) for a in node.args]
            fn = FUNCTIONS[node.func.id]
            expected = 2 if fn in (sp.Max, sp.Min) else 1
            if len(args) != expected:
                self.fail(f"{node.func.id}() takes {expected} argument(s), got {len(args)}")
            return fn(*args)
        self.fail(f"{type(node).__name__} is not allowed")

    def power(self, node, depth):
        base = self.build(node.left, depth + 1)
        exponent = self.build(node.right, depth + 1)
        if exponent.is_number and abs(float(exponent)) > MAX_EXPONENT:
            self.fail(f"exponent {exponent} is larger than {MAX_EXPONENT}")
        if base.is_number and exponent.is_number:
            if base.is_zero and exponent.is_negative:
                self.fail("zero to a negative power")
            magnitude = abs(complex(base.evalf(15)))
            if magnitude > 1 and float(exponent) * math.log2(magnitude) > 1024:
                self.fail(f"{base}**{exponent} is too large")
        return base**exponent
