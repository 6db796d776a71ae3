"""The op table: for each PyTorch module / function the bridge supports, one :class:`OpSpec` entry
that both front ends read.

An entry names what it matches (float modules, functions and Tensor methods for
:func:`~qkernels.torch.quantize_model`; PyTorch's quantized modules and ops for
:func:`~qkernels.torch.from_torch_quantized`), how the output of a float model's node is
calibrated (``"observe"``: its own observer; ``"inherit"``: the input's parameters;
``"layernorm"``: PTF calibration of the input plus an observer), and how to build its typed
integer layer (:mod:`qkernels.torch.layers`) from either front end. The layer knows its integer
kernel and what the export writes; the float and fake-quant reference of a float model's node is
the node's own torch op (with fake-quantized weights and outputs, see
:class:`qkernels.torch.model.GraphReference`).

Adding a layer type is one entry here (plus its kernel, if no existing layer fits, and its tests).
For example ``nn.Hardswish`` is one entry that builds a :class:`~qkernels.torch.layers.LookupLayer`:
a 256-entry table of PyTorch's quantized hardswish arithmetic.

Example:
    >>> import torch
    >>> from qkernels.torch.ops import find_module
    >>> find_module(torch.nn.ReLU6()).name
    'relu6'
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch

import qkernels as qk
from qkernels import presets as P
from qkernels import tflite_ops as T

from . import layers as Ly
from . import qarith as qa
from ._runtime import QMeta

F32 = np.float32
_Q8 = (np.dtype(np.uint8), np.dtype(np.int8))

__all__ = ["OpSpec", "TABLE", "find_module", "find_function", "Value", "FloatContext",
           "QuantizedContext", "unsupported", "is_shape_query"]


class Value(NamedTuple):
    """A run-time value of the graph being built: the node that makes it and its quantization
    (None: float, or not a tensor)."""

    name: str
    meta: Optional[QMeta]


@dataclass(frozen=True)
class OpSpec:
    """One supported op (see the module docstring)."""

    name: str
    modules: Tuple[type, ...] = ()
    functions: Tuple[Any, ...] = ()
    methods: Tuple[str, ...] = ()
    qmodules: Tuple[type, ...] = ()
    qfunctions: Tuple[Any, ...] = ()
    #: functions matched by ``module.qualname`` in both front ends (a package the bridge does not
    #: import, e.g. torchvision's ``stochastic_depth``)
    function_names: Tuple[str, ...] = ()
    calibrate: str = "observe"
    #: float model: ``from_float(ctx, node, module_or_None, args, kwargs) -> Layer``
    from_float: Optional[Callable[..., Ly.Layer]] = None
    #: PyTorch-quantized model: ``from_quantized(ctx, name, module_or_None, args, kwargs) -> Layer``
    from_quantized: Optional[Callable[..., Ly.Layer]] = None
    #: ``from_float`` builds a layer only with a TFLite preset (``Preset.tflite_runtime``)
    tflite_only: bool = False
    #: float model: the output shares one observer with every input that is calibrated on its
    #: own (PyTorch FX's ``OUTPUT_SHARE_OBSERVER_WITH_INPUT`` for cat; TFLite's converter gives a
    #: CONCATENATION's inputs its output's parameters too), so those inputs are quantized once,
    #: to the op's parameters, instead of quantized to their own and then requantized
    share_inputs: bool = False


# ---- the contexts the builders get ---------------------------------------------------------------
class _LayoutContext:
    """Which values PyTorch's quantized model holds channels-last, for the ops whose arithmetic
    (average pooling, bilinear upsampling) or output layout depends on it: a PyTorch-quantized
    model's, and the one PyTorch FX would make of a float model (quantize_model)."""

    def __init__(self) -> None:
        #: the values PyTorch holds channels-last (see :func:`track_layout`)
        self.channels_last: set = set()

    def track_layout(self, layer: Ly.Layer) -> None:
        """Record whether PyTorch holds ``layer``'s output channels-last: quantized conv and
        BatchNorm outputs are; elementwise ops, pooling and bilinear upsampling keep their (first)
        input's layout (its strides: a 1 x 1 image made channels-last stays so), cat the layout
        all its inputs share; anything else is NCHW. Pooling and upsampling kernels that round
        differently by layout read it (:class:`~qkernels.torch.layers.AvgPool2dLayer`,
        :class:`~qkernels.torch.layers.UpsampleBilinearLayer`)."""
        keep = (Ly.ClampLayer, Ly.IdentityLayer, Ly.LookupLayer, Ly.LeakyReLULayer, Ly.AddLayer,
                Ly.MulLayer, Ly.ScalarLayer, Ly.MaxPool2dLayer, Ly.AvgPool2dLayer,
                Ly.AdaptiveAvgPool2dLayer, Ly.UpsampleBilinearLayer)
        ins = [i in self.channels_last for i in layer.inputs]
        if isinstance(layer, Ly.AdaptiveAvgPool2dLayer) and layer.engine == "qnnpack" and \
                np.dtype(layer.out.dtype) == np.uint8 and layer.output_size in (1, (1, 1), [1, 1]):
            # QNNPACK's global average pooling writes a channels-last 1 x 1 image, whatever the
            # input's layout (seen in torch 2.13: strides (C, 1, C, C) from an NCHW input)
            self.channels_last.add(layer.name)
        elif isinstance(layer, (Ly.Conv2dLayer, Ly.BatchNormLayer)) or \
                (isinstance(layer, keep) and ins and ins[0]) or \
                (isinstance(layer, Ly.CatLayer) and ins and all(ins)):
            self.channels_last.add(layer.name)


class FloatContext(_LayoutContext):
    """What quantize_model knows when it builds a float model's layers (after calibration):
    ``meta(value)`` of an input, ``out(name)`` the calibrated output of a node, the config and
    its preset, the quantized weights of each conv / linear node, the LayerNorm parameters; the
    layout PyTorch's quantized model would hold each value in (:meth:`track_layout`)."""

    def __init__(self, config: Any, out: Callable[[str], Optional[QMeta]],
                 weights: Dict[str, Any], layernorms: Dict[str, Any],
                 bias_bits: Optional[int]) -> None:
        super().__init__()
        self.config = config
        self.preset: P.Preset = config.preset_obj
        self.out = out
        self.weights = weights
        self.layernorms = layernorms
        self.bias_bits = bias_bits
        #: the pooling / elementwise arithmetic: QNNPACK's with the qnnpack preset, else fbgemm's
        self.engine = "qnnpack" if self.preset.name == "qnnpack" else "fbgemm"


class QuantizedContext(_LayoutContext):
    """What from_torch_quantized knows: the engine and the conv / linear preset it implies."""

    def __init__(self, engine: str) -> None:
        super().__init__()
        #: the engine as given ("x86" runs some ops through oneDNN, not fbgemm)
        self.torch_engine = engine
        self.engine = "qnnpack" if engine == "qnnpack" else "fbgemm"
        self.preset = P.get("qnnpack" if engine == "qnnpack" else "fbgemm")
        #: the graph node being built (set by the front end; builders of generic ops read its target)
        self.node: Any = None


def unsupported(what: str, front: str = "from_torch_quantized") -> NotImplementedError:
    return NotImplementedError(
        f"{what} has no integer implementation in {front}: keep it in float in the PyTorch model "
        "(dequantize before it, quantize after it; qkernels then runs it in float too) or give it "
        "an entry in the op table (qkernels/torch/ops.py)")


def _qin(v: Any, what: str) -> QMeta:
    if not isinstance(v, Value) or v.meta is None:
        raise TypeError(f"{what} expects a quantized input (quantize it before this op)")
    return v.meta


def _pair(v: Any) -> Tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, (int, np.integer)) else (int(v[0]), int(v[1]))


def clamp_bounds(meta: QMeta, lo: Optional[float], hi: Optional[float]) -> Tuple[int, int]:
    """The integer bounds of a quantized clamp: ``quantize_val`` of each float bound (fbgemm
    scalar), the type's limits for a missing one."""
    info = np.iinfo(meta.dtype)

    def qv(v: float) -> int:
        return int(qk.quantize(np.float32(v), F32(meta.scale), meta.zero_point, dtype=meta.dtype,
                               flavor="fbgemm_scalar"))
    return (int(info.min) if lo is None else qv(lo)), (int(info.max) if hi is None else qv(hi))


def tflite_runtime(ctx: Any) -> Optional[str]:
    """The LiteRT kernels whose arithmetic the context's preset gives the non-conv ops
    (:attr:`qkernels.presets.Preset.tflite_runtime`: "reference", "xnnpack", "optimized"), or
    None: PyTorch's quantized ops."""
    return getattr(getattr(ctx, "preset", None), "tflite_runtime", None)


def tflite_clamp_bounds(meta: QMeta, lo: Optional[float], hi: Optional[float]) -> Tuple[int, int]:
    """The integer bounds of a clamp (a fused activation, RELU, RELU6) as TFLite computes them:
    ``zp + round(v / s)`` in float32, half away from zero
    (:func:`qkernels.tflite_ops.quantize_bound`), within the output's range."""
    qlo, qhi = meta.qrange()
    return (qlo if lo is None else max(qlo, T.quantize_bound(lo, meta.scale, meta.zero_point)),
            qhi if hi is None else min(qhi, T.quantize_bound(hi, meta.scale, meta.zero_point)))


def _tflite_only(ctx: Any, what: str) -> str:
    """The TFLite runtime of the preset, or the error for an op only the TFLite presets run."""
    rt_ = tflite_runtime(ctx)
    if rt_ is None:
        raise unsupported(f"{what} with preset {getattr(ctx.preset, 'name', ctx.preset)!r} (it "
                          "has an integer implementation with the TFLite presets only: tflite, "
                          "tflite_xnnpack, tflite_optimized)", "quantize_model")
    return rt_


