/* epilogue.c -- the output stage shared by qk_linear and qk_conv2d: int32 bias, requantization
 * (fp32 / double_round / single_round / shifts, the cores of requantize.c), zero point, clamp;
 * the accumulator bound check; and the small thread pool split. */
#include "gemm/gemm_internal.h"

#include <pthread.h>
#include <stdlib.h>

qk_status qk__epilogue_check(const qk_epilogue *ep, size_t n) {
    if (ep == NULL) return QK_ERR_ARG;
    const qk_requant_scheme s = ep->scheme;
    if ((int)s < (int)QK_REQ_NONE || (int)s > (int)QK_REQ_SHIFT_FLOOR) return QK_ERR_ARG;
    if (s == QK_REQ_NONE) {
        if (ep->out_type != QK_DT_S32 || ep->float_bias != NULL) return QK_ERR_ARG;
        return QK_OK;
    }
    if (ep->out_type != QK_DT_U8 && ep->out_type != QK_DT_S8) return QK_ERR_ARG;
    if (ep->float_bias != NULL && s != QK_REQ_FP32) return QK_ERR_ARG;
    const int64_t tmin = ep->out_type == QK_DT_U8 ? 0 : -128;
    const int64_t tmax = ep->out_type == QK_DT_U8 ? 255 : 127;
    qk_status st = qk__check_range(ep->zero_point, ep->act_min, ep->act_max, tmin, tmax);
    if (st != QK_OK) return st;
    if (s == QK_REQ_FP32) {
        if (ep->scale == NULL) return QK_ERR_ARG;
        for (size_t o = 0; o < n; o++) {
            if (!qk__scale_ok(ep->scale[o])) return QK_ERR_SCALE;
            if (ep->float_bias != NULL && !isfinite(ep->float_bias[o])) return QK_ERR_ARG;
        }
    } else if (s == QK_REQ_DOUBLE || s == QK_REQ_SINGLE) {
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

static inline void qk__store(qk_dtype t, void *y, size_t i, int32_t v) {
    if (t == QK_DT_U8)
        ((uint8_t *)y)[i] = (uint8_t)v;
    else if (t == QK_DT_S8)
        ((int8_t *)y)[i] = (int8_t)v;
    else
        ((int32_t *)y)[i] = v;
}

/* One element; returns 0 on a strict double-round overflow. */
static inline int qk__epi1(const qk_epilogue *ep, size_t o, int32_t raw, int32_t *q) {
    const int32_t acc = ep->bias ? (int32_t)((uint32_t)raw + (uint32_t)ep->bias[o]) : raw;
    int64_t v;
    switch (ep->scheme) {
        case QK_REQ_NONE: *q = acc; return 1;
        case QK_REQ_FP32: {
            float f = (float)acc;
            if (ep->float_bias) f = f + ep->float_bias[o];
            f = f * ep->scale[o];
            const float flo = (float)(ep->act_min - ep->zero_point);
            const float fhi = (float)(ep->act_max - ep->zero_point);
            f = f < flo ? flo : (f > fhi ? fhi : f);
            *q = (int32_t)nearbyintf(f) + ep->zero_point;
            return 1;
        }
        case QK_REQ_DOUBLE: {
            int32_t r;
            if (!qk__req_double(acc, ep->multiplier[o], ep->shift[o], &r)) {
                if (!ep->wrap) return 0;
                r = qk_mul_by_quantized_multiplier(acc, ep->multiplier[o], ep->shift[o]);
            }
            v = (int64_t)r;
            break;
        }
        case QK_REQ_SINGLE: v = qk__req_single(acc, ep->multiplier[o], ep->shift[o]); break;
        case QK_REQ_SHIFT_HALF_UP: v = qk__shift_round(acc, ep->shift[o], 0); break;
        case QK_REQ_SHIFT_HALF_EVEN: v = qk__shift_round(acc, ep->shift[o], 1); break;
        case QK_REQ_SHIFT_HALF_AWAY: v = qk__shift_round(acc, ep->shift[o], 2); break;
        default: v = qk__shift_round(acc, ep->shift[o], 3); break;
    }
    *q = (int32_t)qk__clamp64(v + ep->zero_point, ep->act_min, ep->act_max);
    return 1;
}

qk_status qk__epilogue_run(const qk_epilogue *ep, size_t o, const int32_t *src, size_t src_step,
                           size_t cnt, void *y, size_t ystride) {
    for (size_t i = 0; i < cnt; i++) {
        int32_t q;
        if (!qk__epi1(ep, o, src[i * src_step], &q)) return QK_ERR_OVERFLOW;
        qk__store(ep->out_type, y, i * ystride, q);
    }
    return QK_OK;
}

qk_status qk__epilogue_channels(const qk_epilogue *ep, size_t o0, const int32_t *src, size_t cnt,
                                void *y) {
    for (size_t i = 0; i < cnt; i++) {
        int32_t q;
        if (!qk__epi1(ep, o0 + i, src[i], &q)) return QK_ERR_OVERFLOW;
        qk__store(ep->out_type, y, i, q);
    }
    return QK_OK;
}

/* ---- threads -------------------------------------------------------------------------- */
typedef struct {
    qk__job_fn fn;
    void *ctx;
    size_t j0, j1;
} qk__range;

static void *qk__range_main(void *arg) {
    const qk__range *r = (const qk__range *)arg;
    r->fn(r->ctx, r->j0, r->j1);
    return NULL;
}

enum { QK__MAX_THREADS = 256 };

void qk__parallel(size_t njobs, int threads, qk__job_fn fn, void *ctx) {
    if (njobs == 0) return;
    size_t t = threads < 1 ? 1 : (size_t)threads;
    if (t > QK__MAX_THREADS) t = QK__MAX_THREADS;
    if (t > njobs) t = njobs;
    if (t == 1) {
        fn(ctx, 0, njobs);
        return;
    }
    qk__range r[QK__MAX_THREADS];
    pthread_t tid[QK__MAX_THREADS];
    int started[QK__MAX_THREADS];
    for (size_t i = 0; i < t; i++) {
        r[i].fn = fn;
        r[i].ctx = ctx;
        r[i].j0 = njobs * i / t;
        r[i].j1 = njobs * (i + 1) / t;
    }
    for (size_t i = 1; i < t; i++)
        started[i] = pthread_create(&tid[i], NULL, qk__range_main, &r[i]) == 0;
    fn(ctx, r[0].j0, r[0].j1);
    for (size_t i = 1; i < t; i++) {
        if (started[i])
            pthread_join(tid[i], NULL);
        else
            fn(ctx, r[i].j0, r[i].j1); /* could not start a thread: do its share here */
    }
}
