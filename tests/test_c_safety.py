"""Generated C packages are safe to call: IEEE NaN/inf parity with the NumPy module."""

import shutil

import numpy as np
import pytest

import symgrad
from conftest import ROOT
from symgrad.api import generate, import_generated
from symgrad.build import DEFAULT_CFLAGS, PORTABLE_CFLAGS

CC = shutil.which("gcc") or shutil.which("cc")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler (install gcc)")
EXAMPLES = sorted(p.stem for p in (ROOT / "examples").glob("*.toml"))


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SYMGRAD_CACHE", str(tmp_path_factory.getbasetemp() / "symgrad-cache"))


def both(name, out):
    """The NumPy module and the C package of examples/<name>.toml, generated into out."""
    model = symgrad.load(ROOT / "examples" / f"{name}.toml")
    generate(model, "numpy", out)
    generate(model, "c", out)
    return model, import_generated(model.name, out), import_generated(f"{model.name}_c", out)


def data(model, batch, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(batch, model.n_inputs))
    t = rng.dirichlet(np.ones(model.n_outputs), size=batch) if model.n_outputs > 1 else rng.uniform(size=(batch, 1))
    return x, t


def test_build_flags_do_not_assume_finite_math():
    for flags in (DEFAULT_CFLAGS, PORTABLE_CFLAGS):
        for bad in ("-ffast-math", "-Ofast", "-ffinite-math-only", "-fno-honor-nans", "-fno-honor-infinities"):
            assert bad not in flags


def _same_pattern(got, want, what):
    """The same NaN and inf positions (signs included) and equal finite values."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{what}: NaN positions")
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want), err_msg=f"{what}: +inf positions")
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want), err_msg=f"{what}: -inf positions")
    fin = np.isfinite(want)
    scale = max(1e-300, np.abs(want[fin]).max()) if fin.any() else 1.0
    np.testing.assert_allclose(got[fin], want[fin], rtol=1e-12, atol=1e-12 * scale, err_msg=what)


@pytest.mark.parametrize("name", EXAMPLES)
def test_nan_and_inf_inputs_give_what_the_numpy_module_gives(tmp_path, name):
    model, npm, cm = both(name, tmp_path)
    p = npm.init_params()
    nonfinite = 0
    for bad in (np.nan, np.inf, -np.inf, 1e308, -1e308):
        for batch in (1, 5, 64):  # batch 1: straight-line code; small batches: NumPy's per-sample path; 64: loops
            x, t = data(model, batch, batch)
            for row, col in {(0, 0), (batch - 1, model.n_inputs - 1)}:
                xb = x.copy()
                xb[row, col] = bad
                what = f"{name} x[{row},{col}]={bad} batch {batch}"
                with np.errstate(all="ignore"):
                    yn = npm.forward(p, xb)
                    En, gn = npm.loss_and_gradients(p, xb, t)
                    Ln = npm.loss(p, xb, t)
                _same_pattern(cm.forward(p, xb), yn, f"{what} forward")
                Ec, gc = cm.loss_and_gradients(p, xb, t)
                _same_pattern(Ec, En, f"{what} E")
                _same_pattern(cm.loss(p, xb, t), Ln, f"{what} loss")
                for k in gn:
                    _same_pattern(gc[k], gn[k], f"{what} d/d{k}")
                nonfinite += int(not np.isfinite(En)) + sum(int(not np.isfinite(g).all()) for g in gn.values())
    assert nonfinite > 0  # the inputs did reach the results
