"""ONNX Runtime sessions of one node, built in the test (the test modules import onnx and
onnxruntime first, with pytest.importorskip): ort_session is the benchmarks' builder
(scripts/benchutil.py), one thread by default; where this CPU's ORT is not exact for uint8 x int8
(ORT_U8S8_SATURATES), the model of what it computes (mlas_u8s8_int32) and the operands it is exact
on (u8s8_safe)."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "scripts"))
from benchutil import cpu_info, ort_session  # noqa: E402,F401

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _util import u8s8_pair_saturated_int32, u8s8_pairs_saturate  # noqa: E402


#: Whether this CPU's ONNX Runtime saturates uint8 x int8 product pairs: x86-64 without
#: AVX512-VNNI or AVX-VNNI, where MLAS multiplies with ``vpmaddubsw`` (MlasGemmU8S8KernelAvx2 /
#: ...Avx512Core, mlas/lib/qgemm_kernel_avx2.cpp; tests/_util.py u8s8_pairs_saturate).
ORT_U8S8_SATURATES = u8s8_pairs_saturate({"avx512_vnni", "avx_vnni"})

#: MLAS's int32 result of ``(a - za) @ (b - zb)`` on such a CPU (tests/_util.py), checked
#: against ORT in test_matmul_vs_onnxruntime.py.
mlas_u8s8_int32 = u8s8_pair_saturated_int32


def u8s8_safe(rng, dtype, shape, pair_dtype):
    """Random ``dtype`` values for an operand of ONNX Runtime's QLinearMatMul / QLinearConv
    compared with qkernels' exact arithmetic: the full range, except for the uint8 operand of a
    uint8 x int8 product on a CPU where ORT saturates its product pairs (ORT_U8S8_SATURATES), where
    they are drawn in [0, 127] (ORT's documented remedy, reduce_range: 2 * 127 * 128 < 2^15, so no
    pair can saturate and ORT is exact). What ORT gives on the full range there is pinned by
    test_matmul_vs_onnxruntime.py::test_ort_u8s8_pair_saturation."""
    hi = np.iinfo(dtype).max
    if ORT_U8S8_SATURATES and np.dtype(dtype) == np.uint8 and np.dtype(pair_dtype) == np.int8:
        hi = 127
    return rng.integers(int(np.iinfo(dtype).min), int(hi) + 1, shape).astype(dtype)
