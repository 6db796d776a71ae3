/* requantize.c -- int32 accumulator -> narrow integer, and the fixed-point helpers.
 *
 * Schemes (SPEC section 4): double_round (gemmlowp / TFLite reference / CMSIS-NN), single_round
 * (TFLITE_SINGLE_ROUNDING, ruy), fp32 (FBGEMM, QNNPACK, MLAS), and plain shifts with a chosen
 * rounding (power-of-two hardware). Each has a scalar loop; u8/s8 outputs have AVX2 and AVX-512
 * loops too, which give the same bits.
 */
#include "core/core.h"

#if QK_X86
#include <immintrin.h>
#endif

/* ---------------------------------------------------------------------------------------- */
/* Fixed-point primitives (core/fixedpoint.h; gemmlowp fixedpoint.h semantics)              */
/* ---------------------------------------------------------------------------------------- */
int32_t qk_srdhm(int32_t a, int32_t b) { return qk__srdhm(a, b); }

int32_t qk_rdbpot(int32_t x, int32_t exponent) { return qk__rdbpot(x, exponent); }

int32_t qk_mul_by_quantized_multiplier(int32_t acc, int32_t multiplier, int32_t shift) {
    return qk__mul_by_quantized_multiplier(acc, multiplier, shift);
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
    if (e > 31) return QK_ERR_SHIFT; /* m >= 2^31 - 2^-1 */
    *multiplier = (int32_t)q_fixed;
    *shift = e;
    return QK_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* AVX2 loops for u8 / s8 outputs                                                             */
/* ---------------------------------------------------------------------------------------- */
#if QK_X86
/* 8-bit output of four int32 vectors: saturate to int16, add the zero point with int16
 * saturation, saturate to 8 bits, clamp to [qmin, qmax]. Exact for any int32 values: once
 * |v| > 2^15 the sum is beyond the 8-bit range either way, and the saturations and the final
 * clamp nest. */
QK_TARGET_AVX2 static QK_ALWAYS_INLINE void qk__narrow32_avx2(uint8_t *y, __m256i a, __m256i b, __m256i c,
                                                    __m256i d, __m256i zp16, __m256i lo8,
                                                    __m256i hi8, int is_signed, int clamp) {
    const __m256i ab = _mm256_adds_epi16(_mm256_packs_epi32(a, b), zp16);
    const __m256i cd = _mm256_adds_epi16(_mm256_packs_epi32(c, d), zp16);
    __m256i r = is_signed ? _mm256_packs_epi16(ab, cd) : _mm256_packus_epi16(ab, cd);
    if (clamp) /* qmin / qmax narrower than the type */
        r = is_signed ? _mm256_min_epi8(_mm256_max_epi8(r, lo8), hi8)
                      : _mm256_min_epu8(_mm256_max_epu8(r, lo8), hi8);
    r = _mm256_permutevar8x32_epi32(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)y, r);
}

/* The same for 64 outputs: the packs work in 128-bit lanes, one permute puts the dwords back. */
QK_TARGET_AVX512 static QK_ALWAYS_INLINE void qk__narrow64_avx512(uint8_t *y, __m512i a, __m512i b,
                                                        __m512i c, __m512i d, __m512i zp16,
                                                        __m512i lo8, __m512i hi8, int is_signed,
                                                        int clamp) {
    const __m512i ab = _mm512_adds_epi16(_mm512_packs_epi32(a, b), zp16);
    const __m512i cd = _mm512_adds_epi16(_mm512_packs_epi32(c, d), zp16);
    __m512i r = is_signed ? _mm512_packs_epi16(ab, cd) : _mm512_packus_epi16(ab, cd);
    if (clamp)
        r = is_signed ? _mm512_min_epi8(_mm512_max_epi8(r, lo8), hi8)
                      : _mm512_min_epu8(_mm512_max_epu8(r, lo8), hi8);
    const __m512i perm = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    _mm512_storeu_si512((void *)y, _mm512_permutexvar_epi32(perm, r));
}

/* fp32 and shift schemes (scheme: QK_REQ_FP32, or QK_REQ_SHIFT_* for a right shift >= 1). v before the zero point; the fp32 value is clamped in float
 * to [qmin - zp, qmax - zp] first (exact: the bounds are integers), so the conversion cannot
 * overflow. */
typedef struct {
    __m256 s, flo, fhi;
    __m256i lowmask, half;
    __m128i cnt, cnt1;
} qk__rq_avx2;

