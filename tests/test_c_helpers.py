"""The static C helpers (templates/c/symgrad_math.h, symgrad_gemm.h) compiled on their own with a tiny main:
the math against libm at many points, the GEMM kernels against NumPy; and the section loader."""

import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from symgrad.backends.c import helpers

STATIC = Path(__file__).resolve().parent.parent / "templates" / "c"
COMPILERS = [cc for cc in ("gcc", "clang") if shutil.which(cc)]
pytestmark = pytest.mark.skipif(not COMPILERS, reason="no C compiler (install gcc)")

MAIN = r"""
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef double real;
typedef void (*gemm64)(int, int, int, long long, long long, long long, real, const real *, long long, const real *,
    long long, real, real *, long long);
static gemm64 symgrad_gemm = 0;
#define SYMGRAD_BLAS_MIN_WORK 4096

#include "symgrad_math.h"
#include "symgrad_gemm.h"

/* stdin: "<f> n x..." applies symgrad_<f> to n values; "gemm_<kind> m n k A... B..." prints C. Hex floats. */
static double apply(const char *f, double x)
{
    if (!strcmp(f, "exp")) return symgrad_exp(x);
    if (!strcmp(f, "tanh")) return symgrad_tanh(x);
    if (!strcmp(f, "sigmoid")) return symgrad_sigmoid(x);
    if (!strcmp(f, "softplus")) return symgrad_softplus(x);
    if (!strcmp(f, "sigmoid1")) return symgrad_sigmoid1(x);
    if (!strcmp(f, "softplus1")) return symgrad_softplus1(x);
    if (!strcmp(f, "expf")) return symgrad_expf((float)x);
    if (!strcmp(f, "tanhf")) return symgrad_tanhf((float)x);
    if (!strcmp(f, "sigmoidf")) return symgrad_sigmoidf((float)x);
    if (!strcmp(f, "softplusf")) return symgrad_softplusf((float)x);
    if (!strcmp(f, "sigmoid1f")) return symgrad_sigmoid1f((float)x);
    if (!strcmp(f, "softplus1f")) return symgrad_softplus1f((float)x);
    exit(2);
}

static double *read_values(long n)
{
    double *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    for (long i = 0; i < n; ++i) {
        if (scanf("%la", &v[i]) != 1) exit(3);
    }
    return v;
}

int main(void)
{
    char f[32];
    while (scanf("%31s", f) == 1) {
        if (!strncmp(f, "gemm_", 5)) {
            int m, n, k;
            if (scanf("%d %d %d", &m, &n, &k) != 3) return 3;
            double *A = read_values((long)m * k), *B = read_values((long)n * k), *C = read_values((long)m * n);
            double *T = read_values((long)n * k);
            if (!strcmp(f, "gemm_nn")) symgrad_gemm_nn(m, n, k, A, B, C);
            else if (!strcmp(f, "gemm_nt")) symgrad_gemm_nt(m, n, k, A, B, C, T);
            else symgrad_gemm_tn(m, n, k, A, B, C);
            for (long i = 0; i < (long)m * n; ++i) printf("%a\n", C[i]);
            free(A); free(B); free(C); free(T);
        } else {
            long n;
            if (scanf("%ld", &n) != 1) return 3;
            double *x = read_values(n);
            for (long i = 0; i < n; ++i) printf("%a\n", apply(f, x[i]));
            free(x);
        }
    }
    return 0;
}
"""


@pytest.fixture(scope="module", params=COMPILERS)
def run(request, tmp_path_factory):
    """run(text) -> the floats the helpers' test main prints for the requests in text (built by one compiler)."""
    d = tmp_path_factory.mktemp(request.param)
    (d / "main.c").write_text(MAIN)
    exe = d / "main"
    res = subprocess.run([request.param, "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", "-I", str(STATIC),
                          str(d / "main.c"), "-o", str(exe), "-lm"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr

    def _run(text):
        out = subprocess.run([str(exe)], input=text, capture_output=True, text=True, check=True).stdout
        return np.array([float.fromhex(v) for v in out.split()])

    return _run


def apply(run, f, x):
    return run(f"{f} {len(x)} " + " ".join(float(v).hex() for v in x))


def libm(f, x):
    """The function by Python's math module (libm), stable at both ends."""
    if f == "exp":
        return math.exp(x) if x < 709 else math.inf
    if f == "tanh":
        return math.tanh(x)
    if f == "sigmoid":
        return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


POINTS = np.concatenate([np.linspace(-30, 30, 2001), np.random.default_rng(0).uniform(-700, 700, 2000),
                         np.random.default_rng(1).uniform(-1e-3, 1e-3, 500), [0.0, -0.0, 1e-300, -745.0, 708.0]])


@pytest.mark.parametrize("f, ulp", [("exp", 2), ("tanh", 5), ("sigmoid", 4), ("softplus", 4), ("sigmoid1", 4),
                                    ("softplus1", 4)])
def test_math_helpers_agree_with_libm(run, f, ulp):
    got = apply(run, f, POINTS)
    want = np.array([libm(f.rstrip("1"), float(v)) for v in POINTS])
    finite = np.isfinite(want)
    assert np.array_equal(got[~finite], want[~finite])
    assert np.all(np.abs(got[finite] - want[finite]) <= ulp * np.spacing(np.abs(want[finite])))


@pytest.mark.parametrize("f", ["exp", "tanh", "sigmoid", "softplus", "sigmoid1", "softplus1"])
def test_float_helpers_round_the_double_result_once(run, f):
    x = np.linspace(-20, 20, 401).astype(np.float32).astype(np.float64)
    np.testing.assert_array_equal(apply(run, f + "f", x), apply(run, f, x).astype(np.float32))


@pytest.mark.parametrize("m, n, k", [(1, 1, 1), (3, 5, 2), (4, 8, 8), (7, 3, 9), (9, 16, 16), (33, 10, 40)])
def test_gemm_kernels_agree_with_numpy(run, m, n, k):
    rng = np.random.default_rng(m * 100 + n * 10 + k)
    A, Bt, Bn = rng.normal(size=(m, k)), rng.normal(size=(n, k)), rng.normal(size=(k, n))
    scratch = " ".join("0x0p+0" for _ in range(m * n + n * k))

    def call(kind, a, b):
        return run(f"gemm_{kind} {m} {n} {k} " + " ".join(v.hex() for v in np.concatenate([a.ravel(), b.ravel()]))
                   + " " + scratch).reshape(m, n)

    np.testing.assert_allclose(call("nn", A, Bn), A @ Bn, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(call("nt", A, Bt), A @ Bt.T, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(call("tn", A.T.copy(), Bn), A @ Bn, rtol=1e-13, atol=1e-13)


def test_sections_come_after_the_helpers_they_need():
    math_, gemm, conv, rnn = helpers.select({"symgrad_sigmoidf", "symgrad_gemm_nt"})
    assert list(math_) == ["symgrad_pow2", "symgrad_expm1r", "symgrad_exp", "symgrad_sigmoid", "symgrad_sigmoidf"]
    assert list(gemm) == ["symgrad_gemm_nn", "symgrad_gemm_nt"]
    assert conv == rnn == {}
    assert math_["symgrad_sigmoidf"].startswith("static inline float symgrad_sigmoidf(float x)")


def test_an_unknown_helper_is_an_error():
    with pytest.raises(KeyError, match="symgrad_cosh"):
        helpers.select({"symgrad_cosh"})
