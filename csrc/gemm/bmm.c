/* bmm.c -- qk_bmm: batched int8 x int8 matrix products of two activations (attention's Q K^T
 * and P V) with exact int32 sums and the shared output stage (qk_epilogue: fp32, double_round,
 * single_round, shifts), one set of parameters per batch item (a head).
 *
 * Nothing is packed ahead of time (both operands change every call), so a call packs B once per
 * batch item (phase 1, in parallel over the batch), then runs jobs of (batch item, chunk of up to
 * 48 rows of A): a job packs its rows of A and runs the existing GEMM micro-kernels over every
 * panel of B into a row buffer, and the epilogue writes each row of y. Each output element is
 * computed the same way whatever the split, so the result does not depend on the thread count.
 *
 * Two layouts, chosen with the process's GEMM path (qk__use_vnni):
 *   8-bit (AVX512-VNNI): A as s8 rows (u8 values flipped: a - 128), B as u8 columns (s8 values
 *     flipped: b + 128); qk_gemm_s8u8_12x16 sums raw bytes modulo 2^32 and the zero points are
 *     applied afterwards, exactly modulo 2^32 (the true sum fits once the bound holds):
 *       sum (A - za)(B - zb) = raw + beta * sum_k A' + alpha * sum_k B' + K alpha beta,
 *       A = A' + oA (oA = 128 for u8 A), B = B' - oB (oB = 128 for s8 B),
 *       alpha = oA - za, beta = -oB - zb.
 *   int16 (AVX2 and the portable scalar twin): A rows as int16 (a - za), B panels as int16
 *     (b - zb) pairs; qk_gemm_s16_6x16 sums exact products.
 * Both give the same bits (the scalar twins of both are the reference).
 */
#include "gemm/gemm_internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

enum { QK__BMM_MC = 48 };

typedef struct {
    const void *a, *b;
    qk_dtype at, bt;
    const int32_t *azp, *bzp;
    int b_kn; /* B stored k x n (P V) instead of n x k (Q K^T) */
    size_t batch, m, k, n;
    const qk_epilogue *ep;
    void *y;
    int vnni;
    size_t kq, k2, panels, npad;
    size_t bstride;          /* bytes of one batch item's packed B */
    unsigned char *bpack;    /* batch * bstride */
    uint32_t *colsum;        /* 8-bit: batch * npad, sum_k B' (0 past n) */
    int need_abs;            /* phase 1 also computes the per-item max of sum_k |B - zb| */
    int64_t *babs;           /* batch */
    size_t rchunks;
    _Atomic int status;
} qk__bmm_ctx;

static inline int32_t qk__bmm_aval(const qk__bmm_ctx *c, size_t bi, size_t r, size_t i) {
    const size_t idx = (bi * c->m + r) * c->k + i;
    return c->at == QK_DT_U8 ? (int32_t)((const uint8_t *)c->a)[idx]
                             : (int32_t)((const int8_t *)c->a)[idx];
}

/* B[n][k] of batch item bi, whatever the stored layout */
static inline int32_t qk__bmm_bval(const qk__bmm_ctx *c, size_t bi, size_t j, size_t i) {
    const size_t idx = bi * c->n * c->k + (c->b_kn ? i * c->n + j : j * c->k + i);
    return c->bt == QK_DT_U8 ? (int32_t)((const uint8_t *)c->b)[idx]
                             : (int32_t)((const int8_t *)c->b)[idx];
}

