/* quantize_isa.h -- the SIMD pieces of quantize.c written once for every ISA: the value of a
 * quantize lane block, and the dequantize loop. quantize.c defines QK_V_IS512 (0: AVX2, 1:
 * AVX-512 F/BW) and includes this file once per ISA (no include guard); the primitives are
 * elementwise/simd_v.h. Every name defined here ends in the ISA. */
#include "elementwise/simd_v.h"

/* clamp(round(t), lo, hi) as int32 lanes, t = x * k, fma(x, k, zp), x * k + zp or x / k by
 * flavour (x holds no NaN: the caller checked); tflite (AVX2 only) rounds half away from zero,
 * the others to nearest even (cvtps2dq in the default MXCSR: exact after the clamp). */
QK_V_TARGET static QK_ALWAYS_INLINE QK_V QK__N(qk__q_lanes_)(QK_VF x, QK_VF k, QK_VF zpf, QK_VF lo,
                                                              QK_VF hi, int flav) {
    QK_VF t = flav == QK__FL_TORCH          ? QK_VF_MUL(x, k)
              : flav == QK__FL_FBGEMM       ? QK__SEL(_mm256_fmadd_ps, _mm512_fmadd_ps)(x, k, zpf)
              : flav == QK__FL_FBGEMM_SCALAR ? QK__SEL(_mm256_add_ps, _mm512_add_ps)(QK_VF_MUL(x, k), zpf)
                                            : QK__SEL(_mm256_div_ps, _mm512_div_ps)(x, k);
    t = QK_VF_MIN(QK_VF_MAX(t, lo), hi);
    if (flav == QK__FL_TFLITE) t = QK__SEL(qk__rhaz_avx2(t), t);
    return QK_V_CVT_RNE(t);
}

/* Dequantize: kind 0 = u8, 1 = s8, 2 = u16, 3 = s16, 4 = s32 (its callers: zero point 0 only, so
 * that the int32 subtraction is exact); QK_V_LANES values as int32 lanes. */
QK_V_TARGET static QK_ALWAYS_INLINE QK_V QK__N(qk__deq_load_)(const void *q, size_t i, int kind) {
    if (kind == 4) return QK_V_LOAD((const int32_t *)q + i);
    if (kind <= 1) {
        const __m128i b = QK__SEL(_mm_loadl_epi64, _mm_loadu_si128)(
            (const __m128i *)((const uint8_t *)q + i));
        return kind == 0 ? QK__SEL(_mm256_cvtepu8_epi32, _mm512_cvtepu8_epi32)(b)
                         : QK__SEL(_mm256_cvtepi8_epi32, _mm512_cvtepi8_epi32)(b);
    }
    const QK__SEL(__m128i, __m256i) h = QK__SEL(
        _mm_loadu_si128((const __m128i *)((const uint16_t *)q + i)),
        _mm256_loadu_si256((const __m256i *)((const uint16_t *)q + i)));
    return kind == 2 ? QK__SEL(_mm256_cvtepu16_epi32, _mm512_cvtepu16_epi32)(h)
                     : QK__SEL(_mm256_cvtepi16_epi32, _mm512_cvtepi16_epi32)(h);
}

/* y (aligned to the vector) from q, four vectors an iteration; returns the elements done. */
QK_V_TARGET static QK_ALWAYS_INLINE size_t QK__N(qk__deq_loop_)(const void *q, size_t n,
                                                                 float scale, int32_t zp, float *y,
                                                                 int kind, int stream) {
    const QK_VF s = QK_VF_SET1(scale);
    const QK_V vzp = QK_V_SET1(zp);
    size_t i = 0;
#define QK__DEQ(J)                                                                              \
    do {                                                                                        \
        float *const yj = y + i + QK_V_LANES * (J);                                             \
        const QK_VF f = QK_VF_MUL(                                                              \
            s, QK_VF_CVT(QK_V_SUB(QK__N(qk__deq_load_)(q, i + QK_V_LANES * (J), kind), vzp)));  \
        if (stream)                                                                             \
            QK__SEL(_mm256_stream_ps, _mm512_stream_ps)(yj, f);                                 \
        else                                                                                    \
            QK__SEL(_mm256_store_ps, _mm512_store_ps)(yj, f);                                   \
    } while (0)
    for (; i + 4 * QK_V_LANES <= n; i += 4 * QK_V_LANES) {
        QK__DEQ(0);
        QK__DEQ(1);
        QK__DEQ(2);
        QK__DEQ(3);
    }
#undef QK__DEQ
    if (stream) _mm_sfence();
    return i;
}

QK_V_TARGET static size_t QK__N(qk__dequantize_)(const void *q, size_t n, float scale, int32_t zp,
                                                 float *y, int kind) {
    const int stream = qk__stream_ok(y, n, kind <= 1 ? 1 : (kind == 4 ? 4 : 2), sizeof(float));
#define QK__DEQ_CASE(K)                                                                         \
    case K: return stream ? QK__N(qk__deq_loop_)(q, n, scale, zp, y, K, 1)                      \
                          : QK__N(qk__deq_loop_)(q, n, scale, zp, y, K, 0);
    switch (kind) {
        QK__DEQ_CASE(0)
        QK__DEQ_CASE(1)
        QK__DEQ_CASE(2)
        QK__DEQ_CASE(3)
        QK__DEQ_CASE(4)
        default: return 0;
    }
#undef QK__DEQ_CASE
}

/* Per-channel dequantize of one row (kind 0..4 as above): y[c] = scale[c] * (float)(q[c] -
 * zp[c]), the int32 subtraction exact (the caller checked every zp against the margin); returns
 * the elements done. */
QK_V_TARGET static size_t QK__N(qk__deq_row_ch_)(const void *q, size_t n, const float *scale,
                                                const int32_t *zp, float *y, int kind) {
    size_t i = 0;
    for (; i + QK_V_LANES <= n; i += QK_V_LANES) {
        const QK_V d = QK_V_SUB(QK__N(qk__deq_load_)(q, i, kind), QK_V_LOAD(zp + i));
        QK__SEL(_mm256_storeu_ps, _mm512_storeu_ps)(y + i,
                                                    QK_VF_MUL(QK_VF_LOAD(scale + i), QK_VF_CVT(d)));
    }
    return i;
}
