"""quantize_model with a TFLite preset: every layer of a whole CNN computes TFLite's integers.

Four small CNNs (a plain conv net; a depthwise-separable net with average pooling and softmax; a
residual net with ADD; a net with concatenation, sigmoid, hardswish, tanh and MUL) are quantized
with ``preset="tflite"`` (LiteRT's reference kernels), ``"tflite_xnnpack"`` and
``"tflite_optimized"``. Each layer's integer output is compared, with ``==`` on every element,
to the TFLite op it stands for, computed here from the integers the layer was fed and the scales
of the graph: ``qkernels.tflite_ops`` (each op checked against LiteRT's interpreter in
test_tflite_vs_tflite.py) and ``qconv2d`` / ``qlinear`` with the preset. Then each layer is
written as a .tflite model of its TFLite op (tests/_tflite_writer.py) from the layer's own
quantization parameters and constants, and LiteRT's interpreter runs it on the integers the layer
was fed, with the preset's runtime (reference kernels, XNNPACK, optimized built-ins): == on every
element (the other runtime differs on hundreds). PyTorch's arithmetic for the same layers differs
too (the choice of arithmetic is visible).
"""
import numpy as np
import pytest

import qkernels as qk
from qkernels import tflite_ops as T

torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")
nn = torch.nn

from qkernels.torch import QuantConfig, TensorConfig, quantize_model  # noqa: E402
from qkernels.torch import layers as Ly  # noqa: E402
from qkernels.torch import qarith as qa  # noqa: E402

pytestmark = [pytest.mark.torch]

PRESETS = ("tflite", "tflite_xnnpack", "tflite_optimized")
RUNTIME = {"tflite": "reference", "tflite_xnnpack": "xnnpack", "tflite_optimized": "optimized"}


def config(preset):
    """TFLite's int8 scheme: asymmetric int8 activations, symmetric per-channel int8 weights."""
    return QuantConfig(weight=TensorConfig(bits=8, symmetric=True, per_channel=True, signed=True),
                       activation=TensorConfig(bits=8, signed=True), preset=preset)


class Plain(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.relu6 = nn.ReLU6()
        self.pool2 = nn.MaxPool2d(3, stride=1, padding=1)
        self.fc = nn.Linear(16 * 8 * 8, 10)

    def forward(self, x):
        y = self.pool1(self.relu(self.conv1(x)))
        y = self.pool2(self.relu6(self.conv2(y)))
        return self.fc(torch.flatten(y, 1))


class Separable(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 2, stride=2)
        self.relu6a = nn.ReLU6()
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.relu6b = nn.ReLU6()
        self.pw = nn.Conv2d(16, 32, 1)
        self.avg = nn.AvgPool2d(2)
        self.avg_same = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x):
        y = self.relu6b(self.dw(self.relu6a(self.stem(x))))
        y = self.avg_same(self.avg(self.pw(y)))
        return self.softmax(self.fc(torch.flatten(self.gap(y), 1)))


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        a = self.relu(self.conv1(x))
        y = self.relu2(a + self.conv2(a))
        y = torch.add(y, self.conv3(y))
        return self.fc(y.mean((2, 3)))


class Mixed(nn.Module):
    """Concatenation (inputs of other ranges), sigmoid, MUL, hardswish, tanh."""

    def __init__(self):
        super().__init__()
        self.conv_a = nn.Conv2d(3, 8, 3, padding=1)
        self.conv_b = nn.Conv2d(3, 8, 5, padding=2)
        self.hswish = nn.Hardswish()
        self.conv_c = nn.Conv2d(16, 8, 2, stride=2)
        self.sigmoid = nn.Sigmoid()
        self.tanh = nn.Tanh()
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        y = torch.cat([self.conv_a(x), self.conv_b(x)], dim=1)   # other scales
        y = self.conv_c(self.hswish(y))
        y = self.tanh(y) * self.sigmoid(y)
        return self.fc(y.flatten(1))


MODELS = {"plain": Plain, "separable": Separable, "residual": Residual, "mixed": Mixed}


def _calib(seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(16, 3, 16, 16, generator=g) * 2 for _ in range(4)]


def build(name, preset, fixed=None):
    torch.manual_seed(list(MODELS).index(name))
    model = MODELS[name]().eval()
    with torch.no_grad():        # the scale of the model's weights, not of init
        for p in model.parameters():
            p.mul_(2.0)
    im = quantize_model(model, _calib(1), config=config(preset), fixed_qparams=fixed)
    return model, im


