#!/usr/bin/env python
"""Brevitas's power-of-two ("fixed point") QAT on a reference model, for scripts/bench_qat.py.

Runs in its own venv (Brevitas is a benchmark peer, never a dependency of qkernels):

    python -m venv /work/venvs/brevitas
    /work/venvs/brevitas/bin/pip install torch==2.13.0 (the CPU wheel) brevitas==0.13.4 scikit-learn
    /work/venvs/brevitas/bin/python scripts/bench_qat_brevitas.py --model resnet --wbits 4 --abits 4

The same model as ours: the trained reference model with BatchNorm folded and ReLU fused
(``fuse_fx``, eval mode), every conv / linear a ``QuantConv2d`` / ``QuantLinear`` with
``Int8WeightPerChannelFixedPoint`` weights (power-of-two per-channel scales from the weight
maximum, narrow range) at ``--wbits``, and an ``Int8ActPerTensorFixedPoint`` ``QuantIdentity``
(signed, a learned power-of-two scale: log2 parameter, ceil with straight-through gradient) at
``--abits`` wherever our integer model quantizes an activation: the model input, every conv /
linear output, residual adds, LeakyReLU and average pooling outputs. Biases stay float (ours are
32-bit integers, which lose nothing here). Calibration (``calibration_mode``) on the same 8
training batches, then the same training: AdamW, cosine schedule, batch 64, the same epochs and
seed. Prints one JSON line: last-epoch accuracy on the held-out digits, median training seconds
per epoch.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import operator
import os
import statistics
import sys
import time

import torch
from torch import fx, nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def reference_models():
    """qkernels/torch/reference_models.py by path (it needs torch, numpy and scikit-learn only;
    the qkernels package itself is not installed in this venv)."""
    path = os.path.join(ROOT, "qkernels", "torch", "reference_models.py")
    spec = importlib.util.spec_from_file_location("reference_models", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def brevitas_model(model: nn.Module, wbits: int, abits: int) -> fx.GraphModule:
    import brevitas.nn as qnn
    import torch.ao.nn.intrinsic as nni
    from brevitas.quant.fixed_point import Int8ActPerTensorFixedPoint, Int8WeightPerChannelFixedPoint
    from torch.ao.quantization.quantize_fx import fuse_fx

    gm = fuse_fx(model.eval())
    n_act = 0

    def act() -> nn.Module:
        return qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, bit_width=abits,
                                 return_quant_tensor=False)

    def add_act(node: fx.Node) -> None:
        nonlocal n_act
        name = f"brevitas_act_{n_act}"
        n_act += 1
        gm.add_submodule(name, act())
        with gm.graph.inserting_after(node):
            q = gm.graph.call_module(name, (node,))
        node.replace_all_uses_with(q, delete_user_cb=lambda u: u is not q)

    for node in list(gm.graph.nodes):
        if node.op == "placeholder":
            add_act(node)
        elif node.op == "call_module":
            m = gm.get_submodule(node.target)
            relu = isinstance(m, (nni.ConvReLU2d, nni.LinearReLU))
            base = m[0] if relu else m
            if isinstance(base, nn.Conv2d):
                q = qnn.QuantConv2d(base.in_channels, base.out_channels, base.kernel_size,
                                    base.stride, base.padding, base.dilation, base.groups,
                                    bias=base.bias is not None,
                                    weight_quant=Int8WeightPerChannelFixedPoint, weight_bit_width=wbits)
            elif isinstance(base, nn.Linear):
                q = qnn.QuantLinear(base.in_features, base.out_features, bias=base.bias is not None,
                                    weight_quant=Int8WeightPerChannelFixedPoint, weight_bit_width=wbits)
            else:
                if isinstance(m, (nn.LeakyReLU, nn.AdaptiveAvgPool2d, nn.AvgPool2d)):
                    add_act(node)
                continue
            with torch.no_grad():
                q.weight.copy_(base.weight)
                if base.bias is not None:
                    q.bias.copy_(base.bias)
            parent, _, leaf = node.target.rpartition(".")
            setattr(gm.get_submodule(parent) if parent else gm, leaf,
                    nn.Sequential(q, nn.ReLU()) if relu else q)
            add_act(node)
        elif node.op == "call_function" and node.target in (operator.add, torch.add):
            add_act(node)
    gm.graph.lint()
    gm.recompile()
    return gm


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--wbits", type=int, default=8)
    ap.add_argument("--abits", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--calibration-batches", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import brevitas
    from brevitas.graph.calibrate import calibration_mode

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    rm = reference_models()
    (xtr, ytr), (xte, yte) = rm.digits()
    net = brevitas_model(rm.load(args.model), args.wbits, args.abits)
    g = torch.Generator().manual_seed(args.seed)
    perm = torch.randperm(len(xtr), generator=g)
    calib = [xtr[perm][i:i + args.batch] for i in range(0, len(xtr), args.batch)]
    calib = calib[:args.calibration_batches]
    net.eval()
    with torch.no_grad(), calibration_mode(net):
        for xb in calib:
            net(xb)

    def accuracy() -> float:
        net.eval()
        with torch.no_grad():
            return 100.0 * float((net(xte).argmax(1) == yte).float().mean())
    acc0 = accuracy()
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(args.epochs, 1))
    crit = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(args.seed + 1)
    secs, accs = [], []
    for _ in range(args.epochs):
        net.train()
        t0 = time.perf_counter()
        p = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(p), args.batch):
            b = p[i:i + args.batch]
            loss = crit(net(xtr[b]), ytr[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        secs.append(time.perf_counter() - t0)
        accs.append(accuracy())
    print(json.dumps({"model": args.model, "wbits": args.wbits, "abits": args.abits,
                      "epochs": args.epochs, "calibrated_accuracy": acc0,
                      "accuracy": accs[-1] if accs else acc0, "best_accuracy": max(accs, default=acc0),
                      "seconds_per_epoch": statistics.median(secs) if secs else None,
                      "brevitas": brevitas.__version__, "torch": torch.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
