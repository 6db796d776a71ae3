"""Argument checks shared by the keyword API.

Every public function validates its arguments here *before* any C kernel runs, so a rejected
call never writes to ``out=``, and every error names the argument that was wrong.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from . import _core

# Integer output types of the kernels, and the suffix of their ufunc names.
INT_CODES: Dict[np.dtype, str] = {
    np.dtype(np.uint8): "u8",
    np.dtype(np.int8): "s8",
    np.dtype(np.uint16): "u16",
    np.dtype(np.int16): "s16",
    np.dtype(np.int32): "s32",
}


# (min, max, bits) of the integer kernel types; np.iinfo is slow enough to matter per call.
_INFO: Dict[np.dtype, Tuple[int, int, int]] = {
    dt: (int(np.iinfo(dt).min), int(np.iinfo(dt).max), int(np.iinfo(dt).bits)) for dt in INT_CODES}


_F32_MAX = float(np.finfo(np.float32).max)


# An int32 accumulator overflowed (or would overflow) where the hardware would wrap: an
# OverflowError and a ValueError, defined by the C glue (csrc/python/status.c), which raises it.
AccumulatorOverflowError = _core.AccumulatorOverflowError


def int_dtype(dtype: Any, name: str = "dtype") -> Tuple[np.dtype, str]:
    """The integer dtype and its kernel suffix ('u8', 's8', ...)."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{name}: not a dtype: {dtype!r}") from exc
    if dt not in INT_CODES:
        raise TypeError(f"{name} must be one of uint8, int8, uint16, int16, int32; got {dt}")
    return dt, INT_CODES[dt]


def qrange(dtype: np.dtype, qmin: Optional[int] = None, qmax: Optional[int] = None, *,
           bits: Optional[int] = None, narrow_range: bool = False,
           reduce_range: bool = False) -> Tuple[int, int]:
    """The integer range [qmin, qmax] for a dtype, a bit width, narrow_range and reduce_range.

    Explicit qmin/qmax win over bits/narrow_range/reduce_range.
    """
    tmin, tmax, tbits = _INFO[np.dtype(dtype)]
    signed = tmin < 0
    if bits is not None:
        if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
            raise TypeError(f"bits must be an int, got {type(bits).__name__}")
        if not 2 <= int(bits) <= 16:
            raise ValueError(f"bits must be in 2..16, got {bits}")
        if int(bits) > tbits:
            raise ValueError(f"bits={bits} does not fit in dtype {np.dtype(dtype)}")
        b = int(bits)
    else:
        b = tbits
    if reduce_range:
        b -= 1
    lo, hi = (-(1 << (b - 1)), (1 << (b - 1)) - 1) if signed else (0, (1 << b) - 1)
    if narrow_range:
        lo += 1
    if qmin is not None:
        lo = _int_scalar(qmin, "qmin")
    if qmax is not None:
        hi = _int_scalar(qmax, "qmax")
    if lo < tmin or lo > tmax:
        raise ValueError(f"qmin={lo} is outside the range of {np.dtype(dtype)} [{tmin}, {tmax}]")
    if hi < tmin or hi > tmax:
        raise ValueError(f"qmax={hi} is outside the range of {np.dtype(dtype)} [{tmin}, {tmax}]")
    if lo > hi:
        raise ValueError(f"qmin ({lo}) must be <= qmax ({hi})")
    return lo, hi


def _int_scalar(v: Any, name: str) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    return int(v)


def float_input(x: Any, name: str = "x") -> np.ndarray:
    """float32 or float64 data (other real numbers are converted to float32)."""
    a = np.asarray(x)
    if a.dtype in (np.float32, np.float64):
        return a
    if a.dtype == np.float16 or a.dtype.kind in "iu":
        return a.astype(np.float32)
    raise TypeError(f"{name} must be a float32 or float64 array, got dtype {a.dtype}")


def int_input(q: Any, name: str) -> np.ndarray:
    """Integer data of one of the kernel types (uint8, int8, uint16, int16, int32)."""
    a = np.asarray(q)
    if a.dtype in INT_CODES:
        return a
    raise TypeError(f"{name} must be an integer array of dtype uint8, int8, uint16, int16 or "
                    f"int32, got dtype {a.dtype}")


def int32_input(acc: Any, name: str = "acc") -> np.ndarray:
    """int32 accumulators. Other integer dtypes are accepted when every value fits in int32."""
    a = np.asarray(acc)
    if a.dtype == np.int32:
        return a
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an int32 array (accumulators), got dtype {a.dtype}")
    if a.size and (a.min() < -(1 << 31) or a.max() > (1 << 31) - 1):
        raise AccumulatorOverflowError(f"{name} has values outside int32")
    return a.astype(np.int32)


