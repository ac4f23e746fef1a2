"""Training loop, data files and the train command: the worked examples trained, and bad data refused cleanly."""

import io
import re

import numpy as np
import pytest

import symgrad
from conftest import ROOT
from symgrad.cli import main
from symgrad.errors import SpecError
from symgrad.train.data import load_data
from symgrad.train.fit import batches, batches_per_epoch, fit

EXAMPLES = ROOT / "examples"


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def test_batches_per_epoch_as_the_seeds_count_them():
    assert batches_per_epoch(50_000, 256) == 196
    assert batches_per_epoch(40, 10) == 4 and batches_per_epoch(41, 10) == 5


def test_batches_are_a_seeded_permutation_with_the_short_batch_kept():
    parts = batches(23, 5, np.random.default_rng(7))
    assert [len(b) for b in parts] == [5, 5, 5, 5, 3]
    assert sorted(np.concatenate(parts)) == list(range(23))
    again = batches(23, 5, np.random.default_rng(7))
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))


def test_mazur_10000_steps_of_gradient_descent_match_an_independent_numpy_computation(build):
    model = symgrad.load(EXAMPLES / "mazur.toml")
    mod = build(model)
    x, t = model.sample.x, model.sample.t
    params = mod.init_params()
    state = mod.init_state(params)
    for _ in range(10_000):
        params, state, E = mod.train_step(params, state, x, t)

    # the same updates by hand: biases fixed, every weight moved by -0.5 dE/dw computed at the old weights
    W1, W2 = np.array([[0.15, 0.20], [0.25, 0.30]]), np.array([[0.40, 0.45], [0.50, 0.55]])
    b1, b2 = 0.35, 0.60
    for _ in range(10_000):
        h = sigmoid(W1 @ x + b1)
        o = sigmoid(W2 @ h + b2)
        d_o = (o - t) * o * (1 - o)
        d_h = (W2.T @ d_o) * h * (1 - h)
        W1, W2 = W1 - 0.5 * np.outer(d_h, x), W2 - 0.5 * np.outer(d_o, h)
    o = sigmoid(W2 @ sigmoid(W1 @ x + b1) + b2)
    E_ref = 0.5 * np.sum((t - o) ** 2)

    np.testing.assert_allclose(params["hidden.weight"], W1, rtol=1e-10)
    np.testing.assert_allclose(params["output.weight"], W2, rtol=1e-10)
    assert params["hidden.bias"] == 0.35 and params["output.bias"] == 0.60
    assert mod.loss(params, x, t) == pytest.approx(E_ref, rel=1e-9)
    np.testing.assert_allclose(mod.forward(params, x), o, rtol=1e-10)
    assert E_ref == pytest.approx(3.5102e-05, rel=1e-4)  # the worked example's E_total after 10 000 rounds
    np.testing.assert_allclose(o, [0.015912196, 0.984065734], atol=2e-6)  # its outputs, to the digits it got right


def test_regression_relu_fits_y_equals_2x_plus_3():
    model = symgrad.load(EXAMPLES / "regression_relu.toml")
    x, y = load_data(EXAMPLES / "regression_relu.csv", model)
    assert x.shape == (40, 1) and y.shape == (40, 1)
    result = fit(model, x, y)
    assert len(result.losses) == model.train.epochs
    assert result.losses[-1] < 0.02 < result.losses[0]
    f = result.module.forward
    intercept = float(f(result.params, [0.0])[0])
    slope = float(f(result.params, [1.0])[0]) - intercept
    assert intercept == pytest.approx(3.0, abs=0.1)
    assert slope == pytest.approx(2.0, abs=0.1)


def test_fit_is_reproducible_from_the_seed():
    model = symgrad.load(EXAMPLES / "regression_relu.toml")
    x, y = load_data(EXAMPLES / "regression_relu.csv", model)
    a, b = fit(model, x, y, epochs=3, seed=5), fit(model, x, y, epochs=3, seed=5)
    c = fit(model, x, y, epochs=3, seed=6)
    assert a.losses == b.losses != c.losses
    assert model.train.epochs == 200  # overrides do not touch the model


