/* test_conv_s16_fused.c -- the int16 kernels' paths with the fp32 output stage fused (8-bit out).
 * The depthwise planes (qk_dw_plane_fused): the kernel against its scalar twin and against the
 * plane's int32 sums through the scalar output stage (every geometry the plane kernels take), and
 * depthwise qk_conv2d (channel multipliers 1 and 2, padding, strides 1-3, dilation) against the
 * int64 reference through that stage, threads 1 / 2 / 3, a strided output.
 * qk_conv2d's unpadded stride-1 1x1 path (conv2d_1x1.c):
 *   - its micro-kernels (the panel read from NCHW planes, the 6 x 16 tile with the fp32 output
 *     stage in registers) against their scalar twins, when the CPU has AVX2;
 *   - the conv, 8-bit fp32-requantized output (int32 bias, float bias, u8 / s8, clamps), against
 *     the int64 sums of the reference run through the scalar output stage, and against the int32
 *     sums of the general tiles (QK_REQ_NONE takes them) run through that output stage: shapes on
 *     both sides of the path's rules (padding, stride 2, the 1x1-as-GEMM images of <= 64 pixels,
 *     groups), every tail of the 16-pixel tiles, odd k; threads 1, 2 and 3; a strided output;
 *     the fused residual add (qk_conv2d_add) == the conv then qk_qadd. */
#include "conv_ref.h"
#include "operators/operators.h"
#include "qk_test.h"

#include <stdlib.h>
#include <string.h>

static int32_t rnd(int32_t lo, int32_t hi) {
    return lo + (int32_t)(qk_test_next() % (unsigned long long)(hi - lo + 1));
}

static void fill(void *p, qk_dtype t, size_t n) {
    for (size_t i = 0; i < n; i++)
        ((uint8_t *)p)[i] = t == QK_DT_U8 ? (uint8_t)rnd(0, 255) : (uint8_t)(int8_t)rnd(-128, 127);
}

/* An fp32 output stage for n channels: random scales around the sums' size (outputs across the
 * whole range and clamped at both ends), with or without the int32 and float biases. */
typedef struct {
    qk_epilogue ep;
    float scale[200], fbias[200];
    int32_t bias[200];
} test_ep;

static void make_ep(test_ep *t, size_t n, qk_dtype out, int biases) {
    memset(&t->ep, 0, sizeof t->ep);
    for (size_t o = 0; o < n; o++) {
        t->scale[o] = (float)rnd(1, 4000) * 1e-6f;
        t->fbias[o] = (float)rnd(-3000, 3000) * 0.25f;
        t->bias[o] = rnd(-40000, 40000);
    }
    t->ep.scheme = QK_REQ_FP32;
    t->ep.out_type = out;
    t->ep.scale = t->scale;
    t->ep.bias = biases & 1 ? t->bias : NULL;
    t->ep.float_bias = biases & 2 ? t->fbias : NULL;
    if (out == QK_DT_U8) {
        t->ep.zero_point = rnd(0, 255);
        t->ep.act_min = rnd(0, 1) ? t->ep.zero_point : 0; /* ReLU or none */
        t->ep.act_max = 255;
    } else {
        t->ep.zero_point = rnd(-128, 127);
        t->ep.act_min = -128;
        t->ep.act_max = rnd(0, 1) ? 127 : 100;
    }
}

