/* test_qops.c -- the quantized add / LeakyReLU / clamp / pooling ops of csrc/elementwise/qops.c against
 * brute-force references (max pooling over an explicitly padded copy, average pooling by
 * direct sums), on odd sizes that leave SIMD tails; under the sanitizers this also checks that
 * no window reads outside the input. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qk_test.h"
#include "qkernels.h"

static void fill(uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)qk_test_next();
}

static int32_t val(const uint8_t *p, size_t i, int s8) { return s8 ? (int8_t)p[i] : p[i]; }

static void test_maxpool(int s8, size_t h, size_t w, size_t k, size_t s, size_t pad, size_t d,
                         int ceil_mode) {
    const size_t planes = 3, eh = d * (k - 1) + 1;
    const long num_h = (long)(h + 2 * pad) - (long)eh, num_w = (long)(w + 2 * pad) - (long)eh;
    if (num_h < 0 || num_w < 0) return;
    size_t oh = (size_t)(ceil_mode ? (num_h + (long)s - 1) / (long)s : num_h / (long)s) + 1;
    size_t ow = (size_t)(ceil_mode ? (num_w + (long)s - 1) / (long)s : num_w / (long)s) + 1;
    if (ceil_mode && (oh - 1) * s >= h + pad) oh--;
    if (ceil_mode && (ow - 1) * s >= w + pad) ow--;
    uint8_t *x = malloc(planes * h * w), *y = malloc(planes * oh * ow + 1);
    fill(x, planes * h * w);
    const qk_dtype t = s8 ? QK_DT_S8 : QK_DT_U8;
    QK_CHECK(qk_qmax_pool2d(x, t, planes, h, w, k, k, s, s, pad, pad, d, d, oh, ow, y) == QK_OK,
             "status");
    int bad = 0;
    for (size_t p = 0; p < planes; p++)
        for (size_t i = 0; i < oh; i++)
            for (size_t j = 0; j < ow; j++) {
                int32_t m = s8 ? INT8_MIN : 0;
                for (size_t a = 0; a < k; a++)
                    for (size_t b = 0; b < k; b++) {
                        const long r = (long)(i * s + a * d) - (long)pad;
                        const long c = (long)(j * s + b * d) - (long)pad;
                        if (r < 0 || c < 0 || r >= (long)h || c >= (long)w) continue;
                        const int32_t v = val(x, p * h * w + (size_t)r * w + (size_t)c, s8);
                        if (v > m) m = v;
                    }
                bad += val(y, (p * oh + i) * ow + j, s8) != m;
            }
    QK_CHECK(bad == 0, "max pool s8=%d %zux%zu k%zu s%zu p%zu d%zu ceil%d: %d wrong", s8, h, w, k,
             s, pad, d, ceil_mode, bad);
    free(x);
    free(y);
}

static void test_avgpool(int s8, size_t h, size_t w, size_t oh, size_t ow) {
    const size_t planes = 5;
    uint8_t *x = malloc(planes * h * w), *y = malloc(planes * oh * ow);
    fill(x, planes * h * w);
    QK_CHECK(qk_qadaptive_avg_pool2d(x, s8 ? QK_DT_S8 : QK_DT_U8, planes, h, w, oh, ow, y) == QK_OK,
             "status");
    int bad = 0;
    for (size_t p = 0; p < planes; p++)
        for (size_t i = 0; i < oh; i++)
            for (size_t j = 0; j < ow; j++) {
                const size_t h0 = i * h / oh, h1 = ((i + 1) * h + oh - 1) / oh;
                const size_t w0 = j * w / ow, w1 = ((j + 1) * w + ow - 1) / ow;
                long sum = 0;
                for (size_t a = h0; a < h1; a++)
                    for (size_t b = w0; b < w1; b++) sum += val(x, p * h * w + a * w + b, s8);
                const long cnt = (long)((h1 - h0) * (w1 - w0));
                /* round half to even of sum / cnt, in integers */
                long q = sum / cnt, r = sum % cnt;
                if (r < 0) { q -= 1; r += cnt; }
                if (2 * r > cnt || (2 * r == cnt && (q & 1))) q += 1;
                bad += val(y, (p * oh + i) * ow + j, s8) != q;
            }
    QK_CHECK(bad == 0, "avg pool s8=%d %zux%zu -> %zux%zu: %d wrong", s8, h, w, oh, ow, bad);
    free(x);
    free(y);
}

