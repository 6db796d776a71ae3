"""The token-rows steps of the integer transformer blocks, against independent references in
Python integers: qkernels.transformer.row_quantize / row_rescale (per-row dynamic uint8
quantization and its undoing on a Linear's sums) and qkernels.ptf.layernorm_s16 (the exact
integer LayerNorm on int16 input with int16 output), on many random rows with near-ties, zero
and constant rows and the extremes of the input types."""
import math

import numpy as np
import pytest

import qkernels as qk
import qkernels.transformer as T
from _util import assert_simd_paths_equal, run_simd_paths
from qkernels.ptf import layernorm_s16


def _sr(v: int, m: int, s: int) -> int:
    """TFLite single rounding in Python integers: (v m + 2^(30 - s)) >> (31 - s)."""
    return (v * m + (1 << (30 - s))) >> (31 - s)


def _row_ref(row):
    """row_quantize of one row, from the docstring's statement, in Python ints."""
    lo, hi = min(0, min(row)), max(0, max(row))
    m = max(1, hi - lo)
    e = max(0, m.bit_length() - 5)
    j = m >> e
    mq, sq = qk.quantize_multiplier(255.0 / (j + 1))
    s = int(sq) - e
    z = min(max(_sr(-lo, int(mq), s), 0), 255)
    x = [min(max(_sr(v, int(mq), s) + z, 0), 255) for v in row]
    return x, z, j, e


def _rows(rng, n, c, dtype):
    info = np.iinfo(dtype)
    a = np.empty((n, c), np.int64)
    for i in range(n):
        kind = i % 6
        if kind == 0:     # full range of the type
            a[i] = rng.integers(info.min, info.max, c, endpoint=True)
        elif kind == 1:   # small rows (e = 0, short mantissas)
            a[i] = rng.integers(-20, 21, c)
        elif kind == 2:   # one-signed rows
            a[i] = rng.integers(0, 2 ** int(rng.integers(1, 15)), c)
        elif kind == 3:   # constant (zero) rows
            a[i] = int(rng.integers(-3, 4)) * (i % 2)
        elif kind == 4:   # ranges at powers of two and one below (table edges, near-ties)
            t = 2 ** int(rng.integers(4, 15))
            a[i] = rng.integers(-t, t, c)
            a[i, 0] = t - int(rng.integers(0, 2))
        else:             # values on half steps of the row's step (rounding ties)
            a[i] = rng.integers(-2 ** 12, 2 ** 12, c) * 2 + 1
    return np.clip(a, info.min, info.max).astype(dtype)


@pytest.mark.parametrize("dtype", [np.int16, np.int32])
def test_row_quantize_and_rescale_equal_python_integers(dtype):
    rng = np.random.default_rng(16)
    n_values = 0
    for c in (1, 7, 64, 384):
        d = _rows(rng, 240, c, dtype)
        if dtype == np.int32:
            d = (d.astype(np.int64) >> int(rng.integers(0, 10))).astype(np.int32)
        x, z, j, e = T.row_quantize(d)
        assert x.dtype == np.uint8 and z.shape == j.shape == e.shape == (d.shape[0], 1)
        w = rng.integers(-127, 128, (5, c)).astype(np.int64)
        p = int(rng.integers(0, 8))
        mt, st = T.row_rescale_params(p)
        acc = (x.astype(np.int64) @ w.T - z.astype(np.int64) * w.sum(axis=1)).astype(np.int32)
        got = T.row_rescale(acc, j, e, (mt, st))
        for i, row in enumerate(d.tolist()):
            rx, rz, rj, re_ = _row_ref(row)
            assert x[i].tolist() == rx and int(z[i, 0]) == rz and int(j[i, 0]) == rj \
                and int(e[i, 0]) == re_, (i, row)
            for o in range(5):
                v = int(acc[i, o])
                ref = _sr(v, int(mt[rj]), int(st[rj]) + re_)
                assert int(got[i, o]) == min(max(ref, -2 ** 31), 2 ** 31 - 1)
        n_values += d.size
    assert n_values > 10 ** 5


