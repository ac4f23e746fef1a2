"""Each shaped layer's backward rule, derived by SymPy on a small instance and checked against its textbook form.

For a layer with outputs z = op(x, W) and δ = ∂E/∂z (E depends on x and W only through z), the chain
rule gives ``∂E/∂v = Σ_p δ_p ∂z_p/∂v`` for every input and weight v. Here SymPy differentiates every
output of the op's own definition (``sympy_forward``) on an instance written out element by element,
and the sums are compared, entry by entry, with the rule as the textbook states it, computed here
independently of the op:

* convolution: the weight gradient is the cross-correlation of the (padded) input with δ, δ's entries
  ``stride`` apart and the kernel's offsets ``dilation`` apart; the input delta is the full convolution
  of δ, spread ``stride`` apart, with the flipped kernel, its taps ``dilation`` apart, cropped to the
  input; the bias gradient sums δ;
* max pooling: δ of a window goes to its first maximum (PyTorch's choice on ties);
* average pooling: δ of a window is spread evenly over its entries (padding counted);
* flatten: δ reshaped back; concat: each input its slice of δ; add: δ to every input;
* a fork (a value read by two layers, as in a residual block): the sum of the deltas both hand back;
* dense over the last axis: ∂E/∂W = δᵀa summed over leading axes, ∂E/∂a = δW, ∂E/∂b = Σδ.

Symbolic rules are checked exactly (``sympy.expand`` of the difference is 0). Max pooling's SymPy
derivative is a product of Heaviside steps, which depends only on the order of a window's entries:
it is compared with the first-max indicator on every strict order of a window (ties are where the
two conventions differ: SymPy's Heaviside(0) is 1/2, PyTorch gives the whole delta to the first maximum).
"""

import functools
import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from symgrad.core.graph_scalar import first_max
from symgrad.ops.conv import Conv1d, Conv2d
from symgrad.ops.dense import Dense, DenseOp
from symgrad.ops.pool import AvgPool, AvgPool1d, AvgPool2d, MaxPool, MaxPool1d, MaxPool2d
from symgrad.ops.shape import Add, Concat, Flatten
from symgrad.symbols import derived

ORDERINGS = 120  # windows of more than 5 entries are checked on this many seeded random orders


@dataclass
class RuleCheck:
    """A rule derived on an instance: the op's outputs, then per group [(entry, SymPy's chain-rule sum, the rule's)]."""

    kind: str
    rule: str  # the op's rule in words
    instance: str  # the instance, in words
    forward: list  # [(output symbol, its expression)]
    groups: list  # [(title, how the rule computes it, [(symbol v, Σ_p δ_p ∂z_p/∂v, the rule's value)])]
    holds: bool
    notes: list = field(default_factory=list)
    shows: dict = field(default_factory=dict)  # named arrays the rule computes with (the padded delta, the flipped kernel)


def _syms(prefix, shape, one_based=True):
    """An object array of real symbols prefix_ij (indices 1-based, joined without separators when all are < 10)."""
    arr = np.empty(shape, dtype=object)
    for idx in np.ndindex(*shape):
        ix = [i + one_based for i in idx]
        sub = "".join(map(str, ix)) if all(i < 10 for i in ix) else "_".join(map(str, ix))
        arr[idx] = derived(f"{prefix}_{sub}" if sub else prefix, "rule", prefix, sub)  # typeset as prefix_{sub}
    return arr


def _same(a, b):
    return sp.expand(a - b) == 0


def _chain(z, delta, v):
    """Σ_p δ_p ∂z_p/∂v: SymPy's derivative of every output, weighted by its delta."""
    return sp.Add(*[d * sp.diff(e, v) for d, e in zip(delta.flat, z.flat)])


def _group(title, how, z, delta, vs, stated):
    rows = [(v, _chain(z, delta, v), s) for v, s in zip(vs.flat, stated.flat)]
    return (title, how, rows)


def _holds(groups):
    return all(_same(d, s) for _, _, rows in groups for _, d, s in rows)


def _forward(prefix, z):
    syms = _syms(prefix, z.shape)
    return [(s, e) for s, e in zip(syms.flat, z.flat)], syms


def xcorr(a, kern, out_shape, stride, dilation):
    """out[q] = Σ_p kern[p] a[stride·q + dilation·p]: a cross-correlation of arrays of any rank."""
    out = np.empty(out_shape, dtype=object)
    for q in np.ndindex(*out_shape):
        out[q] = sp.Add(*[kern[p] * a[tuple(s * qi + d * pi for s, qi, d, pi in zip(stride, q, dilation, p))]
                          for p in np.ndindex(*kern.shape)])
    return out


