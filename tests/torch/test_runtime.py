"""The compiled integer graph of IntegerModel (qkernels/torch/_runtime.py): its kernels give the
same integers, at every layer, as the interpreted path (the keyword API qconv2d / qlinear and the
NumPy reference ops of qkernels.torch.convert); a batch split over threads gives the same output;
the threads option is checked."""
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")
pytest.importorskip("sklearn", reason="scikit-learn (the digits data) is a test requirement")

from qkernels.torch import QTensor, from_torch_quantized  # noqa: E402
from qkernels.torch import QuantConfig, quantize_model  # noqa: E402
from qkernels.torch.reference_models import MODELS, digits, load  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.filterwarnings("ignore::UserWarning")]


@pytest.fixture(scope="module")
def data():
    (xtr, _), (xte, _) = digits()
    return [xtr[i:i + 64] for i in range(0, 512, 64)], xte.numpy()[:96]


def _raw_trace(im, x, threads=1):
    out = im(x, threads=threads)
    tr = im.intermediates(x, threads=threads)
    return out, {k: (v.q if isinstance(v, QTensor) else v) for k, v in tr.items()}


def _assert_same(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cfg", ["w8a8", "w8a8_pow2", "tflite"])
@pytest.mark.parametrize("name", list(MODELS))
def test_compiled_kernels_equal_interpreted_path(data, name, cfg):
    calib, x = data
    config = {"w8a8": QuantConfig(), "w8a8_pow2": QuantConfig.w8a8_pow2(),
              "tflite": QuantConfig.from_dict({"activation": {"signed": True},
                                               "preset": "tflite"})}[cfg]
    im = quantize_model(load(name), calib, config=config)
    y, trace = _raw_trace(im, x)
    assert im._plan is not None and all(getattr(k, "per_sample", False) for k, *_ in im._plan.steps)
    # every node through _step (qconv2d / qlinear keyword API, NumPy reference ops)
    ref = quantize_model(load(name), calib, config=config)
    ref._compile(reference=True)
    y_ref, trace_ref = _raw_trace(ref, x)
    assert not any(getattr(k, "per_sample", False) for k, _, out, _ in ref._plan.steps[1:])
    _assert_same(y, y_ref)
    assert set(trace) == set(trace_ref)
    for k in trace:
        _assert_same(np.asarray(trace[k]), np.asarray(trace_ref[k]))


@pytest.mark.parametrize("name", ["resnet", "mobilenetv2"])
def test_batch_split_over_threads_gives_the_same_output(data, name, monkeypatch):
    from qkernels.torch import _runtime as rt

    monkeypatch.setattr(rt, "_MACS_PER_CHUNK", 1_000_000)   # split even this small batch
    calib, x = data
    im = quantize_model(load(name), calib)
    y1 = im(x, threads=1)
    y2 = im(x, threads=2)
    assert im._plan.per_sample and im._plan._pool is not None   # the split ran
    _assert_same(y1, y2)
    _assert_same(im(x[:3], threads=2), y1[:3])                   # too small to split
    bad = x.copy()
    bad[70, 0, 2, 3] = np.nan
    with pytest.raises(ValueError, match=r"NaN at index \(70, 0, 2, 3\)"):
        im(bad, threads=2)
    im.threads = 2
    _assert_same(im(x), y1)


def test_from_torch_threads_and_trace(data, monkeypatch):
    from qkernels.torch import _runtime as rt

    monkeypatch.setattr(rt, "_MACS_PER_CHUNK", 1_000_000)   # split even this small batch
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    calib, x = data
    torch.backends.quantized.engine = "fbgemm"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_fx(load("resnet"), get_default_qconfig_mapping("fbgemm"),
                              example_inputs=(calib[0][:2],))
        with torch.no_grad():
            for b in calib:
                prepared(b)
        qmodel = convert_fx(prepared)
    im = from_torch_quantized(qmodel, threads=1)
    y1 = im(x, keep_trace=True)
    assert isinstance(im.trace["layer1_conv1"], QTensor)
    assert im.trace["layer1_conv1"].q.dtype == np.uint8
    _assert_same(im(x, threads=2), y1)
    assert im._plan._pool is not None
    assert im.trace == {}                                        # keep_trace=False clears it
    with pytest.raises(ValueError, match="threads"):
        from_torch_quantized(qmodel, threads=0)
    with pytest.raises(TypeError, match="threads"):
        im(x, threads=1.5)


def test_threads_argument_is_checked(data):
    calib, x = data
    im = quantize_model(load("mlp"), calib)
    with pytest.raises(ValueError, match="threads"):
        im(x, threads=0)
    with pytest.raises(TypeError, match="threads"):
        im(x, threads="2")
    _assert_same(im(x, threads=3), im(x, threads=1))


def test_nan_input_is_named(data):
    calib, x = data
    im = quantize_model(load("mlp"), calib)
    bad = x.copy()
    bad[1, 0, 2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        im(bad)


@pytest.mark.parametrize("dt", [np.uint8, np.int8])
def test_conv_kernel_equals_qconv2d_every_geometry(dt):
    """Conv2dLayer's kernel (including the batch-as-one-wide-image layout for narrow outputs and the
    1x1-as-GEMM path) == the keyword qconv2d, over kernel sizes, strides, paddings (asymmetric too), dilations, groups,
    batch sizes and widths."""
    import qkernels as qk
    from qkernels.torch import _runtime as rt
    from qkernels.torch.layers import Conv2dLayer

    rng = np.random.default_rng(11)
    info = np.iinfo(dt)
    preset = "fbgemm" if dt == np.uint8 else "onnxruntime"
    cases = 0
    for k, s, pad, d, g in ((3, 1, 1, 1, 1), (3, 2, 1, 1, 1), (1, 1, 0, 1, 1), (1, 2, 0, 1, 1),
                            (1, (2, 1), 0, 1, 1), (1, 1, 1, 1, 1), (1, 3, 0, 1, 1),
                            (3, 1, 1, 1, 4), (3, 2, (0, 1, 2, 0), 1, 4), (2, 3, 0, 1, 1),
                            (3, 1, 1, 2, 2),
                            (3, 1, 2, 2, 1), ((1, 3), (1, 2), (0, 1), 1, 2)):
        kh, kw = (k, k) if isinstance(k, int) else k
        w = rng.integers(-127, 128, (8, 4 // g, kh, kw)).astype(np.int8)
        ws = rng.uniform(0.005, 0.02, 8).astype(np.float32)
        p = qk.pack_conv2d(w, groups=g, w_scale=ws)
        bias = rng.normal(0, 1, 8).astype(np.float32) if preset == "fbgemm" else \
            rng.integers(-500, 500, 8).astype(np.int32)
        xm = rt.QMeta(0.03, int(rng.integers(info.min, info.max)), np.dtype(dt))
        kern = Conv2dLayer("conv", ("x",), rt.QMeta(0.2, 5, np.dtype(dt)), x=xm, w_int=w,
                           w_scale=ws, packed=p, bias=bias, preset=qk.presets.get(preset),
                           stride=s, padding=pad, dilation=d, groups=g).kernel()
        for nb in (1, 2, 5):
            for hw in ((5, 5), (4, 7), (9, 3), (8, 8), (3, 12)):
                x = rng.integers(info.min, info.max, (nb, 4) + hw, endpoint=True).astype(dt)
                try:
                    ref = qk.qconv2d(x, p, bias, stride=s, padding=pad, dilation=d, groups=g,
                                     x_scale=np.float32(0.03), x_zero_point=xm.zero_point,
                                     w_scale=ws, out_scale=np.float32(0.2), out_zero_point=5,
                                     preset=preset)
                except ValueError:
                    continue   # kernel larger than the padded input
                for t in (1, 2):
                    got = kern(t, x)
                    assert got.dtype == ref.dtype and np.array_equal(got, ref), (k, s, pad, d, g, nb, hw)
                cases += 1
    assert cases > 80


def test_cat_kernel_equals_q_cat():
    """The compiled cat (inputs on the output's parameters copied, the others requantized by the
    raw dequantize / quantize ufuncs, parameters checked once) == qarith.q_cat (the NumPy op the
    qarith tests check against torch.ops.quantized.cat), every element: random axes (negative
    too), 1-3 inputs, uint8 / int8, outputs narrower than their type (4 and 6 bits)."""
    from qkernels.torch import _runtime as rt
    from qkernels.torch import qarith as qa
    from qkernels.torch._runtime import QMeta

    rng = np.random.default_rng(12)
    requantized = 0
    for trial in range(300):
        dt = (np.uint8, np.int8)[trial % 2]
        info = np.iinfo(dt)
        bits = (None, 4, 6)[trial % 3] if dt == np.int8 else None
        lo, hi = (-8, 7) if bits == 4 else (-32, 31) if bits == 6 else (info.min, info.max)
        out = QMeta(float(rng.uniform(0.01, 0.1)), int(rng.integers(lo, hi + 1)), np.dtype(dt),
                    bits)
        dim = int(rng.integers(-2, 4))
        metas, xs = [], []
        for _ in range(int(rng.integers(1, 4))):
            shape = [2, 3, 4, 5]
            shape[dim] = int(rng.integers(1, 6))
            m = out if rng.random() < 0.4 else QMeta(float(rng.uniform(0.01, 0.1)),
                                                     int(rng.integers(info.min, info.max)),
                                                     np.dtype(dt))
            requantized += m is not out
            metas.append(m)
            xs.append(rng.integers(info.min, info.max, shape, endpoint=True).astype(dt))
        ref = qa.q_cat([qa.QTensor(q, m.scale, m.zero_point) for q, m in zip(xs, metas)], dim,
                       out.scale, out.zero_point, out.bits).q
        _assert_same(rt.cat_kernel(metas, dim, out, None)(1, *xs), ref)
    assert requantized > 200
    # another dtype goes to the fallback (the NumPy op and its error)
    k = rt.cat_kernel([out], 1, out, lambda *qs: "fallback")
    assert k(1, np.zeros((1, 2), np.int16)) == "fallback"


@pytest.mark.parametrize("cfg", ["w8a8", "w8a8_pow2"])
@pytest.mark.parametrize("name", ["resnet", "mobilenetv2"])
def test_conv_add_fused_plan_equals_unfused(data, name, cfg):
    """The residual adds (PyTorch's quantized add) run fused into the conv before them (one step
    instead of two: the plan lacks the conv steps its trace has), with the same integers as the
    unfused steps (the trace run) and the reference path, at 1 and 2 threads."""
    calib, x = data
    config = QuantConfig() if cfg == "w8a8" else QuantConfig.w8a8_pow2()
    im = quantize_model(load(name), calib, config=config)
    y1 = im(x, threads=1)
    plan = im._plan
    gone = {n for *_, n in plan.trace_steps} - {n for *_, n in plan.steps}
    assert gone and all(type(im.layers[n]).__name__ == "Conv2dLayer" for n in gone), gone
    y_trace = im(x, threads=1, keep_trace=True)          # the unfused steps
    assert gone <= set(im.trace)
    _assert_same(np.asarray(y1), np.asarray(y_trace))
    _assert_same(np.asarray(im(x, threads=2)), np.asarray(y1))
    ref = quantize_model(load(name), calib, config=config)
    ref._compile(reference=True)
    _assert_same(np.asarray(ref(x, threads=1)), np.asarray(y1))


def test_split_threads_grain():
    """The choice of a conv / linear call's threads (_split_threads): one thread per 500K
    multiply-accumulates, so two from 1M, never more than the budget, at least one."""
    from qkernels.torch import _runtime as rt

    assert rt._MACS_PER_THREAD == 500_000
    assert rt._split_threads(2, 999_999) == 1
    assert rt._split_threads(2, 1_000_000) == 2
    assert rt._split_threads(3, 1_499_999) == 2
    assert rt._split_threads(3, 10**9) == 3
    assert rt._split_threads(1, 10**9) == 1
    assert rt._split_threads(4, 0) == 1


@pytest.mark.parametrize("grain", [10**12, 1])
@pytest.mark.parametrize("name", ["resnet", "mobilenetv2"])
def test_layers_split_over_threads_give_the_same_integers(data, name, grain, monkeypatch):
    """Every layer at batch 1 and 5 (no batch split) on one thread (grain 10^12) or on the whole
    budget (grain 1: every conv / linear / add split, the C paths taking 2 and 3 threads):
    threads 1 == 2 == 3 at every layer."""
    from qkernels.torch import _runtime as rt

    monkeypatch.setattr(rt, "_MACS_PER_THREAD", grain)
    monkeypatch.setattr(rt, "_MACS_PER_CHUNK", 10**15)       # in-kernel threads only
    calib, x = data
    im = quantize_model(load(name), calib)
    for xb in (x[:1], x[:5]):
        y1, tr1 = _raw_trace(im, xb, threads=1)
        for t in (2, 3):
            yt, trt = _raw_trace(im, xb, threads=t)
            _assert_same(yt, y1)
            assert set(trt) == set(tr1)
            for k in tr1:
                _assert_same(np.asarray(trt[k]), np.asarray(tr1[k]))
