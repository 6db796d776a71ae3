"""PyTorch's quantized elementwise and pooling ops on 8-bit tensors, bit for bit (C kernels).

Each function reproduces one op of PyTorch's quantized CPU backend (engine fbgemm / x86) on
uint8 or int8 integers with per-tensor parameters, as ``csrc/qops.c`` computes it
(``qkernels.h`` states the arithmetic):

=======================  ===============================================================
function                 arithmetic
=======================  ===============================================================
qadd                     ``quantized::add(_relu)``: ``d = fmaf(s, q, -fl(s*zp))`` per input,
                         ``c = fl(da + db)`` (relu: ``max(c, 0)``),
                         ``y = clamp(RNE(fl(c * fl(1/s_out))) + zp_out)``
qadd (engine="qnnpack")  ``quantized::add(_relu)`` of uint8 with engine "qnnpack" (QNNPACK's
                         integer add: fixed-point multipliers of ``s / s_out``, a rounding
                         right shift, ties away from zero)
qmul                     ``quantized::mul(_relu)``: ``c = (a - za)(b - zb)`` (int32),
                         ``y = clamp(RNE(fl(c * m)) + zp_out)``,
                         ``m = fl(fl(s_a * s_b) * fl(1/s_out))``; b like a, or one value
                         per (N, C) plane (squeeze-excitation)
qleaky_relu              the same dequantize, ``dy = dx > 0 ? dx : fl(dx * slope)``, the same
                         quantize
qclamp                   integer clamp to ``[lo, hi]`` (ReLU, ReLU6, Hardtanh on integers)
qmax_pool2d              integer maximum over each window (padding taps ignored), NCHW
qadaptive_avg_pool2d     ``RNE(sum / count)`` over PyTorch's adaptive windows, NCHW
qglobal_avg_pool2d       adaptive_avg_pool2d to 1x1 of any plane size, PyTorch's channels-last
                         steps: ``acc = sum - hw*zp``, fbgemm's Quantize by ``fl(1/fl(1/hw))``
Lookup                   any op of one 8-bit input as its 256-entry table (hardswish,
                         hardsigmoid, ...): ``y = table[q - qmin]``
qavg_pool2d              ``quantized::avg_pool2d``: ``acc = sum - valid * zp``, then
                         ``clamp(RNE(fl(fl(acc * fl(1/div)) + zp)))`` (``avg_pool2d_out_frame``)
                         or, on the vector channels of PyTorch's channels-last kernel,
                         ``clamp(RNE(fl(acc * fl(1/div))) + zp)``
=======================  ===============================================================

The NumPy reference implementations (every path of PyTorch's arithmetic, including the float
steps of the non-power-of-two adaptive windows) are in :mod:`qkernels.torch.qarith`. These
functions take C-contiguous arrays (others are copied) and release the GIL while they run.

Example:
    >>> import numpy as np
    >>> from qkernels import qops
    >>> qops.qadd(np.uint8([10, 200]), np.uint8([20, 100]), 0.1, 0, 0.1, 0, 0.2, 0)
    array([ 15, 150], dtype=uint8)
"""
from __future__ import annotations

from typing import Any, Tuple

import numpy as np

from . import _checks as C
from . import _core

__all__ = ["qadd", "qleaky_relu", "qclamp", "qmax_pool2d", "MaxPool2d", "qadaptive_avg_pool2d",
           "max_pool2d_output_size", "Lookup", "qmul", "qglobal_avg_pool2d", "AvgPool2d",
           "qavg_pool2d"]


def _c(x: Any) -> np.ndarray:
    return x if type(x) is np.ndarray and x.flags.c_contiguous else np.ascontiguousarray(x)


