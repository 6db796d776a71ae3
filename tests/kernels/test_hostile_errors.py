"""Unclear errors of the Python API (issue 11), one test a case: each is now the right result or
an exception that names the argument."""
import numpy as np
import pytest

import qkernels as qk

X = np.ones((1, 1, 3, 3), np.uint8)
W = np.ones((1, 1, 1, 1), np.int8)


@pytest.mark.parametrize("kw, match", [
    (dict(stride=2 ** 63), r"stride=\(9223372036854775808, 9223372036854775808\) is too large"),
    (dict(stride=(1, 2 ** 64)), r"stride=\(1, 18446744073709551616\) is too large"),
    (dict(padding=2 ** 63), r"padding=\(9223372036854775808, .*\) is too large"),
    (dict(padding=(2 ** 62, 0, 2 ** 62, 0)), r"padding=.* is too large: the padded height 3 \+ "),
    (dict(dilation=2 ** 63), r"dilation=.* is too large"),
    (dict(padding=2 ** 40), r"the output would have shape \(1, 1, 2199023255555, 2199023255555\)"),
])
@pytest.mark.parametrize("fn", ["conv2d_int32", "qconv2d"])
def test_huge_geometry_names_the_argument(kw, match, fn):
    args = dict(x_scale=1.0, w_scale=1.0, out_scale=1.0, x_zero_point=0) if fn == "qconv2d" else {}
    x = X.view(np.int8) if fn == "qconv2d" else X
    with pytest.raises(ValueError, match=match):
        getattr(qk, fn)(x, W, **kw, **args)


def test_huge_dilation_within_limits_is_computed():
    """dilation 2**62 and padding 2**61: a window of two taps 2**62 rows apart, both padding."""
    x = np.full((1, 2, 1, 1), 9, np.uint8)
    w = np.ones((1, 2, 2, 1), np.int8)
    y = qk.conv2d_int32(x, w, np.int32([7]), padding=(2 ** 61, 0, 2 ** 61, 0), dilation=(2 ** 62, 1))
    assert y.tolist() == [[[[7]]]]


@pytest.mark.parametrize("preset, rounding, match", [
    ("tflite", "up", r"rounding= applies to shift requantization \(pow2\); preset 'tflite'"),
    ("tflite", "floor", r"rounding= applies to shift requantization \(pow2\); preset 'tflite'"),
    ("tflite", "half_up", r"rounding= applies to shift requantization \(pow2\); preset 'tflite'"),
    ("onnxruntime", "half_even", r"rounding= applies to shift requantization \(pow2\); preset "
                                 r"'onnxruntime'"),
    ("pow2", "nearest", r"rounding must be one of"),
])
def test_rounding_outside_pow2_refused(preset, rounding, match):
    x = np.int8([[1, 2]])
    w = np.int8([[1, 1]])
    with pytest.raises(ValueError, match=match):
        qk.qlinear(x, w, x_scale=1.0, w_scale=1.0, out_scale=1.0, preset=preset, rounding=rounding)
    with pytest.raises(ValueError, match=match):
        qk.qconv2d(x.reshape(1, 2, 1, 1), w.reshape(1, 2, 1, 1), x_scale=1.0, w_scale=1.0,
                   out_scale=1.0, preset=preset, rounding=rounding)


def test_rounding_with_explicit_multiplier_refused():
    with pytest.raises(ValueError, match=r"explicit multiplier/shift requantize in fixed point \(scheme=\)"):
        qk.qlinear(np.int8([[1]]), np.int8([[1]]), multiplier=1 << 30, shift=0, rounding="floor")


def test_pow2_rounding_is_used():
    x = np.int8([[3]])
    w = np.int8([[1]])
    kw = dict(x_scale=1.0, w_scale=1.0, out_scale=2.0, preset="pow2")
    assert qk.qlinear(x, w, **kw, rounding="floor").tolist() == [[1]]
    assert qk.qlinear(x, w, **kw, rounding="half_up").tolist() == [[2]]


def _be(a):
    a = np.asarray(a)
    return a.astype(a.dtype.newbyteorder(">"))


BIG_ENDIAN = {
    "quantize": lambda b: qk.quantize(b(np.float32([0.5, -1.25, 3.0])), 0.25, 3),
    "quantize_f64": lambda b: qk.quantize(b(np.float64([0.5, -1.25])), 0.25, 3, flavor="onnx"),
    "dequantize": lambda b: qk.dequantize(b(np.int16([5, -3, 9])), 0.5, 1),
    "fake_quantize": lambda b: qk.fake_quantize(b(np.float32([0.3, -2])), 0.25, 0, -128, 127),
    "requantize": lambda b: qk.requantize(b(np.int32([1000, -77])), b(np.int32(1 << 30)), -5, 1),
    "requantize_float": lambda b: qk.requantize_float(b(np.int32([1000, -77])), b(np.float32(0.01)), 1),
    "accumulator_to_float": lambda b: qk.accumulator_to_float(b(np.int32([3, -4])), 0.5, 0.25),
    "ptf_quantize": lambda b: qk.ptf_quantize(b(np.float32([[1.0, 2.0]])), 0.1, b(np.int32([0, 1])), 128),
    "ptf_calibrate": lambda b: qk.ptf_calibrate(b(np.float32([[1.0, -2.0, 0.25]]))).alpha,
    "qlinear": lambda b: qk.qlinear(np.int8([[1, 2]]), np.int8([[1, 1]]), b(np.int32([5])),
                                    x_scale=0.1, w_scale=b(np.float32([0.1])), out_scale=0.1),
    "choose_qparams": lambda b: qk.choose_qparams(b(np.float32([-1.0])), b(np.float32([2.0]))).scale,
    "observer": lambda b: _observed(b(np.float32([-1.0, 3.0]))),
}


def _observed(x):
    o = qk.MinMaxObserver()
    o.update(x)
    return o.calculate_qparams().scale


@pytest.mark.parametrize("name", sorted(BIG_ENDIAN))
def test_big_endian_inputs_are_converted(name):
    fn = BIG_ENDIAN[name]
    want = fn(lambda a: a)
    got = fn(_be)
    assert np.array_equal(np.asarray(got), np.asarray(want))


@pytest.mark.parametrize("amax", [1e-45, 1e-40, 1e-37])
def test_ptf_calibrate_tiny_data_names_x(amax):
    x = np.float32([[amax, -amax / 2, 0.0]])
    with pytest.raises(ValueError, match=r"x: max\|x\| = .* is too small to calibrate"):
        qk.ptf_calibrate(x)


def test_ptf_calibrate_smallest_working_data():
    x = np.float32([[1.2e-35, -1e-36]])
    p = qk.ptf_calibrate(x)
    assert p.scale >= np.finfo(np.float32).tiny
    assert np.isfinite(p.dequantize(p.quantize(x))).all()
