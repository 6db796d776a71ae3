"""The trainable fake-quantized model, built on the graph ``quantize_model`` deploys.

:func:`build_qat_model` takes the :class:`~qkernels.torch.quantize.IntegerModel` of a PTQ run and
returns a :class:`QATModel`: the same fused ``torch.fx`` graph (BatchNorm folded into the
convolutions, ReLU fused), each conv / linear layer with power-of-two fake-quantized weights (and,
in full QAT, its int32 bias at scale ``s_in * s_w``), and a fake quantizer after every node whose
output the integer model quantizes, the ones that keep their input's parameters (max pooling,
flatten, ReLU, ...) sharing their input's quantizer. The fake-quant points, the rounding and the
clamping are those of ``IntegerModel.fake_quant``, so the model trains on what the integer model
will compute. BatchNorm is folded before training: the weights QAT trains and quantizes are the
folded ones the integer kernels run (BatchNorm statistics frozen, the standard "fold, then
fine-tune" QAT recipe).

:meth:`QATModel.fixed_qparams` gives the trained scales in the form
``quantize_model(..., fixed_qparams=...)`` takes, and :meth:`QATModel.deployable` a copy of the
original model carrying the trained folded weights (its BatchNorms set to identity), which
``quantize_model`` fuses back into the same graph with the same node names.
"""
from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from .. import layers as Ly
from ..model import IntegerModel
from ..quantize import _module_kind, _spec
from .fake_quant import ActQuantizer, WeightQuantizer, bias_fake_quant

__all__ = ["QATLayer", "QATModel", "build_qat_model"]


