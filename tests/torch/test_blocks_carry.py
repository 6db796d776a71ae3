"""blocks.Carry, the integer tensors handed from block to block (qkernels/torch/blocks.py):
the producer's integers come back only for the very tensor it returned, unmodified, with the
same quantization; anything else is quantized again, and quantize(dequantize(q)) == q where the
parameters match (per tensor and with per-channel power-of-two factors, int8 / uint8 / int32)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")
from qkernels.torch import blocks as B  # noqa: E402

RNG = np.random.default_rng(5)
METAS = [B.ActQ(0.0173, -3, np.dtype(np.int8)),
         B.ActQ(0.0412, 121, np.dtype(np.uint8),
                np.exp2(RNG.integers(0, 4, 24)).astype(np.float32)),
         B.ActQ(2.0 ** -20, 0, np.dtype(np.int32))]


def _q(m: B.ActQ) -> np.ndarray:
    info = np.iinfo(m.dtype)
    lo, hi = (info.min, info.max) if m.dtype != np.int32 else (-2 ** 23, 2 ** 23)
    q = RNG.integers(lo, hi, (3, 5, 24), endpoint=True).astype(m.dtype)
    q[0, 0, :2] = [info.min if m.dtype != np.int32 else lo, hi]
    return q


@pytest.mark.parametrize("m", METAS, ids=["int8", "uint8-factors", "int32"])
def test_carry_returns_the_producers_integers_and_they_are_lossless(m):
    c = B.Carry()
    q = _q(m)
    y = c.dequant(q, m)
    assert torch.equal(y, B.dequant(q, m))
    assert c.quant(y, m) is q
    # the same values in another tensor are quantized again: the same integers
    other = y.clone()
    got = c.quant(other, m)
    assert got is not q and got.dtype == q.dtype and np.array_equal(got, q)


def test_carry_requantizes_a_modified_tensor_or_other_parameters():
    m = METAS[0]
    c = B.Carry()
    q = _q(m)
    y = c.dequant(q, m)
    m2 = B.ActQ(m.scale * 2, m.zero_point, m.dtype)
    assert np.array_equal(c.quant(y, m2), B.quant(y, m2))
    assert c.quant(y, B.ActQ(m.scale, m.zero_point, m.dtype)) is q   # equal parameters
    y[0, 0, 0] += 1.0            # in place: the integers behind it no longer hold
    got = c.quant(y, m)
    assert got is not q and np.array_equal(got, B.quant(y, m))
    assert not np.array_equal(got, q)


def test_carry_forgets_freed_tensors():
    m = METAS[0]
    c = B.Carry()
    for _ in range(50):
        c.dequant(_q(m), m)
    y = c.dequant(_q(m), m)
    assert len(c._by_id) == 1 and c.quant(y, m) is c._by_id[id(y)][3]
