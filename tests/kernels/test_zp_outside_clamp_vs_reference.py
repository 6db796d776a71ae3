"""The output zero point outside [act_min, act_max]: TFLite and CMSIS-NN compute
``clamp(R(acc) + out_zp, act_min, act_max)`` with no rule tying the zero point to the clamp
(TFLite-generated CMSIS-NN test vectors have e.g. out_zp -128 with [-109, 127]); qconv2d /
qlinear take these calls and equal the reference of tests/_gemm_ref.py (written from TFLite's
integer_ops kernels) on every element, with the explicit per-channel multipliers and shifts those
vectors carry, with the three fixed-point roundings (double, single, and double with the
half-up shift of TFLite's optimized kernels), on every SIMD path (AVX-512 / AVX2 / scalar)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import qkernels

import _gemm_ref as R

I8 = np.int8

# (op, out_zp, act_min, act_max): the 7 call patterns qkernels refused before (the zero point on
# either side of the clamp, the clamp narrow or one-sided), for conv, depthwise and FC
PATTERNS = [
    ("conv", -128, -109, 127),
    ("conv", 127, -128, 100),
    ("depthwise", -128, -109, 127),
    ("depthwise", -128, -100, 50),
    ("fc", -128, -109, 127),
    ("fc", 100, -20, 20),
    ("fc", -90, -60, -10),
]


def _case(op, seed, center):
    """Random full-range int8 operands, per-channel M0 in [2^30, 2^31) and shifts (2^-11 ..
    2^-7) that spread the requantized values over the int8 range: the clamp cuts on both
    sides and most elements lie inside it."""
    rng = np.random.default_rng(seed)
    if op == "fc":
        x = rng.integers(-128, 128, (64, 96)).astype(I8)
        w = rng.integers(-127, 128, (48, 96)).astype(I8)
        n, geo = 48, None
    else:
        groups = 8 if op == "depthwise" else 1
        co = 16
        x = rng.integers(-128, 128, (2, 8, 13, 12)).astype(I8)
        w = rng.integers(-127, 128, (co, 8 // groups, 3, 3)).astype(I8)
        n, geo = co, dict(stride=(1, 2), padding=(1, 0, 1, 1), groups=groups)
    m0 = rng.integers(1 << 30, 1 << 31, n).astype(np.int64)
    lo_shift = {"conv": -11, "depthwise": -9, "fc": -11}[op]
    shift = rng.integers(lo_shift, lo_shift + 3, n).astype(np.int64)
    # a bias that centres R(acc) + out_zp in the clamp (as a trained layer's would)
    real = m0 / 2.0 ** 31 * 2.0 ** shift
    bias = (np.round(center / real) + rng.integers(-2000, 2000, n)).astype(np.int32)
    x_zp = int(rng.integers(-128, 128))
    return x, w, bias, m0, shift, x_zp, geo


def mismatches():
    """For every pattern and rounding: (elements, elements != reference)."""
    out = {}
    for k, (op, zp, lo, hi) in enumerate(PATTERNS):
        x, w, bias, m0, shift, x_zp, geo = _case(op, 100 + k, (lo + hi) / 2 - zp)
        for scheme in ("double_round", "single_round", "double_round_half_up"):
            kw = dict(x_zero_point=x_zp, out_zero_point=zp, act_min=lo, act_max=hi,
                      multiplier=m0, shift=shift, scheme=scheme, out_dtype=I8)
            single, up = scheme == "single_round", scheme == "double_round_half_up"
            if op == "fc":
                got = qkernels.qlinear(x, w, bias, **kw)
                acc = R.linear_acc(x, w, x_zp, 0, bias)
                ref = R.tflite_output(acc, m0, shift, zp, lo, hi, 1, single=single, half_up=up)
            else:
                got = qkernels.qconv2d(x, w, bias, **geo, **kw)
                pad = geo["padding"]
                acc = R.conv_acc(x, w, x_zp, 0, geo["stride"], pad, (1, 1), geo["groups"], bias)
                ref = R.tflite_output(acc, m0, shift, zp, lo, hi, 1, single=single, half_up=up)
            out[f"{k}:{op}:{scheme}"] = (int(ref.size), int((got != ref).sum()),
                                         int((ref == lo).sum()), int((ref == hi).sum()))
    return out


def test_zero_point_outside_the_clamp():
    res = mismatches()
    assert len(res) == 21
    for key, (n, bad, at_lo, at_hi) in res.items():
        assert bad == 0, (key, bad, n)
        assert at_lo > 0 and at_hi > 0, key      # the clamp cut on both sides


SCRIPT = r"""
import json, sys
sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[2])
import test_zp_outside_clamp_vs_reference as T
print(json.dumps(T.mismatches()))
"""


@pytest.mark.skipif(not qkernels.show_config(mode="dicts")["simd"]["cpu_has_avx2_fma"],
                    reason="this CPU has no AVX2+FMA: only the scalar path exists here")
@pytest.mark.parametrize("simd", ["scalar", "avx2"])
def test_zero_point_outside_the_clamp_every_simd_path(simd):
    here = os.path.dirname(os.path.abspath(__file__))
    pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(qkernels.__file__)))
    env = dict(os.environ, QKERNELS_SIMD=simd, PYTHONPATH=pkg_root)
    r = subprocess.run([sys.executable, "-c", SCRIPT, here, os.path.dirname(here)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(res) == 21 and all(v[1] == 0 for v in res.values()), res
