"""``symgrad train``: fit a spec's model to a data file and save the trained parameters (and a loss plot)."""

import argparse
import math
import sys
from dataclasses import replace

from symgrad.errors import SpecError
from symgrad.render import check_output_file, write_atomic
from symgrad.spec import load
from symgrad.train.data import load_data, save_params
from symgrad.train.fit import batches_per_epoch, fit, replace_train, validation_rows
from symgrad.train.plot import loss_plot_bytes, plot_format, require_matplotlib
from symgrad.train.progress import progress_bar


def _count(text):
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return n


def _seed(text):
    n = int(text)
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text}")
    return n


def _positive(text):
    v = float(text)
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return v


def _fraction(text):
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1 (exclusive), got {text}")
    return v


def register(subparsers):
    """Add the ``train`` subcommand."""
    t = subparsers.add_parser(
        "train", help="train the model of a spec on a CSV or .npz data file",
        description="Train SPEC's model on FILE with the optimizer and schedule of its [train] table (options override "
                    "it). CSV: a header row naming the input and target columns; .npz: arrays x (N, inputs) and y "
                    "(N, outputs), or x (N, *input_shape) for a network with input_shape.")
    t.add_argument("spec", metavar="SPEC", help="the model's TOML spec file")
    t.add_argument("--data", required=True, metavar="FILE", help="training data (.csv with a header, or .npz with x and y)")
    t.add_argument("--epochs", type=_count, metavar="E", help="passes over the data (default: [train] epochs)")
    t.add_argument("--batch-size", type=_count, metavar="B", help="rows per mini-batch (default: [train] batch_size)")
    t.add_argument("--lr", type=_positive, metavar="LR", help="base learning rate (default: [train] learning_rate)")
    t.add_argument("--seed", type=_seed, metavar="S", help="seed of the batch shuffling (default: [train] seed)")
    t.add_argument("-o", "--out", metavar="PARAMS", help="trained parameters as .npz (default: NAME_params.npz)")
    t.add_argument("--val-split", type=_fraction, metavar="F",
                   help="hold out the last fraction F of the rows (file order, before shuffling) and report their loss")
    t.add_argument("--plot", metavar="FILE", help="write a loss-per-epoch plot, .png or .svg (needs symgrad[plot])")
    t.add_argument("--no-plot", action="store_true", help=argparse.SUPPRESS)  # no plot is the default now
    t.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    t.set_defaults(run=run)


def run(args):
    """Load, train, report the fit, write the parameters (and the plot); returns the exit code."""
    model = load(args.spec)
    out = check_output_file(args.out or f"{model.name}_params.npz", "--out")
    plot = None if args.plot is None or args.no_plot else check_output_file(args.plot, "--plot")
    if plot is not None:
        fmt = plot_format(plot)
        require_matplotlib()
    over = {k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size), ("learning_rate", args.lr),
                              ("seed", args.seed)) if v is not None}
    config = replace(model.train, **over)
    model = replace_train(model, config)
    x, y = load_data(args.data, model)
    held = 0 if args.val_split is None else validation_rows(x.shape[0], args.val_split, "--val-split")
    n = x.shape[0] - held
    per_epoch = batches_per_epoch(n, config.batch_size)
    print(f"{model.name}: {n} samples" + (f" (and {held} held out for validation)" if held else "")
          + f", batch size {config.batch_size} -> {per_epoch} iterations per epoch, "
          f"{config.epochs} epochs, optimizer {config.kind}, lr {config.learning_rate:g} ({config.schedule})")
    try:
        result = fit(model, x, y, val_split=args.val_split,
                     progress=progress_bar(config.epochs, per_epoch, sys.stderr, quiet=args.quiet))
    except FloatingPointError as exc:
        raise SpecError(f"training diverged: {exc} (--lr or [train] learning_rate)", "--lr") from None
    final = result.module.loss(result.params, x[:n], None if y is None else y[:n])
    print(f"final loss on the {n} training samples: {final:.6g} (first epoch {result.losses[0]:.6g})")
    if held:
        print(f"validation loss on the {held} held-out samples after the last epoch: {result.val_losses[-1]:.6g} "
              f"(first epoch {result.val_losses[0]:.6g})")
    print(f"wrote {save_params(out, result.params)}")
    if plot is not None:
        title = f"{model.name}: {config.kind}, lr {config.learning_rate:g}, batch size {config.batch_size}"
        print(f"wrote {write_atomic(plot, loss_plot_bytes(result, title, fmt))}")
    return 0
