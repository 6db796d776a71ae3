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
#include "qops.h"

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
    QK_CHECK(st == QK_OK || st == QK_ERR_NOMEM, "status %d (c=%zu)", (int)st, c);
    if (st == QK_OK) {
        if (fp32)
            QK_CHECK(((uint8_t *)&y[1])[0] == 255 && y[0] == -1 && y[2] == -1,
                     "fp32 out %d (want 255: 12345 * 0.5 + 3 clamped)", ((uint8_t *)&y[1])[0]);
        else
            QK_CHECK(y[1] == 12345 && y[0] == -1 && y[2] == -1, "int32 out %d, want 12345", y[1]);
    } else {
        QK_CHECK(y[0] == -1 && y[1] == -1 && y[2] == -1, "nothing written on an error");
    }
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
    QK_CHECK((st == QK_OK && y[0] == 0) || (st == QK_ERR_NOMEM && y[0] == -7),
             "dilation 2^62: status %d, y %d", (int)st, y[0]);
    s.dil_h = SIZE_MAX / 2;
    QK_CHECK(qk_conv2d_out_size(&s, pw, &oh, &ow) == QK_ERR_ARG, "dilated extent wraps");
    qk_packed_weights_free(pw);
    /* linear: m * k and m * n beyond memory */
    QK_CHECK(qk_pack_linear(w, QK_DT_S8, 4, 4, wzp, &pw) == QK_OK, "pack linear");
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

int main(void) {
    for (size_t c = 1; c <= 4; c += 3)
        for (int t = 0; t < 2; t++)
            for (int fp32 = 0; fp32 < 2; fp32++)
                test_wrapping_geometry(c, t ? QK_DT_S8 : QK_DT_U8, fp32);
    test_overflowing_sizes();
    test_pool_sizes();
    test_ptf_layernorm_sizes();
    return QK_TEST_SUMMARY();
}
