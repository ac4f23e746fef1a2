"""NumPy source for a graph network's second-order functions: the R-operator over the graph, op by op.

Names as in :mod:`~symgrad.backends.numpy.graph` (``a{k}``, ``z{k}``, ``W{k}``, ``d{k}``, ``g{k}``); the forward keeps
``z{k}`` and ``a{k}`` both (f'' reads them). The R-forward computes ``rz{k}`` = R{z{k}} with the op's ``numpy_jvp``
and ``r{k}`` = R{a{k}} = f'(z) R{z}; the backward computes ``d{k}`` and ``rd{k}`` = R{d{k}} = R{g} f'(z) +
g f''(z) R{z}, and each op's ``numpy_rbackward`` hands its inputs dE/d(input) and R of it and gives R{dE/dp} of its
parameters (a fork sums its branches' contributions, to g and to R{g} alike). Gauss-Newton products run the
first-order backward on R{d} from the loss curvature; the Jacobian is reverse mode (one backward per output) or
forward mode (one R-forward per input), whichever runs fewer, over the batch copied once per seed.
"""

import re

from symgrad.backends.numpy.graph import _input_names, _param_names, _plain
from symgrad.backends.numpy.kernels import closure
from symgrad.backends.numpy.second import live
from symgrad.core.second import output_rdelta
from symgrad.errors import SpecError
from symgrad.ops.activations import net as NET
from symgrad.ops.activations import out as OUT
from symgrad.ops.losses import y as Y


