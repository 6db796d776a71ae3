#!/usr/bin/env python
"""Where a whole model's time goes, layer by layer, qkernels beside OpenVINO (issue 19).

    python scripts/profile_zoo.py                                 # the unmet rows, batch 1, 1 thread
    python scripts/profile_zoo.py --models resnet50 --batch 8 --threads 2 --top 15
    python scripts/profile_zoo.py --perf 5                        # + perf record of both loops
    python scripts/profile_zoo.py --write                         # replace its BENCHMARKS.md section

The models are scripts/bench_zoo.py's (same float network, same calibration images, same
PyTorch FX model imported by qkernels, same QDQ ``.onnx`` read by OpenVINO; see its docstring),
built by ``bench_zoo.build``. For each model, batch and thread count, in one process, in
interleaved rounds (each round: qkernels' whole forward, qkernels' plan step by step, OpenVINO's
whole forward, OpenVINO's forward with per-node profiling), medians over the rounds:

- **qkernels**: every step of the IntegerModel's compiled plan timed on its own
  (``benchutil.run_plan_steps``: the plan's own kernel calls, in order, a clock read around each),
  grouped by kind (``benchutil.plan_steps``: conv by window / stride / depthwise, "+add" when the
  residual add runs in the conv's call, add, pools, cat, quantize ...); each conv / linear with
  its MACs, GMAC/s and % of the micro-kernel peak. The peak is measured here, first: the best
  GMAC/s of a few prepared 8-bit conv / linear calls at the micro-kernel's sweet spot (3x3 convs
  whose tiles fill the register block, a GEMM with K large), one thread, the minimum time of
  single calls (the kernel's own rate, free of other processes' preemption). Sum of the step medians
  vs the whole forward's median = what the per-step Python costs (the plan's loop, the output
  dequantize); at one thread also in this thread's CPU time (an extra stepped run timed with
  ``time.thread_time``), which a loaded machine's waits for a CPU do not inflate.
- **OpenVINO** (CPU plugin, int8, the same threads, one stream): its per-node profile
  (``PERF_COUNT``: ``request.get_profiling_info()``, real_time of each executed node) of the
  same rounds; each executed node mapped to the same kinds through the ONNX nodes it fused
  (the compiled model's ``originalLayersNames``): a node holding a Conv is that conv's kind
  ("+add" when it fused the residual Add), else the ONNX op it runs (pools, Concat, the input's
  QuantizeLinear ...), else its own type (layout reorders). Convs are paired layer for layer with
  qkernels' by (kind, output shape), in order.

Optional ``--perf SECONDS``: ``perf record -e cpu-clock`` of this process while it loops each
runtime's forward for SECONDS, and the top symbols with their share (``perf report --no-children
--sort dso,sym``); said so when perf is not usable (no perf, perf_event_paranoid, a VM without
counters: the software cpu-clock event still samples there).

OpenVINO is a benchmark peer only; like bench_zoo.py, this script re-runs itself under
$QKERNELS_OPENVINO_PYTHON (default /work/venvs/openvino/bin/python) when this Python lacks it,
and profiles qkernels alone (saying so) when there is none.
"""
from __future__ import annotations

import argparse
import collections
import datetime
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import bench_zoo  # noqa: E402  (the models, the QDQ export, the OpenVINO request)
from benchutil import PlanStep, conv_kind, plan_steps, run_plan_steps  # noqa: E402

HEADING = "## Where the time goes (issue 19)"
# the rows of the zoo table below 1.0x OpenVINO (BENCHMARKS.md, 2026-12-07)
UNMET = ("resnet50", "resnet18", "inception_v3", "googlenet", "mobilenet_v2")

# 8-bit calls at the micro-kernel's sweet spot: (label, kind, shape); the peak is the best
PEAK_SHAPES = [("conv 3x3 128->128 @28", "conv", (128, 28, 128, 3)),
               ("conv 3x3 256->256 @14", "conv", (256, 14, 256, 3)),
               ("linear 784x1152 -> 256", "linear", (784, 1152, 256)),
               ("linear 196x2304 -> 256", "linear", (196, 2304, 256))]


def _log(s: str) -> None:
    print(s, file=sys.stderr, flush=True)


