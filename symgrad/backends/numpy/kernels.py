"""Array kernels of shaped layers, copied verbatim into the generated modules that call them.

Each function is plain NumPy (no Python loop over the batch or the output positions): windows are a
strided view of the padded input, a convolution is one matrix product of the kernel with that view
laid out as columns (im2col), and the backward passes add each kernel offset's share back with one
slice per offset (col2im). Shapes follow PyTorch: x (B, C, *spatial), weight (O, C, *kernel).
The second-order kernels (``_conv_jvp``, ``_conv_rbackward``, ``_maxpool_jvp``) are the R-operator of these: a
convolution is bilinear, so its R-passes are the same products with the direction V in W's place or R{x}'s
columns in x's. The module is imported and linted like any other; the code printer copies a function's source
(:func:`source`) into a generated module when the module's lines call it. The recurrent layers' kernels
live in :mod:`symgrad.backends.numpy.recurrent` (and ``recurrent_second``) and are copied the same way.
"""

import inspect

import numpy as np
from numpy.lib.stride_tricks import as_strided

from symgrad.backends.numpy import recurrent, recurrent_second

DTYPE = np.float64  # the generated module defines its own


def _pad(x, padding, value=0.0):
    """x with ``padding`` = ((lo, hi), ...) added on each spatial axis, filled with ``value``."""
    if not any(lo or hi for lo, hi in padding):
        return x
    xp = np.full(x.shape[:2] + tuple(n + lo + hi for n, (lo, hi) in zip(x.shape[2:], padding)), value, dtype=x.dtype)
    xp[(slice(None), slice(None)) + tuple(slice(lo, lo + n) for (lo, _), n in zip(padding, x.shape[2:]))] = x
    return xp


def _crop(xp, padding, shape):
    """The inner part of a padded array: the entries of the unpadded ``shape``."""
    return xp[(slice(None), slice(None)) + tuple(slice(lo, lo + n) for (lo, _), n in zip(padding, shape[2:]))]


def _conv(x, w, b, stride, padding, dilation):
    """(z, cols): z[b, o] = sum_{c,k} w[o, c, k] x[b, c, s*p + dl*k - pad] + b[o], and the im2col columns (C*K, B*P).

    One copy of the windows' view builds the columns, one matrix product (O x C*K times C*K x B*P) computes every output.
    """
    d = w.ndim - 2
    win = _windows(_pad(x, padding), w.shape[2:], stride, dilation)  # (B, C, *out, *kernel), a view
    n, out = x.shape[0], win.shape[2:2 + d]
    cols = win.transpose((1,) + tuple(range(2 + d, 2 + 2 * d)) + (0,) + tuple(range(2, 2 + d))).reshape(
        -1, n * int(np.prod(out)))
    zt = w.reshape(w.shape[0], -1).dot(cols).reshape(w.shape[0], n, -1)
    z = np.empty((n, w.shape[0]) + out, dtype=x.dtype)
    z3 = z.reshape(n, w.shape[0], -1)
    if b is None:
        np.copyto(z3, zt.transpose(1, 0, 2))
    else:
        np.add(zt.transpose(1, 0, 2), b[:, None], out=z3)
    return z, cols


def _conv_backward(d, cols, w, x_shape, stride, padding, dilation, need_x, need_b):
    """(dE/dx or None, dE/dw, dE/db or None) from d = dE/dz: dw = d cols^T, dx = col2im(w^T d)."""
    o = w.shape[0]
    dt = d.reshape(d.shape[0], o, -1).transpose(1, 0, 2).reshape(o, -1)  # (O, B*P)
    dw = dt.dot(cols.T).reshape(w.shape)
    db = dt.sum(axis=1) if need_b else None
    if not need_x:
        return None, dw, db
    kernel = w.shape[2:]
    dcols = w.reshape(o, -1).T.dot(dt).reshape((x_shape[1],) + kernel + (x_shape[0],) + d.shape[2:])
    return _col2im(dcols, x_shape, kernel, stride, padding, dilation), dw, db


def _col2im(dcols, x_shape, kernel, stride, padding, dilation):
    """dE/dx from dcols (C, *kernel, B, *out): each kernel offset's share added back onto the input it read."""
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(x_shape[2:], padding))
    dxp = np.zeros((x_shape[1], x_shape[0]) + padded, dtype=dcols.dtype)  # (C, B, ...): the columns' order
    for k, sl in zip(np.ndindex(*kernel), _offsets(kernel, stride, dilation, dcols.shape[2 + len(kernel):])):
        dxp[(slice(None), slice(None)) + sl] += dcols[(slice(None),) + k]
    return np.ascontiguousarray(_crop(dxp, padding, (x_shape[1], x_shape[0]) + tuple(x_shape[2:])).swapaxes(0, 1))


