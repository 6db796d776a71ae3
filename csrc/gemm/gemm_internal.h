/* gemm_internal.h -- shared by the GEMM, linear and conv files; not installed, not public.
 *
 * The integer GEMM works on int16 operands: every u8/s8 value minus its zero point lies in
 * [-255, 255], so one vpmaddwd (int16 x int16 -> pairs summed in int32) is exact, and the int32
 * accumulators are exact too as long as the worst-case bound checked before the run fits. Sums
 * are carried in uint32 (two's-complement wrap, defined in C) so that the scalar twin gives the
 * same bits as the SIMD kernel even in the explicit wrap mode.
 *
 * Operands of the micro-kernel (MR x NR = 6 x 16):
 *   A ("broadcast" side): MR rows, row-major int16, K padded to an even K2 with zeros; row r
 *     starts at a + r * lda. Rows >= mr are never read (row mr-1 is reused).
 *   B ("vector" side): one panel of 16 columns, [K2/2][16][2] int16 (pairs of k interleaved).
 *   C: a 6 x 16 int32 tile (row-major, 16 a row), every element written.
 */
#ifndef QKERNELS_GEMM_INTERNAL_H
#define QKERNELS_GEMM_INTERNAL_H

#include "internal.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define QK_GEMM_MR 6
#define QK_GEMM_NR 16

typedef void (*qk_gemm_ukernel)(size_t mr, size_t kp, const int16_t *a, size_t lda,
                                const int16_t *b, int32_t *c);

void qk_gemm_s16_6x16__scalar(size_t mr, size_t kp, const int16_t *a, size_t lda,
                              const int16_t *b, int32_t *c);
#if QK_X86
void qk_gemm_s16_6x16__avx2(size_t mr, size_t kp, const int16_t *a, size_t lda,
                            const int16_t *b, int32_t *c);
#endif
/* The micro-kernel chosen for this process (AVX2 or scalar, see qk_isa()). */
qk_gemm_ukernel qk__gemm_ukernel(void);

/* Depthwise direct kernel: one output plane (oh x ow) of one channel.
 *   x: the padded int16 (x - x_zp) plane of the input channel, row pitch wp (with slack after
 *      it, see ukernel.c); w: kh*kw int16 (w - w_zp) taps; out: oh*ow int32 raw sums. */
typedef void (*qk_dw_plane_kernel)(const int16_t *x, size_t wp, const int16_t *w, size_t kh,
                                   size_t kw, size_t stride_h, size_t stride_w, size_t dil_h,
                                   size_t dil_w, size_t oh, size_t ow, int32_t *out);
void qk_dw_plane__scalar(const int16_t *x, size_t wp, const int16_t *w, size_t kh, size_t kw,
                         size_t stride_h, size_t stride_w, size_t dil_h, size_t dil_w, size_t oh,
                         size_t ow, int32_t *out);
#if QK_X86
void qk_dw_plane__avx2(const int16_t *x, size_t wp, const int16_t *w, size_t kh, size_t kw,
                       size_t stride_h, size_t stride_w, size_t dil_h, size_t dil_w, size_t oh,
                       size_t ow, int32_t *out);
#endif
#if QK_X86
/* AVX-512BW twin (vnni.c), used when the 8-bit path is on. */
void qk_dw_plane__avx512(const int16_t *x, size_t wp, const int16_t *w, size_t kh, size_t kw,
                         size_t stride_h, size_t stride_w, size_t dil_h, size_t dil_w, size_t oh,
                         size_t ow, int32_t *out);
#endif
qk_dw_plane_kernel qk__dw_plane_kernel(void);
#if QK_X86
/* AVX-512 part of qk__epilogue_run (vnni.c): elements done (cnt, or 0 for schemes it skips). */
size_t qk__epilogue_run_avx512(const qk_epilogue *ep, size_t o, const int32_t *src, size_t cnt,
                               void *y);
#endif

