#!/usr/bin/env python
"""`make demo`: the main job on the embedded default data.

1. The elementwise kernels on a real tensor: how each quantization choice (per tensor, per channel,
   power of two, 4 bits) and each runtime's rounding changes the integers, with SQNR figures.
2. The further pipelines (LayerNorm golden vectors, integer layers, the integer MiniLM) when their
   scripts are present.
"""
from __future__ import annotations

import importlib
import os
import sys
from typing import Tuple

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import qkernels as qk  # noqa: E402
from qkernels import sqnr_db  # noqa: E402


def real_tensor() -> Tuple[np.ndarray, str]:
    """A real activation or weight tensor that is available offline."""
    try:
        from qkernels.collect import embedded_model_tensor  # the LayerNorm pipeline (issue 4)
        return embedded_model_tensor()
    except ImportError:
        pass
    shared = os.path.join(os.path.dirname(HERE), "..", "shared", "data", "deit-small-ln0", "ln_input.npy")
    if os.path.exists(shared):
        return np.load(shared), "DeiT-small block-0 LayerNorm input (197 x 384), shared/data"
    rng = np.random.default_rng(0)
    x = rng.standard_normal((197, 384)).astype(np.float32)
    x[:, 7] *= 12  # one outlier channel, as transformers have
    return x, "synthetic stand-in (197 x 384, one outlier channel): no real tensor found"


def elementwise_report() -> None:
    x, what = real_tensor()
    x = np.ascontiguousarray(x, dtype=np.float32)
    print(f"\n== Elementwise kernels on a real tensor: {what}")
    print(f"   shape {x.shape}, range [{x.min():.3f}, {x.max():.3f}]")
    rows = []
    # per tensor, affine uint8 (PyTorch MinMaxObserver semantics)
    s, zp = qk.choose_qparams(x.min(), x.max(), dtype=np.uint8)
    q = qk.quantize(x, s, zp, dtype=np.uint8)
    rows.append(("per-tensor asymmetric uint8", f"scale {float(s):.6g}, zp {int(zp)}",
                 sqnr_db(x, qk.dequantize(q, s, zp))))
    # per tensor symmetric int8
    s8, z8 = qk.choose_qparams(x.min(), x.max(), dtype=np.int8, symmetric=True)
    q8 = qk.quantize(x, s8, z8, dtype=np.int8)
    rows.append(("per-tensor symmetric int8", f"scale {float(s8):.6g}", sqnr_db(x, qk.dequantize(q8, s8, z8))))
    # per channel (last axis) symmetric int8
    pc = qk.choose_qparams(x.min(axis=0), x.max(axis=0), dtype=np.int8, symmetric=True)
    qpc = qk.quantize(x, pc.scale, pc.zero_point, dtype=np.int8, axis=-1)
    rows.append(("per-channel symmetric int8", f"{x.shape[-1]} scales",
                 sqnr_db(x, qk.dequantize(qpc, pc.scale, pc.zero_point, axis=-1))))
    # power of two
    for mode in ("ceil", "round"):
        p2 = qk.choose_qparams(x.min(), x.max(), dtype=np.int8, symmetric=True, power_of_two=mode)
        qp = qk.quantize(x, p2.scale, 0, dtype=np.int8)
        nclip = int(np.count_nonzero(np.abs(x) > 127.5 * float(p2.scale)))
        rows.append((f"power-of-two ({mode}) int8", f"{p2.power_of_2()}, dequantize = {p2.hardware_op()}"
                     f"{f', clips {nclip} values' if nclip else ''}", sqnr_db(x, qk.dequantize(qp, p2.scale, 0))))
    # 4 bits
    p4 = qk.choose_qparams(x.min(), x.max(), dtype=np.int8, bits=4)
    q4 = qk.quantize(x, p4.scale, p4.zero_point, dtype=np.int8, bits=4)
    rows.append(("per-tensor asymmetric 4-bit", f"range [{q4.min()}, {q4.max()}]",
                 sqnr_db(x, qk.dequantize(q4, p4.scale, p4.zero_point))))
    w = max(len(r[0]) for r in rows)
    print(f"   {'scheme':<{w}}  {'SQNR dB':>8}  parameters")
    for name, params, db in rows:
        print(f"   {name:<{w}}  {db:8.2f}  {params}")

    print("\n   The same uint8 quantization, rounded as each runtime rounds it:")
    ref = qk.quantize(x, s, zp, dtype=np.uint8, flavor="torch")
    for flavor in ("pt2e", "onnx", "tflite"):
        other = qk.quantize(x, s, zp, dtype=np.uint8, flavor=flavor)
        n = int(np.count_nonzero(other != ref))
        diff = int(np.abs(other.astype(int) - ref.astype(int)).max())
        print(f"   torch vs {flavor:<7}: " + (f"{n} of {x.size} elements differ (by at most {diff})"
                                              if n else f"identical on all {x.size} elements"))
    ties = (np.arange(-200, 200) + 0.5).astype(np.float32) * s
    t_ref = qk.quantize(ties, s, zp, dtype=np.uint8, flavor="torch")
    print("   ...and on 400 exact ties k + 0.5: " + ", ".join(
        f"{f} differs on {int(np.count_nonzero(qk.quantize(ties, s, zp, dtype=np.uint8, flavor=f) != t_ref))}"
        for f in ("pt2e", "onnx", "tflite")))

    # requantization of a real accumulator: x_q . w_q for the first rows of this tensor
    acc = (q8[:64].astype(np.int64) @ q8[:64].T.astype(np.int64))
    acc = np.clip(acc, -(2**31), 2**31 - 1).astype(np.int32)
    real_m = 127.0 / float(np.abs(acc).max())  # map the largest product to 127
    m0, sh = qk.quantize_multiplier(real_m)
    a = qk.requantize(acc, m0, sh, 0, scheme="double_round")
    b = qk.requantize(acc, m0, sh, 0, scheme="single_round")
    c = qk.requantize_float(acc, np.float32(real_m), 0)
    print(f"\n   Requantizing {acc.size} real int32 dot products (multiplier {real_m:.6g} = "
          f"{int(m0)} * 2^({int(sh)} - 31)):")
    print(f"   double vs single rounding differ on {np.mean(a != b) * 100:.2f}% "
          f"(max {np.abs(a.astype(int) - b).max()}), double vs fp32 scale on {np.mean(a != c) * 100:.2f}%")


def main() -> int:
    print("qkernels demo")
    qk.show_config()
    elementwise_report()
    for name in ("demo_layernorm", "demo_models", "demo_datagen", "demo_transformer"):
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        mod.main([])
    return 0


if __name__ == "__main__":
    sys.exit(main())
