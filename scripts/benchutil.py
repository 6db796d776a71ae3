"""Timing and machine description shared by the benchmark scripts (bench.py and its sections)."""
from __future__ import annotations

import platform
import statistics
import time
from typing import Any, Callable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np


def median_time(fn: Callable[[], object], repeat: int, min_time: float = 0.2,
                clock: Callable[[], float] = time.perf_counter) -> float:
    """Median seconds of one call; each sample runs the call enough times to last ~min_time/repeat.
    ``clock``: wall time by default; ``time.process_time`` gives the CPU time of the process (all
    its threads: on a loaded machine, the work of a 1-thread call without the waits for a CPU)."""
    fn()
    t0 = clock()
    fn()
    once = max(clock() - t0, 1e-7)
    inner = max(1, int(min_time / repeat / once))
    samples = []
    for _ in range(repeat):
        t0 = clock()
        for _ in range(inner):
            fn()
        samples.append((clock() - t0) / inner)
    return statistics.median(samples)


def median_times(fns: List[Optional[Callable[[], object]]], min_time: float = 0.3,
                  max_rounds: int = 100, block: int = 5, warm: int = 2,
                  warm_s: float = 0.02) -> List[Optional[float]]:
    """Median time of each callable, sampled round-robin in short blocks: per round, each
    callable runs `warm` untimed calls then `block` timed ones, so that a burst of load from other
    processes on a shared machine hits every contender alike. The untimed calls matter with
    several threads: each runtime's pool (OpenMP, ORT's, qkernels') keeps its threads spinning
    for a while after a call, and on a machine with few cores the previous contender's spinning
    threads would otherwise steal the cores of the next one's first calls (PyTorch's OpenMP
    threads spin for about 200 ms: with several threads, pass warm_s=0.25)."""
    live = [f for f in fns if f is not None]
    for f in live:
        f()
    samples: List[List[float]] = [[] for _ in fns]
    start = time.perf_counter()
    rounds = 0
    while rounds < 3 or (time.perf_counter() - start < min_time * len(live) and rounds < max_rounds):
        for i, f in enumerate(fns):
            if f is None:
                continue
            t_end = time.perf_counter() + warm_s
            for _ in range(warm):
                f()
            while time.perf_counter() < t_end:
                f()
            for _ in range(block):
                t0 = time.perf_counter()
                f()
                samples[i].append(time.perf_counter() - t0)
        rounds += 1
    return [statistics.median(s) if s else None for s in samples]


def replace_table_section(path: str, headings: Sequence[str], text: str, end_mark: str) -> None:
    """Replace a generated section of the markdown file at `path` by `text` (which ends with the
    line `end_mark`) and keep the notes written below it by hand. The section starts at the first
    line equal to one of `headings` (the current one first, then older names of it) and runs to
    the next '## ' line; what the last --write produced ends at its `end_mark` line; a section
    written before the mark existed ends after its first table. Everything after that end, up to
    the next section, stays below the new text. No such section: `text` is appended. Atomic
    (temp file, then rename).

    Example:
        >>> replace_table_section("BENCHMARKS.md", ("## Mine",), "## Mine\n\n|a|\n\n<!--e-->\n",
        ...                       "<!--e-->")  # doctest: +SKIP
    """
    import os

    if text.rstrip("\n").split("\n")[-1] != end_mark:
        raise ValueError("text: its last line must be end_mark")
    old = open(path).read() if os.path.exists(path) else ""
    lines = old.split("\n")
    wanted = [h.strip() for h in headings]
    starts = [k for h in wanted for k, ln in enumerate(lines) if ln.strip() == h]
    if not starts:
        new = old.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n"
    else:
        i = starts[0]
        j = next((k for k in range(i + 1, len(lines)) if lines[k].startswith("## ")), len(lines))
        mark = next((k for k in range(i + 1, j) if lines[k].strip() == end_mark.strip()), None)
        if mark is not None:
            end = mark + 1
        else:   # the first table's last row
            first = next((k for k in range(i + 1, j) if lines[k].startswith("|")), None)
            end = j if first is None else next(
                (k for k in range(first, j) if not lines[k].startswith("|")), j)
        notes = lines[end:j]
        while notes and not notes[0].strip():
            notes = notes[1:]
        keep = [""] + notes if any(n.strip() for n in notes) else [""]
        new = "\n".join(lines[:i] + text.rstrip("\n").split("\n") + keep + lines[j:])
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(new)
    os.replace(tmp, path)


