/* symgrad_rnn.h: forward and backward through time of PyTorch's single-layer RNN, LSTM and GRU cells (double).
 *
 * The same contract as the NumPy kernels (symgrad/backends/numpy/recurrent.py), for C code: x is (B, T, F)
 * batch-first, hidden states (B, T, H), weights (G*H, F) and (G*H, H) row-major with the gate blocks in
 * PyTorch's order (LSTM i, f, g, o; GRU r, z, n), biases (G*H) or NULL, initial state zeros. No function
 * allocates: the forward pass writes the caller's arrays of the sequence's activations, the backward pass
 * takes a small workspace of a few vectors of G*H doubles (sizes below) and walks one sequence at a time,
 * adding each step's terms into the gradients as it goes. bptt > 0 cuts the carried delta at every multiple
 * of bptt steps (PyTorch's h.detach() every bptt steps). dy is dE/d(output): (B, T, H) when seq, else the
 * last state's (B, H). dx may be NULL (not needed); the gradients are overwritten, not accumulated.
 * Compiles on its own after <math.h> and <string.h> (tests/test_recurrent.py builds it with -Wall -Werror).
 */

typedef struct {
    int B, T, F, H, bptt;  /* batch, steps, features, hidden units, truncation (0: none) */
    const double *wih, *whh, *bih, *bhh;  /* bih and bhh both NULL for bias = "none" */
} symgrad_rnn_layer;

typedef struct {
    double *dx, *dwih, *dwhh, *dbih, *dbhh;  /* dx may be NULL; dbih and dbhh NULL without biases */
} symgrad_rnn_grads;

static inline double symgrad_rnn_sigmoid(double v)
{
    return v >= 0.0 ? 1.0 / (1.0 + exp(-v)) : exp(v) / (1.0 + exp(v));
}

/* out[r] = b1[r] + b2[r] + sum_c W[r, c] v[c] for r < rows (b1, b2 may be NULL). */
static void symgrad_rnn_affine(int rows, int cols, const double *W, const double *v, const double *b1, const double *b2,
                               double *out)
{
    for (int r = 0; r < rows; r++) {
        double s = (b1 ? b1[r] : 0.0) + (b2 ? b2[r] : 0.0);
        const double *w = W + (size_t)r * cols;
        for (int c = 0; c < cols; c++)
            s += w[c] * v[c];
        out[r] = s;
    }
}

/* out[c] += sum_r W[r, c] d[r]: the transposed product that hands a delta back. */
static void symgrad_rnn_back(int rows, int cols, const double *W, const double *d, double *out)
{
    for (int r = 0; r < rows; r++) {
        const double *w = W + (size_t)r * cols;
        for (int c = 0; c < cols; c++)
            out[c] += w[c] * d[r];
    }
}

/* The gradients' shares of one step: dW_ih += d x^T, dW_hh += d_h h_prev^T (h_prev NULL: the zero state),
 * db_ih += d, db_hh += d_h, dx += W_ih^T d. d is the delta of the input part, d_h of the recurrent part. */
static void symgrad_rnn_collect(const symgrad_rnn_layer *L, int G, const double *d, const double *d_h, const double *xt,
                                const double *h_prev, double *dxt, const symgrad_rnn_grads *g)
{
    for (int r = 0; r < G; r++) {
        for (int c = 0; c < L->F; c++)
            g->dwih[(size_t)r * L->F + c] += d[r] * xt[c];
        if (h_prev)
            for (int c = 0; c < L->H; c++)
                g->dwhh[(size_t)r * L->H + c] += d_h[r] * h_prev[c];
        if (g->dbih) {
            g->dbih[r] += d[r];
            g->dbhh[r] += d_h[r];
        }
    }
    if (dxt)
        symgrad_rnn_back(G, L->F, L->wih, d, dxt);
}

static void symgrad_rnn_zero(const symgrad_rnn_layer *L, int G, const symgrad_rnn_grads *g)
{
    memset(g->dwih, 0, sizeof(double) * G * L->F);
    memset(g->dwhh, 0, sizeof(double) * G * L->H);
    if (g->dbih) {
        memset(g->dbih, 0, sizeof(double) * G);
        memset(g->dbhh, 0, sizeof(double) * G);
    }
    if (g->dx)
        memset(g->dx, 0, sizeof(double) * L->B * L->T * L->F);
}

/* dE/dh_t of sequence b: the output's delta at step t (if any) plus the carried one (carry NULL: none); 0 if neither. */
static int symgrad_rnn_delta_at(const symgrad_rnn_layer *L, const double *dy, int seq, int b, int t, const double *carry,
                                double *out)
{
    const int H = L->H;
    const double *own = seq ? dy + ((size_t)b * L->T + t) * H : (t == L->T - 1 ? dy + (size_t)b * H : NULL);
    if (!own && !carry)
        return 0;
    for (int j = 0; j < H; j++)
        out[j] = (own ? own[j] : 0.0) + (carry ? carry[j] : 0.0);
    return 1;
}

static int symgrad_rnn_carries(const symgrad_rnn_layer *L, int t)
{
    return t > 0 && (L->bptt == 0 || t % L->bptt != 0);
}

