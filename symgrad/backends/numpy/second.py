"""NumPy source for a network's second-order functions, from the layer program and its R-operator.

Every pass is lines over named arrays, layer by layer, as the first-order code is: the forward keeps
``z{k}`` and ``a{k}``; the R-forward computes ``rz{k} = R{z}``, ``r{k} = R{a}``; the backward computes
``d{k}`` (dE/dz) and, with ``second=True``, ``rd{k} = R{d}``; the parameter gradients of those are
``gW{k}``, ``gb{k}``, ``rgW{k}``, ``rgb{k}``. Elementwise expressions (f', f'', the output delta and
its derivative) are printed by SymPy from :class:`~symgrad.core.second.LayerSecond`; a
parameter-free layer's ``jvp`` and ``rvjp`` are printed column by column. Direction arrays may
carry leading axes (``r[..., j]``), so the Jacobian is the R-forward of the identity directions.
"""

import re

import sympy as sp

from symgrad.backends.numpy.network import _assign_columns, _columns, _layer_forward
from symgrad.ops.activations import net as NET
from symgrad.ops.base import symbols


def _rcolumns(prefix, name, n):
    return {sym: f"{name}[..., {j}]" for j, sym in enumerate(symbols(prefix, n))}


class SecondCode:
    """Prints the passes of one network's second-order functions (a LayerSecond and a ModulePrinter)."""

    def __init__(self, second, pr):
        self.second, self.pr = second, pr
        self.der = second.first
        self.layers = self.der.program.layers
        self.L = len(self.layers)
        trained = [s.index for s in self.layers if s.dense and (s.weight.trainable or (s.bias is not None and s.bias.trainable))]
        self.lowest = min(trained, default=None)

    # -- names

    def _in(self, s, seeded=False):
        """(name of the op's input, name of its R) for layer s: the net input, or the previous output."""
        k = s.index + 1
        return (f"z{k}", f"rz{k}") if s.dense else (f"a{k - 1}", f"r{k - 1}" if self._has_r(s.index - 1, seeded) else None)

    def _has_r(self, i, seeded=False):
        """Whether R{a} of layer index i is computed (i = -1 is the input)."""
        if seeded:
            return True
        return self.lowest is not None and i >= self.lowest

    def _elem(self, expr, k):
        return self.pr(expr, {"out": f"a{k}", "net": f"z{k}", "y": f"a{k}", "t": "t"})

    # -- passes

    def forward(self):
        """z{k} and a{k} of every layer (nothing overwritten: the second-order passes read both)."""
        dense = [s for s in self.layers if s.dense]
        unpack = ", ".join(f"W{s.index + 1}" + (f", b{s.index + 1}" if s.bias is not None else "") for s in dense)
        lines = [f"{unpack}{',' if len(self.der.program.model.params) == 1 else ''} = _params(params)"]
        for s in self.layers:
            k = s.index + 1
            if s.dense:
                lines.append(f"z{k} = a{k - 1}.dot(W{k}.T)")
                if s.bias is not None:
                    lines.append(f"z{k} += b{k}")
            if not s.elementwise:
                z = f"z{k}" if s.dense else f"a{k - 1}"
                if hasattr(s.op, "numpy_forward"):
                    lines += [f"x{k} = {z}.copy()"] + s.op.numpy_forward(f"x{k}", f"a{k}", k)
                else:
                    lines += _layer_forward(s.op, z, f"a{k}", s.units if s.dense else s.fan_in, s.units, k, self.pr)
            else:
                lines.append(f"a{k} = {self._elem(s.op.at(NET), k)}")
        return lines

    def r_forward(self, seeded=False):
        """R{z{k}} and R{a{k}} along the direction (VW{k}, Vb{k}); ``seeded``: from r0 with no parameter direction."""
        lines = []
        for s in self.layers:
            k, i = s.index + 1, s.index
            if not self._has_r(i, seeded):
                continue
            prev = self._has_r(i - 1, seeded)
            if s.dense:
                terms = [f"r{k - 1}.dot(W{k}.T)"] if prev else []
                if not seeded and s.weight.trainable:
                    terms.append(f"a{k - 1}.dot(VW{k}.T)")
                if not seeded and s.bias is not None and s.bias.trainable:
                    terms.append(f"Vb{k}")
                if not terms or terms == [f"Vb{k}"]:
                    terms = [f"np.zeros_like(z{k})"] + terms
                lines.append(f"rz{k} = {' + '.join(terms)}  # R{{net}} of {s.layer.name!r}")
            x, rx = self._in(s, seeded)
            if s.elementwise:
                fp = self.der.derivs[i]
                lines += [f"fp{k} = {self._elem(fp, k)}"] if fp != 1 else []
                lines.append(f"r{k} = rz{k}" if fp == 1 else f"r{k} = fp{k} * rz{k}")
            else:
                n_in = s.units if s.dense else s.fan_in
                if hasattr(s.op, "numpy_jvp"):
                    lines += s.op.numpy_jvp(f"a{k}", rx, f"r{k}")
                    continue
                xs, us, rs = symbols("x", n_in), symbols("u", s.units), symbols("r", n_in)
                names = {**_columns("x", x, n_in), **_columns("u", f"a{k}", s.units), **_rcolumns("r", rx, n_in)}
                jvp = s.op.jvp(xs, us, rs)
                block = _assign_columns(jvp, names, f"r{k}", rx, f"_j{k}_", self.pr, f"# {s.op.kind} layer: Jacobian-vector product")
                block[-len(jvp) - 1] = f"r{k} = np.empty({rx}.shape[:-1] + ({s.units},), dtype=DTYPE)"
                lines += [ln.replace(f"r{k}[:, ", f"r{k}[..., ") for ln in block]
        return lines

    def scale(self):
        c = self.der.scale
        red = "1.0 / a0.shape[0]" if self.der.program.model.loss.reduction == "mean" else "1.0"
        return [f"sc = {red}" if c == 1 else f"sc = {red} * {self.pr(c)}"]

    def output(self, second):
        """d{L} (dE/d of the output op's input) and, with ``second``, rd{L}."""
        s, L = self.layers[-1], self.L
        x, rx = self._in(s)
        names = {"y": f"a{L}", "t": "t", "net": f"z{L}"}
        lines = []
        if self.der.output == "elementwise":
            lines.append(f"d{L} = sc * ({self.pr(self.der.delta_out, names)})")
            if second:
                lines.append(f"rd{L} = sc * ({self.pr(self.second.rdelta, names)}) * rz{L}")
        elif self.der.output == "fused":
            lines += s.op.numpy_delta(self.pr(self.der.delta_out, names), f"a{L}", f"d{L}") + [f"d{L} *= sc"]
            if second:
                rh = self.second.rdelta
                lines.append(f"rd{L} = -r{L} * h.sum(axis=1, keepdims=True)")
                if rh != 0:
                    lines += [f"rh = ({self.pr(rh, names)}) * r{L}", f"rd{L} += rh - a{L} * rh.sum(axis=1, keepdims=True)"]
                lines.append(f"rd{L} *= sc")
        else:
            lines.append(f"g{L} = sc * ({self.pr(self.der.delta_out, names)})")
            lines += self._vjp(s, f"g{L}")
            if second:
                lines.append(f"rg{L} = sc * ({self.pr(self.second.rdelta, names)}) * r{L}")
                lines += self._rvjp(s, f"g{L}", f"rg{L}")
        return lines

    def curvature_output(self):
        """rd{L} for Gauss-Newton: H_loss R{y} = sc * l''(y, t) * R{y}, sent back through the output op's Jacobian."""
        s, L = self.layers[-1], self.L
        lines = [f"rg{L} = sc * ({self._elem(self.second.curvature, L)}) * r{L}"]
        if s.elementwise:
            fp = self.der.derivs[s.index]
            return lines + [f"rd{L} = rg{L}" + ("" if fp == 1 else f" * ({self._elem(fp, L)})")]
        return lines + self._vjp(s, f"rg{L}", f"rd{L}")

    def _vjp(self, s, g, target=None):
        k = s.index + 1
        if hasattr(s.op, "numpy_vjp"):
            return s.op.numpy_vjp(f"a{k}", g, target or f"d{k}")
        x, _ = self._in(s)
        n_in = s.units if s.dense else s.fan_in
        xs, us, ds = symbols("x", n_in), symbols("u", s.units), symbols("g", s.units)
        names = {**_columns("x", x, n_in), **_columns("u", f"a{k}", s.units), **_columns("g", g, s.units)}
        return _assign_columns(s.op.vjp(xs, us, ds), names, target or f"d{k}", g, f"_b{k}_", self.pr,
                               f"# {s.op.kind} layer backward: vector-Jacobian product")

    def _rvjp(self, s, g, rg):
        k = s.index + 1
        x, rx = self._in(s)
        if hasattr(s.op, "numpy_rvjp"):
            return s.op.numpy_rvjp(f"a{k}", g, rx, rg, f"rd{k}")
        n_in = s.units if s.dense else s.fan_in
        xs, us, ds = symbols("x", n_in), symbols("u", s.units), symbols("g", s.units)
        rs, rds = (symbols("r", n_in) if rx else [sp.S.Zero] * n_in), symbols("q", s.units)
        names = {**_columns("x", x, n_in), **_columns("u", f"a{k}", s.units), **_columns("g", g, s.units),
                 **_columns("q", rg, s.units), **(_columns("r", rx, n_in) if rx else {})}
        return _assign_columns(s.op.rvjp(xs, us, ds, rs, rds), names, f"rd{k}", g, f"_s{k}_", self.pr,
                               f"# {s.op.kind} layer backward: R of the vector-Jacobian product")

    def backward(self, second=False, to_input=False, gauss_newton=False):
        """(lines, [(param, gradient name)]) from d{L} down; rd{k} beside d{k} when ``second``.

        ``gauss_newton``: only the rd{k} chain, linear (no f'' terms, no delta V terms).
        """
        lines, grads = [], []
        stop = -1 if to_input else self.lowest
        r, d = ("rd", "rd") if gauss_newton else ("rd", "d")
        for s in reversed(self.layers):
            k, i = s.index + 1, s.index
            if s.dense and not to_input:
                has_r = self._has_r(i - 1) and i > 0 and not gauss_newton
                if s.weight.trainable:
                    if second:
                        extra = f" + d{k}.T.dot(r{k - 1})" if has_r else ""
                        lines.append(f"rgW{k} = {r}{k}.T.dot(a{k - 1}){extra}")
                    else:
                        lines.append(f"gW{k} = {d}{k}.T.dot(a{k - 1})")
                    grads.append((s.weight.name, f"rgW{k}" if second else f"gW{k}"))
                if s.bias is not None and s.bias.trainable:
                    name = ("rgb" if second else "gb") + str(k)
                    src = r if second else d
                    lines.append(f"{name} = {src}{k}.sum(axis=0)" if s.bias.shape else f"{name} = np.asarray({src}{k}.sum())")
                    grads.append((s.bias.name, name))
            if i <= stop:
                break
            j = k - 1
            prev = self.layers[i - 1] if i > 0 else None
            if s.dense:
                lines.append(f"g{j} = {d}{k}.dot(W{k})" if not gauss_newton else f"rg{j} = rd{k}.dot(W{k})")
                if second and not gauss_newton:
                    extra = f" + d{k}.dot(VW{k})" if s.weight.trainable else ""
                    lines.append(f"rg{j} = rd{k}.dot(W{k}){extra}")
            else:
                lines.append(f"g{j} = {d}{k}" if not gauss_newton else f"rg{j} = rd{k}")
                if second and not gauss_newton:
                    lines.append(f"rg{j} = rd{k}")
            if prev is None:
                break
            lines += self._op_back(prev, second, gauss_newton)
        return lines, grads

    def _op_back(self, s, second, gauss_newton):
        k, i = s.index + 1, s.index
        if s.elementwise:
            fp, fpp = self.der.derivs[i], self.second.second[i]
            fpn = "" if fp == 1 else f" * fp{k}"
            fp_line = [f"fp{k} = {self._elem(fp, k)}"] if fp != 1 and not (second or gauss_newton) else []
            if gauss_newton:
                return fp_line + [f"rd{k} = rg{k}{fpn}"]
            lines = fp_line + [f"d{k} = g{k}{fpn}"]
            if second:
                lines.append(f"rd{k} = rg{k}{fpn}")
                if fpp != 0:
                    lines.append(f"rd{k} += g{k} * ({self._elem(fpp, k)}) * rz{k}")
            return lines
        if gauss_newton:
            return self._vjp(s, f"rg{k}", f"rd{k}")
        lines = self._vjp(s, f"g{k}")
        return lines + (self._rvjp(s, f"g{k}", f"rg{k}") if second else [])


