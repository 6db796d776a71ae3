"""TFLite's integer ops (int8), bit for bit as LiteRT's reference kernels compute them.

Conv, depthwise and fully-connected layers are :func:`qkernels.qconv2d` / :func:`qkernels.qlinear`
with a TFLite preset (:mod:`qkernels.presets`); this module has the other ops an int8 CNN
converted by TFLite contains, each written from the kernel source (LiteRT ``tflite/kernels/``,
default build, ``TFLITE_SINGLE_ROUNDING=0``: every ``MultiplyByQuantizedMultiplier`` rounds
twice, SRDHM then RDBPOT, as :func:`qkernels.requantize` ``scheme="double_round"``):

==================  ==========================================================================
op                  arithmetic (source)
==================  ==========================================================================
ADD                 inputs ``(q - zp) << 20`` rescaled by ``s_i / (2 max(s1, s2))``, summed,
                    rescaled by ``2 max(s1, s2) / (2^20 s_out)`` (``add.cc`` Prepare,
                    ``reference/integer_ops/add.h`` AddFunc)
MUL                 ``(a - zpa)(b - zpb)`` times ``fl(fl(sa*sb)/so)`` in fixed point
                    (``mul.cc``, ``integer_ops/mul.h``)
AVERAGE_POOL_2D     sum of the window's valid cells (padding excluded) over their count,
                    rounded half away from zero by integer division (``integer_ops/pooling.h``)
MAX_POOL_2D         max of the window's valid cells
MEAN                ``sum - zp_in * n`` times ``s_in / s_out`` with ``1/n`` folded into the
                    multiplier: ``M' = (M << b) / n``, ``shift' = shift - b``, b = floor(log2 n)
                    (``reduce.cc``, ``reference/reduce.h`` QuantizedMeanOrSum)
CONCATENATION       int8: a copy (TFLite refuses inputs whose scale or zero point differ from
                    the output's); uint8: ``round(q * fl(s_i / s_o) - zp_i * ...) + zp_o``
RESHAPE             the integers unchanged
SOFTMAX             gemmlowp fixed point: ``exp`` of Q5.26 differences, Q12.19 sum, reciprocal
                    (``reference/softmax.h``)
LOGISTIC, TANH      a 256-entry table made in float32 (``LUTPopulate``: ``fl(s * (q - zp))``,
                    libm ``expf`` / ``tanhf``, ``round(y * fl(1/s_out)) + zp``)
HARD_SWISH          int16 fixed point (``reference/hard_swish.h``)
==================  ==========================================================================

LiteRT's default XNNPACK delegate computes ADD, MUL and MEAN its own way (:func:`xnn_add`,
:func:`xnn_mul`, :func:`xnn_mean`) and leaves SOFTMAX to TFLite's optimized built-in kernel
(:func:`softmax_optimized`, a float32 exp table); its pools, CONCATENATION, RESHAPE and the
table ops give the reference kernels' integers (docs/tflite.md has the measurements).

Example:
    >>> import numpy as np
    >>> from qkernels import tflite_ops as T
    >>> T.avg_pool2d(np.int8([[[[1, 2], [2, 2]]]]), (2, 2), (2, 2), (0, 0, 0, 0))
    array([[[[2]]]], dtype=int8)
"""
from __future__ import annotations

import ctypes
import ctypes.util
import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Tuple

import numpy as np

from ._elementwise import quantize_multiplier

__all__ = ["mbqm", "quantize_bound", "requantize", "same_padding", "AddParams", "add_params",
           "add", "MulParams", "mul_params", "mul", "avg_pool2d", "max_pool2d", "MeanParams",
           "mean_params", "mean", "SoftmaxParams", "softmax_params", "softmax", "lut_table",
           "logistic_table", "tanh_table", "hard_swish_table", "activation_range",
           "xnn_add_supported", "xnn_add", "xnn_mul_supported", "xnn_mul", "xnn_mean",
           "softmax_optimized"]

I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1