# ---- the micro-kernel's peak, measured here ---------------------------------------------------
def measure_peak(calls: int = 60, max_s: float = 0.6) -> Tuple[float, str]:
    """(GMAC/s, label): the best one-thread rate of the PEAK_SHAPES calls (prepared, fbgemm
    preset, uint8 x int8 -> uint8), each the minimum over up to `calls` single calls (at most
    `max_s` seconds a shape): a call of a millisecond or so that no other process preempted."""
    import qkernels as qk

    rng = np.random.default_rng(0)
    best, label = 0.0, ""
    for name, kind, shp in PEAK_SHAPES:
        if kind == "conv":
            c, h, o, k = shp
            x = rng.integers(0, 128, (1, c, h, h)).astype(np.uint8)
            w = rng.integers(-127, 128, (o, c, k, k)).astype(np.int8)
            prep = qk.prepare_qconv2d(qk.pack_conv2d(w, w_scale=0.01), np.zeros(o, np.float32),
                                      x_dtype=np.uint8, padding=k // 2, x_scale=0.05,
                                      x_zero_point=64, out_scale=0.5, out_zero_point=128,
                                      preset="fbgemm")
            macs = prep.macs(x.shape)
        else:
            m, kk, n = shp
            x = rng.integers(0, 128, (m, kk)).astype(np.uint8)
            w = rng.integers(-127, 128, (n, kk)).astype(np.int8)
            prep = qk.prepare_qlinear(qk.pack_linear(w, w_scale=0.01), np.zeros(n, np.float32),
                                      x_dtype=np.uint8, x_scale=0.05, x_zero_point=64,
                                      out_scale=0.5, out_zero_point=128, preset="fbgemm")
            macs = m * kk * n

        def call(prep: Any = prep, x: np.ndarray = x) -> Any:
            return prep(x, threads=1)
        call()
        ts: List[float] = []
        end = time.perf_counter() + max_s
        while len(ts) < calls and (len(ts) < 5 or time.perf_counter() < end):
            t0 = time.perf_counter()
            call()
            ts.append(time.perf_counter() - t0)
        g = macs / min(ts) / 1e9
        if g > best:
            best, label = g, name
    return best, label


# ---- OpenVINO's executed nodes, in qkernels' kinds -------------------------------------------
class OnnxOp(NamedTuple):
    """An ONNX node of the QDQ model: its op type and, for a Conv, its kind."""

    op_type: str
    kind: str


def onnx_ops(path: str) -> Dict[str, OnnxOp]:
    """Node name and output names -> :class:`OnnxOp` for every node of the ONNX model at `path`
    (a Conv's kind from its attributes and its weight's shape, through the weight's
    DequantizeLinear in a QDQ model)."""
    import onnx
    from onnx import numpy_helper

    g = onnx.load(path).graph
    dims = {i.name: tuple(i.dims) for i in g.initializer}
    made = {o: n for n in g.node for o in n.output}
    for n in g.node:          # constants as nodes
        if n.op_type == "Constant" and n.attribute:
            dims[n.output[0]] = tuple(numpy_helper.to_array(n.attribute[0].t).shape)

    def wdims(name: str) -> Tuple[int, ...]:
        while name not in dims and name in made and made[name].op_type in (
                "DequantizeLinear", "QuantizeLinear", "Identity", "Cast"):
            name = made[name].input[0]
        return dims.get(name, ())

    res: Dict[str, OnnxOp] = {}
    for n in g.node:
        kind = ""
        if n.op_type == "Conv":
            a = {x.name: onnx.helper.get_attribute_value(x) for x in n.attribute}
            w = wdims(n.input[1])
            ks = list(a.get("kernel_shape", w[2:] if len(w) == 4 else (1, 1)))
            groups = int(a.get("group", 1))
            cin = (w[1] if len(w) == 4 else 0) * groups
            kind = conv_kind(int(ks[0]), int(ks[1]), int(max(a.get("strides", [1]))), groups, cin)
        op = OnnxOp(n.op_type, kind)
        for key in [n.name] + list(n.output):
            if key:
                res.setdefault(key, op)
    return res


class OVNode(NamedTuple):
    """An executed node of OpenVINO's compiled model: name, kind, the ONNX Conv it runs ("" if
    none), output shape, OpenVINO's layer type and implementation (exec type)."""

    name: str
    kind: str
    conv: str
    shape: Tuple[int, ...]
    layer_type: str
    exec_type: str


