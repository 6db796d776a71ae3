/* im2col_s16_avx2.c -- the int16 operands of the conv GEMM on AVX2 (twins: im2col_s16_scalar.c):
 * rows widened 16 elements at a time, and tile panels built two k rows at a time (stride 1 or
 * 2; lanes past the tile are don't-care: they only reach output columns never stored). */
#include "ukernels/simd_avx2.h"

#if QK_X86
/* Whole blocks of 16 elements, the last one past the row (see ukernels.h). */
QK_TARGET_AVX2 void qk_widen_s16_over__avx2(const void *src, qk_dtype xt, int32_t zp, size_t n,
                                            int16_t *d) {
    const __m256i vzp = _mm256_set1_epi16((int16_t)zp);
    for (size_t i = 0; i < n; i += 16) {
        const __m128i v = _mm_loadu_si128((const __m128i *)((const uint8_t *)src + i));
        const __m256i w = xt == QK_DT_U8 ? _mm256_cvtepu8_epi16(v) : _mm256_cvtepi8_epi16(v);
        _mm256_storeu_si256((__m256i *)(d + i), _mm256_sub_epi16(w, vzp));
    }
}

/* Exactly n elements: the whole blocks inside the row, then the scalar twin. */
QK_TARGET_AVX2 void qk_widen_s16__avx2(const void *src, qk_dtype xt, int32_t zp, size_t n,
                                       int16_t *d) {
    const size_t n16 = n & ~(size_t)15;
    qk_widen_s16_over__avx2(src, xt, zp, n16, d);
    qk_widen_s16__scalar((const uint8_t *)src + n16, xt, zp, n - n16, d + n16);
}

QK_TARGET_AVX2 void qk_im2col_s16__avx2(const int16_t *src, const size_t *koff, size_t k,
                                        size_t stride_w, size_t base, size_t cnt, int16_t *panel) {
    if (stride_w != 1 && stride_w != 2) {
        qk_im2col_s16__scalar(src, koff, k, stride_w, base, cnt, panel);
        return;
    }
    const __m256i zero = _mm256_setzero_si256();
    for (size_t kk = 0; kk < k; kk += 2) {
        const __m256i v0 = qk__load16_s16__avx2(src + koff[kk] + base, stride_w);
        const __m256i v1 =
            kk + 1 < k ? qk__load16_s16__avx2(src + koff[kk + 1] + base, stride_w) : zero;
        const __m256i lo = _mm256_unpacklo_epi16(v0, v1), hi = _mm256_unpackhi_epi16(v0, v1);
        _mm256_storeu_si256((__m256i *)(panel + kk * QK_GEMM_NR),
                            _mm256_permute2x128_si256(lo, hi, 0x20));
        _mm256_storeu_si256((__m256i *)(panel + kk * QK_GEMM_NR + 16),
                            _mm256_permute2x128_si256(lo, hi, 0x31));
    }
}
/* A flat tile's runs: each run's 16 lanes loaded as qk_im2col_s16 loads a tile, then blended in
 * by the lane masks of the runs after the first (run r owns lanes start[r] .. start[r + 1] - 1). */
QK_TARGET_AVX2 void qk_im2col_s16_segs__avx2(const int16_t *src, const size_t *koff, size_t k,
                                             size_t stride_w, const qk_segs *g, size_t cnt,
                                             int16_t *panel) {
    if ((stride_w != 1 && stride_w != 2) || g->n == 0) {
        qk_im2col_s16_segs__scalar(src, koff, k, stride_w, g, cnt, panel);
        return;
    }
    const __m256i zero = _mm256_setzero_si256();
    const __m256i lane = _mm256_setr_epi16(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    __m256i from[QK_SEGS]; /* lanes >= start[r]: all ones */
    for (size_t r = 1; r < g->n; r++)
        from[r] = _mm256_cmpgt_epi16(lane, _mm256_set1_epi16((int16_t)((int)g->start[r] - 1)));
    for (size_t kk = 0; kk < k; kk += 2) {
        __m256i v0 = qk__load16_s16__avx2(src + koff[kk] + g->base[0], stride_w);
        __m256i v1 = kk + 1 < k ? qk__load16_s16__avx2(src + koff[kk + 1] + g->base[0], stride_w)
                                : zero;
        for (size_t r = 1; r < g->n; r++) {
            v0 = _mm256_blendv_epi8(
                v0, qk__load16_s16__avx2(src + koff[kk] + g->base[r], stride_w), from[r]);
            if (kk + 1 < k)
                v1 = _mm256_blendv_epi8(
                    v1, qk__load16_s16__avx2(src + koff[kk + 1] + g->base[r], stride_w), from[r]);
        }
        const __m256i lo = _mm256_unpacklo_epi16(v0, v1), hi = _mm256_unpackhi_epi16(v0, v1);
        _mm256_storeu_si256((__m256i *)(panel + kk * QK_GEMM_NR),
                            _mm256_permute2x128_si256(lo, hi, 0x20));
        _mm256_storeu_si256((__m256i *)(panel + kk * QK_GEMM_NR + 16),
                            _mm256_permute2x128_si256(lo, hi, 0x31));
    }
}
#endif