/* out[r] += sum_c W[r, c] v[c]. */
static void symgrad_rnn_add_product(int rows, int cols, const double *W, const double *v, double *out)
{
    for (int r = 0; r < rows; r++) {
        const double *w = W + (size_t)r * cols;
        double s = 0.0;
        for (int c = 0; c < cols; c++)
            s += w[c] * v[c];
        out[r] += s;
    }
}

/* Elman RNN: h (B, T, H), h_t = f(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), f = relu when relu, else tanh. */
static void symgrad_rnn_forward(const symgrad_rnn_layer *L, int relu, const double *x, double *h)
{
    const int T = L->T, F = L->F, H = L->H;
    for (int b = 0; b < L->B; b++)
        for (int t = 0; t < T; t++) {
            double *ht = h + ((size_t)b * T + t) * H;
            symgrad_rnn_affine(H, F, L->wih, x + ((size_t)b * T + t) * F, L->bih, L->bhh, ht);
            if (t)
                symgrad_rnn_add_product(H, H, L->whh, ht - H, ht);
            for (int j = 0; j < H; j++)
                ht[j] = relu ? (ht[j] > 0.0 ? ht[j] : 0.0) : tanh(ht[j]);
        }
}

/* Its gradients from dy; work: 3 H doubles. */
static void symgrad_rnn_backward(const symgrad_rnn_layer *L, int relu, const double *x, const double *h, const double *dy,
                                 int seq, double *work, const symgrad_rnn_grads *g)
{
    const int T = L->T, F = L->F, H = L->H;
    double *gh = work, *da = work + H, *carry = work + 2 * H;
    symgrad_rnn_zero(L, H, g);
    for (int b = 0; b < L->B; b++) {
        int carried = 0;
        for (int t = T - 1; t >= 0; t--) {
            if (!symgrad_rnn_delta_at(L, dy, seq, b, t, carried ? carry : NULL, gh))
                continue;
            const double *ht = h + ((size_t)b * T + t) * H;
            for (int j = 0; j < H; j++)
                da[j] = gh[j] * (relu ? (ht[j] > 0.0 ? 1.0 : 0.0) : 1.0 - ht[j] * ht[j]);
            symgrad_rnn_collect(L, H, da, da, x + ((size_t)b * T + t) * F, t ? ht - H : NULL,
                                g->dx ? g->dx + ((size_t)b * T + t) * F : NULL, g);
            carried = symgrad_rnn_carries(L, t);
            if (carried) {
                memset(carry, 0, sizeof(double) * H);
                symgrad_rnn_back(H, H, L->whh, da, carry);
            }
        }
    }
}

/* LSTM: h (B, T, H), gates (B, T, 4H) holding i, f, g, o after their activations, c (B, T, H) the cell states. */
static void symgrad_lstm_forward(const symgrad_rnn_layer *L, const double *x, double *h, double *gates, double *c)
{
    const int T = L->T, F = L->F, H = L->H;
    for (int b = 0; b < L->B; b++)
        for (int t = 0; t < T; t++) {
            const size_t s = (size_t)b * T + t;
            double *a = gates + s * 4 * H, *ct = c + s * H, *ht = h + s * H;
            symgrad_rnn_affine(4 * H, F, L->wih, x + s * F, L->bih, L->bhh, a);
            if (t)
                symgrad_rnn_add_product(4 * H, H, L->whh, ht - H, a);
            for (int j = 0; j < H; j++) {
                const double i = symgrad_rnn_sigmoid(a[j]), f = symgrad_rnn_sigmoid(a[H + j]);
                const double gg = tanh(a[2 * H + j]), o = symgrad_rnn_sigmoid(a[3 * H + j]);
                a[j] = i, a[H + j] = f, a[2 * H + j] = gg, a[3 * H + j] = o;
                ct[j] = i * gg + (t ? f * ct[j - H] : 0.0);
                ht[j] = o * tanh(ct[j]);
            }
        }
}

/* Its gradients from dy; work: 7 H doubles (the gate deltas, dE/dh, the carried dE/dh and dE/dc). */
static void symgrad_lstm_backward(const symgrad_rnn_layer *L, const double *x, const double *h, const double *gates,
                                  const double *c, const double *dy, int seq, double *work, const symgrad_rnn_grads *g)
{
    const int T = L->T, F = L->F, H = L->H;
    double *dg = work, *gh = work + 4 * H, *carry = work + 5 * H, *cc = work + 6 * H;
    symgrad_rnn_zero(L, 4 * H, g);
    for (int b = 0; b < L->B; b++) {
        int carried = 0;
        for (int t = T - 1; t >= 0; t--) {
            const size_t s = (size_t)b * T + t;
            if (!symgrad_rnn_delta_at(L, dy, seq, b, t, carried ? carry : NULL, gh))
                continue;
            const double *a = gates + s * 4 * H, *ct = c + s * H;
            for (int j = 0; j < H; j++) {
                const double i = a[j], f = a[H + j], gg = a[2 * H + j], o = a[3 * H + j], tc = tanh(ct[j]);
                const double dc = gh[j] * o * (1.0 - tc * tc) + (carried ? cc[j] : 0.0);  /* + the cell-state path */
                dg[j] = dc * gg * i * (1.0 - i);
                dg[H + j] = t ? dc * ct[j - H] * f * (1.0 - f) : 0.0;
                dg[2 * H + j] = dc * i * (1.0 - gg * gg);
                dg[3 * H + j] = gh[j] * tc * o * (1.0 - o);
                cc[j] = dc * f;  /* dE/dc_{t-1} through c_t */
            }
            symgrad_rnn_collect(L, 4 * H, dg, dg, x + s * F, t ? h + (s - 1) * H : NULL, g->dx ? g->dx + s * F : NULL, g);
            carried = symgrad_rnn_carries(L, t);
            if (carried) {
                memset(carry, 0, sizeof(double) * H);
                symgrad_rnn_back(4 * H, H, L->whh, dg, carry);
            }
        }
    }
}

