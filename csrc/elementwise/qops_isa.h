/* qops_isa.h -- the quantized add, mul and LeakyReLU loops of qops.c written once for every ISA. qops.c defines
 * QK_V_IS512 (0: AVX2, 1: AVX-512 F/BW) and includes this file once per ISA (no include guard);
 * the primitives are elementwise/simd_v.h. Every name defined here ends in the ISA. */
#include "elementwise/simd_v.h"

/* QK_V_LANES 8-bit integers (u8 zero-extended, s8 sign-extended) as floats. */
QK_V_TARGET static QK_ALWAYS_INLINE QK_VF QK__N(qk__qops_loadf_)(const uint8_t *p, int s8) {
    const __m128i b = QK__SEL(_mm_loadl_epi64, _mm_loadu_si128)((const __m128i *)p);
    return QK_VF_CVT(s8 ? QK__SEL(_mm256_cvtepi8_epi32, _mm512_cvtepi8_epi32)(b)
                        : QK__SEL(_mm256_cvtepu8_epi32, _mm512_cvtepu8_epi32)(b));
}

/* The output stage of the ops (qk__qout1 on QK_V_LANES lanes): RNE(fl(v * inv)) clamped to
 * [lo, hi] (integers as floats: the clamp before the rounding gives the scalar result), + zp,
 * stored as QK_V_LANES bytes (in range: the narrowing never saturates). */
typedef struct {
    QK_VF inv, lo, hi;
    QK_V zp;
    int s8;
} QK__N(qk__qops_out_);

QK_V_TARGET static QK_ALWAYS_INLINE QK__N(qk__qops_out_) QK__N(qk__qops_out_make_)(const qk__qout *q) {
    QK__N(qk__qops_out_) o;
    o.inv = QK_VF_SET1(q->inv);
    o.lo = QK_VF_SET1((float)q->lo);
    o.hi = QK_VF_SET1((float)q->hi);
    o.zp = QK_V_SET1(q->zp);
    o.s8 = q->s8; /* a copy: y may alias *q */
    return o;
}

