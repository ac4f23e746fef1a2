"""The C backend: compiles warning-free, agrees with the NumPy module and finite differences, runs clean."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import symgrad
from conftest import ROOT, central_differences
from symgrad.api import generate, import_generated
from symgrad.backends.c.codegen import c_sources
from test_gradients import make_net, output_activation, sample

CC = shutil.which("gcc") or shutil.which("cc")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler (install gcc)")
# the examples with a committed C package (all of them, recurrent ones included)
EXAMPLES = sorted(p.stem for p in (ROOT / "examples").glob("*.toml") if (ROOT / "generated" / f"{p.stem}_c").is_dir())
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SYMGRAD_CACHE", str(tmp_path_factory.getbasetemp() / "symgrad-cache"))


def both(model, tmp_path, **options):
    generate(model, "numpy", tmp_path)
    generate(model, "c", tmp_path, **options)
    return import_generated(model.name, tmp_path), import_generated(f"{model.name}_c", tmp_path)


def assert_same(npm, cm, x, y, rtol=1e-12, one=True):
    if one and len(x) > 1:  # batch 1 first: hybrid code takes a path of its own there
        assert_same(npm, cm, x[:1], y[:1], rtol, one=False)
    p = npm.init_params()
    En, gn = npm.loss_and_gradients(p, x, y)
    Ec, gc = cm.loss_and_gradients(p, x, y)
    assert Ec == pytest.approx(En, rel=rtol, abs=1e-300)
    assert set(gc) == set(gn)
    for k in gn:
        np.testing.assert_allclose(gc[k], gn[k], rtol=rtol, atol=rtol * max(1e-300, np.abs(gn[k]).max()), err_msg=k)
    np.testing.assert_allclose(cm.forward(p, x), npm.forward(p, x), rtol=rtol)
    assert cm.loss(p, x, y) == pytest.approx(npm.loss(p, x, y), rel=rtol)


@pytest.mark.parametrize("name", EXAMPLES)
def test_examples_agree_with_numpy(tmp_path, name):
    model = symgrad.load(ROOT / "examples" / f"{name}.toml")
    npm, cm = both(model, tmp_path)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(5,) + getattr(model, "input_shape", (model.n_inputs,)))
    y = rng.dirichlet(np.ones(model.n_outputs), size=5) if model.n_outputs > 1 else rng.uniform(size=(5, 1))
    assert_same(npm, cm, x, y.reshape((5,) + getattr(model, "output_shape", (model.n_outputs,))))


@pytest.mark.parametrize("shape", ["unrolled", "loops", "hybrid"])
@pytest.mark.parametrize("act", ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "silu", "gelu",
                                 "x*tanh(log(1 + exp(x)))"])
def test_activations_in_both_shapes(tmp_path, act, shape):
    model = make_net([3, 4, 2], act, "identity", ("half_sse", None), seed=2)
    npm, cm = both(model, tmp_path, shape=shape)
    x, y = sample(model, 6, 1)
    assert_same(npm, cm, x, y)


@pytest.mark.parametrize("shape", ["unrolled", "loops", "hybrid"])
@pytest.mark.parametrize("loss", [("half_sse", None), ("sse", None), ("mse", None), ("bce", None),
                                  ("softmax_cross_entropy", None), (None, "(t - y)**4/4 + abs(y)")], ids=str)
def test_losses_in_both_shapes_and_finite_differences(tmp_path, loss, shape):
    model = make_net([3, 5, 3], "tanh", output_activation(loss), loss, seed=4, reduction="mean")
    npm, cm = both(model, tmp_path, shape=shape)
    x, y = sample(model, 7, 3)
    assert_same(npm, cm, x, y)
    p = cm.init_params()
    fd = central_differences(cm, p, x, y)
    g = cm.gradients(p, x, y)
    for k in g:
        np.testing.assert_allclose(g[k], fd[k], rtol=1e-6, atol=1e-9)


def test_expression_model(tmp_path):
    npm, cm = both(symgrad.load(ROOT / "examples/sigmoid_neuron.toml"), tmp_path)
    E, g = cm.loss_and_gradients(cm.init_params(), [1.0], [0.0])
    assert E == 0.5 and g["w"] == 0.25 and g["b"] == 0.25


def test_float32(tmp_path):
    model = make_net([4, 6, 3], "tanh", "sigmoid", ("bce", None), seed=5)
    npm, cm = both(model, tmp_path, dtype="float32")
    x, y = sample(model, 8, 2)
    assert cm.DTYPE == np.float32
    p = cm.init_params()
    g32 = cm.gradients(p, x, y)
    m64 = both(model, tmp_path / "f64")[0]
    g64 = m64.gradients(m64.init_params(), x, y)
    for k in g64:
        assert g32[k].dtype == np.float32
        np.testing.assert_allclose(g32[k], g64[k], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["mazur", "mnist_mlp", "sigmoid_neuron"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_strict_compile_gcc_and_clang(tmp_path, name, dtype):
    model = symgrad.load(ROOT / "examples" / f"{name}.toml")
    generate(model, "c", tmp_path, dtype=dtype, with_main=True, blas="auto")
    d = tmp_path / f"{name}_c"
    for cc in filter(None, [shutil.which("gcc"), shutil.which("clang")]):
        for extra in ([], ["-DSYMGRAD_USE_BLAS"]):
            res = subprocess.run([cc, *STRICT, "-O2", *extra, "-c", str(d / f"{name}.c"), "-o", str(tmp_path / "o.o")],
                                 capture_output=True, text=True)
            if extra and "cblas.h" in res.stderr:
                continue  # OpenBLAS headers not installed
            assert res.returncode == 0, res.stderr
        res = subprocess.run([cc, *STRICT, "-O2", "-c", str(d / "main.c"), "-I", str(d), "-o", str(tmp_path / "m.o")],
                             capture_output=True, text=True)
        assert res.returncode == 0, res.stderr


def test_main_driver_prints_the_worked_example(tmp_path):
    generate(symgrad.load(ROOT / "examples/mazur.toml"), "c", tmp_path, with_main=True)
    d = tmp_path / "mazur_c"
    exe = tmp_path / "mazur_main"
    subprocess.run([CC, *STRICT, "-O2", str(d / "main.c"), str(d / "mazur.c"), "-lm", "-o", str(exe)], check=True)
    out = dict(line.split(" = ") for line in subprocess.run([str(exe)], capture_output=True, text=True, check=True)
               .stdout.splitlines())
    assert round(float(out["output o1"]), 8) == 0.75136507
    assert round(float(out["output o2"]), 9) == 0.772928465
    assert round(float(out["loss E"]), 9) == 0.298371109
    assert round(float(out["gradient w5"]), 9) == 0.082167041
    assert round(float(out["gradient w1"]), 9) == 0.000438568
    bench = subprocess.run([str(exe), "--bench", "1000", "4"], capture_output=True, text=True, check=True).stdout
    assert "us per gradient call" in bench


@pytest.mark.parametrize("name", ["mazur", "mnist_mlp", "single_neuron"])
def test_sanitizers_report_nothing(tmp_path, name):
    generate(symgrad.load(ROOT / "examples" / f"{name}.toml"), "c", tmp_path, with_main=True)
    d = tmp_path / f"{name}_c"
    exe = tmp_path / "san"
    res = subprocess.run([CC, "-std=c99", "-g", "-O1", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                          str(d / "main.c"), str(d / f"{name}.c"), "-lm", "-o", str(exe)], capture_output=True, text=True)
    if res.returncode != 0 and "asan" in res.stderr.lower():
        pytest.skip("the compiler has no AddressSanitizer runtime")
    assert res.returncode == 0, res.stderr
    run = subprocess.run([str(exe), "--bench", "3", "5"], capture_output=True, text=True,
                         env=dict(os.environ, ASAN_OPTIONS="detect_leaks=1"))
    assert run.returncode == 0, run.stderr
    assert "runtime error" not in run.stderr and "ERROR" not in run.stderr


def test_generation_is_deterministic_and_committed_copies_are_current(tmp_path):
    for name in EXAMPLES:
        model = symgrad.load(ROOT / "examples" / f"{name}.toml")
        files, _, _ = c_sources(model)
        again, _, _ = c_sources(symgrad.load(ROOT / "examples" / f"{name}.toml"))
        assert files == again
        generate(model, "c", tmp_path)
        for f in (tmp_path / f"{name}_c").iterdir():
            committed = ROOT / "generated" / f"{name}_c" / f.name
            assert committed.exists() and committed.read_bytes() == f.read_bytes(), \
                f"generated/{name}_c/{f.name} is stale: run `symgrad generate examples/{name}.toml --target c`"


def test_second_import_does_not_recompile_and_a_changed_source_does(tmp_path, monkeypatch):
    model = symgrad.load(ROOT / "examples/mazur.toml")
    generate(model, "c", tmp_path)
    first = import_generated("mazur_c", tmp_path).LIBRARY
    stamp = first.stat().st_mtime_ns
    assert import_generated("mazur_c", tmp_path).LIBRARY == first and first.stat().st_mtime_ns == stamp
    src = tmp_path / "mazur_c" / "mazur.c"
    src.write_text(src.read_text() + "\n/* changed */\n")
    second = import_generated("mazur_c", tmp_path).LIBRARY
    assert second != first
    monkeypatch.setenv("CFLAGS", "-O1")
    assert import_generated("mazur_c", tmp_path).LIBRARY not in (first, second)  # the command is in the key


def test_a_compiler_without_march_native_gets_portable_flags(tmp_path, monkeypatch):
    cc = tmp_path / "oldcc"
    cc.write_text(f'#!/bin/sh\nfor a in "$@"; do [ "$a" = -march=native ] && {{ echo "unknown option $a" >&2; exit 1; }}; done\n'
                  f'exec {CC} "$@"\n')
    cc.chmod(0o755)
    monkeypatch.setenv("CC", str(cc))
    monkeypatch.delenv("CFLAGS", raising=False)
    model = symgrad.load(ROOT / "examples/mazur.toml")
    both(model, tmp_path)
    npm, cm = import_generated("mazur", tmp_path), import_generated("mazur_c", tmp_path)
    x, y = sample(model, 3, 0)
    assert_same(npm, cm, x, y)


def test_no_compiler_gives_a_clear_error(tmp_path):
    generate(symgrad.load(ROOT / "examples/mazur.toml"), "c", tmp_path)
    code = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import mazur_c"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, CC="/nonexistent/cc"))
    assert res.returncode != 0
    assert "no C compiler found" in res.stderr and "install gcc" in res.stderr
    cli = subprocess.run([sys.executable, "-m", "symgrad", "generate", "examples/mazur.toml", "--target", "c", "--build",
                          "-o", str(tmp_path / "cli")], cwd=ROOT, capture_output=True, text=True,
                         env=dict(os.environ, CC="/nonexistent/cc"))
    assert cli.returncode == 1 and "Traceback" not in cli.stderr
    assert cli.stderr.startswith("symgrad: error: no C compiler found") and "install gcc" in cli.stderr


def test_cli_target_c_with_build(tmp_path):
    res = subprocess.run([sys.executable, "-m", "symgrad", "generate", "examples/mazur.toml", "--target", "c", "--build",
                          "--with-main", "-o", str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "mazur_c").iterdir() if not p.name.startswith("__pycache__")) == \
        ["__init__.py", "_build.py", "_runtime.py", "main.c", "mazur.c", "mazur.h"]


def test_train_step_runs_on_the_c_module(tmp_path):
    model = symgrad.load(ROOT / "examples/mazur.toml")
    npm, cm = both(model, tmp_path)
    p_n, p_c = npm.init_params(), cm.init_params()
    s_n, s_c = npm.init_state(p_n), cm.init_state(p_c)
    for _ in range(5):
        p_n, s_n, _ = npm.train_step(p_n, s_n, [0.05, 0.10], [0.01, 0.99])
        p_c, s_c, _ = cm.train_step(p_c, s_c, [0.05, 0.10], [0.01, 0.99])
    for k in p_n:
        np.testing.assert_allclose(p_c[k], p_n[k], rtol=1e-13)


@pytest.mark.parametrize("name", ["mazur", "regression_relu", "single_neuron"])
def test_valgrind_memcheck_reports_nothing(tmp_path, name):
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        pytest.skip("valgrind is not installed (Debian package valgrind)")
    generate(symgrad.load(ROOT / "examples" / f"{name}.toml"), "c", tmp_path, with_main=True)
    d = tmp_path / f"{name}_c"
    exe = tmp_path / "main"
    subprocess.run([CC, *STRICT, "-g", "-O1", str(d / "main.c"), str(d / f"{name}.c"), "-lm", "-o", str(exe)], check=True)
    run = subprocess.run([valgrind, "--error-exitcode=3", "--leak-check=full", "--errors-for-leak-kinds=all",
                          str(exe), "--bench", "3", "5"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "ERROR SUMMARY: 0 errors" in run.stderr and "All heap blocks were freed" in run.stderr


def test_main_driver_of_a_wide_network_keeps_its_arrays_off_the_stack(tmp_path):
    model = symgrad.Network("wide", 2048, [symgrad.Dense("h", 1024, activation="tanh"), symgrad.Dense("o", 2)],
                            symgrad.get_loss("half_sse"), init="xavier", seed=0, sample=symgrad.Sample(None, None, seed=0))
    generate(model, "c", tmp_path, with_main=True, shape="loops")
    d = tmp_path / "wide_c"
    exe = tmp_path / "wide_main"
    subprocess.run([CC, "-std=c99", "-O1", str(d / "main.c"), str(d / "wide.c"), "-lm", "-o", str(exe)], check=True)
    run = subprocess.run(["sh", "-c", f"ulimit -s 8192 && {exe}"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr  # 2 M parameters: 16 MiB of gradient would overflow an 8 MiB stack
    assert "gradient norm h.weight" in run.stdout


def test_flat_and_bound_calls_match_the_dict_contract(tmp_path):
    model = symgrad.load(ROOT / "examples/mazur_torch.toml")
    _, cm = both(model, tmp_path)
    p = cm.init_params()
    x = np.array([[0.05, 0.10], [0.3, -0.2]])
    t = np.array([[0.01, 0.99], [0.5, 0.5]])
    E, g = cm.loss_and_gradients(p, x, t)
    theta, grad = cm.pack(p), np.empty(cm.N_PARAMS)
    assert cm.loss_and_gradients_flat(theta, x, t, grad) == pytest.approx(E, rel=1e-15)
    call = cm.bind(theta, x, t, np.zeros(cm.N_PARAMS))
    assert call() == pytest.approx(E, rel=1e-15) and call() == pytest.approx(E, rel=1e-15)
    for k in g:
        np.testing.assert_array_equal(cm.unpack(grad)[k], g[k])
        np.testing.assert_array_equal(cm.unpack(call.arrays[3])[k], g[k])
    with pytest.raises(ValueError, match="theta must be"):
        cm.bind(theta[:-1], x, t, grad)


def test_argument_checks_match_the_numpy_module(tmp_path):
    npm, cm = both(symgrad.load(ROOT / "examples/mazur.toml"), tmp_path)
    p = npm.init_params()
    x, t = np.array([[0.05, 0.10], [0.3, -0.2]]), np.array([[0.01, 0.99], [0.5, 0.5]])
    bad = [({k: v for k, v in p.items() if k != "output.weight"}, x, t), ({**p, "hidden.weight": np.zeros(4)}, x, t),
           (p, x[:, :1], t), (p, x, t[:1]), (p, np.array([["a", "b"]]), t[:1]), (p, np.zeros((0, 2)), t[:0]),
           ({**p, "hidden.bias": "z"}, x, t)]
    for args in bad:
        with pytest.raises(ValueError) as want:
            npm.loss_and_gradients(*args)
        with pytest.raises(ValueError) as got:
            cm.loss_and_gradients(*args)
        assert str(got.value) == str(want.value)
    odd = {k: np.asarray(v.T, dtype=np.float32) for k, v in p.items()}  # converted, not rejected
    for args in [(odd, x[:, ::-1][:, ::-1], np.asfortranarray(t)), (p, x.tolist(), t.tolist()), (p, x[0], t[0])]:
        E, g = cm.loss_and_gradients(*args)
        En, gn = npm.loss_and_gradients(*args)
        assert E == pytest.approx(En, rel=1e-12)
        for k in gn:
            np.testing.assert_allclose(g[k], gn[k], rtol=1e-12)
    np.testing.assert_allclose(cm.forward(p, x[0]), npm.forward(p, x[0]), rtol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_random_architectures_agree_with_numpy(tmp_path, seed):
    rng = np.random.default_rng(seed)
    acts = ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "silu", "gelu"]
    loss = [("half_sse", None), ("sse", None), ("mse", None), ("bce", None), ("softmax_cross_entropy", None),
            (None, "(t - y)**2 + y**2/10")][rng.integers(6)]
    sizes = [int(n) for n in rng.integers(1, 6, size=rng.integers(2, 5))]
    if loss[0] == "softmax_cross_entropy":
        sizes[-1] = max(2, sizes[-1])
    model = make_net(sizes, str(rng.choice(acts)), output_activation(loss), loss, seed=seed,
                     reduction=str(rng.choice(["sum", "mean"])))
    shape = ["unrolled", "loops", "hybrid"][seed % 3]
    npm, cm = both(model, tmp_path, shape=shape)
    x, y = sample(model, int(rng.integers(2, 9)), seed)
    assert_same(npm, cm, x, y)
    assert_same(npm, cm, x[:1], y[:1])  # unrolled code has its own path for one sample


def test_loop_code_uses_the_process_blas_and_agrees_with_its_own_kernels(tmp_path, monkeypatch):
    model = symgrad.load(ROOT / "examples/mnist_mlp.toml")
    npm, cm = both(model, tmp_path, shape="loops")
    if cm.HOST_GEMM is None:
        pytest.skip("NumPy's BLAS here is not an ILP64 OpenBLAS with cblas_dgemm64_")
    p = npm.init_params()
    rng = np.random.default_rng(3)
    x, t = rng.uniform(size=(37, 784)), np.eye(10)[rng.integers(0, 10, 37)]
    assert_same(npm, cm, x, t)  # matrix products by NumPy's own BLAS
    theta, grad = cm.pack(p), np.empty(cm.N_PARAMS)
    E_host = cm.loss_and_gradients_flat(theta, x, t, grad)
    g_host = grad.copy()
    cm._lib.mnist_mlp_set_gemm(None)  # back to the generated kernels
    E_own = cm.loss_and_gradients_flat(theta, x, t, grad)
    assert E_own == pytest.approx(E_host, rel=1e-12)
    np.testing.assert_allclose(grad, g_host, rtol=1e-10, atol=1e-14)
    cm._lib.mnist_mlp_set_gemm(cm._host[0])
    monkeypatch.setenv("SYMGRAD_HOST_BLAS", "0")
    own = import_generated("mnist_mlp_c", tmp_path)
    assert own.HOST_GEMM is None
    assert own.loss_and_gradients_flat(theta, x, t, grad) == E_own  # the import switched the shared library back


def test_parameters_that_are_views_of_one_vector_are_not_packed(tmp_path):
    model = symgrad.load(ROOT / "examples/mnist_mlp.toml")
    npm, cm = both(model, tmp_path, shape="loops")
    p = cm.init_params()
    assert cm._packed(p) is not None  # views of one vector in the C layout
    copies = {k: v.copy() for k, v in p.items()}
    assert cm._packed(copies) is None
    rng = np.random.default_rng(5)
    x, t = rng.uniform(size=(9, 784)), np.eye(10)[rng.integers(0, 10, 9)]
    E_views, g_views = cm.loss_and_gradients(p, x, t)
    E_copies, g_copies = cm.loss_and_gradients(copies, x, t)
    assert E_views == E_copies
    for k in g_views:
        np.testing.assert_array_equal(g_views[k], g_copies[k])
    shuffled = dict(p)
    shuffled["fc3.bias"] = p["fc2.bias"][:10]  # a view of the same vector, at the wrong offset
    assert cm._packed(shuffled) is None


def test_small_network_dicts_from_init_params_are_not_packed_and_stay_correct(tmp_path):
    model = symgrad.load(ROOT / "examples/mazur.toml")
    npm, cm = both(model, tmp_path)
    p = cm.init_params()
    assert cm._packed(p) is not None  # unpack() remembered these views
    copies = {k: v.copy() for k, v in p.items()}
    assert cm._packed(copies) is None  # small network: other dicts are packed
    x, t = sample(model, 3, 1)
    E1, g1 = cm.loss_and_gradients(p, x, t)
    p["hidden.weight"][0, 0] += 0.25  # in place: the vector the views share changes too
    copies["hidden.weight"][0, 0] += 0.25
    E2, g2 = cm.loss_and_gradients(p, x, t)
    assert E2 != E1 and E2 == cm.loss_and_gradients(copies, x, t)[0] == pytest.approx(npm.loss(copies, x, t), rel=1e-14)
    p["hidden.weight"] = p["hidden.weight"] * 2  # a new array: no longer a view, packed again
    assert cm._packed(p) is None
    np.testing.assert_allclose(cm.gradients(p, x, t)["hidden.weight"], npm.gradients(p, x, t)["hidden.weight"], rtol=1e-13)
    assert not np.shares_memory(g1["hidden.weight"], g2["hidden.weight"])  # every call returns fresh arrays


def test_softmax_output_with_abs_in_the_loss_agrees_in_loops(tmp_path):
    """l = (t - y)^4/4 + |y| on a softmax output: the simplified h = y dl/dy was a Piecewise at y = 0 whose
    ternary gcc 12 (-O3 -march=native -fno-trapping-math) miscompiled in the row-sum loop from batch 4 on."""
    model = make_net([2, 2, 3], "gelu", "softmax", (None, "(t - y)**4/4 + abs(y)"), seed=1, reduction="mean")
    npm, cm = both(model, tmp_path, shape="loops")
    for batch in (4, 8, 17):
        x, y = sample(model, batch, batch)
        assert_same(npm, cm, x, y)
