"""The C test program of the integer linear / conv kernels (tests/c/test_gemm.c), built by
`make ctest`, run with the AVX2 path and with QKERNELS_SIMD=scalar (micro-kernel twins compared
inside the program). tests/test_clib.py on the main branch runs every C program the same way."""
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXE = os.path.join(ROOT, "build", "ctest", "test_gemm")


@pytest.mark.parametrize("simd", ["auto", "scalar"])
def test_gemm_c_program(simd):
    subprocess.run(["make", "-s", "ctest"], cwd=ROOT, check=True)
    env = dict(os.environ)
    env.pop("QKERNELS_SIMD", None)
    if simd == "scalar":
        env["QKERNELS_SIMD"] = "scalar"
    r = subprocess.run([EXE], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert " 0 failed" in r.stdout, r.stdout
