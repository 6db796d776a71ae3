"""The torchvision model zoo as the Makefile installs it, for the zoo test
(tests/torch/test_torchvision_zoo_vs_torch.py) and the whole-model benchmark (scripts/bench_zoo.py).

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
