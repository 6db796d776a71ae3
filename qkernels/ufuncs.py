"""The raw NumPy ufuncs behind the keyword API.

Use them for ``where=``, ``signature=``, ``__array_ufunc__`` interplay or to skip argument
checks. Parameters are operands (they broadcast); the dtype they take is fixed: scale float32,
zero point / multiplier / shift / qmin / qmax int32. A NaN input or a bad parameter raises the
floating-point "invalid" flag, which NumPy reports per ``np.errstate`` (a RuntimeWarning by default,
FloatingPointError under ``np.errstate(invalid="raise")``); the keyword API turns it into a
ValueError naming the argument. The outputs are then defined: 0 where a bad parameter was refused
(and for a whole ``(m, n)`` block of ``linear_int32``), the right values before a NaN.
The SIMD and scalar loops give the same outputs and the same flag on every input.

Names: ``quantize_<flavor>_<out>`` with flavor in fbgemm, fbgemm_scalar, pt2e, onnx, tflite;
``quantize_torch_<out>``, the formula of ``torch.quantize_per_tensor`` for that type (the same
ufunc object as ``quantize_fbgemm_<out>`` for u8/s8, ``quantize_fbgemm_scalar_<out>`` otherwise);
``dequantize``, ``fake_quantize_torch``, ``quantize_multiplier``,
``requantize_<double|single|fp32>_<out>``, ``requantize_shift_<rounding>_<out>``; <out> is one of
u8, s8, u16, s16, s32.

Example:
    >>> import numpy as np
    >>> from qkernels import ufuncs
    >>> ufuncs.quantize_torch_u8(np.float32([0.5, 1.0]), np.float32(0.5), 0, 0, 255)
    array([1, 2], dtype=uint8)
"""
import numpy as np

from . import _core

_ufuncs = {name: getattr(_core, name) for name in dir(_core)
           if isinstance(getattr(_core, name), np.ufunc)}
for _out in ("u8", "s8", "u16", "s16", "s32"):
    _ufuncs[f"quantize_torch_{_out}"] = _ufuncs[
        f"quantize_fbgemm_{_out}" if _out in ("u8", "s8") else f"quantize_fbgemm_scalar_{_out}"]
globals().update(_ufuncs)
__all__ = sorted(_ufuncs)
