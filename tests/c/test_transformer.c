/* test_transformer.c -- the transformer kernels from C alone: qk_bmm against plain sums and the
 * output stages, qk_softmax_* and qk_gelu_* against element-by-element re-statements of their
 * formulas (written here, independently of csrc/), the status codes of bad calls, and qk_bmm's
 * micro-kernels (ukernels/bmm_u8_*) against their scalar twins. Run by tests/c/test_clib.py
 * under each SIMD path. */
#include "qk_test.h"
#include "qkernels.h"
#include "ukernels/ukernels.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int32_t rnd(int32_t lo, int32_t hi) {
    return lo + (int32_t)(qk_test_next() % (uint64_t)(hi - lo + 1));
}

/* floor(v / 2^s) for any sign, and RNE(v / 2^s), v as int64 (s < 63) */
static int64_t fdiv(int64_t v, int s) {
    int64_t q = v / ((int64_t)1 << s);
    if (q * ((int64_t)1 << s) > v) q--;
    return q;
}
static int64_t rne(int64_t v, int s) {
    if (s == 0) return v;
    const int64_t q = fdiv(v, s), rem = v - q * ((int64_t)1 << s), half = (int64_t)1 << (s - 1);
    return q + (rem > half || (rem == half && (q % 2 != 0)));
}

/* ---- bmm ------------------------------------------------------------------------------------- */
static int32_t val(const void *p, qk_dtype t, size_t i) {
    return t == QK_DT_U8 ? ((const uint8_t *)p)[i] : ((const int8_t *)p)[i];
}

