"""The C quantized elementwise / pooling ops behind the IntegerModel runtime (csrc/qops.c) give
the same integers as the NumPy reference implementations in qkernels.torch.qarith (which the
from_torch_quantized tests check against PyTorch element for element), and their AVX2 and scalar
paths agree bit for bit."""
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")
from qkernels import _core, qops  # noqa: E402
from qkernels.torch import qarith as cv  # noqa: E402
from _avg_pool_cases import DTYPES, _q, _zp, avg_pool_outputs  # noqa: E402
from _util import run_simd_paths  # noqa: E402

pytestmark = pytest.mark.torch

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # tests/: the helper modules


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("relu", [False, True])
def test_qadd_matches_reference(dt, relu):
    rng = np.random.default_rng(1)
    for n in (1, 7, 8, 9, 1000, 4099):
        a, b = _q(rng, (n,), dt), _q(rng, (n,), dt)
        for sa, sb, so in ((0.05, 0.07, 0.1), (0.013, 0.013, 0.026), (1 / 3, 0.2, 0.01),
                           (0.5, 0.25, 0.75)):
            za, zb, zo = _zp(rng, dt), _zp(rng, dt), _zp(rng, dt)
            ref = cv.q_add(cv.QTensor(a, sa, za), cv.QTensor(b, sb, zb), so, zo, relu).q
            got = qops.qadd(a, b, sa, za, sb, zb, so, zo, relu)
            assert got.dtype == ref.dtype and np.array_equal(got, ref)


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("relu", [False, True])
def test_qadd_threads_give_the_same_integers(dt, relu):
    """qk_qadd_threads: on both sides of its split threshold (49152 elements; jobs of 8192), with
    a tail that is not a whole vector, threads 1 == 2 == 3 == the reference."""
    rng = np.random.default_rng(3)
    for n in (49151, 49152, 49152 + 8192 + 61, 200_003):
        a, b = _q(rng, (n,), dt), _q(rng, (n,), dt)
        za, zb, zo = _zp(rng, dt), _zp(rng, dt), _zp(rng, dt)
        ref = cv.q_add(cv.QTensor(a, 0.05, za), cv.QTensor(b, 0.07, zb), 0.1, zo, relu).q
        for t in (1, 2, 3):
            got = qops.qadd(a, b, 0.05, za, 0.07, zb, 0.1, zo, relu, threads=t)
            assert got.dtype == ref.dtype and np.array_equal(got, ref), (n, t)


def test_qadd_threads_argument_checked():
    a = np.zeros(60_000, np.uint8)
    with pytest.raises(ValueError, match="threads must be >= 1"):
        qops.qadd(a, a, 0.1, 0, 0.1, 0, 0.1, 0, threads=0)
    with pytest.raises(TypeError, match="threads must be an int"):
        qops.qadd(a, a, 0.1, 0, 0.1, 0, 0.1, 0, threads=1.5)
    with pytest.raises(ValueError, match="scale"):      # the split path checks as the plain one
        qops.qadd(a, a, 0.0, 0, 0.1, 0, 0.1, 0, threads=2)
    # the qnnpack add runs on one thread whatever the budget: the same integers
    b = np.arange(60_000, dtype=np.uint32).astype(np.uint8)
    assert np.array_equal(qops.qadd(a, b, 0.5, 0, 0.5, 0, 1.0, 0, engine="qnnpack", threads=2),
                          qops.qadd(a, b, 0.5, 0, 0.5, 0, 1.0, 0, engine="qnnpack"))


@pytest.mark.parametrize("dt", DTYPES)
def test_qleaky_relu_matches_reference(dt):
    rng = np.random.default_rng(2)
    for n in (1, 8, 15, 3001):
        x = _q(rng, (2, n), dt)
        for sx, slope, so in ((0.05, 0.1, 0.04), (0.013, 0.01, 0.02), (1 / 3, 0.2, 0.3)):
            zx, zo = _zp(rng, dt), _zp(rng, dt)
            ref = cv.q_leaky_relu(cv.QTensor(x, sx, zx), slope, so, zo).q
            got = qops.qleaky_relu(x, sx, zx, slope, so, zo)
            assert got.shape == ref.shape and np.array_equal(got, ref)


