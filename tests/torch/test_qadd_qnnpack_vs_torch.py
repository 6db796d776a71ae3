"""Engine "qnnpack": quantized add / add_relu of quint8 tensors is QNNPACK's integer add in
PyTorch (fixed-point multipliers of the scale ratios, a rounding right shift, ties away from zero),
not fbgemm's float path. The C kernel (qops.qadd(engine="qnnpack")), its NumPy reference
(qarith.q_add_qnnpack) and a residual network through from_torch_quantized equal PyTorch with
torch.backends.quantized.engine = "qnnpack", element for element."""
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")

from qkernels import qops  # noqa: E402
from qkernels.torch import from_torch_quantized  # noqa: E402
from qkernels.torch.qarith import QTensor, q_add_qnnpack  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]


@pytest.fixture(autouse=True)
def _qnnpack():
    old = torch.backends.quantized.engine
    torch.backends.quantized.engine = "qnnpack"
    torch.set_num_threads(1)
    yield
    torch.backends.quantized.engine = old


def _torch_add(a, b, sa, za, sb, zb, so, zo, relu):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qa = torch._make_per_tensor_quantized_tensor(torch.from_numpy(a), sa, za)
        qb = torch._make_per_tensor_quantized_tensor(torch.from_numpy(b), sb, zb)
    op = torch.ops.quantized.add_relu if relu else torch.ops.quantized.add
    return op(qa, qb, so, zo).int_repr().numpy()


