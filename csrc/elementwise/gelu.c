/* gelu.c -- integer GELU: I-BERT's i-GELU (second-order polynomial erf, integer arithmetic only)
 * and a 256-entry table of the 8-bit input. The arithmetic is stated in qkernels.h.
 *
 * The table look-up (qk_gelu_lut, and qk_gelu_ibert on 8-bit input with one set of parameters,
 * which first evaluates its exact arithmetic for the 256 input bytes) has an AVX-512 VBMI loop
 * (vpermi2b: 64 look-ups in three instructions), an AVX2 loop (16 vpshufb over the nibbles) and
 * the portable scalar twin; all give the same bytes. int32 input (zero point 0) is evaluated 8
 * (AVX-512) or 4 (AVX2) elements at a time, per tensor or per channel, beside the scalar twin.
 */
#include "core/core.h"

#include <stdlib.h>
#include <string.h>

#if QK_X86
#include <immintrin.h>
#endif

/* RNE(v * m / 2^e) for any int64 v, 0 <= m < 2^31, 0 <= e <= 126, exact (96-bit product),
 * saturated to +-2^40 (beyond any int32 output). RNE is symmetric: the magnitude is rounded. */
static int64_t qk__mul_rne_wide(int64_t v, uint32_t m, int e);

static inline int64_t qk__mul_rne(int64_t v, uint32_t m, int e) {
    if (e < 32 || e >= 96) return qk__mul_rne_wide(v, m, e);
    /* e in [32, 96) (every prepared output stage): u m = H 2^32 + Ll with H < 2^63, and the
     * rounding looks at H's low bits and Ll only; no data-dependent branch (e is per channel) */
    const int neg = v < 0;
    const uint64_t u = neg ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    const uint64_t lp = (u & 0xFFFFFFFFu) * m;
    const uint64_t h = (u >> 32) * m + (lp >> 32);
    const uint64_t ll = lp & 0xFFFFFFFFu;
    const int s = e - 32;
    uint64_t q, half, below;
    if (s == 0) {
        q = h;
        half = ll >> 31;
        below = ll & 0x7FFFFFFFu;
    } else {
        q = h >> s;
        half = (h >> (s - 1)) & 1;
        below = (h & ((UINT64_C(1) << (s - 1)) - 1)) | ll;
    }
    q += half & ((uint64_t)(below != 0) | (q & 1));
    const int64_t cap = INT64_C(1) << 40;
    const int64_t r = q > (uint64_t)cap ? cap : (int64_t)q;
    return neg ? -r : r;
}

static int64_t qk__mul_rne_wide(int64_t v, uint32_t m, int e) {
    const int neg = v < 0;
    const uint64_t u = neg ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    const uint64_t l = (u & 0xFFFFFFFFu) * m, h = (u >> 32) * m; /* u m = h 2^32 + l */
    const uint64_t lo = l + (h << 32);
    const uint64_t hi = (h >> 32) + (lo < l);
    uint64_t qlo, qhi;
    int half, below;
    if (e == 0) {
        qlo = lo;
        qhi = hi;
        half = below = 0;
    } else if (e < 64) {
        qlo = (lo >> e) | (hi << (64 - e));
        qhi = hi >> e;
        half = (int)((lo >> (e - 1)) & 1);
        below = e >= 2 && (lo & ((UINT64_C(1) << (e - 1)) - 1)) != 0;
    } else if (e == 64) {
        qlo = hi;
        qhi = 0;
        half = (int)(lo >> 63);
        below = (lo & ((UINT64_C(1) << 63) - 1)) != 0;
    } else {
        const int s = e - 64; /* 1..62 */
        qlo = hi >> s;
        qhi = 0;
        half = (int)((hi >> (s - 1)) & 1);
        below = lo != 0 || (s >= 2 && (hi & ((UINT64_C(1) << (s - 1)) - 1)) != 0);
    }
    if (half && (below || (qlo & 1))) {
        qlo++;
        if (qlo == 0) qhi++;
    }
    const int64_t cap = INT64_C(1) << 40;
    const int64_t r = (qhi != 0 || qlo > (uint64_t)cap) ? cap : (int64_t)qlo;
    return neg ? -r : r;
}

/* I-BERT IntGELU of x (already minus its zero point), as a value of positive scale
 * S |sig_sf| / 2 (I-BERT's own scale is negative; see qkernels.h). */
static inline int64_t qk__igelu_raw(const qk_gelu_ibert_params *p, size_t ch, int64_t x) {
    const int64_t b = p->b[ch];
    const int64_t ax = x < 0 ? -x : x;
    const int64_t a = ax < -b ? ax : -b; /* b <= 0 */
    const int64_t t = a + b;             /* in [b, 0] */
    int64_t y = t * t + p->c[ch];
    y = x < 0 ? -y : (x == 0 ? 0 : y); /* sign(x) * ((|x| + b)^2 + c) */
    y >>= 14;                          /* floor(y / 2^14), arithmetic shift */
    return -(x * (y + p->shift[ch]));
}

static inline int32_t qk__igelu_out(const qk_gelu_ibert_params *p, size_t ch, int64_t x,
                                    int32_t zp, int32_t lo, int32_t hi) {
    const int64_t v =
        qk__mul_rne(qk__igelu_raw(p, ch, x), (uint32_t)p->multiplier[ch], p->rshift[ch]) + zp;
    return (int32_t)(v < lo ? lo : (v > hi ? hi : v));
}

/* ---- the byte table look-up ---------------------------------------------------------------- */
static void qk__lut8_scalar(const uint8_t *t, const uint8_t *x, size_t n, uint8_t *y) {
    for (size_t i = 0; i < n; i++) y[i] = t[x[i]];
}