/* 8-bit path (AVX512-VNNI and its scalar twins, vnni.c): 12 x 16 tiles over raw u8 x s8. */
#define QK_VNNI_MR 12
/* a: a block [kq][12][4] (12 rows interleaved by quads of k; rows past the data are zero),
 * b: a panel [kq][16][4]; c: the full 12 x 16 int32 tile. */
typedef void (*qk_gemm_s8u8_ukernel)(size_t kq, const int8_t *a, const uint8_t *b, int32_t *c);
void qk_gemm_s8u8_12x16__scalar(size_t kq, const int8_t *a, const uint8_t *b, int32_t *c);
/* Conv blocks may also have 16 rows (a [kq][16][4], c 16 x 16): see qk_packed_weights.mr8. */
#define QK_VNNI_MR_MAX 16
void qk_gemm_s8u8_16x16__scalar(size_t kq, const int8_t *a, const uint8_t *b, int32_t *c);
#if QK_X86
void qk_gemm_s8u8_12x16__avx512vnni(size_t kq, const int8_t *a, const uint8_t *b, int32_t *c);
void qk_gemm_s8u8_16x16__avx512vnni(size_t kq, const int8_t *a, const uint8_t *b, int32_t *c);
#endif
/* 1 when the AVX2 path is chosen and the CPU has AVX512F/BW/VNNI, unless QKERNELS_SIMD=avx2
 * (chosen once, like qk_isa()). Weights packed while it is 1 use the 8-bit layout. */
int qk__use_vnni(void);
/* Half tiles (tiles of at most 8 pixels): the same operands, columns 0-7 computed on 256-bit
 * vectors, columns 8-15 of c set to 0. */
void qk_gemm_s8u8_12x8__scalar(size_t kq, const int8_t *a, const uint8_t *b, int32_t *c);
void qk_gemm_s8u8_16x8__scalar(size_t kq, const int8_t *a, const uint8_t *b, int32_t *c);
#if QK_X86
void qk_gemm_s8u8_12x8__avx512vnni(size_t kq, const int8_t *a, const uint8_t *b, int32_t *c);
void qk_gemm_s8u8_16x8__avx512vnni(size_t kq, const int8_t *a, const uint8_t *b, int32_t *c);
#endif
qk_gemm_s8u8_ukernel qk__gemm_s8u8_half_ukernel(size_t mr);
/* The conv kernel for blocks of mr (12 or 16) rows. */
qk_gemm_s8u8_ukernel qk__gemm_s8u8_ukernel(size_t mr);
/* Per channel, modulo 2^32: k * xz8 * wzp8[o] - xz8 * colsum[o] (malloc'd, NULL on failure). The
 * exact sum is then S + corr[o] - wzp8[o] * sum_k x8 (see vnni.c). */
uint32_t *qk__zp_correction(const qk_packed_weights *w, int32_t xz8);
/* 8-bit conv tiles to output: v = raw + corr[o] - wzp8[o] * xsum (mod 2^32), then the epilogue.
 * Rows = channels o0 + r, columns = cnt pixels (pixsum[i], or NULL when every wzp8 is 0), y rows
 * (channels) ystride bytes apart. AVX-512 when the 8-bit path is on. */
qk_status qk__tile_out_conv(const qk_epilogue *ep, const qk_packed_weights *w,
                            const uint32_t *corr, const uint32_t *pixsum, size_t o0, size_t cnt,
                            int32_t *tile, size_t mr, char *y, size_t ystride);

/* 8-bit depthwise (vnni.c): one output plane of one channel from a padded u8 plane (int8
 * activations + 128, padding = the u8 zero point), row pitch wp, with at least 64 bytes of
 * readable slack after the last element a row block can reach. w8: kh rows of kq quads (kw
 * padded to 4 kq with zero weights) of s8 taps. out[i * ow + j] = sum_taps x8 * w8 + corr
 * (mod 2^32). Requires kw <= 4 kq, 15 * stride_w + (4 kq - 1) * dil_w < 64 (qk__dw8_fits). */