QK_TARGET_AVX2 static QK_ALWAYS_INLINE __m256i qk__rq8_avx2(__m256i x, const qk__rq_avx2 *c, int scheme) {
    const __m256i one = _mm256_set1_epi32(1);
    if (scheme == QK_REQ_FP32) {
        const __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(x), c->s);
        return _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(f, c->flo), c->fhi)); /* RNE */
    }
    const __m256i q = _mm256_sra_epi32(x, c->cnt);
    if (scheme == QK_REQ_SHIFT_HALF_UP) /* floor + bit (shift-1) */
        return _mm256_add_epi32(q, _mm256_and_si256(_mm256_sra_epi32(x, c->cnt1), one));
    if (scheme == QK_REQ_SHIFT_FLOOR) return q;
    const __m256i rem = _mm256_and_si256(x, c->lowmask);
    const __m256i gt = _mm256_cmpgt_epi32(rem, c->half);
    const __m256i eq = _mm256_cmpeq_epi32(rem, c->half);
    const __m256i tie_up = scheme == QK_REQ_SHIFT_HALF_EVEN /* at a tie, up when q is odd */
        ? _mm256_cmpeq_epi32(_mm256_and_si256(q, one), one)
        : _mm256_cmpgt_epi32(x, _mm256_set1_epi32(-1)); /* half_away: up when x >= 0 */
    return _mm256_sub_epi32(q, _mm256_or_si256(gt, _mm256_and_si256(eq, tie_up)));
}

QK_TARGET_AVX2 static QK_ALWAYS_INLINE size_t qk__rq_avx2_loop(const int32_t *acc, size_t n, int32_t shift,
                                                     float scale, int32_t zp, int32_t qmin,
                                                     int32_t qmax, uint8_t *y, int is_signed,
                                                     int scheme) {
    const int sh = shift >= 1 && shift <= 31 ? shift : 1;
    qk__rq_avx2 c;
    c.s = _mm256_set1_ps(scale);
    c.flo = _mm256_set1_ps((float)(qmin - zp));
    c.fhi = _mm256_set1_ps((float)(qmax - zp));
    c.lowmask = _mm256_set1_epi32((int32_t)((UINT32_C(1) << sh) - 1u));
    c.half = _mm256_set1_epi32((int32_t)(UINT32_C(1) << (sh - 1)));
    c.cnt = _mm_cvtsi32_si128(sh);
    c.cnt1 = _mm_cvtsi32_si128(sh - 1);
    const __m256i zp16 = _mm256_set1_epi16((int16_t)zp);
    const __m256i lo8 = _mm256_set1_epi8((char)qmin), hi8 = _mm256_set1_epi8((char)qmax);
    size_t i = 0;
    /* written out four times, no arrays: gcc -O2 keeps arrays of vectors in memory */
    for (; i + 32 <= n; i += 32) {
        const __m256i v0 = qk__rq8_avx2(_mm256_loadu_si256((const __m256i *)(acc + i)), &c, scheme);
        const __m256i v1 = qk__rq8_avx2(_mm256_loadu_si256((const __m256i *)(acc + i + 8)), &c, scheme);
        const __m256i v2 = qk__rq8_avx2(_mm256_loadu_si256((const __m256i *)(acc + i + 16)), &c, scheme);
        const __m256i v3 = qk__rq8_avx2(_mm256_loadu_si256((const __m256i *)(acc + i + 24)), &c, scheme);
        qk__narrow32_avx2(y + i, v0, v1, v2, v3, zp16, lo8, hi8, is_signed, 1);
    }
    return i;
}

/* AVX-512 twin of qk__rq8_avx2 (16 lanes, mask registers). */
typedef struct {
    __m512 s, flo, fhi;
    __m512i lowmask, half;
    __m128i cnt, cnt1;
} qk__rq_avx512;

QK_TARGET_AVX512 static QK_ALWAYS_INLINE __m512i qk__rq16_avx512(__m512i x, const qk__rq_avx512 *c,
                                                       int scheme) {
    const __m512i one = _mm512_set1_epi32(1);
    if (scheme == QK_REQ_FP32) {
        const __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(x), c->s);
        return _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(f, c->flo), c->fhi));
    }
    const __m512i q = _mm512_sra_epi32(x, c->cnt);
    if (scheme == QK_REQ_SHIFT_HALF_UP) return _mm512_add_epi32(q, _mm512_and_si512(_mm512_sra_epi32(x, c->cnt1), one));
    if (scheme == QK_REQ_SHIFT_FLOOR) return q;
    const __m512i rem = _mm512_and_si512(x, c->lowmask);
    const __mmask16 gt = _mm512_cmpgt_epi32_mask(rem, c->half);
    const __mmask16 eq = _mm512_cmpeq_epi32_mask(rem, c->half);
    const __mmask16 tie_up = scheme == QK_REQ_SHIFT_HALF_EVEN ? _mm512_test_epi32_mask(q, one)
                                         : _mm512_cmpge_epi32_mask(x, _mm512_setzero_si512());
    return _mm512_mask_add_epi32(q, gt | (eq & tie_up), q, one);
}

