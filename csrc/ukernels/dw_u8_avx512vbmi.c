/* dw_u8_avx512vbmi.c -- the 8-bit depthwise plane on AVX512-VNNI + VBMI (twin:
 * dw_u8_scalar.c), and the same plane with the output stage fused.
 *
 * Output j of a row, kernel row r, quad b of taps: the four bytes x[(j * sw) + (4b + q) * dw],
 * q = 0..3, against the four s8 taps (zero past kw): one vpdpbusd per quad for 16 outputs, the
 * dwords gathered from one 64-byte load by vpermb (VBMI). Sums wrap modulo 2^32, as the scalar
 * twin's uint32 arithmetic. Rows are taken four at a time (four independent vpdpbusd chains),
 * then (fused form) two, then one. The fused form starts its sums from corr + bias and applies
 * the fp32 output stage of simd_avx512.h: bit for bit the unfused plane followed by the output
 * stage. Row i of its output is stored at y + i * ow: whole 16-byte stores, masked only where
 * they would reach past the plane's last byte or over an output already written (rows of at
 * most 16 outputs spill only into rows written after them). */
#include "ukernels/simd_avx512.h"

#if QK_X86
enum { QK__DW8_MAXQ = 64 };

/* The byte gather (vpermb) index: byte 4p + q of a pixel quad group reads byte
 * p * stride_w + q * dil_w of the row (< 64 when qk__dw8_fits). */
QK_TARGET_AVX512 static inline __m512i qk__dw8_gather_index(size_t stride_w, size_t dil_w) {
    const __m512i lane = _mm512_set_epi8(63, 62, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49,
                                         48, 47, 46, 45, 44, 43, 42, 41, 40, 39, 38, 37, 36, 35, 34,
                                         33, 32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19,
                                         18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2,
                                         1, 0);
    const __m512i pq = _mm512_srli_epi16(_mm512_and_si512(lane, _mm512_set1_epi8((char)0xFC)), 2);
    const __m512i qq = _mm512_and_si512(lane, _mm512_set1_epi8(3));
    /* 16-bit products of bytes, low bytes kept */
    const __m512i lo8 = _mm512_set1_epi16(0x00FF);
    const __m512i m_even = _mm512_add_epi16(
        _mm512_mullo_epi16(_mm512_and_si512(pq, lo8), _mm512_set1_epi16((short)stride_w)),
        _mm512_mullo_epi16(_mm512_and_si512(qq, lo8), _mm512_set1_epi16((short)dil_w)));
    const __m512i m_odd = _mm512_add_epi16(
        _mm512_mullo_epi16(_mm512_srli_epi16(pq, 8), _mm512_set1_epi16((short)stride_w)),
        _mm512_mullo_epi16(_mm512_srli_epi16(qq, 8), _mm512_set1_epi16((short)dil_w)));
    return _mm512_or_si512(_mm512_and_si512(m_even, lo8), _mm512_slli_epi16(m_odd, 8));
}

/* One tap quad of 16 pixels from bt: the gathered dwords times the broadcast weights, added. */
#define QK__DW8_STEP(acc, bt) \
    acc = _mm512_dpbusd_epi32(acc, _mm512_permutexvar_epi8(idx, _mm512_loadu_si512((const void *)(bt))), wv[t])

/* The gathered quads of input row u of a 4-row block (base: the block's first input row). */
#define QK__DW8_G(u) _mm512_permutexvar_epi8(idx, _mm512_loadu_si512((const void *)(base + (u) * wp)))
/* Output row d of a 4-row block, stride SH, reads input rows d * SH + r against kernel row r
 * (kq == 1: one quad a kernel row, wv[r]); g##u is input row u gathered. */
