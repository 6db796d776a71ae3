"""python -m qkernels quantize: the command line on a reference model."""
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")
pytest.importorskip("sklearn", reason="scikit-learn (the digits data) is a test requirement")

pytestmark = pytest.mark.torch
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(*args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "qkernels", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)


def test_cli_quantize_and_export(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("weight:\n  bits: 8\npreset: fbgemm\n")
    r = _run("quantize", "--model", "reference:mlp", "--calib", "digits", "--config", str(cfg),
             "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    assert "integer-exact" in r.stdout and "fc1" in r.stdout
    assert "calibrating" in r.stderr
    assert (tmp_path / "out" / "report.json").exists()


def test_cli_bad_model_spec():
    r = _run("quantize", "--model", "nonexistent_module:factory")
    assert r.returncode != 0 and "cannot load" in r.stderr
    r = _run("quantize", "--model", "missing.pt")
    assert r.returncode != 0 and "not found" in r.stderr
    r = _run("quantize", "--model", "reference:mlp", "--calib", "/no/such/dir")
    assert r.returncode != 0 and "no calibration data" in r.stderr


def test_cli_dynamic_mode_from_yaml(tmp_path):
    cfg = tmp_path / "dyn.yaml"
    cfg.write_text("mode: dynamic\nweight:\n  per_channel: false\n")
    r = _run("quantize", "--model", "reference:mlp", "--calib", "digits", "--config", str(cfg),
             "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    assert "dynamic" in r.stdout and "integer-exact" in r.stdout
    assert (tmp_path / "out" / "layers" / "fc1" / "accumulator.txt").exists()


def test_cli_imports_tflite(tmp_path):
    """--model x.tflite imports the int8 model (no calibration) and exports it."""
    model = os.path.join(ROOT, "tests", "fixtures", "tflite", "cnn_residual.tflite")
    r = _run("quantize", "--model", model, "--preset", "tflite_xnnpack", "--out",
             str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    assert "imported" in r.stdout and "tflite_add" in r.stdout and "conv2d" in r.stdout
    assert (tmp_path / "out" / "model.c").exists()
    r = _run("quantize", "--model", model, "--preset", "fbgemm")
    assert r.returncode == 2 and r.stderr.startswith("error:") and "tflite" in r.stderr
    r = _run("quantize", "--model", str(tmp_path / "missing.tflite"))
    assert r.returncode == 2 and "not found" in r.stderr
