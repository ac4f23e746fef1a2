"""The content of a derivation report, built once as a list of sections of blocks.

Blocks hold SymPy expressions, numbers and text, never format-specific strings; ``report.py``
prints them as LaTeX, Markdown or HTML (MathML). Every number is computed here: forward values and
adjoints from the scalar derivation (small models) or from the layer derivation evaluated with NumPy
(large networks), finite differences of the loss, the update and the checks of ``model.expects``.
"""

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from symgrad.core.derivation import derive_layers, derive_scalar
from symgrad.errors import SpecError
from symgrad.ops.activations import net as NET
from symgrad.ops.activations import out as OUT
from symgrad.ops.functions import to_elementary
from symgrad.ops.losses import t as T
from symgrad.ops.losses import y as Y
from symgrad.ops.softmax import LOGY as LOGSOFTMAX
from symgrad.report.diagram import diagram
from symgrad.sizes import SMALL_LIMIT
from symgrad.spec import Sample

MAX_PATHS = 8  # longer sums over paths are shown only through the deltas


class Partial(sp.Expr):
    """The Leibniz symbol d(num)/d(den), printed as a fraction of partials."""

    is_commutative = True

    def __new__(cls, num, den):
        return sp.Expr.__new__(cls, num, den)

    def _latex(self, printer):
        return r"\frac{\partial %s}{\partial %s}" % (printer._print(self.args[0]), printer._print(self.args[1]))


@dataclass
class Subst:
    """An expression printed with every symbol (and Leibniz factor) replaced by its number."""

    expr: sp.Expr


@dataclass
class Math:
    """A displayed chain of equalities ``parts[0] = parts[1] = ...`` (expressions, Subst or floats)."""

    parts: list
    split: bool = False  # a sum in the parts is broken into one line per term


@dataclass
class Text:
    """A paragraph: str pieces, inline expressions and floats."""

    frags: list


@dataclass
class Table:
    """Header strings and rows of cells (str, expression, Subst or float)."""

    header: list
    rows: list


@dataclass
class Diagram:
    """The network drawing as SVG and as TikZ."""

    svg: str
    tikz: str


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)


@dataclass
class Report:
    """Title, sections, and the number map that Subst parts are printed with."""

    title: str
    sections: list
    values: dict  # symbol or Partial -> float
    digits: int


def build(model, params=None, digits=9, steps=0, values=None):
    """The report of ``model``: small models neuron by neuron, large networks layer by layer."""
    model, note = _with_sample(model)
    init = _param_values(model, values)
    n = sum(p.size for p in model.params)
    if model.kind == "expression" or n <= SMALL_LIMIT:
        rep = _ScalarReport(model, init, params, digits, steps).build()
    else:
        rep = _LayerReport(model, init, params, digits, steps).build()
    if note:
        rep.sections[0].blocks.insert(0, Text([note]))
    return rep


def _with_sample(model):
    """The model with a sample to work through: a spec without [sample] gets the one seed 0 draws, and a note."""
    if model.sample is not None:
        return model, None
    model = copy.copy(model)
    model.sample = Sample(None, None, seed=0)
    model._check_sample()
    return model, ("The spec has no [sample]: this report works through the sample drawn from seed 0 "
                   "(x uniform in [0, 1), t one-hot), as [sample] seed = 0 would.")


def _param_values(model, given):
    init = model.init_params()
    for name, v in (given or {}).items():
        p = next((q for q in model.params if q.name == name), None)
        if p is None:
            raise SpecError(f"unknown parameter {name!r} (parameters: {', '.join(model.param_names)})", "params-file")
        v = np.asarray(v, dtype=np.float64)
        if v.shape != tuple(p.shape) or not np.all(np.isfinite(v)):
            raise SpecError(f"{name} must be finite with shape {tuple(p.shape)}, got {v.shape}", "params-file")
        init[name] = v
    return init


def _sym(name):
    return sp.Symbol(name, real=True)


def _rel(a, b):
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def _status(e, got):
    ok = math.isclose(got, e.value, rel_tol=e.rel_tol, abs_tol=e.abs_tol)
    return "confirmed" if ok else "WRONG"


