"""C for a graph network: each layer's op prints its own kernel calls, the activations and loss are printed here.

Mirrors :mod:`symgrad.backends.numpy.graph`. Buffers, batch-major in the work array: ``A{k}`` is the
output of layer k (1-based; ``A0`` is x; a flatten's output is its input's buffer), ``Z{k}`` its op's
output where the activation's derivative or the loss needs the net input; backward, ``G{k}`` = dE/dA{k}
(the first branch writes it, a fork's later branches write ``G{k}_{consumer}_{pos}`` and are added),
``D{k}`` = dE/dZ{k} where G{k} is not this layer's own (an add or flatten hands dE/dZ, its activation's
derivative already applied, on unchanged, without a copy; a flatten, being a view, takes no activation);
an op's own buffers (a recurrent layer's gate values, ``A{k}_G``) after them. Scratch of a fixed size
(im2col columns, a transposed weight matrix) comes first.
"""

import re

import sympy as sp

from symgrad.backends.c.loops import for_all
from symgrad.core.derive import derive
from symgrad.ops.activations import net as NET


class Context:
    """What the ops' C needs besides their lines: the kernels they call, the scratch buffers they use and their own
    per-batch buffers."""

    def __init__(self):
        self.kernels = set()
        self.scratch_sizes = {}  # name -> values (the same for every batch size)
        self.batch_sizes = {}  # name -> values per sample (a layer's own, such as a recurrent layer's gate values)

    def call(self, name, args):
        """``name(args);``, the kernel recorded."""
        self.kernels.add(name)
        return f"{name}({args});"

    def scratch(self, name, size):
        """The scratch buffer ``name`` of at least ``size`` values."""
        self.scratch_sizes[name] = max(self.scratch_sizes.get(name, 0), size)
        return name

    def buffer(self, name, size):
        """The buffer ``name`` of ``size`` values per sample, kept from the forward pass to the backward pass."""
        self.batch_sizes.setdefault(name, size)
        return name


def _multiply_adds(node):
    """Multiply-adds per sample of a layer with weights: its op's count, or its outputs times its weights' fan-in."""
    count = getattr(node.op, "multiply_adds", None)
    return count(node) if count else node.size * node.params[0].fan_in


def _plain(node):
    act = node.activation
    return act is None or (not act.is_layer and act.at(NET) == NET)