#if QK_X86
QK_TARGET_AVX2 static size_t qk__lut8_avx2(const uint8_t *t, const uint8_t *x, size_t n,
                                           uint8_t *y) {
    __m256i row[16];
    for (int h = 0; h < 16; h++)
        row[h] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(t + 16 * h)));
    const __m256i nib = _mm256_set1_epi8(0x0F);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(x + i));
        const __m256i lo = _mm256_and_si256(v, nib);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), nib);
        __m256i acc = _mm256_setzero_si256();
        for (int h = 0; h < 16; h++) {
            const __m256i sel = _mm256_cmpeq_epi8(hi, _mm256_set1_epi8((char)h));
            acc = _mm256_or_si256(acc, _mm256_and_si256(sel, _mm256_shuffle_epi8(row[h], lo)));
        }
        _mm256_storeu_si256((__m256i *)(y + i), acc);
    }
    return i;
}

QK_TARGET_AVX512VBMI static size_t qk__lut8_avx512vbmi(const uint8_t *t, const uint8_t *x, size_t n,
                                              uint8_t *y) {
    const __m512i t0 = _mm512_loadu_si512((const void *)t);
    const __m512i t1 = _mm512_loadu_si512((const void *)(t + 64));
    const __m512i t2 = _mm512_loadu_si512((const void *)(t + 128));
    const __m512i t3 = _mm512_loadu_si512((const void *)(t + 192));
    size_t i = 0;
    for (; i < n; i += 64) {
        const size_t cnt = n - i < 64 ? n - i : 64;
        const __mmask64 k = cnt == 64 ? ~(__mmask64)0 : (((__mmask64)1 << cnt) - 1);
        const __m512i v = _mm512_maskz_loadu_epi8(k, x + i);
        const __m512i a = _mm512_permutex2var_epi8(t0, v, t1); /* bytes 0..127 by bits 0-6 */
        const __m512i b = _mm512_permutex2var_epi8(t2, v, t3); /* bytes 128..255 */
        _mm512_mask_storeu_epi8(y + i, k, _mm512_mask_blend_epi8(_mm512_movepi8_mask(v), a, b));
    }
    return n;
}
#endif

static void qk__lut8(const uint8_t *t, const uint8_t *x, size_t n, uint8_t *y) {
    size_t i = 0;
#if QK_X86
    if (qk__level() >= QK_LEVEL_AVX512VBMI)
        i = qk__lut8_avx512vbmi(t, x, n, y);
    else if (qk__level() >= QK_LEVEL_AVX2)
        i = qk__lut8_avx2(t, x, n, y);
#endif
    qk__lut8_scalar(t, x + i, n - i, y + i);
}

qk_status qk_gelu_lut(const uint8_t *table, const void *x, size_t n, void *y) {
    if (n == 0) return QK_OK;
    if (table == NULL || x == NULL || y == NULL) return QK_ERR_ARG;
    qk__lut8(table, (const uint8_t *)x, n, (uint8_t *)y);
    return QK_OK;
}

/* ---- i-GELU ---------------------------------------------------------------------------------- */
static qk_status qk__gelu_check(const qk_gelu_ibert_params *p, qk_dtype xt, int32_t xzp,
                                qk_dtype yt, int32_t yzp, int32_t lo, int32_t hi) {
    if (p == NULL || p->channels == 0 || p->b == NULL || p->c == NULL || p->shift == NULL ||
        p->multiplier == NULL || p->rshift == NULL)
        return QK_ERR_ARG;
    if (xt != QK_DT_U8 && xt != QK_DT_S8 && xt != QK_DT_S32) return QK_ERR_ARG;
    int64_t xmax;
    if (xt == QK_DT_S32) {
        xmax = (INT64_C(1) << 31) + (xzp < 0 ? -(int64_t)xzp : xzp);
    } else {
        const int32_t a = xt == QK_DT_U8 ? 0 : -128, b = xt == QK_DT_U8 ? 255 : 127;
        if (xzp < a || xzp > b) return QK_ERR_ZERO_POINT;
        xmax = (xzp - a) > (b - xzp) ? (xzp - a) : (b - xzp);
    }
    const int64_t tmin = yt == QK_DT_U8 ? 0 : (yt == QK_DT_S8 ? -128 : INT32_MIN);
    const int64_t tmax = yt == QK_DT_U8 ? 255 : (yt == QK_DT_S8 ? 127 : INT32_MAX);
    if (yt != QK_DT_U8 && yt != QK_DT_S8 && yt != QK_DT_S32) return QK_ERR_ARG;
    const qk_status st = qk__check_range(yzp, lo, hi, tmin, tmax);
    if (st != QK_OK) return st;
    const int64_t limit = (INT64_C(1) << 62) / xmax;
    for (size_t ch = 0; ch < p->channels; ch++) {
        const int64_t b = p->b[ch], c = p->c[ch], sh = p->shift[ch];
        if (b > 0 || b <= -(INT64_C(1) << 30)) return QK_ERR_ARG;
        if (c > 0 || c <= -(INT64_C(1) << 60)) return QK_ERR_ARG;
        if (sh <= -(INT64_C(1) << 47) || sh >= (INT64_C(1) << 47)) return QK_ERR_ARG;
        if (p->multiplier[ch] < 0 || p->rshift[ch] < 0 || p->rshift[ch] > 126) return QK_ERR_ARG;
        /* |x (y + shift)| < 2^62 for every x of the input type */
        const int64_t ymag = ((b * b > -c ? b * b : -c) >> 14) + 1;
        const int64_t mag = ymag + (sh < 0 ? -sh : sh) + 1;
        if (mag > limit) return QK_ERR_ARG;
    }
    return QK_OK;
}

static inline int64_t qk__xval(const void *x, qk_dtype t, size_t i) {
    return t == QK_DT_U8 ? (int64_t)((const uint8_t *)x)[i]
                         : (t == QK_DT_S8 ? (int64_t)((const int8_t *)x)[i]
                                          : (int64_t)((const int32_t *)x)[i]);
}

