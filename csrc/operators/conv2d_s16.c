/* conv2d_s16.c -- int16 activations x int8 weights with int64 accumulators: TFLite's 16x8 mode
 * and CMSIS-NN's s16 kernels (qk_conv2d_s16s8, qk_linear_s16s8; qkernels.h documents the
 * arithmetic). One scalar loop over the output, exact first: the sums are int64, the taps that
 * fall in the padding are skipped (they contribute 0: no zero points in these modes). */
#include "operators/operators.h"

/* Two's-complement bound of TFLite's int64 MultiplyByQuantizedMultiplier: |acc| < 2^47. */
#define QK__S16_ACC_LIMIT (INT64_C(1) << 47)

static qk_status qk__s16_epilogue_check(const qk_epilogue_s16 *ep, size_t n) {
    if (ep == NULL) return QK_ERR_ARG;
    if (ep->act_min > ep->act_max || ep->act_min < INT16_MIN || ep->act_max > INT16_MAX)
        return QK_ERR_QRANGE;
    if (ep->scheme == QK_REQ_REDUCED || ep->scheme == QK_REQ_REDUCED_CMSIS) {
        if (ep->multiplier == NULL || ep->shift == NULL) return QK_ERR_ARG;
        for (size_t o = 0; o < n; o++) {
            if (ep->multiplier[o] < 0) return QK_ERR_MULTIPLIER;
            if (ep->shift[o] < -31 || ep->shift[o] > 7) return QK_ERR_SHIFT;
        }
    } else if (ep->scheme == QK_REQ_FP64) {
        if (ep->scale64 == NULL) return QK_ERR_ARG;
        for (size_t o = 0; o < n; o++)
            if (!(isfinite(ep->scale64[o]) && ep->scale64[o] > 0.0)) return QK_ERR_SCALE;
    } else {
        return QK_ERR_ARG;
    }
    return QK_OK;
}

/* 32768 * sum_k |w[o,k]| + |bias[o]| < 2^47 for every output channel o (k values a row). */
static qk_status qk__s16_bound_check(const int8_t *w, size_t n, size_t k, const int64_t *bias) {
    for (size_t o = 0; o < n; o++) {
        const int8_t *row = w + o * k;
        uint64_t a = 0;
        for (size_t i = 0; i < k; i++) {
            a += (uint64_t)(row[i] < 0 ? -(int32_t)row[i] : row[i]);
            if (a >= (UINT64_C(1) << 32)) return QK_ERR_OVERFLOW; /* 32768 * a >= 2^47 */
        }
        uint64_t b = 0;
        if (bias != NULL) b = bias[o] < 0 ? (uint64_t)0 - (uint64_t)bias[o] : (uint64_t)bias[o];
        if (b >= (uint64_t)QK__S16_ACC_LIMIT || (a << 15) + b >= (uint64_t)QK__S16_ACC_LIMIT)
            return QK_ERR_OVERFLOW;
    }
    return QK_OK;
}

static int16_t qk__s16_out(const qk_epilogue_s16 *ep, size_t o, int64_t acc) {
    if (ep->bias != NULL) acc += ep->bias[o];
    int64_t r;
    switch (ep->scheme) {
        case QK_REQ_REDUCED: r = qk__req_reduced(acc, ep->multiplier[o], ep->shift[o]); break;
        case QK_REQ_REDUCED_CMSIS:
            r = qk__req_reduced_cmsis(acc, ep->multiplier[o], ep->shift[o]);
            break;
        default: { /* QK_REQ_FP64; |acc| < 2^47 is exact in double. Clamped before rounding:
                    * the bounds are integers, so this is RHAZ, saturate, clamp. */
            const double d = (double)acc * ep->scale64[o];
            return (int16_t)qk__rhaz(qk__clampd(d, (double)ep->act_min, (double)ep->act_max));
        }
    }
    return (int16_t)qk__clamp64(r, ep->act_min, ep->act_max);
}