/* Phase 1: pack B of items j0..j1-1 (and its sums). */
static void qk__bmm_pack_b(void *vctx, size_t j0, size_t j1) {
    qk__bmm_ctx *c = (qk__bmm_ctx *)vctx;
    for (size_t bi = j0; bi < j1; bi++) {
        unsigned char *dst = c->bpack + bi * c->bstride;
        const int32_t zb = c->bzp[bi];
        int64_t amax = 0;
        if (c->vnni) {
            uint8_t *p8 = (uint8_t *)dst;
            uint32_t *cs = c->colsum + bi * c->npad;
            const int32_t ob = c->bt == QK_DT_S8 ? 128 : 0;
            for (size_t j = 0; j < c->n; j++) {
                uint8_t *panel = p8 + (j / QK_GEMM_NR) * c->kq * 4 * QK_GEMM_NR;
                const size_t jj = j % QK_GEMM_NR;
                uint32_t s = 0;
                int64_t as = 0;
                for (size_t i = 0; i < c->k; i++) {
                    const int32_t v = qk__bmm_bval(c, bi, j, i);
                    const uint8_t u = (uint8_t)(v + ob);
                    panel[(i / 4) * 4 * QK_GEMM_NR + 4 * jj + (i & 3)] = u;
                    s += u;
                    const int32_t d = v - zb;
                    as += d < 0 ? -d : d;
                }
                cs[j] = s;
                if (as > amax) amax = as;
            }
        } else {
            int16_t *p16 = (int16_t *)dst;
            for (size_t j = 0; j < c->n; j++) {
                int16_t *panel = p16 + (j / QK_GEMM_NR) * c->k2 * QK_GEMM_NR;
                const size_t jj = j % QK_GEMM_NR;
                int64_t as = 0;
                for (size_t i = 0; i < c->k; i++) {
                    const int32_t d = qk__bmm_bval(c, bi, j, i) - zb;
                    panel[(i / 2) * 2 * QK_GEMM_NR + 2 * jj + (i & 1)] = (int16_t)d;
                    as += d < 0 ? -d : d;
                }
                if (as > amax) amax = as;
            }
        }
        if (c->need_abs) c->babs[bi] = amax;
    }
}

