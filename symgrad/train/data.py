"""Training data in, trained parameters out: a CSV with a header or an .npz with x and y; parameters as .npz."""

import csv
import io
import math
import zipfile

import numpy as np

from symgrad.errors import SpecError
from symgrad.render import npz_bytes, write_atomic


def load_data(path, model):
    """(x, y) arrays of shape (N, n_inputs) and (N, n_outputs) from a CSV with a header, or an .npz with x and y.

    A graph network's data come shaped, (N, *input_shape) and (N, *output_shape): an .npz may hold them
    so or flat, one row per sample in row-major order, as a CSV's columns do.
    """
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
    return _shaped(model, data[:, :n], data[:, n:] if model.loss.uses_target else None)


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
    for key, width, shape in zip(keys, (model.n_inputs, model.n_outputs), _shapes(model)):
        if key not in arrays:
            raise SpecError(f"missing array {key!r}; the file has {', '.join(map(repr, arrays)) or 'no arrays'}", file=path)
        a = arrays[key]
        if a.dtype.kind not in "fiu":
            raise SpecError(f"array {key!r} holds {a.dtype}, not numbers", file=path)
        a = a.astype(np.float64)
        if a.ndim == 1 and width == 1:
            a = a.reshape(-1, 1)
        if shape is not None and a.shape[1:] == shape:
            a = a.reshape(a.shape[0], -1)
        if a.ndim != 2 or a.shape[1] != width:
            want = f"(N, {width})" + (f" or (N, {', '.join(map(str, shape))})" if shape is not None and len(shape) > 1 else "")
            raise SpecError(f"array {key!r} has shape {a.shape}, expected {want}", file=path)
        if a.shape[0] == 0:
            raise SpecError(f"array {key!r} has no rows", file=path)
        bad = np.argwhere(~np.isfinite(a))
        if len(bad):
            raise SpecError(f"array {key!r} has a NaN or infinite value at row {bad[0][0]}, entry {bad[0][1]}", file=path)
        out.append(a)
    if len(out) == 2 and out[0].shape[0] != out[1].shape[0]:
        raise SpecError(f"x has {out[0].shape[0]} rows but y has {out[1].shape[0]}", file=path)
    return _shaped(model, out[0], out[1] if len(out) == 2 else None)


def _shapes(model):
    """(input shape, output shape) per sample of a graph network; (None, None) for flat models."""
    return getattr(model, "input_shape", None), getattr(model, "output_shape", None)


def _shaped(model, x, y):
    """x (N, n_inputs) and y (N, n_outputs) reshaped to (N, *input_shape) and (N, *output_shape) for graph networks."""
    xs, ys = _shapes(model)
    if xs is not None:
        x = x.reshape((-1,) + xs)
        y = None if y is None else y.reshape((-1,) + ys)
    return x, y



def save_params(path, params):
    """Write params as an .npz (np.load(path) gives back name -> array), atomically."""
    return write_atomic(path, npz_bytes(params))


