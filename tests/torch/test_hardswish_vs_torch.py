"""nn.Hardswish, added through the op table alone (one entry building a 256-entry lookup layer):
the table equals PyTorch's quantized hardswish on every input integer for both engines, a model
PyTorch quantized with Hardswish runs element-exact on qkernels, and quantize_model runs it."""
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")

from qkernels.torch import QuantConfig, from_torch_quantized, quantize_model  # noqa: E402
from qkernels.torch._runtime import QMeta  # noqa: E402
from qkernels.torch.ops import find_module, hardswish_table  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]


@pytest.mark.parametrize("engine", ["fbgemm", "qnnpack"])
def test_hardswish_table_equals_pytorch(engine):
    """300 random (input, output) parameter draws, all 256 inputs each, quint8 and (fbgemm)
    qint8: the table == torch.ops.quantized.hardswish, every value."""
    rng = np.random.default_rng(0)
    old = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    bad = total = 0
    try:
        for t in range(300):
            dt = (torch.quint8, torch.qint8)[t % 2] if engine == "fbgemm" else torch.quint8
            npdt = np.dtype(np.uint8 if dt == torch.quint8 else np.int8)
            info = np.iinfo(npdt)
            si, so = float(rng.uniform(0.001, 0.2)), float(rng.uniform(0.001, 0.2))
            zi, zo = (int(rng.integers(info.min, info.max + 1)) for _ in range(2))
            q = np.arange(info.min, info.max + 1).astype(npdt)
            qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(q), si, zi)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref = torch.ops.quantized.hardswish(qx, so, zo).int_repr().numpy()
            got = hardswish_table(QMeta(si, zi, npdt), QMeta(so, zo, npdt), engine)
            bad += int(np.sum(got != ref))
            total += ref.size
    finally:
        torch.backends.quantized.engine = old
    assert total >= 76_800 and bad == 0, f"{bad} of {total}"


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.act = torch.nn.Hardswish()
        self.fc = torch.nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.act(self.conv(x)), 1))


@pytest.mark.parametrize("engine", ["fbgemm", "qnnpack"])
def test_fx_model_with_hardswish_equals_pytorch(engine):
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    x = torch.rand(64, 1, 8, 8) * 6 - 3
    old = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prepared = prepare_fx(_Net().eval(), get_default_qconfig_mapping(engine),
                                  example_inputs=(x,))
            prepared(x)
            q = convert_fx(prepared)
            with torch.no_grad():
                ref = q(x).numpy()
        im = from_torch_quantized(q, engine=engine)
        got = im(x.numpy())
    finally:
        torch.backends.quantized.engine = old
    assert "lookup" in {L.op for L in im.layers.values()}
    np.testing.assert_array_equal(got.view(np.int32), ref.view(np.int32))


def test_quantize_model_runs_hardswish_as_a_table():
    rng = np.random.default_rng(1)
    calib = [rng.uniform(-3, 3, (32, 1, 8, 8)).astype(np.float32) for _ in range(4)]
    x = rng.uniform(-3, 3, (64, 1, 8, 8)).astype(np.float32)
    im = quantize_model(_Net().eval(), calib, config=QuantConfig())
    assert find_module(torch.nn.Hardswish()).name == "hardswish"
    act = im.layers["act"]
    assert act.op == "lookup" and act.table.shape == (256,)
    # the table is exactly fbgemm's quantized hardswish of the conv's integers
    tr = im.intermediates(x)
    xin = tr["conv"]
    qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(xin.q), xin.scale, xin.zero_point)
    s, z = im.qparams["act"]
    torch.backends.quantized.engine = "fbgemm"
    ref = torch.ops.quantized.hardswish(qx, s, z).int_repr().numpy()
    np.testing.assert_array_equal(tr["act"].q, ref)
    for r in im.compare(x):
        assert r.steps_diff_vs_fake_quant <= 1.0 and r.cosine > 0.99, r
