/* checks.c -- the argument checks shared by qk_linear and qk_conv2d: the epilogue (the output
 * stage's parameters) and the worst-case accumulator bound. */
#include "operators/operators.h"

qk_status qk__epilogue_check(const qk_epilogue *ep, size_t n) {
    if (ep == NULL) return QK_ERR_ARG;
    const qk_requant_scheme s = ep->scheme;
    if ((int)s < (int)QK_REQ_NONE || (int)s > (int)QK_REQ_DOUBLE_HALF_UP) return QK_ERR_ARG;
    if (s == QK_REQ_NONE) {
        if (ep->out_type != QK_DT_S32 || ep->float_bias != NULL) return QK_ERR_ARG;
        return QK_OK;
    }
    if (ep->out_type != QK_DT_U8 && ep->out_type != QK_DT_S8) return QK_ERR_ARG;
    if (ep->float_bias != NULL && s != QK_REQ_FP32) return QK_ERR_ARG;
    const int64_t tmin = ep->out_type == QK_DT_U8 ? 0 : -128;
    const int64_t tmax = ep->out_type == QK_DT_U8 ? 255 : 127;
    /* The zero point lies within the type; the clamp [act_min, act_max] need not contain it
     * (TFLite / CMSIS-NN: clamp(R(acc) + zp, act_min, act_max), e.g. zp -128, act_min -109). */
    if (ep->act_min > ep->act_max || ep->act_min < tmin || ep->act_max > tmax) return QK_ERR_QRANGE;
    if (ep->zero_point < tmin || ep->zero_point > tmax) return QK_ERR_ZERO_POINT;
    if (s == QK_REQ_FP32) {
        if (ep->scale == NULL) return QK_ERR_ARG;
        for (size_t o = 0; o < n; o++) {
            if (!qk__scale_ok(ep->scale[o])) return QK_ERR_SCALE;
            if (ep->float_bias != NULL && !isfinite(ep->float_bias[o])) return QK_ERR_ARG;
        }
    } else if (s == QK_REQ_FP64) {
        if (ep->scale64 == NULL) return QK_ERR_ARG;
        for (size_t o = 0; o < n; o++)
            if (!(isfinite(ep->scale64[o]) && ep->scale64[o] > 0.0)) return QK_ERR_SCALE;
    } else if (s == QK_REQ_DOUBLE || s == QK_REQ_SINGLE || s == QK_REQ_DOUBLE_HALF_UP) {
        if (ep->multiplier == NULL || ep->shift == NULL) return QK_ERR_ARG;
        for (size_t o = 0; o < n; o++) {
            if (ep->multiplier[o] < 0) return QK_ERR_MULTIPLIER;
            if (ep->shift[o] < -31 || ep->shift[o] > 30) return QK_ERR_SHIFT;
        }
    } else {
        if (ep->shift == NULL) return QK_ERR_ARG;
        for (size_t o = 0; o < n; o++)
            if (ep->shift[o] < -31 || ep->shift[o] > 31) return QK_ERR_SHIFT;
    }
    return QK_OK;
}

qk_status qk__bound_check(const qk_packed_weights *w, qk_dtype x_type, int32_t x_zp,
                          const qk_epilogue *ep) {
    if (x_type != QK_DT_U8 && x_type != QK_DT_S8) return QK_ERR_ARG;
    const int32_t lo = x_type == QK_DT_U8 ? 0 : -128, hi = x_type == QK_DT_U8 ? 255 : 127;
    if (x_zp < lo || x_zp > hi) return QK_ERR_ZERO_POINT;
    if (ep->wrap) return QK_OK;
    const int64_t xmax = (x_zp - lo) > (hi - x_zp) ? (x_zp - lo) : (hi - x_zp);
    for (size_t o = 0; o < w->n; o++) {
        int64_t b = ep->bias ? (int64_t)ep->bias[o] : 0;
        b = b < 0 ? -b : b;
        /* abs_sum <= 255 * 2^40, xmax <= 255: the product fits in int64 */
        if (xmax * w->abs_sum[o] + b > INT32_MAX) return QK_ERR_OVERFLOW;
    }
    return QK_OK;
}

qk_status qk__call_check(const qk_packed_weights *w, qk_dtype x_type, int32_t x_zp,
                         const qk_epilogue *ep) {
    const qk_status st = qk__epilogue_check(ep, w->n);
    return st != QK_OK ? st : qk__bound_check(w, x_type, x_zp, ep);
}

/* QK_REQ_FLOAT (qk_linear's float32 output): float32 out, finite positive scales, finite
 * float biases; the integer output fields are not used. */
static qk_status qk__float_epilogue_check(const qk_epilogue *ep, size_t n) {
    if (ep->out_type != QK_DT_F32 || ep->scale == NULL) return QK_ERR_ARG;
    for (size_t o = 0; o < n; o++) {
        if (!qk__scale_ok(ep->scale[o])) return QK_ERR_SCALE;
        if (ep->float_bias != NULL && !isfinite(ep->float_bias[o])) return QK_ERR_ARG;
    }
    return QK_OK;
}

qk_status qk__linear_call_check(const qk_packed_weights *w, qk_dtype x_type, int32_t x_zp,
                                const qk_epilogue *ep) {
    if (ep == NULL || ep->scheme != QK_REQ_FLOAT) return qk__call_check(w, x_type, x_zp, ep);
    const qk_status st = qk__float_epilogue_check(ep, w->n);
    return st != QK_OK ? st : qk__bound_check(w, x_type, x_zp, ep);
}