static void test_bmm(void) {
    const qk_dtype types[2] = {QK_DT_U8, QK_DT_S8};
    int cases = 0;
    for (int it = 0; it < 120; it++) {
        const qk_dtype at = types[it & 1], bt = types[(it >> 1) & 1];
        const int kn = (it >> 2) & 1;
        const size_t batch = (size_t)rnd(1, 3), m = (size_t)rnd(1, 30), k = (size_t)rnd(0, 70),
                     n = (size_t)rnd(1, 40);
        uint8_t *a = malloc(batch * m * k + 1), *b = malloc(batch * n * k + 1);
        int32_t *y32 = malloc(batch * m * n * 4), *ref = malloc(batch * m * n * 4);
        int8_t *y8 = malloc(batch * m * n);
        int32_t za[3], zb[3], mult[3], shift[3];
        float scale[3];
        for (size_t i = 0; i < batch * m * k; i++) a[i] = (uint8_t)rnd(0, 255);
        for (size_t i = 0; i < batch * n * k; i++) b[i] = (uint8_t)rnd(0, 255);
        for (size_t t = 0; t < batch; t++) {
            za[t] = at == QK_DT_U8 ? rnd(0, 255) : rnd(-128, 127);
            zb[t] = bt == QK_DT_U8 ? rnd(0, 255) : rnd(-128, 127);
            mult[t] = rnd(1 << 30, INT32_MAX);
            shift[t] = rnd(-20, -6);
            scale[t] = (float)(rnd(1, 1000) * 1e-5);
        }
        for (size_t t = 0; t < batch; t++)
            for (size_t i = 0; i < m; i++)
                for (size_t j = 0; j < n; j++) {
                    int64_t s = 0;
                    for (size_t q = 0; q < k; q++) {
                        const size_t bi = t * n * k + (kn ? q * n + j : j * k + q);
                        s += (int64_t)(val(a, at, (t * m + i) * k + q) - za[t]) * (val(b, bt, bi) - zb[t]);
                    }
                    ref[(t * m + i) * n + j] = (int32_t)s;
                }
        qk_epilogue ep;
        memset(&ep, 0, sizeof ep);
        ep.scheme = QK_REQ_NONE;
        ep.out_type = QK_DT_S32;
        qk_status st = qk_bmm(a, at, za, b, bt, zb, kn ? QK_BMM_B_KN : QK_BMM_B_NK, batch, m, k, n,
                              &ep, y32, 1 + (it % 3));
        QK_CHECK(st == QK_OK && memcmp(y32, ref, batch * m * n * 4) == 0, "int32 sums, case %d", it);
        /* fixed point (double round) per item, through the public requantize as the reference */
        qk_test_double_s8(&ep, mult, shift);
        st = qk_bmm(a, at, za, b, bt, zb, kn ? QK_BMM_B_KN : QK_BMM_B_NK, batch, m, k, n, &ep, y8, 2);
        int ok = st == QK_OK;
        for (size_t t = 0; t < batch && ok; t++) {
            int8_t r8[30 * 40];
            qk_requantize_s32_s8_double(ref + t * m * n, m * n, mult[t], shift[t], 3, -128, 127, r8, NULL);
            ok = memcmp(r8, y8 + t * m * n, m * n) == 0;
        }
        QK_CHECK(ok, "double round, case %d", it);
        ep.scheme = QK_REQ_FP32;
        ep.scale = scale;
        st = qk_bmm(a, at, za, b, bt, zb, kn ? QK_BMM_B_KN : QK_BMM_B_NK, batch, m, k, n, &ep, y8, 1);
        ok = st == QK_OK;
        for (size_t t = 0; t < batch && ok; t++) {
            int8_t r8[30 * 40];
            qk_requantize_s32_s8_fp32(ref + t * m * n, m * n, scale[t], 3, -128, 127, r8);
            ok = memcmp(r8, y8 + t * m * n, m * n) == 0;
        }
        QK_CHECK(ok, "fp32, case %d", it);
        cases++;
        free(a);
        free(b);
        free(y32);
        free(ref);
        free(y8);
    }
    /* status codes */
    int8_t a1[4] = {1, 2, 3, 4}, y1[4];
    int32_t z0 = 0, zbad = 200;
    qk_epilogue ep;
    memset(&ep, 0, sizeof ep);
    ep.scheme = QK_REQ_NONE;
    ep.out_type = QK_DT_S32;
    int32_t y4[4];
    QK_CHECK(qk_bmm(a1, QK_DT_S8, &zbad, a1, QK_DT_S8, &z0, QK_BMM_B_NK, 1, 2, 2, 2, &ep, y4, 1) ==
                 QK_ERR_ZERO_POINT, "zero point");
    QK_CHECK(qk_bmm(a1, QK_DT_S32, &z0, a1, QK_DT_S8, &z0, QK_BMM_B_NK, 1, 2, 2, 2, &ep, y4, 1) ==
                 QK_ERR_ARG, "a type");
    QK_CHECK(qk_bmm(NULL, QK_DT_S8, &z0, a1, QK_DT_S8, &z0, QK_BMM_B_NK, 1, 2, 2, 2, &ep, y4, 1) ==
                 QK_ERR_ARG, "NULL a");
    int32_t bias = 1;
    ep.bias = &bias;
    QK_CHECK(qk_bmm(a1, QK_DT_S8, &z0, a1, QK_DT_S8, &z0, QK_BMM_B_NK, 1, 2, 2, 2, &ep, y4, 1) ==
                 QK_ERR_ARG, "bias is refused");
    ep.bias = NULL;
    ep.scheme = QK_REQ_FP32;
    ep.out_type = QK_DT_S8;
    float bad = -1.0f;
    ep.scale = &bad;
    ep.act_min = -128;
    ep.act_max = 127;
    QK_CHECK(qk_bmm(a1, QK_DT_S8, &z0, a1, QK_DT_S8, &z0, QK_BMM_B_NK, 1, 2, 2, 2, &ep, y1, 1) ==
                 QK_ERR_SCALE, "scale");
    /* the bound: k = 140000 of -128 x -128 */
    const size_t kbig = 140000;
    int8_t *abig = malloc(kbig), *bbig = malloc(kbig);
    memset(abig, 0x80, kbig);
    memset(bbig, 0x80, kbig);
    ep.scheme = QK_REQ_NONE;
    ep.out_type = QK_DT_S32;
    ep.scale = NULL;
    int32_t yb = 12345;
    QK_CHECK(qk_bmm(abig, QK_DT_S8, &z0, bbig, QK_DT_S8, &z0, QK_BMM_B_NK, 1, 1, kbig, 1, &ep, &yb,
                    1) == QK_ERR_OVERFLOW && yb == 12345, "overflow before writing");
    ep.wrap = 1;
    QK_CHECK(qk_bmm(abig, QK_DT_S8, &z0, bbig, QK_DT_S8, &z0, QK_BMM_B_NK, 1, 1, kbig, 1, &ep, &yb,
                    1) == QK_OK && (uint32_t)yb == (uint32_t)(kbig * 16384u), "wrap");
    free(abig);
    free(bbig);
    QK_CHECK(cases == 120, "cases");
}

