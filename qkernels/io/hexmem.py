"""Verilog memory files: integer arrays in the format ``$readmemh`` reads.

One word a line, in hexadecimal, no comments and no count line: each value in two's complement
at ``bits`` bits (``-1`` at 8 bits is ``ff``), in C order. With ``per_word=N``, N values share a
line, the first in the least significant bits (``{v[N-1], ..., v[1], v[0]}``, as a memory of
``N * bits``-bit words); the last word is padded with zeros.

Example:
    >>> import numpy as np
    >>> from qkernels.io import format_hex, read_hex
    >>> print(format_hex(np.array([1, -1, 127, -128], np.int8), 8), end="")
    01
    ff
    7f
    80
    >>> print(format_hex(np.array([1, -1, 127], np.int8), 8, per_word=2), end="")
    ff01
    007f
    >>> read_hex(format_hex(np.array([3, -4], np.int8), 4), 4, signed=True)
    array([ 3, -4])
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

__all__ = ["format_hex", "read_hex", "hex_bits"]


def hex_bits(dtype: Any) -> int:
    """The bit width an integer dtype is written with (its storage width)."""
    return int(np.iinfo(np.dtype(dtype)).bits)


def format_hex(a: Any, bits: Optional[int] = None, per_word: int = 1) -> str:
    """``$readmemh`` text of integer array ``a`` (see the module docstring)."""
    v = np.asarray(a)
    if v.dtype.kind not in "iu":
        raise TypeError(f"format_hex needs integers, got dtype {v.dtype}")
    bits = hex_bits(v.dtype) if bits is None else int(bits)
    if not 1 <= bits <= 64 or per_word < 1 or bits * per_word > 4096:
        raise ValueError(f"bits must be in 1..64 and bits * per_word <= 4096; got {bits}, {per_word}")
    digits = (bits * per_word + 3) // 4
    if per_word == 1 and bits == 8 * v.dtype.itemsize:
        # one value a word at the storage width: the two's complement bytes themselves
        u = np.ascontiguousarray(v).reshape(-1).view(f"u{v.dtype.itemsize}")
        if bits == 8:   # a 256-entry table of the words (MiniLM's weights: 1.8M values)
            table = np.array([format(i, "02x") for i in range(256)])
            return "".join(s + "\n" for s in table[u].tolist())
        return "".join(format(x, f"0{digits}x") + "\n" for x in u.tolist())
    flat = v.reshape(-1).astype(object)
    lo, hi = (-(1 << (bits - 1)), (1 << bits) - 1) if v.dtype.kind == "i" else (0, (1 << bits) - 1)
    if flat.size and (min(flat) < lo or max(flat) > hi):
        raise ValueError(f"values outside {bits} bits: [{min(flat)}, {max(flat)}]")
    mask = (1 << bits) - 1
    digits = (bits * per_word + 3) // 4
    lines = []
    for i in range(0, flat.size, per_word):
        word = 0
        for j, x in enumerate(flat[i:i + per_word]):
            word |= (int(x) & mask) << (j * bits)
        lines.append(format(word, f"0{digits}x"))
    return "\n".join(lines) + ("\n" if lines else "")


def read_hex(text: str, bits: int, signed: bool = True, per_word: int = 1) -> np.ndarray:
    """The integers of ``$readmemh`` text written by :func:`format_hex` (int64)."""
    out = []
    mask = (1 << bits) - 1
    for line in text.split():
        word = int(line, 16)
        for j in range(per_word):
            x = (word >> (j * bits)) & mask
            if signed and x >> (bits - 1):
                x -= 1 << bits
            out.append(x)
    return np.array(out, np.int64)
