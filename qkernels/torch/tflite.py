""".tflite in: an int8 (or 16x8) TFLite model as an :class:`~qkernels.torch.IntegerModel` on qkernels.

:func:`from_tflite` reads the flatbuffer (:mod:`qkernels.io.tflite`, no TensorFlow) and builds
one typed layer per operator: CONV_2D and DEPTHWISE_CONV_2D as :class:`~qkernels.torch.layers.
Conv2dLayer`, FULLY_CONNECTED as :class:`~qkernels.torch.layers.LinearLayer` (with the preset:
``tflite`` = LiteRT's reference kernels, ``tflite_xnnpack`` = its XNNPACK delegate, ``cmsis_nn``),
LOGISTIC / TANH / HARD_SWISH as 256-entry :class:`~qkernels.torch.layers.LookupLayer` tables of
TFLite's own arithmetic, and ADD, MUL, AVERAGE_POOL_2D, MAX_POOL_2D, MEAN, CONCATENATION,
RESHAPE, SOFTMAX as the ``TFLite*`` layers (:mod:`qkernels.tflite_ops`). The shape ops that
only compute a RESHAPE's target (SHAPE, STRIDED_SLICE, PACK) are folded into it.

16x8 models (int16 activations, int8 weights, int64 bias: TFLite's
``EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8``) import their CONV_2D,
DEPTHWISE_CONV_2D and FULLY_CONNECTED as :class:`~qkernels.torch.layers.Conv2d16Layer` /
:class:`~qkernels.torch.layers.Linear16Layer` (:mod:`qkernels.linear16`); INT4 weights are
unpacked to int8 in [-8, 7] (:func:`qkernels.io.tflite.unpack_int4`) and run on the 8-bit
kernels. ``docs/tflite.md`` says which kernel of each runtime that reproduces.

The model takes and returns what the TFLite model does, in float: NHWC inputs (quantized as the
preset's runtime does its QUANTIZE, ``Preset.quantize_flavor``: half away from zero for the
reference kernels, half to even for XNNPACK; the dequantized int8 input ``s * (q - zp)`` gives
back exactly ``q``),
and the dequantized output in TFLite's layout. 4-D tensors are held NCHW inside (qkernels'
conv layout); ``im.intermediates(x)[name].q`` has the integers of every layer.

Example:
    >>> # from qkernels.torch.tflite import from_tflite
    >>> # im = from_tflite("model.tflite"); y = im(x_nhwc)
    >>> # q = im.intermediates(x_nhwc)[im.output].q       # == the interpreter's int8 output
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

import qkernels as qk
from qkernels import presets as P
from qkernels import tflite_ops as T
from qkernels.io.tflite import PACKED_BITS, Operator, Tensor, TFLiteModel, read_model

from . import layers as Ly
from ._runtime import QMeta
from .model import IntegerModel

__all__ = ["from_tflite", "TFLITE_PRESETS"]

#: The presets a TFLite model can run with (each the arithmetic of one runtime).
TFLITE_PRESETS = ("tflite", "tflite_xnnpack", "tflite_optimized", "cmsis_nn")
_SHAPE_OPS = ("SHAPE", "STRIDED_SLICE", "PACK")


def _unsupported(op: Operator, why: str = "") -> NotImplementedError:
    return NotImplementedError(f"TFLite op {op.name} {why}has no integer layer in from_tflite "
                               f"(supported: CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD, "
                               f"MUL, AVERAGE_POOL_2D, MAX_POOL_2D, MEAN, CONCATENATION, RESHAPE, "
                               f"SOFTMAX, LOGISTIC, TANH, HARD_SWISH, QUANTIZE of the input)")


class _Builder:
    def __init__(self, m: TFLiteModel, preset: P.Preset) -> None:
        self.m = m
        self.preset = preset
        # the XNNPACK delegate computes ADD, MUL, MEAN (and, through TFLite's optimized built-in,
        # SOFTMAX) its own way; the other presets follow the reference kernels
        self.runtime = preset.tflite_runtime or "reference"
        self.layers: List[Ly.Layer] = []
        self.value: Dict[int, str] = {}      # tensor index -> the layer (or input) holding it
        self.nchw: Dict[int, bool] = {}      # tensor index -> held NCHW (a 4-D activation)
        self.count: Dict[str, int] = {}

    # -- helpers ---------------------------------------------------------------------------
    def t(self, i: int) -> Tensor:
        return self.m.tensors[i]

    def meta(self, i: int) -> QMeta:
        t = self.t(i)
        if not t.quantized or t.dtype not in (np.dtype(np.int8), np.dtype(np.uint8),
                                              np.dtype(np.int16)):
            raise NotImplementedError(f"tensor {t.name!r} is {t.dtype} "
                                      f"{'quantized' if t.quantized else 'not quantized'}; "
                                      f"from_tflite runs int8 models (and 16x8 conv / fully "
                                      f"connected)")
        if t.scale.size != 1:
            raise NotImplementedError(f"activation {t.name!r} is quantized per channel")
        return QMeta(float(np.float32(t.scale[0])), int(t.zero_point[0]), t.dtype)

    def name(self, op: Operator) -> str:
        base = op.name.lower()
        k = self.count.get(base, 0)
        self.count[base] = k + 1
        return f"{base}_{k}"

    def add(self, L: Ly.Layer, out: int, nchw: bool) -> None:
        self.layers.append(L)
        self.value[out] = L.name
        self.nchw[out] = nchw

    def src(self, i: int) -> str:
        if i not in self.value:
            raise ValueError(f"tensor {self.t(i).name!r} is used before any op makes it")
        return self.value[i]

    def act(self, op: Operator, out: int) -> Tuple[int, int]:
        m = self.meta(out)
        return T.activation_range(op.options.get("activation", "NONE"), m.scale, m.zero_point,
                                  m.dtype)

    def const(self, i: int, what: str) -> np.ndarray:
        t = self.t(i)
        if t.data is None:
            raise NotImplementedError(f"{what} {t.name!r} is not a constant")
        return t.data

    def padding(self, op: Operator, h: int, w: int, kh: int, kw: int, dh: int = 1,
                dw: int = 1) -> Tuple[int, int, int, int]:
        if op.options["padding"] == "VALID":
            return (0, 0, 0, 0)
        pt, pb, _ = T.same_padding(h, kh, op.options["stride_h"], dh)
        pl, pr, _ = T.same_padding(w, kw, op.options["stride_w"], dw)
        return (pt, pl, pb, pr)

    def weight_scale(self, t: Tensor) -> Any:
        s = np.asarray(t.scale, np.float32)
        if t.zero_point is not None and (np.asarray(t.zero_point) != 0).any():
            raise NotImplementedError(f"weights {t.name!r} have nonzero zero points (TFLite's "
                                      f"int8 kernels take symmetric weights)")
        return s if s.size > 1 else np.float32(s[0])

    def bias(self, i: int, int16: bool = False) -> Optional[np.ndarray]:
        if i < 0:
            return None
        b = self.const(i, "bias")
        want = np.int64 if int16 else np.int32
        if b.dtype != want:
            raise NotImplementedError(
                f"bias {self.t(i).name!r} is {b.dtype}; {np.dtype(want).name} expected" +
                (" (16x8 with an int32 bias runs other TFLite kernels, not reproduced here)"
                 if int16 else ""))
        return np.ascontiguousarray(b.reshape(-1))

    def int16(self, op: Operator, x: int, out: int) -> bool:
        """The op is TFLite's 16x8 mode (int16 activations): checked as the interpreter does."""
        xm, om = self.meta(x), self.meta(out)
        is16 = xm.dtype == np.dtype(np.int16)
        if is16 != (om.dtype == np.dtype(np.int16)):
            raise NotImplementedError(f"{op.name} with {xm.dtype} input and {om.dtype} output")
        if is16:
            for m, t in ((xm, x), (om, out)):
                if m.zero_point != 0:
                    raise ValueError(f"{op.name}: int16 tensor {self.t(t).name!r} has zero "
                                     f"point {m.zero_point}; TFLite's 16x8 kernels require 0")
        return is16

    # -- ops -------------------------------------------------------------------------------
    def conv(self, op: Operator) -> None:
        x, w_i, b_i = op.inputs[0], op.inputs[1], op.inputs[2] if len(op.inputs) > 2 else -1
        out = op.outputs[0]
        xm, wt = self.meta(x), self.t(w_i)
        w = self.const(w_i, "filter")
        depthwise = op.name == "DEPTHWISE_CONV_2D"
        if depthwise:        # (1, kh, kw, C*M) -> (C*M, 1, kh, kw), groups C
            wq = np.ascontiguousarray(w[0].transpose(2, 0, 1)[:, None])
            groups = int(self.t(x).shape[3])
        else:                # OHWI -> OIHW
            wq = np.ascontiguousarray(w.transpose(0, 3, 1, 2))
            groups = 1
        o = op.options
        dh, dw = o.get("dilation_h", 1), o.get("dilation_w", 1)
        h, wd = self.t(x).shape[1:3]
        pad = self.padding(op, h, wd, wq.shape[2], wq.shape[3], dh, dw)
        ws = self.weight_scale(wt)
        lo, hi = self.act(op, out)
        is16 = self.int16(op, x, out)
        Cls = Ly.Conv2d16Layer if is16 else Ly.Conv2dLayer
        preset = self.preset
        if self.runtime == "xnnpack" and wt.type in PACKED_BITS:
            # measured (LiteRT 2.3.0): the XNNPACK delegate leaves CONV_2D / DEPTHWISE_CONV_2D
            # with INT4 filters to the optimized built-ins (it takes FULLY_CONNECTED's)
            preset = P.get("tflite_optimized")
        L = Cls(self.name(op), (self.src(x),), self.meta(out), x=xm, w_int=wq,
                w_scale=ws, w_zero_point=0,
                packed=None if is16 else qk.pack_conv2d(wq, groups=groups, w_scale=ws),
                bias=self.bias(b_i, is16), preset=preset, act_min=lo, act_max=hi,
                stride=(o["stride_h"], o["stride_w"]), padding=pad,
                dilation=(dh, dw), groups=groups)
        self.add(L, out, True)

    def fully_connected(self, op: Operator) -> None:
        x, w_i, b_i = op.inputs[0], op.inputs[1], op.inputs[2] if len(op.inputs) > 2 else -1
        out = op.outputs[0]
        if op.options.get("keep_num_dims"):
            raise _unsupported(op, "with keep_num_dims ")
        w = np.ascontiguousarray(self.const(w_i, "weights"))
        src = self.src(x)
        xshape = self.t(x).shape
        if len(xshape) != 2 or self.nchw.get(x, False):   # TFLite flattens to (-1, K) in NHWC order
            R = Ly.TFLiteReshapeLayer(self.name(Operator("RESHAPE", 22, (), ())), (src,),
                                      self.meta(x), shape=(-1, w.shape[1]),
                                      in_nchw=self.nchw.get(x, False))
            self.layers.append(R)
            src = R.name
        ws = self.weight_scale(self.t(w_i))
        lo, hi = self.act(op, out)
        is16 = self.int16(op, x, out)
        Cls = Ly.Linear16Layer if is16 else Ly.LinearLayer
        L = Cls(self.name(op), (src,), self.meta(out), x=self.meta(x), w_int=w,
                w_scale=ws, w_zero_point=0,
                packed=None if is16 else qk.pack_linear(w, w_scale=ws),
                bias=self.bias(b_i, is16), preset=self.preset, act_min=lo, act_max=hi)
        self.add(L, out, False)

    def binary(self, op: Operator) -> None:
        a, b = op.inputs[:2]
        out = op.outputs[0]
        if self.t(a).shape != self.t(b).shape:
            raise _unsupported(op, "with broadcasting ")
        lo, hi = self.act(op, out)
        L = Ly.TFLiteAddLayer(self.name(op), (self.src(a), self.src(b)), self.meta(out),
                              a=self.meta(a), b=self.meta(b),
                              kind="add" if op.name == "ADD" else "mul", act_min=lo, act_max=hi,
                              runtime=self.runtime)
        self.add(L, out, self.nchw.get(a, False))

    def pool(self, op: Operator) -> None:
        x, out = op.inputs[0], op.outputs[0]
        o = op.options
        xm, om = self.meta(x), self.meta(out)
        if (xm.scale, xm.zero_point) != (om.scale, om.zero_point):
            raise _unsupported(op, "with different input and output quantization ")
        h, w = self.t(x).shape[1:3]
        pad = self.padding(op, h, w, o["filter_h"], o["filter_w"])
        lo, hi = self.act(op, out)
        L = Ly.TFLitePool2dLayer(self.name(op), (self.src(x),), om,
                                 kind="avg" if op.name == "AVERAGE_POOL_2D" else "max",
                                 kernel_size=(o["filter_h"], o["filter_w"]),
                                 stride=(o["stride_h"], o["stride_w"]), padding=pad,
                                 act_min=lo, act_max=hi)
        self.add(L, out, True)

    def mean(self, op: Operator) -> None:
        x, ax, out = op.inputs[0], op.inputs[1], op.outputs[0]
        rank = len(self.t(x).shape)
        nchw = self.nchw.get(x, False)
        axes = tuple(sorted(Ly._nchw_axis(int(a), rank, nchw)
                            for a in np.ravel(self.const(ax, "axis"))))
        keep = bool(op.options.get("keep_dims", False))
        L = Ly.TFLiteMeanLayer(self.name(op), (self.src(x),), self.meta(out), x=self.meta(x),
                               axes=axes, keepdims=keep, runtime=self.runtime)
        self.add(L, out, nchw and keep)

    def concat(self, op: Operator) -> None:
        out = op.outputs[0]
        om = self.meta(out)
        for i in op.inputs:
            m = self.meta(i)
            if (m.scale, m.zero_point) != (om.scale, om.zero_point):
                raise ValueError(f"CONCATENATION input {self.t(i).name!r} has scale {m.scale}, "
                                 f"zero point {m.zero_point}; TFLite's int8 kernel requires the "
                                 f"output's ({om.scale}, {om.zero_point})")
        if op.options.get("activation", "NONE") != "NONE":
            raise _unsupported(op, "with a fused activation ")
        nchw = self.nchw.get(op.inputs[0], False)
        axis = Ly._nchw_axis(op.options.get("axis", 0), len(self.t(out).shape), nchw)
        L = Ly.TFLiteConcatLayer(self.name(op), tuple(self.src(i) for i in op.inputs), om,
                                 axis=axis)
        self.add(L, out, nchw)

    def reshape(self, op: Operator) -> None:
        x, out = op.inputs[0], op.outputs[0]
        shape = (-1,) + tuple(self.t(out).shape[1:])
        o4 = len(shape) == 4
        L = Ly.TFLiteReshapeLayer(self.name(op), (self.src(x),), self.meta(out), shape=shape,
                                  in_nchw=self.nchw.get(x, False), out_nchw=o4)
        self.add(L, out, o4)

    def softmax(self, op: Operator) -> None:
        x, out = op.inputs[0], op.outputs[0]
        om = self.meta(out)
        if om.dtype != np.dtype(np.int8) or om.zero_point != -128 or \
                abs(om.scale - 1 / 256) > 0.001 / 256:
            raise ValueError("SOFTMAX output must be int8 with scale 1/256 and zero point -128 "
                             "(TFLite's requirement)")
        nchw = self.nchw.get(x, False)
        axis = Ly._nchw_axis(-1, len(self.t(x).shape), nchw)
        L = Ly.TFLiteSoftmaxLayer(self.name(op), (self.src(x),), om, x=self.meta(x),
                                  beta=float(op.options.get("beta", 1.0)), axis=axis,
                                  runtime=self.runtime)
        self.add(L, out, nchw)

    def unary(self, op: Operator) -> None:
        x, out = op.inputs[0], op.outputs[0]
        xm, om = self.meta(x), self.meta(out)
        if op.name == "LOGISTIC":
            table = T.logistic_table(xm.scale, xm.zero_point, om.scale, om.zero_point, xm.dtype)
        elif op.name == "TANH":
            table = T.tanh_table(xm.scale, xm.zero_point, om.scale, om.zero_point, xm.dtype)
        else:
            table = T.hard_swish_table(xm.scale, xm.zero_point, om.scale, om.zero_point,
                                       xm.dtype)
        L = Ly.LookupLayer(self.name(op), (self.src(x),), om, x=xm, table=table,
                           function=f"tflite {op.name.lower()}")
        self.add(L, out, self.nchw.get(x, False))

    def quantize(self, op: Operator) -> None:
        x, out = op.inputs[0], op.outputs[0]
        if x in self.m.inputs and self.t(x).dtype == np.dtype(np.float32):
            L = Ly.TFLiteInputLayer(self.name(op), (self.t(x).name,), self.meta(out),
                                    nhwc=len(self.t(x).shape) == 4,
                                    flavor=self.preset.quantize_flavor)
            self.add(L, out, len(self.t(x).shape) == 4)
            return
        raise _unsupported(op, "(a requantization between integer tensors) ")

    OPS = {"CONV_2D": conv, "DEPTHWISE_CONV_2D": conv, "FULLY_CONNECTED": fully_connected,
           "ADD": binary, "MUL": binary, "AVERAGE_POOL_2D": pool, "MAX_POOL_2D": pool,
           "MEAN": mean, "CONCATENATION": concat, "RESHAPE": reshape, "SOFTMAX": softmax,
           "LOGISTIC": unary, "TANH": unary, "HARD_SWISH": unary, "QUANTIZE": quantize}

    def build(self) -> IntegerModel:
        m = self.m
        shape_only = {op.inputs[1] for op in m.operators if op.name == "RESHAPE"
                      and len(op.inputs) > 1}
        skip = set()
        for k in range(len(m.operators) - 1, -1, -1):   # the ops that only compute a target shape
            op = m.operators[k]
            if op.name in _SHAPE_OPS and all(o in shape_only for o in op.outputs):
                skip.add(k)
                shape_only.update(op.inputs)
        inputs = []
        for i in m.inputs:
            t = self.t(i)
            inputs.append(t.name)
            if t.dtype == np.dtype(np.float32):
                self.value[i] = t.name      # a QUANTIZE op follows
                continue
            L = Ly.TFLiteInputLayer(f"input_{len(inputs) - 1}", (t.name,), self.meta(i),
                                    nhwc=len(t.shape) == 4, flavor=self.preset.quantize_flavor)
            self.add(L, i, len(t.shape) == 4)
        for k, op in enumerate(m.operators):
            if k in skip:
                continue
            f = self.OPS.get(op.name)
            if f is None:
                raise _unsupported(op)
            f(self, op)
        if len(m.outputs) != 1:
            raise NotImplementedError("from_tflite takes models with one output")
        out = m.outputs[0]
        name = self.src(out)
        if self.nchw.get(out, False):      # back to TFLite's NHWC
            shape = (-1,) + tuple(self.t(out).shape[1:])
            R = Ly.TFLiteReshapeLayer("output_nhwc", (name,), self.meta(out), shape=shape,
                                      in_nchw=True, out_nchw=False)
            self.layers.append(R)
            name = R.name
        return IntegerModel(self.layers, inputs, name, preset=self.preset)


