/* bmm.c -- qk_bmm: batched int8 x int8 matrix products of two activations (attention's Q K^T
 * and P V) with exact int32 sums and the shared output stage (qk_epilogue: fp32, double_round,
 * single_round, shifts), one set of parameters per batch item (a head).
 *
 * Nothing is packed ahead of time (both operands change every call), so a call packs B once per
 * batch item (phase 1, in parallel over the batch), then runs jobs of (batch item, chunk of up to
 * 48 rows of A): a job packs its rows of A and runs the GEMM micro-kernels over every panel of B
 * into a row buffer, and the output stage writes each row of y. Each output element is computed
 * the same way whatever the split, so the result does not depend on the thread count.
 *
 * Two layouts, chosen with the process's micro-kernel table (qk__uk()->pack_u8, as qk_linear):
 *   8-bit: A as s8 rows (u8 values flipped: a - 128), B as u8 columns (s8 values flipped:
 *     b + 128), packed by the bmm_u8 micro-kernels; the gemm_u8 12 x 16 tiles sum raw bytes
 *     modulo 2^32 and the zero points are applied afterwards (bmm_tile_fix), exactly modulo 2^32
 *     (the true sum fits once the bound holds):
 *       sum (A - za)(B - zb) = raw + beta * sum_k A' + alpha * sum_k B' + K alpha beta,
 *       A = A' + oA (oA = 128 for u8 A), B = B' - oB (oB = 128 for s8 B),
 *       alpha = oA - za, beta = -oB - zb.
 *   int16: A rows as int16 (a - za) (widen_s16), B panels as int16 (b - zb) pairs; the gemm_s16
 *     6 x 16 tiles sum exact products.
 * Both give the same bits, and every micro-kernel has its scalar twin (ukernels/).
 */
#include "operators/operators.h"

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
    const qk__ukernels *uk;
    int u8;                  /* the 8-bit layout (else int16) */
    size_t kq, k2, panels, npad;
    size_t bstride;          /* bytes of one batch item's packed B */
    unsigned char *bpack;    /* batch * bstride */
    uint32_t *colsum;        /* 8-bit: batch * npad, sum_k B' (0 past n) */
    int need_abs;            /* phase 1 also computes the per-item max of sum_k |B - zb| */
    int64_t *babs;           /* batch */
    size_t rchunks;
    _Atomic int status;
} qk__bmm_ctx;

/* The value of byte u of an operand of type t (u8 or s8). */
static inline int32_t qk__bmm_v(qk_dtype t, uint8_t u) {
    return t == QK_DT_U8 ? (int32_t)u : (int32_t)(int8_t)u;
}

/* The int16 panels of one batch item's B: panel p, pair q, column jj holds
 * (B[k = 2q][n = 16p + jj] - zb, B[2q + 1][16p + jj] - zb) (0 past n and in the k pad: the buffer
 * is zeroed). The same values as one element at a time, the type's loop chosen once, no division
 * per element. */
