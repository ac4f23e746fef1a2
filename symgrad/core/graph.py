"""The backward program of a graph network: deltas flow from the output back through every layer's rule.

Reverse topological order over the layers: a layer's delta dE/d(out) is the sum of what its
consumers hand back (a fork sums its branches: the residual rule); the activation's derivative,
from SymPy as for dense chains, turns it into dE/d(op output); the op's own rule
(:mod:`symgrad.ops.tensor`) gives the deltas of its inputs and its parameter gradients. The output
layer's delta comes from the loss exactly as in :func:`~symgrad.core.derivation.derive_layers`.
"""

from dataclasses import dataclass, field

import sympy as sp

from symgrad.core.derivation import _simplest
from symgrad.ops.activations import net as NET
from symgrad.ops.activations import out as OUT
from symgrad.ops.losses import y as Y


@dataclass
class GraphDerivation:
    """Per node: f'(net) in out (and net); the loss term and output delta; which deltas are needed."""

    model: object
    loss_term: sp.Expr
    delta_out: sp.Expr
    output: str  # elementwise | fused | vjp
    derivs: list  # f'(net) per node (None: no activation or a layer op)
    keeps_net: list
    scale: sp.Expr
    rewrites: list
    needs_delta: list  # whether node k's output delta is needed (some trainable parameter lies below it)
    consumers: dict  # node name -> [(consumer index, input position)]
    logs: dict = field(default_factory=dict)

    @property
    def nodes(self):
        return self.model.nodes


def derive_graph(model):
    """The GraphDerivation of a GraphNetwork."""
    nodes = model.nodes
    last = nodes[-1]
    act = last.activation
    loss = model.loss
    g = sp.diff(loss.expr, Y)
    term, rewrites, logs = loss.expr, [], {}
    if act is None or not act.is_layer:
        d = 1 if act is None else act.derivative_in_out().subs(OUT, Y)
        delta, output = _simplest(g * d), "elementwise"
        for old, new in ({} if act is None else act.log_forms(Y, NET)).items():
            if term.has(old):
                term = term.subs(old, new)
                rewrites.append(f"{sp.sstr(old)} with y = {sp.sstr(act.at(NET))} is computed as {sp.sstr(new)}")
    else:
        fused = act.output_delta(g, Y, last.size)
        delta, output = (g, "vjp") if fused is None else (fused, "fused")
        stable = act.loss_logs()
        if stable and term.has(sp.log(Y)):
            term = term.subs(sp.log(Y), stable["log"])
            rewrites.append(stable["note"])
            logs[stable["log"]] = stable["note"]
    derivs = [n.activation.derivative_in_out() if n.activation is not None and not n.activation.is_layer else None
              for n in nodes]
    keeps = [d is not None and NET in d.free_symbols for d in derivs]
    keeps[-1] = NET in sp.sympify(delta).free_symbols or NET in term.free_symbols
    scale = sp.Rational(1, last.size) if loss.average_outputs else sp.S.One
    consumers = {n.name: [] for n in nodes}
    for k, n in enumerate(nodes):
        for pos, src in enumerate(n.inputs):
            if src != "x":
                consumers[src].append((k, pos))
    return GraphDerivation(model, term, delta, output, derivs, keeps, scale, rewrites, _needs_delta(nodes), consumers, logs)


def _needs_delta(nodes):
    """needs[k]: some trainable parameter is at node k or at a node node k reads (directly or not)."""
    index = {n.name: k for k, n in enumerate(nodes)}
    needs = []
    for n in nodes:
        below = any(needs[index[s]] for s in n.inputs if s != "x")
        needs.append(below or any(p.trainable for p in n.params))
    return needs
