/* linear.c -- qk_linear: y = epilogue(x . w^T) on packed weights.
 *
 * Work is cut into jobs of (a chunk of up to 48 rows of x) x (a range of 16-column weight
 * panels). A job widens its rows to int16 (x - x_zp) once, then runs the 6 x 16 micro-kernel over
 * every row block and panel, and the epilogue writes each tile straight into y. Jobs never share
 * an output element, and each element is computed the same way whatever the split, so the
 * result does not depend on the thread count.
 */
#include "gemm/gemm_internal.h"

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
    qk_gemm_ukernel uk;
    qk_gemm_u8s8_ukernel uk8;
    uint32_t *corr;   /* 8-bit path: -xz8 * colsum[o] + k * xz8 * wzp8[o] (mod 2^32) */
    int32_t xz8;      /* 8-bit path: activation zero point as u8 (+128 for int8 activations) */
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

/* 8-bit path: rows as u8 (int8 activations + 128) in blocks [k4/4][12][4] (rows past `rows`
 * and k past k are zero), and their sums. */
#if QK_X86
#include <immintrin.h>
/* sum of (s[i] ^ flip) with vpsadbw, 32 bytes at a time; returns the bytes done via *done. */
QK_TARGET_AVX2 static uint32_t qk__sum_u8_avx2(const uint8_t *s, size_t n, uint8_t flip,
                                               size_t *done) {
    const __m256i vf = _mm256_set1_epi8((char)flip), zero = _mm256_setzero_si256();
    __m256i acc = zero;
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
        acc = _mm256_add_epi64(acc, _mm256_sad_epu8(
            _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(s + i)), vf), zero));
    *done = i;
    const __m128i h = _mm_add_epi64(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    return (uint32_t)(_mm_cvtsi128_si64(h) + _mm_extract_epi64(h, 1));
}
#endif

static void qk__rows_u8(const void *x, qk_dtype xt, size_t k, size_t k4, size_t r0, size_t rows,
                        uint8_t *dst, uint32_t *rowsum) {
    const uint8_t flip = xt == QK_DT_S8 ? 0x80 : 0;
    const uint32_t flip4 = flip * 0x01010101u;
    const size_t nb = (rows + QK_VNNI_MR - 1) / QK_VNNI_MR, kq = k / 4;
    if (rows % QK_VNNI_MR != 0 || (k & 3) != 0) memset(dst, 0, nb * QK_VNNI_MR * k4);
    for (size_t r = 0; r < rows; r++) {
        const uint8_t *s = (const uint8_t *)x + (r0 + r) * k;
        uint8_t *d = dst + (r / QK_VNNI_MR) * QK_VNNI_MR * k4 + (r % QK_VNNI_MR) * 4;
        uint32_t sum = 0;
        size_t i0 = 0;
#if QK_X86
        if (qk__use_avx2()) sum = qk__sum_u8_avx2(s, k, flip, &i0);
#endif
        for (size_t i = i0; i < k; i++) sum += (uint8_t)(s[i] ^ flip);
        rowsum[r] = sum;
        for (size_t q = 0; q < kq; q++) { /* whole quads: 4 bytes at a time */
            uint32_t v;
            memcpy(&v, s + 4 * q, 4);
            v ^= flip4;
            memcpy(d + q * 4 * QK_VNNI_MR, &v, 4);
        }
        for (size_t i = 4 * kq; i < k; i++) d[kq * 4 * QK_VNNI_MR + (i & 3)] = (uint8_t)(s[i] ^ flip);
    }
}

