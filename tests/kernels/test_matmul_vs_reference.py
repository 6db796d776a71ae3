"""int8 x int8 batched matmul of two activations (qkernels.qmatmul / matmul_int32) against plain
int64 sums and the SPEC section 4 requantizations, bit for bit: every type pair, both layouts of
b, K at and around the 4-byte quads, zero points at the type ends, per-head parameters, the
accumulator bound, threads 1 == 2, SIMD == scalar, and errors that name the argument. The
runtimes themselves: test_matmul_vs_onnxruntime.py (QLinearMatMul), test_matmul_vs_torch.py."""
import math

import numpy as np
import pytest

import qkernels as qk
from _gemm_ref import quantize_multiplier, requant_double, requant_single
from _transformer_ref import matmul_acc, requant_fp32, requant_shift
from _util import run_simd_paths

TYPES = [(np.int8, np.int8), (np.uint8, np.int8), (np.uint8, np.uint8), (np.int8, np.uint8)]


def _rand(rng, dtype, shape):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)


@pytest.mark.parametrize("at,bt", TYPES)
@pytest.mark.parametrize("transpose_b", [True, False])
def test_int32_sums_equal_reference(rng, at, bt, transpose_b):
    n_out = 0
    for (bsz, m, k, n) in [(3, 5, 7, 9), (2, 13, 1, 17), (1, 1, 4, 16), (4, 12, 3, 15),
                           (2, 25, 33, 31), (12, 128, 32, 128), (2, 197, 64, 197), (1, 6, 0, 3)]:
        a = _rand(rng, at, (bsz, m, k))
        b = _rand(rng, bt, (bsz, n, k) if transpose_b else (bsz, k, n))
        za = _rand(rng, at, (bsz,)).astype(np.int32)
        zb = _rand(rng, bt, (bsz,)).astype(np.int32)
        za[0], zb[0] = np.iinfo(at).min, np.iinfo(bt).max      # zero points at the type ends
        y = qk.matmul_int32(a, b, a_zero_point=za, b_zero_point=zb, transpose_b=transpose_b)
        assert y.dtype == np.int32
        assert np.array_equal(y, matmul_acc(a, b, za, zb, transpose_b)), (bsz, m, k, n)
        n_out += y.size
    assert n_out > 200_000


@pytest.mark.parametrize("at,bt", TYPES)
def test_onnxruntime_preset_equals_fp32_reference(rng, at, bt):
    a, b = _rand(rng, at, (12, 128, 32)), _rand(rng, bt, (12, 128, 32))
    za, zb = int(_rand(rng, at, ())), int(_rand(rng, bt, ()))
    for sa, sb, so, ozp in ((0.05, 0.04, 0.5, 3), (0.0173, 0.1, 1 / 3, -7), (1.0, 1.0, 997.0, 0)):
        odt = at
        lo, hi = int(np.iinfo(odt).min), int(np.iinfo(odt).max)
        ozp = min(max(ozp, lo), hi)
        y = qk.qmatmul(a, b, transpose_b=True, a_scale=sa, b_scale=sb, out_scale=so,
                       a_zero_point=za, b_zero_point=zb, out_zero_point=ozp)
        scale = np.float32(np.float32(np.float32(sa) * np.float32(sb)) / np.float32(so))
        ref = requant_fp32(matmul_acc(a, b, za, zb, True), np.full(12, scale), ozp, lo, hi)
        assert y.dtype == odt and np.array_equal(y, ref)


