"""The NumPy backend: print the forward and backward programs into an importable module.

Networks are printed from the layer program: one GEMM per layer forward and two backward
(``delta W`` and ``delta^T a``), elementwise work fused into SymPy-printed expressions and done in
place where the activation allows. Expression models are printed from the scalar program,
vectorised over the batch, with common subexpressions pulled out by ``CodeBlock.cse``.
"""

import numpy as np
import sympy as sp
from sympy.codegen.ast import Assignment, CodeBlock

from symgrad.backends.printers import math_code, numpy_code
from symgrad.core.derivation import LOGSOFTMAX, derive_layers, derive_scalar, straight_line
from symgrad.core.init import init_plan
from symgrad.ops.activations import net as NET
from symgrad.symbols import Namer
from symgrad.version import __version__

TEMPLATE = "numpy/module.py.j2"
DTYPES = {"float64": "np.float64", "float32": "np.float32"}

SCALAR_PATH_PARAMS = 64  # networks with at most this many scalar parameters get a per-sample path,
SCALAR_PATH_WORK = 480  # used while rows * assignments stays below this (measured: array code wins above)

HELPERS = {
    "_sigmoid1": '''def _sigmoid1(z):
    """sigma(z) for one float, without overflow."""
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)''',
    "_softplus1": '''def _softplus1(z):
    """log(1 + exp(z)) for one float, without overflow."""
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))''',
    "_sigmoid": '''def _sigmoid(z):
    """sigma(z) = 1 / (1 + exp(-z)) elementwise, without overflow (see _sigmoid_)."""
    return _sigmoid_(np.array(z, dtype=DTYPE, ndmin=1)).reshape(np.shape(z))''',
    "_sigmoid_": '''def _sigmoid_(z):
    """z <- sigma(z) = 1 / (1 + exp(-z)) in place, with no overflow warning at any z."""
    np.negative(z, out=z)
    if z.size <= 128:  # small arrays: sigma = exp(-log(1 + exp(-z))), the fewest calls
        np.logaddexp(0.0, z, out=z)
        np.negative(z, out=z)
        np.exp(z, out=z)
    else:  # logaddexp is ~20x slower than exp per element: exp(-z) is inf only where sigma(z) < 1e-308
        with np.errstate(over="ignore"):
            np.exp(z, out=z)
        z += 1.0
        np.reciprocal(z, out=z)  # 1 / (1 + inf) = 0
    return z''',
    "_ones": '''_ONES = {}


def _ones(n):
    """A read-only vector of n ones (cached): column sums of d as one product, ones.dot(d)."""
    v = _ONES.get(n)
    if v is None:
        v = np.ones(n, dtype=DTYPE)
        v.flags.writeable = False
        if len(_ONES) < 16:
            _ONES[n] = v
    return v''',
    "_erf": '''_erf_ufunc = np.frompyfunc(math.erf, 1, 1)


def _erf(z):
    """erf(z) elementwise (libm's erf; NumPy has none), for arrays and plain numbers alike."""
    return np.asarray(_erf_ufunc(z), dtype=DTYPE)''',
    "_max1": '''def _max1(a, b):
    """max(a, b) of two floats, NaN if either is NaN (as np.maximum)."""
    return a if a >= b or a != a else b''',
    "_min1": '''def _min1(a, b):
    """min(a, b) of two floats, NaN if either is NaN (as np.minimum)."""
    return a if a <= b or a != a else b''',
}

HELPER_NEEDS = {"_sigmoid": ("_sigmoid_",)}

# Activations whose out = f(net) can overwrite net in place: name -> statements (z is net).
IN_PLACE = {
    "identity": [],
    "tanh": ["np.tanh({z}, out={z})"],
    "relu": ["np.maximum({z}, 0.0, out={z})"],
    "sigmoid": ["_sigmoid_({z})"],
}


# f'(net) from out = a, applied to d in place once a is no longer needed (the same formulas as
# Activation.derivative_in_out, which the tests check against sympy.diff): name -> statements.
DERIV_IN_PLACE = {
    "tanh": ["np.square({a}, out={a})", "np.subtract(1.0, {a}, out={a})", "{d} *= {a}  # times f'(net) = 1 - out**2"],
    "sigmoid": ["{a} *= 1.0 - {a}", "{d} *= {a}  # times f'(net) = out*(1 - out)"],
    "relu": ["{d} *= {a} > 0.0  # times f'(net) = step(out)"],
}
# relu multiplies by step(out) as the per-sample path and the C code do (a masked store of 0 would turn
# inf * 0 into 0 here only, so the two paths and the C package would disagree on inf inputs).


