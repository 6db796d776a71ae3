"""What a user gets from `pip install`, outside the source tree: the sdist builds and runs (with
the setuptools a new venv ships), the wheel carries the C header, the static library, py.typed
and the reference models, and with the torch extra the README's command line and snippets run.

Fresh venvs: their dependencies (torch, NumPy, scikit-learn, PyYAML) come from this test
environment through a path file (never the source tree's qkernels: the editable install's
import hook is not on that path), so nothing is downloaded. About 2 minutes (two C builds).
"""
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile

import pytest

pytestmark = pytest.mark.packaging  # not in the sanitizer run (tests/conftest.py)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _sh(cmd, cwd, env=None, timeout=900):
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def _venv(path):
    venv.create(path, with_pip=True, clear=True)
    py = os.path.join(path, "bin", "python")
    site = _sh([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], path).strip()
    with open(os.path.join(site, "qk-test-deps.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")   # this environment's packages, no hooks
    return py


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """The sdist and the wheel, built from a clean copy of the tracked files."""
    out = tmp_path_factory.mktemp("dist")
    src = out / "src"
    files = _sh(["git", "ls-files", "-z"], ROOT).split("\0")
    for f in filter(None, files):
        if os.path.exists(os.path.join(ROOT, f)):
            os.makedirs(src / os.path.dirname(f), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, f), src / f)
    env = dict(os.environ, QKERNELS_WERROR="1")
    _sh([sys.executable, "setup.py", "-q", "sdist", "-d", str(out)], src, env)
    _sh([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
         str(out), "."], src, env)
    sdist = next(p for p in out.iterdir() if p.name.endswith(".tar.gz"))
    wheel = next(p for p in out.iterdir() if p.name.endswith(".whl"))
    return sdist, wheel


def test_wheel_carries_header_library_types_and_models(dists):
    names = zipfile.ZipFile(dists[1]).namelist()
    for want in ("qkernels/include/qkernels.h", "qkernels/lib/libqkernels.a", "qkernels/py.typed",
                 "qkernels/torch/models/resnet.pt", "qkernels/torch/models/mlp.pt"):
        assert want in names, want
    meta = zipfile.ZipFile(dists[1]).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "License: Apache-2.0" in meta and re.search(r"Provides-Extra: torch", meta)


def test_sdist_installs_and_runs_outside_the_tree(dists, tmp_path):
    """The sdist (every .c and .h of csrc/) builds with the venv's own setuptools; the package,
    the qkernels command and a C program linked with its header and library all work."""
    py = _venv(str(tmp_path / "venv"))
    _sh([py, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps", str(dists[0])],
        str(tmp_path))
    run = tmp_path / "elsewhere"
    run.mkdir()
    out = _sh([py, "-c", "import qkernels as qk, numpy as np; "
               "print(qk.__file__); print(qk.quantize(np.float32([0.5, -1.0]), 0.5, 0))"], str(run))
    assert "site-packages" in out and "[ 1 -2]" in out
    assert "qkernels 0.1.0" in _sh([os.path.join(tmp_path, "venv", "bin", "qkernels"), "--version"],
                                   str(run))
    paths = _sh([py, "-c", "import qkernels as qk; print(qk.get_include()); print(qk.get_library())"],
                str(run)).split()
    (run / "bench.c").write_text(
        '#include <stdio.h>\n#include "qkernels.h"\n'
        "int main(void) { int8_t y[2]; const int32_t acc[2] = {7984, -2}; int32_t m0, sh;\n"
        "  qk_quantize_multiplier(0.0007, &m0, &sh);\n"
        "  if (qk_requantize_s32_s8_double(acc, 2, m0, sh, 0, -128, 127, y, NULL) != QK_OK) return 1;\n"
        '  printf("%d %d\\n", y[0], y[1]); return 0; }\n')
    _sh(["cc", "-std=c11", "-I", paths[0], "bench.c", paths[1], "-lm", "-pthread", "-o", "bench"],
        str(run))
    assert _sh([str(run / "bench")], str(run)).split() == ["6", "0"]


def test_wheel_with_torch_extra_runs_the_readme_cli(dists, tmp_path):
    """pip install <wheel>[torch] (its dependencies already satisfied here): the README's
    command line quantizes a bundled reference model on the digits data and exports it."""
    py = _venv(str(tmp_path / "venv"))
    # the venv's own old setuptools would hide this environment's (torch needs >= 77)
    _sh([py, "-m", "pip", "uninstall", "-q", "-y", "setuptools"], str(tmp_path))
    _sh([py, "-m", "pip", "install", "-q", "--no-index", f"{dists[1]}[torch]"], str(tmp_path))
    run = tmp_path / "elsewhere"
    run.mkdir()
    out = _sh([py, "-m", "qkernels", "quantize", "--model", "reference:mlp", "--calib", "digits",
               "--out", "out/mlp"], str(run))
    assert "integer-exact" in out and (run / "out" / "mlp" / "report.json").exists()
    snippet = ("from qkernels.torch import quantize_model\n"
               "from qkernels.torch.reference_models import digits, load\n"
               "(x, _), (xt, yt) = digits()\n"
               "im = quantize_model(load('resnet'), [x[:256]])\n"
               "print((im(xt).argmax(1) == yt.numpy()).mean())\n")
    acc = float(_sh([py, "-c", snippet], str(run)).split()[-1])
    assert acc > 0.9
