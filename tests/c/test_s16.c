/* test_s16.c -- qk_conv2d_s16s8 / qk_linear_s16s8 (TFLite 16x8, CMSIS-NN s16) against a plain
 * int64 reference written here from the runtimes' formulas: a direct convolution over signed
 * coordinates, the requantizations by division instead of shifts. Random full-range int16
 * inputs and int8 weights, int64 biases, near-tie multipliers (powers of two), every scheme;
 * hand-worked values; the bound and every argument check. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qk_test.h"

/* floor(a / 2^t) by division (C truncates toward zero) */
static int64_t floor_div_pow2(int64_t a, int t) {
    const int64_t d = (int64_t)1 << t;
    int64_t q = a / d;
    if (a % d != 0 && a < 0) q -= 1;
    return q;
}

static int32_t low32(int64_t v) {
    uint32_t u = (uint32_t)(uint64_t)v;
    return u <= 0x7FFFFFFFu ? (int32_t)u : -(int32_t)(0xFFFFFFFFu - u) - 1;
}

static int64_t rm_of(int32_t m) { return m < 0x7FFF0000 ? ((int64_t)m + 32768) / 65536 : 0x7FFF; }

/* TFLite: round half up of acc * rm / 2^(15 - shift), int32 by two's complement */
static int32_t ref_tflite(int64_t acc, int32_t m, int32_t shift) {
    const int t = 15 - shift;
    return low32(floor_div_pow2(acc * rm_of(m) + ((int64_t)1 << (t - 1)), t));
}

/* CMSIS-NN: floor to 2^(14 - shift), int32, then (r + 1) / 2 floored, int32 */
static int32_t ref_cmsis(int64_t acc, int32_t m, int32_t shift) {
    const int32_t r = low32(floor_div_pow2(acc * rm_of(m), 14 - shift));
    return (int32_t)floor_div_pow2((int64_t)low32((int64_t)r + 1), 1);
}

static int16_t ref_out(const qk_epilogue_s16 *ep, size_t o, int64_t acc) {
    if (ep->bias) acc += ep->bias[o];
    int64_t r;
    if (ep->scheme == QK_REQ_FP64) {
        double d = round((double)acc * ep->scale64[o]);
        r = d < -2147483648.0 ? INT32_MIN : (d > 2147483647.0 ? INT32_MAX : (int64_t)d);
    } else if (ep->scheme == QK_REQ_REDUCED) {
        r = ref_tflite(acc, ep->multiplier[o], ep->shift[o]);
    } else {
        r = ref_cmsis(acc, ep->multiplier[o], ep->shift[o]);
    }
    if (r < ep->act_min) r = ep->act_min;
    if (r > ep->act_max) r = ep->act_max;
    return (int16_t)r;
}

static void ref_conv(const qk_conv2d_shape *s, const int8_t *w, size_t oc, size_t kh, size_t kw,
                     size_t groups, const int16_t *x, const qk_epilogue_s16 *ep, size_t oh,
                     size_t ow, int16_t *y) {
    const long cpg = (long)(s->in_c / groups), ocg = (long)(oc / groups);
    for (long b = 0; b < (long)s->batch; b++)
        for (long o = 0; o < (long)oc; o++)
            for (long i = 0; i < (long)oh; i++)
                for (long j = 0; j < (long)ow; j++) {
                    int64_t acc = 0;
                    for (long c = 0; c < cpg; c++)
                        for (long r = 0; r < (long)kh; r++)
                            for (long q = 0; q < (long)kw; q++) {
                                long iy = i * (long)s->stride_h - (long)s->pad_top + r * (long)s->dil_h;
                                long ix = j * (long)s->stride_w - (long)s->pad_left + q * (long)s->dil_w;
                                if (iy < 0 || ix < 0 || iy >= (long)s->in_h || ix >= (long)s->in_w)
                                    continue;
                                long ci = (o / ocg) * cpg + c;
                                acc += (int64_t)x[((b * (long)s->in_c + ci) * (long)s->in_h + iy) *
                                                      (long)s->in_w + ix] *
                                       w[((o * cpg + c) * (long)kh + r) * (long)kw + q];
                            }
                    y[((b * (long)oc + o) * (long)oh + i) * (long)ow + j] = ref_out(ep, (size_t)o, acc);
                }
}

