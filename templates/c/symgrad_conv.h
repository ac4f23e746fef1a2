/* symgrad_conv.h: the kernels of graph networks over `real`: convolution, pooling, bias, block copies, transposes.
 *
 * Sections as in symgrad_math.h: symgrad/backends/c/helpers.py copies into a generated source only the
 * kernels its code calls (and those they need, from this file or symgrad_gemm.h). Values are batch-major
 * and row-major per sample, as PyTorch: x (batch, c, h, w), weight (o, c, kh, kw). A 1-D layer is the
 * 2-D one with h = oh = kh = 1. Every kernel writes its outputs whole (no accumulation across calls).
 * The file also compiles on its own (tests/test_graph_c.py): #include it after <math.h>, `real`,
 * `symgrad_gemm`, SYMGRAD_BLAS_MIN_WORK and symgrad_gemm.h.
 */

/* @helper symgrad_window */
/* The geometry of a convolution or pooling layer: input (c, h, w), output (o, oh, ow), kernel, stride,
 * padding before (the padding after is in the output size) and dilation. */
typedef struct {
    int c, h, w;
    int o, oh, ow;
    int kh, kw;
    int sh, sw;
    int ph, pw;
    int dh, dw;
} symgrad_window;

/* The output positions [*lo, *hi) of an axis whose tap at kernel offset `tap` (k * dilation) reads inside
 * the input: 0 <= pos * s + tap - p < n, for `on` output positions. */
static void symgrad_span(int n, int on, int s, int p, int tap, int *lo, int *hi)
{
    const int a = p - tap, b = n - 1 + p - tap;
    const int first = a <= 0 ? 0 : (a + s - 1) / s;
    const int end = b < 0 ? 0 : b / s + 1;
    *hi = end < on ? end : on;
    *lo = first < *hi ? first : *hi;
}
/* @end */

/* @helper symgrad_conv_forward needs symgrad_window */
/* z (batch, o, oh, ow) = the cross-correlation of x with w, plus b[o] (b may be null); loops. */
static void symgrad_conv_forward(const symgrad_window *g, int batch, const real *restrict x, const real *restrict w,
    const real *restrict b, real *restrict z)
{
    const size_t plane = (size_t)g->oh * g->ow, xs = (size_t)g->c * g->h * g->w;
    for (int n = 0; n < batch; ++n) {
        for (int o = 0; o < g->o; ++o) {
            real *restrict zo = z + ((size_t)n * g->o + o) * plane;
            const real bias = b ? b[o] : 0;
            for (size_t q = 0; q < plane; ++q) {
                zo[q] = bias;
            }
            for (int c = 0; c < g->c; ++c) {
                const real *restrict xc = x + (size_t)n * xs + (size_t)c * g->h * g->w;
                for (int i = 0; i < g->kh; ++i) {
                    int y0, y1;
                    symgrad_span(g->h, g->oh, g->sh, g->ph, i * g->dh, &y0, &y1);
                    for (int j = 0; j < g->kw; ++j) {
                        const real wv = w[(((size_t)o * g->c + c) * g->kh + i) * g->kw + j];
                        const int shift = j * g->dw - g->pw;
                        int x0, x1;
                        symgrad_span(g->w, g->ow, g->sw, g->pw, j * g->dw, &x0, &x1);
                        for (int oy = y0; oy < y1; ++oy) {
                            const real *restrict xr = xc + (size_t)(oy * g->sh + i * g->dh - g->ph) * g->w;
                            real *restrict zr = zo + (size_t)oy * g->ow;
                            for (int ox = x0; ox < x1; ++ox) {
                                zr[ox] += wv * xr[ox * g->sw + shift];
                            }
                        }
                    }
                }
            }
        }
    }
}
/* @end */

/* @helper symgrad_conv_backward needs symgrad_window */
/* From d = dE/dz: dx = dE/dx (the full convolution of d with the flipped kernel), dw = dE/dw (the
 * cross-correlation of x with d), db = dE/db (d summed over positions); a null output is skipped; loops. */
