"""Property tests (hypothesis) over the public API with hostile arguments (issue 11).

For every public function, over shapes, strides, paddings, dilations, groups, parameters and
overlapping ``out=``: the result equals an independent reference (int64 sums, SPEC formulas in
NumPy float32), or the call raises ValueError/TypeError whose message names an argument, and a
rejected call leaves ``out=`` untouched. Never another exception, never a crash (``make
sanitize`` runs this file under ASan/UBSan).

Bounded for ``make test``: the profile ``qkernels-ci`` (derandomized, a fixed number of
examples). ``QKERNELS_HYPOTHESIS=long`` selects many more examples for a longer local run.
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import qkernels as qk
from _gemm_ref import linear_acc, quantize_multiplier as ref_qm, requant_double
from _hostile_ref import conv_acc_sparse, named_error, out_size
from ptf_reference import ptf_quantize_ref

settings.register_profile("qkernels-ci", max_examples=40, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.data_too_large])
settings.register_profile("qkernels-long", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.data_too_large])
settings.load_profile("qkernels-long" if os.environ.get("QKERNELS_HYPOTHESIS") == "long"
                      else "qkernels-ci")

def call(fn, *args, out=None, **kw):
    """(result, None) or (None, exception); a rejected call must leave out untouched."""
    before = None if out is None else out.copy()
    try:
        return (fn(*args, out=out, **kw) if out is not None else fn(*args, **kw)), None
    except Exception as exc:  # noqa: BLE001 - the property inspects it
        assert named_error(exc), f"{type(exc).__name__}: {exc}"
        if out is not None and not (isinstance(exc, ValueError) and "NaN" in str(exc)):
            assert np.array_equal(out.view(np.uint8), before.view(np.uint8)), "out was written"
        return None, exc


# ---- strategies -----------------------------------------------------------------------------------
f32 = st.floats(width=32, allow_nan=True, allow_infinity=True, allow_subnormal=True)
scales = st.one_of(st.floats(width=32, min_value=2.0 ** -20, max_value=1024.0), f32,
                   st.sampled_from([1e-39, 2.0 ** -128, 2.0 ** -126, 3.4e38, 0.0, -1.0]))
int32s = st.integers(-(2 ** 31), 2 ** 31 - 1)
edge_ints = st.one_of(st.integers(-300, 300), int32s, st.sampled_from([2 ** 31, -(2 ** 31) - 1]))


@st.composite
def geometry(draw):
    """A conv: small input, any groups, small or huge stride/padding/dilation (output kept
    small so that the int64 reference is cheap)."""
    g = draw(st.integers(1, 3))
    cpg = draw(st.sampled_from([1, 1, 2, 3, 4, 8]))
    ocg = draw(st.integers(1, 5))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    n, h, w = draw(st.integers(1, 2)), draw(st.integers(1, 7)), draw(st.integers(1, 9))
    big = st.one_of(st.integers(0, 3), st.integers(0, 2 ** 40), st.sampled_from([2 ** 31, 2 ** 62]))
    pad = tuple(draw(big) for _ in range(4))
    dil = (draw(st.one_of(st.integers(1, 2), st.integers(1, 2 ** 20))),
           draw(st.one_of(st.integers(1, 2), st.integers(1, 2 ** 20))))
    hp, wp = h + pad[0] + pad[2], w + pad[1] + pad[3]
    eh, ew = dil[0] * (kh - 1) + 1, dil[1] * (kw - 1) + 1
    assume(eh <= hp and ew <= wp and hp < 2 ** 63 and wp < 2 ** 63)
    # strides that leave at most 5 output rows/columns, or small ones when the input is small
    sh = max(1, (hp - eh) // draw(st.integers(1, 5)) + draw(st.integers(0, 1)))
    sw = max(1, (wp - ew) // draw(st.integers(1, 5)) + draw(st.integers(0, 1)))
    if hp < 20 and draw(st.booleans()):
        sh = draw(st.integers(1, 3))
    if wp < 20 and draw(st.booleans()):
        sw = draw(st.integers(1, 3))
    assume(out_size(h, pad[0], pad[2], dil[0], kh, sh) * out_size(w, pad[1], pad[3], dil[1], kw, sw) <= 400)
    return dict(x_shape=(n, g * cpg, h, w), w_shape=(g * ocg, cpg, kh, kw), groups=g,
                stride=(sh, sw), padding=pad, dilation=dil)


# ---- conv and linear ----------------------------------------------------------------------------------
@given(geo=geometry(), seed=st.integers(0, 2 ** 32 - 1), xt=st.sampled_from([np.uint8, np.int8]),
       wt=st.sampled_from([np.uint8, np.int8]), threads=st.integers(1, 3),
       overlap=st.sampled_from([None, 0, 1, -1]))
def test_conv2d_int32_equals_reference(geo, seed, xt, wt, threads, overlap):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, geo["x_shape"]).astype(np.uint8).view(xt)
    w = rng.integers(0, 256, geo["w_shape"]).astype(np.uint8).view(wt)
    info = np.iinfo(xt)
    xzp = int(rng.integers(info.min, info.max + 1))
    wzp = rng.integers(np.iinfo(wt).min, np.iinfo(wt).max + 1, geo["w_shape"][0])
    bias = rng.integers(-1000, 1000, geo["w_shape"][0]).astype(np.int32)
    kw = dict(stride=geo["stride"], padding=geo["padding"], dilation=geo["dilation"],
              groups=geo["groups"], x_zero_point=xzp, w_zero_point=wzp, overflow="wrap",
              threads=threads)
    want = conv_acc_sparse(x, w, xzp, wzp, geo["stride"], geo["padding"], geo["dilation"],
                           geo["groups"], bias)
    out = None
    if overlap is not None:  # out laid over x's bytes (shifted by 0 or +-1 plane of x)
        plane = x.shape[2] * x.shape[3]
        buf = np.zeros(x.nbytes + want.size * 4 + 2 * plane + 64, np.uint8)
        ox = plane if overlap < 0 else 0
        buf[ox:ox + x.nbytes] = x.reshape(-1).view(np.uint8)
        x = buf[ox:ox + x.nbytes].view(xt).reshape(x.shape)
        oo = ox + overlap * plane
        oo -= oo % 4
        out = buf[oo:oo + want.size * 4].view(np.int32).reshape(want.shape)
    y, exc = call(qk.conv2d_int32, x, w, bias, out=out, **kw)
    assert exc is None
    assert np.array_equal(y.astype(np.int64), (want + 2 ** 31) % 2 ** 32 - 2 ** 31)


@given(geo=geometry(), seed=st.integers(0, 2 ** 32 - 1), per_channel=st.booleans(),
       single=st.booleans(), threads=st.integers(1, 3))
def test_qconv2d_tflite_is_requantized_reference(geo, seed, per_channel, single, threads):
    """tflite preset == the int64 reference sums through TFLite's multiplier and the
    double/single rounding of the elementwise requantize."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, geo["x_shape"]).astype(np.int8)
    w = rng.integers(-127, 128, geo["w_shape"]).astype(np.int8)
    oc = geo["w_shape"][0]
    bias = rng.integers(-5000, 5000, oc).astype(np.int32)
    ws = (rng.uniform(0.5, 2.0, oc) * 0.01).astype(np.float32) if per_channel else np.float32(0.013)
    xs, os_, xzp, ozp = np.float32(0.05), np.float32(0.17), int(rng.integers(-128, 128)), 3
    scheme = "single_round" if single else "double_round"
    y, exc = call(qk.qconv2d, x, w, bias, stride=geo["stride"], padding=geo["padding"],
                  dilation=geo["dilation"], groups=geo["groups"], x_scale=xs, x_zero_point=xzp,
                  w_scale=ws, out_scale=os_, out_zero_point=ozp, scheme=scheme, threads=threads)
    assert exc is None
    acc = conv_acc_sparse(x, w, xzp, 0, geo["stride"], geo["padding"], geo["dilation"],
                          geo["groups"], bias).astype(np.int32)
    real = (np.float64(xs) * np.asarray(ws, np.float64) / np.float64(os_)) if per_channel else \
        np.full(oc, np.float64(np.float32(xs * ws)) / np.float64(os_))
    m0, sh = qk.quantize_multiplier(real)
    want = qk.requantize(acc, m0[None, :, None, None], sh[None, :, None, None], ozp,
                         scheme=scheme, dtype=np.int8)
    assert np.array_equal(y, want)


