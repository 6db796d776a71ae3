/* conv2d.c -- qk_conv2d: NCHW integer convolution on packed OIHW weights.
 *
 * 8-bit path (CPUs with AVX512-VNNI, weights packed while it is on):
 *   phase 1: the input is copied once into a padded u8 image (int8 activations + 128, padding =
 *   the u8 zero point); phase 2: the output of each (image, group) is cut into tiles of 16
 *   consecutive NCHW pixels (across output rows); a job builds the im2col panels [k4/4][16][4]
 *   of up to 4 tiles (specialized per stride and number of row runs; vpermt2b where the CPU has
 *   VBMI) and runs every block of 12 or 16 output channels over them (vpdpbusd; tiles of at most
 *   8 pixels on 256-bit vectors); the zero-point correction and the epilogue write NCHW directly.
 *   With the fp32 epilogue (fbgemm, onnxruntime presets) the tiles are the fused kernels of
 *   conv_fused.c (requantized in registers; tiles of at most 8 pixels transposed: channels as
 *   lanes). Weights with cq8 (in_c / groups a multiple of 4, several taps; see
 *   gemm_internal.h) use a channel-quad image instead (4 channels interleaved a pixel): a tile's
 *   panel rows are then 64-byte copies of image rows, no byte transpose per tap; at stride 1
 *   with the fused output and no weight zero points, tiles of 9 to 16 pixels over 1 or 2
 *   output rows build no panel at all: the kernel loads those rows from the image itself
 *   (implicit GEMM, one masked load merging the second run; 2-7% faster on the resnet18 3x3
 *   layers). There the output rows whose windows reach into the top or bottom padding (border
 *   rows) are tiled row by row and skip their kernel rows of padding, the zero point's share
 *   of them added back in the start value (qk__conv_border_rows; 3-5% on 256->256@14).
 * int16 path (AVX2 without VNNI, and the scalar twins):
 *   phase 1: the input is widened once to a zero-padded int16 image of (x - x_zp) (padding taps
 *   then contribute exactly 0, as SPEC section 5 requires); phase 2: tiles of up to 16 pixels of
 *   one output row, panels [k2/2][16][2], the 6 x 16 vpmaddwd micro-kernel.
 * One input channel per group (depthwise, any channel multiplier): no image-wide pass; each job
 * copies the input plane it needs into its own padded plane and runs a direct plane kernel (8-bit
 * VNNI+VBMI kernel when the weights have that layout, else the int16 AVX-512 / AVX2 / scalar
 * ones), then the epilogue (fused into the 8-bit plane kernel with the fp32 epilogue, the plane
 * then copied by 64-byte blocks from per-call tables).
 * Windows of mostly padding (direct path): when the padded copy would hold more than
 *   4 x (input + output) elements + 64K (huge padding, stride or dilation; or a copy whose size
 *   does not even fit in size_t), nothing is copied: each output row of each (image, channel)
 *   sums only the taps that land on the input (per row and per column a contiguous range of
 *   kernel taps, found in O(1)); padding taps add exactly 0, so they are skipped, not read.
 *   Memory is then ow + k int32 a job: it follows the work, never the padding. Portable C on
 *   every path (the same bits), the shared unfused epilogue.
 * Every output element is computed the same way whatever the thread split. */
#include "ukernels/ukernels.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if QK_X86
#include <immintrin.h>
#endif

enum { QK__CONV_TILES = 4, QK__SLACK = 192, QK__BROWS = 8 };

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
    size_t tpj; /* tiles a job (up to QK__CONV_TILES; fewer when jobs would be too few) */
    size_t cparts; /* 8-bit path: parts of a group's output-channel blocks a job (tile jobs x
                    * cparts jobs a group) */
    int flat; /* 8-bit path, ow >= 8: tiles are 16 consecutive NCHW pixels, across rows */
    qk_gemm_ukernel uk;
    qk_dw_plane_kernel dw;
    int vbmi;                /* 8-bit panels built with vpermt2b (the dw8 kernel exists) */
    qk_dw8_plane_kernel dw8; /* 8-bit depthwise, when the weights have that layout and it fits */
    /* 8-bit path (w->vnni): padded u8 image (int8 activations + 128; padding = xz8) */
    uint8_t *xp8;
    int32_t xz8;
    uint32_t *corr;
    qk_gemm_s8u8_ukernel uk8;
    qk_gemm_s8u8_ukernel uk8h; /* tiles of at most 8 pixels */
    size_t *koff;     /* k entries: offset of tap k (channel, row, column) in a group's image */
    qk__conv_fused_kernel fk;  /* 8-bit tiles of more than 8 pixels, output fused (or NULL) */
    qk__dw8_fused_kernel dw8f; /* 8-bit depthwise plane, output fused (or NULL) */
    qk__plane_blocks pb;       /* with dw8f: the padded plane as 64-byte blocks */
    int cq8;                   /* w->cq8: channel-quad image (conv_internal.h), k = (tap, c) */
    size_t *tapoff;            /* cq8: pixel offset of each tap (r, q) in a plane */
    qk__conv_direct_kernel dk[2]; /* cq8, stride 1, fused, no wzp8: tiles of 1 / 2 runs read
                                   * straight from the image (or NULL) */
    /* With dk: the output rows whose windows reach into the top or bottom padding (btop
     * leading, bbot trailing; 0 when not used) are tiled row by row and run only kernel rows
     * rlo[i] .. rhi[i] (border row i: rows 0 .. btop - 1, then oh - bbot .. oh - 1); bcorr
     * (i * n + o): corr[o] plus what the skipped rows of padding would have added. */
    size_t btop, bbot, rlo[QK__BROWS], rhi[QK__BROWS];
    uint32_t *bcorr;
    _Atomic int status;
} qk__conv_ctx;

