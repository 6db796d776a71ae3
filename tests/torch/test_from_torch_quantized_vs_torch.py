"""from_torch_quantized: a model quantized by PyTorch (fbgemm), run on qkernels, gives PyTorch's
quantized output element for element, and the integers between layers match too."""
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")
pytest.importorskip("sklearn", reason="scikit-learn (the digits data) is a test requirement")

from qkernels.torch import from_torch_quantized  # noqa: E402
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
    # compare() against PyTorch's own quantized run: 0 steps apart at every layer
    rows = im.compare(xte[:64])
    assert rows and all(r.steps_diff_vs_fake_quant == 0 for r in rows), rows
    # pickled (without PyTorch's graph, which does not pickle): the same outputs
    import pickle
    again = pickle.loads(pickle.dumps(im))
    np.testing.assert_array_equal(again(xte.numpy()).view(np.int32), ref.view(np.int32))


def test_unsupported_module_is_named():
    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3)
            self.act = torch.nn.ELU()   # quantized by the default mapping; no integer op here

        def forward(self, x):
            return self.act(self.conv(x))

    x = torch.rand(8, 1, 8, 8)
    q = _quantize_fx(Odd().eval(), x)
    with pytest.raises(NotImplementedError, match="act.*ELU.*keep it in float"):
        from_torch_quantized(q)


def test_float_layers_between_dequantize_and_quantize_run_in_float():
    """A layer the user keeps in float (qconfig None: convert_fx puts dequantize before it and
    quantize_per_tensor after it) runs in float on qkernels too; the output equals PyTorch's."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(1, 6, 3, padding=1)
            self.act = torch.nn.GELU()
            self.conv2 = torch.nn.Conv2d(6, 4, 3)
            self.fc = torch.nn.Linear(4 * 6 * 6, 10)

        def forward(self, x):
            return self.fc(torch.flatten(self.conv2(self.act(self.conv1(x))), 1))

    torch.manual_seed(1)
    x = torch.rand(32, 1, 8, 8) * 2 - 1
    mapping = get_default_qconfig_mapping("fbgemm").set_object_type(torch.nn.GELU, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_fx(Net().eval(), mapping, example_inputs=(x,))
        prepared(x)
        q = convert_fx(prepared)
    assert "dequantize" in q.code and "act" in q.code
    with torch.no_grad():
        ref = q(x).numpy()
    got = from_torch_quantized(q)(x.numpy())
    np.testing.assert_array_equal(got.view(np.int32), ref.view(np.int32))


class _EagerNet(torch.nn.Module):
    """The eager-mode recipe: QuantStub, fused conv-bn-relu, FloatFunctional add, DeQuantStub."""

    def __init__(self):
        super().__init__()
        from torch.ao.quantization import DeQuantStub, QuantStub

        self.quant = QuantStub()
        self.conv1 = torch.nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.relu1 = torch.nn.ReLU()
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.skip = torch.nn.quantized.FloatFunctional()
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.flat = torch.nn.Flatten()
        self.fc = torch.nn.Linear(8, 10)
        self.relu2 = torch.nn.ReLU()
        self.dequant = DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        y = self.relu1(self.bn1(self.conv1(x)))
        y = self.skip.add_relu(y, self.conv2(y))
        return self.dequant(self.relu2(self.fc(self.flat(self.pool(y)))))


def test_eager_converted_model_equals_pytorch(data):
    from torch.ao.quantization import convert, fuse_modules, get_default_qconfig, prepare

    torch.backends.quantized.engine = "fbgemm"
    torch.set_num_threads(1)
    (xtr, _), (xte, _) = data
    torch.manual_seed(0)
    net = _EagerNet().eval()
    with torch.no_grad():
        net.bn1.running_mean.uniform_(-0.2, 0.2)
        net.bn1.running_var.uniform_(0.5, 2.0)
    net = fuse_modules(net, [["conv1", "bn1", "relu1"], ["fc", "relu2"]])
    net.qconfig = get_default_qconfig("fbgemm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare(net)
        with torch.no_grad():
            prepared(xtr[:512])
        q = convert(prepared)
    with torch.no_grad():
        ref = q(xte).numpy()
    got = from_torch_quantized(q)(xte)
    np.testing.assert_array_equal(got.view(np.int32), ref.view(np.int32))


@pytest.mark.parametrize("per_channel", [False, True])
def test_dynamic_linear_equals_quantize_dynamic(data, per_channel):
    """quantize_dynamic (fbgemm): activations quantized per call, float output, bit for bit."""
    from torch.ao.quantization import (default_dynamic_qconfig, per_channel_dynamic_qconfig,
                                       quantize_dynamic)

    torch.backends.quantized.engine = "fbgemm"
    torch.set_num_threads(1)
    qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
    (_, _), (xte, yte) = data
    q = quantize_dynamic(load("mlp"), {torch.nn.Linear: qconfig}, dtype=torch.qint8)
    im = from_torch_quantized(q)
    for batch in (xte[:1], xte[:7], xte):
        with torch.no_grad():
            ref = q(batch).numpy()
        got = im(batch)
        np.testing.assert_array_equal(got.view(np.int32), ref.view(np.int32))
    # random layers: odd shapes, tiny ranges (the 6.1e-5 scale floor), all-positive inputs
    rng = np.random.default_rng(5)
    for k, n, m, mag in ((1, 1, 1, 1.0), (33, 17, 5, 1e-4), (129, 63, 7, 3.0), (4100, 9, 2, 0.5)):
        lin = torch.nn.Sequential(torch.nn.Linear(k, n), torch.nn.ReLU())
        qd = quantize_dynamic(lin, {torch.nn.Linear: qconfig}, dtype=torch.qint8)
        x = (rng.standard_normal((m, k)) * mag).astype(np.float32)
        for xi in (x, np.abs(x)):
            with torch.no_grad():
                ref = qd(torch.from_numpy(xi)).numpy()
            np.testing.assert_array_equal(from_torch_quantized(qd)(xi).view(np.int32), ref.view(np.int32))


def _contiguous_before_clamps(gm):
    """Insert ``.contiguous()`` before each ReLU6/Hardtanh module of a converted FX model.

    Works around a PyTorch bug (seen in 2.13, engine "qnnpack"): the quantized conv returns a
    channels-last tensor, and the quantized ReLU6/hardtanh on it returns the clamped bytes in
    memory (NHWC) order under NCHW strides, so values land in the wrong positions (the same
    clamp on ``.contiguous()`` input is right). qkernels computes what the model means; with the
    workaround PyTorch does too, and the two agree element for element."""
    g = gm.graph
    for node in list(g.nodes):
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target),
                                                   (torch.nn.ReLU6, torch.nn.Hardtanh)):
            with g.inserting_before(node):
                c = g.call_method("contiguous", (node.args[0],))
            node.replace_input_with(node.args[0], c)
    gm.recompile()
    return gm


@pytest.mark.parametrize("name", list(MODELS))
def test_reference_model_equals_pytorch_qnnpack(data, name):
    """engine="qnnpack": conv/linear through the qnnpack preset (int32 bias, its requant scale),
    average pooling through QNNPACK's zero-point-first rounding; every output element equal."""
    torch.backends.quantized.engine = "qnnpack"
    try:
        (xtr, _), (xte, yte) = data
        q = _contiguous_before_clamps(_quantize_fx(load(name), xtr[:512], engine="qnnpack"))
        with torch.no_grad():
            ref = q(xte).numpy()
        got = from_torch_quantized(q, engine="qnnpack")(xte)
        np.testing.assert_array_equal(got.view(np.int32), ref.view(np.int32))
        assert float(np.mean(got.argmax(1) == yte.numpy())) > 0.9
    finally:
        torch.backends.quantized.engine = "fbgemm"
    with pytest.raises(ValueError, match="engine"):
        from_torch_quantized(q, engine="tensorrt")


