"""Plain NumPy references for the integer linear / conv tests, written from SPEC.md sections 3-5
(independent of qkernels): exact int64 sums, TFLite's QuantizeMultiplier and the double/single
rounding requantization of TFLite's reference integer kernels (integer_ops/fully_connected.h,
conv.h, depthwise_conv.h)."""
import math

import numpy as np


def linear_acc(x, w, x_zp, w_zp, bias=None):
    """sum_k (x - x_zp)(w[o] - w_zp[o]) (+ bias) in int64; x (..., K), w (N, K)."""
    xz = x.astype(np.int64) - int(x_zp)
    wz = w.astype(np.int64) - np.broadcast_to(np.asarray(w_zp, np.int64), (w.shape[0],))[:, None]
    acc = xz @ wz.T
    if bias is not None:
        acc = acc + np.asarray(bias, np.int64)
    return acc


def conv_acc(x, w, x_zp, w_zp, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1,
             bias=None):
    """NCHW x, OIHW w; padding (top, left, bottom, right) taps contribute 0. int64."""
    n, c, h, wd = x.shape
    o, cpg, kh, kw = w.shape
    sh, sw = stride
    pt, pl, pb, pr = padding
    dh, dw = dilation
    xz = np.zeros((n, c, h + pt + pb, wd + pl + pr), np.int64)
    xz[:, :, pt:pt + h, pl:pl + wd] = x.astype(np.int64) - int(x_zp)
    wz = w.astype(np.int64) - np.broadcast_to(np.asarray(w_zp, np.int64), (o,))[:, None, None, None]
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
    ocg = o // groups
    out = np.zeros((n, o, oh, ow), np.int64)
    for g in range(groups):
        xg = xz[:, g * cpg:(g + 1) * cpg]
        wg = wz[g * ocg:(g + 1) * ocg]
        for r in range(kh):
            for q in range(kw):
                patch = xg[:, :, r * dh: r * dh + sh * (oh - 1) + 1: sh,
                           q * dw: q * dw + sw * (ow - 1) + 1: sw]          # n, cpg, oh, ow
                out[:, g * ocg:(g + 1) * ocg] += np.einsum("nchw,oc->nohw", patch, wg[:, :, r, q])
    if bias is not None:
        out += np.asarray(bias, np.int64)[None, :, None, None]
    return out


def quantize_multiplier(m):
    """TFLite QuantizeMultiplier: m ~= M0 * 2^(shift - 31)."""
    if m == 0:
        return 0, 0
    q, shift = math.frexp(m)
    m0 = math.floor(q * 2.0 ** 31 + 0.5)   # RHAZ, q > 0
    if m0 == 2 ** 31:
        m0 //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return m0, shift


def _trunc_div_2_31(v):
    return np.where(v >= 0, v >> 31, -((-v) >> 31))


def srdhm(a, b):
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    r = _trunc_div_2_31(ab + nudge)
    return np.where((a == -2 ** 31) & (b == -2 ** 31), 2 ** 31 - 1, r)


def rdbpot(x, e):
    x = np.asarray(x, np.int64)
    e = np.asarray(e, np.int64)
    mask = (np.int64(1) << e) - 1
    rem = x & mask
    th = (mask >> 1) + (x < 0)
    return (x >> e) + (rem > th)


def requant_double(acc, m0, shift):
    """MultiplyByQuantizedMultiplier, double rounding (no left-shift overflow in the tests)."""
    acc = np.asarray(acc, np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-np.asarray(shift), 0)
    return rdbpot(srdhm(acc * (np.int64(1) << left), m0), right)


def requant_double_half_up(acc, m0, shift):
    """TFLite's optimized kernels (NEON vqrdmulh, vrshl): SRDHM, then (h + 2^(e-1)) >> e."""
    acc = np.asarray(acc, np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-np.asarray(shift), 0)
    h = srdhm(acc * (np.int64(1) << left), m0)
    return np.where(right > 0, (h + (np.int64(1) << np.maximum(right - 1, 0))) >> right, h)


def requant_single(acc, m0, shift):
    t = 31 - np.asarray(shift, np.int64)
    return (np.asarray(acc, np.int64) * np.asarray(m0, np.int64) + (np.int64(1) << (t - 1))) >> t


def tflite_multipliers(x_scale, w_scale, out_scale, per_channel):
    """Per-channel: double in_s * w_s[c] / out_s (PopulateConvolutionQuantizationParams);
    per-tensor: (double)fl(in_s * w_s) / out_s (GetQuantizedConvolutionMultipler)."""
    ws = np.atleast_1d(np.asarray(w_scale, np.float32))
    if per_channel:
        reals = [float(np.float32(x_scale)) * float(s) / float(np.float32(out_scale)) for s in ws]
    else:
        reals = [float(np.float32(np.float32(x_scale) * ws[0])) / float(np.float32(out_scale))] * len(ws)
    pairs = [quantize_multiplier(r) for r in reals]
    return np.array([p[0] for p in pairs], np.int64), np.array([p[1] for p in pairs], np.int64)


def tflite_output(acc, m0, shift, out_zp, act_min, act_max, channel_axis, single=False,
                  half_up=False):
    shape = [1] * acc.ndim
    shape[channel_axis] = -1
    m0 = np.asarray(m0).reshape(shape)
    shift = np.asarray(shift).reshape(shape)
    r = requant_single(acc, m0, shift) if single else (
        requant_double_half_up(acc, m0, shift) if half_up else requant_double(acc, m0, shift))
    return np.clip(r + out_zp, act_min, act_max).astype(np.int8)
