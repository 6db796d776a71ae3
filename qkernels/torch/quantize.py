"""quantize_model: calibrate a float PyTorch model and run it integer-exact on qkernels.

    from qkernels.torch import quantize_model, QuantConfig
    im = quantize_model(model, calib_batches)                 # W8A8, per-channel weights, fbgemm
    y_int = im(x)                                             # integers between layers
    y_fq = im.fake_quant(x); y_f = im.float_reference(x)
    report = im.compare(x)                                    # per layer SQNR / max error / cosine

The model is captured with ``torch.fx`` and BatchNorm is folded into the preceding convolution
(``fuse_fx``, eval mode); ReLU after a convolution or linear layer is fused into its output
range. Every op then runs on qkernels through the op table (:mod:`qkernels.torch.ops`):
convolutions and linear layers with the configured preset, the elementwise and pooling ops with
PyTorch's quantized arithmetic (:mod:`qkernels.torch.qarith`), LayerNorm with the integer PTF
LayerNorm (``qkernels.ptf_layernorm``). The fake-quant run uses the same parameters at the same
points in float, so the two agree to within a quantization step wherever the preset's
requantization rounds the same real value differently.

``QuantConfig(mode="dynamic")`` instead quantizes each conv / linear input per call (PyTorch's
``quantize_dynamic``, bit for bit with fbgemm for Linear), ``mode="weight_only"`` keeps float
activations.
"""
from __future__ import annotations

import copy
import functools
import math
import operator
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np
import torch
from torch import fx

import qkernels as qk

from . import layers as Ly
from . import ops as O
from ._runtime import QMeta
from .config import QuantConfig, TensorConfig
from .model import GraphReference, IntegerModel, fused_graph, structured_output
from .qarith import QTensor

__all__ = ["quantize_model", "Handler"]

F32 = np.float32

#: An integer handler for a module type (``quantize_model(..., handlers={Type: fn})``):
#: ``fn(module, x, scale, zero_point)`` gets the module, its quantized input (a ``QTensor``:
#: ``.q`` integers, ``.scale``, ``.zero_point``) and the calibrated parameters of its output, and
#: returns the output integers (the activation dtype).
Handler = Callable[[torch.nn.Module, QTensor, float, int], np.ndarray]


# ---- weights ------------------------------------------------------------------------------
@dataclass
class WeightInfo:
    """The quantized weights of one conv / linear node (and what its reference runs)."""

    kind: str                       # "conv", "conv_transpose" or "linear"
    base: torch.nn.Module           # the Conv2d / Linear (inside a fused module)
    fused: torch.nn.Module          # the graph's module (ConvReLU2d, ...)
    fq_module: torch.nn.Module      # a copy of it with quantized-dequantized weights (and bias)
    fq_base: torch.nn.Module
    w_int: np.ndarray               # (ConvTranspose2d: the equivalent convolution's weights)
    w_scale: np.ndarray
    packed: Any
    act: Optional[Tuple[float, Optional[float]]]
    bias: Optional[np.ndarray]      # float
    input: str                      # the node it reads
    quantize_input: Optional[Callable[[np.ndarray], QTensor]] = None   # dynamic mode
    input_range: Tuple[int, int] = (0, 127)

    def module_attr(self, name: str, default: Any = None) -> Any:
        v = getattr(self.base, name, default)
        return tuple(v) if isinstance(v, (list, tuple)) else v


def _module_kind(mod: torch.nn.Module) -> Tuple[Optional[torch.nn.Module], Optional[Tuple]]:
    """(conv or linear, fused activation bounds) for a plain or fused (intrinsic) module."""
    import torch.ao.nn.intrinsic as nni

    if isinstance(mod, (nni.ConvReLU2d, nni.LinearReLU)):
        return mod[0], (0.0, None)
    if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
        return mod, None
    return None, None


