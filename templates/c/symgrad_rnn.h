/* symgrad_rnn.h: forward and backward through time of PyTorch's single-layer RNN, LSTM and GRU cells over `real`,
 * and their R-passes for second order.
 *
 * Sections as in symgrad_conv.h: symgrad/backends/c/helpers.py copies into a generated source only the kernels
 * its code calls. The same contract as the NumPy kernels (symgrad/backends/numpy/recurrent.py): x is (B, T, F)
 * batch-first, hidden states (B, T, H), weights (G*H, F) and (G*H, H) row-major with the gate blocks in PyTorch's
 * order (LSTM i, f, g, o; GRU r, z, n), biases (G*H) or null, initial state zeros. No kernel allocates: the
 * forward pass writes the caller's arrays of the sequence's activations (and copies the last state into `last`
 * unless it is null), using `scratch` of (F + H + 3) G H values for the transposed weights; it walks one
 * sequence at a time: the input parts of all its steps first, then each step one product of W_hh^T with h_{t-1},
 * the sums held in registers.
 * The backward pass walks each sequence back in time, writing every step's gate deltas over the gate values
 * (the RNN: into `da`), then forms the weight gradients, the bias gradients and dx from them, one product each.
 * bptt > 0 cuts the carried delta at every multiple of bptt steps (PyTorch's h.detach() every bptt steps).
 * dy is dE/d(output): (B, T, H) when L->seq, else the last state's (B, H). Any gradient may be null (not
 * needed); the others are overwritten, not accumulated. The second-order kernels (<kind>_jvp, <kind>_rbackward)
 * follow symgrad/backends/numpy/recurrent_second.py's rules on the values the forward pass stored. The file also
 * compiles on its own (tests/rnn_kernels.c): #include it after <math.h>, <stdint.h>, <string.h>, `real` and
 * symgrad_math.h.
 */

/* @helper symgrad_rnn_layer */
typedef struct {
    int B, T, F, H, bptt, seq;  /* batch, steps, features, hidden units, truncation (0: none), every step out */
    const real *wih, *whh, *bih, *bhh;  /* bih and bhh both null for bias = "none" */
} symgrad_rnn_layer;

typedef struct {
    real *dx, *dwih, *dwhh, *dbih, *dbhh;  /* each may be null (not needed) */
} symgrad_rnn_grads;
/* @end */

/* @helper symgrad_rnn_vecmat */
/* y[j] += sum_p v[p * vs] W[p * ldw + j] for j < n over p < k: a vector times a row-major matrix, each sum in
 * the order of p, 32 (then 8) outputs at a time held in registers while p runs. */
static void symgrad_rnn_vecmat(int k, int n, const real *restrict v, int vs, const real *restrict W, int ldw,
    real *restrict y)
{
    int j = 0;
    for (; j + 32 <= n; j += 32) {
        real s[32];
        for (int q = 0; q < 32; ++q) {
            s[q] = y[j + q];
        }
        for (int p = 0; p < k; ++p) {
            const real vp = v[(size_t)p * vs];
            const real *restrict w = W + (size_t)p * ldw + j;
            for (int q = 0; q < 32; ++q) {
                s[q] += vp * w[q];
            }
        }
        for (int q = 0; q < 32; ++q) {
            y[j + q] = s[q];
        }
    }
    for (; j + 8 <= n; j += 8) {
        real s[8];
        for (int q = 0; q < 8; ++q) {
            s[q] = y[j + q];
        }
        for (int p = 0; p < k; ++p) {
            const real vp = v[(size_t)p * vs];
            const real *restrict w = W + (size_t)p * ldw + j;
            for (int q = 0; q < 8; ++q) {
                s[q] += vp * w[q];
            }
        }
        for (int q = 0; q < 8; ++q) {
            y[j + q] = s[q];
        }
    }
    for (; j < n; ++j) {
        real s = y[j];
        for (int p = 0; p < k; ++p) {
            s += v[(size_t)p * vs] * W[(size_t)p * ldw + j];
        }
        y[j] = s;
    }
}
/* @end */

/* @helper symgrad_rnn_transpose */
/* out (cols x rows) = the transpose of W (rows x cols), eight rows of W at a time: each stores whole lines of out. */
static void symgrad_rnn_transpose(int rows, int cols, const real *restrict W, real *restrict out)
{
    for (int r0 = 0; r0 < rows; r0 += 8) {
        const int r1 = r0 + 8 < rows ? r0 + 8 : rows;
        for (int c = 0; c < cols; ++c) {
            for (int r = r0; r < r1; ++r) {
                out[(size_t)c * rows + r] = W[(size_t)r * cols + c];
            }
        }
    }
}
/* @end */

/* @helper symgrad_rnn_prepare needs symgrad_rnn_layer symgrad_rnn_transpose */
/* wt ((F + H) x G*H) = [W_ih^T; W_hh^T], then the biases: bi = b_ih + b_hh (merged: RNN, LSTM) or b_ih, and
 * bh = b_hh (zeros without biases); returns the rest of the scratch, G*H values. */
static real *symgrad_rnn_prepare(const symgrad_rnn_layer *L, int G, int merged, real *restrict wt)
{
    const int F = L->F, H = L->H, GH = G * H;
    symgrad_rnn_transpose(GH, F, L->wih, wt);
    symgrad_rnn_transpose(GH, H, L->whh, wt + (size_t)F * GH);
    real *restrict bi = wt + (size_t)(F + H) * GH, *restrict bh = bi + GH;
    for (int r = 0; r < GH; ++r) {
        bi[r] = L->bih ? (merged ? L->bih[r] + L->bhh[r] : L->bih[r]) : 0;
        bh[r] = L->bhh ? L->bhh[r] : 0;
    }
    return bh + GH;
}
/* @end */

/* @helper symgrad_rnn_project needs symgrad_rnn_vecmat */
/* a (T x GH) = bias + W_ih x_t for the T steps of one sequence x (T x F), wt = W_ih^T (F x GH): the input part of
 * every step before the walk through time, W_ih's few rows staying in cache from step to step. */
static void symgrad_rnn_project(int T, int F, int GH, const real *restrict x, const real *restrict wt,
    const real *restrict bias, real *restrict a)
{
    for (int t = 0; t < T; ++t) {
        real *restrict at = a + (size_t)t * GH;
        for (int r = 0; r < GH; ++r) {
            at[r] = bias[r];
        }
        symgrad_rnn_vecmat(F, GH, x + (size_t)t * F, 1, wt, GH, at);
    }
}
/* @end */

