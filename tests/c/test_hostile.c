/* test_hostile.c -- the C library checks its own arguments: sizes whose products wrap, geometry
 * beyond what memory can hold, and windows that only read padding get a status code (or the
 * exact result), never a crash, an endless loop or a write outside the caller's arrays.
 * Run by tests/test_clib.py on every path (auto = VNNI where the CPU has it, avx2, scalar) and by
 * `make sanitize` under ASan/UBSan. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conv_ref.h"
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
    /* fuzz finding: with QK_REQ_NONE the (unused, unchecked) act_min and zero_point fed an int32
     * subtraction that overflowed (UB) in the SIMD output stages */
    uint8_t x16[16 * 4];
    int32_t y16[16 * 4];
    memset(x16, 3, sizeof x16);
    ep.act_min = INT32_MIN;
    ep.act_max = INT32_MAX;
    ep.zero_point = INT32_MAX;
    QK_CHECK(qk_linear(pw, x16, QK_DT_U8, 16, 0, &ep, y16, 1) == QK_OK && y16[0] == 3 &&
                 y16[63] == 0,
             "int32 out with unused act_min/zero_point: %d %d", y16[0], y16[63]);
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
    /* fuzz finding: an empty output (ow = 0) with oh = 2^40 looped 2^40 times over nothing */
    QK_CHECK(qk_qmax_pool2d(x, QK_DT_S8, 2, 4, 1, 1, 1, 1, 1, 1, 1, 1, 1, (size_t)1 << 40, 0, y) ==
                 QK_OK,
             "max pool, empty output, huge oh");
    QK_CHECK(qk_qadaptive_avg_pool2d(x, QK_DT_U8, 0, 2, 2, (size_t)1 << 40, 1, y) == QK_OK,
             "avg pool, no planes, huge oh");
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
                    for (size_t j = 0; j < ow; j++)
                        bad += bias[o] + qk_ref_conv_acc(&s, x, xt, xzp, w, wt, wzp, ocg, cpg, kh,
                                                         kw, b, o, i, j) !=
                               y1[((b * oc + o) * oh + i) * ow + j];
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

/* The paths that stage the image in one buffer with the outputs after it (qk__conv2d_wide: a
 * batch of small images as one wide image; qk__conv2d_gemm: an unpadded 1x1 conv as qk_linear):
 * with an input part whose byte size is not a multiple of 4, the int32 outputs must still be
 * aligned (the scalar output stage stores int32_t; UBSan in make sanitize checks it, on every
 * path) and equal the reference. Found by make fuzz-c. */
