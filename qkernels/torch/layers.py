"""The typed layers of an integer model: one dataclass per integer op, whatever front end built it
(:func:`qkernels.torch.quantize_model` from a float model, :func:`qkernels.torch.from_torch_quantized`
from a model PyTorch quantized).

A layer holds everything its integer op needs, derived and checked when the model is built: the
names of the values it reads (``inputs``), the quantization of its output (``out``, a
:class:`~qkernels.torch._runtime.QMeta`, or None for a float value), and its own parameters
(weights, zero points, geometry, the preset...). It knows

- ``kernel()``: its compiled integer op (a :mod:`~qkernels.torch._runtime` kernel over qkernels'
  public API: the prepared conv / linear calls, :mod:`qkernels.qops`, the keyword functions);
- ``reference_kernel()``: the same op through the keyword API and the NumPy reference
  arithmetic of :mod:`qkernels.torch.qarith` (the tests prove both give the same integers);
- ``params()`` / ``arrays()``: what the export writes for it (scalars, and constant arrays such as
  weights), and ``accumulator_bound()`` for layers with an int32 accumulator.

Example:
    >>> import numpy as np
    >>> from qkernels.torch.layers import ClampLayer
    >>> from qkernels.torch._runtime import QMeta
    >>> relu = ClampLayer("relu", ("x",), QMeta(0.1, 10, np.dtype(np.uint8)), lo=10, hi=255)
    >>> relu.kernel()(1, np.uint8([3, 12]))
    array([10, 12], dtype=uint8)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Dict, List, Optional, Sequence, Tuple

import numpy as np

import qkernels as qk
from qkernels import qops
from qkernels.presets import TFLITE_RUNTIMES, Preset

from . import _runtime as rt
from . import qarith as qa
from ._runtime import QMeta
from .qarith import QTensor

F32 = np.float32
Kernel = rt.Kernel
_Q8 = (np.dtype(np.uint8), np.dtype(np.int8))

__all__ = ["Layer", "QuantizeLayer", "DequantizeLayer", "Conv2dLayer", "LinearLayer",
           "ConvTranspose2dLayer", "conv_transpose_weights", "conv_transpose_geometry",
           "DynamicLayer", "AddLayer", "ClampLayer", "LeakyReLULayer", "LookupLayer",
           "MaxPool2dLayer", "AvgPool2dLayer", "AdaptiveAvgPool2dLayer", "CatLayer",
           "FlattenLayer", "IdentityLayer", "LayerNormLayer", "FloatLayer", "HandlerLayer",
           "MulLayer", "ScalarLayer", "MeanLayer", "ShapeLayer", "BatchNormLayer", "UpsampleNearestLayer",
           "UpsampleBilinearLayer",
           "ConstantLayer", "GetItemLayer", "TFLiteInputLayer", "TFLiteAddLayer",
           "TFLitePool2dLayer", "TFLiteMeanLayer", "TFLiteConcatLayer", "TFLiteReshapeLayer",
           "TFLiteSoftmaxLayer", "OutputRef"]


def _q(meta: Optional[QMeta]) -> Callable[[np.ndarray], QTensor]:
    return lambda v: QTensor(v, meta.scale, meta.zero_point)


def _saturating(out: QMeta, kernel: Kernel) -> Kernel:
    """``kernel`` with its output clamped to ``out``'s bit range when that is narrower than the
    storage type (4-bit activations in int8: [-8, 7]); PyTorch's quantized add and LeakyReLU
    saturate to the storage type only."""
    if out.bits is None:
        return kernel
    lo, hi = out.qrange()
    k = rt.per_sample(lambda t, *xs: np.clip(kernel(t, *xs), lo, hi))
    k.per_sample = getattr(kernel, "per_sample", False)   # type: ignore[attr-defined]
    return k


def _bits_params(out: QMeta) -> Dict[str, Any]:
    """``qmin`` / ``qmax`` for the export when the output is narrower than its storage type."""
    if out.bits is None:
        return {}
    lo, hi = out.qrange()
    return {"qmin": int(lo), "qmax": int(hi)}


@dataclass(eq=False)
class Layer:
    """One node of the integer graph (see the module docstring)."""

    name: str
    inputs: Tuple[str, ...]
    out: Optional[QMeta]
    op: ClassVar[str] = "layer"
    #: the C library computes this layer from its export (csrc/examples/model_golden.c runs it);
    #: the others' exports hold their parameters and goldens only
    in_c: ClassVar[bool] = False

    def kernel(self) -> Kernel:
        raise NotImplementedError

    def reference_kernel(self) -> Kernel:
        """The op through the keyword API / NumPy reference arithmetic (default: kernel())."""
        k = self.kernel()
        return lambda t, *v: k(t, *v)

    def params(self) -> Dict[str, Any]:
        """The layer's scalars for the export (params.txt, report.json)."""
        p: Dict[str, Any] = {"kind": self.op}
        if self.out is not None:
            p.update(out_scale=float(self.out.scale), out_zero_point=int(self.out.zero_point),
                     out_dtype=np.dtype(self.out.dtype).name)
        return p

    def arrays(self) -> Dict[str, np.ndarray]:
        """The layer's constant arrays for the export (weights, tables...)."""
        return {}

    def accumulator_bound(self) -> Optional[int]:
        """Worst-case |int32 accumulator| (layers with one), else None."""
        return None

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        if "packed" in state:          # C packed weights: rebuilt from the integers
            state["packed"] = None
        state.pop("_prep", None)
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        if "_prep" in type(self).__dataclass_fields__:
            self._prep = None
        if "packed" in state and state["packed"] is None:
            repack(self)


def repack(L: Layer) -> Layer:
    """The C packed weights of a conv / linear layer, rebuilt from its integers (after loading
    or unpickling)."""
    w = getattr(L, "w_int", None)
    if w is None or isinstance(L, (Conv2d16Layer, Linear16Layer)):   # int16 x: no packing
        return L
    if isinstance(L, Conv2dLayer) or getattr(L, "kind", "") == "conv":
        L.packed = qk.pack_conv2d(w, groups=L.groups, w_zero_point=L.w_zero_point,
                                  w_scale=L.w_scale)
    else:
        L.packed = qk.pack_linear(w, w_zero_point=L.w_zero_point, w_scale=L.w_scale)
    return L


# ---- quantize / dequantize -----------------------------------------------------------------------
@dataclass(eq=False)
class QuantizeLayer(Layer):
    """Float -> integers with the output's parameters (``quantize_per_tensor``, flavor torch)."""

    op: ClassVar[str] = "quantize"

    def kernel(self) -> Kernel:
        lo, hi = self.out.qrange()
        return rt.quantize_kernel(self.out, lo, hi)

    def params(self) -> Dict[str, Any]:
        lo, hi = self.out.qrange()
        return dict(super().params(), qmin=lo, qmax=hi, flavor="torch")


@dataclass(eq=False)
class DequantizeLayer(Layer):
    """Integers -> float32, ``fl(s * (q - zp))``."""

    x: Optional[QMeta] = None
    op: ClassVar[str] = "dequantize"

    def kernel(self) -> Kernel:
        return rt.dequantize_kernel(self.x) if self.x is not None else rt.identity_kernel()


# ---- conv / linear --------------------------------------------------------------------------------
@dataclass(eq=False)
class _WeightedLayer(Layer):
    """Common part of the conv and linear layers: int8 weights (per-channel or per-tensor scale
    and zero point), the layer's bias as its preset takes it (float, or int32 in accumulator
    units), the preset, and the output clamp (fused ReLU / ReLU6)."""

    x: QMeta = None                       # type: ignore[assignment]
    w_int: np.ndarray = None              # type: ignore[assignment]
    w_scale: Any = None
    w_zero_point: Any = 0
    packed: Any = None
    bias: Optional[np.ndarray] = None     # as the preset takes it (see Preset.quantize_bias)
    preset: Preset = None                 # type: ignore[assignment]
    act_min: Optional[int] = None
    act_max: Optional[int] = None

    def _call_kw(self) -> Dict[str, Any]:
        return dict(x_scale=F32(self.x.scale), x_zero_point=int(self.x.zero_point),
                    w_scale=self.w_scale, out_scale=F32(self.out.scale),
                    out_zero_point=int(self.out.zero_point), preset=self.preset,
                    out_dtype=self.out.dtype, act_min=self.act_min, act_max=self.act_max)

    def a2(self) -> np.ndarray:
        """Sum of the weights per output channel (the zero-point term ``x_zp * a2``)."""
        n = self.w_int.shape[0]
        return self.w_int.reshape(n, -1).astype(np.int64).sum(axis=1).astype(np.int32)

    def epilogue(self) -> Any:
        """The C output stage (:class:`qkernels.presets.Epilogue`) of this layer."""
        return self.prepared().epilogue

    def params(self) -> Dict[str, Any]:
        e = self.epilogue()
        lo, hi = (self.act_min, self.act_max)
        info = np.iinfo(self.out.dtype)
        return dict(super().params(), preset=self.preset.name, scheme=e.scheme_name,
                    x_scale=float(self.x.scale),
                    x_zero_point=int(self.x.zero_point), x_dtype=np.dtype(self.x.dtype).name,
                    act_min=int(info.min) if lo is None else int(lo),
                    act_max=int(info.max) if hi is None else int(hi),
                    weight_shape=list(self.w_int.shape))

    def arrays(self) -> Dict[str, np.ndarray]:
        n = self.w_int.shape[0]
        out = {"weights": self.w_int, "w_scale": np.broadcast_to(self.w_scale, (n,)).astype(F32),
               "w_zero_point": np.broadcast_to(np.asarray(self.w_zero_point, np.int32), (n,)).copy(),
               "a2": self.a2()}
        out.update(self.epilogue().arrays())
        return out

    def accumulator_bound(self) -> int:
        lo, hi = self.x.qrange()
        xmax = max(abs(hi - self.x.zero_point), abs(lo - self.x.zero_point))
        w = self.w_int.astype(np.int64)
        return int(int(np.prod(w.shape[1:])) * xmax * np.abs(w).max())

    def prepared(self) -> Any:
        raise NotImplementedError