/* @helper symgrad_rnn_delta_at needs symgrad_rnn_layer */
/* gh = dE/dh_t of the step at row s (b T + t): the output's delta there (if any) plus the carried one (if carried);
 * returns 0, gh untouched, when there is neither. */
static int symgrad_rnn_delta_at(const symgrad_rnn_layer *L, const real *restrict dy, int b, int t, int carried,
    const real *restrict carry, real *restrict gh)
{
    const int H = L->H;
    const real *restrict own = L->seq ? dy + ((size_t)b * L->T + t) * H : (t == L->T - 1 ? dy + (size_t)b * H : 0);
    if (own && carried) {
        for (int j = 0; j < H; ++j) {
            gh[j] = own[j] + carry[j];
        }
    } else if (own || carried) {
        const real *restrict from = own ? own : carry;
        for (int j = 0; j < H; ++j) {
            gh[j] = from[j];
        }
    }
    return own || carried;
}

/* Whether step t hands a delta back to step t - 1 (not at t = 0, nor where a truncation detached the state). */
static int symgrad_rnn_carries(const symgrad_rnn_layer *L, int t)
{
    return t > 0 && (L->bptt == 0 || t % L->bptt != 0);
}
/* @end */

/* @helper symgrad_rnn_grads_from needs symgrad_rnn_layer symgrad_rnn_vecmat symgrad_rnn_transpose */
/* The gradients from the deltas of every step: dgi (B, T, G*H) of the input part, the recurrent part's columns
 * [0, split) from dgi and [split, G*H) from dgs (B, T, G*H - split): dW_ih = sum dgi x^T, dW_hh = sum_{t >= 1}
 * dgh_t h_{t-1}^T, db_ih = sum dgi, db_hh = sum dgh, dx = dgi W_ih. The weight gradients are formed transposed in
 * tmp ((F + H) x G*H), 32 steps of the deltas at a time, which stay in cache while every input column uses them. */
static void symgrad_rnn_grads_from(const symgrad_rnn_layer *L, int GH, int split, const real *restrict dgi,
    const real *restrict dgs, const real *restrict x, const real *restrict h, real *restrict tmp,
    const symgrad_rnn_grads *g)
{
    const int B = L->B, T = L->T, F = L->F, H = L->H, rest = GH - split;
    const int rows = B * T;
    real *restrict ti = tmp, *restrict th = tmp + (size_t)F * GH;
    for (size_t i = 0; i < (size_t)(F + H) * GH; ++i) {
        tmp[i] = 0;
    }
    for (int b = 0; b < B && (g->dwih || g->dwhh); ++b) {
        for (int t0 = 0; t0 < T; t0 += 32) {
            const int t1 = t0 + 32 < T ? t0 + 32 : T;
            const size_t s = (size_t)b * T + t0;
            for (int c = 0; c < F && g->dwih; ++c) {
                symgrad_rnn_vecmat(t1 - t0, GH, x + s * F + c, F, dgi + s * GH, GH, ti + (size_t)c * GH);
            }
            const int first = t0 ? t0 : 1;  /* dW_hh: steps t >= 1 with h_{t-1} */
            const size_t s1 = (size_t)b * T + first;
            for (int c = 0; c < H && g->dwhh && t1 > first; ++c) {
                symgrad_rnn_vecmat(t1 - first, split, h + (s1 - 1) * H + c, H, dgi + s1 * GH, GH, th + (size_t)c * GH);
                symgrad_rnn_vecmat(t1 - first, rest, h + (s1 - 1) * H + c, H, dgs + s1 * rest, rest,
                    th + (size_t)c * GH + split);
            }
        }
    }
    if (g->dwih) {
        symgrad_rnn_transpose(F, GH, ti, g->dwih);
    }
    if (g->dwhh) {
        symgrad_rnn_transpose(H, GH, th, g->dwhh);
    }
    if (g->dbih) {
        for (int r = 0; r < GH; ++r) {
            g->dbih[r] = 0;
        }
        for (int s = 0; s < rows; ++s) {
            for (int r = 0; r < GH; ++r) {
                g->dbih[r] += dgi[(size_t)s * GH + r];
            }
        }
    }
    if (g->dbhh) {
        for (int r = 0; r < GH; ++r) {
            g->dbhh[r] = 0;
        }
        for (int s = 0; s < rows; ++s) {
            for (int r = 0; r < split; ++r) {
                g->dbhh[r] += dgi[(size_t)s * GH + r];
            }
            for (int r = 0; r < rest; ++r) {
                g->dbhh[split + r] += dgs[(size_t)s * rest + r];
            }
        }
    }
    if (g->dx) {
        for (int s = 0; s < rows; ++s) {
            real *restrict dxs = g->dx + (size_t)s * F;
            for (int c = 0; c < F; ++c) {
                dxs[c] = 0;
            }
            symgrad_rnn_vecmat(GH, F, dgi + (size_t)s * GH, 1, L->wih, F, dxs);
        }
    }
}
/* @end */

/* @helper symgrad_rnn_last needs symgrad_rnn_layer */
/* last (B, H) = the hidden state of every sequence's last step, when last is not null. */
static void symgrad_rnn_last(const symgrad_rnn_layer *L, const real *restrict h, real *restrict last)
{
    if (!last) {
        return;
    }
    for (int b = 0; b < L->B; ++b) {
        for (int j = 0; j < L->H; ++j) {
            last[(size_t)b * L->H + j] = h[((size_t)b * L->T + L->T - 1) * L->H + j];
        }
    }
}
/* @end */

/* @helper symgrad_rnn_forward needs symgrad_tanh symgrad_rnn_prepare symgrad_rnn_project symgrad_rnn_last */
/* Elman RNN: h (B, T, H), h_t = f(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), f = relu (x <= 0 ? 0 : x) or tanh. */
static void symgrad_rnn_forward(const symgrad_rnn_layer *L, int relu, const real *restrict x, real *restrict h,
    real *restrict last, real *restrict scratch)
{
    const int T = L->T, F = L->F, H = L->H;
    symgrad_rnn_prepare(L, 1, 1, scratch);
    const real *restrict bias = scratch + (size_t)(F + H) * H;
    for (int b = 0; b < L->B; ++b) {
        symgrad_rnn_project(T, F, H, x + (size_t)b * T * F, scratch, bias, h + (size_t)b * T * H);
        for (int t = 0; t < T; ++t) {
            real *restrict ht = h + ((size_t)b * T + t) * H;
            if (t) {
                symgrad_rnn_vecmat(H, H, ht - H, 1, scratch + (size_t)F * H, H, ht);
            }
            if (relu) {
                for (int j = 0; j < H; ++j) {
                    ht[j] = ht[j] <= 0 ? 0 : ht[j];
                }
            } else {
                for (int j = 0; j < H; ++j) {
                    ht[j] = symgrad_tanh(ht[j]);
                }
            }
        }
    }
    symgrad_rnn_last(L, h, last);
}
/* @end */