def qadd(a: np.ndarray, b: np.ndarray, a_scale: float, a_zero_point: int, b_scale: float,
         b_zero_point: int, out_scale: float, out_zero_point: int, relu: bool = False, *,
         engine: str = "fbgemm", threads: int = 1) -> np.ndarray:
    """``quantized::add`` (``add_relu`` with ``relu=True``) of two same-shape 8-bit tensors.

    ``threads``: the fbgemm / x86 add splits the elements between up to that many threads when
    there are at least 49152 of them (the result does not depend on the count; the qnnpack add
    runs on one thread).

    ``engine``: the PyTorch quantized engine whose arithmetic to reproduce ("fbgemm", "x86" or
    "qnnpack"). With "qnnpack", uint8 inputs take QNNPACK's integer add (as PyTorch does; it
    refuses scale ratios ``s / s_out`` outside [2^-14, 2^8), and so does this, as do ratios
    below 2^-10, where QNNPACK's shift is undefined); int8 keeps the fbgemm arithmetic.

    Example:
        >>> import numpy as np
        >>> from qkernels import qops
        >>> qops.qadd(np.uint8([0, 5]), np.uint8([0, 5]), 1.0, 5, 1.0, 5, 1.0, 5, relu=True)
        array([5, 5], dtype=uint8)
        >>> qops.qadd(np.uint8([3]), np.uint8([0]), 0.5, 0, 0.5, 0, 1.0, 0)   # 1.5: RNE -> 2
        array([2], dtype=uint8)
        >>> qops.qadd(np.uint8([5]), np.uint8([0]), 0.5, 0, 0.5, 0, 1.0, 0, engine="qnnpack")
        array([3], dtype=uint8)
    """
    if engine not in ("fbgemm", "x86", "qnnpack"):
        raise ValueError(f"engine must be fbgemm, x86 or qnnpack; got {engine!r}")
    t = C.threads(threads)
    a, b = _c(a), _c(b)
    if engine == "qnnpack" and a.dtype == np.uint8:
        return _core._qadd(a, b, a_scale, a_zero_point, b_scale, b_zero_point, out_scale,
                           out_zero_point, bool(relu), True)
    return _core._qadd(a, b, a_scale, a_zero_point, b_scale, b_zero_point, out_scale,
                       out_zero_point, bool(relu), False, t)


def qmul(a: np.ndarray, b: np.ndarray, a_scale: float, a_zero_point: int, b_scale: float,
         b_zero_point: int, out_scale: float, out_zero_point: int, relu: bool = False) -> np.ndarray:
    """``quantized::mul`` (``mul_relu`` with ``relu=True``) of two 8-bit tensors of one dtype
    (both engines compute it alike): ``b`` has the shape of ``a``, or is ``(N, C, 1, ...)``
    for an ``(N, C, ...)`` ``a`` (one factor a plane, PyTorch's broadcast of a
    squeeze-excitation scale). Scale ratios with ``fl(fl(s_a * s_b) / s_out) > 2^15`` (products
    beyond int32, where PyTorch's own vector and scalar paths differ) raise ValueError.

    Example:
        >>> import numpy as np
        >>> from qkernels import qops
        >>> qops.qmul(np.uint8([10, 20]), np.uint8([14, 14]), 0.5, 10, 0.25, 10, 0.125, 3)
        array([ 3, 43], dtype=uint8)
    """
    return _core._qmul(_c(a), _c(b), a_scale, a_zero_point, b_scale, b_zero_point, out_scale,
                       out_zero_point, bool(relu))


def qleaky_relu(x: np.ndarray, x_scale: float, x_zero_point: int, slope: float, out_scale: float,
                out_zero_point: int) -> np.ndarray:
    """Quantized LeakyReLU (PyTorch's ``quantized::leaky_relu`` arithmetic).

    Example:
        >>> import numpy as np
        >>> from qkernels import qops
        >>> qops.qleaky_relu(np.uint8([0, 20]), 0.1, 10, 0.5, 0.1, 10)
        array([ 5, 20], dtype=uint8)
    """
    return _core._qleaky_relu(_c(x), x_scale, x_zero_point, slope, out_scale, out_zero_point)