@dataclass(eq=False)
class Conv2dLayer(_WeightedLayer):
    """Integer Conv2d (NCHW, OIHW weights) with its preset's requantization."""

    stride: Tuple[int, int] = (1, 1)
    padding: Any = (0, 0)
    dilation: Tuple[int, int] = (1, 1)
    groups: int = 1
    op: ClassVar[str] = "conv2d"
    in_c: ClassVar[bool] = True
    _prep: Any = field(default=None, repr=False)

    def prepared(self) -> qk.PreparedQConv2d:
        """The prepared call (qkernels.prepare_qconv2d) of this layer."""
        if self._prep is None:
            self._prep = qk.prepare_qconv2d(self.packed, self.bias, x_dtype=self.x.dtype,
                                            stride=self.stride, padding=self.padding,
                                            dilation=self.dilation, **self._call_kw())
        return self._prep

    def kernel(self) -> Kernel:
        return rt.conv2d_kernel(self.prepared())

    def add_kernel(self, add: "AddLayer", operand: int) -> Optional[Kernel]:
        """This conv and the quantized add that takes its output as input ``operand`` (0 or 1)
        as one kernel ``kernel(t, x, other)`` (x: this conv's input, other: the add's other
        input), the add fused into the conv's C call (:func:`_runtime.conv2d_kernel`):
        the same integers as the two kernels. None where that does not apply: QNNPACK's integer
        add, a narrower bit width, operands of another type or other parameters than this
        conv's output."""
        mine, other = (add.a, add.b) if operand == 0 else (add.b, add.a)
        q8 = (np.dtype(np.uint8), np.dtype(np.int8))
        if (add.engine == "qnnpack" or add.out.bits is not None or self.out.bits is not None
                or np.dtype(self.out.dtype) not in q8 or
                np.dtype(mine.dtype) != np.dtype(self.out.dtype) or
                np.dtype(other.dtype) != np.dtype(self.out.dtype) or
                np.dtype(add.out.dtype) != np.dtype(self.out.dtype) or
                F32(mine.scale) != F32(self.out.scale) or
                int(mine.zero_point) != int(self.out.zero_point)):
            return None
        k = add.kernel()
        fallback = k if operand == 0 else (lambda t, x, y: k(t, y, x))
        return rt.conv2d_kernel(self.prepared(), rt.ConvAdd(
            float(mine.scale), other, float(add.out.scale), int(add.out.zero_point),
            bool(add.relu), fallback))

    def reference_kernel(self) -> Kernel:
        kw = self._call_kw()

        def kernel(t: int, x: np.ndarray) -> np.ndarray:
            return qk.qconv2d(x, self.packed, self.bias, stride=self.stride, padding=self.padding,
                              dilation=self.dilation, groups=self.groups, **kw)
        return kernel

    def params(self) -> Dict[str, Any]:
        pad = self.prepared().padding
        return dict(super().params(), stride=list(self.stride), padding=list(pad[:2]),
                    padding_tlbr=list(pad), dilation=list(self.dilation), groups=int(self.groups))


def conv_transpose_weights(w: np.ndarray, groups: int) -> np.ndarray:
    """ConvTranspose2d weights (C_in, C_out / groups, kh, kw) as the weights of the equivalent
    convolution (C_out, C_in / groups, kh, kw): per group, in and out swapped and both spatial
    axes flipped. Applied twice (same groups) it gives the weights back.

    Example:
        >>> import numpy as np
        >>> w = np.arange(8, dtype=np.int8).reshape(2, 1, 2, 2)     # C_in 2, C_out 1
        >>> conv_transpose_weights(w, 1)[0, 1]
        array([[7, 6],
               [5, 4]], dtype=int8)
    """
    ci, opg, kh, kw = w.shape
    ipg = ci // groups
    v = w.reshape(groups, ipg, opg, kh, kw).transpose(0, 2, 1, 3, 4)[..., ::-1, ::-1]
    return np.ascontiguousarray(v.reshape(groups * opg, ipg, kh, kw))


def conv_transpose_geometry(stride: Tuple[int, int], padding: Tuple[int, int],
                            output_padding: Tuple[int, int], dilation: Tuple[int, int],
                            kernel: Tuple[int, int]) -> Tuple[Tuple[int, int, int, int],
                                                              Tuple[int, int, int, int]]:
    """(crop, pad) of the equivalent convolution's input, each (top, left, bottom, right): the
    zero-point-inserted input (``stride - 1`` zero points between neighbours) is padded with
    ``dilation * (k - 1) - padding`` (plus ``output_padding`` at the bottom / right) zero points
    per side, or cropped where that is negative.

    Example:
        >>> conv_transpose_geometry((2, 2), (1, 3), (1, 0), (1, 1), (3, 3))
        ((0, 1, 0, 1), (1, 0, 2, 0))
    """
    edge = [d * (k - 1) - p for d, k, p in zip(dilation, kernel, padding)]
    sides = (edge[0], edge[1], edge[0] + output_padding[0], edge[1] + output_padding[1])
    return (tuple(max(0, -v) for v in sides), tuple(max(0, v) for v in sides))  # type: ignore


@dataclass(eq=False)
class ConvTranspose2dLayer(Conv2dLayer):
    """Integer ConvTranspose2d as the equivalent convolution, exactly: the input integers with
    ``t_stride - 1`` zero points inserted between neighbours (a zero point contributes
    ``(zx - zx) * w = 0`` to the sum, as the missing taps of the transposed convolution do),
    cropped / padded with zero points by :func:`conv_transpose_geometry`, then a stride-1
    convolution (this layer's ``dilation`` and ``groups``) with the flipped, swapped weights
    (:func:`conv_transpose_weights`, held in ``w_int``) and the preset's requantization.
    ``stride`` / ``padding`` are the equivalent convolution's (1 and the pads above)."""

    t_stride: Tuple[int, int] = (1, 1)
    t_padding: Tuple[int, int] = (0, 0)
    output_padding: Tuple[int, int] = (0, 0)
    crop: Tuple[int, int, int, int] = (0, 0, 0, 0)
    op: ClassVar[str] = "conv_transpose2d"

    def expand(self, x: np.ndarray) -> np.ndarray:
        """The equivalent convolution's input: zero points inserted, then cropped."""
        sh, sw = self.t_stride
        n, c, h, w = x.shape
        if (sh, sw) != (1, 1):
            z = np.full((n, c, (h - 1) * sh + 1, (w - 1) * sw + 1), self.x.zero_point, x.dtype)
            z[:, :, ::sh, ::sw] = x
            x = z
        t, left, b, r = self.crop
        if t or left or b or r:
            x = x[:, :, t:x.shape[2] - b, left:x.shape[3] - r]
        return np.ascontiguousarray(x)

    def kernel(self) -> Kernel:
        inner = super().kernel()

        def kernel(t: int, x: np.ndarray) -> np.ndarray:
            y = inner(t, self.expand(x))
            kernel.macs = getattr(inner, "macs", 0)  # type: ignore[attr-defined]
            return y
        return rt.per_sample(kernel)

    def reference_kernel(self) -> Kernel:
        inner = super().reference_kernel()
        return lambda t, x: inner(t, self.expand(x))

    def params(self) -> Dict[str, Any]:
        return dict(super().params(), t_stride=list(self.t_stride),
                    t_padding=list(self.t_padding), output_padding=list(self.output_padding),
                    crop_tlbr=list(self.crop),
                    weights_layout="equivalent convolution (flipped, in / out swapped)")


