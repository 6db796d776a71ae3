/* conv_u8_avx512vnni.c -- the 8-bit conv tiles with the output stage fused (see ukernels.h):
 * 12 or 16 channels x 16 pixels on vpdpbusd, from a panel or (direct tiles) straight from the
 * channel-quad image, and tiles of at most 8 pixels transposed; each requantizes its int32 sums
 * in registers and stores bytes. Bit for bit the unfused path (gemm_u8 + the tile output): the
 * same integer sums (wrapping modulo 2^32), then the fp32 output stage of simd_avx512.h. */
#include "ukernels/simd_avx512.h"

#if QK_X86
/* corr[o] + bias[o] (mod 2^32): the integer terms added to a channel's sums. The kernels start
 * their accumulators from it (integer sums modulo 2^32: the same bits in any order). */
static inline int32_t qk__cb(const qk_epilogue *ep, const uint32_t *corr, size_t o) {
    return (int32_t)(corr[o] + (ep->bias ? (uint32_t)ep->bias[o] : 0u));
}

/* ---- GEMM tiles ------------------------------------------------------------------------- */
#define QK__F12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define QK__F16(X) QK__F12(X) X(12) X(13) X(14) X(15)
#define QK__FDECL(r) \
    __m512i acc##r = _mm512_set1_epi32((r) < mr ? qk__cb(ep, corr, o0 + (r)) : 0);
/* vpdpbusd with the weight dword as an embedded broadcast ({1to16}): one instruction a row
 * instead of vpbroadcastd + vpdpbusd (3-6% more MAC/s on Zen 4; compilers do not fold the
 * broadcast themselves). The "m" operand tells the compiler the step reads memory at ap. */