def _tflite_or(tflite: Callable[..., Ly.Layer], other: Callable[..., Ly.Layer]) -> Callable[..., Ly.Layer]:
    """A float-model builder that builds TFLite's op with a TFLite preset, else ``other``."""
    def build(ctx: FloatContext, node: Any, mod: Any, args: Tuple, kwargs: Dict) -> Ly.Layer:
        return (tflite if tflite_runtime(ctx) is not None else other)(ctx, node, mod, args, kwargs)
    return build


# ---- conv / linear --------------------------------------------------------------------------------
def _weighted_from_float(ctx: FloatContext, node: Any, mod: Any, args: Tuple, kwargs: Dict) -> Ly.Layer:
    W = ctx.weights[node.name]
    x = args[0]
    cfg = ctx.config
    if W.kind == "conv_transpose" and cfg.mode == "dynamic":
        raise unsupported(f"ConvTranspose2d {node.name} in dynamic mode (static or weight_only)",
                          "quantize_model")
    if cfg.mode == "dynamic":
        return Ly.DynamicLayer(node.name, (x.name,), None, kind=W.kind, w_int=W.w_int,
                               w_scale=W.w_scale, w_zero_point=0, packed=W.packed, bias=W.bias,
                               relu=W.act is not None,
                               act_max=None if W.act is None else W.act[1],
                               quantize_input=W.quantize_input, stride=W.module_attr("stride"),
                               padding=W.module_attr("padding"),
                               dilation=W.module_attr("dilation"),
                               groups=W.module_attr("groups", 1), input_range=W.input_range)
    if cfg.mode == "weight_only":
        return Ly.FloatLayer(node.name, (x.name,), None, fn=W.fq_module, args=(Ly._Slot(0),),
                             in_metas=(None,), what=f"{W.kind} (float, quantized weights)")
    xm = _qin(x, f"layer {node.name}")
    out = ctx.out(node.name)
    lo, hi = out.qrange()
    if W.act is not None and tflite_runtime(ctx) is not None:   # TFLite's fused activation range
        lo, hi = tflite_clamp_bounds(out, *W.act)
    elif W.act is not None:   # fused ReLU / ReLU6: clamp at the zero point (and quantize(6))
        lo = max(lo, int(out.zero_point))
        if W.act[1] is not None:
            hi = min(hi, int(qk.quantize(np.float32(W.act[1]), F32(out.scale), out.zero_point,
                                         dtype=out.dtype, flavor="torch")))
    bias = ctx.preset.quantize_bias(W.bias, xm.scale, W.w_scale, ctx.bias_bits)
    if W.kind == "conv_transpose":
        return _conv_transpose_layer(node.name, x, xm, out, W.w_int, W.w_scale, 0, bias,
                                     ctx.preset, W.base, lo, hi)
    common = dict(x=xm, w_int=W.w_int, w_scale=W.w_scale, w_zero_point=0, packed=W.packed,
                  bias=bias, preset=ctx.preset, act_min=lo, act_max=hi)
    if W.kind == "conv":
        m = W.base
        return Ly.Conv2dLayer(node.name, (x.name,), out, stride=tuple(m.stride), padding=m.padding,
                              dilation=tuple(m.dilation), groups=int(m.groups), **common)
    return Ly.LinearLayer(node.name, (x.name,), out, **common)


def _weight_params(w: torch.Tensor) -> Tuple[np.ndarray, Any, Any]:
    q = w.int_repr().numpy()
    if w.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        return q, F32(w.q_scale()), int(w.q_zero_point())
    if w.q_per_channel_axis() != 0:
        raise NotImplementedError("per-channel weights must be quantized along the output axis")
    return (q, w.q_per_channel_scales().numpy().astype(F32),
            w.q_per_channel_zero_points().numpy().astype(np.int32))


def _float_bias(b: Optional[torch.Tensor]) -> Optional[np.ndarray]:
    return None if b is None else b.detach().numpy().astype(F32)


def _conv_from_quantized(ctx: QuantizedContext, name: str, mod: Any, args: Tuple,
                         kwargs: Dict) -> Ly.Layer:
    import torch.ao.nn.intrinsic.quantized as nniq

    if mod.padding_mode != "zeros":
        raise unsupported(f"module {name} (padding_mode={mod.padding_mode})")
    x = args[0]
    xm = _qin(x, f"module {name}")
    w, ws, wzp = _weight_params(mod.weight())
    out = QMeta(float(mod.scale), int(mod.zero_point), xm.dtype)
    packed = qk.pack_conv2d(w, groups=mod.groups, w_zero_point=wzp, w_scale=ws)
    relu = isinstance(mod, nniq.ConvReLU2d)
    return Ly.Conv2dLayer(name, (x.name,), out, x=xm, w_int=w, w_scale=ws, w_zero_point=wzp,
                          packed=packed, bias=_float_bias(mod.bias()), preset=ctx.preset,
                          act_min=out.zero_point if relu else None, stride=tuple(mod.stride),
                          padding=mod.padding, dilation=tuple(mod.dilation), groups=int(mod.groups))


def _conv_transpose_layer(name: str, x: Value, xm: QMeta, out: QMeta, wc: np.ndarray, ws: Any,
                          wzp: Any, bias: Optional[np.ndarray], preset: P.Preset, m: Any,
                          act_min: Optional[int], act_max: Optional[int]) -> Ly.Layer:
    """A :class:`~qkernels.torch.layers.ConvTranspose2dLayer` of the equivalent convolution's
    weights ``wc`` (:func:`~qkernels.torch.layers.conv_transpose_weights`) and the module
    ``m``'s geometry."""
    if getattr(m, "padding_mode", "zeros") != "zeros":
        raise unsupported(f"module {name} (ConvTranspose2d with padding_mode={m.padding_mode})")
    groups = int(m.groups)
    pair = (lambda v: tuple(int(a) for a in _pair(v)))
    stride, padding, opad, dil = (pair(m.stride), pair(m.padding), pair(m.output_padding),
                                  pair(m.dilation))
    crop, pad = Ly.conv_transpose_geometry(stride, padding, opad, dil, tuple(wc.shape[2:]))
    packed = qk.pack_conv2d(wc, groups=groups, w_zero_point=wzp, w_scale=ws)
    return Ly.ConvTranspose2dLayer(name, (x.name,), out, x=xm, w_int=wc, w_scale=ws,
                                   w_zero_point=wzp, packed=packed, bias=bias, preset=preset,
                                   act_min=act_min, act_max=act_max, stride=(1, 1), padding=pad,
                                   dilation=dil, groups=groups, t_stride=stride, t_padding=padding,
                                   output_padding=opad, crop=crop)


def _conv_transpose_from_quantized(ctx: QuantizedContext, name: str, mod: Any, args: Tuple,
                                   kwargs: Dict) -> Ly.Layer:
    """PyTorch's quantized ConvTranspose2d (fbgemm / x86 and qnnpack): the equivalent
    convolution over the zero-point-inserted input, with the engine's conv requantization."""
    x = args[0]
    xm = _qin(x, f"module {name}")
    if len(args) > 1 or kwargs:
        raise unsupported(f"module {name} (ConvTranspose2d with an output_size argument)")
    if getattr(ctx, "torch_engine", ctx.engine) == "x86":
        raise unsupported(f"module {name} (quantized ConvTranspose2d under engine 'x86': PyTorch "
                          "runs it through oneDNN on VNNI CPUs, whose results are not reproduced "
                          "(on the test machine they are up to 255 steps from the exact transposed "
                          "convolution); quantize and run the model with engine 'fbgemm' or "
                          "'qnnpack')")
    wt = mod.weight()
    groups = int(mod.groups)
    if wt.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        w, ws, wzp = _weight_params(wt)
    elif wt.q_per_channel_axis() == 1 and groups == 1:   # qnnpack: one scale per output channel
        w = wt.int_repr().numpy()
        ws = wt.q_per_channel_scales().numpy().astype(F32)
        wzp = wt.q_per_channel_zero_points().numpy().astype(np.int32)
    else:
        raise unsupported(f"module {name} (ConvTranspose2d with per-channel weights along axis "
                          f"{wt.q_per_channel_axis()}, groups={groups})")
    out = QMeta(float(mod.scale), int(mod.zero_point), xm.dtype)
    return _conv_transpose_layer(name, x, xm, out, Ly.conv_transpose_weights(w, groups), ws, wzp,
                                 _float_bias(mod.bias()), ctx.preset, mod, None, None)


def _linear_from_quantized(ctx: QuantizedContext, name: str, mod: Any, args: Tuple,
                           kwargs: Dict) -> Ly.Layer:
    import torch.ao.nn.intrinsic.quantized as nniq

    x = args[0]
    xm = _qin(x, f"module {name}")
    w, ws, wzp = _weight_params(mod.weight())
    out = QMeta(float(mod.scale), int(mod.zero_point), xm.dtype)
    packed = qk.pack_linear(w, w_zero_point=wzp, w_scale=ws)
    relu = isinstance(mod, nniq.LinearReLU)
    return Ly.LinearLayer(name, (x.name,), out, x=xm, w_int=w, w_scale=ws, w_zero_point=wzp,
                          packed=packed, bias=_float_bias(mod.bias()), preset=ctx.preset,
                          act_min=out.zero_point if relu else None)


