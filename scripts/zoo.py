"""torchvision architectures quantized by PyTorch (FX, fbgemm, random weights) and imported with
``from_torch_quantized``: the whole-model workloads of the speed scripts (bench_ab.py's "zoo"
rows, and a loop to run under ``perf record``).

torchvision comes from ``.venv/torchvision-zoo`` (``make venv``), imported the way
tests/torch/test_torchvision_zoo_vs_torch.py does (its C extension does not load on the CPU
torch: the two schemas its import registers are defined here instead).

    python scripts/zoo.py --model resnet50 --batch 1 --threads 1 --seconds 20   # a loop for perf
"""
from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import sys
import time
import warnings
from typing import Any, Tuple

_LIBS: list = []


def import_torchvision_models() -> Any:
    """torchvision.models.quantization, from the venv's torchvision-zoo folder."""
    import torch
    zoo = os.path.join(sys.prefix, "torchvision-zoo")
    if os.path.isdir(zoo) and zoo not in sys.path:
        sys.path.append(zoo)
    spec = importlib.util.find_spec("torchvision")
    if spec is None:
        raise SystemExit(f"torchvision not found: `make venv` installs it into {zoo}")
    ext = glob.glob(os.path.join(os.path.dirname(spec.origin), "_C*.so"))
    try:
        if ext:
            torch.ops.load_library(ext[0])
    except OSError:
        if not _LIBS:
            lib = torch.library.Library("torchvision", "FRAGMENT")
            for op in ("nms", "qnms"):
                lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            _LIBS.append(lib)
    import torchvision.models.quantization as tvq
    return tvq


def quantized(name: str, size: int = 224, engine: str = "fbgemm") -> Tuple[Any, Any]:
    """(PyTorch's FX-quantized model, the qkernels IntegerModel of it), random weights (seed 0),
    BatchNorm statistics from one training-mode pass, calibrated on 4 random images."""
    import torch
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    from qkernels.torch import from_torch_quantized
    tvq = import_torchvision_models()
    torch.backends.quantized.engine = engine
    torch.manual_seed(0)
    kw: dict = dict(weights=None, quantize=False)
    if name in ("inception_v3", "googlenet"):
        kw.update(aux_logits=False, init_weights=False)
    m = getattr(tvq, name)(**kw)
    m.train()
    with torch.no_grad():
        m(torch.randn(4, 3, size, size))
    m.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = prepare_fx(m, get_default_qconfig_mapping(engine),
                       example_inputs=(torch.randn(1, 3, size, size),))
        with torch.no_grad():
            p(torch.randn(4, 3, size, size))
        q = convert_fx(p)
    return q, from_torch_quantized(q, engine=engine)


def main() -> int:
    ap = argparse.ArgumentParser(description="run one zoo model in a loop (for perf record)")
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=10.0)
    a = ap.parse_args()
    import numpy as np
    import torch
    torch.set_num_threads(1)   # no OpenMP threads of PyTorch's left spinning beside ours
    _, im = quantized(a.model, a.size)
    x = np.random.default_rng(0).standard_normal((a.batch, 3, a.size, a.size)).astype(np.float32)
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
