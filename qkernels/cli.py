"""The ``qkernels`` command line (``python -m qkernels <command>``, or the ``qkernels`` script).

Each command lives in its own module, which gives ``add_arguments(parser)`` and
``command(args) -> int``; only the chosen command's module is imported, so ``--help`` and the
commands that need no PyTorch work without it, and a missing optional dependency is one
``error:`` line (exit code 2), never a traceback. Ctrl-C exits with 130.

Example:
    >>> from qkernels.cli import main
    >>> main(["--version"])  # doctest: +SKIP
    qkernels 0.1.0
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn, Optional, Sequence

from . import __version__

#: command -> (module, one-line help)
COMMANDS = {
    "quantize": ("qkernels.torch.quantize_cli",
                 "quantize a PyTorch model, run it integer-exact, report and export it"),
    "collect": ("qkernels.collect",
                "LayerNorm inputs of a real transformer -> PTF -> integer LayerNorm goldens"),
    "datagen": ("qkernels.torch.datagen.cli",
                "synthetic calibration images from a model's BatchNorm statistics"),
    "ptq": ("qkernels.torch.qat.ptq_cli",
            "power-of-two PTQ (YAML config), integer-exact, with the JSON report"),
    "qat": ("qkernels.torch.qat.cli",
            "power-of-two PTQ -> QAT -> PTQ (YAML config), integer-exact, with the JSON report"),
}

EPILOG = """examples:
  qkernels quantize --model reference:resnet --calib digits --out out/resnet
  qkernels quantize --model mypkg.models:build --calib calib_npy_dir/ --config cfg.yaml
  qkernels collect --layer all --out data/quantized_all
  qkernels qat --config examples/qat_pow2_w4a4_full.yaml --out out/qat
run 'qkernels COMMAND --help' for a command's options."""


class _Parser(argparse.ArgumentParser):
    """An argument error is one ``error:`` line naming the argument (and where to look), exit 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(2)


def _chosen(argv: Sequence[str]) -> Optional[str]:
    for a in argv:
        if not a.startswith("-"):
            return a
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the command, return its exit code (130
    after Ctrl-C, whenever it comes: also while the command's modules, e.g. torch, import).

    Example:
        >>> main(["no-such-command"])   # the usage and one error line go to stderr
        2
    """
    try:
        return _main(argv)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130


def _main(argv: Optional[Sequence[str]]) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = _Parser(
        prog="qkernels", description="qkernels: an integer golden model for quantized neural "
        "networks (bit-exact C kernels, PyTorch bridge, golden files for test benches).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="version", version=f"qkernels {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    parsers = {name: sub.add_parser(name, help=help_, description=help_)
               for name, (_, help_) in COMMANDS.items()}
    name = _chosen(argv)
    mod = None
    if name in COMMANDS:
        try:
            mod = importlib.import_module(COMMANDS[name][0])
        except ImportError as exc:
            missing = getattr(exc, "name", None) or str(exc)
            sys.stderr.write(f"error: the {name} command needs {missing}, which is not installed "
                             f"(pip install 'qkernels[torch]')\n")
            return 2
        parsers[name].description = getattr(mod, "DESCRIPTION", parsers[name].description)
        mod.add_arguments(parsers[name])
    try:
        args = ap.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.command is None:
        ap.print_help(sys.stderr)
        return 2
    return int(mod.command(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