#define QK__FSTEP(r)                                         \
    __asm__("vpdpbusd " #r "*4(%[p])%{1to16%}, %[b], %[acc]" \
            : [acc] "+v"(acc##r)                             \
            : [b] "v"(bv), [p] "r"(ap), "m"(*(const unsigned char(*)[64])ap));
/* The output of row r (channel o0 + r): the fp32 output stage of simd_avx512.h with the
 * channel's scale (and float bias, when HAS_FB) read through the local pointers sc / fb, set
 * once: a store through y (char) may alias any memory, so fields read through ep in the rows
 * would be read again after every store. FULL (16 pixels, no pixel sums, all mr rows: the
 * common tile) stores whole 16 bytes without tests a row; the same operations, the same bits. */
#define QK__FOUT_ROW(r, HAS_FB, FULL)                                                             \
    {                                                                                             \
        __m512i v = acc##r;                                                                       \
        if (!(FULL) && pixsum)                                                                    \
            v = _mm512_sub_epi32(v, _mm512_mullo_epi32(_mm512_set1_epi32(wz[r]), vps));           \
        const __m128i q = qk__fp32_bytes16__avx512(                                               \
            v, HAS_FB, (HAS_FB) ? _mm512_set1_ps(fb[r]) : _mm512_setzero_ps(),                    \
            _mm512_set1_ps(sc[r]), &z);                                                           \
        if ((FULL) || full)                                                                       \
            _mm_storeu_si128((__m128i *)(y + (r) * ystride), q);                                  \
        else                                                                                      \
            _mm_mask_storeu_epi8(y + (r) * ystride, mask, q);                                     \
    }
#define QK__FOUT(r) \
    if ((r) < mr) QK__FOUT_ROW(r, has_fb, 0)
#define QK__FOUT_F(r) QK__FOUT_ROW(r, 1, 1)
#define QK__FOUT_N(r) QK__FOUT_ROW(r, 0, 1)
/* the rows' outputs: the common tile (MR rows, 16 pixels, no pixel sums) without a test a row */
#define QK__FOUT_ALL(ROWS, MR)                                       \
    const float *const sc = ep->scale + o0;                          \
    const float *const fb = ep->float_bias ? ep->float_bias + o0 : NULL; \
    const int32_t *const wz = pixsum ? wzp8 + o0 : NULL;              \
    const int has_fb = fb != NULL;                                   \
    if (full && mr == (MR) && !pixsum) {                             \
        if (has_fb) {                                                \
            ROWS(QK__FOUT_F)                                         \
        } else {                                                     \
            ROWS(QK__FOUT_N)                                         \
        }                                                            \
    } else {                                                         \
        ROWS(QK__FOUT)                                               \
    }

#define QK__FUSED_GEMM(NAME, ROWS, MR)                                                        \
    QK_TARGET_AVX512VNNI void NAME(size_t kq, const int8_t *a, const uint8_t *b,              \
                                     const qk_epilogue *ep, const int32_t *wzp8,              \
                                     const uint32_t *corr, const uint32_t *pixsum, size_t o0, \
                                     size_t mr, size_t cnt, char *y, size_t ystride) {        \
        ROWS(QK__FDECL)                                                                       \
        for (size_t p = 0; p < kq; p++) {                                                     \
            const unsigned char *ap = (const unsigned char *)a + 4 * (MR) * p;                \
            const __m512i bv = _mm512_loadu_si512((const void *)(b + 64 * p));                \
            ROWS(QK__FSTEP)                                                                   \
        }                                                                                     \
        const qk__outc_avx512 z = qk__outc__avx512(ep);                                       \
        const __m512i vps =                                                                   \
            pixsum ? _mm512_loadu_si512((const void *)pixsum) : _mm512_setzero_si512();       \
        const int full = cnt == 16;                                                           \
        const __mmask16 mask = (__mmask16)((1u << cnt) - 1u);                                 \
        QK__FOUT_ALL(ROWS, MR)                                                                \
    }
QK__FUSED_GEMM(qk_conv_fused_12x16__avx512vnni, QK__F12, 12)
QK__FUSED_GEMM(qk_conv_fused_16x16__avx512vnni, QK__F16, 16)

/* The same tiles reading the channel-quad image directly (implicit GEMM, stride 1, 16 pixels,
 * no weight zero points): quad (tap t, cq) of the panel is the 64 bytes at
 * b0 + 4 * tapoff[t] + cq * plane4 (run 0), lanes of mask m1 replaced by those at
 * b1 + 4 * tapoff[t] + cq * plane4 (run 1, NSEG 2): exactly the panel qk_im2col_u8x4 would build,
 * without the copy. */
#define QK__DIRECT_GEMM(NAME, ROWS, MR, NSEG)                                                     \
    QK_TARGET_AVX512VNNI void NAME(size_t taps, size_t nq, const size_t *tapoff,                  \
                                     size_t plane4, const int8_t *a, const uint8_t *b0,           \
                                     const uint8_t *b1, uint16_t m1, const qk_epilogue *ep,       \
                                     const uint32_t *corr, size_t o0, size_t mr, size_t cnt,      \
                                     char *y, size_t ystride) {                                   \
        ROWS(QK__FDECL)                                                                           \
        const unsigned char *ap = (const unsigned char *)a;                                       \
        for (size_t t = 0; t < taps; t++) {                                                       \
            const uint8_t *p0 = b0 + 4 * tapoff[t];                                               \
            const uint8_t *p1 = b1 + 4 * tapoff[t];                                               \
            for (size_t cq = 0; cq < nq; cq++, ap += 4 * (MR)) {                                  \
                __m512i bv = _mm512_loadu_si512((const void *)(p0 + cq * plane4));                \
                if ((NSEG) > 1)                                                                   \
                    bv = _mm512_mask_loadu_epi32(bv, (__mmask16)m1, (const void *)(p1 + cq * plane4)); \
                ROWS(QK__FSTEP)                                                                   \
            }                                                                                     \
        }                                                                                         \
        const qk__outc_avx512 z = qk__outc__avx512(ep);                                           \
        const int32_t *wzp8 = NULL;                                                               \
        const __m512i vps = _mm512_setzero_si512();                                               \
        const uint32_t *pixsum = NULL;                                                            \
        const int full = cnt == 16;                                                               \
        const __mmask16 mask = (__mmask16)((1u << cnt) - 1u);                                     \
        QK__FOUT_ALL(ROWS, MR)                                                                    \
    }
QK__DIRECT_GEMM(qk_conv_direct_12x16_1__avx512vnni, QK__F12, 12, 1)
QK__DIRECT_GEMM(qk_conv_direct_16x16_1__avx512vnni, QK__F16, 16, 1)
QK__DIRECT_GEMM(qk_conv_direct_12x16_2__avx512vnni, QK__F12, 12, 2)
QK__DIRECT_GEMM(qk_conv_direct_16x16_2__avx512vnni, QK__F16, 16, 2)

/* Tiles of at most 8 pixels, transposed: the channels are the vector lanes (the weight block's
 * quad p, [mr8][4] bytes, is one vector), each pixel a broadcast of its panel dword, one
 * accumulator a pixel; two sets of accumulators (even and odd quads) for independent chains,
 * summed at the end (sums modulo 2^32: the same bits in any order). Output: the same per-element
 * operations as qk__channel_bytes16__avx512 with the channel parameters as vectors, bytes
 * transposed to rows. */
#define QK__TDECL(i) __m512i e##i = _mm512_setzero_si512(), d##i = _mm512_setzero_si512();
#define QK__TSTEP(A, i, P) \
    if ((i) < cnt)         \
        A##i = _mm512_dpbusd_epi32(A##i, _mm512_set1_epi32(qk__ld32(b + 64 * (P) + 4 * (i))), wv);
#define QK__T8(X, A, P) X(A, 0, P) X(A, 1, P) X(A, 2, P) X(A, 3, P) X(A, 4, P) X(A, 5, P) X(A, 6, P) X(A, 7, P)
#define QK__TOUT(i)                                                                               \
    if ((i) < cnt) {                                                                              \
        __m512i v = _mm512_add_epi32(_mm512_add_epi32(e##i, d##i), vcorr);                        \
        if (pixsum)                                                                               \
            v = _mm512_sub_epi32(v, _mm512_mullo_epi32(vwz, _mm512_set1_epi32((int32_t)pixsum[i]))); \
        if (ep->bias) v = _mm512_add_epi32(v, vbias);                                             \
        _mm_storeu_si128((__m128i *)(q + 16 * (i)),                                               \
                         qk__fp32_bytes16__avx512(v, ep->float_bias != NULL, vfb, vsc, &z));      \
    }
#define QK__T8I(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)

QK_TARGET_AVX512VNNI void qk_conv_fused_tail__avx512vnni(size_t kq, const int8_t *a, size_t mr8,
                                                         const uint8_t *b, const qk_epilogue *ep,
                                                         const int32_t *wzp8, const uint32_t *corr,
                                                         const uint32_t *pixsum, size_t o0,
                                                         size_t mr, size_t cnt, char *y,
                                                         size_t ystride) {
    QK__T8I(QK__TDECL)
    const __mmask16 wm = (__mmask16)((1u << mr8) - 1u); /* mr8 = 12: 48-byte quads */
    size_t p = 0;
    for (; p + 2 <= kq; p += 2) {
        __m512i wv = _mm512_maskz_loadu_epi32(wm, a + 4 * mr8 * p);
        QK__T8(QK__TSTEP, e, p)
        wv = _mm512_maskz_loadu_epi32(wm, a + 4 * mr8 * (p + 1));
        QK__T8(QK__TSTEP, d, p + 1)
    }
    if (p < kq) {
        const __m512i wv = _mm512_maskz_loadu_epi32(wm, a + 4 * mr8 * p);
        QK__T8(QK__TSTEP, e, p)
    }
    const qk__outc_avx512 z = qk__outc__avx512(ep);
    const __mmask16 cm = (__mmask16)((1u << mr) - 1u); /* channels o0 .. o0 + mr - 1 exist */
    const __m512i vcorr = _mm512_maskz_loadu_epi32(cm, corr + o0);
    const __m512i vwz = _mm512_maskz_loadu_epi32(cm, wzp8 + o0);
    const __m512i vbias = ep->bias ? _mm512_maskz_loadu_epi32(cm, ep->bias + o0) : _mm512_setzero_si512();
    const __m512 vfb = ep->float_bias ? _mm512_maskz_loadu_ps(cm, ep->float_bias + o0) : _mm512_setzero_ps();
    const __m512 vsc = _mm512_maskz_loadu_ps(cm, ep->scale + o0);
    uint8_t q[8 * 16]; /* q[16 i + r]: pixel i, channel o0 + r */
    QK__T8I(QK__TOUT)
    for (size_t r = 0; r < mr; r++)
        for (size_t i = 0; i < cnt; i++) y[r * ystride + i] = (char)q[16 * i + r];
}
#endif
