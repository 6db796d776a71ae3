"""PyTorch's quantized arithmetic, in NumPy: the reference implementation of every quantized op
the bridge runs, operation for operation as PyTorch's CPU kernels compute it (read from their
source and checked against them in the tests).

=====================  =====================================================================
op                     integer arithmetic (PyTorch CPU kernels)
=====================  =====================================================================
quantize_per_tensor    ``qkernels.quantize(flavor="torch")`` (FBGEMM: ``RNE(fma(x, 1/s, zp))``)
quantized.add(_relu)   ``d = fl(fma(s, q, -fl(s*zp)))`` per input, ``c = fl(da + db)``,
                       (relu), ``RNE(fl(c * fl(1/s_out))) + zp_out`` (the ``Vectorized`` path);
                       engine "qnnpack", uint8: QNNPACK's integer add (``q_add_qnnpack``)
quantized.mul(_relu)   ``c = (a - za)(b - zb)`` (int32), ``RNE(fl(c * m)) + zp_out`` with
                       ``m = fl(fl(s_a * s_b) * fl(1 / s_out))`` (float32;
                       ``requantize_from_int``), both engines
add / mul scalar       ``quantized::add(x, c)``: new qparams from ``c_q = RNE(c / s)``
                       (``_add_scalar_out``); ``mul(x, c)``: ``s * |c|``, integers kept or
                       mirrored (``_mul_scalar_out``)
LeakyReLU              the same dequantize, ``dy = dx * (dx > 0 ? 1 : slope)``, same quantize
ReLU / ReLU6           integer clamp to ``[zp, quantize(6.0)]`` (qparams unchanged)
MaxPool2d              integer maximum (qparams unchanged)
AdaptiveAvgPool2d      ``RNE(sum / count)`` for power-of-two windows; otherwise PyTorch's float
                       steps per path (see ``q_adaptive_avg_pool2d``); engine "qnnpack":
                       QNNPACK's ``RNE(sum(q - zp) * scale) + zp`` (qparams unchanged)
AvgPool2d              ``RNE(fl(fl(float(sum - n * zp) * fl(1 / divisor)) + zp))`` (qparams
                       unchanged; ``avg_pool2d_out_frame``); engine "qnnpack", uint8: QNNPACK's
                       ``RNE(sum(q - zp) * scale) + zp`` with divisor ``kh * kw``
upsample_bilinear2d    float32 weights, ``RNE(fl(fl(r - zp) + zp))`` (qparams unchanged); the
                       channels-last kernel's FMA contractions (``q_upsample_bilinear2d``)
cat                    ``quantize_per_tensor(cat(dequantize(x_i)))`` to the output's qparams;
                       inputs already on them are copied (``quantized_cat_impl``)
dequantize             ``fl(s * (q - zp))``
linear_dynamic         fbgemm's per-call uint8 input quantization, exact int32 GEMM,
                       ``fmaf(acc, fl(x_scale * w_scale), bias)``
=====================  =====================================================================

The C kernels of :mod:`qkernels.qops` compute the common cases of these ops; the integer model
(:mod:`qkernels.torch.layers`) calls them, and these functions where the C op does not apply.

Example:
    >>> import numpy as np
    >>> from qkernels.torch.qarith import QTensor, q_add
    >>> a = QTensor(np.uint8([10, 200]), 0.1, 0); b = QTensor(np.uint8([20, 100]), 0.1, 0)
    >>> q_add(a, b, 0.2, 0).q
    array([ 15, 150], dtype=uint8)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np

import qkernels as qk
from qkernels.qops import max_pool2d_output_size

__all__ = ["QTensor", "q_add", "q_leaky_relu", "q_clamp", "q_max_pool2d", "q_adaptive_avg_pool2d",
           "q_cat", "q_avg_pool2d", "q_add_qnnpack", "q_mul", "q_add_scalar", "q_mul_scalar", "q_layernorm", "q_adaptive_avg_pool2d_qnnpack",
           "q_avg_pool2d_qnnpack", "fbgemm_choose_qparams", "dynamic_quantize_input",
           "dynamic_quantize_input_reference",
           "linear_dynamic", "conv2d_dynamic", "dynamic_output", "max_pool_out_size", "flatten",
           "fma32", "q_upsample_bilinear2d", "upsample_output_size"]

F32 = np.float32


@dataclass
class QTensor:
    """An integer tensor with its per-tensor quantization parameters."""

    q: np.ndarray
    scale: float
    zero_point: int

    def dequantize(self) -> np.ndarray:
        return qk.dequantize(self.q, F32(self.scale), self.zero_point)


# ---- PyTorch's elementwise quantized arithmetic ------------------------------------------------
def _vec_dequantize(t: QTensor) -> np.ndarray:
    """Vectorized<quint8>::dequantize: fl(fma(scale, q, -fl(scale * zp))), one rounding (the
    exact C fmaf of qkernels.accumulator_to_float)."""
    s = F32(t.scale)
    return qk.accumulator_to_float(t.q.astype(np.int32), s, -(s * F32(t.zero_point)))


def _vec_quantize(x: np.ndarray, scale: float, zp: int, dtype: np.dtype) -> np.ndarray:
    """Vectorized<quint8>::quantize: RNE(fl(x * fl(1/scale))) + zp, clamped."""
    return qk.quantize(x.astype(F32, copy=False), F32(scale), zp, dtype=dtype, flavor="pt2e")


def q_add(a: QTensor, b: QTensor, scale: float, zp: int, relu: bool = False) -> QTensor:
    c = _vec_dequantize(a) + _vec_dequantize(b)
    if relu:
        c = np.maximum(c, F32(0))
    return QTensor(_vec_quantize(c, scale, zp, a.q.dtype), scale, zp)


def q_add_qnnpack(a: QTensor, b: QTensor, scale: float, zp: int, relu: bool = False) -> QTensor:
    """``quantized::add(_relu)`` of uint8 tensors with engine "qnnpack": QNNPACK's add operator
    (``pytorch_qnnp_compute_add_quantization_params`` and the q8vadd kernels), integers only.

    ``r_x = fl(s_x / s_out)``; with ``e`` the float exponent of ``max(r_a, r_b)``,
    ``shift = 21 - e``, ``m_x = RNE(r_x * 2^shift)``; ``acc = m_a (a - za) + m_b (b - zb)``;
    ``y = round_half_away(acc / 2^shift) + zp``, clamped to ``[relu ? zp : 0, 255]``.

    Example:
        >>> import numpy as np
        >>> a = QTensor(np.uint8([5, 7]), 0.5, 0); b = QTensor(np.uint8([0, 0]), 0.5, 0)
        >>> q_add_qnnpack(a, b, 1.0, 0).q      # 2.5 -> 3, 3.5 -> 4 (fbgemm: 2, 4)
        array([3, 4], dtype=uint8)
    """
    ra, rb = F32(F32(a.scale) / F32(scale)), F32(F32(b.scale) / F32(scale))
    lo, hi = F32(2.0 ** -14), F32(2.0 ** 8)
    if not (lo <= ra < hi and lo <= rb < hi):
        raise ValueError(f"q_add_qnnpack: scale ratios {ra}, {rb} outside QNNPACK's [2^-14, 2^8)")
    shift = 21 - (int(np.frexp(max(ra, rb))[1]) - 1)
    if shift > 31:
        raise ValueError("q_add_qnnpack: scale ratios below 2^-10 (QNNPACK's shift would exceed 31)")
    ma, mb = (int(np.rint(F32(r * F32(2.0 ** shift)))) for r in (ra, rb))
    acc = ma * (a.q.astype(np.int64) - int(a.zero_point)) + mb * (b.q.astype(np.int64) - int(b.zero_point))
    mag = (np.abs(acc) + (1 << (shift - 1))) >> shift       # half away from zero
    y = np.sign(acc) * mag + int(zp)
    return QTensor(np.clip(y, int(zp) if relu else 0, 255).astype(np.uint8), scale, zp)


def q_mul(a: QTensor, b: QTensor, scale: float, zp: int, relu: bool = False) -> QTensor:
    """PyTorch's ``quantized::mul`` (``mul_relu``; ``qmul_kernel``, broadcasting): the integer
    product ``c = (a - za) * (b - zb)``, then ``requantize_from_int``: ``RNE(fl(float(c) * m)) +
    zp`` clamped, with ``m = fl(fl(s_a * s_b) * fl(1 / s_out))`` computed in float32 (as
    ``qmul_kernel`` does: ``float multiplier = self_scale * other_scale * inv_scale``; the double
    product rounded once differs by an ulp for some scales, and then some outputs by 1).

    Example:
        >>> import numpy as np
        >>> a = QTensor(np.uint8([10, 20]), 0.5, 10); b = QTensor(np.uint8([14, 14]), 0.25, 10)
        >>> q_mul(a, b, 0.125, 3).q      # c = (0, 40), m = 1: 3, 43
        array([ 3, 43], dtype=uint8)
    """
    m = F32(F32(F32(a.scale) * F32(b.scale)) * F32(F32(1) / F32(scale)))
    c = (a.q.astype(np.int32) - np.int32(a.zero_point)) * (b.q.astype(np.int32) - np.int32(b.zero_point))
    y = np.rint(c.astype(F32) * m).astype(np.int64) + int(zp)
    lo, hi = qk._checks.qrange(a.q.dtype)
    if relu:
        lo = max(lo, int(zp))
    return QTensor(np.clip(y, lo, hi).astype(a.q.dtype), scale, zp)


def q_add_scalar(x: QTensor, c: float, relu: bool = False) -> QTensor:
    """PyTorch's ``quantized::add(x, scalar)`` (``add_relu``; ``_add_scalar_out``): the output
    parameters follow the constant, ``c_q = RNE(c / s)`` (double). If ``z - c_q`` is a valid
    zero point the integers are kept and ``z' = z - c_q``; otherwise the output range is moved
    to fit (``s'`` from the double formula, ``z'`` at the type's end) and every element is
    ``requantize_from_int``: ``RNE(fl(float(q - z + c_q) * fl(fl(s) * fl(1 / fl(s'))))) + z'``.
    ``relu``: clamp at ``z'``.

    Example:
        >>> import numpy as np
        >>> y = q_add_scalar(QTensor(np.uint8([0, 100, 255]), 0.1, 50), 1.0)
        >>> y.q, y.zero_point          # the integers kept, the zero point moved by 10
        (array([  0, 100, 255], dtype=uint8), 40)
    """
    info = np.iinfo(x.q.dtype)
    qmin, qmax = int(info.min), int(info.max)
    s, z = float(x.scale), int(x.zero_point)
    c_q = int(np.rint(float(c) / s))
    if qmin <= z - c_q <= qmax:
        q = x.q.copy()
        zp = z - c_q
        if relu:
            q = np.maximum(q, x.q.dtype.type(zp))
        return QTensor(q, s, zp)
    if qmin > z - c_q:
        s2, z2 = (float(qmax) - (z - c_q)) / (float(qmax) - qmin) * s, qmin
    else:
        s2, z2 = (float(z - c_q) - qmin) / (float(qmax) - qmin) * s, qmax
    m = F32(F32(s) * F32(F32(1) / F32(s2)))
    v = (x.q.astype(np.int64) - z + c_q).astype(F32)
    y = np.rint((v * m).astype(F32)).astype(np.int64) + z2
    y = np.clip(y, z2 if relu else qmin, qmax)
    return QTensor(np.clip(y, qmin, qmax).astype(x.q.dtype), s2, z2)


def q_mul_scalar(x: QTensor, c: float, relu: bool = False) -> QTensor:
    """PyTorch's ``quantized::mul(x, scalar)`` (``mul_relu``; ``_mul_scalar_out``): ``c > 0``:
    integers kept, scale ``c * s`` (relu: clamp at the zero point); ``c == 0``: zeros with scale
    1, zero point 0; ``c < 0``: integers mirrored ``qmax + qmin - q``, scale ``|c| * s``, zero point
    ``qmax - (z - qmin)`` (relu: clamp at it).

    Example:
        >>> import numpy as np
        >>> y = q_mul_scalar(QTensor(np.uint8([0, 100, 255]), 0.1, 50), -2.0)
        >>> y.q, round(y.scale, 6), y.zero_point
        (array([255, 155,   0], dtype=uint8), 0.2, 205)
    """
    info = np.iinfo(x.q.dtype)
    qmin, qmax = int(info.min), int(info.max)
    s, z, c = float(x.scale), int(x.zero_point), float(c)
    if c > 0:
        q = np.maximum(x.q, x.q.dtype.type(z)) if relu else x.q.copy()
        return QTensor(q, c * s, z)
    if c == 0:
        return QTensor(np.zeros_like(x.q), 1.0, 0)
    zp = qmax - (z - qmin)
    q = (qmax + qmin - x.q.astype(np.int64)).astype(x.q.dtype)
    if relu:
        q = np.maximum(q, x.q.dtype.type(zp))
    return QTensor(q, abs(c) * s, zp)


def q_leaky_relu(x: QTensor, slope: float, scale: float, zp: int) -> QTensor:
    dx = _vec_dequantize(x)
    dy = dx * np.where(dx > 0, F32(1), F32(slope))
    return QTensor(_vec_quantize(dy, scale, zp, x.q.dtype), scale, zp)


def q_clamp(x: QTensor, lo: Optional[float], hi: Optional[float]) -> QTensor:
    """quantized clamp / hardtanh / relu6 / relu: clamp to quantize_val(bound), qparams kept."""
    def qv(v: float) -> int:
        return int(qk.quantize(np.float32(v), F32(x.scale), x.zero_point, dtype=x.q.dtype,
                               flavor="fbgemm_scalar"))
    q = x.q
    if lo is not None:
        q = np.maximum(q, q.dtype.type(qv(lo)))
    if hi is not None:
        q = np.minimum(q, q.dtype.type(qv(hi)))
    return QTensor(q, x.scale, x.zero_point)


def _pair(v: Any) -> Tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def max_pool_out_size(h: int, w: int, kernel: Any, stride: Any, padding: Any, dilation: Any,
                      ceil_mode: bool) -> Tuple[int, int]:
    """Output (height, width) of max pooling (PyTorch's rule, ceil_mode included)."""
    return max_pool2d_output_size(h, w, kernel, stride, padding, dilation, ceil_mode)


def q_max_pool2d(x: QTensor, kernel: Any, stride: Any, padding: Any, dilation: Any,
                 ceil_mode: bool) -> QTensor:
    kh, kw = _pair(kernel)
    sh, sw = _pair(stride if stride not in (None, []) else kernel)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    n, c, h, w = x.q.shape
    oh, ow = max_pool_out_size(h, w, kernel, stride, padding, dilation, ceil_mode)
    info = np.iinfo(x.q.dtype)
    pad = np.full((n, c, h + 2 * ph + sh * kh, w + 2 * pw + sw * kw), info.min, x.q.dtype)
    pad[:, :, ph:ph + h, pw:pw + w] = x.q
    out = np.full((n, c, oh, ow), info.min, x.q.dtype)
    for i in range(kh):
        for j in range(kw):
            win = pad[:, :, i * dh: i * dh + sh * oh: sh, j * dw: j * dw + sw * ow: sw]
            np.maximum(out, win[:, :, :oh, :ow], out=out)
    return QTensor(out, x.scale, x.zero_point)


def _adaptive_windows(i: int, o: int) -> List[Tuple[int, int]]:
    """PyTorch's adaptive pooling windows: [floor(j*i/o), ceil((j+1)*i/o))."""
    return [((j * i) // o, -((-(j + 1) * i) // o)) for j in range(o)]


def q_adaptive_avg_pool2d(x: QTensor, output_size: Any, *, channels_last: bool = True,
                          vec_width: int = 8) -> QTensor:
    """AdaptiveAvgPool2d as PyTorch's CPU kernels compute it (qparams kept).

    ``channels_last`` (the layout PyTorch's quantized conv hands on): per window of k values,
    ``acc = sum(q) - k*zp`` in int32 and ``m = fl(1/k)``; channels in whole vectors of
    ``vec_width`` (8: the AVX2 kernel, which PyTorch 2.13 runs on AVX-512 CPUs too) are
    quantized with FBGEMM's vector ``Quantize`` (``RNE(fma(acc, fl(1/fl(1/m)), zp))``), the rest
    with its scalar ``quantize_val``. NCHW-contiguous input: ``RNE(fl(sum * fl(fl(1/kh)/kw)))``.
    For power-of-two windows all of these equal ``RNE(sum / k)``.
    """
    n, c, h, w = x.q.shape
    oh, ow = _pair(output_size)
    oh = h if oh is None else oh
    ow = w if ow is None else ow
    out = np.empty((n, c, oh, ow), x.q.dtype)
    nvec = (c // vec_width) * vec_width
    for i, (h0, h1) in enumerate(_adaptive_windows(h, oh)):
        for j, (w0, w1) in enumerate(_adaptive_windows(w, ow)):
            k = (h1 - h0) * (w1 - w0)
            s = x.q[:, :, h0:h1, w0:w1].astype(np.int64).sum(axis=(2, 3))
            if not channels_last:
                r = F32(F32(F32(1) / F32(h1 - h0)) / F32(w1 - w0))
                out[:, :, i, j] = np.clip(np.rint(s.astype(F32) * r), *qk._checks.qrange(x.q.dtype))
                continue
            acc = (s - k * x.zero_point).astype(F32)
            sc = F32(1) / (F32(1) / F32(k))
            for lo, hi, flavor in ((0, nvec, "fbgemm"), (nvec, c, "fbgemm_scalar")):
                if hi > lo:
                    out[:, lo:hi, i, j] = qk.quantize(acc[:, lo:hi], sc, x.zero_point,
                                                      dtype=x.q.dtype, flavor=flavor)
    return QTensor(out, x.scale, x.zero_point)


def q_cat(xs: Sequence[QTensor], dim: int, scale: float, zp: int,
          bits: Optional[int] = None) -> QTensor:
    """PyTorch's ``quantized::cat`` on NCHW-contiguous tensors (``quantized_cat_impl``): every
    input dequantized (``fl(s * (q - zp))``), concatenated, and quantized to the output's
    parameters (``quantize_per_tensor``: fbgemm's ``RNE(fma(x, 1/s, zp))``). Inputs that already
    carry the output's scale and zero point are copied (the round trip is the identity).

    (PyTorch's channels-last fast path, ``qcat_nhwc_kernel``, rounds with its vectorized
    dequantize / quantize instead; NCHW integers never take it.)

    Example:
        >>> import numpy as np
        >>> a = QTensor(np.uint8([[10, 20]]), 0.5, 10); b = QTensor(np.uint8([[3]]), 1.0, 0)
        >>> q_cat([a, b], 1, 0.5, 10).q
        array([[10, 20, 16]], dtype=uint8)
    """
    if not xs:
        raise ValueError("q_cat needs at least one input")
    dt = xs[0].q.dtype
    if any(x.q.dtype != dt for x in xs):
        raise TypeError("q_cat: all inputs must have the same integer dtype")
    parts = []
    for x in xs:
        if F32(x.scale) == F32(scale) and int(x.zero_point) == int(zp):
            parts.append(x.q)
        else:
            f = qk.dequantize(x.q, F32(x.scale), x.zero_point)
            parts.append(qk.quantize(f, F32(scale), zp, dtype=dt, bits=bits, flavor="torch"))
    return QTensor(np.concatenate(parts, axis=dim), scale, zp)


def _pool_out_size(i: int, k: int, s: int, p: int, ceil_mode: bool) -> int:
    """PyTorch's pooling_output_shape (dilation 1)."""
    num = i + 2 * p - (k - 1) - 1
    o = (-(-num // s) if ceil_mode else num // s) + 1
    if ceil_mode and (o - 1) * s >= i + p:
        o -= 1
    return o


def _avg_pool_sums(x: QTensor, kernel: Any, stride: Any, padding: Any, ceil_mode: bool,
                   fill: int) -> Tuple[np.ndarray, Tuple[int, ...]]:
    """The int64 window sums of avg_pool2d over ``x.q`` padded with ``fill``, and the checked
    geometry (kh, kw, sh, sw, ph, pw, h, w, oh, ow)."""
    kh, kw = _pair(kernel)
    sh, sw = _pair(stride if stride not in (None, []) else kernel)
    ph, pw = _pair(padding)
    if kh < 1 or kw < 1 or sh < 1 or sw < 1 or ph < 0 or pw < 0:
        raise ValueError("avg_pool2d: kernel and stride must be positive, padding non-negative")
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError("avg_pool2d: padding must be at most half the kernel size")
    if x.q.ndim != 4:
        raise ValueError(f"avg_pool2d: expected an NCHW tensor, got shape {x.q.shape}")
    n, c, h, w = x.q.shape
    oh, ow = _pool_out_size(h, kh, sh, ph, ceil_mode), _pool_out_size(w, kw, sw, pw, ceil_mode)
    hh, ww = max((oh - 1) * sh + kh, ph + h), max((ow - 1) * sw + kw, pw + w)
    pad = np.full((n, c, hh, ww), fill, np.int64)
    pad[:, :, ph:ph + h, pw:pw + w] = x.q
    acc = np.zeros((n, c, oh, ow), np.int64)
    for i in range(kh):
        for j in range(kw):
            acc += pad[:, :, i: i + sh * (oh - 1) + 1: sh, j: j + sw * (ow - 1) + 1: sw]
    return acc, (kh, kw, sh, sw, ph, pw, h, w, oh, ow)


def torch_pool_vec_width() -> int:
    """Channels per vector in PyTorch's quantized NHWC average pooling on this machine
    (``Vectorized<quint8>::size() / 4``): 16 when ATen runs its AVX-512 kernels, 8 with AVX2, 0
    (no vector path) otherwise; ``torch.backends.cpu.get_cpu_capability()`` says which (the
    ``ATEN_CPU_CAPABILITY`` environment variable can lower it)."""
    import torch

    cap = str(torch.backends.cpu.get_cpu_capability()).upper()
    return 16 if cap.startswith("AVX512") else 8 if cap.startswith("AVX2") else 0


def q_avg_pool2d(x: QTensor, kernel: Any, stride: Any = None, padding: Any = 0,
                 ceil_mode: bool = False, count_include_pad: bool = True,
                 divisor_override: Optional[int] = None, *, channels_last: bool = False,
                 vec_width: int = 8) -> QTensor:
    """PyTorch's quantized ``avg_pool2d`` (NCHW ``avg_pool2d_out_frame``; fbgemm / x86 engines),
    qparams kept: per window ``acc = sum(q) - n_valid * zp`` (exact integers), then
    ``RNE(fl(fl(float(acc) * fl(1 / divisor)) + zp))`` clamped, where ``divisor`` is the window
    clipped to the padded input (``count_include_pad``), the valid elements only, or
    ``divisor_override``.

    ``channels_last`` (the layout PyTorch's quantized conv and BatchNorm hand on):
    ``qavg_pool2d_nhwc_kernel``, whose channels in whole vectors of ``vec_width`` (8 with AVX2,
    16 with AVX-512: :func:`torch_pool_vec_width`) are quantized with ``QuantizeAvx2`` /
    ``QuantizeAvx512``, ``RNE(fl(float(acc) * fl(1 / divisor))) + zp``:
    the zero point is added after the rounding, so a tie rounds to even relative to it; the
    other channels as above.

    Example:
        >>> import numpy as np
        >>> x = QTensor(np.arange(16, dtype=np.uint8).reshape(1, 1, 4, 4), 0.1, 3)
        >>> q_avg_pool2d(x, 2).q[0, 0]
        array([[ 2,  4],
               [10, 12]], dtype=uint8)
    """
    if divisor_override is not None and int(divisor_override) == 0:
        raise ValueError("avg_pool2d: divisor_override must not be zero")
    acc, (kh, kw, sh, sw, ph, pw, h, w, oh, ow) = _avg_pool_sums(x, kernel, stride, padding,
                                                                 ceil_mode, 0)

    def extent(o: int, k: int, s: int, p: int, size: int) -> Tuple[np.ndarray, np.ndarray]:
        start = np.arange(o) * s - p
        end = np.minimum(start + k, size + p)
        return end - start, np.minimum(end, size) - np.maximum(start, 0)
    pool_h, valid_h = extent(oh, kh, sh, ph, h)
    pool_w, valid_w = extent(ow, kw, sw, pw, w)
    valid = np.outer(valid_h, valid_w)
    if divisor_override is not None:
        div = np.full_like(valid, int(divisor_override))
    else:
        div = np.outer(pool_h, pool_w) if count_include_pad else valid
    mult = (1.0 / div.astype(np.float64)).astype(F32)
    s = (acc - valid * int(x.zero_point)).astype(F32)
    y = np.rint((s * mult).astype(F32) + F32(x.zero_point))
    if channels_last and vec_width > 0:
        nvec = (x.q.shape[1] // vec_width) * vec_width
        m = (F32(1) / div.astype(F32)).astype(F32)
        y[:, :nvec] = np.rint((s[:, :nvec] * m).astype(F32)) + F32(x.zero_point)
    info = np.iinfo(x.q.dtype)
    return QTensor(np.clip(y, info.min, info.max).astype(x.q.dtype), x.scale, x.zero_point)


def q_layernorm(x: Any, ln: "qk.LayerNormParams", out_dtype: Any = np.int8,
                bits: Optional[int] = None) -> Tuple[QTensor, np.ndarray]:
    """Integer LayerNorm over the last axis through qkernels' PTF kernels (FQ-ViT style).

    The input is requantized to the PTF parameters ``ln.ptf`` (``ptf_quantize`` of its dequantized
    value: one rounding, as every PyTorch elementwise quantized op does; a float32 array ``x`` is
    PTF-quantized as it is), then
    :func:`qkernels.ptf_layernorm` runs integer-only and gives int8 with ``ln.out_scale`` /
    ``ln.out_zero_point``. A uint8 ``out_dtype`` adds 128 to the integers and the zero point
    (exact); ``bits`` below 8 clamps to that range. Returns the output and the PTF uint8 input.

    Example:
        >>> import numpy as np, qkernels
        >>> p = qkernels.PTFParams(0.05, np.zeros(4, np.int32), 128)
        >>> ln = qkernels.prepare_layernorm(p, np.ones(4), np.zeros(4), out_scale=2 / 127)
        >>> y, _ = q_layernorm(QTensor(np.uint8([[100, 120, 140, 160]]), 0.05, 128), ln)
        >>> y.q
        array([[-85, -28,  28,  85]], dtype=int8)
    """
    q_ptf = ln.ptf.quantize(x.dequantize() if isinstance(x, QTensor) else np.asarray(x, F32))
    y = qk.ptf_layernorm(q_ptf, ln)
    dt = np.dtype(out_dtype)
    zp = int(ln.out_zero_point)
    if dt == np.uint8:
        y = (y.astype(np.int16) + 128).astype(np.uint8)
        zp += 128
    elif dt != np.int8:
        raise TypeError(f"q_layernorm: out_dtype must be int8 or uint8, got {dt}")
    if bits is not None:
        lo, hi = qk._checks.qrange(dt, bits=bits)
        y = np.clip(y, lo, hi).astype(dt)
    return QTensor(y, float(ln.out_scale), zp), q_ptf


def _qnnpack_average(acc: np.ndarray, k: int, x: QTensor) -> QTensor:
    """QNNPACK's average pooling output stage for window sums ``acc = sum(q - zp)`` (int, exact)
    over windows of ``k`` values: ``scale = fl(s / fl(s * k))`` (input and output scales are the
    same), ``_mm_cvtps_epi32(fl(float(acc) * scale))`` (RNE), int16 saturation, ``+ zp``, uint8."""
    s = F32(x.scale)
    scale = s / (s * F32(k))
    y = np.rint(acc.astype(F32) * scale).astype(np.int64)
    y = np.clip(y, -32768, 32767) + x.zero_point                # _mm_packs_epi32, _mm_adds_epi16
    return QTensor(np.clip(y, 0, 255).astype(np.uint8), x.scale, x.zero_point)


def q_adaptive_avg_pool2d_qnnpack(x: QTensor, output_size: Any, *,
                                  channels_last: bool = True) -> QTensor:
    """AdaptiveAvgPool2d as PyTorch runs it with engine "qnnpack" (uint8, each input size a
    multiple of the output size, not the identity): QNNPACK's average pooling, which subtracts
    the zero point before it divides, ``clamp(RNE(fl(float(sum(q - zp)) * fl(s / fl(s*k)))) +
    zp)``. A tie then rounds to even relative to the zero point, not in absolute value as in
    the fbgemm path. Any other case falls back to PyTorch's generic kernel
    (:func:`q_adaptive_avg_pool2d`)."""
    n, c, h, w = x.q.shape
    oh, ow = _pair(output_size)
    oh = h if oh is None else oh
    ow = w if ow is None else ow
    if (x.q.dtype != np.uint8 or (oh, ow) == (h, w) or h % oh or w % ow):
        return q_adaptive_avg_pool2d(x, output_size, channels_last=channels_last)
    kh, kw = h // oh, w // ow
    acc = x.q.astype(np.int64).reshape(n, c, oh, kh, ow, kw).sum(axis=(3, 5))
    return _qnnpack_average(acc - kh * kw * x.zero_point, kh * kw, x)


def q_avg_pool2d_qnnpack(x: QTensor, kernel: Any, stride: Any = None, padding: Any = 0,
                         ceil_mode: bool = False, count_include_pad: bool = True,
                         divisor_override: Optional[int] = None) -> QTensor:
    """``avg_pool2d`` as PyTorch runs it with engine "qnnpack": for uint8 input without
    ``ceil_mode`` QNNPACK's kernel, where padding holds the zero point and the divisor is always
    ``kh * kw`` (``count_include_pad`` and ``divisor_override`` are not used, as in PyTorch), then
    the output stage of :func:`q_adaptive_avg_pool2d_qnnpack`; otherwise PyTorch's generic
    kernel (:func:`q_avg_pool2d`).

    Example:
        >>> import numpy as np
        >>> x = QTensor(np.arange(16, dtype=np.uint8).reshape(1, 1, 4, 4), 0.1, 3)
        >>> q_avg_pool2d_qnnpack(x, 2).q[0, 0]     # ties: (10 - 4*3)/4 = -0.5 -> 0 -> 3
        array([[ 3,  5],
               [11, 13]], dtype=uint8)
        >>> q_avg_pool2d(x, 2).q[0, 0]             # fbgemm: 10/4 = 2.5 -> 2
        array([[ 2,  4],
               [10, 12]], dtype=uint8)
    """
    if x.q.dtype != np.uint8 or ceil_mode:
        return q_avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad,
                            divisor_override)
    acc, geo = _avg_pool_sums(x, kernel, stride, padding, False, x.zero_point)
    k = geo[0] * geo[1]   # padding holds the zero point: every window has kh * kw values
    return _qnnpack_average(acc - k * x.zero_point, k, x)


# ---- dynamic quantization (fbgemm quantized::linear_dynamic) -------------------------------------
_SMALL_SCALE = float(F32(6.1e-5))


def fbgemm_choose_qparams(mn: float, mx: float, qmin: int = 0, qmax: int = 255,
                          reduce_range: bool = False) -> Tuple[float, int]:
    """PyTorch's ``quant_utils::ChooseQuantizationParams`` (= fbgemm's), as the dynamic linear
    uses it: double arithmetic, a 6.1e-5 floor on the scale, the zero point from whichever end
    has the smaller error. Returns the double scale and the zero point."""
    if reduce_range:
        qmin, qmax = int(qmin / 2), int(qmax / 2)
    mn, mx = min(F32(mn), F32(0)), max(F32(mx), F32(0))
    scale = (float(mx) - float(mn)) / (qmax - qmin)
    if F32(scale) == 0 or not np.isfinite(F32(1) / F32(scale)):
        scale = 0.1
    if scale < _SMALL_SCALE:
        org = F32(scale)
        scale = _SMALL_SCALE
        if mn == 0:
            mx = F32(F32(_SMALL_SCALE) * F32(qmax - qmin))
        elif mx == 0:
            mn = F32(-F32(_SMALL_SCALE) * F32(qmax - qmin))
        else:
            amp = F32(F32(_SMALL_SCALE) / org)
            mn, mx = F32(mn * amp), F32(mx * amp)
    z_min = qmin - float(mn) / scale
    z_max = qmax - float(mx) / scale
    e_min = abs(qmin) - abs(float(mn) / scale)
    e_max = abs(qmax) - abs(float(mx) / scale)
    z0 = z_min if e_min < e_max else z_max
    zp = qmin if z0 < qmin else (qmax if z0 > qmax else int(np.rint(z0)))
    return scale, zp


def dynamic_quantize_input(x: np.ndarray, reduce_range: bool = True) -> QTensor:
    """fbgemm's per-call input quantization (``quantized::linear_dynamic``): uint8 from the
    tensor's min / max with :func:`fbgemm_choose_qparams` (``reduce_range``: [0, 127]) and
    fbgemm's ``Quantize`` (``RNE(fma(x, 1/s, zp))``)."""
    q, xs, xzp = qk.quantize_dynamic(x, reduce_range=reduce_range)   # one C call
    return QTensor(q, xs, xzp)


def dynamic_quantize_input_reference(x: np.ndarray, reduce_range: bool = True) -> QTensor:
    """:func:`dynamic_quantize_input` in NumPy (min / max, :func:`fbgemm_choose_qparams`, then
    ``qkernels.quantize``): the reference the C kernel is tested against."""
    x = np.asarray(x, F32)
    mn, mx = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    scale_d, xzp = fbgemm_choose_qparams(mn, mx, 0, 255, reduce_range)
    xs = F32(scale_d)
    return QTensor(qk.quantize(x, xs, xzp, dtype=np.uint8, flavor="fbgemm"), float(xs), xzp)


def dynamic_output(acc: np.ndarray, xs: float, ws: Any, bias: Optional[np.ndarray], axis: int,
                    relu: bool) -> np.ndarray:
    """ReQuantizeForFloat: ``fmaf(acc, fl(x_scale * w_scale), bias)`` per output channel."""
    mult = (F32(xs) * np.asarray(ws, F32)).astype(F32)
    b = np.zeros(acc.shape[axis], F32) if bias is None else bias
    y = qk.accumulator_to_float(acc, mult, b, axis=axis if np.ndim(mult) or np.ndim(b) else None)
    return np.maximum(y, F32(0)) if relu else y


def linear_dynamic(x: np.ndarray, w: Any, ws: Any, wzp: Any, bias: Optional[np.ndarray],
                   relu: bool = False, reduce_range: bool = True,
                   quantize_input: Optional[Callable[[np.ndarray], QTensor]] = None) -> np.ndarray:
    """fbgemm's dynamic linear: quantize x per call (uint8, reduce_range), exact int32 GEMM,
    then ``fmaf(acc, fl(x_scale * w_scale), bias)`` (ReQuantizeForFloat), optional ReLU.

    ``w`` is the int8 (N, K) weight or a :class:`qkernels.PackedLinear`; ``quantize_input``
    replaces fbgemm's input quantization (e.g. with other bits or a symmetric range).

    Example:
        >>> # y = linear_dynamic(x, w_int8, w_scale, 0, bias)  # == quantized::linear_dynamic
    """
    xq = (quantize_input or (lambda v: dynamic_quantize_input(v, reduce_range)))(np.asarray(x, F32))
    acc = qk.linear_int32(xq.q, w, x_zero_point=xq.zero_point, w_zero_point=wzp)
    return dynamic_output(acc, xq.scale, ws, bias, -1, relu)


def conv2d_dynamic(x: np.ndarray, w: Any, ws: Any, wzp: Any, bias: Optional[np.ndarray], *,
                   stride: Any = 1, padding: Any = 0, dilation: Any = 1, groups: int = 1,
                   relu: bool = False, reduce_range: bool = True,
                   quantize_input: Optional[Callable[[np.ndarray], QTensor]] = None) -> np.ndarray:
    """Dynamic convolution with the linear's arithmetic: input quantized per call, exact int32
    accumulators, ``fmaf(acc, fl(x_scale * w_scale[c]), bias[c])``, float NCHW output.

    PyTorch's ``quantized::conv2d_dynamic`` differs: it requantizes the accumulators to uint8
    with the *input's* scale and zero point (``apply_impl(q_input, x_scale, x_zp)``, clipping
    outputs outside the input's range) and dequantizes that; it is not reproduced here.
    """
    xq = (quantize_input or (lambda v: dynamic_quantize_input(v, reduce_range)))(np.asarray(x, F32))
    acc = qk.conv2d_int32(xq.q, w, stride=stride, padding=padding, dilation=dilation,
                          groups=groups, x_zero_point=xq.zero_point, w_zero_point=wzp)
    return dynamic_output(acc, xq.scale, ws, bias, 1, relu)


def flatten(x: Any, start: int, end: int) -> Any:
    """``torch.flatten`` of an array or a QTensor (qparams kept)."""
    a = x.q if isinstance(x, QTensor) else x
    shape = a.shape
    start %= len(shape)
    end %= len(shape)
    new = shape[:start] + (int(np.prod(shape[start:end + 1])),) + shape[end + 1:]
    r = a.reshape(new)
    return QTensor(r, x.scale, x.zero_point) if isinstance(x, QTensor) else r


# ---- bilinear upsampling --------------------------------------------------------------------------
def fma32(a: Any, b: Any, c: Any) -> np.ndarray:
    """``fmaf(a, b, c)`` of float32 arrays, correctly rounded (one rounding): the product is exact
    in float64, the float64 sum is rounded to odd (its error from a TwoSum), and round-to-odd at
    53 bits followed by round-to-nearest-even at 24 bits is the correctly rounded result.

    Example:
        >>> import numpy as np
        >>> a = np.float32(1 + 2 ** -12)
        >>> float(fma32(a, a, np.float32(-1))) == 2 ** -11 + 2 ** -24    # a*a - 1, exactly
        True
    """
    a64 = np.asarray(a, F32).astype(np.float64)
    b64 = np.asarray(b, F32).astype(np.float64)
    c64 = np.asarray(c, F32).astype(np.float64)
    p = a64 * b64                                   # exact: 24 + 24 bits
    s = p + c64
    bp = s - c64
    e = (p - bp) + (c64 - (s - bp))                 # TwoSum: p + c == s + e exactly
    even = (np.asarray(s).view(np.int64) & 1) == 0
    odd = np.where((e != 0) & even, np.nextafter(s, np.where(e > 0, np.inf, -np.inf)), s)
    return np.asarray(odd).astype(F32)


def _bilinear_axis(i: int, o: int, align_corners: bool, scale: Optional[float],
                   fma: bool) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(i1, i1 + i1p, lambda0, lambda1) of one axis, float32 as ATen computes them
    (``area_pixel_compute_scale`` / ``area_pixel_compute_source_index``): the ratio ``(i-1)/(o-1)``
    (align_corners, 0 for o == 1), ``fl(1/scale)`` with a scale, else ``i / o``; the source index
    ``r * d`` (align_corners) or ``max(r * (d + 0.5) - 0.5, 0)``, with ``fma`` as one
    ``fmaf(r, d + 0.5, -0.5)`` (the compiler contracts it in the channels-last kernel)."""
    if align_corners:
        r = F32(i - 1) / F32(o - 1) if o > 1 else F32(0)
    elif scale is not None and scale > 0:
        r = F32(1.0 / float(scale))
    else:
        r = F32(i) / F32(o)
    d = np.arange(o).astype(F32)
    if align_corners:
        src = (F32(r) * d).astype(F32)
    else:
        dh = (d + F32(0.5)).astype(F32)
        src = fma32(np.full(o, r, F32), dh, np.full(o, -0.5, F32)) if fma else \
            ((F32(r) * dh).astype(F32) - F32(0.5)).astype(F32)
        src = np.where(src < 0, F32(0), src).astype(F32)
    i1 = src.astype(np.int64)
    i2 = i1 + (i1 < i - 1)
    l1 = (src - i1.astype(F32)).astype(F32)
    return i1, i2, (F32(1) - l1).astype(F32), l1


def upsample_output_size(h: int, w: int, size: Any = None, scale_factor: Any = None,
                         recompute_scale_factor: Optional[bool] = None
                         ) -> Tuple[Tuple[int, int], Tuple[Optional[float], Optional[float]]]:
    """(output (h, w), the scales the op receives) of ``F.interpolate`` on a 4-d input:
    ``size`` as given, or ``floor(float(in) * scale)`` with the scales passed on unless
    ``recompute_scale_factor``.

    Example:
        >>> upsample_output_size(5, 7, scale_factor=1.5)
        ((7, 10), (1.5, 1.5))
        >>> upsample_output_size(5, 7, size=(9, 9))
        ((9, 9), (None, None))
    """
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate: give exactly one of size and scale_factor")
    if size is not None:
        oh, ow = (int(size), int(size)) if isinstance(size, (int, np.integer)) else \
            (int(size[0]), int(size[1]))
        return (oh, ow), (None, None)
    sh, sw = (float(scale_factor),) * 2 if isinstance(scale_factor, (int, float)) else \
        (float(scale_factor[0]), float(scale_factor[1]))
    out = (int(np.floor(float(h) * sh)), int(np.floor(float(w) * sw)))
    return out, ((None, None) if recompute_scale_factor else (sh, sw))


def q_upsample_bilinear2d(x: QTensor, size: Tuple[int, int], align_corners: bool,
                          scales: Tuple[Optional[float], Optional[float]] = (None, None), *,
                          channels_last: bool = False, vec_width: int = 16) -> QTensor:
    """PyTorch's quantized ``upsample_bilinear2d`` (qparams kept), N x C x H x W in and out.

    Per output element, with the float32 weights of :func:`_bilinear_axis` and the four input
    integers ``p``: ``r = h0*(w0*p00 + w1*p01) + h1*(w0*p10 + w1*p11)`` in float32, then
    ``RNE(fl(fl(r - zp) + zp))`` clamped (``quantize_val`` with scale 1, fbgemm's legacy
    rounding: the zero point is added before the rounding).

    - NCHW (``upsample_bilinear2d_out_frame``, UpSampleBilinear2d.cpp): every product and sum
      rounded on its own; an output of the input's size is a copy.
    - channels-last (``qupsample_bilinear2d_nhwc_kernel``, QuantizedOpKernels.cpp, compiled for
      AVX2 / AVX-512 with FMA contraction), taken when the input is channels-last contiguous:
      ``channels_last``, or a 1 x 1 image or a single channel (contiguous both ways). The source
      index is one ``fmaf``; the channels in whole vectors of ``vec_width`` (16 with AVX-512, 8
      with AVX2: :func:`torch_pool_vec_width`) and then in groups of 8 compute
      ``fmaf(h1, B, h0*A)`` with ``A = fmaf(w1, p01, w0*p00)`` (``B`` alike), the last
      ``C mod 8`` channels ``fmaf(h0, A, h1*B)`` with ``A = fmaf(w0, p00, w1*p01)``. The output
      takes the input's memory format (``suggest_memory_format``: by its strides, which for a
      1 x 1 image are those it was made with): a 1 x 1 input with NCHW strides (a quantized
      model input, a reshape) gets an NCHW output written NHWC, its memory read as NCHW, as
      PyTorch returns it; one with channels-last strides (``channels_last``: a quantized conv's
      or pooling's output, e.g. DeepLabV3's image-pooling branch) gets a channels-last output,
      no such reordering.
      (Found by testing every combination against torch 2.13 on 2.7M elements per ISA.)

    Example:
        >>> import numpy as np
        >>> x = QTensor(np.uint8([[[[0, 100], [50, 150]]]]), 0.1, 0)
        >>> q_upsample_bilinear2d(x, (3, 3), align_corners=True).q[0, 0]
        array([[  0,  50, 100],
               [ 25,  75, 125],
               [ 50, 100, 150]], dtype=uint8)
    """
    q = np.asarray(x.q)
    if q.ndim != 4:
        raise ValueError(f"upsample_bilinear2d expects an N x C x H x W input, got {q.shape}")
    n, c, h, w = q.shape
    oh, ow = int(size[0]), int(size[1])
    if min(h, w, oh, ow) <= 0 or c <= 0:
        raise ValueError(f"upsample_bilinear2d: empty input {q.shape} or output {(oh, ow)}")
    nhwc = bool(channels_last) or (h == 1 and w == 1) or c == 1
    if not nhwc and (oh, ow) == (h, w):
        return QTensor(q.copy(), x.scale, x.zero_point)
    hi, hj, h0, h1 = _bilinear_axis(h, oh, align_corners, scales[0], nhwc)
    wi, wj, w0, w1 = _bilinear_axis(w, ow, align_corners, scales[1], nhwc)
    p = q.astype(F32)

    def at(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return p[:, :, rows[:, None], cols[None, :]]
    p00, p01, p10, p11 = at(hi, wi), at(hi, wj), at(hj, wi), at(hj, wj)
    W0, W1 = w0[None, None, None, :], w1[None, None, None, :]
    H0, H1 = h0[:, None], h1[:, None]

    def mul(a: Any, b: Any) -> np.ndarray:
        return (a * b).astype(F32)

    def blend(first: bool) -> np.ndarray:
        """the FMA-contracted sum: ``first`` fuses the first product of each sum, else the
        second."""
        if first:
            a = fma32(np.broadcast_to(W0, p00.shape), p00, mul(W1, p01))
            b = fma32(np.broadcast_to(W0, p10.shape), p10, mul(W1, p11))
            return fma32(np.broadcast_to(H0, a.shape), a, mul(H1, b))
        a = fma32(np.broadcast_to(W1, p01.shape), p01, mul(W0, p00))
        b = fma32(np.broadcast_to(W1, p11.shape), p11, mul(W0, p10))
        return fma32(np.broadcast_to(H1, b.shape), b, mul(H0, a))

    if nhwc:
        vw = int(vec_width)
        nv = c // vw * vw if vw > 0 else 0
        split = nv + (c - nv) // 8 * 8 if vw > 0 else 0
        r = np.empty((n, c, oh, ow), F32)
        if split:
            r[:, :split] = blend(False)[:, :split]
        if split < c:
            r[:, split:] = blend(True)[:, split:]
    else:
        a = (mul(W0, p00) + mul(W1, p01)).astype(F32)
        b = (mul(W0, p10) + mul(W1, p11)).astype(F32)
        r = (mul(H0, a) + mul(H1, b)).astype(F32)
    zp = F32(x.zero_point)
    v = ((r - zp).astype(F32) + zp).astype(F32)
    info = np.iinfo(q.dtype)
    out = np.clip(np.rint(v), info.min, info.max).astype(q.dtype)
    if not channels_last and h == 1 and w == 1 and c > 1:    # NHWC data in an NCHW tensor
        out = np.ascontiguousarray(out.transpose(0, 2, 3, 1)).reshape(n, c, oh, ow)
    return QTensor(out, x.scale, x.zero_point)
