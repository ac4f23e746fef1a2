"""symgrad/backends/c/runtime.py, the Python side every C package carries: imported here as a module over a
compiled example, and checked to be the very file the packages carry."""

import ast
import ctypes
import os
import shutil
import subprocess
import sys
import threading
import types

import numpy as np
import pytest

import symgrad
from conftest import ROOT
from symgrad.backends.c import build, runtime
from symgrad.backends.c.codegen import c_sources

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None,
                                reason="no C compiler (install gcc)")


@pytest.fixture(scope="module")
def mazur(tmp_path_factory):
    """(config namespace, Package) over mazur.c built into a temporary cache."""
    d = tmp_path_factory.mktemp("rt")
    model = symgrad.load(ROOT / "examples/mazur.toml")
    files, _, _ = c_sources(model)
    for name, text in files.items():
        (d / name).write_text(text)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYMGRAD_CACHE", str(d / "cache"))
        lib = ctypes.CDLL(str(build.build_library(d / "mazur.c")))
    shapes = {p.name: p.shape for p in model.params}
    offsets, at = {}, 0
    for p in model.params:
        offsets[p.name], at = at, at + p.size
    config = types.SimpleNamespace(PARAM_SHAPES=shapes, OFFSETS=offsets, TRAINABLE=("hidden.weight", "output.weight"),
                                   N_INPUTS=2, N_OUTPUTS=2, DTYPE=np.float64, CHECK_FINITE=False)
    runtime.set_gemm(lib, "mazur", None)
    return config, runtime.Package(config, lib, "mazur"), model


def params(model):
    return {k: np.asarray(v, dtype=np.float64) for k, v in model.init_params().items()}


def test_loss_and_gradients_match_the_worked_example(mazur):
    _, pkg, model = mazur
    E, g = pkg.loss_and_gradients(params(model), [0.05, 0.1], [0.01, 0.99])
    assert E == pytest.approx(0.298371108760003, rel=1e-14)  # Mazur's worked example
    assert g["output.weight"][0, 0] == pytest.approx(0.0821670405642308, rel=1e-12)
    assert set(g) == {"hidden.weight", "output.weight"}


def test_flat_call_and_bound_call_agree_with_the_dict_call(mazur):
    _, pkg, model = mazur
    p = params(model)
    x, t = np.random.default_rng(0).uniform(size=(5, 2)), np.random.default_rng(1).uniform(size=(5, 2))
    E, g = pkg.loss_and_gradients(p, x, t)
    theta, grad = pkg.pack(p), np.empty(10)
    assert pkg.loss_and_gradients_flat(theta, x, t, grad) == E
    np.testing.assert_array_equal(pkg.unpack(grad)["hidden.weight"], g["hidden.weight"])
    bound = pkg.bind(theta, x, t, np.empty(10))
    assert bound() == E


def test_unpack_views_are_passed_without_packing(mazur):
    _, pkg, model = mazur
    views = pkg.unpack(pkg.pack(params(model)))
    assert pkg.packed(views) is not None
    assert pkg.packed({k: v.copy() for k, v in views.items()}) is None  # small network: other dicts are packed


def test_check_finite_is_read_at_each_call(mazur):
    config, pkg, model = mazur
    x = [np.nan, 0.0]
    assert np.isnan(pkg.forward(params(model), x)).all()
    config.CHECK_FINITE = True
    try:
        with pytest.raises(ValueError, match="x contains NaN"):
            pkg.forward(params(model), x)
    finally:
        config.CHECK_FINITE = False


def test_bind_refuses_a_read_only_or_aliasing_grad(mazur):
    _, pkg, model = mazur
    theta, x, t = pkg.pack(params(model)), np.zeros((3, 2)), np.zeros((3, 2))
    ro = np.empty(10)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="grad is read-only"):
        pkg.bind(theta, x, t, ro)
    with pytest.raises(ValueError, match="grad overlaps theta"):
        pkg.bind(theta, x, t, theta)
    with pytest.raises(ValueError, match="t must be a C-contiguous float64 array of shape"):
        pkg.loss_and_gradients_flat(theta, x, np.zeros((2, 2)), np.empty(10))


def test_each_thread_has_its_own_buffers(mazur):
    _, pkg, _ = mazur
    mine, theirs = pkg.buffers(4), []
    thread = threading.Thread(target=lambda: theirs.append(pkg.buffers(4)))
    thread.start()
    thread.join()
    assert pkg.buffers(4) is mine and theirs[0] is not mine and theirs[0].work.ctypes.data != mine.work.ctypes.data


def test_concurrent_calls_give_the_single_thread_results(mazur):
    _, pkg, model = mazur
    p = params(model)
    rng = np.random.default_rng(2)
    batches = [(rng.uniform(size=(n, 2)), rng.uniform(size=(n, 2))) for n in (1, 3, 7, 3) * 4]
    want = [pkg.loss_and_gradients(p, x, t)[0] for x, t in batches]
    got = [None] * len(batches)

    def work(k):
        for _ in range(50):
            got[k] = pkg.loss_and_gradients(p, *batches[k])[0]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(batches))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert got == want


@pytest.mark.parametrize("module", [runtime, build])
def test_the_copied_modules_import_only_the_standard_library_and_numpy(module):
    tree = ast.parse(open(module.__file__).read())
    names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert names <= set(sys.stdlib_module_names) | {"numpy"}, names


def test_packages_carry_these_very_files():
    for name, module in (("_runtime.py", runtime), ("_build.py", build)):
        carried = (ROOT / "generated" / "mazur_c" / name).read_text()
        assert carried.split("\n", 1)[1] == open(module.__file__).read()


def test_a_copied_package_works_without_symgrad(tmp_path):
    shutil.copytree(ROOT / "generated" / "mazur_c", tmp_path / "mazur_c", ignore=shutil.ignore_patterns("__pycache__"))
    code = ("import sys; sys.modules['symgrad'] = None; sys.path.insert(0, sys.argv[1]); import mazur_c; "
            "print(mazur_c.loss(mazur_c.init_params(), [0.05, 0.1], [0.01, 0.99]))")  # import symgrad would fail
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=tmp_path, capture_output=True, text=True,
                         env=dict(env, SYMGRAD_CACHE=str(tmp_path / "cache")))
    assert res.returncode == 0, res.stderr
    assert float(res.stdout) == pytest.approx(0.298371108760003, rel=1e-14)
