/* im2col_s16_scalar.c -- the int16 operands of the conv GEMM in portable C (the twins of
 * im2col_s16_avx2.c and im2col_s16_avx512.c): image rows widened to x - x_zp, and the panel of
 * one tile. */
#include "ukernels/ukernels.h"

void qk_widen_s16__scalar(const void *src, qk_dtype xt, int32_t zp, size_t n, int16_t *d) {
    if (xt == QK_DT_U8) {
        const uint8_t *s8 = (const uint8_t *)src;
        for (size_t i = 0; i < n; i++) d[i] = (int16_t)((int32_t)s8[i] - zp);
    } else {
        const int8_t *s8 = (const int8_t *)src;
        for (size_t i = 0; i < n; i++) d[i] = (int16_t)((int32_t)s8[i] - zp);
    }
}

void qk_im2col_s16__scalar(const int16_t *src, const size_t *koff, size_t k, size_t stride_w,
                           size_t base, size_t cnt, int16_t *panel) {
    for (size_t kk = 0; kk < k; kk++) {
        const int16_t *p = src + koff[kk] + base;
        int16_t *d = panel + (kk / 2) * 2 * QK_GEMM_NR + (kk & 1);
        size_t i = 0;
        for (; i < cnt; i++) d[2 * i] = p[i * stride_w];
        for (; i < QK_GEMM_NR; i++) d[2 * i] = 0;
    }
    if (k & 1) {
        int16_t *d = panel + (k / 2) * 2 * QK_GEMM_NR + 1;
        for (size_t i = 0; i < QK_GEMM_NR; i++) d[2 * i] = 0;
    }
}

void qk_im2col_s16_segs__scalar(const int16_t *src, const size_t *koff, size_t k, size_t stride_w,
                                const qk_segs *g, size_t cnt, int16_t *panel) {
    for (size_t kk = 0; kk < k; kk++) {
        int16_t *d = panel + (kk / 2) * 2 * QK_GEMM_NR + (kk & 1);
        size_t i = 0;
        for (size_t r = 0; r < g->n; r++) {
            const size_t end = r + 1 < g->n && g->start[r + 1] < cnt ? g->start[r + 1] : cnt;
            const int16_t *p = src + koff[kk] + g->base[r];
            for (; i < end; i++) d[2 * i] = p[i * stride_w];
        }
        for (; i < QK_GEMM_NR; i++) d[2 * i] = 0;
    }
    if (k & 1) {
        int16_t *d = panel + (k / 2) * 2 * QK_GEMM_NR + 1;
        for (size_t i = 0; i < QK_GEMM_NR; i++) d[2 * i] = 0;
    }
}
