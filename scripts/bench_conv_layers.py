#!/usr/bin/env python
"""Per-layer A/B speed of the dense convolutions of resnet50 / resnet18 at batch 1 (issue 19):
every distinct conv shape of the model, its count in the model, time and GMAC/s in two qkernels
trees, interleaved.

    python scripts/bench_conv_layers.py --a /work/main --b . [--model resnet50] [--threads 1 2]
    python scripts/bench_conv_layers.py --b .            # one tree only: where the time goes

One worker process per tree imports qkernels from its tree and prepares every layer (random
int8 weights, u8 activations, the fbgemm preset the PyTorch bridge uses for torchvision
models); then, round after round, each (layer, threads) is timed in A and in B back to back
(median of repeated calls, the order alternating), so that a burst of load from other processes
hits both alike. The report: per layer, its count in the model, the medians over rounds, the
GMAC/s of B, B/A (< 1: B faster), and the model's conv total (count-weighted).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from typing import Dict, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))

# (name, count in the model, C, H, O, k, stride, pad)
RESNET50 = [
    ("conv1 7x7/2 3->64 @224", 1, 3, 224, 64, 7, 2, 3),
    ("1x1 64->64 @56", 1, 64, 56, 64, 1, 1, 0),
    ("3x3 64->64 @56", 3, 64, 56, 64, 3, 1, 1),
    ("1x1 64->256 @56", 4, 64, 56, 256, 1, 1, 0),
    ("1x1 256->64 @56", 2, 256, 56, 64, 1, 1, 0),
    ("1x1 256->128 @56", 1, 256, 56, 128, 1, 1, 0),
    ("3x3/2 128->128 @56", 1, 128, 56, 128, 3, 2, 1),
    ("1x1 128->512 @28", 4, 128, 28, 512, 1, 1, 0),
    ("1x1/2 256->512 @56", 1, 256, 56, 512, 1, 2, 0),
    ("1x1 512->128 @28", 3, 512, 28, 128, 1, 1, 0),
    ("3x3 128->128 @28", 3, 128, 28, 128, 3, 1, 1),
    ("1x1 512->256 @28", 1, 512, 28, 256, 1, 1, 0),
    ("3x3/2 256->256 @28", 1, 256, 28, 256, 3, 2, 1),
    ("1x1 256->1024 @14", 6, 256, 14, 1024, 1, 1, 0),
    ("1x1/2 512->1024 @28", 1, 512, 28, 1024, 1, 2, 0),
    ("1x1 1024->256 @14", 5, 1024, 14, 256, 1, 1, 0),
    ("3x3 256->256 @14", 5, 256, 14, 256, 3, 1, 1),
    ("1x1 1024->512 @14", 1, 1024, 14, 512, 1, 1, 0),
    ("3x3/2 512->512 @14", 1, 512, 14, 512, 3, 2, 1),
    ("1x1 512->2048 @7", 3, 512, 7, 2048, 1, 1, 0),
    ("1x1/2 1024->2048 @14", 1, 1024, 14, 2048, 1, 2, 0),
    ("1x1 2048->512 @7", 2, 2048, 7, 512, 1, 1, 0),
    ("3x3 512->512 @7", 2, 512, 7, 512, 3, 1, 1),
]
RESNET18 = [
    ("conv1 7x7/2 3->64 @224", 1, 3, 224, 64, 7, 2, 3),
    ("3x3 64->64 @56", 4, 64, 56, 64, 3, 1, 1),
    ("3x3/2 64->128 @56", 1, 64, 56, 128, 3, 2, 1),
    ("1x1/2 64->128 @56", 1, 64, 56, 128, 1, 2, 0),
    ("3x3 128->128 @28", 3, 128, 28, 128, 3, 1, 1),
    ("3x3/2 128->256 @28", 1, 128, 28, 256, 3, 2, 1),
    ("1x1/2 128->256 @28", 1, 128, 28, 256, 1, 2, 0),
    ("3x3 256->256 @14", 3, 256, 14, 256, 3, 1, 1),
    ("3x3/2 256->512 @14", 1, 256, 14, 512, 3, 2, 1),
    ("1x1/2 256->512 @14", 1, 256, 14, 512, 1, 2, 0),
    ("3x3 512->512 @7", 3, 512, 7, 512, 3, 1, 1),
]
MODELS = {"resnet50": RESNET50, "resnet18": RESNET18}


def _out(h: int, k: int, s: int, p: int) -> int:
    return (h + 2 * p - k) // s + 1


def macs(layer: Tuple) -> int:
    _, _, c, h, o, k, s, p = layer
    oh = _out(h, k, s, p)
    return oh * oh * o * c * k * k


def worker(tree: str, model: str, seconds: float, cpu: bool) -> None:
    """Prepare the layers from `tree`'s qkernels, then answer `index threads` lines with the
    median seconds of one call."""
    sys.path.insert(0, tree)
    sys.path.insert(0, HERE)
    import numpy as np
    import qkernels as qk
    import time
    from benchutil import median_time
    clock = time.process_time if cpu else time.perf_counter
    rng = np.random.default_rng(0)
    runs = []
    for (_, _, c, h, o, k, s, p) in MODELS[model]:
        w = rng.integers(-127, 128, (o, c, k, k)).astype(np.int8)
        ws = (rng.random(o) * 0.01 + 0.001).astype(np.float32)
        conv = qk.prepare_qconv2d(w, rng.standard_normal(o).astype(np.float32), x_dtype=np.uint8,
                                  stride=s, padding=p, x_scale=0.05, x_zero_point=3, w_scale=ws,
                                  out_scale=0.5, out_zero_point=5, preset="fbgemm")
        x = rng.integers(0, 256, (1, c, h, h)).astype(np.uint8)
        runs.append((conv.runner(x.shape), x))
    print("ready", flush=True)
    for line in sys.stdin:
        i, t = (int(v) for v in line.split())
        run, x = runs[i]
        print(median_time(lambda: run(x, t), 5, seconds, clock=clock), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", help="tree A (the reference; omit to time B alone)")
    ap.add_argument("--b", default=".", help="tree B")
    ap.add_argument("--model", choices=sorted(MODELS), default="resnet50")
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=0.1, help="time a sample (default 0.1 s)")
    ap.add_argument("--layers", help="indices to run, comma separated (default all)")
    ap.add_argument("--cpu", action="store_true",
                    help="CPU time of the process (time.process_time; with 2 threads it counts "
                         "both, and the pool's spinning) instead of wall time")
    ap.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], float(args.worker[2]), args.worker[3] == "1")
        return 0
    layers = MODELS[args.model]
    idx = [int(v) for v in args.layers.split(",")] if args.layers else list(range(len(layers)))
    trees = [t for t in (args.a, args.b) if t]
    procs = []
    for t in trees:
        p = subprocess.Popen([sys.executable, __file__, "--worker", os.path.abspath(t), args.model,
                              str(args.seconds), "1" if args.cpu else "0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
        assert p.stdout.readline().strip() == "ready"
        procs.append(p)

    def ask(p: subprocess.Popen, i: int, t: int) -> float:
        p.stdin.write(f"{i} {t}\n")
        p.stdin.flush()
        return float(p.stdout.readline())

    times: Dict[Tuple[int, int], List[List[float]]] = {}
    for r in range(args.rounds):
        for i in idx:
            for t in args.threads:
                order = list(range(len(procs)))
                if r % 2:
                    order.reverse()
                got = [0.0] * len(procs)
                for j in order:
                    got[j] = ask(procs[j], i, t)
                times.setdefault((i, t), []).append(got)
    for p in procs:
        p.stdin.close()
        p.wait()
    print(f"{args.model} batch 1, medians of {args.rounds} interleaved rounds "
          f"({'CPU' if args.cpu else 'wall'} time); load "
          f"{os.getloadavg()[0]:.1f}")
    for t in args.threads:
        tot = [0.0] * len(procs)
        print(f"\nthreads {t}")
        print(f"{'layer':26} {'n':>2} " + " ".join(f"{s + ' ms':>9}" for s in "AB"[-len(procs):])
              + "  GMAC/s" + ("   B/A" if len(procs) == 2 else ""))
        for i in idx:
            med = [statistics.median(v[j] for v in times[(i, t)]) for j in range(len(procs))]
            name, cnt = layers[i][0], layers[i][1]
            for j in range(len(procs)):
                tot[j] += cnt * med[j]
            line = f"{name:26} {cnt:2} " + " ".join(f"{m * 1e3:9.3f}" for m in med)
            line += f"  {macs(layers[i]) / med[-1] / 1e9:6.1f}"
            if len(procs) == 2:
                line += f"  {med[1] / med[0]:5.3f}"
            print(line)
        line = f"{'total (x count)':26}    " + " ".join(f"{m * 1e3:9.3f}" for m in tot)
        if len(procs) == 2:
            line += f"          {tot[1] / tot[0]:5.3f}"
        print(line)
    print(json.dumps({f"{k[0]}/{k[1]}": v for k, v in times.items()}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