@pytest.mark.parametrize("dt", DTYPES)
def test_qclamp_matches_reference(dt):
    rng = np.random.default_rng(3)
    x = _q(rng, (3, 5, 7), dt)
    zp = _zp(rng, dt) // 2
    for lo, hi in ((0.0, None), (0.0, 6.0), (-1.0, 1.0)):
        ref = cv.q_clamp(cv.QTensor(x, 0.05, zp), lo, hi).q
        qlo = int(ref.min()) if lo is None else cv.q_clamp(cv.QTensor(np.array([np.iinfo(dt).min], dt), 0.05, zp), lo, None).q[0]
        qhi = np.iinfo(dt).max if hi is None else cv.q_clamp(cv.QTensor(np.array([np.iinfo(dt).max], dt), 0.05, zp), None, hi).q[0]
        assert np.array_equal(qops.qclamp(x, int(qlo), int(qhi)), ref)


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("geo", [(2, None, 0, 1, False), (3, 2, 1, 1, False), (3, 2, 1, 1, True),
                                 ((2, 3), (1, 2), (1, 0), (2, 1), True), (2, 2, 0, 1, True)])
def test_qmax_pool2d_matches_reference(dt, geo):
    rng = np.random.default_rng(4)
    k, s, p, d, ceil = geo
    for h, w in ((8, 8), (7, 5), (4, 9)):
        x = _q(rng, (2, 3, h, w), dt)
        ref = cv.q_max_pool2d(cv.QTensor(x, 0.1, 3), k, s, p, d, ceil).q
        got = qops.qmax_pool2d(x, k, s, p, d, ceil)
        assert np.array_equal(got, ref)


@pytest.mark.parametrize("dt", DTYPES)
def test_qadaptive_avg_pool2d_matches_reference(dt):
    rng = np.random.default_rng(5)
    for (h, w), out in (((8, 8), 1), ((4, 4), 1), ((7, 5), (3, 2)), ((5, 5), (5, 5)), ((6, 9), (4, 4))):
        x = _q(rng, (3, 4, h, w), dt)
        ref = cv.q_adaptive_avg_pool2d(cv.QTensor(x, 0.1, 0), out).q
        got = qops.qadaptive_avg_pool2d(x, out)
        assert np.array_equal(got, ref)


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("relu", [False, True])
def test_qmul_matches_reference(dt, relu):
    """Same shape, and one factor a (N, C) plane (either operand order in the bridge), every
    plane length around the vector widths (8, 16)."""
    rng = np.random.default_rng(11)
    for hw in (1, 7, 8, 15, 16, 17, 33, 784):
        for per_plane in (False, True):
            a = _q(rng, (2, 3, hw, 1), dt)
            b = _q(rng, (2, 3, 1, 1) if per_plane else a.shape, dt)
            for sa, sb, so in ((0.05, 0.07, 0.01), (0.013, 1 / 256, 0.02), (1 / 3, 0.2, 0.5),
                               (0.5, 0.25, 2.0 ** -12)):          # m = 2^9: mostly saturated
                za, zb, zo = _zp(rng, dt), _zp(rng, dt), _zp(rng, dt)
                ref = cv.q_mul(cv.QTensor(a, sa, za), cv.QTensor(b, sb, zb), so, zo, relu).q
                got = qops.qmul(a, b, sa, za, sb, zb, so, zo, relu)
                assert got.dtype == ref.dtype and got.shape == ref.shape
                assert np.array_equal(got, ref), (hw, per_plane, sa, sb, so)


