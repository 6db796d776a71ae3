/* linear.c -- qk_linear: y = epilogue(x . w^T) on packed weights.
 *
 * Work is cut into jobs of (a chunk of up to 48 rows of x) x (a range of 16-column weight
 * panels). A job widens its rows to int16 (x - x_zp) once, then runs the 6 x 16 micro-kernel over
 * every row block and panel, and the epilogue writes each tile straight into y. Jobs never share
 * an output element, and each element is computed the same way whatever the split, so the
 * result does not depend on the thread count. Weights packed in the 8-bit layout (AVX512-VNNI)
 * go to linear_vnni.c instead.
 */
#include "operators/operators.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

enum { QK__LIN_MC = 48 };

typedef struct {
    const qk_packed_weights *w;
    const void *x;
    qk_dtype xt;
    size_t m;
    int32_t xzp;
    const qk_epilogue *ep;
    void *y;
    size_t nsplit, panels;
    const qk__ukernels *uk;
    _Atomic int status;
} qk__lin_ctx;

static void qk__widen_rows(const void *x, qk_dtype xt, size_t k, size_t k2, size_t r0, size_t rows,
                           int32_t xzp, int16_t *dst) {
    for (size_t r = 0; r < rows; r++) {
        int16_t *d = dst + r * k2;
        if (xt == QK_DT_U8) {
            const uint8_t *s = (const uint8_t *)x + (r0 + r) * k;
            for (size_t i = 0; i < k; i++) d[i] = (int16_t)((int32_t)s[i] - xzp);
        } else {
            const int8_t *s = (const int8_t *)x + (r0 + r) * k;
            for (size_t i = 0; i < k; i++) d[i] = (int16_t)((int32_t)s[i] - xzp);
        }
        if (k2 > k) d[k] = 0;
    }
}

static void qk__lin_jobs(void *vctx, size_t j0, size_t j1) {
    qk__lin_ctx *c = (qk__lin_ctx *)vctx;
    const qk_packed_weights *w = c->w;
    const size_t k2 = w->k2, n = w->n, osz = qk__dtype_size(c->ep->out_type);
    int16_t *abuf = (int16_t *)malloc(QK__LIN_MC * k2 * sizeof(int16_t));
    if (abuf == NULL) {
        atomic_store(&c->status, QK_ERR_NOMEM);
        return;
    }
    int32_t tile[QK_GEMM_MR * QK_GEMM_NR];
    for (size_t j = j0; j < j1; j++) {
        const size_t mi = j / c->nsplit, ni = j % c->nsplit;
        const size_t r0 = mi * QK__LIN_MC;
        const size_t rows = c->m - r0 < QK__LIN_MC ? c->m - r0 : QK__LIN_MC;
        const size_t p0 = c->panels * ni / c->nsplit, p1 = c->panels * (ni + 1) / c->nsplit;
        qk__widen_rows(c->x, c->xt, w->k, k2, r0, rows, c->xzp, abuf);
        for (size_t p = p0; p < p1; p++) {
            const int16_t *panel = w->data + p * k2 * QK_GEMM_NR;
            const size_t o0 = p * QK_GEMM_NR;
            const size_t cols = n - o0 < QK_GEMM_NR ? n - o0 : QK_GEMM_NR;
            for (size_t rb = 0; rb < rows; rb += QK_GEMM_MR) {
                const size_t mr = rows - rb < QK_GEMM_MR ? rows - rb : QK_GEMM_MR;
                c->uk->gemm_s16(mr, k2 / 2, abuf + rb * k2, k2, panel, tile);
                for (size_t r = 0; r < mr; r++) {
                    char *yrow = (char *)c->y + ((r0 + rb + r) * n + o0) * osz;
                    if (c->uk->epilogue_channels(c->ep, o0, tile + r * QK_GEMM_NR, cols, yrow) !=
                        QK_OK)
                        atomic_store(&c->status, QK_ERR_OVERFLOW);
                }
            }
        }
    }
    free(abuf);
}

qk_status qk_linear(const qk_packed_weights *w, const void *x, qk_dtype x_type, size_t m,
                    int32_t x_zero_point, const qk_epilogue *ep, void *y, int threads) {
    if (w == NULL || w->kind != QK__PACK_LINEAR) return QK_ERR_ARG;
    const qk_status st = qk__linear_call_check(w, x_type, x_zero_point, ep);
    if (st != QK_OK) return st;
    /* x (m x k, and its copy padded to whole quads), y (m x n) and the per-row sums must be
     * addressable */
    size_t bytes;
    if (!qk__sz_mul(m, w->k + 3, &bytes) ||
        !qk__sz_mul4(m, w->n, qk__dtype_size(ep->out_type), 1, &bytes) ||
        !qk__sz_mul(m, 4 * sizeof(uint32_t), &bytes))
        return QK_ERR_ARG;
    if (m == 0) return QK_OK;
    if (x == NULL || y == NULL) return QK_ERR_ARG;
    if (w->vnni) /* weights packed in the 8-bit layout: linear_vnni.c */
        return qk__linear_vnni(w, x, x_type, m, x_zero_point + (x_type == QK_DT_S8 ? 128 : 0), ep,
                               y, threads);
    qk__lin_ctx c;
    memset(&c, 0, sizeof c);
    c.w = w;
    c.x = x;
    c.xt = x_type;
    c.m = m;
    c.xzp = x_zero_point;
    c.ep = ep;
    c.y = y;
    c.uk = qk__uk();
    c.panels = (w->n + QK_GEMM_NR - 1) / QK_GEMM_NR;
    const size_t mchunks = (m + QK__LIN_MC - 1) / QK__LIN_MC;
    const size_t t = threads < 1 ? 1 : (size_t)threads;
    c.nsplit = qk__lin_nsplit(mchunks, c.panels, t);
    atomic_init(&c.status, QK_OK);
    qk__parallel(mchunks * c.nsplit, (int)t, qk__lin_jobs, &c);
    return (qk_status)atomic_load(&c.status);
}
