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
The second-order kernels (``_*_jvp``, ``_*_rbackward``) run the R-operator through time on the stored gate values.
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


# -- Second order: the R-operator R{.} = d/d eps (.)(theta + eps v) through time. R{h_{t-1}} (and R{c_{t-1}}) enter
# step t only where the state is carried (not at a truncation point: the detached state is a constant there).
# Gate derivatives in their outputs: sigma' = s (1 - s), sigma'' R{a} = (1 - 2 s) R{s}; tanh' = 1 - g^2,
# tanh'' R{a} = -2 g R{g}.


def _rinput(x, rx, wih, vih, vb, shape):
    """R of the input part of every step, time-major (T, B, G): W_ih R{x_t} + V_ih x_t + v_b (None parts skipped)."""
    r = np.zeros(shape, dtype=x.dtype)
    if rx is not None:
        r += _project(rx, wih, None)
    if vih is not None:
        r += _project(x, vih, None)
    if vb is not None:
        r += vb
    return r


def _rrecurrent(r, h, vhh, vb):
    """r plus V_hh h_{t-1} + v_b at every step (h time-major, h_{-1} = 0), in place: the direction's share of W_hh h + b_hh."""
    if vhh is not None:
        r[1:] += h[:-1].dot(vhh.T)
    if vb is not None:
        r += vb
    return r


def _rnn_rgrads(dgi, dgh, rdgi, rdgh, h, rh, x, rx, wih, vih, bptt, need_x, need_b):
    """(dE/dx, R{dE/dx}, R{dE/dW_ih}, R{dE/dW_hh}, R{dE/db_ih}, R{dE/db_hh}) from the gate deltas and their R:
    R{dW_ih} = sum_t R{delta_t} x_t^T + delta_t R{x_t}^T, R{dW_hh} = sum_t R{delta_t} h_{t-1}^T + delta_t R{h_{t-1}}^T."""
    T, B, G = dgi.shape
    H, F = h.shape[2], x.shape[2]
    rdwih = rdgi.reshape(-1, G).T.dot(x.swapaxes(0, 1).reshape(-1, F))
    if rx is not None:
        rdwih += dgi.reshape(-1, G).T.dot(rx.swapaxes(0, 1).reshape(-1, F))
    rprev = rh[:-1].copy()  # R{h_{t-1}} as step t reads it: 0 where the state was detached
    for t in range(1, T):
        if not _carries(t, bptt):
            rprev[t - 1] = 0.0
    rdwhh = rdgh[1:].reshape(-1, G).T.dot(h[:-1].reshape(-1, H)) + dgh[1:].reshape(-1, G).T.dot(rprev.reshape(-1, H))
    rdbih = rdgi.sum(axis=(0, 1)) if need_b else None
    rdbhh = rdgh.sum(axis=(0, 1)) if need_b else None
    dx = rdx = None
    if need_x:
        dx = dgi.reshape(-1, G).dot(wih).reshape(T, B, F).swapaxes(0, 1)
        rdx = rdgi.reshape(-1, G).dot(wih)
        if vih is not None:
            rdx += dgi.reshape(-1, G).dot(vih)
        rdx = rdx.reshape(T, B, F).swapaxes(0, 1)
    return dx, rdx, rdwih, rdwhh, rdbih, rdbhh


def _rnn_jvp(x, rx, h, wih, whh, vih, vhh, vbih, vbhh, bptt, relu):
    """(R{h} (B, T, H), R{a} (T, B, H)): R{a_t} = W_ih R{x_t} + V_ih x_t + W_hh R{h_{t-1}} + V_hh h_{t-1} + v_bih + v_bhh,
    R{h_t} = f'(a_t) R{a_t}."""
    h = h.swapaxes(0, 1)
    ra = _rrecurrent(_rinput(x, rx, wih, vih, vbih, h.shape), h, vhh, vbhh)
    rh = np.empty_like(ra)
    fp = h > 0 if relu else 1.0 - h * h
    for t in range(h.shape[0]):
        if t and _carries(t, bptt):
            ra[t] += rh[t - 1].dot(whh.T)
        np.multiply(fp[t], ra[t], out=rh[t])
    return rh.swapaxes(0, 1), ra


def _rnn_rbackward(d, rd, h, rh, ra, x, rx, wih, whh, vih, vhh, bptt, need_x, need_b, relu):
    """(dE/dx, R{dE/dx} and the parameters' R{dE/dp}) of an Elman RNN: R{da_t} = R{g_t} f'(a_t) + g_t f''(a_t) R{a_t},
    R{g_{t-1}} = R{da_t} W_hh + da_t V_hh (relu'' = 0, tanh'' = -2 h (1 - h^2))."""
    h, rh = h.swapaxes(0, 1), rh.swapaxes(0, 1)
    T = h.shape[0]
    da, rda = np.zeros_like(h), np.zeros_like(h)
    g = rg = None
    for t in range(T - 1, -1, -1):
        g, rg = _delta_at(d, t, T, g), _delta_at(rd, t, T, rg)
        if g is None:
            break
        ht = h[t]
        fp = ht > 0 if relu else 1.0 - ht * ht
        np.multiply(g, fp, out=da[t])
        np.multiply(rg, fp, out=rda[t])
        if not relu:
            rda[t] -= 2.0 * ht * da[t] * ra[t]
        if _carries(t, bptt):
            g, rg = da[t].dot(whh), rda[t].dot(whh)
            if vhh is not None:
                rg += da[t].dot(vhh)
        else:
            g = rg = None
    return _rnn_rgrads(da, da, rda, rda, h, rh, x, rx, wih, vih, bptt, need_x, need_b)


