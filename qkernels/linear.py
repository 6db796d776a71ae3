"""Integer fully-connected and 2-D convolution (SPEC.md section 5), with runtime presets.

``acc[o] = sum_k (x[k] - x_zp) * (w[o, k] - w_zp[o]) (+ int32 bias)`` is exact in int32, then the
preset's requantization gives the output integers bit for bit as the runtime it is named after
(:mod:`qkernels.presets`: fbgemm, qnnpack, onnxruntime, tflite, pow2, or a user's own
:class:`~qkernels.presets.Preset`). Explicit ``multiplier=`` / ``shift=`` (M0 and the TFLite shift,
per tensor or per channel) replace the preset's derivation with fixed-point requantization
(``scheme`` double_round by default).

Three ways in, one arithmetic:

- :func:`qlinear` / :func:`qconv2d`: keyword calls; with prepacked weights (:func:`pack_linear`,
  :func:`pack_conv2d`) the checked, derived parameters are memoised on the packed object.
- :func:`prepare_qlinear` / :func:`prepare_qconv2d`: every argument but ``x`` fixed once, checked
  once; the returned :class:`PreparedQLinear` / :class:`PreparedQConv2d` is called per batch (what
  ``qlinear`` uses inside, and what the PyTorch bridge runs).
- :func:`linear_int32` / :func:`conv2d_int32`: the exact int32 accumulators.
- :func:`linear_float`: float32 out, ``fmaf(acc, scale, float_bias)`` fused into the GEMM
  (PyTorch's dynamic Linear; :func:`linear_float_runner` is its per-call form).

Before running, the worst-case accumulator ``max|x - x_zp| * sum_k |w[o,k] - w_zp[o]| + |bias[o]|``
(max over the activation type's whole range) is checked against int32: beyond it the call raises
:class:`AccumulatorOverflowError`, unless ``overflow="wrap"`` asks for two's-complement wrapping.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

from . import _checks as C
from . import _core
from . import presets as P
from .presets import Epilogue, Preset

ArrayLike = Any
DTypeLike = Any
PresetLike = Union[str, Preset]

#: The built-in preset names (:mod:`qkernels.presets`).
PRESETS = P.names()
SCHEMES = P.SCHEMES
ROUNDINGS = P.ROUNDINGS



# ---- threads ------------------------------------------------------------------------------------
def default_threads() -> int:
    """The CPUs this process may use (the default thread budget).

    Example:
        >>> import qkernels.linear as L
        >>> L.default_threads() >= 1
        True
    """
    return C.cpu_threads()


def check_threads(threads: Optional[int]) -> Optional[int]:
    """``None`` or a positive int (capped at 256): a ``threads=`` argument, checked.

    Example:
        >>> import qkernels.linear as L
        >>> L.check_threads(2), L.check_threads(None)
        (2, None)
    """
    if threads is None:
        return None
    return _threads(threads)


#: threads=None: the CPUs this process may use, at most one per ~1M multiply-accumulates
_threads = C.threads


def _q8_input(a: Any, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype not in (np.uint8, np.int8):
        raise TypeError(f"{name} must be a uint8 or int8 array (or int16 for qlinear / qconv2d: "
                        f"TFLite 16x8, CMSIS-NN s16), got dtype {arr.dtype}")
    return arr


def _is_int16(x: Any) -> bool:
    return getattr(x, "dtype", None) == np.int16


def _unpacked(w: Any) -> Any:
    if isinstance(w, _Packed):
        raise TypeError("w is packed (for 8-bit x); int16 x takes the int8 weight array")
    return w


def _zp_vector(zp: Any, n: int, dtype: np.dtype, name: str) -> np.ndarray:
    info = np.iinfo(dtype)
    z = C.int_param(zp, name, int(info.min), int(info.max))
    if z.ndim == 0:
        return np.full(n, int(z), np.int32)
    if z.shape != (n,):
        raise ValueError(f"{name} has shape {z.shape}; it must be a scalar or have length {n} "
                         f"(one per output channel)")
    return np.ascontiguousarray(z, np.int32)


# ---- packed weights -----------------------------------------------------------------------------
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
        # The prepared calls (PreparedQLinear / PreparedQConv2d) of qlinear / qconv2d, keyed by
        # the exact call arguments and x's dtype, so that repeated calls skip the Python-side
        # checks and derivation. Only calls whose checks all passed are stored; prepared calls own
        # copies of their arrays; at most _MEMO_SIZE entries (FIFO).
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
    if isinstance(v, Preset):
        return ("preset", v)
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


def _memo_put(p: "_Packed", key: Any, value: tuple) -> None:
    if key is None:
        return
    if len(p._memo) >= _MEMO_SIZE:
        p._memo.pop(next(iter(p._memo)), None)
    p._memo[key] = value


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
    scale = None if w_scale is None else P._scale_vector(w_scale, n, "w_scale")
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
    scale = None if w_scale is None else P._scale_vector(w_scale, o, "w_scale")
    w4 = np.ascontiguousarray(w)
    cap = _core._pack_conv2d(w4, zp, g)
    p = PackedConv2d.__new__(PackedConv2d)
    p._init(cap, w, w4.reshape(o, -1), zp, scale, np.ndim(w_zero_point) > 0)
    p.groups = g
    p.kernel_size = (int(kh), int(kw))
    p.in_channels = int(cpg) * g
    return p


# ---- checks and derivation of one call ----------------------------------------------------------
def _out_range(preset: Preset, x_dtype: np.dtype, out_dtype: Any, out_zero_point: Any,
               act_min: Any, act_max: Any) -> Tuple[np.dtype, int, int, int]:
    if out_dtype is None:
        odt = preset.default_out_dtype(x_dtype)
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
    if out_zero_point is None:
        raise TypeError(f"out_zero_point is required for preset {preset.name!r}")
    ozp = C._int_scalar(out_zero_point, "out_zero_point") \
        if not isinstance(out_zero_point, np.ndarray) else int(C.int_param(out_zero_point, "out_zero_point", -2**31, 2**31 - 1))
    if not info.min <= ozp <= info.max:
        raise ValueError(f"out_zero_point={ozp} is outside {odt} [{info.min}, {info.max}]")
    # [act_min, act_max] need not contain the zero point: y = clamp(R(acc) + zp, act_min,
    # act_max), as TFLite and CMSIS-NN compute it (e.g. zp -128 with act_min -109)
    return odt, ozp, lo, hi


def _x_zero_point(x_zero_point: Any, x_dtype: np.dtype) -> int:
    info = np.iinfo(x_dtype)
    z = C.int_param(x_zero_point, "x_zero_point", int(info.min), int(info.max))
    if z.ndim != 0:
        raise ValueError("x_zero_point must be a scalar (per-tensor activations)")
    return int(z)


def _bound_check(p: _Packed, x_dtype: np.dtype, xzp: int, bias: Optional[np.ndarray],
                 overflow: str) -> None:
    if P._choice(overflow, ("raise", "wrap"), "overflow") == "wrap":
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


def _x_dtype(x_dtype: Any) -> np.dtype:
    try:
        dt = np.dtype(x_dtype)
    except TypeError as exc:
        raise TypeError(f"x_dtype: not a dtype: {x_dtype!r}") from exc
    if dt not in (np.uint8, np.int8):
        raise TypeError(f"x must be a uint8 or int8 array, got dtype {dt}")
    return dt


def _explicit_epilogue(n: int, multiplier: Any, shift: Any, scheme: Optional[str],
                       rounding: Optional[str], bias: Any) -> Optional[Epilogue]:
    """The output stage of the caller's own M0 / shift (None when neither is given), checked."""
    if (multiplier is None) != (shift is None):
        raise TypeError("multiplier and shift must be given together")
    if multiplier is None:
        return None
    if rounding is not None:
        raise ValueError("rounding= applies to shift requantization (pow2); explicit "
                         "multiplier/shift requantize in fixed point (scheme=)")
    return P.explicit_epilogue(n, multiplier, shift, scheme, bias)


