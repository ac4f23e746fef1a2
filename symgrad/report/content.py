"""The content of a derivation report, built once as a list of sections of blocks (blocks.py).

Small models get the neuron-level report (scalar.py), large networks the layer-level one (layers.py),
graph networks either kind by their size (graph.py); layout.py prints them as LaTeX, Markdown or HTML.
"""

import copy

import numpy as np

from symgrad.errors import SpecError
from symgrad.report.blocks import Text
from symgrad.report.graph import graph_report
from symgrad.report.hessian import hessian_refusal
from symgrad.report.layers import LayerReport
from symgrad.report.recurrent import RecurrentReport, covers
from symgrad.report.scalar import ScalarReport
from symgrad.sizes import SMALL_LIMIT
from symgrad.spec import Sample


def build(model, params=None, digits=9, steps=0, values=None, hessian=False):
    """The report of ``model``: small models neuron by neuron, large networks layer by layer.

    ``hessian`` adds the second derivatives (small models only).
    """
    model, note = _with_sample(model)
    init = _param_values(model, values)
    n = sum(p.size for p in model.params)
    if covers(model):
        if hessian:
            raise SpecError(hessian_refusal(model), "--hessian")
        rep = RecurrentReport(model, init, digits).build()
    elif model.kind == "graph":
        rep = graph_report(model, init, params, digits, steps, hessian)
    elif model.kind == "expression" or n <= SMALL_LIMIT:
        rep = ScalarReport(model, init, params, digits, steps, hessian).build()
    else:
        if hessian:
            raise SpecError(hessian_refusal(model), "--hessian")
        free = [lay.name for lay in model.layers if getattr(lay, "is_layer", False)]
        if free:
            raise SpecError(f"the layer-level report (networks over {SMALL_LIMIT} parameters) covers dense layers; "
                            f"layer {free[0]!r} is a parameter-free layer (the neuron-level report and the generated "
                            "code cover it)", "layers")
        rep = LayerReport(model, init, params, digits, steps).build()
    if note:
        rep.sections[0].blocks.insert(0, Text([note]))
    return rep


def _with_sample(model):
    """The model with a sample to work through: a spec without [sample] gets the one seed 0 draws, and a note."""
    if model.sample is not None:
        return model, None
    model = copy.copy(model)
    model.sample = Sample(None, None, seed=0)
    model._check_sample()
    return model, ("The spec has no [sample]: this report works through the sample drawn from seed 0 "
                   "(x uniform in [0, 1), t one-hot), as [sample] seed = 0 would.")


def _param_values(model, given):
    """The model's initial parameters, with the arrays of ``given`` (a params file) put in, checked."""
    init = model.init_params()
    for name, v in (given or {}).items():
        p = next((q for q in model.params if q.name == name), None)
        if p is None:
            raise SpecError(f"unknown parameter {name!r} (parameters: {', '.join(model.param_names)})", "params-file")
        v = np.asarray(v, dtype=np.float64)
        if v.shape != tuple(p.shape) or not np.all(np.isfinite(v)):
            raise SpecError(f"{name} must be finite with shape {tuple(p.shape)}, got {v.shape}", "params-file")
        init[name] = v
    return init

