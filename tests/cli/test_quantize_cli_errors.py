"""python -m qkernels quantize: every mistake a user makes is one `error:` line naming the argument
or the file, exit code 2, before any long work; Ctrl-C exits 130 with one line and leaves no
output folder."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")
pytest.importorskip("sklearn", reason="scikit-learn (the digits data) is a test requirement")
pytest.importorskip("yaml", reason="PyYAML is a test requirement (requirements-dev.txt)")

from qkernels.cli import main  # noqa: E402

pytestmark = pytest.mark.torch
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _yaml(tmp_path, text):
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return str(p)


CASES = [
    # (argv after "quantize", files to write {name: content}, what the error line must say)
    (["--model", "reference:resnet50"], {}, "no reference model 'resnet50'; the bundled ones are "
                                            "reference:darknet"),
    (["--model", "reference:mlp", "--preset", "bogus"], {}, "argument --preset: invalid choice"),
    (["--model", "reference:mlp", "--config", "{cfg}"], {"cfg": "preset: tflight\n"},
     "cfg.yaml: preset must be one of 'fbgemm'"),
    (["--model", "reference:mlp", "--config", "{cfg}"], {"cfg": "weight: {bitz: 4}\n"},
     "cfg.yaml: weight: unknown key(s) bitz (known: bits"),
    (["--model", "reference:mlp", "--config", "{cfg}"], {"cfg": "weight:\n  bits: '8'\n"},
     "cfg.yaml: weight.bits must be an int in 2..32; got '8'"),
    (["--model", "reference:mlp", "--config", "{cfg}"], {"cfg": "weight: [1, 2\n"},
     "cfg.yaml:2:1: not valid YAML: expected "),
    (["--model", "reference:mlp", "--config", "{cfg}"], {"cfg": "mode: fast\n"},
     "cfg.yaml: mode must be 'static', 'dynamic' or 'weight_only'"),
    (["--model", "reference:mlp", "--batch", "0"], {}, "--batch must be >= 1, got 0"),
    (["--model", "reference:mlp", "--out", "{file}"], {"file": "x"}, "exists and is not a folder"),
    (["--model", "reference:mlp", "--calib", "{npy}"], {"npy": "wrong-channels"},
     "the model cannot take batches of shape (64, 3, 8, 8)"),
    (["--model", "reference:mlp", "--calib", "/no/such/dir"], {}, "no calibration data at /no/such/dir"),
    (["--model", "missing.pt"], {}, "--model missing.pt: model file not found"),
    (["--model", "nonexistent_module:factory"], {}, "--model nonexistent_module:factory: cannot load"),
    (["--model", "reference:mlp", "--float", "nosuch"], {}, "float_modules: nosuch match no layer"),
    ([], {}, "the following arguments are required: --model"),
]


@pytest.mark.parametrize("argv,files,message", CASES)
def test_each_mistake_is_one_error_line(tmp_path, capsys, argv, files, message):
    subs = {}
    for key, content in files.items():
        if key == "cfg":
            subs["{cfg}"] = _yaml(tmp_path, content)
        elif key == "npy":
            p = tmp_path / "calib.npy"
            np.save(p, np.zeros((100, 3, 8, 8), np.float32))
            subs["{npy}"] = str(p)
        else:
            p = tmp_path / "a_file"
            p.write_text(content)
            subs["{file}"] = str(p)
    argv = [subs.get(a, a) for a in argv]
    t0 = time.time()
    assert main(["quantize", *argv]) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert "Traceback" not in err
    assert time.time() - t0 < 30          # refused before any long work


def test_help_version_and_no_command(capsys):
    assert main(["--version"]) == 0 and "qkernels 0.1.0" in capsys.readouterr().out
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "quantize" in out and "collect" in out and "datagen" in out and "examples:" in out
    assert main(["quantize", "--help"]) == 0
    out = capsys.readouterr().out
    for opt in ("--model", "--calib", "--batch", "--preset", "--float", "--out"):
        assert opt in out
    assert "{fbgemm,qnnpack,onnxruntime,tflite,tflite_xnnpack,tflite_optimized,cmsis_nn,pow2}" in out
    assert main([]) == 2


def test_ctrl_c_exits_130_and_leaves_no_output(tmp_path):
    """SIGINT during a long calibration: one line on stderr, exit code 130, no --out folder."""
    big = tmp_path / "calib.npy"
    np.save(big, np.random.default_rng(0).random((200_000, 1, 8, 8), np.float32))
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = tmp_path / "out"
    p = subprocess.Popen([sys.executable, "-m", "qkernels", "quantize", "--model",
                          "reference:resnet", "--calib", str(big), "--batch", "16", "--out",
                          str(out)], cwd=str(tmp_path), env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    time.sleep(8)                     # torch, the model and the data loaded: calibrating
    assert p.poll() is None, p.communicate()
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 130, (p.returncode, stdout[-500:], stderr[-2000:])
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("calibrating")]
    assert lines == ["interrupted"], stderr[-2000:]
    assert not out.exists()