/* ---- int32 input: i-GELU and its requantization on 8 (AVX-512) or 4 (AVX2) int64 lanes -------
 * The integers of qk__igelu_out. Used for int32 input with zero point 0 when every channel's
 * rshift is in [32, 96) (every prepared set): then x, a + b and L + shift fit 32 bits (the
 * bound checked by qk__gelu_check: |L + shift| < 2^31 for int32 input), so t^2 and x (L + shift)
 * are single vpmuldq products, and the requantization splits |g| m into h 2^32 + low as in
 * qk__mul_rne. Element i uses the parameters of p at index pi + i (per channel) or pi. */
static int qk__igelu32_simd_ok(const qk_gelu_ibert_params *p) {
    for (size_t ch = 0; ch < p->channels; ch++)
        if (p->rshift[ch] < 32 || p->rshift[ch] >= 96) return 0;
    return 1;
}

#if QK_X86
QK_TARGET_AVX512 static size_t qk__igelu32_avx512(const qk_gelu_ibert_params *p, size_t pi, int pc,
                                                  const int32_t *x, size_t n, void *y,
                                                  qk_dtype yt, int32_t zp, int32_t lo,
                                                  int32_t hi) {
    const __m512i one = _mm512_set1_epi64(1), m32 = _mm512_set1_epi64(0xFFFFFFFFLL);
    const __m512i m31 = _mm512_set1_epi64(0x7FFFFFFFLL), cap = _mm512_set1_epi64(INT64_C(1) << 40);
    const __m512i vzp = _mm512_set1_epi64(zp), vlo = _mm512_set1_epi64(lo), vhi = _mm512_set1_epi64(hi);
    const __m512i zero = _mm512_setzero_si512();
    __m512i b = _mm512_set1_epi64(p->b[pi]), c = _mm512_set1_epi64(p->c[pi]);
    __m512i sh = _mm512_set1_epi64(p->shift[pi]), m = _mm512_set1_epi64(p->multiplier[pi]);
    __m512i s = _mm512_set1_epi64(p->rshift[pi] - 32);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        if (pc) {
            b = _mm512_loadu_si512((const void *)(p->b + pi + i));
            c = _mm512_loadu_si512((const void *)(p->c + pi + i));
            sh = _mm512_loadu_si512((const void *)(p->shift + pi + i));
            m = _mm512_cvtepi32_epi64(_mm256_loadu_si256((const __m256i *)(p->multiplier + pi + i)));
            s = _mm512_sub_epi64(
                _mm512_cvtepi32_epi64(_mm256_loadu_si256((const __m256i *)(p->rshift + pi + i))),
                _mm512_set1_epi64(32));
        }
        const __m512i xv = _mm512_cvtepi32_epi64(_mm256_loadu_si256((const __m256i *)(x + i)));
        const __m512i a = _mm512_min_epi64(_mm512_abs_epi64(xv), _mm512_sub_epi64(zero, b));
        const __m512i t = _mm512_add_epi64(a, b);
        __m512i yv = _mm512_add_epi64(_mm512_mul_epi32(t, t), c);
        yv = _mm512_mask_sub_epi64(yv, _mm512_cmplt_epi64_mask(xv, zero), zero, yv);
        yv = _mm512_maskz_mov_epi64(_mm512_cmpneq_epi64_mask(xv, zero), yv);
        yv = _mm512_srai_epi64(yv, 14);
        const __m512i g = _mm512_sub_epi64(zero, _mm512_mul_epi32(xv, _mm512_add_epi64(yv, sh)));
        /* RNE(g m / 2^(32 + s)) on |g| */
        const __mmask8 neg = _mm512_cmplt_epi64_mask(g, zero);
        const __m512i u = _mm512_abs_epi64(g);
        const __m512i lp = _mm512_mul_epu32(u, m);
        const __m512i h = _mm512_add_epi64(_mm512_mul_epu32(_mm512_srli_epi64(u, 32), m),
                                           _mm512_srli_epi64(lp, 32));
        const __m512i ll = _mm512_and_si512(lp, m32);
        __m512i q = _mm512_srlv_epi64(h, s);
        const __m512i s1 = _mm512_sub_epi64(s, one);
        __m512i half = _mm512_and_si512(_mm512_srlv_epi64(h, s1), one);
        __m512i below = _mm512_or_si512(
            _mm512_and_si512(h, _mm512_sub_epi64(_mm512_sllv_epi64(one, s1), one)), ll);
        const __mmask8 s0 = _mm512_cmpeq_epi64_mask(s, zero); /* shift 32: the half bit is ll's 31 */
        half = _mm512_mask_mov_epi64(half, s0, _mm512_srli_epi64(ll, 31));
        below = _mm512_mask_mov_epi64(below, s0, _mm512_and_si512(ll, m31));
        const __mmask8 up = _mm512_test_epi64_mask(half, one) &
                            (_mm512_test_epi64_mask(below, below) | _mm512_test_epi64_mask(q, one));
        q = _mm512_mask_add_epi64(q, up, q, one);
        q = _mm512_min_epu64(q, cap);
        q = _mm512_mask_sub_epi64(q, neg, zero, q);
        q = _mm512_min_epi64(_mm512_max_epi64(_mm512_add_epi64(q, vzp), vlo), vhi);
        if (yt == QK_DT_S32)
            _mm256_storeu_si256((__m256i *)((int32_t *)y + i), _mm512_cvtepi64_epi32(q));
        else
            _mm_storel_epi64((__m128i *)((uint8_t *)y + i), _mm512_cvtepi64_epi8(q));
    }
    return i;
}

/* AVX2 twin: 4 lanes; 64-bit abs, min and arithmetic shift built from compares and blends. */
QK_TARGET_AVX2 static inline __m256i qk__abs64_avx2(__m256i v) {
    const __m256i sg = _mm256_cmpgt_epi64(_mm256_setzero_si256(), v);
    return _mm256_sub_epi64(_mm256_xor_si256(v, sg), sg);
}

