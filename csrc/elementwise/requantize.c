/* requantize.c -- int32 accumulator -> narrow integer, and the fixed-point helpers.
 *
 * Schemes (SPEC section 4): double_round (gemmlowp / TFLite reference / CMSIS-NN), single_round
 * (TFLITE_SINGLE_ROUNDING, ruy), fp32 (FBGEMM, QNNPACK, MLAS), and plain shifts with a chosen
 * rounding (power-of-two hardware). Each has a scalar loop; u8/s8 outputs have AVX2 and AVX-512
 * loops too, and so do the fixed-point schemes to int32, which give the same bits.
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
/* The SIMD loops for u8 / s8 outputs: for each ISA its fixed-point vector routine, then the loops
 * of elementwise/requantize_isa.h, written once for both ISAs over the primitives of
 * elementwise/simd_v.h. */
/* ---- AVX2 ---------------------------------------------------------------------------------- */
/* v for 8 accumulators. The sums p + c are formed in 64-bit lanes (even lanes, then odd lanes
 * moved down). For k >= 32, v = floor(sum / 2^k) = floor(floor(sum / 2^32) / 2^(k-32)): the high
 * dwords of the sums, gathered into one vector, then an int32 arithmetic shift by k - 32. For
 * k < 32 (k = 31 - shift with shift >= 0, so c = 2^(30-shift)) the sums are first shifted left
 * by 32 - k = shift + 1, which keeps them exact: sum 2^(shift+1) = 2 (x 2^shift) m + 2^31 with
 * x 2^shift inside int32 (checked for double_round; shift = 0 for single_round), below 2^63.
 * The sign correction (corr) picks cn by bit 63, which blendv_pd reads: the sign of the odd lane,
 * or of the even lane once shifted up. */
