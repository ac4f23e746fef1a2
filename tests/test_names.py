"""Names never change the numbers: every name slot of the worked examples renamed to every identifier
the derivation and the generated code use (and names Python and C reserve) gives the same loss and
gradients in NumPy and C.

The default run gives each slot every 5th candidate (the slots of a model together cover them all) in
NumPy and every 10th of those in C (compiling is slower); SYMGRAD_NAME_TESTS=all gives every slot every
candidate on both targets.
"""

import keyword
import os
import re
import tomllib

import numpy as np
import pytest

import symgrad
from conftest import ROOT
from symgrad.spec import from_dict
from symgrad.symbols import C_RESERVED, INTERNAL

ALL = os.environ.get("SYMGRAD_NAME_TESTS") == "all"
MAZUR = tomllib.loads((ROOT / "examples" / "mazur.toml").read_text())
X, T = np.array([[0.05, 0.10], [0.2, -0.3], [1.0, 0.5]]), np.array([[0.01, 0.99], [0.5, 0.5], [0.2, 0.1]])
EXPR = {"name": "ex", "inputs": ["u", "v"], "expression": {"outputs": {"f": "w*u/(1 + c**2) + sigmoid(c*v)", "g": "w*v"},
                                                            "params": {"w": 0.7, "c": -0.4}}, "loss": "mse"}
XE, TE = np.array([[0.3, -1.2], [2.0, 0.5]]), np.array([[0.1, 0.2], [0.0, -0.5]])


def _identifiers(text):
    return set(re.findall(r"\b[A-Za-z][A-Za-z0-9_]*\b", text))


def _candidates(spec, tmp_path):
    """Every identifier in the generated NumPy and C code of the spec, the derived names and reserved ones."""
    model = from_dict(spec)
    out = tmp_path / "names0"
    symgrad.generate(model, "numpy", out)
    symgrad.generate(model, "c", out)
    text = (out / f"{model.name}.py").read_text() + (out / f"{model.name}_c" / f"{model.name}.c").read_text()
    text += (out / f"{model.name}_c" / f"{model.name}.h").read_text()
    d = symgrad.derive(model)
    derived = {s.sym.name for s in d.scalar.program.steps} | {a.sym.name for a in d.scalar.adjoints}
    extra = {"NAN", "INFINITY", "HUGE_VAL", "NULL", "size_t", "x_", "a0", "t", "y", "E", "DTYPE", "double", "int",
             "float", "sum", "len", "np", "math", "class", "lambda", "real", "main", f"{model.name.upper()}_N_INPUTS",
             f"{model.name}_forward", "symgrad_exp", "int64_t", "e1", "z1", "W1", "gW1", "d2", "ones", "logy"}
    names = _identifiers(text) | set(INTERNAL) | set(C_RESERVED) | derived | extra
    return sorted(n for n in names if re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,62}", n))


def _rename_mazur(slot, name):
    spec = tomllib.loads((ROOT / "examples" / "mazur.toml").read_text())
    hidden, output = spec["layers"]
    if slot == "input":
        spec["inputs"][0] = name
    elif slot == "hidden weight":
        hidden["weight_names"][0][0] = name
    elif slot == "output weight":
        output["weight_names"][0][0] = name
    elif slot == "neuron":
        hidden["neurons"][0] = name
    elif slot == "output":
        output["neurons"][1] = name
    elif slot == "layer":
        hidden["name"] = name
    elif slot == "bias":
        output["bias_names"][0] = name
        output["freeze"] = []
    return spec


def _rename_expr(slot, name):
    spec = {**EXPR, "expression": {k: dict(v) for k, v in EXPR["expression"].items()}}
    ex = spec["expression"]
    if slot == "input":
        spec["inputs"] = [name, "v"]
        ex["outputs"] = {k: re.sub(r"\bu\b", name, v) for k, v in ex["outputs"].items()}
    elif slot == "param":
        ex["params"] = {name: 0.7, "c": -0.4}
        ex["outputs"] = {k: re.sub(r"\bw\b", name, v) for k, v in ex["outputs"].items()}
    elif slot == "output":
        ex["outputs"] = {name: ex["outputs"]["f"], "g": ex["outputs"]["g"]}
    return spec