# ONNX op types -> kinds, in the order a fused node's ops are looked at (first match wins)
_ONNX_KINDS = [("Gemm", "linear"), ("MatMul", "linear"), ("MaxPool", "max pool"),
               ("AveragePool", "avg pool"), ("GlobalAveragePool", "global avg pool"),
               ("ReduceMean", "global avg pool"), ("Concat", "cat"), ("Add", "add"),
               ("Mul", "mul"), ("Relu", "activation"), ("Clip", "activation"),
               ("HardSigmoid", "activation"), ("HardSwish", "activation"),
               ("Sigmoid", "activation"), ("Flatten", "reshape"), ("Reshape", "reshape"),
               ("QuantizeLinear", "quantize"), ("DequantizeLinear", "dequantize")]
# OpenVINO layer types that say the kind whatever ONNX nodes they fused (a FullyConnected fuses
# the output's QuantizeLinear, a Reorder names the conv it feeds)
_OV_FIRST = {"FullyConnected": "linear", "Concatenation": "cat", "Reorder": "reorder (layout)"}
# the kind of a node that holds no ONNX op of _ONNX_KINDS (added by OpenVINO's transformations,
# e.g. the subsampling MaxPool it puts before a strided 1x1 conv); else "<type> (OpenVINO's own)"
_OV_OWN = {"Reshape": "reshape"}


def classify_ov_node(name: str, layer_type: str, original: Sequence[str],
                     ops: Dict[str, OnnxOp]) -> Tuple[str, str]:
    """(kind, ONNX Conv name or "") of an OpenVINO executed node: `name`, its `layer_type` and
    the `original` ONNX node names it fused (``originalLayersNames``), with `ops` from
    :func:`onnx_ops`. A Conv among them gives its kind (+ " +add" with an Add); else the first
    ONNX op of _ONNX_KINDS; else the OpenVINO type.

    Example:
        >>> ops = {"/c/Conv": OnnxOp("Conv", "conv 3x3"), "/Add": OnnxOp("Add", "")}
        >>> classify_ov_node("/c/Conv/WithoutBiases", "Convolution",
        ...                  ["/c/Conv/WithoutBiases", "Multiply_1", "/c/Conv", "/Add"], ops)
        ('conv 3x3 +add', '/c/Conv')
    """
    found = [(n, ops[n]) for n in map(_onnx_name, list(original) + [name]) if n in ops]
    convs = [(n, o) for n, o in found if o.op_type == "Conv"]
    if convs:
        n, o = convs[0]
        return o.kind + (" +add" if any(f.op_type == "Add" for _, f in found) else ""), n
    if layer_type in _OV_FIRST:
        return _OV_FIRST[layer_type], ""
    types = {o.op_type for _, o in found}
    for t, kind in _ONNX_KINDS:
        if t in types:
            return kind, ""
    return _OV_OWN.get(layer_type, f"{layer_type} (OpenVINO's own)"), ""


def _onnx_name(name: str) -> str:
    """The ONNX node name an OpenVINO name derives from: without the suffixes its
    transformations add ("/WithoutBiases", "/DequantizationMultiply", "_1" of a copy)."""
    for suffix in ("/DequantizationMultiply", "/WithoutBiases"):
        if name.endswith(suffix):
            name = name[:-len(suffix)]
    base, _, n = name.rpartition("_")
    return base if n.isdigit() and "QuantizeLinear" in base else name


def ov_nodes(compiled: Any, ops: Dict[str, OnnxOp]) -> Dict[str, OVNode]:
    """Executed node name -> :class:`OVNode` of an OpenVINO compiled model (its runtime model's
    nodes; those OpenVINO marks not executed are left out)."""
    res = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        rt = op.get_rt_info()
        info = {k: rt[k].astype(str) for k in rt.keys()}
        if info.get("execTimeMcs") == "not_executed" or info.get("layerType") in ("Const", "Input",
                                                                                  "Output"):
            continue
        name = op.get_friendly_name()
        orig = [s for s in info.get("originalLayersNames", "").split(",") if s]
        kind, conv = classify_ov_node(name, info.get("layerType", ""), orig, ops)
        shape = tuple(int(d) for d in op.get_output_partial_shape(0).to_shape()) \
            if op.get_output_size() and op.get_output_partial_shape(0).is_static else ()
        res[name] = OVNode(name, kind, conv, shape, info.get("layerType", ""),
                           info.get("primitiveType", ""))
    return res


def pair_convs(qk_steps: Sequence[PlanStep], ov: Sequence[OVNode]) -> Dict[int, str]:
    """qkernels step index -> OpenVINO node name, for the conv / linear steps: paired by (kind
    without "+add", output shape) in order of appearance (the k-th of a key with the k-th)."""
    def key(kind: str, shape: Tuple[int, ...]) -> Tuple[str, Tuple[int, ...]]:
        return kind.replace(" +add", ""), tuple(shape)
    queues: Dict[Any, List[str]] = collections.defaultdict(list)
    for n in ov:
        if n.conv or n.kind == "linear":
            queues[key(n.kind, n.shape)].append(n.name)
    res = {}
    for s in qk_steps:
        if s.macs:
            q = queues.get(key(s.kind, s.shape))
            if q:
                res[s.index] = q.pop(0)
    return res