def _checks_section(model, lookup):
    sec = Section("Checks of the values the spec states")
    if not model.expects:
        sec.blocks.append(Text(["The spec states no expected values."]))
        return sec
    rows = []
    for e in model.expects:
        label = "loss E" if e.what == "loss" else f"{e.what} {e.name}"
        got = lookup(e)
        if got is None:
            rows.append([label, e.source or "", e.value, "not computed", "unknown name"])
            continue
        st = _status(e, got)
        rows.append([label, e.source or "", e.value, got, st if st == "confirmed" else f"WRONG: correct value {_fmt(got)}"])
    sec.blocks.append(Text(["Each stated value is compared with the computed one (within the stated tolerance)."]))
    sec.blocks.append(Table(["claim", "source", "stated", "computed", "verdict"], rows))
    for e, r in zip(model.expects, rows):
        if str(r[4]).startswith("WRONG"):
            sec.blocks.append(Text([f"The stated {r[0]} = ", e.value, " is WRONG; the correct value is ", r[3], "."]))
    return sec


def _fmt(v, digits=9):
    return f"{v:.{digits}g}"


def _report(model, secs, rewrites, values, digits):
    """The report: its sections, then the stability rewrites applied by the derivation and the activations."""
    notes = list(rewrites) + [n for lay in getattr(model, "layers", ()) for n in lay.activation.notes]
    sec = _notes_section(notes)
    return Report(f"Backpropagation step by step: {model.name}", secs + ([sec] if sec else []), values, digits)


def _notes_section(notes):
    if not notes:
        return None
    return Section("Stability rewrites", [Text(["The derivation rewrote these expressions into numerically stable forms:"])]
                   + [Text(["- " + n]) for n in notes])


def _rule(step, v, prog):
    """The name of the rule that gives d(step)/d(v)."""
    model = prog.model
    if step.kind == "loss":
        return "sum rule: the total error is a sum of the output errors" + (
            " times a constant" if prog.scale != 1 else "")
    if step.kind == "loss_term":
        name = model.loss.name
        if name in ("half_sse", "sse", "mse"):
            return "power rule with the chain rule (the inner derivative of t - y is -1)"
        if name in ("bce", "softmax_cross_entropy"):
            return "derivative of the logarithm, d log(y)/dy = 1/y"
        return "SymPy's derivative of the loss expression"
    if step.kind == "out":
        act = model.layers[step.layer].activation
        return {
            "sigmoid": "derivative of the sigmoid: σ'(x) = σ(x)(1 - σ(x)), written with the neuron's output",
            "tanh": "derivative of tanh: 1 - tanh(x)², written with the neuron's output",
            "relu": "derivative of ReLU: 1 where the net input is positive, else 0",
            "identity": "derivative of the identity: 1",
            "softmax": "quotient rule and the derivative of the exponential",
        }.get(act.name, f"derivative of the activation {act.name} (SymPy's diff)")
    if step.kind == "sum":
        return "sum rule and the derivative of the exponential"
    if step.kind == "net":
        if v in prog.params:
            pname, _ = prog.params[v]
            if pname.endswith(".bias"):
                return "the net input is linear in the bias: its derivative is 1"
            return "the net input is linear in the weight: the derivative of w·a with respect to w is a"
        return "the net input is linear in the previous output: the derivative of w·a with respect to a is w"
    return "chain rule through the expression (SymPy's diff)"


def _display(expr, first):
    """expr with each product's factors ordered so that those in ``first`` lead (w1·i1, not i1·w1)."""
    if isinstance(expr, sp.Add):
        terms = []
        for a in expr.args:
            a = _display(a, first)
            terms += list(a.args) if isinstance(a, sp.Add) else [a]
        return sp.Add(*terms, evaluate=False)
    if isinstance(expr, sp.Mul):
        args = sorted(expr.args, key=lambda a: (a.is_Number is False, a not in first))
        return sp.Mul(*args, evaluate=False)
    return expr


