"""Timing and machine description shared by the benchmark scripts (bench.py and its sections)."""
from __future__ import annotations

import platform
import statistics
import time
from typing import Any, Callable, List, Optional, Sequence, Tuple

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
