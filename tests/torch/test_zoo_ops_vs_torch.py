"""The ops the torchvision zoo added to from_torch_quantized, each against PyTorch's quantized op
under both engines on random scales and zero points: Hardsigmoid (every 8-bit input),
quantized.mul / mul_relu (broadcasting, saturating scales), mean over (2, 3) and the integer
shape ops inside a small FX-quantized network."""
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")

from _util import fx_quantized  # noqa: E402

from qkernels.torch import from_torch_quantized  # noqa: E402
from qkernels.torch._runtime import QMeta  # noqa: E402
from qkernels.torch.ops import hardsigmoid_table  # noqa: E402
from qkernels.torch.qarith import QTensor, q_mul  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]
ENGINES = ["fbgemm", "qnnpack"]


def _q(a, s, z):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch._make_per_tensor_quantized_tensor(torch.from_numpy(a), s, z)


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
@pytest.mark.parametrize("dt", [np.uint8, np.int8])
def test_hardsigmoid_table_equals_pytorch(engine, dt):
    rng = np.random.default_rng(7)
    info = np.iinfo(dt)
    q = np.arange(info.min, info.max + 1).astype(dt)
    for _ in range(60):
        s = float(np.float32(10 ** rng.uniform(-3, 0)))
        z = int(rng.integers(info.min, info.max + 1))
        y = torch.nn.functional.hardsigmoid(_q(q, s, z))
        out = QMeta(y.q_scale(), y.q_zero_point(), np.dtype(dt))
        assert (out.scale, out.zero_point) == (1 / 256, 0 if dt is np.uint8 else -128)
        t = hardsigmoid_table(QMeta(s, z, np.dtype(dt)), out, engine)
        np.testing.assert_array_equal(t, y.int_repr().numpy())


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
@pytest.mark.parametrize("dt", [np.uint8, np.int8])
def test_q_mul_equals_pytorch(engine, dt):
    rng = np.random.default_rng(8)
    info = np.iinfo(dt)
    total = 0
    for i in range(40):
        sa, sb = (float(np.float32(10 ** rng.uniform(-3, 0))) for _ in range(2))
        so = float(np.float32(sa * sb * 10 ** rng.uniform(-1, 2.5)))     # incl. saturation
        za, zb, zo = (int(v) for v in rng.integers(info.min, info.max + 1, 3))
        a = rng.integers(info.min, info.max + 1, (2, 16, 9, 9)).astype(dt)
        b = rng.integers(info.min, info.max + 1, (2, 16, 1, 1) if i % 2 else (2, 16, 9, 9)).astype(dt)
        for relu in (False, True):
            op = torch.ops.quantized.mul_relu if relu else torch.ops.quantized.mul
            ref = op(_q(a, sa, za), _q(b, sb, zb), so, zo).int_repr().numpy()
            got = q_mul(QTensor(a, sa, za), QTensor(b, sb, zb), so, zo, relu).q
            np.testing.assert_array_equal(got, ref)
            total += ref.size
    assert total > 200_000


@pytest.mark.parametrize("dt", [np.uint8, np.int8])
def test_q_mul_multiplier_in_float_equals_pytorch(dt):
    """PyTorch forms the multiplier in float (``fl(fl(s_a * s_b) * fl(1 / s_out))``); rounded
    once from double it differs by an ulp for some scales. Scales where the two differ, and for
    each an integer product that rounds differently: q_mul and the C op (qops.qmul, same shape
    and one value a plane) equal PyTorch's quantized.mul there."""
    from qkernels import qops
    f = np.float32
    rng = np.random.default_rng(21)
    info = np.iinfo(dt)
    za = zb = 0 if dt is np.int8 else 128
    q = np.arange(info.min, info.max + 1)
    c = ((q[:, None] - za) * (q[None, :] - zb)).astype(f)
    cases = 0
    while cases < 12:
        sa, sb, so = (float(f(v)) for v in rng.uniform(1e-3, 0.1, 3))
        m_float = f(f(f(sa) * f(sb)) * f(f(1) / f(so)))
        m_double = f(sa * sb * (1.0 / so))
        near = (np.rint(c * m_float) != np.rint(c * m_double)) & (np.abs(c * m_float) < 100)
        if m_float == m_double or not near.any():
            continue
        i, j = np.argwhere(near)[0]
        zo = 0 if dt is np.int8 else 128
        a = np.full((1, 2, 3, 5), q[i], dt)
        for b in (np.full((1, 2, 3, 5), q[j], dt), np.full((1, 2, 1, 1), q[j], dt)):
            ref = torch.ops.quantized.mul(_q(a, sa, za), _q(b, sb, zb), so, zo).int_repr().numpy()
            assert int(ref.flat[0]) == int(np.rint(c[i, j] * m_float)) + zo     # the float one
            np.testing.assert_array_equal(q_mul(QTensor(a, sa, za), QTensor(b, sb, zb), so, zo).q, ref)
            np.testing.assert_array_equal(qops.qmul(a, b, sa, za, sb, zb, so, zo), ref)
        cases += 1


