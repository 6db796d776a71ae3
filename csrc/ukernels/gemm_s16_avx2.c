/* gemm_s16_avx2.c -- the 6 x 16 int16 GEMM tile on AVX2 (twin: gemm_s16_scalar.c).
 *
 * Per pair of k, two 16-column B vectors and one broadcast 32-bit (int16 pair) per A row;
 * vpmaddwd multiplies int16 x int16 and adds adjacent products into int32 exactly (|a|, |b| <=
 * 255 here), vpaddd accumulates modulo 2^32. The rows are written out by an X-macro (named
 * registers: arrays of vectors make gcc keep the accumulators in memory). */
#include "ukernels/ukernels.h"

#if QK_X86
#include <immintrin.h>

#define QK__ROWS6(X) X(0) X(1) X(2) X(3) X(4) X(5)
/* row r reads row min(r, mr - 1) of a */
#define QK__ROWPTR(r) const int16_t *a##r = a + ((r) < mr ? (r) : mr - 1) * lda;
#define QK__ZERO(r) __m256i c##r##0 = _mm256_setzero_si256(), c##r##1 = _mm256_setzero_si256();
#define QK__STEP(r)                                                 \
    va = _mm256_set1_epi32(qk__ld32(a##r + 2 * p));                 \
    c##r##0 = _mm256_add_epi32(c##r##0, _mm256_madd_epi16(va, b0)); \
    c##r##1 = _mm256_add_epi32(c##r##1, _mm256_madd_epi16(va, b1));
#define QK__STORE(r)                                         \
    _mm256_storeu_si256((__m256i *)(c + 16 * (r)), c##r##0); \
    _mm256_storeu_si256((__m256i *)(c + 16 * (r) + 8), c##r##1);

QK_TARGET_AVX2 void qk_gemm_s16_6x16__avx2(size_t mr, size_t kp, const int16_t *a, size_t lda,
                                           const int16_t *b, int32_t *c) {
    QK__ROWS6(QK__ROWPTR)
    QK__ROWS6(QK__ZERO)
    for (size_t p = 0; p < kp; p++) {
        const __m256i b0 = _mm256_loadu_si256((const __m256i *)(b + 32 * p));
        const __m256i b1 = _mm256_loadu_si256((const __m256i *)(b + 32 * p + 16));
        __m256i va;
        QK__ROWS6(QK__STEP)
    }
    QK__ROWS6(QK__STORE)
}
#endif
