"""The torchvision quantizable model zoo through from_torch_quantized: each model built with
random weights (BatchNorm statistics from a few training-mode passes), quantized by PyTorch (FX,
the engine's default qconfig mapping, calibrated on random images), imported, and compared with
PyTorch's quantized model on every output element (``==``), for engines fbgemm and qnnpack.
Small inputs (64x64; inception_v3 at 75x75, its minimum) keep the run short; resnet18 runs at
224x224.

The plain torchvision models with ops the quantizable ones lack (DenseNet's BatchNorm before its
convolutions, MNASNet's Tensor-method mean, SqueezeNet, RegNet, EfficientNet's quantized Sigmoid,
squeeze-excitation multiply and float SiLU) run exact at 32x32 too.

torchvision is imported as the Makefile installs it (tests/_torchvision.py: the index's 0.28.0
wheel is a CUDA build whose C extension does not load on the CPU torch)."""
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")

from _torchvision import import_torchvision  # noqa: E402

from qkernels.torch import from_torch_quantized  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def _import_torchvision():
    try:
        return import_torchvision()
    except ImportError as exc:
        pytest.fail(str(exc))


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


PLAIN_EXACT = ["densenet121", "mnasnet0_5", "squeezenet1_1", "regnet_x_400mf", "efficientnet_b0"]


def _quantized_plain(name, engine, size):
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    from _torchvision import random_model
    m = random_model(name, size)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, size, size, generator=g)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = prepare_fx(m, get_default_qconfig_mapping(engine), example_inputs=(x,))
        with torch.no_grad():
            p(torch.randn(4, 3, size, size, generator=g))
        return convert_fx(p), x


@pytest.mark.parametrize("engine", ["fbgemm", "qnnpack"], indirect=True)
@pytest.mark.parametrize("name", PLAIN_EXACT)
def test_torchvision_plain_model_equals_pytorch(name, engine):
    # mnasnet0_5 at 64: at 32 its last feature map is 1x1 and PyTorch's own quantized model
    # fails under fbgemm ("required rank 4 tensor to use channels_last format", in its mean)
    q, x = _quantized_plain(name, engine, 64 if name == "mnasnet0_5" else 32)
    im = from_torch_quantized(q, engine=engine)
    with torch.no_grad():
        ref = q(x).numpy()
    got = im(x.numpy())
    assert got.shape == ref.shape == (2, 1000)
    assert int((got != ref).sum()) == 0, f"{name} {engine}: {int((got != ref).sum())} differ"
