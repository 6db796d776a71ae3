/* test_gemm.c -- the integer linear / conv kernels from C, no Python in the loop:
 *   - qk_linear and qk_conv2d (int32 out) against a naive int64 reference, random shapes;
 *   - requantized outputs against the requantize functions applied to the int32 result;
 *   - every SIMD micro-kernel against its scalar twin on the same inputs (when the CPU has AVX2);
 *   - threads=1 and threads=3 give the same bits;
 *   - bad arguments and the accumulator bound. */
#include "operators/operators.h"
#include "qk_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int32_t rnd(int32_t lo, int32_t hi) {
    return lo + (int32_t)(qk_test_next() % (unsigned long long)(hi - lo + 1));
}

static void fill(void *p, qk_dtype t, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (t == QK_DT_U8)
            ((uint8_t *)p)[i] = (uint8_t)rnd(0, 255);
        else
            ((int8_t *)p)[i] = (int8_t)rnd(-128, 127);
    }
}
static int32_t val(const void *p, qk_dtype t, size_t i) {
    return t == QK_DT_U8 ? ((const uint8_t *)p)[i] : ((const int8_t *)p)[i];
}

static void test_twins(void) {
#if QK_X86
    if (!qk_cpu_has_avx2()) return;
    for (int it = 0; it < 200; it++) {
        const size_t kp = (size_t)rnd(0, 40), mr = (size_t)rnd(1, 6), lda = 2 * kp + (size_t)rnd(0, 3);
        int16_t a[6 * 90], b[40 * 32];
        for (size_t i = 0; i < 6 * lda; i++) a[i] = (int16_t)rnd(-255, 255);
        for (size_t i = 0; i < kp * 32; i++) b[i] = (int16_t)rnd(-255, 255);
        int32_t c1[96], c2[96];
        qk_gemm_s16_6x16__scalar(mr, kp, a, lda, b, c1);
        qk_gemm_s16_6x16__avx2(mr, kp, a, lda, b, c2);
        int same = 1;
        for (size_t r = 0; r < mr; r++)
            for (size_t j = 0; j < 16; j++) same &= c1[r * 16 + j] == c2[r * 16 + j];
        QK_CHECK(same, "gemm twin mismatch kp=%zu mr=%zu", kp, mr);
    }
    for (int it = 0; it < 200; it++) {
        const size_t kh = (size_t)rnd(1, 5), kw = (size_t)rnd(1, 5), sw = (size_t)rnd(1, 3);
        const size_t sh = (size_t)rnd(1, 3), dh = (size_t)rnd(1, 2), dw = (size_t)rnd(1, 2);
        const size_t ow = (size_t)rnd(1, 70), oh = (size_t)rnd(1, 5);
        const size_t wp = (ow - 1) * sw + dw * (kw - 1) + 1 + (size_t)rnd(0, 3);
        const size_t hp = (oh - 1) * sh + dh * (kh - 1) + 1;
        int16_t *x = (int16_t *)calloc(wp * hp + 192, sizeof(int16_t));
        int16_t w[25];
        for (size_t i = 0; i < wp * hp; i++) x[i] = (int16_t)rnd(-255, 255);
        for (size_t i = 0; i < kh * kw; i++) w[i] = (int16_t)rnd(-255, 255);
        int32_t o1[350], o2[350];
        qk_dw_plane__scalar(x, wp, w, kh, kw, sh, sw, dh, dw, oh, ow, o1);
        qk_dw_plane__avx2(x, wp, w, kh, kw, sh, sw, dh, dw, oh, ow, o2);
        QK_CHECK(memcmp(o1, o2, oh * ow * sizeof(int32_t)) == 0, "dw twin mismatch ow=%zu sw=%zu", ow, sw);
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vnni")) {
            qk_dw_plane__avx512(x, wp, w, kh, kw, sh, sw, dh, dw, oh, ow, o2);
            QK_CHECK(memcmp(o1, o2, oh * ow * sizeof(int32_t)) == 0, "dw avx512 twin ow=%zu sw=%zu", ow, sw);
        }
        free(x);
    }
#endif
}

static void test_twins8(void) {
#if QK_X86 && defined(__GNUC__)
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
          __builtin_cpu_supports("avx512vnni")))
        return;
    for (int it = 0; it < 200; it++) {
        const size_t kq = (size_t)rnd(0, 30);
        uint8_t bu[30 * 64];
        int8_t as[30 * 64];
        for (size_t i = 0; i < kq * 64; i++) {
            as[i] = (int8_t)rnd(-128, 127);
            bu[i] = (uint8_t)rnd(0, 255);
        }
        int32_t c3[192], c4[192];
        qk_gemm_s8u8_12x16__scalar(kq, as, bu, c3);
        qk_gemm_s8u8_12x16__avx512vnni(kq, as, bu, c4);
        QK_CHECK(memcmp(c3, c4, sizeof c3) == 0, "s8u8 twin kq=%zu", kq);
        int32_t c5[256], c6[256];
        qk_gemm_s8u8_16x16__scalar(kq, as, bu, c5);
        qk_gemm_s8u8_16x16__avx512vnni(kq, as, bu, c6);
        QK_CHECK(memcmp(c5, c6, sizeof c5) == 0, "s8u8 16-row twin kq=%zu", kq);
        qk_gemm_s8u8_16x8__scalar(kq, as, bu, c5);
        qk_gemm_s8u8_16x8__avx512vnni(kq, as, bu, c6);
        QK_CHECK(memcmp(c5, c6, sizeof c5) == 0, "s8u8 16x8 twin kq=%zu", kq);
        qk_gemm_s8u8_12x8__scalar(kq, as, bu, c3);
        qk_gemm_s8u8_12x8__avx512vnni(kq, as, bu, c4);
        QK_CHECK(memcmp(c3, c4, sizeof c3) == 0, "s8u8 12x8 twin kq=%zu", kq);
        qk_gemm_s8u8_16x16__scalar(kq, as, bu, c6);
        for (size_t r = 0; r < 16; r++) /* the half tile is the full tile's first 8 columns */
            QK_CHECK(memcmp(c5 + 16 * r, c6 + 16 * r, 8 * sizeof(int32_t)) == 0, "16x8 vs 16x16");
    }
#endif
}

/* 8-bit depthwise plane: the VBMI kernel against its scalar twin (strides, dilations, taps,
 * widths with tails, every byte value, the correction term). */
