"""qk_qmax_pool2d (AVX-512 VBMI: one output row a vector for planes up to 128 wide; by rows: a
vertical pass over whole rows, then the columns, with an AVX2 path
for 3-wide stride-2 windows; 3x3 / stride 1 / padding 1 over whole small planes, on AVX-512 64
flat elements a vector for rows up to 64 wide) against an independent NumPy reference written from qkernels.h's
definition: output (i, j) is the maximum over the in-bounds taps of its window, or the type's
minimum when the window has none. Random geometries (kernel, stride, padding, dilation, output
sizes beyond PyTorch's), rows wider than the row buffer (the tap-by-tap loop), and every SIMD
level in a subprocess."""
import os
import subprocess
import sys

import numpy as np
import pytest

from qkernels import _core

HERE = os.path.dirname(os.path.abspath(__file__))


def reference(x, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow):
    info = np.iinfo(x.dtype)
    n, c, h, w = x.shape
    y = np.full((n, c, oh, ow), info.min, x.dtype)
    for a in range(kh):
        rows = np.arange(oh) * sh + a * dh - ph
        rok = (rows >= 0) & (rows < h)
        for b in range(kw):
            cols = np.arange(ow) * sw + b * dw - pw
            cok = (cols >= 0) & (cols < w)
            tap = x[:, :, np.clip(rows, 0, h - 1)][:, :, :, np.clip(cols, 0, w - 1)]
            tap = np.where(rok[:, None] & cok[None, :], tap, info.min)
            y = np.maximum(y, tap)
    return y


