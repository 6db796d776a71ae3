"""qkernels.transformer.prepare_linear_rows (C qk_linear_rows): a token-rows Linear with the row
rescale fused into the GEMM's output stage, against the unfused pair it replaces
(``linear_int32`` then ``prepare_row_rescale``), compared with ``==``: every shape class of the
GEMM (rows around the 6-row tiles and 48-row chunks, columns around the 16-column panels and the
8-panel groups), with and without wsum / bias / the 8-bit output stage, threads 1, 2 and 3, every
SIMD path."""
import os

import numpy as np
import pytest

import qkernels as qk
import qkernels.transformer as T
from _util import assert_simd_paths_equal, run_simd_paths
from test_token_rows import _rows


def _case(rng, m, k, n, wide=False):
    d = _rows(rng, m, k, np.int32 if wide else np.int16)
    x, z, j, e = T.row_quantize(d)
    w = rng.integers(-127, 128, (n, k)).astype(np.int8)
    return x, z, j, e, w


def _pair(w, x, j, e, z, tab, **kw):
    """The unfused pair: the uint8 rows' int32 sums, then the row rescale (and output stage)."""
    acc = qk.prepare_linear_int32(qk.pack_linear(w), None, x_dtype=np.uint8)(x)
    return T.prepare_row_rescale(tab, w.shape[0], **kw)(acc, j, e, z)


