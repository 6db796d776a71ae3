"""Integer LayerNorm on PTF input (SPEC section 7): the C kernels against the plain Python
reference bit for bit (random and real DeiT data), edge cases and bad input. The error figures
against torch.nn.functional.layer_norm are in test_layernorm_torch.py."""
import numpy as np
import pytest

import qkernels as qk
from _util import assert_simd_paths_equal, run_simd_paths
from ptf_data import load_deit
from ptf_reference import layernorm_ref, prepare_ref

VARIANTS = [("exact", "round"), ("sole", "round"), ("sole", "truncate")]


def _ref(p, gamma, beta, method, rounding, out_scale, out_zp, eps, q):
    r = prepare_ref(method, rounding, p.scale, p.alpha, p.zero_point, gamma, beta, eps,
                    out_scale, out_zp)
    return layernorm_ref(r, q)


@pytest.mark.parametrize("method,rounding", VARIANTS)
def test_random_bit_exact(method, rounding):
    rng = np.random.default_rng(7)
    for trial in range(6):
        C = int(rng.choice([1, 2, 7, 64, 384]))
        x = (rng.standard_normal((9, C)) * rng.uniform(0.05, 8, C)
             + rng.uniform(-1, 1, C)).astype(np.float32)
        p = qk.ptf_calibrate(x, method="fqvit" if trial % 2 else "seed", K=int(rng.integers(0, 8)))
        gamma = rng.uniform(-2, 2, C).astype(np.float32)
        beta = rng.uniform(-1, 1, C).astype(np.float32)
        out_scale, out_zp = float(rng.uniform(0.01, 0.2)), int(rng.integers(-20, 20))
        eps = float(rng.choice([0.0, 1e-12, 1e-5, 1e-2]))
        q = p.quantize(x)
        q[0] = rng.integers(0, 256, C)  # also rows the calibration never saw
        ln = qk.prepare_layernorm(p, gamma, beta, method=method, rounding=rounding,
                                  out_scale=out_scale, out_zero_point=out_zp, eps=eps)
        y = qk.ptf_layernorm(q, ln)
        want = _ref(p, gamma, beta, method, rounding, out_scale, out_zp, eps, q)
        np.testing.assert_array_equal(y, want, err_msg=f"trial {trial}, C={C}")


@pytest.mark.parametrize("method,rounding", VARIANTS)
def test_token_and_channel_blocks_bit_exact(method, rounding):
    # the kernel works in blocks of 32 tokens and 512 channels: 70 tokens x 1100 channels cross
    # both kinds of boundary, with a last partial block of each
    rng = np.random.default_rng(11)
    C = 1100
    x = (rng.standard_normal((70, C)) * rng.uniform(0.05, 8, C)).astype(np.float32)
    p = qk.ptf_calibrate(x, method="seed")
    gamma = rng.uniform(-2, 2, C).astype(np.float32)
    beta = rng.uniform(-1, 1, C).astype(np.float32)
    q = p.quantize(x)
    ln = qk.prepare_layernorm(p, gamma, beta, method=method, rounding=rounding, out_scale=0.05,
                              out_zero_point=5)
    np.testing.assert_array_equal(qk.ptf_layernorm(q, ln),
                                  _ref(p, gamma, beta, method, rounding, 0.05, 5, 1e-12, q))


@pytest.mark.parametrize("method,rounding", VARIANTS)
def test_deit_bit_exact(method, rounding):
    x, gamma, beta = load_deit()
    p = qk.ptf_calibrate(x, method="seed")
    q = p.quantize(x)[::4]  # every 4th token keeps the pure-Python reference quick
    out_scale = 6.06 / 127
    ln = qk.prepare_layernorm(p, gamma, beta, method=method, rounding=rounding,
                              out_scale=out_scale, eps=1e-12)
    np.testing.assert_array_equal(qk.ptf_layernorm(q, ln),
                                  _ref(p, gamma, beta, method, rounding, out_scale, 0, 1e-12, q))


