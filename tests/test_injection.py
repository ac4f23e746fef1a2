"""Hostile text through every text field into every output: code imports and compiles, nothing runs, text survives."""

import ast
import html as html_module
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tokenize

import jinja2
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import symgrad
from conftest import ROOT
from symgrad import escape
from symgrad.errors import SpecError
from symgrad.render import UserText, environment
from symgrad.report.layout import pdf, report
from symgrad.spec import from_dict, load

STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
COMPILERS = [cc for cc in (shutil.which("gcc"), shutil.which("clang")) if cc]

# each would end a literal, comment or element, or be read as an escape, markup or template syntax if pasted raw
PIECES = ['"', "'", '"""', "'''", "\\", "\\N{foo}", "\\x4", "\\u12", "\\", "*/", "/*", "??/", "??=", "\n#", '\n"""',
          "\r\n", "\t", "\u0085", "\u2028", "\u2029", "\u202e", "\ufeff", "<img src=x onerror=alert(1)>",
          "<script>alert(1)</script>", "$\\input{/etc/passwd}$", "\\write18{touch PWNED}", "^^41", "}}{{",
          "{{ 7*7 }}", "{% raw %}", "{#", "`code`", "*em*", "_u_", "[a](javascript:alert(1))", "\n# heading",
          "\n- item", "\n1. item", "&lt;", "%s%n", "-->", "é ü", "σ", "*"]
# text the loader refuses (control characters): reaches generated files only through the Python API
CONTROLS = ["\x00", "\x01", "\x1b[31m", "\x7f", "\x9b"]
PY_PAYLOAD = 'x"""\nopen("PWNED", "w").write("py")\n"""'
C_PAYLOAD = ('*/\n__attribute__((constructor)) static void pwn(void) { extern int system(const char *); '
             'system("touch PWNED"); }\n/*')
TEXT = "begin " + PY_PAYLOAD + " " + C_PAYLOAD + " " + " ".join(PIECES) + " end*"
TEXT_WITH_CONTROLS = TEXT + " " + " ".join(CONTROLS)
# the spec file: a path whose folders and name close a C comment and a Python docstring around it
SPEC_PATH = ("a*", "\n__attribute__((constructor)) static void pwn(void) { extern int system(const char *); "
             "system(\"touch PWNED\"); }\n", "*b\"\"\"\nopen(\"PWNED\", \"w\").write(\"path\")\n\"\"\"c {{ 7*7 }} "
             "<img src=x onerror=alert(1)> $\\input{x}$ \u2028 \\N{foo}.toml")
texts = st.text() | st.lists(st.sampled_from(PIECES + CONTROLS + ["a", " ", "/", "?"])).map("".join)


def _network(description, source):
    """A 1-1-1 network spec table with the given description and [[expect]] source."""
    return {
        "name": "hostile", "description": description, "inputs": ["i1"],
        "layers": [{"name": "hidden", "units": 1, "activation": "sigmoid", "weight": [[0.5]], "bias_value": 0.1,
                    "weight_names": [["w1"]], "bias_names": ["b1"], "neurons": ["h1"]},
                   {"name": "output", "units": 1, "activation": "sigmoid", "weight": [[0.3]], "bias_value": 0.2,
                    "weight_names": [["w2"]], "bias_names": ["b2"], "neurons": ["o1"]}],
        "loss": "half_sse", "sample": {"x": [0.5], "t": [0.25]},
        "expect": [{"what": "gradient", "name": "w2", "value": 0.1, "source": source},
                   {"what": "loss", "value": 0.5, "source": source}],
    }


def _expression(description, source):
    """A one-output expression model spec table with the given description and [[expect]] source."""
    return {
        "name": "hostile", "description": description, "inputs": ["x"],
        "expression": {"output": "sigmoid(w*x + b)", "params": {"w": 0.5, "b": 0.1}},
        "loss": "half_sse", "sample": {"x": [1.0], "t": [0.25]},
        "expect": [{"what": "gradient", "name": "w", "value": 0.1, "source": source}],
    }


SPECS = {"network": _network, "expression": _expression}


def _toml_string(s):
    """A TOML basic string holding s (JSON escapes are TOML escapes for these characters)."""
    return json.dumps(s, ensure_ascii=True)


