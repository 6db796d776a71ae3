/* transpose_u8_scalar.c -- a byte matrix transposed, in portable C (the twin of
 * transpose_u8_avx2.c): the 1x1-as-GEMM conv's NCHW <-> NHWC copies. */
#include "ukernels/ukernels.h"

void qk_transpose_u8__scalar(const uint8_t *src, size_t rows, size_t cols, size_t sp,
                             uint8_t *dst) {
    for (size_t c = 0; c < cols; c++)
        for (size_t r = 0; r < rows; r++) dst[c * rows + r] = src[r * sp + c];
}
