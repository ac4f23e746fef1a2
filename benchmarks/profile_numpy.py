"""Where the time of one call of a generated NumPy module's loss_and_gradients goes, statement by statement.

    python benchmarks/profile_numpy.py [--configs 2-2-2/1,8-16-16-4/1,8-16-16-4/64] [--repeat K]

Each top-level statement of loss_and_gradients (and of the per-sample path it may call) is run K
times in a row on the real arrays and timed; the cost of an empty statement is subtracted. A ``for``
over the rows is profiled for its first row (exact at batch 1). Statements run from a namespace
dict rather than fast locals, so the sum can exceed the measured call by a few percent.
"""

import argparse
import ast
import inspect
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import CONFIGS, inputs, model_for  # noqa: E402

from symgrad.api import generate, import_generated  # noqa: E402


def _per_call(fn, k):
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(k):
            fn()
        best = min(best, (time.perf_counter() - start) / k)
    return best * 1e6


def _statements(func):
    """Top-level statements of func (docstring dropped), a row loop turned into its first row."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    body = tree.body[0].body
    if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    out = []
    for st in body:
        if isinstance(st, ast.For):
            first = ast.Assign([st.target], ast.Call(ast.Name("next", ast.Load()), [ast.Call(
                ast.Name("iter", ast.Load()), [st.iter], [])], []), lineno=0)
            out.append(("for: next row + unpack", [first]))
            out += [(ast.unparse(s), [s]) for s in st.body]
        elif isinstance(st, ast.Return):
            out.append((ast.unparse(st), [ast.Assign([ast.Name("_ret", ast.Store())], st.value, lineno=0)]))
        else:
            out.append((ast.unparse(st), [st]))
    return out


def profile(func, namespace, k):
    """[(statement, microseconds)] of running func's statements in namespace."""
    rows = []
    empty = compile(f"for _ in range({k}):\n    pass", "<empty>", "exec")
    start = time.perf_counter()
    exec(empty, namespace)
    base = (time.perf_counter() - start) / k
    for text, stmts in _statements(func):
        dispatch = text.startswith("if ") and "return" in text  # to the per-sample path: time its test only
        if dispatch:
            test = stmts[0].test
            stmts = [ast.Expr(test)]
        loop = ast.For(ast.Name("_", ast.Store()), ast.Call(ast.Name("range", ast.Load()), [ast.Constant(k)], []), stmts, [])
        code = compile(ast.fix_missing_locations(ast.Module([loop], [])), "<stmt>", "exec")
        exec(compile(ast.fix_missing_locations(ast.Module(stmts, [])), "<once>", "exec"), namespace)
        start = time.perf_counter()
        exec(code, namespace)
        rows.append((text.splitlines()[0][:90], max(0.0, ((time.perf_counter() - start) / k - base) * 1e6)))
        if dispatch and eval(compile(ast.Expression(test), "<test>", "eval"), namespace):
            break  # the call returns from the per-sample path here
    return rows


def profile_config(label, sizes, batch, loss, k, workdir):
    name = "p_" + "_".join(map(str, sizes))
    model = model_for(sizes, loss, name)
    generate(model, "numpy", workdir)
    mod = import_generated(model.name, workdir)
    params = mod.init_params()
    x, t = inputs(model, batch, loss)
    total = _per_call(lambda: mod.loss_and_gradients(params, x, t), k)
    print(f"\n### {label}, b={batch}: loss_and_gradients {total:.2f} µs per call\n")
    ns = dict(vars(mod), params=params, x=x, y=t)
    rows = profile(mod.loss_and_gradients, ns, k)
    scalar = "_loss_and_gradients_rows" in inspect.getsource(mod.loss_and_gradients) and batch <= 16
    if scalar:
        ns2 = dict(vars(mod), params=mod._params(params), a0=ns["a0"], t=ns["t"])
        rows.append(("-> _loss_and_gradients_rows(...), statement by statement:", None))
        rows += [("   " + s, v) for s, v in profile(mod._loss_and_gradients_rows, ns2, k)]
    print("| statement | µs |\n|---|---:|")
    for s, v in rows:
        print(f"| `{s}` | {'' if v is None else f'{v:.2f}'} |")
    print(f"| sum of statements | {sum(v for _, v in rows if v is not None):.2f} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="2-2-2/1,8-16-16-4/1,8-16-16-4/64")
    ap.add_argument("--repeat", type=int, default=2000)
    args = ap.parse_args(argv)
    wanted = args.configs.split(",")
    np.seterr(all="ignore")  # statements repeated in place may overflow harmlessly
    with tempfile.TemporaryDirectory() as tmp:
        for label, sizes, batch, loss in CONFIGS:
            if f"{label}/{batch}" in wanted:
                profile_config(label, sizes, batch, loss, args.repeat, tmp)


if __name__ == "__main__":
    main()