def _toml(table, indent=""):
    """TOML text of a spec table (the subset these specs use)."""
    def value(v):
        if isinstance(v, str):
            return _toml_string(v)
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    lines = [f"{k} = {value(v)}" for k, v in table.items() if not isinstance(v, dict) and not (
        isinstance(v, list) and v and isinstance(v[0], dict))]
    for k, v in table.items():
        if isinstance(v, dict):
            lines += [f"[{k}]"] + [f"{kk} = {value(vv)}" for kk, vv in v.items()]
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            for item in v:
                lines += [f"[[{k}]]"] + [f"{kk} = {value(vv)}" for kk, vv in item.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture(params=sorted(SPECS))
def hostile_spec(request, tmp_path, monkeypatch):
    """(relative path, model) of a spec with hostile description, expect sources and file path; cwd = tmp_path."""
    monkeypatch.chdir(tmp_path)
    rel = os.path.join(*SPEC_PATH)
    (tmp_path / rel).parent.mkdir(parents=True)
    (tmp_path / rel).write_text(_toml(SPECS[request.param](TEXT, TEXT)), encoding="utf-8")
    model = load(rel)
    assert model.description == TEXT and model.source == "/".join(SPEC_PATH)
    return rel, model


def _run(code, tmp_path, *args):
    """Run Python code in a fresh interpreter with cwd tmp_path (where a payload would write PWNED)."""
    env = dict(os.environ, SYMGRAD_CACHE=str(tmp_path / "cache"), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)


def _import(tmp_path, out, name, call):
    """Import generated module or package ``name`` from ``out`` in a subprocess; (its docstring, call's result)."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import numpy as np; m = __import__(sys.argv[2]); "
            f"print(json.dumps([m.__doc__, {call}]))")
    res = _run(code, tmp_path, str(out), name)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout)


CALL = "float(m.loss_and_gradients(m.init_params(), np.ones((2, m.N_INPUTS)), np.ones((2, m.N_OUTPUTS)) / 4)[0])"


# --- the escaping functions, one property each


@settings(max_examples=300, deadline=None)
@given(texts)
def test_python_string_evaluates_to_the_text_in_both_quotes(s):
    body = escape.python_string(s)
    assert ast.literal_eval('"' + body + '"') == s
    assert ast.literal_eval('"""' + body + '"""') == s
    assert not any(escape.is_hidden(c) for c in body)


@settings(max_examples=300, deadline=None)
@given(texts)
def test_python_comment_stays_one_comment(s):
    comment = "# " + escape.python_comment(s)
    tokens = list(tokenize.generate_tokens(io.StringIO("x = 1  " + comment + "\ny = 2\n").readline))
    assert [t.string for t in tokens if t.type == tokenize.COMMENT] == [comment]
    assert [t.string for t in tokens if t.type == tokenize.NAME] == ["x", "y"]


@settings(max_examples=300, deadline=None)
@given(texts, st.sampled_from(["", " ", "*", "?"]), st.sampled_from(["", " ", "*", "?"]))
def test_c_comment_cannot_end_or_nest_whatever_surrounds_it(s, before, after):
    assume(s)
    body = escape.c_comment(s)
    comment = "/*" + before + body + after + "*/"
    assert comment.find("*/") == len(comment) - 2 and comment.find("/*", 1) == -1 and "??" not in comment
    for joined in ("*" + body, body + "/", "/" + body, body + "*", "?" + body, body + "?"):
        assert "*/" not in joined and "/*" not in joined and "??" not in joined
    assert not any(escape.is_hidden(c) for c in body)


@pytest.mark.skipif(not COMPILERS, reason="no C compiler")
def test_c_string_holds_the_texts_utf8_bytes(tmp_path):
    texts = PIECES + CONTROLS + [PY_PAYLOAD, C_PAYLOAD, TEXT_WITH_CONTROLS]
    body = "\n".join(f'    fwrite("{escape.c_string(s)}", 1, sizeof("{escape.c_string(s)}") - 1, stdout); putchar(255);'
                     for s in texts)
    (tmp_path / "s.c").write_text("#include <stdio.h>\nint main(void)\n{\n" + body + "\n    return 0;\n}\n")
    for cc in COMPILERS:
        subprocess.run([cc, *STRICT, "s.c", "-o", "s"], cwd=tmp_path, check=True, capture_output=True)
        out = subprocess.run(["./s"], cwd=tmp_path, check=True, capture_output=True).stdout
        assert out.split(b"\xff")[:-1] == [s.encode("utf-8") for s in texts]


def _md_unescape(s):
    """What a Markdown reader shows for escaped text: backslash escapes and entities resolved."""
    return html_module.unescape(re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", s))


@settings(max_examples=300, deadline=None)
@given(texts)
def test_html_and_markdown_show_the_text_and_hold_no_markup(s):
    shown = "".join(escape.escape_code(c) if escape.is_hidden(c) else c for c in s)
    h = escape.html(s)
    assert html_module.unescape(h) == shown and not set("<>\"'") & set(h)
    m = escape.markdown(s)
    assert _md_unescape(m) == shown
    bare = re.sub(r"\\[!-/:-@\[-`{-~]", "", m)  # what is left once every backslash escape is taken out
    assert not set("<>\\`*_[]$~|#\n\r") & set(bare) and not any(escape.is_hidden(c) for c in m)
    assert not re.match(r"[-+=]|\d+[.)]", m)  # no list item or heading underline at the start of a block


TEX_TOKENS = r"\\textbackslash\{\}|\\textasciitilde\{\}|\\\^\{\}|\\[&%$#_{}]|\$\\[a-zA-Z]+\$|\$\^\{[+2T]\}\$|\\dots\{\}"


@settings(max_examples=300, deadline=None)
@given(texts)
def test_latex_leaves_no_command_or_special_character(s):
    bare = re.sub(TEX_TOKENS, "", escape.latex(s))
    assert not set("\\{}$&%#_^~") & set(bare)
    assert not any(escape.is_hidden(c) or ord(c) >= 0x180 for c in bare)


def test_a_template_cannot_print_user_text_unescaped():
    env = environment()
    with pytest.raises(jinja2.TemplateError, match="without an escaping filter"):
        env.from_string("{{ description }}").render(description=UserText(TEXT))
    assert env.from_string('"{{ description|py_str }}"').render(description=UserText(TEXT)) == (
        '"' + escape.python_string(TEXT) + '"')


# --- the spec loader


@pytest.mark.parametrize("control", CONTROLS)
@pytest.mark.parametrize("field", ["description", "source"])
def test_loader_refuses_control_characters_naming_the_key(control, field):
    data = _network("ok", "ok")
    if field == "description":
        data["description"] = "a" + control
    else:
        data["expect"][1]["source"] = "a" + control
    with pytest.raises(SpecError, match=r"U\+00[0-9A-F]{2} at position 1") as exc:
        from_dict(data)
    assert exc.value.key == ("description" if field == "description" else "expect[1].source")
    assert control not in str(exc.value)


@pytest.mark.parametrize("bad", ['a"b', "a\nb", "a*/b", "a b", "a\x00", "a\u2028", "é"])
@pytest.mark.parametrize("slot", ["name", "input", "layer", "neuron", "weight"])
def test_hostile_names_are_refused(bad, slot):
    data = _network("ok", "ok")
    if slot == "name":
        data["name"] = bad
    elif slot == "input":
        data["inputs"] = [bad]
    elif slot == "layer":
        data["layers"][0]["name"] = bad
    elif slot == "neuron":
        data["layers"][0]["neurons"] = [bad]
    else:
        data["layers"][0]["weight_names"] = [[bad]]
    with pytest.raises(SpecError, match="identifier"):
        from_dict(data)


# --- every output of a hostile spec file


def _ruff(path, *select):
    """ruff check with its defaults (or the rules ``select``) and invalid escape sequences (W605)."""
    rules = ["--select", ",".join(select)] if select else []
    res = subprocess.run(["ruff", "check", "--no-cache", "--isolated", *rules, "--extend-select", "W605", str(path)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_numpy_module_imports_shows_the_text_and_runs_nothing(hostile_spec, tmp_path):
    rel, model = hostile_spec
    path = symgrad.generate(rel, "numpy", tmp_path / "out")[0]
    doc, loss = _import(tmp_path, tmp_path / "out", "hostile", CALL)
    assert not (tmp_path / "PWNED").exists()
    assert TEXT in doc and model.source in doc and loss > 0
    text = path.read_bytes()
    assert not any(escape.is_hidden(c) for c in text.decode() if c != "\n")
    if shutil.which("ruff"):
        _ruff(path)
    assert symgrad.generate(rel, "numpy", tmp_path / "again")[0].read_bytes() == text


@pytest.mark.skipif(not COMPILERS, reason="no C compiler")
def test_c_package_compiles_strictly_imports_and_runs_nothing(hostile_spec, tmp_path):
    rel, model = hostile_spec
    symgrad.generate(rel, "c", tmp_path / "out", with_main=True)
    pkg = tmp_path / "out" / "hostile_c"
    for cc in COMPILERS:
        for src in ("hostile.c", "main.c"):
            res = subprocess.run([cc, *STRICT, "-c", src, "-o", os.devnull], cwd=pkg, capture_output=True, text=True)
            assert res.returncode == 0, f"{cc} {src}:\n{res.stderr[-3000:]}"
    doc, loss = _import(tmp_path, tmp_path / "out", "hostile_c", CALL)
    assert not (tmp_path / "PWNED").exists()
    assert model.source in doc and loss > 0
    for name in ("hostile.h", "hostile.c", "main.c"):
        assert escape.c_comment(model.source) in (pkg / name).read_text()
    if shutil.which("ruff"):
        for name in ("__init__.py", "_runtime.py", "_build.py"):
            _ruff(pkg / name)


def test_reports_show_the_text_as_text(hostile_spec, tmp_path):
    rel, model = hostile_spec
    md, page, tex = (report(rel, fmt) for fmt in ("md", "html", "tex"))
    for out in (md, page):
        assert "<img" not in out and "<script" not in out and "&lt;img src=x onerror=alert(1)&gt;" in out
        assert not {"\u2028", "\u2029", "\u202e", "\ufeff"} & set(out)
    assert escape.markdown(TEXT) in md and escape.html(TEXT) in page  # the description, and each expect source
    assert "{{ 7*7 }}" in page and r"{{ 7\*7 }}" in md and "\\\\N{foo}" in md
    assert escape.latex(TEXT) in tex and r"\textbackslash{}input" in tex
    assert "\\input{" not in tex and "\\write18" not in tex and "^^41" not in tex
    if shutil.which("pdflatex"):
        assert pdf(tex).startswith(b"%PDF")
    assert not (tmp_path / "PWNED").exists()


def test_symgrad_train_on_a_hostile_spec_runs_nothing(hostile_spec, tmp_path):
    rel, model = hostile_spec
    names = list(model.inputs) + list(model.outputs)
    (tmp_path / "data.csv").write_text(",".join(names) + "\n" + "".join(f"{k / 10},{k / 20}\n" for k in range(8)))
    res = _run("import sys; from symgrad.cli import main; sys.exit(main(sys.argv[1:]))", tmp_path, "train", rel,
               "--data", "data.csv", "--epochs", "2", "-o", "params.npz", "--plot", "loss.png")
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "params.npz").exists() and not (tmp_path / "PWNED").exists()


# --- the Python API: no loader in between, so control characters reach the escapers


@pytest.mark.skipif(not COMPILERS, reason="no C compiler")
def test_python_api_text_with_control_characters_is_escaped_everywhere(tmp_path):
    model = from_dict(_network("plain", "plain"))
    model.description = TEXT_WITH_CONTROLS
    model.source = TEXT_WITH_CONTROLS
    for e in model.expects:
        e.source = TEXT_WITH_CONTROLS
    symgrad.generate(model, "numpy", tmp_path / "out")
    symgrad.generate(model, "c", tmp_path / "out")
    doc, _ = _import(tmp_path, tmp_path / "out", "hostile", CALL)
    assert TEXT_WITH_CONTROLS in doc
    cdoc, _ = _import(tmp_path, tmp_path / "out", "hostile_c", CALL)
    assert TEXT_WITH_CONTROLS in cdoc
    for fmt, nul in (("md", "\\\\x00"), ("html", "\\x00"), ("tex", "\\textbackslash{}x00")):
        out = report(model, fmt)
        assert not any(c in out for c in CONTROLS) and nul in out
    assert not (tmp_path / "PWNED").exists()
