/* conv2d.c -- qk_conv2d: NCHW integer convolution on packed OIHW weights.
 *
 * Phase 1: the input is widened once to a zero-padded int16 image of (x - x_zp) (padding taps
 * then contribute exactly 0, as SPEC section 5 requires).
 * Phase 2, general groups: the output of each (image, group) is cut into tiles of up to 16
 * consecutive pixels of one output row. A job builds the im2col^T panels of up to 4 tiles
 * ([k2/2][16][2] int16, the vector side of the 6 x 16 micro-kernel), then runs every block of 6
 * output channels of the group (the weights are the broadcast side) and writes NCHW directly.
 * Phase 2, one input channel per group (depthwise, any channel multiplier): a direct kernel per
 * output row.
 * Every output element is computed the same way whatever the thread split.
 */
#include "gemm/gemm_internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if QK_X86
#include <immintrin.h>
#endif

enum { QK__CONV_TILES = 4, QK__SLACK = 64 };

typedef struct {
    const qk_conv2d_shape *s;
    const qk_packed_weights *w;
    const void *x;
    qk_dtype xt;
    int32_t xzp;
    const qk_epilogue *ep;
    void *y;
    int16_t *xp;   /* padded image, batch x in_c x hp x wp (+ slack) */
    size_t hp, wp, oh, ow, cpg, ocg, tiles_per_row, tiles, jobs_per_group;
    qk_gemm_ukernel uk;
    qk_dw_row_kernel dw;
    _Atomic int status;
} qk__conv_ctx;

/* ---- phase 1: padded int16 image ---------------------------------------------------------- */
static void qk__pad_planes(void *vctx, size_t j0, size_t j1) {
    qk__conv_ctx *c = (qk__conv_ctx *)vctx;
    const qk_conv2d_shape *s = c->s;
    const size_t plane = c->hp * c->wp;
    for (size_t j = j0; j < j1; j++) { /* j = b * in_c + ch */
        int16_t *d = c->xp + j * plane;
        memset(d, 0, plane * sizeof(int16_t));
        for (size_t h = 0; h < s->in_h; h++) {
            int16_t *dr = d + (h + s->pad_top) * c->wp + s->pad_left;
            const size_t base = (j * s->in_h + h) * s->in_w;
            if (c->xt == QK_DT_U8) {
                const uint8_t *src = (const uint8_t *)c->x + base;
                for (size_t i = 0; i < s->in_w; i++) dr[i] = (int16_t)((int32_t)src[i] - c->xzp);
            } else {
                const int8_t *src = (const int8_t *)c->x + base;
                for (size_t i = 0; i < s->in_w; i++) dr[i] = (int16_t)((int32_t)src[i] - c->xzp);
            }
        }
    }
}

/* ---- phase 2a: im2col^T panel of one tile -------------------------------------------------- */
/* src: the padded plane of the group's first channel; base: offset of the tile's first pixel
 * (oh * stride_h * wp + ow0 * stride_w); cnt valid pixels. */
static void qk__build_panel_scalar(const qk__conv_ctx *c, const int16_t *src, size_t base,
                                   size_t cnt, int16_t *panel) {
    const qk_conv2d_shape *s = c->s;
    const size_t kh = c->w->kh, kw = c->w->kw, plane = c->hp * c->wp, k = c->w->k;
    size_t kk = 0;
    for (size_t ch = 0; ch < c->cpg; ch++)
        for (size_t r = 0; r < kh; r++)
            for (size_t q = 0; q < kw; q++, kk++) {
                const int16_t *p = src + ch * plane + r * s->dil_h * c->wp + q * s->dil_w + base;
                int16_t *d = panel + (kk / 2) * 2 * QK_GEMM_NR + (kk & 1);
                size_t i = 0;
                for (; i < cnt; i++) d[2 * i] = p[i * s->stride_w];
                for (; i < QK_GEMM_NR; i++) d[2 * i] = 0;
            }
    if (k & 1) {
        int16_t *d = panel + (k / 2) * 2 * QK_GEMM_NR + 1;
        for (size_t i = 0; i < QK_GEMM_NR; i++) d[2 * i] = 0;
    }
}

#if QK_X86
/* Loads the 16 int16 of one k row for the tile (stride 1 or 2); lanes >= cnt are garbage that
 * only reaches output columns that are never stored. */
QK_TARGET_AVX2 static inline __m256i qk__tile_row(const int16_t *p, size_t stride_w) {
    if (stride_w == 1) return _mm256_loadu_si256((const __m256i *)p);
    const __m256i m = _mm256_set1_epi32(0xFFFF);
    const __m256i v0 = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)p), m);
    const __m256i v1 = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(p + 16)), m);
    return _mm256_permute4x64_epi64(_mm256_packus_epi32(v0, v1), 0xD8);
}

