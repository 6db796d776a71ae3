"""qkernels' TFLite presets, ops and .tflite front end against LiteRT's interpreter.

The reference data (tests/fixtures/tflite/, made by scripts/make_tflite_fixtures.py with
TensorFlow 2.21 and ai-edge-litert 2.3.0 in their own venv): small Keras models converted with
full-integer quantization, random int8 inputs over the full range (>= 10^5 output elements per
op), ``*_tie`` models rewritten to power-of-two scales (exact rounding ties), and the
interpreter's outputs with its reference kernels (BUILTIN_REF), with the XNNPACK delegate (AUTO)
and with the optimized built-ins. Every comparison is ``==`` on every element.
"""
import glob
import hashlib
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from qkernels.io.tflite import read_model
from qkernels.torch import IntegerModel
from qkernels.torch.tflite import from_tflite

from _litert import float_inputs, litert_or_skip, make_inputs, run  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
FIX = os.path.join(ROOT, "tests", "fixtures", "tflite")
CASES = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(FIX, "*.npz")))


def load_case(directory, name):
    """(npz, float inputs that quantize back to the int8 inputs, ref, xnn, opt outputs)."""
    z = np.load(os.path.join(directory, name + ".npz"))
    m = read_model(os.path.join(directory, name + ".tflite"))
    runs = {"ref": z["ref"]}
    for r in ("xnn", "opt"):
        v = z["ref"].reshape(-1).copy()
        v[z[f"{r}_idx"]] = z[f"{r}_val"]
        runs[r] = v.reshape(z["ref"].shape)
    if "x0" in z:        # a float input (the model's QUANTIZE): stored as it was given
        return z, [z["x0"]], runs
    rng = np.random.default_rng(int(z["seed"]))
    xs = []
    for i in m.inputs:      # int8, or int16 (16x8 cases), over the whole range of the type
        info = np.iinfo(m.tensors[i].dtype)
        xs.append(rng.integers(info.min, info.max + 1, (int(z["batch"]),) +
                               m.tensors[i].shape[1:]).astype(m.tensors[i].dtype))
    h = hashlib.sha256()
    for x in xs:
        h.update(x.tobytes())
    assert h.hexdigest() == str(z["x_sha256"]), "the inputs are not the ones the fixture used"
    fl = [((x.astype(np.float32) - np.float32(m.tensors[i].zero_point[0]))
           * np.float32(m.tensors[i].scale[0])).astype(np.float32) for x, i in zip(xs, m.inputs)]
    return z, fl, runs


def beyond_int32(z, fl, directory, name):
    """Elements whose QUANTIZE has ``|fl(x / s)| >= 2^31`` (+-inf included): LiteRT's reference
    and optimized kernels cast that float to int32 (undefined; x86 gives INT32_MIN, then + zp),
    qkernels saturates as XNNPACK does (docs/tflite.md). None where the input is int8."""
    if "x0" not in z:
        return None
    m = read_model(os.path.join(directory, name + ".tflite"))
    s = np.float32(m.tensors[m.operators[0].outputs[0]].scale[0])
    with np.errstate(over="ignore"):
        return ~(np.abs(fl[0] / s) < np.float32(2.0 ** 31))


def integers(directory, name, preset, fl):
    im = from_tflite(os.path.join(directory, name + ".tflite"), preset=preset)
    return im, im.intermediates(*fl)[im.output].q


def test_fixtures_present():
    assert len(CASES) >= 31, CASES


@pytest.mark.parametrize("name", CASES)
def test_reference_kernels(name):
    """preset tflite == the interpreter's reference kernels, every element."""
    z, fl, runs = load_case(FIX, name)
    _, q = integers(FIX, name, "tflite", fl)
    assert q.dtype == runs["ref"].dtype and q.shape == runs["ref"].shape
    # 16x8 cases: 5 * 10^4 each, 10^5 an op with its tie case (test_16x8_elements_per_op)
    assert runs["ref"].size >= (5120 if name.startswith("cnn") else
                                50_000 if "16_" in name else 100_000)
    beyond = beyond_int32(z, fl, FIX, name)
    if beyond is not None:          # the documented difference (test_quantize_beyond_int32)
        q, ref = q.reshape(beyond.shape)[~beyond], runs["ref"].reshape(beyond.shape)[~beyond]
        assert int((q != ref).sum()) == 0
    else:
        assert int((q != runs["ref"]).sum()) == 0