#if QK_X86
QK_TARGET_AVX2 static size_t qk__widen_row_avx2(const void *src, qk_dtype xt, int32_t zp, size_t n,
                                                int16_t *d) {
    const __m256i vzp = _mm256_set1_epi16((int16_t)zp);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m128i v = _mm_loadu_si128((const __m128i *)((const uint8_t *)src + i));
        const __m256i w = xt == QK_DT_U8 ? _mm256_cvtepu8_epi16(v) : _mm256_cvtepi8_epi16(v);
        _mm256_storeu_si256((__m256i *)(d + i), _mm256_sub_epi16(w, vzp));
    }
    return i;
}
#endif

#if QK_X86
QK_TARGET_AVX2 static void qk__widen_row_over_avx2(const void *src, qk_dtype xt, int32_t zp,
                                                   size_t n, int16_t *d) {
    const __m256i vzp = _mm256_set1_epi16((int16_t)zp);
    for (size_t i = 0; i < n; i += 16) {
        const __m128i v = _mm_loadu_si128((const __m128i *)((const uint8_t *)src + i));
        const __m256i w = xt == QK_DT_U8 ? _mm256_cvtepu8_epi16(v) : _mm256_cvtepi8_epi16(v);
        _mm256_storeu_si256((__m256i *)(d + i), _mm256_sub_epi16(w, vzp));
    }
}
#endif

/* ---- phase 1: padded int16 image ---------------------------------------------------------- */
/* One row: d[i] = x[i] - zp for n elements (u8 or s8 source). */
static void qk__widen_row(const void *src, qk_dtype xt, int32_t zp, size_t n, int16_t *d) {
    size_t i = 0;
#if QK_X86
    if (qk__level() >= QK_LEVEL_AVX2) i = qk__widen_row_avx2(src, xt, zp, n, d);
#endif
    if (xt == QK_DT_U8) {
        const uint8_t *s8 = (const uint8_t *)src;
        for (; i < n; i++) d[i] = (int16_t)((int32_t)s8[i] - zp);
    } else {
        const int8_t *s8 = (const int8_t *)src;
        for (; i < n; i++) d[i] = (int16_t)((int32_t)s8[i] - zp);
    }
}

