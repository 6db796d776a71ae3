"""qconv2d / conv2d_int32 / pack_conv2d: exact sums against a NumPy reference (groups, depthwise,
stride, padding, dilation), the tflite conv / depthwise conv reference, pow2, threads, errors."""
import numpy as np
import pytest

import qkernels

import _gemm_ref as R

I8, U8 = np.int8, np.uint8


def rand_q(rng, dtype, shape):
    info = np.iinfo(dtype)
    return rng.integers(int(info.min), int(info.max) + 1, shape).astype(dtype)


# (batch, in_c, h, w, out_c, kh, kw, stride, padding, dilation, groups)
CASES = [
    (1, 3, 9, 9, 4, 1, 1, 1, 0, 1, 1),
    (2, 5, 11, 13, 7, 3, 3, 1, 1, 1, 1),
    (1, 4, 17, 16, 6, 3, 3, 2, 1, 1, 2),
    (1, 3, 23, 23, 8, 7, 7, 2, 3, 1, 1),
    (2, 6, 12, 12, 6, 5, 5, 1, 2, 1, 3),
    (1, 8, 15, 33, 8, 3, 3, 1, 1, 1, 8),      # depthwise
    (1, 8, 15, 34, 16, 3, 3, 2, 1, 1, 8),     # depthwise, channel multiplier 2, stride 2
    (1, 4, 14, 14, 4, 3, 3, 1, 2, 2, 4),      # depthwise, dilation 2
    (1, 4, 14, 20, 8, 3, 3, 1, 2, 2, 1),      # dilation 2
    (1, 2, 5, 40, 3, 2, 5, 3, (0, 1, 2, 3), (1, 2), 1),  # asymmetric everything
    (7, 16, 6, 6, 32, 1, 1, 2, 0, 1, 1),      # 1x1 stride 2 (downsample)
    (1, 64, 8, 8, 64, 3, 3, 1, 1, 1, 1),      # K = 576
    (1, 512, 3, 3, 5, 3, 3, 1, 1, 1, 1),      # K = 4608
]