def expected(L, ins, out, preset, mod):
    """The TFLite op of layer L on the integers ``ins`` (QTensors) it was fed, its output
    parameters ``out`` (scale, zero point) taken from the run: computed here, not by L."""
    if isinstance(L, Ly.TFLiteInputLayer):
        return None                      # checked by test_input_quantize_is_the_runtimes
    rt = RUNTIME[preset]
    s, z = out
    q = [v.q for v in ins]
    if isinstance(L, (Ly.Conv2dLayer, Ly.LinearLayer)) and L.act_min not in (None, -128):
        assert L.act_min == T.quantize_bound(0.0, s, z)       # a fused ReLU: TFLite's bound
    if isinstance(L, Ly.Conv2dLayer):
        return qk.qconv2d(q[0], L.packed, L.bias, stride=L.stride, padding=L.padding,
                          dilation=L.dilation, groups=L.groups, x_scale=ins[0].scale,
                          x_zero_point=ins[0].zero_point, w_scale=L.w_scale, out_scale=s,
                          out_zero_point=z, preset=preset, act_min=L.act_min, act_max=L.act_max)
    if isinstance(L, Ly.LinearLayer):
        return qk.qlinear(q[0], L.packed, L.bias, x_scale=ins[0].scale,
                          x_zero_point=ins[0].zero_point, w_scale=L.w_scale, out_scale=s,
                          out_zero_point=z, preset=preset, act_min=L.act_min, act_max=L.act_max)
    if isinstance(L, Ly.ClampLayer):
        act = "RELU6" if isinstance(mod, nn.ReLU6) else "RELU"
        assert isinstance(mod, (nn.ReLU, nn.ReLU6))
        lo, hi = T.activation_range(act, s, z, np.int8)
        return np.clip(q[0], lo, hi).astype(np.int8)
    if isinstance(L, Ly.TFLitePool2dLayer):
        k, st, p = mod.kernel_size, mod.stride, mod.padding
        k, st, p = ((v, v) if isinstance(v, int) else tuple(v) for v in (k, st, p))
        assert (s, z) == (ins[0].scale, ins[0].zero_point)
        f = T.avg_pool2d if isinstance(mod, nn.AvgPool2d) else T.max_pool2d
        return f(q[0], k, st, (p[0], p[1], p[0], p[1]))
    if isinstance(L, Ly.TFLiteMeanLayer):
        x = ins[0]
        if rt == "xnnpack":
            return T.xnn_mean(q[0], (2, 3), x.scale, x.zero_point, s, z, keepdims=L.keepdims)
        return T.mean(q[0], (2, 3), T.mean_params(x.scale, x.zero_point, s, z), L.keepdims)
    if isinstance(L, Ly.TFLiteSoftmaxLayer):
        assert (s, z) == (1 / 256, -128)
        if rt == "reference":
            return T.softmax(q[0], T.softmax_params(1.0, ins[0].scale))
        return T.softmax_optimized(q[0], ins[0].scale)
    if isinstance(L, Ly.TFLiteAddLayer):
        a, b = ins
        args = (a.scale, a.zero_point, b.scale, b.zero_point, s, z)
        if L.kind == "add":
            return T.xnn_add(q[0], q[1], *args) if rt == "xnnpack" else \
                T.add(q[0], q[1], T.add_params(*args))
        return T.xnn_mul(q[0], q[1], *args) if rt == "xnnpack" else \
            T.mul(q[0], q[1], T.mul_params(*args))
    if isinstance(L, Ly.TFLiteConcatLayer):
        return np.concatenate([T.requantize(v.q, v.scale, v.zero_point, s, z) for v in ins],
                              axis=1)
    if isinstance(L, Ly.LookupLayer):
        x = ins[0]
        if isinstance(mod, nn.Sigmoid):
            assert (s, z) == (1 / 256, -128)
            table = T.logistic_table(x.scale, x.zero_point, s, z)
        elif isinstance(mod, nn.Tanh):
            assert (s, z) == (1 / 128, 0)
            table = T.tanh_table(x.scale, x.zero_point, s, z)
        else:
            assert isinstance(mod, nn.Hardswish)
            table = T.hard_swish_table(x.scale, x.zero_point, s, z)
        return table[q[0].astype(np.int64) + 128]
    if isinstance(L, Ly.FlattenLayer):
        return q[0].reshape(q[0].shape[0], -1)
    raise AssertionError(f"layer {L.name} ({type(L).__name__}) is not a TFLite op")


def _module(model, name):
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