#define QK__DW8_DP(a, u, r) a = _mm512_dpbusd_epi32(a, g##u, wv[r])
#define QK__DW8_K3_ROWS4(SH)                                                               \
    {                                                                                      \
        a0 = vc, a1 = vc, a2 = vc, a3 = vc;                                                \
        if ((SH) == 1) {                                                                   \
            const __m512i g0 = QK__DW8_G(0), g1 = QK__DW8_G(1), g2 = QK__DW8_G(2);         \
            QK__DW8_DP(a0, 0, 0); QK__DW8_DP(a0, 1, 1); QK__DW8_DP(a1, 1, 0);              \
            QK__DW8_DP(a0, 2, 2); QK__DW8_DP(a1, 2, 1); QK__DW8_DP(a2, 2, 0);              \
            const __m512i g3 = QK__DW8_G(3), g4 = QK__DW8_G(4), g5 = QK__DW8_G(5);         \
            QK__DW8_DP(a1, 3, 2); QK__DW8_DP(a2, 3, 1); QK__DW8_DP(a3, 3, 0);              \
            QK__DW8_DP(a2, 4, 2); QK__DW8_DP(a3, 4, 1); QK__DW8_DP(a3, 5, 2);              \
        } else {                                                                           \
            const __m512i g0 = QK__DW8_G(0), g1 = QK__DW8_G(1), g2 = QK__DW8_G(2);         \
            QK__DW8_DP(a0, 0, 0); QK__DW8_DP(a0, 1, 1); QK__DW8_DP(a0, 2, 2);              \
            QK__DW8_DP(a1, 2, 0);                                                          \
            const __m512i g3 = QK__DW8_G(3), g4 = QK__DW8_G(4), g5 = QK__DW8_G(5);         \
            QK__DW8_DP(a1, 3, 1); QK__DW8_DP(a1, 4, 2); QK__DW8_DP(a2, 4, 0);              \
            QK__DW8_DP(a2, 5, 1);                                                          \
            const __m512i g6 = QK__DW8_G(6), g7 = QK__DW8_G(7), g8 = QK__DW8_G(8);         \
            QK__DW8_DP(a2, 6, 2); QK__DW8_DP(a3, 6, 0); QK__DW8_DP(a3, 7, 1);              \
            QK__DW8_DP(a3, 8, 2);                                                          \
        }                                                                                  \
    }

/* The fused output stage's constants of one channel: the bounds and zero point (z), the scale
 * and float bias as vectors, made once a plane (read through ep after each byte store, which may
 * alias anything, they would be loaded again a row). */
typedef struct {
    qk__outc_avx512 z;
    __m512 sc, fb;
    int has_fb;
} qk__dw8_out;

/* Stores the 16 results of row i from column j: int32 sums (masked to the row), or with the
 * output stage fused, bytes (see the top of the file). */
QK_TARGET_AVX512VBMI static QK_ALWAYS_INLINE void qk__dw8_store(
    __m512i acc, size_t i, size_t j, size_t oh, size_t ow, int32_t *out, const qk__dw8_out *z,
    uint8_t *y, const int fused) {
    const size_t left = ow - j;
    if (!fused) {
        _mm512_mask_storeu_epi32(out + i * ow + j,
                                 left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u), acc);
        return;
    }
    const __m128i q = qk__fp32_bytes16__avx512(acc, z->has_fb, z->fb, z->sc, &z->z);
    uint8_t *p = y + i * ow + j;
    /* rows of at most 16 outputs are written in row order: a spill lands on rows written later */
    if (left >= 16 || (ow <= 16 && i * ow + 16 <= oh * ow))
        _mm_storeu_si128((__m128i *)p, q);
    else
        _mm_mask_storeu_epi8(p, (__mmask16)((1u << left) - 1u), q);
}

