"""The symbolic side: derivative tables against sympy.diff, factored and expanded gradients."""

import numpy as np
import pytest
import sympy as sp

import symgrad
from conftest import ROOT
from symgrad.core.derivation import derive_layers
from symgrad.ops.activations import BUILTIN_NAMES, get_activation, net, out, x
from symgrad.ops.functions import to_elementary


@pytest.mark.parametrize("name", [n for n in BUILTIN_NAMES if n != "softmax"])
def test_derivative_written_in_out_equals_diff(name):
    act = get_activation(name)
    d = act.derivative_in_out()
    exact = to_elementary(sp.diff(act.expr, x).subs(x, net))
    rewritten = to_elementary(d.subs(out, act.at(net)))
    for v in (-2.3, -0.4, 0.7, 1.9):
        assert float(rewritten.subs(net, v)) == pytest.approx(float(exact.subs(net, v)), rel=1e-12, abs=1e-15)


def test_sigmoid_and_tanh_derivatives_reuse_the_forward_value():
    assert get_activation("sigmoid").derivative_in_out() == out * (1 - out)
    assert get_activation("tanh").derivative_in_out() == 1 - out**2


def test_custom_activation_gets_its_derivative_from_sympy():
    act = get_activation("x*tanh(log(1 + exp(x)))")
    assert act.notes == ("log(1 + exp(a)) = softplus(a)",)
    d = to_elementary(act.derivative())
    mish = x * sp.tanh(sp.log(1 + sp.exp(x)))
    assert float(d.subs(x, 0.3)) == pytest.approx(float(sp.diff(mish, x).subs(x, 0.3)), rel=1e-12)


def test_output_layer_deltas_are_fused_by_simplification():
    from symgrad.ops.losses import t, y  # the loss's own symbols (a user's Symbol("y") is another symbol)

    bce = symgrad.Network("b", 2, [symgrad.Dense("o", 2, activation="sigmoid")], symgrad.get_loss("bce"))
    assert sp.simplify(derive_layers(bce).delta_out - (y - t)) == 0
    ce = symgrad.Network("c", 2, [symgrad.Dense("o", 3, activation="softmax")], symgrad.get_loss("softmax_cross_entropy"))
    assert derive_layers(ce).delta_out == -t  # delta = h - y*sum(h) = y*sum(t) - t


def test_factored_and_expanded_gradients_agree_with_numbers():
    d = symgrad.derive(ROOT / "examples/mazur.toml")
    w1 = d.gradient("w1")
    expanded = d.gradient("w1", "expanded")
    # factored form is a sum over the two paths through o1 and o2
    assert len(sp.Add.make_args(sp.expand(w1))) >= 2
    values = {"i1": 0.05, "i2": 0.10, "target_o1": 0.01, "target_o2": 0.99, "b1": 0.35, "b2": 0.60,
              "w1": 0.15, "w2": 0.20, "w3": 0.25, "w4": 0.30, "w5": 0.40, "w6": 0.45, "w7": 0.50, "w8": 0.55}
    subs = {s: values[s.name] for s in expanded.free_symbols}
    assert float(to_elementary(expanded).subs(subs)) == pytest.approx(0.000438568, abs=5e-10)


def test_per_parameter_gradients_of_8_16_16_4_are_quick():
    import time

    layers = [symgrad.Dense("h1", 16, activation="tanh"), symgrad.Dense("h2", 16, activation="tanh"),
              symgrad.Dense("o", 4, activation="sigmoid")]
    model = symgrad.Network("n8", 8, layers, symgrad.get_loss("half_sse"))
    start = time.perf_counter()
    d = symgrad.derive(model)
    g = d.gradient("h1_w1_1")
    assert time.perf_counter() - start < 20
    assert g.free_symbols  # a real expression over the program's values


def test_expression_model_gradient_matches_hand_derivative():
    d = symgrad.derive(ROOT / "examples/sigmoid_neuron.toml")
    gw = to_elementary(d.gradient("w", "expanded"))
    w, b, xx = sp.symbols("w b x", real=True)
    s = 1 / (1 + sp.exp(-(w * xx + b)))
    hand = sp.diff(s, w)
    for vals in [(0.0, 0.0, 1.0), (0.3, -0.2, 2.0)]:
        sub = dict(zip((w, b, xx), vals))
        assert float(gw.subs(sub)) == pytest.approx(float(hand.subs(sub)), rel=1e-12)
    assert np.isclose(float(gw.subs({w: 0, b: 0, xx: 1})), 0.25)


def test_repr_of_a_derivation_and_a_model_is_one_short_line():
    d = symgrad.derive(ROOT / "examples" / "mazur.toml")
    assert repr(d) == ("<Derivation of 'mazur': 2-2-2 network (hidden: sigmoid, output: sigmoid), loss half_sse "
                       "(sum over the batch); gradients of w1, w2, w3, w4, w5, w6, w7, w8>")
    assert repr(d.model) == "<Network 'mazur': 2-2-2 network (hidden: sigmoid, output: sigmoid), loss half_sse (sum over the batch)>"
    big = repr(symgrad.derive(ROOT / "examples" / "mnist_mlp.toml"))
    assert "fc1.weight (128, 784)" in big and len(big) < 300