def _dynamic_linear_from_quantized(ctx: QuantizedContext, name: str, mod: Any, args: Tuple,
                                   kwargs: Dict) -> Ly.Layer:
    import torch.ao.nn.intrinsic.quantized.dynamic as nniqd

    if mod.weight().dtype != torch.qint8:
        raise unsupported(f"module {name} (dynamic Linear with {mod.weight().dtype} weights)")
    w, ws, wzp = _weight_params(mod.weight())
    return Ly.DynamicLayer(name, (args[0].name,), None, kind="linear", w_int=w, w_scale=ws,
                           w_zero_point=wzp, packed=qk.pack_linear(w, w_zero_point=wzp),
                           bias=_float_bias(mod.bias()), relu=isinstance(mod, nniqd.LinearReLU))


# ---- add ------------------------------------------------------------------------------------------
def _add_layer(name: str, a: Any, b: Any, out: QMeta, relu: bool,
               engine: str = "fbgemm") -> Ly.Layer:
    am, bm = _qin(a, "quantized add"), _qin(b, "quantized add")
    return Ly.AddLayer(name, (a.name, b.name), out, a=am, b=bm, relu=relu, engine=engine)


def _tflite_binary(ctx: FloatContext, node: Any, a: Value, b: Value, kind: str) -> Ly.Layer:
    """TFLite's ADD / MUL (kind "add" / "mul") of two int8 tensors, the output's range as its
    fused clamp."""
    out = ctx.out(node.name)
    lo, hi = out.qrange()
    return Ly.TFLiteAddLayer(node.name, (a.name, b.name), out, a=a.meta, b=b.meta, kind=kind,
                             act_min=lo, act_max=hi, runtime=tflite_runtime(ctx))


def _binary_from_float(function: str) -> Callable[..., Ly.Layer]:
    """``a + b`` / ``a * b`` in a float model: of two quantized tensors (PyTorch's
    ``quantized::add`` / ``mul``, calibrated output; TFLite's ADD / MUL with a TFLite preset), or
    of a quantized tensor and a number (``add_scalar`` / ``mul_scalar``: the output parameters
    follow from the input's; refused with a TFLite preset)."""
    def build(ctx: FloatContext, node: Any, mod: Any, args: Tuple, kwargs: Dict) -> Ly.Layer:
        if len(args) != 2 or kwargs:
            raise unsupported(f"function {function} (node {node.name}) with arguments "
                              f"{args!r} {kwargs!r}", "quantize_model")
        a, b = args
        if not isinstance(a, Value):
            a, b = b, a
        if tflite_runtime(ctx) is not None:
            if not (isinstance(a, Value) and isinstance(b, Value) and a.meta is not None
                    and b.meta is not None):
                raise unsupported(f"function {function} (node {node.name}) with arguments "
                                  f"{args!r} (the TFLite presets take two quantized tensors)",
                                  "quantize_model")
            return _tflite_binary(ctx, node, a, b, function)
        if isinstance(b, (int, float)) and not isinstance(b, bool):
            return _scalar_layer(node.name, a, b, False, function)
        if function == "add":
            return _add_layer(node.name, a, b, ctx.out(node.name), False)
        am, bm = _qin(a, f"quantized mul {node.name}"), _qin(b, f"quantized mul {node.name}")
        return Ly.MulLayer(node.name, (a.name, b.name), ctx.out(node.name), a=am, b=bm)
    return build


def _scalar_layer(name: str, x: Any, c: Any, relu: bool, function: str) -> Ly.Layer:
    """quantized add / mul of a tensor and a constant; the output parameters as PyTorch sets
    them (computed once, from an empty tensor)."""
    xm = _qin(x, f"quantized {function} {name}")
    f = qa.q_add_scalar if function == "add" else qa.q_mul_scalar
    y = f(qa.QTensor(np.zeros(0, xm.dtype), xm.scale, xm.zero_point), float(c), relu)
    return Ly.ScalarLayer(name, (x.name,), QMeta(float(y.scale), int(y.zero_point), xm.dtype),
                          x=xm, value=float(c), relu=relu, function=function)


def _quantized_add(relu: bool) -> Callable[..., Ly.Layer]:
    def build(ctx: QuantizedContext, name: str, mod: Any, args: Tuple, kwargs: Dict) -> Ly.Layer:
        def bind(a: Any, b: Any, scale: Any = None, zero_point: Any = None) -> Ly.Layer:
            if not isinstance(b, Value):
                return _scalar_layer(name, a, b, relu, "add")
            am = _qin(a, "quantized add")
            return _add_layer(name, a, b, QMeta(float(scale), int(zero_point), am.dtype), relu,
                              ctx.engine)
        return bind(*args, **kwargs)
    return build


def _quantized_mul(relu: bool) -> Callable[..., Ly.Layer]:
    def build(ctx: QuantizedContext, name: str, mod: Any, args: Tuple, kwargs: Dict) -> Ly.Layer:
        def bind(a: Any, b: Any, scale: Any = None, zero_point: Any = None) -> Ly.Layer:
            if not isinstance(b, Value):
                return _scalar_layer(name, a, b, relu, "mul")
            am, bm = _qin(a, f"quantized mul {name}"), _qin(b, f"quantized mul {name}")
            return Ly.MulLayer(name, (a.name, b.name), QMeta(float(scale), int(zero_point), am.dtype),
                               a=am, b=bm, relu=relu)
        return bind(*args, **kwargs)
    return build


# ---- clamps ---------------------------------------------------------------------------------------
def _clamp_layer(name: str, x: Any, lo: Optional[float], hi: Optional[float]) -> Ly.Layer:
    if not isinstance(x, Value) or x.meta is None:   # float in: the float op
        flo = -np.inf if lo is None else lo
        fhi = np.inf if hi is None else hi
        return Ly.FloatLayer(name, (x.name,), None, fn=torch.clamp, args=(Ly._Slot(0), flo, fhi),
                             in_metas=(None,), what="clamp")
    return Ly.ClampLayer(name, (x.name,), x.meta, *clamp_bounds(x.meta, lo, hi))


def _clamp_builder(bounds: Callable[[Any], Tuple[Optional[float], Optional[float]]]
                   ) -> Callable[..., Ly.Layer]:
    """A builder for both front ends: bounds(module_or_None) -> (lo, hi) in float; with a TFLite
    preset the bounds are quantized as TFLite's RELU / RELU6 do (:func:`tflite_clamp_bounds`)."""
    def build(ctx: Any, node_or_name: Any, mod: Any, args: Tuple, kwargs: Dict) -> Ly.Layer:
        name = getattr(node_or_name, "name", node_or_name)
        x = args[0]
        if tflite_runtime(ctx) is not None and isinstance(x, Value) and x.meta is not None:
            return Ly.ClampLayer(name, (x.name,), x.meta, *tflite_clamp_bounds(x.meta,
                                                                               *bounds(mod)))
        return _clamp_layer(name, x, *bounds(mod))
    return build


# ---- LeakyReLU ------------------------------------------------------------------------------------
def _leaky_from_float(ctx: FloatContext, node: Any, mod: Any, args: Tuple, kwargs: Dict) -> Ly.Layer:
    xm = _qin(args[0], f"module {node.name}")
    return Ly.LeakyReLULayer(node.name, (args[0].name,), _out_like(ctx.out(node.name), xm),
                             x=xm, slope=float(mod.negative_slope))


def _out_like(out: QMeta, x: QMeta) -> QMeta:
    """The output parameters of an op whose integers keep the input's storage type (LeakyReLU,
    Hardswish), with the calibrated bit width when the types agree."""
    same = np.dtype(out.dtype) == np.dtype(x.dtype)
    return QMeta(out.scale, out.zero_point, x.dtype, out.bits if same else None)


def _leaky_from_quantized(ctx: QuantizedContext, name: str, mod: Any, args: Tuple,
                          kwargs: Dict) -> Ly.Layer:
    xm = _qin(args[0], f"module {name}")
    return Ly.LeakyReLULayer(name, (args[0].name,), QMeta(float(mod.scale), int(mod.zero_point),
                                                          xm.dtype),
                             x=xm, slope=float(mod.negative_slope))


# ---- pooling --------------------------------------------------------------------------------------
def _max_pool_args(input: Any, kernel_size: Any, stride: Any = None, padding: Any = 0,
                   dilation: Any = 1, ceil_mode: bool = False, return_indices: bool = False) -> Tuple:
    return input, kernel_size, stride, padding, dilation, ceil_mode, return_indices


def _max_pool(ctx: Any, node_or_name: Any, mod: Any, args: Tuple, kwargs: Dict) -> Ly.Layer:
    name = getattr(node_or_name, "name", node_or_name)
    if mod is not None:
        a = (args[0], mod.kernel_size, mod.stride, mod.padding, mod.dilation, mod.ceil_mode,
             mod.return_indices)
    else:
        a = _max_pool_args(*args, **kwargs)
    if a[6]:
        raise unsupported(f"{name} (max pooling with return_indices)")
    x = a[0]
    xm = _qin(x, f"max pooling {name}")
    if tflite_runtime(ctx) is not None:
        if _pair(a[4]) != (1, 1) or a[5]:
            raise unsupported(f"max pooling {name} with dilation {a[4]} / ceil_mode {a[5]} (TFLite's "
                              "MAX_POOL_2D has neither)", "quantize_model")
        return _tflite_pool(name, x, xm, "max", a[1], a[2], a[3])
    return Ly.MaxPool2dLayer(name, (x.name,), xm, kernel_size=a[1], stride=a[2], padding=a[3],
                             dilation=a[4], ceil_mode=bool(a[5]))


