/* im2col_u8_avx2.c -- the u8 tile panel on AVX2 (twin: im2col_u8_scalar.c): the four k rows of a
 * quad (each the blend of the tile's runs) interleaved into the [16][4] block by unpacks. */
#include "ukernels/simd_avx2.h"

#if QK_X86
QK_TARGET_AVX2 static QK_ALWAYS_INLINE void qk__store4__avx2(uint8_t *d, __m128i v0, __m128i v1,
                                                             __m128i v2, __m128i v3) {
    const __m128i a = _mm_unpacklo_epi8(v0, v1), a2 = _mm_unpackhi_epi8(v0, v1);
    const __m128i b = _mm_unpacklo_epi8(v2, v3), b2 = _mm_unpackhi_epi8(v2, v3);
    __m128i *q = (__m128i *)d;
    _mm_storeu_si128(q, _mm_unpacklo_epi16(a, b));
    _mm_storeu_si128(q + 1, _mm_unpackhi_epi16(a, b));
    _mm_storeu_si128(q + 2, _mm_unpacklo_epi16(a2, b2));
    _mm_storeu_si128(q + 3, _mm_unpackhi_epi16(a2, b2));
}

QK_TARGET_AVX2 static QK_ALWAYS_INLINE void qk__im2col_u8_body__avx2(
    const uint8_t *src, const size_t *koff, size_t k, size_t k4, const size_t *base, int nseg,
    size_t sw, __m128i m1, __m128i m2, uint8_t *panel) {
    QK__IM2COL_U8_BODY(qk__store4__avx2)
}

QK__IM2COL_U8_DISPATCH(qk_im2col_u8__avx2, QK_TARGET_AVX2, qk__im2col_u8_body__avx2)
#endif
