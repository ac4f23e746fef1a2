"""Array kernels of recurrent layers (backpropagation through time), copied verbatim into the modules that call them.

Shapes follow PyTorch with ``batch_first=True``: x (B, T, F), hidden states (B, T, H), weights (G*H, F) and
(G*H, H) with the gate blocks in PyTorch's order. Inside, arrays are time-major, (T, B, ...), so each
step reads and writes contiguous (B, ...) blocks; the hidden states are handed out as a (B, T, H) view.
The input projections of all steps are one matrix product; each step adds one small product with W_hh.
The forward pass keeps every step's gate values and states (the sequence's activations); the backward
pass walks the steps in reverse, reusing them, and fills one array of gate deltas for the layer (two
for the GRU, whose n gate splits into input and recurrent parts), from which the weight gradients and
the input's delta are again one matrix product each. ``bptt`` > 0 cuts the carried delta at every
multiple of ``bptt`` steps (the state detached there). Sigmoid gates are computed as (1 + tanh(v / 2)) / 2
(no overflow), their rows of the weights halved once (exact) so one tanh call covers every gate of a step.
The second-order kernels (``_*_jvp``, ``_*_rbackward``) are in :mod:`symgrad.backends.numpy.recurrent_second`.
"""

import numpy as np


def _project(x, w, b):
    """x W^T + b for every step at once, time-major: (B, T, F) -> (T, B, rows of w)."""
    z = x.swapaxes(0, 1).reshape(-1, x.shape[2]).dot(w.T).reshape(x.shape[1], x.shape[0], -1)
    if b is not None:
        z += b
    return z


def _halved(w, H, blocks):
    """w with the rows of the gate blocks numbered in ``blocks`` halved (the sigmoid gates), or None for None."""
    if w is None:
        return None
    w = w.copy()
    for j in blocks:
        w[j * H:(j + 1) * H] *= 0.5
    return w


def _delta_at(d, t, T, carry):
    """dE/dh_t: the output's delta at step t (d (B, T, H) holds every step's, (B, H) the last's) plus the carried one."""
    own = d[:, t] if d.ndim == 3 else d if t == T - 1 else None
    if own is None:
        return carry
    return own if carry is None else own + carry


def _carries(t, bptt):
    """Whether step t hands a delta back to step t - 1 (not at t = 0, nor where a truncation detached the state)."""
    return t > 0 and (not bptt or t % bptt != 0)


def _rnn_grads(dgi, dgh, h, x, wih, need_x, need_b):
    """(dE/dx, dE/dW_ih, dE/dW_hh, dE/db_ih, dE/db_hh) from the deltas (T, B, G) of the input and recurrent parts."""
    T, B, G = dgi.shape
    H, F = h.shape[2], x.shape[2]
    dwih = dgi.reshape(-1, G).T.dot(x.swapaxes(0, 1).reshape(-1, F))
    dwhh = dgh[1:].reshape(-1, G).T.dot(h[:-1].reshape(-1, H))
    dbih = dgi.sum(axis=(0, 1)) if need_b else None
    dbhh = dgh.sum(axis=(0, 1)) if need_b else None
    dx = dgi.reshape(-1, G).dot(wih).reshape(T, B, F).swapaxes(0, 1) if need_x else None
    return dx, dwih, dwhh, dbih, dbhh


def _rnn(x, wih, whh, bih, bhh, relu):
    """h (B, T, H): h_t = f(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), f = relu or tanh, h_{-1} = 0."""
    h_all = _project(x, wih, None if bih is None else bih + bhh)
    whh_t, h = whh.T, None
    for a in h_all:
        if h is not None:
            a += h.dot(whh_t)
        h = np.maximum(a, 0.0, out=a) if relu else np.tanh(a, out=a)
    return h_all.swapaxes(0, 1)


def _rnn_backward(d, h, x, wih, whh, bptt, need_x, need_b, relu):
    """Gradients of an Elman RNN from d = dE/d(output): every step's delta da_t = dE/dh_t * f'(a_t)."""
    h = h.swapaxes(0, 1)
    T = h.shape[0]
    da = np.empty_like(h)
    g = None
    for t in range(T - 1, -1, -1):
        g = _delta_at(d, t, T, g)
        if g is None:
            da[:t + 1] = 0.0
            break
        dt, ht = da[t], h[t]
        if relu:
            np.multiply(g, ht > 0, out=dt)
        else:
            np.multiply(g, 1.0 - ht * ht, out=dt)
        g = dt.dot(whh) if _carries(t, bptt) else None
    return _rnn_grads(da, da, h, x, wih, need_x, need_b)


def _lstm(x, wih, whh, bih, bhh):
    """(h (B, T, H), (gates (T, B, 4H): i, f, g, o after their activations, c (T, B, H), tanh(c))): PyTorch's LSTM."""
    B, T, _ = x.shape
    H = whh.shape[1]
    gates = _project(x, _halved(wih, H, (0, 1, 3)), _halved(None if bih is None else bih + bhh, H, (0, 1, 3)))
    whh_t = _halved(whh, H, (0, 1, 3)).T
    h_all, c_all, tc_all = (np.empty((T, B, H), dtype=gates.dtype) for _ in range(3))
    h = c = None
    for t in range(T):
        a = gates[t]
        if h is not None:
            a += h.dot(whh_t)
        np.tanh(a, out=a)
        for s in (a[:, :2 * H], a[:, 3 * H:]):  # sigma(v) = (1 + tanh(v / 2)) / 2
            s *= 0.5
            s += 0.5
        i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
        cn = np.multiply(i, g, out=c_all[t])
        if c is not None:
            cn += f * c
        h = np.multiply(o, np.tanh(cn, out=tc_all[t]), out=h_all[t])
        c = cn
    return h_all.swapaxes(0, 1), (gates, c_all, tc_all)


