/* simd_avx2.h -- small inline helpers shared by the AVX2 micro-kernels (and by the AVX-512 ones,
 * whose targets include AVX2). Not installed, not public. */
#ifndef QKERNELS_UKERNELS_SIMD_AVX2_H
#define QKERNELS_UKERNELS_SIMD_AVX2_H

#include "ukernels/ukernels.h"

#if QK_X86
#include <immintrin.h>

/* 16 int16 at p, p + s, ..., p + 15 s for a stride s of 1 or 2 (stride 2: the even elements of
 * 32, read whole). */
QK_TARGET_AVX2 static inline __m256i qk__load16_s16__avx2(const int16_t *p, size_t stride) {
    if (stride == 1) return _mm256_loadu_si256((const __m256i *)p);
    const __m256i m = _mm256_set1_epi32(0xFFFF);
    const __m256i v0 = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)p), m);
    const __m256i v1 = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(p + 16)), m);
    return _mm256_permute4x64_epi64(_mm256_packus_epi32(v0, v1), 0xD8);
}

/* The same for 16 bytes (stride 2: the even bytes of 32, read whole). */
QK_TARGET_AVX2 static inline __m128i qk__load16_u8__avx2(const uint8_t *p, size_t stride) {
    if (stride == 1) return _mm_loadu_si128((const __m128i *)p);
    const __m256i v = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)p), _mm256_set1_epi16(0xFF));
    return _mm_packus_epi16(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
}

/* The fixed-point output stages QK_REQ_DOUBLE / QK_REQ_DOUBLE_HALF_UP of 8 int32 sums, the
 * AVX2 twin of qk__fx16__avx512 (simd_avx512.h: the same steps; *ovf is -1 in the lanes whose
 * left shift overflowed). vpsravd fills with the sign past 31, vpsllvd gives 0 there. */
QK_TARGET_AVX2 static QK_ALWAYS_INLINE __m256i qk__fx8__avx2(__m256i acc, __m256i m, __m256i sh,
                                                             int half_up, __m256i *ovf) {
    const __m256i zero = _mm256_setzero_si256(), one = _mm256_set1_epi32(1);
    const __m256i left = _mm256_max_epi32(sh, zero);
    const __m256i e = _mm256_sub_epi32(left, sh);
    const __m256i x = _mm256_sllv_epi32(acc, left);
    *ovf = _mm256_xor_si256(_mm256_cmpeq_epi32(_mm256_srav_epi32(x, left), acc),
                            _mm256_set1_epi32(-1));
    const __m256i n30 = _mm256_set1_epi64x(INT64_C(1) << 30);
    const __m256i pe = _mm256_add_epi64(_mm256_mul_epi32(x, m), n30);
    const __m256i po = _mm256_add_epi64(
        _mm256_mul_epi32(_mm256_srli_epi64(x, 32), _mm256_srli_epi64(m, 32)), n30);
    __m256i h = _mm256_blend_epi32(_mm256_srli_epi64(pe, 31), _mm256_slli_epi64(po, 1), 0xAA);
    const __m256i imin = _mm256_set1_epi32(INT32_MIN);
    h = _mm256_blendv_epi8(h, _mm256_set1_epi32(INT32_MAX),
                           _mm256_and_si256(_mm256_cmpeq_epi32(x, imin), _mm256_cmpeq_epi32(m, imin)));
    const __m256i q = _mm256_srav_epi32(h, e);
    if (half_up) {
        const __m256i bit = _mm256_and_si256(_mm256_srav_epi32(h, _mm256_sub_epi32(e, one)), one);
        return _mm256_add_epi32(q, _mm256_and_si256(bit, _mm256_cmpgt_epi32(e, zero)));
    }
    const __m256i mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, e), one);
    const __m256i thr = _mm256_add_epi32(_mm256_srai_epi32(mask, 1), _mm256_srli_epi32(h, 31));
    return _mm256_sub_epi32(q, _mm256_cmpgt_epi32(_mm256_and_si256(h, mask), thr));
}

