"""PyTorch's quantized BatchNorm (``quantized::batch_norm2d(_relu)``, a BatchNorm no convolution
absorbs: DenseNet's BN-ReLU-conv) and its channels-last average pooling, against PyTorch itself,
``==`` on every element, engines fbgemm and qnnpack; and a BN-ReLU-conv-pool network PyTorch
quantized with FX, imported with from_torch_quantized."""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")

from qkernels.torch import from_torch_quantized  # noqa: E402
from qkernels.torch import layers as Ly  # noqa: E402
from qkernels.torch import qarith as qa  # noqa: E402
from qkernels.torch._runtime import QMeta  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]

_TYPES = [(np.uint8, torch.quint8), (np.int8, torch.qint8)]
ENGINES = ["fbgemm", "qnnpack"]


def _bn_layer(w, b, mean, var, eps, s_in, z_in, s_out, z_out, dt, relu):
    alpha, beta = Ly.batch_norm_params(w, b, mean, var, eps, s_in, s_out)
    return Ly.BatchNormLayer("bn", ("x",), QMeta(s_out, z_out, np.dtype(dt)),
                             x=QMeta(s_in, z_in, np.dtype(dt)), alpha=alpha, beta=beta, relu=relu)


def _torch_bn(x, w, b, mean, var, eps, s_out, z_out, relu):
    op = torch.ops.quantized.batch_norm2d_relu if relu else torch.ops.quantized.batch_norm2d
    return op(x, *(torch.from_numpy(np.asarray(v, np.float32)) for v in (w, b, mean, var)),
              eps, s_out, z_out).int_repr().numpy()


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
@pytest.mark.parametrize("dt,tdt", _TYPES, ids=["uint8", "int8"])
def test_batch_norm2d_equals_pytorch(engine, dt, tdt, rng):
    """Random parameters and channel counts on both sides of the kernel's vector width (its
    scalar tail), negative and zero weights, saturating outputs, with and without ReLU."""
    info = np.iinfo(dt)
    total = 0
    for trial in range(40):
        c = int(rng.choice([1, 3, 8, 17, 32, 40, 64, 96, 100]))
        relu = bool(trial % 2)
        s_in, s_out = (float(np.float32(np.exp(rng.uniform(-5, 1)))) for _ in range(2))
        z_in, z_out = (int(rng.integers(info.min, info.max + 1)) for _ in range(2))
        w = (rng.standard_normal(c) * 2).astype(np.float32)
        w[rng.random(c) < 0.1] = 0
        b, mean = rng.standard_normal((2, c)).astype(np.float32)
        var = (rng.random(c) * 3 + 1e-3).astype(np.float32)
        eps = float(rng.choice([1e-5, 1e-3]))
        x = torch.quantize_per_tensor(torch.from_numpy(rng.standard_normal((2, c, 5, 7),
                                                                            np.float32) * 3),
                                      s_in, z_in, tdt)
        ref = _torch_bn(x, w, b, mean, var, eps, s_out, z_out, relu)
        got = _bn_layer(w, b, mean, var, eps, s_in, z_in, s_out, z_out, dt, relu).kernel()(
            1, x.int_repr().numpy())
        assert got.dtype == dt
        np.testing.assert_array_equal(got, ref, err_msg=f"trial {trial} C={c} relu={relu}")
        total += ref.size
    assert total > 50_000


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
@pytest.mark.parametrize("dt,tdt", _TYPES, ids=["uint8", "int8"])
def test_batch_norm2d_near_ties_equal_pytorch(engine, dt, tdt, rng):
    """Every input integer on channels whose bias puts one input exactly half a step from an
    integer before the float rounding (output scale 1, mean 0: beta = bias): PyTorch computes
    ``fmaf(alpha, q - zp, beta)`` with one rounding, and these ties show it (the product rounded
    first gives other integers on some of them)."""
    info = np.iinfo(dt)
    c = 80
    q = np.arange(info.min, info.max + 1).astype(dt)
    xq = np.broadcast_to(q.reshape(1, 1, 1, -1), (1, c, 1, q.size)).copy()
    unfused_differs = 0
    for trial in range(6):
        s_in = float(np.float32(np.exp(rng.uniform(-4, 0))))
        z_in = int(rng.integers(info.min, info.max + 1))
        w = rng.uniform(0.2, 3, c).astype(np.float32) * rng.choice([-1, 1], c).astype(np.float32)
        var = rng.uniform(0.5, 2, c).astype(np.float32)
        mean = np.zeros(c, np.float32)
        alpha, _ = Ly.batch_norm_params(w, None, mean, var, 1e-5, s_in, 1.0)
        a0 = rng.integers(-100, 100, c)
        k = rng.integers(-20, 20, c)
        bias = (k + 0.5 - alpha.astype(np.float64) * a0).astype(np.float32)   # the tie
        x = torch._make_per_tensor_quantized_tensor(torch.from_numpy(xq), s_in, z_in)
        assert x.dtype == tdt
        ref = _torch_bn(x, w, bias, mean, var, 1e-5, 1.0, 0 if dt == np.uint8 else 0, False)
        layer = _bn_layer(w, bias, mean, var, 1e-5, s_in, z_in, 1.0, 0, dt, False)
        got = layer.kernel()(1, xq)
        np.testing.assert_array_equal(got, ref, err_msg=f"trial {trial}")
        acc = xq.astype(np.int32) - z_in
        sh = (1, c, 1, 1)
        unfused = np.clip(np.rint((layer.alpha.reshape(sh) * acc.astype(np.float32)).astype(
            np.float32) + layer.beta.reshape(sh)), info.min, info.max)
        unfused_differs += int((unfused != ref).sum())
    assert unfused_differs > 0      # the cases tell the single rounding from two


