"""from_torch_quantized: a model quantized by PyTorch (fbgemm), run on qkernels, gives PyTorch's
quantized output element for element, and the integers between layers match too."""
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")
pytest.importorskip("sklearn", reason="scikit-learn (the digits data) is a test requirement")

from qkernels.torch.convert import from_torch_quantized  # noqa: E402
from qkernels.torch.reference_models import MODELS, digits, load  # noqa: E402

pytestmark = pytest.mark.torch


def _quantize_fx(net, calib, engine="fbgemm"):
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_fx(net, get_default_qconfig_mapping(engine), example_inputs=(calib[:2],))
        with torch.no_grad():
            for i in range(0, len(calib), 64):
                prepared(calib[i:i + 64])
        return convert_fx(prepared)


@pytest.fixture(scope="module")
def data():
    return digits()


@pytest.mark.parametrize("name", list(MODELS))
def test_reference_model_equals_pytorch_fbgemm(data, name):
    torch.backends.quantized.engine = "fbgemm"
    torch.set_num_threads(1)
    (xtr, _), (xte, yte) = data
    qmodel = _quantize_fx(load(name), xtr[:512])
    im = from_torch_quantized(qmodel)
    with torch.no_grad():
        ref = qmodel(xte).numpy()
    got = im(xte.numpy())
    assert got.dtype == np.float32 and got.shape == ref.shape
    np.testing.assert_array_equal(got.view(np.int32), ref.view(np.int32))
    acc = float(np.mean(got.argmax(1) == yte.numpy()))
    assert acc > 0.9


def test_unsupported_module_is_named():
    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3)
            self.act = torch.nn.GELU()

        def forward(self, x):
            return self.act(self.conv(x))

    x = torch.rand(8, 1, 8, 8)
    q = _quantize_fx(Odd().eval(), x)
    with pytest.raises(NotImplementedError, match="act.*GELU|GELU"):
        from_torch_quantized(q)


class _EagerNet(torch.nn.Module):
    """The eager-mode recipe: QuantStub, fused conv-bn-relu, FloatFunctional add, DeQuantStub."""

    def __init__(self):
        super().__init__()
        from torch.ao.quantization import DeQuantStub, QuantStub

        self.quant = QuantStub()
        self.conv1 = torch.nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.relu1 = torch.nn.ReLU()
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.skip = torch.nn.quantized.FloatFunctional()
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.flat = torch.nn.Flatten()
        self.fc = torch.nn.Linear(8, 10)
        self.relu2 = torch.nn.ReLU()
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        y = self.relu1(self.bn1(self.conv1(x)))
        y = self.skip.add_relu(y, self.conv2(y))
        return self.dequant(self.relu2(self.fc(self.flat(self.pool(y)))))


def test_eager_converted_model_equals_pytorch(data):
    from torch.ao.quantization import convert, fuse_modules, get_default_qconfig, prepare

    torch.backends.quantized.engine = "fbgemm"
    torch.set_num_threads(1)
    (xtr, _), (xte, _) = data
    torch.manual_seed(0)
    net = _EagerNet().eval()
    with torch.no_grad():
        net.bn1.running_mean.uniform_(-0.2, 0.2)
        net.bn1.running_var.uniform_(0.5, 2.0)
    net = fuse_modules(net, [["conv1", "bn1", "relu1"], ["fc", "relu2"]])
    net.qconfig = get_default_qconfig("fbgemm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare(net)
        with torch.no_grad():
            prepared(xtr[:512])
        q = convert(prepared)
    with torch.no_grad():
        ref = q(xte).numpy()
    got = from_torch_quantized(q)(xte)
    np.testing.assert_array_equal(got.view(np.int32), ref.view(np.int32))


@pytest.mark.parametrize("per_channel", [False, True])
def test_dynamic_linear_equals_quantize_dynamic(data, per_channel):
    """quantize_dynamic (fbgemm): activations quantized per call, float output, bit for bit."""
    from torch.ao.quantization import (default_dynamic_qconfig, per_channel_dynamic_qconfig,
                                       quantize_dynamic)

    torch.backends.quantized.engine = "fbgemm"
    torch.set_num_threads(1)
    qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
    (_, _), (xte, yte) = data
    q = quantize_dynamic(load("mlp"), {torch.nn.Linear: qconfig}, dtype=torch.qint8)
    im = from_torch_quantized(q)
    for batch in (xte[:1], xte[:7], xte):
        with torch.no_grad():
            ref = q(batch).numpy()
        got = im(batch)
        np.testing.assert_array_equal(got.view(np.int32), ref.view(np.int32))
    # random layers: odd shapes, tiny ranges (the 6.1e-5 scale floor), all-positive inputs
    rng = np.random.default_rng(5)
    for k, n, m, mag in ((1, 1, 1, 1.0), (33, 17, 5, 1e-4), (129, 63, 7, 3.0), (4100, 9, 2, 0.5)):
        lin = torch.nn.Sequential(torch.nn.Linear(k, n), torch.nn.ReLU())
        qd = quantize_dynamic(lin, {torch.nn.Linear: qconfig}, dtype=torch.qint8)
        x = (rng.standard_normal((m, k)) * mag).astype(np.float32)
        for xi in (x, np.abs(x)):
            with torch.no_grad():
                ref = qd(torch.from_numpy(xi)).numpy()
            np.testing.assert_array_equal(from_torch_quantized(qd)(xi).view(np.int32), ref.view(np.int32))


def test_qnnpack_engine_linear_model_equals_pytorch(data):
    """engine="qnnpack": conv/linear use the qnnpack preset (int32 bias, its requant scale).

    Checked on the MLP. Not yet reproduced under qnnpack, so not claimed: (1) PyTorch's qnnpack
    conv returns channels-last tensors and its quantized ReLU6/clamp then hands back the data in
    memory order with NCHW strides (values land in the wrong positions: a PyTorch bug we do not
    emulate); (2) qnnpack's fixed-point average pooling rounds some ties of 2x2 windows
    differently from RNE(sum / k) and from QNNPACK's documented avgpool requantization."""
    torch.backends.quantized.engine = "qnnpack"
    try:
        (xtr, _), (xte, _) = data
        q = _quantize_fx(load("mlp"), xtr[:512], engine="qnnpack")
        with torch.no_grad():
            ref = q(xte).numpy()
        got = from_torch_quantized(q, engine="qnnpack")(xte)
        np.testing.assert_array_equal(got.view(np.int32), ref.view(np.int32))
    finally:
        torch.backends.quantized.engine = "fbgemm"
    with pytest.raises(ValueError, match="engine"):
        from_torch_quantized(q, engine="tensorrt")
