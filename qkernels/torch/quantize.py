"""quantize_model: calibrate a float PyTorch model and run it integer-exact on qkernels.

    from qkernels.torch import quantize_model, QuantConfig
    im = quantize_model(model, calib_batches)                 # W8A8, per-channel weights, fbgemm
    y_int = im(x)                                             # integers between layers
    y_fq = im.fake_quant(x); y_f = im.float_reference(x)
    report = im.compare(x)                                    # per layer SQNR / max error / cosine

The model is captured with ``torch.fx`` and BatchNorm is folded into the preceding convolution
(``fuse_fx``, eval mode); ReLU / ReLU6 after a convolution or linear layer are fused into its
output range. Every op then runs on qkernels: convolutions and linear layers with
``qconv2d`` / ``qlinear`` and the configured preset, the elementwise ops with integer arithmetic
(see ``qkernels.torch.convert``: add, ReLU / ReLU6 / Hardtanh, LeakyReLU, max / average /
adaptive average pooling, ``torch.cat`` with PyTorch's quantized arithmetic), LayerNorm with the
integer PTF LayerNorm (``qkernels.ptf_layernorm``). The fake-quant run uses the same parameters at
the same points in float, so the two agree to within a quantization step wherever the preset's
requantization rounds the same real value differently.

``QuantConfig(mode="dynamic")`` instead quantizes each conv / linear input per call (PyTorch's
``quantize_dynamic``, bit for bit with fbgemm for Linear), ``mode="weight_only"`` keeps float
activations.
"""
from __future__ import annotations

import copy
import math
import os
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np
import torch
from torch import fx

import qkernels as qk

from . import _runtime as rt
from .convert import (_AVG_POOL2D, _CAT, F32, QTensor, _clamp_bounds, _flatten,
                      conv2d_dynamic, dynamic_quantize_input, linear_dynamic, max_pool_out_size,
                      q_adaptive_avg_pool2d, q_add, q_avg_pool2d, q_cat, q_clamp, q_layernorm,
                      q_leaky_relu, q_max_pool2d)
from .observers import TorchHistogramObserver

__all__ = ["TensorConfig", "QuantConfig", "IntegerModel", "quantize_model"]

#: An integer handler for a module type (``quantize_model(..., handlers={Type: fn})``):
#: ``fn(module, x, scale, zero_point)`` gets the module, its quantized input (a ``QTensor``:
#: ``.q`` integers, ``.scale``, ``.zero_point``) and the calibrated parameters of its output, and
#: returns the output integers (the activation dtype).
Handler = Callable[[torch.nn.Module, QTensor, float, int], np.ndarray]

_OBSERVERS = {
    "minmax": qk.MinMaxObserver, "moving_average": qk.MovingAverageMinMaxObserver,
    "percentile": qk.PercentileObserver, "mse": qk.MSEObserver, "entropy": qk.EntropyObserver,
    "mode": qk.PowerOfTwoModeObserver, "histogram": TorchHistogramObserver,
}


@dataclass(frozen=True)
class TensorConfig:
    """How one kind of tensor is quantized.

    Attributes:
        bits: 2..16 (int8/uint8 storage up to 8 bits, int16/uint16 above; a bias config may
            use up to 32 bits, int32 storage).
        symmetric: symmetric (zero point 0) or affine.
        per_channel: one scale per output channel (weights) instead of per tensor.
        signed: signed integers (int8) or unsigned (uint8).
        power_of_two: None, "ceil" or "round" (scales snapped to powers of two).
        observer: minmax, moving_average, percentile, mse, entropy, histogram (PyTorch's
            ``HistogramObserver``) or mode (power-of-two mode).
    """

    bits: int = 8
    symmetric: bool = False
    per_channel: bool = False
    signed: bool = False
    power_of_two: Optional[str] = None
    observer: str = "minmax"

    def dtype(self) -> np.dtype:
        if self.bits <= 8:
            return np.dtype(np.int8 if self.signed else np.uint8)
        if self.bits <= 16:
            return np.dtype(np.int16 if self.signed else np.uint16)
        return np.dtype(np.int32)

    def qbits(self) -> Optional[int]:
        """``bits`` when narrower than the storage type (the ``bits=`` of the kernels), else None."""
        return self.bits if self.bits < self.dtype().itemsize * 8 else None

    def qrange(self) -> Tuple[int, int]:
        """The integer range [qmin, qmax] of this config."""
        return qk._checks.qrange(self.dtype(), bits=self.qbits())

    def observer_for(self, axis: Optional[int] = None) -> qk.Observer:
        if self.observer not in _OBSERVERS:
            raise ValueError(f"observer must be one of {', '.join(_OBSERVERS)}; got {self.observer!r}")
        kw: Dict[str, Any] = dict(dtype=self.dtype(), symmetric=self.symmetric,
                                  bits=self.bits if self.bits != self.dtype().itemsize * 8 else None,
                                  power_of_two=self.power_of_two)
        if self.observer in ("percentile", "mse", "entropy", "histogram"):
            if axis is not None:
                raise ValueError(f"the {self.observer} observer is per tensor")
            return _OBSERVERS[self.observer](**kw)
        if self.observer == "mode":
            kw["power_of_two"] = "ceil"
            kw["symmetric"] = True
        return _OBSERVERS[self.observer](axis=axis, **kw)


@dataclass(frozen=True)
class QuantConfig:
    """What quantize_model does (defaults: W8A8 static, per-channel symmetric int8 weights,
    affine uint8 activations, the fbgemm preset).

    Attributes:
        weight, activation: :class:`TensorConfig` for weights and for activations (inputs and
            outputs of every layer).
        input, output: :class:`TensorConfig` of the model's input and of the tensors it returns
            (None: ``activation``). ``output`` applies to conv / linear / LayerNorm / float-kept
            layers that produce a model output (others keep the activation storage type).
        bias: :class:`TensorConfig` of the integer bias (presets tflite, pow2, onnxruntime, which
            add an int32 bias with scale ``x_scale * w_scale``): ``bits`` (up to 32, signed)
            saturates it, as hardware with a narrower bias register does. None: 32 bits.
        preset: fbgemm, qnnpack, onnxruntime, tflite or pow2 (the arithmetic of conv/linear).
        mode: "static" (calibrated activations), "dynamic" (like
            ``torch.ao.quantization.quantize_dynamic``: each conv/linear quantizes its input per
            call from the runtime min / max, integer accumulators, float output; float between
            layers) or "weight_only" (float activations).
        layernorm: the integer LayerNorm method, "exact" or "sole" (SOLE's AILayerNorm); its input
            is PTF-quantized (FQ-ViT, ``qkernels.ptf_calibrate(method="fqvit")``).
        float_modules: layers kept in float, each named by its module path (``"head"`` also
            covers ``"head.0"``), its class name (``"GELU"``) or its graph node name (for
            functions, e.g. ``"sigmoid"``). In the integer run their input is dequantized, the
            float op runs, and its output is quantized with calibrated parameters (PyTorch's
            DeQuantStub / QuantStub pair).

    Dynamic mode with the default uint8 affine activations and the fbgemm preset is PyTorch's
    fbgemm ``quantized::linear_dynamic`` (reduce_range [0, 127], its ChooseQuantizationParams);
    with per-tensor weights (``per_channel=False``) it equals ``quantize_dynamic(model,
    {nn.Linear}, dtype=torch.qint8)`` bit for bit, with per-channel weights
    ``per_channel_dynamic_qconfig``. Other activation configs (bits, symmetric, power of two) use
    :func:`qkernels.choose_qparams` on the runtime range and have no PyTorch counterpart.
    """

    weight: TensorConfig = field(default_factory=lambda: TensorConfig(
        bits=8, symmetric=True, per_channel=True, signed=True))
    activation: TensorConfig = field(default_factory=TensorConfig)
    preset: str = "fbgemm"
    mode: str = "static"
    layernorm: str = "exact"
    float_modules: Tuple[str, ...] = ()
    input: Optional[TensorConfig] = None
    output: Optional[TensorConfig] = None
    bias: Optional[TensorConfig] = None

    @staticmethod
    def w8a8_pow2() -> "QuantConfig":
        """Power-of-two scales everywhere and the pow2 preset (shift-only hardware)."""
        return QuantConfig(weight=TensorConfig(bits=8, symmetric=True, per_channel=True, signed=True,
                                               power_of_two="ceil"),
                           activation=TensorConfig(bits=8, symmetric=True, signed=True,
                                                   power_of_two="ceil"),
                           preset="pow2")

    @staticmethod
    def w4a8() -> "QuantConfig":
        """4-bit per-channel symmetric weights, 8-bit activations."""
        return QuantConfig(weight=TensorConfig(bits=4, symmetric=True, per_channel=True, signed=True))

    @staticmethod
    def from_dict(d: Dict[str, Any]) -> "QuantConfig":
        """From a plain dict (e.g. a YAML file): {"weight": {...}, "activation": {...}, ...}."""
        base = QuantConfig()
        kw: Dict[str, Any] = {}
        for k in ("weight", "activation"):
            if k in d:
                kw[k] = replace(getattr(base, k), **d[k])
        for k in ("input", "output", "bias"):
            if d.get(k) is not None:
                base_kw = {"bits": 32, "symmetric": True, "signed": True} if k == "bias" else {}
                kw[k] = TensorConfig(**{**base_kw, **d[k]})
        for k in ("preset", "mode", "layernorm"):
            if k in d:
                kw[k] = d[k]
        if "float_modules" in d:
            kw["float_modules"] = tuple(str(m) for m in d["float_modules"] or ())
        unknown = set(d) - {"weight", "activation", "preset", "mode", "layernorm", "float_modules",
                            "input", "output", "bias"}
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(sorted(unknown))}")
        return replace(base, **kw)

    @staticmethod
    def from_yaml(path: str) -> "QuantConfig":
        import yaml

        with open(path) as f:
            return QuantConfig.from_dict(yaml.safe_load(f) or {})


