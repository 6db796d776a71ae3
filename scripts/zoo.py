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
    whole plan, wall time), summed by layer kind: where a model's time goes, robust to a loaded
    machine's bursts."""
    import collections

    import numpy as np
    im(x, threads=threads)
    plan = im._plan
    best: dict = {}
    for _ in range(runs):
        env = [None] * plan.n_slots
        env[plan.inputs[0]] = x
        for si, (k, ins, out, name) in enumerate(plan.steps):
            t0 = time.perf_counter()
            env[out] = k(threads, *[env[i] for i in ins])
            dt = time.perf_counter() - t0
            best[si] = min(best.get(si, dt), dt)
    kinds: Any = collections.Counter()
    rows = []
    for si, (_, _, out, name) in enumerate(plan.steps):
        if not name:     # a concatenation's output array (qkernels.torch._runtime.place_cats)
            kinds["cat buffer"] += best[si]
            continue
        L = im.layers[name]
        kind = type(L).__name__
        if hasattr(L, "groups") and hasattr(L, "w_int"):
            kh, kw = L.w_int.shape[2:]
            kind += f" {kh}x{kw} s{L.stride[0]}{' depthwise' if L.groups > 1 else ''}"
        kinds[kind] += best[si]
        shape = getattr(env[out], "shape", None)
        macs = 0
        if hasattr(L, "w_int") and shape is not None and len(shape) == 4:
            macs = int(np.prod(shape)) * int(np.prod(L.w_int.shape[1:]))
        rows.append((best[si], name, kind, shape, macs))
    total = sum(best.values())
    print(f"sum of the per-step minima over {runs} runs: {total * 1e3:.2f} ms, {len(rows)} steps")
    for kind, v in kinds.most_common():
        print(f"  {v * 1e3:7.2f} ms {100 * v / total:5.1f}%  {kind}")
    if verbose:
        for v, name, kind, shape, macs in rows:   # conv: GMAC/s of the step
            rate = f"{macs / v / 1e9:6.1f} GMAC/s" if macs else ""
            print(f"  {v * 1e6:8.1f} us  {name:40s} {kind:32s} {str(shape):22s} {rate}")


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