/* @helper symgrad_rnn_backward needs symgrad_rnn_delta_at symgrad_rnn_grads_from */
/* Its gradients from dy; da (B, T, H) receives every step's delta dE/da_t = dE/dh_t f'(a_t); work: 2 H + (F + H) H
 * values. */
static void symgrad_rnn_backward(const symgrad_rnn_layer *L, int relu, const real *restrict x, const real *restrict h,
    const real *restrict dy, real *restrict da, real *restrict work, const symgrad_rnn_grads *g)
{
    const int T = L->T, H = L->H;
    real *restrict gh = work, *restrict carry = work + H;
    for (int b = 0; b < L->B; ++b) {
        int carried = 0;
        for (int t = T - 1; t >= 0; --t) {
            const size_t s = (size_t)b * T + t;
            real *restrict d = da + s * H;
            const real *restrict ht = h + s * H;
            if (!symgrad_rnn_delta_at(L, dy, b, t, carried, carry, gh)) {
                for (int j = 0; j < H; ++j) {
                    d[j] = 0;
                }
                continue;
            }
            if (relu) {
                for (int j = 0; j < H; ++j) {
                    d[j] = gh[j] * (real)(ht[j] > 0);  /* times step(h): inf * 0 is NaN, as in NumPy */
                }
            } else {
                for (int j = 0; j < H; ++j) {
                    d[j] = gh[j] * (1 - ht[j] * ht[j]);
                }
            }
            carried = symgrad_rnn_carries(L, t);
            if (carried) {
                for (int j = 0; j < H; ++j) {
                    carry[j] = 0;
                }
                symgrad_rnn_vecmat(H, H, d, 1, L->whh, H, carry);
            }
        }
    }
    symgrad_rnn_grads_from(L, H, H, da, da, x, h, work + 2 * H, g);
}
/* @end */

/* @helper symgrad_lstm_forward needs symgrad_sigmoid symgrad_tanh symgrad_rnn_prepare symgrad_rnn_project symgrad_rnn_last */
/* LSTM: h (B, T, H), gates (B, T, 4H) holding i, f, g, o after their activations, c (B, T, H) the cell states and
 * tc (B, T, H) their tanh. */
static void symgrad_lstm_forward(const symgrad_rnn_layer *L, const real *restrict x, real *restrict h,
    real *restrict last, real *restrict gates, real *restrict c, real *restrict tc, real *restrict scratch)
{
    const int T = L->T, F = L->F, H = L->H;
    symgrad_rnn_prepare(L, 4, 1, scratch);
    const real *restrict bias = scratch + (size_t)(F + H) * 4 * H;
    for (int b = 0; b < L->B; ++b) {
        symgrad_rnn_project(T, F, 4 * H, x + (size_t)b * T * F, scratch, bias, gates + (size_t)b * T * 4 * H);
        for (int t = 0; t < T; ++t) {
            const size_t s = (size_t)b * T + t;
            real *restrict a = gates + s * 4 * H, *restrict ct = c + s * H, *restrict tct = tc + s * H;
            real *restrict ht = h + s * H;
            if (t) {
                symgrad_rnn_vecmat(H, 4 * H, ht - H, 1, scratch + (size_t)F * 4 * H, 4 * H, a);
            }
            for (int j = 0; j < 2 * H; ++j) {
                a[j] = symgrad_sigmoid(a[j]);
            }
            for (int j = 2 * H; j < 3 * H; ++j) {
                a[j] = symgrad_tanh(a[j]);
            }
            for (int j = 3 * H; j < 4 * H; ++j) {
                a[j] = symgrad_sigmoid(a[j]);
            }
            if (t) {
                const real *restrict cp = ct - H;
                for (int j = 0; j < H; ++j) {
                    ct[j] = a[j] * a[2 * H + j] + a[H + j] * cp[j];
                }
            } else {
                for (int j = 0; j < H; ++j) {
                    ct[j] = a[j] * a[2 * H + j];
                }
            }
            for (int j = 0; j < H; ++j) {
                tct[j] = symgrad_tanh(ct[j]);
                ht[j] = a[3 * H + j] * tct[j];
            }
        }
    }
    symgrad_rnn_last(L, h, last);
}
/* @end */

/* @helper symgrad_lstm_backward needs symgrad_rnn_delta_at symgrad_rnn_grads_from */
/* Its gradients from dy, each step's gate deltas written over its gate values; work: 3 H + (F + H) 4H values (dE/dh,
 * the carried dE/dh and dE/dc, the transposed weight gradients). */
static void symgrad_lstm_backward(const symgrad_rnn_layer *L, const real *restrict x, const real *restrict h,
    real *restrict gates, const real *restrict c, const real *restrict tc, const real *restrict dy, real *restrict work,
    const symgrad_rnn_grads *g)
{
    const int T = L->T, H = L->H;
    real *restrict gh = work, *restrict carry = work + H, *restrict cc = work + 2 * H;
    for (int b = 0; b < L->B; ++b) {
        int carried = 0;
        for (int t = T - 1; t >= 0; --t) {
            const size_t s = (size_t)b * T + t;
            real *restrict a = gates + s * 4 * H;
            if (!symgrad_rnn_delta_at(L, dy, b, t, carried, carry, gh)) {
                for (int j = 0; j < 4 * H; ++j) {
                    a[j] = 0;
                }
                continue;
            }
            const real *restrict ct = c + s * H, *restrict tct = tc + s * H;
            const real *restrict cp = t ? ct - H : ct;  /* c_{t-1}, not read at t = 0 */
            const int keep = symgrad_rnn_carries(L, t), first = t == 0;
            for (int j = 0; j < H; ++j) {
                const real i = a[j], f = a[H + j], gg = a[2 * H + j], o = a[3 * H + j], u = tct[j];
                const real dc = gh[j] * o * (1 - u * u) + (carried ? cc[j] : 0);  /* through h_t, and the cell path */
                a[j] = dc * gg * (i * (1 - i));
                a[H + j] = first ? 0 : dc * cp[j] * (f * (1 - f));
                a[2 * H + j] = dc * i * (1 - gg * gg);
                a[3 * H + j] = gh[j] * u * (o * (1 - o));
                cc[j] = keep ? dc * f : 0;  /* dE/dc_{t-1} through c_t */
            }
            carried = keep;
            if (carried) {
                for (int j = 0; j < H; ++j) {
                    carry[j] = 0;
                }
                symgrad_rnn_vecmat(4 * H, H, a, 1, L->whh, H, carry);
            }
        }
    }
    symgrad_rnn_grads_from(L, 4 * H, 4 * H, gates, gates, x, h, work + 3 * H, g);
}
/* @end */

