"""Reports of graph networks: neuron by neuron for small ones, layer by layer (shapes, rules, numbers summarized) otherwise.

A small graph network (its layers unrolled element by element stay under GRAPH_SCALAR_TERMS terms, and
it has at most SMALL_LIMIT parameters) gets the neuron-level report of report/scalar.py over the
unrolled program of core/graph_scalar.py, with the graph's diagram and the derived layer rules. A
larger one gets :class:`GraphReport`: every number comes from the generated NumPy module's own lines,
run once with their intermediate arrays kept (:func:`trace`).
"""

import numpy as np
import sympy as sp

from symgrad.backends.numpy.graph import graph_bodies
from symgrad.backends.numpy.helpers import ModulePrinter
from symgrad.core.derive import derive
from symgrad.core.graph_scalar import terms
from symgrad.errors import SpecError
from symgrad.ops.activations import net as NET
from symgrad.ops.activations import out as OUT
from symgrad.ops.losses import t as T
from symgrad.ops.losses import y as Y
from symgrad.ops.tensor import show
from symgrad.report.blocks import Diagram, Math, Partial, Section, Subst, Table, Text, sym
from symgrad.report.graph_diagram import graph_diagram
from symgrad.report.graph_rules import rules_section
from symgrad.report.hessian import hessian_refusal, hessian_sections
from symgrad.report.numbers import fmt, rel
from symgrad.report.scalar import ScalarReport
from symgrad.report.sections import (
    checks_section,
    fd_summary_section,
    make_report,
    params_training_section,
    scalar_param_value,
    training_section,
)
from symgrad.sizes import SMALL_LIMIT
from symgrad.train.generated import numpy_module_object

E = sym("E")


def graph_report(model, init, params, digits, steps, hessian=False):
    """The report of a GraphNetwork: neuron-level when small (with ``hessian``, its second derivatives), layer-level
    otherwise."""
    small = derive(model).small and sum(p.size for p in model.params) <= SMALL_LIMIT
    if small:
        return GraphScalarReport(model, init, params, digits, steps, hessian).build()
    if hessian:
        raise SpecError(hessian_refusal(model), "--hessian")
    return GraphReport(model, init, params, digits, steps).build()


def layers_table(model):
    """One row per layer: name, kind and its settings, what it reads, shapes in and out, parameter count, activation."""
    rows = []
    for n in model.nodes:
        act = n.activation.name if n.activation is not None else "—"
        rows.append([n.name, n.kind, brief(n), ", ".join(n.inputs),
                     " and ".join(show(s) for s in n.in_shapes) + " → " + show(n.shape),
                     str(sum(p.size for p in n.params)), act])
    return Table(["layer", "kind", "settings", "reads", "shapes", "parameters", "activation"], rows)


def brief(node):
    """A layer's settings in a few words: kernel, stride, padding, dilation where they are not the defaults."""
    op = node.op
    if op.kind == "dense":
        return f"{op.built.units} units, bias {op.built.bias}"
    if not hasattr(op, "k"):
        return ""
    conv = op.kind.startswith("conv")
    parts = [f"{op.out_channels} kernel{'s' * (op.out_channels > 1)} {show(op.k)}" if conv else f"window {show(op.k)}"]
    if any(s != (1 if conv else k) for s, k in zip(op.s, op.k)):
        parts.append(f"stride {show(op.s)}")
    if any(lo or hi for lo, hi in op.pad):
        pads = [lo for lo, _ in op.pad] if all(lo == hi for lo, hi in op.pad) else [list(p) for p in op.pad]
        parts.append(f"padding {pads}")
    if any(d != 1 for d in getattr(op, "dl", ())):
        parts.append(f"dilation {show(op.dl)}")
    return ", ".join(parts)