def test_quantize_ties_and_beyond_int32():
    """QUANTIZE: LiteRT's reference kernel rounds fl(x / s) half away from zero (flavor
    "tflite"); XNNPACK and the optimized built-in round fl(x * fl(1/s)) half to even ("pt2e");
    the inputs hold thousands of exact ties, where the two disagree. Beyond the int32 range the
    reference and optimized kernels give the same value on both sides (the x86 cast gives
    INT32_MIN; + zp: -128, or 127 when zp < 0 wraps); qkernels and XNNPACK saturate."""
    import qkernels as qk
    z, fl, runs = load_case(FIX, "quantize")
    x = fl[0]
    m = read_model(os.path.join(FIX, "quantize.tflite"))
    t = m.tensors[m.operators[0].outputs[0]]
    s, zp = np.float32(t.scale[0]), int(t.zero_point[0])
    beyond = beyond_int32(z, fl, FIX, "quantize")
    with np.errstate(over="ignore", invalid="ignore"):
        d = x / s
        ties = int(((np.abs(d - np.trunc(d)) == 0.5) & ~beyond).sum())
    assert ties > 10_000 and beyond.sum() == 8
    # INT32_MIN + zp: -128 when zp >= 0; wraps to near INT32_MAX (127) when zp < 0
    cast = -128 if zp >= 0 else 127
    assert (runs["ref"].reshape(x.shape)[beyond] == cast).all()
    assert (runs["opt"].reshape(x.shape)[beyond] == cast).all()
    sat = np.where(x[beyond] > 0, 127, -128)
    assert (runs["xnn"].reshape(x.shape)[beyond] == sat).all()
    tfl = qk.quantize(x, s, zp, dtype=np.int8, flavor="tflite")
    pt2e = qk.quantize(x, s, zp, dtype=np.int8, flavor="pt2e")
    assert (tfl[beyond] == sat).all() and (pt2e[beyond] == sat).all()
    ref, xnn, opt = (runs[k].reshape(x.shape) for k in ("ref", "xnn", "opt"))
    assert int((tfl[~beyond] != ref[~beyond]).sum()) == 0
    assert int((pt2e != xnn).sum()) == 0
    assert int((pt2e[~beyond] != opt[~beyond]).sum()) == 0
    assert int((tfl != pt2e).sum()) > 5000          # the ties tell the two roundings apart


@pytest.mark.parametrize("name", CASES)
def test_xnnpack_delegate(name):
    """preset tflite_xnnpack == the interpreter with its default XNNPACK delegate (conv / FC in
    float32, ADD, MUL, MEAN in XNNPACK's arithmetic, SOFTMAX by the optimized built-in that
    XNNPACK leaves it to, QUANTIZE half to even), every element of every case."""
    z, fl, runs = load_case(FIX, name)
    _, q = integers(FIX, name, "tflite_xnnpack", fl)
    assert int((q != runs["xnn"]).sum()) == 0


@pytest.mark.parametrize("name", CASES)
def test_optimized_builtins(name):
    """preset tflite_optimized == the interpreter's optimized built-ins without a delegate
    (conv / depthwise / FC: SRDHM then a half-up rounding shift; SOFTMAX's float32 table;
    QUANTIZE half to even, with the out-of-int32 cast excluded as for the reference kernels)."""
    z, fl, runs = load_case(FIX, name)
    _, q = integers(FIX, name, "tflite_optimized", fl)
    beyond = beyond_int32(z, fl, FIX, name)
    keep = np.ones(q.size, bool) if beyond is None else ~beyond.reshape(-1)
    assert int((q.reshape(-1) != runs["opt"].reshape(-1))[keep].sum()) == 0


