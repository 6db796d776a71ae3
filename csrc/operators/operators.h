/* operators.h -- the operators of the C library (qk_pack_*, qk_linear, qk_conv2d): the packed
 * weights and what the operator files share. Not installed, not public.
 *
 * An operator checks its arguments, chooses its path, packs or copies its operands into the
 * layouts the micro-kernels read (ukernels/), splits the work over the thread pool
 * (core/pool.h) and runs the kernels of this process's table (qk__uk()). No intrinsics here: the
 * SIMD code is all in ukernels/. */
#ifndef QKERNELS_OPERATORS_H
#define QKERNELS_OPERATORS_H

#include "core/core.h"
#include "core/pool.h"
#include "ukernels/ukernels.h"

#include <stddef.h>
#include <stdint.h>

/* The packed weights (opaque in the public header). */
enum { QK__PACK_LINEAR = 1, QK__PACK_CONV = 2 };
struct qk_packed_weights {
    int kind;          /* QK__PACK_LINEAR or QK__PACK_CONV */
    qk_dtype w_type;   /* QK_DT_U8 or QK_DT_S8 */
    size_t n;          /* output channels (all groups) */
    size_t k;          /* reduction length per output channel */
    size_t k2;         /* k rounded up to even */
    size_t groups, kh, kw; /* conv only (linear: 1, 1, 1) */
    int16_t *data;     /* (vnni == 0) linear: ceil(n/16) panels [k2/2][16][2]; conv: n rows of k2;
                          depthwise conv (1 input channel a group) always uses this layout */
    int64_t *abs_sum;  /* n: sum_k |w - w_zp|, for the accumulator bound */
    int32_t *w_zp;     /* n */
    /* 8-bit layout (vnni == 1): weights w8 = w (s8) or w - 128 (u8), zero points wzp8 likewise */
    int vnni;
    size_t k4;         /* k rounded up to a multiple of 4 */
    int8_t *data8;     /* linear: ceil(n/16) panels [k4/4][16][4]; conv: per group ceil(ocg/mr8)
                          blocks [k4/4][mr8][4] (rows past ocg zero) */
    size_t nblk;       /* conv, 8-bit: blocks of mr8 output channels per group */
    size_t mr8;        /* conv, 8-bit: rows of a block, 12 or 16 (whichever pads ocg less) */
    int32_t *colsum;   /* n: sum_k w8[o,k] */
    int32_t *wzp8;     /* n */
    int any_wzp8;      /* some wzp8 != 0 (the activation-sum term is needed) */
    /* conv, 8-bit, channels a group a multiple of 4 and more than one tap: k in (tap, channel)
     * order, k = (r * kw + q) * cpg + c (each quad = 4 channels at one tap; see conv2d.c) */
    int cq8;
    int32_t *rowsum8;  /* cq8: n x kh, sum of w8 over the taps of kernel row r (all columns and
                          channels): the term a padded row adds, times the zero point */
    /* depthwise (1 input channel a group) packed while the 8-bit path is on, with every wzp8 = 0:
     * n x kh x dwq quads of s8 taps (w8, kw padded with zeros to 4 dwq), their sums in colsum */
    int8_t *dw8;
    size_t dwq;
    /* conv 1x1, one group: the same weights packed for qk_linear (out_c x in_c), for the
     * 1x1-as-GEMM path of qk_conv2d (conv2d.c) */
    qk_packed_weights *lin;
};

size_t qk__dtype_size(qk_dtype t);

/* checks.c: the epilogue's parameters for n output channels, and the accumulator bound
 * max |x - x_zp| * abs_sum[o] + |bias[o]| <= INT32_MAX for every o (unless ep->wrap). */
qk_status qk__epilogue_check(const qk_epilogue *ep, size_t n);
qk_status qk__bound_check(const qk_packed_weights *w, qk_dtype x_type, int32_t x_zp,
                          const qk_epilogue *ep);
/* Both, for one call of qk_linear / qk_conv2d on w. */
qk_status qk__call_check(const qk_packed_weights *w, qk_dtype x_type, int32_t x_zp,
                         const qk_epilogue *ep);
/* The same for qk_linear, which also takes QK_REQ_FLOAT (float32 out); the other operators
 * reject it (qk__epilogue_check). */
qk_status qk__linear_call_check(const qk_packed_weights *w, qk_dtype x_type, int32_t x_zp,
                                const qk_epilogue *ep);

/* pack.c: per channel, modulo 2^32: k * xz8 * wzp8[o] - xz8 * colsum[o] (malloc'd, NULL on
 * failure). The exact sum is then S + corr[o] - wzp8[o] * sum_k x8 (see ukernels.h, gemm_u8). */
uint32_t *qk__zp_correction(const qk_packed_weights *w, int32_t xz8);

/* linear_vnni.c: qk_linear on weights packed in the 8-bit layout (w->vnni), after its checks
 * (m > 0); xz8 = the activation zero point as u8 (+128 for int8 activations). */
qk_status qk__linear_vnni(const qk_packed_weights *w, const void *x, qk_dtype xt, size_t m,
                          int32_t xz8, const qk_epilogue *ep, void *y, int threads);

/* conv2d_1x1.c: qk_conv2d's unpadded stride-1 1x1 path on the int16 kernels with the fp32
 * output stage fused (8-bit output); _fits says when it applies (qk__conv_path), the run takes
 * qk_conv2d's checked arguments (ys: elements from one output image to the next). */
int qk__conv_1x1_fits(const qk_conv2d_shape *s, const qk_packed_weights *w, const qk_epilogue *ep);
qk_status qk__conv2d_1x1(const qk_conv2d_shape *s, const qk_packed_weights *w, const void *x,
                         qk_dtype x_type, int32_t x_zero_point, const qk_epilogue *ep, void *y,
                         size_t ys, int threads);

/* linear.c / linear_rows.c: how many column blocks each of the mchunks row chunks of an int16
 * GEMM over `panels` 16-column panels is split into, so that t > 1 threads get at least 4 jobs
 * each (1 with one thread; never more than the panels). */
static inline size_t qk__lin_nsplit(size_t mchunks, size_t panels, size_t t) {
    if (t <= 1 || mchunks >= 4 * t) return 1;
    const size_t n = (4 * t + mchunks - 1) / mchunks;
    return n > panels ? panels : n;
}

#endif /* QKERNELS_OPERATORS_H */
