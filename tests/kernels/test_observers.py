"""Histogram-based and power-of-two observers: what they choose, checked against the data."""
import numpy as np
import pytest

import qkernels as qk


def fq_mse(x, amax, qmax=127):
    step = amax / qmax
    return float(np.mean((np.clip(np.rint(x / step), -qmax, qmax) * step - x) ** 2))


def test_percentile_matches_numpy_percentile(rng):
    x = rng.standard_normal(400_000).astype(np.float32)
    obs = qk.PercentileObserver(percentile=99.9)
    for part in np.array_split(x, 8):
        obs.update(part)
    amax = float(obs.range()[1][0])
    ref = float(np.percentile(np.abs(x), 99.9))
    width = float(np.abs(x).max()) / 2048
    assert abs(amax - ref) <= 2 * width, (amax, ref)


def test_histogram_range_grows_with_rebinning(rng):
    """A later batch with a larger range re-bins the earlier counts: nothing is lost."""
    obs = qk.PercentileObserver(percentile=100)
    obs.update(rng.uniform(-1, 1, 10_000).astype(np.float32))
    obs.update(rng.uniform(-8, 8, 10_000).astype(np.float32))
    assert obs.hist.sum() == 20_000
    assert float(obs.range()[1][0]) == pytest.approx(8.0, rel=1e-3)


def test_mse_observer_beats_minmax_on_heavy_tails(rng):
    x = rng.laplace(size=300_000).astype(np.float32)
    obs = qk.MSEObserver()
    obs.update(x)
    amax = float(obs.range()[1][0])
    full = float(np.abs(x).max())
    assert amax < full
    assert fq_mse(x, amax) < fq_mse(x, full)
    # and it is near the best of a fine scan on the real data
    scan = min(fq_mse(x, a) for a in np.linspace(full / 16, full, 400))
    assert fq_mse(x, amax) <= 1.05 * scan


def test_entropy_observer_on_gaussian(rng):
    x = rng.standard_normal(400_000).astype(np.float32)
    obs = qk.EntropyObserver()
    obs.update(x)
    amax = float(obs.range()[1][0])
    assert 2.5 < amax < float(np.abs(x).max())
    qp = obs.calculate_qparams()
    assert qp.zero_point == 0 and qp.scale == pytest.approx(amax / 127.5, rel=1e-6)


def test_entropy_observer_keeps_uniform_range(rng):
    x = rng.uniform(-3, 3, 200_000).astype(np.float32)
    obs = qk.EntropyObserver()
    obs.update(x)
    assert float(obs.range()[1][0]) > 2.7


def test_power_of_two_mode(rng):
    obs = qk.PowerOfTwoModeObserver(dtype=np.int8)
    for amax in (3.0, 3.9, 2.1, 7.0, 0.5):
        obs.update(np.float32([-amax, 0.1, amax]))
    qp = obs.calculate_qparams()  # 3.0, 3.9, 2.1 -> 2^-5 (three votes)
    assert int(qp.exponent) == -5 and qp.hardware_op() == "x >> 5" and qp.zero_point == 0
    pc = qk.PowerOfTwoModeObserver(dtype=np.int8, axis=0)
    for _ in range(3):
        pc.update(np.float32([[1.0, -1.0], [100.0, 3.0]]))
    assert list(pc.calculate_qparams().exponent) == [-6, 0]


def test_observer_errors():
    with pytest.raises(RuntimeError, match="no data"):
        qk.MinMaxObserver().calculate_qparams()
    with pytest.raises(ValueError, match=r"NaN at index \(1,\)"):
        qk.MinMaxObserver().update(np.float32([1.0, np.nan]))
    obs = qk.MinMaxObserver(axis=1)
    obs.update(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="channels"):
        obs.update(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="empty"):
        qk.MinMaxObserver().update(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="averaging_constant"):
        qk.MovingAverageMinMaxObserver(averaging_constant=0)
    with pytest.raises(ValueError, match="percentile"):
        qk.PercentileObserver(percentile=101)
    with pytest.raises(ValueError, match="symmetric"):
        qk.PowerOfTwoModeObserver(symmetric=False)
    with pytest.raises(ValueError, match="per tensor"):
        qk.EntropyObserver(axis=0)