# ---- one profile: qkernels' steps and OpenVINO's nodes, interleaved --------------------------
class Profile(NamedTuple):
    model: str
    batch: int
    threads: int
    rounds: int
    steps: List[PlanStep]
    step_ms: List[float]             # median per step
    qk_whole_ms: float
    chunks: int                      # >1: Plan.run splits this batch into chunks run at once
    ov: Dict[str, OVNode]
    ov_ms: Dict[str, float]          # median per executed node
    ov_whole_ms: Optional[float]
    ov_note: str
    step_min_ms: Optional[List[float]] = None   # minimum per step (a loaded machine's quiet moments)
    cpu_whole_ms: Optional[float] = None        # one thread: the whole forward's CPU time (median)
    cpu_steps_ms: Optional[float] = None        # ... and the sum of the steps' CPU-time medians
    proc_ms: Optional[float] = None             # qkernels' whole forward, the process's CPU time
    ov_proc_ms: Optional[float] = None          # OpenVINO's, the same


def _chunks(plan: Any, batch: int, threads: int) -> int:
    """How many chunks Plan.run splits this batch into (1: none); its own rule."""
    from qkernels.torch import _runtime as rt
    if threads <= 1 or not getattr(plan, "per_sample", False):
        return 1
    c = min(threads, batch // 4,
            batch * plan.macs_per_image() // getattr(rt, "_MACS_PER_CHUNK", 64_000_000))
    return c if c > 1 else 1


def profile(name: str, zm: Any, batch: int, threads: int, rounds: int, ov_core: Any,
            ov_precision: str, ops: Optional[Dict[str, OnnxOp]]) -> Profile:
    """Interleaved rounds of the four runs (see the module docstring); medians."""
    import torch

    torch.set_num_threads(1)
    im = zm.qk_model
    x = np.ascontiguousarray(zm.xtest[:batch].numpy())
    steps = plan_steps(im, x, threads)
    plan = im._plan
    runs: List[Callable[[], Any]] = [lambda: im(x, threads=threads),
                                     lambda: run_plan_steps(plan, [x], threads)]
    # one thread: qkernels' work is all on this thread; its CPU time, free of the waits for a
    # CPU that other processes cause, gives the per-step overhead on a loaded machine too
    cpu = threads == 1
    if cpu:
        runs.append(lambda: run_plan_steps(plan, [x], threads, clock=time.thread_time))
    n_qk = len(runs)
    ov_req = ov_prof = None
    nodes: Dict[str, OVNode] = {}
    note = ""
    if ov_core is not None and zm.qdq is not None:
        ov_req, _ = bench_zoo.ov_request(ov_core, zm.qdq, x.shape, threads, ov_precision)
        m = ov_core.read_model(zm.qdq)
        m.reshape(list(x.shape))
        cm = ov_core.compile_model(m, "CPU", {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1,
                                              "PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": True,
                                              "INFERENCE_PRECISION_HINT": ov_precision})
        ov_prof = cm.create_infer_request()
        ov_prof.infer({0: x})
        nodes = ov_nodes(cm, ops or {})
        runs += [lambda: ov_req.infer({0: x}), lambda: ov_prof.infer({0: x})]
    else:
        note = "OpenVINO not profiled: " + ("not installed" if ov_core is None else "no QDQ model")
    for f in runs:                    # warm-up
        f()
        f()
    whole, whole_cpu, stepped, stepped_cpu, ov_whole = [], [], [], [], []
    whole_proc: List[float] = []      # CPU time of the process (all its threads)
    ov_proc: List[float] = []
    ov_times: Dict[str, List[float]] = collections.defaultdict(list)
    for _ in range(rounds):
        for i, f in enumerate(runs):
            if threads > 1:           # the previous runtime's pool asleep, this one's awake
                f()
            c0, p0 = time.thread_time(), time.process_time()
            t0 = time.perf_counter()
            r = f()
            dt = time.perf_counter() - t0
            dc, dp = time.thread_time() - c0, time.process_time() - p0
            if i == 0:
                whole.append(dt)
                whole_cpu.append(dc)
                whole_proc.append(dp)
            elif i == 1:
                stepped.append(r[1])
            elif i == 2 and cpu:
                stepped_cpu.append(r[1])
            elif i == n_qk:
                ov_whole.append(dt)
                ov_proc.append(dp)
            else:
                for p in ov_prof.get_profiling_info():
                    if p.node_name in nodes:
                        ov_times[p.node_name].append(p.real_time.total_seconds())
    step_ms = [statistics.median(s[i] for s in stepped) * 1e3 for i in range(len(steps))]
    step_min = [min(s[i] for s in stepped) * 1e3 for i in range(len(steps))]
    ov_ms = {n: statistics.median(v) * 1e3 for n, v in ov_times.items()}
    return Profile(name, batch, threads, rounds, steps, step_ms, statistics.median(whole) * 1e3,
                   _chunks(plan, batch, threads), nodes, ov_ms,
                   statistics.median(ov_whole) * 1e3 if ov_whole else None, note, step_min,
                   statistics.median(whole_cpu) * 1e3 if cpu else None,
                   sum(statistics.median(s[i] for s in stepped_cpu)
                       for i in range(len(steps))) * 1e3 if cpu else None,
                   statistics.median(whole_proc) * 1e3,
                   statistics.median(ov_proc) * 1e3 if ov_proc else None)


# ---- the tables -------------------------------------------------------------------------------
def _ms(v: Optional[float]) -> str:
    return "—" if v is None else f"{v:.2f}"


def kind_rows(p: Profile) -> List[Tuple[str, int, float, int, float, int]]:
    """(kind, qkernels steps, qkernels ms, OpenVINO nodes, OpenVINO ms, MACs) per kind, by
    qkernels' time then OpenVINO's, largest first."""
    qk: Dict[str, List[float]] = collections.defaultdict(lambda: [0, 0.0, 0])
    for s, t in zip(p.steps, p.step_ms):
        v = qk[s.kind]
        v[0] += 1
        v[1] += t
        v[2] += s.macs
    ov: Dict[str, List[float]] = collections.defaultdict(lambda: [0, 0.0])
    for n, node in p.ov.items():
        if n in p.ov_ms:
            ov[node.kind][0] += 1
            ov[node.kind][1] += p.ov_ms[n]
    kinds = sorted(set(qk) | set(ov), key=lambda k: (-qk[k][1] if k in qk else 0,
                                                     -ov[k][1] if k in ov else 0))
    return [(k, int(qk[k][0]) if k in qk else 0, qk[k][1] if k in qk else 0.0,
             int(ov[k][0]) if k in ov else 0, ov[k][1] if k in ov else 0.0,
             int(qk[k][2]) if k in qk else 0) for k in kinds]


def render(p: Profile, peak: float, top: int) -> List[str]:
    """The markdown of one profile: summary lines, the per-kind table, the top-`top` layers."""
    qsum = sum(p.step_ms)
    macs = sum(s.macs for s in p.steps)
    conv_ms = sum(t for s, t in zip(p.steps, p.step_ms) if s.macs)
    out = [f"### {p.model}, batch {p.batch}, {p.threads} thread{'s' if p.threads > 1 else ''}", ""]
    lines = [f"qkernels: whole forward {p.qk_whole_ms:.2f} ms (median of {p.rounds}); its "
             f"{len(p.steps)} plan steps sum to {qsum:.2f} ms, so {p.qk_whole_ms - qsum:+.2f} ms "
             f"({100 * (p.qk_whole_ms - qsum) / p.qk_whole_ms:+.1f}%) is outside the steps (the "
             f"plan's Python loop, input / output handling); conv + linear: {macs / 1e9:.3f} "
             f"GMAC in {conv_ms:.2f} ms = {macs / conv_ms / 1e6:.0f} GMAC/s "
             f"({100 * macs / conv_ms / 1e6 / (peak * p.threads):.0f}% of {p.threads} x the "
             f"{peak:.0f} GMAC/s peak), {100 * conv_ms / qsum:.0f}% of the steps' time; whole "
             f"network {macs / p.qk_whole_ms / 1e6:.0f} GMAC/s."]
    if p.step_min_ms:
        cmin = sum(t for s, t in zip(p.steps, p.step_min_ms) if s.macs)
        lines.append(f"At each step's minimum over the rounds (the machine's quiet moments): steps "
                     f"{sum(p.step_min_ms):.2f} ms, conv + linear {macs / cmin / 1e6:.0f} GMAC/s "
                     f"({100 * macs / cmin / 1e6 / (peak * p.threads):.0f}% of peak).")
    if p.cpu_whole_ms is not None and p.cpu_steps_ms is not None:
        d = p.cpu_whole_ms - p.cpu_steps_ms
        lines.append(f"In this thread's CPU time (no waits for a CPU, so it holds on a loaded "
                     f"machine too): whole forward {p.cpu_whole_ms:.2f} ms, steps "
                     f"{p.cpu_steps_ms:.2f} ms, outside the steps {d:+.2f} ms "
                     f"({100 * d / p.cpu_whole_ms:+.1f}%).")
    if p.chunks > 1:
        lines.append(f"The plan runs this batch as {p.chunks} chunks at once (one thread each); "
                     f"the steps were timed on the whole batch with {p.threads} threads per call.")
    if p.ov_ms:
        osum = sum(p.ov_ms.values())
        lines.append(f"OpenVINO: whole forward {_ms(p.ov_whole_ms)} ms (without profiling), "
                     f"{len(p.ov_ms)} executed nodes sum to {osum:.2f} ms (with profiling); "
                     f"qkernels / OpenVINO: {p.qk_whole_ms / p.ov_whole_ms:.2f}x the time, "
                     f"steps {qsum / osum:.2f}x the nodes, gap {qsum - osum:+.2f} ms.")
        if p.proc_ms is not None and p.ov_proc_ms:
            lines.append(f"CPU time of the process (all threads, spinning included) per forward: "
                         f"qkernels {p.proc_ms:.2f} ms, OpenVINO {p.ov_proc_ms:.2f} ms "
                         f"({p.proc_ms / p.ov_proc_ms:.2f}x).")
    else:
        lines.append(p.ov_note + ".")
    out += [" ".join(lines), ""]
    out += ["| kind | qkernels steps | qkernels ms | OpenVINO nodes | OpenVINO ms | gap ms | "
            "qkernels GMAC/s | % of peak |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for k, qn, qms, on, oms, kmacs in kind_rows(p):
        rate = (f"{kmacs / qms / 1e6:.0f} | {100 * kmacs / qms / 1e6 / (peak * p.threads):.0f}%"
                if kmacs and qms else "— | —")
        gap = f"{qms - oms:+.2f}" if p.ov_ms else "—"
        out.append(f"| {k} | {qn or '—'} | {_ms(qms) if qn else '—'} | {on or '—'} | "
                   f"{_ms(oms) if on else '—'} | {gap} | {rate} |")
    pairs = pair_convs(p.steps, [p.ov[n] for n in p.ov])
    convs = sorted((i for i, s in enumerate(p.steps) if s.macs), key=lambda i: -p.step_ms[i])
    paired = (f"; {len(pairs)} paired with an OpenVINO node by kind and output shape"
              if p.ov_ms else "")
    out += ["", f"The {min(top, len(convs))} slowest conv / linear steps of qkernels (of "
            f"{len(convs)}{paired}):",
            "", "| layer | kind | output | MMAC | qkernels ms | GMAC/s | % of peak | OpenVINO ms | "
            "OpenVINO GMAC/s | OpenVINO impl |", "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for i in convs[:top]:
        s, t = p.steps[i], p.step_ms[i]
        g = s.macs / t / 1e6
        on = p.ov.get(pairs.get(i, ""))
        ot = p.ov_ms.get(on.name) if on is not None else None
        ov_cols = (f"{ot:.3f} | {s.macs / ot / 1e6:.0f} | {on.exec_type}" if ot else "— | — | —")
        out.append(f"| {s.layer} | {s.kind} | {'x'.join(map(str, s.shape[1:]))} | "
                   f"{s.macs / 1e6:.1f} | {t:.3f} | {g:.0f} | "
                   f"{100 * g / (peak * p.threads):.0f}% | {ov_cols} |")
    return out + [""]


# ---- perf ----------------------------------------------------------------------------------
def perf_usable() -> Tuple[bool, str]:
    """(usable, why not / how): ``perf record -e cpu-clock`` of a trivial command."""
    perf = shutil.which("perf")
    if perf is None:
        return False, "perf is not installed"
    with tempfile.TemporaryDirectory() as d:
        r = subprocess.run([perf, "record", "-q", "-e", "cpu-clock", "-o",
                            os.path.join(d, "p.data"), "true"], capture_output=True, text=True)
        if r.returncode != 0:
            return False, f"perf record failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}"
        s = subprocess.run([perf, "stat", "-x,", "-e", "cycles", "true"], capture_output=True,
                           text=True)
    hw = "<not supported>" not in s.stderr and s.returncode == 0
    return True, ("software cpu-clock sampling" + ("" if hw else
                  "; hardware counters (cycles) not supported here (a VM without a PMU): "
                  "no perf stat of cycles / IPC"))


def perf_top(fn: Callable[[], Any], seconds: float, n: int = 12) -> List[Tuple[float, str]]:
    """``perf record -e cpu-clock`` of this process while `fn` loops for `seconds`: the top `n`
    (share %, "dso: symbol") of ``perf report --no-children --sort dso,sym``."""
    with tempfile.TemporaryDirectory() as d:
        data = os.path.join(d, "perf.data")
        rec = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "999", "-p",
                                str(os.getpid()), "-o", data], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            fn()
        rec.send_signal(signal.SIGINT)
        rec.wait(timeout=60)
        rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                              "--sort", "dso,sym"], capture_output=True, text=True)
    shares: Dict[str, float] = collections.defaultdict(float)
    for line in rep.stdout.splitlines():
        f = line.split()
        if len(f) >= 3 and f[0].endswith("%") and not line.startswith("#"):
            try:
                share = float(f[0].rstrip("%"))
            except ValueError:
                continue
            if f[1].startswith("[JIT]"):      # generated code (OpenVINO's kernels): no symbols
                shares["[JIT]: generated code, all addresses"] += share
                continue
            sym = " ".join(f[3:]) if f[2].startswith("[") else " ".join(f[2:])
            shares[f"{f[1]}: {sym}"] += share
    return sorted(((v, k) for k, v in shares.items()), reverse=True)[:n]


