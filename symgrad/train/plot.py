"""The loss curves of a training run as a matplotlib Figure, written as PNG or SVG (matplotlib is optional)."""

import io
from pathlib import Path

import numpy as np

from symgrad.errors import SpecError, ToolError

FORMATS = {".png": "png", ".svg": "svg"}
INSTALL_HINT = "pip install 'symgrad[plot]'"


def plot_format(path, key="--plot"):
    """'png' or 'svg' from the file's suffix; any other suffix is a SpecError naming key."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise SpecError(f"{path}: unknown plot format {suffix or '(no suffix)'!r}; expected a .png or .svg file", key)
    return FORMATS[suffix]


def require_matplotlib(key="--plot"):
    """Import matplotlib, or raise a ToolError saying that key needs it and how to install it."""
    try:
        import matplotlib
        import matplotlib.figure  # noqa: F401
    except ImportError:
        raise ToolError(f"{key} needs matplotlib, which is not installed: {INSTALL_HINT}") from None
    return matplotlib


def loss_figure(result, title):
    """A matplotlib Figure of the training (and validation) loss per epoch, log-scaled when every loss is positive."""
    require_matplotlib("loss_figure")
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(6.4, 4.0), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    curves = [("training", result.losses)] + ([("validation", result.val_losses)] if result.val_losses else [])
    for label, losses in curves:
        ax.plot(np.arange(1, len(losses) + 1), losses, label=label, marker="." if len(losses) < 30 else None)
    values = np.concatenate([np.asarray(v, dtype=float) for _, v in curves])
    if np.all(values > 0):
        _log_axis(ax, values)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title, parse_math=False)
    ax.grid(True, which="major", alpha=0.4)
    ax.grid(True, which="minor", alpha=0.15)
    ax.legend()
    return fig


def _log_axis(ax, values):
    """Log y scale with plain-number tick labels; within two decades the 2x and 5x ticks are labelled too."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_yscale("log")
    label = FuncFormatter(lambda v, _: f"{v:.3g}")
    ax.yaxis.set_major_formatter(label)
    if values.max() / values.min() < 100:
        ax.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        ax.yaxis.set_minor_formatter(label)
    else:
        ax.yaxis.set_minor_formatter(NullFormatter())


def loss_plot_bytes(result, title, fmt):
    """The loss figure encoded as 'png' or 'svg'; the SVG is byte-for-byte the same for the same losses."""
    matplotlib = require_matplotlib()
    fig = loss_figure(result, title)
    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "symgrad"}):
        fig.savefig(buf, format=fmt, metadata={"Date": None} if fmt == "svg" else {"Software": None})
    return buf.getvalue()
