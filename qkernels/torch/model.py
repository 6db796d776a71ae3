"""IntegerModel: a graph of typed integer layers that runs on qkernels, whatever built it.

:func:`qkernels.torch.quantize_model` (a float model calibrated here) and
:func:`qkernels.torch.from_torch_quantized` (a model PyTorch quantized) both return an
:class:`IntegerModel`: the layers (:mod:`qkernels.torch.layers`), compiled once into a flat list
of C calls (:class:`qkernels.torch._runtime.Plan`), and a *reference* to compare the integers with:

- a float model's :class:`GraphReference`: the float model itself, and its fake-quant twin (the
  same quantization points in float, weights quantized-dequantized);
- a PyTorch-quantized model's :class:`TorchReference`: PyTorch's own quantized run.

``im(x)`` runs the integers and returns the dequantized output; ``im.intermediates(x)`` gives
every layer's integers; ``im.compare(x)`` reports per layer against the reference;
``im.export(dir, x)`` writes every integer for C / RTL test benches (:mod:`qkernels.torch.export`).

Example:
    >>> # from qkernels.torch import quantize_model
    >>> # im = quantize_model(net, calib); y = im(x, threads=1); rows = im.compare(x[:64])
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import fx

import qkernels as qk

from . import _runtime as rt
from . import layers as Ly
from .layers import OutputRef
from .qarith import QTensor

F32 = np.float32

__all__ = ["IntegerModel", "LayerReport", "GraphReference", "TorchReference"]


@dataclass
class LayerReport:
    """One row of :meth:`IntegerModel.compare`.

    ``sqnr_db``, ``max_abs_err``, ``cosine``: the integer run (dequantized) against the
    reference at this layer (the accumulated effect of quantization up to here);
    ``steps_diff_vs_fake_quant`` / ``frac_diff_vs_fake_quant``: how many quantization steps apart
    the integer op and its fake-quant twin fed the same inputs land, and on what fraction of
    elements (for a PyTorch-quantized model: against PyTorch's own op, so 0 means exact);
    ``fake_quant_sqnr_db`` / ``fake_quant_cosine``: the fake-quant run against the float run at
    this layer (NaN when the model has no fake-quant twin), beside the integer run's figures."""

    name: str
    op: str
    sqnr_db: float
    max_abs_err: float
    cosine: float
    steps_diff_vs_fake_quant: float
    frac_diff_vs_fake_quant: float
    fake_quant_sqnr_db: float = float("nan")
    fake_quant_cosine: float = float("nan")


def _sqnr_cos(a: np.ndarray, f: np.ndarray) -> Tuple[float, float]:
    """SQNR (dB) and cosine similarity of ``a`` against the reference ``f``."""
    err = a - f
    sq = float(np.sum(f ** 2))
    sqnr = float("inf") if not np.any(err) else 10 * math.log10(max(sq, 1e-30) / np.sum(err ** 2))
    cos = float(np.dot(a.ravel(), f.ravel()) / max(np.linalg.norm(a) * np.linalg.norm(f), 1e-30))
    return sqnr, cos


def _as_float_input(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().numpy()
    return np.asarray(x, dtype=F32)


class IntegerModel:
    """An integer model on qkernels (see the module docstring).

    Attributes:
        layers: name -> typed layer, in execution order.
        inputs: the names of the model's float inputs.
        config: the :class:`~qkernels.torch.QuantConfig` it was quantized with (None for a
            PyTorch-quantized model).
        preset: the conv / linear preset (:class:`qkernels.presets.Preset`).
        reference: what compare / fake_quant / float_reference run (or None).
        threads: thread cap of the integer run (None: the CPUs this process may use); results
            never depend on it.
        trace: the integers of every layer of the last call made with ``keep_trace=True``.
    """

    def __init__(self, layers: Sequence[Ly.Layer], inputs: Sequence[str], output: Any, *,
                 preset: Any = None, config: Any = None, reference: Any = None,
                 threads: Optional[int] = None, mode: str = "static",
                 tensor_configs: Optional[Dict[str, Any]] = None) -> None:
        self.layers: Dict[str, Ly.Layer] = {L.name: L for L in layers}
        self.inputs = tuple(inputs)
        self.output = output
        self.preset = preset
        self.config = config
        self.mode = mode
        # layer name -> TensorConfig where it is not config.activation (model input / outputs)
        self.tensor_configs: Dict[str, Any] = dict(tensor_configs or {})
        self.reference = reference
        self.threads = rt.check_threads(threads)
        self.trace: Dict[str, Any] = {}
        self._plan: Optional[rt.Plan] = None

    # -- what it holds ------------------------------------------------------------------------
    @property
    def qparams(self) -> Dict[str, Tuple[float, int]]:
        """Layer name -> (scale, zero point) of every integer output."""
        return {n: (float(L.out.scale), int(L.out.zero_point)) for n, L in self.layers.items()
                if L.out is not None}

    def compute_layers(self) -> Dict[str, Ly.Layer]:
        """The conv / linear layers (static or dynamic): name -> layer."""
        return {n: L for n, L in self.layers.items()
                if isinstance(L, (Ly.Conv2dLayer, Ly.LinearLayer, Ly.DynamicLayer))}

    @property
    def float_nodes(self) -> frozenset:
        """The layers that run in float between integer ones (``QuantConfig.float_modules``)."""
        return frozenset(n for n, L in self.layers.items()
                         if isinstance(L, Ly.FloatLayer) and L.out is not None)

    @property
    def graph_module(self) -> Optional[fx.GraphModule]:
        """The torch.fx graph the model was built from (a float model's fused graph)."""
        return getattr(self.reference, "graph_module", None)

    def accumulator_bounds(self) -> Dict[str, int]:
        """Worst-case |int32 accumulator| per conv / linear layer: K * max|x - zp| * max|w|."""
        return {n: b for n, L in self.layers.items() if (b := L.accumulator_bound()) is not None}

    # -- the integer run --------------------------------------------------------------------
    def _compile(self, reference: bool = False) -> rt.Plan:
        """Compile the layers into one plan (``reference``: every layer through its keyword-API /
        NumPy reference path instead of its kernel; for tests)."""
        slot: Dict[str, int] = {n: i for i, n in enumerate(self.inputs)}
        metas: Dict[int, rt.QMeta] = {}
        steps: List[Tuple[rt.Kernel, Tuple[int, ...], int, str]] = []
        for L in self.layers.values():
            k = L.reference_kernel() if reference else L.kernel()
            ins = tuple(slot[i] for i in L.inputs)
            slot[L.name] = len(slot)
            if L.out is not None:
                metas[slot[L.name]] = L.out
            steps.append((k, ins, slot[L.name], L.name))
        fused = steps if reference else self._fuse_conv_add(steps, slot)
        self._plan = rt.Plan(len(slot), [slot[n] for n in self.inputs],
                             self._output_spec(slot, metas), fused, metas, trace_steps=steps)
        return self._plan

    def _fuse_conv_add(self, steps: List[Tuple[rt.Kernel, Tuple[int, ...], int, str]],
                       slot: Dict[str, int]) -> List[Tuple[rt.Kernel, Tuple[int, ...], int, str]]:
        """The steps with each conv whose output only a quantized add uses (not a model
        output) run together with that add as one kernel (``Conv2dLayer.add_kernel``: the add
        in the conv's C call), at the add's place: the residual adds of ResNet blocks and
        of MobileNetV2's inverted residuals. The same integers; a run that keeps the trace uses
        the unfused steps."""
        users: Dict[str, int] = {}
        for L in self.layers.values():
            for i in L.inputs:
                users[i] = users.get(i, 0) + 1
        outs = set(self._output_names())
        fused: Dict[str, Tuple[rt.Kernel, Tuple[int, ...]]] = {}   # add name -> its new step
        gone = set()                                               # the convs fused away
        for A in self.layers.values():
            if not isinstance(A, Ly.AddLayer) or len(A.inputs) != 2 or A.inputs[0] == A.inputs[1]:
                continue
            for operand in (0, 1):
                c = self.layers.get(A.inputs[operand])
                if (not isinstance(c, Ly.Conv2dLayer) or users.get(c.name) != 1 or
                        c.name in outs or c.name in gone or len(c.inputs) != 1):
                    continue
                k = c.add_kernel(A, operand)
                if k is not None:
                    fused[A.name] = (k, (slot[c.inputs[0]], slot[A.inputs[1 - operand]]))
                    gone.add(c.name)
                    break
        return [(fused[n][0], fused[n][1], out, n) if n in fused else (k, ins, out, n)
                for k, ins, out, n in steps if n not in gone]

    def _output_names(self) -> List[str]:
        """The layers whose values the model returns."""
        if isinstance(self.output, str):
            return [self.output]
        names: List[str] = []
        Ly.map_nested(self.output, lambda v: isinstance(v, OutputRef),
                      lambda v: names.append(v.name))
        return names

    def _output_spec(self, slot: Dict[str, int], metas: Dict[int, rt.QMeta]) -> Any:
        if isinstance(self.output, str):
            return slot[self.output]
        spec = self.output

        def build(env: List[Any]) -> Any:
            def get(v: OutputRef) -> Any:
                m = metas.get(slot[v.name])
                val = env[slot[v.name]]
                return val if m is None else QTensor(val, m.scale, m.zero_point).dequantize()
            return Ly.map_nested(spec, lambda v: isinstance(v, OutputRef), get)
        return build

    def _run(self, inputs: Sequence[Any], threads: Optional[int],
             trace: Optional[Dict[str, Any]]) -> Any:
        if len(inputs) != len(self.inputs):
            raise TypeError(f"the model takes {len(self.inputs)} inputs, got {len(inputs)}")
        plan = self._plan if self._plan is not None else self._compile()
        t = rt.check_threads(self.threads if threads is None else threads)
        out = plan.run([_as_float_input(v) for v in inputs], t, trace)
        if isinstance(plan.output, int):
            m = plan.metas.get(plan.output)
            return out if m is None else QTensor(out, m.scale, m.zero_point).dequantize()
        return out

    def __call__(self, *inputs: Any, threads: Optional[int] = None,
                 keep_trace: bool = False) -> Any:
        """Integer-exact run on qkernels; returns the dequantized float32 output.

        ``threads`` caps the worker threads for this call (default: the ``threads``
        attribute); ``keep_trace=True`` keeps every layer's integers in :attr:`trace`."""
        raw: Optional[Dict[str, Any]] = {} if keep_trace else None
        out = self._run(inputs, threads, raw)
        self.trace = self._wrap(raw) if raw is not None else {}
        return out

    def _wrap(self, raw: Dict[str, Any], dequantize: bool = False) -> Dict[str, Any]:
        res = {}
        for n, v in raw.items():
            L = self.layers.get(n)
            if L is not None and L.out is not None:
                v = QTensor(v, L.out.scale, L.out.zero_point)
                if dequantize:
                    v = v.dequantize()
            res[n] = v
        return res

    def intermediates(self, *inputs: Any, dequantize: bool = False,
                      threads: Optional[int] = None) -> Dict[str, Any]:
        """Every layer's output of one integer run: a :class:`~qkernels.torch.qarith.QTensor`
        (integers, scale, zero point) for an integer output (its float value with
        ``dequantize=True``), the array itself for a float one."""
        raw: Dict[str, Any] = {n: _as_float_input(v) for n, v in zip(self.inputs, inputs)}
        self._run(inputs, threads, raw)
        return self._wrap(raw, dequantize)

    # -- the reference ------------------------------------------------------------------------
    def _need_reference(self, what: str) -> Any:
        if self.reference is None:
            raise RuntimeError(f"{what} needs a reference model; this IntegerModel has none")
        return self.reference

    def fake_quant(self, x: Any) -> np.ndarray:
        """Float run with fake quantization at the same points (weights and activations)."""
        return self._need_reference("fake_quant").run(x, "fq")

    def float_reference(self, x: Any) -> np.ndarray:
        """The original float model (for a PyTorch-quantized model: PyTorch's quantized run)."""
        return self._need_reference("float_reference").float(x)

    def compare(self, x: Any) -> List[LayerReport]:
        """Per integer layer: the integer run against the reference (SQNR, max abs error,
        cosine similarity: the accumulated effect of quantization up to that layer), and
        against the reference's own version of the same op fed with the integer run's inputs
        (how many quantization steps apart the two land, and on what fraction of elements).

        For a float model the reference is its fake-quant twin: integer and fake quant differ
        only where the exact value sits on (or within float rounding of) a half step. For a
        PyTorch-quantized model it is PyTorch's quantized op: 0 steps everywhere means exact."""
        ref = self._need_reference("compare")
        ti = self.intermediates(x, dequantize=True)
        tf: Dict[str, Any] = {}
        ref.run(x, "float", tf)
        tq: Dict[str, Any] = {}
        if isinstance(ref, GraphReference):
            ref.run(x, "fq", tq)
        out: List[LayerReport] = []
        for name, L in self.layers.items():
            if L.out is None and not isinstance(L, Ly.DynamicLayer):
                continue
            if isinstance(L, (Ly.QuantizeLayer, Ly.DequantizeLayer, Ly.ConstantLayer)) or \
                    name not in tf or name in self.inputs:
                continue
            a = np.asarray(ti[name], np.float64)
            f = np.asarray(tf[name], np.float64)
            local = ref.local(name, {n: ti[n] for n in L.inputs if n in ti}, ti)
            local = f if local is None else np.asarray(local, np.float64)
            err = a - f
            sqnr, cos = _sqnr_cos(a, f)
            fq_sqnr = fq_cos = float("nan")
            if isinstance(tq.get(name), np.ndarray):
                fq_sqnr, fq_cos = _sqnr_cos(np.asarray(tq[name], np.float64), f)
            if L.out is not None:
                unit = float(L.out.scale)
            else:   # dynamic: in accumulator steps (x_scale * w_scale of this call)
                xin = ti[L.inputs[0]]
                unit = L.quantized_input(xin).scale * float(np.max(L.w_scale))
            steps = np.rint(np.abs(a - local) / unit)
            out.append(LayerReport(name, ref.op_name(name, L), sqnr, float(np.abs(err).max()),
                                   cos, float(steps.max()) if steps.size else 0.0,
                                   float(np.mean(steps > 0.5)) if steps.size else 0.0,
                                   fq_sqnr, fq_cos))
        return out

    # -- files and pickling ----------------------------------------------------------------
    @classmethod
    def load(cls, path: str, threads: Optional[int] = None) -> "IntegerModel":
        """The model an :meth:`export` wrote to folder ``path``: the same layers and integers,
        without the original PyTorch model (no reference: ``compare`` / ``fake_quant`` need
        the model that built it).

        Example:
            >>> # im.export("out/resnet", x[:1]); same = IntegerModel.load("out/resnet")
        """
        from .saving import load_model

        layers, inputs, output, preset, mode = load_model(path)
        return cls(layers, inputs, output, preset=preset, threads=threads, mode=mode)

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state["_plan"] = None      # compiled closures: rebuilt on first use
        state["trace"] = {}
        if isinstance(self.reference, TorchReference):   # PyTorch's converted graphs do not pickle
            state["reference"] = None
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)

    def export(self, out_dir: str, x: Any, labels: Any = None, *, plots: bool = False,
               eval_data: Any = None) -> List[str]:
        """Write every integer of the model for C / RTL test benches; returns the paths written
        (see :func:`qkernels.torch.export.export_model`; ``plots``: also the per-layer error
        picture, matplotlib; ``eval_data`` = (inputs, labels): the accuracies of the report)."""
        from .export import export_model

        return export_model(self, out_dir, x, labels, plots=plots, eval_data=eval_data)

    def __repr__(self) -> str:
        kinds: Dict[str, int] = {}
        for L in self.layers.values():
            kinds[L.op] = kinds.get(L.op, 0) + 1
        body = ", ".join(f"{k} x{v}" for k, v in kinds.items())
        name = self.preset.name if self.preset is not None else None
        return f"IntegerModel({len(self.layers)} layers: {body}; preset={name!r}, mode={self.mode!r})"


# ---- references -----------------------------------------------------------------------------------
def fused_graph(model: torch.nn.Module) -> fx.GraphModule:
    """A copy of ``model`` captured with torch.fx, BatchNorm folded and ReLU fused (``fuse_fx``,
    eval mode): the graph :func:`~qkernels.torch.quantize_model` quantizes. Deterministic: the
    same model gives the same node names."""
    import copy

    from torch.ao.quantization.quantize_fx import fuse_fx

    model = copy.deepcopy(model).eval()
    try:
        gm = fuse_fx(model)
    except Exception as exc:
        raise TypeError(f"{type(model).__name__} could not be traced with torch.fx ({exc}); keep "
                        "the untraceable part out of the quantized region") from exc
    gm.eval()
    return gm

class GraphReference:
    """The float model of :func:`~qkernels.torch.quantize_model` and its fake-quant twin.

    ``run(x, "float")`` runs the fused float graph (BatchNorm folded); ``run(x, "fq")`` the same
    graph with the quantization points in float: the input and every integer layer's output
    fake-quantized with its parameters, conv / linear with quantized-dequantized weights (and
    the saturated integer bias), LayerNorm on its PTF-fake-quantized input, a dynamic layer on
    its per-call quantized input. ``local(name, inputs)`` runs one node that way on given inputs.
    """

    def __init__(self, float_model: torch.nn.Module, gm: fx.GraphModule, layers: Dict[str, Ly.Layer],
                 fq_modules: Dict[str, torch.nn.Module], points: Dict[str, rt.QMeta]) -> None:
        self.float_model = float_model
        self.graph_module = gm
        self.layers = layers
        self.fq_modules = fq_modules
        self.points = points                   # node name -> quantization of its output

    def float(self, x: Any) -> np.ndarray:
        with torch.no_grad():
            t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x, F32))
            return self.float_model(t).numpy()

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state["graph_module"] = None   # traced again from the float model (same node names)
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.graph_module = fused_graph(self.float_model)

    def op_name(self, name: str, layer: Ly.Layer) -> str:
        node = self._nodes().get(name)
        if node is None:
            return layer.op
        if node.op == "call_module":
            return type(self.graph_module.get_submodule(node.target)).__name__
        return str(getattr(node.target, "__name__", node.target))

    def _nodes(self) -> Dict[str, fx.Node]:
        return {n.name: n for n in self.graph_module.graph.nodes}

    def _fq(self, name: str, y: Any) -> Any:
        m = self.points.get(name)
        if m is None or not isinstance(y, np.ndarray):
            return y
        lo, hi = m.qrange()
        return qk.fake_quantize(np.asarray(y, F32), F32(m.scale), m.zero_point, lo, hi)

    def _node(self, node: fx.Node, args: Tuple, kwargs: Dict, mode: str) -> Any:
        """One node on numpy / Python values, in mode "float" or "fq"."""
        gm = self.graph_module
        L = self.layers.get(node.name)

        def to_t(v: Any) -> Any:
            return torch.from_numpy(np.ascontiguousarray(v, F32)) if isinstance(v, np.ndarray) else v
        if mode == "fq" and L is not None:
            if isinstance(L, Ly.LayerNormLayer):
                ptf = L.ln.ptf
                args = (ptf.dequantize(ptf.quantize(np.ascontiguousarray(args[0], F32))),) + args[1:]
            elif isinstance(L, Ly.DynamicLayer):
                args = (L.quantized_input(args[0]).dequantize(),) + args[1:]
        targs = fx.node.map_aggregate(args, to_t)
        tkwargs = fx.node.map_aggregate(kwargs, to_t)
        with torch.no_grad():
            if node.op == "call_module":
                mod = self.fq_modules.get(node.name) if mode == "fq" else None
                r = (mod if mod is not None else gm.get_submodule(node.target))(*targs, **tkwargs)
            elif node.op == "call_method":
                r = getattr(targs[0], node.target)(*targs[1:], **tkwargs)
            elif node.op == "get_attr":
                r = getattr(gm, node.target)
            else:
                r = node.target(*targs, **tkwargs)
        y = fx.node.map_aggregate(r, lambda v: v.detach().numpy() if isinstance(v, torch.Tensor) else v)
        return self._fq(node.name, y) if mode == "fq" else y

    def run(self, x: Any, mode: str, trace: Optional[Dict[str, Any]] = None) -> Any:
        env: Dict[fx.Node, Any] = {}
        for node in self.graph_module.graph.nodes:
            if node.op == "placeholder":
                v = _as_float_input(x)
                env[node] = self._fq(node.name, v) if mode == "fq" else v
            elif node.op == "output":
                return fx.node.map_arg(node.args[0], lambda n: env[n])
            else:
                args = fx.node.map_arg(node.args, lambda n: env[n])
                kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
                env[node] = self._node(node, args, kwargs, mode)
            if trace is not None:
                trace[node.name] = env[node]
        raise RuntimeError("graph without output")

    def local(self, name: str, inputs: Dict[str, Any], values: Dict[str, Any]) -> Any:
        """Node ``name`` in fake-quant mode, fed with ``values`` (node name -> value)."""
        node = self._nodes().get(name)
        if node is None or node.op in ("placeholder", "output"):
            return None
        args = fx.node.map_arg(node.args, lambda n: values[n.name])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: values[n.name])
        return self._node(node, args, kwargs, "fq")