/* ---- softmax --------------------------------------------------------------------------------- */
static uint32_t ib_exp16(int64_t d, int64_t x0, int64_t b, int64_t c, int32_t m16, int32_t e16) {
    if (d < 30 * x0) d = 30 * x0;
    int64_t q = 0;
    while (d - x0 * (q + 1) <= 0 && q < 30 && -(x0 * (q + 1)) <= -d) q++; /* largest q: x0 q >= d */
    const int64_t r = d - x0 * q;
    const int64_t z = (r + b) * r + c;
    if (z <= 0) return 0;
    /* e = z 2^(30-q); RNE(e m16 / 2^e16) with the product split to stay in int64 */
    const int sh = e16 - 30 + (int)q;
    const int64_t v = z * m16;
    const int64_t r16 = sh >= 63 ? 0 : rne(v, sh);
    return (uint32_t)(r16 > 32767 ? 32767 : r16);
}

static void test_softmax(void) {
    enum { R = 6, C = 70 };
    int8_t x[R * C];
    int32_t x32[R * C];
    uint8_t y[R * C], e[R * C], bits[R];
    for (int it = 0; it < 40; it++) {
        for (int i = 0; i < R * C; i++) {
            x[i] = (int8_t)rnd(-128, 127);
            x32[i] = rnd(-200000, 200000);
        }
        for (int i = 0; i < C; i++) x[i] = (int8_t)(i == 5 ? 127 : -128); /* one dominant element */
        qk_softmax_params p;
        memset(&p, 0, sizeof p);
        p.method = QK_SOFTMAX_IBERT;
        p.x0 = -rnd(1, 80);
        p.b = rnd(0, 300);
        p.c = rnd(1, 30000);
        p.m16 = rnd(1, INT32_MAX);
        p.e16 = rnd(30, 60);
        for (int v = 0; v < 2; v++) {
            const int is32 = v == 1;
            QK_CHECK(qk_softmax_u8(&p, is32 ? (const void *)x32 : (const void *)x,
                                   is32 ? QK_DT_S32 : QK_DT_S8, R, C, y) == QK_OK, "ibert");
            int ok = 1;
            for (int r = 0; r < R; r++) {
                int64_t mx = INT64_MIN, s = 0;
                uint32_t vv[C];
                for (int i = 0; i < C; i++) {
                    const int64_t xi = is32 ? x32[r * C + i] : x[r * C + i];
                    mx = xi > mx ? xi : mx;
                }
                for (int i = 0; i < C; i++) {
                    const int64_t xi = is32 ? x32[r * C + i] : x[r * C + i];
                    vv[i] = ib_exp16(xi - mx, p.x0, p.b, p.c, p.m16, p.e16);
                    s += vv[i];
                }
                const uint64_t f = s ? ((uint64_t)1 << 32) / (uint64_t)s : 0;
                for (int i = 0; i < C; i++) {
                    const uint64_t q = ((uint64_t)vv[i] * f) >> 24;
                    ok &= y[r * C + i] == (q > 255 ? 255 : q);
                }
            }
            QK_CHECK(ok, "ibert output, case %d", it);
        }
        /* SOLE with a power-of-two scale 2^-3: v = d * 2^13 */
        memset(&p, 0, sizeof p);
        p.method = QK_SOFTMAX_SOLE;
        p.sole_mult = 1 << 29;
        p.sole_shift = 16;
        p.sole_round = it & 1;
        QK_CHECK(qk_softmax_u8(&p, x, QK_DT_S8, R, C, y) == QK_OK, "sole");
        QK_CHECK(qk_softmax_sole_log2(&p, x, QK_DT_S8, R, C, e, bits) == QK_OK, "sole log2");
        int ok = 1;
        for (int r = 0; r < R; r++) {
            int mx = -128;
            for (int i = 0; i < C; i++) mx = x[r * C + i] > mx ? x[r * C + i] : mx;
            int k[C];
            uint64_t s = 0;
            for (int i = 0; i < C; i++) {
                const int64_t vq = (int64_t)(x[r * C + i] - mx) * 8192; /* d * 2^-3 in Q16 */
                const int64_t t = vq + fdiv(vq, 1) - fdiv(vq, 4);
                int64_t kk = p.sole_round ? -fdiv(t + 32768, 16) : -fdiv(t, 16);
                k[i] = (int)(kk > 15 ? 15 : kk);
                s += (uint64_t)1 << (16 - k[i]);
            }
            int w = 63;
            while (!((s >> w) & 1)) w--;
            const int bit = (int)((s >> (w - 1)) & 1);
            const uint64_t cq = bit ? 145 : 209;
            ok &= bits[r] == bit;
            for (int i = 0; i < C; i++) {
                ok &= e[r * C + i] == k[i] + w - 16;
                ok &= y[r * C + i] == ((cq << (16 - k[i])) + ((uint64_t)1 << (w - 1))) >> w;
            }
        }
        QK_CHECK(ok, "sole output, case %d", it);
        {
            uint32_t tv[256];
            uint8_t tk[256];
            int tok = qk_softmax_table(&p, tv, tk) == QK_OK;
            for (int d = 0; d < 256 && tok; d++) {
                const int64_t vq = (int64_t)(-d) * 8192;
                const int64_t t = vq + fdiv(vq, 1) - fdiv(vq, 4);
                const int64_t kk = p.sole_round ? -fdiv(t + 32768, 16) : -fdiv(t, 16);
                const int k = (int)(kk > 15 ? 15 : kk);
                tok = tk[d] == k && tv[d] == (UINT32_C(1) << (16 - k));
            }
            QK_CHECK(tok, "sole table, case %d", it);
        }
        /* LUT */
        memset(&p, 0, sizeof p);
        p.method = QK_SOFTMAX_LUT;
        const double sc = rnd(1, 100) * 1e-3;
        for (int d = 0; d < 256; d++) p.lut[d] = (uint32_t)floor(32768.0 * exp(-d * sc) + 0.5);
        QK_CHECK(qk_softmax_u8(&p, x, QK_DT_S8, R, C, y) == QK_OK, "lut");
        ok = 1;
        for (int r = 0; r < R; r++) {
            int mx = -128;
            uint64_t s = 0;
            for (int i = 0; i < C; i++) mx = x[r * C + i] > mx ? x[r * C + i] : mx;
            for (int i = 0; i < C; i++) s += p.lut[mx - x[r * C + i]];
            const uint64_t f = ((uint64_t)1 << 32) / s;
            for (int i = 0; i < C; i++) {
                const uint64_t q = ((uint64_t)p.lut[mx - x[r * C + i]] * f + (1u << 23)) >> 24;
                ok &= y[r * C + i] == (q > 255 ? 255 : q);
            }
        }
        QK_CHECK(ok, "lut output, case %d", it);
        QK_CHECK(qk_softmax_u8(&p, x32, QK_DT_S32, R, C, y) == QK_ERR_ARG, "lut refuses int32");
        uint32_t tv[256];
        uint8_t tk[256];
        QK_CHECK(qk_softmax_table(&p, tv, tk) == QK_OK && memcmp(tv, p.lut, sizeof tv) == 0 &&
                     tk[0] == 0 && tk[255] == 0, "lut table");
    }
    qk_softmax_params p;
    memset(&p, 0, sizeof p);
    p.method = QK_SOFTMAX_IBERT;
    p.x0 = 5; /* must be negative */
    p.c = 10;
    p.m16 = 1;
    p.e16 = 40;
    QK_CHECK(qk_softmax_u8(&p, x, QK_DT_S8, R, C, y) == QK_ERR_ARG, "bad x0");
    p.method = 7;
    QK_CHECK(qk_softmax_u8(&p, x, QK_DT_S8, R, C, y) == QK_ERR_ARG, "bad method");
    p.method = QK_SOFTMAX_IBERT;
    QK_CHECK(qk_softmax_sole_log2(&p, x, QK_DT_S8, R, C, e, bits) == QK_ERR_ARG, "log2 is SOLE's");
    QK_CHECK(qk_softmax_u8(NULL, x, QK_DT_S8, R, C, y) == QK_ERR_ARG, "NULL params");
}