def _quantize_weights(gm: fx.GraphModule, node: fx.Node, mod: torch.nn.Module,
                      cfg: QuantConfig, fixed_scale: Any = None) -> Optional[WeightInfo]:
    return quantize_weights(mod, cfg, str(node.target), node.args[0].name, fixed_scale,
                            node.name + ".weight")


def quantize_weights(mod: torch.nn.Module, cfg: QuantConfig, name: str, input_name: str,
                     fixed_scale: Any = None,
                     fixed_key: Optional[str] = None) -> Optional[WeightInfo]:
    """The :class:`WeightInfo` of a conv / linear module (plain or fused with ReLU) quantized as
    ``cfg.weight`` says (None for any other module); ``name`` names the module in errors,
    ``input_name`` is the value it reads; ``fixed_scale`` (named ``fixed_key`` in errors) replaces
    the observed weight scale."""
    base, act = _module_kind(mod)
    transposed = isinstance(mod, torch.nn.ConvTranspose2d)
    if transposed:
        base = mod
    if base is None:
        return None
    if isinstance(base, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and \
            base.padding_mode != "zeros":
        raise _no_integer_op(f"module {name} (padding_mode={base.padding_mode})", name)
    wcfg = cfg.weight
    w = base.weight.detach().numpy().astype(F32)
    if transposed:   # the equivalent convolution's weights, quantized per its output channel
        w = Ly.conv_transpose_weights(w, int(base.groups))
    axis = 0 if wcfg.per_channel else None
    obs = wcfg.observer_for(axis) if wcfg.observer in ("minmax", "mode") else qk.MinMaxObserver(
        dtype=wcfg.dtype(), symmetric=wcfg.symmetric, axis=axis, power_of_two=wcfg.power_of_two,
        bits=wcfg.qbits())
    obs.update(w)
    wq = obs.calculate_qparams()
    if fixed_scale is not None:   # given (e.g. learned by QAT) instead of observed
        key = f"fixed_qparams[{fixed_key or name + '.weight'!r}]"
        ws = np.asarray(fixed_scale, F32)
        if ws.size not in (1, np.size(wq.scale)) or not np.all(np.isfinite(ws) & (ws > 0)):
            raise ValueError(f"{key}: {np.size(wq.scale)} finite positive scale(s) expected, "
                             f"got {ws}")
        ws = ws.reshape(()) if ws.size == 1 else ws.reshape(-1)
        wq = replace(wq, scale=np.broadcast_to(ws, np.shape(wq.scale)).copy())
    if np.any(np.asarray(wq.zero_point) != 0):
        raise ValueError("weights must be symmetric (zero point 0) for the integer kernels")
    w_int = qk.quantize(w, wq.scale, 0, dtype=wcfg.dtype(), bits=wcfg.qbits(), axis=axis,
                        flavor="torch")
    w_scale = np.asarray(wq.scale, F32)
    fq_mod = copy.deepcopy(mod)
    with torch.no_grad():
        fq_base = fq_mod[0] if fq_mod is not base and hasattr(fq_mod, "__getitem__") else fq_mod
        wd = qk.dequantize(w_int, w_scale, 0, axis=axis)
        if transposed:   # back to (C_in, C_out / groups, kh, kw): the transform is its own inverse
            wd = Ly.conv_transpose_weights(wd, int(base.groups))
        fq_base.weight.copy_(torch.from_numpy(wd))
    kind = "conv_transpose" if transposed else "conv" if isinstance(base, torch.nn.Conv2d) \
        else "linear"
    packed = (qk.pack_conv2d(w_int, groups=base.groups, w_scale=w_scale) if kind != "linear"
              else qk.pack_linear(w_int, w_scale=w_scale))
    return WeightInfo(kind, base, mod, fq_mod, fq_base, w_int, w_scale, packed, act,
                      None if base.bias is None else base.bias.detach().numpy().astype(F32),
                      input_name)


class DynamicQuantizer:
    """Dynamic mode with an activation config PyTorch has no counterpart for: each call
    quantizes its input from its own min / max with :func:`qkernels.choose_qparams` and the
    config's bits, symmetry and power-of-two rule (flavor torch)."""

    def __init__(self, activation: TensorConfig) -> None:
        self.activation = activation

    def __call__(self, x: np.ndarray) -> QTensor:
        act = self.activation
        adt, bits = act.dtype(), act.qbits()
        x = np.asarray(x, F32)
        mn, mx = (F32(x.min()), F32(x.max())) if x.size else (F32(0), F32(0))
        p = qk.choose_qparams(mn, mx, dtype=adt, symmetric=act.symmetric,
                              power_of_two=act.power_of_two, bits=bits)
        s = float(np.asarray(p.scale).reshape(-1)[0])
        z = int(np.asarray(p.zero_point).reshape(-1)[0])
        return QTensor(qk.quantize(x, F32(s), z, dtype=adt, bits=bits, flavor="torch"), s, z)


def _dynamic_quantizer(cfg: QuantConfig) -> Tuple[Optional[DynamicQuantizer], Tuple[int, int]]:
    """Dynamic mode: how a conv / linear input is quantized per call (None: fbgemm's
    reduce_range uint8, PyTorch's quantize_dynamic) and the range its zero point lies in."""
    act = cfg.activation
    if act == TensorConfig() and cfg.preset_name == "fbgemm":
        return None, (0, 127)
    return DynamicQuantizer(act), act.qrange()


# ---- node classification ------------------------------------------------------------------------
def _spec(gm: fx.GraphModule, node: fx.Node) -> Optional[O.OpSpec]:
    if node.op == "call_module":
        return O.find_module(gm.get_submodule(node.target))
    if node.op == "call_function":
        return O.find_function(node.target, False)
    if node.op == "call_method":
        return O.find_function(node.target, True)
    return None


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


def _no_integer_op(what: str, key: str, kind: Optional[str] = None) -> NotImplementedError:
    """The error for a layer quantize_model has no integer op for: it names the layer and says
    what to do."""
    advice = (f"keep it in float with QuantConfig(float_modules=({key!r},))" +
              (f", or give it an integer handler: quantize_model(..., handlers={{{kind}: fn}})"
               if kind else ""))
    return NotImplementedError(f"{what} has no integer implementation in quantize_model: {advice}")


def _quantized_values(gm: fx.GraphModule, weights: Dict[str, WeightInfo], special: set) -> set:
    """The nodes whose values are (or hold) quantized tensors: the model inputs and what is
    computed from them, except shape queries (``x.size()``, ``x.shape``: ints). A node that
    reads none of them (a constant, a Parameter, arithmetic on sizes, a float op on those) runs
    in float as it is: no observer, no integer op."""
    q: set = set()
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            q.add(node.name)
        elif node.op in ("call_module", "call_function", "call_method") and \
                any(n.name in q for n in node.all_input_nodes):
            if node.name in weights or node.name in special or not O.is_shape_query(node):
                q.add(node.name)
    return q


def _check_supported(gm: fx.GraphModule, weights: Dict[str, WeightInfo], special: set,
                     qvalues: set, cfg: QuantConfig) -> None:
    """Refuse, before calibrating, a node the integer graph cannot run, naming it and saying
    what to do."""
    for node in gm.graph.nodes:
        if node.name in weights or node.name in special or node.name not in qvalues or \
                node.op in ("placeholder", "output", "get_attr"):
            continue
        spec = _spec(gm, node)
        if spec is not None and spec.from_float is not None and \
                (not spec.tflite_only or cfg.preset_obj.tflite_runtime is not None):
            continue
        only = (f" with preset {cfg.preset_name!r} (integer with the TFLite presets only)"
                if spec is not None and spec.tflite_only else "")
        if node.op == "call_module":
            mod = gm.get_submodule(node.target)
            raise _no_integer_op(f"module {node.target} ({type(mod).__name__}){only}",
                                 node.target, type(mod).__name__)
        raise _no_integer_op(f"{node.op} {getattr(node.target, '__name__', node.target)} "
                             f"(node {node.name}){only}", node.name)


def _tensor_configs(gm: fx.GraphModule, cfg: QuantConfig, own: set) -> Dict[str, TensorConfig]:
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

    def inherits(n: fx.Node) -> bool:
        s = _spec(gm, n)
        return s is not None and s.calibrate == "inherit"
    for node in gm.graph.nodes:
        if node.op != "output":
            continue
        for n in node.all_input_nodes:
            while n.name not in own:
                if not inherits(n) or not isinstance(n.args[0], fx.Node):
                    raise ValueError(f"output: the model output {n.name} comes from an op that "
                                     "keeps the activation type; QuantConfig.output applies to "
                                     "conv / linear / LayerNorm / float-kept layers")
                n = n.args[0]
            out[n.name] = cfg.output
    for n in gm.graph.nodes:   # the ops after it that keep its parameters carry its config
        if inherits(n) and n.name not in own and isinstance(n.args[0], fx.Node) and \
                n.args[0].name in out:
            out[n.name] = out[n.args[0].name]
    return out


def _passes_through(s: Optional[O.OpSpec]) -> bool:
    """Whether an op hands its input on unchanged with its parameters (Identity, Dropout, the
    ``activation_post_process`` of a float ``FloatFunctional``): a shared observer reaches
    through it to the node that calibrates the value."""
    return s is not None and s.calibrate == "inherit" and s.name == "identity"


def _shared_groups(gm: fx.GraphModule, specs: Dict[str, Optional[O.OpSpec]],
                   observers: Dict[str, Any], tcs: Dict[str, TensorConfig],
                   acfg: TensorConfig, fixed: Dict[str, Any]) -> List[List[str]]:
    """The sets of calibrated nodes that share one observer (each in graph order, two or more):
    an op whose entry shares its inputs' parameters (``OpSpec.share_inputs``: cat) with each
    input that has an observer of its own and the same :class:`TensorConfig`, transitively (a
    cat of cats, a branch that feeds two cats). As in PyTorch FX, a shared input keeps the
    shared parameters for its other users too; an input whose parameters come from elsewhere
    (a model input, a pooling or shape op that keeps its input's, a ``fixed_qparams`` entry)
    keeps them, and the op requantizes it."""
    parent: Dict[str, str] = {}

    def root(a: str) -> str:
        while parent.get(a, a) != a:
            a = parent[a]
        return a
    for node in gm.graph.nodes:
        s = specs.get(node.name)
        if s is None or not s.share_inputs or node.name not in observers or node.name in fixed:
            continue
        tc = tcs.get(node.name, acfg)
        for i in node.all_input_nodes:
            while i.name not in observers and _passes_through(specs.get(i.name)) and \
                    isinstance(i.args[0], fx.Node):
                i = i.args[0]
            if i.name in observers and i.op != "placeholder" and i.name not in fixed and \
                    tcs.get(i.name, acfg) == tc:
                parent.setdefault(i.name, i.name)
                parent.setdefault(node.name, node.name)
                a, b = root(i.name), root(node.name)
                if a != b:
                    parent[a] = b
    groups: Dict[str, List[str]] = {}
    for node in gm.graph.nodes:
        if node.name in parent:
            groups.setdefault(root(node.name), []).append(node.name)
    return [g for g in groups.values() if len(g) > 1]


def _check_config(cfg: QuantConfig) -> None:
    preset = cfg.preset_obj
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
            if np.dtype(tc.dtype()) not in [np.dtype(t) for t in preset.x_dtypes]:
                raise ValueError(f"{kind}: preset {preset.name!r} takes "
                                 f"{' or '.join(preset.x_dtypes)} activations "
                                 f"(signed={not tc.signed}); "
                                 + ("int8 ones need tflite, onnxruntime or pow2" if tc.signed else
                                    "uint8 ones need fbgemm, qnnpack, onnxruntime or pow2"))
    if cfg.bias is not None:
        if preset.takes_float_bias:
            raise ValueError(f"bias: preset {preset.name!r} adds a float bias; an integer bias "
                             "config applies to the presets with an int32 bias (tflite, pow2, "
                             "onnxruntime)")
        if not (cfg.bias.signed and 2 <= cfg.bias.bits <= 32):
            raise ValueError(f"bias must be signed with 2..32 bits; got {cfg.bias}")


# ---- quantize_model ---------------------------------------------------------------------------------
def quantize_model(model: torch.nn.Module, calib_data: Optional[Iterable[Any]], *,
                   config: Optional[QuantConfig] = None,
                   handlers: Optional[Dict[type, Handler]] = None,
                   fixed_qparams: Optional[Dict[str, Any]] = None) -> IntegerModel:
    """Calibrate ``model`` on ``calib_data`` (an iterable of input batches) and return an
    :class:`~qkernels.torch.IntegerModel` that runs it on qkernels' integer kernels. Dynamic mode
    (``QuantConfig(mode="dynamic")``) calibrates nothing: ``calib_data`` may be None.

    Integer ops: every entry of the op table (conv / linear, ConvTranspose2d (the equivalent
    convolution over the zero-point-inserted input), add / mul of tensors and with
    numbers, ReLU variants, Hardswish / Hardsigmoid, any other elementwise op of one 8-bit
    input as a 256-entry table of the float op (SiLU, Sigmoid, Tanh, GELU...), BatchNorm2d /
    BNReLU2d that no conv absorbs (PyTorch's quantized batch_norm2d), pooling, mean, cat,
    LayerNorm, Dropout / stochastic depth, nearest and bilinear interpolate (PyTorch's quantized
    upsample_bilinear2d), the shape ops). Values computed
    from no model input (constants, Parameters, sizes) run in float as they are; an op of
    quantized and float tensors (a class token Parameter concatenated with patches) runs in
    float with its output calibrated and quantized.

    A layer without an integer implementation is refused here, by name; keep it in float
    (``QuantConfig(float_modules=("name",))``) or give its module type an integer ``handler``
    (``handlers={nn.GELU: fn}``, see :data:`Handler`): both get calibrated output parameters.

    A concatenation shares one observer with the inputs it can calibrate (conv / linear / add
    outputs, other concatenations; PyTorch FX's ``OUTPUT_SHARE_OBSERVER_WITH_INPUT``, TFLite's
    CONCATENATION rule): they are quantized once, to its parameters, and it copies their
    integers; an input with parameters from elsewhere (a pooling op, a model input, a
    ``fixed_qparams`` entry) is requantized. Average pooling and bilinear upsampling take
    PyTorch's arithmetic for the layout PyTorch's quantized model would hold their input in
    (channels-last after a conv).

    ``fixed_qparams`` gives parameters instead of observing them (e.g. the scales QAT learned):
    ``{node: (scale, zero_point)}`` for the output of a node that is calibrated (its own
    observer: a model input, a conv / linear, an add, ...; not one that keeps its input's
    parameters), ``{node + ".weight": scale}`` (a scalar, or one a channel with per-channel
    weights) for a conv / linear layer's weights. Node names are the fused graph's (the keys of
    ``IntegerModel.layers``); a name that is no such point is a ValueError.

    Raises:
        NotImplementedError: a layer without an integer implementation (the message names it and
            says what to do).
        TypeError: a model torch.fx cannot trace.

    Example:
        >>> # im = quantize_model(net, [x_calib[i:i + 64] for i in range(0, 512, 64)])
        >>> # im(x_test).argmax(1)  # integer-exact predictions
    """
    cfg = config or QuantConfig()
    if not isinstance(cfg, QuantConfig):
        raise TypeError(f"config must be a QuantConfig, got {type(cfg).__name__}")
    _check_config(cfg)
    float_model = copy.deepcopy(model).eval()
    gm = fused_graph(model)
    fixed = dict(fixed_qparams or {})
    handlers = dict(handlers or {})
    float_nodes = _float_nodes(gm, cfg.float_modules)
    for node in gm.graph.nodes:   # an element of a float-kept op's tuple is quantized there too
        if node.target is operator.getitem and isinstance(node.args[0], fx.Node) and \
                node.args[0].name in float_nodes:
            float_nodes.append(node.name)
    special = set(float_nodes) | {n.name for n in gm.graph.nodes if n.op == "call_module"
                                  and type(gm.get_submodule(n.target)) in handlers}
    weights: Dict[str, WeightInfo] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module" and node.name not in special:
            W = _quantize_weights(gm, node, gm.get_submodule(node.target), cfg,
                                  fixed.get(node.name + ".weight"))
            if W is not None:
                weights[node.name] = W
    qvalues = _quantized_values(gm, weights, special)
    if cfg.mode == "dynamic":
        acts = sorted(k for k in fixed if not k.endswith(".weight"))
        if acts:
            raise ValueError(f"fixed_qparams: {', '.join(acts)}: dynamic mode quantizes "
                             "activations per call; only '<layer>.weight' scales can be given")
        qi, rng = _dynamic_quantizer(cfg)
        for W in weights.values():
            W.quantize_input, W.input_range = qi, rng
        return _build(float_model, gm, cfg, weights, {}, {}, {}, float_nodes, handlers, qvalues,
                      set())
    if cfg.mode == "static":
        _check_supported(gm, weights, special, qvalues, cfg)
    # calibration: observe every node output that carries new quantization parameters
    specs = {n.name: _spec(gm, n) for n in gm.graph.nodes}
    own = set(weights) | special | {n for n, s in specs.items() if s is not None and
                                    s.calibrate == "layernorm"}
    tcs = _tensor_configs(gm, cfg, own) if cfg.mode == "static" else {}
    acfg = cfg.activation
    observers: Dict[str, qk.Observer] = {}
    inherit: Dict[str, str] = {}
    ln_inputs: Dict[str, List[np.ndarray]] = {}     # LayerNorm input node -> calibration rows
    for node in gm.graph.nodes:
        s = specs[node.name]
        if node.op == "placeholder" or node.name in weights or node.name in special:
            observers[node.name] = tcs.get(node.name, acfg).observer_for()
        elif s is None or node.name not in qvalues:
            continue
        elif s.calibrate == "layernorm" and cfg.mode == "static":
            m = gm.get_submodule(node.target)
            if len(m.normalized_shape) != 1 or cfg.activation.bits > 8:
                raise _no_integer_op(f"module {node.target} (LayerNorm over "
                                     f"{tuple(m.normalized_shape)} with {cfg.activation.bits}-bit "
                                     "activations: the integer LayerNorm normalizes the last "
                                     "axis, 8-bit)", node.target)
            ln_inputs[node.args[0].name] = []
            observers[node.name] = tcs.get(node.name, acfg).observer_for()
        elif s.calibrate == "inherit" and isinstance(node.args[0], fx.Node):
            inherit[node.name] = node.args[0].name
        elif s.calibrate == "observe":
            observers[node.name] = tcs.get(node.name, acfg).observer_for()

    if cfg.mode == "static":
        for group in _shared_groups(gm, specs, observers, tcs, acfg, fixed):
            shared = tcs.get(group[0], acfg).observer_for()
            for name in group:
                observers[name] = shared
    observed: set = set()   # nodes whose output was a tensor (ints, tuples: no parameters)
    float_values: set = set()   # float tensors outside the quantized values (Parameters, ...)
    mixed: set = set()      # ops of quantized and float tensors: run in float, output observed

    class _Rec(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            if n.name in qvalues and n.name not in mixed and n.name not in special and \
                    any(i.name in float_values for i in n.all_input_nodes):
                mixed.add(n.name)
                inherit.pop(n.name, None)
                observers.setdefault(n.name, tcs.get(n.name, acfg).observer_for())
            r = super().run_node(n)
            if n.name not in qvalues and isinstance(r, torch.Tensor) and r.is_floating_point():
                float_values.add(n.name)
            if n.name in observers and isinstance(r, torch.Tensor) and r.is_floating_point():
                observers[n.name].update(r.detach().numpy())
                observed.add(n.name)
            if n.name in ln_inputs and isinstance(r, torch.Tensor):
                ln_inputs[n.name].append(r.detach().numpy().reshape(-1, r.shape[-1]).copy())
            return r
    unknown = set(fixed) - set(observers) - {n + ".weight" for n in weights}
    if unknown:
        raise ValueError(f"fixed_qparams: {', '.join(sorted(unknown))} are not calibrated nodes or "
                         "'<layer>.weight' of this model (see IntegerModel.layers)")
    if calib_data is None:
        raise ValueError(f"calib_data is None: {cfg.mode} mode calibrates the activations, give "
                         "at least one batch (only mode='dynamic' needs none)")
    rec = _Rec(gm)
    seen = 0
    with torch.no_grad():
        for b in calib_data:  # streamed: observers keep running statistics only
            rec.run(b if isinstance(b, torch.Tensor) else torch.from_numpy(np.asarray(b, F32)))
            seen += 1
    if seen == 0:
        raise ValueError("calib_data is empty: give at least one batch")
    qparams: Dict[str, Tuple[float, int]] = {}
    computed: Dict[int, Tuple[float, int]] = {}     # id(observer) -> its parameters (shared ones)
    for node in gm.graph.nodes:
        if node.name in fixed:
            s, z = fixed[node.name]
            if not (math.isfinite(float(s)) and float(s) > 0):
                raise ValueError(f"fixed_qparams[{node.name!r}]: scale must be finite and > 0")
            qparams[node.name] = (float(s), int(z))
        elif node.name in observers and node.name in observed:
            obs = observers[node.name]
            if id(obs) not in computed:
                p = obs.calculate_qparams()
                computed[id(obs)] = (float(np.asarray(p.scale).reshape(-1)[0]),
                                     int(np.asarray(p.zero_point).reshape(-1)[0]))
            qparams[node.name] = computed[id(obs)]
        elif node.name in inherit and inherit[node.name] in qparams:
            qparams[node.name] = qparams[inherit[node.name]]
            if inherit[node.name] in tcs:
                tcs.setdefault(node.name, tcs[inherit[node.name]])
    if cfg.bias is not None:   # fake quant sees the saturated integer bias too
        for name, W in weights.items():
            if W.bias is None or W.input not in qparams:
                continue
            xs = F32(qparams[W.input][0])
            b = cfg.preset_obj.quantize_bias(W.bias, xs, W.w_scale, cfg.bias.bits)
            deq = (b * (np.float64(xs) * np.asarray(W.w_scale, np.float64))).astype(F32)
            with torch.no_grad():
                W.fq_base.bias.copy_(torch.from_numpy(deq))
    layernorms: Dict[str, Any] = {}
    for node in gm.graph.nodes:
        s = specs[node.name]
        if s is None or s.calibrate != "layernorm" or node.name not in qparams:
            continue
        m = gm.get_submodule(node.target)
        c = int(m.normalized_shape[0])
        gamma = m.weight.detach().numpy() if m.weight is not None else np.ones(c, F32)
        beta = m.bias.detach().numpy() if m.bias is not None else np.zeros(c, F32)
        sc, z = qparams[node.name]
        kz = z - 128 if tcs.get(node.name, acfg).dtype() == np.uint8 else z   # kernel's int8 zp
        ptf = qk.ptf_calibrate(ln_inputs[node.args[0].name], method="fqvit")
        layernorms[node.name] = qk.prepare_layernorm(ptf, gamma, beta, method=cfg.layernorm,
                                                     out_scale=sc, out_zero_point=kz,
                                                     eps=float(m.eps))
    return _build(float_model, gm, cfg, weights, qparams, tcs, layernorms, float_nodes, handlers,
                  qvalues, mixed)


def _build(float_model: torch.nn.Module, gm: fx.GraphModule, cfg: QuantConfig,
           weights: Dict[str, WeightInfo], qparams: Dict[str, Tuple[float, int]],
           tcs: Dict[str, TensorConfig], layernorms: Dict[str, Any], float_nodes: List[str],
           handlers: Dict[type, Handler], qvalues: set, mixed: set) -> IntegerModel:
    """The typed layers of the calibrated graph, through the op table: float values and the ops
    of float and quantized tensors (``mixed``) in float (:class:`~qkernels.torch.layers.FloatLayer`,
    the latter with their calibrated output)."""
    static = cfg.mode == "static"

    def out(name: str) -> Optional[QMeta]:
        if name not in qparams:
            return None
        tc = tcs.get(name, cfg.activation)
        s, z = qparams[name]
        return QMeta(s, z, tc.dtype(), tc.qbits())
    ctx = O.FloatContext(cfg, out, weights, layernorms,
                         None if cfg.bias is None else cfg.bias.bits)
    values: Dict[fx.Node, Any] = {}
    layers: List[Ly.Layer] = []
    inputs: List[str] = []
    output: Any = None
    float_set = set(float_nodes)
    for node in gm.graph.nodes:
        name = node.name
        if node.op == "placeholder":
            if static:
                raw = f"{name}:float"
                inputs.append(raw)
                if cfg.preset_obj.tflite_runtime is not None:   # the runtime's QUANTIZE
                    layers.append(Ly.TFLiteInputLayer(name, (raw,), out(name),
                                                      flavor=cfg.preset_obj.quantize_flavor))
                else:
                    layers.append(Ly.QuantizeLayer(name, (raw,), out(name)))
            else:
                inputs.append(name)
            values[node] = O.Value(name, out(name) if static else None)
            continue
        if node.op == "output":
            output = structured_output(fx.node.map_arg(node.args[0], lambda n: values[n]),
                                       lambda v: isinstance(v, O.Value), lambda v: v.name)
            continue
        args = fx.node.map_arg(node.args, lambda n: values[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: values[n])
        mod = gm.get_submodule(node.target) if node.op == "call_module" else None
        if node.op == "get_attr":   # a constant: the ops that use it see it as it is (no grad)
            v = functools.reduce(getattr, node.target.split("."), gm)
            values[node] = v.detach() if isinstance(v, torch.Tensor) else v
            continue
        L: Ly.Layer
        if mod is not None and type(mod) in handlers and static:
            xm = O._qin(args[0], f"module {node.target}")
            L = Ly.HandlerLayer(name, (args[0].name,), out(name), module=mod,
                                handler=handlers[type(mod)], x=xm)
        elif name in float_set or name in mixed or (not static and name not in weights):
            L = O.float_layer(node, mod, args, kwargs, out(name) if static else None)
        elif name not in qvalues:   # computed from constants and sizes only: float as it is
            L = O.float_layer(node, mod, args, kwargs, None)
        else:
            spec = _spec(gm, node) if name not in weights else \
                O.by_name({"conv": "conv2d", "conv_transpose": "conv_transpose2d"}.get(
                    weights[name].kind, "linear"))
            if spec is None or spec.from_float is None:   # pragma: no cover - checked before
                raise _no_integer_op(f"{node.op} {node.target} (node {name})", name)
            L = spec.from_float(ctx, node, mod, args, kwargs)
        ctx.track_layout(L)
        layers.append(L)
        values[node] = O.Value(name, L.out)
    layer_map = {L.name: L for L in layers}
    points: Dict[str, QMeta] = {n: L.out for n, L in layer_map.items() if L.out is not None}
    fq_modules = {n: W.fq_module for n, W in weights.items()}
    ref = GraphReference(float_model, gm, layer_map, fq_modules, points)
    return IntegerModel(layers, inputs, output, preset=cfg.preset_obj, config=cfg, reference=ref,
                        mode=cfg.mode, tensor_configs=tcs)

