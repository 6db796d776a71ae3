#!/usr/bin/env python
"""Benchmark section for the PTF / integer LayerNorm kernels (called by scripts/bench.py).

One thread (torch.set_num_threads(1); the qkernels kernels are single-threaded), 197 x 384 tokens
(the DeiT-small LayerNorm shape; the real data when it is beside the repository), medians of
repeated runs after a warm-up.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

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


def run(quick: bool = False) -> str:
    """The markdown section: ptf_layernorm (exact, sole) vs torch layer_norm; ptf_quantize."""
    import torch
    torch.set_num_threads(1)
    repeat = 5 if quick else 21
    x, g, b, what = _data()
    x = np.ascontiguousarray(x, np.float32)
    p = qk.ptf_calibrate(x, method="seed")
    q = p.quantize(x)
    out_scale = 6.06 / 127
    rows = []
    xt, gt, bt = torch.from_numpy(x), torch.from_numpy(g), torch.from_numpy(b)
    t_torch = median_time(lambda: torch.nn.functional.layer_norm(xt, (x.shape[1],), gt, bt, 1e-12),
                      repeat)
    rows.append(("torch.nn.functional.layer_norm (float32)", t_torch, None))
    y = np.empty(q.shape, np.int8)
    for method, rounding in (("exact", "round"), ("sole", "round"), ("sole", "truncate")):
        ln = qk.prepare_layernorm(p, g, b, method=method, rounding=rounding, out_scale=out_scale)
        t = median_time(lambda: qk.ptf_layernorm(q, ln, out=y), repeat)
        rows.append((f"qkernels.ptf_layernorm {method}"
                     + (f" ({rounding})" if method == "sole" else "") + " (uint8 -> int8)", t,
                     t_torch / t))
    t_prep = median_time(lambda: qk.prepare_layernorm(p, g, b, out_scale=out_scale), repeat)
    rows.append(("qkernels.prepare_layernorm (once per layer)", t_prep, None))
    lines = ["## PTF quantization and integer LayerNorm", "",
             f"{what}, shape {x.shape[0]} x {x.shape[1]}, one thread, median of {repeat} runs; "
             f"{cpu_info()[0]}, {qk.show_config('dicts')['simd']['chosen']} path (integer LayerNorm: "
             f"statistics in AVX2, output stage in AVX-512 / AVX2, with scalar twins; PTF quantize: "
             f"AVX2). "
             f"Ratio = torch time / this time (> 1 is faster than torch).", "",
             "| op | us per call | tokens/s | vs torch float |", "|---|---:|---:|---:|"]
    for name, t, ratio in rows:
        lines.append(f"| {name} | {t * 1e6:.1f} | {x.shape[0] / t:.3g} | "
                     f"{'' if ratio is None else f'{ratio:.2f}x'} |")
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
