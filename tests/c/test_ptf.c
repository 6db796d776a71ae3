/* test_ptf.c -- PTF quantization and the integer LayerNorm, from C only. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "qk_test.h"
#include "qkernels.h"

static void test_isqrt(void) {
    for (uint64_t n = 0; n < 70000; n++) {
        const uint64_t r = qk_isqrt_u64(n);
        QK_CHECK(r * r <= n && (r + 1) * (r + 1) > n, "isqrt(%llu) = %llu", (unsigned long long)n,
                 (unsigned long long)r);
    }
    const uint64_t big[] = {UINT64_C(1) << 62, (UINT64_C(1) << 62) - 1, UINT64_C(4611686014132420609),
                            UINT64_C(4611686014132420608), UINT64_C(0xFFFFFFFFFFFFFFFF)};
    const uint64_t want[] = {UINT64_C(1) << 31, (UINT64_C(1) << 31) - 1, UINT64_C(2147483647),
                             UINT64_C(2147483646), UINT64_C(4294967295)};
    for (int i = 0; i < 5; i++)
        QK_CHECK(qk_isqrt_u64(big[i]) == want[i], "isqrt big %d", i);
    for (int i = 0; i < 20000; i++) {
        const uint64_t n = qk_test_next() >> (qk_test_next() % 63);
        const uint64_t r = qk_isqrt_u64(n);
        QK_CHECK(r * r <= n && (r + 1) > n / (r + 1), "isqrt random %llu", (unsigned long long)n);
    }
    /* [2^59, 2^61) starts from a table of 2^53-wide buckets: both ends of every bucket, the
     * squares next to them, and random values of the range */
    for (uint64_t k = 64; k <= 256; k++) {
        const uint64_t e = k << 53, r0 = (uint64_t)sqrt((double)e);
        for (uint64_t r = r0 - 2; r <= r0 + 2; r++) {
            const uint64_t ns[6] = {e, e - 1, e + 1, r * r, r * r - 1, r * r + 1};
            for (int i = 0; i < 6; i++) {
                const uint64_t got = qk_isqrt_u64(ns[i]);
                QK_CHECK(got * got <= ns[i] && (got + 1) > ns[i] / (got + 1), "isqrt table %llu",
                         (unsigned long long)ns[i]);
            }
        }
    }
    for (int i = 0; i < 100000; i++) {
        const uint64_t n = (UINT64_C(1) << 59) + (qk_test_next() >> 3) % (UINT64_C(3) << 59);
        const uint64_t r = qk_isqrt_u64(n);
        QK_CHECK(r * r <= n && (r + 1) > n / (r + 1), "isqrt range %llu", (unsigned long long)n);
    }
}