@pytest.mark.parametrize("name", ["conv_same_relu_tie", "dw_m2_s2_same_relu6_tie", "dense_pc_tie",
                                  "mul_tie", "mean", "cnn_residual"])
def test_ties_tell_the_runtimes_apart(name):
    """On the tie models the runtimes disagree on thousands of elements: the comparisons above
    can fail (and cmsis_nn's double rounding differs from the fp64 FullyConnected)."""
    z, fl, runs = load_case(FIX, name)
    least = 100 if name.startswith("cnn") else 1000
    assert int((runs["ref"] != runs["xnn"]).sum()) > least
    _, q = integers(FIX, name, "tflite_xnnpack", fl)
    assert int((q != runs["ref"]).sum()) > least
    if name.startswith("dense"):
        _, q = integers(FIX, name, "cmsis_nn", fl)
        assert int((q != runs["ref"]).sum()) > 1000


def test_export_reproduced_by_c_example(tmp_path):
    """An imported .tflite model exports like any other; csrc/examples/model_golden.c runs its
    conv / depthwise / fully-connected layers (fp64 FullyConnected included) from model.c and
    reproduces the goldens; IntegerModel.load gives the same integers."""
    lib = os.path.join(ROOT, "build", "libqkernels.a")
    if not os.path.exists(lib):
        subprocess.run(["make", "-C", ROOT, "lib"], check=True, capture_output=True)
    z, fl, runs = load_case(FIX, "cnn_dws")
    im = from_tflite(os.path.join(FIX, "cnn_dws.tflite"))
    x = fl[0][:3]
    out = tmp_path / "cnn_dws"
    im.export(str(out), x)
    exe = tmp_path / "model_golden"
    subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-I",
                    os.path.join(ROOT, "csrc", "include"), "-I", str(out),
                    os.path.join(ROOT, "csrc", "examples", "model_golden.c"), str(out / "model.c"),
                    lib, "-lm", "-pthread", "-o", str(exe)], check=True)
    r = subprocess.run([str(exe)], capture_output=True, text=True)
    assert r.returncode == 0 and "5 conv / linear layers" in r.stdout, r.stdout + r.stderr
    assert " 0 differ from the golden outputs" in r.stdout
    im2 = IntegerModel.load(str(out))
    assert np.array_equal(im2.intermediates(*fl)[im2.output].q, runs["ref"])


#: a fresh seed for the live runs (the fixtures used their own)
LIVE_SEED = 7919
LIVE = (("ref", "tflite"), ("xnn", "tflite_xnnpack"), ("opt", "tflite_optimized"))


@pytest.mark.parametrize("name", CASES)
def test_live_interpreter_in_process(name):
    """LiteRT's interpreter (ai-edge-litert, no TensorFlow) runs each committed .tflite model on
    fresh inputs (another seed: int8 (int16 for 16x8) uniform over the full range, or for QUANTIZE floats near
    its ties and beyond the int32 range), with its reference kernels, the XNNPACK delegate and
    the optimized built-ins; each preset == its runtime on every element."""
    litert_or_skip()
    path = os.path.join(FIX, name + ".tflite")
    with open(path, "rb") as f:
        tfl = f.read()
    z = np.load(os.path.join(FIX, name + ".npz"))
    m = read_model(path)
    shapes = [m.tensors[i].shape[1:] for i in m.inputs]
    batch, seed = int(z["batch"]), int(z["seed"]) + LIVE_SEED
    if "x0" in z:
        xs = [float_inputs(tfl, shapes[0], batch, seed)]
        fl = xs
        s = np.float32(m.tensors[m.operators[0].outputs[0]].scale[0])
        with np.errstate(over="ignore"):
            beyond = ~(np.abs(fl[0] / s) < np.float32(2.0 ** 31)).reshape(-1)
    else:
        xs = make_inputs(shapes, batch, seed,
                         int16=bool(m.tensors[m.inputs[0]].dtype == np.int16))  # 16x8 cases
        fl = [((x.astype(np.float32) - np.float32(m.tensors[i].zero_point[0]))
               * np.float32(m.tensors[i].scale[0])).astype(np.float32)
              for x, i in zip(xs, m.inputs)]
        beyond = None
    for resolver, preset in LIVE:
        y, _ = run(tfl, xs, resolver)
        assert y.size >= (5120 if name.startswith("cnn") else
                          50_000 if "16_" in name else 100_000)
        _, q = integers(FIX, name, preset, fl)
        keep = np.ones(q.size, bool) if beyond is None or resolver == "xnn" else ~beyond
        bad = int((q.reshape(-1) != y.reshape(-1))[keep].sum())
        assert bad == 0, f"{name} {preset}: {bad} of {int(keep.sum())} elements differ"