@pytest.mark.parametrize("scheme", ["double_round", "single_round"])
def test_tflite_preset_equals_fixed_point_reference(rng, scheme):
    a, b = _rand(rng, np.int8, (6, 64, 48)), _rand(rng, np.int8, (6, 48, 40))
    # TFLite BATCH_MATMUL: GetQuantizedConvolutionMultipler(lhs, rhs, output) takes
    # (double)(lhs_scale * rhs_scale) / (double)output_scale, the product in float32; with these
    # scales the product in double would give another M0
    sa, sb, so = 0.7013718485832214, 0.008619743399322033, 0.01861998625099659
    y = qk.qmatmul(a, b, a_scale=sa, b_scale=sb, out_scale=so, a_zero_point=-3, b_zero_point=0,
                   out_zero_point=5, preset="tflite", scheme=scheme)
    f32 = np.float32
    m0, shift = quantize_multiplier(float(f32(f32(sa) * f32(sb))) / float(f32(so)))
    assert m0 != quantize_multiplier(float(f32(sa)) * float(f32(sb)) / float(f32(so)))[0]
    e = qk.presets.get("tflite").matmul_epilogue(6, sa, sb, so)
    assert (e.mult == m0).all() and (e.shift == shift).all()
    acc = matmul_acc(a, b, -3, 0)
    r = requant_single(acc, m0, shift) if scheme == "single_round" else requant_double(acc, m0, shift)
    assert np.array_equal(y, np.clip(r + 5, -128, 127))
    # explicit M0 / shift, per head
    mu = np.array([1 << 30, 1583594044, (1 << 31) - 1, 1 << 30, 1234567890, 1 << 30], np.int32)
    sh = np.array([-12, -9, -13, -8, -11, -10], np.int32)
    y = qk.qmatmul(a, b, a_scale=1, b_scale=1, out_scale=1, a_zero_point=-3, multiplier=mu,
                   shift=sh, scheme=scheme)
    for h in range(6):
        f = requant_single if scheme == "single_round" else requant_double
        assert np.array_equal(y[h], np.clip(f(acc[h], int(mu[h]), int(sh[h])), -128, 127))


@pytest.mark.parametrize("rounding", ["half_up", "half_even", "half_away", "floor"])
def test_pow2_preset_equals_shift_reference(rng, rounding):
    a, b = _rand(rng, np.uint8, (3, 20, 16)), _rand(rng, np.int8, (3, 16, 24))
    # acc in units 2^-11 * 2^-6, out 2^-9: shift 8; rows where every sum is a tie
    a[0, :4] = 1
    b[0, :, :] = 64
    y = qk.qmatmul(a, b, a_scale=2.0 ** -11, b_scale=2.0 ** -6, out_scale=2.0 ** -9,
                   a_zero_point=0, b_zero_point=0, out_zero_point=-1, out_dtype=np.int8,
                   preset="pow2", rounding=rounding)
    ref = requant_shift(matmul_acc(a, b, 0, 0), np.full(3, 8), rounding)
    assert np.array_equal(y, np.clip(ref - 1, -128, 127))


def test_user_preset(rng):
    """A Preset object of the user's own hardware: its requantization (shift, half_even)."""
    npu = qk.presets.Preset("my_npu", x_dtypes=("int8",), w_dtypes=("int8",), requant="shift",
                            bias="int32", rounding="half_even")
    a, b = _rand(rng, np.int8, (2, 7, 16)), _rand(rng, np.int8, (2, 16, 9))
    y = qk.qmatmul(a, b, a_scale=2.0 ** -5, b_scale=2.0 ** -4, out_scale=2.0 ** -3, preset=npu)
    ref = requant_shift(matmul_acc(a, b, 0, 0), np.full(2, 6), "half_even")
    assert y.dtype == np.int8 and np.array_equal(y, np.clip(ref, -128, 127))
    with pytest.raises(ValueError, match="preset must be one of"):
        qk.qmatmul(a, b, a_scale=1.0, b_scale=1.0, out_scale=1.0, preset="fbgemm")


def test_per_head_parameters(rng):
    a, b = _rand(rng, np.int8, (2, 3, 11, 20)), _rand(rng, np.int8, (2, 3, 13, 20))
    sa = np.array([0.01, 0.02, 0.03], np.float32)
    za = np.array([-1, 0, 5], np.int32)
    y = qk.qmatmul(a, b, transpose_b=True, a_scale=sa, b_scale=0.05, out_scale=0.02,
                   a_zero_point=za, out_zero_point=0)
    for h in range(3):
        yh = qk.qmatmul(a[:, h], b[:, h], transpose_b=True, a_scale=float(sa[h]), b_scale=0.05,
                        out_scale=0.02, a_zero_point=int(za[h]))
        assert np.array_equal(y[:, h], yh)