def _lstm_jvp(x, rx, h, s, wih, whh, vih, vhh, vbih, vbhh, bptt):
    """(R{h} (B, T, H), (R of the gates i, f, g, o (T, B, 4H), R{c} (T, B, H))): R{c_t} = R{f} c_{t-1} + f R{c_{t-1}}
    + R{i} g + i R{g}, R{h_t} = R{o} tanh(c_t) + o (1 - tanh(c_t)^2) R{c_t}."""
    gates, c_all, tc_all = s
    h = h.swapaxes(0, 1)
    H = h.shape[2]
    ra = _rrecurrent(_rinput(x, rx, wih, vih, vbih, gates.shape), h, vhh, vbhh)
    rc_all, rh = np.empty_like(c_all), np.empty_like(h)
    for t in range(h.shape[0]):
        a, r = gates[t], ra[t]
        keep = t and _carries(t, bptt)
        if keep:
            r += rh[t - 1].dot(whh.T)
        sig = a[:, :2 * H]
        r[:, :2 * H] *= sig * (1.0 - sig)
        r[:, 2 * H:3 * H] *= 1.0 - a[:, 2 * H:3 * H] ** 2
        r[:, 3 * H:] *= a[:, 3 * H:] * (1.0 - a[:, 3 * H:])
        i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
        ri, rf, rg, ro = r[:, :H], r[:, H:2 * H], r[:, 2 * H:3 * H], r[:, 3 * H:]
        rc = rc_all[t]
        np.multiply(ri, g, out=rc)
        rc += i * rg
        if t:
            rc += rf * c_all[t - 1]
        if keep:
            rc += f * rc_all[t - 1]
        tc = tc_all[t]
        np.multiply(ro, tc, out=rh[t])
        rh[t] += o * (1.0 - tc * tc) * rc
    return rh.swapaxes(0, 1), (ra, rc_all)


def _lstm_rbackward(d, rd, h, s, rh, rs, x, rx, wih, whh, vih, vhh, bptt, need_x, need_b):
    """(dE/dx, R{dE/dx} and the parameters' R{dE/dp}) of an LSTM: the first-order gate deltas of ``_lstm_backward``
    and, beside each, its R by the product rule (R{dE/dc_t} = (R{g} o + g R{o}) (1 - tc^2) - 2 g o tc R{tc} + R{carry})."""
    gates, c_all, tc_all = s
    rgates, rc_all = rs
    h, rh = h.swapaxes(0, 1), rh.swapaxes(0, 1)
    T, H = h.shape[0], h.shape[2]
    dg, rdg = np.zeros_like(gates), np.zeros_like(gates)
    g = rg = gc = rgc = None
    for t in range(T - 1, -1, -1):
        g, rg = _delta_at(d, t, T, g), _delta_at(rd, t, T, rg)
        if g is None:
            break
        a, ra, dt, rdt = gates[t], rgates[t], dg[t], rdg[t]
        i, f, gg, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
        ri, rf, rgg, ro = ra[:, :H], ra[:, H:2 * H], ra[:, 2 * H:3 * H], ra[:, 3 * H:]
        tc = tc_all[t]
        dtc = 1.0 - tc * tc
        rtc = dtc * rc_all[t]
        eo, reo = g * tc, rg * tc + g * rtc  # dE/do and its R
        dc = g * o * dtc
        rdc = (rg * o + g * ro) * dtc - 2.0 * g * o * tc * rtc
        if gc is not None:
            dc += gc
            rdc += rgc
        ei, rei = dc * gg, rdc * gg + dc * rgg
        eg, reg = dc * i, rdc * i + dc * ri
        if t:
            ef, ref = dc * c_all[t - 1], rdc * c_all[t - 1]
            if _carries(t, bptt):
                ref += dc * rc_all[t - 1]
        else:
            ef = ref = np.zeros_like(dc)
        for e, re, u, ru, lo in ((ei, rei, i, ri, 0), (ef, ref, f, rf, H), (eo, reo, o, ro, 3 * H)):
            sp = u * (1.0 - u)  # sigma'
            dt[:, lo:lo + H] = e * sp
            rdt[:, lo:lo + H] = re * sp + e * (1.0 - 2.0 * u) * ru
        dt[:, 2 * H:3 * H] = eg * (1.0 - gg * gg)
        rdt[:, 2 * H:3 * H] = reg * (1.0 - gg * gg) - 2.0 * eg * gg * rgg
        if _carries(t, bptt):
            gc, rgc = dc * f, rdc * f + dc * rf
            g, rg = dt.dot(whh), rdt.dot(whh)
            if vhh is not None:
                rg += dt.dot(vhh)
        else:
            g = rg = gc = rgc = None
    return _rnn_rgrads(dg, dg, rdg, rdg, h, rh, x, rx, wih, vih, bptt, need_x, need_b)


