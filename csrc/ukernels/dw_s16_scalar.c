/* dw_s16_scalar.c -- the int16 depthwise plane in portable C (the twin of dw_s16_avx2.c and
 * dw_s16_avx512.c): every tap of every output, summed in uint32 (wrapping as vpaddd). */
#include "ukernels/ukernels.h"

void qk_dw_plane__scalar(const int16_t *x, size_t wp, const int16_t *w, size_t kh, size_t kw,
                         size_t stride_h, size_t stride_w, size_t dil_h, size_t dil_w, size_t oh,
                         size_t ow, int32_t *out) {
    for (size_t i = 0; i < oh; i++)
        for (size_t j = 0; j < ow; j++) {
            uint32_t acc = 0;
            for (size_t r = 0; r < kh; r++) {
                const int16_t *xr = x + (i * stride_h + r * dil_h) * wp + j * stride_w;
                for (size_t s = 0; s < kw; s++)
                    acc += (uint32_t)((int32_t)xr[s * dil_w] * w[r * kw + s]);
            }
            out[i * ow + j] = (int32_t)acc;
        }
}

/* The twin of the fused SIMD forms: blocks of 16 outputs of a row (the sums of the plane kernel
 * above on that block), each through the scalar output stage (fp32 scheme to 8 bits). */
void qk_dw_plane_fused__scalar(const int16_t *x, size_t wp, const int16_t *w, size_t kh,
                               size_t kw, size_t stride_h, size_t stride_w, size_t dil_h,
                               size_t dil_w, size_t oh, size_t ow, const qk_epilogue *ep, size_t o,
                               uint8_t *y) {
    int32_t acc[16];
    for (size_t i = 0; i < oh; i++)
        for (size_t j = 0; j < ow; j += 16) {
            const size_t cnt = ow - j < 16 ? ow - j : 16;
            qk_dw_plane__scalar(x + i * stride_h * wp + j * stride_w, wp, w, kh, kw, stride_h,
                                stride_w, dil_h, dil_w, 1, cnt, acc);
            (void)qk_epilogue_run__scalar(ep, o, acc, cnt, y + i * ow + j);
        }
}
