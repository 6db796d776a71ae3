"""Power-of-two fake quantization for QAT: forward equal to the kernels' own rounding, TQT
straight-through gradients, learned scales that stay powers of two."""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")

import qkernels as qk  # noqa: E402
from qkernels.torch.qat.fake_quant import (ActQuantizer, WeightQuantizer,  # noqa: E402
                                           fake_quantize_pow2, pow2_ceil_scale)

pytestmark = pytest.mark.torch


def _inputs(rng, s):
    x = rng.standard_normal(20000).astype(np.float32) * 40 * s
    ties = (rng.integers(-300, 300, 4000) + 0.5).astype(np.float32) * s   # exact half steps
    return np.concatenate([x, ties, np.float32([0.0, -0.0, 1e-30, 1e6, -1e6])])


@pytest.mark.parametrize("e, zp, lo, hi", [(-5, 0, -128, 127), (-3, 7, 0, 255), (2, 3, 0, 15),
                                           (-9, 0, -8, 7)])
def test_forward_is_the_kernels_rounding(rng, e, zp, lo, hi):
    s = 2.0 ** e
    x = _inputs(rng, s)
    t = torch.from_numpy(x)
    # half_even: PyTorch's fake quantization, RNE(x/s) + zp
    ref = torch.fake_quantize_per_tensor_affine(t, s, zp, lo, hi).numpy()
    got = fake_quantize_pow2(t, torch.tensor(s), zp, lo, hi).numpy()
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(got, qk.fake_quantize(x, np.float32(s), zp, lo, hi))
    # half_even_zp: FBGEMM's quantize, RNE(x/s + zp)
    dt = np.uint8 if lo >= 0 else np.int8
    bits = None if hi - lo == 255 else int(math.log2(hi - lo + 1))
    q = qk.quantize(x, np.float32(s), zp, dtype=dt, bits=bits, flavor="torch")
    got = fake_quantize_pow2(t, torch.tensor(s), zp, lo, hi, "half_even_zp").numpy()
    np.testing.assert_array_equal(got, qk.dequantize(q, np.float32(s), zp))
    # half_up: the pow2 requantizing shift (acc + 2^(n-1)) >> n of an accumulator in 2^e2 units
    acc = np.clip(np.rint(x.astype(np.float64) / s * 8), -2 ** 30, 2 ** 30).astype(np.int32)  # scale s/8
    r = qk.requantize_shift(acc, 3, zp, dtype=dt, bits=bits)
    got = fake_quantize_pow2(torch.from_numpy(acc.astype(np.float32) * np.float32(s / 8)),
                             torch.tensor(s), zp, lo, hi, "half_up").numpy()
    np.testing.assert_array_equal(got, qk.dequantize(r, np.float32(s), zp))


def test_pow2_ceil_scale_is_choose_qparams(rng):
    amax = np.abs(rng.standard_normal(500)).astype(np.float32) * np.float32(2.0) ** rng.integers(
        -20, 10, 500).astype(np.float32)
    amax[:4] = [0.0, 2.0 ** -3 * 127, 1.0, 1e-12]
    for bits in (4, 8):
        qmax = (1 << (bits - 1)) - 1
        want = qk.choose_qparams(-amax, amax, dtype=np.int8, symmetric=True, bits=bits,
                                 power_of_two="ceil").scale
        np.testing.assert_array_equal(pow2_ceil_scale(torch.from_numpy(amax), qmax).numpy(), want)


def test_tqt_gradients():
    """d y / d u = s ln2 (round(x/s) - x/s) inside, s ln2 qmin / qmax outside (TQT eq. 8);
    d y / d x = 1 inside, 0 outside."""
    q = ActQuantizer(0.25, 0, -8, 7, learn=True)
    x = torch.tensor([0.3, -1.1, 0.62, 5.0, -3.0], requires_grad=True)
    y = q(x)
    y.backward(torch.ones_like(y))
    s, ln2 = 0.25, math.log(2)
    xs = x.detach().numpy() / s
    inside = (np.round(xs) >= -8) & (np.round(xs) <= 7)
    want_u = np.where(inside, np.round(xs) - xs, np.where(xs > 0, 7, -8)) * s * ln2
    np.testing.assert_allclose(q.log2_scale.grad.item(), want_u.sum(), rtol=1e-6)
    np.testing.assert_array_equal(x.grad.numpy(), inside.astype(np.float32))


