/* layernorm.c -- integer LayerNorm on PTF-quantized uint8 input, int8 output (SPEC section 7).
 *
 * Two methods share one output stage: `exact` (exact int64 sums, integer square root by Newton,
 * a dyadic per-token reciprocal) and `sole` (SOLE's AILayerNorm: 4-bit dynamic compression of
 * the squares, a 16-entry square table, a 256-entry inverse-square-root table, int8 gamma and
 * beta). All float work happens in qk_layernorm_prepare(); the kernels are integer-only.
 * The formulas and bit widths are documented in qkernels.h.
 */
#include "internal.h"

enum { QK__LN_ZF = 16 };                  /* fraction bits of the normalized value z */
#define QK__LN_ZMAX (INT64_C(1) << 24)    /* |z| clamp (only the sole method can reach it) */

/* Round half up of v / 2^n, n >= 0 (arithmetic shift). */
static inline int64_t qk__rhu64(int64_t v, int n) {
    return n <= 0 ? v : (v + (INT64_C(1) << (n - 1))) >> n;
}

static inline int qk__bitlen64(uint64_t v) {
    int b = 0;
    while (v) {
        b++;
        v >>= 1;
    }
    return b;
}

uint64_t qk_isqrt_u64(uint64_t n) {
    if (n < 2) return n;
    /* Start above sqrt(n): 2^ceil(bitlen/2) >= sqrt(n); Newton steps decrease monotonically
     * to floor(sqrt(n)) (I-BERT int_sqrt). */
    uint64_t x = UINT64_C(1) << ((qk__bitlen64(n) + 1) / 2);
    for (;;) {
        const uint64_t y = (x + n / x) >> 1;
        if (y >= x) return x;
        x = y;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Prepare                                                                                    */
/* ---------------------------------------------------------------------------------------- */
static int qk__fits(double v, double limit) { return fabs(v) + 0.5 < limit; }

qk_status qk_layernorm_prepare(qk_layernorm_params *p, qk_layernorm_method method,
                               size_t channels, float in_scale, const int32_t *alpha,
                               int32_t in_zero_point, const float *gamma, const float *beta,
                               float eps, float out_scale, int32_t out_zero_point,
                               int32_t *gamma_buf, int64_t *beta_buf, uint8_t *alpha_buf) {
    if (p == NULL || gamma == NULL || beta == NULL || alpha == NULL || gamma_buf == NULL ||
        beta_buf == NULL || alpha_buf == NULL)
        return QK_ERR_ARG;
    if (method != QK_LAYERNORM_EXACT && method != QK_LAYERNORM_SOLE_ROUND &&
        method != QK_LAYERNORM_SOLE_TRUNCATE)
        return QK_ERR_ARG;
    if (channels < 1 || channels > QK_LAYERNORM_MAX_CHANNELS) return QK_ERR_ARG;
    if (!qk__scale_ok(in_scale) || !qk__scale_ok(out_scale)) return QK_ERR_SCALE;
    if (!isfinite(eps) || eps < 0.0f) return QK_ERR_ARG;
    if (in_zero_point < 0 || in_zero_point > 255) return QK_ERR_ZERO_POINT;
    if (out_zero_point < INT8_MIN || out_zero_point > INT8_MAX) return QK_ERR_ZERO_POINT;
    double gmax = 0.0, bmax = 0.0;
    for (size_t c = 0; c < channels; c++) {
        if (alpha[c] < 0 || alpha[c] > QK_PTF_MAX_ALPHA) return QK_ERR_SHIFT;
        if (!isfinite(gamma[c]) || !isfinite(beta[c])) return QK_ERR_ARG;
        if (fabs((double)gamma[c]) > gmax) gmax = fabs((double)gamma[c]);
        if (fabs((double)beta[c]) > bmax) bmax = fabs((double)beta[c]);
    }
    const double C = (double)channels, os = (double)out_scale;
    const double e_int = (double)eps * C * C / ((double)in_scale * (double)in_scale);
    if (!(e_int < 0x1p60)) return QK_ERR_ARG;

    /* Per-channel factors in units of the output scale, and the largest Gf that fits. */
    float gs = 0.0f, bs = 0.0f;
    double gunit, bunit; /* magnitude bounds of G_i / 2^Gf and B_i / 2^(16+Gf) */
    if (method == QK_LAYERNORM_EXACT) {
        gunit = gmax / os;
        bunit = bmax / os;
    } else {
        gs = gmax > 0.0 ? (float)(gmax / 127.0) : 1.0f;
        bs = bmax > 0.0 ? (float)(bmax / 127.0) : 1.0f;
        if (!qk__scale_ok(gs) || !qk__scale_ok(bs)) return QK_ERR_SCALE;
        gunit = 127.0 * ((double)gs / os);
        bunit = 127.0 * ((double)bs / os);
    }
    int gf = -1;
    for (int f = 40; f >= 0; f--) {
        if (qk__fits(gunit * ldexp(1.0, f), 0x1p30) &&
            qk__fits(bunit * ldexp(1.0, QK__LN_ZF + f), 0x1p60)) {
            gf = f;
            break;
        }
    }
    if (gf < 0) return QK_ERR_SCALE;

    /* Everything checked: fill the buffers and the struct. */
    p->method = (int32_t)method;
    p->channels = (int32_t)channels;
    p->in_zero_point = in_zero_point;
    p->out_zero_point = out_zero_point;
    p->out_qmin = INT8_MIN;
    p->out_qmax = INT8_MAX;
    p->shift = QK__LN_ZF + gf;
    p->eps_term = (int64_t)qk__rhaz(e_int);
    p->sole_gamma_scale = gs;
    p->sole_beta_scale = bs;
    for (size_t c = 0; c < channels; c++) alpha_buf[c] = (uint8_t)alpha[c];
    for (int m = 0; m < 256; m++)
        p->inv_sqrt_lut[m] = method == QK_LAYERNORM_EXACT || m == 0
                                 ? 0u
                                 : (uint32_t)qk__rhaz(65536.0 / sqrt((double)m));
    if (method == QK_LAYERNORM_EXACT) {
        p->gamma_multiplier = 1;
        p->beta_multiplier = 1;
        for (size_t c = 0; c < channels; c++) {
            gamma_buf[c] = (int32_t)qk__rhaz((double)gamma[c] / os * ldexp(1.0, gf));
            beta_buf[c] = (int64_t)qk__rhaz((double)beta[c] / os * ldexp(1.0, QK__LN_ZF + gf));
        }
    } else {
        p->gamma_multiplier = (int64_t)qk__rhaz((double)gs / os * ldexp(1.0, gf));
        p->beta_multiplier = (int64_t)qk__rhaz((double)bs / os * ldexp(1.0, QK__LN_ZF + gf));
        for (size_t c = 0; c < channels; c++) {
            gamma_buf[c] = (int32_t)qk__clampd(qk__rhaz((double)gamma[c] / (double)gs), -127, 127);
            beta_buf[c] = (int64_t)qk__clampd(qk__rhaz((double)beta[c] / (double)bs), -127, 127);
        }
    }
    p->alpha = alpha_buf;
    p->gamma = gamma_buf;
    p->beta = beta_buf;
    return QK_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Kernels                                                                                    */
/* ---------------------------------------------------------------------------------------- */
static qk_status qk__ln_check(const qk_layernorm_params *p, const uint8_t *q, size_t tokens,
                              const void *y) {
    if (p == NULL || p->alpha == NULL || p->gamma == NULL || p->beta == NULL) return QK_ERR_ARG;
    if (p->channels < 1 || p->channels > QK_LAYERNORM_MAX_CHANNELS) return QK_ERR_ARG;
    if (p->shift < QK__LN_ZF || p->shift > QK__LN_ZF + 40 || p->eps_term < 0) return QK_ERR_ARG;
    if (p->in_zero_point < 0 || p->in_zero_point > 255) return QK_ERR_ZERO_POINT;
    if (p->out_qmin < INT8_MIN || p->out_qmax > INT8_MAX || p->out_qmin > p->out_qmax)
        return QK_ERR_QRANGE;
    if (p->out_zero_point < p->out_qmin || p->out_zero_point > p->out_qmax)
        return QK_ERR_ZERO_POINT;
    if (tokens > 0 && (q == NULL || y == NULL)) return QK_ERR_ARG;
    return QK_OK;
}

/* The per-row statistics: S1 and D (before E) of the method. One pass over the row; the
 * parameters are copied to locals first (the int8 output may alias anything, so reading them
 * through p in the loops would reload them on every element). */
static inline void qk__ln_row_stats(const qk_layernorm_params *p, const uint8_t *q, int64_t *s1_out,
                                    int64_t *d_out) {
    const int32_t C = p->channels, zp = p->in_zero_point;
    const uint8_t *alpha = p->alpha;
    int64_t s1 = 0;
    if (p->method == QK_LAYERNORM_EXACT) {
        int64_t s2 = 0;
        for (int32_t c = 0; c < C; c++) {
            const int64_t x = (int64_t)((int32_t)q[c] - zp) * ((int64_t)1 << alpha[c]);
            s1 += x;
            s2 += x * x;
        }
        *s1_out = s1;
        *d_out = (int64_t)C * s2 - s1 * s1;
        return;
    }
    /* sole: 4-bit compression of |q - zp|, squares from a 16-entry table */
    static const uint8_t sq[16] = {0, 1, 4, 9, 16, 25, 36, 49, 64, 81, 100, 121, 144, 169, 196, 225};
    const uint32_t rnd_hi = p->method == QK_LAYERNORM_SOLE_ROUND ? 8u : 0u;
    const uint32_t rnd_lo = p->method == QK_LAYERNORM_SOLE_ROUND ? 2u : 0u;
    uint64_t ex2 = 0;
    for (int32_t c = 0; c < C; c++) {
        const int32_t d = (int32_t)q[c] - zp;
        s1 += (int64_t)d * ((int64_t)1 << alpha[c]);
        const uint32_t a = (uint32_t)(d < 0 ? -d : d);
        const uint32_t flag = a >= 64;
        uint32_t cv = flag ? (a + rnd_hi) >> 4 : (a + rnd_lo) >> 2;
        if (cv > 15) cv = 15;
        ex2 += ((uint64_t)sq[cv] << (4 * flag)) << (2 * alpha[c]);
    }
    const int64_t e2 = (int64_t)((ex2 << 4) / (uint64_t)C);
    const int64_t dd = e2 * C * C - s1 * s1;
    *s1_out = s1;
    *d_out = dd > 0 ? dd : 0;
}

/* y_i = clamp(RHU(z_i * G_i + B_i, F) + zp) for one row. */
static inline void qk__ln_output(const qk_layernorm_params *p, const uint8_t *q, int64_t s1,
                                 int64_t mult, int rshift, int8_t *y) {
    const int32_t n = p->channels, zp = p->in_zero_point, shift = p->shift;
    const int64_t C = n, gm = p->gamma_multiplier, bm = p->beta_multiplier;
    const int64_t ozp = p->out_zero_point, qmin = p->out_qmin, qmax = p->out_qmax;
    const uint8_t *alpha = p->alpha;
    const int32_t *gamma = p->gamma;
    const int64_t *beta = p->beta;
    const int64_t zround = rshift > 0 ? (INT64_C(1) << (rshift - 1)) : 0;
    const int64_t oround = INT64_C(1) << (shift - 1);
    for (int32_t c = 0; c < n; c++) {
        const int64_t x = (int64_t)((int32_t)q[c] - zp) * ((int64_t)1 << alpha[c]);
        int64_t z = ((C * x - s1) * mult + zround) >> rshift;
        if (z > QK__LN_ZMAX) z = QK__LN_ZMAX;
        if (z < -QK__LN_ZMAX) z = -QK__LN_ZMAX;
        const int64_t acc = z * ((int64_t)gamma[c] * gm) + beta[c] * bm;
        int64_t v = ((acc + oround) >> shift) + ozp;
        v = v < qmin ? qmin : (v > qmax ? qmax : v);
        y[c] = (int8_t)v;
    }
}

qk_status qk_layernorm_ptf_u8_s8_exact(const qk_layernorm_params *p, const uint8_t *q,
                                       size_t tokens, int8_t *y) {
    const qk_status st = qk__ln_check(p, q, tokens, y);
    if (st != QK_OK) return st;
    if (p->method != QK_LAYERNORM_EXACT) return QK_ERR_ARG;
    const size_t C = (size_t)p->channels;
    for (size_t t = 0; t < tokens; t++) {
        const uint8_t *qr = q + t * C;
        int64_t s1, d;
        qk__ln_row_stats(p, qr, &s1, &d);
        d += p->eps_term;
        int64_t m = 0;
        int rshift = 0;
        if (d > 0) {
            const int j = (61 - qk__bitlen64((uint64_t)d)) / 2;
            const uint64_t r = qk_isqrt_u64((uint64_t)d << (2 * j));
            m = (int64_t)(((UINT64_C(1) << 61) + r / 2) / r);
            rshift = 45 - j;
        }
        qk__ln_output(p, qr, s1, m, rshift, y + t * C);
    }
    return QK_OK;
}

/* The 256-entry table lookup: 1/sqrt(d) ~= lut[m] * 2^-(16 + e/2). */
static inline void qk__ln_inv_sqrt_lut(const qk_layernorm_params *p, int64_t d, int64_t *mult,
                                       int *rshift) {
    if (d <= 0) {
        *mult = 0;
        *rshift = 0;
        return;
    }
    int e = 0;
    int64_t m = d;
    if (d >= 256) {
        e = qk__bitlen64((uint64_t)d) - 8;
        if (e & 1) e++;
        m = qk__rhu64(d, e);
        if (m >= 256) {
            e += 2;
            m = qk__rhu64(d, e);
        }
    }
    *mult = (int64_t)p->inv_sqrt_lut[m];
    *rshift = e / 2;
}

qk_status qk_layernorm_ptf_u8_s8_sole(const qk_layernorm_params *p, const uint8_t *q,
                                      size_t tokens, int8_t *y) {
    const qk_status st = qk__ln_check(p, q, tokens, y);
    if (st != QK_OK) return st;
    if (p->method != QK_LAYERNORM_SOLE_ROUND && p->method != QK_LAYERNORM_SOLE_TRUNCATE)
        return QK_ERR_ARG;
    const size_t C = (size_t)p->channels;
    for (size_t t = 0; t < tokens; t++) {
        const uint8_t *qr = q + t * C;
        int64_t s1, d;
        qk__ln_row_stats(p, qr, &s1, &d);
        d += p->eps_term;
        int64_t m;
        int rshift;
        qk__ln_inv_sqrt_lut(p, d, &m, &rshift);
        qk__ln_output(p, qr, s1, m, rshift, y + t * C);
    }
    return QK_OK;
}

qk_status qk_layernorm_ptf_u8_s8(const qk_layernorm_params *p, const uint8_t *q, size_t tokens,
                                 int8_t *y) {
    if (p == NULL) return QK_ERR_ARG;
    return p->method == QK_LAYERNORM_EXACT ? qk_layernorm_ptf_u8_s8_exact(p, q, tokens, y)
                                           : qk_layernorm_ptf_u8_s8_sole(p, q, tokens, y);
}

qk_status qk_layernorm_ptf_stats(const qk_layernorm_params *p, const uint8_t *q, size_t tokens,
                                 int64_t *s1, int64_t *d) {
    const qk_status st = qk__ln_check(p, q, tokens, s1);
    if (st != QK_OK) return st;
    if (tokens > 0 && d == NULL) return QK_ERR_ARG;
    const size_t C = (size_t)p->channels;
    for (size_t t = 0; t < tokens; t++) {
        const uint8_t *qr = q + t * C;
        qk__ln_row_stats(p, qr, &s1[t], &d[t]);
    }
    return QK_OK;
}
