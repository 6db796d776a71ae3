#!/usr/bin/env python
"""Benchmark section: MiniLM and vit_b_16 with every encoder block integer (qkernels.torch.swap,
ops=TRANSFORMER_OPS), batch 1, beside PyTorch's quantize_dynamic model and the float model.

    python scripts/bench_int_transformers.py              # the section, to stdout
    python scripts/bench_int_transformers.py --write      # ... and replace it in BENCHMARKS.md
    python scripts/bench_int_transformers.py --profile    # cProfile of the integer models

Per model and thread count (1 and 2: torch.set_num_threads and qkernels' threads= matched), three
models in one process timed round-robin (every contender sees the same bursts of load from other
processes on this shared machine): the float model, PyTorch's ``quantize_dynamic`` model (fbgemm,
qint8 weights: float attention, softmax, GELU and LayerNorm), and the float model calibrated and
swapped whole for qkernels' integer blocks (int8 Linears, int32 Q K^T, I-BERT softmax, P V, i-GELU,
int32 residual, PTF LayerNorm; float only at the embedding / patch embedding and at the last
output); MiniLM also in the token-rows form (``QuantConfig(token_rows=True)``: int16 residual
stream and LayerNorm, every Linear's input quantized to uint8 per token at run time). MiniLM: all-MiniLM-L6-v2 (the embedded package, offline), sequence 128, calibrated on
that input. vit_b_16: torchvision's architecture with random weights (seed 0; speed does not
depend on them), 224x224, calibrated on that image.
"""
from __future__ import annotations

import contextlib
import copy
import datetime
import os
import statistics
import sys
import time
import warnings
from typing import Any, Callable, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench_transformer import section_main  # noqa: E402

HEADING = "## MiniLM and vit_b_16 with integer encoder blocks, batch 1 (issue 16)"
SEQ = 128


def _minilm() -> Tuple[Any, Callable[[Any], Any], Any]:
    """(float model, input -> output, input)."""
    from minilm_accuracy import load_minilm

    net, tok = load_minilm()
    text = " ".join(["integer kernels compute the same bits as the runtime they name"] * 40)
    enc = dict(tok([text], padding="max_length", truncation=True, max_length=SEQ,
                   return_tensors="pt"))
    assert tuple(enc["input_ids"].shape) == (1, SEQ)
    return net, (lambda m: m(**enc)), enc


def _vit() -> Tuple[Any, Callable[[Any], Any], Any]:
    import torch

    from vit_accuracy import import_torchvision, untrained_fixups

    tv = import_torchvision()
    torch.manual_seed(0)
    net = tv.models.vit_b_16(weights=None).eval()
    untrained_fixups(net)
    x = torch.randn(1, 3, 224, 224)
    return net, (lambda m: m(x)), x


