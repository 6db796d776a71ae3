"""bench.py section: whole models, images per second: qkernels IntegerModel (quantize_model, and
from_torch_quantized of PyTorch's own quantized model) vs PyTorch quantized (fbgemm) vs float."""
from __future__ import annotations

import os
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchutil import median_times  # noqa: E402


def run(quick: bool = False) -> str:
    import torch
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    from qkernels.torch import from_torch_quantized
    from qkernels.torch import quantize_model
    from qkernels.torch.reference_models import MODELS, digits, load

    warnings.filterwarnings("ignore")
    torch.backends.quantized.engine = "fbgemm"
    (xtr, _), (xte, _) = digits()
    calib = [xtr[i:i + 64] for i in range(0, 512, 64)]
    rows = ["## Whole models (reference models, 1x8x8 digits), images per second", "",
            "qkernels `quantize_model` (W8A8 per-channel, fbgemm preset) and `from_torch_quantized` "
            "(PyTorch's own FX-quantized model run on qkernels) against the same model quantized by "
            "PyTorch (fbgemm engine) and the float model; threads = `torch.set_num_threads` for "
            "PyTorch and the `threads=` cap of the IntegerModel call; medians of calls sampled "
            "round-robin in short blocks, each after untimed warm-up calls (PyTorch's OpenMP threads "
            "spin ~200 ms after a call and would steal the next contender's second core). These networks are tiny (about 1 MMAC "
            "per image or less): at batch 1 the per-layer dispatch dominates (the IntegerModel runs "
            "a graph compiled once, one C call per layer), at batch 32 the conv kernels.", "",
            "| model | batch | threads | qkernels quantize_model | qkernels from_torch | torch quantized | torch float | vs torch quantized |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in (["resnet"] if quick else list(MODELS)):
        im = quantize_model(load(name), calib)
        prepared = prepare_fx(load(name), get_default_qconfig_mapping("fbgemm"), example_inputs=(xtr[:2],))
        with torch.no_grad():
            for b in calib:
                prepared(b)
        tq = convert_fx(prepared)
        ft = from_torch_quantized(tq)
        fm = load(name)
        for batch in (1, 32):
            xb = xte[:batch]
            xn = xb.numpy()
            for threads in (1, 2):
                torch.set_num_threads(threads)
                with torch.no_grad():
                    t_im, t_ft, t_tq, t_fm = median_times(
                        [lambda: im(xn, threads=threads), lambda: ft(xn, threads=threads),
                         lambda: tq(xb), lambda: fm(xb)],
                        min_time=0.25, warm_s=0.25 if threads > 1 else 0.02)
                ips = [batch / t for t in (t_im, t_ft, t_tq, t_fm)]
                rows.append(f"| {name} | {batch} | {threads} | {ips[0]:,.0f} | {ips[1]:,.0f} | "
                            f"{ips[2]:,.0f} | {ips[3]:,.0f} | {t_tq / t_im:.2f}x |")
    torch.set_num_threads(1)
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
