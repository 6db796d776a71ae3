"""atheris harness over the Python API (make fuzz-py), against an ASan/UBSan build of the
extension (clang, -fsanitize=fuzzer-no-link, so libFuzzer sees the C code's coverage too).

Each input picks one public function and hostile arguments (geometry up to 2**62, any float bits
as scales and data, any int32 parameters, out= laid over the input's bytes). Oracles:
  - conv2d_int32 / linear_int32 equal an int64 reference (tests/_hostile_ref.py, no padded
    image), qlinear / qconv2d with an overlapping out equal a fresh out;
  - quantize (pt2e, onnx, tflite) equals the SPEC formula in NumPy float32;
  - every exception is a ValueError/TypeError naming an argument (a MemoryError only for an
    output that really does not fit), and a rejected call leaves out= untouched;
  - the raw ufuncs never hand back memory they did not write (0 on a refused parameter).
A broken oracle raises AssertionError: atheris saves the input as a crash.
"""
import os
import sys

import atheris

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests"))

import numpy as np  # noqa: E402

with atheris.instrument_imports(include=["qkernels"]):
    import qkernels as qk  # noqa: E402
    from qkernels import ufuncs  # noqa: E402

from _hostile_ref import conv_acc_sparse, named_error, out_size  # noqa: E402
from _gemm_ref import linear_acc  # noqa: E402

NOPS = 8


def _geo_value(f, lo, small):
    k = f.ConsumeIntInRange(0, 7)
    if k == 0:
        return 1 << f.ConsumeIntInRange(0, 62)
    if k == 1:
        return f.ConsumeIntInRange(lo, 2 ** 64)
    return f.ConsumeIntInRange(lo, small)


def _float(f):
    k = f.ConsumeIntInRange(0, 3)
    if k == 0:
        return float(np.frombuffer(f.ConsumeBytes(4).ljust(4, b"\0"), np.float32)[0])
    if k == 1:
        return [1e-39, 2.0 ** -128, 3.4e38, 0.0, -1.0, float("inf"), float("nan"), 2.0 ** 118][
            f.ConsumeIntInRange(0, 7)]
    return f.ConsumeIntInRange(1, 100000) * 1e-4


def _check(exc, out=None, before=None):
    if isinstance(exc, MemoryError):
        return
    if not named_error(exc):
        raise AssertionError(f"unnamed error {type(exc).__name__}: {exc}") from exc
    if out is not None and "NaN" not in str(exc):
        assert np.array_equal(out.view(np.uint8), before.view(np.uint8)), "out written on error"


def op_conv(f):
    g = f.ConsumeIntInRange(1, 3)
    cpg, ocg = f.ConsumeIntInRange(1, 5), f.ConsumeIntInRange(1, 4)
    kh, kw = f.ConsumeIntInRange(1, 3), f.ConsumeIntInRange(1, 3)
    shape = (f.ConsumeIntInRange(1, 2), g * cpg, f.ConsumeIntInRange(1, 6), f.ConsumeIntInRange(1, 8))
    pad = tuple(_geo_value(f, 0, 3) for _ in range(4))
    stride = (_geo_value(f, 1, 3), _geo_value(f, 1, 3))
    dil = (_geo_value(f, 1, 2), _geo_value(f, 1, 2))
    xt = np.uint8 if f.ConsumeBool() else np.int8
    rng = np.random.default_rng(f.ConsumeIntInRange(0, 2 ** 32 - 1))
    x = rng.integers(0, 256, shape).astype(np.uint8).view(xt)
    w = rng.integers(-128, 128, (g * ocg, cpg, kh, kw)).astype(np.int8)
    xzp = int(rng.integers(np.iinfo(xt).min, np.iinfo(xt).max + 1))
    oh = out_size(shape[2], pad[0], pad[2], dil[0], kh, stride[0])
    ow = out_size(shape[3], pad[1], pad[3], dil[1], kw, stride[1])
    if shape[0] * g * ocg * oh * ow > 1 << 20 and max(pad + stride + dil) < 2 ** 63:
        return  # a legal output of more than 4 MB: real work, not a hostile case to run
    try:
        y = qk.conv2d_int32(x, w, stride=stride, padding=pad, dilation=dil, groups=g,
                            x_zero_point=xzp, overflow="wrap", threads=f.ConsumeIntInRange(1, 3))
    except Exception as exc:  # noqa: BLE001
        _check(exc)
        return
    assert y.shape == (shape[0], g * ocg, oh, ow), (y.shape, oh, ow)
    if oh * ow <= 4096:
        want = conv_acc_sparse(x, w, xzp, 0, stride, pad, dil, g)
        assert np.array_equal(y.astype(np.int64), (want + 2 ** 31) % 2 ** 32 - 2 ** 31)