def geometries(seed, count):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        kh, kw = (3, 3) if i % 3 == 0 else tuple(int(v) for v in rng.integers(1, 5, 2))
        sh, sw = (2, 2) if i % 3 == 0 else tuple(int(v) for v in rng.integers(1, 4, 2))
        dh, dw = (1, 1) if i % 2 == 0 else tuple(int(v) for v in rng.integers(1, 3, 2))
        ph, pw = int(rng.integers(0, kh // 2 + 1)), int(rng.integers(0, kw // 2 + 1))
        h = int(rng.integers(1, 40))
        w = int(rng.choice([int(rng.integers(1, 40)), int(rng.integers(30, 300))]))
        fh = max(1, (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1)
        fw = max(1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1)
        oh, ow = int(rng.integers(1, fh + 2)), int(rng.integers(1, fw + 2))
        out.append((h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow))
    return out


@pytest.mark.parametrize("dt", [np.uint8, np.int8])
def test_random_geometries_equal_the_reference(dt):
    rng = np.random.default_rng(1)
    info = np.iinfo(dt)
    for g in geometries(2, 150):
        h, w, *p = g
        x = rng.integers(info.min, info.max, (2, 3, h, w), endpoint=True).astype(dt)
        if rng.random() < 0.3:  # long runs of the extremes: ties and the type's minimum
            x[..., ::2] = info.min
            x[..., 1::3] = info.max
        np.testing.assert_array_equal(_core._qmax_pool2d(x, *p), reference(x, *p), err_msg=str(g))


SAME = [(h, w) for h in (1, 2, 3, 7, 14, 28) for w in (1, 2, 3, 7, 28, 56)] + [(64, 64), (65, 63)]
# the flat AVX-512 path (rows up to 64 wide, planes up to 4096): planes that end inside, at and
# past a vector's end, rows of 63 / 64 / 65 (the narrow path), a plane of one column
SAME += [(17, 17), (35, 35), (4, 16), (3, 64), (2, 65), (9, 63), (100, 1)]


@pytest.mark.parametrize("dt", [np.uint8, np.int8])
def test_same_3x3_stride_1_planes_equal_the_reference(dt):
    """GoogLeNet's / Inception's branch pooling (3x3, stride 1, padding 1): whole planes up to
    4096 elements at once (1-row and 1-column planes included), larger ones by rows."""
    rng = np.random.default_rng(7)
    info = np.iinfo(dt)
    for h, w in SAME:
        x = rng.integers(info.min, info.max, (2, 5, h, w), endpoint=True).astype(dt)
        if rng.random() < 0.4:
            x[..., ::2, :] = info.min
            x[..., :, 1::3] = info.max
        p = (3, 3, 1, 1, 1, 1, 1, 1, h, w)
        np.testing.assert_array_equal(_core._qmax_pool2d(x, *p), reference(x, *p),
                                      err_msg=str((h, w)))


@pytest.mark.parametrize("dt", [np.uint8, np.int8])
def test_narrow_path_edges_equal_the_reference(dt):
    """The AVX-512 VBMI path's limits: planes 64 / 65 / 128 / 129 wide (one or two 64-byte
    halves, or the rows path), output rows of 64 / 65 bytes, windows of 32 / 33 columns."""
    rng = np.random.default_rng(8)
    info = np.iinfo(dt)
    for w in (63, 64, 65, 127, 128, 129):
        x = rng.integers(info.min, info.max, (1, 3, 9, w), endpoint=True).astype(dt)
        for p in ((3, 3, 2, 2, 1, 1, 1, 1, 5, (w + 1) // 2), (3, 3, 1, 1, 1, 1, 1, 1, 9, w),
                  (2, 32, 1, 1, 0, 16, 1, 1, 8, w + 1), (2, 33, 2, 1, 1, 16, 1, 2, 5, w),
                  (3, 5, 1, 2, 1, 2, 2, 3, 9, min(w, 70))):
            np.testing.assert_array_equal(_core._qmax_pool2d(x, *p), reference(x, *p),
                                          err_msg=str((w, p)))


@pytest.mark.parametrize("dt", [np.uint8, np.int8])
def test_rows_wider_than_the_row_buffer(dt):
    # w > 4096 takes the tap-by-tap loop, the same maxima
    rng = np.random.default_rng(3)
    info = np.iinfo(dt)
    x = rng.integers(info.min, info.max, (1, 2, 5, 5000), endpoint=True).astype(dt)
    for p in ((3, 3, 2, 2, 1, 1, 1, 1, 3, 2500), (2, 3, 1, 2, 0, 1, 1, 2, 4, 2500)):
        np.testing.assert_array_equal(_core._qmax_pool2d(x, *p), reference(x, *p))


SCRIPT = """
import sys, numpy as np
sys.path.insert(0, sys.argv[2])
from qkernels import _core
from test_maxpool_vs_reference import geometries
rng = np.random.default_rng(5)
out = {}
for i, g in enumerate(geometries(6, 60)):
    h, w, *p = g
    for dt in (np.uint8, np.int8):
        info = np.iinfo(dt)
        x = rng.integers(info.min, info.max, (1, 2, h, w), endpoint=True).astype(dt)
        out[f"{i}_{info.dtype}"] = _core._qmax_pool2d(x, *p)
from test_maxpool_vs_reference import SAME
for h, w in SAME:                                               # 3x3 / 1 / 1 whole planes
    for dt in (np.uint8, np.int8):
        info = np.iinfo(dt)
        x = rng.integers(info.min, info.max, (1, 3, h, w), endpoint=True).astype(dt)
        out[f"same_{h}x{w}_{info.dtype}"] = _core._qmax_pool2d(x, 3, 3, 1, 1, 1, 1, 1, 1, h, w)
x = rng.integers(0, 256, (1, 64, 112, 112)).astype(np.uint8)   # ResNet's stem pooling
out["stem"] = _core._qmax_pool2d(x, 3, 3, 2, 2, 1, 1, 1, 1, 56, 56)
np.savez(sys.argv[1], **out)
"""


def test_simd_levels_agree(tmp_path):
    outs = {}
    for isa in ("scalar", "avx2", "auto"):
        path = tmp_path / f"{isa}.npz"
        env = dict(os.environ, QKERNELS_SIMD=isa)
        subprocess.run([sys.executable, "-c", SCRIPT, str(path), HERE], check=True, env=env)
        outs[isa] = np.load(path)
    assert len(outs["scalar"].files) == 121 + 2 * len(SAME)
    for isa in ("avx2", "auto"):
        assert outs[isa].files == outs["scalar"].files
        for k in outs["scalar"].files:
            np.testing.assert_array_equal(outs[isa][k], outs["scalar"][k], err_msg=f"{isa}: {k}")
