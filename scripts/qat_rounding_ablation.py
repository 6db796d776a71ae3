#!/usr/bin/env python
"""Ablation for docs/qat_results.md: full QAT trained with PyTorch-style fake quantization
(every tie rounded to even, zero point added after rounding) instead of the integer ops' own
rounding, then deployed on the pow2 integer kernels (whose shifts round ties half up).

    python scripts/qat_rounding_ablation.py [--model mobilenetv2] [--bits w4a4] [--epochs 20]

Prints, for both ways of training: the QAT model's (fake-quant) accuracy, the integer-exact
accuracy of the deployed model, and the largest fraction of elements of any tensor where the
integer run and the QAT model differ.
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mobilenetv2")
    ap.add_argument("--bits", default="w4a4", choices=("w8a8", "w4a8", "w4a4"))
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=3e-3)
    args = ap.parse_args()
    import torch

    import qkernels.torch.qat.model as qm
    from qkernels.torch.qat import load_config, load_data, run_qat
    from qkernels.torch.qat.pipeline import _integer_vs_qat
    from qkernels.torch.reference_models import load

    torch.set_num_threads(1)
    wb, ab = {"w8a8": (8, 8), "w4a8": (4, 8), "w4a4": (4, 4)}[args.bits]
    cfg = load_config(None, {
        "quantization": {"weight": {"bitwidth": wb, "per_channel": True},
                         "input": {"bitwidth": ab}, "output": {"bitwidth": ab}},
        "training": {"epochs": args.epochs, "learning_rate": args.lr, "weight_decay": 0.0,
                     "scheduler": {"type": "CosineAnnealingLR"}},
        "qat": {"mode": "full", "learn_scales": True}})
    data = load_data("digits")
    own = qm._value_rounding
    for label, rounding in (("integer ops' rounding", own),
                            ("round half to even everywhere", lambda gm, node, im: "half_even")):
        qm._value_rounding = rounding
        res = run_qat(cfg, load(args.model), data)
        k = res.report["qkernels"]
        x = data[1][0][:64].numpy()
        diff = _integer_vs_qat(res.integer_model, res.qat_model, x)
        print(f"{args.model} {args.bits}, QAT with {label}: QAT model {k['qat_model_accuracy']:.2f}%  "
              f"integer-exact {k['integer_exact_accuracy']:.2f}%  largest fraction of a tensor "
              f"differing {100 * max(d['fraction_differing'] for d in diff):.2f}% (max "
              f"{max(d['max_steps'] for d in diff):.0f} steps)", flush=True)
    qm._value_rounding = own
    return 0


if __name__ == "__main__":
    sys.exit(main())