def _epilogue_of(p: _Packed, preset: Preset, x_dtype: np.dtype, x_scale: Any, w_scale: Any,
                 out_scale: Any, bias: Any, multiplier: Any, shift: Any, scheme: Optional[str],
                 rounding: Optional[str]) -> Epilogue:
    """The output stage of one call: the preset's derivation, or the caller's M0 / shift."""
    e = _explicit_epilogue(p.out_channels, multiplier, shift, scheme, rounding, bias)
    if e is not None:
        return e
    preset = preset.for_op("linear" if isinstance(p, PackedLinear) else "conv")
    preset.check_operands(x_dtype, p.w_dtype, p.w_zero_point)
    ws = p.w_scale if w_scale is None else w_scale
    per_ch = ws is not None and np.ndim(ws) > 0
    return preset.epilogue(p.out_channels, per_ch, x_scale, ws, out_scale, bias, scheme, rounding)


def _finish(y: np.ndarray, out: Optional[np.ndarray]) -> np.ndarray:
    """After a C call (which raises its own errors): ``out`` (filled) or ``y``."""
    if out is not None and y is not out:
        out[...] = y
        return out
    return y


# ---- prepared calls -----------------------------------------------------------------------------
class _Prepared:
    """Common part of the prepared calls: the packed weights and the checked, derived output
    stage. Immutable after construction; safe to share between threads."""

    __slots__ = ("packed", "preset", "x_dtype", "x_zero_point", "epilogue", "out_dtype",
                 "out_zero_point", "act_min", "act_max", "wrap", "_args")

    def _init(self, p: _Packed, preset: Optional[Preset], x_dtype: np.dtype, xzp: int,
              e: Epilogue, odt: np.dtype, ozp: int, lo: int, hi: int, wrap: bool) -> None:
        self.packed = p
        self.preset = preset
        self.x_dtype = x_dtype
        self.x_zero_point = xzp
        self.epilogue = e
        self.out_dtype = odt
        self.out_zero_point = ozp
        self.act_min = lo
        self.act_max = hi
        self.wrap = wrap
        # the C call's operands after (packed, x, x_zp, [geometry], y)
        self._args = e.args() + (ozp, lo, hi, int(wrap))

    def _runner(self, c_call: Any, geometry: Tuple[int, ...], shape_of: Any) -> Any:
        """``run(x, threads) -> y``: the C call (which raises its own errors) with every operand
        but x bound."""
        cap, head, args, odt = self.packed._cap, (self.x_zero_point,) + tuple(geometry), \
            self._args, self.out_dtype
        empty = np.empty

        def run(x: np.ndarray, threads: int) -> np.ndarray:
            y = empty(shape_of(x), odt)
            c_call(cap, x, *head, y, *args, threads)
            return y
        return run

    def _out(self, shape: Tuple[int, ...], out: Optional[np.ndarray], x: np.ndarray) -> np.ndarray:
        """The array the C call writes: ``out`` itself when it can, else a new one (also when
        ``out`` shares memory with ``x``: computed into a temporary, as NumPy ufuncs do, so the
        kernel never reads an input element it has already overwritten)."""
        if out is None:
            return np.empty(shape, self.out_dtype)
        C.check_out(out, shape, self.out_dtype)
        return C.kernel_out(out, shape, self.out_dtype, x)

    def _x(self, x: Any) -> np.ndarray:
        if type(x) is not np.ndarray:
            x = np.asarray(x)
        if x.dtype != self.x_dtype:
            raise TypeError(f"x has dtype {x.dtype}; this call was prepared for {self.x_dtype}")
        return x


