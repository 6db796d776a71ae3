/* pack.c -- weight packing for the integer linear and conv kernels.
 *
 * Linear: ceil(n/16) panels of [k2/2][16][2] int16 (w - w_zp), columns past n and the k pad
 * are zero. Conv: n rows of k2 int16 (w - w_zp) (the broadcast side of the micro-kernel),
 * k = (in_c / groups) * kh * kw in OIHW order. Both keep sum_k |w - w_zp| per channel for the
 * accumulator bound.
 */
#include "operators/operators.h"

#include <stdlib.h>
#include <string.h>

size_t qk__dtype_size(qk_dtype t) { return t == QK_DT_S32 || t == QK_DT_F32 ? 4 : 1; }

static inline int32_t qk__wval(const void *w, qk_dtype t, size_t i) {
    return t == QK_DT_U8 ? (int32_t)((const uint8_t *)w)[i] : (int32_t)((const int8_t *)w)[i];
}

static qk_status qk__pack_common(const void *w, qk_dtype w_type, size_t n, size_t k,
                                 const int32_t *w_zp, qk_packed_weights **out,
                                 qk_packed_weights **pw) {
    if (out == NULL) return QK_ERR_ARG;
    *out = NULL;
    if (w == NULL || w_zp == NULL || n == 0 || k == 0) return QK_ERR_ARG;
    if (w_type != QK_DT_U8 && w_type != QK_DT_S8) return QK_ERR_ARG;
    /* n * k (the caller's array) with room for every packed layout (padded k, 16-column
     * panels of int16, 64-byte conv panels) and their products in size_t */
    size_t nk;
    if (k > ((size_t)1 << 40) || n > ((size_t)1 << 40) || !qk__sz_mul(n, k, &nk) ||
        nk > (size_t)PTRDIFF_MAX / 256)
        return QK_ERR_ARG;
    const int32_t lo = w_type == QK_DT_U8 ? 0 : -128, hi = w_type == QK_DT_U8 ? 255 : 127;
    for (size_t o = 0; o < n; o++)
        if (w_zp[o] < lo || w_zp[o] > hi) return QK_ERR_ZERO_POINT;
    qk_packed_weights *p = (qk_packed_weights *)calloc(1, sizeof *p);
    if (p == NULL) return QK_ERR_NOMEM;
    p->w_type = w_type;
    p->n = n;
    p->k = k;
    p->k2 = (k + 1) & ~(size_t)1;
    p->groups = p->kh = p->kw = 1;
    p->abs_sum = (int64_t *)calloc(n, sizeof(int64_t));
    p->w_zp = (int32_t *)malloc(n * sizeof(int32_t));
    if (p->abs_sum == NULL || p->w_zp == NULL) {
        qk_packed_weights_free(p);
        return QK_ERR_NOMEM;
    }
    memcpy(p->w_zp, w_zp, n * sizeof(int32_t));
    for (size_t o = 0; o < n; o++) {
        int64_t s = 0;
        for (size_t i = 0; i < k; i++) {
            const int32_t v = qk__wval(w, w_type, o * k + i) - w_zp[o];
            s += v < 0 ? -v : v;
        }
        p->abs_sum[o] = s;
    }
    *pw = p;
    return QK_OK;
}

/* The 8-bit layout's per-channel terms; data8 allocated by the caller's layout. */
static qk_status qk__pack8_common(qk_packed_weights *p, const void *w, size_t elems) {
    p->vnni = 1;
    p->k4 = (p->k + 3) & ~(size_t)3;
    p->data8 = (int8_t *)calloc(elems, 1);
    p->colsum = (int32_t *)calloc(p->n, sizeof(int32_t));
    p->wzp8 = (int32_t *)malloc(p->n * sizeof(int32_t));
    if (p->data8 == NULL || p->colsum == NULL || p->wzp8 == NULL) return QK_ERR_NOMEM;
    const int32_t shift = p->w_type == QK_DT_U8 ? 128 : 0;
    for (size_t o = 0; o < p->n; o++) {
        int32_t cs = 0;
        for (size_t i = 0; i < p->k; i++) cs += qk__wval(w, p->w_type, o * p->k + i) - shift;
        p->colsum[o] = cs; /* |cs| <= 128 k; k < 2^24 is checked by the callers */
        p->wzp8[o] = p->w_zp[o] - shift;
        if (p->wzp8[o] != 0) p->any_wzp8 = 1;
    }
    return QK_OK;
}

