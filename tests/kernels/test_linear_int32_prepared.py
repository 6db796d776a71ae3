"""prepare_linear_int32: the prepared form of linear_int32 (constants checked once) gives the
same accumulators as the keyword call, on every path (8-bit tiles, K not a multiple of 4,
per-channel weight zero points, threads 1 and 2), and refuses what linear_int32 refuses."""
import numpy as np
import pytest

import qkernels as qk


@pytest.mark.parametrize("xdt", [np.int8, np.uint8])
def test_prepared_equals_keyword_call(xdt):
    rng = np.random.default_rng(3)
    info = np.iinfo(xdt)
    for m, n, k in [(1, 1, 1), (7, 33, 12), (128, 384, 384), (5, 70, 13), (129, 65, 96)]:
        x = rng.integers(info.min, info.max, (2, m, k), endpoint=True).astype(xdt)
        w = rng.integers(-128, 127, (n, k), endpoint=True).astype(np.int8)
        wz = rng.integers(-5, 5, n).astype(np.int32) if n % 2 else 0
        bias = rng.integers(-10 ** 5, 10 ** 5, n).astype(np.int32)
        xz = int(rng.integers(info.min, info.max))
        pk = qk.pack_linear(w, w_zero_point=wz)
        prep = qk.prepare_linear_int32(pk, bias, x_dtype=xdt, x_zero_point=xz)
        for t in (1, 2):
            ref = qk.linear_int32(x, pk, bias, x_zero_point=xz, threads=t)
            got = prep(x, threads=t)
            assert got.dtype == np.int32 and got.shape == (2, m, n)
            assert np.array_equal(got, ref)


def test_prepared_refuses_what_the_keyword_call_refuses():
    w = np.ones((4, 8), np.int8)
    prep = qk.prepare_linear_int32(w, x_dtype=np.int8)
    with pytest.raises(TypeError, match="prepared for int8"):
        prep(np.zeros((2, 8), np.uint8))
    with pytest.raises(ValueError, match="K"):
        prep(np.zeros((2, 5), np.int8))
    with pytest.raises(ValueError, match="x_zero_point"):
        qk.prepare_linear_int32(w, x_dtype=np.int8, x_zero_point=300)
    with pytest.raises(TypeError):
        qk.prepare_linear_int32(w, x_dtype=np.float32)
    big = np.full((2, 70000), 127, np.int8)
    with pytest.raises(qk.AccumulatorOverflowError):
        qk.prepare_linear_int32(big, x_dtype=np.int8, x_zero_point=-128)
