"""NumPy source from the neuron-level program: per-sample straight-line code and expression models.

Small networks get a per-sample path (plain floats, ``math``) used for small batches; expression
models are printed from the scalar program vectorised over the batch. Common subexpressions are
pulled out by ``CodeBlock.cse``; identifiers come from a :class:`~symgrad.symbols.Namer`.
"""

import sympy as sp
from sympy.codegen.ast import Assignment, CodeBlock

from symgrad.sizes import SCALAR_PATH_PARAMS, SCALAR_PATH_WORK
from symgrad.symbols import Namer


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


def scalar_path(model, der, pr):
    """Per-sample straight-line code from the neuron-level program (small networks, small batches).

    Identifiers come from a :class:`~symgrad.symbols.Namer`: user names as written (``_`` appended
    where Python reserves them), the derivation's own names never equal to one.
    """
    if model.kind != "network" or sum(p.size for p in model.params) > SCALAR_PATH_PARAMS:
        return None
    sl = der.straight
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


def expression_bodies(model, der, pr):
    """Source lines for an ExpressionModel: its scalar program vectorised over the batch."""
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
