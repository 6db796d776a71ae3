"""quantize_model(mode="dynamic") == torch.ao.quantization.quantize_dynamic (fbgemm), bit for bit."""
import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")
pytest.importorskip("sklearn", reason="scikit-learn (the digits data) is a test requirement")

from qkernels.torch import QuantConfig, TensorConfig, quantize_model  # noqa: E402
from qkernels.torch.reference_models import digits, load  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def _dyn_config(per_channel):
    return QuantConfig(weight=TensorConfig(bits=8, symmetric=True, per_channel=per_channel,
                                           signed=True), mode="dynamic")


def _torch_dynamic(net, per_channel):
    from torch.ao.quantization import (default_dynamic_qconfig, per_channel_dynamic_qconfig,
                                       quantize_dynamic)
    if per_channel:
        return quantize_dynamic(net, {torch.nn.Linear: per_channel_dynamic_qconfig},
                                dtype=torch.qint8)
    return quantize_dynamic(net, {torch.nn.Linear}, dtype=torch.qint8)  # default dynamic qconfig


class _OddMLP(torch.nn.Module):
    """Odd sizes, a Linear without bias, a fused ReLU, an unfused LeakyReLU, a residual add."""

    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(37, 61)
        self.relu = torch.nn.ReLU()
        self.fc2 = torch.nn.Linear(61, 61, bias=False)
        self.act = torch.nn.LeakyReLU(0.2)
        self.fc3 = torch.nn.Linear(61, 5)

    def forward(self, x):
        h = self.relu(self.fc1(x))
        return self.fc3(self.act(self.fc2(h)) + h)


@pytest.fixture(autouse=True)
def _fbgemm():
    torch.backends.quantized.engine = "fbgemm"
    torch.set_num_threads(1)


@pytest.mark.parametrize("per_channel", [False, True])
def test_dynamic_mlp_equals_quantize_dynamic(per_channel):
    (_, _), (xte, yte) = digits()
    net = load("mlp")
    im = quantize_model(net, None, config=_dyn_config(per_channel))
    ref_model = _torch_dynamic(load("mlp"), per_channel)
    for name in ("fc1", "fc2", "fc3"):   # the weights are quantize_dynamic's, integer for integer
        tw = getattr(ref_model, name).weight()
        ts = tw.q_per_channel_scales().numpy() if per_channel else np.float32(tw.q_scale())
        np.testing.assert_array_equal(im.layers[name].w_int, tw.int_repr().numpy())
        np.testing.assert_array_equal(im.layers[name].w_scale, np.asarray(ts, np.float32))
    rng = np.random.default_rng(11)
    n_el = n_in = 0
    batches = [xte[:1], xte[1:2], xte[:7], xte]
    batches += [torch.from_numpy(rng.standard_normal((b, 1, 8, 8)).astype(np.float32) * s)
                for b, s in ((1, 1.0), (3, 1e-5), (64, 20.0), (1, 1e-3), (17, 0.3))]
    for b in batches:
        with torch.no_grad():
            ref = ref_model(b).numpy()
        got = im(b)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got.view(np.int32), ref.view(np.int32))
        n_el += got.size
        n_in += got.shape[0]
    assert n_in > 400 and n_el > 4000
    acc = float(np.mean(im(xte).argmax(1) == yte.numpy()))
    assert acc > 0.9


@pytest.mark.parametrize("per_channel", [False, True])
def test_dynamic_odd_model_equals_quantize_dynamic(per_channel):
    torch.manual_seed(3)
    net = _OddMLP().eval()
    im = quantize_model(net, None, config=_dyn_config(per_channel))
    ref_model = _torch_dynamic(copy.deepcopy(net), per_channel)
    rng = np.random.default_rng(7)
    for i in range(40):
        b = (1, 2, 5, 33, 128)[i % 5]
        x = rng.standard_normal((b, 37)).astype(np.float32) * float(10.0 ** rng.uniform(-5, 2))
        if i % 3 == 0:
            x = np.abs(x)           # all-positive: zero point 0
        with torch.no_grad():
            ref = ref_model(torch.from_numpy(x)).numpy()
        np.testing.assert_array_equal(im(x).view(np.int32), ref.view(np.int32))



def test_dynamic_other_configs_run_and_report(tmp_path):
    """Configs PyTorch has no dynamic counterpart for (int8 symmetric activations, power-of-two
    scales, conv layers) still run; compare / accumulator_bounds / export cover them."""
    (xtr, _), (xte, yte) = digits()
    for cfg in (QuantConfig(mode="dynamic"),
                QuantConfig(activation=TensorConfig(bits=8, symmetric=True, signed=True,
                                                    power_of_two="ceil"), mode="dynamic")):
        im = quantize_model(load("resnet"), None, config=cfg)   # convs, residual adds, Linear
        acc_int = float(np.mean(im(xte).argmax(1) == yte.numpy()))
        acc_float = float(np.mean(im.float_reference(xte).argmax(1) == yte.numpy()))
        assert acc_int >= acc_float - 0.02, (acc_int, acc_float)
        rep = im.compare(xte[:32])
        assert {r.name for r in rep} == set(im.compute_layers())
        for r in rep:
            assert r.cosine > 0.99 and r.steps_diff_vs_fake_quant <= 1.0, r
        b = im.accumulator_bounds()
        assert set(b) == set(im.compute_layers()) and all(0 < v < 2**31 for v in b.values())
    paths = im.export(str(tmp_path), xte[:4])
    from qkernels.io import read_array
    name = next(iter(im.compute_layers()))
    d = tmp_path / "layers" / name
    assert np.array_equal(read_array(str(d / "weights.txt")), im.layers[name].w_int)
    acc = read_array(str(d / "accumulator.txt"))
    assert acc.shape[0] == 4 and str(d / "params.txt") in paths


