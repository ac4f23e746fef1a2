"""The report of a network with recurrent layers: each cell's equations, local derivatives (SymPy) and deltas
through time; for a small Elman network (an rnn layer on x, read by a dense output layer) the forward pass
step by step and every gradient through time with its numbers, showing that W_hh collects a term from
every step.

The numbers of the worked passes are computed here from the cell's equations; the results (output, loss,
every gradient) come from the model's generated NumPy module, and the summary compares the two.
"""

import numpy as np
import sympy as sp

from symgrad.core.derive import derive
from symgrad.ops.activations import net as NET
from symgrad.ops.activations import out as OUT
from symgrad.ops.functions import to_elementary
from symgrad.ops.losses import t as T
from symgrad.ops.losses import y as Y
from symgrad.ops.recurrent import RNN, Recurrent
from symgrad.report.blocks import Math, Partial, Report, Section, Subst, Table, Text, sym
from symgrad.report.numbers import rel
from symgrad.report.sections import checks_section, scalar_param_value
from symgrad.train.generated import numpy_module_object

MAX_WORKED = 64  # steps x hidden units up to which an Elman network is worked step by step with numbers


def covers(model):
    """Whether this report covers the model: a graph network with a recurrent layer."""
    return model.kind == "graph" and any(isinstance(n.op, Recurrent) for n in model.nodes)


def _worked(model):
    """Whether the model is an Elman network this report works through: rnn on x, then one dense output layer."""
    nodes = model.nodes
    return (len(nodes) == 2 and isinstance(nodes[0].op, RNN) and nodes[0].inputs == ("x",) and nodes[1].kind == "dense"
            and nodes[0].op.T * nodes[0].op.H <= MAX_WORKED and (nodes[1].activation is None or not nodes[1].activation.is_layer))


def _listed(values):
    """Floats separated by commas for a Text, or a pointer to the summary when there are many."""
    if values.size > 8:
        return ["(see the summary)"]
    out = []
    for v in values:
        out += [float(v), ", "]
    return out[:-1]


