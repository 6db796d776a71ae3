"""qlinear / linear_int32 / pack_linear: exact int32 sums, the tflite and pow2 presets against
plain references written from SPEC.md, explicit multipliers, threads, SIMD == scalar, errors.
(The fbgemm/qnnpack/onnxruntime presets are checked against the real runtimes in
test_presets_torch.py and test_presets_onnx.py.)"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import qkernels
from qkernels import ufuncs

import _gemm_ref as R

I8, U8 = np.int8, np.uint8


def rand_q(rng, dtype, shape):
    info = np.iinfo(dtype)
    return rng.integers(int(info.min), int(info.max) + 1, shape).astype(dtype)


SHAPES = [(1, 1, 1), (7, 1, 5), (1, 3, 1), (5, 17, 33), (13, 64, 16), (6, 255, 31), (48, 96, 48),
          (50, 129, 17), (3, 4099, 9), (2, 4610, 20)]


@pytest.mark.parametrize("m,k,n", SHAPES)
@pytest.mark.parametrize("xt,wt", [(U8, I8), (I8, I8), (U8, U8), (I8, U8)])
def test_linear_int32_exact(m, k, n, xt, wt):
    rng = np.random.default_rng(m * 1000 + k * 7 + n)
    x, w = rand_q(rng, xt, (m, k)), rand_q(rng, wt, (n, k))
    x_zp, w_zp = rand_q(rng, xt, ()), rand_q(rng, wt, (n,))
    bias = rng.integers(-2 ** 20, 2 ** 20, n).astype(np.int32)
    ref = R.linear_acc(x, w, x_zp, w_zp, bias)
    assert np.abs(ref).max() < 2 ** 31
    got = qkernels.linear_int32(x, w, bias, x_zero_point=int(x_zp), w_zero_point=w_zp)
    assert got.dtype == np.int32 and got.shape == (m, n)
    np.testing.assert_array_equal(got, ref)
    packed = qkernels.pack_linear(w, w_zero_point=w_zp)
    np.testing.assert_array_equal(
        qkernels.linear_int32(x, packed, bias, x_zero_point=int(x_zp), threads=2), ref)


@pytest.mark.parametrize("m", [49, 60, 61, 97, 196])
def test_linear_row_chunks_exact(m):
    """The int16 path's row chunks of 48 (linear.c): 49 rows (the 1x1 convs on 7x7 at batch 1,
    run as this GEMM) are a chunk of 48 and one of 1, 97 two of 48 and 1, 196 four and a tail
    of 4; with several threads each chunk is split over the weight panels: every thread count
    gives the reference."""
    rng = np.random.default_rng(m)
    x, w = rand_q(rng, U8, (m, 70)), rand_q(rng, I8, (70, 70))
    bias = rng.integers(-2 ** 20, 2 ** 20, 70).astype(np.int32)
    ref = R.linear_acc(x, w, 9, np.zeros(70, np.int32), bias)
    packed = qkernels.pack_linear(w)
    for t in (1, 2, 3, 5):
        np.testing.assert_array_equal(
            qkernels.linear_int32(x, packed, bias, x_zero_point=9, threads=t), ref)


def test_linear_batch_dims_noncontiguous_out():
    rng = np.random.default_rng(5)
    x = rand_q(rng, U8, (2, 3, 40))[:, :, ::2]          # (2, 3, 20), non-contiguous
    w = rand_q(rng, I8, (11, 20))
    ref = R.linear_acc(x, w, 7, 0)
    np.testing.assert_array_equal(qkernels.linear_int32(x, w, x_zero_point=7), ref)
    out = np.empty((2, 3, 11), np.int32)
    r = qkernels.linear_int32(x, w, x_zero_point=7, out=out)
    assert r is out
    np.testing.assert_array_equal(out, ref)
    empty = qkernels.linear_int32(np.zeros((0, 20), U8), w)
    assert empty.shape == (0, 11)


def test_linear_int32_gufunc():
    rng = np.random.default_rng(6)
    x = rand_q(rng, U8, (4, 5, 30))
    w = rand_q(rng, I8, (9, 30))
    wzp = rand_q(rng, I8, (9,)).astype(np.int32)
    got = ufuncs.linear_int32(x, w, np.int32(3), wzp)
    assert got.shape == (4, 5, 9)
    np.testing.assert_array_equal(got, R.linear_acc(x, w, 3, wzp))
    wt = rand_q(rng, I8, (30, 9)).T                      # strided weights
    np.testing.assert_array_equal(ufuncs.linear_int32(x[0], wt, np.int32(-1) + 1, np.zeros(9, np.int32)),
                                  R.linear_acc(x[0], wt, 0, 0))
    xs = rand_q(rng, I8, (3, 0))
    np.testing.assert_array_equal(ufuncs.linear_int32(xs, rand_q(rng, I8, (2, 0)), np.int32(0),
                                                      np.zeros(2, np.int32)), np.zeros((3, 2)))


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("scheme", ["double_round", "single_round"])
@pytest.mark.parametrize("m,k,n", [(1, 1, 3), (7, 33, 17), (5, 300, 40), (2, 4100, 5)])
def test_tflite_fully_connected_reference(per_channel, scheme, m, k, n):
    rng = np.random.default_rng(k + n + per_channel)
    x = rand_q(rng, I8, (m, k))
    w = rng.integers(-127, 128, (n, k)).astype(I8)
    x_zp = int(rng.integers(-128, 128))
    xs = np.float32(rng.uniform(0.005, 0.05))
    ws = rng.uniform(0.001, 0.01, n).astype(np.float32) if per_channel else np.float32(0.004)
    os_ = np.float32(rng.uniform(0.02, 0.2) * np.sqrt(k) / 10)
    bias = rng.integers(-5000, 5000, n).astype(np.int32)
    out_zp = int(rng.integers(-20, 20))
    for act in [(-128, 127), (out_zp, 127), (out_zp, min(127, out_zp + 60))]:  # none, ReLU, ReLU6-like
        got = qkernels.qlinear(x, w, bias, x_scale=xs, x_zero_point=x_zp, w_scale=ws,
                               out_scale=os_, out_zero_point=out_zp, preset="tflite",
                               scheme=scheme, act_min=act[0], act_max=act[1])
        m0, sh = R.tflite_multipliers(xs, ws if per_channel else [ws] * n, os_, per_channel)
        acc = R.linear_acc(x, w, x_zp, 0, bias)
        ref = R.tflite_output(acc, m0, sh, out_zp, act[0], act[1], 1, single=scheme == "single_round")
        np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("rounding", ["half_up", "half_even", "half_away", "floor"])
def test_pow2_equals_requantize_shift(rounding):
    rng = np.random.default_rng(11)
    x, w = rand_q(rng, U8, (9, 70)), rand_q(rng, I8, (13, 70))
    ws = np.float32(2.0) ** -rng.integers(5, 9, 13)
    bias = rng.integers(-3000, 3000, 13).astype(np.int32)
    got = qkernels.qlinear(x, w, bias, x_scale=2.0 ** -4, x_zero_point=100, w_scale=ws,
                           out_scale=2.0 ** -1, out_zero_point=5, preset="pow2", rounding=rounding,
                           out_dtype=I8)
    acc = qkernels.linear_int32(x, w, bias, x_zero_point=100)
    shift = (-1 - (-4 + np.log2(ws))).astype(np.int32)
    ref = qkernels.requantize_shift(acc, shift, 5, rounding=rounding, dtype=I8, axis=1)
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("scheme", ["double_round", "single_round"])
def test_explicit_multiplier_shift(scheme):
    rng = np.random.default_rng(12)
    x, w = rand_q(rng, U8, (8, 50)), rand_q(rng, I8, (10, 50))
    bias = rng.integers(-3000, 3000, 10).astype(np.int32)
    m0 = rng.integers(2 ** 30, 2 ** 31 - 1, 10).astype(np.int32)
    sh = rng.integers(-14, -8, 10).astype(np.int32)
    got = qkernels.qlinear(x, w, bias, x_zero_point=128, multiplier=m0, shift=sh, out_zero_point=3,
                           preset="fbgemm", out_dtype=I8, scheme=scheme)
    acc = qkernels.linear_int32(x, w, bias, x_zero_point=128)
    ref = qkernels.requantize(acc, m0, sh, 3, scheme=scheme, dtype=I8, axis=1)
    np.testing.assert_array_equal(got, ref)
    # per-tensor multiplier, TFLite-style positive shift
    got = qkernels.qlinear(x, w, x_zero_point=128, multiplier=1 << 30, shift=1, out_dtype=I8)
    ref = qkernels.requantize(qkernels.linear_int32(x, w, x_zero_point=128), 1 << 30, 1, dtype=I8)
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("preset", ["fbgemm", "qnnpack", "onnxruntime", "tflite", "pow2"])
def test_threads_do_not_change_bits(preset):
    rng = np.random.default_rng(13)
    xt = I8 if preset == "tflite" else U8
    x = rand_q(rng, xt, (100, 200))
    w = rng.integers(-127, 128, (70, 200)).astype(I8)
    kw = _preset_kwargs(preset, rng, 70)
    outs = [qkernels.qlinear(x, w, x_zero_point=1, preset=preset, threads=t, **kw) for t in (1, 2, 3, 8)]
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])


def _preset_kwargs(preset, rng, n):
    if preset == "pow2":
        return dict(x_scale=2.0 ** -5, w_scale=2.0 ** -7, out_scale=2.0 ** -2,
                    bias=rng.integers(-999, 999, n).astype(np.int32))
    b = rng.normal(0, 2, n).astype(np.float32) if preset in ("fbgemm", "qnnpack") else \
        rng.integers(-999, 999, n).astype(np.int32)
    return dict(x_scale=0.02, w_scale=rng.uniform(0.001, 0.01, n).astype(np.float32),
                out_scale=0.9, out_zero_point=3, bias=b)


SCALAR_SCRIPT = r"""
import json, sys, numpy as np, qkernels
sys.path.insert(0, sys.argv[1])
import test_linear as T
print(json.dumps({"isa": qkernels.show_config("dicts")["simd"]["chosen"], "h": T._fingerprint()}))
"""


def _fingerprint():
    """Outputs of every preset, linear and conv (general, depthwise, strided), as a hash list."""
    import hashlib
    rng = np.random.default_rng(99)
    res = []
    for preset in ["fbgemm", "qnnpack", "onnxruntime", "tflite", "pow2"]:
        xt = I8 if preset == "tflite" else U8
        x = rand_q(rng, xt, (23, 77))
        w = rng.integers(-127, 128, (21, 77)).astype(I8)
        res.append(qkernels.qlinear(x, w, x_zero_point=2, preset=preset, threads=2,
                                    **_preset_kwargs(preset, rng, 21)))
        for (c, o, k, s, g) in [(6, 10, 3, 1, 2), (8, 8, 3, 2, 8), (3, 7, 5, 2, 1), (5, 5, 3, 1, 5)]:
            xc = rand_q(rng, xt, (2, c, 19, 21))
            wc = rng.integers(-127, 128, (o, c // g, k, k)).astype(I8)
            res.append(qkernels.qconv2d(xc, wc, stride=s, padding=1, groups=g, x_zero_point=2,
                                        preset=preset, **_preset_kwargs(preset, rng, o)))
    res.append(qkernels.conv2d_int32(rand_q(rng, U8, (1, 4, 30, 33)),
                                     rand_q(rng, I8, (10, 2, 3, 3)), groups=2, dilation=2,
                                     padding=(1, 2, 3, 0), x_zero_point=100))
    for xt, wt in [(I8, U8), (U8, U8), (I8, I8)]:   # zero points everywhere, odd K
        w = rand_q(rng, wt, (19, 83))
        wzp = rand_q(rng, wt, (19,))
        res.append(qkernels.linear_int32(rand_q(rng, xt, (29, 83)), w, x_zero_point=int(rand_q(rng, xt, ())),
                                         w_zero_point=wzp, threads=2))
        wc = rand_q(rng, wt, (12, 3, 3, 3))
        res.append(qkernels.conv2d_int32(rand_q(rng, xt, (2, 6, 17, 18)), wc, groups=2, padding=2,
                                         stride=(1, 2), x_zero_point=int(rand_q(rng, xt, ())),
                                         w_zero_point=rand_q(rng, wt, (12,))))
    return [hashlib.sha256(np.ascontiguousarray(r).tobytes()).hexdigest() for r in res]


@pytest.mark.parametrize("simd", ["scalar", "avx2"])
def test_simd_equals_scalar_subprocess(simd):
    """This process (AVX512-VNNI 8-bit kernels where the CPU has them, else AVX2) against a process
    forced to the scalar C path, and one forced to the int16 AVX2 kernels: the same bits."""
    here = os.path.dirname(os.path.abspath(__file__))
    helpers = os.path.dirname(here)   # tests/: the helper modules
    pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(qkernels.__file__)))
    env_pp = os.environ.get("PYTHONPATH")
    env = dict(os.environ, QKERNELS_SIMD=simd,
               PYTHONPATH=os.pathsep.join([pkg_root, helpers] + ([env_pp] if env_pp else [])))
    r = subprocess.run([sys.executable, "-c", SCALAR_SCRIPT, here], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    other = json.loads(r.stdout.strip().splitlines()[-1])
    if simd == "scalar":
        assert other["isa"] == "scalar"
    assert other["h"] == _fingerprint()


# ---- bad input -----------------------------------------------------------------------------
def _ok_kwargs():
    return dict(x_scale=0.1, x_zero_point=0, w_scale=0.01, out_scale=0.5, out_zero_point=0)


def test_errors_shapes_and_dtypes():
    x, w = np.zeros((2, 8), I8), np.zeros((3, 8), I8)
    with pytest.raises(ValueError, match="K = 7.*K = 8"):
        qkernels.qlinear(np.zeros((2, 7), I8), w, **_ok_kwargs())
    with pytest.raises(TypeError, match="x must be a uint8 or int8"):
        qkernels.qlinear(x.astype(np.int32), w, **_ok_kwargs())   # (int16: qkernels.linear16)
    with pytest.raises(TypeError, match="x must be uint8 for preset 'fbgemm'"):
        qkernels.qlinear(x, w, preset="fbgemm", **_ok_kwargs())
    with pytest.raises(TypeError, match="w must be int8 for preset 'tflite'"):
        qkernels.qlinear(x, w.astype(U8), **_ok_kwargs())
    with pytest.raises(TypeError, match="w must be a uint8 or int8"):
        qkernels.qlinear(x, w.astype(np.float32), **_ok_kwargs())
    with pytest.raises(ValueError, match="w_zero_point must be 0 for preset 'tflite'"):
        qkernels.qlinear(x, w, **dict(_ok_kwargs(), w_zero_point=1))
    with pytest.raises(TypeError, match="bias must be an int32 array for preset 'tflite'"):
        qkernels.qlinear(x, w, np.zeros(3, np.float32), **_ok_kwargs())
    with pytest.raises(TypeError, match="bias must be a float array for preset 'fbgemm'"):
        qkernels.qlinear(x.astype(U8), w, np.zeros(3, np.int32), preset="fbgemm", **_ok_kwargs())
    with pytest.raises(ValueError, match="bias has shape"):
        qkernels.qlinear(x, w, np.zeros(4, np.int32), **_ok_kwargs())
    with pytest.raises(ValueError, match="preset must be one of"):
        qkernels.qlinear(x, w, preset="tensorrt", **_ok_kwargs())
    with pytest.raises(ValueError, match="w_scale has shape"):
        qkernels.qlinear(x, w, **dict(_ok_kwargs(), w_scale=[0.1, 0.2]))
    with pytest.raises(TypeError, match="x_scale is required"):
        qkernels.qlinear(x, w, **dict(_ok_kwargs(), x_scale=None))
    with pytest.raises(ValueError, match="out_zero_point=200 is outside"):
        qkernels.qlinear(x, w, **dict(_ok_kwargs(), out_zero_point=200))
    with pytest.raises(ValueError, match="x_zero_point=300"):
        qkernels.qlinear(x, w, **dict(_ok_kwargs(), x_zero_point=300))
    with pytest.raises(ValueError, match="threads must be >= 1"):
        qkernels.qlinear(x, w, threads=0, **_ok_kwargs())
    with pytest.raises(TypeError, match="multiplier and shift"):
        qkernels.qlinear(x, w, multiplier=1 << 30)


@pytest.mark.parametrize("name", ["x_scale", "w_scale", "out_scale"])
@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan, np.inf])
def test_errors_scales(name, bad):
    with pytest.raises(ValueError, match=f"{name} must be finite and > 0"):
        qkernels.qlinear(np.zeros((1, 4), I8), np.zeros((2, 4), I8), **dict(_ok_kwargs(), **{name: bad}))


def test_errors_pow2_scale():
    kw = dict(x_scale=2.0 ** -3, w_scale=2.0 ** -6, out_scale=0.3)
    with pytest.raises(ValueError, match="out_scale=0.3.* not a power of two"):
        qkernels.qlinear(np.zeros((1, 4), I8), np.zeros((2, 4), I8), preset="pow2", **kw)
    kw = dict(x_scale=2.0 ** -3, w_scale=[2.0 ** -6, 0.01], out_scale=0.25)
    with pytest.raises(ValueError, match="w_scale=0.01.* not a power of two"):
        qkernels.qlinear(np.zeros((1, 4), I8), np.zeros((2, 4), I8), preset="pow2", **kw)


def test_overflow_raise_and_wrap():
    k = 70000
    x = np.full((2, k), 255, U8)
    w = np.full((3, k), -128, I8)
    with pytest.raises(qkernels.AccumulatorOverflowError, match="output channel 0.*255 \\* 8960000"):
        qkernels.linear_int32(x, w)
    with pytest.raises(qkernels.AccumulatorOverflowError):
        qkernels.qlinear(x, w, preset="fbgemm", x_scale=1.0, w_scale=1.0, out_scale=1.0)
    got = qkernels.linear_int32(x, w, overflow="wrap")
    ref = (R.linear_acc(x, w, 0, 0) + 2 ** 31) % 2 ** 32 - 2 ** 31
    np.testing.assert_array_equal(got, ref)
    # the bound uses the type's range, not the data: K = 70000 with x_zp = 128 fits
    np.testing.assert_array_equal(qkernels.linear_int32(x, w, x_zero_point=128),
                                  R.linear_acc(x, w, 128, 0))
    # the bias counts too
    with pytest.raises(qkernels.AccumulatorOverflowError):
        qkernels.linear_int32(np.zeros((1, 1), U8), np.zeros((1, 1), I8),
                              np.array([2 ** 31 - 1], np.int32), x_zero_point=1,
                              w_zero_point=1)
    # double_round with a left shift that overflows: an error, not TFLite's silent wrap
    with pytest.raises(qkernels.AccumulatorOverflowError, match="left shift"):
        qkernels.qlinear(np.full((1, 1000), 127, I8), np.full((1, 1000), 127, I8),
                         multiplier=1 << 30, shift=20)


def test_packed_reuse_with_changing_parameters():
    """Repeated calls on one packed object (its memo of derived parameters) give the same bits as
    fresh calls with raw weights, whatever changes between calls (bias mutated in place too)."""
    rng = np.random.default_rng(21)
    x, w = rand_q(rng, U8, (10, 40)), rand_q(rng, I8, (12, 40))
    p = qkernels.pack_linear(w, w_scale=0.01)
    bias = rng.normal(0, 1, 12).astype(np.float32)
    for it in range(6):
        kw = dict(x_scale=0.05 if it % 2 else 0.04, x_zero_point=it, out_scale=0.3 + 0.1 * (it % 3),
                  out_zero_point=100 + it, preset="fbgemm")
        ref = qkernels.qlinear(x, w, bias, w_scale=0.01, **kw)
        np.testing.assert_array_equal(qkernels.qlinear(x, p, bias, **kw), ref)
        np.testing.assert_array_equal(qkernels.qlinear(x, p, bias, **kw), ref)
        bias *= 1.5          # in place: the next call must see the new values
    with pytest.raises(ValueError, match="x_scale must be finite"):
        qkernels.qlinear(x, p, bias, x_scale=-1.0, out_scale=1.0, preset="fbgemm")
    with pytest.raises(ValueError, match="x_scale must be finite"):   # errors are never memoized
        qkernels.qlinear(x, p, bias, x_scale=-1.0, out_scale=1.0, preset="fbgemm")


def _mutation_cases(rng, n):
    """(name, kwargs factory) pairs for the memo tests: every array argument is a caller-owned
    array that the test mutates in place between calls."""
    return [
        ("fbgemm", dict(bias=rng.normal(0, 1, n).astype(np.float32),
                        w_scale=np.linspace(0.005, 0.02, n).astype(np.float32)),
         dict(x_scale=0.05, x_zero_point=3, out_scale=0.2, out_zero_point=100, preset="fbgemm")),
        ("onnxruntime", dict(bias=rng.integers(-3000, 3000, n).astype(np.int32),
                             w_scale=np.linspace(0.005, 0.02, n).astype(np.float32)),
         dict(x_scale=0.05, x_zero_point=3, out_scale=0.2, out_zero_point=100,
              preset="onnxruntime")),
        ("explicit", dict(bias=rng.integers(-3000, 3000, n).astype(np.int32),
                          multiplier=rng.integers(1 << 29, 1 << 30, n).astype(np.int32),
                          shift=np.full(n, -8, np.int32)),
         dict(x_zero_point=3, out_zero_point=5, preset="onnxruntime")),
    ]


@pytest.mark.parametrize("case", [0, 1, 2])
@pytest.mark.parametrize("op", ["linear", "conv"])
def test_packed_memo_never_stale_after_in_place_mutation(op, case):
    """The memo on packed weights must never hand back parameters derived from old array values:
    mutate every array argument in place, then pass the old values again in a *different* array
    (an int32 bias, a multiplier or a per-channel scale may be used without a copy, so a memo
    entry that kept a reference would see the mutation)."""
    rng = np.random.default_rng(40 + case)
    n = 6
    if op == "linear":
        x, w = rand_q(rng, U8, (4, 24)), rand_q(rng, I8, (n, 24))
        fn, pack, extra = qkernels.qlinear, qkernels.pack_linear, {}
    else:
        x, w = rand_q(rng, U8, (2, 3, 7, 7)), rand_q(rng, I8, (n, 3, 3, 3))
        fn, pack, extra = qkernels.qconv2d, qkernels.pack_conv2d, dict(padding=1)
    name, arrays, kw = _mutation_cases(rng, n)[case]
    p = pack(w)
    originals = {k: v.copy() for k, v in arrays.items()}
    ref0 = fn(x, w, **originals, **kw, **extra)
    np.testing.assert_array_equal(fn(x, p, **arrays, **kw, **extra), ref0)
    for step in range(3):
        for k, v in arrays.items():          # in place, keeping every value valid
            if v.dtype == np.float32:
                v *= np.float32(1.25)
            elif k == "shift":
                v -= 1
            elif k == "multiplier":
                v[::2] += 12345
            else:
                v += 777
        ref = fn(x, w, **{k: v.copy() for k, v in arrays.items()}, **kw, **extra)
        assert not np.array_equal(ref, ref0)
        np.testing.assert_array_equal(fn(x, p, **arrays, **kw, **extra), ref)
        np.testing.assert_array_equal(fn(x, p, **arrays, **kw, **extra), ref)
        # the first values again, in fresh arrays: must give the first result
        fresh = {k: v.copy() for k, v in originals.items()}
        np.testing.assert_array_equal(fn(x, p, **fresh, **kw, **extra), ref0)


def test_packed_memo_shapes_threads_and_value_types():
    """Cached calls follow changes of x's shape, of threads, of stride/padding spelling, and give
    the same bits for the same values spelled as Python float, np.float32 or 0-d arrays."""
    rng = np.random.default_rng(50)
    w = rand_q(rng, I8, (8, 4, 3, 3))
    p = qkernels.pack_conv2d(w, w_scale=0.01)
    bias = rng.normal(0, 1, 8).astype(np.float32)
    spellings = [dict(x_scale=0.05, out_scale=0.25, x_zero_point=7, out_zero_point=90),
                 dict(x_scale=np.float32(0.05), out_scale=np.float32(0.25),
                      x_zero_point=np.uint8(7), out_zero_point=np.int32(90)),
                 dict(x_scale=np.array(0.05, np.float32), out_scale=np.array(0.25),
                      x_zero_point=np.array(7), out_zero_point=np.array(90, np.int64)),
                 dict(x_scale=np.float64(0.05), out_scale=0.25, x_zero_point=7, out_zero_point=90)]
    geoms = [dict(stride=1, padding=1), dict(stride=(1, 1), padding=(1, 1)),
             dict(stride=[1, 1], padding=(1, 1, 1, 1)), dict(stride=np.int64(1), padding=1)]
    for shape in [(1, 4, 9, 9), (3, 4, 9, 9), (1, 4, 5, 12), (2, 4, 3, 3), (1, 4, 9, 9)]:
        x = rand_q(rng, U8, shape)
        ref = qkernels.qconv2d(x, w, bias, w_scale=0.01, preset="fbgemm", stride=1, padding=1,
                               **spellings[0])
        for threads in (1, 2, 3, None):
            for sp in spellings:
                for g in geoms:
                    y = qkernels.qconv2d(x, p, bias, preset="fbgemm", threads=threads, **g, **sp)
                    np.testing.assert_array_equal(y, ref)
    pl = qkernels.pack_linear(w.reshape(8, 36), w_scale=0.01)
    for lead in [(5,), (2, 5), (1,), (3, 1, 2)]:
        x = rand_q(rng, U8, lead + (36,))
        ref = qkernels.qlinear(x, w.reshape(8, 36), bias, w_scale=0.01, preset="fbgemm",
                               **spellings[0])
        for threads in (1, 2, None):
            for sp in spellings:
                np.testing.assert_array_equal(
                    qkernels.qlinear(x, pl, bias, preset="fbgemm", threads=threads, **sp), ref)


def test_packed_memo_keeps_every_error():
    """After a successful (memoised) call, arguments equal by == but of another type, or a bad
    x, still raise exactly as on a first call."""
    rng = np.random.default_rng(51)
    w = rand_q(rng, I8, (8, 4, 3, 3))
    p = qkernels.pack_conv2d(w, w_scale=0.01)
    x = rand_q(rng, I8, (1, 4, 6, 6))
    kw = dict(x_scale=0.05, out_scale=0.25, preset="tflite")
    qkernels.qconv2d(x, p, stride=1, act_min=-5, **kw)
    qkernels.qconv2d(x, p, stride=1, act_min=-5, **kw)
    with pytest.raises(TypeError, match="stride"):
        qkernels.qconv2d(x, p, stride=True, act_min=-5, **kw)
    with pytest.raises(TypeError, match="act_min"):
        qkernels.qconv2d(x, p, stride=1, act_min=True, **kw)
    with pytest.raises(TypeError, match="act_min"):
        qkernels.qconv2d(x, p, stride=1, act_min=-5.0, **kw)
    with pytest.raises(ValueError, match="w_zero_point differs"):
        qkernels.qconv2d(x, p, stride=1, act_min=-5, w_zero_point=1, **kw)
    with pytest.raises(ValueError, match="groups=2 differs"):
        qkernels.qconv2d(x, p, stride=1, act_min=-5, groups=2, **kw)
    with pytest.raises(ValueError, match="input channels"):
        qkernels.qconv2d(rand_q(rng, I8, (1, 5, 6, 6)), p, stride=1, act_min=-5, **kw)
    with pytest.raises(TypeError, match="x must be int8"):
        qkernels.qconv2d(x.view(U8), p, stride=1, act_min=-5, **kw)
    with pytest.raises(ValueError, match="larger than the padded input"):
        qkernels.qconv2d(x[:, :, :2], p, stride=1, act_min=-5, **kw)
    pl = qkernels.pack_linear(w.reshape(8, 36), w_scale=0.01)
    xl = rand_q(rng, I8, (2, 36))
    qkernels.qlinear(xl, pl, x_zero_point=0, **kw)
    qkernels.qlinear(xl, pl, x_zero_point=0, **kw)
    with pytest.raises(TypeError, match="x_zero_point"):
        qkernels.qlinear(xl, pl, x_zero_point=0.0, **kw)
    with pytest.raises(ValueError, match="K = 35"):
        qkernels.qlinear(xl[:, :35], pl, x_zero_point=0, **kw)
    with pytest.raises(ValueError, match="w_zero_point differs"):
        qkernels.qlinear(xl, pl, x_zero_point=0, w_zero_point=np.full(8, 2), **kw)


# ---- linear_float: the float32 output stage fused into the GEMM -------------------------------
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_linear_float_equals_int32_then_accumulator_to_float(m, k, n):
    """linear_float == accumulator_to_float(linear_int32(...)) bit for bit: fmaf((float)acc,
    scale[o], float_bias[o]) with per-tensor and per-channel scales, int32 and float biases,
    per-channel weight zero points, u8 and s8 activations, threads 1 and 2, the runner too."""
    rng = np.random.default_rng(m * 1000 + k + n)
    for xt in (U8, I8):
        x = rand_q(rng, xt, (m, k))
        w = rand_q(rng, I8, (n, k))
        xz = int(rng.integers(np.iinfo(xt).min, np.iinfo(xt).max + 1))
        wz = rng.integers(-128, 128, n)
        sc = (rng.uniform(0.5, 2, n) * 10.0 ** rng.integers(-9, 2, n)).astype(np.float32)
        fb = (rng.standard_normal(n) * 10.0 ** rng.integers(-3, 4, n)).astype(np.float32)
        b = rng.integers(-5000, 5000, n).astype(np.int32)
        acc = qkernels.linear_int32(x, w, b, x_zero_point=xz, w_zero_point=wz)
        ref = qkernels.accumulator_to_float(acc, sc, fb, axis=-1)
        p = qkernels.pack_linear(w, w_zero_point=wz)
        for t in (1, 2):
            got = qkernels.linear_float(x, p, sc, fb, bias=b, x_zero_point=xz, threads=t)
            assert np.array_equal(got.view(np.int32), ref.view(np.int32))
        run = qkernels.linear_float_runner(p, fb, bias=b)
        assert np.array_equal(run(x, xz, sc, 1).view(np.int32), ref.view(np.int32))
        # per-tensor scale, no biases: fmaf(acc, s, 0)
        ref0 = qkernels.accumulator_to_float(qkernels.linear_int32(x, p, x_zero_point=xz), 0.0123)
        got0 = qkernels.linear_float(x.reshape(1, m, k), p, 0.0123, x_zero_point=xz)
        assert got0.shape == (1, m, n)
        assert np.array_equal(got0[0].view(np.int32), ref0.view(np.int32))


def test_linear_float_errors_and_out():
    rng = np.random.default_rng(0)
    x, w = rand_q(rng, U8, (4, 8)), rand_q(rng, I8, (3, 8))
    for bad in (0.0, -1.0, np.nan, np.inf, [1.0, 1.0]):
        with pytest.raises(ValueError, match="scale"):
            qkernels.linear_float(x, w, bad)
    with pytest.raises(ValueError, match="finite"):
        qkernels.linear_float(x, w, 0.5, np.float32([0, np.nan, 0]))
    with pytest.raises(ValueError, match="length 3"):
        qkernels.linear_float(x, w, 0.5, np.float32([0, 0]))
    with pytest.raises(TypeError, match="float"):
        qkernels.linear_float(x, w, 0.5, np.int32([0, 0, 0]))
    with pytest.raises(ValueError, match="x_zero_point"):
        qkernels.linear_float(x, w, 0.5, x_zero_point=300)
    with pytest.raises(TypeError, match="PackedLinear"):
        qkernels.linear_float_runner(w)
    big = qkernels.pack_linear(np.full((1, 70000), 127, I8))
    with pytest.raises(qkernels.AccumulatorOverflowError):
        qkernels.linear_float(np.zeros((1, 70000), U8), big, 1.0, x_zero_point=255)
    run = qkernels.linear_float_runner(big)
    with pytest.raises(qkernels.AccumulatorOverflowError):   # the C check, on the bare runner
        run(np.zeros((1, 70000), U8), 255, np.float32([1.0]), 1)
    out = np.full((4, 3), 7, np.float32)
    y = qkernels.linear_float(x, w, 0.5, out=out)
    assert y is out and np.array_equal(y, qkernels.accumulator_to_float(
        qkernels.linear_int32(x, w), 0.5))