def _venv_python():
    venv = os.environ.get("QKERNELS_TFLITE_VENV", "/work/venvs/tflite")
    py = os.path.join(venv, "bin", "python")
    return py if os.path.exists(py) else None


@pytest.mark.skipif(_venv_python() is None,
                    reason="no TensorFlow / LiteRT venv (QKERNELS_TFLITE_VENV or "
                           "/work/venvs/tflite): the committed fixtures are compared instead")
def test_live_interpreter(tmp_path):
    """Fresh models and inputs (other seeds) from the live interpreter."""
    names = ["conv_same_relu", "dense_pc", "cnn_residual", "cnn_dws", "mul", "mean", "quantize"]
    subprocess.run([_venv_python(), os.path.join(ROOT, "scripts", "make_tflite_fixtures.py"),
                    "--out", str(tmp_path), "--seed", "5000", "--only", *names], check=True,
                   capture_output=True)
    for name in names + ["conv_same_relu_tie", "dense_pc_tie", "mul_tie", "mean_tie"]:
        z, fl, runs = load_case(str(tmp_path), name)
        _, q = integers(str(tmp_path), name, "tflite", fl)
        beyond = beyond_int32(z, fl, str(tmp_path), name)
        keep = np.ones(q.size, bool) if beyond is None else ~beyond.reshape(-1)
        assert int((q.reshape(-1) != runs["ref"].reshape(-1))[keep].sum()) == 0, name
        _, q = integers(str(tmp_path), name, "tflite_xnnpack", fl)
        assert int((q != runs["xnn"]).sum()) == 0, name
        _, q = integers(str(tmp_path), name, "tflite_optimized", fl)
        assert int((q.reshape(-1) != runs["opt"].reshape(-1))[keep].sum()) == 0, name


# ---- 16x8 (int16 activations, int8 weights, int64 bias) and INT4 weights --------------------------
CASES16 = [c for c in CASES if "16_" in c]
CASES4 = [c for c in CASES if c[:-len(c.split("4_", 1)[-1])].endswith("4_")]


def test_16x8_and_int4_fixtures():
    """>= 10^5 outputs an op (a case and its tie case for 16x8), int16 tensors with zero point 0
    and int64 biases; INT4 weights (TensorType 17) unpacked to [-8, 7], using the whole range."""
    per_op = {}
    for name in CASES16 + CASES4:
        m = read_model(os.path.join(FIX, name + ".tflite"))
        z = np.load(os.path.join(FIX, name + ".npz"))
        op = m.operators[0]
        per_op[(op.name, name in CASES16)] = per_op.get((op.name, name in CASES16), 0) + \
            z["ref"].size
        w, b = m.tensors[op.inputs[1]], m.tensors[op.inputs[2]]
        if name in CASES16:
            assert m.tensors[op.inputs[0]].dtype == np.int16 and z["ref"].dtype == np.int16
            assert int(m.tensors[op.inputs[0]].zero_point[0]) == 0
            assert b.data.dtype == np.int64 and w.data.dtype == np.int8
        else:
            assert w.type == 17 and w.data.dtype == np.int8
            assert w.data.min() == -8 and w.data.max() == 7
    assert len(per_op) == 6 and min(per_op.values()) >= 100_000, per_op


