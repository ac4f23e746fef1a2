"""Reports: the worked example's numbers, refuted claims, LaTeX that compiles, HTML that renders."""

import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from symgrad import load, report
from symgrad.cli import main
from symgrad.report.content import build
from symgrad.report.layers import LayerReport

ROOT = Path(__file__).resolve().parent.parent
EX = ROOT / "examples"

MAZUR = {
    "out_o1": 0.75136507, "out_o2": 0.772928465, "E_total": 0.298371109,
    "dE/dout_o1": 0.74136507, "dout_o1/dnet_o1": 0.186815602, "dnet_o1/dw5 = out_h1": 0.593269992,
    "dE/dw5": 0.082167041, "dE/dw1": 0.000438568,
    "w5+": 0.35891648, "w6+": 0.408666186, "w7+": 0.511301270, "w8+": 0.561370121,
    "w1+": 0.149780716, "w2+": 0.19956143, "w3+": 0.24975114, "w4+": 0.29950229,
}


def numbers(text):
    return [float(m) for m in re.findall(r"-?\d+\.\d+(?:e-?\d+)?", text)]


def contains(nums, value):
    """A number in the report equal to value to the digits the worked example states."""
    digits = len(re.sub(r"^0\.0*", "", repr(value)).rstrip("0"))
    return any(abs(n - value) <= 0.6 * 10 ** (math_floor_log10(value) - digits + 1) for n in nums)


def math_floor_log10(v):
    import math

    return math.floor(math.log10(abs(v)))


@pytest.fixture(scope="module")
def mazur_md():
    return report(EX / "mazur.toml", "md")


@pytest.mark.parametrize("what", sorted(MAZUR))
def test_mazur_report_contains_worked_example_numbers(mazur_md, what):
    assert contains(numbers(mazur_md), MAZUR[what]), what


def test_mazur_report_shows_substitution_and_delta(mazur_md):
    assert r"0.15 \cdot 0.05 + 0.2 \cdot 0.1 + 0.35" in mazur_md
    assert r"\delta_{o1}" in mazur_md and "derivative of the sigmoid" in mazur_md
    assert "sum over 2 paths" in mazur_md
    assert mazur_md.count("confirmed") == 5 and "WRONG" not in mazur_md


def test_single_neuron_claim_is_refuted():
    text = report(EX / "single_neuron.toml", "md")
    row = next(ln for ln in text.splitlines() if ln.startswith("| gradient w5"))
    assert "WRONG" in row and "-0.222738301" in row
    assert "The stated gradient w5 = $-0.033$ is WRONG; the correct value is $-0.222738301$" in text
    assert next(ln for ln in text.splitlines() if ln.startswith("| output y")).endswith("confirmed |")


def test_deterministic():
    for fmt in ("md", "tex", "html"):
        assert report(EX / "mazur.toml", fmt) == report(EX / "mazur.toml", fmt)


