/* bmm_u8_scalar.c -- the 8-bit operand packing and tile correction of qk_bmm in portable C (the
 * twins of bmm_u8_avx512vnni.c): the same bytes, the same sums. The driver is operators/bmm.c;
 * the layouts are in ukernels.h (bmm_u8). */
#include "ukernels/ukernels.h"

/* sum of the n bytes p[i] ^ x */
static uint32_t qk__bytesum(const uint8_t *p, size_t n, uint8_t x) {
    uint32_t s = 0;
    for (size_t i = 0; i < n; i++) s += (uint8_t)(p[i] ^ x);
    return s;
}

void qk_bmm_pack_b8__scalar(const uint8_t *src, size_t n, size_t k, int b_kn, uint8_t flip,
                            uint8_t *dst, uint32_t *cs) {
    const size_t pstride = ((k + 3) / 4) * 4 * QK_GEMM_NR;
    memset(cs, 0, ((n + QK_GEMM_NR - 1) / QK_GEMM_NR) * QK_GEMM_NR * sizeof(uint32_t));
    for (size_t j = 0; j < n; j++) {
        uint8_t *panel = dst + (j / QK_GEMM_NR) * pstride + 4 * (j % QK_GEMM_NR);
        for (size_t i = 0; i < k; i++) {
            const uint8_t v = (uint8_t)(src[b_kn ? i * n + j : j * k + i] ^ flip);
            panel[(i >> 2) * 4 * QK_GEMM_NR + (i & 3)] = v;
            if (b_kn) cs[j] += v;
        }
        if (!b_kn) cs[j] = qk__bytesum(src + j * k, k, flip);
    }
}

void qk_bmm_pack_a8__scalar(const uint8_t *src, size_t nrows, size_t k, uint8_t flip,
                            int8_t *abuf, size_t abytes, int32_t *rowsum) {
    const size_t kq = (k + 3) / 4;
    memset(abuf, 0, abytes);
    for (size_t r = 0; r < nrows; r++) {
        int8_t *blk = abuf + (r / QK_VNNI_MR) * kq * 4 * QK_VNNI_MR + 4 * (r % QK_VNNI_MR);
        const uint8_t *row = src + r * k;
        /* sum of A' = sum of the bytes ^ flip ^ 0x80 as u8, minus 128 k */
        rowsum[r] = (int32_t)(qk__bytesum(row, k, (uint8_t)(flip ^ 0x80)) - (uint32_t)(128 * k));
        for (size_t i = 0; i < k; i++)
            blk[(i >> 2) * 4 * QK_VNNI_MR + (i & 3)] = (int8_t)(uint8_t)(row[i] ^ flip);
    }
}

void qk_bmm_tile_fix__scalar(const int32_t *tile, size_t mr, const uint32_t *colterm,
                             const uint32_t *rowterm, int32_t *out, size_t ostride) {
    for (size_t r = 0; r < mr; r++)
        for (size_t q = 0; q < QK_GEMM_NR; q++)
            out[r * ostride + q] =
                (int32_t)((uint32_t)tile[r * QK_GEMM_NR + q] + colterm[q] + rowterm[r]);
}