def check_every_layer(model, im, preset, x):
    r = im.intermediates(x)
    kinds = set()
    elements = 0
    for name, L in im.layers.items():
        y = r[name]
        ins = [r[i] for i in L.inputs if i in r]
        want = expected(L, ins, (y.scale, y.zero_point), preset, _module(model, name))
        if want is None:
            continue
        assert y.q.dtype == np.int8 and want.shape == y.q.shape, name
        bad = int((y.q != want).sum())
        assert bad == 0, f"{preset} {name} ({type(L).__name__}): {bad} of {want.size} differ"
        kinds.add(type(L).__name__)
        elements += want.size
    return kinds, elements


def _x(n=64, seed=7):
    return torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("name", ["plain", "separable", "residual"])
def test_every_layer_is_the_tflite_op(name, preset):
    model, im = build(name, preset)
    kinds, n = check_every_layer(model, im, preset, _x())
    want = {"plain": {"Conv2dLayer", "ClampLayer", "TFLitePool2dLayer", "LinearLayer",
                      "FlattenLayer"},
            "separable": {"Conv2dLayer", "TFLitePool2dLayer", "TFLiteMeanLayer", "LinearLayer",
                          "TFLiteSoftmaxLayer"},
            "residual": {"Conv2dLayer", "TFLiteAddLayer", "TFLiteMeanLayer", "LinearLayer"}}
    assert want[name] <= kinds, kinds
    assert n > 20_000


def _own_qparams():
    """Parameters of their own for the concatenation's inputs (min / max of each conv's output
    on the calibration batches, int8), given as fixed_qparams so that it requantizes them
    (quantize_model's calibration otherwise gives them the concatenation's, as TFLite's converter
    does)."""
    torch.manual_seed(list(MODELS).index("mixed"))
    model = Mixed().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)
        out = {}
        for n in ("conv_a", "conv_b"):
            y = torch.cat([getattr(model, n)(b) for b in _calib(1)])
            p = qk.choose_qparams(np.float32(min(0.0, float(y.min()))),
                                  np.float32(max(0.0, float(y.max()))), dtype=np.int8)
            out[n] = (float(np.asarray(p.scale).reshape(-1)[0]),
                      int(np.asarray(p.zero_point).reshape(-1)[0]))
    assert out["conv_a"] != out["conv_b"]
    return out


@pytest.mark.parametrize("preset", PRESETS)
def test_mixed_every_layer_is_the_tflite_op(preset):
    """Calibrated as TFLite's converter does, the concatenation's inputs carry its parameters:
    nothing to requantize, with every runtime."""
    model, im = build("mixed", preset)
    kinds, n = check_every_layer(model, im, preset, _x())
    assert {"TFLiteConcatLayer", "LookupLayer", "TFLiteAddLayer", "Conv2dLayer",
            "LinearLayer"} <= kinds, kinds
    cat = im.layers["cat"]
    assert all((m.scale, m.zero_point) == (cat.out.scale, cat.out.zero_point)
               for m in cat.in_metas)
    assert {L.function for L in im.layers.values() if isinstance(L, Ly.LookupLayer)} == \
        {"tflite hard_swish", "tflite logistic", "tflite tanh"}


def test_mixed_requantized_concat_is_the_tflite_op():
    """Inputs with parameters of their own: the reference kernels' CONCATENATION requantizes
    them (an integer QUANTIZE each), element for element."""
    model, im = build("mixed", "tflite", _own_qparams())
    kinds, n = check_every_layer(model, im, "tflite", _x())
    assert "TFLiteConcatLayer" in kinds
    cat = im.layers["cat"]
    requantized = [m for m in cat.in_metas if (m.scale, m.zero_point) !=
                   (cat.out.scale, cat.out.zero_point)]
    assert len(requantized) == 2


def test_mixed_requantized_concat_refused_where_not_reproduced():
    with pytest.raises(NotImplementedError, match="concatenation cat .*reference kernels only"):
        build("mixed", "tflite_xnnpack", _own_qparams())


@pytest.mark.parametrize("preset", PRESETS)
def test_input_quantize_is_the_runtimes(preset):
    """The model input is quantized as the runtime's QUANTIZE: half away from zero of x / s
    (reference kernels), half to even of x * fl(1/s) (XNNPACK, optimized built-ins)."""
    _, im = build("plain", preset)
    L = im.layers["x"]
    s, z = L.out.scale, L.out.zero_point
    k = torch.arange(-300, 300, dtype=torch.float32)
    x = ((k + 0.5) * np.float32(s)).reshape(1, 1, 1, -1).repeat(1, 3, 16, 1)[..., :16]
    q = im.intermediates(x)["x"].q
    flavor = "tflite" if preset == "tflite" else "pt2e"
    assert np.array_equal(q, qk.quantize(x.numpy(), np.float32(s), z, dtype=np.int8,
                                         flavor=flavor))