class GraphScalarReport(ScalarReport):
    """The neuron-by-neuron report of a small graph network, with its diagram and the derived layer rules."""

    def build(self):
        m = self.model
        secs = [self._model_section(), self._forward_section(), self._loss_section(), self._backward_section(),
                rules_section(m), self._update_section(), self._summary_section(), checks_section(m, self._lookup)]
        if self.steps:
            secs.append(training_section(self.steps, self._loss_at, self._grad_at, self._flat(), m.train.learning_rate))
        if self.hessian:
            secs += hessian_sections(self)
        return make_report(m, secs, derive(m).graph.rewrites, self.values, self.digits)

    def _summary_section(self):
        """The finite-difference table, and where it disagrees (a max-pooling tie: a kink of E) the one-sided slopes."""
        sec = super()._summary_section()
        table = next(b for b in sec.blocks if isinstance(b, Table))
        for partial, g, fd, err in table.rows:
            if err <= 1e-6:
                continue
            p, h = partial.args[1], 1e-6
            lv = dict(self.leaves)
            lv[p] = self.leaves[p] + h
            up = (self._loss_with(lv) - self.env[self.E]) / h
            lv[p] = self.leaves[p] - h
            down = (self.env[self.E] - self._loss_with(lv)) / h
            sec.blocks.append(Text([partial, ": E has a kink here, the slopes on the two sides differ: (E(p + h) − E(p))/h = ",
                                    up, " and (E(p) − E(p − h))/h = ", down, "; central differences average them."]))
        if len(sec.blocks) > 2:
            sec.blocks.append(Text(["A kink comes from a tie in a max-pooling window: moving the parameter one way or the "
                                    "other makes a different entry the maximum. The gradient is the slope on the side "
                                    "where the first of the tied entries stays the maximum, the choice PyTorch and the "
                                    "generated code make."]))
        return sec

    def _model_section(self):
        sec = super()._model_section()
        svg, tikz = graph_diagram(self.model)
        sec.blocks[1:1] = [Diagram(svg, tikz), layers_table(self.model),
                           Text(["Every layer is unrolled element by element into named steps: element [c, i, j] of "
                                 "layer L is net_L_c_i_j before its activation and out_L_c_i_j after it (0-based, as "
                                 "the inputs x_c_i_j); a flat dense layer's elements are its neurons. Flatten makes "
                                 "no steps: its outputs are its inputs, in PyTorch's order."])]
        return sec


def trace(model, P, x, t):
    """(the forward arrays, every array after the backward pass) of the generated module's own lines for one batch.

    The lines are those ``symgrad generate`` writes into loss_and_gradients (graph_bodies), run in the
    module's namespace; the forward arrays are copied before the backward pass, which may reuse them.
    """
    module = numpy_module_object(model)
    bodies = graph_bodies(derive(model).graph, ModulePrinter())
    lines = ["a0, _ = _batch(x, INPUT_SHAPE, 'x')", "t = _targets(y, a0)" if model.loss.uses_target else "t = None",
             *bodies["forward"], "_kept = {k: v.copy() for k, v in locals().items() if isinstance(v, np.ndarray)}",
             *bodies["loss"], *bodies["backward"], "return _kept, dict(locals())"]
    ns = dict(module.__dict__)
    exec("def _trace(params, x, y):\n" + "\n".join("    " + ln for ln in lines), ns)
    return module, *ns["_trace"](P, x, t)


