"""The torchvision quantizable model zoo through from_torch_quantized: each model built with
random weights (BatchNorm statistics from a few training-mode passes), quantized by PyTorch (FX,
the engine's default qconfig mapping, calibrated on random images), imported, and compared with
PyTorch's quantized model on every output element (``==``), for engines fbgemm and qnnpack.
Small inputs (64x64; inception_v3 at 75x75, its minimum) keep the run short; resnet18 runs at
224x224.

torchvision 0.28.0 (requirements-zoo.txt) is the index's CUDA build: its C extension does not load
on the CPU torch, and torchvision's import then stops at registering fake kernels for its detection
ops. The Makefile installs it outside site-packages (.venv/torchvision-zoo, so that nothing else,
e.g. transformers, imports it); ``scripts/vit_accuracy.import_torchvision`` puts that folder on
sys.path and defines
the two schemas the import needs (``torchvision::nms``, ``torchvision::qnms``; no detection op
runs here) when, and only when, the extension does not load, so the pure-Python model
definitions import."""
import os
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")

from qkernels.torch import from_torch_quantized  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
import vit_accuracy  # noqa: E402  (import_torchvision: the one place that imports it)


def _import_torchvision():
    try:
        vit_accuracy.import_torchvision()
    except ImportError as exc:
        pytest.fail(f"torchvision is a test requirement: `make venv` installs requirements-zoo.txt "
                    f"({exc})")
    import torchvision.models.quantization as tvq
    return tvq


def _quantized(name, engine, size):
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    tvq = _import_torchvision()
    torch.manual_seed(0)
    kw = dict(weights=None, quantize=False)
    if name in ("inception_v3", "googlenet"):
        kw.update(aux_logits=False, init_weights=False)
    m = getattr(tvq, name)(**kw)
    m.train()
    with torch.no_grad():
        m(torch.randn(4, 3, size, size))        # BatchNorm statistics that are not the identity
    m.eval()
    x = torch.randn(2, 3, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = prepare_fx(m, get_default_qconfig_mapping(engine), example_inputs=(x,))
        with torch.no_grad():
            p(torch.randn(4, 3, size, size))
        return convert_fx(p), x


MODELS = [("resnet18", 224), ("resnet50", 64), ("mobilenet_v2", 64),
          ("mobilenet_v3_large", 64), ("shufflenet_v2_x1_0", 64), ("googlenet", 64),
          ("inception_v3", 75)]


@pytest.mark.parametrize("engine", ["fbgemm", "qnnpack"])
@pytest.mark.parametrize("name,size", MODELS, ids=[f"{n}-{s}" for n, s in MODELS])
def test_torchvision_quantizable_model_equals_pytorch(name, size, engine):
    old = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        q, x = _quantized(name, engine, size)
        im = from_torch_quantized(q, engine=engine)
        with torch.no_grad():
            ref = q(x).numpy()
        got = im(x.numpy())
    finally:
        torch.backends.quantized.engine = old
    assert got.shape == ref.shape == (2, 1000)
    assert int((got != ref).sum()) == 0, f"{name} {engine}: {int((got != ref).sum())} of {ref.size} differ"