static int32_t rnd(int32_t lo, int32_t hi) { /* uniform in [lo, hi] */
    return lo + (int32_t)(qk_test_next() % (unsigned long long)((int64_t)hi - lo + 1));
}

static long long conv_case(int scheme, size_t groups, size_t cpg, size_t ocg, size_t kh,
                           size_t kw, size_t stride, size_t pad, size_t dil, int ties) {
    qk_conv2d_shape s = {2, groups * cpg, 9, 11, stride, stride, pad, pad + 1, pad, pad, dil, dil};
    const size_t oc = groups * ocg, k = cpg * kh * kw;
    const size_t xn = s.batch * s.in_c * s.in_h * s.in_w;
    const size_t oh = (s.in_h + 2 * pad - dil * (kh - 1) - 1) / stride + 1;
    const size_t ow = (s.in_w + 2 * pad + 1 - dil * (kw - 1) - 1) / stride + 1;
    const size_t yn = s.batch * oc * oh * ow;
    int16_t *x = malloc(xn * 2), *y = malloc(yn * 2), *yr = malloc(yn * 2);
    int8_t *w = malloc(oc * k);
    int64_t *bias = malloc(oc * 8);
    int32_t *m = malloc(oc * 4), *sh = malloc(oc * 4);
    double *s64 = malloc(oc * 8);
    for (size_t i = 0; i < xn; i++) x[i] = (int16_t)rnd(-32768, 32767);
    if (xn > 3) x[0] = -32768, x[1] = 32767, x[2] = 0;
    for (size_t i = 0; i < oc * k; i++) w[i] = (int8_t)rnd(-128, 127);
    for (size_t o = 0; o < oc; o++) {
        bias[o] = (int64_t)rnd(-(1 << 22), 1 << 22) * rnd(1, 16);
        /* a multiplier that brings the typical sum (2^15 * 2^7 * sqrt(k)) near int16 */
        const double target = 3000.0 / (32768.0 * 128.0 * sqrt((double)k));
        int e;
        double fr = frexp(target * (0.5 + (double)rnd(0, 1000) / 1000.0), &e);
        m[o] = ties ? (1 << 30) : (int32_t)llround(fr * 2147483648.0);
        if (m[o] == INT32_MAX) m[o] = 1 << 30;
        if (o % 5 == 3) m[o] = 0x7FFF0000 + rnd(0, 0xFFFE);    /* the 0x7FFF cap */
        sh[o] = e;
        if (sh[o] < -31) sh[o] = -31;
        if (sh[o] > 7) sh[o] = 7;
        s64[o] = ldexp((double)m[o], sh[o] - 31);
        if (ties) sh[o] = -4, s64[o] = 1.0 / 32;   /* acc / 32: a tie on 1 in 32 outputs */
    }
    if (ties) {
        for (size_t o = 0; o < oc; o++) bias[o] = 0;
        for (size_t i = 0; i < oc * k; i++) w[i] = (int8_t)rnd(-3, 3);
    }
    qk_epilogue_s16 ep = {(qk_requant_scheme)scheme, bias, m, sh, s64, -32768, 32767};
    if (groups == 2) ep.act_min = -1000, ep.act_max = 20000;
    const qk_status st = qk_conv2d_s16s8(&s, w, oc, kh, kw, groups, x, &ep, y);
    QK_CHECK(st == QK_OK, "conv status %d", (int)st);
    ref_conv(&s, w, oc, kh, kw, groups, x, &ep, oh, ow, yr);
    long long bad = 0, mid = 0;
    for (size_t i = 0; i < yn; i++) {
        bad += y[i] != yr[i];
        mid += yr[i] > -32768 && yr[i] < 32767;
    }
    QK_CHECK(bad == 0, "scheme %d groups %zu: %lld of %zu differ", scheme, groups, bad, yn);
    QK_CHECK(mid * 2 > (long long)yn, "scheme %d: only %lld of %zu unsaturated", scheme, mid, yn);
    free(x), free(y), free(yr), free(w), free(bias), free(m), free(sh), free(s64);
    return (long long)yn;
}

