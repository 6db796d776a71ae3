"""The torchvision zoo through quantize_model: integer-vs-float SQNR of qkernels' own PTQ beside
PyTorch FX's quantized model (its default qconfig mapping) on the same inputs (issue 15's table).

Random weights (BatchNorm statistics from one training-mode pass), random normal images: the
figures compare the two quantizers on the same model and data, not accuracy on real images.

    python scripts/zoo_sqnr.py [--size 64] [--engine fbgemm] [--calib 4] [--eval 8]
                               [--observer l2] [model ...]

Besides the table, stderr gets each model's calibration + conversion time, ours and PyTorch's.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests"))
from _torchvision import PLAIN, QUANTIZABLE, zoo_sqnr  # noqa: E402

from qkernels.torch.config import OBSERVERS  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=list(QUANTIZABLE + PLAIN))
    ap.add_argument("--size", type=int, default=64, help="image size (inception_v3: at least 75)")
    ap.add_argument("--engine", default="fbgemm", choices=("fbgemm", "qnnpack"))
    ap.add_argument("--calib", type=int, default=4, help="calibration batches of 4 images")
    ap.add_argument("--eval", type=int, default=8, help="evaluation images")
    ap.add_argument("--observer", default=None, choices=OBSERVERS,
                    help="qkernels' activation observer (default: QuantConfig's)")
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    print(f"engine {a.engine}, {a.size}x{a.size} random images (inception_v3 at "
          f"{max(a.size, 75)}), calibration {a.calib} x 4 images, evaluation {a.eval} images, "
          f"qkernels activation observer {a.observer or 'default'}")
    print()
    print("| model | qkernels quantize_model SQNR (dB) | PyTorch FX SQNR (dB) | difference (dB) |")
    print("|---|---:|---:|---:|")
    for name in a.models:
        size = max(a.size, 75) if name == "inception_v3" else a.size
        t = time.time()
        times: dict = {}
        ours, theirs = zoo_sqnr(name, size, a.engine, a.calib, a.eval, observer=a.observer,
                                times=times)
        print(f"| {name} | {ours:.2f} | {theirs:.2f} | {ours - theirs:+.2f} |", flush=True)
        print(f"  ({time.time() - t:.0f} s; calibration + conversion: qkernels "
              f"{times['ours']:.1f} s, PyTorch {times['pytorch']:.1f} s)", file=sys.stderr,
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