QK_TARGET_AVX2 static void qk__build_panel_avx2(const qk__conv_ctx *c, const int16_t *src,
                                                size_t base, int16_t *panel) {
    const qk_conv2d_shape *s = c->s;
    const size_t kh = c->w->kh, kw = c->w->kw, plane = c->hp * c->wp, k = c->w->k;
    const size_t taps = kh * kw;
    const __m256i zero = _mm256_setzero_si256();
    for (size_t kk = 0; kk < k; kk += 2) {
        size_t ch = kk / taps, t = kk % taps;
        const int16_t *p0 = src + ch * plane + (t / kw) * s->dil_h * c->wp + (t % kw) * s->dil_w + base;
        const __m256i v0 = qk__tile_row(p0, s->stride_w);
        __m256i v1 = zero;
        if (kk + 1 < k) {
            ch = (kk + 1) / taps;
            t = (kk + 1) % taps;
            const int16_t *p1 =
                src + ch * plane + (t / kw) * s->dil_h * c->wp + (t % kw) * s->dil_w + base;
            v1 = qk__tile_row(p1, s->stride_w);
        }
        const __m256i lo = _mm256_unpacklo_epi16(v0, v1), hi = _mm256_unpackhi_epi16(v0, v1);
        _mm256_storeu_si256((__m256i *)(panel + kk * QK_GEMM_NR),
                            _mm256_permute2x128_si256(lo, hi, 0x20));
        _mm256_storeu_si256((__m256i *)(panel + kk * QK_GEMM_NR + 16),
                            _mm256_permute2x128_si256(lo, hi, 0x31));
    }
}
#endif

static void qk__conv_jobs(void *vctx, size_t j0, size_t j1) {
    qk__conv_ctx *c = (qk__conv_ctx *)vctx;
    const qk_conv2d_shape *s = c->s;
    const qk_packed_weights *w = c->w;
    const size_t k2 = w->k2, n = w->n, osz = qk__dtype_size(c->ep->out_type);
    const size_t plane = c->hp * c->wp, opix = c->oh * c->ow;
    int16_t *panels = (int16_t *)malloc(QK__CONV_TILES * k2 * QK_GEMM_NR * sizeof(int16_t));
    if (panels == NULL) {
        atomic_store(&c->status, QK_ERR_NOMEM);
        return;
    }
    int32_t tile[QK_GEMM_MR * QK_GEMM_NR];
#if QK_X86
    const int simd = qk__use_avx2() && (s->stride_w == 1 || s->stride_w == 2);
#endif
    for (size_t j = j0; j < j1; j++) {
        const size_t bg = j / c->jobs_per_group, tj = j % c->jobs_per_group;
        const size_t b = bg / w->groups, g = bg % w->groups;
        const int16_t *src = c->xp + (b * s->in_c + g * c->cpg) * plane;
        const size_t t0 = tj * QK__CONV_TILES;
        const size_t nt = c->tiles - t0 < QK__CONV_TILES ? c->tiles - t0 : QK__CONV_TILES;
        size_t pix0[QK__CONV_TILES], cnt[QK__CONV_TILES];
        for (size_t t = 0; t < nt; t++) {
            const size_t oh = (t0 + t) / c->tiles_per_row;
            const size_t ow0 = ((t0 + t) % c->tiles_per_row) * QK_GEMM_NR;
            cnt[t] = c->ow - ow0 < QK_GEMM_NR ? c->ow - ow0 : QK_GEMM_NR;
            pix0[t] = oh * c->ow + ow0;
            const size_t base = oh * s->stride_h * c->wp + ow0 * s->stride_w;
            int16_t *panel = panels + t * k2 * QK_GEMM_NR;
#if QK_X86
            if (simd) {
                qk__build_panel_avx2(c, src, base, panel);
                continue;
            }
#endif
            qk__build_panel_scalar(c, src, base, cnt[t], panel);
        }
        for (size_t ob = 0; ob < c->ocg; ob += QK_GEMM_MR) {
            const size_t mr = c->ocg - ob < QK_GEMM_MR ? c->ocg - ob : QK_GEMM_MR;
            const size_t o0 = g * c->ocg + ob;
            for (size_t t = 0; t < nt; t++) {
                c->uk(mr, k2 / 2, w->data + o0 * k2, k2, panels + t * k2 * QK_GEMM_NR, tile);
                for (size_t r = 0; r < mr; r++) {
                    char *yp = (char *)c->y + ((b * n + o0 + r) * opix + pix0[t]) * osz;
                    if (qk__epilogue_run(c->ep, o0 + r, tile + r * QK_GEMM_NR, 1, cnt[t], yp, 1) !=
                        QK_OK)
                        atomic_store(&c->status, QK_ERR_OVERFLOW);
                }
            }
        }
    }
    free(panels);
}