static void qk__pad_planes(void *vctx, size_t j0, size_t j1) {
    qk__conv_ctx *c = (qk__conv_ctx *)vctx;
    const qk_conv2d_shape *s = c->s;
    const size_t plane = c->hp * c->wp;
    for (size_t j = j0; j < j1; j++) { /* j = b * in_c + ch */
        int16_t *d = c->xp + j * plane;
        const uint8_t *src = (const uint8_t *)c->x + j * s->in_h * s->in_w;
        for (size_t h = 0; h < s->in_h; h++) {
            int16_t *dr = d + (h + s->pad_top) * c->wp + s->pad_left;
#if QK_X86
            /* Whole 16-element blocks when they stay inside this plane, both in the input and
             * in the padded image: they may read up to 15 bytes of the following input rows and
             * write up to 15 elements after the row (later rows and padding, written after). */
            const size_t w16 = (s->in_w + 15) & ~(size_t)15;
            if (qk__level() >= QK_LEVEL_AVX2 && h * s->in_w + w16 <= s->in_h * s->in_w &&
                (size_t)(dr - d) + w16 <= (s->pad_top + h + 1) * c->wp + s->pad_left + s->in_w &&
                (size_t)(dr - d) + w16 <= plane && h + 1 < s->in_h) {
                qk__widen_row_over_avx2(src + h * s->in_w, c->xt, c->xzp, s->in_w, dr);
                continue;
            }
#endif
            qk__widen_row(src + h * s->in_w, c->xt, c->xzp, s->in_w, dr);
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
    const uint64_t flip8 = flip * UINT64_C(0x0101010101010101);
    for (size_t j = j0; j < j1; j++) {
        uint8_t *d = c->xp8 + j * plane;
        const uint8_t *src0 = (const uint8_t *)c->x + j * s->in_h * s->in_w;
        if (qk__pad_plane8(src0, s->in_h, s->in_w, flip, (uint8_t)c->xz8, s->pad_top,
                           s->pad_left, c->hp, c->wp, d))
            continue;
        if (s->pad_left || s->pad_right) {
            /* side padding: one fill of the whole plane (the rows are then written over it)
             * costs less than two small memset calls a row */
            memset(d, c->xz8, plane);
        } else {
            if (s->pad_top) memset(d, c->xz8, s->pad_top * c->wp);
            if (s->pad_bottom)
                memset(d + (s->pad_top + s->in_h) * c->wp, c->xz8, s->pad_bottom * c->wp);
        }
        uint8_t *dst = d + s->pad_top * c->wp + s->pad_left;
        for (size_t h = 0; h < s->in_h; h++) {
            uint8_t *dr = dst + h * c->wp;
            const uint8_t *src = src0 + h * s->in_w;
            if (!flip) {
                memcpy(dr, src, s->in_w);
                continue;
            }
            size_t i = 0;
            for (; i + 8 <= s->in_w; i += 8) { /* int8 activations: + 128 is a flip of bit 7 */
                uint64_t v;
                memcpy(&v, src + i, 8);
                v ^= flip8;
                memcpy(dr + i, &v, 8);
            }
            for (; i < s->in_w; i++) dr[i] = (uint8_t)(src[i] ^ flip);
        }
    }
}

/* cq8: job j = b * in_c / 4 + quad: the quad's channel-quad plane from its 4 input planes. */
static void qk__pad_quads8(void *vctx, size_t j0, size_t j1) {
    qk__conv_ctx *c = (qk__conv_ctx *)vctx;
    const qk_conv2d_shape *s = c->s;
    const size_t plane = c->hp * c->wp, pin = s->in_h * s->in_w;
    const uint8_t flip = c->xt == QK_DT_S8 ? 0x80 : 0;
    for (size_t j = j0; j < j1; j++) {
        uint8_t *d = c->xp8 + j * 4 * plane;
        const uint8_t *src = (const uint8_t *)c->x + j * 4 * pin;
        if (qk__pad_quad8(src, pin, s->in_h, s->in_w, flip, (uint8_t)c->xz8, s->pad_top,
                          s->pad_left, c->hp, c->wp, d))
            continue;
        /* portable: element (channel q, padded row h, column x) at ((h * wp + x) * 4 + q) */
        memset(d, c->xz8, 4 * plane);
        for (size_t q = 0; q < 4; q++)
            for (size_t h = 0; h < s->in_h; h++)
                for (size_t x = 0; x < s->in_w; x++)
                    d[((h + s->pad_top) * c->wp + x + s->pad_left) * 4 + q] =
                        (uint8_t)(src[q * pin + h * s->in_w + x] ^ flip);
    }
}

/* ---- phase 2a: im2col^T panel of one tile -------------------------------------------------- */
/* src: the padded plane of the group's first channel; base: offset of the tile's first pixel
 * (oh * stride_h * wp + ow0 * stride_w); cnt valid pixels. */
static void qk__build_panel_scalar(const qk__conv_ctx *c, const int16_t *src, size_t base,
                                   size_t cnt, int16_t *panel) {
    const size_t k = c->w->k, sw = c->s->stride_w;
    for (size_t kk = 0; kk < k; kk++) {
        const int16_t *p = src + c->koff[kk] + base;
        int16_t *d = panel + (kk / 2) * 2 * QK_GEMM_NR + (kk & 1);
        size_t i = 0;
        for (; i < cnt; i++) d[2 * i] = p[i * sw];
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
    const size_t k = c->w->k, sw = c->s->stride_w;
    const __m256i zero = _mm256_setzero_si256();
    for (size_t kk = 0; kk < k; kk += 2) {
        const __m256i v0 = qk__tile_row(src + c->koff[kk] + base, sw);
        const __m256i v1 = kk + 1 < k ? qk__tile_row(src + c->koff[kk + 1] + base, sw) : zero;
        const __m256i lo = _mm256_unpacklo_epi16(v0, v1), hi = _mm256_unpackhi_epi16(v0, v1);
        _mm256_storeu_si256((__m256i *)(panel + kk * QK_GEMM_NR),
                            _mm256_permute2x128_si256(lo, hi, 0x20));
        _mm256_storeu_si256((__m256i *)(panel + kk * QK_GEMM_NR + 16),
                            _mm256_permute2x128_si256(lo, hi, 0x31));
    }
}
#endif

/* The lanes of one tile: up to QK__SEGS runs of consecutive lanes on one output row each. Lane
 * i of run r (i >= start[r]) reads the image at base[r] + i * stride_w. */
enum { QK__SEGS = 4 };
typedef struct {
    size_t n, start[QK__SEGS], base[QK__SEGS];
} qk__segs;

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

/* 8-bit panel [k4/4][16][4] u8 of one tile; k rows past k are zero; lanes >= cnt are zero
 * (scalar) or don't-care (SIMD). Lane i reads the image at off[i] (+ the tap's offset). */
static void qk__build_panel8_scalar(const qk__conv_ctx *c, const uint8_t *src, const size_t *off,
                                    size_t cnt, uint8_t *panel) {
    const size_t k = c->w->k;
    for (size_t kk = 0; kk < c->w->k4; kk++) {
        uint8_t *d = panel + (kk / 4) * 64 + (kk & 3);
        size_t i = 0;
        if (kk < k) {
            const uint8_t *p = src + c->koff[kk];
            for (; i < cnt; i++) d[4 * i] = p[off[i]];
        }
        for (; i < QK_GEMM_NR; i++) d[4 * i] = 0;
    }
}

#if QK_X86
QK_TARGET_AVX2 static inline __m128i qk__tile_row8(const uint8_t *p, size_t stride_w) {
    if (stride_w == 1) return _mm_loadu_si128((const __m128i *)p);
    const __m256i v = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)p), _mm256_set1_epi16(0xFF));
    return _mm_packus_epi16(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
}

/* One k row of a tile: nseg runs (1 to 3, a constant in each specialization below), lanes of
 * run r taken from p + base[r] (vpblendvb with the run's lane mask). */
QK_TARGET_AVX2 static inline __attribute__((always_inline)) __m128i
qk__seg_row8(const uint8_t *p, const size_t *base, int nseg, size_t sw, __m128i m1, __m128i m2) {
    __m128i v = qk__tile_row8(p + base[0], sw);
    if (nseg > 1) v = _mm_blendv_epi8(v, qk__tile_row8(p + base[1], sw), m1);
    if (nseg > 2) v = _mm_blendv_epi8(v, qk__tile_row8(p + base[2], sw), m2);
    return v;
}

QK_TARGET_AVX2 static inline __attribute__((always_inline)) void
qk__panel8_body(const uint8_t *src, const size_t *koff, size_t k, size_t k4, const size_t *base,
                int nseg, size_t sw, __m128i m1, __m128i m2, uint8_t *panel) {
    size_t kk = 0;
    for (; kk + 4 <= k; kk += 4) {
        const __m128i v0 = qk__seg_row8(src + koff[kk], base, nseg, sw, m1, m2);
        const __m128i v1 = qk__seg_row8(src + koff[kk + 1], base, nseg, sw, m1, m2);
        const __m128i v2 = qk__seg_row8(src + koff[kk + 2], base, nseg, sw, m1, m2);
        const __m128i v3 = qk__seg_row8(src + koff[kk + 3], base, nseg, sw, m1, m2);
        const __m128i a = _mm_unpacklo_epi8(v0, v1), a2 = _mm_unpackhi_epi8(v0, v1);
        const __m128i b = _mm_unpacklo_epi8(v2, v3), b2 = _mm_unpackhi_epi8(v2, v3);
        __m128i *d = (__m128i *)(panel + kk * 16);
        _mm_storeu_si128(d, _mm_unpacklo_epi16(a, b));
        _mm_storeu_si128(d + 1, _mm_unpackhi_epi16(a, b));
        _mm_storeu_si128(d + 2, _mm_unpacklo_epi16(a2, b2));
        _mm_storeu_si128(d + 3, _mm_unpackhi_epi16(a2, b2));
    }
    if (kk < k4) { /* the last quad: k rows past k are zero */
        __m128i v[4];
        for (size_t q = 0; q < 4; q++)
            v[q] = kk + q < k ? qk__seg_row8(src + koff[kk + q], base, nseg, sw, m1, m2)
                              : _mm_setzero_si128();
        const __m128i a = _mm_unpacklo_epi8(v[0], v[1]), a2 = _mm_unpackhi_epi8(v[0], v[1]);
        const __m128i b = _mm_unpacklo_epi8(v[2], v[3]), b2 = _mm_unpackhi_epi8(v[2], v[3]);
        __m128i *d = (__m128i *)(panel + kk * 16);
        _mm_storeu_si128(d, _mm_unpacklo_epi16(a, b));
        _mm_storeu_si128(d + 1, _mm_unpackhi_epi16(a, b));
        _mm_storeu_si128(d + 2, _mm_unpacklo_epi16(a2, b2));
        _mm_storeu_si128(d + 3, _mm_unpackhi_epi16(a2, b2));
    }
}


QK_TARGET_AVX512VBMI static inline __attribute__((always_inline)) __m128i
qk__seg_row8v(const uint8_t *p, const size_t *base, int nseg, size_t sw, __m128i m1, __m128i m2) {
    __m128i v;
    if (sw == 1) {
        v = _mm_loadu_si128((const __m128i *)(p + base[0]));
        if (nseg > 1) v = _mm_blendv_epi8(v, _mm_loadu_si128((const __m128i *)(p + base[1])), m1);
        if (nseg > 2) v = _mm_blendv_epi8(v, _mm_loadu_si128((const __m128i *)(p + base[2])), m2);
    } else {
        v = qk__tile_row8(p + base[0], sw);
        if (nseg > 1) v = _mm_blendv_epi8(v, qk__tile_row8(p + base[1], sw), m1);
        if (nseg > 2) v = _mm_blendv_epi8(v, qk__tile_row8(p + base[2], sw), m2);
    }
    return v;
}

/* VBMI: the four rows of a quad go into two ymm and one vpermt2b interleaves them into the
 * 64-byte [16][4] block (byte 4p + q = row q, pixel p). */
QK_TARGET_AVX512VBMI static inline __attribute__((always_inline)) void
qk__panel8v_body(const uint8_t *src, const size_t *koff, size_t k, size_t k4, const size_t *base,
                 int nseg, size_t sw, __m128i m1, __m128i m2, uint8_t *panel) {
    static const uint8_t idxb[64] = {
        0, 16, 64, 80, 1, 17, 65, 81, 2, 18, 66, 82, 3, 19, 67, 83,
        4, 20, 68, 84, 5, 21, 69, 85, 6, 22, 70, 86, 7, 23, 71, 87,
        8, 24, 72, 88, 9, 25, 73, 89, 10, 26, 74, 90, 11, 27, 75, 91,
        12, 28, 76, 92, 13, 29, 77, 93, 14, 30, 78, 94, 15, 31, 79, 95};
    const __m512i idx = _mm512_loadu_si512((const void *)idxb);
    size_t kk = 0;
    for (; kk + 4 <= k; kk += 4) {
        const __m128i v0 = qk__seg_row8v(src + koff[kk], base, nseg, sw, m1, m2);
        const __m128i v1 = qk__seg_row8v(src + koff[kk + 1], base, nseg, sw, m1, m2);
        const __m128i v2 = qk__seg_row8v(src + koff[kk + 2], base, nseg, sw, m1, m2);
        const __m128i v3 = qk__seg_row8v(src + koff[kk + 3], base, nseg, sw, m1, m2);
        const __m256i a = _mm256_inserti128_si256(_mm256_castsi128_si256(v0), v1, 1);
        const __m256i b = _mm256_inserti128_si256(_mm256_castsi128_si256(v2), v3, 1);
        _mm512_storeu_si512((void *)(panel + kk * 16),
                            _mm512_permutex2var_epi8(_mm512_castsi256_si512(a), idx,
                                                     _mm512_castsi256_si512(b)));
    }
    if (kk < k4) { /* the last quad: k rows past k are zero */
        __m128i v[4];
        for (size_t q = 0; q < 4; q++)
            v[q] = kk + q < k ? qk__seg_row8v(src + koff[kk + q], base, nseg, sw, m1, m2)
                              : _mm_setzero_si128();
        const __m256i a = _mm256_inserti128_si256(_mm256_castsi128_si256(v[0]), v[1], 1);
        const __m256i b = _mm256_inserti128_si256(_mm256_castsi128_si256(v[2]), v[3], 1);
        _mm512_storeu_si512((void *)(panel + kk * 16),
                            _mm512_permutex2var_epi8(_mm512_castsi256_si512(a), idx,
                                                     _mm512_castsi256_si512(b)));
    }
}

#define QK__PANEL8V_SPEC(NAME, NSEG, SW)                                                          \
    QK_TARGET_AVX512VBMI static void NAME(const uint8_t *src, const size_t *koff, size_t k,         \
                                         size_t k4, const size_t *base, __m128i m1, __m128i m2,    \
                                         uint8_t *panel) {                                         \
        qk__panel8v_body(src, koff, k, k4, base, NSEG, SW, m1, m2, panel);                         \
    }
QK__PANEL8V_SPEC(qk__panel8v_s1n1, 1, 1)
QK__PANEL8V_SPEC(qk__panel8v_s1n2, 2, 1)
QK__PANEL8V_SPEC(qk__panel8v_s1n3, 3, 1)
QK__PANEL8V_SPEC(qk__panel8v_s2n1, 1, 2)
QK__PANEL8V_SPEC(qk__panel8v_s2n2, 2, 2)
QK__PANEL8V_SPEC(qk__panel8v_s2n3, 3, 2)

#define QK__PANEL8_SPEC(NAME, NSEG, SW)                                                          \
    QK_TARGET_AVX2 static void NAME(const uint8_t *src, const size_t *koff, size_t k, size_t k4,  \
                                    const size_t *base, __m128i m1, __m128i m2, uint8_t *panel) { \
        qk__panel8_body(src, koff, k, k4, base, NSEG, SW, m1, m2, panel);                         \
    }
QK__PANEL8_SPEC(qk__panel8_s1n1, 1, 1)
QK__PANEL8_SPEC(qk__panel8_s1n2, 2, 1)
QK__PANEL8_SPEC(qk__panel8_s1n3, 3, 1)
QK__PANEL8_SPEC(qk__panel8_s2n1, 1, 2)
QK__PANEL8_SPEC(qk__panel8_s2n2, 2, 2)
QK__PANEL8_SPEC(qk__panel8_s2n3, 3, 2)

/* Returns 0 when the tile has more runs than the specializations cover (caller: scalar). */
QK_TARGET_AVX2 static int qk__build_panel8_avx2(const qk__conv_ctx *c, const uint8_t *src,
                                                const qk__segs *g, uint8_t *panel) {
    const size_t k = c->w->k, sw = c->s->stride_w;
    const __m128i lane = _mm_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m128i m1 = g->n > 1 ? _mm_cmpgt_epi8(lane, _mm_set1_epi8((char)((int)g->start[1] - 1)))
                                : _mm_setzero_si128();
    const __m128i m2 = g->n > 2 ? _mm_cmpgt_epi8(lane, _mm_set1_epi8((char)((int)g->start[2] - 1)))
                                : _mm_setzero_si128();
    const size_t k4 = c->w->k4;
    if (c->vbmi) switch (g->n * 4 + sw) {
        case 5: qk__panel8v_s1n1(src, c->koff, k, k4, g->base, m1, m2, panel); return 1;
        case 9: qk__panel8v_s1n2(src, c->koff, k, k4, g->base, m1, m2, panel); return 1;
        case 13: qk__panel8v_s1n3(src, c->koff, k, k4, g->base, m1, m2, panel); return 1;
        case 6: qk__panel8v_s2n1(src, c->koff, k, k4, g->base, m1, m2, panel); return 1;
        case 10: qk__panel8v_s2n2(src, c->koff, k, k4, g->base, m1, m2, panel); return 1;
        case 14: qk__panel8v_s2n3(src, c->koff, k, k4, g->base, m1, m2, panel); return 1;
        default: return 0;
    }
    switch (g->n * 4 + sw) {
        case 5: qk__panel8_s1n1(src, c->koff, k, k4, g->base, m1, m2, panel); return 1;
        case 9: qk__panel8_s1n2(src, c->koff, k, k4, g->base, m1, m2, panel); return 1;
        case 13: qk__panel8_s1n3(src, c->koff, k, k4, g->base, m1, m2, panel); return 1;
        case 6: qk__panel8_s2n1(src, c->koff, k, k4, g->base, m1, m2, panel); return 1;
        case 10: qk__panel8_s2n2(src, c->koff, k, k4, g->base, m1, m2, panel); return 1;
        case 14: qk__panel8_s2n3(src, c->koff, k, k4, g->base, m1, m2, panel); return 1;
        default: return 0;
    }
}
#endif

#if QK_X86
/* The runs of a tile of cnt pixels starting at output row oh, column ow0. Returns 0 when a run's
 * base would be negative or there are too many runs (the caller then builds the tile lane by
 * lane). */
static int qk__tile_segs(const qk__conv_ctx *c, size_t oh, size_t ow0, size_t cnt, qk__segs *g) {
    const qk_conv2d_shape *s = c->s;
    g->n = 0;
    size_t i = 0, row = oh, col = ow0;
    while (i < cnt) {
        if (g->n == QK__SEGS) return 0;
        const size_t run = c->ow - col < cnt - i ? c->ow - col : cnt - i;
        const size_t pos = row * s->stride_h * c->wp + col * s->stride_w;
        if (pos < i * s->stride_w) return 0;
        g->start[g->n] = i;
        g->base[g->n] = pos - i * s->stride_w;
        g->n++;
        i += run;
        row++;
        col = 0;
    }
    return 1;
}
#endif

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
#if QK_X86
    const int simd = qk__level() >= QK_LEVEL_AVX2 && (s->stride_w == 1 || s->stride_w == 2);
#endif
    for (size_t j = j0; j < j1; j++) {
        const size_t bg = j / c->jobs_per_group, tj = j % c->jobs_per_group / c->cparts;
        const size_t part = j % c->jobs_per_group % c->cparts;
        const size_t b = bg / w->groups, g = bg % w->groups;
        const uint8_t *src = c->xp8 + (b * s->in_c + g * c->cpg) * plane;
        const size_t t0 = tj * c->tpj;
        const size_t nt = c->tiles - t0 < c->tpj ? c->tiles - t0 : c->tpj;
        size_t pix0[QK__CONV_TILES], cnt[QK__CONV_TILES];
        int brow[QK__CONV_TILES]; /* a direct tile's border row, or -1 */
#if QK_X86
        qk__segs dsegs[QK__CONV_TILES]; /* dsegs[t].n: 0, or the runs of a direct tile */
#endif
        for (size_t t = 0; t < nt; t++) {
            qk__tile d;
            qk__tile_at(c, t0 + t, &d);
            const size_t oh = d.oh, ow0 = d.ow0;
            pix0[t] = d.pix0;
            cnt[t] = d.cnt;
            brow[t] = -1;
            uint8_t *panel = panels + t * k4 * QK_GEMM_NR;
            (void)oh;
            (void)ow0;
#if QK_X86
            qk__segs segs;
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
                qk__panel_cq8(src, plane * 4, c->tapoff, w->kh * w->kw, c->cpg / 4, segs.n,
                              segs.start, segs.base, s->stride_w, panel);
            } else if (!c->cq8 && simd && qk__tile_segs(c, oh, ow0, cnt[t], &segs) &&
                       qk__build_panel8_avx2(c, src, &segs, panel)) {
            } else
#endif
            {
                size_t off[QK_GEMM_NR];
                for (size_t i = 0; i < cnt[t]; i++) {
                    const size_t q = pix0[t] + i;
                    off[i] = (q / c->ow) * s->stride_h * c->wp + (q % c->ow) * s->stride_w;
                    if (c->cq8) off[i] *= 4; /* 4 bytes a pixel */
                }
                qk__build_panel8_scalar(c, src, off, cnt[t], panel);
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
#if QK_X86
                if (dsegs[t].n != 0) {
                    const qk__segs *d = &dsegs[t];
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
                                    (char *)c->y + ((b * n + o0) * opix + pix0[t]) * osz,
                                    opix * osz);
                    continue;
                }
                if (cnt[t] <= 8 && c->fk != NULL) {
                    qk__conv_fused_tail(k4 / 4, w->data8 + (g * w->nblk + ob / bmr) * bmr * k4, bmr,
                                        panels + t * k4 * QK_GEMM_NR, c->ep, w->wzp8, c->corr,
                                        w->any_wzp8 ? pixsum[t] : NULL, o0, mr, cnt[t],
                                        (char *)c->y + ((b * n + o0) * opix + pix0[t]) * osz,
                                        opix * osz);
                    continue;
                }
#endif
                if (cnt[t] > 8 && c->fk != NULL) {
                    c->fk(k4 / 4, w->data8 + (g * w->nblk + ob / bmr) * bmr * k4,
                          panels + t * k4 * QK_GEMM_NR, c->ep, w->wzp8, c->corr,
                          w->any_wzp8 ? pixsum[t] : NULL, o0, mr, cnt[t],
                          (char *)c->y + ((b * n + o0) * opix + pix0[t]) * osz, opix * osz);
                    continue;
                }
                (cnt[t] <= 8 ? c->uk8h : c->uk8)(k4 / 4,
                                                 w->data8 + (g * w->nblk + ob / bmr) * bmr * k4,
                                                 panels + t * k4 * QK_GEMM_NR, tile);
                char *yp = (char *)c->y + ((b * n + o0) * opix + pix0[t]) * osz;
                if (qk__tile_out_conv(c->ep, w, c->corr, w->any_wzp8 ? pixsum[t] : NULL, o0, cnt[t],
                                      tile, mr, yp, opix * osz) != QK_OK)
                    atomic_store(&c->status, QK_ERR_OVERFLOW);
            }
        }
    }
    free(panels);
}

