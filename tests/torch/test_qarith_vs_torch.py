"""quantize_model's concat and average pooling: the integer ops equal PyTorch's quantized ops
(torch.ops.quantized.cat, quantized avg_pool2d with the fbgemm engine) bit for bit, on random
quantized tensors and inside a quantized model."""
import itertools
import warnings

import numpy as np
import pytest

import qkernels as qk

torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")
pytest.importorskip("sklearn", reason="scikit-learn (the digits data) is a test requirement")

from qkernels.torch.qarith import QTensor, q_avg_pool2d, q_cat, torch_pool_vec_width  # noqa: E402
from qkernels.torch import QuantConfig, quantize_model  # noqa: E402
from qkernels.torch.reference_models import digits  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]
F = torch.nn.functional


@pytest.fixture(autouse=True)
def _fbgemm():
    torch.backends.quantized.engine = "fbgemm"
    torch.set_num_threads(1)


def _qt(t):
    return QTensor(t.int_repr().numpy(), t.q_scale(), t.q_zero_point())


def _random_q(rng, shape, dt):
    x = torch.from_numpy((rng.standard_normal(shape) * rng.uniform(0.1, 5)).astype(np.float32))
    zp = int(rng.integers(0, 256)) if dt == torch.quint8 else int(rng.integers(-128, 128))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.quantize_per_tensor(x, float(rng.uniform(0.001, 0.1)), zp, dt)


def test_q_cat_equals_torch_quantized_cat():
    rng = np.random.default_rng(1)
    mismatches = total = 0
    for t in range(200):
        dt = (torch.quint8, torch.qint8)[t % 2]
        dim = (1, 0, 3, -1)[t % 4]
        base = [2, 7, 3, 5]
        xs = []
        for _ in range(int(rng.integers(1, 4))):
            sh = list(base)
            sh[dim] = int(rng.integers(1, 30))
            xs.append(_random_q(rng, sh, dt))
        if t % 5 == 0:   # output parameters of one input: that input is copied
            s, z = xs[0].q_scale(), xs[0].q_zero_point()
        else:
            s = float(rng.uniform(0.001, 0.1))
            z = int(rng.integers(0, 256)) if dt == torch.quint8 else int(rng.integers(-128, 128))
        ref = torch.ops.quantized.cat(xs, dim, s, z).int_repr().numpy()
        got = q_cat([_qt(x) for x in xs], dim, s, z)
        assert got.q.dtype == ref.dtype and got.q.shape == ref.shape
        mismatches += int(np.sum(got.q != ref))
        total += ref.size
    assert total > 100_000
    assert mismatches == 0, f"{mismatches} of {total}"


def test_q_avg_pool2d_equals_torch_quantized_avg_pool2d():
    rng = np.random.default_rng(2)
    mismatches = total = cases = 0
    for k, s, p, ceil, cip, dt, div in itertools.product(
            (2, 3, (3, 2)), (None, 1, 2, (2, 1)), (0, 1), (False, True), (True, False),
            (torch.quint8, torch.qint8), (None, 5)):
        if max(np.atleast_1d(p)) > min(np.atleast_1d(k)) // 2:
            continue
        for shape in ((2, 3, 7, 9), (1, 4, 8, 8), (1, 1, 3, 4)):
            qx = _random_q(rng, shape, dt)
            for x in (qx, qx.contiguous(memory_format=torch.channels_last)):
                ref = F.avg_pool2d(x, k, s, p, ceil, cip, div).int_repr().numpy()
                got = q_avg_pool2d(_qt(qx), k, s, p, ceil, cip, div)
                assert got.q.shape == ref.shape and got.scale == qx.q_scale()
                mismatches += int(np.sum(got.q != ref))
                total += ref.size
                cases += 1
    assert cases > 500 and total > 100_000
    assert mismatches == 0, f"{mismatches} of {total}"
    with pytest.raises(ValueError, match="padding"):
        q_avg_pool2d(_qt(qx), 2, 2, 2)


