"""Integer GELU (I-BERT i-GELU, 256-entry table) against the plain references of
tests/_transformer_ref.py, bit for bit: more than 10^6 outputs per method, int8 / uint8 / int32
inputs, per-channel I-BERT parameters, outputs that saturate, exact rounding ties of the output
requantization (hand-made multipliers), SIMD == scalar, errors that name the argument. The float32
parameter derivation against I-BERT's own PyTorch code: test_ibert_vs_torch.py."""
import numpy as np
import pytest

import qkernels as qk
from qkernels import _core
from _transformer_ref import gelu_table, ibert_gelu
from _util import assert_simd_paths_equal, run_simd_paths

# The bit-exactness tests also run I-BERT's i-GELU at 8-bit scales where prepare_gelu warns that
# the approximation is coarse (test_transformer_gufunc_refusals.py checks that warning): the
# arithmetic must still equal the reference there.
pytestmark = pytest.mark.filterwarnings("ignore:x_scale=.*too coarse for I-BERT:UserWarning")


def _ref(x, p):
    info = np.iinfo(p.out_dtype)
    return ibert_gelu(x, p.x_zero_point, p.b, p.c, p.shift, p.multiplier, p.rshift,
                      p.out_zero_point, int(info.min), int(info.max)).astype(p.out_dtype)


@pytest.mark.parametrize("xdt,scale,xzp", [(np.int8, 0.05, 0), (np.uint8, 0.03, 100),
                                           (np.int8, 0.004, -9)])
@pytest.mark.parametrize("odt,oscale,ozp", [(np.int8, 0.05, 0), (np.uint8, 0.02, 20),
                                            (np.int32, 1e-4, 0)])
def test_ibert_8bit_equals_reference(rng, xdt, scale, xzp, odt, oscale, ozp):
    p = qk.prepare_gelu(scale, out_scale=oscale, out_zero_point=ozp, out_dtype=odt,
                        x_zero_point=xzp)
    info = np.iinfo(xdt)
    x = rng.integers(info.min, info.max, 150_000, endpoint=True).astype(xdt)
    assert np.array_equal(qk.qgelu(x, p), _ref(x, p))
    small = x[:300]                                        # the element-wise path (n < 512)
    assert np.array_equal(qk.qgelu(small, p), _ref(small, p))


@pytest.mark.parametrize("scale,spread", [(1e-4, 30000), (3e-5, 1e5), (2e-3, 2000)])
@pytest.mark.parametrize("odt,oscale", [(np.int8, 0.05), (np.int32, 1e-3)])
def test_ibert_int32_equals_reference(rng, scale, spread, odt, oscale):
    p = qk.prepare_gelu(scale, out_scale=oscale, out_dtype=odt)
    x = np.concatenate([np.rint(rng.normal(0, spread, 40_000)),
                        rng.integers(-(1 << 31), 1 << 31, 500),     # int32 extremes: saturate
                        [-(1 << 31), (1 << 31) - 1, 0, 1, -1]]).astype(np.int32)
    assert np.array_equal(qk.qgelu(x, p), _ref(x, p))


def test_ibert_per_channel(rng):
    scales = (10.0 ** rng.uniform(-4.5, -3, 96)).astype(np.float32)
    p = qk.prepare_gelu(scales, out_scale=0.04, out_dtype=np.int8)
    assert p.channels == 96
    x = np.rint(rng.normal(0, 1.2, (400, 96)) / scales).astype(np.int32)
    y = qk.qgelu(x, p)
    assert np.array_equal(y, _ref(x, p))
    for c in (0, 17, 95):
        pc = qk.prepare_gelu(float(scales[c]), out_scale=0.04, out_dtype=np.int8)
        assert np.array_equal(y[:, c], qk.qgelu(np.ascontiguousarray(x[:, c]), pc))


def test_requantization_ties(rng):
    """multiplier 2^30 and a small rshift: RNE(g 2^30 / 2^rshift) has halves for odd g (int8
    input: the table; int32: the vector loop for rshift >= 32, the scalar one below)."""
    for x, sig in ((rng.integers(-128, 128, 20_000).astype(np.int8), "billliiiii->i"),
                   (rng.integers(-3000, 3000, 20_003).astype(np.int32), "iillliiiii->i")):
        for rshift in (31, 32, 33, 40):
            for mult in (1 << 30, 3 << 28, 12345):
                args = dict(b=np.int64(-51), c=np.int64(-2771), shift=np.int64(-1))
                y = np.empty(x.shape, np.int32)
                _core.gelu_ibert(x, np.int32(0), args["b"], args["c"], args["shift"],
                                 np.int32(mult), np.int32(rshift), np.int32(0),
                                 np.int32(-(1 << 31)), np.int32((1 << 31) - 1), out=y,
                                 signature=sig)
                ref = ibert_gelu(x, 0, -51, -2771, -1, mult, rshift, 0, -(1 << 31), (1 << 31) - 1)
                assert np.array_equal(y, ref), (x.dtype, mult, rshift)