/* qk_qavg_pool2d against its formulas in qkernels.h, brute force: int64 sums over the in-bounds
 * taps of each window, the window clipped to the padded input, the divisor, then the two float
 * output stages (vector channels: RNE(acc * fl(1.0f / d)) + zp; the others:
 * RNE(fl(acc * (float)(1.0 / d)) + zp)). PyTorch's output size rule (floor or ceil). */
static size_t pool_out(size_t n, size_t k, size_t s, size_t p, int ceil_mode) {
    const long num = (long)(n + 2 * p) - (long)k;
    if (num < 0) return 0;
    size_t o = (size_t)(ceil_mode ? (num + (long)s - 1) / (long)s : num / (long)s) + 1;
    if (ceil_mode && (o - 1) * s >= n + p) o--;
    return o;
}

static int test_qavgpool(int s8, size_t nb, size_t c, size_t h, size_t w, size_t kh, size_t kw,
                         size_t sh, size_t sw, size_t ph, size_t pw, int ceil_mode, int cip,
                         int32_t dov, int32_t zp, size_t vecc) {
    const size_t oh = pool_out(h, kh, sh, ph, ceil_mode), ow = pool_out(w, kw, sw, pw, ceil_mode);
    const size_t planes = nb * c;
    uint8_t *x = malloc(planes * h * w + 1), *y = malloc(planes * oh * ow + 1);
    fill(x, planes * h * w);
    const qk_dtype t = s8 ? QK_DT_S8 : QK_DT_U8;
    const int32_t qmin = s8 ? -128 : 0, qmax = s8 ? 127 : 255;
    QK_CHECK(qk_qavg_pool2d(x, t, nb, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow, cip, dov, zp, vecc,
                            y) == QK_OK,
             "avg pool status");
    int bad = 0;
    for (size_t p = 0; p < planes; p++)
        for (size_t i = 0; i < oh; i++)
            for (size_t j = 0; j < ow; j++) {
                const long r0 = (long)(i * sh) - (long)ph, c0 = (long)(j * sw) - (long)pw;
                const long r1 = r0 + (long)kh < (long)(h + ph) ? r0 + (long)kh : (long)(h + ph);
                const long c1 = c0 + (long)kw < (long)(w + pw) ? c0 + (long)kw : (long)(w + pw);
                long sum = 0, valid = 0;
                for (long r = r0; r < r0 + (long)kh; r++)
                    for (long q = c0; q < c0 + (long)kw; q++) {
                        if (r < 0 || q < 0 || r >= (long)h || q >= (long)w) continue;
                        sum += val(x, p * h * w + (size_t)r * w + (size_t)q, s8);
                        valid++;
                    }
                const long d = dov ? dov : cip ? (r1 - r0) * (c1 - c0) : valid;
                const float acc = (float)(sum - valid * zp);
                long q;
                if (p % c < vecc)
                    q = lrintf(acc * (1.0f / (float)d)) + zp;
                else
                    q = lrintf(acc * (float)(1.0 / (double)d) + (float)zp);
                q = q < qmin ? qmin : q > qmax ? qmax : q;
                bad += val(y, (p * oh + i) * ow + j, s8) != q;
            }
    free(x);
    free(y);
    return bad;
}