def _array(v):
    """Python source for a float array literal (repr keeps every digit)."""
    return repr(np.asarray(v, dtype=np.float64).tolist())


def _init_lines(model):
    lines, needs_rng = [], False
    for p, call, args in init_plan(model):
        if call == "value":
            code = f"np.array({_array(args[0])}, dtype=DTYPE)"
        elif call == "uniform":
            code = f"rng.uniform({-args[0]!r}, {args[0]!r}, size={p.shape!r}).astype(DTYPE)"
            needs_rng = True
        elif call == "normal":
            code = f"rng.normal(0.0, {args[0]!r}, size={p.shape!r}).astype(DTYPE)"
            needs_rng = True
        else:
            code = f"np.zeros({p.shape!r}, dtype=DTYPE)"
        lines.append(f'"{p.name}": {code},')
    return lines, needs_rng


class _Printer:
    """Collects printed expressions and the helpers they call."""

    def __init__(self):
        self.helpers = set()

    def __call__(self, expr, names=None):
        return self.used(numpy_code(expr, names))

    def scalar(self, expr, names=None):
        return self.used(math_code(expr, names))

    def used(self, code):
        for h in HELPERS:
            if h + "(" in code:
                self.helpers.update((h,) + HELPER_NEEDS.get(h, ()))
        return code


def _unpack_pattern(names, shape):
    """Python target that unpacks ``array.tolist()`` of the given shape into scalar names."""
    if not shape:
        return names[0]
    if len(shape) == 1:
        return ", ".join(names) + ("," if len(names) == 1 else "")
    rows = [names[j * shape[1]:(j + 1) * shape[1]] for j in range(shape[0])]
    return ", ".join("(" + ", ".join(r) + ("," if len(r) == 1 else "") + ")" for r in rows) + ("," if len(rows) == 1 else "")


def _repack(names, shape):
    """Python source building an array of the given shape from scalar names."""
    if not shape:
        return f"np.array({names[0]}, dtype=DTYPE)"
    if len(shape) == 1:
        return f"np.array([{', '.join(names)}], dtype=DTYPE)"
    rows = [names[j * shape[1]:(j + 1) * shape[1]] for j in range(shape[0])]
    return "np.array([" + ", ".join("[" + ", ".join(r) + "]" for r in rows) + "], dtype=DTYPE)"


