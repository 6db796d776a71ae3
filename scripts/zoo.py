"""torchvision architectures quantized by PyTorch (FX, fbgemm, random weights) and imported with
``from_torch_quantized``: the whole-model workloads of the speed scripts (bench_ab.py's "zoo"
rows, and a loop to run under ``perf record``).

The models are the zoo test's (tests/torch/test_torchvision_zoo_vs_torch.py; tests/_torchvision.py
imports torchvision from ``.venv/torchvision-zoo``), at 224x224 here.

    python scripts/zoo.py --model resnet50 --batch 1 --threads 1 --seconds 20   # a loop for perf
    python scripts/zoo.py --model mobilenet_v3_large --steps 30    # time per step, by layer kind
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))


def quantized(name: str, size: int = 224, engine: str = "fbgemm") -> Tuple[Any, Any]:
    """(PyTorch's FX-quantized model, the qkernels IntegerModel of it): the zoo test's model
    (tests/torch/test_torchvision_zoo_vs_torch.py: random weights, seed 0, BatchNorm statistics
    from one training-mode pass, calibrated on random images), imported for ``engine``."""
    import torch

    from qkernels.torch import from_torch_quantized
    for d in (("tests",), ("tests", "torch")):       # tests/_torchvision.py, the zoo test
        sys.path.insert(0, os.path.join(os.path.dirname(HERE), *d))
    from test_torchvision_zoo_vs_torch import _quantized
    torch.backends.quantized.engine = engine
    q, _ = _quantized(name, engine, size)
    return q, from_torch_quantized(q, engine=engine)


def step_profile(im: Any, x: Any, threads: int, runs: int, verbose: bool) -> None:
    """Each step of the compiled plan timed on its own (the minimum over ``runs`` runs of the
    whole plan, wall time), summed by layer kind (benchutil.plan_steps' kinds): where a model's
    time goes, robust to a loaded machine's bursts. scripts/profile_zoo.py gives medians, the
    % of the micro-kernel peak and OpenVINO's per-node times beside them."""
    import collections

    from benchutil import plan_steps, run_plan_steps
    steps = plan_steps(im, x, threads)
    best = [float("inf")] * len(steps)
    for _ in range(runs):
        _, times = run_plan_steps(im._plan, [x], threads)
        best = [min(b, t) for b, t in zip(best, times)]
    kinds: Any = collections.Counter()
    for s, v in zip(steps, best):
        kinds[s.kind] += v
    total = sum(best)
    print(f"sum of the per-step minima over {runs} runs: {total * 1e3:.2f} ms, {len(steps)} steps")
    for kind, v in kinds.most_common():
        print(f"  {v * 1e3:7.2f} ms {100 * v / total:5.1f}%  {kind}")
    if verbose:
        for s, v in zip(steps, best):   # conv: GMAC/s of the step
            rate = f"{s.macs / v / 1e9:6.1f} GMAC/s" if s.macs else ""
            print(f"  {v * 1e6:8.1f} us  {s.name or '(cat buffer)':40s} {s.kind:32s} "
                  f"{str(s.shape):22s} {rate}")


def main() -> int:
    ap = argparse.ArgumentParser(description="run one zoo model in a loop (for perf record)")
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--steps", type=int, default=0, metavar="RUNS",
                    help="instead of the loop: each step's minimum time over RUNS runs, by kind")
    ap.add_argument("--verbose", action="store_true",
                    help="with --steps: every step (a conv with its GMAC/s)")
    a = ap.parse_args()
    import numpy as np
    import torch
    torch.set_num_threads(1)   # no OpenMP threads of PyTorch's left spinning beside ours
    _, im = quantized(a.model, a.size)
    x = np.random.default_rng(0).standard_normal((a.batch, 3, a.size, a.size)).astype(np.float32)
    if a.steps:
        import qkernels
        print(f"{a.model} {a.size} b{a.batch} t{a.threads}, qkernels from {qkernels.__file__}")
        step_profile(im, x, a.threads, a.steps, a.verbose)
        return 0
    for _ in range(3):
        im(x, threads=a.threads)
    print(f"looping (pid {os.getpid()})", flush=True)
    n, t0 = 0, time.perf_counter()
    times = []
    while time.perf_counter() - t0 < a.seconds:
        t1 = time.perf_counter()
        im(x, threads=a.threads)
        times.append(time.perf_counter() - t1)
        n += 1
    times.sort()
    print(f"{a.model} {a.size} b{a.batch} t{a.threads}: {n} runs, median {times[n // 2] * 1e3:.2f} ms, "
          f"min {times[0] * 1e3:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
