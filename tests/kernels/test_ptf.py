"""PTF quantization (SPEC section 6): the kernel against the plain reference, calibration on the
real DeiT-small data, the seed convention, and bad input."""
import numpy as np
import pytest

import qkernels as qk
from ptf_data import load_deit
from ptf_reference import ptf_quantize_ref


@pytest.fixture
def rng():
    return np.random.default_rng(20261123)


def test_quantize_matches_reference_random(rng):
    x = (rng.standard_normal((50, 96)) * rng.uniform(0.1, 20, 96)).astype(np.float32)
    alpha = rng.integers(0, 8, 96).astype(np.int32)
    for scale, zp in [(0.01, 128), (0.37, 0), (1e-3, 255), (0.05, 17)]:
        q = qk.ptf_quantize(x, scale, alpha, zp)
        assert q.dtype == np.uint8
        np.testing.assert_array_equal(q, ptf_quantize_ref(x, scale, alpha, zp))


def test_quantize_ties_and_saturation():
    # exact ties at .5 steps round half to even, +-inf saturate, the step is scale * 2^alpha
    alpha = np.array([0, 1, 2], np.int32)
    x = np.array([[0.5, 1.0, 10.0], [1.5, 3.0, -10.0], [np.inf, -np.inf, 6.0]], np.float32)
    q = qk.ptf_quantize(x, 1.0, alpha, 128)
    np.testing.assert_array_equal(q, [[128, 128, 130], [130, 130, 126], [255, 0, 130]])


def test_quantize_layouts(rng):
    x = rng.standard_normal((4, 6, 10)).astype(np.float32)
    alpha = rng.integers(0, 4, 10).astype(np.int32)
    want = ptf_quantize_ref(x, 0.02, alpha, 100)
    np.testing.assert_array_equal(qk.ptf_quantize(x, 0.02, alpha, 100), want)
    # non-contiguous views, a scalar alpha, out=, empty arrays, float64 input
    xt = np.asfortranarray(x)
    np.testing.assert_array_equal(qk.ptf_quantize(xt, 0.02, alpha, 100), want)
    np.testing.assert_array_equal(qk.ptf_quantize(x[:, ::2], 0.02, alpha, 100), want[:, ::2])
    np.testing.assert_array_equal(qk.ptf_quantize(x, 0.02, 2, 100),
                                  ptf_quantize_ref(x, 0.02, np.full(10, 2), 100))
    out = np.zeros(x.shape, np.uint8)
    assert qk.ptf_quantize(x, 0.02, alpha, 100, out=out) is out
    np.testing.assert_array_equal(out, want)
    assert qk.ptf_quantize(np.zeros((0, 10), np.float32), 0.02, alpha, 100).shape == (0, 10)
    np.testing.assert_array_equal(qk.ptf_quantize(x.astype(np.float64), 0.02, alpha, 100), want)


def test_dequantize(rng):
    q = rng.integers(0, 256, (7, 12)).astype(np.uint8)
    alpha = rng.integers(0, 4, 12).astype(np.int32)
    y = qk.ptf_dequantize(q, 0.125, alpha, 128)
    want = (np.ldexp(np.float32(0.125), alpha).astype(np.float32)
            * (q.astype(np.int32) - 128).astype(np.float32))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, want)
    # quantize(dequantize(q)) == q
    np.testing.assert_array_equal(qk.ptf_quantize(y, 0.125, alpha, 128), q)


def test_bad_input():
    x = np.ones((2, 3), np.float32)
    a = np.zeros(3, np.int32)
    with pytest.raises(ValueError, match=r"x contains NaN at index \(1, 2\)"):
        qk.ptf_quantize(np.array([[1, 2, 3], [4, 5, np.nan]], np.float32), 1.0, a, 128)
    with pytest.raises(ValueError, match="alpha=8"):
        qk.ptf_quantize(x, 1.0, np.array([0, 8, 0], np.int32), 128)
    with pytest.raises(ValueError, match="alpha=-1"):
        qk.ptf_quantize(x, 1.0, np.array([0, -1, 0], np.int32), 128)
    with pytest.raises(ValueError, match="zero_point=256"):
        qk.ptf_quantize(x, 1.0, a, 256)
    with pytest.raises(ValueError, match="zero_point=-1"):
        qk.ptf_dequantize(np.zeros((2, 3), np.uint8), 1.0, a, -1)
    with pytest.raises(ValueError, match="scale must be finite"):
        qk.ptf_quantize(x, 0.0, a, 128)
    with pytest.raises(ValueError, match="one exponent per channel"):
        qk.ptf_quantize(x, 1.0, np.zeros(4, np.int32), 128)
    with pytest.raises(TypeError, match="alpha must be an integer"):
        qk.ptf_quantize(x, 1.0, np.zeros(3), 128)
    with pytest.raises(TypeError, match="q must be a uint8"):
        qk.ptf_dequantize(np.zeros((2, 3), np.int8), 1.0, a, 0)
    with pytest.raises(ValueError, match="alpha=4"):
        qk.PTFParams(1.0, np.array([0, 4], np.int32), 128, K=3)
    with pytest.raises(ValueError, match="method must be one of"):
        qk.ptf_calibrate(x, method="minmax")
    with pytest.raises(ValueError, match="K must be in"):
        qk.ptf_calibrate(x, K=9)
    with pytest.raises(ValueError, match="NaN"):
        qk.ptf_calibrate(np.array([[1.0, np.nan]]))


