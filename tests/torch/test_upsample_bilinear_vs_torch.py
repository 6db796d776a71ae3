"""Bilinear upsampling on quantized tensors against PyTorch: qarith.q_upsample_bilinear2d ==
F.interpolate(mode="bilinear") of a quantized tensor on random shapes, scales and zero points
(uint8 / int8, align_corners False / True, size or scale_factor (recomputed or not), NCHW and
channels-last inputs, 1 x 1 images, channel counts around the vector widths), under the AVX-512
kernels and, in a subprocess, the AVX2 ones; then F.interpolate / nn.Upsample /
nn.UpsamplingBilinear2d in an FX-quantized network through from_torch_quantized (both engines)
and in quantize_model (the layer == PyTorch's op on the layer's own integer input)."""
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")

from _util import fx_quantized  # noqa: E402

from qkernels.torch import from_torch_quantized, quantize_model  # noqa: E402
from qkernels.torch.qarith import (QTensor, fma32, q_upsample_bilinear2d,  # noqa: E402
                                   torch_pool_vec_width, upsample_output_size)

pytestmark = [pytest.mark.torch, pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]
ENGINES = ["fbgemm", "qnnpack"]
F = torch.nn.functional


def _q(a, s, z):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch._make_per_tensor_quantized_tensor(torch.from_numpy(a), s, z)


def _layout(a, s, z, channels_last):
    """The quantized tensor of NCHW integers ``a``, with NCHW strides or (``channels_last``)
    channels-last ones: made NHWC and permuted, as a quantized conv's output is held. (For a
    1 x 1 image ``contiguous(memory_format=torch.channels_last)`` keeps the NCHW strides: both
    layouts are contiguous; PyTorch's upsampling takes its output layout from the strides.)"""
    if not channels_last:
        return _q(a, s, z)
    return _q(np.ascontiguousarray(a.transpose(0, 2, 3, 1)), s, z).permute(0, 3, 1, 2)


def _compare(seed, trials):
    """(elements differing, elements compared) of q_upsample_bilinear2d against PyTorch."""
    rng = np.random.default_rng(seed)
    vw = torch_pool_vec_width()
    bad = total = 0
    for t in range(trials):
        dt = (np.uint8, np.int8)[t % 2]
        info = np.iinfo(dt)
        n, c = int(rng.integers(1, 3)), int(rng.choice([1, 3, 7, 8, 9, 15, 16, 17, 24, 31, 33, 45]))
        h, w = (1, 1) if t % 7 == 0 else (int(rng.integers(1, 9)), int(rng.integers(1, 9)))
        ac = bool(rng.integers(0, 2))
        z = int(rng.integers(info.min, info.max + 1))
        s = float(np.float32(10 ** rng.uniform(-3, 0)))
        x = rng.integers(info.min, info.max + 1, (n, c, h, w)).astype(dt)
        if t % 3 == 0:
            kw = dict(size=(int(rng.integers(1, 20)), int(rng.integers(1, 20))))
        else:
            kw = dict(scale_factor=float(rng.choice([2.0, 1.5, 3.0, 0.5, 1.7, 2.5, 1.2, 0.75, 4.0])))
            if t % 5 == 1:
                kw["recompute_scale_factor"] = True
        (oh, ow), scales = upsample_output_size(h, w, **kw)
        if min(oh, ow) == 0:
            continue
        for cl in (False, True):
            qx = _layout(x, s, z, cl)
            y = F.interpolate(qx, mode="bilinear", align_corners=ac, **kw)
            assert (y.q_scale(), y.q_zero_point()) == (s, z)
            got = q_upsample_bilinear2d(QTensor(x, s, z), (oh, ow), ac, scales, channels_last=cl,
                                        vec_width=vw)
            bad += int((got.q != y.int_repr().numpy()).sum())
            total += got.q.size
    return bad, total


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
def test_q_upsample_bilinear2d_equals_pytorch(engine):
    bad, total = _compare(21 if engine == "fbgemm" else 22, 160)
    assert total > 300_000
    assert bad == 0, f"{bad} of {total} differ"


def test_q_upsample_bilinear2d_equals_pytorch_avx2_kernels():
    """PyTorch's AVX2 kernels (ATEN_CPU_CAPABILITY=avx2: 8 channels a vector), in a subprocess."""
    here = os.path.dirname(os.path.abspath(__file__))
    code = ("import sys; sys.path[:0] = [%r, %r]; import test_upsample_bilinear_vs_torch as t; "
            "import qkernels.torch.qarith as qa; assert qa.torch_pool_vec_width() == 8; "
            "print(*t._compare(23, 80))" % (here, os.path.dirname(here)))
    env = dict(os.environ, ATEN_CPU_CAPABILITY="avx2")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    bad, total = (int(v) for v in r.stdout.split()[-2:])
    assert total > 100_000 and bad == 0, (bad, total)


