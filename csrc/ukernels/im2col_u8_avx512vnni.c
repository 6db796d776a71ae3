/* im2col_u8_avx512vnni.c -- the channel-quad image and its tile panels on AVX-512 F/BW/VL (the
 * 8-bit path's level; twins: im2col_u8_scalar.c). The image: rows in order, 16 pixels (64 bytes)
 * a store, the four channels' bytes interleaved by unpacks; a store past a row's end is
 * overwritten by the next row, one past the plane is masked. A panel: per tap and channel quad,
 * the 16 pixel dwords of the tile's first run, the lanes of the other runs merged by masked
 * moves (stride 2: the even dwords of two loads). */
#include "ukernels/simd_avx512.h"

#if QK_X86
QK_TARGET_AVX512VNNI void qk_pad_u8x4__avx512vnni(const uint8_t *src, size_t plane_in, size_t rows,
                                                  size_t n, uint8_t flip, uint8_t fill,
                                                  size_t pad_top, size_t pad_left, size_t hp,
                                                  size_t wp, uint8_t *d) {
    const __m128i vf = _mm_set1_epi8((char)flip), vfill = _mm_set1_epi8((char)fill);
    const __m512i zfill = _mm512_set1_epi8((char)fill);
    const size_t total = hp * wp * 4;
    /* rows in order, 16 pixels (64 bytes) a store: a store past a row's end is overwritten by
     * the next row; one past the plane is masked */
    for (size_t h = 0; h < hp; h++) {
        if (h < pad_top || h >= pad_top + rows) {
            for (size_t x0 = 0; x0 < wp; x0 += 16) qk__store64(d, total, (h * wp + x0) * 4, zfill);
            continue;
        }
        const uintptr_t sr = (uintptr_t)(src + (h - pad_top) * n);
        for (size_t x0 = 0; x0 < wp; x0 += 16) {
            const __mmask16 m = (__mmask16)qk__pad_lanes(x0, pad_left, n, 16);
            const uintptr_t a = sr + x0 - pad_left; /* masked-off lanes are not read */
            __m128i v[4];
            for (size_t c = 0; c < 4; c++)
                v[c] = _mm_mask_mov_epi8(
                    vfill, m,
                    _mm_xor_si128(_mm_maskz_loadu_epi8(m, (const void *)(a + c * plane_in)), vf));
            const __m128i p01 = _mm_unpacklo_epi8(v[0], v[1]), q01 = _mm_unpackhi_epi8(v[0], v[1]);
            const __m128i p23 = _mm_unpacklo_epi8(v[2], v[3]), q23 = _mm_unpackhi_epi8(v[2], v[3]);
            __m512i z = _mm512_castsi128_si512(_mm_unpacklo_epi16(p01, p23));
            z = _mm512_inserti32x4(z, _mm_unpackhi_epi16(p01, p23), 1);
            z = _mm512_inserti32x4(z, _mm_unpacklo_epi16(q01, q23), 2);
            z = _mm512_inserti32x4(z, _mm_unpackhi_epi16(q01, q23), 3);
            qk__store64(d, total, (h * wp + x0) * 4, z);
        }
    }
}

/* 16 pixels (dwords) of a run: at p + 4 * (i * sw) for lane i. */
QK_TARGET_AVX512VNNI static QK_ALWAYS_INLINE __m512i
qk__cq_row(const uint8_t *p, size_t sw, __m512i even) {
    if (sw == 1) return _mm512_loadu_si512((const void *)p);
    return _mm512_permutex2var_epi32(_mm512_loadu_si512((const void *)p), even,
                                     _mm512_loadu_si512((const void *)(p + 64)));
}

QK_TARGET_AVX512VNNI static QK_ALWAYS_INLINE void
qk__panel_cq8_body(const uint8_t *src, size_t plane4, const size_t *tapoff, size_t taps,
                   size_t nq, size_t nseg, const size_t *start, const size_t *base, size_t sw,
                   uint8_t *panel) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    __mmask16 ms[4] = {0, 0, 0, 0};
    for (size_t r = 1; r < nseg; r++) ms[r] = (__mmask16)(0xFFFFu << start[r]);
    for (size_t t = 0; t < taps; t++) {
        const uint8_t *p0 = src + (tapoff[t] + base[0]) * 4;
        for (size_t cq = 0; cq < nq; cq++) {
            __m512i v = qk__cq_row(p0 + cq * plane4, sw, even);
            for (size_t r = 1; r < nseg; r++)
                v = _mm512_mask_mov_epi32(
                    v, ms[r], qk__cq_row(src + (tapoff[t] + base[r]) * 4 + cq * plane4, sw, even));
            _mm512_store_si512((void *)(panel + (t * nq + cq) * 64), v);
        }
    }
}

QK_TARGET_AVX512VNNI void qk_im2col_u8x4__avx512vnni(const uint8_t *src, size_t plane4,
                                                     const size_t *tapoff, size_t taps, size_t nq,
                                                     const qk_segs *g, size_t stride_w,
                                                     uint8_t *panel) {
    if (stride_w == 1)
        qk__panel_cq8_body(src, plane4, tapoff, taps, nq, g->n, g->start, g->base, 1, panel);
    else
        qk__panel_cq8_body(src, plane4, tapoff, taps, nq, g->n, g->start, g->base, 2, panel);
}
#endif
