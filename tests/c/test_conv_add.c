/* test_conv_add.c -- qk_conv2d_add (the residual add fused into the conv's call) gives
 * exactly qk_conv2d then qk_qadd, on every path of qk_conv2d (the 8-bit tiles with the fused fp32
 * output, the channel-quad direct tiles, the unfused fixed-point output, depthwise planes fused
 * and unfused, 1x1 as a GEMM, a batch as one wide image, the direct path of windows of mostly
 * padding; the int16 tiles when test_clib.py runs it with QKERNELS_SIMD=avx2 / scalar), at 1 and
 * 2 threads, with sums that saturate, ReLU or not, u8 and s8; and its refusals. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qk_test.h"

static int32_t rnd(int32_t lo, int32_t hi) {
    return lo + (int32_t)(qk_test_next() % (unsigned long long)(hi - lo + 1));
}

static void fill(void *p, size_t n) {
    for (size_t i = 0; i < n; i++) ((uint8_t *)p)[i] = (uint8_t)rnd(0, 255);
}

typedef struct {
    size_t batch, in_c, out_c, h, w, k, stride, pad, groups;
    int fp32;   /* QK_REQ_FP32 (the fused 8-bit output), else QK_REQ_DOUBLE */
    int wzp;    /* nonzero weight zero points */
} conv_case;

