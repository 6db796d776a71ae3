/* rows_isa.h -- the SIMD loops of rows.c (per-row dynamic 8-bit quantization, its rescale, the
 * residual add, the attention's renormalization),
 * written once for every ISA (rows.c defines QK_V_IS512 as 0 or 1 and includes it through
 * elementwise/simd_twins.h; the int32 primitives are elementwise/simd_v.h, the int64-lane ones
 * elementwise/simd_r64.h). No include guard: it is included once per ISA. The arithmetic, and why it is the
 * scalar twin's to the bit: rows.c. */
#include "elementwise/simd_v.h"
#include "elementwise/simd_r64.h"

/* min and max of n int32 (or, is16, int16) values, folded into *mn / *mx; returns the elements
 * done (a multiple of the lanes). */
QK_V_TARGET static size_t QK__N(qk__rows_minmax_)(const void *d, int is16, size_t n, int32_t *mn,
                                                 int32_t *mx) {
    size_t i = 0;
    if (is16) {
        const int16_t *p = (const int16_t *)d;
        const size_t L = 2 * QK_V_LANES;
        if (n < L) return 0;
        QK_V lo = QK_V_LOAD(p), hi = lo;
        for (i = L; i + L <= n; i += L) {
            const QK_V v = QK_V_LOAD(p + i);
            lo = QK__SEL(_mm256_min_epi16, _mm512_min_epi16)(lo, v);
            hi = QK__SEL(_mm256_max_epi16, _mm512_max_epi16)(hi, v);
        }
        int16_t a[2 * QK_V_LANES], b[2 * QK_V_LANES];
        QK_V_STORE(a, lo);
        QK_V_STORE(b, hi);
        for (size_t l = 0; l < L; l++) {
            *mn = a[l] < *mn ? a[l] : *mn;
            *mx = b[l] > *mx ? b[l] : *mx;
        }
        return i;
    }
    const int32_t *p = (const int32_t *)d;
    if (n < QK_V_LANES) return 0;
    QK_V lo = QK_V_LOAD(p), hi = lo;
    for (i = QK_V_LANES; i + QK_V_LANES <= n; i += QK_V_LANES) {
        const QK_V v = QK_V_LOAD(p + i);
        lo = QK_V_MIN(lo, v);
        hi = QK_V_MAX(hi, v);
    }
    int32_t a[QK_V_LANES], b[QK_V_LANES];
    QK_V_STORE(a, lo);
    QK_V_STORE(b, hi);
    for (size_t l = 0; l < QK_V_LANES; l++) {
        *mn = a[l] < *mn ? a[l] : *mn;
        *mx = b[l] > *mx ? b[l] : *mx;
    }
    return i;
}

/* One row of row_quantize: x = clamp(R(d), -z, 255 - z) + z with R(v) = (v m + 2^(k-1)) >> k
 * (= clamp(R(d) + z, 0, 255)); returns the elements done. */
QK_V_TARGET static size_t QK__N(qk__rows_quantize_)(const void *d, int is16, size_t n, int32_t m,
                                                   int k, int32_t z, uint8_t *x) {
    const QK_R64 vm = QK_R64_SET1(m), rnd = QK_R64_SET1(INT64_C(1) << (k - 1));
    const QK_R64 lo = QK_R64_SET1(-(int64_t)z), hi = QK_R64_SET1(255 - (int64_t)z);
    const QK_R64 vz = QK_R64_SET1(z);
    size_t i = 0;
    for (; i + QK_R64_LANES <= n; i += QK_R64_LANES) {
        const QK_R64 v = is16 ? QK_R64_FROM16((const int16_t *)d + i)
                              : QK_R64_FROM32((const int32_t *)d + i);
        QK_R64 t = QK__N(qk__r64_sra_)(QK_R64_ADD(QK_R64_MUL32(v, vm), rnd), k);
        t = QK_R64_ADD(QK__N(qk__r64_clamp_)(t, lo, hi), vz);
        QK__N(qk__r64_store8_)(x + i, t);
    }
    return i;
}

/* ---- the residual add of the blocks (qk_residual_add) --------------------------------------- */
/* n values of an 8-bit (signed or not) or int16 array as int64 lanes */
QK_V_TARGET static QK_ALWAYS_INLINE QK_R64 QK__N(qk__r64_load_r_)(const void *r, int rt,
                                                                 size_t i) {
    if (rt == QK_DT_S16) return QK_R64_FROM16((const int16_t *)r + i);
    const uint8_t *p = (const uint8_t *)r + i;
#if QK_V_IS512
    const __m128i b = _mm_loadl_epi64((const __m128i *)p);
    return rt == QK_DT_U8 ? _mm512_cvtepu8_epi64(b) : _mm512_cvtepi8_epi64(b);
#else
    int32_t w;
    memcpy(&w, p, 4);
    const __m128i b = _mm_cvtsi32_si128(w);
    return rt == QK_DT_U8 ? _mm256_cvtepu8_epi64(b) : _mm256_cvtepi8_epi64(b);
#endif
}

