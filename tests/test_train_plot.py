"""The loss plot (PNG, SVG), the validation split and the progress bar of ``symgrad train``."""

import io
import struct
import sys

import numpy as np
import pytest

import symgrad
from conftest import ROOT
from symgrad.cli import main
from symgrad.errors import SpecError, ToolError
from symgrad.train.data import load_data
from symgrad.train.fit import Result, batch_mean_loss, fit, validation_rows
from symgrad.train.plot import loss_figure
from symgrad.train.progress import Progress, Silent, TqdmProgress, progress_bar

EXAMPLES = ROOT / "examples"
SPEC, DATA = EXAMPLES / "regression_relu.toml", EXAMPLES / "regression_relu.csv"


def train(tmp_path, capsys, *options):
    """(exit status, stdout, stderr) of a short ``symgrad train`` of the regression example writing into tmp_path."""
    code = main(["train", str(SPEC), "--data", str(DATA), "--epochs", "5", "--seed", "1",
                 "-o", str(tmp_path / "p.npz"), *map(str, options)])
    out, err = capsys.readouterr()
    return code, out, err


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_png_plot_is_a_valid_png_of_the_figure_size(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    code, out, err = train(tmp_path, capsys, "--plot", tmp_path / "loss.png")
    assert code == 0, err
    png = (tmp_path / "loss.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    assert struct.unpack(">II", png[16:24]) == (640, 400)
    assert png.endswith(b"IEND\xaeB`\x82")


def test_svg_plot_names_the_model_and_is_the_same_bytes_every_run(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    for name in ("a.svg", "b.SVG"):
        code, out, err = train(tmp_path, capsys, "--val-split", "0.25", "--plot", tmp_path / name)
        assert code == 0, err
    a, b = (tmp_path / "a.svg").read_bytes(), (tmp_path / "b.SVG").read_bytes()
    assert a.startswith(b"<?xml") and a == b
    text = a.decode()
    assert "regression_relu: sgd" in text and "<dc:date>" not in text
    assert "training" in text and "validation" in text  # legend entries, kept as text in SVG comments


def test_loss_figure_is_a_labelled_matplotlib_figure_on_a_log_scale():
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    fig = loss_figure(Result({}, {}, [4.0, 1.0, 0.01], None, [5.0, 2.0, 0.1]), "net $x$")
    assert isinstance(fig, Figure)
    ax, = fig.axes
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title(), ax.get_yscale()) == ("epoch", "loss", "net $x$", "log")
    assert [line.get_label() for line in ax.get_lines()] == ["training", "validation"]
    assert loss_figure(Result({}, {}, [1.0, -2.0], None), "t").axes[0].get_yscale() == "linear"


def test_val_split_holds_out_the_last_rows_and_records_their_loss_each_epoch():
    model = symgrad.load(SPEC)
    x, y = load_data(DATA, model)
    held = validation_rows(len(x), 0.25)
    assert held == 10
    with_val = fit(model, x, y, epochs=4, seed=3, val_split=0.25)
    y_bad = y.copy()
    y_bad[-held:] = 1e6  # the held-out rows do not touch training
    alone = fit(model, x[:-held], y[:-held], epochs=4, seed=3)
    bad = fit(model, x, y_bad, epochs=4, seed=3, val_split=0.25)
    assert with_val.losses == alone.losses == bad.losses
    assert all(np.array_equal(with_val.params[k], alone.params[k]) for k in alone.params)
    assert len(with_val.val_losses) == 4 and alone.val_losses == []
    mod = with_val.module
    assert with_val.val_losses[-1] == pytest.approx(batch_mean_loss(mod, with_val.params, x[-held:], y[-held:], 32))
    assert bad.val_losses[-1] > 1e10


def test_cli_val_split_reports_the_held_out_rows(tmp_path, capsys):
    code, out, err = train(tmp_path, capsys, "--val-split", "0.2", "--batch-size", "10")
    assert code == 0, err
    assert "32 samples (and 8 held out for validation), batch size 10 -> 4 iterations per epoch" in out
    assert "validation loss on the 8 held-out samples" in out


@pytest.mark.parametrize("name", ["loss.pdf", "loss", "loss.png.txt"])
def test_unknown_plot_suffix_fails_before_training(tmp_path, capsys, name):
    code, out, err = train(tmp_path, capsys, "--plot", tmp_path / name)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "--plot" in err and ".png or .svg" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", ["0", "1", "-0.1", "1.5", "half", "nan"])
def test_bad_val_split_is_a_usage_error(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exc:
        train(tmp_path, capsys, "--val-split", value)
    assert exc.value.code == 2 and "--val-split" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_val_split_that_leaves_nothing_to_train_on_fails_before_training(tmp_path, capsys):
    code, out, err = train(tmp_path, capsys, "--val-split", "0.99")
    assert code == 2 and out == "" and "--val-split" in err and "no rows to train on" in err
    with pytest.raises(SpecError, match="val_split"):
        validation_rows(1, 0.5)


def test_plot_without_matplotlib_fails_before_training_with_the_install_hint(tmp_path, capsys, monkeypatch):
    for name in ("matplotlib", "matplotlib.figure"):
        monkeypatch.setitem(sys.modules, name, None)  # import matplotlib now raises ImportError
    code, out, err = train(tmp_path, capsys, "--plot", tmp_path / "loss.png")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "pip install 'symgrad[plot]'" in err and "--plot" in err
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ToolError, match=r"symgrad\[plot\]"):
        loss_figure(Result({}, {}, [1.0], None), "t")


def test_progress_is_silent_off_a_terminal_and_with_quiet():
    assert isinstance(progress_bar(3, 4, io.StringIO()), Silent)
    assert isinstance(progress_bar(3, 4, Terminal(), quiet=True), Silent)


def run_bar(bar):
    for epoch in (1, 2):
        for it in (1, 2):
            bar.update(epoch, it, 0.5 / epoch)
        bar.end_epoch(epoch, 0.25 / epoch, 0.3 / epoch)
    bar.close()


def test_tqdm_bar_shows_epoch_rate_and_running_loss():
    pytest.importorskip("tqdm")
    stream = Terminal()
    bar = progress_bar(2, 2, stream)
    assert isinstance(bar, TqdmProgress)
    run_bar(bar)
    last = stream.getvalue().split("\r")[-1]
    assert "epoch 2/2" in last and "4/4" in last and "batch/s" in last and "loss 0.125, val 0.15" in last


def test_without_tqdm_the_plain_bar_is_drawn(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    stream = Terminal()
    bar = progress_bar(2, 2, stream)
    assert isinstance(bar, Progress)
    run_bar(bar)
    assert stream.getvalue().endswith("\repoch 2/2 [" + "#" * 24 + "] 2/2 loss 0.125 val 0.15\n")