@pytest.mark.parametrize("rounding", ["ceil", "round"])
def test_learned_scales_stay_powers_of_two(rng, rounding):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.from_numpy(rng.standard_normal((16, 32)).astype(np.float32)))
    wq = WeightQuantizer(4, True, 16, learn=True, init_scale=pow2_ceil_scale(
        w.detach().abs().amax(1), 7), rounding=rounding)
    aq = ActQuantizer(2.0 ** -4, 9, 0, 15, learn=True, rounding=rounding)
    start = wq.scale(w).detach().clone()
    np.testing.assert_array_equal(start.numpy(), pow2_ceil_scale(w.detach().abs().amax(1), 7).numpy())
    assert aq.qparams() == (2.0 ** -4, 9)
    opt = torch.optim.Adam([w, wq.log2_scale, aq.log2_scale], lr=0.2)
    x = torch.from_numpy(rng.standard_normal((64, 32)).astype(np.float32))
    moved = set()
    for _ in range(30):
        y = torch.nn.functional.linear(x, wq(w))
        loss = ((aq(torch.relu(y)) - torch.relu(y) * 0.5) ** 2).mean() + (y ** 2).mean() * 0.01
        opt.zero_grad()
        loss.backward()
        opt.step()
        for s in list(wq.scale(w).detach().numpy()) + [aq.qparams()[0]]:
            m, _ = math.frexp(float(s))
            assert m == 0.5, s          # exactly a power of two, always
        moved |= set((wq.scale(w) != start).nonzero().flatten().tolist())
        s, z = aq.qparams()
        assert 0 <= z <= 15 and float(z) == math.floor(z)
    assert moved, "the learned scales never moved"


def test_quantizer_bad_input():
    with pytest.raises(ValueError, match="power of two"):
        ActQuantizer(0.3, 0, -128, 127)
    with pytest.raises(ValueError, match="init_scale"):
        WeightQuantizer(8, True, 4, learn=True)
    with pytest.raises(ValueError, match="rounding must be one of"):
        fake_quantize_pow2(torch.ones(2), torch.tensor(1.0), 0, -8, 7, "half_down")


def _brute_mse_scale(x, qmin, qmax, smax, zp=lambda s: 0):
    """Independent reference: the candidate 2**-j * smax (j < 4) with the least float64 squared
    error of clamp(RNE(x / s) + zp, qmin, qmax), the coarsest of equal errors."""
    best = None
    for j in range(4):
        s = smax * 2.0 ** -j
        z = zp(s)
        q = np.clip(np.round(x.astype(np.float64) / s) + z, qmin, qmax)
        err = float(np.sum(((q - z) * s - x) ** 2))
        if best is None or err < best[1]:
            best = (s, err)
    return best[0]


@pytest.mark.parametrize("rounding", ["ceil", "round"])
def test_mse_init_picks_the_least_error_power_of_two(rng, rounding):
    """Weights per channel: outliers make the min-max power of two too coarse, and the MSE
    initialization picks a finer one exactly where the brute-force reference does."""
    w = rng.standard_normal((6, 3, 3, 3)).astype(np.float32) * 0.1
    w[1, 0, 0, 0] = 0.5          # one outlier: clipping it costs less than a 2x coarser step
    w[4] *= 0.01
    wq = WeightQuantizer(4, True, 6, learn=True, init_scale=torch.ones(6), rounding=rounding)
    wq.init_mse(torch.from_numpy(w))
    got = wq.scale(torch.from_numpy(w)).detach().numpy()
    want = [_brute_mse_scale(w[c], -8, 7, float(pow2_ceil_scale(torch.tensor(np.abs(w[c]).max()),
                                                                 7))) for c in range(6)]
    np.testing.assert_array_equal(got, np.float32(want))
    assert got[1] < float(pow2_ceil_scale(torch.tensor(0.5), 7))     # the outlier is clipped
    # per tensor
    wt = WeightQuantizer(4, False, 6, learn=True, init_scale=torch.ones(1), rounding=rounding)
    wt.init_mse(torch.from_numpy(w))
    smax = float(pow2_ceil_scale(torch.tensor(np.abs(w).max()), 7))
    assert float(wt.scale(torch.from_numpy(w)).detach()) == _brute_mse_scale(w, -8, 7, smax)
    with pytest.raises(ValueError, match="learned scale"):
        WeightQuantizer(4, True, 6).init_mse(torch.from_numpy(w))


@pytest.mark.parametrize("zp, lo, hi", [(0, -8, 7), (3, 0, 15), (0, -128, 127)])
def test_activation_mse_init(rng, zp, lo, hi):
    """Activations: the error summed over batches at each candidate, the least one chosen; an
    affine quantizer keeps its lowest value (zero point re-derived per candidate)."""
    x = np.abs(rng.laplace(size=(4, 3000))).astype(np.float32) - (0.3 if zp else 1.0)
    s0 = float(pow2_ceil_scale(torch.tensor(np.abs(x).max() if not zp else
                                            (x.max() - x.min())), (hi - lo) // 2 if not zp
                                 else hi - lo))
    q = ActQuantizer(s0, zp, lo, hi, learn=True)
    errs = sum(q.squared_errors(torch.from_numpy(b)) for b in x)
    q.init_mse(errs)
    lowest = (lo - zp) * s0
    want = _brute_mse_scale(x.ravel(), lo, hi, s0, (lambda s: int(np.clip(
        lo - np.round(lowest / s), lo, hi))) if zp else (lambda s: 0))
    assert q.qparams()[0] == want
    if hi - lo == 15:
        assert want < s0             # a heavy-tailed 4-bit tensor: finer than min-max
    with pytest.raises(ValueError, match="learned scale"):
        ActQuantizer(s0, zp, lo, hi).init_mse(errs)
