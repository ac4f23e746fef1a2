"""Training a generated module: load data, shuffle mini-batches, step the optimizer, plot and save.

The loop calls only the generated module's ``init_state`` and ``train_step`` (see templates/numpy/
train.py.j2), so NumPy and C modules train the same way. An epoch is ceil(N / B) iterations over a
fresh seeded permutation; the last, shorter batch is kept.
"""

import copy
import csv
import io
import math
import struct
import sys
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass, replace

import numpy as np

from symgrad.errors import SpecError
from symgrad.render import write_atomic


def load_data(path, model):
    """(x, y) arrays of shape (N, n_inputs) and (N, n_outputs) from a CSV with a header, or an .npz with x and y."""
    path = str(path)
    if path.endswith(".npz"):
        return _load_npz(path, model)
    if path.endswith(".csv") or path.endswith(".txt"):
        return _load_csv(path, model)
    raise SpecError("unknown data format: expected a .csv file (with a header row) or an .npz file (with x and y)", file=path)


def _read_text(path):
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return f.read()
    except FileNotFoundError:
        raise SpecError("file not found", file=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read file: {exc}", file=path) from None


def _load_csv(path, model):
    rows = [(n, r) for n, r in enumerate(csv.reader(io.StringIO(_read_text(path))), 1) if any(c.strip() for c in r)]
    if not rows:
        raise SpecError("the file is empty (expected a header row naming the columns, then rows of numbers)", file=path)
    line, header = rows[0]
    header = [h.strip() for h in header]
    wanted = list(model.inputs) + (list(model.outputs) if model.loss.uses_target else [])
    missing = [c for c in wanted if c not in header]
    if missing:
        raise SpecError(f"missing column(s) {', '.join(map(repr, missing))}; the header has {', '.join(map(repr, header))} "
                        f"(inputs {list(model.inputs)}, targets {list(model.outputs)})", file=path, line=line)
    dup = sorted({c for c in wanted if header.count(c) > 1})
    if dup:
        raise SpecError(f"column(s) {', '.join(map(repr, dup))} appear more than once in the header", file=path, line=line)
    if len(rows) == 1:
        raise SpecError("no data rows after the header", file=path, line=line)
    cols = [header.index(c) for c in wanted]
    data = np.empty((len(rows) - 1, len(cols)))
    for i, (line, row) in enumerate(rows[1:]):
        if len(row) != len(header):
            raise SpecError(f"row has {len(row)} cells, the header has {len(header)} columns", file=path, line=line)
        for j, c in enumerate(cols):
            cell = row[c].strip()
            try:
                value = float(cell)
            except ValueError:
                raise SpecError(f"column {header[c]!r}: {cell!r} is not a number", file=path, line=line) from None
            if not math.isfinite(value):
                raise SpecError(f"column {header[c]!r}: {cell!r} is not finite", file=path, line=line)
            data[i, j] = value
    n = model.n_inputs
    return data[:, :n], (data[:, n:] if model.loss.uses_target else None)


def _load_npz(path, model):
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise SpecError("file not found", file=path) from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise SpecError(f"not a readable .npz file: {exc}", file=path) from None
    keys = ("x", "y") if model.loss.uses_target else ("x",)
    out = []
    for key, width in zip(keys, (model.n_inputs, model.n_outputs)):
        if key not in arrays:
            raise SpecError(f"missing array {key!r}; the file has {', '.join(map(repr, arrays)) or 'no arrays'}", file=path)
        a = arrays[key]
        if a.dtype.kind not in "fiu":
            raise SpecError(f"array {key!r} holds {a.dtype}, not numbers", file=path)
        a = a.astype(np.float64)
        if a.ndim == 1 and width == 1:
            a = a.reshape(-1, 1)
        if a.ndim != 2 or a.shape[1] != width:
            raise SpecError(f"array {key!r} has shape {a.shape}, expected (N, {width})", file=path)
        if a.shape[0] == 0:
            raise SpecError(f"array {key!r} has no rows", file=path)
        bad = np.argwhere(~np.isfinite(a))
        if len(bad):
            raise SpecError(f"array {key!r} has a NaN or infinite value at row {bad[0][0]}, column {bad[0][1]}", file=path)
        out.append(a)
    if len(out) == 2 and out[0].shape[0] != out[1].shape[0]:
        raise SpecError(f"x has {out[0].shape[0]} rows but y has {out[1].shape[0]}", file=path)
    return out[0], (out[1] if len(out) == 2 else None)


def batches_per_epoch(n, batch_size):
    """ceil(N / B): the last, shorter batch counts (50 000 samples, batch 256 -> 196)."""
    return -(-n // batch_size)


def batches(n, batch_size, rng):
    """Row indices of each mini-batch of one epoch: a fresh permutation cut into ceil(N / B) pieces."""
    order = rng.permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


@dataclass
class Result:
    """Trained parameters, optimizer state, the mean batch loss of each epoch, and the module that trained."""

    params: dict
    state: dict
    losses: list
    module: object


class Progress:
    """A plain-text progress bar with the running loss, redrawn in place on a terminal."""

    def __init__(self, epochs, per_epoch, stream=None, width=24):
        self.epochs, self.per_epoch, self.width = epochs, per_epoch, width
        self.stream = sys.stderr if stream is None else stream
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.last = 0.0

    def update(self, epoch, it, running):
        if not self.tty or (it < self.per_epoch and time.monotonic() - self.last < 0.1):
            return
        self.last = time.monotonic()
        self.stream.write("\r" + self._line(epoch, it, running))
        self.stream.flush()

    def end_epoch(self, epoch, loss):
        every = max(1, self.epochs // 20)
        if self.tty:
            self.stream.write("\r" + self._line(epoch, self.per_epoch, loss) + ("\n" if epoch == self.epochs else ""))
        elif epoch % every == 0 or epoch in (1, self.epochs):
            self.stream.write(self._line(epoch, self.per_epoch, loss) + "\n")
        self.stream.flush()

    def _line(self, epoch, it, loss):
        done = self.width * it // self.per_epoch
        return (f"epoch {epoch:>{len(str(self.epochs))}}/{self.epochs} [{'#' * done}{'.' * (self.width - done)}] "
                f"{it}/{self.per_epoch} loss {loss:.6g}")


def fit(model, x, y, epochs=None, batch_size=None, lr=None, seed=None, params=None, module=None, progress=None):
    """Train model on (x, y) with the optimizer of its [train] table; keyword values override the table."""
    over = {k: v for k, v in (("epochs", epochs), ("batch_size", batch_size), ("learning_rate", lr), ("seed", seed))
            if v is not None}
    config = replace(model.train, **over)
    if module is not None and lr is not None:
        raise ValueError("lr is fixed in a generated module; pass lr without module to regenerate it")
    if module is None:
        model = replace_train(model, config)
        module = generated_module(model)
    params = module.init_params() if params is None else params
    state = module.init_state(params)
    rng = np.random.default_rng(config.seed)
    n = x.shape[0]
    per_epoch = batches_per_epoch(n, config.batch_size)
    bar = progress if progress is not None else Progress(config.epochs, per_epoch, stream=_Null())
    losses = []
    for epoch in range(1, config.epochs + 1):
        total = 0.0
        for it, rows in enumerate(batches(n, config.batch_size, rng), 1):
            params, state, E = module.train_step(params, state, x[rows], None if y is None else y[rows])
            total += E
            bar.update(epoch, it, total / it)
        losses.append(total / per_epoch)
        if not math.isfinite(losses[-1]):
            raise FloatingPointError(f"the loss became {losses[-1]} in epoch {epoch}; try a smaller learning rate")
        bar.end_epoch(epoch, losses[-1])
    return Result(params, state, losses, module)


class _Null:
    def write(self, s):
        pass

    def flush(self):
        pass


def replace_train(model, config):
    """A shallow copy of model with its train table replaced (the TrainConfig is re-checked)."""
    model = copy.copy(model)
    model.train = replace(config)
    return model


def generated_module(model):
    """Generate model's NumPy module into a temporary folder and import it."""
    from symgrad.api import generate, import_generated

    with tempfile.TemporaryDirectory(prefix="symgrad-train-") as tmp:
        generate(model, "numpy", tmp)
        return import_generated(model.name, tmp)


def save_params(path, params):
    """Write params as an .npz (np.load(path) gives back name -> array), atomically."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in params.items()})
    return write_atomic(path, buf.getvalue())


# ---------------------------------------------------------------------------------------------
# A loss curve as a PNG, with no plotting library: white canvas, axes with ticks, a blue polyline.

FONT = {  # 3x5 digits and signs, rows top to bottom
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001001001001",
    "8": "111101111101111", "9": "111101111001111", ".": "000000000000010", "-": "000000111000000",
    "e": "000111101110011", "+": "000010111010000", " ": "000000000000000", "(": "010100100100010",
    ")": "010001001001010", "p": "000111101111100", "o": "000111101101111", "c": "000111100100111",
    "h": "100100111101101", "l": "110010010010111", "s": "000111110011111", "g": "000111101111001",
}


def loss_png(losses, width=640, height=400):
    """PNG bytes of loss against epoch (log scale when the loss spans more than two decades)."""
    losses = np.asarray(losses, dtype=float)
    img = np.full((height, width, 3), 255, dtype=np.uint8)
    left, right, top, bottom = 84, width - 20, 34, height - 40
    positive = bool(np.all(losses > 0))
    log = positive and losses.max() / losses.min() > 100
    vals = np.log10(losses) if log else losses
    lo, hi = float(vals.min()), float(vals.max())
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    n = len(losses)
    xs = left + (np.arange(n) / max(n - 1, 1)) * (right - left)
    ys = bottom - (vals - lo) / (hi - lo) * (bottom - top)
    black, grey, blue = (0, 0, 0), (200, 200, 200), (31, 119, 180)
    for f in np.linspace(0, 1, 5):
        y = int(round(bottom - f * (bottom - top)))
        img[y, left:right + 1] = grey
        img[y, left - 5:left] = black
        label = 10 ** (lo + f * (hi - lo)) if log else lo + f * (hi - lo)
        _text(img, f"{label:.2e}", left - 8, y - 2, align="right")
        x = int(round(left + f * (right - left)))
        img[bottom:bottom + 5, x] = black
        _text(img, str(int(round(1 + f * (n - 1)))), x, bottom + 9, align="center")
    _text(img, "loss (log)" if log else "loss", left, top - 20, align="center")
    _text(img, "epoch", (left + right) // 2, bottom + 27, align="center")
    img[top:bottom + 1, left] = black
    img[bottom, left:right + 1] = black
    for i in range(max(n - 1, 0)):
        _line(img, xs[i], ys[i], xs[i + 1], ys[i + 1], blue)
    if n == 1:
        img[int(ys[0]) - 1:int(ys[0]) + 2, int(xs[0]) - 1:int(xs[0]) + 2] = blue
    return _png(img)


def _line(img, x0, y0, x1, y1, color):
    steps = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
    for s in np.linspace(0, 1, steps + 1):
        x, y = int(round(x0 + s * (x1 - x0))), int(round(y0 + s * (y1 - y0)))
        img[max(y - 1, 0):y + 1, max(x - 1, 0):x + 1] = color


def _text(img, text, x, y, align="left", scale=2):
    w = len(text) * 4 * scale
    x0 = x - w if align == "right" else x - w // 2 if align == "center" else x
    for i, ch in enumerate(text):
        bits = FONT.get(ch, FONT[" "])
        for r in range(5):
            for c in range(3):
                if bits[3 * r + c] == "1":
                    px, py = x0 + (4 * i + c) * scale, y + r * scale - 4
                    if 0 <= py and py + scale <= img.shape[0] and 0 <= px and px + scale <= img.shape[1]:
                        img[py:py + scale, px:px + scale] = 0


def _png(img):
    """Encode an (h, w, 3) uint8 array as PNG bytes (8-bit RGB, no filtering)."""
    h, w, _ = img.shape
    raw = b"".join(b"\x00" + img[r].tobytes() for r in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
