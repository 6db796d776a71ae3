/* ukernels.h -- the micro-kernels: the inner loops of qk_linear and qk_conv2d, and the table
 * that picks them for this process. Not installed, not public.
 *
 * Each family is written once per instruction set, in a file named after both
 * (gemm_s16_avx2.c), beside its portable scalar twin (gemm_s16_scalar.c); every function name
 * ends in its ISA (qk_gemm_s16_6x16__avx2) and the twins give the same bits (tests/c/test_gemm.c
 * and the QKERNELS_SIMD runs of the Python suite compare them). A micro-kernel knows nothing of
 * packed-weight objects, threads or argument checking: the operators (operators/) hand it plain
 * pointers and sizes. dispatch.c holds the one table (qk__uk()) that maps the level chosen by
 * core/cpu.c to the kernels of that level.
 *
 * Families (operand types: s16 = int16 (x - x_zp), u8 = raw bytes, the zero points applied
 * afterwards):
 *   gemm_s16   6 x 16 int16 tiles (vpmaddwd)                     scalar, avx2
 *   dw_s16     int16 depthwise plane                              scalar, avx2, avx512
 *   gemm_u8    12/16 x 16 (or x 8) u8 x s8 tiles (vpdpbusd)       scalar, avx512vnni
 *   conv_u8    the same tiles with the output stage fused         avx512vnni
 *   linear_u8  6 x 64 tiles of qk_linear with the output stage    avx512vnni
 *   dw_u8      8-bit depthwise plane (and with the output fused)  scalar, avx512vbmi
 *   im2col_s16 the int16 padded image rows and the tile panels    scalar, avx2, avx512
 *   conv1x1_s16 1x1 panels from NCHW, 6 x 16 tiles + fp32 output  scalar, avx2
 *   im2col_u8  the u8 padded images and the tile panels           scalar, avx2, avx512,
 *                                                                 avx512vnni, avx512vbmi
 *   epilogue   the output stage (requantization) of int32 sums    scalar, avx2, avx512
 *   bmm_u8     qk_bmm's 8-bit operand packing and tile correction  scalar, avx512vnni
 *   transpose_u8  a byte matrix transposed (NCHW <-> NHWC)         scalar, avx2
 */
#ifndef QKERNELS_UKERNELS_H
#define QKERNELS_UKERNELS_H

#include "core/core.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The fp32 clamp bounds act_min - zero_point and act_max - zero_point as floats, computed wide:
 * with QK_REQ_NONE those fields are not checked (nor used), and an int32 difference of
 * unchecked values could overflow. */
static inline float qk__ep_flo(const qk_epilogue *ep) {
    return (float)((int64_t)ep->act_min - ep->zero_point);
}
static inline float qk__ep_fhi(const qk_epilogue *ep) {
    return (float)((int64_t)ep->act_max - ep->zero_point);
}

