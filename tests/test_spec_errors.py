"""Bad specs: one clear message naming the file, key (and line) and problem; exit 2; no output."""

import subprocess
import sys
import textwrap

import pytest

import symgrad
from conftest import ROOT
from symgrad.errors import ExpressionError, SpecError
from symgrad.ops.parse import parse_expression

GOOD = textwrap.dedent('''
    name = "net"
    inputs = 2

    [[layers]]
    name = "hidden"
    units = 2
    activation = "sigmoid"

    [[layers]]
    name = "out"
    units = 1
    activation = "identity"

    [loss]
    kind = "half_sse"
''')


def spec(tmp_path, text):
    path = tmp_path / "model.toml"
    path.write_text(textwrap.dedent(text))
    return path


BAD = [
    # (replace, with, key in message, fragment of message)
    ('activation = "sigmoid"', 'activaton = "sigmoid"', "layers[0].activaton", "did you mean 'activation'"),
    ('units = 2', 'units = "two"', "layers[0].units", "expected an integer"),
    ('units = 2', 'units = 0', "layers[0].units", "positive integer"),
    ('name = "net"', 'name = "class"', "name", "keyword"),
    ('name = "hidden"', 'name = "out"', "layers[1].name", "used twice"),
    ('name = "hidden"', 'name = "2nd"', "layers[0].name", "not an identifier"),
    ('activation = "sigmoid"', 'activation = "sigmod"', "layers[0].activation", "unknown activation"),
    ('activation = "sigmoid"', 'activation = "softmax"', "layers[0].activation", "only allowed on the output layer"),
    ('activation = "sigmoid"', 'activation = "x*foo(x)"', "layers[0].activation", "call of 'foo' is not allowed"),
    ('activation = "sigmoid"', 'activation = "y + x"', "layers[0].activation", "unknown name 'y'"),
    ('activation = "sigmoid"', 'activation = "x**"', "layers[0].activation", "cannot parse"),
    ('activation = "sigmoid"', 'activation = "__import__(\'os\').system(\'touch PWNED\')"', "layers[0].activation",
     "not allowed"),
    ('activation = "sigmoid"', 'activation = "x.real"', "layers[0].activation", "Attribute is not allowed"),
    ('activation = "sigmoid"', 'activation = "x**10**10**10"', "layers[0].activation", "larger than"),
    ('activation = "sigmoid"', 'activation = "(lambda: x)()"', "layers[0].activation", "not allowed"),
    ('activation = "sigmoid"', 'activation = "sigmoid"\nweight = [[1.0, 2.0, 3.0]]', "layers[0].weight", "shape (2, 2)"),
    ('activation = "sigmoid"', 'activation = "sigmoid"\nweight = [[1.0, nan], [1.0, 2.0]]', "layers[0].weight", "finite"),
    ('activation = "sigmoid"', 'activation = "sigmoid"\nbias = "both"', "layers[0].bias", "choose one of"),
    ('kind = "half_sse"', 'kind = "softmax_cross_entropy"', "loss.kind", "needs a softmax output layer"),
    ('kind = "half_sse"', 'kind = "hinge"', "loss.kind", "unknown loss"),
    ('kind = "half_sse"', 'expression = "(t - y)**2 + z"', "loss.expression", "unknown name 'z'"),
    ('kind = "half_sse"', 'kind = "mse"\nreduction = "avg"', "loss.reduction", "reduction must be"),
    ('inputs = 2', 'inputs = 2\noutputs = ["a", "b"]', "outputs", "2 output names for 1 output units"),
    ('inputs = 2', 'inputs = ["a", "a"]', "inputs", "used twice"),
    ('inputs = 2', 'inputs = 2\n[sample]\nx = [1.0]\nt = [1.0]', "sample.x", "shape (2,)"),
    ('inputs = 2', 'inputs = 2\ncolour = "red"', "colour", "unknown key"),
    ('name = "net"', 'name = "symgrad_net"', "name", "would shadow"),
    ('name = "net"', 'name = "stdint"', "name", "would shadow"),
]


@pytest.mark.parametrize("old,new,key,fragment", BAD)
def test_bad_spec_gives_one_clear_message(tmp_path, old, new, key, fragment):
    assert old in GOOD
    path = spec(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(SpecError) as info:
        symgrad.load(path)
    msg = str(info.value)
    assert msg.startswith(str(path)) or "model.toml" in msg
    assert f"key '{key}'" in msg, msg
    assert fragment in msg, msg
    assert not (tmp_path / "PWNED").exists()


def test_the_good_spec_loads(tmp_path):
    assert symgrad.load(spec(tmp_path, GOOD)).describe().startswith("2-2-1 network")


def test_line_numbers_are_given(tmp_path):
    path = spec(tmp_path, GOOD.replace('activation = "sigmoid"', 'activaton = "sigmoid"'))
    with pytest.raises(SpecError) as info:
        symgrad.load(path)
    assert info.value.line == 8


def test_an_expression_error_names_its_own_line(tmp_path):
    path = spec(tmp_path, """\
        name = "e"
        inputs = ["u"]
        [expression]
        output = "__import__(1)"
        params = { w = 1.0 }
        [loss]
        kind = "mse"
        """)
    with pytest.raises(SpecError, match=r"model.toml: key 'expression.output' \(line 4\): call of '__import__' is not allowed"):
        symgrad.load(path)


def test_report_options_are_named_as_options(tmp_path, capsys):
    from symgrad.cli import main

    assert main(["report", str(ROOT / "examples" / "mazur.toml"), "--params", "w9", "-o", str(tmp_path / "r.md")]) == 2
    assert capsys.readouterr().err.startswith("symgrad: error: option --params: no trainable scalar parameter 'w9'")
    assert not (tmp_path / "r.md").exists()


def test_toml_syntax_error_names_the_line(tmp_path):
    path = spec(tmp_path, GOOD.replace('units = 2', 'units = = 2', 1))
    with pytest.raises(SpecError, match=r"line 7.*TOML syntax error"):
        symgrad.load(path)


def test_missing_required_key(tmp_path):
    with pytest.raises(SpecError, match=r"key 'loss'.*missing required key"):
        symgrad.load(spec(tmp_path, GOOD.split("[loss]")[0]))


def test_missing_file():
    with pytest.raises(SpecError, match="file not found"):
        symgrad.load("no/such/spec.toml")


def test_cli_exits_2_with_no_traceback_and_no_output(tmp_path):
    path = spec(tmp_path, GOOD.replace('kind = "half_sse"', 'kind = "hinge"'))
    out = tmp_path / "gen"
    res = subprocess.run([sys.executable, "-m", "symgrad", "generate", str(path), "-o", str(out)],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert "model.toml" in res.stderr and "loss.kind" in res.stderr and "unknown loss 'hinge'" in res.stderr
    assert not out.exists()


@pytest.mark.parametrize("text", ["__import__('os')", "().__class__", "open('x')", "[x for x in y]", "x if x else 1",
                                  "x; y", "lambda: 1", "globals()", "x.__dict__", "10**10**10", "'a'*3", "True + x",
                                  "x[0]", "f'{x}'", "x < 1", "x and 1", "not x", "x @ x", "x // 2", "x % 2"])
def test_safe_parser_refuses_code(text):
    with pytest.raises(ExpressionError):
        parse_expression(text, {"x": __import__("sympy").Symbol("x")})