def scale_param(scale: Any, name: str = "scale") -> np.ndarray:
    """float32 scale(s), finite and > 0 after rounding to float32."""
    if isinstance(scale, (float, np.floating)) and not isinstance(scale, np.float16):
        f = float(scale)
        v = np.float32(f) if 0.0 < f <= _F32_MAX else np.float32(0)  # NaN, inf, <= 0 -> 0
        if not v > 0:  # also catches float32 underflow
            raise ValueError(f"{name} must be finite and > 0 (as float32); got {scale}")
        return np.asarray(v)
    a = np.asarray(scale)
    if a.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a real number or array, got dtype {a.dtype}")
    with np.errstate(over="ignore"):
        s = a.astype(np.float32)
    bad = ~(np.isfinite(s) & (s > 0))
    if bad.any():
        idx = _first_index(bad)
        raise ValueError(f"{name} must be finite and > 0 (as float32); got {a[idx] if a.ndim else a}"
                         f"{'' if a.ndim == 0 else f' at index {idx}'}")
    return s


def int_param(v: Any, name: str, lo: int, hi: int) -> np.ndarray:
    """int32 parameter(s) with every value in [lo, hi]."""
    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
        if not lo <= v <= hi:
            raise ValueError(f"{name}={v} is outside [{lo}, {hi}]")
        return np.asarray(v, np.int32)
    a = np.asarray(v)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer or integer array, got dtype {a.dtype}")
    if a.size:
        amin, amax = a.min(), a.max()
        if amin < lo or amax > hi:
            bad = (a < lo) | (a > hi)
            idx = _first_index(bad)
            val = a[idx] if a.ndim else a
            raise ValueError(f"{name}={val}{'' if a.ndim == 0 else f' (index {idx})'} is outside "
                             f"[{lo}, {hi}]")
    return a.astype(np.int32)


def _first_index(mask: np.ndarray):
    if mask.ndim == 0:
        return ()
    flat = int(np.argmax(mask.reshape(-1)))
    return tuple(int(i) for i in np.unravel_index(flat, mask.shape))


def channel_params(shape: Tuple[int, ...], axis: Optional[int], **params: np.ndarray) -> list:
    """Reshape per-channel parameters for broadcasting, and check they broadcast to `shape`.

    With ``axis`` each parameter is a scalar or a 1-D array of length ``shape[axis]``; without it
    each must broadcast to ``shape`` without growing it.
    """
    out = []
    ndim = len(shape)
    if axis is not None:
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"axis must be an int or None, got {type(axis).__name__}")
        if not -ndim <= axis < ndim:
            raise ValueError(f"axis={axis} is out of range for an array of {ndim} dimensions")
        ax = int(axis) % ndim
        for name, p in params.items():
            if p.ndim == 0:
                out.append(p)
                continue
            if p.ndim != 1 or p.shape[0] != shape[ax]:
                raise ValueError(f"{name} has shape {p.shape}; with axis={axis} it must be a "
                                 f"scalar or have length {shape[ax]} (the size of that axis)")
            out.append(p.reshape((-1,) + (1,) * (ndim - ax - 1)))
        return out
    for name, p in params.items():
        if p.ndim == 0:
            out.append(p)
            continue
        try:
            b = np.broadcast_shapes(shape, p.shape)
        except ValueError:
            b = None
        if b != tuple(shape):
            raise ValueError(f"{name} of shape {p.shape} does not broadcast to the data shape "
                             f"{tuple(shape)} (use axis= for per-channel parameters)")
        out.append(p)
    return out


def check_out(out: Optional[np.ndarray], shape: Sequence[int], dtype: np.dtype,
              name: str = "out") -> None:
    if out is None:
        return
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"{name} has dtype {out.dtype}; this call writes {np.dtype(dtype)}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} has shape {out.shape}; this call writes shape {tuple(shape)}")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")


def run_ufunc(ufunc: np.ufunc, args: Sequence[Any], out: Optional[np.ndarray],
              on_error: Callable[[], None]) -> Any:
    """Call a ufunc whose loops flag data errors as 'invalid'; on_error() raises the right one."""
    with np.errstate(invalid="raise"):
        try:
            return ufunc(*args, out=out) if out is not None else ufunc(*args)
        except FloatingPointError:
            pass
    on_error()
    raise RuntimeError(f"{ufunc.__name__} reported an error that could not be located")


def raise_nan(x: np.ndarray, name: str = "x", partial_out: bool = False) -> None:
    nan = np.isnan(x)
    if nan.any():
        idx = _first_index(nan)
        tail = " (out= may be partly written)" if partial_out else ""
        raise ValueError(f"{name} contains NaN at index {idx}; NaN has no quantized value{tail}")
