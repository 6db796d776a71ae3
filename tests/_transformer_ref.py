"""Plain Python / NumPy references of the integer transformer kernels, written from the papers and
the public code each kernel cites (independent of qkernels' C and of qkernels/transformer.py):

* I-BERT (Kim et al. 2021), Algorithms 1-3, as IntSoftmax / IntGELU / QuantAct compute them in
  kssteven418/I-BERT quant_modules.py: e = z << (30 - q) is formed as a Python integer and
  requantized with exact rational arithmetic (the kernel uses a shortcut, z m16 / 2^(e16-30+q)).
* SOLE's E2Softmax (Wang et al. 2023): Log2Exp by shift-and-add, Q16 sum, leading one and the
  two ALDivision constants.
* the 256-entry exponent table and the GELU table.
* int8 x int8 matmul: exact int64 sums and the requantizations of SPEC section 4.
"""
import math

import numpy as np


def rne_div_pow2(v, sh):
    """RNE(v / 2^sh) for Python ints (any sign), sh >= 0."""
    if sh == 0:
        return v
    q, rem = divmod(v, 1 << sh)          # floor division: rem in [0, 2^sh)
    half = 1 << (sh - 1)
    if rem > half or (rem == half and q % 2 == 1):
        q += 1
    return q


# ---- I-BERT i-exp / i-softmax ----------------------------------------------------------------
def ibert_exp16(d, x0, b, c, m16, e16):
    """I-BERT's exponent of d = x - max <= 0, requantized to 16 bits (QuantAct(16)), exact."""
    d = max(int(d), 30 * x0)
    q = d // x0                          # floor (Python)
    r = d - x0 * q
    z = (r + b) * r + c                  # i-poly
    e = max(z * (1 << (30 - q)), 0)      # i-exp: floor(z * 2^(30 - q)), clamped at 0
    v = rne_div_pow2(e * m16, e16)       # fixedpoint_mul: round(e * m / 2^e)
    return min(max(v, -32768), 32767)


def _rows(x):
    x = np.asarray(x)
    return x.reshape(-1, x.shape[-1]).astype(np.int64)


def _by_difference(x, fn):
    """fn(d) for every element's d = x - row max (evaluated once per distinct d)."""
    rows = _rows(x)
    d = rows - rows.max(axis=1, keepdims=True)
    uniq, inv = np.unique(d, return_inverse=True)
    vals = np.array([fn(int(u)) for u in uniq], dtype=object)
    return d, vals[inv.reshape(d.shape)]


def ibert_softmax(x, x0, b, c, m16, e16):
    """uint8 output of I-BERT's i-softmax (output_bit 8, saturated at 255)."""
    _, v = _by_difference(x, lambda d: ibert_exp16(d, x0, b, c, m16, e16))
    out = np.empty(v.shape, np.uint8)
    for i, row in enumerate(v):
        s = int(sum(row))
        f = (1 << 32) // s if s else 0
        out[i] = [min((int(e) * f) >> 24, 255) for e in row]
    return out.reshape(np.shape(x))


# ---- SOLE E2Softmax --------------------------------------------------------------------------
def sole_k(d, mult, shift, rounding):
    """Log2Exp: v = floor(d S 2^16), t = v + (v >> 1) - (v >> 4), k = -floor(t / 2^16) (4 bits)."""
    v = (int(d) * mult) >> shift                     # Python >> floors
    t = v + (v >> 1) - (v >> 4)
    k = -((t + (1 << 15)) >> 16) if rounding else -(t >> 16)
    return min(k, 15)


def sole_softmax(x, mult, shift, rounding, log2=False):
    """uint8 probabilities, or (exponent, row_bit) for the log2 form."""
    _, k = _by_difference(x, lambda d: sole_k(d, mult, shift, rounding))
    y = np.empty(k.shape, np.uint8)
    bits = np.empty(k.shape[0], np.uint8)
    for i, row in enumerate(k):
        vals = [1 << (16 - int(kk)) for kk in row]
        s = sum(vals)                                  # Q16 sum
        w = s.bit_length() - 1                         # leading one
        bit = (s >> (w - 1)) & 1                       # s = 2^w (1 + f): f >= 1/2
        cq = 145 if bit else 209                       # 0.568 / 0.818 in 8-bit fixed point
        bits[i] = bit
        if log2:
            y[i] = [int(kk) + w - 16 for kk in row]
        else:
            y[i] = [(cq * v + (1 << (w - 1))) >> w for v in vals]
    if log2:
        return y.reshape(np.shape(x)), bits.reshape(np.shape(x)[:-1])
    return y.reshape(np.shape(x))


