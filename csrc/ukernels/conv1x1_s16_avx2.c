/* conv1x1_s16_avx2.c -- the unpadded stride-1 1x1 conv on the int16 path, AVX2 (twins:
 * conv1x1_s16_scalar.c).
 *
 * The panel: a pair of channels at a time, 16 bytes of each plane widened (vpmovzxbw /
 * vpmovsxbw), the zero point subtracted in int16 (exact: |x - zp| <= 255) and the two
 * interleaved into [16][2] pairs; a tile of fewer than 16 pixels (it would read past its plane)
 * goes to the scalar twin.
 * The fused tile: qk_gemm_s16_6x16__avx2's sums (the same vpmaddwd / vpaddd), then in registers
 * the fp32 output stage of epilogue_avx2.c (qk__epi_avx2: vpaddd of the int32 bias, vcvtdq2ps,
 * vaddps of the float bias, vmulps, the clamp on integral float bounds, vcvtps2dq (RNE, as
 * nearbyintf), the zero point, packs to 8 bits), so the same bits as the tile stored and run
 * through qk_epilogue_run; the 16 bytes of a row stored at once (fewer: through a buffer). */
#include "ukernels/simd_avx2.h"

#if QK_X86

QK_TARGET_AVX2 void qk_panel_s16_1x1__avx2(const void *x, qk_dtype xt, int32_t zp, size_t plane,
                                           size_t k, size_t cnt, int16_t *panel) {
    if (cnt != QK_GEMM_NR) {
        qk_panel_s16_1x1__scalar(x, xt, zp, plane, k, cnt, panel);
        return;
    }
    const uint8_t *s = (const uint8_t *)x;
    const __m256i vzp = _mm256_set1_epi16((int16_t)zp);
    const int u8 = xt == QK_DT_U8;
    size_t kk = 0;
    for (; kk + 2 <= k; kk += 2) {
        const __m128i r0 = _mm_loadu_si128((const __m128i *)(s + kk * plane));
        const __m128i r1 = _mm_loadu_si128((const __m128i *)(s + (kk + 1) * plane));
        const __m256i v0 = _mm256_sub_epi16(u8 ? _mm256_cvtepu8_epi16(r0) : _mm256_cvtepi8_epi16(r0), vzp);
        const __m256i v1 = _mm256_sub_epi16(u8 ? _mm256_cvtepu8_epi16(r1) : _mm256_cvtepi8_epi16(r1), vzp);
        const __m256i lo = _mm256_unpacklo_epi16(v0, v1); /* pixels 0-3 | 8-11 */
        const __m256i hi = _mm256_unpackhi_epi16(v0, v1); /* pixels 4-7 | 12-15 */
        int16_t *d = panel + (kk / 2) * 2 * QK_GEMM_NR;
        _mm256_storeu_si256((__m256i *)d, _mm256_permute2x128_si256(lo, hi, 0x20));
        _mm256_storeu_si256((__m256i *)(d + 16), _mm256_permute2x128_si256(lo, hi, 0x31));
    }
    if (kk < k) { /* the odd last channel, paired with 0 */
        const __m128i r0 = _mm_loadu_si128((const __m128i *)(s + kk * plane));
        const __m256i v0 = _mm256_sub_epi16(u8 ? _mm256_cvtepu8_epi16(r0) : _mm256_cvtepi8_epi16(r0), vzp);
        const __m256i z = _mm256_setzero_si256();
        const __m256i lo = _mm256_unpacklo_epi16(v0, z), hi = _mm256_unpackhi_epi16(v0, z);
        int16_t *d = panel + (kk / 2) * 2 * QK_GEMM_NR;
        _mm256_storeu_si256((__m256i *)d, _mm256_permute2x128_si256(lo, hi, 0x20));
        _mm256_storeu_si256((__m256i *)(d + 16), _mm256_permute2x128_si256(lo, hi, 0x31));
    }
}

#define QK__ROWS6(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define QK__ROWPTR(r) const int16_t *a##r = a + ((r) < mr ? (r) : mr - 1) * lda;
#define QK__ZERO(r) __m256i c##r##0 = _mm256_setzero_si256(), c##r##1 = _mm256_setzero_si256();
#define QK__STEP(r)                                                 \
    va = _mm256_set1_epi32(qk__ld32(a##r + 2 * p));                 \
    c##r##0 = _mm256_add_epi32(c##r##0, _mm256_madd_epi16(va, b0)); \
    c##r##1 = _mm256_add_epi32(c##r##1, _mm256_madd_epi16(va, b1));
#define QK__OUT(r)                                                   \
    if ((r) < mr) {                                                  \
        qk__fp32_ch k;                                               \
        qk__fp32_ch__avx2(ep, o0 + (r), &k);                         \
        qk__fp32_row16__avx2(&k, c##r##0, c##r##1, cnt, y + (r) * ystride); \
    }

QK_TARGET_AVX2 void qk_gemm_s16_fused_6x16__avx2(size_t mr, size_t kp, const int16_t *a,
                                                 size_t lda, const int16_t *b,
                                                 const qk_epilogue *ep, size_t o0, size_t cnt,
                                                 uint8_t *y, size_t ystride) {
    QK__ROWS6(QK__ROWPTR)
    QK__ROWS6(QK__ZERO)
    for (size_t p = 0; p < kp; p++) {
        const __m256i b0 = _mm256_loadu_si256((const __m256i *)(b + 32 * p));
        const __m256i b1 = _mm256_loadu_si256((const __m256i *)(b + 32 * p + 16));
        __m256i va;
        QK__ROWS6(QK__STEP)
    }
    QK__ROWS6(QK__OUT)
}
#endif