static void symgrad_conv_backward(const symgrad_window *g, int batch, const real *restrict x, const real *restrict w,
    const real *restrict d, real *restrict dx, real *restrict dw, real *restrict db)
{
    const size_t plane = (size_t)g->oh * g->ow, xs = (size_t)g->c * g->h * g->w;
    const size_t nw = (size_t)g->o * g->c * g->kh * g->kw;
    if (dx) {
        for (size_t q = 0; q < (size_t)batch * xs; ++q) {
            dx[q] = 0;
        }
    }
    if (dw) {
        for (size_t q = 0; q < nw; ++q) {
            dw[q] = 0;
        }
    }
    if (db) {
        for (int o = 0; o < g->o; ++o) {
            db[o] = 0;
        }
    }
    for (int n = 0; n < batch; ++n) {
        for (int o = 0; o < g->o; ++o) {
            const real *restrict dn = d + ((size_t)n * g->o + o) * plane;
            if (db) {
                real s = 0;
                for (size_t q = 0; q < plane; ++q) {
                    s += dn[q];
                }
                db[o] += s;
            }
            for (int c = 0; c < g->c; ++c) {
                const size_t at = (size_t)n * xs + (size_t)c * g->h * g->w;
                for (int i = 0; i < g->kh; ++i) {
                    int y0, y1;
                    symgrad_span(g->h, g->oh, g->sh, g->ph, i * g->dh, &y0, &y1);
                    for (int j = 0; j < g->kw; ++j) {
                        const size_t k = (((size_t)o * g->c + c) * g->kh + i) * g->kw + j;
                        const real wv = w[k];
                        const int shift = j * g->dw - g->pw;
                        int x0, x1;
                        symgrad_span(g->w, g->ow, g->sw, g->pw, j * g->dw, &x0, &x1);
                        real acc = 0;
                        for (int oy = y0; oy < y1; ++oy) {
                            const size_t row = at + (size_t)(oy * g->sh + i * g->dh - g->ph) * g->w;
                            const real *restrict dr = dn + (size_t)oy * g->ow;
                            if (dw) {
                                const real *restrict xr = x + row;
                                for (int ox = x0; ox < x1; ++ox) {
                                    acc += dr[ox] * xr[ox * g->sw + shift];
                                }
                            }
                            if (dx) {
                                real *restrict xr = dx + row;
                                for (int ox = x0; ox < x1; ++ox) {
                                    xr[ox * g->sw + shift] += wv * dr[ox];
                                }
                            }
                        }
                        if (dw) {
                            dw[k] += acc;
                        }
                    }
                }
            }
        }
    }
}
/* @end */

/* @helper symgrad_im2col needs symgrad_window */
/* cols (c kh kw rows of oh ow) of one sample x: row (c, i, j) holds x[c, oy sh + i dh - ph, ox sw + j dw - pw],
 * 0 in the padding. */
static void symgrad_im2col(const symgrad_window *g, const real *restrict x, real *restrict cols)
{
    const size_t plane = (size_t)g->oh * g->ow;
    for (int c = 0; c < g->c; ++c) {
        for (int i = 0; i < g->kh; ++i) {
            int y0, y1;
            symgrad_span(g->h, g->oh, g->sh, g->ph, i * g->dh, &y0, &y1);
            for (int j = 0; j < g->kw; ++j) {
                real *restrict r = cols + (((size_t)c * g->kh + i) * g->kw + j) * plane;
                const int shift = j * g->dw - g->pw;
                int x0, x1;
                symgrad_span(g->w, g->ow, g->sw, g->pw, j * g->dw, &x0, &x1);
                for (int oy = 0; oy < g->oh; ++oy) {
                    real *restrict rr = r + (size_t)oy * g->ow;
                    if (oy < y0 || oy >= y1) {
                        for (int ox = 0; ox < g->ow; ++ox) {
                            rr[ox] = 0;
                        }
                        continue;
                    }
                    const real *restrict xr = x + ((size_t)c * g->h + oy * g->sh + i * g->dh - g->ph) * g->w;
                    for (int ox = 0; ox < x0; ++ox) {
                        rr[ox] = 0;
                    }
                    for (int ox = x0; ox < x1; ++ox) {
                        rr[ox] = xr[ox * g->sw + shift];
                    }
                    for (int ox = x1; ox < g->ow; ++ox) {
                        rr[ox] = 0;
                    }
                }
            }
        }
    }
}
/* @end */

/* @helper symgrad_col2im needs symgrad_window */
/* dx (one sample) = each entry of cols (laid out as symgrad_im2col's) added onto the input entry it reads. */
static void symgrad_col2im(const symgrad_window *g, const real *restrict cols, real *restrict dx)
{
    const size_t plane = (size_t)g->oh * g->ow;
    for (size_t q = 0; q < (size_t)g->c * g->h * g->w; ++q) {
        dx[q] = 0;
    }
    for (int c = 0; c < g->c; ++c) {
        for (int i = 0; i < g->kh; ++i) {
            int y0, y1;
            symgrad_span(g->h, g->oh, g->sh, g->ph, i * g->dh, &y0, &y1);
            for (int j = 0; j < g->kw; ++j) {
                const real *restrict r = cols + (((size_t)c * g->kh + i) * g->kw + j) * plane;
                const int shift = j * g->dw - g->pw;
                int x0, x1;
                symgrad_span(g->w, g->ow, g->sw, g->pw, j * g->dw, &x0, &x1);
                for (int oy = y0; oy < y1; ++oy) {
                    const real *restrict rr = r + (size_t)oy * g->ow;
                    real *restrict xr = dx + ((size_t)c * g->h + oy * g->sh + i * g->dh - g->ph) * g->w;
                    for (int ox = x0; ox < x1; ++ox) {
                        xr[ox * g->sw + shift] += rr[ox];
                    }
                }
            }
        }
    }
}
/* @end */

