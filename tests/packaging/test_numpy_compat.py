"""`pip install .` (a real wheel, not the editable tree) runs under the oldest NumPy we support
(1.24, `pyproject.toml`), built against NumPy 2.x headers, with the same bits.

`pip wheel .` builds the package in pip's isolated build environment (numpy>=2.0 from the package
index, as `pyproject.toml` asks); a throw-away venv gets numpy==1.24.4 from the index (the one
`make test` installs from) and that wheel. There, outside the source tree, SCRIPT runs the ufuncs
(broadcasting, `out=`, strided views, per-channel), the gufunc and the integer kernels; its results
must equal the same script run here (the in-place build, this process's NumPy), byte for byte.
About 30 s. Not in the sanitizer run: it builds and tests a normal (unsanitized) wheel.
"""
import os
import subprocess
import sys
import venv

import numpy as np
import pytest

import qkernels as qk

pytestmark = pytest.mark.packaging  # not in the sanitizer run (tests/conftest.py)

OLDEST = "1.24.4"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(qk.__file__)))

SCRIPT = r"""
import sys
import numpy as np
import qkernels as qk
rng = np.random.default_rng(5)
out = {"numpy": np.array(np.__version__), "origin": np.array(qk.__file__)}
x = (rng.standard_normal((37, 65)) * 4).astype(np.float32)
x[::3, ::5] = np.round(x[::3, ::5] * 8) / 8 + 1 / 16  # ties in units of the scale
for flavor in ("torch", "onnx", "tflite"):
    out["q_" + flavor] = qk.quantize(x, 0.125, 3, dtype=np.int8, flavor=flavor)
out["q_u8_axis"] = qk.quantize(x, np.linspace(0.01, 0.2, 65).astype(np.float32),
                               np.arange(65) % 200, dtype=np.uint8, axis=1)
buf = np.zeros((37, 130), np.uint8)
qk.quantize(x, 0.05, 128, dtype=np.uint8, out=buf[:, ::2])
out["q_strided_out"] = buf
out["q_16bit"] = qk.quantize(x.astype(np.float64), 1e-3, 0, dtype=np.int16, qmin=-2000, qmax=2000)
out["dq"] = qk.dequantize(out["q_u8_axis"], np.linspace(0.01, 0.2, 65).astype(np.float32),
                          np.arange(65) % 200, axis=1)
out["fq"] = qk.fake_quantize(x, 0.1, 2, -8, 7)
m0, sh = qk.quantize_multiplier(np.array([1e-4, 0.3, 0.75, 1.9], np.float64))
out["m0"], out["sh"] = m0, sh
acc = rng.integers(-(1 << 20), 1 << 20, (9, 33)).astype(np.int32)
out["rq"] = qk.requantize(acc, 1583594044, -9, 5)
out["rq1"] = qk.requantize(acc, 1583594044, -9, 5, scheme="single_round")
out["rqf"] = qk.requantize_float(acc, 0.00037, -3)
out["rqs"] = qk.requantize_shift(acc, 12, 0, rounding="half_even")
s, z = qk.choose_qparams(np.array([-1.0, -0.5]), np.array([2.0, 0.25]), dtype=np.uint8)
out["cq_s"], out["cq_z"] = s, z
xa = rng.integers(0, 256, (7, 50)).astype(np.uint8)
w = rng.integers(-127, 128, (11, 50)).astype(np.int8)
out["lin32"] = qk.linear_int32(xa, w, x_zero_point=131, w_zero_point=0)
out["lin32_gufunc"] = qk.ufuncs.linear_int32(xa, w, np.int32(131), np.zeros(11, np.int32))
out["qlinear"] = qk.qlinear(xa, w, np.linspace(-1, 1, 11).astype(np.float32), x_scale=0.02,
                            x_zero_point=131, w_scale=0.01, w_zero_point=0, out_scale=0.05,
                            out_zero_point=120, preset="fbgemm")
xc = rng.integers(0, 256, (2, 4, 9, 11)).astype(np.uint8)
wc = rng.integers(-127, 128, (6, 2, 3, 3)).astype(np.int8)
out["qconv"] = qk.qconv2d(xc, wc, None, stride=2, padding=1, groups=2, x_scale=0.02,
                          x_zero_point=128, w_scale=0.01, w_zero_point=0, out_scale=0.1,
                          out_zero_point=128, preset="fbgemm")
try:
    qk.quantize(np.array([1.0, np.nan], np.float32), 0.1)
except ValueError as e:
    out["nan_error"] = np.array(str(e))
np.savez(sys.argv[1], **out)
"""


def _run(python, path, pythonpath):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    subprocess.run([python, "-P", "-c", SCRIPT, str(path)], check=True, env=env, cwd=str(path.parent))
    return np.load(path)


def _pip(python, *args):
    return subprocess.run([python, "-m", "pip", "-q", "--disable-pip-version-check", *args],
                          capture_output=True, text=True)


def test_wheel_under_oldest_supported_numpy_gives_the_same_bits(tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = str(env_dir / "bin" / "python")
    # the package index is there wherever `make test` runs (it installs from it): no skip
    pip = _pip(python, "install", f"numpy=={OLDEST}")
    assert pip.returncode == 0, f"pip could not install numpy=={OLDEST}: {pip.stderr[-2000:]}"
    wheels = tmp_path / "wheels"
    built = _pip(sys.executable, "wheel", "--no-deps", "-w", str(wheels), ROOT)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = wheels.glob("qkernels-*.whl")
    installed = _pip(python, "install", "--no-deps", str(wheel))
    assert installed.returncode == 0, installed.stderr[-3000:]
    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    old = _run(python, run_dir / "old.npz", None)
    new = _run(sys.executable, tmp_path / "new.npz", ROOT)
    assert str(old["numpy"]) == OLDEST and str(new["numpy"]) == np.__version__
    assert str(old["origin"]).startswith(str(env_dir)), str(old["origin"])  # the wheel, not the tree
    keys = [k for k in new.files if k not in ("numpy", "origin")]
    assert set(keys) == set(old.files) - {"numpy", "origin"} and len(keys) >= 20
    for k in keys:
        a, b = old[k], new[k]
        assert a.dtype == b.dtype and a.shape == b.shape, k
        if a.dtype.kind == "U":
            assert str(a) == str(b), k
        else:
            assert np.array_equal(a.view(np.uint8), b.view(np.uint8)), f"{k} differs under NumPy {OLDEST}"
    assert "index (1,)" in str(new["nan_error"])
