"""The layer-level report of a large network: the vectorised derivation, then selected parameters one by one."""

import numpy as np
import sympy as sp

from symgrad.core.derive import derive
from symgrad.errors import SpecError
from symgrad.ops.activations import net as NET
from symgrad.ops.activations import out as OUT
from symgrad.ops.functions import to_elementary
from symgrad.ops.losses import t as T
from symgrad.ops.losses import y as Y
from symgrad.report.blocks import Diagram, Math, Partial, Section, Subst, Table, Text, sym
from symgrad.report.diagram import diagram
from symgrad.report.numbers import fmt
from symgrad.report.sections import checks_section, fd_summary_section, make_report, params_training_section, scalar_param_value
from symgrad.train.generated import numpy_module_object


def vector_section(model):
    """The general form per layer, from derive_layers' expressions."""
    der = derive(model).layers
    L = len(model.layers)
    sec = Section("The general, vectorised form")
    n, m = sp.symbols("n m")
    W, a_in, b, net_l = (sp.MatrixSymbol(s, *shape) for s, shape in
                         (("W^{(l)}", (n, m)), ("a^{(l-1)}", (m, 1)), ("b^{(l)}", (n, 1)), ("net^{(l)}", (n, 1))))
    sec.blocks.append(Text(["For layer ", sym("l"), " with weight matrix ", W, " (rows: units, columns: inputs), net input ",
                            sp.Eq(net_l, W * a_in + b, evaluate=False), " and output ",
                            sp.Eq(sym("a^{(l)}"), sp.Function("f")(sym("net^{(l)}")), evaluate=False), "; ", sym("a^{(0)}"),
                            " is the input. symgrad derives each elementwise factor with SymPy:"]))
    fan_in = model.n_inputs
    shapes = []
    for k, layer in enumerate(model.layers):
        shapes.append((layer.units, fan_in))
        fan_in = layer.units
    for k in reversed(range(L)):
        layer = model.layers[k]
        n_out, n_in = shapes[k]
        if getattr(layer, "is_layer", False):
            sec.blocks += _free_layer(k, layer, n_in, n_out)
            continue
        d = sp.MatrixSymbol(f"delta^{{({k + 1})}}", n_out, 1)
        a_prev = sp.MatrixSymbol(f"a^{{({k})}}", n_in, 1)
        sec.blocks.append(Text([f"Layer {k + 1} ({layer.name}, {n_in} → {n_out}, activation {layer.activation.name}); ",
                                sym(f"W^{{({k + 1})}}"), f" has shape {n_out} × {n_in}:"]))
        if k == L - 1:
            fname, netL = sp.Function("f'"), sym(f"net^{{({k + 1})}}")
            yv, tv = sym(f"a^{{({k + 1})}}"), sym("t")
            if der.output == "fused":
                h = der.delta_out.subs({Y: yv, T: tv, NET: sym(f"net^{{({k + 1})}}")})
                sec.blocks.append(Text(["Softmax output: with h = y ⊙ ∂l/∂y = ", h, " elementwise (SymPy), "
                                        "the Jacobian of the softmax gives the output's ", sym(f"delta^{{({k + 1})}}"), ":"]))
                jj = sym("j")
                sec.blocks.append(Math([d, der.scale * (sym("h") - yv * sp.Sum(sym("h_{j}"), (jj, 1, layer.units)))]))
            else:
                dl = sp.diff(model.loss.expr, Y)
                fp = der.derivs[k]
                sec.blocks.append(Math([d, sp.Mul(der.scale, Partial(sym("l"), sym("y")), fname(netL), evaluate=False),
                                        der.scale * dl.subs({Y: yv, T: tv}) * fp.subs({OUT: yv, NET: sym(f"net^{{({k + 1})}}")}),
                                        der.scale * der.delta_out.subs({Y: yv, T: tv, NET: sym(f"net^{{({k + 1})}}")})]))
        else:
            fp = der.derivs[k].subs({OUT: sym(f"a^{{({k + 1})}}"), NET: sym(f"net^{{({k + 1})}}")})
            fpm = sp.MatrixSymbol(f"f'_{k + 1}", n_out, 1)
            if getattr(model.layers[k + 1], "is_layer", False):  # the next layer hands back dE/da directly
                upstream = sp.MatrixSymbol(rf"\partial E / \partial a^{{({k + 1})}}", n_out, 1)
            else:
                Wn = sp.MatrixSymbol(f"W^{{({k + 2})}}", shapes[k + 1][0], n_out)
                upstream = Wn.T * sp.MatrixSymbol(f"delta^{{({k + 2})}}", shapes[k + 1][0], 1)
            sec.blocks.append(Math([d, sp.HadamardProduct(upstream, fpm)]))
            sec.blocks.append(Text(["with ", sp.Function("f'")(sym(f"net^{{({k + 1})}}")), " = ", fp,
                                    " elementwise (SymPy's derivative of ",
                                    layer.activation.at(sym("net")), ")."]))
        sec.blocks.append(Math([Partial(sym("E"), sp.Symbol(f"W^{{({k + 1})}}")), d * a_prev.T]))
        wp, bp = model.layer_params(k)
        if bp is not None:
            if layer.bias == "unit":
                sec.blocks.append(Math([Partial(sym("E"), sp.Symbol(f"b^{{({k + 1})}}")), d]))
            else:
                sec.blocks.append(Text(["The shared bias gets the sum of the layer's ", sym("delta"), "s: ",
                                        Partial(sym("E"), sp.Symbol(f"b^{{({k + 1})}}")), " = ",
                                        sp.Sum(sym(f"delta^{{({k + 1})}}_j"), (sym("j"), 1, layer.units)), "."]))
    return sec


