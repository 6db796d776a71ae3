"""Runs the C test program of the PTF / LayerNorm kernels (tests/c/test_ptf.c), no Python in
the loop: built by `make ctest` (built here when missing)."""
import os
import subprocess

from ptf_data import REPO


def test_c_program_test_ptf():
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)  # the sanitizer run preloads libasan into Python only
    exe = REPO / "build" / "ctest" / "test_ptf"
    subprocess.run(["make", "-s", "-C", str(REPO), "build/ctest/test_ptf"], check=True,
                   capture_output=True, timeout=300, env=env)
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert " 0 failed" in r.stdout