static void test_ptf_quantize(void) {
    const int32_t alpha[3] = {0, 1, 3};
    const float x[6] = {0.5f, -3.0f, 10.0f, INFINITY, -INFINITY, 0.375f};
    uint8_t q[6];
    float y[6];
    QK_CHECK(qk_ptf_quantize_f32_u8(x, 2, 3, 0.25f, alpha, 128, q, NULL) == QK_OK, "ok");
    const uint8_t want[6] = {130, 122, 133, 255, 0, 128};
    QK_CHECK(memcmp(q, want, 6) == 0, "values %d %d %d %d %d %d", q[0], q[1], q[2], q[3], q[4], q[5]);
    QK_CHECK(qk_ptf_dequantize_u8_f32(q, 1, 3, 0.25f, alpha, 128, y) == QK_OK, "deq");
    QK_CHECK(y[0] == 0.5f && y[1] == -3.0f && y[2] == 10.0f, "deq values");
    /* errors: nothing written for parameters; NaN index for data */
    const int32_t bad_alpha[3] = {0, 8, 0};
    uint8_t keep[6] = {7, 7, 7, 7, 7, 7};
    QK_CHECK(qk_ptf_quantize_f32_u8(x, 2, 3, 0.25f, bad_alpha, 128, keep, NULL) == QK_ERR_SHIFT, "alpha");
    QK_CHECK(qk_ptf_quantize_f32_u8(x, 2, 3, 0.25f, alpha, 256, keep, NULL) == QK_ERR_ZERO_POINT, "zp");
    QK_CHECK(qk_ptf_quantize_f32_u8(x, 2, 3, NAN, alpha, 128, keep, NULL) == QK_ERR_SCALE, "scale");
    QK_CHECK(qk_ptf_quantize_f32_u8(x, 2, 3, 0.25f, NULL, 128, keep, NULL) == QK_ERR_ARG, "null");
    /* every alpha outside [0, 7] is refused, whatever its bits (the check ORs them) */
    const int32_t outside[6] = {-1, 8, 15, 9, INT32_MIN, INT32_MAX};
    for (int i = 0; i < 6; i++) {
        const int32_t ba[3] = {3, outside[i], 0};
        QK_CHECK(qk_ptf_quantize_f32_u8(x, 2, 3, 0.25f, ba, 128, keep, NULL) == QK_ERR_SHIFT,
                 "alpha %d", (int)outside[i]);
        QK_CHECK(qk_ptf_dequantize_u8_f32(q, 1, 3, 0.25f, ba, 128, y) == QK_ERR_SHIFT,
                 "dequantize alpha %d", (int)outside[i]);
    }
    /* a scale near FLT_MAX: fine while scale * 2^max(alpha) is finite, refused beyond */
    const float big = 0x1p125f;
    const int32_t a_small[3] = {0, 1, 2}, a_big[3] = {0, 3, 1};
    QK_CHECK(qk_ptf_quantize_f32_u8(x, 2, 3, big, a_small, 128, q, NULL) == QK_OK, "big scale");
    QK_CHECK(qk_ptf_quantize_f32_u8(x, 2, 3, big, a_big, 128, keep, NULL) == QK_ERR_SCALE,
             "big scale, alpha 3");
    QK_CHECK(keep[0] == 7 && keep[5] == 7, "nothing written");
    const float xn[4] = {1.0f, 2.0f, NAN, 3.0f};
    const int32_t a1[1] = {0};
    size_t bad = 99;
    QK_CHECK(qk_ptf_quantize_f32_u8(xn, 4, 1, 1.0f, a1, 0, keep, &bad) == QK_ERR_NAN && bad == 2, "nan");
    QK_CHECK(qk_ptf_quantize_f32_u8(NULL, 0, 3, 0.25f, alpha, 128, NULL, NULL) == QK_OK, "empty");
}

/* A LayerNorm case from a seed: nc exponents in [0, 7], gamma in [-2.5, 2.5] and beta in [-2, 2]
 * (steps of 1/8 and 1/4), nt x nc random codes (a linear congruential generator). */
static void ln_case(uint32_t r, int nc, int nt, int32_t *al, float *ga, float *be, uint8_t *qq) {
    for (int c = 0; c < nc; c++) {
        r = r * 1103515245u + 12345u;
        al[c] = (int32_t)((r >> 16) % 8u);
        ga[c] = (float)((int)((r >> 8) % 41u) - 20) / 8.0f;
        be[c] = (float)((int)((r >> 4) % 17u) - 8) / 4.0f;
    }
    for (int i = 0; i < nc * nt; i++) {
        r = r * 1103515245u + 12345u;
        qq[i] = (uint8_t)(r >> 24);
    }
}