def test_cli_writes_report_and_rejects_bad_params(tmp_path, capsys):
    out = tmp_path / "m.html"
    assert main(["report", str(EX / "mazur.toml"), "-o", str(out), "--digits", "5", "--steps", "3"]) == 0
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>") and "0.75137" in text and "Training" in text
    assert main(["report", str(EX / "mazur.toml"), "-o", str(tmp_path / "x.md"), "--params", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert not (tmp_path / "x.md").exists()


def test_params_restrict_the_derivation():
    text = report(EX / "mazur.toml", "md", params=["w1"])
    assert "Gradient of the parameter w1" in text and "Gradient of the parameter w6" not in text


def test_large_network_report_is_fast_and_layer_level():
    t0 = time.time()
    rep = build(load(EX / "mnist_mlp.toml"))
    text = report(EX / "mnist_mlp.toml", "md").replace("\\_", "_")
    assert time.time() - t0 < 20
    assert "The general, vectorised form" in text and r"\circ" in text  # delta^l = (W^T delta) ∘ f'
    assert "Selected parameters" in text and "fc1_w" in text and "fc3_w" in text
    table = next(b for s in rep.sections if s.title.startswith("Summary") for b in s.blocks)
    assert all(row[3] < 1e-5 for row in table.rows)  # analytic vs finite differences


SHARED_BIAS = """
name = "shared"
inputs = 7
[init]
seed = 2
[[layers]]
name = "h1"
units = 9
activation = "tanh"
bias = "shared"
[[layers]]
name = "h2"
units = 4
activation = "sigmoid"
bias = "none"
[[layers]]
name = "out"
units = 3
activation = "softmax"
[loss]
kind = "softmax_cross_entropy"
[sample]
seed = 1
"""


@pytest.mark.parametrize("spec", ["mnist_mlp", "shared"])
def test_layer_walk_gives_the_generated_modules_gradients(tmp_path, spec):
    path = EX / "mnist_mlp.toml" if spec == "mnist_mlp" else tmp_path / "shared.toml"
    if spec == "shared":
        path.write_text(SHARED_BIAS)
    model = load(path)
    rep = LayerReport(model, model.init_params(), None, 9, 0)
    for k, layer in enumerate(model.layers):
        wp, bp = model.layer_params(k)
        np.testing.assert_allclose(np.outer(rep.deltas[k], rep.outs[k]), rep.grads[wp.name], rtol=1e-12, atol=1e-15)
        if bp is not None:
            db = rep.deltas[k] if layer.bias == "unit" else rep.deltas[k].sum()
            np.testing.assert_allclose(db, rep.grads[bp.name], rtol=1e-12, atol=1e-15)


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed (Debian: texlive-latex-base "
                    "texlive-latex-recommended texlive-latex-extra texlive-pictures)")
@pytest.mark.parametrize("spec", ["mazur", "single_neuron", "mnist_mlp", "sigmoid_neuron"])
def test_tex_compiles(tmp_path, spec):
    (tmp_path / "r.tex").write_text(report(EX / f"{spec}.toml", "tex"))
    r = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "r.tex"], cwd=tmp_path,
                       capture_output=True, text=True, errors="replace", timeout=300)
    assert r.returncode == 0, r.stdout[-3000:]
    assert (tmp_path / "r.pdf").stat().st_size > 10000


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed (Debian: chromium)")
def test_html_renders_in_chromium(tmp_path):
    html = tmp_path / "mazur.html"
    html.write_text(report(EX / "mazur.toml", "html"))
    flags = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "shot.png"
    subprocess.run(flags + [f"--screenshot={shot}", "--window-size=1200,3000", html.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 50000
    dom = subprocess.run(flags + ["--dump-dom", html.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert dom.count("<math") > 50 and "<mfrac>" in dom and "<svg" in dom
    text = re.sub(r"<[^>]+>", "", dom)
    for raw in ("\\frac", "$$", "\\cdot", "\\left", "\\partial"):
        assert raw not in text
    assert "http://" not in dom.replace('xmlns="http://www.w3.org/2000/svg"', "").replace(
        'xmlns="http://www.w3.org/1998/Math/MathML"', "")


def test_derivation_renders_in_jupyter():
    import symgrad

    d = symgrad.derive(EX / "mazur.toml")
    latex = d._repr_latex_()
    assert latex.startswith("$$") and r"\frac{\partial E_{\mathrm{total}}}{\partial w_{5}} & 0.0821670406" in latex
    assert latex.count(r"\frac{\partial") == 8  # every trainable weight; the frozen biases have no gradient
    assert contains(numbers(d._repr_markdown_()), MAZUR["dE/dw5"])
    assert "<math" in d._repr_html_()


def test_multi_letter_symbols_are_upright_and_delta_is_greek_in_every_format():
    md, tex, html = (report(EX / "mazur.toml", fmt) for fmt in ("md", "tex", "html"))
    for text in (md, tex):
        assert r"\mathrm{net}_{h1}" in text and r"\mathrm{out}_{o1}" in text and r"E_{\mathrm{total}}" in text
        assert r"\delta_{o1}" in text and "net_{h1}" not in text.replace(r"\mathrm{net}_{h1}", "")
    assert '<msub><mi mathvariant="normal">net</mi><mrow><mi>h</mi><mn>1</mn></mrow></msub>' in html
    assert "<mi>\u03b4</mi>" in html and ">delta<" not in html
    big = report(EX / "mnist_mlp.toml", "md")
    assert r"\delta^{(2)}" in big and not re.search(r"(?<!\\)delta\^", big)
    prose = re.sub(r"\$\$.*?\$\$|\$[^$]*\$", "", big, flags=re.S)  # text outside math
    assert not re.search(r"\w\^\(", prose), re.findall(r".{20}\w\^\(.{20}", prose)


def test_user_names_are_one_symbol_and_derived_subscripts_keep_separators():
    import sympy as sp

    from symgrad.report.notation import latex_name
    from symgrad.symbols import derived

    assert latex_name(sp.Symbol("w5")) == "w_{5}"
    assert latex_name(sp.Symbol("fc1_w36_531")) == r"\mathrm{fc1\_w36\_531}"
    assert latex_name(sp.Symbol("net_h1")) == r"\mathrm{net\_h1}"  # a user's name, not the derivation's net_h1
    assert latex_name(derived("net_h1")) == r"\mathrm{net}_{h1}"
    assert latex_name(derived("net_linear2_1")) == r"\mathrm{net}_{\mathrm{linear2\_1}}"
    assert latex_name(sp.Symbol("delta^{(2)}_{36}")) == r"\delta_{36}^{(2)}"
    assert latex_name(sp.Symbol("w5^+")) == "w_{5}^{+}"


def test_forward_pass_is_one_aligned_block():
    md = report(EX / "mazur.toml", "md")
    forward = md[md.index("## Forward pass"):md.index("## The loss")]
    assert forward.count(r"\begin{aligned}") == 1 and forward.count(r"\\[0.6em]") == 7


def test_diagram_shows_biases_values_and_gradients_without_colliding_labels():
    from itertools import combinations

    import symgrad
    from symgrad.report.diagram import _box, _layout, _overlap
    from symgrad.report.scalar import ScalarReport

    md = report(EX / "mazur.toml", "md")
    svg = md[md.index("<svg"):md.index("</svg>")]
    for shown in ("b1 = 0.35", "b2 = 0.6", ">0.7514<", ">0.05<", "w5 = 0.4", "grad 0.08217", "grad 0.0004386"):
        assert shown in svg, shown
    dense = symgrad.Network("n342", 3, [symgrad.Dense("hid", 4, "tanh"), symgrad.Dense("out", 2, "sigmoid", bias="shared")],
                            "mse", sample=symgrad.Sample(None, None, seed=1))  # 12 crossing edges: names only fit
    for model in (load(EX / "mazur.toml"), dense):
        values = ScalarReport(model, model.init_params(), None, 9, 0)._diagram_values()
        *_, labels = _layout(model, values)
        assert len(labels) > 2 * len(model.layers[0].neurons)
        assert not [(a.lines, b.lines) for a, b in combinations(labels, 2) if _overlap(_box(a), _box(b))]