QK_TARGET_AVX2 static size_t qk__igelu32_avx2(const qk_gelu_ibert_params *p, size_t pi, int pc,
                                              const int32_t *x, size_t n, void *y, qk_dtype yt,
                                              int32_t zp, int32_t lo, int32_t hi) {
    const __m256i one = _mm256_set1_epi64x(1), m32 = _mm256_set1_epi64x(0xFFFFFFFFLL);
    const __m256i m31 = _mm256_set1_epi64x(0x7FFFFFFFLL), cap = _mm256_set1_epi64x(INT64_C(1) << 40);
    const __m256i vzp = _mm256_set1_epi64x(zp), vlo = _mm256_set1_epi64x(lo);
    const __m256i vhi = _mm256_set1_epi64x(hi), zero = _mm256_setzero_si256();
    __m256i b = _mm256_set1_epi64x(p->b[pi]), c = _mm256_set1_epi64x(p->c[pi]);
    __m256i sh = _mm256_set1_epi64x(p->shift[pi]), m = _mm256_set1_epi64x(p->multiplier[pi]);
    __m256i s = _mm256_set1_epi64x(p->rshift[pi] - 32);
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        if (pc) {
            b = _mm256_loadu_si256((const __m256i *)(p->b + pi + i));
            c = _mm256_loadu_si256((const __m256i *)(p->c + pi + i));
            sh = _mm256_loadu_si256((const __m256i *)(p->shift + pi + i));
            m = _mm256_cvtepi32_epi64(_mm_loadu_si128((const __m128i *)(p->multiplier + pi + i)));
            s = _mm256_sub_epi64(_mm256_cvtepi32_epi64(_mm_loadu_si128((const __m128i *)(p->rshift + pi + i))),
                                 _mm256_set1_epi64x(32));
        }
        const __m256i xv = _mm256_cvtepi32_epi64(_mm_loadu_si128((const __m128i *)(x + i)));
        const __m256i nb = _mm256_sub_epi64(zero, b);
        const __m256i ax = qk__abs64_avx2(xv);
        const __m256i a = _mm256_blendv_epi8(ax, nb, _mm256_cmpgt_epi64(ax, nb));
        const __m256i t = _mm256_add_epi64(a, b);
        __m256i yv = _mm256_add_epi64(_mm256_mul_epi32(t, t), c);
        const __m256i xneg = _mm256_cmpgt_epi64(zero, xv);
        yv = _mm256_blendv_epi8(yv, _mm256_sub_epi64(zero, yv), xneg);
        yv = _mm256_andnot_si256(_mm256_cmpeq_epi64(xv, zero), yv);
        /* arithmetic shift by 14: the logical one, with the sign's ones put back on top */
        const __m256i ysg = _mm256_cmpgt_epi64(zero, yv);
        yv = _mm256_or_si256(_mm256_srli_epi64(yv, 14), _mm256_slli_epi64(ysg, 50));
        const __m256i g = _mm256_sub_epi64(zero, _mm256_mul_epi32(xv, _mm256_add_epi64(yv, sh)));
        const __m256i neg = _mm256_cmpgt_epi64(zero, g);
        const __m256i u = qk__abs64_avx2(g);
        const __m256i lp = _mm256_mul_epu32(u, m);
        const __m256i h = _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(u, 32), m),
                                           _mm256_srli_epi64(lp, 32));
        const __m256i ll = _mm256_and_si256(lp, m32);
        __m256i q = _mm256_srlv_epi64(h, s);
        const __m256i s1 = _mm256_sub_epi64(s, one);
        __m256i half = _mm256_and_si256(_mm256_srlv_epi64(h, s1), one);
        __m256i below = _mm256_or_si256(
            _mm256_and_si256(h, _mm256_sub_epi64(_mm256_sllv_epi64(one, s1), one)), ll);
        const __m256i s0 = _mm256_cmpeq_epi64(s, zero);
        half = _mm256_blendv_epi8(half, _mm256_srli_epi64(ll, 31), s0);
        below = _mm256_blendv_epi8(below, _mm256_and_si256(ll, m31), s0);
        const __m256i nz = _mm256_xor_si256(_mm256_cmpeq_epi64(below, zero), _mm256_set1_epi64x(-1));
        const __m256i odd = _mm256_cmpeq_epi64(_mm256_and_si256(q, one), one);
        const __m256i up = _mm256_and_si256(_mm256_cmpeq_epi64(half, one), _mm256_or_si256(nz, odd));
        q = _mm256_sub_epi64(q, up);
        q = _mm256_blendv_epi8(q, cap, _mm256_cmpgt_epi64(q, cap));
        q = _mm256_blendv_epi8(q, _mm256_sub_epi64(zero, q), neg);
        q = _mm256_add_epi64(q, vzp);
        q = _mm256_blendv_epi8(q, vlo, _mm256_cmpgt_epi64(vlo, q));
        q = _mm256_blendv_epi8(q, vhi, _mm256_cmpgt_epi64(q, vhi));
        int64_t lanes[4];
        _mm256_storeu_si256((__m256i *)lanes, q);
        for (int l = 0; l < 4; l++) qk__store(yt, y, i + l, (int32_t)lanes[l]);
    }
    return i;
}
#endif

