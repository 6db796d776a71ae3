"""Options of the data generation: MCT's enum names and our :class:`DataGenConfig`.

The enum classes and their members carry the names and values of Sony's Model Compression
Toolkit (``model_compression_toolkit.data_generation``), so that a script written for MCT keeps
working with ``from qkernels.torch.datagen import ...``. Each option is documented where it is
used; the defaults are those of MCT's PyTorch data generation
(``get_pytorch_data_generation_config``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, List, Optional, Sequence, Tuple, Type, Union

import torch
from torch import nn


class _Choice(Enum):
    """An enum whose members can also be named by their value or name (``"step"``, ``"STEP"``)."""

    @classmethod
    def get_values(cls) -> List["_Choice"]:
        """All members (MCT's ``get_values``)."""
        return list(cls.__members__.values())

    @classmethod
    def get_enum_by_value(cls, target_value: Any) -> Optional["_Choice"]:
        """The member with this value, or None (MCT's ``get_enum_by_value``)."""
        for m in cls:
            if m.value == target_value:
                return m
        return None

    @classmethod
    def parse(cls, v: Any, what: str) -> "_Choice":
        """A member from a member, its value or its name (case-insensitive); ValueError naming
        ``what`` otherwise."""
        if isinstance(v, cls):
            return v
        if isinstance(v, Enum):  # another enum with the same name (e.g. MCT's own)
            v = v.name
        for m in cls:
            if v == m.value or (isinstance(v, str) and v.lower() in (m.name.lower(), str(m.value).lower())):
                return m
        raise ValueError(f"{what} must be one of {', '.join(m.name for m in cls)}; got {v!r}")


class ImageGranularity(_Choice):
    """Which images share the statistics that are aligned with the BatchNorm statistics:
    ``ImageWise`` (each image on its own, mean over height and width), ``BatchWise`` (each batch
    of ``data_gen_batch_size`` images) or ``AllImages`` (all ``n_images`` together: the current
    batch's statistics, with gradient, pooled with the other batches' last statistics)."""

    ImageWise = 0
    BatchWise = 1
    AllImages = 2


class DataInitType(_Choice):
    """Initial images: ``Gaussian`` (N(0, 1) pixels) or ``Diverse`` (each image its own random
    per-channel mean and std, N(0, 1) each, then a 5x5 box filter across channels)."""

    Gaussian = 0
    Diverse = 1


class ImagePipelineType(_Choice):
    """What is done to the optimized images before each forward pass:
    ``SMOOTHING_AND_AUGMENTATION`` (random horizontal flip, 3x3 Gaussian smoothing (sigma 1.25),
    random crop from the ``extra_pixels`` margin, clipping to the valid pixel range; the final
    images are smoothed, center-cropped and clipped) or ``IDENTITY`` (nothing)."""

    SMOOTHING_AND_AUGMENTATION = "smoothing_and_augmentation"
    IDENTITY = "identity"


class ImageNormalizationType(_Choice):
    """How the model's input is normalized, as ``(pixel - mean) / std`` with pixels in 0..255:
    ``TORCHVISION`` (ImageNet mean/std of torchvision, x255), ``KERAS_APPLICATIONS`` (127.5,
    127.5), ``NO_NORMALIZATION`` (0, 1) or ``CUSTOM`` (``normalization_mean`` /
    ``normalization_std`` of the config; e.g. mean 0, std 255 for inputs in [0, 1]). It sets the
    valid range that images are clipped to."""

    TORCHVISION = "torchvision"
    KERAS_APPLICATIONS = "keras_applications"
    NO_NORMALIZATION = "no_normalization"
    CUSTOM = "custom"


class BNLayerWeightingType(_Choice):
    """The weight of each layer's alignment loss: ``AVERAGE`` (1 / number of aligned layers),
    ``FIRST_LAYER_MULTIPLIER`` (10 for the first aligned entry, 1 for the others; as in MCT the
    first entry is the input image itself) or ``GRAD`` (gradient based: each step, weights
    proportional to 1 / ||dL_l / da_l||, the inverse norm of the gradient of the layer's loss
    with respect to that layer's input activation, normalised to sum to 1, so that every layer
    pulls on the activations with the same strength; MCT declares GRAD but implements no
    function for it)."""

    AVERAGE = "average"
    FIRST_LAYER_MULTIPLIER = "first_layer_multiplier"
    GRAD = "grad"


class BatchNormAlignemntLossType(_Choice):
    """The alignment loss of one layer: ``L2_SQUARE``, ``||mu - mu_bn||^2 / C + ||sigma -
    sigma_bn||^2 / C`` (C channels). (MCT's spelling of the class name is kept.)"""

    L2_SQUARE = "l2_square"


BatchNormAlignmentLossType = BatchNormAlignemntLossType


class OutputLossType(_Choice):
    """An extra loss on the model's output, times ``output_loss_multiplier``: ``NONE``,
    ``NEGATIVE_MIN_MAX_DIFF`` (``-mean(max - min)`` of each image's outputs),
    ``INVERSE_MIN_MAX_DIFF`` (``1 / mean(max - min + eps)``) or ``REGULARIZED_MIN_MAX_DIFF``
    (``mean(|(|min| - n/2)| + |(|max| - n/2)| + 1 / (max - min + eps))`` where n is the norm of
    the last linear layer's (spatially averaged) input times the norm of the weight row of the
    arg-min / arg-max output)."""

    NONE = "none"
    NEGATIVE_MIN_MAX_DIFF = "negative_min_max_diff"
    INVERSE_MIN_MAX_DIFF = "inverse_min_max_diff"
    REGULARIZED_MIN_MAX_DIFF = "regularized_min_max_diff"


class SchedulerType(_Choice):
    """Learning-rate schedule of each batch's optimizer, stepped once per batch step:
    ``REDUCE_ON_PLATEAU`` (PyTorch's ReduceLROnPlateau on the loss: factor 0.5, patience n_iter/50,
    min_lr 1e-4), ``REDUCE_ON_PLATEAU_WITH_RESET`` (the same, but the best loss is forgotten after
    each reduction, as MCT's own scheduler does) or ``STEP`` (StepLR: x0.1 every n_iter/3 steps)."""

    REDUCE_ON_PLATEAU = "reduce_on_plateau"
    REDUCE_ON_PLATEAU_WITH_RESET = "reduce_on_plateau_with_reset"
    STEP = "step"


# pixel-space (0..255) mean and std per channel, as MCT's image_normalization_dict
NORMALIZATIONS = {
    ImageNormalizationType.TORCHVISION: ((0.485 * 255, 0.456 * 255, 0.406 * 255),
                                         (0.229 * 255, 0.224 * 255, 0.225 * 255)),
    ImageNormalizationType.KERAS_APPLICATIONS: ((127.5,), (127.5,)),
    ImageNormalizationType.NO_NORMALIZATION: ((0.0,), (1.0,)),
}

OPTIMIZERS = {"radam": torch.optim.RAdam, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}


def _pair(v: Union[int, Sequence[int]], what: str) -> Tuple[int, int]:
    if isinstance(v, bool):
        raise TypeError(f"{what} must be an int or a pair of ints; got {v!r}")
    if isinstance(v, int):
        return (v, v)
    t = tuple(v)
    if len(t) == 1:
        t = (t[0], t[0])
    if len(t) != 2 or not all(isinstance(i, int) and not isinstance(i, bool) for i in t):
        raise TypeError(f"{what} must be an int or a pair of ints; got {v!r}")
    return t  # type: ignore[return-value]


@dataclass(frozen=True)
class DataGenConfig:
    """Everything :func:`generate_images` does (defaults: MCT's PyTorch data generation).

    Attributes:
        n_iter: optimisation iterations; each iteration takes one step on every batch.
        optimizer: "radam", "adam", "sgd" or a ``torch.optim.Optimizer`` class, built as
            ``optimizer([images], lr=initial_lr)``, one per batch.
        batch_size: images per batch (MCT's ``data_gen_batch_size``).
        initial_lr: the learning rate (16, on images in normalized units).
        output_loss_multiplier: weight of the output loss beside the BatchNorm loss.
        scheduler, bn_alignment_loss, output_loss, data_init, layer_weighting,
        image_granularity, image_pipeline, image_normalization: see the enums of this module.
        normalization_mean, normalization_std: per channel (or one value), pixel units 0..255,
            for ``ImageNormalizationType.CUSTOM``.
        extra_pixels: margin (height, width) added around the output size for the random crop of
            the smoothing-and-augmentation pipeline.
        bn_layer_types: module types whose inputs are aligned; any type with ``running_mean``
            and ``running_var`` buffers (default BatchNorm1d/2d/3d; MCT's default is BatchNorm2d
            alone; SyncBatchNorm or your own types too).
        last_layer_types: layer types searched, backwards from the model's output, for the
            regularized output loss.
        clip_images: clip the images fed to the model (straight-through: the gradient passes
            as if unclipped) and the final images to the valid pixel range.
        reflection: also fold the optimized images back into the valid range after every step,
            by reflection at its bounds (``2 * clamp(x) - x``); needs ``clip_images``.
        input_alignment: align the input images' per-channel mean and std to 0 and 1 (in
            normalized units) as one more "layer", the first, as MCT does.

    Example:
        >>> cfg = DataGenConfig(n_iter=50, image_normalization="custom",
        ...                     normalization_mean=(0.0,), normalization_std=(255.0,))
        >>> cfg.scheduler
        <SchedulerType.REDUCE_ON_PLATEAU_WITH_RESET: 'reduce_on_plateau_with_reset'>
    """

    n_iter: int = 500
    optimizer: Any = "radam"
    batch_size: int = 32
    initial_lr: float = 16.0
    output_loss_multiplier: float = 1e-5
    scheduler: SchedulerType = SchedulerType.REDUCE_ON_PLATEAU_WITH_RESET
    bn_alignment_loss: BatchNormAlignemntLossType = BatchNormAlignemntLossType.L2_SQUARE
    output_loss: OutputLossType = OutputLossType.NEGATIVE_MIN_MAX_DIFF
    data_init: DataInitType = DataInitType.Gaussian
    layer_weighting: BNLayerWeightingType = BNLayerWeightingType.AVERAGE
    image_granularity: ImageGranularity = ImageGranularity.AllImages
    image_pipeline: ImagePipelineType = ImagePipelineType.SMOOTHING_AND_AUGMENTATION
    image_normalization: ImageNormalizationType = ImageNormalizationType.TORCHVISION
    normalization_mean: Optional[Tuple[float, ...]] = None
    normalization_std: Optional[Tuple[float, ...]] = None
    extra_pixels: Union[int, Tuple[int, int]] = 32
    bn_layer_types: Tuple[Type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
    last_layer_types: Tuple[Type[nn.Module], ...] = (nn.Linear, nn.Conv2d)
    clip_images: bool = True
    reflection: bool = False
    input_alignment: bool = True

    def __post_init__(self) -> None:
        s = object.__setattr__
        s(self, "scheduler", SchedulerType.parse(self.scheduler, "scheduler"))
        s(self, "bn_alignment_loss", BatchNormAlignemntLossType.parse(self.bn_alignment_loss,
                                                                      "bn_alignment_loss"))
        s(self, "output_loss", OutputLossType.parse(self.output_loss, "output_loss"))
        s(self, "data_init", DataInitType.parse(self.data_init, "data_init"))
        s(self, "layer_weighting", BNLayerWeightingType.parse(self.layer_weighting, "layer_weighting"))
        s(self, "image_granularity", ImageGranularity.parse(self.image_granularity, "image_granularity"))
        s(self, "image_pipeline", ImagePipelineType.parse(self.image_pipeline, "image_pipeline"))
        s(self, "image_normalization", ImageNormalizationType.parse(self.image_normalization,
                                                                    "image_normalization"))
        if isinstance(self.n_iter, bool) or not isinstance(self.n_iter, int) or self.n_iter < 1:
            raise ValueError(f"n_iter must be a positive int; got {self.n_iter!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive int; got {self.batch_size!r}")
        for name in ("initial_lr", "output_loss_multiplier"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not (v == v) or v < 0 \
                    or v == float("inf") or (name == "initial_lr" and v == 0):
                raise ValueError(f"{name} must be a finite number"
                                 f"{' > 0' if name == 'initial_lr' else ' >= 0'}; got {v!r}")
        if isinstance(self.optimizer, str):
            if self.optimizer.lower() not in OPTIMIZERS:
                raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)} or a "
                                 f"torch.optim.Optimizer class; got {self.optimizer!r}")
        elif not (isinstance(self.optimizer, type) and issubclass(self.optimizer, torch.optim.Optimizer)):
            raise TypeError(f"optimizer must be a name or a torch.optim.Optimizer class; got {self.optimizer!r}")
        ep = _pair(self.extra_pixels, "extra_pixels")
        if min(ep) < 0:
            raise ValueError(f"extra_pixels must be >= 0; got {self.extra_pixels!r}")
        s(self, "extra_pixels", ep)
        for name in ("bn_layer_types", "last_layer_types"):
            v = getattr(self, name)
            v = (v,) if isinstance(v, type) else tuple(v)
            if not v or not all(isinstance(t, type) and issubclass(t, nn.Module) for t in v):
                raise TypeError(f"{name} must be a non-empty sequence of nn.Module subclasses; got {v!r}")
            s(self, name, v)
        if self.image_normalization is ImageNormalizationType.CUSTOM:
            if self.normalization_mean is None or self.normalization_std is None:
                raise ValueError("image_normalization CUSTOM needs normalization_mean and normalization_std")
        for name in ("normalization_mean", "normalization_std"):
            v = getattr(self, name)
            if v is None:
                continue
            v = (float(v),) if isinstance(v, (int, float)) else tuple(float(x) for x in v)
            if not v or not all(x == x and abs(x) != float("inf") for x in v) \
                    or (name == "normalization_std" and min(v) <= 0):
                raise ValueError(f"{name} must be finite numbers{' > 0' if 'std' in name else ''}; got {v!r}")
            s(self, name, v)
        if self.reflection and not self.clip_images:
            raise ValueError("reflection folds images back into the clipping range: it needs clip_images=True")

    def normalization(self) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
        """(mean, std) per channel in pixel units 0..255 (one value means every channel)."""
        if self.image_normalization is ImageNormalizationType.CUSTOM:
            return self.normalization_mean, self.normalization_std  # type: ignore[return-value]
        return NORMALIZATIONS[self.image_normalization]

    def optimizer_class(self) -> Type[torch.optim.Optimizer]:
        return OPTIMIZERS[self.optimizer.lower()] if isinstance(self.optimizer, str) else self.optimizer

    def replace(self, **kw: Any) -> "DataGenConfig":
        """A copy with some fields changed."""
        return replace(self, **kw)


__all__ = ["ImageGranularity", "DataInitType", "ImagePipelineType", "ImageNormalizationType",
           "BNLayerWeightingType", "BatchNormAlignemntLossType", "BatchNormAlignmentLossType",
           "OutputLossType", "SchedulerType", "DataGenConfig", "NORMALIZATIONS", "OPTIMIZERS"]