@dataclass(eq=False)
class LinearLayer(_WeightedLayer):
    """Integer Linear (x: (..., K)) with its preset's requantization."""

    op: ClassVar[str] = "linear"
    in_c: ClassVar[bool] = True
    _prep: Any = field(default=None, repr=False)

    def prepared(self) -> qk.PreparedQLinear:
        """The prepared call (qkernels.prepare_qlinear) of this layer."""
        if self._prep is None:
            self._prep = qk.prepare_qlinear(self.packed, self.bias, x_dtype=self.x.dtype,
                                            **self._call_kw())
        return self._prep

    def kernel(self) -> Kernel:
        return rt.linear_kernel(self.prepared())

    def reference_kernel(self) -> Kernel:
        kw = self._call_kw()
        return lambda t, x: qk.qlinear(x, self.packed, self.bias, **kw)


@dataclass(eq=False)
class Conv2d16Layer(Conv2dLayer):
    """Conv2d of int16 activations and int8 weights (TFLite's 16x8 CONV_2D / DEPTHWISE_CONV_2D,
    CMSIS-NN's s16 kernels): int64 ``bias``, zero points 0, int16 out
    (:mod:`qkernels.linear16`); ``packed`` is unused."""

    op: ClassVar[str] = "conv2d_s16"

    def prepared(self) -> Any:
        raise TypeError("int16 x int8 layers run qkernels.qconv2d on the int8 weights; "
                        "there is no prepared (8-bit) call")

    def epilogue(self) -> Any:
        return qk.linear16.epilogue16("conv", self.w_int, self.bias, x_scale=F32(self.x.scale),
                                      w_scale=self.w_scale, out_scale=F32(self.out.scale),
                                      preset=self.preset)

    def kernel(self) -> Kernel:
        return rt.per_sample(self.reference_kernel())

    def reference_kernel(self) -> Kernel:
        kw = self._call_kw()
        return lambda t, x: qk.qconv2d(x, self.w_int, self.bias, stride=self.stride,
                                       padding=self.padding, dilation=self.dilation,
                                       groups=self.groups, **kw)

    def params(self) -> Dict[str, Any]:
        pad = qk._checks.padding4(self.padding)
        return dict(_WeightedLayer.params(self), stride=list(self.stride), padding=list(pad[:2]),
                    padding_tlbr=list(pad), dilation=list(self.dilation), groups=int(self.groups))


@dataclass(eq=False)
class Linear16Layer(LinearLayer):
    """Linear of int16 activations and int8 weights (TFLite's 16x8 FULLY_CONNECTED, CMSIS-NN's
    arm_fully_connected_s16): int64 ``bias``, zero points 0, int16 out."""

    op: ClassVar[str] = "linear_s16"

    def prepared(self) -> Any:
        raise TypeError("int16 x int8 layers run qkernels.qlinear on the int8 weights; "
                        "there is no prepared (8-bit) call")

    def epilogue(self) -> Any:
        return qk.linear16.epilogue16("linear", self.w_int, self.bias,
                                      x_scale=F32(self.x.scale), w_scale=self.w_scale,
                                      out_scale=F32(self.out.scale), preset=self.preset)

    def kernel(self) -> Kernel:
        return rt.per_sample(self.reference_kernel())

    def reference_kernel(self) -> Kernel:
        kw = self._call_kw()
        return lambda t, x: qk.qlinear(x, self.w_int, self.bias, **kw)


@dataclass(eq=False)
class DynamicLayer(Layer):
    """Dynamic quantization of a conv or linear (PyTorch's ``quantize_dynamic``): float in, the
    input quantized per call by ``quantize_input`` (default: fbgemm's reduce_range uint8), exact
    int32 accumulators, ``fmaf(acc, fl(x_scale * w_scale), bias)`` float out (then ReLU, and the
    upper clamp ``act_max`` of a fused ReLU6)."""

    kind: str = "linear"
    w_int: np.ndarray = None              # type: ignore[assignment]
    w_scale: Any = None
    w_zero_point: Any = 0
    packed: Any = None
    bias: Optional[np.ndarray] = None
    relu: bool = False
    act_max: Optional[float] = None
    quantize_input: Optional[Callable[[np.ndarray], QTensor]] = None
    stride: Tuple[int, int] = (1, 1)
    padding: Any = (0, 0)
    dilation: Tuple[int, int] = (1, 1)
    groups: int = 1
    input_range: Tuple[int, int] = (0, 127)   # the range the per-call zero point lies in
    op: ClassVar[str] = "dynamic"

    def quantized_input(self, x: np.ndarray) -> QTensor:
        """x quantized as this layer's call quantizes it."""
        f = self.quantize_input or (lambda v: qa.dynamic_quantize_input(v, True))
        return f(np.asarray(x, F32))

    def accumulators(self, xq: QTensor) -> np.ndarray:
        if self.kind == "conv":
            return qk.conv2d_int32(xq.q, self.packed, stride=self.stride, padding=self.padding,
                                   dilation=self.dilation, groups=self.groups,
                                   x_zero_point=xq.zero_point, w_zero_point=self.w_zero_point)
        return qk.linear_int32(xq.q, self.packed, x_zero_point=xq.zero_point,
                               w_zero_point=self.w_zero_point)

    def kernel(self) -> Kernel:
        if self.kind == "linear" and isinstance(self.packed, qk.PackedLinear) and \
                np.all(np.asarray(self.w_zero_point) == self.packed.w_zero_point):
            # the float output stage fused into the GEMM (same bits as the path below)
            return rt.dynamic_linear_kernel(self.packed, self.w_scale, self.bias,
                                            self.quantized_input, self.relu, self.act_max)
        axis = 1 if self.kind == "conv" else -1
        hi = None if self.act_max is None else F32(self.act_max)

        def kernel(t: int, x: Any) -> np.ndarray:
            xq = self.quantized_input(x)
            y = qa.dynamic_output(self.accumulators(xq), xq.scale, self.w_scale, self.bias, axis,
                                   self.relu)
            return y if hi is None else np.minimum(y, hi)
        return kernel

    def params(self) -> Dict[str, Any]:
        p = dict(super().params(), kind=self.kind, mode="dynamic", relu=bool(self.relu),
                 weight_shape=list(self.w_int.shape),
                 output="fmaf(accumulator, fl(x_scale * w_scale[c]), float_bias[c])")
        if self.kind == "conv":
            p.update(stride=list(self.stride), padding=list(np.broadcast_to(self.padding, 2)),
                     dilation=list(self.dilation), groups=int(self.groups))
        return p

    def arrays(self) -> Dict[str, np.ndarray]:
        n = self.w_int.shape[0]
        return {"weights": self.w_int, "w_scale": np.broadcast_to(self.w_scale, (n,)).astype(F32),
                "a2": self.w_int.reshape(n, -1).astype(np.int64).sum(axis=1).astype(np.int32),
                "float_bias": np.zeros(n, F32) if self.bias is None else self.bias}

    def accumulator_bound(self) -> int:
        lo, hi = self.input_range
        w = self.w_int.astype(np.int64)
        return int(int(np.prod(w.shape[1:])) * (hi - lo) * np.abs(w).max())


# ---- elementwise ----------------------------------------------------------------------------------
@dataclass(eq=False)
class AddLayer(Layer):
    """PyTorch's ``quantized::add`` / ``add_relu`` of two integer tensors; ``engine`` "qnnpack":
    QNNPACK's integer add for uint8 (PyTorch's route with that engine)."""

    a: QMeta = None       # type: ignore[assignment]
    b: QMeta = None       # type: ignore[assignment]
    relu: bool = False
    engine: str = "fbgemm"
    op: ClassVar[str] = "add"

    def _ref(self, qa_: np.ndarray, qb: np.ndarray) -> np.ndarray:
        add = qa.q_add_qnnpack if self.engine == "qnnpack" and qa_.dtype == np.uint8 else qa.q_add
        return add(_q(self.a)(qa_), _q(self.b)(qb), self.out.scale, self.out.zero_point,
                   self.relu).q

    def kernel(self) -> Kernel:
        return _saturating(self.out, rt.add_kernel(self.a, self.b, self.out.scale,
                                                   self.out.zero_point, self.relu, self._ref,
                                                   engine=self.engine))

    def reference_kernel(self) -> Kernel:
        return _saturating(self.out, lambda t, x, y: self._ref(x, y))

    def params(self) -> Dict[str, Any]:
        return dict(super().params(), **_bits_params(self.out), relu=bool(self.relu),
                    engine=self.engine,
                    input0_scale=float(self.a.scale), input0_zero_point=int(self.a.zero_point),
                    input1_scale=float(self.b.scale), input1_zero_point=int(self.b.zero_point))