# ---- graph preparation ------------------------------------------------------------------------
_COMPUTE = (torch.nn.Conv2d, torch.nn.Linear)
_FUSED_ACT = {torch.nn.ReLU: (0.0, None), torch.nn.ReLU6: (0.0, 6.0)}


def _fused_graph(model: torch.nn.Module) -> fx.GraphModule:
    from torch.ao.quantization.quantize_fx import fuse_fx

    model = copy.deepcopy(model).eval()
    try:
        gm = fuse_fx(model)
    except Exception as exc:
        raise TypeError(f"{type(model).__name__} could not be traced with torch.fx ({exc}); keep "
                        "the untraceable part out of the quantized region") from exc
    gm.eval()
    return gm


def _module_kind(mod: torch.nn.Module) -> Tuple[Optional[torch.nn.Module], Optional[Tuple]]:
    """(conv or linear, fused activation bounds) for a plain or fused (intrinsic) module."""
    import torch.ao.nn.intrinsic as nni

    if isinstance(mod, (nni.ConvReLU2d, nni.LinearReLU)):
        return mod[0], (0.0, None)
    if isinstance(mod, _COMPUTE):
        return mod, None
    return None, None


# ---- the quantized model -----------------------------------------------------------------------
@dataclass
class LayerReport:
    name: str
    op: str
    sqnr_db: float
    max_abs_err: float
    cosine: float
    steps_diff_vs_fake_quant: float
    frac_diff_vs_fake_quant: float


