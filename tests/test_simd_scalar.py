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

HERE = os.path.dirname(os.path.abspath(__file__))
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
np.savez(sys.argv[1], **out)
"""


def _run(path, simd):
    env = dict(os.environ)
    env.pop("QKERNELS_SIMD", None)
    if simd != "auto":
        env["QKERNELS_SIMD"] = simd
    # the same qkernels this process imported (the source tree, or the sanitizer build)
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(qk.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([pkg_parent, HERE, env.get("PYTHONPATH", "")])
    subprocess.run([sys.executable, "-P", "-c", SCRIPT, str(path), HERE], check=True, env=env,
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
