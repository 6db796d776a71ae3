#!/usr/bin/env python
"""Every output bit of the integer-block MiniLM and vit_b_16, saved or checked: the before/after
check of a speed change that must not change a number.

    python scripts/int_transformer_outputs.py save /tmp/before.npz     # on the old code
    python scripts/int_transformer_outputs.py check /tmp/before.npz    # on the new: 0 differ
    python scripts/int_transformer_outputs.py check /tmp/before.npz --threads 2
    python scripts/int_transformer_outputs.py save /tmp/rows.npz --token-rows   # the other form

MiniLM (all-MiniLM-L6-v2, offline package) swapped whole (``swap(model, calib,
ops=TRANSFORMER_OPS)``), calibrated on the last 64 sentences of tests/fixtures/sentences.txt, run
on the first 96 in batches of 16 (padded: the attention mask path) and on one sequence of 128
tokens; vit_b_16 (torchvision, random weights, seed 0) calibrated on 2 random images, run on 1 and
2 others. Saved: the last hidden state / logits of every call, and every integer tensor the
blocks keep (``keep=True``) of the first and last MiniLM call and of both ViT calls. ``check``
compares every element with ``==`` (floats by their bits) and prints how many arrays differ.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Dict

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def outputs(threads: int, token_rows: bool = False) -> Dict[str, np.ndarray]:
    import torch

    from minilm_accuracy import batches, load_minilm, load_sentences
    from qkernels.torch import TRANSFORMER_OPS, QuantConfig, swap
    from vit_accuracy import import_torchvision, untrained_fixups

    torch.set_num_threads(1)
    res: Dict[str, np.ndarray] = {}
    model, tok = load_minilm()
    sents = load_sentences()
    cal = batches(tok, sents[-64:], 32)
    ev = batches(tok, sents[:96], 16)
    text = " ".join(["integer kernels compute the same bits as the runtime they name"] * 40)
    ev.append(dict(tok([text], padding="max_length", truncation=True, max_length=128,
                       return_tensors="pt")))
    cfg = QuantConfig(token_rows=True) if token_rows else None
    with torch.no_grad(), swap(model, cal, config=cfg, ops=TRANSFORMER_OPS,
                               threads=threads) as sw:
        for m in sw.values():
            m.keep = True
        for i, b in enumerate(ev):
            res[f"minilm{i}"] = model(**b).last_hidden_state.numpy().copy()
            if i in (0, len(ev) - 1):
                for n, m in sw.items():
                    for k, v in getattr(m, "last", {}).items():
                        res[f"minilm{i}:{n}:{k}"] = np.asarray(v).copy()
    tv = import_torchvision()
    torch.manual_seed(0)
    vit = tv.models.vit_b_16(weights=None).eval()
    untrained_fixups(vit)
    calv = [torch.randn(2, 3, 224, 224)]
    xs = [torch.randn(1, 3, 224, 224), torch.randn(2, 3, 224, 224)]
    with torch.no_grad(), swap(vit, calv, config=cfg, ops=TRANSFORMER_OPS,
                               threads=threads) as sw:
        for m in sw.values():
            m.keep = True
        for i, x in enumerate(xs):
            res[f"vit{i}"] = vit(x).numpy().copy()
            for n, m in sw.items():
                for k, v in getattr(m, "last", {}).items():
                    res[f"vit{i}:{n}:{k}"] = np.asarray(v).copy()
    return res


def _bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint8) if a.dtype.kind == "f" else a


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("save", "check"))
    ap.add_argument("path")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--token-rows", action="store_true",
                    help="the token-rows block form (QuantConfig(token_rows=True))")
    a = ap.parse_args(argv)
    res = outputs(a.threads, a.token_rows)
    if a.mode == "save":
        np.savez(a.path, **res)
        print(f"saved {len(res)} arrays, {sum(v.size for v in res.values())} elements")
        return 0
    ref = np.load(a.path)
    if set(ref.files) != set(res):
        print(f"the saved and computed arrays differ in name: {sorted(set(ref.files) ^ set(res))}")
        return 1
    bad = [k for k in ref.files if ref[k].dtype != res[k].dtype or ref[k].shape != res[k].shape
           or not np.array_equal(_bits(ref[k]), _bits(res[k]))]
    for k in bad:
        print("differs:", k)
    print(f"checked {len(ref.files)} arrays, {sum(ref[k].size for k in ref.files)} elements: "
          f"{len(bad)} arrays differ")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
