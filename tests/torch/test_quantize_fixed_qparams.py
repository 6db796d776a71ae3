"""quantize_model(..., fixed_qparams=...): given scales (e.g. learned by QAT) instead of observed ones."""
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")
pytest.importorskip("sklearn", reason="scikit-learn (the digits data) is a test requirement")

from qkernels.torch import QuantConfig, quantize_model  # noqa: E402
from qkernels.torch.reference_models import digits, load  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def data():
    (xtr, _), (xte, yte) = digits()
    return [xtr[i:i + 64] for i in range(0, 256, 64)], xte[:64]


def test_given_scales_replace_observed_ones(data):
    calib, x = data
    cfg = QuantConfig.w8a8_pow2()
    base = quantize_model(load("resnet"), calib, config=cfg)
    w = np.asarray(base.layers["layer1_conv1"].w_scale)
    fixed = {"stem_0": (base.qparams["stem_0"][0] * 2, 0), "add": (0.5, 0),
             "layer1_conv1.weight": w * 2, "fc.weight": 2.0 ** -9}
    im = quantize_model(load("resnet"), calib, config=cfg, fixed_qparams=fixed)
    assert im.qparams["stem_0"] == (base.qparams["stem_0"][0] * 2, 0)
    assert im.qparams["layer1_down"] == im.qparams["stem_0"]    # an Identity inherits its input's
    assert im.qparams["add"] == (0.5, 0) and im.qparams["layer1_relu2"] == (0.5, 0)  # inherited
    np.testing.assert_array_equal(im.layers["layer1_conv1"].w_scale, w * 2)
    np.testing.assert_array_equal(im.layers["fc"].w_scale, np.full(10, 2.0 ** -9, np.float32))
    np.testing.assert_array_equal(im.layers["fc"].w_int, np.clip(np.rint(
        im.graph_module.get_submodule("fc").weight.detach().numpy() * 2 ** 9), -128, 127))
    for n in set(base.qparams) - {"stem_0", "layer1_down", "add", "layer1_relu2"}:
        assert im.qparams[n] == base.qparams[n], n
    y = im(x)  # runs integer-exact with the given parameters
    assert y.shape == (64, 10) and np.isfinite(y).all()


def test_per_tensor_weight_scale(data):
    calib, _ = data
    cfg = QuantConfig.w8a8_pow2()
    cfg = QuantConfig(weight=replace(cfg.weight, per_channel=False), activation=cfg.activation,
                      preset="pow2")
    for given in (2.0 ** -8, np.float32([2.0 ** -8])):   # a scalar or a one-element array
        im = quantize_model(load("mlp"), calib, config=cfg, fixed_qparams={"fc2.weight": given})
        assert np.shape(im.layers["fc2"].w_scale) == () and im.layers["fc2"].w_scale == 2.0 ** -8


def test_unknown_or_bad_fixed_qparams(data):
    calib, _ = data
    cfg = QuantConfig.w8a8_pow2()
    with pytest.raises(ValueError, match="layer1_relu2.*not calibrated nodes"):
        quantize_model(load("resnet"), calib, config=cfg, fixed_qparams={"layer1_relu2": (1.0, 0)})
    with pytest.raises(ValueError, match="nosuch.weight"):
        quantize_model(load("resnet"), calib, config=cfg, fixed_qparams={"nosuch.weight": 1.0})
    with pytest.raises(ValueError, match=r"fixed_qparams\['fc.weight'\].*finite positive"):
        quantize_model(load("resnet"), calib, config=cfg, fixed_qparams={"fc.weight": [1.0, 2.0]})
    with pytest.raises(ValueError, match=r"fixed_qparams\['add'\]: scale"):
        quantize_model(load("resnet"), calib, config=cfg, fixed_qparams={"add": (0.0, 0)})
    with pytest.raises(ValueError, match="dynamic mode quantizes activations per call"):
        quantize_model(load("mlp"), None, config=QuantConfig(mode="dynamic"),
                       fixed_qparams={"fc1": (1.0, 0)})