static void test_dw8_twin(void) {
#if QK_X86 && defined(__GNUC__)
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
          __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vbmi")))
        return;
    enum { CAP = 40 * 80 + 512 };
    static uint8_t x[CAP];
    static int32_t o1[40 * 40], o2[40 * 40];
    for (int it = 0; it < 300; it++) {
        const size_t kh = (size_t)rnd(1, 5), kw = (size_t)rnd(1, 9), kq = (kw + 3) / 4;
        const size_t sh = (size_t)rnd(1, 3), sw = (size_t)rnd(1, 2);
        const size_t dh = (size_t)rnd(1, 2), dw = (size_t)rnd(1, 3);
        if (!qk__dw8_fits(kq, sw, dw)) continue;
        const size_t oh = (size_t)rnd(1, 12), ow = (size_t)rnd(1, 37);
        const size_t wp = (ow - 1) * sw + (4 * kq - 1) * dw + 1, hp = (oh - 1) * sh + (kh - 1) * dh + 1;
        if (hp * wp + 192 > CAP) continue;
        for (size_t i = 0; i < hp * wp + 192; i++) x[i] = (uint8_t)rnd(0, 255);
        int8_t w8[5 * 12];
        memset(w8, 0, sizeof w8);
        for (size_t r = 0; r < kh; r++)
            for (size_t q = 0; q < kw; q++) w8[r * 4 * kq + q] = (int8_t)rnd(-128, 127);
        const uint32_t corr = (uint32_t)rnd(-1000000, 1000000);
        qk_dw8_plane__scalar(x, wp, w8, kh, kq, sh, sw, dh, dw, oh, ow, corr, o1);
        qk_dw8_plane__avx512vbmi(x, wp, w8, kh, kq, sh, sw, dh, dw, oh, ow, corr, o2);
        QK_CHECK(memcmp(o1, o2, oh * ow * sizeof(int32_t)) == 0,
                 "dw8 twin kh=%zu kw=%zu s=%zu,%zu d=%zu,%zu oh=%zu ow=%zu", kh, kw, sh, sw, dh, dw,
                 oh, ow);
    }
#endif
}

static void test_linear(void) {
    for (int it = 0; it < 60; it++) {
        const size_t m = (size_t)rnd(1, 70), n = (size_t)rnd(1, 40), k = (size_t)rnd(1, 300);
        const qk_dtype xt = rnd(0, 1) ? QK_DT_U8 : QK_DT_S8, wt = rnd(0, 1) ? QK_DT_U8 : QK_DT_S8;
        void *x = malloc(m * k), *w = malloc(n * k);
        fill(x, xt, m * k);
        fill(w, wt, n * k);
        int32_t *wzp = (int32_t *)malloc(n * 4), *bias = (int32_t *)malloc(n * 4);
        for (size_t o = 0; o < n; o++) {
            wzp[o] = wt == QK_DT_U8 ? rnd(0, 255) : rnd(-128, 127);
            bias[o] = rnd(-100000, 100000);
        }
        const int32_t xzp = xt == QK_DT_U8 ? rnd(0, 255) : rnd(-128, 127);
        qk_packed_weights *pw = NULL;
        QK_CHECK(qk_pack_linear(w, wt, n, k, wzp, &pw) == QK_OK, "pack");
        int32_t *y1 = (int32_t *)malloc(m * n * 4), *y2 = (int32_t *)malloc(m * n * 4);
        qk_epilogue ep;
        memset(&ep, 0, sizeof ep);
        ep.scheme = QK_REQ_NONE;
        ep.out_type = QK_DT_S32;
        ep.bias = bias;
        QK_CHECK(qk_linear(pw, x, xt, m, xzp, &ep, y1, 1) == QK_OK, "linear");
        QK_CHECK(qk_linear(pw, x, xt, m, xzp, &ep, y2, 3) == QK_OK, "linear t3");
        int ok = 1;
        for (size_t i = 0; i < m; i++)
            for (size_t o = 0; o < n; o++) {
                int64_t s = bias[o];
                for (size_t q = 0; q < k; q++)
                    s += (int64_t)(val(x, xt, i * k + q) - xzp) * (val(w, wt, o * k + q) - wzp[o]);
                ok &= s == y1[i * n + o];
            }
        QK_CHECK(ok, "linear vs reference m=%zu n=%zu k=%zu", m, n, k);
        QK_CHECK(memcmp(y1, y2, m * n * 4) == 0, "threads 1 vs 3");
        /* requantized: equals qk_requantize_* of the int32 result, per channel */
        int32_t *mult = (int32_t *)malloc(n * 4), *sh = (int32_t *)malloc(n * 4);
        for (size_t o = 0; o < n; o++) {
            mult[o] = rnd(1 << 30, INT32_MAX);
            sh[o] = rnd(-20, -5);
        }
        int8_t *q8 = (int8_t *)malloc(m * n), *r8 = (int8_t *)malloc(m * n);
        qk_test_double_s8(&ep, mult, sh);
        QK_CHECK(qk_linear(pw, x, xt, m, xzp, &ep, q8, 2) == QK_OK, "linear double");
        ok = 1;
        for (size_t i = 0; i < m; i++)
            for (size_t o = 0; o < n; o++) {
                qk_requantize_s32_s8_double(&y1[i * n + o], 1, mult[o], sh[o], 3, -128, 127,
                                            &r8[i * n + o], NULL);
                ok &= r8[i * n + o] == q8[i * n + o];
            }
        QK_CHECK(ok, "double_round epilogue");
        /* double rounding with a half-up final shift (TFLite's optimized kernels), against its
         * definition: SRDHM in int64, then (h + 2^(e-1)) >> e */
        ep.scheme = QK_REQ_DOUBLE_HALF_UP;
        QK_CHECK(qk_linear(pw, x, xt, m, xzp, &ep, q8, 2) == QK_OK, "linear double half up");
        ok = 1;
        for (size_t i = 0; i < m; i++)
            for (size_t o = 0; o < n; o++) {
                const int64_t ab = (int64_t)y1[i * n + o] * mult[o];
                const int64_t nudge = ab >= 0 ? (INT64_C(1) << 30) : 1 - (INT64_C(1) << 30);
                const int64_t h = (ab + nudge) / (INT64_C(1) << 31);
                const int e = -sh[o];
                int64_t r = ((h + (INT64_C(1) << (e - 1))) >> e) + 3;
                r = r < -128 ? -128 : (r > 127 ? 127 : r);
                ok &= r == q8[i * n + o];
            }
        QK_CHECK(ok, "double_round_half_up epilogue");
        free(mult); free(sh); free(q8); free(r8);
        qk_packed_weights_free(pw);
        free(x); free(w); free(wzp); free(bias); free(y1); free(y2);
    }
}

/* An int32 sum for the fixed-point twins: full range, small (near the rounding ties of every
 * shift), powers of two and their neighbours, the extremes. */
static int32_t fx_acc(void) {
    switch (rnd(0, 5)) {
        case 0: return (int32_t)(uint32_t)qk_test_next();
        case 1: return rnd(-1100, 1100);
        case 2: {
            const int32_t p = (int32_t)(UINT32_C(1) << rnd(0, 30));
            return rnd(0, 1) ? p + rnd(-1, 1) : -p + rnd(-1, 1);
        }
        case 3: return rnd(0, 1) ? INT32_MIN + rnd(0, 2) : INT32_MAX - rnd(0, 2);
        default: return rnd(-(1 << 20), 1 << 20);
    }
}

/* The fixed-point output stages (QK_REQ_DOUBLE, QK_REQ_DOUBLE_HALF_UP) of the SIMD epilogues
 * against their scalar twin, element for element and status for status: per-channel and
 * per-run forms, every shift in [-31, 30] (left shifts that overflow: wrap mode computes them,
 * strict mode stops at the same element), multipliers 0, 2^30 (exact halves: the ties of the
 * final shift), INT32_MAX and random, biases that wrap, u8 / s8 outputs and clamps. */