def _prepare(p: _Packed, preset: Any, x_dtype: Any, x_scale: Any, x_zero_point: Any, w_scale: Any,
             out_scale: Any, out_zero_point: Any, out_dtype: Any, act_min: Any, act_max: Any,
             bias: Any, multiplier: Any, shift: Any, scheme: Optional[str], rounding: Optional[str],
             overflow: str, into: _Prepared) -> _Prepared:
    pr = P.get(preset)
    xdt = _x_dtype(x_dtype)
    e = _epilogue_of(p, pr, xdt, x_scale, w_scale, out_scale, bias, multiplier, shift, scheme,
                     rounding)
    xzp = _x_zero_point(x_zero_point, xdt)
    odt, ozp, lo, hi = _out_range(pr, xdt, out_dtype, out_zero_point, act_min, act_max)
    _bound_check(p, xdt, xzp, e.bias, overflow)
    into._init(p, pr, xdt, xzp, e.copy(), odt, ozp, lo, hi, overflow == "wrap")
    return into


def _int32_call(p: _Packed, x_dtype: np.dtype, x_zero_point: Any, bias: Any, overflow: str,
                into: _Prepared) -> _Prepared:
    """The prepared call of linear_int32 / conv2d_int32: no requantization, int32 out."""
    xzp = _x_zero_point(x_zero_point, x_dtype)
    e = Epilogue()
    e.bias = P.int32_bias(bias, p.out_channels, "int32 accumulators")
    _bound_check(p, x_dtype, xzp, e.bias, overflow)
    into._init(p, None, x_dtype, xzp, e.copy(), np.dtype(np.int32), 0, 0, 0, overflow == "wrap")
    return into


class PreparedQLinear(_Prepared):
    """``qlinear`` with every argument but ``x`` fixed and checked (see :func:`prepare_qlinear`).

    Call it as ``prepared(x, threads=None, out=None)`` with x of shape (..., K) and the dtype it
    was prepared for; attributes: ``packed``, ``preset``, ``epilogue`` (the C output stage),
    ``x_zero_point``, ``out_dtype``, ``out_zero_point``, ``act_min``, ``act_max``.
    """

    __slots__ = ()

    @property
    def macs_per_row(self) -> int:
        """Multiply-accumulates per row of x."""
        return self.packed.out_channels * self.packed.k

    def runner(self) -> Any:
        """A bare runner ``run(x2d, threads) -> y`` for C-contiguous (m, K) inputs of the prepared
        dtype (the C call checks the layout): what the PyTorch bridge calls per batch."""
        n = self.packed.out_channels
        return self._runner(_core._linear, (), lambda x2: (x2.shape[0], n))

    def __call__(self, x: ArrayLike, *, threads: Optional[int] = None,
                 out: Optional[np.ndarray] = None) -> np.ndarray:
        x = self._x(x)
        p = self.packed
        if x.ndim < 1 or x.shape[-1] != p.k:
            _prepare_x(x, p.k)
        lead = x.shape[:-1]
        x2 = x if x.ndim == 2 and x.flags.c_contiguous else np.ascontiguousarray(x.reshape(-1, p.k))
        y = self._out(lead + (p.out_channels,), out, x2)
        _core._linear(p._cap, x2, self.x_zero_point, y, *self._args,
                      _threads(threads, x2.shape[0] * p.out_channels * p.k))
        return _finish(y, out)

    def __repr__(self) -> str:
        return (f"PreparedQLinear({self.packed.out_channels}x{self.packed.k}, preset="
                f"{self.preset.name if self.preset else None!r}, x={self.x_dtype}, "
                f"out={self.out_dtype}, scheme={self.epilogue.scheme_name})")


_GEOMETRY_CACHE = 16


