/* epilogue_scalar.c -- the output stage of raw int32 sums in portable C: int32 bias,
 * requantization (fp32, or the fixed-point / shift cores of core/fixedpoint.h), zero point,
 * clamp, or the float32 output of QK_REQ_FLOAT; one element at a time. The reference of the SIMD forms (epilogue_avx2.c,
 * epilogue_avx512.c, and the fused kernels), which do the same operations in the same order. */
#include "ukernels/ukernels.h"

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
            const float flo = qk__ep_flo(ep);
            const float fhi = qk__ep_fhi(ep);
            f = f < flo ? flo : (f > fhi ? fhi : f);
            *q = (int32_t)nearbyintf(f) + ep->zero_point;
            return 1;
        }
        case QK_REQ_FP64: {   /* clamped before rounding: the bounds are integers, so the same */
            const double d = (double)acc * ep->scale64[o];
            *q = (int32_t)qk__rhaz(qk__clampd(d, (double)ep->act_min - ep->zero_point,
                                              (double)ep->act_max - ep->zero_point)) +
                 ep->zero_point;
            return 1;
        }
        case QK_REQ_DOUBLE: {
            int32_t r;
            if (!qk__req_double(acc, ep->multiplier[o], ep->shift[o], &r)) {
                if (!ep->wrap) return 0;
                r = qk__mul_by_quantized_multiplier(acc, ep->multiplier[o], ep->shift[o]);
            }
            v = (int64_t)r;
            break;
        }
        case QK_REQ_DOUBLE_HALF_UP: {
            int32_t r;
            if (!qk__req_double_half_up(acc, ep->multiplier[o], ep->shift[o], &r)) {
                if (!ep->wrap) return 0;
                const int32_t sh = ep->shift[o];
                const int32_t x = sh > 0 ? (int32_t)((uint32_t)acc << sh) : acc;
                (void)qk__req_double_half_up(x, ep->multiplier[o], sh > 0 ? 0 : sh, &r);
            }
            v = (int64_t)r;
            break;
        }
        case QK_REQ_SINGLE: v = qk__req_single(acc, ep->multiplier[o], ep->shift[o]); break;
        default: v = qk__shift_round(acc, ep->shift[o], ep->scheme); break; /* QK_REQ_SHIFT_* */
    }
    *q = (int32_t)qk__clamp64(v + ep->zero_point, ep->act_min, ep->act_max);
    return 1;
}

/* QK_REQ_FLOAT: float32 out, fmaf((float)acc, scale, float_bias) (one rounding). */
static inline float qk__epi_float1(const qk_epilogue *ep, size_t o, int32_t raw) {
    const int32_t acc = ep->bias ? (int32_t)((uint32_t)raw + (uint32_t)ep->bias[o]) : raw;
    return fmaf((float)acc, ep->scale[o], ep->float_bias ? ep->float_bias[o] : 0.0f);
}

qk_status qk_epilogue_tail__scalar(const qk_epilogue *ep, size_t o, int per_ch,
                                   const int32_t *src, size_t i, size_t cnt, void *y) {
    if (ep->scheme == QK_REQ_FLOAT) {
        for (; i < cnt; i++) ((float *)y)[i] = qk__epi_float1(ep, per_ch ? o + i : o, src[i]);
        return QK_OK;
    }
    for (; i < cnt; i++) {
        int32_t q;
        if (!qk__epi1(ep, per_ch ? o + i : o, src[i], &q)) return QK_ERR_OVERFLOW;
        qk__store(ep->out_type, y, i, q);
    }
    return QK_OK;
}

qk_status qk_epilogue_run__scalar(const qk_epilogue *ep, size_t o, const int32_t *src, size_t cnt,
                                  void *y) {
    return qk_epilogue_tail__scalar(ep, o, 0, src, 0, cnt, y);
}

qk_status qk_epilogue_channels__scalar(const qk_epilogue *ep, size_t o, const int32_t *src,
                                       size_t cnt, void *y) {
    return qk_epilogue_tail__scalar(ep, o, 1, src, 0, cnt, y);
}

qk_status qk_conv_tile_out__scalar(const qk_epilogue *ep, const int32_t *wzp8,
                                   const uint32_t *corr, const uint32_t *pixsum, size_t o0,
                                   size_t cnt, int32_t *tile, size_t mr, char *y, size_t ystride) {
    qk_status st = QK_OK;
    for (size_t r = 0; r < mr; r++) {
        int32_t *t = tile + r * 16;
        const uint32_t c = corr[o0 + r], wz = (uint32_t)wzp8[o0 + r];
        for (size_t i = 0; i < cnt; i++)
            t[i] = (int32_t)((uint32_t)t[i] + c - (pixsum ? wz * pixsum[i] : 0u));
        if (qk_epilogue_run__scalar(ep, o0 + r, t, cnt, y + r * ystride) != QK_OK)
            st = QK_ERR_OVERFLOW;
    }
    return st;
}
