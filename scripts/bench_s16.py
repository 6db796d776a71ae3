"""Speed of the int16 x int8 kernel (TFLite 16x8, CMSIS-NN s16: one scalar C loop, int64 sums)
beside qkernels' 8-bit path on the same shapes, 1 thread, medians of interleaved rounds
(benchutil.median_times). The int16 path is exact first; this says what that costs.

    .venv/bin/python scripts/bench_s16.py
"""
from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import qkernels as qk  # noqa: E402
from benchutil import median_times  # noqa: E402

SHAPES = [  # name, x shape (NCHW or (M, K)), w shape, groups, padding
    ("conv 3x3 32->32, 28x28", (1, 32, 28, 28), (32, 32, 3, 3), 1, 1),
    ("depthwise 3x3 64, 28x28", (1, 64, 28, 28), (64, 1, 3, 3), 64, 1),
    ("linear 64x512 -> 256", (64, 512), (256, 512), None, None),
]


def main() -> int:
    rng = np.random.default_rng(0)
    print(f"{'shape':28s} {'MMAC':>7s} {'int16 ms':>9s} {'int8 ms':>8s} {'int16 GMAC/s':>13s} "
          f"{'ratio':>6s}")
    for name, xs, ws, groups, pad in SHAPES:
        w = rng.integers(-127, 128, ws).astype(np.int8)
        x16 = rng.integers(-32768, 32768, xs).astype(np.int16)
        x8 = rng.integers(-128, 128, xs).astype(np.int8)
        kw = dict(x_scale=1e-4, w_scale=1e-2, out_scale=1e-3)
        if groups is None:
            b16 = np.zeros(ws[0], np.int64)
            f16 = lambda: qk.qlinear(x16, w, b16, **kw)                    # noqa: E731
            pw = qk.pack_linear(w)
            f8 = lambda: qk.qlinear(x8, pw, None, threads=1, **kw)       # noqa: E731
            macs = xs[0] * ws[0] * ws[1]
        else:
            f16 = lambda: qk.qconv2d(x16, w, None, padding=pad, groups=groups, **kw)  # noqa
            pw = qk.pack_conv2d(w, groups=groups)
            f8 = lambda: qk.qconv2d(x8, pw, None, padding=pad, threads=1, **kw)       # noqa
            macs = xs[2] * xs[3] * ws[0] * ws[1] * ws[2] * ws[3]
        t16, t8 = median_times([f16, f8])
        print(f"{name:28s} {macs / 1e6:7.1f} {t16 * 1e3:9.2f} {t8 * 1e3:8.3f} "
              f"{macs / t16 / 1e9:13.2f} {t16 / t8:6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
