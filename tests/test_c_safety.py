"""Generated C packages are safe to call: no writes into read-only or aliased memory, threads, IEEE NaN/inf parity."""

import shutil
import threading

import numpy as np
import pytest

import symgrad
from conftest import ROOT
from symgrad.api import generate, import_generated
from symgrad.backends.c.build import DEFAULT_CFLAGS, PORTABLE_CFLAGS

CC = shutil.which("gcc") or shutil.which("cc")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler (install gcc)")
# the examples the C backend covers (a committed C package); recurrent examples have NumPy modules only
EXAMPLES = sorted(p.stem for p in (ROOT / "examples").glob("*.toml") if (ROOT / "generated" / f"{p.stem}_c").is_dir())


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SYMGRAD_CACHE", str(tmp_path_factory.getbasetemp() / "symgrad-cache"))


def both(name, out):
    """The NumPy module and the C package of examples/<name>.toml, generated into out."""
    model = symgrad.load(ROOT / "examples" / f"{name}.toml")
    generate(model, "numpy", out)
    generate(model, "c", out)
    return model, import_generated(model.name, out), import_generated(f"{model.name}_c", out)


def data(model, batch, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(batch, model.n_inputs))
    t = rng.dirichlet(np.ones(model.n_outputs), size=batch) if model.n_outputs > 1 else rng.uniform(size=(batch, 1))
    return x, t.reshape((batch,) + getattr(model, "output_shape", (model.n_outputs,)))


@pytest.fixture(scope="module")
def mazur(tmp_path_factory):
    return both("mazur", tmp_path_factory.mktemp("mazur"))


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    return both("mnist_mlp", tmp_path_factory.mktemp("mnist"))


def test_read_only_grad_is_refused_and_left_alone(mazur):
    model, _, cm = mazur
    x, t = data(model, 3, 0)
    theta = cm.pack(cm.init_params())
    raw = bytes(8 * cm.N_PARAMS)
    grad = np.frombuffer(raw, dtype=np.float64)
    with pytest.raises(ValueError, match="grad is read-only"):
        cm.bind(theta, x, t, grad)
    with pytest.raises(ValueError, match="grad is read-only"):
        cm.loss_and_gradients_flat(theta, x, t, grad)
    frozen = np.zeros(cm.N_PARAMS)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="grad is read-only"):
        cm.bind(theta, x, t, frozen)
    assert raw == bytes(8 * cm.N_PARAMS) and not frozen.any()
    ro_inputs = [np.frombuffer(a.tobytes(), dtype=np.float64).reshape(a.shape) for a in (theta, x, t)]
    grad = np.empty(cm.N_PARAMS)
    assert cm.bind(*ro_inputs, grad)() == pytest.approx(cm.loss(cm.unpack(theta), x, t), rel=1e-15)  # C only reads them


@pytest.mark.parametrize("entry", ["bind", "flat"])
def test_grad_overlapping_an_input_is_refused(mazur, entry):
    model, npm, cm = mazur
    n, B = cm.N_PARAMS, 2
    x, t = data(model, B, 1)
    call = (lambda *a: cm.bind(*a)()) if entry == "bind" else cm.loss_and_gradients_flat
    theta = cm.pack(cm.init_params())
    with pytest.raises(ValueError, match="grad overlaps theta"):
        call(theta, x, t, theta)
    buf = np.zeros(n + x.size + t.size)
    xs, ts = buf[:x.size].reshape(x.shape), buf[x.size:x.size + t.size].reshape(t.shape)
    xs[...], ts[...] = x, t
    with pytest.raises(ValueError, match="grad overlaps x"):
        call(theta, xs, ts, buf[x.size - 1:x.size - 1 + n])  # one value shared with x
    with pytest.raises(ValueError, match="grad overlaps t"):
        call(theta, xs, ts, buf[x.size + t.size - 1:x.size + t.size - 1 + n])
    assert np.array_equal(xs, x) and np.array_equal(ts, t)
    one = np.zeros(2 * n)  # disjoint parts of one buffer are fine
    one[:n] = theta
    E = call(one[:n], x, t, one[n:])
    En, gn = npm.loss_and_gradients(npm.init_params(), x, t)
    assert E == pytest.approx(En, rel=1e-12)
    for k, v in cm.unpack(one[n:]).items():  # frozen parameters get 0
        np.testing.assert_allclose(v, gn.get(k, 0.0), rtol=1e-12, atol=1e-300, err_msg=k)


def test_flat_call_checks_shapes_instead_of_writing_out_of_bounds(mazur):
    model, _, cm = mazur
    x, t = data(model, 4, 2)
    theta = cm.pack(cm.init_params())
    with pytest.raises(ValueError, match="grad must be"):
        cm.loss_and_gradients_flat(theta, x, t, np.empty(cm.N_PARAMS - 1))
    with pytest.raises(ValueError, match="t must be"):
        cm.loss_and_gradients_flat(theta, x, t[:2], np.empty(cm.N_PARAMS))
    with pytest.raises(ValueError, match="x must be"):
        cm.loss_and_gradients_flat(theta, np.asfortranarray(x), t, np.empty(cm.N_PARAMS))