def _gru_jvp(x, rx, h, s, wih, whh, vih, vhh, vbih, vbhh, bptt):
    """(R{h} (B, T, H), (R of r, z, n (T, B, 3H), R{hn} (T, B, H))): R{n} = (1 - n^2) (R{gi_n} + R{r} hn + r R{hn}),
    R{h_t} = R{n} + R{z} (h_{t-1} - n) + z (R{h_{t-1}} - R{n})."""
    gates, hn_all = s
    h = h.swapaxes(0, 1)
    H = h.shape[2]
    rgi = _rinput(x, rx, wih, vih, vbih, gates.shape)
    rgh = _rrecurrent(np.zeros_like(gates), h, vhh, vbhh)
    rg_all, rhn_all, rh = np.empty_like(gates), np.empty_like(hn_all), np.empty_like(h)
    for t in range(h.shape[0]):
        a, ri, rr_ = gates[t], rgi[t], rgh[t]
        keep = t and _carries(t, bptt)
        if keep:
            rr_ = rr_ + rh[t - 1].dot(whh.T)
        r, z, n = a[:, :H], a[:, H:2 * H], a[:, 2 * H:]
        out = rg_all[t]
        rr, rz, rn = out[:, :H], out[:, H:2 * H], out[:, 2 * H:]
        np.multiply(ri[:, :2 * H] + rr_[:, :2 * H], a[:, :2 * H] * (1.0 - a[:, :2 * H]), out=out[:, :2 * H])
        rhn = rhn_all[t]
        rhn[...] = rr_[:, 2 * H:]
        np.multiply(ri[:, 2 * H:] + rr * hn_all[t] + r * rhn, 1.0 - n * n, out=rn)
        hp = h[t - 1] if t else 0.0
        rhp = rh[t - 1] if keep else 0.0
        rh[t] = rn + rz * (hp - n) + z * (rhp - rn)
    return rh.swapaxes(0, 1), (rg_all, rhn_all)


def _gru_rbackward(d, rd, h, s, rh, rs, x, rx, wih, whh, vih, vhh, bptt, need_x, need_b):
    """(dE/dx, R{dE/dx} and the parameters' R{dE/dp}) of a GRU: the first-order deltas of ``_gru_backward``
    (input part r, z, n; recurrent part r, z, hn) and, beside each, its R by the product rule."""
    gates, hn_all = s
    rgates, rhn_all = rs
    h, rh = h.swapaxes(0, 1), rh.swapaxes(0, 1)
    T, H = h.shape[0], h.shape[2]
    dgi, dgh, rdgi, rdgh = (np.zeros_like(gates) for _ in range(4))
    g = rg = None
    for t in range(T - 1, -1, -1):
        g, rg = _delta_at(d, t, T, g), _delta_at(rd, t, T, rg)
        if g is None:
            break
        a, ra = gates[t], rgates[t]
        r, z, n = a[:, :H], a[:, H:2 * H], a[:, 2 * H:]
        rr, rz, rn = ra[:, :H], ra[:, H:2 * H], ra[:, 2 * H:]
        hn, rhn = hn_all[t], rhn_all[t]
        hp = h[t - 1] if t else 0.0
        rhp = rh[t - 1] if t and _carries(t, bptt) else 0.0
        dn = 1.0 - n * n
        dan = g * (1.0 - z) * dn
        rdan = (rg * (1.0 - z) - g * rz) * dn - 2.0 * g * (1.0 - z) * n * rn
        ez, rez = g * (hp - n), rg * (hp - n) + g * (rhp - rn)
        er, rer = dan * hn, rdan * hn + dan * rhn
        for e, re, u, ru, lo in ((er, rer, r, rr, 0), (ez, rez, z, rz, H)):
            sp = u * (1.0 - u)
            dgi[t, :, lo:lo + H] = dgh[t, :, lo:lo + H] = e * sp
            rdgi[t, :, lo:lo + H] = rdgh[t, :, lo:lo + H] = re * sp + e * (1.0 - 2.0 * u) * ru
        dgi[t, :, 2 * H:], rdgi[t, :, 2 * H:] = dan, rdan
        dgh[t, :, 2 * H:], rdgh[t, :, 2 * H:] = dan * r, rdan * r + dan * rr
        if _carries(t, bptt):
            g, rg = g * z + dgh[t].dot(whh), rg * z + g * rz + rdgh[t].dot(whh)
            if vhh is not None:
                rg += dgh[t].dot(vhh)
        else:
            g = rg = None
    return _rnn_rgrads(dgi, dgh, rdgi, rdgh, h, rh, x, rx, wih, vih, bptt, need_x, need_b)
