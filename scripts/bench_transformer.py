#!/usr/bin/env python
"""Benchmark section for the integer transformer kernels (called by scripts/bench.py, or alone).

    python scripts/bench_transformer.py            # the section, to stdout
    python scripts/bench_transformer.py --write    # ... and replace its section in BENCHMARKS.md

One thread unless a row says otherwise (torch.set_num_threads, ONNX Runtime intra_op_num_threads
and qkernels' threads= matched); medians of round-robin rounds (benchutil.median_times: every
contender sees the same bursts of load from other processes on this shared machine).
Shapes: softmax over (12, 197, 197) (ViT-B attention), GELU on (197, 1536) (a ViT-B-sized FFN
block), the attention matmuls of MiniLM (12 heads, sequence 128, head dim 32) and ViT-B
(12 heads, 197, 64).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Callable, List, Optional, Tuple

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import qkernels as qk  # noqa: E402
from benchutil import median_times, ort_session  # noqa: E402

HEADING = "## Integer transformer kernels (issue 16)"


def _fmt(rows: List[Tuple[str, str, Optional[float]]], ref: Optional[float]) -> List[str]:
    out = []
    for what, impl, t in rows:
        if t is None:
            continue
        ratio = f"{ref / t:.2f}x" if ref else ""
        out.append(f"| {what} | {impl} | {t * 1e3:.3f} | {ratio} |")
    return out


def _ort_qlinearmatmul(a: np.ndarray, b: np.ndarray):
    try:
        from onnx import helper
    except ImportError:
        return None
    node = helper.make_node("QLinearMatMul", ["a", "sa", "za", "b", "sb", "zb", "so", "zo"], ["y"])
    inits = [("sa", np.float32(0.05)), ("za", np.zeros((), a.dtype)), ("sb", np.float32(0.05)),
             ("zb", np.zeros((), b.dtype)), ("so", np.float32(0.5)), ("zo", np.zeros((), a.dtype))]
    s = ort_session(node, [("a", a), ("b", b)], a.dtype, inits)
    return lambda: s.run(None, {"a": a, "b": b})


def run(quick: bool = False) -> str:
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(1)
    min_time = 0.15 if quick else 0.6
    rng = np.random.default_rng(0)
    import datetime
    lines = [HEADING, "",
             f"Taken {datetime.date.today().isoformat()} with `python scripts/bench_transformer.py"
             f"{' --quick' if quick else ''}` (a section of scripts/bench.py); load average at the "
             f"start {os.getloadavg()[0]:.2f}.", "",
             "One thread (PyTorch, ONNX Runtime and qkernels alike) unless marked; medians of "
             "round-robin rounds on this shared 2-vCPU machine. `vs torch` = the PyTorch float32 "
             "op's time / this time (> 1: faster). The integer kernels take 8-bit or int32 input "
             "and write 8-bit output (qkernels keyword API, allocating its output).", ""]

    # ---- softmax ----
    x = rng.normal(0, 2.0, (12, 197, 197)).astype(np.float32)
    xt = torch.from_numpy(x)
    q8 = np.clip(np.rint(x / 0.08), -128, 127).astype(np.int8)
    q32 = np.rint(x / 1e-3).astype(np.int32)
    out8 = np.empty(q8.shape, np.uint8)
    cands: List[Tuple[str, str, Optional[Callable[[], object]]]] = [
        ("softmax (12,197,197)", "torch.softmax, float32", lambda: torch.softmax(xt, -1))]
    for m in ("ibert", "sole", "lut"):
        p = qk.prepare_softmax(0.08, method=m)
        cands.append(("softmax (12,197,197)", f"qsoftmax {m}, int8 -> uint8",
                      lambda p=p: qk.qsoftmax(q8, p)))
    p = qk.prepare_softmax(0.08, method="ibert")
    cands.append(("softmax (12,197,197)", "qsoftmax ibert, int8 -> uint8, out=",
                  lambda: qk.qsoftmax(q8, p, out=out8)))
    # int32 Q K^T sums: scale 1e-3, and 3e-4 (MiniLM's layers have s_q s_k / sqrt(32) from
    # 2.5e-4 to 6.5e-4)
    q32r = np.rint(x / 3e-4).astype(np.int32)
    for m in ("ibert", "sole"):
        for s32, qx in ((1e-3, q32), (3e-4, q32r)):
            p32 = qk.prepare_softmax(s32, method=m)
            cands.append(("softmax (12,197,197)", f"qsoftmax {m}, int32 (scale {s32:g}) -> uint8",
                          lambda p32=p32, qx=qx: qk.qsoftmax(qx, p32)))
    for s32, qx in ((1e-3, q32), (3e-4, q32r)):
        pe = qk.prepare_softmax(s32, method="exp2", output="rowmax")
        cands.append(("softmax (12,197,197)", f"qsoftmax exp2, int32 (scale {s32:g}) -> uint8 "
                      f"rowmax (the MiniLM token-rows block's form)",
                      lambda pe=pe, qx=qx: qk.qsoftmax(qx, pe)))
    ts = median_times([c[2] for c in cands], min_time=min_time)
    rows = [(c[0], c[1], t) for c, t in zip(cands, ts)]
    lines += ["| op | implementation | ms | vs torch |", "|---|---|---:|---:|"]
    lines += _fmt(rows, ts[0])

    # ---- GELU ----
    g = rng.normal(0, 1.5, (197, 1536)).astype(np.float32)
    gt = torch.from_numpy(g)
    g8 = np.clip(np.rint(g / 0.05), -128, 127).astype(np.int8)
    g32 = np.rint(g / 1e-4).astype(np.int32)
    sc = np.full(1536, 1e-4, np.float32) * (1 + rng.random(1536, dtype=np.float32))
    g32c = np.rint(g / sc).astype(np.int32)
    cands = [("GELU (197,1536)", "torch.nn.functional.gelu, float32", lambda: F.gelu(gt))]
    pl = qk.prepare_gelu(0.05, method="lut", out_scale=0.05)
    cands.append(("GELU (197,1536)", "qgelu lut, int8 -> int8", lambda: qk.qgelu(g8, pl)))
    pi = qk.prepare_gelu(0.05, out_scale=0.05)
    cands.append(("GELU (197,1536)", "qgelu ibert, int8 -> int8", lambda: qk.qgelu(g8, pi)))
    p32 = qk.prepare_gelu(1e-4, out_scale=0.05)
    cands.append(("GELU (197,1536)", "qgelu ibert, int32 -> int8", lambda: qk.qgelu(g32, p32)))
    pc = qk.prepare_gelu(sc, out_scale=0.05)
    cands.append(("GELU (197,1536)", "qgelu ibert, int32 per-channel scale -> int8",
                  lambda: qk.qgelu(g32c, pc)))
    osc = (0.03 * (1 + rng.random(1536))).astype(np.float32)
    pcu = qk.prepare_gelu(sc, out_scale=osc, out_dtype=np.uint8)
    cands.append(("GELU (197,1536)", "qgelu ibert, int32 per-channel scale -> uint8 per-channel "
                  "out scale (the MiniLM static block's form)", lambda: qk.qgelu(g32c, pcu)))
    pin = qk.prepare_gelu(sc, method="interp", out_scale=osc, out_dtype=np.uint8)
    cands.append(("GELU (197,1536)", "qgelu interp, int32 per-channel scale -> uint8 per-channel "
                  "out scale", lambda: qk.qgelu(g32c, pin)))
    pin32 = qk.prepare_gelu(sc, method="interp", out_scale=2e-5, out_dtype=np.int32)
    cands.append(("GELU (197,1536)", "qgelu interp, int32 per-channel scale -> int32 (the "
                  "MiniLM token-rows block's form)", lambda: qk.qgelu(g32c, pin32)))
    ts = median_times([c[2] for c in cands], min_time=min_time)
    lines += _fmt([(c[0], c[1], t) for c, t in zip(cands, ts)], ts[0])

    lines += ["", "8-bit inputs run from 256-entry tables (the method's own integers for each "
              "possible input, evaluated once a call) with AVX-512 / AVX2 row loops. int32 input "
              "(16 lanes on AVX-512, 8 on AVX2): I-BERT's i-exp and i-erf in int32 lanes, their "
              "final rounding (RNE of z m16 / 2^(e16-30+q), and i-GELU's requantization to 8 "
              "bits) from float32 products within a proven error bound, lanes that may sit on "
              "the other side of a tie redone in exact integers; SOLE's k from 15 thresholds "
              "found once a call (k is monotone in max - x). i-GELU to int32 output keeps the "
              "exact 96-bit requantization (8 int64 lanes). All bit-identical to the scalar C."
              " exp2 (softmax): exact integer lanes, the two 32-entry exponent tables in AVX-512 "
              "registers (permutes, no gather). interp (GELU), AVX-512: both requantizations "
              "exact in 64-bit lanes, the 3 x 96 segment tables in registers (permutes). interp,"
              " AVX2 (no 32-bit gathers, 32 elements a step): the input's requantization exact "
              "from per-channel constants made once a call (multiply, add, variable shift per "
              "half; lanes that could saturate flagged), the segment's A, B, C read by vpshufb "
              "from 16-entry byte chunks (XOR of differenced chunks), B f + C w by vpmaddwd; the"
              " 8-bit output's requantization in float within a proven bound (lanes near a tie "
              "redone exactly), the int32 output's exact like the input's. Both bit-identical to"
              " the scalar C."]

    # ---- attention matmuls ----
    lines += ["", "Attention matmuls: `Q K^T` is (H, S, d) x (H, S, d)^T, `P V` is (H, S, S) x "
              "(H, S, d). torch.ops.quantized.matmul on x86 dequantizes, runs the float matmul and "
              "quantizes (no integer kernel); ONNX Runtime QLinearMatMul is integer (MLAS). "
              "qmatmul: exact int32 sums, fp32 requantization (preset onnxruntime), int8 or uint8 "
              "out.", "",
              "| op | implementation | ms | vs torch float |", "|---|---|---:|---:|"]
    for name, h, s, d in (("MiniLM", 12, 128, 32), ("ViT-B", 12, 197, 64)):
        for op in ("Q K^T", "P V"):
            if op == "Q K^T":
                a = rng.integers(-128, 128, (h, s, d)).astype(np.int8)
                b = rng.integers(-128, 128, (h, s, d)).astype(np.int8)
                fa, fb = torch.randn(h, s, d), torch.randn(h, s, d).transpose(-1, -2)
                tb, bb = True, b
                bkn = np.ascontiguousarray(np.swapaxes(b, 1, 2))
                kw = dict(a_scale=0.05, b_scale=0.05, out_scale=0.5)
            else:
                a = rng.integers(0, 256, (h, s, s)).astype(np.uint8)
                bkn = rng.integers(0, 256, (h, s, d)).astype(np.uint8)
                fa, fb = torch.rand(h, s, s), torch.randn(h, s, d)
                tb, bb = False, bkn
                kw = dict(a_scale=1 / 256, b_scale=0.05, out_scale=0.05, b_zero_point=128,
                          out_zero_point=128)
            what = f"{name} {op} ({h},{s},{d})"
            qa = torch._make_per_tensor_quantized_tensor(torch.from_numpy(a), 0.05, 0)
            qb = torch._make_per_tensor_quantized_tensor(torch.from_numpy(bkn), 0.05, 0)
            cands = [(what, "torch.matmul, float32", lambda fa=fa, fb=fb: torch.matmul(fa, fb)),
                     (what, "torch.ops.quantized.matmul (fbgemm build)",
                      lambda qa=qa, qb=qb: torch.ops.quantized.matmul(qa, qb, 0.5, 0)),
                     (what, "ONNX Runtime QLinearMatMul", _ort_qlinearmatmul(a, bkn)),
                     (what, "qkernels.qmatmul", lambda a=a, bb=bb, tb=tb, kw=kw:
                      qk.qmatmul(a, bb, transpose_b=tb, threads=1, **kw)),
                     (what, "qkernels.matmul_int32 (int32 out)", lambda a=a, bb=bb, tb=tb:
                      qk.matmul_int32(a, bb, transpose_b=tb, threads=1))]
            ts = median_times([c[2] for c in cands], min_time=min_time)
            lines += _fmt([(c[0], c[1], t) for c, t in zip(cands, ts)], ts[0])
    return "\n".join(lines) + "\n"


def replace_section(path: str, heading: str, text: str) -> None:
    """Replace the section that starts with `heading` (up to the next '## ') in the markdown file,
    or append it; atomic (temp file, then rename)."""
    old = open(path).read() if os.path.exists(path) else ""
    lines = old.split("\n")
    try:
        i = next(k for k, ln in enumerate(lines) if ln.strip() == heading.strip())
        j = next((k for k in range(i + 1, len(lines)) if lines[k].startswith("## ")), len(lines))
        new = "\n".join(lines[:i] + text.rstrip("\n").split("\n") + [""] + lines[j:])
    except StopIteration:
        new = old.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n"
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(new)
    os.replace(tmp, path)


def section_main(doc: str, run, heading: str, argv=None) -> int:
    """The command line of a script that prints one BENCHMARKS.md section: ``--quick``,
    ``--profile`` (cProfile instead of the table), ``--write`` (replace the section)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--profile", action="store_true", help="cProfile the qkernels models")
    ap.add_argument("--write", action="store_true", help="replace this section in BENCHMARKS.md")
    args = ap.parse_args(argv)
    text = run(args.quick, args.profile)
    print(text)
    if args.write and text:
        replace_section(os.path.join(ROOT, "BENCHMARKS.md"), heading, text)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--write", action="store_true", help="replace this section in BENCHMARKS.md")
    args = ap.parse_args(argv)
    text = run(args.quick)
    print(text)
    if args.write:
        replace_section(os.path.join(ROOT, "BENCHMARKS.md"), HEADING, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