class PreparedQConv2d(_Prepared):
    """``qconv2d`` with every argument but ``x`` fixed and checked (see :func:`prepare_qconv2d`).

    Call it as ``prepared(x, threads=None, out=None)`` with NCHW x of the dtype it was prepared
    for; the output size of each input shape is derived once and kept. Attributes: those of
    :class:`PreparedQLinear`, plus ``stride``, ``padding`` (top, left, bottom, right) and
    ``dilation``.
    """

    __slots__ = ("stride", "padding", "dilation", "_geo")

    def output_shape(self, x_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        """NCHW output shape for an input shape (checked)."""
        return (x_shape[0], self.packed.out_channels) + self._geometry(x_shape)[1]

    def macs(self, x_shape: Tuple[int, ...]) -> int:
        """Multiply-accumulates of one call on an input of this shape."""
        ohw = self._geometry(x_shape)[1]
        return x_shape[0] * ohw[0] * ohw[1] * self.packed.out_channels * self.packed.k

    def _geometry(self, shape: Tuple[int, ...]) -> Tuple[Tuple[int, ...], Tuple[int, int]]:
        g = self._geo.get(shape)
        if g is None:
            g = _conv_geometry(shape, self.packed, self.stride, self.padding, self.dilation)
            C.output_size((shape[0], self.packed.out_channels) + g[1], self.out_dtype, "qconv2d")
            if len(self._geo) >= _GEOMETRY_CACHE:
                self._geo.pop(next(iter(self._geo)), None)
            self._geo[shape] = g
        return g

    def runner(self, x_shape: Tuple[int, ...]) -> Any:
        """A bare runner ``run(x, threads) -> y`` for C-contiguous NCHW inputs of this shape and
        the prepared dtype (checked here once; the C call checks the layout): what the PyTorch
        bridge calls per batch."""
        geo, ohw = self._geometry(tuple(x_shape))
        shape = (x_shape[0], self.packed.out_channels) + ohw
        return self._runner(_core._conv2d, geo, lambda x: shape)

    def add_runner(self, x_shape: Tuple[int, ...], conv_scale: float, other_scale: float,
                   other_zero_point: int, out_scale: float, out_zero_point: int,
                   relu: bool = False) -> Any:
        """A bare runner ``run(x, other, threads) -> y`` of this conv with PyTorch's quantized
        add (``relu``: add_relu) of its output and ``other`` fused into the call
        (``qk_conv2d_add``): ``y = qops.qadd(conv(x), other, conv_scale, out_zp_of_conv,
        other_scale, other_zero_point, out_scale, out_zero_point, relu)`` element for element,
        with the conv's output the same bits as ``runner(x_shape)`` gives, the add run in the
        same C call right after the conv wrote it. ``conv_scale``: the scale of the conv's output (its
        zero point is :attr:`out_zero_point`); ``other``: C-contiguous, the output's shape and
        dtype (8-bit), not sharing memory with the output. The C call checks the add's
        parameters as :func:`qkernels.qops.qadd` does and raises its errors.

        Example:
            >>> import numpy as np, qkernels as qk
            >>> from qkernels import qops
            >>> w = np.full((2, 1, 1, 1), 3, np.int8)
            >>> c = qk.prepare_qconv2d(w, x_dtype=np.uint8, x_scale=0.5, w_scale=0.5,
            ...                        out_scale=0.25, preset="fbgemm", out_dtype=np.uint8)
            >>> x, r = np.full((1, 1, 2, 2), 4, np.uint8), np.full((1, 2, 2, 2), 8, np.uint8)
            >>> y = c.add_runner(x.shape, 0.25, 0.5, 0, 1.0, 0, relu=True)(x, r, 1)
            >>> bool((y == qops.qadd(c(x), r, 0.25, 0, 0.5, 0, 1.0, 0, relu=True)).all())
            True
        """
        geo, ohw = self._geometry(tuple(x_shape))
        shape = (x_shape[0], self.packed.out_channels) + ohw
        if self.out_dtype not in (np.dtype(np.uint8), np.dtype(np.int8)):
            raise ValueError(f"a fused add needs an 8-bit conv output, not {self.out_dtype}")
        cap, head, args, odt = self.packed._cap, (self.x_zero_point,) + tuple(geo), \
            self._args, self.out_dtype
        params = (float(conv_scale), float(other_scale), int(other_zero_point), float(out_scale),
                  int(out_zero_point), int(bool(relu)))
        call, empty = _core._conv2d, np.empty

        def run(x: np.ndarray, other: np.ndarray, threads: int) -> np.ndarray:
            y = empty(shape, odt)
            call(cap, x, *head, y, *args, threads, (other,) + params)
            return y
        return run

    def runner_into(self, x_shape: Tuple[int, ...]) -> Any:
        """A bare runner ``run(x, y, threads) -> y`` that writes into ``y``: an NCHW array of
        the output shape and dtype, C-contiguous but for its batch stride (e.g. the channel slice
        ``buf[:, c0:c0 + out_channels]`` of a larger array, where a concatenation's inputs are
        written in place); nothing else of its base is written. The C call checks the layout.

        Example:
            >>> import numpy as np, qkernels as qk
            >>> w = np.ones((2, 3, 1, 1), np.int8)
            >>> conv = qk.prepare_qconv2d(w, x_dtype=np.uint8, x_scale=1.0, w_scale=1.0,
            ...                           out_scale=1.0, out_dtype=np.uint8, preset="fbgemm")
            >>> buf = np.zeros((2, 5, 1, 1), np.uint8)
            >>> _ = conv.runner_into((2, 3, 1, 1))(np.ones((2, 3, 1, 1), np.uint8), buf[:, 1:3], 1)
            >>> buf[:, :, 0, 0]
            array([[0, 3, 3, 0, 0],
                   [0, 3, 3, 0, 0]], dtype=uint8)
        """
        geo = self._geometry(tuple(x_shape))[0]
        cap, head, args, c_call = self.packed._cap, (self.x_zero_point,) + tuple(geo), \
            self._args, _core._conv2d

        def run(x: np.ndarray, y: np.ndarray, threads: int) -> np.ndarray:
            c_call(cap, x, *head, y, *args, threads)
            return y
        return run

    def __call__(self, x: ArrayLike, *, threads: Optional[int] = None,
                 out: Optional[np.ndarray] = None) -> np.ndarray:
        x = self._x(x)
        geo, ohw = self._geometry(x.shape)
        p = self.packed
        nb = x.shape[0]
        if not x.flags.c_contiguous:
            x = np.ascontiguousarray(x)
        y = self._out((nb, p.out_channels) + ohw, out, x)
        _core._conv2d(p._cap, x, self.x_zero_point, *geo, y, *self._args,
                      _threads(threads, nb * ohw[0] * ohw[1] * p.out_channels * p.k))
        return _finish(y, out)

    def __repr__(self) -> str:
        p = self.packed
        return (f"PreparedQConv2d({p.out_channels}x{p.in_channels}x{p.kernel_size}, stride="
                f"{self.stride}, padding={self.padding}, dilation={self.dilation}, groups="
                f"{p.groups}, preset={self.preset.name if self.preset else None!r}, "
                f"out={self.out_dtype}, scheme={self.epilogue.scheme_name})")


def prepare_qlinear(w: Union[ArrayLike, PackedLinear], bias: Optional[ArrayLike] = None, *,
                    x_dtype: DTypeLike, x_scale: Optional[ArrayLike] = None,
                    x_zero_point: ArrayLike = 0, w_scale: Optional[ArrayLike] = None,
                    w_zero_point: Optional[ArrayLike] = None,
                    out_scale: Optional[ArrayLike] = None, out_zero_point: ArrayLike = 0,
                    preset: PresetLike = "tflite", out_dtype: DTypeLike = None,
                    act_min: Optional[int] = None, act_max: Optional[int] = None,
                    multiplier: Optional[ArrayLike] = None, shift: Optional[ArrayLike] = None,
                    scheme: Optional[str] = None, rounding: Optional[str] = None,
                    overflow: str = "raise") -> PreparedQLinear:
    """Check and derive everything of a :func:`qlinear` call but ``x`` once.

    Takes the arguments of :func:`qlinear` (x's dtype as ``x_dtype``); the returned
    :class:`PreparedQLinear` gives the same integers as ``qlinear`` with those arguments.

    Example:
        >>> import numpy as np, qkernels
        >>> lin = qkernels.prepare_qlinear(np.array([[10, -20, 5], [1, 2, 3]], np.int8),
        ...                                np.float32([0.5, -0.25]), x_dtype=np.uint8, x_scale=0.05,
        ...                                x_zero_point=128, w_scale=0.02, out_scale=0.01,
        ...                                out_zero_point=100, preset="fbgemm")
        >>> lin(np.array([[130, 120, 128]], np.uint8))
        array([[168,  74]], dtype=uint8)
    """
    p = _as_linear_packed(w, w_zero_point, w_scale)
    return _prepare(p, preset, x_dtype, x_scale, x_zero_point, w_scale, out_scale, out_zero_point,
                    out_dtype, act_min, act_max, bias, multiplier, shift, scheme, rounding,
                    overflow, PreparedQLinear.__new__(PreparedQLinear))


def prepare_qconv2d(w: Union[ArrayLike, PackedConv2d], bias: Optional[ArrayLike] = None, *,
                    x_dtype: DTypeLike, stride: Union[int, Sequence[int]] = 1,
                    padding: Union[int, Sequence[int]] = 0,
                    dilation: Union[int, Sequence[int]] = 1, groups: Optional[int] = None,
                    x_scale: Optional[ArrayLike] = None, x_zero_point: ArrayLike = 0,
                    w_scale: Optional[ArrayLike] = None, w_zero_point: Optional[ArrayLike] = None,
                    out_scale: Optional[ArrayLike] = None, out_zero_point: ArrayLike = 0,
                    preset: PresetLike = "tflite", out_dtype: DTypeLike = None,
                    act_min: Optional[int] = None, act_max: Optional[int] = None,
                    multiplier: Optional[ArrayLike] = None, shift: Optional[ArrayLike] = None,
                    scheme: Optional[str] = None, rounding: Optional[str] = None,
                    overflow: str = "raise") -> PreparedQConv2d:
    """Check and derive everything of a :func:`qconv2d` call but ``x`` once.

    Example:
        >>> import numpy as np, qkernels
        >>> conv = qkernels.prepare_qconv2d(np.ones((1, 1, 3, 3), np.int8), x_dtype=np.int8,
        ...                                 x_scale=1.0, w_scale=1.0, out_scale=4.0, padding=1)
        >>> conv(np.arange(16, dtype=np.int8).reshape(1, 1, 4, 4))[0, 0, 0]
        array([3, 5, 6, 5], dtype=int8)
    """
    p = _as_conv_packed(w, groups, w_zero_point, w_scale)
    c = _prepare(p, preset, x_dtype, x_scale, x_zero_point, w_scale, out_scale, out_zero_point,
                 out_dtype, act_min, act_max, bias, multiplier, shift, scheme, rounding, overflow,
                 PreparedQConv2d.__new__(PreparedQConv2d))
    return _conv_args(c, stride, padding, dilation)


def _conv_args(c: PreparedQConv2d, stride: Any, padding: Any, dilation: Any) -> PreparedQConv2d:
    c.stride = _pair(stride, "stride", 1)
    c.dilation = _pair(dilation, "dilation", 1)
    c.padding = _padding(padding)
    c._geo = {}
    return c


# ---- keyword calls ------------------------------------------------------------------------------
def qlinear(x: ArrayLike, w: Union[ArrayLike, PackedLinear], bias: Optional[ArrayLike] = None, *,
            x_scale: Optional[ArrayLike] = None, x_zero_point: ArrayLike = 0,
            w_scale: Optional[ArrayLike] = None, w_zero_point: Optional[ArrayLike] = None,
            out_scale: Optional[ArrayLike] = None, out_zero_point: ArrayLike = 0,
            preset: PresetLike = "tflite", out_dtype: DTypeLike = None,
            act_min: Optional[int] = None, act_max: Optional[int] = None,
            multiplier: Optional[ArrayLike] = None, shift: Optional[ArrayLike] = None,
            scheme: Optional[str] = None, rounding: Optional[str] = None, overflow: str = "raise",
            threads: Optional[int] = None, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Quantized fully-connected layer: ``y[..., o] = requant(sum_k (x - x_zp)(w[o] - w_zp[o]) + b)``.

    Bit-exact with the runtime named by ``preset`` (:mod:`qkernels.presets`): ``"fbgemm"``
    (``torch.ao.nn.quantized.Linear`` with the fbgemm or x86 engine), ``"qnnpack"``,
    ``"onnxruntime"`` (``QLinearMatMul``), ``"tflite"`` (LiteRT's reference ``FullyConnected``),
    ``"tflite_xnnpack"`` (LiteRT's XNNPACK delegate), ``"cmsis_nn"``, ``"pow2"``, or a
    :class:`~qkernels.presets.Preset` of your own.

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
        act_min, act_max: output clamp in the integer domain (ReLU: ``act_min=out_zero_point``);
            ``y = clamp(R(acc) + out_zero_point, act_min, act_max)``, the zero point may lie
            outside the clamp (TFLite, CMSIS-NN).
        multiplier, shift: explicit fixed-point requantization (M0, TFLite shift), per tensor or
            per channel; they replace the preset altogether (bias must then be int32): the call
            is the generic ``sum (x - x_zp)(w - w_zp)`` with the caller's arithmetic, so the
            preset's operand rules (types, tflite's symmetric weights) do not apply.
        scheme: "double_round", "single_round" or "double_round_half_up": the rounding of
            explicit multipliers (default double_round), or overriding a TFLite-family preset's
            (``tflite``: conv double_round, fully connected fp64; ``single_round`` is
            TFLITE_SINGLE_ROUNDING / CMSIS_NN_USE_SINGLE_ROUNDING builds;
            ``double_round_half_up`` the optimized built-ins, preset ``tflite_optimized``).
        rounding: shift rounding (pow2): "half_up" (the preset's default), "half_even",
            "half_away", "floor"; refused for presets that do not requantize by a shift.
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

    int16 ``x`` (TFLite's 16x8 mode, CMSIS-NN's s16 kernels: int8 ``w``, int64 ``bias``, zero
    points 0, int16 out) runs :func:`qkernels.linear16.qlinear16` with these keywords.
    """
    if _is_int16(x):
        from .linear16 import qlinear16
        return qlinear16(x, _unpacked(w), bias, x_scale=x_scale, x_zero_point=x_zero_point,
                         w_scale=w_scale, w_zero_point=w_zero_point, out_scale=out_scale,
                         out_zero_point=out_zero_point, preset=preset, out_dtype=out_dtype,
                         act_min=act_min, act_max=act_max, multiplier=multiplier, shift=shift,
                         scheme=scheme, rounding=rounding, overflow=overflow, threads=threads,
                         out=out)
    x = _q8_input(x, "x")
    # The prepared call is memoised on the packed weights, keyed by the exact values of every
    # argument the checks and derivations read (x only through its dtype): a hit is a call whose
    # checks all passed before, so it goes straight to the kernel.
    key = prep = None
    if isinstance(w, PackedLinear):
        key = _memo_key(bias, x_scale, x_zero_point, w_scale, w_zero_point, out_scale,
                        out_zero_point, out_dtype, act_min, act_max, multiplier, shift, scheme,
                        rounding, overflow, preset)
        if key is not None:
            key = (x.dtype.char, key)
            prep = w._memo.get(key)
    if prep is None:
        p = _as_linear_packed(w, w_zero_point, w_scale)
        x = _prepare_x(x, p.k)
        prep = _prepare(p, preset, x.dtype, x_scale, x_zero_point, w_scale, out_scale,
                        out_zero_point, out_dtype, act_min, act_max, bias, multiplier, shift,
                        scheme, rounding, overflow, PreparedQLinear.__new__(PreparedQLinear))
        if key is not None:
            _memo_put(p, key, prep)
    return prep(x, threads=threads, out=out)


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
    prep = _int32_call(p, x.dtype, x_zero_point, bias, overflow,
                       PreparedQLinear.__new__(PreparedQLinear))
    return prep(x, threads=threads, out=out)


def prepare_linear_int32(w: Union[ArrayLike, PackedLinear], bias: Optional[ArrayLike] = None, *,
                         x_dtype: DTypeLike, x_zero_point: ArrayLike = 0,
                         w_zero_point: Optional[ArrayLike] = None,
                         overflow: str = "raise") -> PreparedQLinear:
    """Check everything of a :func:`linear_int32` call but ``x`` once: the returned
    :class:`PreparedQLinear` (int32 out) gives the same accumulators as ``linear_int32`` with
    those arguments, without checking the constant ones again on every call.

    Example:
        >>> import numpy as np, qkernels
        >>> acc = qkernels.prepare_linear_int32(np.array([[1, 1, 1]], np.int8),
        ...                                     np.array([10], np.int32), x_dtype=np.int8)
        >>> acc(np.array([[1, 2, 3]], np.int8))
        array([[16]], dtype=int32)
    """
    p = _as_linear_packed(w, w_zero_point, None)
    return _int32_call(p, _x_dtype(x_dtype), x_zero_point, bias, overflow,
                       PreparedQLinear.__new__(PreparedQLinear))


# ---- float32 output (dynamic quantization) --------------------------------------------------------
def _float_operands(p: PackedLinear, float_bias: Any, bias: Any) -> Tuple[Optional[np.ndarray],
                                                                          Optional[np.ndarray]]:
    fb = None if float_bias is None else P.float_bias(float_bias, p.out_channels, "float output")
    return fb, P.int32_bias(bias, p.out_channels, "float output")


def linear_float(x: ArrayLike, w: Union[ArrayLike, PackedLinear], scale: ArrayLike,
                 float_bias: Optional[ArrayLike] = None, *, bias: Optional[ArrayLike] = None,
                 x_zero_point: ArrayLike = 0, w_zero_point: Optional[ArrayLike] = None,
                 overflow: str = "raise", threads: Optional[int] = None,
                 out: Optional[np.ndarray] = None) -> np.ndarray:
    """Linear with a float32 output stage fused into the GEMM (PyTorch's dynamic Linear).

    ``y[..., o] = fmaf((float)acc, scale[o], float_bias[o])`` with the exact int32
    ``acc = sum_k (x - x_zp)(w[o] - w_zp[o]) (+ bias[o])``: one rounding after the exact
    int-to-float conversion, FBGEMM's ``ReQuantizeForFloat`` with ``scale[o] = fl(x_scale *
    w_scale[o])`` (the output stage of ``torch.ao.quantization.quantize_dynamic``'s Linear). The
    same bits as ``accumulator_to_float(linear_int32(x, w, bias, ...), scale, float_bias,
    axis=-1)`` without the int32 array in between. ``scale`` per tensor or per output channel,
    finite and > 0; ``float_bias`` None (0) or one finite value per output channel.

    Example:
        >>> import numpy as np, qkernels
        >>> qkernels.linear_float(np.array([[3, 1]], np.uint8), np.array([[2, -1], [1, 1]], np.int8),
        ...                       0.5, np.float32([0.25, -1.0]), x_zero_point=1)
        array([[2.25, 0.  ]], dtype=float32)
    """
    x = _q8_input(x, "x")
    p = _as_linear_packed(w, w_zero_point, None)
    x = _prepare_x(x, p.k)
    xzp = _x_zero_point(x_zero_point, x.dtype)
    s = P._scale_vector(scale, p.out_channels, "scale")
    fb, b = _float_operands(p, float_bias, bias)
    _bound_check(p, x.dtype, xzp, b, overflow)
    x2 = x if x.ndim == 2 and x.flags.c_contiguous else np.ascontiguousarray(x.reshape(-1, p.k))
    shape = x.shape[:-1] + (p.out_channels,)
    f32 = np.dtype(np.float32)
    C.check_out(out, shape, f32)
    y = np.empty(shape, f32) if out is None else C.kernel_out(out, shape, f32, x2)
    _core._linear(p._cap, x2, xzp, y, _core.REQ_FLOAT, b, fb, s, None, None, 0, 0, 0,
                  int(overflow == "wrap"), _threads(threads, x2.shape[0] * p.out_channels * p.k))
    return _finish(y, out)


def linear_float_runner(w: PackedLinear, float_bias: Optional[ArrayLike] = None, *,
                        bias: Optional[ArrayLike] = None) -> Any:
    """The bare per-call form of :func:`linear_float` for the PyTorch bridge's dynamic Linear:
    ``run(x2d, x_zero_point, scale, threads) -> y`` with ``x2d`` C-contiguous (m, K) uint8 / int8,
    ``scale`` a float32 array of one value per output channel (``fl(x_scale * w_scale)``, new
    each call). The biases are checked here once; the C call checks the rest (layout, zero
    point, scales, the accumulator bound: ``AccumulatorOverflowError``).

    Example:
        >>> import numpy as np, qkernels
        >>> run = qkernels.linear_float_runner(qkernels.pack_linear(np.int8([[2, -1]])))
        >>> run(np.uint8([[3, 1]]), 1, np.float32([0.5]), 1)
        array([[2.]], dtype=float32)
    """
    if not isinstance(w, PackedLinear):
        raise TypeError(f"w must be a PackedLinear (qkernels.pack_linear); got {type(w).__name__}")
    fb, b = _float_operands(w, float_bias, bias)
    cap, n, lin, code, empty, f32 = w._cap, w.out_channels, _core._linear, _core.REQ_FLOAT, \
        np.empty, np.float32

    def run(x2: np.ndarray, x_zero_point: int, scale: np.ndarray, threads: int) -> np.ndarray:
        y = empty((x2.shape[0], n), f32)
        lin(cap, x2, x_zero_point, y, code, b, fb, scale, None, None, 0, 0, 0, 0, threads)
        return y
    return run


# ---- convolution ------------------------------------------------------------------------------
_pair = C.pair
_padding = C.padding4


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


def _conv_geometry(shape: Tuple[int, ...], p: PackedConv2d, stride: Tuple[int, int],
                   padding: Tuple[int, int, int, int], dilation: Tuple[int, int]
                   ) -> Tuple[Tuple[int, ...], Tuple[int, int]]:
    """(sh, sw, pt, pl, pb, pr, dh, dw) and the output (oh, ow) of an NCHW input shape."""
    if len(shape) != 4:
        raise ValueError(f"x must be NCHW (4 dimensions); got shape {tuple(shape)}")
    if shape[1] % p.groups != 0:
        raise ValueError(f"x has {shape[1]} input channels, not divisible by groups={p.groups}")
    if shape[1] != p.in_channels:
        raise ValueError(f"x has {shape[1]} input channels but w expects "
                         f"{p.in_channels} (= {p.in_channels // p.groups} per group x groups "
                         f"{p.groups})")
    sh, sw = stride
    dh, dw = dilation
    pt, pl, pb, pr = padding
    kh, kw = p.kernel_size
    C.conv_geometry(shape[2:], (kh, kw), (sh, sw), (pt, pl, pb, pr), (dh, dw))
    hp, wp = shape[2] + pt + pb, shape[3] + pl + pr
    eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    if shape[2] == 0 or shape[3] == 0:
        raise ValueError(f"x has an empty spatial dimension: shape {tuple(shape)}")
    if eh > hp or ew > wp:
        raise ValueError(f"kernel ({kh}x{kw}, dilation {dh}x{dw}: {eh}x{ew}) is larger than the "
                         f"padded input ({hp}x{wp})")
    oh, ow = (hp - eh) // sh + 1, (wp - ew) // sw + 1
    return (sh, sw, pt, pl, pb, pr, dh, dw), (oh, ow)


def qconv2d(x: ArrayLike, w: Union[ArrayLike, PackedConv2d], bias: Optional[ArrayLike] = None, *,
            stride: Union[int, Sequence[int]] = 1, padding: Union[int, Sequence[int]] = 0,
            dilation: Union[int, Sequence[int]] = 1, groups: Optional[int] = None,
            x_scale: Optional[ArrayLike] = None, x_zero_point: ArrayLike = 0,
            w_scale: Optional[ArrayLike] = None, w_zero_point: Optional[ArrayLike] = None,
            out_scale: Optional[ArrayLike] = None, out_zero_point: ArrayLike = 0,
            preset: PresetLike = "tflite", out_dtype: DTypeLike = None,
            act_min: Optional[int] = None, act_max: Optional[int] = None,
            multiplier: Optional[ArrayLike] = None, shift: Optional[ArrayLike] = None,
            scheme: Optional[str] = None, rounding: Optional[str] = None, overflow: str = "raise",
            threads: Optional[int] = None, out: Optional[np.ndarray] = None) -> np.ndarray:
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

    int16 ``x`` (TFLite's 16x8 CONV_2D / DEPTHWISE_CONV_2D, CMSIS-NN's s16 kernels) runs
    :func:`qkernels.linear16.qconv2d16` with these keywords.
    """
    if _is_int16(x):
        from .linear16 import qconv2d16
        return qconv2d16(x, _unpacked(w), bias, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, x_scale=x_scale,
                         x_zero_point=x_zero_point, w_scale=w_scale, w_zero_point=w_zero_point,
                         out_scale=out_scale, out_zero_point=out_zero_point, preset=preset,
                         out_dtype=out_dtype, act_min=act_min, act_max=act_max,
                         multiplier=multiplier, shift=shift, scheme=scheme, rounding=rounding,
                         overflow=overflow, threads=threads, out=out)
    x = _q8_input(x, "x")
    # As in qlinear; the prepared call keeps the output size of each input shape.
    key = prep = None
    if isinstance(w, PackedConv2d):
        key = _memo_key(bias, stride, padding, dilation, groups, x_scale, x_zero_point, w_scale,
                        w_zero_point, out_scale, out_zero_point, out_dtype, act_min, act_max,
                        multiplier, shift, scheme, rounding, overflow, preset)
        if key is not None:
            key = (x.dtype.char, key)
            prep = w._memo.get(key)
    if prep is None:
        p = _as_conv_packed(w, groups, w_zero_point, w_scale)
        prep = _conv_args(PreparedQConv2d.__new__(PreparedQConv2d), stride, padding, dilation)
        _conv_geometry(x.shape, p, prep.stride, prep.padding, prep.dilation)
        _prepare(p, preset, x.dtype, x_scale, x_zero_point, w_scale, out_scale, out_zero_point,
                 out_dtype, act_min, act_max, bias, multiplier, shift, scheme, rounding, overflow,
                 prep)
        if key is not None:
            _memo_put(p, key, prep)
    return prep(x, threads=threads, out=out)


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
    prep = _conv_args(PreparedQConv2d.__new__(PreparedQConv2d), stride, padding, dilation)
    _conv_geometry(x.shape, p, prep.stride, prep.padding, prep.dilation)
    _int32_call(p, x.dtype, x_zero_point, bias, overflow, prep)
    return prep(x, threads=threads, out=out)