static void known_values(void) {
    int32_t m = 1 << 30, sh = -1; /* 0.25 */
    const int64_t accs[] = {1, 2, -2, 6, -6, 7};
    /* acc * 0.25: 0.25, 0.5, -0.5, 1.5, -1.5, 1.75 */
    const int16_t tfl[] = {0, 1, 0, 2, -1, 2}, f64[] = {0, 1, -1, 2, -2, 2};
    for (int i = 0; i < 6; i++) {
        int16_t x = 1, y;
        int8_t w = 1;
        int64_t b = accs[i] - 1;
        double s = 0.25;
        qk_epilogue_s16 ep = {QK_REQ_REDUCED, &b, &m, &sh, &s, -32768, 32767};
        QK_CHECK(qk_linear_s16s8(&w, 1, 1, &x, 1, &ep, &y) == QK_OK && y == tfl[i],
                 "tflite acc %lld: %d", (long long)accs[i], y);
        ep.scheme = QK_REQ_REDUCED_CMSIS;
        QK_CHECK(qk_linear_s16s8(&w, 1, 1, &x, 1, &ep, &y) == QK_OK && y == tfl[i],
                 "cmsis acc %lld: %d", (long long)accs[i], y);
        ep.scheme = QK_REQ_FP64;
        QK_CHECK(qk_linear_s16s8(&w, 1, 1, &x, 1, &ep, &y) == QK_OK && y == f64[i],
                 "fp64 acc %lld: %d", (long long)accs[i], y);
    }
    /* int32 wrap where the runtimes wrap (m 0.5, shift 7: acc * 64): acc 2^40 gives 2^46, whose
     * low 32 bits are 0; the others near and beyond 2^31 / 64 */
    m = 1 << 30, sh = 7;
    const int64_t big[] = {(int64_t)1 << 40, ((int64_t)1 << 25) - 1, ((int64_t)1 << 25) + 3,
                           -((int64_t)1 << 25) - 5, ((int64_t)1 << 46) - 12345};
    for (int i = 0; i < 5; i++) {
        int16_t x = 1, y;
        int8_t w = 0;
        int64_t b = big[i];
        qk_epilogue_s16 ep = {QK_REQ_REDUCED, &b, &m, &sh, NULL, -32768, 32767};
        int32_t want = ref_tflite(big[i], m, sh);
        want = want < -32768 ? -32768 : (want > 32767 ? 32767 : want);
        QK_CHECK(qk_linear_s16s8(&w, 1, 1, &x, 1, &ep, &y) == QK_OK && y == want,
                 "wrap tflite %d: %d vs %d", i, y, want);
        ep.scheme = QK_REQ_REDUCED_CMSIS;
        want = ref_cmsis(big[i], m, sh);
        want = want < -32768 ? -32768 : (want > 32767 ? 32767 : want);
        QK_CHECK(qk_linear_s16s8(&w, 1, 1, &x, 1, &ep, &y) == QK_OK && y == want,
                 "wrap cmsis %d: %d vs %d", i, y, want);
    }
    QK_CHECK(ref_tflite((int64_t)1 << 40, 1 << 30, 7) == 0, "2^46 wraps to 0");
    /* where they differ: (acc * rm) >> (14 - shift) == INT32_MAX, CMSIS-NN's + 1 wraps */
    QK_CHECK(ref_cmsis((int64_t)1 << 24, 1 << 30, 7) == -(1 << 30) &&
                 ref_tflite((int64_t)1 << 24, 1 << 30, 7) == (1 << 30), "2^31 at 14 - shift");
    QK_CHECK(ref_cmsis(((int64_t)1 << 38) - 1, 32768, 7) == -(1 << 30) &&
                 ref_tflite(((int64_t)1 << 38) - 1, 32768, 7) == (1 << 30), "INT32_MAX + 1");
    for (int i = 0; i < 2; i++) {   /* and the kernels do the same (rm = 1 for m = 32768) */
        const int64_t acc = i ? ((int64_t)1 << 38) - 1 : (int64_t)1 << 24;
        int32_t mm = i ? 32768 : 1 << 30, s7 = 7;
        int16_t x = 0, y;
        int8_t w = 0;
        int64_t b = acc;
        qk_epilogue_s16 ep = {QK_REQ_REDUCED, &b, &mm, &s7, NULL, -32768, 32767};
        QK_CHECK(qk_linear_s16s8(&w, 1, 1, &x, 1, &ep, &y) == QK_OK && y == 32767, "tfl %d", y);
        ep.scheme = QK_REQ_REDUCED_CMSIS;
        QK_CHECK(qk_linear_s16s8(&w, 1, 1, &x, 1, &ep, &y) == QK_OK && y == -32768, "cm %d", y);
    }
    {
        /* acc * 2^14 >> 7 = acc * 2^7 = 2^31 - 128 for acc = 2^24 - 1: fits, then +1 >> 1 */
        QK_CHECK(ref_cmsis(((int64_t)1 << 24) - 1, 1 << 30, 7) == ((int32_t)1 << 30) - 64 &&
                     ref_tflite(((int64_t)1 << 24) - 1, 1 << 30, 7) == ((int32_t)1 << 30) - 64,
                 "in range they agree");
    }
}