@given(m=st.integers(0, 40), k=st.integers(1, 300), n=st.integers(1, 40),
       seed=st.integers(0, 2 ** 32 - 1), threads=st.integers(1, 3),
       overlap=st.sampled_from([None, 0, 1, -1]))
def test_linear_int32_and_qlinear(m, k, n, seed, threads, overlap):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (m, k)).astype(np.uint8)
    w = rng.integers(-128, 128, (n, k)).astype(np.int8)
    wzp = rng.integers(-128, 128, n)
    xzp = int(rng.integers(0, 256))
    want = linear_acc(x, w, xzp, wzp)
    y, exc = call(qk.linear_int32, x, w, x_zero_point=xzp, w_zero_point=wzp, overflow="wrap",
                  threads=threads)
    assert exc is None and np.array_equal(y.astype(np.int64), (want + 2 ** 31) % 2 ** 32 - 2 ** 31)
    # qlinear fbgemm with out laid over x (K == N only)
    kw = dict(x_scale=0.05, x_zero_point=xzp, w_scale=0.01, out_scale=0.3, out_zero_point=7,
              preset="fbgemm", threads=threads)
    ref = qk.qlinear(x.copy(), w, **kw)
    if overlap is not None and k == n and m > 1:
        buf = np.zeros((m + 2) * k, np.uint8)
        ox = k if overlap < 0 else 0
        buf[ox:ox + x.size] = x.reshape(-1)
        xv = buf[ox:ox + x.size].reshape(m, k)
        out = buf[ox + overlap * k:ox + overlap * k + m * n].reshape(m, n)
        qk.qlinear(xv, w, **kw, out=out)
        assert np.array_equal(out, ref)