@pytest.mark.parametrize("dt", DTYPES)
def test_lookup_matches_table_indexing(dt):
    """qops.Lookup == table[q - qmin] for every input integer, lengths around the vector widths
    (32, 64), a non-contiguous view, both table types."""
    rng = np.random.default_rng(12)
    info = np.iinfo(dt)
    for tdt in DTYPES:
        table = _q(rng, (256,), tdt)
        lut = qops.Lookup(table, dt)
        q = np.arange(info.min, info.max + 1).astype(dt)
        assert np.array_equal(lut(q), table[q.astype(np.int32) - info.min])
        for n in (1, 31, 32, 33, 63, 64, 65, 1000):
            x = _q(rng, (n,), dt)
            got = lut(x)
            assert got.dtype == tdt and np.array_equal(got, table[x.astype(np.int32) - info.min])
        x = _q(rng, (6, 40), dt)[:, ::3]
        assert np.array_equal(lut(x), table[x.astype(np.int32) - info.min])


@pytest.mark.parametrize("dt", DTYPES)
def test_qglobal_avg_pool2d_matches_reference(dt):
    """Every plane size the zoo pools globally (7x7, 14x14, 28x28, 56x56) and odd ones, channel
    counts on both sides of the vector loop's 8, zero points at the type's ends."""
    rng = np.random.default_rng(13)
    info = np.iinfo(dt)
    for h, w in ((1, 1), (7, 7), (3, 5), (9, 1), (14, 14), (28, 28), (56, 56), (13, 11)):
        for c in (1, 7, 8, 9, 17, 72):
            x = _q(rng, (2, c, h, w), dt)
            for zp in (int(info.min), int(info.max), _zp(rng, dt)):
                ref = cv.q_adaptive_avg_pool2d(cv.QTensor(x, 0.1, zp), 1).q
                got = qops.qglobal_avg_pool2d(x, zp)
                assert got.dtype == ref.dtype and np.array_equal(got, ref), (h, w, c, zp)


def test_qglobal_avg_pool2d_equals_pytorch():
    """Against PyTorch itself on channels-last tensors (the layout its quantized convs hand on),
    plane sizes that are not powers of two."""
    import torch
    rng = np.random.default_rng(14)
    for dt, tdt in ((np.uint8, torch.quint8), (np.int8, torch.qint8)):
        info = np.iinfo(dt)
        for h, w in ((7, 7), (14, 14), (28, 28), (5, 3)):
            for c in (8, 20, 72):
                x = _q(rng, (2, c, h, w), dt)
                zp = _zp(rng, dt)
                tq = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), 0.05, zp)
                tq = tq.contiguous(memory_format=torch.channels_last)
                ref = torch.nn.functional.adaptive_avg_pool2d(tq, 1).int_repr().numpy()
                assert np.array_equal(qops.qglobal_avg_pool2d(x, zp), ref), (dt, h, w, c)


def test_qmul_and_lookup_bad_input_raise():
    a = np.zeros((2, 3, 4, 4), np.uint8)
    with pytest.raises(ValueError, match="shape"):
        qops.qmul(a, np.zeros((2, 3, 4, 1), np.uint8), 0.1, 0, 0.1, 0, 0.1, 0)
    with pytest.raises(ValueError, match="dtype"):
        qops.qmul(a, a.astype(np.int8), 0.1, 0, 0.1, 0, 0.1, 0)
    with pytest.raises(ValueError, match="scale"):     # m = 2^16: beyond int32 products
        qops.qmul(a, a, 1.0, 0, 1.0, 0, 2.0 ** -16, 0)
    with pytest.raises(ValueError, match="scale"):
        qops.qmul(a, a, float("nan"), 0, 0.1, 0, 0.1, 0)
    with pytest.raises(ValueError, match="zero point"):
        qops.qmul(a, a, 0.1, 300, 0.1, 0, 0.1, 0)
    with pytest.raises(TypeError, match="uint8 or int8"):
        qops.qmul(a.astype(np.int16), a.astype(np.int16), 0.1, 0, 0.1, 0, 0.1, 0)
    with pytest.raises(ValueError, match="zero point"):
        qops.qglobal_avg_pool2d(a, 256)
    with pytest.raises(ValueError, match="NCHW"):
        qops.qglobal_avg_pool2d(a[0], 0)
    with pytest.raises(ValueError, match="vec_width"):
        qops.qglobal_avg_pool2d(a, 0, vec_width=0)
    with pytest.raises(ValueError, match="256"):
        qops.Lookup(np.zeros(255, np.uint8), np.uint8)
    with pytest.raises(ValueError, match="256"):
        qops.Lookup(np.zeros(256, np.int16), np.uint8)
    with pytest.raises(TypeError, match="uint8 or int8"):
        qops.Lookup(np.zeros(256, np.uint8), np.int16)
    with pytest.raises(TypeError, match="made for uint8"):
        qops.Lookup(np.zeros(256, np.uint8), np.uint8)(np.zeros(3, np.int8))
