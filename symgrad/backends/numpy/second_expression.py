"""NumPy source for an expression model's second-order functions, from SymPy's derivatives of its expressions.

An expression model is a few scalar parameters and expressions (no layers to run an R-operator
over), so each entry is one printed expression of the sample, vectorised over the batch as the
first-order code is: dE/dx_i, d out_j/d x_i, the Hessian entries d^2E/(dp dq) (upper triangle,
mirrored) and the Gauss-Newton entries sum_j c l''(out_j) d out_j/dp d out_j/dq. hvp and
gauss_newton_vp multiply those small matrices by v.
"""

import sympy as sp
from sympy.codegen.ast import Assignment

from symgrad.backends.numpy.scalar import _block
from symgrad.backends.numpy.second import live
from symgrad.ops.losses import t as T
from symgrad.ops.losses import y as Y
from symgrad.symbols import Namer


def _expand(expr, steps):
    for s in reversed(steps):
        expr = expr.xreplace({s.sym: s.expr})
    return expr


def expression_second(model, sder, pr):
    """{function: body lines after the argument checks} of an ExpressionModel's second-order functions."""
    prog = sder.program
    namer = Namer(model.name).add(list(prog.params) + list(prog.inputs))
    names = dict(namer.ids)
    for k, s in enumerate(prog.inputs):
        names[s] = f"a0[:, {k}]"
    for k, tg in enumerate(prog.targets):
        names[tg] = f"t[:, {k}]"
    unpack = ", ".join(namer[p] for p in prog.params)
    head = [unpack + (", = " if len(model.params) == 1 else " = ") + "_params(params)"]
    scale = ["s = 1.0 / a0.shape[0]" if model.loss.reduction == "mean" else "s = 1.0"]
    E = _expand(prog.loss, prog.steps)
    outs = [_expand(o, prog.steps) for o in prog.outputs]
    trained = list(sder.grads)
    n = "a0.shape[0]"

    def block(exprs, prefix):
        syms = [sp.Symbol(f"{prefix}{k}_") for k in range(len(exprs))]
        lines = _block([Assignment(s, e) for s, e in zip(syms, exprs)], pr, names, f"_{prefix}")
        return lines, [names.get(s, s.name) for s in syms]

    gx, gx_names = block([sp.diff(E, v) for v in prog.inputs], "dx")
    bodies = {"input_gradients": head + scale + gx + [f"result = s * _columns({n}, {', '.join(gx_names)})"]}
    jac = [sp.diff(o, v) for o in outs for v in prog.inputs]
    jl, jn = block(jac, "jx")
    m = len(prog.inputs)
    rows = [f"_columns({n}, {', '.join(jn[j * m:(j + 1) * m])})" for j in range(len(outs))]
    bodies["jacobian"] = head + jl + [f"result = np.stack([{', '.join(rows)}], axis=1)"]
    if not trained:
        bodies["hvp"] = bodies["gauss_newton_vp"] = ["result = {}"]
        return {name: live(body) for name, body in bodies.items()}
    pairs = [(i, j) for i in range(len(trained)) for j in range(i, len(trained))]
    hl, hn = block([sp.diff(E, trained[i], trained[j]) for i, j in pairs], "h")
    curv = model.loss.second_derivative()
    jp = {(o, p): sp.diff(outs[o], trained[p]) for o in range(len(outs)) for p in range(len(trained))}
    gn = [prog.scale * sp.Add(*[curv.subs({Y: outs[o], T: prog.targets[o]}) * jp[o, i] * jp[o, j] for o in range(len(outs))])
          for i, j in pairs]
    gl, gnn = block(gn, "gn")
    vv = f"np.array([{', '.join(f'float(_v{k})' for k in range(len(trained)))}], dtype=DTYPE)"
    unpack_v = [", ".join(f"_v{k}" for k in range(len(trained))) + ("," if len(trained) == 1 else "") + " = _direction(v)"]
    keys = [prog.params[p][0] for p in trained]
    bodies["hvp"] = head + unpack_v + scale + hl + _product(pairs, hn, len(trained), vv, keys, n)
    bodies["gauss_newton_vp"] = head + unpack_v + scale + gl + _product(pairs, gnn, len(trained), vv, keys, n)
    return {name: live(body) for name, body in bodies.items()}


def _product(pairs, entries, size, vv, keys, n):
    """Lines: the symmetric matrix from its upper-triangle entries (summed over the batch), times the vector vv."""
    lines = [f"M = np.empty(({size}, {size}), dtype=DTYPE)"]
    for (i, j), e in zip(pairs, entries):
        lines.append(f"M[{i}, {j}] = M[{j}, {i}] = s * _bsum({e}, {n})")
    lines.append(f"Mv = M.dot({vv})")
    lines.append("result = {" + ", ".join(f"{k!r}: np.asarray(Mv[{i}])" for i, k in enumerate(keys)) + "}")
    return lines
