/* transpose_u8_avx2.c -- a byte matrix transposed on AVX2 (twin: transpose_u8_scalar.c): blocks
 * of 16 x 16 bytes through four rounds of unpacks (bytes, words, dwords, qwords), the edges of
 * the matrix by the scalar twin. */
#include "ukernels/ukernels.h"

#if QK_X86
#include <immintrin.h>

/* The 16 x 16 block at s (row pitch sp) into d (row pitch dp), transposed. */
QK_TARGET_AVX2 static QK_ALWAYS_INLINE void qk__transpose16(const uint8_t *s, size_t sp,
                                                            uint8_t *d, size_t dp) {
    __m128i a[16], b[16];
    for (int i = 0; i < 16; i++) a[i] = _mm_loadu_si128((const __m128i *)(s + i * sp));
    for (int i = 0; i < 8; i++) { /* rows 2i, 2i+1 interleaved by bytes */
        b[i] = _mm_unpacklo_epi8(a[2 * i], a[2 * i + 1]);
        b[i + 8] = _mm_unpackhi_epi8(a[2 * i], a[2 * i + 1]);
    }
    for (int h = 0; h < 2; h++) /* then by words: rows 4i .. 4i+3 */
        for (int i = 0; i < 4; i++) {
            a[8 * h + i] = _mm_unpacklo_epi16(b[8 * h + 2 * i], b[8 * h + 2 * i + 1]);
            a[8 * h + i + 4] = _mm_unpackhi_epi16(b[8 * h + 2 * i], b[8 * h + 2 * i + 1]);
        }
    for (int q = 0; q < 4; q++) /* by dwords: rows 8i .. 8i+7 */
        for (int i = 0; i < 2; i++) {
            b[4 * q + i] = _mm_unpacklo_epi32(a[4 * q + 2 * i], a[4 * q + 2 * i + 1]);
            b[4 * q + i + 2] = _mm_unpackhi_epi32(a[4 * q + 2 * i], a[4 * q + 2 * i + 1]);
        }
    for (int e = 0; e < 8; e++) { /* by qwords: all 16 rows */
        a[2 * e] = _mm_unpacklo_epi64(b[2 * e], b[2 * e + 1]);
        a[2 * e + 1] = _mm_unpackhi_epi64(b[2 * e], b[2 * e + 1]);
    }
    /* a[j] now holds column j of the block */
    for (int j = 0; j < 16; j++) _mm_storeu_si128((__m128i *)(d + j * dp), a[j]);
}

QK_TARGET_AVX2 void qk_transpose_u8__avx2(const uint8_t *src, size_t rows, size_t cols, size_t sp,
                                          uint8_t *dst) {
    const size_t r16 = rows & ~(size_t)15, c16 = cols & ~(size_t)15;
    for (size_t r0 = 0; r0 < r16; r0 += 16)
        for (size_t c0 = 0; c0 < c16; c0 += 16)
            qk__transpose16(src + r0 * sp + c0, sp, dst + c0 * rows + r0, rows);
    /* the edges: columns past c16 (every row), rows past r16 (the first c16 columns) */
    for (size_t c = c16; c < cols; c++)
        for (size_t r = 0; r < rows; r++) dst[c * rows + r] = src[r * sp + c];
    for (size_t c = 0; c < c16; c++)
        for (size_t r = r16; r < rows; r++) dst[c * rows + r] = src[r * sp + c];
}
#endif
