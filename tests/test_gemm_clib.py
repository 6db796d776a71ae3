"""The C test program of the integer linear / conv kernels (tests/c/test_gemm.c), built by
`make ctest`, run with the default path (AVX512-VNNI 8-bit kernels where the CPU has them), with
QKERNELS_SIMD=avx2 (int16 AVX2 kernels) and with QKERNELS_SIMD=scalar; the micro-kernel twins are
compared inside the program. tests/test_clib.py on the main branch runs every C program the same way."""
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXE = os.path.join(ROOT, "build", "ctest", "test_gemm")


@pytest.mark.parametrize("simd", ["auto", "avx2", "scalar"])
def test_gemm_c_program(simd):
    subprocess.run(["make", "-s", "ctest"], cwd=ROOT, check=True)
    env = dict(os.environ)
    env.pop("QKERNELS_SIMD", None)
    if simd != "auto":
        env["QKERNELS_SIMD"] = simd   # "avx2": the int16 AVX2 kernels even on AVX512-VNNI CPUs
    r = subprocess.run([EXE], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert " 0 failed" in r.stdout, r.stdout
