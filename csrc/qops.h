/* qops.h -- quantized elementwise and pooling ops of PyTorch's quantized CPU backend, on 8-bit
 * NCHW tensors (uint8 or int8, per-tensor quantization), bit-exact with the NumPy reference
 * implementations in qkernels/torch/convert.py:
 *
 *   qk_qadd           quantized::add(_relu): d = fmaf(s, q, -fl(s*zp)) per input, c = fl(da + db),
 *                     (relu: max(c, 0)), y = clamp(RNE(fl(c * fl(1/s_out))) + zp_out)
 *   qk_qleaky_relu    the same dequantize, dy = dx > 0 ? dx : fl(dx * slope), the same quantize
 *   qk_qclamp         integer clamp to [lo, hi]
 *   qk_qmax_pool2d    integer maximum over each window (padding taps ignored)
 *   qk_qadaptive_avg_pool2d  RNE(sum / count) over PyTorch's adaptive windows
 *
 * Scales: the input scales finite, > 0 and at most 2^118 (every dequantized value and the sum
 * of two stay finite), the output scale finite, > 0 and with fl(1/out_scale) finite (> 2^-128);
 * QK_ERR_SCALE otherwise. Then no intermediate is NaN.
 * The elementwise loops have an AVX2 path and a scalar twin that give the same bits. */
#ifndef QKERNELS_QOPS_H
#define QKERNELS_QOPS_H

#include "qkernels.h"

#include <stddef.h>
#include <stdint.h>

qk_status qk_qadd(const void *a, const void *b, qk_dtype t, size_t n, float a_scale,
                  int32_t a_zp, float b_scale, int32_t b_zp, float out_scale, int32_t out_zp,
                  int relu, void *y);
qk_status qk_qleaky_relu(const void *x, qk_dtype t, size_t n, float x_scale, int32_t x_zp,
                         float slope, float out_scale, int32_t out_zp, void *y);
qk_status qk_qclamp(const void *x, qk_dtype t, size_t n, int32_t lo, int32_t hi, void *y);
/* x: (planes, h, w), y: (planes, oh, ow); output position (i, j) covers input rows
 * i*sh - ph + a*dh (a < kh) and columns j*sw - pw + b*dw (b < kw), in-bounds taps only; a window
 * without any in-bounds tap gives the type's minimum. */
qk_status qk_qmax_pool2d(const void *x, qk_dtype t, size_t planes, size_t h, size_t w, size_t kh,
                         size_t kw, size_t sh, size_t sw, size_t ph, size_t pw, size_t dh,
                         size_t dw, size_t oh, size_t ow, void *y);
qk_status qk_qadaptive_avg_pool2d(const void *x, qk_dtype t, size_t planes, size_t h, size_t w,
                                  size_t oh, size_t ow, void *y);

#endif
