"""Per-channel parameters on the last axis (qkernels._checks.run_ufunc's per-channel path,
``_core._channels``: tiles of 16 channels x 256 rows, one kernel call per channel and tile): the
same bits as one row at a time (a single row takes the ufunc's own element-by-element loop),
errors and out= as before; and the glue's one kernel call per run of equal parameters (a
channels-first broadcast) equals the per-element loop."""
import numpy as np
import pytest

import qkernels as qk
from qkernels import _core


def _rows(f, x, *a, **k):
    """f on each row alone (the element-by-element path), stacked."""
    x2 = x.reshape(-1, x.shape[-1])
    return np.stack([f(x2[i:i + 1], *a, **k)[0] for i in range(x2.shape[0])]).reshape(x.shape)


def _steps(rng, c):
    return (np.float32(0.03) * np.exp2(rng.integers(-3, 4, c))).astype(np.float32)


@pytest.mark.parametrize("shape", [(8, 2), (3, 17, 5), (1, 128, 384), (2, 9, 64), (300, 33),
                                   (2, 260, 17)])
@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16])
@pytest.mark.parametrize("flavor", ["torch", "fbgemm_scalar", "pt2e", "onnx", "tflite"])
def test_quantize_per_channel_equals_rows(shape, dtype, flavor):
    rng = np.random.default_rng(sum(shape))
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    x.reshape(-1)[::7] = np.float32(0.5) * _steps(rng, 1)[0] * rng.integers(-300, 300)  # near-ties
    c = shape[-1]
    s, zp = _steps(rng, c), rng.integers(-5, 5, c).astype(np.int32)
    if dtype == np.uint8:
        zp += 128
    got = qk.quantize(x, s, zp, dtype=dtype, axis=-1, flavor=flavor)
    assert x.size >= 2 * c   # the per-channel path
    ref = _rows(lambda r: qk.quantize(r, s, zp, dtype=dtype, axis=-1, flavor=flavor), x)
    assert got.dtype == ref.dtype and np.array_equal(got, ref)
    d = qk.dequantize(got, s, zp, axis=-1)
    assert np.array_equal(d.view(np.int32),
                          _rows(lambda r: qk.dequantize(r, s, zp, axis=-1), got).view(np.int32))


@pytest.mark.parametrize("scheme", ["double_round", "single_round"])
@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int32])
def test_requantize_per_channel_equals_rows(scheme, dtype):
    rng = np.random.default_rng(5)
    acc = rng.integers(-2 ** 24, 2 ** 24, (3, 40, 96)).astype(np.int32)
    m, sh = qk.quantize_multiplier(rng.uniform(1e-6, 1e-2, 96))
    zp = rng.integers(0, 20, 96).astype(np.int32)
    got = qk.requantize(acc, m, sh, zp, scheme=scheme, dtype=dtype, axis=-1)
    ref = _rows(lambda r: qk.requantize(r, m, sh, zp, scheme=scheme, dtype=dtype, axis=-1), acc)
    assert np.array_equal(got, ref)
    shifts = rng.integers(-3, 12, 96).astype(np.int32)
    for rounding in ("half_up", "half_even", "half_away", "floor"):
        got = qk.requantize_shift(acc, shifts, zp, rounding=rounding, dtype=dtype, axis=-1)
        ref = _rows(lambda r: qk.requantize_shift(r, shifts, zp, rounding=rounding, dtype=dtype,
                                                  axis=-1), acc)
        assert np.array_equal(got, ref)


def test_channels_first_out_and_overlap():
    rng = np.random.default_rng(1)
    acc = rng.integers(-2 ** 20, 2 ** 20, (64, 32)).astype(np.int32)
    sh = rng.integers(0, 8, 32).astype(np.int32)
    ref = qk.requantize_shift(acc, sh, dtype=np.int32, axis=-1)
    out = np.empty_like(acc)
    assert qk.requantize_shift(acc, sh, dtype=np.int32, axis=-1, out=out) is out
    assert np.array_equal(out, ref)
    a2 = acc.copy()   # in place: out is the input
    qk.requantize_shift(a2, sh, dtype=np.int32, axis=-1, out=a2)
    assert np.array_equal(a2, ref)
    strided = np.empty((64, 64), np.int32)[:, ::2]   # a non-contiguous out
    qk.requantize_shift(acc, sh, dtype=np.int32, axis=-1, out=strided)
    assert np.array_equal(strided, ref)


