/* conv2d.c -- qk_conv2d: NCHW integer convolution on packed OIHW weights.
 *
 * qk_conv2d first chooses its algorithm, in one place (qk__conv_path, with the measurements that
 * set its rules): an unpadded 1x1 conv as a GEMM over its pixels (qk_linear on NHWC rows), a
 * batch of small images as one wide image, or the tiles described here.
 *
 * 8-bit path (CPUs with AVX512-VNNI, weights packed while it is on):
 *   phase 1: the input is copied once into a padded u8 image (int8 activations + 128, padding =
 *   the u8 zero point), except for an unpadded u8 input (qk__conv_in_place: the 1x1 convs of a
 *   bottleneck), which the tiles read as it is (a tile whose SIMD reads would pass the input's
 *   end is built by the scalar builder: qk__simd_reads_inside); phase 2: the output of each
 *   (image, group) is cut into tiles of 16 consecutive NCHW pixels (across output rows); a job
 *   builds the im2col panels [k4/4][16][4] of up to 4 tiles (specialized per stride and number
 *   of row runs; vpermt2b where the CPU has VBMI) and runs every block of 12 or 16 output
 *   channels over them (vpdpbusd; tiles of at most 8 pixels on 256-bit vectors); the
 *   zero-point correction and the epilogue write NCHW directly.
 *   With the fp32 epilogue (fbgemm, onnxruntime presets) the tiles are the fused kernels of
 *   ukernels/conv_u8_avx512vnni.c (requantized in registers; tiles of at most 8 pixels
 *   transposed: channels as lanes). Weights with cq8 (in_c / groups a multiple of 4, several
 *   taps; see operators.h) use a channel-quad image instead (4 channels interleaved a pixel): a tile's
 *   panel rows are then 64-byte copies of image rows, no byte transpose per tap; at stride 1
 *   with the fused output and no weight zero points, tiles of 9 to 16 pixels over 1 or 2
 *   output rows build no panel at all: the kernel loads those rows from the image itself
 *   (implicit GEMM, one masked load merging the second run; 2-7% faster on the resnet18 3x3
 *   layers). There the output rows whose windows reach into the top or bottom padding (border
 *   rows) are tiled row by row and skip their kernel rows of padding, the zero point's share
 *   of them added back in the start value (qk__conv_border_rows; 3-5% on 256->256@14).
 * int16 path (AVX2 without VNNI, and the scalar twins):
 *   phase 1: the input is widened once to a zero-padded int16 image of (x - x_zp) (padding taps
 *   then contribute exactly 0, as SPEC section 5 requires); phase 2: tiles of up to 16 pixels,
 *   on rows of 5 outputs or more 16 consecutive NCHW pixels across output rows (qk__conv_flat16;
 *   a tile over several rows is built from its runs, qk_im2col_s16_segs), else of one output
 *   row; panels [k2/2][16][2], the 6 x 16 vpmaddwd micro-kernel.
 * One input channel per group (depthwise, any channel multiplier): no image-wide pass; each job
 * copies the input plane it needs into its own padded plane and runs a direct plane kernel (8-bit
 * VNNI+VBMI kernel when the weights have that layout, else the int16 AVX-512 / AVX2 / scalar
 * ones), then the epilogue (fused into the 8-bit plane kernel with the fp32 epilogue, the plane
 * then copied by 64-byte blocks from per-call tables; fused too into the int16 AVX2 / scalar plane
 * kernels, qk_dw_plane_fused, with the fp32 epilogue to 8 bits: no int32 plane).
 * Windows of mostly padding (direct path): when the padded copy would hold more than
 *   4 x (input + output) elements + 64K (huge padding, stride or dilation; or a copy whose size
 *   does not even fit in size_t), nothing is copied: each output row of each (image, channel)
 *   sums only the taps that land on the input (per row and per column a contiguous range of
 *   kernel taps, found in O(1)); padding taps add exactly 0, so they are skipped, not read.
 *   Memory is then ow + k int32 a job: it follows the work, never the padding. Portable C on
 *   every path (the same bits), the shared unfused epilogue.
 * The image copies, panels and tiles are micro-kernels (ukernels/im2col_*, gemm_*, conv_u8_*,
 * dw_*), taken from this process's table (qk__uk()).
 * Every output element is computed the same way whatever the thread split.
 * qk_conv2d_strided writes the output images a batch stride apart (a channel slice of a larger
 * NCHW array, a concatenation written in place): every path addresses image b's channel o at
 * b * stride + o * oh * ow (qk__yoff; the GEMM and wide paths in their final copies). */
#include "operators/operators.h"
#include "elementwise/elementwise.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

enum { QK__CONV_TILES = 4, QK__SLACK = 192, QK__BROWS = 8 };
enum { QK__ROW_W = QK__CONV_TILES * QK_GEMM_NR }; /* int16 path: a job's pixels at most */

typedef struct {
    const qk_conv2d_shape *s;
    const qk_packed_weights *w;
    const void *x;
    qk_dtype xt;
    int32_t xzp;
    const qk_epilogue *ep;
    void *y;
    size_t ys;     /* elements from one image of y to the next (n * oh * ow: contiguous) */
    int16_t *xp;   /* padded image, batch x in_c x hp x wp (+ slack) */
    size_t hp, wp, oh, ow, cpg, ocg, tiles_per_row, tiles, jobs_per_group;
    size_t tpj; /* tiles a job (up to QK__CONV_TILES; fewer when jobs would be too few) */
    size_t cparts; /* 8-bit path: parts of a group's output-channel blocks a job (tile jobs x
                    * cparts jobs a group) */
    int flat; /* 8-bit path (qk__conv_flat): tiles are 16 consecutive NCHW pixels, across rows */
    const qk__ukernels *uk;  /* this process's micro-kernels */
    qk_dw8_plane_kernel dw8; /* 8-bit depthwise, when the weights have that layout and it fits */
    /* 8-bit path (w->vnni): padded u8 image (int8 activations + 128; padding = xz8) */
    uint8_t *xp8;
    const uint8_t *img8; /* the image the tiles read: xp8, or x itself (qk__conv_in_place) */
    size_t in_len;       /* img8 is x: its length in bytes (else 0: the copy has slack) */
    int32_t xz8;
    uint32_t *corr;
    qk_gemm_s8u8_ukernel uk8;
    qk_gemm_s8u8_ukernel uk8h; /* tiles of at most 8 pixels */
    size_t *koff;     /* k entries: offset of tap k (channel, row, column) in a group's image */
    qk_conv_fused_kernel fk;   /* 8-bit tiles of more than 8 pixels, output fused (or NULL) */
    qk_dw8_fused_kernel dw8f;  /* 8-bit depthwise plane, output fused (or NULL) */
    qk_pad_u8_blocks pb;       /* with dw8f: the padded plane as 64-byte blocks */
    int cq8;                   /* w->cq8: channel-quad image (ukernels.h), k = (tap, c) */
    size_t *tapoff;            /* cq8: pixel offset of each tap (r, q) in a plane */
    qk_conv_direct_kernel dk[2];  /* cq8, stride 1, fused, no wzp8: tiles of 1 / 2 runs read
                                   * straight from the image (or NULL) */
    /* With dk: the output rows whose windows reach into the top or bottom padding (btop
     * leading, bbot trailing; 0 when not used) are tiled row by row and run only kernel rows
     * rlo[i] .. rhi[i] (border row i: rows 0 .. btop - 1, then oh - bbot .. oh - 1); bcorr
     * (i * n + o): corr[o] plus what the skipped rows of padding would have added. */
    size_t btop, bbot, rlo[QK__BROWS], rhi[QK__BROWS];
    uint32_t *bcorr;
    _Atomic int status;
} qk__conv_ctx;

/* Offset (elements) of output channel o of image b in y: images ys apart (qk_conv2d_strided). */
static inline size_t qk__yoff(const qk__conv_ctx *c, size_t b, size_t o) {
    return b * c->ys + o * c->oh * c->ow;
}

/* ---- phase 1: padded int16 image ---------------------------------------------------------- */
static void qk__pad_planes(void *vctx, size_t j0, size_t j1) {
    qk__conv_ctx *c = (qk__conv_ctx *)vctx;
    const qk_conv2d_shape *s = c->s;
    const size_t plane = c->hp * c->wp;
    for (size_t j = j0; j < j1; j++) { /* j = b * in_c + ch */
        int16_t *d = c->xp + j * plane;
        const uint8_t *src = (const uint8_t *)c->x + j * s->in_h * s->in_w;
        for (size_t h = 0; h < s->in_h; h++) {
            int16_t *dr = d + (h + s->pad_top) * c->wp + s->pad_left;
            /* Whole 16-element blocks when they stay inside this plane, both in the input and
             * in the padded image: they may read up to 15 bytes of the following input rows and
             * write up to 15 elements after the row (later rows and padding, written after). */
            const size_t w16 = (s->in_w + 15) & ~(size_t)15;
            if (c->uk->widen_s16_over != NULL && h * s->in_w + w16 <= s->in_h * s->in_w &&
                (size_t)(dr - d) + w16 <= (s->pad_top + h + 1) * c->wp + s->pad_left + s->in_w &&
                (size_t)(dr - d) + w16 <= plane && h + 1 < s->in_h) {
                c->uk->widen_s16_over(src + h * s->in_w, c->xt, c->xzp, s->in_w, dr);
                continue;
            }
            c->uk->widen_s16(src + h * s->in_w, c->xt, c->xzp, s->in_w, dr);
        }
        /* padding last: it overwrites what the 16-element blocks spilled */
        memset(d, 0, s->pad_top * c->wp * sizeof(int16_t));
        memset(d + (s->pad_top + s->in_h) * c->wp, 0, s->pad_bottom * c->wp * sizeof(int16_t));
        for (size_t h = 0; h < s->in_h; h++) {
            int16_t *dr = d + (h + s->pad_top) * c->wp;
            for (size_t i = 0; i < s->pad_left; i++) dr[i] = 0;
            for (size_t i = s->pad_left + s->in_w; i < c->wp; i++) dr[i] = 0;
        }
    }
}