def test_fma32_is_one_rounding():
    rng = np.random.default_rng(3)
    a, b, c = (rng.standard_normal(100_000).astype(np.float32) for _ in range(3))
    got = fma32(a, b, c)
    exact = [np.float32(float(np.longdouble(x) * np.longdouble(y) + np.longdouble(z)))
             for x, y, z in zip(a[:2000], b[:2000], c[:2000])]
    np.testing.assert_array_equal(got[:2000], np.array(exact, np.float32))
    two = ((a.astype(np.float64) * b) + c).astype(np.float32)      # a near-tie differs
    assert (got == two).mean() > 0.999
    t = np.float32(1 + 2 ** -12)
    assert fma32(t, t, np.float32(-1)) == np.float32(2 ** -11 + 2 ** -24)


class _Head(torch.nn.Module):
    """A segmentation head: F.interpolate (bilinear, scale 2, align_corners False), nn.Upsample
    (bilinear, size), nn.UpsamplingBilinear2d (align_corners True); channel counts not multiples
    of 8 (the channels-last kernel's remainder)."""

    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 21, 3, stride=2, padding=1)
        self.up = torch.nn.Upsample(size=(10, 13), mode="bilinear", align_corners=False)
        self.c2 = torch.nn.Conv2d(21, 19, 3, padding=1)
        self.up2 = torch.nn.UpsamplingBilinear2d(scale_factor=1.5)

    def forward(self, x):
        y = F.interpolate(self.c1(x), scale_factor=2, mode="bilinear", align_corners=False)
        y = self.c2(self.up(y))
        return self.up2(y) + F.interpolate(y, size=(15, 19), mode="bilinear", align_corners=True)


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
def test_bilinear_head_through_from_torch_quantized_equals_pytorch(engine):
    torch.manual_seed(8)
    q, x = fx_quantized(_Head(), engine, (2, 3, 11, 9), 9)
    im = from_torch_quantized(q, engine=engine)
    ups = [L for L in im.layers.values() if L.op == "upsample_bilinear"]
    assert len(ups) >= 2 and any(L.channels_last for L in ups), [L.name for L in ups]
    with torch.no_grad():
        ref = q(x).numpy()
    np.testing.assert_array_equal(im(x.numpy()), ref)


def test_bilinear_layers_of_quantize_model_equal_pytorch():
    torch.manual_seed(10)
    net = _Head().eval()
    g = torch.Generator().manual_seed(11)
    im = quantize_model(net, [torch.randn(2, 3, 11, 9, generator=g) for _ in range(2)])
    ups = [L for L in im.layers.values() if L.op == "upsample_bilinear"]
    assert len(ups) == 4
    x = torch.randn(2, 3, 11, 9, generator=g).numpy()
    tr = im.intermediates(x)
    for L in ups:
        xi, yi = tr[L.inputs[0]], tr[L.name]
        m = L.x
        qx = _layout(xi.q, m.scale, m.zero_point, L.channels_last)
        kw = {k: v for k, v in dict(size=L.size, scale_factor=L.scale_factor).items()
              if v is not None}
        ref = F.interpolate(qx, mode="bilinear", align_corners=L.align_corners, **kw)
        assert (yi.scale, yi.zero_point) == (ref.q_scale(), ref.q_zero_point())
        np.testing.assert_array_equal(yi.q, ref.int_repr().numpy())
    assert np.isfinite(im(x)).all()


class _ImagePooling(torch.nn.Module):
    """DeepLabV3's ASPP image-pooling branch: global average pooling to 1 x 1 (channels-last:
    a quantized conv's output), a 1 x 1 conv + ReLU, bilinear back to the feature size, then an
    average pooling and a second bilinear upsampling (ops whose arithmetic depends on the
    layout); 37 channels (a vector of 16 or 8 and a remainder)."""

    def __init__(self, conv=True):
        super().__init__()
        self.conv = conv
        self.c1 = torch.nn.Conv2d(3, 37, 3, padding=1)
        self.gap = torch.nn.AdaptiveAvgPool2d(1)
        self.c2 = torch.nn.Conv2d(37, 37, 1)
        self.relu = torch.nn.ReLU()
        self.avg = torch.nn.AvgPool2d(3, 1, 1)

    def forward(self, x):
        y = self.c1(x)
        p = self.gap(y)
        if self.conv:
            p = self.relu(self.c2(p))
        u = self.avg(F.interpolate(p, size=(9, 7), mode="bilinear", align_corners=False))
        u = F.interpolate(u, scale_factor=1.5, mode="bilinear", align_corners=False)
        y = F.interpolate(y, scale_factor=1.5, mode="bilinear", align_corners=False)
        return torch.cat([y, u], 1)