class _CatPoolNet(torch.nn.Module):
    """Two branches concatenated, AvgPool2d (module) and F.avg_pool2d (function), a head."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(1, 6, 3, padding=1)
        self.relu = torch.nn.ReLU()
        self.b = torch.nn.Conv2d(1, 5, 1)
        self.pool = torch.nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        self.c = torch.nn.Conv2d(11, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8 * 3 * 3, 10)

    def forward(self, x):
        y = torch.cat([self.relu(self.a(x)), self.b(x)], 1)
        y = self.pool(y)                                   # 8x8 -> 4x4
        y = F.avg_pool2d(self.c(y), 3, 2, 1, ceil_mode=True)   # 4x4 -> 3x3
        return self.fc(torch.flatten(y, 1))


def test_model_with_cat_and_avg_pool(tmp_path):
    (xtr, _), (xte, _) = digits()
    torch.manual_seed(0)
    net = _CatPoolNet().eval()
    calib = [xtr[i:i + 64] for i in range(0, 512, 64)]
    # the branches with parameters of their own (each one's min / max over the calibration
    # batches), so that the cat requantizes them as quantized::cat does (calibrated, they would
    # share the cat's: tests/torch/test_quantize_shared_cat.py)
    own = {}
    with torch.no_grad():
        for name, f in (("a", lambda b: net.relu(net.a(b))), ("b", net.b)):
            y = torch.cat([f(torch.as_tensor(b)) for b in calib])
            p = qk.choose_qparams(np.float32(min(0.0, float(y.min()))),
                                  np.float32(max(0.0, float(y.max()))), dtype=np.uint8)
            own[name] = (float(np.asarray(p.scale).reshape(-1)[0]),
                         int(np.asarray(p.zero_point).reshape(-1)[0]))
    im = quantize_model(net, calib, fixed_qparams=own)
    x = xte[:64]
    # inside the model, cat / pools give exactly what PyTorch's quantized ops give on the same
    # integer inputs
    raw = im.intermediates(x)
    ops = {}
    for node in im.graph_module.graph.nodes:
        if node.op == "call_function" and node.target is torch.cat:
            ops["cat"] = node
        elif node.op == "call_function" and node.target is F.avg_pool2d:
            ops["fn_pool"] = node
        elif node.op == "call_module" and isinstance(im.graph_module.get_submodule(node.target),
                                                     torch.nn.AvgPool2d):
            ops["mod_pool"] = node
    assert set(ops) == {"cat", "fn_pool", "mod_pool"}

    def tq(v, channels_last=False):
        t = torch._make_per_tensor_quantized_tensor(torch.from_numpy(v.q), v.scale, v.zero_point)
        return t.contiguous(memory_format=torch.channels_last) if channels_last else t
    cat = ops["cat"]
    s, z = im.qparams[cat.name]
    ref = torch.ops.quantized.cat([tq(raw[a.name]) for a in cat.args[0]], 1, s, z)
    np.testing.assert_array_equal(raw[cat.name].q, ref.int_repr().numpy())
    assert raw[cat.args[0][0].name].scale != s      # the inputs were requantized
    # both pools read channels-last tensors in PyTorch's quantized model (a conv's output, and
    # quantized::cat of conv outputs), so PyTorch runs its NHWC kernel there, whose first
    # vec_width channels (8 with AVX2, 16 with AVX-512: torch_pool_vec_width) add the zero point
    # after rounding; the reference is that kernel on the same layout (an NCHW tensor would run
    # avg_pool2d_out_frame, which differs by one step on ties: 3% of these outputs on AVX2, none
    # on AVX-512 where the 11 and 8 channels are all in the tail)
    for n in ("mod_pool", "fn_pool"):
        layer = im.layers[ops[n].name]
        assert layer.channels_last and layer.vec_width == torch_pool_vec_width()
    ref = torch.nn.AvgPool2d(3, 2, 1, count_include_pad=False)(
        tq(raw[ops["mod_pool"].args[0].name], channels_last=True))
    np.testing.assert_array_equal(raw[ops["mod_pool"].name].q, ref.int_repr().numpy())
    ref = F.avg_pool2d(tq(raw[ops["fn_pool"].args[0].name], channels_last=True), 3, 2, 1,
                       ceil_mode=True)
    np.testing.assert_array_equal(raw[ops["fn_pool"].name].q, ref.int_repr().numpy())
    # integer vs float vs fake quant
    y, yf, yq = im(x), im.float_reference(x), im.fake_quant(x)
    assert np.mean(y.argmax(1) == yf.argmax(1)) > 0.9
    # end to end, the one-step differences of single layers propagate (measured: at most 3
    # output steps, 91% of outputs within one)
    step = im.qparams[next(reversed(im.qparams))][0]
    d = np.abs(y - yq) / step
    assert d.max() <= 4.01 and np.mean(d < 1.01) > 0.85, (d.max(), np.mean(d < 1.01))
    rep = {r.name: r for r in im.compare(x)}
    for n in ops.values():
        assert n.name in rep and rep[n.name].steps_diff_vs_fake_quant <= 1.0, rep.get(n.name)
        assert rep[n.name].cosine > 0.99
    paths = im.export(str(tmp_path), x[:2])
    import json
    report = json.load(open(tmp_path / "report.json"))
    assert ops["cat"].name in report["tensors"] and any(p.endswith("model.npz") for p in paths)
    from qkernels.io import read_array
    pool = report["layers"][ops["fn_pool"].name]
    assert pool["kind"] == "avg_pool2d" and pool["kernel"] == [3, 3] and pool["ceil_mode"]
    d = tmp_path / "layers" / ops["fn_pool"].name
    xin = read_array(str(d / "input.txt")).astype(raw[ops["fn_pool"].name].q.dtype)
    # the report says the layout and vector width PyTorch's kernel ran with (as above)
    assert pool["channels_last"] and pool["vec_width"] == torch_pool_vec_width()
    got = q_avg_pool2d(QTensor(xin, pool["out_scale"], pool["out_zero_point"]), 3, 2, 1, True,
                       channels_last=pool["channels_last"], vec_width=pool["vec_width"])
    np.testing.assert_array_equal(got.q, read_array(str(d / "output.txt")))
    c = report["layers"][ops["cat"].name]
    assert c["kind"] == "cat" and c["dim"] == 1 and "input1_scale" in c
    assert (tmp_path / "layers" / ops["cat"].name / "input1.txt").exists()


def test_pytorch_quantized_model_with_cat_and_avg_pool_runs_on_qkernels():
    """convert_fx of the same network (fbgemm: channels-last conv outputs, cat inputs sharing
    qparams, AvgPool2d module and avg_pool2d function) == from_torch_quantized, every element."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    from qkernels.torch import from_torch_quantized

    (xtr, _), (xte, _) = digits()
    torch.manual_seed(0)
    net = _CatPoolNet().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_fx(net, get_default_qconfig_mapping("fbgemm"), example_inputs=(xtr[:2],))
        with torch.no_grad():
            prepared(xtr[:512])
        q = convert_fx(prepared)
    with torch.no_grad():
        ref = q(xte).numpy()
    got = from_torch_quantized(q)(xte)
    np.testing.assert_array_equal(got.view(np.int32), ref.view(np.int32))


