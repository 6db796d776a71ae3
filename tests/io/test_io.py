"""qkernels.io: the data/quantized/ formats (SPEC section 8) against a hand-written fixture, line
for line; round trips; atomic writes; clear format errors."""
import os
from pathlib import Path

import numpy as np
import pytest

from qkernels import io as qio

FIXTURE = Path(__file__).parents[1] / "fixtures" / "quantized_small"


def _fixture_data():
    return qio.QuantizedData(
        S=0.05, zero_point=128, alpha_seed=np.array([0, -1, -2, 0], np.int32),
        vectors=np.array([[128, 130, 120, 255], [0, 128, 129, 200]], np.uint8),
        raw=np.array([[0.0, 0.0625, -0.125, 6.375], [-6.5, 0.0, 0.015625, 3.625]], np.float32),
        gamma=np.array([1.0, 0.5, -0.25, 2.0], np.float32),
        beta=np.array([0.0, 0.1, -0.1, 0.5], np.float32),
        gamma_q=(np.array([64, 32, -16, 127], np.int8), 2 / 127, 0),
        beta_q=(np.array([0, 25, -25, 127], np.int8), 0.5 / 127, 0),
        golden_ref=[qio.GoldenRef(0.05, 128, 1.575, 7.623125, 1.575, 7.623125,
                                  np.array([0.123456, -1.0, 0.0, 2.5])),
                    qio.GoldenRef(0.05, 128, -0.696875, 13.29, -0.696875, 13.29,
                                  np.array([-1.5, 0.25, 1 / 3, 1.75]))],
        golden_int={"exact": np.array([[-5, 10, 0, 127], [-128, 3, 7, 35]], np.int8)},
        config={"eps": 1e-12, "out_scale": 0.05, "out_zero_point": 0, "K": 3,
                "sole_rounding": "round", "methods": ["exact"]})


def _files(d: Path):
    return sorted(str(p.relative_to(d)) for p in d.rglob("*.txt"))


def test_writer_matches_hand_written_fixture(tmp_path):
    qio.write_quantized_dir(tmp_path, _fixture_data())
    assert _files(tmp_path) == _files(FIXTURE)
    for name in _files(FIXTURE):
        want = (FIXTURE / name).read_text().splitlines()
        got = (tmp_path / name).read_text().splitlines()
        assert got == want, name
    assert not list(tmp_path.rglob("*.tmp"))


def test_reader_reads_fixture():
    d = qio.read_quantized_dir(FIXTURE)
    ref = _fixture_data()
    assert (d.hidden_dim, d.num_vectors, d.zero_point) == (4, 2, 128)
    assert d.S == np.float32(0.05)
    np.testing.assert_array_equal(d.alpha_seed, ref.alpha_seed)
    np.testing.assert_array_equal(d.vectors, ref.vectors)
    np.testing.assert_array_equal(d.raw, ref.raw)
    np.testing.assert_array_equal(d.gamma, ref.gamma)
    np.testing.assert_array_equal(d.beta, ref.beta)
    np.testing.assert_array_equal(d.gamma_q[0], ref.gamma_q[0])
    assert abs(d.gamma_q[1] - 2 / 127) < 1e-10 and d.beta_q[2] == 0
    np.testing.assert_array_equal(d.golden_int["exact"], ref.golden_int["exact"])
    assert d.golden_ref[1].orig_mean == -0.696875
    np.testing.assert_allclose(d.golden_ref[1].output, [-1.5, 0.25, 0.333333, 1.75])
    assert d.config["methods"] == ["exact"] and d.config["out_scale"] == np.float32(0.05)
    p = d.ptf_params()
    assert p.alpha.tolist() == [2, 1, 0, 2] and p.scale == np.float32(0.05) / 4


def test_rewrite_removes_stale_vectors(tmp_path):
    data = _fixture_data()
    qio.write_quantized_dir(tmp_path, data)
    (tmp_path / "vector_007.txt").write_text("old\n")
    (tmp_path / "raw_input_vectors" / "raw_vec_009.txt").write_text("old\n")
    (tmp_path / "notes.txt").write_text("mine\n")
    qio.write_quantized_dir(tmp_path, data)
    assert not (tmp_path / "vector_007.txt").exists()
    assert not (tmp_path / "raw_input_vectors" / "raw_vec_009.txt").exists()
    assert (tmp_path / "notes.txt").exists()  # not ours: left alone


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "global_params.txt"
    qio.atomic_write_text(p, "old\n")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        qio.atomic_write_text(p, "new\n")
    monkeypatch.undo()
    assert p.read_text() == "old\n"
    assert [q.name for q in tmp_path.iterdir()] == ["global_params.txt"]


def test_format_errors_name_file_and_line(tmp_path):
    p = tmp_path / "vector_000.txt"
    p.write_text("# v\n3\n1\n256\n3\n")
    with pytest.raises(qio.FormatError, match=r"vector_000.txt:4: 256 is outside \[0, 255\]"):
        qio.read_vector(p)
    p.write_text("# v\n3\n1\n2\n")
    with pytest.raises(qio.FormatError, match="vector_000.txt:5: unexpected end of file"):
        qio.read_vector(p)
    p.write_text("3\n1\n2\n3\n")
    with pytest.raises(qio.FormatError, match="expected a '#' comment line"):
        qio.read_vector(p)
    a = tmp_path / "alpha_factors.txt"
    a.write_text("# a\n2\n0\n1\n")
    with pytest.raises(qio.FormatError, match=r"1 is outside \[-7, 0\]"):
        qio.read_alpha_factors(a)
    with pytest.raises(qio.FormatError, match="file not found"):
        qio.read_quantized_dir(tmp_path)


def test_npz_and_header(tmp_path):
    qio.atomic_savez(tmp_path / "a.npz", x=np.arange(3))
    assert np.load(tmp_path / "a.npz")["x"].tolist() == [0, 1, 2]
