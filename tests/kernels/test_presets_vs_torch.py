"""fbgemm and qnnpack presets == PyTorch's quantized Linear / Conv2d (and the ReLU-fused modules)
with torch.backends.quantized.engine = "fbgemm", "x86" and "qnnpack", every output element.

Activations are drawn as the default x86 qconfig produces them (reduce_range: uint8 values and
zero point in [0, 127]). On CPUs without AVX512-VNNI, FBGEMM adds pairs of uint8 x int8 products
with int16 saturation (vpmaddubsw); reduce_range keeps those sums exact, and so does qkernels
(SPEC section 5). Weights: int8, per-tensor (zero point 0 or not) or per-channel (symmetric, as
the default qconfig, or with zero points); bias float, as PyTorch stores it.
"""
import warnings

import numpy as np
import pytest

import qkernels

torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")
from torch.ao.nn import quantized as nnq  # noqa: E402
from torch.ao.nn.intrinsic import quantized as nniq  # noqa: E402

pytestmark = pytest.mark.torch

ENGINES = [e for e in ("fbgemm", "x86", "qnnpack") if e in torch.backends.quantized.supported_engines]
WEIGHTS = ["per_tensor", "per_tensor_zp", "per_channel", "per_channel_zp"]


def _weights(rng, shape, kind):
    o = shape[0]
    w = rng.integers(-128, 128, shape).astype(np.int8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind.startswith("per_tensor"):
            ws = float(np.float32(rng.uniform(0.001, 0.02)))
            wzp = int(rng.integers(-10, 10)) if kind.endswith("_zp") else 0
            qw = torch._make_per_tensor_quantized_tensor(torch.from_numpy(w), ws, wzp)
            return w, qw, np.float32(ws), wzp
        ws = rng.uniform(0.001, 0.02, o).astype(np.float32).astype(np.float64)
        wzp = rng.integers(-10, 10, o) if kind.endswith("_zp") else np.zeros(o, np.int64)
        qw = torch._make_per_channel_quantized_tensor(torch.from_numpy(w), torch.from_numpy(ws),
                                                      torch.from_numpy(wzp), 0)
        return w, qw, ws.astype(np.float32), wzp.astype(np.int32)


def _activations(rng, shape):
    x = rng.integers(0, 128, shape).astype(np.uint8)            # reduce_range
    xs = float(np.float32(rng.uniform(0.01, 0.1)))
    xzp = int(rng.integers(0, 128))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), xs, xzp)
    return x, qx, xs, xzp


def _preset(engine):
    return "qnnpack" if engine == "qnnpack" else "fbgemm"


LINEAR_SHAPES = [(1, 1, 1), (7, 1, 5), (1, 33, 17), (7, 129, 63), (1, 384, 97), (7, 4100, 9)]


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
@pytest.mark.parametrize("kind", WEIGHTS)
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("m,k,n", LINEAR_SHAPES)
def test_linear_matches_torch(engine, kind, relu, m, k, n):
    rng = np.random.default_rng(m * 7919 + k * 31 + n)
    x, qx, xs, xzp = _activations(rng, (m, k))
    w, qw, ws, wzp = _weights(rng, (n, k), kind)
    b = rng.normal(0, 0.5, n).astype(np.float32)
    os_ = float(np.float32(rng.uniform(0.02, 0.2) * np.sqrt(k) / 4))
    ozp = int(rng.integers(0, 256))
    mod = (nniq.LinearReLU if relu else nnq.Linear)(k, n, dtype=torch.qint8)
    mod.set_weight_bias(qw, torch.from_numpy(b))
    mod.scale, mod.zero_point = os_, ozp
    ref = mod(qx).int_repr().numpy()
    got = qkernels.qlinear(x, w, b, x_scale=xs, x_zero_point=xzp, w_scale=ws, w_zero_point=wzp,
                           out_scale=os_, out_zero_point=ozp, preset=_preset(engine),
                           act_min=ozp if relu else None)
    np.testing.assert_array_equal(got, ref)