def _avg_pool_args(input: Any, kernel_size: Any, stride: Any = None, padding: Any = 0,
                   ceil_mode: bool = False, count_include_pad: bool = True,
                   divisor_override: Optional[int] = None) -> Tuple:
    """F.avg_pool2d's arguments, positional, in its order."""
    return (input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)


def _avg_pool(ctx: Any, node_or_name: Any, mod: Any, args: Tuple, kwargs: Dict) -> Ly.Layer:
    name = getattr(node_or_name, "name", node_or_name)
    if mod is not None:
        a = (args[0], mod.kernel_size, mod.stride, mod.padding, mod.ceil_mode,
             mod.count_include_pad, mod.divisor_override)
    else:
        a = _avg_pool_args(*args, **kwargs)
    xm = _qin(a[0], f"average pooling {name}")
    if tflite_runtime(ctx) is not None:
        if a[4] or a[6] is not None or (a[5] and _pair(a[3]) != (0, 0)):
            raise unsupported(f"average pooling {name} with ceil_mode={a[4]}, count_include_pad="
                              f"{a[5]}, padding={a[3]}, divisor_override={a[6]} (TFLite's "
                              "AVERAGE_POOL_2D divides by the number of cells inside the input: "
                              "give padding=0 or count_include_pad=False)", "quantize_model")
        return _tflite_pool(name, a[0], xm, "avg", a[1], a[2], a[3])
    engine = getattr(ctx, "engine", "fbgemm")
    return Ly.AvgPool2dLayer(name, (a[0].name,), xm, kernel_size=a[1], stride=a[2], padding=a[3],
                             ceil_mode=bool(a[4]), count_include_pad=bool(a[5]),
                             divisor_override=a[6], engine=engine,
                             channels_last=a[0].name in getattr(ctx, "channels_last", ()),
                             vec_width=qa.torch_pool_vec_width())


def _tflite_pool(name: str, x: Value, xm: QMeta, kind: str, kernel: Any, stride: Any,
                 padding: Any) -> Ly.Layer:
    """TFLite's AVERAGE_POOL_2D / MAX_POOL_2D (padding (top, left, bottom, right) excluded from
    the window), the output's range as its fused clamp."""
    k = _pair(kernel)
    s = k if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0) \
        else _pair(stride)
    p = _pair(padding)
    lo, hi = xm.qrange()
    return Ly.TFLitePool2dLayer(name, (x.name,), xm, kind=kind, kernel_size=k, stride=s,
                                padding=(p[0], p[1], p[0], p[1]), act_min=lo, act_max=hi)


def _adaptive_pool(ctx: Any, node_or_name: Any, mod: Any, args: Tuple, kwargs: Dict) -> Ly.Layer:
    name = getattr(node_or_name, "name", node_or_name)
    if mod is not None:
        x, size = args[0], mod.output_size
    else:
        def bind(input: Any, output_size: Any) -> Tuple:
            return input, output_size
        x, size = bind(*args, **kwargs)
    xm = _qin(x, f"adaptive average pooling {name}")
    if tflite_runtime(ctx) is not None:
        size = (size, size) if isinstance(size, int) else tuple(size)
        if tuple(size) != (1, 1):
            raise unsupported(f"adaptive average pooling {name} to {size} (with a TFLite preset "
                              "the global one, output size 1, is TFLite's MEAN)", "quantize_model")
        return _tflite_mean(name, x, xm, xm, (2, 3), True, tflite_runtime(ctx))
    return Ly.AdaptiveAvgPool2dLayer(name, (x.name,), xm, output_size=size,
                                     engine=getattr(ctx, "engine", "fbgemm"),
                                     channels_last=x.name in getattr(ctx, "channels_last", ()))


# ---- shape ops ------------------------------------------------------------------------------------
def _cat_from_float(ctx: FloatContext, node: Any, mod: Any, args: Tuple, kwargs: Dict) -> Ly.Layer:
    def bind(tensors: Sequence[Any], dim: int = 0) -> Tuple:
        return tensors, dim
    xs, dim = bind(*args, **kwargs)
    ms = tuple(_qin(x, f"function {node.name}") for x in xs)
    out = ctx.out(node.name)
    rt_ = tflite_runtime(ctx)
    if rt_ is not None:
        same = all((F32(m.scale), m.zero_point) == (F32(out.scale), out.zero_point) for m in ms)
        if not same and rt_ != "reference":
            raise unsupported(f"concatenation {node.name} of inputs with other scales than its "
                              f"output with preset {ctx.preset.name!r} (TFLite requantizes them "
                              "with an integer QUANTIZE, reproduced for the reference kernels "
                              "only: preset 'tflite')", "quantize_model")
        return Ly.TFLiteConcatLayer(node.name, tuple(x.name for x in xs), out, axis=int(dim),
                                    in_metas=ms)
    return Ly.CatLayer(node.name, tuple(x.name for x in xs), out, in_metas=ms, dim=int(dim))


def _cat_from_quantized(ctx: QuantizedContext, name: str, mod: Any, args: Tuple,
                        kwargs: Dict) -> Ly.Layer:
    def bind(tensors: Sequence[Any], dim: int = 0, scale: Any = None,
             zero_point: Any = None) -> Tuple:
        return tensors, dim, scale, zero_point
    xs, dim, scale, zp = bind(*args, **kwargs)
    # at::cat on quantized tensors keeps the first input's parameters; quantized::cat names its own
    ms = tuple(_qin(x, f"function {name}") for x in xs)
    s = ms[0].scale if scale is None else float(scale)
    z = ms[0].zero_point if zp is None else int(zp)
    return Ly.CatLayer(name, tuple(x.name for x in xs), QMeta(s, z, ms[0].dtype), in_metas=ms,
                       dim=int(dim))


def _flatten(ctx: Any, node_or_name: Any, mod: Any, args: Tuple, kwargs: Dict) -> Ly.Layer:
    name = getattr(node_or_name, "name", node_or_name)
    if mod is not None:
        x, start, end = args[0], mod.start_dim, mod.end_dim
    else:
        def bind(input: Any, start_dim: int = 0, end_dim: int = -1) -> Tuple:
            return input, start_dim, end_dim
        x, start, end = bind(*args, **kwargs)
    return Ly.FlattenLayer(name, (x.name,), x.meta, start=int(start), end=int(end))


def _identity(ctx: Any, node_or_name: Any, mod: Any, args: Tuple, kwargs: Dict) -> Ly.Layer:
    name = getattr(node_or_name, "name", node_or_name)
    x = args[0]
    what = type(mod).__name__ if mod is not None else "contiguous"
    return Ly.IdentityLayer(name, (x.name,), x.meta, what=what)


#: shape ops whose result is not a tensor (no quantization parameters)
_SHAPE_QUERIES = ("size", "dim", "numel", "getattr")
#: data-movement ops on integer tensors (ShapeLayer), as Tensor methods and torch functions
_SHAPE_METHODS = _SHAPE_QUERIES + ("view", "reshape", "transpose", "permute", "chunk", "split",
                                   "squeeze", "unsqueeze", "contiguous")
_SHAPE_FUNCTIONS = (torch.transpose, torch.permute, torch.reshape, torch.chunk, torch.split,
                    torch.squeeze, torch.unsqueeze, getattr)
#: what ``getattr`` of a quantized tensor may read (``x.shape[0]``)
_SHAPE_ATTRIBUTES = ("shape", "ndim")


def is_shape_query(node: Any) -> bool:
    """Whether a graph node asks a tensor for its shape (an int or a tuple of ints, no tensor)."""
    t = node.target
    return (node.op == "call_method" and t in _SHAPE_QUERIES) or \
        (node.op == "call_function" and t is getattr)


def _getitem_from_float(ctx: FloatContext, node: Any, mod: Any, args: Tuple,
                        kwargs: Dict) -> Ly.Layer:
    """``x[i]`` of a run-time value: an element of a quantized tensor or tuple keeps its
    parameters; of anything else (sizes, float tuples) it is the value itself."""
    x, i = args
    if not isinstance(x, Value) or any(isinstance(v, Value) for v in Ly.arg_template((i,), {},
                                       lambda v: isinstance(v, Value))[2]):
        return float_layer(node, None, args, kwargs, None)
    return Ly.GetItemLayer(node.name, (x.name,), x.meta, index=i)


def _shape_op(ctx: Any, node_or_name: Any, mod: Any, args: Tuple, kwargs: Dict) -> Ly.Layer:
    """A data-movement op on an integer tensor, run by torch on the integers (qparams kept)."""
    name = getattr(node_or_name, "name", node_or_name)
    fn = getattr(node_or_name, "target", None) or ctx.node.target
    a, k, found = Ly.arg_template(args, kwargs, lambda v: isinstance(v, Value))
    metas = tuple(v.meta for v in found)
    q = [m for m in metas if m is not None]
    if not q:
        raise unsupported(f"shape op {name} without a quantized input")
    method = isinstance(fn, str)
    what = fn if method else str(getattr(fn, "__name__", fn))
    if fn is getattr and (len(a) != 2 or a[1] not in _SHAPE_ATTRIBUTES):
        raise unsupported(f"getattr {name} ({a[1:]!r} of a quantized tensor; "
                          f"only {', '.join(_SHAPE_ATTRIBUTES)})")
    out = None if what in _SHAPE_QUERIES else q[0]
    return Ly.ShapeLayer(name, tuple(v.name for v in found), out, fn=fn, args=a, kwargs=k,
                         in_metas=metas, method=method, what=what)


