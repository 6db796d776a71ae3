"""int16 activations x int8 weights: TFLite's 16x8 mode and CMSIS-NN's s16 kernels.

:func:`qkernels.qconv2d` and :func:`qkernels.qlinear` come here when ``x`` is int16 (the same
keywords; :func:`qconv2d16` / :func:`qlinear16` are the same calls by name). The arithmetic
(``shared/SPEC.md`` section 5 with 64-bit sums; ``docs/tflite.md`` cites the sources)::

    acc[o] = sum_k x[k] * w[o, k] + bias[o]        exact int64, int64 bias
    y[o]   = clamp(R(acc[o]), act_min, act_max)    int16

No zero points: TFLite's 16x8 kernels take symmetric int16 activations (the interpreter refuses
a nonzero input or output zero point) and symmetric weights, and so do CMSIS-NN's s16 kernels.
``R`` is the preset's (:attr:`~qkernels.presets.Preset.s16_conv` / ``s16_linear``):

- ``"reduced"`` (``tflite``, ``tflite_xnnpack``, ``tflite_optimized``, conv and depthwise):
  TFLite's int64 ``MultiplyByQuantizedMultiplier``: the Q31 multiplier ``M0`` of
  ``(double)xs * (double)ws[o] / (double)os`` (``QuantizeMultiplier``) is rounded to 16 bits,
  ``rm = M0 < 0x7FFF0000 ? (M0 + 2^15) >> 16 : 0x7FFF``, then
  ``(acc * rm + 2^(14 - shift)) >> (15 - shift)``: one rounding, ties toward +inf.
- ``"fp64"`` (the same presets, fully connected): ``round((double)acc * xs * ws[o] / os)``,
  ties away from zero (LiteRT's reference ``FullyConnected``, which every kernel type runs for
  an int64 bias).
- ``"reduced_cmsis"`` (``cmsis_nn``, every op): ``arm_nn_requantize_s64``, the same value as
  ``"reduced"`` wherever ``(acc * rm) >> (14 - shift)`` fits in int32.

The XNNPACK delegate does not take 16x8 operators (measured with LiteRT 2.3.0: they stay with the
built-in kernels), hence one arithmetic for the three TFLite presets. One scalar C loop
(``qk_conv2d_s16s8``), on the calling thread.

Example:
    >>> import numpy as np, qkernels
    >>> x = np.array([[1000, -2000, 30000]], np.int16)
    >>> w = np.array([[10, -20, 5], [1, 2, 3]], np.int8)
    >>> qkernels.qlinear(x, w, np.array([0, 100], np.int64), x_scale=1e-4, w_scale=0.01,
    ...                  out_scale=2e-4)   # LiteRT FULLY_CONNECTED: 87100 * 0.005 (-) -> 435
    array([[1000,  435]], dtype=int16)
    >>> qkernels.qlinear(x, w, np.array([0, 100], np.int64), x_scale=1e-4, w_scale=0.01,
    ...                  out_scale=2e-4, preset="cmsis_nn")    # 16-bit multiplier: 436
    array([[1000,  436]], dtype=int16)
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

from . import _checks as C
from . import _core
from . import presets as P
from .presets import Preset

__all__ = ["qconv2d16", "qlinear16", "epilogue16", "S16_LIMIT"]

#: |acc| must stay below 2^47: the input range TFLite's int64 MultiplyByQuantizedMultiplier
#: assumes (common.cc); beyond it ``acc * rm`` could leave int64.
S16_LIMIT = 1 << 47

_INT16 = np.dtype(np.int16)


def _scheme(preset: Preset, op: str, scheme: Optional[str], explicit: bool) -> str:
    if scheme is not None:
        if scheme not in P.S16_SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(map(repr, P.S16_SCHEMES))} for "
                             f"int16 x; got {scheme!r}")
        return scheme
    if explicit:
        return "reduced"
    s = preset.s16_conv if op == "conv" else preset.s16_linear
    if s is None:
        raise TypeError(f"x is int16, but preset {preset.name!r} has no int16 x int8 kernel "
                        f"(int16 activations: tflite, tflite_xnnpack, tflite_optimized, "
                        f"cmsis_nn)")
    return s


def _zero(v: Any, name: str) -> None:
    if v is None:
        return
    z = np.asarray(v)
    if z.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer; got {z.dtype}")
    if (z != 0).any():
        raise ValueError(f"{name} must be 0 for int16 activations (TFLite's 16x8 mode and "
                         f"CMSIS-NN's s16 kernels are symmetric); got {v!r}")


def _bias64(bias: Any, n: int) -> Optional[np.ndarray]:
    if bias is None:
        return None
    b = np.asarray(bias)
    if b.dtype.kind not in "iu" or b.dtype == np.uint64:
        raise TypeError(f"bias must be an int64 array for int16 x (TFLite 16x8 stores it as "
                        f"int64, scale x_scale * w_scale); got dtype {b.dtype}")
    if b.shape != (n,):
        raise ValueError(f"bias has shape {b.shape}; it must have length {n} (out channels)")
    return np.ascontiguousarray(b, np.int64)


def _weights(w: Any, ndim: int) -> np.ndarray:
    a = np.asarray(w)
    if a.dtype != np.int8:
        raise TypeError(f"w must be an int8 array for int16 x (int4 weights are int8 values in "
                        f"[-8, 7]); got dtype {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"w must have {ndim} dimensions; got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"w is empty (shape {a.shape})")
    return np.ascontiguousarray(a)


def _bound(w2: np.ndarray, bias: Optional[np.ndarray]) -> None:
    """32768 * sum_k |w[o, k]| + |bias[o]| < 2^47 for every o (exact, Python ints)."""
    a = np.abs(w2.astype(np.int64)).sum(axis=1)
    b = np.zeros_like(a) if bias is None else bias
    for o in range(a.size):
        v = 32768 * int(a[o]) + abs(int(b[o]))
        if v >= S16_LIMIT:
            raise ValueError(f"w and bias: the worst-case int64 accumulator of output channel {o} "
                             f"(32768 * sum|w| + |bias| = {v}) reaches 2^47, the range TFLite's "
                             f"int64 requantization assumes")


def _epilogue(preset: Preset, n: int, scheme: str, x_scale: Any, w_scale: Any, out_scale: Any,
              multiplier: Any, shift: Any) -> Tuple[Any, Any, Any]:
    """(multiplier, shift, scale64) arrays of n values (None where the scheme has none)."""
    if multiplier is not None or shift is not None:
        if multiplier is None or shift is None:
            raise TypeError("multiplier and shift go together")
        if scheme == "fp64":
            raise ValueError("scheme='fp64' takes scales, not multiplier= / shift=")
        m = C.int_param(multiplier, "multiplier", 0, (1 << 31) - 1)
        sh = C.int_param(shift, "shift", -31, 7)
        return (np.ascontiguousarray(np.broadcast_to(m, (n,)), np.int32),
                np.ascontiguousarray(np.broadcast_to(sh, (n,)), np.int32), None)
    for v, name in ((x_scale, "x_scale"), (w_scale, "w_scale"), (out_scale, "out_scale")):
        if v is None:
            raise TypeError(f"{name} is required (or pass multiplier= and shift=)")
    xs = C.scale_param(x_scale, "x_scale")
    os_ = C.scale_param(out_scale, "out_scale")
    if xs.ndim != 0 or os_.ndim != 0:
        raise ValueError("x_scale and out_scale must be scalars (per-tensor activations)")
    ws = P._scale_vector(w_scale, n, "w_scale")
    # TFLite: (double)input_scale * (double)filter_scale[o] / (double)output_scale, for the
    # multipliers (PopulateConvolutionQuantizationParams) and FullyConnected's double scale
    real = np.float64(np.float32(xs)) * ws.astype(np.float64) / np.float64(np.float32(os_))
    if not (np.isfinite(real).all() and (real > 0).all()):
        raise ValueError("x_scale * w_scale / out_scale is not a positive finite number")
    if scheme == "fp64":
        return None, None, np.ascontiguousarray(real)
    from ._elementwise import quantize_multiplier
    m, sh = (np.ascontiguousarray(a, np.int32) for a in quantize_multiplier(real))
    if (sh > 7).any():
        o = int(np.argmax(sh > 7))
        raise ValueError(f"x_scale * w_scale / out_scale = {real[o]:.6g} (channel {o}) is >= 2^7: "
                         f"TFLite's int64 requantization takes shifts up to 7")
    return m, sh, None


def _act(act_min: Any, act_max: Any) -> Tuple[int, int]:
    lo = -32768 if act_min is None else int(C._int_scalar(act_min, "act_min"))
    hi = 32767 if act_max is None else int(C._int_scalar(act_max, "act_max"))
    if not -32768 <= lo <= hi <= 32767:
        raise ValueError(f"act_min, act_max must satisfy -32768 <= act_min <= act_max <= 32767; "
                         f"got {lo}, {hi}")
    return lo, hi


def _common(op: str, w2: np.ndarray, bias: Any, x_zero_point: Any, w_zero_point: Any,
            out_zero_point: Any, preset: Any, out_dtype: Any, act_min: Any, act_max: Any,
            x_scale: Any, w_scale: Any, out_scale: Any, multiplier: Any, shift: Any,
            scheme: Optional[str], rounding: Optional[str], overflow: str) -> tuple:
    pr = P.get(preset)
    _zero(x_zero_point, "x_zero_point")
    _zero(w_zero_point, "w_zero_point")
    _zero(out_zero_point, "out_zero_point")
    if out_dtype is not None and np.dtype(out_dtype) != _INT16:
        raise TypeError(f"out_dtype must be int16 (or None) for int16 x; got {out_dtype!r}")
    if rounding is not None:
        raise ValueError("rounding= applies to shift requantization (pow2), not to int16 x")
    if overflow != "raise":
        raise ValueError(f"overflow must be 'raise' for int16 x (int64 sums); got {overflow!r}")
    n = w2.shape[0]
    sch = _scheme(pr, op, scheme, multiplier is not None or shift is not None)
    b = _bias64(bias, n)
    _bound(w2, b)
    m, sh, s64 = _epilogue(pr, n, sch, x_scale, w_scale, out_scale, multiplier, shift)
    lo, hi = _act(act_min, act_max)
    return P.SCHEME_CODES[sch], b, m, sh, s64, lo, hi


def epilogue16(op: str, w: Any, bias: Any = None, *, x_scale: Any = None, w_scale: Any = None,
               out_scale: Any = None, preset: Any = "tflite", scheme: Optional[str] = None,
               multiplier: Any = None, shift: Any = None) -> P.Epilogue:
    """The output stage of an int16 x int8 layer (``op``: "conv" or "linear"; ``w``: int8,
    output channels first) as a :class:`~qkernels.presets.Epilogue`: scheme, int64 ``bias``,
    ``mult`` / ``shift`` (reduced schemes; the Q31 M0 before its reduction to 16 bits) or
    ``scale`` (fp64: ``(double)xs * ws / os``), for the export.

    Example:
        >>> import numpy as np
        >>> from qkernels.linear16 import epilogue16
        >>> e = epilogue16("conv", np.ones((2, 1, 3, 3), np.int8), x_scale=1e-4, w_scale=0.01,
        ...                out_scale=2e-4)
        >>> e.scheme_name, e.mult.tolist(), e.shift.tolist()
        ('reduced', [1374389504, 1374389504], [-7, -7])
    """
    w2 = _weights(w, np.ndim(w))
    w2 = w2.reshape(w2.shape[0], -1)
    code, b, m, sh, s64, _, _ = _common(op, w2, bias, 0, 0, 0, preset, None, None, None, x_scale,
                                        w_scale, out_scale, multiplier, shift, scheme, None,
                                        "raise")
    e = P.Epilogue()
    e.scheme, e.bias, e.mult, e.shift, e.scale = code, b, m, sh, s64
    return e


def _out(shape: Tuple[int, ...], out: Optional[np.ndarray]) -> np.ndarray:
    if out is None:
        return np.empty(shape, _INT16)
    if (not isinstance(out, np.ndarray) or out.dtype != _INT16 or out.shape != shape or
            not out.flags.c_contiguous or not out.flags.writeable):
        raise ValueError(f"out must be a writeable C-contiguous int16 array of shape {shape}")
    return out


def qconv2d16(x: Any, w: Any, bias: Any = None, *, stride: Union[int, Sequence[int]] = 1,
              padding: Union[int, Sequence[int]] = 0, dilation: Union[int, Sequence[int]] = 1,
              groups: Optional[int] = None, x_scale: Any = None, x_zero_point: Any = 0,
              w_scale: Any = None, w_zero_point: Any = None, out_scale: Any = None,
              out_zero_point: Any = 0, preset: Any = "tflite", out_dtype: Any = None,
              act_min: Optional[int] = None, act_max: Optional[int] = None,
              multiplier: Any = None, shift: Any = None, scheme: Optional[str] = None,
              rounding: Optional[str] = None, overflow: str = "raise",
              threads: Optional[int] = None, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Convolution of int16 NCHW ``x`` with int8 OIHW ``w`` (module docstring); the keywords of
    :func:`qkernels.qconv2d`, which calls this for int16 ``x``. ``bias``: int64 (N,).
    ``threads`` is accepted and ignored (one scalar loop).

    Example:
        >>> import numpy as np, qkernels
        >>> x = np.arange(16, dtype=np.int16).reshape(1, 1, 4, 4) * 1000
        >>> qkernels.qconv2d(x, np.ones((1, 1, 3, 3), np.int8), x_scale=1.0, w_scale=1.0,
        ...                  out_scale=64.0, padding=1)[0, 0, 0]    # TFLite CONV_2D 16x8
        array([156, 281, 375, 281], dtype=int16)
    """
    x = np.ascontiguousarray(x)
    if x.dtype != _INT16 or x.ndim != 4:
        raise ValueError(f"x must be an int16 NCHW array; got {x.dtype} shape {x.shape}")
    w4 = _weights(w, 4)
    g = 1 if groups is None else C._int_scalar(groups, "groups")
    if g < 1 or x.shape[1] % g or w4.shape[0] % g or w4.shape[1] * g != x.shape[1]:
        raise ValueError(f"x has {x.shape[1]} channels; w {w4.shape} with groups={g} expects "
                         f"{w4.shape[1] * g}")
    sh_, sw_ = C.pair(stride, "stride", 1)
    dh, dw = C.pair(dilation, "dilation", 1)
    pt, pl, pb, pr = C.padding4(padding)
    kh, kw = w4.shape[2:]
    C.conv_geometry(x.shape[2:], (kh, kw), (sh_, sw_), (pt, pl, pb, pr), (dh, dw))
    hp, wp = x.shape[2] + pt + pb, x.shape[3] + pl + pr
    eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    if x.shape[2] == 0 or x.shape[3] == 0 or eh > hp or ew > wp:
        raise ValueError(f"kernel ({kh}x{kw}, dilation {dh}x{dw}) does not fit the padded input "
                         f"({hp}x{wp})")
    code, b, m, s, s64, lo, hi = _common(
        "conv", w4.reshape(w4.shape[0], -1), bias, x_zero_point, w_zero_point, out_zero_point,
        preset, out_dtype, act_min, act_max, x_scale, w_scale, out_scale, multiplier, shift,
        scheme, rounding, overflow)
    y = _out((x.shape[0], w4.shape[0], (hp - eh) // sh_ + 1, (wp - ew) // sw_ + 1), out)
    if y.size:
        _core._conv2d_s16(x, w4, g, sh_, sw_, pt, pl, pb, pr, dh, dw, y, code, b, m, s, s64, lo, hi)
    return y


def qlinear16(x: Any, w: Any, bias: Any = None, *, x_scale: Any = None, x_zero_point: Any = 0,
              w_scale: Any = None, w_zero_point: Any = None, out_scale: Any = None,
              out_zero_point: Any = 0, preset: Any = "tflite", out_dtype: Any = None,
              act_min: Optional[int] = None, act_max: Optional[int] = None,
              multiplier: Any = None, shift: Any = None, scheme: Optional[str] = None,
              rounding: Optional[str] = None, overflow: str = "raise",
              threads: Optional[int] = None, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Fully connected layer of int16 ``x`` (..., K) and int8 ``w`` (N, K) (module docstring);
    the keywords of :func:`qkernels.qlinear`, which calls this for int16 ``x``.

    Example:
        >>> import numpy as np, qkernels
        >>> qkernels.qlinear(np.array([[1000, -2000, 30000]], np.int16),
        ...                  np.array([[10, -20, 5]], np.int8), x_scale=1e-4, w_scale=0.01,
        ...                  out_scale=2e-4, preset="cmsis_nn")    # arm_fully_connected_s16
        array([[1000]], dtype=int16)
    """
    x = np.ascontiguousarray(x)
    if x.dtype != _INT16 or x.ndim < 1:
        raise ValueError(f"x must be an int16 array (..., K); got {x.dtype} shape {x.shape}")
    w2 = _weights(w, 2)
    if x.shape[-1] != w2.shape[1]:
        raise ValueError(f"x has K={x.shape[-1]} but w has K={w2.shape[1]}")
    code, b, m, s, s64, lo, hi = _common(
        "linear", w2, bias, x_zero_point, w_zero_point, out_zero_point, preset, out_dtype,
        act_min, act_max, x_scale, w_scale, out_scale, multiplier, shift, scheme, rounding,
        overflow)
    rows = int(np.prod(x.shape[:-1], dtype=np.int64))
    y = _out(x.shape[:-1] + (w2.shape[0],), out)
    if rows:
        y4 = y.reshape(rows, w2.shape[0], 1, 1)
        _core._conv2d_s16(x.reshape(rows, w2.shape[1], 1, 1), w2.reshape(w2.shape + (1, 1)), 1,
                          1, 1, 0, 0, 0, 0, 1, 1, y4, code, b, m, s, s64, lo, hi)
        if not np.shares_memory(y4, y):
            y[...] = y4.reshape(y.shape)
    return y