static void test_qavgpools(void) {
    const size_t sizes[][2] = {{12, 12}, {5, 5}, {25, 25}, {7, 33}, {1, 1}, {3, 1}, {2, 17}, {8, 8}};
    const size_t kers[][2] = {{3, 3}, {2, 2}, {1, 1}, {3, 2}, {5, 5}, {1, 3}};
    const size_t strides[][2] = {{1, 1}, {2, 2}, {2, 1}, {3, 3}};
    int bad = 0, cases = 0;
    for (int s8 = 0; s8 < 2; s8++)
        for (size_t z = 0; z < 8; z++)
            for (size_t k = 0; k < 6; k++)
                for (size_t st = 0; st < 4; st++)
                    for (size_t pad = 0; pad < 3; pad++) {
                        const size_t h = sizes[z][0], w = sizes[z][1], kh = kers[k][0],
                                     kw = kers[k][1], ph = pad > kh / 2 ? kh / 2 : pad,
                                     pw = pad > kw / 2 ? kw / 2 : pad;
                        for (int cm = 0; cm < 2; cm++) {
                            if (pool_out(h, kh, strides[st][0], ph, cm) == 0 ||
                                pool_out(w, kw, strides[st][1], pw, cm) == 0)
                                continue;
                            const int cip = (int)((z + k + cm) & 1);
                            const int32_t dov = (st + pad) % 5 == 4 ? (int32_t)(pad + 1) * 2 - 7 : 0;
                            const int32_t zp = s8 ? (int32_t)(z * 29 % 255) - 127 : (int32_t)(k * 47 % 256);
                            bad += test_qavgpool(s8, 2, 5, h, w, kh, kw, strides[st][0],
                                                 strides[st][1], ph, pw, cm, cip, dov, zp,
                                                 (z + st) % 6);
                            cases++;
                        }
                    }
    QK_CHECK(bad == 0 && cases > 1000, "avg pool: %d wrong in %d cases", bad, cases);
    uint8_t x[16] = {0}, y[16];
    QK_CHECK(qk_qavg_pool2d(x, QK_DT_U8, 1, 1, 4, 4, 3, 3, 1, 1, 2, 1, 4, 4, 1, 0, 0, 0, y) ==
                 QK_ERR_ARG,
             "avg pool: padding above half the kernel");
    QK_CHECK(qk_qavg_pool2d(x, QK_DT_U8, 1, 1, 4, 4, 3, 3, 1, 1, 1, 1, 6, 4, 1, 0, 0, 0, y) ==
                 QK_ERR_ARG,
             "avg pool: a window wholly in the padding");
    QK_CHECK(qk_qavg_pool2d(x, QK_DT_U8, 1, 1, 4, 4, 3, 3, 1, 1, 1, 1, 4, 4, 1, 0, 0, 2, y) ==
                 QK_ERR_ARG,
             "avg pool: vec_channels above c");
    QK_CHECK(qk_qavg_pool2d(x, QK_DT_S8, 1, 1, 4, 4, 3, 3, 1, 1, 1, 1, 4, 4, 1, 0, 128, 0, y) ==
                 QK_ERR_ZERO_POINT,
             "avg pool: zero point outside int8");
    QK_CHECK(qk_qavg_pool2d(x, QK_DT_U8, 1, 1, 4, 4, 4096, 1025, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0, y) ==
                 QK_ERR_ARG,
             "avg pool: more than 2^22 taps");
    QK_CHECK(qk_qavg_pool2d(x, QK_DT_S32, 1, 1, 4, 4, 3, 3, 1, 1, 1, 1, 4, 4, 1, 0, 0, 0, y) ==
                 QK_ERR_ARG,
             "avg pool: dtype");
    QK_CHECK(qk_qavg_pool2d(NULL, QK_DT_U8, 0, 1, 4, 4, 3, 3, 1, 1, 1, 1, 4, 4, 1, 0, 0, 0, NULL) ==
                 QK_OK,
             "avg pool: nothing to do");
}