/* ---- phase 2b: one input channel per group (depthwise) ------------------------------------ */
static void qk__dw_jobs(void *vctx, size_t j0, size_t j1) {
    qk__conv_ctx *c = (qk__conv_ctx *)vctx;
    const qk_conv2d_shape *s = c->s;
    const qk_packed_weights *w = c->w;
    const size_t n = w->n, osz = qk__dtype_size(c->ep->out_type), plane = c->hp * c->wp;
    int32_t *row = (int32_t *)malloc(c->ow * sizeof(int32_t));
    if (row == NULL) {
        atomic_store(&c->status, QK_ERR_NOMEM);
        return;
    }
    for (size_t j = j0; j < j1; j++) { /* j = b * n + o */
        const size_t b = j / n, o = j % n, ch = o / c->ocg;
        const int16_t *src = c->xp + (b * s->in_c + ch) * plane;
        const int16_t *wt = w->data + o * w->k2;
        for (size_t oh = 0; oh < c->oh; oh++) {
            c->dw(src + oh * s->stride_h * c->wp, c->wp, wt, w->kh, w->kw, s->stride_w, s->dil_h,
                  s->dil_w, c->ow, row);
            char *yp = (char *)c->y + ((b * n + o) * c->oh + oh) * c->ow * osz;
            if (qk__epilogue_run(c->ep, o, row, 1, c->ow, yp, 1) != QK_OK)
                atomic_store(&c->status, QK_ERR_OVERFLOW);
        }
    }
    free(row);
}

qk_status qk_conv2d_out_size(const qk_conv2d_shape *s, const qk_packed_weights *w,
                             size_t *out_h, size_t *out_w) {
    if (s == NULL || w == NULL || w->kind != QK__PACK_CONV || out_h == NULL || out_w == NULL)
        return QK_ERR_ARG;
    if (s->stride_h == 0 || s->stride_w == 0 || s->dil_h == 0 || s->dil_w == 0) return QK_ERR_ARG;
    if (s->in_c != w->groups * (w->k / (w->kh * w->kw))) return QK_ERR_ARG;
    if (s->in_h == 0 || s->in_w == 0) return QK_ERR_ARG;
    const size_t hp = s->in_h + s->pad_top + s->pad_bottom, wp = s->in_w + s->pad_left + s->pad_right;
    const size_t eh = s->dil_h * (w->kh - 1) + 1, ew = s->dil_w * (w->kw - 1) + 1;
    if (eh > hp || ew > wp) return QK_ERR_ARG;
    *out_h = (hp - eh) / s->stride_h + 1;
    *out_w = (wp - ew) / s->stride_w + 1;
    return QK_OK;
}

qk_status qk_conv2d(const qk_conv2d_shape *s, const qk_packed_weights *w, const void *x,
                    qk_dtype x_type, int32_t x_zero_point, const qk_epilogue *ep, void *y,
                    int threads) {
    size_t oh = 0, ow = 0;
    qk_status st = qk_conv2d_out_size(s, w, &oh, &ow);
    if (st != QK_OK) return st;
    st = qk__epilogue_check(ep, w->n);
    if (st != QK_OK) return st;
    st = qk__bound_check(w, x_type, x_zero_point, ep);
    if (st != QK_OK) return st;
    if (s->batch == 0) return QK_OK;
    if (x == NULL || y == NULL) return QK_ERR_ARG;
    qk__conv_ctx c;
    memset(&c, 0, sizeof c);
    c.s = s;
    c.w = w;
    c.x = x;
    c.xt = x_type;
    c.xzp = x_zero_point;
    c.ep = ep;
    c.y = y;
    c.hp = s->in_h + s->pad_top + s->pad_bottom;
    c.wp = s->in_w + s->pad_left + s->pad_right;
    c.oh = oh;
    c.ow = ow;
    c.cpg = s->in_c / w->groups;
    c.ocg = w->n / w->groups;
    c.uk = qk__gemm_ukernel();
    c.dw = qk__dw_row_kernel();
    atomic_init(&c.status, QK_OK);
    c.xp = (int16_t *)malloc((s->batch * s->in_c * c.hp * c.wp + QK__SLACK) * sizeof(int16_t));
    if (c.xp == NULL) return QK_ERR_NOMEM;
    memset(c.xp + s->batch * s->in_c * c.hp * c.wp, 0, QK__SLACK * sizeof(int16_t));
    qk__parallel(s->batch * s->in_c, threads, qk__pad_planes, &c);
    if (c.cpg == 1) {
        qk__parallel(s->batch * w->n, threads, qk__dw_jobs, &c);
    } else {
        c.tiles_per_row = (ow + QK_GEMM_NR - 1) / QK_GEMM_NR;
        c.tiles = oh * c.tiles_per_row;
        c.jobs_per_group = (c.tiles + QK__CONV_TILES - 1) / QK__CONV_TILES;
        qk__parallel(s->batch * w->groups * c.jobs_per_group, threads, qk__conv_jobs, &c);
    }
    free(c.xp);
    return (qk_status)atomic_load(&c.status);
}
