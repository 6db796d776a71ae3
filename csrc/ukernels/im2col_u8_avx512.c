/* im2col_u8_avx512.c -- the padded u8 plane on AVX-512 F/BW (twin: im2col_u8_scalar.c): rows in
 * order, whole 64-byte blocks (masked loads: masked-off lanes are not read). */
#include "ukernels/simd_avx512.h"

#if QK_X86
QK_TARGET_AVX512 void qk_pad_u8__avx512(const uint8_t *src, size_t rows, size_t n, uint8_t flip,
                                        uint8_t fill, size_t pad_top, size_t pad_left, size_t hp,
                                        size_t wp, uint8_t *d) {
    const __m512i vf = _mm512_set1_epi8((char)flip), vfill = _mm512_set1_epi8((char)fill);
    /* rows in order, whole 64-byte blocks: a block that runs past its row is overwritten by the
     * rows written after it; a block that would reach past the plane is a masked store */
    const size_t total = hp * wp;
    for (size_t h = 0; h < hp; h++) {
        if (h < pad_top || h >= pad_top + rows) {
            for (size_t c0 = 0; c0 < wp; c0 += 64) qk__store64(d, total, h * wp + c0, vfill);
            continue;
        }
        /* source bytes: padded column c0 + l reads src row byte c0 + l - pad_left */
        const uintptr_t sr = (uintptr_t)(src + (h - pad_top) * n);
        for (size_t c0 = 0; c0 < wp; c0 += 64) {
            const __mmask64 m = qk__pad_lanes(c0, pad_left, n, 64);
            /* masked-off lanes are not read (no fault): the address may lie before the row */
            const __m512i v = _mm512_maskz_loadu_epi8(m, (const void *)(sr + c0 - pad_left));
            const __m512i r = _mm512_mask_mov_epi8(vfill, m, _mm512_xor_si512(v, vf));
            qk__store64(d, total, h * wp + c0, r);
        }
    }
}
#endif