# ---- LUT softmax -----------------------------------------------------------------------------
def lut_table(scale):
    return [math.floor(32768.0 * math.exp(-d * float(np.float32(scale))) + 0.5) for d in range(256)]


def lut_softmax(x, lut):
    rows = _rows(x)
    d = rows.max(axis=1, keepdims=True) - rows
    v = np.asarray(lut, np.int64)[d]
    s = v.sum(axis=1, keepdims=True)
    f = (np.int64(1) << 32) // s
    return np.minimum((v * f + (1 << 23)) >> 24, 255).astype(np.uint8).reshape(np.shape(x))


# ---- I-BERT i-GELU ---------------------------------------------------------------------------
def ibert_gelu(x, x_zp, b, c, shift, mult, rshift, out_zp, lo, hi):
    """IntGELU then QuantAct's fixedpoint_mul, per element (Python ints); parameters per channel
    along the last axis (arrays of length C) or scalars."""
    x = np.asarray(x)
    xs = x.reshape(-1, x.shape[-1] if x.ndim else 1)
    params = [np.broadcast_to(np.asarray(p, np.int64), (xs.shape[1],)) for p in
              (b, c, shift, mult, rshift)]
    out = np.empty(xs.shape, np.int64)
    cache = {}
    for j in range(xs.shape[1]):
        bj, cj, sj, mj, rj = (int(p[j]) for p in params)
        for i in range(xs.shape[0]):
            xv = int(xs[i, j]) - int(x_zp)
            key = (xv, bj, cj, sj, mj, rj)
            if key not in cache:
                sign = (xv > 0) - (xv < 0)
                a = min(abs(xv), -bj)
                y = sign * ((a + bj) ** 2 + cj)
                y = y // (1 << 14)                       # floor_ste(y / 2^14)
                g = -(xv * (y + sj))                     # I-BERT's integer, negated
                cache[key] = rne_div_pow2(g * mj, rj)   # RNE(g m / 2^e)
            out[i, j] = min(max(cache[key] + int(out_zp), lo), hi)
    return out.reshape(x.shape)


def gelu_table(x_dtype, x_scale, x_zp, out_scale, out_zp, out_dtype):
    """table[byte] = clamp(RNE(gelu((q - x_zp) S) / out_scale) + out_zp), q the byte's value."""
    info = np.iinfo(out_dtype)
    t = []
    for byte in range(256):
        q = byte if np.dtype(x_dtype) == np.uint8 else (byte - 256 if byte > 127 else byte)
        v = (q - x_zp) * float(np.float32(x_scale))
        g = 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0)))
        r = g / float(np.float32(out_scale))
        n = math.floor(r)
        n = n + 1 if (r - n > 0.5 or (r - n == 0.5 and n % 2 == 1)) else n   # RNE
        t.append(min(max(n + out_zp, int(info.min)), int(info.max)))
    return np.array(t, np.int64).astype(out_dtype)


# ---- matmul ----------------------------------------------------------------------------------
def matmul_acc(a, b, a_zp, b_zp, transpose_b=False):
    """int64 sums over the last axes; zero points broadcast to the batch shape."""
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    if transpose_b:
        b = np.swapaxes(b, -1, -2)
    za = np.asarray(a_zp, np.int64)[..., None, None]
    zb = np.asarray(b_zp, np.int64)[..., None, None]
    return np.matmul(a - za, b - zb)


def requant_fp32(acc, scale, out_zp, lo, hi):
    """RNE(fl(fl(acc) * scale)) + zp, clamped (SPEC fp32)."""
    f = np.asarray(acc).astype(np.float32) * np.asarray(scale, np.float32)[..., None, None]
    return np.clip(np.rint(f.astype(np.float32)).astype(np.int64) + out_zp, lo, hi)


