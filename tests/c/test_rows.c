/* test_rows.c -- the row kernels of the integer transformer blocks (csrc/elementwise/rows.c:
 * qk_row_quantize / qk_row_range / qk_row_rescale(_requantize), qk_residual_add, qk_row_renorm) and
 * qk_layernorm_s16_s16_exact, against int64 references written from qkernels.h, on random rows
 * with the extremes of their types, every column count around the SIMD widths, threads 1 and 2.
 * Run under each QKERNELS_SIMD level by tests/c/test_clib.py and `make sanitize`. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qk_test.h"

static int64_t fx(int64_t v, int32_t m, int s) { return (v * m + (INT64_C(1) << (30 - s))) >> (31 - s); }
static int64_t clampi(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : (v > hi ? hi : v); }
static int bitlen(uint64_t v) {
    int b = 0;
    while (v) {
        b++;
        v >>= 1;
    }
    return b;
}

static int32_t rnd32(void) { return (int32_t)(uint32_t)qk_test_next(); }

/* a row value: full range, small, or the type's extremes */
static int32_t value(int kind, int is16) {
    const int32_t lo = is16 ? INT16_MIN : INT32_MIN, hi = is16 ? INT16_MAX : INT32_MAX;
    switch (kind % 4) {
    case 0: return is16 ? (int16_t)rnd32() : rnd32();
    case 1: return (int32_t)(qk_test_next() % 41) - 20;
    case 2: return (qk_test_next() & 1) ? lo : hi;
    default: return (int32_t)(rnd32() >> (qk_test_next() % 31));
    }
}