@pytest.mark.parametrize("name", CASES16)
def test_16x8_arithmetic_is_the_kernels(name):
    """Each 16x8 op's rounding, told apart on the fixtures: conv / depthwise follow the int64
    MultiplyByQuantizedMultiplier (a 16-bit multiplier, ties toward +inf), fully connected the
    double ``round()``; the other one differs (on the tie cases by hundreds of elements), and so
    does CMSIS-NN's fully connected (fixed point) from LiteRT's."""
    import qkernels as qk
    m = read_model(os.path.join(FIX, name + ".tflite"))
    z, fl, runs = load_case(FIX, name)
    op = m.operators[0]
    xt, wt, bt, ot = (m.tensors[i] for i in (op.inputs[0], op.inputs[1], op.inputs[2],
                                             op.outputs[0]))
    rng = np.random.default_rng(int(z["seed"]))
    x = rng.integers(-32768, 32768, (int(z["batch"]),) + xt.shape[1:]).astype(np.int16)
    kw = dict(x_scale=xt.scale[0], w_scale=wt.scale, out_scale=ot.scale[0])
    lo = 0 if op.options.get("activation") == "RELU" else None
    if op.name == "FULLY_CONNECTED":
        def run(**k):
            return qk.qlinear(x, wt.data, bt.data, act_min=lo, **kw, **k)
        mine, other = "fp64", "reduced"
    else:
        dw = op.name == "DEPTHWISE_CONV_2D"
        w = wt.data[0].transpose(2, 0, 1)[:, None] if dw else wt.data.transpose(0, 3, 1, 2)
        from qkernels.tflite_ops import same_padding
        pt, pb, _ = same_padding(xt.shape[1], 3, op.options["stride_h"], 1)
        pl, pr, _ = same_padding(xt.shape[2], 3, op.options["stride_w"], 1)

        def run(**k):
            y = qk.qconv2d(x.transpose(0, 3, 1, 2), np.ascontiguousarray(w), bt.data,
                           stride=(op.options["stride_h"], op.options["stride_w"]),
                           padding=(pt, pl, pb, pr), groups=xt.shape[3] if dw else 1,
                           act_min=lo, **kw, **k)
            return y.transpose(0, 2, 3, 1)
        mine, other = "reduced", "fp64"
    ref = runs["ref"].reshape(-1)
    assert int((run().reshape(-1) != ref).sum()) == 0
    assert int((run(scheme=mine).reshape(-1) != ref).sum()) == 0
    least = 200 if name.endswith("_tie") else 1
    if not (lo == 0 and name.endswith("_tie")):   # ReLU clamps the negative ties to 0, where
        # the two roundings part; the exact power-of-two multiplier leaves no other difference
        assert int((run(scheme=other).reshape(-1) != ref).sum()) >= least
    if op.name == "FULLY_CONNECTED":
        assert int((run(preset="cmsis_nn").reshape(-1) != ref).sum()) >= least


def test_16x8_bad_models():
    """A nonzero int16 zero point (the interpreter refuses it) and an int32 bias (16x8 with an
    int32 bias runs other TFLite kernels) are refused, naming the tensor."""
    from qkernels import presets as P
    from qkernels.torch.tflite import _Builder
    m = read_model(os.path.join(FIX, "conv16_same_relu.tflite"))
    m.tensors[m.operators[0].inputs[0]].zero_point[:] = 5
    with pytest.raises(ValueError, match="zero point 5; TFLite's 16x8 kernels require 0"):
        _Builder(m, P.get("tflite")).build()
    m = read_model(os.path.join(FIX, "dense16_pc.tflite"))
    b = m.tensors[m.operators[0].inputs[2]]
    b.data = b.data.astype(np.int32)
    with pytest.raises(NotImplementedError, match="int32; int64 expected"):
        _Builder(m, P.get("tflite")).build()


