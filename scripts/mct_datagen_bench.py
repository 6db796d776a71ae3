#!/usr/bin/env python
"""Seconds per iteration of MCT's own data generation (Sony's model-compression-toolkit), the
peer of ``qkernels.torch.datagen``; run by ``scripts/bench_datagen.py`` in a separate venv:

    python -m venv /work/venvs/mct
    /work/venvs/mct/bin/pip install torch==2.13.0 model-compression-toolkit==2.6.1
    /work/venvs/mct/bin/pip install --no-deps torchvision==0.28.0
    /work/venvs/mct/bin/python scripts/mct_datagen_bench.py --model resnet --n-iter 20

Not a dependency of qkernels. Facts this script works around:
- torchvision 0.28.0's wheel on the index is a CUDA build whose C extension does not load on the
  CPU torch: its import fails with ``operator torchvision::nms does not exist``. Defining the
  schemas of ``torchvision::nms`` and ``::qnms`` with torch.library before the import is enough
  (MCT's data generation uses only torchvision's transforms).
- MCT's data generation hard-codes 3 input channels (initial noise, smoothing filter, clipping
  grid, input statistics): for the 1-channel digits models these four places are patched to C
  channels, and the clipping grid follows ``--norm-mean`` / ``--norm-std`` (pixel units).
- Its initial images carry a 32-pixel crop margin on top of ``extra_pixels``
  (``default_data_init_fn(crop=32)``): ``--no-crop-margin`` sets it to 0, so that the images
  optimized are the size qkernels optimizes (output + extra_pixels).

Prints one JSON line: the wall and CPU time of every iteration (MCT's tqdm loop, timed).
"""
import argparse
import importlib.util
import json
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def _load_file(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["resnet", "darknet", "mobilenetv2", "resnet18"], default="resnet")
    ap.add_argument("--n-images", type=int, default=32)
    ap.add_argument("--size", type=int, default=8)
    ap.add_argument("--n-iter", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--norm-mean", type=float, default=None)
    ap.add_argument("--norm-std", type=float, default=None)
    ap.add_argument("--no-crop-margin", action="store_true")
    ap.add_argument("--extra-pixels", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0, help="torch and numpy global seeds (MCT uses both)")
    ap.add_argument("--save", help="write the generated images to this .npy file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    import numpy as np

    np.random.seed(args.seed)

    torch.library.define("torchvision::nms", "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    torch.library.define("torchvision::qnms", "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    import warnings

    warnings.filterwarnings("ignore")
    import model_compression_toolkit as mct
    from model_compression_toolkit.data_generation.common import image_pipeline as common_pipe
    from model_compression_toolkit.data_generation.common.enums import ImageNormalizationType
    from model_compression_toolkit.data_generation.pytorch import image_pipeline as pipe
    from model_compression_toolkit.data_generation.pytorch import model_info_exctractors as mie
    from model_compression_toolkit.data_generation.pytorch import pytorch_data_generation as pdg
    from model_compression_toolkit.data_generation.pytorch.optimization_functions import \
        image_initilization as init
    from model_compression_toolkit.logger import Logger

    Logger.get_logger().setLevel("ERROR")
    root = os.path.dirname(HERE)
    if args.model == "resnet18":
        net = _load_file("resnet18_arch", os.path.join(HERE, "resnet18_arch.py")).resnet18()
        ch = 3
    else:
        refs = _load_file("reference_models", os.path.join(root, "qkernels", "torch", "reference_models.py"))
        net = refs.load(args.model, os.path.join(root, "data", "models"))
        ch = 1

    norm = ImageNormalizationType.TORCHVISION
    if args.norm_mean is not None:
        norm = ImageNormalizationType.NO_NORMALIZATION
        common_pipe.image_normalization_dict[norm] = [[args.norm_mean] * ch, [args.norm_std] * ch]
    if ch != 3:  # MCT hard-codes 3 channels in these four places
        init.NUM_INPUT_CHANNELS = ch
        mie.NUM_INPUT_CHANNELS = ch
        orig_grid = pipe.create_valid_grid
        pipe.create_valid_grid = lambda means, stds: orig_grid(list(means) * 3, list(stds) * 3)[:ch]

        class Smoothing(pipe.Smoothing):
            def forward(self, image):
                k = self.kernel[:1].expand(image.shape[1], 1, *self.kernel.shape[2:]).to(image.device)
                return torch.nn.functional.conv2d(image, k, padding=k.shape[-1] // 2, groups=image.shape[1])
        pipe.Smoothing = Smoothing
    if args.no_crop_margin:
        from functools import partial

        for k in list(init.image_initialization_function_dict):
            f = init.image_initialization_function_dict[k]
            init.image_initialization_function_dict[k] = partial(init.default_data_init_fn, crop=0,
                                                                 sample_fn=f.keywords["sample_fn"])

    stamps = []

    class Timed:
        """Stands in for MCT's tqdm bar: a time stamp at every iteration."""

        def __init__(self, it):
            self.it = it

        def __iter__(self):
            stamps.append((time.perf_counter(), time.process_time()))
            for v in self.it:
                yield v
                stamps.append((time.perf_counter(), time.process_time()))

        def set_description(self, text):
            pass
    pdg.tqdm = Timed
    cfg = mct.data_generation.get_pytorch_data_generation_config(
        n_iter=args.n_iter, data_gen_batch_size=32, image_normalization_type=norm,
        extra_pixels=args.extra_pixels)
    imgs = mct.data_generation.pytorch_data_generation_experimental(net, args.n_images, args.size, cfg)
    if args.save:
        np.save(args.save, torch.cat(imgs).numpy())
    per_iter = [b[0] - a[0] for a, b in zip(stamps, stamps[1:])]
    per_iter_cpu = [b[1] - a[1] for a, b in zip(stamps, stamps[1:])]
    print(json.dumps({"mct": mct.__version__, "model": args.model, "channels": ch,
                      "image": list(imgs[0].shape), "per_iter": per_iter,
                      "per_iter_cpu": per_iter_cpu}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
