"""The optimisation: images whose statistics at every BatchNorm layer match the layer's stored
running statistics (MCT's data generation, and the data-free methods it follows: ZeroQ,
DeepInversion).

One iteration takes one optimizer step on every batch of images. With the ``AllImages``
granularity the statistics of a batch are pooled with the other batches' statistics as they
were at the end of the previous iteration, so the batches of an iteration are independent:
they may be optimized in any order, by any number of processes, with the same result.
Under ``torchrun`` (torch.distributed initialized) the batches are dealt round-robin to the
processes and the statistics, losses and final images are gathered with ``all_gather``.
"""
from __future__ import annotations

import copy
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from .config import BNLayerWeightingType, DataGenConfig, ImageGranularity, OutputLossType, _pair
from .losses import (Schedule, grad_layer_weights, l2_square, moments, output_loss,
                     static_layer_weights, std_from)
from .pipeline import ImagePipeline, batch_generator, initial_images, n_batches

INPUT = "image_input"   # the name of the input-image "layer" (MCT's IMAGE_INPUT)


@dataclass
class DataGenResult:
    """What :func:`generate` returns.

    Attributes:
        images: (n_images, C, H, W) float32, in the model's input units (normalized).
        layers: the aligned layers, in order: ``"image_input"`` first (when the config aligns
            the input), then the BatchNorm layers by module name.
        target_mean, target_std: per layer, the stored running mean and sqrt(running_var)
            (for the input: 0 and 1).
        history: per layer, the alignment loss (L2 square) of the statistics of all images
            (pooled over the batches, as of each iteration), one value per iteration;
            ``history[layer][0]`` is before the first step.
        loss: per iteration, the mean over batches of the total loss of the step.
        bn_loss, out_loss: the same for the weighted BatchNorm loss and the output loss.
        final_mean, final_std: per layer, the statistics of all images in the last iteration.
        seconds: wall time of the optimisation (this process).
        iter_seconds: wall time of every iteration (this process).
        iter_cpu_seconds: CPU time of this process in every iteration (all its threads).
    """

    images: torch.Tensor
    layers: List[str]
    target_mean: Dict[str, torch.Tensor]
    target_std: Dict[str, torch.Tensor]
    history: Dict[str, List[float]] = field(default_factory=dict)
    loss: List[float] = field(default_factory=list)
    bn_loss: List[float] = field(default_factory=list)
    out_loss: List[float] = field(default_factory=list)
    final_mean: Dict[str, torch.Tensor] = field(default_factory=dict)
    final_std: Dict[str, torch.Tensor] = field(default_factory=dict)
    seconds: float = 0.0
    iter_seconds: List[float] = field(default_factory=list)
    iter_cpu_seconds: List[float] = field(default_factory=list)


def _dist_info(distributed: Optional[bool]) -> Tuple[int, int, Any]:
    import torch.distributed as dist

    on = dist.is_available() and dist.is_initialized()
    if distributed and not on:
        raise RuntimeError("distributed=True but torch.distributed is not initialized (run under "
                           "torchrun and call init_distributed() first)")
    if on and distributed is not False:
        return dist.get_rank(), dist.get_world_size(), dist
    return 0, 1, None


def init_distributed(backend: str = "gloo") -> Tuple[int, int]:
    """Initialize torch.distributed from torchrun's environment (WORLD_SIZE, RANK,
    MASTER_ADDR...) when it is set and not yet initialized; returns (rank, world size).

    Example:
        >>> init_distributed()  # a plain single process
        (0, 1)
    """
    import os

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group(backend=backend)
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def infer_channels(model: nn.Module) -> Optional[int]:
    """The input channels of the model's first convolution, if it has one."""
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return int(m.in_channels)
    return None