/* @helper symgrad_gru_forward needs symgrad_sigmoid symgrad_tanh symgrad_rnn_prepare symgrad_rnn_project symgrad_rnn_last */
/* GRU: h (B, T, H), gates (B, T, 3H) holding r, z, n after their activations, hn (B, T, H) = W_hn h_{t-1} + b_hn. */
static void symgrad_gru_forward(const symgrad_rnn_layer *L, const real *restrict x, real *restrict h,
    real *restrict last, real *restrict gates, real *restrict hn, real *restrict scratch)
{
    const int T = L->T, F = L->F, H = L->H;
    real *restrict gh = symgrad_rnn_prepare(L, 3, 0, scratch);
    const real *restrict wh = scratch + (size_t)F * 3 * H, *restrict bi = scratch + (size_t)(F + H) * 3 * H;
    const real *restrict bh = bi + 3 * H;
    for (int b = 0; b < L->B; ++b) {
        symgrad_rnn_project(T, F, 3 * H, x + (size_t)b * T * F, scratch, bi, gates + (size_t)b * T * 3 * H);
        for (int t = 0; t < T; ++t) {
            const size_t s = (size_t)b * T + t;
            real *restrict a = gates + s * 3 * H, *restrict ht = h + s * H, *restrict hnt = hn + s * H;
            for (int r = 0; r < 3 * H; ++r) {
                gh[r] = bh[r];
            }
            if (t) {
                symgrad_rnn_vecmat(H, 3 * H, ht - H, 1, wh, 3 * H, gh);
            }
            for (int j = 0; j < 2 * H; ++j) {
                a[j] = symgrad_sigmoid(a[j] + gh[j]);
            }
            for (int j = 0; j < H; ++j) {
                hnt[j] = gh[2 * H + j];
                a[2 * H + j] = symgrad_tanh(a[2 * H + j] + a[j] * hnt[j]);
            }
            if (t) {
                const real *restrict hp = ht - H;
                for (int j = 0; j < H; ++j) {
                    ht[j] = a[2 * H + j] + a[H + j] * (hp[j] - a[2 * H + j]);  /* (1 - z) n + z h_{t-1} */
                }
            } else {
                for (int j = 0; j < H; ++j) {
                    ht[j] = a[2 * H + j] + a[H + j] * -a[2 * H + j];
                }
            }
        }
    }
    symgrad_rnn_last(L, h, last);
}
/* @end */

/* @helper symgrad_gru_backward needs symgrad_rnn_delta_at symgrad_rnn_grads_from */
/* Its gradients from dy: each step's deltas of the input part (r, z, n) written over its gate values, the recurrent
 * part's delta of hn over hn (the recurrent part's r and z deltas are the input part's); work: 2 H + (F + H) 3H
 * values. */
static void symgrad_gru_backward(const symgrad_rnn_layer *L, const real *restrict x, const real *restrict h,
    real *restrict gates, real *restrict hn, const real *restrict dy, real *restrict work, const symgrad_rnn_grads *g)
{
    const int T = L->T, H = L->H;
    real *restrict gh = work, *restrict carry = work + H;
    for (int b = 0; b < L->B; ++b) {
        int carried = 0;
        for (int t = T - 1; t >= 0; --t) {
            const size_t s = (size_t)b * T + t;
            real *restrict a = gates + s * 3 * H, *restrict hnt = hn + s * H;
            if (!symgrad_rnn_delta_at(L, dy, b, t, carried, carry, gh)) {
                for (int j = 0; j < 3 * H; ++j) {
                    a[j] = 0;
                }
                for (int j = 0; j < H; ++j) {
                    hnt[j] = 0;
                }
                continue;
            }
            const real *restrict hp = t ? h + (s - 1) * H : h + s * H;  /* h_{t-1}, not read at t = 0 */
            const int first = t == 0;
            carried = symgrad_rnn_carries(L, t);
            for (int j = 0; j < H; ++j) {
                const real r = a[j], z = a[H + j], n = a[2 * H + j];
                const real dn = gh[j] * (1 - z) * (1 - n * n);  /* dE/d(pre-activation of n) */
                const real dz = (first ? -n : hp[j] - n) * gh[j] * (z * (1 - z));
                a[j] = dn * hnt[j] * (r * (1 - r));
                a[H + j] = dz;
                a[2 * H + j] = dn;
                hnt[j] = dn * r;
                carry[j] = carried ? gh[j] * z : 0;  /* h_t = ... + z h_{t-1} */
            }
            if (carried) {
                symgrad_rnn_vecmat(2 * H, H, a, 1, L->whh, H, carry);
                symgrad_rnn_vecmat(H, H, hnt, 1, L->whh + (size_t)2 * H * H, H, carry);
            }
        }
    }
    symgrad_rnn_grads_from(L, 3 * H, 2 * H, gates, hn, x, h, work + 2 * H, g);
}
/* @end */

/* @helper symgrad_rnn_rparts needs symgrad_rnn_layer symgrad_rnn_vecmat symgrad_rnn_transpose */
/* wt = the transposes the R-forward reads, each (rows x GH): W_ih^T, W_hh^T, then V_ih^T and V_hh^T where D has them
 * (2 (F + H) GH values). */
static void symgrad_rnn_rtranspose(const symgrad_rnn_layer *L, const symgrad_rnn_layer *D, int GH, real *restrict wt)
{
    const int F = L->F, H = L->H;
    symgrad_rnn_transpose(GH, F, L->wih, wt);
    symgrad_rnn_transpose(GH, H, L->whh, wt + (size_t)F * GH);
    if (D->wih) {
        symgrad_rnn_transpose(GH, F, D->wih, wt + (size_t)(F + H) * GH);
    }
    if (D->whh) {
        symgrad_rnn_transpose(GH, H, D->whh, wt + (size_t)(2 * F + H) * GH);
    }
}

