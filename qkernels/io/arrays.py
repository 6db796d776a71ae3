"""Generic array files for C and RTL test benches: one number a line, and C header arrays.

Text format (what ``format_array`` writes, ``read_array`` reads)::

    # <free comment>
    # shape 16 1 3 3
    144
    -3
    17
    ...

Integers are written as integers, floats with 9 significant digits (``%.9g``: enough to read a
float32 back to the same bits).
"""
from __future__ import annotations

import os
import re
from typing import Dict, Mapping, Sequence, Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]

_C_TYPES = {np.dtype(np.int8): "int8_t", np.dtype(np.uint8): "uint8_t",
            np.dtype(np.int16): "int16_t", np.dtype(np.uint16): "uint16_t",
            np.dtype(np.int32): "int32_t", np.dtype(np.uint32): "uint32_t",
            np.dtype(np.int64): "int64_t",
            np.dtype(np.float32): "float"}


def format_array(values: np.ndarray, comment: str = "") -> str:
    """One number a line, after a comment, a shape line and the count.

    Example:
        >>> import numpy as np
        >>> from qkernels.io import format_array
        >>> print(format_array(np.int8([[1, -2]]), "weights"), end="")
        # weights
        # shape 1 2
        2
        1
        -2
    """
    a = np.asarray(values)
    lines = [f"# {comment}" if comment else "#", "# shape " + " ".join(str(d) for d in a.shape),
             str(a.size)]
    flat = a.ravel()
    if a.dtype.kind in "iub":
        lines += [str(int(v)) for v in flat]
    else:
        lines += ["%.9g" % float(v) for v in flat]
    return "\n".join(lines) + "\n"


def read_array(path: PathLike, dtype: Union[str, np.dtype, None] = None) -> np.ndarray:
    """Read a file written by :func:`format_array` (integers unless a value has a '.' or 'e').

    Integers are read into int64 (or ``dtype``), floats into float32 (or ``dtype``). Raises
    :class:`~qkernels.io.FormatError` (a ValueError) naming the file and line for a value that
    is not a number, an integer outside the target type (a 20-digit integer does not fit in
    int64), a finite value that overflows a float type, a count or shape that does not match.

    Example:
        >>> import tempfile, pathlib, numpy as np
        >>> from qkernels.io import format_array, read_array
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "w.txt"
        >>> _ = p.write_text(format_array(np.int8([[1, -2]])))
        >>> read_array(p)
        array([[ 1, -2]])
    """
    from .quantized import FormatError

    def fail(line: int, what: str) -> FormatError:
        return FormatError(f"{path}:{line}: {what}")

    shape = None
    vals = []
    count = None
    count_line = 0
    try:
        with open(path, encoding="ascii") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as exc:
        raise FormatError(f"{path}: not an ASCII text file ({exc.reason} at byte "
                          f"{exc.start})") from None
    for ln, line in enumerate(lines, 1):
        s = line.strip()
        if not s:
            continue
        if s.startswith("#"):
            m = re.match(r"#\s*shape\s*(.*)$", s)
            if m:
                try:
                    shape = tuple(int(t) for t in m.group(1).split())
                except ValueError:
                    raise fail(ln, f"bad shape line {s!r}") from None
                if any(d < 0 for d in shape):
                    raise fail(ln, f"negative dimension in {s!r}")
            continue
        if count is None:
            try:
                count = int(s)
            except ValueError:
                raise fail(ln, f"expected the value count, got {s!r}") from None
            if count < 0:
                raise fail(ln, f"negative count {count}")
            count_line = ln
            continue
        vals.append((s, ln))
    if count is None or len(vals) != count:
        raise fail(count_line or len(lines), f"expected {count} values, found {len(vals)}")
    if shape is not None and int(np.prod(shape, dtype=object)) != count:
        raise fail(count_line, f"shape {shape} holds {int(np.prod(shape, dtype=object))} "
                               f"values, the count is {count}")
    blob = "".join(v for v, _ in vals).lower()
    is_float = "." in blob or "e" in blob or "n" in blob
    dt = np.dtype(dtype) if dtype is not None else np.dtype(np.float32 if is_float else np.int64)
    out = np.empty(count, dt)
    if dt.kind in "iu" and not is_float and vals:
        # the whole file at once (Python's int() rules, as the loop below); any value that
        # does not parse or does not fit goes to the loop, which names its line
        try:
            big = np.array([v for v, _ in vals], dtype=np.int64)
        except (ValueError, OverflowError):
            big = None
        info = np.iinfo(dt)
        if big is not None and int(big.min()) >= info.min and int(big.max()) <= info.max:
            out[:] = big
            return out.reshape(shape) if shape is not None else out
    if dt.kind in "iub" and not is_float:
        info = np.iinfo(dt) if dt.kind != "b" else None
        for i, (v, ln) in enumerate(vals):
            try:
                n = int(v)
            except ValueError:
                raise fail(ln, f"expected an integer, got {v!r}") from None
            if info is not None and not info.min <= n <= info.max:
                raise fail(ln, f"{v} does not fit in {dt} [{info.min}, {info.max}]")
            out[i] = n
    else:
        if dt.kind in "iub":
            raise fail(vals[0][1] if vals else count_line,
                       f"float values cannot be read as {dt}")
        for i, (v, ln) in enumerate(vals):
            try:
                x = float(v)
            except ValueError:
                raise fail(ln, f"expected a number, got {v!r}") from None
            with np.errstate(over="ignore"):
                y = np.array(x, dt)
            if np.isfinite(x) and not np.isfinite(y):
                raise fail(ln, f"{v} overflows {dt}")
            out[i] = y
    return out.reshape(shape) if shape is not None else out