QK_TARGET_AVX512 static QK_ALWAYS_INLINE size_t qk__rq_avx512_loop(const int32_t *acc, size_t n,
                                                         int32_t shift, float scale, int32_t zp,
                                                         int32_t qmin, int32_t qmax, uint8_t *y,
                                                         int is_signed, int scheme) {
    const int sh = shift >= 1 && shift <= 31 ? shift : 1;
    qk__rq_avx512 c;
    c.s = _mm512_set1_ps(scale);
    c.flo = _mm512_set1_ps((float)(qmin - zp));
    c.fhi = _mm512_set1_ps((float)(qmax - zp));
    c.lowmask = _mm512_set1_epi32((int32_t)((UINT32_C(1) << sh) - 1u));
    c.half = _mm512_set1_epi32((int32_t)(UINT32_C(1) << (sh - 1)));
    c.cnt = _mm_cvtsi32_si128(sh);
    c.cnt1 = _mm_cvtsi32_si128(sh - 1);
    const __m512i zp16 = _mm512_set1_epi16((int16_t)zp);
    const __m512i lo8 = _mm512_set1_epi8((char)qmin), hi8 = _mm512_set1_epi8((char)qmax);
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        const __m512i v0 = qk__rq16_avx512(_mm512_loadu_si512((const void *)(acc + i)), &c, scheme);
        const __m512i v1 = qk__rq16_avx512(_mm512_loadu_si512((const void *)(acc + i + 16)), &c, scheme);
        const __m512i v2 = qk__rq16_avx512(_mm512_loadu_si512((const void *)(acc + i + 32)), &c, scheme);
        const __m512i v3 = qk__rq16_avx512(_mm512_loadu_si512((const void *)(acc + i + 48)), &c, scheme);
        qk__narrow64_avx512(y + i, v0, v1, v2, v3, zp16, lo8, hi8, is_signed, 1);
    }
    return i;
}

/* Dispatch to the loops above, specialised per scheme and signedness; returns elements done. */
#define QK__RQ_SPECIALISE(LOOP)                                                                \
    switch (scheme) {                                                                          \
        case QK_REQ_FP32: QK__RQ_SIGNS(LOOP, QK_REQ_FP32)                                      \
        case QK_REQ_SHIFT_HALF_UP: QK__RQ_SIGNS(LOOP, QK_REQ_SHIFT_HALF_UP)                    \
        case QK_REQ_SHIFT_HALF_EVEN: QK__RQ_SIGNS(LOOP, QK_REQ_SHIFT_HALF_EVEN)                \
        case QK_REQ_SHIFT_HALF_AWAY: QK__RQ_SIGNS(LOOP, QK_REQ_SHIFT_HALF_AWAY)                \
        case QK_REQ_SHIFT_FLOOR: QK__RQ_SIGNS(LOOP, QK_REQ_SHIFT_FLOOR)                        \
        default: return 0;                                                                     \
    }
#define QK__RQ_SIGNS(LOOP, SCHEME)                                                             \
    return is_signed ? LOOP(acc, n, shift, scale, zp, qmin, qmax, yb, 1, SCHEME)               \
                     : LOOP(acc, n, shift, scale, zp, qmin, qmax, yb, 0, SCHEME);
QK_TARGET_AVX2 static size_t qk__requantize_avx2(const int32_t *acc, size_t n, int scheme,
                                                 int32_t shift, float scale, int32_t zp,
                                                 int32_t qmin, int32_t qmax, void *y,
                                                 int is_signed) {
    uint8_t *yb = (uint8_t *)y;
    QK__RQ_SPECIALISE(qk__rq_avx2_loop)
}
QK_TARGET_AVX512 static size_t qk__requantize_avx512(const int32_t *acc, size_t n, int scheme,
                                                     int32_t shift, float scale, int32_t zp,
                                                     int32_t qmin, int32_t qmax, void *y,
                                                     int is_signed) {
    uint8_t *yb = (uint8_t *)y;
    QK__RQ_SPECIALISE(qk__rq_avx512_loop)
}
#undef QK__RQ_SPECIALISE
#undef QK__RQ_SIGNS
#endif