/* ---- gelu ------------------------------------------------------------------------------------ */
static void test_gelu(void) {
    /* the per-tensor parameters qkernels.prepare_gelu(1e-3, out_scale=0.05) gives */
    int64_t b = -2502, c = -6925073, sh = -423;
    int32_t mult = 1664851015, rsh = 46;
    qk_gelu_ibert_params p = {1, &b, &c, &sh, &mult, &rsh};
    enum { N = 3000 };
    int32_t x[N];
    int8_t y[N], x8[N], y8[N];
    for (int i = 0; i < N; i++) {
        x[i] = rnd(-9000, 9000);
        x8[i] = (int8_t)rnd(-128, 127);
    }
    QK_CHECK(qk_gelu_ibert(&p, x, QK_DT_S32, 0, N, y, QK_DT_S8, 0, -128, 127) == QK_OK, "gelu");
    int ok = 1;
    for (int i = 0; i < N; i++) {
        const int64_t xv = x[i];
        const int64_t a = llabs(xv) < -b ? llabs(xv) : -b;
        int64_t L = (a + b) * (a + b) + c;
        L = xv > 0 ? L : (xv < 0 ? -L : 0);
        L = fdiv(L, 14);
        const int64_t g = -(xv * (L + sh)); /* |g| < 2^24: g * mult fits int64 */
        int64_t res = rne(g * mult, rsh);
        res = res < -128 ? -128 : (res > 127 ? 127 : res);
        ok &= y[i] == res;
    }
    QK_CHECK(ok, "gelu int32 element by element");
    int32_t ext[2] = {INT32_MIN, INT32_MAX};
    int8_t ye[2];
    QK_CHECK(qk_gelu_ibert(&p, ext, QK_DT_S32, 0, 2, ye, QK_DT_S8, 0, -128, 127) == QK_OK &&
                 ye[0] == -128 && ye[1] == 127, "int32 extremes saturate");
    /* 8-bit input: the table path (n >= 512) equals the element path (n < 512) */
    QK_CHECK(qk_gelu_ibert(&p, x8, QK_DT_S8, -3, N, y8, QK_DT_S8, 0, -128, 127) == QK_OK, "8-bit");
    ok = 1;
    for (int i = 0; i < N; i += 7) {
        int8_t one;
        qk_gelu_ibert(&p, x8 + i, QK_DT_S8, -3, 1, &one, QK_DT_S8, 0, -128, 127);
        ok &= one == y8[i];
    }
    QK_CHECK(ok, "8-bit table == element");
    /* the byte table */
    uint8_t t[256], xb[1000], yb[1000];
    for (int i = 0; i < 256; i++) t[i] = (uint8_t)(i * 37 + 11);
    for (int i = 0; i < 1000; i++) xb[i] = (uint8_t)rnd(0, 255);
    QK_CHECK(qk_gelu_lut(t, xb, 1000, yb) == QK_OK, "lut");
    ok = 1;
    for (int i = 0; i < 1000; i++) ok &= yb[i] == t[xb[i]];
    QK_CHECK(ok, "lut values");
    /* status codes */
    int64_t bpos = 3;
    qk_gelu_ibert_params bad = {1, &bpos, &c, &sh, &mult, &rsh};
    QK_CHECK(qk_gelu_ibert(&bad, x, QK_DT_S32, 0, N, y, QK_DT_S8, 0, -128, 127) == QK_ERR_ARG, "b");
    QK_CHECK(qk_gelu_ibert(&p, x, QK_DT_S32, 0, N, y, QK_DT_S8, 0, -128, 300) == QK_ERR_QRANGE,
             "range");
    QK_CHECK(qk_gelu_ibert(&p, x8, QK_DT_S8, 200, N, y, QK_DT_S8, 0, -128, 127) ==
                 QK_ERR_ZERO_POINT, "x zero point");
    qk_gelu_ibert_params two = {2, &b, &c, &sh, &mult, &rsh}; /* 2 channels: n must divide */
    int64_t b2[2] = {b, b}, c2[2] = {c, c}, s2[2] = {sh, sh};
    int32_t m2[2] = {mult, mult}, r2[2] = {rsh, rsh};
    two.b = b2;
    two.c = c2;
    two.shift = s2;
    two.multiplier = m2;
    two.rshift = r2;
    QK_CHECK(qk_gelu_ibert(&two, x, QK_DT_S32, 0, 3, y, QK_DT_S8, 0, -128, 127) == QK_ERR_ARG,
             "n not a multiple of channels");
    QK_CHECK(qk_gelu_lut(NULL, xb, 10, yb) == QK_ERR_ARG, "NULL table");
}