/* The R of step t's gate inputs (second order), row s = b T + t, GH gate rows, wt from symgrad_rnn_rtranspose:
 * ri = v_bih + W_ih rx_t + V_ih x_t (rx, D->wih, D->bih may be null), and rr = v_bhh + V_hh h_{t-1} + W_hh R{h_{t-1}}
 * (the last only where carried). */
static void symgrad_rnn_rparts(const symgrad_rnn_layer *L, const symgrad_rnn_layer *D, int GH, int t, size_t s,
    int carried, const real *restrict x, const real *restrict rx, const real *restrict h, const real *restrict rh,
    const real *restrict wt, real *restrict ri, real *restrict rr)
{
    const int F = L->F, H = L->H;
    for (int r = 0; r < GH; ++r) {
        ri[r] = D->bih ? D->bih[r] : 0;
        rr[r] = D->bhh ? D->bhh[r] : 0;
    }
    if (rx) {
        symgrad_rnn_vecmat(F, GH, rx + s * F, 1, wt, GH, ri);
    }
    if (D->wih) {
        symgrad_rnn_vecmat(F, GH, x + s * F, 1, wt + (size_t)(F + H) * GH, GH, ri);
    }
    if (t > 0 && D->whh) {
        symgrad_rnn_vecmat(H, GH, h + (s - 1) * H, 1, wt + (size_t)(2 * F + H) * GH, GH, rr);
    }
    if (carried) {
        symgrad_rnn_vecmat(H, GH, rh + (s - 1) * H, 1, wt + (size_t)F * GH, GH, rr);
    }
}
/* @end */

/* @helper symgrad_rnn_jvp needs symgrad_rnn_delta_at symgrad_rnn_last symgrad_rnn_rparts */
/* R through time of an Elman RNN (second order) along rx (null: 0) and the direction D on the weights (D->wih, whh,
 * bih, bhh; any null: 0): ra_t = W_ih rx_t + V_ih x_t + v_bih + v_bhh + V_hh h_{t-1} + W_hh R{h_{t-1}} (where the
 * state is carried), rh_t = f'(a_t) ra_t, both (B, T, H); rlast = the last step's rh unless null; fixed: 2 H +
 * 2 (F + H) H values. */
static void symgrad_rnn_jvp(const symgrad_rnn_layer *L, int relu, const symgrad_rnn_layer *D, const real *restrict x,
    const real *restrict rx, const real *restrict h, real *restrict rh, real *restrict ra, real *restrict rlast,
    real *restrict fixed)
{
    const int T = L->T, H = L->H;
    real *restrict ri = fixed, *restrict rr = fixed + H, *restrict wt = fixed + 2 * H;
    symgrad_rnn_rtranspose(L, D, H, wt);
    for (int b = 0; b < L->B; ++b) {
        for (int t = 0; t < T; ++t) {
            const size_t s = (size_t)b * T + t;
            symgrad_rnn_rparts(L, D, H, t, s, symgrad_rnn_carries(L, t), x, rx, h, rh, wt, ri, rr);
            for (int j = 0; j < H; ++j) {
                const real hj = h[s * H + j], acc = ri[j] + rr[j];
                ra[s * H + j] = acc;
                rh[s * H + j] = (relu ? (real)(hj > 0) : 1 - hj * hj) * acc;
            }
        }
    }
    symgrad_rnn_last(L, rh, rlast);
}
/* @end */

/* @helper symgrad_rnn_rgrads needs symgrad_rnn_delta_at symgrad_rnn_grads_from */
/* rprev (B, T, H): row t = R{h_t} where step t + 1 reads it (carried), else 0 (the detached state is a constant). */
static void symgrad_rnn_rprev(const symgrad_rnn_layer *L, const real *restrict rh, real *restrict rprev)
{
    const int T = L->T, H = L->H;
    for (int b = 0; b < L->B; ++b) {
        for (int t = 0; t < T; ++t) {
            const size_t s = ((size_t)b * T + t) * H;
            const int next = t + 1 < T && symgrad_rnn_carries(L, t + 1);
            for (int j = 0; j < H; ++j) {
                rprev[s + j] = next ? rh[s + j] : 0;
            }
        }
    }
}

/* The R of every gradient (second order) from the deltas d (input part dgi, recurrent part's columns from split on
 * in dgs, as symgrad_rnn_grads_from) and their R rd: R{dW_ih} = sum R{dgi_t} x_t^T + dgi_t rx_t^T, R{dW_hh} = sum
 * R{dgh_t} h_{t-1}^T + dgh_t R{h_{t-1}}^T (rprev), R{db} = sum R{d}, g->dx = R{dE/dx} = R{dgi} W_ih + dgi V_ih; and
 * dx = dgi W_ih unless null. q (B T F), tmp ((F + H) GH), pih (GH F), phh (GH H) are scratch. */
static void symgrad_rnn_rgrads(const symgrad_rnn_layer *L, const symgrad_rnn_layer *D, int GH, int split,
    const real *restrict dgi, const real *restrict dgs, const real *restrict rdgi, const real *restrict rdgs,
    const real *restrict x, const real *restrict rx, const real *restrict h, const real *restrict rprev,
    real *restrict dx, real *restrict q, real *restrict tmp, real *restrict pih, real *restrict phh,
    const symgrad_rnn_grads *g)
{
    const int F = L->F, H = L->H;
    symgrad_rnn_grads_from(L, GH, split, rdgi, rdgs, x, h, tmp, g);
    symgrad_rnn_layer V = *L;
    V.wih = D->wih;
    const symgrad_rnn_grads second = {g->dx && D->wih ? q : 0, g->dwih && rx ? pih : 0, g->dwhh ? phh : 0, 0, 0};
    if (second.dx || second.dwih || second.dwhh) {
        symgrad_rnn_grads_from(&V, GH, split, dgi, dgs, rx, rprev, tmp, &second);
        if (second.dx) {
            for (size_t i = 0; i < (size_t)L->B * L->T * F; ++i) {
                g->dx[i] += q[i];
            }
        }
        if (second.dwih) {
            for (size_t i = 0; i < (size_t)GH * F; ++i) {
                g->dwih[i] += pih[i];
            }
        }
        if (second.dwhh) {
            for (size_t i = 0; i < (size_t)GH * H; ++i) {
                g->dwhh[i] += phh[i];
            }
        }
    }
    if (dx) {
        const symgrad_rnn_grads first = {dx, 0, 0, 0, 0};
        symgrad_rnn_grads_from(L, GH, split, dgi, dgs, x, h, tmp, &first);
    }
}
/* @end */

