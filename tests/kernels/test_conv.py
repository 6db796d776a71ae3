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
    (2, 6, 7, 19, 10, 3, 3, 1, (1, 0, 2, 0), 1, 1),  # top / bottom padding only
    (1, 5, 9, 10, 12, 3, 3, 2, (0, 1, 0, 2), 1, 1),  # left / right padding only, stride 2
    (2, 8, 14, 14, 16, 3, 3, 1, 1, 1, 1),     # channel-quad image (in_c / groups % 4 == 0)
    (1, 16, 11, 9, 24, 3, 3, 2, (2, 0, 1, 1), 1, 2),  # channel-quad, stride 2, groups
    (1, 8, 10, 10, 8, 3, 3, 3, 1, 2, 1),      # channel-quad, stride 3, dilation 2
    (2, 20, 17, 17, 24, 1, 1, 1, 0, 1, 1),    # 1x1 read in place, 289-pixel planes (tails)
]


def _geom(c):
    b, ci, h, w, co, kh, kw, s, p, d, g = c
    pad = (p, p, p, p) if isinstance(p, int) else p
    dil = (d, d) if isinstance(d, int) else d
    return b, ci, h, w, co, kh, kw, (s, s) if isinstance(s, int) else s, pad, dil, g


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


# ---- SIMD kernels against their scalar twins ------------------------------------------------
# Shapes that reach every conv kernel: 8-bit VNNI tiles with 12- and 16-row weight blocks (ocg 12,
# 16, 20, 24, 64), tiles spanning 1 to 3 output rows, stride 1 / 2 / 3, dilation, asymmetric
# padding, groups, the depthwise plane kernels (narrow planes <= 16 wide, wide planes > 32, channel
# multiplier, stride 2, dilation) and the fallbacks; int8 and uint8 activations, zero and
# non-zero per-channel weight zero points, saturating inputs, odd K, several images.
SIMD_CASES = [
    # (batch, in_c, h, w, out_c, kh, kw, stride, padding, dilation, groups)
    (2, 5, 9, 11, 16, 3, 3, 1, 1, 1, 1),
    (1, 8, 14, 14, 24, 3, 3, 1, 1, 1, 1),
    (1, 6, 13, 29, 20, 3, 3, 2, (0, 1, 2, 1), 1, 1),
    (3, 16, 8, 8, 64, 3, 3, 1, 1, 1, 1),
    (1, 4, 7, 5, 12, 2, 3, 1, (1, 0, 0, 2), (2, 1), 1),
    (1, 12, 10, 19, 32, 3, 3, 1, 1, 1, 4),
    (1, 3, 31, 37, 16, 7, 7, 2, 3, 1, 1),
    (2, 6, 9, 9, 18, 1, 1, 3, 0, 1, 1),
    (2, 7, 14, 14, 7, 3, 3, 1, 1, 1, 7),
    (1, 5, 9, 40, 10, 3, 3, 1, 1, 1, 5),
    (1, 6, 17, 35, 6, 3, 3, 2, 1, 1, 6),
    (1, 4, 12, 12, 4, 3, 3, 1, 2, 2, 4),
    (2, 3, 5, 3, 3, 5, 3, 1, (2, 1, 2, 1), 1, 3),
    # channel-quad image (channels a group a multiple of 4, more than one tap): stride 1 / 2 / 3,
    # tiles over 1 to 3 rows and across images' tails, groups of 4 and 8 channels, dilation,
    # asymmetric padding, 12-row blocks, widths 8 to 17
    (2, 8, 6, 8, 16, 3, 3, 1, 1, 1, 1),
    (1, 8, 15, 21, 16, 3, 3, 2, 1, 1, 1),
    (1, 12, 11, 17, 12, 3, 3, 3, (1, 2, 0, 1), 1, 1),
    (1, 16, 9, 18, 24, 3, 3, 1, 1, 1, 4),
    (2, 16, 10, 13, 32, 3, 3, 2, 2, 2, 2),
    (1, 4, 9, 9, 20, 5, 5, 1, (0, 2, 1, 0), (1, 2), 1),
    # stride 1, 16-pixel tiles read straight from the channel-quad image (runs over 1 and 2 rows;
    # 3 rows and tails through panels), 16- and 12-row blocks, dilation, asymmetric padding
    (1, 8, 7, 40, 16, 3, 3, 1, 1, 1, 1),
    (2, 24, 6, 23, 12, 3, 3, 1, (2, 1, 0, 1), (2, 1), 1),
    # few tiles, 3 blocks of 16 channels (the last of 8): jobs take parts of the blocks at 2, 3 threads
    (1, 8, 6, 20, 40, 3, 3, 1, 1, 1, 1),
    # stride 1, tiles of at most 8 pixels (an image's tail: 1, 2, 5, 8 pixels; or every tile when
    # ow < 5, else flat tiles over 3 or 4 rows: widths 2, 6, 7) and tails of 13 and 15 pixels (over 1 and 2 rows); 16- and 12-row
    # blocks, 3 blocks split at 2 and 3 threads, dilation, asymmetric padding, groups of 4
    # channels, several images
    (2, 4, 6, 11, 40, 3, 3, 1, 1, 1, 1),
    (1, 4, 9, 13, 12, 3, 3, 1, 1, 1, 1),
    (1, 4, 5, 8, 12, 3, 3, 1, 1, 1, 1),
    (1, 12, 9, 9, 20, 3, 3, 1, 2, 2, 1),
    (2, 8, 7, 7, 16, 3, 3, 1, 1, 1, 1),
    (1, 8, 5, 3, 24, 3, 3, 1, (1, 0, 2, 1), 1, 1),
    (1, 8, 6, 6, 8, 3, 3, 1, 1, 1, 2),
    (1, 8, 5, 9, 12, 3, 3, 1, 1, 1, 1),
    (2, 8, 7, 9, 24, 3, 3, 1, 1, 1, 1),
    # stride-1 direct tiles with border rows (output rows whose windows reach into the top or
    # bottom padding run only their kernel rows of input): 1 to 3 border rows at each end
    # (3x3, 5x5, 7x7), rows that are both (5x5 on 3 rows), dilation, stride (2, 1), asymmetric
    # padding, row tails of 4 and 9-15 pixels (transposed / masked), flat tails of 9-15 pixels,
    # 12- and 16-row blocks, groups of 8 channels, several images; pad 3 on a 3x3 kernel (rows of
    # padding only: flat tiles)
    (1, 8, 14, 14, 16, 3, 3, 1, 1, 1, 1),
    (2, 8, 12, 25, 24, 5, 5, 1, 2, 1, 1),
    (1, 12, 10, 18, 12, 7, 7, 1, 3, 1, 1),
    (1, 8, 3, 40, 16, 5, 5, 1, 2, 1, 1),
    (1, 8, 12, 17, 16, 3, 3, 1, 2, 2, 1),
    (1, 8, 13, 20, 16, 3, 3, (2, 1), 1, 1, 1),
    (2, 16, 11, 21, 32, 3, 3, 1, (2, 1, 0, 1), 1, 2),
    (1, 8, 9, 30, 16, 3, 3, 1, (0, 1, 1, 1), 1, 1),
    (1, 8, 6, 20, 16, 3, 3, 1, 3, 1, 1),
    # unpadded 1x1 convs read the input in place (no copy): planes of 289, 99 and 1225 pixels
    # (flat tiles over two rows are one run; the last tiles of the last image, whose SIMD reads
    # would pass the input's end, are built lane by lane), stride 2, several images
    (1, 20, 17, 17, 24, 1, 1, 1, 0, 1, 1),
    (2, 8, 9, 11, 16, 1, 1, 1, 0, 1, 1),
    (1, 12, 35, 35, 12, 1, 1, 1, 0, 1, 1),
    (2, 12, 23, 21, 16, 1, 1, 2, 0, 1, 1),
    # unpadded 1x1 on u8 planes read in place (no padded copy) whose last tile is short (196,
    # 81 and 100 pixels: the SIMD panel builder would read past the plane, the scalar one builds
    # that tile), stride 1 and 2, several images (the last plane ends the input)
    (2, 8, 14, 14, 16, 1, 1, 1, 0, 1, 1),
    (1, 16, 9, 9, 24, 1, 1, 1, 0, 1, 1),
    (2, 12, 19, 19, 16, 1, 1, 2, 0, 1, 1),
    # depthwise 3-row kernels, four output rows sharing their gathered input rows: stride
    # (2, 1) with dilation (1, 2), stride (1, 2) on a 3x2 kernel with a channel multiplier of 2
    (1, 6, 13, 21, 6, 3, 3, (2, 1), 1, (1, 2), 6),
    (2, 4, 11, 19, 8, 3, 2, (1, 2), (1, 0, 1, 1), 1, 4),
    # channel-quad rows of 5 to 7 outputs as flat tiles of 16 pixels (up to 4 runs), batches of
    # them per image instead of one wide image (the 7x7 layer4 of a resnet at 224, its stride-2
    # conv from 14x14); a 4-wide row stays row by row (one wide image at batch 2)
    (3, 8, 5, 5, 16, 3, 3, 1, 1, 1, 1),
    (2, 8, 14, 14, 16, 3, 3, 2, 1, 1, 1),
    (1, 8, 6, 6, 24, 3, 3, 1, 1, 1, 1),
    (2, 12, 7, 4, 16, 3, 3, 1, 1, 1, 1),
    # unpadded uint8 inputs read in place, an image's last tiles (whose 16-lane reads would leave
    # the plane, past the end of the input for the last image) built by the scalar builder: 1x1
    # on 9x9 (5 tiles and 1 pixel), 1x1 stride 2 at batch 2, 3x3 of 3 channels (2 such tiles)
    (1, 16, 9, 9, 16, 1, 1, 1, 0, 1, 1),
    (2, 8, 19, 19, 24, 1, 1, 2, 0, 1, 1),
    (1, 3, 12, 12, 16, 3, 3, 1, 0, 1, 1),
    # depthwise planes narrower than 8 outputs (the fused plane kernel's row stores), batch 3
    (3, 12, 9, 10, 12, 3, 3, 2, 1, 1, 12),
    (2, 5, 4, 3, 5, 3, 3, 1, 1, 1, 5),
]