class GraphSecondCode:
    """Prints the passes of one graph network's second-order functions (a GraphDerivation and a ModulePrinter)."""

    def __init__(self, der, pr):
        self.der, self.pr = der, pr
        self.nodes = der.nodes
        self.L = len(self.nodes)
        self.index = {"x": 0, **{n.name: k + 1 for k, n in enumerate(self.nodes)}}
        act = self.nodes[-1].activation
        if act is not None and act.is_layer and not all(hasattr(act, f"numpy_{m}") for m in ("jvp", "vjp", "rvjp")):
            raise SpecError(f"second-order functions need the array R-passes (numpy_jvp, numpy_vjp, numpy_rvjp) of the "
                            f"output layer {act.kind!r}", "--second-order")
        fprime = None if der.output != "elementwise" else 1 if act is None else act.derivative_in_out().subs(OUT, Y)
        self.rdelta = output_rdelta(der.output, der.delta_out, fprime, der.model.loss)
        self.curvature = der.model.loss.second_derivative()

    # -- names

    def _out(self, k):
        """(the op's output name, the name of its R): z{k}/rz{k}, or a{k}/r{k} for a layer without activation."""
        return (f"a{k}", f"r{k}") if _plain(self.nodes[k - 1]) else (f"z{k}", f"rz{k}")

    def _elem(self, expr, k):
        return self.pr(expr, {"out": f"a{k}", "net": self._out(k)[0], "y": f"a{k}", "t": "t"})

    def _vps(self, k, seeded):
        node = self.nodes[k - 1]
        return [None if seeded or not p.trainable else f"V{n}" for p, n in zip(node.params, _param_names(k, node))]

    def _fp(self, k, done):
        """The line computing fp{k} = f'(z{k}), once per function body."""
        if k in done:
            return []
        done.add(k)
        return [f"fp{k} = {self._elem(self.der.derivs[k - 1], k)}"]

    # -- passes

    def forward(self):
        """Every layer's z{k} and a{k} (no activation in place: the second-order passes read both)."""
        pnames = [n for k, node in enumerate(self.nodes, 1) for n in _param_names(k, node)]
        lines = [f"{', '.join(pnames)}{',' if len(pnames) == 1 else ''} = _params(params)"] if pnames else []
        for k, node in enumerate(self.nodes, 1):
            z = self._out(k)[0]
            lines += node.op.numpy_forward(node, _input_names(node, self.index), _param_names(k, node), z)
            act = node.activation
            if _plain(node):
                continue
            if act.is_layer:
                lines += act.numpy_forward(z, f"a{k}", k)
            else:
                lines.append(f"a{k} = {self.pr(act.at(NET), {'net': z})}  # {act.name}")
        return lines

    def r_forward(self, done, seeded=False):
        """R{z{k}} and R{a{k}} along the direction (V{name}), or from r0 with no parameter direction (``seeded``)."""
        lines = []
        for k, node in enumerate(self.nodes, 1):
            if not (seeded or self.der.needs_delta[k - 1]):
                continue
            rins = [self._r(self.index[s], seeded) for s in node.inputs]
            out, rout = self._out(k)
            lines += node.op.numpy_jvp(node, _input_names(node, self.index), rins, _param_names(k, node),
                                       self._vps(k, seeded), out, rout)
            act = node.activation
            if _plain(node):
                continue
            if act.is_layer:
                lines += act.numpy_jvp(f"a{k}", rout, f"r{k}")
            else:
                lines += self._fp(k, done) + [f"r{k} = fp{k} * {rout}  # R{{a}} = f'(z) R{{z}}"]
        return lines

    def _r(self, j, seeded):
        if j == 0:
            return "r0" if seeded else None
        return f"r{j}" if seeded or self.der.needs_delta[j - 1] else None

    def scale(self):
        c = self.der.scale
        red = "1.0 / a0.shape[0]" if self.der.model.loss.reduction == "mean" else "1.0"
        return [f"sc = {red}" if c == 1 else f"sc = {red} * {self.pr(c)}"]

    def output(self, second):
        """d{L} = dE/dz{L} and, with ``second``, rd{L} = R{d{L}}."""
        L, act = self.L, self.nodes[-1].activation
        out, rout = self._out(L)
        names = {"y": f"a{L}", "t": "t", "net": out}
        if self.der.output == "elementwise":
            lines = [f"d{L} = sc * ({self.pr(self.der.delta_out, names)})"]
            if second:
                lines.append(f"rd{L} = sc * ({self.pr(self.rdelta, names)}) * {rout}")
            return lines
        if self.der.output == "fused":
            lines = act.numpy_delta(self.pr(self.der.delta_out, names), f"a{L}", f"d{L}") + [f"d{L} *= sc"]
            if second:  # R{h - y sum h} with h = h(y): R{h} - R{y} sum h - y sum R{h}
                lines.append(f"rd{L} = -r{L} * h.sum(axis=1, keepdims=True)")
                if self.rdelta != 0:
                    lines += [f"rh = ({self.pr(self.rdelta, names)}) * r{L}",
                              f"rd{L} += rh - a{L} * rh.sum(axis=1, keepdims=True)"]
                lines.append(f"rd{L} *= sc")
            return lines
        lines = [f"g{L} = sc * ({self.pr(self.der.delta_out, names)})"] + act.numpy_vjp(f"a{L}", f"g{L}", f"d{L}")
        if second:
            lines.append(f"rg{L} = sc * ({self.pr(self.rdelta, names)}) * r{L}")
            lines += act.numpy_rvjp(f"a{L}", f"g{L}", rout, f"rg{L}", f"rd{L}")
        return lines

    def seeded_output(self, done, g, target):
        """Lines turning g = dE/da{L} (per unit, no loss) into ``target`` = dE/dz{L} through the output activation."""
        L, act = self.L, self.nodes[-1].activation
        if _plain(self.nodes[-1]):
            return [f"{target} = {g}"]
        if act.is_layer:
            return act.numpy_vjp(f"a{L}", g, target)
        return self._fp(L, done) + [f"{target} = {g} * fp{L}"]

    def backward(self, mode, done):
        """(lines, [(param, gradient name)]) from d{L} (and rd{L}) down.

        ``mode``: "hvp" (d and R{d}, R of the parameter gradients), "gn" (only the R{d} chain, linear: the first-order
        backward of R{d}), "input" (d down to the input, no parameter gradients).
        """
        index, der = self.index, self.der
        lines, grads, parts = [], [], {}
        to_input = mode == "input"
        d, r = ("rd", "rg") if mode == "gn" else ("d", "g")
        for k in range(self.L, 0, -1):
            node = self.nodes[k - 1]
            if not (to_input or der.needs_delta[k - 1]):
                continue
            if k < self.L:
                lines += self._gather(k, parts.pop(k), mode, done)
            ins, ps = _input_names(node, index), _param_names(k, node)
            out, rout = self._out(k)
            dins, rdins = [], []
            for pos, s in enumerate(node.inputs):
                j = index[s]
                wanted = to_input or (j > 0 and der.needs_delta[j - 1])
                dins.append(f"{r}{j}_{k}_{pos}" if wanted else None)
                rdins.append(f"rg{j}_{k}_{pos}" if wanted and mode == "hvp" else None)
                if wanted:
                    parts.setdefault(j, []).append((dins[-1], rdins[-1]))
            rdps = []
            for p, name in zip(node.params, ps):
                take = p.trainable and not to_input
                rdps.append(f"rg{name}" if take else None)
                if take:
                    grads.append((p.name, f"rg{name}"))
            if mode == "hvp":
                rins = [self._r(index[s], False) for s in node.inputs]
                lines += node.op.numpy_rbackward(node, ins, rins, ps, self._vps(k, False), out, rout, f"d{k}", f"rd{k}",
                                                 dins, rdins, rdps)
            else:
                lines += node.op.numpy_backward(node, ins, ps, out, f"{d}{k}", dins, rdps)
        if to_input:
            lines += self._sum("g0", [g for g, _ in parts.pop(0)])
        return lines, grads

    def _sum(self, name, parts):
        if len(parts) == 1:
            return [f"{name} = {parts[0]}"]
        return [f"{name} = {' + '.join(parts)}  # a fork: the branches' deltas add"]

    def _gather(self, k, parts, mode, done):
        """d{k} (and rd{k}) from the contributions to g{k} (and R{g{k}})."""
        node = self.nodes[k - 1]
        if mode == "gn":
            lines = self._sum(f"rg{k}", [g for g, _ in parts])
            if _plain(node):
                return lines + [f"rd{k} = rg{k}"]
            return lines + self._fp(k, done) + [f"rd{k} = rg{k} * fp{k}"]
        lines = self._sum(f"g{k}", [g for g, _ in parts])
        if mode == "hvp":
            lines += self._sum(f"rg{k}", [rg for _, rg in parts])
        if _plain(node):
            return lines + [f"d{k} = g{k}"] + ([f"rd{k} = rg{k}"] if mode == "hvp" else [])
        lines += self._fp(k, done) + [f"d{k} = g{k} * fp{k}"]
        if mode == "hvp":
            lines.append(f"rd{k} = rg{k} * fp{k}")
            fpp = node.activation.second_derivative_in_out()
            if fpp != 0:
                lines.append(f"rd{k} += g{k} * ({self._elem(fpp, k)}) * {self._out(k)[1]}  # g f''(z) R{{z}}")
        return lines

    def curvature_output(self, done):
        """rd{L} for Gauss-Newton: H_loss R{y} = sc * l''(y, t) * R{y}, sent back through the output activation."""
        L = self.L
        c = self.curvature
        lines = [f"rg{L} = sc * r{L}" if c == 1 else f"rg{L} = sc * ({self._elem(c, L)}) * r{L}"]
        return lines + self.seeded_output(done, f"rg{L}", f"rd{L}")

    def kernels(self):
        """The kernels of the first-order code and of the R-passes, with the kernels they call."""
        names = set()
        for node in self.nodes:
            names.update(node.op.kernels)
            names.update(node.op.second_kernels)
        return sorted(closure(names))