def test_cli_trains_the_example_end_to_end(tmp_path, capsys):
    out = tmp_path / "p.npz"
    code = main(["train", str(EXAMPLES / "regression_relu.toml"), "--data", str(EXAMPLES / "regression_relu.csv"),
                 "--epochs", "150", "--batch-size", "10", "--lr", "0.1", "--seed", "1", "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "40 samples, batch size 10 -> 4 iterations per epoch" in captured.out
    assert captured.err == ""  # no progress bar when stderr is not a terminal
    params = dict(np.load(out))
    mod = symgrad.import_generated("regression_relu", ROOT / "generated")
    assert set(params) == set(mod.PARAM_NAMES)
    assert float(mod.forward(params, [1.0])[0]) == pytest.approx(5.0, abs=0.15)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary files left


def test_npz_data(tmp_path):
    model = symgrad.load(EXAMPLES / "regression_relu.toml")
    buf = io.BytesIO()
    np.savez(buf, x=np.linspace(0, 1, 7), y=np.linspace(3, 5, 7).reshape(-1, 1))
    (tmp_path / "d.npz").write_bytes(buf.getvalue())
    x, y = load_data(tmp_path / "d.npz", model)
    assert x.shape == (7, 1) and y[-1, 0] == 5.0


BAD = [
    ("missing.csv", "x,z\n1,2\n", r"line 1: missing column\(s\) 'y'"),
    ("width.csv", "x,y\n1,2\n3,4,5\n", r"line 3: row has 3 cells, the header has 2 columns"),
    ("text.csv", "x,y\n1,2\n3,abc\n", r"line 3: column 'y': 'abc' is not a number"),
    ("nan.csv", "x,y\n1,nan\n", r"line 2: column 'y': 'nan' is not finite"),
    ("empty.csv", "", r"the file is empty"),
    ("header.csv", "x,y\n", r"line 1: no data rows"),
    ("data.json", "{}", r"unknown data format"),
    ("nofile.csv", None, r"file not found"),
    ("noy.npz", dict(x=np.zeros((3, 1))), r"missing array 'y'"),
    ("wide.npz", dict(x=np.zeros((3, 2)), y=np.zeros(3)), r"array 'x' has shape \(3, 2\), expected \(N, 1\)"),
    ("rows.npz", dict(x=np.zeros(3), y=np.zeros(4)), r"x has 3 rows but y has 4"),
    ("strings.npz", dict(x=np.array(["a"]), y=np.zeros(1)), r"array 'x' holds <U1, not numbers"),
    ("broken.npz", b"not a zip", r"not a readable .npz file"),
]


@pytest.mark.parametrize("name, content, message", BAD, ids=[b[0] for b in BAD])
def test_bad_data_files_exit_2_naming_the_file_and_leave_no_output(tmp_path, capsys, name, content, message):
    data = tmp_path / name
    if isinstance(content, dict):
        buf = io.BytesIO()
        np.savez(buf, **content)
        data.write_bytes(buf.getvalue())
    elif isinstance(content, bytes):
        data.write_bytes(content)
    elif content is not None:
        data.write_text(content)
    out = tmp_path / "out"
    code = main(["train", str(EXAMPLES / "regression_relu.toml"), "--data", str(data), "--epochs", "1",
                 "-o", str(out / "p.npz"), "--plot", str(out / "loss.png")])
    err = capsys.readouterr().err
    assert code == 2
    assert str(data) in err
    assert re.search(message, err), err
    assert not out.exists()
    with pytest.raises(SpecError):
        load_data(data, symgrad.load(EXAMPLES / "regression_relu.toml"))


@pytest.mark.parametrize("option", [["--epochs", "0"], ["--batch-size", "-1"], ["--lr", "0"], ["--seed", "-2"]])
def test_bad_options_are_usage_errors(tmp_path, option):
    with pytest.raises(SystemExit) as exc:
        main(["train", str(EXAMPLES / "regression_relu.toml"), "--data", str(EXAMPLES / "regression_relu.csv"),
              "-o", str(tmp_path / "p.npz"), *option])
    assert exc.value.code == 2 and not (tmp_path / "p.npz").exists()
