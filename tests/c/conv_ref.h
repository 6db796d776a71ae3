/* conv_ref.h -- an int64 reference of one qk_conv2d sum (SPEC section 5), shared by the C tests
 * and the fuzz harness (fuzz/c/ops.c): it visits only the taps that land on the input, with the
 * coordinates in 128-bit arithmetic, so any geometry (padding, stride, dilation up to 2^63) is
 * exact and no padded image is built. x NCHW and w OIHW as u8/s8 bytes. */
#ifndef QK_CONV_REF_H
#define QK_CONV_REF_H

#include <stddef.h>
#include <stdint.h>

#include "qkernels.h"

/* o * stride + k * dil - pad as an input index, or -1 when it falls in the padding. */
static inline long long qk_ref_coord(size_t o, size_t stride, size_t k, size_t dil, size_t pad,
                                     size_t n) {
    const unsigned __int128 v = (unsigned __int128)o * stride + (unsigned __int128)k * dil;
    if (v < pad || v - pad >= n) return -1;
    return (long long)(v - pad);
}

static inline int32_t qk_ref_q8(const uint8_t *p, qk_dtype t, size_t i) {
    return t == QK_DT_U8 ? (int32_t)p[i] : (int32_t)(int8_t)p[i];
}

/* sum_{c, r, q} (x - xzp)(w - wzp[o]) of output (b, o, i, j); ocg = out_c / groups,
 * cpg = in_c / groups. */
static inline int64_t qk_ref_conv_acc(const qk_conv2d_shape *s, const uint8_t *x, qk_dtype xt,
                                      int32_t xzp, const uint8_t *w, qk_dtype wt,
                                      const int32_t *wzp, size_t ocg, size_t cpg, size_t kh,
                                      size_t kw, size_t b, size_t o, size_t i, size_t j) {
    int64_t acc = 0;
    for (size_t c = 0; c < cpg; c++)
        for (size_t r = 0; r < kh; r++) {
            const long long ih = qk_ref_coord(i, s->stride_h, r, s->dil_h, s->pad_top, s->in_h);
            if (ih < 0) continue;
            for (size_t q = 0; q < kw; q++) {
                const long long iw = qk_ref_coord(j, s->stride_w, q, s->dil_w, s->pad_left, s->in_w);
                if (iw < 0) continue;
                const size_t xc = b * s->in_c + o / ocg * cpg + c;
                acc += (int64_t)(qk_ref_q8(x, xt, (xc * s->in_h + (size_t)ih) * s->in_w + (size_t)iw) - xzp) *
                       (qk_ref_q8(w, wt, ((o * cpg + c) * kh + r) * kw + q) - wzp[o]);
            }
        }
    return acc;
}

#endif