def test_avg_pool2d_qnnpack_equals_pytorch():
    """Engine "qnnpack": uint8 avg_pool2d without ceil_mode is QNNPACK's kernel (padding holds
    the zero point, divisor kh*kw whatever count_include_pad / divisor_override say, zero point
    subtracted before the float scale and RNE); q_avg_pool2d_qnnpack == PyTorch, every element,
    over kernels, strides, paddings, channel counts around the vector widths and zero points
    (ties fall differently from the fbgemm rounding)."""
    from qkernels.torch.qarith import QTensor, q_avg_pool2d_qnnpack

    rng = np.random.default_rng(3)
    torch.backends.quantized.engine = "qnnpack"
    n = 0
    try:
        for k, st, p in [(2, 2, 0), (3, 1, 1), (3, 2, 1), ((3, 2), (1, 2), (1, 0)), (5, 1, 2),
                         (2, 1, 0), (4, 4, 0)]:
            for c in (3, 8, 13, 64):
                for zp in (0, 37, 128, 255):
                    for cip, dov in ((True, None), (False, None), (True, 7)):
                        x = rng.integers(0, 256, (2, c, 9, 8)).astype(np.uint8)
                        qt = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), 0.0173, zp)
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            ref = F.avg_pool2d(qt, k, st, p, False, cip, dov).int_repr().numpy()
                        got = q_avg_pool2d_qnnpack(QTensor(x, 0.0173, zp), k, st, p, False, cip, dov)
                        np.testing.assert_array_equal(got.q, ref, err_msg=f"k={k} s={st} p={p} "
                                                      f"c={c} zp={zp} cip={cip} dov={dov}")
                        n += ref.size
    finally:
        torch.backends.quantized.engine = "fbgemm"
    assert n > 100_000


def test_from_torch_quantized_qnnpack_avg_pool_model():
    """A convert_fx model with AvgPool2d and F.avg_pool2d under the qnnpack engine: qkernels ==
    PyTorch on every output element."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    from qkernels.torch import from_torch_quantized

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 12, 3)
            self.pool = torch.nn.AvgPool2d(3, 1, 1)

        def forward(self, x):
            return torch.flatten(F.avg_pool2d(self.pool(self.conv(x)), 2), 1)

    net = Net().eval()
    x = torch.rand(16, 1, 10, 10) * 3 - 1
    torch.backends.quantized.engine = "qnnpack"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prepared = prepare_fx(net, get_default_qconfig_mapping("qnnpack"), example_inputs=(x,))
            prepared(x)
            q = convert_fx(prepared)
            with torch.no_grad():
                ref = q(x).numpy()
        got = from_torch_quantized(q, engine="qnnpack")(x.numpy())
        np.testing.assert_array_equal(got.view(np.int32), ref.view(np.int32))
    finally:
        torch.backends.quantized.engine = "fbgemm"
