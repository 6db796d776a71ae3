/* test_elementwise.c -- the C library alone (no Python): quantize, dequantize, requantize and
 * quantize_multiplier against references written here from SPEC.md, plus status codes.
 * Run twice by the test suite: once as is (AVX2 where the CPU has it) and once with
 * QKERNELS_SIMD=scalar, so both paths are checked against the same references. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qk_test.h"
#include "qkernels.h"

#define N 4099 /* not a multiple of any block size */

static float rand_float(float scale) {
    const unsigned long long r = qk_test_next();
    const int k = (int)(r % 601) - 300;
    switch ((r >> 20) % 4) {
        case 0: return (float)((k + 0.5) * scale);                       /* exact tie */
        case 1: return nextafterf((float)((k + 0.5) * scale), INFINITY); /* one ulp above */
        case 2: return nextafterf((float)((k + 0.5) * scale), -INFINITY);
        default: return (float)((double)(int64_t)(r >> 11) / 9007199254740992.0 * 600 - 300) * scale;
    }
}

/* SPEC section 4 primitives, written independently of the library. */
static int64_t ref_srdhm(int64_t a, int64_t b) {
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    const int64_t ab = a * b, nudge = ab >= 0 ? (1LL << 30) : 1 - (1LL << 30);
    const int64_t v = ab + nudge;
    return v >= 0 ? v / (1LL << 31) : -((-v) / (1LL << 31));
}
static int64_t ref_rdbpot(int64_t x, int e) {
    const int64_t mask = (1LL << e) - 1, rem = x & mask, th = (mask >> 1) + (x < 0);
    return (x >> e) + (rem > th);
}
static int64_t clampll(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

static void test_check_values(void) {
    int8_t y[1];
    const int32_t one = 1, mtwo = -2, big = 7984;
    qk_requantize_s32_s8_double(&one, 1, 1 << 30, -1, 0, -128, 127, y, NULL);
    QK_CHECK(y[0] == 1, "double(1, 0.25) = %d", y[0]);
    qk_requantize_s32_s8_single(&one, 1, 1 << 30, -1, 0, -128, 127, y);
    QK_CHECK(y[0] == 0, "single(1, 0.25) = %d", y[0]);
    qk_requantize_s32_s8_double(&mtwo, 1, 1 << 30, -1, 0, -128, 127, y, NULL);
    QK_CHECK(y[0] == -1, "double(-2, 0.25) = %d", y[0]);
    qk_requantize_s32_s8_single(&mtwo, 1, 1 << 30, -1, 0, -128, 127, y);
    QK_CHECK(y[0] == 0, "single(-2, 0.25) = %d", y[0]);
    qk_requantize_s32_s8_fp32(&mtwo, 1, 0.25f, 0, -128, 127, y);
    QK_CHECK(y[0] == 0, "fp32(-2, 0.25) = %d", y[0]);
    qk_requantize_s32_s8_double(&big, 1, 1583594044, -9, 0, -128, 127, y, NULL);
    QK_CHECK(y[0] == 12, "double(7984) = %d", y[0]);
    qk_requantize_s32_s8_single(&big, 1, 1583594044, -9, 0, -128, 127, y);
    QK_CHECK(y[0] == 11, "single(7984) = %d", y[0]);
    QK_CHECK(qk_srdhm(INT32_MIN, INT32_MIN) == INT32_MAX, "srdhm saturates");

    /* FBGEMM's comment: reciprocal 128, division 127 */
    const float x = 0.273939937f;
    uint8_t u[1];
    qk_quantize_f32_u8_pt2e(&x, 1, 0.00214854861f, 0, 0, 255, u, NULL);
    QK_CHECK(u[0] == 128, "pt2e = %d", u[0]);
    qk_quantize_f32_u8_onnx(&x, 1, 0.00214854861f, 0, 0, 255, u, NULL);
    QK_CHECK(u[0] == 127, "onnx = %d", u[0]);

    int32_t m0, sh;
    QK_CHECK(qk_quantize_multiplier(0.25, &m0, &sh) == QK_OK && m0 == (1 << 30) && sh == -1,
             "qm(0.25) = %d, %d", m0, sh);
    QK_CHECK(qk_quantize_multiplier(1.0 - ldexp(1, -33), &m0, &sh) == QK_OK && m0 == (1 << 30) &&
                 sh == 1, "qm(1-2^-33) = %d, %d", m0, sh);
    QK_CHECK(qk_quantize_multiplier(ldexp(1, -33), &m0, &sh) == QK_OK && m0 == 0 && sh == 0,
             "qm(tiny) = %d, %d", m0, sh);
}

static void test_status_codes(void) {
    float x[4] = {1, 2, NAN, 4};
    int8_t y[4] = {7, 7, 7, 7};
    size_t bad = 99;
    QK_CHECK(qk_quantize_f32_s8_onnx(x, 4, 0.0f, 0, -128, 127, y, &bad) == QK_ERR_SCALE, "scale 0");
    QK_CHECK(qk_quantize_f32_s8_onnx(x, 4, NAN, 0, -128, 127, y, &bad) == QK_ERR_SCALE, "scale nan");
    QK_CHECK(qk_quantize_f32_s8_onnx(x, 4, 1.0f, 200, -128, 127, y, &bad) == QK_ERR_ZERO_POINT, "zp");
    QK_CHECK(qk_quantize_f32_s8_onnx(x, 4, 1.0f, 0, 5, 4, y, &bad) == QK_ERR_QRANGE, "qmin > qmax");
    QK_CHECK(qk_quantize_f32_s8_onnx(x, 4, 1.0f, 0, -129, 127, y, &bad) == QK_ERR_QRANGE, "qmin");
    QK_CHECK(y[0] == 7 && y[3] == 7, "nothing written on a parameter error");
    QK_CHECK(qk_quantize_f32_s8_onnx(x, 4, 1.0f, 0, -128, 127, y, &bad) == QK_ERR_NAN && bad == 2,
             "nan index %zu", bad);
    const int32_t acc[2] = {5, 1 << 29};
    QK_CHECK(qk_requantize_s32_s8_double(acc, 2, 1 << 30, 31, 0, -128, 127, y, &bad) == QK_ERR_SHIFT, "shift");
    QK_CHECK(qk_requantize_s32_s8_double(acc, 2, -1, 0, 0, -128, 127, y, &bad) == QK_ERR_MULTIPLIER, "m");
    QK_CHECK(qk_requantize_s32_s8_double(acc, 2, 1 << 30, 2, 0, -128, 127, y, &bad) == QK_ERR_OVERFLOW &&
                 bad == 1, "overflow index %zu", bad);
    QK_CHECK(qk_requantize_s32_s8_shift_floor(acc, 2, 32, 0, -128, 127, y) == QK_ERR_SHIFT, "shift 32");
    int32_t m0 = 0, sh = 0;
    QK_CHECK(qk_quantize_multiplier(-1.0, &m0, &sh) == QK_ERR_MULTIPLIER, "negative m");
    QK_CHECK(qk_quantize_multiplier(NAN, &m0, &sh) == QK_ERR_MULTIPLIER, "nan m");
    QK_CHECK(qk_quantize_multiplier(0.5, NULL, &sh) == QK_ERR_ARG, "NULL output");
    QK_CHECK(qk_quantize_f32_s8_onnx(NULL, 0, 1.0f, 0, -128, 127, NULL, NULL) == QK_OK, "n == 0");
    QK_CHECK(strlen(qk_status_str(QK_ERR_SCALE)) > 0, "status string");
}

static void test_quantize_random(void) {
    static float x[N];
    static uint8_t yu[N];
    static int8_t ys[N];
    static int16_t yh[N];
    const float scales[3] = {0.0173f, 0.1f, 1.0f / 3.0f};
    for (int si = 0; si < 3; si++) {
        const float s = scales[si], inv = 1.0f / s;
        for (int i = 0; i < N; i++) x[i] = rand_float(s);
        x[5] = INFINITY;
        x[6] = -INFINITY;
        int bad_u = 0, bad_s = 0, bad_h = 0, bad_f = 0;
        qk_quantize_f32_u8_pt2e(x, N, s, 100, 0, 255, yu, NULL);
        qk_quantize_f32_s8_tflite(x, N, s, -3, -128, 127, ys, NULL);
        qk_quantize_f32_s16_onnx(x, N, s, 7, -32768, 32767, yh, NULL);
        for (int i = 0; i < N; i++) {
            const float tp = x[i] * inv, to = x[i] / s;
            const double rp = isinf(tp) ? tp : rint(tp), ro = isinf(to) ? to : rint(to);
            const double rt = isinf(to) ? to : round(to);
            bad_u += yu[i] != clampll((int64_t)fmax(fmin(rp, 1e9), -1e9) + 100, 0, 255);
            bad_s += ys[i] != clampll((int64_t)fmax(fmin(rt, 1e9), -1e9) - 3, -128, 127);
            bad_h += yh[i] != clampll((int64_t)fmax(fmin(ro, 1e9), -1e9) + 7, -32768, 32767);
        }
        qk_quantize_f32_s8_fbgemm(x, N, s, 9, -128, 127, ys, NULL);
        for (int i = 0; i < N; i++) {
            const float t = fmaf(x[i], inv, 9.0f);
            const double r = isinf(t) ? t : rint(t);
            bad_f += ys[i] != clampll((int64_t)fmax(fmin(r, 1e9), -1e9), -128, 127);
        }
        QK_CHECK(bad_u == 0 && bad_s == 0 && bad_h == 0 && bad_f == 0,
                 "scale %g: pt2e %d, tflite %d, onnx %d, fbgemm %d mismatches", s, bad_u, bad_s,
                 bad_h, bad_f);
    }
    /* dequantize */
    static float d[N];
    for (int i = 0; i < N; i++) yu[i] = (uint8_t)(qk_test_next() & 255);
    qk_dequantize_u8_f32(yu, N, 0.0173f, 77, d);
    int bad = 0;
    for (int i = 0; i < N; i++) bad += d[i] != 0.0173f * (float)(yu[i] - 77);
    QK_CHECK(bad == 0, "dequantize: %d mismatches", bad);
}

static void test_requantize_random(void) {
    static int32_t acc[N];
    static int8_t y[N];
    for (int i = 0; i < N; i++) {
        const unsigned long long r = qk_test_next();
        acc[i] = (i % 3 == 0) ? (int32_t)(uint32_t)r : (int32_t)(r % 20001) - 10000;
    }
    acc[0] = INT32_MIN;
    acc[1] = INT32_MAX;
    const int32_t ms[4] = {0, 1 << 30, 1583594044, INT32_MAX};
    for (int mi = 0; mi < 4; mi++) {
        for (int shift = -31; shift <= 0; shift += 3) {
            int bad_d = 0, bad_s = 0;
            qk_requantize_s32_s8_double(acc, N, ms[mi], shift, -5, -128, 127, y, NULL);
            for (int i = 0; i < N; i++)
                bad_d += y[i] != clampll(ref_rdbpot(ref_srdhm(acc[i], ms[mi]), -shift) - 5, -128, 127);
            qk_requantize_s32_s8_single(acc, N, ms[mi], shift, -5, -128, 127, y);
            for (int i = 0; i < N; i++) {
                const int t = 31 - shift;
                const int64_t r = ((int64_t)acc[i] * ms[mi] + (1LL << (t - 1))) >> t;
                bad_s += y[i] != clampll(r - 5, -128, 127);
            }
            QK_CHECK(bad_d == 0 && bad_s == 0, "m %d shift %d: double %d, single %d mismatches",
                     ms[mi], shift, bad_d, bad_s);
        }
    }
    for (int shift = 1; shift <= 31; shift += 5) {
        int bad = 0;
        qk_requantize_s32_s8_shift_half_up(acc, N, shift, 0, -128, 127, y);
        for (int i = 0; i < N; i++)
            bad += y[i] != clampll(((int64_t)acc[i] + (1LL << (shift - 1))) >> shift, -128, 127);
        qk_requantize_s32_s8_shift_half_even(acc, N, shift, 0, -128, 127, y);
        for (int i = 0; i < N; i++)
            bad += y[i] != clampll((int64_t)rint(ldexp((double)acc[i], -shift)), -128, 127);
        qk_requantize_s32_s8_shift_half_away(acc, N, shift, 0, -128, 127, y);
        for (int i = 0; i < N; i++)
            bad += y[i] != clampll((int64_t)round(ldexp((double)acc[i], -shift)), -128, 127);
        qk_requantize_s32_s8_shift_floor(acc, N, shift, 0, -128, 127, y);
        for (int i = 0; i < N; i++)
            bad += y[i] != clampll((int64_t)floor(ldexp((double)acc[i], -shift)), -128, 127);
        QK_CHECK(bad == 0, "shift %d: %d mismatches", shift, bad);
    }
    int bad = 0;
    qk_requantize_s32_s8_fp32(acc, N, 0.00123f, 3, -128, 127, y);
    for (int i = 0; i < N; i++) {
        const float f = (float)acc[i] * 0.00123f;
        bad += y[i] != clampll((int64_t)rint(fmax(fmin(f, 1e9), -1e9)) + 3, -128, 127);
    }
    QK_CHECK(bad == 0, "fp32: %d mismatches", bad);
    /* double_round with a left shift (SIMD blocks check acc << shift): exact, then an overflow
     * inside a block is reported at its own index */
    static uint8_t yu[N];
    for (int i = 0; i < N; i++) acc[i] = (int32_t)(qk_test_next() % 200001) - 100000;
    bad = 0;
    qk_requantize_s32_u8_double(acc, N, 1583594044, 3, 100, 0, 255, yu, NULL);
    for (int i = 0; i < N; i++) bad += yu[i] != clampll(ref_srdhm(acc[i] * 8, 1583594044) + 100, 0, 255);
    QK_CHECK(bad == 0, "double, shift 3: %d mismatches", bad);
    acc[1234] = 1 << 28;
    size_t bad_index = 0;
    QK_CHECK(qk_requantize_s32_u8_double(acc, N, 1583594044, 3, 100, 0, 255, yu, &bad_index) ==
                 QK_ERR_OVERFLOW && bad_index == 1234, "overflow index %zu", bad_index);
    /* ... and inside the scalar head before a 64-byte boundary of the output */
    for (int i = 0; i < 300; i++) acc[i] = i - 150;
    acc[2] = 1 << 28;
    const size_t off = 64 - (size_t)((uintptr_t)yu % 64) + 5; /* 5 bytes past a boundary */
    QK_CHECK(qk_requantize_s32_u8_double(acc, 300, 1583594044, 3, 100, 0, 255, yu + off, &bad_index) ==
                 QK_ERR_OVERFLOW && bad_index == 2, "overflow index in the head %zu", bad_index);
    /* v near INT32_MAX plus the zero point saturates (an int32 sum would wrap) */
    for (int i = 0; i < 256; i++) acc[i] = INT32_MAX;
    qk_requantize_s32_u8_double(acc, 256, INT32_MAX, 0, 10, 0, 255, yu, NULL);
    bad = 0;
    for (int i = 0; i < 256; i++) bad += yu[i] != 255;
    QK_CHECK(bad == 0, "saturating zero point: %d mismatches", bad);
}

/* double_round / single_round to int32 (the SIMD loops of every level, and the scalar loop
 * under QKERNELS_SIMD=scalar) against the SPEC formulas in int64: every multiplier class, right
 * and left shifts, lengths with tails, clamps and zero points at the int32 edges; a left shift
 * that overflows is reported at its own index. */
static void test_requantize_s32(void) {
    enum { M = 301 };
    static int32_t acc[M], y[M];
    long checked = 0;
    for (int it = 0; it < 600; it++) {
        const size_t n = (size_t)(qk_test_next() % M) + 1;
        for (size_t i = 0; i < n; i++) {
            const unsigned long long r = qk_test_next();
            acc[i] = (r & 1) ? (int32_t)(uint32_t)(r >> 8) : (int32_t)((r >> 8) % 4001) - 2000;
        }
        acc[0] = (it & 1) ? INT32_MIN : INT32_MAX;
        const int32_t ms[5] = {0, 1 << 30, 1583594044, INT32_MAX, (int32_t)(qk_test_next() >> 33)};
        const int32_t m = ms[it % 5];
        const int dbl = (it / 5) & 1;
        int32_t shift = (int32_t)(qk_test_next() % 32) - 31;        /* [-31, 0] */
        if (dbl && it % 7 == 0) shift = (int32_t)(qk_test_next() % 6); /* a left shift */
        if (shift > 0)
            for (size_t i = 0; i < n; i++) acc[i] >>= 6; /* most fit after the shift */
        int32_t qmin = INT32_MIN, qmax = INT32_MAX, zp = 0;
        switch (it % 4) {
            case 1: qmin = -1000; qmax = 70000; zp = 17; break;
            case 2: zp = INT32_MAX - 5; break;
            case 3: zp = INT32_MIN + 3; qmax = 0; break;
            default: break;
        }
        size_t bad_at = (size_t)-1;
        int64_t ref[M];
        for (size_t i = 0; i < n; i++) {
            int64_t r;
            if (dbl) {
                const int64_t x = (int64_t)acc[i] * ((int64_t)1 << (shift > 0 ? shift : 0));
                if (x < INT32_MIN || x > INT32_MAX) {
                    if (bad_at == (size_t)-1) bad_at = i;
                    r = 0;
                } else {
                    r = ref_rdbpot(ref_srdhm(x, m), shift > 0 ? 0 : -shift);
                }
            } else {
                const int t = 31 - shift;
                r = ((int64_t)acc[i] * m + ((int64_t)1 << (t - 1))) >> t;
            }
            ref[i] = clampll(r + zp, qmin, qmax);
        }
        size_t where = (size_t)-1;
        const qk_status st =
            dbl ? qk_requantize_s32_s32_double(acc, n, m, shift, zp, qmin, qmax, y, &where)
                : qk_requantize_s32_s32_single(acc, n, m, shift, zp, qmin, qmax, y);
        if (bad_at != (size_t)-1) {
            QK_CHECK(st == QK_ERR_OVERFLOW && where == bad_at, "s32 double overflow at %zu: %d %zu",
                     bad_at, (int)st, where);
            continue;
        }
        int bad = st != QK_OK;
        for (size_t i = 0; i < n; i++) bad += y[i] != ref[i];
        checked += (long)n;
        QK_CHECK(bad == 0, "s32 %s m %d shift %d zp %d n %zu: %d mismatches",
                 dbl ? "double" : "single", m, shift, zp, n, bad);
    }
    QK_CHECK(checked > 50000, "s32 requantize: %ld values", checked);
}

int main(void) {
    printf("qkernels %s (%s), isa %s\n", qk_version(), qk_compiler(), qk_isa_name(qk_isa()));
    test_check_values();
    test_status_codes();
    test_quantize_random();
    test_requantize_random();
    test_requantize_s32();
    return QK_TEST_SUMMARY();
}
