"""Plain Python references for PTF quantization and the integer LayerNorm, written from
SPEC.md sections 6-7 and the formulas in qkernels.h (not from the C code). Python ints and
math.isqrt, so no wrap-around can hide in them."""
import math

import numpy as np


def ptf_quantize_ref(x, scale, alpha, zp):
    x = np.asarray(x, np.float32)
    d = np.ldexp(np.float32(scale), np.asarray(alpha)).astype(np.float32)
    t = (x / d).astype(np.float32).astype(np.float64)          # one float32 division
    return np.clip(np.rint(t) + zp, 0, 255).astype(np.uint8)


def _rhu(v, n):
    return v if n <= 0 else (v + (1 << (n - 1))) >> n


def _rhaz(v):
    return int(math.floor(abs(v) + 0.5)) * (1 if v >= 0 else -1)


def prepare_ref(method, rounding, scale, alpha, zp, gamma, beta, eps, out_scale, out_zp):
    C = len(alpha)
    g = [float(v) for v in np.asarray(gamma, np.float32)]
    b = [float(v) for v in np.asarray(beta, np.float32)]
    os_ = float(np.float32(out_scale))
    gmax, bmax = max(abs(v) for v in g), max(abs(v) for v in b)
    if method == "exact":
        gunit, bunit = gmax / os_, bmax / os_
    else:
        gs = float(np.float32(gmax / 127.0)) if gmax > 0 else 1.0
        bs = float(np.float32(bmax / 127.0)) if bmax > 0 else 1.0
        gunit, bunit = 127.0 * (gs / os_), 127.0 * (bs / os_)
    gf = next(f for f in range(40, -1, -1)
              if gunit * 2.0 ** f + 0.5 < 2.0 ** 30 and bunit * 2.0 ** (16 + f) + 0.5 < 2.0 ** 60)
    s = float(np.float32(scale))
    p = dict(method=method, rounding=rounding, C=C, zp=zp, out_zp=out_zp, F=16 + gf,
             E=_rhaz(float(np.float32(eps)) * C * C / (s * s)), alpha=[int(a) for a in alpha])
    if method == "exact":
        p["G"] = [_rhaz(v / os_ * 2.0 ** gf) for v in g]
        p["B"] = [_rhaz(v / os_ * 2.0 ** (16 + gf)) for v in b]
    else:
        mg, mb = _rhaz(gs / os_ * 2.0 ** gf), _rhaz(bs / os_ * 2.0 ** (16 + gf))
        p["G"] = [max(-127, min(127, _rhaz(v / gs))) * mg for v in g]
        p["B"] = [max(-127, min(127, _rhaz(v / bs))) * mb for v in b]
        p["lut"] = [0] + [_rhaz(65536.0 / math.sqrt(m)) for m in range(1, 256)]
    return p


def _compress(a, rounding):
    if a >= 64:
        c = (a + 8) >> 4 if rounding == "round" else a >> 4
        return min(c, 15), 1
    c = (a + 2) >> 2 if rounding == "round" else a >> 2
    return min(c, 15), 0


def stats_ref(p, row):
    C = p["C"]
    x = [(int(q) - p["zp"]) * (1 << a) for q, a in zip(row, p["alpha"])]
    s1 = sum(x)
    if p["method"] == "exact":
        return x, s1, C * sum(v * v for v in x) - s1 * s1
    ex2 = 0
    for q, a in zip(row, p["alpha"]):
        c, flag = _compress(abs(int(q) - p["zp"]), p["rounding"])
        ex2 += (c * c << (4 * flag)) << (2 * a)
    e2 = (ex2 << 4) // C
    return x, s1, max(e2 * C * C - s1 * s1, 0)


def layernorm_ref(p, q):
    q = np.asarray(q, np.uint8)
    rows = q.reshape(-1, p["C"])
    out = np.empty(rows.shape, np.int8)
    for t, row in enumerate(rows):
        x, s1, d = stats_ref(p, row)
        d += p["E"]
        if d <= 0:
            mult, sh = 0, 0
        elif p["method"] == "exact":
            j = (61 - d.bit_length()) // 2
            r = math.isqrt(d << (2 * j))
            mult, sh = ((1 << 61) + r // 2) // r, 45 - j
        else:
            e, m = 0, d
            if d >= 256:
                e = d.bit_length() - 8
                e += e & 1
                m = _rhu(d, e)
                if m >= 256:
                    e += 2
                    m = _rhu(d, e)
            mult, sh = p["lut"][m], e // 2
        for c in range(p["C"]):
            z = _rhu((p["C"] * x[c] - s1) * mult, sh) if mult else 0
            z = max(-(1 << 24), min(1 << 24, z))
            v = _rhu(z * p["G"][c] + p["B"][c], p["F"]) + p["out_zp"]
            out[t, c] = max(-128, min(127, v))
    return out.reshape(q.shape)