def _conv_jvp(z, rx, cols, w, v, vb, stride, padding, dilation):
    """(R{z}, R{x}'s columns or None): R{z} = conv(R{x}, W) + conv(x, V) + V_b, conv(x, V) one product with x's columns."""
    if rx is not None:
        rz, rcols = _conv(rx, w, vb, stride, padding, dilation)
    else:
        rz, rcols = np.zeros_like(z), None
        if vb is not None:
            rz += vb.reshape((-1,) + (1,) * (z.ndim - 2))
    if v is not None:
        o = v.shape[0]
        rz += v.reshape(o, -1).dot(cols).reshape(o, z.shape[0], -1).transpose(1, 0, 2).reshape(z.shape)
    return rz, rcols


def _conv_rbackward(d, rd, cols, rcols, w, v, x_shape, stride, padding, dilation, need_x, need_w, need_b):
    """(dE/dx, R{dE/dx}, R{dE/dw}, R{dE/db}), each None unless needed: R{dw} = R{d} cols^T + d R{cols}^T,
    R{dx} = col2im(W^T R{d} + V^T d); dx and R{dx} share one product with W^T and one col2im."""
    o, n = w.shape[0], d.shape[0]
    dt = d.reshape(n, o, -1).transpose(1, 0, 2).reshape(o, -1)  # (O, B*P)
    rdt = rd.reshape(n, o, -1).transpose(1, 0, 2).reshape(o, -1)
    rdw = rdb = None
    if need_w:
        rdw = rdt.dot(cols.T)
        if rcols is not None:
            rdw += dt.dot(rcols.T)
        rdw = rdw.reshape(w.shape)
    if need_b:
        rdb = rdt.sum(axis=1)
    if not need_x:
        return None, None, rdw, rdb
    both = w.reshape(o, -1).T.dot(np.concatenate((dt, rdt), axis=1))  # (C*K, 2*B*P): d's columns, then R{d}'s
    if v is not None:
        both[:, dt.shape[1]:] += v.reshape(o, -1).T.dot(dt)
    kernel = w.shape[2:]
    dcols = both.reshape((x_shape[1],) + kernel + (2 * n,) + d.shape[2:])
    dxx = _col2im(dcols, (2 * n,) + tuple(x_shape[1:]), kernel, stride, padding, dilation)
    return dxx[:n], dxx[n:], rdw, rdb


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


def _maxpool_jvp(rx, arg, kernel, stride, padding):
    """R{z}: each window's entry of R{x} at the forward's maximum (the routing is fixed by the forward)."""
    d = len(kernel)
    win = _windows(_pad(rx, padding), kernel, stride, (1,) * d)
    flat = win.reshape(win.shape[:2 + d] + (-1,))
    return np.take_along_axis(flat, arg[..., None], -1)[..., 0]


def _avgpool(x, kernel, stride, padding):
    """z: each window's mean, padding counted as zeros (PyTorch's count_include_pad=True)."""
    xp = _pad(x, padding)
    out = tuple((n - k) // s + 1 for n, k, s in zip(xp.shape[2:], kernel, stride))
    slices = _offsets(kernel, stride, (1,) * len(kernel), out)
    z = xp[(slice(None), slice(None)) + slices[0]].copy()
    for sl in slices[1:]:
        z += xp[(slice(None), slice(None)) + sl]
    z *= 1.0 / len(slices)
    return z


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
    return _crop(dxp, padding, x_shape)


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


NEEDS = {
    "_conv": ("_pad", "_windows"),
    "_conv_backward": ("_col2im",),
    "_col2im": ("_offsets", "_crop"),
    "_conv_jvp": ("_conv",),
    "_conv_rbackward": ("_col2im",),
    "_maxpool": ("_pad", "_windows"),
    "_maxpool_jvp": ("_pad", "_windows"),
    "_avgpool": ("_pad", "_offsets"),
    "_maxpool_backward": ("_spread",),
    "_avgpool_backward": ("_spread",),
    "_spread": ("_offsets", "_crop"),
    "_rnn": ("_project",),
    "_lstm": ("_project", "_halved"),
    "_gru": ("_project", "_halved"),
    "_rnn_backward": ("_delta_at", "_carries", "_rnn_grads"),
    "_lstm_backward": ("_delta_at", "_carries", "_rnn_grads"),
    "_gru_backward": ("_delta_at", "_carries", "_rnn_grads"),
    "_rnn_jvp": ("_rinput", "_rrecurrent", "_carries"),
    "_lstm_jvp": ("_rinput", "_rrecurrent", "_carries"),
    "_gru_jvp": ("_rinput", "_rrecurrent", "_carries"),
    "_rnn_rbackward": ("_delta_at", "_carries", "_rnn_rgrads"),
    "_lstm_rbackward": ("_delta_at", "_carries", "_rnn_rgrads"),
    "_gru_rbackward": ("_delta_at", "_carries", "_rnn_rgrads"),
    "_rinput": ("_project",),
    "_rnn_rgrads": ("_carries",),
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
    fn = globals().get(name) or getattr(recurrent, name, None) or getattr(recurrent_second, name)
    return inspect.getsource(fn).rstrip()
