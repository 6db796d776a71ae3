/* softmax.c -- integer softmax over the last axis (rows of `cols` elements): I-BERT's i-exp
 * polynomial, SOLE's E2Softmax and a 256-entry exponent table; uint8 probabilities (scale 1/256)
 * or SOLE's log2-quantized form. The arithmetic, step by step, is in qkernels.h.
 *
 * Every method maps an element to an integer "exponent value" V_i that depends only on the
 * difference d_i = max_j x_j - x_i >= 0 of its row, then normalizes the row with V_i and
 * sum_j V_j. With 8-bit inputs d_i is in [0, 255], so a call first evaluates the method's exact
 * integer arithmetic once for each of the 256 differences (a table; for QK_SOFTMAX_LUT the table
 * is the prepared one) and the rows then only look values up: the same integers as evaluating
 * each element, at the cost of 256 evaluations a call. int32 inputs are evaluated element by
 * element (I-BERT and SOLE only): I-BERT's i-exp 8 (AVX-512) or 4 (AVX2) at a time, SOLE's
 * Log2Exp in scalar C.
 *
 * The row loops (maximum, table look-up and sum, normalization) have AVX2 and AVX-512 (F + BW)
 * versions beside the portable scalar twin; all give the same bits.
 */
#include "core/core.h"

#include <stdlib.h>
#include <string.h>

#if QK_X86
#include <immintrin.h>
#endif

/* ---- the exact integer arithmetic of each method, one element ------------------------------ */

/* RNE(v / 2^sh) for 0 <= v < 2^63, sh >= 0 (sh >= 64 gives 0). Written without data-dependent
 * branches (the shift changes with q from element to element): selects, not jumps. */
static inline int64_t qk__rne_shift_pos(int64_t v, int sh) {
    if (sh == 0) return v; /* only with hand-made parameters (e16 = 30) */
    const int s = sh < 62 ? sh : 62;
    const int64_t q = v >> s, rem = v & ((INT64_C(1) << s) - 1), half = INT64_C(1) << (s - 1);
    const int64_t r = q + ((rem > half) | ((rem == half) & (int)(q & 1)));
    /* sh >= 63: v / 2^sh < 1; it rounds to 1 only when sh == 63 and v > 2^62 */
    const int64_t big = sh == 63 ? (int64_t)(v > (INT64_C(1) << 62)) : 0;
    return sh <= 62 ? r : big;
}

/* I-BERT i-exp of d = x - max <= 0, requantized to 16 bits (see qkernels.h). */
static inline uint32_t qk__ibert_exp16(const qk_softmax_params *p, int64_t d) {
    const int64_t x0 = p->x0;
    if (d < 30 * x0) d = 30 * x0;
    /* q = floor(d / x0) >= 0 (d <= 0, x0 < 0). The double quotient of |d| < 2^38 by x0 is within
     * one of it (relative error 2^-52); the integer checks below make it exact without an idiv. */
    int64_t q = (int64_t)((double)d / (double)x0);
    q -= x0 * q < d;        /* x0 q must be >= d */
    q += x0 * (q + 1) >= d; /* and x0 (q + 1) < d */
    const int64_t r = d - x0 * q; /* in (x0, 0] */
    const int64_t z = (r + p->b) * r + p->c;
    if (z <= 0) return 0; /* I-BERT clamps exp_int at 0 */
    /* e = z << (30 - q); e16 = RNE(e * m16 / 2^e16) = RNE(z * m16 / 2^(e16 - 30 + q)) exactly */
    const int64_t v = z * (int64_t)p->m16; /* z < 2^32, m16 < 2^31 (checked) */
    const int64_t e16 = qk__rne_shift_pos(v, p->e16 - 30 + (int)q);
    return (uint32_t)(e16 > 32767 ? 32767 : e16);
}

/* SOLE Log2Exp of d = x - max <= 0: k in [0, 15]. */
static inline uint32_t qk__sole_k(const qk_softmax_params *p, int64_t d) {
    const int64_t prod = d * (int64_t)p->sole_mult; /* |d| < 2^32, mult <= 2^30 */
    /* v = floor(prod / 2^shift): arithmetic shift of a negative value rounds toward -inf */
    const int64_t v = prod >> p->sole_shift;
    const int64_t t = v + (v >> 1) - (v >> 4); /* ~ 1.4375 v = v log2(e), shifts and adds */
    const int64_t k = p->sole_round ? -((t + 32768) >> 16) : -(t >> 16);
    return (uint32_t)(k > 15 ? 15 : k);
}

/* ---- parameter checks ------------------------------------------------------------------------ */
static qk_status qk__softmax_check(const qk_softmax_params *p, qk_dtype xt) {
    if (p == NULL) return QK_ERR_ARG;
    if (xt != QK_DT_U8 && xt != QK_DT_S8 && xt != QK_DT_S32) return QK_ERR_ARG;
    switch (p->method) {
        case QK_SOFTMAX_IBERT:
            if (p->x0 >= 0 || p->x0 < -((INT64_C(1) << 31))) return QK_ERR_ARG;
            if (p->b < 0 || p->b >= (INT64_C(1) << 32)) return QK_ERR_ARG;
            if (p->c < 1 || p->c > INT32_MAX) return QK_ERR_ARG;
            /* z = (r + b) r + c with r in (x0, 0]: |z| < 2^32 keeps z * m16 < 2^63 */
            if (-p->x0 * (-p->x0 + p->b) + p->c >= (INT64_C(1) << 32)) return QK_ERR_ARG;
            if (p->m16 < 0 || p->e16 < 30 || p->e16 > 126) return QK_ERR_ARG;
            return QK_OK;
        case QK_SOFTMAX_SOLE:
            if (p->sole_mult < 0 || p->sole_mult > (1 << 30)) return QK_ERR_ARG;
            if (p->sole_shift < 0 || p->sole_shift > 62) return QK_ERR_ARG;
            if (p->sole_round != 0 && p->sole_round != 1) return QK_ERR_ARG;
            return QK_OK;
        case QK_SOFTMAX_LUT:
            if (xt == QK_DT_S32) return QK_ERR_ARG;
            for (int i = 0; i < 256; i++)
                if (p->lut[i] > 32768) return QK_ERR_ARG;
            if (p->lut[0] == 0) return QK_ERR_ARG;
            return QK_OK;
        default: return QK_ERR_ARG;
    }
}

/* The tables of the 256 differences of 8-bit input: V[d] (the exponent value) and the value the
 * row loops keep per element, w16[d]: V for I-BERT and the LUT (<= 32768), k for SOLE. */