def graph_second(der, pr):
    """({function: body lines after the argument checks}, [kernel names]) of a graph network's second-order functions."""
    code = GraphSecondCode(der, pr)
    model, L = der.model, code.L
    fwd = code.forward()
    done = set()
    back_input, _ = code.backward("input", done)
    bodies = {"input_gradients": fwd + code.scale() + code.output(False) + back_input + ["result = g0"]}
    done = set()
    if model.n_outputs <= model.n_inputs:  # reverse mode: one backward per output, the batch copied per output
        back, _ = code.backward("input", done)
        bodies["jacobian"] = (["nb = a0.shape[0]", "a0 = np.concatenate((a0,) * N_OUTPUTS)  # one copy per output"] + fwd
                              + [f"g{L} = np.repeat(np.eye(N_OUTPUTS, dtype=DTYPE), nb, axis=0).reshape(a{L}.shape)"]
                              + code.seeded_output(done, f"g{L}", f"d{L}") + back
                              + ["result = np.ascontiguousarray(g0.reshape((N_OUTPUTS, nb) + INPUT_SHAPE).swapaxes(0, 1))"])
    else:  # forward mode: one R-forward per input
        bodies["jacobian"] = (["nb = a0.shape[0]", "a0 = np.concatenate((a0,) * N_INPUTS)  # one copy per input"] + fwd
                              + ["r0 = np.repeat(np.eye(N_INPUTS, dtype=DTYPE), nb, axis=0).reshape(a0.shape)"]
                              + code.r_forward(done, seeded=True)
                              + [f"result = r{L}.reshape(N_INPUTS, nb, N_OUTPUTS).transpose(1, 2, 0)",
                                 "result = np.ascontiguousarray(result).reshape((nb, N_OUTPUTS) + INPUT_SHAPE)"])
    directions = [f"V{n}" for k, node in enumerate(code.nodes, 1) for p, n in zip(node.params, _param_names(k, node))
                  if p.trainable]
    if not directions:
        bodies["hvp"] = bodies["gauss_newton_vp"] = ["result = {}"]
    else:
        unpack_v = [f"{', '.join(directions)}{',' if len(directions) == 1 else ''} = _direction(v)"]
        order = {p.name: i for i, p in enumerate(model.params)}
        done = set()
        rfwd = code.r_forward(done)
        back, rgrads = code.backward("hvp", done)
        rgrads.sort(key=lambda g: order[g[0]])
        bodies["hvp"] = fwd + unpack_v + rfwd + code.scale() + code.output(True) + back + _result(rgrads)
        done = set()
        rfwd = code.r_forward(done)
        out = code.curvature_output(done)
        gn, ggrads = code.backward("gn", done)
        ggrads.sort(key=lambda g: order[g[0]])
        bodies["gauss_newton_vp"] = fwd + unpack_v + rfwd + code.scale() + out + gn + _result(ggrads)
    return {name: _inline(_unpacked(body)) for name, body in bodies.items()}, code.kernels()