def test_row_quantization_error_is_half_a_step():
    """Each value comes back within half a row step (plus the zero point's rounding): the
    step is U / 255 with U < (1 + 2^-4) 2 max|range| (the 5-bit range code)."""
    rng = np.random.default_rng(3)
    d = (rng.normal(size=(500, 384)) * rng.uniform(1, 2 ** 20, (500, 1))).astype(np.int32)
    x, z, j, e = T.row_quantize(d)
    step = ((j.astype(np.int64) + 1) << e) / 255.0
    back = (x.astype(np.float64) - z) * step
    assert np.all(np.abs(back - d) <= step * 1.0 + 1e-9)
    rng_ = d.max(1, keepdims=True) - np.minimum(d.min(1, keepdims=True), 0)
    assert np.all(step * 255 <= rng_ * (1 + 2 ** -4) + 2 ** e + 1)


def test_row_steps_bad_input():
    with pytest.raises(TypeError, match="integer"):
        T.row_quantize(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="last axis"):
        T.row_quantize(np.zeros((2, 0), np.int32))
    with pytest.raises(ValueError, match="p must"):
        T.row_rescale_params(25)
    with pytest.raises(ValueError, match="p must"):
        T.row_rescale_params(True)
    x, z, j, e = T.row_quantize(np.array([[5, -3]], np.int32))
    with pytest.raises(ValueError, match="outside int32"):   # no silent wrap of int64 sums
        T.row_rescale(np.array([[2 ** 40, 1]], np.int64), j, e, T.row_rescale_params(0))