class _ScalarReport:
    """Neuron-by-neuron report from the scalar derivation."""

    def __init__(self, model, init, params, digits, steps):
        self.model, self.digits, self.steps = model, digits, steps
        self.der = derive_scalar(model)
        prog = self.prog = self.der.program
        self.E = prog.loss
        self.leaves = {}
        for s, v in zip(prog.inputs, model.sample.x):
            self.leaves[s] = float(v)
        t = model.sample.t if model.sample.t is not None else np.zeros(len(prog.targets))
        for s, v in zip(prog.targets, t):
            self.leaves[s] = float(v)
        for s, (pname, idx) in prog.params.items():
            self.leaves[s] = float(np.asarray(init[pname]).reshape(-1)[idx])
        self.env = self.der.evaluate(self.leaves)
        self.values = dict(self.env)
        self.eta = _sym("eta")
        self.values[self.eta] = float(model.train.learning_rate)
        by_sym = {a.sym: a for a in self.der.adjoints}
        for a in self.der.adjoints:
            self.values[Partial(self.E, a.of)] = self.env[a.sym]
            for f, c, d in a.terms:
                self.values[Partial(c, a.of)] = _num(d, self.env)
        self.by_sym = by_sym
        names = {s.name: s for s in self.der.grads}
        if params:
            missing = [p for p in params if p not in names]
            if missing:
                raise SpecError(f"no trainable scalar parameter {missing[0]!r} (have: {', '.join(names)})", "params")
            self.chosen = [names[p] for p in params]
        else:
            self.chosen = sorted(self.der.grads, key=lambda s: -(self._layer_of(s) or 0))
        self.explained = set()

    def _layer_of(self, p):
        for s in self.prog.steps:
            if p in s.expr.free_symbols and s.kind == "net":
                return s.layer
        return None

    def build(self):
        m = self.model
        secs = [self._model_section(), self._forward_section(), self._loss_section(), self._backward_section()]
        if m.kind == "network":
            secs.append(_vector_section(m))
        secs += [self._update_section(), self._summary_section(), _checks_section(m, self._lookup)]
        if self.steps:
            secs.append(_training_section(self.steps, self._loss_at, self._grad_at, self._flat(), m.train.learning_rate))
        rewrites = list(getattr(m, "rewrites", [])) + (derive_layers(m).rewrites if m.kind == "network" else [])
        return _report(m, secs, rewrites, self.values, self.digits)

    # -- sections

    def _model_section(self):
        m, prog = self.model, self.prog
        sec = Section("The model")
        sec.blocks.append(Text([m.description or m.describe()]))
        if m.kind == "network":
            svg, tikz = diagram(m)
            sec.blocks.append(Diagram(svg, tikz))
        rows = []
        for s in prog.inputs:
            rows.append([s, "input", self.leaves[s]])
        for s in prog.targets:
            rows.append([s, "target", self.leaves[s]])
        for s, (pname, idx) in prog.params.items():
            trains = any(q.name == pname and q.trainable for q in m.params)
            rows.append([s, f"parameter ({pname}{'' if trains else ', frozen'})", self.leaves[s]])
        rows.append([self.eta, "learning rate", self.values[self.eta]])
        sec.blocks.append(Text(["Symbols and their values:"]))
        sec.blocks.append(Table(["symbol", "meaning", "value"], rows))
        sym_rows = []
        for s in prog.steps:
            meaning = {"net": "net input of a neuron", "out": "output of a neuron (after the activation)",
                       "output": "model output", "loss_term": "error of one output", "loss": "total error E",
                       "max": "largest net input (shift for a stable softmax)", "sum": "softmax denominator"}[s.kind]
            sym_rows.append([s.sym, meaning])
        sec.blocks.append(Table(["symbol", "meaning"], sym_rows))
        return sec

    def _step_math(self, s):
        shown = _display(s.expr, set(self.prog.params))
        parts = [s.sym, shown]
        if not shown.is_Symbol:
            parts.append(Subst(shown))
        parts.append(self.env[s.sym])
        return Math(parts)

    def _forward_section(self):
        sec = Section("Forward pass")
        sec.blocks.append(Text(["Each step: the formula, the formula with the numbers substituted, the value."]))
        for s in self.prog.steps:
            if s.kind in ("loss_term", "loss"):
                continue
            sec.blocks.append(self._step_math(s))
        return sec

    def _loss_section(self):
        sec = Section("The loss")
        loss = self.model.loss
        scale = [] if self.prog.scale == 1 else [" times the constant ", self.prog.scale]
        sec.blocks.append(Text([f"Loss {loss.name}: the error of each output is ", loss.expr.subs({Y: _sym("y"), T: _sym("t")}),
                                " with output y and target t; the total error is their sum", *scale, "."]))
        for s in self.prog.steps:
            if s.kind in ("loss_term", "loss"):
                sec.blocks.append(self._step_math(s))
        return sec

    def _paths(self, v):
        """Chains of (consumer, symbol) pairs from E down to v."""
        if v == self.E:
            return [[]]
        a = self.der.adjoint_of(v)
        out = []
        for _, c, _ in a.terms:
            out += [p + [(c, v)] for p in self._paths(c)]
        return out

    def _merge(self, path):
        """Fold a leading d E/d E_o1 = 1 (a plain sum) into the next factor: d E/d out_o1."""
        if len(path) > 1 and path[0][0] == self.E and self.prog.scale == 1:
            return [(self.E, path[1][1])] + path[2:]
        return path

    def _explain(self, v, blocks):
        """Blocks deriving dE/dv (after those of v's consumers), once per symbol."""
        if v in self.explained or v == self.E:
            return
        a = self.der.adjoint_of(v)
        for _, c, _ in a.terms:
            self._explain(c, blocks)
        self.explained.add(v)
        is_net = v.name.startswith("net_")
        lhs = Partial(self.E, v)
        terms = []
        for f, c, d in a.terms:
            cstep = self.prog.step_of(c)
            blocks.append(Text(["Factor ", Partial(c, v), f" — {_rule(cstep, v, self.prog)}:"]))
            raw = sp.diff(cstep.expr, v)
            parts = [Partial(c, v)]
            for e in (raw, d):
                if all(e != q for q in parts if isinstance(q, sp.Basic)):
                    parts.append(e)
            if not d.is_Symbol and not d.is_Number:
                parts.append(Subst(d))
            if not d.is_Number:
                parts.append(_num(d, self.env))
            blocks.append(Math(parts))
            up = sp.S.One if c == self.E else (f if c.name.startswith("net_") else Partial(self.E, c))
            if up == sp.S.One:
                terms.append(Partial(c, v))
            else:
                terms.append(sp.Mul(up, Partial(c, v), evaluate=False))
        chain = sp.Add(*terms, evaluate=False) if len(terms) > 1 else terms[0] if terms else sp.S.Zero
        if is_net:
            blocks.append(Text(["Delta shorthand: ", a.sym, " = ", lhs, f", the error signal of neuron {v.name[4:]}; "
                                "the later steps use it instead of the whole chain."]))
            blocks.append(Math([a.sym, lhs, chain, Subst(chain), self.env[a.sym]]))
        elif chain != lhs:
            blocks.append(Math([lhs, chain, Subst(chain), self.env[a.sym]]))

    def _backward_section(self):
        sec = Section("Backward pass")
        sec.blocks.append(Text(["Every gradient is a product of local derivatives (chain rule), summed over all paths "
                                "from the parameter to the error E; each local derivative is derived by SymPy "
                                "and evaluated with the forward values above."]))
        for p in self.chosen:
            sub = []
            paths = [self._merge(q) for q in self._paths(p)]
            sub.append(Text([f"Gradient of the parameter {p.name}"
                             + (f", a sum over {len(paths)} paths through the later layers:" if len(paths) > 1 else ":")]))
            if len(paths) <= MAX_PATHS:
                leib = sp.Add(*[sp.Mul(*[Partial(c, v) for c, v in q], evaluate=False) for q in paths], evaluate=False)
                sub.append(Math([Partial(self.E, p), leib], split=True))
            self._explain(p, sub)
            sec.blocks += sub
        return sec

    def _update_section(self):
        sec = Section("The update")
        sec.blocks.append(Text(["One step of gradient descent with learning rate ", self.eta, " = ", self.values[self.eta],
                                ": ", sp.Symbol("w^+"), " = ", sp.Symbol("w") - self.eta * Partial(self.E, sp.Symbol("w")),
                                ". All gradients use the weights from before the update."]))
        for p in self.der.grads:
            new = _sym(p.name + "^+")
            expr = p - self.eta * Partial(self.E, p)
            self.values[new] = self.leaves[p] - self.values[self.eta] * self.env[self.der.grads[p]]
            sec.blocks.append(Math([new, expr, Subst(expr), self.values[new]]))
        return sec

    def _summary_section(self):
        sec = Section("Summary and finite-difference check")
        sec.blocks.append(Text(["Central differences (E(p + h) - E(p - h)) / 2h with h = 1e-6 on the loss alone."]))
        rows = []
        for p, g in self.der.grads.items():
            fd = self._fd(p)
            rows.append([Partial(self.E, p), self.env[g], fd, _rel(self.env[g], fd)])
        sec.blocks.append(Table(["gradient", "value", "finite difference", "relative error"], rows))
        return sec

    def _loss_with(self, leaves):
        env = dict(leaves)
        for s in self.prog.steps:
            env[s.sym] = _num(s.expr, env)
        return env[self.E]

    def _fd(self, p, h=1e-6):
        lv = dict(self.leaves)
        lv[p] = self.leaves[p] + h
        ep = self._loss_with(lv)
        lv[p] = self.leaves[p] - h
        return (ep - self._loss_with(lv)) / (2 * h)

    def _lookup(self, e):
        if e.what == "loss":
            return self.env[self.E]
        names = {s.name: s for s in self.env if isinstance(s, sp.Symbol)}
        if e.what == "output":
            outs = list(self.model.outputs)
            return self.env[self.prog.outputs[outs.index(e.name)]] if e.name in outs else None
        if e.what == "value":
            return self.env.get(names.get(e.name))
        g = {p.name: p for p in self.der.grads}.get(e.name)
        if g is None:
            return None
        if e.what == "gradient":
            return self.env[self.der.grads[g]]
        return self.leaves[g] - self.values[self.eta] * self.env[self.der.grads[g]]

    def _flat(self):
        return np.array([self.leaves[p] for p in self.der.grads])

    def _loss_at(self, w):
        lv = dict(self.leaves)
        lv.update(zip(self.der.grads, w))
        return self._loss_with(lv)

    def _grad_at(self, w):
        lv = dict(self.leaves)
        lv.update(zip(self.der.grads, w))
        env = self.der.evaluate(lv)
        return np.array([env[g] for g in self.der.grads.values()])


