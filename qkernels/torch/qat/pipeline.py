"""The power-of-two PTQ -> QAT -> PTQ pipeline, ending in an integer-exact model.

1. **PTQ** of weights and biases (power-of-two scales; ``ptq_accuracy``: weights quantized,
   activations float), and the full power-of-two PTQ integer model it starts from.
2. **QAT**: fine-tune with fake-quantized power-of-two weights (straight-through estimator) on
   the fused graph (BatchNorm folded), activations float (``qat.mode: weight_only``, the
   replaced tool's step 2) or fake-quantized too (``qat.mode: full``); with
   ``qat.learn_scales`` every scale's log2 is trained (TQT), and stays a power of two; it
   starts (``qat.scale_init: mse``, the default) at the power of two with the least squared
   quantization error on the weights and calibration batches
   (:meth:`~qkernels.torch.qat.model.QATModel.init_scales_mse`), or at the PTQ's (``ptq``).
3. **Final PTQ**: the integer model of the trained weights, with the weight scales QAT ended with;
   the activations calibrated on the trained model (weight-only QAT) or with the scales QAT
   trained (full QAT). Without it (``final_ptq=False``, ``--no-final-ptq``) the result is the
   weight-only integer model (float activations).

:func:`run_qat` and :func:`run_ptq` return a :class:`PipelineResult` with the
:class:`~qkernels.torch.quantize.IntegerModel` (pow2 preset) and the report (see
:mod:`qkernels.torch.qat.report`).
"""
from __future__ import annotations

import copy
import sys
import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..._progress import Progress
from ...loaders import ModelError, load_factory
from .. import layers as Ly
from ..config import QuantConfig, TensorConfig
from ..model import IntegerModel
from ..quantize import quantize_model
from . import report as rep
from .config import PipelineConfig, TensorSpec
from .model import QATModel, build_qat_model

__all__ = ["Data", "EpochStats", "PipelineResult", "quant_config", "load_data",
           "run_ptq", "run_qat", "accuracy", "simulation_model", "LOW_ACT_BITS",
           "weight_only_advice"]

