"""Timing and machine description shared by the benchmark scripts (bench.py and its sections)."""
from __future__ import annotations

import platform
import statistics
import time
from typing import Callable, Tuple


def median_time(fn: Callable[[], object], repeat: int, min_time: float = 0.2) -> float:
    """Median seconds of one call; each sample runs the call enough times to last ~min_time/repeat."""
    fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    inner = max(1, int(min_time / repeat / once))
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner)
    return statistics.median(samples)


def cpu_info() -> Tuple[str, str]:
    """(model name, flags line) from /proc/cpuinfo, or the platform's description."""
    name, flags = platform.processor() or platform.machine(), ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and name == (platform.processor() or platform.machine()):
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = line
    except OSError:
        pass
    return name, flags