static void qk__pad_planes8(void *vctx, size_t j0, size_t j1) {
    qk__conv_ctx *c = (qk__conv_ctx *)vctx;
    const qk_conv2d_shape *s = c->s;
    const size_t plane = c->hp * c->wp;
    const uint8_t flip = c->xt == QK_DT_S8 ? 0x80 : 0;
    for (size_t j = j0; j < j1; j++)
        c->uk->pad_u8((const uint8_t *)c->x + j * s->in_h * s->in_w, s->in_h, s->in_w, flip,
                      (uint8_t)c->xz8, s->pad_top, s->pad_left, c->hp, c->wp,
                      c->xp8 + j * plane);
}

/* cq8: job j = b * in_c / 4 + quad: the quad's channel-quad plane from its 4 input planes. */
static void qk__pad_quads8(void *vctx, size_t j0, size_t j1) {
    qk__conv_ctx *c = (qk__conv_ctx *)vctx;
    const qk_conv2d_shape *s = c->s;
    const size_t plane = c->hp * c->wp, pin = s->in_h * s->in_w;
    const uint8_t flip = c->xt == QK_DT_S8 ? 0x80 : 0;
    for (size_t j = j0; j < j1; j++)
        c->uk->pad_u8x4((const uint8_t *)c->x + j * 4 * pin, pin, s->in_h, s->in_w, flip,
                        (uint8_t)c->xz8, s->pad_top, s->pad_left, c->hp, c->wp,
                        c->xp8 + j * 4 * plane);
}

/* Tile t of an (image, group), 8-bit path: cnt pixels from NCHW pixel pix0 (output row oh,
 * column ow0); brow: its border row (ctx btop / bbot), or -1. Order: the btop top border rows
 * (tiles_per_row tiles each), the rows between as flat tiles of 16 consecutive pixels across
 * rows (when ctx flat; else tiles_per_row tiles a row), then the bbot bottom border rows. */
typedef struct {
    size_t pix0, cnt, oh, ow0;
    int brow;
} qk__tile;

static void qk__tile_at(const qk__conv_ctx *c, size_t t, qk__tile *d) {
    const size_t tpr = c->tiles_per_row, top = c->btop * tpr;
    const size_t mid = c->tiles - (c->btop + c->bbot) * tpr;
    d->brow = -1;
    if (c->flat && t >= top && t < top + mid) {
        const size_t end = (c->oh - c->bbot) * c->ow;
        d->pix0 = c->btop * c->ow + (t - top) * QK_GEMM_NR;
        d->cnt = end - d->pix0 < QK_GEMM_NR ? end - d->pix0 : QK_GEMM_NR;
        d->oh = d->pix0 / c->ow;
        d->ow0 = d->pix0 % c->ow;
        return;
    }
    size_t row = t / tpr, col = t % tpr;
    if (c->flat) { /* a border tile: u-th of the top tiles, then the bottom ones */
        const size_t u = t < top ? t : t - mid, bi = u / tpr;
        d->brow = (int)bi;
        row = bi < c->btop ? bi : c->oh - c->bbot + (bi - c->btop);
        col = u % tpr;
    }
    d->oh = row;
    d->ow0 = col * QK_GEMM_NR;
    d->cnt = c->ow - d->ow0 < QK_GEMM_NR ? c->ow - d->ow0 : QK_GEMM_NR;
    d->pix0 = d->oh * c->ow + d->ow0;
}

/* The runs of a tile of cnt pixels starting at output row oh, column ow0. Returns 0 when a run's
 * base would be negative or there are too many runs (the caller then builds the tile lane by
 * lane). */
static int qk__tile_segs(const qk__conv_ctx *c, size_t oh, size_t ow0, size_t cnt, qk_segs *g) {
    const qk_conv2d_shape *s = c->s;
    g->n = 0;
    size_t i = 0, row = oh, col = ow0;
    while (i < cnt) {
        const size_t run = c->ow - col < cnt - i ? c->ow - col : cnt - i;
        const size_t pos = row * s->stride_h * c->wp + col * s->stride_w;
        if (pos < i * s->stride_w) return 0;
        if (g->n > 0 && g->base[g->n - 1] == pos - i * s->stride_w) {
            /* the run continues the previous one in the image (rows with no padding between
             * them: an unpadded 1x1 conv at stride 1): the same lanes from the same base */
            i += run;
            row++;
            col = 0;
            continue;
        }
        if (g->n == QK_SEGS) return 0;
        g->start[g->n] = i;
        g->base[g->n] = pos - i * s->stride_w;
        g->n++;
        i += run;
        row++;
        col = 0;
    }
    return 1;
}

/* 1 when the 8-bit tiles can read the input itself instead of a padded copy: u8 input (no flip),
 * no padding (the padded image would be x byte for byte), plain planes (not the channel-quad
 * image), and a stride the SIMD panel builder has. Saves the copy of the whole input the 1x1
 * convs made (resnet50 at 224: 3.5% of the time; inception_v3 at 299: 3.6%). A run of a tile
 * reads 16 * stride_w bytes from its base, plus the offset of its tap: past the end of its plane
 * (lanes past the tile's pixels, never stored) it reads the next plane, which is harmless, but
 * past the end of the input it must not read at all: those tiles (the last ones of the last
 * image, qk__simd_reads_inside) are built lane by lane by the scalar builder, which reads only
 * the pixels it takes. */
static int qk__conv_in_place(const qk__conv_ctx *c) {
    const qk_conv2d_shape *s = c->s;
    return !c->cq8 && c->koff != NULL && c->xt == QK_DT_U8 && c->hp == s->in_h &&
           c->wp == s->in_w && c->uk->im2col_u8 != NULL && (s->stride_w == 1 || s->stride_w == 2);
}

/* 1 when every read of the SIMD panel builder for the runs g of a tile of the group image at
 * src stays inside the image the tiles read (always, for a padded copy: its slack covers them). */
static int qk__simd_reads_inside(const qk__conv_ctx *c, const uint8_t *src, const qk_segs *g) {
    if (c->in_len == 0) return 1;
    size_t far = 0;
    for (size_t r = 0; r < g->n; r++)
        if (g->base[r] > far) far = g->base[r];
    return (size_t)(src - c->img8) + c->koff[c->w->k - 1] + far + QK_GEMM_NR * c->s->stride_w <=
           c->in_len;
}

