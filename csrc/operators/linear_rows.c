/* linear_rows.c -- qk_linear_rows: a token-rows Linear (qkernels.torch.blocks.RowLinear) in one
 * operator: the uint8 rows' int32 sums (qk_linear's GEMM, the same jobs and tiles) and the row
 * rescale (qk_row_rescale / _requantize: the zero point's term z_r wsum_c, the row's fixed-point
 * step, the bias, optionally the per-column requantization to 8 bits) as the output stage.
 *
 * Unfused, the sums go to an m x n int32 array (786 KB for MiniLM's 128 x 1536) and a second pass
 * reads them back. Here a job (a chunk of up to 48 rows x a range of 16-column panels, split as
 * qk_linear splits) runs the GEMM over groups of QK__LR_GROUP panels into a small int32 block
 * (48 x 128: 24 KB, in L1 / L2), then rescales each of its rows with the row rescale's own loop
 * (elementwise/rows.c qk__row_rescale_seg: AVX-512 / AVX2 / scalar, the one formula) straight into
 * y. Every element is the same integer as the pair's: the sums are the same int32 (x zero point
 * 0, no bias: qk_linear's QK_REQ_NONE output is the sum itself) and each output is a function of
 * its sum and its row's and column's parameters only, so neither the split nor the grouping
 * changes a bit. Weights packed in the 8-bit layout (AVX512-VNNI) take the pair itself.
 */
#include "elementwise/elementwise.h"
#include "operators/operators.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

enum { QK__LR_MC = 48, QK__LR_GROUP = 8 };

typedef struct {
    const qk_packed_weights *w;
    const uint8_t *x;
    size_t m;
    const qk_row_stage *rs;
    void *y;
    size_t nsplit, panels;
    const qk__ukernels *uk;
    _Atomic int status;
} qk__lr_ctx;

static void qk__lr_jobs(void *vctx, size_t j0, size_t j1) {
    qk__lr_ctx *c = (qk__lr_ctx *)vctx;
    const qk_packed_weights *w = c->w;
    const qk_row_stage *rs = c->rs;
    const size_t k = w->k, k2 = w->k2, n = w->n, yb = rs->out_multiplier != NULL ? 1 : 4;
    const size_t ldb = QK__LR_GROUP * QK_GEMM_NR;
    int16_t *abuf = (int16_t *)malloc(QK__LR_MC * k2 * sizeof(int16_t));
    int32_t *blk = (int32_t *)malloc(QK__LR_MC * ldb * sizeof(int32_t));
    if (abuf == NULL || blk == NULL) {
        free(abuf);
        free(blk);
        atomic_store(&c->status, QK_ERR_NOMEM);
        return;
    }
    int32_t tile[QK_GEMM_MR * QK_GEMM_NR];
    int bad = 0;
    for (size_t j = j0; j < j1; j++) {
        const size_t mi = j / c->nsplit, ni = j % c->nsplit;
        const size_t r0 = mi * QK__LR_MC;
        const size_t rows = c->m - r0 < QK__LR_MC ? c->m - r0 : QK__LR_MC;
        const size_t p0 = c->panels * ni / c->nsplit, p1 = c->panels * (ni + 1) / c->nsplit;
        for (size_t r = 0; r < rows; r++) { /* x - 0 widened to int16, k padded to k2 */
            int16_t *d = abuf + r * k2;
            c->uk->widen_s16(c->x + (r0 + r) * k, QK_DT_U8, 0, k, d);
            if (k2 > k) d[k] = 0;
        }
        for (size_t g0 = p0; g0 < p1; g0 += QK__LR_GROUP) {
            const size_t g1 = p1 - g0 < QK__LR_GROUP ? p1 : g0 + QK__LR_GROUP;
            const size_t c0 = g0 * QK_GEMM_NR;
            const size_t gcols = (g1 * QK_GEMM_NR < n ? g1 * QK_GEMM_NR : n) - c0;
            for (size_t p = g0; p < g1; p++) {
                const int16_t *panel = w->data + p * k2 * QK_GEMM_NR;
                const size_t o0 = p * QK_GEMM_NR;
                const size_t cols = n - o0 < QK_GEMM_NR ? n - o0 : QK_GEMM_NR;
                for (size_t rb = 0; rb < rows; rb += QK_GEMM_MR) {
                    const size_t mr = rows - rb < QK_GEMM_MR ? rows - rb : QK_GEMM_MR;
                    c->uk->gemm_s16(mr, k2 / 2, abuf + rb * k2, k2, panel, tile);
                    for (size_t r = 0; r < mr; r++)
                        memcpy(blk + (rb + r) * ldb + (o0 - c0), tile + r * QK_GEMM_NR,
                               cols * sizeof(int32_t));
                }
            }
            /* the output stage on the block's rows, columns c0 .. c0 + gcols */
            for (size_t r = 0; r < rows; r++) {
                const size_t row = r0 + r;
                const int32_t jj = rs->j[row];
                bad |= qk__row_rescale_seg(
                    blk + r * ldb, gcols, rs->wsum != NULL ? rs->z[row] : 0,
                    rs->wsum != NULL ? rs->wsum + c0 : NULL, rs->mt[jj],
                    31 - (rs->st[jj] + rs->e[row]), rs->bias != NULL ? rs->bias + c0 : NULL,
                    rs->out_multiplier != NULL ? rs->out_multiplier + c0 : NULL,
                    rs->out_multiplier != NULL ? rs->out_shift + c0 : NULL, rs->out_zero_point,
                    (int)rs->out_type, (char *)c->y + (row * n + c0) * yb);
            }
        }
    }
    if (bad) atomic_store(&c->status, QK_ERR_OVERFLOW);
    free(abuf);
    free(blk);
}