static void test_quantize_and_rescale(int is16, size_t cols) {
    enum { R = 11 };
    int32_t *d = malloc(R * cols * 4), *acc = malloc(R * cols * 4), *y = malloc(R * cols * 4),
            *wsum = malloc(cols * 4), *bias = malloc(cols * 4), *om = malloc(cols * 4),
            *os = malloc(cols * 4);
    int16_t *d16 = malloc(R * cols * 2);
    uint8_t *x = malloc(R * cols), *y8 = malloc(R * cols);
    int32_t z[R], j[R], e[R], j2[R], e2[R];
    int64_t lo2[R];
    for (size_t i = 0; i < R * cols; i++) {
        d[i] = value((int)(i / cols), is16);
        if (is16) d[i] = d16[i] = (int16_t)d[i]; /* the int16 row's values */
    }
    for (int threads = 1; threads <= 2; threads++) {
        const qk_status st = is16 ? qk_row_quantize_s16(d16, R, cols, x, z, j, e, threads)
                                  : qk_row_quantize_s32(d, R, cols, x, z, j, e, threads);
        QK_CHECK(st == QK_OK, "row_quantize status %d", (int)st);
        QK_CHECK((is16 ? qk_row_range_s16(d16, R, cols, lo2, j2, e2)
                       : qk_row_range_s32(d, R, cols, lo2, j2, e2)) == QK_OK, "row_range");
        for (int r = 0; r < R; r++) {
            int64_t mn = d[r * cols], mx = mn;
            for (size_t c = 0; c < cols; c++) {
                mn = d[r * cols + c] < mn ? d[r * cols + c] : mn;
                mx = d[r * cols + c] > mx ? d[r * cols + c] : mx;
            }
            const int64_t lo = mn < 0 ? mn : 0, hi = mx > 0 ? mx : 0;
            const int64_t m = hi - lo > 1 ? hi - lo : 1;
            const int ee = bitlen((uint64_t)m) - 5 > 0 ? bitlen((uint64_t)m) - 5 : 0;
            const int32_t jj = (int32_t)(m >> ee);
            int32_t mq, sq;
            qk_quantize_multiplier(255.0 / (jj + 1), &mq, &sq);
            const int s = sq - ee;
            const int64_t zz = clampi(fx(-lo, mq, s), 0, 255);
            QK_CHECK(j[r] == jj && e[r] == ee && z[r] == zz, "row %d code", r);
            QK_CHECK(j2[r] == jj && e2[r] == ee && lo2[r] == lo, "row_range %d", r);
            int bad = 0;
            for (size_t c = 0; c < cols; c++)
                bad += x[r * cols + c] != clampi(fx(d[r * cols + c], mq, s) + zz, 0, 255);
            QK_CHECK(bad == 0, "row %d: %d values differ (cols %zu)", r, bad, cols);
        }
    }
    /* the rescale of the row sums of a random weight matrix (as raw sums with z and wsum) */
    int32_t mt[32], st[32];
    for (int k = 0; k < 32; k++) qk_quantize_multiplier((k + 1) / 255.0 / 8.0, &mt[k], &st[k]);
    for (size_t c = 0; c < cols; c++) {
        wsum[c] = (int32_t)(qk_test_next() % 20001) - 10000;
        bias[c] = c % 3 == 0 ? rnd32() : (int32_t)(qk_test_next() % 2001) - 1000;
        om[c] = (int32_t)(0x40000000u + (uint32_t)(qk_test_next() % 0x40000000u));
        os[c] = (int32_t)(qk_test_next() % 16) - 14;
    }
    for (size_t i = 0; i < R * cols; i++) acc[i] = (int32_t)(rnd32() >> (qk_test_next() % 8 + 4));
    for (int threads = 1; threads <= 2; threads++) {
        qk_status s1 = qk_row_rescale(acc, R, cols, z, wsum, j, e, mt, st, bias, y, threads);
        qk_status s2 = qk_row_rescale_requantize(acc, R, cols, z, wsum, j, e, mt, st, bias, om, os,
                                                 -5, QK_DT_S8, y8, threads);
        QK_CHECK(s1 == QK_OK && s2 == QK_OK, "row_rescale status %d %d", (int)s1, (int)s2);
        int bad = 0, bad8 = 0;
        for (int r = 0; r < R; r++) {
            for (size_t c = 0; c < cols; c++) {
                const int64_t a = (int64_t)acc[r * cols + c] - (int64_t)z[r] * wsum[c];
                int64_t v = clampi(fx(a, mt[j[r]], st[j[r]] + e[r]), INT32_MIN, INT32_MAX);
                v = clampi(v + bias[c], INT32_MIN, INT32_MAX);
                bad += y[r * cols + c] != v;
                bad8 += (int8_t)y8[r * cols + c] != clampi(fx(v, om[c], os[c]) - 5, -128, 127);
            }
        }
        QK_CHECK(bad == 0 && bad8 == 0, "rescale: %d / %d differ (cols %zu)", bad, bad8, cols);
    }
    /* refused: j outside 1..31, an out-of-range shift */
    int32_t j0 = j[0];
    j[0] = 0;
    QK_CHECK(qk_row_rescale(acc, R, cols, z, wsum, j, e, mt, st, bias, y, 1) == QK_ERR_ARG, "j 0");
    j[0] = j0;
    os[0] = 31;
    QK_CHECK(qk_row_rescale_requantize(acc, R, cols, z, wsum, j, e, mt, st, bias, om, os, 0,
                                       QK_DT_S8, y8, 1) == QK_ERR_SHIFT, "os 31");
    free(d), free(acc), free(y), free(wsum), free(bias), free(om), free(os), free(d16), free(x),
        free(y8);
}