/* ---------------------------------------------------------------------------------------- */
/* double_round / single_round on 64-bit lanes                                               */
/* ---------------------------------------------------------------------------------------- */
/* Both fixed-point schemes are one exact int64 expression per accumulator x (m >= 0):
 *     v = (x * m + (x < 0 ? cn : cp)) >> k        (arithmetic shift, k in [1, 62])
 * - single_round, shift <= 0: k = 31 - shift, cp = cn = 2^(k-1) (SPEC section 4, literally).
 * - double_round, shift = -e <= 0: with p = x m, SRDHM(x, m) = floor((p + 2^30) / 2^31) for every
 *   m >= 0 (gemmlowp's nudge 1 - 2^30 and truncating division give round-half-up on negative p
 *   as well), and RDBPOT(s, e) = floor((s + 2^(e-1) - [s < 0]) / 2^e). Nested floor divisions
 *   merge: v = floor((p + 2^30 + 2^(30+e) - [s < 0] 2^31) / 2^(31+e)). [s < 0] may be replaced by
 *   [x < 0]: they differ only when x < 0 and s = 0, where both give v = 0. So k = 31 + e,
 *   cp = 2^30 + 2^(30+e), cn = cp - 2^31; e = 0 is plain SRDHM: k = 31, cp = cn = 2^30.
 * - double_round, shift > 0 (x << shift must fit int32, else the scalar loop reports it):
 *   SRDHM(x 2^shift, m) = (p + 2^(30-shift)) >> (31-shift).
 * |p| < 2^62 and cp, cn < 2^62, so nothing overflows, and v fits int32 in every case.
 * The SIMD loops compute even and odd int32 lanes with two 32x32->64 multiplies; their scalar
 * twin is the literal SPEC loop of the public functions (tests compare them bit for bit). */
typedef struct {
    int32_t m, k, corr;        /* corr: cn != cp */
    int64_t cp, cn;
    int32_t xlo, xhi, check;   /* check: stop before a block with x outside [xlo, xhi] */
} qk__fx_params;

/* The parameters above, or 0 when the SIMD loops do not cover the case (single_round with a left
 * shift: v may not fit int32). */
static inline int qk__fx_setup(int is_double, int32_t m, int32_t shift, qk__fx_params *f) {
    f->m = m;
    f->corr = 0;
    f->check = 0;
    f->xlo = INT32_MIN;
    f->xhi = INT32_MAX;
    if (!is_double) {
        if (shift > 0) return 0;
        f->k = 31 - shift;
        f->cp = f->cn = INT64_C(1) << (f->k - 1);
    } else if (shift > 0) {
        f->k = 31 - shift;
        f->cp = f->cn = INT64_C(1) << (30 - shift);
        f->check = 1;
        f->xlo = INT32_MIN >> shift; /* arithmetic shift of a negative value: gcc/clang define it */
        f->xhi = INT32_MAX >> shift;
    } else if (shift == 0) {
        f->k = 31;
        f->cp = f->cn = INT64_C(1) << 30;
    } else {
        f->k = 31 - shift;
        f->cp = (INT64_C(1) << 30) + (INT64_C(1) << (30 - shift));
        f->cn = f->cp - (INT64_C(1) << 31);
        f->corr = 1;
    }
    return 1;
}

#if QK_X86
/* v for 8 accumulators. The sums p + c are formed in 64-bit lanes (even lanes, then odd lanes
 * moved down). For k >= 32, v = floor(sum / 2^k) = floor(floor(sum / 2^32) / 2^(k-32)): the high
 * dwords of the sums, gathered into one vector, then an int32 arithmetic shift by k - 32. For
 * k < 32 (k = 31 - shift with shift >= 0, so c = 2^(30-shift)) the sums are first shifted left
 * by 32 - k = shift + 1, which keeps them exact: sum 2^(shift+1) = 2 (x 2^shift) m + 2^31 with
 * x 2^shift inside int32 (checked for double_round; shift = 0 for single_round), below 2^63.
 * The sign correction (corr) picks cn by bit 63, which blendv_pd reads: the sign of the odd lane,
 * or of the even lane once shifted up. */
QK_TARGET_AVX2 static QK_ALWAYS_INLINE __m256i qk__fx8_avx2(__m256i x, __m256i vm, __m256i cp, __m256i cn,
                                                  __m128i sh, int corr, int k_lt32) {
    __m256i ce = cp, co = cp;
    if (corr) {
        ce = _mm256_castpd_si256(_mm256_blendv_pd(_mm256_castsi256_pd(cp), _mm256_castsi256_pd(cn),
                                                  _mm256_castsi256_pd(_mm256_slli_epi64(x, 32))));
        co = _mm256_castpd_si256(_mm256_blendv_pd(_mm256_castsi256_pd(cp), _mm256_castsi256_pd(cn),
                                                  _mm256_castsi256_pd(x)));
    }
    __m256i se = _mm256_add_epi64(_mm256_mul_epi32(x, vm), ce);
    __m256i so = _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(x, 32), vm), co);
    if (k_lt32) {
        se = _mm256_sll_epi64(se, sh);
        so = _mm256_sll_epi64(so, sh);
    }
    const __m256i h = _mm256_blend_epi32(_mm256_shuffle_epi32(se, 0xF5), so, 0xAA);
    return k_lt32 ? h : _mm256_sra_epi32(h, sh);
}

