#!/usr/bin/env python
"""Train the reference models on scikit-learn's digits and write qkernels/torch/models/<name>.pt (shipped in the package).

    python scripts/train_reference_models.py [--epochs 60] [--only resnet]

Deterministic (fixed seeds, one thread); each model trains in seconds on the CPU.
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from qkernels.torch.reference_models import MODEL_DIR, MODELS, accuracy, build, digits  # noqa: E402


def train(name: str, epochs: int, seed: int = 0) -> float:
    torch.manual_seed(seed)
    (xtr, ytr), (xte, yte) = digits()
    net = build(name)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(len(ytr), generator=g)
        for i in range(0, len(ytr), 64):
            idx = perm[i:i + 64]
            xb = xtr[idx]
            # light augmentation: shift by up to one pixel
            dx, dy = torch.randint(-1, 2, (2,), generator=g).tolist()
            xb = torch.roll(xb, shifts=(dy, dx), dims=(2, 3))
            loss = torch.nn.functional.cross_entropy(net(xb), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    net.eval()
    os.makedirs(MODEL_DIR, exist_ok=True)
    path = os.path.join(MODEL_DIR, f"{name}.pt")
    tmp = path + ".tmp"
    torch.save(net.state_dict(), tmp)
    os.replace(tmp, path)
    return accuracy(net, xte, yte)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--only", choices=sorted(MODELS), action="append")
    args = ap.parse_args()
    torch.set_num_threads(1)
    for name in args.only or list(MODELS):
        t0 = time.time()
        acc = train(name, args.epochs)
        print(f"{name:12s} held-out accuracy {acc * 100:.2f}%  ({time.time() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
