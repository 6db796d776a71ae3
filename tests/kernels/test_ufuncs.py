"""The kernels as real NumPy ufuncs: broadcasting, out=, where=, strides, empty and 0-d arrays,
threads; and the flavours without an installable runtime (tflite) against NumPy references."""
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import qkernels as qk
from _util import same_bits, value_set


def ref_quantize(x, scale, zp, lo, hi, flavor):
    """SPEC section 1 in NumPy (float32 ops for float32 x, double for float64)."""
    ft = x.dtype.type
    s = np.float32(scale)
    inv = np.float32(1) / s
    if flavor == "pt2e":
        t = np.rint(x * ft(inv)) + zp
    elif flavor == "fbgemm_scalar":
        t = np.rint(x * ft(inv) + ft(zp))
    elif flavor == "fbgemm":
        t = np.rint((x.astype(np.float64) * np.float64(inv) + zp).astype(ft)) if ft is np.float32 \
            else np.rint(x * np.float64(inv) + zp)  # exact product + zp, one rounding
    elif flavor == "onnx":
        t = np.rint(x / ft(s)) + zp
    else:  # tflite: RHAZ
        v = (x / ft(s)).astype(np.float64)
        t = np.sign(v) * np.floor(np.abs(v) + 0.5) + zp
    return np.clip(t.astype(np.float64), lo, hi)


@pytest.mark.parametrize("flavor", ["pt2e", "fbgemm", "fbgemm_scalar", "onnx", "tflite"])
@pytest.mark.parametrize("xdtype", [np.float32, np.float64])
@pytest.mark.parametrize("dtype,zp", [(np.uint8, 100), (np.int8, -5), (np.uint16, 30000),
                                      (np.int16, 11), (np.int32, -77)])
def test_flavours_equal_numpy_reference(rng, flavor, xdtype, dtype, zp):
    s = np.float32(0.0173)
    x = value_set(rng, 100_000, s, dtype=xdtype)
    x = x[np.isfinite(x) & (np.abs(x) < 1e15)]
    if flavor == "fbgemm" and xdtype is np.float32:
        x = x[np.abs(x) < 1e6]  # keep the float64 emulation of the fused op exact
    info = np.iinfo(dtype)
    got = qk.quantize(x, s, zp, dtype=dtype, flavor=flavor)
    np.testing.assert_array_equal(got, ref_quantize(x, s, zp, info.min, info.max, flavor).astype(dtype))


def test_tflite_rounds_half_away():
    x = np.float32([0.5, 1.5, 2.5, -0.5, -1.5, -2.5])
    np.testing.assert_array_equal(qk.quantize(x, 1.0, flavor="tflite"), [1, 2, 3, -1, -2, -3])
    np.testing.assert_array_equal(qk.quantize(x, 1.0, flavor="onnx"), [0, 2, 2, -0, -2, -2])


def test_bits_and_narrow_range():
    x = np.linspace(-20, 20, 81, dtype=np.float32)
    q4 = qk.quantize(x, 1.0, dtype=np.int8, bits=4)
    assert q4.min() == -8 and q4.max() == 7
    u4 = qk.quantize(x, 1.0, 8, dtype=np.uint8, bits=4)
    assert u4.min() == 0 and u4.max() == 15
    n8 = qk.quantize(x * 100, 1.0, dtype=np.int8, narrow_range=True)
    assert n8.min() == -127 and n8.max() == 127
    q12 = qk.quantize(x * 1000, 1.0, dtype=np.int16, bits=12)
    assert q12.min() == -2048 and q12.max() == 2047
    assert qk.quantize(x, 1.0, dtype=np.int8, bits=2).tolist().count(1) > 0


def test_raw_ufuncs_are_ufuncs():
    names = qk.ufuncs.__all__
    assert len(names) >= 60
    for n in names:
        assert isinstance(getattr(qk.ufuncs, n), np.ufunc)
    uf = qk.ufuncs.quantize_pt2e_u8
    assert uf.nin == 5 and uf.nout == 1 and "ff" in "".join(uf.types)[:2]


def test_broadcasting_per_channel_nchw(rng):
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    s = np.float32([0.1, 0.2, 0.3]).reshape(3, 1, 1)
    zp = np.int32([1, 2, 3]).reshape(3, 1, 1)
    got = qk.quantize(x, s, zp, dtype=np.int8, flavor="onnx")
    for c in range(3):
        np.testing.assert_array_equal(
            got[:, c], qk.quantize(x[:, c], s[c, 0, 0], int(zp[c, 0, 0]), dtype=np.int8, flavor="onnx"))
    np.testing.assert_array_equal(got, qk.quantize(x, s.ravel(), zp.ravel(), axis=1, flavor="onnx"))


def test_out_where_and_views(rng):
    x = rng.standard_normal(1000).astype(np.float32)
    out = np.zeros(1000, np.uint8)
    r = qk.quantize(x, 0.05, 128, dtype=np.uint8, out=out)
    assert r is out
    np.testing.assert_array_equal(out, qk.quantize(x, 0.05, 128, dtype=np.uint8))
    # where= on the raw ufunc leaves masked elements alone
    o2 = np.full(1000, 9, np.uint8)
    mask = x > 0
    qk.ufuncs.quantize_pt2e_u8(x, np.float32(0.05), 128, 0, 255, out=o2, where=mask)
    assert np.all(o2[~mask] == 9) and np.array_equal(o2[mask], qk.ufuncs.quantize_pt2e_u8(x, np.float32(0.05), 128, 0, 255)[mask])
    # negative strides, 2-D transposed views, out into a strided view
    np.testing.assert_array_equal(qk.quantize(x[::-1], 0.05), qk.quantize(x, 0.05)[::-1])
    m = x.reshape(20, 50)
    np.testing.assert_array_equal(qk.quantize(m.T, 0.05), qk.quantize(m, 0.05).T)
    big = np.zeros((20, 100), np.int8)
    qk.quantize(m, 0.05, out=big[:, ::2])
    np.testing.assert_array_equal(big[:, ::2], qk.quantize(m, 0.05))
    assert np.all(big[:, 1::2] == 0)