QK_V_TARGET static QK_ALWAYS_INLINE void QK__N(qk__qops_store_)(uint8_t *p, QK_VF v,
                                                                 const QK__N(qk__qops_out_) *o) {
    QK_VF t = QK_VF_MIN(QK_VF_MAX(QK_VF_MUL(v, o->inv), o->lo), o->hi);
    t = QK__SEL(_mm256_round_ps, _mm512_roundscale_ps)(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const QK_V r = QK_V_ADD(QK_V_CVT_RNE(t), o->zp);
#if QK_V_IS512
    _mm_storeu_si128((__m128i *)p, o->s8 ? _mm512_cvtsepi32_epi8(r) : _mm512_cvtusepi32_epi8(r));
#else
    const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
    _mm_storel_epi64((__m128i *)p, o->s8 ? _mm_packs_epi16(w, w) : _mm_packus_epi16(w, w));
#endif
}

/* Quantized add: fl(fma(a, sa, nba) + fma(b, sb, nbb)), ReLU, the output stage; returns the
 * elements done (whole vectors). */
QK_V_TARGET static size_t QK__N(qk__qadd_)(const uint8_t *a, const uint8_t *b, size_t n, float sa,
                                           float nba, float sb, float nbb, const qk__qout *q,
                                           int relu, uint8_t *y) {
    const QK_VF vsa = QK_VF_SET1(sa), vna = QK_VF_SET1(nba);
    const QK_VF vsb = QK_VF_SET1(sb), vnb = QK_VF_SET1(nbb), zero = QK_VF_SET1(0.0f);
    const QK__N(qk__qops_out_) o = QK__N(qk__qops_out_make_)(q);
    const int s8 = o.s8;
    size_t i = 0;
    for (; i + QK_V_LANES <= n; i += QK_V_LANES) {
        const QK_VF da = QK__SEL(_mm256_fmadd_ps, _mm512_fmadd_ps)(QK__N(qk__qops_loadf_)(a + i, s8), vsa, vna);
        const QK_VF db = QK__SEL(_mm256_fmadd_ps, _mm512_fmadd_ps)(QK__N(qk__qops_loadf_)(b + i, s8), vsb, vnb);
        QK_VF c = QK__SEL(_mm256_add_ps, _mm512_add_ps)(da, db);
        if (relu) c = QK_VF_MAX(c, zero);
        QK__N(qk__qops_store_)(y + i, c, &o);
    }
    return i;
}

/* Quantized mul: c = (a - za) (b - zb) exact in int32 (|c| <= 255^2), fl((float)c * m), the
 * output stage with inv = m; b_one: b[0] for every element (one value a row); returns the
 * elements done (whole vectors). */
QK_V_TARGET static size_t QK__N(qk__qmul_)(const uint8_t *a, const uint8_t *b, int b_one, size_t n,
                                           int32_t za, int32_t zb, const qk__qout *q, uint8_t *y) {
    const QK__N(qk__qops_out_) o = QK__N(qk__qops_out_make_)(q);
    const int s8 = o.s8;
    const QK_V vza = QK_V_SET1(za), vzb = QK_V_SET1(zb);
    const QK_V b1 = QK_V_SET1((s8 ? (int32_t)(int8_t)b[0] : (int32_t)b[0]) - zb);
#define QK__QMUL_LOADI(p)                                                                     \
    (s8 ? QK__SEL(_mm256_cvtepi8_epi32, _mm512_cvtepi8_epi32)(                                 \
              QK__SEL(_mm_loadl_epi64, _mm_loadu_si128)((const __m128i *)(p)))                \
        : QK__SEL(_mm256_cvtepu8_epi32, _mm512_cvtepu8_epi32)(                                 \
              QK__SEL(_mm_loadl_epi64, _mm_loadu_si128)((const __m128i *)(p))))
    size_t i = 0;
    for (; i + QK_V_LANES <= n; i += QK_V_LANES) {
        const QK_V va = QK_V_SUB(QK__QMUL_LOADI(a + i), vza);
        const QK_V vb = b_one ? b1 : QK_V_SUB(QK__QMUL_LOADI(b + i), vzb);
        QK__N(qk__qops_store_)(y + i, QK_VF_CVT(QK__SEL(_mm256_mullo_epi32, _mm512_mullo_epi32)(va, vb)), &o);
    }
#undef QK__QMUL_LOADI
    return i;
}

/* The sum of the bytes x[i] ^ flip over whole vectors of 4 * QK_V_LANES bytes (psadbw against
 * zero); returns the bytes done, their sum added to *s. */
QK_V_TARGET static size_t QK__N(qk__sum_bytes_)(const uint8_t *x, size_t n, uint8_t flip,
                                                uint64_t *s) {
    const QK_V f = QK_V_SET1_8((char)flip);
    const QK_V zero = QK__SEL(_mm256_setzero_si256(), _mm512_setzero_si512());
    QK_V acc = zero;
    size_t i = 0;
    for (; i + 4 * QK_V_LANES <= n; i += 4 * QK_V_LANES) {
        const QK_V v = QK__SEL(_mm256_xor_si256, _mm512_xor_si512)(QK_V_LOAD(x + i), f);
        acc = QK__SEL(_mm256_add_epi64, _mm512_add_epi64)(acc, QK__SEL(_mm256_sad_epu8, _mm512_sad_epu8)(v, zero));
    }
    uint64_t lanes[QK_V_LANES / 2];
    QK_V_STORE(lanes, acc);
    for (size_t k = 0; k < QK_V_LANES / 2; k++) *s += lanes[k];
    return i;
}

/* Quantized LeakyReLU: d = fl(fma(x, sx, nbx)), d > 0 ? d : fl(d * slope), the output stage;
 * returns the elements done (whole vectors). */
QK_V_TARGET static size_t QK__N(qk__qleaky_)(const uint8_t *x, size_t n, float sx, float nbx,
                                             float slope, const qk__qout *q, uint8_t *y) {
    const QK_VF vs = QK_VF_SET1(sx), vn = QK_VF_SET1(nbx), vsl = QK_VF_SET1(slope);
    const QK_VF zero = QK_VF_SET1(0.0f);
    const QK__N(qk__qops_out_) o = QK__N(qk__qops_out_make_)(q);
    const int s8 = o.s8;
    size_t i = 0;
    for (; i + QK_V_LANES <= n; i += QK_V_LANES) {
        const QK_VF d = QK__SEL(_mm256_fmadd_ps, _mm512_fmadd_ps)(QK__N(qk__qops_loadf_)(x + i, s8), vs, vn);
        const QK_VF neg = QK_VF_MUL(d, vsl);
#if QK_V_IS512
        const QK_VF v = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(d, zero, _CMP_GT_OQ), neg, d);
#else
        const QK_VF v = _mm256_blendv_ps(neg, d, _mm256_cmp_ps(d, zero, _CMP_GT_OQ));
#endif
        QK__N(qk__qops_store_)(y + i, v, &o);
    }
    return i;
}