# ---- the section ------------------------------------------------------------------------------
def run(models: Sequence[str] = UNMET, batches: Sequence[int] = (1,),
        threads: Sequence[int] = (1,), rounds: int = 15, top: int = 10, calib: int = 8,
        perf: float = 0.0, ov_precision: str = "f32") -> str:
    """The markdown section (re-run under OPENVINO_PYTHON when this Python has no openvino)."""
    argv = _argv(models, batches, threads, rounds, top, calib, perf, ov_precision)
    text = bench_zoo.openvino_rerun(__file__, argv, _log)
    if text is not None:
        return text
    import torch

    warnings.filterwarnings("ignore")
    torch.backends.quantized.engine = "fbgemm"
    why = bench_zoo._have("openvino") or bench_zoo._have("onnxruntime.quantization")
    ov_core = None
    if why is None:
        import openvino as ov
        ov_core = ov.Core()
    else:
        _log(f"OpenVINO not profiled: {why}")
    start_load = os.getloadavg()[0]
    _log("measuring the micro-kernel peak ...")
    peak, peak_label = measure_peak()
    _log(f"peak {peak:.0f} GMAC/s ({peak_label})")
    perf_ok, perf_how = perf_usable() if perf else (False, "")
    rng = torch.Generator().manual_seed(1)
    workdir = tempfile.mkdtemp(prefix="profile_zoo_")
    body: List[str] = []
    try:
        for name in models:
            _log(f"{name}: building, quantizing, exporting ...")
            zm = bench_zoo.build(name, calib, max(8, *batches), rng, workdir, onnx=why is None)
            ops = onnx_ops(zm.qdq) if zm.qdq else None
            for t in threads:
                for b in batches:
                    _log(f"{name} b{b} t{t}: {rounds} rounds ...")
                    p = profile(name, zm, b, t, rounds, ov_core, ov_precision, ops)
                    body += render(p, peak, top)
                    _log("\n".join(body[-40:]))
                    if perf and perf_ok:
                        body += _perf_lines(zm, b, t, perf, ov_core, ov_precision)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        torch.set_num_threads(1)
    opts = "".join(" " + a for a in argv)
    head = [HEADING, "",
            f"Taken {datetime.date.today().isoformat()} with `python scripts/profile_zoo.py{opts}`; "
            f"load average at the start {start_load:.2f}, at the end "
            f"{os.getloadavg()[0]:.2f}.", "",
            f"Machine and versions: {bench_zoo.versions()}.", "",
            "The models and the two runtimes' inputs are the four-runtime table's "
            "(scripts/bench_zoo.py: qkernels runs PyTorch's FX fbgemm model, OpenVINO the QDQ "
            "`.onnx` of the same float network, int8, its float layers in "
            f"{ov_precision}, threads matched, one stream). In interleaved rounds: qkernels' "
            "whole forward, its compiled plan step by step (each step's kernel call timed alone), "
            "OpenVINO's forward, and OpenVINO's forward with per-node profiling "
            "(`get_profiling_info`, real time per executed node); medians over the rounds, ms. "
            "Steps and nodes grouped by kind: a conv by window, stride, depthwise, \"+add\" when "
            "the residual add runs in the conv's call (both runtimes fuse it), OpenVINO's nodes "
            "by the ONNX ops they fused (`originalLayersNames`); \"gap\" = qkernels ms - OpenVINO "
            "ms. % of peak: GMAC/s over threads x the micro-kernel peak measured in this run, "
            f"**{peak:.0f} GMAC/s per thread** (the best of {len(PEAK_SHAPES)} prepared 8-bit "
            f"calls at one thread, {peak_label}; the minimum time of single calls). OpenVINO's per-node "
            "times are taken with its profiling on (a little slower than its plain forward, "
            "given beside).", ""]
    if perf and not perf_ok:
        head += [f"perf: not usable here ({perf_how}).", ""]
    elif perf:
        head += [f"perf: `perf record -e cpu-clock -F 999` of this process, {perf:g} s of each "
                 f"runtime's forward in a loop, `perf report --no-children --sort dso,sym` "
                 f"({perf_how}).", ""]
    return "\n".join(head + body).rstrip("\n") + "\n"