#define QK__BMM_PACK_B16(NAME, T)                                                                  \
    static void NAME(const T *src, size_t n, size_t k, size_t k2, int b_kn, int32_t zb,           \
                     int16_t *p16) {                                                              \
        const size_t pstride = k2 * QK_GEMM_NR, L = 2 * QK_GEMM_NR;                              \
        if (!b_kn) { /* B is n x k: row j of B is column j of the panels */                       \
            for (size_t j = 0; j < n; j++) {                                                      \
                int16_t *d = p16 + (j / QK_GEMM_NR) * pstride + 2 * (j % QK_GEMM_NR);             \
                const T *row = src + j * k;                                                       \
                size_t i = 0;                                                                     \
                for (; i + 1 < k; i += 2, d += L) {                                               \
                    d[0] = (int16_t)((int32_t)row[i] - zb);                                       \
                    d[1] = (int16_t)((int32_t)row[i + 1] - zb);                                   \
                }                                                                                 \
                if (i < k) d[0] = (int16_t)((int32_t)row[i] - zb);                                \
            }                                                                                     \
        } else { /* B is k x n: row i of B is half of pair i / 2 of every panel */                \
            for (size_t i = 0; i < k; i++) {                                                      \
                const T *row = src + i * n;                                                       \
                int16_t *d = p16 + (i >> 1) * L + (i & 1);                                        \
                for (size_t j0 = 0; j0 < n; j0 += QK_GEMM_NR, d += pstride) {                     \
                    const size_t jn = n - j0 < QK_GEMM_NR ? n - j0 : QK_GEMM_NR;                  \
                    for (size_t jj = 0; jj < jn; jj++)                                            \
                        d[2 * jj] = (int16_t)((int32_t)row[j0 + jj] - zb);                        \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
    }
QK__BMM_PACK_B16(qk__bmm_pack_b16_u8, uint8_t)
QK__BMM_PACK_B16(qk__bmm_pack_b16_s8, int8_t)
#undef QK__BMM_PACK_B16

/* Phase 1: pack B of items j0..j1-1 (and its sums). The 8-bit panel holds B' = byte ^ flip
 * (s8 B + 128 as u8), the int16 panel B - zb. */
static void qk__bmm_pack_b(void *vctx, size_t j0, size_t j1) {
    qk__bmm_ctx *c = (qk__bmm_ctx *)vctx;
    const size_t n = c->n, k = c->k;
    for (size_t bi = j0; bi < j1; bi++) {
        const uint8_t *src = (const uint8_t *)c->b + bi * n * k;
        unsigned char *dst = c->bpack + bi * c->bstride;
        const int32_t zb = c->bzp[bi];
        if (c->u8) {
            c->uk->bmm_pack_b8(src, n, k, c->b_kn, c->bt == QK_DT_S8 ? 0x80 : 0, (uint8_t *)dst,
                               c->colsum + bi * c->npad);
        } else {
            if (c->bt == QK_DT_S8)
                qk__bmm_pack_b16_s8((const int8_t *)src, n, k, c->k2, c->b_kn, zb,
                                    (int16_t *)dst);
            else
                qk__bmm_pack_b16_u8(src, n, k, c->k2, c->b_kn, zb, (int16_t *)dst);
        }
        if (c->need_abs) { /* max_j sum_k |B - zb|, for the bound */
            int64_t amax = 0;
            for (size_t j = 0; j < n; j++) {
                int64_t as = 0;
                for (size_t i = 0; i < k; i++) {
                    const int32_t d = qk__bmm_v(c->bt, src[c->b_kn ? i * n + j : j * k + i]) - zb;
                    as += d < 0 ? -d : d;
                }
                if (as > amax) amax = as;
            }
            c->babs[bi] = amax;
        }
    }
}

/* Phase 2: jobs (batch item, chunk of rows). */
static void qk__bmm_jobs(void *vctx, size_t j0, size_t j1) {
    qk__bmm_ctx *c = (qk__bmm_ctx *)vctx;
    const qk_epilogue *ep = c->ep;
    const size_t osz = qk__dtype_size(ep->out_type);
    const size_t mr_blk = c->u8 ? QK_VNNI_MR : QK_GEMM_MR;
    /* A of one chunk: 8-bit blocks [kq][12][4], or int16 rows of k2; row sums; the row buffer */
    const size_t abytes = c->u8 ? QK__BMM_MC * c->kq * 4 : QK__BMM_MC * c->k2 * 2;
    unsigned char *abuf = (unsigned char *)malloc(abytes + 16);
    int32_t *rows = (int32_t *)malloc(mr_blk * c->npad * sizeof(int32_t) + 64);
    uint32_t *colterm = (uint32_t *)malloc(c->npad * sizeof(uint32_t) + 64);
    size_t colterm_item = (size_t)-1;
    if (abuf == NULL || rows == NULL || colterm == NULL) {
        free(abuf);
        free(rows);
        free(colterm);
        atomic_store(&c->status, QK_ERR_NOMEM);
        return;
    }
    int32_t rowsum[QK__BMM_MC];
    uint32_t rowterm[QK__BMM_MC];
    int32_t tile[QK_VNNI_MR_MAX * QK_GEMM_NR];
    const qk_gemm_s8u8_ukernel uk8 = c->uk->gemm_u8[0][0]; /* 12 x 16 */
    const qk_gemm_ukernel uk16 = c->uk->gemm_s16;
    /* int16 tiles and QK_REQ_NONE (matmul_int32; qk_bmm refuses a bias): the tiles go straight
     * to y (the output stage would copy the exact sums), no row buffer pass */
    const int direct = !c->u8 && ep->scheme == QK_REQ_NONE;
    for (size_t j = j0; j < j1; j++) {
        const size_t bi = j / c->rchunks, rc = j % c->rchunks;
        const size_t r0 = rc * QK__BMM_MC;
        const size_t nrows = c->m - r0 < QK__BMM_MC ? c->m - r0 : QK__BMM_MC;
        const int32_t za = c->azp[bi], zb = c->bzp[bi];
        const unsigned char *bp = c->bpack + bi * c->bstride;
        /* pack this chunk of A */
        const uint8_t *asrc = (const uint8_t *)c->a + (bi * c->m + r0) * c->k;
        if (c->u8) {
            c->uk->bmm_pack_a8(asrc, nrows, c->k, c->at == QK_DT_U8 ? 0x80 : 0, (int8_t *)abuf,
                               abytes, rowsum);
        } else {
            int16_t *a16 = (int16_t *)abuf;
            for (size_t r = 0; r < nrows; r++) {
                int16_t *d = a16 + r * c->k2;
                c->uk->widen_s16(asrc + r * c->k, c->at, za, c->k, d);
                if (c->k2 > c->k) d[c->k] = 0;
            }
        }
        /* 8-bit correction (mod 2^32): column term alpha sum_k B' + K alpha beta, row term
         * beta sum_k A' */
        const uint32_t beta = (uint32_t)(-(c->bt == QK_DT_S8 ? 128 : 0) - zb);
        if (c->u8 && bi != colterm_item) {
            const uint32_t alpha = (uint32_t)((c->at == QK_DT_U8 ? 128 : 0) - za);
            const uint32_t kab = (uint32_t)c->k * alpha * beta;
            const uint32_t *cs = c->colsum + bi * c->npad;
            for (size_t q = 0; q < c->npad; q++) colterm[q] = alpha * cs[q] + kab;
            colterm_item = bi;
        }
        if (c->u8)
            for (size_t r = 0; r < nrows; r++) rowterm[r] = beta * (uint32_t)rowsum[r];
        for (size_t rb = 0; rb < nrows; rb += mr_blk) {
            const size_t mr = nrows - rb < mr_blk ? nrows - rb : mr_blk;
            for (size_t p = 0; p < c->panels; p++) {
                if (c->u8)
                    uk8(c->kq, (const int8_t *)abuf + (rb / QK_VNNI_MR) * c->kq * 4 * QK_VNNI_MR,
                        bp + p * c->kq * 4 * QK_GEMM_NR, tile);
                else
                    uk16(mr, c->k2 / 2, (const int16_t *)abuf + rb * c->k2, c->k2,
                         (const int16_t *)bp + p * c->k2 * QK_GEMM_NR, tile);
                if (c->u8)
                    c->uk->bmm_tile_fix(tile, mr, colterm + p * QK_GEMM_NR, rowterm + rb,
                                     rows + p * QK_GEMM_NR, c->npad);
                else if (direct) /* int32 out, no bias: y is the exact sums themselves */
                    for (size_t r = 0; r < mr; r++)
                        memcpy((int32_t *)c->y + (bi * c->m + r0 + rb + r) * c->n +
                                   p * QK_GEMM_NR,
                               tile + r * QK_GEMM_NR,
                               (c->n - p * QK_GEMM_NR < QK_GEMM_NR ? c->n - p * QK_GEMM_NR
                                                                   : QK_GEMM_NR) *
                                   sizeof(int32_t));
                else
                    for (size_t r = 0; r < mr; r++)
                        memcpy(rows + r * c->npad + p * QK_GEMM_NR, tile + r * QK_GEMM_NR,
                               QK_GEMM_NR * sizeof(int32_t));
            }
            for (size_t r = 0; r < mr && !direct; r++) {
                int32_t *row = rows + r * c->npad;
                char *yrow = (char *)c->y + ((bi * c->m + r0 + rb + r) * c->n) * osz;
                if (c->uk->epilogue_run(ep, bi, row, c->n, yrow) != QK_OK)
                    atomic_store(&c->status, QK_ERR_OVERFLOW);
            }
        }
    }
    free(abuf);
    free(rows);
    free(colterm);
}

qk_status qk_bmm(const void *a, qk_dtype a_type, const int32_t *a_zero_point, const void *b,
                 qk_dtype b_type, const int32_t *b_zero_point, qk_bmm_layout b_layout,
                 size_t batch, size_t m, size_t k, size_t n, const qk_epilogue *ep, void *y,
                 int threads) {
    if ((a_type != QK_DT_U8 && a_type != QK_DT_S8) || (b_type != QK_DT_U8 && b_type != QK_DT_S8))
        return QK_ERR_ARG;
    if (b_layout != QK_BMM_B_NK && b_layout != QK_BMM_B_KN) return QK_ERR_ARG;
    /* every size below fits size_t (and PTRDIFF_MAX): the operands, the output, the packed B
     * (at most 4 bytes an element of n rounded up to 16 columns and k to 4, plus 64 a batch
     * item) and the column sums */
    size_t sz;
    if (k >= ((size_t)1 << 24) || m > ((size_t)1 << 40) || n > ((size_t)1 << 40) ||
        !qk__sz_mul4(batch, m, k, 1, &sz) || !qk__sz_mul4(batch, m, n, 4, &sz) ||
        !qk__sz_mul4(batch, n + QK_GEMM_NR, k + 4, 4, &sz) || !qk__sz_add(sz, 64 * batch, &sz))
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
    const qk__ukernels *uk = qk__uk();
    const size_t panels = (n + QK_GEMM_NR - 1) / QK_GEMM_NR;
    qk__bmm_ctx c = {.a = a, .b = b, .at = a_type, .bt = b_type, .azp = a_zero_point,
                     .bzp = b_zero_point, .b_kn = b_layout == QK_BMM_B_KN, .batch = batch,
                     .m = m, .k = k, .n = n, .ep = ep, .y = y, .uk = uk, .u8 = uk->pack_u8,
                     .kq = (k + 3) / 4, .k2 = (k + 1) & ~(size_t)1, .panels = panels,
                     .npad = panels * QK_GEMM_NR};
    c.bstride = c.u8 ? c.panels * c.kq * 4 * QK_GEMM_NR : c.panels * c.k2 * QK_GEMM_NR * 2;
    c.bstride = (c.bstride + 63) & ~(size_t)63;
    c.need_abs = !type_bound_ok && !ep->wrap;
    /* zeros past n and in the k pad: calloc */
    c.bpack = (unsigned char *)calloc(batch * c.bstride + 64, 1);
    c.colsum = c.u8 ? (uint32_t *)calloc(batch * c.npad, sizeof(uint32_t)) : NULL;
    c.babs = c.need_abs ? (int64_t *)calloc(batch, sizeof(int64_t)) : NULL;
    if (c.bpack == NULL || (c.u8 && c.colsum == NULL) || (c.need_abs && c.babs == NULL)) {
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
