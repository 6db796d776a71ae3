"""Atomic file writes: a temporary file in the same folder, then os.replace()."""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any, Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never half.

    Example:
        >>> import tempfile, pathlib
        >>> from qkernels.io import atomic_write_text
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
        >>> atomic_write_text(p, "1\\n"); p.read_text()
        '1\\n'
    """
    atomic_write_bytes(path, text.encode("ascii"))


def umask() -> int:
    """The process umask (read without changing it where the OS allows)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:   # pragma: no cover - not Linux
        pass
    m = os.umask(0o022)   # pragma: no cover
    os.umask(m)
    return m


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Bytes version of :func:`atomic_write_text`. The file gets the mode a plain ``open``
    would give it (0666 minus the umask), not the temporary file's 0600."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_savez(path: PathLike, **arrays: Any) -> None:
    """``numpy.savez_compressed`` through an atomic write."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
