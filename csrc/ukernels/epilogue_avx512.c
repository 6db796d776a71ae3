/* epilogue_avx512.c -- the output stage on AVX-512 (twin: epilogue_scalar.c): the fp32 and int32
 * schemes 16 lanes at a time with a masked tail (vpmulld / vpaddd wrap like uint32), for one
 * channel's run and for the conv tiles of the 8-bit path (zero-point correction first); the
 * fixed-point schemes (double rounding and its half-up form) for one channel's run. Other
 * schemes go to the scalar forms. */
#include "ukernels/simd_avx512.h"

#if QK_X86
/* 16 results of one channel (bias not yet in) to y, lanes of mask: int32 (no requantization) or
 * the fp32 output stage (simd_avx512.h). */
QK_TARGET_AVX512VNNI static inline void qk__out16(const qk_epilogue *ep, __m512i acc, __m512i vbias,
                                                  __m512 vfb, __m512 vsc,
                                                  const qk__outc_avx512 *z, __mmask16 mask,
                                                  char *y) {
    if (ep->bias) acc = _mm512_add_epi32(acc, vbias);
    if (ep->scheme == QK_REQ_NONE) {
        _mm512_mask_storeu_epi32(y, mask, acc);
        return;
    }
    _mm_mask_storeu_epi8(y, mask,
                         qk__fp32_bytes16__avx512(acc, ep->float_bias != NULL, vfb, vsc, z));
}

/* One channel's run of raw sums, fixed-point schemes (qk__fx16__avx512): at a block holding a
 * left shift that overflows (strict mode), the scalar form takes over and reports it. */
QK_TARGET_AVX512VNNI static qk_status qk__fx_run__avx512(const qk_epilogue *ep, size_t o,
                                                         const int32_t *src, size_t cnt, void *y) {
    const qk__fxc_avx512 z = qk__fxc__avx512(ep);
    const __m512i vbias = ep->bias ? _mm512_set1_epi32(ep->bias[o]) : _mm512_setzero_si512();
    const __m512i vm = _mm512_set1_epi32(ep->multiplier[o]), vs = _mm512_set1_epi32(ep->shift[o]);
    const int half_up = ep->scheme == QK_REQ_DOUBLE_HALF_UP;
    for (size_t i = 0; i < cnt; i += 16) {
        const __mmask16 m = cnt - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (cnt - i)) - 1u);
        __mmask16 ovf;
        const __m512i r = qk__fx16__avx512(
            _mm512_add_epi32(_mm512_maskz_loadu_epi32(m, src + i), vbias), vm, vs, half_up, &ovf);
        if ((ovf & m) && !ep->wrap) return qk_epilogue_tail__scalar(ep, o, 0, src, i, cnt, y);
        _mm_mask_storeu_epi8((char *)y + i, m, qk__fx_bytes16__avx512(r, &z));
    }
    return QK_OK;
}

/* One channel's run of raw sums, 16 lanes at a time and a masked tail (masked-off lanes are not
 * accessed). */
QK_TARGET_AVX512VNNI qk_status qk_epilogue_run__avx512(const qk_epilogue *ep, size_t o,
                                                       const int32_t *src, size_t cnt, void *y) {
    if (qk__epilogue_fx(ep)) return qk__fx_run__avx512(ep, o, src, cnt, y);
    if (!qk__epilogue_vec(ep)) return qk_epilogue_run__scalar(ep, o, src, cnt, y);
    const size_t osz = ep->out_type == QK_DT_S32 ? 4 : 1;
    const qk__outc_avx512 z = qk__outc__avx512(ep);
    const __m512i vbias = ep->bias ? _mm512_set1_epi32(ep->bias[o]) : _mm512_setzero_si512();
    const __m512 vfb = ep->float_bias ? _mm512_set1_ps(ep->float_bias[o]) : _mm512_setzero_ps();
    const __m512 vsc = ep->scale ? _mm512_set1_ps(ep->scale[o]) : _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= cnt; i += 16)
        qk__out16(ep, _mm512_loadu_si512((const void *)(src + i)), vbias, vfb, vsc, &z, 0xFFFF,
                  (char *)y + i * osz);
    if (i < cnt) {
        const __mmask16 m = (__mmask16)((1u << (cnt - i)) - 1u);
        qk__out16(ep, _mm512_maskz_loadu_epi32(m, src + i), vbias, vfb, vsc, &z, m,
                  (char *)y + i * osz);
    }
    return QK_OK;
}

/* Conv tiles: rows are channels o0.., columns cnt <= 16 pixels (pixsum per pixel). */
QK_TARGET_AVX512VNNI qk_status qk_conv_tile_out__avx512(const qk_epilogue *ep, const int32_t *wzp8,
                                                        const uint32_t *corr,
                                                        const uint32_t *pixsum, size_t o0,
                                                        size_t cnt, int32_t *tile, size_t mr,
                                                        char *y, size_t ystride) {
    if (!qk__epilogue_vec(ep))
        return qk_conv_tile_out__scalar(ep, wzp8, corr, pixsum, o0, cnt, tile, mr, y, ystride);
    const __m512i vps = pixsum ? _mm512_loadu_si512((const void *)pixsum) : _mm512_setzero_si512();
    const qk__outc_avx512 z = qk__outc__avx512(ep);
    const __mmask16 mask = (__mmask16)((1u << cnt) - 1u);
    for (size_t r = 0; r < mr; r++) {
        const size_t o = o0 + r;
        __m512i acc = _mm512_add_epi32(_mm512_loadu_si512((const void *)(tile + 16 * r)),
                                       _mm512_set1_epi32((int32_t)corr[o]));
        if (pixsum) acc = _mm512_sub_epi32(acc, _mm512_mullo_epi32(_mm512_set1_epi32(wzp8[o]), vps));
        qk__out16(ep, acc, ep->bias ? _mm512_set1_epi32(ep->bias[o]) : _mm512_setzero_si512(),
                  ep->float_bias ? _mm512_set1_ps(ep->float_bias[o]) : _mm512_setzero_ps(),
                  ep->scale ? _mm512_set1_ps(ep->scale[o]) : _mm512_setzero_ps(), &z, mask,
                  y + r * ystride);
    }
    return QK_OK;
}
#endif