class _Probe:
    """Forward hooks: the input of every aligned layer, and of the last layers (for the
    regularized output loss)."""

    def __init__(self, model: nn.Module, cfg: DataGenConfig) -> None:
        self.bn: List[Tuple[str, nn.Module]] = []
        for name, m in model.named_modules():
            if isinstance(m, cfg.bn_layer_types):
                rm, rv = getattr(m, "running_mean", None), getattr(m, "running_var", None)
                if not isinstance(rm, torch.Tensor) or not isinstance(rv, torch.Tensor):
                    raise ValueError(f"layer {name!r} ({type(m).__name__}) has no running_mean / "
                                     "running_var buffers (track_running_stats=False?): it cannot "
                                     "be aligned; leave its type out of bn_layer_types")
                self.bn.append((name, m))
        if not self.bn:
            raise ValueError("data generation needs a model with at least one layer of "
                             f"bn_layer_types ({', '.join(t.__name__ for t in cfg.bn_layer_types)})")
        self.acts: Dict[str, torch.Tensor] = {}
        self.handles = [m.register_forward_pre_hook(self._hook(n)) for n, m in self.bn]
        self.last = _last_layers(model, cfg.last_layer_types) \
            if cfg.output_loss is OutputLossType.REGULARIZED_MIN_MAX_DIFF else []
        self.last_weights = [m.weight.detach().clone() for _, m in self.last]
        self.last_acts: Dict[str, torch.Tensor] = {}
        self.handles += [m.register_forward_pre_hook(self._hook(n, self.last_acts)) for n, m in self.last]

    def _hook(self, name: str, into: Optional[Dict[str, torch.Tensor]] = None):
        store = self.acts if into is None else into

        def hook(module: nn.Module, inputs: Tuple[Any, ...]) -> None:
            store[name] = inputs[0]
        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _last_layers(model: nn.Module, types: Tuple[type, ...]) -> List[Tuple[str, nn.Module]]:
    """The layers of ``types`` nearest to each model output, searching the torch.fx graph
    backwards from the output (and stopping at the first such layer on each path); when the
    model cannot be traced, the last such module in ``model.modules()`` order."""
    mods = dict(model.named_modules())
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception:  # noqa: BLE001 - any tracing failure: fall back to module order
        found = [(n, m) for n, m in mods.items() if isinstance(m, types)]
        return found[-1:]
    out_node = next(n for n in gm.graph.nodes if n.op == "output")
    found, seen, queue = [], set(), list(out_node.all_input_nodes)
    while queue:
        node = queue.pop(0)
        if node in seen:
            continue
        seen.add(node)
        if node.op == "call_module" and isinstance(mods.get(node.target), types):
            if all(node.target != n for n, _ in found):
                found.append((node.target, mods[node.target]))
            continue
        queue.extend(node.all_input_nodes)
    return found


