"""The float32 parameter derivation of the I-BERT kernels equals I-BERT's own PyTorch code, and the
integer GELU equals I-BERT's IntGELU + QuantAct forward where that float code is exact.

The float expressions below are those of IntSoftmax / IntGELU / FixedPointMul in
transformers/models/ibert/quant_modules.py (kssteven418/I-BERT quant_modules.py), evaluated with
torch float32 tensors as there (`scalar / tensor` is reciprocal-then-multiply in PyTorch)."""
import decimal

import numpy as np
import pytest

import qkernels as qk

torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")

# I-BERT's own code is compared at every scale, also the coarse 8-bit ones where prepare_gelu
# warns (test_transformer_gufunc_refusals.py checks that warning).
pytestmark = [pytest.mark.torch,
              pytest.mark.filterwarnings("ignore:x_scale=.*too coarse for I-BERT:UserWarning")]


def _scales(rng, lo, hi, n):
    return (10.0 ** rng.uniform(lo, hi, n)).astype(np.float32)


def test_softmax_constants_equal_ibert_code(rng):
    s = _scales(rng, -4.4, 0.2, 20000)
    sf = torch.from_numpy(s)
    coef = [0.35815147, 0.96963238, 1.0]
    coef[1] /= coef[0]
    coef[2] /= coef[0]
    x0 = torch.floor(-0.6931 / sf).numpy()
    b = torch.floor(coef[1] / sf).numpy()
    c = torch.floor(coef[2] / sf ** 2).numpy()
    p = qk.prepare_softmax(s, method="ibert")
    assert np.array_equal(p.x0, x0.astype(np.int64))
    assert np.array_equal(p.b, b.astype(np.int64))
    assert np.array_equal(p.c, c.astype(np.int64))


def _batch_frexp(x):
    """I-BERT's batch_frexp (max_bit 31, ROUND_HALF_UP on the exact double)."""
    m, e = np.frexp(x)
    mi = np.array([int(decimal.Decimal(v * 2 ** 31).quantize(decimal.Decimal(1),
                                                           rounding=decimal.ROUND_HALF_UP))
                   for v in m.reshape(-1)]).reshape(m.shape)
    return mi, 31 - e


def _ibert_gelu_consts(sf):
    """IntGELU's b_int, c_int, the erf's scale (sigmoid_scaling_factor after the 2^14), the
    shift_int and the output scale, from torch float32 scales, as IntGELU.int_erf / forward."""
    k, const = 1.4142, 14
    coeff = [-0.2888, -1.769, 1.0]
    coeff[2] /= coeff[0]
    sp = sf / k
    b = torch.floor(coeff[1] / sp)
    c = torch.floor(coeff[2] / sp ** 2)
    sig = sp ** 2 * coeff[0] * 2 ** const
    return b, c, sig, torch.floor(1.0 / sig), sf * sig / 2


def test_gelu_constants_equal_ibert_code(rng):
    s = _scales(rng, -5.5, -0.5, 20000)
    b, c, sig, shift, out_sf = _ibert_gelu_consts(torch.from_numpy(s))
    p = qk.prepare_gelu(s, out_scale=0.05)
    assert np.array_equal(p.b, b.numpy().astype(np.int64))
    assert np.array_equal(p.c, c.numpy().astype(np.int64))
    assert np.array_equal(p.shift, shift.numpy().astype(np.int64))
    assert np.array_equal(p.raw_scale, -out_sf.numpy())
    # QuantAct: new_scale = pre_act_sf (double) / z_sf (float -> double)
    m, e = _batch_frexp(-out_sf.numpy().astype(np.float64) / np.float64(np.float32(0.05)))
    assert np.array_equal(p.multiplier, m) and np.array_equal(p.rshift, e)


def test_gelu_equals_ibert_forward_where_exact(rng):
    """IntGELU.forward then QuantAct(8)'s FixedPointMul, in float as I-BERT computes them. With
    x_scale in [1e-3, 1e-2] and |x_int| < 2^13 every float32 intermediate is an exact integer, and
    the double product z_int * m stays below 2^53: I-BERT's float code is then integer-exact."""
    total = 0
    for s in (1e-3, 2.7e-3, 6e-3, 1e-2):
        s32 = np.float32(s)
        x = rng.integers(-(1 << 13), 1 << 13, 50_000).astype(np.int32)
        sf = torch.tensor([s32])
        xi = torch.from_numpy(x.astype(np.float32))
        b_int, c_int, _, shift_int, g_sf = _ibert_gelu_consts(sf)
        sign = torch.sign(xi)
        abs_int = torch.min(torch.abs(xi), -b_int)
        y_int = sign * ((abs_int + b_int) ** 2 + c_int)
        y_int = torch.floor(y_int / 2 ** 14)
        g = xi * (y_int + shift_int)
        assert float(torch.abs(g).max()) < 2 ** 24
        out_s = np.float32(0.03)
        m, e = _batch_frexp(g_sf.numpy().astype(np.float64) / np.float64(out_s))
        ref = torch.round(g.double() * float(m[0]) / 2.0 ** float(e[0])).clamp(-128, 127)
        p = qk.prepare_gelu(float(s32), out_scale=float(out_s), out_dtype=np.int8)
        np.testing.assert_array_equal(qk.qgelu(x, p), ref.numpy().astype(np.int8))
        total += x.size
    assert total == 200_000
