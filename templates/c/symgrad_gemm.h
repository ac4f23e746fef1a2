/* symgrad_gemm.h: the matrix products of loop code, C = A B, A B^T and A^T B, row-major, over `real`.
 *
 * Sections as in symgrad_math.h: symgrad/backends/c/helpers.py copies into a generated source only the
 * kernels its code calls. Before them the source declares `real` (double or float), `symgrad_gemm` (a
 * row-major ILP64 cblas_?gemm handed over at run time through <name>_set_gemm, or null) and, when built
 * with BLAS, SYMGRAD_CBLAS_GEMM (cblas_dgemm or cblas_sgemm). Products below SYMGRAD_BLAS_MIN_WORK (symgrad/sizes.py) multiply-adds
 * (m n k) skip BLAS: the loops here beat a BLAS call there (8-16-16-4: 1.07 vs 1.7 us at batch 1).
 */

/* @helper symgrad_gemm_nn */
/* C (m x n) = A B, A (m x k), B (k x n). */
static void symgrad_gemm_nn(int m, int n, int k, const real *restrict A, const real *restrict B, real *restrict C)
{
    const int big = (long long)m * n * k >= SYMGRAD_BLAS_MIN_WORK;  /* smaller products: the loops below win */
    if (symgrad_gemm && big) {  /* a BLAS handed over at run time */
        symgrad_gemm(101, 111, 111, m, n, k, 1, A, k, B, n, 0, C, n);
        return;
    }
#ifdef SYMGRAD_CBLAS_GEMM
    if (big) {
        SYMGRAD_CBLAS_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1, A, k, B, n, 0, C, n);
        return;
    }
#endif
    int i = 0;
    for (; i + 4 <= m; i += 4) {  /* four rows of C at a time: each row of B is loaded once for all four */
        real *restrict c0 = C + (size_t)i * n;
        real *restrict c1 = c0 + n;
        real *restrict c2 = c1 + n;
        real *restrict c3 = c2 + n;
        for (int j = 0; j < n; ++j) {
            c0[j] = 0;
            c1[j] = 0;
            c2[j] = 0;
            c3[j] = 0;
        }
        for (int p = 0; p < k; ++p) {
            const real a0 = A[(size_t)i * k + p], a1 = A[(size_t)(i + 1) * k + p], a2 = A[(size_t)(i + 2) * k + p],
                a3 = A[(size_t)(i + 3) * k + p];
            const real *restrict b = B + (size_t)p * n;
            for (int j = 0; j < n; ++j) {
                c0[j] += a0 * b[j];
                c1[j] += a1 * b[j];
                c2[j] += a2 * b[j];
                c3[j] += a3 * b[j];
            }
        }
    }
    for (; i < m; ++i) {
        real *restrict c = C + (size_t)i * n;
        for (int j = 0; j < n; ++j) {
            c[j] = 0;
        }
        for (int p = 0; p < k; ++p) {
            const real a = A[(size_t)i * k + p];
            const real *restrict b = B + (size_t)p * n;
            for (int j = 0; j < n; ++j) {
                c[j] += a * b[j];
            }
        }
    }
}
/* @end */

/* @helper symgrad_gemm_nt needs symgrad_gemm_nn */
/* C (m x n) = A B^T, A (m x k), B (n x k); T is scratch for k x n values. */
static void symgrad_gemm_nt(int m, int n, int k, const real *restrict A, const real *restrict B, real *restrict C,
    real *restrict T)
{
    const int big = (long long)m * n * k >= SYMGRAD_BLAS_MIN_WORK;  /* smaller products: the loops below win */
    if (symgrad_gemm && big) {  /* a BLAS handed over at run time */
        symgrad_gemm(101, 111, 112, m, n, k, 1, A, k, B, k, 0, C, n);
        return;
    }
#ifdef SYMGRAD_CBLAS_GEMM
    if (big) {
        SYMGRAD_CBLAS_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1, A, k, B, k, 0, C, n);
        return;
    }
#endif
    for (int p = 0; p < k; ++p) {  /* T = B^T, so the products run along contiguous rows */
        for (int j = 0; j < n; ++j) {
            T[(size_t)p * n + j] = B[(size_t)j * k + p];
        }
    }
    symgrad_gemm_nn(m, n, k, A, T, C);
}
/* @end */

/* @helper symgrad_gemm_tn */
/* C (m x n) = A^T B, A (k x m), B (k x n). */
static void symgrad_gemm_tn(int m, int n, int k, const real *restrict A, const real *restrict B, real *restrict C)
{
    const int big = (long long)m * n * k >= SYMGRAD_BLAS_MIN_WORK;  /* smaller products: the loops below win */
    if (symgrad_gemm && big) {  /* a BLAS handed over at run time */
        symgrad_gemm(101, 112, 111, m, n, k, 1, A, m, B, n, 0, C, n);
        return;
    }
#ifdef SYMGRAD_CBLAS_GEMM
    if (big) {
        SYMGRAD_CBLAS_GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, m, n, k, 1, A, m, B, n, 0, C, n);
        return;
    }
#endif
    int i = 0;
    for (; i + 4 <= m; i += 4) {  /* four rows of C at a time: each row of B is loaded once for all four */
        real *restrict c0 = C + (size_t)i * n;
        real *restrict c1 = c0 + n;
        real *restrict c2 = c1 + n;
        real *restrict c3 = c2 + n;
        for (int j = 0; j < n; ++j) {
            c0[j] = 0;
            c1[j] = 0;
            c2[j] = 0;
            c3[j] = 0;
        }
        for (int p = 0; p < k; ++p) {
            const real a0 = A[(size_t)p * m + i], a1 = A[(size_t)p * m + i + 1], a2 = A[(size_t)p * m + i + 2],
                a3 = A[(size_t)p * m + i + 3];
            const real *restrict b = B + (size_t)p * n;
            for (int j = 0; j < n; ++j) {
                c0[j] += a0 * b[j];
                c1[j] += a1 * b[j];
                c2[j] += a2 * b[j];
                c3[j] += a3 * b[j];
            }
        }
    }
    for (; i < m; ++i) {
        real *restrict c = C + (size_t)i * n;
        for (int j = 0; j < n; ++j) {
            c[j] = 0;
        }
        for (int p = 0; p < k; ++p) {
            const real a = A[(size_t)p * m + i];
            const real *restrict b = B + (size_t)p * n;
            for (int j = 0; j < n; ++j) {
                c[j] += a * b[j];
            }
        }
    }
}
/* @end */
