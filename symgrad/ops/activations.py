"""Elementwise activations: each one a SymPy expression of ``x`` with its rule, in a table by name.

An activation's derivative always comes from ``sympy.diff``; it is then rewritten in terms of the
forward value ``out = f(net)`` when that removes every reference to ``net`` (sigma' = out (1 - out),
tanh' = 1 - out^2, ...), so the backward pass can reuse what the forward pass already holds.
The ``from_out`` column states rewrites that plain substitution cannot find; each is checked
against ``diff`` in the tests.
"""

import math
from dataclasses import dataclass, field, replace

import sympy as sp

from symgrad.errors import ExpressionError
from symgrad.ops.functions import log_forms, relu, sigmoid, softplus, stabilize, step
from symgrad.ops.parse import parse_expression
from symgrad.ops.softmax import Softmax
from symgrad.symbols import derived

x = derived("x", "generic", "x")
net = derived("net", "generic", "net")
out = derived("out", "generic", "out")


@dataclass(frozen=True)
class Activation:
    """An elementwise out = f(net): its SymPy form, its derivative rule and what a report says about it.

    Everything else follows from ``expr``: f' from ``sympy.diff`` (rewritten in ``out`` where that
    removes ``net``), stable logs of the output from :func:`~symgrad.ops.functions.stabilize`, and the
    code each backend prints (the printers know the functions ``expr`` is made of).
    """

    is_layer = False  # elementwise (a parameter-free layer op says True)

    name: str
    expr: sp.Expr  # in x
    from_out: sp.Expr | None = None  # f'(x) written in out, when substitution cannot find it
    params: dict = field(default_factory=dict)
    latex: str = ""
    notes: tuple = ()  # stability rewrites applied to a custom expression
    rule: str = ""  # the report's name for the derivative rule

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

    def second_derivative_in_out(self):
        """f''(net) from sympy.diff, with f(net) written as out where it appears (ReLU'' = 0, as PyTorch)."""
        d2 = sp.diff(self.expr, x, 2).subs(x, net)
        f_net = self.at(net)
        return d2 if f_net == net else d2.subs(f_net, out)

    def describe_rule(self):
        """The rule a report names for d out / d net."""
        return self.rule or f"derivative of the activation {self.name} (SymPy's diff)"

    def log_forms(self, value, arg):
        """{log(g(value)): stable form in arg} for the logs of the output that overflow or hit log(0) as written."""
        return log_forms(value, self.at(arg))


