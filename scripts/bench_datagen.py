#!/usr/bin/env python
"""bench.py section: seconds per iteration of the data generation (one batch of 32 images),
qkernels.torch.datagen against MCT's own (model-compression-toolkit 2.6.1), same config, 1 thread.

    python scripts/bench_datagen.py [--quick]          # or: python scripts/bench.py --only datagen

MCT runs in its own venv (default /work/venvs/mct, or $QKERNELS_MCT_PYTHON: a Python with
torch 2.13.0, model-compression-toolkit and torchvision; see scripts/mct_datagen_bench.py), as a
subprocess, in rounds interleaved with ours; each run times its iterations (all but the first,
wall clock and process CPU time) and the table gives medians over all rounds. Without that venv, only our rows are printed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

MCT_PYTHON = os.environ.get("QKERNELS_MCT_PYTHON", "/work/venvs/mct/bin/python")

# (label, model, size, pixel-space normalization or None for torchvision's)
CASES = [("ResNet-style reference model, 1x8x8", "resnet", 8, (0.0, 255.0)),
         ("torchvision resnet18 architecture, 3x224x224", "resnet18", 224, None)]


def _ours(model: str, size: int, norm: Optional[Tuple[float, float]], n_iter: int) -> Tuple[List[float], List[float]]:
    import torch

    from qkernels.torch.datagen import DataGenConfig, generate

    if model == "resnet18":
        from resnet18_arch import resnet18

        net = resnet18()
    else:
        from qkernels.torch.reference_models import load

        net = load(model)
    kw = {} if norm is None else dict(image_normalization="custom", normalization_mean=(norm[0],),
                                      normalization_std=(norm[1],))
    cfg = DataGenConfig(n_iter=n_iter, batch_size=32, bn_layer_types=(torch.nn.BatchNorm2d,), **kw)
    res = generate(net, 32, size, cfg, seed=0, threads=1)
    return res.iter_seconds[1:], res.iter_cpu_seconds[1:]


def _mct(model: str, size: int, norm: Optional[Tuple[float, float]], n_iter: int,
         no_margin: bool) -> Tuple[List[float], List[float]]:
    cmd = [MCT_PYTHON, os.path.join(HERE, "mct_datagen_bench.py"), "--model", model, "--size", str(size),
           "--n-iter", str(n_iter), "--n-images", "32", "--threads", "1"]
    if norm is not None:
        cmd += ["--norm-mean", str(norm[0]), "--norm-std", str(norm[1])]
    if no_margin:
        cmd.append("--no-crop-margin")
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    if r.returncode != 0:
        raise RuntimeError(f"MCT run failed: {r.stderr[-1500:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    return out["per_iter"][1:], out["per_iter_cpu"][1:]


def mct_version() -> Optional[str]:
    if not os.path.exists(MCT_PYTHON):
        return None
    r = subprocess.run([MCT_PYTHON, "-c", "import importlib.metadata as m; print(m.version('model-compression-toolkit'), "
                        "m.version('torch'), m.version('torchvision'))"], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def accuracy_summary() -> List[str]:
    """The accuracy table of docs/datagen_results.md (scripts/datagen_results.py), when present."""
    path = os.path.join(ROOT, "docs", "datagen_results.md")
    if not os.path.exists(path):
        return []
    md = open(path).read()
    if "| calibration data |" not in md or "The last row is" not in md:
        return []
    table = md[md.index("| calibration data |"):md.index("The last row is")].rstrip("\n")
    return ["", "What the generated images are worth (`python scripts/datagen_results.py`, full results "
            "and figures in docs/datagen_results.md): integer-exact accuracy % of the reference "
            "models calibrated on 128 real digits, on N(0, 1) noise, or on 128 images generated from "
            "the models' BatchNorm statistics (150 iterations), mean ± std over seeds 0-4:", "", table]


def run(quick: bool = False, with_accuracy: bool = True) -> str:
    import torch

    torch.set_num_threads(1)
    ver = mct_version()
    rounds = 1 if quick else 3
    rows = ["## Data generation from BatchNorm statistics: seconds per iteration (1 thread)", "",
            "One iteration = one optimizer step on a batch of 32 images (forward, backward, RAdam): "
            "`qkernels.torch.datagen.generate` against MCT's `pytorch_data_generation_experimental`, "
            "the same config (MCT's defaults: smoothing and augmentation pipeline with a 32-pixel "
            "margin, all-images granularity, negative min-max output loss, reduce-on-plateau), "
            "BatchNorm2d layers, torch 2.13.0 CPU, 1 thread. "
            f"{rounds} round(s), ours and MCT's interleaved, each run timing its iterations after "
            "the first (wall clock, and the CPU time of the process: the machine is shared, and the "
            "CPU time is the less disturbed figure); medians over all rounds. MCT optimizes images "
            "with its hard-coded 32-pixel crop margin on top of `extra_pixels` (72x72 for an 8x8 "
            "output, 288x288 for 224x224); the row 'MCT, margin patched to 0' optimizes the same "
            "image size as ours (40x40, 256x256), the like-for-like comparison. MCT also computes "
            "the gradients of the model's weights (it leaves requires_grad on; ours turns it off) "
            "and smooths with a depthwise conv2d (ours: one shifted sum per axis, same filter). "
            "The 1-channel digits model needs MCT patched in 4 places (it hard-codes 3 channels): "
            "see scripts/mct_datagen_bench.py.", "",
            f"MCT: {'model-compression-toolkit / torch / torchvision ' + ver if ver else 'not installed (' + MCT_PYTHON + ' missing): only our rows'}", "",
            "| model | implementation | iterations timed | median wall s / it | median CPU s / it | "
            "MCT margin 0 / this (CPU) | MCT as-is / this (CPU) |",
            "|---|---|---:|---:|---:|---:|---:|"]
    for label, model, size, norm in CASES:
        n_iter = 4 if size > 100 else 30
        if quick:
            n_iter = 3 if size > 100 else 10
        wall: Dict[str, List[float]] = {"ours": [], "mct": [], "mct0": []}
        cpu: Dict[str, List[float]] = {"ours": [], "mct": [], "mct0": []}
        for _ in range(rounds):
            runs = [("ours", lambda: _ours(model, size, norm, n_iter))]
            if ver:
                runs += [("mct", lambda: _mct(model, size, norm, n_iter, False)),
                         ("mct0", lambda: _mct(model, size, norm, n_iter, True))]
            for k, f in runs:
                w, c = f()
                wall[k] += w
                cpu[k] += c
        mw = {k: float(np.median(v)) for k, v in wall.items() if v}
        mc = {k: float(np.median(v)) for k, v in cpu.items() if v}
        for k, name in (("ours", "**qkernels.torch.datagen**"), ("mct0", "MCT 2.6.1, margin patched to 0"),
                        ("mct", "MCT 2.6.1 as-is")):
            if k in mw:
                r0 = f"{mc['mct0'] / mc[k]:.2f}x" if "mct0" in mc else ""
                r1 = f"{mc['mct'] / mc[k]:.2f}x" if "mct" in mc else ""
                rows.append(f"| {label} | {name} | {len(wall[k])} | {mw[k]:.4f} | {mc[k]:.4f} | {r0} | {r1} |")
        print(f"  {label}: median CPU s/it " + ", ".join(f"{k} {v:.4f}" for k, v in mc.items())
              + "; wall " + ", ".join(f"{k} {v:.4f}" for k, v in mw.items()), file=sys.stderr, flush=True)
    rows.append("")
    rows.append(f"Load average at the end: {os.getloadavg()[0]:.2f} (shared machine; a ratio > 1: ours is faster). "
                f"Taken {time.strftime('%Y-%m-%d')}.")
    if with_accuracy:
        rows += accuracy_summary()
    return "\n".join(rows) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    print(run(args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
