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

#if QK_X86
#include <immintrin.h>
#endif

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

/* The value of byte u of an operand of type t (u8 or s8). */
static inline int32_t qk__bmm_v(qk_dtype t, uint8_t u) {
    return t == QK_DT_U8 ? (int32_t)u : (int32_t)(int8_t)u;
}

#if QK_X86
/* ---- 8-bit packing (the VNNI path, so AVX-512 F/BW/VL are there) ----------------------------- */
#define QK_TARGET_BMM8 __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl")))

/* sum of the n bytes p[i] ^ x (vpsadbw, 64 at a time, a masked tail) */
QK_TARGET_BMM8 static uint32_t qk__bmm_bytesum(const uint8_t *p, size_t n, uint8_t x) {
    const __m512i vx = _mm512_set1_epi8((char)x);
    __m512i acc = _mm512_setzero_si512();
    size_t i = 0;
    for (; i + 64 <= n; i += 64)
        acc = _mm512_add_epi64(acc, _mm512_sad_epu8(_mm512_xor_si512(_mm512_loadu_si512((const void *)(p + i)), vx),
                                                    _mm512_setzero_si512()));
    if (i < n) {
        const __mmask64 m = (__mmask64)((~0ull) >> (64 - (n - i)));
        acc = _mm512_add_epi64(acc, _mm512_sad_epu8(
            _mm512_maskz_mov_epi8(m, _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, p + i), vx)),
            _mm512_setzero_si512()));
    }
    return (uint32_t)_mm512_reduce_add_epi64(acc);
}

/* B' of one item into ceil(n/16) panels [kq][16][4] (u8: s8 B + 128) and its column sums. */
QK_TARGET_BMM8 static void qk__bmm_pack_b8(const qk__bmm_ctx *c, const uint8_t *src, uint8_t *dst,
                                           uint32_t *cs) {
    const size_t n = c->n, k = c->k, pstride = c->kq * 4 * QK_GEMM_NR;
    const uint8_t flip = c->bt == QK_DT_S8 ? 0x80 : 0;
    if (!c->b_kn) { /* rows of B are contiguous in k: quads are 4-byte copies */
        const uint32_t flip4 = flip * UINT32_C(0x01010101);
        for (size_t j = 0; j < n; j++) {
            uint8_t *panel = dst + (j / QK_GEMM_NR) * pstride + 4 * (j % QK_GEMM_NR);
            const uint8_t *row = src + j * k;
            cs[j] = qk__bmm_bytesum(row, k, flip);
            size_t i = 0;
            for (; i + 4 <= k; i += 4) {
                const uint32_t w = (uint32_t)qk__ld32(row + i) ^ flip4;
                memcpy(panel + (i >> 2) * 4 * QK_GEMM_NR, &w, 4);
            }
            for (; i < k; i++) panel[(i >> 2) * 4 * QK_GEMM_NR + (i & 3)] = (uint8_t)(row[i] ^ flip);
        }
        return;
    }
    /* B stored k x n: 4 rows of 16 columns transposed into one 64-byte quad row of a panel */
    const __m128i vf = _mm_set1_epi8((char)flip);
    memset(cs, 0, c->npad * sizeof(uint32_t));
    for (size_t i0 = 0; i0 < k; i0 += 4) {
        const size_t kr = k - i0 < 4 ? k - i0 : 4;
        for (size_t j0 = 0; j0 < n; j0 += QK_GEMM_NR) {
            const size_t cnt = n - j0 < QK_GEMM_NR ? n - j0 : QK_GEMM_NR;
            const __mmask16 m = (__mmask16)(cnt == 16 ? 0xFFFFu : (1u << cnt) - 1u);
            __m128i r[4];
            for (size_t q = 0; q < 4; q++)
                r[q] = q < kr ? _mm_maskz_mov_epi8(m, _mm_xor_si128(_mm_maskz_loadu_epi8(m, src + (i0 + q) * n + j0), vf))
                              : _mm_setzero_si128();
            __m512i acc = _mm512_loadu_si512((const void *)(cs + j0));
            for (size_t q = 0; q < kr; q++) acc = _mm512_add_epi32(acc, _mm512_cvtepu8_epi32(r[q]));
            _mm512_storeu_si512((void *)(cs + j0), acc);
            const __m128i t0 = _mm_unpacklo_epi8(r[0], r[1]), t1 = _mm_unpackhi_epi8(r[0], r[1]);
            const __m128i t2 = _mm_unpacklo_epi8(r[2], r[3]), t3 = _mm_unpackhi_epi8(r[2], r[3]);
            uint8_t *d = dst + (j0 / QK_GEMM_NR) * pstride + (i0 >> 2) * 4 * QK_GEMM_NR;
            _mm_storeu_si128((__m128i *)d, _mm_unpacklo_epi16(t0, t2));
            _mm_storeu_si128((__m128i *)(d + 16), _mm_unpackhi_epi16(t0, t2));
            _mm_storeu_si128((__m128i *)(d + 32), _mm_unpacklo_epi16(t1, t3));
            _mm_storeu_si128((__m128i *)(d + 48), _mm_unpackhi_epi16(t1, t3));
        }
    }
}