@dataclass(eq=False)
class MulLayer(Layer):
    """PyTorch's ``quantized::mul`` / ``mul_relu`` of two integer tensors (broadcasting; e.g. the
    squeeze-excitation scale), :func:`~qkernels.torch.qarith.q_mul`."""

    a: QMeta = None       # type: ignore[assignment]
    b: QMeta = None       # type: ignore[assignment]
    relu: bool = False
    op: ClassVar[str] = "mul"

    def _ref(self, qa_: np.ndarray, qb: np.ndarray) -> np.ndarray:
        return qa.q_mul(_q(self.a)(qa_), _q(self.b)(qb), self.out.scale, self.out.zero_point,
                        self.relu).q

    def kernel(self) -> Kernel:
        return _saturating(self.out, rt.mul_kernel(self.a, self.b, self.out.scale,
                                                   self.out.zero_point, self.relu, self._ref))

    def reference_kernel(self) -> Kernel:
        return _saturating(self.out, rt.per_sample(lambda t, x, y: self._ref(x, y)))

    def params(self) -> Dict[str, Any]:
        return dict(super().params(), relu=bool(self.relu),
                    input0_scale=float(self.a.scale), input0_zero_point=int(self.a.zero_point),
                    input1_scale=float(self.b.scale), input1_zero_point=int(self.b.zero_point))


@dataclass(eq=False)
class ScalarLayer(Layer):
    """PyTorch's ``quantized::add`` / ``mul`` of an integer tensor and a constant (``function``
    "add" or "mul"; :func:`~qkernels.torch.qarith.q_add_scalar` / ``q_mul_scalar``): the output
    parameters follow from the input's and the constant."""

    x: QMeta = None       # type: ignore[assignment]
    value: float = 0.0
    relu: bool = False
    function: str = "add"
    op: ClassVar[str] = "scalar"

    def kernel(self) -> Kernel:
        f = qa.q_add_scalar if self.function == "add" else qa.q_mul_scalar
        xm, c, r = self.x, float(self.value), bool(self.relu)
        return rt.per_sample(lambda t, q: f(QTensor(q, xm.scale, xm.zero_point), c, r).q)

    def params(self) -> Dict[str, Any]:
        return dict(super().params(), function=self.function, value=float(self.value),
                    relu=bool(self.relu), input_scale=float(self.x.scale),
                    input_zero_point=int(self.x.zero_point))


@dataclass(eq=False)
class ClampLayer(Layer):
    """Integer clamp (quantized ReLU, ReLU6, Hardtanh: ``[quantize(lo), quantize(hi)]``)."""

    lo: int = 0
    hi: int = 255
    op: ClassVar[str] = "clamp"

    def kernel(self) -> Kernel:
        return rt.clamp_kernel(self.lo, self.hi)

    def reference_kernel(self) -> Kernel:
        lo, hi = self.lo, self.hi
        return lambda t, x: np.clip(x, lo, hi).astype(x.dtype)

    def params(self) -> Dict[str, Any]:
        return dict(super().params(), lo=int(self.lo), hi=int(self.hi))


@dataclass(eq=False)
class LeakyReLULayer(Layer):
    """PyTorch's quantized LeakyReLU (its own output parameters)."""

    x: QMeta = None       # type: ignore[assignment]
    slope: float = 0.01
    op: ClassVar[str] = "leaky_relu"

    def _ref(self, q: np.ndarray) -> np.ndarray:
        return qa.q_leaky_relu(_q(self.x)(q), self.slope, self.out.scale, self.out.zero_point).q

    def kernel(self) -> Kernel:
        return _saturating(self.out, rt.leaky_relu_kernel(self.x, self.slope, self.out.scale,
                                                          self.out.zero_point, self._ref))

    def reference_kernel(self) -> Kernel:
        return _saturating(self.out, lambda t, q: self._ref(q))

    def params(self) -> Dict[str, Any]:
        return dict(super().params(), **_bits_params(self.out), slope=float(self.slope), x_scale=float(self.x.scale),
                    x_zero_point=int(self.x.zero_point))


@dataclass(eq=False)
class LookupLayer(Layer):
    """Any op of one 8-bit input as a 256-entry table: ``y = table[q - qmin]`` (the table holds
    the op's exact output for every input integer, computed once when the model is built)."""

    x: QMeta = None            # type: ignore[assignment]
    table: np.ndarray = None   # type: ignore[assignment]
    function: str = ""
    op: ClassVar[str] = "lookup"

    def kernel(self) -> Kernel:
        table = self.table
        if np.dtype(self.x.dtype) in _Q8 and table.dtype in _Q8 and table.shape == (256,):
            lut = qops.Lookup(table, self.x.dtype)     # one C pass (byte look-up)
            return rt.per_sample(lambda t, q: lut(q))
        return self.reference_kernel()

    def reference_kernel(self) -> Kernel:
        """NumPy indexing into the table."""
        table = self.table
        if np.dtype(self.x.dtype) == np.int8:
            def kernel(t: int, q: np.ndarray) -> np.ndarray:
                return table[q.view(np.uint8) ^ np.uint8(0x80)]
            return rt.per_sample(kernel)
        return rt.per_sample(lambda t, q: table[q])

    def params(self) -> Dict[str, Any]:
        return dict(super().params(), function=self.function,
                    index="q - qmin (q + 128 for int8, q for uint8)")

    def arrays(self) -> Dict[str, np.ndarray]:
        return {"table": self.table}


def batch_norm_params(weight: Optional[np.ndarray], bias: Optional[np.ndarray], mean: np.ndarray,
                      var: np.ndarray, eps: float, in_scale: float,
                      out_scale: float) -> Tuple[np.ndarray, np.ndarray]:
    """PyTorch's quantized BatchNorm per-channel factors (``compute_fused_params``,
    aten/src/ATen/native/quantized/cpu/qbatch_norm.cpp), float32 as it rounds them:
    ``inv = fl(1.0 / sqrtf(var + fl(eps)))`` (double division), ``alpha = fl(fl(inv * w) *
    (s_in / s_out))``, ``beta = fl(fl(b - fl(fl(mean * inv) * w)) / s_out)`` (the ratios and the
    divisions in double)."""
    var = np.asarray(var, F32)
    c = var.shape[0]
    w = np.ones(c, F32) if weight is None else np.asarray(weight, F32)
    b = np.zeros(c, F32) if bias is None else np.asarray(bias, F32)
    inv = (1.0 / np.sqrt((var + F32(eps)).astype(F32)).astype(np.float64)).astype(F32)
    alpha = ((inv * w).astype(F32).astype(np.float64) *
             (float(in_scale) / float(out_scale))).astype(F32)
    mi = ((np.asarray(mean, F32) * inv).astype(F32) * w).astype(F32)
    beta = ((b - mi).astype(F32).astype(np.float64) / float(out_scale)).astype(F32)
    return alpha, beta


@dataclass(eq=False)
class BatchNormLayer(Layer):
    """PyTorch's ``quantized::batch_norm2d(_relu)`` (a BatchNorm no convolution absorbs, e.g.
    DenseNet's BN-ReLU-conv), as ``q_batch_norm_kernel`` computes it: per channel c
    ``y = RNE(fmaf(alpha[c], q - zp_in, beta[c])) + zp_out`` clamped to the type (then ``max(y,
    zp_out)`` with ReLU), ``alpha`` / ``beta`` from :func:`batch_norm_params`. NCHW, channel axis 1."""

    x: QMeta = None             # type: ignore[assignment]
    alpha: np.ndarray = None    # type: ignore[assignment]
    beta: np.ndarray = None     # type: ignore[assignment]
    relu: bool = False
    op: ClassVar[str] = "batch_norm"

    def _ref(self, q: np.ndarray) -> np.ndarray:
        if q.ndim < 2 or q.shape[1] != self.alpha.shape[0]:
            raise ValueError(f"{self.name}: BatchNorm of {self.alpha.shape[0]} channels got an "
                             f"input of shape {q.shape} (channels on axis 1)")
        # fmaf(alpha, a, beta) == fmaf(|alpha|, sign(alpha) a, beta) (exact sign flips); alpha 0
        # gives beta (fmaf(1, 0, beta)); accumulator_to_float takes positive scales
        a = self.alpha
        sign = np.where(a < 0, -1, np.where(a > 0, 1, 0)).astype(np.int32)
        shape = (1, a.shape[0]) + (1,) * (q.ndim - 2)
        acc = (q.astype(np.int32) - np.int32(self.x.zero_point)) * sign.reshape(shape)
        scale = np.where(a == 0, F32(1), np.abs(a)).astype(F32)
        v = qk.accumulator_to_float(acc, scale, self.beta, axis=1)
        out = self.out
        y = qk.quantize(v, F32(1), out.zero_point, dtype=out.dtype, flavor="pt2e")
        if self.relu:
            y = np.maximum(y, np.asarray(out.zero_point, out.dtype))
        return y

    def kernel(self) -> Kernel:
        return _saturating(self.out, rt.per_sample(lambda t, q: self._ref(q)))

    def params(self) -> Dict[str, Any]:
        return dict(super().params(), **_bits_params(self.out), relu=bool(self.relu),
                    x_scale=float(self.x.scale), x_zero_point=int(self.x.zero_point),
                    formula="RNE(fmaf(alpha[c], q - x_zero_point, beta[c])) + out_zero_point")

    def arrays(self) -> Dict[str, np.ndarray]:
        return {"bn_alpha": self.alpha, "bn_beta": self.beta}