def _quantized_mean(ctx: Any, node_or_name: Any, mod: Any, args: Tuple,
                    kwargs: Dict) -> Ly.Layer:
    """``mean`` of a quantized tensor (:class:`~qkernels.torch.layers.MeanLayer`; both front
    ends, the engine's arithmetic)."""
    name = getattr(node_or_name, "name", node_or_name)
    def bind(input: Any, dim: Any = None, keepdim: bool = False, dtype: Any = None) -> Tuple:
        return input, dim, keepdim, dtype
    x, dim, keepdim, dtype = bind(*args, **kwargs)
    xm = _qin(x, f"mean {name}")
    if dim is None or dtype is not None or any(isinstance(v, Value) for v in (dim, keepdim)):
        raise unsupported(f"mean {name} without constant dims (or with a dtype)")
    dims = (int(dim),) if isinstance(dim, int) else tuple(int(d) for d in dim)
    return Ly.MeanLayer(name, (x.name,), xm, dim=dims, keepdim=bool(keepdim), engine=ctx.engine)


# ---- LayerNorm ------------------------------------------------------------------------------------
def _layernorm_from_float(ctx: FloatContext, node: Any, mod: Any, args: Tuple,
                          kwargs: Dict) -> Ly.Layer:
    x = args[0]
    xm = _qin(x, f"module {node.name}")
    c = int(mod.normalized_shape[0])
    gamma = mod.weight.detach().numpy().astype(F32) if mod.weight is not None else np.ones(c, F32)
    beta = mod.bias.detach().numpy().astype(F32) if mod.bias is not None else np.zeros(c, F32)
    return Ly.LayerNormLayer(node.name, (x.name,), ctx.out(node.name), x=xm,
                             ln=ctx.layernorms[node.name], gamma=gamma, beta=beta)


# ---- quantize / dequantize (PyTorch-quantized models) ---------------------------------------------
_TORCH_TO_NP = {torch.quint8: np.uint8, torch.qint8: np.int8, torch.qint32: np.int32}


def _quantize_layer(name: str, x: Any, scale: Any, zp: Any, dtype: Any) -> Ly.Layer:
    if any(isinstance(v, Value) for v in (scale, zp)):
        raise unsupported("quantize_per_tensor with computed scale / zero point")
    if dtype not in _TORCH_TO_NP:
        raise unsupported(f"quantize_per_tensor to {dtype}")
    return Ly.QuantizeLayer(name, (x.name,), QMeta(float(scale), int(zp),
                                                   np.dtype(_TORCH_TO_NP[dtype])))


def _quantize_from_quantized(ctx: QuantizedContext, name: str, mod: Any, args: Tuple,
                             kwargs: Dict) -> Ly.Layer:
    if mod is not None:
        return _quantize_layer(name, args[0], float(mod.scale), int(mod.zero_point), mod.dtype)

    def bind(input: Any, scale: Any, zero_point: Any, dtype: Any) -> Ly.Layer:
        return _quantize_layer(name, input, scale, zero_point, dtype)
    return bind(*args, **kwargs)


def _dequantize_from_quantized(ctx: QuantizedContext, name: str, mod: Any, args: Tuple,
                               kwargs: Dict) -> Ly.Layer:
    x = args[0]
    return Ly.DequantizeLayer(name, (x.name,), None, x=x.meta if isinstance(x, Value) else None)


# ---- Hardswish: a 256-entry table -----------------------------------------------------------------
def _hard_table(x: QMeta, out: QMeta, engine: str, swish: bool) -> np.ndarray:
    """hardswish (``swish``) or hardsigmoid of every 8-bit input, as the engine's kernel
    computes it (see :func:`hardswish_table`)."""
    info = np.iinfo(x.dtype)
    q = np.arange(int(info.min), int(info.max) + 1).astype(x.dtype)
    qnnpack = engine == "qnnpack" and np.dtype(x.dtype) == np.uint8
    if qnnpack:
        dx = (F32(x.scale) * (q.astype(np.int32) - int(x.zero_point)).astype(F32)).astype(F32)
    else:
        dx = qa._vec_dequantize(qa.QTensor(q, x.scale, x.zero_point))
    t = np.minimum(np.maximum((dx + F32(3)).astype(F32), F32(0)), F32(6)).astype(F32)
    y = (((dx * t).astype(F32) if swish else t) / F32(6)).astype(F32)
    if qnnpack:
        inv = F32(F32(1) / F32(out.scale))
        v = ((inv * y).astype(F32) + F32(out.zero_point)).astype(F32)
        return np.rint(np.clip(v, F32(0), F32(255))).astype(np.uint8)
    return qa._vec_quantize(y, out.scale, out.zero_point, np.dtype(out.dtype))


def hardswish_table(x: QMeta, out: QMeta, engine: str = "fbgemm") -> np.ndarray:
    """PyTorch's quantized hardswish of every 8-bit input, as the engine's CPU kernel computes it.

    fbgemm / x86 (``qhardswish_kernel``, aten/src/ATen/native/quantized/cpu/kernels/
    QuantizedOpKernels.cpp): ``dx = fl(fma(s, q, -fl(s*zp)))`` (the Vectorized dequantize),
    ``y = fl(fl(dx * min(max(fl(dx + 3), 0), 6)) / 6)``, then the Vectorized quantize
    ``RNE(fl(y * fl(1/s_out))) + zp_out`` clamped.
    qnnpack, uint8 (``pytorch_qnnp_create_hardswish_nc_q8``, qnnpack/src/hardswish.c): a table
    built with ``x = fl(s * (float)(q - zp))``, the same hardswish in float, ``v = fl(fl(fl(1/s_out)
    * y) + zp_out)`` clamped to [0, 255], ``lrintf(v)`` (RNE).
    """
    return _hard_table(x, out, engine, True)


def hardsigmoid_table(x: QMeta, out: QMeta, engine: str = "fbgemm") -> np.ndarray:
    """PyTorch's quantized hardsigmoid of every 8-bit input: ``qhardsigmoid_kernel`` (fbgemm /
    x86: ``y = fl(min(max(fl(dx + 3), 0), 6) / 6)`` between the Vectorized dequantize and
    quantize) or, uint8 under qnnpack, QNNPACK's table (``hardsigmoid.c``, the arithmetic of
    :func:`hardswish_table` without the product). The output parameters are fixed by PyTorch:
    scale 1/256, zero point 0 (uint8) or -128 (int8).

    Example:
        >>> import numpy as np
        >>> from qkernels.torch._runtime import QMeta
        >>> t = hardsigmoid_table(QMeta(0.1, 128, np.dtype(np.uint8)), QMeta(1 / 256, 0, np.dtype(np.uint8)))
        >>> int(t[128]), int(t[0]), int(t[255])          # x = 0 -> 0.5; x <= -3 -> 0; x >= 3 -> 1
        (128, 0, 255)
    """
    return _hard_table(x, out, engine, False)


def _hardsigmoid_from_quantized(ctx: QuantizedContext, name: str, mod: Any, args: Tuple,
                                kwargs: Dict) -> Ly.Layer:
    x = args[0]
    xm = _qin(x, f"hardsigmoid {name}")
    out = QMeta(1.0 / 256, 0 if np.dtype(xm.dtype) == np.uint8 else -128, xm.dtype)
    return Ly.LookupLayer(name, (x.name,), out, x=xm, table=hardsigmoid_table(xm, out, ctx.engine),
                          function="hardsigmoid")


def _hard_layer(name: str, x: Any, out: QMeta, engine: str, swish: bool) -> Ly.Layer:
    """Hardswish (``swish``) or Hardsigmoid with calibrated output parameters, as a table."""
    what = "hardswish" if swish else "hardsigmoid"
    xm = _qin(x, f"{what} {name}")
    out = _out_like(out, xm)
    table = _hard_table(xm, out, engine, swish)
    if out.bits is not None:   # saturate to the bit range as every other op does
        table = np.clip(table, *out.qrange()).astype(table.dtype)
    return Ly.LookupLayer(name, (x.name,), out, x=xm, table=table, function=what)


def _hardswish_layer(name: str, x: Any, out: QMeta, engine: str = "fbgemm") -> Ly.Layer:
    return _hard_layer(name, x, out, engine, True)


def _hardswish_from_float(ctx: FloatContext, node: Any, mod: Any, args: Tuple,
                          kwargs: Dict) -> Ly.Layer:
    if tflite_runtime(ctx) is not None:   # TFLite's HARD_SWISH (int16 fixed point) as a table
        x = args[0]
        xm = _qin(x, f"hardswish {node.name}")
        out = _out_like(ctx.out(node.name), xm)
        table = T.hard_swish_table(xm.scale, xm.zero_point, out.scale, out.zero_point, xm.dtype)
        table = np.clip(table, *out.qrange()).astype(table.dtype)
        return Ly.LookupLayer(node.name, (x.name,), out, x=xm, table=table,
                              function="tflite hard_swish")
    return _hardswish_layer(node.name, args[0], ctx.out(node.name))


# ---- TFLite-only ops: softmax, sigmoid, tanh, mean ------------------------------------------------
#: TFLite's int8 output parameters of SOFTMAX and LOGISTIC (1/256, -128) and TANH (1/128, 0)
_PROB = (1.0 / 256, -128)
_TANH = (1.0 / 128, 0)


def _int8_input(x: Any, what: str) -> QMeta:
    xm = _qin(x, what)
    if np.dtype(xm.dtype) != np.int8:
        raise unsupported(f"{what} on {np.dtype(xm.dtype)} (TFLite's kernel is int8 here)",
                          "quantize_model")
    return xm