def test_dynamic_int16_activations_rejected():
    with pytest.raises(ValueError, match="activation.bits"):
        quantize_model(load("mlp"), None, config=QuantConfig(activation=TensorConfig(bits=16),
                                                             mode="dynamic"))


def test_dynamic_transformer_block_equals_quantize_dynamic():
    """3-D input (batch, tokens, features), a float LayerNorm between two dynamic Linears."""
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(32, 48), torch.nn.LayerNorm(48),
                              torch.nn.Linear(48, 16)).eval()
    im = quantize_model(net, None, config=_dyn_config(False))
    ref_model = _torch_dynamic(copy.deepcopy(net), False)
    rng = np.random.default_rng(2)
    for shape in ((1, 1, 32), (4, 10, 32), (16, 7, 32)):
        x = rng.standard_normal(shape).astype(np.float32)
        with torch.no_grad():
            ref = ref_model(torch.from_numpy(x)).numpy()
        np.testing.assert_array_equal(im(x).view(np.int32), ref.view(np.int32))


def _dynamic_inputs(rng):
    """Ranges that take every branch of FBGEMM's ChooseQuantizationParams: both signs, one sign,
    all zeros, empty, ranges below the 6.1e-5 scale floor (each side), huge values, and values on
    the quantization ties."""
    yield np.zeros(0, np.float32)
    yield np.zeros((3, 5), np.float32)
    for n in (1, 7, 31, 32, 33, 100, 1000, 49_152):
        yield rng.normal(0, 3, n)
        yield np.abs(rng.normal(0, 2, n))
        yield -np.abs(rng.normal(0, 2, n))
        yield rng.uniform(-1e-6, 1e-6, n)
        yield rng.uniform(0, 1e-3, n)
        yield -rng.uniform(0, 1e-5, n)
        yield rng.normal(0, 1e30, n)
    for s in (0.01, 0.0236, 1 / 3):   # on the ties x / s = k + 1/2 of some choice of scale
        yield (rng.integers(-300, 300, 999) + 0.5) * s
    yield rng.normal(4, 1, (7, 11, 13))


def test_quantize_dynamic_equals_torch_choose_qparams_and_quantize():
    """qkernels.quantize_dynamic (one C call: min / max, FBGEMM's ChooseQuantizationParams,
    quantize) == torch._choose_qparams_per_tensor (FBGEMM's, as quantized::linear_dynamic calls
    it) and torch.quantize_per_tensor(quint8), and == the NumPy reference of qarith."""
    from qkernels import quantize_dynamic
    from qkernels.torch.qarith import dynamic_quantize_input_reference

    rng = np.random.default_rng(5)
    cases = 0
    for x in _dynamic_inputs(rng):
        x = np.asarray(x, np.float32)
        for rr in (True, False):
            q, s, z = quantize_dynamic(x, reduce_range=rr)
            ref = dynamic_quantize_input_reference(x, rr)
            assert (s, z) == (ref.scale, ref.zero_point) and np.array_equal(q, ref.q)
            if x.size:
                ts, tz = torch._choose_qparams_per_tensor(torch.from_numpy(x), rr)
                assert (s, z) == (float(np.float32(ts)), tz), (x.shape, rr)
                tq = torch.quantize_per_tensor(torch.from_numpy(x), float(np.float32(ts)), tz,
                                               torch.quint8).int_repr().numpy()
                assert np.array_equal(q, tq)
            cases += 1
    assert cases > 100
    with pytest.raises(ValueError, match="finite"):
        quantize_dynamic(np.float32([1, np.nan]))
    with pytest.raises(ValueError, match="finite"):
        quantize_dynamic(np.float32([1, 2] * 40 + [-np.inf]))
    with pytest.raises(TypeError, match="real numbers"):
        quantize_dynamic(np.array(["a"]))


def test_swapped_dynamic_linear_equals_torch_on_many_inputs():
    """The swapped dynamic Linear (quantize_dynamic + float32 output fused into the GEMM) against
    PyTorch's on per-tensor and per-channel weights, with and without bias, ReLU fused, 2-D and
    3-D inputs, shapes that leave tails on every path."""
    import torch.ao.nn.intrinsic as nni

    from qkernels.torch import swap

    rng = np.random.default_rng(3)
    for per_channel in (False, True):
        for k, n, bias, relu in ((5, 3, True, False), (64, 70, False, False), (173, 150, True, True),
                                 (384, 1536, True, False)):
            torch.manual_seed(k + n)
            lin = torch.nn.Linear(k, n, bias=bias)
            net = torch.nn.Sequential(nni.LinearReLU(lin, torch.nn.ReLU()) if relu else lin).eval()
            from torch.ao.quantization import (default_dynamic_qconfig,
                                               per_channel_dynamic_qconfig, quantize_dynamic)
            qc = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
            q = quantize_dynamic(net, {torch.nn.Linear: qc, nni.LinearReLU: qc})
            for shape in ((1, k), (37, k), (2, 9, k)):
                x = torch.from_numpy((rng.standard_normal(shape) * rng.uniform(0.01, 10))
                                     .astype(np.float32))
                with torch.no_grad():
                    ref = q(x)
                    with swap(q, threads=2) as s:
                        got = q(x)
                assert len(s) == 1, (per_channel, k, n, relu, q)
                np.testing.assert_array_equal(got.numpy().view(np.int32), ref.numpy().view(np.int32))
