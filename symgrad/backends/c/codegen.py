"""The C backend: print the forward and backward programs as C99, plus a ctypes package over them.

Three code shapes:

* ``unrolled`` — the neuron-level program as straight-line code with common subexpressions pulled
  out, looped over the batch: every weight a local constant, nothing but arithmetic (expression models);
* ``loops`` — the layer program as loops over the batch and units, with the three matrix products per
  layer in small kernels that gcc vectorises, or ``cblas_?gemm`` when built with BLAS (networks);
* ``hybrid`` — loops, with the straight-line code for one sample in front (networks up to UNROLL_LIMIT
  parameters, where that is the fastest per-sample call).

No generated function allocates: the caller passes the parameter block, inputs, targets, outputs,
gradients and a work buffer of ``<name>_workspace_size(batch)`` values.
"""

import re
from pathlib import Path

import numpy as np

from symgrad.backends.c import build as _build
from symgrad.backends.c import helpers as _helpers
from symgrad.backends.c import runtime as _runtime
from symgrad.backends.c import second_runtime as _second_runtime
from symgrad.backends.c.graph import GraphLoops
from symgrad.backends.c.graph_second import GraphSecondC
from symgrad.backends.c.loops import Hybrid, Loops
from symgrad.backends.c.printer import CPrinter
from symgrad.backends.c.second import CSecond
from symgrad.backends.c.second_expression import CExpressionSecond
from symgrad.backends.c.unrolled import Unrolled
from symgrad.backends.numpy.codegen import init_lines
from symgrad.core.derive import derive
from symgrad.core.explain import formula_lines
from symgrad.errors import SpecError, ToolError
from symgrad.escape import c_string
from symgrad.render import python_tuple, render, write_folder_atomic
from symgrad.sizes import BLAS_MIN_WORK, HESSIAN_LIMIT, PACK_LIMIT, UNROLL_LIMIT
from symgrad.spec.config import SECOND_ORDER
from symgrad.train.optim import train_context
from symgrad.version import __version__

SHAPES = {"unrolled": Unrolled, "hybrid": Hybrid, "loops": Loops}


def _layout(model):
    """Each parameter's offset in the flat vector and its header macro (injective: layers hid and HID differ)."""
    out, offset, macros = [], 0, set()
    for p in model.params:
        macro = base = p.name.upper().replace(".", "_")
        k = 2
        while macro in macros:  # upper-casing merged two names: number the later one
            macro, k = f"{base}_{k}", k + 1
        macros.add(macro)
        out.append({"name": p.name, "offset": offset, "size": p.size, "shape": p.shape, "trainable": p.trainable,
                    "macro": macro, "scalars": p.scalar_names})
        offset += p.size
    return out, offset


def _void_unused(lines, args):
    """``(void)arg;`` in front of a body for each argument it never reads (a model that ignores x or t); a comment
    naming one ("the delta at step t") is no read."""
    text = re.sub(r"/\*.*?\*/", "", "\n".join(lines), flags=re.S)
    return [f"(void){a};" for a in args if not re.search(rf"\b{a}\b", text)] + lines


def _shape(model, shape):
    """The code shape for ``model``: ``shape``, or for "auto" the fastest for its kind and size."""
    if model.kind == "graph":
        if shape not in ("auto", "loops"):
            raise SpecError(f"--shape {shape}: graph networks have loop code only", "--shape")
        return "loops"
    if model.kind != "network" and shape in ("loops", "hybrid"):
        raise SpecError(f"--shape {shape} needs a network; expression models have unrolled code only", "--shape")
    if shape != "auto":
        return shape
    if model.kind != "network":
        return "unrolled"
    return "hybrid" if sum(p.size for p in model.params) <= UNROLL_LIMIT else "loops"


