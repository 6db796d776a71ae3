"""int16 x int8 qconv2d / qlinear (TFLite 16x8, CMSIS-NN s16) against a NumPy reference written
here from the runtimes' source (exact int64 sums; TFLite's int64 MultiplyByQuantizedMultiplier,
CMSIS-NN's arm_nn_requantize_s64, TFLite's FullyConnected in double), and the argument checks.
The interpreter itself is compared in tests/torch/test_tflite_vs_tflite.py."""
import numpy as np
import pytest

import qkernels as qk
from qkernels._elementwise import quantize_multiplier


def _rm(m):
    m = np.asarray(m, np.int64)
    return np.where(m < 0x7FFF0000, (m + (1 << 15)) >> 16, 0x7FFF)


def _wrap32(v):
    return ((np.asarray(v, np.int64) + (1 << 31)) % (1 << 32)) - (1 << 31)


def ref_requant(acc, real, scheme):
    """acc (..., n) int64, real (n,) float64 -> int32 results before the clamp."""
    if scheme == "fp64":
        d = acc.astype(np.float64) * real
        return np.clip(np.sign(d) * np.floor(np.abs(d) + 0.5), -2**31, 2**31 - 1).astype(np.int64)
    m, sh = quantize_multiplier(real)
    rm, sh = _rm(m), np.asarray(sh, np.int64)
    p = acc * rm
    if scheme == "reduced":
        t = 15 - sh
        return _wrap32((p + (np.int64(1) << (t - 1))) // (np.int64(1) << t))   # floor division
    r = _wrap32(p // (np.int64(1) << (14 - sh)))
    return _wrap32(r + 1) // 2


def ref_conv(x, w, b, stride, pad, groups):
    """NCHW int16 x, OIHW int8 w, exact int64 (zero padding)."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.zeros((n, c, h + 2 * pad, wd + 2 * pad), np.int64)
    xp[:, :, pad:pad + h, pad:pad + wd] = x
    oh, ow = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    acc = np.zeros((n, o, oh, ow), np.int64)
    og = o // groups
    for oc in range(o):
        g = oc // og
        for r in range(kh):
            for q in range(kw):
                patch = xp[:, g * cg:(g + 1) * cg, r:r + stride * oh:stride, q:q + stride * ow:stride]
                acc[:, oc] += np.einsum("nchw,c->nhw", patch, w[oc, :, r, q].astype(np.int64))
    return acc + (0 if b is None else b[None, :, None, None])


@pytest.mark.parametrize("preset,scheme", [("tflite", "reduced"), ("cmsis_nn", "reduced_cmsis"),
                                           ("tflite_optimized", "reduced")])
@pytest.mark.parametrize("groups,cg,og,stride,pad", [(1, 6, 5, 1, 1), (1, 4, 3, 2, 0),
                                                     (5, 1, 2, 1, 1), (2, 3, 2, 2, 1)])
def test_conv_vs_reference(preset, scheme, groups, cg, og, stride, pad):
    rng = np.random.default_rng(groups * 100 + cg * 10 + stride)
    x = rng.integers(-32768, 32768, (3, groups * cg, 9, 8)).astype(np.int16)
    x.flat[:2] = (-32768, 32767)
    w = rng.integers(-127, 128, (groups * og, cg, 3, 3)).astype(np.int8)
    b = rng.integers(-2**26, 2**26, groups * og).astype(np.int64)
    ws = (rng.uniform(0.5, 2, groups * og) * 1e-3).astype(np.float32)
    xs, os_ = np.float32(3e-5), np.float32(2.5e-4)
    y = qk.qconv2d(x, w, b, stride=stride, padding=pad, groups=groups, x_scale=xs, w_scale=ws,
                   out_scale=os_, preset=preset, act_min=-30000, act_max=32000)
    real = np.float64(xs) * ws.astype(np.float64) / np.float64(os_)
    acc = ref_conv(x, w, b, stride, pad, groups)
    want = np.clip(ref_requant(np.moveaxis(acc, 1, -1), real, scheme), -30000, 32000)
    assert y.dtype == np.int16
    assert np.array_equal(y, np.moveaxis(want, -1, 1))
    inner = (want > -30000) & (want < 32000)
    assert inner.mean() > 0.5


@pytest.mark.parametrize("preset,scheme", [("tflite", "fp64"), ("tflite_xnnpack", "fp64"),
                                           ("cmsis_nn", "reduced_cmsis")])
def test_linear_vs_reference_with_ties(preset, scheme):
    """Power-of-two scales put 1 in 16 accumulators on an exact tie: fp64 rounds them away from
    zero, the reduced multiplier toward +inf (they differ on the negative ties)."""
    rng = np.random.default_rng(7)
    x = rng.integers(-32768, 32768, (400, 64)).astype(np.int16)
    w = rng.integers(-4, 5, (48, 64)).astype(np.int8)
    b = rng.integers(-1000, 1000, 48).astype(np.int64)
    y = qk.qlinear(x, w, b, x_scale=2.0**-10, w_scale=2.0**-4, out_scale=2.0**-10,
                   preset=preset)
    acc = x.astype(np.int64) @ w.astype(np.int64).T + b
    assert ((acc % 16) == 8).sum() > 1000                    # ties
    want = np.clip(ref_requant(acc, np.full(48, 1 / 16), scheme), -32768, 32767)
    assert np.array_equal(y, want)
    other = qk.qlinear(x, w, b, x_scale=2.0**-10, w_scale=2.0**-4, out_scale=2.0**-10,
                       preset=preset, scheme="reduced" if scheme == "fp64" else "fp64")
    assert (other != y).sum() > 300          # the negative ties (some saturate)


def test_reduced_multiplier_cap_and_explicit_multiplier():
    """M0 >= 0x7FFF0000 reduces to 0x7FFF, not 0x8000 (TFLite and CMSIS-NN); explicit
    multiplier= / shift= take the reduced scheme."""
    x = np.array([[32767, -32768, 12345]], np.int16)
    w = np.array([[127, 127, 1], [1, -1, 1]], np.int8)
    for m in (0x7FFF0000, 0x7FFFFFFF, 0x7FFEFFFF, 0x40000000):
        y = qk.qlinear(x, w, multiplier=m, shift=-8)
        acc = x.astype(np.int64) @ w.astype(np.int64).T
        t = 15 + 8
        want = np.clip((acc * int(_rm(m)) + (1 << (t - 1))) >> t, -32768, 32767)
        assert np.array_equal(y, want), m


def test_linear_is_the_1x1_conv():
    rng = np.random.default_rng(3)
    x = rng.integers(-32768, 32768, (5, 7, 20)).astype(np.int16)
    w = rng.integers(-128, 128, (11, 20)).astype(np.int8)
    kw = dict(x_scale=1e-4, w_scale=np.linspace(1e-3, 2e-3, 11), out_scale=3e-4)
    y = qk.qlinear(x, w, scheme="reduced", **kw)
    yc = qk.qconv2d(x.reshape(35, 20, 1, 1), w.reshape(11, 20, 1, 1), **kw)
    assert y.shape == (5, 7, 11) and np.array_equal(y.reshape(35, 11), yc.reshape(35, 11))
    out = np.empty((5, 7, 11), np.int16)
    assert qk.qlinear(x, w, scheme="reduced", out=out, **kw) is out and np.array_equal(out, y)
    assert qk.qlinear(x[:0], w, **kw).shape == (0, 7, 11)


def test_epilogue16_for_the_export():
    w = np.ones((3, 4), np.int8)
    e = qk.linear16.epilogue16("linear", w, np.int64([1, 2, 3]), x_scale=1e-4, w_scale=0.01,
                               out_scale=2e-4)
    assert e.scheme_name == "fp64" and e.scale.dtype == np.float64 and e.bias.dtype == np.int64
    e = qk.linear16.epilogue16("linear", w, x_scale=1e-4, w_scale=0.01, out_scale=2e-4,
                               preset="cmsis_nn")
    assert e.scheme_name == "reduced_cmsis" and e.mult.dtype == np.int32


X = np.zeros((1, 4), np.int16)
W = np.ones((2, 4), np.int8)
KW = dict(x_scale=1e-4, w_scale=1e-2, out_scale=1e-4)


@pytest.mark.parametrize("kw,exc,words", [
    (dict(x_zero_point=3), ValueError, "x_zero_point must be 0"),
    (dict(out_zero_point=-1), ValueError, "out_zero_point must be 0"),
    (dict(w_zero_point=[0, 1]), ValueError, "w_zero_point must be 0"),
    (dict(preset="fbgemm"), TypeError, "preset 'fbgemm' has no int16"),
    (dict(out_dtype=np.int8), TypeError, "out_dtype must be int16"),
    (dict(overflow="wrap"), ValueError, "overflow must be 'raise'"),
    (dict(rounding="half_up"), ValueError, "rounding="),
    (dict(scheme="double_round"), ValueError, "scheme must be one of"),
    (dict(act_min=-40000), ValueError, "act_min"),
    (dict(act_min=5, act_max=4), ValueError, "act_min"),
    (dict(out_scale=1e-9, scheme="reduced"), ValueError, "shifts up to 7"),
    (dict(w_scale=[1e-2, 1e-2, 1e-2]), ValueError, "w_scale"),
    (dict(out_scale=float("nan")), ValueError, "out_scale"),
])
def test_bad_arguments(kw, exc, words):
    with pytest.raises(exc, match=words):
        qk.qlinear(X, W, **{**KW, **kw})


def test_bad_bias_weights_and_bound():
    with pytest.raises(TypeError, match="bias must be an int64"):
        qk.qlinear(X, W, np.float32([1, 2]), **KW)
    with pytest.raises(ValueError, match="bias has shape"):
        qk.qlinear(X, W, np.int64([1, 2, 3]), **KW)
    with pytest.raises(TypeError, match="w must be an int8"):
        qk.qlinear(X, W.astype(np.uint8), **KW)
    with pytest.raises(TypeError, match="w is packed"):
        qk.qlinear(X, qk.pack_linear(W), **KW)
    # 32768 * 4 + |bias| reaches 2^47: refused before anything runs, naming w and bias
    with pytest.raises(ValueError, match="w and bias.*2\\^47"):
        qk.qlinear(X, W, np.int64([0, 2**47 - 4 * 32768]), **KW)
    qk.qlinear(X, W, np.int64([0, 2**47 - 4 * 32768 - 1]), **KW)
    with pytest.raises(ValueError, match="w and bias"):
        qk.qlinear(X, W, np.int64([0, -2**63]), **KW)
    with pytest.raises(ValueError, match="x must be an int16 NCHW"):
        qk.qconv2d(X, W.reshape(2, 4, 1, 1), **KW)
    with pytest.raises(ValueError, match="groups"):
        qk.qconv2d(X.reshape(1, 4, 1, 1), W.reshape(2, 4, 1, 1), groups=2, **KW)