static void test_twins(void) {
#if QK_X86
    if (!qk_cpu_has_avx2()) return;
    for (int it = 0; it < 300; it++) { /* the panel */
        const size_t k = (size_t)rnd(1, 41), cnt = (size_t)rnd(1, 16), plane = cnt + (size_t)rnd(0, 20);
        const qk_dtype xt = rnd(0, 1) ? QK_DT_U8 : QK_DT_S8;
        const int32_t zp = xt == QK_DT_U8 ? rnd(0, 255) : rnd(-128, 127);
        uint8_t x[41 * 36];
        fill(x, xt, k * plane);
        int16_t p1[21 * 32], p2[21 * 32];
        memset(p1, 0x55, sizeof p1);
        memset(p2, 0x55, sizeof p2);
        qk_panel_s16_1x1__scalar(x, xt, zp, plane, k, cnt, p1);
        qk_panel_s16_1x1__avx2(x, xt, zp, plane, k, cnt, p2);
        QK_CHECK(memcmp(p1, p2, (k + 1) / 2 * 32 * sizeof(int16_t)) == 0,
                 "panel twin k=%zu cnt=%zu", k, cnt);
        int ok = 1; /* and what it holds */
        for (size_t kk = 0; kk < (k + 1) / 2 * 2; kk++)
            for (size_t i = 0; i < 16; i++) {
                const int32_t v = kk < k && i < cnt ? qk_ref_q8(x, xt, kk * plane + i) - zp : 0;
                ok &= p1[(kk / 2) * 32 + 2 * i + (kk & 1)] == v;
            }
        QK_CHECK(ok, "panel content k=%zu cnt=%zu", k, cnt);
    }
    for (int it = 0; it < 400; it++) { /* the fused tile */
        const size_t kp = (size_t)rnd(1, 40), mr = (size_t)rnd(1, 6), lda = 2 * kp + (size_t)rnd(0, 3);
        const size_t cnt = (size_t)rnd(1, 16), ys = 16 + (size_t)rnd(0, 5), o0 = (size_t)rnd(0, 7);
        int16_t a[6 * 90], b[40 * 32];
        for (size_t i = 0; i < 6 * lda; i++) a[i] = (int16_t)rnd(-255, 255);
        for (size_t i = 0; i < kp * 32; i++) b[i] = (int16_t)rnd(-255, 255);
        test_ep t;
        make_ep(&t, 16, rnd(0, 1) ? QK_DT_U8 : QK_DT_S8, rnd(0, 3));
        uint8_t y1[6 * 21], y2[6 * 21];
        memset(y1, 0xA5, sizeof y1);
        memset(y2, 0xA5, sizeof y2);
        qk_gemm_s16_fused_6x16__scalar(mr, kp, a, lda, b, &t.ep, o0, cnt, y1, ys);
        qk_gemm_s16_fused_6x16__avx2(mr, kp, a, lda, b, &t.ep, o0, cnt, y2, ys);
        QK_CHECK(memcmp(y1, y2, sizeof y1) == 0, "fused tile twin kp=%zu mr=%zu cnt=%zu", kp, mr, cnt);
        int ok = 1; /* == the tile through the output stage, nothing else written */
        int32_t tile[96];
        uint8_t row[16];
        qk_gemm_s16_6x16__scalar(mr, kp, a, lda, b, tile);
        for (size_t r = 0; r < 6; r++) {
            if (r < mr) {
                ok &= qk_epilogue_run__scalar(&t.ep, o0 + r, tile + 16 * r, cnt, row) == QK_OK;
                ok &= memcmp(row, y1 + r * ys, cnt) == 0;
            }
            for (size_t i = r < mr ? cnt : 0; i < ys && r * ys + i < sizeof y1; i++)
                ok &= y1[r * ys + i] == 0xA5;
        }
        QK_CHECK(ok, "fused tile vs tile + output stage kp=%zu mr=%zu cnt=%zu", kp, mr, cnt);
    }
#endif
}