def requant_shift(acc, n, rounding):
    """acc / 2^n with the rounding of SPEC's pow2 scheme (n may be negative: exact shift)."""
    acc = np.asarray(acc, np.int64)
    n = np.broadcast_to(np.asarray(n, np.int64)[..., None, None], acc.shape)
    out = np.empty(acc.shape, np.int64)
    for idx in np.ndindex(*acc.shape):
        v, s = int(acc[idx]), int(n[idx])
        if s <= 0:
            out[idx] = v << -s
            continue
        q, rem = divmod(v, 1 << s)
        half = 1 << (s - 1)
        if rounding == "half_up":
            q += rem >= half
        elif rounding == "half_even":
            q += rem > half or (rem == half and q % 2 == 1)
        elif rounding == "half_away":
            q += rem > half or (rem == half and v >= 0)
        out[idx] = q
    return out


# ---- GELU by piecewise-quadratic segments (qkernels.h qk_gelu_interp) ------------------------
def rhu_shift(v, e):
    """floor((v + 2^(e-1)) / 2^e), elementwise on int64 arrays (e >= 1, may be an array)."""
    v = np.asarray(v, np.int64)
    e = np.asarray(e, np.int64)
    return (v + (np.int64(1) << (e - 1))) >> e


def gelu_interp_table():
    """A, B, C (3 x 96): the quadratic through the ends and middle of each 1/16 segment of
    h(t) = t Q(t) = gelu(t) - t on [0, 6) (here from the exact erf GELU: h = t - gelu(t) for t
    >= 0), on the grid 2^-16, rounded to nearest even."""
    def h(t):
        return t - 0.5 * t * (1.0 + math.erf(t / math.sqrt(2.0)))
    rows = [[], [], []]
    for i in range(96):
        t0, t1, tm = i / 16.0, (i + 1) / 16.0, (i + 0.5) / 16.0
        rows[0].append(round(h(t0) * 65536.0))
        rows[1].append(round((h(t1) - h(t0)) * 65536.0))
        rows[2].append(round((2 * h(t0) + 2 * h(t1) - 4 * h(tm)) * 65536.0))
    return np.array(rows, np.int64)


def gelu_interp(x, in_mult, in_shift, mult, shift, out_zp, lo, hi, table=None):
    """qk_gelu_interp's statement, in int64 (channels along the last axis)."""
    a, b, c = (gelu_interp_table() if table is None else
               np.asarray(table, np.int64).reshape(3, 96))
    x = np.asarray(x).astype(np.int64)
    u = np.clip(rhu_shift(x * np.asarray(in_mult, np.int64), in_shift), -(2 ** 31 - 1),
                2 ** 31 - 1)
    t = np.abs(u)
    i = np.minimum(t >> 12, 95)
    f = t & 4095
    w = (f * (f - 4096)) >> 12
    h = np.where(t >= 6 << 16, 0, a[i] + rhu_shift(b[i] * f + c[i] * w, 12))
    g = np.maximum(u, 0) - h
    y = rhu_shift(g * np.asarray(mult, np.int64), shift) + out_zp
    return np.clip(y, lo, hi)


# ---- the row-max exp2 softmax (qkernels.h qk_softmax_exp2) -------------------------------------
def exp2_table():
    """RNE(2^15 2^(-j/32)) and RNE(2^15 2^(-j/1024)), j = 0..31 (64 values)."""
    return np.array([round(32768.0 * 2.0 ** (-j / 32.0)) for j in range(32)] +
                    [round(32768.0 * 2.0 ** (-j / 1024.0)) for j in range(32)], np.int64)


def softmax_exp2(x, mult, shift, cap, table=None):
    """qk_softmax_exp2's statement on the rows of x (last axis), in int64: uint8."""
    t = exp2_table() if table is None else np.asarray(table, np.int64)
    x = np.asarray(x).astype(np.int64)
    d = x.max(axis=-1, keepdims=True) - x
    z = rhu_shift(np.minimum(d, cap) * mult, shift)
    k = np.minimum(z >> 10, 40)
    f = z & 1023
    e = rhu_shift(t[f >> 5] * t[32 + (f & 31)], 15)
    p = (255 * e + (np.int64(1) << (14 + k))) >> (15 + k)
    return np.where((d >= cap) | (k > 16), 0, p).astype(np.uint8)