_POOL_CASES = [((2, 2), 1), ((4, 4), 1), ((6, 6), 2), ((3, 3), 1), ((6, 9), (2, 3)),
               ((7, 7), 1), ((8, 8), (2, 4)), ((4, 4), 4), ((12, 12), (4, 3)), ((5, 7), (2, 3))]


@pytest.mark.parametrize("engine", ["fbgemm", "qnnpack"])
def test_adaptive_avg_pool2d_equals_pytorch(engine):
    """AdaptiveAvgPool2d == PyTorch's quantized kernel of each engine, every element: windows of
    1 to 49 values (power-of-two and not, uneven windows), channel counts around the vector
    width, zero points 0..255 (ties round differently per path), NCHW and channels-last input."""
    from qkernels.torch.qarith import (QTensor, q_adaptive_avg_pool2d,
                                        q_adaptive_avg_pool2d_qnnpack)
    rng = np.random.default_rng(11)
    torch.backends.quantized.engine = engine
    n = 0
    try:
        for (h, w), out in _POOL_CASES:
            for c in (3, 8, 13, 64):
                for zp in (0, 37, 128, 255):
                    x = rng.integers(0, 256, (4, c, h, w)).astype(np.uint8)
                    s = float(rng.choice([0.05, 0.0173, 1.7]))
                    qt = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), s, zp)
                    for cl in (False, True):
                        qi = qt.contiguous(memory_format=torch.channels_last) if cl else qt
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            ref = torch.nn.functional.adaptive_avg_pool2d(qi, out).int_repr().numpy()
                        if engine == "qnnpack":
                            got = q_adaptive_avg_pool2d_qnnpack(QTensor(x, s, zp), out,
                                                                channels_last=cl)
                        else:
                            got = q_adaptive_avg_pool2d(QTensor(x, s, zp), out, channels_last=cl)
                        np.testing.assert_array_equal(got.q, ref, err_msg=f"{h}x{w}->{out} "
                                                      f"c={c} zp={zp} channels_last={cl}")
                        n += ref.size
    finally:
        torch.backends.quantized.engine = "fbgemm"
    assert n > 50_000
