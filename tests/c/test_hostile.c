/* test_hostile.c -- the C library checks its own arguments: sizes whose products wrap, geometry
 * beyond what memory can hold, and windows that only read padding get a status code (or the
 * exact result), never a crash, an endless loop or a write outside the caller's arrays.
 * Run by tests/test_clib.py on every path (auto = VNNI where the CPU has it, avx2, scalar) and by
 * `make sanitize` under ASan/UBSan. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qk_test.h"
#include "qkernels.h"

#define P31 ((size_t)1 << 31)

/* A 1 x 1 kernel over `c` channels and a conv whose geometry is the issue's: padding
 * (2^31, 2^31, 2^31 - 1, 2^31 - 1), stride 2^32 on a (1, c, 1, 1) input, so the padded plane
 * is 2^32 x 2^32 (2^64 elements: the size wraps to 0 in size_t). */
static void test_wrapping_geometry(size_t c, qk_dtype xt, int fp32) {
    uint8_t x[4] = {7, 200, 3, 99}, w[4] = {1, 2, 3, 4};
    int32_t wzp[1] = {0}, bias[1] = {12345};
    float scale[1] = {0.5f};
    qk_packed_weights *pw = NULL;
    QK_CHECK(qk_pack_conv2d(w, QK_DT_S8, 1, c, 1, 1, 1, wzp, &pw) == QK_OK, "pack c=%zu", c);
    qk_conv2d_shape s;
    memset(&s, 0, sizeof s);
    s.batch = 1;
    s.in_c = c;
    s.in_h = s.in_w = 1;
    s.pad_top = s.pad_left = P31;
    s.pad_bottom = s.pad_right = P31 - 1;
    s.stride_h = s.stride_w = (size_t)1 << 32;
    s.dil_h = s.dil_w = 1;
    size_t oh = 0, ow = 0;
    QK_CHECK(qk_conv2d_out_size(&s, pw, &oh, &ow) == QK_OK && oh == 1 && ow == 1,
             "out size %zu x %zu", oh, ow);
    qk_epilogue ep;
    memset(&ep, 0, sizeof ep);
    ep.bias = bias;
    if (fp32) {
        ep.scheme = QK_REQ_FP32;
        ep.out_type = QK_DT_U8;
        ep.scale = scale;
        ep.zero_point = 3;
        ep.act_min = 0;
        ep.act_max = 255;
    } else {
        ep.scheme = QK_REQ_NONE;
        ep.out_type = QK_DT_S32;
    }
    /* guard words around the one output element */
    int32_t y[3] = {-1, -1, -1};
    const qk_status st = qk_conv2d(&s, pw, x, xt, 0, &ep, &y[1], 1);
    /* the only output pixel reads padded (0, 0): padding, so the sum is 0 and y = bias */
    QK_CHECK(st == QK_OK, "status %d (c=%zu)", (int)st, c);
    if (fp32) /* 12345 * 0.5 + 3 clamped to 255 */
        QK_CHECK(((uint8_t *)&y[1])[0] == 255 && y[0] == -1 && y[2] == -1, "fp32 out %d",
                 ((uint8_t *)&y[1])[0]);
    else
        QK_CHECK(y[1] == 12345 && y[0] == -1 && y[2] == -1, "int32 out %d, want 12345", y[1]);
    qk_packed_weights_free(pw);
}