def qclamp(x: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Integer clamp to ``[lo, hi]``, quantization parameters unchanged.

    Example:
        >>> import numpy as np
        >>> from qkernels import qops
        >>> qops.qclamp(np.int8([-100, 0, 100]), -5, 60)
        array([-5,  0, 60], dtype=int8)
    """
    return _core._qclamp(_c(x), lo, hi)


def qglobal_avg_pool2d(x: np.ndarray, zero_point: int, vec_width: int = 8) -> np.ndarray:
    """Quantized ``adaptive_avg_pool2d(x, 1)`` of an NCHW 8-bit tensor of zero point
    ``zero_point`` (parameters kept), any plane size, as PyTorch computes it on the channels-last
    tensors its quantized convs hand on: ``acc = sum - hw * zp`` (int32), then fbgemm's Quantize
    with scale ``fl(1/fl(1/hw))``: one rounding (``RNE(fma(acc, inv, zp))``) for the channels
    its vector loop takes (``C`` rounded down to ``vec_width``: 8, PyTorch 2.13's AVX2 loop,
    which it runs on AVX-512 CPUs too), two for the rest. Equal to
    :func:`qkernels.torch.qarith.q_adaptive_avg_pool2d` with ``output_size=1``.

    Example:
        >>> import numpy as np
        >>> from qkernels import qops
        >>> qops.qglobal_avg_pool2d(np.uint8([[[[1, 2, 4]]]]), 0)     # 7 / 3 -> 2
        array([[[[2]]]], dtype=uint8)
    """
    x = _c(x)
    if x.ndim != 4:
        raise ValueError(f"x must be NCHW (4 dimensions); got shape {x.shape}")
    if vec_width < 1:
        raise ValueError(f"vec_width must be >= 1, got {vec_width}")
    return _core._qglobal_avg_pool2d(x, int(zero_point), x.shape[1] // vec_width * vec_width)


class Lookup:
    """Any op of one 8-bit input as a table of its 256 outputs: ``y = table[q - qmin]`` (``q``
    for uint8, ``q + 128`` for int8), the table 8-bit too (uint8 or int8 outputs). The table is
    reordered once for the input's bytes; each call is one C pass (the byte look-up of
    :func:`qkernels.qgelu`'s "lut" method: AVX-512 VBMI / AVX2 / scalar, the same bytes).

    Example:
        >>> import numpy as np
        >>> from qkernels import qops
        >>> neg = qops.Lookup((128 - np.arange(256)).clip(-128, 127).astype(np.int8), np.int8)
        >>> neg(np.int8([-128, -1, 0, 5]))      # y = -q (saturated)
        array([127,   1,   0,  -5], dtype=int8)
    """

    __slots__ = ("x_dtype", "table", "_bytes")

    def __init__(self, table: Any, x_dtype: Any) -> None:
        t = np.asarray(table)
        self.x_dtype = np.dtype(x_dtype)
        if self.x_dtype not in (np.dtype(np.uint8), np.dtype(np.int8)):
            raise TypeError(f"x_dtype must be uint8 or int8, got {self.x_dtype}")
        if t.shape != (256,) or t.dtype not in (np.dtype(np.uint8), np.dtype(np.int8)):
            raise ValueError(f"table must be 256 uint8 or int8 values, got shape {t.shape} "
                             f"and dtype {t.dtype}")
        self.table = t
        # indexed by the input's byte: int8 q has byte q & 0xFF, entry q + 128 = byte ^ 0x80
        self._bytes = np.ascontiguousarray(np.roll(t, 128) if self.x_dtype == np.int8 else t)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if type(x) is not np.ndarray or x.dtype != self.x_dtype:
            x = np.asarray(x)
            if x.dtype != self.x_dtype:
                raise TypeError(f"x has dtype {x.dtype}; the table was made for {self.x_dtype}")
        return _core.gelu_lut(x, self._bytes)


def _pair(v: Any) -> Tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, (int, np.integer)) else (int(v[0]), int(v[1]))


def max_pool2d_output_size(h: int, w: int, kernel_size: Any, stride: Any = None, padding: Any = 0,
                           dilation: Any = 1, ceil_mode: bool = False) -> Tuple[int, int]:
    """Output (height, width) of max pooling, PyTorch's rule (``ceil_mode`` included).

    Example:
        >>> from qkernels import qops
        >>> qops.max_pool2d_output_size(7, 7, 3, 2, ceil_mode=True)
        (3, 3)
    """
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(stride if stride not in (None, []) else kernel_size)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)

    def size(i: int, k: int, s: int, p: int, d: int) -> int:
        num = i + 2 * p - d * (k - 1) - 1
        o = (-(-num // s) if ceil_mode else num // s) + 1
        if ceil_mode and (o - 1) * s >= i + p:
            o -= 1
        return o
    return size(h, kh, sh, ph, dh), size(w, kw, sw, pw, dw)


class MaxPool2d:
    """Integer max pooling with its geometry fixed (PyTorch's ``nn.MaxPool2d`` arguments): call
    it on NCHW 8-bit tensors; the output size of each input size is derived once.

    Example:
        >>> import numpy as np
        >>> from qkernels import qops
        >>> pool = qops.MaxPool2d(3, 2, 1)
        >>> pool(np.arange(25, dtype=np.int8).reshape(1, 1, 5, 5))[0, 0]
        array([[ 6,  8,  9],
               [16, 18, 19],
               [21, 23, 24]], dtype=int8)
    """

    __slots__ = ("geometry", "ceil_mode", "_sizes")

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
                 ceil_mode: bool = False) -> None:
        kh, kw = _pair(kernel_size)
        sh, sw = _pair(stride if stride not in (None, []) else kernel_size)
        ph, pw = _pair(padding)
        dh, dw = _pair(dilation)
        if min(kh, kw, sh, sw, dh, dw) < 1 or min(ph, pw) < 0:
            raise ValueError("max_pool2d: kernel_size, stride and dilation must be >= 1, padding "
                             f">= 0; got {kernel_size}, {stride}, {padding}, {dilation}")
        self.geometry = (kh, kw, sh, sw, ph, pw, dh, dw)
        self.ceil_mode = bool(ceil_mode)
        self._sizes: dict = {}

    def output_size(self, h: int, w: int) -> Tuple[int, int]:
        o = self._sizes.get((h, w))
        if o is None:
            kh, kw, sh, sw, ph, pw, dh, dw = self.geometry
            o = self._sizes[(h, w)] = max_pool2d_output_size(h, w, (kh, kw), (sh, sw), (ph, pw),
                                                             (dh, dw), self.ceil_mode)
        return o

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = _c(x)
        if x.ndim != 4:
            raise ValueError(f"x must be NCHW (4 dimensions); got shape {x.shape}")
        oh, ow = self.output_size(x.shape[2], x.shape[3])
        return _core._qmax_pool2d(x, *self.geometry, oh, ow)


def qmax_pool2d(x: np.ndarray, kernel_size: Any, stride: Any = None, padding: Any = 0,
                dilation: Any = 1, ceil_mode: bool = False) -> np.ndarray:
    """Integer max pooling of an NCHW 8-bit tensor (``F.max_pool2d`` on a quantized tensor).

    Example:
        >>> import numpy as np
        >>> from qkernels import qops
        >>> qops.qmax_pool2d(np.arange(16, dtype=np.uint8).reshape(1, 1, 4, 4), 2)[0, 0]
        array([[ 5,  7],
               [13, 15]], dtype=uint8)
    """
    return MaxPool2d(kernel_size, stride, padding, dilation, ceil_mode)(x)


def qadaptive_avg_pool2d(x: np.ndarray, output_size: Any) -> np.ndarray:
    """``RNE(sum / count)`` over PyTorch's adaptive windows (NCHW 8-bit input).

    This is PyTorch's quantized ``adaptive_avg_pool2d`` exactly when every window has the same
    power-of-two size (PyTorch's float steps then give the exact quotient); the other cases are
    :func:`qkernels.torch.qarith.q_adaptive_avg_pool2d`.

    Example:
        >>> import numpy as np
        >>> from qkernels import qops
        >>> qops.qadaptive_avg_pool2d(np.uint8([[[[1, 2], [3, 4]]]]), 1)
        array([[[[2]]]], dtype=uint8)
    """
    x = _c(x)
    if x.ndim != 4:
        raise ValueError(f"x must be NCHW (4 dimensions); got shape {x.shape}")
    if output_size is None or isinstance(output_size, (int, np.integer)):
        oh = ow = output_size
    else:
        oh, ow = output_size
    oh = x.shape[2] if oh is None else int(oh)
    ow = x.shape[3] if ow is None else int(ow)
    return _core._qadaptive_avg_pool2d(x, oh, ow)


class AvgPool2d:
    """PyTorch's quantized ``avg_pool2d`` (engines fbgemm / x86) with its geometry fixed: call it
    on NCHW 8-bit integers with the tensor's zero point (the scale is kept, so it plays no
    part); the output size of each input size is derived once (PyTorch's rule).

    Per window: ``acc = sum - valid * zp`` over the in-bounds elements, ``div`` the window
    clipped to the padded input (``count_include_pad``), the in-bounds count, or
    ``divisor_override``; then ``clamp(RNE(fl(fl(acc * m) + zp)))`` with
    ``m = (float)(1.0 / div)`` (``avg_pool2d_out_frame``). ``vec_width`` > 0: the tensor is
    channels-last in PyTorch (a conv or BatchNorm output), whose kernel quantizes the channels
    in whole vectors of ``vec_width`` (:func:`qkernels.torch.qarith.torch_pool_vec_width`) as
    ``clamp(RNE(fl(acc * fl(1.0f / div))) + zp)``, the rest as above. Bit for bit
    :func:`qkernels.torch.qarith.q_avg_pool2d`.

    Example:
        >>> import numpy as np
        >>> from qkernels import qops
        >>> pool = qops.AvgPool2d(2)
        >>> pool(np.arange(16, dtype=np.uint8).reshape(1, 1, 4, 4), 3)[0, 0]
        array([[ 2,  4],
               [10, 12]], dtype=uint8)
    """

    __slots__ = ("geometry", "ceil_mode", "count_include_pad", "divisor_override", "vec_width",
                 "_sizes")

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0,
                 ceil_mode: bool = False, count_include_pad: bool = True,
                 divisor_override: Any = None, *, vec_width: int = 0) -> None:
        kh, kw = _pair(kernel_size)
        sh, sw = _pair(stride if stride not in (None, []) else kernel_size)
        ph, pw = _pair(padding)
        if min(kh, kw, sh, sw) < 1 or min(ph, pw) < 0:
            raise ValueError("avg_pool2d: kernel_size and stride must be >= 1, padding >= 0; got "
                             f"{kernel_size}, {stride}, {padding}")
        if ph > kh // 2 or pw > kw // 2:
            raise ValueError("avg_pool2d: padding must be at most half the kernel size; got "
                             f"padding {padding} for kernel_size {kernel_size}")
        if kh * kw > 1 << 22:
            raise ValueError(f"avg_pool2d: kernel_size {kernel_size} has more than 2^22 taps")
        d = 0 if divisor_override is None else int(divisor_override)
        if divisor_override is not None and (d == 0 or not -2**31 <= d < 2**31):
            raise ValueError("avg_pool2d: divisor_override must be a nonzero int32; got "
                             f"{divisor_override}")
        if int(vec_width) < 0:
            raise ValueError(f"avg_pool2d: vec_width must be >= 0; got {vec_width}")
        self.geometry = (kh, kw, sh, sw, ph, pw)
        self.ceil_mode = bool(ceil_mode)
        self.count_include_pad = bool(count_include_pad)
        self.divisor_override = d
        self.vec_width = int(vec_width)
        self._sizes: dict = {}

    def output_size(self, h: int, w: int) -> Tuple[int, int]:
        o = self._sizes.get((h, w))
        if o is None:
            kh, kw, sh, sw, ph, pw = self.geometry
            o = self._sizes[(h, w)] = max_pool2d_output_size(h, w, (kh, kw), (sh, sw), (ph, pw),
                                                             1, self.ceil_mode)
        return o

    def __call__(self, x: np.ndarray, zero_point: int) -> np.ndarray:
        x = _c(x)
        if x.ndim != 4:
            raise ValueError(f"x must be NCHW (4 dimensions); got shape {x.shape}")
        oh, ow = self.output_size(x.shape[2], x.shape[3])
        if oh < 1 or ow < 1 or x.shape[2] < 1 or x.shape[3] < 1:
            raise ValueError(f"avg_pool2d: input {x.shape[2]}x{x.shape[3]} is smaller than the "
                             f"kernel {self.geometry[:2]} (output {oh}x{ow})")
        vw, c = self.vec_width, x.shape[1]
        nvec = (c // vw) * vw if vw else 0
        return _core._qavg_pool2d(x, *self.geometry, oh, ow, self.count_include_pad,
                                  self.divisor_override, int(zero_point), nvec)


def qavg_pool2d(x: np.ndarray, zero_point: int, kernel_size: Any, stride: Any = None,
                padding: Any = 0, ceil_mode: bool = False, count_include_pad: bool = True,
                divisor_override: Any = None, *, vec_width: int = 0) -> np.ndarray:
    """PyTorch's quantized ``avg_pool2d`` of NCHW 8-bit integers with zero point
    ``zero_point`` (see :class:`AvgPool2d`).

    Example:
        >>> import numpy as np
        >>> from qkernels import qops
        >>> qops.qavg_pool2d(np.uint8([[[[1, 2], [3, 5]]]]), 0, 2)    # 11 / 4 = 2.75
        array([[[[3]]]], dtype=uint8)
    """
    return AvgPool2d(kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override, vec_width=vec_width)(x, zero_point)