def test_int32_to_8bit_ties_and_near_ties(rng):
    """int32 input, 8-bit output: the loop that rounds in float and redoes lanes near a tie in
    exact integers. Hand-made multipliers put many values exactly on a tie (2^30 / 2^31: halves)
    or 1 / 2^31 beside one (2^30 +- 1), inside the output range and saturating; zero points that
    are odd and even."""
    x = np.concatenate([rng.integers(-3000, 3000, 6000), np.arange(-700, 700),
                        rng.integers(-(1 << 31), 1 << 31, 300),
                        [-(1 << 31), (1 << 31) - 1, 0, 1, -1]]).astype(np.int32)
    for odt, ozp in ((np.int8, -3), (np.uint8, 128)):
        info = np.iinfo(odt)
        for rshift in (31, 33):
            for mult in (1 << 30, (1 << 30) + 1, (1 << 30) - 1):
                y = np.empty(x.shape, odt)
                sig = "iillliiiii->" + ("b" if odt == np.int8 else "B")
                _core.gelu_ibert(x, np.int32(0), np.int64(-51), np.int64(-2771), np.int64(-1),
                                 np.int32(mult), np.int32(rshift), np.int32(ozp),
                                 np.int32(info.min), np.int32(info.max), out=y, signature=sig)
                ref = ibert_gelu(x, 0, -51, -2771, -1, mult, rshift, ozp, int(info.min),
                                 int(info.max))
                assert np.array_equal(y, ref), (odt, ozp, mult, rshift)
                # the keyword path (one C call over the whole array) too
                y2 = np.empty(x.shape, odt)
                _core._gelu_ibert(x, np.array([-51]), np.array([-2771]), np.array([-1]),
                                  np.array([mult], np.int32), np.array([rshift], np.int32), 0,
                                  ozp, int(info.min), int(info.max), y2)
                assert np.array_equal(y2, ref), (odt, ozp, mult, rshift)


@pytest.mark.parametrize("xdt,xzp", [(np.int8, 0), (np.int8, -20), (np.uint8, 128), (np.uint8, 3)])
@pytest.mark.parametrize("odt,ozp", [(np.int8, 0), (np.uint8, 10)])
def test_lut_equals_reference(rng, xdt, xzp, odt, ozp):
    p = qk.prepare_gelu(0.045, method="lut", x_dtype=xdt, x_zero_point=xzp, out_scale=0.03,
                        out_zero_point=ozp, out_dtype=odt)
    table = gelu_table(xdt, 0.045, xzp, 0.03, ozp, odt)
    assert np.array_equal(p.table, table)
    info = np.iinfo(xdt)
    x = rng.integers(info.min, info.max, 130_001, endpoint=True).astype(xdt)   # SIMD tails too
    y = qk.qgelu(x, p)
    assert y.dtype == odt and np.array_equal(y, table[x.view(np.uint8)])
    assert np.array_equal(qk.qgelu(x[::3], p), table[x[::3].view(np.uint8)])   # strided


def test_lut_ufunc_and_out(rng):
    p = qk.prepare_gelu(0.05, method="lut", out_scale=0.05)
    x = rng.integers(-128, 128, (7, 50)).astype(np.int8)
    out = np.empty((7, 50), np.int8)
    assert qk.qgelu(x, p, out=out) is out
    assert np.array_equal(_core.gelu_lut(x, p.table), out)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="x_scale"):
        qk.prepare_gelu(-1.0, out_scale=0.1)
    with pytest.raises(ValueError, match="out_scale"):
        qk.prepare_gelu(0.1, out_scale=0.0)
    with pytest.raises(ValueError, match="out_zero_point"):
        qk.prepare_gelu(0.1, out_scale=0.1, out_zero_point=200)
    with pytest.raises(TypeError, match="out_dtype"):
        qk.prepare_gelu(0.1, out_scale=0.1, out_dtype=np.float32)
    with pytest.raises(TypeError, match="x_dtype"):
        qk.prepare_gelu(0.1, method="lut", out_scale=0.1, x_dtype=np.int32)
    with pytest.raises(ValueError, match="x_zero_point"):
        qk.prepare_gelu(0.1, method="lut", out_scale=0.1, x_dtype=np.uint8, x_zero_point=-1)
    with pytest.raises(ValueError, match="method"):
        qk.prepare_gelu(0.1, method="tanh", out_scale=0.1)
    p = qk.prepare_gelu(0.1, out_scale=0.1)
    with pytest.raises(TypeError, match="x must be"):
        qk.qgelu(np.zeros(4, np.float32), p)
    with pytest.raises(TypeError, match="params"):
        qk.qgelu(np.zeros(4, np.int8), 0.1)
    with pytest.raises(ValueError, match="x_scale=.*too small"):       # int64 bound, int32 input
        qk.qgelu(np.zeros(4, np.int32), qk.prepare_gelu(1e-7, out_scale=0.1))
    pc = qk.prepare_gelu(np.full(8, 1e-3, np.float32), out_scale=0.1)
    with pytest.raises(ValueError, match="channels"):
        qk.qgelu(np.zeros((3, 5), np.int32), pc)
    pl = qk.prepare_gelu(0.1, method="lut", out_scale=0.1)
    with pytest.raises(TypeError, match="int8"):
        qk.qgelu(np.zeros(4, np.uint8), pl)
    with pytest.raises(ValueError, match="out"):
        qk.qgelu(np.zeros(4, np.int8), pl, out=np.zeros(5, np.int8))
    with np.errstate(invalid="raise"), pytest.raises(FloatingPointError):  # raw ufunc, bad b
        _core.gelu_ibert(np.zeros(3, np.int8), np.int32(0), np.int64(5), np.int64(-1),
                         np.int64(-1), np.int32(1 << 30), np.int32(30), np.int32(0),
                         np.int32(-128), np.int32(127), out=np.empty(3, np.int8),
                         signature="billliiiii->b")