qk_status qk_pack_linear(const void *w, qk_dtype w_type, size_t n, size_t k,
                         const int32_t *w_zero_point, qk_packed_weights **out) {
    qk_packed_weights *p = NULL;
    qk_status st = qk__pack_common(w, w_type, n, k, w_zero_point, out, &p);
    if (st != QK_OK) return st;
    p->kind = QK__PACK_LINEAR;
    const size_t panels = (n + QK_GEMM_NR - 1) / QK_GEMM_NR;
    if (qk__uk()->pack_u8 && k < ((size_t)1 << 24)) {
        st = qk__pack8_common(p, w, panels * ((k + 3) & ~(size_t)3) * QK_GEMM_NR);
        if (st != QK_OK) {
            qk_packed_weights_free(p);
            return st;
        }
        const int32_t shift = w_type == QK_DT_U8 ? 128 : 0;
        for (size_t o = 0; o < n; o++) {
            int8_t *panel = p->data8 + (o / QK_GEMM_NR) * p->k4 * QK_GEMM_NR;
            const size_t j = o % QK_GEMM_NR;
            for (size_t i = 0; i < k; i++)
                panel[(i / 4) * 4 * QK_GEMM_NR + 4 * j + (i & 3)] =
                    (int8_t)(qk__wval(w, w_type, o * k + i) - shift);
        }
        *out = p;
        return QK_OK;
    }
    p->data = (int16_t *)calloc(panels * p->k2 * QK_GEMM_NR, sizeof(int16_t));
    if (p->data == NULL) {
        qk_packed_weights_free(p);
        return QK_ERR_NOMEM;
    }
    for (size_t o = 0; o < n; o++) {
        int16_t *panel = p->data + (o / QK_GEMM_NR) * p->k2 * QK_GEMM_NR;
        const size_t j = o % QK_GEMM_NR;
        for (size_t i = 0; i < k; i++)
            panel[(i / 2) * 2 * QK_GEMM_NR + 2 * j + (i & 1)] =
                (int16_t)(qk__wval(w, w_type, o * k + i) - w_zero_point[o]);
    }
    *out = p;
    return QK_OK;
}

qk_status qk_pack_conv2d(const void *w, qk_dtype w_type, size_t out_c, size_t in_c_per_group,
                         size_t kh, size_t kw, size_t groups, const int32_t *w_zero_point,
                         qk_packed_weights **out) {
    if (out != NULL) *out = NULL;
    size_t k;
    if (groups == 0 || out_c % groups != 0 || kh == 0 || kw == 0 || in_c_per_group == 0 ||
        kh > 4096 || kw > 4096 || !qk__sz_mul4(in_c_per_group, kh, kw, 1, &k))
        return QK_ERR_ARG;
    qk_packed_weights *p = NULL;
    qk_status st = qk__pack_common(w, w_type, out_c, k, w_zero_point, out, &p);
    if (st != QK_OK) return st;
    p->kind = QK__PACK_CONV;
    p->groups = groups;
    p->kh = kh;
    p->kw = kw;
    if (kh == 1 && kw == 1 && groups == 1) { /* OIHW with 1 x 1 taps is the (n, k) matrix */
        st = qk_pack_linear(w, w_type, out_c, in_c_per_group, w_zero_point, &p->lin);
        if (st != QK_OK) {
            qk_packed_weights_free(p);
            *out = NULL;
            return st;
        }
    }
    if (qk__uk()->pack_u8 && in_c_per_group > 1 && p->k < ((size_t)1 << 24)) {
        const size_t ocg = out_c / groups;
        /* 16-row blocks (more reuse of each im2col panel) unless they pad ocg more than 12 */
        const size_t pad16 = (ocg + 15) / 16 * 16, pad12 = (ocg + 11) / 12 * 12;
        const size_t mr = pad16 <= pad12 ? 16 : QK_VNNI_MR;
        p->mr8 = mr;
        p->nblk = (ocg + mr - 1) / mr;
        st = qk__pack8_common(p, w, groups * p->nblk * mr * ((p->k + 3) & ~(size_t)3));
        if (st != QK_OK) {
            qk_packed_weights_free(p);
            return st;
        }
        const int32_t shift = w_type == QK_DT_U8 ? 128 : 0;
        p->cq8 = in_c_per_group % 4 == 0 && kh * kw > 1;
        const size_t taps = kh * kw;
        if (p->cq8) {
            p->rowsum8 = (int32_t *)calloc(out_c * kh, sizeof(int32_t));
            if (p->rowsum8 == NULL) {
                qk_packed_weights_free(p);
                return QK_ERR_NOMEM;
            }
        }
        for (size_t o = 0; o < out_c; o++) {
            const size_t g = o / ocg, lo = o % ocg;
            int8_t *blk = p->data8 + (g * p->nblk + lo / mr) * p->k4 * mr;
            for (size_t i = 0; i < p->k; i++) {
                /* OIHW index i = c * taps + tap; cq8: packed at kk = tap * cpg + c */
                const size_t kk = p->cq8 ? (i % taps) * in_c_per_group + i / taps : i;
                const int32_t v = qk__wval(w, w_type, o * p->k + i) - shift;
                blk[(kk / 4) * 4 * mr + (lo % mr) * 4 + (kk & 3)] = (int8_t)v;
                if (p->cq8) p->rowsum8[o * kh + (i % taps) / kw] += v;
            }
        }
        *out = p;
        return QK_OK;
    }
    p->data = (int16_t *)calloc(out_c * p->k2, sizeof(int16_t));
    if (p->data == NULL) {
        qk_packed_weights_free(p);
        return QK_ERR_NOMEM;
    }
    for (size_t o = 0; o < out_c; o++)
        for (size_t i = 0; i < p->k; i++)
            p->data[o * p->k2 + i] =
                (int16_t)(qk__wval(w, w_type, o * p->k + i) - w_zero_point[o]);
    const int32_t shift = w_type == QK_DT_U8 ? 128 : 0;
    int zp_ok = 1;
    for (size_t o = 0; o < out_c; o++) zp_ok &= w_zero_point[o] == shift;
    if (in_c_per_group == 1 && zp_ok && qk__uk()->dw8 != NULL && kw <= 64) {
        /* the 8-bit depthwise layout as well (the int16 one stays for shapes it does not fit) */
        p->dwq = (kw + 3) / 4;
        p->dw8 = (int8_t *)calloc(out_c * kh * p->dwq * 4, 1);
        p->colsum = (int32_t *)calloc(out_c, sizeof(int32_t));
        if (p->dw8 == NULL || p->colsum == NULL) {
            qk_packed_weights_free(p);
            return QK_ERR_NOMEM;
        }
        for (size_t o = 0; o < out_c; o++)
            for (size_t r = 0; r < kh; r++)
                for (size_t q = 0; q < kw; q++) {
                    const int32_t v = qk__wval(w, w_type, (o * kh + r) * kw + q) - shift;
                    p->dw8[(o * kh + r) * p->dwq * 4 + q] = (int8_t)v;
                    p->colsum[o] += v;
                }
    }
    *out = p;
    return QK_OK;
}

