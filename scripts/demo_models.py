#!/usr/bin/env python
"""The model part of `make demo`: quantize the reference models (trained on scikit-learn's digits)
three ways, run them integer-exact on qkernels, and compare with float and fake quant; then show
that a model PyTorch quantized itself runs on qkernels with PyTorch's exact output."""
from __future__ import annotations

import importlib.util
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
        print("(model demo skipped: PyTorch is not installed)")
        return 0
    from qkernels.torch.quantize_cli import print_report
    from qkernels.torch import from_torch_quantized
    from qkernels.torch import QuantConfig, quantize_model
    from qkernels.torch.reference_models import MODELS, digits, load

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    torch.backends.quantized.engine = "fbgemm"
    (xtr, _), (xte, yte) = digits()
    calib = [xtr[i:i + 64] for i in range(0, 512, 64)]
    y = yte.numpy()

    def acc(out: np.ndarray) -> float:
        return float(np.mean(np.asarray(out).argmax(1) == y)) * 100

    print("\n== Reference models on the held-out digits (355 images): accuracy %")
    configs = [("W8A8 per-channel", QuantConfig()), ("W8A8 power-of-two", QuantConfig.w8a8_pow2()),
               ("W4A8 per-channel", QuantConfig.w4a8())]
    print(f"   {'model':<12} {'config':<18} {'float':>7} {'fake-q':>7} {'integer':>7}  time")
    keep = None
    for name in MODELS:
        for cname, cfg in configs:
            t0 = time.time()
            im = quantize_model(load(name), calib, config=cfg)
            a = (acc(im.float_reference(xte)), acc(im.fake_quant(xte)), acc(im(xte)))
            print(f"   {name:<12} {cname:<18} {a[0]:7.2f} {a[1]:7.2f} {a[2]:7.2f}  {time.time() - t0:.1f}s")
            if name == "resnet" and cname.startswith("W8A8 per"):
                keep = im
    print("\n== Per-layer report, resnet W8A8 per-channel (integer-exact vs float, and vs fake quant "
          "fed the same inputs)")
    print_report(keep, xte[:64].numpy(), None)

    print("\n== Models quantized by PyTorch itself (FX, fbgemm), run on qkernels")
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    for name in MODELS:
        prepared = prepare_fx(load(name), get_default_qconfig_mapping("fbgemm"), example_inputs=(xtr[:2],))
        with torch.no_grad():
            for b in calib:
                prepared(b)
        q = convert_fx(prepared)
        with torch.no_grad():
            ref = q(xte).numpy()
        got = from_torch_quantized(q)(xte)
        same = int(np.count_nonzero(got.view(np.int32) == ref.view(np.int32)))
        print(f"   {name:<12} qkernels == PyTorch on {same} of {ref.size} output values; accuracy {acc(got):.2f}%")
    print("\n== Dynamic mode (quantize_model(mode=\"dynamic\")) vs torch's quantize_dynamic (fbgemm)")
    from torch.ao.quantization import quantize_dynamic

    from qkernels.torch import TensorConfig
    dyn = QuantConfig(weight=TensorConfig(bits=8, symmetric=True, signed=True), mode="dynamic")
    imd = quantize_model(load("mlp"), None, config=dyn)
    qd = quantize_dynamic(load("mlp"), {torch.nn.Linear}, dtype=torch.qint8)
    with torch.no_grad():
        ref = qd(xte).numpy()
    got = imd(xte)
    same = int(np.count_nonzero(got.view(np.int32) == ref.view(np.int32)))
    print(f"   mlp          qkernels == PyTorch on {same} of {ref.size} output values; accuracy {acc(got):.2f}%")
    if hasattr(keep, "export"):
        out = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "out", "resnet_w8a8")
        plots = importlib.util.find_spec("matplotlib") is not None
        paths = keep.export(out, xte[:1].numpy(), plots=plots)
        print(f"\n== Exported resnet W8A8: {len(paths)} files in {out} (report.json, model.h, "
              "model.c, model.npz, one-number-a-line and $readmemh layer files, golden vectors)")
        for p in paths:
            if p.endswith(".png"):
                print(f"   picture: {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
