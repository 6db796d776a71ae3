"""Helpers shared by the tests (value sets with near-ties, bit-exact comparison, the SIMD paths
in subprocesses)."""
import os
import platform
import subprocess
import sys

import numpy as np


def x86_flags():
    """This CPU's feature flags (from /proc/cpuinfo, scripts/benchutil.py cpu_info) on x86-64, or
    None on any other machine."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return None
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                    "scripts"))
    from benchutil import cpu_info
    return set(cpu_info()[1].split())


def u8s8_pairs_saturate(vnni_flags):
    """True on an x86-64 CPU with none of ``vnni_flags``: there the uint8 x int8 GEMMs of ONNX
    Runtime (MLAS) and PyTorch (FBGEMM) multiply with ``vpmaddubsw``, which adds each pair of
    adjacent products ``a[2i] b[2i] + a[2i+1] b[2i+1]`` (raw uint8 x int8, before the zero points
    are taken out) with int16 saturation; with a VNNI ``vpdpbusd`` (and on ARM) the sums are
    exact. MLAS uses AVX512-VNNI and AVX-VNNI, FBGEMM AVX512-VNNI only."""
    flags = x86_flags()
    return flags is not None and not (set(vnni_flags) & flags)


#: Whether PyTorch's FBGEMM (quantized Linear / Conv / ConvTranspose on the fbgemm and x86
#: engines) saturates uint8 x int8 product pairs on this CPU: x86-64 without AVX512-VNNI (Zen 3,
#: Intel before Cascade Lake, Alder Lake's AVX-VNNI is not used by FBGEMM). There PyTorch is
#: exact only for uint8 inputs in [0, 127], which is why its default x86 qconfigs use
#: reduce_range; test_fbgemm_u8s8_pair_saturation (tests/torch/test_swap_vs_torch.py) pins it.
FBGEMM_U8S8_SATURATES = u8s8_pairs_saturate({"avx512_vnni"})


def u8s8_pair_saturated_int32(a, b, za, zb):
    """The int32 result of ``(a - za) @ (b - zb)`` for uint8 ``a`` (m, k) and int8 ``b`` (k, n)
    as a ``vpmaddubsw`` GEMM computes it (:func:`u8s8_pairs_saturate`): the raw products summed
    in adjacent pairs along k, each pair saturated to int16, then the zero-point terms
    ``- zb sum_k a - za sum_k b + k za zb`` (exact, as the row and column sums both libraries
    take out)."""
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    m, k = a.shape
    if k % 2:   # k is padded with zeros
        a = np.concatenate([a, np.zeros((m, 1), np.int64)], 1)
        b = np.concatenate([b, np.zeros((1, b.shape[1]), np.int64)], 0)
    pairs = a[:, 0::2, None] * b[None, 0::2, :] + a[:, 1::2, None] * b[None, 1::2, :]
    acc = np.clip(pairs, -32768, 32767).sum(1)
    za, zb = int(za), int(zb)
    return acc - zb * a.sum(1)[:, None] - za * b.sum(0)[None, :] + k * za * zb


def near_ties(rng, n, scale, kmax=300, dtype=np.float32):
    """Values at (k + 0.5) * scale and one float ulp either side of them, plus exact k * scale."""
    s = dtype(scale)
    k = rng.integers(-kmax, kmax, n).astype(np.float64)
    half = ((k + 0.5) * s).astype(dtype)
    exact = (k * s).astype(dtype)
    which = rng.integers(0, 4, n)
    up = np.nextafter(half, dtype(np.inf))
    down = np.nextafter(half, dtype(-np.inf))
    return np.select([which == 0, which == 1, which == 2], [half, up, down], exact).astype(dtype)


def value_set(rng, n, scale, dtype=np.float32):
    """10^5-scale sets: random normals of several magnitudes, near-ties, saturating values."""
    s = float(scale)
    parts = [
        (rng.standard_normal(n // 2) * 60 * s).astype(dtype),
        near_ties(rng, n // 2, s, dtype=dtype),
        np.array([0.0, -0.0, np.inf, -np.inf, 1e30, -1e30, 3.4e38, -3.4e38,
                  np.finfo(dtype).tiny, -np.finfo(dtype).tiny, 0.273939937], dtype),
    ]
    return np.concatenate(parts)


def same_bits(a, b):
    """Equality of float arrays bit for bit (so -0.0 != +0.0 and NaN == NaN)."""
    a = np.ascontiguousarray(a)
    b = np.ascontiguousarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    iv = {4: np.int32, 8: np.int64}[a.dtype.itemsize]
    return np.array_equal(a.view(iv), b.view(iv))


def assert_simd_paths_equal(res):
    """The arrays of :func:`run_simd_paths` (all three paths) equal the scalar path's, key by
    key ("isa" names the path)."""
    assert str(res["scalar"]["isa"]) == "scalar"
    for key in res["scalar"]:
        if key == "isa":
            continue
        assert np.array_equal(res["auto"][key], res["scalar"][key]), key
        assert np.array_equal(res["avx2"][key], res["scalar"][key]), key


def run_simd_paths(script, tmp_path, paths=("auto", "avx2", "scalar")):
    """Runs ``script`` (it writes an .npz to ``sys.argv[1]``) in a subprocess under each
    QKERNELS_SIMD path (the level is chosen once a process) with the qkernels this process
    imported; returns ``{path: dict of the arrays}``."""
    import qkernels
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(qkernels.__file__)))
    res = {}
    for simd in paths:
        env = dict(os.environ)
        env.pop("QKERNELS_SIMD", None)
        if simd != "auto":
            env["QKERNELS_SIMD"] = simd
        env["PYTHONPATH"] = os.pathsep.join([pkg_parent, env.get("PYTHONPATH", "")])
        f = tmp_path / f"{simd}.npz"
        subprocess.run([sys.executable, "-P", "-c", script, str(f)], check=True, env=env)
        res[simd] = dict(np.load(f))
    return res


#: The top-level keys of the QAT pipeline's JSON report, in the replaced tool's order (ours last).
QAT_REPORT_KEYS = ["quantization_type", "pipeline_steps", "config", "final_quantization_details",
                   "initial_accuracy", "ptq_accuracy", "qat_best_accuracy", "final_accuracy",
                   "total_improvement", "qkernels"]


def fx_quantized(net, engine, shape, seed, calib=2):
    """(PyTorch's FX-quantized ``net`` (the engine's default qconfig mapping, ``calib`` random
    batches of ``shape``), a random input of ``shape``); ``seed``: an int or a torch.Generator."""
    import warnings

    import torch
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    g = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = prepare_fx(net.eval(), get_default_qconfig_mapping(engine), example_inputs=(x,))
        with torch.no_grad():
            for _ in range(calib):
                p(torch.randn(*shape, generator=g))
        return convert_fx(p), x
