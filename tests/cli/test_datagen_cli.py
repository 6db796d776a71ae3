"""``python -m qkernels datagen``: argument errors (exit 2, before any work), the files it writes,
and ``torchrun --nproc_per_node=2``: the same images as one process."""
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the datagen command needs PyTorch")

from qkernels.torch import datagen as dg  # noqa: E402
from qkernels.torch.datagen.cli import main  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one thread (two OpenMP threads only wait on each other on a shared machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


pytestmark = pytest.mark.torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL = ["--model", "reference:resnet", "--n-images", "24", "--size", "8", "--n-iter", "4",
         "--batch-size", "8", "--normalization", "custom", "--norm-mean", "0", "--norm-std", "255",
         "--extra-pixels", "2", "--threads", "1", "--quiet"]
SMALL_CFG = dict(n_iter=4, batch_size=8, image_normalization="custom", normalization_mean=(0.0,),
                 normalization_std=(255.0,), extra_pixels=2)


@pytest.mark.parametrize("args,message", [
    (["--n-images", "0"], "--n-images must be >= 1"),
    (["--size", "8x"], "--size must be H or HxW"),
    (["--size", "0"], "--size must be H or HxW"),
    (["--normalization", "custom"], "CUSTOM needs normalization_mean"),
    (["--normalization", "custom", "--norm-mean", "a", "--norm-std", "1"], "--norm-mean must be comma-separated"),
    (["--scheduler", "cosine"], "scheduler must be one of"),
    (["--granularity", "pixel"], "image_granularity must be one of"),
    (["--reflection", "--no-clip"], "reflection"),
    (["--bn-types", "Linear2"], "--bn-types: 'Linear2' is not a torch.nn module type"),
    (["--bn-types", "nosuchmodule:X"], "--bn-types: cannot load"),
    (["--n-iter", "0"], "n_iter must be a positive int"),
    (["--lr", "nan"], "initial_lr must be a finite number"),
    (["--threads", "0"], "--threads must be >= 1"),
    (["--model", "reference:nosuch"], "no reference model 'nosuch'; the bundled ones are"),
    (["--model", "missing.pt"], "--model missing.pt: model file not found"),
    (["--model", "nosuchmodule:f"], "--model nosuchmodule:f: cannot load it"),
    (["--real", "missing.npy"], "--real: missing.npy not found"),
    (["--model", "reference:mlp"], "pass --channels"),
])
def test_bad_arguments_exit_2_with_an_error_line(args, message, tmp_path, capsys):
    argv = ["datagen", "--model", "reference:resnet", "--out", str(tmp_path / "o")] + args
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert not (tmp_path / "o").exists()  # nothing written


def test_out_must_be_a_directory(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["datagen", "--model", "reference:resnet", "--out", str(f)]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_writes_images_losses_and_pngs(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="the PNG files need matplotlib (requirements-dev.txt pins it)")
    out = tmp_path / "gen"
    assert main(["datagen"] + SMALL + ["--out", str(out), "--real", "digits"]) == 0
    assert "generated 24 images" in capsys.readouterr().out
    x = np.load(out / "images.npy")
    assert x.shape == (24, 1, 8, 8) and x.dtype == np.float32 and x.min() >= 0 and x.max() <= 1
    from qkernels.torch.reference_models import load

    want = dg.generate_images(load("resnet"), 24, 8, dg.DataGenConfig(**SMALL_CFG), seed=0, threads=1)
    assert np.array_equal(x, want.numpy())
    rows = (out / "bn_loss.csv").read_text().splitlines()
    assert rows[0].startswith("iteration,image_input,stem.1,") and len(rows) == 1 + 5
    for png in ("grid.png", "bn_loss.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_via_python_m_qkernels(tmp_path):
    """The subcommand is wired into ``python -m qkernels``."""
    r = subprocess.run([sys.executable, "-m", "qkernels", "datagen", "--model", "reference:resnet",
                        "--n-images", "-3", "--out", str(tmp_path)], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 2 and "error: --n-images must be >= 1" in r.stderr


def test_torchrun_two_processes_equal_one(tmp_path):
    """torchrun --nproc_per_node=2 splits the batches over two processes (gloo) and gathers them:
    images and loss history identical (==) to a single-process run with the same seed."""
    out = tmp_path / "dist"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "qkernels", "datagen"] + SMALL + ["--granularity", "AllImages", "--no-plots",
                                                 "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=240, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "(2 processes)" in r.stdout
    from qkernels.torch.reference_models import load

    res = dg.generate(load("resnet"), 24, 8, dg.DataGenConfig(**SMALL_CFG), seed=0, threads=1)
    assert np.array_equal(np.load(out / "images.npy"), res.images.numpy())
    from qkernels.torch.datagen.report import history_csv

    assert (out / "bn_loss.csv").read_text() == history_csv(res)
