#!/usr/bin/env python
"""The data-generation part of `make demo`: calibrate a reference model with images generated from
its own BatchNorm statistics only (no real data), run it integer-exact, and compare with real-data
and random-noise calibration."""
from __future__ import annotations

import os
import sys
import time
import warnings
from typing import List, Optional

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv: Optional[List[str]] = None) -> int:
    try:
        import torch
    except ImportError:
        print("(data-generation demo skipped: PyTorch is not installed)")
        return 0
    from qkernels.torch.datagen import DataGenConfig, generate
    from qkernels.torch.quantize import QuantConfig, TensorConfig, quantize_model
    from qkernels.torch.reference_models import digits, load

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    (xtr, _), (xte, yte) = digits()
    y = yte.numpy()
    n = 128
    cfg = DataGenConfig(n_iter=60, image_normalization="custom", normalization_mean=(0.0,),
                        normalization_std=(255.0,), extra_pixels=2)
    print(f"\n== Data-free calibration: {n} images generated from the BatchNorm statistics of the resnet "
          "reference model (MCT's data generation; 60 iterations, inputs in [0, 1])")
    t0 = time.time()
    res = generate(load("resnet"), n, 8, cfg, seed=0)
    first = {k: v[0] for k, v in res.history.items()}
    print(f"   generated in {time.time() - t0:.1f}s; BatchNorm alignment loss, first -> last iteration: "
          + ", ".join(f"{k} {first[k]:.3f}->{res.history[k][-1]:.3f}" for k in res.layers[1:4]) + ", ...")
    real = xtr[torch.from_numpy(np.random.default_rng(0).choice(len(xtr), n, replace=False))]
    noise = torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    sets = {"real digits": real, "N(0,1) noise": noise, "generated": res.images}
    for name, data in sets.items():
        a = np.asarray(data)
        print(f"   {name:<13} pixels: mean {a.mean():.3f} std {a.std():.3f} range [{a.min():.2f}, {a.max():.2f}]")
    configs = [("W8A8", QuantConfig()), ("W8A5", QuantConfig(activation=TensorConfig(bits=5))),
               ("W8A4", QuantConfig(activation=TensorConfig(bits=4)))]
    print(f"\n   integer-exact accuracy % on the {len(y)} held-out digits, by calibration data:")
    print(f"   {'config':<6} " + " ".join(f"{k:>13}" for k in sets))
    for cname, qc in configs:
        accs = [float(np.mean(np.asarray(quantize_model(load("resnet"), [d[i:i + 64] for i in range(0, n, 64)],
                                                        config=qc)(xte)).argmax(1) == y)) * 100
                for d in sets.values()]
        print(f"   {cname:<6} " + " ".join(f"{a:13.2f}" for a in accs))
    print("   (4- and 5-bit activations need the right ranges: noise ruins them, generated images do not;"
          " docs/datagen_results.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
