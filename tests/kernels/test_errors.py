"""Bad input: each a TypeError or ValueError that names the argument; out= untouched on rejection."""
import numpy as np
import pytest

import qkernels as qk

X = np.linspace(-2, 2, 101, dtype=np.float32)


def untouched_out(dtype=np.int8, shape=X.shape):
    return np.full(shape, 77, dtype)


@pytest.mark.parametrize("scale", [0.0, -0.1, np.inf, -np.inf, np.nan, 1e-50, 1e39])
def test_bad_scale(scale):
    out = untouched_out()
    with pytest.raises(ValueError, match="scale"):
        qk.quantize(X, scale, 0, out=out)
    assert np.all(out == 77)
    with pytest.raises(ValueError, match="scale"):
        qk.dequantize(np.int8([1, 2]), scale)
    with pytest.raises(ValueError, match="scale"):
        qk.requantize_float(np.int32([1, 2]), scale)
    with pytest.raises(ValueError, match="scale"):
        qk.fake_quantize(X, scale, 0, -128, 127)


def test_bad_scale_per_channel_names_index():
    with pytest.raises(ValueError, match=r"scale.*index \(2,\)"):
        qk.quantize(np.zeros((2, 4), np.float32), np.float32([1, 1, 0, 1]), axis=1)


def test_nan_names_first_index():
    x = np.zeros((3, 40), np.float32)
    x[1, 17] = np.nan
    x[2, 3] = np.nan
    for flavor in ("torch", "pt2e", "onnx", "tflite", "fbgemm", "fbgemm_scalar"):
        with pytest.raises(ValueError, match=r"NaN at index \(1, 17\)"):
            qk.quantize(x, 0.1, flavor=flavor)
    with pytest.raises(ValueError, match=r"NaN at index \(1, 17\)"):
        qk.fake_quantize(x, 0.1, 0, -128, 127)
    with pytest.raises(ValueError, match=r"NaN at index \(1, 17\)"):
        qk.quantize(x.astype(np.float64), 0.1)


def test_infinities_saturate():
    x = np.float32([np.inf, -np.inf, 3e38, -3e38])
    for flavor in ("torch", "pt2e", "onnx", "tflite", "fbgemm", "fbgemm_scalar"):
        np.testing.assert_array_equal(qk.quantize(x, 0.1, 3, dtype=np.uint8, flavor=flavor),
                                      [255, 0, 255, 0])
        np.testing.assert_array_equal(qk.quantize(x, 0.1, 0, dtype=np.int32, flavor=flavor),
                                      [2**31 - 1, -2**31, 2**31 - 1, -2**31])


@pytest.mark.parametrize("zp", [256, -1, 1000])
def test_zero_point_out_of_range(zp):
    out = untouched_out(np.uint8)
    with pytest.raises(ValueError, match="zero_point"):
        qk.quantize(X, 0.1, zp, dtype=np.uint8, out=out)
    assert np.all(out == 77)
    with pytest.raises(ValueError, match="zero_point"):
        qk.requantize(np.int32([1]), 1 << 30, -1, zp, dtype=np.uint8)


def test_zero_point_outside_custom_range_and_float_zero_point():
    with pytest.raises(ValueError, match="zero_point"):
        qk.quantize(X, 0.1, 9, dtype=np.int8, bits=4)
    with pytest.raises(TypeError, match="zero_point"):
        qk.quantize(X, 0.1, 1.5)
    with pytest.raises(TypeError, match="zero_point"):
        qk.quantize(X, 0.1, np.float64([0.0]))


def test_qrange_errors():
    with pytest.raises(ValueError, match="qmin"):
        qk.quantize(X, 0.1, 0, qmin=5, qmax=4)
    with pytest.raises(ValueError, match="qmax"):
        qk.quantize(X, 0.1, 0, dtype=np.int8, qmin=-10, qmax=200)
    with pytest.raises(ValueError, match="qmin"):
        qk.quantize(X, 0.1, 0, dtype=np.uint8, qmin=-1, qmax=10)
    with pytest.raises(ValueError, match="qmin"):
        qk.fake_quantize(X, 0.1, 0, 10, -10)


@pytest.mark.parametrize("bits", [0, 1, 17, 32])
def test_bits_out_of_range(bits):
    with pytest.raises(ValueError, match="bits"):
        qk.quantize(X, 0.1, 0, dtype=np.int16, bits=bits)
    with pytest.raises(ValueError, match="bits"):
        qk.choose_qparams(-1.0, 1.0, bits=bits, dtype=np.int16)


def test_bits_wider_than_dtype():
    with pytest.raises(ValueError, match="bits"):
        qk.quantize(X, 0.1, 0, dtype=np.int8, bits=9)


@pytest.mark.parametrize("shift", [-32, 31, 100])
def test_requantize_shift_out_of_range(shift):
    out = untouched_out(np.int8, (3,))
    with pytest.raises(ValueError, match="shift"):
        qk.requantize(np.int32([1, 2, 3]), 1 << 30, shift, out=out)
    assert np.all(out == 77)


def test_requantize_shift_range_of_shift_kernel():
    with pytest.raises(ValueError, match="shift"):
        qk.requantize_shift(np.int32([1]), 32)
    with pytest.raises(ValueError, match="shift"):
        qk.requantize_shift(np.int32([1]), -32)