static void test_elementwise(int s8, size_t n) {
    uint8_t *a = malloc(n + 1), *b = malloc(n + 1), *y = malloc(n + 1);
    fill(a, n);
    fill(b, n);
    const qk_dtype t = s8 ? QK_DT_S8 : QK_DT_U8;
    const int32_t za = s8 ? -3 : 120, zb = s8 ? 5 : 131, zo = s8 ? 1 : 128;
    const int32_t qmin = s8 ? -128 : 0, qmax = s8 ? 127 : 255;
    int bad = 0;
    for (int k = 0; k < 4; k++) { /* relu off / on; one thread, then three (qk_qadd_threads) */
        const int relu = k & 1;
        QK_CHECK(qk_qadd_threads(a, b, t, n, 0.05f, za, 0.07f, zb, 0.1f, zo, relu, y,
                                 k < 2 ? 1 : 3) == QK_OK,
                 "status");
        for (size_t i = 0; i < n; i++) {
            float c = fmaf((float)val(a, i, s8), 0.05f, -(0.05f * (float)za)) +
                      fmaf((float)val(b, i, s8), 0.07f, -(0.07f * (float)zb));
            if (relu && c < 0.0f) c = 0.0f;
            long q = lrint((double)(c * (1.0f / 0.1f))) + zo;
            q = q < qmin ? qmin : q > qmax ? qmax : q;
            bad += val(y, i, s8) != q;
        }
    }
    QK_CHECK(qk_qleaky_relu(a, t, n, 0.05f, za, 0.1f, 0.03f, zo, y) == QK_OK, "status");
    for (size_t i = 0; i < n; i++) {
        const float d = fmaf((float)val(a, i, s8), 0.05f, -(0.05f * (float)za));
        const float v = d > 0.0f ? d : d * 0.1f;
        long q = lrint((double)(v * (1.0f / 0.03f))) + zo;
        q = q < qmin ? qmin : q > qmax ? qmax : q;
        bad += val(y, i, s8) != q;
    }
    QK_CHECK(qk_qclamp(a, t, n, s8 ? -10 : 20, s8 ? 30 : 200, y) == QK_OK, "status");
    for (size_t i = 0; i < n; i++) {
        const int32_t lo = s8 ? -10 : 20, hi = s8 ? 30 : 200, v = val(a, i, s8);
        bad += val(y, i, s8) != (v < lo ? lo : v > hi ? hi : v);
    }
    QK_CHECK(bad == 0, "elementwise s8=%d n=%zu: %d wrong", s8, n, bad);
    free(a);
    free(b);
    free(y);
}

