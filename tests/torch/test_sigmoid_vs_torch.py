"""Quantized Sigmoid in from_torch_quantized, against PyTorch under both engines: the table of
PyTorch's op (ops.sigmoid_table) equals torch.sigmoid / quantized.sigmoid at every position of
tensors whose lengths are not multiples of the vector width (vector body and scalar tail), and a
small squeeze-excitation network (nn.Sigmoid, quantized.mul, SiLU kept in float) quantized by FX
runs exact."""
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")

from _util import fx_quantized  # noqa: E402

from qkernels.torch import from_torch_quantized  # noqa: E402
from qkernels.torch._runtime import QMeta  # noqa: E402
from qkernels.torch.ops import sigmoid_table  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]
ENGINES = ["fbgemm", "qnnpack"]
#: lengths around the vector widths (32 and 64 bytes) and odd ones: body and tail
LENGTHS = (1, 7, 31, 33, 63, 64, 65, 127, 129, 250, 1001)


def _q(a, s, z):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch._make_per_tensor_quantized_tensor(torch.from_numpy(np.ascontiguousarray(a)),
                                                       s, z)


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
@pytest.mark.parametrize("dt", [np.uint8, np.int8])
def test_sigmoid_table_equals_pytorch_at_every_position(engine, dt):
    rng = np.random.default_rng(11)
    info = np.iinfo(dt)
    n = 0
    for i in range(40):
        s = float(np.float32(10 ** rng.uniform(-3.5, 0.3)))
        if i % 4 == 0:                       # power-of-two scales: ties of x * 256
            s = float(2.0 ** -int(rng.integers(2, 9)))
        z = int(rng.integers(info.min, info.max + 1))
        xm = QMeta(s, z, np.dtype(dt))
        table, out = sigmoid_table(xm, engine)
        assert (out.scale, out.zero_point) == (1 / 256, 0 if dt is np.uint8 else -128)
        for L in LENGTHS:
            x = rng.integers(info.min, info.max + 1, L).astype(dt)
            y = torch.sigmoid(_q(x, s, z))
            assert (y.q_scale(), y.q_zero_point()) == (out.scale, out.zero_point)
            np.testing.assert_array_equal(table[x.astype(np.int64) - int(info.min)],
                                          y.int_repr().numpy())
            n += L
        # a 4-d tensor (N, C, H, W) as the modules see it, and every integer in every lane
        x = np.tile(np.arange(info.min, info.max + 1).astype(dt), 3)[:700].reshape(1, 7, 10, 10)
        y = torch.sigmoid(_q(x, s, z)).int_repr().numpy()
        np.testing.assert_array_equal(table[x.astype(np.int64) - int(info.min)], y)
        # quantized.sigmoid with its own output parameters
        so, zo = float(np.float32(10 ** rng.uniform(-3, -1))), int(rng.integers(info.min, info.max + 1))
        if engine == "qnnpack" and dt is np.uint8:     # QNNPACK's table takes 1/256 and 0 only
            with pytest.raises(ValueError, match="1/256 and 0 only"):
                sigmoid_table(xm, engine, (so, zo))
            so, zo = 1 / 256, 0
        t2, out2 = sigmoid_table(xm, engine, (so, zo))
        x = rng.integers(info.min, info.max + 1, 333).astype(dt)
        y = torch.ops.quantized.sigmoid(_q(x, s, z), so, zo)
        assert (out2.scale, out2.zero_point) == (y.q_scale(), y.q_zero_point())
        np.testing.assert_array_equal(t2[x.astype(np.int64) - int(info.min)], y.int_repr().numpy())
    assert n > 60_000
    assert torch.backends.quantized.engine == engine      # put back


class _SE(torch.nn.Module):
    """EfficientNet's squeeze-excitation: SiLU (FX keeps it in float), adaptive pooling, the
    gate's nn.Sigmoid (quantized, fixed output parameters), the multiply; torch.sigmoid too."""

    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.act = torch.nn.SiLU()
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc1 = torch.nn.Conv2d(16, 4, 1)
        self.fc2 = torch.nn.Conv2d(4, 16, 1)
        self.gate = torch.nn.Sigmoid()
        self.c2 = torch.nn.Conv2d(16, 8, 1)

    def forward(self, x):
        y = self.act(self.c1(x))
        s = self.gate(self.fc2(self.act(self.fc1(self.pool(y)))))
        return torch.sigmoid(self.c2(y * s))


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
def test_squeeze_excitation_network_equals_pytorch(engine):
    torch.manual_seed(5)
    q, x = fx_quantized(_SE(), engine, (3, 3, 13, 11), 6, calib=3)
    im = from_torch_quantized(q, engine=engine)
    fns = [L.function for L in im.layers.values() if L.op == "lookup"]
    assert fns.count("sigmoid") == 2, fns
    with torch.no_grad():
        ref = q(x).numpy()
    np.testing.assert_array_equal(im(x.numpy()), ref)