def test_qavg_pool2d_matches_reference():
    """The C average pooling == q_avg_pool2d (the NumPy op the torch tests check against
    PyTorch), every element, on random integers: odd sizes, both layouts' formulas, exact ties
    (2x2 windows, divisor 2) and saturating outputs (divisor_override -3 and 2)."""
    total = 0
    for name, (x, zp, geo, vw, got) in avg_pool_outputs(6).items():
        ref = cv.q_avg_pool2d(cv.QTensor(x, 0.1, zp), *geo, channels_last=vw > 0,
                              vec_width=vw).q
        assert got.shape == ref.shape and got.dtype == ref.dtype, name
        assert np.array_equal(got, ref), (name, geo, x.shape, vw)
        total += ref.size
    assert total > 1_000_000


AVG_SCRIPT = r"""
import sys
sys.path.insert(0, {tests!r})
import numpy as np
from _avg_pool_cases import avg_pool_outputs
np.savez(sys.argv[1], **{{k: v[-1] for k, v in avg_pool_outputs(7).items()}})
"""


def test_qavg_pool2d_every_simd_level_matches_reference(tmp_path):
    """The same cases under QKERNELS_SIMD=scalar, avx2 and this CPU's best level (AVX-512 on
    the reference machine: the narrow-plane path): each == the NumPy reference."""
    want = {k: cv.q_avg_pool2d(cv.QTensor(x, 0.1, zp), *geo, channels_last=vw > 0,
                               vec_width=vw).q
            for k, (x, zp, geo, vw, _) in avg_pool_outputs(7).items()}
    runs = run_simd_paths(AVG_SCRIPT.format(tests=HERE), tmp_path)
    for isa, got in runs.items():
        assert set(got) == set(want)
        for k in want:
            assert np.array_equal(got[k], want[k]), (isa, k)


def test_qavg_pool2d_bad_input_raises():
    x = np.zeros((1, 2, 4, 4), np.uint8)
    with pytest.raises(ValueError, match="padding must be at most half"):
        qops.qavg_pool2d(x, 0, 3, 1, 2)
    with pytest.raises(ValueError, match="divisor_override must be a nonzero"):
        qops.qavg_pool2d(x, 0, 3, divisor_override=0)
    with pytest.raises(ValueError, match="smaller than the kernel"):
        qops.qavg_pool2d(x, 0, 5)
    with pytest.raises(ValueError, match="NCHW"):
        qops.qavg_pool2d(x[0], 0, 2)
    with pytest.raises(ValueError, match="zero point"):
        qops.qavg_pool2d(x.astype(np.int8), 128, 2)
    with pytest.raises(TypeError, match="uint8 or int8"):
        qops.qavg_pool2d(x.astype(np.int16), 0, 2)
    with pytest.raises(ValueError, match="more than 2"):
        qops.AvgPool2d((4096, 1025))
    with pytest.raises(ValueError, match="vec_width"):
        qops.AvgPool2d(2, vec_width=-1)


