"""A convolution reference for hostile geometry (huge padding, stride, dilation), written from
SPEC.md section 5 and independent of qkernels: it never materialises the padded image, only the
taps that land on the input, with Python integers for the coordinates (no wrap at any size) and
int64 sums."""
import re

import numpy as np


def out_size(n, pad0, pad1, dil, k, stride):
    """Output length of one spatial axis, or 0 when the dilated kernel exceeds the padded input."""
    padded, eff = n + pad0 + pad1, dil * (k - 1) + 1
    return 0 if eff > padded else (padded - eff) // stride + 1


def conv_acc_sparse(x, w, x_zp, w_zp, stride, padding, dilation, groups=1, bias=None):
    """NCHW x, OIHW w, padding (top, left, bottom, right); exact int64 sums, padding taps add 0."""
    n, c, h, wd = x.shape
    o, cpg, kh, kw = w.shape
    sh, sw = (int(v) for v in stride)
    pt, pl, pb, pr = (int(v) for v in padding)
    dh, dw = (int(v) for v in dilation)
    oh, ow = out_size(h, pt, pb, dh, kh, sh), out_size(wd, pl, pr, dw, kw, sw)
    xz = x.astype(np.int64) - int(x_zp)
    wz = w.astype(np.int64) - np.broadcast_to(np.asarray(w_zp, np.int64), (o,))[:, None, None, None]
    out = np.zeros((n, o, oh, ow), np.int64)
    ocg = o // groups
    for r in range(kh):
        rows = [(i, i * sh + r * dh - pt) for i in range(oh)]
        rows = [(i, v) for i, v in rows if 0 <= v < h]
        for q in range(kw):
            cols = [(j, j * sw + q * dw - pl) for j in range(ow)]
            cols = [(j, v) for j, v in cols if 0 <= v < wd]
            if not rows or not cols:
                continue
            oi, ii = (np.array(a) for a in zip(*rows))
            oj, ij = (np.array(a) for a in zip(*cols))
            for g in range(groups):
                patch = xz[:, g * cpg:(g + 1) * cpg, ii[:, None], ij[None, :]]  # n, cpg, |i|, |j|
                contrib = np.einsum("nchw,oc->nohw", patch, wz[g * ocg:(g + 1) * ocg, :, r, q])
                out[:, g * ocg:(g + 1) * ocg, oi[:, None], oj[None, :]] += contrib
    if bias is not None:
        out += np.asarray(bias, np.int64)[None, :, None, None]
    return out


# The public argument names an error message may name (the hostile tests and fuzz/py require
# every ValueError/TypeError to name one).
ARG_NAMES = ("x", "q", "w", "acc", "scale", "zero_point", "qmin", "qmax", "bits", "dtype",
             "flavor", "shift", "multiplier", "m", "bias", "stride", "padding", "dilation",
             "groups", "out", "x_scale", "w_scale", "out_scale", "x_zero_point", "w_zero_point",
             "out_zero_point", "act_min", "act_max", "alpha", "K", "axis", "S", "gamma", "beta",
             "eps", "rounding", "scheme", "preset", "threads", "overflow", "int32 accumulator",
             "kernel", "channels", "input channels", "method", "float_bias")


def named_error(exc: BaseException) -> bool:
    """ValueError/TypeError whose message names one of the public arguments."""
    if not isinstance(exc, (ValueError, TypeError)):
        return False
    msg = str(exc)
    return any(re.search(rf"(^|[^a-z_]){re.escape(a)}([^a-z_]|$)", msg) for a in ARG_NAMES)
