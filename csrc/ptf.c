/* ptf.c -- PTF (power-of-two factor) quantization: float32 -> uint8 with one scale, one zero
 * point and a per-channel power-of-two exponent along the last axis (SPEC section 6).
 *
 * Scalar loops only: the divisor of each channel is a power-of-two multiple of the scale, so
 * fl(x / d) is one float32 division, then RNE and the clamp are done in double (exact, since the
 * bounds are integers).
 */
#include "internal.h"

static qk_status qk__ptf_check(size_t channels, float scale, const int32_t *alpha,
                               int32_t zero_point) {
    if (!qk__scale_ok(scale)) return QK_ERR_SCALE;
    if (zero_point < 0 || zero_point > 255) return QK_ERR_ZERO_POINT;
    if (channels > 0 && alpha == NULL) return QK_ERR_ARG;
    for (size_t c = 0; c < channels; c++) {
        if (alpha[c] < 0 || alpha[c] > QK_PTF_MAX_ALPHA) return QK_ERR_SHIFT;
        if (!qk__scale_ok(ldexpf(scale, alpha[c]))) return QK_ERR_SCALE;
    }
    return QK_OK;
}

qk_status qk_ptf_quantize_f32_u8(const float *x, size_t tokens, size_t channels, float scale,
                                 const int32_t *alpha, int32_t zero_point, uint8_t *q,
                                 size_t *bad_index) {
    const qk_status st = qk__ptf_check(channels, scale, alpha, zero_point);
    if (st != QK_OK) return st;
    if (tokens == 0 || channels == 0) return QK_OK;
    if (x == NULL || q == NULL) return QK_ERR_ARG;
    /* The eight possible divisors, exact powers of two times the scale. */
    float div[QK_PTF_MAX_ALPHA + 1];
    for (int a = 0; a <= QK_PTF_MAX_ALPHA; a++) div[a] = ldexpf(scale, a);
    const float lo = (float)-zero_point, hi = (float)(255 - zero_point);
    const float magic = 0x1.8p23f; /* (t + magic) - magic is RNE(t) for |t| <= 2^22 */
    for (size_t t = 0; t < tokens; t++) {
        const float *xr = x + t * channels;
        uint8_t *qr = q + t * channels;
        for (size_t c = 0; c < channels; c++) {
            const float v = xr[c];
            if (v != v) {
                if (bad_index) *bad_index = t * channels + c;
                return QK_ERR_NAN;
            }
            float r = v / div[alpha[c]];
            /* clamping before rounding is exact: the bounds are integers */
            r = r < lo ? lo : (r > hi ? hi : r);
            r = (r + magic) - magic;
            qr[c] = (uint8_t)((int32_t)r + zero_point);
        }
    }
    return QK_OK;
}

qk_status qk_ptf_dequantize_u8_f32(const uint8_t *q, size_t tokens, size_t channels, float scale,
                                   const int32_t *alpha, int32_t zero_point, float *y) {
    const qk_status st = qk__ptf_check(channels, scale, alpha, zero_point);
    if (st != QK_OK) return st;
    if (tokens == 0 || channels == 0) return QK_OK;
    if (q == NULL || y == NULL) return QK_ERR_ARG;
    for (size_t t = 0; t < tokens; t++) {
        for (size_t c = 0; c < channels; c++) {
            const float d = ldexpf(scale, alpha[c]);
            y[t * channels + c] = d * (float)((int32_t)q[t * channels + c] - zero_point);
        }
    }
    return QK_OK;
}
