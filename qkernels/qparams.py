"""Choosing scale and zero point from a range: PyTorch observer semantics, and power-of-two scales.

All arithmetic is float32, operation for operation as ``torch.ao.quantization.observer``'s
``_calculate_qparams`` does it, so the results equal ``MinMaxObserver.calculate_qparams()`` and
``PerChannelMinMaxObserver.calculate_qparams()`` bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Optional

import numpy as np

from . import _checks as C

EPS32 = np.float32(2.0 ** -23)  # torch.finfo(torch.float32).eps, the observers' minimum scale


@dataclass(frozen=True)
class QParams:
    """Quantization parameters. Unpacks as ``scale, zero_point = qparams``.

    Attributes:
        scale: float32 scale(s).
        zero_point: int32 zero point(s).
        qmin, qmax: the integer range they were chosen for.
        exponent: for power-of-two scales, the int32 exponent e with ``scale == 2**e``; else None.
        clipped: for power-of-two scales, True where the range [min_val, max_val] does not fit
            the quantized range at that scale (possible with ``power_of_two="round"``); else None.
    """

    scale: np.ndarray
    zero_point: np.ndarray
    qmin: int
    qmax: int
    exponent: Optional[np.ndarray] = None
    clipped: Optional[np.ndarray] = None

    def __iter__(self) -> Iterator[np.ndarray]:
        yield self.scale
        yield self.zero_point

    def power_of_2(self) -> Any:
        """The scale as text, "2^(-9)" (an array of strings when per channel)."""
        if self.exponent is None:
            raise ValueError("these quantization parameters are not power-of-two scales")
        f = np.vectorize(lambda e: f"2^({int(e)})")
        r = f(self.exponent)
        return str(r) if np.ndim(r) == 0 else r

    def hardware_op(self) -> Any:
        """The shift that dequantizing at this scale means in hardware: "x >> 9" for 2^-9."""
        if self.exponent is None:
            raise ValueError("these quantization parameters are not power-of-two scales")
        f = np.vectorize(lambda e: f"x >> {-int(e)}" if e < 0 else (f"x << {int(e)}" if e else "x"))
        r = f(self.exponent)
        return str(r) if np.ndim(r) == 0 else r


def _pow2_exponent(s: np.ndarray, mode: str) -> np.ndarray:
    """ceil(log2 s) or round(log2 s), exactly, for float32 s > 0."""
    m, e = np.frexp(s.astype(np.float64))  # s = m * 2**e, m in [0.5, 1)
    if mode == "ceil":
        return np.where(m == 0.5, e - 1, e).astype(np.int32)
    return np.where(m >= np.sqrt(0.5), e, e - 1).astype(np.int32)  # log2(m) >= -1/2


def choose_qparams(min_val: Any, max_val: Any, *, dtype: Any = np.int8, symmetric: bool = False,
                   reduce_range: bool = False, narrow_range: bool = False,
                   power_of_two: Optional[str] = None, qmin: Optional[int] = None,
                   qmax: Optional[int] = None, bits: Optional[int] = None) -> QParams:
    """Scale and zero point for data in [min_val, max_val] (PyTorch observer semantics).

    - affine: ``scale = max((max_pos - min_neg) / (qmax - qmin), eps)``,
      ``zero_point = clamp(qmin - RNE(min_neg / scale), qmin, qmax)``;
    - symmetric: ``scale = max(max(-min_neg, max_pos) / ((qmax - qmin) / 2), eps)`` (int8: /127.5,
      as PyTorch), ``zero_point = 0`` for signed types and 128 for uint8 (the midpoint
      ``(qmin + qmax) // 2`` for other unsigned ranges);
    - ``narrow_range=True`` with int8 symmetric gives TFLite's ``amax / 127`` on [-127, 127];
    - ``reduce_range=True`` drops one bit (int8 -> [-64, 63], uint8 -> [0, 127]) as PyTorch's
      x86 qconfig does;
    - ``power_of_two="ceil"`` (no clipping: Brevitas, TVM, PyTorch ``force_scale_power_of_two``) or
      ``"round"`` (nearest power of two; may clip, see ``QParams.clipped``) snaps the scale to
      ``2**e`` with ``e = ceil/round(log2(amax / qmax_abs))`` (symmetric) or of the affine scale.

    min_val/max_val are float32 scalars (per tensor) or arrays (per channel), with
    ``min_neg = min(min_val, 0)``, ``max_pos = max(max_val, 0)``; eps = 2**-23.

    Example:
        >>> import numpy as np, qkernels
        >>> scale, zp = qkernels.choose_qparams(-1.0, 2.0, dtype=np.uint8)
        >>> float(scale), int(zp)
        (0.0117647061124444, 85)
        >>> qp = qkernels.choose_qparams(-3.0, 3.0, symmetric=True, power_of_two="ceil")
        >>> float(qp.scale), qp.power_of_2(), qp.hardware_op()
        (0.03125, '2^(-5)', 'x >> 5')
    """
    dt, _ = C.int_dtype(dtype)
    lo, hi = C.qrange(dt, qmin, qmax, bits=bits, narrow_range=narrow_range,
                      reduce_range=reduce_range)
    if power_of_two not in (None, "ceil", "round"):
        raise ValueError(f"power_of_two must be None, 'ceil' or 'round'; got {power_of_two!r}")
    mn = np.asarray(min_val)
    mx = np.asarray(max_val)
    for name, a in (("min_val", mn), ("max_val", mx)):
        if a.dtype.kind not in "fiu":
            raise TypeError(f"{name} must be real numbers, got dtype {a.dtype}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} must be finite")
    mn = mn.astype(np.float32)
    mx = mx.astype(np.float32)
    if mn.shape != mx.shape:
        raise ValueError(f"min_val {mn.shape} and max_val {mx.shape} must have the same shape")
    if np.any(mn > mx):
        raise ValueError("min_val must be <= max_val")
    min_neg = np.minimum(mn, np.float32(0))
    max_pos = np.maximum(mx, np.float32(0))
    signed = np.iinfo(dt).min < 0
    exponent = clipped = None
    if symmetric:
        amax = np.maximum(-min_neg, max_pos)
        if signed:
            zp = np.zeros(amax.shape, np.int32)
        else:
            custom = (qmin is not None or qmax is not None or bits is not None or reduce_range
                      or narrow_range or np.dtype(dt) != np.uint8)
            zp = np.full(amax.shape, (lo + hi) // 2 if custom else 128, np.int32)
        if power_of_two is None:
            scale = np.maximum(amax / np.float32((hi - lo) / 2), EPS32).astype(np.float32)
        else:
            z = int(zp.flat[0]) if zp.size else 0
            qmax_abs = np.float32(min(hi - z, z - lo))
            base = np.maximum(amax / qmax_abs, EPS32).astype(np.float32)
            exponent = _pow2_exponent(base, power_of_two)
            scale = np.ldexp(np.float32(1), exponent).astype(np.float32)
            clipped = amax.astype(np.float64) > float(qmax_abs) * scale.astype(np.float64)
    else:
        scale = np.maximum((max_pos - min_neg) / np.float32(hi - lo), EPS32).astype(np.float32)
        if power_of_two is not None:
            exponent = _pow2_exponent(scale, power_of_two)
            scale = np.ldexp(np.float32(1), exponent).astype(np.float32)
        zp = (np.int64(lo) - np.rint(min_neg / scale).astype(np.int64))
        zp = np.clip(zp, lo, hi).astype(np.int32)
        if power_of_two is not None:
            s64 = scale.astype(np.float64)
            clipped = ((mn.astype(np.float64) < (lo - zp) * s64)
                       | (mx.astype(np.float64) > (hi - zp) * s64))
    return QParams(scale=scale, zero_point=zp, qmin=lo, qmax=hi, exponent=exponent,
                   clipped=clipped)