/* The conv's outputs: the reference sums through the scalar output stage. */
static int conv_matches(const qk_conv2d_shape *s, const uint8_t *x, qk_dtype xt, int32_t xzp,
                        const uint8_t *w, qk_dtype wt, const int32_t *wzp, size_t oc, size_t groups,
                        size_t oh, size_t ow, const qk_epilogue *ep, const uint8_t *y) {
    const size_t cpg = s->in_c / groups, ocg = oc / groups;
    for (size_t b = 0; b < s->batch; b++)
        for (size_t o = 0; o < oc; o++)
            for (size_t i = 0; i < oh; i++)
                for (size_t j = 0; j < ow; j++) {
                    const int32_t acc = (int32_t)qk_ref_conv_acc(s, x, xt, xzp, w, wt, wzp, ocg,
                                                                 cpg, 1, 1, b, o, i, j);
                    uint8_t q;
                    qk_epilogue_run__scalar(ep, o, &acc, 1, &q);
                    if (q != y[((b * oc + o) * oh + i) * ow + j]) return 0;
                }
    return 1;
}

static void test_conv(void) {
    /* batch, in_c, in_h, in_w, out_c, groups, stride, pad: the path (unpadded, stride 1, one
     * group, more than 64 pixels or k < 24 with rows of 8 or more) and its neighbours */
    static const size_t cases[][8] = {
        {1, 16, 12, 12, 96, 1, 1, 0}, {1, 24, 14, 14, 13, 1, 1, 0},  {2, 7, 9, 9, 5, 1, 1, 0},
        {1, 32, 28, 28, 16, 1, 1, 0}, {3, 5, 3, 37, 11, 1, 1, 0},    {1, 1, 17, 1, 7, 1, 1, 0},
        {1, 33, 8, 9, 6, 1, 1, 0},    {2, 12, 4, 16, 25, 1, 1, 0},   {1, 96, 14, 14, 24, 1, 1, 0},
        {1, 3, 5, 8, 4, 1, 1, 0},     /* 40 pixels, k 3, rows of 8: this path (k < 24) */
        {1, 30, 5, 6, 7, 1, 1, 0},    /* 30 pixels, k 30: the 1x1-as-GEMM path */
        {1, 16, 10, 10, 8, 1, 1, 1},  /* padded: the tiles */
        {1, 16, 10, 10, 8, 1, 2, 0},  /* stride 2: the tiles */
        {2, 16, 9, 9, 12, 2, 1, 0},   /* groups: the tiles */
    };
    for (size_t it = 0; it < sizeof cases / sizeof cases[0]; it++) {
        const size_t *c = cases[it];
        qk_conv2d_shape s;
        memset(&s, 0, sizeof s);
        s.batch = c[0];
        s.in_c = c[1];
        s.in_h = c[2];
        s.in_w = c[3];
        s.stride_h = s.stride_w = c[6];
        s.pad_top = s.pad_left = s.pad_bottom = s.pad_right = c[7];
        s.dil_h = s.dil_w = 1;
        const size_t oc = c[4], groups = c[5], cpg = s.in_c / groups;
        for (int v = 0; v < 4; v++) {
            const qk_dtype xt = v & 1 ? QK_DT_S8 : QK_DT_U8, wt = v & 2 ? QK_DT_U8 : QK_DT_S8;
            const size_t nx = s.batch * s.in_c * s.in_h * s.in_w, nw = oc * cpg;
            uint8_t *x = (uint8_t *)malloc(nx), *w = (uint8_t *)malloc(nw);
            fill(x, xt, nx);
            fill(w, wt, nw);
            int32_t wzp[200];
            for (size_t o = 0; o < oc; o++) wzp[o] = wt == QK_DT_U8 ? rnd(0, 255) : rnd(-128, 127);
            const int32_t xzp = xt == QK_DT_U8 ? rnd(0, 255) : rnd(-128, 127);
            qk_packed_weights *pw = NULL;
            QK_CHECK(qk_pack_conv2d(w, wt, oc, cpg, 1, 1, groups, wzp, &pw) == QK_OK, "pack");
            size_t oh = 0, ow = 0;
            QK_CHECK(qk_conv2d_out_size(&s, pw, &oh, &ow) == QK_OK, "out size");
            const size_t img = oc * oh * ow, ny = s.batch * img;
            test_ep t;
            make_ep(&t, oc, v & 1 ? QK_DT_S8 : QK_DT_U8, v);
            uint8_t *y1 = (uint8_t *)malloc(ny), *y2 = (uint8_t *)malloc(ny);
            QK_CHECK(qk_conv2d(&s, pw, x, xt, xzp, &t.ep, y1, 1) == QK_OK, "conv");
            QK_CHECK(conv_matches(&s, x, xt, xzp, w, wt, wzp, oc, groups, oh, ow, &t.ep, y1),
                     "conv vs reference, case %zu v=%d", it, v);
            /* the general tiles' int32 sums (QK_REQ_NONE never takes this path) */
            int32_t *acc = (int32_t *)malloc(ny * 4);
            qk_epilogue none;
            memset(&none, 0, sizeof none);
            none.scheme = QK_REQ_NONE;
            none.out_type = QK_DT_S32;
            none.bias = t.ep.bias;
            QK_CHECK(qk_conv2d(&s, pw, x, xt, xzp, &none, acc, 1) == QK_OK, "conv int32");
            int ok = 1;
            for (size_t i = 0; i < ny; i++) {
                qk_epilogue e = t.ep;
                e.bias = NULL; /* (already in acc) */
                uint8_t q;
                qk_epilogue_run__scalar(&e, i / (oh * ow) % oc, acc + i, 1, &q);
                ok &= q == y1[i];
            }
            QK_CHECK(ok, "conv == general tiles + output stage, case %zu v=%d", it, v);
            for (int th = 2; th <= 3; th++) {
                QK_CHECK(qk_conv2d(&s, pw, x, xt, xzp, &t.ep, y2, th) == QK_OK, "conv threads");
                QK_CHECK(memcmp(y1, y2, ny) == 0, "conv threads %d, case %zu", th, it);
            }
            /* images ys apart, the bytes between untouched */
            const size_t ys = img + (size_t)rnd(1, 9), n3 = (s.batch - 1) * ys + img + 5;
            uint8_t *y3 = (uint8_t *)malloc(n3);
            memset(y3, 0x5A, n3);
            QK_CHECK(qk_conv2d_strided(&s, pw, x, xt, xzp, &t.ep, y3, ys, 2) == QK_OK, "strided");
            ok = 1;
            for (size_t i = 0; i < n3; i++) {
                const size_t b = i / ys, r = i % ys;
                ok &= b < s.batch && r < img ? y3[i] == y1[b * img + r] : y3[i] == 0x5A;
            }
            QK_CHECK(ok, "strided == contiguous, case %zu", it);
            /* the fused add: conv then qk_qadd over the whole output */
            if (groups == 1) {
                uint8_t *other = (uint8_t *)malloc(ny), *y4 = (uint8_t *)malloc(ny);
                fill(other, t.ep.out_type, ny);
                qk_conv_add add;
                memset(&add, 0, sizeof add);
                add.other = other;
                add.conv_scale = 0.05f;
                add.other_scale = 0.04f;
                add.other_zp = t.ep.out_type == QK_DT_U8 ? 120 : -5;
                add.out_scale = 0.07f;
                add.out_zp = t.ep.out_type == QK_DT_U8 ? 100 : 3;
                add.relu = v & 1;
                QK_CHECK(qk_conv2d_add(&s, pw, x, xt, xzp, &t.ep, &add, y4, 2) == QK_OK, "conv add");
                QK_CHECK(qk_qadd(y1, other, t.ep.out_type, ny, add.conv_scale, t.ep.zero_point,
                                 add.other_scale, add.other_zp, add.out_scale, add.out_zp, add.relu,
                                 y2) == QK_OK,
                         "qadd");
                QK_CHECK(memcmp(y2, y4, ny) == 0, "conv add == conv then qadd, case %zu", it);
                free(other);
                free(y4);
            }
            qk_packed_weights_free(pw);
            free(x); free(w); free(y1); free(y2); free(y3); free(acc);
        }
    }
}