# ---- pooling --------------------------------------------------------------------------------------
@dataclass(eq=False)
class MaxPool2dLayer(Layer):
    """Integer max pooling (qparams kept)."""

    kernel_size: Any = 2
    stride: Any = None
    padding: Any = 0
    dilation: Any = 1
    ceil_mode: bool = False
    op: ClassVar[str] = "max_pool2d"

    def _geo(self) -> tuple:
        return (self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)

    def _ref(self, q: np.ndarray) -> np.ndarray:
        return qa.q_max_pool2d(_q(self.out)(q), *self._geo()).q

    def kernel(self) -> Kernel:
        return rt.max_pool2d_kernel(*self._geo(), self._ref)

    def reference_kernel(self) -> Kernel:
        return lambda t, q: self._ref(q)

    def params(self) -> Dict[str, Any]:
        k = np.broadcast_to(self.kernel_size, 2)
        return dict(super().params(), kernel=list(k),
                    stride=list(np.broadcast_to(k if self.stride in (None, []) else self.stride, 2)),
                    padding=list(np.broadcast_to(self.padding, 2)),
                    dilation=list(np.broadcast_to(self.dilation, 2)), ceil_mode=bool(self.ceil_mode))


@dataclass(eq=False)
class AvgPool2dLayer(Layer):
    """PyTorch's quantized avg_pool2d (qparams kept); ``engine`` "fbgemm" (avg_pool2d_out_frame)
    or "qnnpack" (QNNPACK's kernel for uint8 without ceil_mode)."""

    kernel_size: Any = 2
    stride: Any = None
    padding: Any = 0
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: Optional[int] = None
    engine: str = "fbgemm"
    #: the input is channels-last in PyTorch (a conv / BatchNorm output): its NHWC kernel
    channels_last: bool = False
    #: its channels per vector (:func:`~qkernels.torch.qarith.torch_pool_vec_width`)
    vec_width: int = 8
    op: ClassVar[str] = "avg_pool2d"

    def _args(self) -> tuple:
        return (self.kernel_size, self.stride, self.padding, self.ceil_mode,
                self.count_include_pad, self.divisor_override)

    def _ref(self, x: np.ndarray) -> np.ndarray:
        q = _q(self.out)(x)
        if self.engine == "qnnpack":
            return qa.q_avg_pool2d_qnnpack(q, *self._args()).q
        return qa.q_avg_pool2d(q, *self._args(), channels_last=bool(self.channels_last),
                               vec_width=int(self.vec_width)).q

    def kernel(self) -> Kernel:
        if self.engine == "qnnpack":
            return rt.per_sample(lambda t, x: self._ref(x))
        vw = int(self.vec_width) if self.channels_last else 0
        return rt.avg_pool2d_kernel(*self._args(), self.out.zero_point, vw, self._ref)

    def reference_kernel(self) -> Kernel:
        return lambda t, x: self._ref(x)

    def params(self) -> Dict[str, Any]:
        k = np.broadcast_to(self.kernel_size, 2)
        return dict(super().params(), kernel=list(k),
                    stride=list(np.broadcast_to(k if self.stride in (None, []) else self.stride, 2)),
                    padding=list(np.broadcast_to(self.padding, 2)), ceil_mode=bool(self.ceil_mode),
                    count_include_pad=bool(self.count_include_pad),
                    divisor_override=0 if self.divisor_override is None else int(self.divisor_override),
                    engine=self.engine, channels_last=bool(self.channels_last),
                    vec_width=int(self.vec_width))


@dataclass(eq=False)
class AdaptiveAvgPool2dLayer(Layer):
    """PyTorch's quantized adaptive_avg_pool2d (qparams kept), engine "fbgemm" or "qnnpack";
    ``channels_last``: PyTorch holds the input channels-last (a conv's output: the fbgemm
    engine's channels-last kernel), else NCHW (a model input, a reshape, the upsampling of an
    NCHW 1 x 1 image), whose kernel rounds otherwise
    (:func:`~qkernels.torch.qarith.q_adaptive_avg_pool2d`)."""

    output_size: Any = 1
    engine: str = "fbgemm"
    channels_last: bool = True
    op: ClassVar[str] = "adaptive_avg_pool2d"

    def _ref(self, q: np.ndarray) -> np.ndarray:
        if self.engine == "qnnpack":
            return qa.q_adaptive_avg_pool2d_qnnpack(_q(self.out)(q), self.output_size,
                                                    channels_last=bool(self.channels_last)).q
        return qa.q_adaptive_avg_pool2d(_q(self.out)(q), self.output_size,
                                        channels_last=bool(self.channels_last)).q

    def kernel(self) -> Kernel:
        if self.engine == "qnnpack" or not self.channels_last:
            return rt.per_sample(lambda t, q: self._ref(q))
        return rt.adaptive_avg_pool2d_kernel(self.output_size, self._ref, int(self.out.zero_point))

    def reference_kernel(self) -> Kernel:
        return lambda t, q: self._ref(q)

    def params(self) -> Dict[str, Any]:
        o = self.output_size
        o = [o, o] if isinstance(o, int) else [-1 if v is None else int(v) for v in o]
        return dict(super().params(), output_size=o, engine=self.engine,
                    channels_last=bool(self.channels_last))


@dataclass(eq=False)
class MeanLayer(Layer):
    """``mean`` of a quantized tensor (qparams kept), as ``mean_out_quantized_cpu`` computes it:
    uint8 NCHW over dims (2, 3) with engine "qnnpack": QNNPACK's global average pooling
    (:func:`~qkernels.torch.qarith.q_adaptive_avg_pool2d_qnnpack` to 1x1); otherwise
    dequantize, float mean (torch), ``quantize_per_tensor`` with the input's parameters."""

    dim: Tuple[int, ...] = ()
    keepdim: bool = False
    engine: str = "fbgemm"
    op: ClassVar[str] = "mean"

    def kernel(self) -> Kernel:
        import torch

        m, dims, keep = self.out, tuple(int(d) for d in self.dim), bool(self.keepdim)
        qnnpack = self.engine == "qnnpack" and np.dtype(m.dtype) == np.uint8

        def kernel(t: int, q: np.ndarray) -> np.ndarray:
            if qnnpack and q.ndim == 4 and dims == (2, 3):
                y = qa.q_adaptive_avg_pool2d_qnnpack(QTensor(q, m.scale, m.zero_point), 1).q
                return y if keep else y.reshape(y.shape[:2])
            x = torch.from_numpy(qk.dequantize(q, F32(m.scale), m.zero_point))
            r = torch.mean(x, dims, keep).numpy()
            lo, hi = m.qrange()
            return qk.quantize(np.asarray(r, F32), F32(m.scale), m.zero_point, dtype=m.dtype,
                               qmin=lo, qmax=hi, flavor="torch")
        return rt.per_sample(kernel)

    def params(self) -> Dict[str, Any]:
        return dict(super().params(), dim=list(self.dim), keepdim=bool(self.keepdim),
                    engine=self.engine)


# ---- shape ops ------------------------------------------------------------------------------------
@dataclass(eq=False)
class CatLayer(Layer):
    """``torch.cat`` / ``quantized::cat``: every input requantized to the output's parameters."""

    in_metas: Tuple[QMeta, ...] = ()
    dim: int = 0
    op: ClassVar[str] = "cat"

    def _ref(self, *qs: np.ndarray) -> np.ndarray:
        return qa.q_cat([QTensor(q, m.scale, m.zero_point) for q, m in zip(qs, self.in_metas)],
                        self.dim, self.out.scale, self.out.zero_point, self.out.bits).q

    def kernel(self) -> Kernel:
        return rt.cat_kernel(self.in_metas, self.dim, self.out, self._ref)

    def reference_kernel(self) -> Kernel:
        return lambda t, *qs: self._ref(*qs)

    def params(self) -> Dict[str, Any]:
        p = dict(super().params(), dim=int(self.dim))
        for i, m in enumerate(self.in_metas):
            p[f"input{i}_scale"] = float(m.scale)
            p[f"input{i}_zero_point"] = int(m.zero_point)
        return p