def _ln_ref(row, ln):
    """layernorm_s16 of one row from qkernels.h's exact method, in Python integers."""
    c = len(row)
    s1, s2 = sum(row), sum(v * v for v in row)
    d = c * s2 - s1 * s1 + int(ln.eps_term)
    f = int(ln.shift)
    out = []
    for i, v in enumerate(row):
        if d == 0:
            z = 0
        else:
            jj = (61 - d.bit_length()) // 2
            r = math.isqrt(d << (2 * jj))
            m = ((1 << 61) + r // 2) // r
            z = ((c * v - s1) * m + (1 << (44 - jj))) >> (45 - jj)
        y = (z * int(ln.gamma_int[i]) + int(ln.beta_int[i]) + (1 << (f - 1))) >> f
        out.append(min(max(y, -32768), 32767))
    return out


def test_layernorm_s16_equals_python_integers_and_the_int8_kernel():
    rng = np.random.default_rng(7)
    checked = 0
    for it in range(24):
        c = int(rng.choice([1, 3, 64, 384]))
        gamma = rng.normal(size=c).astype(np.float32)
        beta = (rng.normal(size=c) * 0.2).astype(np.float32)
        in_scale = float(rng.uniform(1e-4, 1e-2))
        x = _rows(rng, 48, c, np.int16)
        out_scale = float(rng.uniform(2.0, 8.0) / 2 ** 14)
        ln = qk.prepare_layernorm(qk.PTFParams(in_scale, np.zeros(c, np.int32), 0), gamma, beta,
                                  out_scale=out_scale, eps=float(rng.choice([0.0, 1e-12, 1e-5])))
        y = layernorm_s16(x, ln)
        for i, row in enumerate(x.tolist()):
            assert y[i].tolist() == _ln_ref(row, ln), (it, i)
        checked += x.size
        # the int8 kernel computes the same integers before its clamp (PTF input with alpha
        # 0 and zero point 128 is x + 128 for x in -128..127)
        x8 = np.clip(x, -128, 127)
        ptf = qk.PTFParams(in_scale, np.zeros(c, np.int32), 128)
        ln8 = qk.prepare_layernorm(ptf, gamma, beta, out_scale=out_scale * 300, eps=1e-5)
        ln16 = qk.prepare_layernorm(qk.PTFParams(in_scale, np.zeros(c, np.int32), 0), gamma,
                                    beta, out_scale=out_scale * 300, eps=1e-5)
        y8 = qk.ptf_layernorm((x8.astype(np.int16) + 128).astype(np.uint8), ln8)
        assert np.array_equal(np.clip(layernorm_s16(x8, ln16), -128, 127), y8)
        checked += x8.size
    assert checked > 10 ** 5


def test_layernorm_s16_bad_input():
    ln = qk.prepare_layernorm(qk.PTFParams(0.01, np.zeros(4, np.int32), 0), np.ones(4),
                              np.zeros(4), out_scale=1e-3)
    with pytest.raises(TypeError, match="int16"):
        layernorm_s16(np.zeros((2, 4), np.int32), ln)
    with pytest.raises(ValueError, match="channels"):
        layernorm_s16(np.zeros((2, 5), np.int16), ln)
    ptf = qk.PTFParams(0.01, np.ones(4, np.int32), 0)
    bad = qk.prepare_layernorm(ptf, np.ones(4), np.zeros(4), out_scale=1e-3)
    with pytest.raises(ValueError, match="alpha 0"):
        layernorm_s16(np.zeros((2, 4), np.int16), bad)
    sole = qk.prepare_layernorm(qk.PTFParams(0.01, np.zeros(4, np.int32), 0), np.ones(4),
                                np.zeros(4), method="sole", out_scale=1e-3)
    with pytest.raises(TypeError, match="exact"):
        layernorm_s16(np.zeros((2, 4), np.int16), sole)


def test_row_rescale_fused_equals_python_integers():
    """The fused form (``z``, ``wsum``, ``bias``: one pass over the raw sums) against its
    statement in Python integers: ``clamp(clamp(R(acc - z wsum)) + bias)``."""
    rng = np.random.default_rng(11)
    for c, o in ((1, 3), (7, 9), (384, 17), (1536, 5)):
        d = _rows(rng, 96, c, np.int16)
        x, z, j, e = T.row_quantize(d)
        w = rng.integers(-127, 128, (o, c)).astype(np.int64)
        wsum = w.sum(axis=1).astype(np.int32)
        raw = (x.astype(np.int64) @ w.T).astype(np.int32)
        p = int(rng.integers(0, 8))
        mt, st = T.row_rescale_params(p)
        bias = rng.integers(-2 ** 31, 2 ** 31, o, dtype=np.int64).astype(np.int32)
        bias[: o // 2] = rng.integers(-1000, 1000, o // 2)
        for b in (None, bias):
            got = T.row_rescale(raw, j, e, (mt, st), z=z, wsum=wsum, bias=b)
            for i in range(d.shape[0]):
                jj, ee, zz = int(j[i, 0]), int(e[i, 0]), int(z[i, 0])
                for k in range(o):
                    v = int(raw[i, k]) - zz * int(wsum[k])
                    r = min(max(_sr(v, int(mt[jj]), int(st[jj]) + ee), -2 ** 31), 2 ** 31 - 1)
                    if b is not None:
                        r = min(max(r + int(b[k]), -2 ** 31), 2 ** 31 - 1)
                    assert int(got[i, k]) == r, (c, i, k)
            # unfused: the corrected sums, then the bias added with saturation
            acc = (raw.astype(np.int64) - z.astype(np.int64) * wsum).astype(np.int32)
            ref = T.row_rescale(acc, j, e, (mt, st))
            if b is not None:
                ref = np.clip(ref.astype(np.int64) + b, -2 ** 31, 2 ** 31 - 1).astype(np.int32)
            assert np.array_equal(got, ref)


def test_row_steps_threads_agree():
    rng = np.random.default_rng(12)
    d = _rows(rng, 1000, 384, np.int32)   # above the kernels' 2^18-element threshold of 2 threads
    one = T.row_quantize(d, threads=1)
    two = T.row_quantize(d, threads=2)
    assert all(np.array_equal(a, b) for a, b in zip(one, two))
    x, z, j, e = one
    w = rng.integers(-127, 128, (384, 384)).astype(np.int64)
    raw = (x.astype(np.int64) @ w.T).astype(np.int32)
    kw = dict(z=z, wsum=w.sum(axis=1).astype(np.int32), bias=np.arange(384, dtype=np.int32))
    tab = T.row_rescale_params(3)
    assert np.array_equal(T.row_rescale(raw, j, e, tab, threads=1, **kw),
                          T.row_rescale(raw, j, e, tab, threads=2, **kw))
    x16 = _rows(rng, 1000, 384, np.int16)
    ln = qk.prepare_layernorm(qk.PTFParams(1e-3, np.zeros(384, np.int32), 0),
                              rng.normal(size=384), rng.normal(size=384), out_scale=1e-3)
    assert np.array_equal(layernorm_s16(x16, ln, threads=1), layernorm_s16(x16, ln, threads=2))


def test_row_steps_simd_paths_agree(tmp_path):
    # QKERNELS_SIMD=scalar / avx2 force those loops (chosen once per process): each in a
    # subprocess, compared with the best path of this CPU; the column counts cover every tail of
    # the 16 / 32-lane min / max loops and the 4 / 8-lane fixed-point loops
    import os
    script = f"""
import numpy as np, qkernels as qk, qkernels.transformer as T
from qkernels.ptf import layernorm_s16
import sys
sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
sys.path.insert(0, {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))!r})  # _util
from test_token_rows import _rows
rng = np.random.default_rng(13)
outs = {{}}
for c in (1, 3, 4, 5, 8, 9, 15, 16, 17, 31, 33, 64, 100, 384):
    for dt in (np.int16, np.int32):
        d = _rows(rng, 60, c, dt)
        x, z, j, e = T.row_quantize(d)
        lo, j2, e2 = T.row_range(d)
        w = rng.integers(-127, 128, (c, c)).astype(np.int64)
        raw = (x.astype(np.int64) @ w.T).astype(np.int32)
        r = T.row_rescale(raw, j, e, T.row_rescale_params(2), z=z,
                          wsum=w.sum(axis=1).astype(np.int32),
                          bias=rng.integers(-2 ** 31, 2 ** 31, c, dtype=np.int64).astype(np.int32))
        big = T.row_rescale(rng.integers(-2 ** 31, 2 ** 31, raw.shape, dtype=np.int64)
                            .astype(np.int32), j, e, T.row_rescale_params(0))
        stage = T.prepare_row_rescale(T.row_rescale_params(1), c,
                                      wsum=w.sum(axis=1).astype(np.int32),
                                      out_multiplier=rng.integers(2 ** 30, 2 ** 31, c),
                                      out_shift=rng.integers(-12, 3, c), out_zero_point=-3)
        o8 = stage(raw, j, e, z)
        outs.update({{f"{{c}}{{dt.__name__}}{{k}}": v for k, v in
                     dict(x=x, z=z, j=j, e=e, lo=lo, r=r, big=big, o8=o8).items()}})
    ln = qk.prepare_layernorm(qk.PTFParams(1e-3, np.zeros(c, np.int32), 0),
                              rng.normal(size=c), rng.normal(size=c), out_scale=1e-3)
    outs[f"{{c}}ln"] = layernorm_s16(_rows(rng, 40, c, np.int16), ln)
outs["isa"] = np.array(qk.show_config(mode="dicts")["simd"]["chosen"])
np.savez(sys.argv[1], **outs)
"""
    res = run_simd_paths(script, tmp_path)
    assert len(res["scalar"]) == 14 * 17 + 1          # and "isa"
    assert_simd_paths_equal(res)


def test_row_rescale_bad_input():
    x, z, j, e = T.row_quantize(np.array([[5, -3], [7, 1]], np.int32))
    tab = T.row_rescale_params(0)
    acc = np.zeros((2, 2), np.int32)
    with pytest.raises(ValueError, match="go together"):
        T.row_rescale(acc, j, e, tab, z=z)
    with pytest.raises(ValueError, match="wsum must have one value per column"):
        T.row_rescale(acc, j, e, tab, z=z, wsum=np.zeros(3, np.int32))
    with pytest.raises(ValueError, match="j must have one value per row"):
        T.row_rescale(acc, j[:1], e, tab)
    with pytest.raises(ValueError, match="32 entries"):
        T.row_rescale(acc, j, e, (tab[0][:5], tab[1][:5]))
    with pytest.raises(ValueError, match="row_rescale"):   # j outside 1..31: the kernel refuses
        T.row_rescale(acc, np.zeros_like(j), e, tab)
    # acc - z wsum outside int32: refused, never wrapped
    big = np.full((2, 2), 2 ** 31 - 1, np.int32)
    with pytest.raises(qk.AccumulatorOverflowError):
        T.row_rescale(big, j, e, tab, z=np.full_like(z, 255), wsum=np.full(2, -2 ** 20, np.int32))


@pytest.mark.parametrize("odt", [np.int8, np.uint8])
def test_row_rescale_output_stage_equals_requantize(odt):
    """prepare_row_rescale's output stage: the same integers as row_rescale's int32, then
    qkernels.requantize(single_round, per column)."""
    rng = np.random.default_rng(21)
    for c in (1, 5, 8, 384):
        d = _rows(rng, 120, c, np.int32)
        x, z, j, e = T.row_quantize(d)
        w = rng.integers(-127, 128, (c, c)).astype(np.int64)
        wsum = w.sum(axis=1).astype(np.int32)
        raw = (x.astype(np.int64) @ w.T).astype(np.int32)
        tab = T.row_rescale_params(int(rng.integers(0, 6)))
        bias = rng.integers(-2 ** 20, 2 ** 20, c).astype(np.int32)
        m = rng.integers(2 ** 30, 2 ** 31, c).astype(np.int32)
        sh = rng.integers(-20, 4, c).astype(np.int32)
        zp = 7 if odt == np.int8 else 130
        got = T.prepare_row_rescale(tab, c, wsum=wsum, bias=bias, out_multiplier=m,
                                    out_shift=sh, out_zero_point=zp, out_dtype=odt)(raw, j, e, z)
        v = T.row_rescale(raw, j, e, tab, z=z, wsum=wsum, bias=bias)
        ref = qk.requantize(v, m, sh, zp, scheme="single_round", dtype=odt, axis=-1)
        assert got.dtype == odt and np.array_equal(got, ref)


def test_prepare_row_rescale_bad_input():
    tab = T.row_rescale_params(0)
    with pytest.raises(ValueError, match="go together"):
        T.prepare_row_rescale(tab, 2, out_multiplier=1)
    with pytest.raises(ValueError, match="out_shift must be in"):
        T.prepare_row_rescale(tab, 2, out_multiplier=1, out_shift=31)
    with pytest.raises(TypeError, match="out_dtype must be"):
        T.prepare_row_rescale(tab, 2, out_multiplier=1, out_shift=0, out_dtype=np.int16)
    with pytest.raises(ValueError, match="outside int8"):
        T.prepare_row_rescale(tab, 2, out_multiplier=1, out_shift=0, out_zero_point=200)
    with pytest.raises(ValueError, match="one value per column"):
        T.prepare_row_rescale(tab, 2, bias=[1, 2, 3])
    rr = T.prepare_row_rescale(tab, 2)
    with pytest.raises(ValueError, match="2 columns"):
        rr(np.zeros((1, 3), np.int32), np.ones(1, np.int32), np.zeros(1, np.int32))
