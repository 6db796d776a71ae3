#!/usr/bin/env python
"""qkernels benchmarks against PyTorch, ONNX Runtime and NumPy, in the same process.

    python scripts/bench.py                 # all sections, figures to stdout
    python scripts/bench.py --write         # ... and rewrite BENCHMARKS.md
    python scripts/bench.py --only elementwise --quick

Every figure is the median of repeated runs after a warm-up, one thread unless a section says
otherwise (torch.set_num_threads and ONNX Runtime intra_op_num_threads are matched). Sections for
other kernel families live in scripts/bench_<family>.py, each with a run(quick) -> str function.
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import os
import platform
import sys
from typing import Callable, Dict, List, Optional

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import qkernels as qk  # noqa: E402
from benchutil import cpu_info, median_time  # noqa: E402

DRAM_GBPS = 25.0  # this machine's DRAM bandwidth, GB/s (DEVELOPERS.md)


def machine() -> str:
    cpu, _ = cpu_info()
    cfg = qk.show_config(mode="dicts")
    simd = cfg["simd"]["chosen"] + (" with AVX-512 F/BW hot loops" if cfg["simd"]["avx512_loops"]
                                     else "")
    parts = [f"CPU: {cpu}, {os.cpu_count()} cores; qkernels SIMD path: {simd}, 8-bit GEMM/conv "
             f"{cfg['simd']['gemm']}; "
             f"{cfg['c_library']['compiler']}", f"Python {platform.python_version()}, "
             f"NumPy {np.__version__}"]
    try:
        import torch
        parts.append(f"torch {torch.__version__}")
    except ImportError:
        pass
    try:
        import onnxruntime
        parts.append(f"onnxruntime {onnxruntime.__version__}")
    except ImportError:
        pass
    return "; ".join(parts)


def _ort_session(op: str, in_type: int, out_type: int):
    import onnxruntime as ort
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", in_type, None)
    s = helper.make_tensor_value_info("s", TensorProto.FLOAT, None)
    z = helper.make_tensor_value_info("z", out_type if op == "QuantizeLinear" else in_type, None)
    y = helper.make_tensor_value_info("y", out_type, None)
    g = helper.make_graph([helper.make_node(op, ["x", "s", "z"], ["y"])], "g", [x, s, z], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


def bench_elementwise(quick: bool = False) -> str:
    """quantize / dequantize / requantize, 1 thread, 10^6 and 1.6x10^7 elements."""
    import torch
    from onnx import TensorProto

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    repeat = 5 if quick else 15
    sizes = [10**6] if quick else [10**6, 16 * 10**6]
    s, zp = np.float32(0.02), 128
    rows: List[str] = []
    summary: List[str] = []

    def row(op: str, n: int, name: str, t: float, bytes_per: int, ref: Optional[float]) -> None:
        eps = n / t
        gbps = eps * bytes_per / 1e9
        ratio = f"{ref / t:.2f}x" if ref else "1.00x"
        rows.append(f"| {op} | {n:,} | {name} | {t * 1e3:.3f} | {eps / 1e9:.2f} | {gbps:.1f} "
                    f"({100 * gbps / DRAM_GBPS:.0f}% of DRAM) | {ratio} |")

    q_sess = _ort_session("QuantizeLinear", TensorProto.FLOAT, TensorProto.UINT8)
    dq_sess = _ort_session("DequantizeLinear", TensorProto.UINT8, TensorProto.FLOAT)
    for n in sizes:
        x = (rng.standard_normal(n) * 2).astype(np.float32)
        xt = torch.from_numpy(x)
        out_u8 = np.empty(n, np.uint8)
        # ---- quantize f32 -> u8
        t_qk = median_time(lambda: qk.quantize(x, s, zp, dtype=np.uint8), repeat)
        t_out = median_time(lambda: qk.quantize(x, s, zp, dtype=np.uint8, out=out_u8), repeat)
        t_uf = median_time(lambda: qk.ufuncs.quantize_fbgemm_u8(x, s, zp, 0, 255, out=out_u8), repeat)
        t_torch = median_time(lambda: torch.quantize_per_tensor(xt, float(s), zp, torch.quint8), repeat)
        t_np = median_time(lambda: np.clip(np.rint(x / s) + zp, 0, 255).astype(np.uint8), repeat)
        tmp = np.empty(n, np.float32)

        def np_quant_out():
            np.divide(x, s, out=tmp)
            np.rint(tmp, out=tmp)
            np.add(tmp, np.float32(zp), out=tmp)
            np.clip(tmp, 0, 255, out=tmp)
            out_u8[...] = tmp
        t_npo = median_time(np_quant_out, repeat)
        feeds = {"x": x, "s": np.array(s), "z": np.array(zp, np.uint8)}
        t_ort = median_time(lambda: q_sess.run(None, feeds), repeat)
        row("quantize f32->u8", n, "**qkernels.quantize**", t_qk, 5, t_torch)
        row("quantize f32->u8", n, "qkernels.quantize(out=)", t_out, 5, t_torch)
        row("quantize f32->u8", n, "raw ufunc quantize_fbgemm_u8(out=)", t_uf, 5, t_torch)
        row("quantize f32->u8", n, "torch.quantize_per_tensor (fbgemm)", t_torch, 5, t_torch)
        row("quantize f32->u8", n, "ONNX Runtime QuantizeLinear", t_ort, 5, t_torch)
        row("quantize f32->u8", n, "NumPy clip(rint(x/s)+zp).astype", t_np, 5, t_torch)
        row("quantize f32->u8", n, "NumPy, same ops with out= buffers", t_npo, 5, t_torch)
        summary.append(f"quantize {n:,}: new array {t_torch / t_qk:.2f}x torch, {t_np / t_qk:.1f}x "
                       f"NumPy; out= {t_torch / t_out:.2f}x torch, {t_ort / t_out:.2f}x ORT, "
                       f"{t_npo / t_out:.1f}x NumPy out=")
        # ---- dequantize u8 -> f32
        q = qk.quantize(x, s, zp, dtype=np.uint8)
        qt = torch.quantize_per_tensor(xt, float(s), zp, torch.quint8)
        out_f = np.empty(n, np.float32)
        t_qk = median_time(lambda: qk.dequantize(q, s, zp), repeat)
        t_out = median_time(lambda: qk.dequantize(q, s, zp, out=out_f), repeat)
        t_torch = median_time(lambda: qt.dequantize(), repeat)
        t_np = median_time(lambda: (q.astype(np.float32) - np.float32(zp)) * s, repeat)

        def np_deq_out():
            np.subtract(q, np.float32(zp), out=out_f)
            np.multiply(out_f, s, out=out_f)
        t_npo = median_time(np_deq_out, repeat)
        feeds = {"x": q, "s": np.array(s), "z": np.array(zp, np.uint8)}
        t_ort = median_time(lambda: dq_sess.run(None, feeds), repeat)
        row("dequantize u8->f32", n, "**qkernels.dequantize**", t_qk, 5, t_torch)
        row("dequantize u8->f32", n, "qkernels.dequantize(out=)", t_out, 5, t_torch)
        row("dequantize u8->f32", n, "torch Tensor.dequantize", t_torch, 5, t_torch)
        row("dequantize u8->f32", n, "ONNX Runtime DequantizeLinear", t_ort, 5, t_torch)
        # what any new float32 output costs before a kernel computes anything: allocation and
        # first touch (page faults, the OS zeroing the pages), and plain stores into a reused
        # array; the faster of a float32 fill and a byte fill (memset) of the same 4n bytes
        t_alloc = min(median_time(lambda: np.empty(n, np.float32).fill(1), repeat),
                      median_time(lambda: np.empty(n, np.float32).view(np.uint8).fill(1), repeat))
        t_fill = min(median_time(lambda: out_f.fill(1), repeat),
                     median_time(lambda: out_f.view(np.uint8).fill(1), repeat))
        row("dequantize u8->f32", n, "NumPy (q.astype(f32)-zp)*s", t_np, 5, t_torch)
        row("dequantize u8->f32", n, "NumPy, same ops with out= buffers", t_npo, 5, t_torch)
        row("dequantize u8->f32", n, "floor: np.empty(n, f32) + fill (no compute)", t_alloc, 5, t_torch)
        row("dequantize u8->f32", n, "floor: fill of a reused f32 array (stores only)", t_fill, 5, t_torch)
        summary.append(f"dequantize {n:,}: new array {t_torch / t_qk:.2f}x torch, {t_np / t_qk:.1f}x "
                       f"NumPy (bounds with no computation at all: filling a new array "
                       f"{t_alloc * 1e3:.3f} ms = {t_np / t_alloc:.1f}x NumPy, a reused one "
                       f"{t_fill * 1e3:.3f} ms = {t_np / t_fill:.1f}x); out= {t_torch / t_out:.2f}x torch, "
                       f"{t_ort / t_out:.2f}x ORT, {t_npo / t_out:.1f}x NumPy out=, "
                       f"{t_np / t_out:.1f}x the NumPy expression")
        # ---- requantize s32 -> s8
        acc = rng.integers(-(1 << 20), 1 << 20, n).astype(np.int32)
        acct = torch.from_numpy(acc)
        m0, sh = qk.quantize_multiplier(0.0007)
        rs = np.float32(0.0007)
        out_s8 = np.empty(n, np.int8)
        t_qk = median_time(lambda: qk.requantize(acc, m0, sh, 3), repeat)
        t_out = median_time(lambda: qk.requantize(acc, m0, sh, 3, out=out_s8), repeat)
        t_qs = median_time(lambda: qk.requantize(acc, m0, sh, 3, scheme="single_round"), repeat)
        t_qf = median_time(lambda: qk.requantize_float(acc, rs, 3), repeat)
        t_qsh = median_time(lambda: qk.requantize_shift(acc, 11, 3), repeat)
        t_torch = median_time(lambda: torch.quantize_per_tensor(acct.float(), float(1 / rs), 3,
                                                                torch.qint8), repeat)
        t_tex = median_time(lambda: torch.clamp(torch.round(acct * float(rs)) + 3, -128, 127)
                            .to(torch.int8), repeat)
        t_np = median_time(lambda: np.clip(np.rint(acc * rs) + 3, -128, 127).astype(np.int8), repeat)
        tmpf = np.empty(n, np.float32)

        def np_req_out():
            np.multiply(acc, rs, out=tmpf)
            np.rint(tmpf, out=tmpf)
            np.add(tmpf, np.float32(3), out=tmpf)
            np.clip(tmpf, -128, 127, out=tmpf)
            out_s8[...] = tmpf
        t_npo = median_time(np_req_out, repeat)
        row("requantize s32->s8", n, "**qkernels.requantize (double_round)**", t_qk, 5, t_torch)
        row("requantize s32->s8", n, "qkernels.requantize (double_round, out=)", t_out, 5, t_torch)
        row("requantize s32->s8", n, "qkernels.requantize (single_round)", t_qs, 5, t_torch)
        row("requantize s32->s8", n, "qkernels.requantize_float (fp32)", t_qf, 5, t_torch)
        row("requantize s32->s8", n, "qkernels.requantize_shift (half_up)", t_qsh, 5, t_torch)
        row("requantize s32->s8", n, "torch.quantize_per_tensor(acc.float())", t_torch, 5, t_torch)
        row("requantize s32->s8", n, "torch clamp(round(acc*s)+zp).to(int8)", t_tex, 5, t_torch)
        row("requantize s32->s8", n, "NumPy clip(rint(acc*s)+zp).astype", t_np, 5, t_torch)
        row("requantize s32->s8", n, "NumPy, same ops with out= buffers", t_npo, 5, t_torch)
        summary.append(f"requantize {n:,}: new array {t_torch / t_qk:.2f}x torch quantize_per_tensor"
                       f"(acc.float()), {t_tex / t_qk:.2f}x torch expression, {t_np / t_qk:.1f}x NumPy; "
                       f"out= {t_torch / t_out:.2f}x torch, {t_npo / t_out:.1f}x NumPy out= (ONNX Runtime "
                       "has no int32 -> int8 requantize op with a float scale); per scheme (new array) "
                       + ", ".join(f"{name} {t_torch / t:.2f}x torch / {t_np / t:.1f}x NumPy"
                                   for name, t in (("double_round", t_qk), ("single_round", t_qs),
                                                   ("fp32", t_qf), ("shift", t_qsh))))

    head = ["## Elementwise kernels (1 thread)", "",
            "Medians of repeated runs; each call allocates its output unless marked `out=`. A new "
            "output that glibc takes from the OS (blocks above its mmap threshold, which adapts at run "
            "time) costs page faults and zeroing on first touch: the two `floor:` rows show what "
            "filling a new float32 array, and storing into a reused one, cost with no computation at "
            "all; no kernel that returns a new array can beat the first. So the kernel-to-kernel "
            "comparison is the `out=` row against torch/ORT, and the NumPy comparison is like for "
            "like (both new arrays, or both `out=`). "
            "GB/s counts the bytes read and written (5 per element); DRAM ~25 GB/s, so the "
            "memory-bound limit for f32 -> u8 is about 5e9 elements/s (10^6 elements fit in the "
            "caches, 1.6x10^7 do not). Ratio = torch time / this time (> 1 is faster than torch).",
            "", "| op | elements | implementation | ms | Gelem/s | GB/s | vs torch |",
            "|---|---:|---|---:|---:|---:|---:|"]
    return "\n".join(head + rows + ["", "Summary (qkernels keyword API vs each):", ""]
                     + [f"- {s}" for s in summary]) + "\n"


SECTIONS: Dict[str, str] = {"elementwise": "", "gemm": "bench_gemm", "layernorm": "bench_layernorm",
                            "transformer": "bench_transformer", "models": "bench_models",
                            "zoo": "bench_zoo", "datagen": "bench_datagen"}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=sorted(SECTIONS), action="append",
                    help="run only these sections (repeatable)")
    ap.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    ap.add_argument("--write", action="store_true", help="rewrite BENCHMARKS.md with the results")
    args = ap.parse_args(argv)
    parts = [f"# qkernels benchmarks", "",
             f"Taken {datetime.date.today().isoformat()} with `python scripts/bench.py"
             f"{' --quick' if args.quick else ''}`.", "", f"Machine: {machine()}", "",
             f"Load average when the run started: {os.getloadavg()[0]:.2f}. This is a 2-vCPU virtual "
             "machine: one-thread figures repeat within about 10-15%, but two-thread figures (of "
             "qkernels, PyTorch and ONNX Runtime alike) swing by up to several times from run to "
             "run with the host's load; read the two-thread rows as indicative only.", ""]
    for name in args.only or list(SECTIONS):
        mod = SECTIONS[name]
        if not mod:
            text = bench_elementwise(args.quick)
        else:
            try:
                text = importlib.import_module(mod).run(quick=args.quick)
            except ModuleNotFoundError as exc:
                if exc.name != mod:
                    raise
                continue
        print(text, flush=True)
        parts.append(text)
    if args.write:
        path = os.path.join(ROOT, "BENCHMARKS.md")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write("\n".join(parts))
        os.replace(tmp, path)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
