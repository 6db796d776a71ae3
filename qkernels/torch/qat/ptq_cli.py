"""``python -m qkernels ptq``: power-of-two PTQ of a PyTorch model (the pipeline's YAML config),
integer-exact with the pow2 preset, with the JSON report (:mod:`qkernels.torch.qat.cli`).

    python -m qkernels ptq --config examples/qat_pow2_8bit.yaml --out out/ptq
"""
from __future__ import annotations

import argparse

from .cli import add_common, run

DESCRIPTION = ("Power-of-two PTQ of a PyTorch model (weights, biases, activations; the QAT "
               "pipeline's YAML config), integer-exact with the pow2 preset; writes the JSON "
               "report.")


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The ``ptq`` command's options."""
    add_common(ap, "ptq")


def command(args: argparse.Namespace) -> int:
    """Run the ``ptq`` command."""
    return run(args, "ptq")
