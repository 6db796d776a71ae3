"""The torchvision model zoo as the Makefile installs it, for the zoo tests
(tests/torch/test_torchvision_zoo_*.py), the whole-model benchmark (scripts/bench_zoo.py) and
scripts/zoo_sqnr.py: the import, random models and the SQNR comparison with PyTorch FX.

torchvision 0.28.0 (requirements-zoo.txt) is the index's CUDA build: its C extension does not load
on the CPU torch, and torchvision's import then stops at registering fake kernels for its detection
ops. The Makefile installs it outside site-packages (<venv>/torchvision-zoo, so that nothing else,
e.g. transformers, imports it); :func:`import_torchvision` puts that folder on sys.path and defines
the two schemas the import needs (``torchvision::nms``, ``torchvision::qnms``; no detection op
runs) when, and only when, the extension does not load, so the pure-Python model definitions
import."""
import glob
import importlib.util
import os
import sys
from typing import Any, List

_LIBS: List[Any] = []

#: torchvision's quantizable architectures (torchvision.models.quantization)
QUANTIZABLE = ("resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_large", "shufflenet_v2_x1_0",
               "googlenet", "inception_v3")
#: plain torchvision models (torchvision.models) with ops the quantizable ones do not have
PLAIN = ("efficientnet_b0", "regnet_x_400mf", "squeezenet1_1", "densenet121", "mnasnet0_5")


def import_torchvision() -> Any:
    """``torchvision.models.quantization``; ImportError (saying where make venv puts it) when
    torchvision is not installed.

    Example:
        >>> tvq = import_torchvision()
        >>> m = tvq.resnet18(weights=None, quantize=False)
    """
    import torch

    zoo = os.path.join(sys.prefix, "torchvision-zoo")
    if os.path.isdir(zoo) and zoo not in sys.path:
        sys.path.append(zoo)
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        raise ImportError("torchvision is a test requirement: `make venv` installs "
                          f"requirements-zoo.txt into {zoo}")
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


def random_model(name: str, size: int, seed: int = 0) -> Any:
    """torchvision model ``name`` (the quantizable version for the names of QUANTIZABLE) with
    random weights and BatchNorm statistics from one training-mode pass on random images of
    ``size`` x ``size``, in eval mode."""
    import torch

    tvq = import_torchvision()
    import torchvision
    torch.manual_seed(seed)
    kw = dict(weights=None)
    if name in ("inception_v3", "googlenet"):
        kw.update(aux_logits=False, init_weights=False)
    if name in QUANTIZABLE:
        m = getattr(tvq, name)(quantize=False, **kw)
    else:
        m = getattr(torchvision.models, name)(**kw)
    m.train()
    with torch.no_grad():
        m(torch.randn(4, 3, size, size))        # BatchNorm statistics that are not the identity
    return m.eval()


def sqnr_db(y, ref) -> float:
    """10 log10(sum ref^2 / sum (y - ref)^2) in dB (inf when equal)."""
    import numpy as np

    y = np.asarray(y, np.float64)
    ref = np.asarray(ref, np.float64)
    err = float(np.sum((y - ref) ** 2))
    return float("inf") if err == 0 else 10 * float(np.log10(np.sum(ref ** 2) / err))


def zoo_sqnr(name: str, size: int, engine: str = "fbgemm", n_calib: int = 4, n_eval: int = 8,
             batch: int = 4, seed: int = 0, observer: Any = None, times: Any = None):
    """(qkernels quantize_model SQNR, PyTorch FX SQNR) against the float model, in dB, on the same
    ``n_eval`` random images of ``size`` x ``size``: qkernels with the engine's preset and its
    default QuantConfig (W8A8, per-channel weights, min/max calibration), PyTorch with
    ``prepare_fx`` / ``convert_fx`` and the engine's default qconfig mapping; both calibrated on
    the same ``n_calib`` batches of ``batch`` random images. ``observer``: the activation
    observer of ours (None: QuantConfig's default); ``times``: a dict that receives the seconds
    each quantizer took to calibrate and convert (``"ours"``, ``"pytorch"``)."""
    import warnings

    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    import torch
    import time

    from qkernels.torch import QuantConfig, TensorConfig, quantize_model

    m = random_model(name, size, seed)
    g = torch.Generator().manual_seed(seed + 1)
    calib = [torch.randn(batch, 3, size, size, generator=g) for _ in range(n_calib)]
    x = torch.randn(n_eval, 3, size, size, generator=g)
    with torch.no_grad():
        ref = m(x).numpy()
    cfg = QuantConfig(preset=engine) if observer is None else QuantConfig(
        preset=engine, activation=TensorConfig(observer=observer))
    t0 = time.perf_counter()
    im = quantize_model(m, calib, config=cfg)
    t1 = time.perf_counter()
    ours = sqnr_db(im(x.numpy()), ref)
    old = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t2 = time.perf_counter()
            p = prepare_fx(m, get_default_qconfig_mapping(engine), example_inputs=(x[:1],))
            with torch.no_grad():
                for b in calib:
                    p(b)
                q = convert_fx(p)
            t3 = time.perf_counter()
            with torch.no_grad():
                theirs = sqnr_db(q(x).numpy(), ref)
    finally:
        torch.backends.quantized.engine = old
    if times is not None:
        times.update(ours=t1 - t0, pytorch=t3 - t2)
    return ours, theirs