QK_TARGET_AVX2 static QK_ALWAYS_INLINE __m256i qk__fxv_avx2(__m256i x, __m256i vm, __m256i cp, __m256i cn,
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

#define QK_V_IS512 0
#include "elementwise/requantize_isa.h"

/* ---- AVX-512 F/BW ----------------------------------------------------------------------------- */
/* AVX-512: the same on 16 lanes; the correction by a compare of the product (p < 0 selects
 * like x < 0: see above) and a masked subtraction. */
QK_TARGET_AVX512 static QK_ALWAYS_INLINE __m512i qk__fxv_avx512(__m512i x, __m512i vm, __m512i cp,
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

#undef QK_V_IS512
#define QK_V_IS512 1
#include "elementwise/requantize_isa.h"
#undef QK_V_IS512

/* The loops of the level chosen (AVX-512 F/BW, else AVX2); the elements done. */
static size_t qk__requantize_simd(const int32_t *acc, size_t n, int scheme, int32_t shift,
                                  float scale, int32_t zp, int32_t qmin, int32_t qmax, void *y,
                                  int is_signed) {
    return qk__level() >= QK_LEVEL_AVX512
               ? qk__requantize_avx512(acc, n, scheme, shift, scale, zp, qmin, qmax, y, is_signed)
               : qk__requantize_avx2(acc, n, scheme, shift, scale, zp, qmin, qmax, y, is_signed);
}

static size_t qk__fx_simd(const int32_t *acc, size_t n, const qk__fx_params *f, int32_t zp,
                          int32_t qmin, int32_t qmax, void *y, int is_signed) {
    return qk__level() >= QK_LEVEL_AVX512 ? qk__fx_avx512(acc, n, f, zp, qmin, qmax, y, is_signed)
                                          : qk__fx_avx2(acc, n, f, zp, qmin, qmax, y, is_signed);
}

/* The int32-out loops (qk__fx32_ of requantize_isa.h): the clamp on v before the zero point. */
static size_t qk__fx32_simd(const int32_t *acc, size_t n, const qk__fx_params *f, int32_t zp,
                            int32_t qmin, int32_t qmax, int32_t *y) {
    const int64_t lo64 = (int64_t)qmin - zp, hi64 = (int64_t)qmax - zp; /* lo64 <= 0 <= hi64 */
    const int32_t lo = lo64 < INT32_MIN ? INT32_MIN : (int32_t)lo64;
    const int32_t hi = hi64 > INT32_MAX ? INT32_MAX : (int32_t)hi64;
    return qk__level() >= QK_LEVEL_AVX512 ? qk__fx32_avx512(acc, n, f, lo, hi, zp, y)
                                          : qk__fx32_avx2(acc, n, f, lo, hi, zp, y);
}
#endif


/* ---------------------------------------------------------------------------------------- */
/* Public entry points                                                                        */
/* ---------------------------------------------------------------------------------------- */
#if QK_X86
#define QK__REQ_SIMD_OK(OUT) (qk__level() >= QK_LEVEL_AVX2 && (QK__IS8_##OUT))
#define QK__REQ_SIMD32_OK(OUT) (qk__level() >= QK_LEVEL_AVX2 && (QK__IS32_##OUT))
#else
#define QK__REQ_SIMD_OK(OUT) 0
#define QK__REQ_SIMD32_OK(OUT) 0
#endif
#define QK__IS32_u8 0
#define QK__IS32_s8 0
#define QK__IS32_u16 0
#define QK__IS32_s16 0
#define QK__IS32_s32 1
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
        done = head + qk__requantize_simd(acc + head, n - head, SCHEME, SHIFT, SCALE,           \
                                          zero_point, qmin, qmax, y + head, QK__SIGNED_##OUT);  \
    }
/* double_round (IS_DOUBLE 1) / single_round (0) on 64-bit lanes, where qk__fx_setup covers it
 * (8-bit outputs, and int32 outputs). */
#define QK__REQ_FX(OUT, IS_DOUBLE, M, SHIFT, SCALAR)                                            \
    qk__fx_params fx;                                                                           \
    if (QK__REQ_SIMD_OK(OUT) && qk__fx_setup(IS_DOUBLE, M, SHIFT, &fx)) {                       \
        const size_t head = qk__req_head(y, n);                                                 \
        SCALAR(0, head)                                                                         \
        done = head + qk__fx_simd(acc + head, n - head, &fx, zero_point, qmin, qmax, y + head,  \
                                  QK__SIGNED_##OUT);                                            \
    } else if (QK__REQ_SIMD32_OK(OUT) && qk__fx_setup(IS_DOUBLE, M, SHIFT, &fx)) {              \
        done = qk__fx32_simd(acc, n, &fx, zero_point, qmin, qmax, (int32_t *)(void *)y);        \
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
    QK__REQUANTIZE_FIXED(OUT, OUTT_, TMIN, TMAX, double, 1, QK__DOUBLE_LOOP)                    \
    QK__REQUANTIZE_FIXED(OUT, OUTT_, TMIN, TMAX, single, 0, QK__SINGLE_LOOP)                    \
    qk_status qk_requantize_s32_##OUT##_fp32(const int32_t *acc, size_t n, float scale,          \
                                             int32_t zero_point, int32_t qmin, int32_t qmax,     \
                                             OUTT_ *y) {                                         \
        typedef OUTT_ OUTT;                                                                     \
        const qk_status st =                                                                    \
            qk__check_scaled(qk__scale_ok(scale), zero_point, qmin, qmax, TMIN, TMAX, n, acc, y); \
        if (st != QK_OK) return st;                                                             \
        size_t done = 0;                                                                        \
        QK__REQ_AVX2(OUT, QK_REQ_FP32, 0, scale, QK__FP32_LOOP)                                \
        QK__FP32_LOOP(done, n)                                                                  \
        return QK_OK;                                                                           \
    }                                                                                           \
    QK__REQUANTIZE_SHIFT(OUT, OUTT_, TMIN, TMAX, half_up, QK_REQ_SHIFT_HALF_UP)                 \
    QK__REQUANTIZE_SHIFT(OUT, OUTT_, TMIN, TMAX, half_even, QK_REQ_SHIFT_HALF_EVEN)             \
    QK__REQUANTIZE_SHIFT(OUT, OUTT_, TMIN, TMAX, half_away, QK_REQ_SHIFT_HALF_AWAY)             \
    QK__REQUANTIZE_SHIFT(OUT, OUTT_, TMIN, TMAX, floor, QK_REQ_SHIFT_FLOOR)

/* double_round (IS_DOUBLE 1: a bad_index argument, for the overflow of a left shift) and
 * single_round. */
#define QK__BAD_INDEX_1 , size_t *bad_index
#define QK__BAD_INDEX_0
#define QK__REQUANTIZE_FIXED(OUT, OUTT_, TMIN, TMAX, KIND, IS_DOUBLE, LOOP)                     \
    qk_status qk_requantize_s32_##OUT##_##KIND(const int32_t *acc, size_t n, int32_t multiplier,  \
                                               int32_t shift, int32_t zero_point, int32_t qmin,   \
                                               int32_t qmax,                                      \
                                               OUTT_ *y QK__BAD_INDEX_##IS_DOUBLE) {              \
        typedef OUTT_ OUTT;                                                                     \
        if (shift < -31 || shift > 30) return QK_ERR_SHIFT;                                     \
        if (multiplier < 0) return QK_ERR_MULTIPLIER;                                           \
        qk_status st = qk__check_range(zero_point, qmin, qmax, TMIN, TMAX);                     \
        if (st != QK_OK) return st;                                                             \
        if (n > 0 && (acc == NULL || y == NULL)) return QK_ERR_ARG;                             \
        size_t done = 0;                                                                        \
        QK__REQ_FX(OUT, IS_DOUBLE, multiplier, shift, LOOP)                                     \
        LOOP(done, n)                                                                           \
        return QK_OK;                                                                           \
    }

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