QK_TARGET_AVX2 static QK_ALWAYS_INLINE size_t qk__fx_avx2_loop(const int32_t *acc, size_t n,
                                                     const qk__fx_params *f, int32_t zp,
                                                     int32_t qmin, int32_t qmax, uint8_t *y,
                                                     int is_signed, int corr, int k_lt32,
                                                     int check, int clamp) {
    const __m256i vm = _mm256_set1_epi32(f->m);
    const __m256i cp = _mm256_set1_epi64x(f->cp), cn = _mm256_set1_epi64x(f->cn);
    const __m128i sh = _mm_cvtsi32_si128(f->k < 32 ? 32 - f->k : f->k - 32);
    const __m256i zp16 = _mm256_set1_epi16((int16_t)zp);
    const __m256i lo8 = _mm256_set1_epi8((char)qmin), hi8 = _mm256_set1_epi8((char)qmax);
    const __m256i xlo = _mm256_set1_epi32(f->xlo), xhi = _mm256_set1_epi32(f->xhi);
    size_t i = 0;
    /* written out four times, no arrays: gcc -O2 keeps arrays of vectors in memory */
    for (; i + 32 <= n; i += 32) {
        const __m256i x0 = _mm256_loadu_si256((const __m256i *)(acc + i));
        const __m256i x1 = _mm256_loadu_si256((const __m256i *)(acc + i + 8));
        const __m256i x2 = _mm256_loadu_si256((const __m256i *)(acc + i + 16));
        const __m256i x3 = _mm256_loadu_si256((const __m256i *)(acc + i + 24));
        if (check) {
#define QK__OUT(X) _mm256_or_si256(_mm256_cmpgt_epi32(xlo, X), _mm256_cmpgt_epi32(X, xhi))
            const __m256i bad = _mm256_or_si256(_mm256_or_si256(QK__OUT(x0), QK__OUT(x1)),
                                                _mm256_or_si256(QK__OUT(x2), QK__OUT(x3)));
#undef QK__OUT
            if (!_mm256_testz_si256(bad, bad)) break;
        }
        qk__narrow32_avx2(y + i, qk__fx8_avx2(x0, vm, cp, cn, sh, corr, k_lt32),
                          qk__fx8_avx2(x1, vm, cp, cn, sh, corr, k_lt32),
                          qk__fx8_avx2(x2, vm, cp, cn, sh, corr, k_lt32),
                          qk__fx8_avx2(x3, vm, cp, cn, sh, corr, k_lt32), zp16, lo8, hi8, is_signed,
                          clamp);
    }
    return i;
}

/* The loop above, specialised (always_inline) for each combination of the flags. */
QK_TARGET_AVX2 static size_t qk__fx_avx2(const int32_t *acc, size_t n, const qk__fx_params *f,
                                         int32_t zp, int32_t qmin, int32_t qmax, void *y,
                                         int is_signed) {
    uint8_t *yb = (uint8_t *)y;
    const int lt32 = f->k < 32;
    const int cl = qmin != (is_signed ? INT8_MIN : 0) || qmax != (is_signed ? INT8_MAX : UINT8_MAX);
#define QK__FX_CASE(S, C, L, K, CL) \
    return qk__fx_avx2_loop(acc, n, f, zp, qmin, qmax, yb, S, C, L, K, CL)
    if (f->check) { /* double_round with a left shift: k < 32, no correction */
        if (is_signed) QK__FX_CASE(1, 0, 1, 1, 1);
        QK__FX_CASE(0, 0, 1, 1, 1);
    }
    if (is_signed) {
        if (f->corr) { /* the correction comes with k >= 32 */
            if (cl) QK__FX_CASE(1, 1, 0, 0, 1);
            QK__FX_CASE(1, 1, 0, 0, 0);
        }
        if (lt32) QK__FX_CASE(1, 0, 1, 0, 1);
        if (cl) QK__FX_CASE(1, 0, 0, 0, 1);
        QK__FX_CASE(1, 0, 0, 0, 0);
    }
    if (f->corr) {
        if (cl) QK__FX_CASE(0, 1, 0, 0, 1);
        QK__FX_CASE(0, 1, 0, 0, 0);
    }
    if (lt32) QK__FX_CASE(0, 0, 1, 0, 1);
    if (cl) QK__FX_CASE(0, 0, 0, 0, 1);
    QK__FX_CASE(0, 0, 0, 0, 0);
#undef QK__FX_CASE
}

/* AVX-512: the same on 16 lanes; the correction by a compare of the product (p < 0 selects
 * like x < 0: see above) and a masked subtraction. */
QK_TARGET_AVX512 static QK_ALWAYS_INLINE __m512i qk__fx16_avx512(__m512i x, __m512i vm, __m512i cp,
                                                       __m512i dc, __m128i sh, int corr,
                                                       int k_lt32) {
    const __m512i pe = _mm512_mul_epi32(x, vm);
    const __m512i po = _mm512_mul_epi32(_mm512_srli_epi64(x, 32), vm);
    __m512i se = _mm512_add_epi64(pe, cp), so = _mm512_add_epi64(po, cp);
    if (corr) {
        const __m512i z = _mm512_setzero_si512();
        se = _mm512_mask_sub_epi64(se, _mm512_cmplt_epi64_mask(pe, z), se, dc);
        so = _mm512_mask_sub_epi64(so, _mm512_cmplt_epi64_mask(po, z), so, dc);
    }
    if (k_lt32) {
        se = _mm512_sll_epi64(se, sh);
        so = _mm512_sll_epi64(so, sh);
    }
    /* odd dwords from so, even dwords from the odd dwords of se */
    const __m512i h = _mm512_mask_shuffle_epi32(so, 0x5555, se, (_MM_PERM_ENUM)0xF5);
    return k_lt32 ? h : _mm512_sra_epi32(h, sh);
}