# ---- elementwise -----------------------------------------------------------------------------------
@given(x=st.lists(f32, min_size=0, max_size=80), scale=scales, zp=edge_ints,
       dtype=st.sampled_from([np.uint8, np.int8, np.uint16, np.int16, np.int32]),
       flavor=st.sampled_from(["pt2e", "onnx", "tflite", "torch", "fbgemm", "fbgemm_scalar"]),
       with_out=st.booleans())
def test_quantize_reference_or_named_error(x, scale, zp, dtype, flavor, with_out):
    xa = np.array(x, np.float32)
    out = np.full(xa.shape, 7, dtype) if with_out else None
    y, exc = call(qk.quantize, xa, scale, zp, dtype=dtype, flavor=flavor, out=out)
    if exc is not None:
        return
    info = np.iinfo(dtype)
    assert y.dtype == dtype and ((y >= info.min) & (y <= info.max)).all()
    s = np.float32(scale)
    assert not np.isnan(xa).any()
    if flavor in ("pt2e", "onnx", "tflite"):
        with np.errstate(all="ignore"):
            t = xa * (np.float32(1) / s) if flavor == "pt2e" else xa / s
            t = np.clip(t.astype(np.float64), float(info.min) - zp, float(info.max) - zp)
            r = np.rint(t) if flavor != "tflite" else np.sign(t) * np.floor(np.abs(t) + 0.5)
        assert np.array_equal(y.astype(np.int64), (r + zp).astype(np.int64))


@given(q=st.lists(st.integers(-(2 ** 31), 2 ** 31 - 1), max_size=60), scale=scales,
       zp=edge_ints, dtype=st.sampled_from([np.uint8, np.int8, np.int16, np.int32]))
