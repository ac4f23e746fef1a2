"""In-place NumPy statements for an elementwise expression, found from the expression itself.

``in_place(expr, var, target, pr)`` lowers ``target <- expr(var)`` (target holds var) into
ufunc calls with ``out=target`` and augmented assignments, walking the expression from ``var``
outwards: ``tanh(v)`` becomes ``np.tanh(t, out=t)``, ``1 - v**2`` becomes ``np.square(t, out=t)``
then ``np.subtract(1.0, t, out=t)``, ``v*(1 - v)`` becomes ``t *= 1.0 - t`` (the right side is
evaluated before the store). A helper ``_f`` the printer calls is done in place by its ``_f_`` twin
when the module has one (the printer's ``in_place``). None when the expression is not a chain of such steps.
"""

import sympy as sp


def in_place(expr, var, target, pr):
    """Statements overwriting ``target`` (which holds ``var``) with ``expr``; None if not expressible so."""
    if expr == var:
        return []
    if var not in expr.free_symbols:
        return None
    names = {var: target}
    if isinstance(expr, sp.Function) and len(expr.args) == 1:
        return _then(in_place(expr.args[0], var, target, pr), pr.in_place(expr.func(var), target))
    if expr.is_Pow and expr.exp in (2, -1):
        op = "np.square" if expr.exp == 2 else "np.reciprocal"
        return _then(in_place(expr.base, var, target, pr), f"{op}({target}, out={target})")
    if expr.is_Mul or expr.is_Add:
        return _operator(expr, var, target, pr, names)
    return None


def _operator(expr, var, target, pr, names):
    with_var = [a for a in expr.args if var in a.free_symbols]
    rest = expr.func(*[a for a in expr.args if var not in a.free_symbols])
    if len(with_var) > 1:  # v * g(v): g is evaluated, then multiplied into v
        if var not in with_var:
            return None
        other = expr.func(*[a for a in expr.args if a != var])
        return [f"{target} {'*' if expr.is_Mul else '+'}= {pr(other, names)}"]
    (inner,) = with_var
    if expr.is_Mul:
        if rest == -1:
            return _then(in_place(inner, var, target, pr), f"np.negative({target}, out={target})")
        return _then(in_place(inner, var, target, pr), f"{target} *= {pr(rest, names)}")
    if inner.is_Mul and inner.args[0] == -1:  # c - g(v)
        return _then(in_place(-inner, var, target, pr), f"np.subtract({pr(rest, names)}, {target}, out={target})")
    return _then(in_place(inner, var, target, pr), f"{target} += {pr(rest, names)}")


def _then(lines, statement):
    if lines is None or statement is None:
        return None
    return lines + [statement]
