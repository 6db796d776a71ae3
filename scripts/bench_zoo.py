#!/usr/bin/env python
"""Whole torchvision models on four runtimes, side by side in one process (issue 19).

    python scripts/bench_zoo.py                       # every model, batch 1 and 8, 1 and 2 threads
    python scripts/bench_zoo.py --quick               # resnet18 and mobilenet_v2, fewer rounds
    python scripts/bench_zoo.py --models resnet50 --batch 8 --threads 1
    python scripts/bench_zoo.py --write               # ... and replace its section in BENCHMARKS.md

Also the "zoo" section of scripts/bench.py. Each model is a torchvision architecture with random
weights (seeded), its BatchNorm statistics set by a few training-mode passes on random images, and
then, from that one float network:

1. PyTorch's FX post-training quantization (``get_default_qconfig_mapping("fbgemm")``: per-channel
   int8 weights, uint8 activations with reduce_range, histogram observers), calibrated on
   ``--calib`` random images; run by PyTorch (fbgemm engine) and, imported with
   ``qkernels.torch.from_torch_quantized``, by qkernels (same integers: the script checks ``==``);
2. the float network exported by ``torch.onnx.export`` (BatchNorm folded) and quantized by
   ``onnxruntime.quantization.quantize_static`` on the same images: QDQ, per-channel int8 weights,
   uint8 activations, MinMax calibration; that one ``.onnx`` file is run by ONNX Runtime (CPU
   provider, all graph optimizations) and by OpenVINO (CPU plugin, int8, shape fixed per batch).

Threads are matched: ``torch.set_num_threads``, ORT ``intra_op_num_threads`` (inter-op 1),
OpenVINO ``INFERENCE_NUM_THREADS`` (one stream, latency hint), qkernels ``threads=``. Times are
medians of calls sampled round-robin in short blocks after untimed warm-up calls
(benchutil.median_times), so a burst of load on a shared machine hits every runtime alike.

OpenVINO is a benchmark peer only, never a dependency of qkernels. It runs in the same process as
the others (interleaved timing), so when this Python lacks it the whole section re-runs itself
under $QKERNELS_OPENVINO_PYTHON (default /work/venvs/openvino/bin/python) if that exists: a venv
that shares the project's pins, made with

    python3 -m venv /work/venvs/openvino
    /work/venvs/openvino/bin/pip install torch==2.13.0 numpy==2.4.6 onnx==1.23.2 \
        onnxruntime==1.32.0 pillow openvino
    /work/venvs/openvino/bin/pip install --no-deps --target /work/venvs/openvino/torchvision-zoo \
        torchvision==0.28.0

(torch 2.13.0 CPU resolves from the wheel on disk, as in the Makefile; qkernels is imported from
this checkout: ``make build`` first). Otherwise a runtime that is not installed is skipped with
the reason printed.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import importlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import warnings
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

sys.path.append(os.path.join(ROOT, "tests"))
from _torchvision import import_torchvision  # noqa: E402  (the zoo as the Makefile installs it)
from benchutil import median_times  # noqa: E402

HEADING = "## Whole torchvision models: four runtimes"
OPENVINO_PYTHON = os.environ.get("QKERNELS_OPENVINO_PYTHON", "/work/venvs/openvino/bin/python")

# (name, input size); inception_v3 at its native 299
MODELS: List[Tuple[str, int]] = [("resnet18", 224), ("resnet50", 224), ("mobilenet_v2", 224),
                                 ("googlenet", 224), ("inception_v3", 299),
                                 ("mobilenet_v3_large", 224)]
QUICK_MODELS = ("resnet18", "mobilenet_v2")


def float_model(name: str, size: int, seed: int = 0) -> Any:
    """The quantizable torchvision architecture `name` in float (its QuantStub / FloatFunctional are
    identities there), random weights from `seed`, BatchNorm statistics from three training-mode
    passes on random images; eval mode."""
    import torch

    tvq = import_torchvision()
    torch.manual_seed(seed)
    kw: Dict[str, Any] = dict(weights=None, quantize=False)
    if name in ("inception_v3", "googlenet"):
        kw.update(aux_logits=False, init_weights=False)
    m = getattr(tvq, name)(**kw)
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(4, 3, size, size))
    return m.eval()


def count_macs(model: Any, x: Any) -> int:
    """Multiply-accumulates of one image through `model`'s Conv2d and Linear layers (from the output
    shapes seen on input `x`, batch 1)."""
    import torch

    total = [0]

    def hook(mod: Any, inp: Any, out: Any) -> None:
        if isinstance(mod, torch.nn.Conv2d):
            kh, kw = mod.kernel_size
            total[0] += out[0].numel() * (mod.in_channels // mod.groups) * kh * kw
        else:
            total[0] += out[0].numel() * mod.in_features

    hs = [m.register_forward_hook(hook) for m in model.modules()
          if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in hs:
            h.remove()
    return total[0]


def torch_quantized(model: Any, calib: Any) -> Any:
    """PyTorch FX post-training quantization of a copy of `model` (fbgemm qconfig mapping),
    calibrated on the batch `calib`."""
    import torch
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    p = prepare_fx(copy.deepcopy(model), get_default_qconfig_mapping("fbgemm"),
                   example_inputs=(calib[:1],))
    with torch.no_grad():
        p(calib)
    return convert_fx(p)


def onnx_qdq(model: Any, calib: np.ndarray, workdir: str, name: str) -> str:
    """The float `model` exported to ONNX (dynamic batch) and quantized by ONNX Runtime's
    quantize_static on the images `calib`: QDQ, per-channel int8 weights, uint8 activations,
    MinMax. Returns the path of the QDQ model."""
    import torch

    fp32 = os.path.join(workdir, f"{name}.fp32.onnx")
    qdq = os.path.join(workdir, f"{name}.qdq.onnx")
    torch.onnx.export(model, (torch.from_numpy(calib[:1]),), fp32, dynamo=False, opset_version=17,
                      input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    return quantize_qdq(fp32, [{"x": calib[i:i + 1]} for i in range(len(calib))], qdq)


def quantize_qdq(fp32: str, feeds: Sequence[Dict[str, np.ndarray]], qdq: str) -> str:
    """The float ONNX model at `fp32` pre-processed (``quant_pre_process``, beside it as
    ``.pre.onnx``; without ORT's symbolic shape inference when that refuses the graph) and
    quantized by ONNX Runtime's quantize_static, calibrated on `feeds` (one
    {input name: array} a calibration call): QDQ, per-channel int8 weights, uint8 activations,
    MinMax. Writes and returns `qdq` (scripts/bench_int_transformers.py uses it too)."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = fp32.replace(".fp32.onnx", ".pre.onnx") if fp32.endswith(".fp32.onnx") else fp32 + ".pre"
    try:
        quant_pre_process(fp32, pre)
    except Exception:   # ORT's symbolic shape inference refuses some graphs (the Reshapes of
        # a Hugging Face BERT with a dynamic batch): ONNX's own shape inference then
        quant_pre_process(fp32, pre, skip_symbolic_shape=True)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(list(feeds))

        def get_next(self) -> Optional[Dict[str, np.ndarray]]:
            return next(self.it, None)

    quantize_static(pre, qdq, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    return qdq


def float_ops(path: str) -> Dict[str, int]:
    """Operator types of the QDQ model at `path` that take a float activation not produced by a
    DequantizeLinear (layers quantize_static left in float), with their counts."""
    import onnx

    g = onnx.load(path).graph
    made_by = {o: n.op_type for n in g.node for o in n.output}
    consts = {i.name for i in g.initializer}
    left: Dict[str, int] = {}
    for n in g.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        acts = [i for i in n.input if i and i not in consts and made_by.get(i) != "Constant"]
        if any(made_by.get(i) != "DequantizeLinear" for i in acts):
            left[n.op_type] = left.get(n.op_type, 0) + 1
    return left


def ort_session(path: str, threads: int) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def ov_request(core: Any, path: str, shape: Union[Sequence[int], Dict[str, Sequence[int]]],
               threads: int, precision: str = "f32") -> Tuple[Any, Any]:
    """An OpenVINO CPU infer request for the model at `path` reshaped to the static `shape` (of
    its one input, or {input name: shape} for several), and its compiled model. `precision`: the
    INFERENCE_PRECISION_HINT of the layers left in float (OpenVINO's own default on a CPU with
    AVX-512 BF16, such as Zen 4, is bf16)."""
    m = core.read_model(path)
    m.reshape({k: list(v) for k, v in shape.items()} if isinstance(shape, dict) else list(shape))
    cm = core.compile_model(m, "CPU", {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1,
                                       "PERFORMANCE_HINT": "LATENCY",
                                       "INFERENCE_PRECISION_HINT": precision})
    return cm.create_infer_request(), cm


def _have(mod: str) -> Optional[str]:
    """None if `mod` imports, else the reason it does not."""
    try:
        importlib.import_module(mod)
        return None
    except Exception as exc:  # an installed but broken package is a skip too, with its reason
        return f"{type(exc).__name__}: {exc}"


def openvino_rerun(script: str, argv: Sequence[str], log: Callable[[str], None]) -> Optional[str]:
    """None when this Python has openvino (or OPENVINO_PYTHON does not exist, or is this
    Python); else the stdout of `script` with `argv` re-run under OPENVINO_PYTHON (its stderr
    passes through): a benchmark section timed in one process with OpenVINO beside the others."""
    if _have("openvino") and os.path.exists(OPENVINO_PYTHON) \
            and os.path.realpath(sys.prefix) != os.path.realpath(
                os.path.dirname(os.path.dirname(OPENVINO_PYTHON))):
        log(f"openvino is not installed here: running under {OPENVINO_PYTHON}")
        return subprocess.run([OPENVINO_PYTHON, os.path.abspath(script)] + list(argv), check=True,
                              stdout=subprocess.PIPE, text=True).stdout.rstrip("\n") + "\n"
    return None


def versions() -> str:
    import qkernels as qk

    cfg = qk.show_config(mode="dicts")
    simd = cfg["simd"]["chosen"] + (" with AVX-512 F/BW hot loops" if cfg["simd"]["avx512_loops"]
                                     else "")
    from benchutil import cpu_info
    parts = [f"CPU: {cpu_info()[0]}, {os.cpu_count()} cores; qkernels SIMD path {simd}, 8-bit "
             f"GEMM/conv {cfg['simd']['gemm']}", f"Python {platform.python_version()}",
             f"NumPy {np.__version__}"]
    for mod, label in (("torch", "torch"), ("onnxruntime", "onnxruntime"), ("onnx", "onnx"),
                       ("openvino", "openvino")):
        try:
            m = importlib.import_module(mod)
            v = m.get_version() if mod == "openvino" else m.__version__
            parts.append(f"{label} {v}")
        except Exception:
            parts.append(f"{label} not installed")
    try:
        import_torchvision()
        import torchvision
        parts.append(f"torchvision {torchvision.__version__}")
    except Exception:
        parts.append("torchvision not installed")
    return "; ".join(parts)


class ZooModel(NamedTuple):
    """One zoo model in every form the benchmarks run (see :func:`build`)."""

    float_model: Any
    xcal: Any
    xtest: Any
    torch_model: Any
    qk_model: Any
    qdq: Optional[str]


def build(name: str, calib: int, n_test: int, rng: Any, workdir: str,
          onnx: bool = True) -> ZooModel:
    """Model `name` (one of MODELS) as the benchmarks run it: the float network
    (:func:`float_model`), `calib` calibration images and `n_test` test images drawn from the torch
    generator `rng` in that order, PyTorch's FX-quantized model calibrated on them
    (:func:`torch_quantized`), its qkernels IntegerModel (``from_torch_quantized``, fbgemm) and,
    with `onnx`, the QDQ ``.onnx`` made by ONNX Runtime's quantize_static on the same images, in
    `workdir` (:func:`onnx_qdq`; else None)."""
    import torch

    from qkernels.torch import from_torch_quantized
    size = dict(MODELS)[name]
    fm = float_model(name, size)
    xcal = torch.randn(calib, 3, size, size, generator=rng)
    xtest = torch.randn(n_test, 3, size, size, generator=rng)
    tq = torch_quantized(fm, xcal)
    qk_model = from_torch_quantized(tq, engine="fbgemm")
    qdq = onnx_qdq(fm, xcal.numpy(), workdir, name) if onnx else None
    return ZooModel(fm, xcal, xtest, tq, qk_model, qdq)


def _fmt_ms(t: Optional[float]) -> str:
    return "—" if t is None else f"{t * 1e3:.1f}"


def _fmt_ratio(other: Optional[float], ours: Optional[float]) -> str:
    return "—" if other is None or ours is None else f"{other / ours:.2f}x"


def run(quick: bool = False, models: Optional[Sequence[str]] = None,
        batches: Sequence[int] = (1, 8), threads: Sequence[int] = (1, 2), calib: int = 8,
        own: bool = False, ov_precision: str = "f32", log: Callable[[str], None] = lambda s: print(s, file=sys.stderr,
                                                                        flush=True)) -> str:
    """The markdown section: one row per (model, batch, threads), with the sanity lines; re-run
    under OPENVINO_PYTHON (a subprocess, same arguments) when this Python has no openvino."""
    argv = _argv(quick, models, batches, threads, calib, own, ov_precision)
    text = openvino_rerun(__file__, argv, log)
    if text is not None:
        return text
    import torch

    warnings.filterwarnings("ignore")
    torch.backends.quantized.engine = "fbgemm"
    from qkernels.torch import quantize_model

    names = list(models) if models else [n for n, _ in MODELS if not quick or n in QUICK_MODELS]
    sizes = dict(MODELS)
    unknown = [n for n in names if n not in sizes]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; choose from {[n for n, _ in MODELS]}")
    skip = {"ONNX Runtime": _have("onnxruntime.quantization") or _have("onnx"),
            "OpenVINO int8": _have("openvino")}
    skip["OpenVINO int8"] = skip["OpenVINO int8"] or skip["ONNX Runtime"]  # needs the QDQ file
    for rt, why in skip.items():
        if why:
            log(f"skipping {rt}: {why}")
    ov_core = None
    if not skip["OpenVINO int8"]:
        import openvino as ov
        ov_core = ov.Core()
    min_time = 0.15 if quick else 0.5
    rng = torch.Generator().manual_seed(1)
    workdir = tempfile.mkdtemp(prefix="bench_zoo_")
    rows: List[str] = []
    sanity: List[str] = []
    notes: List[str] = []
    try:
        for name in names:
            log(f"{name}: building, quantizing (PyTorch FX, ORT quantize_static), exporting ...")
            fm, xcal, xtest, tq, qk_model, qdq = build(name, calib, max(8, *batches), rng, workdir,
                                                       onnx=not skip["ONNX Runtime"])
            macs = count_macs(fm, xtest)
            own_model = None
            if own:
                try:
                    own_model = quantize_model(fm, [xcal])
                except Exception as exc:
                    notes.append(f"{name}: qkernels `quantize_model` refused it ({type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0]})")

            # sanity: the same network and quantization scheme on every runtime
            xn = xtest.numpy()
            with torch.no_grad():
                y_f = fm(xtest).numpy()
                y_tq = tq(xtest).numpy()
            y_qk = qk_model(xn)
            outs = {"PyTorch fbgemm": y_tq}
            export_diff = None
            if qdq is not None:
                y_onnx = ort_session(qdq.replace(".qdq.", ".fp32."), 1).run(None, {"x": xn})[0]
                export_diff = float(np.abs(y_onnx - y_f).max())
                outs["ONNX Runtime"] = ort_session(qdq, 1).run(None, {"x": xn})[0]
            if ov_core is not None and qdq is not None:
                req, _ = ov_request(ov_core, qdq, xn.shape, 1, ov_precision)
                outs["OpenVINO int8"] = np.asarray(req.infer({0: xn})[0])
            amp = float(np.abs(y_f).max())
            parts = [f"qkernels == PyTorch fbgemm on {int((y_qk == y_tq).sum())}/{y_tq.size} "
                     f"outputs"]
            if export_diff is not None:
                parts.append(f"float .onnx on ORT vs PyTorch float: max |diff| {export_diff:.1e}")
                left = float_ops(qdq)
                parts.append("QDQ ops on a float input: " + (", ".join(
                    f"{k} x{v}" for k, v in sorted(left.items())) or "none"))
            top_f = y_f.argmax(1)
            for rt, y in outs.items():
                parts.append(f"{rt} vs float: top-1 {int((y.argmax(1) == top_f).sum())}/{len(top_f)}, "
                             f"max |diff| {float(np.abs(y - y_f).max()) / amp:.3f} of max |float|")
            if "ONNX Runtime" in outs and "OpenVINO int8" in outs:
                parts.append("OpenVINO vs ONNX Runtime: max |diff| "
                             f"{float(np.abs(outs['OpenVINO int8'] - outs['ONNX Runtime']).max()) / amp:.3f}")
            sanity.append(f"- {name} ({len(xn)} random images, float logits up to {amp:.3g}): "
                          + "; ".join(parts))
            log(sanity[-1])

            for t in threads:
                torch.set_num_threads(t)
                sess = ort_session(qdq, t) if qdq is not None else None
                for b in batches:
                    xb = xtest[:b]
                    xbn = np.ascontiguousarray(xb.numpy())
                    req = (ov_request(ov_core, qdq, xbn.shape, t, ov_precision)[0]
                           if ov_core is not None and qdq else None)
                    fns: List[Optional[Callable[[], object]]] = [
                        lambda: qk_model(xbn, threads=t),
                        lambda: tq(xb),
                        (lambda: sess.run(None, {"x": xbn})) if sess is not None else None,
                        (lambda: req.infer({0: xbn})) if req is not None else None,
                        (lambda: own_model(xbn, threads=t)) if own_model is not None else None]
                    with torch.no_grad():
                        ts = median_times(fns, min_time=min_time, max_rounds=30 if quick else 60,
                                          block=3, warm=1, warm_s=0.25 if t > 1 else 0.02)
                    q, p, o, v, w = ts
                    gmacs = macs * b / q / 1e9
                    row = (f"| {name} | {b} | {t} | {_fmt_ms(q)} | {_fmt_ms(p)} | {_fmt_ms(o)} | "
                           f"{_fmt_ms(v)} | {_fmt_ratio(v, q)} | {_fmt_ratio(o, q)} | "
                           f"{_fmt_ratio(p, q)} | {gmacs:.0f} |")
                    if own:
                        row += f" {_fmt_ms(w)} |"
                    rows.append(row)
                    log(row)
            torch.set_num_threads(1)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    torch.set_num_threads(1)

    opts = "".join(" " + a for a in argv)
    head = [HEADING, "",
            f"Taken {datetime.date.today().isoformat()} with `python scripts/bench_zoo.py{opts}` "
            f"(also the `zoo` section of scripts/bench.py); load "
            f"average at the start {os.getloadavg()[0]:.2f}.", "",
            f"Machine and versions: {versions()}.", "",
            "torchvision architectures (random weights, BatchNorm statistics from training-mode "
            f"passes), 3x{sizes.get('resnet18', 224)}x{sizes.get('resnet18', 224)} inputs "
            "(inception_v3 3x299x299), float in, float logits out. **qkernels** runs PyTorch's FX "
            "fbgemm-quantized model imported with `from_torch_quantized` (identical outputs to "
            "**PyTorch fbgemm**, checked below); **ONNX Runtime** and **OpenVINO int8** run one QDQ "
            "`.onnx` of the same float network made by `onnxruntime.quantization.quantize_static` "
            "(per-channel int8 weights, uint8 activations, MinMax, calibrated on the same "
            f"{calib} random images as PyTorch's; PyTorch's fbgemm qconfig differs in observing "
            "activations by histogram on 7 bits, reduce_range). Threads matched (`torch.set_num_threads`, ORT "
            "`intra_op_num_threads`, OpenVINO `INFERENCE_NUM_THREADS` with one stream, qkernels "
            f"`threads=`; OpenVINO's layers left in float run in {ov_precision} "
            "(`INFERENCE_PRECISION_HINT`; its default on this CPU is bf16). "
            "ms per batch: medians of calls sampled round-robin in short blocks after "
            "untimed warm-up calls. Ratios are the other runtime's time over qkernels' (= qkernels' "
            "throughput over theirs; > 1: qkernels faster). GMAC/s: the network's conv + linear "
            "multiply-accumulates per batch over qkernels' time. The machine is a shared 2-vCPU "
            "VM: two-thread rows in particular swing with other processes' load. Where each "
            "model's time goes, layer by layer beside OpenVINO's nodes: `scripts/profile_zoo.py` "
            "(section \"Where the time goes (issue 19)\").", ""]
    cols = ("| model | batch | threads | qkernels ms | PyTorch fbgemm ms | ONNX Runtime ms | "
            "OpenVINO int8 ms | vs OpenVINO | vs ORT | vs PyTorch | qkernels GMAC/s |")
    sep = "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    if own:
        cols += " qkernels quantize_model ms |"
        sep += "---:|"
    skipped = [f"- {rt} skipped: {why}" for rt, why in skip.items() if why]
    tail = ["", "Sanity (same network, same scheme: float logits of random images, 1 thread; "
            "max |diff| as a fraction of the largest float logit):", ""] + sanity
    if notes or skipped:
        tail += [""] + skipped + [f"- {n}" for n in notes]
    return "\n".join(head + [cols, sep] + rows + tail) + "\n"


def _argv(quick: bool, models: Optional[Sequence[str]], batches: Sequence[int],
          threads: Sequence[int], calib: int, own: bool, ov_precision: str) -> List[str]:
    """The command-line options that give these run() arguments (defaults left out)."""
    a = (["--quick"] if quick else []) + (["--models", *models] if models else [])
    for k, v, d in (("--batch", batches, (1, 8)), ("--threads", threads, (1, 2))):
        if tuple(v) != d:
            a += [k, *map(str, v)]
    a += (["--calib", str(calib)] if calib != 8 else []) + (["--own"] if own else [])
    return a + (["--ov-precision", ov_precision] if ov_precision != "f32" else [])


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help=f"only {', '.join(QUICK_MODELS)} (unless --models), shorter sampling")
    ap.add_argument("--models", nargs="+", choices=[n for n, _ in MODELS], metavar="NAME",
                    help=f"any of {', '.join(n for n, _ in MODELS)}")
    ap.add_argument("--batch", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--calib", type=int, default=8, help="calibration images (default 8)")
    ap.add_argument("--own", action="store_true",
                    help="also time qkernels' own quantize_model of the float network")
    ap.add_argument("--ov-precision", choices=["f32", "bf16"], default="f32",
                    help="OpenVINO INFERENCE_PRECISION_HINT for layers left in float (default f32, "
                         "as the other runtimes compute them)")
    ap.add_argument("--write", action="store_true", help="replace this section in BENCHMARKS.md")
    args = ap.parse_args(argv)
    if min(args.batch) < 1 or min(args.threads) < 1 or args.calib < 1:
        ap.error("--batch, --threads and --calib must be >= 1")
    text = run(args.quick, args.models, args.batch, args.threads, args.calib, args.own,
               args.ov_precision)
    print(text)
    if args.write:
        from bench_transformer import replace_section
        replace_section(os.path.join(ROOT, "BENCHMARKS.md"), HEADING, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
