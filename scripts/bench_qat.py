#!/usr/bin/env python
"""Power-of-two QAT on the reference models (digits): float / PTQ / weight-only QAT / full QAT
with learned power-of-two scales / final integer-exact accuracy at W8A8, W4A8 and W4A4, and the
same models, bit widths and epochs trained by Brevitas (fixed-point quantizers) in its own venv.

    python scripts/bench_qat.py                              # the table (ours only)
    python scripts/bench_qat.py --brevitas /work/venvs/brevitas/bin/python --write
    python scripts/bench_qat.py --only resnet --bits w4a4 --epochs 5

Every run: one torch thread, seed 0, AdamW, cosine schedule, batch 64, per-channel 4/8-bit
weights, symmetric signed activations, 32-bit bias, activation ranges calibrated on 8 training
batches; learned scales of full QAT start at the least-squared-error power of two
(``--scale-init mse``; ``ptq``: the PTQ's min-max ones); accuracies are on the 355 held-out digits at the LAST epoch (no selection on the test
set). Our runs and Brevitas's alternate (ours, theirs, ours, ...) so that both see the same load
on a shared machine; time per epoch is the median over epochs of the training loop alone.
``--write`` puts the tables into docs/qat_results.md (between the generated-table markers).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

BITS = {"w8a8": (8, 8), "w4a8": (4, 8), "w4a4": (4, 4)}
MODELS = ("mlp", "resnet", "mobilenetv2", "darknet")
BEGIN, END = "<!-- bench_qat.py: begin -->", "<!-- bench_qat.py: end -->"


def ours(model: str, bits: str, epochs: int, lr: float, mode: str, learn: bool, seed: int = 0,
         observer: str = "minmax", scale_init: str = "mse", scale_lr: float = 0.01
         ) -> Dict[str, Any]:
    import torch

    from qkernels.torch.qat import load_config, load_data, run_qat
    from qkernels.torch.reference_models import load

    torch.set_num_threads(1)
    wb, ab = BITS[bits]
    cfg = load_config(None, {
        "quantization": {"weight": {"bitwidth": wb, "per_channel": True},
                         "input": {"bitwidth": ab}, "output": {"bitwidth": ab}},
        "training": {"epochs": epochs, "learning_rate": lr, "weight_decay": 0.0,
                     "scheduler": {"type": "CosineAnnealingLR"}, "seed": seed},
        "ptq": {"calibration_batches": 8, "observer": observer},
        "qat": {"mode": mode, "learn_scales": learn, "scale_init": scale_init,
                "scale_learning_rate": scale_lr}})
    t0 = time.perf_counter()
    res = run_qat(cfg, load(model), load_data("digits"))
    r, k = res.report, res.report["qkernels"]
    diff = k.get("integer_vs_fake_quant", [])
    return {"float": r["initial_accuracy"], "ptq_weights": r["ptq_accuracy"],
            "ptq_integer": k["ptq_integer_exact_accuracy"], "qat_model": k["qat_model_accuracy"],
            "final_fake_quant": r["final_accuracy"], "integer": k["integer_exact_accuracy"],
            "pytorch_fake_quant": k["pytorch_fake_quant_accuracy"],
            "max_steps_int_vs_fq": max((d["max_steps"] for d in diff), default=None),
            "max_frac_int_vs_fq": max((d["fraction_differing"] for d in diff), default=None),
            "seconds_per_epoch": k.get("seconds_per_epoch"), "seconds": time.perf_counter() - t0}


def theirs(python: str, model: str, bits: str, epochs: int, lr: float, seed: int = 0
           ) -> Dict[str, Any]:
    wb, ab = BITS[bits]
    cmd = [python, os.path.join(ROOT, "scripts", "bench_qat_brevitas.py"), "--model", model,
           "--wbits", str(wb), "--abits", str(ab), "--epochs", str(epochs), "--lr", str(lr),
           "--seed", str(seed)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _pool(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Accuracies averaged over the seeds (with their range), times pooled (median), the
    integer-vs-fake-quant differences at their worst."""
    import statistics

    out: Dict[str, Any] = {"seeds": len(runs), "runs": runs}
    for k, v in runs[0].items():
        vals = [r[k] for r in runs if r.get(k) is not None]
        if not vals or not isinstance(vals[0], (int, float)):
            out[k] = v
        elif k.startswith("max_"):
            out[k] = max(vals)
        elif k == "seconds_per_epoch":
            out[k] = statistics.median(vals)
        else:
            out[k] = statistics.fmean(vals)
            out[k + "_range"] = (min(vals), max(vals))
    return out