/* @helper symgrad_conv_forward_gemm needs symgrad_im2col symgrad_gemm_nn */
/* symgrad_conv_forward as one product per sample: z_n (o x oh ow) = w (o x c kh kw) cols_n; cols holds
 * c kh kw oh ow values. */
static void symgrad_conv_forward_gemm(const symgrad_window *g, int batch, const real *restrict x,
    const real *restrict w, const real *restrict b, real *restrict z, real *restrict cols)
{
    const int plane = g->oh * g->ow, ck = g->c * g->kh * g->kw;
    for (int n = 0; n < batch; ++n) {
        real *restrict zn = z + (size_t)n * g->o * plane;
        symgrad_im2col(g, x + (size_t)n * g->c * g->h * g->w, cols);
        symgrad_gemm_nn(g->o, plane, ck, w, cols, zn);
        if (b) {
            for (int o = 0; o < g->o; ++o) {
                for (int q = 0; q < plane; ++q) {
                    zn[(size_t)o * plane + q] += b[o];
                }
            }
        }
    }
}
/* @end */

/* @helper symgrad_conv_backward_gemm needs symgrad_im2col symgrad_col2im symgrad_gemm_nt symgrad_gemm_tn */
/* symgrad_conv_backward as products per sample: dw += d_n cols_n^T, dx_n = col2im(w^T d_n). Scratch: cols
 * (c kh kw oh ow values), tmp (o c kh kw) and T (oh ow c kh kw, for symgrad_gemm_nt). */
static void symgrad_conv_backward_gemm(const symgrad_window *g, int batch, const real *restrict x,
    const real *restrict w, const real *restrict d, real *restrict dx, real *restrict dw, real *restrict db,
    real *restrict cols, real *restrict tmp, real *restrict T)
{
    const int plane = g->oh * g->ow, ck = g->c * g->kh * g->kw;
    const size_t xs = (size_t)g->c * g->h * g->w;
    if (db) {
        for (int o = 0; o < g->o; ++o) {
            db[o] = 0;
        }
    }
    for (int n = 0; n < batch; ++n) {
        const real *restrict dn = d + (size_t)n * g->o * plane;
        if (db) {
            for (int o = 0; o < g->o; ++o) {
                real s = 0;
                for (int q = 0; q < plane; ++q) {
                    s += dn[(size_t)o * plane + q];
                }
                db[o] += s;
            }
        }
        if (dw) {
            symgrad_im2col(g, x + (size_t)n * xs, cols);
            symgrad_gemm_nt(g->o, ck, plane, dn, cols, n ? tmp : dw, T);
            if (n) {
                for (size_t q = 0; q < (size_t)g->o * ck; ++q) {
                    dw[q] += tmp[q];
                }
            }
        }
        if (dx) {
            symgrad_gemm_tn(ck, plane, g->o, w, dn, cols);
            symgrad_col2im(g, cols, dx + (size_t)n * xs);
        }
    }
}
/* @end */

/* @helper symgrad_maxpool_forward needs symgrad_window */
/* z (batch, c, oh, ow) = the maximum of each window of x (padding never wins: windows start at a real entry); a NaN
 * wins, the first one in the window (as the NumPy module's argmax; PyTorch's max pooling propagates NaN too). */
static void symgrad_maxpool_forward(const symgrad_window *g, int batch, const real *restrict x, real *restrict z)
{
    for (int nc = 0; nc < batch * g->c; ++nc) {
        const real *restrict xc = x + (size_t)nc * g->h * g->w;
        for (int oy = 0; oy < g->oh; ++oy) {
            const int ya = oy * g->sh - g->ph, y0 = ya < 0 ? 0 : ya, y1 = ya + g->kh < g->h ? ya + g->kh : g->h;
            for (int ox = 0; ox < g->ow; ++ox) {
                const int xa = ox * g->sw - g->pw, x0 = xa < 0 ? 0 : xa, x1 = xa + g->kw < g->w ? xa + g->kw : g->w;
                real m = xc[(size_t)y0 * g->w + x0];
                for (int i = y0; i < y1; ++i) {
                    for (int j = x0; j < x1; ++j) {
                        const real v = xc[(size_t)i * g->w + j];
                        m = (v > m || (v != v && m == m)) ? v : m;
                    }
                }
                z[((size_t)nc * g->oh + oy) * g->ow + ox] = m;
            }
        }
    }
}
/* @end */