def test_dequantize_reference_or_named_error(q, scale, zp, dtype):
    info = np.iinfo(dtype)
    qa = np.clip(np.array(q, np.int64), info.min, info.max).astype(dtype)
    y, exc = call(qk.dequantize, qa, scale, zp)
    if exc is None:
        with np.errstate(over="ignore"):
            want = np.float32(scale) * (qa.astype(np.int64) - zp).astype(np.float32)
        assert np.array_equal(y.view(np.int32), want.astype(np.float32).view(np.int32))


@given(acc=st.lists(int32s, max_size=60), m=st.one_of(st.integers(0, 2 ** 31 - 1), edge_ints),
       shift=st.integers(-40, 40), zp=st.integers(-200, 200),
       dtype=st.sampled_from([np.int8, np.uint8, np.int16]))
def test_requantize_reference_or_named_error(acc, m, shift, zp, dtype):
    a = np.array(acc, np.int32)
    y, exc = call(qk.requantize, a, m, shift, zp, dtype=dtype)
    if exc is None:
        info = np.iinfo(dtype)
        want = np.clip(requant_double(a, m, shift) + zp, info.min, info.max)
        assert np.array_equal(y.astype(np.int64), want)


@given(m=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 2.0 ** 32),
                   st.integers(0, 40).map(lambda e: 2.0 ** e - 2.0 ** (e - 33))))
def test_quantize_multiplier_reference_or_named_error(m):
    y, exc = call(qk.quantize_multiplier, m)
    if exc is None:
        assert (int(y[0]), int(y[1])) == ref_qm(m)


@given(x=st.lists(f32, min_size=1, max_size=40), scale=scales, zp=st.integers(-5, 260),
       qmin=st.integers(-300, 300), span=st.integers(-5, 600))
def test_fake_quantize_and_acc_to_float(x, scale, zp, qmin, span):
    xa = np.array(x, np.float32)
    call(qk.fake_quantize, xa, scale, zp, qmin, qmin + span)
    acc = np.array([int(v) if np.isfinite(v) and abs(v) < 2 ** 31 else 0 for v in x], np.int32)
    y, exc = call(qk.accumulator_to_float, acc, scale, 0.5)
    if exc is None:
        with np.errstate(over="ignore"):
            want = (acc.astype(np.float64) * np.float64(np.float32(scale)) + 0.5).astype(np.float32)
        assert np.array_equal(y, want)   # fmaf: one rounding of the exact value


# ---- PTF and LayerNorm ---------------------------------------------------------------------------------
@given(tokens=st.integers(1, 6), channels=st.integers(1, 40), seed=st.integers(0, 2 ** 32 - 1),
       mag=st.sampled_from([1e-30, 1e-3, 1.0, 1e3, 1e30]), K=st.integers(0, 7),
       method=st.sampled_from(["seed", "fqvit"]), ln=st.sampled_from(["exact", "sole"]),
       overlap=st.booleans())
def test_ptf_pipeline(tokens, channels, seed, mag, K, method, ln, overlap):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((tokens, channels)) * mag).astype(np.float32)
    p, exc = call(qk.ptf_calibrate, x, method=method, K=K)
    if exc is not None:
        return
    q, exc = call(qk.ptf_quantize, x, p.scale, p.alpha, p.zero_point)
    assert exc is None
    assert np.array_equal(q, ptf_quantize_ref(x, p.scale, p.alpha, p.zero_point))
    gamma = rng.uniform(-2, 2, channels).astype(np.float32)
    beta = rng.uniform(-1, 1, channels).astype(np.float32)
    prep, exc = call(qk.prepare_layernorm, p, gamma, beta, method=ln, out_scale=0.05)
    if exc is not None:
        return
    want = qk.ptf_layernorm(q, prep)
    out = q.view(np.int8) if overlap else None   # in place over the input
    y, exc = call(qk.ptf_layernorm, q.copy() if not overlap else q, prep, out=out)
    assert exc is None and np.array_equal(y, want)