#: ((x_train, y_train), (x_test, y_test))
Data = Tuple[Tuple[torch.Tensor, torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]

TOOL_TYPE = "PTQ → Weight-Only QAT → Final PTQ Pipeline"
STEP1 = "Step 1: PTQ for weight/bias initialization"
STEP2 = "Step 2: Weight-only QAT training"
STEP3 = "Step 3: Final PTQ for input/output quantization"


@dataclass
class EpochStats:
    epoch: int
    loss: float
    accuracy: float       # percent, the QAT model in eval mode on the evaluation set
    seconds: float        # training time of the epoch (evaluation excluded)
    learning_rate: float


@dataclass
class PipelineResult:
    """What a pipeline run gives: the integer model, the trained QAT model (None for PTQ only),
    the per-epoch history and the report (a JSON-ready dict)."""

    integer_model: IntegerModel
    qat_model: Optional[QATModel]
    history: List[EpochStats] = field(default_factory=list)
    report: Dict[str, Any] = field(default_factory=dict)


#: Activations this narrow (bits) are where weight-only QAT followed by the final PTQ does not
#: recover (docs/qat_results.md: W4A4 ends 6 to 67 points below float on the reference models
#: with min-max ranges, 2 to 4 with MSE ones; full QAT with learned scales within 1 point).
LOW_ACT_BITS = 4


def weight_only_advice(cfg: PipelineConfig, final_ptq: bool = True) -> Optional[str]:
    """The recommendation for a run whose activations are :data:`LOW_ACT_BITS` bits or fewer and
    quantized only by the final PTQ after weight-only QAT (the replaced tool's steps), or None
    when it does not apply (full QAT, wider activations, or no final PTQ).

    Example:
        >>> from qkernels.torch.qat import load_config
        >>> weight_only_advice(load_config(None, {"quantization": {"input": {"bitwidth": 8}}})) is None
        True
    """
    if cfg.qat.mode == "full" or not final_ptq:
        return None
    q = cfg.quantization
    bits = min(q["input"].bitwidth, q["output"].bitwidth)
    if bits > LOW_ACT_BITS:
        return None
    return (f"{bits}-bit activations after weight-only QAT: the final PTQ calibrates activation "
            "ranges the training never saw; at W4A4 the reference models end 6 to 67 points "
            "below float with min-max ranges, 2 to 4 with ptq.observer: mse "
            "(docs/qat_results.md). Full QAT with learned power-of-two scales ends within 1 "
            "point of float there: --full --learn-scales (qat.mode: full, "
            "qat.learn_scales: true)")


# ---- configuration -> QuantConfig ---------------------------------------------------------------
def _act(spec: TensorSpec, observer: str) -> TensorConfig:
    return TensorConfig(bits=spec.bitwidth, symmetric=spec.symmetric, signed=spec.symmetric,
                        power_of_two="ceil", observer=observer)


def quant_config(cfg: PipelineConfig, mode: str = "static") -> QuantConfig:
    """The :class:`~qkernels.torch.quantize.QuantConfig` of the pipeline's configuration: pow2
    preset, power-of-two (ceil) scales (min-max weights, activations by ``ptq.observer``),
    symmetric weights (per channel or per tensor),
    ``input`` for every activation a layer reads (and the model input), ``output`` for the
    tensors the model returns (when it differs from ``input``), the int32 bias saturated to
    ``bias.bitwidth`` bits.

    Example:
        >>> quant_config(PipelineConfig()).preset
        'pow2'
    """
    q = cfg.quantization
    w = q["weight"]
    act, out = _act(q["input"], cfg.ptq.observer), _act(q["output"], cfg.ptq.observer)
    return QuantConfig(
        weight=TensorConfig(bits=w.bitwidth, symmetric=True, per_channel=w.per_channel, signed=True,
                            power_of_two="ceil"),
        activation=act, input=None, output=None if out == act else out,
        # weight-only: float activations, so no activation scale to quantize the bias with
        bias=None if mode == "weight_only" else
        TensorConfig(bits=q["bias"].bitwidth, symmetric=True, signed=True),
        preset="pow2", mode=mode)


# ---- data ------------------------------------------------------------------------------------------
def load_data(spec: str) -> Data:
    """``digits`` (scikit-learn's, offline; the reference models' data) or ``module:factory``, a
    function returning ``((x_train, y_train), (x_test, y_test))`` (arrays or tensors; x float,
    y class indices, or float targets for MSELoss)."""
    if spec == "digits":
        from ..reference_models import digits
        return digits()
    if ":" not in spec:
        raise ValueError(f"data.dataset {spec!r}: use digits or module:factory")
    try:
        factory = load_factory(spec, "data.dataset")
    except ModelError as exc:
        raise ValueError(str(exc)) from None
    got = factory()
    try:
        (xtr, ytr), (xte, yte) = got
    except (TypeError, ValueError):
        raise ValueError(f"data.dataset {spec!r}: the factory must return ((x_train, y_train), "
                         f"(x_test, y_test)); got {type(got).__name__}") from None

    def t(a: Any, what: str) -> torch.Tensor:
        a = a if isinstance(a, torch.Tensor) else torch.from_numpy(np.asarray(a))
        if a.dtype.is_floating_point:
            return a.float()
        if what.startswith("x"):
            raise ValueError(f"data.dataset {spec!r}: {what} must be floating point, got {a.dtype}")
        return a.long()
    out = ((t(xtr, "x_train"), t(ytr, "y_train")), (t(xte, "x_test"), t(yte, "y_test")))
    for (x, y), part in zip(out, ("train", "test")):
        if len(x) != len(y) or len(x) == 0:
            raise ValueError(f"data.dataset {spec!r}: {part} has {len(x)} inputs and {len(y)} "
                             "targets (they must match and not be empty)")
    return out


def _batches(x: torch.Tensor, n: int, limit: Optional[int] = None) -> List[torch.Tensor]:
    out = [x[i:i + n] for i in range(0, len(x), n)]
    return out[:limit] if limit is not None else out


def accuracy(f: Callable[[Any], Any], x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    """Top-1 accuracy in percent of ``f`` (a torch module or an IntegerModel) on (x, y)."""
    hits = 0
    for i in range(0, len(x), batch):
        xb = x[i:i + batch]
        with torch.no_grad():
            out = f(xb) if isinstance(f, nn.Module) else f(xb.numpy())
        pred = np.asarray(out.numpy() if isinstance(out, torch.Tensor) else out).argmax(1)
        hits += int((pred == y[i:i + batch].numpy()).sum())
    return 100.0 * hits / len(x)


# ---- the pipeline ------------------------------------------------------------------------------------
class _Run:
    """State shared by the steps of one run."""

    def __init__(self, cfg: PipelineConfig, model: nn.Module, data: Data,
                 progress: bool) -> None:
        self.cfg, self.model = cfg, copy.deepcopy(model).eval()
        (self.xtr, self.ytr), (xte, yte) = data
        n_eval = len(xte) if cfg.ptq.max_eval_batches is None else \
            min(len(xte), cfg.ptq.max_eval_batches * cfg.training.batch_size)
        self.xte, self.yte = xte[:n_eval], yte[:n_eval]
        self.verbose = bool(progress)
        g = torch.Generator().manual_seed(cfg.training.seed)
        perm = torch.randperm(len(self.xtr), generator=g)
        self.calib = _batches(self.xtr[perm], cfg.training.batch_size, cfg.ptq.calibration_batches)
        self.bs = cfg.training.batch_size

    def line(self, text: str) -> None:
        """A progress line on stderr (when the run shows progress)."""
        if self.verbose:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def acc(self, f: Any) -> float:
        return accuracy(f, self.xte, self.yte, self.bs)

    def quantize(self, model: nn.Module, mode: str, fixed: Optional[Dict[str, Any]] = None
                 ) -> IntegerModel:
        return quantize_model(model, self.calib, config=quant_config(self.cfg, mode),
                              fixed_qparams=fixed)


def run_ptq(cfg: PipelineConfig, model: nn.Module, data: Data, *,
            progress: bool = False) -> PipelineResult:
    """Power-of-two PTQ only: weights, biases and activations (calibrated on
    ``ptq.calibration_batches`` training batches), integer-exact with the pow2 preset.

    Example:
        >>> # res = run_ptq(load_config("cfg.yaml"), model, load_data("digits"))
        >>> # res.integer_model(x).argmax(1); res.report["final_accuracy"]
    """
    cfg.check_deployable(True)
    r = _Run(cfg, model, data, progress)
    t0 = time.perf_counter()
    initial = r.acc(r.model)
    r.line(f"float accuracy {initial:.2f}%")
    wo = r.quantize(r.model, "weight_only")
    ptq_w = r.acc(wo)
    im = r.quantize(r.model, "static")
    report = _report(r, im, None, [], initial=initial, ptq=ptq_w, best=None, final_ptq=True,
                     kind="PTQ", steps=[STEP1, "Step 2: PTQ of inputs and outputs (activation "
                                        "calibration)"], seconds=time.perf_counter() - t0)
    r.line(f"PTQ: weights only {ptq_w:.2f}%  integer-exact "
                    f"{report['qkernels']['integer_exact_accuracy']:.2f}%")
    return PipelineResult(im, None, [], report)


def run_qat(cfg: PipelineConfig, model: nn.Module, data: Data, *, final_ptq: bool = True,
            progress: bool = False) -> PipelineResult:
    """PTQ -> QAT -> final PTQ (see the module docstring); ``final_ptq=False`` stops after QAT
    with the weight-only integer model.

    Example:
        >>> # cfg = load_config("examples/qat_pow2_w4a4.yaml")
        >>> # res = run_qat(cfg, load_model("reference:resnet"), load_data("digits"))
        >>> # res.integer_model(x)          # integer-exact, the scales QAT learned
    """
    cfg.check_deployable(final_ptq)
    r = _Run(cfg, model, data, progress)
    advice = weight_only_advice(cfg, final_ptq)
    if advice is not None:
        if r.verbose:
            r.line(f"note: {advice}")
        else:
            warnings.warn(advice, UserWarning, stacklevel=2)
    tc, qc = cfg.training, cfg.qat
    full = qc.mode == "full"
    t_start = time.perf_counter()
    torch.manual_seed(tc.seed)
    initial = r.acc(r.model)
    r.line(f"{STEP1} (float accuracy {initial:.2f}%)")
    wo = r.quantize(r.model, "weight_only")
    ptq_w = r.acc(wo)
    deployable = final_ptq or full
    if deployable:   # QAT starts from the PTQ integer model's graph and scales
        ptq_full = r.quantize(r.model, "static")
        ptq_int: Optional[float] = r.acc(ptq_full)
    else:   # weight-only to the end: only the graph and weight scales are needed, and the
        # configured activations may be wider than the integer kernels take (16-bit outputs)
        qc8 = quant_config(cfg, "static")
        a8 = _act(TensorSpec(bitwidth=8, symmetric=True, power_of_2=True), cfg.ptq.observer)
        ptq_full = quantize_model(r.model, r.calib, config=replace(qc8, activation=a8, output=None))
        ptq_int = None
    r.line(f"  PTQ weights only {ptq_w:.2f}%" + (
        f", weights and activations (integer-exact) {ptq_int:.2f}%" if ptq_int is not None else ""))
    q = cfg.quantization
    qat = build_qat_model(ptq_full,
                          weight_bits=q["weight"].bitwidth, per_channel=q["weight"].per_channel,
                          bias_bits=q["bias"].bitwidth, learn_weight_scales=qc.learn_scales,
                          learn_act_scales=qc.learn_scales and full, rounding=qc.scale_rounding)
    qat.set_activation_quant(full)
    if qc.learn_scales and qc.scale_init == "mse":
        qat.init_scales_mse(r.calib)
    step2 = STEP2 if not full else ("Step 2: Full QAT training (weights and activations "
                                    "fake-quantized" + (", learned power-of-two scales)"
                                                        if qc.learn_scales else ")"))
    r.line(f"{step2}: {tc.epochs} epochs")
    history = _train(r, qat)
    best = max((h.accuracy for h in history), default=r.acc(qat.eval()))
    deploy = qat.deployable(r.model)
    if final_ptq:
        step3 = STEP3 if not full else ("Step 3: Final integer model with the scales QAT "
                                        "trained (no recalibration)")
        r.line(step3)
        im = r.quantize(deploy, "static", qat.fixed_qparams(activations=full))
    else:
        im = r.quantize(deploy, "weight_only", qat.fixed_qparams(activations=False))
    _check_deployed(qat, im)
    steps = [STEP1, step2] + ([step3] if final_ptq else [])
    kind = (TOOL_TYPE if final_ptq else "PTQ → Weight-Only QAT") if not full else \
        ("PTQ → Full QAT" + (" (learned power-of-two scales)" if qc.learn_scales else "") +
         (" → Integer model" if final_ptq else ""))
    report = _report(r, im, qat, history, initial=initial, ptq=ptq_w, best=best,
                     final_ptq=final_ptq, kind=kind, steps=steps,
                     seconds=time.perf_counter() - t_start, ptq_int=ptq_int)
    k = report["qkernels"]
    r.line(f"final: {report['final_accuracy']:.2f}% (fake-quant), "
                    f"{k['integer_exact_accuracy']:.2f}% integer-exact; float {initial:.2f}%"
                    if final_ptq else
                    f"final (weights quantized, activations float): "
                    f"{k['integer_exact_accuracy']:.2f}%; float {initial:.2f}%")
    return PipelineResult(im, qat, history, report)


def _train(r: _Run, qat: QATModel) -> List[EpochStats]:
    tc, qc = r.cfg.training, r.cfg.qat
    groups = [{"params": qat.weight_parameters(), "weight_decay": tc.weight_decay}]
    scales = qat.scale_parameters()
    if scales:
        groups.append({"params": scales, "lr": qc.scale_learning_rate, "weight_decay": 0.0})
    if tc.optimizer == "SGD":
        opt: torch.optim.Optimizer = torch.optim.SGD(groups, lr=tc.learning_rate,
                                                     momentum=tc.momentum)
    else:
        cls = torch.optim.AdamW if tc.optimizer == "AdamW" else torch.optim.Adam
        opt = cls(groups, lr=tc.learning_rate)
    sched: Any = (torch.optim.lr_scheduler.StepLR(opt, tc.step_size, tc.gamma)
                  if tc.scheduler == "StepLR" else
                  torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(tc.epochs, 1)))
    mse = tc.criterion == "MSELoss"
    crit = nn.MSELoss() if mse else nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(tc.seed + 1)
    history: List[EpochStats] = []
    for epoch in range(1, tc.epochs + 1):
        qat.train()
        t0 = time.perf_counter()
        perm = torch.randperm(len(r.xtr), generator=g)
        idx = [perm[i:i + r.bs] for i in range(0, len(perm), r.bs)]
        bar = Progress(f"epoch {epoch}/{tc.epochs}", len(idx), enabled=r.verbose)
        total, count = 0.0, 0
        lr = opt.param_groups[0]["lr"]
        for b in idx:
            xb, yb = r.xtr[b], r.ytr[b]
            out = qat(xb)
            if mse and yb.dim() == 1 and not yb.dtype.is_floating_point:
                yb = nn.functional.one_hot(yb, out.shape[-1]).to(out.dtype)
            loss = crit(out, yb)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"epoch {epoch}: the loss is {loss.item()} (lower "
                                         "training.learning_rate or qat.scale_learning_rate)")
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
            count += len(b)
            bar.postfix(loss=total / count)
            bar.step()
        bar.close()
        sched.step()
        seconds = time.perf_counter() - t0
        qat.eval()
        acc = r.acc(qat)
        history.append(EpochStats(epoch, total / max(count, 1), acc, seconds, lr))
        r.line(f"epoch {epoch}/{tc.epochs}  loss {total / max(count, 1):.4f}  "
                        f"accuracy {acc:.2f}%  ({seconds:.2f} s)")
    qat.eval()
    return history