static void qk__conv_jobs(void *vctx, size_t j0, size_t j1) {
    qk__conv_ctx *c = (qk__conv_ctx *)vctx;
    if (c->w->vnni) {
        qk__conv_jobs8(c, j0, j1);
        return;
    }
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
    const int simd = qk__level() >= QK_LEVEL_AVX2 && (s->stride_w == 1 || s->stride_w == 2);
#endif
    for (size_t j = j0; j < j1; j++) {
        const size_t bg = j / c->jobs_per_group, tj = j % c->jobs_per_group;
        const size_t b = bg / w->groups, g = bg % w->groups;
        const int16_t *src = c->xp + (b * s->in_c + g * c->cpg) * plane;
        const size_t t0 = tj * c->tpj;
        const size_t nt = c->tiles - t0 < c->tpj ? c->tiles - t0 : c->tpj;
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
                    if (qk__epilogue_run(c->ep, o0 + r, tile + r * QK_GEMM_NR, cnt[t], yp) !=
                        QK_OK)
                        atomic_store(&c->status, QK_ERR_OVERFLOW);
                }
            }
        }
    }
    free(panels);
}

/* ---- phase 2b: one input channel per group (depthwise) ------------------------------------
 * Each job range widens the input plane it needs into its own zero-bordered padded plane (the
 * interior rows are written exactly, so the border stays 0 = the padding value of x - x_zp),
 * runs the plane kernel and the epilogue: no image-wide pass, and the plane stays in L1/L2. */