/* rows of A' (s8: u8 A - 128) into blocks [kq][12][4], and their sums. */
QK_TARGET_BMM8 static void qk__bmm_pack_a8(const qk__bmm_ctx *c, const uint8_t *asrc, size_t nrows,
                                           int8_t *abuf, size_t abytes, int32_t *rowsum) {
    const size_t k = c->k;
    const uint8_t flip = c->at == QK_DT_U8 ? 0x80 : 0;
    const uint32_t flip4 = flip * UINT32_C(0x01010101);
    memset(abuf, 0, abytes);
    for (size_t r = 0; r < nrows; r++) {
        int8_t *blk = abuf + (r / QK_VNNI_MR) * c->kq * 4 * QK_VNNI_MR + 4 * (r % QK_VNNI_MR);
        const uint8_t *row = asrc + r * k;
        /* sum of A' = sum of the bytes ^ flip ^ 0x80 as u8, minus 128 k */
        rowsum[r] = (int32_t)(qk__bmm_bytesum(row, k, (uint8_t)(flip ^ 0x80)) - (uint32_t)(128 * k));
        size_t i = 0;
        for (; i + 4 <= k; i += 4) {
            const uint32_t w = (uint32_t)qk__ld32(row + i) ^ flip4;
            memcpy(blk + (i >> 2) * 4 * QK_VNNI_MR, &w, 4);
        }
        for (; i < k; i++) blk[(i >> 2) * 4 * QK_VNNI_MR + (i & 3)] = (int8_t)(uint8_t)(row[i] ^ flip);
    }
}
#endif

/* Phase 1: pack B of items j0..j1-1 (and its sums). The 8-bit panel holds B' = byte ^ flip
 * (s8 B + 128 as u8), the int16 panel B - zb. */