static void qk__lin_jobs8(qk__lin_ctx *c, size_t j0, size_t j1) {
    const qk_packed_weights *w = c->w;
    const size_t k4 = w->k4, n = w->n, osz = qk__dtype_size(c->ep->out_type);
    uint8_t *abuf = (uint8_t *)malloc(QK__LIN_MC * k4); /* QK__LIN_MC is a multiple of 12 */
    if (abuf == NULL) {
        atomic_store(&c->status, QK_ERR_NOMEM);
        return;
    }
    uint32_t rowsum[QK__LIN_MC];
    int32_t tile[QK_VNNI_MR * QK_GEMM_NR];
    for (size_t j = j0; j < j1; j++) {
        const size_t mi = j / c->nsplit, ni = j % c->nsplit;
        const size_t r0 = mi * QK__LIN_MC;
        const size_t rows = c->m - r0 < QK__LIN_MC ? c->m - r0 : QK__LIN_MC;
        const size_t p0 = c->panels * ni / c->nsplit, p1 = c->panels * (ni + 1) / c->nsplit;
        qk__rows_u8(c->x, c->xt, w->k, k4, r0, rows, abuf, rowsum);
        for (size_t p = p0; p < p1; p++) {
            const int8_t *panel = w->data8 + p * k4 * QK_GEMM_NR;
            const size_t o0 = p * QK_GEMM_NR;
            const size_t cols = n - o0 < QK_GEMM_NR ? n - o0 : QK_GEMM_NR;
            for (size_t rb = 0; rb < rows; rb += QK_VNNI_MR) {
                const size_t mr = rows - rb < QK_VNNI_MR ? rows - rb : QK_VNNI_MR;
                c->uk8(k4 / 4, abuf + rb * k4, panel, tile);
                char *yrow = (char *)c->y + ((r0 + rb) * n + o0) * osz;
                if (qk__tile_out_linear(c->ep, w, c->corr, rowsum + rb, o0, cols, tile, mr, yrow,
                                        n * osz) != QK_OK)
                    atomic_store(&c->status, QK_ERR_OVERFLOW);
            }
        }
    }
    free(abuf);
}

static void qk__lin_jobs(void *vctx, size_t j0, size_t j1) {
    qk__lin_ctx *c = (qk__lin_ctx *)vctx;
    if (c->w->vnni) {
        qk__lin_jobs8(c, j0, j1);
        return;
    }
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
                c->uk(mr, k2 / 2, abuf + rb * k2, k2, panel, tile);
                for (size_t r = 0; r < mr; r++) {
                    char *yrow = (char *)c->y + ((r0 + rb + r) * n + o0) * osz;
                    if (qk__epilogue_channels(c->ep, o0, tile + r * QK_GEMM_NR, cols, yrow) !=
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
    qk_status st = qk__epilogue_check(ep, w->n);
    if (st != QK_OK) return st;
    st = qk__bound_check(w, x_type, x_zero_point, ep);
    if (st != QK_OK) return st;
    if (m == 0) return QK_OK;
    if (x == NULL || y == NULL) return QK_ERR_ARG;
    if (qk__linear_vnni_ok(w, ep))
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
    c.uk = qk__gemm_ukernel();
    c.panels = (w->n + QK_GEMM_NR - 1) / QK_GEMM_NR;
    const size_t mchunks = (m + QK__LIN_MC - 1) / QK__LIN_MC;
    const size_t t = threads < 1 ? 1 : (size_t)threads;
    /* enough jobs for an even split: at least 4 a thread when there are several threads */
    c.nsplit = 1;
    if (t > 1 && mchunks < 4 * t) {
        c.nsplit = (4 * t + mchunks - 1) / mchunks;
        if (c.nsplit > c.panels) c.nsplit = c.panels;
    }
    atomic_init(&c.status, QK_OK);
    if (w->vnni) {
        c.uk8 = qk__gemm_u8s8_ukernel();
        c.xz8 = x_zero_point + (x_type == QK_DT_S8 ? 128 : 0);
        c.corr = qk__zp_correction(w, c.xz8);
        if (c.corr == NULL) return QK_ERR_NOMEM;
    }
    qk__parallel(mchunks * c.nsplit, (int)t, qk__lin_jobs, &c);
    free(c.corr);
    return (qk_status)atomic_load(&c.status);
}