/* One row of qk_residual_add (its scalar twin: rows.c, qk__res_rows), the per-column constants
 * of qk__res_cols (every output shift >= 0 here); returns the elements done. */
QK_V_TARGET static size_t QK__N(qk__res_row_)(const qk__res_cols *cp, const int32_t *acc,
                                             const void *r, int rt, int32_t rzp, size_t n,
                                             void *y, int yt, int32_t ozp, int32_t omin,
                                             int32_t omax) {
    const QK_R64 lo32 = QK_R64_SET1(INT32_MIN), hi32 = QK_R64_SET1(INT32_MAX);
    const QK_R64 vrzp = QK_R64_SET1(rzp), vozp = QK_R64_SET1(ozp);
    const QK_R64 olo = QK_R64_SET1(omin), ohi = QK_R64_SET1(omax), k31 = QK_R64_SET1(31);
    size_t i = 0;
    for (; i + QK_R64_LANES <= n; i += QK_R64_LANES) {
        const QK_R64 ka = QK_R64_SUB(k31, QK_R64_FROM32(cp->sa + i));
        const QK_R64 kr = QK_R64_SUB(k31, QK_R64_FROM32(cp->sr + i));
        const QK_R64 ko = QK_R64_FROM32(cp->so + i);
        QK_R64 a = QK_R64_MUL32(QK_R64_FROM32(acc + i), QK_R64_FROM32(cp->ma + i));
        a = QK__N(qk__r64_srav_)(QK_R64_ADD(a, QK__N(qk__r64_half_)(ka)), ka);
        a = QK__N(qk__r64_clamp_)(a, lo32, hi32);
        const QK_R64 d = QK_R64_SUB(QK__N(qk__r64_load_r_)(r, rt, i), vrzp);
        QK_R64 b = QK_R64_MUL32(d, QK_R64_FROM32(cp->mr + i));
        b = QK__N(qk__r64_srav_)(QK_R64_ADD(b, QK__N(qk__r64_half_)(kr)), kr);
        b = QK__N(qk__r64_clamp_)(b, lo32, hi32);
        QK_R64 t = QK__N(qk__r64_clamp_)(QK_R64_ADD(a, b), lo32, hi32);
        t = QK__N(qk__r64_srav_)(QK_R64_ADD(t, QK__N(qk__r64_half_)(ko)), ko);
        t = QK__N(qk__r64_clamp_)(QK_R64_ADD(t, vozp), olo, ohi);
        if (yt == QK_DT_S16)
            QK__N(qk__r64_store16_)((int16_t *)y + i, t);
        else if (yt == QK_DT_U8)
            QK__N(qk__r64_store8_)((uint8_t *)y + i, t);
        else /* int8: the low bytes of the (two's complement) lanes */
            QK__N(qk__r64_store8_)((uint8_t *)y + i,
                                   QK__SEL(_mm256_and_si256(t, _mm256_set1_epi64x(255)), t));
    }
    return i;
}

/* One row of row_rescale: a = acc - z wsum (wsum NULL: acc), v = clamp32((a m + 2^(k-1)) >> k),
 * v = clamp32(v + bias) (bias NULL: v); then, with om (the output stage, per column), y =
 * clamp(((v om + 2^(30 - os)) >> (31 - os)) + ozp) to the 8-bit yt, else y = v (int32). *bad set
 * when some a leaves int32 (the caller refuses the call). Returns the elements done. */
QK_V_TARGET static size_t QK__N(qk__rows_rescale_)(const int32_t *acc, size_t n, int32_t z,
                                                  const int32_t *wsum, int32_t m, int k,
                                                  const int32_t *bias, const int32_t *om,
                                                  const int32_t *os, int32_t ozp, int yt, void *y,
                                                  int *bad) {
    const QK_R64 vm = QK_R64_SET1(m), rnd = QK_R64_SET1(INT64_C(1) << (k - 1));
    const QK_R64 lo = QK_R64_SET1(INT32_MIN), hi = QK_R64_SET1(INT32_MAX);
    const QK_R64 vz = QK_R64_SET1(z), k31 = QK_R64_SET1(31), vozp = QK_R64_SET1(ozp);
    const QK_R64 olo = QK_R64_SET1(yt == QK_DT_U8 ? 0 : INT8_MIN);
    const QK_R64 ohi = QK_R64_SET1(yt == QK_DT_U8 ? 255 : INT8_MAX);
    int out = 0;
    size_t i = 0;
    for (; i + QK_R64_LANES <= n; i += QK_R64_LANES) {
        QK_R64 a = QK_R64_FROM32(acc + i);
        if (wsum != NULL) {
            a = QK_R64_SUB(a, QK_R64_MUL32(QK_R64_FROM32(wsum + i), vz));
            out |= QK__N(qk__r64_outside32_)(a);
        }
        QK_R64 t = QK__N(qk__r64_sra_)(QK_R64_ADD(QK_R64_MUL32(a, vm), rnd), k);
        t = QK__N(qk__r64_clamp_)(t, lo, hi);
        if (bias != NULL) t = QK__N(qk__r64_clamp_)(QK_R64_ADD(t, QK_R64_FROM32(bias + i)), lo, hi);
        if (om == NULL) {
            QK__N(qk__r64_store32_)((int32_t *)y + i, t);
            continue;
        }
        const QK_R64 ko = QK_R64_SUB(k31, QK_R64_FROM32(os + i));
        t = QK_R64_MUL32(t, QK_R64_FROM32(om + i));
        t = QK__N(qk__r64_srav_)(QK_R64_ADD(t, QK__N(qk__r64_half_)(ko)), ko);
        t = QK__N(qk__r64_clamp_)(QK_R64_ADD(t, vozp), olo, ohi);
        if (yt == QK_DT_U8)
            QK__N(qk__r64_store8_)((uint8_t *)y + i, t);
        else /* int8: the low bytes of the (two's complement) lanes */
            QK__N(qk__r64_store8_)((uint8_t *)y + i,
                                   QK__SEL(_mm256_and_si256(t, _mm256_set1_epi64x(255)), t));
    }
    *bad |= out != 0;
    return i;
}

