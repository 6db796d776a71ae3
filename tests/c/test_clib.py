"""The C library on its own: build libqkernels.a and the C test programs (tests/c/test_*.c) with
make, run each with the AVX2 path and again with the scalar path, no Python in the loop."""
import glob
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCES = sorted(glob.glob(os.path.join(ROOT, "tests", "c", "test_*.c")))


@pytest.fixture(scope="module")
def built():
    if shutil.which("make") is None or shutil.which(os.environ.get("CC", "cc")) is None:
        pytest.fail("make and a C compiler are required to build the C library")
    subprocess.run(["make", "-s", "lib", "ctest"], cwd=ROOT, check=True)
    assert os.path.exists(os.path.join(ROOT, "build", "libqkernels.a"))
    return True


# auto: the best path of this CPU (AVX512-VNNI for the 8-bit GEMM where present); avx2: the AVX2
# kernels even on AVX-512 CPUs; scalar: the portable C twins. All must pass the same checks.
@pytest.mark.parametrize("simd", ["auto", "avx2", "scalar"])
@pytest.mark.parametrize("src", SOURCES, ids=[os.path.basename(s) for s in SOURCES])
def test_c_program(built, src, simd):
    exe = os.path.join(ROOT, "build", "ctest", os.path.splitext(os.path.basename(src))[0])
    env = dict(os.environ)
    env.pop("QKERNELS_SIMD", None)
    if simd != "auto":
        env["QKERNELS_SIMD"] = simd
    r = subprocess.run([exe], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert " 0 failed" in r.stdout, r.stdout


def test_header_is_self_contained_and_cxx_clean(built, tmp_path):
    """qkernels.h compiles alone, in C11 with -Wall -Wextra -Werror -pedantic."""
    src = tmp_path / "h.c"
    src.write_text('#include "qkernels.h"\nint main(void) { return qk_isa() < 0; }\n')
    cc = os.environ.get("CC", "cc")
    subprocess.run([cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic",
                    "-I", os.path.join(ROOT, "csrc", "include"), str(src),
                    os.path.join(ROOT, "build", "libqkernels.a"), "-lm", "-o", str(tmp_path / "h")],
                   check=True)
    assert subprocess.run([str(tmp_path / "h")]).returncode == 0