class QATLayer(nn.Module):
    """A conv2d or linear layer (BatchNorm folded, optional fused ReLU) with fake-quantized
    weights and, when it knows its input's quantizer, its integer bias."""

    def __init__(self, base: nn.Module, relu: bool, weight_q: WeightQuantizer,
                 input_q: Optional[ActQuantizer], bias_bits: int) -> None:
        super().__init__()
        self.kind = "conv" if isinstance(base, nn.Conv2d) else "linear"
        self.weight = nn.Parameter(base.weight.detach().clone())
        self.bias = None if base.bias is None else nn.Parameter(base.bias.detach().clone())
        if self.kind == "conv":
            self.geometry = dict(stride=base.stride, padding=base.padding, dilation=base.dilation,
                                 groups=base.groups)
        self.relu = relu
        self.weight_q = weight_q
        self.input_q = input_q
        self.bias_bits = bias_bits

    def quantized_weight(self) -> torch.Tensor:
        return self.weight_q(self.weight)

    def quantized_bias(self) -> Optional[torch.Tensor]:
        if self.bias is None or self.input_q is None or not self.input_q.enabled:
            return self.bias
        return bias_fake_quant(self.bias, self.input_q.scale(), self.weight_q.scale(self.weight),
                               self.bias_bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.quantized_weight(), self.quantized_bias()
        y = F.conv2d(x, w, b, **self.geometry) if self.kind == "conv" else F.linear(x, w, b)
        return F.relu(y) if self.relu else y


class QATModel(nn.Module):
    """A fake-quantized copy of an integer model's graph for training (see the module docstring).

    Attributes:
        graph_module: the fused graph with :class:`QATLayer` s and :class:`ActQuantizer` s.
        layers: node name -> its :class:`QATLayer`.
        quantizers: node name -> the :class:`ActQuantizer` of its output (shared along chains of
            ops that keep their input's parameters; ``calibrated`` lists the nodes that own one).
    """

    def __init__(self, graph_module: fx.GraphModule, layers: Dict[str, QATLayer],
                 quantizers: Dict[str, ActQuantizer], calibrated: List[str],
                 targets: Dict[str, str]) -> None:
        super().__init__()
        self.graph_module = graph_module
        self.layers = layers
        self.quantizers = quantizers
        self.calibrated = list(calibrated)
        self.targets = dict(targets)   # layer node name -> module path in the original model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph_module(x)

    def set_activation_quant(self, enabled: bool) -> None:
        """Fake-quantize the activations (full QAT) or leave them float (weight-only QAT)."""
        for q in self.quantizers.values():
            q.enabled = enabled

    def scale_parameters(self) -> List[nn.Parameter]:
        """The trained log2 scales (empty unless scales are learned)."""
        return [p for n, p in self.named_parameters() if n.endswith("log2_scale")]

    def weight_parameters(self) -> List[nn.Parameter]:
        """Everything else the optimizer trains (weights, biases, other parameters)."""
        ids = {id(p) for p in self.scale_parameters()}
        return [p for p in self.parameters() if id(p) not in ids]

    @torch.no_grad()
    def init_scales_mse(self, calib: Sequence[torch.Tensor]) -> None:
        """Start every learned scale at the power of two with the least squared quantization
        error, among the calibrated one (no clipping) and the next finer ones
        (``fake_quant.MSE_CANDIDATES``): each weight scale (per channel) on its weights, each
        activation scale on its tensor over the batches ``calib``, run with the weights
        fake-quantized (at their new scales) and the activations float.

        At 4 bits the min-max power of two is often twice as coarse as the data needs (it rounds
        max / qmax up by up to 2x); a finer step that clips a few outliers halves the rounding
        error of everything else, and QAT starting there ends more accurate (docs/qat_results.md).
        """
        for L in self.layers.values():
            if L.weight_q.log2_scale is not None:
                L.weight_q.init_mse(L.weight)
        learned = {n for n in self.calibrated if self.quantizers[n].log2_scale is not None}
        if not learned or not calib:
            return
        errors: Dict[str, torch.Tensor] = {}
        quantizers = self.quantizers

        class _Errors(fx.Interpreter):
            def run_node(self, n: fx.Node) -> Any:
                if n.op == "call_module" and isinstance(n.args[0], fx.Node) and \
                        n.args[0].name in learned and \
                        self.module.get_submodule(n.target) is quantizers[n.args[0].name]:
                    x = self.env[n.args[0]]
                    e = quantizers[n.args[0].name].squared_errors(
                        x, n.kwargs.get("rounding", "half_even"))
                    errors[n.args[0].name] = errors.get(n.args[0].name, 0) + e
                return super().run_node(n)
        state = (self.training, {id(q): q.enabled for q in self.quantizers.values()})
        self.eval()
        self.set_activation_quant(False)
        try:
            for xb in calib:
                _Errors(self.graph_module).run(xb)
        finally:
            for q in self.quantizers.values():
                q.enabled = state[1][id(q)]
            self.train(state[0])
        for n, e in errors.items():
            quantizers[n].init_mse(e)

    @torch.no_grad()
    def fixed_qparams(self, activations: bool = True) -> Dict[str, Any]:
        """The current scales in ``quantize_model(..., fixed_qparams=...)`` form: ``layer.weight``
        -> weight scale(s) (float32), and with ``activations`` calibrated node -> (scale,
        zero point)."""
        out: Dict[str, Any] = {}
        for name, L in self.layers.items():
            out[name + ".weight"] = L.weight_q.scale(L.weight).numpy().astype(np.float32)
        if activations:
            for name in self.calibrated:
                out[name] = self.quantizers[name].qparams()
        return out

    @torch.no_grad()
    def deployable(self, original: nn.Module) -> nn.Module:
        """A copy of ``original`` (the model the PTQ was run on) carrying the trained weights:
        each layer's folded weight and bias in its conv / linear, every BatchNorm the identity
        (eps 0, mean 0, variance 1, weight 1, bias 0, so that folding it again changes no bit),
        and any other trained parameter under its own name."""
        model = copy.deepcopy(original).eval()
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                if not (m.affine and m.track_running_stats):
                    raise NotImplementedError(f"{type(m).__name__} without affine parameters or "
                                              "running statistics cannot be folded")
                m.eps = 0.0
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
                m.weight.fill_(1.0)
                m.bias.zero_()
        for name, L in self.layers.items():
            target = self.targets[name]
            mod = model.get_submodule(target)
            mod.weight.copy_(L.weight)
            if L.bias is not None:
                if mod.bias is None:
                    mod.bias = nn.Parameter(L.bias.detach().clone())
                else:
                    mod.bias.copy_(L.bias)
        params = dict(model.named_parameters())
        done = {id(p) for m in (*self.layers.values(), *self.quantizers.values())
                for p in m.parameters()}
        for pname, p in self.graph_module.named_parameters():
            if id(p) in done:
                continue
            if pname not in params:
                raise NotImplementedError(f"trained parameter {pname} has no counterpart in the "
                                          "original model")
            params[pname].copy_(p)
        return model


def build_qat_model(im: IntegerModel, *, weight_bits: int, per_channel: bool, bias_bits: int,
                    learn_weight_scales: bool = False, learn_act_scales: bool = False,
                    rounding: str = "ceil") -> QATModel:
    """A :class:`QATModel` on the graph of ``im`` (a static ``quantize_model`` result with the
    pow2 preset), its quantizers initialized from ``im``'s scales.

    Example:
        >>> # im = quantize_model(net, calib, config=cfg)     # power-of-two PTQ
        >>> # qat = build_qat_model(im, weight_bits=4, per_channel=True, bias_bits=32)
        >>> # qat.train(); loss = F.cross_entropy(qat(x), y); loss.backward(); ...
    """
    if im.mode != "static" or im.preset is None or im.preset.name != "pow2" or \
            im.graph_module is None:
        raise ValueError("build_qat_model needs a static integer model of a float model "
                         "(quantize_model) with the pow2 preset")
    for what, types in (("float_modules", (Ly.FloatLayer,)), ("handlers", (Ly.HandlerLayer,)),
                        ("LayerNorm", (Ly.LayerNormLayer,))):
        bad = [n for n, L in im.layers.items() if isinstance(L, types)]
        if bad:
            raise NotImplementedError(f"QAT does not train models with {what} "
                                      f"({', '.join(sorted(bad))}) yet")
    gm = copy.deepcopy(im.graph_module)
    gm.train()
    layers: Dict[str, QATLayer] = {}
    quantizers: Dict[str, ActQuantizer] = {}
    calibrated: List[str] = []
    targets: Dict[str, str] = {}
    compute = im.compute_layers()
    nodes = list(gm.graph.nodes)
    for node in nodes:   # the activation quantizers, in graph order
        L = im.layers.get(node.name)
        if L is None or L.out is None:
            continue
        src = node.args[0] if node.op != "placeholder" and node.name not in compute and \
            _inherits(gm, node) and isinstance(node.args[0], fx.Node) else None
        if src is not None and src.name in quantizers:
            quantizers[node.name] = quantizers[src.name]
            continue
        lo, hi = L.out.qrange()
        quantizers[node.name] = ActQuantizer(float(L.out.scale), int(L.out.zero_point), lo, hi,
                                             learn=learn_act_scales, rounding=rounding)
        calibrated.append(node.name)
    for node in nodes:   # the layers
        L = compute.get(node.name)
        if L is None:
            continue
        base, act = _module_kind(gm.get_submodule(node.target))
        if base is None:
            raise NotImplementedError(f"QAT of {type(L).__name__} {node.name}: only Conv2d and "
                                      "Linear layers train their weights here")
        init = torch.from_numpy(np.asarray(L.w_scale, np.float32))
        wq = WeightQuantizer(weight_bits, per_channel, base.weight.shape[0],
                             learn=learn_weight_scales, init_scale=init, rounding=rounding)
        layer = QATLayer(base, act is not None, wq, quantizers.get(L.inputs[0]), bias_bits)
        _set_module(gm, node.target, layer)
        layers[node.name] = layer
        targets[node.name] = node.target
    for i, q in enumerate(quantizers.values()):   # register each quantizer module once
        if not any(q is m for m in gm.children()):
            gm.add_submodule(f"qat_act_{i}", q)
    names = {id(m): n for n, m in gm.named_children()}
    for node in nodes:
        if node.name not in quantizers:
            continue
        with gm.graph.inserting_after(node):
            fq = gm.graph.call_module(names[id(quantizers[node.name])], (node,),
                                      {"rounding": _value_rounding(gm, node, compute)})
        node.replace_all_uses_with(fq, delete_user_cb=lambda u: u is not fq)
    gm.graph.lint()
    gm.recompile()
    for p in gm.parameters():
        p.requires_grad_(True)
    return QATModel(gm, layers, quantizers, calibrated, targets)


def _inherits(gm: fx.GraphModule, node: fx.Node) -> bool:
    """The node's integer op keeps its input's parameters (the op table's "inherit")."""
    spec = _spec(gm, node)
    return spec is not None and spec.calibrate == "inherit"


def _value_rounding(gm: fx.GraphModule, node: fx.Node, compute: Dict[str, Any]) -> str:
    """How the integer op producing ``node`` rounds (see ``fake_quant.VALUE_ROUNDINGS``)."""
    if node.name in compute:
        return "half_up"            # the pow2 requantizing shift
    if node.op == "placeholder":
        return "half_even_zp"       # FBGEMM quantize of the input
    spec = _spec(gm, node)
    if spec is not None and spec.name in ("avg_pool2d", "adaptive_avg_pool2d", "cat"):
        return "half_even_zp"       # quantized average pools and cat: zero point, then round
    return "half_even"              # vectorized quantize (add, LeakyReLU); ops on the grid


def _set_module(gm: nn.Module, target: str, module: nn.Module) -> None:
    parent, _, leaf = target.rpartition(".")
    setattr(gm.get_submodule(parent) if parent else gm, leaf, module)