def test_seed_convention_round_trip():
    p = qk.PTFParams(0.25, np.array([0, 1, 3, 2], np.int32), 128, K=3)
    S, zp, a_seed = p.to_seed()
    assert (S, zp) == (2.0, 128) and a_seed.tolist() == [-3, -2, 0, -1]
    assert qk.PTFParams.from_seed(S, zp, a_seed) == p
    with pytest.raises(ValueError, match="alpha_seed=1"):
        qk.PTFParams.from_seed(1.0, 128, np.array([0, 1], np.int32))


def test_calibrate_batches_equal_concatenation(rng):
    x = (rng.standard_normal((40, 16)) * np.geomspace(0.1, 30, 16)).astype(np.float32)
    for method in ("seed", "fqvit"):
        one = qk.ptf_calibrate(x, method=method)
        many = qk.ptf_calibrate([x[:10], x[10:25], x[25:]], method=method)
        assert one == many, method


def test_seed_calibration_never_clips(rng):
    x = (rng.standard_normal((64, 32)) * np.geomspace(0.05, 10, 32)).astype(np.float32)
    p = qk.ptf_calibrate(x, method="seed", K=3)
    _, _, a_seed = p.to_seed()
    assert p.zero_point == 128 and a_seed.max() == 0 and a_seed.min() >= -3
    q = p.quantize(x).astype(np.int32)
    assert q.min() >= 1 and q.max() <= 255  # |x / step| <= 127 everywhere


def _per_tensor_asym_sqnr(x):
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = np.float32((hi - lo) / 255)
    zp = int(np.clip(-np.round(lo / scale), 0, 255))
    q = qk.quantize(x, scale, zp, dtype=np.uint8)
    return qk.sqnr_db(x, qk.dequantize(q, scale, zp))


def test_deit_input_sqnr():
    x, _, _ = load_deit()
    base = _per_tensor_asym_sqnr(x)
    seed = qk.ptf_calibrate(x, method="seed")
    fqvit = qk.ptf_calibrate(x, method="fqvit")
    s_seed = qk.sqnr_db(x, seed.dequantize(seed.quantize(x)))
    s_fqvit = qk.sqnr_db(x, fqvit.dequantize(fqvit.quantize(x)))
    print(f"\nDeiT-small LN0 input SQNR: per-tensor asym {base:.2f} dB, seed {s_seed:.2f} dB, "
          f"fqvit {s_fqvit:.2f} dB")
    assert 31.8 <= base <= 32.8          # SPEC: 32.3
    assert s_seed >= 41.0                # SPEC: 41.3
    assert s_fqvit >= 37.0               # SPEC: 37.4
    assert s_seed > s_fqvit > base
    # what the seed method chose on this data (one channel needs a stretch of 2^4)
    assert seed.zero_point == 128 and seed.alpha.max() == 4 and seed.K == 4
    assert fqvit.K == 3 and 0 <= fqvit.zero_point <= 255


def test_seed_method_is_the_seed_script():
    """method="seed" with no K is the seed's collection script exactly: S = max|x| / 127,
    alpha_seed[c] = -floor(log2(127 / max|x_c / S|)) (0 when that ratio is below 1), nothing
    clipped; K=3 given explicitly clips the one channel of the DeiT data that needs 2^4
    (189 of 75,648 quantized values then differ)."""
    x, _, _ = load_deit()
    p = qk.ptf_calibrate(x, method="seed")
    S = np.float32(np.abs(x).max() / 127.0)
    ratio = 127.0 / np.abs(x / S).max(axis=0)
    want = np.where(ratio < 1, 0, -np.floor(np.log2(ratio))).astype(np.int32)   # the script's
    S_seed, zp, alpha_seed = p.to_seed()
    assert zp == 128 and np.array_equal(alpha_seed, want)
    assert np.isclose(S_seed, S, rtol=1e-6)
    q = p.quantize(x)
    q3 = qk.ptf_calibrate(x, method="seed", K=3).quantize(x)
    differ = int(np.sum(q != q3))
    assert differ == 189 and int(np.sum(np.any(q != q3, axis=0))) == 1, differ
    assert q.size == 75_648


def test_deit_quantize_matches_reference():
    x, _, _ = load_deit()
    for method in ("seed", "fqvit"):
        p = qk.ptf_calibrate(x, method=method)
        np.testing.assert_array_equal(p.quantize(x),
                                      ptf_quantize_ref(x, p.scale, p.alpha, p.zero_point))


def test_nan_in_a_long_row_names_its_index():
    # long rows go through the 8-lane loop: the NaN block falls back to the scalar loop
    x = np.linspace(-3, 3, 2 * 40).astype(np.float32).reshape(2, 40)
    x[1, 21] = np.nan
    a = (np.arange(40) % 8).astype(np.int32)
    out = np.zeros((2, 40), np.uint8)
    with pytest.raises(ValueError, match=r"x contains NaN at index \(1, 21\).*partly written"):
        qk.ptf_quantize(x, 0.01, a, 128, out=out)
    want = ptf_quantize_ref(np.nan_to_num(x), 0.01, a, 128)
    np.testing.assert_array_equal(out[0], want[0])  # rows before the NaN are written
