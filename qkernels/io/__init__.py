"""File formats: the ``data/quantized/`` text files C test benches read (SPEC section 8), C
headers, ``.npz``; every write atomic (temp file, then rename).

Example:
    >>> import numpy as np, tempfile, pathlib
    >>> from qkernels import io
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "alpha_factors.txt"
    >>> io.atomic_write_text(p, io.format_alpha_factors(np.array([0, -2])))
    >>> io.read_alpha_factors(p)
    array([ 0, -2], dtype=int32)
"""
from ._atomic import (atomic_savez, atomic_write_bytes, atomic_write_text, clean_stale_temps,
                      umask)
from .arrays import (format_array, format_c_arrays, format_params, json_default, read_array,
                     read_params)
from .cheader import format_layernorm_header
from .hexmem import format_hex, read_hex
from .quantized import (FormatError, GoldenRef, QuantizedData, format_alpha_factors,
                        format_global_params, format_golden_int, format_golden_ref,
                        format_layernorm_int, format_layernorm_int_params,
                        format_layernorm_weights,
                        format_quantized_param, format_raw_vector, format_vector,
                        read_alpha_factors, read_global_params, read_golden_int,
                        read_golden_ref, read_layernorm_int, read_layernorm_int_params, read_layernorm_weights,
                        read_quantized_dir, read_quantized_param, read_raw_vector, read_vector,
                        snap_f8, snap_f10, write_quantized_dir)

__all__ = [
    "format_array", "format_c_arrays", "format_params", "json_default", "read_array",
    "read_params",
    "format_hex", "read_hex", "umask",
    "FormatError", "GoldenRef", "QuantizedData", "atomic_savez", "atomic_write_bytes",
    "atomic_write_text", "clean_stale_temps", "format_alpha_factors", "format_global_params",
    "format_golden_int",
    "format_golden_ref", "format_layernorm_header", "format_layernorm_int",
    "format_layernorm_int_params",
    "format_layernorm_weights", "format_quantized_param", "format_raw_vector", "format_vector",
    "read_alpha_factors", "read_global_params", "read_golden_int", "read_golden_ref",
    "read_layernorm_int", "read_layernorm_int_params", "read_layernorm_weights", "read_quantized_dir",
    "read_quantized_param", "read_raw_vector", "read_vector", "snap_f8", "snap_f10",
    "write_quantized_dir",
]