def test_the_arithmetic_differs_from_pytorchs():
    """The same average pooling with PyTorch's quantized arithmetic (round half to even) gives
    other integers than TFLite's (half away from zero): the layers are TFLite's. (ADD with
    these random scales rounds the same in both on every element; ties tell them apart.)"""
    _, im = build("separable", "tflite")
    r = im.intermediates(_x())
    xin = r[im.layers["avg"].inputs[0]]
    torch_avg = qa.q_avg_pool2d(xin, 2).q
    assert int((torch_avg != r["avg"].q).sum()) > 100


def test_tflite_only_ops_refused_with_other_presets():
    """Softmax has an integer form with the TFLite presets only; sigmoid and tanh are TFLite's
    LOGISTIC / TANH (fixed output scales) with a TFLite preset and tables of the float op with
    the others."""
    with pytest.raises(NotImplementedError, match="softmax.*TFLite presets only"):
        quantize_model(Separable().eval(), _calib(1), config=QuantConfig(preset="fbgemm"))
    im = quantize_model(Mixed().eval(), _calib(1), config=QuantConfig(preset="fbgemm"))
    _, tf = build("mixed", "tflite")
    for name in ("sigmoid", "tanh"):
        assert not im.layers[name].function.startswith("tflite")
        assert tf.layers[name].function.startswith("tflite")
    assert tf.layers["sigmoid"].out.scale == 1 / 256 and tf.layers["sigmoid"].out.zero_point == -128


def test_pooling_tflite_cannot_express_is_refused():
    class P(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.pool = nn.AvgPool2d(3, stride=1, padding=1)   # count_include_pad=True

        def forward(self, x):
            return self.pool(self.conv(x))
    with pytest.raises(NotImplementedError, match="AVERAGE_POOL_2D divides"):
        quantize_model(P().eval(), _calib(1), config=config("tflite"))


@pytest.mark.parametrize("preset", PRESETS)
def test_export_and_load_keep_the_integers(tmp_path, preset):
    model, im = build("separable", preset)
    x = _x(4)
    out = tmp_path / "m"
    im.export(str(out), x)
    from qkernels.torch import IntegerModel
    im2 = IntegerModel.load(str(out))
    a, b = im.intermediates(x), im2.intermediates(x)
    for name in im.layers:
        assert np.array_equal(a[name].q, b[name].q), name
    # the export says which layers the C library computes and which it holds goldens of only
    import json
    rep = json.loads((out / "report.json").read_text())["c_library"]
    assert set(rep["computed"]) == {"stem", "dw", "pw", "fc"}
    assert rep["golden_only"]["softmax"] == "tflite_softmax"
    assert rep["golden_only"]["gap"] == "tflite_mean"
    readme = (out / "README.md").read_text()
    assert "| softmax | tflite_softmax | fc | 4x10 | golden only |" in readme
    assert "no kernel for the other" in readme


def test_optimized_kept_dims_mean_refused():
    """LiteRT's optimized built-ins have their own kernel for a kept-dims MEAN over H and W (it
    differed from the reference kernel on 2,331 of 12,800 elements, measured); qkernels builds
    MEAN without keep_dims plus a reshape for them, and refuses to claim that kernel."""
    from qkernels.torch._runtime import QMeta
    m = QMeta(0.1, 0, np.dtype(np.int8))
    with pytest.raises(NotImplementedError, match="keep_dims .*not reproduced"):
        Ly.TFLiteMeanLayer("gap", ("x",), m, x=m, axes=(2, 3), keepdims=True,
                           runtime="optimized")
    L = Ly.TFLiteMeanLayer("gap", ("x",), m, x=m, axes=(2, 3), keepdims=True,
                           runtime="optimized", op_keep_dims=False)
    assert L.kernel()(1, np.zeros((2, 3, 4, 4), np.int8)).shape == (2, 3, 1, 1)


# ---- the same layers in LiteRT's interpreter ---------------------------------------------------
RESOLVER = {"tflite": "ref", "tflite_xnnpack": "xnn", "tflite_optimized": "opt"}


def _nhwc(a):
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)) if a.ndim == 4 else a


