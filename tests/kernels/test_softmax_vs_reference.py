"""Integer softmax (I-BERT i-exp, SOLE E2Softmax, 256-entry table) against the plain references of
tests/_transformer_ref.py, bit for bit: more than 10^6 outputs per method, including rows that
saturate (one dominant element, differences beyond I-BERT's 30 ln 2 clip, int32 extremes), rows
of equal values, and hand-made I-BERT parameters whose 16-bit requantization lands on exact
rounding ties. SIMD == scalar in subprocesses; bad input raises errors that name the argument."""
import numpy as np
import pytest

import qkernels as qk
from qkernels import _core
from _transformer_ref import ibert_softmax, lut_softmax, lut_table, sole_softmax
from _util import run_simd_paths


def _scores(rng, rows, cols, dtype, spread):
    """Random rows plus edge rows: all equal, one dominant, extremes of the type."""
    info = np.iinfo(dtype)
    x = np.clip(np.rint(rng.normal(0, spread, (rows, cols))), info.min, info.max).astype(dtype)
    x[0] = info.max
    x[1] = info.min
    x[2] = info.min
    x[2, cols // 2] = info.max                   # one dominant element: p = 1 saturates
    x[3] = rng.integers(info.min, info.max, cols, endpoint=True)  # the whole range
    x[4, ::2] = info.min
    x[4, 1::2] = info.min + 1
    return x


def _ibert_args(p):
    return int(p.x0), int(p.b), int(p.c), int(p.m16), int(p.e16)


@pytest.mark.parametrize("dtype,scale,spread", [
    (np.int8, 0.08, 25), (np.int8, 0.5, 40), (np.uint8, 0.03, 60), (np.int8, 0.0123, 90),
])
def test_ibert_8bit_equals_reference(rng, dtype, scale, spread):
    p = qk.prepare_softmax(scale, method="ibert")
    x = _scores(rng, 600, 197, dtype, spread)     # 118k outputs a case
    assert np.array_equal(qk.qsoftmax(x, p), ibert_softmax(x, *_ibert_args(p)))


@pytest.mark.parametrize("scale,spread", [(1e-3, 3000), (4e-5, 1e5), (0.02, 300), (1e-3, 9000)])
def test_ibert_int32_equals_reference(rng, scale, spread):
    # 51200 elements: the i-exp table for 1e-3 and 0.02 (2 x 30 |x0| + 2 elements or more; the
    # exponent's zero tail clipped), element by element for 4e-5
    p = qk.prepare_softmax(scale, method="ibert")
    x = _scores(rng, 400, 128, np.int32, spread)
    x[5, :64] = np.iinfo(np.int32).max            # differences of 2^32 - 1
    x[5, 64:] = np.iinfo(np.int32).min
    assert np.array_equal(qk.qsoftmax(x, p), ibert_softmax(x, *_ibert_args(p)))


def test_ibert_rounding_ties_and_saturation(rng):
    """Hand-made parameters: a small multiplier and e16 make RNE(z m16 / 2^(e16-30+q)) land on
    exact halves (shift 1 when e16 = 31 and q = 0: every odd z m16 is a tie), and large
    multipliers saturate the 16-bit exponent at 32767."""
    total = 0
    for e16 in (30, 31, 32, 34, 40, 47):
        for m16 in (1, 3, 77, 1001, 1 << 30, 1583594044, (1 << 31) - 1):
            for x0, b, c in ((-9, 34, 436), (-3, 11, 50), (-70, 270, 27900)):
                xp = (x0, b, c, m16, e16)
                # int8 (the 256-entry table) and int32 (the vector i-exp: e16 >= 31 here)
                for x in (rng.integers(-128, 128, (40, 77)).astype(np.int8),
                          rng.integers(-3000, 3000, (20, 77)).astype(np.int32)):
                    y = _core.softmax_ibert(x, np.int64(x0), np.int64(b), np.int64(c),
                                            np.int32(m16), np.int32(e16))
                    assert np.array_equal(y, ibert_softmax(x, *xp)), (xp, x.dtype)
                    total += y.size
    assert total > 100_000


@pytest.mark.parametrize("rounding", ["floor", "round"])
@pytest.mark.parametrize("dtype,scale,spread", [
    (np.int8, 0.08, 25), (np.uint8, 0.25, 50), (np.int8, 2.0 ** -4, 40), (np.int32, 1e-3, 4000),
])
def test_sole_equals_reference(rng, rounding, dtype, scale, spread):
    p = qk.prepare_softmax(scale, method="sole", rounding=rounding)
    x = _scores(rng, 700 if dtype != np.int32 else 300, 197, dtype, spread)
    m, sh, r = int(p.sole_mult), int(p.sole_shift), int(p.sole_round)
    assert np.array_equal(qk.qsoftmax(x, p), sole_softmax(x, m, sh, r))
    pl = qk.prepare_softmax(scale, method="sole", rounding=rounding, output="log2")
    e, bit = qk.qsoftmax(x, pl)
    e_ref, bit_ref = sole_softmax(x, m, sh, r, log2=True)
    assert np.array_equal(e, e_ref) and np.array_equal(bit, bit_ref)


def test_sole_log2exp_is_the_papers_shift_add_on_power_of_two_scales():
    """With S = 2^-f the Q16 value is exact, and k = -floor((v + (v >> 1) - (v >> 4)) / 2^16),
    the paper's 'x + x >> 1 - x >> 4'; checked on single-row inputs against the sum's definition."""
    p = qk.prepare_softmax(2.0 ** -3, method="sole")
    assert int(p.sole_mult) == 1 << 29 and int(p.sole_shift) == 16
    # row [0, -d]: k(-d) from the output of the second element, e = k + w - 16
    for d in range(0, 128):
        x = np.array([[0, -d]], np.int8)
        e, bit = qk.qsoftmax(x, qk.prepare_softmax(2.0 ** -3, method="sole", output="log2"))
        v = -d * (1 << 13)                                  # d * 2^-3 in Q16
        t = v + (v >> 1) - (v >> 4)
        k = min(-(t >> 16), 15)
        s = (1 << 16) + (1 << (16 - k))
        w = s.bit_length() - 1
        assert int(e[0, 1]) == k + w - 16 and int(e[0, 0]) == w - 16
        assert int(bit[0]) == (s >> (w - 1)) & 1


@pytest.mark.parametrize("dtype,scale,spread", [
    (np.int8, 0.08, 25), (np.uint8, 0.03, 60), (np.int8, 0.5, 60), (np.int8, 0.004, 100),
])
def test_lut_equals_reference(rng, dtype, scale, spread):
    p = qk.prepare_softmax(scale, method="lut")
    assert p.lut.tolist() == lut_table(scale)
    x = _scores(rng, 1300, 197, dtype, spread)
    assert np.array_equal(qk.qsoftmax(x, p), lut_softmax(x, p.lut))


def test_per_head_parameters_broadcast(rng):
    scales = np.array([0.05, 0.08, 0.11], np.float32)
    x = rng.integers(-128, 128, (2, 3, 9, 31)).astype(np.int8)
    for method in ("ibert", "sole", "lut"):
        p = qk.prepare_softmax(scales[:, None], method=method)   # (3, 1): per head
        y = qk.qsoftmax(x, p)
        for h in range(3):
            ph = qk.prepare_softmax(float(scales[h]), method=method)
            assert np.array_equal(y[:, h], qk.qsoftmax(x[:, h], ph)), method


def test_strided_input_and_out(rng):
    x = rng.integers(-128, 128, (64, 100)).astype(np.int8)
    p = qk.prepare_softmax(0.07)
    ref = qk.qsoftmax(np.ascontiguousarray(x[:, ::2]), p)
    assert np.array_equal(qk.qsoftmax(x[:, ::2], p), ref)
    out = np.empty((50, 64), np.uint8).T
    assert qk.qsoftmax(x[:, ::2], p, out=out) is out and np.array_equal(out, ref)
    assert qk.qsoftmax(np.zeros((0, 5), np.int8), p).shape == (0, 5)


def test_dequantize_and_accuracy_sanity(rng):
    q = np.clip(np.rint(rng.normal(0, 2, (50, 64)) / 0.03), -128, 127).astype(np.int8)
    x = q * 0.03
    ref = np.exp(x - x.max(-1, keepdims=True))
    ref /= ref.sum(-1, keepdims=True)
    for method in ("ibert", "lut"):
        p = qk.prepare_softmax(0.03, method=method)
        pr = qk.softmax_dequantize(qk.qsoftmax(q, p), p)
        assert np.abs(pr - ref).max() < 0.03, method
    p = qk.prepare_softmax(0.03, method="sole", output="log2")
    e, bit = qk.qsoftmax(q, p)
    pr = qk.softmax_dequantize((e, bit), p)
    assert np.allclose(pr, np.where(bit[..., None] == 1, 0.568, 0.818) * 2.0 ** -e.astype(float))


def test_errors_name_the_argument():
    x = np.zeros((2, 5), np.int8)
    with pytest.raises(ValueError, match="x_scale"):
        qk.prepare_softmax(0.0)
    with pytest.raises(ValueError, match="x_scale"):
        qk.prepare_softmax(float("nan"))
    with pytest.raises(ValueError, match="x_scale"):
        qk.prepare_softmax(1e-6, method="ibert")           # c beyond int32
    with pytest.raises(ValueError, match="method"):
        qk.prepare_softmax(0.1, method="exp")
    with pytest.raises(ValueError, match="output"):
        qk.prepare_softmax(0.1, method="ibert", output="log2")
    with pytest.raises(ValueError, match="rounding"):
        qk.prepare_softmax(0.1, method="sole", rounding="up")
    p = qk.prepare_softmax(0.1)
    with pytest.raises(TypeError, match="x must be"):
        qk.qsoftmax(x.astype(np.float32), p)
    with pytest.raises(TypeError, match="x must be uint8 or int8"):
        qk.qsoftmax(x.astype(np.int32), qk.prepare_softmax(0.1, method="lut"))
    with pytest.raises(TypeError, match="params"):
        qk.qsoftmax(x, 0.1)
    with pytest.raises(ValueError, match="broadcast"):
        qk.qsoftmax(x, qk.prepare_softmax(np.full(3, 0.1, np.float32)))
    with pytest.raises(ValueError, match="out"):
        qk.qsoftmax(x, p, out=np.zeros((2, 4), np.uint8))
    with pytest.raises(TypeError, match="out"):
        qk.qsoftmax(x, p, out=np.zeros((2, 5), np.int8))
    # the raw gufunc with parameters outside the kernel's range: the 'invalid' flag
    with np.errstate(invalid="raise"), pytest.raises(FloatingPointError):
        _core.softmax_ibert(x, np.int64(1), np.int64(1), np.int64(1), np.int32(1 << 30),
                            np.int32(40))


# Hand-made I-BERT sets the int32 lanes refuse (qk__iexp32_set) but the C API accepts, over calls
# of at least 2 (30 |x0| + 1) elements: the only parameters whose int32 input reaches the i-exp
# table's AVX2 / AVX-512 gathers (prepared sets take the int32 lanes; see softmax.c). One set per
# condition that keeps the table within 2^20 entries (e16 > 120 and m16 = 0 reach it too, but
# their V is 0 everywhere: a table of one value).
TABLE_SETS = {
    "e16_30": dict(x0=-694, b=2707, c=2792120, m16=1000, e16=30),         # e16 < 31
    "b_below_x0": dict(x0=-694, b=300, c=2792120, m16=1645, e16=53),      # b < |x0|
    "x0_x0b_2_31": dict(x0=-1000, b=2_200_000, c=2_000_000_000, m16=1 << 30, e16=75),
}                                                       # |x0| (|x0| + b) >= 2^31


def _table_input(rng, name, rows, cols):
    """int32 scores spread over the table's span (30 |x0|) and beyond, plus int32 extremes."""
    x = np.rint(rng.normal(0, -10 * TABLE_SETS[name]["x0"], (rows, cols))).astype(np.int32)
    x[0] = np.iinfo(np.int32).max
    x[1, ::3] = np.iinfo(np.int32).min
    return x


def _table_rows(name):
    """Rows enough for 2 (30 |x0| + 1) elements a call, and the call's column counts."""
    return 2 * (30 * -TABLE_SETS[name]["x0"] + 1) // 197 + 1, (197, 203)


def _run_table_set(x, xp):
    y = np.empty(x.shape, np.uint8)
    _core._softmax_run(x, 0, xp["x0"], xp["b"], xp["c"], xp["m16"], xp["e16"], y)
    return y


@pytest.mark.parametrize("name", sorted(TABLE_SETS))
def test_ibert_int32_table_sets_equal_reference(rng, name):
    """The i-exp table path (its gathers on this CPU's level) against the reference, tails of
    5 and 11 / 3 elements (197 and 203 columns on 16 and 8 lanes)."""
    xp = TABLE_SETS[name]
    rows, colss = _table_rows(name)
    for cols in colss:
        x = _table_input(rng, name, rows, cols)
        assert x.size >= 2 * (30 * -xp["x0"] + 1)
        ref = ibert_softmax(x, xp["x0"], xp["b"], xp["c"], xp["m16"], xp["e16"])
        assert np.array_equal(_run_table_set(x, xp), ref), (name, cols)


TABLE_SCRIPT = r"""
import sys, numpy as np
from qkernels import _core
inp = np.load(INPUT)
out = {}
for key in inp.files:
    if key.startswith("x_"):
        x, xp = inp[key], [int(v) for v in inp["p_" + key[2:]]]
        y = np.empty(x.shape, np.uint8)
        _core._softmax_run(x, 0, *xp, y)
        out[key[2:]] = y
np.savez(sys.argv[1], **out)
"""


def test_ibert_int32_table_sets_simd_paths_give_the_same_bits(rng, tmp_path):
    inp = {}
    for name, xp in TABLE_SETS.items():
        rows, colss = _table_rows(name)
        for cols in colss:
            inp[f"x_{name}_{cols}"] = _table_input(rng, name, rows, cols)
            inp[f"p_{name}_{cols}"] = np.array([xp[k] for k in ("x0", "b", "c", "m16", "e16")])
    np.savez(tmp_path / "input.npz", **inp)
    res = run_simd_paths(TABLE_SCRIPT.replace("INPUT", repr(str(tmp_path / "input.npz"))),
                         tmp_path)
    assert len(res["scalar"]) == 2 * len(TABLE_SETS)
    for key in res["scalar"]:
        assert np.array_equal(res["auto"][key], res["scalar"][key]), key
        assert np.array_equal(res["avx2"][key], res["scalar"][key]), key


SIMD_SCRIPT = r"""
import sys, numpy as np, qkernels as qk
rng = np.random.default_rng(5)
out = {"isa": np.array(qk.show_config(mode="dicts")["simd"]["chosen"]),
       "avx512": np.array(qk.show_config(mode="dicts")["simd"]["avx512_loops"])}
for dt, s, sp in ((np.int8, 0.08, 30), (np.uint8, 0.02, 70), (np.int32, 1e-3, 3000)):
    for cols in (1, 7, 16, 63, 64, 65, 197, 300):
        x = np.clip(np.rint(rng.normal(0, sp, (33, cols))), np.iinfo(dt).min, np.iinfo(dt).max).astype(dt)
        for m in ("ibert", "sole", "lut"):
            if m == "lut" and dt == np.int32:
                continue
            out[f"{m}_{np.dtype(dt).name}_{cols}"] = qk.qsoftmax(x, qk.prepare_softmax(s, method=m))
        e, b = qk.qsoftmax(x, qk.prepare_softmax(s, method="sole", output="log2"))
        out[f"log2_{np.dtype(dt).name}_{cols}"] = e
        out[f"bit_{np.dtype(dt).name}_{cols}"] = b
# int32 I-BERT over many elements: the i-exp table and its gathers (tails of every width)
for cols in (197, 200, 211):
    x = np.rint(rng.normal(0, 8000, (230, cols))).astype(np.int32)
    x[0] = np.iinfo(np.int32).max
    x[1, ::3] = np.iinfo(np.int32).min
    out[f"ibert_table_{cols}"] = qk.qsoftmax(x, qk.prepare_softmax(1e-3, method="ibert"))
np.savez(sys.argv[1], **out)
"""


def test_simd_paths_give_the_same_bits(tmp_path):
    res = run_simd_paths(SIMD_SCRIPT, tmp_path)
    assert str(res["scalar"]["isa"]) == "scalar"
    for key in res["scalar"]:
        if key in ("isa", "avx512"):
            continue
        assert np.array_equal(res["auto"][key], res["scalar"][key]), key
        assert np.array_equal(res["avx2"][key], res["scalar"][key]), key


@pytest.mark.parametrize("method", ["ibert", "sole"])
def test_int32_a_million_values_equal_reference(rng, method):
    """The int32 forms the MiniLM blocks call (Q K^T sums, scale s_q s_k / sqrt(32) ~ 3e-4):
    > 10^6 values over rows of 197 (vector tails), masked keys at int32's minimum, saturating
    rows, against the element-by-element references (I-BERT: its float-rounded lanes with their
    exact redo near ties; SOLE: the threshold search)."""
    p = qk.prepare_softmax(3.1e-4, method=method)
    x = np.rint(rng.normal(0, 6000, (5200, 197))).astype(np.int32)
    x[::7, 150:] = np.iinfo(np.int32).min                   # masked keys
    x[3, :] = np.iinfo(np.int32).max                          # all equal
    x[4, :5] = np.iinfo(np.int32).max                         # differences of ~2^32
    assert x.size >= 1_000_000
    if method == "ibert":
        ref = ibert_softmax(x, *_ibert_args(p))
    else:
        ref = sole_softmax(x, int(p.sole_mult), int(p.sole_shift), int(p.sole_round))
    assert np.array_equal(qk.qsoftmax(x, p), ref)
