"""quantize / dequantize / fake_quantize / choose_qparams against PyTorch itself, bit for bit."""
import warnings

import numpy as np
import pytest

import qkernels as qk
from _util import same_bits, value_set

torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")
pytestmark = [pytest.mark.torch,
              pytest.mark.filterwarnings("ignore:.*quantized tensor creation.*:UserWarning")]

SCALES = [0.00214854861, 0.1, 0.0173, 1 / 3, 7.5, 1e-4]
TORCH_TYPES = {np.uint8: torch.quint8, np.int8: torch.qint8, np.int32: torch.qint32}


def _finite_range(x, scale, limit=2.0 ** 40):
    """PyTorch's scalar quantize_val casts x/scale to int64 before clamping: beyond int64 (or
    inf) that cast is undefined behaviour in C++ (x86 gives INT64_MIN, so +inf -> qmin). Those
    inputs are compared against the SPEC instead, in test_saturation."""
    return x[np.isfinite(x) & (np.abs(x.astype(np.float64) / scale) < limit)]


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("dtype,zps", [(np.uint8, [0, 128, 255]), (np.int8, [-128, 0, 5]),
                                       (np.int32, [0, 7])])
def test_quantize_per_tensor_equals_torch(rng, scale, dtype, zps):
    s = np.float32(scale)
    x = value_set(rng, 100_000, s)
    if dtype == np.int32:
        x = _finite_range(x, s)
    for zp in zps:
        ref = torch.quantize_per_tensor(torch.from_numpy(x), float(s), zp, TORCH_TYPES[dtype])
        q = qk.quantize(x, s, zp, dtype=dtype)
        assert q.dtype == dtype
        np.testing.assert_array_equal(q, ref.int_repr().numpy())
        assert same_bits(qk.dequantize(q, s, zp), ref.dequantize().numpy())
        # a strided view takes the gather/scatter path of the ufunc loop
        ref2 = torch.quantize_per_tensor(torch.from_numpy(x[1::3].copy()), float(s), zp,
                                         TORCH_TYPES[dtype])
        np.testing.assert_array_equal(qk.quantize(x[1::3], s, zp, dtype=dtype),
                                      ref2.int_repr().numpy())


def test_fbgemm_comment_case():
    """FBGEMM's own example: reciprocal gives 128 where division gives 127 (SPEC section 1)."""
    x = np.array([0.273939937], np.float32)
    s = np.float32(0.00214854861)
    ref = torch.quantize_per_tensor(torch.from_numpy(x), float(s), 0, torch.quint8)
    assert int(ref.int_repr()[0]) == 128
    assert qk.quantize(x, s, 0, dtype=np.uint8)[0] == 128
    assert qk.quantize(x, s, 0, dtype=np.uint8, flavor="onnx")[0] == 127


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int32])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_quantize_per_channel_equals_torch(rng, dtype, axis):
    shape = [6, 40, 417]
    n = 100_000
    x = value_set(rng, n, 0.05)[: 6 * 40 * 417 if n >= 6 * 40 * 417 else n]
    x = _finite_range(np.resize(x, 6 * 40 * 417), 1e-3).astype(np.float32)
    x = np.resize(x, shape).astype(np.float32)
    C = shape[axis]
    scales = (rng.random(C) * 0.1 + 1e-3).astype(np.float32)
    info = np.iinfo(dtype)
    lo, hi = (max(int(info.min), -1000), min(int(info.max), 1000))
    zps = rng.integers(lo, hi, C)
    ref = torch.quantize_per_channel(torch.from_numpy(x), torch.from_numpy(scales.astype(np.float64)),
                                     torch.from_numpy(zps), axis, TORCH_TYPES[dtype])
    q = qk.quantize(x, scales, zps, dtype=dtype, axis=axis)
    np.testing.assert_array_equal(q, ref.int_repr().numpy())
    assert same_bits(qk.dequantize(q, scales, zps, axis=axis), ref.dequantize().numpy())


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("qmin,qmax,zp", [(0, 255, 128), (-128, 127, 3), (0, 15, 8), (-8, 7, 0),
                                          (-127, 127, 0)])