def _cases(rng, n_draws):
    """Random scales and zero points: ratios over QNNPACK's supported range (2^-10 .. 2^8), the
    near-tie ones (ratios of small powers of two, where many sums are exact halves), and
    saturating outputs (small output scales)."""
    for i in range(n_draws):
        kind = i % 4
        if kind == 0:       # any ratios
            so = float(np.float32(10 ** rng.uniform(-3, -1)))
            sa, sb = (float(np.float32(so * 2 ** rng.uniform(-9.5, 7.5))) for _ in range(2))
        elif kind == 1:     # ties: ratios k / 2^j
            so = float(np.float32(10 ** rng.uniform(-3, -1)))
            sa = so * int(rng.integers(1, 8)) / 2 ** int(rng.integers(1, 5))
            sb = so * int(rng.integers(1, 8)) / 2 ** int(rng.integers(1, 5))
        elif kind == 2:     # saturation: the output scale far below the inputs'
            sa, sb = float(np.float32(rng.uniform(0.05, 0.2))), float(np.float32(rng.uniform(0.05, 0.2)))
            so = float(np.float32(sa / rng.uniform(4, 60)))
        else:               # the residual case: similar scales
            sa = float(np.float32(rng.uniform(0.01, 0.1)))
            sb = float(np.float32(sa * rng.uniform(0.5, 2)))
            so = float(np.float32(max(sa, sb) * rng.uniform(1, 2)))
        za, zb, zo = (int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.2:
            zo = 255 - int(rng.integers(0, 3))
        yield sa, za, sb, zb, so, zo


def test_qadd_qnnpack_equals_pytorch_on_4m_elements():
    """qops.qadd(engine="qnnpack") and q_add_qnnpack == torch.ops.quantized.add(_relu) under
    qnnpack: 0 mismatches over >= 4M elements (odd sizes exercise the AVX2 loop's tail)."""
    rng = np.random.default_rng(15)
    total = 0
    for i, (sa, za, sb, zb, so, zo) in enumerate(_cases(rng, 56)):
        shape = (3, 5, 7, 11) if i % 7 == 6 else (1, 64, 28, 28)
        a = rng.integers(0, 256, shape).astype(np.uint8)
        b = rng.integers(0, 256, shape).astype(np.uint8)
        for relu in (False, True):
            if relu and zo == 255:
                continue        # QNNPACK refuses the empty output range [255, 255]
            ref = _torch_add(a, b, sa, za, sb, zb, so, zo, relu)
            got = qops.qadd(a, b, sa, za, sb, zb, so, zo, relu, engine="qnnpack")
            np.testing.assert_array_equal(got, ref)
            np.testing.assert_array_equal(
                q_add_qnnpack(QTensor(a, sa, za), QTensor(b, sb, zb), so, zo, relu).q, ref)
            total += ref.size
    assert total >= 4_000_000


def test_qadd_qnnpack_every_input_pair():
    """All 65,536 (a, b) pairs, for tie-heavy ratios and zero points: == PyTorch."""
    a, b = (v.astype(np.uint8).ravel() for v in np.meshgrid(np.arange(256), np.arange(256)))
    for sa, sb, so, za, zb, zo in [(0.5, 0.25, 1.0, 0, 0, 0), (0.75, 0.375, 1.5, 128, 3, 128),
                                   (0.1, 0.1, 0.2, 127, 129, 64), (1.0, 1.0, 1.0, 128, 128, 128),
                                   (0.02, 0.3, 0.07, 255, 0, 17)]:
        for relu in (False, True):
            ref = _torch_add(a, b, sa, za, sb, zb, so, zo, relu)
            np.testing.assert_array_equal(qops.qadd(a, b, sa, za, sb, zb, so, zo, relu,
                                                    engine="qnnpack"), ref)


def test_qadd_qnnpack_differs_from_fbgemm_on_ties():
    """The two engines really differ (so the engine choice is tested): 2.5 rounds to 3 under
    qnnpack (half away from zero) and to 2 under fbgemm (half to even)."""
    a, b = np.uint8([5]), np.uint8([0])
    assert qops.qadd(a, b, 0.5, 0, 0.5, 0, 1.0, 0, engine="qnnpack")[0] == 3
    assert qops.qadd(a, b, 0.5, 0, 0.5, 0, 1.0, 0, engine="fbgemm")[0] == 2
    assert _torch_add(a, b, 0.5, 0, 0.5, 0, 1.0, 0, False)[0] == 3


def test_qadd_qnnpack_bad_parameters_raise():
    x = np.zeros(4, np.uint8)
    with pytest.raises(ValueError, match="scale"):      # ratio 2^8: QNNPACK refuses it
        qops.qadd(x, x, 256.0, 0, 1.0, 0, 1.0, 0, engine="qnnpack")
    with pytest.raises(ValueError, match="scale"):      # below 2^-10: shift > 31
        qops.qadd(x, x, 2.0 ** -12, 0, 2.0 ** -12, 0, 1.0, 0, engine="qnnpack")
    with pytest.raises(ValueError, match="zero point"):
        qops.qadd(x, x, 1.0, 256, 1.0, 0, 1.0, 0, engine="qnnpack")
    with pytest.raises(ValueError):
        qops.qadd(x, x, 1.0, 0, 1.0, 0, 1.0, 255, True, engine="qnnpack")
    with pytest.raises(ValueError, match="engine"):
        qops.qadd(x, x, 1.0, 0, 1.0, 0, 1.0, 0, engine="tflite")


class _Residual(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.c2 = torch.nn.Conv2d(16, 16, 3, padding=1)
        self.c3 = torch.nn.Conv2d(16, 16, 3, padding=1)
        self.relu = torch.nn.ReLU()
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(16, 10)

    def forward(self, x):
        y = self.relu(self.c1(x))
        y = self.relu(self.c2(y) + y)       # add_relu
        y = self.c3(y) + y                  # add
        return self.fc(torch.flatten(self.pool(y), 1))


def test_residual_net_qnnpack_equals_pytorch():
    """A residual network quantized by PyTorch (FX, qnnpack qconfig): from_torch_quantized ==
    PyTorch under the qnnpack engine, every output element."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    torch.manual_seed(0)
    net = _Residual().eval()
    x = torch.randn(8, 3, 20, 20)
    prepared = prepare_fx(net, get_default_qconfig_mapping("qnnpack"), example_inputs=(x,))
    for _ in range(4):
        prepared(torch.randn(8, 3, 20, 20))
    q = convert_fx(prepared)
    im = from_torch_quantized(q, engine="qnnpack")
    assert any(L.op == "add" and L.engine == "qnnpack" for L in im.layers.values())
    with torch.no_grad():
        ref = q(x).numpy()
    np.testing.assert_array_equal(im(x.numpy()), ref)