def fmt(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=MODELS, action="append")
    ap.add_argument("--bits", choices=sorted(BITS), action="append")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seeds", type=int, default=1,
                    help="seeds 0..N-1 per row (accuracies averaged, times pooled)")
    ap.add_argument("--observer", default="minmax", help="ptq.observer of our runs")
    ap.add_argument("--scale-init", default="mse", choices=("mse", "ptq"),
                    help="qat.scale_init of our full QAT runs (default mse)")
    ap.add_argument("--scale-lr", type=float, default=0.01,
                    help="qat.scale_learning_rate of our full QAT runs (default 0.01)")
    ap.add_argument("--brevitas", help="python of the Brevitas venv (runs the comparison)")
    ap.add_argument("--write", action="store_true", help="write the tables to docs/qat_results.md")
    ap.add_argument("--section", default="",
                    help="with --write: the generated block named NAME (markers "
                    "'<!-- bench_qat.py NAME: begin -->' ... 'end -->'; default the main table)")
    ap.add_argument("--json", help="also dump every result to this file")
    args = ap.parse_args()
    rows: List[Dict[str, Any]] = []
    for model in args.only or MODELS:
        for bits in args.bits or list(BITS):
            row: Dict[str, Any] = {"model": model, "bits": bits}
            runs: Dict[str, List[Dict[str, Any]]] = {"weight_only": [], "brevitas": [], "full": []}
            for seed in range(args.seeds):
                runs["weight_only"].append(ours(model, bits, args.epochs, args.lr, "weight_only",
                                                False, seed, args.observer))
                if args.brevitas:
                    runs["brevitas"].append(theirs(args.brevitas, model, bits, args.epochs,
                                                   args.lr, seed))
                runs["full"].append(ours(model, bits, args.epochs, args.lr, "full", True, seed,
                                         args.observer, args.scale_init, args.scale_lr))
            for k, v in runs.items():
                if v:
                    row[k] = _pool(v)
            rows.append(row)
            f, w = row["full"], row["weight_only"]
            b = row.get("brevitas", {})
            print(f"{model:12s} {bits}  float {fmt(f['float'])}  PTQ {fmt(f['ptq_integer'])}  "
                  f"wQAT {fmt(w['integer'])}  full QAT {fmt(f['qat_model'])}  integer "
                  f"{fmt(f['integer'])}  ({fmt(f['seconds_per_epoch'])} s/epoch)" +
                  (f"  Brevitas {fmt(b.get('accuracy'))} ({fmt(b.get('seconds_per_epoch'))} "
                   "s/epoch)" if b else ""), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    text = tables(rows, args)
    print(text)
    if args.write:
        path = os.path.join(ROOT, "docs", "qat_results.md")
        with open(path) as fh:
            doc = fh.read()
        begin, end = (BEGIN, END) if not args.section else (
            f"<!-- bench_qat.py {args.section}: begin -->", f"<!-- bench_qat.py {args.section}: end -->")
        if begin not in doc or end not in doc:
            raise SystemExit(f"{path}: no {begin} ... {end} block")
        a, b = doc.index(begin) + len(begin), doc.index(end)
        from qkernels.io import atomic_write_text
        atomic_write_text(path, doc[:a] + "\n" + text + doc[b:])
        print(f"wrote {path}")
    return 0


def _acc(d: Dict[str, Any], k: str) -> str:
    r = d.get(k + "_range")
    if r is None or d.get("seeds", 1) == 1:
        return fmt(d.get(k))
    return f"{d[k]:.2f} [{r[0]:.2f}, {r[1]:.2f}]"


def tables(rows: List[Dict[str, Any]], args: argparse.Namespace) -> str:
    import platform

    import torch
    cmd = " ".join(sys.argv[1:])
    lines = [f"Generated by `python scripts/bench_qat.py {cmd}` ({platform.machine()}, torch "
             f"{torch.__version__}, 1 thread, {time.strftime('%Y-%m-%d')}); "
             + (f"accuracies are means over seeds 0..{args.seeds - 1}, [min, max] beside them."
                if args.seeds > 1 else "seed 0."), "",
             "| model | bits | float | PTQ (integer) | weight-only QAT -> PTQ (integer) | "
             "full QAT, learned pow2 scales (fake quant) | final integer-exact | "
             "integer vs fake quant: max steps / max fraction differing |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        f, w = r["full"], r["weight_only"]
        lines.append(f"| {r['model']} | {r['bits'].upper()} | {fmt(f['float'])} | "
                     f"{fmt(f['ptq_integer'])} | {_acc(w, 'integer')} | {_acc(f, 'qat_model')} | "
                     f"**{_acc(f, 'integer')}** | {f['max_steps_int_vs_fq']:.0f} / "
                     f"{100 * f['max_frac_int_vs_fq']:.2f}% |")
    if any("brevitas" in r for r in rows):
        lines += ["", "| model | bits | ours: final integer-exact | Brevitas (fake quant) | "
                  "ours - Brevitas | ours s/epoch | Brevitas s/epoch |", "|---|---|---|---|---|---|---|"]
        for r in rows:
            if "brevitas" not in r:
                continue
            f, b = r["full"], r["brevitas"]
            lines.append(f"| {r['model']} | {r['bits'].upper()} | {_acc(f, 'integer')} | "
                         f"{_acc(b, 'accuracy')} | {f['integer'] - b['accuracy']:+.2f} | "
                         f"{fmt(f['seconds_per_epoch'])} | {fmt(b['seconds_per_epoch'])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