class IntegerModel:
    """A calibrated model that runs integer-exact on qkernels (see :func:`quantize_model`).

    ``model(x)`` runs the integer graph and returns the dequantized float output;
    ``fake_quant(x)`` runs float with the same quantization points; ``float_reference(x)`` runs the
    original float model; ``compare(x)`` reports per layer; ``accumulator_bounds()`` gives each
    conv/linear layer's worst-case int32 accumulator.

    The integer run is compiled on first use (:meth:`_compile`): one kernel per graph node, with
    every requantization parameter derived and checked once, run as a flat list of C calls.
    ``threads`` (constructor, attribute, or ``model(x, threads=...)``) caps the threads (default:
    the CPUs this process may use); results never depend on it.

    Example:
        >>> # im = quantize_model(net, calib); im.threads = 1; y = im(x)
    """

    def __init__(self, float_model: torch.nn.Module, gm: fx.GraphModule, config: QuantConfig,
                 qparams: Dict[str, Tuple[float, int]], layers: Dict[str, Dict[str, Any]],
                 layernorms: Optional[Dict[str, Any]] = None,
                 threads: Optional[int] = None, *, float_nodes: Iterable[str] = (),
                 handlers: Optional[Dict[type, Handler]] = None,
                 tensor_configs: Optional[Dict[str, TensorConfig]] = None) -> None:
        self.float_model = float_model
        self.graph_module = gm
        self.config = config
        self.qparams = qparams          # node name -> (scale, zero point) of its output
        self.layers = layers            # node name -> quantized weights, bias, ...
        self.layernorms: Dict[str, Any] = layernorms or {}  # node name -> qk.LayerNormParams
        self.float_nodes = frozenset(float_nodes)   # nodes run in float (config.float_modules)
        self.handlers: Dict[type, Handler] = dict(handlers or {})   # module type -> integer op
        # node name -> TensorConfig of its output where it is not config.activation (the model
        # input and outputs, QuantConfig.input / .output)
        self.tensor_configs: Dict[str, TensorConfig] = dict(tensor_configs or {})
        self.threads = rt.check_threads(threads)   # thread cap of the integer run (None: all CPUs)
        self._plan: Optional[rt.Plan] = None        # the compiled integer graph (first int run)

    def _tc(self, name: str) -> TensorConfig:
        """The TensorConfig of node ``name``'s output."""
        return self.tensor_configs.get(name, self.config.activation)

    def _quantize_as(self, v: Any, name: str) -> QTensor:
        """Float values quantized with node ``name``'s calibrated parameters and type."""
        s, z = self.qparams[name]
        tc = self._tc(name)
        return QTensor(qk.quantize(np.asarray(v, F32), F32(s), z, dtype=tc.dtype(),
                                   bits=tc.qbits(), flavor="torch"), s, z)

    def _bias_int(self, bias: np.ndarray, xs: Any, ws: Any) -> np.ndarray:
        """The integer bias of the presets that add one: scale x_scale * w_scale, saturated to
        ``config.bias.bits`` (default 32)."""
        b = self.config.bias
        return _int32_bias(bias, F32(xs), ws, 32 if b is None else b.bits)

    # -- execution ------------------------------------------------------------------------
    def _dynamic_input(self, x: np.ndarray) -> QTensor:
        """Dynamic mode: quantize a conv/linear input from its own min / max (see QuantConfig)."""
        act, cfg = self.config.activation, self.config
        if act == TensorConfig() and cfg.preset == "fbgemm":
            return dynamic_quantize_input(x, reduce_range=True)
        adt = act.dtype()
        bits = act.bits if act.bits < adt.itemsize * 8 else None
        x = np.asarray(x, F32)
        mn, mx = (F32(x.min()), F32(x.max())) if x.size else (F32(0), F32(0))
        p = qk.choose_qparams(mn, mx, dtype=adt, symmetric=act.symmetric,
                              power_of_two=act.power_of_two, bits=bits)
        s, z = float(np.asarray(p.scale).reshape(-1)[0]), int(np.asarray(p.zero_point).reshape(-1)[0])
        return QTensor(qk.quantize(x, F32(s), z, dtype=adt, bits=bits, flavor="torch"), s, z)

    def _dynamic(self, name: str, x: np.ndarray) -> np.ndarray:
        """Dynamic mode conv / linear: per-call input quantization, int32 accumulators, float out."""
        L = self.layers[name]
        relu = L["act"] is not None
        if L["kind"] == "conv":
            m = L["module"]
            y = conv2d_dynamic(x, L["packed"], L["w_scale"], 0, L["bias"], stride=m.stride,
                               padding=m.padding, dilation=m.dilation, groups=m.groups,
                               relu=relu, quantize_input=self._dynamic_input)
        else:
            y = linear_dynamic(x, L["packed"], L["w_scale"], 0, L["bias"], relu,
                               quantize_input=self._dynamic_input)
        if L["act"] is not None and L["act"][1] is not None:
            y = np.minimum(y, F32(L["act"][1]))
        return y

    def _run(self, x: Any, mode: str, trace: Optional[Dict[str, Any]] = None,
             raw: bool = False, threads: Optional[int] = None) -> np.ndarray:
        if mode == "int":
            return self._run_int(x, trace, raw, self.threads if threads is None else threads)
        gm = self.graph_module
        env: Dict[fx.Node, Any] = {}
        def arg(a: Any) -> Any:
            return fx.node.map_arg(a, lambda n: env[n])

        fq = self._fq_out

        q = self._quantize_as

        for node in gm.graph.nodes:
            if node.op == "placeholder":
                v = x.detach().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, F32)
                v = v.astype(F32)
                env[node] = (q(v, node.name) if mode == "int" else fq(v, node.name) if mode == "fq"
                             else v)
            elif node.op == "output":
                out = arg(node.args[0])
                return out.dequantize() if isinstance(out, QTensor) else out
            else:
                env[node] = self._step(node, arg(node.args), arg(node.kwargs), mode, q, fq)
            if trace is not None:
                v = env[node]
                trace[node.name] = v if raw or not isinstance(v, QTensor) else v.dequantize()
        raise RuntimeError("graph without output")

    # -- the integer run: a compiled plan (qkernels.torch._runtime) -----------------------------
    def _run_int(self, x: Any, trace: Optional[Dict[str, Any]], raw: bool,
                 threads: Optional[int]) -> np.ndarray:
        plan = self._plan if self._plan is not None else self._compile()
        steps: Optional[Dict[str, Any]] = {} if trace is not None else None
        out = plan.run((x,), threads, steps)
        if steps is not None:
            for name, v in steps.items():
                m = plan.metas.get(plan.names[name])
                if m is not None:
                    v = QTensor(v, m.scale, m.zero_point)
                    v = v if raw else v.dequantize()
                trace[name] = v
        if isinstance(plan.output, int):
            m = plan.metas.get(plan.output)
            return out if m is None else QTensor(out, m.scale, m.zero_point).dequantize()
        return out

    def _compile(self) -> rt.Plan:
        """Compile the integer graph once: every node becomes one kernel with its parameters
        derived and checked here (see :meth:`_int_kernel`); nodes without one run through
        :meth:`_step` (the interpreted path)."""
        slot: Dict[fx.Node, int] = {}
        metas: Dict[int, rt.QMeta] = {}
        steps: List[Tuple[rt.Kernel, Tuple[int, ...], int, str]] = []
        output: Any = None
        for node in self.graph_module.graph.nodes:
            if node.op == "output":
                out = node.args[0]
                if isinstance(out, fx.Node):
                    output = slot[out]
                else:
                    output = self._structured_output(out, slot, metas)
                continue
            if node.op == "placeholder":   # slot 0 holds the float input of the call
                tc = self._tc(node.name)
                meta: Optional[rt.QMeta] = rt.QMeta(*self.qparams[node.name], tc.dtype())
                kernel, ins = rt.quantize_kernel(meta, *tc.qrange()), [None]
            else:
                got = self._int_kernel(node, lambda n: metas.get(slot[n]))
                if got is None:
                    got = self._fallback_kernel(node, lambda n: metas.get(slot[n]))
                kernel, ins, meta = got
            slot[node] = len(slot) + 1
            if meta is not None:
                metas[slot[node]] = meta
            steps.append((kernel, tuple(0 if n is None else slot[n] for n in ins), slot[node],
                          node.name))
        if output is None:
            raise RuntimeError("graph without output")
        self._plan = rt.Plan(len(slot) + 1, (0,), output, steps, metas)
        return self._plan

    def _int_kernel(self, node: fx.Node, meta_of: Callable[[fx.Node], Optional[rt.QMeta]]
                    ) -> Optional[Tuple[rt.Kernel, List[fx.Node], Optional[rt.QMeta]]]:
        """The one place that maps a graph node to its integer kernel: (kernel, the nodes whose
        values it takes, the quantization of its output), or None to run the node through
        :meth:`_step`. Add new layer kinds here."""
        name = node.name
        act = self._tc(name).dtype()
        if name in self.float_nodes or self._handler(node) is not None:
            return None
        if node.op == "call_module":
            x = node.args[0]
            xm = meta_of(x) if isinstance(x, fx.Node) else None
            if name in self.layers:
                if xm is None:
                    return None
                return self._layer_kernel(name, xm), [x], rt.QMeta(*self.qparams[name], act)
            mod = self.graph_module.get_submodule(node.target)
            if isinstance(mod, (torch.nn.Dropout, torch.nn.Identity)):
                return rt.identity_kernel(), [x], xm
            if isinstance(mod, torch.nn.Flatten):
                return rt.flatten_kernel(mod.start_dim, mod.end_dim), [x], xm
            if xm is None:
                return None
            if isinstance(mod, torch.nn.ReLU6):
                return rt.clamp_kernel(*_clamp_bounds(xm, 0.0, 6.0)), [x], xm
            if isinstance(mod, torch.nn.ReLU):
                return rt.clamp_kernel(*_clamp_bounds(xm, 0.0, None)), [x], xm
            if isinstance(mod, torch.nn.Hardtanh):
                return rt.clamp_kernel(*_clamp_bounds(xm, float(mod.min_val), float(mod.max_val))), \
                    [x], xm
            if isinstance(mod, torch.nn.MaxPool2d):
                geo = (mod.kernel_size, mod.stride, mod.padding, mod.dilation, mod.ceil_mode)
                return rt.max_pool2d_kernel(*geo, lambda h, w: max_pool_out_size(h, w, *geo),
                                            lambda q: q_max_pool2d(QTensor(q, xm.scale, xm.zero_point),
                                                                   *geo).q), [x], xm
            if isinstance(mod, torch.nn.AdaptiveAvgPool2d):
                size = mod.output_size
                return rt.adaptive_avg_pool2d_kernel(size, lambda q: q_adaptive_avg_pool2d(
                    QTensor(q, xm.scale, xm.zero_point), size).q), [x], xm
            if isinstance(mod, torch.nn.LeakyReLU):
                s, z = self.qparams[name]
                slope = float(mod.negative_slope)
                return self._in_bits(name, rt.leaky_relu_kernel(xm, slope, s, z, lambda q: q_leaky_relu(
                    QTensor(q, xm.scale, xm.zero_point), slope, s, z).q)), [x], rt.QMeta(s, z, xm.dtype)
            return None
        if node.op != "call_function" or node.kwargs:
            return None
        if node.target in (torch.add, _operator_add()) and len(node.args) == 2 and \
                all(isinstance(a, fx.Node) and meta_of(a) is not None for a in node.args):
            a, b = node.args
            am, bm = meta_of(a), meta_of(b)
            s, z = self.qparams[name]
            return self._in_bits(name, rt.add_kernel(am, bm, s, z, False, lambda qa, qb: q_add(
                QTensor(qa, am.scale, am.zero_point), QTensor(qb, bm.scale, bm.zero_point), s, z).q)), \
                [a, b], rt.QMeta(s, z, am.dtype)
        if node.target is torch.flatten and isinstance(node.args[0], fx.Node):
            def flat(x: fx.Node, start_dim: int = 0, end_dim: int = -1) -> Any:
                return rt.flatten_kernel(start_dim, end_dim), [x], meta_of(x)
            return flat(*node.args)
        if node.target in (torch.nn.functional.relu, torch.relu) and len(node.args) == 1 and \
                meta_of(node.args[0]) is not None:
            xm = meta_of(node.args[0])
            return rt.clamp_kernel(*_clamp_bounds(xm, 0.0, None)), [node.args[0]], xm
        return None

    def _in_bits(self, name: str, kernel: rt.Kernel) -> rt.Kernel:
        """``kernel`` with its output clamped to node ``name``'s bit range when that is narrower
        than the storage type (4-bit activations in int8: [-8, 7]); the quantized add and
        LeakyReLU saturate to the storage type only."""
        tc = self._tc(name)
        if tc.qbits() is None:
            return kernel
        lo, hi = tc.qrange()
        return rt.per_sample(lambda t, *xs: np.clip(kernel(t, *xs), lo, hi))

    def _clip_bits(self, name: str, x: QTensor) -> QTensor:
        """:meth:`_in_bits` for the interpreted path."""
        tc = self._tc(name)
        return x if tc.qbits() is None else QTensor(np.clip(x.q, *tc.qrange()), x.scale, x.zero_point)

    def _layer_kernel(self, name: str, xm: rt.QMeta) -> rt.Kernel:
        """A conv / linear layer with its requantization fixed (x quantized as ``xm``)."""
        L = self.layers[name]
        cfg = self.config
        s, z = self.qparams[name]
        act_min, act_max = self._act_range(name)
        bias = L["bias"]
        if bias is not None and cfg.preset in ("tflite", "pow2", "onnxruntime"):
            bias = self._bias_int(bias, xm.scale, L["w_scale"])
        kw = dict(out_dtype=self._tc(name).dtype(), act_min=act_min, act_max=act_max)
        if L["kind"] == "conv":
            m = L["module"]
            return rt.conv2d_kernel(L["packed"], bias, m.stride, m.padding, m.dilation, xm,
                                    L["w_scale"], s, z, cfg.preset, w=L["w_int"], **kw)
        return rt.linear_kernel(L["packed"], bias, xm, L["w_scale"], s, z, cfg.preset, **kw)

    def _fallback_kernel(self, node: fx.Node, meta_of: Callable[[fx.Node], Optional[rt.QMeta]]
                         ) -> Tuple[rt.Kernel, List[fx.Node], Optional[rt.QMeta]]:
        """A node without a compiled kernel: :meth:`_step` on QTensors rebuilt from the slots."""
        ins = list(node.all_input_nodes)
        in_metas = [meta_of(n) for n in ins]
        if node.name in self.qparams:
            meta: Optional[rt.QMeta] = rt.QMeta(*self.qparams[node.name], self._tc(node.name).dtype())
        else:
            known = [m for m in in_metas if m is not None]
            meta = known[0] if len(known) == 1 else None

        def kernel(t: int, *vals: Any) -> Any:
            env = {n: (v if m is None else QTensor(v, m.scale, m.zero_point))
                   for n, v, m in zip(ins, vals, in_metas)}
            args = fx.node.map_arg(node.args, lambda n: env[n])
            kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
            r = self._step(node, args, kwargs, "int", None, self._fq_out)
            if not isinstance(r, QTensor):
                if meta is not None:
                    raise RuntimeError(f"{node.name}: expected a quantized result")
                return r
            if meta is None or (float(r.scale), int(r.zero_point), r.q.dtype) != tuple(meta):
                raise RuntimeError(f"{node.name}: its quantization parameters are not the ones "
                                   f"the graph was compiled with")
            return r.q
        return kernel, ins, meta

    def _structured_output(self, out: Any, slot: Dict[fx.Node, int],
                           metas: Dict[int, rt.QMeta]) -> Callable[[List[Any]], Any]:
        def build(env: List[Any]) -> Any:
            def get(n: fx.Node) -> Any:
                m = metas.get(slot[n])
                v = env[slot[n]]
                return v if m is None else QTensor(v, m.scale, m.zero_point).dequantize()
            return fx.node.map_arg(out, get)
        return build

    def _step(self, node: fx.Node, args: Tuple, kwargs: Dict, mode: str,
              q: Callable, fq: Callable) -> Any:
        gm = self.graph_module
        name = node.name
        if name in self.float_nodes or self._handler(node) is not None:
            return self._float_or_handler(node, args, kwargs, mode, fq)
        if node.op == "call_module":
            mod = gm.get_submodule(node.target)
            if name in self.layers:
                return self._compute(name, args[0], mode)
            return self._elementwise(mod, name, args, mode, fq)
        if node.op == "call_function" and node.target in (torch.add, _operator_add()):
            a, b = args[0], args[1]
            if mode == "int":
                s, z = self.qparams[name]
                return self._clip_bits(name, q_add(a, b, s, z))
            return fq(np.asarray(a) + np.asarray(b), name) if mode == "fq" else a + b
        if node.op == "call_function" and node.target is torch.flatten:
            def flat(x: Any, start_dim: int = 0, end_dim: int = -1) -> Any:
                return _flatten(x, start_dim, end_dim)
            return flat(*args, **kwargs)
        if node.op == "call_function" and node.target in (torch.nn.functional.relu, torch.relu):
            return q_clamp(args[0], 0.0, None) if mode == "int" else np.maximum(args[0], F32(0))
        if node.op == "call_function" and node.target in _CAT:
            return self._cat(name, args, kwargs, mode, fq)
        if node.op == "call_function" and node.target in _AVG_POOL2D:
            return self._avg_pool2d(name, _avg_pool2d_args(*args, **kwargs), mode, fq)
        raise _no_integer_op(f"{node.op} {getattr(node.target, '__name__', node.target)} ({name})",
                             name)

    def _handler(self, node: fx.Node) -> Optional[Handler]:
        if node.op != "call_module" or not self.handlers:
            return None
        return self.handlers.get(type(self.graph_module.get_submodule(node.target)))

    def _float_or_handler(self, node: fx.Node, args: Tuple, kwargs: Dict, mode: str,
                          fq: Callable) -> Any:
        """A node kept in float (``float_modules``) or with a user handler. Int mode: the
        handler gets the integer input (a QTensor) and the output's calibrated (scale, zero
        point) and returns the output integers; a float node dequantizes its inputs, runs the
        float op and quantizes the result with those parameters. Other modes: the float op (then
        fake quantization in "fq")."""
        name = node.name
        handler = self._handler(node)
        if mode == "int" and handler is not None:
            s, z = self.qparams[name]
            y = np.asarray(handler(self.graph_module.get_submodule(node.target), args[0], s, z))
            dt = self._tc(name).dtype()
            if y.dtype != dt:
                raise TypeError(f"the handler of {name} returned {y.dtype} integers; expected {dt}")
            return QTensor(y, s, z)

        def to_torch(v: Any) -> Any:
            if isinstance(v, QTensor):
                v = v.dequantize()
            return torch.from_numpy(np.ascontiguousarray(v, F32)) if isinstance(v, np.ndarray) else v
        targs = tuple(to_torch(v) for v in args)
        tkwargs = {k: to_torch(v) for k, v in kwargs.items()}
        with torch.no_grad():
            if node.op == "call_module":
                r = self.graph_module.get_submodule(node.target)(*targs, **tkwargs)
            elif node.op == "call_method":
                r = getattr(targs[0], node.target)(*targs[1:], **tkwargs)
            else:
                r = node.target(*targs, **tkwargs)
        y = r.numpy() if isinstance(r, torch.Tensor) else np.asarray(r, F32)
        if name not in self.qparams or mode in ("float", "wo", "dyn"):
            return y
        if mode == "fq":
            return fq(y, name)
        return self._quantize_as(y, name)

    def _cat(self, name: str, args: Tuple, kwargs: Dict, mode: str, fq: Callable) -> Any:
        """torch.cat: int mode requantizes every input to the output's parameters (q_cat)."""
        xs = list(args[0])
        dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
        if mode == "int":
            s, z = self.qparams[name]
            return q_cat(xs, dim, s, z, self._tc(name).qbits())
        y = np.concatenate([np.asarray(v, F32) for v in xs], axis=dim)
        return fq(y, name) if mode == "fq" else y

    def _avg_pool2d(self, name: str, a: Tuple, mode: str, fq: Callable) -> Any:
        """AvgPool2d / F.avg_pool2d; a = (x, kernel, stride, padding, ceil_mode,
        count_include_pad, divisor_override). Int mode: q_avg_pool2d, qparams kept."""
        if mode == "int":
            return q_avg_pool2d(*a)
        with torch.no_grad():
            y = torch.nn.functional.avg_pool2d(torch.from_numpy(np.ascontiguousarray(a[0], F32)),
                                               *a[1:]).numpy()
        return fq(y, name) if mode == "fq" else y

    def _layernorm(self, mod: torch.nn.Module, name: str, x: Any, mode: str, fq: Callable) -> Any:
        """LayerNorm: int mode runs qkernels' integer LayerNorm on the PTF-quantized input
        (q_layernorm); fake quant PTF-fake-quantizes the input, runs the float LayerNorm and
        fake-quantizes the output."""
        ln = self.layernorms[name]
        if mode == "int":
            tc = self._tc(name)
            y = q_layernorm(x, ln, tc.dtype(), tc.qbits())[0]
            s, z = self.qparams[name]   # the same numbers (ln.out_scale is float32(s))
            return QTensor(y.q, s, z)
        xf = np.ascontiguousarray(x, F32)
        if mode == "fq":
            xf = ln.ptf.dequantize(ln.ptf.quantize(xf))
        with torch.no_grad():
            y = mod(torch.from_numpy(xf)).numpy()
        return fq(y, name) if mode == "fq" else y

    def _compute(self, name: str, x: Any, mode: str) -> Any:
        L = self.layers[name]
        cfg = self.config
        if mode == "dyn":
            return self._dynamic(name, x)
        if mode == "fq" and cfg.mode == "dynamic":  # fake-quantize the input as the call would
            x = self._dynamic_input(x).dequantize()
        if mode == "int":
            s, z = self.qparams[name]
            adt = self._tc(name).dtype()
            act_min, act_max = self._act_range(name)
            kw = dict(x_scale=F32(x.scale), x_zero_point=x.zero_point, w_scale=L["w_scale"],
                      w_zero_point=0, out_scale=F32(s), out_zero_point=z, preset=cfg.preset,
                      out_dtype=adt, act_min=act_min, act_max=act_max)
            bias = L["bias"]
            if bias is not None and cfg.preset in ("tflite", "pow2", "onnxruntime"):
                bias = self._bias_int(bias, x.scale, L["w_scale"])
            if L["kind"] == "conv":
                m = L["module"]
                y = qk.qconv2d(x.q, L["packed"], bias, stride=m.stride, padding=m.padding,
                               dilation=m.dilation, groups=m.groups, **kw)
            else:
                y = qk.qlinear(x.q, L["packed"], bias, **kw)
            return QTensor(y, s, z)
        # float activations: the fused module with quantized-dequantized weights ("fq": fake
        # quant, "wo": weight-only quantization) or the original weights ("float")
        t = torch.from_numpy(np.ascontiguousarray(x, F32))
        with torch.no_grad():
            y = (L["fq_module"] if mode in ("fq", "wo") else L["fused"])(t).numpy()
        return self._fq_out(y, name) if mode == "fq" else y

    def _fq_out(self, y: np.ndarray, name: str) -> np.ndarray:
        """Fake-quantize y with the quantization parameters of node `name`."""
        if name not in self.qparams:  # dynamic mode: no calibrated activation parameters
            return np.asarray(y, F32)
        s, z = self.qparams[name]
        lo, hi = self._tc(name).qrange()
        return qk.fake_quantize(np.asarray(y, F32), F32(s), z, lo, hi)

    def _elementwise(self, mod: torch.nn.Module, name: str, args: Tuple, mode: str,
                     fq: Callable) -> Any:
        x = args[0]
        if isinstance(mod, (torch.nn.Dropout, torch.nn.Identity)):
            return x
        if isinstance(mod, torch.nn.Flatten):
            return _flatten(x, mod.start_dim, mod.end_dim)
        if isinstance(mod, torch.nn.LayerNorm) and name in self.layernorms:
            return self._layernorm(mod, name, x, mode, fq)
        if isinstance(mod, torch.nn.AvgPool2d):
            return self._avg_pool2d(name, (x, mod.kernel_size, mod.stride, mod.padding, mod.ceil_mode,
                                           mod.count_include_pad, mod.divisor_override), mode, fq)
        if mode != "int":
            with torch.no_grad():
                y = mod(torch.from_numpy(np.ascontiguousarray(x, F32))).numpy()
            if mode == "fq" and name in self.qparams:
                y = fq(y, name)
            return y
        if isinstance(mod, torch.nn.ReLU6):
            return q_clamp(x, 0.0, 6.0)
        if isinstance(mod, torch.nn.ReLU):
            return q_clamp(x, 0.0, None)
        if isinstance(mod, torch.nn.Hardtanh):
            return q_clamp(x, float(mod.min_val), float(mod.max_val))
        if isinstance(mod, torch.nn.MaxPool2d):
            return q_max_pool2d(x, mod.kernel_size, mod.stride, mod.padding, mod.dilation,
                                mod.ceil_mode)
        if isinstance(mod, torch.nn.AdaptiveAvgPool2d):
            return q_adaptive_avg_pool2d(x, mod.output_size)
        if isinstance(mod, torch.nn.LeakyReLU):
            s, z = self.qparams[name]
            return self._clip_bits(name, q_leaky_relu(x, float(mod.negative_slope), s, z))
        raise _no_integer_op(f"module {name} ({type(mod).__name__})", name, type(mod).__name__)

    # -- public API -------------------------------------------------------------------------
    def __call__(self, x: Any, *, threads: Optional[int] = None) -> np.ndarray:
        """Integer-exact run on qkernels; returns the dequantized float32 output.

        ``threads`` caps the worker threads of each conv / linear layer for this call (default:
        the ``threads`` attribute; None there means the CPUs this process may use; small layers
        use fewer). Results never depend on it.
        """
        if self.config.mode == "weight_only":
            return self._run(x, "wo")
        if self.config.mode == "dynamic":
            return self._run(x, "dyn")
        return self._run(x, "int", threads=rt.check_threads(self.threads if threads is None else threads))

    def fake_quant(self, x: Any) -> np.ndarray:
        """Float run with fake quantization at the same points (weights and activations)."""
        return self._run(x, "fq")

    def float_reference(self, x: Any) -> np.ndarray:
        """The original float model."""
        with torch.no_grad():
            t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x, F32))
            return self.float_model(t).numpy()

    def compare(self, x: Any) -> List[LayerReport]:
        """Per quantized node: the integer-exact run against the float model (SQNR, max abs error,
        cosine similarity: the accumulated effect of quantization up to that layer), and against
        the fake-quant version of the same op fed with the integer run's own inputs (how many
        quantization steps apart the two roundings land, and on what fraction of elements).

        Integer and fake-quant differ only where the exact value sits on (or within float
        rounding of) a half step: the integer kernels round the exact rational value, float
        fake-quant rounds a float approximation of it. Average pooling of integers lands exactly on
        half steps often (sum / 4), so it shows the largest fraction; with the pow2 preset the
        requantizing shift rounds exact ties half-up where fake quant rounds half-to-even."""
        ti: Dict[str, Any] = {}
        tf: Dict[str, Any] = {}
        dynamic = self.config.mode == "dynamic"
        self._run(x, "dyn" if dynamic else "int", ti)
        self._run(x, "float", tf)
        out: List[LayerReport] = []
        gm = self.graph_module
        for node in gm.graph.nodes:
            n = node.name
            if (n not in self.qparams and not (dynamic and n in self.layers)) or \
                    node.op in ("placeholder", "output"):
                continue
            args = fx.node.map_arg(node.args, lambda m: ti[m.name])
            kwargs = fx.node.map_arg(node.kwargs, lambda m: ti[m.name])
            local = np.asarray(self._step(node, args, kwargs, "fq", None, self._fq_out), np.float64)
            a = np.asarray(ti[n], np.float64)
            f = np.asarray(tf[n], np.float64)
            err = a - f
            sq = float(np.sum(f ** 2))
            sqnr = float("inf") if not np.any(err) else 10 * math.log10(max(sq, 1e-30) / np.sum(err ** 2))
            cos = float(np.dot(a.ravel(), f.ravel()) / max(np.linalg.norm(a) * np.linalg.norm(f), 1e-30))
            if n in self.qparams:
                unit = self.qparams[n][0]
            else:  # dynamic: in accumulator steps (x_scale * w_scale of this call)
                unit = self._dynamic_input(ti[node.args[0].name]).scale * float(
                    np.max(self.layers[n]["w_scale"]))
            steps = np.rint(np.abs(a - local) / unit)  # whole steps
            op = node.target if node.op != "call_module" else type(gm.get_submodule(node.target)).__name__
            out.append(LayerReport(n, str(getattr(op, "__name__", op)), sqnr, float(np.abs(err).max()),
                                   cos, float(steps.max()), float(np.mean(steps > 0.5))))
        return out

    def export(self, out_dir: str, x: Any, labels: Any = None) -> List[str]:
        """Write every integer of the model for C / RTL test benches; returns the paths written.

        ``out_dir/layers/<layer>/``: ``weights.txt`` (int8, OIHW or (N, K)), ``w_scale.txt``,
        ``a2.txt`` (sum of the weights per output channel), the requantization the C epilogue
        takes (``requant_scale.txt`` and ``float_bias.txt`` for the float-scale presets,
        ``multiplier.txt`` / ``shift.txt`` for fixed point and shifts, ``bias.txt`` int32),
        ``params.txt`` (scheme, zero points, clamping range, geometry), and the golden
        ``input.txt`` / ``output.txt`` integers of this layer for the sample ``x``.
        ``out_dir/model.npz`` holds all of it, ``out_dir/model.h`` as C arrays, and
        ``out_dir/report.json`` the per-tensor and per-layer parameters (SPEC section 8), with
        the float / fake-quant / integer accuracies when ``labels`` are given. Writes are atomic.
        """
        import json

        from .. import io as qio
        from ..linear import _epilogue

        raw: Dict[str, Any] = {}
        self._run(x, "dyn" if self.config.mode == "dynamic" else "int", raw, raw=True)
        written: List[str] = []

        def put(path: str, text: str) -> None:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            qio.atomic_write_text(path, text)
            written.append(path)

        cfg = self.config
        bounds = self.accumulator_bounds()
        npz: Dict[str, np.ndarray] = {}
        header: Dict[str, np.ndarray] = {}
        layers_json = {}
        for name, L in self.layers.items():
            if cfg.mode == "dynamic":
                layers_json[name] = self._export_dynamic_layer(name, raw, out_dir, put, npz, header,
                                                               bounds[name])
                continue
            xin = raw[L["input"]]
            yout = raw[name]
            xs, xz = self.qparams[L["input"]]
            os_, oz = self.qparams[name]
            w = L["w_int"]
            n = w.shape[0]
            bias = L["bias"]
            if bias is not None and cfg.preset in ("tflite", "pow2", "onnxruntime"):
                bias = self._bias_int(bias, xs, L["w_scale"])
            e = _epilogue(cfg.preset, n, np.ndim(L["w_scale"]) > 0, F32(xs), L["w_scale"], F32(os_),
                          bias, None, None, None, "half_up")
            a2 = w.reshape(n, -1).astype(np.int64).sum(axis=1).astype(np.int32)
            d = os.path.join(out_dir, "layers", name)
            arrays = {"weights": w, "w_scale": np.broadcast_to(L["w_scale"], (n,)).astype(F32), "a2": a2,
                      "input": xin.q, "output": yout.q}
            for key, val in (("requant_scale", e.scale), ("float_bias", e.fbias), ("multiplier", e.mult),
                             ("shift", e.shift), ("bias", e.bias)):
                if val is not None:
                    arrays[key] = np.asarray(val)
            for key, val in arrays.items():
                put(os.path.join(d, f"{key}.txt"), qio.format_array(val, f"{name} {key}"))
                npz[f"{name}/{key}"] = val
                if key not in ("input", "output"):
                    header[f"{name}_{key}"] = val
            m = L["module"]
            act_min, act_max = self._act_range(name)
            params = {"kind": L["kind"], "preset": cfg.preset, "scheme": int(e.scheme),
                      "x_scale": float(xs), "x_zero_point": int(xz), "out_scale": float(os_),
                      "out_zero_point": int(oz), "act_min": act_min, "act_max": act_max,
                      "x_dtype": np.dtype(xin.q.dtype).name, "input_shape": list(xin.q.shape),
                      "output_shape": list(yout.q.shape), "weight_shape": list(w.shape)}
            if L["kind"] == "conv":
                params.update(stride=list(m.stride), padding=list(m.padding), dilation=list(m.dilation),
                              groups=int(m.groups))
            put(os.path.join(d, "params.txt"), qio.format_params(params))
            real = (np.float64(xs) * np.asarray(L["w_scale"], np.float64) / np.float64(os_)).reshape(-1)
            m0, sh = qk.quantize_multiplier(real)
            layers_json[name] = dict(params, M0=np.atleast_1d(m0).tolist(), shift=np.atleast_1d(sh).tolist(),
                                     a2=a2.tolist(), w_scale=_tensor_json(L["w_scale"], 0, cfg.weight),
                                     accumulator_bound=bounds[name])
        for name in self.layernorms:
            layers_json[name] = self._export_layernorm(name, raw, out_dir, put, npz, header)
        if cfg.mode == "static":
            layers_json.update(self._export_pool_cat(raw, out_dir, put, npz))
        tensors = {n: _tensor_json(np.float32(s), z, self._tc(n)) for n, (s, z) in self.qparams.items()}
        report: Dict[str, Any] = {"preset": cfg.preset, "mode": cfg.mode,
                                  "weight": vars(cfg.weight) if hasattr(cfg.weight, "__dict__") else str(cfg.weight),
                                  "activation": vars(cfg.activation) if hasattr(cfg.activation, "__dict__") else str(cfg.activation),
                                  **{k: vars(getattr(cfg, k)) for k in ("input", "output", "bias")
                                     if getattr(cfg, k) is not None},
                                  "tensors": tensors, "layers": layers_json}
        if labels is not None:
            lab = np.asarray(labels)
            report["accuracy"] = {k: float(np.mean(np.asarray(f(x)).argmax(1) == lab))
                                  for k, f in (("float", self.float_reference), ("fake_quant", self.fake_quant),
                                               ("integer", self.__call__))}
        put(os.path.join(out_dir, "report.json"), json.dumps(report, indent=1, default=_json_default) + "\n")
        path = os.path.join(out_dir, "model.npz")
        os.makedirs(out_dir, exist_ok=True)
        qio.atomic_savez(path, **npz)
        written.append(path)
        put(os.path.join(out_dir, "model.h"), qio.format_c_arrays(
            {re.sub(r"\W", "_", k): v for k, v in header.items()}, "QK_MODEL_H"))
        return written

    def _export_dynamic_layer(self, name: str, raw: Dict[str, Any], out_dir: str, put: Callable,
                              npz: Dict[str, np.ndarray], header: Dict[str, np.ndarray],
                              bound: int) -> Dict[str, Any]:
        """export() of one dynamic-mode layer: weights, w_scale, a2, float bias, and for the sample
        its float input, the per-call quantized input (x_q, with x_scale / x_zero_point in
        params.txt), the int32 accumulators and the float output."""
        from .. import io as qio

        L = self.layers[name]
        xf = np.asarray(raw[L["input"]], F32)
        xq = self._dynamic_input(xf)
        w = L["w_int"]
        n = w.shape[0]
        m = L["module"]
        if L["kind"] == "conv":
            acc = qk.conv2d_int32(xq.q, L["packed"], stride=m.stride, padding=m.padding,
                                  dilation=m.dilation, groups=m.groups, x_zero_point=xq.zero_point)
        else:
            acc = qk.linear_int32(xq.q, L["packed"], x_zero_point=xq.zero_point)
        arrays = {"weights": w, "w_scale": np.broadcast_to(L["w_scale"], (n,)).astype(F32),
                  "a2": w.reshape(n, -1).astype(np.int64).sum(axis=1).astype(np.int32),
                  "float_bias": np.zeros(n, F32) if L["bias"] is None else L["bias"],
                  "input": xf, "x_q": xq.q, "accumulator": acc, "output": np.asarray(raw[name], F32)}
        d = os.path.join(out_dir, "layers", name)
        for key, val in arrays.items():
            put(os.path.join(d, f"{key}.txt"), qio.format_array(val, f"{name} {key}"))
            npz[f"{name}/{key}"] = val
            if key in ("weights", "w_scale", "a2", "float_bias"):
                header[f"{name}_{key}"] = val
        params = {"kind": L["kind"], "mode": "dynamic", "preset": self.config.preset,
                  "x_scale": float(xq.scale), "x_zero_point": int(xq.zero_point),
                  "x_dtype": np.dtype(xq.q.dtype).name, "relu": L["act"] is not None,
                  "input_shape": list(xf.shape), "output_shape": list(acc.shape),
                  "weight_shape": list(w.shape),
                  "output": "fmaf(accumulator, fl(x_scale * w_scale[c]), float_bias[c])"}
        if L["kind"] == "conv":
            params.update(stride=list(m.stride), padding=list(m.padding), dilation=list(m.dilation),
                          groups=int(m.groups))
        put(os.path.join(d, "params.txt"), qio.format_params(params))
        return dict(params, w_scale=_tensor_json(L["w_scale"], 0, self.config.weight),
                    accumulator_bound=bound)

    def _export_layernorm(self, name: str, raw: Dict[str, Any], out_dir: str, put: Callable,
                          npz: Dict[str, np.ndarray], header: Dict[str, np.ndarray]) -> Dict[str, Any]:
        """export() of one integer LayerNorm: the PTF input parameters, the prepared integer
        parameters the C kernel reads (qk_layernorm_prepare gives the same from gamma / beta), the
        golden PTF uint8 input and int8 output of the sample."""
        from .. import io as qio

        ln = self.layernorms[name]
        node = next(n for n in self.graph_module.graph.nodes if n.name == name)
        y, q_ptf = q_layernorm(raw[node.args[0].name], ln)
        mod = self.graph_module.get_submodule(node.target)
        c = ln.channels
        gamma = (mod.weight.detach().numpy() if mod.weight is not None else np.ones(c)).astype(F32)
        beta = (mod.bias.detach().numpy() if mod.bias is not None else np.zeros(c)).astype(F32)
        arrays = {"alpha": np.asarray(ln.ptf.alpha, np.int32), "gamma": gamma, "beta": beta,
                  "gamma_int": ln.gamma_int, "beta_int": ln.beta_int, "lut": ln.lut,
                  "input": q_ptf, "output": y.q}
        d = os.path.join(out_dir, "layers", name)
        for key, val in arrays.items():
            put(os.path.join(d, f"{key}.txt"), qio.format_array(val, f"{name} {key}"))
            npz[f"{name}/{key}"] = np.asarray(val)
            if key not in ("input", "output"):
                header[f"{name}_{key}"] = np.asarray(val)
        params = {"kind": "layernorm", "method": ln.method, "rounding": ln.rounding or "none",
                  "ptf_scale": float(ln.ptf.scale), "ptf_zero_point": int(ln.ptf.zero_point),
                  "K": int(ln.ptf.K), "eps": float(ln.eps), "out_scale": float(ln.out_scale),
                  "out_zero_point": int(ln.out_zero_point), "shift": int(ln.shift),
                  "eps_term": int(ln.eps_term), "gamma_multiplier": int(ln.gamma_multiplier),
                  "beta_multiplier": int(ln.beta_multiplier), "channels": c,
                  "input_shape": list(q_ptf.shape)}
        put(os.path.join(d, "params.txt"), qio.format_params(params))
        return params

    def _export_pool_cat(self, raw: Dict[str, Any], out_dir: str, put: Callable,
                         npz: Dict[str, np.ndarray]) -> Dict[str, Any]:
        """export() of average pooling and concat nodes: params.txt (geometry, or the dim and each
        input's scale / zero point) and the golden integers (input.txt or input<i>.txt,
        output.txt)."""
        from .. import io as qio

        gm = self.graph_module
        out: Dict[str, Any] = {}
        for node in gm.graph.nodes:
            mod = gm.get_submodule(node.target) if node.op == "call_module" else None
            if isinstance(mod, torch.nn.AvgPool2d):
                a = (node.args[0], mod.kernel_size, mod.stride, mod.padding, mod.ceil_mode,
                     mod.count_include_pad, mod.divisor_override)
            elif node.op == "call_function" and node.target in _AVG_POOL2D:
                a = _avg_pool2d_args(*node.args, **node.kwargs)
            elif node.op == "call_function" and node.target in _CAT:
                a = None
            else:
                continue
            if not isinstance(raw.get(node.name), QTensor):
                continue
            y = raw[node.name]
            if a is not None:
                ins = [a[0]]
                params: Dict[str, Any] = {
                    "kind": "avg_pool2d", "kernel": list(np.broadcast_to(a[1], 2)),
                    "stride": list(np.broadcast_to(a[1] if a[2] in (None, []) else a[2], 2)),
                    "padding": list(np.broadcast_to(a[3], 2)), "ceil_mode": bool(a[4]),
                    "count_include_pad": bool(a[5]),
                    "divisor_override": 0 if a[6] is None else int(a[6])}
            else:
                ins = list(node.args[0])
                params = {"kind": "cat", "dim": int(node.args[1] if len(node.args) > 1
                                                    else node.kwargs.get("dim", 0))}
                for i, n in enumerate(ins):
                    params[f"input{i}_scale"] = float(raw[n.name].scale)
                    params[f"input{i}_zero_point"] = int(raw[n.name].zero_point)
            params.update(out_scale=float(y.scale), out_zero_point=int(y.zero_point),
                          output_shape=list(y.q.shape))
            d = os.path.join(out_dir, "layers", node.name)
            arrays = {("input" if len(ins) == 1 else f"input{i}"): raw[n.name].q
                      for i, n in enumerate(ins)}
            arrays["output"] = y.q
            for key, val in arrays.items():
                put(os.path.join(d, f"{key}.txt"), qio.format_array(val, f"{node.name} {key}"))
                npz[f"{node.name}/{key}"] = val
            put(os.path.join(d, "params.txt"), qio.format_params(params))
            out[node.name] = params
        return out

    def _act_range(self, name: str) -> Tuple[int, int]:
        """The output clamping range of a conv/linear layer (fused ReLU / ReLU6 included)."""
        adt = self._tc(name).dtype()
        lo, hi = self._tc(name).qrange()
        L = self.layers[name]
        s, z = self.qparams[name]
        if L["act"] is not None:
            amin, amax = L["act"]
            lo = max(lo, int(z))
            if amax is not None:
                hi = min(hi, int(qk.quantize(np.float32(amax), F32(s), z, dtype=adt, flavor="torch")))
        return lo, hi

    def accumulator_bounds(self) -> Dict[str, int]:
        """Worst-case |int32 accumulator| per conv/linear layer: K * max|x - zp| * max|w| + |bias|."""
        act = self.config.activation
        lo, hi = qk._checks.qrange(act.dtype(), bits=act.bits if act.bits < act.dtype().itemsize * 8 else None)
        res = {}
        if self.config.mode == "dynamic" and act == TensorConfig() and self.config.preset == "fbgemm":
            lo, hi = 0, 127  # fbgemm's reduce_range
        for n, L in self.layers.items():
            w = L["w_int"].astype(np.int64)
            k = int(np.prod(w.shape[1:]))
            if L["input"] in self.qparams:
                xin = self.qparams[L["input"]][1]
                ilo, ihi = self._tc(L["input"]).qrange()
                xmax = max(abs(ihi - xin), abs(ilo - xin))
            else:  # dynamic: the zero point is chosen per call within [lo, hi]
                xmax = hi - lo
            res[n] = int(k * xmax * np.abs(w).max())
        return res