qk_status qk_conv2d_s16s8(const qk_conv2d_shape *s, const int8_t *w, size_t out_c, size_t kh,
                          size_t kw, size_t groups, const int16_t *x,
                          const qk_epilogue_s16 *ep, int16_t *y) {
    if (s == NULL || w == NULL || x == NULL || y == NULL || ep == NULL) return QK_ERR_ARG;
    if (groups == 0 || out_c == 0 || kh == 0 || kw == 0 || s->in_c == 0 ||
        s->in_h == 0 || s->in_w == 0 || s->in_c % groups != 0 || out_c % groups != 0)
        return QK_ERR_ARG;
    if (s->stride_h == 0 || s->stride_w == 0 || s->dil_h == 0 || s->dil_w == 0) return QK_ERR_ARG;
    const size_t cpg = s->in_c / groups, ocg = out_c / groups;
    size_t k, hp, wp, eh, ew, xn, tmp;
    if (!qk__sz_mul4(cpg, kh, kw, 1, &k) || !qk__sz_mul(out_c, k, &tmp) ||
        tmp > (size_t)PTRDIFF_MAX)
        return QK_ERR_ARG;
    if (!qk__sz_add(s->in_h, s->pad_top, &hp) || !qk__sz_add(hp, s->pad_bottom, &hp) ||
        !qk__sz_add(s->in_w, s->pad_left, &wp) || !qk__sz_add(wp, s->pad_right, &wp) ||
        !qk__sz_mul(s->dil_h, kh - 1, &eh) || !qk__sz_add(eh, 1, &eh) ||
        !qk__sz_mul(s->dil_w, kw - 1, &ew) || !qk__sz_add(ew, 1, &ew) || eh > hp || ew > wp)
        return QK_ERR_ARG;
    const size_t oh = (hp - eh) / s->stride_h + 1, ow = (wp - ew) / s->stride_w + 1;
    size_t yn;
    if (!qk__sz_mul4(s->batch, s->in_c, s->in_h, s->in_w, &xn) ||
        !qk__sz_mul(xn, sizeof(int16_t), &tmp) || tmp > (size_t)PTRDIFF_MAX ||
        !qk__sz_mul4(s->batch, out_c, oh, ow, &yn) || !qk__sz_mul(yn, sizeof(int16_t), &tmp) ||
        tmp > (size_t)PTRDIFF_MAX)
        return QK_ERR_ARG;
    qk_status st = qk__s16_epilogue_check(ep, out_c);
    if (st == QK_OK) st = qk__s16_bound_check(w, out_c, k, ep->bias);
    if (st != QK_OK) return st;

    const size_t plane = s->in_h * s->in_w;
    for (size_t b = 0; b < s->batch; b++) {
        for (size_t o = 0; o < out_c; o++) {
            const size_t g = o / ocg;
            const int8_t *wo = w + o * k;
            const int16_t *xg = x + (b * s->in_c + g * cpg) * plane;
            int16_t *yo = y + (b * out_c + o) * oh * ow;
            for (size_t i = 0; i < oh; i++) {
                for (size_t j = 0; j < ow; j++) {
                    int64_t acc = 0;
                    for (size_t r = 0; r < kh; r++) {
                        const size_t py = i * s->stride_h + r * s->dil_h; /* padded row */
                        if (py < s->pad_top || py - s->pad_top >= s->in_h) continue;
                        const size_t iy = py - s->pad_top;
                        for (size_t q = 0; q < kw; q++) {
                            const size_t px = j * s->stride_w + q * s->dil_w;
                            if (px < s->pad_left || px - s->pad_left >= s->in_w) continue;
                            const size_t ix = px - s->pad_left;
                            const int16_t *xp = xg + iy * s->in_w + ix;
                            const int8_t *wp8 = wo + r * kw + q;
                            for (size_t c = 0; c < cpg; c++)
                                acc += (int32_t)xp[c * plane] * (int32_t)wp8[c * kh * kw];
                        }
                    }
                    yo[i * ow + j] = qk__s16_out(ep, o, acc);
                }
            }
        }
    }
    return QK_OK;
}

qk_status qk_linear_s16s8(const int8_t *w, size_t n, size_t k, const int16_t *x, size_t m,
                          const qk_epilogue_s16 *ep, int16_t *y) {
    /* m images of k channels and 1 x 1 pixel, NCHW: x is m x k, y is m x n */
    const qk_conv2d_shape s = {m, k, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1};
    return qk_conv2d_s16s8(&s, w, n, 1, 1, 1, x, ep, y);
}