def test_qops_bad_input_raises():
    x = np.zeros((2, 3), np.uint8)
    with pytest.raises(TypeError, match="uint8 or int8"):
        _core._qclamp(x.astype(np.int16), 0, 1)
    with pytest.raises(ValueError, match="same shape"):
        _core._qadd(x, np.zeros((3, 2), np.uint8), 0.1, 0, 0.1, 0, 0.1, 0, False)
    with pytest.raises(ValueError, match="C-contiguous"):
        _core._qleaky_relu(np.zeros((4, 4), np.uint8)[:, ::2], 0.1, 0, 0.1, 0.1, 0)
    with pytest.raises(ValueError):
        _core._qadd(x, x, 0.0, 0, 0.1, 0, 0.1, 0, False)  # scale must be > 0
    with pytest.raises(ValueError, match="NCHW"):
        _core._qadaptive_avg_pool2d(x, 1, 1)


SCRIPT = r"""
import sys, numpy as np
from qkernels import _core
rng = np.random.default_rng(9)
out = {}
for dt in (np.uint8, np.int8):
    info = np.iinfo(dt)
    a = rng.integers(info.min, info.max, 10_007, endpoint=True).astype(dt)
    b = rng.integers(info.min, info.max, 10_007, endpoint=True).astype(dt)
    for i, (sa, sb, so) in enumerate(((0.05, 0.07, 0.1), (0.013, 0.013, 0.026), (1 / 3, 0.2, 0.01))):
        za, zb, zo = (int(v) for v in rng.integers(info.min, info.max, 3, endpoint=True))
        for relu in (0, 1):
            out[f"add_{info.dtype}_{i}_{relu}"] = _core._qadd(a, b, sa, za, sb, zb, so, zo, relu)
            out[f"addt_{info.dtype}_{i}_{relu}"] = _core._qadd(   # split over threads
                np.tile(a, 6), np.tile(b, 6), sa, za, sb, zb, so, zo, relu, False, 2)
        out[f"leaky_{info.dtype}_{i}"] = _core._qleaky_relu(a, sa, za, 0.1, so, zo)
        bp = rng.integers(info.min, info.max, (7, 13, 1, 1), endpoint=True).astype(dt)
        ap = rng.integers(info.min, info.max, (7, 13, 5, 11), endpoint=True).astype(dt)
        for relu in (0, 1):
            out[f"mul_{info.dtype}_{i}_{relu}"] = _core._qmul(a, b, sa, za, sb, zb, so, zo, relu)
            out[f"mulp_{info.dtype}_{i}_{relu}"] = _core._qmul(ap, bp, sa, za, sb, zb, so, zo, relu)
        out[f"lut_{info.dtype}_{i}"] = _core.gelu_lut(a, b[:256].view(np.uint8))
        out[f"gap_{info.dtype}_{i}"] = _core._qglobal_avg_pool2d(ap, za, 8)
        out[f"gapw_{info.dtype}_{i}"] = _core._qglobal_avg_pool2d(a[:9 * 1111].reshape(1, 9, 11, 101), za, 8)
        if dt is np.uint8:      # QNNPACK's integer add (engine "qnnpack")
            for relu in (0, 1):
                zq = min(zo, 254)
                out[f"addq_{i}_{relu}"] = _core._qadd(a, b, sa, za, sb, zb, so, zq, relu, True)
np.savez(sys.argv[1], **out)
"""


def test_qops_simd_matches_scalar(tmp_path):
    outs = {}
    for isa in ("scalar", "avx2", "default"):
        path = tmp_path / f"{isa}.npz"
        env = dict(os.environ, QKERNELS_SIMD=isa)
        if isa == "default":       # the machine's own level (AVX-512 / VBMI where it has them)
            env.pop("QKERNELS_SIMD")
        subprocess.run([sys.executable, "-c", SCRIPT, str(path)], check=True, env=env, cwd=HERE)
        outs[isa] = np.load(path)
    assert set(outs["scalar"].files) == set(outs["avx2"].files) and outs["scalar"].files
    for isa in ("avx2", "default"):
        for k in outs["scalar"].files:
            assert np.array_equal(outs["scalar"][k], outs[isa][k]), (isa, k)