def _check_deployed(qat: QATModel, im: IntegerModel) -> None:
    """The integer model runs exactly the weights and scales QAT ended with: its dequantized
    weights are QAT's fake-quantized ones, bit for bit, and so are its weight and activation
    scales."""
    full = im.mode == "static" and any(q.enabled for q in qat.quantizers.values())
    want = qat.fixed_qparams(activations=full)
    fq = getattr(im.reference, "fq_modules", {})
    for name, L in qat.layers.items():
        w = L.quantized_weight().detach().numpy()
        got = im.layers.get(name)
        if isinstance(got, (Ly.Conv2dLayer, Ly.LinearLayer)):
            ws = np.asarray(got.w_scale, np.float32)
            deq = got.w_int.astype(np.float32) * (ws.reshape((-1,) + (1,) * (w.ndim - 1))
                                                  if ws.ndim else ws)
            if not np.array_equal(np.broadcast_to(ws, np.shape(want[name + ".weight"])),
                                  want[name + ".weight"]):
                raise RuntimeError(f"layer {name}: weight scale differs from the trained one")
        elif name in fq:   # weight-only: the float layer runs the quantized-dequantized weights
            m = fq[name]
            deq = (m[0] if isinstance(m, nn.Sequential) else m).weight.detach().numpy()
        else:
            raise RuntimeError(f"layer {name}: not in the integer model")
        if not np.array_equal(deq, w):
            raise RuntimeError(f"layer {name}: the integer model's weights are not the trained ones")
    qp = im.qparams
    for name, v in want.items():
        if not name.endswith(".weight") and tuple(qp[name]) != tuple(v):
            raise RuntimeError(f"{name}: activation parameters {qp[name]} differ from the "
                               f"trained {v}")