def op_linear(f):
    m, k, n = f.ConsumeIntInRange(0, 30), f.ConsumeIntInRange(1, 200), f.ConsumeIntInRange(1, 30)
    rng = np.random.default_rng(f.ConsumeIntInRange(0, 2 ** 32 - 1))
    x = rng.integers(0, 256, (m, k)).astype(np.uint8)
    w = rng.integers(-128, 128, (n, k)).astype(np.int8)
    xzp, wzp = f.ConsumeIntInRange(-300, 300), f.ConsumeIntInRange(-300, 300)
    try:
        y = qk.linear_int32(x, w, x_zero_point=xzp, w_zero_point=wzp, overflow="wrap")
    except Exception as exc:  # noqa: BLE001
        _check(exc)
        return
    want = linear_acc(x, w, xzp, wzp)
    assert np.array_equal(y.astype(np.int64), (want + 2 ** 31) % 2 ** 32 - 2 ** 31)
    if k == n and m > 1:
        kw = dict(x_scale=_float(f), x_zero_point=xzp, w_scale=_float(f), out_scale=_float(f),
                  out_zero_point=f.ConsumeIntInRange(-10, 300), preset="fbgemm")
        try:
            ref = qk.qlinear(x, w, **kw)
        except Exception as exc:  # noqa: BLE001
            _check(exc)
            return
        shift = f.ConsumeIntInRange(-1, 1)
        buf = np.zeros((m + 2) * k, np.uint8)
        buf[k:k + x.size] = x.reshape(-1)
        xv = buf[k:k + x.size].reshape(m, k)
        out = buf[k + shift * k:k + shift * k + m * n].reshape(m, n)
        qk.qlinear(xv, w, **kw, out=out)
        assert np.array_equal(out, ref)


def op_quantize(f):
    n = f.ConsumeIntInRange(0, 64)
    x = np.frombuffer(f.ConsumeBytes(4 * n).ljust(4 * n, b"\0"), np.float32).copy()
    scale, zp = _float(f), f.ConsumeIntInRange(-(2 ** 31), 2 ** 31 - 1) if f.ConsumeBool() else \
        f.ConsumeIntInRange(-130, 300)
    dt = [np.uint8, np.int8, np.uint16, np.int16, np.int32][f.ConsumeIntInRange(0, 4)]
    flavor = ["pt2e", "onnx", "tflite", "torch", "fbgemm", "fbgemm_scalar"][f.ConsumeIntInRange(0, 5)]
    out = np.full(x.shape, 3, dt) if f.ConsumeBool() else None
    before = None if out is None else out.copy()
    try:
        y = qk.quantize(x, scale, zp, dtype=dt, flavor=flavor, out=out)
    except Exception as exc:  # noqa: BLE001
        _check(exc, out, before)
        return
    info = np.iinfo(dt)
    if flavor in ("pt2e", "onnx", "tflite"):
        s = np.float32(scale)
        with np.errstate(all="ignore"):
            t = x * (np.float32(1) / s) if flavor == "pt2e" else x / s
            t = np.clip(t.astype(np.float64), float(info.min) - zp, float(info.max) - zp)
            r = np.rint(t) if flavor != "tflite" else np.sign(t) * np.floor(np.abs(t) + 0.5)
        assert np.array_equal(y.astype(np.int64), (r + zp).astype(np.int64))