def test_batch_norm_layer_checks_channels():
    L = _bn_layer(np.ones(4, np.float32), None, np.zeros(4), np.ones(4), 1e-5, 0.1, 0, 0.1, 0,
                  np.uint8, False)
    with pytest.raises(ValueError, match="BatchNorm of 4 channels.*shape \\(1, 3, 2, 2\\)"):
        L.kernel()(1, np.zeros((1, 3, 2, 2), np.uint8))


@pytest.mark.parametrize("engine", ["fbgemm"], indirect=True)
@pytest.mark.parametrize("dt,tdt", _TYPES, ids=["uint8", "int8"])
def test_avg_pool2d_channels_last_equals_pytorch(engine, dt, tdt, rng):
    """avg_pool2d of a channels-last quantized tensor (a conv or BatchNorm output):
    ``qavg_pool2d_nhwc_kernel`` rounds its vector channels relative to the zero point
    (``RNE(acc * m) + zp``) and the rest as the NCHW kernel does; 2x2 windows make ties common.
    Channel counts on both sides of the vector width of this machine's kernels."""
    vw = qa.torch_pool_vec_width()
    for c in (3, 12, 16, 20, 40, 64):
        for zp in (3, 4, 7, -5 if dt == np.int8 else 10):
            x = torch.quantize_per_tensor(torch.from_numpy(rng.standard_normal((2, c, 8, 8),
                                                                                np.float32) * 2),
                                          0.05, zp, tdt).contiguous(
                                              memory_format=torch.channels_last)
            q = np.ascontiguousarray(x.int_repr().numpy())
            for k, s, p, cip in ((2, 2, 0, True), (3, 2, 1, True), (3, 2, 1, False)):
                ref = torch.nn.functional.avg_pool2d(x, k, s, p, count_include_pad=cip)
                got = qa.q_avg_pool2d(qa.QTensor(q, 0.05, zp), k, s, p, count_include_pad=cip,
                                      channels_last=True, vec_width=vw).q
                np.testing.assert_array_equal(got, ref.int_repr().numpy(),
                                              err_msg=f"C={c} zp={zp} k={k} cip={cip}")
    if vw:   # the NCHW formula differs there: the layout matters
        x = torch.quantize_per_tensor(torch.rand(1, 16, 8, 8) * 0.4, 0.05, 3, tdt).contiguous(
            memory_format=torch.channels_last)
        ref = torch.nn.functional.avg_pool2d(x, 2).int_repr().numpy()
        nchw = qa.q_avg_pool2d(qa.QTensor(np.ascontiguousarray(x.int_repr().numpy()), 0.05, 3),
                               2).q
        assert (nchw != ref).any()


class _DenseTransition(torch.nn.Module):
    """DenseNet's shape: conv, then BN-ReLU-conv (the BatchNorm no conv absorbs), cat, a lone
    BatchNorm, 2x2 average pooling of the channels-last result."""

    def __init__(self):
        super().__init__()
        self.conv0 = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.norm1 = torch.nn.BatchNorm2d(16)
        self.relu1 = torch.nn.ReLU()
        self.conv1 = torch.nn.Conv2d(16, 24, 1)
        self.norm2 = torch.nn.BatchNorm2d(40)
        self.pool = torch.nn.AvgPool2d(2, 2)

    def forward(self, x):
        y = self.conv0(x)
        z = self.conv1(self.relu1(self.norm1(y)))
        return self.pool(self.norm2(torch.cat([y, z], 1)))


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
def test_bn_relu_conv_model_equals_pytorch(engine):
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.manual_seed(0)
    m = _DenseTransition().train()
    with torch.no_grad():
        m(torch.randn(8, 3, 16, 16))
    m.eval()
    x = torch.randn(4, 3, 16, 16)
    p = prepare_fx(m, get_default_qconfig_mapping(engine), example_inputs=(x,))
    with torch.no_grad():
        p(torch.randn(8, 3, 16, 16))
    q = convert_fx(p)
    kinds = {type(mod).__name__ for mod in q.modules()}
    assert {"BNReLU2d", "BatchNorm2d"} <= kinds
    im = from_torch_quantized(q, engine=engine)
    assert any(isinstance(L, Ly.BatchNormLayer) and L.relu for L in im.layers.values())
    with torch.no_grad():
        ref = q(x).numpy()
    got = im(x.numpy())
    assert got.shape == ref.shape
    assert int((got != ref).sum()) == 0
