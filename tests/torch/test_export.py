"""IntegerModel.export: files read back to the same integers, the JSON report of SPEC section 8,
and a C program (no Python) that runs each exported conv layer and reproduces its golden output."""
import json
import os
import subprocess

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")
pytest.importorskip("sklearn", reason="scikit-learn (the digits data) is a test requirement")

from qkernels import io as qio  # noqa: E402
from qkernels.torch import QuantConfig, TensorConfig, quantize_model  # noqa: E402
from qkernels.torch.reference_models import digits, load  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.filterwarnings("ignore::UserWarning")]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CONFIGS = {
    "fbgemm": QuantConfig(),
    "pow2": QuantConfig.w8a8_pow2(),
    "tflite": QuantConfig(weight=TensorConfig(bits=8, symmetric=True, per_channel=True, signed=True),
                          activation=TensorConfig(bits=8, signed=True), preset="tflite"),
}


@pytest.fixture(scope="module")
def golden_exe():
    subprocess.run(["make", "-s", "build/conv_layer_golden", "lib"], cwd=ROOT, check=True)
    return os.path.join(ROOT, "build", "conv_layer_golden")


@pytest.mark.parametrize("preset", list(CONFIGS))
def test_export_round_trip_and_c_program(tmp_path, golden_exe, preset):
    torch.set_num_threads(1)
    (xtr, _), (xte, yte) = digits()
    im = quantize_model(load("resnet"), [xtr[:256]], config=CONFIGS[preset])
    out = tmp_path / preset
    paths = im.export(str(out), xte[:2].numpy(), labels=None)
    assert all(os.path.exists(p) for p in paths)
    npz = np.load(out / "model.npz")
    for name, L in im.compute_layers().items():
        d = out / "layers" / name
        np.testing.assert_array_equal(qio.read_array(d / "weights.txt"), L.w_int)
        np.testing.assert_array_equal(qio.read_array(d / "weights.txt"), npz[f"{name}/weights"])
        np.testing.assert_array_equal(qio.read_array(d / "output.txt"), npz[f"{name}/output"])
        a2 = L.w_int.reshape(len(L.w_int), -1).sum(axis=1)
        np.testing.assert_array_equal(qio.read_array(d / "a2.txt"), a2)
        if L.op == "conv2d":
            r = subprocess.run([golden_exe, str(d)], capture_output=True, text=True)
            assert r.returncode == 0 and " 0 differ" in r.stdout, r.stdout + r.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["preset"] == preset and set(report["layers"]) == set(im.layers)
    t = report["tensors"]["x"]
    assert {"scale", "zero_point", "bitwidth", "symmetric"} <= set(t)
    if preset == "pow2":
        assert t["power_of_2"].startswith("2^(") and t["hardware_op"].startswith("x >> ")
    lay = report["layers"]["stem_0"]
    assert {"M0", "shift", "a2", "accumulator_bound", "w_scale"} <= set(lay)
    header = (out / "model.h").read_text()
    assert "extern const int8_t qk_stem_0_weights[" in header        # declared once ...
    assert "const int8_t qk_stem_0_weights[" in (out / "model.c").read_text()   # ... defined once
    assert "#define QK_STEM_0_X_ZERO_POINT" in header and "QK_STEM_0_SCHEME QK_REQ_" in header
    # a C bench compiled with model.c runs every conv / linear layer and reproduces the goldens
    exe = tmp_path / "model_golden"
    subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-I", os.path.join(ROOT, "csrc", "include"),
                    "-I", str(out), os.path.join(ROOT, "csrc", "examples", "model_golden.c"),
                    str(out / "model.c"), os.path.join(ROOT, "build", "libqkernels.a"), "-lm",
                    "-pthread", "-o", str(exe)], check=True)
    r = subprocess.run([str(exe)], capture_output=True, text=True)
    assert r.returncode == 0 and " 0 differ from the golden outputs" in r.stdout, r.stdout + r.stderr
    assert f"{len(im.compute_layers())} conv / linear layers" in r.stdout


def test_export_with_accuracy(tmp_path):
    (xtr, _), (xte, yte) = digits()
    im = quantize_model(load("mlp"), [xtr[:256]])
    im.export(str(tmp_path), xte.numpy(), labels=yte.numpy())
    acc = json.loads((tmp_path / "report.json").read_text())["accuracy"]
    assert set(acc) == {"float", "fake_quant", "integer", "samples"} and acc["integer"] > 0.9
    assert acc["samples"] == len(yte)
