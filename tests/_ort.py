"""ONNX Runtime sessions of one node, built in the test (the test modules import onnx and
onnxruntime first, with pytest.importorskip): ort_session is the benchmarks' builder
(scripts/benchutil.py), one thread by default; where this CPU's ORT is not exact for uint8 x int8
(ORT_U8S8_SATURATES), the model of what it computes (mlas_u8s8_int32) and the operands it is exact
on (u8s8_safe)."""
import os
import platform
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "scripts"))
from benchutil import cpu_info, ort_session  # noqa: E402,F401


def _u8s8_saturates() -> bool:
    """True where ONNX Runtime's uint8 x int8 GEMM (MLAS) is not exact: an x86-64 CPU without
    AVX512-VNNI or AVX-VNNI. There MLAS multiplies with ``vpmaddubsw``, which adds each pair of
    adjacent products ``a[2i] b[2i] + a[2i+1] b[2i+1]`` (raw uint8 x int8, before the zero points
    are taken out) with int16 saturation (MlasGemmU8S8KernelAvx2 / ...Avx512Core, mlas/lib/
    qgemm_kernel_avx2.cpp); with VNNI (``vpdpbusd``) and on ARM the sums are exact.
    :func:`mlas_u8s8_int32` is that arithmetic, checked against ORT in
    test_matmul_vs_onnxruntime.py."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return False
    flags = set(cpu_info()[1].split())
    return not ({"avx512_vnni", "avx_vnni"} & flags)


#: Whether this CPU's ONNX Runtime saturates uint8 x int8 product pairs (see _u8s8_saturates).
ORT_U8S8_SATURATES = _u8s8_saturates()


def mlas_u8s8_int32(a, b, za, zb):
    """MLAS's int32 result of ``(a - za) @ (b - zb)`` for uint8 ``a`` (m, k) and int8 ``b``
    (k, n) on an x86 CPU without VNNI: the raw products summed in adjacent pairs along k, each
    pair saturated to int16, then the zero-point terms ``- zb sum_k a - za sum_k b + k za zb``
    (exact, as MLAS's row and column sums)."""
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    m, k = a.shape
    if k % 2:   # MLAS pads k with zeros
        a = np.concatenate([a, np.zeros((m, 1), np.int64)], 1)
        b = np.concatenate([b, np.zeros((1, b.shape[1]), np.int64)], 0)
    pairs = a[:, 0::2, None] * b[None, 0::2, :] + a[:, 1::2, None] * b[None, 1::2, :]
    acc = np.clip(pairs, -32768, 32767).sum(1)
    za, zb = int(za), int(zb)
    return acc - zb * a.sum(1)[:, None] - za * b.sum(0)[None, :] + k * za * zb


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