def test_empty_and_scalar_inputs():
    assert qk.quantize(np.zeros(0, np.float32), 0.1).shape == (0,)
    assert qk.quantize(np.zeros((3, 0), np.float32), np.ones(3, np.float32), axis=0).shape == (3, 0)
    assert qk.dequantize(np.zeros(0, np.int8), 0.1).dtype == np.float32
    assert qk.requantize(np.zeros(0, np.int32), 1 << 30, -1).shape == (0,)
    assert int(qk.quantize(np.float32(0.26), 0.1)) == 3
    assert float(qk.dequantize(np.int8(3), 0.1)) == float(np.float32(0.1) * np.float32(3))


def test_requantize_all_paths_agree_across_block_tails(rng):
    """Lengths around the 32-element SIMD block and the 512-element gather block."""
    for n in (0, 1, 7, 31, 32, 33, 63, 64, 65, 511, 512, 513, 1027):
        acc = rng.integers(-(1 << 31), 1 << 31, n).astype(np.int32)
        a = qk.requantize(acc, 1 << 30, -5, 3)
        b = np.array([qk.requantize(acc[i:i + 1], 1 << 30, -5, 3)[0] for i in range(n)], np.int8)
        np.testing.assert_array_equal(a, b)
        # strided input takes the gather path
        acc2 = np.repeat(acc, 2)[::2]
        np.testing.assert_array_equal(qk.requantize(acc2, 1 << 30, -5, 3), a)


def test_threads_give_identical_results(rng):
    """The kernels are reentrant: NumPy releases the GIL around the loops."""
    x = rng.standard_normal(2_000_000).astype(np.float32)
    ref = qk.quantize(x, 0.01, 3)
    results = [None] * 4

    def work(i):
        results[i] = qk.quantize(x, 0.01, 3)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for r in results:
        np.testing.assert_array_equal(r, ref)


@settings(max_examples=60, deadline=None)
@given(x=hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=4, max_side=9),
                    elements=st.floats(-1e4, 1e4, width=32)),
       scale=st.floats(float(np.float32(1e-3)), 10.0, width=32), zp=st.integers(0, 255))
def test_hypothesis_shapes_roundtrip(x, scale, zp):
    q = qk.quantize(x, scale, zp, dtype=np.uint8, flavor="onnx")
    assert q.shape == x.shape and q.dtype == np.uint8
    np.testing.assert_array_equal(q, ref_quantize(x, scale, zp, 0, 255, "onnx").astype(np.uint8))
    d = qk.dequantize(q, scale, zp)
    expect = np.float32(scale) * (q.astype(np.int64) - zp).astype(np.float32)
    assert same_bits(d, expect.astype(np.float32))
    # per channel along the last axis (parameters vary inside the inner loop)
    c = x.shape[-1]
    sc = np.float32(scale) * (1 + np.arange(c, dtype=np.float32))
    qc = qk.quantize(x, sc, zp, dtype=np.uint8, axis=-1, flavor="onnx")
    for j in range(c):
        np.testing.assert_array_equal(qc[..., j], qk.quantize(x[..., j], sc[j], zp, dtype=np.uint8, flavor="onnx"))


def test_fake_quantize_float64_is_double_arithmetic(rng):
    x = rng.standard_normal(10_000) * 5
    y = qk.fake_quantize(x, 0.05, 3, -128, 127)
    assert y.dtype == np.float64
    inv = np.float64(np.float32(1) / np.float32(0.05))
    q = np.clip(np.rint(x * inv) + 3, -128, 127)
    np.testing.assert_array_equal(y, (q - 3) * np.float64(np.float32(0.05)))


def test_choose_qparams_pow2_and_narrow():
    qp = qk.choose_qparams(-1.0, 3.0, symmetric=True, narrow_range=True)
    assert qp.scale == np.float32(3.0) / np.float32(127) and qp.qmin == -127
    qp = qk.choose_qparams(-5.0, 3.0, symmetric=True, power_of_two="ceil")
    assert qp.scale == 2.0 ** -4 and int(qp.exponent) == -4 and not qp.clipped
    assert qp.power_of_2() == "2^(-4)" and qp.hardware_op() == "x >> 4"
    qr = qk.choose_qparams(-5.0, 3.0, symmetric=True, power_of_two="round")
    assert qr.scale == 2.0 ** -5 and bool(qr.clipped)  # 5 / 2^-5 = 160 > 127: clips
    pc = qk.choose_qparams(np.float32([-1, -2, -300]), np.float32([1, 8, 3]), symmetric=True,
                           power_of_two="ceil")
    assert list(pc.exponent) == [-6, -3, 2] and list(pc.hardware_op()) == ["x >> 6", "x >> 3", "x << 2"]
    scale, zp = qk.choose_qparams(0.0, 0.0, dtype=np.uint8)  # constant data: eps floor
    assert scale == np.float32(2.0 ** -23) and zp == 0
    assert qk.choose_qparams(0.0, 0.0, dtype=np.int8).zero_point == -128  # affine int8, as PyTorch