static void test_epilogue_fx_twins(void) {
#if QK_X86 && defined(__GNUC__)
    __builtin_cpu_init();
    if (!qk_cpu_has_avx2()) return;
    const int has512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                       __builtin_cpu_supports("avx512vnni");
    enum { N = 77 };
    long lanes = 0;
    for (int it = 0; it < 4000; it++) {
        int32_t src[N], mult[N], sh[N], bias[N];
        const size_t cnt = (size_t)rnd(1, N);
        const int wide = rnd(0, 3) == 0; /* left shifts (overflowing ones too) */
        const int32_t m0 = (int32_t)(qk_test_next() >> 33) /* [0, 2^31) */;
        for (size_t i = 0; i < cnt; i++) {
            src[i] = fx_acc();
            switch (rnd(0, 4)) {
                case 0: mult[i] = 1 << 30; break;
                case 1: mult[i] = rnd(0, 1) ? INT32_MAX : rnd(0, 2); break;
                case 2: mult[i] = m0; break;
                default: mult[i] = (int32_t)(qk_test_next() >> 33);
            }
            sh[i] = wide ? rnd(-31, 30) : rnd(-31, 0);
            bias[i] = rnd(0, 3) ? rnd(-70000, 70000) : (int32_t)(uint32_t)qk_test_next();
        }
        qk_epilogue ep;
        memset(&ep, 0, sizeof ep);
        ep.scheme = rnd(0, 1) ? QK_REQ_DOUBLE : QK_REQ_DOUBLE_HALF_UP;
        ep.out_type = rnd(0, 1) ? QK_DT_U8 : QK_DT_S8;
        const int32_t tmin = ep.out_type == QK_DT_U8 ? 0 : -128;
        ep.zero_point = rnd(tmin, tmin + 255);
        ep.act_min = rnd(0, 1) ? tmin : rnd(tmin, tmin + 255);
        ep.act_max = rnd(0, 1) ? tmin + 255 : rnd(ep.act_min, tmin + 255);
        ep.multiplier = mult;
        ep.shift = sh;
        ep.bias = rnd(0, 1) ? bias : NULL;
        ep.wrap = rnd(0, 1);
        const size_t o = (size_t)rnd(0, (int32_t)cnt - 1); /* the run's channel */
        uint8_t y0[N], y1[N], y2[N];
        for (int form = 0; form < 2; form++) {
            memset(y0, 0xA5, sizeof y0);
            memset(y1, 0xA5, sizeof y1);
            memset(y2, 0xA5, sizeof y2);
            qk_status s0, s1, s2 = QK_OK;
            if (form == 0) {
                s0 = qk_epilogue_channels__scalar(&ep, 0, src, cnt, y0);
                s1 = qk_epilogue_channels__avx2(&ep, 0, src, cnt, y1);
            } else {
                s0 = qk_epilogue_run__scalar(&ep, o, src, cnt, y0);
                s1 = qk_epilogue_run__avx2(&ep, o, src, cnt, y1);
                if (has512) s2 = qk_epilogue_run__avx512(&ep, o, src, cnt, y2);
            }
            QK_CHECK(s0 == s1 && memcmp(y0, y1, sizeof y0) == 0,
                     "fx avx2 twin: form %d scheme %d wrap %d cnt %zu (status %d vs %d)", form,
                     (int)ep.scheme, ep.wrap, cnt, (int)s0, (int)s1);
            if (form == 1 && has512)
                QK_CHECK(s0 == s2 && memcmp(y0, y2, sizeof y0) == 0,
                         "fx avx512 twin: scheme %d wrap %d cnt %zu (status %d vs %d)",
                         (int)ep.scheme, ep.wrap, cnt, (int)s0, (int)s2);
            lanes += (long)cnt;
        }
    }
    QK_CHECK(lanes > 100000, "fx twins: %ld lanes", lanes);
#endif
}

/* qk_linear with the fixed-point stages on every shift (left shifts included) in wrap mode,
 * against the definition on the int64 reference sums (qk__mul_by_quantized_multiplier, the
 * wrapped TFLite form), per-channel multipliers: on this CPU the fused 8-bit tiles, under
 * QKERNELS_SIMD the other paths; strict mode reports a left shift that overflows. */
static void test_linear_fx(void) {
    for (int it = 0; it < 40; it++) {
        const size_t m = (size_t)rnd(1, 30), n = (size_t)rnd(1, 140), k = (size_t)rnd(1, 120);
        const qk_dtype xt = rnd(0, 1) ? QK_DT_U8 : QK_DT_S8;
        void *x = malloc(m * k), *w = malloc(n * k);
        fill(x, xt, m * k);
        fill(w, QK_DT_S8, n * k);
        int32_t *wzp = (int32_t *)calloc(n, 4), *bias = (int32_t *)malloc(n * 4);
        int32_t *mult = (int32_t *)malloc(n * 4), *sh = (int32_t *)malloc(n * 4);
        for (size_t o = 0; o < n; o++) {
            bias[o] = rnd(-100000, 100000);
            mult[o] = rnd(0, 3) ? rnd(1 << 30, INT32_MAX) : 1 << 30;
            sh[o] = rnd(0, 3) ? rnd(-20, 0) : rnd(1, 30);
        }
        const int32_t xzp = xt == QK_DT_U8 ? rnd(0, 255) : rnd(-128, 127);
        qk_packed_weights *pw = NULL;
        QK_CHECK(qk_pack_linear(w, QK_DT_S8, n, k, wzp, &pw) == QK_OK, "pack");
        uint8_t *y = (uint8_t *)malloc(m * n), *y2 = (uint8_t *)malloc(m * n);
        qk_epilogue ep;
        memset(&ep, 0, sizeof ep);
        ep.scheme = rnd(0, 1) ? QK_REQ_DOUBLE : QK_REQ_DOUBLE_HALF_UP;
        ep.out_type = QK_DT_U8;
        ep.bias = bias;
        ep.multiplier = mult;
        ep.shift = sh;
        ep.zero_point = rnd(0, 255);
        ep.act_min = rnd(0, 40);
        ep.act_max = rnd(200, 255);
        ep.wrap = 1;
        QK_CHECK(qk_linear(pw, x, xt, m, xzp, &ep, y, 1) == QK_OK, "linear fx wrap");
        QK_CHECK(qk_linear(pw, x, xt, m, xzp, &ep, y2, 3) == QK_OK, "linear fx wrap t3");
        int ok = 1, any_ovf = 0;
        for (size_t i = 0; i < m; i++)
            for (size_t o = 0; o < n; o++) {
                int64_t s = bias[o];
                for (size_t q = 0; q < k; q++)
                    s += (int64_t)(val(x, xt, i * k + q) - xzp) * val(w, QK_DT_S8, o * k + q);
                const int32_t acc = (int32_t)s;
                int32_t r;
                if (ep.scheme == QK_REQ_DOUBLE) {
                    r = qk__mul_by_quantized_multiplier(acc, mult[o], sh[o]);
                } else {
                    const int32_t xs = sh[o] > 0 ? (int32_t)((uint32_t)acc << sh[o]) : acc;
                    (void)qk__req_double_half_up(xs, mult[o], sh[o] > 0 ? 0 : sh[o], &r);
                }
                int32_t dummy;
                any_ovf |= !qk__shl_checked(acc, sh[o], &dummy);
                int64_t v = (int64_t)r + ep.zero_point;
                v = v < ep.act_min ? ep.act_min : (v > ep.act_max ? ep.act_max : v);
                ok &= v == y[i * n + o];
            }
        QK_CHECK(ok, "linear fx vs definition m=%zu n=%zu k=%zu scheme %d", m, n, k, (int)ep.scheme);
        QK_CHECK(memcmp(y, y2, m * n) == 0, "linear fx threads 1 vs 3");
        ep.wrap = 0;
        const qk_status st = qk_linear(pw, x, xt, m, xzp, &ep, y2, 2);
        QK_CHECK(st == (any_ovf ? QK_ERR_OVERFLOW : QK_OK), "linear fx strict: status %d", (int)st);
        if (!any_ovf) QK_CHECK(memcmp(y, y2, m * n) == 0, "linear fx strict == wrap");
        qk_packed_weights_free(pw);
        free(x); free(w); free(wzp); free(bias); free(mult); free(sh); free(y); free(y2);
    }
}

