"""The row-max exp2 softmax (prepare_softmax(method="exp2", output="rowmax"), qk_softmax_exp2)
against the plain reference of tests/_transformer_ref.py, bit for bit: more than 10^6 outputs on
int32 scores (masked keys at int32's minimum, int32's extremes, the cap), 8-bit input, exact
rounding ties of both roundings (hand-made multipliers and tables), SIMD == scalar, the prepared
constants against their definition, the error against torch-free float softmax, errors that name
the argument."""
import dataclasses
import math

import numpy as np
import pytest

import qkernels as qk
from qkernels import _core
from _transformer_ref import exp2_table, softmax_exp2
from _util import assert_simd_paths_equal, run_simd_paths


def _ref(x, p):
    return softmax_exp2(x, p.exp2_mult, p.exp2_shift, p.exp2_cap, table=p.exp2_table)


def _scores(rng, shape, scale, masked=True):
    x = np.clip(np.rint(rng.normal(0, 4, shape) / scale), -2 ** 31, 2 ** 31 - 1).astype(np.int32)
    r = x.reshape(-1, shape[-1])
    if masked:
        r[::7, shape[-1] // 2:] = np.iinfo(np.int32).min     # masked keys
    r[1] = 2 ** 31 - 1                                       # all equal: 255 everywhere
    r[2] = np.iinfo(np.int32).min
    r[2, 3] = 2 ** 31 - 1                                    # d = 2^32 - 1
    r[3] = rng.integers(-2 ** 31, 2 ** 31, shape[-1])         # the whole range
    return x


def test_prepared_constants_are_their_definition():
    assert np.array_equal(qk.prepare_softmax(1e-3, method="exp2", output="rowmax").exp2_table,
                          exp2_table())
    for s in (1e-3, 3e-4, 0.05, 1.7, 2.0 ** -20):
        p = qk.prepare_softmax(s, method="exp2", output="rowmax")
        mant, ex = math.frexp(float(np.float32(s)) * math.log2(math.e) * 1024)
        assert p.exp2_mult == math.floor(mant * 2.0 ** 31 + 0.5) and p.exp2_shift == 31 - ex
        # cap: the smallest d with d M >= 17 2^(10 + E)
        lim = 17 << (10 + p.exp2_shift)
        assert p.exp2_cap * p.exp2_mult >= lim > (p.exp2_cap - 1) * p.exp2_mult
        assert p.out_scale == 1.0 / 255


@pytest.mark.parametrize("scale", [1e-3, 3e-4, 0.02])
def test_a_million_int32_values_equal_reference(rng, scale):
    p = qk.prepare_softmax(scale, method="exp2", output="rowmax")
    x = _scores(rng, (12, 197, 197), scale)
    y = qk.qsoftmax(x, p)
    r = _ref(x, p)
    assert np.array_equal(y, r), int((y != r).sum())
    assert (y.max(axis=-1) == 255).all()                     # the row maximum is 255


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_8bit_input_equals_reference(rng, dtype):
    p = qk.prepare_softmax(0.08, method="exp2", output="rowmax")
    info = np.iinfo(dtype)
    x = rng.integers(info.min, info.max, (500, 129), endpoint=True).astype(dtype)
    x[0] = info.min
    x[1, 0] = info.max
    assert np.array_equal(qk.qsoftmax(x, p), _ref(x, p))


def test_rounding_ties(rng):
    """z = RHU(d / 2) (M = 2^30, E = 31): odd d are ties. The product rounding RHU(T_hi T_lo /
    2^15) ties when T_hi = 2^14 and T_lo is odd; the output rounding RHU(255 e / 2^(15 + k)) has
    exact ties only at e = 2^(14 + k) (255 is odd): e = 16384 (k = 0) and 32768 (k = 1). A table
    of such values (T_hi = 2^15 passes T_lo through as e), and for each k the e nearest a tie."""
    p0 = qk.prepare_softmax(1e-3, method="exp2", output="rowmax")
    v = np.arange(32769, dtype=np.int64)
    near = [16384, 16383, 16385, 32768, 32767]
    for k in range(17):
        m = 1 << (15 + k)
        r = (255 * v + (1 << (14 + k))) % m               # 0: a tie; m - 1 or 1: near one
        near += [int(v[np.argmin(r)]), int(v[np.argmax(r)]), int(v[np.argmin(np.where(r, r, m))])]
    near = list(dict.fromkeys(near))[:32]
    t = np.empty(64, np.int32)
    t[:32] = rng.integers(0, 32769, 32)
    t[:6] = [32768, 16384, 16385, 16383, 32767, 1]
    t[32:] = rng.integers(0, 16384, 32) * 2 + 1                # odd: ties with T_hi = 2^14
    t[32:32 + len(near)] = near
    p = dataclasses.replace(p0, exp2_mult=1 << 30, exp2_shift=31,
                            exp2_cap=(17 << 11) + 1, exp2_table=t)
    d = np.arange(0, (17 << 11) + 40, dtype=np.int64)
    x = (1000 - d).astype(np.int32)[None, :]
    x = np.concatenate([x, x[:, ::-1], x + 7]).astype(np.int32)
    assert np.array_equal(qk.qsoftmax(x, p), _ref(x, p))


def test_error_against_float_softmax(rng):
    """The probabilities y / sum y against the float softmax of the same integer scores."""
    s = 1e-3
    p = qk.prepare_softmax(s, method="exp2", output="rowmax")
    x = np.rint(rng.normal(0, 3, (64, 128)) / s).astype(np.int32)
    v = x.astype(np.float64) * s
    e = np.exp(v - v.max(axis=-1, keepdims=True))
    want = e / e.sum(axis=-1, keepdims=True)
    y = qk.qsoftmax(x, p)
    # each exponential is within half a step (plus the tables' and the product's roundings,
    # below 2^-15 relative each, with 2^-11 the bound of the kernel's 2^-10 grid of z) of 255 exp
    delta = 0.5 + 255 * 2.0 ** -11 + 1e-9
    assert np.abs(y - 255 * e).max() <= delta
    # normalised: |y_i / Y - p_i| <= delta (1 + n p_i) / Y (Y = sum y, n the row's length)
    got = qk.softmax_dequantize(y, p)
    yy = y.sum(axis=-1, keepdims=True, dtype=np.float64)
    assert (np.abs(got - want) <= delta * (1 + 128 * want) / yy).all()


def test_out_strides_and_empty(rng):
    p = qk.prepare_softmax(1e-3, method="exp2", output="rowmax")
    x = _scores(rng, (40, 33), 1e-3, masked=False)
    out = np.empty((40, 33), np.uint8)
    assert qk.qsoftmax(x, p, out=out) is out
    assert np.array_equal(out, _ref(x, p))
    xs = np.asfortranarray(x)
    assert np.array_equal(qk.qsoftmax(xs, p), _ref(x, p))
    assert qk.qsoftmax(np.zeros((3, 0), np.int32), p).shape == (3, 0)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="rowmax"):
        qk.prepare_softmax(1e-3, method="exp2")
    with pytest.raises(ValueError, match="rowmax"):
        qk.prepare_softmax(1e-3, method="ibert", output="rowmax")
    with pytest.raises(ValueError, match="x_scale"):
        qk.prepare_softmax(np.full(4, 1e-3), method="exp2", output="rowmax")
    with pytest.raises(ValueError, match="x_scale"):
        qk.prepare_softmax(1e-12, method="exp2", output="rowmax")
    with pytest.raises(ValueError, match="x_scale"):
        qk.prepare_softmax(-1.0, method="exp2", output="rowmax")
    p = qk.prepare_softmax(1e-3, method="exp2", output="rowmax")
    with pytest.raises(TypeError, match="dtype"):
        qk.qsoftmax(np.zeros(4, np.int16), p)
    x, y = np.zeros((2, 4), np.int32), np.empty((2, 4), np.uint8)
    t = exp2_table().astype(np.int32)
    with pytest.raises(ValueError, match="qsoftmax"):        # shift out of [1, 62]
        _core._softmax_exp2(x, p.exp2_mult, 0, p.exp2_cap, t, y)
    with pytest.raises(ValueError, match="qsoftmax"):        # z may leave int32
        _core._softmax_exp2(x, p.exp2_mult, 1, 2 ** 31 - 1, t, y)
    with pytest.raises(ValueError, match="qsoftmax"):        # negative multiplier
        _core._softmax_exp2(x, -1, p.exp2_shift, p.exp2_cap, t, y)
    bad = t.copy()
    bad[3] = 40000
    with pytest.raises(ValueError, match="qsoftmax"):        # a table value above 2^15
        _core._softmax_exp2(x, p.exp2_mult, p.exp2_shift, p.exp2_cap, bad, y)
    with pytest.raises(ValueError, match="table"):
        _core._softmax_exp2(x, p.exp2_mult, p.exp2_shift, p.exp2_cap, t[:10], y)


SIMD_SCRIPT = r"""
import sys, numpy as np, qkernels as qk
rng = np.random.default_rng(12)
out = {"isa": np.array(qk.show_config(mode="dicts")["simd"]["chosen"])}
for cols in (1, 7, 8, 9, 15, 16, 17, 33, 128, 197, 1000):
    for s in (1e-3, 0.05):
        p = qk.prepare_softmax(s, method="exp2", output="rowmax")
        x = np.rint(rng.normal(0, 4, (20, cols)) / s).astype(np.int32)
        x[0, : cols // 2] = np.iinfo(np.int32).min
        x[1] = rng.integers(-2 ** 31, 2 ** 31, cols)
        out[f"s_{cols}_{s}"] = qk.qsoftmax(x, p)
np.savez(sys.argv[1], **out)
"""


def test_simd_paths_give_the_same_bits(tmp_path):
    assert_simd_paths_equal(run_simd_paths(SIMD_SCRIPT, tmp_path))