def _tensor_json(scale: Any, zero_point: Any, tc: "TensorConfig") -> Dict[str, Any]:
    """SPEC section 8: scale, zero_point, bitwidth, symmetric, and for powers of two
    power_of_2 ("2^(-9)") and hardware_op ("x >> 9")."""
    s = np.asarray(scale, np.float64)
    d: Dict[str, Any] = {"scale": s.tolist(), "zero_point": np.asarray(zero_point).tolist(),
                         "bitwidth": tc.bits, "symmetric": tc.symmetric}
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


def _avg_pool2d_args(input: Any, kernel_size: Any, stride: Any = None, padding: Any = 0,
                     ceil_mode: bool = False, count_include_pad: bool = True,
                     divisor_override: Optional[int] = None) -> Tuple:
    """F.avg_pool2d's arguments, positional, in its order."""
    return (input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)


def _operator_add() -> Any:
    import operator

    return operator.add


def _int32_bias(bias: np.ndarray, xs: np.float32, ws: Any, bits: int = 32) -> np.ndarray:
    """Bias quantized with scale x_scale * w_scale, zero point 0, saturated to ``bits`` signed
    bits, stored as int32 (TFLite, QNNPACK, ORT)."""
    s = (np.float64(xs) * np.asarray(ws, np.float64))
    lim = 2 ** (int(bits) - 1)
    return np.clip(np.rint(bias.astype(np.float64) / s), -lim, lim - 1).astype(np.int32)