static void qk__softmax_table(const qk_softmax_params *p, uint32_t *vt, uint16_t *w16) {
    for (int d = 0; d < 256; d++) {
        if (p->method == QK_SOFTMAX_IBERT) {
            vt[d] = qk__ibert_exp16(p, -d);
            w16[d] = (uint16_t)vt[d];
        } else if (p->method == QK_SOFTMAX_SOLE) {
            const uint32_t k = qk__sole_k(p, -d);
            w16[d] = (uint16_t)k;
            vt[d] = UINT32_C(1) << (16 - k);
        } else {
            vt[d] = p->lut[d];
            w16[d] = (uint16_t)vt[d];
        }
    }
}

/* ---- row kernels (8-bit input): max, look-up + sum, normalization ----------------------------
 * Per element the loops keep w (uint16): V for I-BERT / the LUT, k for SOLE (V = 2^(16-k)).
 * Normalization of I-BERT and the LUT: y = min((V f + rnd) >> 24, 255), f = floor(2^32 / sum);
 * SOLE: y = ((C << (16 - k)) + 2^(w-1)) >> w. */
typedef struct {
    int sole;        /* SOLE's normalization */
    uint64_t f, rnd; /* I-BERT / LUT */
    uint32_t cmul;   /* SOLE: C (209 or 145) */
    int w;           /* SOLE: leading one of the sum */
} qk__norm;

static void qk__norm_setup(const qk_softmax_params *p, uint64_t sum, qk__norm *nm,
                           uint8_t *row_bit) {
    memset(nm, 0, sizeof *nm);
    if (p->method == QK_SOFTMAX_SOLE) {
        /* sum >= 2^16 (the row's maximum has k = 0) */
        int w = 0;
        while ((sum >> (w + 1)) != 0) w++;
        const int bit = (int)((sum >> (w - 1)) & 1);
        nm->sole = 1;
        nm->w = w;
        nm->cmul = bit ? QK_SOLE_C1 : QK_SOLE_C0;
        if (row_bit) *row_bit = (uint8_t)bit;
    } else {
        nm->f = sum ? (UINT64_C(1) << 32) / sum : 0;
        nm->rnd = p->method == QK_SOFTMAX_LUT ? (UINT64_C(1) << 23) : 0;
    }
}

static void qk__norm_row_scalar(const qk__norm *nm, const uint16_t *v, size_t n, uint8_t *y) {
    if (nm->sole) {
        for (size_t i = 0; i < n; i++)
            y[i] = (uint8_t)((((uint64_t)nm->cmul << (16 - v[i])) + (UINT64_C(1) << (nm->w - 1))) >>
                             nm->w);
    } else {
        for (size_t i = 0; i < n; i++) {
            const uint64_t q = ((uint64_t)v[i] * nm->f + nm->rnd) >> 24;
            y[i] = (uint8_t)(q > 255 ? 255 : q);
        }
    }
}

static int32_t qk__row_max8_scalar(const void *x, qk_dtype t, size_t n) {
    int32_t m = t == QK_DT_U8 ? 0 : -128;
    if (t == QK_DT_U8) {
        const uint8_t *s = (const uint8_t *)x;
        for (size_t i = 0; i < n; i++) m = s[i] > m ? s[i] : m;
    } else {
        const int8_t *s = (const int8_t *)x;
        for (size_t i = 0; i < n; i++) m = s[i] > m ? s[i] : m;
    }
    return m;
}

/* w16[mx - x_i] of each element into v, and the sum of the V (uint64) */
static uint64_t qk__row_lookup8_scalar(const void *x, qk_dtype t, size_t n, int32_t mx,
                                       const uint16_t *w16, int sole, uint16_t *v) {
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++) {
        const int32_t xi = t == QK_DT_U8 ? (int32_t)((const uint8_t *)x)[i]
                                         : (int32_t)((const int8_t *)x)[i];
        v[i] = w16[mx - xi];
        s += sole ? (UINT64_C(1) << (16 - v[i])) : v[i];
    }
    return s;
}

#if QK_X86
/* AVX2: 32 bytes at a time for the maximum, 8 gathers of the (32-bit) table at a time. */
QK_TARGET_AVX2 static int32_t qk__row_max8_avx2(const void *x, qk_dtype t, size_t n) {
    const uint8_t *s = (const uint8_t *)x;
    /* signed input: flip to unsigned order (x ^ 0x80), take the unsigned max, flip back */
    const __m256i flip = _mm256_set1_epi8(t == QK_DT_S8 ? (char)0x80 : 0);
    __m256i m = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
        m = _mm256_max_epu8(m, _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(s + i)), flip));
    __m128i h = _mm_max_epu8(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
    h = _mm_max_epu8(h, _mm_srli_si128(h, 8));
    h = _mm_max_epu8(h, _mm_srli_si128(h, 4));
    h = _mm_max_epu8(h, _mm_srli_si128(h, 2));
    h = _mm_max_epu8(h, _mm_srli_si128(h, 1));
    int32_t mu = _mm_cvtsi128_si32(h) & 0xFF;
    const int32_t fl = t == QK_DT_S8 ? 0x80 : 0;
    for (; i < n; i++) {
        const int32_t u = s[i] ^ fl;
        mu = u > mu ? u : mu;
    }
    return t == QK_DT_S8 ? mu - 128 : mu;
}

QK_TARGET_AVX2 static uint64_t qk__row_lookup8_avx2(const void *x, qk_dtype t, size_t n,
                                                    int32_t mx, const uint32_t *w32, int sole,
                                                    uint16_t *v) {
    const uint8_t *s = (const uint8_t *)x;
    const __m256i vmx = _mm256_set1_epi32(mx);
    const __m256i one = _mm256_set1_epi32(1), sixteen = _mm256_set1_epi32(16);
    __m256i acc = _mm256_setzero_si256(); /* 8 uint32 lanes, each <= n/8 * 2^16 */
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m128i b = _mm_loadl_epi64((const __m128i *)(s + i));
        const __m256i xi = t == QK_DT_U8 ? _mm256_cvtepu8_epi32(b) : _mm256_cvtepi8_epi32(b);
        const __m256i g = _mm256_i32gather_epi32((const int *)w32, _mm256_sub_epi32(vmx, xi), 4);
        acc = _mm256_add_epi32(acc, sole ? _mm256_sllv_epi32(one, _mm256_sub_epi32(sixteen, g)) : g);
        const __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(g, g), 0x08);
        _mm_storeu_si128((__m128i *)(v + i), _mm256_castsi256_si128(p));
    }
    uint32_t lanes[8];
    _mm256_storeu_si256((__m256i *)lanes, acc);
    uint64_t sum = 0;
    for (int l = 0; l < 8; l++) sum += lanes[l];
    uint16_t w16[256];
    for (int d = 0; d < 256; d++) w16[d] = (uint16_t)w32[d];
    return sum + qk__row_lookup8_scalar(s + i, t, n - i, mx, w16, sole, v + i);
}

