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

/* Depthwise direct kernel: one output row of one channel.
 *   xp: the padded int16 (x - x_zp) plane of the channel, row pitch wp;
 *   w:  kh*kw int16 (w - w_zp) taps; out: ow int32 raw sums (wrapping in uint32). */
typedef void (*qk_dw_row_kernel)(const int16_t *xrow0, size_t wp, const int16_t *w, size_t kh,
                                 size_t kw, size_t stride_w, size_t dil_h, size_t dil_w,
                                 size_t ow, int32_t *out);
void qk_dw_row__scalar(const int16_t *xrow0, size_t wp, const int16_t *w, size_t kh, size_t kw,
                       size_t stride_w, size_t dil_h, size_t dil_w, size_t ow, int32_t *out);
#if QK_X86
void qk_dw_row__avx2(const int16_t *xrow0, size_t wp, const int16_t *w, size_t kh, size_t kw,
                     size_t stride_w, size_t dil_h, size_t dil_w, size_t ow, int32_t *out);
#endif
qk_dw_row_kernel qk__dw_row_kernel(void);

/* The packed weights (opaque in the public header). */
enum { QK__PACK_LINEAR = 1, QK__PACK_CONV = 2 };
struct qk_packed_weights {
    int kind;          /* QK__PACK_LINEAR or QK__PACK_CONV */
    qk_dtype w_type;   /* QK_DT_U8 or QK_DT_S8 */
    size_t n;          /* output channels (all groups) */
    size_t k;          /* reduction length per output channel */
    size_t k2;         /* k rounded up to even */
    size_t groups, kh, kw; /* conv only (linear: 1, 1, 1) */
    int16_t *data;     /* linear: ceil(n/16) panels [k2/2][16][2]; conv: n rows of k2 */
    int64_t *abs_sum;  /* n: sum_k |w - w_zp|, for the accumulator bound */
    int32_t *w_zp;     /* n */
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
/* Apply the epilogue to `cnt` raw sums of output channel o (src, contiguous) and store them at
 * y + i * ystride (elements of ep->out_type). Returns QK_ERR_OVERFLOW on a double-round left
 * shift overflow (strict mode), else QK_OK. */
qk_status qk__epilogue_run(const qk_epilogue *ep, size_t o, const int32_t *src, size_t src_step,
                           size_t cnt, void *y, size_t ystride);
/* Same, for a row of `cnt` consecutive channels o0.. (src contiguous, y contiguous). */
qk_status qk__epilogue_channels(const qk_epilogue *ep, size_t o0, const int32_t *src, size_t cnt,
                                void *y);
size_t qk__dtype_size(qk_dtype t);

#endif
