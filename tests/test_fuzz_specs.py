"""Random and mutated specs: every run either succeeds or ends in a clean SpecError, never a traceback."""

import tempfile
import textwrap
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import symgrad
from symgrad.cli import main
from symgrad.errors import SpecError
from symgrad.spec import from_dict

BASE = textwrap.dedent('''
    name = "fz"
    inputs = ["a", "b"]

    [[layers]]
    name = "h"
    units = 2
    activation = "tanh"
    weight = [[0.1, 0.2], [0.3, 0.4]]
    bias_value = [0.0, 0.5]

    [[layers]]
    name = "o"
    units = 1
    activation = "sigmoid"
    bias = "shared"

    [loss]
    kind = "bce"

    [sample]
    x = [0.5, -0.5]
    t = [1.0]
''')

values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 5) | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(["sigmoid", "x*exp(x)", "__import__('os')", "unit", "shared", "none", "mse", "half_sse", "h", "x**99"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["name", "units", "activation", "kind", "x", "t", "weight", "bias", "layers", "loss", "inputs"]),
        inner, max_size=4),
    max_leaves=12,
)


def check(run):
    try:
        run()
    except SpecError as exc:
        assert str(exc)  # a message, naming what is wrong


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["name", "inputs", "outputs", "layers", "loss", "sample", "expression", "init",
                                        "expect", "train", "bogus"]), values, max_size=6))
def test_random_tables_load_or_fail_cleanly(data):
    check(lambda: from_dict(data))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_spec_text_loads_or_fails_cleanly(data):
    text = BASE
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(text)))
        j = data.draw(st.integers(i, min(len(text), i + 8)))
        text = text[:i] + data.draw(st.sampled_from(["", "0", "-", "\"", "[", "]", "=", "\n", "x", "1e999", "nan", ","])) + text[j:]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fz.toml"
        path.write_text(text)

        def run():
            model = symgrad.load(path)
            symgrad.generate(model, "numpy", Path(tmp) / "gen")

        check(run)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["units = 2", "kind = \"bce\"", "activation = \"tanh\"", "t = [1.0]", "bias = \"shared\""]),
       st.sampled_from(["units = -1", "kind = 3", "activation = \"x/0\"", "t = [1.0, 2.0]", "bias = 7", "", "[[layers]]"]))
def test_cli_on_mutated_specs_exits_0_or_2(old, new):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fz.toml"
        path.write_text(BASE.replace(old, new, 1))
        out = Path(tmp) / "gen"
        code = main(["generate", str(path), "-o", str(out)])
        assert code in (0, 2)
        if code == 2:
            assert not (out / "fz.py").exists()
