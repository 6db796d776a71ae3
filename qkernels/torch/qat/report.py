"""The JSON report of the pipeline (the replaced tool's layout plus ours).

The tool's keys, in its order: ``quantization_type``, ``pipeline_steps``, ``config`` (the
``quantization`` section), ``final_quantization_details`` (per tensor ``scale``, ``power_of_2``
like ``"2^(-9)"``, ``hardware_op`` like ``"x >> 9"``, ``bitwidth``), ``initial_accuracy``,
``ptq_accuracy``, ``qat_best_accuracy``, ``final_accuracy``, ``total_improvement`` (percent).
Ours are under ``"qkernels"``: the integer-exact accuracy, every layer's requantizing shift, the
integer / fake-quant comparison per layer, the training history and the whole configuration.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ... import io as qio
from ...qparams import QParams
from ...io import json_default as _json_default

__all__ = ["tensor_entry", "quantization_details", "layer_shifts", "write_json"]


def _exponents(scale: Any) -> np.ndarray:
    m, e = np.frexp(np.asarray(scale, np.float64))
    if not np.all(m == 0.5):
        raise ValueError(f"not a power of two: {scale}")
    return (e - 1).astype(np.int32)


def tensor_entry(scale: Any, bitwidth: int) -> Dict[str, Any]:
    """``{"scale", "power_of_2", "hardware_op", "bitwidth"}`` of a power-of-two scale (lists for
    per-channel scales).

    Example:
        >>> tensor_entry(2.0 ** -9, 8)
        {'scale': 0.001953125, 'power_of_2': '2^(-9)', 'hardware_op': 'x >> 9', 'bitwidth': 8}
    """
    s = np.asarray(scale, np.float64)
    ex = _exponents(s)
    p = QParams(scale=s.astype(np.float32), zero_point=np.zeros(s.shape, np.int32), qmin=0, qmax=0,
                exponent=ex)
    p2, op = p.power_of_2(), p.hardware_op()
    if s.ndim:
        return {"scale": s.tolist(), "power_of_2": [str(v) for v in p2],
                "hardware_op": [str(v) for v in op], "bitwidth": int(bitwidth)}
    return {"scale": float(s), "power_of_2": str(p2), "hardware_op": str(op), "bitwidth": int(bitwidth)}


def _bits(meta: Any) -> int:
    """The bit width of an integer slot (its ``bits``, else its storage type's)."""
    return int(meta.bits) if meta.bits is not None else 8 * np.dtype(meta.dtype).itemsize


def quantization_details(im: Any, weight_scales: Dict[str, Any], weight_bits: int,
                         bias_bits: Optional[int], targets: Dict[str, str]
                         ) -> Dict[str, Dict[str, Any]]:
    """``final_quantization_details``: for every conv / linear layer (``weight_scales``: layer
    -> its weight scale(s); named by its module path, as the tool names them) ``<path>.weight``,
    and in a static model ``<path>.bias`` (its int32 scale ``s_in * s_w``), ``<path>.input`` and
    ``<path>.output``; for every other tensor the integer model quantizes (model input, residual
    adds, ...) ``<node>.output``."""
    out: Dict[str, Dict[str, Any]] = {}
    static = im.mode == "static"
    for name, ws in weight_scales.items():
        path = targets.get(name, name)
        w = np.asarray(ws, np.float64)
        out[f"{path}.weight"] = tensor_entry(w, weight_bits)
        if not static:
            continue
        L = im.layers[name]
        xs = np.float64(L.x.scale)
        if L.bias is not None and bias_bits is not None:
            out[f"{path}.bias"] = tensor_entry(xs * w, bias_bits)
        out[f"{path}.input"] = tensor_entry(xs, _bits(L.x))
        out[f"{path}.output"] = tensor_entry(L.out.scale, _bits(L.out))
    if static:
        for name, L in im.layers.items():
            if name not in weight_scales and L.out is not None:
                out[f"{name}.output"] = tensor_entry(L.out.scale, _bits(L.out))
    return out


def layer_shifts(im: Any, targets: Dict[str, str]) -> Dict[str, Dict[str, Any]]:
    """Per conv / linear layer of a static pow2 integer model: the exponents of its scales and
    the requantizing shift of each output channel, ``n = e_out - e_in - e_w``
    (``y = clamp(((acc + bias) + 2**(n-1)) >> n + zp)``; ``n < 0`` is an exact left shift)."""
    out: Dict[str, Dict[str, Any]] = {}
    for name, L in im.compute_layers().items():
        ex = int(_exponents(L.x.scale))
        ew = _exponents(L.w_scale).reshape(-1)
        eo = int(_exponents(L.out.scale))
        n = eo - ex - ew
        lo, hi = L.out.qrange()
        out[name] = {
            "module": targets.get(name, name), "kind": L.op,
            "input_exponent": ex, "weight_exponent": ew.tolist(), "output_exponent": eo,
            "input_zero_point": int(L.x.zero_point), "output_zero_point": int(L.out.zero_point),
            "shift": np.broadcast_to(n, (L.w_int.shape[0],)).tolist(),
            "hardware_op": [f"(acc + {1 << (int(v) - 1)}) >> {int(v)}" if v > 0 else
                            (f"acc << {-int(v)}" if v < 0 else "acc") for v in np.atleast_1d(n)],
            "rounding": "half_up",
            "act_min": int(lo if L.act_min is None else L.act_min),
            "act_max": int(hi if L.act_max is None else L.act_max),
            "bias_scale_exponent": (ex + ew).tolist(),
        }
    return out


def write_json(path: str, report: Dict[str, Any]) -> None:
    """Write the report atomically (temp file, then rename)."""
    qio.atomic_write_text(path, json.dumps(report, indent=2, default=_json_default) + "\n")