def _softmax_from_float(ctx: FloatContext, node: Any, mod: Any, args: Tuple,
                        kwargs: Dict) -> Ly.Layer:
    """TFLite's SOFTMAX (int8, output 1/256 and -128) along ``dim``."""
    rt_ = _tflite_only(ctx, f"softmax {node.name}")
    if mod is not None:
        x, dim = args[0], mod.dim
    else:
        def bind(input: Any, dim: Any = None, _stacklevel: int = 3, dtype: Any = None) -> Tuple:
            if dtype is not None:
                raise unsupported(f"softmax {node.name} with a dtype", "quantize_model")
            return input, dim
        x, dim = bind(*args, **kwargs)
    xm = _int8_input(x, f"softmax {node.name}")
    if dim is None or isinstance(dim, Value):
        raise unsupported(f"softmax {node.name} without a constant dim", "quantize_model")
    return Ly.TFLiteSoftmaxLayer(node.name, (x.name,), QMeta(*_PROB, np.dtype(np.int8)), x=xm,
                                 beta=1.0, axis=int(dim), runtime=rt_)


def _table_from_float(kind: str) -> Callable[..., Ly.Layer]:
    """TFLite's LOGISTIC (``kind`` "sigmoid") or TANH as a 256-entry table, with the output
    parameters TFLite fixes for int8."""
    def build(ctx: FloatContext, node: Any, mod: Any, args: Tuple, kwargs: Dict) -> Ly.Layer:
        _tflite_only(ctx, f"{kind} {node.name}")
        x = args[0]
        xm = _int8_input(x, f"{kind} {node.name}")
        s, z = _PROB if kind == "sigmoid" else _TANH
        out = QMeta(s, z, np.dtype(np.int8))
        f = T.logistic_table if kind == "sigmoid" else T.tanh_table
        table = f(xm.scale, xm.zero_point, s, z, xm.dtype)
        name = "logistic" if kind == "sigmoid" else "tanh"
        return Ly.LookupLayer(node.name, (x.name,), out, x=xm, table=table,
                              function=f"tflite {name}")
    return build


def _mean_from_float(ctx: FloatContext, node: Any, mod: Any, args: Tuple,
                     kwargs: Dict) -> Ly.Layer:
    """TFLite's MEAN over constant dims (its own calibrated output parameters)."""
    rt_ = _tflite_only(ctx, f"mean {node.name}")

    def bind(input: Any, dim: Any = None, keepdim: bool = False, dtype: Any = None) -> Tuple:
        return input, dim, keepdim, dtype
    x, dim, keepdim, dtype = bind(*args, **kwargs)
    xm = _int8_input(x, f"mean {node.name}")
    if dim is None or dtype is not None or any(isinstance(v, Value) for v in (dim, keepdim)):
        raise unsupported(f"mean {node.name} without constant dims (or with a dtype)",
                          "quantize_model")
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    return _tflite_mean(node.name, x, xm, ctx.out(node.name), tuple(int(d) for d in dims),
                        bool(keepdim), rt_)


def _tflite_mean(name: str, x: Value, xm: QMeta, out: QMeta, axes: Tuple[int, ...], keep: bool,
                 rt_: str) -> Ly.Layer:
    """TFLite's MEAN; with the optimized built-ins a kept-dims mean is MEAN without keep_dims
    and a RESHAPE (their kept-dims kernel over H and W is not reproduced)."""
    return Ly.TFLiteMeanLayer(name, (x.name,), out, x=xm, axes=axes, keepdims=keep, runtime=rt_,
                              op_keep_dims=False if rt_ == "optimized" else None)


def _hardswish_from_quantized(ctx: QuantizedContext, name: str, mod: Any, args: Tuple,
                              kwargs: Dict) -> Ly.Layer:
    xm = _qin(args[0], f"module {name}")
    return _hardswish_layer(name, args[0], QMeta(float(mod.scale), int(mod.zero_point), xm.dtype),
                            ctx.engine)


def _hardsigmoid_from_float(ctx: FloatContext, node: Any, mod: Any, args: Tuple,
                            kwargs: Dict) -> Ly.Layer:
    return _hard_layer(node.name, args[0], ctx.out(node.name), ctx.engine, False)


# ---- Sigmoid of a PyTorch-quantized model: PyTorch's own op on every input integer ----------------
def _torch_qdtype(dt: Any) -> Any:
    return torch.quint8 if np.dtype(dt) == np.uint8 else torch.qint8


def sigmoid_table(x: QMeta, engine: str = "fbgemm",
                  out: Optional[Tuple[float, int]] = None) -> Tuple[np.ndarray, QMeta]:
    """(table, output parameters) of PyTorch's quantized sigmoid of every 8-bit input under
    ``engine``: ``torch.sigmoid`` (``out`` None: output scale 1/256, zero point 0 for quint8 and
    -128 for qint8) or ``torch.ops.quantized.sigmoid(x, *out)``, evaluated by PyTorch itself on
    the 256 input integers with the engine set (and put back).

    It is exact for tensors of any shape because PyTorch's result depends on the integer only,
    not on its position: fbgemm / x86 (``qsigmoid_kernel``, QuantizedOpKernels.cpp) computes the
    vector body with a vectorized ``exp`` and ``reciprocal`` and the tail in scalar code
    (``1.0f / (1.0 + std::exp(-x))``), which agreed on every integer of 3,072,000 random
    (scale, zero point, integer) draws, AVX-512 and AVX2 (tests/torch/test_sigmoid_vs_torch.py
    checks lengths that are not multiples of the vector width); QNNPACK (quint8 under engine
    qnnpack, ``pytorch_qnnp_create_sigmoid_nc_q8``) is a 256-entry table itself.

    Example:
        >>> import numpy as np
        >>> from qkernels.torch._runtime import QMeta
        >>> t, out = sigmoid_table(QMeta(0.05, 128, np.dtype(np.uint8)))
        >>> out.scale, out.zero_point, int(t[128]), int(t[0]), int(t[255])
        (0.00390625, 0, 128, 0, 255)
    """
    import warnings

    if engine == "qnnpack" and np.dtype(x.dtype) == np.uint8 and out is not None and \
            (float(out[0]) != 1 / 256 or int(out[1]) != 0):
        raise ValueError(f"quantized sigmoid output scale / zero point {out}: QNNPACK's (engine "
                         "qnnpack, quint8) takes 1/256 and 0 only; PyTorch fails on others")
    info = np.iinfo(x.dtype)
    q = torch.from_numpy(np.arange(int(info.min), int(info.max) + 1).astype(x.dtype))
    old = torch.backends.quantized.engine
    torch.backends.quantized.engine = "qnnpack" if engine == "qnnpack" else "fbgemm"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            qx = torch._make_per_tensor_quantized_tensor(q, float(x.scale), int(x.zero_point))
        y = torch.sigmoid(qx) if out is None else \
            torch.ops.quantized.sigmoid(qx, float(out[0]), int(out[1]))
    finally:
        torch.backends.quantized.engine = old
    return (y.int_repr().numpy().astype(x.dtype),
            QMeta(float(y.q_scale()), int(y.q_zero_point()), np.dtype(x.dtype)))


def _sigmoid_from_quantized(ctx: QuantizedContext, name: str, mod: Any, args: Tuple,
                            kwargs: Dict) -> Ly.Layer:
    """``nn.Sigmoid`` / ``torch.sigmoid`` / ``x.sigmoid()`` on a quantized tensor (output 1/256
    and PyTorch's zero point) or ``torch.ops.quantized.sigmoid(x, scale, zero_point)``: a
    :class:`~qkernels.torch.layers.LookupLayer` of :func:`sigmoid_table`."""
    def bind(input: Any, output_scale: Any = None, output_zero_point: Any = None) -> Tuple:
        return input, output_scale, output_zero_point
    x, s, z = bind(*args, **kwargs)
    xm = _qin(x, f"sigmoid {name}")
    if np.dtype(xm.dtype) not in _Q8:
        raise unsupported(f"sigmoid {name} of {np.dtype(xm.dtype)} (8-bit inputs only)")
    if any(isinstance(v, Value) for v in (s, z)):
        raise unsupported(f"sigmoid {name} with computed output scale / zero point")
    table, out = sigmoid_table(xm, ctx.engine, None if s is None else (float(s), int(z)))
    return Ly.LookupLayer(name, (x.name,), out, x=xm, table=table, function="sigmoid")


# ---- any other op of one 8-bit input: a table -------------------------------------------------------
_LUT_MODULES = (torch.nn.SiLU, torch.nn.Sigmoid, torch.nn.Tanh, torch.nn.GELU, torch.nn.Mish,
                torch.nn.ELU, torch.nn.SELU, torch.nn.CELU, torch.nn.Softplus, torch.nn.Softsign,
                torch.nn.Tanhshrink, torch.nn.LogSigmoid)
_LUT_FUNCTIONS = (torch.nn.functional.silu, torch.sigmoid, torch.nn.functional.sigmoid, torch.tanh,
                  torch.nn.functional.tanh, torch.nn.functional.gelu, torch.nn.functional.mish,
                  torch.nn.functional.elu, torch.exp, torch.abs, torch.square, torch.sqrt,
                  torch.rsqrt, torch.neg, torch.nn.functional.softplus,
                  torch.nn.functional.logsigmoid, torch.nn.functional.leaky_relu)
_LUT_METHODS = ("sigmoid", "tanh", "exp", "abs", "square", "sqrt", "rsqrt", "neg")