def _second(model, layout, pr):
    """The template context of the second-order C functions (networks, graph networks and expression models)."""
    if model.kind == "network":
        code = CSecond(derive(model).second, layout, pr)
    elif model.kind == "graph":
        code = GraphSecondC(model, layout, pr)
    else:
        code = CExpressionSecond(model, layout, pr)
    bodies = code.bodies()
    if model.kind == "graph":
        bodies["hessian"] = _hessian_by_columns(model.name, layout, code.workspace())
    args = {"input_gradients": ("params", "x", "t", "batch", "gx", "work"), "jacobian": ("params", "x", "batch", "J", "work"),
            "hvp": ("params", "x", "t", "v", "batch", "out", "work"),
            "gauss_newton_vp": ("params", "x", "t", "v", "batch", "out", "work"),
            "hessian": ("params", "x", "t", "batch", "H", "work")}
    bodies = {name: _void_unused(body, args[name]) for name, body in bodies.items()}
    n_trainable = sum(p["size"] for p in layout if p["trainable"])
    method = {"network": "the R-operator over the layer program", "graph": "each layer's R-forward and R-backward",
              "expression": "SymPy's second derivatives of the expressions, summed over the batch"}[model.kind]
    if model.kind == "graph":
        return {"bodies": bodies, "workspace": code.workspace(), "n_trainable": n_trainable, "method": method,
                "hessian_workspace": f"{code.workspace()} + {2 * sum(p['size'] for p in layout)}", "kernels": [],
                "gemm": code.helpers()}
    return {"bodies": bodies, "workspace": code.workspace(), "hessian_workspace": code.hessian_workspace(),
            "n_trainable": n_trainable, "kernels": code.kernel_sources(), "gemm": code.gemm_helpers(), "method": method}


def _hessian_by_columns(name, layout, workspace):
    """C lines of the Hessian as one hvp per trainable entry: column j = H e_j, written as row j (H is symmetric)."""
    n = sum(p["size"] for p in layout)
    ranges = [(p["offset"], p["size"]) for p in layout if p["trainable"]]
    width = sum(size for _, size in ranges)
    if not width:
        return []
    lines = [f"real *restrict v = work + ({workspace}), *restrict col = v + {n};",
             f"for (int i = 0; i < {n}; ++i) v[i] = 0;", "size_t row = 0;"]
    for off, size in ranges:
        lines += [f"for (int j = {off}; j < {off + size}; ++j) {{", "    v[j] = 1;",
                  f"    {name}_hvp(params, x, t, v, batch, col, work);", "    v[j] = 0;",
                  f"    real *restrict h = H + row++ * {width};",
                  *(f"    for (int i = {o}; i < {o + sz}; ++i) *h++ = col[i];" for o, sz in ranges), "}"]
    return lines


def c_sources(model, dtype="float64", shape="auto", blas="no", second_order=False):
    """({file name: text} of the header and the source for ``model``, the code shape, whether it calls BLAS)."""
    model = getattr(model, "model", model)  # a model or its Derivation
    shape = _shape(model, shape)
    layout, n_params = _layout(model)
    pr = CPrinter(dtype)
    ctype = "double" if dtype == "float64" else "float"
    body = (GraphLoops if model.kind == "graph" else SHAPES[shape])(model, layout, pr)
    forward, loss, backward = body.forward(), body.loss(), body.backward()
    forward = _void_unused(forward, ("params", "x", "y", "work"))
    loss = _void_unused(loss, ("params", "x", "t", "work"))
    backward = _void_unused(backward, ("params", "x", "t", "grad", "work"))
    second = _second(model, layout, pr) if second_order else None
    math, gemm, conv, rnn = _helpers.select(body.helpers() | pr.helpers | (second["gemm"] if second else set()))
    use_blas = shape != "unrolled" and blas != "no"
    name = model.name
    der = {"network": derive(model).layers, "graph": derive(model).graph}.get(model.kind) \
        if model.kind != "expression" else derive(model).straight.derivation
    common = dict(version=__version__, source=model.source, name=name, summary=model.describe(), ctype=ctype,
                  prefix=name.upper(), n_inputs=model.n_inputs, n_outputs=model.n_outputs, n_params=n_params,
                  layout=layout)
    header = render("c/header.h.j2", guard=f"SYMGRAD_{name.upper()}_H", gemm_hook=shape != "unrolled",
                    input_shape=getattr(model, "input_shape", None), output_shape=getattr(model, "output_shape", None),
                    second=second, **common)
    source = render("c/source.c.j2", shape=shape, ops=body.count(), formulas=formula_lines(model, der), blas=use_blas,
                    helpers=[*math.values(), *gemm.values(), *conv.values(), *rnn.values()], helpers_need_bits="symgrad_pow2" in math,
                    gemm_hook=shape != "unrolled", blas_min_work=BLAS_MIN_WORK, cblas=f"cblas_{'d' if ctype == 'double' else 's'}gemm",
                    workspace=body.workspace(), forward=forward, loss=loss, backward=backward, second=second, **common)
    return {f"{name}.h": header, f"{name}.c": source}, shape, use_blas


