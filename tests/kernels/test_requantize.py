"""requantize / requantize_float / requantize_shift / quantize_multiplier against plain integer
references written from SPEC sections 3 and 4 (gemmlowp, TFLite, FBGEMM, shift hardware)."""
import math

import numpy as np
import pytest

import qkernels as qk

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
OUT_TYPES = [np.int8, np.uint8, np.int16, np.uint16, np.int32]


# ---- references (numpy int64 / float64, exact) ----------------------------------------------
def ref_srdhm(a, b):
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    v = ab + nudge
    q = np.where(v >= 0, v // (1 << 31), -((-v) // (1 << 31)))  # C division truncates
    return np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, q)


def ref_rdbpot(x, e):
    x = np.asarray(x, np.int64)
    mask = (np.int64(1) << e) - 1
    rem = x & mask
    th = (mask >> 1) + (x < 0)
    return (x >> e) + (rem > th)


def ref_double(acc, m, shift):
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    return ref_rdbpot(ref_srdhm(np.asarray(acc, np.int64) << left, m), right)


def ref_single(acc, m, shift):
    t = 31 - np.asarray(shift, np.int64)
    return (np.asarray(acc, np.int64) * m + (np.int64(1) << (t - 1))) >> t


def ref_clamp(r, zp, dtype, qmin=None, qmax=None):
    info = np.iinfo(dtype)
    lo = info.min if qmin is None else qmin
    hi = info.max if qmax is None else qmax
    return np.clip(np.asarray(r, np.int64) + zp, lo, hi).astype(dtype)