/* Sizes that do not fit in size_t (or PTRDIFF_MAX) are QK_ERR_ARG, before anything is read. */
static void test_overflowing_sizes(void) {
    int8_t w[16] = {1};
    int32_t wzp[16] = {0};
    qk_packed_weights *pw = NULL;
    /* in_c_per_group * kh * kw wraps */
    QK_CHECK(qk_pack_conv2d(w, QK_DT_S8, 1, SIZE_MAX / 2, 4096, 4096, 1, wzp, &pw) == QK_ERR_ARG &&
                 pw == NULL,
             "pack conv k wraps");
    /* n * k beyond any memory */
    QK_CHECK(qk_pack_linear(w, QK_DT_S8, (size_t)1 << 39, (size_t)1 << 39, wzp, &pw) ==
                 QK_ERR_ARG,
             "pack linear n * k");
    QK_CHECK(qk_pack_conv2d(w, QK_DT_S8, 1, 1, 1, 1, 1, wzp, &pw) == QK_OK, "pack 1x1");
    qk_conv2d_shape s;
    memset(&s, 0, sizeof s);
    s.batch = 1;
    s.in_c = 1;
    s.in_h = s.in_w = 1;
    s.stride_h = s.stride_w = s.dil_h = s.dil_w = 1;
    size_t oh, ow;
    /* padded extents beyond PTRDIFF_MAX */
    s.pad_top = s.pad_bottom = (size_t)1 << 62;
    QK_CHECK(qk_conv2d_out_size(&s, pw, &oh, &ow) == QK_ERR_ARG, "in_h + pads > PTRDIFF_MAX");
    s.pad_top = SIZE_MAX;
    QK_CHECK(qk_conv2d_out_size(&s, pw, &oh, &ow) == QK_ERR_ARG, "in_h + pad wraps");
    s.pad_top = s.pad_bottom = 0;
    /* batch * in_c * in_h * in_w wraps (the input cannot exist) */
    qk_epilogue ep;
    memset(&ep, 0, sizeof ep);
    ep.scheme = QK_REQ_NONE;
    ep.out_type = QK_DT_S32;
    uint8_t x[1] = {0};
    int32_t y[1] = {-7};
    s.batch = SIZE_MAX / 2 + 2;
    QK_CHECK(qk_conv2d(&s, pw, x, QK_DT_U8, 0, &ep, y, 1) == QK_ERR_ARG && y[0] == -7,
             "batch too large");
    s.batch = 1;
    s.in_w = (size_t)1 << 62;
    s.in_h = 4;
    QK_CHECK(qk_conv2d(&s, pw, x, QK_DT_U8, 0, &ep, y, 1) == QK_ERR_ARG && y[0] == -7,
             "in_h * in_w too large");
    qk_packed_weights_free(pw);
    /* a 2-tap kernel dilated by 2^62: the window spans 2^62 + 1 rows */
    QK_CHECK(qk_pack_conv2d(w, QK_DT_S8, 1, 1, 2, 1, 1, wzp, &pw) == QK_OK, "pack 2x1");
    s.in_h = s.in_w = 1;
    s.dil_h = (size_t)1 << 62;
    s.pad_top = s.pad_bottom = (size_t)1 << 61;
    s.pad_left = s.pad_right = 0;
    QK_CHECK(qk_conv2d_out_size(&s, pw, &oh, &ow) == QK_OK && oh == 1 && ow == 1, "dilated size");
    y[0] = -7;
    const qk_status st = qk_conv2d(&s, pw, x, QK_DT_U8, 0, &ep, y, 1);
    QK_CHECK(st == QK_OK && y[0] == 0, "dilation 2^62: status %d, y %d", (int)st, y[0]);
    s.dil_h = SIZE_MAX / 2;
    QK_CHECK(qk_conv2d_out_size(&s, pw, &oh, &ow) == QK_ERR_ARG, "dilated extent wraps");
    qk_packed_weights_free(pw);
    /* linear: m * k and m * n beyond memory */
    QK_CHECK(qk_pack_linear(w, QK_DT_S8, 4, 4, wzp, &pw) == QK_OK, "pack linear");
    y[0] = -7;
    QK_CHECK(qk_linear(pw, x, QK_DT_U8, SIZE_MAX / 2, 0, &ep, y, 1) == QK_ERR_ARG && y[0] == -7,
             "linear m too large");
    qk_packed_weights_free(pw);
}