def network_second(second, pr):
    """{function: body lines after the argument checks} of a network's second-order functions."""
    code = SecondCode(second, pr)
    model = second.first.program.model
    directions = []
    for p in model.params:
        if p.trainable:
            owner = next(s for s in code.layers if s.dense and p in (s.weight, s.bias))
            directions.append(f"V{'W' if p is owner.weight else 'b'}{owner.index + 1}")
    unpack_v = [f"{', '.join(directions)}{',' if len(directions) == 1 else ''} = _direction(v)"] if directions else []
    fwd, scale = code.forward(), code.scale()
    back_input, _ = code.backward(to_input=True)
    L = code.L
    bodies = {
        "input_gradients": fwd + scale + code.output(False) + back_input + ["result = g0"],
        "jacobian": fwd + ["r0 = np.broadcast_to(np.eye(N_INPUTS, dtype=DTYPE)[:, None, :], (N_INPUTS,) + a0.shape)"]
        + code.r_forward(seeded=True) + [f"result = np.ascontiguousarray(r{L}.transpose(1, 2, 0))"],
    }
    if code.lowest is None:
        bodies["hvp"] = bodies["gauss_newton_vp"] = ["result = {}"]
        return {name: live(body) for name, body in bodies.items()}
    order = {p.name: i for i, p in enumerate(model.params)}
    back, rgrads = code.backward(second=True)
    gn, ggrads = code.backward(second=True, gauss_newton=True)
    rgrads.sort(key=lambda g: order[g[0]])
    ggrads.sort(key=lambda g: order[g[0]])
    rfwd = code.r_forward()
    bodies["hvp"] = fwd + unpack_v + rfwd + scale + code.output(True) + back + _result(rgrads)
    bodies["gauss_newton_vp"] = fwd + unpack_v + rfwd + scale + code.curvature_output() + gn + _result(ggrads)
    return {name: live(body) for name, body in bodies.items()}


_ASSIGN = re.compile(r"(\w+)(\[[^=]*\])? *([-+*/]?=) ")


def live(lines, roots=("result",)):
    """The lines the roots depend on, in order: assignments nobody reads later are dropped (with their comment)."""
    needed, kept = set(roots), []
    for k in range(len(lines) - 1, -1, -1):
        line = lines[k]
        if line.startswith("#"):
            if k + 1 < len(lines) and kept and kept[-1] is lines[k + 1]:
                kept.append(line)
            continue
        m = _ASSIGN.match(line)
        if m is None:
            kept.append(line)
            needed |= set(re.findall(r"[A-Za-z_]\w*", line))
            continue
        target, sub, op = m.groups()
        if target not in needed:
            continue
        kept.append(line)
        if op == "=" and not sub:
            needed.discard(target)
        needed |= set(re.findall(r"[A-Za-z_]\w*", line[m.end():] + (sub or "")))
    return kept[::-1]


def _result(grads):
    return ["result = {" + ", ".join(f"{name!r}: {var}" for name, var in grads) + "}"]
