/* gemm_u8_scalar.c -- the u8 x s8 GEMM tiles in portable C (the twins of gemm_u8_avx512vnni.c):
 * the same sums of four-byte dot products, carried in uint32 (wrapping as vpdpbusd does). */
#include "ukernels/ukernels.h"

/* rows x cols (16, or 8 for a half tile: columns 8-15 of c set to 0) */
static void qk__gemm_s8u8_scalar(size_t rows, size_t cols, size_t kq, const int8_t *a,
                                 const uint8_t *b, int32_t *c) {
    for (size_t r = 0; r < rows; r++) {
        uint32_t acc[16] = {0};
        for (size_t p = 0; p < kq; p++) {
            const uint8_t *bp = b + p * 64;
            for (size_t j = 0; j < cols; j++) {
                int32_t s = 0;
                for (size_t q = 0; q < 4; q++)
                    s += (int32_t)a[4 * rows * p + 4 * r + q] * bp[4 * j + q];
                acc[j] += (uint32_t)s;
            }
        }
        for (size_t j = 0; j < 16; j++) c[r * 16 + j] = (int32_t)acc[j];
    }
}

void qk_gemm_s8u8_12x16__scalar(size_t kq, const int8_t *a, const uint8_t *b, int32_t *c) {
    qk__gemm_s8u8_scalar(12, 16, kq, a, b, c);
}

void qk_gemm_s8u8_16x16__scalar(size_t kq, const int8_t *a, const uint8_t *b, int32_t *c) {
    qk__gemm_s8u8_scalar(16, 16, kq, a, b, c);
}

void qk_gemm_s8u8_12x8__scalar(size_t kq, const int8_t *a, const uint8_t *b, int32_t *c) {
    qk__gemm_s8u8_scalar(12, 8, kq, a, b, c);
}

void qk_gemm_s8u8_16x8__scalar(size_t kq, const int8_t *a, const uint8_t *b, int32_t *c) {
    qk__gemm_s8u8_scalar(16, 8, kq, a, b, c);
}