def op_raw_ufunc(f):
    names = sorted(n for n in dir(ufuncs) if n.startswith(("quantize_", "requantize_", "dequantize")))
    name = names[f.ConsumeIntInRange(0, len(names) - 1)]
    uf = getattr(ufuncs, name)
    n = f.ConsumeIntInRange(0, 40)
    raw = f.ConsumeBytes(8 * n).ljust(8 * n, b"\0")
    in_t = np.dtype(uf.types[0].split("->")[0][0])
    x = np.frombuffer(raw[:n * in_t.itemsize], in_t).copy()
    params = []
    for t in uf.types[0].split("->")[0][1:]:
        params.append(np.float32(_float(f)) if t == "f" else
                      np.int32(f.ConsumeIntInRange(-(2 ** 31), 2 ** 31 - 1)))
    with np.errstate(all="ignore"):
        try:
            uf(x, *params)
        except (TypeError, ValueError) as exc:  # wrong number of operands etc.
            _check(exc)


def op_ptf(f):
    t, c = f.ConsumeIntInRange(1, 5), f.ConsumeIntInRange(1, 40)
    x = np.frombuffer(f.ConsumeBytes(4 * t * c).ljust(4 * t * c, b"\0"), np.float32).reshape(t, c).copy()
    try:
        p = qk.ptf_calibrate(x, method=["seed", "fqvit"][f.ConsumeIntInRange(0, 1)],
                             K=f.ConsumeIntInRange(-1, 8))
        q = qk.ptf_quantize(x, p.scale, p.alpha, p.zero_point)
        ln = qk.prepare_layernorm(p, np.full(c, _float(f), np.float32),
                                  np.full(c, _float(f), np.float32), out_scale=_float(f),
                                  method=["exact", "sole"][f.ConsumeIntInRange(0, 1)])
        y = qk.ptf_layernorm(q, ln)
        assert y.dtype == np.int8 and y.shape == q.shape
    except Exception as exc:  # noqa: BLE001
        _check(exc)


def op_requantize(f):
    n = f.ConsumeIntInRange(0, 40)
    acc = np.frombuffer(f.ConsumeBytes(4 * n).ljust(4 * n, b"\0"), np.int32).copy()
    try:
        k = f.ConsumeIntInRange(0, 2)
        if k == 0:
            qk.requantize(acc, f.ConsumeIntInRange(-5, 2 ** 31), f.ConsumeIntInRange(-40, 40),
                          f.ConsumeIntInRange(-300, 300),
                          scheme=["double_round", "single_round"][f.ConsumeIntInRange(0, 1)])
        elif k == 1:
            qk.requantize_float(acc, _float(f), f.ConsumeIntInRange(-300, 300))
        else:
            qk.quantize_multiplier(_float(f) * 2.0 ** f.ConsumeIntInRange(-60, 40))
    except Exception as exc:  # noqa: BLE001
        _check(exc)


def op_read_array(f):
    import tempfile
    with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as fh:
        fh.write(f.ConsumeBytes(f.ConsumeIntInRange(0, 300)))
    try:
        qk.io.read_array(fh.name) if hasattr(qk, "io") else None
    except UnicodeDecodeError as exc:
        raise AssertionError("read_array let a decode error through") from exc
    except ValueError:
        pass
    finally:
        os.unlink(fh.name)


def op_geometry_args(f):
    """Any Python ints as stride/padding/dilation (negative, 2**64, ...): named errors only."""
    vals = [f.ConsumeIntInRange(-(2 ** 65), 2 ** 65) for _ in range(8)]
    x = np.ones((1, 1, 2, 2), np.uint8)
    try:
        qk.conv2d_int32(x, np.ones((1, 1, 1, 1), np.int8), stride=tuple(vals[:2]),
                        padding=tuple(vals[2:6]), dilation=tuple(vals[6:]))
    except Exception as exc:  # noqa: BLE001
        _check(exc)


OPS = [op_conv, op_linear, op_quantize, op_raw_ufunc, op_ptf, op_requantize, op_read_array,
       op_geometry_args]


def TestOneInput(data: bytes) -> None:
    f = atheris.FuzzedDataProvider(data)
    OPS[f.ConsumeIntInRange(0, len(OPS) - 1)](f)


if __name__ == "__main__":
    import qkernels.io  # noqa: F401  (read_array)
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