static void qk__bmm_pack_b(void *vctx, size_t j0, size_t j1) {
    qk__bmm_ctx *c = (qk__bmm_ctx *)vctx;
    const size_t n = c->n, k = c->k;
    for (size_t bi = j0; bi < j1; bi++) {
        const uint8_t *src = (const uint8_t *)c->b + bi * n * k;
        unsigned char *dst = c->bpack + bi * c->bstride;
        const int32_t zb = c->bzp[bi];
        if (c->vnni) {
#if QK_X86
            qk__bmm_pack_b8(c, src, (uint8_t *)dst, c->colsum + bi * c->npad);
#endif
        } else {
            int16_t *p16 = (int16_t *)dst;
            const size_t pstride = c->k2 * QK_GEMM_NR;
            if (!c->b_kn) {
                for (size_t j = 0; j < n; j++) {
                    int16_t *panel = p16 + (j / QK_GEMM_NR) * pstride + 2 * (j % QK_GEMM_NR);
                    const uint8_t *row = src + j * k;
                    for (size_t i = 0; i < k; i++)
                        panel[(i >> 1) * 2 * QK_GEMM_NR + (i & 1)] =
                            (int16_t)(qk__bmm_v(c->bt, row[i]) - zb);
                }
            } else {
                for (size_t i = 0; i < k; i++) {
                    const uint8_t *row = src + i * n;
                    int16_t *d = p16 + (i >> 1) * 2 * QK_GEMM_NR + (i & 1);
                    for (size_t j = 0; j < n; j++)
                        d[(j / QK_GEMM_NR) * pstride + 2 * (j % QK_GEMM_NR)] =
                            (int16_t)(qk__bmm_v(c->bt, row[j]) - zb);
                }
            }
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

/* The 8-bit tile's rows r < mr (16 sums each) corrected to the exact sums, into the row buffer:
 * out[r][q] = tile[r][q] + colterm[q] + rowterm[r], modulo 2^32. The AVX-512 twin is used with
 * the VNNI kernels (which imply AVX-512); the scalar loop is the reference. */
static void qk__bmm_tile_fix_scalar(const int32_t *tile, size_t mr, const uint32_t *colterm,
                                    const uint32_t *rowterm, int32_t *out, size_t ostride) {
    for (size_t r = 0; r < mr; r++)
        for (size_t q = 0; q < QK_GEMM_NR; q++)
            out[r * ostride + q] =
                (int32_t)((uint32_t)tile[r * QK_GEMM_NR + q] + colterm[q] + rowterm[r]);
}

#if QK_X86
__attribute__((target("avx2,fma,avx512f"))) static void qk__bmm_tile_fix_avx512(
    const int32_t *tile, size_t mr, const uint32_t *colterm, const uint32_t *rowterm,
    int32_t *out, size_t ostride) {
    const __m512i ct = _mm512_loadu_si512((const void *)colterm);
    for (size_t r = 0; r < mr; r++) {
        const __m512i v = _mm512_add_epi32(_mm512_loadu_si512((const void *)(tile + r * QK_GEMM_NR)),
                                           _mm512_add_epi32(ct, _mm512_set1_epi32((int32_t)rowterm[r])));
        _mm512_storeu_si512((void *)(out + r * ostride), v);
    }
}
#endif

static void qk__bmm_tile_fix(const int32_t *tile, size_t mr, const uint32_t *colterm,
                             const uint32_t *rowterm, int32_t *out, size_t ostride) {
#if QK_X86
    if (qk__use_vnni()) {
        qk__bmm_tile_fix_avx512(tile, mr, colterm, rowterm, out, ostride);
        return;
    }
#endif
    qk__bmm_tile_fix_scalar(tile, mr, colterm, rowterm, out, ostride);
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
    const qk_gemm_s8u8_ukernel uk8 = c->vnni ? qk__gemm_s8u8_ukernel(QK_VNNI_MR) : NULL;
    const qk_gemm_ukernel uk16 = c->vnni ? NULL : qk__gemm_ukernel();
    for (size_t j = j0; j < j1; j++) {
        const size_t bi = j / c->rchunks, rc = j % c->rchunks;
        const size_t r0 = rc * QK__BMM_MC;
        const size_t nrows = c->m - r0 < QK__BMM_MC ? c->m - r0 : QK__BMM_MC;
        const int32_t za = c->azp[bi], zb = c->bzp[bi];
        const unsigned char *bp = c->bpack + bi * c->bstride;
        /* pack this chunk of A */
        const uint8_t *asrc = (const uint8_t *)c->a + (bi * c->m + r0) * c->k;
        if (c->vnni) {
#if QK_X86
            qk__bmm_pack_a8(c, asrc, nrows, (int8_t *)abuf, abytes, rowsum);
#endif
        } else {
            int16_t *a16 = (int16_t *)abuf;
            for (size_t r = 0; r < nrows; r++) {
                int16_t *d = a16 + r * c->k2;
                const uint8_t *row = asrc + r * c->k;
                if (c->at == QK_DT_U8)
                    for (size_t i = 0; i < c->k; i++) d[i] = (int16_t)((int32_t)row[i] - za);
                else
                    for (size_t i = 0; i < c->k; i++) d[i] = (int16_t)((int32_t)(int8_t)row[i] - za);
                if (c->k2 > c->k) d[c->k] = 0;
            }
        }
        /* 8-bit correction (mod 2^32): column term alpha sum_k B' + K alpha beta, row term
         * beta sum_k A' */
        const uint32_t beta = (uint32_t)(-(c->bt == QK_DT_S8 ? 128 : 0) - zb);
        if (c->vnni && bi != colterm_item) {
            const uint32_t alpha = (uint32_t)((c->at == QK_DT_U8 ? 128 : 0) - za);
            const uint32_t kab = (uint32_t)c->k * alpha * beta;
            const uint32_t *cs = c->colsum + bi * c->npad;
            for (size_t q = 0; q < c->npad; q++) colterm[q] = alpha * cs[q] + kab;
            colterm_item = bi;
        }
        if (c->vnni)
            for (size_t r = 0; r < nrows; r++) rowterm[r] = beta * (uint32_t)rowsum[r];
        for (size_t rb = 0; rb < nrows; rb += mr_blk) {
            const size_t mr = nrows - rb < mr_blk ? nrows - rb : mr_blk;
            for (size_t p = 0; p < c->panels; p++) {
                if (c->vnni)
                    uk8(c->kq, (const int8_t *)abuf + (rb / QK_VNNI_MR) * c->kq * 4 * QK_VNNI_MR,
                        bp + p * c->kq * 4 * QK_GEMM_NR, tile);
                else
                    uk16(mr, c->k2 / 2, (const int16_t *)abuf + rb * c->k2, c->k2,
                         (const int16_t *)bp + p * c->k2 * QK_GEMM_NR, tile);
                if (c->vnni)
                    qk__bmm_tile_fix(tile, mr, colterm + p * QK_GEMM_NR, rowterm + rb,
                                     rows + p * QK_GEMM_NR, c->npad);
                else
                    for (size_t r = 0; r < mr; r++)
                        memcpy(rows + r * c->npad + p * QK_GEMM_NR, tile + r * QK_GEMM_NR,
                               QK_GEMM_NR * sizeof(int32_t));
            }
            for (size_t r = 0; r < mr; r++) {
                int32_t *row = rows + r * c->npad;
                char *yrow = (char *)c->y + ((bi * c->m + r0 + rb + r) * c->n) * osz;
                if (qk__epilogue_run(ep, bi, row, c->n, yrow) != QK_OK)
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