static void test_residual_add(qk_dtype rt, qk_dtype yt, size_t cols) {
    enum { R = 9 };
    int32_t *acc = malloc(R * cols * 4), *ma = malloc(cols * 4), *sa = malloc(cols * 4),
            *mr = malloc(cols * 4), *sr = malloc(cols * 4), *so = malloc(cols * 4);
    int16_t *r = malloc(R * cols * 2), *y = malloc(R * cols * 2);
    const int64_t rlo = rt == QK_DT_U8 ? 0 : (rt == QK_DT_S8 ? -128 : -32768);
    const int64_t rhi = rt == QK_DT_U8 ? 255 : (rt == QK_DT_S8 ? 127 : 32767);
    const int64_t ylo = yt == QK_DT_U8 ? 0 : (yt == QK_DT_S8 ? -128 : -32768);
    const int64_t yhi = yt == QK_DT_U8 ? 255 : (yt == QK_DT_S8 ? 127 : 32767);
    for (size_t c = 0; c < cols; c++) {
        ma[c] = (int32_t)(0x40000000u + (uint32_t)(qk_test_next() % 0x40000000u));
        mr[c] = (int32_t)(0x40000000u + (uint32_t)(qk_test_next() % 0x40000000u));
        sa[c] = (int32_t)(qk_test_next() % 16) - 12;
        sr[c] = (int32_t)(qk_test_next() % 12) - 4;
        so[c] = (int32_t)(qk_test_next() % 14) - (c % 5 == 4 && cols > 20 ? 3 : 0);
    }
    for (size_t i = 0; i < R * cols; i++) {
        acc[i] = (int32_t)(rnd32() >> (qk_test_next() % 16));
        r[i] = (int16_t)(rlo + (int64_t)(qk_test_next() % (uint64_t)(rhi - rlo + 1)));
    }
    /* r and y as their types' bytes */
    const size_t rb = rt == QK_DT_S16 ? 2 : 1, yb = yt == QK_DT_S16 ? 2 : 1;
    uint8_t *rv = malloc(R * cols * rb), *yv = malloc(R * cols * yb);
    for (size_t i = 0; i < R * cols; i++) {
        if (rb == 2)
            ((int16_t *)rv)[i] = r[i];
        else
            rv[i] = (uint8_t)r[i];
    }
    const int32_t rzp = rt == QK_DT_U8 ? 120 : -3, ozp = yt == QK_DT_U8 ? 128 : 2;
    for (int threads = 1; threads <= 2; threads++) {
        const qk_status st = qk_residual_add(acc, rv, rt, rzp, R, cols, ma, sa, mr, sr, so, ozp, yt,
                                             yv, threads);
        QK_CHECK(st == QK_OK, "residual_add status %d", (int)st);
        int bad = 0;
        for (size_t i = 0; i < R * cols; i++) {
            const size_t c = i % cols;
            const int64_t a = clampi(fx(acc[i], ma[c], sa[c]), INT32_MIN, INT32_MAX);
            const int64_t b = clampi(fx((int64_t)r[i] - rzp, mr[c], sr[c]), INT32_MIN, INT32_MAX);
            const int64_t t = clampi(a + b, INT32_MIN, INT32_MAX);
            const int64_t v = so[c] > 0 ? (t + (INT64_C(1) << (so[c] - 1))) >> so[c]
                                        : t * (INT64_C(1) << -so[c]);
            const int64_t want = clampi(v + ozp, ylo, yhi);
            const int64_t got = yb == 2 ? ((int16_t *)yv)[i]
                                : yt == QK_DT_S8 ? (int8_t)yv[i] : yv[i];
            bad += got != want;
        }
        QK_CHECK(bad == 0, "residual_add %d %d cols %zu: %d differ", (int)rt, (int)yt, cols, bad);
    }
    QK_CHECK(qk_residual_add(acc, rv, QK_DT_S32, 0, R, cols, ma, sa, mr, sr, so, 0, yt, yv, 1) ==
                 QK_ERR_ARG, "r type");
    free(acc), free(ma), free(sa), free(mr), free(sr), free(so), free(r), free(y), free(rv),
        free(yv);
}

