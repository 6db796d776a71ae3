"""Calibration observers: watch batches of real (or synthetic) data, then choose scale and zero point.

All observers share one interface, modelled on ``torch.ao.quantization`` observers::

    obs = MinMaxObserver(dtype=np.uint8)
    for batch in calibration_data:
        obs.update(batch)          # or obs(batch), which returns the batch unchanged
    scale, zero_point = obs.calculate_qparams()

They differ only in how the clipping range [min_val, max_val] is chosen from what they saw; the
range becomes parameters through :func:`qkernels.choose_qparams` (PyTorch semantics, with the
observer's ``dtype``, ``symmetric``, ``reduce_range``, ``narrow_range``, ``bits`` and
``power_of_two`` options). Per-channel observation is ``axis=`` (the channel axis).

=============================  ===========================================  =========================
observer                       range                                        mirrors
=============================  ===========================================  =========================
MinMaxObserver                 running min / max                            torch MinMaxObserver,
                                                                            PerChannelMinMaxObserver
MovingAverageMinMaxObserver    ``m += c * (batch_m - m)``, c = 0.01         torch MovingAverage(PerChannel)MinMaxObserver
PercentileObserver             99.99th percentile of |x| (histogram)        NVIDIA pytorch-quantization / TensorRT percentile
MSEObserver                    amax minimising quantization MSE             NVIDIA pytorch-quantization "mse"
L2RangeObserver                [lo, hi] minimising the expected squared     PyTorch HistogramObserver's
                               error on the grid choose_qparams makes       L2 range search (affine)
EntropyObserver                amax minimising KL divergence, 2048 bins     TensorRT entropy calibration
                               merged into 128 (int8) target bins
PowerOfTwoModeObserver         most frequent power-of-two exponent          the seed's "mode" calibration
=============================  ===========================================  =========================

All arithmetic on running statistics is float32, as in PyTorch, so MinMax and MovingAverage
results equal torch's bit for bit.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Tuple

import numpy as np

from . import _checks as C
from .qparams import QParams, _pow2_exponent, choose_qparams

__all__ = ["Observer", "MinMaxObserver", "MovingAverageMinMaxObserver", "PercentileObserver",
           "MSEObserver", "L2RangeObserver", "EntropyObserver", "PowerOfTwoModeObserver"]


class Observer:
    """Base class: collects statistics with :meth:`update`, turns them into :class:`QParams`.

    Args:
        dtype: integer type of the quantized values (uint8, int8, ...).
        symmetric: symmetric (zero point 0 / 128) or affine ranges.
        axis: channel axis for per-channel parameters (None: per tensor).
        reduce_range, narrow_range, bits, power_of_two: as in :func:`qkernels.choose_qparams`.
    """

    def __init__(self, *, dtype: Any = np.uint8, symmetric: bool = False,
                 axis: Optional[int] = None, reduce_range: bool = False,
                 narrow_range: bool = False, bits: Optional[int] = None,
                 power_of_two: Optional[str] = None) -> None:
        self.dtype = np.dtype(dtype)
        C.int_dtype(self.dtype)
        self.symmetric = symmetric
        self.axis = axis
        self.reduce_range = reduce_range
        self.narrow_range = narrow_range
        self.bits = bits
        self.power_of_two = power_of_two
        self.batches = 0

    # -- data handling shared by the subclasses ----------------------------------------------
    def _prepare(self, x: Any) -> np.ndarray:
        """float32 view of a batch with the channel axis first, flattened to (C, -1) or (1, -1)."""
        a = C.float_input(np.asarray(x), "x").astype(np.float32, copy=False)
        if a.size == 0:
            raise ValueError("x is empty: an observer needs at least one value")
        if np.isnan(a).any():
            C.raise_nan(a, "x")
        if self.axis is None:
            return a.reshape(1, -1)
        if not -a.ndim <= self.axis < a.ndim:
            raise ValueError(f"axis={self.axis} is out of range for data of {a.ndim} dimensions")
        return np.moveaxis(a, self.axis, 0).reshape(a.shape[self.axis], -1)

    def __call__(self, x: Any) -> Any:
        """Observe a batch and return it unchanged (so an observer can sit in a forward pass)."""
        self.update(x)
        return x

    def update(self, x: Any) -> None:
        raise NotImplementedError

    def range(self) -> Tuple[np.ndarray, np.ndarray]:
        """The chosen clipping range (min_val, max_val), float32, per channel when axis is set."""
        raise NotImplementedError

    def calculate_qparams(self) -> QParams:
        """Scale and zero point for the observed data (see :func:`qkernels.choose_qparams`)."""
        if self.batches == 0:
            raise RuntimeError(f"{type(self).__name__} has observed no data: call update() first")
        mn, mx = self.range()
        if self.axis is None:
            mn, mx = mn.reshape(()), mx.reshape(())
        return choose_qparams(mn, mx, dtype=self.dtype, symmetric=self.symmetric,
                              reduce_range=self.reduce_range, narrow_range=self.narrow_range,
                              bits=self.bits, power_of_two=self.power_of_two)


class MinMaxObserver(Observer):
    """Running minimum and maximum (PyTorch ``MinMaxObserver`` / ``PerChannelMinMaxObserver``).

    Example:
        >>> import numpy as np, qkernels
        >>> obs = qkernels.MinMaxObserver(dtype=np.uint8)
        >>> obs.update(np.float32([-1.0, 0.5])); obs.update(np.float32([2.0]))
        >>> scale, zp = obs.calculate_qparams()
        >>> float(scale), int(zp)
        (0.0117647061124444, 85)
    """

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.min_val: Optional[np.ndarray] = None
        self.max_val: Optional[np.ndarray] = None

    def update(self, x: Any) -> None:
        a = self._prepare(x)
        mn, mx = a.min(axis=1), a.max(axis=1)
        if self.min_val is None:
            self.min_val, self.max_val = mn, mx
        else:
            if mn.shape != self.min_val.shape:
                raise ValueError(f"x has {mn.size} channels, earlier batches had {self.min_val.size}")
            self.min_val, self.max_val = self._merge(mn, mx)
        self.batches += 1

    def _merge(self, mn: np.ndarray, mx: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """The running range after a batch with range [mn, mx]."""
        return np.minimum(self.min_val, mn), np.maximum(self.max_val, mx)

    def range(self) -> Tuple[np.ndarray, np.ndarray]:
        return self.min_val, self.max_val


class MovingAverageMinMaxObserver(MinMaxObserver):
    """Exponential moving average of per-batch min and max (PyTorch
    ``MovingAverageMinMaxObserver`` / ``MovingAveragePerChannelMinMaxObserver``), c = 0.01:
    ``min_val = min_val + c * (batch_min - min_val)`` in float32; the first batch sets the range.

    Example:
        >>> import numpy as np, qkernels
        >>> obs = qkernels.MovingAverageMinMaxObserver(averaging_constant=0.5)
        >>> obs.update(np.float32([0.0, 4.0])); obs.update(np.float32([0.0, 2.0]))
        >>> obs.range()
        (array([0.], dtype=float32), array([3.], dtype=float32))
    """

    def __init__(self, averaging_constant: float = 0.01, **kw: Any) -> None:
        super().__init__(**kw)
        if not 0 < averaging_constant <= 1:
            raise ValueError(f"averaging_constant must be in (0, 1], got {averaging_constant}")
        self.averaging_constant = averaging_constant

    def _merge(self, mn: np.ndarray, mx: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        c = np.float32(self.averaging_constant)
        return ((self.min_val + c * (mn - self.min_val)).astype(np.float32),
                (self.max_val + c * (mx - self.max_val)).astype(np.float32))


class _HistogramObserver(Observer):
    """A histogram of |x| with a range that grows as batches arrive (NVIDIA pytorch-quantization's
    HistogramCalibrator): ``num_bins`` bins of equal width over [0, amax seen so far]; when a batch
    exceeds the range, the bin width grows and old counts are re-binned by their bin centres."""

    def __init__(self, num_bins: int = 2048, **kw: Any) -> None:
        kw.setdefault("symmetric", True)
        kw.setdefault("dtype", np.int8)
        super().__init__(**kw)
        if kw.get("axis") is not None:
            raise ValueError(f"{type(self).__name__} is per tensor; use axis=None")
        self.num_bins = int(num_bins)
        self.hist = np.zeros(self.num_bins, np.int64)
        self.amax = 0.0
        self.min_seen = np.float32(np.inf)
        self.max_seen = np.float32(-np.inf)

    def update(self, x: Any) -> None:
        a = self._prepare(x).ravel()
        self.min_seen = min(self.min_seen, a.min())
        self.max_seen = max(self.max_seen, a.max())
        ab = np.abs(a).astype(np.float64)
        amax = float(ab.max())
        if amax > self.amax:
            if self.amax > 0 and self.hist.any():
                width = self.amax / self.num_bins
                centres = (np.arange(self.num_bins) + 0.5) * width
                old = self.hist
                self.hist = np.zeros(self.num_bins, np.int64)
                idx = np.minimum((centres / amax * self.num_bins).astype(np.int64), self.num_bins - 1)
                np.add.at(self.hist, idx, old)
            self.amax = amax
        if self.amax == 0:
            self.hist[0] += ab.size
        else:
            idx = np.minimum((ab / self.amax * self.num_bins).astype(np.int64), self.num_bins - 1)
            self.hist += np.bincount(idx, minlength=self.num_bins)
        self.batches += 1

    def _edges(self) -> np.ndarray:
        return np.linspace(0.0, self.amax, self.num_bins + 1)

    def _amax(self) -> float:
        raise NotImplementedError

    def range(self) -> Tuple[np.ndarray, np.ndarray]:
        """[-amax, amax] when the data had negative values, [0, amax] otherwise."""
        t = np.float32(self._amax())
        lo = -t if self.min_seen < 0 else np.float32(0)
        return np.array([lo], np.float32), np.array([t], np.float32)

    def _qmax_abs(self) -> int:
        lo, hi = C.qrange(self.dtype, bits=self.bits, narrow_range=self.narrow_range,
                          reduce_range=self.reduce_range)
        return (hi - lo) // 2 if self.symmetric or lo < 0 else hi - lo


class PercentileObserver(_HistogramObserver):
    """Clip at the ``percentile``-th percentile of |x| (default 99.99), from a 2048-bin histogram
    (NVIDIA pytorch-quantization / TensorRT "percentile" calibration).

    Example:
        >>> import numpy as np, qkernels
        >>> x = np.concatenate([np.linspace(-1, 1, 100_000), [50.0]]).astype(np.float32)
        >>> obs = qkernels.PercentileObserver(percentile=99.9); obs.update(x)
        >>> 0.99 < float(obs.range()[1][0]) < 1.05
        True
    """

    def __init__(self, percentile: float = 99.99, **kw: Any) -> None:
        super().__init__(**kw)
        if not 0 < percentile <= 100:
            raise ValueError(f"percentile must be in (0, 100], got {percentile}")
        self.percentile = percentile

    def _amax(self) -> float:
        cdf = np.cumsum(self.hist) / self.hist.sum()
        i = int(np.searchsorted(cdf, self.percentile / 100.0))
        return float(self._edges()[min(i + 1, self.num_bins)])


class MSEObserver(_HistogramObserver):
    """The clipping value amax (searched over histogram bin edges from bin ``start_bin``) that
    minimises the mean squared quantization error of the histogram's bin centres (NVIDIA
    pytorch-quantization "mse" calibration).

    Example:
        >>> import numpy as np, qkernels
        >>> x = np.random.default_rng(0).laplace(size=200_000).astype(np.float32)
        >>> obs = qkernels.MSEObserver(); obs.update(x)
        >>> float(obs.range()[1][0]) < float(np.abs(x).max())   # clips the tail
        True
    """

    def __init__(self, start_bin: int = 128, **kw: Any) -> None:
        super().__init__(**kw)
        self.start_bin = int(start_bin)

    def _amax(self) -> float:
        edges = self._edges()
        centres = (edges[:-1] + edges[1:]) / 2
        counts = self.hist.astype(np.float64)
        qmax = self._qmax_abs()
        best, best_err = edges[-1], math.inf
        for i in range(min(self.start_bin, self.num_bins), self.num_bins + 1):
            amax = edges[i]
            if amax <= 0:
                continue
            step = amax / qmax
            q = np.clip(np.rint(centres / step), -qmax, qmax) * step
            err = float(np.dot(counts, (q - centres) ** 2))
            if err < best_err:
                best, best_err = amax, err
        return float(best)


class L2RangeObserver(Observer):
    """The clipping range [lo, hi] that minimises the expected squared quantization error of the
    observed values on the integer grid :func:`qkernels.choose_qparams` makes from that range
    (the observer's own dtype, symmetric, reduce_range, narrow_range, bits and power_of_two): the
    range search of PyTorch's ``HistogramObserver`` and of the MSE range setting in Nagel et al.,
    "A White Paper on Neural Network Quantization" (2021, section 3.4), for affine ranges.

    Calibration keeps a ``num_bins`` histogram of the nonzero values over [min seen, max seen]
    (re-binned by bin centres when a batch widens the range) and a count of exact zeros, which
    every range represents exactly (choose_qparams puts 0 on the grid). The error of a range is
    estimated from the histogram: ``scale^2 / 12`` per value inside the representable range
    [(qmin - zp) * scale, (qmax - zp) * scale] (uniform rounding error), and the squared distance
    to the nearest end for each value outside it (clipping error), with the bins' prefix sums, so
    one candidate costs O(1). The search starts from the full observed range (min/max) and
    alternates: the best ``hi`` over every bin edge above zero for the current ``lo``, then the
    best ``lo`` below zero for that ``hi``, until neither changes (a few rounds). Unlike PyTorch's
    greedy search, which stops at the first range whose error grows and scores a 2^bits grid
    without the zero point's rounding, every candidate is scored on the grid that will be used,
    and the min/max range is among the candidates, so the estimated error is never above min/max's.

    Per tensor only. Example:
        >>> import numpy as np, qkernels
        >>> x = np.random.default_rng(0).laplace(size=100_000).astype(np.float32)
        >>> obs = qkernels.L2RangeObserver(dtype=np.uint8); obs.update(x)
        >>> lo, hi = obs.range(); bool(x.min() < lo[0] < 0 < hi[0] < x.max())   # clips both tails
        True
    """

    def __init__(self, num_bins: int = 2048, **kw: Any) -> None:
        super().__init__(**kw)
        if self.axis is not None:
            raise ValueError("L2RangeObserver is per tensor; use axis=None")
        if int(num_bins) < 16:
            raise ValueError(f"num_bins must be at least 16, got {num_bins}")
        self.num_bins = int(num_bins)
        self.hist = np.zeros(self.num_bins, np.float64)
        self.zeros = 0
        self.lo = np.float32(np.inf)     # histogram range [lo, hi] of the nonzero values
        self.hi = np.float32(-np.inf)

    def _bin(self, v: np.ndarray, lo: float, hi: float) -> np.ndarray:
        if hi <= lo:
            return np.zeros(v.shape, np.int64)
        return np.clip(((v - lo) / (hi - lo) * self.num_bins).astype(np.int64), 0,
                       self.num_bins - 1)

    def update(self, x: Any) -> None:
        a = self._prepare(x).ravel()
        nz = a[a != 0]
        self.zeros += a.size - nz.size
        self.batches += 1
        if nz.size == 0:
            return
        lo, hi = min(self.lo, nz.min()), max(self.hi, nz.max())
        if self.hist.any() and (lo < self.lo or hi > self.hi):
            old_lo, old_hi = float(self.lo), float(self.hi)
            centres = old_lo + (np.arange(self.num_bins) + 0.5) * (old_hi - old_lo) / self.num_bins
            old = self.hist
            self.hist = np.bincount(self._bin(centres, float(lo), float(hi)), weights=old,
                                    minlength=self.num_bins).astype(np.float64)
        self.lo, self.hi = np.float32(lo), np.float32(hi)
        self.hist += np.bincount(self._bin(nz.astype(np.float64), float(lo), float(hi)),
                                 minlength=self.num_bins)

    def _errors(self, lo: np.ndarray, hi: np.ndarray, centres: np.ndarray, n: np.ndarray,
                s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
        """Estimated sum of squared errors of the ranges [lo[k], hi[k]] (see the class text)."""
        p = choose_qparams(lo.astype(np.float32), hi.astype(np.float32), dtype=self.dtype,
                           symmetric=self.symmetric, reduce_range=self.reduce_range,
                           narrow_range=self.narrow_range, bits=self.bits,
                           power_of_two=self.power_of_two)
        s = p.scale.astype(np.float64)
        r_lo = (p.qmin - p.zero_point.astype(np.float64)) * s
        r_hi = (p.qmax - p.zero_point.astype(np.float64)) * s
        i = np.searchsorted(centres, r_lo, side="left")      # bins below the grid: [0, i)
        j = np.searchsorted(centres, r_hi, side="right")     # bins above it: [j, B)
        below = s2[i] - 2 * r_lo * s1[i] + r_lo ** 2 * n[i]
        above = (s2[-1] - s2[j]) - 2 * r_hi * (s1[-1] - s1[j]) + r_hi ** 2 * (n[-1] - n[j])
        inside = (n[j] - n[i]) * s ** 2 / 12
        return np.maximum(below, 0) + np.maximum(above, 0) + inside

    def range(self) -> Tuple[np.ndarray, np.ndarray]:
        """The chosen clipping range (lo, hi), float32 arrays of one element."""
        if not self.hist.any():   # only zeros seen
            z = np.zeros(1, np.float32)
            return z, z.copy()
        w = (float(self.hi) - float(self.lo)) / self.num_bins
        edges = float(self.lo) + np.arange(self.num_bins + 1) * w
        edges[-1] = float(self.hi)
        centres = (edges[:-1] + edges[1:]) / 2
        h = self.hist
        n = np.concatenate([[0.0], np.cumsum(h)])
        s1 = np.concatenate([[0.0], np.cumsum(h * centres)])
        s2 = np.concatenate([[0.0], np.cumsum(h * centres ** 2)])
        # candidate ends: every edge on the negative side for lo, the positive side for hi
        lo_c = edges[edges < 0] if self.lo < 0 else np.zeros(1)
        hi_c = edges[edges > 0] if self.hi > 0 else np.zeros(1)
        if self.lo < 0:
            lo_c = np.append(lo_c, float(self.lo))
        if self.hi > 0:
            hi_c = np.append(hi_c, float(self.hi))
        lo_b, hi_b = float(lo_c.min()), float(hi_c.max())     # start from min / max
        best = float(self._errors(np.array([lo_b]), np.array([hi_b]), centres, n, s1, s2)[0])
        for _ in range(8):
            e = self._errors(np.full(hi_c.shape, lo_b), hi_c, centres, n, s1, s2)
            k = int(np.argmin(e))
            changed = e[k] < best
            if changed:
                hi_b, best = float(hi_c[k]), float(e[k])
            e = self._errors(lo_c, np.full(lo_c.shape, hi_b), centres, n, s1, s2)
            k = int(np.argmin(e))
            if e[k] < best:
                lo_b, best, changed = float(lo_c[k]), float(e[k]), True
            if not changed:
                break
        return np.array([lo_b], np.float32), np.array([hi_b], np.float32)


class EntropyObserver(_HistogramObserver):
    """TensorRT's entropy calibration: the threshold whose clipped, re-quantized distribution
    (2048 histogram bins merged into ``num_quantized_bins`` = 128 for int8) has the least KL
    divergence from the observed one.

    Example:
        >>> import numpy as np, qkernels
        >>> x = np.random.default_rng(0).standard_normal(200_000).astype(np.float32)
        >>> obs = qkernels.EntropyObserver(); obs.update(x)
        >>> 2.0 < float(obs.range()[1][0]) < float(np.abs(x).max())
        True
    """

    def __init__(self, num_quantized_bins: Optional[int] = None, start_bin: int = 128,
                 **kw: Any) -> None:
        super().__init__(**kw)
        self.num_quantized_bins = num_quantized_bins
        self.start_bin = int(start_bin)

    def _amax(self) -> float:
        nq = self.num_quantized_bins or (self._qmax_abs() + 1)
        hist = self.hist.astype(np.float64)
        edges = self._edges()
        best_i, best_kl = self.num_bins, math.inf
        for i in range(max(self.start_bin, nq), self.num_bins + 1):
            p = hist[:i].copy()
            p[i - 1] += hist[i:].sum()  # outliers folded into the last kept bin
            nonzero = hist[:i] != 0
            # merge the i bins into nq bins, then spread each back over its non-empty bins
            idx = (np.arange(i) * nq) // i
            sums = np.bincount(idx, weights=hist[:i], minlength=nq)
            counts = np.bincount(idx, weights=nonzero.astype(np.float64), minlength=nq)
            q = np.where(nonzero, sums[idx] / np.maximum(counts[idx], 1), 0.0)
            ps, qs = p.sum(), q.sum()
            if ps == 0 or qs == 0:
                continue
            p /= ps
            q /= qs
            m = p > 0
            if np.any(m & (q == 0)):
                continue
            kl = float(np.sum(p[m] * np.log(p[m] / q[m])))
            if kl < best_kl:
                best_i, best_kl = i, kl
        return float(edges[best_i])


class PowerOfTwoModeObserver(Observer):
    """The most frequent power-of-two exponent over the calibration batches (the seed's "mode"
    calibration), symmetric: each batch votes ``e = ceil(log2(amax / qmax_abs))`` (per channel with
    ``axis``); the range is ``[-qmax_abs * 2**mode, qmax_abs * 2**mode]``, ties going to the larger
    exponent (which clips less). Batches whose amax exceeds the mode's range are clipped.

    Example:
        >>> import numpy as np, qkernels
        >>> obs = qkernels.PowerOfTwoModeObserver(dtype=np.int8)
        >>> for a in (3.0, 3.5, 7.0): obs.update(np.float32([-a, a]))
        >>> obs.calculate_qparams().power_of_2()
        '2^(-5)'
    """

    def __init__(self, **kw: Any) -> None:
        kw.setdefault("symmetric", True)
        kw.setdefault("power_of_two", "ceil")
        if not kw["symmetric"] or kw["power_of_two"] != "ceil":
            raise ValueError("PowerOfTwoModeObserver is symmetric with power_of_two='ceil'")
        super().__init__(**kw)
        self.votes: dict = {}

    def _qmax_abs(self) -> int:
        lo, hi = C.qrange(self.dtype, bits=self.bits, narrow_range=self.narrow_range,
                          reduce_range=self.reduce_range)
        return (hi - lo) // 2

    def update(self, x: Any) -> None:
        a = self._prepare(x)
        amax = np.maximum(np.abs(a).max(axis=1), np.float32(2.0 ** -23))
        e = _pow2_exponent((amax / np.float32(self._qmax_abs())).astype(np.float32), "ceil")
        key = tuple(int(v) for v in e)
        self.votes[key] = self.votes.get(key, 0) + 1
        self.batches += 1

    def range(self) -> Tuple[np.ndarray, np.ndarray]:
        best = max(self.votes.items(), key=lambda kv: (kv[1], kv[0]))[0]
        top = np.ldexp(np.float32(self._qmax_abs()), np.array(best, np.int32)).astype(np.float32)
        return -top, top
