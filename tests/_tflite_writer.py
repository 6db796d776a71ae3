"""A small .tflite writer for the tests: a model of a few builtin ops, with the tensors,
quantization parameters and constants given, written with the ``flatbuffers`` package (a
dependency of ai-edge-litert) in LiteRT's schema (``schema.fbs`` field order, the same slots
``qkernels.io.tflite`` reads). The tests build one such model per layer of an IntegerModel, from
the layer's own parameters, and run it in LiteRT's interpreter.

Example:
    >>> # t = [Tensor((1, 4), "int8", 0.1, 3), Tensor((1, 4), "int8", 1 / 256, -128)]
    >>> # tfl = write_model(t, [Op("LOGISTIC", [0], [1])], inputs=[0], outputs=[1])
"""
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from qkernels.io.tflite import BUILTIN_NAMES

_CODES = {v: k for k, v in BUILTIN_NAMES.items()}
_TYPES = {"float32": 0, "int32": 2, "int8": 9}
_ACT = {"NONE": 0, "RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3}
_PAD = {"SAME": 0, "VALID": 1}
#: BuiltinOptions union codes, and each option's (slot, struct format) in schema.fbs order
_OPTIONS = {
    "CONV_2D": (1, [("padding", "b"), ("stride_w", "i"), ("stride_h", "i"), ("activation", "b"),
                    ("dilation_w", "i"), ("dilation_h", "i")]),
    "DEPTHWISE_CONV_2D": (2, [("padding", "b"), ("stride_w", "i"), ("stride_h", "i"),
                              ("depth_multiplier", "i"), ("activation", "b"),
                              ("dilation_w", "i"), ("dilation_h", "i")]),
    "AVERAGE_POOL_2D": (5, [("padding", "b"), ("stride_w", "i"), ("stride_h", "i"),
                            ("filter_w", "i"), ("filter_h", "i"), ("activation", "b")]),
    "FULLY_CONNECTED": (8, [("activation", "b")]),
    "SOFTMAX": (9, [("beta", "f")]),
    "CONCATENATION": (10, [("axis", "i"), ("activation", "b")]),
    "ADD": (11, [("activation", "b")]),
    "MUL": (21, [("activation", "b")]),
    "MEAN": (27, [("keep_dims", "B")]),
}
_OPTIONS["MAX_POOL_2D"] = _OPTIONS["AVERAGE_POOL_2D"]


@dataclass
class Tensor:
    shape: Sequence[int]
    dtype: str
    scale: Any = None                 # scalar or per-channel array (None: not quantized)
    zero_point: Any = 0
    data: Optional[np.ndarray] = None  # a constant
    quantized_dimension: int = 0


@dataclass
class Op:
    name: str
    inputs: List[int]
    outputs: List[int]
    options: Dict[str, Any] = field(default_factory=dict)


def write_model(tensors: Sequence[Tensor], ops: Sequence[Op], inputs: Sequence[int],
                outputs: Sequence[int]) -> bytes:
    import flatbuffers

    b = flatbuffers.Builder(1024)
    b.ForceDefaults(True)        # options equal to their default (padding SAME = 0) are stored

    def ivec(vals: Sequence[int]) -> int:
        return b.CreateNumpyVector(np.asarray(vals, np.int32))

    def tables(offs: Sequence[int]) -> int:
        b.StartVector(4, len(offs), 4)
        for o in reversed(offs):
            b.PrependUOffsetTRelative(o)
        return b.EndVector()

    # buffers: 0 is the empty sentinel, then one a constant
    buf_offs, buf_index = [], []
    b.StartObject(1)
    buf_offs.append(b.EndObject())
    for t in tensors:
        if t.data is None:
            buf_index.append(0)
            continue
        raw = np.ascontiguousarray(t.data, np.dtype(t.dtype)).view(np.uint8).reshape(-1)
        d = b.CreateNumpyVector(raw)
        b.StartObject(1)
        b.PrependUOffsetTRelativeSlot(0, d, 0)
        buf_index.append(len(buf_offs))
        buf_offs.append(b.EndObject())
    t_offs = []
    for i, t in enumerate(tensors):
        q = None
        if t.scale is not None:
            sc = b.CreateNumpyVector(np.atleast_1d(np.asarray(t.scale, np.float32)))
            zp = b.CreateNumpyVector(np.broadcast_to(np.asarray(t.zero_point, np.int64),
                                                     np.atleast_1d(t.scale).shape).copy())
            b.StartObject(7)
            b.PrependUOffsetTRelativeSlot(2, sc, 0)
            b.PrependUOffsetTRelativeSlot(3, zp, 0)
            b.PrependInt32Slot(6, int(t.quantized_dimension), 0)
            q = b.EndObject()
        name = b.CreateString(f"t{i}")
        shape = ivec(t.shape)
        b.StartObject(5)
        b.PrependUOffsetTRelativeSlot(0, shape, 0)
        b.PrependInt8Slot(1, _TYPES[t.dtype], 0)
        b.PrependUint32Slot(2, buf_index[i], 0)
        b.PrependUOffsetTRelativeSlot(3, name, 0)
        if q is not None:
            b.PrependUOffsetTRelativeSlot(4, q, 0)
        t_offs.append(b.EndObject())
    names = sorted({op.name for op in ops})
    o_offs = []
    for op in ops:
        opt = None
        kind = 0
        if op.name in _OPTIONS:
            kind, fields = _OPTIONS[op.name]
            b.StartObject(len(fields))
            for slot, (key, fmt) in enumerate(fields):
                v = op.options.get(key)
                if v is None:
                    continue
                v = _ACT.get(v, _PAD.get(v, v)) if isinstance(v, str) else v
                {"b": b.PrependInt8Slot, "B": b.PrependBoolSlot, "i": b.PrependInt32Slot,
                 "f": b.PrependFloat32Slot}[fmt](slot, v, 0 if fmt != "f" else 0.0)
            opt = b.EndObject()
        ins, outs = ivec(op.inputs), ivec(op.outputs)
        b.StartObject(5)
        b.PrependUint32Slot(0, names.index(op.name), 0)
        b.PrependUOffsetTRelativeSlot(1, ins, 0)
        b.PrependUOffsetTRelativeSlot(2, outs, 0)
        if opt is not None:
            b.PrependUint8Slot(3, kind, 0)
            b.PrependUOffsetTRelativeSlot(4, opt, 0)
        o_offs.append(b.EndObject())
    tv, ov = tables(t_offs), tables(o_offs)
    iv, outv = ivec(inputs), ivec(outputs)
    b.StartObject(5)
    b.PrependUOffsetTRelativeSlot(0, tv, 0)
    b.PrependUOffsetTRelativeSlot(1, iv, 0)
    b.PrependUOffsetTRelativeSlot(2, outv, 0)
    b.PrependUOffsetTRelativeSlot(3, ov, 0)
    sg = b.EndObject()
    c_offs = []
    for n in names:
        b.StartObject(4)
        b.PrependInt8Slot(0, min(_CODES[n], 127), 0)
        b.PrependInt32Slot(2, 1, 0)
        b.PrependInt32Slot(3, _CODES[n], 0)
        c_offs.append(b.EndObject())
    cv, sv, bv = tables(c_offs), tables([sg]), tables(buf_offs)
    b.StartObject(5)
    b.PrependUint32Slot(0, 3, 0)
    b.PrependUOffsetTRelativeSlot(1, cv, 0)
    b.PrependUOffsetTRelativeSlot(2, sv, 0)
    b.PrependUOffsetTRelativeSlot(4, bv, 0)
    root = b.EndObject()
    b.Finish(root, file_identifier=b"TFL3")
    return bytes(b.Output())