/* @helper symgrad_rnn_rbackward needs symgrad_rnn_rgrads */
/* From dy and rdy = R{dy} (second order): dx = dE/dx unless null and the R of every gradient in g (g->dx: R{dE/dx});
 * per step da_t = dE/dh_t f'(a_t), R{da_t} = R{dE/dh_t} f'(a_t) + dE/dh_t f''(a_t) R{a_t} (relu'' = 0, tanh'' =
 * -2 h f'), carried back as da_t W_hh and R{da_t} W_hh + da_t V_hh; then symgrad_rnn_rgrads. work: (3 T H + T F) B
 * values; fixed: 4 H + 2 (F + H) H values. */
static void symgrad_rnn_rbackward(const symgrad_rnn_layer *L, int relu, const symgrad_rnn_layer *D,
    const real *restrict x, const real *restrict rx, const real *restrict h, const real *restrict rh,
    const real *restrict ra, const real *restrict dy, const real *restrict rdy, real *restrict dx,
    real *restrict work, real *restrict fixed, const symgrad_rnn_grads *g)
{
    const int B = L->B, T = L->T, F = L->F, H = L->H;
    const size_t n = (size_t)B * T * H;
    real *restrict da = work, *restrict rda = work + n, *restrict rprev = work + 2 * n, *restrict q = work + 3 * n;
    real *restrict gh = fixed, *restrict rgh = fixed + H, *restrict carry = fixed + 2 * H, *restrict rcarry = fixed + 3 * H;
    real *restrict tmp = fixed + 4 * H, *restrict pih = tmp + (size_t)(F + H) * H, *restrict phh = pih + (size_t)H * F;
    symgrad_rnn_rprev(L, rh, rprev);
    for (int b = 0; b < B; ++b) {
        int carried = 0;
        for (int t = T - 1; t >= 0; --t) {
            const size_t s = (size_t)b * T + t;
            if (!symgrad_rnn_delta_at(L, dy, b, t, carried, carry, gh)) {
                for (int j = 0; j < H; ++j) {
                    da[s * H + j] = rda[s * H + j] = 0;
                }
                continue;
            }
            symgrad_rnn_delta_at(L, rdy, b, t, carried, rcarry, rgh);
            for (int j = 0; j < H; ++j) {
                const real hj = h[s * H + j], fp = relu ? (real)(hj > 0) : 1 - hj * hj;
                da[s * H + j] = gh[j] * fp;
                rda[s * H + j] = rgh[j] * fp - (relu ? 0 : 2 * hj * gh[j] * fp * ra[s * H + j]);
            }
            carried = symgrad_rnn_carries(L, t);
            if (carried) {
                for (int j = 0; j < H; ++j) {
                    carry[j] = rcarry[j] = 0;
                }
                symgrad_rnn_vecmat(H, H, da + s * H, 1, L->whh, H, carry);
                symgrad_rnn_vecmat(H, H, rda + s * H, 1, L->whh, H, rcarry);
                if (D->whh) {
                    symgrad_rnn_vecmat(H, H, da + s * H, 1, D->whh, H, rcarry);
                }
            }
        }
    }
    symgrad_rnn_rgrads(L, D, H, H, da, da, rda, rda, x, rx, h, rprev, dx, q, tmp, pih, phh, g);
}
/* @end */

/* @helper symgrad_lstm_jvp needs symgrad_rnn_delta_at symgrad_rnn_last symgrad_rnn_rparts */
/* R through time of an LSTM (second order) along rx and the direction D: rgates (B, T, 4H) the R of i, f, g, o
 * (sigma' = s (1 - s), tanh' = 1 - g^2 times the R of their inputs), rc (B, T, H) = R{c_t} = R{i} g + i R{g} +
 * R{f} c_{t-1} + f R{c_{t-1}} (where carried), rh (B, T, H) = R{o} tanh(c_t) + o (1 - tanh(c_t)^2) R{c_t}; rlast the
 * last step's rh unless null; fixed: 8 H + 2 (F + H) 4H values. */
static void symgrad_lstm_jvp(const symgrad_rnn_layer *L, const symgrad_rnn_layer *D, const real *restrict x,
    const real *restrict rx, const real *restrict h, const real *restrict gates, const real *restrict c,
    const real *restrict tc, real *restrict rh, real *restrict rgates, real *restrict rc, real *restrict rlast,
    real *restrict fixed)
{
    const int T = L->T, H = L->H;
    real *restrict ri = fixed, *restrict rr = fixed + 4 * H, *restrict wt = fixed + 8 * H;
    symgrad_rnn_rtranspose(L, D, 4 * H, wt);
    for (int b = 0; b < L->B; ++b) {
        for (int t = 0; t < T; ++t) {
            const size_t s = (size_t)b * T + t;
            const int keep = symgrad_rnn_carries(L, t);
            symgrad_rnn_rparts(L, D, 4 * H, t, s, keep, x, rx, h, rh, wt, ri, rr);
            const real *restrict a = gates + s * 4 * H;
            real *restrict ra = rgates + s * 4 * H;
            for (int q = 0; q < 4 * H; ++q) {
                const real u = a[q];
                ra[q] = (ri[q] + rr[q]) * (q >= 2 * H && q < 3 * H ? 1 - u * u : u * (1 - u));
            }
            for (int j = 0; j < H; ++j) {
                real v = ra[j] * a[2 * H + j] + a[j] * ra[2 * H + j];
                if (t) {
                    v += ra[H + j] * c[(s - 1) * H + j];
                }
                if (keep) {
                    v += a[H + j] * rc[(s - 1) * H + j];
                }
                const real u = tc[s * H + j];
                rc[s * H + j] = v;
                rh[s * H + j] = ra[3 * H + j] * u + a[3 * H + j] * (1 - u * u) * v;
            }
        }
    }
    symgrad_rnn_last(L, rh, rlast);
}
/* @end */