def grid_mse(x, qp):
    """Mean squared error of quantizing x with (scale, zero point) on [qmin, qmax]."""
    s, z = float(qp.scale), int(qp.zero_point)
    q = np.clip(np.rint(x.astype(np.float64) / s) + z, qp.qmin, qp.qmax)
    return float(np.mean(((q - z) * s - x) ** 2))


@pytest.mark.parametrize("dtype,symmetric,reduce_range,bits",
                         [(np.uint8, False, False, None), (np.uint8, False, True, None),
                          (np.int8, True, False, None), (np.int8, False, False, 4)])
@pytest.mark.parametrize("dist", ["laplace", "relu", "skewed"])
def test_l2_range_observer_minimises_the_real_grid_error(rng, dtype, symmetric, reduce_range,
                                                         bits, dist):
    """L2RangeObserver's range, through choose_qparams, quantizes the calibration data with an
    error no larger than min/max's and within 3% of the best range of a fine 2-D scan scored on
    the real data (not the histogram)."""
    x = rng.laplace(size=20_000).astype(np.float32)
    if dist == "relu":        # half exact zeros, one-sided
        x = np.maximum(x, 0)
    elif dist == "skewed":    # negative side short, positive side long-tailed
        x = np.where(x < 0, 0.1 * x, 2 * x).astype(np.float32)
    kw = dict(dtype=dtype, symmetric=symmetric, reduce_range=reduce_range, bits=bits)
    obs = qk.L2RangeObserver(**kw)
    for part in np.array_split(rng.permutation(x), 5):
        obs.update(part)
    err = grid_mse(x, obs.calculate_qparams())
    mm = qk.MinMaxObserver(**kw)
    mm.update(x)
    assert err <= grid_mse(x, mm.calculate_qparams())
    lo_c = np.linspace(x.min(), 0, 24) if x.min() < 0 else [0.0]
    best = min(grid_mse(x, qk.choose_qparams(np.float32(lo), np.float32(hi), **kw))
               for lo in lo_c for hi in np.linspace(x.max() / 24, x.max(), 72))
    assert err <= 1.03 * best, (err, best)


def test_l2_range_observer_edge_cases(rng):
    obs = qk.L2RangeObserver(dtype=np.uint8)
    obs.update(np.zeros(100, np.float32))          # only zeros: the range [0, 0]
    assert [float(v[0]) for v in obs.range()] == [0.0, 0.0]
    obs.update(np.float32([0.5, 1.0]))              # then values: they set the range
    assert 0.0 < float(obs.range()[1][0]) <= 1.0
    u = qk.L2RangeObserver(dtype=np.uint8)
    u.update(rng.uniform(-1, 1, 50_000).astype(np.float32))   # uniform: no clipping pays
    lo, hi = u.range()
    assert lo[0] < -0.99 and hi[0] > 0.99
    grow = qk.L2RangeObserver(dtype=np.uint8)                  # a later, wider batch re-bins
    grow.update(rng.uniform(-1, 1, 1000).astype(np.float32))
    grow.update(rng.uniform(-8, 8, 1000).astype(np.float32))
    assert grow.hist.sum() == 2000 and grow.lo < -7 and grow.hi > 7
    with pytest.raises(ValueError, match="per tensor"):
        qk.L2RangeObserver(axis=0)
    with pytest.raises(ValueError, match="num_bins"):
        qk.L2RangeObserver(num_bins=4)
    with pytest.raises(RuntimeError, match="no data"):
        qk.L2RangeObserver().calculate_qparams()
