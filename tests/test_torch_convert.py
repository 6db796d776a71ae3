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
