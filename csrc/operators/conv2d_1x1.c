/* conv2d_1x1.c -- qk_conv2d's path for an unpadded stride-1 1x1 conv on the int16 kernels (CPUs
 * without AVX512-VNNI, and the scalar twins), fp32 output stage with an 8-bit output (the
 * fbgemm / onnxruntime presets): the expand and project convs of MobileNetV2's inverted
 * residuals, the 1x1 convs of a ResNet bottleneck. Chosen by qk__conv_path (conv2d.c).
 *
 * The pixels of an image are one flat run of P = H * W: tiles of 16 consecutive NCHW pixels (the
 * last one shorter), whatever the row width (the tiles of the general path are cut per output
 * row: a 28-pixel row was 2 tiles of 16 lanes, 43% of them idle, a 14-pixel row 1 of 16). A job
 * builds the int16 panels of up to 4 tiles straight from the input (qk_panel_s16_1x1: no
 * padded int16 copy of the whole image), then runs every block of 6 output channels over them
 * with the output stage in registers (qk_gemm_s16_fused_6x16: no int32 tile stored and read
 * back, no output-stage call per 16 sums). The sums are those of the general path (the same
 * int16 operands x - x_zp and w - w_zp, the same pairs of k in the same order, modulo 2^32) and
 * the output stage is the same arithmetic, so the same bits; every output is computed the same
 * way whatever the thread split.
 * Measured on mobilenet_v2's 1x1 layers alone (batch 1, 1 thread, AVX2 CPU without AVX-512, CPU
 * time, medians of 5 interleaved rounds vs the general tiles, load 8 on 2 CPUs; scripts/bench_ab.py
 * --rows mbv2): 16 -> 96 @112 2.09 -> 0.85 ms, 24 -> 144 @56 0.80 -> 0.35, 32 -> 192 @28 0.65 ->
 * 0.17, 144 -> 24 @56 0.42 -> 0.34, 96 -> 576 @14 0.56 -> 0.27, 576 -> 160 @7 (49 pixels, k >= 24:
 * the 1x1-as-GEMM path, unchanged) 0.088 -> 0.083. */
#include "operators/operators.h"

#include <stdatomic.h>
#include <stdlib.h>

enum { QK__1X1_TILES = 4 };

typedef struct {
    const qk_packed_weights *w;
    const uint8_t *x;
    qk_dtype xt;
    int32_t xzp;
    const qk_epilogue *ep;
    uint8_t *y;
    size_t ys;    /* bytes from one image of y to the next */
    size_t plane; /* P: pixels an image */
    size_t tiles; /* tiles of 16 pixels an image */
    size_t tpj;   /* tiles a job */
    size_t jpi;   /* jobs an image */
    const qk__ukernels *uk;
    _Atomic int status;
} qk__1x1_ctx;

int qk__conv_1x1_fits(const qk_conv2d_shape *s, const qk_packed_weights *w, const qk_epilogue *ep) {
    return !w->vnni && w->data != NULL && w->groups == 1 && w->kh == 1 && w->kw == 1 &&
           s->stride_h == 1 && s->stride_w == 1 && s->pad_top == 0 && s->pad_left == 0 &&
           s->pad_bottom == 0 && s->pad_right == 0 && qk__epilogue_fused(ep) &&
           qk__uk()->gemm_s16_fused != NULL;
}

static void qk__1x1_jobs(void *vctx, size_t j0, size_t j1) {
    qk__1x1_ctx *c = (qk__1x1_ctx *)vctx;
    const qk_packed_weights *w = c->w;
    const size_t k = w->k, k2 = w->k2, n = w->n, P = c->plane;
    int16_t *panels = (int16_t *)malloc(QK__1X1_TILES * k2 * QK_GEMM_NR * sizeof(int16_t));
    if (panels == NULL) {
        atomic_store(&c->status, QK_ERR_NOMEM);
        return;
    }
    for (size_t j = j0; j < j1; j++) {
        const size_t b = j / c->jpi, t0 = j % c->jpi * c->tpj;
        const size_t nt = c->tiles - t0 < c->tpj ? c->tiles - t0 : c->tpj;
        const uint8_t *xb = c->x + b * k * P;
        uint8_t *yb = c->y + b * c->ys;
        size_t p0[QK__1X1_TILES], cnt[QK__1X1_TILES];
        for (size_t t = 0; t < nt; t++) {
            p0[t] = (t0 + t) * QK_GEMM_NR;
            cnt[t] = P - p0[t] < QK_GEMM_NR ? P - p0[t] : QK_GEMM_NR;
            c->uk->panel_s16_1x1(xb + p0[t], c->xt, c->xzp, P, k, cnt[t],
                                 panels + t * k2 * QK_GEMM_NR);
        }
        for (size_t o0 = 0; o0 < n; o0 += QK_GEMM_MR) {
            const size_t mr = n - o0 < QK_GEMM_MR ? n - o0 : QK_GEMM_MR;
            for (size_t t = 0; t < nt; t++)
                c->uk->gemm_s16_fused(mr, k2 / 2, w->data + o0 * k2, k2,
                                      panels + t * k2 * QK_GEMM_NR, c->ep, o0, cnt[t],
                                      yb + o0 * P + p0[t], P);
        }
    }
    free(panels);
}

qk_status qk__conv2d_1x1(const qk_conv2d_shape *s, const qk_packed_weights *w, const void *x,
                         qk_dtype x_type, int32_t x_zero_point, const qk_epilogue *ep, void *y,
                         size_t ys, int threads) {
    qk__1x1_ctx c;
    c.w = w;
    c.x = (const uint8_t *)x;
    c.xt = x_type;
    c.xzp = x_zero_point;
    c.ep = ep;
    c.y = (uint8_t *)y;
    c.ys = ys; /* 8-bit output: elements are bytes */
    c.plane = s->in_h * s->in_w;
    c.tiles = (c.plane + QK_GEMM_NR - 1) / QK_GEMM_NR;
    c.uk = qk__uk();
    atomic_init(&c.status, QK_OK);
    /* tiles a job: 4, or fewer so that several threads get about 8 jobs each */
    const size_t t = threads < 1 ? 1 : (size_t)threads, units = s->batch * c.tiles;
    c.tpj = QK__1X1_TILES;
    while (t > 1 && c.tpj > 1 && units / c.tpj < 8 * t) c.tpj--;
    c.jpi = (c.tiles + c.tpj - 1) / c.tpj;
    qk__parallel(s->batch * c.jpi, threads, qk__1x1_jobs, &c);
    return (qk_status)atomic_load(&c.status);
}