# ---- fixed-point primitives (gemmlowp fixedpoint.h), vectorized over int64 arrays ---------------
def _wrap32(x: np.ndarray) -> np.ndarray:
    return ((np.asarray(x, np.int64) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def _srdhm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SaturatingRoundingDoublingHighMul of int32 values (held in int64)."""
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    ab = a * b                                        # |ab| <= 2^62
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    s = ab + nudge
    q = np.where(s >= 0, s >> 31, -((-s) >> 31))      # C division by 2^31, toward zero
    return np.where((a == I32_MIN) & (b == I32_MIN), I32_MAX, q)


def _rdbpot(x: np.ndarray, e: np.ndarray) -> np.ndarray:
    """RoundingDivideByPOT: x / 2^e, rounded half away from zero."""
    x = np.asarray(x, np.int64)
    e = np.asarray(e, np.int64)
    mask = (np.int64(1) << e) - 1
    rem = x & mask
    th = (mask >> 1) + (x < 0)
    return (x >> e) + (rem > th)


def _sat_shl(x: np.ndarray, e: int) -> np.ndarray:
    """SaturatingRoundingMultiplyByPOT<e> with e > 0 (a saturating left shift)."""
    return np.clip(np.asarray(x, np.int64) << e, I32_MIN, I32_MAX)


def mbqm(x: np.ndarray, multiplier: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """TFLite's ``MultiplyByQuantizedMultiplier`` (double rounding) of int32 values, int32 out.

    ``x * 2^max(shift, 0)`` wraps as TFLite's does (it is checked where it cannot happen).

    Example:
        >>> import numpy as np
        >>> from qkernels.tflite_ops import mbqm
        >>> mbqm(np.array([1, -2, 7984]), 1 << 30, -1)
        array([ 1, -1, 1996])
    """
    x = np.asarray(x, np.int64)
    sh = np.asarray(shift, np.int64)
    left = np.maximum(sh, 0)
    return _rdbpot(_srdhm(_wrap32(x << left), multiplier), np.maximum(-sh, 0))


def _rhaz(v: np.float32) -> int:
    """``std::round`` of a float (half away from zero), exact."""
    d = float(v)
    return int(math.copysign(math.floor(abs(d) + 0.5), d))


def _qm(real: float) -> Tuple[int, int]:
    m, s = quantize_multiplier(np.float64(real))
    return int(m), int(s)


def activation_range(act: str, scale: float, zero_point: int, dtype: np.dtype) -> Tuple[int, int]:
    """``CalculateActivationRangeQuantized``: the int range of a fused activation ("NONE",
    "RELU", "RELU6", "RELU_N1_TO_1") with ``quantize(v) = zp + round(v / s)`` (TFLite's
    ``TfLiteRound(v / s)`` in float)."""
    info = np.iinfo(dtype)
    lo, hi = int(info.min), int(info.max)

    def q(v: float) -> int:
        return quantize_bound(v, scale, zero_point)
    if act == "NONE":
        return lo, hi
    if act == "RELU":
        return max(lo, q(0.0)), hi
    if act == "RELU6":
        return max(lo, q(0.0)), min(hi, q(6.0))
    if act == "RELU_N1_TO_1":
        return max(lo, q(-1.0)), min(hi, q(1.0))
    raise NotImplementedError(f"fused activation {act} has no integer form in TFLite")


def quantize_bound(value: float, scale: float, zero_point: int) -> int:
    """A float clamp bound as TFLite quantizes it for a fused activation or RELU / RELU6
    (``zp + (int32)TfLiteRound(v / s)``, float32 division, half away from zero; not saturated).

    Example:
        >>> from qkernels.tflite_ops import quantize_bound
        >>> quantize_bound(6.0, 0.125, -128), quantize_bound(6.0, 0.08, -128)
        (-80, -53)
    """
    return int(zero_point) + _rhaz(np.float32(np.float32(value) / np.float32(scale)))


def requantize(x: np.ndarray, s_in: float, zp_in: int, s_out: float, zp_out: int,
               dtype: np.dtype = np.dtype(np.int8)) -> np.ndarray:
    """TFLite's integer QUANTIZE (a requantization, e.g. before a CONCATENATION whose inputs
    have other scales): ``MultiplyByQuantizedMultiplier(q - zp_in, M, shift) + zp_out`` with
    ``M, shift = QuantizeMultiplier((double)s_in / (double)s_out)``, clamped (``quantize.cc``
    Prepare, ``reference/requantize.h``).

    Example:
        >>> import numpy as np
        >>> from qkernels.tflite_ops import requantize
        >>> requantize(np.int8([-128, 0, 3, 127]), 0.5, 0, 1.0, 0)
        array([-64,   0,   2,  64], dtype=int8)
    """
    m, sh = _qm(float(np.float32(s_in)) / float(np.float32(s_out)))
    out = mbqm(np.asarray(x, np.int64) - int(zp_in), m, sh) + int(zp_out)
    info = np.iinfo(dtype)
    return np.clip(out, info.min, info.max).astype(dtype)


def same_padding(size: int, k: int, stride: int, dilation: int = 1) -> Tuple[int, int, int]:
    """TFLite's SAME padding: (before, after, output size); the odd cell goes after."""
    out = (size + stride - 1) // stride
    eff = (k - 1) * dilation + 1
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2, out


# ---- ADD / MUL ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class AddParams:
    """The integer operands of an int8 ADD (``add.cc`` Prepare)."""
    zp1: int
    zp2: int
    zp_out: int
    m1: int
    s1: int
    m2: int
    s2: int
    m_out: int
    s_out: int
    left_shift: int
    act_min: int
    act_max: int


def add_params(s1: float, zp1: int, s2: float, zp2: int, s_out: float, zp_out: int,
               act_min: int = -128, act_max: int = 127) -> AddParams:
    """ADD's multipliers: ``2 * max(s1, s2)`` (float max, double product), ``s_i / that`` and
    ``that / ((1 << 20) * s_out)`` (the denominator a float product), each QuantizeMultiplier'd."""
    f1, f2, fo = np.float32(s1), np.float32(s2), np.float32(s_out)
    twice = 2.0 * float(max(f1, f2))
    m1, sh1 = _qm(float(f1) / twice)
    m2, sh2 = _qm(float(f2) / twice)
    mo, sho = _qm(twice / float(np.float32(np.float32(1 << 20) * fo)))
    return AddParams(int(zp1), int(zp2), int(zp_out), m1, sh1, m2, sh2, mo, sho, 20,
                     int(act_min), int(act_max))


def add(a: np.ndarray, b: np.ndarray, p: AddParams) -> np.ndarray:
    """int8 ADD (broadcasting), ``reference_integer_ops::AddFunc``."""
    x = (np.asarray(a, np.int64) - p.zp1) << p.left_shift
    y = (np.asarray(b, np.int64) - p.zp2) << p.left_shift
    raw = _wrap32(mbqm(x, p.m1, p.s1) + mbqm(y, p.m2, p.s2))
    out = mbqm(raw, p.m_out, p.s_out) + p.zp_out
    return np.clip(out, p.act_min, p.act_max).astype(np.int8)


@dataclass(frozen=True)
class MulParams:
    """The integer operands of an int8 MUL (``mul.cc`` Prepare)."""
    zp1: int
    zp2: int
    zp_out: int
    m: int
    shift: int
    act_min: int
    act_max: int


def mul_params(s1: float, zp1: int, s2: float, zp2: int, s_out: float, zp_out: int,
               act_min: int = -128, act_max: int = 127) -> MulParams:
    """MUL's multiplier ``(double)fl(fl(s1 * s2) / s_out)`` (computed in float)."""
    real = np.float32(np.float32(np.float32(s1) * np.float32(s2)) / np.float32(s_out))
    m, sh = _qm(float(real))
    return MulParams(int(zp1), int(zp2), int(zp_out), m, sh, int(act_min), int(act_max))


def mul(a: np.ndarray, b: np.ndarray, p: MulParams) -> np.ndarray:
    """int8 MUL (broadcasting), ``reference_integer_ops::MulElementwise``."""
    prod = (np.asarray(a, np.int64) - p.zp1) * (np.asarray(b, np.int64) - p.zp2)
    out = mbqm(prod, p.m, p.shift) + p.zp_out
    return np.clip(out, p.act_min, p.act_max).astype(np.int8)


# ---- pooling (NCHW) -------------------------------------------------------------------------------
def _windows(x: np.ndarray, k: Tuple[int, int], s: Tuple[int, int],
             pad: Tuple[int, int, int, int], fill: int) -> Tuple[np.ndarray, np.ndarray]:
    """(windows of the padded x, windows of the valid-cell mask), both (..., oh, ow, kh, kw)."""
    pt, pl, pb, pr = pad
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=fill)
    valid = np.pad(np.ones(x.shape[2:], np.int64), ((pt, pb), (pl, pr)))
    win = np.lib.stride_tricks.sliding_window_view(xp, k, axis=(2, 3))[:, :, ::s[0], ::s[1]]
    vwin = np.lib.stride_tricks.sliding_window_view(valid, k)[::s[0], ::s[1]]
    return win, vwin


