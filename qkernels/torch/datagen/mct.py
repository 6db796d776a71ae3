"""MCT's names for the data generation, so that a script written for Sony's Model Compression
Toolkit runs on qkernels by changing its import::

    from qkernels.torch.datagen import (get_pytorch_data_generation_config,
                                        pytorch_data_generation_experimental)

The defaults are MCT's (2.x): RAdam at lr 16, 500 iterations, batches of 32, reduce-on-plateau
with reset, L2-square BatchNorm alignment, negative min-max output loss x 1e-5, Gaussian
initialization, average layer weighting, all-images granularity, the smoothing-and-augmentation
pipeline with a 32-pixel margin, torchvision normalization, BatchNorm2d layers, clipping.

Differences (all in the direction of fewer surprises): the number of input channels follows
the model (MCT hard-codes 3), the identity pipeline returns images of ``output_image_size``
(MCT's adds its 32-pixel crop margin to them), the diverse initialization keeps the image size
(MCT's 5x5 filter with padding 1 takes 2 pixels off), the batches of an iteration see each other's
statistics of the previous iteration (MCT: as updated so far in the iteration, in a random
order), and ``BNLayerWeightingType.GRAD`` works (MCT declares it without an implementation).
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from .config import (BatchNormAlignemntLossType, BNLayerWeightingType, DataGenConfig, DataInitType,
                     ImageGranularity, ImageNormalizationType, ImagePipelineType, OutputLossType,
                     SchedulerType)
from .engine import generate, infer_channels

DEFAULT_N_ITER = 500
DEFAULT_DATA_GEN_BS = 32
DEFAULT_PYTORCH_INITIAL_LR = 16
DEFAULT_PYTORCH_EXTRA_PIXELS = 32
DEFAULT_PYTORCH_OUTPUT_LOSS_MULTIPLIER = 1e-5
DEFAULT_PYTORCH_BN_LAYER_TYPES = [nn.BatchNorm2d]
DEFAULT_PYTORCH_LAST_LAYER_TYPES = [nn.Linear, nn.Conv2d]


class DataGenerationConfig:
    """MCT's configuration object: the same attribute names (``n_iter``, ``optimizer``,
    ``data_gen_batch_size``, ``image_clipping``...), turned into a :class:`DataGenConfig` by
    :meth:`to_config`."""

    def __init__(self, n_iter: int, optimizer: Any, data_gen_batch_size: int, initial_lr: float,
                 output_loss_multiplier: float,
                 image_granularity: ImageGranularity = ImageGranularity.AllImages,
                 scheduler_type: Optional[SchedulerType] = None,
                 bn_alignment_loss_type: Optional[BatchNormAlignemntLossType] = None,
                 output_loss_type: Optional[OutputLossType] = None,
                 data_init_type: Optional[DataInitType] = None,
                 layer_weighting_type: Optional[BNLayerWeightingType] = None,
                 image_pipeline_type: Optional[ImagePipelineType] = None,
                 image_normalization_type: Optional[ImageNormalizationType] = None,
                 extra_pixels: Union[int, Tuple[int, int]] = 0,
                 bn_layer_types: Sequence[type] = (), last_layer_types: Sequence[type] = (),
                 image_clipping: bool = True, reflection: bool = False,
                 normalization_mean: Optional[Sequence[float]] = None,
                 normalization_std: Optional[Sequence[float]] = None) -> None:
        self.n_iter = n_iter
        self.optimizer = optimizer
        self.data_gen_batch_size = data_gen_batch_size
        self.initial_lr = initial_lr
        self.output_loss_multiplier = output_loss_multiplier
        self.image_granularity = image_granularity
        self.scheduler_type = scheduler_type
        self.bn_alignment_loss_type = bn_alignment_loss_type
        self.output_loss_type = output_loss_type
        self.data_init_type = data_init_type
        self.layer_weighting_type = layer_weighting_type
        self.image_pipeline_type = image_pipeline_type
        self.image_normalization_type = image_normalization_type
        self.extra_pixels = extra_pixels
        self.bn_layer_types = list(bn_layer_types)
        self.last_layer_types = list(last_layer_types)
        self.image_clipping = image_clipping
        self.reflection = reflection
        self.normalization_mean = normalization_mean
        self.normalization_std = normalization_std

    @property
    def clip_images(self) -> bool:
        """MCT 2.0's name of ``image_clipping``."""
        return self.image_clipping

    def to_config(self) -> DataGenConfig:
        """The same options as a :class:`DataGenConfig` (ValueError naming a bad option)."""
        d = DataGenConfig()
        pick = lambda v, default: default if v is None else v  # noqa: E731
        return DataGenConfig(
            n_iter=self.n_iter, optimizer=self.optimizer, batch_size=self.data_gen_batch_size,
            initial_lr=float(self.initial_lr), output_loss_multiplier=float(self.output_loss_multiplier),
            scheduler=pick(self.scheduler_type, d.scheduler),
            bn_alignment_loss=pick(self.bn_alignment_loss_type, d.bn_alignment_loss),
            output_loss=pick(self.output_loss_type, d.output_loss),
            data_init=pick(self.data_init_type, d.data_init),
            layer_weighting=pick(self.layer_weighting_type, d.layer_weighting),
            image_granularity=self.image_granularity,
            image_pipeline=pick(self.image_pipeline_type, d.image_pipeline),
            image_normalization=pick(self.image_normalization_type, d.image_normalization),
            normalization_mean=self.normalization_mean, normalization_std=self.normalization_std,
            extra_pixels=self.extra_pixels,
            bn_layer_types=tuple(self.bn_layer_types) or d.bn_layer_types,
            last_layer_types=tuple(self.last_layer_types) or d.last_layer_types,
            clip_images=self.image_clipping, reflection=self.reflection)