def _scalar_path(model, pr):
    """Per-sample straight-line code from the neuron-level program (small networks, small batches).

    Identifiers come from a :class:`~symgrad.symbols.Namer`: user names as written (``_`` appended
    where Python reserves them), the derivation's own names never equal to one.
    """
    if model.kind != "network" or sum(p.size for p in model.params) > SCALAR_PATH_PARAMS:
        return None
    sl = straight_line(model)
    prog = sl.derivation.program
    namer = sl.namer(model.name)
    by_name = {s.name: s for s in prog.params}
    pnames = {p.name: [namer[by_name[s]] for s in p.scalar_names] for p in model.params}
    unpack = [f"{_unpack_pattern(pnames[p.name], p.shape)} = _p{k}.tolist()" for k, p in enumerate(model.params)]
    args = _unpack_pattern([f"_p{k}" for k in range(len(model.params))], (len(model.params),))
    row_in = _unpack_pattern([namer[s] for s in prog.inputs], (1,))
    if model.loss.uses_target:
        rows = f"for ({row_in}), ({_unpack_pattern([namer[s] for s in prog.targets], (1,))}) in zip(a0.tolist(), t.tolist()):"
    else:
        rows = f"for ({row_in}) in a0.tolist():"
    grads = sl.grads
    body, _ = sl.live_body()
    n_tmp = sum(1 for a in body if a.lhs.name.startswith("_c"))
    lines = [f"# {len(body)} assignments, {n_tmp} common subexpressions (_c0..)"] if n_tmp else []
    lines += [f"{namer[a.lhs]} = {pr.scalar(a.rhs, namer.ids)}" for a in body]
    lines.append(f"_E += {namer[prog.loss]}")
    lines += [f"_g{k} += {pr.scalar(g, namer.ids)}" for k, (_, g) in enumerate(grads)]
    init = ["_E = 0.0"] + [f"_g{k} = 0.0" for k in range(len(grads))]
    out = []
    by_param = {}
    for k, (p_sym, _) in enumerate(grads):
        by_param.setdefault(prog.params[p_sym][0], {})[prog.params[p_sym][1]] = f"_g{k}"
    for p in model.params:
        if p.name in by_param:
            names = [by_param[p.name][i] for i in range(p.size)]
            out.append((p.name, _repack(names, p.shape)))
    return {"args": args, "unpack": unpack, "init": init, "rows": rows, "body": lines, "grads": out,
            "max_rows": max(1, SCALAR_PATH_WORK // len(sl.body)), "mean": model.loss.reduction == "mean"}


def _network_bodies(model, pr):
    """Source lines of the forward, loss and backward parts of a Network module.

    Matrix products are ``ndarray.dot`` calls, the same BLAS call as ``@`` without the ufunc and
    ``__array_function__`` dispatch (16x16 at batch 1: 0.6 instead of 1.6 us per product).
    """
    der = derive_layers(model)
    layers = der.program.layers
    L = len(layers)
    unpack = ", ".join(f"W{s.index + 1}" + (f", b{s.index + 1}" if s.bias is not None else "") for s in layers)
    fwd = [f"{unpack}{',' if len(model.params) == 1 else ''} = _params(params)"]
    for s in layers:
        k = s.index + 1
        z, a = f"z{k}", f"a{k}"
        fwd.append(f"{z} = a{k - 1}.dot(W{k}.T)  # net of layer {s.layer.name!r}: {s.layer.units} units")
        if s.bias is not None:
            fwd.append(f"{z} += b{k}")
        act = s.layer.activation
        if act.is_softmax:
            fwd += [f"{z} -= {z}.max(axis=1, keepdims=True)",
                    f"{a} = np.exp({z})",
                    f"sum{k} = {a}.sum(axis=1, keepdims=True)",
                    f"{a} /= sum{k}  # softmax"]
        elif not der.keeps_net[s.index] and act.name in IN_PLACE:
            fwd += [pr.used(st.format(z=z)) for st in IN_PLACE[act.name]]
            fwd.append(f"{a} = {z}  # {act.name}, in place")
        else:
            fwd.append(f"{a} = {pr(act.at(NET), {'net': z})}  # {act.name}")
    y = f"a{L}"
    names = {"y": y, "t": "t", "net": f"z{L}", "logy": "logy"}
    c = der.scale
    scale = "s" if c == 1 else f"s * {pr(c)}"
    lossl = ["s = 1.0 / a0.shape[0]" if model.loss.reduction == "mean" else "s = 1.0"]
    if der.loss_term.has(LOGSOFTMAX):
        lossl.append(f"logy = z{L} - np.log(sum{L})  # log softmax, stable")
    # the loss term and the output delta share subexpressions (t - y, ...): computed once, with the loss
    shared, (loss_term, delta_out) = sp.cse([der.loss_term, der.delta_out], symbols=sp.numbered_symbols("e"))
    for_loss = set(loss_term.free_symbols)
    for sym, expr in reversed(shared):
        if sym in for_loss:
            for_loss |= expr.free_symbols
    delta_only = []  # shared names the loss does not use: computed with the backward pass, not in loss()
    for sym, expr in shared:
        (lossl if sym in for_loss else delta_only).append(f"{sym.name} = {pr(expr, names)}")
        names[sym.name] = sym.name
    total = _batch_sum(loss_term, names, pr)
    lossl.append(f"E = -{scale} * {total[1:]}" if total.startswith("-") else f"E = {scale} * {total}")
    back = list(delta_only)
    lowest = min((s.index for s in layers if s.weight.trainable or (s.bias is not None and s.bias.trainable)), default=None)
    grads = []
    have_ones = False
    if lowest is not None:
        dexpr = pr(delta_out, names)
        if der.softmax:
            back += [f"h = {dexpr}", f"d{L} = h - {y} * h.sum(axis=1, keepdims=True)"]
        else:
            owned = {sym.name for sym, _ in shared}  # fresh arrays, dead once the loss is summed
            inplace = _product_in_place(delta_out, f"d{L}", names, owned, {"y"}, pr)
            back += inplace or [f"d{L} = {dexpr}"]
            back[-1] += "  # dE/dnet of the output layer, per unit of the loss scale"
        if not (c == 1 and model.loss.reduction == "sum"):
            back.append(f"d{L} *= {scale}")
        for s in reversed(layers):
            k = s.index + 1
            if s.weight.trainable:
                back.append(f"gW{k} = d{k}.T.dot(a{k - 1})  # dE/dW of {s.layer.name!r}")
                grads.append((s.weight.name, f"gW{k}"))
            if s.bias is not None and s.bias.trainable:
                if s.bias.shape and not have_ones:
                    have_ones = True
                    back.append(pr.used("ones = _ones(a0.shape[0])  # column sums over the batch as products"))
                back.append(f"gb{k} = ones.dot(d{k})" if s.bias.shape else f"gb{k} = np.asarray(d{k}.sum())")
                grads.append((s.bias.name, f"gb{k}"))
            if s.index > lowest:
                j = k - 1
                prev = layers[s.index - 1]
                fp = der.derivs[s.index - 1]
                back.append(f"d{j} = d{k}.dot(W{k})  # dE/da of {prev.layer.name!r}")
                act = prev.layer.activation.name
                if act in DERIV_IN_PLACE and not der.keeps_net[s.index - 1]:
                    back += [st.format(a=f"a{j}", d=f"d{j}") for st in DERIV_IN_PLACE[act]]
                elif fp != 1:
                    back.append(f"d{j} *= {pr(fp, {'out': f'a{j}', 'net': f'z{j}'})}  # times f'(net)")
    order = {p.name: i for i, p in enumerate(model.params)}
    grads.sort(key=lambda g: order[g[0]])
    return {"forward": fwd, "loss": lossl, "backward": back, "grads": grads, "y": y,
            "rewrites": der.rewrites, "derivation": der}


def _batch_sum(term, names, pr):
    """Python source for the sum of ``term`` over the batch and outputs: c*u**2 and c*u*v as one dot product."""
    coeff, factors = term.as_coeff_mul()
    arrays = [f for f in factors if f.is_Symbol and f.name in names]
    if len(factors) == 1 and factors[0].is_Pow and factors[0].exp == 2 and factors[0].base.is_Symbol \
            and factors[0].base.name in names:
        u = names[factors[0].base.name]
        arrays = [u, u]
    elif len(factors) == 2 and len(arrays) == 2:
        arrays = [names[f.name] for f in arrays]
    else:
        return f"float(np.sum({pr(term, names)}))"
    dot = f"float(np.vdot({arrays[0]}, {arrays[1]}))"
    return dot if coeff == 1 else f"-{dot}" if coeff == -1 else f"{pr(coeff)} * {dot}"


def _product_in_place(expr, target, names, owned, writable, pr):
    """Lines computing ``target = expr`` for a product, multiplying in place into one of the owned arrays.

    Factors that are a writable array plus a number (y - 1) are formed in place too, once no later
    factor needs that array. None when expr is not such a product.
    """
    coeff, factors = expr.as_coeff_mul()
    base = next((f for f in factors if f.is_Symbol and f.name in owned), None)
    if base is None:
        return None
    rest = [f for f in factors if f != base]
    plain = [f for f in rest if f.is_Symbol or f.is_Number]
    other = [f for f in rest if not (f.is_Symbol or f.is_Number)]
    lines = [f"{target} = {names[base.name]}"]
    lines += [f"{target} *= {pr(f, names)}" for f in plain]
    for k, f in enumerate(other):
        c, u = f.as_coeff_add()
        later = other[k + 1:]
        if len(u) == 1 and u[0].is_Symbol and u[0].name in writable and not any(g.has(u[0]) for g in later) and c != 0:
            a = names[u[0].name]
            lines += [f"{a} -= {pr(-c)}" if c < 0 else f"{a} += {pr(c)}", f"{target} *= {a}"]
        elif (len(u) == 1 and u[0].is_Mul and u[0].args == (-1, u[0].args[1]) and u[0].args[1].is_Symbol
              and u[0].args[1].name in writable and not any(g.has(u[0].args[1]) for g in later)):
            a = names[u[0].args[1].name]
            lines += [f"np.subtract({pr(c)}, {a}, out={a})", f"{target} *= {a}"]
        else:
            lines.append(f"{target} *= {pr(f, names)}")
    if coeff == -1:
        lines.append(f"np.negative({target}, out={target})")
    elif coeff != 1:
        lines.append(f"{target} *= {pr(coeff)}")
    return lines


def _expression_bodies(model, pr):
    """Source lines for an ExpressionModel: its scalar program vectorised over the batch."""
    der = derive_scalar(model)
    prog = der.program
    namer = Namer(model.name).add(list(prog.params) + list(prog.inputs))
    namer.add([s.sym for s in prog.steps] + [a.sym for a in der.adjoints])
    names = namer.ids
    unpack = ", ".join(namer[p] for p in prog.params)
    fwd = [unpack + (", = " if len(model.params) == 1 else " = ") + "_params(params)"]
    used = set().union(*[s.expr.free_symbols for s in prog.steps if s.kind == "output"])
    for k, s in enumerate(prog.inputs):
        if s in used:  # an input no output uses would be an unused local
            fwd.append(f"{namer[s]} = a0[:, {k}]")
    for k, tg in enumerate(prog.targets):
        names[tg] = f"t[:, {k}]"
    out_steps = [Assignment(s.sym, s.expr) for s in prog.steps if s.kind == "output"]
    fwd += _block(out_steps, pr, names, "_f")
    outs = ", ".join(names[o] for o in prog.outputs)
    loss_steps = [Assignment(s.sym, s.expr) for s in prog.steps if s.kind in ("loss_term", "loss")]
    lossl = ["s = 1.0 / a0.shape[0]" if model.loss.reduction == "mean" else "s = 1.0"]
    lossl += _block(loss_steps, pr, names, "_l")
    lossl.append(f"E = s * _bsum({pr(prog.loss, names)}, a0.shape[0])")
    adj = [Assignment(a.sym, a.expr) for a in der.adjoints]
    back = _block(adj, pr, names, "_g")
    grads = []
    for k, (p_sym, a_sym) in enumerate(der.grads.items()):
        pname = prog.params[p_sym][0]
        back.append(f"_grad{k} = np.asarray(s * _bsum({pr(a_sym, names)}, a0.shape[0]))  # dE/d{namer[p_sym]}")
        grads.append((pname, f"_grad{k}"))
    return {"forward": fwd, "loss": lossl, "backward": back, "grads": grads, "y": f"_columns(a0.shape[0], {outs})",
            "rewrites": model.rewrites,
            "derivation": der}


def _block(assignments, pr, names, prefix):
    """Assignments with common subexpressions pulled into numbered temporaries, printed."""
    if not assignments:
        return []
    block = CodeBlock(*assignments).cse(symbols=sp.numbered_symbols(prefix), order="none")
    lines = []
    n_tmp = sum(1 for a in block.args if a.lhs.name.startswith(prefix))
    if n_tmp:
        lines.append(f"# {n_tmp} common subexpression(s): {prefix}0..{prefix}{n_tmp - 1}")
    for a in block.args:
        names.setdefault(a.lhs, a.lhs.name)  # numbered temporaries: _f0, _l0, _g0 (no user name starts with _)
        lines.append(f"{pr(a.lhs, names)} = {pr(a.rhs, names)}")
    return lines


def numpy_module(model, dtype="float64", source=None):
    """Source text of the generated NumPy module for ``model``."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}")
    pr = _Printer()
    bodies = _network_bodies(model, pr) if model.kind == "network" else _expression_bodies(model, pr)
    bodies["scalar"] = _scalar_path(model, pr)
    init, needs_rng = _init_lines(model)
    trainable = [p.name for p in model.params if p.trainable]
    helpers = [HELPERS[h] for h in sorted(pr.helpers)]
    return _render(model, dtype, source, bodies, init, needs_rng, trainable, helpers)


def _render(model, dtype, source, bodies, init, needs_rng, trainable, helpers):
    from symgrad.core.explain import formula_lines
    from symgrad.render import python_tuple, render
    from symgrad.train.optim import train_context

    src = source or model.source
    return render(
        TEMPLATE,
        version=__version__,
        source=src,
        template=TEMPLATE,
        name=model.name,
        summary=model.describe(),
        description=model.description,
        formulas=formula_lines(model, bodies["derivation"]),
        rewrites=bodies["rewrites"],
        kind=model.kind,
        dtype=DTYPES[dtype],
        dtype_name=dtype,
        param_names=[p.name for p in model.params],
        shapes=[(p.name, p.shape) for p in model.params],
        trainable=trainable,
        n_inputs=model.n_inputs,
        n_outputs=model.n_outputs,
        input_names=python_tuple(model.inputs),
        output_names=python_tuple(model.outputs),
        seed=getattr(model, "seed", 0),
        init=init,
        needs_rng=needs_rng,
        needs_math="math." in "".join(helpers) + "".join(bodies["scalar"]["body"] if bodies["scalar"] else ()),
        scalar=bodies["scalar"],
        helpers=helpers,
        forward=bodies["forward"],
        loss=bodies["loss"],
        backward=bodies["backward"],
        grads=bodies["grads"],
        y=bodies["y"],
        learning_rate=repr(float(model.train.learning_rate)),
        uses_target=model.loss.uses_target,
        train=train_context(model),
    )
