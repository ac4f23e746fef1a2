"""Activation functions as a table of SymPy expressions of ``x``.

An activation's derivative always comes from ``sympy.diff``; it is then rewritten in terms of the
forward value ``out = f(net)`` when that removes every reference to ``net`` (sigma' = out (1 - out),
tanh' = 1 - out^2, ...), so the backward pass can reuse what the forward pass already holds.
The ``from_out`` column states rewrites that plain substitution cannot find; each is checked
against ``diff`` in the tests.
"""

import math
from dataclasses import dataclass, field

import sympy as sp

from symgrad.errors import ExpressionError
from symgrad.ops.functions import relu, sigmoid, softplus, stabilize, step
from symgrad.ops.parse import parse_expression
from symgrad.symbols import derived

x = derived("x", "generic", "x")
net = derived("net", "generic", "net")
out = derived("out", "generic", "out")


@dataclass(frozen=True)
class Activation:
    """An elementwise f(x) (or ``softmax``, which couples a layer's units)."""

    name: str
    expr: sp.Expr  # in x
    from_out: sp.Expr | None = None  # f'(x) written in out, when substitution cannot find it
    params: dict = field(default_factory=dict)
    latex: str = ""
    notes: tuple = ()  # stability rewrites applied to a custom expression

    @property
    def is_softmax(self):
        return self.name == "softmax"

    def at(self, arg):
        """f(arg)."""
        return self.expr.subs(x, arg)

    def derivative(self):
        """f'(x) from sympy.diff."""
        return sp.diff(self.expr, x)

    def derivative_in_out(self):
        """f'(net) in terms of out = f(net) when possible, otherwise in terms of net."""
        if self.from_out is not None:
            return self.from_out
        d = self.derivative().subs(x, net)
        f_net = self.at(net)
        if f_net != net:
            rewritten = d.subs(f_net, out)
            if net not in rewritten.free_symbols:
                return rewritten
        return d


def _number(v):
    """A SymPy number for a parameter: an Integer when it is whole (elu's alpha = 1), else a Float."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ExpressionError(f"activation parameter must be a number, got {v!r}")
    if not math.isfinite(v):
        raise ExpressionError(f"activation parameter must be finite, got {v!r}")
    return sp.Integer(int(v)) if float(v).is_integer() else sp.Float(v)


def _builtin(name, params):
    p = dict(params)
    if name == "identity" or name == "linear":
        return Activation("identity", x, latex="x")
    if name == "sigmoid":
        return Activation("sigmoid", sigmoid(x), latex=r"\sigma(x)")
    if name == "tanh":
        return Activation("tanh", sp.tanh(x), latex=r"\tanh(x)")
    if name == "relu":
        return Activation("relu", relu(x), from_out=step(out), latex=r"\max(x, 0)")
    if name == "leaky_relu":
        a = _number(p.pop("negative_slope", 0.01))
        return Activation(
            "leaky_relu",
            sp.Piecewise((x, x > 0), (a * x, True)),
            from_out=sp.Piecewise((1, out > 0), (a, True)),
            params={"negative_slope": float(a)},
            latex=r"\begin{cases} x & x > 0 \\ %s\,x & \text{otherwise}\end{cases}" % sp.latex(a),
        )
    if name == "elu":
        a = _number(p.pop("alpha", 1.0))
        return Activation(
            "elu",
            sp.Piecewise((x, x > 0), (a * (sp.exp(x) - 1), True)),
            from_out=sp.Piecewise((1, out > 0), (out + a, True)),
            params={"alpha": float(a)},
            latex=r"\begin{cases} x & x > 0 \\ %s\,(e^{x} - 1) & \text{otherwise}\end{cases}" % sp.latex(a),
        )
    if name == "softplus":
        return Activation("softplus", softplus(x), latex=r"\log(1 + e^{x})")
    if name in ("silu", "swish"):
        return Activation("silu", x * sigmoid(x), latex=r"x\,\sigma(x)")
    if name == "gelu":
        latex = r"\frac{x}{2}\left(1 + \operatorname{erf}\frac{x}{\sqrt{2}}\right)"
        return Activation("gelu", x / 2 * (1 + sp.erf(x / sp.sqrt(2))), latex=latex)
    if name == "softmax":
        return Activation("softmax", x, latex=r"\frac{e^{x_j}}{\sum_k e^{x_k}}")
    return None


BUILTIN_NAMES = ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "silu", "swish", "gelu", "softmax")
PARAMETERS = {"leaky_relu": ("negative_slope",), "elu": ("alpha",)}


def get_activation(spec, params=None):
    """An Activation from a built-in name, an expression of x (text) or a SymPy expression of x."""
    params = dict(params or {})
    if isinstance(spec, Activation):
        return spec
    if isinstance(spec, sp.Basic):
        free = spec.free_symbols
        syms = {s.name: s for s in free}
        if set(syms) - {"x"}:
            raise ExpressionError(f"activation may only use x, found {', '.join(sorted(set(syms) - {'x'}))}")
        return _custom(spec.subs(syms.get("x", x), x))
    if not isinstance(spec, str):
        raise ExpressionError(f"activation must be a name or an expression of x, got {type(spec).__name__}")
    key = spec.strip().lower()
    if key in BUILTIN_NAMES or key == "linear":
        unknown = set(params) - set(PARAMETERS.get(key, ()))
        if unknown:
            raise ExpressionError(f"activation {key!r} takes no parameter {', '.join(sorted(unknown))}")
        return _builtin(key, params)
    if params:
        raise ExpressionError("activation_params only apply to leaky_relu and elu")
    if spec.strip().isidentifier() and spec.strip() != "x":  # "x" is the identity written as an expression
        raise ExpressionError(f"unknown activation {spec!r} (built-ins: {', '.join(BUILTIN_NAMES)}; or an expression of x)")
    return _custom(parse_expression(spec, {"x": x}))


def _custom(expr):
    """A user's f(x), rewritten into stable forms, checked to have a usable derivative."""
    latex = sp.latex(expr)
    expr, notes = stabilize(expr)
    d = sp.diff(expr, x)
    if d.has(sp.Derivative, sp.Subs, sp.DiracDelta):
        raise ExpressionError(f"activation {sp.sstr(expr)} has no usable derivative ({sp.sstr(d)})")
    if x not in expr.free_symbols:
        raise ExpressionError(f"activation {sp.sstr(expr)} does not depend on x")
    return Activation("custom", expr, latex=latex, notes=tuple(notes))