static void test_layernorm_s16(size_t C) {
    enum { T = 40 };
    float *gamma = malloc(C * 4), *beta = malloc(C * 4);
    int32_t *alpha = calloc(C, 4), *gbuf = malloc(C * 4);
    int64_t *bbuf = malloc(C * 8);
    uint8_t *abuf = malloc(C);
    int16_t *x = malloc(T * C * 2), *y = malloc(T * C * 2);
    for (size_t c = 0; c < C; c++) {
        gamma[c] = (float)((double)(qk_test_next() % 2001) / 1000.0 - 1.0);
        beta[c] = (float)((double)(qk_test_next() % 2001) / 5000.0 - 0.2);
    }
    qk_layernorm_params p;
    QK_CHECK(qk_layernorm_prepare(&p, QK_LAYERNORM_EXACT, C, 1e-3f, alpha, 0, gamma, beta, 1e-5f,
                                  2.0f / 16384.0f, 0, gbuf, bbuf, abuf) == QK_OK, "prepare");
    for (size_t i = 0; i < T * C; i++) {
        const size_t t = i / C;
        x[i] = t % 4 == 0 ? (int16_t)rnd32()
               : t % 4 == 1 ? (int16_t)((qk_test_next() & 1) ? INT16_MIN : INT16_MAX)
               : t % 4 == 2 ? (int16_t)7 : (int16_t)(rnd32() >> 24);
    }
    for (int threads = 1; threads <= 2; threads++) {
        QK_CHECK(qk_layernorm_s16_s16_exact(&p, x, T, y, threads) == QK_OK, "layernorm_s16");
        int bad = 0;
        for (size_t t = 0; t < T; t++) {
            const int16_t *xr = x + t * C;
            int64_t s1 = 0, s2 = 0;
            for (size_t c = 0; c < C; c++) {
                s1 += xr[c];
                s2 += (int64_t)xr[c] * xr[c];
            }
            const int64_t d = (int64_t)C * s2 - s1 * s1 + p.eps_term;
            for (size_t c = 0; c < C; c++) {
                int64_t z = 0;
                if (d > 0) {
                    const int jj = (61 - bitlen((uint64_t)d)) / 2;
                    const uint64_t rr = qk_isqrt_u64((uint64_t)d << (2 * jj));
                    const int64_t m = (int64_t)(((UINT64_C(1) << 61) + rr / 2) / rr);
                    z = (((int64_t)C * xr[c] - s1) * m + (INT64_C(1) << (44 - jj))) >> (45 - jj);
                }
                const int64_t v = (z * gbuf[c] + bbuf[c] + (INT64_C(1) << (p.shift - 1))) >> p.shift;
                bad += y[t * C + c] != clampi(v, INT16_MIN, INT16_MAX);
            }
        }
        QK_CHECK(bad == 0, "layernorm_s16 C %zu: %d differ", C, bad);
    }
    qk_layernorm_params q = p;
    q.in_zero_point = 3;
    QK_CHECK(qk_layernorm_s16_s16_exact(&q, x, T, y, 1) == QK_ERR_ARG, "zero point refused");
    free(gamma), free(beta), free(alpha), free(gbuf), free(bbuf), free(abuf), free(x), free(y);
}

/* qk_row_renorm against int64 floor division: row sums from 1 to 255 n (some multiples of 512,
 * where exact quotients occur), acc up to int32's edges where the quotient fits (|acc| < 2^23
 * rs), threads 1 and 2; a zero row and a quotient outside int32 refused. */
static void test_renorm(size_t cols, size_t n) {
    enum { R = 40 };
    int32_t *acc = malloc(R * cols * 4), *y = malloc(R * cols * 4), *y2 = malloc(R * cols * 4);
    uint8_t *p = malloc(R * n);
    int64_t rs[R];
    for (int r = 0; r < R; r++) {
        int64_t s = 0;
        for (size_t i = 0; i < n; i++) {
            const unsigned long long u = qk_test_next();
            p[r * n + i] = (uint8_t)(r % 4 == 0 ? 255 : (r % 4 == 1 ? (u % 8 == 0 ? u >> 8 : 0)
                                                                     : u >> 8));
            if (r == 2 && i == 0) p[r * n + i] = 0;
            s += p[r * n + i];
        }
        if (s == 0) p[r * n + (size_t)r % n] = 1, s = 1;
        if (r % 8 == 3 && n >= 3) { /* rs = 512 m */
            const int64_t t = 512 * (int64_t)(1 + qk_test_next() % (uint64_t)(255 * n / 512 + 1));
            s = 0;
            for (size_t i = 0; i < n; i++) {
                const int64_t v = t - s > 255 ? 255 : t - s;
                p[r * n + i] = (uint8_t)v;
                s += v;
            }
        }
        rs[r] = s;
        const int64_t hi = (INT64_C(1) << 23) * s - 1 < INT32_MAX ? (INT64_C(1) << 23) * s - 1
                                                                   : INT32_MAX;
        for (size_t c = 0; c < cols; c++) {
            const uint64_t u = qk_test_next();
            int64_t a;
            switch (u % 4) {
            case 0: a = (u & 4) ? hi : -hi; break;
            case 1: /* 2^9 a + rs = k 2 rs + {-512, 0, 512} */
                a = (((int64_t)(u >> 40) % 65281 - 32640) * 2 * s - s) / 512 +
                    (int64_t)((u >> 8) % 3) - 1;
                break;
            default: a = (int64_t)((u >> 8) % (uint64_t)(2 * hi + 1)) - hi; break;
            }
            acc[r * cols + c] = (int32_t)clampi(a, -hi, hi);
        }
    }
    const qk_status s1 = qk_row_renorm(acc, R, cols, p, n, y, 1);
    const qk_status s2 = qk_row_renorm(acc, R, cols, p, n, y2, 2);
    QK_CHECK(s1 == QK_OK && s2 == QK_OK, "row_renorm status %d %d", (int)s1, (int)s2);
    int bad = 0;
    for (int r = 0; r < R; r++)
        for (size_t c = 0; c < cols; c++) {
            const int64_t num = (int64_t)acc[r * cols + c] * 512 + rs[r], d = 2 * rs[r];
            const int64_t q = num / d - (num % d != 0 && num < 0);
            bad += y[r * cols + c] != q || y2[r * cols + c] != q;
        }
    QK_CHECK(bad == 0, "renorm: %d differ (cols %zu, n %zu)", bad, cols, n);
    /* a quotient outside int32: rs = 1, acc = 2^23 */
    memset(p, 0, n);
    p[0] = 1;
    const int32_t a0 = acc[0];
    acc[0] = 1 << 23;
    QK_CHECK(qk_row_renorm(acc, 1, cols, p, n, y, 1) == QK_ERR_OVERFLOW, "renorm overflow");
    acc[0] = a0;
    p[0] = 0; /* a zero row */
    QK_CHECK(qk_row_renorm(acc, 1, cols, p, n, y, 1) == QK_ERR_ARG, "renorm zero row");
    QK_CHECK(qk_row_renorm(acc, 1, 0, p, n, y, 1) == QK_ERR_ARG, "renorm cols 0");
    free(acc), free(y), free(y2), free(p);
}

