"""torchvision vit_b_16 (random weights, seed 0: no pretrained weights ship offline) integer end
to end vs float: every EncoderBlock swapped for qkernels' integer block (swap(...,
ops=TRANSFORMER_OPS)) and the final LayerNorm integer (PTF input); the patch embedding (conv_proj),
the class token and position embedding stay float (the model's input side).

Calibrated on --calib random-normal images, evaluated on --n others: cosine of the encoder output
(B, 197, 768) per image and of its class token, against float. torchvision's head is zero at
initialisation, so logits are not compared, and its zero class token is replaced by a normal(0, 1)
one (untrained_fixups).

    python scripts/vit_accuracy.py --n 8 --calib 4
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Sequence


sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests"))
from _torchvision import import_torchvision as _import_zoo  # noqa: E402  (as the Makefile installs it)


def import_torchvision() -> Any:
    """torchvision as the Makefile installs it (tests/_torchvision.py: the one place that
    imports it, for the zoo tests and scripts too); ImportError when it is missing."""
    _import_zoo()
    import torchvision
    return torchvision


def untrained_fixups(model: Any) -> None:
    """torchvision initialises the class token to zeros: its row then enters the first
    LayerNorm with only the position embedding's 0.02-sized values, a token no trained ViT has
    (its LayerNorm amplifies that row's quantization error ~50x). A normal(0, 1) class token
    stands in for a trained one."""
    import torch

    with torch.no_grad():
        model.class_token.normal_(0, 1)


def encoder_cosines(model: Any, cal: Sequence[Any], x: Any) -> Any:
    """(cos of the encoder output per image, cos of its class token, swapped modules)."""
    import torch

    from qkernels.torch import TRANSFORMER_OPS, swap

    feats = {}
    h = model.encoder.register_forward_hook(lambda m, a, o: feats.__setitem__("f", o.clone()))
    try:
        with torch.no_grad():
            model(x)
            ref = feats["f"]
            with swap(model, cal, ops=TRANSFORMER_OPS, compare=True) as sw:
                model(x)
            got = feats["f"]
    finally:
        h.remove()
    cos = torch.nn.functional.cosine_similarity
    b = ref.shape[0]
    return (cos(ref.reshape(b, -1).double(), got.reshape(b, -1).double()).numpy(),
            cos(ref[:, 0].double(), got[:, 0].double()).numpy(), sw)


def main(argv: Sequence[str] = ()) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--calib", type=int, default=4)
    a = ap.parse_args(list(argv) or None)
    import torch

    tv = import_torchvision()
    torch.manual_seed(0)
    model = tv.models.vit_b_16(weights=None).eval()
    untrained_fixups(model)
    cal = [torch.randn(2, 3, 224, 224) for _ in range((a.calib + 1) // 2)]
    x = torch.randn(a.n, 3, 224, 224)
    t = time.perf_counter()
    c, cls, sw = encoder_cosines(model, cal, x)
    print(f"vit_b_16 (random weights, seed 0), {a.n} images, calibrated on {2 * len(cal)}: "
          f"{len(sw)} modules swapped ({time.perf_counter() - t:.0f} s)")
    print(f"encoder output cosine vs float: mean {c.mean():.4f} min {c.min():.4f}; class token: "
          f"mean {cls.mean():.4f} min {cls.min():.4f}")
    for n, m in sw.items():
        r = m.report()
        print(f"  {n:34s} {r['op']:14s} SQNR {r['sqnr_db']:6.2f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
