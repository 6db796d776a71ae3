"""``python -m qkernels ptq`` and ``python -m qkernels qat``: the power-of-two pipeline from the shell.

    python -m qkernels ptq --config configs/qat_pow2_8bit.yaml --out out/ptq
    python -m qkernels qat --config configs/qat_pow2_8bit.yaml --epochs 5 --out out/qat
    python -m qkernels qat --config cfg.yaml --no-final-ptq          # stop after weight-only QAT
    python -m qkernels qat --model mypkg.models:build --data mypkg.data:load --full --learn-scales

Writes ``<out>/report.json`` (the replaced tool's layout, plus ours under "qkernels"),
``<out>/accuracy.png`` (accuracy per epoch; needs matplotlib) and, with ``--export``, every integer
of the final model under ``<out>/integer_model`` (``IntegerModel.export``). Progress goes to
stderr: a bar per epoch with the loss when tqdm is installed and stderr is a terminal, one line
per epoch otherwise. A bad configuration is reported before anything is trained.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, Dict, List

COMMANDS = ("ptq", "qat")


def register(subparsers: Any, load_model: Callable[[str], Any]) -> None:
    """Add the ``ptq`` and ``qat`` subcommands to an argparse subparsers object;
    ``load_model(spec)`` turns ``--model`` / ``model.name`` into a module (the ``quantize``
    command's loader: reference:<name>, module:factory, a .pt file)."""
    for cmd, help_ in (("ptq", "power-of-two PTQ of a model, integer-exact, with the JSON report"),
                       ("qat", "power-of-two PTQ -> QAT -> PTQ, integer-exact, with the JSON report")):
        p = subparsers.add_parser(cmd, help=help_, description=help_)
        p.add_argument("--config", help="YAML configuration (quantization, training, ptq, qat, "
                       "model, data); defaults for what it leaves out")
        p.add_argument("--model", help="override model.name: reference:<name>, module:factory "
                       "or a .pt file")
        p.add_argument("--data", help="override data.dataset: digits or module:factory")
        p.add_argument("--out", default=os.path.join("out", cmd),
                       help=f"output directory (default out/{cmd})")
        p.add_argument("--export", action="store_true",
                       help="also write every integer of the final model (IntegerModel.export)")
        p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
        if cmd == "qat":
            p.add_argument("--epochs", type=int, help="override training.epochs")
            p.add_argument("--no-final-ptq", "--no-final_ptq", dest="final_ptq",
                           action="store_false",
                           help="stop after QAT: the weight-only integer model")
            p.add_argument("--full", action="store_true",
                           help="full QAT: activations fake-quantized too (qat.mode: full)")
            p.add_argument("--learn-scales", action="store_true",
                           help="train the log2 of every scale (qat.learn_scales: true)")
        p.set_defaults(run=run, load_model=load_model)


def run(args: argparse.Namespace) -> int:
    """Run the ``ptq`` or ``qat`` subcommand; returns the exit status."""
    import torch

    from .config import ConfigError, load_config
    from .pipeline import Progress, load_data, run_ptq, run_qat
    from .report import write_curve, write_json

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
    except ConfigError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    if args.threads < 1:
        sys.stderr.write("error: --threads must be >= 1\n")
        return 2
    torch.set_num_threads(args.threads)
    model = args.load_model(cfg.model)
    try:
        data = load_data(cfg.dataset)
    except ValueError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    progress = Progress()
    if args.cmd == "ptq":
        res = run_ptq(cfg, model, data, progress=progress)
    else:
        res = run_qat(cfg, model, data, final_ptq=final_ptq, progress=progress)
    os.makedirs(args.out, exist_ok=True)
    written: List[str] = []
    path = os.path.join(args.out, "report.json")
    write_json(path, res.report)
    written.append(path)
    if res.history:
        png = os.path.join(args.out, "accuracy.png")
        r = res.report
        lines = {"float": r["initial_accuracy"], "PTQ (weights)": r["ptq_accuracy"]}
        if r["qkernels"].get("ptq_integer_exact_accuracy") is not None:
            lines["PTQ integer-exact"] = r["qkernels"]["ptq_integer_exact_accuracy"]
        lines["final integer-exact"] = r["qkernels"]["integer_exact_accuracy"]
        if write_curve(png, [h.epoch for h in res.history], [h.accuracy for h in res.history],
                       lines, f"{cfg.model}: {r['quantization_type']}"):
            written.append(png)
        else:
            sys.stderr.write("note: matplotlib is not installed; no accuracy.png "
                             "(pip install matplotlib)\n")
    if args.export:
        x = data[1][0][:1].numpy()
        written += res.integer_model.export(os.path.join(args.out, "integer_model"), x)
    _summary(res.report)
    print(f"wrote {len(written)} files to {args.out} (report: {path})")
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