/* The tie that tells QK_REQ_DOUBLE_HALF_UP from QK_REQ_DOUBLE: acc -2, M0 2^30, shift -1:
 * SRDHM gives -1, then -1 / 2 rounds to 0 (ties toward +inf) or -1 (ties away from zero). */
static void test_double_half_up_tie(void) {
    const int8_t x[2] = {-2, 2}, w[1] = {1};
    qk_packed_weights *pw = NULL;
    const int32_t wzp[1] = {0};
    QK_CHECK(qk_pack_linear(w, QK_DT_S8, 1, 1, wzp, &pw) == QK_OK, "pack 1x1");
    const int32_t mult[1] = {1 << 30}, sh[1] = {-1};
    qk_epilogue ep;
    memset(&ep, 0, sizeof ep);
    ep.out_type = QK_DT_S8;
    ep.multiplier = mult;
    ep.shift = sh;
    ep.act_min = -128;
    ep.act_max = 127;
    int8_t y[2];
    ep.scheme = QK_REQ_DOUBLE_HALF_UP;
    QK_CHECK(qk_linear(pw, x, QK_DT_S8, 2, 0, &ep, y, 1) == QK_OK, "half up");
    QK_CHECK(y[0] == 0 && y[1] == 1, "half up: %d %d", y[0], y[1]);
    ep.scheme = QK_REQ_DOUBLE;
    QK_CHECK(qk_linear(pw, x, QK_DT_S8, 2, 0, &ep, y, 1) == QK_OK, "double");
    QK_CHECK(y[0] == -1 && y[1] == 1, "double: %d %d", y[0], y[1]);
    qk_packed_weights_free(pw);
}

/* QK_REQ_FLOAT (qk_linear's float32 out, PyTorch's dynamic Linear): bit for bit
 * fmaf((float)(sum + bias), scale[o], float_bias[o]) of the int64 reference, on every path the
 * level gives (the direct and the copied rows of the 8-bit path: K a multiple of 4 or not;
 * per-channel weight zero points; 1..4 panels a block; partial panels), threads 1 == 3; the
 * other operators reject the scheme. */
static float qk_test_f32(uint32_t bits) {
    float f;
    memcpy(&f, &bits, 4);
    return f;
}
static void test_linear_float(void) {
    for (int it = 0; it < 80; it++) {
        const size_t m = (size_t)rnd(1, 40), n = (size_t)rnd(1, 150), k = (size_t)rnd(1, 200);
        const qk_dtype xt = rnd(0, 1) ? QK_DT_U8 : QK_DT_S8, wt = rnd(0, 3) ? QK_DT_S8 : QK_DT_U8;
        const int per_ch = rnd(0, 1), with_bias = rnd(0, 1), with_fb = rnd(0, 2) > 0;
        void *x = malloc(m * k), *w = malloc(n * k);
        fill(x, xt, m * k);
        fill(w, wt, n * k);
        int32_t *wzp = (int32_t *)malloc(n * 4), *bias = (int32_t *)malloc(n * 4);
        float *scale = (float *)malloc(n * 4), *fb = (float *)malloc(n * 4);
        const int32_t zp0 = wt == QK_DT_U8 ? rnd(0, 255) : (rnd(0, 1) ? 0 : rnd(-128, 127));
        for (size_t o = 0; o < n; o++) {
            wzp[o] = !per_ch ? zp0 : wt == QK_DT_U8 ? rnd(0, 255) : rnd(-128, 127);
            bias[o] = rnd(-100000, 100000);
            /* scales and biases of any magnitude (random exponent, random mantissa) */
            scale[o] = qk_test_f32((uint32_t)rnd(90, 140) << 23 | (uint32_t)rnd(0, (1 << 23) - 1));
            fb[o] = qk_test_f32((uint32_t)rnd(0, 1) << 31 | (uint32_t)rnd(100, 135) << 23 |
                                (uint32_t)rnd(0, (1 << 23) - 1));
        }
        const int32_t xzp = xt == QK_DT_U8 ? rnd(0, 255) : rnd(-128, 127);
        qk_packed_weights *pw = NULL;
        QK_CHECK(qk_pack_linear(w, wt, n, k, wzp, &pw) == QK_OK, "pack");
        float *y1 = (float *)malloc(m * n * 4), *y2 = (float *)malloc(m * n * 4);
        qk_epilogue ep;
        memset(&ep, 0, sizeof ep);
        ep.scheme = QK_REQ_FLOAT;
        ep.out_type = QK_DT_F32;
        ep.bias = with_bias ? bias : NULL;
        ep.float_bias = with_fb ? fb : NULL;
        ep.scale = scale;
        QK_CHECK(qk_linear(pw, x, xt, m, xzp, &ep, y1, 1) == QK_OK, "linear float");
        QK_CHECK(qk_linear(pw, x, xt, m, xzp, &ep, y2, 3) == QK_OK, "linear float t3");
        int ok = 1;
        for (size_t i = 0; i < m; i++)
            for (size_t o = 0; o < n; o++) {
                int64_t s = with_bias ? bias[o] : 0;
                for (size_t q = 0; q < k; q++)
                    s += (int64_t)(val(x, xt, i * k + q) - xzp) * (val(w, wt, o * k + q) - wzp[o]);
                const float r = fmaf((float)(int32_t)s, scale[o], with_fb ? fb[o] : 0.0f);
                ok &= memcmp(&r, &y1[i * n + o], 4) == 0;
            }
        QK_CHECK(ok, "linear float vs fmaf reference m=%zu n=%zu k=%zu", m, n, k);
        QK_CHECK(memcmp(y1, y2, m * n * 4) == 0, "linear float threads 1 vs 3");
        /* checks: float out only with QK_REQ_FLOAT, a positive finite scale, finite biases */
        ep.out_type = QK_DT_S32;
        QK_CHECK(qk_linear(pw, x, xt, m, xzp, &ep, y1, 1) == QK_ERR_ARG, "float: out type");
        ep.out_type = QK_DT_F32;
        const float s0 = scale[0];
        scale[0] = 0.0f;
        QK_CHECK(qk_linear(pw, x, xt, m, xzp, &ep, y1, 1) == QK_ERR_SCALE, "float: scale 0");
        scale[0] = s0;
        if (with_fb) {
            const float f0 = fb[0];
            fb[0] = qk_test_f32(0x7fc00000u);
            QK_CHECK(qk_linear(pw, x, xt, m, xzp, &ep, y1, 1) == QK_ERR_ARG, "float: NaN bias");
            fb[0] = f0;
        }
        ep.scale = NULL;
        QK_CHECK(qk_linear(pw, x, xt, m, xzp, &ep, y1, 1) == QK_ERR_ARG, "float: no scale");
        ep.scale = scale;
        ep.scheme = QK_REQ_NONE;
        QK_CHECK(qk_linear(pw, x, xt, m, xzp, &ep, y1, 1) == QK_ERR_ARG, "int32 into float");
        qk_packed_weights_free(pw);
        free(x); free(w); free(wzp); free(bias); free(scale); free(fb); free(y1); free(y2);
    }
    /* the convolution (and its 1x1 GEMM path) rejects the float output */
    const int8_t w1[4] = {1, 2, 3, 4}, x1[4] = {1, 1, 1, 1};
    const int32_t z1[4] = {0, 0, 0, 0};
    const float sc1[4] = {1.0f, 1.0f, 1.0f, 1.0f};
    qk_packed_weights *pc = NULL;
    QK_CHECK(qk_pack_conv2d(w1, QK_DT_S8, 4, 1, 1, 1, 1, z1, &pc) == QK_OK, "pack conv 1x1");
    qk_conv2d_shape cs;
    memset(&cs, 0, sizeof cs);
    cs.batch = cs.in_c = cs.in_h = 1;
    cs.in_w = 4;
    cs.stride_h = cs.stride_w = cs.dil_h = cs.dil_w = 1;
    cs.in_c = 1;
    float yc[16];
    qk_epilogue ep;
    memset(&ep, 0, sizeof ep);
    ep.scheme = QK_REQ_FLOAT;
    ep.out_type = QK_DT_F32;
    ep.scale = sc1;
    QK_CHECK(qk_conv2d(&cs, pc, x1, QK_DT_S8, 0, &ep, yc, 1) == QK_ERR_ARG, "conv rejects float");
    qk_packed_weights_free(pc);
}

