"""Hostile input and resource limits: one-line errors with exit 2 and no output, bounded work, whole C packages."""

import os
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import symgrad
from conftest import ROOT
from symgrad import render
from symgrad.api import generate, import_generated
from symgrad.cli import main
from symgrad.spec import load

NET = textwrap.dedent('''\
    name = "net"
    inputs = 2

    [[layers]]
    name = "hidden"
    units = 2
    activation = "sigmoid"

    [[layers]]
    name = "out"
    units = 1

    [loss]
    kind = "half_sse"

    [sample]
    x = [0.1, 0.2]
    t = [0.5]
''')

EXPR = textwrap.dedent('''\
    name = "expr"
    inputs = ["x"]

    [expression]
    output = "w*x"
    params = { w = 1.5, b = 2.0 }

    [loss]
    expression = "(y - t)**2"

    [sample]
    x = [1.0]
    t = [0.25]
''')

SEQ = textwrap.dedent('''\
    name = "seq"
    input_shape = [3, 2]

    [[layers]]
    name = "r"
    kind = "lstm"
    hidden_size = 2

    [[layers]]
    name = "out"
    units = 1

    [loss]
    kind = "mse"
''')

BLOW = "((y-t)**2 + (y+t)**3 + y**5*t**7)"


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):
    """cli(*argv) -> (exit status, stdout, stderr) of the symgrad command run in tmp_path."""
    monkeypatch.chdir(tmp_path)

    def run(*argv):
        rc = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return rc, out, err

    return run