/* One case: every (out type, relu, add scales) combination against conv then qadd. */
static void run_case(const conv_case *cc) {
    qk_conv2d_shape s;
    memset(&s, 0, sizeof s);
    s.batch = cc->batch;
    s.in_c = cc->in_c;
    s.in_h = cc->h;
    s.in_w = cc->w;
    s.stride_h = s.stride_w = cc->stride;
    s.pad_top = s.pad_left = s.pad_bottom = s.pad_right = cc->pad;
    s.dil_h = s.dil_w = 1;
    const size_t cpg = cc->in_c / cc->groups, n = cc->out_c;
    const size_t nx = s.batch * s.in_c * s.in_h * s.in_w, nw = n * cpg * cc->k * cc->k;
    uint8_t *x = (uint8_t *)malloc(nx), *w = (uint8_t *)malloc(nw);
    int32_t *wzp = (int32_t *)calloc(n, 4), *bias = (int32_t *)malloc(n * 4);
    int32_t *mult = (int32_t *)malloc(n * 4), *shift = (int32_t *)malloc(n * 4);
    float *scale = (float *)malloc(n * 4);
    fill(x, nx);
    fill(w, nw);
    for (size_t o = 0; o < n; o++) {
        if (cc->wzp) wzp[o] = rnd(-3, 3);
        bias[o] = rnd(-2000, 2000);
        scale[o] = 1e-4f * (float)rnd(5, 60);
        mult[o] = rnd(1 << 30, 0x7FFFFFFF);
        shift[o] = rnd(-14, -9);
    }
    qk_packed_weights *pw = NULL;
    QK_CHECK(qk_pack_conv2d(w, QK_DT_S8, n, cpg, cc->k, cc->k, cc->groups, wzp, &pw) == QK_OK,
             "pack");
    size_t oh = 0, ow = 0;
    QK_CHECK(qk_conv2d_out_size(&s, pw, &oh, &ow) == QK_OK, "out size");
    const size_t ny = s.batch * n * oh * ow;
    uint8_t *conv = (uint8_t *)malloc(ny), *ref = (uint8_t *)malloc(ny), *other = (uint8_t *)malloc(ny);
    uint8_t *y1 = (uint8_t *)malloc(ny), *y2 = (uint8_t *)malloc(ny);
    for (int variant = 0; variant < 6; variant++) {
        const qk_dtype ot = variant & 1 ? QK_DT_S8 : QK_DT_U8;
        const int relu = (variant >> 1) & 1, sat = variant >= 4;
        qk_epilogue ep;
        memset(&ep, 0, sizeof ep);
        ep.out_type = ot;
        ep.bias = bias;
        if (cc->fp32) {
            ep.scheme = QK_REQ_FP32;
            ep.scale = scale;
        } else {
            ep.scheme = QK_REQ_DOUBLE;
            ep.multiplier = mult;
            ep.shift = shift;
        }
        ep.zero_point = ot == QK_DT_U8 ? rnd(0, 255) : rnd(-128, 127);
        ep.act_min = ot == QK_DT_U8 ? 0 : -128;
        ep.act_max = ot == QK_DT_U8 ? 255 : 127;
        if (relu) ep.act_min = ep.zero_point; /* the conv's own ReLU too, sometimes */
        qk_conv_add add;
        add.other = other;
        add.conv_scale = 0.05f * (float)rnd(1, 9);
        add.other_scale = 0.03f * (float)rnd(1, 9);
        add.other_zp = ot == QK_DT_U8 ? rnd(0, 255) : rnd(-128, 127);
        /* sat: an output scale small enough that most sums leave the 8-bit range */
        add.out_scale = sat ? 0.01f : 0.05f * (float)rnd(2, 12);
        add.out_zp = ot == QK_DT_U8 ? rnd(0, 255) : rnd(-128, 127);
        add.relu = relu;
        fill(other, ny);
        QK_CHECK(qk_conv2d(&s, pw, x, QK_DT_U8, 7, &ep, conv, 1) == QK_OK, "conv");
        QK_CHECK(qk_qadd(conv, other, ot, ny, add.conv_scale, ep.zero_point, add.other_scale,
                         add.other_zp, add.out_scale, add.out_zp, relu, ref) == QK_OK,
                 "qadd");
        QK_CHECK(qk_conv2d_add(&s, pw, x, QK_DT_U8, 7, &ep, &add, y1, 1) == QK_OK, "fused");
        QK_CHECK(qk_conv2d_add(&s, pw, x, QK_DT_U8, 7, &ep, &add, y2, 2) == QK_OK, "fused t2");
        size_t bad1 = 0, bad2 = 0, lo = 0, hi = 0;
        for (size_t i = 0; i < ny; i++) {
            bad1 += y1[i] != ref[i];
            bad2 += y2[i] != ref[i];
            const int32_t v = ot == QK_DT_U8 ? (int32_t)ref[i] : (int32_t)(int8_t)ref[i];
            lo += v == (ot == QK_DT_U8 ? 0 : -128);
            hi += v == (ot == QK_DT_U8 ? 255 : 127);
        }
        QK_CHECK(bad1 == 0 && bad2 == 0,
                 "b%zu c%zu->%zu %zux%zu k%zu s%zu p%zu g%zu fp32 %d variant %d: %zu / %zu differ",
                 cc->batch, cc->in_c, n, cc->h, cc->w, cc->k, cc->stride, cc->pad, cc->groups,
                 cc->fp32, variant, bad1, bad2);
        if (sat) QK_CHECK(lo + hi > ny / 4, "the saturating case saturates (%zu + %zu of %zu)", lo, hi, ny);
    }
    /* refusals, before anything is written */
    {
        qk_epilogue ep;
        memset(&ep, 0, sizeof ep);
        ep.scheme = QK_REQ_FP32;
        ep.scale = scale;
        ep.out_type = QK_DT_U8;
        ep.act_max = 255;
        qk_conv_add add = {other, 0.1f, 0.1f, 3, 0.2f, 4, 0};
        memset(y1, 0xAB, ny);
        /* a copy of add with one field changed is refused with code */
#define REFUSED(FIELD, VALUE, CODE)                                                        \
    do {                                                                                   \
        qk_conv_add bad = add;                                                             \
        bad.FIELD = VALUE;                                                                 \
        QK_CHECK(qk_conv2d_add(&s, pw, x, QK_DT_U8, 7, &ep, &bad, y1, 1) == CODE, #FIELD); \
    } while (0)
        REFUSED(other, y1 + ny / 2, QK_ERR_ARG); /* overlaps y */
        REFUSED(other, NULL, QK_ERR_ARG);
        REFUSED(out_scale, 0.0f, QK_ERR_SCALE);
        REFUSED(conv_scale, NAN, QK_ERR_SCALE);
        REFUSED(other_scale, INFINITY, QK_ERR_SCALE);
        REFUSED(other_zp, 256, QK_ERR_ZERO_POINT);
        REFUSED(out_zp, -1, QK_ERR_ZERO_POINT);
#undef REFUSED
        int untouched = 1;
        for (size_t i = 0; i < ny; i++) untouched &= y1[i] == 0xAB;
        QK_CHECK(untouched, "a refused call writes nothing");
        qk_epilogue e32;
        memset(&e32, 0, sizeof e32);
        e32.scheme = QK_REQ_NONE;
        e32.out_type = QK_DT_S32;
        int32_t *y32 = (int32_t *)malloc(ny * 4);
        QK_CHECK(qk_conv2d_add(&s, pw, x, QK_DT_U8, 7, &e32, &add, y32, 1) == QK_ERR_ARG, "s32 out");
        free(y32);
        QK_CHECK(qk_conv2d_add(&s, pw, x, QK_DT_U8, 7, &ep, NULL, y1, 1) == QK_OK, "add NULL");
        QK_CHECK(qk_conv2d(&s, pw, x, QK_DT_U8, 7, &ep, y2, 1) == QK_OK, "conv");
        QK_CHECK(memcmp(y1, y2, ny) == 0, "add NULL is qk_conv2d");
    }
    qk_packed_weights_free(pw);
    free(x);
    free(w);
    free(wzp);
    free(bias);
    free(mult);
    free(shift);
    free(scale);
    free(conv);
    free(ref);
    free(other);
    free(y1);
    free(y2);
}

int main(void) {
    static const conv_case cases[] = {
        /* batch, in_c, out_c, h, w, k, stride, pad, groups, fp32, wzp */
        {1, 64, 64, 14, 14, 1, 1, 0, 1, 1, 0},   /* 1x1 tiles read in place (bottleneck) */
        {1, 24, 40, 20, 21, 3, 1, 1, 1, 1, 0},   /* channel-quad direct tiles, border rows */
        {1, 24, 40, 20, 21, 3, 1, 1, 1, 1, 1},   /* weight zero points: panels */
        {1, 24, 20, 19, 17, 3, 2, 1, 1, 0, 0},   /* fixed-point output: unfused tile output */
        {2, 3, 16, 11, 11, 3, 1, 1, 1, 1, 0},    /* plain image, 3 channels */
        {1, 32, 32, 15, 15, 3, 1, 1, 32, 1, 0},  /* depthwise, fused plane */
        {1, 32, 32, 15, 15, 3, 2, 1, 32, 0, 0},  /* depthwise, unfused */
        {2, 64, 24, 4, 4, 1, 1, 0, 1, 1, 0},     /* 1x1 as a GEMM over the pixels */
        {3, 5, 12, 5, 5, 3, 1, 1, 1, 1, 0},      /* a batch of small images as one wide image */
        {1, 4, 8, 3, 3, 3, 1, 30, 1, 1, 0},      /* windows of mostly padding: the direct path */
        {1, 16, 12, 7, 7, 1, 1, 0, 1, 1, 0},     /* 12-row blocks, tiles of 16 + 1 pixels */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i]);
    return QK_TEST_SUMMARY();
}