static void test_conv(void) {
    for (int it = 0; it < 40; it++) {
        qk_conv2d_shape s;
        memset(&s, 0, sizeof s);
        const size_t groups = (size_t)rnd(1, 3);
        const int dw = rnd(0, 3) == 0;
        const size_t cpg = dw ? 1 : (size_t)rnd(1, 5), ocg = (size_t)rnd(1, dw ? 2 : 9);
        s.batch = (size_t)rnd(1, 2);
        s.in_c = cpg * groups;
        const size_t oc = ocg * groups, kh = (size_t)rnd(1, 5), kw = (size_t)rnd(1, 5);
        s.stride_h = (size_t)rnd(1, 3);
        s.stride_w = (size_t)rnd(1, 3);
        s.dil_h = (size_t)rnd(1, 2);
        s.dil_w = (size_t)rnd(1, 2);
        s.pad_top = (size_t)rnd(0, 3);
        s.pad_bottom = (size_t)rnd(0, 3);
        s.pad_left = (size_t)rnd(0, 3);
        s.pad_right = (size_t)rnd(0, 3);
        s.in_h = (size_t)rnd(1, 12) + s.dil_h * (kh - 1);
        s.in_w = (size_t)rnd(1, 40) + s.dil_w * (kw - 1);
        const qk_dtype xt = rnd(0, 1) ? QK_DT_U8 : QK_DT_S8, wt = rnd(0, 1) ? QK_DT_U8 : QK_DT_S8;
        const size_t nx = s.batch * s.in_c * s.in_h * s.in_w, nw = oc * cpg * kh * kw;
        void *x = malloc(nx), *w = malloc(nw);
        fill(x, xt, nx);
        fill(w, wt, nw);
        int32_t *wzp = (int32_t *)malloc(oc * 4);
        for (size_t o = 0; o < oc; o++) wzp[o] = wt == QK_DT_U8 ? rnd(0, 255) : rnd(-128, 127);
        const int32_t xzp = xt == QK_DT_U8 ? rnd(0, 255) : rnd(-128, 127);
        qk_packed_weights *pw = NULL;
        QK_CHECK(qk_pack_conv2d(w, wt, oc, cpg, kh, kw, groups, wzp, &pw) == QK_OK, "pack conv");
        size_t oh = 0, ow = 0;
        QK_CHECK(qk_conv2d_out_size(&s, pw, &oh, &ow) == QK_OK, "out size");
        const size_t ny = s.batch * oc * oh * ow;
        int32_t *y1 = (int32_t *)malloc(ny * 4), *y2 = (int32_t *)malloc(ny * 4);
        qk_epilogue ep;
        memset(&ep, 0, sizeof ep);
        ep.scheme = QK_REQ_NONE;
        ep.out_type = QK_DT_S32;
        QK_CHECK(qk_conv2d(&s, pw, x, xt, xzp, &ep, y1, 1) == QK_OK, "conv");
        QK_CHECK(qk_conv2d(&s, pw, x, xt, xzp, &ep, y2, 2) == QK_OK, "conv t2");
        int ok = 1;
        for (size_t b = 0; b < s.batch; b++)
            for (size_t o = 0; o < oc; o++)
                for (size_t i = 0; i < oh; i++)
                    for (size_t j = 0; j < ow; j++) {
                        int64_t acc = 0;
                        const size_t g = o / ocg;
                        for (size_t c = 0; c < cpg; c++)
                            for (size_t r = 0; r < kh; r++)
                                for (size_t q = 0; q < kw; q++) {
                                    const long ih = (long)(i * s.stride_h + r * s.dil_h) - (long)s.pad_top;
                                    const long iw = (long)(j * s.stride_w + q * s.dil_w) - (long)s.pad_left;
                                    if (ih < 0 || iw < 0 || ih >= (long)s.in_h || iw >= (long)s.in_w) continue;
                                    const size_t xi = ((b * s.in_c + g * cpg + c) * s.in_h + (size_t)ih) * s.in_w + (size_t)iw;
                                    const size_t wi = ((o * cpg + c) * kh + r) * kw + q;
                                    acc += (int64_t)(val(x, xt, xi) - xzp) * (val(w, wt, wi) - wzp[o]);
                                }
                        ok &= acc == y1[((b * oc + o) * oh + i) * ow + j];
                    }
        QK_CHECK(ok, "conv vs reference it=%d", it);
        QK_CHECK(memcmp(y1, y2, ny * 4) == 0, "conv threads");
        /* qk_conv2d_strided: the images ys apart in a larger array (a channel slice of a
         * concatenation), the elements between them untouched */
        const size_t img = oc * oh * ow, ys = img + (size_t)rnd(0, 9);
        const size_t n3 = (s.batch - 1) * ys + img + 7;
        int32_t *y3 = (int32_t *)malloc(n3 * 4);
        for (size_t i = 0; i < n3; i++) y3[i] = -12345;
        QK_CHECK(qk_conv2d_strided(&s, pw, x, xt, xzp, &ep, y3, ys, 1 + it % 2) == QK_OK,
                 "conv strided");
        for (size_t b = 0; b < s.batch; b++)
            ok &= memcmp(y3 + b * ys, y1 + b * img, img * 4) == 0;
        for (size_t i = 0; i < n3; i++)
            ok &= (i % ys < img && i < (s.batch - 1) * ys + img) || y3[i] == -12345;
        QK_CHECK(ok, "conv strided == contiguous it=%d", it);
        if (img > 1)
            QK_CHECK(qk_conv2d_strided(&s, pw, x, xt, xzp, &ep, y3, img - 1, 1) == QK_ERR_ARG,
                     "conv strided: stride under an image");
        free(y3);
        qk_packed_weights_free(pw);
        free(x); free(w); free(wzp); free(y1); free(y2);
    }
}