static void qk__conv_jobs8(qk__conv_ctx *c, size_t j0, size_t j1) {
    const qk_conv2d_shape *s = c->s;
    const qk_packed_weights *w = c->w;
    const size_t k4 = w->k4, n = w->n, osz = qk__dtype_size(c->ep->out_type);
    const size_t plane = c->hp * c->wp, opix = c->oh * c->ow;
    /* 64-byte aligned: the panel rows are whole zmm loads and stores (a row split across two
     * cache lines costs two accesses; plain malloc gives 16-byte alignment) */
    uint8_t *panels = (uint8_t *)aligned_alloc(64, QK__CONV_TILES * k4 * QK_GEMM_NR);
    if (panels == NULL) {
        atomic_store(&c->status, QK_ERR_NOMEM);
        return;
    }
    int32_t tile[QK_VNNI_MR_MAX * QK_GEMM_NR];
    uint32_t pixsum[QK__CONV_TILES][QK_GEMM_NR];
    const int simd = s->stride_w == 1 || s->stride_w == 2; /* the SIMD panel kernels' strides */
    for (size_t j = j0; j < j1; j++) {
        const size_t bg = j / c->jobs_per_group, tj = j % c->jobs_per_group / c->cparts;
        const size_t part = j % c->jobs_per_group % c->cparts;
        const size_t b = bg / w->groups, g = bg % w->groups;
        const uint8_t *src = c->img8 + (b * s->in_c + g * c->cpg) * plane;
        const size_t t0 = tj * c->tpj;
        const size_t nt = c->tiles - t0 < c->tpj ? c->tiles - t0 : c->tpj;
        size_t pix0[QK__CONV_TILES], cnt[QK__CONV_TILES];
        int brow[QK__CONV_TILES]; /* a direct tile's border row, or -1 */
        qk_segs dsegs[QK__CONV_TILES]; /* dsegs[t].n: 0, or the runs of a direct tile */
        for (size_t t = 0; t < nt; t++) {
            qk__tile d;
            qk__tile_at(c, t0 + t, &d);
            const size_t oh = d.oh, ow0 = d.ow0;
            pix0[t] = d.pix0;
            cnt[t] = d.cnt;
            brow[t] = -1;
            uint8_t *panel = panels + t * k4 * QK_GEMM_NR;
            qk_segs segs;
            dsegs[t].n = 0;
            /* more than 8 pixels: no panel, the kernel reads the image (a border row's tile
             * only its kernel rows rlo .. rhi); fewer: the transposed tile on a panel of every
             * tap, padding included */
            if (c->dk[0] != NULL && cnt[t] > 8 && qk__tile_segs(c, oh, ow0, cnt[t], &segs) &&
                segs.n <= 2) {
                dsegs[t] = segs;
                brow[t] = d.brow;
                continue;
            }
            if (c->cq8 && simd && qk__tile_segs(c, oh, ow0, cnt[t], &segs)) {
                c->uk->im2col_u8x4(src, plane * 4, c->tapoff, w->kh * w->kw, c->cpg / 4, &segs,
                                   s->stride_w, panel);
            } else if (!c->cq8 && simd && c->uk->im2col_u8 != NULL &&
                       qk__tile_segs(c, oh, ow0, cnt[t], &segs) &&
                       qk__simd_reads_inside(c, src, &segs) &&
                       c->uk->im2col_u8(src, c->koff, w->k, k4, &segs, s->stride_w, panel)) {
            } else {
                size_t off[QK_GEMM_NR];
                for (size_t i = 0; i < cnt[t]; i++) {
                    const size_t q = pix0[t] + i;
                    off[i] = (q / c->ow) * s->stride_h * c->wp + (q % c->ow) * s->stride_w;
                    if (c->cq8) off[i] *= 4; /* 4 bytes a pixel */
                }
                qk_im2col_u8__scalar(src, c->koff, w->k, k4, off, cnt[t], panel);
            }
            if (w->any_wzp8) {
                for (size_t i = 0; i < QK_GEMM_NR; i++) pixsum[t][i] = 0;
                for (size_t q = 0; q < k4 / 4; q++)
                    for (size_t i = 0; i < QK_GEMM_NR; i++) {
                        uint32_t v; /* four u8 of one pixel: sum the bytes pairwise */
                        memcpy(&v, panel + q * 64 + 4 * i, 4);
                        v = (v & 0x00FF00FFu) + ((v >> 8) & 0x00FF00FFu);
                        pixsum[t][i] += (v & 0xFFFFu) + (v >> 16);
                    }
            }
        }
        const size_t bmr = w->mr8;
        /* blocks nblk * part / cparts .. nblk * (part + 1) / cparts of the group */
        const size_t ob0 = w->nblk * part / c->cparts * bmr, ob1 = w->nblk * (part + 1) / c->cparts * bmr;
        for (size_t ob = ob0; ob < ob1 && ob < c->ocg; ob += bmr) {
            const size_t mr = c->ocg - ob < bmr ? c->ocg - ob : bmr;
            const size_t o0 = g * c->ocg + ob;
            for (size_t t = 0; t < nt; t++) {
                if (dsegs[t].n != 0) {
                    const qk_segs *d = &dsegs[t];
                    const size_t b1 = d->n > 1 ? d->base[1] : d->base[0];
                    const uint16_t m1 = d->n > 1 ? (uint16_t)(0xFFFFu << d->start[1]) : 0;
                    size_t tap0 = 0, taps = w->kh * w->kw;
                    const uint32_t *corr = c->corr;
                    if (brow[t] >= 0) { /* kernel rows rlo .. rhi only: taps (rlo, 0) .. */
                        tap0 = c->rlo[brow[t]] * w->kw;
                        taps = (c->rhi[brow[t]] + 1) * w->kw - tap0;
                        corr = c->bcorr + (size_t)brow[t] * n;
                    }
                    c->dk[d->n - 1](taps, c->cpg / 4, c->tapoff + tap0, plane * 4,
                                    w->data8 + (g * w->nblk + ob / bmr) * bmr * k4 +
                                        tap0 * c->cpg * bmr,
                                    src + 4 * d->base[0], src + 4 * b1, m1, c->ep, corr, o0,
                                    mr, cnt[t],
                                    (char *)c->y + (qk__yoff(c, b, o0) + pix0[t]) * osz,
                                    opix * osz);
                    continue;
                }
                if (cnt[t] <= 8 && c->fk != NULL) {
                    c->uk->conv_fused_tail(k4 / 4, w->data8 + (g * w->nblk + ob / bmr) * bmr * k4,
                                           bmr, panels + t * k4 * QK_GEMM_NR, c->ep, w->wzp8,
                                           c->corr, w->any_wzp8 ? pixsum[t] : NULL, o0, mr,
                                           cnt[t],
                                           (char *)c->y + (qk__yoff(c, b, o0) + pix0[t]) * osz,
                                           opix * osz);
                    continue;
                }
                if (cnt[t] > 8 && c->fk != NULL) {
                    c->fk(k4 / 4, w->data8 + (g * w->nblk + ob / bmr) * bmr * k4,
                          panels + t * k4 * QK_GEMM_NR, c->ep, w->wzp8, c->corr,
                          w->any_wzp8 ? pixsum[t] : NULL, o0, mr, cnt[t],
                          (char *)c->y + (qk__yoff(c, b, o0) + pix0[t]) * osz, opix * osz);
                    continue;
                }
                (cnt[t] <= 8 ? c->uk8h : c->uk8)(k4 / 4,
                                                 w->data8 + (g * w->nblk + ob / bmr) * bmr * k4,
                                                 panels + t * k4 * QK_GEMM_NR, tile);
                char *yp = (char *)c->y + (qk__yoff(c, b, o0) + pix0[t]) * osz;
                if (c->uk->conv_tile_out(c->ep, w->wzp8, c->corr, w->any_wzp8 ? pixsum[t] : NULL,
                                         o0, cnt[t], tile, mr, yp, opix * osz) != QK_OK)
                    atomic_store(&c->status, QK_ERR_OVERFLOW);
            }
        }
    }
    free(panels);
}

/* The int16 panel of a flat tile whose runs qk__tile_segs cannot give (a run's base before the
 * image: a stride_w larger than the row pitch allows), lane by lane in portable C: lane i is
 * pixel pix0 + i (lanes >= cnt and the k pad row zero), as qk_im2col_s16_segs__scalar builds it. */
static void qk__im2col_s16_lanes(const qk__conv_ctx *c, const int16_t *src, size_t pix0,
                                 size_t cnt, int16_t *panel) {
    const qk_conv2d_shape *s = c->s;
    const size_t k = c->w->k;
    size_t off[QK_GEMM_NR];
    for (size_t i = 0; i < cnt; i++) {
        const size_t q = pix0 + i;
        off[i] = (q / c->ow) * s->stride_h * c->wp + (q % c->ow) * s->stride_w;
    }
    for (size_t kk = 0; kk < k; kk++) {
        int16_t *d = panel + (kk / 2) * 2 * QK_GEMM_NR + (kk & 1);
        size_t i = 0;
        for (; i < cnt; i++) d[2 * i] = src[c->koff[kk] + off[i]];
        for (; i < QK_GEMM_NR; i++) d[2 * i] = 0;
    }
    if (k & 1)
        for (size_t i = 0; i < QK_GEMM_NR; i++) panel[(k / 2) * 2 * QK_GEMM_NR + 1 + 2 * i] = 0;
}

static void qk__conv_jobs(void *vctx, size_t j0, size_t j1) {
    qk__conv_ctx *c = (qk__conv_ctx *)vctx;
    if (c->w->vnni) {
        qk__conv_jobs8(c, j0, j1);
        return;
    }
    const qk_conv2d_shape *s = c->s;
    const qk_packed_weights *w = c->w;
    const size_t k2 = w->k2, osz = qk__dtype_size(c->ep->out_type);
    const size_t plane = c->hp * c->wp;
    int16_t *panels = (int16_t *)malloc(QK__CONV_TILES * k2 * QK_GEMM_NR * sizeof(int16_t));
    if (panels == NULL) {
        atomic_store(&c->status, QK_ERR_NOMEM);
        return;
    }
    int32_t tile[QK_GEMM_MR * QK_GEMM_NR];
    int32_t row[QK_GEMM_MR * QK__ROW_W];
    for (size_t j = j0; j < j1; j++) {
        const size_t bg = j / c->jobs_per_group, tj = j % c->jobs_per_group;
        const size_t b = bg / w->groups, g = bg % w->groups;
        const int16_t *src = c->xp + (b * s->in_c + g * c->cpg) * plane;
        const size_t t0 = tj * c->tpj;
        const size_t nt = c->tiles - t0 < c->tpj ? c->tiles - t0 : c->tpj;
        size_t pix0[QK__CONV_TILES], cnt[QK__CONV_TILES];
        for (size_t t = 0; t < nt; t++) {
            qk__tile d; /* a row tile, or (ctx flat) 16 consecutive pixels across rows */
            qk__tile_at(c, t0 + t, &d);
            cnt[t] = d.cnt;
            pix0[t] = d.pix0;
            int16_t *panel = panels + t * k2 * QK_GEMM_NR;
            qk_segs segs;
            if (d.cnt <= c->ow - d.ow0) /* one output row */
                c->uk->im2col_s16(src, c->koff, w->k, s->stride_w,
                                  d.oh * s->stride_h * c->wp + d.ow0 * s->stride_w, d.cnt, panel);
            else if (qk__tile_segs(c, d.oh, d.ow0, d.cnt, &segs))
                c->uk->im2col_s16_segs(src, c->koff, w->k, s->stride_w, &segs, d.cnt, panel);
            else
                qk__im2col_s16_lanes(c, src, d.pix0, d.cnt, panel);
        }
        for (size_t ob = 0; ob < c->ocg; ob += QK_GEMM_MR) {
            const size_t mr = c->ocg - ob < QK_GEMM_MR ? c->ocg - ob : QK_GEMM_MR;
            const size_t o0 = g * c->ocg + ob;
            /* the sums of the job's tiles side by side (row r of the block at row[r * W]); the
             * output stage runs once per row over each stretch of consecutive pixels (all of
             * the job's with flat tiles) */
            size_t at = 0, first = pix0[0];
            for (size_t t = 0; t < nt; t++) {
                c->uk->gemm_s16(mr, k2 / 2, w->data + o0 * k2, k2, panels + t * k2 * QK_GEMM_NR,
                                tile);
                for (size_t r = 0; r < mr; r++)
                    memcpy(row + r * QK__ROW_W + at, tile + r * QK_GEMM_NR,
                           cnt[t] * sizeof(int32_t));
                at += cnt[t];
                if (t + 1 < nt && pix0[t + 1] == pix0[t] + cnt[t]) continue;
                for (size_t r = 0; r < mr; r++) {
                    char *yp = (char *)c->y + (qk__yoff(c, b, o0 + r) + first) * osz;
                    if (c->uk->epilogue_run(c->ep, o0 + r, row + r * QK__ROW_W, at, yp) != QK_OK)
                        atomic_store(&c->status, QK_ERR_OVERFLOW);
                }
                at = 0;
                if (t + 1 < nt) first = pix0[t + 1];
            }
        }
    }
    free(panels);
}