/* The 8-bit packing and tile correction of this process's table against the scalar twins:
 * random sizes around the quads and panels, both layouts of B, both flips. */
static void test_bmm_twins(void) {
    const qk__ukernels *uk = qk__uk();
    enum { CAP = 70 * 80 + 64 };
    static uint8_t src[CAP];
    static uint8_t p1[6 * 20 * 64], p2[6 * 20 * 64];
    static uint32_t c1[96], c2[96];
    static int8_t a1[4 * 20 * 48], a2[4 * 20 * 48];
    for (size_t i = 0; i < CAP; i++) src[i] = (uint8_t)rnd(0, 255);
    for (int it = 0; it < 300; it++) {
        const size_t n = (size_t)rnd(1, 80), k = (size_t)rnd(1, 70), kq = (k + 3) / 4;
        const int kn = rnd(0, 1);
        const uint8_t flip = rnd(0, 1) ? 0x80 : 0;
        const size_t panels = (n + 15) / 16, bytes = panels * kq * 64;
        memset(p1, 0, bytes);
        memset(p2, 0, bytes);
        memset(c1, 0xAB, sizeof c1);
        memset(c2, 0xAB, sizeof c2);
        qk_bmm_pack_b8__scalar(src, n, k, kn, flip, p1, c1);
        uk->bmm_pack_b8(src, n, k, kn, flip, p2, c2);
        QK_CHECK(memcmp(p1, p2, bytes) == 0 && memcmp(c1, c2, panels * 16 * 4) == 0,
                 "bmm_pack_b8 twin n=%zu k=%zu kn=%d", n, k, kn);
        /* the column sums are those of the bytes ^ flip, 0 past n */
        uint32_t s0 = 0;
        for (size_t i = 0; i < k; i++) s0 += (uint8_t)(src[kn ? i * n : i] ^ flip);
        QK_CHECK(c1[0] == s0 && (n % 16 == 0 || c1[panels * 16 - 1] == 0), "bmm_pack_b8 sums");
        const size_t rows = (size_t)rnd(1, 48), abytes = ((rows + 11) / 12) * kq * 48;
        int32_t r1[48], r2[48];
        memset(a1, 0x5A, sizeof a1);
        memset(a2, 0x5A, sizeof a2);
        qk_bmm_pack_a8__scalar(src, rows, k, flip, a1, abytes, r1);
        uk->bmm_pack_a8(src, rows, k, flip, a2, abytes, r2);
        QK_CHECK(memcmp(a1, a2, sizeof a1) == 0 && memcmp(r1, r2, rows * 4) == 0,
                 "bmm_pack_a8 twin rows=%zu k=%zu", rows, k);
        int32_t tile[12 * 16], o1[12 * 40], o2[12 * 40];
        uint32_t ct[16], rt[12];
        for (int i = 0; i < 12 * 16; i++) tile[i] = (int32_t)qk_test_next();
        for (int i = 0; i < 16; i++) ct[i] = (uint32_t)qk_test_next();
        for (int i = 0; i < 12; i++) rt[i] = (uint32_t)qk_test_next();
        const size_t mr = (size_t)rnd(1, 12), ostride = (size_t)rnd(16, 40);
        memset(o1, 0x33, sizeof o1);
        memset(o2, 0x33, sizeof o2);
        qk_bmm_tile_fix__scalar(tile, mr, ct, rt, o1, ostride);
        uk->bmm_tile_fix(tile, mr, ct, rt, o2, ostride);
        QK_CHECK(memcmp(o1, o2, sizeof o1) == 0, "bmm_tile_fix twin mr=%zu", mr);
    }
}

