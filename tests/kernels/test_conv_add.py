"""qk_conv2d_add through PreparedQConv2d.add_runner: the conv with PyTorch's quantized add fused
into its output stage gives exactly qconv2d then qops.qadd (every conv path: fused and unfused
output stages, depthwise, 1x1 as a GEMM, a batch as one wide image, windows of mostly padding),
with saturating sums, ReLU, u8 and s8, at 1 and 2 threads; the AVX2 and scalar paths give the
same bits (subprocesses); bad arguments raise."""
import os
import subprocess
import sys

import numpy as np
import pytest

import qkernels as qk
from qkernels import qops

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# (batch, in_c, out_c, h, w, k, stride, pad, groups)
SHAPES = [(1, 64, 64, 14, 14, 1, 1, 0, 1), (1, 24, 40, 20, 21, 3, 1, 1, 1),
          (1, 24, 20, 19, 17, 3, 2, 1, 1), (1, 32, 32, 15, 15, 3, 1, 1, 32),
          (2, 64, 24, 4, 4, 1, 1, 0, 1), (3, 5, 12, 5, 5, 3, 1, 1, 1), (1, 4, 8, 3, 3, 3, 1, 30, 1)]
PRESETS = [("fbgemm", np.uint8, np.uint8), ("tflite", np.int8, np.int8),
           ("onnxruntime", np.uint8, np.uint8)]


def _cases(seed=0):
    """(name, prepared conv, x, other, add parameters) for every shape x preset x variant."""
    rng = np.random.default_rng(seed)
    for shape in SHAPES:
        b, ci, co, h, w, k, s, p, g = shape
        for preset, xdt, odt in PRESETS:
            wt = rng.integers(-128, 128, (co, ci // g, k, k)).astype(np.int8)
            bias = rng.normal(0, 2, co).astype(np.float32) if preset == "fbgemm" else \
                rng.integers(-3000, 3000, co).astype(np.int32)
            info = np.iinfo(odt)
            zp = int(rng.integers(info.min, info.max + 1))
            conv = qk.prepare_qconv2d(wt, bias, x_dtype=xdt, x_scale=0.02, x_zero_point=3,
                                      w_scale=rng.uniform(0.002, 0.01, co).astype(np.float32),
                                      out_scale=0.3, out_zero_point=zp, preset=preset,
                                      out_dtype=odt, stride=s, padding=p, groups=g)
            x = rng.integers(np.iinfo(xdt).min, np.iinfo(xdt).max + 1, (b, ci, h, w)).astype(xdt)
            for relu in (False, True):
                for out_scale in (0.011, 0.37):         # 0.011: most sums saturate
                    oshape = conv.output_shape(x.shape)
                    other = rng.integers(info.min, info.max + 1, oshape).astype(odt)
                    params = (0.3, float(rng.uniform(0.05, 0.5)), int(rng.integers(info.min, info.max + 1)),
                              out_scale, int(rng.integers(info.min, info.max + 1)), relu)
                    yield f"{shape}-{preset}-{relu}-{out_scale}", conv, x, other, params


def test_fused_add_equals_conv_then_qadd():
    n, saturated = 0, 0
    for name, conv, x, other, (cs, os_, oz, outs, outz, relu) in _cases():
        ref = qops.qadd(conv(x), other, cs, conv.out_zero_point, os_, oz, outs, outz, relu=relu)
        for threads in (1, 2):
            y = conv.add_runner(x.shape, cs, os_, oz, outs, outz, relu)(x, other, threads)
            assert y.dtype == ref.dtype and y.shape == ref.shape
            np.testing.assert_array_equal(y, ref, err_msg=f"{name} threads={threads}")
        info = np.iinfo(ref.dtype)
        saturated += int(((ref == info.min) | (ref == info.max)).sum())
        n += ref.size
    assert saturated > n // 10     # the saturating cases saturate


SCRIPT = r"""
import sys, numpy as np
sys.path.insert(0, sys.argv[2])
import test_conv_add as T
out = {}
for i, (name, conv, x, other, p) in enumerate(T._cases(1)):
    out[str(i)] = conv.add_runner(x.shape, *p)(x, other, 2)
np.savez(sys.argv[1], **out)
"""


def test_fused_add_simd_equals_scalar(tmp_path):
    """The best path (AVX-512 / VNNI here), AVX2 and scalar give the same bytes."""
    here = os.path.dirname(os.path.abspath(__file__))
    outs = {}
    for simd in ("auto", "avx2", "scalar"):
        env = dict(os.environ)
        env.pop("QKERNELS_SIMD", None)
        if simd != "auto":
            env["QKERNELS_SIMD"] = simd
        f = tmp_path / f"{simd}.npz"
        subprocess.run([sys.executable, "-c", SCRIPT, str(f), here], check=True, env=env,
                       cwd=ROOT, timeout=600)
        outs[simd] = np.load(f)
    for key in outs["auto"].files:
        for simd in ("avx2", "scalar"):
            np.testing.assert_array_equal(outs[simd][key], outs["auto"][key], err_msg=f"{simd} {key}")


def test_fused_add_refusals():
    w = np.ones((4, 2, 1, 1), np.int8)
    c = qk.prepare_qconv2d(w, x_dtype=np.uint8, x_scale=0.5, w_scale=0.5, out_scale=0.25,
                           preset="fbgemm", out_dtype=np.uint8)
    x = np.full((1, 2, 3, 3), 4, np.uint8)
    other = np.zeros((1, 4, 3, 3), np.uint8)
    run = c.add_runner(x.shape, 0.25, 0.5, 0, 1.0, 0)
    with pytest.raises(ValueError, match="other"):
        run(x, np.zeros((1, 4, 3, 2), np.uint8), 1)
    with pytest.raises(ValueError, match="other"):
        run(x, other.astype(np.int8), 1)
    with pytest.raises(ValueError, match="scale"):
        c.add_runner(x.shape, 0.25, 0.0, 0, 1.0, 0)(x, other, 1)
    with pytest.raises(ValueError, match="scale"):
        c.add_runner(x.shape, float("nan"), 0.5, 0, 1.0, 0)(x, other, 1)
    with pytest.raises(ValueError, match="zero point"):
        c.add_runner(x.shape, 0.25, 0.5, 300, 1.0, 0)(x, other, 1)
    # (an int32 conv output is refused in C: tests/c/test_conv_add.c)
