/* gelu.c -- integer GELU: I-BERT's i-GELU (second-order polynomial erf, integer arithmetic only)
 * and a 256-entry table of the 8-bit input. The arithmetic is stated in qkernels.h.
 *
 * The table look-up (qk_gelu_lut, and qk_gelu_ibert on 8-bit input with one set of parameters,
 * which first evaluates its exact arithmetic for the 256 input bytes) has an AVX-512 VBMI loop
 * (vpermi2b: 64 look-ups in three instructions), an AVX2 loop (16 vpshufb over the nibbles) and
 * the portable scalar twin; all give the same bytes. int32 input is evaluated element by element.
 */
#include "internal.h"

#include <stdatomic.h>
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

#define QK_TARGET_VBMI512 __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vbmi")))
QK_TARGET_VBMI512 static size_t qk__lut8_vbmi(const uint8_t *t, const uint8_t *x, size_t n,
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

static _Atomic int qk__vbmi_choice = -1;

/* AVX-512 level chosen (qk__use_avx512) and the CPU has VBMI; cached, thread-safe. */
static int qk__use_vbmi(void) {
    int v = atomic_load_explicit(&qk__vbmi_choice, memory_order_relaxed);
    if (v >= 0) return v;
    v = 0;
#if QK_X86 && defined(__GNUC__)
    if (qk__use_avx512()) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx512vbmi");
    }
#endif
    atomic_store_explicit(&qk__vbmi_choice, v, memory_order_relaxed);
    return v;
}

static void qk__lut8(const uint8_t *t, const uint8_t *x, size_t n, uint8_t *y) {
    size_t i = 0;
#if QK_X86
    if (qk__use_vbmi())
        i = qk__lut8_vbmi(t, x, n, y);
    else if (qk__use_avx2())
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
    for (size_t ch = 0; ch < p->channels; ch++) {
        const int64_t b = p->b[ch], c = p->c[ch], sh = p->shift[ch];
        if (b > 0 || b <= -(INT64_C(1) << 30)) return QK_ERR_ARG;
        if (c > 0 || c <= -(INT64_C(1) << 60)) return QK_ERR_ARG;
        if (sh <= -(INT64_C(1) << 47) || sh >= (INT64_C(1) << 47)) return QK_ERR_ARG;
        if (p->multiplier[ch] < 0 || p->rshift[ch] < 0 || p->rshift[ch] > 126) return QK_ERR_ARG;
        /* |x (y + shift)| < 2^62 for every x of the input type */
        const int64_t ymag = ((b * b > -c ? b * b : -c) >> 14) + 1;
        const int64_t mag = ymag + (sh < 0 ? -sh : sh) + 1;
        if (mag > (INT64_C(1) << 62) / xmax) return QK_ERR_ARG;
    }
    return QK_OK;
}

static inline int64_t qk__xval(const void *x, qk_dtype t, size_t i) {
    return t == QK_DT_U8 ? (int64_t)((const uint8_t *)x)[i]
                         : (t == QK_DT_S8 ? (int64_t)((const int8_t *)x)[i]
                                          : (int64_t)((const int32_t *)x)[i]);
}

static inline void qk__yput(void *y, qk_dtype t, size_t i, int32_t v) {
    if (t == QK_DT_U8)
        ((uint8_t *)y)[i] = (uint8_t)v;
    else if (t == QK_DT_S8)
        ((int8_t *)y)[i] = (int8_t)v;
    else
        ((int32_t *)y)[i] = v;
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
    for (size_t i = 0, ch = 0; i < n; i++) {
        const int64_t xv = qk__xval(x, x_type, i) - x_zero_point;
        qk__yput(y, y_type, i, qk__igelu_out(p, ch, xv, y_zero_point, y_min, y_max));
        if (++ch == channels) ch = 0;
    }
    return QK_OK;
}
