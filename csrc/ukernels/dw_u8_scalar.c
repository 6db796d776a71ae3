/* dw_u8_scalar.c -- the 8-bit depthwise plane in portable C (the twin of dw_u8_avx512vbmi.c):
 * every tap (zero weights skipped) of every output, summed in uint32 from corr (wrapping as
 * vpdpbusd). */
#include "ukernels/ukernels.h"

void qk_dw8_plane__scalar(const uint8_t *x, size_t wp, const int8_t *w8, size_t kh, size_t kq,
                          size_t stride_h, size_t stride_w, size_t dil_h, size_t dil_w, size_t oh,
                          size_t ow, uint32_t corr, int32_t *out) {
    for (size_t i = 0; i < oh; i++)
        for (size_t j = 0; j < ow; j++) {
            uint32_t acc = corr;
            for (size_t r = 0; r < kh; r++) {
                const uint8_t *xr = x + (i * stride_h + r * dil_h) * wp + j * stride_w;
                for (size_t t = 0; t < 4 * kq; t++) {
                    const int32_t wv = w8[r * 4 * kq + t];
                    if (wv != 0) acc += (uint32_t)((int32_t)xr[t * dil_w] * wv);
                }
            }
            out[i * ow + j] = (int32_t)acc;
        }
}