int main(void) {
    for (int s8 = 0; s8 < 2; s8++) {
        for (size_t n = 0; n < 40; n += 3) test_elementwise(s8, n);
        test_elementwise(s8, 1001);
        test_elementwise(s8, 49151); /* qk_qadd_threads: one thread below 49152 elements, */
        test_elementwise(s8, 70001); /* split above (jobs of 8192, a tail) */
        const size_t sizes[][2] = {{8, 8}, {7, 5}, {4, 9}, {1, 1}, {2, 3}};
        for (size_t z = 0; z < 5; z++) {
            const size_t h = sizes[z][0], w = sizes[z][1];
            for (size_t k = 1; k <= 3; k++)
                for (size_t s = 1; s <= 3; s++)
                    for (size_t pad = 0; pad <= k / 2; pad++)
                        for (size_t d = 1; d <= 2; d++)
                            for (int c = 0; c < 2; c++) test_maxpool(s8, h, w, k, s, pad, d, c);
            test_avgpool(s8, h, w, 1, 1);
            test_avgpool(s8, h, w, 2, 3);
            test_avgpool(s8, h, w, h, w);
        }
    }
    test_qavgpools();
    uint8_t x[4] = {0}, y[4];
    QK_CHECK(qk_qadd(x, x, QK_DT_S32, 4, 1.0f, 0, 1.0f, 0, 1.0f, 0, 0, y) == QK_ERR_ARG, "dtype");
    QK_CHECK(qk_qadd(x, x, QK_DT_U8, 4, 0.0f, 0, 1.0f, 0, 1.0f, 0, 0, y) == QK_ERR_SCALE, "scale");
    QK_CHECK(qk_qadd_threads(x, x, QK_DT_U8, 100000, 0.0f, 0, 1.0f, 0, 1.0f, 0, 0, y, 2) ==
                 QK_ERR_SCALE,
             "split add: scale");
    QK_CHECK(qk_qadd_threads(NULL, x, QK_DT_U8, 100000, 1.0f, 0, 1.0f, 0, 1.0f, 0, 0, y, 2) ==
                 QK_ERR_ARG,
             "split add: NULL");
    /* QNNPACK's add: ratios 0.5 -> multipliers 2^21, shift 22; 5 * 0.5 = 2.5 -> 3 (half away from
     * zero), 7 * 0.5 = 3.5 -> 4; relu clamps to the zero point */
    const uint8_t qa[3] = {5, 7, 0}, qb[3] = {0, 0, 1};
    uint8_t qy[3];
    QK_CHECK(qk_qadd_qnnpack(qa, qb, 3, 0.5f, 0, 0.5f, 0, 1.0f, 0, 0, qy) == QK_OK, "qnnpack add");
    QK_CHECK(qy[0] == 3 && qy[1] == 4 && qy[2] == 1, "qnnpack add ties away from zero");
    QK_CHECK(qk_qadd_qnnpack(qa, qb, 3, 0.5f, 10, 0.5f, 10, 1.0f, 9, 1, qy) == QK_OK, "relu");
    QK_CHECK(qy[0] == 9 && qy[1] == 9 && qy[2] == 9, "qnnpack add_relu clamps at the zero point");
    QK_CHECK(qk_qadd_qnnpack(qa, qb, 3, 256.0f, 0, 1.0f, 0, 1.0f, 0, 0, qy) == QK_ERR_SCALE, "ratio");
    QK_CHECK(qk_qadd_qnnpack(qa, qb, 3, 1.0f, 0, 1.0f, 300, 1.0f, 0, 0, qy) == QK_ERR_ZERO_POINT,
             "zp");
    QK_CHECK(qk_qadd_qnnpack(qa, qb, 3, 1.0f, 0, 1.0f, 0, 1.0f, 255, 1, qy) == QK_ERR_ARG, "range");
    QK_CHECK(qk_qleaky_relu(x, QK_DT_S8, 4, 1.0f, 200, 0.1f, 1.0f, 0, y) == QK_ERR_ZERO_POINT, "zp");
    QK_CHECK(qk_qmax_pool2d(x, QK_DT_U8, 1, 2, 2, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, y) == QK_ERR_ARG,
             "kernel size 0");
    /* an empty input row (w = 0, or h = 0) under a non-empty output: every window has no
     * in-bounds tap, so every output is the type's minimum (never the row buffer's contents) */
    {
        int8_t ys[6] = {1, 2, 3, 4, 5, 6};
        QK_CHECK(qk_qmax_pool2d(x, QK_DT_S8, 1, 3, 0, 2, 2, 1, 1, 1, 0, 1, 1, 2, 3, ys) == QK_OK,
                 "w = 0");
        int all_min = 1;
        for (int i = 0; i < 6; i++) all_min &= ys[i] == INT8_MIN;
        QK_CHECK(all_min, "w = 0 gives the minimum: %d %d %d", ys[0], ys[1], ys[2]);
        uint8_t yu[4] = {7, 7, 7, 7};
        QK_CHECK(qk_qmax_pool2d(x, QK_DT_U8, 2, 0, 5, 2, 2, 1, 1, 1, 1, 1, 1, 1, 2, yu) == QK_OK,
                 "h = 0");
        QK_CHECK(yu[0] == 0 && yu[1] == 0 && yu[2] == 0 && yu[3] == 0, "h = 0 gives the minimum");
        /* a huge padding with a stride near SIZE_MAX (one output column, so the stride is not
         * bounded; pw + sw - 1 would wrap): the one window lies in the padding, so the minimum,
         * and nothing read outside x (the sanitizer run checks) */
        uint8_t y1 = 9;
        QK_CHECK(qk_qmax_pool2d(x, QK_DT_U8, 1, 1, 4, 1, 1, 1, SIZE_MAX - 10, 0,
                                (size_t)1 << (sizeof(size_t) * 8 - 2), 1, 1, 1, 1, &y1) == QK_OK &&
                     y1 == 0,
                 "huge padding and stride: %d", y1);
    }
    return QK_TEST_SUMMARY();
}
