"""qmatmul(preset="onnxruntime") == ONNX Runtime QLinearMatMul with both operands as graph inputs
(activations: Q K^T and P V shapes, batched, uint8 and int8, zero points anywhere in the types),
every output element."""
import numpy as np
import pytest

import qkernels

onnx = pytest.importorskip("onnx", reason="onnx is a test requirement (requirements-dev.txt)")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is a test requirement (requirements-dev.txt)")
from onnx import helper  # noqa: E402
from _ort import ort_session  # noqa: E402

pytestmark = pytest.mark.onnx


def _session(a, b, inits, ydt):
    node = helper.make_node("QLinearMatMul", ["a", "sa", "za", "b", "sb", "zb", "so", "zo"], ["y"])
    return ort_session(node, [("a", a), ("b", b)], ydt, inits)


def _q(rng, dtype, shape):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)


# (heads, m, k, n): MiniLM Q K^T / P V, ViT-B, odd sizes
SHAPES = [(12, 128, 32, 128), (12, 128, 128, 32), (12, 197, 64, 197), (3, 13, 5, 17), (2, 7, 1, 9)]


# ONNX Runtime's CPU QLinearMatMul has no int8 x uint8 kernel (the fourth pair qkernels also runs)
@pytest.mark.parametrize("at,bt", [(np.uint8, np.uint8), (np.int8, np.int8), (np.uint8, np.int8)])
@pytest.mark.parametrize("shape", SHAPES)
def test_qlinearmatmul(at, bt, shape):
    h, m, k, n = shape
    rng = np.random.default_rng(h * 1000 + m + k + n)
    a, b = _q(rng, at, (h, m, k)), _q(rng, bt, (h, k, n))
    sa = np.float32(rng.uniform(0.005, 0.1))
    sb = np.float32(rng.uniform(0.005, 0.1))
    so = np.float32(rng.uniform(0.05, 0.5) * np.sqrt(k))
    za, zb, zo = _q(rng, at, ()), _q(rng, bt, ()), _q(rng, at, ())
    s = _session(a, b, [("sa", sa), ("za", za), ("sb", sb), ("zb", zb), ("so", so), ("zo", zo)], at)
    ref = s.run(None, {"a": a, "b": b})[0]
    got = qkernels.qmatmul(a, b, a_scale=sa, b_scale=sb, out_scale=so, a_zero_point=int(za),
                           b_zero_point=int(zb), out_zero_point=int(zo), preset="onnxruntime")
    np.testing.assert_array_equal(got, ref)
    # the same product with b given transposed (as K for Q K^T)
    got_t = qkernels.qmatmul(a, np.ascontiguousarray(np.swapaxes(b, 1, 2)), transpose_b=True,
                             a_scale=sa, b_scale=sb, out_scale=so, a_zero_point=int(za),
                             b_zero_point=int(zb), out_zero_point=int(zo))
    np.testing.assert_array_equal(got_t, ref)