def write(tmp_path, text, name="model.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def assert_one_clean_error(rc, err, *fragments):
    assert rc == 2, err
    assert "Traceback" not in err
    assert err.startswith("symgrad: error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def files_under(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


BAD_SPECS = [
    # (id, text, fragments of the one-line message)
    ("log0", NET.replace('kind = "half_sse"', 'expression = "log(0)*y + (y-t)**2"'),
     ["loss.expression", "log(0) is infinite or undefined"]),
    ("negative-seed", NET.replace("x = [0.1, 0.2]\nt = [0.5]", "seed = -1"), ["sample.seed", "non-negative"]),
    ("freeze-number", EXPR.replace("params =", "freeze = [1]\nparams ="), ["expression.freeze", "names"]),
    ("freeze-number-network", NET.replace("units = 1", "units = 1\nfreeze = [1]"), ["layers[1].freeze"]),
    ("nested-arrays", NET + "junk = " + "[" * 5000 + "]" * 5000 + "\n", ["nested too deeply"]),
    ("units-int64-max", NET.replace("units = 1", "units = 9223372036854775807"),
     ["layers[1].units", "SYMGRAD_MAX_PARAMS"]),
    ("units-ten-million", NET.replace("units = 1", "units = 10000000"), ["layers[1].units", "SYMGRAD_MAX_PARAMS"]),
    ("inputs-int64-max", NET.replace("inputs = 2", "inputs = 9223372036854775807"), ["inputs", "SYMGRAD_MAX_PARAMS"]),
    ("exp-overflow", NET.replace('kind = "half_sse"', 'expression = "(y-t)**2 + y*exp(10**15)"'),
     ["loss.expression", "overflows a double"]),
    ("exp-overflow-activation", NET.replace('activation = "sigmoid"', 'activation = "x*exp(10**15)"'),
     ["layers[0].activation", "overflows a double"]),
    ("sqrt-minus-one", EXPR.replace('output = "w*x"', 'output = "w*x + sqrt(-1)"'),
     ["key 'expression.output' (line", "sqrt(-1) is complex"]),
    ("nan-slope", NET.replace('activation = "sigmoid"',
                              'activation = "leaky_relu"\nactivation_params = { negative_slope = nan }'),
     ["layers[0].activation_params", "finite"]),
    ("string-numbers", NET.replace("units = 1", 'units = 1\nweight = [["0.1", "0.2"]]'),
     ["layers[1].weight", "the string '0.1'"]),
    ("boolean-numbers", NET.replace("x = [0.1, 0.2]", "x = [true, false]"), ["sample.x", "boolean"]),
    ("empty-outputs", EXPR.replace('output = "w*x"', "outputs = {}"), ["expression.outputs", "at least one output"]),
    ("lstm-hidden-ten-million", SEQ.replace("hidden_size = 2", "hidden_size = 10000000"),
     ["layers[0].hidden_size", "SYMGRAD_MAX_PARAMS"]),
    ("lstm-hidden-int64-max", SEQ.replace("hidden_size = 2", "hidden_size = 9223372036854775807"),
     ["layers[0].hidden_size", "SYMGRAD_MAX_PARAMS"]),
    ("conv-kernel-billion", SEQ.replace('kind = "lstm"\nhidden_size = 2', 'kind = "transpose"\n[[layers]]\nname = "c"\n'
                                        'kind = "conv1d"\nout_channels = 1\nkernel_size = 1000000000\n'
                                        'padding = 500000000'), ["layers[1].out_channels", "SYMGRAD_MAX_PARAMS"]),
    ("input-shape-huge", SEQ.replace("input_shape = [3, 2]", "input_shape = [100000, 100000, 100000]"),
     ["input_shape", "SYMGRAD_MAX_PARAMS"]),
    ("expression-blowup", NET.replace('kind = "half_sse"', f'expression = "{BLOW}**64"'),
     ["loss.expression", "SYMGRAD_MAX_TERMS"]),
]


@pytest.mark.parametrize("text,fragments", [c[1:] for c in BAD_SPECS], ids=[c[0] for c in BAD_SPECS])
def test_bad_spec_is_one_line_exit_2_and_writes_nothing(cli, tmp_path, text, fragments):
    path = write(tmp_path, text)
    start = time.perf_counter()
    rc, out, err = cli("generate", path, "-o", tmp_path / "out")
    assert time.perf_counter() - start < 20
    assert_one_clean_error(rc, err, "model.toml", *fragments)
    assert not (tmp_path / "out").exists()


def test_exit_status_2_from_a_real_process(tmp_path):
    path = write(tmp_path, NET.replace('kind = "half_sse"', 'expression = "log(0)*y + (y-t)**2"'))
    res = subprocess.run([sys.executable, "-m", "symgrad", "generate", str(path), "-o", str(tmp_path / "out")],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert_one_clean_error(res.returncode, res.stderr, "log(0)")
    assert not (tmp_path / "out").exists()


def test_control_characters_in_keys_are_escaped(cli, tmp_path):
    path = write(tmp_path, NET.replace("units = 1", 'units = 1\n"a\\u001b[31m\\nb" = 1'))
    rc, out, err = cli("generate", path, "-o", tmp_path / "out")
    assert_one_clean_error(rc, err, r"a\x1b[31m\nb", "unknown key")
    assert "\x1b" not in err


def test_utf8_bom_is_accepted_with_the_same_numbers(tmp_path):
    plain, bom = write(tmp_path, NET, "plain.toml"), write(tmp_path, "\ufeff" + NET, "bom.toml")
    mods = []
    for k, path in enumerate((plain, bom)):
        generate(load(path), "numpy", tmp_path / f"gen{k}")
        mods.append(import_generated("net", tmp_path / f"gen{k}"))
    x, t = np.array([[0.1, 0.2]]), np.array([[0.5]])
    a, b = (m.loss_and_gradients(m.init_params(), x, t) for m in mods)
    assert a[0] == b[0] and all(np.array_equal(a[1][k], b[1][k]) for k in a[1])


# ---------------------------------------------------------------------------------------------
# limits: refused quickly, and raised by their environment variables


def test_expression_limit_is_raised_by_its_variable(tmp_path, monkeypatch):
    path = write(tmp_path, NET.replace('kind = "half_sse"', f'expression = "{BLOW}**4"'))
    assert load(path).loss.name == "custom"  # within the default limit
    monkeypatch.setenv("SYMGRAD_MAX_TERMS", "100")
    with pytest.raises(symgrad.errors.SpecError, match="SYMGRAD_MAX_TERMS"):
        load(path)


def test_expression_limit_applies_to_the_loss_times_the_activation_derivative(tmp_path, monkeypatch):
    path = write(tmp_path, NET.replace('kind = "half_sse"', 'expression = "(y-t)**4"').replace(
        'units = 1', 'units = 1\nactivation = "(x+1)**6"'))
    from symgrad.limits import expanded_terms
    from symgrad.ops.losses import y

    model = load(path)
    assert expanded_terms(model.loss.expr) < expanded_terms(model.layers[-1].activation.expr) < 10
    bound = expanded_terms(model.loss.expr.diff(y) * model.layers[-1].activation.derivative_in_out())
    monkeypatch.setenv("SYMGRAD_MAX_TERMS", str(bound - 1))
    with pytest.raises(symgrad.errors.SpecError, match="loss.expression"):
        load(path)


def test_parameter_limit_is_raised_by_its_variable(tmp_path, monkeypatch):
    path = write(tmp_path, NET.replace("units = 2", "units = 600"))
    assert sum(p.size for p in load(path).params) == 600 * 2 + 600 + 600 + 1
    monkeypatch.setenv("SYMGRAD_MAX_PARAMS", "1000")
    with pytest.raises(symgrad.errors.SpecError, match=r"layers\[0\]\.units.*1800.*SYMGRAD_MAX_PARAMS"):
        load(path)


def test_spec_size_limit_is_raised_by_its_variable(cli, tmp_path, monkeypatch):
    path = write(tmp_path, NET + "# padding\n" * 100)
    monkeypatch.setenv("SYMGRAD_MAX_SPEC_BYTES", str(path.stat().st_size - 1))
    rc, out, err = cli("generate", path, "-o", tmp_path / "out")
    assert_one_clean_error(rc, err, "SYMGRAD_MAX_SPEC_BYTES", str(path.stat().st_size))
    monkeypatch.setenv("SYMGRAD_MAX_SPEC_BYTES", str(path.stat().st_size))
    assert cli("generate", path, "-o", tmp_path / "out")[0] == 0


def test_bad_limit_variable_is_a_clean_error(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("SYMGRAD_MAX_PARAMS", "lots")
    rc, out, err = cli("generate", write(tmp_path, NET), "-o", tmp_path / "out")
    assert_one_clean_error(rc, err, "SYMGRAD_MAX_PARAMS", "'lots'")


@pytest.mark.parametrize("special", ["/dev/zero", "fifo", "folder"])
def test_spec_that_is_not_a_regular_file_fails_fast(cli, tmp_path, special):
    if special == "fifo":
        special = tmp_path / "spec.toml"
        os.mkfifo(special)  # opening it would block until a writer came
    elif special == "folder":
        special = tmp_path / "folder.toml"
        special.mkdir()
    start = time.perf_counter()
    rc, out, err = cli("generate", special, "-o", tmp_path / "out")
    assert time.perf_counter() - start < 5
    assert_one_clean_error(rc, err, str(special))
    assert not (tmp_path / "out").exists()


def test_report_steps_limit_is_raised_by_its_variable(cli, tmp_path, monkeypatch):
    path = write(tmp_path, NET)
    rc, out, err = cli("report", path, "--steps", "100000", "-o", "r.md")
    assert_one_clean_error(rc, err, "--steps", "SYMGRAD_MAX_STEPS")
    monkeypatch.setenv("SYMGRAD_MAX_STEPS", "3")
    assert_one_clean_error(*cli("report", path, "--steps", "4", "-o", "r.md")[::2], "limit of 3")
    assert not (tmp_path / "r.md").exists()
    assert cli("report", path, "--steps", "3", "-o", "r.md")[0] == 0


# ---------------------------------------------------------------------------------------------
# output paths and command-line faults


@pytest.mark.parametrize("target", ["file", "/dev/null", "proc"])
def test_generate_into_something_that_is_not_a_writable_folder(cli, tmp_path, target):
    if target == "file":
        target = tmp_path / "afile"
        target.write_text("keep\n")
    elif target == "proc":
        target = "/proc/symgrad-out"  # no one, not even root, can create a folder there
    rc, out, err = cli("generate", write(tmp_path, NET), "--target", "c", "-o", target)
    assert_one_clean_error(rc, err, "--out")
    if isinstance(target, os.PathLike):
        assert target.read_text() == "keep\n"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_generate_into_a_read_only_folder(cli, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        rc, out, err = cli("generate", write(tmp_path, NET), "-o", ro)
        assert_one_clean_error(rc, err, "cannot write into")
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(stat.S_IRWXU)


def test_report_into_a_folder_or_a_device(cli, tmp_path):
    path = write(tmp_path, NET)
    (tmp_path / "DIR.html").mkdir()
    assert_one_clean_error(*cli("report", path, "-o", "DIR.html")[::2], "DIR.html is a folder")
    assert list((tmp_path / "DIR.html").iterdir()) == []
    assert_one_clean_error(*cli("report", path, "--format", "md", "-o", "/dev/null")[::2], "not a regular file")


def test_report_params_file_that_is_a_npy(cli, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros(3))
    rc, out, err = cli("report", write(tmp_path, NET), "--params-file", "x.npy", "-o", "r.md")
    assert_one_clean_error(rc, err, "--params-file", ".npz")
    assert not (tmp_path / "r.md").exists()


def _train_files(tmp_path):
    shutil.copy(ROOT / "examples/regression_relu.toml", tmp_path)
    shutil.copy(ROOT / "examples/regression_relu.csv", tmp_path)
    return tmp_path / "regression_relu.toml", tmp_path / "regression_relu.csv"


@pytest.mark.parametrize("option", ["-o", "--plot"])
def test_train_output_that_is_a_folder_fails_before_training(cli, tmp_path, option):
    spec, data = _train_files(tmp_path)
    (tmp_path / "DIR").mkdir()
    before = files_under(tmp_path)
    rc, out, err = cli("train", spec, "--data", data, "--epochs", "1", option, "DIR")
    assert_one_clean_error(rc, err, "DIR is a folder")
    assert out == ""  # refused before training started
    assert files_under(tmp_path) == before


def test_train_that_diverges_is_a_clean_error(cli, tmp_path):
    spec, data = _train_files(tmp_path)
    before = files_under(tmp_path)
    rc, out, err = cli("train", spec, "--data", data, "--lr", "1e10")
    last = err.strip().splitlines()[-1]  # the progress bar precedes it on stderr
    assert rc == 2 and "Traceback" not in err
    assert last.startswith("symgrad: error: ") and "training diverged" in last and "learning rate" in last
    assert files_under(tmp_path) == before


def test_shape_loops_on_an_expression_model(cli, tmp_path):
    rc, out, err = cli("generate", write(tmp_path, EXPR), "--target", "c", "--shape", "loops", "-o", "out")
    assert_one_clean_error(rc, err, "--shape", "expression models")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# reports that used to crash


def test_report_without_sample_uses_the_seed_0_sample_and_says_so(cli, tmp_path):
    cut = NET.index("[sample]")
    write(tmp_path, NET[:cut], "nosample.toml")
    write(tmp_path, NET[:cut] + "[sample]\nseed = 0\n", "seed0.toml")
    assert cli("report", "nosample.toml", "-o", "a.md")[0] == 0
    assert cli("report", "seed0.toml", "-o", "b.md")[0] == 0
    a, b = (tmp_path / "a.md").read_text(), (tmp_path / "b.md").read_text()
    note = next(line for line in a.splitlines() if re.search(r"no \\?\[sample\\?\]", line))  # Markdown escapes [ ]
    assert "seed 0" in note
    assert a.replace(note + "\n\n", "", 1) == b


def test_report_with_an_unused_parameter_gives_it_gradient_zero(cli, tmp_path):
    rc, out, err = cli("report", write(tmp_path, EXPR), "-o", "r.md")
    assert rc == 0, err
    text = (tmp_path / "r.md").read_text()
    row = next(line for line in text.splitlines() if re.match(r"\| \$\\frac\{\\partial E_\{\\mathrm\{total\}\}\}\{\\partial b\}", line))
    assert row.split("|")[2].strip() == "$0$"
    w = next(line for line in text.splitlines() if re.match(r"\| \$\\frac\{\\partial E_\{\\mathrm\{total\}\}\}\{\\partial w\}", line))
    assert float(w.split("|")[2].strip(" $")) == pytest.approx(2 * (1.5 * 1.0 - 0.25) * 1.0)


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_pdf_report_with_unprintable_unicode_builds(cli, tmp_path):
    text = EXPR.replace('name = "expr"', 'name = "expr"\ndescription = "emoji \U0001F600 CJK \u6f22 Greek \u03b1 l\u0142"')
    rc, out, err = cli("report", write(tmp_path, text), "-o", "r.pdf")
    assert rc == 0, err
    assert (tmp_path / "r.pdf").read_bytes().startswith(b"%PDF")


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_pdflatex_failure_is_one_line():
    from symgrad.errors import ToolError
    from symgrad.report.layout import pdf

    with pytest.raises(ToolError) as info:
        pdf("\\documentclass{article}\\begin{document}\n\\nosuchcommand\n\\end{document}\n")
    assert "\n" not in str(info.value) and "Undefined control sequence" in str(info.value)


# ---------------------------------------------------------------------------------------------
# C packages: swapped in whole


def _package_bytes(folder):
    """{file name: bytes} of a package folder ({} when there is none)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.is_dir() else {}


def test_regenerating_replaces_the_whole_package(tmp_path):
    model = load(ROOT / "examples/mazur.toml")
    generate(model, "c", tmp_path, with_main=True)
    assert (tmp_path / "mazur_c" / "main.c").exists()
    generate(model, "c", tmp_path, dtype="float32")
    assert sorted(_package_bytes(tmp_path / "mazur_c")) == ["__init__.py", "_build.py", "_runtime.py", "mazur.c", "mazur.h"]
    assert b"float" in (tmp_path / "mazur_c" / "mazur.h").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mazur_c"]


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_interrupt_while_writing_keeps_the_old_package(tmp_path, monkeypatch, exchange):
    model = load(ROOT / "examples/mazur.toml")
    generate(model, "c", tmp_path)
    old = _package_bytes(tmp_path / "mazur_c")
    if not exchange:
        monkeypatch.setattr(render, "_exchange", lambda a, b: False)
    real_rename = os.rename
    calls = []

    def rename(a, b):
        calls.append((a, b))
        if len(calls) == 2:  # the new package is about to go in (or, with exchange, nothing renames)
            raise KeyboardInterrupt
        return real_rename(a, b)

    monkeypatch.setattr(os, "rename", rename)
    real_fsync, synced = os.fsync, []

    def fsync(fd):
        synced.append(fd)
        if exchange and len(synced) == 2:
            raise KeyboardInterrupt
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(KeyboardInterrupt):
        generate(model, "c", tmp_path, dtype="float32")
    assert _package_bytes(tmp_path / "mazur_c") == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mazur_c"]


def test_swap_without_renameat2_installs_the_new_package(tmp_path, monkeypatch):
    model = load(ROOT / "examples/mazur.toml")
    generate(model, "c", tmp_path, with_main=True)
    monkeypatch.setattr(render, "_exchange", lambda a, b: False)
    generate(model, "c", tmp_path, dtype="float32")
    assert sorted(_package_bytes(tmp_path / "mazur_c")) == ["__init__.py", "_build.py", "_runtime.py", "mazur.c", "mazur.h"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mazur_c"]


LOOP = """
import sys
from pathlib import Path
sys.path.insert(0, {root!r})
from symgrad.render import write_folder_atomic
versions = [{{p.name: p.read_bytes() for p in Path(d).iterdir()}} for d in {refs!r}]
print("ready", flush=True)
while True:
    for files in versions:
        write_folder_atomic({pkg!r}, files)
"""


def test_killing_generate_at_random_moments_leaves_a_whole_package(tmp_path):
    spec = ROOT / "examples/mazur.toml"
    refs = {}
    for dtype in ("float64", "float32"):
        generate(load(spec), "c", tmp_path / dtype, dtype=dtype, with_main=dtype == "float32")
        refs[dtype] = _package_bytes(tmp_path / dtype / "mazur_c")
    out = tmp_path / "out"
    generate(load(spec), "c", out)
    assert _package_bytes(out / "mazur_c") == refs["float64"]
    # a process that does nothing but swap the two versions in (the writing part of generate), killed at random
    script = LOOP.format(root=str(ROOT), refs=[str(tmp_path / d / "mazur_c") for d in refs], pkg=str(out / "mazur_c"))
    rng = random.Random(13)
    for k in range(12):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.3))
        proc.send_signal(signal.SIGKILL if k % 3 else signal.SIGINT)
        proc.wait(timeout=120)
        proc.stdout.close()
        now = _package_bytes(out / "mazur_c")
        assert any(ref == now for ref in refs.values()), f"kill {k}: the package is a mix of versions"
        leftovers = [p.name for p in out.iterdir() if p.name != "mazur_c"]
        if k % 3 == 0:  # SIGINT: the interrupted write cleans up after itself
            assert leftovers == [], (k, [sorted(os.listdir(out / n)) for n in leftovers])
        for name in leftovers:  # SIGKILL can leave a hidden temporary folder, never a visible package
            assert name.startswith(".mazur_c.")
            shutil.rmtree(out / name)


def test_generate_command_interrupted_leaves_a_whole_package(tmp_path):
    spec = ROOT / "examples/mazur.toml"
    out = tmp_path / "out"
    generate(load(spec), "c", out)
    old = _package_bytes(out / "mazur_c")
    cmd = [sys.executable, "-m", "symgrad", "generate", str(spec), "--target", "c", "--dtype", "float32", "-o", str(out)]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=120)
    duration = time.perf_counter() - start
    new = _package_bytes(out / "mazur_c")
    generate(load(spec), "c", out)
    rng = random.Random(7)
    for k in range(4):  # the whole command, from start-up to the swap, interrupted at a random moment
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.0) * duration)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)
        assert _package_bytes(out / "mazur_c") in (old, new)
        assert sorted(p.name for p in out.iterdir()) == ["mazur_c"]