/* ---- int32 input, 8-bit output: i-GELU in int32 lanes, the requantization in float ----------
 * With 8-bit output only |RNE(v)| <= 383 matters (v = g M / 2^E, g = -x K, K = L + shift), so v
 * need not be exact, only its rounding: the loop (gelu_isa.h, 16 or 8 lanes) computes
 *   t = min(|x|, -b) + b in [b, 0], u = t^2 + cL (uint32: -b <= 65535), with c = cH 2^14 + cL,
 *   0 <= cL < 2^14: L = floor(sign(x)(t^2 + c) / 2^14) = cH + floor(u / 2^14) for x > 0 and
 *   -cH - ceil(u / 2^14) for x < 0 (x = 0 gives g = 0 with any K), so K is exact in int32 lanes;
 *   vf = fl(fl(fl(x) K) mf), mf = -fl(M 2^-E) (|K| < 2^24 is exact in float; the products do not
 *   overflow or go subnormal: 1 <= |x K| < 2^55, 2^-126 <= M 2^-E < 2^31). Four roundings of
 *   relative error <= 2^-23 each (any rounding mode): |vf - v| <= 2^-20.98 |vf|.
 *   w = clamp(vf, lo - zp, hi - zp) (integers, |.| <= 383); r = RNE(w); y = r + zp.
 * If vf is inside the range, |vf - v| <= 384 2^-20.98 < 2^-12, so RNE(v) = r unless vf is within
 * 2^-12 of a tie (|w - r| >= 0.5 - 2^-12): such lanes (about 2^-11 of them) are redone by the
 * exact scalar qk__igelu_out. If vf is beyond a bound, v is too, by more than 1/2 less 2^-12
 * (|vf| <= 2^10: absolute error < 2^-10; larger |vf|: v is beyond 2^9), so both saturate alike.
 * Used when every channel has -b <= 65535 and |cH| + |shift| + 2^18 + 1 < 2^24 (every prepared
 * set with x_scale >= 3.8e-5); other parameters take the int64 loops below. */
typedef struct {
    int32_t *nb, *cl, *ap, *an; /* -b, c mod 2^14, cH + shift, shift - cH */
    float *mf;                  /* -fl(M 2^-E) */
} qk__igelu_fc;

static int qk__igelu_fc_set(const qk_gelu_ibert_params *p, size_t ch, qk__igelu_fc *f, size_t i) {
    const int64_t b = p->b[ch], c = p->c[ch], sh = p->shift[ch];
    if (-b > 65535) return 0;
    const int64_t chi = -((-c + 16383) / 16384); /* floor(c / 2^14), c <= 0 */
    const int64_t clo = c - chi * 16384;
    const int64_t ach = chi < 0 ? -chi : chi, ash = sh < 0 ? -sh : sh;
    if (ach + ash + (INT64_C(1) << 18) + 1 >= (INT64_C(1) << 24)) return 0;
    f->nb[i] = (int32_t)-b;
    f->cl[i] = (int32_t)clo;
    f->ap[i] = (int32_t)(chi + sh);
    f->an[i] = (int32_t)(sh - chi);
    const uint64_t eb = (uint64_t)(1023 - p->rshift[ch]) << 52; /* 2^-E (0 <= E <= 126) */
    double e;
    memcpy(&e, &eb, sizeof e);
    f->mf[i] = (float)-((double)p->multiplier[ch] * e);
    return 1;
}

/* ---- GELU by piecewise-quadratic segments (qk_gelu_interp; the arithmetic: qkernels.h) -----
 * gelu(x) = max(x, 0) - h(|x|), h(t) = t Q(t) (Q the normal tail), h on [0, 6) in 96 quadratic
 * segments of 1/16. Every step is an exact integer operation: the two requantizations in int64
 * (|x m| < 2^62, the rounding term 2^(e-1) <= 2^61), the segment in int32 (|B| < 2^13, f < 2^12,
 * |C| < 2^12, |w| <= 2^10: |B f + C w + 2^11| < 2^26; checked before anything is read). */
#define QK__GI_SEG QK_GELU_INTERP_SEGMENTS
#define QK__GI_K QK_GELU_INTERP_SEGMENT_BITS
#define QK__GI_T ((int64_t)QK__GI_SEG << QK__GI_K) /* 6 2^16: h = 0 from here */

static inline int64_t qk__rhu64(int64_t v, int e) { return (v + (INT64_C(1) << (e - 1))) >> e; }

static inline int32_t qk__ginterp_one(const qk_gelu_interp_params *p, size_t ch, int32_t x,
                                      int32_t zp, int32_t lo, int32_t hi) {
    const int64_t u = qk__clamp64(qk__rhu64((int64_t)x * p->in_multiplier[ch], p->in_rshift[ch]),
                                  -INT32_MAX, INT32_MAX);
    const int64_t t = u < 0 ? -u : u;
    int64_t h = 0;
    if (t < QK__GI_T) {
        const int64_t i = t >> QK__GI_K, f = t & ((1 << QK__GI_K) - 1);
        const int64_t w = (f * (f - (1 << QK__GI_K))) >> QK__GI_K; /* floor, in [-2^10, 0] */
        const int32_t *tb = p->table;
        h = tb[i] + qk__rhu64(tb[QK__GI_SEG + i] * f + tb[2 * QK__GI_SEG + i] * w, QK__GI_K);
    }
    const int64_t g = (u > 0 ? u : 0) - h;
    return (int32_t)qk__clamp64(qk__rhu64(g * p->multiplier[ch], p->rshift[ch]) + zp, lo, hi);
}

/* ---- interp on AVX2 (gelu_isa.h, qk__gi2_avx2) ------------------------------------------------
 * The same integers as qk__ginterp_one, 8 lanes, no 32-bit gathers (slow on AVX2 CPUs: three a
 * vector took half the time):
 *   stage 1, u = RHU(x m / 2^e): the exact 64-bit product of the even and of the odd lanes, plus
 *     k = 2^62 + 2^(e-1) (>= 0 as |x m| < 2^62), shifted right logically by e; the low dword less
 *     2^(62-e) (mod 2^32) is u. No saturation: lanes with |x| >= 2^(e-1) are flagged (then
 *     |x m / 2^e| < 2^30, |u| <= 2^30; the guard is the sign bit of |x| + 2^31 - 2^(e-1)).
 *   h: one 97-entry qword table, A' = 2^12 A + 2^11 and the int16 pair (B, C), read by two 4-lane
 *     qword gathers; B f + C w by vpmaddwd with (f, w) as an int16 pair; h = (that + A') >> 12.
 *   stage 2, 8-bit output: in float, RNE of the clamped product, lanes within 2^-13 of a tie
 *     flagged (the bound: gelu_isa.h); int32 output whose range holds zp +- 2^30: exact as stage
 *     1, flagged where |g| >= 2^(e-1).
 * Flagged lanes (none in real data but ties, about 2^-12 of the 8-bit lanes) are redone by
 * qk__ginterp_one. The constants of 8 channels at a time, made once a call: */
