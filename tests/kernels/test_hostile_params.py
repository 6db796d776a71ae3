"""Hostile parameters (issue 11): multipliers that round up to 2**31, denormal and overflowing
scales, zero points outside their type in the raw gufunc. Each gives the right value or an error
naming the argument, and the SIMD and scalar paths agree on every input of the raw ufuncs."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import qkernels as qk
from qkernels import ufuncs
from _gemm_ref import quantize_multiplier as ref_quantize_multiplier

HERE = os.path.dirname(os.path.abspath(__file__))


# ---- quantize_multiplier: TFLite's rounding up to 2**31 -----------------------------------------
@pytest.mark.parametrize("m, want", [
    (2.0 ** 30 - 0.25, (2 ** 30, 31)),
    (2.0 ** 30 - 2.0 ** -20, (2 ** 30, 31)),
    (2.0 ** 30 - 0.5, (2 ** 31 - 1, 30)),
    (2.0 ** 30, (2 ** 30, 31)),
    (2.0 ** 31 - 1, (2 ** 31 - 1, 31)),
    (0.5 - 2.0 ** -34, (2 ** 30, 0)),
    (2.0 ** -32 - 2.0 ** -66, (2 ** 30, -31)),
    (2.0 ** -33, (0, 0)),
])
def test_quantize_multiplier_rounding_up(m, want):
    got = qk.quantize_multiplier(m)
    assert (int(got[0]), int(got[1])) == want == ref_quantize_multiplier(m)


def test_quantize_multiplier_near_every_power_of_two():
    """m one step below 2**e, for every e: the reference (TFLite's formula in plain Python) and
    the kernel agree, elementwise over one array."""
    ms = []
    for e in range(-33, 31):
        p = 2.0 ** e
        ms += [p, p - p * 2.0 ** -32, p - p * 2.0 ** -33, p - p * 2.0 ** -31, math.nextafter(p, 0)]
    m0, sh = qk.quantize_multiplier(np.array(ms))
    for m, a, b in zip(ms, m0, sh):
        assert (int(a), int(b)) == ref_quantize_multiplier(m), m


@pytest.mark.parametrize("m", [2.0 ** 31 - 0.5, 2.0 ** 31, 1e300])
def test_quantize_multiplier_too_large_names_m(m):
    with pytest.raises(ValueError, match=r"m=.* is too large"):
        qk.quantize_multiplier(m)
    with pytest.raises(ValueError, match=r"m=.* is too large"):
        qk.quantize_multiplier(np.array([0.5, m]))


def test_shift_31_is_refused_by_requantize_naming_shift():
    m0, sh = qk.quantize_multiplier(2.0 ** 30 - 0.25)
    with pytest.raises(ValueError, match=r"shift=31 .*outside \[-31, 30\]"):
        qk.requantize(np.int32([1]), m0, sh)


# ---- denormal scales ------------------------------------------------------------------------------
@pytest.mark.parametrize("flavor", ["torch", "pt2e", "fbgemm", "fbgemm_scalar"])
@pytest.mark.parametrize("scale", [1e-39, 2.0 ** -128, 1e-45])
def test_denormal_scale_named_for_reciprocal_flavours(flavor, scale):
    with pytest.raises(ValueError, match=r"scale=.* too small .*1/scale overflows float32"):
        qk.quantize(np.float32([0.0, 1.0]), scale, 5, flavor=flavor)
    with pytest.raises(ValueError, match=r"scale=.* \(index \(1,\)\) is too small"):
        qk.quantize(np.float32([[0.0, 1.0]]), np.float32([0.5, scale]), 5, flavor=flavor, axis=1)


def test_denormal_scale_fake_quantize():
    with pytest.raises(ValueError, match=r"scale=.* too small"):
        qk.fake_quantize(np.float32([0.0]), 1e-39, 0, -128, 127)


@pytest.mark.parametrize("flavor", ["onnx", "tflite"])
def test_denormal_scale_division_flavours_are_defined(flavor):
    """x / scale is defined for any finite positive scale: 0 stays the zero point, anything
    else saturates."""
    q = qk.quantize(np.float32([0.0, 1e-45, -1e-45, 1.0, -1.0]), 1e-39, 5, flavor=flavor)
    assert q.tolist() == [5, 5, 5, 127, -128]


def test_smallest_scale_with_a_finite_reciprocal():
    s = np.nextafter(np.float32(2.0 ** -128), np.float32(1))
    assert np.isfinite(np.float32(1) / s)
    assert qk.quantize(np.float32([0.0, 1e-45, 1.0]), s, 5).tolist() == [5, 5, 127]


# The raw ufuncs on every path: the same outputs (0 where the kernel refused) and the same flag.
PATH_SCRIPT = r"""
import json, sys, warnings
import numpy as np
from qkernels import ufuncs
res = {}
x = np.float32([0.0, 1e-45, -0.0, 1.0, -1.0, np.inf, -np.inf, 3e38] * 5)
for name in ("quantize_pt2e_s8", "quantize_fbgemm_u8", "quantize_fbgemm_scalar_s16",
             "quantize_onnx_s8", "quantize_tflite_u8", "quantize_pt2e_s32"):
    for s in (1e-39, 2.0 ** -128, 1e-45, 2.9e-39, 3e38, 1e-30):
        info = np.iinfo({"s8": np.int8, "u8": np.uint8, "s16": np.int16, "s32": np.int32}[name.rsplit("_", 1)[1]])
        with np.errstate(invalid="ignore"):
            y = getattr(ufuncs, name)(x, np.float32(s), 5, int(info.min), int(info.max))
        with np.errstate(invalid="raise"):
            try:
                getattr(ufuncs, name)(x, np.float32(s), 5, int(info.min), int(info.max))
                flag = False
            except FloatingPointError:
                flag = True
        res[f"{name}_{s}"] = [y.astype(np.int64).tolist(), flag]
with np.errstate(invalid="ignore"):
    res["fake"] = ufuncs.fake_quantize_torch(x, np.float32(1e-39), 0, -128, 127).tolist()
    res["deq"] = ufuncs.dequantize(np.uint8([0, 1, 255] * 9), np.float32(1e-45), 3).tolist()
    res["req"] = ufuncs.requantize_fp32_s8(np.int32([0, 1, -1, 2**31 - 1, -2**31] * 5), np.float32(1e-45), 0, -128, 127).tolist()
json.dump(res, open(sys.argv[1], "w"))
"""


@pytest.fixture(scope="module")
def per_path(tmp_path_factory):
    out = {}
    for simd in ("auto", "avx2", "scalar"):
        f = tmp_path_factory.mktemp("p") / f"{simd}.json"
        env = dict(os.environ)
        env.pop("QKERNELS_SIMD", None)
        if simd != "auto":
            env["QKERNELS_SIMD"] = simd
        r = subprocess.run([sys.executable, "-c", PATH_SCRIPT, str(f)], env=env, cwd=HERE,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        out[simd] = json.loads(f.read_text())
    return out


def test_raw_ufuncs_agree_across_paths_on_hostile_scales(per_path):
    assert per_path["auto"] == per_path["avx2"] == per_path["scalar"]
    r = per_path["scalar"]
    assert r["quantize_pt2e_s8_1e-39"] == [[0] * 40, True]      # refused: zeros and 'invalid'
    assert r["quantize_onnx_s8_1e-39"][1] is False              # division: defined


# ---- the raw gufunc linear_int32 never returns uninitialised memory --------------------------
@pytest.mark.parametrize("xzp, wzp", [(300, 0), (0, 200), (0, -129), (-1, 0), (2 ** 31 - 1, 0)])
def test_linear_int32_gufunc_bad_zero_point_gives_zeros(xzp, wzp):
    x = np.full((3, 5), 7, np.uint8)
    w = np.ones((4, 5), np.int8)
    out = np.full((3, 4), 123456789, np.int32)
    with pytest.warns(RuntimeWarning, match="invalid"):
        ufuncs.linear_int32(x, w, np.int32(xzp), np.full(4, wzp, np.int32), out=out)
    assert (out == 0).all()
    with np.errstate(invalid="raise"), pytest.raises(FloatingPointError):
        ufuncs.linear_int32(x, w, np.int32(xzp), np.full(4, wzp, np.int32))


def test_linear_int32_gufunc_bound_beyond_int32_gives_zeros_per_block():
    """A stack of two problems, the second one's worst case beyond int32 (x_zp 0: 255 * 128 *
    70000), the first's within it (x_zp 128): the first is exact, the second all zeros, and
    'invalid' is raised."""
    x = np.full((2, 1, 70000), 3, np.uint8)
    w = np.full((2, 1, 70000), -128, np.int8)
    with np.errstate(invalid="ignore"):
        y = ufuncs.linear_int32(x, w, np.int32([128, 0]), np.zeros((2, 1), np.int32))
    assert y[0, 0, 0] == (3 - 128) * -128 * 70000 and y[1, 0, 0] == 0
    with np.errstate(invalid="raise"), pytest.raises(FloatingPointError):
        ufuncs.linear_int32(x, w, np.int32([128, 0]), np.zeros((2, 1), np.int32))


# ---- requantization ratios that overflow: errors name the scales ---------------------------------
def test_overflowing_ratio_names_the_scales():
    x = np.ones((1, 4), np.uint8)
    w = np.ones((2, 4), np.int8)
    with pytest.raises(ValueError, match=r"x_scale \* w_scale / out_scale overflows float32 .*"
                                         r"x_scale=1e\+20, w_scale=1e\+10, out_scale=1e-10"):
        qk.qlinear(x, w, x_scale=1e20, w_scale=1e10, out_scale=1e-10, preset="fbgemm")
    with pytest.raises(ValueError, match=r"underflows to 0 in float32 .*out_scale=1e\+20"):
        qk.qlinear(x, w, x_scale=1e-20, w_scale=1e-10, out_scale=1e20, preset="qnnpack")
    with pytest.raises(ValueError, match=r"x_scale \* w_scale / out_scale = 1.07374182e\+09 .*"
                                         r"needs a shift above 30"):
        qk.qlinear(x.view(np.int8), w, x_scale=1.0, w_scale=2.0 ** 29, out_scale=0.5000000001,
                   preset="cmsis_nn")      # fixed point (tflite's FullyConnected is fp64)
    # tflite's conv multiplies the scales in double ((double)xs * ws / os = 1e40, as LiteRT's
    # PopulateConvolutionQuantizationParams), so the ratio is finite but too large
    with pytest.raises(ValueError, match=r"x_scale \* w_scale / out_scale = 1.0+4e\+40 .*too large"):
        qk.qconv2d(np.ones((1, 4, 1, 1), np.int8), np.ones((2, 4, 1, 1), np.int8), x_scale=1e20,
                   w_scale=1e20, out_scale=1.0, preset="tflite")