def _report(r: _Run, im: IntegerModel, qat: Optional[QATModel], history: List[EpochStats], *,
            initial: float, ptq: float, best: Optional[float], final_ptq: bool, kind: str,
            steps: List[str], seconds: float, ptq_int: Optional[float] = None) -> Dict[str, Any]:
    cfg = r.cfg
    q = cfg.quantization
    static = im.mode == "static"
    # layer -> weight scale(s): the integer layers', or (weight-only) those QAT ended with
    w_scales = {n: L.w_scale for n, L in im.compute_layers().items()} if static else \
        {n[:-len(".weight")]: v for n, v in qat.fixed_qparams(activations=False).items()}
    targets = {n.name: str(n.target) for n in im.graph_module.graph.nodes if n.name in w_scales}
    integer = r.acc(im)
    sim = simulation_model(im, q["weight"].bitwidth, q["weight"].per_channel, q["bias"].bitwidth) \
        if static else None
    final = r.acc(sim) if sim is not None else integer
    ours: Dict[str, Any] = {
        "integer_exact_accuracy": integer,
        "pytorch_fake_quant_accuracy": r.acc(im.fake_quant) if static else None,
        "qat_model_accuracy": None if qat is None else r.acc(qat),
        "ptq_integer_exact_accuracy": ptq_int if qat is not None else integer,
        "float_accuracy": initial,
        "evaluated_samples": len(r.yte),
        "preset": im.preset.name, "mode": im.mode,
        "qat_mode": None if qat is None else cfg.qat.mode,
        "learned_scales": bool(qat is not None and cfg.qat.learn_scales),
        "final_ptq": final_ptq, "seconds": seconds,
        "config": cfg.to_dict(),
    }
    if history:
        ours["history"] = [vars(h) for h in history]
        ours["seconds_per_epoch"] = float(np.median([h.seconds for h in history]))
        ours["last_epoch_accuracy"] = history[-1].accuracy
    if static:
        ours["layers"] = rep.layer_shifts(im, targets)
        x = r.xte[:min(len(r.xte), 64)].numpy()
        ours["integer_vs_fake_quant"] = _integer_vs_qat(im, sim, x)
        ours["integer_vs_pytorch_fake_quant"] = [
            {"node": c.name, "op": c.op, "max_steps": c.steps_diff_vs_fake_quant,
             "fraction_differing": c.frac_diff_vs_fake_quant, "sqnr_db_vs_float": c.sqnr_db}
            for c in im.compare(x)]
    return {
        "quantization_type": kind,
        "pipeline_steps": steps,
        "config": {k: {"bitwidth": v.bitwidth, "symmetric": v.symmetric, "power_of_2": v.power_of_2}
                   for k, v in q.items()},
        "final_quantization_details": rep.quantization_details(
            im, w_scales, q["weight"].bitwidth, q["bias"].bitwidth if static else None, targets),
        "initial_accuracy": round(initial, 4),
        "ptq_accuracy": round(ptq, 4),
        "qat_best_accuracy": None if best is None else round(best, 4),
        "final_accuracy": round(final, 4),
        "total_improvement": round(round(final, 4) - round(initial, 4), 4),
        "qkernels": ours,
    }