def package_files(model, dtype="float64", shape="auto", with_main=False, blas="no", second_order=False):
    """(the code shape, whether it calls BLAS, {file name: text} of the package ``<name>_c/``) for a model or Derivation."""
    model = getattr(model, "model", model)
    second_order = second_order or model.train.kind in SECOND_ORDER  # a newton/gauss_newton train_step solves with them
    files, shape, use_blas = c_sources(model, dtype, shape, blas, second_order)
    files["__init__.py"] = _package_init(model, dtype, shape, blas if use_blas else "no", second_order)
    files["_runtime.py"] = _copied(_runtime)
    files["_build.py"] = _copied(_build)
    if second_order:
        files["_second.py"] = _copied(_second_runtime)
    if with_main:
        files["main.c"] = _main_source(model, _layout(model)[0], dtype)
    return shape, use_blas, files


def generate_c(model, out_dir, dtype="float64", shape="auto", with_main=False, build=False, blas="no", second_order=False):
    """Write ``<out_dir>/<name>_c/`` (header, source, ctypes package, optional main.c); returns the paths."""
    model = getattr(model, "model", model)
    shape, use_blas, files = package_files(model, dtype, shape, with_main, blas, second_order)
    name = model.name
    pkg = Path(out_dir) / f"{name}_c"
    written = write_folder_atomic(pkg, files)
    if build:
        try:
            _build.build_library(pkg / f"{name}.c", blas if use_blas else "no")
        except _build.BuildError as exc:
            raise ToolError(str(exc)) from None
    return written


def _package_init(model, dtype, shape, blas, second_order=False):
    """The package's __init__.py: the model's constants, its Package over the library, init_params and training."""
    layout, n_params = _layout(model)
    init, needs_rng = init_lines(model)
    return render(
        "c/package.py.j2", version=__version__, source=model.source, name=model.name, summary=model.describe(),
        dtype="np.float64" if dtype == "float64" else "np.float32", shape=shape, blas=blas,
        param_names=[p.name for p in model.params], shapes=[(p.name, p.shape) for p in model.params],
        trainable=[p.name for p in model.params if p.trainable], layout=layout, n_params=n_params,
        n_inputs=model.n_inputs, n_outputs=model.n_outputs, input_names=python_tuple(model.inputs),
        output_names=python_tuple(model.outputs), seed=getattr(model, "seed", 0), init=init, needs_rng=needs_rng,
        learning_rate=repr(float(model.train.learning_rate)), uses_target=model.loss.uses_target,
        train=train_context(model), gemm_hook=shape != "unrolled", pack_limit=PACK_LIMIT,
        second=second_order, hessian_limit=HESSIAN_LIMIT, convex=model.loss.convex,
        input_shape=getattr(model, "input_shape", None), output_shape=getattr(model, "output_shape", None),
    )


def _copied(module):
    """The source of one of symgrad's modules that every C package carries, under a line saying where it is from."""
    where = "/".join(module.__name__.split("."))
    return (f"# Copied by symgrad {__version__} from {where}.py, the same in every generated C package. Do not edit.\n"
            + Path(module.__file__).read_text(encoding="utf-8"))


def _main_source(model, layout, dtype):
    """A main() that runs the worked sample forward and backward and prints the numbers (and times a loop)."""
    values = model.init_params()
    flat = np.concatenate([np.asarray(values[p.name], dtype=np.float64).reshape(-1) for p in model.params])
    sample = model.sample
    if sample is None:
        x = np.zeros(model.n_inputs)
        t = np.zeros(model.n_outputs)
    else:
        x = np.ravel(sample.x)
        t = np.ravel(sample.t) if sample.t is not None else np.zeros(model.n_outputs)
    return render(
        "c/main.c.j2", version=__version__, source=model.source, name=model.name,
        ctype="double" if dtype == "float64" else "float", fmt=".17g" if dtype == "float64" else ".9g",
        params=_c_array(flat), x=_c_array(x), t=_c_array(t), layout=layout, n_params=len(flat),
        n_inputs=model.n_inputs, n_outputs=model.n_outputs, prefix=model.name.upper(),
        output_names=list(model.outputs),
        scalar_names=_c_strings([s if p.trainable else "" for p in model.params for s in p.scalar_names])
        if len(flat) <= 1000 else "",
    )


def _c_strings(names):
    quoted = [f'"{c_string(n)}"' for n in names]
    return ",\n        ".join(", ".join(quoted[i:i + 8]) for i in range(0, len(quoted), 8))


def _c_array(values):
    items = [repr(float(v)) for v in values]
    lines, line = [], []
    for item in items:
        line.append(item)
        if len(line) == 8:
            lines.append(", ".join(line))
            line = []
    if line:
        lines.append(", ".join(line))
    return ",\n    ".join(lines)