/* The int32 sums of one conv against a naive int64 reference. */
static int conv_matches_reference(const qk_conv2d_shape *s, const void *x, qk_dtype xt, int32_t xzp,
                                  const void *w, qk_dtype wt, const int32_t *wzp, size_t oc,
                                  size_t cpg, size_t groups, size_t kh, size_t kw, size_t oh,
                                  size_t ow, const int32_t *y) {
    const size_t ocg = oc / groups;
    for (size_t b = 0; b < s->batch; b++)
        for (size_t o = 0; o < oc; o++)
            for (size_t i = 0; i < oh; i++)
                for (size_t j = 0; j < ow; j++) {
                    int64_t acc = 0;
                    for (size_t c = 0; c < cpg; c++)
                        for (size_t r = 0; r < kh; r++)
                            for (size_t q = 0; q < kw; q++) {
                                const long ih = (long)(i * s->stride_h + r * s->dil_h) - (long)s->pad_top;
                                const long iw = (long)(j * s->stride_w + q * s->dil_w) - (long)s->pad_left;
                                if (ih < 0 || iw < 0 || ih >= (long)s->in_h || iw >= (long)s->in_w) continue;
                                const size_t xi = ((b * s->in_c + o / ocg * cpg + c) * s->in_h + (size_t)ih) * s->in_w + (size_t)iw;
                                const size_t wi = ((o * cpg + c) * kh + r) * kw + q;
                                acc += (int64_t)(val(x, xt, xi) - xzp) * (val(w, wt, wi) - wzp[o]);
                            }
                    if (acc != y[((b * oc + o) * oh + i) * ow + j]) return 0;
                }
    return 1;
}

/* The algorithms qk_conv2d chooses besides its tiles: 1x1 convs without padding on small images
 * as a GEMM over the pixels (many input channels, or narrow outputs), and a batch of small images
 * as one wide image; each against the reference (and shapes just past the rules, which take the
 * tiles), at 1 and 2 threads, with a requantized output too. */
static void test_conv_paths(void) {
    /* batch, in_c, in_h, in_w, out_c, groups, k, stride, pad, dilation */
    static const size_t cases[][10] = {
        {3, 30, 5, 6, 7, 1, 1, 1, 0, 1},  {2, 64, 9, 9, 20, 1, 1, 2, 0, 1},
        {1, 3, 4, 5, 9, 1, 1, 1, 0, 1},   {2, 40, 17, 19, 33, 1, 1, 2, 0, 1},
        {2, 40, 13, 15, 33, 1, 1, 2, 0, 1}, {3, 48, 7, 10, 9, 1, 1, 2, 0, 1},
        {1, 24, 12, 30, 16, 1, 1, 1, 0, 1}, {4, 5, 4, 4, 6, 1, 3, 1, 1, 1},
        {3, 4, 6, 5, 5, 1, 3, 2, 1, 1},   {2, 6, 5, 7, 4, 2, 2, 1, 0, 2},
        {3, 1, 8, 8, 8, 1, 3, 1, 1, 1},   {2, 16, 3, 3, 12, 1, 3, 1, 1, 1},
        {2, 8, 6, 6, 8, 8, 3, 1, 1, 1},   {5, 12, 4, 4, 10, 1, 1, 1, 1, 1},
        /* unpadded, u8: tiles read x itself when their reads stay inside it (1x1 at stride 1
         * and 2, and a 3x3 whose last tile reads up to the last byte), else from a copy (a last
         * tile of 4 pixels: its 16-byte rows would end past x) */
        {1, 8, 12, 16, 20, 1, 1, 1, 0, 1}, {2, 12, 14, 14, 20, 1, 1, 1, 0, 1},
        {1, 3, 18, 18, 10, 1, 3, 1, 0, 1}, {2, 16, 24, 24, 12, 1, 1, 2, 0, 1},
        {1, 16, 20, 20, 12, 1, 1, 2, 0, 1}};
    for (size_t it = 0; it < sizeof cases / sizeof cases[0]; it++) {
        const size_t *c = cases[it];
        qk_conv2d_shape s;
        memset(&s, 0, sizeof s);
        s.batch = c[0];
        s.in_c = c[1];
        s.in_h = c[2];
        s.in_w = c[3];
        s.stride_h = s.stride_w = c[7];
        s.pad_top = s.pad_left = s.pad_bottom = s.pad_right = c[8];
        s.dil_h = s.dil_w = c[9];
        const size_t oc = c[4], groups = c[5], k = c[6], cpg = s.in_c / groups;
        for (int types = 0; types < 2; types++) {
            const qk_dtype xt = types ? QK_DT_S8 : QK_DT_U8, wt = types ? QK_DT_U8 : QK_DT_S8;
            const size_t nx = s.batch * s.in_c * s.in_h * s.in_w, nw = oc * cpg * k * k;
            void *x = malloc(nx), *w = malloc(nw);
            fill(x, xt, nx);
            fill(w, wt, nw);
            int32_t *wzp = (int32_t *)malloc(oc * 4);
            for (size_t o = 0; o < oc; o++) wzp[o] = wt == QK_DT_U8 ? rnd(0, 255) : rnd(-128, 127);
            const int32_t xzp = xt == QK_DT_U8 ? rnd(0, 255) : rnd(-128, 127);
            qk_packed_weights *pw = NULL;
            QK_CHECK(qk_pack_conv2d(w, wt, oc, cpg, k, k, groups, wzp, &pw) == QK_OK, "pack");
            size_t oh = 0, ow = 0;
            QK_CHECK(qk_conv2d_out_size(&s, pw, &oh, &ow) == QK_OK, "out size");
            const size_t ny = s.batch * oc * oh * ow;
            int32_t *y1 = (int32_t *)malloc(ny * 4), *y2 = (int32_t *)malloc(ny * 4);
            uint8_t *q1 = (uint8_t *)malloc(ny), *q2 = (uint8_t *)malloc(ny);
            qk_epilogue ep;
            memset(&ep, 0, sizeof ep);
            ep.scheme = QK_REQ_NONE;
            ep.out_type = QK_DT_S32;
            QK_CHECK(qk_conv2d(&s, pw, x, xt, xzp, &ep, y1, 1) == QK_OK, "conv");
            QK_CHECK(qk_conv2d(&s, pw, x, xt, xzp, &ep, y2, 2) == QK_OK, "conv t2");
            QK_CHECK(conv_matches_reference(&s, x, xt, xzp, w, wt, wzp, oc, cpg, groups, k, k, oh,
                                            ow, y1),
                     "conv path vs reference, case %zu", it);
            QK_CHECK(memcmp(y1, y2, ny * 4) == 0, "conv path threads, case %zu", it);
            /* requantized: the fp32 output stage of each element's int32 sum */
            float *sc = (float *)malloc(oc * sizeof(float));
            for (size_t o = 0; o < oc; o++) sc[o] = 0.001f * (float)(1 + o % 7);
            ep.scheme = QK_REQ_FP32;
            ep.out_type = QK_DT_U8;
            ep.scale = sc;
            ep.zero_point = 128;
            ep.act_min = 0;
            ep.act_max = 255;
            QK_CHECK(qk_conv2d(&s, pw, x, xt, xzp, &ep, q1, 2) == QK_OK, "conv fp32");
            for (size_t b = 0; b < s.batch; b++)
                for (size_t o = 0; o < oc; o++)
                    qk_requantize_s32_u8_fp32(y1 + (b * oc + o) * oh * ow, oh * ow, sc[o], 128, 0,
                                              255, q2 + (b * oc + o) * oh * ow);
            QK_CHECK(memcmp(q1, q2, ny) == 0, "conv path requantized, case %zu", it);
            qk_packed_weights_free(pw);
            free(x); free(w); free(wzp); free(y1); free(y2); free(q1); free(q2); free(sc);
        }
    }
}

