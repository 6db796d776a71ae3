/* im2col_s16_avx512.c -- image rows widened to int16 x - x_zp on AVX-512 F/BW (twin:
 * im2col_s16_scalar.c): 32 elements at a time, the last block masked (masked-off lanes are not
 * accessed). */
#include "ukernels/ukernels.h"

#if QK_X86
#include <immintrin.h>

QK_TARGET_AVX512 void qk_widen_s16__avx512(const void *src, qk_dtype xt, int32_t zp, size_t n,
                                           int16_t *d) {
    const __m512i vzp = _mm512_set1_epi16((int16_t)zp);
    for (size_t i = 0; i < n; i += 32) {
        const __mmask32 m = n - i >= 32 ? 0xFFFFFFFFu : (__mmask32)((1u << (n - i)) - 1u);
        const __m256i v = _mm512_castsi512_si256(
            _mm512_maskz_loadu_epi8((__mmask64)m, (const uint8_t *)src + i));
        const __m512i w = xt == QK_DT_U8 ? _mm512_cvtepu8_epi16(v) : _mm512_cvtepi8_epi16(v);
        _mm512_mask_storeu_epi16(d + i, m, _mm512_sub_epi16(w, vzp));
    }
}
#endif