class _Shuffle(torch.nn.Module):
    """Channel shuffle, squeeze-excitation, hardsigmoid and a mean: the zoo's ops in one net."""

    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.c2 = torch.nn.Conv2d(16, 16, 1)
        self.hs = torch.nn.Hardsigmoid()
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.c1(x))
        n, c, h, w = x.size()
        x = x.view(n, 2, c // 2, h, w)
        x = torch.transpose(x, 1, 2).contiguous().view(n, c, h, w)
        s = self.hs(self.c2(torch.nn.functional.adaptive_avg_pool2d(x, 1)))
        x = x * s
        a, b = x.chunk(2, dim=1)
        return self.fc(torch.cat([a, b], 1).permute(0, 2, 3, 1).reshape(n, h * w, 2, 8).mean([1, 2]))


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
def test_shape_ops_network_equals_pytorch(engine):
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    torch.manual_seed(3)
    net = _Shuffle().eval()
    x = torch.randn(4, 3, 12, 12)
    p = prepare_fx(net, get_default_qconfig_mapping(engine), example_inputs=(x,))
    for _ in range(3):
        p(torch.randn(4, 3, 12, 12))
    q = convert_fx(p)
    im = from_torch_quantized(q, engine=engine)
    ops = {L.op for L in im.layers.values()}
    assert {"shape", "mul", "lookup", "mean"} <= ops, ops
    with torch.no_grad():
        ref = q(x).numpy()
    np.testing.assert_array_equal(im(x.numpy()), ref)


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
@pytest.mark.parametrize("dt", [np.uint8, np.int8])
def test_add_and_mul_scalar_equal_pytorch(engine, dt):
    """quantized.add / mul with a scalar (and the relu forms): integers, scale and zero point ==
    PyTorch, including constants that push the zero point out of range (requantized) and
    negative / zero multipliers."""
    from qkernels.torch.qarith import q_add_scalar, q_mul_scalar
    rng = np.random.default_rng(9)
    info = np.iinfo(dt)
    q = np.arange(info.min, info.max + 1).astype(dt)
    for i in range(80):
        s = float(np.float32(10 ** rng.uniform(-3, 0)))
        z = int(rng.integers(info.min, info.max + 1))
        c = float(rng.normal(0, 200 * s)) if i % 2 else float(rng.choice([0.0, 1.5, -2.0, 3.0]))
        for relu in (False, True):
            for ours, op in ((q_add_scalar, torch.ops.quantized.add_scalar_relu if relu
                              else torch.ops.quantized.add_scalar),
                             (q_mul_scalar, torch.ops.quantized.mul_scalar_relu if relu
                              else torch.ops.quantized.mul_scalar)):
                ref = op(_q(q, s, z), c)
                got = ours(QTensor(q, s, z), c, relu)
                np.testing.assert_array_equal(got.q, ref.int_repr().numpy())
                assert (got.scale, got.zero_point) == (ref.q_scale(), ref.q_zero_point())


class _Scalars(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c = torch.nn.Conv2d(3, 4, 1)

    def forward(self, x):
        y = self.c(x)
        return (y + 1.5) * 0.5, torch.add(y, -40.0), torch.mul(y, -3)


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
def test_scalar_ops_network_equals_pytorch(engine):
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    torch.manual_seed(4)
    x = torch.randn(2, 3, 5, 5)
    p = prepare_fx(_Scalars().eval(), get_default_qconfig_mapping(engine), example_inputs=(x,))
    p(x)
    q = convert_fx(p)
    im = from_torch_quantized(q, engine=engine)
    assert sum(L.op == "scalar" for L in im.layers.values()) == 4
    with torch.no_grad():
        ref = q(x)
    for g, r in zip(im(x.numpy()), ref):
        np.testing.assert_array_equal(g, r.numpy())


def test_quantize_model_runs_shape_ops_and_int_ops_kept_in_float():
    """quantize_model: integer shape ops (size, view, transpose, contiguous, chunk) run on the
    integers with the input's parameters; an int op kept in float (floordiv of a size) gets no
    observer (it used to stop calibration: 'observed no data'); the result follows the float
    model."""
    from qkernels.torch import QuantConfig, quantize_model

    class Shuffle(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.fc = torch.nn.Linear(4 * 36, 5)

        def forward(self, x):
            x = torch.relu(self.c1(x))
            n, c, h, w = x.size()
            x = x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)
            a, b = x.chunk(2, dim=1)
            return self.fc(torch.flatten(a + b, 1))

    torch.manual_seed(5)
    net = Shuffle().eval()
    xs = [torch.randn(8, 3, 6, 6).numpy() for _ in range(4)]
    im = quantize_model(net, xs, config=QuantConfig(float_modules=("floordiv",)))
    assert {"shape", "getitem"} <= {L.op for L in im.layers.values()}
    x = xs[0]
    with torch.no_grad():
        f = net(torch.from_numpy(x)).numpy()
    y = im(x)
    sqnr = 10 * np.log10((f ** 2).sum() / ((f - y) ** 2).sum())
    assert sqnr > 25, sqnr


class _Upsample(torch.nn.Module):
    """A segmentation head's upsampling: F.interpolate (nearest, scale 2) and nn.Upsample (size)."""

    def __init__(self, mode="nearest"):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.up = torch.nn.Upsample(size=(10, 12), mode=mode)
        self.c2 = torch.nn.Conv2d(8, 4, 3, padding=1)
        self.mode = mode

    def forward(self, x):
        y = torch.nn.functional.interpolate(self.c1(x), scale_factor=2, mode=self.mode)
        return self.c2(self.up(torch.relu(y)))


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
def test_nearest_upsampling_equals_pytorch(engine):
    """Quantized nearest upsampling copies integers (parameters kept): == PyTorch. (FX keeps
    the ReLU after it and the nn.Upsample in float here; they run in float, also exact.)"""
    torch.manual_seed(6)
    q, x = fx_quantized(_Upsample(), engine, (2, 3, 11, 9), 7)
    im = from_torch_quantized(q, engine=engine)
    assert im.layers["interpolate"].op == "upsample_nearest"
    with torch.no_grad():
        ref = q(x).numpy()
    np.testing.assert_array_equal(im(x.numpy()), ref)


class _EfficientBlock(torch.nn.Module):
    """EfficientNet's ops in a float model: SiLU, squeeze-excitation (mean as a Tensor method,
    SiLU, Sigmoid, the multiply), Dropout, a residual add, torch.sigmoid and tanh functions."""

    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.act = torch.nn.SiLU()
        self.fc1 = torch.nn.Conv2d(8, 4, 1)
        self.fc2 = torch.nn.Conv2d(4, 8, 1)
        self.gate = torch.nn.Sigmoid()
        self.drop = torch.nn.Dropout(0.2)
        self.head = torch.nn.Linear(8, 5)

    def forward(self, x):
        y = self.act(self.c1(x))
        s = self.gate(self.fc2(self.act(self.fc1(y.mean((2, 3), keepdim=True)))))
        y = self.drop(y * s) + y
        y = torch.tanh(y) * 2 + torch.sigmoid(y)
        return self.head(y.mean([2, 3]))


def test_quantize_model_tables_multiplies_and_mean():
    """quantize_model: SiLU / Sigmoid / tanh / sigmoid as 256-entry tables of the float op (the
    integers equal the fake-quant run there: the table is that run on every input), the
    squeeze-excitation multiply as quantized::mul, the scalar multiply as mul_scalar, mean."""
    from qkernels.torch import quantize_model
    torch.manual_seed(8)
    net = _EfficientBlock().eval()
    g = torch.Generator().manual_seed(9)
    calib = [torch.randn(4, 3, 8, 8, generator=g) for _ in range(3)]
    x = torch.randn(3, 3, 8, 8, generator=g).numpy()
    im = quantize_model(net, calib)
    ops = {n: L.op for n, L in im.layers.items()}
    assert [ops[n] for n in ("act", "gate", "tanh", "sigmoid")] == ["lookup"] * 4
    assert ops["mul"] == "mul" and ops["mul_1"] == "scalar" and ops["drop"] == "identity"
    assert ops["mean"] == "mean"
    rows = {r.name: r for r in im.compare(x)}
    for n in ("act", "gate", "tanh", "sigmoid"):
        assert rows[n].steps_diff_vs_fake_quant == 0, n
    with torch.no_grad():
        f = net(torch.from_numpy(x)).numpy()
    y = im(x)
    assert 10 * np.log10((f ** 2).sum() / ((f - y) ** 2).sum()) > 25
