"""Build of the qkernels C extension (qkernels._core), and of the plain C library for C users.

The C library sources are every .c file under csrc/ (kernels) and csrc/python/ (NumPy glue).
SIMD loops carry their own target attributes and are chosen at run time, so the flags here are
portable: no -march. Set QKERNELS_WERROR=1 for -Werror (the Makefile and CI do), and
QKERNELS_SANITIZE=1 for an -fsanitize=address,undefined build.

The wheel also carries the public header and the static library (``qkernels/include/qkernels.h``,
``qkernels/lib/libqkernels.a``, see ``qkernels.get_include()`` / ``qkernels.get_library()``): a C
test bench links the same kernels the Python package runs.
"""
import glob
import os
import shutil
import subprocess

import numpy as np
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

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
    # every header, so that `make build` (build_ext --inplace) recompiles after a change to one
    # (the SIMD templates *_isa.h are included, not compiled on their own)
    depends=sorted(glob.glob("csrc/**/*.h", recursive=True)),
    include_dirs=["csrc/include", "csrc", "csrc/python", np.get_include()],
    define_macros=[("QK_NUMPY_BUILD", '"%s"' % np.__version__)],
    extra_compile_args=cflags,
    extra_link_args=ldflags,
    libraries=["m"],
)


class BuildPy(build_py):
    """The package, plus the public C header (qkernels/include/qkernels.h)."""

    def run(self):
        super().run()
        dst = os.path.join(self.build_lib, "qkernels", "include")
        os.makedirs(dst, exist_ok=True)
        shutil.copy2(os.path.join("csrc", "include", "qkernels.h"), dst)


class BuildExt(build_ext):
    """The extension, plus qkernels/lib/libqkernels.a from the same objects (not the glue)."""

    def build_extensions(self):
        super().build_extensions()
        objs = [self.compiler.object_filenames([s], output_dir=self.build_temp)[0]
                for s in ext.sources if "/python/" not in s.replace(os.sep, "/")]
        missing = [o for o in objs if not os.path.exists(o)]
        if missing:   # pragma: no cover - unusual compilers
            print("qkernels: no static library (objects not found: %s ...)" % missing[0])
            return
        lib_dir = os.path.join(self.build_lib, "qkernels", "lib")
        os.makedirs(lib_dir, exist_ok=True)
        lib = os.path.join(lib_dir, "libqkernels.a")
        if os.path.exists(lib):
            os.unlink(lib)
        subprocess.check_call([os.environ.get("AR", "ar"), "rcs", lib] + objs)

    def run(self):
        super().run()   # an in-place build copies the extension back; the library goes beside it
        lib = os.path.join(self.build_lib, "qkernels", "lib", "libqkernels.a")
        if self.inplace and os.path.exists(lib):
            os.makedirs(os.path.join("qkernels", "lib"), exist_ok=True)
            shutil.copy2(lib, os.path.join("qkernels", "lib", "libqkernels.a"))


setup(ext_modules=[ext], license="Apache-2.0",
      cmdclass={"build_py": BuildPy, "build_ext": BuildExt})
