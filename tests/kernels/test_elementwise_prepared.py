"""The prepared elementwise calls (prepare_requantize, prepare_requantize_shift,
prepare_dequantize): the same values as the keyword calls with the same arguments (per tensor
and per channel on the last axis, every output type, both fixed-point schemes, every rounding,
clamps, near-ties and saturating values), the same data errors, and checks of x and of the
parameters."""
import numpy as np
import pytest

import qkernels as qk

RNG = np.random.default_rng(11)
OUTS = [np.int8, np.uint8, np.int16, np.uint16, np.int32]


def _acc(shape):
    a = RNG.integers(-2 ** 31, 2 ** 31, shape, dtype=np.int64)
    small = RNG.integers(-3000, 3000, shape)
    a = np.where(RNG.random(shape) < 0.6, small, a).astype(np.int32)
    a.reshape(-1)[:4] = [-2 ** 31, 2 ** 31 - 1, 0, -1]
    return a


@pytest.mark.parametrize("dtype", OUTS)
@pytest.mark.parametrize("scheme", ["double_round", "single_round"])
@pytest.mark.parametrize("channels", [None, 37])
def test_prepare_requantize_equals_requantize(dtype, scheme, channels):
    c = 37
    acc = _acc((3, 5, c))
    if channels is None:
        m, sh = np.int32(RNG.integers(2 ** 30, 2 ** 31)), np.int32(RNG.integers(-31, 1))
    else:
        m = RNG.integers(0, 2 ** 31, c).astype(np.int32)
        m[:3] = [0, 2 ** 30, 2 ** 31 - 1]        # exact halves at 2^30: the ties
        sh = RNG.integers(-31, 1, c).astype(np.int32)
    info = np.iinfo(dtype)
    zp = int(RNG.integers(max(info.min, -90), min(info.max, 90)))
    kw = dict(scheme=scheme, dtype=dtype)
    if dtype == np.int8:
        kw.update(qmin=-100, qmax=90)
    ref = qk.requantize(acc, m, sh, zp, axis=None if channels is None else -1, **kw)
    prep = qk.prepare_requantize(m, sh, zp, channels=channels, **kw)
    got = prep(acc)
    assert got.dtype == ref.dtype and np.array_equal(got, ref)
    out = np.empty_like(ref)
    assert prep(acc, out=out) is out and np.array_equal(out, ref)


@pytest.mark.parametrize("rounding", ["half_up", "half_even", "half_away", "floor"])
@pytest.mark.parametrize("channels", [None, 24])
def test_prepare_requantize_shift_equals_requantize_shift(rounding, channels):
    acc = _acc((4, 24))
    acc[1] = RNG.integers(-8, 8, 24) * 2 ** 5 + 2 ** 4     # ties of a shift by 5
    sh = np.int32(5) if channels is None else RNG.integers(-3, 32, 24).astype(np.int32)
    for dtype in (np.uint8, np.int32):
        ref = qk.requantize_shift(acc, sh, 7, rounding=rounding, dtype=dtype,
                                  axis=None if channels is None else -1)
        got = qk.prepare_requantize_shift(sh, 7, rounding=rounding, dtype=dtype,
                                          channels=channels)(acc)
        assert got.dtype == ref.dtype and np.array_equal(got, ref)


@pytest.mark.parametrize("dtype", OUTS)
@pytest.mark.parametrize("channels", [None, 19])
def test_prepare_dequantize_equals_dequantize(dtype, channels):
    info = np.iinfo(dtype)
    q = RNG.integers(info.min, info.max, (6, 19), endpoint=True).astype(dtype)
    if channels is None:
        s, zp = np.float32(0.0371), int(RNG.integers(info.min, info.max))
    else:
        s = (RNG.random(19) * 0.1 + 1e-3).astype(np.float32)
        zp = RNG.integers(max(info.min, -50), min(info.max, 50), 19).astype(np.int32)
    ref = qk.dequantize(q, s, zp, axis=None if channels is None else -1)
    got = qk.prepare_dequantize(s, zp, dtype=dtype, channels=channels)(q)
    assert got.dtype == np.float32 and np.array_equal(got.view(np.uint32), ref.view(np.uint32))


def test_prepared_data_errors_and_checks():
    rq = qk.prepare_requantize(np.int32([2 ** 30, 2 ** 30]), np.int32([3, 0]), channels=2)
    with pytest.raises(qk.AccumulatorOverflowError, match=r"index \(1, 0\)"):
        rq(np.array([[1, 1], [2 ** 30, 5]], np.int32))
    with pytest.raises(TypeError, match="prepared for int32"):
        rq(np.zeros((2, 2), np.int64))
    with pytest.raises(ValueError, match="2 channels"):
        rq(np.zeros((2, 3), np.int32))
    with pytest.raises(ValueError, match="channels="):
        qk.prepare_requantize(np.int32([1, 2]), 0)
    with pytest.raises(ValueError, match="shift"):
        qk.prepare_requantize(1 << 30, 31)
    with pytest.raises(ValueError, match="length 3"):
        qk.prepare_requantize_shift(np.int32([1, 2]), channels=3)
    with pytest.raises(ValueError, match="channels"):
        qk.prepare_dequantize(0.5, dtype=np.int8, channels=0)
    with pytest.raises(ValueError, match="scale"):
        qk.prepare_dequantize(np.float32([0.5, 0.0]), dtype=np.int8, channels=2)
    with pytest.raises(ValueError, match="zero_point"):
        qk.prepare_dequantize(0.5, 300, dtype=np.uint8)
    dq = qk.prepare_dequantize(0.5, dtype=np.uint8)
    with pytest.raises(TypeError, match="out"):
        dq(np.zeros(3, np.uint8), out=np.zeros(3, np.float64))
