"""Run a model that PyTorch itself quantized on qkernels' integer kernels.

``from_torch_quantized(qmodel)`` takes the output of ``torch.ao.quantization.quantize_fx.convert_fx``
(or an eager ``convert``-ed model, which is traced with ``torch.fx``, or a ``quantize_dynamic``
model) and returns an :class:`~qkernels.torch.IntegerModel` that executes every quantized op with
qkernels, through the op table (:mod:`qkernels.torch.ops`): convolutions and linear layers with
the preset of the engine (``fbgemm`` for fbgemm / x86, ``qnnpack``), the elementwise and pooling
ops with PyTorch's own integer arithmetic (:mod:`qkernels.torch.qarith`), reproduced operation for
operation. Float regions of the model (between a dequantize and a quantize) run in float.

Example:
    >>> from qkernels.torch import from_torch_quantized
    >>> # qmodel = convert_fx(prepare_fx(model, get_default_qconfig_mapping("fbgemm"), ...))
    >>> # im = from_torch_quantized(qmodel); im(x) == qmodel(x), element for element
"""
from __future__ import annotations

import functools
import operator
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from torch import fx

from qkernels.linear import check_threads

from . import layers as Ly
from . import ops as O
from .model import IntegerModel, TorchReference, structured_output
from .qarith import QTensor

__all__ = ["QTensor", "IntegerModel", "from_torch_quantized"]

F32 = np.float32


def _trace(model: torch.nn.Module) -> fx.GraphModule:
    if isinstance(model, fx.GraphModule):
        return model
    try:
        return fx.symbolic_trace(model)
    except Exception as exc:  # pragma: no cover - depends on the user's model
        raise TypeError(f"{type(model).__name__} could not be traced with torch.fx ({exc}); "
                        "convert it with quantize_fx.convert_fx, or make it traceable") from exc


