/* test_gelu_interp.c -- qk_gelu_interp against the statement of qkernels.h in plain int64 C
 * (floor division, no shift of a negative value), on more than 10^6 outputs: random per-channel
 * multipliers and shifts over their whole range (shifts 1..62, multipliers 0..2^31-1), random
 * tables anywhere in their checked range (negative A, B, C included), every output type with
 * random zero points and ranges (int32 output over the whole range and over narrow ones), channel
 * counts that leave tails (1, 3, 8, 13, 37, 1536), int32's extremes, inputs on the exact rounding
 * ties of both requantizations (M = 2^30, E = 31) and of the segment (every f), outputs whose
 * rounding is within 2^-15 of a tie (M / 2^E = 1 in, x M / 2^42 out), and
 * inputs near the guards of the AVX2 loop (|x| = 2^(e-1) +- 1). test_clib.py runs it on the auto, AVX2
 * and scalar paths. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qk_test.h"

#define SEG QK_GELU_INTERP_SEGMENTS

static int32_t rnd(int32_t lo, int32_t hi) { /* uniform in [lo, hi] */
    return (int32_t)(lo + (int64_t)(qk_test_next() % (uint64_t)((int64_t)hi - lo + 1)));
}

static int64_t fdiv(int64_t v, int e) { /* floor(v / 2^e) */
    const int64_t d = (int64_t)1 << e;
    int64_t q = v / d;
    if (v % d != 0 && v < 0) q--;
    return q;
}

static int64_t rhu(int64_t v, int e) { return fdiv(v + ((int64_t)1 << (e - 1)), e); }

static int64_t ref_one(const qk_gelu_interp_params *p, size_t c, int32_t x, int32_t zp,
                       int32_t lo, int32_t hi) {
    int64_t u = rhu((int64_t)x * p->in_multiplier[c], p->in_rshift[c]);
    u = u > INT32_MAX ? INT32_MAX : (u < -INT32_MAX ? -INT32_MAX : u);
    const int64_t t = u < 0 ? -u : u;
    int64_t h = 0;
    if (t < ((int64_t)SEG << 12)) {
        const int64_t k = t / 4096, f = t % 4096, w = fdiv(f * (f - 4096), 12);
        h = p->table[k] + rhu((int64_t)p->table[SEG + k] * f + (int64_t)p->table[2 * SEG + k] * w, 12);
    }
    const int64_t v = rhu(((u > 0 ? u : 0) - h) * p->multiplier[c], p->rshift[c]) + zp;
    return v < lo ? lo : (v > hi ? hi : v);
}

/* one shift: mostly realistic (in 20..44), sometimes anywhere in 1..62 */
static int32_t rnd_shift(void) { return qk_test_next() % 4 == 0 ? rnd(1, 62) : rnd(20, 44); }

static int32_t rnd_mult(void) {
    const int k = (int)(qk_test_next() % 8);
    return k == 0 ? 0 : (k == 1 ? rnd(0, 1000) : (k == 2 ? 0x7fffffff : rnd(1 << 30, 0x7fffffff)));
}

static long long checked = 0;

