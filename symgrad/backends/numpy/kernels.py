"""Array kernels of shaped layers, copied verbatim into the generated modules that call them.

Each function is plain NumPy (no Python loop over the batch or the output positions): windows are a
strided view of the padded input, a convolution is one matrix product of the kernel with that view
laid out as columns (im2col), and the backward passes add each kernel offset's share back with one
slice per offset (col2im). Shapes follow PyTorch: x (B, C, *spatial), weight (O, C, *kernel).
The module is imported and linted like any other; the code printer copies a function's source
(:func:`source`) into a generated module when the module's lines call it. The recurrent layers' kernels
live in :mod:`symgrad.backends.numpy.recurrent` and are copied the same way.
"""

import inspect

import numpy as np
from numpy.lib.stride_tricks import as_strided

from symgrad.backends.numpy import recurrent

DTYPE = np.float64  # the generated module defines its own


def _pad(x, padding, value=0.0):
    """x with ``padding`` = ((lo, hi), ...) added on each spatial axis, filled with ``value``."""
    if not any(lo or hi for lo, hi in padding):
        return x
    return np.pad(x, ((0, 0), (0, 0)) + tuple(padding), constant_values=value)


def _windows(xp, kernel, stride, dilation):
    """The view (B, C, *out, *kernel) of every window of xp (no copy)."""
    size, st = xp.shape[2:], xp.strides[2:]
    out = tuple((n - dl * (k - 1) - 1) // s + 1 for n, k, s, dl in zip(size, kernel, stride, dilation))
    strides = xp.strides[:2] + tuple(a * s for a, s in zip(st, stride)) + tuple(a * dl for a, dl in zip(st, dilation))
    return as_strided(xp, xp.shape[:2] + out + tuple(kernel), strides, writeable=False)


def _offsets(kernel, stride, dilation, out):
    """For each kernel offset k (row-major): the slices of the padded input that the windows' k-th entries read."""
    return [tuple(slice(kk * dl, kk * dl + s * (o - 1) + 1, s) for kk, dl, s, o in zip(k, dilation, stride, out))
            for k in np.ndindex(*kernel)]


def _conv(x, w, b, stride, padding, dilation):
    """(z, cols): z[b, o] = sum_{c,k} w[o, c, k] x[b, c, s*p + dl*k - pad] + b[o], and the im2col matrix (C*K, B*P)."""
    d = w.ndim - 2
    win = _windows(_pad(x, padding), w.shape[2:], stride, dilation)
    out = win.shape[2:2 + d]
    axes = (1,) + tuple(range(2 + d, 2 + 2 * d)) + (0,) + tuple(range(2, 2 + d))
    cols = win.transpose(axes).reshape(-1, x.shape[0] * int(np.prod(out)))
    z = w.reshape(w.shape[0], -1).dot(cols).reshape((w.shape[0], x.shape[0]) + out).swapaxes(0, 1)
    if b is not None:
        z += b.reshape((-1,) + (1,) * d)
    return z, cols


def _conv_backward(d, cols, w, x_shape, stride, padding, dilation, need_x, need_b):
    """(dE/dx or None, dE/dw, dE/db or None) from d = dE/dz: dw = d cols^T, dx = col2im(w^T d)."""
    o = w.shape[0]
    d2 = d.swapaxes(0, 1).reshape(o, -1)
    dw = d2.dot(cols.T).reshape(w.shape)
    db = d2.sum(axis=1) if need_b else None
    if not need_x:
        return None, dw, db
    kernel = w.shape[2:]
    dcols = w.reshape(o, -1).T.dot(d2).reshape((x_shape[1],) + kernel + (x_shape[0],) + d.shape[2:])
    return _col2im(dcols, x_shape, kernel, stride, padding, dilation), dw, db


def _col2im(dcols, x_shape, kernel, stride, padding, dilation):
    """dE/dx from dcols (C, *kernel, B, *out): each kernel offset's share added back onto the input it read."""
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(x_shape[2:], padding))
    dxp = np.zeros(tuple(x_shape[:2]) + padded, dtype=dcols.dtype)
    for k, sl in zip(np.ndindex(*kernel), _offsets(kernel, stride, dilation, dcols.shape[len(kernel) + 2:])):
        dxp[(slice(None), slice(None)) + sl] += dcols[(slice(None),) + k].swapaxes(0, 1)
    return dxp[(slice(None), slice(None)) + tuple(slice(lo, lo + n) for (lo, _), n in zip(padding, x_shape[2:]))]


def _maxpool(x, kernel, stride, padding):
    """(z, arg): each window's maximum and its flat offset in the window (the first maximum, as PyTorch)."""
    d = len(kernel)
    win = _windows(_pad(x, padding, -np.inf), kernel, stride, (1,) * d)
    flat = win.reshape(win.shape[:2 + d] + (-1,))
    arg = flat.argmax(axis=-1)
    return np.take_along_axis(flat, arg[..., None], -1)[..., 0], arg


def _maxpool_backward(d, arg, x_shape, kernel, stride, padding):
    """dE/dx: each window's delta routed to the entry its maximum came from (summed where windows overlap)."""
    return _spread(d, x_shape, kernel, stride, padding, lambda j: np.where(arg == j, d, 0.0))


def _avgpool(x, kernel, stride, padding):
    """z: each window's mean, padding counted as zeros (PyTorch's count_include_pad=True)."""
    d = len(kernel)
    win = _windows(_pad(x, padding), kernel, stride, (1,) * d)
    return win.sum(axis=tuple(range(-d, 0))) * (1.0 / int(np.prod(kernel)))


def _avgpool_backward(d, x_shape, kernel, stride, padding):
    """dE/dx: each window's delta spread evenly over its entries."""
    share = d * (1.0 / int(np.prod(kernel)))
    return _spread(d, x_shape, kernel, stride, padding, lambda j: share)


def _spread(d, x_shape, kernel, stride, padding, part):
    """Sum over kernel offsets j of part(j) (B, C, *out) added onto the entries those windows read."""
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(x_shape[2:], padding))
    dxp = np.zeros(tuple(x_shape[:2]) + padded, dtype=d.dtype)
    for j, sl in enumerate(_offsets(kernel, stride, (1,) * len(kernel), d.shape[2:])):
        dxp[(slice(None), slice(None)) + sl] += part(j)
    return dxp[(slice(None), slice(None)) + tuple(slice(lo, lo + n) for (lo, _), n in zip(padding, x_shape[2:]))]


NEEDS = {
    "_conv": ("_pad", "_windows"),
    "_conv_backward": ("_col2im",),
    "_col2im": ("_offsets",),
    "_maxpool": ("_pad", "_windows"),
    "_avgpool": ("_pad", "_windows"),
    "_maxpool_backward": ("_spread",),
    "_avgpool_backward": ("_spread",),
    "_spread": ("_offsets",),
    "_rnn": ("_project",),
    "_lstm": ("_project", "_halved"),
    "_gru": ("_project", "_halved"),
    "_rnn_backward": ("_delta_at", "_carries", "_rnn_grads"),
    "_lstm_backward": ("_delta_at", "_carries", "_rnn_grads"),
    "_gru_backward": ("_delta_at", "_carries", "_rnn_grads"),
}


def closure(names):
    """The kernels ``names`` and every kernel they call."""
    todo, seen = list(names), set()
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo += NEEDS.get(n, ())
    return seen


def source(name):
    """The source text of kernel ``name``, as it is copied into a generated module."""
    fn = globals()[name] if name in globals() else getattr(recurrent, name)
    return inspect.getsource(fn).rstrip()