static void test_dw_twins(void) {
    for (int it = 0; it < 400; it++) {
        const size_t kh = (size_t)rnd(1, 5), kw = (size_t)rnd(1, 5), sw = (size_t)rnd(1, 3);
        const size_t sh = (size_t)rnd(1, 3), dh = (size_t)rnd(1, 2), dw = (size_t)rnd(1, 2);
        const size_t ow = (size_t)rnd(1, 70), oh = (size_t)rnd(1, 5);
        const size_t wp = (ow - 1) * sw + dw * (kw - 1) + 1 + (size_t)rnd(0, 3);
        const size_t hp = (oh - 1) * sh + dh * (kh - 1) + 1;
        int16_t *x = (int16_t *)calloc(wp * hp + 192, sizeof(int16_t));
        int16_t w[25];
        for (size_t i = 0; i < wp * hp; i++) x[i] = (int16_t)rnd(-255, 255);
        for (size_t i = 0; i < kh * kw; i++) w[i] = (int16_t)rnd(-255, 255);
        test_ep t;
        make_ep(&t, 4, rnd(0, 1) ? QK_DT_U8 : QK_DT_S8, rnd(0, 3));
        const size_t o = (size_t)rnd(0, 3);
        int32_t acc[350];
        uint8_t ref[350 + 8], y1[350 + 8], y2[350 + 8];
        qk_dw_plane__scalar(x, wp, w, kh, kw, sh, sw, dh, dw, oh, ow, acc);
        memset(ref, 0xA5, sizeof ref);
        memset(y1, 0xA5, sizeof y1);
        memset(y2, 0xA5, sizeof y2);
        QK_CHECK(qk_epilogue_run__scalar(&t.ep, o, acc, oh * ow, ref) == QK_OK, "output stage");
        qk_dw_plane_fused__scalar(x, wp, w, kh, kw, sh, sw, dh, dw, oh, ow, &t.ep, o, y1);
        QK_CHECK(memcmp(ref, y1, sizeof ref) == 0, "dw fused scalar vs plane + stage ow=%zu sw=%zu",
                 ow, sw);
#if QK_X86
        if (qk_cpu_has_avx2()) {
            qk_dw_plane_fused__avx2(x, wp, w, kh, kw, sh, sw, dh, dw, oh, ow, &t.ep, o, y2);
            QK_CHECK(memcmp(ref, y2, sizeof ref) == 0, "dw fused avx2 twin ow=%zu sw=%zu kh=%zu kw=%zu",
                     ow, sw, kh, kw);
        }
#endif
        free(x);
    }
}