static void test_layernorm(void) {
    const int32_t alpha[4] = {0, 0, 0, 0};
    const float gamma[4] = {1, 1, 1, 1}, beta[4] = {0, 0, 0, 0};
    int32_t gbuf[4];
    int64_t bbuf[4];
    uint8_t abuf[4];
    const uint8_t q[8] = {100, 120, 140, 160, 128, 128, 128, 128};
    int8_t y[8];
    const int8_t want[8] = {-85, -28, 28, 85, 0, 0, 0, 0};
    const qk_layernorm_method methods[3] = {QK_LAYERNORM_EXACT, QK_LAYERNORM_SOLE_ROUND,
                                            QK_LAYERNORM_SOLE_TRUNCATE};
    for (int m = 0; m < 3; m++) {
        qk_layernorm_params p;
        QK_CHECK(qk_layernorm_prepare(&p, methods[m], 4, 0.05f, alpha, 128, gamma, beta, 0.0f,
                                      2.0f / 127, 0, gbuf, bbuf, abuf) == QK_OK, "prepare %d", m);
        QK_CHECK(qk_layernorm_ptf_u8_s8(&p, q, 2, y) == QK_OK, "run %d", m);
        if (m < 2) QK_CHECK(memcmp(y, want, 8) == 0, "method %d: %d %d %d %d", m, y[0], y[1], y[2], y[3]);
        int64_t s1[2], d[2];
        QK_CHECK(qk_layernorm_ptf_stats(&p, q, 2, s1, d) == QK_OK && s1[0] == 8 && s1[1] == 0, "stats");
        if (m == 0) QK_CHECK(d[0] == 4 * (28 * 28 + 8 * 8 + 12 * 12 + 32 * 32) - 64 && d[1] == 0, "exact D");
        QK_CHECK(qk_layernorm_ptf_u8_s8(&p, q, 0, NULL) == QK_OK, "no tokens");
    }
    qk_layernorm_params p;
    QK_CHECK(qk_layernorm_prepare(&p, QK_LAYERNORM_EXACT, 0, 0.05f, alpha, 128, gamma, beta, 0.0f,
                                  0.1f, 0, gbuf, bbuf, abuf) == QK_ERR_ARG, "channels 0");
    QK_CHECK(qk_layernorm_prepare(&p, QK_LAYERNORM_EXACT, 4, 0.05f, alpha, 128, gamma, beta, 0.0f,
                                  0.1f, 128, gbuf, bbuf, abuf) == QK_ERR_ZERO_POINT, "out zp");
    QK_CHECK(qk_layernorm_prepare(&p, QK_LAYERNORM_EXACT, 4, 0.05f, alpha, 300, gamma, beta, 0.0f,
                                  0.1f, 0, gbuf, bbuf, abuf) == QK_ERR_ZERO_POINT, "in zp");
    const float gnan[4] = {1, NAN, 1, 1};
    QK_CHECK(qk_layernorm_prepare(&p, QK_LAYERNORM_EXACT, 4, 0.05f, alpha, 128, gnan, beta, 0.0f,
                                  0.1f, 0, gbuf, bbuf, abuf) == QK_ERR_ARG, "gamma nan");
    const float ghuge[4] = {1e30f, 1, 1, 1};
    QK_CHECK(qk_layernorm_prepare(&p, QK_LAYERNORM_SOLE_ROUND, 4, 0.05f, alpha, 128, ghuge, beta,
                                  0.0f, 1e-9f, 0, gbuf, bbuf, abuf) == QK_ERR_SCALE, "too large");
    QK_CHECK(qk_layernorm_ptf_u8_s8_exact(NULL, q, 1, y) == QK_ERR_ARG, "null params");
    QK_CHECK(qk_layernorm_prepare(&p, QK_LAYERNORM_SOLE_ROUND, 4, 0.05f, alpha, 128, gamma, beta,
                                  0.0f, 0.1f, 0, gbuf, bbuf, abuf) == QK_OK, "sole");
    QK_CHECK(qk_layernorm_ptf_u8_s8_exact(&p, q, 1, y) == QK_ERR_ARG, "wrong method");
    /* a hand-edited struct that breaks the int64 bounds is refused, not overflowed */
    qk_layernorm_params bad = p;
    const int64_t big_beta[4] = {100, 0, 0, 0};
    bad.beta = big_beta;
    bad.beta_multiplier = INT64_C(1) << 59;
    QK_CHECK(qk_layernorm_ptf_u8_s8(&bad, q, 1, y) == QK_ERR_ARG, "beta bound");
    bad.beta_multiplier = 1; /* 100 * 1 is fine */
    QK_CHECK(qk_layernorm_ptf_u8_s8(&bad, q, 1, y) == QK_OK, "beta in bounds");
    bad = p;
    bad.gamma_multiplier = INT64_C(1) << 29;
    QK_CHECK(qk_layernorm_ptf_u8_s8(&bad, q, 1, y) == QK_ERR_ARG, "gamma bound");
    bad = p;
    bad.eps_term = INT64_C(1) << 61;
    QK_CHECK(qk_layernorm_ptf_u8_s8(&bad, q, 1, y) == QK_ERR_ARG, "eps bound");
    bad = p;
    bad.inv_sqrt_lut[3] = 70000u;
    QK_CHECK(qk_layernorm_ptf_u8_s8(&bad, q, 1, y) == QK_ERR_ARG, "lut bound");

    /* a C user's narrower output range [qmin, qmax] equals the full-range output clamped to it,
     * on every path (tests/c/test_clib.py runs this program per QKERNELS_SIMD level) and every
     * channel tail: 45 = 2 x 16 + 8 + 5 */
    {
        enum { NC = 45, NT = 3 };
        int32_t al[NC], gb[NC];
        float ga[NC], be[NC];
        int64_t bb[NC];
        uint8_t ab[NC], qq[NC * NT];
        int8_t yf[NC * NT], yn[NC * NT];
        ln_case(12345u, NC, NT, al, ga, be, qq);
        for (int m = 0; m < 3; m++) {
            qk_layernorm_params pn;
            QK_CHECK(qk_layernorm_prepare(&pn, methods[m], NC, 0.05f, al, 120, ga, be, 1e-6f,
                                          0.02f, 3, gb, bb, ab) == QK_OK, "prepare narrow %d", m);
            QK_CHECK(qk_layernorm_ptf_u8_s8(&pn, qq, NT, yf) == QK_OK, "full range %d", m);
            pn.out_qmin = -7;
            pn.out_qmax = 21;
            QK_CHECK(qk_layernorm_ptf_u8_s8(&pn, qq, NT, yn) == QK_OK, "narrow range %d", m);
            int bad_i = -1, clipped = 0;
            for (int i = 0; i < NC * NT; i++) {
                const int w = yf[i] < -7 ? -7 : (yf[i] > 21 ? 21 : yf[i]);
                clipped += w != yf[i];
                if (yn[i] != w && bad_i < 0) bad_i = i;
            }
            QK_CHECK(bad_i < 0, "method %d: narrow output %d differs at %d", m,
                     bad_i < 0 ? 0 : yn[bad_i], bad_i);
            QK_CHECK(clipped > 0, "method %d: the range clips nothing", m);
        }
    }

    /* the thread split (from 24576 tokens x channels: 100 x 300, jobs of 16 tokens, the last of
     * 4): threads 2 and 4 give the bits of threads 1 (= qk_layernorm_ptf_u8_s8) */
    {
        enum { MC = 300, MT = 100 };
        static int32_t al[MC], gb[MC];
        static float ga[MC], be[MC];
        static int64_t bb[MC];
        static uint8_t ab[MC], qq[MC * MT];
        static int8_t y1[MC * MT], yt[MC * MT];
        ln_case(777u, MC, MT, al, ga, be, qq);
        for (int m = 0; m < 3; m++) {
            qk_layernorm_params pm;
            QK_CHECK(qk_layernorm_prepare(&pm, methods[m], MC, 0.05f, al, 120, ga, be, 1e-6f,
                                          0.02f, 3, gb, bb, ab) == QK_OK, "prepare mt %d", m);
            QK_CHECK(qk_layernorm_ptf_u8_s8(&pm, qq, MT, y1) == QK_OK, "mt one thread %d", m);
            for (int t = 2; t <= 4; t += 2) {
                memset(yt, 0, sizeof yt);
                QK_CHECK(qk_layernorm_ptf_u8_s8_threads(&pm, qq, MT, yt, t) == QK_OK,
                         "mt run %d threads %d", m, t);
                QK_CHECK(memcmp(y1, yt, sizeof yt) == 0, "method %d: threads %d differ", m, t);
            }
        }
        QK_CHECK(qk_layernorm_ptf_u8_s8_threads(NULL, qq, MT, yt, 2) == QK_ERR_ARG, "mt NULL p");
    }

    /* worst-case magnitudes: C = max, alpha = 7, full-scale rows (sanitizer checks overflow) */
    enum { CB = QK_LAYERNORM_MAX_CHANNELS };
    static int32_t ab[CB], gb[CB];
    static int64_t bb[CB];
    static uint8_t a8[CB], qb[2 * CB];
    static float gg[CB], be[CB];
    static int8_t yb[2 * CB];
    for (int i = 0; i < CB; i++) {
        ab[i] = 7;
        gg[i] = (i & 1) ? 3.0f : -2.0f;
        be[i] = 0.5f;
        qb[i] = (i == 0) ? 0 : 255;
        qb[CB + i] = (i & 1) ? 0 : 255;
    }
    for (int m = 0; m < 3; m++) {
        QK_CHECK(qk_layernorm_prepare(&p, methods[m], CB, 1e-3f, ab, 255, gg, be, 1e-5f, 1e-3f, 0,
                                      gb, bb, a8) == QK_OK, "big prepare %d", m);
        QK_CHECK(qk_layernorm_ptf_u8_s8(&p, qb, 2, yb) == QK_OK, "big run %d", m);
        QK_CHECK(yb[0] == -128 || yb[0] == 127, "big saturates %d", yb[0]);
    }
}

int main(void) {
    test_isqrt();
    test_ptf_quantize();
    test_layernorm();
    return QK_TEST_SUMMARY();
}