def _serial_then_threads(cm, jobs, n_threads=8, repeats=6):
    """Run each job (a no-argument function giving arrays) serially, then all at once in threads; return mismatches."""
    want = [[np.array(a, copy=True) for a in job()] for job in jobs]
    barrier = threading.Barrier(n_threads)
    bad, errors = [], []

    def worker(k):
        try:
            barrier.wait()
            for _ in range(repeats):
                for j in range(k, len(jobs), n_threads):
                    got = jobs[j]()
                    if not all(np.allclose(g, w, rtol=1e-12, atol=0) for g, w in zip(got, want[j])):
                        bad.append(j)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    return bad


@pytest.mark.parametrize("which,batch", [("mazur", 1), ("mazur", 64), ("mnist", 64)])
def test_concurrent_calls_give_the_serial_results(which, batch, request):
    model, _, cm = request.getfixturevalue(which)
    p = cm.init_params()
    theta = cm.pack(p)
    jobs = []
    for seed in range(16):  # each job its own data (so a shared buffer shows as a wrong result)
        x, t = data(model, batch, seed)
        jobs.append(lambda x=x, t=t: [cm.forward(p, x)])
        jobs.append(lambda x=x, t=t: (lambda E, g: [np.float64(E), *g.values()])(*cm.loss_and_gradients(p, x, t)))
        jobs.append(lambda x=x, t=t: [np.float64(cm.loss(p, x, t))])
        grad = np.empty(cm.N_PARAMS)
        jobs.append(lambda x=x, t=t, grad=grad: [np.float64(cm.loss_and_gradients_flat(theta, x, t, grad)), grad])
    assert _serial_then_threads(cm, jobs) == []


@pytest.mark.parametrize("which,batch", [("mazur", 1), ("mazur", 64), ("mnist", 64)])
def test_bound_calls_in_different_threads_give_the_serial_results(which, batch, request):
    model, _, cm = request.getfixturevalue(which)
    theta = cm.pack(cm.init_params())  # shared: C only reads it
    jobs = []
    for seed in range(16):  # one bind per job, each with its own x, t and grad
        x, t = data(model, batch, seed)
        call = cm.bind(theta, x, t, np.empty(cm.N_PARAMS))
        jobs.append(lambda call=call: [np.float64(call()), call.arrays[3]])
    assert _serial_then_threads(cm, jobs) == []


def test_build_flags_do_not_assume_finite_math():
    for flags in (DEFAULT_CFLAGS, PORTABLE_CFLAGS):
        for bad in ("-ffast-math", "-Ofast", "-ffinite-math-only", "-fno-honor-nans", "-fno-honor-infinities"):
            assert bad not in flags


def _same_pattern(got, want, what):
    """The same NaN and inf positions (signs included) and equal finite values."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{what}: NaN positions")
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want), err_msg=f"{what}: +inf positions")
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want), err_msg=f"{what}: -inf positions")
    fin = np.isfinite(want)
    scale = max(1e-300, np.abs(want[fin]).max()) if fin.any() else 1.0
    np.testing.assert_allclose(got[fin], want[fin], rtol=1e-12, atol=1e-12 * scale, err_msg=what)


@pytest.mark.parametrize("name", EXAMPLES)
def test_nan_and_inf_inputs_give_what_the_numpy_module_gives(tmp_path, name):
    model, npm, cm = both(name, tmp_path)
    p = npm.init_params()
    nonfinite = 0
    for bad in (np.nan, np.inf, -np.inf, 1e308, -1e308):
        for batch in (1, 5, 64):  # batch 1: straight-line code; small batches: NumPy's per-sample path; 64: loops
            x, t = data(model, batch, batch)
            for row, col in {(0, 0), (batch - 1, model.n_inputs - 1)}:
                xb = x.copy()
                xb[row, col] = bad
                xb = xb.reshape((batch,) + getattr(model, "input_shape", (model.n_inputs,)))  # graph networks: shaped x
                what = f"{name} x[{row},{col}]={bad} batch {batch}"
                with np.errstate(all="ignore"):
                    yn = npm.forward(p, xb)
                    En, gn = npm.loss_and_gradients(p, xb, t)
                    Ln = npm.loss(p, xb, t)
                _same_pattern(cm.forward(p, xb), yn, f"{what} forward")
                Ec, gc = cm.loss_and_gradients(p, xb, t)
                _same_pattern(Ec, En, f"{what} E")
                _same_pattern(cm.loss(p, xb, t), Ln, f"{what} loss")
                for k in gn:
                    _same_pattern(gc[k], gn[k], f"{what} d/d{k}")
                nonfinite += int(not np.isfinite(En)) + sum(int(not np.isfinite(g).all()) for g in gn.values())
    assert nonfinite > 0  # the inputs did reach the results
