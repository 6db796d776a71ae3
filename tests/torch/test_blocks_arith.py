"""The integer blocks' int32 helpers (qkernels/torch/blocks.py) against their int64 forms, on
random values, the int32 edges and exact quotients: add_sat32 (the residual sum) and
renorm_floor (P V over the probabilities' row sums)."""
import numpy as np
import pytest

pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")
from qkernels.torch import blocks as B  # noqa: E402

I32 = (-2 ** 31, 2 ** 31 - 1)


def test_add_sat32_equals_int64_clamp():
    rng = np.random.default_rng(0)
    for hi in (2 ** 10, 2 ** 30, 2 ** 31 - 1):
        a = rng.integers(-hi - 1, hi, (7, 33), dtype=np.int64).astype(np.int32)
        b = rng.integers(-hi - 1, hi, (7, 33), dtype=np.int64).astype(np.int32)
        a[0, :4] = b[0, :4] = [I32[0], I32[1], I32[1], I32[0]]
        ref = np.clip(a.astype(np.int64) + b, *I32).astype(np.int32)
        got = B.add_sat32(a, b)
        assert got.dtype == np.int32 and np.array_equal(got, ref)


def test_renorm_floor_equals_int64_floor_division():
    rng = np.random.default_rng(1)
    for s in (2, 7, 128, 197):
        p = rng.integers(0, 256, (3, 4, s, s)).astype(np.uint8)
        p[0, 0, 0] = 0
        p[0, 0, 0, 0] = 1           # a row summing to 1
        p[0, 0, 1] = 255            # the largest sum
        rs = p.sum(axis=-1, dtype=np.int64)[..., None]
        acc = rng.integers(-255, 256, (3, 4, s, 32)) * rs // 255
        # exact quotients and their neighbours: 2^9 acc + rs = k (2 rs) + {-1, 0, 1}
        k = rng.integers(-255 * 256, 255 * 256, (3, 4, s, 32))
        acc[..., :3] = np.clip((k[..., :3] * 2 * rs - rs + np.array([-1, 0, 1])) // 512,
                               -255 * rs, 255 * rs)
        acc = acc.astype(np.int32)
        ref = ((acc.astype(np.int64) * 512 + rs) // (2 * rs)).astype(np.int32)
        assert np.array_equal(B.renorm_floor(acc, p), ref)


def test_renorm_floor_zero_row_refused():
    # a row of p summing to 0 has no quotient: ValueError naming p (was int64's x // 0 == 0
    # with NumPy's warning); the softmax never gives one (a row's max maps to >= 1)
    p = np.zeros((1, 2, 3), np.uint8)
    p[0, 1] = 3
    acc = np.array([[[5], [7]]], np.int32)
    with pytest.raises(ValueError, match="p: a row sums to 0"):
        B.renorm_floor(acc, p)
    p[0, 0, 2] = 1
    assert B.renorm_floor(acc, p)[0, 1, 0] == (7 * 512 + 9) // 18
