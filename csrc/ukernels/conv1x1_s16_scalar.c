/* conv1x1_s16_scalar.c -- the unpadded stride-1 1x1 conv on the int16 path in portable C (the
 * twins of conv1x1_s16_avx2.c): the panel of 16 pixels read straight from the NCHW planes, and the
 * 6 x 16 tile with the fp32 output stage applied before it leaves (qk_gemm_s16_6x16__scalar, then
 * the scalar output stage a row: the reference the AVX2 form matches). */
#include "ukernels/ukernels.h"

void qk_panel_s16_1x1__scalar(const void *x, qk_dtype xt, int32_t zp, size_t plane, size_t k,
                              size_t cnt, int16_t *panel) {
    for (size_t kk = 0; kk < k; kk++) {
        int16_t *d = panel + (kk / 2) * 2 * QK_GEMM_NR + (kk & 1);
        size_t i = 0;
        if (xt == QK_DT_U8) {
            const uint8_t *s = (const uint8_t *)x + kk * plane;
            for (; i < cnt; i++) d[2 * i] = (int16_t)((int32_t)s[i] - zp);
        } else {
            const int8_t *s = (const int8_t *)x + kk * plane;
            for (; i < cnt; i++) d[2 * i] = (int16_t)((int32_t)s[i] - zp);
        }
        for (; i < QK_GEMM_NR; i++) d[2 * i] = 0;
    }
    if (k & 1) {
        int16_t *d = panel + (k / 2) * 2 * QK_GEMM_NR + 1;
        for (size_t i = 0; i < QK_GEMM_NR; i++) d[2 * i] = 0;
    }
}

void qk_gemm_s16_fused_6x16__scalar(size_t mr, size_t kp, const int16_t *a, size_t lda,
                                    const int16_t *b, const qk_epilogue *ep, size_t o0,
                                    size_t cnt, uint8_t *y, size_t ystride) {
    int32_t tile[QK_GEMM_MR * QK_GEMM_NR];
    qk_gemm_s16_6x16__scalar(mr, kp, a, lda, b, tile);
    for (size_t r = 0; r < mr; r++) /* the fp32 scheme: never an overflow to report */
        (void)qk_epilogue_run__scalar(ep, o0 + r, tile + r * QK_GEMM_NR, cnt, y + r * ystride);
}
