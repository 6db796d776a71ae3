/* requantize.c -- int32 accumulator -> narrow integer, and the fixed-point helpers.
 *
 * Schemes (SPEC section 4): double_round (gemmlowp / TFLite reference / CMSIS-NN), single_round
 * (TFLITE_SINGLE_ROUNDING, ruy), fp32 (FBGEMM, QNNPACK, MLAS), and plain shifts with a chosen
 * rounding (power-of-two hardware). Each has a scalar loop; u8/s8 outputs have AVX2 loops too.
 */
#include "internal.h"

#if QK_X86
#include <immintrin.h>
#endif

/* ---------------------------------------------------------------------------------------- */
/* Fixed-point primitives (gemmlowp fixedpoint.h semantics)                                  */
/* ---------------------------------------------------------------------------------------- */
int32_t qk_srdhm(int32_t a, int32_t b) {
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    const int64_t ab = (int64_t)a * b;
    const int64_t nudge = ab >= 0 ? (INT64_C(1) << 30) : (1 - (INT64_C(1) << 30));
    return (int32_t)((ab + nudge) / (INT64_C(1) << 31)); /* C division truncates toward zero */
}

int32_t qk_rdbpot(int32_t x, int32_t exponent) {
    if (exponent <= 0) return x;
    if (exponent > 31) exponent = 31;
    const int32_t mask = (int32_t)((UINT32_C(1) << exponent) - 1u);
    const int32_t rem = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0);
    return (x >> exponent) + (rem > threshold);
}

int32_t qk_mul_by_quantized_multiplier(int32_t acc, int32_t multiplier, int32_t shift) {
    const int32_t left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
    /* TFLite computes acc * (1 << left) in int32; do the same two's-complement wrap, defined. */
    const int32_t shifted = (int32_t)((uint32_t)acc << left);
    return qk_rdbpot(qk_srdhm(shifted, multiplier), right);
}

qk_status qk_quantize_multiplier(double m, int32_t *multiplier, int32_t *shift) {
    if (multiplier == NULL || shift == NULL) return QK_ERR_ARG;
    if (!isfinite(m) || m < 0.0) return QK_ERR_MULTIPLIER;
    if (m == 0.0) {
        *multiplier = 0;
        *shift = 0;
        return QK_OK;
    }
    int e = 0;
    const double q = frexp(m, &e);                 /* m = q * 2^e, q in [0.5, 1) */
    int64_t q_fixed = (int64_t)round(q * 2147483648.0); /* RHAZ of an exact product */
    if (q_fixed == (INT64_C(1) << 31)) {
        q_fixed /= 2;
        e += 1;
    }
    if (e < -31) {
        e = 0;
        q_fixed = 0;
    }
    if (e > 30) return QK_ERR_SHIFT;
    *multiplier = (int32_t)q_fixed;
    *shift = e;
    return QK_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Per-element cores                                                                          */
/* ---------------------------------------------------------------------------------------- */
/* qk__req_double, qk__req_single, qk__shift_round: in internal.h (shared with the GEMM epilogue). */

/* ---------------------------------------------------------------------------------------- */
/* AVX2 loops for u8 / s8 outputs                                                             */
/* ---------------------------------------------------------------------------------------- */
#if QK_X86
/* Packs four vectors of int32 (already inside [qmin, qmax] of an 8-bit type) into 32 bytes. */
QK_TARGET_AVX2 static inline void qk__store32_8bit(void *y, __m256i a, __m256i b, __m256i c,
                                                   __m256i d, int is_signed) {
    const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    __m256i r = is_signed ? _mm256_packs_epi16(ab, cd) : _mm256_packus_epi16(ab, cd);
    r = _mm256_permutevar8x32_epi32(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)y, r);
}

/* SRDHM(x, m) for m >= 0 (so the INT32_MIN * INT32_MIN case cannot happen), on |x| with unsigned
 * 32x32->64 multiplies, then the sign put back:
 *   x >= 0:  trunc((x m + 2^30) / 2^31)       = (|x| m + 2^30) >> 31
 *   x <  0:  trunc((x m + 1 - 2^30) / 2^31)   = -((|x| m + 2^30 - 1) >> 31)
 * |x| m + 2^30 < 2^62 and the quotient is at most 2^31 - 1, so every step is exact. */