def _num(expr, env):
    if isinstance(expr, (int, float)):
        return float(expr)
    expr = sp.sympify(expr)
    if expr.is_Symbol:
        return float(env[expr])
    return float(sp.N(expr.xreplace({k: sp.Float(v, 30) for k, v in env.items() if k in expr.free_symbols}), 30))


def _training_section(n, loss_at, grad_at, w, lr):
    sec = Section("Training")
    sec.blocks.append(Text([f"Plain gradient descent (w ← w − η ∂E/∂w, η = {lr:g}) on the same sample."]))
    rows = [["0", loss_at(w)]]
    for k in range(1, n + 1):
        w = w - lr * grad_at(w)
        if k == 1 or k == n:
            rows.append([str(k), loss_at(w)])
    sec.blocks.append(Table(["steps", "loss E"], rows))
    return sec


# -------------------------------------------------------------------------------------------
# Layer-level form


def _layer_symbols(k):
    return _sym(f"W^{{({k})}}"), _sym(f"b^{{({k})}}")


def _vector_section(model):
    """The general form per layer, from derive_layers' expressions."""
    der = derive_layers(model)
    L = len(model.layers)
    sec = Section("The general, vectorised form")
    sec.blocks.append(Text(["For layer l with weight matrix W^(l) (rows: units, columns: inputs), net input "
                            "net^(l) = W^(l) a^(l-1) + b^(l) and output a^(l) = f(net^(l)); a^(0) is the input. "
                            "symgrad derives each elementwise factor with SymPy:"]))
    fan_in = model.n_inputs
    shapes = []
    for k, layer in enumerate(model.layers):
        shapes.append((layer.units, fan_in))
        fan_in = layer.units
    for k in reversed(range(L)):
        layer = model.layers[k]
        n_out, n_in = shapes[k]
        d = sp.MatrixSymbol(f"delta^{{({k + 1})}}", n_out, 1)
        a_prev = sp.MatrixSymbol(f"a^{{({k})}}", n_in, 1)
        sec.blocks.append(Text([f"Layer {k + 1} ({layer.name}, {n_in} → {n_out}, activation {layer.activation.name}); "
                                f"W^({k + 1}) has shape {n_out} × {n_in}:"]))
        if k == L - 1:
            fname, netL = sp.Function("f'"), _sym(f"net^{{({k + 1})}}")
            yv, tv = _sym(f"a^{{({k + 1})}}"), _sym("t")
            if der.output == "fused":
                h = der.delta_out.subs({Y: yv, T: tv, NET: _sym(f"net^{{({k + 1})}}")})
                sec.blocks.append(Text(["Softmax output: with h = y ⊙ ∂l/∂y = ", h, " elementwise (SymPy), "
                                        "the Jacobian of the softmax gives the output delta"]))
                jj = _sym("j")
                sec.blocks.append(Math([d, der.scale * (_sym("h") - yv * sp.Sum(_sym("h_j"), (jj, 1, layer.units)))]))
            else:
                dl = sp.diff(model.loss.expr, Y)
                fp = der.derivs[k]
                sec.blocks.append(Math([d, sp.Mul(der.scale, Partial(_sym("l"), _sym("y")), fname(netL), evaluate=False),
                                        der.scale * dl.subs({Y: yv, T: tv}) * fp.subs({OUT: yv, NET: _sym(f"net^{{({k + 1})}}")}),
                                        der.scale * der.delta_out.subs({Y: yv, T: tv, NET: _sym(f"net^{{({k + 1})}}")})]))
        else:
            Wn = sp.MatrixSymbol(f"W^{{({k + 2})}}", shapes[k + 1][0], n_out)
            dn = sp.MatrixSymbol(f"delta^{{({k + 2})}}", shapes[k + 1][0], 1)
            fp = der.derivs[k].subs({OUT: _sym(f"a^{{({k + 1})}}"), NET: _sym(f"net^{{({k + 1})}}")})
            fpm = sp.MatrixSymbol(f"f'_{k + 1}", n_out, 1)
            sec.blocks.append(Math([d, sp.HadamardProduct(Wn.T * dn, fpm)]))
            sec.blocks.append(Text(["with f'(net^(%d)) = " % (k + 1), fp, " elementwise (SymPy's derivative of ",
                                    layer.activation.at(_sym("net")), ")."]))
        sec.blocks.append(Math([Partial(_sym("E"), sp.Symbol(f"W^{{({k + 1})}}")), d * a_prev.T]))
        wp, bp = model.layer_params(k)
        if bp is not None:
            if layer.bias == "unit":
                sec.blocks.append(Math([Partial(_sym("E"), sp.Symbol(f"b^{{({k + 1})}}")), d]))
            else:
                sec.blocks.append(Text(["The shared bias gets the sum of the layer's deltas: ",
                                        Partial(_sym("E"), sp.Symbol(f"b^{{({k + 1})}}")), " = ",
                                        sp.Sum(_sym(f"delta^{{({k + 1})}}_j"), (_sym("j"), 1, layer.units)), "."]))
    return sec