# (batch, in_c, h, w, out_c, k, stride, padding, dilation, groups)
CONV_SHAPES = [
    (1, 8, 10, 11, 16, 1, 1, 0, 1, 1),
    (7, 6, 9, 9, 5, 3, 1, 1, 1, 1),
    (1, 3, 20, 19, 8, 7, 2, 3, 1, 1),
    (1, 8, 14, 14, 6, 5, 2, 2, 1, 2),
    (1, 16, 12, 12, 16, 3, 1, 1, 1, 16),     # depthwise
    (7, 12, 9, 10, 12, 3, 2, 1, 1, 12),      # depthwise stride 2, batch 7
    (1, 8, 13, 13, 8, 3, 1, 2, 2, 1),        # dilation 2
    (1, 6, 11, 11, 9, 5, 1, 0, 2, 3),
    (1, 8, 5, 45, 20, 3, 1, 1, 1, 1),        # output rows of 45: tiles cross rows
    (2, 6, 7, 70, 12, 3, 2, 1, 1, 2),        # stride 2, output width 35
]


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
@pytest.mark.parametrize("kind", WEIGHTS)
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("shape", CONV_SHAPES)
def test_conv2d_matches_torch(engine, kind, relu, shape):
    bn, ci, h, wd, co, k, s, p, d, g = shape
    rng = np.random.default_rng(ci * 1009 + co * 17 + k + s + g)
    x, qx, xs, xzp = _activations(rng, (bn, ci, h, wd))
    w, qw, ws, wzp = _weights(rng, (co, ci // g, k, k), kind)
    b = rng.normal(0, 0.5, co).astype(np.float32)
    os_ = float(np.float32(rng.uniform(0.02, 0.2) * np.sqrt(ci // g * k * k) / 4))
    ozp = int(rng.integers(0, 256))
    mod = (nniq.ConvReLU2d if relu else nnq.Conv2d)(ci, co, k, stride=s, padding=p, dilation=d,
                                                    groups=g)
    mod.set_weight_bias(qw, torch.from_numpy(b))
    mod.scale, mod.zero_point = os_, ozp
    ref = mod(qx).int_repr().numpy()
    got = qkernels.qconv2d(x, w, b, stride=s, padding=p, dilation=d, groups=g, x_scale=xs,
                           x_zero_point=xzp, w_scale=ws, w_zero_point=wzp, out_scale=os_,
                           out_zero_point=ozp, preset=_preset(engine), act_min=ozp if relu else None)
    np.testing.assert_array_equal(got, ref)


# Cases where FBGEMM's two float-bias formulas give different outputs (found by a search over
# random scales): per-tensor weights use bias * fl(1.0 / (double)fl(x_s * w_s)), per-channel
# weights divide, bias / fl(x_s * w_s[o]) (SPEC section 5). With x == x_zero_point the integer
# sum is 0 and the output is RNE(fl(fl(0 + b') * scale)) + out_zp.
BIAS_CASES = [  # (per_channel, x_scale, w_scale, out_scale, bias, reciprocal result, division result)
    (False, 0.09836346, 0.012922362, 0.086578086, -0.47617948, 123, 122),
    (False, 0.045102563, 0.0006650685, 0.0688069, -2.9242933, 85, 86),
    (True, 0.06402954, 0.0128462985, 0.13158517, 1.907985, 142, 143),
    (True, 0.08625077, 0.005860475, 0.36543763, 5.2988453, 143, 142),
    (True, 0.034910273, 0.011415592, 0.2836307, -4.9635367, 111, 110),
]


@pytest.mark.parametrize("engine", [e for e in ("fbgemm", "x86") if e in ENGINES], indirect=True)
@pytest.mark.parametrize("case", BIAS_CASES)
def test_fbgemm_float_bias_reciprocal_vs_division(engine, case):
    per_channel, xs, ws, os_, b, by_rcp, by_div = case
    xs, ws, os_, b = (np.float32(v) for v in (xs, ws, os_, b))
    xw = np.float32(xs * ws)
    scale = np.float32(xw / os_)
    rcp = np.float32(np.float32(b * np.float32(1.0 / np.float64(xw))) * scale)
    div = np.float32(np.float32(b / xw) * scale)
    assert (int(np.rint(rcp)) + 128, int(np.rint(div)) + 128) == (by_rcp, by_div)  # discriminating
    x = np.full((1, 4), 10, np.uint8)
    w = np.zeros((1, 4), np.int8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if per_channel:
            qw = torch._make_per_channel_quantized_tensor(
                torch.from_numpy(w), torch.tensor([float(ws)], dtype=torch.float64),
                torch.zeros(1, dtype=torch.int64), 0)
        else:
            qw = torch._make_per_tensor_quantized_tensor(torch.from_numpy(w), float(ws), 0)
        qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), float(xs), 10)
    mod = nnq.Linear(4, 1, dtype=torch.qint8)
    mod.set_weight_bias(qw, torch.tensor([float(b)]))
    mod.scale, mod.zero_point = float(os_), 128
    ref = int(mod(qx).int_repr()[0, 0])
    assert ref == (by_div if per_channel else by_rcp)
    got = qkernels.qlinear(x, w, np.array([b], np.float32), x_scale=xs, x_zero_point=10,
                           w_scale=np.array([ws]) if per_channel else ws, out_scale=os_,
                           out_zero_point=128, preset="fbgemm")
    assert int(got[0, 0]) == ref