QK_TARGET_AVX2 static inline __m256i qk__srdhm_avx2(__m256i x, __m256i m) {
    const __m256i ax = _mm256_abs_epi32(x); /* INT32_MIN -> 0x80000000, i.e. 2^31 unsigned */
    const __m256i nudge = _mm256_add_epi32(_mm256_set1_epi32(1 << 30), _mm256_srai_epi32(x, 31));
    const __m256i lo = _mm256_set1_epi64x(INT64_C(0xFFFFFFFF));
    __m256i even = _mm256_add_epi64(_mm256_mul_epu32(ax, m), _mm256_and_si256(nudge, lo));
    even = _mm256_srli_epi64(even, 31);                      /* result in the low dword */
    __m256i odd = _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(ax, 32), m),
                                   _mm256_srli_epi64(nudge, 32));
    odd = _mm256_andnot_si256(lo, _mm256_slli_epi64(odd, 1)); /* (v >> 31) << 32 */
    return _mm256_sign_epi32(_mm256_blend_epi32(even, odd, 0xAA), x);
}

QK_TARGET_AVX2 static inline __m256i qk__rdbpot_avx2(__m256i x, int e) {
    const __m256i mask = _mm256_set1_epi32((int32_t)((UINT32_C(1) << e) - 1u));
    const __m256i rem = _mm256_and_si256(x, mask);
    const __m256i neg = _mm256_cmpgt_epi32(_mm256_setzero_si256(), x); /* -1 where x < 0 */
    const __m256i th = _mm256_sub_epi32(_mm256_srai_epi32(mask, 1), neg);
    const __m256i up = _mm256_cmpgt_epi32(rem, th);                     /* -1 where rounding up */
    return _mm256_sub_epi32(_mm256_sra_epi32(x, _mm_cvtsi32_si128(e)), up);
}

/* (x * m + 2^(t-1)) >> t for t in [31, 62]: bias by 2^62 so that a logical shift is exact. */
QK_TARGET_AVX2 static inline __m256i qk__single_half(__m256i prod, __m256i round_bias, int t,
                                                     __m256i unbias) {
    const __m256i v = _mm256_add_epi64(prod, round_bias);
    return _mm256_sub_epi32(_mm256_srl_epi64(v, _mm_cvtsi32_si128(t)), unbias);
}

/* scheme: 0 double, 1 single (shift <= 0 only), 2 fp32, 3.. shift roundings (3 + rounding).
 * Returns elements done; the scalar loop finishes (and reports overflow). */