/* sum_k W[row, k] v[k] plus bias[row] (bias may be NULL). */
static double symgrad_rnn_row(const double *W, int row, int cols, const double *v, const double *bias)
{
    double s = bias ? bias[row] : 0.0;
    for (int k = 0; k < cols; k++)
        s += W[(size_t)row * cols + k] * v[k];
    return s;
}

/* GRU: h (B, T, H), gates (B, T, 3H) holding r, z, n after their activations, hn (B, T, H) = W_hn h_{t-1} + b_hn. */
static void symgrad_gru_forward(const symgrad_rnn_layer *L, const double *x, double *h, double *gates, double *hn)
{
    const int T = L->T, F = L->F, H = L->H;
    for (int b = 0; b < L->B; b++)
        for (int t = 0; t < T; t++) {
            const size_t s = (size_t)b * T + t;
            double *a = gates + s * 3 * H, *ht = h + s * H;
            const double *hp = t ? ht - H : NULL;
            symgrad_rnn_affine(3 * H, F, L->wih, x + s * F, L->bih, NULL, a);
            for (int j = 0; j < H; j++) {
                const double ghr = hp ? symgrad_rnn_row(L->whh, j, H, hp, L->bhh) : (L->bhh ? L->bhh[j] : 0.0);
                const double ghz = hp ? symgrad_rnn_row(L->whh, H + j, H, hp, L->bhh) : (L->bhh ? L->bhh[H + j] : 0.0);
                const double ghn = hp ? symgrad_rnn_row(L->whh, 2 * H + j, H, hp, L->bhh) : (L->bhh ? L->bhh[2 * H + j] : 0.0);
                const double r = symgrad_rnn_sigmoid(a[j] + ghr), z = symgrad_rnn_sigmoid(a[H + j] + ghz);
                const double n = tanh(a[2 * H + j] + r * ghn);
                a[j] = r, a[H + j] = z, a[2 * H + j] = n;
                hn[s * H + j] = ghn;
                ht[j] = (1.0 - z) * n + (hp ? z * hp[j] : 0.0);
            }
        }
}

/* Its gradients from dy; work: 8 H doubles (the deltas of the input and recurrent parts, dE/dh, the carried one). */
static void symgrad_gru_backward(const symgrad_rnn_layer *L, const double *x, const double *h, const double *gates,
                                 const double *hn, const double *dy, int seq, double *work, const symgrad_rnn_grads *g)
{
    const int T = L->T, F = L->F, H = L->H;
    double *dgi = work, *dgh = work + 3 * H, *gh = work + 6 * H, *carry = work + 7 * H;
    symgrad_rnn_zero(L, 3 * H, g);
    for (int b = 0; b < L->B; b++) {
        int carried = 0;
        for (int t = T - 1; t >= 0; t--) {
            const size_t s = (size_t)b * T + t;
            if (!symgrad_rnn_delta_at(L, dy, seq, b, t, carried ? carry : NULL, gh))
                continue;
            const double *a = gates + s * 3 * H, *hp = t ? h + (s - 1) * H : NULL;
            for (int j = 0; j < H; j++) {
                const double r = a[j], z = a[H + j], n = a[2 * H + j];
                const double dan = gh[j] * (1.0 - z) * (1.0 - n * n);  /* dE/d(pre-activation of n) */
                const double dz = gh[j] * ((hp ? hp[j] : 0.0) - n) * z * (1.0 - z);
                const double dr = dan * hn[s * H + j] * r * (1.0 - r);
                dgi[j] = dgh[j] = dr;
                dgi[H + j] = dgh[H + j] = dz;
                dgi[2 * H + j] = dan;
                dgh[2 * H + j] = dan * r;
            }
            symgrad_rnn_collect(L, 3 * H, dgi, dgh, x + s * F, hp, g->dx ? g->dx + s * F : NULL, g);
            carried = symgrad_rnn_carries(L, t);
            if (carried) {
                for (int j = 0; j < H; j++)
                    carry[j] = gh[j] * a[H + j];  /* h_t = ... + z h_{t-1} */
                symgrad_rnn_back(3 * H, H, L->whh, dgh, carry);
            }
        }
    }
}