static void test_staged_int32_outputs(void) {
    static const struct { size_t nb, groups, cpg, ocg, h, w, k, pad; } cases[] = {
        {2, 1, 3, 2, 3, 3, 3, 1},  /* wide: 3*3*2*5 = 90 input bytes */
        {2, 3, 2, 1, 3, 3, 3, 1},  /* wide, grouped (the fuzzer's case) */
        {3, 1, 1, 3, 1, 5, 3, 2},  /* wide: 1*1*3*9 = 27 */
        {1, 1, 25, 3, 1, 3, 1, 0}, /* gemm: 3 pixels x 25 channels = 75 bytes */
        {2, 1, 27, 5, 1, 1, 1, 0}, /* gemm: 2 x 27 = 54 */
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        qk_conv2d_shape s;
        memset(&s, 0, sizeof s);
        const size_t oc = cases[t].ocg * cases[t].groups, cpg = cases[t].cpg, k = cases[t].k;
        s.batch = cases[t].nb;
        s.in_c = cpg * cases[t].groups;
        s.in_h = cases[t].h;
        s.in_w = cases[t].w;
        s.pad_top = s.pad_left = s.pad_bottom = s.pad_right = cases[t].pad;
        s.stride_h = s.stride_w = s.dil_h = s.dil_w = 1;
        uint8_t w[5 * 27 * 9];
        for (size_t i = 0; i < oc * cpg * k * k; i++) w[i] = (uint8_t)qk_test_next();
        int32_t wzp[8] = {0}, bias[8];
        for (size_t o = 0; o < oc; o++) bias[o] = (int32_t)urnd(0, 2000) - 1000;
        qk_packed_weights *pw = NULL;
        QK_CHECK(qk_pack_conv2d(w, QK_DT_S8, oc, cpg, k, k, cases[t].groups, wzp, &pw) == QK_OK,
                 "pack case %zu", t);
        size_t oh, ow;
        QK_CHECK(qk_conv2d_out_size(&s, pw, &oh, &ow) == QK_OK, "out size case %zu", t);
        const size_t nx = s.batch * s.in_c * s.in_h * s.in_w, ny = s.batch * oc * oh * ow;
        uint8_t x[256];
        for (size_t i = 0; i < nx; i++) x[i] = (uint8_t)qk_test_next();
        int32_t y[256];
        qk_epilogue ep;
        memset(&ep, 0, sizeof ep);
        ep.scheme = QK_REQ_NONE;
        ep.out_type = QK_DT_S32;
        ep.bias = bias;
        QK_CHECK(qk_conv2d(&s, pw, x, QK_DT_U8, 7, &ep, y, 1) == QK_OK, "conv case %zu", t);
        size_t bad = 0;
        for (size_t b = 0; b < s.batch; b++)
            for (size_t o = 0; o < oc; o++)
                for (size_t i = 0; i < oh; i++)
                    for (size_t j = 0; j < ow; j++)
                        bad += bias[o] + qk_ref_conv_acc(&s, x, QK_DT_U8, 7, w, QK_DT_S8, wzp,
                                                         cases[t].ocg, cpg, k, k, b, o, i, j) !=
                               y[((b * oc + o) * oh + i) * ow + j];
        QK_CHECK(bad == 0, "case %zu: %zu of %zu differ from the reference", t, bad, ny);
        qk_packed_weights_free(pw);
    }
}

/* TFLite's QuantizeMultiplier when the mantissa rounds up to 2^31: multiplier 2^30, shift + 1
 * (also at the top of the range: 2^30 - 2^-2 gives shift 31); beyond shift 31, QK_ERR_SHIFT. */
static void test_quantize_multiplier_edges(void) {
    const struct {
        double m;
        int32_t m0, shift;
        qk_status st;
    } c[] = {
        {1073741824.0 - 0.25, 1 << 30, 31, QK_OK},
        {1073741824.0 - 0x1p-20, 1 << 30, 31, QK_OK},
        {1073741824.0 - 0.5, 2147483647, 30, QK_OK}, /* q * 2^31 = 2^31 - 1 exactly */
        {1073741824.0, 1 << 30, 31, QK_OK},
        {2147483648.0 - 1.0, 2147483647, 31, QK_OK},
        {2147483648.0 - 0.5, 0, 0, QK_ERR_SHIFT}, /* rounds up to shift 32 */
        {0.5 - 0x1p-34, 1 << 30, 0, QK_OK},
        {0.25 - 0x1p-35, 1 << 30, -1, QK_OK},
        {0x1p-32 - 0x1p-66, 1 << 30, -31, QK_OK}, /* rounds up into the range */
        {0x1p-33, 0, 0, QK_OK},                  /* shift < -31: zero */
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        int32_t m0 = -1, sh = -99;
        const qk_status st = qk_quantize_multiplier(c[i].m, &m0, &sh);
        QK_CHECK(st == c[i].st, "m=%.17g: status %d", c[i].m, (int)st);
        if (st == QK_OK && c[i].st == QK_OK)
            QK_CHECK(m0 == c[i].m0 && sh == c[i].shift, "m=%.17g: (%d, %d), want (%d, %d)", c[i].m,
                     m0, sh, c[i].m0, c[i].shift);
    }
}

/* Scales whose reciprocal overflows (denormals at or below 2^-128) are QK_ERR_SCALE for every
 * kernel that multiplies by fl(1/scale); the division flavours take them, and on every path the
 * result is the same (checked here against the formula: 0 / tiny = 0, 1 / tiny saturates). */