@dataclass(eq=False)
class FlattenLayer(Layer):
    """``torch.flatten`` (qparams kept)."""

    start: int = 0
    end: int = -1
    op: ClassVar[str] = "flatten"

    def kernel(self) -> Kernel:
        return rt.flatten_kernel(self.start, self.end)

    def params(self) -> Dict[str, Any]:
        return dict(super().params(), start_dim=int(self.start), end_dim=int(self.end))


@dataclass(eq=False)
class IdentityLayer(Layer):
    """Dropout, Identity, ``contiguous``: the values pass unchanged."""

    what: str = "identity"
    op: ClassVar[str] = "identity"

    def kernel(self) -> Kernel:
        return rt.identity_kernel()

    def params(self) -> Dict[str, Any]:
        return dict(super().params(), module=self.what)


@dataclass(eq=False)
class UpsampleNearestLayer(Layer):
    """Nearest upsampling (``F.interpolate(mode="nearest")``, ``nn.Upsample``) of an integer
    tensor: every output element is a copy of one input element (PyTorch's quantized
    ``upsample_nearest2d`` keeps the input's parameters), so torch's float op on the integers
    (exact in float32) gives them. ``kwargs``: size / scale_factor / align_corners ..."""

    kwargs: Dict[str, Any] = field(default_factory=dict)
    op: ClassVar[str] = "upsample_nearest"

    def kernel(self) -> Kernel:
        import torch

        kw = {k: v for k, v in self.kwargs.items() if v is not None}

        def kernel(t: int, q: np.ndarray) -> np.ndarray:
            y = torch.nn.functional.interpolate(torch.from_numpy(q.astype(F32)), **kw)
            return y.numpy().astype(q.dtype)
        return rt.per_sample(kernel)

    def params(self) -> Dict[str, Any]:
        return dict(super().params(), **{k: v for k, v in self.kwargs.items() if v is not None})


@dataclass(eq=False)
class UpsampleBilinearLayer(Layer):
    """Bilinear upsampling (``F.interpolate(mode="bilinear")``, ``nn.Upsample``,
    ``nn.UpsamplingBilinear2d``) of an integer tensor as PyTorch's quantized
    ``upsample_bilinear2d`` computes it (:func:`qkernels.torch.qarith.q_upsample_bilinear2d`;
    the output keeps the input's parameters). ``size`` / ``scale_factor`` /
    ``recompute_scale_factor`` as F.interpolate takes them; ``channels_last``: the input is held
    channels-last by PyTorch (a quantized conv's output), whose kernel rounds differently;
    ``vec_width``: its vector width (:func:`qkernels.torch.qarith.torch_pool_vec_width`)."""

    x: QMeta = None                     # type: ignore[assignment]
    size: Any = None
    scale_factor: Any = None
    recompute_scale_factor: Optional[bool] = None
    align_corners: bool = False
    channels_last: bool = False
    vec_width: int = 16
    op: ClassVar[str] = "upsample_bilinear"

    def kernel(self) -> Kernel:
        xm = self.x

        def kernel(t: int, q: np.ndarray) -> np.ndarray:
            if q.ndim != 4:
                raise ValueError(f"bilinear upsampling {self.name} expects N x C x H x W, "
                                 f"got {q.shape}")
            out, scales = qa.upsample_output_size(q.shape[2], q.shape[3], self.size,
                                                  self.scale_factor, self.recompute_scale_factor)
            return qa.q_upsample_bilinear2d(QTensor(q, xm.scale, xm.zero_point), out,
                                            bool(self.align_corners), scales,
                                            channels_last=bool(self.channels_last),
                                            vec_width=int(self.vec_width)).q
        return rt.per_sample(kernel)

    def params(self) -> Dict[str, Any]:
        p = dict(super().params(), align_corners=bool(self.align_corners),
                 channels_last=bool(self.channels_last), vec_width=int(self.vec_width))
        for k in ("size", "scale_factor", "recompute_scale_factor"):
            v = getattr(self, k)
            if v is not None:
                p[k] = list(v) if isinstance(v, (tuple, list)) else v
        return p


