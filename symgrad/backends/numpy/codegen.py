"""The NumPy backend: print the forward and backward programs into an importable module.

Networks are printed from the layer program (:mod:`~symgrad.backends.numpy.network`), expression
models and the per-sample path of small networks from the neuron-level program
(:mod:`~symgrad.backends.numpy.scalar`); helper functions are those the printer recorded.
"""

import re

import numpy as np

from symgrad.backends.base import needs_second_order
from symgrad.backends.numpy import kernels
from symgrad.backends.numpy.graph import graph_bodies
from symgrad.backends.numpy.graph_second import graph_second
from symgrad.backends.numpy.helpers import ModulePrinter
from symgrad.backends.numpy.network import network_bodies
from symgrad.backends.numpy.scalar import expression_bodies, scalar_path
from symgrad.backends.numpy.second import network_second
from symgrad.backends.numpy.second_expression import expression_second
from symgrad.core.derive import Derivation, derive
from symgrad.core.explain import formula_lines
from symgrad.core.init import init_plan
from symgrad.render import python_tuple, render
from symgrad.sizes import HESSIAN_LIMIT
from symgrad.train.optim import train_context
from symgrad.version import __version__

TEMPLATE = "numpy/module.py.j2"
DTYPES = {"float64": "np.float64", "float32": "np.float32"}


def _array(v):
    """Python source for a float array literal (repr keeps every digit)."""
    return repr(np.asarray(v, dtype=np.float64).tolist())


def init_lines(model):
    """(the init_params dict entries as source lines, whether they draw from the seeded generator)."""
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


def numpy_module(model, dtype="float64", source=None, second_order=False):
    """Source text of the generated NumPy module for ``model`` (a model or its Derivation).

    ``second_order`` adds input_gradients, jacobian, hvp, gauss_newton_vp, hessian and hessian_blocks.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}")
    der = model if isinstance(model, Derivation) else derive(model)
    model = der.model
    pr = ModulePrinter()
    if model.kind == "network":
        bodies = network_bodies(der.layers, pr)
        bodies.update(derivation=der.layers, rewrites=der.layers.rewrites)
    elif model.kind == "graph":
        bodies = graph_bodies(der.graph, pr)
        bodies.update(derivation=der.graph, rewrites=der.graph.rewrites)
    else:
        bodies = expression_bodies(model, der.scalar, pr)
    bodies["scalar"] = scalar_path(model, der, pr)
    bodies["keeps"] = _kept(bodies["forward"], bodies["loss"] + bodies["backward"] + [bodies["y"]])
    init, needs_rng = init_lines(model)
    trainable = [p.name for p in model.params if p.trainable]
    needs = needs_second_order(model, second_order)
    bodies["second"] = _second(der, pr) if needs else None
    if needs and model.kind == "graph":
        bodies["kernels"] = bodies["second"].pop("kernels")
    helpers = pr.sources() + [kernels.source(k) for k in bodies.get("kernels", ())]
    return _render(model, dtype, source, bodies, init, needs_rng, trainable, helpers)


def _second(der, pr):
    """The template context of the second-order functions."""
    model = der.model
    extra = {}
    if model.kind == "network":
        bodies = network_second(der.second, pr)
        method = "hvp: Pearlmutter's R-operator over the layer program (forward-over-reverse), exact."
    elif model.kind == "graph":
        bodies, extra["kernels"] = graph_second(der.graph, pr)
        method = ("hvp: Pearlmutter's R-operator over the graph, each layer's R-forward and R-backward "
                  "(forward-over-reverse), exact.")
    else:
        bodies = expression_second(model, der.scalar, pr)
        method = "Second partials: SymPy's derivatives of the model's expressions, summed over the batch."
    reads_t = {name: any(re.search(r"\bt\b", line) for line in body) for name, body in bodies.items()}
    return {"bodies": bodies, "reads_t": reads_t, "method": method, "limit": HESSIAN_LIMIT, "convex": model.loss.convex,
            "n_trainable": sum(p.size for p in model.params if p.trainable), **extra}


def _kept(forward, later):
    """The names the forward lines assign that later code reads: what ``_forward`` returns."""
    assigned = []
    for line in forward:
        m = re.match(r"([A-Za-z_][\w, ]*?) = ", line)
        if m:
            assigned += [n.strip() for n in m.group(1).split(",") if n.strip() and n.strip() not in assigned]
    text = "\n".join(later)
    return [n for n in assigned if re.search(rf"\b{n}\b", text)]


def _unpack(keeps, lines):
    """``a, _, b = _forward(params, a0)``: the names the lines read, ``_`` for the others."""
    text = "\n".join(lines)
    used = [n if re.search(rf"\b{n}\b", text) else "_" for n in keeps]
    return f"{', '.join(used)}{',' if len(used) == 1 else ''} = _forward(params, a0)"


def _forward_result(keeps, y):
    """Lines of forward() after ``a0``: the output from what ``_forward`` returns."""
    if y in keeps:
        return [f"result = _forward(params, a0)[{keeps.index(y)}]"]
    return [_unpack(keeps, [y]), f"result = {y}"]


def _render(model, dtype, source, bodies, init, needs_rng, trainable, helpers):
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
        input_shape=getattr(model, "input_shape", None),
        output_shape=getattr(model, "output_shape", None),
        strided="_windows" in bodies.get("kernels", ()),
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
        keeps=bodies["keeps"],
        forward_result=_forward_result(bodies["keeps"], bodies["y"]),
        unpack_loss=_unpack(bodies["keeps"], bodies["loss"]),
        unpack_grad=_unpack(bodies["keeps"], bodies["loss"] + bodies["backward"]),
        learning_rate=repr(float(model.train.learning_rate)),
        uses_target=model.loss.uses_target,
        train=train_context(model),
        second=bodies["second"],
    )
