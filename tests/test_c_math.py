"""symgrad's own branch-free exp, tanh and sigmoid in C: ulp error against correctly rounded values (mpmath)."""

import ctypes
import shutil
import subprocess
from pathlib import Path

import mpmath
import numpy as np
import pytest

from symgrad.backends.c.build import DEFAULT_CFLAGS, PORTABLE_CFLAGS

STATIC = Path(__file__).resolve().parent.parent / "templates" / "c"

CC = shutil.which("gcc") or shutil.which("cc")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler (install gcc)")
FUNCTIONS = {"exp": mpmath.exp, "tanh": mpmath.tanh, "sigmoid": lambda x: 1 / (1 + mpmath.exp(-x)),
             "sigmoid_scalar": lambda x: 1 / (1 + mpmath.exp(-x))}  # the straight-line code's, over libm's exp
MAX_ULP = {"exp": 1, "tanh": 4, "sigmoid": 3, "sigmoid_scalar": 3}


@pytest.fixture(scope="module", params=[DEFAULT_CFLAGS, PORTABLE_CFLAGS], ids=["native", "portable"])
def lib(request, tmp_path_factory):
    """A library with apply_<f>(n, in, out) loops over each helper of templates/c/symgrad_math.h, built with the
    package's flags."""
    c_names = {"sigmoid_scalar": "sigmoid1"}  # the straight-line code's sigmoid
    loops = "\n".join(f"void apply_{f}(int n, const double *restrict in, double *restrict out)\n"
                      f"{{\n    for (int i = 0; i < n; ++i) {{\n        out[i] = symgrad_{c_names.get(f, f)}(in[i]);\n    }}\n}}"
                      for f in FUNCTIONS)
    d = tmp_path_factory.mktemp("cmath")
    (d / "m.c").write_text(f'#include <math.h>\n#include <stdint.h>\n#include <string.h>\n\n#include "symgrad_math.h"\n\n{loops}\n')
    res = subprocess.run([CC, "-std=c99", "-Wall", "-Wextra", "-Werror", *request.param.split(), "-fPIC", "-shared",
                          "-I", str(STATIC), str(d / "m.c"), "-o", str(d / "m.so"), "-lm"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return ctypes.CDLL(str(d / "m.so"))


def apply(lib, f, x):
    x = np.ascontiguousarray(x, dtype=np.float64)
    out = np.empty_like(x)
    getattr(lib, f"apply_{f}")(ctypes.c_int(x.size), x.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p))
    return out


def ulps(a, b):
    """Distance in units of the last place (both finite, same sign or zero)."""
    ia, ib = a.view(np.int64), b.view(np.int64)
    return np.abs(ia - ib)


def points(f):
    rng = np.random.default_rng(7)
    wide = {"exp": 1500, "tanh": 60}.get(f, 1500)
    return np.concatenate([rng.uniform(-wide / 2, wide / 2, 1500), rng.uniform(-1, 1, 1500),
                           rng.uniform(-1e-6, 1e-6, 300), np.linspace(-0.4, 0.4, 301)])


@pytest.mark.parametrize("f", sorted(FUNCTIONS))
def test_ulp_error_against_correctly_rounded_values(lib, f):
    x = points(f)
    got = apply(lib, f, x)
    with mpmath.workdps(40):
        want = np.array([float(FUNCTIONS[f](mpmath.mpf(float(v)))) for v in x])
    finite = np.isfinite(want)
    assert np.array_equal(np.isinf(got), np.isinf(want))
    assert ulps(got[finite], want[finite]).max() <= MAX_ULP[f]


def test_special_values(lib):
    inf, nan = np.inf, np.nan
    x = np.array([0.0, -0.0, 5e-324, 709.78, 709.79, -745.13, -745.14, inf, -inf, nan, 19.1, -19.1, 40.5, -1e300])
    e = apply(lib, "exp", x)
    np.testing.assert_array_equal(e[:10], [1, 1, 1, 1.7928227943945155e308, inf, 5e-324, 0, inf, 0, nan])
    t = apply(lib, "tanh", x)
    np.testing.assert_array_equal(t, np.tanh(x))
    assert np.signbit(t[1]) and not np.signbit(t[0])  # tanh(-0) = -0
    for f in ("sigmoid", "sigmoid_scalar"):
        s = apply(lib, f, x)
        np.testing.assert_array_equal(s[[7, 8, 13]], [1.0, 0.0, 0.0])
        assert np.isnan(s[9]) and s[2] == 0.5 and s[5] == 5e-324  # sigma(-745.13) = exp(-745.13), subnormal
