"""A small reader of ``.tflite`` files (the FlatBuffers schema of LiteRT, ``schema.fbs``).

Reads what an integer model needs, with no TensorFlow and no generated schema code: the first
subgraph's tensors (shape, type, name, quantization, constant data), its operators (builtin
code, inputs, outputs, options) and its inputs and outputs.

FlatBuffers in brief: a table starts with an int32 offset back to its vtable (uint16 vtable size,
uint16 table size, then one uint16 field offset per field, 0 = absent); scalars are stored
inline, vectors / strings / tables through a uint32 offset relative to where it is stored,
vectors and strings start with a uint32 length. A union field takes two slots (type, value).

Example:
    >>> # from qkernels.io.tflite import read_model
    >>> # m = read_model("model.tflite"); [op.name for op in m.operators]
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

__all__ = ["TFLiteModel", "Tensor", "Operator", "read_model", "unpack_int4", "BUILTIN_NAMES",
           "TENSOR_TYPES", "PACKED_BITS", "ACTIVATIONS"]

#: BuiltinOperator codes of schema.fbs (those an int8 CNN uses, and a few to name in errors)
BUILTIN_NAMES: Dict[int, str] = {
    0: "ADD", 1: "AVERAGE_POOL_2D", 2: "CONCATENATION", 3: "CONV_2D", 4: "DEPTHWISE_CONV_2D",
    6: "DEQUANTIZE", 9: "FULLY_CONNECTED", 14: "LOGISTIC", 17: "MAX_POOL_2D", 18: "MUL",
    19: "RELU", 20: "RELU_N1_TO_1", 21: "RELU6", 22: "RESHAPE", 25: "SOFTMAX", 28: "TANH",
    34: "PAD", 39: "TRANSPOSE", 40: "MEAN", 43: "SQUEEZE", 45: "STRIDED_SLICE", 77: "SHAPE",
    83: "PACK", 114: "QUANTIZE", 117: "HARD_SWISH",
}
#: TensorType -> NumPy dtype (None: no NumPy form here)
TENSOR_TYPES: Dict[int, Optional[np.dtype]] = {
    0: np.dtype(np.float32), 1: np.dtype(np.float16), 2: np.dtype(np.int32),
    3: np.dtype(np.uint8), 4: np.dtype(np.int64), 6: np.dtype(np.bool_),
    7: np.dtype(np.int16), 9: np.dtype(np.int8), 10: np.dtype(np.float64),
    17: np.dtype(np.int8),  # INT4, two a byte: unpacked to int8 values in [-8, 7]
}
#: Packed sub-byte tensor types -> bits: constant data unpacked to int8 as TFLite does
#: (``tensor_utils::UnpackPackedIntToInt8``: low nibble first, sign-extended)
PACKED_BITS: Dict[int, int] = {17: 4}
ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}


class _Table:
    """One FlatBuffers table at ``pos`` of ``buf``."""

    __slots__ = ("buf", "pos", "vt", "vlen")

    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf = buf
        self.pos = pos
        self.vt = pos - struct.unpack_from("<i", buf, pos)[0]
        self.vlen = struct.unpack_from("<H", buf, self.vt)[0]

    def _off(self, slot: int) -> int:
        o = 4 + 2 * slot
        if o >= self.vlen:
            return 0
        return struct.unpack_from("<H", self.buf, self.vt + o)[0]

    def scalar(self, slot: int, fmt: str, default: Any = 0) -> Any:
        o = self._off(slot)
        return default if o == 0 else struct.unpack_from("<" + fmt, self.buf, self.pos + o)[0]

    def _ref(self, slot: int) -> int:
        o = self._off(slot)
        if o == 0:
            return 0
        p = self.pos + o
        return p + struct.unpack_from("<I", self.buf, p)[0]

    def table(self, slot: int) -> Optional["_Table"]:
        p = self._ref(slot)
        return _Table(self.buf, p) if p else None

    def vector(self, slot: int, dtype: Any) -> Optional[np.ndarray]:
        p = self._ref(slot)
        if not p:
            return None
        n = struct.unpack_from("<I", self.buf, p)[0]
        return np.frombuffer(self.buf, np.dtype(dtype).newbyteorder("<"), n, p + 4).copy()

    def tables(self, slot: int) -> List["_Table"]:
        p = self._ref(slot)
        if not p:
            return []
        n = struct.unpack_from("<I", self.buf, p)[0]
        out = []
        for i in range(n):
            q = p + 4 + 4 * i
            out.append(_Table(self.buf, q + struct.unpack_from("<I", self.buf, q)[0]))
        return out

    def string(self, slot: int) -> str:
        p = self._ref(slot)
        if not p:
            return ""
        n = struct.unpack_from("<I", self.buf, p)[0]
        return self.buf[p + 4:p + 4 + n].decode("utf-8", "replace")


@dataclass
class Tensor:
    """One tensor: ``data`` is the constant value (None for activations); ``scale`` /
    ``zero_point`` are arrays (length 1 per tensor, one per channel along ``quantized_dimension``)
    or None when the tensor is not quantized."""

    index: int
    name: str
    shape: Tuple[int, ...]
    type: int
    dtype: Optional[np.dtype]
    scale: Optional[np.ndarray] = None
    zero_point: Optional[np.ndarray] = None
    quantized_dimension: int = 0
    data: Optional[np.ndarray] = None

    @property
    def quantized(self) -> bool:
        return self.scale is not None and self.scale.size > 0


@dataclass
class Operator:
    """One operator: its builtin name, tensor indices (-1 = absent) and options (a dict)."""

    name: str
    code: int
    inputs: Tuple[int, ...]
    outputs: Tuple[int, ...]
    options: Dict[str, Any] = field(default_factory=dict)


@dataclass
class TFLiteModel:
    """The first subgraph of a .tflite file."""

    version: int
    tensors: List[Tensor]
    operators: List[Operator]
    inputs: Tuple[int, ...]
    outputs: Tuple[int, ...]
    description: str = ""


def _options(name: str, t: Optional[_Table]) -> Dict[str, Any]:
    """The builtin options of one op (schema.fbs field order)."""
    def act(slot: int) -> str:
        return ACTIVATIONS.get(t.scalar(slot, "b", 0), "?") if t else "NONE"
    pad = {0: "SAME", 1: "VALID"}
    if name == "CONV_2D":
        return dict(padding=pad[t.scalar(0, "b", 0)], stride_w=t.scalar(1, "i"),
                    stride_h=t.scalar(2, "i"), activation=act(3),
                    dilation_w=t.scalar(4, "i", 1), dilation_h=t.scalar(5, "i", 1))
    if name == "DEPTHWISE_CONV_2D":
        return dict(padding=pad[t.scalar(0, "b", 0)], stride_w=t.scalar(1, "i"),
                    stride_h=t.scalar(2, "i"), depth_multiplier=t.scalar(3, "i"),
                    activation=act(4), dilation_w=t.scalar(5, "i", 1),
                    dilation_h=t.scalar(6, "i", 1))
    if name == "FULLY_CONNECTED":
        return dict(activation=act(0), weights_format=t.scalar(1, "b", 0) if t else 0,
                    keep_num_dims=bool(t.scalar(2, "B", 0)) if t else False)
    if name in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        return dict(padding=pad[t.scalar(0, "b", 0)], stride_w=t.scalar(1, "i"),
                    stride_h=t.scalar(2, "i"), filter_w=t.scalar(3, "i"),
                    filter_h=t.scalar(4, "i"), activation=act(5))
    if name in ("ADD", "MUL"):
        return dict(activation=act(0))
    if name == "CONCATENATION":
        return dict(axis=t.scalar(0, "i") if t else 0, activation=act(1))
    if name == "RESHAPE":
        ns = t.vector(0, np.int32) if t else None
        return dict(new_shape=None if ns is None else tuple(int(v) for v in ns))
    if name == "SOFTMAX":
        return dict(beta=t.scalar(0, "f", 0.0) if t else 1.0)
    if name == "MEAN":
        return dict(keep_dims=bool(t.scalar(0, "B", 0)) if t else False)
    return {}


def unpack_int4(raw: np.ndarray, shape: Tuple[int, ...], name: str = "") -> np.ndarray:
    """Two int4 values a byte, low nibble first, sign-extended (TFLite's
    ``UnpackPackedIntToInt8``), as int8 of ``shape``.

    Example:
        >>> unpack_int4(np.array([0x8F, 0x07], np.uint8), (3,)).tolist()
        [-1, -8, 7]
    """
    n = int(np.prod(shape, dtype=np.int64))
    if raw.size < (n + 1) // 2:
        raise ValueError(f"INT4 tensor {name!r}: {raw.size} bytes hold fewer than its {n} values")
    b = raw[:(n + 1) // 2].astype(np.int16)
    lo = ((b & 0x0F) ^ 0x08) - 0x08
    hi = ((b >> 4) ^ 0x08) - 0x08
    return np.stack([lo, hi], axis=1).reshape(-1)[:n].astype(np.int8).reshape(shape)


def read_model(source: Union[str, os.PathLike, bytes]) -> TFLiteModel:
    """Read a .tflite file (path or bytes). Raises ValueError on a file that is not one."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        buf = bytes(source)
    else:
        with open(source, "rb") as f:
            buf = f.read()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ValueError("not a .tflite file (no TFL3 identifier)")
    try:
        return _read(buf)
    except (struct.error, IndexError, KeyError) as exc:
        raise ValueError(f"malformed .tflite file: {exc}") from exc