QK_TARGET_AVX512VBMI static QK_ALWAYS_INLINE void qk__dw8_plane(
    const uint8_t *x, size_t wp, const int8_t *w8, size_t kh, size_t kq, size_t stride_h,
    size_t stride_w, size_t dil_h, size_t dil_w, size_t oh, size_t ow, uint32_t corr,
    int32_t *out, const qk_epilogue *ep, size_t o, uint8_t *y, const int fused) {
    const __m512i idx = qk__dw8_gather_index(stride_w, dil_w);
    __m512i wv[QK__DW8_MAXQ];
    size_t off[QK__DW8_MAXQ];
    const size_t nq = kh * kq;
    /* the taps: wv[t] the quad's weights broadcast, off[t] its byte offset in the plane (no
     * divisions: they would cost more than a small plane) */
    for (size_t r = 0, t = 0; r < kh; r++)
        for (size_t q = 0; q < kq; q++, t++) {
            wv[t] = _mm512_set1_epi32(qk__ld32(w8 + 4 * t));
            off[t] = r * dil_h * wp + q * 4 * dil_w;
        }
    const __m512i vc = _mm512_set1_epi32(
        (int32_t)(corr + (fused && ep->bias ? (uint32_t)ep->bias[o] : 0u)));
    qk__dw8_out z;
    z.z = fused ? qk__outc__avx512(ep)
                : (qk__outc_avx512){_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_si512()};
    z.has_fb = fused && ep->float_bias != NULL;
    z.fb = z.has_fb ? _mm512_set1_ps(ep->float_bias[o]) : _mm512_setzero_ps();
    z.sc = fused ? _mm512_set1_ps(ep->scale[o]) : _mm512_setzero_ps();
    const size_t rs = stride_h * wp;
    size_t i = 0;
    if (kh == 3 && kq == 1 && dil_h == 1 && (stride_h == 1 || stride_h == 2)) {
        /* 3 x (up to 4) kernels, stride 1 or 2: four output rows read 6 or 9 input rows; each
         * input row is gathered once and feeds every output row that reads it (12 vpermb ->
         * 6 or 9) */
        for (; i + 4 <= oh; i += 4) {
            const uint8_t *xrow = x + i * rs;
            for (size_t j = 0; j < ow; j += 16) {
                const uint8_t *base = xrow + j * stride_w;
                __m512i a0, a1, a2, a3;
                if (stride_h == 1)
                    QK__DW8_K3_ROWS4(1)
                else
                    QK__DW8_K3_ROWS4(2)
                qk__dw8_store(a0, i, j, oh, ow, out, &z, y, fused);
                qk__dw8_store(a1, i + 1, j, oh, ow, out, &z, y, fused);
                qk__dw8_store(a2, i + 2, j, oh, ow, out, &z, y, fused);
                qk__dw8_store(a3, i + 3, j, oh, ow, out, &z, y, fused);
            }
        }
    }
    for (; i + 4 <= oh; i += 4) { /* four rows: four independent vpdpbusd chains */
        const uint8_t *xrow = x + i * rs;
        for (size_t j = 0; j < ow; j += 16) {
            const uint8_t *base = xrow + j * stride_w;
            __m512i a0 = vc, a1 = vc, a2 = vc, a3 = vc;
            for (size_t t = 0; t < nq; t++) {
                const uint8_t *bt = base + off[t];
                QK__DW8_STEP(a0, bt);
                QK__DW8_STEP(a1, bt + rs);
                QK__DW8_STEP(a2, bt + 2 * rs);
                QK__DW8_STEP(a3, bt + 3 * rs);
            }
            qk__dw8_store(a0, i, j, oh, ow, out, &z, y, fused);
            qk__dw8_store(a1, i + 1, j, oh, ow, out, &z, y, fused);
            qk__dw8_store(a2, i + 2, j, oh, ow, out, &z, y, fused);
            qk__dw8_store(a3, i + 3, j, oh, ow, out, &z, y, fused);
        }
    }
    if (fused && i + 2 <= oh) { /* two rows: two independent chains */
        const uint8_t *xrow = x + i * rs;
        for (size_t j = 0; j < ow; j += 16) {
            const uint8_t *base = xrow + j * stride_w;
            __m512i a0 = vc, a1 = vc;
            for (size_t t = 0; t < nq; t++) {
                const uint8_t *bt = base + off[t];
                QK__DW8_STEP(a0, bt);
                QK__DW8_STEP(a1, bt + rs);
            }
            qk__dw8_store(a0, i, j, oh, ow, out, &z, y, fused);
            qk__dw8_store(a1, i + 1, j, oh, ow, out, &z, y, fused);
        }
        i += 2;
    }
    for (; i < oh; i++) {
        const uint8_t *xrow = x + i * rs;
        for (size_t j = 0; j < ow; j += 16) {
            const uint8_t *base = xrow + j * stride_w;
            __m512i acc = vc;
            for (size_t t = 0; t < nq; t++) QK__DW8_STEP(acc, base + off[t]);
            qk__dw8_store(acc, i, j, oh, ow, out, &z, y, fused);
        }
    }
}

QK_TARGET_AVX512VBMI void qk_dw8_plane__avx512vbmi(const uint8_t *x, size_t wp, const int8_t *w8,
                                                   size_t kh, size_t kq, size_t stride_h,
                                                   size_t stride_w, size_t dil_h, size_t dil_w,
                                                   size_t oh, size_t ow, uint32_t corr,
                                                   int32_t *out) {
    if (kh * kq > QK__DW8_MAXQ || !qk__dw8_fits(kq, stride_w, dil_w)) {
        qk_dw8_plane__scalar(x, wp, w8, kh, kq, stride_h, stride_w, dil_h, dil_w, oh, ow, corr,
                             out);
        return;
    }
    qk__dw8_plane(x, wp, w8, kh, kq, stride_h, stride_w, dil_h, dil_w, oh, ow, corr, out, NULL, 0,
                  NULL, 0);
}

QK_TARGET_AVX512VBMI void qk_dw8_plane_fused__avx512vbmi(const uint8_t *x, size_t wp,
                                                         const int8_t *w8, size_t kh, size_t kq,
                                                         size_t stride_h, size_t stride_w,
                                                         size_t dil_h, size_t dil_w, size_t oh,
                                                         size_t ow, uint32_t corr,
                                                         const qk_epilogue *ep, size_t o,
                                                         uint8_t *y) {
    qk__dw8_plane(x, wp, w8, kh, kq, stride_h, stride_w, dil_h, dil_w, oh, ow, corr, NULL, ep, o,
                  y, 1);
}
#endif
