"""Build of the qkernels C extension (qkernels._core).

The C library sources are every .c file under csrc/ (kernels) and csrc/python/ (NumPy glue).
SIMD loops carry their own target attributes and are chosen at run time, so the flags here are
portable: no -march. Set QKERNELS_WERROR=1 for -Werror (the Makefile and CI do), and
QKERNELS_SANITIZE=1 for an -fsanitize=address,undefined build.
"""
import glob
import os

import numpy as np
from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _sources():
    kernels = sorted(glob.glob("csrc/*.c") + glob.glob("csrc/*/*.c"))
    return [s for s in kernels if "/examples/" not in s.replace(os.sep, "/")]


cflags = ["-std=c11", "-O3", "-ffp-contract=off", "-fno-math-errno", "-Wall", "-Wextra",
          "-fvisibility=hidden", "-pthread"]
ldflags = ["-pthread"]
if os.environ.get("QKERNELS_WERROR") == "1":
    cflags.append("-Werror")
if os.environ.get("QKERNELS_SANITIZE") == "1":
    cflags += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-O1", "-g"]
    ldflags += ["-fsanitize=address,undefined"]

ext = Extension(
    "qkernels._core",
    sources=_sources(),
    include_dirs=["csrc/include", "csrc", "csrc/python", np.get_include()],
    define_macros=[("QK_NUMPY_BUILD", '"%s"' % np.__version__)],
    extra_compile_args=cflags,
    extra_link_args=ldflags,
    libraries=["m"],
)

setup(ext_modules=[ext])
