"""``python -m qkernels qat`` (and, through :mod:`qkernels.torch.qat.ptq_cli`, ``ptq``): the
power-of-two pipeline from the shell.

    python -m qkernels ptq --config examples/qat_pow2_8bit.yaml --out out/ptq
    python -m qkernels qat --config examples/qat_pow2_8bit.yaml --epochs 5 --out out/qat
    python -m qkernels qat --config cfg.yaml --no-final-ptq          # stop after weight-only QAT
    python -m qkernels qat --model mypkg.models:build --data mypkg.data:load --full --learn-scales

Writes ``<out>/report.json`` (the replaced tool's layout, plus ours under "qkernels"),
``<out>/accuracy.png`` (accuracy per epoch; needs matplotlib) and, with ``--export``, every integer
of the final model under ``<out>/integer_model`` (``IntegerModel.export``). Progress goes to
stderr (:mod:`qkernels._progress`: a bar per epoch with the loss on a terminal, plain lines in a
log). A bad configuration is one ``error:`` line (exit code 2) before anything is trained.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from typing import Any, Dict, List

DESCRIPTION = ("Power-of-two PTQ -> QAT -> final PTQ of a PyTorch model (YAML config), ending in "
               "an integer-exact model (pow2 preset); writes the JSON report and the accuracy "
               "curve.")


def add_common(ap: argparse.ArgumentParser, cmd: str) -> None:
    """The options ``ptq`` and ``qat`` share."""
    ap.add_argument("--config", help="YAML configuration (quantization, training, ptq, qat, "
                    "model, data; examples/qat_pow2_*.yaml); defaults for what it leaves out")
    ap.add_argument("--model", help="override model.name: reference:<name>, module:factory "
                    "or a .pt file")
    ap.add_argument("--data", help="override data.dataset: digits or module:factory")
    ap.add_argument("--out", default=os.path.join("out", cmd),
                    help=f"output folder (default out/{cmd})")
    ap.add_argument("--export", action="store_true",
                    help="also write every integer of the final model (IntegerModel.export)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The ``qat`` command's options."""
    add_common(ap, "qat")
    ap.add_argument("--epochs", type=int, help="override training.epochs")
    ap.add_argument("--no-final-ptq", "--no-final_ptq", dest="final_ptq", action="store_false",
                    help="stop after QAT: the weight-only integer model")
    ap.add_argument("--full", action="store_true",
                    help="full QAT: activations fake-quantized too (qat.mode: full)")
    ap.add_argument("--learn-scales", action="store_true",
                    help="train the log2 of every scale (qat.learn_scales: true)")


def command(args: argparse.Namespace) -> int:
    """Run the ``qat`` command."""
    return run(args, "qat")


def run(args: argparse.Namespace, cmd: str) -> int:
    """Run ``ptq`` or ``qat``; returns the exit status."""
    import torch

    from qkernels.loaders import ModelError, load_torch_model

    from .config import ConfigError, load_config
    from .pipeline import load_data, run_ptq, run_qat
    from .report import write_json

    overrides: Dict[str, Any] = {}
    if args.model:
        overrides["model"] = {"name": args.model}
    if args.data:
        overrides["data"] = {"dataset": args.data}
    if getattr(args, "epochs", None) is not None:
        overrides["training"] = {"epochs": args.epochs}
    if getattr(args, "full", False) or getattr(args, "learn_scales", False):
        overrides["qat"] = {k: v for k, v in (("mode", "full" if args.full else None),
                                              ("learn_scales", True if args.learn_scales else None))
                            if v is not None}
    final_ptq = getattr(args, "final_ptq", True)
    try:
        cfg = load_config(args.config, overrides)
        cfg.check_deployable(final_ptq)
        if args.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {args.threads}")
        if os.path.exists(args.out) and not os.path.isdir(args.out):
            raise ConfigError(f"--out {args.out}: exists and is not a folder")
        model = load_torch_model(cfg.model)
        data = load_data(cfg.dataset)
    except (ConfigError, ModelError, ValueError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    torch.set_num_threads(args.threads)
    try:
        if cmd == "ptq":
            res = run_ptq(cfg, model, data, progress=True)
        else:
            res = run_qat(cfg, model, data, final_ptq=final_ptq, progress=True)
    except (NotImplementedError, TypeError, ValueError, FloatingPointError) as exc:
        sys.stderr.write(f"error: {cfg.model}: {str(exc).splitlines()[0]}\n")
        return 2
    os.makedirs(args.out, exist_ok=True)
    written: List[str] = []
    path = os.path.join(args.out, "report.json")
    write_json(path, res.report)
    written.append(path)
    if res.history:
        if importlib.util.find_spec("matplotlib") is None:
            sys.stderr.write("note: matplotlib is not installed; no accuracy.png "
                             "(pip install 'qkernels[plot]')\n")
        else:
            from qkernels.plots import plot_accuracy

            r = res.report
            lines = {"float": r["initial_accuracy"], "PTQ (weights)": r["ptq_accuracy"],
                     "PTQ integer-exact": r["qkernels"]["ptq_integer_exact_accuracy"],
                     "final integer-exact": r["qkernels"]["integer_exact_accuracy"]}
            lines = {k: v for k, v in lines.items() if v is not None}
            written.append(plot_accuracy([h.epoch for h in res.history],
                                         [h.accuracy for h in res.history],
                                         os.path.join(args.out, "accuracy.png"), lines,
                                         f"{cfg.model}: {r['quantization_type']}"))
    if args.export:
        x = data[1][0][:1].numpy()
        written += res.integer_model.export(os.path.join(args.out, "integer_model"), x,
                                            eval_data=(data[1][0].numpy(), data[1][1].numpy()))
    _summary(res.report)
    print(f"wrote {len(written)} files to {args.out} (report: {path})")
    for p in written:
        if p.endswith(".png"):
            print(f"picture: {p}")
    return 0


def _summary(r: Dict[str, Any]) -> None:
    k = r["qkernels"]
    print(r["quantization_type"])
    for s in r["pipeline_steps"]:
        print(f"  {s}")
    best = r["qat_best_accuracy"]
    print(f"accuracy ({k['evaluated_samples']} held-out samples): float {r['initial_accuracy']:.2f}%  "
          f"PTQ {r['ptq_accuracy']:.2f}%" + (f"  QAT best {best:.2f}%" if best is not None else "") +
          f"  final {r['final_accuracy']:.2f}%" +
          (f"  integer-exact {k['integer_exact_accuracy']:.2f}%" if k["mode"] == "static" else
           " (weights quantized, activations float)") + f"  ({r['total_improvement']:+.2f})")
    if k.get("layers"):
        w = max(len(n) for n in k["layers"])
        print(f"  {'layer':<{w}}  in  out  requantizing shift (per channel: min..max)")
        for n, L in k["layers"].items():
            sh = L["shift"]
            print(f"  {n:<{w}}  2^{L['input_exponent']:<3d} 2^{L['output_exponent']:<3d} "
                  f"{min(sh)}..{max(sh)}" if min(sh) != max(sh) else
                  f"  {n:<{w}}  2^{L['input_exponent']:<3d} 2^{L['output_exponent']:<3d} {sh[0]}")