def _perf_lines(zm: Any, b: int, t: int, seconds: float, ov_core: Any,
                ov_precision: str) -> List[str]:
    im = zm.qk_model
    x = np.ascontiguousarray(zm.xtest[:b].numpy())
    out = []
    fns = [("qkernels", lambda: im(x, threads=t))]
    if ov_core is not None and zm.qdq is not None:
        req, _ = bench_zoo.ov_request(ov_core, zm.qdq, x.shape, t, ov_precision)
        fns.append(("OpenVINO", lambda: req.infer({0: x})))
    for who, f in fns:
        f()
        top = perf_top(f, seconds)
        out.append(f"perf, {who} (top symbols, share of the samples): " + "; ".join(
            f"{sym} {share:.1f}%" for share, sym in top) + ".")
        out.append("")
    return out


def _argv(models: Sequence[str], batches: Sequence[int], threads: Sequence[int], rounds: int,
          top: int, calib: int, perf: float, ov_precision: str) -> List[str]:
    """The command-line options that give these run() arguments (defaults left out)."""
    a = [] if tuple(models) == UNMET else ["--models", *models]
    for k, v, d in (("--batch", batches, (1,)), ("--threads", threads, (1,))):
        if tuple(v) != d:
            a += [k, *map(str, v)]
    for k, v, d in (("--rounds", rounds, 15), ("--top", top, 10), ("--calib", calib, 8)):
        if v != d:
            a += [k, str(v)]
    a += ["--perf", f"{perf:g}"] if perf else []
    return a + (["--ov-precision", ov_precision] if ov_precision != "f32" else [])


