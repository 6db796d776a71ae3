/* simd_avx512.h -- small inline helpers shared by the AVX-512 micro-kernels: the output stage of
 * the 8-bit kernels (the conv tile output, the fused conv tiles, the linear tiles, the fused
 * depthwise plane) and the stores of the padded-image copies. Not installed, not public.
 *
 * The output stage does the operations of the scalar output stage (epilogue_scalar.c, qk__epi1) for the
 * fp32 scheme, lane for lane and in the same order: f = (float)v [+ float_bias]; f *= scale;
 * clamped to [act_min - zp, act_max - zp] (integral float bounds); RNE (cvtps2dq in the default
 * rounding mode) + zp, then narrowed to bytes. */
#ifndef QKERNELS_UKERNELS_SIMD_AVX512_H
#define QKERNELS_UKERNELS_SIMD_AVX512_H

#include "ukernels/ukernels.h"

#if QK_X86
#include <immintrin.h>

/* The per-call constants of the output stage. */
typedef struct {
    __m512 flo, fhi;
    __m512i vzp;
} qk__outc_avx512;

QK_TARGET_AVX512 static inline qk__outc_avx512 qk__outc__avx512(const qk_epilogue *ep) {
    qk__outc_avx512 z;
    z.flo = _mm512_set1_ps(qk__ep_flo(ep));
    z.fhi = _mm512_set1_ps(qk__ep_fhi(ep));
    z.vzp = _mm512_set1_epi32(ep->zero_point);
    return z;
}

/* 16 int32 results (bias in) -> 16 output bytes in a register: the fp32 output stage with the
 * float bias fb (when has_fb) and the scale sc of each lane. The bytes are narrowed in a
 * register and stored by the caller: the memory form of vpmovdb is slow on some cores (Zen 4);
 * the empty asm keeps the compiler from folding the two. */
QK_TARGET_AVX512 static QK_ALWAYS_INLINE __m128i qk__fp32_bytes16__avx512(
    __m512i v, int has_fb, __m512 fb, __m512 sc, const qk__outc_avx512 *z) {
    __m512 f = _mm512_cvtepi32_ps(v);
    if (has_fb) f = _mm512_add_ps(f, fb);
    f = _mm512_mul_ps(f, sc);
    f = _mm512_min_ps(_mm512_max_ps(f, z->flo), z->fhi);
    __m128i b = _mm512_cvtepi32_epi8(_mm512_add_epi32(_mm512_cvtps_epi32(f), z->vzp));
    __asm__("" : "+v"(b));
    return b;
}

/* 16 sums of channel o (every integer term in, the bias too) -> 16 output bytes (fp32 scheme). */
QK_TARGET_AVX512 static QK_ALWAYS_INLINE __m128i qk__channel_bytes16__avx512(
    const qk_epilogue *ep, size_t o, __m512i acc, const qk__outc_avx512 *z) {
    return qk__fp32_bytes16__avx512(acc, ep->float_bias != NULL,
                                    ep->float_bias ? _mm512_set1_ps(ep->float_bias[o]) : _mm512_setzero_ps(),
                                    _mm512_set1_ps(ep->scale[o]), z);
}

/* The fixed-point output stages QK_REQ_DOUBLE and QK_REQ_DOUBLE_HALF_UP of 16 int32 sums (bias
 * in) with a multiplier m and a shift sh per lane (core/fixedpoint.h, lane for lane):
 *   x = acc << max(sh, 0) in int32, wrapping; *ovf = the lanes where that overflowed (the
 *     strict scalar form refuses them, its wrap form computes on this same x);
 *   h = SRDHM(x, m): the scalar's (x m + nudge) / 2^31 truncated toward zero equals
 *     floor((x m + 2^30) / 2^31) for either sign of x m, whose low 32 bits are bits 31..62 of
 *     the int64 x m + 2^30 (vpmuldq on the even lanes, then on the odd lanes moved down);
 *     INT32_MAX where x = m = INT32_MIN;
 *   DOUBLE: RDBPOT(h, e), e = max(-sh, 0) <= 31: (h >> e) + (rem > (mask >> 1) + (h < 0));
 *   HALF_UP: (h >> e) + bit e - 1 of h where e > 0 (exact (h + 2^(e-1)) >> e, no overflow).
 * Returns R before the zero point. */