class GraphLoops:
    """Function bodies of a graph network: kernel calls per layer in order, elementwise loops between them."""

    def __init__(self, model, layout, pr):
        self.model, self.pr = model, pr
        self.der = derive(model).graph
        self.off = {p["name"]: p["offset"] for p in layout}
        self.cx = Context()
        self.sizes = {}  # per-batch buffer -> values per sample, in order of first use
        nodes = self.der.nodes
        self.index = {"x": 0, **{n.name: k + 1 for k, n in enumerate(nodes)}}
        self.a, self.z = {0: "A0"}, {}
        fwd = []
        for k, node in enumerate(nodes, 1):
            fwd += self._forward(node, k)
        self.fwd, self.L = fwd, len(nodes)
        self.loss_lines = self._loss()
        self.back = self._backward()
        self._layout()

    # --- buffers

    def _buffer(self, name, size):
        self.sizes.setdefault(name, size)
        return name

    def _layout(self):
        const = sum(self.cx.scratch_sizes.values())
        self.starts, offset, per = [], 0, 0
        for name, n in sorted(self.cx.scratch_sizes.items()):
            self.starts.append((name, str(offset)))
            offset += n
        for name, n in {**self.sizes, **self.cx.batch_sizes}.items():
            self.starts.append((name, f"{const} + (size_t)batch * {per}" if per else str(const)))
            per += n
        self.total = f"{const} + (size_t)batch * {per}" if const else f"(size_t)batch * {per}"

    def _declared(self, lines):
        text = "\n".join(lines)
        decl = [f"real *restrict {name} = work + {start};" for name, start in self.starts
                if re.search(rf"\b{name}\b", text)]
        return decl + (["const real *restrict A0 = x;"] if re.search(r"\bA0\b", text) else []) + lines

    def _params(self, node):
        return [f"params + {self.off[p.name]}" for p in node.params]

    # --- forward and loss

    def _forward(self, node, k):
        """Lines computing A{k}: the op into Z{k} or A{k}, then the activation (in place where it can)."""
        ins = [self.a[self.index[s]] for s in node.inputs]
        if node.op.view:
            self.a[k] = ins[0]
            return [f"/* {node.name}: {node.op.describe()} (the same memory) */"]
        act, n = node.activation, node.size
        a = self.a[k] = self._buffer(f"A{k}", n)
        keep = not _plain(node) and (act.is_layer or self.der.keeps_net[k - 1])
        z = self.z[k] = self._buffer(f"Z{k}", n) if keep else a
        lines = node.op.c_forward(node, ins, self._params(node), z, self.cx)
        if _plain(node):
            return lines
        if act.is_layer:
            row = [f"real *restrict zr = {z} + (size_t)_r * {n};", f"real *restrict ar = {a} + (size_t)_r * {n};",
                   *act.c_forward_row(n, "zr[_j]", lambda arg: self.pr.helper("exp", arg), f"log{self.pr.suffix}")]
            return lines + ["for (int _r = 0; _r < batch; ++_r) {"] + ["    " + s for s in row] + ["}"]
        f = self.pr.renamed({"net": f"{z}[_q]"}).doprint(act.at(NET))
        return lines + for_all(n, [f"{a}[_q] = {f};  /* {act.name} */"])

    def _names(self):
        L = self.L
        return {"y": f"{self.a[L]}[_q]", "t": "t[_q]", "net": f"{self.z.get(L, self.a[L])}[_q]",
                "logy": f"{self.z.get(L, self.a[L])}[_q]"}

    def _loss(self):
        c = self.der.scale
        scale = "1" if self.model.loss.reduction == "sum" else "(real)1 / batch"
        if c != 1:
            scale = f"{scale} * ({self.pr.doprint(c)})"
        term = self.pr.renamed(self._names()).doprint(self.der.loss_term)
        return ["real _E = 0;"] + for_all(self.model.n_outputs, [f"_E += {term};"]) + [f"const real _s = {scale};"]

    def forward(self):
        return self._declared(self.fwd + for_all(self.model.n_outputs, [f"y[_q] = {self.a[self.L]}[_q];"]))

    def loss(self):
        return self._declared(self.fwd + self.loss_lines + ["return _s * _E;"])

    # --- backward

    def _zero_frozen(self):
        return [line for p in self.model.params if not p.trainable
                for line in (f"for (int _i = 0; _i < {p.size}; ++_i) {{", f"    grad[{self.off[p.name]} + _i] = 0;", "}")]

    def _delta_out(self):
        """G{L} = dE/dZ{L}: the output delta from the derivation, scaled by _s."""
        der, L, n = self.der, self.L, self.model.n_outputs
        g = self._buffer(f"G{L}", n)
        cp = self.pr.renamed(self._names())
        if der.output == "fused":
            row = [f"real *restrict dr = {g} + (size_t)_r * {n};",
                   *self.der.nodes[-1].activation.c_delta_row(n, cp.doprint(der.delta_out), self.a[L])]
            return ["for (int _r = 0; _r < batch; ++_r) {"] + ["    " + s for s in row] + ["}"], g
        if der.output != "elementwise":
            raise NotImplementedError(f"C code for a graph network's output {der.output!r}")
        return for_all(n, [f"{g}[_q] = _s * ({cp.doprint(der.delta_out)});"]), g

    def _add(self, j, src):
        """Lines adding the contribution in buffer ``src`` to dE/dA{j} (kept in self.g)."""
        cur = self.g.get(j)
        if cur is None:
            self.g[j] = (src, src == f"G{j}")
            return []
        own = self._buffer(f"G{j}", self.der.nodes[j - 1].size)
        first = f"{cur[0]}[_q] + " if not cur[1] else f"{own}[_q] + "
        self.g[j] = (own, True)
        return for_all(self.der.nodes[j - 1].size, [f"{own}[_q] = {first}{src}[_q];  /* a fork: the branches add */"])

    def _gather(self, k):
        """(lines, buffer of dE/dZ{k}) from dE/dA{k}: times f'(net), in place when the buffer is this layer's own."""
        node = self.der.nodes[k - 1]
        g, own = self.g.pop(k)
        fp = self.der.derivs[k - 1]
        if _plain(node) or fp is None or fp == 1:
            return [], g
        d = g if own else self._buffer(f"D{k}", node.size)
        fpc = self.pr.renamed({"out": f"{self.a[k]}[_q]", "net": f"{self.z[k]}[_q]"}).doprint(fp)
        return for_all(node.size, [f"{d}[_q] = {g}[_q] * ({fpc});  /* times f'(net) = {sp.sstr(fp)} */"]), d

    def _backward(self):
        der, nodes, L = self.der, self.der.nodes, self.L
        lines = self._zero_frozen()
        if not der.needs_delta[-1]:
            return lines
        self.g = {}
        more, d = self._delta_out()
        lines += more
        for k in range(L, 0, -1):
            node = nodes[k - 1]
            if not der.needs_delta[k - 1]:
                continue
            if k < L:
                more, d = self._gather(k)
                lines += more
            ins = [self.a[self.index[s]] for s in node.inputs]
            dins, after = [], []
            for pos, s in enumerate(node.inputs):
                j = self.index[s]
                if not (j > 0 and der.needs_delta[j - 1]):
                    dins.append(None)
                elif node.op.passes_delta:
                    dins.append(None)
                    after += self._add(j, d)
                else:
                    size = nodes[j - 1].size
                    target = f"G{j}" if j not in self.g else f"G{j}_{k}_{pos}"
                    dins.append(self._buffer(target, size))
                    after += self._add(j, target)
            dps = [f"grad + {self.off[p.name]}" if p.trainable else None for p in node.params]
            if any(v is not None for v in dins + dps):
                lines += node.op.c_backward(node, ins, self._params(node), self.z.get(k, self.a[k]), d, dins, dps,
                                            self.cx)
            lines += after
        return lines

    def backward(self):
        return self._declared(self.fwd + self.loss_lines + self.back + ["return _s * _E;"])

    # --- what the package needs

    def helpers(self):
        return self.pr.helpers | self.cx.kernels

    def workspace(self):
        return self.total

    def count(self):
        """Operations per sample, forward and backward: about 6 per multiply-add of a layer with weights."""
        return sum(6 * _multiply_adds(node) if node.params else 4 * node.size for node in self.der.nodes)