/* The fp32 output stage (QK_REQ_FP32 to 8 bits, qk__epilogue_fused) of channel o, its
 * parameters read once (qk__fp32_ch__avx2: the stores through uint8_t pointers would otherwise
 * make the compiler read them again for every block), then applied to 16 int32 sums, lanes 0-7
 * in s0 and 8-15 in s1, the first cnt (<= 16) bytes to y (qk__fp32_row16__avx2):
 * epilogue_avx2.c's operations in its order (int32 bias, vcvtdq2ps, float bias, scale, the clamp
 * on integral float bounds, vcvtps2dq, zero point, packs), so the bits of qk_epilogue_run. For
 * the fused tiles. */
typedef struct {
    __m256i bias, zp;
    __m256 fbias, scale, flo, fhi;
    int has_bias, has_fbias, s8;
} qk__fp32_ch;

QK_TARGET_AVX2 static QK_ALWAYS_INLINE void qk__fp32_ch__avx2(const qk_epilogue *ep, size_t o,
                                                              qk__fp32_ch *k) {
    k->has_bias = ep->bias != NULL;
    k->has_fbias = ep->float_bias != NULL;
    k->s8 = ep->out_type == QK_DT_S8;
    k->bias = _mm256_set1_epi32(k->has_bias ? ep->bias[o] : 0);
    k->fbias = _mm256_set1_ps(k->has_fbias ? ep->float_bias[o] : 0.0f);
    k->scale = _mm256_set1_ps(ep->scale[o]);
    k->flo = _mm256_set1_ps(qk__ep_flo(ep));
    k->fhi = _mm256_set1_ps(qk__ep_fhi(ep));
    k->zp = _mm256_set1_epi32(ep->zero_point);
}

QK_TARGET_AVX2 static QK_ALWAYS_INLINE void qk__fp32_row16__avx2(const qk__fp32_ch *k, __m256i s0,
                                                                 __m256i s1, size_t cnt,
                                                                 uint8_t *y) {
    if (k->has_bias) {
        s0 = _mm256_add_epi32(s0, k->bias);
        s1 = _mm256_add_epi32(s1, k->bias);
    }
    __m256 f0 = _mm256_cvtepi32_ps(s0), f1 = _mm256_cvtepi32_ps(s1);
    if (k->has_fbias) {
        f0 = _mm256_add_ps(f0, k->fbias);
        f1 = _mm256_add_ps(f1, k->fbias);
    }
    f0 = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(f0, k->scale), k->flo), k->fhi);
    f1 = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(f1, k->scale), k->flo), k->fhi);
    const __m256i q0 = _mm256_add_epi32(_mm256_cvtps_epi32(f0), k->zp);
    const __m256i q1 = _mm256_add_epi32(_mm256_cvtps_epi32(f1), k->zp);
    /* packs: q0 0-3, q1 0-3, q0 4-7, q1 4-7; the permute puts the 16 in order */
    const __m256i w16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(q0, q1), 0xD8);
    const __m128i l = _mm256_castsi256_si128(w16), h = _mm256_extracti128_si256(w16, 1);
    const __m128i b8 = k->s8 ? _mm_packs_epi16(l, h) : _mm_packus_epi16(l, h);
    if (cnt == 16) {
        _mm_storeu_si128((__m128i *)y, b8);
        return;
    }
    uint8_t buf[16];
    _mm_storeu_si128((__m128i *)buf, b8);
    memcpy(y, buf, cnt);
}

/* One k row of a u8 tile panel: the 16 lanes of up to 3 runs (nseg, a constant where this is
 * inlined), lanes of run r from p + base[r] (vpblendvb with the run's lane mask m1, m2). */