def _numbers(mod, x, t):
    E, g = mod.loss_and_gradients(mod.init_params(), x, t)
    E1, g1 = mod.loss_and_gradients(mod.init_params(), x[:1], t[:1])  # the per-sample paths too
    return [E, E1] + [np.asarray(g[k]) for k in mod.TRAINABLE] + [np.asarray(g1[k]) for k in mod.TRAINABLE]


def _check(spec, x, t, tmp_path, targets, ref):
    model = from_dict(spec)
    for target in targets:
        out = tmp_path / f"{target}"
        symgrad.generate(model, target, out)
        mod = symgrad.import_generated(model.name + ("_c" if target == "c" else ""), out)
        got = _numbers(mod, x, t)
        for a, b in zip(got, ref):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


CASES = [("mazur", s) for s in ("input", "hidden weight", "output weight", "neuron", "output", "layer", "bias")] + \
        [("expression", s) for s in ("input", "param", "output")]


@pytest.mark.parametrize("kind,slot", CASES)
def test_renaming_a_slot_to_any_generated_or_derived_name_changes_no_number(tmp_path, kind, slot):
    base, rename, x, t = (MAZUR, _rename_mazur, X, T) if kind == "mazur" else (EXPR, _rename_expr, XE, TE)
    ref_model = from_dict(rename(slot, "q") if kind == "mazur" else base)
    out = tmp_path / "ref"
    symgrad.generate(ref_model, "numpy", out)
    ref = _numbers(symgrad.import_generated(ref_model.name, out), x, t)
    names = _candidates(base, tmp_path)
    assert len(names) > 100
    offset = CASES.index((kind, slot))
    if not ALL:  # each slot takes every 5th candidate, the slots of a model together take them all
        names = names[offset % 5::5]
    if kind == "expression":  # names written into expression text must parse as Python names there
        names = [n for n in names if not keyword.iskeyword(n) and n not in ("u", "v", "w", "c", "f", "g")]
    for k, name in enumerate(names):
        spec = rename(slot, name)
        try:
            from_dict(spec)
        except symgrad.SpecError as exc:  # only a clash with another slot's name may be refused
            assert "used twice" in str(exc) or "also an input" in str(exc) or "both an input" in str(exc), (name, exc)
            continue
        targets = ["numpy", "c"] if ALL or (k + offset) % 10 == 0 else ["numpy"]
        try:
            _check(spec, x, t, tmp_path / f"n{k}", targets, ref)
        except AssertionError as exc:
            raise AssertionError(f"{kind} {slot} renamed to {name!r} changes the numbers") from exc


def test_names_that_differ_only_in_case_get_distinct_header_macros(tmp_path):
    spec = {"name": "cf", "inputs": 2, "loss": "mse",
            "layers": [{"name": "hid", "units": 2}, {"name": "HID", "units": 2}, {"name": "HID_WEIGHT", "units": 1}]}
    model = from_dict(spec)
    symgrad.generate(model, "numpy", tmp_path)
    symgrad.generate(model, "c", tmp_path)
    header = (tmp_path / "cf_c" / "cf.h").read_text()
    macros = re.findall(r"#define (CF_OFFSET_\w+) ", header)
    assert len(macros) == len(set(macros)) == len(model.params)
    ref, mod = symgrad.import_generated("cf", tmp_path), symgrad.import_generated("cf_c", tmp_path)
    x, t = np.array([[0.3, -1.0], [2.0, 0.5]]), np.array([[0.1], [0.4]])
    for a, b in zip(_numbers(mod, x, t), _numbers(ref, x, t)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_default_neuron_names_cannot_be_misread():
    """Unit 1 of layer linear2 is linear2_1 (not linear21, which reads as unit 21 of linear); a plain name stays h1."""
    net = symgrad.Network("n", 2, [symgrad.Dense("h", 2), symgrad.Dense("linear2", 12), symgrad.Softmax("sm2")], "mse")
    assert net.layers[0].neurons == ["h1", "h2"]
    assert net.layers[1].neurons[:2] == ["linear2_1", "linear2_2"] and net.layers[1].neurons[-1] == "linear2_12"
    assert net.outputs[:2] == ["sm2_1", "sm2_2"]