def _padded(x, pad):
    xp = np.full(tuple(n + lo + hi for n, (lo, hi) in zip(x.shape, pad)), sp.S.Zero, dtype=object)
    xp[tuple(slice(lo, lo + n) for (lo, _), n in zip(pad, x.shape))] = x
    return xp


def conv_weight_rule(x, delta, k, s, dl, pad):
    """∂E/∂W[o, c] = cross-correlation of the padded input channel c with δ[o] (δ's taps s apart, outputs dl apart)."""
    oc, ic = delta.shape[0], x.shape[0]
    out = np.empty((oc, ic) + k, dtype=object)
    for o, c in itertools.product(range(oc), range(ic)):
        out[o, c] = xcorr(_padded(x[c], pad), delta[o], k, dl, s)
    return out


def conv_input_rule(delta, w, size, s, dl, pad):
    """∂E/∂x[c] = Σ_o full convolution of δ[o] spread s apart with the flipped kernel W[o, c] (taps dl apart), cropped."""
    oc, ic, k = w.shape[0], w.shape[1], w.shape[2:]
    reach = tuple(dli * (ki - 1) for ki, dli in zip(k, dl))  # how far a kernel's taps reach
    out = np.empty((ic,) + size, dtype=object)
    for c in range(ic):
        total = np.full(tuple(n + lo + hi for n, (lo, hi) in zip(size, pad)), sp.S.Zero, dtype=object)
        for o in range(oc):
            spread = spread_delta(delta[o], s)
            full_shape = tuple(n + r for n, r in zip(spread.shape, reach))
            full = xcorr(_padded(spread, [(r, r) for r in reach]), flip(w[o, c]), full_shape, (1,) * len(k), dl)
            total[tuple(slice(0, n) for n in full_shape)] += full  # rows no window reaches stay 0
        out[c] = total[tuple(slice(lo, lo + n) for (lo, _), n in zip(pad, size))]
    return out


def spread_delta(d, s):
    """δ with s - 1 zeros between neighbouring entries along each axis (the stride undone)."""
    out = np.full(tuple(si * (n - 1) + 1 for n, si in zip(d.shape, s)), sp.S.Zero, dtype=object)
    out[tuple(slice(None, None, si) for si in s)] = d
    return out


def flip(w):
    """The kernel reversed along every axis."""
    return w[tuple(slice(None, None, -1) for _ in w.shape)]


def conv_check(dims=2, size=3, kernel=2, stride=1, dilation=1, padding=0, channels=(1, 1), bias=True):
    """The convolution rules on an instance (sizes per axis; channels = (in, out))."""
    cls = Conv2d if dims == 2 else Conv1d
    ic, oc = channels
    op = cls("conv", out_channels=oc, kernel_size=kernel, stride=stride, dilation=dilation, padding=padding,
             bias="unit" if bias else "none")
    shape = (ic,) + (size,) * dims if isinstance(size, int) else (ic,) + tuple(size)
    op.build("rule", [shape], "zeros", set())
    flat = ic == 1 and oc == 1
    x = _syms("x", shape[1:]).reshape(shape) if flat else _syms("x", shape)
    w = _syms("w", op.k).reshape((oc, ic) + op.k) if flat else _syms("w", (oc, ic) + op.k)
    b = _syms("b", (oc,)) if bias else None
    z = op.sympy_forward([x], [w] + ([b] if bias else []))
    fwd, zs = _forward("z", z[0] if flat else z)
    delta = _syms("delta", z.shape[1:]).reshape(z.shape) if flat else _syms("delta", z.shape)
    groups = [_group("weights", "the cross-correlation of the input with δ", z, delta, w,
                     conv_weight_rule(x, delta, op.k, op.s, op.dl, op.pad))]
    if bias:
        groups.append(_group("bias", "the sum of δ over positions", z, delta, b,
                             np.array([sp.Add(*delta[o].flat) for o in range(oc)], dtype=object)))
    groups.append(_group("inputs", "the full convolution of δ with the flipped kernel", z, delta, x,
                         conv_input_rule(delta, w, shape[1:], op.s, op.dl, op.pad)))
    margin = tuple((dli * (ki - 1), dli * (ki - 1)) for ki, dli in zip(op.k, op.dl))
    shows = {"spread": _padded(spread_delta(delta[0], op.s), margin), "flipped": flip(w[0, 0])} if flat else {}
    pads = [lo for lo, _ in op.pad] if all(lo == hi for lo, hi in op.pad) else [list(p) for p in op.pad]
    inst = (f"a {'x'.join(map(str, shape[1:]))} input with {ic} channel{'s' * (ic > 1)}, {oc} kernel{'s' * (oc > 1)} "
            f"of {'x'.join(map(str, op.k))}, stride {_one(op.s)}, padding {_one(pads)}, dilation {_one(op.dl)}")
    return RuleCheck(op.kind, op.rule, inst, fwd, groups, _holds(groups), shows=shows)