def test_broadcast_batch_and_strided_inputs(rng):
    a = _rand(rng, np.int8, (4, 9, 12))
    b = _rand(rng, np.int8, (12, 7))                        # shared by every batch item
    y = qk.matmul_int32(a, b[None])
    assert np.array_equal(y, matmul_acc(a, np.broadcast_to(b, (4, 12, 7)), 0, 0))
    big = _rand(rng, np.int8, (4, 18, 24))
    assert np.array_equal(qk.matmul_int32(big[:, ::2, ::2], b),
                          matmul_acc(big[:, ::2, ::2], np.broadcast_to(b, (4, 12, 7)), 0, 0))
    out = np.empty((4, 9, 7), np.int32)
    assert qk.matmul_int32(a, b, out=out) is out


def test_threads_do_not_change_the_result(rng):
    a, b = _rand(rng, np.uint8, (5, 150, 64)), _rand(rng, np.int8, (5, 150, 64))
    kw = dict(transpose_b=True, a_scale=0.02, b_scale=0.03, out_scale=0.4, a_zero_point=128,
              out_zero_point=128)
    y1 = qk.qmatmul(a, b, threads=1, **kw)
    for t in (2, 3, 8):
        assert np.array_equal(qk.qmatmul(a, b, threads=t, **kw), y1)
    assert np.array_equal(qk.matmul_int32(a, b, a_zero_point=7, transpose_b=True, threads=2),
                          qk.matmul_int32(a, b, a_zero_point=7, transpose_b=True, threads=1))


def test_accumulator_bound(rng):
    k = 140000                         # k * 128 * 128 > 2^31: the type bound fails
    a = np.full((1, 1, k), -128, np.int8)
    b_small = np.zeros((1, k, 2), np.int8)
    b_small[0, :10] = 127              # b's own sums are small: allowed (and exact)
    y = qk.matmul_int32(a, b_small)
    assert np.array_equal(y, matmul_acc(a, b_small, 0, 0))
    b_big = np.full((1, k, 2), -128, np.int8)
    with pytest.raises(qk.AccumulatorOverflowError, match="overflow"):
        qk.matmul_int32(a, b_big)
    y = qk.matmul_int32(a, b_big, overflow="wrap")
    exact = matmul_acc(a, b_big, 0, 0)
    assert np.array_equal(y, ((exact + 2 ** 31) % 2 ** 32 - 2 ** 31).astype(np.int32))


def test_gufunc_matmul_int32(rng):
    a, b = _rand(rng, np.uint8, (3, 5, 6)), _rand(rng, np.int8, (3, 6, 4))
    za = np.array([1, 2, 3], np.int32)
    y = qk.ufuncs.matmul_int32(a, b, za, np.int32(-2))
    assert np.array_equal(y, matmul_acc(a, b, za, -2))


