"""out= that overlaps an input (issue 11): the result is the one of a separate output, as NumPy
ufuncs guarantee, for the layers (qlinear, qconv2d incl. depthwise, linear_int32, conv2d_int32,
ptf_layernorm), every elementwise keyword function and the raw gufunc.

Overlaps are made from one byte buffer: the input at one offset, out at another (in place, one
row or plane before, one row or plane after, and partial byte overlaps across dtypes)."""
import numpy as np
import pytest

import qkernels as qk
from qkernels import ufuncs


def views(nbytes_x, nbytes_out, shift):
    """A byte buffer holding x at offset max(0, -shift) and out at max(0, shift)."""
    size = max(nbytes_x, nbytes_out) + abs(shift) + 64
    buf = np.zeros(size, np.uint8)
    ox, oo = max(0, -shift), max(0, shift)
    return buf, ox, oo


def placed(buf, off, a):
    """a's bytes written into buf at off, returned as a view of buf with a's dtype and shape."""
    nb = a.nbytes
    buf[off:off + nb] = a.reshape(-1).view(np.uint8)
    return buf[off:off + nb].view(a.dtype).reshape(a.shape)


def out_view(buf, off, shape, dtype):
    nb = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return buf[off:off + nb].view(dtype).reshape(shape)


LIN_PRESETS = {
    "fbgemm": dict(x_scale=0.05, x_zero_point=128, w_scale=0.01, out_scale=0.1, out_zero_point=120,
                   preset="fbgemm"),
    "tflite": dict(x_scale=0.05, x_zero_point=-3, w_scale=0.01, out_scale=0.1, out_zero_point=5,
                   preset="tflite"),
}


@pytest.mark.parametrize("preset", sorted(LIN_PRESETS))
@pytest.mark.parametrize("k", [64, 192])
@pytest.mark.parametrize("rows", [0, 1, -1, 3])
@pytest.mark.parametrize("threads", [1, 2])
def test_qlinear_out_overlapping_x(preset, k, rows, threads):
    """K == N so that out has x's shape: in place (rows 0) and shifted by whole rows."""
    rng = np.random.default_rng(k + rows)
    xt = np.uint8 if preset == "fbgemm" else np.int8
    x0 = rng.integers(0, 256, (24, k)).astype(np.uint8).view(xt)
    w = rng.integers(-127, 128, (k, k)).astype(np.int8)
    want = qk.qlinear(x0.copy(), w, **LIN_PRESETS[preset], threads=threads)
    buf, ox, oo = views(x0.nbytes, want.nbytes, rows * k)
    x = placed(buf, ox, x0)
    out = out_view(buf, oo, want.shape, want.dtype)
    got = qk.qlinear(x, w, **LIN_PRESETS[preset], threads=threads, out=out)
    assert got is out
    assert np.array_equal(out, want)


@pytest.mark.parametrize("shift", [0, 4, -4, 8, -12, 160, -320])
def test_linear_int32_out_overlapping_x(shift):
    """int32 out over uint8 x, partial overlaps at byte offsets either way."""
    rng = np.random.default_rng(abs(shift))
    x0 = rng.integers(0, 256, (16, 40)).astype(np.uint8)
    w = rng.integers(-128, 128, (12, 40)).astype(np.int8)
    bias = rng.integers(-1000, 1000, 12).astype(np.int32)
    want = qk.linear_int32(x0, w, bias, x_zero_point=9)
    buf, ox, oo = views(x0.nbytes, want.nbytes, shift)
    x = placed(buf, ox, x0)
    out = out_view(buf, oo, want.shape, np.int32)
    qk.linear_int32(x, w, bias, x_zero_point=9, out=out)
    assert np.array_equal(out, want)


def test_qlinear_out_overlapping_bias():
    """An int8 out laid over the int32 bias: the bias is read before any output is written."""
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, (4, 16)).astype(np.int8)
    w = rng.integers(-127, 128, (16, 16)).astype(np.int8)
    bias = rng.integers(-5000, 5000, 16).astype(np.int32)
    kw = dict(x_scale=0.05, x_zero_point=-3, w_scale=0.01, out_scale=0.1, out_zero_point=5)
    want = qk.qlinear(x, w, bias.copy(), **kw)
    out = bias.view(np.int8).reshape(4, 16)
    qk.qlinear(x, w, bias, **kw, out=out)
    assert np.array_equal(out, want)


CONV = [  # (x shape, w shape, groups)
    ((2, 6, 9, 11), (6, 1, 3, 3), 6),      # depthwise
    ((2, 8, 7, 7), (8, 2, 3, 3), 4),       # grouped
    ((1, 8, 10, 10), (8, 8, 3, 3), 1),     # dense, channel quads (VNNI cq8 layout)
    ((1, 5, 6, 6), (5, 5, 1, 1), 1),       # 1x1
]