class _Bar:
    """A text progress bar with the loss, on stderr."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.t0, self.last = total, enabled, time.time(), 0.0

    def update(self, i: int, loss: float, bn: float, out: float) -> None:
        now = time.time()
        if not self.enabled or (now - self.last < 0.2 and i < self.total):
            return
        self.last = now
        done = int(30 * i / max(self.total, 1))
        sys.stderr.write(f"\rgenerating [{'#' * done}{'.' * (30 - done)}] {i}/{self.total} "
                         f"loss {loss:.5f} (BN {bn:.5f}, output {out:.5f}) {now - self.t0:6.1f}s")
        if i >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def generate(model: nn.Module, n_images: int, output_size: Union[int, Sequence[int]],
             config: Optional[DataGenConfig] = None, *, channels: Optional[int] = None,
             seed: int = 0, progress: bool = False, threads: Optional[int] = None,
             distributed: Optional[bool] = None) -> DataGenResult:
    """Optimize ``n_images`` images of ``channels`` x ``output_size`` so that the statistics
    they produce at each BatchNorm layer of ``model`` match its stored running statistics.

    Deterministic for a ``seed`` (at a given thread count), and the same under ``torchrun`` with
    any number of processes (``distributed=None`` uses torch.distributed when initialized).
    ``threads`` sets ``torch.set_num_threads`` for the run. The model is copied, not changed.

    Example:
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
        >>> cfg = DataGenConfig(n_iter=2, batch_size=4, image_normalization="no_normalization")
        >>> r = generate(net, 6, 8, cfg, seed=0)
        >>> tuple(r.images.shape), r.layers
        ((6, 1, 8, 8), ['image_input', '1'])
    """
    cfg = config or DataGenConfig()
    if isinstance(n_images, bool) or not isinstance(n_images, (int, np.integer)) or n_images < 1:
        raise ValueError(f"n_images must be a positive int; got {n_images!r}")
    size = _pair(output_size, "output_size")
    if min(size) < 1:
        raise ValueError(f"output_size must be positive; got {output_size!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    ch = channels if channels is not None else infer_channels(model)
    if ch is None:
        raise ValueError("cannot tell the model's input channels (it has no convolution): pass channels=")
    if isinstance(ch, bool) or not isinstance(ch, int) or ch < 1:
        raise ValueError(f"channels must be a positive int; got {ch!r}")
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        with torch.enable_grad():
            return _run(model, int(n_images), size, cfg, ch, int(seed), progress, distributed)
    finally:
        torch.set_num_threads(old_threads)


def generate_images(model: nn.Module, n_images: int, output_size: Union[int, Sequence[int]],
                    config: Optional[DataGenConfig] = None, *, channels: Optional[int] = None,
                    seed: int = 0, progress: bool = False, threads: Optional[int] = None,
                    distributed: Optional[bool] = None) -> torch.Tensor:
    """The images of :func:`generate`: a (n_images, C, H, W) float32 tensor.

    Example:
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
        >>> x = generate_images(net, 4, (10, 12), DataGenConfig(n_iter=1, batch_size=2))
        >>> tuple(x.shape)
        (4, 3, 10, 12)
    """
    return generate(model, n_images, output_size, config, channels=channels, seed=seed,
                    progress=progress, threads=threads, distributed=distributed).images


def _run(model: nn.Module, n_images: int, size: Tuple[int, int], cfg: DataGenConfig, ch: int,
         seed: int, progress: bool, distributed: Optional[bool]) -> DataGenResult:
    rank, world, dist = _dist_info(distributed)
    net = copy.deepcopy(model).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    probe = _Probe(net, cfg)
    pipe = ImagePipeline(cfg, size, ch)
    per_image = cfg.image_granularity is ImageGranularity.ImageWise
    pooled = cfg.image_granularity is ImageGranularity.AllImages

    # one forward pass on a blank image: which aligned layers the model really calls (a layer
    # that is never called, e.g. of an unused head, is left out with a warning)
    with torch.no_grad():
        net(torch.zeros((1, ch) + size))
    unused = [n for n, _ in probe.bn if n not in probe.acts]
    if unused:
        warnings.warn(f"layers {', '.join(unused)} are not called in the forward pass: not aligned")
        probe.bn = [(n, m) for n, m in probe.bn if n in probe.acts]
        if not probe.bn:
            raise ValueError("none of the model's bn_layer_types layers is called in its forward pass")
    layers = ([INPUT] if cfg.input_alignment else []) + [n for n, _ in probe.bn]
    t_mean = {n: m.running_mean.detach().float().flatten().clone() for n, m in probe.bn}
    t_std = {n: torch.sqrt(m.running_var.detach().float().flatten()) for n, m in probe.bn}
    if cfg.input_alignment:
        t_mean[INPUT], t_std[INPUT] = torch.zeros(ch), torch.ones(ch)
    widths = [t_mean[n].numel() for n in layers]
    offs = np.concatenate([[0], np.cumsum(widths)])
    n_stats = 2 * int(offs[-1])
    weights = (static_layer_weights(cfg.layer_weighting, len(layers))
               if cfg.layer_weighting is not BNLayerWeightingType.GRAD else None)

    nb = n_batches(n_images, cfg.batch_size)
    counts = [min(cfg.batch_size, n_images - b * cfg.batch_size) for b in range(nb)]
    mine = list(range(rank, nb, world))
    max_local = -(-nb // world)
    gens = {b: batch_generator(seed, b) for b in mine}
    imgs = {b: initial_images(cfg, counts[b], ch, pipe.input_size, gens[b]).requires_grad_(True)
            for b in mine}
    opt_cls = cfg.optimizer_class()
    opts = {b: opt_cls([imgs[b]], lr=cfg.initial_lr) for b in mine}
    scheds = {b: Schedule(cfg.scheduler, opts[b], cfg.n_iter) for b in mine}

    def layer_acts(x: torch.Tensor) -> List[torch.Tensor]:
        acts = [x] if cfg.input_alignment else []
        for (n, m) in probe.bn:
            a = probe.acts[n]
            if a.dim() < 2 or a.shape[1] != t_mean[n].numel():
                raise ValueError(f"layer {n!r}: input of shape {tuple(a.shape)} does not have its "
                                 f"{t_mean[n].numel()} channels on axis 1")
            acts.append(a)
        return acts

    def batch_vector(stats: List[Tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Batch-level (mean, second moment) of every layer, detached, as one flat vector."""
        ms = [(m.detach().mean(0) if per_image else m.detach()) for m, _ in stats]
        qs = [(q.detach().mean(0) if per_image else q.detach()) for _, q in stats]
        return torch.cat(ms + qs)

    def gather(local: Dict[int, torch.Tensor], width: int) -> List[torch.Tensor]:
        """Rows of all batches, in batch order, from every process."""
        if dist is None:
            return [local[b] for b in range(nb)]
        buf = torch.zeros(max_local, width)
        for k, b in enumerate(mine):
            buf[k] = local[b]
        parts = [torch.zeros_like(buf) for _ in range(world)]
        dist.all_gather(parts, buf)
        return [parts[b % world][b // world] for b in range(nb)]

    def pool(rows: List[torch.Tensor]) -> torch.Tensor:
        tot = torch.zeros(n_stats, dtype=torch.float64)
        for b in range(nb):
            tot += counts[b] * rows[b][:n_stats].double()
        return (tot / n_images).float()

    def split(vec: torch.Tensor, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
        half = n_stats // 2
        return vec[offs[k]:offs[k + 1]], vec[half + offs[k]:half + offs[k + 1]]

    def layer_losses(vec: torch.Tensor) -> List[float]:
        out = []
        for k, n in enumerate(layers):
            m, q = split(vec, k)
            out.append(float(l2_square(t_mean[n], t_std[n], m, std_from(m, q))))
        return out

    # statistics of the starting images (the final pipeline, no gradient)
    local: Dict[int, torch.Tensor] = {}
    with torch.no_grad():
        for b in mine:
            x = pipe.finalize(imgs[b])
            net(x)
            local[b] = torch.cat([batch_vector([moments(a, per_image) for a in layer_acts(x)]),
                                  torch.zeros(3)])
    rows = gather(local, n_stats + 3)
    pooled_stats = pool(rows)
    res = DataGenResult(images=torch.empty(0), layers=layers, target_mean=t_mean, target_std=t_std,
                        history={n: [v] for n, v in zip(layers, layer_losses(pooled_stats))})
    bar = _Bar(cfg.n_iter, progress and rank == 0)
    t0 = time.time()
    for it in range(cfg.n_iter):
        t_it, c_it = time.perf_counter(), time.process_time()
        sums = pooled_stats.double() * n_images
        local = {}
        for b in mine:
            opt = opts[b]
            opt.zero_grad(set_to_none=True)
            x = pipe.augment(imgs[b], gens[b])
            probe.acts.clear()
            out = net(x)
            acts = layer_acts(x)
            stats = [moments(a, per_image) for a in acts]
            own = batch_vector(stats)
            losses = []
            for k, n in enumerate(layers):
                m, q = stats[k]
                if pooled:  # this batch's share with gradient, the others' as of the last iteration
                    pm, pq = split(rows[b][:n_stats], k)
                    sm, sq = split(sums, k)
                    c = counts[b]
                    m = ((sm - c * pm.double()).float() + c * m) / n_images
                    q = ((sq - c * pq.double()).float() + c * q) / n_images
                losses.append(l2_square(t_mean[n], t_std[n], m, std_from(m, q)))
            w = weights if weights is not None else grad_layer_weights(losses, acts)
            bn_loss = sum(wk * lk for wk, lk in zip(w, losses))
            o_loss = output_loss(cfg.output_loss, out, [probe.last_acts[n] for n, _ in probe.last],
                                 probe.last_weights)
            total = bn_loss + cfg.output_loss_multiplier * o_loss
            total.backward()
            opt.step()
            scheds[b].step(float(total.detach()))
            if cfg.reflection:
                pipe.reflect_(imgs[b].data)
            if cfg.input_alignment:  # the input's statistics from the images after the step
                with torch.no_grad():
                    fm, fq = moments(pipe.finalize(imgs[b]), False)
                half = n_stats // 2
                own = own.clone()
                own[0:widths[0]], own[half:half + widths[0]] = fm, fq
            local[b] = torch.cat([own, torch.stack([total.detach(), torch.as_tensor(bn_loss).detach(), o_loss.detach()]).float()])
        rows = gather(local, n_stats + 3)
        pooled_stats = pool(rows)
        for n, v in zip(layers, layer_losses(pooled_stats)):
            res.history[n].append(v)
        lt = [float(sum(counts[b] * float(rows[b][n_stats + j]) for b in range(nb)) / n_images)
              for j in range(3)]
        res.loss.append(lt[0])
        res.bn_loss.append(lt[1])
        res.out_loss.append(lt[2])
        res.iter_seconds.append(time.perf_counter() - t_it)
        res.iter_cpu_seconds.append(time.process_time() - c_it)
        bar.update(it + 1, *lt)
    res.seconds = time.time() - t0
    probe.remove()
    for k, n in enumerate(layers):
        m, q = split(pooled_stats, k)
        res.final_mean[n], res.final_std[n] = m.clone(), std_from(m, q)

    with torch.no_grad():
        fin = {b: pipe.finalize(imgs[b]).detach() for b in mine}
    if dist is None:
        res.images = torch.cat([fin[b] for b in range(nb)])
        return res
    shape = (max_local, cfg.batch_size, ch) + size
    buf = torch.zeros(shape)
    for k, b in enumerate(mine):
        buf[k, :counts[b]] = fin[b]
    parts = [torch.zeros_like(buf) for _ in range(world)]
    dist.all_gather(parts, buf)
    res.images = torch.cat([parts[b % world][b // world, :counts[b]] for b in range(nb)])
    return res
