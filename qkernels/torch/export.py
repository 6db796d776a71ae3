"""IntegerModel.export: every integer of a model, in files a C or RTL test bench reads.

One export folder describes exactly one model. It is written beside the target and swapped in
at the end, so an interrupted export leaves the previous one (or nothing), never a mix; the
target must be absent, empty, or a previous export (it has ``manifest.json``). Files follow the
process umask. The folder holds:

- ``layers/<layer>/``: for every integer layer ``params.txt`` (its scalars: kind, zero points,
  clamping range, geometry, the requantization scheme by name), its constant arrays and its
  golden input (``input.txt``, or ``input<i>.txt``) and ``output.txt`` for the sample, one number
  a line; every integer array also as ``<name>.hex``, the ``$readmemh`` format (two's complement
  at the array's storage width, one word a line, :mod:`qkernels.io.hexmem`);
- ``model.h`` / ``model.c``: every scalar and array as C (:mod:`qkernels.io.cmodel`);
- ``model.json`` + ``model.npz`` (+ ``float_ops.pt`` for float ops): the model itself,
  ``IntegerModel.load(folder)`` rebuilds it (:mod:`qkernels.torch.saving`);
- ``report.json``: per tensor scale / zero point / bit width (powers of two as ``2^(-9)`` and
  ``x >> 9``), per layer its parameters (M0 / shift, ``a2``, accumulator bound), the graph
  (inputs, shapes, dtypes) and the per-layer error figures of ``compare``; accuracies when
  labels are given;
- ``README.md``: what each file is; ``manifest.json``: every file with its size and SHA-256.

Example:
    >>> # paths = im.export("out/resnet", x_test[:1], labels=y_test[:1])
"""
from __future__ import annotations

import hashlib
import io as _io
import json
import os
import shutil
import tempfile
from typing import Any, Callable, Dict, List

import numpy as np

import qkernels as qk
from qkernels.io import json_default

from . import layers as Ly
from .qarith import QTensor

F32 = np.float32

__all__ = ["export_model", "tensor_json"]


def tensor_json(scale: Any, zero_point: Any, bits: int, symmetric: bool) -> Dict[str, Any]:
    """SPEC section 8: scale, zero_point, bitwidth, symmetric, and for powers of two
    power_of_2 ("2^(-9)") and hardware_op ("x >> 9")."""
    s = np.asarray(scale, np.float64)
    d: Dict[str, Any] = {"scale": s.tolist(), "zero_point": np.asarray(zero_point).tolist(),
                         "bitwidth": int(bits), "symmetric": bool(symmetric)}
    m, e = np.frexp(s)
    if np.all(m == 0.5):
        ex = (e - 1).astype(int)
        d["power_of_2"] = [f"2^({v})" for v in np.ravel(ex)] if ex.ndim else f"2^({int(ex)})"
        ops = [f"x >> {-v}" if v < 0 else (f"x << {v}" if v > 0 else "x") for v in np.ravel(ex)]
        d["hardware_op"] = ops if ex.ndim else ops[0]
    return d


def _value(v: Any) -> Any:
    return v.q if isinstance(v, QTensor) else v


def _goldens(L: Ly.Layer, raw: Dict[str, Any]) -> Dict[str, np.ndarray]:
    """The golden arrays of one layer for the sample: its input(s) and output."""
    if isinstance(L, Ly.LayerNormLayer):   # the C kernel's own input and output
        q_ptf, y = L.kernel_io(_value(raw[L.inputs[0]]))
        return {"input": q_ptf, "output": y}
    out: Dict[str, np.ndarray] = {}
    ins = [_value(raw[i]) for i in L.inputs if i in raw]
    for i, v in enumerate(ins):
        if isinstance(v, np.ndarray):
            out["input" if len(ins) == 1 else f"input{i}"] = v
    if isinstance(L, Ly.DynamicLayer):
        xq = L.quantized_input(ins[0])
        out["x_q"] = xq.q
        out["accumulator"] = L.accumulators(xq)
    y = _value(raw.get(L.name))
    if isinstance(y, np.ndarray):
        out["output"] = y
    return out


def _exported(L: Ly.Layer) -> bool:
    return (L.out is not None or isinstance(L, Ly.DynamicLayer)) and \
        not isinstance(L, (Ly.ConstantLayer, Ly.GetItemLayer))