void qk_packed_weights_free(qk_packed_weights *w) {
    if (w == NULL) return;
    qk_packed_weights_free(w->lin);
    free(w->data);
    free(w->data8);
    free(w->dw8);
    free(w->colsum);
    free(w->rowsum8);
    free(w->wzp8);
    free(w->abs_sum);
    free(w->w_zp);
    free(w);
}

size_t qk_packed_weights_n(const qk_packed_weights *w) { return w ? w->n : 0; }
size_t qk_packed_weights_k(const qk_packed_weights *w) { return w ? w->k : 0; }
size_t qk_packed_weights_bytes(const qk_packed_weights *w) {
    if (w == NULL) return 0;
    const size_t lin = qk_packed_weights_bytes(w->lin); /* 1x1 conv: the linear packing too */
    if (w->vnni) {
        const size_t bytes = w->kind == QK__PACK_LINEAR
                                 ? ((w->n + QK_GEMM_NR - 1) / QK_GEMM_NR) * w->k4 * QK_GEMM_NR
                                 : w->groups * w->nblk * w->mr8 * w->k4;
        const size_t rows = w->rowsum8 ? w->n * w->kh * sizeof(int32_t) : 0;
        return sizeof *w + bytes + w->n * (sizeof(int64_t) + 3 * sizeof(int32_t)) + rows + lin;
    }
    const size_t dw8 = w->dw8 ? w->n * (w->kh * w->dwq * 4 + sizeof(int32_t)) : 0;
    size_t elems = w->kind == QK__PACK_LINEAR
                       ? ((w->n + QK_GEMM_NR - 1) / QK_GEMM_NR) * w->k2 * QK_GEMM_NR
                       : w->n * w->k2;
    return sizeof *w + elems * sizeof(int16_t) + w->n * (sizeof(int64_t) + sizeof(int32_t)) + dw8 +
           lin;
}

uint32_t *qk__zp_correction(const qk_packed_weights *w, int32_t xz8) {
    uint32_t *corr = (uint32_t *)malloc(w->n * sizeof(uint32_t));
    if (corr == NULL) return NULL;
    for (size_t o = 0; o < w->n; o++)
        corr[o] = (uint32_t)w->k * (uint32_t)xz8 * (uint32_t)w->wzp8[o] -
                  (uint32_t)xz8 * (uint32_t)w->colsum[o];
    return corr;
}
