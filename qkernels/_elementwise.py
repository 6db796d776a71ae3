"""Keyword API over the elementwise ufuncs: quantize, dequantize, fake_quantize, requantize.

Every function checks its arguments first (nothing is written when a call is rejected), then
runs one C ufunc. Per-channel parameters go through ``axis=`` or plain broadcasting.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from . import _checks as C
from . import _core

ArrayLike = Any
DTypeLike = Any

FLAVORS = ("torch", "pt2e", "onnx", "tflite", "fbgemm", "fbgemm_scalar")
SCHEMES = ("double_round", "single_round")
ROUNDINGS = ("half_up", "half_even", "half_away", "floor")


def _choice(value: str, allowed: Tuple[str, ...], name: str) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(repr(a) for a in allowed)}; "
                         f"got {value!r}")
    return value


def quantize(x: ArrayLike, scale: ArrayLike, zero_point: ArrayLike = 0, *,
             dtype: DTypeLike = np.int8, axis: Optional[int] = None, flavor: str = "torch",
             qmin: Optional[int] = None, qmax: Optional[int] = None,
             bits: Optional[int] = None, narrow_range: bool = False,
             out: Optional[np.ndarray] = None) -> np.ndarray:
    """Quantize float data to integers: ``clamp(round(x / scale) + zero_point, qmin, qmax)``.

    The rounding is that of a real runtime, chosen by ``flavor``:

    - ``"torch"`` (default): exactly what PyTorch gives for the same call. Per tensor
      (``torch.quantize_per_tensor``) with uint8/int8 output that is ``"fbgemm"``; otherwise
      (qint32, 16-bit, and every ``torch.quantize_per_channel``) ``"fbgemm_scalar"``.
    - ``"fbgemm"``: ``RNE(fma(x, fl(1/scale), zero_point))``: the zero point is added *before*
      the single rounding (FBGEMM's AVX2 ``Quantize``).
    - ``"fbgemm_scalar"``: ``RNE(fl(fl(x * fl(1/scale)) + zero_point))``: two float roundings
      (FBGEMM's scalar ``Quantize``, used by PyTorch per channel and for qint32).
    - ``"pt2e"``: ``RNE(fl(x * fl(1/scale))) + zero_point``: zero point added after rounding
      (PyTorch's decomposed ``quantize_per_tensor`` of PT2E export, and fake quantization).
      The four torch-family formulas differ only at near-ties when zero_point != 0.
    - ``"onnx"``: ``RNE(x / scale)``, true division, as ONNX Runtime ``QuantizeLinear``.
    - ``"tflite"``: ``RHAZ(x / scale)``, half away from zero, as TFLite's reference quantize.

    Args:
        x: float32 or float64 data (float32 arithmetic for float32 input, double for float64).
        scale: scale(s), rounded to float32; finite and > 0. The flavours that multiply by
            ``fl(1/scale)`` (torch, pt2e, fbgemm, fbgemm_scalar) also need that reciprocal
            finite: scale > 2**-128 (denormal scales at or below it are refused by name, on
            every SIMD path alike); onnx and tflite divide and take any positive scale.
        zero_point: integer zero point(s) in [qmin, qmax].
        dtype: output type: uint8, int8, uint16, int16 or int32.
        axis: per-channel axis; scale and zero_point are then 1-D of length x.shape[axis].
        flavor: "torch", "pt2e", "fbgemm", "fbgemm_scalar", "onnx" or "tflite".
        qmin, qmax: clamping range (default: the dtype's range, or ``bits``).
        bits: bit width 2..16 (signed or unsigned as the dtype), e.g. ``bits=4`` with int8.
        narrow_range: drop the lowest value (int8 -> [-127, 127]).
        out: optional output array of the right dtype and shape.

    Raises:
        ValueError: NaN in x (naming its first index; ``out=`` may then be partly written), a
            bad scale, zero point or range. +inf/-inf saturate to qmax/qmin.
        TypeError: wrong dtypes.

    Example:
        >>> import numpy as np, qkernels
        >>> qkernels.quantize(np.array([0.1, -0.25, 3.0], np.float32), 0.01, 3, dtype=np.uint8)
        array([ 13,   0, 255], dtype=uint8)
    """
    x = C.float_input(x, "x")
    dt, code = C.int_dtype(dtype)
    lo, hi = C.qrange(dt, qmin, qmax, bits=bits, narrow_range=narrow_range)
    _choice(flavor, FLAVORS, "flavor")
    s = C.scale_param(scale, "scale")
    if flavor not in ("onnx", "tflite"):
        C.reciprocal_scale(s, "scale", f"flavor {flavor!r} (it multiplies by fl(1/scale))")
    zp = C.int_param(zero_point, "zero_point", lo, hi)
    s, zp = C.channel_params(x.shape, axis, scale=s, zero_point=zp)
    C.check_out(out, x.shape, dt)
    if flavor == "torch":
        # torch.quantize_per_tensor runs fbgemm::Quantize: AVX2 (one rounding) for 8-bit outputs,
        # the scalar loop (two roundings) for qint32; quantize_per_channel is scalar too.
        per_tensor = s.size == 1 and zp.size == 1 and axis is None
        flavor = "fbgemm" if per_tensor and code in ("u8", "s8") else "fbgemm_scalar"
    uf = getattr(_core, f"quantize_{flavor}_{code}")
    return C.run_ufunc(uf, (x, s, zp, np.int32(lo), np.int32(hi)), out,
                       lambda: C.raise_nan(x, "x", partial_out=out is not None))


def dequantize(q: ArrayLike, scale: ArrayLike, zero_point: ArrayLike = 0, *,
               axis: Optional[int] = None, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Dequantize integers to float32: ``fl(fl(scale) * (float)(q - zero_point))``.

    The same formula in every runtime (PyTorch ``Tensor.dequantize``, ONNX ``DequantizeLinear``).

    Args:
        q: uint8, int8, uint16, int16 or int32 data.
        scale: scale(s), finite and > 0 (float32).
        zero_point: integer zero point(s) within q's dtype.
        axis: per-channel axis (scale and zero_point 1-D of length q.shape[axis]).
        out: optional float32 output array.

    Example:
        >>> import numpy as np, qkernels
        >>> qkernels.dequantize(np.array([13, 0, 255], np.uint8), 0.5, 3)
        array([  5. ,  -1.5, 126. ], dtype=float32)
    """
    q = C.int_input(q, "q")
    params = _dequantize_params(q.dtype, q.shape, axis, scale, zero_point)
    C.check_out(out, q.shape, np.dtype(np.float32))
    return C.run_ufunc(_core.dequantize, (q,) + params, out, lambda: None)


def _dequantize_params(q_dtype: np.dtype, shape: Tuple[int, ...], axis: Optional[int],
                       scale: ArrayLike, zero_point: ArrayLike) -> Tuple[Any, ...]:
    """dequantize's parameters after q, checked (the keyword call and prepare_dequantize)."""
    info = np.iinfo(q_dtype)
    s = C.scale_param(scale, "scale")
    zp = C.int_param(zero_point, "zero_point", int(info.min), int(info.max))
    return tuple(C.channel_params(shape, axis, scale=s, zero_point=zp))


def fake_quantize(x: ArrayLike, scale: ArrayLike, zero_point: ArrayLike, qmin: int, qmax: int,
                  *, axis: Optional[int] = None, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Quantize and dequantize in one pass, exactly as PyTorch's fake quantization.

    ``q = clamp(RNE(x * fl(1/scale)) + zero_point, qmin, qmax)``, ``y = (q - zero_point) * scale``;
    equal bit for bit to ``torch.fake_quantize_per_tensor_affine`` (``axis=None``) and
    ``torch.fake_quantize_per_channel_affine`` (``axis`` given).

    Args:
        x: float32 data (float64 is computed in double and returned as float64).
        scale, zero_point: per-tensor or per-channel (with ``axis``) parameters; scale finite,
            > 0 and > 2**-128 (its float32 reciprocal must be finite).
        qmin, qmax: the integer range, e.g. 0, 255 or -128, 127.
        out: optional output array (same dtype as x).

    Example:
        >>> import numpy as np, qkernels
        >>> qkernels.fake_quantize(np.array([0.123, 9.0], np.float32), 0.1, 0, -128, 127)
        array([0.1, 9. ], dtype=float32)
    """
    x = C.float_input(x, "x")
    lo = C._int_scalar(qmin, "qmin")
    hi = C._int_scalar(qmax, "qmax")
    if lo > hi:
        raise ValueError(f"qmin ({lo}) must be <= qmax ({hi})")
    if lo < -(1 << 31) or hi > (1 << 31) - 1:
        raise ValueError("qmin and qmax must fit in int32")
    s = C.scale_param(scale, "scale")
    C.reciprocal_scale(s, "scale", "fake_quantize (it multiplies by fl(1/scale))")
    zp = C.int_param(zero_point, "zero_point", lo, hi)
    s, zp = C.channel_params(x.shape, axis, scale=s, zero_point=zp)
    C.check_out(out, x.shape, x.dtype)
    return C.run_ufunc(_core.fake_quantize_torch, (x, s, zp, np.int32(lo), np.int32(hi)), out,
                       lambda: C.raise_nan(x, "x", partial_out=out is not None))


def quantize_multiplier(m: ArrayLike) -> Tuple[np.ndarray, np.ndarray]:
    """Real multiplier(s) to fixed point, exactly TFLite's ``QuantizeMultiplier``.

    ``m ~= multiplier * 2**(shift - 31)`` with ``multiplier`` in [2**30, 2**31 - 1] (0 for m == 0
    or m < 2**-32) and ``shift`` in [-31, 31]; shift > 0 is a left shift. Elementwise over arrays.
    As in TFLite, a mantissa that rounds up to 2**31 gives ``multiplier = 2**30`` and ``shift + 1``:
    ``quantize_multiplier(2**30 - 0.25)`` is ``(2**30, 31)``. :func:`requantize` takes shift in
    [-31, 30], so multipliers of ``2**30 - 0.25`` or more (shift 31) cannot be used there.

    Raises:
        ValueError: m negative, NaN or infinite, or m >= 2**31 - 0.5 (shift would exceed 31).

    Example:
        >>> import qkernels
        >>> qkernels.quantize_multiplier(0.25)
        (np.int32(1073741824), np.int32(-1))
    """
    a = np.asarray(m)
    if a.dtype.kind not in "fiu":
        raise TypeError(f"m must be a real number or array, got dtype {a.dtype}")
    a = a.astype(np.float64)
    bad = ~np.isfinite(a) | (a < 0)
    if bad.any():
        raise ValueError(f"m must be finite and >= 0; got {a[C._first_index(bad)]}")
    big = a >= 2.0 ** 31 - 0.5
    if big.any():
        raise ValueError(f"m={a[C._first_index(big)]!r} is too large: m >= 2**31 - 0.5 needs a "
                         f"shift above 31")
    return _core.quantize_multiplier(a)


def _requant_common(acc: ArrayLike, dtype: DTypeLike, qmin: Optional[int], qmax: Optional[int],
                    bits: Optional[int], zero_point: ArrayLike):
    a = C.int32_input(acc, "acc")
    dt, code = C.int_dtype(dtype)
    lo, hi = C.qrange(dt, qmin, qmax, bits=bits)
    zp = C.int_param(zero_point, "zero_point", lo, hi)
    return a, dt, code, lo, hi, zp


def requantize(acc: ArrayLike, multiplier: ArrayLike, shift: ArrayLike,
               zero_point: ArrayLike = 0, *, scheme: str = "double_round",
               dtype: DTypeLike = np.int8, qmin: Optional[int] = None,
               qmax: Optional[int] = None, bits: Optional[int] = None,
               axis: Optional[int] = None, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Fixed-point requantization of int32 accumulators: ``clamp(R(acc) + zero_point, qmin, qmax)``.

    ``multiplier`` (M0, int32 >= 0) and ``shift`` (in [-31, 30], > 0 is a left shift) come from
    :func:`quantize_multiplier`; ``R(acc) ~= acc * multiplier * 2**(shift - 31)``.

    - ``scheme="double_round"`` (gemmlowp, TFLite reference, TFLite Micro, CMSIS-NN):
      ``RDBPOT(SRDHM(acc * 2**max(shift, 0), multiplier), max(-shift, 0))``.
    - ``scheme="single_round"`` (TFLITE_SINGLE_ROUNDING, ruy, CMSIS-NN single rounding):
      ``(acc * multiplier + 2**(30 - shift)) >> (31 - shift)``, exact in int64.

    Raises:
        AccumulatorOverflowError: (double_round with shift > 0) ``acc * 2**shift`` does not fit in
            int32, which TFLite would wrap silently. It is a ValueError too.
        ValueError/TypeError: bad multiplier, shift, zero point, range or dtypes.

    Example:
        >>> import numpy as np, qkernels
        >>> acc = np.array([1, -2, 7984], np.int32)
        >>> qkernels.requantize(acc, 1 << 30, -1)  # multiplier 0.25
        array([  1,  -1, 127], dtype=int8)
    """
    a = C.int32_input(acc, "acc")
    uf, params, dt = _requantize_parts(a.shape, axis, multiplier, shift, zero_point, scheme,
                                       dtype, qmin, qmax, bits)
    C.check_out(out, a.shape, dt)
    return C.run_ufunc(uf, (a,) + params, out, lambda: _locate_shift_overflow(a, params[1]))


def _requantize_parts(shape: Tuple[int, ...], axis: Optional[int], multiplier: ArrayLike,
                      shift: ArrayLike, zero_point: ArrayLike, scheme: str, dtype: DTypeLike,
                      qmin: Optional[int], qmax: Optional[int],
                      bits: Optional[int]) -> Tuple[np.ufunc, Tuple[Any, ...], np.dtype]:
    """requantize's ufunc, its parameters after acc (checked) and the output dtype."""
    dt, code = C.int_dtype(dtype)
    lo, hi = C.qrange(dt, qmin, qmax, bits=bits)
    zp = C.int_param(zero_point, "zero_point", lo, hi)
    _choice(scheme, SCHEMES, "scheme")
    m = C.int_param(multiplier, "multiplier", 0, (1 << 31) - 1)
    sh = C.int_param(shift, "shift", -31, 30)
    m, sh, zp = C.channel_params(shape, axis, multiplier=m, shift=sh, zero_point=zp)
    uf = getattr(_core, f"requantize_{'double' if scheme == 'double_round' else 'single'}_{code}")
    return uf, (m, sh, zp, np.int32(lo), np.int32(hi)), dt


def _locate_shift_overflow(a: np.ndarray, sh: np.ndarray) -> None:
    """Raise for the first acc whose left shift overflows int32 (double_round's data error)."""
    shb = np.broadcast_to(sh, a.shape).astype(np.int64)
    wide = a.astype(np.int64) * (np.int64(1) << np.maximum(shb, 0))
    bad = (wide < -(1 << 31)) | (wide > (1 << 31) - 1)
    if bad.any():
        idx = C._first_index(bad)
        raise C.AccumulatorOverflowError(
            f"acc at index {idx} ({a[idx]}) overflows int32 when shifted left by "
            f"{shb[idx]} (TFLite would wrap)")


def requantize_float(acc: ArrayLike, scale: ArrayLike, zero_point: ArrayLike = 0, *,
                     dtype: DTypeLike = np.int8, qmin: Optional[int] = None,
                     qmax: Optional[int] = None, bits: Optional[int] = None,
                     axis: Optional[int] = None, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Float-scale requantization: ``clamp(RNE(fl(fl((float)acc) * scale)) + zero_point, ...)``.

    The ``fp32`` scheme of FBGEMM, PyTorch QNNPACK, ONNX Runtime (MLAS) and XNNPACK. ``scale``
    is the float32 requantization scale ``in_scale * w_scale / out_scale`` as the runtime
    computed it.

    Example:
        >>> import numpy as np, qkernels
        >>> qkernels.requantize_float(np.array([100, -3, 5], np.int32), 0.05, 10, dtype=np.uint8)
        array([15, 10, 10], dtype=uint8)
    """
    a, dt, code, lo, hi, zp = _requant_common(acc, dtype, qmin, qmax, bits, zero_point)
    s = C.scale_param(scale, "scale")
    s, zp = C.channel_params(a.shape, axis, scale=s, zero_point=zp)
    C.check_out(out, a.shape, dt)
    return C.run_ufunc(getattr(_core, f"requantize_fp32_{code}"),
                       (a, s, zp, np.int32(lo), np.int32(hi)), out, lambda: None)


def requantize_shift(acc: ArrayLike, shift: ArrayLike, zero_point: ArrayLike = 0, *,
                     rounding: str = "half_up", dtype: DTypeLike = np.int8,
                     qmin: Optional[int] = None, qmax: Optional[int] = None,
                     bits: Optional[int] = None, axis: Optional[int] = None,
                     out: Optional[np.ndarray] = None) -> np.ndarray:
    """Power-of-two requantization by a plain shift: ``clamp(round(acc / 2**shift) + zp, ...)``.

    What an accelerator with power-of-two scales does: ``acc >> shift`` with a rounding of
    ``"half_up"`` (``(acc + 2**(shift-1)) >> shift``, the default), ``"half_even"``,
    ``"half_away"`` or ``"floor"`` (truncating shift). ``shift`` in [-31, 31]; a negative shift is
    an exact left shift.

    Example:
        >>> import numpy as np, qkernels
        >>> qkernels.requantize_shift(np.array([5, 6, -6, 7], np.int32), 2)
        array([ 1,  2, -1,  2], dtype=int8)
    """
    a = C.int32_input(acc, "acc")
    uf, params, dt = _requantize_shift_parts(a.shape, axis, shift, zero_point, rounding, dtype,
                                             qmin, qmax, bits)
    C.check_out(out, a.shape, dt)
    return C.run_ufunc(uf, (a,) + params, out, lambda: None)


def _requantize_shift_parts(shape: Tuple[int, ...], axis: Optional[int], shift: ArrayLike,
                            zero_point: ArrayLike, rounding: str, dtype: DTypeLike,
                            qmin: Optional[int], qmax: Optional[int],
                            bits: Optional[int]) -> Tuple[np.ufunc, Tuple[Any, ...], np.dtype]:
    """requantize_shift's ufunc, its parameters after acc (checked) and the output dtype."""
    dt, code = C.int_dtype(dtype)
    lo, hi = C.qrange(dt, qmin, qmax, bits=bits)
    zp = C.int_param(zero_point, "zero_point", lo, hi)
    _choice(rounding, ROUNDINGS, "rounding")
    sh = C.int_param(shift, "shift", -31, 31)
    sh, zp = C.channel_params(shape, axis, shift=sh, zero_point=zp)
    return (getattr(_core, f"requantize_shift_{rounding}_{code}"),
            (sh, zp, np.int32(lo), np.int32(hi)), dt)


def quantize_dynamic(x: ArrayLike, *, reduce_range: bool = True) -> Tuple[np.ndarray, float, int]:
    """PyTorch's per-call input quantization of a dynamic Linear (fbgemm
    ``quantized::linear_dynamic``), in one C call: returns ``(q uint8, scale, zero_point)``.

    The range ``[min(min x, 0), max(max x, 0)]``, FBGEMM's ``ChooseQuantizationParams`` over
    [0, 255] ([0, 127] with ``reduce_range``, what PyTorch's dynamic Linear uses on x86) in double
    arithmetic (the 6.1e-5 floor on the scale, the zero point from the end with the smaller
    error), ``scale`` rounded to float32, then ``quantize(x, scale, zero_point, dtype=uint8,
    flavor="fbgemm")``. x must be finite (a NaN or an infinity raises ValueError).

    Example:
        >>> import numpy as np, qkernels
        >>> q, s, z = qkernels.quantize_dynamic(np.float32([1.0, 2.0, -3.0]))
        >>> q, round(s, 6), z
        (array([101, 127,   0], dtype=uint8), 0.03937, 76)
    """
    a = np.asarray(x)
    if a.dtype != np.float32:
        if a.dtype.kind not in "fiu":
            raise TypeError(f"x must be real numbers, got dtype {a.dtype}")
        a = a.astype(np.float32)
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    try:
        return _core._quantize_dynamic(a, bool(reduce_range))
    except ValueError as exc:
        raise ValueError("x must be finite: a dynamic quantization range cannot hold a NaN or an "
                         "infinity") from exc


def accumulator_to_float(acc: ArrayLike, scale: ArrayLike, bias: ArrayLike = 0.0, *,
                         axis: Optional[int] = None,
                         out: Optional[np.ndarray] = None) -> np.ndarray:
    """int32 accumulators to float32 with one rounding: ``fmaf((float)acc, scale, bias)``.

    The output stage of dynamic quantization in FBGEMM (``ReQuantizeForFloat``, behind
    ``torch.ao.quantization.quantize_dynamic``), with ``scale = fl(x_scale * w_scale)`` per tensor
    or per output channel (``axis``) and the float bias fused into the same rounding.

    Example:
        >>> import numpy as np, qkernels
        >>> qkernels.accumulator_to_float(np.int32([3, -4]), 0.5, 0.25)
        array([ 1.75, -1.75], dtype=float32)
    """
    a = C.int32_input(acc, "acc")
    s = C.scale_param(scale, "scale")
    b = np.asarray(bias)
    if b.dtype.kind not in "fiu":
        raise TypeError(f"bias must be real numbers, got dtype {b.dtype}")
    b = b.astype(np.float32)
    if not np.all(np.isfinite(b)):
        raise ValueError("bias must be finite")
    s, b = C.channel_params(a.shape, axis, scale=s, bias=b)
    C.check_out(out, a.shape, np.dtype(np.float32))
    return C.run_ufunc(_core.accumulator_to_float, (a, s, b), out, lambda: None)


# ---- prepared forms: the parameters checked once ------------------------------------------------
class PreparedElementwise:
    """An elementwise keyword call (requantize, requantize_shift, dequantize) with every argument
    but the data fixed and checked once (:func:`prepare_requantize`,
    :func:`prepare_requantize_shift`, :func:`prepare_dequantize`): ``f(x, out=None)`` gives the
    same values as the keyword call with those arguments, checking only ``x`` (its dtype, and
    its last dimension for per-channel parameters) and ``out``. Immutable; safe to share.
    Attributes: ``name``, ``in_dtype``, ``out_dtype``, ``channels`` (None: per tensor).
    """

    __slots__ = ("name", "in_dtype", "out_dtype", "channels", "_uf", "_params", "_locate")

    def __init__(self, name: str, in_dtype: np.dtype, out_dtype: np.dtype,
                 channels: Optional[int], uf: Any, params: Tuple[Any, ...],
                 locate: Any = None) -> None:
        self.name, self.in_dtype, self.out_dtype, self.channels = name, in_dtype, out_dtype, \
            channels
        self._uf, self._params, self._locate = uf, params, locate

    def __call__(self, x: ArrayLike, *, out: Optional[np.ndarray] = None) -> np.ndarray:
        if type(x) is not np.ndarray:
            x = np.asarray(x)
        if x.dtype != self.in_dtype:
            raise TypeError(f"{self.name}: x has dtype {x.dtype}; this call was prepared for "
                            f"{self.in_dtype}")
        if self.channels is not None and (x.ndim == 0 or x.shape[-1] != self.channels):
            raise ValueError(f"{self.name}: x has shape {x.shape}; this call was prepared for "
                             f"{self.channels} channels on the last axis")
        C.check_out(out, x.shape, self.out_dtype)
        locate = self._locate
        return C.run_ufunc(self._uf, (x,) + self._params, out,
                           (lambda: None) if locate is None else (lambda: locate(x)))

    def __repr__(self) -> str:
        per = "per tensor" if self.channels is None else f"{self.channels} channels"
        return f"PreparedElementwise({self.name}, {self.in_dtype} -> {self.out_dtype}, {per})"


def _prepared_shape(channels: Optional[int], **params: ArrayLike) -> Tuple[Tuple[int, ...],
                                                                           Optional[int]]:
    """The (shape, axis) the parameters are checked against: per tensor (every parameter a
    scalar) or per channel on the last axis of ``channels`` channels."""
    if channels is None:
        for name, p in params.items():
            if np.ndim(p) != 0:
                raise ValueError(f"{name} has {np.size(p)} values: give channels= for "
                                 f"per-channel parameters (on the last axis)")
        return (), None
    if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) or channels < 1:
        raise ValueError(f"channels must be a positive int or None; got {channels!r}")
    return (int(channels),), -1


def prepare_requantize(multiplier: ArrayLike, shift: ArrayLike, zero_point: ArrayLike = 0, *,
                       scheme: str = "double_round", dtype: DTypeLike = np.int8,
                       qmin: Optional[int] = None, qmax: Optional[int] = None,
                       bits: Optional[int] = None,
                       channels: Optional[int] = None) -> PreparedElementwise:
    """:func:`requantize` with its parameters checked once: per tensor, or per channel on the
    last axis (``channels``: its length; ``axis=-1`` of the keyword call).

    Example:
        >>> import numpy as np, qkernels
        >>> rq = qkernels.prepare_requantize(1 << 30, -1)  # multiplier 0.25
        >>> rq(np.array([1, -2, 7984], np.int32))
        array([  1,  -1, 127], dtype=int8)
    """
    shape, axis = _prepared_shape(channels, multiplier=multiplier, shift=shift,
                                  zero_point=zero_point)
    uf, params, dt = _requantize_parts(shape, axis, multiplier, shift, zero_point, scheme, dtype,
                                       qmin, qmax, bits)
    sh = params[1]
    return PreparedElementwise("requantize", np.dtype(np.int32), dt, shape[0] if shape else None,
                               uf, params, lambda a: _locate_shift_overflow(a, sh))


def prepare_requantize_shift(shift: ArrayLike, zero_point: ArrayLike = 0, *,
                             rounding: str = "half_up", dtype: DTypeLike = np.int8,
                             qmin: Optional[int] = None, qmax: Optional[int] = None,
                             bits: Optional[int] = None,
                             channels: Optional[int] = None) -> PreparedElementwise:
    """:func:`requantize_shift` with its parameters checked once (per tensor, or per channel on
    the last axis of ``channels`` channels).

    Example:
        >>> import numpy as np, qkernels
        >>> rs = qkernels.prepare_requantize_shift(np.int32([2, 1]), channels=2)
        >>> rs(np.array([[5, 6], [-6, 7]], np.int32))
        array([[ 1,  3],
               [-1,  4]], dtype=int8)
    """
    shape, axis = _prepared_shape(channels, shift=shift, zero_point=zero_point)
    uf, params, dt = _requantize_shift_parts(shape, axis, shift, zero_point, rounding, dtype,
                                             qmin, qmax, bits)
    return PreparedElementwise("requantize_shift", np.dtype(np.int32), dt,
                               shape[0] if shape else None, uf, params)


def prepare_dequantize(scale: ArrayLike, zero_point: ArrayLike = 0, *, dtype: DTypeLike,
                       channels: Optional[int] = None) -> PreparedElementwise:
    """:func:`dequantize` of ``dtype`` data with its parameters checked once (per tensor, or per
    channel on the last axis of ``channels`` channels).

    Example:
        >>> import numpy as np, qkernels
        >>> dq = qkernels.prepare_dequantize(0.5, 3, dtype=np.uint8)
        >>> dq(np.array([13, 0, 255], np.uint8))
        array([  5. ,  -1.5, 126. ], dtype=float32)
    """
    dt, _ = C.int_dtype(dtype)
    shape, axis = _prepared_shape(channels, scale=scale, zero_point=zero_point)
    params = _dequantize_params(dt, shape, axis, scale, zero_point)
    return PreparedElementwise("dequantize", dt, np.dtype(np.float32),
                               shape[0] if shape else None, _core.dequantize, params)
