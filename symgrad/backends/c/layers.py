"""C loops for a parameter-free layer from its SymPy forward and vector-Jacobian product.

A layer that prints its own C (softmax: ``c_forward_row``, ``c_delta_row``) is printed by itself;
any other is printed unit by unit per row of the batch, common subexpressions computed once.
"""

import sympy as sp

from symgrad.ops.base import symbols


def _row(names, exprs, target, printer, prefix):
    """Per-row C statements: the CSE temporaries, then target[j] = expr_j."""
    shared, reduced = sp.cse(exprs, symbols=sp.numbered_symbols(prefix))
    names = dict(names)
    lines = []
    for sym, e in shared:
        lines.append(f"const real {sym.name} = {printer(names).doprint(e)};")
        names[sym] = sym.name
    return lines + [f"{target}[{j}] = {printer(names).doprint(e)};" for j, e in enumerate(reduced)]


def _indexed(prefix, row, n):
    return {sym: f"{row}[{j}]" for j, sym in enumerate(symbols(prefix, n))}


def forward_rows(op, n_in, n_out, src, dst, printer, k):
    """Loop over the batch computing dst = op(src) row by row (``printer(names)`` gives a CPrinter)."""
    decl = [f"const real *restrict xr = {src} + (size_t)_r * {n_in};", f"real *restrict ar = {dst} + (size_t)_r * {n_out};"]
    return _for_rows(_used(decl, _row(_indexed("x", "xr", n_in), op.forward(symbols("x", n_in)), "ar", printer, f"_f{k}_")))


def vjp_rows(op, n_in, n_out, src, out, g, dst, printer, k):
    """Loop over the batch computing dst = g J (J the op's Jacobian at src; out its outputs) row by row."""
    decl = [f"const real *restrict xr = {src} + (size_t)_r * {n_in};",
            f"const real *restrict ur = {out} + (size_t)_r * {n_out};",
            f"const real *restrict gr = {g} + (size_t)_r * {n_out};",
            f"real *restrict dr = {dst} + (size_t)_r * {n_in};"]
    names = {**_indexed("x", "xr", n_in), **_indexed("u", "ur", n_out), **_indexed("g", "gr", n_out)}
    body = _row(names, op.vjp(symbols("x", n_in), symbols("u", n_out), symbols("g", n_out)), "dr", printer, f"_b{k}_")
    return _for_rows(_used(decl, body))


def _used(declarations, body):
    """The row pointers the body reads (an unused one is a warning), then the body."""
    text = "\n".join(body)
    return [d for d in declarations if d.split(" = ")[0].split()[-1] + "[" in text] + body


def _for_rows(body):
    return ["for (int _r = 0; _r < batch; ++_r) {"] + ["    " + line for line in body] + ["}"]