def _round_robin(fns: List[Callable[[], Any]],
                 rounds: int) -> Tuple[List[float], List[float]]:
    """Medians of wall time and of the process's CPU time (all its threads: on a loaded machine
    the waits stay out of it), round-robin: per round each model runs once untimed, then 3 timed
    calls."""
    wall: List[List[float]] = [[] for _ in fns]
    cpu: List[List[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for i, f in enumerate(fns):
            f()
            for _ in range(3):
                t0, c0 = time.perf_counter(), time.process_time()
                f()
                cpu[i].append(time.process_time() - c0)
                wall[i].append(time.perf_counter() - t0)
    return [statistics.median(v) for v in wall], [statistics.median(v) for v in cpu]


def _contenders(name: str, threads: int) -> Tuple[List[Tuple[str, Callable[[], Any]]], Any]:
    import torch

    from qkernels.torch import TRANSFORMER_OPS, QuantConfig, swap

    net, call, inp = _minilm() if name == "MiniLM" else _vit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dyn = torch.ao.quantization.quantize_dynamic(copy.deepcopy(net), {torch.nn.Linear},
                                                     dtype=torch.qint8)
    qk_int = copy.deepcopy(net)
    stack = contextlib.ExitStack()
    stack.enter_context(swap(qk_int, [inp], ops=TRANSFORMER_OPS, threads=threads))
    cands = [("float32 model (PyTorch)", lambda: call(net)),
             ("PyTorch quantize_dynamic (fbgemm, qint8)", lambda: call(dyn)),
             ("qkernels integer blocks (swap, TRANSFORMER_OPS)", lambda: call(qk_int))]
    if name == "MiniLM":   # the token-rows block form (QuantConfig(token_rows=True))
        qk_rows = copy.deepcopy(net)
        stack.enter_context(swap(qk_rows, [inp], config=QuantConfig(token_rows=True),
                                 ops=TRANSFORMER_OPS, threads=threads))
        cands.append(("qkernels integer blocks, token rows", lambda: call(qk_rows)))
    return cands, stack


def run(quick: bool = False, profile: bool = False) -> str:
    import torch

    torch.backends.quantized.engine = "fbgemm"
    load = os.getloadavg()[0]
    rows = []
    for name in ("MiniLM", "vit_b_16"):
        for threads in (1, 2):
            torch.set_num_threads(threads)
            cands, stack = _contenders(name, threads)
            with stack, torch.no_grad():
                if profile:
                    import cProfile
                    import pstats
                    for label, f in cands[2:]:
                        for _ in range(2):
                            f()
                        pr = cProfile.Profile(time.thread_time)
                        pr.enable()
                        for _ in range(5):
                            f()
                        pr.disable()
                        print(f"---- {name}, {threads} thread(s), {label}: 5 calls")
                        pstats.Stats(pr).sort_stats("tottime").print_stats(24)
                    continue
                rounds = (3 if quick else 8) if name == "vit_b_16" else (4 if quick else 12)
                ts, cpu = _round_robin([f for _, f in cands], rounds)
            rows.append((name, threads, ts[:3], cpu[:3]))
            if len(ts) > 3:   # the token-rows form, beside the same float and dynamic runs
                rows.append((f"{name}, token rows", threads, ts[:2] + ts[3:], cpu[:2] + cpu[3:]))
    if profile:
        return ""
    lines = [HEADING, "",
             f"Taken {datetime.date.today().isoformat()} with `python "
             f"scripts/bench_int_transformers.py{' --quick' if quick else ''}`; load average at "
             f"the start {load:.2f} (a shared 2-vCPU AMD Zen 4 machine: medians of round-robin "
             "rounds, wall time, and the process's CPU time over all its threads, which leaves "
             "out the waits of a loaded machine but counts both threads' work at 2 threads). "
             "Batch 1; MiniLM (all-MiniLM-L6-v2, offline package) at "
             f"sequence {SEQ}; vit_b_16 (torchvision, random weights) at 224x224. The integer "
             "model is the float model calibrated on its input and swapped whole "
             "(`swap(model, [input], ops=TRANSFORMER_OPS, threads=t)`); `vs dynamic` = "
             "PyTorch quantize_dynamic's time / the integer model's (> 1: the integer model is "
             "faster). `MiniLM, token rows`: the same model swapped with "
             "`config=QuantConfig(token_rows=True)` (int16 residual stream and LayerNorm, "
             "per-token uint8 Linear inputs), timed in the same rounds as the row above it.", "",
             "| model | threads | float32 ms | PyTorch quantize_dynamic ms | qkernels integer "
             "blocks ms | vs dynamic | CPU ms: float32 / dynamic / integer | vs dynamic (CPU) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, threads, ts, cpu in rows:
        lines.append(f"| {name} | {threads} | {ts[0] * 1e3:.1f} | {ts[1] * 1e3:.1f} | "
                     f"{ts[2] * 1e3:.1f} | {ts[1] / ts[2]:.2f}x | {cpu[0] * 1e3:.1f} / "
                     f"{cpu[1] * 1e3:.1f} / {cpu[2] * 1e3:.1f} | {cpu[1] / cpu[2]:.2f}x |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    return section_main(__doc__, run, HEADING, argv)


if __name__ == "__main__":
    sys.exit(main())
