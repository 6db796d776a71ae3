/* simd_r64.h -- int64-lane primitives (4 lanes on AVX2, 8 on AVX-512) of the elementwise ISA
 * templates that compute exact fixed-point products of int32 values (rows_isa.h, layernorm_isa.h):
 * loads widened from int32 / int16, the exact product of two int32 low dwords, arithmetic shifts
 * (AVX2 has none for 64-bit lanes: a bias trick), clamps, narrowing stores. Included by a
 * template after elementwise/simd_v.h, once per ISA (QK_V_IS512 0 or 1): no include guard; the
 * macros are redefined identically, the functions carry the ISA in their names. */
/* int64 lanes: 4 (AVX2) or 8 (AVX-512), loaded from as many int32 or int16 values */
#define QK_R64 QK__SEL(__m256i, __m512i)
#define QK_R64_LANES QK__SEL(4, 8)
#define QK_R64_FROM32(p)                                                                      \
    QK__SEL(_mm256_cvtepi32_epi64(_mm_loadu_si128((const __m128i *)(p))),                      \
            _mm512_cvtepi32_epi64(_mm256_loadu_si256((const __m256i *)(p))))
#define QK_R64_FROM16(p)                                                                      \
    QK__SEL(_mm256_cvtepi16_epi64(_mm_loadl_epi64((const __m128i *)(p))),                      \
            _mm512_cvtepi16_epi64(_mm_loadu_si128((const __m128i *)(p))))
#define QK_R64_SET1(v) QK__SEL(_mm256_set1_epi64x, _mm512_set1_epi64)(v)
#define QK_R64_ADD(a, b) QK__SEL(_mm256_add_epi64, _mm512_add_epi64)(a, b)
#define QK_R64_SUB(a, b) QK__SEL(_mm256_sub_epi64, _mm512_sub_epi64)(a, b)
/* the low dwords of a and b, sign-extended, multiplied: exact int64 products */
#define QK_R64_MUL32(a, b) QK__SEL(_mm256_mul_epi32, _mm512_mul_epi32)(a, b)

/* floor(t / 2^k), k in [1, 62]. AVX2 has no 64-bit arithmetic shift: t + 2^63 (the sign bit
 * flipped) is t's offset value in [0, 2^64); its logical shift minus 2^(63 - k) is the floor. */
QK_V_TARGET static QK_ALWAYS_INLINE QK_R64 QK__N(qk__r64_sra_)(QK_R64 t, int k) {
#if QK_V_IS512
    return _mm512_sra_epi64(t, _mm_cvtsi32_si128(k));
#else
    const __m256i sign = _mm256_set1_epi64x(INT64_MIN);
    const __m256i u = _mm256_srl_epi64(_mm256_xor_si256(t, sign), _mm_cvtsi32_si128(k));
    return _mm256_sub_epi64(u, _mm256_set1_epi64x(INT64_C(1) << (63 - k)));
#endif
}

/* min(max(t, lo), hi) */
QK_V_TARGET static QK_ALWAYS_INLINE QK_R64 QK__N(qk__r64_clamp_)(QK_R64 t, QK_R64 lo, QK_R64 hi) {
#if QK_V_IS512
    return _mm512_min_epi64(_mm512_max_epi64(t, lo), hi);
#else
    t = _mm256_blendv_epi8(t, lo, _mm256_cmpgt_epi64(lo, t));
    return _mm256_blendv_epi8(t, hi, _mm256_cmpgt_epi64(t, hi));
#endif
}

/* The lanes (each inside int32) stored as int32, or as bytes (each in [0, 255]). */
QK_V_TARGET static QK_ALWAYS_INLINE void QK__N(qk__r64_store32_)(int32_t *y, QK_R64 t) {
#if QK_V_IS512
    _mm256_storeu_si256((__m256i *)y, _mm512_cvtepi64_epi32(t));
#else
    const __m256i lo = _mm256_permutevar8x32_epi32(t, _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6));
    _mm_storeu_si128((__m128i *)y, _mm256_castsi256_si128(lo));
#endif
}

QK_V_TARGET static QK_ALWAYS_INLINE void QK__N(qk__r64_store8_)(uint8_t *y, QK_R64 t) {
#if QK_V_IS512
    _mm_storel_epi64((__m128i *)y, _mm512_cvtepi64_epi8(t));
#else
    const __m128i d = _mm256_castsi256_si128(
        _mm256_permutevar8x32_epi32(t, _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6)));
    const int32_t b = _mm_cvtsi128_si32(_mm_packus_epi16(_mm_packus_epi32(d, d), d));
    memcpy(y, &b, 4);
#endif
}

/* Lanes outside int32, as a nonzero value. */
QK_V_TARGET static QK_ALWAYS_INLINE int QK__N(qk__r64_outside32_)(QK_R64 t) {
#if QK_V_IS512
    return _mm512_cmpgt_epi64_mask(t, _mm512_set1_epi64(INT32_MAX)) |
           _mm512_cmplt_epi64_mask(t, _mm512_set1_epi64(INT32_MIN));
#else
    const __m256i o = _mm256_or_si256(_mm256_cmpgt_epi64(t, _mm256_set1_epi64x(INT32_MAX)),
                                      _mm256_cmpgt_epi64(_mm256_set1_epi64x(INT32_MIN), t));
    return !_mm256_testz_si256(o, o);
#endif
}

/* floor(t / 2^k) per lane, k in [0, 63) (the bias trick of qk__r64_sra_, variable counts) */
QK_V_TARGET static QK_ALWAYS_INLINE QK_R64 QK__N(qk__r64_srav_)(QK_R64 t, QK_R64 k) {
#if QK_V_IS512
    return _mm512_srav_epi64(t, k);
#else
    const __m256i sign = _mm256_set1_epi64x(INT64_MIN);
    return _mm256_sub_epi64(_mm256_srlv_epi64(_mm256_xor_si256(t, sign), k),
                            _mm256_srlv_epi64(sign, k));
#endif
}

/* 2^(k-1) per lane for k >= 1, 0 for k = 0 */
QK_V_TARGET static QK_ALWAYS_INLINE QK_R64 QK__N(qk__r64_half_)(QK_R64 k) {
    const QK_R64 one = QK_R64_SET1(1);
    return QK__SEL(_mm256_srli_epi64(_mm256_sllv_epi64(one, k), 1),
                   _mm512_srli_epi64(_mm512_sllv_epi64(one, k), 1));
}

/* int16 stores (each lane inside int16) */
QK_V_TARGET static QK_ALWAYS_INLINE void QK__N(qk__r64_store16_)(int16_t *y, QK_R64 t) {
#if QK_V_IS512
    _mm_storeu_si128((__m128i *)y, _mm512_cvtepi64_epi16(t));
#else
    const __m128i d = _mm256_castsi256_si128(
        _mm256_permutevar8x32_epi32(t, _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6)));
    _mm_storel_epi64((__m128i *)y, _mm_packs_epi32(d, d));
#endif
}