QK_TARGET_AVX2 static size_t qk__requantize_avx2(const int32_t *acc, size_t n, int scheme,
                                                 int32_t m, int32_t shift, float scale,
                                                 int32_t zp, int32_t qmin, int32_t qmax,
                                                 void *yv, int is_signed) {
    uint8_t *y = (uint8_t *)yv;
    const __m256i vzp = _mm256_set1_epi32(zp), vmin = _mm256_set1_epi32(qmin),
                  vmax = _mm256_set1_epi32(qmax), vm = _mm256_set1_epi32(m);
    const __m256 vs = _mm256_set1_ps(scale);
    const __m256 flo = _mm256_set1_ps((float)(qmin - zp)), fhi = _mm256_set1_ps((float)(qmax - zp));
    const int right = shift > 0 ? 0 : -shift;
    const int t = 31 - shift;
    /* single: bias 2^62 + 2^(t-1); after >> t remove 2^(62 - t) (mod 2^32 in the low lane). */
    const __m256i sbias = _mm256_set1_epi64x((INT64_C(1) << 62) + (INT64_C(1) << (t - 1 < 0 ? 0 : t - 1)));
    const __m256i sunbias = _mm256_set1_epi64x((int64_t)(uint32_t)(UINT64_C(1) << (62 - (t > 62 ? 62 : t))));
    const int rnd = scheme - 3;
    const __m256i one = _mm256_set1_epi32(1);
    const __m256i lowmask = _mm256_set1_epi32(shift >= 1 && shift <= 31 ? (int32_t)((UINT32_C(1) << shift) - 1u) : 0);
    const __m256i half = _mm256_set1_epi32(shift >= 1 && shift <= 31 ? (int32_t)(UINT32_C(1) << (shift - 1)) : 0);
    const __m128i cnt = _mm_cvtsi32_si128(shift > 0 ? shift : 0);
    const __m128i cnt1 = _mm_cvtsi32_si128(shift > 0 ? shift - 1 : 0);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i r[4];
        for (int j = 0; j < 4; j++) {
            const __m256i x = _mm256_loadu_si256((const __m256i *)(acc + i + 8 * j));
            __m256i v;
            if (scheme == 0) {
                v = qk__rdbpot_avx2(qk__srdhm_avx2(x, vm), right);
            } else if (scheme == 1) {
                const __m256i even = qk__single_half(_mm256_mul_epi32(x, vm), sbias, t, sunbias);
                const __m256i odd = qk__single_half(
                    _mm256_mul_epi32(_mm256_srli_epi64(x, 32), vm), sbias, t, sunbias);
                v = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
            } else if (scheme == 2) {
                __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(x), vs);
                f = _mm256_min_ps(_mm256_max_ps(f, flo), fhi);
                v = _mm256_cvtps_epi32(f); /* zp added below */
            } else {
                const __m256i q = _mm256_sra_epi32(x, cnt);
                if (rnd == 0) {        /* half_up: floor + bit (shift-1) */
                    v = _mm256_add_epi32(q, _mm256_and_si256(_mm256_sra_epi32(x, cnt1), one));
                } else if (rnd == 3) { /* floor */
                    v = q;
                } else {
                    const __m256i rem = _mm256_and_si256(x, lowmask);
                    const __m256i gt = _mm256_cmpgt_epi32(rem, half);
                    const __m256i eq = _mm256_cmpeq_epi32(rem, half);
                    __m256i tie_up;
                    if (rnd == 1) { /* half_even: at a tie, round up when q is odd */
                        tie_up = _mm256_cmpeq_epi32(_mm256_and_si256(q, one), one);
                    } else {        /* half_away: at a tie, round up when x >= 0 */
                        tie_up = _mm256_cmpgt_epi32(x, _mm256_set1_epi32(-1));
                    }
                    const __m256i up = _mm256_or_si256(gt, _mm256_and_si256(eq, tie_up));
                    v = _mm256_sub_epi32(q, up);
                }
            }
            v = _mm256_add_epi32(v, vzp);
            r[j] = _mm256_min_epi32(_mm256_max_epi32(v, vmin), vmax);
        }
        qk__store32_8bit(y + i, r[0], r[1], r[2], r[3], is_signed);
    }
    return i;
}
/* AVX-512 twins of the loop above for u8 / s8 outputs, 64 accumulators an iteration. The same
 * arithmetic on 16 lanes; AVX-512 has a 64-bit arithmetic shift, so single rounding is direct. */
QK_TARGET_AVX512 static inline __m512i qk__srdhm_avx512(__m512i x, __m512i m) {
    /* SRDHM for m >= 0 on |x| (see qk__srdhm_avx2): (|x| m + 2^30 - [x < 0]) >> 31, sign back */
    const __mmask16 neg = _mm512_cmplt_epi32_mask(x, _mm512_setzero_si512());
    const __m512i ax = _mm512_abs_epi32(x);
    const __m512i nudge = _mm512_mask_sub_epi32(_mm512_set1_epi32(1 << 30), neg,
                                                _mm512_set1_epi32(1 << 30), _mm512_set1_epi32(1));
    const __m512i lo = _mm512_set1_epi64(INT64_C(0xFFFFFFFF));
    __m512i even = _mm512_add_epi64(_mm512_mul_epu32(ax, m), _mm512_and_si512(nudge, lo));
    even = _mm512_srli_epi64(even, 31);
    __m512i odd = _mm512_add_epi64(_mm512_mul_epu32(_mm512_srli_epi64(ax, 32), m),
                                   _mm512_srli_epi64(nudge, 32));
    odd = _mm512_andnot_si512(lo, _mm512_slli_epi64(odd, 1));
    const __m512i r = _mm512_mask_blend_epi32(0xAAAA, even, odd);
    return _mm512_mask_sub_epi32(r, neg, _mm512_setzero_si512(), r);
}