/* ---- phase 2b: one input channel per group (depthwise) ------------------------------------
 * Each job range widens the input plane it needs into its own zero-bordered padded plane (the
 * interior rows are written exactly, so the border stays 0 = the padding value of x - x_zp),
 * runs the plane kernel and the epilogue: no image-wide pass, and the plane stays in L1/L2. */
/* The 8-bit depthwise jobs: each widens nothing, it copies the input plane into its own u8
 * plane bordered with the u8 zero point (int8 activations + 128: a flip of bit 7). */
static void qk__dw8_jobs(qk__conv_ctx *c, size_t j0, size_t j1) {
    const qk_conv2d_shape *s = c->s;
    const qk_packed_weights *w = c->w;
    const size_t n = w->n, osz = qk__dtype_size(c->ep->out_type), plane = c->hp * c->wp;
    const size_t opix = c->oh * c->ow;
    const uint8_t flip = c->xt == QK_DT_S8 ? 0x80 : 0;
    /* the int32 plane of sums: only without the fused plane kernel */
    int32_t *acc = c->dw8f != NULL ? NULL : (int32_t *)malloc(opix * sizeof(int32_t));
    /* 64-byte aligned (the block copy's stores), a whole number of blocks */
    uint8_t *xp = (uint8_t *)aligned_alloc(64, (plane + QK__SLACK + 63) & ~(size_t)63);
    if ((acc == NULL && c->dw8f == NULL) || xp == NULL) {
        free(acc);
        free(xp);
        atomic_store(&c->status, QK_ERR_NOMEM);
        return;
    }
    memset(xp, c->xz8, plane + QK__SLACK);
    size_t have = (size_t)-1;
    for (size_t j = j0; j < j1; j++) {
        const size_t b = j / n, o = j % n, bc = b * s->in_c + o / c->ocg;
        if (bc != have) {
            const uint8_t *src = (const uint8_t *)c->x + bc * s->in_h * s->in_w;
            if (c->dw8f != NULL)
                c->uk->pad_u8_blocks(&c->pb, src, flip, (uint8_t)c->xz8, xp);
            else
                c->uk->pad_u8(src, s->in_h, s->in_w, flip, (uint8_t)c->xz8, s->pad_top,
                              s->pad_left, c->hp, c->wp, xp);
            have = bc;
        }
        const uint32_t corr = 0u - (uint32_t)c->xz8 * (uint32_t)w->colsum[o];
        if (c->dw8f != NULL) {
            c->dw8f(xp, c->wp, w->dw8 + o * w->kh * w->dwq * 4, w->kh, w->dwq, s->stride_h,
                    s->stride_w, s->dil_h, s->dil_w, c->oh, c->ow, corr, c->ep, o,
                    (uint8_t *)c->y + qk__yoff(c, b, o));
            continue;
        }
        c->dw8(xp, c->wp, w->dw8 + o * w->kh * w->dwq * 4, w->kh, w->dwq, s->stride_h,
               s->stride_w, s->dil_h, s->dil_w, c->oh, c->ow, corr, acc);
        if (c->uk->epilogue_run(c->ep, o, acc, opix, (char *)c->y + qk__yoff(c, b, o) * osz) !=
            QK_OK)
            atomic_store(&c->status, QK_ERR_OVERFLOW);
    }
    free(acc);
    free(xp);
}

static void qk__dw_jobs(void *vctx, size_t j0, size_t j1) {
    qk__conv_ctx *c = (qk__conv_ctx *)vctx;
    if (c->dw8 != NULL) {
        qk__dw8_jobs(c, j0, j1);
        return;
    }
    const qk_conv2d_shape *s = c->s;
    const qk_packed_weights *w = c->w;
    const size_t n = w->n, osz = qk__dtype_size(c->ep->out_type), plane = c->hp * c->wp;
    const size_t opix = c->oh * c->ow;
    /* the output stage in the plane kernel (fp32 to 8 bits), or a pass over its int32 plane */
    const qk_dw_plane_fused_fn fused = qk__epilogue_fused(c->ep) ? c->uk->dw_s16_fused : NULL;
    int32_t *acc = fused != NULL ? NULL : (int32_t *)malloc(opix * sizeof(int32_t));
    int16_t *xp = (int16_t *)calloc(plane + QK__SLACK, sizeof(int16_t));
    if ((acc == NULL && fused == NULL) || xp == NULL) {
        free(acc);
        free(xp);
        atomic_store(&c->status, QK_ERR_NOMEM);
        return;
    }
    size_t have = (size_t)-1; /* the (image, channel) now in xp */
    for (size_t j = j0; j < j1; j++) { /* j = b * n + o */
        const size_t b = j / n, o = j % n, ch = o / c->ocg, bc = b * s->in_c + ch;
        if (bc != have) {
            const uint8_t *src = (const uint8_t *)c->x + bc * s->in_h * s->in_w;
            for (size_t h = 0; h < s->in_h; h++)
                c->uk->widen_s16(src + h * s->in_w, c->xt, c->xzp, s->in_w,
                                 xp + (h + s->pad_top) * c->wp + s->pad_left);
            have = bc;
        }
        if (fused != NULL) {
            fused(xp, c->wp, w->data + o * w->k2, w->kh, w->kw, s->stride_h, s->stride_w,
                  s->dil_h, s->dil_w, c->oh, c->ow, c->ep, o, (uint8_t *)c->y + qk__yoff(c, b, o));
            continue;
        }
        c->uk->dw_s16(xp, c->wp, w->data + o * w->k2, w->kh, w->kw, s->stride_h, s->stride_w,
                      s->dil_h, s->dil_w, c->oh, c->ow, acc);
        if (c->uk->epilogue_run(c->ep, o, acc, opix, (char *)c->y + qk__yoff(c, b, o) * osz) !=
            QK_OK)
            atomic_store(&c->status, QK_ERR_OVERFLOW);
    }
    free(acc);
    free(xp);
}

/* The padded extent in + pad0 + pad1 and the dilated kernel extent dil * (k - 1) + 1, checked
 * (0 when one of them does not fit; see qk__sz_add). */
static int qk__conv_extent(size_t in, size_t pad0, size_t pad1, size_t dil, size_t k, size_t *padded,
                           size_t *eff) {
    return qk__sz_add(in, pad0, padded) && qk__sz_add(*padded, pad1, padded) &&
           qk__sz_mul(dil, k - 1, eff) && qk__sz_add(*eff, 1, eff);
}

qk_status qk_conv2d_out_size(const qk_conv2d_shape *s, const qk_packed_weights *w,
                             size_t *out_h, size_t *out_w) {
    if (s == NULL || w == NULL || w->kind != QK__PACK_CONV || out_h == NULL || out_w == NULL)
        return QK_ERR_ARG;
    if (s->stride_h == 0 || s->stride_w == 0 || s->dil_h == 0 || s->dil_w == 0) return QK_ERR_ARG;
    /* groups * (in_c / groups) <= n * k, which qk_pack_conv2d keeps small */
    if (s->in_c != w->groups * (w->k / (w->kh * w->kw))) return QK_ERR_ARG;
    if (s->in_h == 0 || s->in_w == 0) return QK_ERR_ARG;
    size_t hp, wp, eh, ew;
    if (!qk__conv_extent(s->in_h, s->pad_top, s->pad_bottom, s->dil_h, w->kh, &hp, &eh) ||
        !qk__conv_extent(s->in_w, s->pad_left, s->pad_right, s->dil_w, w->kw, &wp, &ew))
        return QK_ERR_ARG;
    if (eh > hp || ew > wp) return QK_ERR_ARG;
    *out_h = (hp - eh) / s->stride_h + 1;
    *out_w = (wp - ew) / s->stride_w + 1;
    return QK_OK;
}

/* The kernel rows lo .. hi of output row i that read input rows (the others read padding); 0
 * when every kernel row of it reads padding. */
static int qk__krows(const qk__conv_ctx *c, size_t i, size_t *lo, size_t *hi) {
    const qk_conv2d_shape *s = c->s;
    const size_t kh = c->w->kh, top = s->pad_top, end = s->pad_top + s->in_h;
    size_t r = 0;
    while (r < kh && i * s->stride_h + r * s->dil_h < top) r++;
    if (r == kh || i * s->stride_h + r * s->dil_h >= end) return 0;
    size_t h = r;
    while (h + 1 < kh && i * s->stride_h + (h + 1) * s->dil_h < end) h++;
    *lo = r;
    *hi = h;
    return 1;
}

/* Lanes x taps of the 8-bit tiles: a tile of more than 8 pixels costs 16 lanes. */
static size_t qk__tile_cost(size_t cnt, size_t taps) { return (cnt > 8 ? QK_GEMM_NR : cnt) * taps; }