def _one(v):
    v = list(v)
    return v[0] if len(set(map(str, v))) == 1 else v


def pool_check(kind="max", dims=2, size=3, kernel=2, stride=1, padding=0):
    """Max or average pooling's rule on a one-channel instance."""
    cls = {("max", 1): MaxPool1d, ("max", 2): MaxPool2d, ("avg", 1): AvgPool1d, ("avg", 2): AvgPool2d}[kind, dims]
    op = cls("pool", kernel_size=kernel, stride=stride, padding=padding)
    shape = (1,) + (size,) * dims
    op.build("rule", [shape], "zeros", set())
    x = _syms("x", shape[1:]).reshape(shape)
    z = op.sympy_forward([x], [])
    fwd, _ = _forward("z", z[0])
    delta = _syms("delta", z.shape[1:]).reshape(z.shape)
    wins = op.windows(x)
    routed = np.full(shape, sp.S.Zero, dtype=object)
    where = {e: i for i, e in zip(np.ndindex(*shape), x.flat)}
    notes = []
    for idx, entries in wins.items():
        real = [e for e in entries if isinstance(e, sp.Symbol)]
        for i, e in enumerate(real):
            share = first_max(real, i) if kind == "max" else sp.Rational(1, len(entries))
            routed[where[e]] += delta[idx] * share
    how = ("each window's δ to its first maximum" if kind == "max" else
           f"each window's δ spread evenly over its {math.prod(op.k)} entries")
    group = _group("inputs", how, z, delta, x, routed)
    if kind == "avg":
        holds = _holds([group])
    else:
        sizes = sorted({sum(isinstance(e, sp.Symbol) for e in w) for w in wins.values()})
        holds, counted = True, []
        for n in sizes:  # a window's derivative depends only on the order of its entries
            orders, every = window_orders(n)
            holds = holds and all(_max_agrees(list(_syms("e", (n,))), order) for order in orders)
            counted.append(f"{'all' if every else 'a seeded sample of'} {len(orders)} orders of {n} entries")
        notes.append("SymPy's derivative of a window's max is a product of Heaviside steps, which depends only on the "
                     "order of the window's entries; on every order checked it equals the first-max indicator ("
                     + ", ".join(counted) + "), so the two sums above agree wherever no two entries of a window tie. "
                     "At a tie SymPy's "
                     "Heaviside(0) = 1/2 splits the delta; PyTorch, the generated code and this derivation give it "
                     "all to the first maximum in the window (row by row).")
    inst = (f"a {'x'.join(map(str, shape[1:]))} input, a {'x'.join(map(str, op.k))} window, "
            f"stride {_one(op.s)}, padding {_one(p[0] for p in op.pad)}")
    return RuleCheck(op.kind, op.rule, inst, fwd, [group], holds, notes)


def window_orders(n):
    """(orders of n entries as rank tuples, whether they are all of them): all up to ORDERINGS, else a seeded sample."""
    if math.factorial(n) <= ORDERINGS:
        return list(itertools.permutations(range(n))), True
    rng = np.random.default_rng(0)
    return [tuple(int(v) for v in rng.permutation(n)) for _ in range(ORDERINGS)], False


def _max_agrees(entries, ranks):
    """SymPy's ∂max/∂e_i equals the first-max indicator for every i, with the entries ordered by ranks."""
    vals = {e: sp.Integer(r) for e, r in zip(entries, ranks)}
    return all(d.xreplace(vals) == f.xreplace(vals) for d, f in _max_locals(tuple(entries)))


@functools.cache
def _max_locals(entries):
    """[(SymPy's ∂max/∂e_i, the first-max indicator)] for each entry of a window."""
    m = sp.Max(*entries)
    return [(sp.diff(m, e), first_max(list(entries), i)) for i, e in enumerate(entries)]


def flatten_check(shape=(2, 2, 2)):
    x = _syms("x", shape)
    z = Flatten("flat").sympy_forward([x], [])
    fwd, _ = _forward("z", z)
    delta = _syms("delta", z.shape)
    group = _group("inputs", "δ reshaped back to the input's shape", z, delta, x, delta.reshape(shape))
    return RuleCheck("flatten", Flatten.rule, f"a {'x'.join(map(str, shape))} input", fwd, [group], _holds([group]))