def _constant_per_channel(q):
    return bool((q == q[:, :, :1, :1]).all())


@pytest.mark.parametrize("conv", [False, True])
@pytest.mark.parametrize("engine", ENGINES, indirect=True)
def test_upsampled_1x1_channels_last_image_equals_pytorch(engine, conv):
    """A 1 x 1 image PyTorch holds channels-last (a conv's or pooling's output) is upsampled
    into a channels-last tensor, each channel's value everywhere (an NCHW-strided one's output
    is NHWC data read as NCHW: test_q_upsample_bilinear2d_equals_pytorch); every layer equals
    PyTorch's op on the layer's own input, and the output PyTorch's."""
    torch.manual_seed(3)
    q, x = fx_quantized(_ImagePooling(conv), engine, (2, 3, 9, 7), 4)
    im = from_torch_quantized(q, engine=engine)
    ups = [n for n, L in im.layers.items() if L.op == "upsample_bilinear"]
    assert len(ups) == 3 and all(im.layers[n].channels_last for n in ups)
    r = im.intermediates(x.numpy())
    first = next(n for n in ups if r[im.layers[n].inputs[0]].q.shape[2:] == (1, 1))
    assert _constant_per_channel(r[first].q) and not _constant_per_channel(r["c1"].q)
    reports = im.compare(x.numpy())
    assert len(reports) >= (8 if conv else 7) and \
        all(rep.steps_diff_vs_fake_quant == 0 for rep in reports), \
        reports
    with torch.no_grad():
        np.testing.assert_array_equal(im(x.numpy()), q(x).numpy())


class _NCHWInput(torch.nn.Module):
    """Pooling of tensors PyTorch holds NCHW: the model input, and (fbgemm) the upsampling of a
    1 x 1 image with NCHW strides (the input's global average: NHWC data read as NCHW; QNNPACK's
    global average pooling writes a channels-last 1 x 1 image, upsampled channels-last).
    PyTorch's NCHW kernels round otherwise than its channels-last ones (adaptive average
    pooling: ``fl(sum * fl(fl(1/kh)/kw))``)."""

    def forward(self, x):
        u = F.interpolate(F.adaptive_avg_pool2d(x, 1), size=(26, 22), mode="bilinear",
                          align_corners=False)
        return F.adaptive_avg_pool2d(x, (5, 7)), F.avg_pool2d(u, 3, 2, 1), \
            F.adaptive_avg_pool2d(u, (5, 7))


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
def test_pooling_of_nchw_tensors_equals_pytorch(engine):
    q, x = fx_quantized(_NCHWInput(), engine, (24, 37, 26, 22), 12)
    im = from_torch_quantized(q, engine=engine)
    pools = [L for L in im.layers.values() if L.op in ("adaptive_avg_pool2d", "avg_pool2d")]
    assert [L.channels_last for L in pools] == [False, False] + [engine == "qnnpack"] * 2
    with torch.no_grad():
        ref = [t.numpy() for t in q(x)]
    got = im(x.numpy())
    assert sum(r.size for r in ref) > 100_000
    for g, r in zip(got, ref):
        np.testing.assert_array_equal(g, r)


def test_upsampled_1x1_image_in_quantize_model_is_constant_per_channel():
    """quantize_model holds values as PyTorch's quantized model would: the 1 x 1 image from the
    global pooling is upsampled to its value everywhere, not reordered (its SQNR against the
    float model was 11-17 dB when it was)."""
    torch.manual_seed(3)
    net = _ImagePooling().eval()
    g = torch.Generator().manual_seed(5)
    im = quantize_model(net, [torch.randn(4, 3, 9, 7, generator=g) for _ in range(3)])
    x = torch.randn(2, 3, 9, 7, generator=g)
    r = im.intermediates(x.numpy())
    first = next(n for n, L in im.layers.items() if L.op == "upsample_bilinear" and
                 r[L.inputs[0]].q.shape[2:] == (1, 1))
    assert im.layers[first].channels_last and _constant_per_channel(r[first].q)
    with torch.no_grad():
        ref = net(x).numpy()
    err = im(x.numpy()) - ref
    assert 10 * np.log10((ref ** 2).sum() / (err ** 2).sum()) > 30


def test_other_modes_are_refused_by_name():
    class Bicubic(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return F.interpolate(self.c(x), scale_factor=2, mode="bicubic")
    torch.manual_seed(6)
    q, _ = fx_quantized(Bicubic(), "fbgemm", (1, 3, 8, 8), 7)
    with pytest.raises(NotImplementedError, match=r"interpolate.*'bicubic'.*keep it in float"):
        from_torch_quantized(q, engine="fbgemm")
    with pytest.raises(NotImplementedError, match=r"interpolate.*'bicubic'"):
        quantize_model(Bicubic().eval(), [torch.randn(1, 3, 8, 8)])