QK_TARGET_AVX2 static QK_ALWAYS_INLINE __m128i qk__seg_row_u8__avx2(const uint8_t *p,
                                                                     const size_t *base, int nseg,
                                                                     size_t sw, __m128i m1,
                                                                     __m128i m2) {
    __m128i v = qk__load16_u8__avx2(p + base[0], sw);
    if (nseg > 1) v = _mm_blendv_epi8(v, qk__load16_u8__avx2(p + base[1], sw), m1);
    if (nseg > 2) v = _mm_blendv_epi8(v, qk__load16_u8__avx2(p + base[2], sw), m2);
    return v;
}

/* The body of a u8 tile panel (qk_im2col_u8), one quad of k rows at a time: STORE4(d, v0, v1,
 * v2, v3) interleaves the four rows into the 64-byte [16][4] block d (an always-inline function
 * of the including file's ISA); the last quad's rows past k are zero. Expanded inside a function
 * with src, koff, k, k4, base, nseg, sw, m1, m2, panel in scope. */
#define QK__IM2COL_U8_ROW(KK) qk__seg_row_u8__avx2(src + koff[KK], base, nseg, sw, m1, m2)
#define QK__IM2COL_U8_LAST(KK) ((KK) < k ? QK__IM2COL_U8_ROW(KK) : _mm_setzero_si128())
#define QK__IM2COL_U8_BODY(STORE4)                                                  \
    size_t kk = 0;                                                                  \
    for (; kk + 4 <= k; kk += 4)                                                    \
        STORE4(panel + kk * 16, QK__IM2COL_U8_ROW(kk), QK__IM2COL_U8_ROW(kk + 1),   \
               QK__IM2COL_U8_ROW(kk + 2), QK__IM2COL_U8_ROW(kk + 3));               \
    if (kk < k4)                                                                    \
        STORE4(panel + kk * 16, QK__IM2COL_U8_LAST(kk), QK__IM2COL_U8_LAST(kk + 1), \
               QK__IM2COL_U8_LAST(kk + 2), QK__IM2COL_U8_LAST(kk + 3));

/* qk_im2col_u8 of an ISA from its body, specialized for stride 1 and 2 and 1 to 3 runs (NAME:
 * the function, TARGET its attribute, BODY(nseg, sw) an always-inline function of the rest). */
#define QK__IM2COL_U8_DISPATCH(NAME, TARGET, BODY)                                                \
    TARGET int NAME(const uint8_t *src, const size_t *koff, size_t k, size_t k4,                  \
                    const qk_segs *g, size_t stride_w, uint8_t *panel) {                          \
        const __m128i lane = _mm_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); \
        const __m128i m1 = g->n > 1 ? _mm_cmpgt_epi8(lane, _mm_set1_epi8((char)((int)g->start[1] - 1))) \
                                    : _mm_setzero_si128();                                        \
        const __m128i m2 = g->n > 2 ? _mm_cmpgt_epi8(lane, _mm_set1_epi8((char)((int)g->start[2] - 1))) \
                                    : _mm_setzero_si128();                                        \
        switch (g->n * 4 + stride_w) {                                                            \
            case 5: BODY(src, koff, k, k4, g->base, 1, 1, m1, m2, panel); return 1;               \
            case 9: BODY(src, koff, k, k4, g->base, 2, 1, m1, m2, panel); return 1;               \
            case 13: BODY(src, koff, k, k4, g->base, 3, 1, m1, m2, panel); return 1;              \
            case 6: BODY(src, koff, k, k4, g->base, 1, 2, m1, m2, panel); return 1;               \
            case 10: BODY(src, koff, k, k4, g->base, 2, 2, m1, m2, panel); return 1;              \
            case 14: BODY(src, koff, k, k4, g->base, 3, 2, m1, m2, panel); return 1;              \
            default: return 0;                                                                    \
        }                                                                                         \
    }
#endif

#endif /* QKERNELS_UKERNELS_SIMD_AVX2_H */