static void test_denormal_scales(void) {
    const float tiny[] = {1e-39f, 0x1p-128f, 0x1p-149f};
    float x[40];
    for (int i = 0; i < 40; i++) x[i] = i % 3 == 0 ? 0.0f : (i % 3 == 1 ? 1e-45f : -1.0f);
    for (size_t t = 0; t < 3; t++) {
        const float s = tiny[t];
        uint8_t yu[40];
        int8_t ys[40];
        int32_t y32[40];
        float yf[40];
        memset(ys, 77, sizeof ys);
        QK_CHECK(qk_quantize_f32_s8_pt2e(x, 40, s, 5, -128, 127, ys, NULL) == QK_ERR_SCALE &&
                     ys[0] == 77,
                 "pt2e s=%g", (double)s);
        QK_CHECK(qk_quantize_f32_u8_fbgemm(x, 40, s, 5, 0, 255, yu, NULL) == QK_ERR_SCALE, "fbgemm");
        QK_CHECK(qk_quantize_f32_s32_fbgemm_scalar(x, 40, s, 5, INT32_MIN, INT32_MAX, y32, NULL) ==
                     QK_ERR_SCALE,
                 "fbgemm_scalar");
        double xd[2] = {0.0, 1.0};
        int16_t y16[2];
        QK_CHECK(qk_quantize_f64_s16_pt2e(xd, 2, s, 0, INT16_MIN, INT16_MAX, y16, NULL) ==
                     QK_ERR_SCALE,
                 "f64 pt2e");
        QK_CHECK(qk_fake_quantize_f32_torch(x, 40, s, 0, -128, 127, yf, NULL) == QK_ERR_SCALE,
                 "fake quantize");
        /* division flavours: defined and equal to the formula on every path */
        QK_CHECK(qk_quantize_f32_s8_onnx(x, 40, s, 5, -128, 127, ys, NULL) == QK_OK, "onnx");
        for (int i = 0; i < 40; i++) {
            const float q = x[i] / s;
            const int32_t want = q != q ? -999 : (q > 122.0f ? 127 : (q < -133.0f ? -128 : (int32_t)nearbyintf(q) + 5));
            QK_CHECK(ys[i] == want, "onnx s=%g x=%g: %d want %d", (double)s, (double)x[i], ys[i], want);
        }
        QK_CHECK(qk_quantize_f32_s8_tflite(x, 40, s, 5, -128, 127, ys, NULL) == QK_OK, "tflite");
        uint8_t qa[16] = {0}, qy[16];
        QK_CHECK(qk_qadd(qa, qa, QK_DT_U8, 16, 0.5f, 0, 0.5f, 0, s, 0, 0, qy) == QK_ERR_SCALE,
                 "qadd out_scale");
        QK_CHECK(qk_qleaky_relu(qa, QK_DT_U8, 16, 0.5f, 0, 0.1f, s, 0, qy) == QK_ERR_SCALE,
                 "qleaky out_scale");
    }
    /* the smallest scale with a finite reciprocal is accepted */
    const float ok_s = nextafterf(0x1p-128f, 1.0f);
    int8_t ys[40];
    QK_CHECK(qk_quantize_f32_s8_pt2e(x, 40, ok_s, 5, -128, 127, ys, NULL) == QK_OK, "2^-128 + ulp");
    /* input scales of the quantized add beyond 2^118: inf - inf would be NaN */
    uint8_t qa[16], qb[16], qy[16];
    for (int i = 0; i < 16; i++) qa[i] = 255, qb[i] = 0;
    QK_CHECK(qk_qadd(qa, qb, QK_DT_U8, 16, 3e38f, 0, 3e38f, 255, 1.0f, 0, 0, qy) == QK_ERR_SCALE,
             "qadd huge input scales");
    QK_CHECK(qk_qleaky_relu(qa, QK_DT_U8, 16, 3e38f, 255, 0.0f, 1.0f, 0, qy) == QK_ERR_SCALE,
             "qleaky huge input scale");
    QK_CHECK(qk_qadd(qa, qb, QK_DT_U8, 16, 0x1p118f, 0, 0x1p118f, 255, 1.0f, 0, 0, qy) == QK_OK,
             "qadd 2^118");
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
    test_staged_int32_outputs();
    test_quantize_multiplier_edges();
    test_denormal_scales();
    return QK_TEST_SUMMARY();
}