def _lookup_from_float(ctx: FloatContext, node: Any, mod: Any, args: Tuple,
                       kwargs: Dict) -> Ly.Layer:
    """An elementwise op of one quantized 8-bit input (SiLU, Sigmoid, Tanh, GELU, ...) as a
    :class:`~qkernels.torch.layers.LookupLayer`: the float op (with the node's own arguments) of
    every dequantized input integer, quantized with the calibrated output parameters (PyTorch's
    quantize_per_tensor), saturated to the output's bits. The table is exactly what the
    fake-quant reference computes at this node."""
    a, k, found = Ly.arg_template(args, kwargs, lambda v: isinstance(v, Value))
    what = type(mod).__name__ if mod is not None else str(getattr(node.target, "__name__",
                                                                  node.target))
    if len(found) != 1:
        raise unsupported(f"{what} (node {node.name}) of {len(found)} run-time inputs",
                          "quantize_model")
    x = found[0]
    xm = _qin(x, f"{what} {node.name}")
    if np.dtype(xm.dtype) not in _Q8:
        raise unsupported(f"{what} (node {node.name}) of {np.dtype(xm.dtype).name} inputs "
                          "(a table takes 8-bit ones)", "quantize_model")
    out = _out_like(ctx.out(node.name), xm)
    info = np.iinfo(xm.dtype)
    q = np.arange(int(info.min), int(info.max) + 1).astype(xm.dtype)
    t = torch.from_numpy(qk.dequantize(q, F32(xm.scale), xm.zero_point))
    fa, fk = Ly._fill(a, [t]), Ly._fill(k, [t])
    with torch.no_grad():
        if mod is not None:
            y = mod(*fa, **fk)
        elif node.op == "call_method":
            y = getattr(fa[0], node.target)(*fa[1:], **fk)
        else:
            y = node.target(*fa, **fk)
    y = np.asarray(y.detach().numpy(), F32)
    if y.shape != t.shape:
        raise unsupported(f"{what} (node {node.name}): not elementwise", "quantize_model")
    lo, hi = out.qrange()
    table = qk.quantize(y, F32(out.scale), out.zero_point, dtype=out.dtype, qmin=lo, qmax=hi,
                        flavor="torch")
    return Ly.LookupLayer(node.name, (x.name,), out, x=xm, table=table, function=what)


# ---- BatchNorm no convolution absorbs --------------------------------------------------------------
def _batch_norm_layer(name: str, x: Any, bn: torch.nn.Module, out: QMeta, relu: bool) -> Ly.Layer:
    xm = _qin(x, f"BatchNorm {name}")
    if bn.running_mean is None or bn.running_var is None:
        raise unsupported(f"module {name} (BatchNorm without running statistics)")
    t = (lambda v: None if v is None else v.detach().numpy().astype(F32))
    alpha, beta = Ly.batch_norm_params(t(bn.weight), t(bn.bias), t(bn.running_mean),
                                       t(bn.running_var), float(bn.eps), xm.scale, out.scale)
    return Ly.BatchNormLayer(name, (x.name,), _out_like(out, xm), x=xm, alpha=alpha, beta=beta,
                             relu=relu)


def _batch_norm_from_float(ctx: FloatContext, node: Any, mod: Any, args: Tuple,
                           kwargs: Dict) -> Ly.Layer:
    import torch.ao.nn.intrinsic as nni

    relu = isinstance(mod, nni.BNReLU2d)
    return _batch_norm_layer(node.name, args[0], mod[0] if relu else mod, ctx.out(node.name), relu)


def _batch_norm_from_quantized(ctx: QuantizedContext, name: str, mod: Any, args: Tuple,
                               kwargs: Dict) -> Ly.Layer:
    import torch.ao.nn.intrinsic.quantized as nniq

    xm = _qin(args[0], f"module {name}")
    return _batch_norm_layer(name, args[0], mod, QMeta(float(mod.scale), int(mod.zero_point),
                                                        xm.dtype), isinstance(mod, nniq.BNReLU2d))


# ---- identities in eval: Dropout, stochastic depth --------------------------------------------------
_DROPOUTS = (torch.nn.Dropout, torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Dropout3d,
             torch.nn.AlphaDropout, torch.nn.FeatureAlphaDropout)
_STOCHASTIC_DEPTH = "torchvision.ops.stochastic_depth.stochastic_depth"


def _stochastic_depth(ctx: Any, node_or_name: Any, mod: Any, args: Tuple,
                      kwargs: Dict) -> Ly.Layer:
    """torchvision's ``stochastic_depth(input, p, mode, training)``: the identity in eval mode."""
    name = getattr(node_or_name, "name", node_or_name)

    def bind(input: Any, p: float, mode: str, training: bool = True) -> Tuple:
        return input, p, training
    x, p, training = bind(*args, **kwargs)
    if training and p > 0:
        raise unsupported(f"stochastic_depth {name} in training mode (call model.eval() first)")
    return Ly.IdentityLayer(name, (x.name,), x.meta, what="stochastic_depth")


# ---- upsampling: nearest (integers copied) and bilinear -------------------------------------------
def _upsample(ctx: Any, node_or_name: Any, mod: Any, args: Tuple, kwargs: Dict) -> Ly.Layer:
    """``F.interpolate`` / ``nn.Upsample`` / ``nn.UpsamplingNearest2d`` /
    ``nn.UpsamplingBilinear2d`` on a quantized tensor, both front ends; the output keeps the
    input's parameters. Mode "nearest": PyTorch's quantized nearest upsampling copies input
    integers, so the float op on the integers is exact. Mode "bilinear" (4-d input, no
    antialias): PyTorch's quantized ``upsample_bilinear2d``
    (:class:`~qkernels.torch.layers.UpsampleBilinearLayer`), with the channels-last kernel's
    rounding where PyTorch holds the input channels-last (a quantized conv's output). Other modes
    are refused by name."""
    name = getattr(node_or_name, "name", node_or_name)
    front = "quantize_model" if isinstance(ctx, FloatContext) else "from_torch_quantized"
    if mod is not None:
        x = args[0]
        kw = dict(size=mod.size, scale_factor=mod.scale_factor, mode=mod.mode,
                  align_corners=mod.align_corners,
                  recompute_scale_factor=getattr(mod, "recompute_scale_factor", None))
    else:
        def bind(input: Any, size: Any = None, scale_factor: Any = None, mode: str = "nearest",
                 align_corners: Any = None, recompute_scale_factor: Any = None,
                 antialias: bool = False) -> Tuple:
            return input, dict(size=size, scale_factor=scale_factor, mode=mode,
                               align_corners=align_corners,
                               recompute_scale_factor=recompute_scale_factor, antialias=antialias)
        x, kw = bind(*args, **kwargs)
    if kw["mode"] not in ("nearest", "bilinear") or any(isinstance(v, Value) for v in kw.values()):
        raise unsupported(f"interpolate {name} (mode {kw['mode']!r}; only 'nearest' and "
                          "'bilinear' with constant sizes are integer)", front)
    xm = _qin(x, f"interpolate {name}")
    if kw["mode"] == "nearest":
        return Ly.UpsampleNearestLayer(name, (x.name,), xm, kwargs=kw)
    if kw.get("antialias"):
        raise unsupported(f"interpolate {name} (bilinear with antialias=True)", front)
    if (kw["size"] is None) == (kw["scale_factor"] is None):
        raise ValueError(f"interpolate {name}: give exactly one of size and scale_factor")
    return Ly.UpsampleBilinearLayer(name, (x.name,), xm, x=xm, size=kw["size"],
                                    scale_factor=kw["scale_factor"],
                                    recompute_scale_factor=kw["recompute_scale_factor"],
                                    align_corners=bool(kw["align_corners"]),
                                    channels_last=x.name in getattr(ctx, "channels_last", ()),
                                    vec_width=qa.torch_pool_vec_width())


# ---- float ops ------------------------------------------------------------------------------------
def float_layer(node: Any, mod: Optional[torch.nn.Module], args: Tuple, kwargs: Dict,
                out: Optional[QMeta]) -> Ly.Layer:
    """A graph node run in float (both front ends): its torch op on the (dequantized) inputs,
    the output quantized with ``out`` when it has one."""
    a, k, found = Ly.arg_template(args, kwargs, lambda v: isinstance(v, Value))
    if mod is not None:
        fn, method = mod, False
    else:
        fn, method = node.target, node.op == "call_method"
    what = type(mod).__name__ if mod is not None else str(getattr(node.target, "__name__", node.target))
    return Ly.FloatLayer(node.name, tuple(v.name for v in found), out, fn=fn, args=a, kwargs=k,
                         in_metas=tuple(v.meta for v in found), method=method, what=what)


