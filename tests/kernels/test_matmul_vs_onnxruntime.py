"""qmatmul(preset="onnxruntime") == ONNX Runtime QLinearMatMul with both operands as graph inputs
(activations: Q K^T and P V shapes, batched, uint8 and int8, zero points anywhere in the types),
every output element."""
import numpy as np
import pytest

import qkernels

onnx = pytest.importorskip("onnx", reason="onnx is a test requirement (requirements-dev.txt)")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is a test requirement (requirements-dev.txt)")
from onnx import helper  # noqa: E402
from _ort import ORT_U8S8_SATURATES, mlas_u8s8_int32, ort_session, u8s8_safe  # noqa: E402

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
    # uint8 x int8: a in [0, 127] where this CPU's ORT saturates its product pairs (tests/_ort.py;
    # what ORT gives on the full range there: test_ort_u8s8_pair_saturation)
    a, b = u8s8_safe(rng, at, (h, m, k), bt), _q(rng, bt, (h, k, n))
    sa = np.float32(rng.uniform(0.005, 0.1))
    sb = np.float32(rng.uniform(0.005, 0.1))
    so = np.float32(rng.uniform(0.05, 0.5) * np.sqrt(k))
    za, zb, zo = u8s8_safe(rng, at, (), bt), _q(rng, bt, ()), _q(rng, at, ())
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


@pytest.mark.parametrize("m,k,n", [(34, 191, 36), (1, 38, 27), (17, 256, 16), (7, 1, 5)])
def test_ort_u8s8_pair_saturation(m, k, n):
    """What this CPU's ONNX Runtime computes for uint8 x int8 on the full ranges (MatMulInteger,
    the int32 sums of QLinearMatMul / QLinearConv): on x86 without VNNI (ORT_U8S8_SATURATES) the
    raw products added in adjacent pairs with int16 saturation (tests/_ort.py mlas_u8s8_int32),
    which is why the uint8 x int8 cases above draw the uint8 operand in [0, 127] there; elsewhere
    the exact sums, qkernels' own (matmul_int32). Each machine checks its side."""
    rng = np.random.default_rng(m * 7 + k * 3 + n)
    a = _q(rng, np.uint8, (m, k))
    b = _q(rng, np.int8, (k, n))
    a[0, :2], b[:2, 0] = 255, 127          # one pair that saturates (2 * 255 * 127 > 2^15)
    za, zb = _q(rng, np.uint8, ()), _q(rng, np.int8, ())
    node = helper.make_node("MatMulInteger", ["a", "b", "za", "zb"], ["y"])
    ref = ort_session(node, [("a", a), ("b", b)], np.int32, [("za", za), ("zb", zb)]).run(
        None, {"a": a, "b": b})[0]
    exact = qkernels.matmul_int32(a, b, a_zero_point=int(za), b_zero_point=int(zb))
    np.testing.assert_array_equal(exact, (a.astype(np.int64) - int(za)) @ (b.astype(np.int64) - int(zb)))
    if ORT_U8S8_SATURATES:
        np.testing.assert_array_equal(ref, mlas_u8s8_int32(a, b, za, zb))
        if k >= 2:
            assert ref[0, 0] != exact[0, 0]
    else:
        np.testing.assert_array_equal(ref, exact)
