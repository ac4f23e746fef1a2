"""The R-operator of the recurrent layers' kernels through time (``--second-order``), copied into the modules
that call them as :mod:`symgrad.backends.numpy.recurrent`'s kernels are: R{.} = d/d eps (.)(theta + eps v), run on
the gate values and states the forward pass stored.
"""

import numpy as np

from symgrad.backends.numpy.recurrent import _carries, _delta_at, _project

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