typedef struct {
    _Alignas(32) int64_t m1[8]; /* even lanes' multipliers, then the odd lanes' */
    int64_t k1[8], s1[8];       /* 2^62 + 2^(e-1), e (same order) */
    int32_t c1[8], g1[8];       /* -2^(62-e) mod 2^32, the guard 2^31 - min(2^(e-1), 2^31) */
    float rf[8];                /* fl(m 2^-e) of stage 2 (8-bit output) */
    int64_t m2[8], k2[8], s2[8];
    int32_t c2[8], g2[8];       /* stage 2 (int32 output): zp - 2^(62-e) mod 2^32, the guard */
} qk__gi_blk;

static void qk__gi_stage_set(int32_t m, int32_t e, int lane, int64_t *mv, int64_t *kv, int64_t *sv,
                             int32_t *cv, int32_t *gv, int32_t add) {
    const int q = (lane & 1) * 4 + lane / 2;
    mv[q] = m;
    kv[q] = (INT64_C(1) << 62) + (INT64_C(1) << (e - 1));
    sv[q] = e;
    cv[lane] = (int32_t)((uint32_t)add - (uint32_t)(UINT64_C(1) << (62 - e)));
    gv[lane] = e - 1 >= 31 ? 0 : (int32_t)(UINT32_C(0x80000000) - (UINT32_C(1) << (e - 1)));
}

static void qk__gi_blk_set(qk__gi_blk *b, int lane, const qk_gelu_interp_params *p, size_t ch,
                           int out8, int32_t zp) {
    qk__gi_stage_set(p->in_multiplier[ch], p->in_rshift[ch], lane, b->m1, b->k1, b->s1, b->c1,
                     b->g1, 0);
    if (out8) {
        const uint64_t eb = (uint64_t)(1023 - p->rshift[ch]) << 52; /* 2^-e, e in [1, 62] */
        double sc;
        memcpy(&sc, &eb, sizeof sc);
        b->rf[lane] = (float)((double)p->multiplier[ch] * sc);
    } else {
        qk__gi_stage_set(p->multiplier[ch], p->rshift[ch], lane, b->m2, b->k2, b->s2, b->c2,
                         b->g2, zp);
    }
}

#define QK_TWINS_TEMPLATE "elementwise/gelu_isa.h"
#include "elementwise/simd_twins.h"

/* The float-requantized loop over all of x (rows of `channels`); 0: not applicable (then nothing
 * was written), 1: done, -1: out of memory. */
static int qk__igelu32f(const qk_gelu_ibert_params *p, const int32_t *x, size_t n, uint8_t *y,
                        qk_dtype yt, int32_t zp, int32_t lo, int32_t hi) {
#if QK_X86
    const int lvl = qk__level() >= QK_LEVEL_AVX512 ? 2 : (qk__level() >= QK_LEVEL_AVX2 ? 1 : 0);
    if (lvl == 0) return 0;
    const size_t C = p->channels;
    int32_t *buf = (int32_t *)malloc(C * 5 * sizeof(int32_t));
    if (buf == NULL) return -1;
    qk__igelu_fc f = {buf, buf + C, buf + 2 * C, buf + 3 * C, (float *)(buf + 4 * C)};
    for (size_t ch = 0; ch < C; ch++)
        if (!qk__igelu_fc_set(p, ch, &f, ch)) {
            free(buf);
            return 0;
        }
    const int sg = yt == QK_DT_S8;
    const size_t rl = C == 1 ? n : C;
    for (size_t r0 = 0; r0 < n; r0 += rl) {
        const size_t done = lvl == 2 ? qk__igelu32f_avx512(&f, C > 1, p, x + r0, rl, y + r0, sg, zp, lo, hi)
                                     : qk__igelu32f_avx2(&f, C > 1, p, x + r0, rl, y + r0, sg, zp, lo, hi);
        for (size_t i = done; i < rl; i++)
            y[r0 + i] = (uint8_t)qk__igelu_out(p, C > 1 ? i : 0, x[r0 + i], zp, lo, hi);
    }
    free(buf);
    return 1;
#else
    (void)p; (void)x; (void)n; (void)y; (void)yt; (void)zp; (void)lo; (void)hi;
    return 0;
#endif
}

/* The vector i-GELU over n elements (a whole per-tensor array, or one row of channels);
 * returns the elements done. */
static size_t qk__igelu32_vec(const qk_gelu_ibert_params *p, int pc, const int32_t *x, size_t n,
                              void *y, qk_dtype yt, int32_t zp, int32_t lo, int32_t hi) {
#if QK_X86
    if (qk__level() >= QK_LEVEL_AVX512) return qk__igelu32_avx512(p, 0, pc, x, n, y, yt, zp, lo, hi);
    if (qk__level() >= QK_LEVEL_AVX2) return qk__igelu32_avx2(p, 0, pc, x, n, y, yt, zp, lo, hi);
#endif
    (void)p; (void)pc; (void)x; (void)n; (void)y; (void)yt; (void)zp; (void)lo; (void)hi;
    return 0;
}