QK_TARGET_AVX2 static void qk__norm_row_avx2(const qk__norm *nm, const uint16_t *v, size_t n,
                                             uint8_t *y) {
    size_t i = 0;
    if (nm->sole) {
        if (nm->w <= 31) { /* C 2^(16-k) < 2^24, + 2^(w-1) < 2^32 */
            const __m256i c = _mm256_set1_epi32((int32_t)nm->cmul);
            const __m256i r = _mm256_set1_epi32((int32_t)(UINT32_C(1) << (nm->w - 1)));
            const __m256i sixteen = _mm256_set1_epi32(16);
            const __m128i sh = _mm_cvtsi32_si128(nm->w);
            for (; i + 8 <= n; i += 8) {
                const __m256i k = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(v + i)));
                __m256i q = _mm256_sllv_epi32(c, _mm256_sub_epi32(sixteen, k));
                q = _mm256_srl_epi32(_mm256_add_epi32(q, r), sh);
                const __m128i w16 = _mm_packus_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
                _mm_storel_epi64((__m128i *)(y + i), _mm_packus_epi16(w16, w16));
            }
        }
    } else if (nm->f <= UINT32_MAX) { /* f = 2^32 (a sum of 1) needs the scalar loop */
        const __m256i f = _mm256_set1_epi64x((long long)nm->f);
        const __m256i r = _mm256_set1_epi64x((long long)nm->rnd);
        const __m256i lim = _mm256_set1_epi32(255);
        for (; i + 8 <= n; i += 8) {
            const __m256i vv = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(v + i)));
            /* V * f in 64-bit lanes (V <= sum, f = floor(2^32 / sum) < 2^32: V f <= 2^32) */
            const __m256i pe = _mm256_srli_epi64(_mm256_add_epi64(_mm256_mul_epu32(vv, f), r), 24);
            const __m256i po = _mm256_srli_epi64(
                _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(vv, 32), f), r), 24);
            /* even results in the low dwords, odd ones moved to the high dwords (< 2^9 each) */
            __m256i q = _mm256_or_si256(pe, _mm256_slli_epi64(po, 32));
            q = _mm256_min_epu32(q, lim);
            const __m128i w16 = _mm_packus_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
            _mm_storel_epi64((__m128i *)(y + i), _mm_packus_epi16(w16, w16));
        }
    }
    qk__norm_row_scalar(nm, v + i, n - i, y + i);
}

/* AVX-512 (F + BW): 64 bytes at a time for the maximum; the 256-entry uint16 table in eight
 * registers, 32 look-ups with four vpermi2w and three blends on the index's bits 6 and 7. */
QK_TARGET_AVX512 static int32_t qk__row_max8_avx512(const void *x, qk_dtype t, size_t n) {
    const uint8_t *s = (const uint8_t *)x;
    const __m512i flip = _mm512_set1_epi8(t == QK_DT_S8 ? (char)0x80 : 0);
    __m512i m = _mm512_setzero_si512();
    size_t i = 0;
    for (; i + 64 <= n; i += 64)
        m = _mm512_max_epu8(m, _mm512_xor_si512(_mm512_loadu_si512((const void *)(s + i)), flip));
    if (i < n) { /* masked tail: the masked-off lanes stay 0, the smallest unsigned value */
        const __mmask64 k = (__mmask64)((~0ull) >> (64 - (n - i)));
        m = _mm512_max_epu8(m, _mm512_maskz_mov_epi8(k, _mm512_xor_si512(_mm512_maskz_loadu_epi8(k, s + i), flip)));
    }
    __m256i h = _mm256_max_epu8(_mm512_castsi512_si256(m), _mm512_extracti64x4_epi64(m, 1));
    __m128i g = _mm_max_epu8(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    g = _mm_max_epu8(g, _mm_srli_si128(g, 8));
    g = _mm_max_epu8(g, _mm_srli_si128(g, 4));
    g = _mm_max_epu8(g, _mm_srli_si128(g, 2));
    g = _mm_max_epu8(g, _mm_srli_si128(g, 1));
    const int32_t mu = _mm_cvtsi128_si32(g) & 0xFF;
    return t == QK_DT_S8 ? mu - 128 : mu;
}

QK_TARGET_AVX512 static uint64_t qk__row_lookup8_avx512(const void *x, qk_dtype t, size_t n,
                                                        int32_t mx, const uint16_t *w16,
                                                        int sole, uint16_t *v) {
    const uint8_t *s = (const uint8_t *)x;
    __m512i tb[8];
    for (int q = 0; q < 8; q++) tb[q] = _mm512_loadu_si512((const void *)(w16 + 32 * q));
    const __m512i vmx = _mm512_set1_epi16((short)mx);
    const __m512i b6 = _mm512_set1_epi16(64), b7 = _mm512_set1_epi16(128);
    const __m512i one = _mm512_set1_epi32(1), sixteen = _mm512_set1_epi32(16);
    __m512i acc = _mm512_setzero_si512();
    for (size_t i = 0; i < n; i += 32) {
        const size_t cnt = n - i < 32 ? n - i : 32;
        const __mmask32 k = cnt == 32 ? ~(__mmask32)0 : (((__mmask32)1 << cnt) - 1);
        const __m256i b = _mm512_castsi512_si256(_mm512_maskz_loadu_epi8((__mmask64)k, s + i));
        const __m512i xi = t == QK_DT_U8 ? _mm512_cvtepu8_epi16(b) : _mm512_cvtepi8_epi16(b);
        const __m512i d = _mm512_sub_epi16(vmx, xi); /* 0..255 in the active lanes */
        const __m512i r0 = _mm512_permutex2var_epi16(tb[0], d, tb[1]);
        const __m512i r1 = _mm512_permutex2var_epi16(tb[2], d, tb[3]);
        const __m512i r2 = _mm512_permutex2var_epi16(tb[4], d, tb[5]);
        const __m512i r3 = _mm512_permutex2var_epi16(tb[6], d, tb[7]);
        const __mmask32 m6 = _mm512_test_epi16_mask(d, b6), m7 = _mm512_test_epi16_mask(d, b7);
        const __m512i w = _mm512_mask_blend_epi16(m7, _mm512_mask_blend_epi16(m6, r0, r1),
                                                  _mm512_mask_blend_epi16(m6, r2, r3));
        _mm512_mask_storeu_epi16(v + i, k, w);
        /* the sum: masked-off lanes as 0 (V), or as k = 31 (SOLE: 1 << (16 - 31) is 0 in vpsllvd) */
        const __m512i ws = sole ? _mm512_mask_mov_epi16(_mm512_set1_epi16(31), k, w)
                                : _mm512_maskz_mov_epi16(k, w);
        /* the two halves as uint32 (lane order does not matter for a sum) */
        __m512i lo = _mm512_unpacklo_epi16(ws, _mm512_setzero_si512());
        __m512i hi = _mm512_unpackhi_epi16(ws, _mm512_setzero_si512());
        if (sole) {
            lo = _mm512_sllv_epi32(one, _mm512_sub_epi32(sixteen, lo));
            hi = _mm512_sllv_epi32(one, _mm512_sub_epi32(sixteen, hi));
        }
        acc = _mm512_add_epi32(acc, _mm512_add_epi32(lo, hi));
    }
    /* lanes <= n/16 * 2^16: summed in 64 bits */
    const __m512i lo = _mm512_cvtepu32_epi64(_mm512_castsi512_si256(acc));
    const __m512i hi = _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64(acc, 1));
    return (uint64_t)_mm512_reduce_add_epi64(_mm512_add_epi64(lo, hi));
}