/* @helper symgrad_window_argmax needs symgrad_window */
/* The offset in the channel xc of the window [y0, y1) x [x0, x1)'s maximum: the first one, a NaN winning (as PyTorch). */
static size_t symgrad_window_argmax(const symgrad_window *g, const real *restrict xc, int y0, int y1, int x0, int x1)
{
    size_t arg = (size_t)y0 * g->w + x0;
    real m = xc[arg];
    for (int i = y0; i < y1; ++i) {
        for (int j = x0; j < x1; ++j) {
            const size_t at = (size_t)i * g->w + j;
            if (xc[at] > m || (xc[at] != xc[at] && m == m)) {
                m = xc[at];
                arg = at;
            }
        }
    }
    return arg;
}
/* @end */

/* @helper symgrad_maxpool_backward needs symgrad_window_argmax */
/* dx = each window's delta d routed to the entry its maximum came from, the first in the window on ties (as
 * PyTorch); overlapping windows add. */
static void symgrad_maxpool_backward(const symgrad_window *g, int batch, const real *restrict x,
    const real *restrict d, real *restrict dx)
{
    for (size_t q = 0; q < (size_t)batch * g->c * g->h * g->w; ++q) {
        dx[q] = 0;
    }
    for (int nc = 0; nc < batch * g->c; ++nc) {
        const real *restrict xc = x + (size_t)nc * g->h * g->w;
        real *restrict dc = dx + (size_t)nc * g->h * g->w;
        for (int oy = 0; oy < g->oh; ++oy) {
            const int ya = oy * g->sh - g->ph, y0 = ya < 0 ? 0 : ya, y1 = ya + g->kh < g->h ? ya + g->kh : g->h;
            for (int ox = 0; ox < g->ow; ++ox) {
                const int xa = ox * g->sw - g->pw, x0 = xa < 0 ? 0 : xa, x1 = xa + g->kw < g->w ? xa + g->kw : g->w;
                const size_t arg = symgrad_window_argmax(g, xc, y0, y1, x0, x1);
                dc[arg] += d[((size_t)nc * g->oh + oy) * g->ow + ox];
            }
        }
    }
}
/* @end */

/* @helper symgrad_avgpool_forward needs symgrad_window */
/* z = the mean of each window of x, padding counted as zeros (PyTorch's count_include_pad). */
static void symgrad_avgpool_forward(const symgrad_window *g, int batch, const real *restrict x, real *restrict z)
{
    const real share = (real)1 / (g->kh * g->kw);
    for (int nc = 0; nc < batch * g->c; ++nc) {
        const real *restrict xc = x + (size_t)nc * g->h * g->w;
        for (int oy = 0; oy < g->oh; ++oy) {
            const int ya = oy * g->sh - g->ph, y0 = ya < 0 ? 0 : ya, y1 = ya + g->kh < g->h ? ya + g->kh : g->h;
            for (int ox = 0; ox < g->ow; ++ox) {
                const int xa = ox * g->sw - g->pw, x0 = xa < 0 ? 0 : xa, x1 = xa + g->kw < g->w ? xa + g->kw : g->w;
                real s = 0;
                for (int i = y0; i < y1; ++i) {
                    for (int j = x0; j < x1; ++j) {
                        s += xc[(size_t)i * g->w + j];
                    }
                }
                z[((size_t)nc * g->oh + oy) * g->ow + ox] = s * share;
            }
        }
    }
}
/* @end */

/* @helper symgrad_avgpool_backward needs symgrad_window */
/* dx = each window's delta spread evenly over its kh kw entries (the padding's share is dropped). */
static void symgrad_avgpool_backward(const symgrad_window *g, int batch, const real *restrict d, real *restrict dx)
{
    const real share = (real)1 / (g->kh * g->kw);
    for (size_t q = 0; q < (size_t)batch * g->c * g->h * g->w; ++q) {
        dx[q] = 0;
    }
    for (int nc = 0; nc < batch * g->c; ++nc) {
        real *restrict dc = dx + (size_t)nc * g->h * g->w;
        for (int oy = 0; oy < g->oh; ++oy) {
            const int ya = oy * g->sh - g->ph, y0 = ya < 0 ? 0 : ya, y1 = ya + g->kh < g->h ? ya + g->kh : g->h;
            for (int ox = 0; ox < g->ow; ++ox) {
                const int xa = ox * g->sw - g->pw, x0 = xa < 0 ? 0 : xa, x1 = xa + g->kw < g->w ? xa + g->kw : g->w;
                const real v = d[((size_t)nc * g->oh + oy) * g->ow + ox] * share;
                for (int i = y0; i < y1; ++i) {
                    for (int j = x0; j < x1; ++j) {
                        dc[(size_t)i * g->w + j] += v;
                    }
                }
            }
        }
    }
}
/* @end */