def _geom(c):
    b, ci, h, w, co, kh, kw, s, p, d, g = c
    pad = (p, p, p, p) if isinstance(p, int) else p
    dil = (d, d) if isinstance(d, int) else d
    return b, ci, h, w, co, kh, kw, (s, s), pad, dil, g


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("xt,wt", [(U8, I8), (I8, I8), (U8, U8)])
def test_conv2d_int32_exact(case, xt, wt):
    b, ci, h, w, co, kh, kw, s, pad, dil, g = _geom(case)
    rng = np.random.default_rng(hash((case[1], case[4], case[5], h)) % 2 ** 32)
    x, wt_ = rand_q(rng, xt, (b, ci, h, w)), rand_q(rng, wt, (co, ci // g, kh, kw))
    x_zp, w_zp = int(rand_q(rng, xt, ())), rand_q(rng, wt, (co,)).astype(np.int32)
    bias = rng.integers(-2 ** 16, 2 ** 16, co).astype(np.int32)
    ref = R.conv_acc(x, wt_, x_zp, w_zp, s, pad, dil, g, bias)
    got = qkernels.conv2d_int32(x, wt_, bias, stride=s, padding=pad, dilation=dil, groups=g,
                                x_zero_point=x_zp, w_zero_point=w_zp)
    assert got.shape == ref.shape and got.dtype == np.int32
    np.testing.assert_array_equal(got, ref)
    p = qkernels.pack_conv2d(wt_, groups=g, w_zero_point=w_zp)
    got2 = qkernels.conv2d_int32(x, p, bias, stride=s, padding=pad, dilation=dil,
                                 x_zero_point=x_zp, threads=2)
    np.testing.assert_array_equal(got2, ref)


@pytest.mark.parametrize("case", [CASES[1], CASES[3], CASES[5], CASES[6], CASES[8], CASES[11]])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("scheme", ["double_round", "single_round"])
def test_tflite_conv_reference(case, per_channel, scheme):
    b, ci, h, w, co, kh, kw, s, pad, dil, g = _geom(case)
    rng = np.random.default_rng(co * 31 + kh)
    x = rand_q(rng, I8, (b, ci, h, w))
    wq = rng.integers(-127, 128, (co, ci // g, kh, kw)).astype(I8)
    xs = np.float32(0.02)
    ws = rng.uniform(0.002, 0.02, co).astype(np.float32) if per_channel else np.float32(0.01)
    os_ = np.float32(0.02 * np.sqrt(ci // g * kh * kw))
    bias = rng.integers(-2000, 2000, co).astype(np.int32)
    x_zp, out_zp = int(rng.integers(-30, 30)), int(rng.integers(-10, 10))
    got = qkernels.qconv2d(x, wq, bias, stride=s, padding=pad, dilation=dil, groups=g,
                           x_scale=xs, x_zero_point=x_zp, w_scale=ws, out_scale=os_,
                           out_zero_point=out_zp, preset="tflite", scheme=scheme,
                           act_min=out_zp, act_max=127)
    m0, sh = R.tflite_multipliers(xs, ws if per_channel else [ws] * co, os_, per_channel)
    acc = R.conv_acc(x, wq, x_zp, 0, s, pad, dil, g, bias)
    ref = R.tflite_output(acc, m0, sh, out_zp, out_zp, 127, 1, single=scheme == "single_round")
    np.testing.assert_array_equal(got, ref)


def test_pow2_conv_equals_requantize_shift():
    rng = np.random.default_rng(3)
    x, w = rand_q(rng, U8, (2, 6, 10, 10)), rand_q(rng, I8, (8, 3, 3, 3))
    ws = np.float32(2.0) ** -rng.integers(6, 9, 8)
    got = qkernels.qconv2d(x, w, groups=2, padding=1, x_scale=2.0 ** -3, x_zero_point=128,
                           w_scale=ws, out_scale=1.0, out_zero_point=128, preset="pow2")
    acc = qkernels.conv2d_int32(x, w, groups=2, padding=1, x_zero_point=128)
    shift = (3 - np.log2(ws)).astype(np.int32)[:, None, None]
    ref = qkernels.requantize_shift(acc, shift, 128, dtype=U8)
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("case", [CASES[2], CASES[6], CASES[11]])
def test_conv_threads_do_not_change_bits(case):
    b, ci, h, w, co, kh, kw, s, pad, dil, g = _geom(case)
    rng = np.random.default_rng(1)
    x, wq = rand_q(rng, U8, (b, ci, h, w)), rand_q(rng, I8, (co, ci // g, kh, kw))
    kw_ = dict(stride=s, padding=pad, dilation=dil, groups=g, x_scale=0.05, x_zero_point=120,
               w_scale=rng.uniform(0.001, 0.01, co), out_scale=0.3, out_zero_point=128,
               preset="fbgemm", bias=rng.normal(0, 1, co).astype(np.float32))
    outs = [qkernels.qconv2d(x, wq, threads=t, **kw_) for t in (1, 2, 5)]
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])


def test_conv_out_and_packed_reuse():
    rng = np.random.default_rng(2)
    x, w = rand_q(rng, I8, (1, 4, 8, 8)), rand_q(rng, I8, (4, 4, 3, 3))
    p = qkernels.pack_conv2d(w, w_scale=0.01)
    out = np.empty((1, 4, 6, 6), I8)
    r = qkernels.qconv2d(x, p, x_scale=0.1, out_scale=0.5, out=out)
    assert r is out
    np.testing.assert_array_equal(out, qkernels.qconv2d(x, w, x_scale=0.1, w_scale=0.01, out_scale=0.5))
    assert "PackedConv2d" in repr(p) and p.nbytes > 0


def test_conv_errors():
    x = np.zeros((1, 6, 5, 5), I8)
    kw = dict(x_scale=0.1, w_scale=0.1, out_scale=0.1)
    with pytest.raises(ValueError, match="out_channels \\(5\\) must be divisible by groups \\(2\\)"):
        qkernels.qconv2d(x, np.zeros((5, 3, 3, 3), I8), groups=2, **kw)
    with pytest.raises(ValueError, match="not divisible by groups=4"):
        qkernels.qconv2d(x, np.zeros((4, 1, 3, 3), I8), groups=4, **kw)
    with pytest.raises(ValueError, match="6 input channels but w expects 4"):
        qkernels.qconv2d(x, np.zeros((4, 2, 3, 3), I8), groups=2, **kw)
    with pytest.raises(ValueError, match="larger than the padded input"):
        qkernels.qconv2d(x, np.zeros((2, 6, 7, 7), I8), **kw)
    with pytest.raises(ValueError, match="larger than the padded input"):
        qkernels.qconv2d(x, np.zeros((2, 6, 3, 3), I8), dilation=3, **kw)
    qkernels.qconv2d(x, np.zeros((2, 6, 7, 7), I8), padding=1, **kw)   # fits with padding
    with pytest.raises(ValueError, match="x must be NCHW"):
        qkernels.qconv2d(x[0], np.zeros((2, 6, 3, 3), I8), **kw)
    with pytest.raises(ValueError, match="w must be OIHW"):
        qkernels.qconv2d(x, np.zeros((2, 6, 3), I8), **kw)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        qkernels.qconv2d(x, np.zeros((2, 6, 3, 3), I8), stride=0, **kw)
    with pytest.raises(ValueError, match="padding must be >= 0"):
        qkernels.qconv2d(x, np.zeros((2, 6, 3, 3), I8), padding=-1, **kw)
    with pytest.raises(TypeError, match="x must be a uint8 or int8"):
        qkernels.qconv2d(x.astype(np.float32), np.zeros((2, 6, 3, 3), I8), **kw)
    with pytest.raises(ValueError, match="groups=3 differs"):
        qkernels.qconv2d(x, qkernels.pack_conv2d(np.zeros((2, 6, 3, 3), I8)), groups=3, **kw)
    with pytest.raises(TypeError, match="PackedLinear"):
        qkernels.qconv2d(x, qkernels.pack_linear(np.zeros((2, 6), I8)), **kw)
    with pytest.raises(qkernels.AccumulatorOverflowError, match="overflow"):
        qkernels.conv2d_int32(np.zeros((1, 8192, 3, 3), U8), np.full((1, 8192, 3, 3), -128, I8))
