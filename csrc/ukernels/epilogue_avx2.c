/* epilogue_avx2.c -- the output stage on AVX2 (twin: epilogue_scalar.c): the fp32, int32,
 * float32-out and fixed-point (double rounding, and its half-up form) schemes 8 elements at a
 * time, the rest (other schemes, tails) by the scalar form. Float out: vcvtdq2ps is
 * exact-then-RNE like (float)acc, vfmadd231ps rounds once like fmaf. Fixed point: qk__fx8__avx2
 * (simd_avx2.h); at a block holding a left shift that overflows (strict mode) the vector loop
 * stops and the scalar form reports the element, as it would have alone. */
#include "ukernels/simd_avx2.h"

#if QK_X86

/* The fp32, int32 (no requantization) and fixed-point schemes, 8 elements at a time,
 * bit-identical to qk__epi1: vpaddd wraps like the uint32 add, cvtdq2ps and cvtps2dq round to
 * nearest even as the scalar conversions and nearbyintf do in the default rounding mode, and the
 * clamp happens on integral float bounds. per_ch: channel o + i for element i (linear); else
 * channel o. Returns the elements done (the scalar form does the rest). */
QK_TARGET_AVX2 static size_t qk__epi_avx2(const qk_epilogue *ep, size_t o, int per_ch,
                                          const int32_t *src, size_t cnt, void *y) {
    const int fp32 = ep->scheme == QK_REQ_FP32, flt = ep->scheme == QK_REQ_FLOAT;
    const int half_up = ep->scheme == QK_REQ_DOUBLE_HALF_UP;
    const int fx = half_up || ep->scheme == QK_REQ_DOUBLE;
    if (!fp32 && !flt && !fx && ep->scheme != QK_REQ_NONE) return 0;
    const __m256 flo = _mm256_set1_ps(qk__ep_flo(ep));
    const __m256 fhi = _mm256_set1_ps(qk__ep_fhi(ep));
    const __m256i vzp = _mm256_set1_epi32(ep->zero_point);
    /* the fixed-point clamp on r: [act_min - zp, act_max - zp] (8-bit ranges, checked) */
    const __m256i vlo = _mm256_set1_epi32(fx ? ep->act_min - ep->zero_point : 0);
    const __m256i vhi = _mm256_set1_epi32(fx ? ep->act_max - ep->zero_point : 0);
    const int is_s8 = ep->out_type == QK_DT_S8;
    size_t i = 0;
    for (; i + 8 <= cnt; i += 8) {
        __m256i acc = _mm256_loadu_si256((const __m256i *)(src + i));
        if (ep->bias)
            acc = _mm256_add_epi32(acc, per_ch ? _mm256_loadu_si256((const __m256i *)(ep->bias + o + i))
                                               : _mm256_set1_epi32(ep->bias[o]));
        if (fx) {
            __m256i ovf;
            const __m256i r = qk__fx8__avx2(
                acc, per_ch ? _mm256_loadu_si256((const __m256i *)(ep->multiplier + o + i))
                            : _mm256_set1_epi32(ep->multiplier[o]),
                per_ch ? _mm256_loadu_si256((const __m256i *)(ep->shift + o + i))
                       : _mm256_set1_epi32(ep->shift[o]),
                half_up, &ovf);
            if (!ep->wrap && !_mm256_testz_si256(ovf, ovf)) return i;
            const __m256i q = _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(r, vlo), vhi), vzp);
            const __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
            _mm_storel_epi64((__m128i *)((uint8_t *)y + i),
                             is_s8 ? _mm_packs_epi16(w16, w16) : _mm_packus_epi16(w16, w16));
            continue;
        }
        if (flt) { /* float32 out: fmaf((float)acc, scale, float_bias) */
            const __m256 fb = !ep->float_bias ? _mm256_setzero_ps()
                              : per_ch ? _mm256_loadu_ps(ep->float_bias + o + i)
                                       : _mm256_set1_ps(ep->float_bias[o]);
            const __m256 sc = per_ch ? _mm256_loadu_ps(ep->scale + o + i) : _mm256_set1_ps(ep->scale[o]);
            _mm256_storeu_ps((float *)y + i, _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc), sc, fb));
            continue;
        }
        if (!fp32) {
            _mm256_storeu_si256((__m256i *)((int32_t *)y + i), acc);
            continue;
        }
        __m256 f = _mm256_cvtepi32_ps(acc);
        if (ep->float_bias)
            f = _mm256_add_ps(f, per_ch ? _mm256_loadu_ps(ep->float_bias + o + i)
                                        : _mm256_set1_ps(ep->float_bias[o]));
        f = _mm256_mul_ps(f, per_ch ? _mm256_loadu_ps(ep->scale + o + i) : _mm256_set1_ps(ep->scale[o]));
        f = _mm256_min_ps(_mm256_max_ps(f, flo), fhi);
        const __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(f), vzp);
        const __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
        const __m128i b8 = is_s8 ? _mm_packs_epi16(w16, w16) : _mm_packus_epi16(w16, w16);
        _mm_storel_epi64((__m128i *)((uint8_t *)y + i), b8);
    }
    return i;
}

qk_status qk_epilogue_run__avx2(const qk_epilogue *ep, size_t o, const int32_t *src, size_t cnt,
                                void *y) {
    const size_t i = qk__epi_avx2(ep, o, 0, src, cnt, y);
    return qk_epilogue_tail__scalar(ep, o, 0, src, i, cnt, y);
}

qk_status qk_epilogue_channels__avx2(const qk_epilogue *ep, size_t o, const int32_t *src,
                                     size_t cnt, void *y) {
    const size_t i = qk__epi_avx2(ep, o, 1, src, cnt, y);
    return qk_epilogue_tail__scalar(ep, o, 1, src, i, cnt, y);
}
#endif