/* Border rows (ctx btop, bbot): the output rows whose windows reach into the top or bottom
 * padding, tiled row by row so that their tiles skip the kernel rows of padding (bcorr adds
 * back what those would have added: the zero point times the rows' weight sums). Used when the
 * direct tiles apply, at most QK__BROWS rows, every row reads some input, and fewer lanes x
 * taps are run than with flat tiles only. Sets c->tiles. Returns 0 when out of memory. */
static int qk__conv_border_rows(qk__conv_ctx *c) {
    const qk_packed_weights *w = c->w;
    const size_t kh = w->kh, taps = kh * w->kw, tpr = c->tiles_per_row, opix = c->oh * c->ow;
    size_t top = 0, bot = 0, lo, hi, rl[QK__BROWS], rh[QK__BROWS];
    for (; top < c->oh; top++) {
        if (!qk__krows(c, top, &lo, &hi)) return 1;
        if (lo == 0) break;
        if (top == QK__BROWS) return 1;
        c->rlo[top] = lo;
        c->rhi[top] = hi;
    }
    for (; bot < c->oh - top; bot++) {
        if (!qk__krows(c, c->oh - 1 - bot, &lo, &hi)) return 1;
        if (hi == kh - 1) break;
        if (top + bot == QK__BROWS) return 1;
        rl[bot] = lo;
        rh[bot] = hi;
    }
    if (top + bot == 0) return 1;
    for (size_t j = 0; j < bot; j++) { /* border row top + j is output row oh - bot + j */
        c->rlo[top + j] = rl[bot - 1 - j];
        c->rhi[top + j] = rh[bot - 1 - j];
    }
    size_t flat = opix / QK_GEMM_NR * QK_GEMM_NR * taps + qk__tile_cost(opix % QK_GEMM_NR, taps);
    const size_t mid = (c->oh - top - bot) * c->ow;
    size_t cost = mid / QK_GEMM_NR * QK_GEMM_NR * taps + qk__tile_cost(mid % QK_GEMM_NR, taps);
    for (size_t i = 0; i < top + bot; i++) {
        const size_t rt = (c->rhi[i] - c->rlo[i] + 1) * w->kw;
        cost += c->ow / QK_GEMM_NR * QK_GEMM_NR * rt;
        if (c->ow % QK_GEMM_NR) /* a tail of at most 8 pixels runs every tap */
            cost += c->ow % QK_GEMM_NR > 8 ? QK_GEMM_NR * rt : qk__tile_cost(c->ow % QK_GEMM_NR, taps);
    }
    if (cost >= flat) return 1;
    c->bcorr = (uint32_t *)malloc((top + bot) * w->n * sizeof(uint32_t));
    if (c->bcorr == NULL) return 0;
    for (size_t i = 0; i < top + bot; i++)
        for (size_t o = 0; o < w->n; o++) {
            uint32_t v = c->corr[o];
            for (size_t r = 0; r < kh; r++)
                if (r < c->rlo[i] || r > c->rhi[i])
                    v += (uint32_t)c->xz8 * (uint32_t)w->rowsum8[o * kh + r];
            c->bcorr[i * w->n + o] = v;
        }
    c->btop = top;
    c->bbot = bot;
    c->tiles = (top + bot) * tpr + (mid + QK_GEMM_NR - 1) / QK_GEMM_NR;
    return 1;
}

/* Tiles a job: QK__CONV_TILES, or fewer so that several threads get about 8 jobs each (the
 * jobs are claimed dynamically; the split never changes a result). */
static void qk__conv_split(qk__conv_ctx *c, int threads) {
    const size_t t = threads < 1 ? 1 : (size_t)threads;
    const size_t units = c->s->batch * c->w->groups * c->tiles;
    c->tpj = QK__CONV_TILES;
    while (t > 1 && c->tpj > 1 && units / c->tpj < 8 * t) c->tpj--;
    c->jobs_per_group = (c->tiles + c->tpj - 1) / c->tpj;
    c->cparts = 1;
    /* tiles read straight from the image need no panel: with few tiles a thread, a job then
     * takes a part of the output channels (about 16 jobs a thread; panels of the other tiles
     * are built by each part) */
    if (t > 1 && c->dk[0] != NULL) {
        const size_t jobs = c->s->batch * c->w->groups * c->jobs_per_group;
        while (jobs * c->cparts < 16 * t && c->cparts < c->w->nblk) c->cparts++;
    }
    c->jobs_per_group *= c->cparts;
}

/* ---- sparse windows: the direct path ------------------------------------------------------
 * Used when the padded image would be much larger than the work (qk__conv_sparse): no padded
 * copy at all. A job computes one output row of one (image, output channel) at a time: for
 * output row i only kernel rows r0 .. r1 - 1 read input rows, for column j only kernel columns
 * q0 .. q1 - 1 (both ranges contiguous, found in O(1)); the other taps read padding and add
 * exactly 0. Sums wrap modulo 2^32 like every other path (exact once the bound holds); the same
 * epilogue as the unfused paths writes the row. Portable C only: the same bits on every path.
 * Memory: ow int32 sums and k int32 weights a job. */

/* The kernel taps r in [*r0, *r1) of the window starting at padded coordinate `start` (dilation
 * d, k taps) that read the input [pad, pad + n); empty when none does. No product here can
 * exceed the padded extent (checked by qk_conv2d_out_size). */
static void qk__live_taps(size_t start, size_t pad, size_t n, size_t d, size_t k, size_t *r0,
                          size_t *r1) {
    size_t lo = 0, hi = 0;
    if (start < pad + n) {
        lo = start >= pad ? 0 : (pad - start + d - 1) / d;
        hi = (pad + n - 1 - start) / d + 1;
    }
    if (hi > k) hi = k;
    if (lo > hi) lo = hi;
    *r0 = lo;
    *r1 = hi;
}

/* w[o] - w_zp[o] of output channel o in OIHW order (k values), from whichever layout the
 * weights were packed in. */
static void qk__conv_weights(const qk_packed_weights *w, size_t o, int32_t *d) {
    if (!w->vnni) {
        for (size_t i = 0; i < w->k; i++) d[i] = w->data[o * w->k2 + i];
        return;
    }
    const size_t ocg = w->n / w->groups, g = o / ocg, lo = o % ocg, mr = w->mr8;
    const size_t taps = w->kh * w->kw, cpg = w->k / taps;
    const int8_t *blk = w->data8 + (g * w->nblk + lo / mr) * w->k4 * mr;
    for (size_t i = 0; i < w->k; i++) {
        const size_t kk = w->cq8 ? (i % taps) * cpg + i / taps : i;
        d[i] = (int32_t)blk[(kk / 4) * 4 * mr + (lo % mr) * 4 + (kk & 3)] - w->wzp8[o];
    }
}

static void qk__direct_jobs(void *vctx, size_t j0, size_t j1) {
    qk__conv_ctx *c = (qk__conv_ctx *)vctx;
    const qk_conv2d_shape *s = c->s;
    const qk_packed_weights *w = c->w;
    const size_t n = w->n, kh = w->kh, kw = w->kw, osz = qk__dtype_size(c->ep->out_type);
    const size_t inpix = s->in_h * s->in_w;
    int32_t *wv = (int32_t *)malloc(w->k * sizeof(int32_t));
    uint32_t *acc = (uint32_t *)malloc(c->ow * sizeof(uint32_t));
    if (wv == NULL || acc == NULL) {
        free(wv);
        free(acc);
        atomic_store(&c->status, QK_ERR_NOMEM);
        return;
    }
    size_t have = (size_t)-1;
    for (size_t j = j0; j < j1; j++) { /* j = b * n + o */
        const size_t b = j / n, o = j % n;
        if (o != have) qk__conv_weights(w, o, wv);
        have = o;
        const uint8_t *xg = (const uint8_t *)c->x + (b * s->in_c + o / c->ocg * c->cpg) * inpix;
        char *yp = (char *)c->y + qk__yoff(c, b, o) * osz;
        for (size_t i = 0; i < c->oh; i++) {
            size_t r0, r1;
            qk__live_taps(i * s->stride_h, s->pad_top, s->in_h, s->dil_h, kh, &r0, &r1);
            for (size_t jj = 0; jj < c->ow; jj++) {
                size_t q0, q1;
                qk__live_taps(jj * s->stride_w, s->pad_left, s->in_w, s->dil_w, kw, &q0, &q1);
                uint32_t sum = 0;
                for (size_t ch = 0; ch < c->cpg && q0 < q1; ch++)
                    for (size_t r = r0; r < r1; r++) {
                        const size_t row = i * s->stride_h + r * s->dil_h - s->pad_top;
                        const size_t col = jj * s->stride_w - s->pad_left; /* + q * dil_w */
                        const uint8_t *xr = xg + ch * inpix + row * s->in_w;
                        const int32_t *wr = wv + (ch * kh + r) * kw;
                        for (size_t q = q0; q < q1; q++) {
                            const uint8_t raw = xr[col + q * s->dil_w];
                            const int32_t xv = c->xt == QK_DT_U8 ? (int32_t)raw : (int32_t)(int8_t)raw;
                            sum += (uint32_t)(xv - c->xzp) * (uint32_t)wr[q];
                        }
                    }
                acc[jj] = sum;
            }
            if (c->uk->epilogue_run(c->ep, o, (const int32_t *)acc, c->ow, yp + i * c->ow * osz) !=
                QK_OK)
                atomic_store(&c->status, QK_ERR_OVERFLOW);
        }
    }
    free(wv);
    free(acc);
}

