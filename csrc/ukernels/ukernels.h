/* conv_internal.h -- conv-only kernels with the output stage fused (conv_fused.c); not public.
 *
 * "Fused" kernels requantize in registers and store the output bytes directly: the int32 sums
 * never go through memory. They apply exactly the operations of the AVX-512 tile output
 * (vnni.c qk__out16, fp32 scheme, same order, same bits as the scalar epilogue):
 *   v = raw + corr[o] - wzp8[o] * pixsum (mod 2^32); v += bias[o] (int, wrapping);
 *   f = (float)v (+ float_bias[o]) * scale[o]; clamped to [act_min - zp, act_max - zp];
 *   q = RNE(f) + zp, one byte (u8 or s8 output).
 * Only for the fp32 scheme with an 8-bit output (qk__conv_fused_ok); the callers keep the
 * unfused path for every other epilogue. */
#ifndef QKERNELS_CONV_INTERNAL_H
#define QKERNELS_CONV_INTERNAL_H

#include "operators/operators.h"

/* 1 when the fused kernels apply to this epilogue (fp32 scheme, u8/s8 output) and the CPU path
 * has VNNI. */
int qk__conv_fused_ok(const qk_epilogue *ep);

/* GEMM tile with fused output: rows = mr8 (12 or 16) channels o0.. of a packed block a
 * ([kq][mr8][4]), columns = 16 pixels of panel b; writes rows r < mr (channel o0 + r) at
 * y + r * ystride, lanes < cnt (cnt 9..16), one byte each. pixsum: NULL when every wzp8 is 0. */
typedef void (*qk__conv_fused_kernel)(size_t kq, const int8_t *a, const uint8_t *b,
                                      const qk_epilogue *ep, const int32_t *wzp8,
                                      const uint32_t *corr, const uint32_t *pixsum, size_t o0,
                                      size_t mr, size_t cnt, char *y, size_t ystride);
/* The kernel for blocks of mr8 rows, or NULL (no VNNI). */
qk__conv_fused_kernel qk__conv_fused_kernel_for(size_t mr8);
/* The same tile of 16 pixels at stride 1 read straight from a channel-quad image (see
 * qk__panel_cq8; no panel), every wzp8 0: quad (tap t, cq) lane i is the dword at
 * b0 + 4 * (tapoff[t] + i) + cq * plane4, or b1 + ... for the lanes of m1 (nseg 2); a holds
 * the taps' quads in the same order ([taps][nq][mr8][4]). Writes lanes < cnt (1..16) of rows
 * r < mr; all 16 lanes are read (up to 15 pixels past the last one written). */
typedef void (*qk__conv_direct_kernel)(size_t taps, size_t nq, const size_t *tapoff,
                                       size_t plane4, const int8_t *a, const uint8_t *b0,
                                       const uint8_t *b1, uint16_t m1, const qk_epilogue *ep,
                                       const uint32_t *corr, size_t o0, size_t mr, size_t cnt,
                                       char *y, size_t ystride);
/* The kernel for blocks of mr8 rows and tiles of nseg (1 or 2) runs, or NULL. */
qk__conv_direct_kernel qk__conv_direct_kernel_for(size_t mr8, size_t nseg);
#if QK_X86
/* The same for tiles of cnt <= 8 pixels (any mr8): channels as vector lanes, pixels broadcast.
 * Only where qk__conv_fused_kernel_for gives a kernel. */
void qk__conv_fused_tail(size_t kq, const int8_t *a, size_t mr8, const uint8_t *b,
                         const qk_epilogue *ep, const int32_t *wzp8, const uint32_t *corr,
                         const uint32_t *pixsum, size_t o0, size_t mr, size_t cnt, char *y,
                         size_t ystride);
#endif

