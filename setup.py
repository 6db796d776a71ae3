"""Build of the qkernels C extension (qkernels._core).

The sources are the C library's layers (csrc/core, csrc/elementwise, csrc/ukernels,
csrc/operators) and the NumPy glue (csrc/python); csrc/examples holds stand-alone programs.
SIMD loops carry their own target attributes and are chosen at run time, so the flags here are
portable: no -march. Set QKERNELS_WERROR=1 for -Werror (the Makefile and CI do), and
QKERNELS_SANITIZE=1 for an -fsanitize=address,undefined build.
"""
import glob
import os

import numpy as np
from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))


LAYERS = ("core", "elementwise", "ukernels", "operators", "python")


def _sources():
    return sorted(s for layer in LAYERS for s in glob.glob(os.path.join("csrc", layer, "*.c")))


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