/* The pair itself (weights in the 8-bit layout): the sums into a scratch array, the row pass. */
static qk_status qk__linear_rows_pair(const qk_packed_weights *w, const uint8_t *x, size_t m,
                                      const qk_epilogue *ep, const qk_row_stage *rs, void *y,
                                      int threads) {
    int32_t *acc = (int32_t *)malloc(m * w->n * sizeof(int32_t));
    if (acc == NULL) return QK_ERR_NOMEM;
    qk_status st = qk_linear(w, x, QK_DT_U8, m, 0, ep, acc, threads);
    if (st == QK_OK)
        st = rs->out_multiplier == NULL
                 ? qk_row_rescale(acc, m, w->n, rs->z, rs->wsum, rs->j, rs->e, rs->mt, rs->st,
                                  rs->bias, (int32_t *)y, threads)
                 : qk_row_rescale_requantize(acc, m, w->n, rs->z, rs->wsum, rs->j, rs->e, rs->mt,
                                             rs->st, rs->bias, rs->out_multiplier, rs->out_shift,
                                             rs->out_zero_point, rs->out_type, y, threads);
    free(acc);
    return st;
}

qk_status qk_linear_rows(const qk_packed_weights *w, const uint8_t *x, size_t m,
                         const qk_row_stage *rs, void *y, int threads) {
    if (w == NULL || w->kind != QK__PACK_LINEAR || rs == NULL) return QK_ERR_ARG;
    qk_epilogue ep;
    memset(&ep, 0, sizeof ep);
    ep.scheme = QK_REQ_NONE;
    ep.out_type = QK_DT_S32;
    qk_status st = qk__linear_call_check(w, QK_DT_U8, 0, &ep);
    if (st != QK_OK) return st;
    if (rs->out_multiplier == NULL ? rs->out_type != QK_DT_S32
                                   : (rs->out_type != QK_DT_U8 && rs->out_type != QK_DT_S8))
        return QK_ERR_ARG;
    st = qk__row_rescale_check(m, w->n, rs->z, rs->wsum, rs->j, rs->e, rs->mt, rs->st,
                               rs->out_multiplier, rs->out_shift, rs->out_zero_point,
                               rs->out_type);
    if (st != QK_OK) return st;
    /* x (m x k), y (m x n, up to 4 bytes an element) and the m x n int32 sums addressable */
    size_t bytes;
    if (!qk__sz_mul(m, w->k + 3, &bytes) || !qk__sz_mul4(m, w->n, 4, 1, &bytes))
        return QK_ERR_ARG;
    if (m == 0) return QK_OK;
    if (x == NULL || y == NULL) return QK_ERR_ARG;
    if (w->vnni) return qk__linear_rows_pair(w, x, m, &ep, rs, y, threads);
    qk__lr_ctx c;
    memset(&c, 0, sizeof c);
    c.w = w;
    c.x = x;
    c.m = m;
    c.rs = rs;
    c.y = y;
    c.uk = qk__uk();
    c.panels = (w->n + QK_GEMM_NR - 1) / QK_GEMM_NR;
    const size_t mchunks = (m + QK__LR_MC - 1) / QK__LR_MC;
    const size_t t = threads < 1 ? 1 : (size_t)threads;
    c.nsplit = qk__lin_nsplit(mchunks, c.panels, t);
    atomic_init(&c.status, QK_OK);
    qk__parallel(mchunks * c.nsplit, (int)t, qk__lr_jobs, &c);
    return (qk_status)atomic_load(&c.status);
}
