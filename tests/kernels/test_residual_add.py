"""qkernels.transformer.prepare_residual_add (qk_residual_add: the integer transformer blocks'
residual add in one pass) against its statement in Python integers and against the four
elementwise calls it replaces (qkernels.requantize single_round twice, the saturating sum,
qkernels.requantize_shift half_up), on random columns with per-column parameters, ties,
saturation, every input / output type; SIMD paths and threads agree."""
import numpy as np
import pytest

import qkernels as qk
import qkernels.transformer as T
from _util import assert_simd_paths_equal, run_simd_paths


def _sr(v, m, s):
    return (v * m + (1 << (30 - s))) >> (31 - s)


def _ref_row(acc, r, ra):
    out = []
    info = np.iinfo(ra.out_dtype)
    for c in range(len(acc)):
        a = min(max(_sr(int(acc[c]), int(ra.acc_multiplier[c]), int(ra.acc_shift[c])), -2 ** 31),
                2 ** 31 - 1)
        b = min(max(_sr(int(r[c]) - ra.r_zero_point, int(ra.r_multiplier[c]), int(ra.r_shift[c])),
                    -2 ** 31), 2 ** 31 - 1)
        t = min(max(a + b, -2 ** 31), 2 ** 31 - 1)
        k = int(ra.out_shift[c])
        v = (t + (1 << (k - 1))) >> k if k > 0 else t << -k
        out.append(min(max(v + ra.out_zero_point, info.min), info.max))
    return out


def _case(rng, c, rdt, odt, neg_out=False):
    m = lambda: rng.integers(2 ** 30, 2 ** 31, c)   # noqa: E731
    so = rng.integers(-3 if neg_out else 0, 12, c)
    ri, oi = np.iinfo(rdt), np.iinfo(odt)
    ra = T.prepare_residual_add(m(), rng.integers(-12, 4, c), m(), rng.integers(-4, 8, c), so,
                                channels=c, r_dtype=rdt,
                                r_zero_point=int(rng.integers(ri.min, ri.max + 1)),
                                out_dtype=odt,
                                out_zero_point=int(rng.integers(oi.min, oi.max + 1)) // 3)
    acc = rng.integers(-2 ** 31, 2 ** 31, (20, c), dtype=np.int64)
    acc[::3] //= 2 ** 14
    acc[1::5] = acc[1::5] // 2 ** 12 * 2 ** 12 + 2 ** 11   # half steps: rounding ties
    r = rng.integers(ri.min, ri.max + 1, (20, c)).astype(rdt)
    return ra, acc.astype(np.int32), r


@pytest.mark.parametrize("rdt", [np.uint8, np.int8, np.int16])
@pytest.mark.parametrize("odt", [np.uint8, np.int8, np.int16])
def test_residual_add_equals_python_integers_and_the_four_calls(rdt, odt):
    rng = np.random.default_rng([np.dtype(rdt).num, np.dtype(odt).num])
    n = 0
    for c in (1, 3, 4, 8, 9, 17, 384):
        for neg in (False, True):
            ra, acc, r = _case(rng, c, rdt, odt, neg)
            y = ra(acc, r)
            assert y.dtype == odt and y.shape == acc.shape
            for i in range(acc.shape[0]):
                assert y[i].tolist() == _ref_row(acc[i], r[i], ra), (c, i)
            a = qk.requantize(acc, ra.acc_multiplier, ra.acc_shift, scheme="single_round",
                              dtype=np.int32, axis=-1)
            b = qk.requantize(r.astype(np.int32) - np.int32(ra.r_zero_point), ra.r_multiplier,
                              ra.r_shift, scheme="single_round", dtype=np.int32, axis=-1)
            t = np.clip(a.astype(np.int64) + b, -2 ** 31, 2 ** 31 - 1).astype(np.int32)
            ref = qk.requantize_shift(t, ra.out_shift, ra.out_zero_point, rounding="half_up",
                                      dtype=odt, axis=-1)
            assert np.array_equal(y, ref)
            n += y.size
    assert n > 10 ** 4


def test_residual_add_threads_and_simd_paths_agree(tmp_path):
    import os
    rng = np.random.default_rng(4)
    ra, acc, r = _case(rng, 384, np.int16, np.int16)
    acc = np.tile(acc, (40, 1))
    r = np.tile(r, (40, 1))
    assert np.array_equal(ra(acc, r, threads=1), ra(acc, r, threads=2))
    script = f"""
import numpy as np, sys, qkernels as qk
sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
sys.path.insert(0, {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))!r})  # _util
from test_residual_add import _case
rng = np.random.default_rng(9)
outs = {{}}
for c in (1, 3, 4, 5, 7, 8, 9, 16, 17, 33, 384):
    for rdt in (np.uint8, np.int8, np.int16):
        for odt in (np.uint8, np.int8, np.int16):
            ra, acc, r = _case(rng, c, rdt, odt)
            outs[f"{{c}}{{rdt.__name__}}{{odt.__name__}}"] = ra(acc, r)
outs["isa"] = np.array(qk.show_config(mode="dicts")["simd"]["chosen"])
np.savez(sys.argv[1], **outs)
"""
    res = run_simd_paths(script, tmp_path)
    assert len(res["scalar"]) == 11 * 9 + 1          # and "isa"
    assert_simd_paths_equal(res)


def test_residual_add_bad_input():
    kw = dict(channels=2, r_dtype=np.int8, out_dtype=np.uint8)
    with pytest.raises(ValueError, match="acc_shift must be in"):
        T.prepare_residual_add(1, 31, 1, 0, 0, **kw)
    with pytest.raises(ValueError, match="r_multiplier must be in"):
        T.prepare_residual_add(1, 0, -1, 0, 0, **kw)
    with pytest.raises(ValueError, match="out_shift must be one value or 2"):
        T.prepare_residual_add(1, 0, 1, 0, [1, 2, 3], **kw)
    with pytest.raises(TypeError, match="r_dtype must be"):
        T.prepare_residual_add(1, 0, 1, 0, 0, channels=2, r_dtype=np.int32, out_dtype=np.uint8)
    with pytest.raises(ValueError, match="r_zero_point=200 is outside int8"):
        T.prepare_residual_add(1, 0, 1, 0, 0, r_zero_point=200, **kw)
    with pytest.raises(ValueError, match="channels must be"):
        T.prepare_residual_add(1, 0, 1, 0, 0, channels=0, r_dtype=np.int8, out_dtype=np.uint8)
    ra = T.prepare_residual_add(1, 0, 1, 0, 0, **kw)
    with pytest.raises(TypeError, match="r must be int8"):
        ra(np.zeros((1, 2), np.int32), np.zeros((1, 2), np.uint8))
    with pytest.raises(ValueError, match="one shape"):
        ra(np.zeros((1, 2), np.int32), np.zeros((2, 2), np.int8))
    with pytest.raises(ValueError, match="2 channels"):
        ra(np.zeros((1, 3), np.int32), np.zeros((1, 3), np.int8))
    with pytest.raises(qk.AccumulatorOverflowError):
        ra(np.array([[2 ** 40, 0]]), np.zeros((1, 2), np.int8))
