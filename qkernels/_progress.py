"""One progress display for every long job of the command line (calibration, collection, data
generation, training): a tqdm bar when tqdm is installed and stderr is a terminal, otherwise
plain lines (no carriage returns in log files), at most one every 10% of the work.

Example:
    >>> from qkernels._progress import Progress
    >>> p = Progress("work", 3, enabled=False)
    >>> for _ in range(3): p.step()
    >>> p.close()
"""
from __future__ import annotations

import sys
import time
from typing import Any, Iterable, Iterator, Optional, TextIO


class Progress:
    """``step()`` per unit of work, ``close()`` at the end; ``postfix(**kv)`` shows figures such
    as a loss beside the bar. Silent when ``enabled`` is False."""

    def __init__(self, label: str, total: Optional[int], enabled: bool = True,
                 stream: Optional[TextIO] = None) -> None:
        self.label, self.total, self.enabled = label, total, enabled
        self.stream = stream or sys.stderr
        self.n, self.t0, self._next_pct = 0, time.monotonic(), 10
        self._post = ""
        self._bar: Any = None
        if enabled and _isatty(self.stream):
            try:
                from tqdm import tqdm
                self._bar = tqdm(total=total, desc=label, file=self.stream, leave=True,
                                 dynamic_ncols=True)
            except ImportError:
                self._bar = None

    def postfix(self, **values: Any) -> None:
        """Figures to show beside the progress (``loss=0.31``)."""
        self._post = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in values.items())
        if self._bar is not None:
            self._bar.set_postfix_str(self._post, refresh=False)

    def step(self, k: int = 1) -> None:
        self.n += k
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(k)
            return
        if self.total:
            pct = 100 * self.n // self.total
            if pct < self._next_pct and self.n < self.total:
                return
            self._next_pct = (pct // 10 + 1) * 10
            done = f"{self.n}/{self.total}"
        else:
            done = str(self.n)
        self.stream.write(f"{self.label}: {done} ({time.monotonic() - self.t0:.1f}s)"
                          f"{' ' + self._post if self._post else ''}\n")
        self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def progress(items: Iterable[Any], label: str, total: Optional[int] = None,
             enabled: bool = True) -> Iterator[Any]:
    """Iterate ``items`` showing progress (total: ``len(items)`` when it has one)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    p = Progress(label, total, enabled)
    try:
        for it in items:
            yield it
            p.step()
    finally:
        p.close()


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