def get_pytorch_data_generation_config(
        n_iter: int = DEFAULT_N_ITER,
        optimizer: Any = torch.optim.RAdam,
        data_gen_batch_size: int = DEFAULT_DATA_GEN_BS,
        initial_lr: float = DEFAULT_PYTORCH_INITIAL_LR,
        output_loss_multiplier: float = DEFAULT_PYTORCH_OUTPUT_LOSS_MULTIPLIER,
        scheduler_type: SchedulerType = SchedulerType.REDUCE_ON_PLATEAU_WITH_RESET,
        bn_alignment_loss_type: BatchNormAlignemntLossType = BatchNormAlignemntLossType.L2_SQUARE,
        output_loss_type: OutputLossType = OutputLossType.NEGATIVE_MIN_MAX_DIFF,
        data_init_type: DataInitType = DataInitType.Gaussian,
        layer_weighting_type: BNLayerWeightingType = BNLayerWeightingType.AVERAGE,
        image_granularity: ImageGranularity = ImageGranularity.AllImages,
        image_pipeline_type: ImagePipelineType = ImagePipelineType.SMOOTHING_AND_AUGMENTATION,
        image_normalization_type: ImageNormalizationType = ImageNormalizationType.TORCHVISION,
        extra_pixels: Union[int, Tuple[int, int]] = DEFAULT_PYTORCH_EXTRA_PIXELS,
        bn_layer_types: Sequence[type] = tuple(DEFAULT_PYTORCH_BN_LAYER_TYPES),
        last_layer_types: Sequence[type] = tuple(DEFAULT_PYTORCH_LAST_LAYER_TYPES),
        image_clipping: bool = True,
        clip_images: Optional[bool] = None,
        reflection: bool = False,
        normalization_mean: Optional[Sequence[float]] = None,
        normalization_std: Optional[Sequence[float]] = None) -> DataGenerationConfig:
    """MCT's ``get_pytorch_data_generation_config``, with its parameters and defaults
    (``clip_images`` and ``reflection`` are MCT 2.0's names; ``normalization_mean`` / ``_std``
    go with ``ImageNormalizationType.CUSTOM``). The options are checked here.

    Example:
        >>> cfg = get_pytorch_data_generation_config(n_iter=10, data_gen_batch_size=8)
        >>> cfg.to_config().batch_size
        8
    """
    cfg = DataGenerationConfig(
        n_iter=n_iter, optimizer=optimizer, data_gen_batch_size=data_gen_batch_size,
        initial_lr=initial_lr, output_loss_multiplier=output_loss_multiplier,
        image_granularity=image_granularity, scheduler_type=scheduler_type,
        bn_alignment_loss_type=bn_alignment_loss_type, output_loss_type=output_loss_type,
        data_init_type=data_init_type, layer_weighting_type=layer_weighting_type,
        image_pipeline_type=image_pipeline_type, image_normalization_type=image_normalization_type,
        extra_pixels=extra_pixels, bn_layer_types=bn_layer_types, last_layer_types=last_layer_types,
        image_clipping=image_clipping if clip_images is None else clip_images, reflection=reflection,
        normalization_mean=normalization_mean, normalization_std=normalization_std)
    cfg.to_config()  # validate now, not after the first long step
    return cfg


def pytorch_data_generation_experimental(model: nn.Module, n_images: int,
                                         output_image_size: Union[int, Tuple[int, int]],
                                         data_generation_config: DataGenerationConfig,
                                         *, seed: int = 0, progress: bool = True) -> List[torch.Tensor]:
    """MCT's ``pytorch_data_generation_experimental``: a list of ``n_images`` tensors of shape
    (1, C, H, W). C is the model's first convolution's input channels (3 if it has none).

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2*6*6, 10))
        >>> config = get_pytorch_data_generation_config(n_iter=1, data_gen_batch_size=2)
        >>> imgs = pytorch_data_generation_experimental(model, 4, 8, config, progress=False)
        >>> len(imgs), tuple(imgs[0].shape)
        (4, (1, 3, 8, 8))
    """
    cfg = data_generation_config.to_config() if isinstance(data_generation_config, DataGenerationConfig) \
        else data_generation_config
    ch = infer_channels(model) or 3
    images = generate(model, n_images, output_image_size, cfg, channels=ch, seed=seed,
                      progress=progress).images
    return list(torch.split(images, 1))
