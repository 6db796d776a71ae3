"""The raw NumPy ufuncs behind the keyword API.

Use them for ``where=``, ``signature=``, ``__array_ufunc__`` interplay or to skip argument
checks. Parameters are operands (they broadcast); the dtype they take is fixed: scale float32,
zero point / multiplier / shift / qmin / qmax int32. A NaN input or a bad parameter raises the
floating-point "invalid" flag, which NumPy reports per ``np.errstate`` (a RuntimeWarning by default,
FloatingPointError under ``np.errstate(invalid="raise")``); the keyword API turns it into a
ValueError naming the argument.

Names: ``quantize_<flavor>_<out>``, ``dequantize``, ``fake_quantize_torch``,
``quantize_multiplier``, ``requantize_<double|single|fp32>_<out>``,
``requantize_shift_<rounding>_<out>``, with <out> in u8, s8, u16, s16, s32.

Example:
    >>> import numpy as np
    >>> from qkernels import ufuncs
    >>> ufuncs.quantize_pt2e_u8(np.float32([0.5, 1.0]), np.float32(0.5), 0, 0, 255)
    array([1, 2], dtype=uint8)
"""
import numpy as np

from . import _core

__all__ = sorted(name for name in dir(_core) if isinstance(getattr(_core, name), np.ufunc))
globals().update({name: getattr(_core, name) for name in __all__})
