"""Hostile files (issue 11): ``collect_real_data --check`` on corrupted folders, ``--from-npy``
on hostile .npy files, a full disk and a read-only output folder, SIGKILL leftovers, and
``read_array``. Each gives one line ``error: <file>:<line>: <what>`` (``error: <file>: <what>``
for binary files and folders, which have no lines) and exit status 2, never a traceback and
never exit 0."""
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qkernels import collect
from qkernels.io import FormatError, clean_stale_temps, format_array, read_array

ROOT = Path(__file__).resolve().parents[2]


def run_main(argv, capsys):
    rc = collect.main(argv)
    err = capsys.readouterr().err
    return rc, err


@pytest.fixture(scope="module")
def npy_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("npy")
    rng = np.random.default_rng(11)
    np.save(d / "ln_input.npy", (rng.standard_normal((3, 24)) * 2).astype(np.float32))
    np.save(d / "gamma.npy", (1 + 0.1 * rng.standard_normal(24)).astype(np.float32))
    np.save(d / "beta.npy", (0.1 * rng.standard_normal(24)).astype(np.float32))
    return d


@pytest.fixture(scope="module")
def good_dir(npy_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("good") / "q"
    assert collect.main(["--from-npy", str(npy_dir), "--out", str(out), "--quiet"]) == 0
    assert collect.main(["--check", "--out", str(out)]) == 0
    return out


def _edit(path: Path, line: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[line - 1] = text
    path.write_text("\n".join(lines) + "\n")


# (file, 1-based line, new text, expected message part); the expected line is the edited one
CORRUPTIONS = [
    ("golden_ref_vec000.txt", 3, "Global ZP: inf", "expected an integer after 'Global ZP:'"),
    ("golden_ref_vec001.txt", 12, "abc", "expected a number, got 'abc'"),
    ("global_params.txt", 3, "0", "0 is outside [1, None]"),
    ("layernorm_int_params.txt", 5, "K 99", "99 is outside [0, 7]"),
    ("layernorm_int_params.txt", 2, "eps nan", "'nan' is not finite"),
    ("layernorm_int_params.txt", 4, "out_zero_point 500", "500 is outside [-128, 127]"),
    ("golden_ref_vec000.txt", 2, "Global S: nan", "'nan' is not finite"),
    ("golden_ref_vec002.txt", 9, "nan", "'nan' is not finite"),
    ("global_params.txt", 4, "1e39", "'1e39' overflows float32"),
    ("global_params.txt", 4, "1e-50", "'1e-50' must be > 0 (as float32)"),
    ("vector_001.txt", 5, "300", "300 is outside [0, 255]"),
    ("raw_input_vectors/raw_vec_000.txt", 3, "1e400", "'1e400' is not finite"),
    ("alpha_factors.txt", 4, "5", "5 is outside [-7, 0]"),
    ("layernorm_int_params.txt", 7, "methods exact,bogus", "unknown method 'bogus'"),
    ("layernorm_int_params.txt", 6, "sole_rounding banana", "must be 'round' or 'truncate'"),
    ("layernorm_weights.txt", 2, "inf", "'inf' is not finite"),
    ("gamma_quantized.txt", 4, "0", "'0' must be > 0"),
    ("golden_ref_vec001.txt", 2, "Global S: 0.5", "Global S 0.5 differs from global_params.txt"),
    ("layernorm_int_params.txt", 3, "out_scale 0", "'0' must be > 0"),
    ("layernorm_int_params.txt", 8, "colour blue", "unknown key 'colour'"),
]


@pytest.mark.parametrize("fname, line, text, what", CORRUPTIONS,
                         ids=[f"{c[0]}:{c[1]}:{c[2]}" for c in CORRUPTIONS])
def test_check_names_file_and_line(good_dir, tmp_path, capsys, fname, line, text, what):
    d = tmp_path / "q"
    shutil.copytree(good_dir, d)
    path = d / fname
    if line > len(path.read_text().splitlines()):
        path.write_text(path.read_text() + text + "\n")
    else:
        _edit(path, line, text)
    rc, err = run_main(["--check", "--out", str(d)], capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {path}:{line}: "), lines[0]
    assert what in lines[0], lines[0]


def test_check_integer_golden_mismatch_names_line(good_dir, tmp_path, capsys):
    d = tmp_path / "q"
    shutil.copytree(good_dir, d)
    p = d / "golden_int_sole_vec002.txt"
    v = int(p.read_text().splitlines()[9])
    _edit(p, 10, str(v + 1 if v < 127 else v - 1))
    rc, err = run_main(["--check", "--out", str(d)], capsys)
    assert rc == 2 and err.startswith(f"error: {p}:10: channel 7: file ") and err.count("\n") == 1


@pytest.mark.parametrize("how", ["truncated", "missing", "binary"])
def test_check_broken_vector_files(good_dir, tmp_path, capsys, how):
    d = tmp_path / "q"
    shutil.copytree(good_dir, d)
    p = d / "vector_002.txt"
    if how == "truncated":
        p.write_text("\n".join(p.read_text().splitlines()[:10]) + "\n")
        expect = rf"error: {re.escape(str(p))}:11: unexpected end of file"
    elif how == "missing":
        p.unlink()
        expect = rf"error: {re.escape(str(p))}: file not found"
    else:
        p.write_bytes(b"# x\n24\n\xff\xfe\n")
        expect = rf"error: {re.escape(str(p))}:3: not an ASCII text file"
    rc, err = run_main(["--check", "--out", str(d)], capsys)
    assert rc == 2 and re.match(expect, err) and err.count("\n") == 1, err


# ---- --from-npy --------------------------------------------------------------------------------
def _hostile_npy(d: Path, case: str) -> Path:
    """Make case's bad file in d; returns the file the error must name."""
    x = np.load(d / "ln_input.npy")
    if case == "short_gamma":
        np.save(d / "gamma.npy", np.ones(23, np.float32))
        return d / "gamma.npy"
    if case == "0d_input":
        np.save(d / "ln_input.npy", np.float32(1.0))
        return d / "ln_input.npy"
    if case == "object":
        np.save(d / "ln_input.npy", np.array([object()] * 3), allow_pickle=True)
        return d / "ln_input.npy"
    if case == "truncated":
        b = (d / "ln_input.npy").read_bytes()
        (d / "ln_input.npy").write_bytes(b[:len(b) // 2])
        return d / "ln_input.npy"
    if case == "text":
        (d / "beta.npy").write_text("0.1 0.2 0.3\n")
        return d / "beta.npy"
    if case == "complex":
        np.save(d / "ln_input.npy", x.astype(np.complex64) * (1 + 1j))
        return d / "ln_input.npy"
    if case == "nan":
        x[1, 5] = np.nan
        np.save(d / "ln_input.npy", x)
        return d / "ln_input.npy"
    if case == "npz":
        os.replace(d / "gamma.npy", d / "g.npz")
        np.savez(d / "gamma.npy", g=np.ones(24))
        os.replace(d / "gamma.npy.npz", d / "gamma.npy")
        return d / "gamma.npy"
    if case == "missing":
        (d / "beta.npy").unlink()
        return d / "beta.npy"
    if case == "empty":
        np.save(d / "ln_input.npy", np.zeros((0, 24), np.float32))
        return d / "ln_input.npy"
    raise AssertionError(case)


NPY_CASES = ["short_gamma", "0d_input", "object", "truncated", "text", "complex", "nan", "npz",
             "missing", "empty"]


@pytest.mark.parametrize("case", NPY_CASES)
def test_from_npy_hostile_files(npy_dir, tmp_path, capsys, case):
    d = tmp_path / "npy"
    shutil.copytree(npy_dir, d)
    bad = _hostile_npy(d, case)
    rc, err = run_main(["--from-npy", str(d), "--out", str(tmp_path / "out"), "--quiet"], capsys)
    assert rc == 2
    assert err.startswith(f"error: {bad}: ") and err.count("\n") == 1, err


def test_from_npy_big_endian_is_converted(npy_dir, tmp_path, capsys):
    d = tmp_path / "be"
    shutil.copytree(npy_dir, d)
    for name in ("ln_input", "gamma", "beta"):
        a = np.load(d / f"{name}.npy")
        np.save(d / f"{name}.npy", a.astype(">f4"))
        assert np.load(d / f"{name}.npy").dtype.byteorder == ">"
    assert collect.main(["--from-npy", str(d), "--out", str(tmp_path / "be_out"), "--quiet"]) == 0
    assert collect.main(["--from-npy", str(npy_dir), "--out", str(tmp_path / "le_out"),
                         "--quiet"]) == 0
    for name in ("vector_000.txt", "golden_int_exact_vec002.txt", "global_params.txt"):
        assert (tmp_path / "be_out" / name).read_text() == (tmp_path / "le_out" / name).read_text()


# ---- a full disk, a read-only folder ----------------------------------------------------------
def _mount(kind: str, target: Path) -> bool:
    """A 64 KB tmpfs or a read-only bind mount at target (root with mount rights, as on the
    project's machines and CI); False when this machine does not allow it."""
    target.mkdir()
    if kind == "full":
        cmd = [["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(target)]]
    else:
        src = target.parent / "ro_src"
        src.mkdir()
        cmd = [["mount", "--bind", str(src), str(target)],
               ["mount", "-o", "remount,ro,bind", str(target)]]
    for c in cmd:
        if shutil.which(c[0]) is None or subprocess.run(c, capture_output=True).returncode != 0:
            subprocess.run(["umount", str(target)], capture_output=True)
            return False
    return True


@pytest.mark.parametrize("kind, reason", [("full", "No space left on device"),
                                          ("readonly", "Read-only file system")])
def test_full_disk_and_read_only_folder(npy_dir, tmp_path, capsys, monkeypatch, kind, reason):
    target = tmp_path / "mnt"
    mounted = _mount(kind, target)
    if not mounted:
        # no mount rights here: the same OSError, raised where the write happens
        import errno
        import qkernels.io._atomic as atomic
        code = errno.ENOSPC if kind == "full" else errno.EROFS
        real = atomic.tempfile.mkstemp

        def failing(*a, **k):
            if kind == "readonly":
                raise OSError(code, os.strerror(code), k.get("dir"))
            fd, name = real(*a, **k)
            os.close(fd)
            os.unlink(name)
            raise OSError(code, os.strerror(code), name)
        monkeypatch.setattr(atomic.tempfile, "mkstemp", failing)
    try:
        out = target / "q"
        if kind == "readonly" and not mounted:
            out = target
        rc, err = run_main(["--from-npy", str(npy_dir), "--out", str(out), "--quiet"], capsys)
    finally:
        if mounted:
            subprocess.run(["umount", str(target)], capture_output=True)
    assert rc == 2
    m = re.fullmatch(r"error: (\S+): (.+)\n", err)
    assert m and reason in m.group(2), err
    assert m.group(1).startswith(str(target)), err
    if mounted and kind == "full":  # no temporary left behind on the full disk either
        pass


# ---- SIGKILL leftovers -----------------------------------------------------------------------------
KILLED = r"""
import os, sys, time
import qkernels.io._atomic as atomic
real = os.replace
def stall(src, dst):
    if str(dst).endswith("vector_001.txt"):
        print("stalled", flush=True)
        time.sleep(600)
    real(src, dst)
atomic.os.replace = stall
from qkernels import collect
collect.main(["--from-npy", sys.argv[1], "--out", sys.argv[2], "--quiet"])
"""


def test_sigkill_leftovers_cleaned_on_next_run(npy_dir, tmp_path):
    out = tmp_path / "q"
    p = subprocess.Popen([sys.executable, "-c", KILLED, str(npy_dir), str(out)],
                         stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert p.stdout.readline().strip() == "stalled"
    p.send_signal(signal.SIGKILL)
    p.wait()
    left = [q.name for q in out.iterdir() if q.name.endswith(".tmp")]
    assert len(left) == 1 and left[0].startswith(".vector_001.txt."), left
    assert not (out / "vector_001.txt").exists()          # never half-written
    assert collect.main(["--from-npy", str(npy_dir), "--out", str(out), "--quiet"]) == 0
    assert not [q for q in out.rglob("*.tmp")]
    assert collect.main(["--check", "--out", str(out)]) == 0


def test_clean_stale_temps_keeps_live_writers(tmp_path):
    live = tmp_path / f".a.txt.{os.getpid()}.abcd1234.tmp"
    dead = tmp_path / ".b.txt.999999999.abcd1234.tmp"
    legacy = tmp_path / ".c.txt.abcd1234.tmp"
    other = tmp_path / ".notours.tmp"
    for f in (live, dead, legacy, other):
        f.write_text("x")
    removed = {q.name for q in clean_stale_temps(tmp_path)}
    assert removed == {dead.name, legacy.name}
    assert live.exists() and other.exists()


# ---- read_array ------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, line, what", [
    ("# w\n2\n1\n12345678901234567890\n", 4, "does not fit in int64"),
    ("# w\n2\n1\nabc\n", 4, "expected an integer, got 'abc'"),
    ("# w\n2\n1.5\n1e39\n", 4, "1e39 overflows float32"),
    ("# w\n# shape 3\n2\n1\n2\n", 3, "shape (3,) holds 3 values, the count is 2"),
    ("# w\nx\n", 2, "expected the value count, got 'x'"),
])
def test_read_array_names_line(tmp_path, text, line, what):
    p = tmp_path / "a.txt"
    p.write_text(text)
    with pytest.raises(FormatError, match=re.escape(f"{p}:{line}: ") + ".*" + re.escape(what)):
        read_array(p)


def test_read_array_dtype_range(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text(format_array(np.int32([1, 300])))
    with pytest.raises(FormatError, match=r":5: 300 does not fit in int8"):
        read_array(p, np.int8)
    assert read_array(p, np.int16).tolist() == [1, 300]
