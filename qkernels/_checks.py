"""Argument checks shared by the keyword API.

Every public function validates its arguments here *before* any C kernel runs, so a rejected
call never writes to ``out=``, and every error names the argument that was wrong.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

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


# ---- threads ------------------------------------------------------------------------------------
def cpu_threads() -> int:
    """The CPUs this process may use (the default thread budget; qkernels.linear.default_threads)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def threads(threads: Optional[int], macs: float = float("inf")) -> int:
    """A ``threads=`` argument as a count: explicit counts are used as given (capped at 256); the
    default (None) is the CPUs this process may use, but no more than one thread per ~1M
    multiply-accumulates (starting a thread costs more than it saves below that; kernels whose
    work is not MACs pass the default and decide in C). Results never depend on the count."""
    if type(threads) is int and threads >= 1:   # fast path of the checks below
        return threads if threads <= 256 else 256
    if threads is None:
        n = cpu_threads()
        return n if macs == float("inf") else max(1, min(n, int(macs // 1_000_000)))
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)):
        raise TypeError(f"threads must be an int or None, got {type(threads).__name__}")
    if int(threads) < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    return min(int(threads), 256)


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


def native(a: np.ndarray) -> np.ndarray:
    """``a`` in the machine's byte order (big-endian data, e.g. from a file, is converted)."""
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


def float_input(x: Any, name: str = "x") -> np.ndarray:
    """float32 or float64 data (other real numbers are converted to float32; any byte order)."""
    a = native(np.asarray(x))
    if a.dtype in (np.float32, np.float64):
        return a
    if a.dtype == np.float16 or a.dtype.kind in "iu":
        return a.astype(np.float32)
    raise TypeError(f"{name} must be a float32 or float64 array, got dtype {a.dtype}")


def int_input(q: Any, name: str) -> np.ndarray:
    """Integer data of one of the kernel types (uint8, int8, uint16, int16, int32; any byte
    order)."""
    a = native(np.asarray(q))
    if a.dtype in INT_CODES:
        return a
    raise TypeError(f"{name} must be an integer array of dtype uint8, int8, uint16, int16 or "
                    f"int32, got dtype {a.dtype}")


def int32_input(acc: Any, name: str = "acc") -> np.ndarray:
    """int32 accumulators. Other integer dtypes are accepted when every value fits in int32."""
    a = native(np.asarray(acc))
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


def reciprocal_scale(s: np.ndarray, name: str, what: str) -> None:
    """For kernels that multiply by ``fl(1/scale)``: that reciprocal must be finite as well.

    A float32 scale at or below 2**-128 (denormal) has an infinite reciprocal, and ``0 * inf`` is
    NaN, which has no quantized value; such scales are rejected (the C kernels agree: they
    return QK_ERR_SCALE, on the SIMD and scalar paths alike).
    """
    with np.errstate(divide="ignore", over="ignore"):
        bad = ~np.isfinite(np.float32(1) / np.asarray(s, np.float32))
    if bad.any():
        idx = _first_index(bad)
        val = np.asarray(s)[idx] if np.ndim(s) else s
        raise ValueError(f"{name}={float(val):.9g}{'' if np.ndim(s) == 0 else f' (index {idx})'} "
                         f"is too small for {what}: 1/{name} overflows float32 (a denormal "
                         f"scale); it must be > 2**-128 (about 2.94e-39)")


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


def overlaps(out: Optional[np.ndarray], *inputs: Any) -> bool:
    """True when ``out`` may share memory with one of the input arrays (np.may_share_memory:
    exact for simple layouts, conservative otherwise; a false alarm only costs a copy)."""
    if out is None:
        return False
    for a in inputs:  # a loop, not any(generator): this runs on every kernel call
        if isinstance(a, np.ndarray) and np.may_share_memory(out, a):
            return True
    return False


def kernel_out(out: Optional[np.ndarray], shape: Sequence[int], dtype: Any,
               *inputs: Any) -> np.ndarray:
    """The array a C kernel should write: ``out`` itself when it is C-contiguous and shares no
    memory with any input, else a new array (the caller copies it into ``out`` afterwards).

    As NumPy does for ufuncs: an output that overlaps an input is computed into a temporary, so
    a kernel never reads an input element that it has already overwritten.
    """
    if out is not None and out.flags.c_contiguous and not overlaps(out, *inputs):
        return out
    return np.empty(shape, dtype)


def _per_channel_last(ufunc: np.ufunc, args: Sequence[Any],
                      out: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """An elementwise ufunc call whose parameters are per channel on the last axis of a
    C-contiguous data array, run by ``_core._channels`` (tiles transposed to channel-major
    order, one kernel call per channel and tile: the same kernel on the same elements with the
    same parameters, the same bits, instead of one kernel call per element, which is what NumPy's
    inner loop along the channels makes of it). Returns the result, ``None`` when a kernel
    reported an error, or ``NotImplemented`` when the call is not of that form."""
    x = args[0]
    if ufunc.signature is not None or ufunc.nout != 1 or not isinstance(x, np.ndarray) \
            or x.ndim < 2 or not x.flags.c_contiguous:
        return NotImplemented
    c = x.shape[-1]
    per_channel = False
    params = []
    for p in args[1:]:
        a = np.asarray(p)
        if a.ndim == 1 and a.shape[0] == c:
            per_channel = True
        elif a.ndim != 0:
            return NotImplemented
        params.append(a)
    if not per_channel or c < 2 or x.size < 2 * c:
        return NotImplemented
    if out is not None and (out.shape != x.shape or not out.flags.writeable):
        return NotImplemented
    if ufunc is _core.dequantize and len(params) == 2 and params[0].dtype == np.float32 \
            and params[1].dtype == np.int32 and params[0].ndim == 1 and params[1].ndim == 1:
        # per-channel dequantize: one kernel pass row by row, the channels' parameters as
        # vectors (qk_dequantize_channels_<in>_f32: the same products)
        return _core._dequantize_channels(x.reshape(-1, c), params[0], params[1])
    return _core._channels(ufunc, x.reshape(-1, c), tuple(params))


def run_ufunc(ufunc: np.ufunc, args: Sequence[Any], out: Optional[np.ndarray],
              on_error: Callable[[], None]) -> Any:
    """Call a ufunc whose loops flag data errors as 'invalid'; on_error() raises the right one.

    An ``out`` that overlaps an input is filled only when the call succeeded (through a
    temporary), so that on_error() still sees the inputs as they were given.
    """
    res = _per_channel_last(ufunc, args, out)
    if res is None:
        on_error()
        raise RuntimeError(f"{ufunc.__name__} reported an error that could not be located")
    if res is not NotImplemented:
        res = res.reshape(args[0].shape)
        if out is None:
            return res
        out[...] = res
        return out
    direct = out is not None and not overlaps(out, *args)
    with np.errstate(invalid="raise"):
        try:
            if direct:
                return ufunc(*args, out=out)
            res = ufunc(*args)
            if out is None:
                return res
            out[...] = res
            return out
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


def _scale_args(x_scale: Any, w_scale: Any, out_scale: Any) -> str:
    def show(v: Any) -> str:
        a = np.asarray(v)
        return f"{float(a):.9g}" if a.ndim == 0 else f"array of {a.size}"
    return f"x_scale={show(x_scale)}, w_scale={show(w_scale)}, out_scale={show(out_scale)}"


def requant_scale(scale: Optional[np.ndarray], x_scale: Any, w_scale: Any, out_scale: Any) -> None:
    """The float32 requantization scale a preset derived from x_scale * w_scale / out_scale must
    be finite and > 0: a ratio that overflows (or underflows to 0) names the three scales."""
    if scale is None:
        return
    bad = ~(np.isfinite(scale) & (scale > 0))
    if bad.any():
        o = int(np.argmax(bad))
        what = "overflows float32" if not np.isfinite(scale[o]) else "underflows to 0 in float32"
        raise ValueError(f"the requantization scale x_scale * w_scale / out_scale {what} (output "
                         f"channel {o}: {_scale_args(x_scale, w_scale, out_scale)})")


def requant_multiplier(real: np.ndarray, x_scale: Any, w_scale: Any, out_scale: Any) -> None:
    """A real multiplier for fixed-point requantization: requantize takes shift <= 30, which
    TFLite's QuantizeMultiplier gives exactly for m < 2**30 - 0.25 (above, the mantissa rounds
    up to 2**31 or the exponent is larger)."""
    bad = ~(real < 2.0 ** 30 - 0.25)
    if bad.any():
        o = int(np.argmax(bad))
        raise ValueError(f"x_scale * w_scale / out_scale = {float(real[o]):.9g} (output channel "
                         f"{o}: {_scale_args(x_scale, w_scale, out_scale)}) is too large for "
                         f"fixed-point requantization: it needs a shift above 30 (it must be "
                         f"< 2**30 - 0.25)")


_SSIZE_MAX = (1 << 63) - 1


def pair(v: Any, name: str, minimum: int) -> Tuple[int, int]:
    """An int or a pair of ints (stride, dilation, padding), each >= minimum, as a pair."""
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        t = (int(v), int(v))
    elif isinstance(v, (tuple, list)) and len(v) == 2:
        t = (_int_scalar(v[0], name), _int_scalar(v[1], name))
    else:
        raise TypeError(f"{name} must be an int or a pair of ints, got {v!r}")
    if min(t) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v!r}")
    return t


def padding4(v: Any) -> Tuple[int, int, int, int]:
    """Conv padding: int, (ph, pw) or (top, left, bottom, right), as (top, left, bottom, right)."""
    if isinstance(v, (tuple, list)) and len(v) == 4:
        t = tuple(_int_scalar(a, "padding") for a in v)
        if min(t) < 0:
            raise ValueError(f"padding must be >= 0, got {v!r}")
        return t  # type: ignore[return-value]
    ph, pw = pair(v, "padding", 0)
    return ph, pw, ph, pw


def conv_geometry(in_hw: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
                  padding: Sequence[int], dilation: Sequence[int]) -> None:
    """Limits of a conv geometry (the C library's, in Python integers): every stride, padding
    and dilation below 2**63, the padded extents in + pads and the dilated kernel extents
    dil * (k - 1) + 1 at most 2**63 - 1. Each error names the argument and the value."""
    for name, vals in (("stride", stride), ("padding", padding), ("dilation", dilation)):
        for v in vals:
            if v > _SSIZE_MAX:
                raise ValueError(f"{name}={tuple(vals)} is too large: each value must be below "
                                 f"2**63 (got {v})")
    pt, pl, pb, pr = padding
    for axis, n, p0, p1, d, k in (("height", in_hw[0], pt, pb, dilation[0], kernel[0]),
                                  ("width", in_hw[1], pl, pr, dilation[1], kernel[1])):
        if n + p0 + p1 > _SSIZE_MAX:
            raise ValueError(f"padding={tuple(padding)} is too large: the padded {axis} "
                             f"{n} + {p0} + {p1} = {n + p0 + p1} exceeds 2**63 - 1")
        if d * (k - 1) + 1 > _SSIZE_MAX:
            raise ValueError(f"dilation={tuple(dilation)} is too large: the dilated kernel "
                             f"{axis} {d} * ({k} - 1) + 1 exceeds 2**63 - 1")


def output_size(shape: Sequence[int], dtype: Any, what: str) -> None:
    """An output whose byte size cannot exist (beyond 2**63 - 1) is refused by name; smaller
    ones that do not fit in memory raise NumPy's MemoryError (which gives the size)."""
    n = int(np.prod([int(d) for d in shape], dtype=object)) * np.dtype(dtype).itemsize
    if n > _SSIZE_MAX:
        raise ValueError(f"{what}: the output would have shape {tuple(int(d) for d in shape)} "
                         f"({n} bytes, beyond any memory); check stride, padding and dilation")