def _prepare_target(out_dir: str) -> None:
    if os.path.exists(out_dir):
        if not os.path.isdir(out_dir):
            raise ValueError(f"export folder {out_dir} exists and is not a folder")
        if os.listdir(out_dir) and not os.path.exists(os.path.join(out_dir, "manifest.json")):
            raise ValueError(f"export folder {out_dir} is not empty and holds no qkernels export "
                             "(no manifest.json): give a new or empty folder")


def export_model(im: Any, out_dir: str, x: Any, labels: Any = None, *,
                 hex_files: bool = True, plots: bool = False, eval_data: Any = None) -> List[str]:
    """Write every integer of ``im`` (a :class:`qkernels.torch.IntegerModel`) for the sample
    ``x`` into ``out_dir`` (see the module docstring); with ``plots`` also
    ``plots/layer_errors.png`` (per-layer SQNR and cosine of the integer and fake-quant runs,
    :func:`qkernels.plots.plot_layer_errors`). The accuracies of ``report.json`` are measured on
    ``eval_data`` = (inputs, labels) when given, else on ``x`` with ``labels``. Returns the paths
    written."""
    from .. import io as qio
    from ..io.cmodel import format_c_model
    from .saving import save_model

    out_dir = os.path.abspath(out_dir)
    _prepare_target(out_dir)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.", suffix=".tmp", dir=parent)
    try:
        if eval_data is None and labels is not None:
            eval_data = (x, labels)
        rel = _write_all(im, tmp, x, eval_data, hex_files, plots, qio, format_c_model, save_model)
        mode = 0o777 & ~qio.umask()
        for root, dirs, _files in os.walk(tmp):
            for d in dirs:
                os.chmod(os.path.join(root, d), mode)
        os.chmod(tmp, mode)
        old = None
        if os.path.exists(out_dir):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.", suffix=".old", dir=parent)
            os.rmdir(old)
            os.rename(out_dir, old)
        os.rename(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [os.path.join(out_dir, r) for r in rel]


def _write_all(im: Any, root: str, x: Any, eval_data: Any, hex_files: bool, plots: bool, qio: Any,
               format_c_model: Callable, save_model: Callable) -> List[str]:
    raw = im.intermediates(x)
    written: List[str] = []

    def put(relpath: str, data: Any) -> None:
        path = os.path.join(root, relpath)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if isinstance(data, bytes):
            qio.atomic_write_bytes(path, data)
        else:
            qio.atomic_write_text(path, data)
        written.append(relpath)

    cfg = im.config
    tcs = im.tensor_configs
    bounds = im.accumulator_bounds()
    npz: Dict[str, np.ndarray] = {}
    c_layers = []
    layers_json: Dict[str, Any] = {}
    graph: List[Dict[str, Any]] = []
    for name, L in im.layers.items():
        node: Dict[str, Any] = {"name": name, "op": L.op, "inputs": list(L.inputs)}
        y = _value(raw.get(name))
        if isinstance(y, np.ndarray):
            node.update(shape=list(y.shape), dtype=y.dtype.name)
        if L.out is not None:
            node.update(scale=float(L.out.scale), zero_point=int(L.out.zero_point))
        graph.append(node)
        if not _exported(L):
            continue
        params = L.params()
        consts = L.arrays()
        golden = _goldens(L, raw)
        if "input" in golden:
            params["input_shape"] = list(golden["input"].shape)
        if "output" in golden:
            params["output_shape"] = list(golden["output"].shape)
        if isinstance(L, Ly.DynamicLayer):
            xq = L.quantized_input(_value(raw[L.inputs[0]]))
            params.update(x_scale=float(xq.scale), x_zero_point=int(xq.zero_point),
                          x_dtype=np.dtype(xq.q.dtype).name)
        d = f"layers/{name}"
        arrays = {**consts, **golden}
        for key, val in arrays.items():
            val = np.asarray(val)
            put(f"{d}/{key}.txt", qio.format_array(val, f"{name} {key}"))
            if hex_files and val.dtype.kind in "iu":
                put(f"{d}/{key}.hex", qio.format_hex(val))
            npz[f"{name}/{key}"] = val
        put(f"{d}/params.txt", qio.format_params(params))
        c_layers.append((name, L.op, params, arrays))
        entry = dict(params)
        if isinstance(L, (Ly.Conv2dLayer, Ly.LinearLayer)):
            real = (np.float64(L.x.scale) * np.asarray(L.w_scale, np.float64) /
                    np.float64(L.out.scale)).reshape(-1)
            m0, sh = qk.quantize_multiplier(real)
            wcfg = cfg.weight if cfg is not None else None
            entry.update(M0=np.atleast_1d(m0).tolist(), shift=np.atleast_1d(sh).tolist(),
                         a2=L.a2().tolist(),
                         w_scale=tensor_json(L.w_scale, L.w_zero_point,
                                             wcfg.bits if wcfg else 8,
                                             wcfg.symmetric if wcfg else
                                             bool(np.all(np.asarray(L.w_zero_point) == 0))))
        if isinstance(L, Ly.DynamicLayer):
            wcfg = cfg.weight if cfg is not None else None
            entry.update(w_scale=tensor_json(L.w_scale, L.w_zero_point, wcfg.bits if wcfg else 8,
                                             wcfg.symmetric if wcfg else True))
        if name in bounds:
            entry["accumulator_bound"] = bounds[name]
        layers_json[name] = entry
    tensors = {}
    for n, L in im.layers.items():
        if L.out is None:
            continue
        tc = tcs.get(n, cfg.activation if cfg is not None else None)
        bits = L.out.bits or np.iinfo(L.out.dtype).bits
        sym = tc.symmetric if tc is not None else False
        tensors[n] = tensor_json(np.float32(L.out.scale), L.out.zero_point, bits, sym)
    exported = [im.layers[n] for n in layers_json]
    report: Dict[str, Any] = {"preset": im.preset.name if im.preset is not None else None,
                              "mode": im.mode, "tensors": tensors, "layers": layers_json,
                              "graph": {"inputs": list(im.inputs), "nodes": graph},
                              "c_library": {
                                  "computed": [L.name for L in exported if L.in_c],
                                  "golden_only": {L.name: L.op for L in exported
                                                  if not L.in_c}}}
    if cfg is not None:
        report.update(weight=vars(cfg.weight), activation=vars(cfg.activation),
                      **{k: vars(getattr(cfg, k)) for k in ("input", "output", "bias")
                         if getattr(cfg, k) is not None})
    if im.reference is not None:
        report["compare"] = [vars(r) for r in im.compare(x)]
        if plots:
            from ..plots import plot_layer_errors

            os.makedirs(os.path.join(root, "plots"), exist_ok=True)
            plot_layer_errors(report["compare"], os.path.join(root, "plots", "layer_errors.png"),
                              title=f"per-layer error against the float model, preset "
                                    f"{report['preset']}, mode {im.mode}")
            written.append("plots/layer_errors.png")
    if eval_data is not None:
        xe, lab = eval_data[0], np.asarray(eval_data[1])
        runs: Dict[str, Callable[[Any], Any]] = {"integer": im}
        if im.reference is not None:
            runs = {"float": im.float_reference, **({"fake_quant": im.fake_quant}
                                                     if cfg is not None else {}), **runs}
        report["accuracy"] = {k: float(np.mean(np.asarray(f(xe)).argmax(1) == lab))
                              for k, f in runs.items()}
        report["accuracy"]["samples"] = int(lab.size)
    put("report.json", json.dumps(report, indent=1, default=json_default) + "\n")
    model_json, model_arrays, objects = save_model(im)
    npz.update(model_arrays)
    put("model.json", model_json)
    buf = _io.BytesIO()
    np.savez_compressed(buf, **npz)
    put("model.npz", buf.getvalue())
    if objects:
        import torch

        buf = _io.BytesIO()
        try:
            torch.save(objects, buf)
        except Exception as exc:
            raise ValueError(f"the float ops / handlers of this model cannot be saved "
                             f"({type(exc).__name__}: {exc}); a handler must be an importable "
                             "function") from None
        put("float_ops.pt", buf.getvalue())
    h, c = format_c_model(c_layers, title=f"{len(c_layers)} layers, preset "
                          f"{report['preset']}, mode {im.mode}")
    put("model.h", h)
    put("model.c", c)
    put("README.md", _readme(im, report))
    manifest = {"format": "qkernels-export/1", "qkernels": qk.__version__,
                "layers": list(layers_json), "files": {}}
    for r in written:
        with open(os.path.join(root, r), "rb") as f:
            data = f.read()
        manifest["files"][r] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    put("manifest.json", json.dumps(manifest, indent=1) + "\n")
    return written


_KEYS = {
    "weights": "integer weights (conv: OIHW, linear: (N, K))",
    "w_scale": "weight scale per output channel (float32)",
    "a2": "sum of the integer weights per output channel (the zero-point term x_zp * a2)",
    "requant_scale": "float32 requantization scale per output channel (scheme fp32): "
                     "y = RNE(fl(fl(acc + float_bias) * requant_scale)) + out_zero_point",
    "float_bias": "float bias in ACCUMULATOR units, bias / (x_scale * w_scale), added in float "
                  "before requant_scale (FBGEMM); a dynamic layer's float_bias is in output units",
    "multiplier": "fixed-point M0 per output channel (schemes double_round / single_round / "
                  "double_round_half_up)",
    "shift": "shift per output channel (fixed point: TFLite convention, > 0 is a left shift; "
             "shift schemes: acc >> shift)",
    "bias": "int32 bias in accumulator units (scale x_scale * w_scale, zero point 0)",
    "input": "golden input integers of the sample (input<i>: the i-th input)",
    "output": "golden output integers of the sample",
    "table": "256-entry lookup table: y = table[q - qmin]",
    "x_q": "dynamic layer: the input quantized per call (x_scale, x_zero_point in params.txt)",
    "accumulator": "dynamic layer: the int32 accumulators",
    "alpha": "LayerNorm: PTF exponent per channel", "gamma_int": "LayerNorm: integer gamma",
    "beta_int": "LayerNorm: integer beta", "lut": "LayerNorm: inverse square root table (sole)",
    "gamma": "LayerNorm: float gamma", "beta": "LayerNorm: float beta",
    "bn_alpha": "BatchNorm: float32 factor per channel, y = RNE(fmaf(bn_alpha[c], q - x_zero_point, "
                "bn_beta[c])) + out_zero_point",
    "bn_beta": "BatchNorm: float32 offset per channel in output steps",
}


def _readme(im: Any, report: Dict[str, Any]) -> str:
    lines = [f"# qkernels export: {len(report['layers'])} integer layers, preset "
             f"{report['preset']}, mode {report['mode']}", "",
             "Generated by `IntegerModel.export`; `IntegerModel.load(this folder)` rebuilds the "
             "model. `manifest.json` lists every file with its SHA-256.", "",
             "## Files", "",
             "- `layers/<layer>/params.txt`: the layer's scalars, `key value` a line (`scheme` by "
             "name: none, fp32, double_round, single_round, shift_half_up, shift_half_even, "
             "shift_half_away, shift_floor, fp64, double_round_half_up; the "
             "`qk_requant_scheme` of qkernels.h).",
             "- `layers/<layer>/<array>.txt`: `# comment`, `# shape`, the count, one number a line.",
             "- `layers/<layer>/<array>.hex`: the same integers for Verilog `$readmemh`: two's "
             "complement at the array's storage width (int8 / uint8: 2 hex digits, int32: 8), "
             "one word a line, C order.",
             "- `model.h` / `model.c`: every scalar (`QK_<LAYER>_<KEY>`) and array "
             "(`qk_<layer>_<key>`) as C, and the table `qk_model_layers`.",
             "- `model.json`, `model.npz` (`float_ops.pt`): the model for `IntegerModel.load`.",
             "- `report.json`: tensors, layers, graph, per-layer errors, accuracies.", "",
             "## Arrays", ""]
    lines += [f"- `{k}`: {v}" for k, v in _KEYS.items()]
    c = report["c_library"]
    lines += ["", "## Layers", "", "| layer | kind | inputs | output shape | in C |",
              "|---|---|---|---|---|"]
    for n in report["graph"]["nodes"]:
        if n["name"] in report["layers"]:
            lines.append(f"| {n['name']} | {n['op']} | {', '.join(n['inputs'])} | "
                         f"{'x'.join(map(str, n.get('shape', [])))} | "
                         f"{'yes' if n['name'] in c['computed'] else 'golden only'} |")
    lines += ["", "## What the C library reproduces", "",
              f"`csrc/examples/model_golden.c` (compiled with `model.c` and `libqkernels.a`) "
              f"computes the {len(c['computed'])} conv / linear layers from `model.h` and compares "
              f"them with their goldens."]
    if c["golden_only"]:
        lines += ["", f"The C library has no kernel for the other {len(c['golden_only'])} layers "
                  f"({', '.join(sorted(set(c['golden_only'].values())))}): their folders hold "
                  "their parameters and golden input / output only; a bench computes them itself "
                  "(`report.json` `c_library.golden_only` lists them)."]
    return "\n".join(lines) + "\n"

