/* im2col_u8_avx512vbmi.c -- the u8 operands with VBMI byte permutes (twins: im2col_u8_scalar.c):
 * the padded plane by 64-byte blocks (one masked load and one vpermb a block), and the tile
 * panel: the four rows of a quad go into two ymm and one vpermt2b interleaves them into the
 * 64-byte [16][4] block (byte 4p + q = row q, pixel p). */
#include "ukernels/simd_avx2.h"

#if QK_X86
QK_TARGET_AVX512VBMI void qk_pad_u8_blocks__avx512vbmi(const qk_pad_u8_blocks *t, const uint8_t *src,
                                                       uint8_t flip, uint8_t fill, uint8_t *d) {
    const __m512i vf = _mm512_set1_epi8((char)flip), vfill = _mm512_set1_epi8((char)fill);
    for (size_t b = 0; b < t->nblk; b++) {
        const __mmask64 m = t->mask[b];
        __m512i v = vfill;
        if (m) {
            const uint32_t c = t->cnt[b];
            const __mmask64 lm = c >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << c) - 1);
            const __m512i x = _mm512_maskz_loadu_epi8(lm, src + t->start[b]);
            v = _mm512_mask_permutexvar_epi8(vfill, m,
                                             _mm512_loadu_si512((const void *)(t->idx + 64 * b)),
                                             _mm512_xor_si512(x, vf));
        }
        _mm512_store_si512((void *)(d + 64 * b), v);
    }
}

QK_TARGET_AVX512VBMI static QK_ALWAYS_INLINE void qk__store4__avx512vbmi(uint8_t *d, __m512i idx,
                                                                         __m128i v0, __m128i v1,
                                                                         __m128i v2, __m128i v3) {
    const __m256i a = _mm256_inserti128_si256(_mm256_castsi128_si256(v0), v1, 1);
    const __m256i b = _mm256_inserti128_si256(_mm256_castsi128_si256(v2), v3, 1);
    _mm512_storeu_si512((void *)d, _mm512_permutex2var_epi8(_mm512_castsi256_si512(a), idx,
                                                            _mm512_castsi256_si512(b)));
}

QK_TARGET_AVX512VBMI static QK_ALWAYS_INLINE void qk__im2col_u8_body__avx512vbmi(
    const uint8_t *src, const size_t *koff, size_t k, size_t k4, const size_t *base, int nseg,
    size_t sw, __m128i m1, __m128i m2, uint8_t *panel) {
    static const uint8_t idxb[64] = {
        0, 16, 64, 80, 1, 17, 65, 81, 2, 18, 66, 82, 3, 19, 67, 83,
        4, 20, 68, 84, 5, 21, 69, 85, 6, 22, 70, 86, 7, 23, 71, 87,
        8, 24, 72, 88, 9, 25, 73, 89, 10, 26, 74, 90, 11, 27, 75, 91,
        12, 28, 76, 92, 13, 29, 77, 93, 14, 30, 78, 94, 15, 31, 79, 95};
    const __m512i idx = _mm512_loadu_si512((const void *)idxb);
#define QK__STORE4(d, v0, v1, v2, v3) qk__store4__avx512vbmi(d, idx, v0, v1, v2, v3)
    QK__IM2COL_U8_BODY(QK__STORE4)
#undef QK__STORE4
}

QK__IM2COL_U8_DISPATCH(qk_im2col_u8__avx512vbmi, QK_TARGET_AVX512VBMI,
                       qk__im2col_u8_body__avx512vbmi)
#endif