def _act(L, s, z):
    """The fused activation whose TFLite range is L's clamp, or None."""
    lo, hi = L.act_min, L.act_max
    for act in ("NONE", "RELU", "RELU6"):
        if (lo if lo is not None else -128, hi if hi is not None else 127) == \
                T.activation_range(act, s, z, np.int8):
            return act
    return None


def _padding(h, w, kh, kw, stride, pad_tlbr):
    if tuple(pad_tlbr) == (0, 0, 0, 0):
        return "VALID"
    pt, pb, _ = T.same_padding(h, kh, stride[0])
    pl, pr, _ = T.same_padding(w, kw, stride[1])
    return "SAME" if (pt, pl, pb, pr) == tuple(pad_tlbr) else None


def single_op_model(L, ins, y):
    """(a .tflite model of the TFLite op(s) layer L stands for, built from L's quantization
    parameters and constants; its int8 (or float) inputs in TFLite's layout), or None where
    TFLite has no such op (explicit padding other than SAME / VALID, the flatten)."""
    from _tflite_writer import Op, Tensor, write_model
    s, z = y.scale, y.zero_point
    shp = list(_nhwc(y.q).shape)

    def act_t(v):
        return Tensor(list(_nhwc(v.q).shape), "int8", v.scale, v.zero_point)
    if isinstance(L, Ly.TFLiteInputLayer):
        x = _nhwc(np.asarray(ins[0], np.float32))
        t = [Tensor(list(x.shape), "float32"), Tensor(shp, "int8", s, z)]
        return write_model(t, [Op("QUANTIZE", [0], [1])], [0], [1]), [x]
    xs = [_nhwc(v.q) for v in ins]
    if isinstance(L, Ly.TFLiteAddLayer):
        t = [act_t(ins[0]), act_t(ins[1]), Tensor(shp, "int8", s, z)]
        op = Op(L.kind.upper(), [0, 1], [2], {"activation": "NONE"})
        return write_model(t, [op], [0, 1], [2]), xs
    if isinstance(L, Ly.TFLitePool2dLayer):
        h, w = xs[0].shape[1:3]
        pad = _padding(h, w, *L.kernel_size, L.stride, L.padding)
        if pad is None:
            return None
        op = Op("AVERAGE_POOL_2D" if L.kind == "avg" else "MAX_POOL_2D", [0], [1],
                dict(padding=pad, stride_h=L.stride[0], stride_w=L.stride[1],
                     filter_h=L.kernel_size[0], filter_w=L.kernel_size[1], activation="NONE"))
        return write_model([act_t(ins[0]), Tensor(shp, "int8", s, z)], [op], [0], [1]), xs
    if isinstance(L, Ly.TFLiteMeanLayer):
        keep = L.keepdims if L.op_keep_dims is None else L.op_keep_dims
        oshape = shp if keep or len(shp) == 2 else [shp[0], shp[3]]
        t = [act_t(ins[0]), Tensor([2], "int32", data=np.int32([1, 2])),
             Tensor(oshape, "int8", s, z)]
        return write_model(t, [Op("MEAN", [0, 1], [2], {"keep_dims": keep})], [0], [2]), xs
    if isinstance(L, Ly.TFLiteSoftmaxLayer):
        t = [act_t(ins[0]), Tensor(shp, "int8", s, z)]
        return write_model(t, [Op("SOFTMAX", [0], [1], {"beta": 1.0})], [0], [1]), xs
    if isinstance(L, Ly.LookupLayer):
        name = {"tflite logistic": "LOGISTIC", "tflite tanh": "TANH",
                "tflite hard_swish": "HARD_SWISH"}[L.function]
        t = [act_t(ins[0]), Tensor(shp, "int8", s, z)]
        return write_model(t, [Op(name, [0], [1])], [0], [1]), xs
    if isinstance(L, Ly.ClampLayer):
        act = "RELU" if (L.lo, L.hi) == T.activation_range("RELU", s, z, np.int8) else "RELU6"
        assert (L.lo, L.hi) == T.activation_range(act, s, z, np.int8)
        t = [act_t(ins[0]), Tensor(shp, "int8", s, z)]
        return write_model(t, [Op(act, [0], [1])], [0], [1]), xs
    if isinstance(L, Ly.TFLiteConcatLayer):
        t, ops, cat_in = [], [], []
        for v in ins:
            t.append(act_t(v))
            if (v.scale, v.zero_point) != (s, z):      # the converter's requantizing QUANTIZE
                t.append(Tensor(list(_nhwc(v.q).shape), "int8", s, z))
                ops.append(Op("QUANTIZE", [len(t) - 2], [len(t) - 1]))
            cat_in.append(len(t) - 1)
        t.append(Tensor(shp, "int8", s, z))
        ops.append(Op("CONCATENATION", cat_in, [len(t) - 1], {"axis": 3, "activation": "NONE"}))
        inputs = [i for i in range(len(t) - 1) if i not in {o.outputs[0] for o in ops}]
        return write_model(t, ops, inputs, [len(t) - 1]), xs
    if isinstance(L, (Ly.Conv2dLayer, Ly.LinearLayer)):
        act = _act(L, s, z)
        if act is None:
            return None
        x = ins[0]
        n = L.w_int.shape[0]
        ws = np.broadcast_to(np.asarray(L.w_scale, np.float32), (n,))
        bias = np.zeros(n, np.int32) if L.bias is None else L.bias
        bscale = (np.float64(np.float32(x.scale)) * ws.astype(np.float64)).astype(np.float32)
        if isinstance(L, Ly.LinearLayer):
            t = [act_t(x), Tensor(list(L.w_int.shape), "int8", ws, 0, L.w_int),
                 Tensor([n], "int32", bscale, 0, bias), Tensor(shp, "int8", s, z)]
            op = Op("FULLY_CONNECTED", [0, 1, 2], [3], {"activation": act})
            return write_model(t, [op], [0], [3]), xs
        h, w = xs[0].shape[1:3]
        kh, kw = L.w_int.shape[2:]
        pad = _padding(h, w, kh, kw, L.stride, L.prepared().padding)
        if pad is None or tuple(L.dilation) != (1, 1):
            return None
        geo = dict(padding=pad, stride_h=L.stride[0], stride_w=L.stride[1], activation=act,
                   dilation_h=1, dilation_w=1)
        cin = xs[0].shape[3]
        if L.groups == 1:
            wt = np.ascontiguousarray(L.w_int.transpose(0, 2, 3, 1))      # OHWI
            name, qdim = "CONV_2D", 0
        elif L.groups == cin:
            wt = np.ascontiguousarray(L.w_int[:, 0].transpose(1, 2, 0)[None])   # 1HW(C*M)
            name, qdim = "DEPTHWISE_CONV_2D", 3
            geo["depth_multiplier"] = n // cin
        else:
            return None
        t = [act_t(x), Tensor(list(wt.shape), "int8", ws, 0, wt, qdim),
             Tensor([n], "int32", bscale, 0, bias), Tensor(shp, "int8", s, z)]
        return write_model(t, [Op(name, [0, 1, 2], [3], geo)], [0], [3]), xs
    if isinstance(L, Ly.FlattenLayer):
        return None
    raise AssertionError(f"layer {L.name} ({type(L).__name__}) has no TFLite op here")


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("name", list(MODELS))
def test_every_layer_vs_the_interpreter(name, preset):
    """Each layer as a .tflite model of its TFLite op, built from the layer's own quantization
    parameters and constants, run by LiteRT's interpreter (the preset's runtime) on the integers
    the layer was fed: == the layer's output on every element."""
    from _litert import litert_or_skip, run
    litert_or_skip()
    # the reference kernels' CONCATENATION with requantized inputs; the others' with shared ones
    own = name == "mixed" and preset == "tflite"
    model, im = build(name, preset, _own_qparams() if own else None)
    x = _x()
    r = im.intermediates(x)
    checked, skipped, other = [], [], 0
    for lname, L in im.layers.items():
        y = r[lname]
        ins = [r[i] for i in L.inputs if i in r] if not isinstance(L, Ly.TFLiteInputLayer) \
            else [x.numpy()]
        built = single_op_model(L, ins, y)
        if built is None:
            skipped.append(lname)
            continue
        tfl, xs = built
        got, ops = run(tfl, xs, RESOLVER[preset])
        want = _nhwc(y.q)
        assert got.shape == want.shape or got.size == want.size, lname
        bad = int((got.reshape(want.shape) != want).sum())
        assert bad == 0, f"{preset} {lname} ({type(L).__name__}, ops {ops}): {bad} of " \
                         f"{want.size} differ from the interpreter"
        checked.append(lname)
        if preset == "tflite":       # the other runtime's integers differ: the check can fail
            other += int((run(tfl, xs, "xnn")[0].reshape(want.shape) != want).sum())
    assert set(skipped) <= {"flatten"} and len(checked) >= 6, (checked, skipped)
    assert preset != "tflite" or other > 100, other