def concat_check(sizes=(2, 1)):
    op = Concat("cat")
    op.build("rule", [(n,) for n in sizes], "zeros", set())
    xs = [_syms(p, (n,)) for p, n in zip("abcdefgh", sizes)]
    z = op.sympy_forward(xs, [])
    fwd, _ = _forward("z", z)
    delta = _syms("delta", z.shape)
    groups = [_group(f"input {p}", f"entries {lo + 1} to {hi} of δ", z, delta, x, delta[lo:hi])
              for p, x, lo, hi in zip("abcdefgh", xs, op.bounds, op.bounds[1:])]
    return RuleCheck("concat", Concat.rule, f"inputs of {', '.join(map(str, sizes))} entries", fwd, groups, _holds(groups))


def add_check(n=2):
    a, b = _syms("a", (n,)), _syms("b", (n,))
    z = Add("add").sympy_forward([a, b], [])
    fwd, _ = _forward("z", z)
    delta = _syms("delta", z.shape)
    groups = [_group("input a", "δ unchanged", z, delta, a, delta), _group("input b", "δ unchanged", z, delta, b, delta)]
    return RuleCheck("add", Add.rule, f"two inputs of {n} entries", fwd, groups, _holds(groups))


def fork_check(n=2):
    """A residual block z = v + g(v) (g any elementwise function): ∂E/∂v sums the skip's and the branch's deltas."""
    v = _syms("v", (n,))
    g = sp.Function("g")
    branch = np.array([g(e) for e in v], dtype=object)
    z = Add("add").sympy_forward([v, branch], [])
    fwd, _ = _forward("z", z)
    delta = _syms("delta", z.shape)
    skip = delta  # what the add hands v directly
    through = np.array([d * sp.diff(g(e), e) for d, e in zip(delta, v)], dtype=object)  # what g hands back
    group = _group("the forked value", "the skip's delta plus the branch's delta", z, delta, v, skip + through)
    return RuleCheck("fork", "a value read by several layers gets the sum of the deltas they hand back (the residual rule)",
                     f"a residual block z = v + g(v) on {n} entries, g any elementwise function", fwd, [group],
                     _holds([group]))


def dense_check(rows=None, fan_in=2, units=2):
    """Dense over the last axis: a of shape (fan_in,) or (rows, fan_in)."""
    op = DenseOp(Dense("dense", units))
    shape = (fan_in,) if rows is None else (rows, fan_in)
    op.build("rule", [shape], "zeros", set())
    a = _syms("a", shape)
    w, b = _syms("w", (units, fan_in)), _syms("b", (units,))
    z = op.sympy_forward([a], [w, b])
    fwd, _ = _forward("z", z)
    delta = _syms("delta", z.shape)
    d2, a2 = delta.reshape(-1, units), a.reshape(-1, fan_in)
    groups = [_group("weights", "δᵀa, summed over the leading axes", z, delta, w, d2.T.dot(a2)),
              _group("bias", "δ summed over the leading axes", z, delta, b, d2.sum(axis=0)),
              _group("inputs", "δW", z, delta, a, delta.dot(w))]
    inst = f"an input of {fan_in} entries" if rows is None else f"an input of {rows} rows of {fan_in} entries"
    return RuleCheck("dense", DenseOp.rule, f"{inst}, {units} units", fwd, groups, _holds(groups))


def check_for(node):
    """The RuleCheck of a node's op on a small instance with the node's stride, padding and dilation (capped at 2,
    1 and 2: the rule is the same), or None for an op without one."""
    op = node.op
    if op.kind in ("conv1d", "conv2d"):
        same = any(lo != hi for lo, hi in op.pad)
        s, dl = (1 if same else min(max(op.s), 2)), min(max(op.dl), 2)
        pad = "same" if same else min(max(lo for lo, _ in op.pad), 1)
        size = max(3, dl + 1 + s - 2 * (0 if same else pad))  # two outputs per axis with a kernel of 2
        return conv_check(len(op.k), size, 2, s, dl, pad)
    if isinstance(op, (MaxPool, AvgPool)):
        pad = min(max(lo for lo, _ in op.pad), 1)
        return pool_check("max" if isinstance(op, MaxPool) else "avg", len(op.k), 3, 2, min(max(op.s), 2), pad)
    if op.kind == "flatten":
        return flatten_check()
    if op.kind == "concat":
        return concat_check()
    if op.kind == "add":
        return add_check()
    if op.kind == "dense":
        return dense_check(None if len(node.shape) == 1 else 2)
    return None