#if QK_X86
QK_TARGET_AVX512 static void qk__widen_row_avx512(const void *src, qk_dtype xt, int32_t zp,
                                                  size_t n, int16_t *d) {
    const __m512i vzp = _mm512_set1_epi16((int16_t)zp);
    for (size_t i = 0; i < n; i += 32) {
        const __mmask32 m = n - i >= 32 ? 0xFFFFFFFFu : (__mmask32)((1u << (n - i)) - 1u);
        const __m256i v = _mm512_castsi512_si256(
            _mm512_maskz_loadu_epi8((__mmask64)m, (const uint8_t *)src + i));
        const __m512i w = xt == QK_DT_U8 ? _mm512_cvtepu8_epi16(v) : _mm512_cvtepi8_epi16(v);
        _mm512_mask_storeu_epi16(d + i, m, _mm512_sub_epi16(w, vzp));
    }
}
#endif

/* The 8-bit depthwise jobs: each widens nothing, it copies the input plane into its own u8
 * plane bordered with the u8 zero point (int8 activations + 128: a flip of bit 7). */
static void qk__dw8_jobs(qk__conv_ctx *c, size_t j0, size_t j1) {
    const qk_conv2d_shape *s = c->s;
    const qk_packed_weights *w = c->w;
    const size_t n = w->n, osz = qk__dtype_size(c->ep->out_type), plane = c->hp * c->wp;
    const size_t opix = c->oh * c->ow;
    const uint8_t flip = c->xt == QK_DT_S8 ? 0x80 : 0;
    const uint64_t flip8 = flip * UINT64_C(0x0101010101010101);
    int32_t *acc = (int32_t *)malloc(opix * sizeof(int32_t));
    /* 64-byte aligned (the block copy's stores), a whole number of blocks */
    uint8_t *xp = (uint8_t *)aligned_alloc(64, (plane + QK__SLACK + 63) & ~(size_t)63);
    if (acc == NULL || xp == NULL) {
        free(acc);
        free(xp);
        atomic_store(&c->status, QK_ERR_NOMEM);
        return;
    }
    memset(xp, c->xz8, plane + QK__SLACK);
    size_t have = (size_t)-1;
    for (size_t j = j0; j < j1; j++) {
        const size_t b = j / n, o = j % n, bc = b * s->in_c + o / c->ocg;
        if (bc != have && c->dw8f != NULL) {
            qk__plane_blocks_copy(&c->pb, (const uint8_t *)c->x + bc * s->in_h * s->in_w, flip,
                                  (uint8_t)c->xz8, xp);
            have = bc;
        }
        if (bc != have) {
            const uint8_t *src = (const uint8_t *)c->x + bc * s->in_h * s->in_w;
            if (qk__pad_plane8(src, s->in_h, s->in_w, flip, (uint8_t)c->xz8, s->pad_top,
                               s->pad_left, c->hp, c->wp, xp))
                have = bc;
            for (size_t h = 0; h < s->in_h && have != bc; h++) {
                uint8_t *dr = xp + (h + s->pad_top) * c->wp + s->pad_left;
                const uint8_t *sr = src + h * s->in_w;
                if (!flip) {
                    memcpy(dr, sr, s->in_w);
                    continue;
                }
                size_t i = 0;
                for (; i + 8 <= s->in_w; i += 8) {
                    uint64_t v;
                    memcpy(&v, sr + i, 8);
                    v ^= flip8;
                    memcpy(dr + i, &v, 8);
                }
                for (; i < s->in_w; i++) dr[i] = (uint8_t)(sr[i] ^ flip);
            }
            have = bc;
        }
        const uint32_t corr = 0u - (uint32_t)c->xz8 * (uint32_t)w->colsum[o];
        if (c->dw8f != NULL) {
            c->dw8f(xp, c->wp, w->dw8 + o * w->kh * w->dwq * 4, w->kh, w->dwq, s->stride_h,
                    s->stride_w, s->dil_h, s->dil_w, c->oh, c->ow, corr, c->ep, o,
                    (uint8_t *)c->y + (b * n + o) * opix);
            continue;
        }
        c->dw8(xp, c->wp, w->dw8 + o * w->kh * w->dwq * 4, w->kh, w->dwq, s->stride_h,
               s->stride_w, s->dil_h, s->dil_w, c->oh, c->ow, corr, acc);
        if (qk__epilogue_run(c->ep, o, acc, opix, (char *)c->y + (b * n + o) * opix * osz) != QK_OK)
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
    int32_t *acc = (int32_t *)malloc(opix * sizeof(int32_t));
    int16_t *xp = (int16_t *)calloc(plane + QK__SLACK, sizeof(int16_t));
    if (acc == NULL || xp == NULL) {
        free(acc);
        free(xp);
        atomic_store(&c->status, QK_ERR_NOMEM);
        return;
    }
#if QK_X86
    const int v512 = qk__level() >= QK_LEVEL_AVX512;
#endif
    size_t have = (size_t)-1; /* the (image, channel) now in xp */
    for (size_t j = j0; j < j1; j++) { /* j = b * n + o */
        const size_t b = j / n, o = j % n, ch = o / c->ocg, bc = b * s->in_c + ch;
        if (bc != have) {
            const uint8_t *src = (const uint8_t *)c->x + bc * s->in_h * s->in_w;
            for (size_t h = 0; h < s->in_h; h++) {
                int16_t *dr = xp + (h + s->pad_top) * c->wp + s->pad_left;
#if QK_X86
                if (v512) {
                    qk__widen_row_avx512(src + h * s->in_w, c->xt, c->xzp, s->in_w, dr);
                    continue;
                }
#endif
                qk__widen_row(src + h * s->in_w, c->xt, c->xzp, s->in_w, dr);
            }
            have = bc;
        }
        c->dw(xp, c->wp, w->data + o * w->k2, w->kh, w->kw, s->stride_h, s->stride_w, s->dil_h,
              s->dil_w, c->oh, c->ow, acc);
        if (qk__epilogue_run(c->ep, o, acc, opix, (char *)c->y + (b * n + o) * opix * osz) != QK_OK)
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
    const size_t opix = c->oh * c->ow, inpix = s->in_h * s->in_w;
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
        char *yp = (char *)c->y + (b * n + o) * opix * osz;
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
            if (qk__epilogue_run(c->ep, o, (const int32_t *)acc, c->ow, yp + i * c->ow * osz) !=
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
    /* the caller's arrays (input, output) must be addressable, and so must the int32 plane of
     * sums the unfused paths keep a job */
    size_t in_elems, out_elems, bytes;
    if (!qk__sz_mul4(s->batch, s->in_c, s->in_h, s->in_w, &in_elems) ||
        !qk__sz_mul4(s->batch, w->n, oh, ow, &out_elems) ||
        !qk__sz_mul(out_elems, qk__dtype_size(ep->out_type), &bytes) ||
        !qk__sz_mul4(oh, ow, sizeof(int32_t), 1, &bytes))
        return QK_ERR_ARG;
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
    c.dw = qk__dw_plane_kernel();
    atomic_init(&c.status, QK_OK);
    if (qk__conv_sparse(s, c.hp, c.wp, in_elems, out_elems)) {
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
        c.uk8 = qk__gemm_s8u8_ukernel(w->mr8);
        c.uk8h = qk__gemm_s8u8_half_ukernel(w->mr8);
        c.vbmi = qk__dw8_plane_kernel() != NULL; /* VNNI + VBMI */
        c.corr = qk__zp_correction(w, c.xz8);
        if (qk__conv_fused_ok(ep)) c.fk = qk__conv_fused_kernel_for(w->mr8);
        if (c.fk != NULL && c.cq8 && s->stride_w == 1 && !w->any_wzp8) {
            c.dk[0] = qk__conv_direct_kernel_for(w->mr8, 1);
            c.dk[1] = qk__conv_direct_kernel_for(w->mr8, 2);
            if (c.dk[1] == NULL) c.dk[0] = NULL;
        }
        c.xp8 = (uint8_t *)malloc(img + QK__SLACK);
        if (c.corr == NULL || c.xp8 == NULL) {
            free(c.corr);
            free(c.xp8);
            free(c.koff);
            free(c.tapoff);
            return QK_ERR_NOMEM;
        }
        memset(c.xp8 + img, 0, QK__SLACK);
        if (c.cq8)
            qk__parallel(s->batch * s->in_c / 4, threads, qk__pad_quads8, &c);
        else
            qk__parallel(s->batch * s->in_c, threads, qk__pad_planes8, &c);
        c.tiles_per_row = (ow + QK_GEMM_NR - 1) / QK_GEMM_NR;
        c.tiles = oh * c.tiles_per_row;
        if (ow >= 8) { /* a tile then spans at most 3 output rows (runs) */
            c.flat = 1;
            c.tiles = (oh * ow + QK_GEMM_NR - 1) / QK_GEMM_NR;
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
            c.dw8 = qk__dw8_plane_kernel();
            c.xz8 = x_zero_point + (x_type == QK_DT_S8 ? 128 : 0);
            /* the block tables hold input offsets as uint32 */
            if (qk__conv_fused_ok(ep) && s->in_h * s->in_w <= UINT32_MAX)
                c.dw8f = qk__dw8_fused_kernel_get();
            if (c.dw8f != NULL &&
                !qk__plane_blocks_init(&c.pb, s->in_h, s->in_w, s->pad_top, s->pad_left, c.hp, c.wp))
                return QK_ERR_NOMEM;
        }
        qk__parallel(s->batch * w->n, threads, qk__dw_jobs, &c);
        qk__plane_blocks_free(&c.pb);
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
        qk__conv_split(&c, threads);
        qk__parallel(s->batch * w->groups * c.jobs_per_group, threads, qk__conv_jobs, &c);
    }
    free(c.xp);
    free(c.koff);
    return (qk_status)atomic_load(&c.status);
}