# int16 tiles (every CPU without AVX512-VNNI, and the scalar path): rows of 5 outputs or more run
# as flat tiles of 16 consecutive pixels across rows (qk__conv_flat16), a row of 4 row by row:
# both sides of that threshold; tiles over 1 to 4 runs (7x7: the resnets' layer4; 14x14, 17x17,
# 8x8), a last tile of 1 pixel, stride 2 and 3 (the AVX2 run builder's scalar twin), dilation,
# asymmetric padding, odd K, groups, several images, unpadded 1x1 (one merged run), and a 1x1 of
# stride (1, 2) on odd rows whose runs start before the image (built lane by lane)
INT16_FLAT_CASES = [
    (1, 6, 4, 4, 14, 3, 3, 1, 1, 1, 1),
    (1, 6, 5, 5, 14, 3, 3, 1, 1, 1, 1),
    (2, 16, 7, 7, 20, 3, 3, 1, 1, 1, 1),
    (1, 8, 14, 14, 12, 3, 3, 2, 1, 1, 1),
    (1, 5, 17, 17, 9, 1, 1, 1, 0, 1, 1),
    (1, 3, 20, 23, 7, 3, 3, 3, 1, 1, 1),
    (1, 4, 12, 11, 6, 3, 3, 1, (2, 0, 1, 3), 2, 1),
    (2, 8, 8, 8, 10, 3, 3, 1, 1, 1, 2),
    (1, 6, 7, 11, 8, 1, 1, (1, 2), 0, 1, 1),
]