/* ---- the attention's renormalization (qk_row_renorm) ---------------------------------------- */
/* The sum of n uint8 values (SAD against zero: int64 lanes); returns the elements done, their sum
 * in *s. */
QK_V_TARGET static size_t QK__N(qk__rows_usum_)(const uint8_t *p, size_t n, int64_t *s) {
    const size_t L = 4 * QK_V_LANES; /* bytes a vector */
    QK_V acc = QK__SEL(_mm256_setzero_si256(), _mm512_setzero_si512());
    const QK_V zero = acc;
    size_t i = 0;
    for (; i + L <= n; i += L)
        acc = QK__SEL(_mm256_add_epi64, _mm512_add_epi64)(
            acc, QK__SEL(_mm256_sad_epu8, _mm512_sad_epu8)(QK_V_LOAD(p + i), zero));
    int64_t a[QK_V_LANES / 2];
    QK_V_STORE(a, acc);
    int64_t t = 0;
    for (size_t l = 0; l < QK_V_LANES / 2; l++) t += a[l];
    *s = t;
    return i;
}

/* One row of qk_row_renorm: y = floor((512 acc + r) / d) with r = rs and d = 2 rs as doubles
 * (rows.c: qk__renorm_rows, the scalar twin, and why the double operations are exact); *bad set
 * when some quotient leaves int32 (nothing stored for that vector). Returns the elements done. */
QK_V_TARGET static size_t QK__N(qk__rows_renorm_)(const int32_t *acc, size_t n, double r,
                                                 double d, int32_t *y, int *bad) {
#if QK_V_IS512
    const __m512d vr = _mm512_set1_pd(r), vd = _mm512_set1_pd(d), k = _mm512_set1_pd(512.0);
    const __m512d lo = _mm512_set1_pd((double)INT32_MIN), hi = _mm512_set1_pd((double)INT32_MAX);
    const size_t L = 8;
#else
    const __m256d vr = _mm256_set1_pd(r), vd = _mm256_set1_pd(d), k = _mm256_set1_pd(512.0);
    const __m256d lo = _mm256_set1_pd((double)INT32_MIN), hi = _mm256_set1_pd((double)INT32_MAX);
    const size_t L = 4;
#endif
    int out = 0;
    size_t i = 0;
    for (; i + L <= n; i += L) {
#if QK_V_IS512
        const __m512d a = _mm512_cvtepi32_pd(_mm256_loadu_si256((const __m256i *)(acc + i)));
        const __m512d q = _mm512_div_pd(_mm512_add_pd(_mm512_mul_pd(a, k), vr), vd);
        const __m512d t = _mm512_roundscale_pd(q, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
        const __mmask8 o = _mm512_cmp_pd_mask(t, lo, _CMP_LT_OQ) |
                           _mm512_cmp_pd_mask(t, hi, _CMP_GT_OQ);
        if (o) {
            out = 1;
            continue;
        }
        _mm256_storeu_si256((__m256i *)(y + i), _mm512_cvtpd_epi32(t));
#else
        const __m256d a = _mm256_cvtepi32_pd(_mm_loadu_si128((const __m128i *)(acc + i)));
        const __m256d q = _mm256_div_pd(_mm256_add_pd(_mm256_mul_pd(a, k), vr), vd);
        const __m256d t = _mm256_floor_pd(q);
        const __m256d o = _mm256_or_pd(_mm256_cmp_pd(t, lo, _CMP_LT_OQ),
                                       _mm256_cmp_pd(t, hi, _CMP_GT_OQ));
        if (_mm256_movemask_pd(o)) {
            out = 1;
            continue;
        }
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtpd_epi32(t));
#endif
    }
    *bad |= out;
    return i;
}
