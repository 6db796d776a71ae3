"""Save and load an IntegerModel: every typed layer as a JSON record plus its arrays.

:func:`save_model` writes ``model.json`` (the graph: layer order, types, inputs, every
parameter; arrays by name) and returns the arrays to put in ``model.npz``; :func:`load_model`
reads both back: the layers, inputs, output and preset from which
:class:`~qkernels.torch.IntegerModel` rebuilds a model that gives the same integers, without the
original PyTorch model (packed weights are rebuilt from the stored integers). Float
ops kept between integer layers (torch modules or functions) and user handlers are stored with
``torch.save`` in ``float_ops.pt`` beside them (handlers must be importable functions).
:func:`qkernels.torch.IntegerModel.export` calls :func:`save_model`; ``IntegerModel.load(dir)``
builds the model from what :func:`load_model` reads.

Example:
    >>> # im.export("out/resnet", x[:1]); im2 = IntegerModel.load("out/resnet")
    >>> # (im2.intermediates(x)["fc"].q == im.intermediates(x)["fc"].q).all()
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
from typing import Any, Dict, List, Tuple

import numpy as np

import qkernels as qk
from qkernels import presets as P

from . import layers as Ly
from ._runtime import QMeta

FORMAT = "qkernels-integer-model/1"
_LAYERS = {cls.__name__: cls for cls in (
    Ly.QuantizeLayer, Ly.DequantizeLayer, Ly.Conv2dLayer, Ly.LinearLayer, Ly.DynamicLayer,
    Ly.AddLayer, Ly.ClampLayer, Ly.LeakyReLULayer, Ly.LookupLayer, Ly.MaxPool2dLayer,
    Ly.AvgPool2dLayer, Ly.AdaptiveAvgPool2dLayer, Ly.CatLayer, Ly.FlattenLayer, Ly.IdentityLayer,
    Ly.LayerNormLayer, Ly.FloatLayer, Ly.HandlerLayer, Ly.ConstantLayer, Ly.GetItemLayer,
    Ly.MulLayer, Ly.ScalarLayer, Ly.MeanLayer, Ly.ShapeLayer,
    Ly.TFLiteInputLayer, Ly.TFLiteAddLayer, Ly.TFLitePool2dLayer, Ly.TFLiteMeanLayer,
    Ly.TFLiteConcatLayer, Ly.TFLiteReshapeLayer, Ly.TFLiteSoftmaxLayer, Ly.Conv2d16Layer,
    Ly.Linear16Layer, Ly.ConvTranspose2dLayer, Ly.UpsampleBilinearLayer, Ly.UpsampleNearestLayer)}
_SKIP = ("packed", "_prep")   # rebuilt on load


class _Encoder:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.arrays: Dict[str, np.ndarray] = {}
        self.objects: Dict[str, Any] = {}

    def __call__(self, v: Any, key: str) -> Any:
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, (int, np.integer)):
            return int(v)
        if isinstance(v, (float, np.floating)):
            return float(v)
        if isinstance(v, np.dtype):
            return {"@dtype": v.name}
        if isinstance(v, np.ndarray):
            name = f"{self.prefix}/@{key}"
            self.arrays[name] = v
            return {"@array": name}
        if isinstance(v, QMeta):
            return {"@qmeta": [float(v.scale), int(v.zero_point), np.dtype(v.dtype).name,
                               None if v.bits is None else int(v.bits)]}
        if isinstance(v, P.Preset):
            if P.PRESETS.get(v.name) == v:
                return {"@preset": v.name}
            return {"@preset": {f.name: self(getattr(v, f.name), f"{key}.{f.name}")
                                for f in dataclasses.fields(v) if f.init}}
        if isinstance(v, (qk.LayerNormParams, qk.PTFParams)):
            kind = "@layernorm" if isinstance(v, qk.LayerNormParams) else "@ptf"
            return {kind: {f.name: self(getattr(v, f.name), f"{key}.{f.name}")
                           for f in dataclasses.fields(v) if f.init}}
        if isinstance(v, Ly._Slot):
            return {"@slot": v.i}
        if isinstance(v, tuple):
            return {"@tuple": [self(a, f"{key}.{i}") for i, a in enumerate(v)]}
        if isinstance(v, list):
            return [self(a, f"{key}.{i}") for i, a in enumerate(v)]
        if isinstance(v, dict) and all(isinstance(k, str) for k in v):
            return {"@dict": {k: self(a, f"{key}.{k}") for k, a in v.items()}}
        name = f"{self.prefix}/@{key}"   # a torch module / function / tensor / user callable
        self.objects[name] = v
        return {"@object": name}


def _decode(v: Any, arrays: Dict[str, np.ndarray], objects: Dict[str, Any]) -> Any:
    if isinstance(v, list):
        return [_decode(a, arrays, objects) for a in v]
    if not isinstance(v, dict):
        return v
    (tag, val), = v.items()
    if tag == "@array":
        return np.asarray(arrays[val])
    if tag == "@dtype":
        return np.dtype(val)
    if tag == "@qmeta":
        return QMeta(val[0], val[1], np.dtype(val[2]), val[3])
    if tag == "@preset":
        if isinstance(val, str):
            return P.get(val)
        return P.Preset(**{k: _decode(a, arrays, objects) for k, a in val.items()})
    if tag == "@ptf":
        return qk.PTFParams(**{k: _decode(a, arrays, objects) for k, a in val.items()})
    if tag == "@layernorm":
        return qk.LayerNormParams(**{k: _decode(a, arrays, objects) for k, a in val.items()})
    if tag == "@slot":
        return Ly._Slot(val)
    if tag == "@tuple":
        return tuple(_decode(a, arrays, objects) for a in val)
    if tag == "@dict":
        return {k: _decode(a, arrays, objects) for k, a in val.items()}
    if tag == "@object":
        if val not in objects:
            raise ValueError(f"model.json refers to {val}, which float_ops.pt does not hold")
        return objects[val]
    raise ValueError(f"model.json: unknown tag {tag!r}")


def layer_record(L: Ly.Layer) -> Tuple[Dict[str, Any], Dict[str, np.ndarray], Dict[str, Any]]:
    """(JSON record, arrays, non-array objects) of one layer."""
    enc = _Encoder(L.name)
    fields = {f.name: enc(getattr(L, f.name), f.name) for f in dataclasses.fields(L)
              if f.name not in _SKIP}
    return {"type": type(L).__name__, "op": L.op, "fields": fields}, enc.arrays, enc.objects


def save_model(im: Any) -> Tuple[str, Dict[str, np.ndarray], Dict[str, Any]]:
    """``model.json`` text, the arrays for ``model.npz`` and the objects for ``float_ops.pt``."""
    records: List[Dict[str, Any]] = []
    arrays: Dict[str, np.ndarray] = {}
    objects: Dict[str, Any] = {}
    for L in im.layers.values():
        rec, arr, obj = layer_record(L)
        records.append(rec)
        arrays.update(arr)
        objects.update(obj)
    enc = _Encoder("@model")
    head = {"format": FORMAT, "qkernels": qk.__version__, "mode": im.mode,
            "preset": enc(im.preset, "preset") if im.preset is not None else None,
            "inputs": list(im.inputs), "output": _output_json(im.output), "layers": records}
    return json.dumps(head, indent=1) + "\n", arrays, objects


def _output_json(spec: Any) -> Any:
    if isinstance(spec, str):
        return spec
    return Ly.map_nested(spec, lambda v: isinstance(v, Ly.OutputRef), lambda v: {"@ref": v.name})


def _output_spec(v: Any) -> Any:
    if isinstance(v, str):
        return v
    if isinstance(v, dict) and set(v) == {"@ref"}:
        return Ly.OutputRef(v["@ref"])
    if isinstance(v, list):
        return [_output_spec(a) for a in v]
    if isinstance(v, dict):
        return {k: _output_spec(a) for k, a in v.items()}
    return v


def load_model(path: str) -> Tuple[List[Ly.Layer], List[str], Any, Any, str]:
    """What ``IntegerModel(...)`` needs to rebuild the model saved in folder ``path`` (an export):
    (layers, inputs, output spec, preset, mode); same layers, same integers.

    Raises:
        FileNotFoundError / ValueError naming the file when the folder is not an export or a
        file is damaged.
    """
    jpath = os.path.join(path, "model.json")
    if not os.path.exists(jpath):
        raise FileNotFoundError(f"{path}: no model.json; is this a folder IntegerModel.export wrote?")
    try:
        with open(jpath) as f:
            head = json.load(f)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{jpath}: not readable ({exc})") from None
    if head.get("format") != FORMAT:
        raise ValueError(f"{jpath}: format {head.get('format')!r}, expected {FORMAT!r}")
    with np.load(os.path.join(path, "model.npz"), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if "/@" in k}
    objects: Dict[str, Any] = {}
    opath = os.path.join(path, "float_ops.pt")
    if os.path.exists(opath):
        import torch

        with open(opath, "rb") as f:
            objects = torch.load(io.BytesIO(f.read()), weights_only=False)
    layers = []
    for rec in head["layers"]:
        cls = _LAYERS.get(rec["type"])
        if cls is None:
            raise ValueError(f"{jpath}: unknown layer type {rec['type']!r}")
        kw = {k: _decode(v, arrays, objects) for k, v in rec["fields"].items()}
        layers.append(Ly.repack(cls(**kw)))
    preset = _decode(head["preset"], arrays, objects) if head.get("preset") else None
    return (layers, list(head["inputs"]), _output_spec(head["output"]), preset,
            head.get("mode", "static"))
