#!/usr/bin/env python
"""Benchmark section for the PTF / integer LayerNorm kernels (called by scripts/bench.py).

197 x 384 tokens (the DeiT-small LayerNorm shape; the real data when it is beside the repository):
torch's float layer_norm on 1 thread (then 2) against the integer LayerNorm on 1 thread (then 2:
ptf_layernorm(threads=2) splits the tokens), in interleaved rounds in one process, wall and
CPU-time medians.
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, List, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import qkernels as qk  # noqa: E402
from benchutil import cpu_info, median_time  # noqa: E402


def _data():
    d = ROOT.parent / "shared" / "data" / "deit-small-ln0"
    if (d / "ln_input.npy").is_file():
        return (np.load(d / "ln_input.npy"), np.load(d / "gamma.npy"), np.load(d / "beta.npy"),
                "real DeiT-small block-0 LayerNorm input")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((197, 384)).astype(np.float32)
    x[:, 7] *= 12
    return x, np.ones(384, np.float32), np.zeros(384, np.float32), "synthetic 197 x 384"


def _interleaved(fns: List[Callable[[], object]], rounds: int, calls: int
                 ) -> List[Tuple[float, float]]:
    """(wall, CPU) median seconds per call of each callable, in interleaved rounds: each round
    times `calls` calls of every callable in turn (after one untimed call), so that load from
    other processes on a shared machine hits every contender alike. CPU time is the process's
    (all its threads)."""
    wall: List[List[float]] = [[] for _ in fns]
    cpu: List[List[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for i, f in enumerate(fns):
            f()
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(calls):
                f()
            wall[i].append((time.perf_counter() - t0) / calls)
            cpu[i].append((time.process_time() - c0) / calls)
    return [(statistics.median(w), statistics.median(c)) for w, c in zip(wall, cpu)]


def run(quick: bool = False) -> str:
    """The markdown section: ptf_layernorm (exact, sole) vs torch layer_norm; ptf_quantize."""
    import torch
    torch.set_num_threads(1)
    repeat = 5 if quick else 21
    rounds, calls = (5, 50) if quick else (41, 200)
    x, g, b, what = _data()
    x = np.ascontiguousarray(x, np.float32)
    p = qk.ptf_calibrate(x, method="seed")
    q = p.quantize(x)
    out_scale = 6.06 / 127
    xt, gt, bt = torch.from_numpy(x), torch.from_numpy(g), torch.from_numpy(b)
    y = np.empty(q.shape, np.int8)
    names = ["torch.nn.functional.layer_norm (float32)"]
    fns: List[Callable[[], object]] = [
        lambda: torch.nn.functional.layer_norm(xt, (x.shape[1],), gt, bt, 1e-12)]
    for method, rounding in (("exact", "round"), ("sole", "round"), ("sole", "truncate")):
        ln = qk.prepare_layernorm(p, g, b, method=method, rounding=rounding, out_scale=out_scale)
        names.append(f"qkernels.ptf_layernorm {method}"
                     + (f" ({rounding})" if method == "sole" else "") + " (uint8 -> int8, out=)")
        fns.append(lambda ln=ln: qk.ptf_layernorm(q, ln, out=y, threads=1))
    t1 = _interleaved(fns, rounds, calls)
    torch.set_num_threads(2)
    ln2 = qk.prepare_layernorm(p, g, b, method="exact", out_scale=out_scale)
    # torch on 2 threads, the exact integer LayerNorm on 1, then on 2
    t2 = _interleaved(fns[:2] + [lambda: qk.ptf_layernorm(q, ln2, out=y, threads=2)], rounds,
                      calls)
    torch.set_num_threads(1)
    t_prep = median_time(lambda: qk.prepare_layernorm(p, g, b, out_scale=out_scale), repeat)
    lines = ["## PTF quantization and integer LayerNorm", "",
             f"{what}, shape {x.shape[0]} x {x.shape[1]}, torch on 1 thread (then 2), "
             f"{cpu_info()[0]}, {qk.show_config('dicts')['simd']['chosen']} path (integer LayerNorm: "
             f"statistics and output stage in AVX-512 where the CPU has it, else AVX2, with scalar "
             f"twins; PTF quantize: AVX2). Interleaved rounds in one process "
             f"(`scripts/bench_layernorm.py`: {rounds} rounds of {calls} calls of each, medians); "
             f"load average {os.getloadavg()[0]:.2f} at the start (a shared 2-vCPU machine: "
             f"wall time swings with the load, the process's CPU time much less). Ratio = torch "
             f"time / this time (> 1 is faster than torch), on wall time and on CPU time.", "",
             "| op | threads | us per call (wall) | us per call (CPU) | tokens/s (wall) "
             "| vs torch (wall) | vs torch (CPU) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, (tw, tc) in zip(names, t1):
        ratio = "" if name.startswith("torch") else (f"{t1[0][0] / tw:.2f}x | "
                                                      f"{t1[0][1] / tc:.2f}x")
        lines.append(f"| {name} | 1 | {tw * 1e6:.1f} | {tc * 1e6:.1f} | {x.shape[0] / tw:.3g} | "
                     + (ratio if ratio else " | ") + " |")
    tw, _ = t2[0]
    lines.append(f"| {names[0]} | 2 | {tw * 1e6:.1f} | (2 threads) | {x.shape[0] / tw:.3g} |  |  |")
    tw, tc = t2[1]
    lines.append(f"| {names[1]} (one thread) beside it | 1 | {tw * 1e6:.1f} | {tc * 1e6:.1f} | "
                 f"{x.shape[0] / tw:.3g} | {t2[0][0] / tw:.2f}x |  |")
    tw, _ = t2[2]
    lines.append(f"| {names[1]} beside it | 2 | {tw * 1e6:.1f} | (2 threads) | "
                 f"{x.shape[0] / tw:.3g} | {t2[0][0] / tw:.2f}x |  |")
    lines.append(f"| qkernels.prepare_layernorm (once per layer) | 1 | {t_prep * 1e6:.1f} |  | "
                 f"{x.shape[0] / t_prep:.3g} |  |  |")
    # ptf_quantize throughput
    lines += ["", "| op | elements | ms | elements/s |", "|---|---:|---:|---:|"]
    sizes = [x.size] if quick else [x.size, 4 * 10 ** 6]
    for n in sizes:
        xx = np.resize(x, (n // x.shape[1], x.shape[1]))
        qq = np.empty(xx.shape, np.uint8)
        t = median_time(lambda: qk.ptf_quantize(xx, p.scale, p.alpha, p.zero_point, out=qq), repeat)
        lines.append(f"| qkernels.ptf_quantize f32 -> u8 | {xx.size} | {t * 1e3:.3f} | "
                     f"{xx.size / t:.3g} |")
        tq = median_time(lambda: torch.quantize_per_tensor(torch.from_numpy(xx), 0.02, 128,
                                                       torch.quint8), repeat)
        lines.append(f"| (reference) torch.quantize_per_tensor f32 -> quint8 | {xx.size} | "
                     f"{tq * 1e3:.3f} | {xx.size / tq:.3g} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