def test_multiplier_out_of_range():
    with pytest.raises(ValueError, match="multiplier"):
        qk.requantize(np.int32([1]), -5, 0)
    with pytest.raises(ValueError, match="multiplier"):
        qk.requantize(np.int32([1]), 1 << 31, 0)


def test_float_array_where_int32_is_needed():
    with pytest.raises(TypeError, match="acc"):
        qk.requantize(np.float64([1.0, 2.0]), 1 << 30, -1)
    with pytest.raises(TypeError, match="acc"):
        qk.requantize_shift(np.float32([1.0]), 2)
    with pytest.raises(TypeError, match="multiplier"):
        qk.requantize(np.int32([1]), np.float64(1 << 30), -1)
    with pytest.raises(TypeError, match="shift"):
        qk.requantize(np.int32([1]), 1 << 30, -1.0)
    with pytest.raises(TypeError, match="q"):
        qk.dequantize(np.float32([1.0]), 0.1)


def test_int64_accumulators_must_fit_int32():
    np.testing.assert_array_equal(qk.requantize_shift(np.int64([8, -8]), 2), [2, -2])
    with pytest.raises(qk.AccumulatorOverflowError, match="acc"):
        qk.requantize_shift(np.int64([1 << 31]), 2)


def test_per_channel_length_mismatch():
    x = np.zeros((4, 5, 6), np.float32)
    with pytest.raises(ValueError, match="scale"):
        qk.quantize(x, np.ones(4, np.float32), 0, axis=1)
    with pytest.raises(ValueError, match="zero_point"):
        qk.quantize(x, np.ones(5, np.float32), np.zeros(4, np.int32), axis=1)
    with pytest.raises(ValueError, match="scale"):
        qk.quantize(x, np.ones(7, np.float32), 0)
    with pytest.raises(ValueError, match="axis"):
        qk.quantize(x, 0.1, 0, axis=3)
    with pytest.raises(ValueError, match="multiplier"):
        qk.requantize(np.zeros((4, 5), np.int32), np.full(4, 1 << 30), -1, axis=1)


def test_bad_dtype_and_choices():
    with pytest.raises(TypeError, match="dtype"):
        qk.quantize(X, 0.1, dtype=np.float32)
    with pytest.raises(TypeError, match="dtype"):
        qk.quantize(X, 0.1, dtype=np.int64)
    with pytest.raises(TypeError, match="x"):
        qk.quantize(np.array(["a"]), 0.1)
    with pytest.raises(ValueError, match="flavor"):
        qk.quantize(X, 0.1, flavor="tensorflow")
    with pytest.raises(ValueError, match="scheme"):
        qk.requantize(np.int32([1]), 1 << 30, -1, scheme="triple")
    with pytest.raises(ValueError, match="rounding"):
        qk.requantize_shift(np.int32([1]), 1, rounding="up")
    with pytest.raises(ValueError, match="power_of_two"):
        qk.choose_qparams(-1.0, 1.0, power_of_two="floor")


def test_bad_out():
    with pytest.raises(TypeError, match="out"):
        qk.quantize(X, 0.1, out=np.zeros(X.shape, np.uint8))
    with pytest.raises(ValueError, match="out"):
        qk.quantize(X, 0.1, out=np.zeros(5, np.int8))
    with pytest.raises(TypeError, match="out"):
        qk.quantize(X, 0.1, out=[0] * X.size)


def test_quantize_multiplier_bad_values():
    for m in (-0.5, np.nan, np.inf):
        with pytest.raises(ValueError, match="m"):
            qk.quantize_multiplier(m)
    with pytest.raises(ValueError, match="shift"):
        qk.quantize_multiplier(2.0 ** 31)


def test_choose_qparams_bad_values():
    with pytest.raises(ValueError, match="min_val"):
        qk.choose_qparams(np.nan, 1.0)
    with pytest.raises(ValueError, match="min_val"):
        qk.choose_qparams(2.0, 1.0)
    with pytest.raises(ValueError, match="same shape"):
        qk.choose_qparams(np.zeros(3), np.ones(4))


def test_raw_ufunc_reports_through_errstate():
    """The raw ufuncs flag NaN and bad parameters as 'invalid', per np.errstate."""
    x = np.float32([1.0, np.nan])
    with np.errstate(invalid="raise"):
        with pytest.raises(FloatingPointError):
            qk.ufuncs.quantize_pt2e_s8(x, np.float32(0.1), 0, -128, 127)
        with pytest.raises(FloatingPointError):
            qk.ufuncs.quantize_pt2e_s8(np.float32([1.0]), np.float32(-1.0), 0, -128, 127)
        with pytest.raises(FloatingPointError):
            qk.ufuncs.requantize_double_s8(np.int32([1]), 1 << 30, 40, 0, -128, 127)
    with pytest.warns(RuntimeWarning, match="invalid"):
        qk.ufuncs.quantize_pt2e_s8(x, np.float32(0.1), 0, -128, 127)
    # saturating products do not raise spurious overflow warnings
    with np.errstate(all="raise"):
        qk.ufuncs.quantize_pt2e_s8(np.float32([3e38]), np.float32(1e-3), 0, -128, 127)