def format_c_arrays(arrays: Mapping[str, np.ndarray], guard: str,
                    scalars: Mapping[str, Union[int, float]] = None) -> str:
    """A C header with one ``static const`` array per entry (and ``#define`` scalars).

    Example:
        >>> import numpy as np
        >>> from qkernels.io import format_c_arrays
        >>> print(format_c_arrays({"fc_w": np.int8([1, -2])}, "M_H"), end="")
        #ifndef M_H
        #define M_H
        #include <stdint.h>
        <BLANKLINE>
        static const int8_t fc_w[2] = {1, -2};
        <BLANKLINE>
        #endif /* M_H */
    """
    out = [f"#ifndef {guard}", f"#define {guard}", "#include <stdint.h>", ""]
    for name, v in (scalars or {}).items():
        out.append(f"#define {name.upper()} {v!r}" if isinstance(v, float) else f"#define {name.upper()} {int(v)}")
    if scalars:
        out.append("")
    for name, a in arrays.items():
        a = np.asarray(a)
        ctype = _C_TYPES.get(a.dtype)
        if ctype is None:
            raise TypeError(f"{name}: no C type for dtype {a.dtype}")
        flat = a.ravel()
        body = ", ".join(("%.9gf" % float(v)) if ctype == "float" else str(int(v)) for v in flat)
        out.append(f"static const {ctype} {name}[{max(flat.size, 1)}] = {{{body}}};")
    out += ["", f"#endif /* {guard} */"]
    return "\n".join(out) + "\n"


def json_default(o: object) -> object:
    """``json.dumps(..., default=json_default)``: NumPy scalars and arrays as Python values,
    anything else as its ``str``.

    Example:
        >>> import json, numpy as np
        >>> from qkernels.io import json_default
        >>> json.dumps({"a": np.int32(3), "b": np.arange(2)}, default=json_default)
        '{"a": 3, "b": [0, 1]}'
    """
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def format_params(params: Dict[str, object]) -> str:
    """``key value`` lines; a list value is written space-separated on its line."""
    def one(t: object) -> str:
        if isinstance(t, (float, np.floating)):
            return "%.9g" % float(t)
        return str(int(t)) if isinstance(t, (int, np.integer)) else str(t)
    lines = []
    for k, v in params.items():
        text = " ".join(one(t) for t in np.ravel(v)) if isinstance(v, (list, tuple, np.ndarray)) else one(v)
        lines.append(f"{k} {text}")
    return "\n".join(lines) + "\n"


def read_params(path: PathLike) -> Dict[str, str]:
    out = {}
    with open(path) as f:
        for line in f:
            s = line.strip()
            if s and not s.startswith("#"):
                k, _, v = s.partition(" ")
                out[k] = v
    return out