/* @helper symgrad_add_bias */
/* z[r, j, q] += b[j] for z of rows x n x inner (a dense layer: inner 1; a shared bias: n 1). */
static void symgrad_add_bias(int rows, int n, int inner, const real *restrict b, real *restrict z)
{
    for (int r = 0; r < rows; ++r) {
        for (int j = 0; j < n; ++j) {
            real *restrict zj = z + ((size_t)r * n + j) * inner;
            for (int q = 0; q < inner; ++q) {
                zj[q] += b[j];
            }
        }
    }
}
/* @end */

/* @helper symgrad_bias_grad */
/* db[j] = the sum of d[r, j, q] over r and q, for d of rows x n x inner. */
static void symgrad_bias_grad(int rows, int n, int inner, const real *restrict d, real *restrict db)
{
    for (int j = 0; j < n; ++j) {
        db[j] = 0;
    }
    for (int r = 0; r < rows; ++r) {
        for (int j = 0; j < n; ++j) {
            const real *restrict dj = d + ((size_t)r * n + j) * inner;
            real s = 0;
            for (int q = 0; q < inner; ++q) {
                s += dj[q];
            }
            db[j] += s;
        }
    }
}
/* @end */

/* @helper symgrad_copy_block */
/* dst[r * dst_step + i] = src[r * src_step + i] for r < rows, i < n: a concat's slices in and out. */
static void symgrad_copy_block(int rows, int n, const real *restrict src, int src_step, real *restrict dst,
    int dst_step)
{
    for (int r = 0; r < rows; ++r) {
        for (int i = 0; i < n; ++i) {
            dst[(size_t)r * dst_step + i] = src[(size_t)r * src_step + i];
        }
    }
}
/* @end */

/* @helper symgrad_transpose */
/* dst[n, j, i] = src[n, i, j] for n < batch, i < rows, j < cols: every sample's rows x cols matrix transposed. */
static void symgrad_transpose(int batch, int rows, int cols, const real *restrict src, real *restrict dst)
{
    const size_t n = (size_t)rows * cols;
    for (int b = 0; b < batch; ++b) {
        for (int i = 0; i < rows; ++i) {
            for (int j = 0; j < cols; ++j) {
                dst[b * n + (size_t)j * rows + i] = src[b * n + (size_t)i * cols + j];
            }
        }
    }
}
/* @end */

/* @helper symgrad_maxpool_jvp needs symgrad_window_argmax */
/* rz = rx at each window's maximum of x (the entry symgrad_maxpool_backward routes to): the derivative of max
 * pooling along rx, the forward's routing fixed (second order). */
static void symgrad_maxpool_jvp(const symgrad_window *g, int batch, const real *restrict x, const real *restrict rx,
    real *restrict rz)
{
    for (int nc = 0; nc < batch * g->c; ++nc) {
        const real *restrict xc = x + (size_t)nc * g->h * g->w;
        for (int oy = 0; oy < g->oh; ++oy) {
            const int ya = oy * g->sh - g->ph, y0 = ya < 0 ? 0 : ya, y1 = ya + g->kh < g->h ? ya + g->kh : g->h;
            for (int ox = 0; ox < g->ow; ++ox) {
                const int xa = ox * g->sw - g->pw, x0 = xa < 0 ? 0 : xa, x1 = xa + g->kw < g->w ? xa + g->kw : g->w;
                const size_t arg = symgrad_window_argmax(g, xc, y0, y1, x0, x1);
                rz[((size_t)nc * g->oh + oy) * g->ow + ox] = rx[(size_t)nc * g->h * g->w + arg];
            }
        }
    }
}
/* @end */

/* @helper symgrad_add_to */
/* dst[q] += src[q] for q < n: a second term of a bilinear layer's R-pass added to the first (second order). */
static void symgrad_add_to(size_t n, const real *restrict src, real *restrict dst)
{
    for (size_t q = 0; q < n; ++q) {
        dst[q] += src[q];
    }
}
/* @end */