class RecurrentReport:
    """Layer-level equations of every recurrent layer; step-by-step numbers for a small Elman network."""

    def __init__(self, model, init, digits):
        self.model, self.P, self.digits = model, init, digits
        self.module = numpy_module_object(model)
        s = model.sample
        self.x = np.asarray(s.x, dtype=np.float64)
        self.t = np.asarray(s.t if s.t is not None else np.zeros(model.output_shape), dtype=np.float64)
        E, self.grads = self.module.loss_and_gradients(self.P, self.x, self.t)
        self.E, self.y = float(E), self.module.forward(self.P, self.x)
        self.values = {}
        self.worked = {}  # parameter name -> the gradient the worked passes sum up

    def build(self):
        m = self.model
        secs = [self._model_section()] + [self._cell_section(n) for n in m.nodes if isinstance(n.op, Recurrent)]
        if _worked(m):
            secs += self._elman_sections()
        secs += [self._summary_section(), checks_section(m, self._lookup)]
        notes = derive(m).graph.rewrites + [n for node in m.nodes if node.activation is not None
                                            for n in getattr(node.activation, "notes", ())]
        if notes:
            secs.append(Section("Stability rewrites", [Text(["The derivation rewrote these expressions into "
                                                             "numerically stable forms:"])] + [Text(["- " + n]) for n in notes]))
        return Report(f"Backpropagation through time, step by step: {m.name}", secs, self.values, self.digits)

    def _model_section(self):
        m = self.model
        sec = Section("The model")
        sec.blocks.append(Text([f"{m.description or m.describe()} The sample is one sequence x of shape "
                                f"{' × '.join(map(str, m.input_shape))} (steps × features)."]))
        rows = [[n.name, n.op.describe(), " × ".join(map(str, n.shape))] for n in m.nodes]
        sec.blocks.append(Table(["layer", "kind", "output shape (one sample)"], rows))
        prow = [[p.name, " × ".join(map(str, p.shape)), "trains" if p.trainable else "frozen"] for p in m.params]
        sec.blocks.append(Table(["parameter", "shape", ""], prow))
        return sec

    def _cell_section(self, node):
        op = node.op
        sec = Section(f"Layer {node.name}: the {op.kind} cell and its backward pass through time")
        sec.blocks.append(Text([f"{op.describe()}; at every step t = 1..{op.T}:"]))
        sec.blocks += [Text(["- " + line]) for line in op.equations]
        sec.blocks.append(Text(["Each local derivative comes from SymPy's diff of the cell's equations, with the "
                                "gates' derivatives rewritten in their outputs:"]))
        sec.blocks.append(Table(["derivative", "expression"], [[what, expr] for what, expr in op.local_derivatives()]))
        sec.blocks.append(Text([f"The layer's backward rule: {op.rule}. Step by step:"]))
        sec.blocks += [Text(["- " + line]) for line in op.deltas]
        if op.truncate:
            sec.blocks.append(Text([f"Truncated every {op.truncate} steps: steps 1..{op.truncate}, {op.truncate + 1}.."
                                    f"{2 * op.truncate}, ... are backpropagated separately (the state is detached after "
                                    "each, as PyTorch's h.detach()); W_hh still collects its term from every step."]))
        return sec

    # -- the worked Elman network

    def _elman_sections(self):
        rnn, dense = self.model.nodes
        op = rnn.op
        Wih, Whh = (self.P[p.name] for p in rnn.params[:2])
        bih, bhh = (self.P[p.name] for p in rnn.params[2:]) if len(rnn.params) > 2 else (None, None)
        H, F, steps = op.H, op.F, op.T
        w = {"ih": [[sym(f"w^{{ih}}_{{{j + 1}{i + 1}}}") for i in range(F)] for j in range(H)],
             "hh": [[sym(f"w^{{hh}}_{{{j + 1}{k + 1}}}") for k in range(H)] for j in range(H)]}
        b = {"ih": [sym(f"b^{{ih}}_{{{j + 1}}}") for j in range(H)], "hh": [sym(f"b^{{hh}}_{{{j + 1}}}") for j in range(H)]}
        xs = [[sym(f"x^{{({t + 1})}}_{{{i + 1}}}") for i in range(F)] for t in range(steps)]
        a = [[sym(f"a^{{({t + 1})}}_{{{j + 1}}}") for j in range(H)] for t in range(steps)]
        h = [[sym(f"h^{{({t})}}_{{{j + 1}}}") for j in range(H)] for t in range(steps + 1)]  # h[0]: the zero state
        for j in range(H):
            self.values.update({w["ih"][j][i]: Wih[j, i] for i in range(F)})
            self.values.update({w["hh"][j][k]: Whh[j, k] for k in range(H)})
            if bih is not None:
                self.values.update({b["ih"][j]: bih[j], b["hh"][j]: bhh[j]})
            self.values[h[0][j]] = 0.0
        f, fp = op.act.at(NET), op.act.derivative_in_out()
        fwd = Section("Forward pass, step by step")
        fwd.blocks.append(Text(["The state starts at zero, h^(0) = 0. Each step adds the input projection and the "
                                f"previous state's projection and applies {op.activation}:"]))
        hv = np.zeros(H)
        for t in range(steps):
            self.values.update({xs[t][i]: self.x[t, i] for i in range(F)})
            av = Wih @ self.x[t] + Whh @ hv + (0.0 if bih is None else bih + bhh)
            hv = np.tanh(av) if op.activation == "tanh" else np.maximum(av, 0.0)
            fwd.blocks.append(Text([f"Step {t + 1}:"]))
            for j in range(H):
                terms = [sp.Mul(w["ih"][j][i], xs[t][i], evaluate=False) for i in range(F)]
                terms += [b["ih"][j]] if bih is not None else []
                terms += [sp.Mul(w["hh"][j][k], h[t][k], evaluate=False) for k in range(H)]
                terms += [b["hh"][j]] if bih is not None else []
                expr = sp.Add(*terms, evaluate=False)
                self.values[a[t][j]], self.values[h[t + 1][j]] = av[j], hv[j]
                fwd.blocks.append(Math([a[t][j], expr, Subst(expr), float(av[j])]))
                fwd.blocks.append(Math([h[t + 1][j], f.subs(NET, a[t][j]), float(hv[j])]))
        seq = op.return_sequences
        hs = np.array([[self.values[h[t + 1][j]] for j in range(H)] for t in range(steps)])
        fwd.blocks.append(Text([f"The dense layer {dense.name} reads " + ("every step's h^(t)" if seq else f"h^({steps})") +
                                "; output y = ", *_listed(self.y.ravel()),
                                ", loss E = ", self.E, "."]))
        back = Section("Backward pass through time")
        dh_out = self._output_delta(dense, hs)  # dE/dh^(t) from the output, (steps, H); zero where no output reads h
        back.blocks.append(Text(["From the loss, each hidden state the output layer reads gets dE/dh = W_out^T δ_out "
                                 "(δ_out: the output layer's delta). Going back from the last step, dE/dh^(t) adds the "
                                 "delta carried from step t + 1 through W_hh, and δ^(t) = dE/dh^(t) · f'(a^(t)) with "
                                 "f' from SymPy: f'(a) = ", fp.subs(OUT, sym("h")), "."]))
        delta = [[sym(f"delta^{{({t + 1})}}_{{{j + 1}}}") for j in range(H)] for t in range(steps)]  # printed as a Greek delta
        dv = np.zeros((steps, H))
        for t in reversed(range(steps)):
            carried = t + 1 < steps and (not op.truncate or (t + 1) % op.truncate)
            for j in range(H):
                g = Partial(sym("E"), h[t + 1][j])
                own = sym(f"g^{{({t + 1})}}_{{{j + 1}}}")
                self.values[own] = dh_out[t, j]
                parts = [own] if dh_out[t].any() else []
                if carried:
                    parts += [sp.Mul(w["hh"][k][j], delta[t + 1][k], evaluate=False) for k in range(H)]
                gv = dh_out[t, j] + (Whh[:, j] @ dv[t + 1] if carried else 0.0)
                if parts:
                    expr = sp.Add(*parts, evaluate=False)
                    back.blocks.append(Math([g, expr, Subst(expr), float(gv)]))
                else:
                    back.blocks.append(Math([g, 0.0]))
                self.values[g] = gv
                dv[t, j] = gv * float(fp.subs(OUT, hs[t, j]))
                self.values[delta[t][j]] = dv[t, j]
                back.blocks.append(Math([delta[t][j], sp.Mul(g, fp.subs(OUT, h[t + 1][j]), evaluate=False),
                                         Subst(sp.Mul(g, fp.subs(OUT, h[t + 1][j]), evaluate=False)), float(dv[t, j])]))
            if not carried and t + 1 < steps:
                back.blocks.append(Text([f"(bptt_steps = {op.truncate}: no delta is carried from step {t + 2} to {t + 1}.)"]))
        if dh_out[:-1].any():
            back.blocks.append(Text(["g^(t) is the delta the output layer hands to h^(t) at step t."]))
        elif dh_out.any():
            back.blocks.append(Text([f"g^({steps}) = W_out^T δ_out is the delta the output layer hands to the last state."]))
        return [fwd, back, self._sums_section(rnn, w, b, xs, h, delta, dv, hs)]

    def _output_delta(self, dense, hs):
        """dE/dh^(t) handed back by the dense output layer, per step (zeros where it reads no state)."""
        der = derive(self.model).graph
        W = self.P[dense.params[0].name]
        bias = self.P[dense.params[1].name] if len(dense.params) > 1 else 0.0
        seq = self.model.nodes[0].op.return_sequences
        z = (hs if seq else hs[-1:]) @ W.T + bias
        f = sp.lambdify((Y, T, NET), to_elementary(der.delta_out), "numpy")
        t = self.t.reshape(z.shape)
        d = np.broadcast_to(np.asarray(f(self.y.reshape(z.shape), t, z), dtype=np.float64), z.shape) * float(der.scale)
        out = np.zeros_like(hs)
        out[(slice(None) if seq else slice(-1, None))] = d @ W
        return out

    def _sums_section(self, rnn, w, b, xs, h, delta, dv, hs):
        op = rnn.op
        H, F, steps = op.H, op.F, op.T
        sec = Section("Gradients through time: every step adds a term")
        sec.blocks.append(Text(["The same weights act at every step, so each gradient sums one term per step: "
                                "dE/dW_hh[j, k] = Σ_t δ^(t)_j h^(t−1)_k (the term of step 1 is zero: h^(0) = 0), "
                                "dE/dW_ih[j, i] = Σ_t δ^(t)_j x^(t)_i, and both biases get Σ_t δ^(t)_j."]))
        E = sym("E")
        names = [p.name for p in rnn.params]
        rows = []
        for j in range(H):
            for k in range(H):
                terms = [sp.Mul(delta[t][j], h[t][k], evaluate=False) for t in range(steps)]
                total = float(sum(dv[t, j] * (hs[t - 1, k] if t else 0.0) for t in range(steps)))
                expr = sp.Add(*terms, evaluate=False)
                sec.blocks.append(Math([Partial(E, w["hh"][j][k]), expr, Subst(expr), total], split=steps > 4))
                rows.append([w["hh"][j][k]] + [float(dv[t, j] * (hs[t - 1, k] if t else 0.0)) for t in range(steps)]
                            + [total])
        for j in range(H):
            for i in range(F):
                rows.append([w["ih"][j][i]] + [float(dv[t, j] * self.x[t, i]) for t in range(steps)]
                            + [float(dv[:, j] @ self.x[:, i])])
        if len(names) > 2:
            for j in range(H):
                for kind in ("ih", "hh"):
                    rows.append([b[kind][j]] + [float(dv[t, j]) for t in range(steps)] + [float(dv[:, j].sum())])
        sec.blocks.append(Text(["Every recurrent parameter's gradient, term by term:"]))
        sec.blocks.append(Table(["parameter"] + [f"step {t + 1}" for t in range(steps)] + ["dE/d(parameter)"], rows))
        self.worked = {names[0]: dv.T @ self.x, names[1]: dv[1:].T @ hs[:-1] if steps > 1 else np.zeros((H, H))}
        if len(names) > 2:
            self.worked.update({names[2]: dv.sum(axis=0), names[3]: dv.sum(axis=0)})
        return sec

    def _summary_section(self):
        sec = Section("Summary: the gradients of the generated NumPy module")
        trained = [p for p in self.model.params if p.name in self.grads]
        if not self.worked and sum(p.size for p in trained) > MAX_WORKED:
            sec.blocks.append(Text(["Loss E = ", self.E, ". The largest gradient entry of each parameter, as the "
                                    "generated module computes it:"]))
            rows = []
            for p in trained:
                g = self.grads[p.name].reshape(-1)
                k = int(np.argmax(np.abs(g)))
                rows.append([p.name, " × ".join(map(str, p.shape)), p.scalar_names[k], float(g[k])])
            sec.blocks.append(Table(["parameter", "shape", "largest entry", "dE/d(entry)"], rows))
            return sec
        rows = []
        for p in self.model.params:
            if p.name not in self.grads:
                continue
            g = self.grads[p.name].reshape(-1)
            mine = self.worked.get(p.name)
            for k, s in enumerate(p.scalar_names):
                worked = "" if mine is None else float(mine.reshape(-1)[k])
                err = "" if mine is None else f"{rel(worked, float(g[k])):.1e}"
                rows.append([s, float(g[k]), worked, err])
        sec.blocks.append(Text(["Loss E = ", self.E, ". Each gradient as the generated module computes it"
                                + (", beside the sum worked above and their relative difference:" if self.worked else ":")]))
        sec.blocks.append(Table(["parameter", "dE/d(parameter)", "worked above", "relative difference"], rows))
        return sec

    def _lookup(self, e):
        if e.what == "loss":
            return self.E
        m = self.model
        if e.what == "output":
            return float(self.y.reshape(-1)[m.outputs.index(e.name)]) if e.name in m.outputs else None
        owner = {n: o for n, o in m.scalar_owner().items() if o[0] in self.grads}
        return scalar_param_value(e, owner, self.P, self.grads, m.train.learning_rate)