def test_extreme_rows_bit_exact():
    # all-zp rows (D = 0), full-scale alternating rows, largest alpha
    C = 16
    alpha = np.full(C, 7, np.int32)
    alpha[::3] = 0
    p = qk.PTFParams(0.01, alpha, 3, K=7)
    rows = np.array([np.full(C, 3), np.tile([0, 255], C // 2), np.full(C, 255),
                     np.arange(C) * 17 % 256], np.uint8)
    gamma = np.linspace(-3, 3, C).astype(np.float32)
    beta = np.linspace(1, -1, C).astype(np.float32)
    for method, rounding in VARIANTS:
        for eps in (0.0, 1e-5):
            ln = qk.prepare_layernorm(p, gamma, beta, method=method, rounding=rounding,
                                      out_scale=0.05, out_zero_point=5, eps=eps)
            want = _ref(p, gamma, beta, method, rounding, 0.05, 5, eps, rows)
            np.testing.assert_array_equal(qk.ptf_layernorm(rows, ln), want)
    # a constant row gives beta alone (quantized) whatever gamma is
    ln = qk.prepare_layernorm(p, gamma, beta, out_scale=0.05, eps=0.0)
    y = qk.ptf_layernorm(rows[:1], ln)
    np.testing.assert_array_equal(y[0], np.clip(np.floor(beta / 0.05 + 0.5), -128, 127))


@pytest.mark.parametrize("method,rounding", VARIANTS)
def test_output_stage_variants_bit_exact(method, rounding):
    # the AVX-512 output stage has a fast form for F = shift in [32, 52] (one or two products a
    # row, the v = C x - S1 form for exact rows, a z clamp only where z can reach +-2^24) and
    # the general loop outside it: out_scales that put F below, inside and above that range,
    # rows of every spread (near-constant rows with large alpha drive the sole z to its clamp)
    rng = np.random.default_rng(19)
    shifts = set()
    for C in (37, 64, 384):
        alpha = rng.integers(0, 8, C).astype(np.int32)
        alpha[:3] = 7
        p = qk.PTFParams(0.02, alpha, 128, K=7)
        q = rng.integers(0, 256, (48, C)).astype(np.uint8)
        for t in range(0, 48, 3):  # rows of |q - zp| <= 1, 2, 4, 8 ...
            w = 1 << (t // 3 % 8)
            q[t] = rng.integers(128 - w // 2, 128 + (w + 1) // 2 + 1, C)
        q[1] = 128
        q[2] = 0
        q[4] = np.tile([0, 255], C)[:C]
        tiny = 50 * 0.02 ** 2 / C ** 2  # eps of 50 integer units: D = E alone on flat rows
        for gain, out_scale, eps in ((2.0, 1e-4, tiny), (1.0, 0.05, 0.0), (1.0, 0.05, tiny),
                                     (0.01, 5.0, 1e-5)):
            gamma = (rng.uniform(-1, 1, C) * gain).astype(np.float32)
            beta = rng.uniform(-1, 1, C).astype(np.float32)
            ln = qk.prepare_layernorm(p, gamma, beta, method=method, rounding=rounding,
                                      out_scale=out_scale, out_zero_point=-7, eps=eps)
            shifts.add(ln.shift)
            np.testing.assert_array_equal(
                qk.ptf_layernorm(q, ln),
                _ref(p, gamma, beta, method, rounding, out_scale, -7, eps, q),
                err_msg=f"C={C} out_scale={out_scale} eps={eps} F={ln.shift}")
    assert min(shifts) < 32 and max(shifts) > 52 and any(32 <= f <= 52 for f in shifts), shifts


def test_shapes_out_and_prepare_equivalence():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 32)).astype(np.float32)
    p = qk.ptf_calibrate(x)
    g, b = np.ones(32, np.float32), np.zeros(32, np.float32)
    q = p.quantize(x)
    ln = qk.prepare_layernorm(p, g, b, out_scale=0.04)
    y = qk.ptf_layernorm(q, ln)
    assert y.shape == (2, 5, 32) and y.dtype == np.int8
    np.testing.assert_array_equal(y, qk.ptf_layernorm(q, p, g, b, out_scale=0.04))
    np.testing.assert_array_equal(y.reshape(10, 32), qk.ptf_layernorm(q.reshape(10, 32), ln))
    # a non-contiguous input and a non-contiguous out=
    big = np.zeros((2, 5, 64), np.uint8)
    big[..., ::2] = q
    out = np.zeros((2, 5, 64), np.int8)
    assert qk.ptf_layernorm(big[..., ::2], ln, out=out[..., ::2]) is not None
    np.testing.assert_array_equal(out[..., ::2], y)
    assert qk.ptf_layernorm(np.zeros((0, 32), np.uint8), ln).shape == (0, 32)
    mean, var = qk.ptf_layernorm_stats(q, ln)
    assert mean.shape == (2, 5)
    xh = (q.astype(np.float64) - p.zero_point) * p.scale * 2.0 ** p.alpha  # exact in float64
    np.testing.assert_allclose(mean, xh.mean(-1), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(var, xh.var(-1), rtol=1e-9)


def test_prepared_params_hold_integers():
    p = qk.PTFParams(0.02, np.array([0, 1, 2, 3], np.int32), 128)
    ln = qk.prepare_layernorm(p, [1.0, -0.5, 2.0, 0.25], [0.1, 0.0, -0.2, 0.3], method="sole",
                              out_scale=0.03)
    assert ln.gamma_int.dtype == np.int32 and ln.beta_int.dtype == np.int64
    assert ln.gamma_int.tolist() == [64, -32, 127, 16]       # int8 gamma, scale max|gamma|/127
    assert np.abs(ln.beta_int).max() == 127
    assert ln.lut[64] == 8192 and ln.lut[0] == 0 and len(ln.lut) == 256
    assert 16 <= ln.shift <= 56
    with pytest.raises(ValueError):
        ln.gamma_int[0] = 1  # read-only


def test_bad_input():
    p = qk.PTFParams(0.02, np.zeros(4, np.int32), 128)
    g = np.ones(4, np.float32)
    z = np.zeros(4, np.float32)
    q = np.full((2, 4), 128, np.uint8)
    with pytest.raises(ValueError, match=r"gamma has shape \(3,\).*\(4,\)"):
        qk.prepare_layernorm(p, g[:3], z, out_scale=0.1)
    with pytest.raises(ValueError, match="beta is not finite at index 2"):
        qk.prepare_layernorm(p, g, np.array([0, 0, np.nan, 0]), out_scale=0.1)
    with pytest.raises(ValueError, match="out_zero_point=128"):
        qk.prepare_layernorm(p, g, z, out_scale=0.1, out_zero_point=128)
    with pytest.raises(ValueError, match="out_scale must be finite"):
        qk.prepare_layernorm(p, g, z, out_scale=-1.0)
    with pytest.raises(ValueError, match="too small for gamma/beta"):
        qk.prepare_layernorm(p, g * 1e5, z, out_scale=1e-6)
    with pytest.raises(ValueError, match="method must be one of"):
        qk.prepare_layernorm(p, g, z, method="fast", out_scale=0.1)
    with pytest.raises(ValueError, match="rounding must be one of"):
        qk.prepare_layernorm(p, g, z, method="sole", rounding="floor", out_scale=0.1)
    with pytest.raises(ValueError, match="eps=1e.30 is too large"):
        qk.prepare_layernorm(p, g, z, out_scale=0.1, eps=1e30)
    with pytest.raises(ValueError, match="eps must be finite"):
        qk.prepare_layernorm(p, g, z, out_scale=0.1, eps=-1.0)
    ln = qk.prepare_layernorm(p, g, z, out_scale=0.1)
    with pytest.raises(TypeError, match="q must be a uint8"):
        qk.ptf_layernorm(q.astype(np.int8), ln)
    with pytest.raises(ValueError, match="last axis must have 4 channels"):
        qk.ptf_layernorm(np.zeros((2, 5), np.uint8), ln)
    with pytest.raises(ValueError, match="must not be given"):
        qk.ptf_layernorm(q, ln, g, z)
    with pytest.raises(ValueError, match="out_scale is required"):
        qk.ptf_layernorm(q, p, g, z)
    with pytest.raises(TypeError, match="out has dtype"):
        qk.ptf_layernorm(q, ln, out=np.zeros((2, 4), np.uint8))


# ---- property test: any shape, parameters and data give the reference's bits ------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(C=st.integers(1, 48), T=st.integers(1, 4), K=st.integers(0, 7), zp=st.integers(0, 255),
       out_zp=st.integers(-128, 127), seed=st.integers(0, 2 ** 32 - 1),
       variant=st.sampled_from(VARIANTS), scale=st.floats(1e-4, 10.0),
       out_scale=st.floats(1e-3, 10.0), eps=st.sampled_from([0.0, 1e-12, 1e-5, 0.5]))
def test_property_bit_exact(C, T, K, zp, out_zp, seed, variant, scale, out_scale, eps):
    rng = np.random.default_rng(seed)
    alpha = rng.integers(0, K + 1, C).astype(np.int32)
    p = qk.PTFParams(scale, alpha, zp, K=7)
    q = rng.integers(0, 256, (T, C)).astype(np.uint8)
    if rng.random() < 0.3:
        q[:, :] = rng.integers(max(zp - 3, 0), min(zp + 3, 255) + 1, (T, C))  # tiny variance
    gamma = rng.uniform(-3, 3, C).astype(np.float32)
    beta = rng.uniform(-2, 2, C).astype(np.float32)
    method, rounding = variant
    ln = qk.prepare_layernorm(p, gamma, beta, method=method, rounding=rounding,
                              out_scale=out_scale, out_zero_point=out_zp, eps=eps)
    np.testing.assert_array_equal(
        qk.ptf_layernorm(q, ln),
        _ref(p, gamma, beta, method, rounding, out_scale, out_zp, eps, q))


@pytest.mark.parametrize("method,rounding", VARIANTS)
def test_threads_1_and_2_give_the_same_bits(method, rounding):
    # the C kernel splits the tokens over threads from 24576 tokens x channels on (jobs of 16
    # tokens): both sides of that threshold, a last job shorter than 16 tokens, channel counts
    # of one and of several 512-channel blocks, and F inside and outside the AVX-512 fast output
    # stage's [32, 52] (out_scale 0.05 and 300); threads=1 runs on the calling thread
    rng = np.random.default_rng(17)
    for tokens, C in ((63, 384), (64, 384), (197, 384), (70, 1100), (33, 768)):
        x = (rng.standard_normal((tokens, C)) * rng.uniform(0.1, 9, C)).astype(np.float32)
        p = qk.ptf_calibrate(x, K=5)
        q = p.quantize(x)
        q[0] = 255
        q[1] = rng.integers(0, 256, C)
        for out_scale in (0.05, 300.0):
            ln = qk.prepare_layernorm(p, rng.uniform(-2, 2, C), rng.uniform(-1, 1, C),
                                      method=method, rounding=rounding, out_scale=out_scale,
                                      out_zero_point=-3)
            one = qk.ptf_layernorm(q, ln, threads=1)
            for t in (2, 3, None):
                np.testing.assert_array_equal(qk.ptf_layernorm(q, ln, threads=t), one,
                                              err_msg=f"{tokens} x {C}, threads={t}")
    with pytest.raises(ValueError, match="threads"):
        qk.ptf_layernorm(q, ln, threads=0)
    with pytest.raises(TypeError, match="threads"):
        qk.ptf_layernorm(q, ln, threads=2.0)


def test_threads_share_prepared_params():
    # the kernel releases the GIL and is reentrant: concurrent calls give the serial bits
    from concurrent.futures import ThreadPoolExecutor
    rng = np.random.default_rng(11)
    x = rng.standard_normal((64, 384)).astype(np.float32)
    p = qk.ptf_calibrate(x)
    ln = qk.prepare_layernorm(p, rng.uniform(-1, 1, 384), rng.uniform(-1, 1, 384),
                              method="sole", out_scale=0.05)
    qs = [p.quantize(x + i) for i in range(8)]
    want = [qk.ptf_layernorm(q, ln) for q in qs]
    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(lambda q: qk.ptf_layernorm(q, ln), qs))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_scalar_avx2_and_avx512_paths_agree(tmp_path):
    # QKERNELS_SIMD=scalar / avx2 force those loops (chosen once per process): run each in a
    # subprocess and compare with the best path of this CPU (AVX-512 where it has it); the
    # channel counts cover every tail of the 32 / 16-channel statistics loops (57: 32 channels on
    # AVX-512, 16 more on AVX2, both storing the x_i the fast output stage reads) and of the 8 / 4
    # -channel output loops
    rng = np.random.default_rng(5)
    cases = []
    for C in (3, 4, 24, 37, 45, 57, 384, 1100):
        x = (rng.standard_normal((70 if C > 512 else 16, C)) * rng.uniform(0.1, 9, C)).astype(np.float32)
        cases.append(x)
    np.savez(tmp_path / "in.npz", *cases)
    script = f"""
import sys
import numpy as np, qkernels as qk
d = np.load({str(tmp_path / 'in.npz')!r})
outs = {{}}
for k in d.files:
    x = d[k]
    p = qk.ptf_calibrate(x, K=7)
    q = p.quantize(x)
    g = np.linspace(-2, 2, x.shape[1]).astype(np.float32)
    # out_scales that put F below, inside and above the fast AVX-512 output stage's [32, 52]
    for m, r, os_ in (("exact", "round", 0.03), ("sole", "round", 0.03), ("sole", "truncate", 0.03),
                      ("exact", "round", 1e-4), ("sole", "round", 1e-4), ("exact", "round", 300.0),
                      ("sole", "truncate", 300.0)):
        ln = qk.prepare_layernorm(p, g, g[::-1].copy(), method=m, rounding=r, out_scale=os_,
                                  out_zero_point=-3)
        outs[f"{{k}}_{{m}}_{{r}}_{{os_}}"] = qk.ptf_layernorm(q, ln)
    outs[k + "_q"] = q
    # extreme zero points and exponents on raw codes (full-scale rows included)
    C = x.shape[1]
    rng = np.random.default_rng(C)
    qq = rng.integers(0, 256, (8, C)).astype(np.uint8)
    qq[0] = 0
    qq[1] = 255
    for zp in (0, 255):
        pe = qk.PTFParams(0.01, rng.integers(0, 8, C).astype(np.int32), zp, K=7)
        for m, r in (("exact", "round"), ("sole", "round"), ("sole", "truncate")):
            ln = qk.prepare_layernorm(pe, g, g, method=m, rounding=r, out_scale=0.02)
            outs[f"{{k}}_zp{{zp}}_{{m}}_{{r}}"] = qk.ptf_layernorm(qq, ln)
outs["isa"] = np.array(qk.show_config(mode="dicts")["simd"]["chosen"])
np.savez(sys.argv[1], **outs)
"""
    res = run_simd_paths(script, tmp_path)
    assert len(res["scalar"]) == 8 * 14 + 1          # and "isa"
    assert_simd_paths_equal(res)