QK_TARGET_AVX512 static QK_ALWAYS_INLINE __m512i qk__fx16__avx512(__m512i acc, __m512i m,
                                                                __m512i sh, int half_up,
                                                                __mmask16 *ovf) {
    const __m512i zero = _mm512_setzero_si512(), one = _mm512_set1_epi32(1);
    const __m512i left = _mm512_max_epi32(sh, zero);
    const __m512i e = _mm512_sub_epi32(left, sh);
    const __m512i x = _mm512_sllv_epi32(acc, left);
    *ovf = _mm512_cmpneq_epi32_mask(_mm512_srav_epi32(x, left), acc);
    const __m512i n30 = _mm512_set1_epi64(INT64_C(1) << 30);
    const __m512i pe = _mm512_add_epi64(_mm512_mul_epi32(x, m), n30);
    const __m512i po = _mm512_add_epi64(
        _mm512_mul_epi32(_mm512_srli_epi64(x, 32), _mm512_srli_epi64(m, 32)), n30);
    __m512i h = _mm512_mask_blend_epi32((__mmask16)0xAAAA, _mm512_srli_epi64(pe, 31),
                                        _mm512_slli_epi64(po, 1));
    const __m512i imin = _mm512_set1_epi32(INT32_MIN);
    h = _mm512_mask_mov_epi32(h, _mm512_cmpeq_epi32_mask(x, imin) & _mm512_cmpeq_epi32_mask(m, imin),
                              _mm512_set1_epi32(INT32_MAX));
    const __m512i q = _mm512_srav_epi32(h, e);
    if (half_up) {
        const __m512i bit = _mm512_and_si512(_mm512_srav_epi32(h, _mm512_sub_epi32(e, one)), one);
        return _mm512_mask_add_epi32(q, _mm512_cmpgt_epi32_mask(e, zero), q, bit);
    }
    const __m512i mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, e), one);
    const __m512i thr = _mm512_add_epi32(_mm512_srai_epi32(mask, 1), _mm512_srli_epi32(h, 31));
    return _mm512_mask_add_epi32(q, _mm512_cmpgt_epi32_mask(_mm512_and_si512(h, mask), thr), q,
                                 one);
}

/* The clamp of the fixed-point stages: r clamped to [act_min - zp, act_max - zp] then + zp, the
 * scalar clamp(r + zp, act_min, act_max) without its int64 sum (the bounds are small: the
 * requantizing schemes have 8-bit outputs, checked by qk__epilogue_check). */
typedef struct {
    __m512i lo, hi, vzp;
} qk__fxc_avx512;

QK_TARGET_AVX512 static inline qk__fxc_avx512 qk__fxc__avx512(const qk_epilogue *ep) {
    qk__fxc_avx512 z;
    z.lo = _mm512_set1_epi32(ep->act_min - ep->zero_point);
    z.hi = _mm512_set1_epi32(ep->act_max - ep->zero_point);
    z.vzp = _mm512_set1_epi32(ep->zero_point);
    return z;
}

/* R of qk__fx16__avx512 -> 16 output bytes in a register (narrowed there: see above). */
QK_TARGET_AVX512 static QK_ALWAYS_INLINE __m128i qk__fx_bytes16__avx512(__m512i r,
                                                                      const qk__fxc_avx512 *z) {
    __m128i b = _mm512_cvtepi32_epi8(
        _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(r, z->lo), z->hi), z->vzp));
    __asm__("" : "+v"(b));
    return b;
}

/* The padded-image copies (im2col_u8_avx512*.c): a 64-byte store at d + a, masked where it would
 * reach past total bytes. */
QK_TARGET_AVX512 static inline void qk__store64(uint8_t *d, size_t total, size_t a, __m512i v) {
    if (a + 64 <= total)
        _mm512_storeu_si512((void *)(d + a), v);
    else
        _mm512_mask_storeu_epi8(d + a, ((__mmask64)1 << (total - a)) - 1, v);
}

/* The lanes l < width (at most 64) of a block starting at padded column c0 that hold input
 * columns (pad_left <= c0 + l < pad_left + n), as a bit mask. */
static inline uint64_t qk__pad_lanes(size_t c0, size_t pad_left, size_t n, size_t width) {
    const size_t lo = c0 < pad_left ? pad_left - c0 : 0;
    const size_t hi = pad_left + n > c0 ? pad_left + n - c0 : 0;
    if (hi <= lo || lo >= width) return 0;
    const size_t h = hi < width ? hi : width;
    return (h == 64 ? ~(uint64_t)0 : ((uint64_t)1 << h) - 1) & ~(((uint64_t)1 << lo) - 1);
}
#endif

#endif /* QKERNELS_UKERNELS_SIMD_AVX512_H */
