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
from symgrad.core.second import expression_partials
from symgrad.symbols import Namer


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
    d = expression_partials(model, sder)
    trained = d.trained
    n = "a0.shape[0]"

    def block(exprs, prefix):
        syms = [sp.Symbol(f"{prefix}{k}_") for k in range(len(exprs))]
        lines = _block([Assignment(s, e) for s, e in zip(syms, exprs)], pr, names, f"_{prefix}")
        return lines, [names.get(s, s.name) for s in syms]

    gx, gx_names = block(d.input_grads, "dx")
    bodies = {"input_gradients": head + scale + gx + [f"result = s * _columns({n}, {', '.join(gx_names)})"]}
    jl, jn = block(d.jacobian, "jx")
    m = len(prog.inputs)
    rows = [f"_columns({n}, {', '.join(jn[j * m:(j + 1) * m])})" for j in range(len(prog.outputs))]
    bodies["jacobian"] = head + jl + [f"result = np.stack([{', '.join(rows)}], axis=1)"]
    if not trained:
        bodies["hvp"] = bodies["gauss_newton_vp"] = ["result = {}"]
        return {name: live(body) for name, body in bodies.items()}
    pairs = d.pairs
    hl, hn = block(d.hessian, "h")
    gl, gnn = block(d.gauss_newton, "gn")
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
