"""Integer fully-connected and 2-D convolution (SPEC.md section 5), with runtime presets.

``acc[o] = sum_k (x[k] - x_zp) * (w[o, k] - w_zp[o]) (+ int32 bias)`` is exact in int32, then the
preset's requantization gives the output integers bit for bit as the runtime it is named after:

============  ==============================  ===========================  ======================
preset        activations / weights           bias                         requantization
============  ==============================  ===========================  ======================
fbgemm        uint8 / int8                    float, added in float         fp32 (FBGEMM, PyTorch
                                                                           ``fbgemm``/``x86``)
qnnpack       uint8 / int8                    float, quantized to int32     fp32 (PyTorch QNNPACK)
onnxruntime   uint8 or int8 / int8 or uint8   int32                         fp32 (ONNX Runtime)
tflite        int8 / int8 symmetric           int32                         double_round (or
                                                                           ``scheme="single_round"``)
pow2          any / any, power-of-two scales  int32                         shift (``rounding=``)
============  ==============================  ===========================  ======================

Explicit ``multiplier=`` / ``shift=`` (M0 and the TFLite shift, per tensor or per channel) replace
the preset's derivation with fixed-point requantization (``scheme`` double_round by default).

Weights may be passed raw or prepacked (:func:`pack_linear`, :func:`pack_conv2d`). Before running,
the worst-case accumulator ``max|x - x_zp| * sum_k |w[o,k] - w_zp[o]| + |bias[o]|`` (max over the
activation type's whole range) is checked against int32: beyond it the call raises
:class:`AccumulatorOverflowError`, unless ``overflow="wrap"`` asks for two's-complement wrapping.
"""
from __future__ import annotations

import os
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

from . import _checks as C
from . import _core

ArrayLike = Any
DTypeLike = Any

PRESETS = ("fbgemm", "qnnpack", "onnxruntime", "tflite", "pow2")
SCHEMES = ("double_round", "single_round")
ROUNDINGS = ("half_up", "half_even", "half_away", "floor")

# C enums (csrc/include/qkernels.h, qk_requant_scheme and qk_status)
_REQ_NONE, _REQ_FP32, _REQ_DOUBLE, _REQ_SINGLE = 0, 1, 2, 3
_REQ_SHIFT = {"half_up": 4, "half_even": 5, "half_away": 6, "floor": 7}
_ST_OK, _ST_OVERFLOW, _ST_NOMEM = 0, 7, 9
_ST_MESSAGES = {1: "input contains NaN", 2: "scale must be finite and > 0",
                3: "zero point outside its range", 4: "bad activation range", 5: "shift out of range",
                6: "multiplier invalid", 8: "invalid argument"}


def _default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _threads(threads: Optional[int], macs: float = float("inf")) -> int:
    """Explicit counts are used as given (capped at 256); the default is the CPUs this process
    may use, but no more than one thread per ~1M multiply-accumulates (starting a thread costs
    more than it saves below that). Results never depend on the count."""
    if type(threads) is int and threads >= 1:   # fast path of the checks below
        return threads if threads <= 256 else 256
    if threads is None:
        return max(1, min(_default_threads(), int(macs // 1_000_000)))
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)):
        raise TypeError(f"threads must be an int or None, got {type(threads).__name__}")
    if int(threads) < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    return min(int(threads), 256)


def _choice(value: str, allowed: Tuple[str, ...], name: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(repr(a) for a in allowed)}; "
                         f"got {value!r}")
    return value


