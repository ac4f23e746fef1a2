"""Sections every report has: the checks of [[expect]], the training run, the stability notes; and the report itself."""

import math

import numpy as np

from symgrad.report.blocks import Partial, Report, Section, Table, Text, sym
from symgrad.report.numbers import fmt, rel


def _status(e, got):
    """'confirmed' when got is the stated value within its tolerances, else 'WRONG'."""
    ok = math.isclose(got, e.value, rel_tol=e.rel_tol, abs_tol=e.abs_tol)
    return "confirmed" if ok else "WRONG"


def checks_section(model, lookup):
    """Each [[expect]] of the spec beside the value lookup(expect) computes, and the verdict."""
    sec = Section("Checks of the values the spec states")
    if not model.expects:
        sec.blocks.append(Text(["The spec states no expected values."]))
        return sec
    rows = []
    for e in model.expects:
        label = "loss E" if e.what == "loss" else f"{e.what} {e.name}"
        got = lookup(e)
        if got is None:
            rows.append([label, e.source or "", e.value, "not computed", "unknown name"])
            continue
        st = _status(e, got)
        rows.append([label, e.source or "", e.value, got, st if st == "confirmed" else f"WRONG: correct value {fmt(got)}"])
    sec.blocks.append(Text(["Each stated value is compared with the computed one (within the stated tolerance)."]))
    sec.blocks.append(Table(["claim", "source", "stated", "computed", "verdict"], rows))
    for e, r in zip(model.expects, rows):
        if str(r[4]).startswith("WRONG"):
            sec.blocks.append(Text([f"The stated {r[0]} = ", e.value, " is WRONG; the correct value is ", r[3], "."]))
    return sec


def make_report(model, secs, rewrites, values, digits):
    """The report: its sections, then the stability rewrites applied by the derivation and the activations."""
    acts = [n.activation for n in model.nodes] if model.kind == "graph" else \
        [getattr(lay, "activation", lay) for lay in getattr(model, "layers", ())]
    notes = list(rewrites) + [n for act in acts if act is not None for n in act.notes]
    sec = _notes_section(notes)
    return Report(f"Backpropagation step by step: {model.name}", secs + ([sec] if sec else []), values, digits)


def _notes_section(notes):
    """The stability rewrites as a section, or None when there are none."""
    if not notes:
        return None
    return Section("Stability rewrites", [Text(["The derivation rewrote these expressions into numerically stable forms:"])]
                   + [Text(["- " + n]) for n in notes])


def params_training_section(n, P, names, loss, gradients, lr):
    """training_section over the trainable parameters ``names`` of the dict P, with loss(P) and gradients(P)."""
    def unflat(w):
        out, i = dict(P), 0
        for name in names:
            out[name] = w[i:i + P[name].size].reshape(P[name].shape)
            i += P[name].size
        return out

    return training_section(n, lambda w: loss(unflat(w)),
                            lambda w: np.concatenate([gradients(unflat(w))[name].reshape(-1) for name in names]),
                            np.concatenate([P[name].reshape(-1) for name in names]), lr)


def training_section(n, loss_at, grad_at, w, lr):
    """The loss before, after one and after n plain gradient steps from the flat parameters w."""
    sec = Section("Training")
    sec.blocks.append(Text([f"Plain gradient descent (w ← w − η ∂E/∂w, η = {lr:g}) on the same sample."]))
    rows = [["0", loss_at(w)]]
    for k in range(1, n + 1):
        w = w - lr * grad_at(w)
        if k == 1 or k == n:
            rows.append([str(k), loss_at(w)])
    sec.blocks.append(Table(["steps", "loss E"], rows))
    return sec


def scalar_param_value(e, owner, P, grads, lr):
    """An [[expect]] gradient or updated value of the scalar parameter e.name, or None: dE/dw, or w - lr dE/dw."""
    if e.name not in owner or e.what not in ("gradient", "updated"):
        return None
    pname, idx = owner[e.name]
    g = float(grads[pname].reshape(-1)[idx])
    return g if e.what == "gradient" else float(P[pname].reshape(-1)[idx]) - lr * g


def fd_summary_section(model, picked, P, grads, loss, h=1e-6):
    """The picked gradients beside central differences (E(w + h) - E(w - h)) / 2h of ``loss`` (a function of a parameter
    dict), then every trainable parameter's gradient norm."""
    owner = model.scalar_owner()

    def moved(pname, idx, v):
        Q = dict(P)
        Q[pname] = P[pname].copy()
        Q[pname].reshape(-1)[idx] = v
        return loss(Q)

    rows = []
    for name in picked:
        pname, idx = owner[name]
        v = float(P[pname].reshape(-1)[idx])
        g = float(grads[pname].reshape(-1)[idx])
        fd = (moved(pname, idx, v + h) - moved(pname, idx, v - h)) / (2 * h)
        rows.append([Partial(sym("E"), sym(name)), g, fd, rel(g, fd)])
    sec = Section("Summary and finite-difference check")
    sec.blocks.append(Table(["gradient", "value", "finite difference", "relative error"], rows))
    sec.blocks.append(Table(["parameter", "gradient norm"],
                            [[p.name, float(np.linalg.norm(grads[p.name]))] for p in model.trainable_params]))
    return sec