class TorchReference:
    """A PyTorch-quantized model's own run: ``run(x, "float", trace)`` gives every node's
    output (dequantized where quantized), ``float(x)`` the model's output."""

    def __init__(self, gm: fx.GraphModule) -> None:
        self.graph_module = gm

    def float(self, x: Any) -> np.ndarray:
        with torch.no_grad():
            y = self.graph_module(torch.from_numpy(_as_float_input(x)))
        return y.numpy() if isinstance(y, torch.Tensor) else y

    def op_name(self, name: str, layer: Ly.Layer) -> str:
        return layer.op

    def run(self, x: Any, mode: str, trace: Optional[Dict[str, Any]] = None) -> Any:
        if mode != "float":
            raise RuntimeError("a PyTorch-quantized model has no fake-quant twin: compare() "
                               "compares it with PyTorch's own quantized run")
        gm = self.graph_module

        class _Rec(fx.Interpreter):
            def run_node(self, n: fx.Node) -> Any:
                r = super().run_node(n)
                if trace is not None and isinstance(r, torch.Tensor):
                    trace[n.name] = (r.dequantize() if r.is_quantized else r).detach().numpy()
                return r
        with torch.no_grad():
            y = _Rec(gm).run(torch.from_numpy(_as_float_input(x)))
        return y.numpy() if isinstance(y, torch.Tensor) else y

    def local(self, name: str, inputs: Dict[str, Any], values: Dict[str, Any]) -> Any:
        return None


def structured_output(spec: Any, is_value: Callable[[Any], bool], name_of: Callable[[Any], str]) -> Any:
    """An output spec for :class:`IntegerModel`: a layer name for one tensor, else the structure
    with :class:`OutputRef` in place of each run-time value."""
    if is_value(spec):
        return name_of(spec)
    return Ly.map_nested(spec, is_value, lambda v: OutputRef(name_of(v)))