qk_status qk_gelu_ibert(const qk_gelu_ibert_params *p, const void *x, qk_dtype x_type,
                        int32_t x_zero_point, size_t n, void *y, qk_dtype y_type,
                        int32_t y_zero_point, int32_t y_min, int32_t y_max) {
    qk_status st = qk__gelu_check(p, x_type, x_zero_point, y_type, y_zero_point, y_min, y_max);
    if (st != QK_OK) return st;
    const size_t channels = p->channels;
    if (n % channels != 0) return QK_ERR_ARG;
    if (n == 0) return QK_OK;
    if (x == NULL || y == NULL) return QK_ERR_ARG;
    if (x_type != QK_DT_S32 && channels == 1 && n >= 512) {
        /* 8-bit input, one set of parameters: the exact result for each of the 256 bytes */
        uint8_t t8[256];
        int32_t t32[256];
        for (int bt = 0; bt < 256; bt++) {
            const int64_t xv = (x_type == QK_DT_U8 ? (int64_t)bt : (int64_t)(int8_t)(uint8_t)bt) -
                               x_zero_point;
            t32[bt] = qk__igelu_out(p, 0, xv, y_zero_point, y_min, y_max);
            t8[bt] = (uint8_t)t32[bt];
        }
        if (y_type != QK_DT_S32) {
            qk__lut8(t8, (const uint8_t *)x, n, (uint8_t *)y);
        } else {
            const uint8_t *xb = (const uint8_t *)x;
            int32_t *yo = (int32_t *)y;
            for (size_t i = 0; i < n; i++) yo[i] = t32[xb[i]];
        }
        return QK_OK;
    }
    if (x_type == QK_DT_S32 && x_zero_point == 0 && y_type != QK_DT_S32) {
        const int r = qk__igelu32f(p, (const int32_t *)x, n, (uint8_t *)y, y_type, y_zero_point,
                                   y_min, y_max);
        if (r < 0) return QK_ERR_NOMEM;
        if (r > 0) return QK_OK;
    }
    if (x_type == QK_DT_S32 && x_zero_point == 0 && qk__igelu32_simd_ok(p)) {
        const int32_t *xi = (const int32_t *)x;
        const size_t ysz = y_type == QK_DT_S32 ? 4 : 1;
        const size_t rl = channels == 1 ? n : channels; /* one pass, or one row of channels */
        for (size_t r0 = 0; r0 < n; r0 += rl) {
            char *yr = (char *)y + r0 * ysz;
            const size_t done = qk__igelu32_vec(p, channels > 1, xi + r0, rl, yr, y_type,
                                                y_zero_point, y_min, y_max);
            for (size_t i = done; i < rl; i++)
                qk__store(y_type, yr, i, qk__igelu_out(p, channels > 1 ? i : 0, xi[r0 + i],
                                                      y_zero_point, y_min, y_max));
        }
        return QK_OK;
    }
    for (size_t i = 0, ch = 0; i < n; i++) {
        const int64_t xv = qk__xval(x, x_type, i) - x_zero_point;
        qk__store(y_type, y, i, qk__igelu_out(p, ch, xv, y_zero_point, y_min, y_max));
        if (++ch == channels) ch = 0;
    }
    return QK_OK;
}

/* ---- qk_gelu_interp ---------------------------------------------------------------------- */
static qk_status qk__ginterp_check(const qk_gelu_interp_params *p, qk_dtype yt, int32_t yzp,
                                   int32_t lo, int32_t hi) {
    if (p == NULL || p->channels == 0 || p->in_multiplier == NULL || p->in_rshift == NULL ||
        p->multiplier == NULL || p->rshift == NULL || p->table == NULL)
        return QK_ERR_ARG;
    if (yt != QK_DT_U8 && yt != QK_DT_S8 && yt != QK_DT_S32) return QK_ERR_ARG;
    const int64_t tmin = yt == QK_DT_U8 ? 0 : (yt == QK_DT_S8 ? -128 : INT32_MIN);
    const int64_t tmax = yt == QK_DT_U8 ? 255 : (yt == QK_DT_S8 ? 127 : INT32_MAX);
    const qk_status st = qk__check_range(yzp, lo, hi, tmin, tmax);
    if (st != QK_OK) return st;
    for (size_t ch = 0; ch < p->channels; ch++) {
        if (p->in_multiplier[ch] < 0 || p->multiplier[ch] < 0) return QK_ERR_MULTIPLIER;
        if (p->in_rshift[ch] < 1 || p->in_rshift[ch] > 62 || p->rshift[ch] < 1 ||
            p->rshift[ch] > 62)
            return QK_ERR_SHIFT;
    }
    for (int i = 0; i < QK__GI_SEG; i++) {
        const int32_t a = p->table[i], b = p->table[QK__GI_SEG + i], c = p->table[2 * QK__GI_SEG + i];
        if (a <= -(1 << 17) || a >= (1 << 17) || b <= -(1 << 13) || b >= (1 << 13) ||
            c <= -(1 << 12) || c >= (1 << 12))
            return QK_ERR_ARG;
    }
    return QK_OK;
}

#if QK_X86
/* The AVX2 interp over all of x (checked parameters); 0: not applicable (nothing written), 1:
 * done, -1: out of memory. Channels are walked in column blocks of 128 (their constants, 8.5 KB,
 * stay in L1 over the rows). */