def _lstm_backward(d, h, s, x, wih, whh, bptt, need_x, need_b):
    """Gradients of an LSTM from d = dE/d(output): per step the gates' deltas; h and c carry theirs back."""
    gates, c_all, tc_all = s
    h = h.swapaxes(0, 1)
    T, H = h.shape[0], h.shape[2]
    dg = np.empty_like(gates)
    g = gc = None
    for t in range(T - 1, -1, -1):
        g = _delta_at(d, t, T, g)
        if g is None:
            dg[:t + 1] = 0.0
            break
        a, dt, tc = gates[t], dg[t], tc_all[t]
        i, f, gg, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
        di, df, dgg, do = dt[:, :H], dt[:, H:2 * H], dt[:, 2 * H:3 * H], dt[:, 3 * H:]
        np.multiply(g, tc, out=do)  # dE/do = dE/dh tanh(c)
        dc = g * o * (1.0 - tc * tc)  # dE/dc_t: through h_t, plus the cell-state path from t + 1
        if gc is not None:
            dc += gc
        np.multiply(dc, gg, out=di)
        np.multiply(dc, i, out=dgg)
        if t:
            np.multiply(dc, c_all[t - 1], out=df)
        else:
            df[...] = 0.0
        sig = a[:, :2 * H]
        dt[:, :2 * H] *= sig * (1.0 - sig)  # sigma' = s (1 - s) for i and f
        do *= o * (1.0 - o)
        dgg *= 1.0 - gg * gg  # tanh' = 1 - g^2
        keep = _carries(t, bptt)
        gc = dc * f if keep else None
        g = dt.dot(whh) if keep else None
    return _rnn_grads(dg, dg, h, x, wih, need_x, need_b)


def _gru(x, wih, whh, bih, bhh):
    """(h (B, T, H), (gates (T, B, 3H): r, z, n after their activations, hn = W_hn h_{t-1} + b_hn)): PyTorch's GRU."""
    B, T, _ = x.shape
    H = whh.shape[1]
    gates = _project(x, _halved(wih, H, (0, 1)), _halved(bih, H, (0, 1)))
    whh_t, bh = _halved(whh, H, (0, 1)).T, _halved(bhh, H, (0, 1))
    h_all, hn_all = (np.empty((T, B, H), dtype=gates.dtype) for _ in range(2))
    h = None
    for t in range(T):
        a = gates[t]
        gh = np.zeros((B, 3 * H), dtype=a.dtype) if h is None else h.dot(whh_t)
        if bh is not None:
            gh += bh
        rz = a[:, :2 * H]
        rz += gh[:, :2 * H]
        np.tanh(rz, out=rz)  # sigma(v) = (1 + tanh(v / 2)) / 2
        rz *= 0.5
        rz += 0.5
        r, z, n = a[:, :H], a[:, H:2 * H], a[:, 2 * H:]
        hn = hn_all[t]
        hn[...] = gh[:, 2 * H:]
        n += r * hn
        np.tanh(n, out=n)
        hnew = h_all[t]
        if h is None:
            np.multiply(n, -z, out=hnew)
        else:
            np.subtract(h, n, out=hnew)
            hnew *= z
        hnew += n  # h_t = (1 - z) n + z h_{t-1} = n + z (h_{t-1} - n)
        h = hnew
    return h_all.swapaxes(0, 1), (gates, hn_all)


def _gru_backward(d, h, s, x, wih, whh, bptt, need_x, need_b):
    """Gradients of a GRU from d = dE/d(output): deltas of the input part (r, z, n) and the recurrent part (r, z, hn)."""
    gates, hn_all = s
    h = h.swapaxes(0, 1)
    T, H = h.shape[0], h.shape[2]
    dgi, dgh = np.empty_like(gates), np.empty_like(gates)
    g = None
    for t in range(T - 1, -1, -1):
        g = _delta_at(d, t, T, g)
        if g is None:
            dgi[:t + 1] = 0.0
            dgh[:t + 1] = 0.0
            break
        a, di, dh = gates[t], dgi[t], dgh[t]
        r, z, n = a[:, :H], a[:, H:2 * H], a[:, 2 * H:]
        dr, dz, dhn, dan = dh[:, :H], dh[:, H:2 * H], dh[:, 2 * H:], di[:, 2 * H:]
        np.multiply(g, 1.0 - z, out=dan)
        dan *= 1.0 - n * n  # dE/d(pre-activation of n)
        if t:
            np.subtract(h[t - 1], n, out=dz)
        else:
            np.negative(n, out=dz)
        dz *= g
        dz *= z * (1.0 - z)
        np.multiply(dan, hn_all[t], out=dr)
        dr *= r * (1.0 - r)
        np.multiply(dan, r, out=dhn)
        di[:, :2 * H] = dh[:, :2 * H]
        g = g * z + dh.dot(whh) if _carries(t, bptt) else None
    return _rnn_grads(dgi, dgh, h, x, wih, need_x, need_b)
