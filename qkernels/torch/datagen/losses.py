"""Losses of the data generation: BatchNorm alignment, layer weights, output losses, and the
learning-rate schedules of the per-batch optimizers."""
from __future__ import annotations

from typing import List, Sequence, Tuple, Union

import torch

from .config import BNLayerWeightingType, OutputLossType, SchedulerType

STD_EPS = 1e-6      # sqrt(var + eps) of the generated images' statistics (MCT's eps)
OUT_EPS = 1e-6      # the eps of the inverse min-max output losses


def moments(a: torch.Tensor, per_image: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and second moment of an activation (N, C, ...): over the batch and the
    spatial axes, or (``per_image``) over the spatial axes only, shape (N, C)."""
    if a.dim() < 2:
        raise ValueError(f"a BatchNorm input must have a batch and a channel axis; got shape {tuple(a.shape)}")
    dims = tuple(range(2, a.dim())) if per_image else (0,) + tuple(range(2, a.dim()))
    if not dims:  # (N, C) per image: each value is its own mean
        return a, a * a
    return a.mean(dims), (a * a).mean(dims)


def std_from(mean: torch.Tensor, m2: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(m2 - mean * mean + STD_EPS)


def l2_square(target_mean: torch.Tensor, target_std: torch.Tensor, mean: torch.Tensor,
              std: torch.Tensor) -> torch.Tensor:
    """``||mean - target_mean||^2 / C + ||std - target_std||^2 / C`` (summed over images when the
    statistics are per image).

    Example:
        >>> z = torch.zeros(4)
        >>> float(l2_square(z, torch.ones(4), z + 1, torch.ones(4)))
        1.0
    """
    c = target_mean.numel()
    return ((mean - target_mean) ** 2).sum() / c + ((std - target_std) ** 2).sum() / c


def static_layer_weights(kind: BNLayerWeightingType, n_layers: int) -> List[float]:
    """AVERAGE: 1/L each; FIRST_LAYER_MULTIPLIER: 10 for the first entry, 1 for the others."""
    if kind is BNLayerWeightingType.AVERAGE:
        return [1.0 / n_layers] * n_layers
    if kind is BNLayerWeightingType.FIRST_LAYER_MULTIPLIER:
        return [10.0] + [1.0] * (n_layers - 1)
    raise ValueError(f"{kind} weights are computed per step")


def grad_layer_weights(losses: Sequence[torch.Tensor], acts: Sequence[torch.Tensor]) -> List[float]:
    """GRAD: weights proportional to 1 / ||d loss_l / d act_l||, normalised to sum to 1 (layers
    whose gradient is zero share what the others leave: all weights equal if every one is)."""
    norms = []
    for loss, act in zip(losses, acts):
        (g,) = torch.autograd.grad(loss, act, retain_graph=True, allow_unused=True)
        norms.append(0.0 if g is None else float(torch.linalg.vector_norm(g)))
    inv = [1.0 / n if n > 0 else 0.0 for n in norms]
    tot = sum(inv)
    if tot == 0:
        return [1.0 / len(norms)] * len(norms)
    return [v / tot for v in inv]


def _as_list(out: Union[torch.Tensor, Sequence[torch.Tensor]]) -> List[torch.Tensor]:
    return list(out) if isinstance(out, (list, tuple)) else [out]


def output_loss(kind: OutputLossType, outputs: Union[torch.Tensor, Sequence[torch.Tensor]],
                last_inputs: Sequence[torch.Tensor], last_weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """The output loss of ``kind`` on the model's outputs (see :class:`OutputLossType`)."""
    if kind is OutputLossType.NONE:
        return torch.zeros(())
    outs = _as_list(outputs)
    total = torch.zeros(())
    if kind is OutputLossType.REGULARIZED_MIN_MAX_DIFF:
        if not isinstance(outputs, (list, tuple)):  # (N, C, ...) -> (N, C), spatially averaged
            outs = [outputs.reshape(outputs.shape[0], outputs.shape[1], -1).mean(-1)]
        if not last_weights:
            raise ValueError("REGULARIZED_MIN_MAX_DIFF needs a layer of last_layer_types before the "
                             "model's output; none was found")
        for w, out, inp in zip(last_weights, outs, last_inputs):
            w_norm = torch.linalg.vector_norm(w.reshape(w.shape[0], -1), dim=1)
            mx, amx = out.max(1)
            mn, amn = out.min(1)
            x_norm = torch.linalg.vector_norm(inp.reshape(inp.shape[0], inp.shape[1], -1).mean(-1), dim=1)
            reg_min = (mn.abs() - 0.5 * x_norm * w_norm[amn]).abs()
            reg_max = (mx.abs() - 0.5 * x_norm * w_norm[amx]).abs()
            total = total + (reg_min + reg_max + 1 / (mx - mn + OUT_EPS)).mean()
        return total
    for out in outs:
        o = out.reshape(out.shape[0], -1)
        diff = o.max(1)[0] - o.min(1)[0]
        if kind is OutputLossType.NEGATIVE_MIN_MAX_DIFF:
            total = total - diff.mean()
        else:  # INVERSE_MIN_MAX_DIFF
            total = total + 1 / (diff + OUT_EPS).mean()
    return total


class Schedule:
    """The learning-rate schedule of one batch's optimizer (see :class:`SchedulerType`),
    stepped once per optimisation step with the step's loss."""

    def __init__(self, kind: SchedulerType, optimizer: torch.optim.Optimizer, n_iter: int) -> None:
        self.kind = kind
        self.opt = optimizer
        self.base = [g["lr"] for g in optimizer.param_groups]
        self.steps = 0
        self.step_size = max(1, n_iter // 3)
        self.patience = n_iter // 50
        self.factor, self.min_lr, self.threshold = 0.5, 1e-4, 1e-4
        self.best = float("inf")
        self.bad = 0

    def step(self, loss: float) -> None:
        self.steps += 1
        if self.kind is SchedulerType.STEP:
            for g, b in zip(self.opt.param_groups, self.base):
                g["lr"] = b * 0.1 ** (self.steps // self.step_size)
            return
        if loss < self.best * (1 - self.threshold):
            self.best, self.bad = loss, 0
        else:
            self.bad += 1
        if self.bad > self.patience:
            for g in self.opt.param_groups:
                new = max(g["lr"] * self.factor, self.min_lr)
                if g["lr"] - new > 1e-8:
                    g["lr"] = new
            self.bad = 0
            if self.kind is SchedulerType.REDUCE_ON_PLATEAU_WITH_RESET:
                self.best = float("inf")

    def lr(self) -> float:
        return float(self.opt.param_groups[0]["lr"])