QK_TARGET_AVX512 static void qk__norm_row_avx512(const qk__norm *nm, const uint16_t *v, size_t n,
                                                 uint8_t *y) {
    size_t i = 0;
    if (nm->sole) {
        if (nm->w > 31) {
            memset(y, 0, n); /* C 2^16 < 2^24 <= 2^(w-1): every output rounds to 0 */
            return;
        }
        const __m512i c = _mm512_set1_epi32((int32_t)nm->cmul);
        const __m512i r = _mm512_set1_epi32((int32_t)(UINT32_C(1) << (nm->w - 1)));
        const __m512i sixteen = _mm512_set1_epi32(16);
        const __m128i sh = _mm_cvtsi32_si128(nm->w);
        for (; i < n; i += 16) {
            const size_t cnt = n - i < 16 ? n - i : 16;
            const __mmask16 k = (__mmask16)(cnt == 16 ? 0xFFFFu : (1u << cnt) - 1u);
            const __m512i kk = _mm512_cvtepu16_epi32(
                _mm512_castsi512_si256(_mm512_maskz_loadu_epi16((__mmask32)k, v + i)));
            __m512i q = _mm512_sllv_epi32(c, _mm512_sub_epi32(sixteen, kk));
            q = _mm512_srl_epi32(_mm512_add_epi32(q, r), sh);
            __m128i bq = _mm512_cvtepi32_epi8(q); /* < 2^8 */
            __asm__("" : "+v"(bq)); /* register vpmovdb, then a masked store (see vnni.c) */
            _mm512_mask_storeu_epi8(y + i, (__mmask64)k, _mm512_castsi128_si512(bq));
        }
        return;
    }
    if (nm->f > UINT32_MAX || nm->f == 0) { /* f = 2^32 (a sum of 1) needs 33 bits */
        qk__norm_row_scalar(nm, v, n, y);
        return;
    }
    /* V f + rnd in 32-bit lanes: it reaches 2^32 (then the result is >= 256: 255) exactly when
     * V >= vt = ceil((2^32 - rnd) / f); below, the low 32 bits are the whole sum */
    const __m512i f = _mm512_set1_epi32((int32_t)(uint32_t)nm->f);
    const __m512i r = _mm512_set1_epi32((int32_t)(uint32_t)nm->rnd);
    const uint64_t vt64 = ((UINT64_C(1) << 32) - nm->rnd + nm->f - 1) / nm->f;
    const __m512i vt = _mm512_set1_epi32((int32_t)(uint32_t)(vt64 > 65536 ? 65536 : vt64));
    const __m512i lim = _mm512_set1_epi32(255);
    for (; i + 16 <= n; i += 16) { /* whole vectors, then the masked tail */
        const __m512i vv = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(v + i)));
        __m512i q = _mm512_srli_epi32(_mm512_add_epi32(_mm512_mullo_epi32(vv, f), r), 24);
        q = _mm512_mask_mov_epi32(q, _mm512_cmpge_epu32_mask(vv, vt), lim);
        _mm_storeu_si128((__m128i *)(y + i), _mm512_cvtepi32_epi8(q));
    }
    for (; i < n; i += 16) {
        const size_t cnt = n - i < 16 ? n - i : 16;
        const __mmask16 k = (__mmask16)(cnt == 16 ? 0xFFFFu : (1u << cnt) - 1u);
        const __m512i vv = _mm512_cvtepu16_epi32(
            _mm512_castsi512_si256(_mm512_maskz_loadu_epi16((__mmask32)k, v + i)));
        __m512i q = _mm512_srli_epi32(_mm512_add_epi32(_mm512_mullo_epi32(vv, f), r), 24);
        q = _mm512_mask_mov_epi32(q, _mm512_cmpge_epu32_mask(vv, vt), lim);
        __m128i bq = _mm512_cvtepi32_epi8(q);
        __asm__("" : "+v"(bq));
        _mm512_mask_storeu_epi8(y + i, (__mmask64)k, _mm512_castsi128_si512(bq));
    }
}
#endif

