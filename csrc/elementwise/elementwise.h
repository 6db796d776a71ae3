/* elementwise.h -- what the operators use of the elementwise kernels (operators/ may call
 * elementwise/, never the reverse): the quantized add's parameters checked once and its loop
 * (qops.c), for the residual add that qk_conv2d_add runs on the tiles its output stage has just
 * written. Not installed, not public. */
#ifndef QKERNELS_ELEMENTWISE_H
#define QKERNELS_ELEMENTWISE_H

#include "core/core.h"

/* Vectorized<quint8>::quantize (pt2e) of the ops' outputs: RNE(fl(v * inv)) + zp, clamped to
 * [qmin, qmax] of the 8-bit type t; lo / hi = qmin - zp, qmax - zp. */
typedef struct {
    int s8;
    float inv;
    double lo, hi;
    int32_t zp;
} qk__qout;

/* qk_qadd's parameters, checked: a and b's scales and nba / nbb = -fl(scale * zp), the output
 * stage, relu. */
typedef struct {
    float sa, nba, sb, nbb;
    qk__qout o;
    int relu;
} qk__qadd_p;

/* qk_qadd's checks (t, scales, zero points; the same codes) and its parameters into *p. */
qk_status qk__qadd_prepare(qk__qadd_p *p, qk_dtype t, float a_scale, int32_t a_zp, float b_scale,
                           int32_t b_zp, float out_scale, int32_t out_zp, int relu);
/* y[i] = qk_qadd of a[i], b[i] for i < n (its SIMD loops and its scalar tail: the one formula),
 * on rows rows of n elements stride apart in a, b and y alike; y may be a (in place) or b. */
void qk__qadd_rows(const qk__qadd_p *p, const uint8_t *a, const uint8_t *b, size_t rows,
                   size_t n, size_t stride, uint8_t *y);

/* rows.c: qk_row_rescale(_requantize)'s checks (the same codes, qkernels.h), and one row's
 * segment of its pass (n columns; wsum, bias, om, os at the segment's first column or NULL as
 * there; m = mt[j_r], k = 31 - (st[j_r] + e_r); yt QK_DT_S32 when om is NULL): returns 1 when
 * some acc - z wsum leaves int32. qk_linear_rows runs it on the rows its GEMM has just written. */
qk_status qk__row_rescale_check(size_t rows, size_t cols, const int32_t *z, const int32_t *wsum,
                                const int32_t *j, const int32_t *e, const int32_t *mt,
                                const int32_t *st, const int32_t *om, const int32_t *os,
                                int32_t ozp, qk_dtype yt);
int qk__row_rescale_seg(const int32_t *acc, size_t n, int32_t z, const int32_t *wsum, int32_t m,
                        int k, const int32_t *bias, const int32_t *om, const int32_t *os,
                        int32_t ozp, int yt, void *y);

#endif /* QKERNELS_ELEMENTWISE_H */