def cpu_info() -> Tuple[str, str]:
    """(model name, flags line) from /proc/cpuinfo, or the platform's description."""
    name, flags = platform.processor() or platform.machine(), ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and name == (platform.processor() or platform.machine()):
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = line
    except OSError:
        pass
    return name, flags


def ort_session(node: Any, inputs: Sequence[Tuple[str, np.ndarray]], y_dtype: Any,
                inits: Sequence[Tuple[str, Any]], threads: int = 1) -> Any:
    """An ONNX Runtime CPU session of the graph made of one `node`: `inputs` (name, array) are the
    graph inputs (their 8-bit dtypes and shapes), "y" the output (y_dtype, 8-bit), `inits`
    (name, value) the initializers; opset 21, `threads` intra-op threads, all optimizations."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    t = {np.dtype(np.uint8): TensorProto.UINT8, np.dtype(np.int8): TensorProto.INT8, np.dtype(np.int32): TensorProto.INT32}
    g = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info(n, t[a.dtype], list(a.shape)) for n, a in inputs],
        [helper.make_tensor_value_info("y", t[np.dtype(y_dtype)], None)],
        initializer=[numpy_helper.from_array(np.asarray(v), n) for n, v in inits])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


# The layer shapes of the gemm section (bench_gemm.py) and of its A/B rows (bench_ab.py).
# DeiT-small linear layers (tokens 197): (K, N)
LINEAR = [("deit qkv 384->1152", 384, 1152), ("deit proj 384->384", 384, 384),
          ("deit fc1 384->1536", 384, 1536), ("deit fc2 1536->384", 1536, 384)]
# (name, C, H, O, k, stride, pad, groups)
CONV = [("resnet18 conv1 7x7/2 3->64 @224", 3, 224, 64, 7, 2, 3, 1),
        ("resnet18 3x3 64->64 @56", 64, 56, 64, 3, 1, 1, 1),
        ("resnet18 3x3 128->128 @28", 128, 28, 128, 3, 1, 1, 1),
        ("resnet18 3x3 256->256 @14", 256, 14, 256, 3, 1, 1, 1),
        ("resnet18 1x1/2 64->128 @56", 64, 56, 128, 1, 2, 0, 1),
        ("mobilenetv2 dw 3x3 144 @56", 144, 56, 144, 3, 1, 1, 144),
        ("mobilenetv2 dw 3x3 384 @14", 384, 14, 384, 3, 1, 1, 384)]


# ---- the compiled plan of an IntegerModel, step by step (scripts/zoo.py --steps, profile_zoo.py)
# A step's "kind" is the vocabulary both sides of scripts/profile_zoo.py's table use: a conv by
# its window, stride and grouping ("conv 3x3", "conv 1x1 s2", "depthwise 3x3 s2"), "+add" when
# the residual add runs in the conv's call, else the op ("add", "max pool", "cat", ...).
LAYER_KINDS = {"QuantizeLayer": "quantize", "DequantizeLayer": "dequantize", "AddLayer": "add",
               "MulLayer": "mul", "MaxPool2dLayer": "max pool", "AvgPool2dLayer": "avg pool",
               "AdaptiveAvgPool2dLayer": "global avg pool", "MeanLayer": "global avg pool",
               "CatLayer": "cat", "FlattenLayer": "reshape", "IdentityLayer": "reshape",
               "ClampLayer": "activation", "LeakyReLULayer": "activation",
               "LookupLayer": "activation", "ScalarLayer": "scalar op", "LinearLayer": "linear",
               "DynamicLayer": "linear"}


def conv_kind(kh: int, kw: int, stride: int, groups: int, in_channels: int) -> str:
    """The kind of a convolution: window, "sN" when strided, depthwise (a group per input
    channel) or grouped.

    Example:
        >>> conv_kind(3, 3, 2, 32, 32), conv_kind(1, 1, 1, 1, 64), conv_kind(1, 7, 1, 1, 128)
        ('depthwise 3x3 s2', 'conv 1x1', 'conv 1x7')
    """
    what = "conv" if groups == 1 else ("depthwise" if groups == in_channels else "grouped")
    return f"{what} {kh}x{kw}" + (f" s{stride}" if stride > 1 else "")


class PlanStep(NamedTuple):
    """One step of a compiled plan: its index, node name ("" for a concatenation's output
    array), kind, the conv / linear layer it runs (its name, else ""), output shape and
    multiply-accumulates (0 but for conv / linear)."""

    index: int
    name: str
    kind: str
    layer: str
    shape: Tuple[int, ...]
    macs: int


def run_plan_steps(plan: Any, inputs: Sequence[Any], threads: int,
                   clock: Callable[[], float] = time.perf_counter) -> Tuple[List[Any], List[float]]:
    """One run of `plan` (an IntegerModel's compiled ``_plan``) as ``Plan._run`` makes it, each
    step timed on its own: (the slot values, seconds per step). The same calls, in the same
    order, as a whole forward without the batch split into chunks (``Plan.run`` does that only
    with several threads on big batches)."""
    env: List[Any] = [None] * plan.n_slots
    for slot, v in zip(plan.inputs, inputs):
        env[slot] = v
    times = []
    for k, ins, out, _ in plan.steps:
        args = [env[i] for i in ins]
        t0 = clock()
        env[out] = k(threads, *args)
        times.append(clock() - t0)
    return env, times


def plan_steps(im: Any, x: np.ndarray, threads: int = 1) -> List[PlanStep]:
    """The steps of IntegerModel `im`'s compiled plan on input `x` (run once here), each with its
    kind, shape and MACs. A step whose kernel carries a conv (``kernel.conv``) is that conv: the
    conv itself, a conv writing into a concatenation's channels, or (named after the add) a conv
    with the residual add fused into its call ("... +add")."""
    im(x, threads=threads)           # compiles the plan, fills the kernels' per-shape caches
    plan = im._plan
    env, _ = run_plan_steps(plan, [x], threads)
    kept = {n for _, _, _, n in plan.steps}
    res = []
    for si, (k, ins, out, name) in enumerate(plan.steps):
        shape = tuple(getattr(env[out], "shape", ()))
        L = im.layers.get(name) if name else None
        conv = getattr(k, "conv", None)
        layer, macs = "", 0
        if not name:
            kind = "cat buffer"
        elif conv is not None:
            p = conv.packed
            kh, kw = p.kernel_size
            kind = conv_kind(kh, kw, max(conv.stride), p.groups, p.in_channels)
            macs = conv.macs(env[ins[0]].shape)
            layer = name
            if type(L).__name__ == "AddLayer":     # the conv fused away into this add's step
                kind += " +add"
                layer = next(i for i in L.inputs if i not in kept and i in im.layers)
        else:
            cls = type(L).__name__
            kind = LAYER_KINDS.get(cls, cls.replace("Layer", "").lower() or "other")
            if cls == "LinearLayer":
                layer = name
                macs = int(np.prod(shape[:-1])) * int(np.prod(L.w_int.shape))
            elif cls == "DynamicLayer" and L.w_int is not None:   # float in and out
                layer = name
                if L.kind == "conv":
                    kh, kw = L.w_int.shape[2:]
                    kind = conv_kind(kh, kw, max(L.stride), L.groups,
                                     L.w_int.shape[1] * L.groups) + " (dynamic)"
                    macs = int(np.prod(shape)) * int(np.prod(L.w_int.shape[1:]))
                else:
                    macs = int(np.prod(shape[:-1])) * int(np.prod(L.w_int.shape))
        res.append(PlanStep(si, name, kind, layer, shape, int(macs)))
    return res