def test_fake_quantize_per_tensor_equals_torch(rng, scale, qmin, qmax, zp):
    s = np.float32(scale)
    x = _finite_range(value_set(rng, 100_000, s), s)
    ref = torch.fake_quantize_per_tensor_affine(torch.from_numpy(x), float(s), zp, qmin, qmax)
    assert same_bits(qk.fake_quantize(x, s, zp, qmin, qmax), ref.numpy())


@pytest.mark.parametrize("qmin,qmax", [(0, 255), (-128, 127), (0, 15)])
def test_fake_quantize_per_channel_equals_torch(rng, qmin, qmax):
    C = 24
    x = _finite_range(value_set(rng, 100_000, 0.02), 1e-3)
    x = np.resize(x, (C, x.size // C)).astype(np.float32)
    scales = (rng.random(C) * 0.05 + 1e-3).astype(np.float32)
    zps = rng.integers(qmin, qmax + 1, C).astype(np.int32)
    ref = torch.fake_quantize_per_channel_affine(torch.from_numpy(x), torch.from_numpy(scales),
                                                 torch.from_numpy(zps), 0, qmin, qmax)
    assert same_bits(qk.fake_quantize(x, scales, zps, qmin, qmax, axis=0), ref.numpy())


def _observer_cases():
    for dtype in (np.uint8, np.int8):
        for symmetric in (False, True):
            for reduce_range in (False, True):
                if symmetric and reduce_range and dtype == np.uint8:
                    continue  # PyTorch refuses this combination (NotImplementedError)
                yield dtype, symmetric, reduce_range


@pytest.mark.parametrize("dtype,symmetric,reduce_range", list(_observer_cases()))
def test_choose_qparams_equals_minmax_observer(rng, dtype, symmetric, reduce_range):
    from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

    tdt = TORCH_TYPES[dtype]
    for trial in range(200):
        x = (rng.standard_normal(64) * rng.random() * 10 + rng.standard_normal() * 3)
        if trial % 10 == 0:
            x = np.abs(x)  # all-positive data: min_neg = 0
        if trial % 17 == 0:
            x = np.full(8, x[0])  # constant data: the eps floor
        x = torch.from_numpy(x.astype(np.float32))
        ob = MinMaxObserver(dtype=tdt, reduce_range=reduce_range,
                            qscheme=torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine)
        ob(x)
        s, z = ob.calculate_qparams()
        qp = qk.choose_qparams(float(ob.min_val), float(ob.max_val), dtype=dtype,
                               symmetric=symmetric, reduce_range=reduce_range)
        assert np.float32(s.item()) == qp.scale, (trial, s.item(), qp.scale)
        assert int(z.item()) == int(qp.zero_point)
    # per channel
    xs = torch.from_numpy((rng.standard_normal((32, 50)) * rng.random((32, 1)) * 5).astype(np.float32))
    ob = PerChannelMinMaxObserver(ch_axis=0, dtype=tdt, reduce_range=reduce_range,
                                  qscheme=torch.per_channel_symmetric if symmetric else torch.per_channel_affine)
    ob(xs)
    s, z = ob.calculate_qparams()
    qp = qk.choose_qparams(ob.min_val.numpy(), ob.max_val.numpy(), dtype=dtype,
                           symmetric=symmetric, reduce_range=reduce_range)
    np.testing.assert_array_equal(qp.scale, s.numpy().astype(np.float32))
    np.testing.assert_array_equal(qp.zero_point, z.numpy())


def test_power_of_two_matches_torch_force_scale_power_of_two(rng):
    """PyTorch's FixedQParams/`_calculate_qparams` has no pow2 switch in the MinMax observer, but
    its fake-quant with a pow2 scale must equal ours bit for bit; the exponent is checked too."""
    x = rng.standard_normal(10_000).astype(np.float32) * 3
    qp = qk.choose_qparams(x.min(), x.max(), symmetric=True, power_of_two="ceil")
    e = int(qp.exponent)
    assert qp.scale == np.float32(2.0 ** e) and np.abs(x).max() <= 127 * 2.0 ** e < 2 * np.abs(x).max()
    ref = torch.fake_quantize_per_tensor_affine(torch.from_numpy(x), float(qp.scale), 0, -128, 127)
    assert same_bits(qk.fake_quantize(x, qp.scale, 0, -128, 127), ref.numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert qp.hardware_op() == f"x >> {-e}"