static void test_pool_sizes(void) {
    uint8_t x[4] = {1, 2, 3, 4}, y[4] = {9, 9, 9, 9};
    /* planes * oh * ow wraps */
    QK_CHECK(qk_qmax_pool2d(x, QK_DT_U8, (size_t)1 << 33, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1,
                            (size_t)1 << 31, (size_t)1 << 31, y) == QK_ERR_ARG,
             "max pool sizes");
    /* a window start (oh - 1) * stride that wraps */
    QK_CHECK(qk_qmax_pool2d(x, QK_DT_U8, 1, 2, 2, 1, 1, SIZE_MAX / 2, 1, 0, 0, 1, 1, 3, 1, y) ==
                 QK_ERR_ARG,
             "max pool stride");
    /* a padding that wraps h + ph */
    QK_CHECK(qk_qmax_pool2d(x, QK_DT_U8, 1, 2, 2, 1, 1, 1, 1, SIZE_MAX, 0, 1, 1, 1, 1, y) ==
                 QK_ERR_ARG,
             "max pool padding");
    /* a huge stride: output row 1 starts at input row 2^40, past the input (the type's
     * minimum, as a window of padding only) */
    QK_CHECK(qk_qmax_pool2d(x, QK_DT_U8, 1, 2, 2, 1, 1, (size_t)1 << 40, 1, 0, 0, 1, 1, 2, 2, y) ==
                     QK_OK &&
                 y[0] == 1 && y[1] == 2 && y[2] == 0 && y[3] == 0,
             "max pool stride 2^40: %d %d %d %d", y[0], y[1], y[2], y[3]);
    QK_CHECK(qk_qadaptive_avg_pool2d(x, QK_DT_U8, 1, 2, 2, SIZE_MAX / 2, 1, y) == QK_ERR_ARG,
             "avg pool oh * h");
}

static void test_ptf_layernorm_sizes(void) {
    float xf[4] = {0};
    uint8_t q[4] = {0};
    int32_t alpha[2] = {0, 0};
    QK_CHECK(qk_ptf_quantize_f32_u8(xf, SIZE_MAX / 2, 2, 1.0f, alpha, 128, q, NULL) == QK_ERR_ARG,
             "ptf tokens * channels");
    float gamma[2] = {1, 1}, beta[2] = {0, 0}, yf[4];
    (void)yf;
    QK_CHECK(qk_ptf_dequantize_u8_f32(q, SIZE_MAX / 3, 2, 1.0f, alpha, 128, yf) == QK_ERR_ARG,
             "ptf dequantize tokens * channels");
    qk_layernorm_params p;
    int32_t gb[2];
    int64_t bb[2];
    uint8_t ab[2];
    QK_CHECK(qk_layernorm_prepare(&p, QK_LAYERNORM_EXACT, 2, 0.1f, alpha, 128, gamma, beta, 1e-5f,
                                  0.05f, 0, gb, bb, ab) == QK_OK,
             "prepare");
    int8_t y[4];
    QK_CHECK(qk_layernorm_ptf_u8_s8(&p, q, SIZE_MAX / 2, y) == QK_ERR_ARG, "layernorm tokens");
}

static size_t urnd(size_t lo, size_t hi) { return lo + (size_t)(qk_test_next() % (hi - lo + 1)); }
static int32_t val8(const uint8_t *p, qk_dtype t, size_t i) {
    return t == QK_DT_U8 ? (int32_t)p[i] : (int32_t)(int8_t)p[i];
}
/* The padded coordinate o * stride + k * dil - pad as an input index, or -1 when it is padding
 * (all in long double-free 64-bit: the test geometry stays below 2^40). */
static long long in_coord(size_t o, size_t stride, size_t k, size_t dil, size_t pad, size_t n) {
    const long long v = (long long)(o * stride + k * dil) - (long long)pad;
    return v >= 0 && v < (long long)n ? v : -1;
}