def _number(v):
    """A SymPy number for a parameter: an Integer when it is whole (elu's alpha = 1), else a Float."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ExpressionError(f"activation parameter must be a number, got {v!r}")
    if not math.isfinite(v):
        raise ExpressionError(f"activation parameter must be finite, got {v!r}")
    return sp.Integer(int(v)) if float(v).is_integer() else sp.Float(v)


def _leaky_relu(negative_slope=0.01):
    a = _number(negative_slope)
    return Activation("leaky_relu", sp.Piecewise((x, x > 0), (a * x, True)),
                      from_out=sp.Piecewise((1, out > 0), (a, True)), params={"negative_slope": float(a)},
                      latex=r"\begin{cases} x & x > 0 \\ %s\,x & \text{otherwise}\end{cases}" % sp.latex(a),
                      rule=f"derivative of leaky ReLU: 1 where the net input is positive, else {sp.sstr(a)}")


def _elu(alpha=1.0):
    a = _number(alpha)
    return Activation("elu", sp.Piecewise((x, x > 0), (a * (sp.exp(x) - 1), True)),
                      from_out=sp.Piecewise((1, out > 0), (out + a, True)), params={"alpha": float(a)},
                      latex=r"\begin{cases} x & x > 0 \\ %s\,(e^{x} - 1) & \text{otherwise}\end{cases}" % sp.latex(a),
                      rule="derivative of ELU: 1 where the net input is positive, else out + alpha")


# name -> a function of the activation's parameters (keyword arguments) returning the op
ACTIVATIONS = {
    "identity": lambda: Activation("identity", x, latex="x", rule="derivative of the identity: 1"),
    "sigmoid": lambda: Activation(
        "sigmoid", sigmoid(x), latex=r"\sigma(x)",
        rule="derivative of the sigmoid: σ'(x) = σ(x)(1 - σ(x)), written with the neuron's output"),
    "tanh": lambda: Activation("tanh", sp.tanh(x), latex=r"\tanh(x)",
                               rule="derivative of tanh: 1 - tanh(x)², written with the neuron's output"),
    "relu": lambda: Activation("relu", relu(x), from_out=step(out), latex=r"\max(x, 0)",
                               rule="derivative of ReLU: 1 where the net input is positive, else 0"),
    "leaky_relu": _leaky_relu,
    "elu": _elu,
    "softplus": lambda: Activation("softplus", softplus(x), latex=r"\log(1 + e^{x})",
                                   rule="derivative of softplus: σ(x)"),
    "silu": lambda: Activation("silu", x * sigmoid(x), latex=r"x\,\sigma(x)"),
    "gelu": lambda: Activation("gelu", x / 2 * (1 + sp.erf(x / sp.sqrt(2))),
                               latex=r"\frac{x}{2}\left(1 + \operatorname{erf}\frac{x}{\sqrt{2}}\right)"),
    "softmax": Softmax,
}
ALIASES = {"linear": "identity", "swish": "silu"}
BUILTIN_NAMES = ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "silu", "swish", "gelu", "softmax")


def register_activation(name, factory):
    """Make ``name`` usable in specs: ``factory(**activation_params)`` returns an Activation (or a layer op)."""
    if not name.isidentifier() or name in ACTIVATIONS or name in ALIASES:
        raise ValueError(f"activation name {name!r} is taken or not an identifier")
    ACTIVATIONS[name] = factory


def _parameters(factory):
    """The names of the parameters an activation takes (its factory's keyword arguments)."""
    code = getattr(factory, "__code__", None)
    return () if code is None else code.co_varnames[:code.co_argcount]


def get_activation(spec, params=None):
    """An Activation (or a layer op such as softmax) from a registered name or an expression of x (text or SymPy)."""
    params = dict(params or {})
    if isinstance(spec, Activation) or getattr(spec, "is_layer", False):
        return spec
    if isinstance(spec, sp.Basic):
        free = spec.free_symbols
        syms = {s.name: s for s in free}
        if set(syms) - {"x"}:
            raise ExpressionError(f"activation may only use x, found {', '.join(sorted(set(syms) - {'x'}))}")
        return _custom(spec.subs(syms.get("x", x), x))
    if not isinstance(spec, str):
        raise ExpressionError(f"activation must be a name or an expression of x, got {type(spec).__name__}")
    key = ALIASES.get(spec.strip().lower(), spec.strip().lower())
    if key in ACTIVATIONS:
        factory = ACTIVATIONS[key]
        unknown = set(params) - set(_parameters(factory))
        if unknown:
            raise ExpressionError(f"activation {key!r} takes no parameter {', '.join(sorted(unknown))}")
        return _stable(factory(**params))
    if params:
        with_params = [n for n, f in ACTIVATIONS.items() if _parameters(f)]
        raise ExpressionError(f"activation_params only apply to {' and '.join(with_params)}")
    if spec.strip().isidentifier() and spec.strip() != "x":  # "x" is the identity written as an expression
        names = ", ".join(list(ACTIVATIONS) + list(ALIASES))
        raise ExpressionError(f"unknown activation {spec!r} (built-ins: {names}; or an expression of x)")
    return _custom(parse_expression(spec, {"x": x}))


def _stable(act):
    """A registered activation with the stable rewrites applied to its expression (noted for the report)."""
    if act.is_layer:
        return act
    expr, notes = stabilize(act.expr)
    return act if not notes else replace(act, expr=expr, notes=tuple(act.notes) + tuple(notes))


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
