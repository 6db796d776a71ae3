/* bmm_u8_avx512vnni.c -- the 8-bit operand packing and tile correction of qk_bmm on AVX-512
 * (twin: bmm_u8_scalar.c), used with the VNNI tiles (gemm_u8) on the 8-bit path; the driver is
 * operators/bmm.c, the layouts are in ukernels.h (bmm_u8). Byte sums with vpsadbw
 * (qk_sum_u8__avx512vnni); B stored k x n is transposed 4 rows x 16 columns at a time. */
#include "ukernels/ukernels.h"

#if QK_X86
#include <immintrin.h>

QK_TARGET_AVX512VNNI void qk_bmm_pack_b8__avx512vnni(const uint8_t *src, size_t n, size_t k,
                                                     int b_kn, uint8_t flip, uint8_t *dst,
                                                     uint32_t *cs) {
    const size_t pstride = ((k + 3) / 4) * 4 * QK_GEMM_NR;
    memset(cs, 0, ((n + QK_GEMM_NR - 1) / QK_GEMM_NR) * QK_GEMM_NR * sizeof(uint32_t));
    if (!b_kn) { /* rows of B are contiguous in k: quads are 4-byte copies */
        const uint32_t flip4 = flip * UINT32_C(0x01010101);
        for (size_t j = 0; j < n; j++) {
            uint8_t *panel = dst + (j / QK_GEMM_NR) * pstride + 4 * (j % QK_GEMM_NR);
            const uint8_t *row = src + j * k;
            cs[j] = qk_sum_u8__avx512vnni(row, k, flip);
            size_t i = 0;
            for (; i + 4 <= k; i += 4) {
                const uint32_t w = (uint32_t)qk__ld32(row + i) ^ flip4;
                memcpy(panel + (i >> 2) * 4 * QK_GEMM_NR, &w, 4);
            }
            for (; i < k; i++) panel[(i >> 2) * 4 * QK_GEMM_NR + (i & 3)] = (uint8_t)(row[i] ^ flip);
        }
        return;
    }
    /* B stored k x n: 4 rows of 16 columns transposed into one 64-byte quad row of a panel */
    const __m128i vf = _mm_set1_epi8((char)flip);
    for (size_t i0 = 0; i0 < k; i0 += 4) {
        const size_t kr = k - i0 < 4 ? k - i0 : 4;
        for (size_t j0 = 0; j0 < n; j0 += QK_GEMM_NR) {
            const size_t cnt = n - j0 < QK_GEMM_NR ? n - j0 : QK_GEMM_NR;
            const __mmask16 m = (__mmask16)(cnt == 16 ? 0xFFFFu : (1u << cnt) - 1u);
            __m128i r[4];
            for (size_t q = 0; q < 4; q++)
                r[q] = q < kr ? _mm_maskz_mov_epi8(m, _mm_xor_si128(_mm_maskz_loadu_epi8(m, src + (i0 + q) * n + j0), vf))
                              : _mm_setzero_si128();
            __m512i acc = _mm512_loadu_si512((const void *)(cs + j0));
            for (size_t q = 0; q < kr; q++) acc = _mm512_add_epi32(acc, _mm512_cvtepu8_epi32(r[q]));
            _mm512_storeu_si512((void *)(cs + j0), acc);
            const __m128i t0 = _mm_unpacklo_epi8(r[0], r[1]), t1 = _mm_unpackhi_epi8(r[0], r[1]);
            const __m128i t2 = _mm_unpacklo_epi8(r[2], r[3]), t3 = _mm_unpackhi_epi8(r[2], r[3]);
            uint8_t *d = dst + (j0 / QK_GEMM_NR) * pstride + (i0 >> 2) * 4 * QK_GEMM_NR;
            _mm_storeu_si128((__m128i *)d, _mm_unpacklo_epi16(t0, t2));
            _mm_storeu_si128((__m128i *)(d + 16), _mm_unpackhi_epi16(t0, t2));
            _mm_storeu_si128((__m128i *)(d + 32), _mm_unpacklo_epi16(t1, t3));
            _mm_storeu_si128((__m128i *)(d + 48), _mm_unpackhi_epi16(t1, t3));
        }
    }
}

QK_TARGET_AVX512VNNI void qk_bmm_pack_a8__avx512vnni(const uint8_t *src, size_t nrows, size_t k,
                                                     uint8_t flip, int8_t *abuf, size_t abytes,
                                                     int32_t *rowsum) {
    const size_t kq = (k + 3) / 4;
    const uint32_t flip4 = flip * UINT32_C(0x01010101);
    memset(abuf, 0, abytes);
    for (size_t r = 0; r < nrows; r++) {
        int8_t *blk = abuf + (r / QK_VNNI_MR) * kq * 4 * QK_VNNI_MR + 4 * (r % QK_VNNI_MR);
        const uint8_t *row = src + r * k;
        /* sum of A' = sum of the bytes ^ flip ^ 0x80 as u8, minus 128 k */
        rowsum[r] = (int32_t)(qk_sum_u8__avx512vnni(row, k, (uint8_t)(flip ^ 0x80)) -
                              (uint32_t)(128 * k));
        size_t i = 0;
        for (; i + 4 <= k; i += 4) {
            const uint32_t w = (uint32_t)qk__ld32(row + i) ^ flip4;
            memcpy(blk + (i >> 2) * 4 * QK_VNNI_MR, &w, 4);
        }
        for (; i < k; i++) blk[(i >> 2) * 4 * QK_VNNI_MR + (i & 3)] = (int8_t)(uint8_t)(row[i] ^ flip);
    }
}

QK_TARGET_AVX512VNNI void qk_bmm_tile_fix__avx512vnni(const int32_t *tile, size_t mr,
                                                      const uint32_t *colterm,
                                                      const uint32_t *rowterm, int32_t *out,
                                                      size_t ostride) {
    const __m512i ct = _mm512_loadu_si512((const void *)colterm);
    for (size_t r = 0; r < mr; r++) {
        const __m512i v = _mm512_add_epi32(_mm512_loadu_si512((const void *)(tile + r * QK_GEMM_NR)),
                                           _mm512_add_epi32(ct, _mm512_set1_epi32((int32_t)rowterm[r])));
        _mm512_storeu_si512((void *)(out + r * ostride), v);
    }
}
#endif