QK_TARGET_AVX512 static QK_ALWAYS_INLINE size_t qk__fx_avx512_loop(const int32_t *acc, size_t n,
                                                         const qk__fx_params *f, int32_t zp,
                                                         int32_t qmin, int32_t qmax, uint8_t *y,
                                                         int is_signed, int corr, int k_lt32,
                                                         int check, int clamp) {
    const __m512i vm = _mm512_set1_epi32(f->m);
    const __m512i cp = _mm512_set1_epi64(f->cp), dc = _mm512_set1_epi64(f->cp - f->cn);
    const __m128i sh = _mm_cvtsi32_si128(f->k < 32 ? 32 - f->k : f->k - 32);
    const __m512i zp16 = _mm512_set1_epi16((int16_t)zp);
    const __m512i lo8 = _mm512_set1_epi8((char)qmin), hi8 = _mm512_set1_epi8((char)qmax);
    const __m512i xlo = _mm512_set1_epi32(f->xlo), xhi = _mm512_set1_epi32(f->xhi);
    size_t i = 0;
    for (; i + 64 <= n; i += 64) { /* no arrays of vectors (see the AVX2 loop) */
        const __m512i x0 = _mm512_loadu_si512((const void *)(acc + i));
        const __m512i x1 = _mm512_loadu_si512((const void *)(acc + i + 16));
        const __m512i x2 = _mm512_loadu_si512((const void *)(acc + i + 32));
        const __m512i x3 = _mm512_loadu_si512((const void *)(acc + i + 48));
        if (check) {
#define QK__OUT(X) (_mm512_cmplt_epi32_mask(X, xlo) | _mm512_cmpgt_epi32_mask(X, xhi))
            if (QK__OUT(x0) | QK__OUT(x1) | QK__OUT(x2) | QK__OUT(x3)) break;
#undef QK__OUT
        }
        const __m512i v0 = qk__fx16_avx512(x0, vm, cp, dc, sh, corr, k_lt32);
        const __m512i v1 = qk__fx16_avx512(x1, vm, cp, dc, sh, corr, k_lt32);
        const __m512i v2 = qk__fx16_avx512(x2, vm, cp, dc, sh, corr, k_lt32);
        const __m512i v3 = qk__fx16_avx512(x3, vm, cp, dc, sh, corr, k_lt32);
        qk__narrow64_avx512(y + i, v0, v1, v2, v3, zp16, lo8, hi8, is_signed, clamp);
    }
    return i;
}

QK_TARGET_AVX512 static size_t qk__fx_avx512(const int32_t *acc, size_t n, const qk__fx_params *f,
                                             int32_t zp, int32_t qmin, int32_t qmax, void *y,
                                             int is_signed) {
    uint8_t *yb = (uint8_t *)y;
    const int lt32 = f->k < 32;
    const int cl = qmin != (is_signed ? INT8_MIN : 0) || qmax != (is_signed ? INT8_MAX : UINT8_MAX);
#define QK__FX_CASE(S, C, L, K, CL) \
    return qk__fx_avx512_loop(acc, n, f, zp, qmin, qmax, yb, S, C, L, K, CL)
    if (f->check) {
        if (is_signed) QK__FX_CASE(1, 0, 1, 1, 1);
        QK__FX_CASE(0, 0, 1, 1, 1);
    }
    if (is_signed) {
        if (f->corr) {
            if (cl) QK__FX_CASE(1, 1, 0, 0, 1);
            QK__FX_CASE(1, 1, 0, 0, 0);
        }
        if (lt32) QK__FX_CASE(1, 0, 1, 0, 1);
        if (cl) QK__FX_CASE(1, 0, 0, 0, 1);
        QK__FX_CASE(1, 0, 0, 0, 0);
    }
    if (f->corr) {
        if (cl) QK__FX_CASE(0, 1, 0, 0, 1);
        QK__FX_CASE(0, 1, 0, 0, 0);
    }
    if (lt32) QK__FX_CASE(0, 0, 1, 0, 1);
    if (cl) QK__FX_CASE(0, 0, 0, 0, 1);
    QK__FX_CASE(0, 0, 0, 0, 0);
#undef QK__FX_CASE
}
#endif

