/* dw_s16_avx512.c -- the int16 depthwise plane on AVX-512 F/BW (twin: dw_s16_scalar.c). */
#include "ukernels/ukernels.h"

#if QK_X86
#include <immintrin.h>

/* 32 outputs of a row at a time: the same pairing of taps as qk_dw_plane__avx2 (vpmaddwd on
 * interleaved tap pairs, exact), on 32 lanes of int16; stride 2 keeps the even elements with
 * vpmovdw. Reads may run up to 2 * 32 + 63 elements past the last input the plane needs (the
 * caller's slack). */
QK_TARGET_AVX512 static inline __m512i qk__dw_load32(const int16_t *p, size_t stride_w) {
    if (stride_w == 1) return _mm512_loadu_si512((const void *)p);
    const __m256i lo = _mm512_cvtepi32_epi16(_mm512_loadu_si512((const void *)p));
    const __m256i hi = _mm512_cvtepi32_epi16(_mm512_loadu_si512((const void *)(p + 32)));
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

QK_TARGET_AVX512 void qk_dw_plane__avx512(const int16_t *x, size_t wp, const int16_t *w, size_t kh,
                                          size_t kw, size_t stride_h, size_t stride_w, size_t dil_h,
                                          size_t dil_w, size_t oh, size_t ow, int32_t *out) {
    size_t off[QK_DW_S16_MAXT + 1];
    int32_t wpair[QK_DW_S16_MAXT / 2 + 1];
    if (!qk__dw_s16_taps(w, kh, kw, stride_w, dil_h, dil_w, wp, off, wpair)) {
        qk_dw_plane__scalar(x, wp, w, kh, kw, stride_h, stride_w, dil_h, dil_w, oh, ow, out);
        return;
    }
    const size_t taps = kh * kw;
    const __m512i ia = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11);
    const __m512i ib = _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15);
    if (ow <= 16) {
        /* Narrow planes: two output rows per vector, lanes 0-15 row i, lanes 16-31 row i + 1
         * (the last row of an odd count is computed twice and stored once). */
        const __mmask16 m = (__mmask16)(ow == 16 ? 0xFFFFu : (1u << ow) - 1u);
        for (size_t i = 0; i < oh; i += 2) {
            const size_t i2 = i + 1 < oh ? i + 1 : i;
            const int16_t *r0 = x + i * stride_h * wp, *r1 = x + i2 * stride_h * wp;
            __m512i lo = _mm512_setzero_si512(), hi = _mm512_setzero_si512();
            for (size_t t = 0; t < taps; t += 2) {
                const __m512i v0 = _mm512_inserti64x4(
                    _mm512_castsi256_si512(_mm512_castsi512_si256(qk__dw_load32(r0 + off[t], stride_w))),
                    _mm512_castsi512_si256(qk__dw_load32(r1 + off[t], stride_w)), 1);
                const __m512i v1 = _mm512_inserti64x4(
                    _mm512_castsi256_si512(_mm512_castsi512_si256(qk__dw_load32(r0 + off[t + 1], stride_w))),
                    _mm512_castsi512_si256(qk__dw_load32(r1 + off[t + 1], stride_w)), 1);
                const __m512i wv = _mm512_set1_epi32(wpair[t / 2]);
                lo = _mm512_add_epi32(lo, _mm512_madd_epi16(_mm512_unpacklo_epi16(v0, v1), wv));
                hi = _mm512_add_epi32(hi, _mm512_madd_epi16(_mm512_unpackhi_epi16(v0, v1), wv));
            }
            _mm512_mask_storeu_epi32(out + i * ow, m, _mm512_permutex2var_epi64(lo, ia, hi));
            if (i2 != i)
                _mm512_mask_storeu_epi32(out + i2 * ow, m, _mm512_permutex2var_epi64(lo, ib, hi));
        }
        return;
    }
    for (size_t i = 0; i < oh; i++) {
        const int16_t *xrow = x + i * stride_h * wp;
        int32_t *orow = out + i * ow;
        for (size_t j = 0; j < ow; j += 32) {
            __m512i lo = _mm512_setzero_si512(), hi = _mm512_setzero_si512();
            const int16_t *base = xrow + j * stride_w;
            for (size_t t = 0; t < taps; t += 2) {
                const __m512i v0 = qk__dw_load32(base + off[t], stride_w);
                const __m512i v1 = qk__dw_load32(base + off[t + 1], stride_w);
                const __m512i wv = _mm512_set1_epi32(wpair[t / 2]);
                lo = _mm512_add_epi32(lo, _mm512_madd_epi16(_mm512_unpacklo_epi16(v0, v1), wv));
                hi = _mm512_add_epi32(hi, _mm512_madd_epi16(_mm512_unpackhi_epi16(v0, v1), wv));
            }
            const __m512i a = _mm512_permutex2var_epi64(lo, ia, hi);   /* outputs j .. j+15 */
            const __m512i b = _mm512_permutex2var_epi64(lo, ib, hi);   /* outputs j+16 .. j+31 */
            const size_t left = ow - j;
            if (left >= 32) {
                _mm512_storeu_si512((void *)(orow + j), a);
                _mm512_storeu_si512((void *)(orow + j + 16), b);
            } else if (left > 16) {
                _mm512_storeu_si512((void *)(orow + j), a);
                _mm512_mask_storeu_epi32(orow + j + 16, (__mmask16)((1u << (left - 16)) - 1u), b);
            } else {
                _mm512_mask_storeu_epi32(orow + j, (__mmask16)(left == 16 ? 0xFFFFu : (1u << left) - 1u), a);
            }
        }
    }
}
#endif