def _free_layer(k, layer, n_in, n_out):
    """Blocks for a parameter-free layer: its formula and its backward pass, the vector-Jacobian product."""
    J = sp.MatrixSymbol(f"J^{{({k + 1})}}", n_out, n_in)
    up = sp.MatrixSymbol(rf"\partial E / \partial a^{{({k + 1})}}", n_out, 1)
    down = sp.MatrixSymbol(rf"\partial E / \partial a^{{({k})}}", n_in, 1)
    return [Text([f"Layer {k + 1} ({layer.name}, {layer.kind}, no parameters, {n_in} → {n_out}): {layer.formula()}; "
                  "its backward pass multiplies by the transposed Jacobian ", J, ", each entry SymPy's derivative "
                  f"of an output with respect to an input ({layer.rule}):"]),
            Math([down, J.T * up])]


class LayerReport:
    """Layer-level report of a large network, with per-parameter derivations for chosen parameters.

    Its results (output, loss, every gradient, the finite differences and the training run) come from
    the model's generated NumPy module, the code ``symgrad generate`` writes and ``symgrad train``
    steps. That module keeps no per-layer values, so the intermediate numbers a per-parameter chain
    shows (a^(l), net^(l), delta^(l), f'(net^(l))) come from ``_layers``: a walk over the same layer
    derivation the module is printed from (its f' and output-delta expressions), starting from the
    module's output. tests/test_report.py checks that the walk's deltas give the module's gradients.
    """

    def __init__(self, model, init, params, digits, steps):
        self.model, self.P, self.digits, self.steps = model, init, digits, steps
        self.der = derive(model).layers
        self.module = numpy_module_object(model)
        self.x = np.asarray(model.sample.x, dtype=np.float64)
        self.t = np.asarray(model.sample.t if model.sample.t is not None else np.zeros(model.n_outputs), dtype=np.float64)
        self.y = self.t if model.loss.uses_target else None
        xs = sp.Symbol("x", real=True)
        self.fs = [sp.lambdify(xs, to_elementary(lay.activation.expr), "numpy") for lay in model.layers[:-1]]
        self.fps = [None if d is None else sp.lambdify((OUT, NET), to_elementary(d), "numpy") for d in self.der.derivs]
        self.dout = sp.lambdify((Y, T, NET), to_elementary(self.der.delta_out), "numpy")
        E, self.grads = self.module.loss_and_gradients(self.P, self.x, self.y)
        self.E = float(E)
        self.nets, self.outs, self.deltas = self._layers(self.P)
        self.params = params
        self.values = {}

    def _loss(self, P):
        return float(self.module.loss(P, self.x, self.y))

    def _gradients(self, P):
        return self.module.gradients(P, self.x, self.y)

    def _layers(self, P):
        """(net^(l), a^(l) from a^(0) = x, delta^(l)) per layer; a^(L) is the module's output."""
        m, a = self.model, self.x
        nets, outs = [], [a]
        for k in range(len(m.layers)):
            wp, bp = m.layer_params(k)
            z = P[wp.name] @ a + (P[bp.name] if bp is not None else 0.0)
            last = k == len(m.layers) - 1
            a = self.module.forward(P, self.x) if last else _elementwise(self.fs[k](z), z)
            nets.append(z)
            outs.append(a)
        z, y = nets[-1], outs[-1]
        h = _elementwise(self.dout(y, self.t, z), y)
        deltas = [None] * len(m.layers)
        deltas[-1] = float(self.der.scale) * (h - y * h.sum() if self.der.output == "fused" else h)
        for k in range(len(m.layers) - 2, -1, -1):
            wn, _ = m.layer_params(k + 1)
            deltas[k] = (P[wn.name].T @ deltas[k + 1]) * self._fp(k, outs, nets)
        return nets, outs, deltas

    def _fp(self, k, outs, nets):
        """f'(net^(k+1)) elementwise."""
        return _elementwise(self.fps[k](outs[k + 1], nets[k]), nets[k])

    def _chosen(self):
        m = self.model
        owner = self._owner()
        if self.params:
            out = []
            for name in self.params:
                if name not in owner:
                    raise SpecError(f"no trainable scalar parameter {name!r} (e.g. {next(iter(owner), 'none')})", "params")
                out.append(name)
            return out
        out = []
        for k in range(len(m.layers)):
            wp, _ = m.layer_params(k)
            if wp.name in self.grads:
                g = np.abs(self.grads[wp.name]).reshape(-1)
                out.append(wp.scalar_names[int(np.argmax(g))])
        return out

    def _owner(self):
        """{scalar name: (parameter, flat index)} of the trainable parameters."""
        return {n: o for n, o in self.model.scalar_owner().items() if o[0] in self.grads}

    def build(self):
        m = self.model
        secs = [self._model_section(), self._forward_section(), vector_section(m), self._params_section(),
                self._summary_section(), checks_section(m, self._lookup)]
        if self.steps:
            secs.append(params_training_section(self.steps, self.P, [p.name for p in m.trainable_params], self._loss,
                                                self._gradients, m.train.learning_rate))
        return make_report(m, secs, self.der.rewrites, self.values, self.digits)

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
                                ", ".join(fmt(v, 4) for v in self.t[:12]) + (" …" if self.t.size > 12 else ""),
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
            f = "softmax" if lay.activation.is_layer else lay.activation.at(sym("net"))
            sec.blocks.append(Text([sp.Eq(sym(f"a^{{({k + 1})}}"), sp.Function("f")(sym(f"net^{{({k + 1})}}")), evaluate=False),
                                    " with ", sp.Function("f")(sym("net")), " = ", f,
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
                                "its unit's ", sym("delta"), " times the input it multiplies."]))
        self.picked = self._chosen()
        E = sym("E")
        eta = float(m.train.learning_rate)
        for name in self.picked:
            pname, idx = owner[name]
            k = next(i for i, lay in enumerate(m.layers) if pname.startswith(lay.name + "."))
            p = next(q for q in m.params if q.name == pname)
            ws = sym(name)
            g = float(self.grads[pname].reshape(-1)[idx])
            unit = idx // p.shape[1] if pname.endswith(".weight") else idx
            dsym = sym(f"delta^{{({k + 1})}}_{{{unit + 1}}}")
            if pname.endswith(".weight"):
                j, i = divmod(idx, p.shape[1])
                asym = sym(f"a^{{({k})}}_{{{i + 1}}}")
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
                fp = float(self._fp(k, self.outs, self.nets)[j])
                bs = sym(f"s^{{({k + 1})}}_{{{j + 1}}}")
                fs = sp.Function("f'")(sym(f"net^{{({k + 1})}}_{{{j + 1}}}"))
                self.values.update({bs: back, fs: fp})
                sec.blocks.append(Text(["Its ", sym("delta"), f" sums over the {len(col)} units of layer {k + 2}: ", bs, " = ",
                                        sp.Sum(sym(f"W^{{({k + 2})}}_{{m{j + 1}}}") * sym(f"delta^{{({k + 2})}}_m"),
                                               (sym("m"), 1, len(col))), ", the back-propagated error, times the "
                                        "activation's derivative:"]))
                sec.blocks.append(Math([dsym, sp.Mul(bs, fs, evaluate=False), Subst(sp.Mul(bs, fs, evaluate=False)),
                                        float(self.deltas[k][j])]))
            v = float(self.P[pname].reshape(-1)[idx])
            new = sym(name + "^+")
            self.values.update({ws: v, sym("eta"): eta, Partial(E, ws): g})
            expr = ws - sym("eta") * Partial(E, ws)
            sec.blocks.append(Math([new, expr, Subst(expr), v - eta * g]))
        sec.blocks.append(Text(["Every trainable parameter is updated the same way, w⁺ = w − η ∂E/∂w, "
                                "with all gradients computed from the weights before the update."]))
        return sec

    def _summary_section(self):
        return fd_summary_section(self.model, self.picked, self.P, self.grads, self._loss)

    def _lookup(self, e):
        m = self.model
        if e.what == "loss":
            return self.E
        if e.what == "output":
            return float(self.outs[-1][m.outputs.index(e.name)]) if e.name in m.outputs else None
        return scalar_param_value(e, self._owner(), self.P, self.grads, m.train.learning_rate)


def _elementwise(v, like):
    """A lambdified elementwise value as a float array of like's shape (constants broadcast)."""
    return np.broadcast_to(np.asarray(v, dtype=np.float64), like.shape)