@pytest.mark.parametrize("stage", [None, np.int8, np.uint8])
def test_linear_rows_equals_the_pair(stage):
    rng = np.random.default_rng(31)
    shapes = [(1, 1, 1), (5, 3, 15), (6, 16, 16), (7, 17, 17), (47, 33, 127), (48, 64, 128),
              (49, 384, 129), (100, 9, 300), (128, 384, 384), (97, 1536, 40)]
    for m, k, n in shapes:
        x, z, j, e, w = _case(rng, m, k, n, wide=m % 2 == 1)
        wsum = w.astype(np.int64).sum(axis=1).astype(np.int32)
        tab = T.row_rescale_params(int(rng.integers(0, 8)))
        bias = rng.integers(-2 ** 31, 2 ** 31, n, dtype=np.int64).astype(np.int32)
        bias[: n // 2] = rng.integers(-1000, 1000, n // 2)
        out = {}
        if stage is not None:
            out = dict(out_multiplier=rng.integers(2 ** 30, 2 ** 31, n).astype(np.int32),
                       out_shift=rng.integers(-20, 3, n).astype(np.int32),
                       out_zero_point=-5 if stage == np.int8 else 131, out_dtype=stage)
        for kw in (dict(wsum=wsum, bias=bias), dict(wsum=wsum), dict(bias=bias), {}):
            zz = z if "wsum" in kw else None
            ref = _pair(w, x, j, e, zz, tab, **kw, **out)
            lr = T.prepare_linear_rows(qk.pack_linear(w), tab, **kw, **out)
            for t in (1, 2, 3):
                got = lr(x, j, e, zz, threads=t)
                assert got.dtype == ref.dtype and got.shape == (m, n), (m, k, n, kw.keys())
                assert np.array_equal(got, ref), (m, k, n, t, kw.keys())


def test_linear_rows_leading_axes_and_the_blocks_shapes():
    """(batch, seq, k) inputs, MiniLM's shapes (384 -> 384, 384 -> 1536, 1536 -> 384)."""
    rng = np.random.default_rng(32)
    for k, n in ((384, 384), (384, 1536), (1536, 384)):
        d = _rows(rng, 2 * 128, k, np.int32).reshape(2, 128, k)
        x, z, j, e = T.row_quantize(d)
        w = rng.integers(-127, 128, (n, k)).astype(np.int8)
        wsum = w.astype(np.int64).sum(axis=1).astype(np.int32)
        tab = T.row_rescale_params(9)
        bias = rng.integers(-2 ** 20, 2 ** 20, n).astype(np.int32)
        got = T.prepare_linear_rows(qk.pack_linear(w), tab, wsum=wsum, bias=bias)(x, j, e, z)
        ref = _pair(w, x.reshape(-1, k), j, e, z, tab, wsum=wsum, bias=bias)
        assert got.shape == (2, 128, n) and np.array_equal(got.reshape(-1, n), ref)


def test_linear_rows_simd_paths_agree(tmp_path):
    # the GEMM tiles and the rescale loops under QKERNELS_SIMD=scalar / avx2 (one level a
    # process): each path in a subprocess; every tail of the 4 / 8-lane rescale loops and of the
    # 16-column panels and 8-panel groups
    script = f"""
import numpy as np, qkernels as qk, qkernels.transformer as T
import sys
sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
sys.path.insert(0, {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))!r})  # _util
from test_token_rows import _rows
rng = np.random.default_rng(33)
outs = {{}}
for n in (1, 3, 4, 5, 9, 16, 17, 33, 127, 128, 129, 300):
    d = _rows(rng, 53, 37, np.int32)
    x, z, j, e = T.row_quantize(d)
    w = rng.integers(-127, 128, (n, 37)).astype(np.int8)
    wsum = w.astype(np.int64).sum(axis=1).astype(np.int32)
    bias = rng.integers(-2 ** 31, 2 ** 31, n, dtype=np.int64).astype(np.int32)
    p = qk.pack_linear(w)
    tab = T.row_rescale_params(3)
    outs[f"{{n}}r"] = T.prepare_linear_rows(p, tab, wsum=wsum, bias=bias)(x, j, e, z, threads=2)
    outs[f"{{n}}o"] = T.prepare_linear_rows(
        p, tab, wsum=wsum, bias=bias, out_multiplier=rng.integers(2 ** 30, 2 ** 31, n),
        out_shift=rng.integers(-12, 3, n), out_zero_point=-3)(x, j, e, z)
outs["isa"] = np.array(qk.show_config(mode="dicts")["simd"]["chosen"])
np.savez(sys.argv[1], **outs)
"""
    res = run_simd_paths(script, tmp_path)
    assert len(res["scalar"]) == 12 * 2 + 1
    assert_simd_paths_equal(res)


def test_linear_rows_bad_input():
    rng = np.random.default_rng(34)
    x, z, j, e, w = _case(rng, 4, 8, 5)
    p = qk.pack_linear(w)
    tab = T.row_rescale_params(0)
    wsum = w.astype(np.int64).sum(axis=1).astype(np.int32)
    with pytest.raises(TypeError, match="packed must be a PackedLinear"):
        T.prepare_linear_rows(w, tab)
    with pytest.raises(ValueError, match="go together"):
        T.prepare_linear_rows(p, tab, out_multiplier=1)
    with pytest.raises(ValueError, match="wsum must have one value per column"):
        T.prepare_linear_rows(p, tab, wsum=wsum[:3])
    with pytest.raises(ValueError, match="32 entries"):
        T.prepare_linear_rows(p, (tab[0][:5], tab[1][:5]))
    with pytest.raises(qk.AccumulatorOverflowError):   # k 255 127 past int32
        T.prepare_linear_rows(qk.pack_linear(np.full((1, 70000), 127, np.int8)), tab)
    lr = T.prepare_linear_rows(p, tab, wsum=wsum)
    with pytest.raises(TypeError, match="x must be a uint8"):
        lr(x.astype(np.int8), j, e, z)
    with pytest.raises(ValueError, match="8 columns"):
        lr(x[:, :7].copy(), j, e, z)
    with pytest.raises(ValueError, match="z and wsum go together"):
        lr(x, j, e)
    with pytest.raises(ValueError, match="j must have one value per row"):
        lr(x, j[:2], e, z)
    with pytest.raises(ValueError, match="linear_rows"):   # j outside 1..31: the kernel refuses
        lr(x, np.zeros_like(j), e, z)
    with pytest.raises(ValueError, match="linear_rows"):   # a zero point outside 0..255
        lr(x, j, e, np.full_like(z, 300))
    # acc - z wsum outside int32 (a wsum unlike the weights'): refused, never wrapped
    big = T.prepare_linear_rows(p, tab, wsum=np.full(5, -2 ** 25, np.int32))
    with pytest.raises(qk.AccumulatorOverflowError):
        big(x, j, e, np.full_like(z, 255))
    # nothing read or written for zero rows
    assert lr(np.zeros((0, 8), np.uint8), np.zeros(0, np.int32), np.zeros(0, np.int32),
              np.zeros(0, np.int32)).shape == (0, 5)
