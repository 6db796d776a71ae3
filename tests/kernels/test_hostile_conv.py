"""Hostile convolution geometry (issue 11): sizes that wrapped in size_t, and windows made of
padding, give the exact result (an independent int64 reference that never builds the padded
image) on every path, and memory follows the work, not the padding.

The instruction set is chosen once per process, so each path (auto = AVX512-VNNI here, avx2,
scalar) runs the cases in a subprocess that also measures its own peak RSS around each call.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import qkernels as qk
from _hostile_ref import conv_acc_sparse

HERE = os.path.dirname(os.path.abspath(__file__))
HELPERS = os.path.dirname(HERE)   # tests/: the helper modules

# (name, x shape, w shape, groups, stride, padding (t, l, b, r), dilation)
CASES = [
    # the issue: a (1, 4, 1, 1) input, a (1, 1, 2, 2) output, a 16385 x 16385 padded plane (1 GB)
    ("issue_pad2^13_stride2^14", (1, 4, 1, 1), (1, 4, 1, 1), 1, (2**14, 2**14), (2**13,) * 4, (1, 1)),
    # a 1 x 1 output whose padded image is 5 x 45825^2 int16: 21 GB
    ("issue_1x1_out_21GB", (1, 5, 1, 1), (1, 5, 1, 1), 1, (45825, 45825), (22912,) * 4, (1, 1)),
    # the same sizes with windows that do reach the input
    ("pad2^13_stride2^13", (1, 4, 1, 1), (3, 4, 1, 1), 1, (2**13, 2**13), (2**13,) * 4, (1, 1)),
    ("pad_stride_3x3", (2, 6, 5, 7), (4, 3, 3, 3), 2, (4099, 4097), (4096, 4095, 4097, 4099), (1, 1)),
    ("dilation_2^20", (1, 3, 4, 4), (2, 3, 2, 2), 1, (1, 1), (2**19, 2**19, 2**19, 2**19), (2**20, 2**20)),
    ("depthwise_pad2^14", (1, 8, 3, 3), (8, 1, 3, 3), 8, (2**14 + 1, 3), (2**14, 1, 2**14, 1), (1, 1)),
    ("depthwise_mult2_dil", (2, 3, 6, 6), (6, 1, 3, 2), 3, (700, 2), (1000, 2, 1000, 2), (300, 1)),
    # the wrapping geometry of the issue: 2^32 x 2^32 padded plane (2^64 elements wrapped to 0)
    ("wrap_c1", (1, 1, 1, 1), (1, 1, 1, 1), 1, (2**32, 2**32), (2**31, 2**31, 2**31 - 1, 2**31 - 1), (1, 1)),
    ("wrap_c4", (1, 4, 1, 1), (1, 4, 1, 1), 1, (2**32, 2**32), (2**31, 2**31, 2**31 - 1, 2**31 - 1), (1, 1)),
    ("wrap_depthwise", (1, 4, 1, 1), (4, 1, 1, 1), 4, (2**32, 2**32), (2**31, 2**31, 2**31 - 1, 2**31 - 1), (1, 1)),
    # dilation 2^62 with padding 2^61: a 2-tap window spanning 2^62 + 1 rows
    ("dilation_2^62", (1, 2, 1, 1), (1, 2, 2, 1), 1, (1, 1), (2**61, 0, 2**61, 0), (2**62, 1)),
]
MEMORY_CASES = ("issue_pad2^13_stride2^14", "issue_1x1_out_21GB")
LIMIT_MB = 64

SCRIPT = r"""
import json, resource, sys
import numpy as np
import qkernels as qk
from test_hostile_conv import CASES, inputs

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

res = {}
for name, xs, ws, g, st, pad, dil in sorted(CASES, key=lambda c: c[0] not in sys.argv[2:]):
    x, w, wzp, bias = inputs(xs, ws)
    before = peak_mb()
    y = qk.conv2d_int32(x, w, bias, stride=st, padding=pad, dilation=dil, groups=g,
                        x_zero_point=3, w_zero_point=wzp)
    grew = peak_mb() - before
    q = qk.qconv2d(x, w, bias.astype(np.float32) / 50, stride=st, padding=pad, dilation=dil,
                   groups=g, x_scale=0.1, x_zero_point=3, w_scale=0.02, w_zero_point=wzp,
                   out_scale=0.3, out_zero_point=7, preset="fbgemm")
    x8 = (x.astype(np.int16) - 128).astype(np.int8)
    t = qk.qconv2d(x8, (w.astype(np.int16) - 128).clip(-127, 127).astype(np.int8), bias,
                   stride=st, padding=pad, dilation=dil, groups=g, x_scale=0.1,
                   x_zero_point=-5, w_scale=0.02, out_scale=0.3, out_zero_point=7,
                   preset="tflite")
    res[name] = {"y": y.tolist(), "q": q.tolist(), "t": t.tolist(), "grew_mb": grew,
                 "peak_mb": peak_mb()}