/* The padded-image copies and tile panels of the conv: every SIMD form against its scalar twin
 * (random geometry, both flips, fills, strides and run layouts). */
static void test_im2col_twins(void) {
    const qk__ukernels *uk = qk__uk();
    enum { CAP = 64 * 64 * 4 + 1024 };
    static uint8_t src[CAP], d1[CAP], d2[CAP];
    for (size_t i = 0; i < CAP; i++) src[i] = (uint8_t)rnd(0, 255);
    for (int it = 0; it < 200; it++) {
        const size_t rows = (size_t)rnd(1, 20), n = (size_t)rnd(1, 70);
        const size_t pt = (size_t)rnd(0, 3), pl = (size_t)rnd(0, 3);
        const size_t hp = rows + pt + (size_t)rnd(0, 3), wp = n + pl + (size_t)rnd(0, 3);
        const uint8_t flip = rnd(0, 1) ? 0x80 : 0, fill = (uint8_t)rnd(0, 255);
        memset(d1, 0xAB, CAP);
        memset(d2, 0xAB, CAP);
        qk_pad_u8__scalar(src, rows, n, flip, fill, pt, pl, hp, wp, d1);
        uk->pad_u8(src, rows, n, flip, fill, pt, pl, hp, wp, d2);
        QK_CHECK(memcmp(d1, d2, CAP) == 0, "pad_u8 twin rows=%zu n=%zu", rows, n);
        if (4 * hp * wp <= CAP && 4 * rows * n <= CAP) {
            memset(d1, 0xAB, CAP);
            memset(d2, 0xAB, CAP);
            qk_pad_u8x4__scalar(src, rows * n, rows, n, flip, fill, pt, pl, hp, wp, d1);
            uk->pad_u8x4(src, rows * n, rows, n, flip, fill, pt, pl, hp, wp, d2);
            QK_CHECK(memcmp(d1, d2, CAP) == 0, "pad_u8x4 twin rows=%zu n=%zu", rows, n);
        }
        if (uk->pad_u8_blocks != NULL) {
            qk_pad_u8_blocks t;
            QK_CHECK(qk_pad_u8_blocks_init(&t, rows, n, pt, pl, hp, wp), "blocks init");
            uint8_t *a = (uint8_t *)aligned_alloc(64, t.nblk * 64), *b = (uint8_t *)aligned_alloc(64, t.nblk * 64);
            qk_pad_u8_blocks__scalar(&t, src, flip, fill, a);
            uk->pad_u8_blocks(&t, src, flip, fill, b);
            QK_CHECK(memcmp(a, b, t.nblk * 64) == 0, "pad_u8_blocks twin");
            /* the same plane as qk_pad_u8 */
            qk_pad_u8__scalar(src, rows, n, flip, fill, pt, pl, hp, wp, d1);
            QK_CHECK(memcmp(a, d1, hp * wp) == 0, "pad_u8_blocks = pad_u8");
            free(a);
            free(b);
            qk_pad_u8_blocks_free(&t);
        }
    }
    /* panels: k rows at offsets koff (into a plane), runs of a tile */
    static size_t koff[64];
    _Alignas(64) static uint8_t p1[64 * 64], p2[64 * 64]; /* panels are 64-byte aligned */
    for (int it = 0; it < 300; it++) {
        const size_t k = (size_t)rnd(1, 40), k4 = (k + 3) & ~(size_t)3, sw = (size_t)rnd(1, 2);
        for (size_t kk = 0; kk < k; kk++) koff[kk] = (size_t)rnd(0, 2000);
        qk_segs g;
        g.n = (size_t)rnd(1, 3);
        g.start[0] = 0;
        g.base[0] = (size_t)rnd(0, 500);
        for (size_t r = 1; r < g.n; r++) {
            g.start[r] = g.start[r - 1] + (size_t)rnd(1, 15 / (int)g.n);
            g.base[r] = (size_t)rnd(0, 500);
        }
        size_t off[16];
        for (size_t i = 0, r = 0; i < 16; i++) {
            while (r + 1 < g.n && g.start[r + 1] <= i) r++;
            off[i] = g.base[r] + i * sw;
        }
        if (uk->im2col_u8 != NULL) {
            qk_im2col_u8__scalar(src, koff, k, k4, off, 16, p1);
            QK_CHECK(uk->im2col_u8(src, koff, k, k4, &g, sw, p2) == 1, "im2col_u8 covers");
            QK_CHECK(memcmp(p1, p2, k4 * 16) == 0, "im2col_u8 twin k=%zu sw=%zu n=%zu", k, sw, g.n);
        }
        const size_t taps = (size_t)rnd(1, 9), nq = (size_t)rnd(1, 3), plane4 = 4 * 600;
        size_t tapoff[9];
        for (size_t t = 0; t < taps; t++) tapoff[t] = (size_t)rnd(0, 60);
        if (taps * nq * 64 <= sizeof p1) {
            qk_im2col_u8x4__scalar(src, plane4, tapoff, taps, nq, &g, sw, p1);
            uk->im2col_u8x4(src, plane4, tapoff, taps, nq, &g, sw, p2);
            QK_CHECK(memcmp(p1, p2, taps * nq * 64) == 0, "im2col_u8x4 twin");
        }
    }
    /* byte transposes (every size around the 16 x 16 blocks) */
    static uint8_t t1[40 * 40], t2[40 * 40];
    for (int it = 0; it < 200; it++) {
        const size_t rows = (size_t)rnd(1, 40), cols = (size_t)rnd(1, 40);
        const size_t sp = cols + (size_t)rnd(0, 9);
        qk_transpose_u8__scalar(src, rows, cols, sp, t1);
        uk->transpose_u8(src, rows, cols, sp, t2);
        QK_CHECK(memcmp(t1, t2, rows * cols) == 0, "transpose_u8 twin %zu x %zu", rows, cols);
        QK_CHECK(t1[(cols - 1) * rows + rows - 1] == src[(rows - 1) * sp + cols - 1], "transpose");
    }
    /* int16: widened rows and panels */
    static int16_t w1[200], w2[200], s16[4096], q1[64 * 32], q2[64 * 32];
    for (int it = 0; it < 200; it++) {
        const size_t n = (size_t)rnd(0, 150);
        const qk_dtype xt = rnd(0, 1) ? QK_DT_U8 : QK_DT_S8;
        const int32_t zp = xt == QK_DT_U8 ? rnd(0, 255) : rnd(-128, 127);
        qk_widen_s16__scalar(src, xt, zp, n, w1);
        uk->widen_s16(src, xt, zp, n, w2);
        QK_CHECK(memcmp(w1, w2, n * 2) == 0, "widen_s16 twin n=%zu", n);
        const size_t k = (size_t)rnd(1, 60), sw = (size_t)rnd(1, 3), base = (size_t)rnd(0, 100);
        const size_t cnt = 16;
        for (size_t i = 0; i < 4096; i++) s16[i] = (int16_t)rnd(-255, 255);
        for (size_t kk = 0; kk < k; kk++) koff[kk % 64] = (size_t)rnd(0, 2000);
        if (k <= 64) {
            qk_im2col_s16__scalar(s16, koff, k, sw, base, cnt, q1);
            uk->im2col_s16(s16, koff, k, sw, base, cnt, q2);
            QK_CHECK(memcmp(q1, q2, ((k + 1) / 2) * 32 * 2) == 0, "im2col_s16 twin k=%zu", k);
        }
        /* a flat tile's runs (1 to 4): the scalar form against the lanes' own offsets (lanes >=
         * cnt and the k pad row zero), the SIMD form against the scalar one (every lane: cnt 16) */
        qk_segs g;
        g.n = (size_t)rnd(1, QK_SEGS);
        g.start[0] = 0;
        g.base[0] = (size_t)rnd(0, 500);
        for (size_t r = 1; r < g.n; r++) {
            g.start[r] = g.start[r - 1] + (size_t)rnd(1, 4);
            g.base[r] = (size_t)rnd(0, 500);
        }
        const size_t tcnt = (size_t)rnd(1, 16);
        if (k <= 64) {
            qk_im2col_s16_segs__scalar(s16, koff, k, sw, &g, tcnt, q1);
            for (size_t kk = 0; kk < (k + 1) / 2 * 2; kk++)
                for (size_t i = 0, r = 0; i < 16; i++) {
                    while (r + 1 < g.n && g.start[r + 1] <= i) r++;
                    const int16_t want =
                        kk < k && i < tcnt ? s16[koff[kk] + g.base[r] + i * sw] : 0;
                    QK_CHECK(q1[(kk / 2) * 32 + 2 * i + (kk & 1)] == want,
                             "im2col_s16_segs lane kk=%zu i=%zu", kk, i);
                }
            qk_im2col_s16_segs__scalar(s16, koff, k, sw, &g, 16, q1);
            uk->im2col_s16_segs(s16, koff, k, sw, &g, 16, q2);
            QK_CHECK(memcmp(q1, q2, ((k + 1) / 2) * 32 * 2) == 0,
                     "im2col_s16_segs twin k=%zu sw=%zu n=%zu", k, sw, g.n);
        }
    }
}