/* Huge padding, stride and dilation (the direct path: windows of mostly padding) and small
 * ordinary ones (the dense paths), against an int64 reference; the fp32 epilogue against
 * qk_requantize_s32_u8_fp32 of the int32 result; threads 1 and 3 the same bits. */
static void test_sparse_vs_reference(void) {
    for (int it = 0; it < 300; it++) {
        const int huge = it % 3 != 0;
        qk_conv2d_shape s;
        memset(&s, 0, sizeof s);
        const size_t groups = urnd(1, 3), dwc = urnd(0, 2) == 0;
        const size_t cpg = dwc ? 1 : urnd(1, 9), ocg = urnd(1, dwc ? 3 : 20);
        const size_t kh = urnd(1, 3), kw = urnd(1, 3), oc = ocg * groups;
        s.batch = urnd(1, 2);
        s.in_c = cpg * groups;
        s.in_h = urnd(1, 6);
        s.in_w = urnd(1, 20);
        const size_t big = huge ? (size_t)1 << urnd(8, 36) : 3;
        s.pad_top = urnd(0, big);
        s.pad_bottom = urnd(0, big);
        s.pad_left = urnd(0, big);
        s.pad_right = urnd(0, big);
        s.dil_h = huge && urnd(0, 1) ? urnd(1, big) : urnd(1, 2);
        s.dil_w = huge && urnd(0, 1) ? urnd(1, big) : urnd(1, 2);
        const qk_dtype xt = urnd(0, 1) ? QK_DT_U8 : QK_DT_S8, wt = urnd(0, 1) ? QK_DT_U8 : QK_DT_S8;
        uint8_t w[9 * 9 * 60];
        for (size_t i = 0; i < oc * cpg * kh * kw; i++) w[i] = (uint8_t)qk_test_next();
        int32_t wzp[60], bias[60];
        for (size_t o = 0; o < oc; o++) {
            wzp[o] = urnd(0, 3) == 0 ? (wt == QK_DT_U8 ? 128 : 0)
                                     : (int32_t)urnd(0, 255) - (wt == QK_DT_U8 ? 0 : 128);
            bias[o] = (int32_t)urnd(0, 2000000) - 1000000;
        }
        qk_packed_weights *pw = NULL;
        QK_CHECK(qk_pack_conv2d(w, wt, oc, cpg, kh, kw, groups, wzp, &pw) == QK_OK, "pack");
        /* strides that keep the output small (at most 6 x 6) */
        const size_t hp = s.in_h + s.pad_top + s.pad_bottom, wp = s.in_w + s.pad_left + s.pad_right;
        const size_t eh = s.dil_h * (kh - 1) + 1, ew = s.dil_w * (kw - 1) + 1;
        if (eh > hp || ew > wp) {
            size_t oh0, ow0;
            QK_CHECK(qk_conv2d_out_size(&s, pw, &oh0, &ow0) == QK_ERR_ARG, "kernel > padded");
            qk_packed_weights_free(pw);
            continue;
        }
        s.stride_h = (hp - eh) / urnd(1, 6) + 1;
        s.stride_w = (wp - ew) / urnd(1, 6) + 1;
        if (!huge) s.stride_h = urnd(1, 2), s.stride_w = urnd(1, 2);
        size_t oh, ow;
        QK_CHECK(qk_conv2d_out_size(&s, pw, &oh, &ow) == QK_OK, "out size");
        const size_t nx = s.batch * s.in_c * s.in_h * s.in_w, ny = s.batch * oc * oh * ow;
        uint8_t *x = (uint8_t *)malloc(nx);
        for (size_t i = 0; i < nx; i++) x[i] = (uint8_t)qk_test_next();
        const int32_t xzp = (int32_t)urnd(0, 255) - (xt == QK_DT_U8 ? 0 : 128);
        int32_t *y1 = (int32_t *)malloc(ny * 4), *y3 = (int32_t *)malloc(ny * 4);
        uint8_t *q = (uint8_t *)malloc(ny), *qr = (uint8_t *)malloc(ny);
        qk_epilogue ep;
        memset(&ep, 0, sizeof ep);
        ep.scheme = QK_REQ_NONE;
        ep.out_type = QK_DT_S32;
        ep.bias = bias;
        QK_CHECK(qk_conv2d(&s, pw, x, xt, xzp, &ep, y1, 1) == QK_OK, "conv it=%d", it);
        QK_CHECK(qk_conv2d(&s, pw, x, xt, xzp, &ep, y3, 3) == QK_OK, "conv t3 it=%d", it);
        QK_CHECK(memcmp(y1, y3, ny * 4) == 0, "threads it=%d", it);
        size_t bad = 0;
        for (size_t b = 0; b < s.batch; b++)
            for (size_t o = 0; o < oc; o++)
                for (size_t i = 0; i < oh; i++)
                    for (size_t j = 0; j < ow; j++) {
                        int64_t acc = bias[o];
                        for (size_t c = 0; c < cpg; c++)
                            for (size_t r = 0; r < kh; r++)
                                for (size_t t = 0; t < kw; t++) {
                                    const long long ih = in_coord(i, s.stride_h, r, s.dil_h, s.pad_top, s.in_h);
                                    const long long iw = in_coord(j, s.stride_w, t, s.dil_w, s.pad_left, s.in_w);
                                    if (ih < 0 || iw < 0) continue;
                                    const size_t ch = o / ocg * cpg + c;
                                    acc += (int64_t)(val8(x, xt, ((b * s.in_c + ch) * s.in_h + (size_t)ih) * s.in_w + (size_t)iw) - xzp) *
                                           (val8(w, wt, ((o * cpg + c) * kh + r) * kw + t) - wzp[o]);
                                }
                        bad += acc != y1[((b * oc + o) * oh + i) * ow + j];
                    }
        QK_CHECK(bad == 0, "it=%d huge=%d: %zu of %zu differ from the reference (pads %zu %zu %zu "
                 "%zu, stride %zu %zu, dil %zu %zu)", it, huge, bad, ny, s.pad_top, s.pad_left,
                 s.pad_bottom, s.pad_right, s.stride_h, s.stride_w, s.dil_h, s.dil_w);
        /* the fp32 epilogue (fused kernels where they apply) against the requantize kernel */
        float scale[60];
        for (size_t o = 0; o < oc; o++) scale[o] = 1.0f / (float)urnd(1, 20000);
        ep.scheme = QK_REQ_FP32;
        ep.out_type = QK_DT_U8;
        ep.bias = NULL; /* y1 already holds acc + bias */
        ep.scale = scale;
        ep.zero_point = 100;
        ep.act_min = 0;
        ep.act_max = 255;
        ep.bias = bias;
        QK_CHECK(qk_conv2d(&s, pw, x, xt, xzp, &ep, q, 2) == QK_OK, "conv fp32");
        for (size_t bo = 0; bo < s.batch * oc; bo++)
            qk_requantize_s32_u8_fp32(y1 + bo * oh * ow, oh * ow, scale[bo % oc], 100, 0, 255,
                                      qr + bo * oh * ow);
        QK_CHECK(memcmp(q, qr, ny) == 0, "fp32 epilogue it=%d", it);
        qk_packed_weights_free(pw);
        free(x);
        free(y1);
        free(y3);
        free(q);
        free(qr);
    }
}

int main(void) {
    for (size_t c = 1; c <= 4; c += 3)
        for (int t = 0; t < 2; t++)
            for (int fp32 = 0; fp32 < 2; fp32++)
                test_wrapping_geometry(c, t ? QK_DT_S8 : QK_DT_U8, fp32);
    test_overflowing_sizes();
    test_pool_sizes();
    test_ptf_layernorm_sizes();
    test_sparse_vs_reference();
    return QK_TEST_SUMMARY();
}
