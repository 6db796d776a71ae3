"""The collection pipeline on the real DeiT data (no model needed: --from-npy): files round-trip
through qkernels.io, --check passes, and the C example reproduces every integer golden bit for
bit from the files alone. Runs without torch (and so under the sanitizers)."""
import os
import subprocess

import numpy as np
import pytest

import qkernels as qk
from qkernels import collect
from qkernels import io as qio
from ptf_data import REPO, deit_dir, load_deit


def _clean_env():
    # the sanitizer run preloads libasan into Python; compilers and the example don't need it
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    return env


@pytest.fixture(scope="module")
def deit_out(tmp_path_factory):
    load_deit()  # skips with a clear message when the data folder is absent
    out = tmp_path_factory.mktemp("quantized")
    res = collect.run(from_npy=str(deit_dir()), out_dir=out, progress=False)
    return out, res[0]


def test_files_round_trip(deit_out):
    out, res = deit_out
    data = qio.read_quantized_dir(out)
    x, gamma, beta = load_deit()
    assert data.num_vectors == 197 and data.hidden_dim == 384
    np.testing.assert_array_equal(data.vectors, res.data.vectors)
    np.testing.assert_array_equal(data.raw, res.data.raw)
    np.testing.assert_array_equal(data.raw, x)  # the DeiT data already holds 8 decimals
    np.testing.assert_array_equal(data.gamma, gamma)
    np.testing.assert_array_equal(data.alpha_seed, res.data.alpha_seed)
    assert data.ptf_params() == res.params
    for tag in ("exact", "sole", "sole_truncate"):
        np.testing.assert_array_equal(data.golden_int[tag], res.data.golden_int[tag])
    npz = np.load(out / "quantized.npz")
    np.testing.assert_array_equal(npz["q"], data.vectors)
    np.testing.assert_array_equal(npz["golden_int_exact"], data.golden_int["exact"])
    assert "qk_ln_exact_shift" in (out / "layernorm_params.h").read_text()
    for tag, ln in res.prepared.items():
        ints = qio.read_layernorm_int(out / f"layernorm_int_{tag}.txt")
        assert ints["shift"] == ln.shift and ints["gamma_multiplier"] == ln.gamma_multiplier
        np.testing.assert_array_equal(ints["gamma"], ln.gamma_int)
        np.testing.assert_array_equal(ints["beta"], ln.beta_int)
        np.testing.assert_array_equal(ints["lut"], ln.lut)
    rep = res.report
    assert rep["input_sqnr_db"]["seed"] >= 41.0 and rep["input_sqnr_db"]["fqvit"] >= 37.0
    assert sum(rep["alpha_histogram"].values()) == 384
    s = collect.format_summary(rep)
    assert "alpha histogram" in s and "sole_truncate" in s and "bit utilisation" in s


def test_check_mode(deit_out, capsys):
    out, _ = deit_out
    assert collect.main(["--check", "--out", str(out)]) == 0
    assert "bit for bit" in capsys.readouterr().out


def test_check_mode_finds_a_changed_golden(deit_out, tmp_path, capsys):
    out, res = deit_out
    qio.write_quantized_dir(tmp_path, res.data)
    p = tmp_path / "golden_int_sole_vec005.txt"
    lines = p.read_text().splitlines()
    lines[10] = str(int(lines[10]) + 1)
    p.write_text("\n".join(lines) + "\n")
    assert collect.main(["--check", "--out", str(tmp_path)]) == 2
    assert "golden_int_sole_vec005.txt:11: channel 8" in capsys.readouterr().err


def test_c_example_reproduces_goldens(deit_out):
    out, _ = deit_out
    subprocess.run(["make", "-s", "-C", str(REPO), "build/layernorm_golden"], check=True,
                   capture_output=True, timeout=300, env=_clean_env())
    r = subprocess.run([str(REPO / "build" / "layernorm_golden"), str(out)], capture_output=True,
                       text=True, timeout=120, env=_clean_env())
    print(r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("integer golden: bit-exact (0 of 75648 differ)") == 3
    assert r.stdout.count("prepared integers") == 3 and "DIFFERENT" not in r.stdout
    assert "qk_ptf_quantize_f32_u8(raw_vec) vs vector files: bit-exact (0 of 75648 differ)" \
        in r.stdout
    assert "SQNR 28.1" in r.stdout  # exact vs float golden, read from the files


def test_cli_subsample_is_deterministic(tmp_path, capsys):
    load_deit()
    args = ["--from-npy", str(deit_dir()), "--max-vectors", "20", "--seed", "5", "--quiet"]
    assert collect.main(args + ["--out", str(tmp_path / "a")]) == 0
    assert collect.main(args + ["--out", str(tmp_path / "b")]) == 0
    text = capsys.readouterr().out
    assert "input SQNR" in text and "| exact " in text
    a = qio.read_quantized_dir(tmp_path / "a")
    b = qio.read_quantized_dir(tmp_path / "b")
    assert a.num_vectors == 20
    np.testing.assert_array_equal(a.raw, b.raw)


def test_pipeline_errors(tmp_path, capsys):
    assert collect.main(["--from-npy", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    assert "ln_input.npy: file not found" in capsys.readouterr().err
    assert collect.main(["--check", "--out", str(tmp_path / "nothing")]) == 2
    assert "not a folder" in capsys.readouterr().err
    with pytest.raises(collect.CollectError, match=r"no LayerNorm named 'ln9'; the model has 2: "
                                                   r"\[0\] a.ln, \[1\] b.ln"):
        collect.select_layernorms(["a.ln", "b.ln"], "ln9")
    with pytest.raises(collect.CollectError, match="index 5 is out of range"):
        collect.select_layernorms(["a.ln", "b.ln"], 5)
    assert collect.select_layernorms(["a.ln", "b.ln"], "all") == ["a.ln", "b.ln"]
    assert collect.select_layernorms(["a.ln", "b.ln"], "-1") == ["b.ln"]