/* @helper symgrad_lstm_rbackward needs symgrad_rnn_rgrads */
/* From dy and rdy = R{dy} (second order): dx unless null and the R of every gradient in g; per step the first-order
 * gate deltas of symgrad_lstm_backward and, beside each, its R by the product rule (R{dE/dc_t} = (R{g} o + g R{o})
 * (1 - tc^2) - 2 g o tc R{tc} + the carried R, sigma'' R{a} = (1 - 2 s) R{s}, tanh'' R{a} = -2 g R{g}); then
 * symgrad_rnn_rgrads. work: (8 T H + T H + T F) B values; fixed: 6 H + (F + H) 4H + 4H F + 4H H values. */
static void symgrad_lstm_rbackward(const symgrad_rnn_layer *L, const symgrad_rnn_layer *D, const real *restrict x,
    const real *restrict rx, const real *restrict h, const real *restrict gates, const real *restrict c,
    const real *restrict tc, const real *restrict rh, const real *restrict rgates, const real *restrict rc,
    const real *restrict dy, const real *restrict rdy, real *restrict dx, real *restrict work, real *restrict fixed,
    const symgrad_rnn_grads *g)
{
    const int B = L->B, T = L->T, F = L->F, H = L->H;
    const size_t n = (size_t)B * T * 4 * H;
    real *restrict dg = work, *restrict rdg = work + n, *restrict rprev = work + 2 * n;
    real *restrict q = rprev + (size_t)B * T * H;
    real *restrict gh = fixed, *restrict rgh = fixed + H, *restrict carry = fixed + 2 * H, *restrict rcarry = fixed + 3 * H;
    real *restrict cc = fixed + 4 * H, *restrict rcc = fixed + 5 * H, *restrict tmp = fixed + 6 * H;
    real *restrict pih = tmp + (size_t)(F + H) * 4 * H, *restrict phh = pih + (size_t)4 * H * F;
    symgrad_rnn_rprev(L, rh, rprev);
    for (int b = 0; b < B; ++b) {
        int carried = 0;
        for (int t = T - 1; t >= 0; --t) {
            const size_t s = (size_t)b * T + t;
            real *restrict d = dg + s * 4 * H, *restrict rd = rdg + s * 4 * H;
            if (!symgrad_rnn_delta_at(L, dy, b, t, carried, carry, gh)) {
                for (int j = 0; j < 4 * H; ++j) {
                    d[j] = rd[j] = 0;
                }
                continue;
            }
            symgrad_rnn_delta_at(L, rdy, b, t, carried, rcarry, rgh);
            const real *restrict a = gates + s * 4 * H, *restrict ra = rgates + s * 4 * H;
            const int keep = symgrad_rnn_carries(L, t);
            for (int j = 0; j < H; ++j) {
                const real i = a[j], f = a[H + j], gg = a[2 * H + j], o = a[3 * H + j];
                const real ri = ra[j], rf = ra[H + j], rgg = ra[2 * H + j], ro = ra[3 * H + j];
                const real u = tc[s * H + j], du = 1 - u * u, ru = du * rc[s * H + j];
                const real eo = gh[j] * u, reo = rgh[j] * u + gh[j] * ru;
                real dc = gh[j] * o * du, rdc = (rgh[j] * o + gh[j] * ro) * du - 2 * gh[j] * o * u * ru;
                if (carried) {
                    dc += cc[j];
                    rdc += rcc[j];
                }
                const real ei = dc * gg, rei = rdc * gg + dc * rgg, eg = dc * i, reg = rdc * i + dc * ri;
                real ef = 0, ref = 0;
                if (t) {
                    const real cp = c[(s - 1) * H + j];
                    ef = dc * cp;
                    ref = rdc * cp + (keep ? dc * rc[(s - 1) * H + j] : 0);
                }
                d[j] = ei * i * (1 - i);
                rd[j] = rei * i * (1 - i) + ei * (1 - 2 * i) * ri;
                d[H + j] = ef * f * (1 - f);
                rd[H + j] = ref * f * (1 - f) + ef * (1 - 2 * f) * rf;
                d[2 * H + j] = eg * (1 - gg * gg);
                rd[2 * H + j] = reg * (1 - gg * gg) - 2 * eg * gg * rgg;
                d[3 * H + j] = eo * o * (1 - o);
                rd[3 * H + j] = reo * o * (1 - o) + eo * (1 - 2 * o) * ro;
                cc[j] = keep ? dc * f : 0;
                rcc[j] = keep ? rdc * f + dc * rf : 0;
            }
            carried = keep;
            if (carried) {
                for (int j = 0; j < H; ++j) {
                    carry[j] = rcarry[j] = 0;
                }
                symgrad_rnn_vecmat(4 * H, H, d, 1, L->whh, H, carry);
                symgrad_rnn_vecmat(4 * H, H, rd, 1, L->whh, H, rcarry);
                if (D->whh) {
                    symgrad_rnn_vecmat(4 * H, H, d, 1, D->whh, H, rcarry);
                }
            }
        }
    }
    symgrad_rnn_rgrads(L, D, 4 * H, 4 * H, dg, dg, rdg, rdg, x, rx, h, rprev, dx, q, tmp, pih, phh, g);
}
/* @end */

/* @helper symgrad_gru_jvp needs symgrad_rnn_delta_at symgrad_rnn_last symgrad_rnn_rparts */
/* R through time of a GRU (second order) along rx and the direction D: rgates (B, T, 3H) = R{r}, R{z} (sigma' times
 * the R of their inputs) and R{n} = (1 - n^2) (R{gi_n} + R{r} hn + r R{hn}), rhn (B, T, H) = R{hn} (the recurrent
 * part's n rows), rh (B, T, H) = R{n} + R{z} (h_{t-1} - n) + z (R{h_{t-1}} - R{n}); rlast the last step's rh unless
 * null; fixed: 6 H + 2 (F + H) 3H values. */