/* 8-bit depthwise plane with fused output (VBMI): as qk_dw8_plane__avx512vbmi (same operands,
 * same fit conditions: qk__dw8_fits, kh * kq <= 64), then the output stage of channel o; y: the
 * oh * ow output bytes of the plane (contiguous). NULL when the CPU lacks VBMI. */
typedef void (*qk__dw8_fused_kernel)(const uint8_t *x, size_t wp, const int8_t *w8, size_t kh,
                                     size_t kq, size_t stride_h, size_t stride_w, size_t dil_h,
                                     size_t dil_w, size_t oh, size_t ow, uint32_t corr,
                                     const qk_epilogue *ep, size_t o, uint8_t *y);
qk__dw8_fused_kernel qk__dw8_fused_kernel_get(void);

/* Copies rows x n bytes (source rows n apart, each byte ^ flip) into a padded plane of hp rows
 * of pitch wp bytes at d, the interior at (pad_top, pad_left); every other byte of the plane
 * set to fill. Writes exactly the plane's hp * wp bytes. AVX-512BW; returns 0 when not available
 * (the caller then copies its own way). */
int qk__pad_plane8(const uint8_t *src, size_t rows, size_t n, uint8_t flip, uint8_t fill,
                   size_t pad_top, size_t pad_left, size_t hp, size_t wp, uint8_t *d);

/* A padded plane (hp rows of pitch wp, the rows x n input at (pad_top, pad_left), the rest a
 * fill byte) as 64-byte blocks: block b takes cnt[b] consecutive input bytes from start[b],
 * lane l of the block = byte idx[64 b + l] of them when bit l of mask[b] is set, else fill.
 * Tables built once per call (qk__plane_blocks_init, 0 on allocation failure), applied per
 * plane by qk__plane_blocks_copy (VBMI; the destination 64-byte aligned, the last block's 64
 * bytes written whole: up to 63 bytes past the plane). */
typedef struct {
    size_t nblk;
    uint64_t *mask;
    uint32_t *start, *cnt;
    uint8_t *idx;
} qk__plane_blocks;
int qk__plane_blocks_init(qk__plane_blocks *t, size_t rows, size_t n, size_t pad_top,
                          size_t pad_left, size_t hp, size_t wp);
void qk__plane_blocks_free(qk__plane_blocks *t);
void qk__plane_blocks_copy(const qk__plane_blocks *t, const uint8_t *src, uint8_t flip,
                           uint8_t fill, uint8_t *d);

/* Channel-quad image (weights with cq8, see gemm_internal.h): the padded u8 image of 4
 * consecutive channels as one plane of hp x wp pixels of 4 bytes (byte c of pixel p = channel
 * 4 cq + c), so that the 4 k values of a quad (4 channels at one tap) of 16 pixels are 64
 * contiguous bytes. qk__pad_quad8: one such plane from the 4 source planes (rows x n bytes each,
 * src, src + plane_in, ...), interior at (pad_top, pad_left), the rest fill; writes exactly
 * hp * wp * 4 bytes. AVX-512BW/VL (the 8-bit path has them); returns 0 otherwise. */
int qk__pad_quad8(const uint8_t *src, size_t plane_in, size_t rows, size_t n, uint8_t flip,
                  uint8_t fill, size_t pad_top, size_t pad_left, size_t hp, size_t wp,
                  uint8_t *d);
/* The [taps * nq][16][4] panel of one tile from a channel-quad image (src: the group's first
 * quad plane, quad planes plane4 bytes apart): quad (tap, cq) lane i = pixel
 * base[r] + i * sw + tapoff[tap] of plane cq, for the run r holding lane i (runs as in conv2d.c:
 * lane i >= start[r]). Reads up to 64 * sw bytes past a run's first pixel. sw 1 or 2. */
void qk__panel_cq8(const uint8_t *src, size_t plane4, const size_t *tapoff, size_t taps,
                   size_t nq, size_t nseg, const size_t *start, const size_t *base, size_t sw,
                   uint8_t *panel);

#endif