SIMD_SCRIPT = r"""
import hashlib, json, sys
sys.path.insert(0, sys.argv[1])
import qkernels, test_conv as T
out = {"isa": qkernels.show_config("dicts")["simd"]["chosen"], "h": T._simd_fingerprint(1)}
print(json.dumps(out))
"""


def _simd_fingerprint(threads):
    import hashlib
    res = []
    rng = np.random.default_rng(321)
    for case in SIMD_CASES + INT16_FLAT_CASES:
        b, ci, h, w, co, kh, kw, s, pad, dil, g = _geom(case)
        for xt, wt, wzp in [(U8, I8, False), (I8, I8, True), (U8, U8, True), (I8, U8, False)]:
            x = rand_q(rng, xt, (b, ci, h, w))
            x[..., 0, :] = np.iinfo(xt).max   # saturating rows and columns
            x[..., :, -1] = np.iinfo(xt).min
            wq = rand_q(rng, wt, (co, ci // g, kh, kw))
            wq[0] = np.iinfo(wt).min
            w_zp = rand_q(rng, wt, (co,)).astype(np.int32) if wzp else \
                np.full(co, 128 if wt == U8 else 0, np.int32)
            x_zp = int(rand_q(rng, xt, ()))
            geo = dict(stride=s, padding=pad, dilation=dil, groups=g)
            res.append(qkernels.conv2d_int32(x, wq, rng.integers(-999, 999, co).astype(np.int32),
                                             x_zero_point=x_zp, w_zero_point=w_zp, threads=threads,
                                             **geo))
            if not wzp and wt == I8:
                res.append(qkernels.qconv2d(x, wq, rng.normal(0, 3, co).astype(np.float32),
                                            x_scale=0.05, x_zero_point=x_zp,
                                            w_scale=rng.uniform(0.001, 0.02, co), out_scale=0.2,
                                            out_zero_point=100, preset="fbgemm" if xt == U8 else
                                            "onnxruntime", threads=threads, **geo))
                res.append(qkernels.qconv2d(x, wq, rng.integers(-999, 999, co).astype(np.int32),
                                            x_scale=0.05, x_zero_point=x_zp, w_scale=0.01,
                                            out_scale=0.7, preset="tflite" if xt == I8 else
                                            "onnxruntime", threads=threads, **geo))
            if wzp:  # requantized output with the activation-sum term (weight zero points)
                res.append(qkernels.qconv2d(x, wq, rng.integers(-999, 999, co).astype(np.int32),
                                            x_scale=0.05, x_zero_point=x_zp, w_scale=0.01,
                                            w_zero_point=w_zp, out_scale=0.7, out_zero_point=3,
                                            preset="onnxruntime", threads=threads, **geo))
    return [hashlib.sha256(np.ascontiguousarray(r).tobytes()).hexdigest() for r in res]


@pytest.mark.parametrize("case", INT16_FLAT_CASES)
def test_conv_int16_flat_tiles_exact(case):
    """The int16 path's flat tiles (and the row tiles beside their threshold) against the int64
    reference, threads 1, 2 and 3 (QKERNELS_SIMD=scalar / avx2: test_conv_simd_equals_scalar)."""
    b, ci, h, w, co, kh, kw, s, pad, dil, g = _geom(case)
    rng = np.random.default_rng(7 + h * w)
    x, wq = rand_q(rng, U8, (b, ci, h, w)), rand_q(rng, I8, (co, ci // g, kh, kw))
    bias = rng.integers(-999, 999, co).astype(np.int32)
    ref = R.conv_acc(x, wq, 77, np.zeros(co, np.int32), s, pad, dil, g, bias)
    for t in (1, 2, 3):
        got = qkernels.conv2d_int32(x, wq, bias, stride=s, padding=pad, dilation=dil, groups=g,
                                    x_zero_point=77, threads=t)
        np.testing.assert_array_equal(got, ref)


def test_conv_threads_1_2_3_same_bits_simd_cases():
    ref = _simd_fingerprint(1)
    assert len(ref) > 60
    for t in (2, 3):
        assert _simd_fingerprint(t) == ref


@pytest.mark.skipif(not qkernels.show_config(mode="dicts")["simd"]["cpu_has_avx2_fma"],
                    reason="this CPU has no AVX2+FMA: only the scalar path exists here")
@pytest.mark.parametrize("simd", ["scalar", "avx2"])
def test_conv_simd_equals_scalar_subprocess(simd):
    """This process (AVX-512 / VNNI conv kernels where the CPU has them, else AVX2) against a
    process forced to the scalar C path, and one forced to the AVX2 int16 kernels: same bits."""
    import json
    import os
    import subprocess
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    helpers = os.path.dirname(here)   # tests/: the helper modules
    pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(qkernels.__file__)))
    env_pp = os.environ.get("PYTHONPATH")
    env = dict(os.environ, QKERNELS_SIMD=simd,
               PYTHONPATH=os.pathsep.join([pkg_root, helpers] + ([env_pp] if env_pp else [])))
    r = subprocess.run([sys.executable, "-c", SIMD_SCRIPT, here], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    other = json.loads(r.stdout.strip().splitlines()[-1])
    if simd == "scalar":
        assert other["isa"] == "scalar"
    assert other["h"] == _simd_fingerprint(2)


def test_thread_pool_concurrent_callers_and_fork():
    """The persistent helper pool: several application threads calling at once (one owns the
    pool, the others start their own helpers), and a forked child (which starts from an empty
    pool), all give the single-threaded bits."""
    import os
    import threading
    rng = np.random.default_rng(5)
    x, wq = rand_q(rng, U8, (2, 16, 12, 12)), rand_q(rng, I8, (24, 16, 3, 3))
    kw_ = dict(x_scale=0.05, x_zero_point=3, w_scale=0.01, out_scale=0.4, preset="fbgemm")
    ref = qkernels.qconv2d(x, wq, padding=1, threads=1, **kw_)
    lin_ref = qkernels.qlinear(x.reshape(-1, 144), wq.reshape(24, -1), threads=1, **kw_)
    bad = []

    def work():
        for _ in range(20):
            if not np.array_equal(qkernels.qconv2d(x, wq, padding=1, threads=2, **kw_), ref):
                bad.append("conv")
            if not np.array_equal(qkernels.qlinear(x.reshape(-1, 144), wq.reshape(24, -1),
                                                   threads=3, **kw_), lin_ref):
                bad.append("linear")

    ts = [threading.Thread(target=work) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert bad == []
    if not hasattr(os, "fork"):
        return
    pid = os.fork()
    if pid == 0:  # child: the pool's threads did not survive the fork
        ok = np.array_equal(qkernels.qconv2d(x, wq, padding=1, threads=2, **kw_), ref)
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
