/* im2col_u8_scalar.c -- the u8 operands of the 8-bit conv in portable C (the twins of
 * im2col_u8_avx2.c, _avx512.c, _avx512vnni.c and _avx512vbmi.c): padded planes and
 * channel-quad images of the input (int8 activations + 128: a flip of bit 7; padding = the u8
 * zero point), and the panel of one tile; plus the per-call tables of the block copy. */
#include "ukernels/ukernels.h"

#include <stdlib.h>
#include <string.h>

void qk_pad_u8__scalar(const uint8_t *src, size_t rows, size_t n, uint8_t flip, uint8_t fill,
                       size_t pad_top, size_t pad_left, size_t hp, size_t wp, uint8_t *d) {
    if (wp != n) {
        /* side padding: one fill of the whole plane (the rows are then written over it) costs
         * less than two small memset calls a row */
        memset(d, fill, hp * wp);
    } else {
        memset(d, fill, pad_top * wp);
        memset(d + (pad_top + rows) * wp, fill, (hp - pad_top - rows) * wp);
    }
    const uint64_t flip8 = flip * UINT64_C(0x0101010101010101);
    for (size_t h = 0; h < rows; h++) {
        uint8_t *dr = d + (pad_top + h) * wp + pad_left;
        const uint8_t *sr = src + h * n;
        if (!flip) {
            memcpy(dr, sr, n);
            continue;
        }
        size_t i = 0;
        for (; i + 8 <= n; i += 8) { /* int8 activations: + 128 is a flip of bit 7 */
            uint64_t v;
            memcpy(&v, sr + i, 8);
            v ^= flip8;
            memcpy(dr + i, &v, 8);
        }
        for (; i < n; i++) dr[i] = (uint8_t)(sr[i] ^ flip);
    }
}

void qk_pad_u8x4__scalar(const uint8_t *src, size_t plane_in, size_t rows, size_t n, uint8_t flip,
                         uint8_t fill, size_t pad_top, size_t pad_left, size_t hp, size_t wp,
                         uint8_t *d) {
    /* element (channel q, padded row h, column x) at ((h * wp + x) * 4 + q) */
    memset(d, fill, 4 * hp * wp);
    for (size_t q = 0; q < 4; q++)
        for (size_t h = 0; h < rows; h++)
            for (size_t x = 0; x < n; x++)
                d[((h + pad_top) * wp + x + pad_left) * 4 + q] =
                    (uint8_t)(src[q * plane_in + h * n + x] ^ flip);
}

int qk_pad_u8_blocks_init(qk_pad_u8_blocks *t, size_t rows, size_t n, size_t pad_top,
                          size_t pad_left, size_t hp, size_t wp) {
    memset(t, 0, sizeof *t);
    const size_t total = hp * wp;
    t->nblk = (total + 63) / 64;
    t->mask = (uint64_t *)calloc(t->nblk, sizeof(uint64_t));
    t->start = (uint32_t *)calloc(t->nblk, sizeof(uint32_t));
    t->cnt = (uint32_t *)calloc(t->nblk, sizeof(uint32_t));
    t->idx = (uint8_t *)calloc(t->nblk * 64, 1);
    if (t->mask == NULL || t->start == NULL || t->cnt == NULL || t->idx == NULL) {
        qk_pad_u8_blocks_free(t);
        return 0;
    }
    size_t src = 0; /* input bytes placed so far */
    for (size_t b = 0; b < t->nblk; b++) t->start[b] = (uint32_t)-1;
    /* each row's pixels p0 .. p0 + n - 1 a block at a time (the input bytes of a block are
     * consecutive, across rows too: idx counts them from the block's first) */
    for (size_t h = 0; h < rows; h++) {
        size_t p = (pad_top + h) * wp + pad_left;
        const size_t end = p + n;
        while (p < end) {
            const size_t b = p / 64, e = (b + 1) * 64 < end ? (b + 1) * 64 : end, len = e - p;
            if (t->start[b] == (uint32_t)-1) t->start[b] = (uint32_t)src;
            const uint64_t bits = len == 64 ? ~(uint64_t)0 : ((uint64_t)1 << len) - 1;
            t->mask[b] |= bits << (p % 64);
            const size_t first = src - t->start[b];
            for (size_t l = 0; l < len; l++) t->idx[p + l] = (uint8_t)(first + l);
            t->cnt[b] += (uint32_t)len;
            src += len;
            p = e;
        }
    }
    for (size_t b = 0; b < t->nblk; b++)
        if (t->start[b] == (uint32_t)-1) t->start[b] = 0;
    return 1;
}

void qk_pad_u8_blocks_free(qk_pad_u8_blocks *t) {
    free(t->mask);
    free(t->start);
    free(t->cnt);
    free(t->idx);
    memset(t, 0, sizeof *t);
}

void qk_pad_u8_blocks__scalar(const qk_pad_u8_blocks *t, const uint8_t *src, uint8_t flip,
                              uint8_t fill, uint8_t *d) {
    for (size_t b = 0; b < t->nblk; b++)
        for (size_t l = 0; l < 64; l++)
            d[64 * b + l] = (t->mask[b] >> l) & 1
                                ? (uint8_t)(src[t->start[b] + t->idx[64 * b + l]] ^ flip)
                                : fill;
}

void qk_im2col_u8__scalar(const uint8_t *src, const size_t *koff, size_t k, size_t k4,
                          const size_t *off, size_t cnt, uint8_t *panel) {
    for (size_t kk = 0; kk < k4; kk++) {
        uint8_t *d = panel + (kk / 4) * 64 + (kk & 3);
        size_t i = 0;
        if (kk < k) {
            const uint8_t *p = src + koff[kk];
            for (; i < cnt; i++) d[4 * i] = p[off[i]];
        }
        for (; i < QK_GEMM_NR; i++) d[4 * i] = 0;
    }
}

void qk_im2col_u8x4__scalar(const uint8_t *src, size_t plane4, const size_t *tapoff, size_t taps,
                            size_t nq, const qk_segs *g, size_t stride_w, uint8_t *panel) {
    for (size_t t = 0; t < taps; t++)
        for (size_t cq = 0; cq < nq; cq++)
            for (size_t i = 0, r = 0; i < QK_GEMM_NR; i++) {
                while (r + 1 < g->n && g->start[r + 1] <= i) r++;
                const size_t pix = g->base[r] + i * stride_w + tapoff[t];
                memcpy(panel + (t * nq + cq) * 64 + 4 * i, src + cq * plane4 + 4 * pix, 4);
            }
}