/* Phase 2: jobs (batch item, chunk of rows). */
static void qk__bmm_jobs(void *vctx, size_t j0, size_t j1) {
    qk__bmm_ctx *c = (qk__bmm_ctx *)vctx;
    const qk_epilogue *ep = c->ep;
    const size_t osz = qk__dtype_size(ep->out_type);
    const size_t mr_blk = c->vnni ? QK_VNNI_MR : QK_GEMM_MR;
    /* A of one chunk: 8-bit blocks [kq][12][4], or int16 rows of k2; row sums; the row buffer */
    const size_t abytes = c->vnni ? QK__BMM_MC * c->kq * 4 : QK__BMM_MC * c->k2 * 2;
    unsigned char *abuf = (unsigned char *)malloc(abytes + 16);
    int32_t *rows = (int32_t *)malloc(mr_blk * c->npad * sizeof(int32_t) + 64);
    if (abuf == NULL || rows == NULL) {
        free(abuf);
        free(rows);
        atomic_store(&c->status, QK_ERR_NOMEM);
        return;
    }
    int32_t rowsum[QK__BMM_MC];
    int32_t tile[QK_VNNI_MR_MAX * QK_GEMM_NR];
    const qk_gemm_s8u8_ukernel uk8 = c->vnni ? qk__gemm_s8u8_ukernel(QK_VNNI_MR) : NULL;
    const qk_gemm_ukernel uk16 = c->vnni ? NULL : qk__gemm_ukernel();
    for (size_t j = j0; j < j1; j++) {
        const size_t bi = j / c->rchunks, rc = j % c->rchunks;
        const size_t r0 = rc * QK__BMM_MC;
        const size_t nrows = c->m - r0 < QK__BMM_MC ? c->m - r0 : QK__BMM_MC;
        const int32_t za = c->azp[bi], zb = c->bzp[bi];
        const unsigned char *bp = c->bpack + bi * c->bstride;
        /* pack this chunk of A */
        if (c->vnni) {
            const int32_t oa = c->at == QK_DT_U8 ? 128 : 0;
            memset(abuf, 0, abytes);
            for (size_t r = 0; r < nrows; r++) {
                int8_t *blk = (int8_t *)abuf + (r / QK_VNNI_MR) * c->kq * 4 * QK_VNNI_MR;
                const size_t rr = r % QK_VNNI_MR;
                int32_t s = 0;
                for (size_t i = 0; i < c->k; i++) {
                    const int32_t v = qk__bmm_aval(c, bi, r0 + r, i) - oa;
                    blk[(i / 4) * 4 * QK_VNNI_MR + 4 * rr + (i & 3)] = (int8_t)v;
                    s += v;
                }
                rowsum[r] = s;
            }
        } else {
            int16_t *a16 = (int16_t *)abuf;
            for (size_t r = 0; r < nrows; r++) {
                int16_t *d = a16 + r * c->k2;
                for (size_t i = 0; i < c->k; i++) d[i] = (int16_t)(qk__bmm_aval(c, bi, r0 + r, i) - za);
                if (c->k2 > c->k) d[c->k] = 0;
            }
        }
        /* 8-bit correction terms (mod 2^32) */
        const int32_t alpha = (c->at == QK_DT_U8 ? 128 : 0) - za;
        const int32_t beta = -(c->bt == QK_DT_S8 ? 128 : 0) - zb;
        const uint32_t kab = (uint32_t)c->k * (uint32_t)alpha * (uint32_t)beta;
        const uint32_t *cs = c->vnni ? c->colsum + bi * c->npad : NULL;
        for (size_t rb = 0; rb < nrows; rb += mr_blk) {
            const size_t mr = nrows - rb < mr_blk ? nrows - rb : mr_blk;
            for (size_t p = 0; p < c->panels; p++) {
                if (c->vnni) {
                    uk8(c->kq, (const int8_t *)abuf + (rb / QK_VNNI_MR) * c->kq * 4 * QK_VNNI_MR,
                        bp + p * c->kq * 4 * QK_GEMM_NR, tile);
                    for (size_t r = 0; r < mr; r++) {
                        const uint32_t rt = (uint32_t)beta * (uint32_t)rowsum[rb + r] + kab;
                        int32_t *dst = rows + r * c->npad + p * QK_GEMM_NR;
                        const uint32_t *csp = cs + p * QK_GEMM_NR;
                        for (size_t q = 0; q < QK_GEMM_NR; q++)
                            dst[q] = (int32_t)((uint32_t)tile[r * QK_GEMM_NR + q] + rt +
                                               (uint32_t)alpha * csp[q]);
                    }
                } else {
                    uk16(mr, c->k2 / 2, (const int16_t *)abuf + rb * c->k2, c->k2,
                         (const int16_t *)bp + p * c->k2 * QK_GEMM_NR, tile);
                    for (size_t r = 0; r < mr; r++)
                        memcpy(rows + r * c->npad + p * QK_GEMM_NR, tile + r * QK_GEMM_NR,
                               QK_GEMM_NR * sizeof(int32_t));
                }
            }
            for (size_t r = 0; r < mr; r++) {
                char *yrow = (char *)c->y + ((bi * c->m + r0 + rb + r) * c->n) * osz;
                if (qk__epilogue_run(ep, bi, rows + r * c->npad, c->n, yrow) != QK_OK)
                    atomic_store(&c->status, QK_ERR_OVERFLOW);
            }
        }
    }
    free(abuf);
    free(rows);
}

