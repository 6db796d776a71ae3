"""MinMax and moving-average observers equal PyTorch's, bit for bit, over many batches."""
import numpy as np
import pytest

import qkernels as qk

torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")
from torch.ao.quantization import observer as tob  # noqa: E402

pytestmark = pytest.mark.torch

TORCH = {np.uint8: torch.quint8, np.int8: torch.qint8}


def _batches(rng, shape, n=12):
    return [(rng.standard_normal(shape) * rng.random() * 4 + rng.standard_normal() * 0.5)
            .astype(np.float32) for _ in range(n)]


@pytest.mark.parametrize("dtype,symmetric,reduce_range",
                         [(np.uint8, False, False), (np.uint8, False, True), (np.int8, True, False),
                          (np.int8, False, True), (np.int8, True, True)])
@pytest.mark.parametrize("moving", [False, True])
def test_per_tensor_equals_torch(rng, dtype, symmetric, reduce_range, moving):
    qs = torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine
    if moving:
        ref = tob.MovingAverageMinMaxObserver(averaging_constant=0.01, dtype=TORCH[dtype],
                                              qscheme=qs, reduce_range=reduce_range)
        ours = qk.MovingAverageMinMaxObserver(averaging_constant=0.01, dtype=dtype,
                                              symmetric=symmetric, reduce_range=reduce_range)
    else:
        ref = tob.MinMaxObserver(dtype=TORCH[dtype], qscheme=qs, reduce_range=reduce_range)
        ours = qk.MinMaxObserver(dtype=dtype, symmetric=symmetric, reduce_range=reduce_range)
    for b in _batches(rng, (16, 50)):
        ref(torch.from_numpy(b))
        ours(b)
        assert ours.min_val[0] == ref.min_val.item() and ours.max_val[0] == ref.max_val.item()
    s, z = ref.calculate_qparams()
    qp = ours.calculate_qparams()
    assert qp.scale == np.float32(s.item()) and int(qp.zero_point) == int(z.item())


@pytest.mark.parametrize("moving", [False, True])
@pytest.mark.parametrize("symmetric", [False, True])
def test_per_channel_equals_torch(rng, moving, symmetric):
    qs = torch.per_channel_symmetric if symmetric else torch.per_channel_affine
    cls_ref = tob.MovingAveragePerChannelMinMaxObserver if moving else tob.PerChannelMinMaxObserver
    cls = qk.MovingAverageMinMaxObserver if moving else qk.MinMaxObserver
    ref = cls_ref(ch_axis=1, dtype=torch.qint8, qscheme=qs)
    ours = cls(axis=1, dtype=np.int8, symmetric=symmetric)
    for b in _batches(rng, (4, 24, 9)):
        ref(torch.from_numpy(b))
        ours(b)
    np.testing.assert_array_equal(ours.min_val, ref.min_val.numpy())
    np.testing.assert_array_equal(ours.max_val, ref.max_val.numpy())
    s, z = ref.calculate_qparams()
    qp = ours.calculate_qparams()
    np.testing.assert_array_equal(qp.scale, s.numpy().astype(np.float32))
    np.testing.assert_array_equal(qp.zero_point, z.numpy())


@pytest.mark.parametrize("dtype,symmetric,reduce_range,bits",
                         [(np.uint8, False, False, None), (np.uint8, False, True, None),
                          (np.int8, True, False, None), (np.int8, False, False, 4),
                          (np.uint8, False, False, 6)])
def test_torch_histogram_observer_equals_torch(rng, dtype, symmetric, reduce_range, bits):
    """observer="histogram": PyTorch's HistogramObserver (its L2 range search) behind the
    qkernels interface gives PyTorch's scale and zero point."""
    from qkernels._checks import qrange
    from qkernels.torch.observers import TorchHistogramObserver

    lo, hi = qrange(dtype, bits=bits, reduce_range=reduce_range)
    qs = torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine
    ref = tob.HistogramObserver(dtype=TORCH[dtype], qscheme=qs, quant_min=lo, quant_max=hi)
    ours = TorchHistogramObserver(dtype=dtype, symmetric=symmetric, reduce_range=reduce_range,
                                  bits=bits)
    batches = _batches(rng, (16, 50), n=6)
    for b in batches:
        ref(torch.from_numpy(b))
        ours(b)
    s, z = ref.calculate_qparams()
    qp = ours.calculate_qparams()
    assert qp.scale == np.float32(s.item()) and int(qp.zero_point) == int(z.item())
    mn, mx = ours.range()   # the searched range lies inside the observed one
    assert min(b.min() for b in batches) <= mn[0] < mx[0] <= max(b.max() for b in batches)
    with pytest.raises(ValueError, match="per tensor"):
        TorchHistogramObserver(axis=0)
    with pytest.raises(ValueError, match="dtype"):
        TorchHistogramObserver(dtype=np.int16)
