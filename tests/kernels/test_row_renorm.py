"""qkernels.transformer.row_renorm (C: qk_row_renorm, the blocks' renorm_floor) against the int64
floor division it states, ``floor((2^9 acc + rs) / (2 rs))`` with ``rs`` the row sums of ``p``:
random rows, the int32 edges of acc, row sums from 1 to 255 n, exact ties, every SIMD tail; the
forced SIMD paths equal; bad input refused. (The int64 fallback for rows summing to 2^40 or
more needs rows of 2^32 bytes: not run.)"""
import numpy as np
import pytest

import qkernels.transformer as T
from _util import assert_simd_paths_equal, run_simd_paths

I32 = (-2 ** 31, 2 ** 31 - 1)


def _ref(acc, p):
    rs = p.sum(axis=-1, dtype=np.int64)[..., None]
    return (acc.astype(np.int64) * 512 + rs) // (2 * rs)


def _case(rng, rows, cols, n):
    """acc, p: row sums from 1 to 255 n (some multiples of 512); acc up to int32's edges where
    the quotient fits (|acc| < 2^23 rs), near-ties: acc = (k 2 rs - rs) / 512 + {-1, 0, 1}
    (rounded down; exact quotients where 512 divides rs)."""
    p = rng.integers(0, 256, (rows, n)).astype(np.uint8)
    p[0] = 0
    p[0, 0] = 1                                  # sum 1
    p[1 % rows] = 255                            # sum 255 n
    sparse = rng.random((rows, n)) < 0.9
    p[2:rows // 2][sparse[2:rows // 2]] = 0      # small sums
    p[np.arange(rows), rng.integers(0, n, rows)] |= 1   # no zero row
    # exact quotients need rs a multiple of 2^9 (512 acc = -rs mod 2 rs): a few such rows
    for r in range(rows // 2, min(rows, rows // 2 + 4)):
        if n >= 3:
            t = 512 * int(rng.integers(1, 255 * n // 512 + 1))
            p[r] = 0
            p[r, :t // 255] = 255
            p[r, t // 255] = t % 255
    rs = p.sum(axis=-1, dtype=np.int64)[:, None]
    hi = np.minimum(I32[1], (1 << 23) * rs - 1)
    acc = (rng.random((rows, cols)) * 2 - 1) * hi
    acc = np.round(acc).astype(np.int64)
    acc[:, :1] = hi                              # the largest |acc| that fits
    if cols > 1:
        acc[:, 1:2] = -hi
    k = rng.integers(-255 * 256, 255 * 256, (rows, cols))
    tie = (k * 2 * rs - rs) // 512 + rng.integers(-1, 2, (rows, cols))
    use = rng.random((rows, cols)) < 0.5
    acc[use] = np.clip(tie, -hi, hi)[use]
    return acc.astype(np.int32), p


def test_row_renorm_equals_int64_floor_division():
    rng = np.random.default_rng(16)
    ties = 0
    for rows, cols, n in ((3, 1, 1), (9, 5, 2), (20, 32, 128), (13, 33, 197), (17, 7, 64),
                          (40, 16, 300), (8, 3, 1000)):
        acc, p = _case(rng, rows, cols, n)
        ref = _ref(acc, p)
        assert ref.min() >= I32[0] and ref.max() <= I32[1]
        got = T.row_renorm(acc, p)
        assert got.dtype == np.int32 and np.array_equal(got, ref)
        rs = p.sum(axis=-1, dtype=np.int64)[:, None]
        ties += int(((acc.astype(np.int64) * 512 + rs) % (2 * rs) == 0).sum())
    assert ties > 50                             # exact quotients were among them


def test_row_renorm_int32_edges_and_shapes():
    p = np.full((2, 3, 256), 255, np.uint8)      # rs = 65280: any int32 acc fits
    acc = np.array([I32[0], I32[1], -1, 0, 1, -32640, 32640], np.int32)
    acc = np.broadcast_to(acc, (2, 3, 7)).copy()
    assert np.array_equal(T.row_renorm(acc, p), _ref(acc, p))
    # the attention's shape, threads splitting the rows (same integers)
    rng = np.random.default_rng(3)
    p = rng.integers(0, 256, (16, 128, 128)).astype(np.uint8)
    p[..., 0] |= 1
    acc = (rng.integers(-255, 256, (16, 128, 32)) *
           p.sum(axis=-1, dtype=np.int64)[..., None] // 255).astype(np.int32)
    y1 = T.row_renorm(acc, p, threads=1)
    assert np.array_equal(y1, _ref(acc, p))
    assert np.array_equal(T.row_renorm(acc, p, threads=2), y1)
    # other integer acc dtypes whose values fit
    assert np.array_equal(T.row_renorm(acc.astype(np.int64), p), y1)


def test_row_renorm_bad_input():
    p = np.ones((2, 4), np.uint8)
    acc = np.ones((2, 3), np.int32)
    with pytest.raises(TypeError, match="p must be a uint8"):
        T.row_renorm(acc, p.astype(np.int8))
    with pytest.raises(TypeError, match="acc"):
        T.row_renorm(acc.astype(np.float32), p)
    with pytest.raises(Exception, match="acc has values outside int32"):
        T.row_renorm(np.full((2, 3), 2 ** 31, np.int64), p)
    with pytest.raises(ValueError, match="same axes"):
        T.row_renorm(np.ones((3, 3), np.int32), p)
    with pytest.raises(ValueError, match="same axes"):
        T.row_renorm(np.ones((1, 2, 3), np.int32), p)
    with pytest.raises(ValueError, match="non-empty"):
        T.row_renorm(np.ones((2, 0), np.int32), p)
    z = p.copy()
    z[1] = 0
    with pytest.raises(ValueError, match="p: a row sums to 0"):
        T.row_renorm(acc, z)
    one = np.zeros((1, 4), np.uint8)
    one[0, 0] = 1                                # rs = 1: t = 256 acc + 0 (floor of + 1/2)
    assert T.row_renorm(np.array([[2 ** 23 - 1]], np.int32), one)[0, 0] == 2 ** 31 - 256
    with pytest.raises(OverflowError, match="leaves int32"):
        T.row_renorm(np.array([[2 ** 23]], np.int32), one)
    with pytest.raises(OverflowError, match="leaves int32"):
        T.row_renorm(np.array([[-2 ** 23 - 1]], np.int32), one)
    assert T.row_renorm(np.array([[-2 ** 23]], np.int32), one)[0, 0] == -2 ** 31


def test_row_renorm_simd_paths_agree(tmp_path):
    # QKERNELS_SIMD=scalar / avx2 force those loops (chosen once a process): the column counts
    # cover every tail of the 4 / 8-double loops, the row lengths every tail of the 32 / 64-byte
    # sums; the scalar path is also checked against the int64 formula
    import os
    script = f"""
import numpy as np, qkernels as qk, qkernels.transformer as T, sys
sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
sys.path.insert(0, {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))!r})  # _util
from test_row_renorm import _case
rng = np.random.default_rng(7)
outs = {{}}
for cols in (1, 2, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 32, 33):
    for n in (1, 31, 32, 33, 63, 64, 65, 128, 130):
        acc, p = _case(rng, 11, cols, n)
        outs[f"{{cols}}_{{n}}"] = T.row_renorm(acc, p)
        rs = p.sum(-1, dtype=np.int64)[:, None]
        outs[f"ref{{cols}}_{{n}}"] = (acc.astype(np.int64) * 512 + rs) // (2 * rs)
outs["isa"] = np.array(qk.show_config(mode="dicts")["simd"]["chosen"])
np.savez(sys.argv[1], **outs)
"""
    res = run_simd_paths(script, tmp_path)
    assert len(res["scalar"]) == 2 * 14 * 9 + 1          # and "isa"
    assert_simd_paths_equal(res)
    for k in res["scalar"]:
        if k.startswith("ref"):
            assert np.array_equal(res["scalar"][k[3:]], res["scalar"][k]), k
