"""Atomic file writes: a temporary file in the same folder, then os.replace().

The temporary file is ``.<name>.<pid>.<random>.tmp``: a run killed between the two steps (SIGKILL
leaves no chance to clean up) leaves one behind, never a half-written target, and
:func:`clean_stale_temps` removes such leftovers of processes that are gone.
"""
from __future__ import annotations

import errno
import io
import os
import re
import tempfile
from pathlib import Path
from typing import Any, List, Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]

# ours: .<name>.<pid>.<random>.tmp; the older form without a pid is treated as stale too
_TEMP = re.compile(r"\.(?P<name>.+?)\.(?:(?P<pid>\d+)\.)?[A-Za-z0-9_]{8}\.tmp")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def clean_stale_temps(folder: PathLike) -> List[Path]:
    """Remove the temporary files that interrupted atomic writes left in ``folder``.

    Only names of the form this module creates are touched, and only those whose writing
    process is no longer running. Returns the files removed.

    Example:
        >>> import tempfile, pathlib
        >>> from qkernels.io import clean_stale_temps
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / ".a.txt.999999999.abcd1234.tmp").write_text("half")
        >>> [p.name for p in clean_stale_temps(d)]
        ['.a.txt.999999999.abcd1234.tmp']
    """
    d = Path(folder)
    removed = []
    if not d.is_dir():
        return removed
    for p in d.iterdir():
        m = _TEMP.fullmatch(p.name)
        if m is None or not p.is_file():
            continue
        if m.group("pid") is not None and _alive(int(m.group("pid"))):
            continue
        try:
            p.unlink()
            removed.append(p)
        except FileNotFoundError:
            pass
    return removed


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
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.{os.getpid()}.", suffix=".tmp",
                                   dir=p.parent)
    except OSError as exc:  # read-only or missing folder: name the file we meant to write
        raise type(exc)(exc.errno, exc.strerror or os.strerror(exc.errno or errno.EIO),
                        str(p)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, p)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):  # e.g. ENOSPC: the target's name, not the temporary's
            raise type(exc)(exc.errno, exc.strerror or str(exc), str(p)) from None
        raise


def atomic_savez(path: PathLike, **arrays: Any) -> None:
    """``numpy.savez_compressed`` through an atomic write."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