/* ---- average pooling (qk_qavg_pool2d): window sums and the output stage ------------------- */
/* QK_V_LANES 8-bit integers at p (u8 zero-extended, s8 sign-extended) as int32 lanes. */
QK_V_TARGET static QK_ALWAYS_INLINE QK_V QK__N(qk__avg_load8_)(const uint8_t *p, int s8) {
    const __m128i b = QK__SEL(_mm_loadl_epi64, _mm_loadu_si128)((const __m128i *)p);
    return s8 ? QK__SEL(_mm256_cvtepi8_epi32, _mm512_cvtepi8_epi32)(b)
              : QK__SEL(_mm256_cvtepu8_epi32, _mm512_cvtepu8_epi32)(b);
}

/* v[k] = sum over a < na of x[k + a * stride] (8-bit, widened), k < n; returns the elements
 * done (whole vectors; qk__avg_vsum_scalar does the rest). */
QK_V_TARGET static size_t QK__N(qk__avg_vsum_)(int32_t *v, const uint8_t *x, size_t stride,
                                               size_t na, size_t n, int s8) {
    size_t k = 0;
    for (; k + QK_V_LANES <= n; k += QK_V_LANES) {
        QK_V acc = QK__N(qk__avg_load8_)(x + k, s8);
        for (size_t a = 1; a < na; a++)
            acc = QK_V_ADD(acc, QK__N(qk__avg_load8_)(x + a * stride + k, s8));
        QK_V_STORE(v + k, acc);
    }
    return k;
}

/* s[k] = sum over b < nb of v[k + b], k < n; returns the elements done (whole vectors). */
QK_V_TARGET static size_t QK__N(qk__avg_hsum_)(int32_t *s, const int32_t *v, size_t nb, size_t n) {
    size_t k = 0;
    for (; k + QK_V_LANES <= n; k += QK_V_LANES) {
        QK_V acc = QK_V_LOAD(v + k);
        for (size_t b = 1; b < nb; b++) acc = QK_V_ADD(acc, QK_V_LOAD(v + k + b));
        QK_V_STORE(s + k, acc);
    }
    return k;
}

/* The output stage of qk_qavg_pool2d (qk__avg_out_scalar on QK_V_LANES lanes): f = fl((float)
 * (s + bias) * m); vecf: RNE(f) + zp, else RNE(fl(f + zp)); clamped to [qmin, qmax], stored as
 * bytes. |s + bias| < 2^30 and |m| <= 1: the conversions never overflow. Returns the elements
 * done (whole vectors). */
QK_V_TARGET static size_t QK__N(qk__avg_out_)(const int32_t *s, const int32_t *bias,
                                              const float *m, size_t n, int vecf, int32_t zp,
                                              int s8, uint8_t *y) {
    const QK_V vzp = QK_V_SET1(zp), qmin = QK_V_SET1(s8 ? INT8_MIN : 0),
               qmax = QK_V_SET1(s8 ? INT8_MAX : UINT8_MAX);
    const QK_VF fzp = QK_VF_SET1((float)zp);
    size_t k = 0;
    for (; k + QK_V_LANES <= n; k += QK_V_LANES) {
        const QK_V acc = QK_V_ADD(QK_V_LOAD(s + k), QK_V_LOAD(bias + k));
        const QK_VF f = QK_VF_MUL(QK_VF_CVT(acc), QK__SEL(_mm256_loadu_ps, _mm512_loadu_ps)(m + k));
        QK_V r = vecf ? QK_V_ADD(QK_V_CVT_RNE(f), vzp)
                      : QK_V_CVT_RNE(QK__SEL(_mm256_add_ps, _mm512_add_ps)(f, fzp));
        r = QK__SEL(_mm256_min_epi32, _mm512_min_epi32)(QK__SEL(_mm256_max_epi32, _mm512_max_epi32)(r, qmin), qmax);
#if QK_V_IS512
        _mm_storeu_si128((__m128i *)(y + k), _mm512_cvtepi32_epi8(r));
#else
        const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
        _mm_storel_epi64((__m128i *)(y + k), s8 ? _mm_packs_epi16(w, w) : _mm_packus_epi16(w, w));
#endif
    }
    return k;
}