static void errors(void) {
    int16_t x[4] = {1, 2, 3, 4}, y[4];
    int8_t w[4] = {1, -1, 1, -1};
    int32_t m[2] = {1 << 30, 1 << 30}, sh[2] = {-3, -3};
    double s[2] = {0.5, 0.5};
    int64_t b[2] = {0, 0};
    qk_epilogue_s16 ep = {QK_REQ_REDUCED, b, m, sh, s, -32768, 32767};
    QK_CHECK(qk_linear_s16s8(w, 2, 2, x, 2, &ep, y) == QK_OK, "ok");
    QK_CHECK(qk_linear_s16s8(NULL, 2, 2, x, 2, &ep, y) == QK_ERR_ARG, "NULL w");
    QK_CHECK(qk_linear_s16s8(w, 2, 2, x, 2, NULL, y) == QK_ERR_ARG, "NULL ep");
    QK_CHECK(qk_linear_s16s8(w, 0, 2, x, 2, &ep, y) == QK_ERR_ARG, "n 0");
    QK_CHECK(qk_linear_s16s8(w, 2, 2, x, 0, &ep, y) == QK_OK, "m 0 is empty");
    sh[1] = 8;
    QK_CHECK(qk_linear_s16s8(w, 2, 2, x, 2, &ep, y) == QK_ERR_SHIFT, "shift 8");
    sh[1] = -32;
    QK_CHECK(qk_linear_s16s8(w, 2, 2, x, 2, &ep, y) == QK_ERR_SHIFT, "shift -32");
    sh[1] = -3;
    m[0] = -1;
    QK_CHECK(qk_linear_s16s8(w, 2, 2, x, 2, &ep, y) == QK_ERR_MULTIPLIER, "multiplier < 0");
    m[0] = 1 << 30;
    ep.act_max = 32768;
    QK_CHECK(qk_linear_s16s8(w, 2, 2, x, 2, &ep, y) == QK_ERR_QRANGE, "act_max beyond int16");
    ep.act_max = -32769 + 1, ep.act_min = 0;
    QK_CHECK(qk_linear_s16s8(w, 2, 2, x, 2, &ep, y) == QK_ERR_QRANGE, "act_min > act_max");
    ep.act_min = -32768, ep.act_max = 32767;
    ep.scheme = QK_REQ_DOUBLE;
    QK_CHECK(qk_linear_s16s8(w, 2, 2, x, 2, &ep, y) == QK_ERR_ARG, "8-bit scheme");
    ep.scheme = QK_REQ_FP64;
    s[1] = NAN;
    QK_CHECK(qk_linear_s16s8(w, 2, 2, x, 2, &ep, y) == QK_ERR_SCALE, "NaN scale64");
    s[1] = 0.5;
    /* the bound: 32768 * 2 + |bias| must stay below 2^47 */
    b[1] = ((int64_t)1 << 47) - 65537;
    QK_CHECK(qk_linear_s16s8(w, 2, 2, x, 2, &ep, y) == QK_OK, "bound just below 2^47");
    b[1] = ((int64_t)1 << 47) - 65536;
    for (int i = 0; i < 4; i++) y[i] = 77;
    QK_CHECK(qk_linear_s16s8(w, 2, 2, x, 2, &ep, y) == QK_ERR_OVERFLOW, "bound at 2^47");
    QK_CHECK(y[0] == 77 && y[3] == 77, "nothing written on error");
    b[1] = INT64_MIN;
    QK_CHECK(qk_linear_s16s8(w, 2, 2, x, 2, &ep, y) == QK_ERR_OVERFLOW, "INT64_MIN bias");
    b[1] = 0;
    /* conv geometry */
    qk_conv2d_shape cs = {1, 2, 2, 2, 1, 1, 0, 0, 0, 0, 1, 1};
    QK_CHECK(qk_conv2d_s16s8(&cs, w, 2, 3, 1, 1, x, &ep, y) == QK_ERR_ARG, "kernel > input");
    QK_CHECK(qk_conv2d_s16s8(&cs, w, 2, 1, 1, 3, x, &ep, y) == QK_ERR_ARG, "groups not dividing");
    cs.stride_h = 0;
    QK_CHECK(qk_conv2d_s16s8(&cs, w, 2, 1, 1, 1, x, &ep, y) == QK_ERR_ARG, "stride 0");
    cs.stride_h = 1;
    cs.pad_top = SIZE_MAX;
    QK_CHECK(qk_conv2d_s16s8(&cs, w, 2, 1, 1, 1, x, &ep, y) == QK_ERR_ARG, "padding wraps");
}