/* ---- int32 forms: SOLE by thresholds, i-GELU to 8 bits with float rounding and tie redo ---- */
static void test_int32_forms(void) {
    enum { R = 5, C = 203 };
    int32_t x[R * C];
    uint8_t e[R * C], bits[R];
    for (int it = 0; it < 60; it++) {
        for (int i = 0; i < R * C; i++) x[i] = rnd(-3000000, 3000000) * (it % 3 == 0 ? 700 : 1);
        x[3] = INT32_MIN;
        x[C + 7] = INT32_MAX;
        qk_softmax_params p;
        memset(&p, 0, sizeof p);
        p.method = QK_SOFTMAX_SOLE;
        p.sole_mult = rnd(1, 1 << 30);
        p.sole_shift = rnd(20, 50);
        p.sole_round = it & 1;
        QK_CHECK(qk_softmax_sole_log2(&p, x, QK_DT_S32, R, C, e, bits) == QK_OK, "sole int32");
        int ok = 1;
        for (int r = 0; r < R; r++) {
            int64_t mx = INT64_MIN;
            for (int i = 0; i < C; i++) mx = x[r * C + i] > mx ? x[r * C + i] : mx;
            int k[C];
            uint64_t s = 0;
            for (int i = 0; i < C; i++) {
                const int64_t vq = fdiv((x[r * C + i] - mx) * (int64_t)p.sole_mult, p.sole_shift);
                const int64_t t = vq + fdiv(vq, 1) - fdiv(vq, 4);
                const int64_t kk = p.sole_round ? -fdiv(t + 32768, 16) : -fdiv(t, 16);
                k[i] = (int)(kk > 15 ? 15 : kk);
                s += (uint64_t)1 << (16 - k[i]);
            }
            int w = 63;
            while (!((s >> w) & 1)) w--;
            for (int i = 0; i < C; i++) ok &= e[r * C + i] == k[i] + w - 16;
        }
        QK_CHECK(ok, "sole int32 exponents, case %d", it);
    }
    /* i-GELU, int32 -> int8 / uint8: multiplier 2^30 +- {0, 1}, rshift 31 / 33 put values on
     * and beside ties (the lanes redone in integers) */
    enum { N = 4099 };
    int32_t xg[N];
    uint8_t y[N];
    for (int i = 0; i < N; i++) xg[i] = i < 3000 ? i - 1500 : rnd(-3000, 3000);
    xg[0] = INT32_MIN;
    xg[1] = INT32_MAX;
    int64_t b = -51, c = -2771, sh = -1;
    for (int v = 0; v < 12; v++) {
        int32_t mult = (1 << 30) + (v % 3) - 1, rsh = v & 1 ? 33 : 31;
        const int sg = (v >> 1) & 1;
        const int32_t zp = v >= 6 ? 3 : 0, lo = sg ? -128 : 0, hi = sg ? 127 : 255;
        qk_gelu_ibert_params p = {1, &b, &c, &sh, &mult, &rsh};
        QK_CHECK(qk_gelu_ibert(&p, xg, QK_DT_S32, 0, N, y, sg ? QK_DT_S8 : QK_DT_U8, zp, lo,
                               hi) == QK_OK, "gelu ties");
        int ok = 1;
        for (int i = 0; i < N; i++) {
            const int64_t xv = xg[i];
            const int64_t a = llabs(xv) < -b ? llabs(xv) : -b;
            int64_t L = (a + b) * (a + b) + c;
            L = xv > 0 ? L : (xv < 0 ? -L : 0);
            L = fdiv(L, 14);
            const int64_t g = -(xv * (L + sh));
            /* |g| <= 2^31 (|L + sh| <= 1 here): g m < 2^62 */
            int64_t res = rne(g * mult, rsh) + zp;
            res = res < lo ? lo : (res > hi ? hi : res);
            ok &= (sg ? (int64_t)(int8_t)y[i] : (int64_t)y[i]) == res;
        }
        QK_CHECK(ok, "gelu int32 -> 8-bit at ties, case %d", v);
    }
}