static int32_t qk__row_max32_scalar(const int32_t *x, size_t n) {
    int32_t m = x[0];
    for (size_t i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

#if QK_X86
QK_TARGET_AVX512 static int32_t qk__row_max32_avx512(const int32_t *x, size_t n) {
    __m512i m = _mm512_set1_epi32(INT32_MIN);
    for (size_t i = 0; i < n; i += 16) {
        const size_t cnt = n - i < 16 ? n - i : 16;
        const __mmask16 k = (__mmask16)(cnt == 16 ? 0xFFFFu : (1u << cnt) - 1u);
        m = _mm512_mask_max_epi32(m, k, m, _mm512_maskz_loadu_epi32(k, x + i));
    }
    return _mm512_reduce_max_epi32(m);
}

QK_TARGET_AVX2 static int32_t qk__row_max32_avx2(const int32_t *x, size_t n) {
    __m256i m = _mm256_set1_epi32(INT32_MIN);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) m = _mm256_max_epi32(m, _mm256_loadu_si256((const __m256i *)(x + i)));
    int32_t l[8];
    _mm256_storeu_si256((__m256i *)l, m);
    int32_t r = l[0];
    for (int j = 1; j < 8; j++) r = l[j] > r ? l[j] : r;
    for (; i < n; i++) r = x[i] > r ? x[i] : r;
    return r;
}
#endif

/* ---- int32 input, I-BERT: the i-exp on 8 (AVX-512) or 4 (AVX2) elements at a time -------------
 * The same integers as qk__ibert_exp16, for parameters whose intermediates fit 32-bit lanes
 * (every prepared set; hand-made ones that do not take the scalar loop): 30 |x0| < 2^31,
 * b >= |x0| and |x0| (|x0| + b) < 2^31 make d (after the clip), q, r and z int32, and e16 >= 31
 * keeps the shift >= 1. q starts from d * (1/x0) in double (within one of floor(d / x0): |d| < 2^31,
 * relative error 2^-51) and two integer compares make it exact. z m16 < 2^62 is one vpmuludq;
 * the RNE shift varies per lane (vpsrlvq). */
static int qk__ibert32_simd_ok(const qk_softmax_params *p) {
    const int64_t ax0 = -p->x0;
    return 30 * ax0 < (INT64_C(1) << 31) && p->b >= ax0 &&
           ax0 * (ax0 + p->b) < (INT64_C(1) << 31) && p->e16 >= 31;
}

#if QK_X86
QK_TARGET_AVX512 static size_t qk__ibert32_avx512(const qk_softmax_params *p, const int32_t *x,
                                                  size_t n, int32_t mx, uint16_t *v,
                                                  uint64_t *sum) {
    const __m512i vmx = _mm512_set1_epi64(mx), clip = _mm512_set1_epi64(30 * p->x0);
    const __m256i x0 = _mm256_set1_epi32((int32_t)p->x0), b = _mm256_set1_epi32((int32_t)p->b);
    const __m256i c = _mm256_set1_epi32((int32_t)p->c), one32 = _mm256_set1_epi32(1);
    const __m256i shoff = _mm256_set1_epi32(p->e16 - 30);
    const __m512d inv = _mm512_set1_pd(1.0 / (double)p->x0); /* estimate; corrected below */
    const __m512i m16 = _mm512_set1_epi64(p->m16), one = _mm512_set1_epi64(1);
    const __m512i lim = _mm512_set1_epi64(32767), s63 = _mm512_set1_epi64(63);
    __m512i acc = _mm512_setzero_si512();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m512i d64 = _mm512_sub_epi64(
            _mm512_cvtepi32_epi64(_mm256_loadu_si256((const __m256i *)(x + i))), vmx);
        d64 = _mm512_max_epi64(d64, clip);
        const __m256i d = _mm512_cvtepi64_epi32(d64);
        __m256i q = _mm512_cvttpd_epi32(_mm512_mul_pd(_mm512_cvtepi32_pd(d), inv));
        q = _mm256_add_epi32(q, _mm256_cmpgt_epi32(d, _mm256_mullo_epi32(x0, q)));  /* q-- */
        q = _mm256_add_epi32(_mm256_add_epi32(q, one32), /* q++ unless d > x0 (q+1) */
                             _mm256_cmpgt_epi32(d, _mm256_mullo_epi32(x0, _mm256_add_epi32(q, one32))));
        const __m256i r = _mm256_sub_epi32(d, _mm256_mullo_epi32(x0, q));
        __m256i z = _mm256_add_epi32(_mm256_mullo_epi32(_mm256_add_epi32(r, b), r), c);
        z = _mm256_max_epi32(z, _mm256_setzero_si256());                 /* exp clamped at 0 */
        const __m512i prod = _mm512_mul_epu32(_mm512_cvtepu32_epi64(z), m16);
        const __m512i sh = _mm512_cvtepi32_epi64(_mm256_add_epi32(q, shoff));
        __m512i qq = _mm512_srlv_epi64(prod, sh);
        const __m512i rem = _mm512_and_si512(prod, _mm512_sub_epi64(_mm512_sllv_epi64(one, sh), one));
        const __m512i half = _mm512_sllv_epi64(one, _mm512_sub_epi64(sh, one));
        const __mmask8 up = _mm512_cmpgt_epu64_mask(rem, half) |
                            (_mm512_cmpeq_epi64_mask(rem, half) & _mm512_test_epi64_mask(qq, one));
        qq = _mm512_mask_add_epi64(qq, up, qq, one);
        qq = _mm512_maskz_mov_epi64(_mm512_cmple_epi64_mask(sh, s63), qq); /* shift >= 64: 0 */
        qq = _mm512_min_epu64(qq, lim);
        acc = _mm512_add_epi64(acc, qq);
        _mm_storeu_si128((__m128i *)(v + i), _mm512_cvtepi64_epi16(qq));
    }
    *sum += (uint64_t)_mm512_reduce_add_epi64(acc);
    return i;
}

QK_TARGET_AVX2 static size_t qk__ibert32_avx2(const qk_softmax_params *p, const int32_t *x,
                                              size_t n, int32_t mx, uint16_t *v, uint64_t *sum) {
    const __m256i vmx = _mm256_set1_epi64x(mx), clip = _mm256_set1_epi64x(30 * p->x0);
    const __m128i x0 = _mm_set1_epi32((int32_t)p->x0), b = _mm_set1_epi32((int32_t)p->b);
    const __m128i c = _mm_set1_epi32((int32_t)p->c), one32 = _mm_set1_epi32(1);
    const __m128i shoff = _mm_set1_epi32(p->e16 - 30);
    const __m256d inv = _mm256_set1_pd(1.0 / (double)p->x0);
    const __m256i m16 = _mm256_set1_epi64x(p->m16), one = _mm256_set1_epi64x(1);
    const __m256i lim = _mm256_set1_epi64x(32767), s63 = _mm256_set1_epi64x(63);
    const __m256i lo32 = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
    __m256i acc = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256i d64 = _mm256_sub_epi64(_mm256_cvtepi32_epi64(_mm_loadu_si128((const __m128i *)(x + i))), vmx);
        d64 = _mm256_blendv_epi8(d64, clip, _mm256_cmpgt_epi64(clip, d64));
        const __m128i d = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(d64, lo32));
        __m128i q = _mm256_cvttpd_epi32(_mm256_mul_pd(_mm256_cvtepi32_pd(d), inv));
        q = _mm_add_epi32(q, _mm_cmpgt_epi32(d, _mm_mullo_epi32(x0, q)));
        q = _mm_add_epi32(_mm_add_epi32(q, one32),
                          _mm_cmpgt_epi32(d, _mm_mullo_epi32(x0, _mm_add_epi32(q, one32))));
        const __m128i r = _mm_sub_epi32(d, _mm_mullo_epi32(x0, q));
        __m128i z = _mm_add_epi32(_mm_mullo_epi32(_mm_add_epi32(r, b), r), c);
        z = _mm_max_epi32(z, _mm_setzero_si128());
        const __m256i prod = _mm256_mul_epu32(_mm256_cvtepu32_epi64(z), m16);
        const __m256i sh = _mm256_cvtepi32_epi64(_mm_add_epi32(q, shoff));
        __m256i qq = _mm256_srlv_epi64(prod, sh);
        const __m256i rem = _mm256_and_si256(prod, _mm256_sub_epi64(_mm256_sllv_epi64(one, sh), one));
        const __m256i half = _mm256_sllv_epi64(one, _mm256_sub_epi64(sh, one));
        /* rem, half < 2^63: the signed compare is the unsigned one */
        const __m256i up = _mm256_or_si256(
            _mm256_cmpgt_epi64(rem, half),
            _mm256_and_si256(_mm256_cmpeq_epi64(rem, half),
                             _mm256_cmpeq_epi64(_mm256_and_si256(qq, one), one)));
        qq = _mm256_sub_epi64(qq, up);
        qq = _mm256_andnot_si256(_mm256_cmpgt_epi64(sh, s63), qq);
        qq = _mm256_blendv_epi8(qq, lim, _mm256_cmpgt_epi64(qq, lim));
        acc = _mm256_add_epi64(acc, qq);
        int64_t lanes[4];
        _mm256_storeu_si256((__m256i *)lanes, qq);
        for (int l = 0; l < 4; l++) v[i + l] = (uint16_t)lanes[l];
    }
    int64_t a[4];
    _mm256_storeu_si256((__m256i *)a, acc);
    *sum += (uint64_t)(a[0] + a[1] + a[2] + a[3]);
    return i;
}
#endif