def test_errors_name_the_argument(rng):
    a, b = _rand(rng, np.int8, (2, 3, 4)), _rand(rng, np.int8, (2, 4, 5))
    kw = dict(a_scale=0.1, b_scale=0.1, out_scale=0.1)
    with pytest.raises(TypeError, match="a must be"):
        qk.qmatmul(a.astype(np.float32), b, **kw)
    with pytest.raises(ValueError, match="K = 4"):
        qk.qmatmul(a, b, transpose_b=True, **kw)
    with pytest.raises(ValueError, match="a_scale"):
        qk.qmatmul(a, b, a_scale=-1.0, b_scale=0.1, out_scale=0.1)
    with pytest.raises(ValueError, match="out_scale"):
        qk.qmatmul(a, b, a_scale=0.1, b_scale=0.1, out_scale=float("nan"))
    with pytest.raises(ValueError, match="a_zero_point"):
        qk.qmatmul(a, b, a_zero_point=200, **kw)
    with pytest.raises(ValueError, match="b_zero_point"):
        qk.qmatmul(a, b, b_zero_point=np.array([1, 2, 3]), **kw)
    with pytest.raises(ValueError, match="out_zero_point"):
        qk.qmatmul(a, b, out_zero_point=300, **kw)
    with pytest.raises(ValueError, match="preset"):
        qk.qmatmul(a, b, preset="fbgemm2", **kw)
    with pytest.raises(ValueError, match="power-of-two"):
        qk.qmatmul(a, b, preset="pow2", **kw)
    with pytest.raises(ValueError, match="scheme"):
        qk.qmatmul(a, b, scheme="single_round", **kw)
    with pytest.raises(TypeError, match="together"):
        qk.qmatmul(a, b, multiplier=1 << 30, **kw)
    with pytest.raises(ValueError, match="shift"):
        qk.qmatmul(a, b, multiplier=1 << 30, shift=40, **kw)
    with pytest.raises(TypeError, match="one dtype"):
        qk.qmatmul(a.view(np.uint8), b, preset="torch", **kw)
    with pytest.raises(ValueError, match="batch"):
        qk.qmatmul(a, _rand(rng, np.int8, (3, 4, 5)), **kw)
    with pytest.raises(ValueError, match="threads"):
        qk.qmatmul(a, b, threads=0, **kw)
    with pytest.raises(ValueError, match="overflow"):
        qk.qmatmul(a, b, overflow="saturate", **kw)
    with pytest.raises(ValueError, match="out"):
        qk.qmatmul(a, b, out=np.empty((2, 3, 4), np.int8), **kw)
    with pytest.raises(ValueError, match="at least 2"):
        qk.qmatmul(a[0, 0], b, **kw)


SIMD_SCRIPT = r"""
import sys, numpy as np, qkernels as qk
rng = np.random.default_rng(3)
out = {"isa": np.array(qk.show_config(mode="dicts")["simd"]["gemm"])}
for at, bt in ((np.int8, np.int8), (np.uint8, np.int8), (np.uint8, np.uint8), (np.int8, np.uint8)):
    for (bs, m, k, n) in ((2, 13, 5, 17), (3, 40, 32, 33), (12, 128, 32, 128), (2, 197, 64, 197), (1, 7, 3, 1)):
        ia, ib = np.iinfo(at), np.iinfo(bt)
        a = rng.integers(ia.min, ia.max, (bs, m, k), endpoint=True).astype(at)
        for tb in (True, False):
            b = rng.integers(ib.min, ib.max, (bs, n, k) if tb else (bs, k, n), endpoint=True).astype(bt)
            za = rng.integers(ia.min, ia.max, bs, endpoint=True).astype(np.int32)
            zb = rng.integers(ib.min, ib.max, bs, endpoint=True).astype(np.int32)
            key = f"{ia.dtype}_{ib.dtype}_{bs}_{m}_{k}_{n}_{tb}"
            out["i32_" + key] = qk.matmul_int32(a, b, a_zero_point=za, b_zero_point=zb, transpose_b=tb)
            for preset in ("onnxruntime", "tflite"):
                out[preset + key] = qk.qmatmul(a, b, a_zero_point=za, b_zero_point=zb, transpose_b=tb,
                                               a_scale=0.03, b_scale=0.02, out_scale=0.9, preset=preset)
np.savez(sys.argv[1], **out)
"""


def test_simd_paths_give_the_same_bits(tmp_path):
    res = run_simd_paths(SIMD_SCRIPT, tmp_path)
    assert str(res["scalar"]["isa"]) == "scalar" and str(res["avx2"]["isa"]) == "avx2+fma"
    for key in res["scalar"]:
        if key == "isa":
            continue
        assert np.array_equal(res["auto"][key], res["scalar"][key]), key
        assert np.array_equal(res["avx2"][key], res["scalar"][key]), key