class GraphReport:
    """The layer-level report of a graph network: shapes, rules and summarized numbers of every layer."""

    def __init__(self, model, init, params, digits, steps):
        self.model, self.P, self.digits, self.steps, self.params = model, init, digits, steps, params
        self.der = derive(model).graph
        x = np.asarray(model.sample.x, dtype=np.float64).reshape((1,) + model.input_shape)
        t = model.sample.t if model.sample.t is not None else np.zeros(model.output_shape)
        self.x, self.t = x, np.asarray(t, dtype=np.float64).reshape((1,) + model.output_shape)
        self.y = self.t if model.loss.uses_target else None
        self.module, self.fwd, self.env = trace(model, init, x, self.y)
        self.E = float(self.env["E"])
        self.grads = {name: self.env[var] for name, var in graph_bodies(self.der, ModulePrinter())["grads"]}
        self.values = {}
        self.index = {"x": 0, **{n.name: k + 1 for k, n in enumerate(model.nodes)}}

    def out(self, name):
        """The forward value (batch 1) of a layer's output, or of x."""
        return self.fwd[f"a{self.index[name]}"][0]

    def delta(self, k):
        """dE/dz of layer k (1-based; before its activation), or None where no parameter below needs it."""
        d = self.env.get(f"d{k}")
        return None if d is None else d[0]

    def build(self):
        m = self.model
        secs = [self._model_section(), self._forward_section(), self._backward_section(), rules_section(m),
                self._params_section(), self._summary_section(), checks_section(m, self._lookup)]
        if self.steps:
            secs.append(params_training_section(self.steps, self.P, [p.name for p in m.trainable_params], self._loss,
                                                self._gradients, m.train.learning_rate))
        return make_report(m, secs, self.der.rewrites, self.values, self.digits)

    def _loss(self, P):
        return float(self.module.loss(P, self.x, self.y))

    def _gradients(self, P):
        return self.module.gradients(P, self.x, self.y)

    def _model_section(self):
        m = self.model
        sec = Section("The model")
        total = sum(p.size for p in m.params)
        sec.blocks.append(Text([f"{m.description or m.describe()} — {total} scalar parameters; unrolled element by "
                                f"element its layers would be {terms(m)} terms, so this report derives the gradients "
                                "layer by layer: each layer's shapes, its rule (derived by SymPy on a small instance "
                                "below) and its numbers summarized. Every number comes from the generated NumPy "
                                "module's own lines, run on the sample with their intermediate arrays kept."]))
        svg, tikz = graph_diagram(m)
        sec.blocks += [Diagram(svg, tikz), layers_table(m)]
        rows = [[p.name, " × ".join(map(str, p.shape)) or "scalar", str(p.size), "trainable" if p.trainable else "frozen",
                 float(np.mean(self.P[p.name])), float(np.std(self.P[p.name]))] for p in m.params]
        sec.blocks.append(Table(["parameter", "shape", "size", "", "mean", "std"], rows))
        sec.blocks.append(Text([f"Sample: an input of shape {show(m.input_shape)} with mean ", float(self.x.mean()),
                                "; learning rate η = ", float(m.train.learning_rate), "."]))
        return sec

    def _forward_section(self):
        m = self.model
        sec = Section("Forward pass")
        sec.blocks.append(Text(["Each layer's output after its activation, summarized:"]))
        rows = []
        for n in m.nodes:
            a = self.out(n.name)
            rows.append([n.name, show(n.shape), float(a.min()), float(a.mean()), float(a.max()),
                         f"{int(np.count_nonzero(a))} of {a.size}"])
        sec.blocks.append(Table(["layer", "shape", "min", "mean", "max", "nonzero"], rows))
        y = self.out(m.nodes[-1].name).reshape(-1)
        rows = [[o, float(v), float(tv)] for o, v, tv in list(zip(m.outputs, y, self.t.reshape(-1)))[:12]]
        sec.blocks.append(Table(["output", "value", "target"], rows))
        if len(y) > 12:
            sec.blocks.append(Text([f"(the first 12 of {len(y)} outputs)"]))
        sec.blocks.append(Text(["Loss E = ", self.E, f" ({m.loss.name})."]))
        return sec

    def _backward_section(self):
        m, der = self.model, self.der
        L = len(m.nodes)
        sec = Section("Backward pass, layer by layer")
        d = sym(f"delta^{{({L})}}")
        yv, tv, nv = sym("y"), sym("t"), sym("net")
        sec.blocks.append(Text(["With δ = ∂E/∂net for each layer's values before its activation, in reverse order: the "
                                "output layer's delta comes from the loss (SymPy's derivative, simplified),"]))
        if der.output == "fused":
            h = der.delta_out.subs({Y: yv, T: tv, NET: nv})
            sec.blocks.append(Math([d, der.scale * (sym("h") - yv * sp.Sum(sym("h_j"), (sym("j"), 1, m.n_outputs)))]))
            sec.blocks.append(Text(["with h = ", h, " elementwise (the softmax's Jacobian applied)."]))
        else:
            sec.blocks.append(Math([d, der.scale * der.delta_out.subs({Y: yv, T: tv, NET: nv})]))
        sec.blocks.append(Text(["and each layer hands its inputs their deltas by its rule; a layer's activation turns "
                                "∂E/∂out into δ by its derivative f'(net), elementwise; a layer read by several layers "
                                "adds what they hand back (the fork rule)."]))
        rows = []
        for k in range(L, 0, -1):
            n = m.nodes[k - 1]
            readers = [m.nodes[j].name for j, _ in der.consumers[n.name]]
            fp = der.derivs[k - 1]
            act = [] if fp is None or fp == 1 else ["; f'(net) = ", fp.subs({OUT: sym("out"), NET: nv})]
            fork = f"; read by {', '.join(readers)}: their deltas add" if len(readers) > 1 else ""
            sec.blocks.append(Text([f"{n.name} ({n.op.describe()}): {n.op.rule}", *act, f"{fork}."]))
            dk = self.delta(k)
            rows.append([n.name, show(n.shape), "—" if dk is None else float(np.linalg.norm(dk)),
                         "—" if dk is None else float(np.abs(dk).max())])
        sec.blocks.append(Text(["The deltas δ of every layer, summarized (the parameters' gradients follow from them by "
                                "each layer's rule; their norms are in the summary):"]))
        sec.blocks.append(Table(["layer", "shape", "norm of δ", "largest |δ|"], rows))
        return sec

    def _owner(self):
        return {n: o for n, o in self.model.scalar_owner().items() if o[0] in self.grads}

    def _chosen(self):
        owner = self._owner()
        if self.params:
            for name in self.params:
                if name not in owner:
                    raise SpecError(f"no trainable scalar parameter {name!r} (e.g. {next(iter(owner), 'none')})", "params")
            return list(self.params)
        out = []
        for p in self.model.trainable_params:
            g = np.abs(self.grads[p.name]).reshape(-1)
            out.append(p.scalar_names[int(np.argmax(g))])
        return out

    def _params_section(self):
        m = self.model
        owner = m.scalar_owner()
        sec = Section("Selected parameters, with numbers")
        sec.blocks.append(Text(["For one entry of each parameter (its largest gradient), the layer's rule evaluated "
                                "with the traced arrays, beside the generated module's gradient:"]))
        self.picked = self._chosen()
        eta = float(m.train.learning_rate)
        for name in self.picked:
            pname, idx = owner[name]
            k = next(i for i, n in enumerate(m.nodes, 1) if any(p.name == pname for p in n.params))
            node = m.nodes[k - 1]
            p = next(q for q in node.params if q.name == pname)
            g = float(self.grads[pname].reshape(-1)[idx])
            how, v = self.rule_value(node, k, p, np.unravel_index(idx, p.shape) if p.shape else ())
            ws = sym(name)
            sec.blocks.append(Text([f"{name} = {pname}[{', '.join(map(str, np.unravel_index(idx, p.shape)))}]: {how} = ",
                                    v, "; the module's gradient ", Partial(E, ws), " = ", g,
                                    f" (relative difference {fmt(rel(v, g), 2)})."]))
            w0 = float(self.P[pname].reshape(-1)[idx])
            self.values.update({ws: w0, sym("eta"): eta, Partial(E, ws): g})
            expr = ws - sym("eta") * Partial(E, ws)
            sec.blocks.append(Math([sym(name + "^+"), expr, Subst(expr), w0 - eta * g]))
        return sec

    def rule_value(self, node, k, p, idx):
        """(the rule in words, its value from the traced arrays) for one parameter entry of node k."""
        d = self.delta(k)
        a = self.out(node.inputs[0])
        op = node.op
        if op.kind in ("conv1d", "conv2d"):
            if p.name.endswith(".bias"):
                return f"the sum of δ over the {d[idx].size} positions of channel {idx[0]}", float(d[idx].sum())
            o, c, kk = idx[0], idx[1], idx[2:]
            xp = np.pad(a[c], op.pad)
            total = 0.0
            for q in np.ndindex(*d.shape[1:]):
                total += d[(o,) + q] * xp[tuple(s * qi + dl * ki for s, qi, dl, ki in zip(op.s, q, op.dl, kk))]
            return (f"the cross-correlation of the input with δ at this offset, a sum over {d[0].size} positions",
                    float(total))
        d2 = d.reshape(-1, d.shape[-1])
        if p.name.endswith(".bias"):
            return "δ summed", float(d2.sum() if not p.shape else d2[:, idx[0]].sum())
        a2 = a.reshape(-1, a.shape[-1])
        return "δ times the input it multiplies, summed over rows", float(d2[:, idx[0]] @ a2[:, idx[1]])

    def _summary_section(self):
        return fd_summary_section(self.model, self.picked, self.P, self.grads, self._loss)

    def _lookup(self, e):
        m = self.model
        if e.what == "loss":
            return self.E
        if e.what == "output":
            y = self.out(m.nodes[-1].name).reshape(-1)
            return float(y[m.outputs.index(e.name)]) if e.name in m.outputs else None
        return scalar_param_value(e, self._owner(), self.P, self.grads, m.train.learning_rate)