/* ---- int32 input, I-BERT: the i-exp in int32 and float lanes ----------------------------------
 * softmax_isa.h, 16 (AVX-512) or 8 (AVX2) lanes, for parameters with 30 |x0| < 2^31, b >= |x0|,
 * |x0| (|x0| + b) < 2^31 (then |d|, q, r and z fit int32 lanes, as in qk__ibert32_simd_ok),
 * |x0| < 270000, 1 <= s0 = e16 - 30 <= 90 (every prepared set):
 *   |d| = mx - max(x, lo) in [0, 30 |x0|] (lo = max(mx + 30 x0, INT32_MIN): the clip);
 *   q = floor(|d| / |x0|): trunc(fl(fl(|d|) inv)) with inv the largest float <= 1/|x0| is q or
 *   q - 1 (|d| < 2^24 is exact; the product errs by < 2^-22 relative and |d| / |x0| stays at
 *   least 1/|x0| below q + 1), so one correction (rr = |d| - q |x0| >= |x0|: q + 1) is exact;
 *   r = -rr, z = (r + b) r + c, clamped at 0 (I-BERT's exp_int >= 0);
 *   V = RNE(z m16 / 2^(s0 + q)) from vf = fl(fl(z) A 2^-q), A = fl(m16 2^-s0) (m16 >= 1) and
 *   A 2^-q exact (A's exponent field less q: A 2^-q >= 2^-120 is normal): three roundings of
 *   relative error <= 2^-23 each (any rounding mode), so |v - vf| < 2^-21.41 vf. With
 *   hi = fl(vf + vf 2^-20) >= v and lo = fl(vf - vf 2^-20) <= v (one rounding each, fused), a
 *   lane keeps RNE(hi) when RNE(lo) == RNE(hi) (RNE is monotone); other lanes (exact ties
 *   included; about vf 2^-19 of them) take qk__ibert_exp16. */
typedef struct {
    int32_t ax0, b, c; /* |x0|, b, c */
    int32_t abits;     /* the bits of A = fl(m16 2^-s0) */
    float inv;         /* <= 1/|x0| */
    int zpos;          /* z >= 0 for every r (every prepared set): no clamp at 0 */
} qk__iexp32_c;

static int qk__iexp32_set(const qk_softmax_params *p, qk__iexp32_c *k) {
    const int64_t ax0 = -p->x0;
    if (!(30 * ax0 < (INT64_C(1) << 31) && p->b >= ax0 && ax0 * (ax0 + p->b) < (INT64_C(1) << 31) &&
          ax0 < 270000 && p->e16 >= 31 && p->e16 - 30 <= 90 && p->m16 >= 1))
        return 0;
    k->ax0 = (int32_t)ax0;
    k->b = (int32_t)p->b;
    k->c = (int32_t)p->c;
    float inv = (float)(1.0 / (double)ax0);
    while ((double)inv * (double)ax0 > 1.0) { /* exact products (24 x 19 bits): step down */
        uint32_t u;
        memcpy(&u, &inv, sizeof u);
        u--;
        memcpy(&inv, &u, sizeof u);
    }
    k->inv = inv;
    const uint64_t eb = (uint64_t)(1023 - (p->e16 - 30)) << 52; /* 2^-s0 */
    double e;
    memcpy(&e, &eb, sizeof e);
    /* min over rr in [0, |x0|) of z = c - rr (b - rr): rr (b - rr) grows up to rr = b / 2 */
    int64_t rm = p->b / 2 < ax0 - 1 ? p->b / 2 : ax0 - 1, fm = rm * (p->b - rm);
    if (rm + 1 <= ax0 - 1 && (rm + 1) * (p->b - rm - 1) > fm) fm = (rm + 1) * (p->b - rm - 1);
    k->zpos = p->c - fm >= 0;
    const float a = (float)((double)p->m16 * e);
    memcpy(&k->abits, &a, sizeof a);
    return 1;
}

/* ---- int32 input, SOLE: k by thresholds --------------------------------------------------------
 * k(d) of qk__sole_k never decreases as j = -d = mx - x grows (prod = d mult and its floor shift
 * v are monotone in d; t = v + (v >> 1) - (v >> 4) never decreases as v grows, each step of v
 * adding 1 + {0, 1} - {0, 1}; k = -(t >> 16) or -((t + 2^15) >> 16), capped at 15). So
 * k = #{i in 1..15 : j >= J_i}, J_i the least j in [0, 2^32) with k(-j) >= i (found once a call
 * by bisection); i beyond kmax = k(-(2^32 - 1)) has no J_i: its entry is 2^32 - 1 and the count
 * is capped at kmax. The rows then need only j = mx - x (exact in uint32) and four compares. */
static uint32_t qk__sole_thresholds(const qk_softmax_params *p, uint32_t *t) {
    const uint32_t kmax = qk__sole_k(p, -(int64_t)UINT32_MAX);
    t[0] = 0;
    for (uint32_t i = 1; i < 16; i++) {
        if (i > kmax) {
            t[i] = UINT32_MAX;
            continue;
        }
        uint32_t lo = 0, hi = UINT32_MAX; /* k(-hi) >= i */
        while (lo < hi) {
            const uint32_t mid = lo + (hi - lo) / 2;
            if (qk__sole_k(p, -(int64_t)mid) >= i)
                hi = mid;
            else
                lo = mid + 1;
        }
        t[i] = lo;
    }
    return kmax;
}

/* ---- the exp2 softmax (qk_softmax_exp2; the arithmetic: qkernels.h) ----------------------
 * d = max - x >= 0 (int64); z = RHU(d mult / 2^shift) < 2^31 for d < cap (checked once a call:
 * (cap - 1) mult < 2^62, so the int64 sum cannot wrap); 255 T[f] + 2^(14 + k) < 2^31 for
 * k <= 16; the two table values are at most 2^15, their product at most 2^30. */
static inline uint8_t qk__exp2_p(const qk_softmax_exp2_params *p, uint64_t d) {
    if (d >= (uint64_t)p->cap) return 0;
    const int64_t z = ((int64_t)d * p->mult + (INT64_C(1) << (p->shift - 1))) >> p->shift;
    const int64_t k = z >> QK_EXP2_FRAC_BITS, f = z & ((1 << QK_EXP2_FRAC_BITS) - 1);
    if (k > 16) return 0;
    const uint32_t e = ((uint32_t)p->table[f >> 5] * (uint32_t)p->table[32 + (f & 31)] + 16384u) >> 15;
    return (uint8_t)((e * 255u + (UINT32_C(1) << (14 + k))) >> (15 + k));
}

