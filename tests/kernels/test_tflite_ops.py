"""qkernels.tflite_ops outside what the LiteRT fixtures cover (tests/torch/test_tflite_vs_tflite.py
compares every op with the interpreter): XNNPACK's scale limits (outside them the delegate leaves
ADD / MUL to TFLite's built-in kernel, the reference arithmetic), and bad layer arguments."""
import numpy as np
import pytest

from qkernels import tflite_ops as T
from qkernels.torch import layers as Ly


def _ab(seed=0, n=4096):
    rng = np.random.default_rng(seed)
    return (rng.integers(-128, 128, n).astype(np.int8), rng.integers(-128, 128, n).astype(np.int8))


def test_xnn_add_outside_xnnpack_scales_is_the_reference():
    a, b = _ab()
    # s1 / s_out = 2^-11 < 2^-10: XNNPACK refuses the op
    assert not T.xnn_add_supported(0.001 / 2048, 0.02, 0.001)
    got = T.xnn_add(a, b, 0.001 / 2048, 3, 0.02, -5, 0.001, 7)
    ref = T.add(a, b, T.add_params(0.001 / 2048, 3, 0.02, -5, 0.001, 7))
    assert np.array_equal(got, ref)
    assert T.xnn_add_supported(0.05, 0.03, 0.07)


def test_xnn_mul_outside_xnnpack_scales_is_the_reference():
    a, b = _ab(1)
    assert not T.xnn_mul_supported(0.001, 0.001, 1.0)        # 1e-6 < 2^-16
    got = T.xnn_mul(a, b, 0.001, 1, 0.001, -2, 1.0, 0)
    assert np.array_equal(got, T.mul(a, b, T.mul_params(0.001, 1, 0.001, -2, 1.0, 0)))


def test_softmax_optimized_rows_sum_to_about_one():
    rng = np.random.default_rng(2)
    x = rng.integers(-128, 128, (64, 10)).astype(np.int8)
    y = T.softmax_optimized(x, 0.1)
    p = (y.astype(np.int64) + 128).sum(axis=1) / 256
    assert y.dtype == np.int8 and np.all(np.abs(p - 1) < 0.05)
    assert np.array_equal(np.argmax(y, axis=1), np.argmax(x, axis=1))


def test_layer_runtime_is_checked():
    m = Ly.QMeta(0.1, 0, np.dtype(np.int8))
    with pytest.raises(ValueError, match="runtime must be one of reference, xnnpack, optimized"):
        Ly.TFLiteMeanLayer("m", ("x",), m, x=m, runtime="fast")