def _unpacked(lines):
    """``live`` lines whose tuple assignments name ``_`` for every value nobody reads (a line none of whose values is
    read is dropped, and then what only it read)."""
    while True:
        lines = live(lines)
        out = []
        for i, line in enumerate(lines):
            m = _TARGETS.match(line)
            if m is None or "," not in m.group(1):
                out.append(line)
                continue
            later = "\n".join(lines[i + 1:])
            names = [n.strip() for n in m.group(1).split(",")]
            names = [n if n != "_" and re.search(rf"\b{n}\b", later) else "_" for n in names]
            if any(n != "_" for n in names):
                out.append(", ".join(names) + line[m.end(1):])
        if out == lines:
            return lines
        lines = out


_ALIAS = re.compile(r"(\w+) = (\w+)$")
_CHANGED = re.compile(r"(\w+)(\[[^=]*\])? *[-+*/]= |(\w+)\[[^=]*\] = ")
_TARGETS = re.compile(r"([\w, ]+?) = ")


def _inline(lines):
    """The lines with each plain alias ``a = b`` removed and ``b`` read in place of ``a`` (names assigned once and
    never changed in place: a fork of one branch, a layer without activation, a delta handed on unchanged)."""
    changed, count = set(), {}
    for line in lines:
        m = _CHANGED.match(line)
        if m:
            changed.add(m.group(1) or m.group(3))
        m = _TARGETS.match(line)
        if m:
            for name in m.group(1).split(","):
                count[name.strip()] = count.get(name.strip(), 0) + 1
    subst, out = {}, []
    for line in lines:
        code, sep, comment = line.partition("  # ")
        code = re.sub(r"\b\w+\b", lambda w: subst.get(w.group(0), w.group(0)), code)
        m = _ALIAS.match(code)
        if (m and m.group(1) != "result" and count.get(m.group(1)) == 1 and count.get(m.group(2), 0) <= 1
                and not {m.group(1), m.group(2)} & changed):
            subst[m.group(1)] = m.group(2)
            continue
        out.append(code + sep + comment)
    return out


def _result(grads):
    return ["result = {" + ", ".join(f"{name!r}: {var}" for name, var in grads) + "}"]