def avg_pool2d(x: np.ndarray, kernel: Tuple[int, int], stride: Tuple[int, int],
               padding: Tuple[int, int, int, int], act_min: int = -128,
               act_max: int = 127) -> np.ndarray:
    """int8 AVERAGE_POOL_2D on NCHW: the valid cells' sum over their count, rounded half away
    from zero (``(acc +- count/2) / count`` in C integer division); padding (top, left, bottom,
    right) excluded from the count."""
    win, vwin = _windows(np.asarray(x, np.int64), kernel, stride, padding, 0)
    acc = win.sum(axis=(-2, -1))
    cnt = vwin.sum(axis=(-2, -1))
    half = cnt // 2
    num = np.where(acc > 0, acc + half, acc - half)
    q = np.sign(num) * (np.abs(num) // cnt)          # C division truncates toward zero
    return np.clip(q, act_min, act_max).astype(x.dtype)


def max_pool2d(x: np.ndarray, kernel: Tuple[int, int], stride: Tuple[int, int],
               padding: Tuple[int, int, int, int], act_min: int = -128,
               act_max: int = 127) -> np.ndarray:
    """int8 MAX_POOL_2D on NCHW: the max of the window's valid cells, clamped."""
    lo = int(np.iinfo(x.dtype).min)
    win, _ = _windows(np.asarray(x, np.int64), kernel, stride, padding, lo - 1)
    return np.clip(win.max(axis=(-2, -1)), act_min, act_max).astype(x.dtype)


# ---- MEAN ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MeanParams:
    zp_in: int
    zp_out: int
    m: int
    shift: int


def mean_params(s_in: float, zp_in: int, s_out: float, zp_out: int) -> MeanParams:
    """MEAN's multiplier ``(double)s_in / (double)s_out`` (``PrepareMeanOrSum``)."""
    m, sh = _qm(float(np.float32(s_in)) / float(np.float32(s_out)))
    return MeanParams(int(zp_in), int(zp_out), m, sh)


def mean(x: np.ndarray, axes: Sequence[int], p: MeanParams, keepdims: bool = False) -> np.ndarray:
    """int8 MEAN over ``axes`` (``reference_ops::QuantizedMeanOrSum``, compute_sum false)."""
    n = int(np.prod([x.shape[a] for a in axes]))
    total = np.asarray(x, np.int64).sum(axis=tuple(axes), keepdims=keepdims)
    b = min(n.bit_length() - 1, 32, 31 + p.shift)
    m = int((p.m << b) // n)
    sh = p.shift - b
    v = _wrap32(total - p.zp_in * n)
    out = mbqm(v, m, sh) + p.zp_out
    info = np.iinfo(x.dtype)
    return np.clip(out, info.min, info.max).astype(x.dtype)


# ---- SOFTMAX ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SoftmaxParams:
    input_multiplier: int
    input_left_shift: int
    diff_min: int


def softmax_params(beta: float, s_in: float, integer_bits: int = 5) -> SoftmaxParams:
    """``PreprocessSoftmaxScaling`` (double rounding build: max multiplier 2^31 - 1) and
    ``diff_min = -CalculateInputRadius(5, left_shift)``."""
    real = min(float(np.float32(beta)) * float(np.float32(s_in)) * float(1 << (31 - integer_bits)),
               float((1 << 31) - 1))
    m, sh = _qm(real)                   # QuantizeMultiplierGreaterThanOne (real > 1)
    radius = math.floor(1.0 * ((1 << integer_bits) - 1) * (1 << (31 - integer_bits))
                        / (1 << sh))
    return SoftmaxParams(m, sh, -radius)


def _exp_on_negative_values(a: np.ndarray) -> np.ndarray:
    """gemmlowp exp_on_negative_values for FixedPoint<int32, 5> raw values, Q0.31 out."""
    frac = 26                                        # 31 - 5 integer bits
    one_quarter = 1 << (frac - 2)
    amq = (a & (one_quarter - 1)) - one_quarter
    # exp_on_interval_between_negative_one_quarter_and_0_excl(Rescale<0>(amq))
    x = _sat_shl(amq, 5) + (1 << 28)
    x2 = _srdhm(x, x)
    x3 = _srdhm(x2, x)
    x4 = _srdhm(x2, x2)
    x4_4 = _rdbpot(x4, 2)
    t = _rdbpot(_wrap32(_srdhm(_wrap32(x4_4 + x3), 715827883) + x2), 1)
    c = 1895147668
    result = _wrap32(c + _srdhm(c, _wrap32(x + t)))
    rem = _wrap32(amq - a)
    for e, mult in ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
                    (2, 39332535), (3, 720401), (4, 242)):
        bit = 1 << (frac + e)
        result = np.where(rem & bit, _srdhm(result, mult), result)
    return np.where(a == 0, I32_MAX, result)


def _one_over_one_plus_x(a: np.ndarray) -> np.ndarray:
    """gemmlowp one_over_one_plus_x_for_x_in_0_1 (Q0.31 in and out)."""
    s = a + np.int64(I32_MAX)
    half = np.where(s >= 0, (s + 1) // 2, -((1 - s) // 2))   # (sum + sign) / 2, toward zero
    one2 = 1 << 29
    x = _wrap32(1515870810 + _srdhm(half, -1010580540))
    for _ in range(3):
        hx = _srdhm(half, x)
        x = _wrap32(x + _sat_shl(_srdhm(x, _wrap32(one2 - hx)), 2))
    return _sat_shl(x, 1)


def softmax(x: np.ndarray, p: SoftmaxParams) -> np.ndarray:
    """int8 SOFTMAX along the last axis (``reference_ops::Softmax``, output scale 1/256,
    zero point -128)."""
    q = np.asarray(x, np.int64)
    diff = q - q.max(axis=-1, keepdims=True)
    ok = diff >= p.diff_min
    rescaled = _srdhm(_wrap32(diff << p.input_left_shift), p.input_multiplier)
    e = _exp_on_negative_values(rescaled)
    sum_exps = _wrap32(np.where(ok, _rdbpot(e, 12), 0).sum(axis=-1, keepdims=True))
    s = sum_exps.astype(np.uint64)
    clz = np.array([32 - int(v).bit_length() for v in s.reshape(-1)], np.int64).reshape(s.shape)
    nbits = 12 - clz
    shifted = _wrap32(((s.astype(np.int64) << clz) & 0xFFFFFFFF) - (1 << 31))
    scale = _one_over_one_plus_x(shifted)
    exponent = nbits + 31 - 8
    if ((exponent < 0) | (exponent > 31)).any():
        raise ValueError("softmax: exponent out of range (TFLITE_CHECK)")
    out = _rdbpot(_srdhm(scale, e), exponent) - 128
    out = np.clip(out, -128, 127)
    return np.where(ok, out, -128).astype(np.int8)


# ---- the XNNPACK delegate and the optimized built-ins, where they differ -------------------------
def _f32(v: float) -> np.float32:
    return np.float32(v)


def xnn_add_supported(s1: float, s2: float, s_out: float) -> bool:
    """XNNPACK takes an int8 ADD when both ``fl(s_i / s_out)`` lie in [2^-10, 2^8); otherwise
    the op stays with TFLite's built-in kernel (the reference arithmetic, :func:`add`)."""
    return all(2.0 ** -10 <= _f32(_f32(si) / _f32(s_out)) < 2.0 ** 8 for si in (s1, s2))


def xnn_add(a: np.ndarray, b: np.ndarray, s1: float, zp1: int, s2: float, zp2: int,
            s_out: float, zp_out: int, act_min: int = -128, act_max: int = 127) -> np.ndarray:
    """int8 ADD as the XNNPACK delegate computes it (``xnn_init_qs8_add_minmax_scalar_params``,
    qs8-vadd): ``r_i = fl(s_i / s_out)``; ``shift = 20 - exponent(max r_i)``; multipliers
    ``M_i = lrintf(r_i * 2^shift)`` (21 bits); ``y = ((M1 (a - zp1) + M2 (b - zp2) +
    2^(shift-1)) >> shift) + zp_out`` (arithmetic shift: ties upward), clamped.
    Where XNNPACK refuses the scales (:func:`xnn_add_supported`) this is :func:`add`."""
    if not xnn_add_supported(s1, s2, s_out):
        return add(a, b, add_params(s1, zp1, s2, zp2, s_out, zp_out, act_min, act_max))
    r1, r2 = _f32(_f32(s1) / _f32(s_out)), _f32(_f32(s2) / _f32(s_out))
    exponent = int(np.array(max(r1, r2), np.float32).view(np.uint32) >> 23) - 127
    shift = 20 - exponent
    m1, m2 = (int(np.rint(_f32(r * _f32(2.0 ** shift)))) for r in (r1, r2))
    acc = (m1 * (np.asarray(a, np.int64) - int(zp1)) + m2 * (np.asarray(b, np.int64) - int(zp2))
           + (1 << (shift - 1)))
    return np.clip((acc >> shift) + int(zp_out), act_min, act_max).astype(np.int8)


def xnn_mul_supported(s1: float, s2: float, s_out: float) -> bool:
    """XNNPACK takes an int8 MUL when ``fl(fl(s1 s2) / s_out)`` lies in [2^-16, 2^8)."""
    return 2.0 ** -16 <= _f32(_f32(_f32(s1) * _f32(s2)) / _f32(s_out)) < 2.0 ** 8


def xnn_mul(a: np.ndarray, b: np.ndarray, s1: float, zp1: int, s2: float, zp2: int,
            s_out: float, zp_out: int, act_min: int = -128, act_max: int = 127) -> np.ndarray:
    """int8 MUL as the XNNPACK delegate computes it (``xnn_init_qs8_mul_minmax_scalar_params``,
    qs8-vmul fp32): ``RNE(fl((float)((a - zpa)(b - zpb)) * fl(fl(sa sb) / so))) + zp_out``,
    clamped. Where XNNPACK refuses the scales this is :func:`mul`."""
    if not xnn_mul_supported(s1, s2, s_out):
        return mul(a, b, mul_params(s1, zp1, s2, zp2, s_out, zp_out, act_min, act_max))
    scale = _f32(_f32(_f32(s1) * _f32(s2)) / _f32(s_out))
    prod = (np.asarray(a, np.int64) - int(zp1)) * (np.asarray(b, np.int64) - int(zp2))
    v = (prod.astype(np.float32) * scale).astype(np.float32)
    return np.clip(np.rint(v).astype(np.int64) + int(zp_out), act_min,
                   act_max).astype(np.int8)


def xnn_mean(x: np.ndarray, axes: Sequence[int], s_in: float, zp_in: int, s_out: float,
             zp_out: int, keepdims: bool = False) -> np.ndarray:
    """int8 MEAN as the XNNPACK delegate computes it (measured against LiteRT 2.3.0): the exact
    integer sum of the raw int8 values, then float32 with both zero points folded into one float
    offset added *before* rounding half to even: with ``c = fl(s_in / fl(s_out n))``,
    ``y = RNE(fl(fl(sum c) + fl(zp_out - fl(fl(zp_in n) c))))``, clamped to int8. Adding the
    zero point before the rounding matters on exact ties (power-of-two scales: an odd zp_out
    moves every tie); the reference kernel's fixed point differs on about 10% of elements."""
    n = int(np.prod([x.shape[a] for a in axes]))
    total = np.asarray(x, np.int64).sum(axis=tuple(axes), keepdims=keepdims)
    c = _f32(_f32(s_in) / _f32(_f32(s_out) * _f32(n)))
    offset = _f32(_f32(zp_out) - _f32(_f32(int(zp_in) * n) * c))
    v = ((total.astype(np.float32) * c).astype(np.float32) + offset).astype(np.float32)
    return np.clip(np.rint(v), -128, 127).astype(np.int8)


def softmax_optimized(x: np.ndarray, s_in: float, beta: float = 1.0, s_out: float = 1 / 256,
                      zp_out: int = -128) -> np.ndarray:
    """int8 SOFTMAX along the last axis as TFLite's optimized built-in computes it (the kernel
    the XNNPACK delegate leaves it to; ``optimized_ops.h`` PopulateSoftmaxLookupTable and
    Softmax): a float32 table ``T[255 - d] = expf(fl(-s_in beta) d)``, per row the float32 sum
    of ``T[255 - max + q]`` in order, ``inv = fl(1 / fl(sum s_out))``, ``y = round(fl(T[.] inv))
    + zp_out`` (half away from zero), clamped."""
    expf = _f32_fn("expf")
    sc = _f32(-_f32(s_in) * _f32(beta))
    table = np.array([expf(_f32(sc * _f32(255 - i))) for i in range(256)], np.float32)
    q = np.asarray(x, np.int64)
    vals = table[255 - q.max(axis=-1, keepdims=True) + q]
    total = np.zeros(q.shape[:-1], np.float32)
    for j in range(q.shape[-1]):           # the kernel's order: one float32 sum a row
        total = (total + vals[..., j]).astype(np.float32)
    inv = (np.float32(1) / (total * _f32(s_out)).astype(np.float32)).astype(np.float32)
    p = (vals * inv[..., None]).astype(np.float32)
    r = np.floor(p.astype(np.float64) + 0.5)          # p >= 0: half away from zero
    return np.clip(r.astype(np.int64) + int(zp_out), -128, 127).astype(np.int8)


# ---- unary ops as 256-entry tables --------------------------------------------------------------
_LIBM: Optional[ctypes.CDLL] = None


def _libm() -> Optional[ctypes.CDLL]:
    global _LIBM
    if _LIBM is None:
        name = ctypes.util.find_library("m")
        if name is not None:
            lib = ctypes.CDLL(name)
            for f in ("expf", "tanhf", "roundf"):
                getattr(lib, f).restype = ctypes.c_float
                getattr(lib, f).argtypes = [ctypes.c_float]
            _LIBM = lib
    return _LIBM


def _f32_fn(name: str) -> Callable[[np.float32], np.float32]:
    lib = _libm()
    if lib is not None:
        fn = getattr(lib, name)
        return lambda v: np.float32(fn(float(v)))
    npf = {"expf": np.exp, "tanhf": np.tanh}[name]     # pragma: no cover - no libm
    return lambda v: np.float32(npf(np.float32(v)))


def lut_table(transform: Callable[[np.float32], np.float32], s_in: float, zp_in: int,
              s_out: float, zp_out: int, dtype: np.dtype = np.dtype(np.int8)) -> np.ndarray:
    """``LUTPopulate``: ``table[q - qmin] = clamp((int)(round(fl(f(fl(s_in * (q - zp_in))) *
    fl(1 / s_out))) + zp_out))``, in float32 as TFLite computes it."""
    info = np.iinfo(dtype)
    inv = np.float32(np.float32(1.0) / np.float32(s_out))
    out = np.empty(int(info.max) - int(info.min) + 1, dtype)
    for i, q in enumerate(range(int(info.min), int(info.max) + 1)):
        dq = np.float32(np.float32(s_in) * np.float32(q - int(zp_in)))
        r = _rhaz(np.float32(transform(dq) * inv))
        v = int(np.float32(np.float32(r) + np.float32(zp_out)))
        out[i] = min(max(v, int(info.min)), int(info.max))
    return out


def logistic_table(s_in: float, zp_in: int, s_out: float = 1 / 256, zp_out: int = -128,
                   dtype: np.dtype = np.dtype(np.int8)) -> np.ndarray:
    """LOGISTIC's table: ``1.0f / (1.0f + expf(-x))`` in float32."""
    expf = _f32_fn("expf")
    return lut_table(lambda v: np.float32(np.float32(1) / np.float32(np.float32(1) + expf(-v))),
                     s_in, zp_in, s_out, zp_out, dtype)


def tanh_table(s_in: float, zp_in: int, s_out: float, zp_out: int,
               dtype: np.dtype = np.dtype(np.int8)) -> np.ndarray:
    """TANH's table: ``tanhf(x)``."""
    return lut_table(_f32_fn("tanhf"), s_in, zp_in, s_out, zp_out, dtype)


def _sat_i16(v: np.ndarray) -> np.ndarray:
    return np.clip(v, -32768, 32767)


def _srdhm16(a: np.ndarray, b: int) -> np.ndarray:
    """gemmlowp SaturatingRoundingDoublingHighMul for int16."""
    a = np.asarray(a, np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 14, 1 - (1 << 14))
    s = ab + nudge
    q = np.where(s >= 0, s >> 15, -((-s) >> 15))
    return np.where((a == -32768) & (b == -32768), 32767, q)


def _wrap16(x: np.ndarray) -> np.ndarray:
    return ((np.asarray(x, np.int64) + (1 << 15)) & 0xFFFF) - (1 << 15)


def _down16(m: int) -> int:
    if m >= I32_MAX - (1 << 15):
        return 32767
    return (m + (1 << 15)) >> 16


def hard_swish_table(s_in: float, zp_in: int, s_out: float, zp_out: int,
                     dtype: np.dtype = np.dtype(np.int8)) -> np.ndarray:
    """HARD_SWISH of every 8-bit input (``reference_ops::HardSwish``, int16 fixed point with
    multipliers from ``HardSwishPrepare``), as a 256-entry table."""
    hires = np.float32(np.float32(1.0 / 128.0) * np.float32(s_in))
    om, oe = _qm(float(np.float32(hires / np.float32(s_out))))
    rm, re_ = _qm(float(np.float32(hires / np.float32(3.0 / 32768.0))))
    om16, rm16 = _down16(om), _down16(rm)
    if oe > 0:
        raise ValueError("HARD_SWISH: the output multiplier exponent must be <= 0")
    info = np.iinfo(dtype)
    q = np.arange(int(info.min), int(info.max) + 1, dtype=np.int64)
    v = _wrap16(q - int(zp_in))
    hi_in = _wrap16(v * 128)
    pre_out = _srdhm16(hi_in, om16)
    r = hi_in
    if re_ > 0:
        r = _sat_i16(r * (1 << (re_ - 1)))
    r = _srdhm16(r, rm16)
    if re_ > 0:
        r = _sat_i16(r * 2)
    if re_ < 0:
        r = _rdbpot(r, -re_)
    r = (r + (1 << 15)) >> 1
    prod = r * pre_out
    pso = np.where((r == -32768) & (pre_out == -32768), 32767,
                   np.where(prod >= 0, prod >> 15, -((-prod) >> 15)))
    o = _wrap16(_rdbpot(pso, -oe) + int(zp_out))
    return np.clip(o, int(info.min), int(info.max)).astype(dtype)
