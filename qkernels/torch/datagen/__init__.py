"""Synthetic calibration data from BatchNorm statistics (data-free quantization).

Images are optimized so that the per-channel mean and standard deviation they produce at the
input of every BatchNorm layer match the running statistics the layer stored in training; a
model that may not see real data can then be calibrated on them and run integer-exact. This is
the data generation of Sony's Model Compression Toolkit (MCT), rebuilt here, with MCT's names
kept (``get_pytorch_data_generation_config``, ``pytorch_data_generation_experimental`` and the
enums) beside our own API:

    >>> from torch import nn
    >>> from qkernels.torch.datagen import DataGenConfig, generate_images
    >>> net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()).eval()
    >>> cfg = DataGenConfig(n_iter=3, batch_size=8, image_normalization="custom",
    ...                     normalization_mean=(0.0,), normalization_std=(255.0,))
    >>> x = generate_images(net, 16, 8, cfg, seed=0)      # 16 images 1x8x8, pixels in [0, 1]
    >>> tuple(x.shape), bool(x.min() >= 0 and x.max() <= 1)
    ((16, 1, 8, 8), True)

Under ``torchrun --nproc_per_node=N`` (call :func:`init_distributed` first) the batches are
split across the processes and the images gathered: the result equals a single-process run
with the same seed. ``python -m qkernels datagen`` is the command line.
"""
from .config import (BatchNormAlignemntLossType, BatchNormAlignmentLossType, BNLayerWeightingType,
                     DataGenConfig, DataInitType, ImageGranularity, ImageNormalizationType,
                     ImagePipelineType, OutputLossType, SchedulerType)
from .engine import DataGenResult, generate, generate_images, init_distributed
from .mct import (DataGenerationConfig, get_pytorch_data_generation_config,
                  pytorch_data_generation_experimental)

__all__ = ["DataGenConfig", "DataGenResult", "generate", "generate_images", "init_distributed",
           "get_pytorch_data_generation_config", "pytorch_data_generation_experimental",
           "DataGenerationConfig", "ImageGranularity", "DataInitType", "ImagePipelineType",
           "ImageNormalizationType", "BNLayerWeightingType", "BatchNormAlignemntLossType",
           "BatchNormAlignmentLossType", "OutputLossType", "SchedulerType"]