def simulation_model(im: IntegerModel, weight_bits: int, per_channel: bool, bias_bits: int
                     ) -> QATModel:
    """The fake-quant model of a static pow2 integer model: its weights, weight scales and
    activation parameters, rounding as its integer ops do (eval mode). It is what QAT trains on,
    and what ``final_accuracy`` measures."""
    sim = build_qat_model(im, weight_bits=weight_bits, per_channel=per_channel,
                          bias_bits=bias_bits, learn_weight_scales=True)
    return sim.eval()


def _integer_vs_qat(im: IntegerModel, qat: QATModel, x: np.ndarray) -> List[Dict[str, Any]]:
    """Per quantized node: how many of the integer run's elements differ from the QAT model's
    fake-quantized value (both dequantized), and by how many steps at most."""
    from torch import fx

    seen: Dict[str, torch.Tensor] = {}

    class _Rec(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            v = super().run_node(n)
            if n.op == "call_module" and n.target.startswith("qat_act_"):
                seen[n.args[0].name] = v
            return v
    with torch.no_grad():
        _Rec(qat.graph_module).run(torch.from_numpy(x))
    ti = im.intermediates(x, dequantize=True)
    qp = im.qparams
    out = []
    for node in im.graph_module.graph.nodes:
        if node.name not in seen or node.name not in qp:
            continue
        steps = np.abs(np.asarray(ti[node.name], np.float64) - seen[node.name].double().numpy()) \
            / qp[node.name][0]
        out.append({"node": node.name, "max_steps": float(np.rint(steps.max())),
                    "fraction_differing": float(np.mean(steps > 0.5))})
    return out
