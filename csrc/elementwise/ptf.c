/* ptf.c -- PTF (power-of-two factor) quantization: float32 -> uint8 with one scale, one zero
 * point and a per-channel power-of-two exponent along the last axis (SPEC section 6).
 *
 * The divisor of each channel is one of eight power-of-two multiples of the scale, so
 * fl(x / d) is one float32 division; the clamp (integer bounds) and RNE are exact. The quantizer
 * has an AVX2 loop (8 lanes, the divisor picked by a lane permute) and its scalar twin; both give
 * the same bits (QKERNELS_SIMD=scalar forces the scalar one).
 */
#include "core/core.h"

#if QK_X86
#include <immintrin.h>
#endif

static qk_status qk__ptf_check(size_t channels, float scale, const int32_t *alpha,
                               int32_t zero_point) {
    if (!qk__scale_ok(scale)) return QK_ERR_SCALE;
    if (zero_point < 0 || zero_point > 255) return QK_ERR_ZERO_POINT;
    if (channels > 0 && alpha == NULL) return QK_ERR_ARG;
    /* Every alpha in [0, 7] iff the OR of them all has no bit above the low three (a negative
     * one sets the sign bit): a reduction the compiler vectorizes. The ufunc calls this once a
     * row; a loop with a return inside was most of ptf_quantize's time. */
    _Static_assert(QK_PTF_MAX_ALPHA == 7, "the OR test needs MAX_ALPHA + 1 to be a power of two");
    uint32_t any = 0;
    for (size_t c = 0; c < channels; c++) any |= (uint32_t)alpha[c];
    if (any & ~(uint32_t)QK_PTF_MAX_ALPHA) return QK_ERR_SHIFT;
    /* the largest step must stay finite (scale is finite and > 0, so the smaller ones are); the
     * largest alpha is looked for only when scale * 2^7 is not */
    if (qk__scale_ok(ldexpf(scale, QK_PTF_MAX_ALPHA))) return QK_OK;
    int32_t amax = 0;
    for (size_t c = 0; c < channels; c++) amax = alpha[c] > amax ? alpha[c] : amax;
    if (!qk__scale_ok(ldexpf(scale, amax))) return QK_ERR_SCALE;
    return QK_OK;
}

/* The checks of both PTF entry points (in: tokens x channels, out: the same count): the
 * parameters, then the arrays; *run = 0 when the call has nothing to do. */
static qk_status qk__ptf_args(size_t tokens, size_t channels, float scale, const int32_t *alpha,
                              int32_t zero_point, const void *in, const void *out, int *run) {
    *run = 0;
    const qk_status st = qk__ptf_check(channels, scale, alpha, zero_point);
    if (st != QK_OK || tokens == 0 || channels == 0) return st;
    if (in == NULL || out == NULL) return QK_ERR_ARG;
    size_t bytes; /* tokens x channels floats must be addressable */
    if (!qk__sz_mul4(tokens, channels, sizeof(float), 1, &bytes)) return QK_ERR_ARG;
    *run = 1;
    return QK_OK;
}

#if QK_X86
_Static_assert(QK_PTF_MAX_ALPHA == 7, "the AVX2 loop holds the 8 divisors in one register");

/* One row, 8 channels at a time: the scalar loop's operations lane by lane (float32 division,
 * clamp to the integer bounds, RNE by cvtps2dq in the default rounding mode). Stops before the
 * first block that holds a NaN and returns the channels done; the scalar loop finishes the row
 * (and reports the NaN). */
QK_TARGET_AVX2 static size_t qk__ptf_quantize_row_avx2(const float *x, size_t n, const float *div,
                                                      const int32_t *alpha, int32_t zp,
                                                      uint8_t *q) {
    const __m256 dv = _mm256_loadu_ps(div); /* QK_PTF_MAX_ALPHA + 1 == 8 divisors */
    const __m256 lo = _mm256_set1_ps((float)-zp), hi = _mm256_set1_ps((float)(255 - zp));
    const __m256i vzp = _mm256_set1_epi32(zp);
    size_t c = 0;
    for (; c + 8 <= n; c += 8) {
        const __m256 v = _mm256_loadu_ps(x + c);
        if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q))) return c;
        const __m256 d = _mm256_permutevar8x32_ps(dv, _mm256_loadu_si256((const __m256i *)(alpha + c)));
        const __m256 r = _mm256_min_ps(_mm256_max_ps(_mm256_div_ps(v, d), lo), hi);
        const __m256i iv = _mm256_add_epi32(_mm256_cvtps_epi32(r), vzp);
        const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(iv), _mm256_extracti128_si256(iv, 1));
        _mm_storel_epi64((__m128i *)(q + c), _mm_packus_epi16(w, w));
    }
    return c;
}
#endif

qk_status qk_ptf_quantize_f32_u8(const float *x, size_t tokens, size_t channels, float scale,
                                 const int32_t *alpha, int32_t zero_point, uint8_t *q,
                                 size_t *bad_index) {
    int run;
    const qk_status st = qk__ptf_args(tokens, channels, scale, alpha, zero_point, x, q, &run);
    if (st != QK_OK || !run) return st;
    /* The eight possible divisors, exact powers of two times the scale. */
    float div[QK_PTF_MAX_ALPHA + 1];
    for (int a = 0; a <= QK_PTF_MAX_ALPHA; a++) div[a] = ldexpf(scale, a);
    const float lo = (float)-zero_point, hi = (float)(255 - zero_point);
    const float magic = 0x1.8p23f; /* (t + magic) - magic is RNE(t) for |t| <= 2^22 */
    for (size_t t = 0; t < tokens; t++) {
        const float *xr = x + t * channels;
        uint8_t *qr = q + t * channels;
        size_t c0 = 0;
#if QK_X86
        if (qk__level() >= QK_LEVEL_AVX2) c0 = qk__ptf_quantize_row_avx2(xr, channels, div, alpha, zero_point, qr);
#endif
        for (size_t c = c0; c < channels; c++) {
            const float v = xr[c];
            if (v != v) {
                if (bad_index) *bad_index = t * channels + c;
                return QK_ERR_NAN;
            }
            float r = v / div[alpha[c]];
            /* clamping before rounding is exact: the bounds are integers */
            r = r < lo ? lo : (r > hi ? hi : r);
            r = (r + magic) - magic;
            qr[c] = (uint8_t)((int32_t)r + zero_point);
        }
    }
    return QK_OK;
}

qk_status qk_ptf_dequantize_u8_f32(const uint8_t *q, size_t tokens, size_t channels, float scale,
                                   const int32_t *alpha, int32_t zero_point, float *y) {
    int run;
    const qk_status st = qk__ptf_args(tokens, channels, scale, alpha, zero_point, q, y, &run);
    if (st != QK_OK || !run) return st;
    for (size_t t = 0; t < tokens; t++) {
        for (size_t c = 0; c < channels; c++) {
            const float d = ldexpf(scale, alpha[c]);
            y[t * channels + c] = d * (float)((int32_t)q[t * channels + c] - zero_point);
        }
    }
    return QK_OK;
}