def test_channels_first_nan_and_refusals():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((32, 16)).astype(np.float32)
    x[5, 3] = np.nan
    s = _steps(rng, 16)
    with pytest.raises(ValueError, match=r"NaN at index \(5, 3\)"):
        qk.quantize(x, s, 0, dtype=np.int8, axis=-1)
    acc = np.full((32, 16), 2 ** 30, np.int32)
    m, sh = qk.quantize_multiplier(np.full(16, 3.0))
    with pytest.raises(qk.AccumulatorOverflowError, match="overflows int32"):
        qk.requantize(acc, m, sh, axis=-1)


def test_float64_input_and_runs_of_equal_parameters():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((70, 21)) * 5   # float64: 8-byte elements in the tiles
    s = _steps(rng, 21)
    got = qk.quantize(x, s, 0, dtype=np.int16, axis=-1, flavor="fbgemm_scalar")
    ref = _rows(lambda r: qk.quantize(r, s, 0, dtype=np.int16, axis=-1, flavor="fbgemm_scalar"), x)
    assert np.array_equal(got, ref)
    # channels first, the parameter broadcast along the rows: the ufunc itself (NumPy's buffers
    # hand the glue runs of equal parameters) == element by element
    xt = np.ascontiguousarray(x.T).astype(np.float32)
    uf = _core.quantize_fbgemm_scalar_s8
    y = uf(xt, s[:, None], np.int32(0), np.int32(-128), np.int32(127))
    one = np.stack([uf(xt[i], s[i], np.int32(0), np.int32(-128), np.int32(127))
                    for i in range(21)])
    assert np.array_equal(y, one)


def test_dequantize_per_channel_paths_agree(tmp_path):
    # the per-channel dequantize kernel (qk_dequantize_channels_<in>_f32, run_ufunc's path for
    # dequantize) under QKERNELS_SIMD=scalar / avx2 / the best path: the same float bits as the
    # element-by-element ufunc loop, every input type, tails of the 8 / 16 lanes, and zero points
    # near int32's bounds (the scalar loop's int64 subtraction)
    import os
    import subprocess
    import sys
    script = f"""
import numpy as np, qkernels as qk
rng = np.random.default_rng(17)
outs = {{}}
for dt in (np.uint8, np.int8, np.uint16, np.int16, np.int32):
    info = np.iinfo(dt)
    for c in (2, 7, 8, 15, 16, 17, 33, 384):
        q = rng.integers(info.min, info.max, (9, c), endpoint=True).astype(dt)
        s = rng.uniform(1e-4, 3, c).astype(np.float32)
        lo, hi = (-2 ** 31, 2 ** 31 - 1) if dt == np.int32 else (info.min, info.max)
        z = rng.integers(lo, hi, c, endpoint=True).astype(np.int32)
        for zz, tag in ((z, "z"), (np.zeros(c, np.int32), "0")):   # 0: int32's SIMD path
            y = outs[f"{{dt.__name__}}{{c}}{{tag}}"] = qk.dequantize(q, s, zz, axis=-1)
            ref = np.stack([qk.dequantize(q[i:i + 1], s, zz, axis=-1)[0] for i in range(9)])
            assert np.array_equal(y.view(np.int32), ref.view(np.int32))
            # per tensor (channel 0's parameters), 1-D: the per-tensor kernel
            t = outs[f"{{dt.__name__}}{{c}}{{tag}}t"] = qk.dequantize(q.ravel(), s[0], int(zz[0]))
            assert np.array_equal(t.view(np.int32), np.array(
                [qk.dequantize(v, s[0], int(zz[0])) for v in q.ravel()], np.float32).view(np.int32))
np.savez({str(tmp_path / 'OUT.npz')!r}, **outs)
"""
    for mode in ("scalar", "avx2", "auto"):
        env = dict(os.environ, QKERNELS_SIMD=mode)
        r = subprocess.run([sys.executable, "-c", script.replace("OUT", mode)], env=env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
    a = np.load(tmp_path / "scalar.npz")
    assert len(a.files) == 5 * 8 * 4
    for other in ("avx2", "auto"):
        b = np.load(tmp_path / f"{other}.npz")
        for k in a.files:
            assert np.array_equal(a[k].view(np.int32), b[k].view(np.int32)), (other, k)
