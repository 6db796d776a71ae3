"""A convolution reference for hostile geometry (huge padding, stride, dilation), written from
SPEC.md section 5 and independent of qkernels: it never materialises the padded image, only the
taps that land on the input, with Python integers for the coordinates (no wrap at any size) and
int64 sums."""
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