QK_TARGET_AVX512 static size_t qk__requantize_avx512(const int32_t *acc, size_t n, int scheme,
                                                     int32_t m, int32_t shift, float scale,
                                                     int32_t zp, int32_t qmin, int32_t qmax,
                                                     void *yv, int is_signed) {
    uint8_t *y = (uint8_t *)yv;
    const __m512i vzp = _mm512_set1_epi32(zp), vmin = _mm512_set1_epi32(qmin),
                  vmax = _mm512_set1_epi32(qmax), vm = _mm512_set1_epi32(m);
    const __m512 vs = _mm512_set1_ps(scale);
    const __m512 flo = _mm512_set1_ps((float)(qmin - zp)), fhi = _mm512_set1_ps((float)(qmax - zp));
    const int right = shift > 0 ? 0 : -shift;
    const int t = 31 - shift;
    const __m512i sround = _mm512_set1_epi64(INT64_C(1) << (t - 1 < 0 ? 0 : t - 1));
    const __m128i tcnt = _mm_cvtsi32_si128(t < 0 ? 0 : t);
    const __m512i rmask = _mm512_set1_epi32((int32_t)((UINT32_C(1) << right) - 1u));
    const __m128i rcnt = _mm_cvtsi32_si128(right);
    const int rnd = scheme - 3;
    const __m512i one = _mm512_set1_epi32(1);
    const int sh = shift >= 1 && shift <= 31 ? shift : 1;
    const __m512i lowmask = _mm512_set1_epi32((int32_t)((UINT32_C(1) << sh) - 1u));
    const __m512i half = _mm512_set1_epi32((int32_t)(UINT32_C(1) << (sh - 1)));
    const __m128i cnt = _mm_cvtsi32_si128(sh), cnt1 = _mm_cvtsi32_si128(sh - 1);
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        for (int j = 0; j < 4; j++) {
            const __m512i x = _mm512_loadu_si512((const void *)(acc + i + 16 * j));
            __m512i v;
            if (scheme == 0) { /* double_round: RDBPOT(SRDHM(x, m), right) */
                const __m512i s = qk__srdhm_avx512(x, vm);
                const __m512i rem = _mm512_and_si512(s, rmask);
                const __mmask16 neg = _mm512_cmplt_epi32_mask(s, _mm512_setzero_si512());
                const __m512i th = _mm512_mask_add_epi32(_mm512_srai_epi32(rmask, 1), neg,
                                                         _mm512_srai_epi32(rmask, 1), one);
                const __mmask16 up = _mm512_cmpgt_epi32_mask(rem, th);
                v = _mm512_mask_add_epi32(_mm512_sra_epi32(s, rcnt), up, _mm512_sra_epi32(s, rcnt), one);
            } else if (scheme == 1) { /* single_round: (x m + 2^(t-1)) >> t, exact in int64 */
                const __m512i even = _mm512_sra_epi64(_mm512_add_epi64(_mm512_mul_epi32(x, vm), sround), tcnt);
                const __m512i odd = _mm512_sra_epi64(
                    _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(x, 32), vm), sround), tcnt);
                v = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
            } else if (scheme == 2) { /* fp32 */
                __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(x), vs);
                f = _mm512_min_ps(_mm512_max_ps(f, flo), fhi);
                v = _mm512_cvtps_epi32(f);
            } else { /* shift roundings */
                const __m512i q = _mm512_sra_epi32(x, cnt);
                if (rnd == 0) {
                    v = _mm512_add_epi32(q, _mm512_and_si512(_mm512_sra_epi32(x, cnt1), one));
                } else if (rnd == 3) {
                    v = q;
                } else {
                    const __m512i rem = _mm512_and_si512(x, lowmask);
                    const __mmask16 gt = _mm512_cmpgt_epi32_mask(rem, half);
                    const __mmask16 eq = _mm512_cmpeq_epi32_mask(rem, half);
                    const __mmask16 tie_up = rnd == 1
                        ? _mm512_cmpeq_epi32_mask(_mm512_and_si512(q, one), one)
                        : _mm512_cmpge_epi32_mask(x, _mm512_setzero_si512());
                    v = _mm512_mask_add_epi32(q, gt | (eq & tie_up), q, one);
                }
            }
            v = _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(v, vzp), vmin), vmax);
            const __m128i b = is_signed ? _mm512_cvtsepi32_epi8(v) : _mm512_cvtusepi32_epi8(v);
            _mm_storeu_si128((__m128i *)(y + i + 16 * j), b);
        }
    }
    return i;
}
#endif