SIMD_SCRIPT = r"""
import sys, numpy as np, qkernels as qk
rng = np.random.default_rng(9)
out = {"isa": np.array(qk.show_config(mode="dicts")["simd"]["chosen"])}
for n in (1, 31, 32, 33, 63, 64, 65, 511, 512, 1000, 4099):
    for xdt in (np.int8, np.uint8):
        info = np.iinfo(xdt)
        x = rng.integers(info.min, info.max, n, endpoint=True).astype(xdt)
        for odt in (np.int8, np.uint8):
            p = qk.prepare_gelu(0.04, method="lut", x_dtype=xdt, out_scale=0.03, out_dtype=odt,
                                out_zero_point=0)
            out[f"lut_{n}_{np.dtype(xdt).name}_{np.dtype(odt).name}"] = qk.qgelu(x, p)
        p = qk.prepare_gelu(0.04, out_scale=0.03, x_zero_point=3 if xdt == np.uint8 else 0)
        out[f"ib_{n}_{np.dtype(xdt).name}"] = qk.qgelu(x, p)
    x = np.rint(rng.normal(0, 20000, n)).astype(np.int32)
    out[f"ib32_{n}"] = qk.qgelu(x, qk.prepare_gelu(1e-4, out_scale=0.03))
    # per channel (40: whole vectors and a tail per row), per-channel out scale, uint8
    sc = (10.0 ** rng.uniform(-4, -3, 40)).astype(np.float32)
    pc = qk.prepare_gelu(sc, out_scale=(0.02 * (1 + rng.random(40))).astype(np.float32),
                         out_dtype=np.uint8)
    out[f"ib32pc_{n}"] = qk.qgelu(np.rint(rng.normal(0, 2, (n, 40)) / sc).astype(np.int32), pc)
np.savez(sys.argv[1], **out)
"""


def test_simd_paths_give_the_same_bits(tmp_path):
    assert_simd_paths_equal(run_simd_paths(SIMD_SCRIPT, tmp_path))


def test_ibert_per_channel_out_scale(rng):
    """A per-channel out_scale (one output step per channel, e.g. folded into the next Linear's
    weights): each channel equals the one-channel call with its own scalar out_scale."""
    c = 24
    xs = (rng.uniform(1e-4, 5e-3, c)).astype(np.float32)
    os_ = (rng.uniform(0.005, 0.2, c)).astype(np.float32)
    x = rng.integers(-40000, 40000, (50, c)).astype(np.int32)
    p = qk.prepare_gelu(xs, out_scale=os_, out_zero_point=3, out_dtype=np.uint8)
    y = qk.qgelu(x, p)
    for j in range(c):
        pj = qk.prepare_gelu(xs[j:j + 1], out_scale=float(os_[j]), out_zero_point=3,
                             out_dtype=np.uint8)
        assert np.array_equal(y[:, j:j + 1], qk.qgelu(x[:, j:j + 1], pj))
    assert len(np.unique(y)) > 20
    with pytest.raises(ValueError, match="per-channel out_scale"):
        qk.prepare_gelu(0.01, out_scale=os_)
    with pytest.raises(ValueError, match="per-channel out_scale"):
        qk.prepare_gelu(xs, out_scale=os_[:5])
    with pytest.raises(ValueError, match="out_scale must be a scalar"):
        qk.prepare_gelu(0.01, method="lut", out_scale=os_)


def test_int32_per_channel_a_million_values_equal_reference(rng):
    """The MiniLM block's form: i-GELU on int32 FFN sums with per-channel input scales and
    per-channel output scales, uint8 out (the float-rounded loop), > 10^6 values."""
    c = 1536
    scales = (10.0 ** rng.uniform(-4.1, -2.6, c)).astype(np.float32)
    osc = (0.02 * (1 + rng.random(c))).astype(np.float32)
    p = qk.prepare_gelu(scales, out_scale=osc, out_dtype=np.uint8)
    x = np.rint(rng.normal(0, 2.0, (660, c)) / scales).astype(np.int32)
    x[0] = np.iinfo(np.int32).min
    x[1] = np.iinfo(np.int32).max
    assert x.size >= 1_000_000
    assert np.array_equal(qk.qgelu(x, p), _ref(x, p))