typedef void (*qk_dw8_plane_kernel)(const uint8_t *x, size_t wp, const int8_t *w8, size_t kh,
                                    size_t kq, size_t stride_h, size_t stride_w, size_t dil_h,
                                    size_t dil_w, size_t oh, size_t ow, uint32_t corr,
                                    int32_t *out);
void qk_dw8_plane__scalar(const uint8_t *x, size_t wp, const int8_t *w8, size_t kh, size_t kq,
                          size_t stride_h, size_t stride_w, size_t dil_h, size_t dil_w, size_t oh,
                          size_t ow, uint32_t corr, int32_t *out);
#if QK_X86
void qk_dw8_plane__avx512vbmi(const uint8_t *x, size_t wp, const int8_t *w8, size_t kh, size_t kq,
                              size_t stride_h, size_t stride_w, size_t dil_h, size_t dil_w,
                              size_t oh, size_t ow, uint32_t corr, int32_t *out);
#endif
/* The 8-bit depthwise kernel when the CPU path has VNNI and VBMI, else NULL. */
qk_dw8_plane_kernel qk__dw8_plane_kernel(void);
static inline int qk__dw8_fits(size_t kq, size_t stride_w, size_t dil_w) {
    return 15 * stride_w + (4 * kq - 1) * dil_w < 64;
}
/* The 4 bytes at p (any alignment) as an int32. */
static inline int32_t qk__ld32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}
#if QK_X86
#include <immintrin.h>
/* The byte gather (vpermb) index of the 8-bit depthwise kernels: byte 4p + q of a pixel quad
 * group reads byte p * stride_w + q * dil_w of the row (< 64 when qk__dw8_fits). */
QK_TARGET_AVX512 static inline __m512i qk__dw8_gather_index(size_t stride_w, size_t dil_w) {
    const __m512i lane = _mm512_set_epi8(63, 62, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49,
                                         48, 47, 46, 45, 44, 43, 42, 41, 40, 39, 38, 37, 36, 35, 34,
                                         33, 32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19,
                                         18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2,
                                         1, 0);
    const __m512i pq = _mm512_srli_epi16(_mm512_and_si512(lane, _mm512_set1_epi8((char)0xFC)), 2);
    const __m512i qq = _mm512_and_si512(lane, _mm512_set1_epi8(3));
    /* 16-bit products of bytes, low bytes kept */
    const __m512i lo8 = _mm512_set1_epi16(0x00FF);
    const __m512i m_even = _mm512_add_epi16(
        _mm512_mullo_epi16(_mm512_and_si512(pq, lo8), _mm512_set1_epi16((short)stride_w)),
        _mm512_mullo_epi16(_mm512_and_si512(qq, lo8), _mm512_set1_epi16((short)dil_w)));
    const __m512i m_odd = _mm512_add_epi16(
        _mm512_mullo_epi16(_mm512_srli_epi16(pq, 8), _mm512_set1_epi16((short)stride_w)),
        _mm512_mullo_epi16(_mm512_srli_epi16(qq, 8), _mm512_set1_epi16((short)dil_w)));
    return _mm512_or_si512(_mm512_and_si512(m_even, lo8), _mm512_slli_epi16(m_odd, 8));
}
/* The nq = kh * kq tap quads of a depthwise channel (w8: [kh][kq][4] s8) for the kernels
 * below: wv[t] the quad's weights broadcast, off[t] its byte offset in a padded plane of pitch
 * wp (no divisions: they would cost more than a small plane). */
QK_TARGET_AVX512 static inline void qk__dw8_taps(const int8_t *w8, size_t kh, size_t kq,
                                                 size_t dil_h, size_t dil_w, size_t wp,
                                                 __m512i *wv, size_t *off) {
    for (size_t r = 0, t = 0; r < kh; r++)
        for (size_t q = 0; q < kq; q++, t++) {
            wv[t] = _mm512_set1_epi32(qk__ld32(w8 + 4 * t));
            off[t] = r * dil_h * wp + q * 4 * dil_w;
        }
}
/* The inner step of the 8-bit depthwise kernels: four output rows (input rows rs bytes apart) of
 * 16 pixels from base, over the nq taps (weights wv[t], offsets off[t]): four independent
 * vpdpbusd chains added to a[0..3]. */
__attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi"))) static inline
    __attribute__((always_inline)) void
    qk__dw8_rows4(const uint8_t *base, size_t rs, const size_t *off, const __m512i *wv, size_t nq,
                  __m512i idx, __m512i a[4]) {
    __m512i a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
    for (size_t t = 0; t < nq; t++) {
        const uint8_t *bt = base + off[t];
        a0 = _mm512_dpbusd_epi32(a0, _mm512_permutexvar_epi8(idx, _mm512_loadu_si512((const void *)bt)), wv[t]);
        a1 = _mm512_dpbusd_epi32(a1, _mm512_permutexvar_epi8(idx, _mm512_loadu_si512((const void *)(bt + rs))), wv[t]);
        a2 = _mm512_dpbusd_epi32(a2, _mm512_permutexvar_epi8(idx, _mm512_loadu_si512((const void *)(bt + 2 * rs))), wv[t]);
        a3 = _mm512_dpbusd_epi32(a3, _mm512_permutexvar_epi8(idx, _mm512_loadu_si512((const void *)(bt + 3 * rs))), wv[t]);
    }
    a[0] = a0;
    a[1] = a1;
    a[2] = a2;
    a[3] = a3;
}
#endif

/* ---- linear, AVX512-VNNI path with the fused fp32 / int32 output stage (linear_vnni.c) ---- */
/* qk_linear on weights packed in the 8-bit layout (w->vnni: the VNNI path is on), after its
 * checks (m > 0); xz8 = the activation zero point as u8 (+128 for int8 activations). */
qk_status qk__linear_vnni(const qk_packed_weights *w, const void *x, qk_dtype xt, size_t m,
                          int32_t xz8, const qk_epilogue *ep, void *y, int threads);

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
};

/* Threads: run fn(ctx, j0, j1) over [0, njobs) split into `threads` contiguous ranges.
 * Returns QK_ERR_NOMEM when a thread could not be started (the work is then done inline). */
typedef void (*qk__job_fn)(void *ctx, size_t j0, size_t j1);
void qk__parallel(size_t njobs, int threads, qk__job_fn fn, void *ctx);

/* Epilogue: validated per-call requantization of raw int32 sums. */
qk_status qk__epilogue_check(const qk_epilogue *ep, size_t n);
/* The bound check: max |x - x_zp| * abs_sum[o] + |bias[o]| <= INT32_MAX for every o. */
qk_status qk__bound_check(const qk_packed_weights *w, qk_dtype x_type, int32_t x_zp,
                          const qk_epilogue *ep);
/* Apply the epilogue to `cnt` raw sums of output channel o (src) and store them contiguously at
 * y (elements of ep->out_type). Returns QK_ERR_OVERFLOW on a double-round left shift overflow
 * (strict mode), else QK_OK. AVX2 for the fp32 / int32 schemes, same bits as the scalar loop. */
qk_status qk__epilogue_run(const qk_epilogue *ep, size_t o, const int32_t *src, size_t cnt,
                           void *y);
/* Same, for `cnt` consecutive channels o0, o0 + 1, ... */
qk_status qk__epilogue_channels(const qk_epilogue *ep, size_t o0, const int32_t *src, size_t cnt,
                                void *y);
size_t qk__dtype_size(qk_dtype t);
/* The fp32 clamp bounds act_min - zero_point and act_max - zero_point as floats, computed wide:
 * with QK_REQ_NONE those fields are not checked (nor used), and an int32 difference of
 * unchecked values could overflow. */
static inline float qk__ep_flo(const qk_epilogue *ep) {
    return (float)((int64_t)ep->act_min - ep->zero_point);
}
static inline float qk__ep_fhi(const qk_epilogue *ep) {
    return (float)((int64_t)ep->act_max - ep->zero_point);
}

#endif
