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
