/* rows_isa.h -- the SIMD loops of rows.c (per-row dynamic 8-bit quantization, its rescale),
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