int main(void) {
    long long n = 0;
    const int schemes[] = {QK_REQ_REDUCED, QK_REQ_REDUCED_CMSIS, QK_REQ_FP64};
    for (int si = 0; si < 3; si++) {
        for (int ties = 0; ties < 2; ties++) {
            n += conv_case(schemes[si], 1, 5, 7, 3, 3, 1, 1, 1, ties);      /* conv 3x3 same */
            n += conv_case(schemes[si], 1, 4, 6, 3, 2, 2, 0, 1, ties);      /* stride 2 valid */
            n += conv_case(schemes[si], 2, 3, 4, 3, 3, 1, 2, 2, ties);      /* groups, dilation */
            n += conv_case(schemes[si], 6, 1, 2, 3, 3, 2, 1, 1, ties);      /* depthwise x2 */
            n += conv_case(schemes[si], 1, 40, 3, 1, 1, 1, 0, 1, ties);     /* 1x1 */
        }
    }
    QK_CHECK(n > 25000, "%lld outputs compared", n);
    /* linear == the 1x1 convolution of m one-pixel images (and == the reference) */
    {
        enum { M = 37, N = 19, K = 300 };
        static int16_t x[M * K], y[M * N], yr[M * N];
        static int8_t w[N * K];
        int32_t m[N], sh[N];
        int64_t b[N];
        for (int i = 0; i < M * K; i++) x[i] = (int16_t)rnd(-32768, 32767);
        for (int i = 0; i < N * K; i++) w[i] = (int8_t)rnd(-128, 127);
        for (int o = 0; o < N; o++) m[o] = rnd(1 << 30, INT32_MAX - 1), sh[o] = -15, b[o] = rnd(-99999, 99999);
        qk_epilogue_s16 ep = {QK_REQ_REDUCED, b, m, sh, NULL, -32768, 32767};
        QK_CHECK(qk_linear_s16s8(w, N, K, x, M, &ep, y) == QK_OK, "linear");
        int bad = 0;
        for (int i = 0; i < M; i++)
            for (int o = 0; o < N; o++) {
                int64_t acc = 0;
                for (int k = 0; k < K; k++) acc += (int64_t)x[i * K + k] * w[o * K + k];
                yr[i * N + o] = ref_out(&ep, (size_t)o, acc);
                bad += yr[i * N + o] != y[i * N + o];
            }
        QK_CHECK(bad == 0, "linear: %d differ", bad);
    }
    known_values();
    errors();
    return QK_TEST_SUMMARY();
}