/* 1 when the padded copy the dense paths make (batch x in_c planes of hp x wp) would hold more
 * than 4 x (input + output) elements + 64K, or cannot be sized at all: the windows are then
 * mostly padding (huge padding, stride or dilation) and the direct path runs instead, so that
 * memory follows the work and never the padding. Normal layers (padding of a few pixels) stay
 * far below the limit. */
static int qk__conv_sparse(const qk_conv2d_shape *s, size_t hp, size_t wp, size_t in_elems,
                           size_t out_elems) {
    size_t plane, img, lim, bytes;
    if (!qk__sz_mul(hp, wp, &plane) || !qk__sz_mul(plane + QK__SLACK + 64, sizeof(int16_t), &bytes) ||
        !qk__sz_mul4(s->batch, s->in_c, plane, 1, &img) ||
        !qk__sz_mul(img + QK__SLACK, sizeof(int16_t), &bytes))
        return 1;
    if (!qk__sz_add(in_elems, out_elems, &lim) || !qk__sz_mul(lim, 4, &lim) ||
        !qk__sz_add(lim, (size_t)1 << 16, &lim))
        return 0; /* the arrays themselves are that large: the copy is not what dominates */
    return img > lim;
}

/* 1 when the 8-bit tiles are 16 consecutive NCHW pixels across output rows (ctx flat): rows of
 * 8 pixels or more (a tile then spans at most 3 runs), or with a channel-quad image (its panel
 * builder takes 4 runs) rows of 5 to 7 (at most 4 runs). Row tiles would run a 7x7 output
 * (layer4 of a resnet at 224) as 7 tiles of 7 pixels on the tail kernel, in 2 jobs at 1 thread,
 * each reading all of the layer's weights (2.4 MB at 512 -> 512); flat, it is 3 tiles of 16 and
 * one of 1 in one job. Measured (1 thread, CPU time, shared machine): resnet18's three 3x3
 * 512 -> 512 layers at batch 1, in the model, 2.03 -> 1.93 ms (alone, with the weights warm in
 * L3, the row tiles were 2-4% faster); at batch 8 see qk__conv_path. */
static int qk__conv_flat(const qk_packed_weights *w, size_t ow) {
    return ow >= 8 || (w->cq8 && ow >= 5);
}

/* 1 when the int16 tiles are 16 consecutive NCHW pixels across output rows (ctx flat): rows of
 * 5 pixels or more (a tile then spans at most 4 runs, QK_SEGS). A row tile of the 6 x 16 kernel
 * costs 16 lanes whatever its pixels, so rows that 16 does not divide waste lanes: 7 of 16 at
 * 7x7 (7 tiles of 7 pixels; flat: 4 tiles), 14 of 16 at 14x14 (14 tiles; flat 13), 28 of 32 at
 * 28x28, 8x8 in 8 tiles (flat 4), 17x17 in 34 (flat 19). The tiles compute each output the same
 * way (the same products summed in the same order), so the bits do not change. */
static int qk__conv_flat16(size_t ow) { return ow >= 5; }

/* ---- the choice of algorithm ---------------------------------------------------------------
 * A 1x1 convolution without padding is a GEMM over the pixels: on small images (at most
 * QK__GEMM_MAX_PIXELS output pixels each), with at least QK__GEMM_MIN_K input channels (or output
 * rows under QK__WIDE_BELOW wide), it runs through qk_linear on the (strided) pixels of the
 * whole batch as NHWC rows, on weights packed for it (w->lin). Measured at batch 32 when this
 * choice was made in the PyTorch bridge: 96 -> 24 channels on 4x4, 134 -> 45 us; 16 -> 64 on
 * 8x8 loses, 61 -> 95 us. Measured again in C (time of the GEMM path / the tiles, 1 thread,
 * medians of 4 interleaved rounds on a shared machine): 64 -> 128 on 4x4 b32 0.29, 8x8 b32 0.62,
 * 8x8 b1 0.99, 14x14 b1 1.11, 28x28 b8 1.28; 24 -> 96 on 8x8 b32 0.77, 14x14 b8 1.32, 56x56 b1
 * 1.50; 96 -> 24 on 8x8 b32 0.42, 56x56 b1 1.24: the tiles win once an image has a few hundred
 * pixels (they tile each image well, while the GEMM pays for the NHWC copies).
 * A batch of small images (output rows under QK__WIDE_BELOW wide) runs as one wide image, the
 * images side by side: the tiles fill along a row, and a tiny image leaves them mostly empty.
 * Except on the 8-bit path when the rows can be flat tiles (qk__conv_flat: a channel-quad image,
 * rows of 5 to 7): the images then stay apart, flat tiles of 16 pixels fill each image to its
 * last tile, while a wide image would run the zero-point columns between the images too (7 of
 * every 9 columns useful at 3x3 / pad 1) and copy the input and the output once more. Measured
 * (1 thread, medians, CPU time, shared machine; wide -> per image): 3x3 512 -> 512 on 7x7 b8
 * 5.27 -> 4.67 ms (175 -> 198 GMAC/s), stride 2 256 -> 512 from 14x14 b8 2.68 -> 2.41 ms,
 * 64 -> 64 on 6x6 b8 79 -> 64 us, on 5x5 b8 62 -> 50 us.
 * Depthwise convs stay per image: their kernel works plane by plane and, since it got its own
 * 8-bit plane kernel, the wide planes cost more than they save (MobileNetV2-tiny at batch 32:
 * 0.94 -> 0.83 ms without).
 * Both give the same accumulators as the tiles, and the same output stage gives the same
 * outputs. So does the int16 kernels' 1x1 path (conv2d_1x1.c: unpadded, stride 1, one group, the
 * fp32 output stage to 8 bits, weights not packed for the 8-bit kernels), taken past the GEMM's
 * rule: flat tiles of 16 pixels, panels read from the input, the output stage in registers. */
enum { QK__GEMM_MIN_K = 24, QK__GEMM_MAX_PIXELS = 64, QK__WIDE_BELOW = 8 };
typedef enum { QK__CONV_TILED, QK__CONV_GEMM, QK__CONV_WIDE, QK__CONV_1X1 } qk__conv_algo;

static qk__conv_algo qk__conv_path(const qk_conv2d_shape *s, const qk_packed_weights *w,
                                   const qk_epilogue *ep, size_t oh, size_t ow, int sparse) {
    if (sparse) return QK__CONV_TILED; /* the tiled driver's direct path: see qk__conv_sparse */
    if (w->lin != NULL && s->pad_top == 0 && s->pad_left == 0 && s->pad_bottom == 0 &&
        s->pad_right == 0 && oh * ow <= QK__GEMM_MAX_PIXELS &&
        (w->k >= QK__GEMM_MIN_K || ow < QK__WIDE_BELOW))
        return QK__CONV_GEMM;
    if (qk__conv_1x1_fits(s, w, ep)) return QK__CONV_1X1; /* conv2d_1x1.c (int16 kernels) */
    const size_t slot = s->in_w + s->pad_left + s->pad_right, ew = s->dil_w * (w->kw - 1) + 1;
    const int depthwise = w->groups > 1 && s->in_c == w->groups;
    if (s->batch >= 2 && !depthwise && ow < QK__WIDE_BELOW && !(w->vnni && qk__conv_flat(w, ow)) &&
        slot % s->stride_w == 0 &&
        ew >= s->stride_w)
        return QK__CONV_WIDE;
    return QK__CONV_TILED;
}

static qk_status qk__conv2d_tiles(const qk_conv2d_shape *s, const qk_packed_weights *w,
                                  const void *x, qk_dtype x_type, int32_t x_zero_point,
                                  const qk_epilogue *ep, void *y, size_t ys, int threads,
                                  size_t oh, size_t ow, int sparse);
static qk_status qk__conv2d_run(const qk_conv2d_shape *s, const qk_packed_weights *w,
                                const void *x, qk_dtype x_type, int32_t x_zero_point,
                                const qk_epilogue *ep, const qk_conv_add *add, void *y,
                                size_t y_image_stride, int threads);

/* dst (cols x rows, contiguous) = the transpose of a rows x cols matrix of T, element (r, c) at
 * src[r * sp + c * cstep]; in tiles of 16 x 16 (both sides stay in the cache). */
#define QK__TRANSPOSE(NAME, T)                                                                  \
    static void NAME(const T *src, size_t rows, size_t cols, size_t sp, size_t cstep, T *dst) { \
        enum { B = 16 };                                                                        \
        for (size_t r0 = 0; r0 < rows; r0 += B)                                                 \
            for (size_t c0 = 0; c0 < cols; c0 += B) {                                           \
                const size_t r1 = r0 + B < rows ? r0 + B : rows;                                \
                const size_t c1 = c0 + B < cols ? c0 + B : cols;                                \
                for (size_t c = c0; c < c1; c++)                                                \
                    for (size_t r = r0; r < r1; r++) dst[c * rows + r] = src[r * sp + c * cstep]; \
            }                                                                                   \
    }
QK__TRANSPOSE(qk__transpose_u32, uint32_t) /* (the bytes: the transpose_u8 micro-kernel) */

/* 1x1, no padding: y[b, o, p] = linear(rows)[b * P + p, o] with rows[b * P + p, c] =
 * x[b, c, pixel p of the stride grid], P = oh * ow. */