/* The 4 bytes at p (any alignment) as an int32. */
static inline int32_t qk__ld32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* ---- gemm_s16: 6 x 16 int16 tiles ------------------------------------------------------------
 * The integer GEMM on int16 operands: every u8/s8 value minus its zero point lies in
 * [-255, 255], so one vpmaddwd (int16 x int16 -> pairs summed in int32) is exact, and the int32
 * accumulators are exact too as long as the worst-case bound checked before the run fits. Sums
 * are carried in uint32 (two's-complement wrap, defined in C) so that the scalar twin gives the
 * same bits as the SIMD kernel even in the explicit wrap mode.
 *   A ("broadcast" side): MR rows, row-major int16, K padded to an even K2 with zeros; row r
 *     starts at a + r * lda. Rows >= mr are never read (row mr-1 is reused).
 *   B ("vector" side): one panel of 16 columns, [K2/2][16][2] int16 (pairs of k interleaved).
 *   C: a 6 x 16 int32 tile (row-major, 16 a row), every element written. kp = K2 / 2. */
#define QK_GEMM_MR 6
#define QK_GEMM_NR 16
typedef void (*qk_gemm_ukernel)(size_t mr, size_t kp, const int16_t *a, size_t lda,
                                const int16_t *b, int32_t *c);
void qk_gemm_s16_6x16__scalar(size_t mr, size_t kp, const int16_t *a, size_t lda,
                              const int16_t *b, int32_t *c);
void qk_gemm_s16_6x16__avx2(size_t mr, size_t kp, const int16_t *a, size_t lda,
                            const int16_t *b, int32_t *c);

/* ---- dw_s16: int16 depthwise plane -----------------------------------------------------------
 * One output plane (oh x ow) of one channel. x: the padded int16 (x - x_zp) plane of the input
 * channel, row pitch wp, with at least 2 * 32 + 63 elements of readable slack after the last
 * one the plane needs (the SIMD kernels compute whole blocks and keep what is in the plane);
 * w: kh*kw int16 (w - w_zp) taps; out: oh*ow int32 raw sums. Strides other than 1 and 2, or more
 * than 64 taps: the SIMD kernels call the scalar twin. */
typedef void (*qk_dw_plane_kernel)(const int16_t *x, size_t wp, const int16_t *w, size_t kh,
                                   size_t kw, size_t stride_h, size_t stride_w, size_t dil_h,
                                   size_t dil_w, size_t oh, size_t ow, int32_t *out);
void qk_dw_plane__scalar(const int16_t *x, size_t wp, const int16_t *w, size_t kh, size_t kw,
                         size_t stride_h, size_t stride_w, size_t dil_h, size_t dil_w, size_t oh,
                         size_t ow, int32_t *out);
void qk_dw_plane__avx2(const int16_t *x, size_t wp, const int16_t *w, size_t kh, size_t kw,
                       size_t stride_h, size_t stride_w, size_t dil_h, size_t dil_w, size_t oh,
                       size_t ow, int32_t *out);
void qk_dw_plane__avx512(const int16_t *x, size_t wp, const int16_t *w, size_t kh, size_t kw,
                         size_t stride_h, size_t stride_w, size_t dil_h, size_t dil_w, size_t oh,
                         size_t ow, int32_t *out);
/* qk_dw_plane_fused: the same plane with the output stage applied (fp32 scheme to 8 bits:
 * qk__epilogue_fused) as qk_epilogue_run gives it for channel o: oh x ow bytes to y. */
typedef void (*qk_dw_plane_fused_fn)(const int16_t *x, size_t wp, const int16_t *w, size_t kh,
                                     size_t kw, size_t stride_h, size_t stride_w, size_t dil_h,
                                     size_t dil_w, size_t oh, size_t ow, const qk_epilogue *ep,
                                     size_t o, uint8_t *y);
void qk_dw_plane_fused__scalar(const int16_t *x, size_t wp, const int16_t *w, size_t kh,
                               size_t kw, size_t stride_h, size_t stride_w, size_t dil_h,
                               size_t dil_w, size_t oh, size_t ow, const qk_epilogue *ep, size_t o,
                               uint8_t *y);
void qk_dw_plane_fused__avx2(const int16_t *x, size_t wp, const int16_t *w, size_t kh, size_t kw,
                             size_t stride_h, size_t stride_w, size_t dil_h, size_t dil_w,
                             size_t oh, size_t ow, const qk_epilogue *ep, size_t o, uint8_t *y);
/* The SIMD kernels' tap tables: off[t] the offset of tap t in the padded plane (off[taps] =
 * off[taps - 1] for an odd last pair), wpair[t / 2] taps t and t + 1 as one int16 pair (an odd
 * last tap pairs with weight 0). Returns 0 (nothing set) when the SIMD kernels do not cover the
 * plane: a stride_w other than 1 and 2, or more than QK_DW_S16_MAXT taps. */
#define QK_DW_S16_MAXT 64
static inline int qk__dw_s16_taps(const int16_t *w, size_t kh, size_t kw, size_t stride_w,
                                  size_t dil_h, size_t dil_w, size_t wp,
                                  size_t off[QK_DW_S16_MAXT + 1],
                                  int32_t wpair[QK_DW_S16_MAXT / 2 + 1]) {
    const size_t taps = kh * kw;
    if (!(stride_w == 1 || stride_w == 2) || taps > QK_DW_S16_MAXT) return 0;
    for (size_t t = 0; t < taps; t++) off[t] = (t / kw) * dil_h * wp + (t % kw) * dil_w;
    off[taps] = off[taps - 1];
    for (size_t t = 0; t < taps; t += 2) {
        const uint32_t w0 = (uint16_t)w[t], w1 = t + 1 < taps ? (uint16_t)w[t + 1] : 0u;
        wpair[t / 2] = (int32_t)(w0 | (w1 << 16));
    }
    return 1;
}

/* ---- gemm_u8: u8 x s8 tiles (AVX512-VNNI) ----------------------------------------------------
 * Operands are raw 8-bit values: activations as u8 (int8 activations are shifted by +128, their
 * zero point too) and weights as s8 (uint8 weights shifted by -128). The zero points are applied
 * afterwards, exactly modulo 2^32 (sum w per channel is kept at pack time):
 *   sum (x - xz)(w - wz) = sum x w - xz sum w - wz sum x + K xz wz
 * vpdpbusd sums four u8 x s8 products into each int32 lane, wrapping modulo 2^32 without
 * saturation; the scalar twins do the same sums in uint32.
 *   a: a weight block [kq][mr][4] (mr = 12 or 16 rows interleaved by quads of k, rows past the
 *      data zero), b: an activation panel [kq][16][4]; c: the full mr x 16 int32 tile.
 * Half tiles (tiles of at most 8 pixels): the same operands, columns 0-7 computed on 256-bit
 * vectors, columns 8-15 of c set to 0. */
#define QK_VNNI_MR 12
#define QK_VNNI_MR_MAX 16
typedef void (*qk_gemm_s8u8_ukernel)(size_t kq, const int8_t *a, const uint8_t *b, int32_t *c);
void qk_gemm_s8u8_12x16__scalar(size_t kq, const int8_t *a, const uint8_t *b, int32_t *c);
void qk_gemm_s8u8_16x16__scalar(size_t kq, const int8_t *a, const uint8_t *b, int32_t *c);
void qk_gemm_s8u8_12x8__scalar(size_t kq, const int8_t *a, const uint8_t *b, int32_t *c);
void qk_gemm_s8u8_16x8__scalar(size_t kq, const int8_t *a, const uint8_t *b, int32_t *c);
void qk_gemm_s8u8_12x16__avx512vnni(size_t kq, const int8_t *a, const uint8_t *b, int32_t *c);
void qk_gemm_s8u8_16x16__avx512vnni(size_t kq, const int8_t *a, const uint8_t *b, int32_t *c);
void qk_gemm_s8u8_12x8__avx512vnni(size_t kq, const int8_t *a, const uint8_t *b, int32_t *c);
void qk_gemm_s8u8_16x8__avx512vnni(size_t kq, const int8_t *a, const uint8_t *b, int32_t *c);

/* ---- epilogue: the output stage of raw int32 sums --------------------------------------------
 * qk_epilogue_fn: the output stage of `cnt` raw sums of output channel o (src), stored
 * contiguously at y (elements of ep->out_type); the "channels" form takes channel o + i for
 * element i (a row of qk_linear). Returns QK_ERR_OVERFLOW on a double-round left shift overflow
 * (strict mode), else QK_OK. The SIMD forms do the fp32, int32 and fixed-point (double rounding,
 * its half-up form) schemes (the others go to the scalar form) with the same operations in the
 * same order: vpaddd wraps like the uint32 add, cvtdq2ps / cvtps2dq round to nearest even as the
 * scalar conversions and nearbyintf do in the default rounding mode, the clamp happens on
 * integral float bounds; the fixed-point lanes are the integer steps of core/fixedpoint.h. */
typedef qk_status (*qk_epilogue_fn)(const qk_epilogue *ep, size_t o, const int32_t *src,
                                    size_t cnt, void *y);
qk_status qk_epilogue_run__scalar(const qk_epilogue *ep, size_t o, const int32_t *src, size_t cnt,
                                  void *y);
qk_status qk_epilogue_channels__scalar(const qk_epilogue *ep, size_t o, const int32_t *src,
                                       size_t cnt, void *y);
qk_status qk_epilogue_run__avx2(const qk_epilogue *ep, size_t o, const int32_t *src, size_t cnt,
                                void *y);
qk_status qk_epilogue_channels__avx2(const qk_epilogue *ep, size_t o, const int32_t *src,
                                     size_t cnt, void *y);
qk_status qk_epilogue_run__avx512(const qk_epilogue *ep, size_t o, const int32_t *src, size_t cnt,
                                  void *y);
/* Elements [i, cnt) in scalar code (the tail of the SIMD forms); per_ch as the channels form. */
qk_status qk_epilogue_tail__scalar(const qk_epilogue *ep, size_t o, int per_ch,
                                   const int32_t *src, size_t i, size_t cnt, void *y);
/* 1 for the schemes the SIMD output stages do (fp32, int32 out; QK_REQ_FLOAT, qk_linear's
 * float32 out, only in the channels form and in linear_u8). */
static inline int qk__epilogue_vec(const qk_epilogue *ep) {
    return ep->scheme == QK_REQ_FP32 || ep->scheme == QK_REQ_NONE;
}
/* 1 for the fixed-point schemes the SIMD output stages do too (double rounding, its half-up
 * form: qk__fx16__avx512 / qk__fx8__avx2) in every form but the conv tiles. */
static inline int qk__epilogue_fx(const qk_epilogue *ep) {
    return ep->scheme == QK_REQ_DOUBLE || ep->scheme == QK_REQ_DOUBLE_HALF_UP;
}
/* 1 when the fused u8 kernels (conv_u8, dw_u8 fused) apply: fp32 scheme, 8-bit output. */
static inline int qk__epilogue_fused(const qk_epilogue *ep) {
    return ep->scheme == QK_REQ_FP32 && (ep->out_type == QK_DT_U8 || ep->out_type == QK_DT_S8);
}

/* An 8-bit conv tile to its output: v = raw + corr[o] - wzp8[o] * pixsum[i] (mod 2^32), then the
 * output stage. Rows = channels o0 + r (r < mr, 16 int32 a row in tile), columns = cnt pixels
 * (pixsum NULL when every wzp8 is 0); row r of y at y + r * ystride. The scalar form may
 * overwrite tile. */
typedef qk_status (*qk_tile_out_fn)(const qk_epilogue *ep, const int32_t *wzp8,
                                    const uint32_t *corr, const uint32_t *pixsum, size_t o0,
                                    size_t cnt, int32_t *tile, size_t mr, char *y, size_t ystride);
qk_status qk_conv_tile_out__scalar(const qk_epilogue *ep, const int32_t *wzp8,
                                   const uint32_t *corr, const uint32_t *pixsum, size_t o0,
                                   size_t cnt, int32_t *tile, size_t mr, char *y, size_t ystride);
qk_status qk_conv_tile_out__avx512(const qk_epilogue *ep, const int32_t *wzp8,
                                   const uint32_t *corr, const uint32_t *pixsum, size_t o0,
                                   size_t cnt, int32_t *tile, size_t mr, char *y, size_t ystride);

/* ---- conv_u8: u8 conv tiles with the output stage fused (AVX512-VNNI) ------------------------
 * "Fused" kernels requantize in registers and store the output bytes directly: the int32 sums
 * never go through memory. They apply exactly the operations of qk_conv_tile_out__avx512 (fp32
 * scheme, same order, same bits as the scalar output stage):
 *   v = raw + corr[o] - wzp8[o] * pixsum (mod 2^32); v += bias[o] (int, wrapping);
 *   f = (float)v (+ float_bias[o]) * scale[o]; clamped to [act_min - zp, act_max - zp];
 *   q = RNE(f) + zp, one byte (u8 or s8 output).
 * Only for qk__epilogue_fused epilogues; the twin is gemm_u8 + qk_conv_tile_out__scalar.
 * Fused tile: rows = mr8 (12 or 16) channels o0.. of a packed block a ([kq][mr8][4]), columns =
 * 16 pixels of panel b; writes rows r < mr (channel o0 + r) at y + r * ystride, lanes < cnt
 * (cnt 9..16), one byte each. pixsum: NULL when every wzp8 is 0. */
typedef void (*qk_conv_fused_kernel)(size_t kq, const int8_t *a, const uint8_t *b,
                                     const qk_epilogue *ep, const int32_t *wzp8,
                                     const uint32_t *corr, const uint32_t *pixsum, size_t o0,
                                     size_t mr, size_t cnt, char *y, size_t ystride);
void qk_conv_fused_12x16__avx512vnni(size_t kq, const int8_t *a, const uint8_t *b,
                                     const qk_epilogue *ep, const int32_t *wzp8,
                                     const uint32_t *corr, const uint32_t *pixsum, size_t o0,
                                     size_t mr, size_t cnt, char *y, size_t ystride);
void qk_conv_fused_16x16__avx512vnni(size_t kq, const int8_t *a, const uint8_t *b,
                                     const qk_epilogue *ep, const int32_t *wzp8,
                                     const uint32_t *corr, const uint32_t *pixsum, size_t o0,
                                     size_t mr, size_t cnt, char *y, size_t ystride);
/* The same for tiles of cnt <= 8 pixels (any mr8: the block's rows as vector lanes, pixels
 * broadcast; a = the block, mr8 its rows). */
typedef void (*qk_conv_fused_tail_kernel)(size_t kq, const int8_t *a, size_t mr8,
                                          const uint8_t *b, const qk_epilogue *ep,
                                          const int32_t *wzp8, const uint32_t *corr,
                                          const uint32_t *pixsum, size_t o0, size_t mr, size_t cnt,
                                          char *y, size_t ystride);
void qk_conv_fused_tail__avx512vnni(size_t kq, const int8_t *a, size_t mr8, const uint8_t *b,
                                    const qk_epilogue *ep, const int32_t *wzp8,
                                    const uint32_t *corr, const uint32_t *pixsum, size_t o0,
                                    size_t mr, size_t cnt, char *y, size_t ystride);
/* The fused tile of 16 pixels at stride 1 read straight from a channel-quad image (see
 * qk_im2col_u8x4; no panel), every wzp8 0: quad (tap t, cq) lane i is the dword at
 * b0 + 4 * (tapoff[t] + i) + cq * plane4, or b1 + ... for the lanes of m1 (nseg 2); a holds
 * the taps' quads in the same order ([taps][nq][mr8][4]). Writes lanes < cnt (1..16) of rows
 * r < mr; all 16 lanes are read (up to 15 pixels past the last one written). */
typedef void (*qk_conv_direct_kernel)(size_t taps, size_t nq, const size_t *tapoff,
                                      size_t plane4, const int8_t *a, const uint8_t *b0,
                                      const uint8_t *b1, uint16_t m1, const qk_epilogue *ep,
                                      const uint32_t *corr, size_t o0, size_t mr, size_t cnt,
                                      char *y, size_t ystride);
#define QK__DECLARE_CONV_DIRECT(NAME)                                                       \
    void NAME(size_t taps, size_t nq, const size_t *tapoff, size_t plane4, const int8_t *a, \
              const uint8_t *b0, const uint8_t *b1, uint16_t m1, const qk_epilogue *ep,     \
              const uint32_t *corr, size_t o0, size_t mr, size_t cnt, char *y, size_t ystride);
QK__DECLARE_CONV_DIRECT(qk_conv_direct_12x16_1__avx512vnni)
QK__DECLARE_CONV_DIRECT(qk_conv_direct_16x16_1__avx512vnni)
QK__DECLARE_CONV_DIRECT(qk_conv_direct_12x16_2__avx512vnni)
QK__DECLARE_CONV_DIRECT(qk_conv_direct_16x16_2__avx512vnni)
#undef QK__DECLARE_CONV_DIRECT

/* ---- linear_u8: the 6 x 64 tiles of qk_linear on the 8-bit path (AVX512-VNNI) ----------------
 * Rows r0 .. r1 - 1 of the activations a (u8, rows lda bytes apart, at least 4 kq readable each;
 * int8 activations with flip, turned into x + 128 by a vpxord of each broadcast), in blocks of 6,
 * against nz (1..4) weight panels [kq][16][4] side by side from panel p0 (channels o0 = 16 p0
 * ..); each 6 x 64 tile goes through the stack into y:
 *   v = raw + cb[o] - wz[o] * rowsum[r] (mod 2^32; the rowsum term only with any_wz),
 * then with vec the fp32 (or int32) output stage of qk_conv_tile_out__avx512 lane for lane, or
 * with flt the float32 output fmaf((float)v, sc[o], fb[o]), or with fx the fixed-point stage
 * (qk__fx16__avx512; cb holds the bias too in these three), else the channels output stage (cb
 * without the bias). The twin of the
 * whole is qk_linear's int16 path (tests compare the two with QKERNELS_SIMD). */
typedef struct qk_linear_u8_args {
    const uint8_t *a;       /* rows of u8, lda bytes apart */
    size_t lda, kq;
    const int8_t *b;        /* the weight panels (w->data8) */
    size_t bstride;         /* bytes between panels: k4 * 16 */
    const qk_epilogue *ep;
    int fp32, any_wz, flip, vec, flt; /* flt: QK_REQ_FLOAT (vec is then set too) */
    int fx, half_up;        /* fx: QK_REQ_DOUBLE or _DOUBLE_HALF_UP (vec is then set too) */
    const int32_t *mul, *shf; /* fx: panels * 16: multiplier[o], shift[o] (0 past n) */
    const uint32_t *cb;     /* panels * 16: corr[o] (+ bias[o] with vec), mod 2^32; 0 past n */
    const int32_t *wz;      /* panels * 16: wzp8[o], 0 past n */
    const float *fb, *sc;   /* panels * 16: float_bias[o] (0 when absent), scale[o] (fp32) */
    const uint32_t *rowsum; /* m (with any_wz) */
    size_t n;               /* output channels (row length of y) */
    char *y;
    size_t osz;             /* bytes of an output element */
} qk_linear_u8_args;
/* Returns QK_ERR_OVERFLOW when the channels output stage reported it, else QK_OK. */
typedef qk_status (*qk_linear_u8_fn)(const qk_linear_u8_args *c, size_t r0, size_t r1, size_t p0,
                                     size_t nz);
qk_status qk_linear_u8_6x64__avx512vnni(const qk_linear_u8_args *c, size_t r0, size_t r1,
                                        size_t p0, size_t nz);
/* The per-channel vectors of a call, 16 channels at a time (masked past n: zeros there), np =
 * the panels' channels: cb = k * xz8 * wzp8 - xz8 * colsum [+ bias when vec] (mod 2^32), wz,
 * fb (0 without a float bias), sc (0 without a scale). */
typedef void (*qk_linear_u8_setup_fn)(size_t n, size_t k, const int32_t *wzp8,
                                      const int32_t *colsum, int32_t xz8, const qk_epilogue *ep,
                                      int vec, size_t np, uint32_t *cb, int32_t *wz, float *fb,
                                      float *sc);
void qk_linear_u8_setup__avx512vnni(size_t n, size_t k, const int32_t *wzp8,
                                    const int32_t *colsum, int32_t xz8, const qk_epilogue *ep,
                                    int vec, size_t np, uint32_t *cb, int32_t *wz, float *fb,
                                    float *sc);
/* The sum of the n bytes s[i] ^ flip. */
typedef uint32_t (*qk_sum_u8_fn)(const uint8_t *s, size_t n, uint8_t flip);
uint32_t qk_sum_u8__avx512vnni(const uint8_t *s, size_t n, uint8_t flip);

/* ---- dw_u8: 8-bit depthwise plane ------------------------------------------------------------
 * One output plane of one channel from a padded u8 plane (int8 activations + 128, padding =
 * the u8 zero point), row pitch wp, with at least 64 bytes of readable slack after the last
 * element a row block can reach. w8: kh rows of kq quads (kw padded to 4 kq with zero weights)
 * of s8 taps. out[i * ow + j] = sum_taps x8 * w8 + corr (mod 2^32). The SIMD kernel needs
 * kh * kq <= 64 and qk__dw8_fits (else it calls the scalar twin). The fused form applies the
 * output stage of channel o (qk__epilogue_fused epilogues) and writes the oh * ow bytes of the
 * plane at y; it requires both conditions. */
typedef void (*qk_dw8_plane_kernel)(const uint8_t *x, size_t wp, const int8_t *w8, size_t kh,
                                    size_t kq, size_t stride_h, size_t stride_w, size_t dil_h,
                                    size_t dil_w, size_t oh, size_t ow, uint32_t corr,
                                    int32_t *out);
void qk_dw8_plane__scalar(const uint8_t *x, size_t wp, const int8_t *w8, size_t kh, size_t kq,
                          size_t stride_h, size_t stride_w, size_t dil_h, size_t dil_w, size_t oh,
                          size_t ow, uint32_t corr, int32_t *out);
void qk_dw8_plane__avx512vbmi(const uint8_t *x, size_t wp, const int8_t *w8, size_t kh, size_t kq,
                              size_t stride_h, size_t stride_w, size_t dil_h, size_t dil_w,
                              size_t oh, size_t ow, uint32_t corr, int32_t *out);
typedef void (*qk_dw8_fused_kernel)(const uint8_t *x, size_t wp, const int8_t *w8, size_t kh,
                                    size_t kq, size_t stride_h, size_t stride_w, size_t dil_h,
                                    size_t dil_w, size_t oh, size_t ow, uint32_t corr,
                                    const qk_epilogue *ep, size_t o, uint8_t *y);
void qk_dw8_plane_fused__avx512vbmi(const uint8_t *x, size_t wp, const int8_t *w8, size_t kh,
                                    size_t kq, size_t stride_h, size_t stride_w, size_t dil_h,
                                    size_t dil_w, size_t oh, size_t ow, uint32_t corr,
                                    const qk_epilogue *ep, size_t o, uint8_t *y);
static inline int qk__dw8_fits(size_t kq, size_t stride_w, size_t dil_w) {
    return 15 * stride_w + (4 * kq - 1) * dil_w < 64;
}

/* ---- im2col_s16: the int16 image rows and tile panels ----------------------------------------
 * qk_widen_s16: one row, d[i] = x[i] - zp for the n u8 or s8 elements at src (exactly n written).
 * The _over form (AVX2) writes whole blocks of 16: up to 15 elements past the row, reading up to
 * 15 bytes past it (the caller checks both stay inside its buffers).
 * qk_im2col_s16: the [k2/2][16][2] panel of one tile of 16 output pixels of one row: k row kk
 * (pair-interleaved) lane i = src[koff[kk] + base + i * stride_w], lanes >= cnt zero (scalar) or
 * don't-care (SIMD, which reads up to 31 elements past a row's last pixel: the image's slack);
 * the k pad row zero. The SIMD form handles stride_w 1 and 2 (else it calls the scalar twin). */
typedef void (*qk_widen_s16_fn)(const void *src, qk_dtype xt, int32_t zp, size_t n, int16_t *d);
void qk_widen_s16__scalar(const void *src, qk_dtype xt, int32_t zp, size_t n, int16_t *d);
void qk_widen_s16__avx2(const void *src, qk_dtype xt, int32_t zp, size_t n, int16_t *d);
void qk_widen_s16_over__avx2(const void *src, qk_dtype xt, int32_t zp, size_t n, int16_t *d);
void qk_widen_s16__avx512(const void *src, qk_dtype xt, int32_t zp, size_t n, int16_t *d);
typedef void (*qk_im2col_s16_fn)(const int16_t *src, const size_t *koff, size_t k,
                                 size_t stride_w, size_t base, size_t cnt, int16_t *panel);
void qk_im2col_s16__scalar(const int16_t *src, const size_t *koff, size_t k, size_t stride_w,
                           size_t base, size_t cnt, int16_t *panel);
void qk_im2col_s16__avx2(const int16_t *src, const size_t *koff, size_t k, size_t stride_w,
                         size_t base, size_t cnt, int16_t *panel);

/* ---- conv1x1_s16: the unpadded stride-1 1x1 conv on the int16 path ------------------------
 * qk_panel_s16_1x1: the [k2/2][16][2] panel (as qk_im2col_s16 builds it) of cnt <= 16
 * consecutive pixels read straight from the NCHW input: channel kk's lane i = x[kk * plane + i]
 * - zp (u8 or s8 x), lanes >= cnt and the k pad row zero; reads only those cnt bytes a channel.
 * qk_gemm_s16_fused_6x16: qk_gemm_s16_6x16's mr x 16 tile with the output stage applied in
 * registers (fp32 scheme, 8-bit output: qk__epilogue_fused) as qk_epilogue_run gives it for
 * channel o0 + r; row r's first cnt bytes to y + r * ystride (nothing else written). */
typedef void (*qk_panel_s16_1x1_fn)(const void *x, qk_dtype xt, int32_t zp, size_t plane,
                                    size_t k, size_t cnt, int16_t *panel);
void qk_panel_s16_1x1__scalar(const void *x, qk_dtype xt, int32_t zp, size_t plane, size_t k,
                              size_t cnt, int16_t *panel);
void qk_panel_s16_1x1__avx2(const void *x, qk_dtype xt, int32_t zp, size_t plane, size_t k,
                            size_t cnt, int16_t *panel);
typedef void (*qk_gemm_s16_fused_fn)(size_t mr, size_t kp, const int16_t *a, size_t lda,
                                     const int16_t *b, const qk_epilogue *ep, size_t o0,
                                     size_t cnt, uint8_t *y, size_t ystride);
void qk_gemm_s16_fused_6x16__scalar(size_t mr, size_t kp, const int16_t *a, size_t lda,
                                    const int16_t *b, const qk_epilogue *ep, size_t o0,
                                    size_t cnt, uint8_t *y, size_t ystride);
void qk_gemm_s16_fused_6x16__avx2(size_t mr, size_t kp, const int16_t *a, size_t lda,
                                  const int16_t *b, const qk_epilogue *ep, size_t o0, size_t cnt,
                                  uint8_t *y, size_t ystride);

/* ---- im2col_u8: the u8 padded images and tile panels -----------------------------------------
 * qk_pad_u8: rows x n bytes (source rows n apart, each byte ^ flip) into a padded plane of hp
 * rows of pitch wp bytes at d, the interior at (pad_top, pad_left), every other byte of the
 * plane set to fill; writes exactly the plane's hp * wp bytes.
 * qk_pad_u8x4 (channel-quad image, for weights with cq8): the padded u8 image of 4 consecutive
 * channels as one plane of hp x wp pixels of 4 bytes (byte c of pixel p = channel 4 cq + c), so
 * that the 4 k values of a quad (4 channels at one tap) of 16 pixels are 64 contiguous bytes;
 * one such plane from the 4 source planes (rows x n bytes each, src, src + plane_in, ...),
 * interior at (pad_top, pad_left), the rest fill; writes exactly hp * wp * 4 bytes. */
typedef void (*qk_pad_u8_fn)(const uint8_t *src, size_t rows, size_t n, uint8_t flip,
                             uint8_t fill, size_t pad_top, size_t pad_left, size_t hp, size_t wp,
                             uint8_t *d);
void qk_pad_u8__scalar(const uint8_t *src, size_t rows, size_t n, uint8_t flip, uint8_t fill,
                       size_t pad_top, size_t pad_left, size_t hp, size_t wp, uint8_t *d);
void qk_pad_u8__avx512(const uint8_t *src, size_t rows, size_t n, uint8_t flip, uint8_t fill,
                       size_t pad_top, size_t pad_left, size_t hp, size_t wp, uint8_t *d);
typedef void (*qk_pad_u8x4_fn)(const uint8_t *src, size_t plane_in, size_t rows, size_t n,
                               uint8_t flip, uint8_t fill, size_t pad_top, size_t pad_left,
                               size_t hp, size_t wp, uint8_t *d);
void qk_pad_u8x4__scalar(const uint8_t *src, size_t plane_in, size_t rows, size_t n, uint8_t flip,
                         uint8_t fill, size_t pad_top, size_t pad_left, size_t hp, size_t wp,
                         uint8_t *d);
void qk_pad_u8x4__avx512vnni(const uint8_t *src, size_t plane_in, size_t rows, size_t n,
                             uint8_t flip, uint8_t fill, size_t pad_top, size_t pad_left,
                             size_t hp, size_t wp, uint8_t *d);

/* The same padded plane by 64-byte blocks, from tables built once per call: block b takes
 * cnt[b] consecutive input bytes from start[b], lane l of the block = byte idx[64 b + l] of them
 * when bit l of mask[b] is set, else fill. qk_pad_u8_blocks_init returns 0 on allocation
 * failure. The copy writes the last block's 64 bytes whole (up to 63 bytes past the plane; the
 * VBMI form needs d 64-byte aligned). */
typedef struct qk_pad_u8_blocks {
    size_t nblk;
    uint64_t *mask;
    uint32_t *start, *cnt;
    uint8_t *idx;
} qk_pad_u8_blocks;
int qk_pad_u8_blocks_init(qk_pad_u8_blocks *t, size_t rows, size_t n, size_t pad_top,
                          size_t pad_left, size_t hp, size_t wp);
void qk_pad_u8_blocks_free(qk_pad_u8_blocks *t);
typedef void (*qk_pad_u8_blocks_fn)(const qk_pad_u8_blocks *t, const uint8_t *src, uint8_t flip,
                                    uint8_t fill, uint8_t *d);
void qk_pad_u8_blocks__scalar(const qk_pad_u8_blocks *t, const uint8_t *src, uint8_t flip,
                              uint8_t fill, uint8_t *d);
void qk_pad_u8_blocks__avx512vbmi(const qk_pad_u8_blocks *t, const uint8_t *src, uint8_t flip,
                                  uint8_t fill, uint8_t *d);

/* The lanes of one tile: up to QK_SEGS runs of consecutive lanes on one output row each. Lane
 * i of run r (i >= start[r], start[0] = 0) reads the image at base[r] + i * stride_w. */
enum { QK_SEGS = 4 };
typedef struct qk_segs {
    size_t n, start[QK_SEGS], base[QK_SEGS];
} qk_segs;

/* qk_im2col_s16_segs: the int16 panel [k2/2][16][2] of a tile of cnt consecutive NCHW pixels
 * across output rows (the int16 path's flat tiles), given as its runs g: k row kk lane i (run r:
 * g->start[r] <= i < g->start[r + 1]) = src[koff[kk] + g->base[r] + i * stride_w]; lanes >= cnt
 * zero (scalar) or don't-care (SIMD, which reads for every run as qk_im2col_s16 reads for one
 * tile: 16 lanes from its base); the k pad row zero. The SIMD form handles stride_w 1 and 2 (else
 * it calls the scalar twin). */
typedef void (*qk_im2col_s16_segs_fn)(const int16_t *src, const size_t *koff, size_t k,
                                      size_t stride_w, const qk_segs *g, size_t cnt,
                                      int16_t *panel);
void qk_im2col_s16_segs__scalar(const int16_t *src, const size_t *koff, size_t k, size_t stride_w,
                                const qk_segs *g, size_t cnt, int16_t *panel);
void qk_im2col_s16_segs__avx2(const int16_t *src, const size_t *koff, size_t k, size_t stride_w,
                              const qk_segs *g, size_t cnt, int16_t *panel);

/* qk_im2col_u8: the [k4/4][16][4] u8 panel of one tile (of plain padded planes): k row kk lane i
 * = src[koff[kk] + lane offset]. The scalar form takes the lane offsets (off[i], lanes >= cnt and
 * k rows past k zero); the SIMD forms take the runs (stride_w 1 or 2, at most 3 runs; lanes past
 * the tile don't-care) and return 0 for a tile they do not cover (the caller then uses the
 * scalar form).
 * qk_im2col_u8x4: the [taps * nq][16][4] panel of one tile from a channel-quad image (src: the
 * group's first quad plane, quad planes plane4 bytes apart): quad (tap, cq) lane i = pixel
 * base[r] + i * stride_w + tapoff[tap] of plane cq, for the run r holding lane i. Reads up to
 * 64 * stride_w bytes past a run's first pixel; stride_w 1 or 2; the panel 64-byte aligned. */
void qk_im2col_u8__scalar(const uint8_t *src, const size_t *koff, size_t k, size_t k4,
                          const size_t *off, size_t cnt, uint8_t *panel);
typedef int (*qk_im2col_u8_fn)(const uint8_t *src, const size_t *koff, size_t k, size_t k4,
                               const qk_segs *g, size_t stride_w, uint8_t *panel);
int qk_im2col_u8__avx2(const uint8_t *src, const size_t *koff, size_t k, size_t k4,
                       const qk_segs *g, size_t stride_w, uint8_t *panel);
int qk_im2col_u8__avx512vbmi(const uint8_t *src, const size_t *koff, size_t k, size_t k4,
                             const qk_segs *g, size_t stride_w, uint8_t *panel);
typedef void (*qk_im2col_u8x4_fn)(const uint8_t *src, size_t plane4, const size_t *tapoff,
                                  size_t taps, size_t nq, const qk_segs *g, size_t stride_w,
                                  uint8_t *panel);
void qk_im2col_u8x4__scalar(const uint8_t *src, size_t plane4, const size_t *tapoff, size_t taps,
                            size_t nq, const qk_segs *g, size_t stride_w, uint8_t *panel);
void qk_im2col_u8x4__avx512vnni(const uint8_t *src, size_t plane4, const size_t *tapoff,
                                size_t taps, size_t nq, const qk_segs *g, size_t stride_w,
                                uint8_t *panel);

/* ---- bmm_u8: the 8-bit operands of qk_bmm (operators/bmm.c) -------------------------------
 * Both operands of the batched matmul are activations, packed at every call for the gemm_u8
 * tiles: A (the broadcast side) as s8 blocks, B as u8 panels; the zero points are applied
 * afterwards through the byte sums (see operators/bmm.c).
 * qk_bmm_pack_b8: one batch item of B (n x k rows, or k x n with b_kn) into ceil(n/16) panels
 *   [kq][16][4] (kq = ceil(k/4), panel p at dst + p * kq * 64) of the bytes ^ flip, and cs[j] =
 *   sum_k of those bytes for the ceil(n/16) * 16 columns (0 past n). dst must be zeroed by the
 *   caller (the k pad and the columns past n are not written).
 * qk_bmm_pack_a8: nrows (<= 48) rows of A (k bytes each, contiguous) into blocks [kq][12][4] of
 *   the bytes ^ flip as s8 (abuf, abytes bytes, zeroed first), and rowsum[r] = sum_k of those
 *   s8 values.
 * qk_bmm_tile_fix: rows r < mr of a 12 x 16 gemm_u8 tile corrected to the exact sums:
 *   out[r * ostride + q] = tile[r][q] + colterm[q] + rowterm[r], modulo 2^32. */
typedef void (*qk_bmm_pack_b8_fn)(const uint8_t *src, size_t n, size_t k, int b_kn, uint8_t flip,
                                  uint8_t *dst, uint32_t *cs);
void qk_bmm_pack_b8__scalar(const uint8_t *src, size_t n, size_t k, int b_kn, uint8_t flip,
                            uint8_t *dst, uint32_t *cs);
void qk_bmm_pack_b8__avx512vnni(const uint8_t *src, size_t n, size_t k, int b_kn, uint8_t flip,
                                uint8_t *dst, uint32_t *cs);
typedef void (*qk_bmm_pack_a8_fn)(const uint8_t *src, size_t nrows, size_t k, uint8_t flip,
                                  int8_t *abuf, size_t abytes, int32_t *rowsum);
void qk_bmm_pack_a8__scalar(const uint8_t *src, size_t nrows, size_t k, uint8_t flip,
                            int8_t *abuf, size_t abytes, int32_t *rowsum);
void qk_bmm_pack_a8__avx512vnni(const uint8_t *src, size_t nrows, size_t k, uint8_t flip,
                                int8_t *abuf, size_t abytes, int32_t *rowsum);
typedef void (*qk_bmm_tile_fix_fn)(const int32_t *tile, size_t mr, const uint32_t *colterm,
                                   const uint32_t *rowterm, int32_t *out, size_t ostride);
void qk_bmm_tile_fix__scalar(const int32_t *tile, size_t mr, const uint32_t *colterm,
                             const uint32_t *rowterm, int32_t *out, size_t ostride);
void qk_bmm_tile_fix__avx512vnni(const int32_t *tile, size_t mr, const uint32_t *colterm,
                                 const uint32_t *rowterm, int32_t *out, size_t ostride);

/* ---- transpose_u8: a byte matrix transposed ----------------------------------------------------
 * dst (cols x rows, contiguous) = the transpose of src (rows x cols, row pitch sp): the NCHW <->
 * NHWC copies of the 1x1-as-GEMM conv. */
typedef void (*qk_transpose_u8_fn)(const uint8_t *src, size_t rows, size_t cols, size_t sp,
                                   uint8_t *dst);
void qk_transpose_u8__scalar(const uint8_t *src, size_t rows, size_t cols, size_t sp,
                             uint8_t *dst);
void qk_transpose_u8__avx2(const uint8_t *src, size_t rows, size_t cols, size_t sp, uint8_t *dst);

/* ---- the table ------------------------------------------------------------------------------
 * The micro-kernels of one level (dispatch.c: one constant table a level; qk__uk() returns the
 * one of the level core/cpu.c chose). The 8-bit path exists from QK_LEVEL_AVX512VNNI up (the
 * weights are packed for it then); its entries below that level are the scalar twins, and the
 * kernels that have no twin of their own (conv fused and direct tiles, linear_u8) are NULL
 * there. */
typedef struct qk__ukernels {
    /* int16 path */
    qk_gemm_ukernel gemm_s16;
    qk_dw_plane_kernel dw_s16;
    qk_dw_plane_fused_fn dw_s16_fused; /* NULL: dw_s16, then the output stage */
    qk_widen_s16_fn widen_s16;
    qk_widen_s16_fn widen_s16_over; /* NULL: none */
    qk_im2col_s16_fn im2col_s16;
    qk_panel_s16_1x1_fn panel_s16_1x1;   /* the 1x1 conv's panels and fused tiles */
    qk_gemm_s16_fused_fn gemm_s16_fused;
    qk_im2col_s16_segs_fn im2col_s16_segs;
    /* output stage */
    qk_epilogue_fn epilogue_run, epilogue_channels;
    /* 8-bit path */
    qk_gemm_s8u8_ukernel gemm_u8[2][2]; /* [16-row block][tile of at most 8 pixels] */
    qk_tile_out_fn conv_tile_out;
    qk_pad_u8_fn pad_u8;
    qk_pad_u8x4_fn pad_u8x4;
    qk_im2col_u8_fn im2col_u8;          /* NULL: qk_im2col_u8__scalar only */
    qk_im2col_u8x4_fn im2col_u8x4;
    qk_bmm_pack_a8_fn bmm_pack_a8;
    qk_bmm_pack_b8_fn bmm_pack_b8;
    qk_bmm_tile_fix_fn bmm_tile_fix;
    qk_transpose_u8_fn transpose_u8;
    /* AVX512-VNNI only (NULL below) */
    qk_conv_fused_kernel conv_fused[2]; /* [16-row block] */
    qk_conv_direct_kernel conv_direct[2][2]; /* [16-row block][2 runs] */
    qk_conv_fused_tail_kernel conv_fused_tail;
    int pack_u8;                        /* 1: weights are packed for the 8-bit kernels */
    qk_linear_u8_fn linear_u8;
    qk_linear_u8_setup_fn linear_u8_setup;
    qk_sum_u8_fn sum_u8;
    /* 8-bit depthwise: AVX512-VBMI only (NULL below) */
    qk_dw8_plane_kernel dw8;
    qk_dw8_fused_kernel dw8_fused;
    qk_pad_u8_blocks_fn pad_u8_blocks;
} qk__ukernels;

/* The micro-kernels of this process's level. */
const qk__ukernels *qk__uk(void);

#endif /* QKERNELS_UKERNELS_H */