#define QK_TWINS_TEMPLATE "elementwise/softmax_isa.h"
#include "elementwise/simd_twins.h"

/* ---- int32 input, I-BERT, many elements a call: the i-exp as a table --------------------------
 * V depends only on d = x - max clipped at 30 x0, i.e. on j = max - max(x, lo) in [0, span],
 * span = -30 x0, lo = max(mx + 30 x0, INT32_MIN) (j then fits int32: x >= lo >= mx - span). When
 * a call has at least twice as many elements as the table has entries (and span < 2^20), the
 * i-exp runs once for each j (the same integers, by the same code) and the rows look V up:
 * AVX-512 / AVX2 gathers (softmax_isa.h) beside the scalar loop, the same bits.
 * Who takes it: on the scalar level every such call; on AVX2 / AVX-512 only the parameters the
 * int32 lanes refuse (qk__iexp32_set) with |x0| <= 34952 (span < 2^20): e16 = 30 or e16 > 120,
 * m16 = 0, b < |x0|, or |x0| (|x0| + b) >= 2^31 -- hand-made sets the C API accepts, never a
 * prepared one (prepare_softmax's x_scale in [3.6e-5, 1.67]: |x0| <= 19222, b >= |x0|,
 * |x0| (|x0| + b) < 1.82e9, e16 in [46, 77], m16 >= 2^30). tests/kernels/test_softmax_vs_reference.py
 * forces each of them on every level. */
enum { QK__IEXP_TABLE_MAX = 1 << 20 };

static uint64_t qk__iexp_lookup_scalar(const uint16_t *t, const int32_t *x, size_t n, int32_t mx,
                                       int32_t lo, uint16_t *v) {
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++) {
        const int32_t xi = x[i] < lo ? lo : x[i];
        const uint16_t e = t[(int64_t)mx - xi];
        v[i] = (uint16_t)e;
        s += e;
    }
    return s;
}

/* ---- the public kernels ------------------------------------------------------------------------ */
static qk_status qk__softmax_run(const qk_softmax_params *p, const void *x, qk_dtype xt,
                                 size_t rows, size_t cols, uint8_t *y, uint8_t *expo,
                                 uint8_t *row_bit) {
    qk_status st = qk__softmax_check(p, xt);
    if (st != QK_OK) return st;
    if (cols > ((size_t)1 << 24)) return QK_ERR_ARG;
    if (rows == 0 || cols == 0) return QK_OK;
    if (x == NULL || (y == NULL && expo == NULL)) return QK_ERR_ARG;
    const int sole = p->method == QK_SOFTMAX_SOLE;
    uint32_t vt[256];
    uint16_t w16[256];
    uint16_t *v = (uint16_t *)malloc(cols * sizeof(uint16_t) + 64);
    if (v == NULL) return QK_ERR_NOMEM;
    const int eight = xt != QK_DT_S32;
    if (eight) qk__softmax_table(p, vt, w16);
    const int path = qk__level() >= QK_LEVEL_AVX512 ? 2 : (qk__level() >= QK_LEVEL_AVX2 ? 1 : 0);
    const size_t xsz = eight ? 1 : 4;
    const int simd32 = !eight && !sole && path > 0 && qk__ibert32_simd_ok(p);
    /* int32 I-BERT over at least twice as many elements as the i-exp has distinct values: the
     * i-exp of each j = -d in [0, span] once, as a table (see above) */
    const int64_t span = -30 * p->x0;
    uint16_t *tbl = NULL;
    size_t jcap = (size_t)span; /* the clip of j: tbl[jcap .. span] all equal tbl[jcap] */
    uint32_t sth[16] = {0}, skmax = 0;
    if (!eight && sole && path > 0) skmax = qk__sole_thresholds(p, sth);
    qk__iexp32_c ik;
    const int iexp32 = !eight && !sole && path > 0 && qk__iexp32_set(p, &ik);
    if (!iexp32 && !eight && !sole && span < QK__IEXP_TABLE_MAX &&
        rows * cols / 2 >= (size_t)span + 1) {
        const size_t ne = (size_t)span + 1;
        /* 16-bit entries read by 32-bit gathers (the low half kept): one entry of slack */
        tbl = (uint16_t *)calloc(ne + 2, sizeof(uint16_t));
        if (tbl == NULL) {
            free(v);
            return QK_ERR_NOMEM;
        }
        int32_t dx[1024];
        for (size_t j0 = 0; j0 < ne; j0 += 1024) {
            const size_t cnt = ne - j0 < 1024 ? ne - j0 : 1024;
            for (size_t j = 0; j < cnt; j++) dx[j] = -(int32_t)(j0 + j);
            size_t done = 0;
            uint64_t unused = 0;
#if QK_X86
            if (simd32) done = path == 2 ? qk__ibert32_avx512(p, dx, cnt, 0, tbl + j0, &unused)
                                         : qk__ibert32_avx2(p, dx, cnt, 0, tbl + j0, &unused);
#endif
            for (size_t j = done; j < cnt; j++) tbl[j0 + j] = (uint16_t)qk__ibert_exp16(p, dx[j]);
        }
        /* V is 0 from some j on (the 16-bit exponent underflows long before the 30 ln 2 clip):
         * clip j there instead, so the look-ups stay within a table that fits the L1 cache */
        while (jcap > 0 && tbl[jcap] == 0 && tbl[jcap - 1] == 0) jcap--;
    }
    for (size_t r = 0; r < rows; r++) {
        const char *xr = (const char *)x + r * cols * xsz;
        uint64_t sum = 0;
        if (eight) {
#if QK_X86
            if (path == 2) {
                const int32_t mx = qk__row_max8_avx512(xr, xt, cols);
                sum = qk__row_lookup8_avx512(xr, xt, cols, mx, w16, sole, v);
            } else if (path == 1) {
                const int32_t mx = qk__row_max8_avx2(xr, xt, cols);
                uint32_t w32[256];
                for (int d = 0; d < 256; d++) w32[d] = w16[d];
                sum = qk__row_lookup8_avx2(xr, xt, cols, mx, w32, sole, v);
            } else
#endif
            {
                const int32_t mx = qk__row_max8_scalar(xr, xt, cols);
                sum = qk__row_lookup8_scalar(xr, xt, cols, mx, w16, sole, v);
            }
        } else {
            const int32_t *xi = (const int32_t *)xr;
#if QK_X86
            const int32_t mx = path == 2 ? qk__row_max32_avx512(xi, cols)
                               : (path == 1 ? qk__row_max32_avx2(xi, cols)
                                            : qk__row_max32_scalar(xi, cols));
#else
            const int32_t mx = qk__row_max32_scalar(xi, cols);
#endif
            size_t i0 = 0;
#if QK_X86
            if (sole && path > 0) {
                sum = path == 2 ? qk__sole32_avx512(sth, skmax, xi, cols, mx, v)
                                : qk__sole32_avx2(sth, skmax, xi, cols, mx, v);
                i0 = cols;
            }
            if (iexp32) {
                const int64_t lo64 = (int64_t)mx + 30 * p->x0;
                const int32_t lo = lo64 < INT32_MIN ? INT32_MIN : (int32_t)lo64;
                sum = path == 2 ? qk__iexp32_avx512(&ik, p, xi, cols, mx, lo, v)
                                : qk__iexp32_avx2(&ik, p, xi, cols, mx, lo, v);
                i0 = cols;
            }
#endif
            if (tbl != NULL) {
                const int64_t lo64 = (int64_t)mx - (int64_t)jcap;
                const int32_t lo = lo64 < INT32_MIN ? INT32_MIN : (int32_t)lo64;
#if QK_X86
                if (path > 0)
                    sum = path == 2 ? qk__iexp_lookup_avx512(tbl, xi, cols, mx, lo, v)
                                    : qk__iexp_lookup_avx2(tbl, xi, cols, mx, lo, v);
                else
#endif
                    sum = qk__iexp_lookup_scalar(tbl, xi, cols, mx, lo, v);
                i0 = cols;
            }
#if QK_X86
            if (!sole && simd32 && tbl == NULL && !iexp32)
                i0 = path == 2 ? qk__ibert32_avx512(p, xi, cols, mx, v, &sum)
                               : qk__ibert32_avx2(p, xi, cols, mx, v, &sum);
#endif
            for (size_t i = i0; i < cols; i++) {
                const int64_t d = (int64_t)xi[i] - mx;
                if (sole) {
                    const uint32_t k = qk__sole_k(p, d);
                    v[i] = (uint16_t)k;
                    sum += UINT64_C(1) << (16 - k);
                } else {
                    v[i] = (uint16_t)qk__ibert_exp16(p, d);
                    sum += v[i];
                }
            }
        }
        qk__norm nm;
        qk__norm_setup(p, sum, &nm, row_bit ? row_bit + r : NULL);
        if (expo != NULL) { /* SOLE's log2 form: e = k + w - 16 */
            for (size_t i = 0; i < cols; i++) expo[r * cols + i] = (uint8_t)(v[i] + nm.w - 16);
        } else {
#if QK_X86
            if (path == 2)
                qk__norm_row_avx512(&nm, v, cols, y + r * cols);
            else if (path == 1)
                qk__norm_row_avx2(&nm, v, cols, y + r * cols);
            else
#endif
                qk__norm_row_scalar(&nm, v, cols, y + r * cols);
        }
    }
    free(v);
    free(tbl);
    return QK_OK;
}