def _q8_input(a: Any, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype not in (np.uint8, np.int8):
        raise TypeError(f"{name} must be a uint8 or int8 array, got dtype {arr.dtype}")
    return arr


def _zp_vector(zp: Any, n: int, dtype: np.dtype, name: str) -> np.ndarray:
    info = np.iinfo(dtype)
    z = C.int_param(zp, name, int(info.min), int(info.max))
    if z.ndim == 0:
        return np.full(n, int(z), np.int32)
    if z.shape != (n,):
        raise ValueError(f"{name} has shape {z.shape}; it must be a scalar or have length {n} "
                         f"(one per output channel)")
    return np.ascontiguousarray(z, np.int32)


def _scale_vector(s: Any, n: int, name: str) -> np.ndarray:
    v = C.scale_param(s, name)
    if v.ndim == 0:
        return np.full(n, v, np.float32)
    if v.shape != (n,):
        raise ValueError(f"{name} has shape {v.shape}; it must be a scalar or have length {n} "
                         f"(one per output channel)")
    return np.ascontiguousarray(v, np.float32)


class _Packed:
    """Common part of the packed-weight objects (immutable after construction)."""

    __slots__ = ("_cap", "w_dtype", "out_channels", "k", "w_zero_point", "w_scale", "abs_sum",
                 "per_channel_zp", "nbytes", "_memo")

    def _init(self, cap: Any, w: np.ndarray, w2d: np.ndarray, zp: np.ndarray,
              w_scale: Optional[np.ndarray], per_channel_zp: bool) -> None:
        self._cap = cap
        self.w_dtype = w.dtype
        self.out_channels = int(w2d.shape[0])
        self.k = int(w2d.shape[1])
        self.w_zero_point = zp
        self.w_scale = w_scale
        self.per_channel_zp = per_channel_zp
        self.abs_sum = np.abs(w2d.astype(np.int64) - zp[:, None].astype(np.int64)).sum(axis=1)
        self.nbytes = int(_core._packed_bytes(cap))
        # Checked, derived per-call parameters (requantization scales, int32 bias, ranges, conv
        # geometry) keyed by the exact call arguments and x's shape and dtype, so that repeated
        # calls skip the Python-side checks and derivation. Only calls whose checks all passed are
        # stored, with private copies of their arrays; at most _MEMO_SIZE entries (FIFO).
        self._memo: dict = {}


_MEMO_SIZE = 16


_SIMPLE_TYPES = frozenset((bool, int, float, str, type(None)))


def _key_of(v: Any) -> Any:
    """A hashable, exact key for a call argument (arrays by dtype, shape and bytes)."""
    t = type(v)
    if t in _SIMPLE_TYPES:
        return (t, v)
    if t is np.ndarray:
        if v.dtype.hasobject:
            raise TypeError("unkeyable")
        return (v.dtype.str, v.shape, v.tobytes())
    if isinstance(v, np.generic):
        if v.dtype.hasobject:
            raise TypeError("unkeyable")
        return (v.dtype.str, v.tobytes())
    if isinstance(v, np.dtype):
        return ("dtype", v.str)
    if isinstance(v, type):
        return ("type", v)
    if isinstance(v, (list, tuple)):
        return (t, tuple(_key_of(a) for a in v))
    raise TypeError("unkeyable")


def _memo_key(bias: Any, *args: Any) -> Any:
    """Exact key of the call arguments, or None when one cannot be keyed (no memoisation).

    Python scalars, strings and None enter by value, tagged by type (``1``, ``1.0`` and ``True``
    differ); arrays and NumPy scalars by dtype, shape and bytes, so mutating an array in place
    between calls gives a different key (never a stale entry). ``bias`` (usually the one array)
    is keyed on its own so that the common all-scalar rest needs no per-argument Python work."""
    types = tuple(map(type, args))
    if not _SIMPLE_TYPES.issuperset(types):
        try:
            args = tuple([v if type(v) in _SIMPLE_TYPES else _key_of(v) for v in args])
        except (TypeError, ValueError):
            return None
    tb = type(bias)
    if tb is np.ndarray and not bias.dtype.hasobject:
        bkey: Any = (tb, bias.dtype, bias.shape, bias.tobytes())
    else:
        try:
            bkey = (tb, _key_of(bias))
        except (TypeError, ValueError):
            return None
    return (types, args, bkey)


def _owned(a: Any) -> Any:
    """A private copy of an array kept in the memo (it may alias a caller's array)."""
    return None if a is None else np.array(a, copy=True)


def _memo_put(p: "_Packed", key: Any, value: tuple) -> None:
    if key is None:
        return
    if len(p._memo) >= _MEMO_SIZE:
        p._memo.pop(next(iter(p._memo)), None)
    p._memo[key] = value


def _memo_epi(e: "_Epi") -> "_Epi":
    """The epilogue with its arrays copied, so that a memo entry can never see a caller's later
    in-place change (e.g. an int32 bias or a multiplier array passed through without a copy)."""
    c = _Epi()
    c.scheme = e.scheme
    c.bias, c.fbias, c.scale = _owned(e.bias), _owned(e.fbias), _owned(e.scale)
    c.mult, c.shift = _owned(e.mult), _owned(e.shift)
    return c


class PackedLinear(_Packed):
    """Weights of a fully-connected layer packed once for :func:`qlinear` / :func:`linear_int32`.

    Holds the int16 ``w - w_zp`` panels of the C kernel, the per-channel zero points and scales,
    and ``abs_sum[o] = sum_k |w[o,k] - w_zp[o]|`` (the accumulator bound term). Make it with
    :func:`pack_linear`.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return (f"PackedLinear(out_features={self.out_channels}, in_features={self.k}, "
                f"w_dtype={self.w_dtype}, nbytes={self.nbytes})")


class PackedConv2d(_Packed):
    """OIHW convolution weights packed once for :func:`qconv2d` / :func:`conv2d_int32`."""

    __slots__ = ("groups", "kernel_size", "in_channels")

    def __repr__(self) -> str:
        return (f"PackedConv2d(out_channels={self.out_channels}, in_channels={self.in_channels}, "
                f"kernel_size={self.kernel_size}, groups={self.groups}, w_dtype={self.w_dtype}, "
                f"nbytes={self.nbytes})")


def pack_linear(w: ArrayLike, *, w_zero_point: ArrayLike = 0,
                w_scale: Optional[ArrayLike] = None) -> PackedLinear:
    """Pack (N, K) int8/uint8 weights once for repeated :func:`qlinear` calls.

    Args:
        w: weights, shape (out_features, in_features), int8 or uint8.
        w_zero_point: per-tensor (scalar) or per-output-channel (length N) zero point(s).
        w_scale: optional per-tensor or per-channel scale(s), kept for the requantization so that
            calls need not repeat it.

    Example:
        >>> import numpy as np, qkernels
        >>> p = qkernels.pack_linear(np.array([[1, -2], [3, 4]], np.int8), w_scale=0.5)
        >>> qkernels.linear_int32(np.array([[10, 20]], np.uint8), p, x_zero_point=10)
        array([[-20,  40]], dtype=int32)
    """
    w = _q8_input(w, "w")
    if w.ndim != 2:
        raise ValueError(f"w must have shape (out_features, in_features); got shape {w.shape}")
    n, k = w.shape
    if n == 0 or k == 0:
        raise ValueError(f"w must have out_features >= 1 and in_features >= 1; got {w.shape}")
    zp = _zp_vector(w_zero_point, n, w.dtype, "w_zero_point")
    scale = None if w_scale is None else _scale_vector(w_scale, n, "w_scale")
    w2d = np.ascontiguousarray(w)
    cap = _core._pack_linear(w2d, zp)
    p = PackedLinear.__new__(PackedLinear)
    p._init(cap, w, w2d, zp, scale, np.ndim(w_zero_point) > 0)
    return p


def pack_conv2d(w: ArrayLike, *, groups: int = 1, w_zero_point: ArrayLike = 0,
                w_scale: Optional[ArrayLike] = None) -> PackedConv2d:
    """Pack OIHW int8/uint8 convolution weights once for repeated :func:`qconv2d` calls.

    Args:
        w: weights (out_channels, in_channels // groups, kh, kw).
        groups: convolution groups (out_channels must be divisible by it; depthwise is
            groups == in_channels).
        w_zero_point, w_scale: per-tensor or per-output-channel, as in :func:`pack_linear`.

    Example:
        >>> import numpy as np, qkernels
        >>> p = qkernels.pack_conv2d(np.ones((2, 1, 3, 3), np.int8), groups=2)
        >>> p.kernel_size, p.groups
        ((3, 3), 2)
    """
    w = _q8_input(w, "w")
    if w.ndim != 4:
        raise ValueError(f"w must be OIHW (out_channels, in_channels/groups, kh, kw); "
                         f"got shape {w.shape}")
    g = C._int_scalar(groups, "groups")
    if g < 1:
        raise ValueError(f"groups must be >= 1, got {g}")
    o, cpg, kh, kw = w.shape
    if min(w.shape) == 0:
        raise ValueError(f"w has an empty dimension: shape {w.shape}")
    if o % g != 0:
        raise ValueError(f"out_channels ({o}) must be divisible by groups ({g})")
    zp = _zp_vector(w_zero_point, o, w.dtype, "w_zero_point")
    scale = None if w_scale is None else _scale_vector(w_scale, o, "w_scale")
    w4 = np.ascontiguousarray(w)
    cap = _core._pack_conv2d(w4, zp, g)
    p = PackedConv2d.__new__(PackedConv2d)
    p._init(cap, w, w4.reshape(o, -1), zp, scale, np.ndim(w_zero_point) > 0)
    p.groups = g
    p.kernel_size = (int(kh), int(kw))
    p.in_channels = int(cpg) * g
    return p


# ---- requantization parameters per preset -------------------------------------------------
def _int32_bias(bias: Any, n: int, preset: str) -> Optional[np.ndarray]:
    if bias is None:
        return None
    b = np.asarray(bias)
    if b.dtype.kind not in "iu":
        raise TypeError(f"bias must be an int32 array for preset {preset!r} (quantized with scale "
                        f"x_scale * w_scale, zero point 0); got dtype {b.dtype}")
    if b.shape != (n,):
        raise ValueError(f"bias has shape {b.shape}; it must have length {n} (out channels)")
    if b.size and (b.min() < -(1 << 31) or b.max() > (1 << 31) - 1):
        raise ValueError("bias has values outside int32")
    return np.ascontiguousarray(b, np.int32)


def _float_bias(bias: Any, n: int, preset: str) -> Optional[np.ndarray]:
    if bias is None:
        return None
    b = np.asarray(bias)
    if b.dtype.kind != "f":
        raise TypeError(f"bias must be a float array for preset {preset!r} (PyTorch keeps the "
                        f"bias in float); got dtype {b.dtype}")
    if b.shape != (n,):
        raise ValueError(f"bias has shape {b.shape}; it must have length {n} (out channels)")
    b = b.astype(np.float32)
    if not np.isfinite(b).all():
        raise ValueError("bias must be finite")
    return b


def _is_pow2(s: np.ndarray) -> np.ndarray:
    m, _ = np.frexp(s.astype(np.float64))
    return m == 0.5


class _Epi:
    __slots__ = ("scheme", "bias", "fbias", "scale", "mult", "shift")

    def __init__(self) -> None:
        self.scheme = _REQ_NONE
        self.bias = self.fbias = self.scale = self.mult = self.shift = None


def _need(v: Any, name: str, preset: str) -> Any:
    if v is None:
        raise TypeError(f"{name} is required for preset {preset!r} (or pass multiplier= and "
                        f"shift=)")
    return v


def _epilogue(preset: str, n: int, per_channel_w: bool, x_scale: Any, w_scale: Any,
              out_scale: Any, bias: Any, multiplier: Any, shift: Any, scheme: Optional[str],
              rounding: str) -> _Epi:
    e = _Epi()
    if (multiplier is None) != (shift is None):
        raise TypeError("multiplier and shift must be given together")
    if multiplier is not None:
        sch = _choice(scheme or "double_round", SCHEMES, "scheme")
        m = C.int_param(multiplier, "multiplier", 0, (1 << 31) - 1)
        sh = C.int_param(shift, "shift", -31, 30)
        e.mult = _vec_i32(m, n, "multiplier")
        e.shift = _vec_i32(sh, n, "shift")
        e.scheme = _REQ_DOUBLE if sch == "double_round" else _REQ_SINGLE
        e.bias = _int32_bias(bias, n, "explicit multiplier/shift")
        return e
    xs = C.scale_param(_need(x_scale, "x_scale", preset), "x_scale")
    if xs.ndim != 0:
        raise ValueError(f"x_scale must be a scalar (per-tensor activations); got shape {xs.shape}")
    ws = _scale_vector(_need(w_scale, "w_scale", preset), n, "w_scale")
    os_ = C.scale_param(_need(out_scale, "out_scale", preset), "out_scale")
    if os_.ndim != 0:
        raise ValueError(f"out_scale must be a scalar; got shape {os_.shape}")
    xs, os_ = np.float32(xs), np.float32(os_)
    with np.errstate(over="ignore", under="ignore"):
        xw = (xs * ws).astype(np.float32)  # fl(in_s * w_s)
    if preset in ("fbgemm", "qnnpack", "onnxruntime") and not (np.isfinite(xw).all() and (xw > 0).all()):
        raise ValueError("x_scale * w_scale is not a positive finite float32")
    if preset == "fbgemm":
        if scheme is not None:
            raise ValueError("scheme= applies to fixed-point requantization (tflite, or explicit "
                             "multiplier/shift)")
        e.scheme = _REQ_FP32
        with np.errstate(over="ignore", under="ignore"):
            e.scale = (xw / os_).astype(np.float32)                      # fl(fl(in_s*w_s)/out_s)
        fb = _float_bias(bias, n, preset)
        if fb is not None:
            with np.errstate(over="ignore", under="ignore"):
                if per_channel_w:
                    e.fbias = (fb / xw).astype(np.float32)              # AVX2 per-channel: divide
                else:
                    rcp = np.float32(1.0 / np.float64(xw[0]))           # fl(1.0 / (double)s)
                    e.fbias = (fb * rcp).astype(np.float32)
            if not np.isfinite(e.fbias).all():
                raise ValueError("bias / (x_scale * w_scale) overflows float32")
    elif preset == "qnnpack":
        if scheme is not None:
            raise ValueError("scheme= applies to fixed-point requantization")
        e.scheme = _REQ_FP32
        with np.errstate(over="ignore", under="ignore"):
            e.scale = (xw * np.float32(np.float32(1.0) / os_)).astype(np.float32)
        fb = _float_bias(bias, n, preset)
        if fb is not None:
            # torch.quantize_per_tensor / per_channel(bias, x_scale * w_scale, 0, qint32)
            from ._elementwise import quantize
            bs = xw if per_channel_w else np.float32(xw[0])
            e.bias = quantize(fb, bs, 0, dtype=np.int32, flavor="torch")
    elif preset == "onnxruntime":
        if scheme is not None:
            raise ValueError("scheme= applies to fixed-point requantization")
        e.scheme = _REQ_FP32
        with np.errstate(over="ignore", under="ignore"):
            e.scale = (xw / os_).astype(np.float32)
        e.bias = _int32_bias(bias, n, preset)
    elif preset == "tflite":
        sch = _choice(scheme or "double_round", SCHEMES, "scheme")
        if per_channel_w:
            real = np.float64(xs) * ws.astype(np.float64) / np.float64(os_)
        else:
            real = np.full(n, np.float64(np.float32(xs * ws[0])) / np.float64(os_))
        from ._elementwise import quantize_multiplier
        C.requant_multiplier(real, x_scale, w_scale, out_scale)
        e.mult, e.shift = (np.ascontiguousarray(a, np.int32) for a in quantize_multiplier(real))
        e.scheme = _REQ_DOUBLE if sch == "double_round" else _REQ_SINGLE
        e.bias = _int32_bias(bias, n, preset)
    else:  # pow2
        if scheme is not None:
            raise ValueError("scheme= applies to fixed-point requantization; pow2 uses rounding=")
        for name, v in (("x_scale", np.atleast_1d(xs)), ("w_scale", ws), ("out_scale", np.atleast_1d(os_))):
            bad = ~_is_pow2(v)
            if bad.any():
                val = np.format_float_positional(np.float32(v[int(np.argmax(bad))]))
                raise ValueError(f"preset 'pow2' needs power-of-two scales; {name}={val} is not "
                                 f"a power of two")
        e2 = lambda v: np.frexp(np.float64(v))[1].astype(np.int64) - 1  # noqa: E731
        sh = e2(os_) - e2(xs) - e2(ws)   # acc * 2^-(sh)
        if (sh < -31).any() or (sh > 31).any():
            raise ValueError(f"pow2 shift out_scale / (x_scale * w_scale) = 2^{int(sh.max())} is "
                             f"outside [-31, 31]")
        e.shift = np.ascontiguousarray(np.broadcast_to(sh, (n,)), np.int32)
        e.scheme = _REQ_SHIFT[_choice(rounding, ROUNDINGS, "rounding")]
        e.bias = _int32_bias(bias, n, preset)
    return e


def _vec_i32(a: np.ndarray, n: int, name: str) -> np.ndarray:
    if a.ndim == 0:
        return np.full(n, int(a), np.int32)
    if a.shape != (n,):
        raise ValueError(f"{name} has shape {a.shape}; it must be a scalar or have length {n}")
    return np.ascontiguousarray(a, np.int32)


_PRESET_TYPES = {
    "fbgemm": ((np.uint8,), (np.int8,)),
    "qnnpack": ((np.uint8,), (np.int8,)),
    "onnxruntime": ((np.uint8, np.int8), (np.int8, np.uint8)),
    "tflite": ((np.int8,), (np.int8,)),
    "pow2": ((np.uint8, np.int8), (np.int8, np.uint8)),
}


def _check_types(preset: str, x: np.ndarray, w_dtype: np.dtype, w_zp: np.ndarray) -> None:
    xt, wt = _PRESET_TYPES[preset]
    if x.dtype not in xt:
        raise TypeError(f"x must be {' or '.join(np.dtype(t).name for t in xt)} for preset "
                        f"{preset!r}, got {x.dtype}")
    if w_dtype not in wt:
        raise TypeError(f"w must be {' or '.join(np.dtype(t).name for t in wt)} for preset "
                        f"{preset!r}, got {w_dtype}")
    if preset == "tflite" and (w_zp != 0).any():
        raise ValueError("w_zero_point must be 0 for preset 'tflite' (symmetric weights)")


def _out_range(preset: str, x_dtype: np.dtype, out_dtype: Any, out_zero_point: Any,
               act_min: Any, act_max: Any) -> Tuple[np.dtype, int, int, int]:
    if out_dtype is None:
        odt = np.dtype(np.uint8) if preset in ("fbgemm", "qnnpack") else (
            np.dtype(np.int8) if preset == "tflite" else np.dtype(x_dtype))
    else:
        try:
            odt = np.dtype(out_dtype)
        except TypeError as exc:
            raise TypeError(f"out_dtype: not a dtype: {out_dtype!r}") from exc
        if odt not in (np.uint8, np.int8):
            raise TypeError(f"out_dtype must be uint8 or int8, got {odt}")
    info = np.iinfo(odt)
    lo = int(info.min) if act_min is None else C._int_scalar(act_min, "act_min")
    hi = int(info.max) if act_max is None else C._int_scalar(act_max, "act_max")
    if lo < info.min or hi > info.max or lo > hi:
        raise ValueError(f"act_min/act_max [{lo}, {hi}] must be an ordered range within {odt}")
    ozp = C._int_scalar(_need(out_zero_point, "out_zero_point", preset), "out_zero_point") \
        if not isinstance(out_zero_point, np.ndarray) else int(C.int_param(out_zero_point, "out_zero_point", -2**31, 2**31 - 1))
    if not info.min <= ozp <= info.max:
        raise ValueError(f"out_zero_point={ozp} is outside {odt} [{info.min}, {info.max}]")
    if not lo <= ozp <= hi:
        raise ValueError(f"out_zero_point={ozp} is outside [act_min, act_max] = [{lo}, {hi}]")
    return odt, ozp, lo, hi


def _x_zero_point(x_zero_point: Any, x_dtype: np.dtype) -> int:
    info = np.iinfo(x_dtype)
    z = C.int_param(x_zero_point, "x_zero_point", int(info.min), int(info.max))
    if z.ndim != 0:
        raise ValueError("x_zero_point must be a scalar (per-tensor activations)")
    return int(z)


def _bound_check(p: _Packed, x_dtype: np.dtype, xzp: int, bias: Optional[np.ndarray],
                 overflow: str) -> None:
    if _choice(overflow, ("raise", "wrap"), "overflow") == "wrap":
        return
    info = np.iinfo(x_dtype)
    xmax = max(xzp - int(info.min), int(info.max) - xzp)
    bound = xmax * p.abs_sum + (np.abs(bias.astype(np.int64)) if bias is not None else 0)
    if (bound > (1 << 31) - 1).any():
        o = int(np.argmax(bound))
        raise C.AccumulatorOverflowError(
            f"the int32 accumulator can overflow: for output channel {o} the worst case "
            f"max|x - x_zero_point| * sum_k |w - w_zero_point| + |bias| = {xmax} * "
            f"{int(p.abs_sum[o])} + ... = {int(bound[o])} > 2**31 - 1 (pass overflow='wrap' for "
            f"two's-complement wrapping)")


def _raise_status(st: int, what: str) -> None:
    if st == _ST_OK:
        return
    if st == _ST_OVERFLOW:
        raise C.AccumulatorOverflowError(
            f"{what}: a double_round left shift (shift > 0) overflowed int32 (TFLite would wrap; "
            f"pass overflow='wrap' to do the same)")
    if st == _ST_NOMEM:
        raise MemoryError(f"{what}: out of memory")
    raise ValueError(f"{what}: {_ST_MESSAGES.get(st, f'status {st}')}")


def _check_packed_zero_point(w: "_Packed", w_zero_point: Any) -> None:
    """A w_zero_point given with packed weights must be the one they were packed with."""
    if w_zero_point is not None:
        zp = _zp_vector(w_zero_point, w.out_channels, w.w_dtype, "w_zero_point")
        if not np.array_equal(zp, w.w_zero_point):
            raise ValueError("w_zero_point differs from the one the weights were packed with")


def _as_linear_packed(w: Any, w_zero_point: Any, w_scale: Any) -> PackedLinear:
    if isinstance(w, PackedLinear):
        _check_packed_zero_point(w, w_zero_point)
        return w
    if isinstance(w, PackedConv2d):
        raise TypeError("w is a PackedConv2d; qlinear needs raw (N, K) weights or a PackedLinear")
    return pack_linear(w, w_zero_point=0 if w_zero_point is None else w_zero_point,
                       w_scale=w_scale)


def _prepare_x(x: Any, k: int, name: str = "x") -> np.ndarray:
    x = _q8_input(x, name)
    if x.ndim < 1:
        raise ValueError(f"{name} must have at least one dimension (..., K)")
    if x.shape[-1] != k:
        raise ValueError(f"{name} has K = {x.shape[-1]} (last dimension) but w has K = {k} "
                         f"(in_features)")
    return x


def _run_linear(p: PackedLinear, x: np.ndarray, xzp: int, e: _Epi, odt: np.dtype, ozp: int,
                lo: int, hi: int, wrap: bool, threads: int, out: Optional[np.ndarray]) -> np.ndarray:
    lead = x.shape[:-1]
    x2 = np.ascontiguousarray(x.reshape(-1, p.k))
    shape = lead + (p.out_channels,)
    if out is not None:
        C.check_out(out, shape, odt)
    y = C.kernel_out(out, shape, odt, x2, e.bias, e.fbias, e.scale, e.mult, e.shift)
    st = _core._linear(p._cap, x2, xzp, y, e.scheme, e.bias, e.fbias, e.scale, e.mult, e.shift,
                       ozp, lo, hi, int(wrap), threads)
    if st != _ST_OK:
        _raise_status(st, "qlinear")
    if out is not None and y is not out:
        out[...] = y
        return out
    return y


def _call_params(p: "_Packed", preset: str, x: np.ndarray, x_scale: Any, x_zero_point: Any,
                 w_scale: Any, out_scale: Any, out_zero_point: Any, out_dtype: Any,
                 act_min: Any, act_max: Any, bias: Any, multiplier: Any, shift: Any,
                 scheme: Optional[str], rounding: str, overflow: str) -> tuple:
    """Checks and derived parameters of one qlinear/qconv2d call (memoised on the packed weights):
    input zero point, epilogue, output type, zero point and clamping range."""
    ws = p.w_scale if w_scale is None else w_scale
    C.pow2_rounding(preset, rounding, multiplier is not None, ROUNDINGS)
    if multiplier is None:
        _check_types(preset, x, p.w_dtype, p.w_zero_point)
    xzp = _x_zero_point(x_zero_point, x.dtype)
    odt, ozp, lo, hi = _out_range(preset, x.dtype, out_dtype, out_zero_point, act_min, act_max)
    per_ch = ws is not None and np.ndim(ws) > 0
    e = _epilogue(preset, p.out_channels, per_ch, x_scale, ws, out_scale, bias, multiplier,
                  shift, scheme, rounding)
    C.requant_scale(e.scale, x_scale, ws, out_scale)
    _bound_check(p, x.dtype, xzp, e.bias, overflow)
    return xzp, e, odt, ozp, lo, hi


def qlinear(x: ArrayLike, w: Union[ArrayLike, PackedLinear], bias: Optional[ArrayLike] = None, *,
            x_scale: Optional[ArrayLike] = None, x_zero_point: ArrayLike = 0,
            w_scale: Optional[ArrayLike] = None, w_zero_point: Optional[ArrayLike] = None,
            out_scale: Optional[ArrayLike] = None, out_zero_point: ArrayLike = 0,
            preset: str = "tflite", out_dtype: DTypeLike = None, act_min: Optional[int] = None,
            act_max: Optional[int] = None, multiplier: Optional[ArrayLike] = None,
            shift: Optional[ArrayLike] = None, scheme: Optional[str] = None,
            rounding: str = "half_up", overflow: str = "raise", threads: Optional[int] = None,
            out: Optional[np.ndarray] = None) -> np.ndarray:
    """Quantized fully-connected layer: ``y[..., o] = requant(sum_k (x - x_zp)(w[o] - w_zp[o]) + b)``.

    Bit-exact with the runtime named by ``preset`` (see the module docstring): ``"fbgemm"``
    (``torch.ao.nn.quantized.Linear`` with the fbgemm or x86 engine), ``"qnnpack"``,
    ``"onnxruntime"`` (``QLinearMatMul``), ``"tflite"`` (reference ``FullyConnected``) or ``"pow2"``.

    Args:
        x: activations (..., K), uint8 or int8 as the preset allows.
        w: weights (N, K) int8 (uint8 allowed for onnxruntime/pow2), or a :class:`PackedLinear`.
        bias: (N,) float for fbgemm/qnnpack (as PyTorch stores it), int32 otherwise.
        x_scale, x_zero_point: per-tensor activation quantization.
        w_scale, w_zero_point: per-tensor or per-output-channel (length N); taken from the packed
            weights when omitted.
        out_scale, out_zero_point: output quantization.
        out_dtype: uint8 or int8 (default: uint8 for fbgemm/qnnpack, int8 for tflite, x's dtype
            otherwise).
        act_min, act_max: output clamp in the integer domain (ReLU: ``act_min=out_zero_point``).
        multiplier, shift: explicit fixed-point requantization (M0, TFLite shift), per tensor or
            per channel; they replace the preset's derivation (bias must then be int32).
        scheme: "double_round" (default) or "single_round", for tflite and explicit multipliers.
        rounding: pow2 rounding: "half_up" (default), "half_even", "half_away", "floor".
        overflow: "raise" (default) or "wrap" (two's-complement int32 accumulators).
        threads: worker threads (default: the CPUs this process may use). Results do not
            depend on it.
        out: optional output array.

    Raises:
        AccumulatorOverflowError: the worst-case accumulator exceeds int32.
        TypeError / ValueError: wrong dtypes, mismatched K, bad scales or zero points (the
            message names the argument).

    Example:
        >>> import numpy as np, qkernels
        >>> x = np.array([[130, 120, 128]], np.uint8)
        >>> w = np.array([[10, -20, 5], [1, 2, 3]], np.int8)
        >>> qkernels.qlinear(x, w, np.float32([0.5, -0.25]), x_scale=0.05, x_zero_point=128,
        ...                  w_scale=0.02, out_scale=0.01, out_zero_point=100, preset="fbgemm")
        array([[168,  74]], dtype=uint8)
    """
    preset = _choice(preset, PRESETS, "preset")
    x = _q8_input(x, "x")
    # Memo of the checked, derived parameters on the packed weights, keyed by the exact values of
    # every argument that the checks and derivations read (x only through its dtype and K). A hit
    # is a call whose checks all passed before, so it goes straight to the kernel.
    key = hit = None
    if isinstance(w, PackedLinear):
        key = _memo_key(bias, x_scale, x_zero_point, w_scale, w_zero_point, out_scale,
                        out_zero_point, out_dtype, act_min, act_max, multiplier, shift, scheme,
                        rounding, overflow)
        if key is not None:   # preset is a checked str; x's dtype is uint8 or int8
            key = (x.shape[-1:], x.dtype.char, preset, key)
            hit = w._memo.get(key)
    if hit is None:
        p = _as_linear_packed(w, w_zero_point, w_scale)
        x = _prepare_x(x, p.k)
        xzp, e, odt, ozp, lo, hi = _call_params(
            p, preset, x, x_scale, x_zero_point, w_scale, out_scale, out_zero_point, out_dtype,
            act_min, act_max, bias, multiplier, shift, scheme, rounding, overflow)
        if key is not None:
            e = _memo_epi(e)
            _memo_put(p, key, (xzp, e, odt, ozp, lo, hi))
    else:
        p = w
        xzp, e, odt, ozp, lo, hi = hit
    return _run_linear(p, x, xzp, e, odt, ozp, lo, hi, overflow == "wrap",
                       _threads(threads, x.size * p.out_channels), out)


def linear_int32(x: ArrayLike, w: Union[ArrayLike, PackedLinear], bias: Optional[ArrayLike] = None,
                 *, x_zero_point: ArrayLike = 0, w_zero_point: Optional[ArrayLike] = None,
                 overflow: str = "raise", threads: Optional[int] = None,
                 out: Optional[np.ndarray] = None) -> np.ndarray:
    """Exact int32 accumulators ``sum_k (x - x_zp)(w[o] - w_zp[o]) + bias[o]``, no requantization.

    For flows that requantize their own way (e.g. :func:`qkernels.requantize_shift`). Also
    available as the gufunc ``qkernels.ufuncs.linear_int32`` with signature
    ``(m,k),(n,k),(),(n)->(m,n)`` (x, w, x_zero_point, w_zero_point; no bias).

    Example:
        >>> import numpy as np, qkernels
        >>> qkernels.linear_int32(np.array([[1, 2, 3]], np.int8), np.array([[1, 1, 1]], np.int8),
        ...                       np.array([10], np.int32))
        array([[16]], dtype=int32)
    """
    x = _q8_input(x, "x")
    p = _as_linear_packed(w, w_zero_point, None)
    x = _prepare_x(x, p.k)
    xzp = _x_zero_point(x_zero_point, x.dtype)
    e = _Epi()
    e.bias = _int32_bias(bias, p.out_channels, "linear_int32")
    _bound_check(p, x.dtype, xzp, e.bias, overflow)
    return _run_linear(p, x, xzp, e, np.dtype(np.int32), 0, 0, 0, overflow == "wrap",
                       _threads(threads, x.size * p.out_channels), out)


# ---- convolution ------------------------------------------------------------------------------
def _pair(v: Any, name: str, minimum: int) -> Tuple[int, int]:
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        t = (int(v), int(v))
    elif isinstance(v, (tuple, list)) and len(v) == 2:
        t = (C._int_scalar(v[0], name), C._int_scalar(v[1], name))
    else:
        raise TypeError(f"{name} must be an int or a pair of ints, got {v!r}")
    if min(t) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v!r}")
    return t


def _padding(v: Any) -> Tuple[int, int, int, int]:
    """int, (ph, pw) or (top, left, bottom, right)."""
    if isinstance(v, (tuple, list)) and len(v) == 4:
        t = tuple(C._int_scalar(a, "padding") for a in v)
        if min(t) < 0:
            raise ValueError(f"padding must be >= 0, got {v!r}")
        return t  # type: ignore[return-value]
    ph, pw = _pair(v, "padding", 0)
    return ph, pw, ph, pw


def _as_conv_packed(w: Any, groups: Optional[int], w_zero_point: Any, w_scale: Any) -> PackedConv2d:
    if isinstance(w, PackedConv2d):
        if groups is not None and C._int_scalar(groups, "groups") != w.groups:
            raise ValueError(f"groups={groups} differs from the packed weights' groups={w.groups}")
        _check_packed_zero_point(w, w_zero_point)
        return w
    if isinstance(w, PackedLinear):
        raise TypeError("w is a PackedLinear; qconv2d needs OIHW weights or a PackedConv2d")
    return pack_conv2d(w, groups=1 if groups is None else groups,
                       w_zero_point=0 if w_zero_point is None else w_zero_point, w_scale=w_scale)


def _conv_geometry(x: np.ndarray, p: PackedConv2d, stride: Any, padding: Any,
                   dilation: Any) -> Tuple[Tuple[int, ...], Tuple[int, int]]:
    if x.ndim != 4:
        raise ValueError(f"x must be NCHW (4 dimensions); got shape {x.shape}")
    if x.shape[1] % p.groups != 0:
        raise ValueError(f"x has {x.shape[1]} input channels, not divisible by groups={p.groups}")
    if x.shape[1] != p.in_channels:
        raise ValueError(f"x has {x.shape[1]} input channels but w expects "
                         f"{p.in_channels} (= {p.in_channels // p.groups} per group x groups "
                         f"{p.groups})")
    sh, sw = _pair(stride, "stride", 1)
    dh, dw = _pair(dilation, "dilation", 1)
    pt, pl, pb, pr = _padding(padding)
    kh, kw = p.kernel_size
    C.conv_geometry(x.shape[2:], (kh, kw), (sh, sw), (pt, pl, pb, pr), (dh, dw))
    hp, wp = x.shape[2] + pt + pb, x.shape[3] + pl + pr
    eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"x has an empty spatial dimension: shape {x.shape}")
    if eh > hp or ew > wp:
        raise ValueError(f"kernel ({kh}x{kw}, dilation {dh}x{dw}: {eh}x{ew}) is larger than the "
                         f"padded input ({hp}x{wp})")
    oh, ow = (hp - eh) // sh + 1, (wp - ew) // sw + 1
    return (sh, sw, pt, pl, pb, pr, dh, dw), (oh, ow)


def _run_conv(p: PackedConv2d, x: np.ndarray, xzp: int, geo: Tuple[int, ...], ohw: Tuple[int, int],
              e: _Epi, odt: np.dtype, ozp: int, lo: int, hi: int, wrap: bool, threads: int,
              out: Optional[np.ndarray]) -> np.ndarray:
    shape = (x.shape[0], p.out_channels) + ohw
    C.output_size(shape, odt, "qconv2d")
    if out is not None:
        C.check_out(out, shape, odt)
    x = np.ascontiguousarray(x)
    y = C.kernel_out(out, shape, odt, x, e.bias, e.fbias, e.scale, e.mult, e.shift)
    st = _core._conv2d(p._cap, x, xzp, *geo, y, e.scheme, e.bias, e.fbias,
                       e.scale, e.mult, e.shift, ozp, lo, hi, int(wrap), threads)
    if st != _ST_OK:
        _raise_status(st, "qconv2d")
    if out is not None and y is not out:
        out[...] = y
        return out
    return y


def qconv2d(x: ArrayLike, w: Union[ArrayLike, PackedConv2d], bias: Optional[ArrayLike] = None, *,
            stride: Union[int, Sequence[int]] = 1, padding: Union[int, Sequence[int]] = 0,
            dilation: Union[int, Sequence[int]] = 1, groups: Optional[int] = None,
            x_scale: Optional[ArrayLike] = None, x_zero_point: ArrayLike = 0,
            w_scale: Optional[ArrayLike] = None, w_zero_point: Optional[ArrayLike] = None,
            out_scale: Optional[ArrayLike] = None, out_zero_point: ArrayLike = 0,
            preset: str = "tflite", out_dtype: DTypeLike = None, act_min: Optional[int] = None,
            act_max: Optional[int] = None, multiplier: Optional[ArrayLike] = None,
            shift: Optional[ArrayLike] = None, scheme: Optional[str] = None,
            rounding: str = "half_up", overflow: str = "raise", threads: Optional[int] = None,
            out: Optional[np.ndarray] = None) -> np.ndarray:
    """Quantized 2-D convolution, NCHW in and out, OIHW weights; presets as :func:`qlinear`.

    ``stride``, ``dilation``: int or (h, w); ``padding``: int, (h, w) or (top, left, bottom,
    right), padding taps read ``x_zero_point`` (they contribute 0); ``groups`` (default 1, or the
    packed weights' groups) including depthwise (groups == in_channels). The other keywords are
    those of :func:`qlinear`; ``"fbgemm"`` matches ``torch.ao.nn.quantized.Conv2d``, ``"onnxruntime"``
    matches ``QLinearConv``, ``"tflite"`` the reference integer ``Conv``/``DepthwiseConv``.

    Example:
        >>> import numpy as np, qkernels
        >>> x = np.arange(16, dtype=np.int8).reshape(1, 1, 4, 4)
        >>> w = np.ones((1, 1, 3, 3), np.int8)
        >>> qkernels.qconv2d(x, w, x_scale=1.0, w_scale=1.0, out_scale=4.0, padding=1)
        array([[[[ 3,  5,  6,  5],
                 [ 7, 12, 14, 10],
                 [13, 21, 23, 16],
                 [11, 17, 18, 13]]]], dtype=int8)
    """
    preset = _choice(preset, PRESETS, "preset")
    x = _q8_input(x, "x")
    # As in qlinear, plus the geometry: the key holds x's shape and stride/padding/dilation/groups.
    key = hit = None
    if isinstance(w, PackedConv2d):
        key = _memo_key(bias, stride, padding, dilation, groups, x_scale, x_zero_point, w_scale,
                        w_zero_point, out_scale, out_zero_point, out_dtype, act_min, act_max,
                        multiplier, shift, scheme, rounding, overflow)
        if key is not None:   # preset is a checked str; x's dtype is uint8 or int8
            key = (x.shape, x.dtype.char, preset, key)
            hit = w._memo.get(key)
    if hit is None:
        p = _as_conv_packed(w, groups, w_zero_point, w_scale)
        geo, ohw = _conv_geometry(x, p, stride, padding, dilation)
        xzp, e, odt, ozp, lo, hi = _call_params(
            p, preset, x, x_scale, x_zero_point, w_scale, out_scale, out_zero_point, out_dtype,
            act_min, act_max, bias, multiplier, shift, scheme, rounding, overflow)
        if key is not None:
            e = _memo_epi(e)
            _memo_put(p, key, (xzp, e, odt, ozp, lo, hi, geo, ohw))
    else:
        p = w
        xzp, e, odt, ozp, lo, hi, geo, ohw = hit
    return _run_conv(p, x, xzp, geo, ohw, e, odt, ozp, lo, hi, overflow == "wrap",
                     _threads(threads, x.shape[0] * ohw[0] * ohw[1] * p.out_channels * p.k), out)


def conv2d_int32(x: ArrayLike, w: Union[ArrayLike, PackedConv2d], bias: Optional[ArrayLike] = None,
                 *, stride: Union[int, Sequence[int]] = 1, padding: Union[int, Sequence[int]] = 0,
                 dilation: Union[int, Sequence[int]] = 1, groups: Optional[int] = None,
                 x_zero_point: ArrayLike = 0, w_zero_point: Optional[ArrayLike] = None,
                 overflow: str = "raise", threads: Optional[int] = None,
                 out: Optional[np.ndarray] = None) -> np.ndarray:
    """Exact int32 convolution accumulators (NCHW), ``sum (x - x_zp)(w - w_zp) + bias``.

    Example:
        >>> import numpy as np, qkernels
        >>> x = np.full((1, 2, 3, 3), 5, np.uint8)
        >>> qkernels.conv2d_int32(x, np.ones((1, 2, 3, 3), np.int8), x_zero_point=3)[0, 0]
        array([[36]], dtype=int32)
    """
    x = _q8_input(x, "x")
    p = _as_conv_packed(w, groups, w_zero_point, None)
    geo, ohw = _conv_geometry(x, p, stride, padding, dilation)
    xzp = _x_zero_point(x_zero_point, x.dtype)
    e = _Epi()
    e.bias = _int32_bias(bias, p.out_channels, "conv2d_int32")
    _bound_check(p, x.dtype, xzp, e.bias, overflow)
    return _run_conv(p, x, xzp, geo, ohw, e, np.dtype(np.int32), 0, 0, 0, overflow == "wrap",
                     _threads(threads, x.shape[0] * ohw[0] * ohw[1] * p.out_channels * p.k), out)
