"""A conv written into a channel slice of a larger NCHW array (``PreparedQConv2d.runner_into``,
C ``qk_conv2d_strided``: its images a batch stride apart, how the PyTorch bridge writes a
concatenation's inputs in place) == the contiguous output then copied there, on every algorithm
of qk_conv2d, 1 and 2 threads, at every SIMD level; the array's other channels untouched."""
import os
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from _strided_out_cases import CASES, strided_outputs  # noqa: E402
from _util import run_simd_paths  # noqa: E402

import qkernels as qk  # noqa: E402


def _check(ref, buf, c0, name):
    n = ref.shape[1]
    want = np.full_like(buf, 77)
    want[:, c0:c0 + n] = ref
    assert np.array_equal(buf, want), name


def test_strided_output_equals_contiguous_then_copied():
    res = strided_outputs(3)
    assert len(res) == 2 * len(CASES)
    for name, (ref, buf, c0) in res.items():
        _check(ref, buf, c0, name)


SCRIPT = r"""
import sys
sys.path.insert(0, {tests!r})
import numpy as np
from _strided_out_cases import strided_outputs
r = strided_outputs(5)
np.savez(sys.argv[1], **{{k + "|ref": v[0] for k, v in r.items()}},
         **{{k + "|buf": v[1] for k, v in r.items()}})
"""


def test_strided_output_every_simd_level(tmp_path):
    """QKERNELS_SIMD=scalar / avx2 (the int16 path) / this CPU's best level."""
    runs = run_simd_paths(SCRIPT.format(tests=os.path.dirname(HERE)), tmp_path)
    for isa, got in runs.items():
        names = {k.split("|")[0] for k in got}
        assert len(names) == 2 * len(CASES)
        for k in names:
            _check(got[k + "|ref"], got[k + "|buf"], 3, (isa, k))


def test_strided_output_refuses_bad_layouts():
    w = np.ones((4, 3, 3, 3), np.int8)
    conv = qk.prepare_qconv2d(w, x_dtype=np.uint8, x_scale=0.1, w_scale=0.1, out_scale=1.0,
                              out_dtype=np.uint8, padding=1, preset="fbgemm")
    x = np.ones((2, 3, 5, 5), np.uint8)
    run = conv.runner_into(x.shape)
    buf = np.zeros((2, 9, 5, 5), np.uint8)
    with pytest.raises(ValueError, match="batch stride"):
        run(x, buf[:, :, :, :4][:, :4], 1)            # rows not contiguous
    with pytest.raises(ValueError, match="batch stride"):
        run(x, buf[:, 0:8:2], 1)                       # channels apart
    with pytest.raises(ValueError, match="batch stride"):
        run(x, buf[:, :5], 1)                          # wrong channel count
    with pytest.raises(ValueError, match="batch stride"):
        run(x, buf[::-1, :4], 1)                       # negative batch stride
    ro = buf[:, :4]
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        run(x, ro, 1)
    assert not buf.any()
