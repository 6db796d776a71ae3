#!/usr/bin/env python
"""A/B speed of two qkernels trees (two builds, e.g. before and after a refactor) on the rows of
scripts/bench.py: the same workloads, qkernels calls only, in interleaved rounds.

    python scripts/bench_ab.py --a ../base --b . [--rounds 5] [--rows elementwise,gemm,layernorm,models]
    python scripts/bench_ab.py --a ../base --b . --rows transformers --cpu   # integer MiniLM
    python scripts/bench_ab.py --a ../base --b . --rows mbv2 --only t1 --cpu # mobilenet_v2's layers
    python scripts/bench_ab.py --a ../base --b . --rows zoo --zoo-models mobilenet_v2 --cpu

Each tree must have its extension built in place (``make build``, or ``python setup.py build_ext
--inplace`` with this venv's Python). One worker process per tree imports qkernels from its tree
and builds every row's workload; then, round after round, each row is timed in A and in B back
to back (median of repeated calls after a warm-up; the order alternates), so that a burst of load
from other processes hits both alike. The report gives, per row, the median over rounds of each
side, B/A (> 1: B slower), and each side's spread over rounds, (max - min) / median: on a shared
machine, a difference inside the spread is noise.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List

from benchutil import CONV, LINEAR, median_time

HERE = os.path.dirname(os.path.abspath(__file__))


# ---- the rows (mirroring scripts/bench.py and its sections) ----------------------------------
def rows_elementwise(qk, np) -> Dict[str, Callable[[], object]]:
    rng = np.random.default_rng(0)
    s, zp = np.float32(0.02), 128
    m0, sh = qk.quantize_multiplier(0.0007)
    rs = np.float32(0.0007)
    out: Dict[str, Callable[[], object]] = {}
    for n in (10 ** 6, 16 * 10 ** 6):
        x = (rng.standard_normal(n) * 2).astype(np.float32)
        q = qk.quantize(x, s, zp, dtype=np.uint8)
        acc = rng.integers(-(1 << 20), 1 << 20, n).astype(np.int32)
        ou8, of, os8 = np.empty(n, np.uint8), np.empty(n, np.float32), np.empty(n, np.int8)
        out.update({
            f"quantize f32->u8 {n}": lambda x=x: qk.quantize(x, s, zp, dtype=np.uint8),
            f"quantize f32->u8 out= {n}": lambda x=x, o=ou8: qk.quantize(x, s, zp, dtype=np.uint8, out=o),
            f"dequantize u8->f32 {n}": lambda q=q: qk.dequantize(q, s, zp),
            f"dequantize u8->f32 out= {n}": lambda q=q, o=of: qk.dequantize(q, s, zp, out=o),
            f"requantize double_round {n}": lambda a=acc: qk.requantize(a, m0, sh, 3),
            f"requantize double_round out= {n}": lambda a=acc, o=os8: qk.requantize(a, m0, sh, 3, out=o),
            f"requantize single_round {n}": lambda a=acc: qk.requantize(a, m0, sh, 3, scheme="single_round"),
            f"requantize_float {n}": lambda a=acc: qk.requantize_float(a, rs, 3),
            f"requantize_shift half_up {n}": lambda a=acc: qk.requantize_shift(a, 11, 3),
        })
    return out




def rows_gemm(qk, np) -> Dict[str, Callable[[], object]]:
    out: Dict[str, Callable[[], object]] = {}
    for t in (1, 2):
        for nb in (1, 8):
            for name, k, n in LINEAR:
                rng = np.random.default_rng(0)
                m = 197 * nb
                x = rng.integers(0, 128, (m, k)).astype(np.uint8)
                w = rng.integers(-127, 128, (n, k)).astype(np.int8)
                b = rng.normal(0, 1, n).astype(np.float32)
                p = qk.pack_linear(w, w_scale=0.01)
                out[f"{name} M={m} t{t}"] = (
                    lambda x=x, p=p, b=b, t=t: qk.qlinear(x, p, b, x_scale=0.05, x_zero_point=64,
                                                          out_scale=0.5, out_zero_point=128,
                                                          preset="fbgemm", threads=t))
            for name, c, h, o, k, s, pad, g in CONV:
                rng = np.random.default_rng(1)
                x = rng.integers(0, 128, (nb, c, h, h)).astype(np.uint8)
                w = rng.integers(-127, 128, (o, c // g, k, k)).astype(np.int8)
                b = rng.normal(0, 1, o).astype(np.float32)
                p = qk.pack_conv2d(w, groups=g, w_scale=0.01)
                out[f"{name} b{nb} t{t}"] = (
                    lambda x=x, p=p, b=b, s=s, pad=pad, t=t: qk.qconv2d(
                        x, p, b, stride=s, padding=pad, x_scale=0.05, x_zero_point=64,
                        out_scale=0.5, out_zero_point=128, preset="fbgemm", threads=t))
    return out


def rows_layernorm(qk, np) -> Dict[str, Callable[[], object]]:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((197, 384)) * np.linspace(0.2, 6, 384)).astype(np.float32)
    g = rng.normal(1, 0.1, 384).astype(np.float32)
    b = rng.normal(0, 0.1, 384).astype(np.float32)
    p = qk.ptf_calibrate(x, method="seed")
    q = qk.ptf_quantize(x, p.scale, p.alpha, p.zero_point)
    y = np.empty(q.shape, np.int8)
    out: Dict[str, Callable[[], object]] = {}
    for method in ("exact", "sole"):
        ln = qk.prepare_layernorm(p, g, b, method=method, out_scale=0.05)
        out[f"ptf_layernorm {method}"] = lambda ln=ln: qk.ptf_layernorm(q, ln, out=y)
    xx = np.resize(x, (4 * 10 ** 6 // 384, 384))
    qq = np.empty(xx.shape, np.uint8)
    out["ptf_quantize 4e6"] = lambda: qk.ptf_quantize(xx, p.scale, p.alpha, p.zero_point, out=qq)
    return out


def rows_models(qk, np) -> Dict[str, Callable[[], object]]:
    import warnings

    import torch
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    from qkernels.torch.convert import from_torch_quantized
    from qkernels.torch.quantize import quantize_model
    from qkernels.torch.reference_models import MODELS, digits, load

    warnings.filterwarnings("ignore")
    torch.backends.quantized.engine = "fbgemm"
    torch.set_num_threads(1)
    (xtr, _), (xte, _) = digits()
    calib = [xtr[i:i + 64] for i in range(0, 512, 64)]
    out: Dict[str, Callable[[], object]] = {}
    for name in MODELS:
        im = quantize_model(load(name), calib)
        prepared = prepare_fx(load(name), get_default_qconfig_mapping("fbgemm"),
                              example_inputs=(xtr[:2],))
        with torch.no_grad():
            for b in calib:
                prepared(b)
        ft = from_torch_quantized(convert_fx(prepared))
        for batch in (1, 32):
            xn = xte[:batch].numpy()
            for t in (1, 2):
                out[f"{name} quantize_model b{batch} t{t}"] = lambda im=im, xn=xn, t=t: im(xn, threads=t)
                out[f"{name} from_torch b{batch} t{t}"] = lambda ft=ft, xn=xn, t=t: ft(xn, threads=t)
    return out


# mobilenet_v2's conv layers at 224 (C, H, O, k, stride, groups; pad k // 2): every distinct
# 1x1 expand / project and depthwise shape, the order of the network
MBV2 = [(32, 112, 16, 1, 1, 1), (16, 112, 96, 1, 1, 1), (96, 56, 24, 1, 1, 1),
        (24, 56, 144, 1, 1, 1), (144, 56, 24, 1, 1, 1), (144, 28, 32, 1, 1, 1),
        (32, 28, 192, 1, 1, 1), (192, 28, 32, 1, 1, 1), (192, 14, 64, 1, 1, 1),
        (64, 14, 384, 1, 1, 1), (384, 14, 64, 1, 1, 1), (384, 14, 96, 1, 1, 1),
        (96, 14, 576, 1, 1, 1), (576, 14, 96, 1, 1, 1), (576, 7, 160, 1, 1, 1),
        (32, 112, 32, 3, 1, 32), (96, 112, 96, 3, 2, 96), (144, 56, 144, 3, 1, 144),
        (144, 56, 144, 3, 2, 144), (192, 28, 192, 3, 1, 192), (192, 28, 192, 3, 2, 192),
        (384, 14, 384, 3, 1, 384), (576, 14, 576, 3, 1, 576), (576, 14, 576, 3, 2, 576),
        (960, 7, 960, 3, 1, 960)]


def rows_mbv2(qk, np) -> Dict[str, Callable[[], object]]:
    """mobilenet_v2's conv layers (MBV2) alone, batch 1, 1 and 2 threads, the fbgemm preset with
    an 8-bit output (the model's prepared-conv runner: the per-call work of a model step)."""
    out: Dict[str, Callable[[], object]] = {}
    for c, h, o, k, s, g in MBV2:
        rng = np.random.default_rng(1)
        x = rng.integers(0, 128, (1, c, h, h)).astype(np.uint8)
        w = rng.integers(-127, 128, (o, c // g, k, k)).astype(np.int8)
        b = rng.normal(0, 1, o).astype(np.float32)
        conv = qk.prepare_qconv2d(w, b, stride=s, padding=k // 2, groups=g, x_dtype=np.uint8,
                                  x_scale=0.05, x_zero_point=64, w_scale=0.01, out_scale=0.5,
                                  out_zero_point=128, out_dtype=np.uint8, preset="fbgemm")
        run = conv.runner(x.shape)
        kind = "dw 3x3" if g > 1 else "1x1"
        for t in (1, 2):
            out[f"{kind}/{s} {c}->{o} @{h} t{t}"] = lambda run=run, x=x, t=t: run(x, t)
    return out


ZOO_MODELS = ["resnet18", "resnet50"]   # --zoo-models


def rows_zoo(qk, np) -> Dict[str, Callable[[], object]]:
    """torchvision models at 224x224 (scripts/zoo.py; resnet18 / resnet50 unless
    --zoo-models), batch 1 and 8, 1 and 2 threads."""
    from zoo import quantized

    out: Dict[str, Callable[[], object]] = {}
    for name in ZOO_MODELS:
        _, im = quantized(name, 224)
        for batch in (1, 8):
            x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
            for t in (1, 2):
                out[f"{name} b{batch} t{t}"] = lambda im=im, x=x, t=t: im(x, threads=t)
    return out


_KEEP: List[object] = []   # the transformer rows' swap contexts, open while the worker runs


def rows_transformers(qk, np) -> Dict[str, Callable[[], object]]:
    """MiniLM (all-MiniLM-L6-v2, offline package) at sequence 128, batch 1, swapped whole for
    the integer blocks (scripts/bench_int_transformers.py's model and input), static and token
    rows (``QuantConfig(token_rows=True)``), 1 and 2 threads; vit_b_16 (random weights, 224x224)
    the same way, 1 thread."""
    import contextlib

    import torch

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from bench_int_transformers import _minilm
    from qkernels.torch import TRANSFORMER_OPS, QuantConfig, swap

    out: Dict[str, Callable[[], object]] = {}
    for rows, tag in ((False, ""), (True, ", token rows")):
        for t in (1, 2):
            net, call, enc = _minilm()
            stack = contextlib.ExitStack()
            stack.enter_context(torch.no_grad())
            stack.enter_context(swap(net, [enc], ops=TRANSFORMER_OPS, threads=t,
                                     config=QuantConfig(token_rows=True) if rows else None))
            _KEEP.append(stack)

            def run(call=call, net=net, t=t) -> object:
                torch.set_num_threads(t)
                return call(net)
            out[f"MiniLM integer blocks{tag} s128 b1 t{t}"] = run
    from bench_int_transformers import _vit
    net, call, x = _vit()
    stack = contextlib.ExitStack()
    stack.enter_context(torch.no_grad())
    stack.enter_context(swap(net, [x], ops=TRANSFORMER_OPS, threads=1))
    _KEEP.append(stack)

    def run_vit(call=call, net=net) -> object:
        torch.set_num_threads(1)
        return call(net)
    out["vit_b_16 integer blocks b1 t1"] = run_vit
    return out


ROWS = {"elementwise": rows_elementwise, "gemm": rows_gemm, "layernorm": rows_layernorm,
        "models": rows_models, "zoo": rows_zoo, "transformers": rows_transformers,
        "mbv2": rows_mbv2}


def worker(tree: str, rows: List[str], cpu: bool = False) -> None:
    """Builds the rows, prints their names (one JSON line), then times the row named on each line
    of stdin and prints the median seconds, until stdin closes."""
    sys.path.insert(0, tree)
    import numpy as np

    import qkernels as qk
    assert os.path.dirname(os.path.dirname(os.path.abspath(qk.__file__))) == os.path.abspath(tree)
    fns: Dict[str, Callable[[], object]] = {}
    for r in rows:
        for name, fn in ROWS[r](qk, np).items():
            fns[f"{r}: {name}"] = fn
    print(json.dumps(list(fns)), flush=True)
    for line in sys.stdin:
        print(repr(median_time(fns[line.strip()], repeat=5, min_time=0.15,
                               clock=time.process_time if cpu else time.perf_counter)), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", required=True, help="tree A (the reference build)")
    ap.add_argument("--b", required=True, help="tree B (the build under test)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rows", default="elementwise,gemm,layernorm,models")
    ap.add_argument("--only", default=None, help="only the rows whose name contains this text")
    ap.add_argument("--zoo-models", default=",".join(ZOO_MODELS),
                    help="the zoo rows' models (comma-separated; scripts/zoo.py names)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--json", default=None, help="also write the raw samples here")
    ap.add_argument("--cpu", action="store_true",
                    help="time the process's CPU time instead of wall time (1-thread rows: the "
                         "work without the waits for a CPU on a loaded machine; a 2-thread row "
                         "would count its helper's spinning)")
    a = ap.parse_args()
    rows = a.rows.split(",")
    ZOO_MODELS[:] = a.zoo_models.split(",")
    if a.worker:
        worker(a.worker, rows, a.cpu)
        return 0
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    env.pop("QKERNELS_SIMD", None)
    procs = {side: subprocess.Popen([sys.executable, os.path.abspath(__file__), "--a", a.a, "--b",
                                     a.b, "--rows", a.rows, "--zoo-models", a.zoo_models,
                                     "--worker", tree]
                                    + (["--cpu"] if a.cpu else []),
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                    env=env)
             for side, tree in (("A", a.a), ("B", a.b))}
    names = [json.loads(procs[side].stdout.readline()) for side in ("A", "B")][0]
    names = [n for n in names if a.only is None or a.only in n]
    samples: Dict[str, Dict[str, List[float]]] = {"A": {n: [] for n in names},
                                                  "B": {n: [] for n in names}}

    def measure(side: str, name: str) -> float:
        p = procs[side]
        p.stdin.write(name + "\n")
        p.stdin.flush()
        return float(p.stdout.readline())

    for r in range(a.rounds):
        for k, name in enumerate(names):  # A and B of a row back to back, the order alternating
            for side in (("A", "B") if (r + k) % 2 == 0 else ("B", "A")):
                samples[side][name].append(measure(side, name))
        print(f"round {r + 1} done (load {os.getloadavg()[0]:.2f})", file=sys.stderr, flush=True)
    for p in procs.values():
        p.stdin.close()
        p.wait()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(samples, f)
    print(f"{a.rounds} rounds, A = {a.a}, B = {a.b}, {'CPU' if a.cpu else 'wall'} time; per row, A and B timed back to back in each "
          f"round (order alternating), medians over rounds in ms; spread = (max - min) / median "
          f"over rounds\n")
    print("| row | A ms | B ms | B/A | spread A | spread B |\n|---|---:|---:|---:|---:|---:|")
    for name in names:
        va, vb = samples["A"][name], samples["B"][name]
        ma, mb = statistics.median(va), statistics.median(vb)
        print(f"| {name} | {ma * 1e3:.4f} | {mb * 1e3:.4f} | {mb / ma:.3f} | "
              f"{(max(va) - min(va)) / ma:.1%} | {(max(vb) - min(vb)) / mb:.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