static void test_errors(void) {
    int8_t w[4 * 3000];
    memset(w, -128, sizeof w);
    int32_t zp[4] = {0, 0, 0, 0}, bad[4] = {0, 200, 0, 0};
    qk_packed_weights *pw = NULL;
    QK_CHECK(qk_pack_linear(w, QK_DT_S8, 4, 3000, bad, &pw) == QK_ERR_ZERO_POINT && pw == NULL, "zp");
    QK_CHECK(qk_pack_linear(w, QK_DT_S8, 0, 3000, zp, &pw) == QK_ERR_ARG, "n=0");
    QK_CHECK(qk_pack_conv2d(w, QK_DT_S8, 3, 1, 1, 1, 2, zp, &pw) == QK_ERR_ARG, "groups");
    QK_CHECK(qk_pack_linear(w, QK_DT_S8, 4, 3000, zp, &pw) == QK_OK, "pack");
    uint8_t x[3000];
    memset(x, 255, sizeof x);
    int32_t y[4];
    qk_epilogue ep;
    memset(&ep, 0, sizeof ep);
    ep.scheme = QK_REQ_NONE;
    ep.out_type = QK_DT_S32;
    /* 255 * 128 * 3000 = 97,920,000 fits; with x_zp = 0 and k = 3000 it still fits */
    QK_CHECK(qk_linear(pw, x, QK_DT_U8, 1, 0, &ep, y, 1) == QK_OK, "fits");
    QK_CHECK(y[0] == -97920000, "value %d", y[0]);
    qk_packed_weights_free(pw);
    static int8_t wb[1 * 70000];
    memset(wb, -128, sizeof wb);
    static uint8_t xb[70000];
    memset(xb, 255, sizeof xb);
    QK_CHECK(qk_pack_linear(wb, QK_DT_S8, 1, 70000, zp, &pw) == QK_OK, "pack big");
    y[0] = 12345;
    QK_CHECK(qk_linear(pw, xb, QK_DT_U8, 1, 0, &ep, y, 1) == QK_ERR_OVERFLOW && y[0] == 12345,
             "overflow detected before writing");
    ep.wrap = 1;
    QK_CHECK(qk_linear(pw, xb, QK_DT_U8, 1, 0, &ep, y, 1) == QK_OK, "wrap");
    QK_CHECK(y[0] == (int32_t)(uint32_t)(-(int64_t)255 * 128 * 70000), "wrapped value %d", y[0]);
    ep.wrap = 0;
    ep.scheme = QK_REQ_FP32;
    ep.out_type = QK_DT_U8;
    float sc = -1.0f;
    ep.scale = &sc;
    QK_CHECK(qk_linear(pw, xb, QK_DT_U8, 1, 0, &ep, y, 1) == QK_ERR_SCALE, "scale");
    qk_packed_weights_free(pw);
}

int main(void) {
    printf("isa: %s, 8-bit VNNI GEMM path: %s\n", qk_isa_name(qk_isa()), qk__level() >= QK_LEVEL_AVX512VNNI ? "yes" : "no");
    test_twins();
    test_twins8();
    test_dw8_twin();
    test_linear();
    test_double_half_up_tie();
    test_epilogue_fx_twins();
    test_linear_fx();
    test_linear_float();
    test_conv();
    test_conv_paths();
    test_im2col_twins();
    test_errors();
    return QK_TEST_SUMMARY();
}