static void run_case(size_t ch, size_t rows, int table_kind, qk_dtype yt, int32_t zp,
                     int32_t lo, int32_t hi, int x_kind) {
    const size_t n = ch * rows;
    int32_t *mi = malloc(ch * 4), *ei = malloc(ch * 4), *mo = malloc(ch * 4), *eo = malloc(ch * 4);
    int32_t *x = malloc(n * 4), *y = malloc(n * 4);
    int32_t tab[QK_GELU_INTERP_ENTRIES];
    if (!mi || !ei || !mo || !eo || !x || !y) {
        QK_CHECK(0, "out of memory");
        return;
    }
    for (int i = 0; i < SEG; i++) {
        if (table_kind == 0 || table_kind == 2) { /* the prepared table's ranges */
            tab[i] = rnd(0, 12000), tab[SEG + i] = rnd(-600, 2100), tab[2 * SEG + i] = rnd(-110, 20);
        } else if (table_kind == 3) { /* A within int16 (the AVX2 byte tables), B and C anywhere */
            tab[i] = rnd(INT16_MIN, INT16_MAX), tab[SEG + i] = rnd(-(1 << 13) + 1, (1 << 13) - 1);
            tab[2 * SEG + i] = rnd(-(1 << 12) + 1, (1 << 12) - 1);
        } else { /* anywhere in the checked range */
            tab[i] = rnd(-(1 << 17) + 1, (1 << 17) - 1), tab[SEG + i] = rnd(-(1 << 13) + 1, (1 << 13) - 1);
            tab[2 * SEG + i] = rnd(-(1 << 12) + 1, (1 << 12) - 1);
        }
    }
    if (table_kind == 2) /* a zero tail, as the prepared table has from segment 75 */
        for (int i = 60; i < SEG; i++) tab[i] = tab[SEG + i] = tab[2 * SEG + i] = 0;
    for (size_t c = 0; c < ch; c++) {
        mi[c] = rnd_mult(), ei[c] = rnd_shift(), mo[c] = rnd_mult(), eo[c] = rnd_shift();
        if (x_kind == 2) mi[c] = mo[c] = 1 << 30, ei[c] = eo[c] = 31; /* halves: exact ties */
        if (x_kind == 3) /* u = x (M / 2^E = 1), g = u from 6 2^16; y = RHU(g M / 2^42) */
            mi[c] = 1 << 30, ei[c] = 30, mo[c] = rnd(1 << 30, 0x7fffffff), eo[c] = 42;
    }
    /* x_kind 3: per channel, inputs whose output's exact value x M / 2^42 is within 2^-15 of a
     * half (x M = 2^41 + d mod 2^42, |d| < 2^27), from 6 2^16 on */
    enum { NEAR = 256 };
    int32_t *near = x_kind == 3 ? malloc(ch * NEAR * 4) : NULL;
    if (x_kind == 3) {
        if (near == NULL) {
            QK_CHECK(0, "out of memory");
            return;
        }
        for (size_t c = 0; c < ch; c++) {
            int cnt = 0;
            for (int64_t xv = 6 << 16; cnt < NEAR && xv < (6 << 16) + (1 << 22); xv++) {
                const int64_t d = ((xv * mo[c]) & ((INT64_C(1) << 42) - 1)) - (INT64_C(1) << 41);
                if (d > -(1 << 27) && d < (1 << 27)) near[c * NEAR + cnt++] = (int32_t)xv;
            }
            for (; cnt < NEAR; cnt++) near[c * NEAR + cnt] = (6 << 16) + cnt;
        }
    }
    for (size_t i = 0; i < n; i++) {
        const size_t c = i % ch;
        const int k = (int)(qk_test_next() % 16);
        int32_t v;
        if (x_kind == 3) {
            v = near[c * NEAR + (i / ch) % NEAR];
        } else if (x_kind == 2) {
            v = rnd(-(7 << 17), 7 << 17); /* u = RHU(x / 2): odd x are ties; every f */
        } else if (k == 0) {
            v = (int32_t)(uint32_t)qk_test_next();
        } else if (k == 1) {
            const int32_t ex[4] = {INT32_MIN, INT32_MAX, INT32_MIN + 1, -INT32_MAX};
            v = ex[qk_test_next() % 4];
        } else if (k == 2 && ei[c] <= 31) { /* beside the guard |x| < 2^(e-1) */
            const int64_t g = (int64_t)1 << (ei[c] - 1), w = (qk_test_next() & 1 ? g : -g) + rnd(-1, 1);
            v = w > INT32_MAX ? INT32_MAX : (w < INT32_MIN ? INT32_MIN : (int32_t)w);
        } else {
            /* |u| mostly in the segments: x ~ u 2^e / m with u in [-8, 8] 2^16 */
            const int64_t uu = rnd(-(8 << 16), 8 << 16);
            const int64_t m = mi[c] > 0 ? mi[c] : 1;
            const int sh = ei[c];
            int64_t xv = sh >= 31 ? uu * ((int64_t)1 << (sh > 40 ? 9 : sh - 31)) * (((int64_t)1 << 31) / m)
                                  : uu * (((int64_t)1 << 31) / m) / ((int64_t)1 << (31 - sh));
            xv += rnd(-2, 2);
            v = xv > INT32_MAX ? INT32_MAX : (xv < INT32_MIN ? INT32_MIN : (int32_t)xv);
        }
        x[i] = v;
    }
    if (n >= 4) x[0] = INT32_MIN, x[1] = INT32_MAX, x[2] = 0, x[3] = -1;
    const qk_gelu_interp_params p = {ch, mi, ei, mo, eo, tab};
    memset(y, 0x5a, n * 4);
    const qk_status st = qk_gelu_interp(&p, x, n, y, yt, zp, lo, hi);
    QK_CHECK(st == QK_OK, "status %d", (int)st);
    size_t bad = 0, first = n;
    for (size_t i = 0; i < n; i++) {
        const int64_t r = ref_one(&p, i % ch, x[i], zp, lo, hi);
        const int64_t g = yt == QK_DT_S32 ? y[i]
                                          : (yt == QK_DT_U8 ? ((uint8_t *)y)[i] : ((int8_t *)y)[i]);
        if (g != r) {
            if (first == n) first = i;
            bad++;
        }
    }
    checked += (long long)n;
    QK_CHECK(bad == 0, "ch %zu rows %zu table %d type %d zp %d [%d, %d] x %d: %zu mismatches, "
             "first at %zu (x %d)", ch, rows, table_kind, (int)yt, zp, lo, hi, x_kind, bad, first,
             first < n ? x[first] : 0);
    free(mi), free(ei), free(mo), free(eo), free(x), free(y), free(near);
}

int main(void) {
    const size_t chs[6] = {1, 3, 8, 13, 37, 1536};
    for (int rep = 0; rep < 2; rep++)
        for (int ci = 0; ci < 6; ci++) {
            const size_t ch = chs[ci], rows = ch == 1536 ? 40 : 6000 / ch + 3;
            for (int tk = 0; tk < 4; tk++) {
                const int xk = (ci + tk + rep) % 3 == 0 ? 2 : (int)(qk_test_next() % 2);
                run_case(ch, rows, tk, QK_DT_U8, rnd(0, 255), 0, 255, xk);
                run_case(ch, rows, tk, QK_DT_U8, 37, rnd(0, 37), rnd(37, 255), xk);
                run_case(ch, rows, tk, QK_DT_S8, rnd(-128, 127), -128, 127, xk);
                run_case(ch, rows, tk, QK_DT_S32, 0, INT32_MIN, INT32_MAX, xk);
                run_case(ch, rows, tk, QK_DT_S32, rnd(-1000000, 1000000), INT32_MIN, INT32_MAX, xk);
                run_case(ch, rows, tk, QK_DT_S32, 5, -70000, 90000, xk);
            }
        }
    /* near-ties of the 8-bit output's rounding (the AVX2 loop's float stage flags them) */
    run_case(1, 4096, 0, QK_DT_U8, 0, 0, 255, 3);
    run_case(64, 256, 0, QK_DT_U8, 0, 0, 255, 3);
    run_case(61, 256, 0, QK_DT_S8, -128, -128, 127, 3);
    QK_CHECK(checked >= 1000000, "%lld values checked", checked);
    printf("%lld values checked\n", checked);
    return QK_TEST_SUMMARY();
}