@pytest.mark.parametrize("xs, ws, g", CONV, ids=["depthwise", "grouped", "dense", "1x1"])
@pytest.mark.parametrize("planes", [0, 1, -1])
@pytest.mark.parametrize("int32", [False, True])
def test_conv_out_overlapping_x(xs, ws, g, planes, int32):
    """padding 1, stride 1: out has x's shape (out_channels == in_channels); shifted by whole
    planes either way, or in place."""
    rng = np.random.default_rng(sum(xs) + planes)
    x0 = rng.integers(0, 256, xs).astype(np.uint8)
    w = rng.integers(-128, 128, ws).astype(np.int8)
    pad = (ws[2] - 1) // 2
    if int32:
        want = qk.conv2d_int32(x0, w, groups=g, padding=pad, x_zero_point=100)
    else:
        kw = dict(groups=g, padding=pad, x_scale=0.05, x_zero_point=128, w_scale=0.01,
                  out_scale=0.1, out_zero_point=120, preset="fbgemm")
        want = qk.qconv2d(x0, w, **kw)
    buf, ox, oo = views(x0.nbytes, want.nbytes, planes * xs[2] * xs[3] * want.dtype.itemsize)
    x = placed(buf, ox, x0)
    out = out_view(buf, oo, want.shape, want.dtype)
    if int32:
        qk.conv2d_int32(x, w, groups=g, padding=pad, x_zero_point=100, out=out)
    else:
        qk.qconv2d(x, w, **kw, out=out)
    assert np.array_equal(out, want)


# ---- elementwise keyword functions: out laid over the input's bytes ------------------------------
def _elementwise_cases(rng):
    x = (rng.standard_normal(301) * 3).astype(np.float32)
    acc = rng.integers(-2 ** 20, 2 ** 20, 301).astype(np.int32)
    q = rng.integers(0, 256, 301).astype(np.uint8)
    return [
        ("quantize", x, lambda a, out: qk.quantize(a, 0.02, 3, out=out), np.int8),
        ("quantize_u16", x, lambda a, out: qk.quantize(a, 0.02, 3, dtype=np.uint16, out=out), np.uint16),
        ("fake_quantize", x, lambda a, out: qk.fake_quantize(a, 0.02, 3, -128, 127, out=out), np.float32),
        ("dequantize", q, lambda a, out: qk.dequantize(a, 0.5, 7, out=out), np.float32),
        ("requantize", acc, lambda a, out: qk.requantize(a, 1 << 30, -9, 2, out=out), np.int8),
        ("requantize_float", acc, lambda a, out: qk.requantize_float(a, 0.001, 2, out=out), np.int8),
        ("requantize_shift", acc, lambda a, out: qk.requantize_shift(a, 9, 2, dtype=np.int16, out=out), np.int16),
        ("accumulator_to_float", acc, lambda a, out: qk.accumulator_to_float(a, 0.5, 0.25, out=out), np.float32),
    ]


@pytest.mark.parametrize("case", range(8))
@pytest.mark.parametrize("steps", [0, 1, -1, 25, -25])
def test_elementwise_out_overlapping_input(case, steps):
    """out laid over the input's bytes, shifted by whole elements of both dtypes either way."""
    name, a0, fn, odt = _elementwise_cases(np.random.default_rng(case))[case]
    want = fn(a0.copy(), None)
    buf, ox, oo = views(a0.nbytes, want.nbytes, steps * np.lcm(a0.itemsize, np.dtype(odt).itemsize))
    a = placed(buf, ox, a0)
    out = out_view(buf, oo, want.shape, odt)
    got = fn(a, out)
    assert got is out
    assert np.array_equal(out.view(np.uint8), want.view(np.uint8)), name


def test_nan_is_located_when_out_overlaps_x():
    """The NaN check reads x after the kernel refused: an out over x's bytes must not have
    been written back by then (the error names the index, it is not 'could not be located')."""
    x = np.arange(64, dtype=np.float32)
    x[37] = np.nan
    with pytest.raises(ValueError, match=r"NaN at index \(37,\)"):
        qk.quantize(x, 0.5, 0, dtype=np.int32, out=x.view(np.int32))
    with pytest.raises(ValueError, match=r"NaN at index \(37,\)"):
        qk.quantize(x, 0.5, 0, dtype=np.int8, out=x.view(np.int8)[:64])


def test_ptf_out_overlapping_input():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 32)).astype(np.float32)
    p = qk.ptf_calibrate(x)
    q0 = qk.ptf_quantize(x, p.scale, p.alpha, p.zero_point)
    buf = x.copy()
    out = buf.view(np.uint8)[:, :32]
    got = qk.ptf_quantize(buf, p.scale, p.alpha, p.zero_point, out=np.ascontiguousarray(out))
    assert np.array_equal(got, q0)
    ln = qk.prepare_layernorm(p, np.ones(32, np.float32), np.zeros(32, np.float32), out_scale=0.05)
    want = qk.ptf_layernorm(q0, ln)
    for rows in (0, 1, -1):
        bufb, ox, oo = views(q0.nbytes, want.nbytes, rows * 32)
        qa = placed(bufb, ox, q0)
        out = out_view(bufb, oo, want.shape, np.int8)
        qk.ptf_layernorm(qa, ln, out=out)
        assert np.array_equal(out, want), rows


def test_raw_gufunc_linear_int32_overlap_handled_by_numpy():
    rng = np.random.default_rng(9)
    x0 = rng.integers(0, 256, (8, 16)).astype(np.uint8)
    w = rng.integers(-128, 128, (4, 16)).astype(np.int8)
    want = ufuncs.linear_int32(x0, w, np.int32(3), np.zeros(4, np.int32))
    buf = np.zeros(4096, np.uint8)
    x = placed(buf, 0, x0)
    out = out_view(buf, 16, want.shape, np.int32)
    ufuncs.linear_int32(x, w, np.int32(3), np.zeros(4, np.int32), out=out)
    assert np.array_equal(out, want)