qk_status qk_bmm(const void *a, qk_dtype a_type, const int32_t *a_zero_point, const void *b,
                 qk_dtype b_type, const int32_t *b_zero_point, qk_bmm_layout b_layout,
                 size_t batch, size_t m, size_t k, size_t n, const qk_epilogue *ep, void *y,
                 int threads) {
    if ((a_type != QK_DT_U8 && a_type != QK_DT_S8) || (b_type != QK_DT_U8 && b_type != QK_DT_S8))
        return QK_ERR_ARG;
    if (b_layout != QK_BMM_B_NK && b_layout != QK_BMM_B_KN) return QK_ERR_ARG;
    if (k >= ((size_t)1 << 24) || m > ((size_t)1 << 40) || n > ((size_t)1 << 40) ||
        batch > ((size_t)1 << 40))
        return QK_ERR_ARG;
    qk_status st = qk__epilogue_check(ep, batch);
    if (st != QK_OK) return st;
    if (ep->bias != NULL || ep->float_bias != NULL) return QK_ERR_ARG;
    if (batch == 0 || m == 0 || n == 0) return QK_OK;
    if (a == NULL || b == NULL || y == NULL || a_zero_point == NULL || b_zero_point == NULL)
        return QK_ERR_ARG;
    const int32_t alo = a_type == QK_DT_U8 ? 0 : -128, ahi = a_type == QK_DT_U8 ? 255 : 127;
    const int32_t blo = b_type == QK_DT_U8 ? 0 : -128, bhi = b_type == QK_DT_U8 ? 255 : 127;
    int type_bound_ok = 1;
    for (size_t bi = 0; bi < batch; bi++) {
        const int32_t za = a_zero_point[bi], zb = b_zero_point[bi];
        if (za < alo || za > ahi || zb < blo || zb > bhi) return QK_ERR_ZERO_POINT;
        const int64_t am = (za - alo) > (ahi - za) ? (za - alo) : (ahi - za);
        const int64_t bm = (zb - blo) > (bhi - zb) ? (zb - blo) : (bhi - zb);
        if ((int64_t)k * am * bm > INT32_MAX) type_bound_ok = 0;
    }
    qk__bmm_ctx c;
    memset(&c, 0, sizeof c);
    c.a = a;
    c.b = b;
    c.at = a_type;
    c.bt = b_type;
    c.azp = a_zero_point;
    c.bzp = b_zero_point;
    c.b_kn = b_layout == QK_BMM_B_KN;
    c.batch = batch;
    c.m = m;
    c.k = k;
    c.n = n;
    c.ep = ep;
    c.y = y;
    c.vnni = qk__use_vnni();
    c.kq = (k + 3) / 4;
    c.k2 = (k + 1) & ~(size_t)1;
    c.panels = (n + QK_GEMM_NR - 1) / QK_GEMM_NR;
    c.npad = c.panels * QK_GEMM_NR;
    c.bstride = c.vnni ? c.panels * c.kq * 4 * QK_GEMM_NR : c.panels * c.k2 * QK_GEMM_NR * 2;
    c.bstride = (c.bstride + 63) & ~(size_t)63;
    c.need_abs = !type_bound_ok && !ep->wrap;
    /* zeros past n and in the k pad: calloc */
    c.bpack = (unsigned char *)calloc(batch * c.bstride + 64, 1);
    c.colsum = c.vnni ? (uint32_t *)calloc(batch * c.npad, sizeof(uint32_t)) : NULL;
    c.babs = c.need_abs ? (int64_t *)calloc(batch, sizeof(int64_t)) : NULL;
    if (c.bpack == NULL || (c.vnni && c.colsum == NULL) || (c.need_abs && c.babs == NULL)) {
        free(c.bpack);
        free(c.colsum);
        free(c.babs);
        return QK_ERR_NOMEM;
    }
    atomic_init(&c.status, QK_OK);
    const int t = threads < 1 ? 1 : threads;
    qk__parallel(batch, t, qk__bmm_pack_b, &c);
    st = QK_OK;
    if (c.need_abs) { /* the bound with B's own sums (as qk_linear does with the weights) */
        for (size_t bi = 0; bi < batch && st == QK_OK; bi++) {
            const int32_t za = a_zero_point[bi];
            const int64_t am = (za - alo) > (ahi - za) ? (za - alo) : (ahi - za);
            if (am * c.babs[bi] > INT32_MAX) st = QK_ERR_OVERFLOW;
        }
    }
    if (st == QK_OK) {
        c.rchunks = (m + QK__BMM_MC - 1) / QK__BMM_MC;
        qk__parallel(batch * c.rchunks, t, qk__bmm_jobs, &c);
        st = (qk_status)atomic_load(&c.status);
    }
    free(c.bpack);
    free(c.colsum);
    free(c.babs);
    return st;
}