/* qk_linear_rows (csrc/operators/linear_rows.c: the rescale as the GEMM's output stage) against
 * the int64 sums and the rescale's statement, int32 out and the 8-bit output stage, rows around
 * the 6-row tiles and 48-row chunks, columns around the 16-column panels and 8-panel groups,
 * threads 1..3; then the pair's refusals. */
static void test_linear_rows(size_t m, size_t k, size_t n) {
    int8_t *w = malloc(n * k);
    uint8_t *x = malloc(m * k), *y8 = malloc(m * n);
    int32_t *y = malloc(m * n * 4), *wsum = malloc(n * 4), *bias = malloc(n * 4),
            *om = malloc(n * 4), *os = malloc(n * 4), *z = malloc(m * 4), *j = malloc(m * 4),
            *e = malloc(m * 4);
    for (size_t i = 0; i < n * k; i++) w[i] = (int8_t)((int)(qk_test_next() % 255) - 127);
    for (size_t i = 0; i < m * k; i++) x[i] = (uint8_t)qk_test_next();
    for (size_t o = 0; o < n; o++) {
        int64_t s = 0;
        for (size_t i = 0; i < k; i++) s += w[o * k + i];
        wsum[o] = (int32_t)s;
        bias[o] = o % 3 == 0 ? rnd32() : (int32_t)(qk_test_next() % 2001) - 1000;
        om[o] = (int32_t)(0x40000000u + (uint32_t)(qk_test_next() % 0x40000000u));
        os[o] = (int32_t)(qk_test_next() % 16) - 14;
    }
    for (size_t r = 0; r < m; r++) {
        z[r] = (int32_t)(qk_test_next() % 256);
        j[r] = 1 + (int32_t)(qk_test_next() % 31);
        e[r] = (int32_t)(qk_test_next() % 20);
    }
    int32_t mt[32], st[32];
    for (int q = 0; q < 32; q++) qk_quantize_multiplier((q + 1) / 255.0 / 8.0, &mt[q], &st[q]);
    qk_packed_weights *pw = NULL;
    int32_t *wzp = calloc(n, 4);
    QK_CHECK(qk_pack_linear(w, QK_DT_S8, n, k, wzp, &pw) == QK_OK, "pack");
    qk_row_stage rs = {z, j, e, mt, st, wsum, bias, NULL, NULL, 0, QK_DT_S32};
    qk_row_stage r8 = {z, j, e, mt, st, wsum, bias, om, os, -5, QK_DT_S8};
    for (int threads = 1; threads <= 3; threads++) {
        memset(y, 0x55, m * n * 4);
        memset(y8, 0x55, m * n);
        const qk_status s1 = qk_linear_rows(pw, x, m, &rs, y, threads);
        const qk_status s2 = qk_linear_rows(pw, x, m, &r8, y8, threads);
        QK_CHECK(s1 == QK_OK && s2 == QK_OK, "linear_rows status %d %d", (int)s1, (int)s2);
        int bad = 0, bad8 = 0;
        for (size_t r = 0; r < m; r++)
            for (size_t o = 0; o < n; o++) {
                int64_t acc = 0;
                for (size_t i = 0; i < k; i++) acc += (int64_t)x[r * k + i] * w[o * k + i];
                const int64_t a = acc - (int64_t)z[r] * wsum[o];
                int64_t v = clampi(fx(a, mt[j[r]], st[j[r]] + e[r]), INT32_MIN, INT32_MAX);
                v = clampi(v + bias[o], INT32_MIN, INT32_MAX);
                bad += y[r * n + o] != v;
                bad8 += (int8_t)y8[r * n + o] != clampi(fx(v, om[o], os[o]) - 5, -128, 127);
            }
        QK_CHECK(bad == 0 && bad8 == 0, "linear_rows %zux%zux%zu threads %d: %d / %d differ", m,
                 k, n, threads, bad, bad8);
    }
    /* refused before anything is written: j 0, an output shift of 31, an int32 out_type with
     * the output stage, a zero point outside 0..255; acc - z wsum outside int32 */
    memset(y8, 0x55, m * n);
    j[0] = 0;
    QK_CHECK(qk_linear_rows(pw, x, m, &r8, y8, 1) == QK_ERR_ARG, "j 0");
    j[0] = 1;
    os[0] = 31;
    QK_CHECK(qk_linear_rows(pw, x, m, &r8, y8, 1) == QK_ERR_SHIFT, "os 31");
    os[0] = 0;
    r8.out_type = QK_DT_S32;
    QK_CHECK(qk_linear_rows(pw, x, m, &r8, y8, 1) == QK_ERR_ARG, "s32 with a stage");
    z[0] = 256;
    QK_CHECK(qk_linear_rows(pw, x, m, &rs, y, 1) == QK_ERR_ZERO_POINT, "z 256");
    int bad = 0;
    for (size_t i = 0; i < m * n; i++) bad += y8[i] != 0x55;
    QK_CHECK(bad == 0, "a refused call wrote %d values", bad);
    z[0] = 255;
    for (size_t o = 0; o < n; o++) wsum[o] = -(1 << 25);
    QK_CHECK(qk_linear_rows(pw, x, m, &rs, y, 2) == QK_ERR_OVERFLOW, "acc - z wsum > int32");
    qk_packed_weights_free(pw);
    free(w), free(x), free(y8), free(y), free(wsum), free(bias), free(om), free(os), free(z),
        free(j), free(e), free(wzp);
}

