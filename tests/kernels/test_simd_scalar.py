"""The AVX2 loops and their portable scalar twins give the same bits.

The instruction set is chosen once per process, so each path runs in a subprocess
(QKERNELS_SIMD=avx2 keeps AVX-512 CPUs on the AVX2 loops, QKERNELS_SIMD=scalar forces C); both processes compute every kernel on the same inputs (lengths that leave
SIMD tails, near-ties, saturating values) and the outputs are compared bit for bit.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import qkernels as qk

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # tests/: the helper modules
ROOT = os.path.dirname(HERE)

SCRIPT = r"""
import sys, numpy as np
import qkernels as qk
from _util import value_set
rng = np.random.default_rng(7)
out = {"isa": np.array(qk.show_config(mode="dicts")["simd"]["chosen"])}
for s in (0.0173, 0.1, 1 / 3):
    x = value_set(rng, 20_011, s)
    x = x[np.isfinite(x) | np.isinf(x)]
    for flavor in ("pt2e", "fbgemm", "fbgemm_scalar", "onnx", "tflite"):
        for dt, zp in ((np.uint8, 128), (np.int8, -3), (np.uint16, 999), (np.int16, 7), (np.int32, 5)):
            out[f"q_{s}_{flavor}_{np.dtype(dt).name}"] = qk.quantize(x, s, zp, dtype=dt, flavor=flavor)
    for dt in (np.uint8, np.int8, np.uint16, np.int16, np.int32):
        info = np.iinfo(dt)
        q = rng.integers(info.min, info.max, 10_007, endpoint=True).astype(dt)
        out[f"dq_{s}_{np.dtype(dt).name}"] = qk.dequantize(q, s, int(q[0]) // 2)
    out[f"fq_{s}"] = qk.fake_quantize(x[np.abs(x) < 1e30], s, 3, -128, 127)
acc = np.concatenate([rng.integers(-(1 << 31), 1 << 31, 30_001), rng.integers(-999, 999, 3001)]).astype(np.int32)
for dt in (np.uint8, np.int8, np.int16, np.int32):
    n = np.dtype(dt).name
    zp = 10 if dt == np.uint8 else -4
    for shift in (-31, -20, -9, -1, 0):
        for m in (0, 1 << 30, 1583594044, (1 << 31) - 1):
            out[f"rd_{n}_{shift}_{m}"] = qk.requantize(acc, m, shift, zp, dtype=dt)
            out[f"rs_{n}_{shift}_{m}"] = qk.requantize(acc, m, shift, zp, dtype=dt, scheme="single_round")
    small = (acc >> 12).astype(np.int32)
    for shift in (1, 5, 11):
        out[f"rs+_{n}_{shift}"] = qk.requantize(small, 1 << 30, shift, zp, dtype=dt, scheme="single_round")
    for scale in (1e-6, 0.00123, 0.5):
        out[f"rf_{n}_{scale}"] = qk.requantize_float(acc, scale, zp, dtype=dt)
    for rounding in ("half_up", "half_even", "half_away", "floor"):
        for shift in (-3, 0, 1, 2, 9, 30, 31):
            out[f"sh_{n}_{rounding}_{shift}"] = qk.requantize_shift(acc, shift, zp, rounding=rounding, dtype=dt)
for scale, bias in ((1.37e-5, -0.3), (0.5, 0.25)):
    out[f"acc2f_{scale}"] = qk.accumulator_to_float(acc, scale, bias)
# dynamic quantization (min / max loop, fbgemm's choice, quantize) and the float32-out linear
for r in (True, False):
    for j, xx in enumerate((rng.normal(0, 3, 10_007), rng.uniform(0, 1e-6, 5_003),
                            -rng.uniform(0, 1, 77), np.zeros(40), rng.normal(5, 1, (33, 65)))):
        q, sc, z = qk.quantize_dynamic(xx.astype(np.float32), reduce_range=r)
        out[f"qd_{r}_{j}"], out[f"qds_{r}_{j}"], out[f"qdz_{r}_{j}"] = q, np.float64([sc]), np.int64([z])
for k in (173, 384):   # K with a tail of the 8-bit path's quads, and a multiple of 4
    w = rng.integers(-128, 128, (150, k)).astype(np.int8)
    wz = rng.integers(-128, 128, 150)
    sc = (rng.uniform(0.5, 2, 150) * 1e-4).astype(np.float32)
    fb = rng.normal(0, 1, 150).astype(np.float32)
    for xt, xz in ((np.uint8, 77), (np.int8, -5)):
        info = np.iinfo(xt)
        x = rng.integers(info.min, info.max, (37, k), endpoint=True).astype(xt)
        out[f"lf_{k}_{xt.__name__}"] = qk.linear_float(x, w, sc, fb, x_zero_point=xz, threads=1)
        out[f"lfz_{k}_{xt.__name__}"] = qk.linear_float(x, w, sc, x_zero_point=xz, w_zero_point=wz,
                                                         threads=2)
np.savez(sys.argv[1], **out)
"""


# The elementwise 8-bit loops on their edges: every fixed-point shift, multipliers at the ends of
# their domain, accumulators on the rounding ties of both double_round steps and at the int32
# ends, zero points at the ends of the range, narrowed qmin/qmax, an overflow inside a long array
# (double_round, shift > 0), outputs that start at every offset from a 64-byte boundary, and
# dequantize and quantize calls large enough (48 MB) for the non-temporal stores.
SCRIPT_EDGES = r"""
import sys, numpy as np
import qkernels as qk
rng = np.random.default_rng(11)
I32MIN, I32MAX = -(1 << 31), (1 << 31) - 1
out = {"isa": np.array(qk.show_config(mode="dicts")["simd"]["chosen"])}
def accs(m, shift, n=700):
    parts = [np.array([I32MIN, I32MIN + 1, I32MAX, I32MAX - 1, 0, 1, -1, 2, -2, 1 << 30, -(1 << 30)]),
             rng.integers(I32MIN, I32MAX, n, endpoint=True), rng.integers(-5000, 5000, n // 2)]
    if m > 0:
        for k in {31, 31 - shift}:
            ties = rng.integers(-(1 << 40), 1 << 40, n // 2) * (1 << k) + (1 << (k - 1))
            for d in (-1, 0, 1):
                x = ties // m + d
                parts.append(x[(x >= I32MIN) & (x <= I32MAX)])
    a = np.concatenate(parts)
    if shift > 0:
        a = np.clip(a, I32MIN >> shift, I32MAX >> shift)
    return a.astype(np.int32)
ranges = [(np.int8, -4, None, None), (np.int8, 127, None, None), (np.int8, 3, -20, 90),
          (np.uint8, 0, None, None), (np.uint8, 255, None, None), (np.uint8, 200, 7, 250)]
for shift in range(-31, 31):
    for m in (0, 1, 1 << 30, 1583594044, I32MAX, int(rng.integers(0, 1 << 31))):
        a = accs(m, shift)
        for j, (dt, zp, lo, hi) in enumerate(ranges[(shift + m) % 3::3]):
            key = f"{shift}_{m}_{j}"
            out["d" + key] = qk.requantize(a, m, shift, zp, dtype=dt, qmin=lo, qmax=hi)
            out["s" + key] = qk.requantize(a, m, shift, zp, dtype=dt, qmin=lo, qmax=hi, scheme="single_round")
a = accs(0, 0, 3000)
for j, (dt, zp, lo, hi) in enumerate(ranges):
    for scale in (1e-9, 0.00123, 0.5, 3.0, 1e6):
        out[f"f{scale}_{j}"] = qk.requantize_float(a, scale, zp, dtype=dt, qmin=lo, qmax=hi)
    for rounding in ("half_up", "half_even", "half_away", "floor"):
        for shift in (-5, 0, 1, 2, 9, 30, 31):
            out[f"h{rounding}{shift}_{j}"] = qk.requantize_shift(a, shift, zp, rounding=rounding, dtype=dt, qmin=lo, qmax=hi)
bad = rng.integers(-1000, 1000, 5000).astype(np.int32)
bad[1234] = 1 << 29
try:
    qk.requantize(bad, 1 << 30, 2)
except qk.AccumulatorOverflowError as e:
    out["overflow"] = np.array(str(e))
# outputs that start at every offset from a 64-byte boundary (the scalar head before the SIMD
# blocks), lengths shorter and longer than the head; an overflow inside the head
a = accs(1583594044, -9, 300)
ybuf = np.zeros(700, np.int8)
for off in range(65):
    for ln in (5, 63, 200, a.size):
        ln = min(ln, a.size, ybuf.size - off)
        y = ybuf[off:off + ln]
        out[f"hd{off}_{ln}"] = qk.requantize(a[:ln], 1583594044, -9, 3, out=y).copy()
        out[f"hs{off}_{ln}"] = qk.requantize(a[:ln], 1583594044, -9, 3, scheme="single_round", out=y).copy()
        out[f"hf{off}_{ln}"] = qk.requantize_float(a[:ln], 0.001, 3, out=y).copy()
        out[f"hh{off}_{ln}"] = qk.requantize_shift(a[:ln], 21, 3, rounding="half_even", out=y).copy()
    b2 = bad[:300].copy()
    b2[off % 50] = 1 << 29
    try:
        qk.requantize(b2, 1 << 30, 2, out=ybuf[off:off + 300])
    except qk.AccumulatorOverflowError as e:
        out[f"hov{off}"] = np.array(str(e))
x = rng.standard_normal(4000).astype(np.float32) * 3
for dt, zp, lo, hi in ((np.uint8, 128, None, None), (np.int8, -3, -100, 100)):
    for flavor in ("pt2e", "fbgemm", "onnx", "tflite"):
        out[f"q{flavor}_{np.dtype(dt).name}"] = qk.quantize(x, 0.02, zp, dtype=dt, qmin=lo, qmax=hi, flavor=flavor)
buf = np.empty(5000, np.float32)
for dt in (np.uint8, np.int8, np.uint16, np.int16):
    info = np.iinfo(dt)
    q = rng.integers(info.min, info.max, 4000, endpoint=True).astype(dt)
    for off in range(17):  # every start offset (4-byte steps) from a 64-byte boundary
        out[f"dq{np.dtype(dt).name}{off}"] = qk.dequantize(q[off:], 0.0173, int(q[0]) // 2, out=buf[off:4000]).copy()
    # raw ufunc, zero point at the int32 ends (the int32 subtraction must not wrap)
    for zp in (I32MIN, I32MAX):
        out[f"dqraw{np.dtype(dt).name}{zp}"] = qk.ufuncs.dequantize(q, np.float32(0.5), np.int32(zp))
big = rng.integers(0, 256, 12_600_001).astype(np.uint8)
res = np.ones(big.size, np.float32)  # touched: resident pages
qk.dequantize(big, 0.02, 77, out=res)
out["dq_big"] = res
out["dq_big_new"] = qk.dequantize(big[3:], 0.02, 77)
# quantize calls large enough (48 MB read + written) for the non-temporal stores, into resident
# outputs at several offsets from a 64-byte boundary, and a NaN in the first (masked head) block
# and far inside
bigx = (rng.standard_normal(10_100_001) * 60).astype(np.float32)
bigx[::1001] = 0.5 + rng.integers(-200, 200, bigx[::1001].size)  # ties
for dt, off in ((np.uint8, 0), (np.uint8, 1), (np.int8, 37)):
    res = np.ones(bigx.size + 64, dt)[off:off + bigx.size]
    qk.quantize(bigx, 0.37, 3 if dt == np.int8 else 131, dtype=dt, out=res)
    out[f"q_big_{np.dtype(dt).name}{off}"] = res
for pos in (5, 9_000_000):
    x2 = bigx.copy()
    x2[pos] = np.nan
    try:
        qk.quantize(x2, 0.37, 131, dtype=np.uint8, out=np.ones(x2.size, np.uint8))
    except ValueError as e:
        out[f"q_big_nan{pos}"] = np.array(str(e))
np.savez(sys.argv[1], **out)
"""


def _run(path, simd, script=SCRIPT):
    env = dict(os.environ)
    env.pop("QKERNELS_SIMD", None)
    if simd != "auto":
        env["QKERNELS_SIMD"] = simd
    # the same qkernels this process imported (the source tree, or the sanitizer build)
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(qk.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([pkg_parent, HERE, env.get("PYTHONPATH", "")])
    subprocess.run([sys.executable, "-P", "-c", script, str(path), HERE], check=True, env=env,
                   cwd=ROOT)
    return np.load(path)


@pytest.mark.skipif(not qk.show_config(mode="dicts")["simd"]["cpu_has_avx2_fma"],
                    reason="this CPU has no AVX2+FMA: only the scalar path exists here")
def test_simd_and_scalar_loops_give_identical_bits(tmp_path):
    """auto (AVX-512 loops where the CPU has them), avx2 (forced) and scalar: the same bits."""
    auto = _run(tmp_path / "auto.npz", "auto")
    avx2 = _run(tmp_path / "avx2.npz", "avx2")
    scalar = _run(tmp_path / "scalar.npz", "scalar")
    assert str(auto["isa"]) == "avx2+fma" and str(scalar["isa"]) == "scalar"
    keys = [k for k in auto.files if k != "isa"]
    assert len(keys) > 300 and set(keys) == set(scalar.files) - {"isa"}
    for k in keys:
        for name, other in (("avx2", avx2), ("scalar", scalar)):
            a, b = auto[k], other[k]
            assert a.dtype == b.dtype and a.shape == b.shape, k
            assert np.array_equal(a.view(np.uint8), b.view(np.uint8)), f"{k}: auto and {name} differ"


@pytest.mark.skipif(not qk.show_config(mode="dicts")["simd"]["cpu_has_avx2_fma"],
                    reason="this CPU has no AVX2+FMA: only the scalar path exists here")
def test_elementwise_8bit_loops_on_their_edges_give_identical_bits(tmp_path):
    """SCRIPT_EDGES under auto (AVX-512 where the CPU has it), avx2 and scalar: the same bits."""
    runs = {simd: _run(tmp_path / f"{simd}.npz", simd, SCRIPT_EDGES) for simd in ("auto", "avx2", "scalar")}
    assert str(runs["scalar"]["isa"]) == "scalar"
    keys = [k for k in runs["scalar"].files if k != "isa"]
    assert len(keys) > 900 and "overflow" in keys and "index (1234,)" in str(runs["scalar"]["overflow"])
    assert sum(k.startswith("hov") for k in keys) == 65
    for pos in (5, 9_000_000):
        assert f"({pos},)" in str(runs["scalar"][f"q_big_nan{pos}"])
    for name in ("auto", "avx2"):
        assert set(runs[name].files) == set(runs["scalar"].files), name
        for k in keys:
            a, b = runs[name][k], runs["scalar"][k]
            assert a.dtype == b.dtype and a.shape == b.shape, k
            assert np.array_equal(a.view(np.uint8) if a.dtype.kind != "U" else a,
                                  b.view(np.uint8) if b.dtype.kind != "U" else b), f"{k}: {name} and scalar differ"