def main(argv: Optional[List[str]] = None) -> int:
    names = [n for n, _ in bench_zoo.MODELS]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", choices=names, default=list(UNMET), metavar="NAME",
                    help=f"any of {', '.join(names)} (default: {' '.join(UNMET)})")
    ap.add_argument("--batch", nargs="+", type=int, default=[1])
    ap.add_argument("--threads", nargs="+", type=int, default=[1])
    ap.add_argument("--rounds", type=int, default=15, help="interleaved rounds (default 15)")
    ap.add_argument("--top", type=int, default=10, help="slowest conv / linear layers shown")
    ap.add_argument("--calib", type=int, default=8, help="calibration images (default 8)")
    ap.add_argument("--perf", type=float, default=0.0, metavar="SECONDS",
                    help="also perf record each runtime's loop for SECONDS")
    ap.add_argument("--ov-precision", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--write", action="store_true", help="replace this section in BENCHMARKS.md")
    args = ap.parse_args(argv)
    if min(args.batch) < 1 or min(args.threads) < 1 or args.rounds < 1 or args.top < 0 \
            or args.calib < 1 or args.perf < 0:
        ap.error("--batch, --threads, --rounds, --calib must be >= 1, --top and --perf >= 0")
    text = run(args.models, args.batch, args.threads, args.rounds, args.top, args.calib,
               args.perf, args.ov_precision)
    print(text)
    if args.write:
        from bench_transformer import replace_section
        replace_section(os.path.join(ROOT, "BENCHMARKS.md"), HEADING, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
