"""qkernels: an integer golden model for quantized neural networks.

Bit-exact C kernels (quantize, dequantize, requantize, ...) exposed as NumPy ufuncs with a keyword
API. See README.md for a tour, and ``qkernels.ufuncs`` for the raw ufuncs.

Example:
    >>> import numpy as np, qkernels
    >>> q = qkernels.quantize(np.float32([0.5, -1.0]), 0.5, 0)
    >>> q, qkernels.dequantize(q, 0.5, 0)
    (array([ 1, -2], dtype=int8), array([ 0.5, -1. ], dtype=float32))
"""
__version__ = "0.1.0"

from . import linear16, presets, ufuncs
from ._checks import AccumulatorOverflowError
from ._config import get_include, get_library, show_config
from ._elementwise import (PreparedElementwise, accumulator_to_float, dequantize, fake_quantize,
                           prepare_dequantize, prepare_requantize, prepare_requantize_shift,
                           quantize, quantize_dynamic, quantize_multiplier, requantize,
                           requantize_float, requantize_shift)
from .linear import (PackedConv2d, PackedLinear, PreparedQConv2d, PreparedQLinear, conv2d_int32,
                     linear_float, linear_float_runner, linear_int32, pack_conv2d, pack_linear,
                     prepare_linear_int32, prepare_qconv2d, prepare_qlinear,
                     qconv2d, qlinear)
from .observers import (EntropyObserver, L2RangeObserver, MinMaxObserver,
                        MovingAverageMinMaxObserver, MSEObserver, Observer, PercentileObserver,
                        PowerOfTwoModeObserver)
from .ptf import (LayerNormParams, PTFParams, layernorm_errors, layernorm_reference,
                  prepare_layernorm, ptf_calibrate, ptf_dequantize, ptf_layernorm,
                  ptf_layernorm_stats, ptf_quantize, sqnr_db)
from .qparams import QParams, choose_qparams
from .transformer import (GeluParams, SoftmaxParams, matmul_int32, prepare_gelu, prepare_softmax,
                          qgelu, qmatmul, qsoftmax, softmax_dequantize)

__all__ = [
    "AccumulatorOverflowError", "EntropyObserver", "GeluParams", "L2RangeObserver",
    "LayerNormParams", "MSEObserver",
    "MinMaxObserver", "MovingAverageMinMaxObserver", "Observer", "PTFParams", "PackedConv2d",
    "PackedLinear", "PercentileObserver", "PreparedElementwise", "PreparedQConv2d", "PreparedQLinear", "PowerOfTwoModeObserver", "QParams",
    "SoftmaxParams", "accumulator_to_float", "choose_qparams", "get_include", "get_library", "conv2d_int32",
    "dequantize", "fake_quantize", "layernorm_errors", "layernorm_reference", "linear_float",
    "linear_float_runner", "linear_int32", "matmul_int32",
    "pack_conv2d", "pack_linear", "prepare_dequantize", "prepare_gelu", "prepare_layernorm", "prepare_linear_int32",
    "prepare_qconv2d", "prepare_qlinear", "prepare_requantize", "prepare_requantize_shift",
    "prepare_softmax", "presets", "ptf_calibrate", "ptf_dequantize", "ptf_layernorm", "ptf_layernorm_stats",
    "ptf_quantize", "qconv2d", "qgelu", "qlinear", "qmatmul", "qsoftmax", "quantize", "quantize_dynamic",
    "quantize_multiplier",
    "requantize", "requantize_float", "requantize_shift", "show_config", "softmax_dequantize", "sqnr_db",
    "ufuncs",
]
