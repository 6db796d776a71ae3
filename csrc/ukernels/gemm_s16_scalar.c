/* gemm_s16_scalar.c -- the 6 x 16 int16 GEMM tile in portable C (the twin of
 * gemm_s16_avx2.c): the same sums, carried in uint32 (two's-complement wrap, as vpaddd). */
#include "ukernels/ukernels.h"

void qk_gemm_s16_6x16__scalar(size_t mr, size_t kp, const int16_t *a, size_t lda,
                              const int16_t *b, int32_t *c) {
    for (size_t r = 0; r < QK_GEMM_MR; r++) {
        const int16_t *ar = a + (r < mr ? r : mr - 1) * lda;
        uint32_t acc[QK_GEMM_NR];
        for (size_t j = 0; j < QK_GEMM_NR; j++) acc[j] = 0;
        for (size_t p = 0; p < kp; p++) {
            const int32_t a0 = ar[2 * p], a1 = ar[2 * p + 1];
            const int16_t *bp = b + p * 2 * QK_GEMM_NR;
            for (size_t j = 0; j < QK_GEMM_NR; j++)
                acc[j] += (uint32_t)(a0 * bp[2 * j] + a1 * bp[2 * j + 1]);
        }
        for (size_t j = 0; j < QK_GEMM_NR; j++) c[r * QK_GEMM_NR + j] = (int32_t)acc[j];
    }
}