static qk_status qk__conv2d_gemm(const qk_conv2d_shape *s, const qk_packed_weights *w,
                                 const void *x, qk_dtype x_type, int32_t x_zero_point,
                                 const qk_epilogue *ep, void *y, size_t ys, int threads) {
    const size_t oh = (s->in_h - 1) / s->stride_h + 1, ow = (s->in_w - 1) / s->stride_w + 1;
    const size_t P = oh * ow, c = s->in_c, n = w->n, osz = qk__dtype_size(ep->out_type);
    const size_t m = s->batch * P;
    const qk__ukernels *uk = qk__uk();
    const int strided = s->stride_h != 1 || s->stride_w != 1;
    /* the NHWC rows, the linear output, and (strided) one image's c x P grid of pixels */
    const size_t xb = (m * c + 63) & ~(size_t)63; /* the int32 outputs after it stay aligned */
    uint8_t *rows = (uint8_t *)malloc(xb + m * n * osz + (strided ? c * P : 0));
    if (rows == NULL) return QK_ERR_NOMEM;
    uint8_t *yr = rows + xb, *grid = yr + m * n * osz;
    for (size_t b = 0; b < s->batch; b++) {
        const uint8_t *xb = (const uint8_t *)x + b * c * s->in_h * s->in_w;
        if (strided) { /* the pixels of the stride grid, each channel's contiguous */
            for (size_t ch = 0; ch < c; ch++)
                for (size_t i = 0; i < oh; i++) {
                    const uint8_t *sr = xb + (ch * s->in_h + i * s->stride_h) * s->in_w;
                    uint8_t *dr = grid + ch * P + i * ow;
                    for (size_t j = 0; j < ow; j++) dr[j] = sr[j * s->stride_w];
                }
            xb = grid;
        }
        uk->transpose_u8(xb, c, P, P, rows + b * P * c); /* the c x P matrix to P x c */
    }
    const qk_status st = qk_linear(w->lin, rows, x_type, m, x_zero_point, ep, yr, threads);
    for (size_t b = 0; b < s->batch && st == QK_OK; b++) {
        if (osz == 1)
            uk->transpose_u8(yr + b * P * n, P, n, n, (uint8_t *)y + b * ys);
        else
            qk__transpose_u32((const uint32_t *)yr + b * P * n, P, n, n, 1, (uint32_t *)y + b * ys);
    }
    free(rows);
    return st;
}

/* A batch of small images as one wide image: image i goes to columns [i slot + pad_left,
 * i slot + pad_left + in_w) of a (1, C, H, batch * slot) image whose other columns hold the
 * input zero point (slot = in_w + pad_left + pad_right: each image keeps its own left / right
 * padding, which contributes 0 as padding does); the top / bottom padding stays the conv's.
 * Every output then sums exactly the products it sums in its own image. Image i's outputs are
 * the wide output's columns [i slot / stride_w, i slot / stride_w + ow); an extra
 * ew - stride_w zero-point columns on the right make the wide output exactly
 * batch * slot / stride_w columns. */
static qk_status qk__conv2d_wide(const qk_conv2d_shape *s, const qk_packed_weights *w,
                                 const void *x, qk_dtype x_type, int32_t x_zero_point,
                                 const qk_epilogue *ep, void *y, size_t ys, int threads,
                                 size_t oh, size_t ow) {
    const size_t nb = s->batch, c = s->in_c, h = s->in_h, iw = s->in_w, n = w->n;
    const size_t slot = iw + s->pad_left + s->pad_right, per = slot / s->stride_w;
    const size_t osz = qk__dtype_size(ep->out_type), ew = s->dil_w * (w->kw - 1) + 1;
    qk_conv2d_shape ws = *s;
    ws.batch = 1;
    ws.in_w = nb * slot;
    ws.pad_left = 0;
    ws.pad_right = ew - s->stride_w;
    size_t woh = 0, wow = 0;
    qk_status st = qk_conv2d_out_size(&ws, w, &woh, &wow);
    if (st != QK_OK || woh != oh || wow != nb * per) return QK_ERR_ARG; /* cannot happen */
    const size_t xb = (c * h * nb * slot + 63) & ~(size_t)63; /* int32 outputs stay aligned */
    char *xw = (char *)malloc(xb + n * oh * wow * osz);
    if (xw == NULL) return QK_ERR_NOMEM;
    char *yw = xw + xb;
    memset(xw, (int)(uint8_t)x_zero_point, c * h * nb * slot);
    for (size_t ch = 0; ch < c; ch++)
        for (size_t r = 0; r < h; r++)
            for (size_t i = 0; i < nb; i++)
                memcpy(xw + (ch * h + r) * nb * slot + i * slot + s->pad_left,
                       (const char *)x + ((i * c + ch) * h + r) * iw, iw);
    st = qk__conv2d_tiles(&ws, w, xw, x_type, x_zero_point, ep, yw, n * oh * wow, threads, oh, wow, 0);
    if (st == QK_OK)
        for (size_t i = 0; i < nb; i++)
            for (size_t o = 0; o < n; o++)
                for (size_t r = 0; r < oh; r++)
                    memcpy((char *)y + (i * ys + (o * oh + r) * ow) * osz,
                           yw + ((o * oh + r) * wow + i * per) * osz, ow * osz);
    free(xw);
    return st;
}

qk_status qk_conv2d(const qk_conv2d_shape *s, const qk_packed_weights *w, const void *x,
                    qk_dtype x_type, int32_t x_zero_point, const qk_epilogue *ep, void *y,
                    int threads) {
    return qk__conv2d_run(s, w, x, x_type, x_zero_point, ep, NULL, y, 0, threads);
}

qk_status qk_conv2d_strided(const qk_conv2d_shape *s, const qk_packed_weights *w, const void *x,
                            qk_dtype x_type, int32_t x_zero_point, const qk_epilogue *ep, void *y,
                            size_t y_image_stride, int threads) {
    return qk__conv2d_run(s, w, x, x_type, x_zero_point, ep, NULL, y, y_image_stride, threads);
}

qk_status qk_conv2d_add(const qk_conv2d_shape *s, const qk_packed_weights *w, const void *x,
                        qk_dtype x_type, int32_t x_zero_point, const qk_epilogue *ep,
                        const qk_conv_add *add, void *y, int threads) {
    return qk__conv2d_run(s, w, x, x_type, x_zero_point, ep, add, y, 0, threads);
}

/* 1 when the bytes [a, a + n) and [b, b + n) share one (compared as integers: they may be
 * unrelated objects) */
static int qk__overlap(const void *a, const void *b, size_t n) {
    const uintptr_t x = (uintptr_t)a, z = (uintptr_t)b;
    return n > 0 && x < z + n && z < x + n;
}

/* ---- the residual add of qk_conv2d_add -----------------------------------------------------
 * Run once over the output the conv has just written (at batch 1 still in L2), inside the one
 * C call: qk_qadd's own rows (elementwise/elementwise.h), in chunks of QK__ADD_CHUNK bytes
 * spread over the threads. Measured (1 thread, CPU time, medians, shared machine; the add's
 * cost over the conv alone, vs conv then qops.qadd): also tried, the add on each block of 12 /
 * 16 channels x up to 64 pixels right after a job wrote it (the tile in L1) was never faster
 * and often slower: the add is bound by its arithmetic (about 16 vector operations for 16
 * elements), not by memory, and reading the residual a 64-byte line per channel plane (planes
 * kilobytes apart) defeats the hardware's stream prefetch. 1x1 64 -> 256 at 56x56: batch 1
 * 208 us a block / 139 us one pass (145 us unfused), batch 8 4644 / 1147 us (1195 us);
 * 3x3 64 -> 64 at 56x56 batch 8: 1259 / 249 us (311 us). */
enum { QK__ADD_CHUNK = 1 << 16 };

typedef struct {
    const qk__qadd_p *p;
    const uint8_t *other;
    uint8_t *y;
    size_t n;
} qk__add_ctx;

static void qk__add_jobs(void *vctx, size_t j0, size_t j1) {
    const qk__add_ctx *c = (const qk__add_ctx *)vctx;
    for (size_t j = j0; j < j1; j++) {
        const size_t at = j * QK__ADD_CHUNK, cnt = c->n - at < QK__ADD_CHUNK ? c->n - at : QK__ADD_CHUNK;
        qk__qadd_rows(c->p, c->y + at, c->other + at, 1, cnt, 0, c->y + at);
    }
}

/* the three public entries: qk_conv2d (add NULL, images contiguous), qk_conv2d_strided (images
 * y_image_stride elements apart), qk_conv2d_add (the add over a contiguous output) */
