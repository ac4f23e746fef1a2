"""One test per printer override: exact strings."""

import sympy as sp

from symgrad.backends.numpy.printer import numpy_code
from symgrad.ops.functions import relu, sigmoid, softplus, step

x, y = sp.symbols("x y", real=True)


def test_module_alias_is_np():
    assert numpy_code(sp.exp(x)) == "np.exp(x)"


def test_symbols_can_be_renamed():
    assert numpy_code(x * y, {"x": "a2", "y": "t"}) == "a2*t"


def test_rationals_print_as_floats():
    assert numpy_code(sp.Rational(1, 4) * x) == "0.25*x"


def test_reciprocal_prints_as_division():
    assert numpy_code(1 / (1 + x)) == "1/(x + 1)"


def test_sigmoid_uses_the_stable_helper():
    assert numpy_code(sigmoid(x)) == "_sigmoid(x)"


def test_softplus_is_logaddexp():
    assert numpy_code(softplus(-x)) == "np.logaddexp(0.0, -x)"


def test_relu_and_step():
    assert numpy_code(relu(x)) == "np.maximum(x, 0.0)"
    assert numpy_code(step(x)) == "np.heaviside(x, 0.0)"


def test_piecewise_is_nested_where():
    pw = sp.Piecewise((x, x > 0), (0.01 * x, True))
    assert numpy_code(pw) == "np.where((x > 0), x, 0.01*x)"


def test_erf_uses_the_helper():
    assert numpy_code(sp.erf(x)) == "_erf(x)"


def test_piecewise_default_branch_with_exp_is_clamped():
    pw = sp.Piecewise((x, x > 0), (sp.exp(x) - 1, True))
    assert numpy_code(pw) == "np.where((x > 0), x, np.exp(np.minimum(x, 0.0)) - 1)"


def test_negative_constant_quotient_keeps_its_denominator_bracketed():
    """-e/pi**2 is a number whose printed denominator is a product: math printed -math.e/math.pi*math.pi (= -e)."""
    import math

    from symgrad.backends.numpy.printer import math_code

    code = math_code(-sp.E / sp.pi**2)
    assert code == "-math.e/(math.pi*math.pi)"
    assert abs(eval(code, {"math": math}) + math.e / math.pi**2) < 1e-16