def accumulators(rng, n):
    """Full-range, small, and near-half-step accumulators, plus the int32 edges."""
    parts = [rng.integers(INT32_MIN, INT32_MAX, n // 3, endpoint=True),
             rng.integers(-5000, 5000, n // 3),
             (rng.integers(-1 << 15, 1 << 15, n - 2 * (n // 3)) << rng.integers(0, 16)) + rng.integers(-1, 2),
             np.array([0, 1, -1, 2, -2, INT32_MIN, INT32_MAX, INT32_MIN + 1, 1 << 30, -(1 << 30)])]
    return np.clip(np.concatenate(parts), INT32_MIN, INT32_MAX).astype(np.int32)


# ---- check values of SPEC section 4 -----------------------------------------------------------
def test_spec_check_values():
    m, s = 1 << 30, -1  # exactly 0.25
    assert qk.requantize(np.int32([1]), m, s, scheme="double_round")[0] == 1
    assert qk.requantize(np.int32([1]), m, s, scheme="single_round")[0] == 0
    assert qk.requantize(np.int32([-2]), m, s, scheme="double_round")[0] == -1
    assert qk.requantize(np.int32([-2]), m, s, scheme="single_round")[0] == 0
    assert qk.requantize_float(np.int32([-2]), 0.25)[0] == 0
    assert qk.requantize(np.int32([7984]), 1583594044, -9, scheme="double_round")[0] == 12
    assert qk.requantize(np.int32([7984]), 1583594044, -9, scheme="single_round")[0] == 11


@pytest.mark.parametrize("dtype", OUT_TYPES)
@pytest.mark.parametrize("scheme", ["double_round", "single_round"])
def test_fixed_point_equals_reference(rng, dtype, scheme):
    acc = accumulators(rng, 100_000)
    info = np.iinfo(dtype)
    for trial in range(12):
        m = int(rng.integers(1 << 30, 1 << 31)) if trial else 0
        shift = int(rng.integers(-31, 1))
        zp = int(rng.integers(max(info.min, -100), min(info.max, 100) + 1))
        got = qk.requantize(acc, m, shift, zp, scheme=scheme, dtype=dtype)
        r = ref_double(acc, m, shift) if scheme == "double_round" else ref_single(acc, m, shift)
        np.testing.assert_array_equal(got, ref_clamp(r, zp, dtype), err_msg=f"m={m} shift={shift}")


@pytest.mark.parametrize("scheme", ["double_round", "single_round"])
def test_left_shift_multipliers(rng, scheme):
    """Multipliers >= 1 (shift > 0): legal; double_round errors when acc << shift leaves int32."""
    for shift in range(1, 31):
        lim = (1 << (31 - shift)) - 1
        acc = rng.integers(-lim, lim + 1, 20_000).astype(np.int32)
        m = int(rng.integers(1 << 30, 1 << 31))
        got = qk.requantize(acc, m, shift, scheme=scheme, dtype=np.int32)
        r = ref_double(acc, m, shift) if scheme == "double_round" else ref_single(acc, m, shift)
        np.testing.assert_array_equal(got, ref_clamp(r, 0, np.int32))


def test_double_round_overflow_is_an_error():
    acc = np.int32([5, 1 << 29, 7])
    with pytest.raises(qk.AccumulatorOverflowError, match=r"acc at index \(1,\)"):
        qk.requantize(acc, 1 << 30, 2)
    # (multiplier 2.0: 2^29 * 2 fits in int32, but TFLite's acc << 2 wraps before the multiply.)
    # single rounding computes the exact product in int64: no wrap, no error
    assert qk.requantize(acc, 1 << 30, 2, scheme="single_round", dtype=np.int32)[1] == 1 << 30
    # and saturates when the result itself leaves the output range
    assert qk.requantize(np.int32([INT32_MAX]), 1 << 30, 2, scheme="single_round",
                         dtype=np.int32)[0] == INT32_MAX


def test_mixed_rounding_disagreement_rate(rng):
    """SPEC: double and single rounding disagree on ~4% of random inputs, always by 1."""
    acc = rng.integers(-(1 << 20), 1 << 20, 200_000).astype(np.int32)
    m, shift = qk.quantize_multiplier(0.00123)
    a = qk.requantize(acc, m, shift, scheme="double_round", dtype=np.int32).astype(np.int64)
    b = qk.requantize(acc, m, shift, scheme="single_round", dtype=np.int32).astype(np.int64)
    assert np.abs(a - b).max() == 1
    assert 0.001 < np.mean(a != b) < 0.1


@pytest.mark.parametrize("dtype", OUT_TYPES)
def test_per_channel_fixed_point(rng, dtype):
    acc = rng.integers(-(1 << 24), 1 << 24, (7, 33, 5)).astype(np.int32)
    m = rng.integers(1 << 30, 1 << 31, 33)
    shift = rng.integers(-20, -5, 33)
    zp = 0 if dtype in (np.int8, np.int16, np.int32) else 10
    got = qk.requantize(acc, m, shift, zp, dtype=dtype, axis=1)
    ref = ref_clamp(ref_double(acc, m[:, None], shift[:, None]), zp, dtype)
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("dtype", OUT_TYPES)
def test_requantize_float_equals_reference(rng, dtype):
    acc = accumulators(rng, 100_000)
    info = np.iinfo(dtype)
    for trial in range(10):
        scale = np.float32(rng.random() * 10.0 ** rng.integers(-9, 0))
        zp = int(rng.integers(max(info.min, -100), min(info.max, 100) + 1))
        f = acc.astype(np.float32) * scale  # fl(fl((float)acc) * scale)
        ref = np.clip(np.rint(f.astype(np.float64)) + zp, info.min, info.max).astype(dtype)
        np.testing.assert_array_equal(qk.requantize_float(acc, scale, zp, dtype=dtype), ref)
    # exact ties: acc * 0.5 lands on k + 0.5 -> RNE
    ties = np.arange(-1001, 1001, dtype=np.int32)
    np.testing.assert_array_equal(qk.requantize_float(ties, 0.5, dtype=np.int32),
                                  np.rint(ties / 2).astype(np.int32))


SHIFT_REFS = {
    "half_up": lambda a, n: np.floor(a / 2.0 ** n + 0.5),
    "half_even": lambda a, n: np.rint(a / 2.0 ** n),
    "half_away": lambda a, n: np.sign(a) * np.floor(np.abs(a) / 2.0 ** n + 0.5),
    "floor": lambda a, n: np.floor(a / 2.0 ** n),
}


@pytest.mark.parametrize("rounding", list(SHIFT_REFS))
@pytest.mark.parametrize("dtype", OUT_TYPES)
def test_requantize_shift_equals_reference(rng, rounding, dtype):
    acc = accumulators(rng, 60_000)
    info = np.iinfo(dtype)
    for shift in list(range(-3, 32)):
        zp = 3 if info.min < 0 else 17
        exact = SHIFT_REFS[rounding](acc.astype(np.float64), shift)  # exact in float64
        ref = np.clip(exact + zp, info.min, info.max).astype(dtype)
        got = qk.requantize_shift(acc, shift, zp, rounding=rounding, dtype=dtype)
        np.testing.assert_array_equal(got, ref, err_msg=f"shift={shift}")


def ref_quantize_multiplier(m):
    if m == 0:
        return 0, 0
    q, e = math.frexp(m)
    q_fixed = int(math.floor(q * 2 ** 31 + 0.5))  # RHAZ for q > 0
    if q_fixed == 1 << 31:
        q_fixed //= 2
        e += 1
    if e < -31:
        return 0, 0
    return q_fixed, e


def test_quantize_multiplier_equals_tflite_reference(rng):
    ms = np.concatenate([rng.random(20_000) * 10.0 ** rng.integers(-12, 9, 20_000),
                         [0.0, 0.25, 0.5, 1.0, 2.0 ** -31, 2.0 ** -32, 2.0 ** -33, 1 - 2.0 ** -33,
                          0.99999999977, 3.0, 2.0 ** 29]])
    ms = ms[ms < 2.0 ** 30]
    m0, shift = qk.quantize_multiplier(ms)
    assert m0.dtype == np.int32 and shift.dtype == np.int32
    ref = np.array([ref_quantize_multiplier(float(m)) for m in ms])
    np.testing.assert_array_equal(m0, ref[:, 0])
    np.testing.assert_array_equal(shift, ref[:, 1])
    # and the pair represents m to 2^-31 relative accuracy
    nz = m0 != 0
    approx = m0[nz] * np.exp2(shift[nz].astype(np.float64) - 31)
    assert np.all(np.abs(approx - ms[nz]) <= ms[nz] * 2.0 ** -30)


def test_quantize_multiplier_then_requantize_matches_float(rng):
    """End to end: a real scale through quantize_multiplier + double_round is within 1 of the
    exact rounded product (it is the fixed-point approximation of it)."""
    acc = rng.integers(-(1 << 22), 1 << 22, 50_000).astype(np.int32)
    for real in (0.0003, 0.0123, 0.5, 0.999):
        m, s = qk.quantize_multiplier(real)
        got = qk.requantize(acc, m, s, dtype=np.int32).astype(np.int64)
        assert np.abs(got - np.rint(acc * real)).max() <= 1


def _round_f32(r):
    """The float32 nearest to the exact rational r (ties to even), without double rounding."""
    from fractions import Fraction

    c = np.float32(float(r))
    best = None
    for cand in (np.nextafter(c, np.float32(-np.inf)), c, np.nextafter(c, np.float32(np.inf))):
        d = abs(Fraction(float(cand)) - r)
        key = (d, int(np.float32(cand).view(np.int32)) & 1)
        if best is None or key < best[0]:
            best = (key, cand)
    return best[1]


def test_accumulator_to_float_is_one_fused_rounding(rng):
    from fractions import Fraction

    acc = np.concatenate([rng.integers(-(1 << 31), 1 << 31, 3000), rng.integers(-300, 300, 1000),
                          [0, 1, -1, (1 << 31) - 1, -(1 << 31)]]).astype(np.int32)
    for scale, bias in ((np.float32(1.37e-5), np.float32(-0.3)), (np.float32(0.5), np.float32(0.25)),
                        (np.float32(3.1e-9), np.float32(1.7))):
        got = qk.accumulator_to_float(acc, scale, bias)
        ref = np.array([_round_f32(Fraction(float(np.float32(a))) * Fraction(float(scale))
                                   + Fraction(float(bias))) for a in acc], np.float32)
        np.testing.assert_array_equal(got.view(np.int32), ref.view(np.int32))
    # per output channel along the last axis
    a2 = rng.integers(-1000, 1000, (5, 7)).astype(np.int32)
    s2 = rng.random(7).astype(np.float32) + 0.1
    b2 = rng.standard_normal(7).astype(np.float32)
    got = qk.accumulator_to_float(a2, s2, b2, axis=1)
    for j in range(7):
        np.testing.assert_array_equal(got[:, j], qk.accumulator_to_float(a2[:, j], s2[j], b2[j]))
    with pytest.raises(ValueError, match="bias"):
        qk.accumulator_to_float(a2, 1.0, np.inf)


# ---- the 8-bit SIMD loops (64-bit lanes) on their edges ----------------------------------------
def tie_accumulators(rng, m, shift, n=1500):
    """Accumulators whose products x * m sit on, or one step beside, the rounding ties of the
    first (2^31) and of the combined (2^(31 - shift)) division, plus the int32 edges."""
    parts = [np.array([INT32_MIN, INT32_MIN + 1, INT32_MAX, INT32_MAX - 1, 0, 1, -1, 2, -2, 3, -3,
                       1 << 30, -(1 << 30), (1 << 30) + 1, -(1 << 30) - 1], np.int64),
             rng.integers(INT32_MIN, INT32_MAX, n, endpoint=True),
             rng.integers(-5000, 5000, n // 2)]
    if m > 0:
        for k in {31, 31 - shift}:
            ties = rng.integers(-(1 << 40), 1 << 40, n // 2) * (np.int64(1) << k) + (np.int64(1) << (k - 1))
            for d in (-1, 0, 1):
                x = ties // m + d
                parts.append(x[(x >= INT32_MIN) & (x <= INT32_MAX)])
    acc = np.concatenate(parts)
    if shift > 0:  # double_round: acc << shift must fit int32
        acc = np.clip(acc, INT32_MIN >> shift, INT32_MAX >> shift)
    return acc.astype(np.int32)


EIGHT_BIT_RANGES = [(np.int8, -4, None, None), (np.int8, 127, None, None), (np.int8, -128, None, None),
                    (np.int8, 3, -20, 90), (np.uint8, 0, None, None), (np.uint8, 255, None, None),
                    (np.uint8, 10, None, None), (np.uint8, 200, 7, 250)]


@pytest.mark.parametrize("scheme", ["double_round", "single_round"])
def test_fixed_point_8bit_every_shift_ties_and_edges(rng, scheme):
    """Every shift in [-31, 30], multipliers 0 / 1 / 2^30 / INT32_MAX / random, accumulators on
    the ties of both rounding steps, zero points at the ends of the range (v + zp must saturate,
    not wrap), narrowed qmin/qmax: the exact integer reference."""
    for shift in range(-31, 31):
        for m in (0, 1, 3, 1 << 30, (1 << 30) + 1, 1583594044, INT32_MAX, int(rng.integers(0, 1 << 31))):
            acc = tie_accumulators(rng, m, shift)
            r = ref_double(acc, m, shift) if scheme == "double_round" else ref_single(acc, m, shift)
            dt, zp, lo, hi = EIGHT_BIT_RANGES[(shift + m) % len(EIGHT_BIT_RANGES)]
            got = qk.requantize(acc, m, shift, zp, scheme=scheme, dtype=dt, qmin=lo, qmax=hi)
            np.testing.assert_array_equal(got, ref_clamp(r, zp, dt, lo, hi),
                                          err_msg=f"m={m} shift={shift} zp={zp} {lo} {hi}")


def test_fixed_point_8bit_saturating_zero_point():
    """v near INT32_MAX plus a positive zero point: 255 / 127, never a wrapped value."""
    acc = np.full(200, INT32_MAX, np.int32)
    for scheme in ("double_round", "single_round"):
        assert (qk.requantize(acc, INT32_MAX, 0, 10, scheme=scheme, dtype=np.uint8) == 255).all()
        assert (qk.requantize(acc, INT32_MAX, 0, 5, scheme=scheme, dtype=np.int8) == 127).all()
        assert (qk.requantize(-acc, INT32_MAX, 0, -5, scheme=scheme, dtype=np.int8) == -128).all()


def test_double_round_overflow_inside_a_long_array(rng):
    """The SIMD loop stops before the block holding the overflow; the error names its index."""
    acc = rng.integers(-1000, 1000, 5000).astype(np.int32)
    acc[1234] = 1 << 29
    with pytest.raises(qk.AccumulatorOverflowError, match=r"acc at index \(1234,\)"):
        qk.requantize(acc, 1 << 30, 2)
    acc[1234] = (1 << 28) - 1  # just inside: (2^28 - 1) << 2 fits int32
    got = qk.requantize(acc, 1 << 30, 2, dtype=np.int8)
    np.testing.assert_array_equal(got, ref_clamp(ref_double(acc, 1 << 30, 2), 0, np.int8))


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_per_channel_fixed_point_8bit(rng, dtype):
    """Per-channel on a leading axis (long contiguous runs: the SIMD loops) and on the last one."""
    acc = rng.integers(-(1 << 24), 1 << 24, (5, 3000)).astype(np.int32)
    m = rng.integers(1 << 30, 1 << 31, 5)
    shift = rng.integers(-20, -5, 5)
    zp = 0 if dtype == np.int8 else 10
    got = qk.requantize(acc, m, shift, zp, dtype=dtype, axis=0)
    np.testing.assert_array_equal(got, ref_clamp(ref_double(acc, m[:, None], shift[:, None]), zp, dtype))
    got = qk.requantize(acc.T.copy(), m, shift, zp, dtype=dtype, axis=1, scheme="single_round")
    np.testing.assert_array_equal(got, ref_clamp(ref_single(acc.T, m, shift), zp, dtype))


@pytest.mark.parametrize("dt, zp, lo, hi", EIGHT_BIT_RANGES)
def test_float_and_shift_8bit_ranges(rng, dt, zp, lo, hi):
    acc = tie_accumulators(rng, 0, 0)
    for scale in (1e-9, 0.00123, 0.5, 3.0, 1e6):
        r = np.rint((acc.astype(np.float32) * np.float32(scale)).astype(np.float64))
        got = qk.requantize_float(acc, scale, zp, dtype=dt, qmin=lo, qmax=hi)
        np.testing.assert_array_equal(got, ref_clamp(np.clip(r, -(1 << 40), 1 << 40), zp, dt, lo, hi))
    for shift in (1, 2, 9, 30, 31):
        got = qk.requantize_shift(acc, shift, zp, rounding="half_up", dtype=dt, qmin=lo, qmax=hi)
        r = (acc.astype(np.int64) + (1 << (shift - 1))) >> shift
        np.testing.assert_array_equal(got, ref_clamp(r, zp, dt, lo, hi))