qk_status qk_softmax_u8(const qk_softmax_params *p, const void *x, qk_dtype x_type, size_t rows,
                        size_t cols, uint8_t *y) {
    return qk__softmax_run(p, x, x_type, rows, cols, y, NULL, NULL);
}

qk_status qk_softmax_sole_log2(const qk_softmax_params *p, const void *x, qk_dtype x_type,
                               size_t rows, size_t cols, uint8_t *exponent, uint8_t *row_bit) {
    if (p == NULL || p->method != QK_SOFTMAX_SOLE) return QK_ERR_ARG;
    if (rows > 0 && cols > 0 && (exponent == NULL || row_bit == NULL)) return QK_ERR_ARG;
    return qk__softmax_run(p, x, x_type, rows, cols, NULL, exponent, row_bit);
}

qk_status qk_softmax_table(const qk_softmax_params *p, uint32_t *value, uint8_t *k) {
    const qk_status st = qk__softmax_check(p, QK_DT_U8);
    if (st != QK_OK) return st;
    if (value == NULL) return QK_ERR_ARG;
    uint16_t w16[256];
    qk__softmax_table(p, value, w16);
    if (k != NULL)
        for (int d = 0; d < 256; d++) k[d] = p->method == QK_SOFTMAX_SOLE ? (uint8_t)w16[d] : 0;
    return QK_OK;
}

/* ---- qk_softmax_exp2 ----------------------------------------------------------------------- */
qk_status qk_softmax_exp2(const qk_softmax_exp2_params *p, const void *x, qk_dtype x_type,
                          size_t rows, size_t cols, uint8_t *y) {
    if (p == NULL || p->table == NULL) return QK_ERR_ARG;
    if (x_type != QK_DT_U8 && x_type != QK_DT_S8 && x_type != QK_DT_S32) return QK_ERR_ARG;
    if (p->mult < 0) return QK_ERR_MULTIPLIER;
    if (p->shift < 1 || p->shift > 62) return QK_ERR_SHIFT;
    if (p->cap < 1) return QK_ERR_ARG;
    if ((((int64_t)p->cap - 1) * p->mult + (INT64_C(1) << (p->shift - 1))) >> p->shift >
        INT32_MAX)
        return QK_ERR_ARG;
    for (int f = 0; f < QK_EXP2_TABLE; f++)
        if (p->table[f] < 0 || p->table[f] > 32768) return QK_ERR_ARG;
    size_t total;
    if (!qk__sz_mul(rows, cols, &total)) return QK_ERR_ARG;
    if (total == 0) return QK_OK;
    if (x == NULL || y == NULL) return QK_ERR_ARG;
    if (x_type != QK_DT_S32) {
        /* 8-bit input: d in [0, 255], one byte per d */
        uint8_t t[256];
        for (int d = 0; d < 256; d++) t[d] = qk__exp2_p(p, (uint64_t)d);
        for (size_t r = 0; r < rows; r++) {
            const int32_t mx = qk__row_max8_scalar((const char *)x + r * cols, x_type, cols);
            for (size_t i = 0; i < cols; i++) {
                const size_t j = r * cols + i;
                const int32_t v = x_type == QK_DT_U8 ? ((const uint8_t *)x)[j]
                                                     : ((const int8_t *)x)[j];
                y[j] = t[mx - v];
            }
        }
        return QK_OK;
    }
    const int32_t *xi = (const int32_t *)x;
#if QK_X86
    const int lvl = qk__level() >= QK_LEVEL_AVX512 ? 2 : (qk__level() >= QK_LEVEL_AVX2 ? 1 : 0);
#else
    const int lvl = 0;
#endif
    for (size_t r = 0; r < rows; r++) {
        const int32_t *xr = xi + r * cols;
        uint8_t *yr = y + r * cols;
#if QK_X86
        if (lvl == 2) {
            qk__exp2_row_avx512(p, xr, cols, yr);
            continue;
        }
        if (lvl == 1) {
            qk__exp2_row_avx2(p, xr, cols, yr);
            continue;
        }
#endif
        int32_t mx = INT32_MIN;
        for (size_t i = 0; i < cols; i++) mx = xr[i] > mx ? xr[i] : mx;
        for (size_t i = 0; i < cols; i++) yr[i] = qk__exp2_p(p, (uint64_t)((int64_t)mx - xr[i]));
    }
    (void)lvl;
    return QK_OK;
}
