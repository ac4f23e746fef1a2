"""What every op shares: the named step it adds to a forward program, and the parameter-free layer.

A parameter-free layer is a vector function ``out_j = f_j(x_1, ..., x_n)`` of the previous layer's
outputs. A subclass states ``forward`` (SymPy expressions of the inputs) and, where it knows better
than the generic forms, stable logs and per-backend array code. Everything else follows: the
neuron-level steps, their derivatives (``sympy.diff``), the vector-Jacobian product the batched code
runs backward (``vjp``), the generic NumPy and C code and the report's wording.
"""

from dataclasses import dataclass, field

import sympy as sp

from symgrad.ops.functions import log_forms
from symgrad.symbols import derived


@dataclass
class Step:
    """``sym = expr``; ``local`` overrides d(expr)/d(s) for symbols where a cheaper form is known."""

    sym: sp.Symbol
    expr: sp.Expr
    kind: str  # input | net | out | output | loss_term | loss, or an op's own kind
    layer: int | None = None
    unit: int | None = None
    local: dict = field(default_factory=dict)
    no_grad: bool = False  # a shift that cancels (softmax's max): no derivative flows through it
    meaning: str = ""  # what the report calls the value
    rule: str = ""  # the report's name for the rule of d(expr)/d(argument)


def symbols(prefix, n):
    """n generic real symbols prefix0..prefix{n-1} (the inputs, outputs or deltas of a layer)."""
    return [derived(f"{prefix}{j}", "generic", prefix, j) for j in range(n)]


class Layer:
    """A parameter-free layer ``out_j = f_j(x)``: subclasses give ``kind`` and ``forward``."""

    is_layer = True
    kind = "layer"
    latex = ""
    rule = "SymPy's derivative of the layer's expression"
    meaning = "output of the layer"
    notes = ()
    params = {}

    def __init__(self, name=None, neurons=None):
        self.name = name or self.kind  # a layer's name in the spec; the kind where it serves as an activation
        self.neurons = neurons

    def units(self, n_in):
        """The number of outputs for n_in inputs (the same by default)."""
        return n_in

    def forward(self, xs):
        """[f_1(xs), ..., f_m(xs)] as SymPy expressions of the input symbols."""
        raise NotImplementedError

    def describe(self):
        """One line for docstrings and comments: the layer's first output for three inputs."""
        xs = symbols("x", 3)
        return f"{self.kind}: out_0 = {sp.sstr(self.forward(xs)[0])} (for 3 inputs x0..x2)"

    def formula(self):
        """The layer's formula as one line of text (generated modules' docstrings)."""
        return self.describe()

    # -- neuron level

    def steps(self, xs, outs, layer, tag):
        """(forward steps computing ``outs`` from ``xs``, {log(out_j): stable form}) for the neuron-level program.

        ``layer`` is the layer's index and ``tag`` its name, for naming any intermediate steps.
        """
        exprs = self.forward(list(xs))
        steps = [Step(o, e, "out", layer, j, meaning=self.meaning, rule=self.rule) for j, (o, e) in enumerate(zip(outs, exprs))]
        logs = {}
        for o, e in zip(outs, exprs):
            logs.update(log_forms(o, e))
        return steps, logs

    # -- array level

    def vjp(self, xs, outs, ds):
        """[sum_j d_j df_j/dx_i for each input i], written with the outputs where they appear."""
        exprs = self.forward(list(xs))
        reuse = {e: o for e, o in zip(exprs, outs) if not e.is_Atom}
        return [sp.Add(*[d * sp.diff(e, x).subs(reuse) for d, e in zip(ds, exprs)]) for x in xs]

    def jvp(self, xs, outs, rs):
        """[sum_i df_j/dx_i r_i for each output j]: the Jacobian applied to a direction r of the inputs."""
        exprs = self.forward(list(xs))
        reuse = {e: o for e, o in zip(exprs, outs) if not e.is_Atom}
        return [sp.Add(*[r * sp.diff(e, v).subs(reuse) for r, v in zip(rs, xs)]) for e in exprs]

    def rvjp(self, xs, outs, ds, rs, rds):
        """The directional derivative of ``vjp`` when the inputs move by rs and ds by rds (second order)."""
        exprs = self.forward(list(xs))
        reuse = {e: o for e, o in zip(exprs, outs) if not e.is_Atom}
        result = []
        for v in xs:
            first = [sp.diff(e, v) for e in exprs]
            term = sp.Add(*[rd * f.subs(reuse) for rd, f in zip(rds, first)])
            term += sp.Add(*[d * sp.Add(*[r * sp.diff(f, w) for r, w in zip(rs, xs)]).subs(reuse) for d, f in zip(ds, first)])
            result.append(term)
        return result

    def output_delta(self, g, y, n):
        """None: the output delta is the vjp of g = dl/dy; an op that fuses it returns its own expression."""
        return None

    def loss_logs(self):
        """{log(y): symbol} that the array code computes stably alongside the outputs (none by default)."""
        return {}