def quantize_model(model: torch.nn.Module, calib_data: Optional[Iterable[Any]], *,
                   config: Optional[QuantConfig] = None,
                   handlers: Optional[Dict[type, Handler]] = None,
                   fixed_qparams: Optional[Dict[str, Any]] = None) -> IntegerModel:
    """Calibrate ``model`` on ``calib_data`` (an iterable of input batches) and return an
    :class:`IntegerModel` that runs it on qkernels' integer kernels. Dynamic mode
    (``QuantConfig(mode="dynamic")``) calibrates nothing: ``calib_data`` may be None.

    ``fixed_qparams`` gives parameters instead of observing them (e.g. the scales QAT learned):
    ``{node: (scale, zero_point)}`` for the output of a node that is calibrated (a key of
    ``IntegerModel.qparams`` that does not just inherit its input's), ``{node + ".weight":
    scale}`` (a scalar, or one a channel with per-channel weights) for a conv / linear layer's
    weights. Node names are the fused graph's (``IntegerModel.qparams`` / ``.layers`` keys); a
    name that is no such point is a ValueError.

    A layer without an integer implementation is refused here, by name; keep it in float
    (``QuantConfig(float_modules=("name",))``) or give its module type an integer ``handler``
    (``handlers={nn.GELU: fn}``, see :data:`Handler`): both get calibrated output parameters.

    Raises:
        NotImplementedError: a layer without an integer implementation (the message names it and
            says what to do).
        TypeError: a model torch.fx cannot trace.

    Example:
        >>> # im = quantize_model(net, [x_calib[i:i + 64] for i in range(0, 512, 64)])
        >>> # im(x_test).argmax(1)  # integer-exact predictions
    """
    cfg = config or QuantConfig()
    if cfg.mode not in ("static", "dynamic", "weight_only"):
        raise ValueError(f"mode must be 'static', 'dynamic' or 'weight_only'; got {cfg.mode!r}")
    if cfg.layernorm not in ("exact", "sole"):
        raise ValueError(f"layernorm must be 'exact' or 'sole'; got {cfg.layernorm!r}")
    if cfg.mode == "dynamic" and cfg.activation.bits > 8:
        raise ValueError("dynamic mode quantizes activations to at most 8 bits (activation.bits)")
    if cfg.mode == "static":
        for kind in ("activation", "input", "output"):
            tc = getattr(cfg, kind)
            if tc is None:
                continue
            if not 2 <= tc.bits <= 8:
                raise ValueError(f"{kind}.bits={tc.bits}: the integer conv / linear kernels take "
                                 "and return 8-bit storage (bits 2..8)")
            if tc.signed and cfg.preset in ("fbgemm", "qnnpack"):
                raise ValueError(f"{kind}: preset {cfg.preset!r} takes uint8 activations "
                                 "(signed=False); int8 ones need tflite, onnxruntime or pow2")
    if cfg.bias is not None:
        if cfg.preset not in ("tflite", "pow2", "onnxruntime"):
            raise ValueError(f"bias: preset {cfg.preset!r} adds a float bias; an integer bias "
                             "config applies to the tflite, pow2 and onnxruntime presets")
        if not (cfg.bias.signed and 2 <= cfg.bias.bits <= 32):
            raise ValueError(f"bias must be signed with 2..32 bits; got {cfg.bias}")
    float_model = copy.deepcopy(model).eval()
    gm = _fused_graph(model)
    handlers = dict(handlers or {})
    float_nodes = _float_nodes(gm, cfg.float_modules)
    special = set(float_nodes) | {n.name for n in gm.graph.nodes if n.op == "call_module"
                                  and type(gm.get_submodule(n.target)) in handlers}
    layers: Dict[str, Dict[str, Any]] = {}
    wcfg = cfg.weight
    for node in gm.graph.nodes:
        if node.op != "call_module" or node.name in special:
            continue
        mod = gm.get_submodule(node.target)
        base, act = _module_kind(mod)
        if base is None:
            continue
        if isinstance(base, torch.nn.Conv2d) and base.padding_mode != "zeros":
            raise _no_integer_op(f"module {node.target} (padding_mode={base.padding_mode})",
                                 node.target)
        w = base.weight.detach().numpy().astype(F32)
        axis = 0 if wcfg.per_channel else None
        obs = wcfg.observer_for(axis) if wcfg.observer in ("minmax", "mode") else qk.MinMaxObserver(
            dtype=wcfg.dtype(), symmetric=wcfg.symmetric, axis=axis, power_of_two=wcfg.power_of_two,
            bits=wcfg.bits if wcfg.bits != wcfg.dtype().itemsize * 8 else None)
        obs.update(w)
        wq = obs.calculate_qparams()
        if node.name + ".weight" in (fixed_qparams or {}):
            ws = np.asarray(fixed_qparams[node.name + ".weight"], F32)   # type: ignore[index]
            if ws.size not in (1, np.size(wq.scale)) or not np.all(np.isfinite(ws) & (ws > 0)):
                raise ValueError(f"fixed_qparams[{node.name + '.weight'!r}]: {np.size(wq.scale)} "
                                 f"finite positive scale(s) expected, got {ws}")
            ws = ws.reshape(()) if ws.size == 1 else ws.reshape(-1)
            wq = replace(wq, scale=np.broadcast_to(ws, np.shape(wq.scale)).copy())
        if np.any(np.asarray(wq.zero_point) != 0):
            raise ValueError("weights must be symmetric (zero point 0) for the integer kernels")
        bits = wcfg.bits if wcfg.bits != wcfg.dtype().itemsize * 8 else None
        w_int = qk.quantize(w, wq.scale, 0, dtype=wcfg.dtype(), bits=bits, axis=axis, flavor="torch")
        w_scale = np.asarray(wq.scale, F32)
        fq_mod = copy.deepcopy(mod)
        with torch.no_grad():
            fq_base = fq_mod[0] if fq_mod is not base and hasattr(fq_mod, "__getitem__") else fq_mod
            deq = qk.dequantize(w_int, w_scale, 0, axis=axis)
            fq_base.weight.copy_(torch.from_numpy(deq))
        kind = "conv" if isinstance(base, torch.nn.Conv2d) else "linear"
        packed = (qk.pack_conv2d(w_int, groups=base.groups, w_scale=w_scale) if kind == "conv"
                  else qk.pack_linear(w_int, w_scale=w_scale))
        layers[node.name] = dict(kind=kind, module=base, fused=mod, fq_module=fq_mod,
                                 fq_base=fq_base, w_int=w_int,
                                 w_scale=w_scale, packed=packed, act=act,
                                 bias=None if base.bias is None else base.bias.detach().numpy().astype(F32),
                                 input=node.args[0].name)
    # calibration: observe every node output that carries new quantization parameters
    acfg = cfg.activation
    tcs = _tensor_configs(gm, cfg, layers, special) if cfg.mode == "static" else {}

    def observer(name: str) -> qk.Observer:
        return tcs.get(name, acfg).observer_for()
    observers: Dict[str, qk.Observer] = {}
    inherit: Dict[str, str] = {}
    ln_nodes: Dict[str, fx.Node] = {}        # LayerNorm node -> its input: PTF calibration data
    ln_inputs: Dict[str, List[np.ndarray]] = {}
    if cfg.mode == "static":
        _check_supported(gm, layers, special)
        for node in gm.graph.nodes:
            if node.name in special:
                observers[node.name] = observer(node.name)
            elif node.op == "call_module" and isinstance(gm.get_submodule(node.target), torch.nn.LayerNorm):
                m = gm.get_submodule(node.target)
                if len(m.normalized_shape) != 1 or cfg.activation.bits > 8:
                    raise _no_integer_op(f"module {node.target} (LayerNorm over "
                                         f"{tuple(m.normalized_shape)} with {cfg.activation.bits}-bit "
                                         "activations: the integer LayerNorm normalizes the last "
                                         "axis, 8-bit)", node.target)
                ln_nodes[node.name] = node
                ln_inputs[node.args[0].name] = []
                observers[node.name] = observer(node.name)
    for node in gm.graph.nodes:
        if node.name in ln_nodes or node.name in observers:
            continue
        if node.op in ("placeholder",) or node.name in layers:
            observers[node.name] = observer(node.name)
        elif _keeps_qparams(gm, node):
            inherit[node.name] = node.args[0].name
        elif node.op == "call_module" and isinstance(gm.get_submodule(node.target), torch.nn.LeakyReLU):
            observers[node.name] = observer(node.name)
        elif node.op == "call_function" and node.target in (torch.add, _operator_add(), *_CAT):
            observers[node.name] = observer(node.name)
    class _Rec(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            r = super().run_node(n)
            if n.name in observers and isinstance(r, torch.Tensor):
                observers[n.name].update(r.detach().numpy())
            if n.name in ln_inputs and isinstance(r, torch.Tensor):
                ln_inputs[n.name].append(r.detach().numpy().reshape(-1, r.shape[-1]).copy())
            return r
    unknown = set(fixed_qparams or {}) - set(observers) - {n + ".weight" for n in layers}
    if unknown:
        raise ValueError(f"fixed_qparams: {', '.join(sorted(unknown))} are not calibrated nodes or "
                         "'<layer>.weight' of this model (see IntegerModel.qparams / .layers)")
    rec = _Rec(gm)
    seen = 0
    if cfg.mode == "dynamic":  # nothing to calibrate: activations are quantized per call
        return IntegerModel(float_model, gm, cfg, {}, layers, float_nodes=float_nodes,
                            handlers=handlers)
    if calib_data is None:
        raise ValueError(f"calib_data is None: {cfg.mode} mode calibrates the activations, give "
                         "at least one batch (only mode='dynamic' needs none)")
    with torch.no_grad():
        for b in calib_data:  # streamed: observers keep running statistics only
            rec.run(b if isinstance(b, torch.Tensor) else torch.from_numpy(np.asarray(b, F32)))
            seen += 1
    if seen == 0:
        raise ValueError("calib_data is empty: give at least one batch")
    qparams: Dict[str, Tuple[float, int]] = {}
    for node in gm.graph.nodes:
        if node.name in (fixed_qparams or {}):
            s, z = fixed_qparams[node.name]   # type: ignore[index]
            if not (math.isfinite(float(s)) and float(s) > 0):
                raise ValueError(f"fixed_qparams[{node.name!r}]: scale must be finite and > 0")
            qparams[node.name] = (float(s), int(z))
        elif node.name in observers:
            p = observers[node.name].calculate_qparams()
            qparams[node.name] = (float(np.asarray(p.scale).reshape(-1)[0]),
                                  int(np.asarray(p.zero_point).reshape(-1)[0]))
        elif node.name in inherit and inherit[node.name] in qparams:
            qparams[node.name] = qparams[inherit[node.name]]
    if cfg.bias is not None:   # fake quant sees the saturated integer bias too
        for name, L in layers.items():
            if L["bias"] is None or L["input"] not in qparams:
                continue
            xs = F32(qparams[L["input"]][0])
            b = _int32_bias(L["bias"], xs, L["w_scale"], cfg.bias.bits)
            deq = (b * (np.float64(xs) * np.asarray(L["w_scale"], np.float64))).astype(F32)
            with torch.no_grad():
                L["fq_base"].bias.copy_(torch.from_numpy(deq))
    layernorms: Dict[str, Any] = {}
    for name, node in ln_nodes.items():
        m = gm.get_submodule(node.target)
        c = int(m.normalized_shape[0])
        gamma = m.weight.detach().numpy() if m.weight is not None else np.ones(c, F32)
        beta = m.bias.detach().numpy() if m.bias is not None else np.zeros(c, F32)
        s, z = qparams[name]
        kz = z - 128 if tcs.get(name, acfg).dtype() == np.uint8 else z   # kernel's int8 zero point
        ptf = qk.ptf_calibrate(ln_inputs[node.args[0].name], method="fqvit")
        layernorms[name] = qk.prepare_layernorm(ptf, gamma, beta, method=cfg.layernorm,
                                                out_scale=s, out_zero_point=kz, eps=float(m.eps))
    return IntegerModel(float_model, gm, cfg, qparams, layers, layernorms,
                        float_nodes=float_nodes, handlers=handlers, tensor_configs=tcs)


_OWN_OUTPUT_TYPE = (torch.nn.LayerNorm,)
# Ops whose output carries their input's quantization parameters (and integer type).
_KEEP_QPARAMS = (torch.nn.MaxPool2d, torch.nn.AdaptiveAvgPool2d, torch.nn.AvgPool2d,
                 torch.nn.Flatten, torch.nn.Dropout, torch.nn.Identity, torch.nn.ReLU,
                 torch.nn.ReLU6, torch.nn.Hardtanh)
_KEEP_QPARAMS_FN = (torch.flatten, torch.nn.functional.relu, torch.relu, *_AVG_POOL2D)


def _keeps_qparams(gm: fx.GraphModule, n: fx.Node) -> bool:
    return ((n.op == "call_module" and isinstance(gm.get_submodule(n.target), _KEEP_QPARAMS))
            or (n.op == "call_function" and n.target in _KEEP_QPARAMS_FN))


def _tensor_configs(gm: fx.GraphModule, cfg: QuantConfig, layers: Dict[str, Any],
                    special: Iterable[str]) -> Dict[str, TensorConfig]:
    """Node name -> TensorConfig where it differs from ``cfg.activation``: the placeholders
    (``cfg.input``) and the nodes whose integers the model returns (``cfg.output``), followed
    back through the ops that keep their input's parameters (flatten, pooling, ReLU, ...)."""
    out: Dict[str, TensorConfig] = {}
    if cfg.input is not None:
        for node in gm.graph.nodes:
            if node.op == "placeholder":
                out[node.name] = cfg.input
    if cfg.output is None:
        return out
    special = set(special)
    own = set(layers) | special | {n.name for n in gm.graph.nodes if n.op == "call_module"
                                   and isinstance(gm.get_submodule(n.target), _OWN_OUTPUT_TYPE)}
    for node in gm.graph.nodes:
        if node.op != "output":
            continue
        for n in node.all_input_nodes:
            while n.name not in own:
                if not _keeps_qparams(gm, n) or not isinstance(n.args[0], fx.Node):
                    raise ValueError(f"output: the model output {n.name} comes from an op that "
                                     "keeps the activation type; QuantConfig.output applies to "
                                     "conv / linear / LayerNorm / float-kept layers")
                n = n.args[0]
            out[n.name] = cfg.output
    for n in gm.graph.nodes:   # the ops after it that keep its parameters carry its config
        if _keeps_qparams(gm, n) and n.name not in own and isinstance(n.args[0], fx.Node) and \
                n.args[0].name in out:
            out[n.name] = out[n.args[0].name]
    return out


def _float_nodes(gm: fx.GraphModule, names: Iterable[str]) -> List[str]:
    """The graph nodes ``QuantConfig.float_modules`` names (module path or prefix, class name,
    or node name); an entry that matches nothing is an error (a typo would silently quantize)."""
    names = list(names)
    out: List[str] = []
    used = set()
    for node in gm.graph.nodes:
        if node.op not in ("call_module", "call_function", "call_method"):
            continue
        keys = {node.name}
        if node.op == "call_module":
            keys |= {type(gm.get_submodule(node.target)).__name__}
        for m in names:
            hit = m in keys or (node.op == "call_module" and
                                (node.target == m or node.target.startswith(m + ".")))
            if hit:
                used.add(m)
                out.append(node.name)
                break
    missing = [m for m in names if m not in used]
    if missing:
        raise ValueError(f"float_modules: {', '.join(missing)} match no layer of the model "
                         "(give a module path, a class name or a graph node name)")
    return out


_SUPPORTED_MODULES = _KEEP_QPARAMS + (torch.nn.LeakyReLU, torch.nn.LayerNorm)


def _check_supported(gm: fx.GraphModule, layers: Dict[str, Any], special: Iterable[str]) -> None:
    """Refuse, before calibrating, a node the integer graph cannot run, naming it and saying
    what to do."""
    special = set(special)
    functions = (torch.add, _operator_add(), *_CAT, *_KEEP_QPARAMS_FN)
    for node in gm.graph.nodes:
        if node.name in layers or node.name in special:
            continue
        if node.op == "call_module":
            mod = gm.get_submodule(node.target)
            if isinstance(mod, _SUPPORTED_MODULES):
                continue
            what, key, kind = f"module {node.target} ({type(mod).__name__})", node.target, \
                type(mod).__name__
        elif node.op in ("call_function", "call_method"):
            if node.op == "call_function" and node.target in functions:
                continue
            what = f"{node.op} {getattr(node.target, '__name__', node.target)} (node {node.name})"
            key, kind = node.name, None
        else:
            continue
        raise _no_integer_op(what, key, kind)


def _no_integer_op(what: str, key: str, kind: Optional[str] = None) -> NotImplementedError:
    """The error for a layer quantize_model has no integer op for: it names the layer and says
    what to do."""
    advice = (f"keep it in float with QuantConfig(float_modules=({key!r},))" +
              (f", or give it an integer handler: quantize_model(..., handlers={{{kind}: fn}})"
               if kind else ""))
    return NotImplementedError(f"{what} has no integer implementation in quantize_model: {advice}")