def from_torch_quantized(qmodel: torch.nn.Module, engine: Optional[str] = None, *,
                         threads: Optional[int] = None) -> IntegerModel:
    """An :class:`~qkernels.torch.IntegerModel` running a PyTorch-quantized model on qkernels.

    ``engine`` is the PyTorch quantized engine the model runs with ("fbgemm", "x86" or
    "qnnpack"; default ``torch.backends.quantized.engine``): it picks the conv/linear preset and
    the pooling arithmetic. ``threads``: the default thread cap of the returned model.
    ``im.compare(x)`` reports, layer by layer, how many quantization steps qkernels and PyTorch
    differ (0: exact).

    Exactness on x86 CPUs without AVX512-VNNI (AVX2 machines such as AMD Zen 3 or Intel before
    Cascade Lake; also AVX-512 CPUs without VNNI): there PyTorch's FBGEMM multiplies uint8 x int8
    with ``vpmaddubsw``, which saturates each pair of adjacent products to int16, so PyTorch
    itself is not exact once a uint8 input of a quantized Linear / Conv2d / ConvTranspose2d
    exceeds 127 (possible for inputs beyond the calibrated range, or for activations quantized
    without ``reduce_range``). qkernels computes the exact sums, so it equals PyTorch wherever
    PyTorch is exact: activations in [0, 127], which PyTorch's default fbgemm / x86 qconfigs
    (``reduce_range=True``) give every calibrated value. PyTorch's channels-last average pooling
    works in vectors of 8 channels with AVX2 and 16 with AVX-512, and qkernels follows the
    machine's ``torch.backends.cpu.get_cpu_capability()``.

    Supported: every op of the op table (quantize_per_tensor, dequantize, quantized Conv2d /
    ConvReLU2d / Linear / LinearReLU with per-tensor or per-channel weights, ConvTranspose2d
    (per-tensor weights; per output channel under qnnpack; refused under engine x86, whose
    oneDNN path PyTorch takes is not reproduced), dynamic Linear,
    quantized add / add_relu (QNNPACK's integer add under engine "qnnpack"), mul / mul_relu,
    add / mul with a constant, ReLU, ReLU6 / Hardtanh, LeakyReLU, Hardswish, Hardsigmoid,
    Sigmoid (nn.Sigmoid / torch.sigmoid / quantized.sigmoid: a table of PyTorch's own op),
    BatchNorm2d / BNReLU2d (quantized batch_norm2d), max / average / adaptive average pooling
    (module and function; average pooling of a channels-last conv / BatchNorm output as
    PyTorch's NHWC kernel rounds it), mean, cat / quantized.cat, flatten, Dropout, Identity,
    torchvision's stochastic_depth in eval, nearest and bilinear interpolate / Upsample /
    UpsamplingBilinear2d, the shape ops on integers (size, view / reshape, transpose /
    permute, contiguous, chunk / split, squeeze / unsqueeze, getitem)) and float ops between
    dequantize and quantize. Anything else (bicubic interpolate, ConvTranspose3d...) raises
    NotImplementedError naming the module.

    Raises:
        NotImplementedError: an op without an integer implementation (the message names it).
        TypeError: a model torch.fx cannot trace.
    """
    engine = engine or torch.backends.quantized.engine
    if engine not in ("fbgemm", "x86", "qnnpack"):
        raise ValueError(f"engine must be fbgemm, x86 or qnnpack; got {engine!r}")
    check_threads(threads)
    ctx = O.QuantizedContext(engine)
    gm = _trace(qmodel.eval())
    values: Dict[fx.Node, Any] = {}     # node -> Value, or the constant of a get_attr node
    layers: List[Ly.Layer] = []
    inputs: List[str] = []
    output: Any = None

    def const(v: Any) -> Any:
        return v.item() if isinstance(v, torch.Tensor) and v.numel() == 1 else v

    for node in gm.graph.nodes:
        name = node.name
        if node.op == "placeholder":
            inputs.append(name)
            values[node] = O.Value(name, None)
            continue
        if node.op == "output":
            output = structured_output(fx.node.map_arg(node.args[0], lambda n: values[n]),
                                       lambda v: isinstance(v, O.Value), lambda v: v.name)
            continue
        if node.op == "get_attr":
            values[node] = const(functools.reduce(getattr, node.target.split("."), gm))   # builders and float ops see the constant itself
            continue
        args = fx.node.map_arg(node.args, lambda n: values[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: values[n])
        L = _layer(ctx, gm, node, args, kwargs)
        ctx.track_layout(L)
        layers.append(L)
        values[node] = O.Value(name, L.out)
    if output is None:
        raise TypeError("the traced model has no output")
    return IntegerModel(layers, inputs, output, preset=ctx.preset, reference=TorchReference(gm),
                        threads=threads, mode="static")


# ops that take float inputs themselves; any other op whose run-time inputs are all float runs in
# float (a float region between a dequantize and a quantize)
_FLOAT_INPUT_OPS = ("linear_dynamic", "quantize", "dequantize", "flatten", "identity")


def _layer(ctx: O.QuantizedContext, gm: fx.GraphModule, node: fx.Node, args: Any,
           kwargs: Dict[str, Any]) -> Ly.Layer:
    """The typed layer of one node of a PyTorch-quantized graph."""
    name = node.name
    ctx.node = node
    vals = _values(args) + _values(kwargs)
    all_float = bool(vals) and all(v.meta is None for v in vals)
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        spec = O.find_module(mod, quantized=True)
        if spec is not None and (not all_float or spec.name in _FLOAT_INPUT_OPS):
            return spec.from_quantized(ctx, name, mod, args, kwargs)
        if all_float:
            return O.float_layer(node, mod, args, kwargs, None)
        raise O.unsupported(f"module {node.target} ({type(mod).__module__}.{type(mod).__name__})")
    if node.target is operator.getitem:
        x, i = args     # an element of a quantized tensor or of a tuple of them keeps its qparams
        return Ly.GetItemLayer(name, (x.name,), x.meta, index=i)
    spec = O.find_function(node.target, node.op == "call_method", quantized=True)
    if spec is not None and (not all_float or spec.name in _FLOAT_INPUT_OPS):
        return spec.from_quantized(ctx, name, None, args, kwargs)
    if all_float:
        return O.float_layer(node, None, args, kwargs, None)
    raise O.unsupported(f"function {node.op} {getattr(node.target, '__name__', node.target)}")


def _values(a: Any) -> List[O.Value]:
    out: List[O.Value] = []

    def visit(v: Any) -> Any:
        if isinstance(v, O.Value):
            out.append(v)
        elif isinstance(v, (tuple, list)):
            for x in v:
                visit(x)
        elif isinstance(v, dict):
            for x in v.values():
                visit(x)
    visit(a)
    return out