static int qk__ginterp2(const qk_gelu_interp_params *p, const int32_t *x, size_t n, void *y,
                        qk_dtype yt, int32_t zp, int32_t lo, int32_t hi) {
    const int out8 = yt != QK_DT_S32;
    if (!out8 && ((int64_t)hi - zp < (INT64_C(1) << 30) || (int64_t)zp - lo < (INT64_C(1) << 30)))
        return 0;
    const size_t C = p->channels, nb = C == 1 ? 1 : C / 8;
    if (nb == 0) return 0;
    qk__gi_blk *blk = (qk__gi_blk *)aligned_alloc(32, nb * sizeof(qk__gi_blk));
    if (blk == NULL) return -1;
    for (size_t ch = 0; ch < nb * 8; ch++)
        qk__gi_blk_set(blk + ch / 8, (int)(ch % 8), p, C == 1 ? 0 : ch, out8, zp);
    int64_t tq[QK__GI_SEG + 1];
    for (int i = 0; i < QK__GI_SEG; i++) {
        const uint32_t a = (uint32_t)(p->table[i] * 4096 + 2048);
        const uint32_t bc = (uint32_t)(uint16_t)p->table[QK__GI_SEG + i] |
                            ((uint32_t)(uint16_t)p->table[2 * QK__GI_SEG + i] << 16);
        tq[i] = (int64_t)(((uint64_t)bc << 32) | a);
    }
    tq[QK__GI_SEG] = 0;
    /* the vpshufb table (gelu_isa.h qk__gi_shuf) when every A fits int16 (the prepared table:
     * A <= 11139); segments from `last` (the first of the zero tail, or 96) read as 0 */
    qk__gi_shuf *sh = NULL, shv;
    int a16 = 1, c8 = 1, last = 0;
    for (int i = 0; i < QK__GI_SEG; i++) {
        if (p->table[i] < INT16_MIN || p->table[i] > INT16_MAX) a16 = 0;
        if (p->table[2 * QK__GI_SEG + i] < INT8_MIN || p->table[2 * QK__GI_SEG + i] > INT8_MAX) c8 = 0;
        if (p->table[i] != 0 || p->table[QK__GI_SEG + i] != 0 || p->table[2 * QK__GI_SEG + i] != 0)
            last = i + 1;
    }
    if (a16) {
        shv.last = last;
        shv.c8 = c8;
        shv.nch = last / 16 + 1;
        for (int j = 0; j < 6; j++) {
            uint8_t prev[16] = {0};
            for (int c = 0; c < shv.nch; c++) {
                uint8_t cur[16], d[32];
                for (int e = 0; e < 16; e++) {
                    const int i = 16 * c + e;
                    const int32_t v = i < QK__GI_SEG ? p->table[(j / 2) * QK__GI_SEG + i] : 0;
                    cur[e] = (uint8_t)((uint32_t)v >> (8 * (j & 1)));
                    d[e] = d[16 + e] = (uint8_t)(cur[e] ^ prev[e]);
                }
                memcpy(&shv.d[j][c], d, 32);
                memcpy(prev, cur, 16);
            }
        }
        sh = &shv;
    }
    const int sg = yt == QK_DT_S8;
    const size_t ysz = out8 ? 1 : 4;
    char *yc = (char *)y;
    if (C == 1) {
        const size_t nv = n / 8;
        qk__gi2_avx2(blk, tq, sh, p, 0, 0, x, nv, y, out8, sg, zp, lo, hi);
        for (size_t i = nv * 8; i < n; i++)
            qk__store(yt, y, i, qk__ginterp_one(p, 0, x[i], zp, lo, hi));
    } else {
        const size_t rows = n / C, cb = 16;
        for (size_t b0 = 0; b0 < nb; b0 += cb) {
            const size_t nbb = nb - b0 < cb ? nb - b0 : cb;
            for (size_t r = 0; r < rows; r++) {
                const size_t o = r * C + 8 * b0;
                qk__gi2_avx2(blk + b0, tq, sh, p, 8 * b0, 1, x + o, nbb, yc + o * ysz, out8, sg,
                             zp, lo, hi);
            }
        }
        for (size_t r = 0; r < rows; r++)
            for (size_t ch = nb * 8; ch < C; ch++)
                qk__store(yt, y, r * C + ch, qk__ginterp_one(p, ch, x[r * C + ch], zp, lo, hi));
    }
    free(blk);
    return 1;
}
#endif

qk_status qk_gelu_interp(const qk_gelu_interp_params *p, const int32_t *x, size_t n, void *y,
                         qk_dtype y_type, int32_t y_zero_point, int32_t y_min, int32_t y_max) {
    const qk_status st = qk__ginterp_check(p, y_type, y_zero_point, y_min, y_max);
    if (st != QK_OK) return st;
    const size_t channels = p->channels;
    if (n % channels != 0) return QK_ERR_ARG;
    if (n == 0) return QK_OK;
    if (x == NULL || y == NULL) return QK_ERR_ARG;
    const size_t ysz = y_type == QK_DT_S32 ? 4 : 1;
    const size_t rl = channels == 1 ? n : channels; /* one pass, or one row of channels */
#if QK_X86
    const int lvl = qk__level() >= QK_LEVEL_AVX512 ? 2 : (qk__level() >= QK_LEVEL_AVX2 ? 1 : 0);
#else
    const int lvl = 0;
#endif
#if QK_X86
    if (lvl == 1) {
        const int r = qk__ginterp2(p, x, n, y, y_type, y_zero_point, y_min, y_max);
        if (r < 0) return QK_ERR_NOMEM;
        if (r > 0) return QK_OK;
    }
#endif
    for (size_t r0 = 0; r0 < n; r0 += rl) {
        char *yr = (char *)y + r0 * ysz;
        size_t done = 0;
#if QK_X86
        if (lvl == 2)
            done = qk__ginterp_avx512(p, channels > 1, x + r0, rl, yr, y_type, y_zero_point,
                                      y_min, y_max);
        else if (lvl == 1)
            done = qk__ginterp_avx2(p, channels > 1, x + r0, rl, yr, y_type, y_zero_point,
                                    y_min, y_max);
#endif
        for (size_t i = done; i < rl; i++)
            qk__store(y_type, yr, i, qk__ginterp_one(p, channels > 1 ? i : 0, x[r0 + i],
                                                    y_zero_point, y_min, y_max));
    }
    (void)lvl;
    return QK_OK;
}
