"""The raw transformer gufuncs (matmul_int32, softmax_*, gelu_ibert) never leave stale or
uninitialised numbers: an item whose parameters are refused gets zeros and numpy's 'invalid'
flag, the items beside it are computed as usual (the convention of the elementwise ufuncs and
of linear_int32)."""
import numpy as np
import pytest

from qkernels import _core
import qkernels as qk


def test_matmul_int32_refused_item_is_zeros_others_exact():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 4, 5), dtype=np.uint8)
    b = rng.integers(-128, 128, (3, 5, 6), dtype=np.int8)
    za = np.array([3, 300, 7], np.int32)  # item 1: zero point outside uint8
    out = np.full((3, 4, 6), 123456789, np.int32)
    with pytest.warns(RuntimeWarning, match="invalid"):
        _core.matmul_int32(a, b, za, np.int32(0), out=out)
    assert (out[1] == 0).all()
    for i in (0, 2):
        want = (a[i].astype(np.int64) - za[i]) @ b[i].astype(np.int64)
        assert (out[i] == want).all()
    with np.errstate(invalid="raise"), pytest.raises(FloatingPointError):
        _core.matmul_int32(a, b, za, np.int32(0))


@pytest.mark.parametrize("strided", [False, True])
def test_softmax_ibert_refused_row_is_zeros_others_computed(strided):
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, (4, 16), dtype=np.int8)
    p = qk.transformer.prepare_softmax(0.05, method="ibert")
    args = [p.x0, p.b, p.c, p.m16, p.e16]
    good = np.empty((4, 16), np.uint8)
    _core.softmax_ibert(x, *[np.asarray(v).reshape(-1)[0] for v in args], out=good)
    c = np.full(4, np.asarray(args[2]).reshape(-1)[0], np.int64)
    c[2] = -1  # row 2: a refused constant
    out = np.full((4, 32), 77, np.uint8)
    o = out[:, ::2] if strided else out[:, :16]
    with pytest.warns(RuntimeWarning, match="invalid"):
        _core.softmax_ibert(x, *[np.asarray(v).reshape(-1)[0] for v in args[:2]], c,
                            *[np.asarray(v).reshape(-1)[0] for v in args[3:]], out=o)
    assert (o[2] == 0).all()
    assert (o[[0, 1, 3]] == good[[0, 1, 3]]).all()


def test_softmax_sole_refused_params_give_zeros():
    out = np.full((3, 8), 77, np.uint8)
    with pytest.warns(RuntimeWarning, match="invalid"):
        _core.softmax_sole(np.zeros((3, 8), np.int8), -1, 0, 0, out=out)
    assert (out == 0).all()


def test_gelu_ibert_refused_channel_is_zero_others_computed():
    x = np.arange(-400, 400, 100, dtype=np.int32)
    p = qk.transformer.prepare_gelu(2e-3, method="ibert", out_scale=0.05)
    fields = [np.full(8, np.asarray(getattr(p, f)).reshape(-1)[0], dt)
              for f, dt in (("b", np.int64), ("c", np.int64), ("shift", np.int64),
                            ("multiplier", np.int32), ("rshift", np.int32))]
    good = np.empty(8, np.int8)
    tail = (p.out_zero_point, -128, 127)
    _core.gelu_ibert(x, p.x_zero_point, *fields, *tail, out=good)
    fields[3][5] = -1  # element 5: a negative multiplier is refused
    out = np.full(8, 77, np.int8)
    with pytest.warns(RuntimeWarning, match="invalid"):
        _core.gelu_ibert(x, p.x_zero_point, *fields, *tail, out=out)
    assert out[5] == 0
    assert (np.delete(out, 5) == np.delete(good, 5)).all()


def test_prepare_gelu_warns_when_ibert_loses_its_resolution():
    """x_scale 0.05 (8-bit input) leaves i-GELU's shift at -1: the result is far from GELU
    (SQNR below 0 dB), so prepare_gelu says so; at 1e-3 (int32 sums) it does not."""
    with pytest.warns(UserWarning, match="x_scale=0.05 is too coarse.*method='lut'"):
        qk.prepare_gelu(0.05, out_scale=0.05)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        qk.prepare_gelu(1e-3, out_scale=0.05)
        qk.prepare_gelu(0.05, method="lut", out_scale=0.05)
