"""Without PyTorch installed, the command line and the bridge say so in one line: no traceback."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# a Python where `import torch` fails as it does when torch is not installed
NO_TORCH = "import sys; sys.modules['torch'] = None; "


def _run(code):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", NO_TORCH + code], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)


def test_cli_without_torch_is_one_error_line():
    r = _run("from qkernels.cli import main; sys.exit(main(['quantize', '--model', 'reference:mlp']))")
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: the quantize command needs torch"), r.stderr
    r = _run("from qkernels.cli import main; sys.exit(main(['--help']))")   # help works without it
    assert r.returncode == 0 and "quantize" in r.stdout


def test_bridge_import_without_torch_names_the_extra():
    r = _run("import qkernels.torch.quantize")
    assert r.returncode == 1
    assert "ImportError: qkernels.torch needs PyTorch: pip install 'qkernels[torch]'" in r.stderr
    r = _run("import qkernels, numpy as np; print(qkernels.quantize(np.float32([1.0]), 0.5, 0))")
    assert r.returncode == 0 and r.stdout.strip() == "[2]"     # the kernels need no torch