static void test_dw_conv(void) {
    /* batch, channels, in_h, in_w, multiplier, k, stride, pad, dilation */
    static const size_t cases[][9] = {
        {1, 8, 14, 14, 1, 3, 1, 1, 1}, {2, 5, 9, 23, 1, 3, 2, 1, 1}, {1, 6, 7, 7, 2, 3, 1, 1, 1},
        {1, 3, 17, 40, 1, 5, 1, 2, 1}, {2, 4, 8, 8, 1, 3, 3, 0, 1}, {1, 4, 12, 12, 1, 3, 1, 2, 2},
        {1, 16, 28, 28, 1, 3, 2, 1, 1}, {3, 2, 1, 1, 1, 3, 1, 1, 1}, {1, 2, 5, 33, 2, 1, 1, 0, 1}};
    for (size_t it = 0; it < sizeof cases / sizeof cases[0]; it++) {
        const size_t *c = cases[it];
        qk_conv2d_shape s;
        memset(&s, 0, sizeof s);
        s.batch = c[0];
        s.in_c = c[1];
        s.in_h = c[2];
        s.in_w = c[3];
        s.stride_h = s.stride_w = c[6];
        s.pad_top = s.pad_left = s.pad_bottom = s.pad_right = c[7];
        s.dil_h = s.dil_w = c[8];
        const size_t oc = c[1] * c[4], k = c[5];
        for (int v = 0; v < 4; v++) {
            const qk_dtype xt = v & 1 ? QK_DT_S8 : QK_DT_U8, wt = v & 2 ? QK_DT_U8 : QK_DT_S8;
            const size_t nx = s.batch * s.in_c * s.in_h * s.in_w, nw = oc * k * k;
            uint8_t *x = (uint8_t *)malloc(nx), *w = (uint8_t *)malloc(nw);
            fill(x, xt, nx);
            fill(w, wt, nw);
            int32_t wzp[200];
            for (size_t o = 0; o < oc; o++) wzp[o] = wt == QK_DT_U8 ? rnd(0, 255) : rnd(-128, 127);
            const int32_t xzp = xt == QK_DT_U8 ? rnd(0, 255) : rnd(-128, 127);
            qk_packed_weights *pw = NULL;
            QK_CHECK(qk_pack_conv2d(w, wt, oc, 1, k, k, s.in_c, wzp, &pw) == QK_OK, "pack dw");
            size_t oh = 0, ow = 0;
            QK_CHECK(qk_conv2d_out_size(&s, pw, &oh, &ow) == QK_OK, "out size");
            const size_t img = oc * oh * ow, ny = s.batch * img;
            test_ep t;
            make_ep(&t, oc, v & 1 ? QK_DT_S8 : QK_DT_U8, v);
            uint8_t *y1 = (uint8_t *)malloc(ny), *y2 = (uint8_t *)malloc(ny);
            QK_CHECK(qk_conv2d(&s, pw, x, xt, xzp, &t.ep, y1, 1) == QK_OK, "dw conv");
            int ok = 1;
            const size_t ocg = oc / s.in_c;
            for (size_t b = 0; b < s.batch; b++)
                for (size_t o = 0; o < oc; o++)
                    for (size_t i = 0; i < oh; i++)
                        for (size_t j = 0; j < ow; j++) {
                            const int32_t acc = (int32_t)qk_ref_conv_acc(
                                &s, x, xt, xzp, w, wt, wzp, ocg, 1, k, k, b, o, i, j);
                            uint8_t q;
                            qk_epilogue_run__scalar(&t.ep, o, &acc, 1, &q);
                            ok &= q == y1[((b * oc + o) * oh + i) * ow + j];
                        }
            QK_CHECK(ok, "dw conv vs reference, case %zu v=%d", it, v);
            for (int th = 2; th <= 3; th++) {
                QK_CHECK(qk_conv2d(&s, pw, x, xt, xzp, &t.ep, y2, th) == QK_OK, "dw threads");
                QK_CHECK(memcmp(y1, y2, ny) == 0, "dw threads %d, case %zu", th, it);
            }
            const size_t ys = img + (size_t)rnd(1, 9), n3 = (s.batch - 1) * ys + img + 5;
            uint8_t *y3 = (uint8_t *)malloc(n3);
            memset(y3, 0x5A, n3);
            QK_CHECK(qk_conv2d_strided(&s, pw, x, xt, xzp, &t.ep, y3, ys, 2) == QK_OK, "strided");
            ok = 1;
            for (size_t i = 0; i < n3; i++) {
                const size_t b = i / ys, r = i % ys;
                ok &= b < s.batch && r < img ? y3[i] == y1[b * img + r] : y3[i] == 0x5A;
            }
            QK_CHECK(ok, "dw strided == contiguous, case %zu", it);
            qk_packed_weights_free(pw);
            free(x); free(w); free(y1); free(y2); free(y3);
        }
    }
}

int main(void) {
    printf("isa: %s\n", qk_isa_name(qk_isa()));
    test_twins();
    test_conv();
    test_dw_twins();
    test_dw_conv();
    return QK_TEST_SUMMARY();
}
