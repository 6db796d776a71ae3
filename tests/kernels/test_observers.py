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