/* ---------------------------------------------------------------------------------------- */
/* Public entry points                                                                        */
/* ---------------------------------------------------------------------------------------- */
#if QK_X86
#define QK__REQ_SIMD_OK(OUT) (qk__level() >= QK_LEVEL_AVX2 && (QK__IS8_##OUT))
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

/* Output bytes before y is 64-byte aligned (at most n). The SIMD loops start there and the
 * scalar loop does this head first: a 64-byte store across two cache lines costs about 4%, and
 * NumPy's large arrays start 16 or 48 bytes past a boundary. */
static inline size_t qk__req_head(const void *y, size_t n) {
    const size_t mis = (size_t)((uintptr_t)y % 64);
    const size_t head = mis ? 64 - mis : 0;
    return head < n ? head : n;
}

#if QK_X86
/* fp32 (QK_REQ_FP32) and shift (QK_REQ_SHIFT_*) schemes, u8 / s8 outputs: the scalar head (SCALAR
 * runs the scalar loop over a range), then the SIMD blocks; the scalar tail starts at `done`. */
#define QK__REQ_AVX2(OUT, SCHEME, SHIFT, SCALE, SCALAR)                                         \
    if (QK__REQ_SIMD_OK(OUT)) {                                                                 \
        const size_t head = qk__req_head(y, n);                                                 \
        SCALAR(0, head)                                                                         \
        done = head + (qk__level() >= QK_LEVEL_AVX512                                                         \
                           ? qk__requantize_avx512(acc + head, n - head, SCHEME, SHIFT, SCALE,   \
                                                   zero_point, qmin, qmax, y + head,            \
                                                   QK__SIGNED_##OUT)                            \
                           : qk__requantize_avx2(acc + head, n - head, SCHEME, SHIFT, SCALE,     \
                                                 zero_point, qmin, qmax, y + head,              \
                                                 QK__SIGNED_##OUT));                            \
    }
/* double_round (IS_DOUBLE 1) / single_round (0) on 64-bit lanes, where qk__fx_setup covers it. */
#define QK__REQ_FX(OUT, IS_DOUBLE, M, SHIFT, SCALAR)                                            \
    if (QK__REQ_SIMD_OK(OUT)) {                                                                 \
        qk__fx_params fx;                                                                       \
        if (qk__fx_setup(IS_DOUBLE, M, SHIFT, &fx)) {                                           \
            const size_t head = qk__req_head(y, n);                                             \
            SCALAR(0, head)                                                                     \
            done = head + (qk__level() >= QK_LEVEL_AVX512                                                     \
                               ? qk__fx_avx512(acc + head, n - head, &fx, zero_point, qmin,     \
                                               qmax, y + head, QK__SIGNED_##OUT)                \
                               : qk__fx_avx2(acc + head, n - head, &fx, zero_point, qmin, qmax, \
                                             y + head, QK__SIGNED_##OUT));                      \
        }                                                                                       \
    }
#else
#define QK__REQ_AVX2(OUT, SCHEME, SHIFT, SCALE, SCALAR)
#define QK__REQ_FX(OUT, IS_DOUBLE, M, SHIFT, SCALAR)
#endif

/* The scalar loops over [B, E): the SPEC formulas, statements inside the public functions below
 * (OUTT is the output type there). */
#define QK__DOUBLE_LOOP(B, E)                                                                   \
    for (size_t i = (B); i < (E); i++) {                                                        \
        int32_t r;                                                                              \
        if (!qk__req_double(acc[i], multiplier, shift, &r)) {                                   \
            if (bad_index) *bad_index = i;                                                      \
            return QK_ERR_OVERFLOW;                                                             \
        }                                                                                       \
        y[i] = (OUTT)qk__clamp64((int64_t)r + zero_point, qmin, qmax);                          \
    }
#define QK__SINGLE_LOOP(B, E)                                                                   \
    for (size_t i = (B); i < (E); i++)                                                          \
        y[i] = (OUTT)qk__clamp64(qk__req_single(acc[i], multiplier, shift) + zero_point, qmin,  \
                                 qmax);
#define QK__FP32_LOOP(B, E)                                                                     \
    for (size_t i = (B); i < (E); i++) {                                                        \
        const float f = (float)acc[i] * scale;                                                  \
        y[i] = (OUTT)((int64_t)rint(qk__clampd((double)f, (double)qmin - zero_point,            \
                                               (double)qmax - zero_point)) + zero_point);       \
    }
#define QK__SHIFT_LOOP(B, E)                                                                    \
    for (size_t i = (B); i < (E); i++)                                                          \
        y[i] = (OUTT)qk__clamp64(qk__shift_round(acc[i], shift, scheme) + zero_point, qmin, qmax);

#define QK__REQUANTIZE_PUBLIC(OUT, OUTT_, TMIN, TMAX)                                           \
    qk_status qk_requantize_s32_##OUT##_double(const int32_t *acc, size_t n, int32_t multiplier, \
                                               int32_t shift, int32_t zero_point, int32_t qmin,  \
                                               int32_t qmax, OUTT_ *y, size_t *bad_index) {      \
        typedef OUTT_ OUTT;                                                                     \
        if (shift < -31 || shift > 30) return QK_ERR_SHIFT;                                     \
        if (multiplier < 0) return QK_ERR_MULTIPLIER;                                           \
        qk_status st = qk__check_range(zero_point, qmin, qmax, TMIN, TMAX);                     \
        if (st != QK_OK) return st;                                                             \
        if (n > 0 && (acc == NULL || y == NULL)) return QK_ERR_ARG;                             \
        size_t done = 0;                                                                        \
        QK__REQ_FX(OUT, 1, multiplier, shift, QK__DOUBLE_LOOP)                                  \
        QK__DOUBLE_LOOP(done, n)                                                                \
        return QK_OK;                                                                           \
    }                                                                                           \
    qk_status qk_requantize_s32_##OUT##_single(const int32_t *acc, size_t n, int32_t multiplier, \
                                               int32_t shift, int32_t zero_point, int32_t qmin,  \
                                               int32_t qmax, OUTT_ *y) {                         \
        typedef OUTT_ OUTT;                                                                     \
        if (shift < -31 || shift > 30) return QK_ERR_SHIFT;                                     \
        if (multiplier < 0) return QK_ERR_MULTIPLIER;                                           \
        qk_status st = qk__check_range(zero_point, qmin, qmax, TMIN, TMAX);                     \
        if (st != QK_OK) return st;                                                             \
        if (n > 0 && (acc == NULL || y == NULL)) return QK_ERR_ARG;                             \
        size_t done = 0;                                                                        \
        QK__REQ_FX(OUT, 0, multiplier, shift, QK__SINGLE_LOOP)                                  \
        QK__SINGLE_LOOP(done, n)                                                                \
        return QK_OK;                                                                           \
    }                                                                                           \
    qk_status qk_requantize_s32_##OUT##_fp32(const int32_t *acc, size_t n, float scale,          \
                                             int32_t zero_point, int32_t qmin, int32_t qmax,     \
                                             OUTT_ *y) {                                         \
        typedef OUTT_ OUTT;                                                                     \
        if (!qk__scale_ok(scale)) return QK_ERR_SCALE;                                          \
        qk_status st = qk__check_range(zero_point, qmin, qmax, TMIN, TMAX);                     \
        if (st != QK_OK) return st;                                                             \
        if (n > 0 && (acc == NULL || y == NULL)) return QK_ERR_ARG;                             \
        size_t done = 0;                                                                        \
        QK__REQ_AVX2(OUT, QK_REQ_FP32, 0, scale, QK__FP32_LOOP)                                \
        QK__FP32_LOOP(done, n)                                                                  \
        return QK_OK;                                                                           \
    }                                                                                           \
    QK__REQUANTIZE_SHIFT(OUT, OUTT_, TMIN, TMAX, half_up, QK_REQ_SHIFT_HALF_UP)                 \
    QK__REQUANTIZE_SHIFT(OUT, OUTT_, TMIN, TMAX, half_even, QK_REQ_SHIFT_HALF_EVEN)             \
    QK__REQUANTIZE_SHIFT(OUT, OUTT_, TMIN, TMAX, half_away, QK_REQ_SHIFT_HALF_AWAY)             \
    QK__REQUANTIZE_SHIFT(OUT, OUTT_, TMIN, TMAX, floor, QK_REQ_SHIFT_FLOOR)

#define QK__REQUANTIZE_SHIFT(OUT, OUTT_, TMIN, TMAX, RND, SCHEME)                               \
    qk_status qk_requantize_s32_##OUT##_shift_##RND(const int32_t *acc, size_t n, int32_t shift, \
                                                    int32_t zero_point, int32_t qmin,           \
                                                    int32_t qmax, OUTT_ *y) {                   \
        typedef OUTT_ OUTT;                                                                     \
        const qk_requant_scheme scheme = SCHEME;                                                \
        if (shift < -31 || shift > 31) return QK_ERR_SHIFT;                                     \
        qk_status st = qk__check_range(zero_point, qmin, qmax, TMIN, TMAX);                     \
        if (st != QK_OK) return st;                                                             \
        if (n > 0 && (acc == NULL || y == NULL)) return QK_ERR_ARG;                             \
        size_t done = 0;                                                                        \
        if (shift >= 1) {                                                                       \
            QK__REQ_AVX2(OUT, SCHEME, shift, 1.0f, QK__SHIFT_LOOP)                              \
        }                                                                                       \
        QK__SHIFT_LOOP(done, n)                                                                 \
        return QK_OK;                                                                           \
    }

QK__FOR_EACH_OUT(QK__REQUANTIZE_PUBLIC)
