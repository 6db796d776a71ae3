"""onnxruntime preset == ONNX Runtime QLinearMatMul and QLinearConv sessions built in the test:
uint8 and int8 activations, int8 and uint8 weights, per-tensor and per-channel weight scales,
int32 bias (QLinearConv), every output element."""
import numpy as np
import pytest

import qkernels

onnx = pytest.importorskip("onnx", reason="onnx is a test requirement (requirements-dev.txt)")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is a test requirement (requirements-dev.txt)")
from onnx import helper  # noqa: E402
from _ort import ort_session, u8s8_safe  # noqa: E402

pytestmark = pytest.mark.onnx

TYPES = [(np.uint8, np.int8), (np.uint8, np.uint8), (np.int8, np.int8)]


def _session(node, inits, x):
    return ort_session(node, [("x", x)], x.dtype, inits)


def rand_q(rng, dtype, shape):
    info = np.iinfo(dtype)
    return rng.integers(int(info.min), int(info.max) + 1, shape).astype(dtype)


def _wparams(rng, wt, n, per_channel):
    if per_channel:   # per-channel scales and zero points
        ws = rng.uniform(0.001, 0.02, n).astype(np.float32)
        wzp = rand_q(rng, wt, (n,))
    else:
        ws = np.float32(rng.uniform(0.001, 0.02))
        wzp = rand_q(rng, wt, ())
    return ws, wzp


@pytest.mark.parametrize("xt,wt", TYPES)
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (7, 1, 5), (1, 33, 17), (7, 129, 63), (3, 4100, 9),
                                   (197, 384, 40)])
def test_qlinearmatmul(xt, wt, per_channel, m, k, n):
    rng = np.random.default_rng(m * 131 + k * 7 + n + per_channel)
    # uint8 x int8: x in [0, 127] where this CPU's ORT saturates its product pairs (tests/_ort.py)
    x, w = u8s8_safe(rng, xt, (m, k), wt), rand_q(rng, wt, (n, k))
    xs, xzp = np.float32(rng.uniform(0.01, 0.1)), u8s8_safe(rng, xt, (), wt)
    ws, wzp = _wparams(rng, wt, n, per_channel)
    os_, ozp = np.float32(rng.uniform(0.02, 0.2) * np.sqrt(k)), rand_q(rng, xt, ())
    node = helper.make_node("QLinearMatMul", ["x", "xs", "xzp", "w", "ws", "wzp", "os", "ozp"], ["y"])
    s = _session(node, [("xs", xs), ("xzp", xzp), ("w", np.ascontiguousarray(w.T)), ("ws", ws),
                        ("wzp", wzp), ("os", os_), ("ozp", ozp)], x)
    ref = s.run(None, {"x": x})[0]
    got = qkernels.qlinear(x, w, x_scale=xs, x_zero_point=int(xzp), w_scale=ws,
                           w_zero_point=np.asarray(wzp).astype(np.int32), out_scale=os_,
                           out_zero_point=int(ozp), preset="onnxruntime")
    np.testing.assert_array_equal(got, ref)


# (batch, in_c, h, w, out_c, k, stride, padding, dilation, groups)
CONV_SHAPES = [
    (2, 8, 12, 13, 6, 3, 1, 1, 1, 1),
    (1, 6, 10, 10, 9, 5, 2, 2, 1, 1),
    (1, 8, 9, 9, 8, 3, 1, 1, 2, 2),
    (1, 16, 11, 11, 16, 3, 1, 1, 1, 16),
    (1, 3, 20, 20, 8, 7, 2, 3, 1, 1),
    (2, 12, 8, 8, 12, 1, 1, 0, 1, 1),
    (1, 32, 9, 9, 32, 3, 2, 1, 1, 32),
    (1, 64, 7, 7, 20, 3, 1, 1, 1, 1),
    (1, 8, 5, 45, 20, 3, 1, 1, 1, 1),        # output rows of 45: tiles cross rows
    (2, 6, 7, 70, 12, 3, 2, 1, 1, 2),        # stride 2, output width 35
]


@pytest.mark.parametrize("xt,wt", TYPES)
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("shape", CONV_SHAPES)
def test_qlinearconv(xt, wt, per_channel, shape):
    bn, ci, h, wd, co, k, st, p, d, g = shape
    rng = np.random.default_rng(ci * 1009 + co * 17 + k + st + g + per_channel)
    # uint8 x int8: x (and the padding, xzp) in [0, 127] where this CPU's ORT saturates its
    # product pairs (tests/_ort.py)
    x, w = u8s8_safe(rng, xt, (bn, ci, h, wd), wt), rand_q(rng, wt, (co, ci // g, k, k))
    xs, xzp = np.float32(rng.uniform(0.01, 0.1)), u8s8_safe(rng, xt, (), wt)
    ws, wzp = _wparams(rng, wt, co, per_channel)
    os_, ozp = np.float32(rng.uniform(0.02, 0.2) * np.sqrt(ci // g * k * k)), rand_q(rng, xt, ())
    b = rng.integers(-20000, 20000, co).astype(np.int32)
    node = helper.make_node("QLinearConv", ["x", "xs", "xzp", "w", "ws", "wzp", "os", "ozp", "b"],
                            ["y"], strides=[st, st], pads=[p] * 4, dilations=[d, d], group=g,
                            kernel_shape=[k, k])
    s = _session(node, [("xs", xs), ("xzp", xzp), ("w", w), ("ws", ws), ("wzp", wzp), ("os", os_),
                        ("ozp", ozp), ("b", b)], x)
    ref = s.run(None, {"x": x})[0]
    got = qkernels.qconv2d(x, w, b, stride=st, padding=p, dilation=d, groups=g, x_scale=xs,
                           x_zero_point=int(xzp), w_scale=ws,
                           w_zero_point=np.asarray(wzp).astype(np.int32), out_scale=os_,
                           out_zero_point=int(ozp), preset="onnxruntime")
    np.testing.assert_array_equal(got, ref)