int main(void) {
    const size_t cols[] = {1, 3, 4, 5, 8, 9, 16, 17, 31, 33, 64, 100, 384};
    for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++) {
        test_quantize_and_rescale(1, cols[i]);
        test_quantize_and_rescale(0, cols[i]);
        const qk_dtype ts[3] = {QK_DT_U8, QK_DT_S8, QK_DT_S16};
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 3; b++) test_residual_add(ts[a], ts[b], cols[i]);
        test_layernorm_s16(cols[i]);
    }
    const size_t rn[] = {1, 2, 31, 32, 33, 64, 65, 128, 200};
    for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++)
        for (size_t k = 0; k < sizeof rn / sizeof rn[0]; k++) test_renorm(cols[i], rn[k]);
    const size_t lm[] = {1, 5, 6, 7, 48, 49, 97}, lk[] = {1, 3, 37, 384};
    const size_t ln[] = {1, 16, 17, 129, 300};
    for (size_t a = 0; a < sizeof lm / sizeof lm[0]; a++)
        for (size_t b = 0; b < sizeof lk / sizeof lk[0]; b++)
            for (size_t c = 0; c < sizeof ln / sizeof ln[0]; c++)
                test_linear_rows(lm[a], lk[b], ln[c]);
    return QK_TEST_SUMMARY();
}