static qk_status qk__conv2d_run(const qk_conv2d_shape *s, const qk_packed_weights *w,
                                const void *x, qk_dtype x_type, int32_t x_zero_point,
                                const qk_epilogue *ep, const qk_conv_add *add, void *y,
                                size_t y_image_stride, int threads) {
    size_t oh = 0, ow = 0;
    qk_status st = qk_conv2d_out_size(s, w, &oh, &ow);
    if (st != QK_OK) return st;
    st = qk__call_check(w, x_type, x_zero_point, ep);
    if (st != QK_OK) return st;
    /* the caller's arrays (input, output) must be addressable, and so must the int32 plane of
     * sums the unfused paths keep a job */
    size_t in_elems, out_elems, bytes;
    if (!qk__sz_mul4(s->batch, s->in_c, s->in_h, s->in_w, &in_elems) ||
        !qk__sz_mul4(s->batch, w->n, oh, ow, &out_elems) ||
        !qk__sz_mul(out_elems, qk__dtype_size(ep->out_type), &bytes) ||
        !qk__sz_mul4(oh, ow, sizeof(int32_t), 1, &bytes))
        return QK_ERR_ARG;
    qk__qadd_p addp;
    if (add != NULL) { /* the add's parameters, as qk_qadd checks them */
        if (ep->out_type != QK_DT_U8 && ep->out_type != QK_DT_S8) return QK_ERR_ARG;
        st = qk__qadd_prepare(&addp, ep->out_type, add->conv_scale, ep->zero_point,
                              add->other_scale, add->other_zp, add->out_scale, add->out_zp,
                              add->relu);
        if (st != QK_OK) return st;
    }
    /* images y_image_stride elements apart (0: n * oh * ow, contiguous); the last image ends
     * at (batch - 1) * stride + n * oh * ow, which must be addressable too */
    const size_t img_out = out_elems / (s->batch ? s->batch : 1);
    size_t ys = y_image_stride ? y_image_stride : img_out, last;
    if (ys < img_out || (s->batch > 0 && (!qk__sz_mul(s->batch - 1, ys, &last) ||
                                          !qk__sz_add(last, img_out, &last) ||
                                          !qk__sz_mul(last, qk__dtype_size(ep->out_type), &last))))
        return QK_ERR_ARG;
    if (add != NULL && ys != img_out) return QK_ERR_ARG; /* the add reads y as one block */
    if (s->batch == 0) return QK_OK;
    if (x == NULL || y == NULL) return QK_ERR_ARG;
    if (add != NULL && (add->other == NULL || qk__overlap(add->other, y, out_elems)))
        return QK_ERR_ARG;
    const int sparse = qk__conv_sparse(s, s->in_h + s->pad_top + s->pad_bottom,
                                       s->in_w + s->pad_left + s->pad_right, in_elems, out_elems);
    switch (qk__conv_path(s, w, ep, oh, ow, sparse)) { /* the algorithm: see the top of the file */
        case QK__CONV_1X1:
            st = qk__conv2d_1x1(s, w, x, x_type, x_zero_point, ep, y, ys, threads);
            break;
        case QK__CONV_GEMM:
            st = qk__conv2d_gemm(s, w, x, x_type, x_zero_point, ep, y, ys, threads);
            break;
        case QK__CONV_WIDE:
            st = qk__conv2d_wide(s, w, x, x_type, x_zero_point, ep, y, ys, threads, oh, ow);
            break;
        default:
            st = qk__conv2d_tiles(s, w, x, x_type, x_zero_point, ep, y, ys, threads, oh, ow,
                                  sparse);
    }
    if (st == QK_OK && add != NULL) {
        qk__add_ctx ac = {&addp, (const uint8_t *)add->other, (uint8_t *)y, out_elems};
        qk__parallel((out_elems + QK__ADD_CHUNK - 1) / QK__ADD_CHUNK, threads, qk__add_jobs, &ac);
    }
    return st;
}

static qk_status qk__conv2d_tiles(const qk_conv2d_shape *s, const qk_packed_weights *w,
                                  const void *x, qk_dtype x_type, int32_t x_zero_point,
                                  const qk_epilogue *ep, void *y, size_t ys, int threads,
                                  size_t oh, size_t ow, int sparse) {
    qk__conv_ctx c;
    memset(&c, 0, sizeof c);
    c.s = s;
    c.w = w;
    c.x = x;
    c.xt = x_type;
    c.xzp = x_zero_point;
    c.ep = ep;
    c.y = y;
    c.ys = ys;
    c.hp = s->in_h + s->pad_top + s->pad_bottom;
    c.wp = s->in_w + s->pad_left + s->pad_right;
    c.oh = oh;
    c.ow = ow;
    c.cpg = s->in_c / w->groups;
    c.ocg = w->n / w->groups;
    c.uk = qk__uk();
    atomic_init(&c.status, QK_OK);
    if (sparse) {
        c.cpg = s->in_c / w->groups;
        qk__parallel(s->batch * w->n, threads, qk__direct_jobs, &c);
        return (qk_status)atomic_load(&c.status);
    }
    const size_t img = s->batch * s->in_c * c.hp * c.wp; /* fits: qk__conv_sparse */
    if (c.cpg > 1) {
        const size_t taps = w->kh * w->kw;
        c.koff = (size_t *)malloc(w->k * sizeof(size_t));
        if (c.koff == NULL) return QK_ERR_NOMEM;
        size_t kk = 0; /* tap kk = (channel, row, column), no divisions (k can be thousands) */
        if (w->cq8) { /* k = (row, column, channel); channel ch at byte 4 * pixel + ch % 4 of
                       * the plane of its quad */
            c.cq8 = 1;
            c.tapoff = (size_t *)malloc(taps * sizeof(size_t));
            if (c.tapoff == NULL) {
                free(c.koff);
                return QK_ERR_NOMEM;
            }
            for (size_t r = 0; r < w->kh; r++)
                for (size_t q = 0; q < w->kw; q++) {
                    c.tapoff[r * w->kw + q] = r * s->dil_h * c.wp + q * s->dil_w;
                    for (size_t ch = 0; ch < c.cpg; ch++)
                        c.koff[kk++] = ((ch / 4) * c.hp * c.wp + c.tapoff[r * w->kw + q]) * 4 +
                                       ch % 4;
                }
        } else {
            for (size_t ch = 0; ch < w->k / taps; ch++)
                for (size_t r = 0; r < w->kh; r++)
                    for (size_t q = 0; q < w->kw; q++)
                        c.koff[kk++] = ch * c.hp * c.wp + r * s->dil_h * c.wp + q * s->dil_w;
        }
    }
    if (w->vnni) {
        c.xz8 = x_zero_point + (x_type == QK_DT_S8 ? 128 : 0);
        const int m16 = w->mr8 == 16;
        c.uk8 = c.uk->gemm_u8[m16][0];
        c.uk8h = c.uk->gemm_u8[m16][1];
        c.corr = qk__zp_correction(w, c.xz8);
        if (qk__epilogue_fused(ep)) c.fk = c.uk->conv_fused[m16];
        if (c.fk != NULL && c.cq8 && s->stride_w == 1 && !w->any_wzp8) {
            c.dk[0] = c.uk->conv_direct[m16][0];
            c.dk[1] = c.uk->conv_direct[m16][1];
            if (c.dk[1] == NULL) c.dk[0] = NULL;
        }
        c.tiles_per_row = (ow + QK_GEMM_NR - 1) / QK_GEMM_NR;
        c.tiles = oh * c.tiles_per_row;
        if (qk__conv_flat(w, ow)) {
            c.flat = 1;
            c.tiles = (oh * ow + QK_GEMM_NR - 1) / QK_GEMM_NR;
        }
        const int in_place = qk__conv_in_place(&c);
        c.xp8 = in_place ? NULL : (uint8_t *)malloc(img + QK__SLACK);
        if (c.corr == NULL || (!in_place && c.xp8 == NULL)) {
            free(c.corr);
            free(c.xp8);
            free(c.koff);
            free(c.tapoff);
            return QK_ERR_NOMEM;
        }
        if (in_place) {
            c.img8 = (const uint8_t *)x;
            c.in_len = img;
        } else {
            memset(c.xp8 + img, 0, QK__SLACK);
            if (c.cq8)
                qk__parallel(s->batch * s->in_c / 4, threads, qk__pad_quads8, &c);
            else
                qk__parallel(s->batch * s->in_c, threads, qk__pad_planes8, &c);
            c.img8 = c.xp8;
        }
        if (c.flat && c.dk[0] != NULL && !qk__conv_border_rows(&c)) {
            free(c.corr);
            free(c.xp8);
            free(c.koff);
            free(c.tapoff);
            return QK_ERR_NOMEM;
        }
        qk__conv_split(&c, threads);
        qk__parallel(s->batch * w->groups * c.jobs_per_group, threads, qk__conv_jobs, &c);
        free(c.bcorr);
        free(c.corr);
        free(c.xp8);
        free(c.koff);
        free(c.tapoff);
        return (qk_status)atomic_load(&c.status);
    }
    if (c.cpg == 1) {
        if (w->dw8 != NULL && qk__dw8_fits(w->dwq, s->stride_w, s->dil_w) &&
            w->kh * w->dwq <= 64) {
            c.dw8 = c.uk->dw8;
            c.xz8 = x_zero_point + (x_type == QK_DT_S8 ? 128 : 0);
            /* the block tables hold input offsets as uint32 */
            if (qk__epilogue_fused(ep) && s->in_h * s->in_w <= UINT32_MAX)
                c.dw8f = c.uk->dw8_fused;
            if (c.dw8f != NULL &&
                !qk_pad_u8_blocks_init(&c.pb, s->in_h, s->in_w, s->pad_top, s->pad_left, c.hp, c.wp))
                return QK_ERR_NOMEM;
        }
        qk__parallel(s->batch * w->n, threads, qk__dw_jobs, &c);
        qk_pad_u8_blocks_free(&c.pb);
        return (qk_status)atomic_load(&c.status);
    }
    c.xp = (int16_t *)malloc((img + QK__SLACK) * sizeof(int16_t));
    if (c.xp == NULL) {
        free(c.koff);
        return QK_ERR_NOMEM;
    }
    memset(c.xp + img, 0, QK__SLACK * sizeof(int16_t));
    qk__parallel(s->batch * s->in_c, threads, qk__pad_planes, &c);
    {
        c.tiles_per_row = (ow + QK_GEMM_NR - 1) / QK_GEMM_NR;
        c.tiles = oh * c.tiles_per_row;
        if (qk__conv_flat16(ow)) {
            c.flat = 1;
            c.tiles = (oh * ow + QK_GEMM_NR - 1) / QK_GEMM_NR;
        }
        qk__conv_split(&c, threads);
        qk__parallel(s->batch * w->groups * c.jobs_per_group, threads, qk__conv_jobs, &c);
    }
    free(c.xp);
    free(c.koff);
    return (qk_status)atomic_load(&c.status);
}
