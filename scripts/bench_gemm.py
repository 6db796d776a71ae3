"""Benchmark of the integer linear / conv kernels (issue 3) against PyTorch's quantized ops
(fbgemm engine) and ONNX Runtime (QLinearMatMul / QLinearConv), in the same process.

    python scripts/bench_gemm.py [--quick] [--threads 1,2] [--batches 1,8] [--only TEXT]

`run()` returns a markdown section: machine, threads, shapes, median times, GMAC/s (and per
core), and the ratio qkernels / runtime of throughputs (> 1: qkernels is faster). Every runtime
computes the same thing: uint8 activations, int8 weights, requantized uint8 output (PyTorch
with a float bias, ORT QLinearConv with an int32 bias, QLinearMatMul without bias); the qkernels
call uses the matching preset and prepacked weights, as the runtimes do.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Optional, Tuple

# OpenBLAS (NumPy's) server threads spin in the background after start-up; none of the timed
# calls uses BLAS, and on a 2-core machine they steal a core from whichever contender runs next.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qkernels  # noqa: E402
from benchutil import CONV, LINEAR, cpu_info, median_times, ort_session  # noqa: E402

PEAK_GMACS_PER_CORE = 83.0  # u8 x s8 on AVX2 without VNNI (issue 3); see the note in the output



def _torch():
    try:
        import torch
        torch.backends.quantized.engine = "fbgemm"
        return torch
    except Exception:  # pragma: no cover
        return None


def _ort():
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
        return ort, TensorProto, helper, numpy_helper
    except Exception:  # pragma: no cover
        return None


def _ort_session(node, inits, x, threads):
    return ort_session(node, [("x", x)], np.uint8, inits, threads)


def bench_linear(m: int, k: int, n: int, threads: int, torch, ortm) -> Tuple[float, Optional[float], Optional[float]]:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 128, (m, k)).astype(np.uint8)
    w = rng.integers(-127, 128, (n, k)).astype(np.int8)
    b = rng.normal(0, 1, n).astype(np.float32)
    xs, ws, os_ = 0.05, 0.01, 0.5
    p = qkernels.pack_linear(w, w_scale=ws)
    f_qk = lambda: qkernels.qlinear(x, p, b, x_scale=xs, x_zero_point=64, out_scale=os_,  # noqa: E731
                                    out_zero_point=128, preset="fbgemm", threads=threads)
    f_torch = f_ort = None
    if torch is not None:
        torch.set_num_threads(threads)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            qw = torch._make_per_tensor_quantized_tensor(torch.from_numpy(w), ws, 0)
            qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), xs, 64)
        packed = torch.ops.quantized.linear_prepack(qw, torch.from_numpy(b))
        f_torch = lambda: torch.ops.quantized.linear(qx, packed, os_, 128)  # noqa: E731
    if ortm is not None:
        _, _, helper, _ = ortm
        node = helper.make_node("QLinearMatMul", ["x", "xs", "xzp", "w", "ws", "wzp", "os", "ozp"], ["y"])
        s = _ort_session(node, [("xs", np.float32(xs)), ("xzp", np.uint8(64)),
                                      ("w", np.ascontiguousarray(w.T)), ("ws", np.float32(ws)),
                                      ("wzp", np.int8(0)), ("os", np.float32(os_)), ("ozp", np.uint8(128))],
                         x, threads)
        f_ort = lambda: s.run(None, {"x": x})  # noqa: E731
    t_qk, t_torch, t_ort = median_times([f_qk, f_torch, f_ort], warm_s=0.25 if threads > 1 else 0.02)
    return t_qk, t_torch, t_ort


def bench_conv(nb: int, c: int, h: int, o: int, k: int, s: int, pad: int, g: int, threads: int,
               torch, ortm) -> Tuple[float, Optional[float], Optional[float]]:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 128, (nb, c, h, h)).astype(np.uint8)
    w = rng.integers(-127, 128, (o, c // g, k, k)).astype(np.int8)
    b = rng.normal(0, 1, o).astype(np.float32)
    xs, ws, os_ = 0.05, 0.01, 0.5
    p = qkernels.pack_conv2d(w, groups=g, w_scale=ws)
    f_qk = lambda: qkernels.qconv2d(x, p, b, stride=s, padding=pad, x_scale=xs,  # noqa: E731
                                    x_zero_point=64, out_scale=os_, out_zero_point=128,
                                    preset="fbgemm", threads=threads)
    f_torch = f_ort = None
    if torch is not None:
        torch.set_num_threads(threads)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            qw = torch._make_per_tensor_quantized_tensor(torch.from_numpy(w), ws, 0)
            qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), xs, 64)
        packed = torch.ops.quantized.conv2d_prepack(qw, torch.from_numpy(b), [s, s], [pad, pad],
                                                    [1, 1], g)
        f_torch = lambda: torch.ops.quantized.conv2d(qx, packed, os_, 128)  # noqa: E731
    if ortm is not None:
        _, _, helper, _ = ortm
        bq = np.round(b / (xs * ws)).astype(np.int32)
        node = helper.make_node("QLinearConv", ["x", "xs", "xzp", "w", "ws", "wzp", "os", "ozp", "b"],
                                ["y"], strides=[s, s], pads=[pad] * 4, group=g, kernel_shape=[k, k])
        sess = _ort_session(node, [("xs", np.float32(xs)), ("xzp", np.uint8(64)), ("w", w),
                                         ("ws", np.float32(ws)), ("wzp", np.int8(0)),
                                         ("os", np.float32(os_)), ("ozp", np.uint8(128)), ("b", bq)],
                            x, threads)
        f_ort = lambda: sess.run(None, {"x": x})  # noqa: E731
    t_qk, t_torch, t_ort = median_times([f_qk, f_torch, f_ort], warm_s=0.25 if threads > 1 else 0.02)
    return t_qk, t_torch, t_ort


def _fmt_ratio(t_qk: float, t_other: Optional[float]) -> str:
    return "n/a" if t_other is None else f"{t_other / t_qk:.2f}x"


def run(threads_list: Tuple[int, ...] = (1, 2), batches: Tuple[int, ...] = (1, 8), quick: bool = False,
        only: Optional[str] = None) -> str:
    torch, ortm = _torch(), _ort()
    cfg = qkernels.show_config("dicts")
    cpu, flags = cpu_info()
    vnni = "avx512_vnni" in flags or "avx_vnni" in flags
    lines = ["## Integer linear / conv (issue 3)", "",
             f"Machine: {cpu}, {os.cpu_count()} logical CPUs, AVX512-VNNI: {'yes' if vnni else 'no'}; "
             f"qkernels SIMD path: {cfg['simd']['chosen']}; "
             f"torch {torch.__version__ if torch else 'absent'} (engine fbgemm), "
             f"onnxruntime {ortm[0].__version__ if ortm else 'absent'}.",
             "Medians of repeated calls in one process, sampled round-robin in blocks (per round, for "
             "qkernels, torch, ORT in turn: untimed calls for 20 ms, or 250 ms with several threads, "
             "so that the previous runtime's spinning threads are asleep, then 5 timed calls); torch.set_num_threads and ORT intra_op_num_threads set to the thread count "
             "given to qkernels. GMAC/s/core = multiply-accumulates / time / threads. The issue quotes "
             f"about {PEAK_GMACS_PER_CORE:.0f} GMAC/s per core as the u8 x s8 limit of AVX2 without VNNI; "
             "on a CPU with AVX512-VNNI (vpdpbusd, 64 MAC per instruction) qkernels, FBGEMM and MLAS all "
             "use it, and that figure is no longer the ceiling. Ratio = qkernels throughput / runtime "
             "throughput (> 1.00x: qkernels faster).", "",
             "| layer | batch | threads | qkernels ms | GMAC/s/core | % of 83 | torch fbgemm ms | vs torch | ORT ms | vs ORT |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for t in threads_list:
        for nb in batches:
            for name, k, n in (LINEAR[:1] if quick else LINEAR):
                if only is not None and only not in name:
                    continue
                m = 197 * nb
                tq, tt, to = bench_linear(m, k, n, t, torch, ortm)
                g = m * k * n / tq / 1e9 / t
                lines.append(f"| {name} (M={m}) | {nb} | {t} | {tq*1e3:.3f} | {g:.1f} | {100*g/PEAK_GMACS_PER_CORE:.0f}% | "
                             f"{tt*1e3 if tt else float('nan'):.3f} | {_fmt_ratio(tq, tt)} | "
                             f"{to*1e3 if to else float('nan'):.3f} | {_fmt_ratio(tq, to)} |")
            for name, c, h, o, k, s, pad, grp in (CONV[1:2] + CONV[5:6] if quick else CONV):
                if only is not None and only not in name:
                    continue
                oh = (h + 2 * pad - k) // s + 1
                macs = nb * o * oh * oh * (c // grp) * k * k
                tq, tt, to = bench_conv(nb, c, h, o, k, s, pad, grp, t, torch, ortm)
                g = macs / tq / 1e9 / t
                lines.append(f"| {name} | {nb} | {t} | {tq*1e3:.3f} | {g:.1f} | {100*g/PEAK_GMACS_PER_CORE:.0f}% | "
                             f"{tt*1e3 if tt else float('nan'):.3f} | {_fmt_ratio(tq, tt)} | "
                             f"{to*1e3 if to else float('nan'):.3f} | {_fmt_ratio(tq, to)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one linear, one conv and one depthwise shape")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--batches", default="1,8", help="comma-separated batch sizes (default 1,8)")
    ap.add_argument("--only", default=None, help="only the layers whose name contains this text")
    a = ap.parse_args()
    print(run(tuple(int(v) for v in a.threads.split(",")), tuple(int(v) for v in a.batches.split(",")),
              a.quick, a.only))


if __name__ == "__main__":
    main()