/* ---- the interp GELU and the exp2 softmax: the statements of qkernels.h in plain C, with
 * floor division (no shift of a negative value) ---------------------------------------------- */
static int64_t rhu(int64_t v, int e) { return fdiv(v + ((int64_t)1 << (e - 1)), e); }

static void test_gelu_interp_exp2(void) {
    enum { CH = 37, ROWS = 60, N = CH * ROWS };
    int32_t tab[QK_GELU_INTERP_ENTRIES];
    for (int i = 0; i < QK_GELU_INTERP_SEGMENTS; i++) { /* any table in range: the arithmetic */
        tab[i] = rnd(0, 12000);
        tab[QK_GELU_INTERP_SEGMENTS + i] = rnd(-600, 2100);
        tab[2 * QK_GELU_INTERP_SEGMENTS + i] = rnd(-200, 200);
    }
    int32_t mi[CH], ei[CH], mo[CH], eo[CH];
    for (int c = 0; c < CH; c++) {
        mi[c] = rnd(1 << 30, 0x7fffffff), ei[c] = rnd(20, 40);
        mo[c] = rnd(1 << 30, 0x7fffffff), eo[c] = rnd(28, 50);
    }
    static int32_t x[N], y32[N];
    static uint8_t y8[N];
    for (int i = 0; i < N; i++) x[i] = (i % 11 == 0) ? (int32_t)(uint32_t)qk_test_next() : rnd(-(1 << 24), 1 << 24);
    x[0] = INT32_MIN, x[1] = INT32_MAX;
    const qk_gelu_interp_params p = {CH, mi, ei, mo, eo, tab};
    QK_CHECK(qk_gelu_interp(&p, x, N, y32, QK_DT_S32, 5, INT32_MIN, INT32_MAX) == QK_OK, "interp");
    QK_CHECK(qk_gelu_interp(&p, x, N, y8, QK_DT_U8, 3, 0, 255) == QK_OK, "interp u8");
    int bad = 0;
    for (int i = 0; i < N; i++) {
        const int c = i % CH;
        int64_t u = rhu((int64_t)x[i] * mi[c], ei[c]);
        u = u > INT32_MAX ? INT32_MAX : (u < -INT32_MAX ? -INT32_MAX : u);
        const int64_t t = u < 0 ? -u : u;
        int64_t h = 0;
        if (t < ((int64_t)QK_GELU_INTERP_SEGMENTS << 12)) {
            const int64_t k = t / 4096, f = t % 4096, w = fdiv(f * (f - 4096), 12);
            h = tab[k] + rhu(tab[QK_GELU_INTERP_SEGMENTS + k] * f +
                             tab[2 * QK_GELU_INTERP_SEGMENTS + k] * w, 12);
        }
        const int64_t v = rhu(((u > 0 ? u : 0) - h) * mo[c], eo[c]);
        const int64_t a = v + 5 > INT32_MAX ? INT32_MAX : (v + 5 < INT32_MIN ? INT32_MIN : v + 5);
        const int64_t b = v + 3 > 255 ? 255 : (v + 3 < 0 ? 0 : v + 3);
        bad += (y32[i] != a) + (y8[i] != b);
    }
    QK_CHECK(bad == 0, "interp: %d mismatches", bad);
    QK_CHECK(qk_gelu_interp(&p, x, N - 1, y32, QK_DT_S32, 0, INT32_MIN, INT32_MAX) == QK_ERR_ARG,
             "n a multiple of channels");
    ei[3] = 63;
    QK_CHECK(qk_gelu_interp(&p, x, N, y32, QK_DT_S32, 0, INT32_MIN, INT32_MAX) == QK_ERR_SHIFT,
             "shift");
    ei[3] = 30;
    tab[QK_GELU_INTERP_SEGMENTS + 4] = 1 << 13;
    QK_CHECK(qk_gelu_interp(&p, x, N, y32, QK_DT_S32, 0, INT32_MIN, INT32_MAX) == QK_ERR_ARG,
             "table");

    /* exp2 softmax: rows of int32 scores, some masked (int32's minimum) */
    enum { R = 30, C = 77 };
    static int32_t sx[R * C];
    static uint8_t sy[R * C];
    int32_t st[QK_EXP2_TABLE];
    for (int j = 0; j < 32; j++) {
        st[j] = (int32_t)llround(32768.0 * exp2(-j / 32.0));
        st[32 + j] = (int32_t)llround(32768.0 * exp2(-j / 1024.0));
    }
    for (int i = 0; i < R * C; i++) sx[i] = (i % 13 == 0) ? INT32_MIN : rnd(-20000, 20000);
    for (int i = 0; i < C; i++) sx[i] = (int32_t)(uint32_t)qk_test_next(); /* the whole range */
    const int32_t mult = 1477051392, shift = 30; /* S log2(e) 2^10 ~ 1.4 (S ~ 9.5e-4) */
    const int32_t cap = (int32_t)(((int64_t)17 << (10 + shift)) / mult + 1);
    const qk_softmax_exp2_params sp = {mult, shift, cap, st};
    QK_CHECK(qk_softmax_exp2(&sp, sx, QK_DT_S32, R, C, sy) == QK_OK, "exp2");
    bad = 0;
    for (int r = 0; r < R; r++) {
        int64_t mx = INT32_MIN;
        for (int i = 0; i < C; i++) mx = sx[r * C + i] > mx ? sx[r * C + i] : mx;
        for (int i = 0; i < C; i++) {
            const int64_t d = mx - sx[r * C + i];
            int64_t want = 0;
            if (d < cap) {
                const int64_t z = rhu(d * mult, shift), k = z >> 10, f = z & 1023;
                const int64_t e = rhu((int64_t)st[f >> 5] * st[32 + (f & 31)], 15);
                want = k > 16 ? 0 : rhu(255 * e, (int)(15 + k));
            }
            bad += sy[r * C + i] != want;
        }
    }
    QK_CHECK(bad == 0, "exp2: %d mismatches", bad);
    const qk_softmax_exp2_params wide = {mult, 1, 0x7fffffff, st}; /* z may leave int32 */
    QK_CHECK(qk_softmax_exp2(&wide, sx, QK_DT_S32, R, C, sy) == QK_ERR_ARG, "exp2 z range");
}

int main(void) {
    test_bmm();
    test_bmm_twins();
    test_softmax();
    test_gelu();
    test_int32_forms();
    test_gelu_interp_exp2();
    return QK_TEST_SUMMARY();
}
