"""The C printer: one exact string per override of C99CodePrinter."""

import sympy as sp

from symgrad.backends.c.printer import CPrinter, c_code
from symgrad.ops.functions import relu, sigmoid, softplus, step

x, y = sp.symbols("x y")


def test_sigmoid_and_softplus_call_the_stable_helpers():
    assert c_code(sigmoid(x)) == "symgrad_sigmoid(x)"
    assert c_code(softplus(x)) == "symgrad_softplus(x)"
    assert c_code(sigmoid(x), "float32") == "symgrad_sigmoidf(x)"


def test_the_printer_records_the_helpers_it_printed():
    pr = CPrinter("float32")
    pr.doprint(sigmoid(x) + sp.tanh(y) + sp.exp(x) + relu(y))
    assert pr.helpers == {"symgrad_sigmoidf", "symgrad_tanhf", "symgrad_expf"}
    scalar = CPrinter(vector_math=False)
    scalar.doprint(softplus(x) + sp.exp(x))  # libm's exp: no helper
    assert scalar.helpers == {"symgrad_softplus1"}
    renamed = scalar.renamed({"x": "X[0]"})
    assert renamed.doprint(sigmoid(x)) == "symgrad_sigmoid1(X[0])" and scalar.helpers == {"symgrad_softplus1", "symgrad_sigmoid1"}


def test_relu_and_step():
    assert c_code(relu(x)) == "((x) <= 0 ? 0 : (x))"  # NaN fails the test and passes through, as in np.maximum
    assert c_code(step(x)) == "((x) > 0 ? 1.0 : 0.0)"
    assert c_code(step(x), "float32") == "((x) > 0 ? 1.0F : 0.0F)"


def test_squares_and_cubes_are_products():
    assert c_code(x**2) == "x*x"
    assert c_code((x + y)**3) == "(x + y)*(x + y)*(x + y)"


def test_constants_are_literals_not_macros():
    assert c_code(sp.pi * x) == "3.1415926535897932*x"
    assert c_code(1 / sp.sqrt(2)) == "0.70710678118654752"


def test_piecewise_is_a_ternary():
    assert c_code(sp.Piecewise((x, x > 0), (0.01 * x, True))) == "((x > 0) ? x : 0.01*x)"


def test_float32_suffixes_math_calls_and_literals():
    assert c_code(sp.exp(x) + sp.Rational(1, 2), "float32") == "symgrad_expf(x) + 0.5F"
    assert c_code(sp.tanh(x), "float32") == "symgrad_tanhf(x)"
    assert c_code(sp.log(x) + sp.sqrt(x), "float32") == "sqrtf(x) + logf(x)"


def test_straight_line_code_calls_libm_and_the_one_at_a_time_helpers():
    assert c_code(sp.exp(x) + sp.tanh(x), "float32", vector_math=False) == "expf(x) + tanhf(x)"
    assert c_code(sp.exp(x), vector_math=False) == "exp(x)"
    assert c_code(sigmoid(x), "float32", vector_math=False) == "symgrad_sigmoid1f(x)"
    assert c_code(softplus(x), vector_math=False) == "symgrad_softplus1(x)"


def test_names_rename_symbols():
    assert c_code(x + y, names={"x": "A1[_q]"}) == "A1[_q] + y"


def test_a_sum_of_numbers_is_one_literal_inside_a_product():
    """h*(1.9 + pi): the constant sum prints as one literal, so the product keeps its meaning (it read h*1.9 + pi)."""
    assert c_code(x * (sp.Float(1.9) + sp.pi)) == "x*5.0415926535897932"
    assert c_code(sp.Float(1.9) + sp.pi, names={}) == "5.0415926535897932"