static void symgrad_gru_jvp(const symgrad_rnn_layer *L, const symgrad_rnn_layer *D, const real *restrict x,
    const real *restrict rx, const real *restrict h, const real *restrict gates, const real *restrict hn,
    real *restrict rh, real *restrict rgates, real *restrict rhn, real *restrict rlast, real *restrict fixed)
{
    const int T = L->T, H = L->H;
    real *restrict ri = fixed, *restrict rr = fixed + 3 * H, *restrict wt = fixed + 6 * H;
    symgrad_rnn_rtranspose(L, D, 3 * H, wt);
    for (int b = 0; b < L->B; ++b) {
        for (int t = 0; t < T; ++t) {
            const size_t s = (size_t)b * T + t;
            const int keep = symgrad_rnn_carries(L, t);
            symgrad_rnn_rparts(L, D, 3 * H, t, s, keep, x, rx, h, rh, wt, ri, rr);
            const real *restrict a = gates + s * 3 * H;
            real *restrict ra = rgates + s * 3 * H;
            for (int q = 0; q < 2 * H; ++q) {
                ra[q] = (ri[q] + rr[q]) * a[q] * (1 - a[q]);
            }
            for (int j = 0; j < H; ++j) {
                const real r = a[j], z = a[H + j], n = a[2 * H + j];
                const real hp = t ? h[(s - 1) * H + j] : 0, rhp = keep ? rh[(s - 1) * H + j] : 0;
                rhn[s * H + j] = rr[2 * H + j];
                const real rn = (ri[2 * H + j] + ra[j] * hn[s * H + j] + r * rr[2 * H + j]) * (1 - n * n);
                ra[2 * H + j] = rn;
                rh[s * H + j] = rn + ra[H + j] * (hp - n) + z * (rhp - rn);
            }
        }
    }
    symgrad_rnn_last(L, rh, rlast);
}
/* @end */

/* @helper symgrad_gru_rbackward needs symgrad_rnn_rgrads */
/* From dy and rdy = R{dy} (second order): dx unless null and the R of every gradient in g; per step the first-order
 * deltas of symgrad_gru_backward (input part r, z, n; recurrent part's hn) and, beside each, its R by the product
 * rule; then symgrad_rnn_rgrads. work: (6 T H + 2 T H + T H + T F) B values; fixed: 4 H + (F + H) 3H + 3H F + 3H H
 * values. */
static void symgrad_gru_rbackward(const symgrad_rnn_layer *L, const symgrad_rnn_layer *D, const real *restrict x,
    const real *restrict rx, const real *restrict h, const real *restrict gates, const real *restrict hn,
    const real *restrict rh, const real *restrict rgates, const real *restrict rhn, const real *restrict dy,
    const real *restrict rdy, real *restrict dx, real *restrict work, real *restrict fixed, const symgrad_rnn_grads *g)
{
    const int B = L->B, T = L->T, F = L->F, H = L->H;
    const size_t n3 = (size_t)B * T * 3 * H, n1 = (size_t)B * T * H;
    real *restrict dgi = work, *restrict rdgi = work + n3, *restrict dgs = work + 2 * n3, *restrict rdgs = dgs + n1;
    real *restrict rprev = rdgs + n1, *restrict q = rprev + n1;
    real *restrict gh = fixed, *restrict rgh = fixed + H, *restrict carry = fixed + 2 * H, *restrict rcarry = fixed + 3 * H;
    real *restrict tmp = fixed + 4 * H, *restrict pih = tmp + (size_t)(F + H) * 3 * H, *restrict phh = pih + (size_t)3 * H * F;
    symgrad_rnn_rprev(L, rh, rprev);
    for (int b = 0; b < B; ++b) {
        int carried = 0;
        for (int t = T - 1; t >= 0; --t) {
            const size_t s = (size_t)b * T + t;
            real *restrict d = dgi + s * 3 * H, *restrict rd = rdgi + s * 3 * H;
            real *restrict ds = dgs + s * H, *restrict rds = rdgs + s * H;
            if (!symgrad_rnn_delta_at(L, dy, b, t, carried, carry, gh)) {
                for (int j = 0; j < 3 * H; ++j) {
                    d[j] = rd[j] = 0;
                }
                for (int j = 0; j < H; ++j) {
                    ds[j] = rds[j] = 0;
                }
                continue;
            }
            symgrad_rnn_delta_at(L, rdy, b, t, carried, rcarry, rgh);
            const real *restrict a = gates + s * 3 * H, *restrict ra = rgates + s * 3 * H;
            const int keep = symgrad_rnn_carries(L, t);
            for (int j = 0; j < H; ++j) {
                const real r = a[j], z = a[H + j], n = a[2 * H + j], rr = ra[j], rz = ra[H + j], rn = ra[2 * H + j];
                const real hp = t ? h[(s - 1) * H + j] : 0, rhp = keep ? rh[(s - 1) * H + j] : 0;
                const real hnj = hn[s * H + j], rhnj = rhn[s * H + j], dn = 1 - n * n;
                const real dan = gh[j] * (1 - z) * dn;
                const real rdan = (rgh[j] * (1 - z) - gh[j] * rz) * dn - 2 * gh[j] * (1 - z) * n * rn;
                const real ez = gh[j] * (hp - n), rez = rgh[j] * (hp - n) + gh[j] * (rhp - rn);
                const real er = dan * hnj, rer = rdan * hnj + dan * rhnj;
                d[j] = er * r * (1 - r);
                rd[j] = rer * r * (1 - r) + er * (1 - 2 * r) * rr;
                d[H + j] = ez * z * (1 - z);
                rd[H + j] = rez * z * (1 - z) + ez * (1 - 2 * z) * rz;
                d[2 * H + j] = dan;
                rd[2 * H + j] = rdan;
                ds[j] = dan * r;
                rds[j] = rdan * r + dan * rr;
                carry[j] = keep ? gh[j] * z : 0;  /* h_t = ... + z h_{t-1} */
                rcarry[j] = keep ? rgh[j] * z + gh[j] * rz : 0;
            }
            carried = keep;
            if (carried) {
                symgrad_rnn_vecmat(2 * H, H, d, 1, L->whh, H, carry);
                symgrad_rnn_vecmat(H, H, ds, 1, L->whh + (size_t)2 * H * H, H, carry);
                symgrad_rnn_vecmat(2 * H, H, rd, 1, L->whh, H, rcarry);
                symgrad_rnn_vecmat(H, H, rds, 1, L->whh + (size_t)2 * H * H, H, rcarry);
                if (D->whh) {
                    symgrad_rnn_vecmat(2 * H, H, d, 1, D->whh, H, rcarry);
                    symgrad_rnn_vecmat(H, H, ds, 1, D->whh + (size_t)2 * H * H, H, rcarry);
                }
            }
        }
    }
    symgrad_rnn_rgrads(L, D, 3 * H, 2 * H, dgi, dgs, rdgi, rdgs, x, rx, h, rprev, dx, q, tmp, pih, phh, g);
}
/* @end */