res["isa"] = qk.show_config(mode="dicts")["simd"]["chosen"]
json.dump(res, open(sys.argv[1], "w"))
"""


def inputs(xs, ws):
    """Deterministic operands of a case: uint8 x, uint8 w with per-channel zero points, bias."""
    rng = np.random.default_rng(sum(xs) * 31 + sum(ws))
    x = rng.integers(0, 256, xs).astype(np.uint8)
    w = rng.integers(0, 256, ws).astype(np.uint8).view(np.int8)
    wzp = rng.integers(-128, 128, ws[0])
    bias = rng.integers(-50_000, 50_000, ws[0]).astype(np.int32)
    return x, w, wzp, bias


@pytest.fixture(scope="module", params=["auto", "avx2", "scalar"])
def path_results(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("hostile") / f"{request.param}.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, HELPERS, os.environ.get("PYTHONPATH", "")]))
    env.pop("QKERNELS_SIMD", None)
    if request.param != "auto":
        env["QKERNELS_SIMD"] = request.param
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(out), *MEMORY_CASES], env=env,
                       capture_output=True, text=True, timeout=600, cwd=HERE)
    assert r.returncode == 0, r.stdout + r.stderr
    return request.param, json.loads(out.read_text())


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_exact_on_every_path(path_results, case):
    name, xs, ws, g, st, pad, dil = case
    simd, res = path_results
    x, w, wzp, bias = inputs(xs, ws)
    want = conv_acc_sparse(x, w, 3, wzp, st, pad, dil, g, bias)
    got = np.array(res[name]["y"], np.int64)
    assert got.shape == want.shape and np.array_equal(got, want), f"{name} on {simd}"


def test_paths_agree_on_requantized_outputs(path_results):
    """fbgemm (fused fp32 output stage on VNNI) and tflite (double_round) give the same bytes on
    every path as the int32 sums requantized by the elementwise kernels."""
    simd, res = path_results
    for name, xs, ws, g, st, pad, dil in CASES:
        x, w, wzp, bias = inputs(xs, ws)
        acc = conv_acc_sparse(x, w, 3, wzp, st, pad, dil, g).astype(np.int32)
        xw = np.float32(np.float32(0.1) * np.float32(0.02))
        scale = np.float32(xw / np.float32(0.3))
        # FBGEMM's per-tensor float bias: fl(b * fl(1.0 / (double)fl(x_s * w_s))) (SPEC section 5)
        fb = (bias.astype(np.float32) / np.float32(50) * np.float32(1.0 / np.float64(xw))).astype(np.float32)
        f = (acc.astype(np.float32) + fb[None, :, None, None]) * scale
        want = np.clip(np.rint(np.clip(f, -7, 248)) + 7, 0, 255).astype(np.uint8)
        assert np.array_equal(np.array(res[name]["q"], np.uint8), want), f"{name} fbgemm on {simd}"


@pytest.mark.parametrize("case", MEMORY_CASES)
def test_memory_follows_the_work(path_results, case):
    simd, res = path_results
    assert res[case]["grew_mb"] < LIMIT_MB, (
        f"{case} on {simd}: peak RSS grew by {res[case]['grew_mb']:.1f} MB")


def test_tflite_outputs_agree_across_paths(path_results, tmp_path):
    """The int8 tflite outputs (double_round epilogue) are the same on every path: compared with
    the auto path's in this process."""
    simd, res = path_results
    for name, xs, ws, g, st, pad, dil in CASES:
        x, w, wzp, bias = inputs(xs, ws)
        x8 = (x.astype(np.int16) - 128).astype(np.int8)
        w8 = (w.astype(np.int16) - 128).clip(-127, 127).astype(np.int8)
        here = qk.qconv2d(x8, w8, bias, stride=st, padding=pad, dilation=dil, groups=g,
                          x_scale=0.1, x_zero_point=-5, w_scale=0.02, out_scale=0.3,
                          out_zero_point=7, preset="tflite")
        assert np.array_equal(np.array(res[name]["t"], np.int8), here), f"{name} on {simd}"