def from_tflite(source: Union[str, os.PathLike, bytes], preset: Any = "tflite",
                threads: Optional[int] = None) -> IntegerModel:
    """An int8 (or 16x8, or INT4-weight) ``.tflite`` model (path or bytes) as an
    :class:`IntegerModel` on qkernels.

    ``preset``: the runtime reproduced: "tflite" (LiteRT's reference kernels,
    ``OpResolverType.BUILTIN_REF``), "tflite_xnnpack" (its default XNNPACK delegate: conv /
    fully connected in float32, and ADD, MUL, MEAN, SOFTMAX as that runtime computes them),
    "tflite_optimized" (its optimized built-ins without a delegate,
    ``BUILTIN_WITHOUT_DEFAULT_DELEGATES``), "cmsis_nn" (CMSIS-NN / TFLite Micro), or a :class:`~qkernels.presets.Preset` (its conv /
    linear arithmetic; the other ops then follow LiteRT's reference kernels,
    :mod:`qkernels.tflite_ops`).

    Raises:
        ValueError: not a .tflite file, or parameters TFLite itself refuses.
        NotImplementedError: an op or tensor type with no integer layer here (the message names
            it).

    Example:
        >>> # im = from_tflite("model.tflite", preset="tflite"); y = im(x)
    """
    pr = P.get(preset)
    im = _Builder(read_model(source), pr).build()
    im.threads = qk.linear.check_threads(threads)
    return im