/* ---------------------------------------------------------------------------------------- */
/* Public entry points                                                                        */
/* ---------------------------------------------------------------------------------------- */
#if QK_X86
#define QK__REQ_SIMD_OK(OUT) (qk__use_avx2() && (QK__IS8_##OUT))
#else
#define QK__REQ_SIMD_OK(OUT) 0
#endif
#define QK__IS8_u8 1
#define QK__IS8_s8 1
#define QK__IS8_u16 0
#define QK__IS8_s16 0
#define QK__IS8_s32 0
#define QK__SIGNED_u8 0
#define QK__SIGNED_s8 1
#define QK__SIGNED_u16 0
#define QK__SIGNED_s16 1
#define QK__SIGNED_s32 1

#if QK_X86
#define QK__REQ_AVX2(OUT, SCHEME, M, SHIFT, SCALE)                                              \
    if (QK__REQ_SIMD_OK(OUT) && qk__use_avx512())                                               \
        done = qk__requantize_avx512(acc, n, SCHEME, M, SHIFT, SCALE, zero_point, qmin, qmax,   \
                                     y, QK__SIGNED_##OUT);                                      \
    else if (QK__REQ_SIMD_OK(OUT))                                                              \
        done = qk__requantize_avx2(acc, n, SCHEME, M, SHIFT, SCALE, zero_point, qmin, qmax, y,  \
                                   QK__SIGNED_##OUT);
#else
#define QK__REQ_AVX2(OUT, SCHEME, M, SHIFT, SCALE)
#endif

#define QK__REQUANTIZE_PUBLIC(OUT, OUTT, TMIN, TMAX)                                            \
    qk_status qk_requantize_s32_##OUT##_double(const int32_t *acc, size_t n, int32_t multiplier, \
                                               int32_t shift, int32_t zero_point, int32_t qmin,  \
                                               int32_t qmax, OUTT *y, size_t *bad_index) {       \
        if (shift < -31 || shift > 30) return QK_ERR_SHIFT;                                     \
        if (multiplier < 0) return QK_ERR_MULTIPLIER;                                           \
        qk_status st = qk__check_range(zero_point, qmin, qmax, TMIN, TMAX);                     \
        if (st != QK_OK) return st;                                                             \
        if (n > 0 && (acc == NULL || y == NULL)) return QK_ERR_ARG;                             \
        size_t done = 0;                                                                        \
        if (shift <= 0) {                                                                       \
            QK__REQ_AVX2(OUT, 0, multiplier, shift, 1.0f)                                       \
        }                                                                                       \
        for (size_t i = done; i < n; i++) {                                                     \
            int32_t r;                                                                          \
            if (!qk__req_double(acc[i], multiplier, shift, &r)) {                               \
                if (bad_index) *bad_index = i;                                                  \
                return QK_ERR_OVERFLOW;                                                         \
            }                                                                                   \
            y[i] = (OUTT)qk__clamp64((int64_t)r + zero_point, qmin, qmax);                      \
        }                                                                                       \
        return QK_OK;                                                                           \
    }                                                                                           \
    qk_status qk_requantize_s32_##OUT##_single(const int32_t *acc, size_t n, int32_t multiplier, \
                                               int32_t shift, int32_t zero_point, int32_t qmin,  \
                                               int32_t qmax, OUTT *y) {                          \
        if (shift < -31 || shift > 30) return QK_ERR_SHIFT;                                     \
        if (multiplier < 0) return QK_ERR_MULTIPLIER;                                           \
        qk_status st = qk__check_range(zero_point, qmin, qmax, TMIN, TMAX);                     \
        if (st != QK_OK) return st;                                                             \
        if (n > 0 && (acc == NULL || y == NULL)) return QK_ERR_ARG;                             \
        size_t done = 0;                                                                        \
        if (shift <= 0) {                                                                       \
            QK__REQ_AVX2(OUT, 1, multiplier, shift, 1.0f)                                       \
        }                                                                                       \
        for (size_t i = done; i < n; i++)                                                       \
            y[i] = (OUTT)qk__clamp64(qk__req_single(acc[i], multiplier, shift) + zero_point,     \
                                     qmin, qmax);                                               \
        return QK_OK;                                                                           \
    }                                                                                           \
    qk_status qk_requantize_s32_##OUT##_fp32(const int32_t *acc, size_t n, float scale,          \
                                             int32_t zero_point, int32_t qmin, int32_t qmax,     \
                                             OUTT *y) {                                          \
        if (!qk__scale_ok(scale)) return QK_ERR_SCALE;                                          \
        qk_status st = qk__check_range(zero_point, qmin, qmax, TMIN, TMAX);                     \
        if (st != QK_OK) return st;                                                             \
        if (n > 0 && (acc == NULL || y == NULL)) return QK_ERR_ARG;                             \
        size_t done = 0;                                                                        \
        QK__REQ_AVX2(OUT, 2, 0, 0, scale)                                                       \
        const double lo = (double)qmin - zero_point, hi = (double)qmax - zero_point;            \
        for (size_t i = done; i < n; i++) {                                                     \
            const float f = (float)acc[i] * scale;                                              \
            y[i] = (OUTT)((int64_t)rint(qk__clampd((double)f, lo, hi)) + zero_point);           \
        }                                                                                       \
        return QK_OK;                                                                           \
    }                                                                                           \
    QK__REQUANTIZE_SHIFT(OUT, OUTT, TMIN, TMAX, half_up, 0)                                     \
    QK__REQUANTIZE_SHIFT(OUT, OUTT, TMIN, TMAX, half_even, 1)                                   \
    QK__REQUANTIZE_SHIFT(OUT, OUTT, TMIN, TMAX, half_away, 2)                                   \
    QK__REQUANTIZE_SHIFT(OUT, OUTT, TMIN, TMAX, floor, 3)

#define QK__REQUANTIZE_SHIFT(OUT, OUTT, TMIN, TMAX, RND, RID)                                   \
    qk_status qk_requantize_s32_##OUT##_shift_##RND(const int32_t *acc, size_t n, int32_t shift, \
                                                    int32_t zero_point, int32_t qmin,           \
                                                    int32_t qmax, OUTT *y) {                    \
        if (shift < -31 || shift > 31) return QK_ERR_SHIFT;                                     \
        qk_status st = qk__check_range(zero_point, qmin, qmax, TMIN, TMAX);                     \
        if (st != QK_OK) return st;                                                             \
        if (n > 0 && (acc == NULL || y == NULL)) return QK_ERR_ARG;                             \
        size_t done = 0;                                                                        \
        if (shift >= 1) {                                                                       \
            QK__REQ_AVX2(OUT, 3 + RID, 0, shift, 1.0f)                                          \
        }                                                                                       \
        for (size_t i = done; i < n; i++)                                                       \
            y[i] = (OUTT)qk__clamp64(qk__shift_round(acc[i], shift, RID) + zero_point, qmin,    \
                                     qmax);                                                     \
        return QK_OK;                                                                           \
    }

QK__FOR_EACH_OUT(QK__REQUANTIZE_PUBLIC)