def _read(buf: bytes) -> TFLiteModel:
    root = _Table(buf, struct.unpack_from("<I", buf, 0)[0])
    version = root.scalar(0, "I", 0)
    codes = []
    for oc in root.tables(1):
        dep = oc.scalar(0, "b", 0)
        code = oc.scalar(3, "i", 0)
        codes.append(max(int(dep), int(code)))
    subgraphs = root.tables(2)
    if not subgraphs:
        raise ValueError("the model has no subgraph")
    buffers = root.tables(4)
    sg = subgraphs[0]
    tensors = []
    for i, t in enumerate(sg.tables(0)):
        shape = t.vector(0, np.int32)
        ttype = t.scalar(1, "b", 0)
        dt = TENSOR_TYPES.get(ttype)
        bidx = t.scalar(2, "I", 0)
        q = t.table(4)
        scale = zp = None
        qdim = 0
        if q is not None:
            scale = q.vector(2, np.float32)
            zp = q.vector(3, np.int64)
            qdim = q.scalar(6, "i", 0)
        data = None
        if 0 < bidx < len(buffers):
            raw = buffers[bidx].vector(0, np.uint8)
            if raw is not None and raw.size and ttype in PACKED_BITS:
                data = unpack_int4(raw, tuple(int(v) for v in shape), t.string(3))
            elif raw is not None and raw.size and dt is not None:
                data = raw.view(dt).reshape(tuple(int(v) for v in shape))
            elif raw is not None and raw.size:
                data = raw
        tensors.append(Tensor(i, t.string(3), tuple(int(v) for v in (shape if shape is not None
                                                                      else ())),
                              int(ttype), dt, scale if scale is not None and scale.size else None,
                              zp, int(qdim), data))
    ops = []
    for o in sg.tables(3):
        code = codes[o.scalar(0, "I", 0)]
        name = BUILTIN_NAMES.get(code, f"BUILTIN_{code}")
        ins = o.vector(1, np.int32)
        outs = o.vector(2, np.int32)
        ops.append(Operator(name, code, tuple(int(v) for v in (ins if ins is not None else ())),
                            tuple(int(v) for v in (outs if outs is not None else ())),
                            _options(name, o.table(4))))
    ins = sg.vector(1, np.int32)
    outs = sg.vector(2, np.int32)
    return TFLiteModel(int(version), tensors, ops, tuple(int(v) for v in ins),
                       tuple(int(v) for v in outs), root.string(3))
