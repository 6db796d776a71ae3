#!/usr/bin/env python
"""The pictures of the README (docs/images/): the per-layer error of the ResNet-style reference
model quantized W8A8 (fbgemm), and the PTF channels of the real DeiT-small LayerNorm input when
shared/data is beside the repository. Deterministic; run it after a change that moves them.

    python scripts/make_figures.py
"""
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main() -> int:
    import torch

    import qkernels as qk
    from qkernels.plots import plot_layer_errors, plot_ptf
    from qkernels.torch import quantize_model
    from qkernels.torch.reference_models import digits, load

    torch.set_num_threads(1)
    out = os.path.join(ROOT, "docs", "images")
    os.makedirs(out, exist_ok=True)
    (xtr, _), (xte, _) = digits()
    im = quantize_model(load("resnet"), [xtr[i:i + 64] for i in range(0, 512, 64)])
    print(plot_layer_errors(im.compare(xte[:64]), os.path.join(out, "layer_errors_resnet.png"),
                            title="resnet (digits) W8A8, fbgemm: per-layer error against float"))
    deit = os.path.join(ROOT, "..", "shared", "data", "deit-small-ln0", "ln_input.npy")
    if os.path.exists(deit):
        x = np.load(deit)
        p = qk.ptf_calibrate(x, method="seed")
        print(plot_ptf(x, p, os.path.join(out, "ptf_channels_deit.png"),
                       title="DeiT-small block-0 LayerNorm input: ranges and PTF steps (seed)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