def test_int4_unpacking():
    """INT4 constants: two a byte, low nibble first, sign-extended; an odd count uses the low
    nibble of the last byte; too few bytes is an error naming the tensor."""
    from qkernels.io.tflite import unpack_int4
    raw = np.array([0x10, 0xF8, 0x7E, 0x05], np.uint8)
    assert unpack_int4(raw, (7,)).tolist() == [0, 1, -8, -1, -2, 7, 5]
    assert unpack_int4(raw, (2, 4)).tolist() == [[0, 1, -8, -1], [-2, 7, 5, 0]]
    with pytest.raises(ValueError, match="'w4'.*fewer"):
        unpack_int4(raw, (9,), "w4")


@pytest.mark.parametrize("name", ["conv16_same_relu", "dense16_pc"])
def test_16x8_export_and_load(tmp_path, name):
    """A 16x8 model exports (kind conv2d_s16 / linear_s16, its scheme by name, int64 bias,
    M0 / shift or the fp64 scale) and loads back to the same integers (== the interpreter)."""
    z, fl, runs = load_case(FIX, name)
    im = from_tflite(os.path.join(FIX, name + ".tflite"))
    x = fl[0][:4]
    im.export(str(tmp_path / "m"), x)
    L = next(L for L in im.layers.values() if L.op.endswith("_s16"))
    params = (tmp_path / "m" / "layers" / L.name / "params.txt").read_text()
    assert f"kind {L.op}" in params
    assert ("scheme reduced" if L.op == "conv2d_s16" else "scheme fp64") in params
    im2 = IntegerModel.load(str(tmp_path / "m"))
    assert np.array_equal(im2.intermediates(*fl)[im2.output].q, runs["ref"])
    # csrc/examples/model_golden.c runs the layer from model.c with qk_conv2d_s16s8 /
    # qk_linear_s16s8 and reproduces the goldens
    lib = os.path.join(ROOT, "build", "libqkernels.a")
    if not os.path.exists(lib):
        subprocess.run(["make", "-C", ROOT, "lib"], check=True, capture_output=True)
    exe = tmp_path / "model_golden"
    subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-I",
                    os.path.join(ROOT, "csrc", "include"), "-I", str(tmp_path / "m"),
                    os.path.join(ROOT, "csrc", "examples", "model_golden.c"),
                    str(tmp_path / "m" / "model.c"), lib, "-lm", "-pthread", "-o", str(exe)],
                   check=True)
    r = subprocess.run([str(exe)], capture_output=True, text=True)
    assert r.returncode == 0 and "1 conv / linear layers" in r.stdout, r.stdout + r.stderr
    assert " 0 differ from the golden outputs" in r.stdout


@pytest.mark.skipif(_venv_python() is None,
                    reason="no TensorFlow / LiteRT venv (QKERNELS_TFLITE_VENV or "
                           "/work/venvs/tflite): the committed fixtures are compared instead")
def test_live_interpreter_16x8_and_int4(tmp_path):
    """Fresh 16x8 and INT4-weight models and inputs (other seeds) from the live interpreter,
    every preset against its runtime."""
    names = ["conv16_same_relu", "dw16_m2_s2_same", "dense16_pc", "dw4_m1_same", "dense4_pc"]
    subprocess.run([_venv_python(), os.path.join(ROOT, "scripts", "make_tflite_fixtures.py"),
                    "--out", str(tmp_path), "--seed", "7000", "--only", *names], check=True,
                   capture_output=True)
    for name in names + ["dense16_pc_tie", "dw16_m2_s2_same_tie"]:
        z, fl, runs = load_case(str(tmp_path), name)
        for preset, run in (("tflite", "ref"), ("tflite_xnnpack", "xnn"),
                            ("tflite_optimized", "opt")):
            _, q = integers(str(tmp_path), name, preset, fl)
            assert int((q != runs[run]).sum()) == 0, (name, preset)
