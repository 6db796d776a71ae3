"""quantize(flavor="onnx") and dequantize against ONNX Runtime QuantizeLinear/DequantizeLinear."""
import numpy as np
import pytest

import qkernels as qk
from _util import same_bits, value_set

onnx = pytest.importorskip("onnx", reason="onnx is a test requirement (requirements-dev.txt)")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is a test requirement")
from onnx import TensorProto, helper  # noqa: E402

pytestmark = pytest.mark.onnx

ONNX_TYPES = {np.uint8: TensorProto.UINT8, np.int8: TensorProto.INT8,
              np.uint16: TensorProto.UINT16, np.int16: TensorProto.INT16}


def _session(op, data_type, axis=None):
    """A one-node model: QuantizeLinear(x, s, z) or DequantizeLinear(q, s, z), opset 21."""
    zp_type = data_type if op == "DequantizeLinear" else None
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT if op == "QuantizeLinear" else data_type, None)
    s = helper.make_tensor_value_info("s", TensorProto.FLOAT, None)
    z = helper.make_tensor_value_info("z", zp_type or data_type, None)
    y = helper.make_tensor_value_info("y", data_type if op == "QuantizeLinear" else TensorProto.FLOAT, None)
    kw = {} if axis is None else {"axis": axis}
    graph = helper.make_graph([helper.make_node(op, ["x", "s", "z"], ["y"], **kw)], "g", [x, s, z], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("scale", [0.00214854861, 0.1, 0.0173, 1 / 3, 5.0])
@pytest.mark.parametrize("dtype,zp", [(np.uint8, 0), (np.uint8, 128), (np.int8, 0), (np.int8, -3),
                                      (np.uint16, 1000), (np.int16, -7)])
def test_quantize_dequantize_per_tensor_equal_onnxruntime(rng, scale, dtype, zp):
    s = np.float32(scale)
    x = value_set(rng, 100_000, s)  # includes +-inf and huge values: ORT saturates them
    q_ref = _session("QuantizeLinear", ONNX_TYPES[dtype]).run(
        None, {"x": x, "s": np.array(s), "z": np.array(zp, dtype)})[0]
    q = qk.quantize(x, s, zp, dtype=dtype, flavor="onnx")
    np.testing.assert_array_equal(q, q_ref)
    d_ref = _session("DequantizeLinear", ONNX_TYPES[dtype]).run(
        None, {"x": q_ref, "s": np.array(s), "z": np.array(zp, dtype)})[0]
    assert same_bits(qk.dequantize(q_ref, s, zp), d_ref)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("axis", [0, 1, 3])
def test_quantize_dequantize_per_channel_equal_onnxruntime(rng, dtype, axis):
    shape = (3, 16, 7, 300)
    x = np.resize(value_set(rng, 100_000, 0.02), shape).astype(np.float32)
    C = shape[axis]
    scales = (rng.random(C) * 0.05 + 1e-3).astype(np.float32)
    info = np.iinfo(dtype)
    zps = rng.integers(int(info.min), int(info.max) + 1, C).astype(dtype)
    q_ref = _session("QuantizeLinear", ONNX_TYPES[dtype], axis=axis).run(
        None, {"x": x, "s": scales, "z": zps})[0]
    np.testing.assert_array_equal(qk.quantize(x, scales, zps.astype(np.int32), dtype=dtype,
                                              axis=axis, flavor="onnx"), q_ref)
    d_ref = _session("DequantizeLinear", ONNX_TYPES[dtype], axis=axis).run(
        None, {"x": q_ref, "s": scales, "z": zps})[0]
    assert same_bits(qk.dequantize(q_ref, scales, zps.astype(np.int32), axis=axis), d_ref)
