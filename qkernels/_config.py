"""show_config(): what this build of qkernels is and which kernels it runs on this CPU."""
from __future__ import annotations

import os
import platform
import sys
from typing import Any, Dict, Optional

import numpy as np

from . import _core


def show_config(mode: str = "stdout") -> Optional[Dict[str, Any]]:
    """Print (or return, with ``mode="dicts"``) the build and run-time configuration.

    Like ``numpy.show_config()``: the version, the compiler that built the C kernels, the SIMD
    path chosen on this CPU (AVX2+FMA when present, with AVX-512 loops for the hot elementwise
    kernels where the CPU has AVX-512 F/BW, portable scalar C otherwise; ``QKERNELS_SIMD=avx2``
    or ``=scalar`` set before import forces a path), and the NumPy versions.

    Example:
        >>> import qkernels
        >>> cfg = qkernels.show_config(mode="dicts")
        >>> sorted(cfg)
        ['c_library', 'numpy', 'python', 'simd', 'version']
    """
    from . import __version__

    info = _core._info()
    cfg: Dict[str, Any] = {
        "version": __version__,
        "c_library": {"version": info["version"], "compiler": info["compiler"],
                      "header": "csrc/include/qkernels.h", "static_library": "make lib"},
        "simd": {"chosen": info["isa"], "avx512_loops": bool(info["avx512_loops"]),
                 "gemm": info["gemm_isa"],
                 "cpu_has_avx2_fma": bool(info["cpu_has_avx2"]),
                 "machine": platform.machine()},
        "numpy": {"built_against": info["numpy_build_version"], "running": np.__version__},
        "python": sys.version.split()[0],
    }
    if mode == "dicts":
        return cfg
    if mode != "stdout":
        raise ValueError(f"mode must be 'stdout' or 'dicts', got {mode!r}")
    print(f"qkernels {cfg['version']}")
    print(f"  C library : {info['version']}, built by {info['compiler']}")
    avx512 = ", AVX-512 F/BW hot loops" if info["avx512_loops"] else ""
    print(f"  SIMD path : {info['isa']}{avx512} (CPU has AVX2+FMA: "
          f"{'yes' if info['cpu_has_avx2'] else 'no'}; machine {platform.machine()})")
    print(f"  GEMM/conv : {info['gemm_isa']}  (QKERNELS_SIMD=avx2 or =scalar forces a path)")
    print(f"  NumPy     : built against {info['numpy_build_version']}, running {np.__version__}")
    print(f"  Python    : {cfg['python']}")
    return None


_PKG = os.path.dirname(os.path.abspath(__file__))


def get_include() -> str:
    """The folder of the public C header ``qkernels.h`` (in the installed package, or the
    source tree's ``csrc/include``), for a C test bench that links the same kernels.

    Example:
        >>> import os, qkernels
        >>> os.path.exists(os.path.join(qkernels.get_include(), "qkernels.h"))
        True
    """
    for d in (os.path.join(_PKG, "include"), os.path.join(os.path.dirname(_PKG), "csrc", "include")):
        if os.path.exists(os.path.join(d, "qkernels.h")):
            return d
    raise FileNotFoundError("qkernels.h is not installed with this package (reinstall qkernels)")


def get_library() -> str:
    """The static C library ``libqkernels.a`` built with this package (the kernels without the
    Python glue): ``cc -I$(qkernels include) bench.c $(qkernels lib) -lm -pthread``.

    Example:
        >>> import qkernels
        >>> qkernels.get_library().endswith("libqkernels.a")
        True
    """
    for p in (os.path.join(_PKG, "lib", "libqkernels.a"),
              os.path.join(os.path.dirname(_PKG), "build", "libqkernels.a")):
        if os.path.exists(p):
            return p
    raise FileNotFoundError("libqkernels.a was not built with this package: reinstall qkernels, "
                            "or run `make lib` in the source tree")