# ---- the table ------------------------------------------------------------------------------------
def _table() -> List[OpSpec]:
    import torch.ao.nn.intrinsic as nni
    import torch.ao.nn.intrinsic.quantized as nniq
    import torch.ao.nn.intrinsic.quantized.dynamic as nniqd
    import torch.ao.nn.quantized as nnq
    import torch.ao.nn.quantized.dynamic as nnqd

    F = torch.nn.functional
    return [
        # dynamic modules subclass the static ones: they come first
        OpSpec("linear_dynamic", qmodules=(nniqd.LinearReLU, nnqd.Linear),
               from_quantized=_dynamic_linear_from_quantized),
        OpSpec("conv2d", modules=(nni.ConvReLU2d, torch.nn.Conv2d),
               qmodules=(nniq.ConvReLU2d, nnq.Conv2d), from_float=_weighted_from_float,
               from_quantized=_conv_from_quantized),
        OpSpec("conv_transpose2d", modules=(torch.nn.ConvTranspose2d,),
               qmodules=(nnq.ConvTranspose2d,), from_float=_weighted_from_float,
               from_quantized=_conv_transpose_from_quantized),
        OpSpec("linear", modules=(nni.LinearReLU, torch.nn.Linear),
               qmodules=(nniq.LinearReLU, nnq.Linear), from_float=_weighted_from_float,
               from_quantized=_linear_from_quantized),
        OpSpec("add", functions=(torch.add, operator.add), methods=("add",),
               qfunctions=(torch.ops.quantized.add, torch.ops.quantized.add_scalar),
               from_float=_binary_from_float("add"), from_quantized=_quantized_add(False)),
        OpSpec("add_relu", qfunctions=(torch.ops.quantized.add_relu,
                                       torch.ops.quantized.add_scalar_relu),
               from_quantized=_quantized_add(True)),
        # nnq.ReLU6 subclasses nn.ReLU, nn.ReLU6 subclasses nn.Hardtanh: ReLU6 first
        OpSpec("relu6", modules=(torch.nn.ReLU6,), functions=(F.relu6,),
               qmodules=(nnq.ReLU6, torch.nn.ReLU6), calibrate="inherit",
               from_float=_clamp_builder(lambda m: (0.0, 6.0)),
               from_quantized=_clamp_builder(lambda m: (0.0, 6.0))),
        OpSpec("hardtanh", modules=(torch.nn.Hardtanh,), qmodules=(torch.nn.Hardtanh,),
               calibrate="inherit",
               from_float=_clamp_builder(lambda m: (float(m.min_val), float(m.max_val))),
               from_quantized=_clamp_builder(lambda m: (float(m.min_val), float(m.max_val)))),
        OpSpec("relu", modules=(torch.nn.ReLU,), functions=(F.relu, torch.relu),
               methods=("relu",), qmodules=(torch.nn.ReLU,), qfunctions=(F.relu, torch.relu),
               calibrate="inherit", from_float=_clamp_builder(lambda m: (0.0, None)),
               from_quantized=_clamp_builder(lambda m: (0.0, None))),
        OpSpec("leaky_relu", modules=(torch.nn.LeakyReLU,), qmodules=(nnq.LeakyReLU,),
               from_float=_leaky_from_float, from_quantized=_leaky_from_quantized),
        OpSpec("hardswish", modules=(torch.nn.Hardswish,), qmodules=(nnq.Hardswish,),
               from_float=_hardswish_from_float, from_quantized=_hardswish_from_quantized),
        OpSpec("hardsigmoid", modules=(torch.nn.Hardsigmoid,), functions=(F.hardsigmoid,),
               qmodules=(torch.nn.Hardsigmoid,), qfunctions=(F.hardsigmoid,),
               from_float=_hardsigmoid_from_float, from_quantized=_hardsigmoid_from_quantized),
        # sigmoid / tanh before "lookup" (the first match wins): TFLite's LOGISTIC / TANH with a
        # TFLite preset, else the table of the float op as any other
        OpSpec("sigmoid", modules=(torch.nn.Sigmoid,), functions=(torch.sigmoid, F.sigmoid),
               methods=("sigmoid",), qmodules=(torch.nn.Sigmoid,),
               qfunctions=(torch.sigmoid, F.sigmoid, torch.ops.quantized.sigmoid),
               from_float=_tflite_or(_table_from_float("sigmoid"), _lookup_from_float),
               from_quantized=_sigmoid_from_quantized),
        OpSpec("tanh", modules=(torch.nn.Tanh,), functions=(torch.tanh, F.tanh),
               methods=("tanh",), from_float=_tflite_or(_table_from_float("tanh"), _lookup_from_float)),
        # any other op of one 8-bit input: a table of the float op
        OpSpec("lookup", modules=_LUT_MODULES, functions=_LUT_FUNCTIONS, methods=_LUT_METHODS,
               from_float=_lookup_from_float),
        OpSpec("batch_norm", modules=(nni.BNReLU2d, torch.nn.BatchNorm2d),
               qmodules=(nniq.BNReLU2d, nnq.BatchNorm2d), from_float=_batch_norm_from_float,
               from_quantized=_batch_norm_from_quantized),
        OpSpec("mul", functions=(torch.mul, operator.mul), methods=("mul",),
               qfunctions=(torch.ops.quantized.mul, torch.ops.quantized.mul_scalar),
               from_float=_binary_from_float("mul"), from_quantized=_quantized_mul(False)),
        OpSpec("mul_relu", qfunctions=(torch.ops.quantized.mul_relu,
                                       torch.ops.quantized.mul_scalar_relu),
               from_quantized=_quantized_mul(True)),
        OpSpec("mean", functions=(torch.mean,), methods=("mean",), qfunctions=(torch.mean,),
               calibrate="inherit", from_float=_tflite_or(_mean_from_float, _quantized_mean),
               from_quantized=_quantized_mean),
        OpSpec("softmax", modules=(torch.nn.Softmax,), functions=(F.softmax, torch.softmax),
               methods=("softmax",), from_float=_softmax_from_float, tflite_only=True),
        OpSpec("shape", functions=_SHAPE_FUNCTIONS, methods=_SHAPE_METHODS,
               qfunctions=_SHAPE_FUNCTIONS, calibrate="inherit", from_float=_shape_op,
               from_quantized=_shape_op),
        OpSpec("getitem", functions=(operator.getitem,), calibrate="inherit",
               from_float=_getitem_from_float),
        OpSpec("max_pool2d", modules=(torch.nn.MaxPool2d,), functions=(F.max_pool2d,),
               qmodules=(torch.nn.MaxPool2d,), qfunctions=(F.max_pool2d,), calibrate="inherit",
               from_float=_max_pool, from_quantized=_max_pool),
        OpSpec("avg_pool2d", modules=(torch.nn.AvgPool2d,),
               functions=(F.avg_pool2d, torch._C._nn.avg_pool2d), qmodules=(torch.nn.AvgPool2d,),
               qfunctions=(F.avg_pool2d, torch._C._nn.avg_pool2d), calibrate="inherit",
               from_float=_avg_pool, from_quantized=_avg_pool),
        OpSpec("adaptive_avg_pool2d", modules=(torch.nn.AdaptiveAvgPool2d,),
               functions=(F.adaptive_avg_pool2d,), qmodules=(torch.nn.AdaptiveAvgPool2d,),
               qfunctions=(F.adaptive_avg_pool2d,), calibrate="inherit",
               from_float=_adaptive_pool, from_quantized=_adaptive_pool),
        OpSpec("cat", functions=(torch.cat, torch.concat, torch.concatenate),
               qfunctions=(torch.cat, torch.concat, torch.concatenate, torch.ops.quantized.cat),
               from_float=_cat_from_float, from_quantized=_cat_from_quantized,
               share_inputs=True),
        OpSpec("flatten", modules=(torch.nn.Flatten,), functions=(torch.flatten,),
               methods=("flatten",), qmodules=(torch.nn.Flatten,), qfunctions=(torch.flatten,),
               calibrate="inherit", from_float=_flatten, from_quantized=_flatten),
        OpSpec("identity", modules=_DROPOUTS + (torch.nn.Identity,),
               functions=(F.dropout, F.dropout2d, F.alpha_dropout),
               qmodules=_DROPOUTS + (torch.nn.Identity,),
               qfunctions=(F.dropout, F.dropout2d, F.alpha_dropout), calibrate="inherit",
               from_float=_identity, from_quantized=_identity),
        OpSpec("stochastic_depth", function_names=(_STOCHASTIC_DEPTH,), calibrate="inherit",
               from_float=_stochastic_depth, from_quantized=_stochastic_depth),
        OpSpec("interpolate", modules=(torch.nn.Upsample,), functions=(F.interpolate,),
               qmodules=(torch.nn.Upsample,), qfunctions=(F.interpolate,), calibrate="inherit",
               from_float=_upsample, from_quantized=_upsample),
        OpSpec("layernorm", modules=(torch.nn.LayerNorm,), calibrate="layernorm",
               from_float=_layernorm_from_float),
        OpSpec("quantize", qmodules=(nnq.Quantize,), qfunctions=(torch.quantize_per_tensor,),
               from_quantized=_quantize_from_quantized),
        OpSpec("dequantize", qmodules=(nnq.DeQuantize,), qfunctions=(torch.dequantize,),
               from_quantized=_dequantize_from_quantized),
    ]


TABLE: List[OpSpec] = _table()
#: The Tensor methods of PyTorch-quantized graphs, by name (the table's methods apply too).
_Q_METHODS = {"dequantize": "dequantize", "contiguous": "shape", "flatten": "flatten",
              "relu": "relu", "mean": "mean", "sigmoid": "sigmoid",
              **{m: "shape" for m in _SHAPE_METHODS}}
_BY_NAME = {s.name: s for s in TABLE}


def by_name(name: str) -> OpSpec:
    return _BY_NAME[name]


def find_module(mod: Any, quantized: bool = False) -> Optional[OpSpec]:
    """The entry of a module (float model; ``quantized``: a PyTorch-quantized model)."""
    for spec in TABLE:
        types = spec.qmodules if quantized else spec.modules
        if types and isinstance(mod, types):
            return spec
    return None


def find_function(target: Any, method: bool, quantized: bool = False) -> Optional[OpSpec]:
    """The entry of a call_function target or (``method``) a Tensor method name."""
    if method:
        if quantized:
            n = _Q_METHODS.get(target)
            return _BY_NAME[n] if n else None
        for spec in TABLE:
            if target in spec.methods:
                return spec
        return None
    qual = f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', '')}"
    for spec in TABLE:
        fns = spec.qfunctions if quantized else spec.functions
        if any(target is f for f in fns) or qual in spec.function_names:
            return spec
    return None
