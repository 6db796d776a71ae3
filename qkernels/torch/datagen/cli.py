"""``python -m qkernels datagen``: synthetic calibration images from a model's BatchNorm statistics.

    python -m qkernels datagen --model reference:resnet --n-images 256 --size 8 \\
        --normalization custom --norm-mean 0 --norm-std 255 --out out/gen --real digits
    torchrun --nproc_per_node=2 -m qkernels datagen ...        # the batches split over 2 processes

Writes ``<out>/images.npy`` (N x C x H x W float32; ``python -m qkernels quantize --calib <out>``
reads it), ``<out>/bn_loss.csv`` (the alignment loss of every layer per iteration) and, with
matplotlib, ``<out>/grid.png`` (generated images beside real ones, ``--real``) and
``<out>/bn_loss.png``.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any, List, Optional, Tuple

import numpy as np

from .config import (BNLayerWeightingType, DataInitType, ImageGranularity, ImageNormalizationType,
                     ImagePipelineType, OutputLossType, SchedulerType)


def _names(enum: Any) -> str:
    return ", ".join(str(m.value) if isinstance(m.value, str) else m.name for m in enum)


DESCRIPTION = ("Synthetic calibration images from a model's BatchNorm statistics (MCT's data "
               "generation): images.npy for quantize --calib, the alignment loss, PNG grids.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``datagen`` command's options (``python -m qkernels datagen --help``)."""
    p.add_argument("--model", required=True,
                   help="reference:<name>, module:factory, or a .pt file of a whole model")
    p.add_argument("--n-images", type=int, default=256)
    p.add_argument("--size", default="8", help="output image size: H or HxW (default 8)")
    p.add_argument("--channels", type=int, help="input channels (default: the first convolution's)")
    p.add_argument("--n-iter", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--optimizer", default="radam", choices=["radam", "adam", "sgd"])
    p.add_argument("--lr", type=float, default=16.0, help="initial learning rate (16)")
    p.add_argument("--output-loss-multiplier", type=float, default=1e-5)
    p.add_argument("--scheduler", default="reduce_on_plateau_with_reset", help=_names(SchedulerType))
    p.add_argument("--output-loss", default="negative_min_max_diff", help=_names(OutputLossType))
    p.add_argument("--init", default="Gaussian", help=_names(DataInitType))
    p.add_argument("--weighting", default="average", help=_names(BNLayerWeightingType))
    p.add_argument("--granularity", default="AllImages", help=_names(ImageGranularity))
    p.add_argument("--pipeline", default="smoothing_and_augmentation", help=_names(ImagePipelineType))
    p.add_argument("--normalization", default="torchvision", help=_names(ImageNormalizationType))
    p.add_argument("--norm-mean", help="CUSTOM normalization mean, pixel units, comma separated")
    p.add_argument("--norm-std", help="CUSTOM normalization std, pixel units, comma separated")
    p.add_argument("--extra-pixels", type=int, default=32)
    p.add_argument("--bn-types", default="BatchNorm1d,BatchNorm2d,BatchNorm3d",
                   help="aligned layer types: torch.nn names or module:Class, comma separated")
    p.add_argument("--no-clip", action="store_true", help="do not clip images to the valid range")
    p.add_argument("--reflection", action="store_true", help="fold images back into range every step")
    p.add_argument("--no-input-alignment", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch threads per process")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--real", help="real images for the grid: 'digits' or a .npy file")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


class _BadArgs(Exception):
    pass


def _floats(s: Optional[str], what: str) -> Optional[Tuple[float, ...]]:
    if s is None:
        return None
    try:
        return tuple(float(v) for v in s.split(","))
    except ValueError:
        raise _BadArgs(f"{what} must be comma-separated numbers; got {s!r}") from None


def _size(s: str) -> Tuple[int, int]:
    try:
        parts = [int(v) for v in s.lower().split("x")]
    except ValueError:
        raise _BadArgs(f"--size must be H or HxW with positive integers; got {s!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise _BadArgs(f"--size must be H or HxW with positive integers; got {s!r}")
    return parts[0], parts[1]


def _layer_types(s: str) -> Tuple[type, ...]:
    from torch import nn

    out = []
    for name in s.split(","):
        name = name.strip()
        if ":" in name:
            mod, cls = name.split(":", 1)
            try:
                t = getattr(importlib.import_module(mod), cls)
            except (ImportError, AttributeError) as exc:
                raise _BadArgs(f"--bn-types: cannot load {name}: {exc}") from None
        else:
            t = getattr(nn, name, None)
        if not (isinstance(t, type) and issubclass(t, nn.Module)):
            raise _BadArgs(f"--bn-types: {name!r} is not a torch.nn module type")
        out.append(t)
    return tuple(out)


def _load_model(spec: str) -> Any:
    """The model of ``--model`` (qkernels.loaders: reference:<name>, module:factory, .pt)."""
    from qkernels.loaders import ModelError, load_torch_model

    try:
        return load_torch_model(spec)
    except ModelError as exc:
        raise _BadArgs(str(exc)) from None


def _real_images(spec: Optional[str]) -> Optional[np.ndarray]:
    if spec is None:
        return None
    if spec == "digits":
        from ..reference_models import digits

        return digits()[0][0].numpy()
    if not os.path.exists(spec):
        raise _BadArgs(f"--real: {spec} not found ('digits' or a .npy file)")
    return np.load(spec).astype(np.float32)


def command(args: argparse.Namespace) -> int:
    """Run ``datagen`` on parsed arguments; 2 with an ``error: ...`` line for bad arguments."""
    from .config import DataGenConfig

    try:
        if args.n_images < 1:
            raise _BadArgs(f"--n-images must be >= 1; got {args.n_images}")
        size = _size(args.size)
        try:
            cfg = DataGenConfig(
                n_iter=args.n_iter, optimizer=args.optimizer, batch_size=args.batch_size,
                initial_lr=args.lr, output_loss_multiplier=args.output_loss_multiplier,
                scheduler=args.scheduler, output_loss=args.output_loss, data_init=args.init,
                layer_weighting=args.weighting, image_granularity=args.granularity,
                image_pipeline=args.pipeline, image_normalization=args.normalization,
                normalization_mean=_floats(args.norm_mean, "--norm-mean"),
                normalization_std=_floats(args.norm_std, "--norm-std"),
                extra_pixels=args.extra_pixels, bn_layer_types=_layer_types(args.bn_types),
                clip_images=not args.no_clip, reflection=args.reflection,
                input_alignment=not args.no_input_alignment)
        except (ValueError, TypeError) as exc:
            raise _BadArgs(str(exc)) from None
        if args.channels is not None and args.channels < 1:
            raise _BadArgs(f"--channels must be >= 1; got {args.channels}")
        if args.threads is not None and args.threads < 1:
            raise _BadArgs(f"--threads must be >= 1; got {args.threads}")
        if os.path.exists(args.out) and not os.path.isdir(args.out):
            raise _BadArgs(f"--out {args.out} exists and is not a directory")
        if not args.no_plots:
            try:
                import matplotlib  # noqa: F401
            except ImportError:
                raise _BadArgs("the PNG files need matplotlib (pip install qkernels[plot]); "
                               "or pass --no-plots") from None
        real = _real_images(args.real)
        model = _load_model(args.model)
        from .engine import generate, infer_channels, init_distributed

        ch = args.channels or infer_channels(model)
        if ch is None:
            raise _BadArgs("the model has no convolution to tell its input channels: pass --channels")
        if real is not None and (real.ndim != 4 or real.shape[1] != ch):
            raise _BadArgs(f"--real images have shape {real.shape}; expected N x {ch} x H x W")
    except _BadArgs as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2

    rank, world = init_distributed()
    res = generate(model, args.n_images, size, cfg, channels=ch, seed=args.seed,
                   progress=not args.quiet, threads=args.threads)
    if rank != 0:
        return 0
    os.makedirs(args.out, exist_ok=True)
    images = res.images.numpy()
    np.save(os.path.join(args.out, "images.npy"), images)
    from .report import history_csv, save_grid, save_loss_plot

    with open(os.path.join(args.out, "bn_loss.csv"), "w") as f:
        f.write(history_csv(res))
    written = ["images.npy", "bn_loss.csv"]
    if not args.no_plots:
        save_grid(os.path.join(args.out, "grid.png"), images, real,
                  lo_hi=_display_range(cfg, ch))
        save_loss_plot(os.path.join(args.out, "bn_loss.png"), res)
        written += ["grid.png", "bn_loss.png"]
    print(f"generated {len(images)} images {images.shape[1:]} in {res.seconds:.1f}s "
          f"({world} process{'es' if world > 1 else ''}); final loss {res.loss[-1]:.5f}; "
          f"wrote {', '.join(written)} to {args.out}")
    return 0


def _display_range(cfg: Any, ch: int) -> Tuple[float, float]:
    from .pipeline import valid_range

    lo, hi = valid_range(cfg, ch)
    return float(lo.min()), float(hi.max())


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m qkernels datagen ...`` with ``argv`` starting at "datagen"."""
    from qkernels.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
