/* test_qops_se.c -- the squeeze-excitation ops of csrc/elementwise/qops.c (quantized mul, one
 * factor a plane or elementwise; global average pooling in PyTorch's channels-last steps)
 * against brute-force references written from qkernels.h, on lengths that leave SIMD tails. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "qk_test.h"
#include "qkernels.h"

static void fill(uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)qk_test_next();
}

static int32_t val(const uint8_t *p, size_t i, int s8) { return s8 ? (int8_t)p[i] : p[i]; }

static int32_t clampi(long v, int s8) {
    const long lo = s8 ? -128 : 0, hi = s8 ? 127 : 255;
    return (int32_t)(v < lo ? lo : v > hi ? hi : v);
}

static void test_qmul(int s8, size_t rows, size_t cols, int per_row) {
    const size_t n = rows * cols, nb = per_row ? rows : n;
    uint8_t *a = malloc(n + 1), *b = malloc(nb + 1), *y = malloc(n + 1);
    fill(a, n);
    fill(b, nb);
    const qk_dtype t = s8 ? QK_DT_S8 : QK_DT_U8;
    const int32_t za = s8 ? -7 : 121, zb = s8 ? 3 : 0, zo = s8 ? -2 : 130;
    const float sa = 0.031f, sb = 1.0f / 256, so = 0.0123f;
    const float m = (sa * sb) * (1.0f / so);
    int bad = 0;
    for (int relu = 0; relu < 2; relu++) {
        QK_CHECK(qk_qmul(a, b, t, rows, cols, per_row, sa, za, sb, zb, so, zo, relu, y) == QK_OK,
                 "qmul status");
        for (size_t i = 0; i < n; i++) {
            const int32_t c = (val(a, i, s8) - za) * (val(b, per_row ? i / cols : i, s8) - zb);
            long q = lrint((double)((float)c * m)) + zo;
            if (relu && q < zo) q = zo;
            bad += val(y, i, s8) != clampi(q, s8);
        }
    }
    QK_CHECK(bad == 0, "qmul s8=%d rows=%zu cols=%zu per_row=%d: %d wrong", s8, rows, cols,
             per_row, bad);
    free(a);
    free(b);
    free(y);
}

static void test_global_pool(int s8, size_t n, size_t c, size_t hw) {
    uint8_t *x = malloc(n * c * hw + 1), *y = malloc(n * c + 1);
    fill(x, n * c * hw);
    const qk_dtype t = s8 ? QK_DT_S8 : QK_DT_U8;
    const int32_t zp = s8 ? -100 : 200;
    const size_t vc = c / 8 * 8;
    QK_CHECK(qk_qglobal_avg_pool2d(x, t, n, c, hw, zp, vc, y) == QK_OK, "pool status");
    const float inv = 1.0f / (1.0f / (1.0f / (float)hw));
    int bad = 0;
    for (size_t p = 0; p < n * c; p++) {
        long s = 0;
        for (size_t i = 0; i < hw; i++) s += val(x, p * hw + i, s8);
        const float a = (float)(int32_t)(s - (long)hw * zp);
        const float v = p % c < vc ? fmaf(a, inv, (float)zp) : a * inv + (float)zp;
        bad += val(y, p, s8) != clampi(lrint((double)v), s8);
    }
    QK_CHECK(bad == 0, "global pool s8=%d n=%zu c=%zu hw=%zu: %d wrong", s8, n, c, hw, bad);
    free(x);
    free(y);
}

int main(void) {
    for (int s8 = 0; s8 < 2; s8++) {
        for (size_t cols = 1; cols < 70; cols += 5)
            for (int per_row = 0; per_row < 2; per_row++) test_qmul(s8, 3, cols, per_row);
        test_qmul(s8, 72, 784, 1);
        const size_t hws[] = {1, 7, 49, 63, 64, 65, 196, 784, 3136};
        for (size_t i = 0; i < sizeof hws / sizeof hws[0]; i++) {
            test_global_pool(s8, 2, 9, hws[i]);
            test_global_pool(s8, 1, 16, hws[i]);
        }
    }
    uint8_t x[4] = {0}, y[4];
    QK_CHECK(qk_qmul(x, x, QK_DT_S32, 1, 4, 0, 1.0f, 0, 1.0f, 0, 1.0f, 0, 0, y) == QK_ERR_ARG,
             "qmul dtype");
    QK_CHECK(qk_qmul(x, x, QK_DT_U8, 1, 4, 0, 1.0f, 0, 1.0f, 0, 0x1p-16f, 0, 0, y) == QK_ERR_SCALE,
             "qmul multiplier above 2^15");
    QK_CHECK(qk_qmul(x, x, QK_DT_U8, 1, 4, 0, NAN, 0, 1.0f, 0, 1.0f, 0, 0, y) == QK_ERR_SCALE,
             "qmul NaN scale");
    QK_CHECK(qk_qmul(x, x, QK_DT_S8, 1, 4, 1, 1.0f, 200, 1.0f, 0, 1.0f, 0, 0, y) ==
                 QK_ERR_ZERO_POINT,
             "qmul zero point");
    QK_CHECK(qk_qmul(NULL, x, QK_DT_U8, 1, 4, 0, 1.0f, 0, 1.0f, 0, 1.0f, 0, 0, y) == QK_ERR_ARG,
             "qmul NULL");
    QK_CHECK(qk_qmul(x, x, QK_DT_U8, SIZE_MAX, 2, 1, 1.0f, 0, 1.0f, 0, 1.0f, 0, 0, y) == QK_ERR_ARG,
             "qmul size overflow");
    QK_CHECK(qk_qglobal_avg_pool2d(x, QK_DT_U8, 1, 1, 0, 0, 0, y) == QK_ERR_ARG, "pool hw 0");
    QK_CHECK(qk_qglobal_avg_pool2d(x, QK_DT_U8, 1, 1, (size_t)INT32_MAX / 255 + 1, 0, 0, y) ==
                 QK_ERR_ARG,
             "pool hw beyond int32 sums");
    QK_CHECK(qk_qglobal_avg_pool2d(x, QK_DT_U8, 1, 4, 1, 0, 5, y) == QK_ERR_ARG, "vec > c");
    QK_CHECK(qk_qglobal_avg_pool2d(x, QK_DT_S8, 1, 4, 1, 128, 0, y) == QK_ERR_ZERO_POINT, "zp");
    return QK_TEST_SUMMARY();
}
