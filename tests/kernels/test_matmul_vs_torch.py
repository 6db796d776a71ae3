"""qmatmul(preset="torch") == torch.ops.quantized.matmul on the x86 (fbgemm) build, element for
element. PyTorch's kernel is dequantize, float matmul, quantize_per_tensor (qmatmul.cpp without
ruy); with power-of-two input scales every product and partial sum of that float matmul is exact,
so the integer golden equals it bit for bit, whatever the output scale and zero points."""
import numpy as np
import pytest

import qkernels

torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")

pytestmark = pytest.mark.torch


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("shape", [(12, 128, 32, 128), (12, 128, 128, 32), (12, 197, 64, 197),
                                   (2, 3, 9, 5, 7)])
def test_quantized_matmul(dtype, shape):
    *batch, m, k, n = shape
    rng = np.random.default_rng(sum(shape))
    info = np.iinfo(dtype)
    tq = torch.quint8 if dtype == np.uint8 else torch.qint8
    a = rng.integers(info.min, info.max, (*batch, m, k), endpoint=True).astype(dtype)
    b = rng.integers(info.min, info.max, (*batch, k, n), endpoint=True).astype(dtype)
    total = 0
    for sa, sb, so, za, zb, zo in ((2.0 ** -6, 2.0 ** -7, 0.0173 * k, 3, -5, 7),
                                   (2.0 ** -4, 2.0 ** -8, 0.731 * np.sqrt(k), 0, 0, 0),
                                   (2.0 ** -5, 2.0 ** -5, 2.0 ** -1 * k, 100, 27, -100)):
        if dtype == np.uint8:
            za, zb, zo = za + 128, zb + 128, zo + 128
        qa = torch._make_per_tensor_quantized_tensor(torch.from_numpy(a), sa, za)
        qb = torch._make_per_tensor_quantized_tensor(torch.from_numpy(b), sb, zb)
        with torch.no_grad():
            ref = torch.ops.quantized.matmul(qa, qb, float(so), int(zo)).int_repr().numpy()
        assert qa.dtype == tq
        got = qkernels.qmatmul(a, b, a_scale=sa, b_scale=sb, out_scale=so, a_zero_point=za,
                               b_zero_point=zb, out_zero_point=zo, preset="torch")
        np.testing.assert_array_equal(got, ref)
        total += got.size
    assert total > 1000
