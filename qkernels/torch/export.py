"""IntegerModel.export: every integer of a model, in files a C or RTL test bench reads.

``out_dir/layers/<layer>/`` holds, for every integer layer, ``params.txt`` (its scalars: kind,
zero points, clamping range, geometry, the requantization scheme by number and name), its
constant arrays one number a line (conv / linear: ``weights.txt``, ``w_scale.txt``, ``a2.txt`` (the
sum of the weights per output channel), the output stage the C epilogue takes:
``requant_scale.txt`` and ``float_bias.txt`` (in accumulator units) for the float-scale presets,
``multiplier.txt`` / ``shift.txt`` for fixed point and shifts, ``bias.txt`` int32; LayerNorm: the
prepared integer parameters; a lookup layer: ``table.txt``), and the golden ``input.txt`` (or
``input<i>.txt``) / ``output.txt`` integers of that layer for the sample ``x``.
``out_dir/model.npz`` holds all of it, ``out_dir/model.h`` the constant arrays as C arrays, and
``out_dir/report.json`` the per-tensor and per-layer parameters (SPEC section 8), with the float /
fake-quant / integer accuracies when ``labels`` are given. Writes are atomic.

Example:
    >>> # paths = im.export("out/resnet", x_test[:1])
"""
from __future__ import annotations

import json
import os
import re
from typing import Any, Callable, Dict, List

import numpy as np

import qkernels as qk

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


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


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


def export_model(im: Any, out_dir: str, x: Any, labels: Any = None) -> List[str]:
    """Write every integer of ``im`` (a :class:`qkernels.torch.IntegerModel`) for the sample
    ``x`` (see the module docstring); returns the paths written."""
    from .. import io as qio

    raw = im.intermediates(x)
    written: List[str] = []

    def put(path: str, text: str) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        qio.atomic_write_text(path, text)
        written.append(path)

    cfg = im.config
    tcs = im.tensor_configs
    bounds = im.accumulator_bounds()
    npz: Dict[str, np.ndarray] = {}
    header: Dict[str, np.ndarray] = {}
    layers_json: Dict[str, Any] = {}
    for name, L in im.layers.items():
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
        d = os.path.join(out_dir, "layers", name)
        for key, val in {**consts, **golden}.items():
            val = np.asarray(val)
            put(os.path.join(d, f"{key}.txt"), qio.format_array(val, f"{name} {key}"))
            npz[f"{name}/{key}"] = val
            if key in consts:
                header[f"{name}_{key}"] = val
        put(os.path.join(d, "params.txt"), qio.format_params(params))
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
    report: Dict[str, Any] = {"preset": im.preset.name if im.preset is not None else None,
                              "mode": im.mode, "tensors": tensors, "layers": layers_json}
    if cfg is not None:
        report.update(weight=vars(cfg.weight), activation=vars(cfg.activation),
                      **{k: vars(getattr(cfg, k)) for k in ("input", "output", "bias")
                         if getattr(cfg, k) is not None})
    if labels is not None:
        lab = np.asarray(labels)
        runs: Dict[str, Callable[[Any], Any]] = {"integer": im}
        if im.reference is not None:
            runs = {"float": im.float_reference, **({"fake_quant": im.fake_quant}
                                                     if cfg is not None else {}), **runs}
        report["accuracy"] = {k: float(np.mean(np.asarray(f(x)).argmax(1) == lab))
                              for k, f in runs.items()}
    put(os.path.join(out_dir, "report.json"), json.dumps(report, indent=1, default=_json_default) + "\n")
    path = os.path.join(out_dir, "model.npz")
    os.makedirs(out_dir, exist_ok=True)
    qio.atomic_savez(path, **npz)
    written.append(path)
    put(os.path.join(out_dir, "model.h"), qio.format_c_arrays(
        {re.sub(r"\W", "_", k): v for k, v in header.items()}, "QK_MODEL_H"))
    return written