# ---- LayerNorm ------------------------------------------------------------------------------------
@dataclass(eq=False)
class LayerNormLayer(Layer):
    """Integer LayerNorm over the last axis: the input requantized to PTF (``ln.ptf``), then
    :func:`qkernels.ptf_layernorm` (``exact`` or ``sole``), integer-only. With ``x`` None the
    input is float32, PTF-quantized directly (a module swapped into a float model)."""

    x: Optional[QMeta] = None
    ln: Any = None             # qkernels.LayerNormParams
    gamma: Optional[np.ndarray] = None
    beta: Optional[np.ndarray] = None
    op: ClassVar[str] = "layernorm"

    def run(self, q: np.ndarray) -> Tuple[QTensor, np.ndarray]:
        """(output in the model's type, the PTF uint8 input) of integers q."""
        xin = q if self.x is None else _q(self.x)(q)
        y, q_ptf = qa.q_layernorm(xin, self.ln, self.out.dtype, self.out.bits)
        return QTensor(y.q, self.out.scale, self.out.zero_point), q_ptf

    def kernel_io(self, q: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(PTF uint8 input, int8 output) of the C kernel ``qk_layernorm`` for integers q."""
        y, q_ptf = qa.q_layernorm(q if self.x is None else _q(self.x)(q), self.ln)
        return q_ptf, y.q

    def kernel(self) -> Kernel:
        return lambda t, q: self.run(q)[0].q

    def params(self) -> Dict[str, Any]:
        """The C kernel's parameters: PTF uint8 in, int8 out with ``out_zero_point``
        (``model_out_*``: the model's own output type, +128 for uint8)."""
        ln = self.ln
        p = super().params()
        p.update(model_out_dtype=p.pop("out_dtype"), model_out_zero_point=p.pop("out_zero_point"))
        return dict(p, method=ln.method, rounding=ln.rounding or "none",
                    ptf_scale=float(ln.ptf.scale), ptf_zero_point=int(ln.ptf.zero_point),
                    K=int(ln.ptf.K), eps=float(ln.eps), out_scale=float(ln.out_scale),
                    out_zero_point=int(ln.out_zero_point), out_dtype="int8", shift=int(ln.shift),
                    eps_term=int(ln.eps_term), gamma_multiplier=int(ln.gamma_multiplier),
                    beta_multiplier=int(ln.beta_multiplier), channels=int(ln.channels))

    def arrays(self) -> Dict[str, np.ndarray]:
        c = self.ln.channels
        return {"alpha": np.asarray(self.ln.ptf.alpha, np.int32),
                "gamma": np.ones(c, F32) if self.gamma is None else self.gamma,
                "beta": np.zeros(c, F32) if self.beta is None else self.beta,
                "gamma_int": self.ln.gamma_int, "beta_int": self.ln.beta_int, "lut": self.ln.lut}


# ---- float ops, user handlers, constants ----------------------------------------------------------
class _Slot:
    """A placeholder for the i-th run-time input in a float op's argument template."""

    __slots__ = ("i",)

    def __init__(self, i: int) -> None:
        self.i = i


class OutputRef:
    """A reference to a layer's value inside a structured (tuple / dict) model output."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"OutputRef({self.name!r})"


def map_nested(v: Any, is_leaf: Callable[[Any], bool], f: Callable[[Any], Any]) -> Any:
    """``v`` with every leaf (``is_leaf``) inside tuples, lists and dicts replaced by ``f(leaf)``."""
    if is_leaf(v):
        return f(v)
    if isinstance(v, (tuple, list)):
        return type(v)(map_nested(a, is_leaf, f) for a in v)
    if isinstance(v, dict):
        return {k: map_nested(a, is_leaf, f) for k, a in v.items()}
    return v


def arg_template(args: Any, kwargs: Dict[str, Any], is_input: Callable[[Any], bool]
                 ) -> Tuple[Any, Dict[str, Any], List[Any]]:
    """(args, kwargs) with every run-time input replaced by a placeholder, and those inputs in
    order (the float op's kernel gets them as its slots)."""
    found: List[Any] = []

    def slot(v: Any) -> _Slot:
        found.append(v)
        return _Slot(len(found) - 1)
    a = map_nested(tuple(args), is_input, slot)
    k = {n: map_nested(v, is_input, slot) for n, v in kwargs.items()}
    return a, k, found


def _fill(t: Any, vals: Sequence[Any]) -> Any:
    return map_nested(t, lambda v: isinstance(v, _Slot), lambda v: vals[v.i])


@dataclass(eq=False)
class _TorchCallLayer(Layer):
    """A torch module / function / Tensor method called on the run-time values with the node's
    own positional and keyword arguments (the common part of FloatLayer and ShapeLayer)."""

    fn: Any = None
    args: Tuple[Any, ...] = ()          # template (arg_template)
    kwargs: Dict[str, Any] = field(default_factory=dict)
    in_metas: Tuple[Optional[QMeta], ...] = ()
    method: bool = False                # fn is a Tensor method name
    what: str = ""

    def _torch_kernel(self, dequantize: bool) -> Kernel:
        """The torch call on the run-time values; ``dequantize``: integer inputs dequantized and
        a tensor result quantized with ``out`` (float op); otherwise the integers themselves go
        through (data movement) and come back as NumPy arrays (a tuple of them for a tuple)."""
        import torch

        metas, out = self.in_metas, self.out
        fn, method, a_t, k_t = self.fn, self.method, self.args, self.kwargs

        def to_torch(v: Any, m: Optional[QMeta]) -> Any:
            if not dequantize and isinstance(v, np.ndarray):
                return torch.from_numpy(v)
            if m is not None:
                v = qk.dequantize(v, F32(m.scale), m.zero_point)
            if isinstance(v, np.ndarray):
                return torch.from_numpy(np.ascontiguousarray(v, F32) if v.dtype != F32
                                        else np.ascontiguousarray(v))
            return v

        def back(r: Any) -> Any:
            if isinstance(r, torch.Tensor):
                r = r.detach().numpy()
                if dequantize and out is not None:
                    lo, hi = out.qrange()
                    return qk.quantize(np.asarray(r, F32), F32(out.scale), out.zero_point,
                                       dtype=out.dtype, qmin=lo, qmax=hi, flavor="torch")
                return r
            if not dequantize and isinstance(r, (tuple, list)):
                return tuple(back(v) for v in r)
            return r

        def kernel(t: int, *vals: Any) -> Any:
            tv = [to_torch(v, m) for v, m in zip(vals, metas)]
            a, k = _fill(a_t, tv), _fill(k_t, tv)
            with torch.no_grad():
                r = getattr(a[0], fn)(*a[1:], **k) if method else fn(*a, **k)
            return back(r)
        return kernel

    def params(self) -> Dict[str, Any]:
        return dict(super().params(), function=self.what)


@dataclass(eq=False)
class FloatLayer(_TorchCallLayer):
    """An op run in float between integer ones (``QuantConfig.float_modules``, a float region of a
    PyTorch-quantized model, or any op of a float model): integer inputs dequantized, ``fn`` (a
    torch module or function, under ``torch.no_grad``) called with the op's own positional and
    keyword arguments, a tensor output quantized with ``out`` (None: returned as it is, e.g. an
    int, a tuple or a float tensor)."""

    op: ClassVar[str] = "float"

    def kernel(self) -> Kernel:
        return self._torch_kernel(dequantize=True)


@dataclass(eq=False)
class ShapeLayer(_TorchCallLayer):
    """A data-movement op on integer tensors (``size``, ``view`` / ``reshape``, ``transpose`` /
    ``permute``, ``chunk`` / ``split``, ``squeeze`` / ``unsqueeze``...): the torch op runs on the
    integers themselves, so the values are exact and the quantization parameters are kept
    (``out``: the input's; None for ops that return ints)."""

    op: ClassVar[str] = "shape"

    def kernel(self) -> Kernel:
        return self._torch_kernel(dequantize=False)


@dataclass(eq=False)
class HandlerLayer(Layer):
    """A user's integer op for a module type (``quantize_model(..., handlers={Type: fn})``):
    ``fn(module, x, scale, zero_point)`` gets the module, the integer input (a QTensor) and the
    output's parameters, and returns the output integers (the output dtype)."""

    module: Any = None
    handler: Any = None
    x: QMeta = None     # type: ignore[assignment]
    op: ClassVar[str] = "handler"

    def kernel(self) -> Kernel:
        mod, h, xm, out = self.module, self.handler, self.x, self.out
        name = self.name

        def kernel(t: int, q: np.ndarray) -> np.ndarray:
            y = np.asarray(h(mod, QTensor(q, xm.scale, xm.zero_point), out.scale, out.zero_point))
            if y.dtype != out.dtype:
                raise TypeError(f"the handler of {name} returned {y.dtype} integers; expected "
                                f"{out.dtype}")
            return y
        return kernel

    def params(self) -> Dict[str, Any]:
        return dict(super().params(), module=type(self.module).__name__)


@dataclass(eq=False)
class ConstantLayer(Layer):
    """A constant of the graph (a ``get_attr`` node)."""

    value: Any = None
    op: ClassVar[str] = "constant"

    def kernel(self) -> Kernel:
        v = self.value
        return rt.per_sample(lambda t: v)


@dataclass(eq=False)
class GetItemLayer(Layer):
    """``x[index]`` of a run-time value (e.g. an element of a tuple output)."""

    index: Any = 0
    op: ClassVar[str] = "getitem"

    def kernel(self) -> Kernel:
        i = self.index
        return lambda t, v: v[i]


# ---- TFLite-semantics layers (qkernels.tflite_ops; built by qkernels.torch.tflite) --------------
# which of LiteRT's kernels a TFLite layer reproduces where they differ: ``runtime`` one of
# qkernels.presets.TFLITE_RUNTIMES ("optimized": TFLite's optimized built-ins, which give the
# reference integers for ADD, MUL and MEAN, and compute SOFTMAX with a float32 table, as under
# XNNPACK)


def _check_runtime(layer: Any) -> None:
    if layer.runtime not in TFLITE_RUNTIMES:
        raise ValueError(f"{layer.name}: runtime must be one of {', '.join(TFLITE_RUNTIMES)}; "
                         f"got {layer.runtime!r}")


def _nchw_axis(axis: int, rank: int, nchw: bool) -> int:
    """A TFLite (NHWC) axis as the axis of the tensor held here (NCHW when ``nchw``)."""
    axis = axis % rank
    return (0, 2, 3, 1)[axis] if nchw and rank == 4 else axis


@dataclass(eq=False)
class TFLiteInputLayer(Layer):
    """A model input: float -> integers with the runtime's QUANTIZE: ``flavor="tflite"``
    (LiteRT's reference kernel: round half away from zero of ``x / scale``) or ``"pt2e"`` (the
    XNNPACK delegate: round half to even of ``x * fl(1/scale)``); see :func:`qkernels.quantize`.
    A 4-D NHWC input is held NCHW. Values with ``|x / scale| >= 2^31`` (and +-inf) saturate;
    LiteRT's reference and optimized kernels give the lowest value there (an undefined
    float-to-int32 cast), XNNPACK saturates too."""

    nhwc: bool = False
    flavor: str = "tflite"
    op: ClassVar[str] = "tflite_input"

    def kernel(self) -> Kernel:
        out, nhwc, flavor = self.out, self.nhwc, self.flavor
        lo, hi = out.qrange()

        def kernel(t: int, x: Any) -> np.ndarray:
            x = np.asarray(x, F32)
            if nhwc:
                x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
            return qk.quantize(x, F32(out.scale), out.zero_point, dtype=out.dtype, qmin=lo,
                               qmax=hi, flavor=flavor)
        return rt.per_sample(kernel)

    def params(self) -> Dict[str, Any]:
        return dict(super().params(), flavor=self.flavor, layout="NCHW (from NHWC)" if self.nhwc
                    else "as given")


@dataclass(eq=False)
class TFLiteAddLayer(Layer):
    """TFLite's int8 ADD / MUL (``kind``): :func:`qkernels.tflite_ops.add` / ``mul`` (``runtime``
    "reference": LiteRT's reference kernels) or ``xnn_add`` / ``xnn_mul`` ("xnnpack": its XNNPACK
    delegate)."""

    a: QMeta = None       # type: ignore[assignment]
    b: QMeta = None       # type: ignore[assignment]
    kind: str = "add"
    act_min: int = -128
    act_max: int = 127
    runtime: str = "reference"
    op: ClassVar[str] = "tflite_add"

    def __post_init__(self) -> None:
        _check_runtime(self)

    def _p(self) -> Any:
        from qkernels import tflite_ops as T
        f = T.add_params if self.kind == "add" else T.mul_params
        return f(self.a.scale, self.a.zero_point, self.b.scale, self.b.zero_point,
                 self.out.scale, self.out.zero_point, self.act_min, self.act_max)

    def kernel(self) -> Kernel:
        from qkernels import tflite_ops as T
        if self.runtime == "xnnpack":
            f = T.xnn_add if self.kind == "add" else T.xnn_mul
            a = (self.a.scale, self.a.zero_point, self.b.scale, self.b.zero_point, self.out.scale,
                 self.out.zero_point, self.act_min, self.act_max)
            return rt.per_sample(lambda t, x, y: f(x, y, *a))
        p, g = self._p(), (T.add if self.kind == "add" else T.mul)
        return rt.per_sample(lambda t, x, y: g(x, y, p))

    def params(self) -> Dict[str, Any]:
        import dataclasses as dc
        return dict(super().params(), op_kind=self.kind, runtime=self.runtime,
                    **dc.asdict(self._p()), input0_scale=float(self.a.scale),
                    input1_scale=float(self.b.scale))


@dataclass(eq=False)
class TFLitePool2dLayer(Layer):
    """TFLite's int8 AVERAGE_POOL_2D / MAX_POOL_2D (``kind`` "avg" / "max") on NCHW: padding
    (top, left, bottom, right) excluded, average rounded half away from zero."""

    kind: str = "avg"
    kernel_size: Tuple[int, int] = (2, 2)
    stride: Tuple[int, int] = (2, 2)
    padding: Tuple[int, int, int, int] = (0, 0, 0, 0)
    act_min: int = -128
    act_max: int = 127
    op: ClassVar[str] = "tflite_pool2d"

    def kernel(self) -> Kernel:
        from qkernels import tflite_ops as T
        f = T.avg_pool2d if self.kind == "avg" else T.max_pool2d
        a = (tuple(self.kernel_size), tuple(self.stride), tuple(self.padding), self.act_min,
             self.act_max)
        return rt.per_sample(lambda t, x: f(x, *a))

    def params(self) -> Dict[str, Any]:
        return dict(super().params(), pool=self.kind, kernel=list(self.kernel_size),
                    stride=list(self.stride), padding_tlbr=list(self.padding),
                    act_min=int(self.act_min), act_max=int(self.act_max))


@dataclass(eq=False)
class TFLiteMeanLayer(Layer):
    """TFLite's int8 MEAN over ``axes`` (of the tensor as held here): the reference kernel's
    fixed point (``runtime`` "reference") or XNNPACK's float32 scale ("xnnpack",
    :func:`qkernels.tflite_ops.xnn_mean`)."""

    x: QMeta = None       # type: ignore[assignment]
    axes: Tuple[int, ...] = (2, 3)
    keepdims: bool = False
    runtime: str = "reference"
    #: the MEAN op's own keep_dims (None: ``keepdims``); False with ``keepdims`` True is TFLite's
    #: MEAN without keep_dims followed by a RESHAPE that puts the reduced axes back (the same
    #: integers with the reference kernels and XNNPACK; the optimized built-ins have another
    #: kernel for a 4-D MEAN over H and W with keep_dims, not reproduced here)
    op_keep_dims: Optional[bool] = None
    op: ClassVar[str] = "tflite_mean"

    def __post_init__(self) -> None:
        _check_runtime(self)
        keep = self.keepdims if self.op_keep_dims is None else self.op_keep_dims
        if self.runtime == "optimized" and keep and len(self.axes) == 2:
            raise NotImplementedError(
                f"{self.name}: MEAN with keep_dims over two axes on TFLite's optimized built-ins "
                "(optimized_integer_ops::Mean, float arithmetic) is not reproduced by qkernels "
                "(it differs from the reference kernel on about 18% of elements); MEAN without "
                "keep_dims (then a RESHAPE) is")

    def _p(self) -> Any:
        from qkernels import tflite_ops as T
        return T.mean_params(self.x.scale, self.x.zero_point, self.out.scale, self.out.zero_point)

    def kernel(self) -> Kernel:
        from qkernels import tflite_ops as T
        p, axes, keep = self._p(), tuple(self.axes), self.keepdims
        if self.runtime == "xnnpack":
            a = (self.x.scale, self.x.zero_point, self.out.scale, self.out.zero_point)
            return rt.per_sample(lambda t, x: T.xnn_mean(x, axes, *a, keepdims=keep))
        return rt.per_sample(lambda t, x: T.mean(x, axes, p, keep))

    def params(self) -> Dict[str, Any]:
        p = self._p()
        keep = self.keepdims if self.op_keep_dims is None else self.op_keep_dims
        return dict(super().params(), axes=list(self.axes), keepdims=bool(self.keepdims),
                    op_keep_dims=bool(keep), runtime=self.runtime,
                    x_scale=float(self.x.scale), x_zero_point=int(self.x.zero_point),
                    multiplier=p.m, shift=p.shift)


@dataclass(eq=False)
class TFLiteConcatLayer(Layer):
    """TFLite's int8 CONCATENATION along ``axis``: a copy of inputs with the output's scale and
    zero point (TFLite's int8 kernel takes no others). An input whose parameters ``in_metas``
    gives and that differ from the output's is first requantized by TFLite's integer QUANTIZE
    (what the converter puts before it, :func:`qkernels.tflite_ops.requantize`: LiteRT's
    reference kernel)."""

    axis: int = 1
    in_metas: Tuple[QMeta, ...] = ()
    op: ClassVar[str] = "tflite_concat"

    def _requantized(self) -> List[Optional[QMeta]]:
        """Per input: its parameters where it is requantized first, else None."""
        o = self.out
        return [m if m is not None and (F32(m.scale), int(m.zero_point)) !=
                (F32(o.scale), int(o.zero_point)) else None
                for m in (self.in_metas or (None,) * len(self.inputs))]

    def kernel(self) -> Kernel:
        from qkernels import tflite_ops as T
        axis, req, o = self.axis, self._requantized(), self.out

        def kernel(t: int, *xs: np.ndarray) -> np.ndarray:
            ys = [x if m is None else T.requantize(x, m.scale, m.zero_point, o.scale,
                                                   o.zero_point, o.dtype)
                  for x, m in zip(xs, req)]
            return np.concatenate(ys, axis=axis)
        return rt.per_sample(kernel)

    def params(self) -> Dict[str, Any]:
        p = dict(super().params(), axis=int(self.axis))
        for i, m in enumerate(self.in_metas):
            p[f"input{i}_scale"] = float(m.scale)
            p[f"input{i}_zero_point"] = int(m.zero_point)
        return p


@dataclass(eq=False)
class TFLiteReshapeLayer(Layer):
    """TFLite's RESHAPE (and the layout changes around it): the integers in NHWC order
    reshaped to ``shape`` (batch first, -1 allowed); ``in_nchw`` / ``out_nchw``: a 4-D input /
    output held NCHW here."""

    shape: Tuple[int, ...] = (-1,)
    in_nchw: bool = False
    out_nchw: bool = False
    op: ClassVar[str] = "tflite_reshape"

    def kernel(self) -> Kernel:
        shape, i4, o4 = tuple(self.shape), self.in_nchw, self.out_nchw

        def kernel(t: int, x: np.ndarray) -> np.ndarray:
            if i4:
                x = x.transpose(0, 2, 3, 1)
            y = x.reshape((x.shape[0],) + shape[1:])
            return np.ascontiguousarray(y.transpose(0, 3, 1, 2) if o4 else y)
        return rt.per_sample(kernel)

    def params(self) -> Dict[str, Any]:
        return dict(super().params(), shape=list(self.shape), in_nchw=bool(self.in_nchw),
                    out_nchw=bool(self.out_nchw))


@dataclass(eq=False)
class TFLiteSoftmaxLayer(Layer):
    """TFLite's int8 SOFTMAX along ``axis``: the reference kernel's gemmlowp fixed point
    (``runtime`` "reference"), or the optimized built-in's float32 exp table ("optimized", and
    "xnnpack": the XNNPACK delegate leaves SOFTMAX to that kernel,
    :func:`qkernels.tflite_ops.softmax_optimized`)."""

    x: QMeta = None       # type: ignore[assignment]
    beta: float = 1.0
    axis: int = -1
    runtime: str = "reference"
    op: ClassVar[str] = "tflite_softmax"

    def __post_init__(self) -> None:
        _check_runtime(self)

    def _p(self) -> Any:
        from qkernels import tflite_ops as T
        return T.softmax_params(self.beta, self.x.scale)

    def kernel(self) -> Kernel:
        from qkernels import tflite_ops as T
        p, axis = self._p(), self.axis
        if self.runtime in ("xnnpack", "optimized"):
            a = (self.x.scale, self.beta, self.out.scale, self.out.zero_point)
            f: Callable[[np.ndarray], np.ndarray] = lambda v: T.softmax_optimized(v, *a)
        else:
            f = lambda v: T.softmax(v, p)     # noqa: E731

        def kernel(t: int, x: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(np.moveaxis(f(np.moveaxis(x, axis, -1)), -1, axis))
        return rt.per_sample(kernel)

    def params(self) -> Dict[str, Any]:
        p = self._p()
        return dict(super().params(), beta=float(self.beta), axis=int(self.axis),
                    runtime=self.runtime,
                    x_scale=float(self.x.scale), input_multiplier=p.input_multiplier,
                    input_left_shift=p.input_left_shift, diff_min=p.diff_min)