class _LayerReport:
    """Layer-level report of a large network, with per-parameter derivations for chosen parameters."""

    def __init__(self, model, init, params, digits, steps):
        self.model, self.P, self.digits, self.steps = model, init, digits, steps
        self.der = derive_layers(model)
        self.x = np.asarray(model.sample.x, dtype=np.float64)
        self.t = np.asarray(model.sample.t if model.sample.t is not None else np.zeros(model.n_outputs), dtype=np.float64)
        xs = sp.Symbol("x", real=True)
        self.fs = [None if lay.activation.is_layer else sp.lambdify(xs, to_elementary(lay.activation.expr), "numpy")
                   for lay in model.layers]
        self.fps = [sp.lambdify((OUT, NET), to_elementary(d), "numpy") for d in self.der.derivs]
        self.dout = sp.lambdify((Y, T, NET), to_elementary(self.der.delta_out), "numpy")
        self.lterm = sp.lambdify((Y, T, NET, LOGSOFTMAX), to_elementary(self.der.loss_term), "numpy")
        self.nets, self.outs, self.deltas, self.grads, self.E = self._run(self.P)
        self.params = params
        self.values = {}

    def _run(self, P):
        m, a = self.model, self.x
        nets, outs = [], [a]
        for k, lay in enumerate(m.layers):
            wp, bp = m.layer_params(k)
            z = P[wp.name] @ a + (P[bp.name] if bp is not None else 0.0)
            if lay.activation.is_layer:
                e = np.exp(z - z.max())
                a = e / e.sum()
            else:
                a = np.broadcast_to(np.asarray(self.fs[k](z), dtype=np.float64), z.shape)
            nets.append(z)
            outs.append(a)
        z, y = nets[-1], outs[-1]
        logy = z - (z.max() + np.log(np.exp(z - z.max()).sum()))
        E = float(self.der.scale * np.sum(np.broadcast_to(self.lterm(y, self.t, z, logy), y.shape)))
        h = np.broadcast_to(np.asarray(self.dout(y, self.t, z), dtype=np.float64), y.shape)
        d = float(self.der.scale) * (h - y * h.sum() if self.der.output == "fused" else h)
        deltas = [None] * len(m.layers)
        deltas[-1] = d
        for k in range(len(m.layers) - 2, -1, -1):
            wn, _ = m.layer_params(k + 1)
            fp = np.broadcast_to(np.asarray(self.fps[k](outs[k + 1], nets[k]), dtype=np.float64), nets[k].shape)
            deltas[k] = (P[wn.name].T @ deltas[k + 1]) * fp
        grads = {}
        for k, lay in enumerate(m.layers):
            wp, bp = m.layer_params(k)
            grads[wp.name] = np.outer(deltas[k], outs[k])
            if bp is not None:
                grads[bp.name] = deltas[k] if lay.bias == "unit" else np.array(deltas[k].sum())
        return nets, outs, deltas, grads, E

    def _chosen(self):
        m = self.model
        owner = m.scalar_owner()
        if self.params:
            out = []
            for name in self.params:
                if name not in owner:
                    raise SpecError(f"unknown scalar parameter {name!r} (e.g. {m.params[0].scalar_names[0]})", "params")
                out.append(name)
            return out
        out = []
        for k in range(len(m.layers)):
            wp, _ = m.layer_params(k)
            g = np.abs(self.grads[wp.name]).reshape(-1)
            out.append(wp.scalar_names[int(np.argmax(g))])
        return out

    def build(self):
        m = self.model
        secs = [self._model_section(), self._forward_section(), _vector_section(m), self._params_section(),
                self._summary_section(), _checks_section(m, self._lookup)]
        if self.steps:
            names = [p.name for p in m.trainable_params]
            w0 = np.concatenate([self.P[n].reshape(-1) for n in names])
            secs.append(_training_section(self.steps, lambda w: self._run(self._unflat(w, names))[4],
                                          lambda w: np.concatenate([self._run(self._unflat(w, names))[3][n].reshape(-1)
                                                                    for n in names]), w0, m.train.learning_rate))
        return _report(m, secs, self.der.rewrites, self.values, self.digits)

    def _unflat(self, w, names):
        P, i = dict(self.P), 0
        for n in names:
            P[n] = w[i:i + self.P[n].size].reshape(self.P[n].shape)
            i += self.P[n].size
        return P

    def _model_section(self):
        m = self.model
        sec = Section("The model")
        total = sum(p.size for p in m.params)
        sec.blocks.append(Text([f"{m.description or m.describe()} — {total} scalar parameters, so this report "
                                "derives the gradients layer by layer (matrix form) and shows the per-parameter "
                                "chain rule only for selected parameters."]))
        svg, tikz = diagram(m)
        sec.blocks.append(Diagram(svg, tikz))
        rows = []
        for p in m.params:
            v = self.P[p.name]
            rows.append([p.name, " × ".join(map(str, p.shape)) or "scalar", str(p.size),
                         "trainable" if p.trainable else "frozen", float(np.mean(v)), float(np.std(v))])
        sec.blocks.append(Table(["parameter", "shape", "size", "", "mean", "std"], rows))
        sec.blocks.append(Text([f"Sample: {m.n_inputs} inputs with mean ", float(self.x.mean()), "; target ",
                                ", ".join(_fmt(v, 4) for v in self.t[:12]) + (" …" if self.t.size > 12 else ""),
                                "; learning rate η = ", float(m.train.learning_rate), "."]))
        return sec

    def _forward_section(self):
        m = self.model
        sec = Section("Forward pass")
        for k, lay in enumerate(m.layers):
            W = sp.MatrixSymbol(f"W^{{({k + 1})}}", *self.P[m.layer_params(k)[0].name].shape)
            a = sp.MatrixSymbol(f"a^{{({k})}}", W.shape[1], 1)
            netk = sp.MatrixSymbol(f"net^{{({k + 1})}}", W.shape[0], 1)
            b = m.layer_params(k)[1]
            rhs = W * a + sp.MatrixSymbol(f"b^{{({k + 1})}}", W.shape[0], 1) if b is not None else W * a
            sec.blocks.append(Math([netk, rhs]))
            f = "softmax" if lay.activation.is_layer else lay.activation.at(_sym("net"))
            sec.blocks.append(Text([f"a^({k + 1}) = f(net^({k + 1})) with f(net) = ", f,
                                    f"; {int(np.sum(self.outs[k + 1] > 0))} of {lay.units} outputs positive, max ",
                                    float(self.outs[k + 1].max()), "."]))
        rows = [[n, float(v), float(t)] for n, v, t in zip(m.outputs, self.outs[-1], self.t)]
        sec.blocks.append(Table(["output", "value", "target"], rows))
        sec.blocks.append(Text(["Loss E = ", self.E, f" ({m.loss.name})."]))
        return sec

    def _params_section(self):
        m = self.model
        owner = m.scalar_owner()
        sec = Section("Selected parameters, step by step")
        sec.blocks.append(Text(["The same chain rule, for single weights: the gradient of weight (j, i) of layer l is "
                                "its unit's delta times the input it multiplies."]))
        self.picked = self._chosen()
        E = _sym("E")
        eta = float(m.train.learning_rate)
        for name in self.picked:
            pname, idx = owner[name]
            k = next(i for i, lay in enumerate(m.layers) if pname.startswith(lay.name + "."))
            p = next(q for q in m.params if q.name == pname)
            ws = _sym(name)
            g = float(self.grads[pname].reshape(-1)[idx])
            unit = idx // p.shape[1] if pname.endswith(".weight") else idx
            dsym = _sym(f"delta^{{({k + 1})}}_{{{unit + 1}}}")
            if pname.endswith(".weight"):
                j, i = divmod(idx, p.shape[1])
                asym = _sym(f"a^{{({k})}}_{{{i + 1}}}")
                dval, aval = float(self.deltas[k][j]), float(self.outs[k][i])
                self.values.update({dsym: dval, asym: aval})
                sec.blocks.append(Text([f"Weight {name} connects input {i + 1} to unit {j + 1} of layer {k + 1}:"]))
                sec.blocks.append(Math([Partial(E, ws), sp.Mul(dsym, asym, evaluate=False),
                                        Subst(sp.Mul(dsym, asym, evaluate=False)), g]))
            else:
                j = idx
                dval = float(self.deltas[k][j])
                self.values[dsym] = dval
                sec.blocks.append(Math([Partial(E, ws), dsym, g]))
            if k < len(m.layers) - 1:
                wn, _ = m.layer_params(k + 1)
                col = self.P[wn.name][:, j]
                back = float(col @ self.deltas[k + 1])
                fp = float(np.broadcast_to(self.fps[k](self.outs[k + 1], self.nets[k]), self.nets[k].shape)[j])
                bs = _sym(f"s^{{({k + 1})}}_{{{j + 1}}}")
                fs = sp.Function("f'")(_sym(f"net^{{({k + 1})}}_{{{j + 1}}}"))
                self.values.update({bs: back, fs: fp})
                sec.blocks.append(Text([f"Its delta sums over the {len(col)} units of layer {k + 2}: ", bs, " = ",
                                        sp.Sum(_sym(f"W^{{({k + 2})}}_{{m{j + 1}}}") * _sym(f"delta^{{({k + 2})}}_m"),
                                               (_sym("m"), 1, len(col))), ", the back-propagated error, times the "
                                        "activation's derivative:"]))
                sec.blocks.append(Math([dsym, sp.Mul(bs, fs, evaluate=False), Subst(sp.Mul(bs, fs, evaluate=False)),
                                        float(self.deltas[k][j])]))
            v = float(self.P[pname].reshape(-1)[idx])
            new = _sym(name + "^+")
            self.values.update({ws: v, _sym("eta"): eta, Partial(E, ws): g})
            expr = ws - _sym("eta") * Partial(E, ws)
            sec.blocks.append(Math([new, expr, Subst(expr), v - eta * g]))
        sec.blocks.append(Text(["Every trainable parameter is updated the same way, w⁺ = w − η ∂E/∂w, "
                                "with all gradients computed from the weights before the update."]))
        return sec

    def _loss_of(self, pname, idx, v):
        P = dict(self.P)
        P[pname] = self.P[pname].copy()
        P[pname].reshape(-1)[idx] = v
        return self._run(P)[4]

    def _summary_section(self):
        m = self.model
        owner = m.scalar_owner()
        sec = Section("Summary and finite-difference check")
        rows = []
        h = 1e-6
        for name in self.picked:
            pname, idx = owner[name]
            v = float(self.P[pname].reshape(-1)[idx])
            g = float(self.grads[pname].reshape(-1)[idx])
            fd = (self._loss_of(pname, idx, v + h) - self._loss_of(pname, idx, v - h)) / (2 * h)
            rows.append([Partial(_sym("E"), _sym(name)), g, fd, _rel(g, fd)])
        sec.blocks.append(Table(["gradient", "value", "finite difference", "relative error"], rows))
        norms = [[p.name, float(np.linalg.norm(self.grads[p.name]))] for p in m.trainable_params]
        sec.blocks.append(Table(["parameter", "gradient norm"], norms))
        return sec

    def _lookup(self, e):
        m = self.model
        if e.what == "loss":
            return self.E
        if e.what == "output":
            return float(self.outs[-1][m.outputs.index(e.name)]) if e.name in m.outputs else None
        owner = m.scalar_owner()
        if e.name not in owner:
            return None
        pname, idx = owner[e.name]
        g = float(self.grads[pname].reshape(-1)[idx])
        if e.what == "gradient":
            return g
        if e.what == "updated":
            return float(self.P[pname].reshape(-1)[idx]) - m.train.learning_rate * g
        return None
