"""Where the integer MiniLM's error comes from: end-to-end figures (cos mean / min, NN
agreement vs float, as scripts/minilm_accuracy.py) with one kind of integer block swapped at a
time, and with one step inside the blocks replaced by its float computation (an "oracle": the
step's own error removed, every other step integer as in the real model).

Rows:

- ``only <kind>``: only that kind of block integer, the rest of the model float (its input
  quantization included: e.g. ``only intermediate`` includes the int8 quantization of the
  LayerNorm output the MLP reads). ``only LayerNorms``: all 13 LayerNorms as integer blocks on
  their float inputs (PTF uint8 input, int8 output with channel factors), nothing else.
- ``all, float <step>``: every block integer except that step:

  * ``softmax``: probabilities ``softmax(S s)`` in float from the int32 scores, ``P V`` in float
    on the int8 V, the context quantized as the integer block does (removes the integer
    softmax's uint8 resolution and i-exp; the context's int8 stays);
  * ``ln input``: the LayerNorm in float on the exact int32 residual sum ``t u`` (removes the
    PTF uint8 quantization of the LayerNorm input; its int8 output stays);
  * ``gelu``: GELU in float on the int32 accumulators, its output quantized as the block does
    (removes i-GELU's polynomial);

  * ``float LN + float residual``: the LayerNorms and the residual adds in float (the Linear
    layers still read int8 LayerNorm outputs);
  * ``float GELU output + FFN out``: the GELU output unquantized, the FFN output Linear in float
    on its int8 weights, the LayerNorm in float (compare with ``float LN on int32 sum``).

- ``W8 only``: the float model with its Linear weights fake-quantized as the blocks quantize them
  (int8 symmetric per output channel), activations float.
- ``fq <mode> <group>``: the float model with one group of activations fake-quantized to 8 bits
  (weights float), calibrated min/max on the calibration sentences: ``tensor`` (one asymmetric
  range per tensor), ``pow2`` (the blocks' power-of-two channel factors, CHANNEL_PERCENTILE),
  ``chan`` (a range per channel), ``token`` (dynamic: a range per token at run time).
  Groups: the Q/K/V input, the attention output dense's input (context), the FFN input, the FFN
  output dense's input (GELU output; the pattern also takes the context's dense), Q, K, V, and
  all 13 LayerNorm outputs.

    HF_HUB_OFFLINE=1 python scripts/minilm_error_sources.py --n 800 --calib 200
    HF_HUB_OFFLINE=1 python scripts/minilm_error_sources.py --rows w8,fq:tensor,fq:pow2,fq:chan,fq:token
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from typing import Any, Dict, Iterator, Sequence

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import minilm_accuracy as MA  # noqa: E402


@contextlib.contextmanager
def patched(obj: Any, name: str, fn: Any) -> Iterator[None]:
    old = getattr(obj, name)
    setattr(obj, name, fn)
    try:
        yield
    finally:
        setattr(obj, name, old)


def float_softmax_call(self: Any, x8: np.ndarray, keep: Any, threads: int) -> Dict[str, Any]:
    import qkernels as qk
    from qkernels.torch import blocks as B

    b, s = x8.shape[0], x8.shape[1]
    q = self._heads(self.lq(x8, threads=threads), b, s)
    k = self._heads(self.lk(x8, threads=threads), b, s)
    v = self._heads(self.lv(x8, threads=threads), b, s)
    scores = qk.matmul_int32(q, k, a_zero_point=self.q.zero_point,
                             b_zero_point=self.k.zero_point, transpose_b=True, threads=threads)
    z = scores.astype(np.float64) * self.score_scale
    if keep is not None:
        z = np.where(np.broadcast_to(keep, z.shape), z, -np.inf)
    z -= z.max(-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(-1, keepdims=True)
    vf = (v.astype(np.float64) - self.v.zero_point) * self.v.scale
    c = p @ vf
    ctx = qk.quantize(c.astype(np.float32), np.float32(self.out.scale), self.out.zero_point,
                      dtype=self.out.dtype, flavor="torch")
    out = np.ascontiguousarray(ctx.transpose(0, 2, 1, 3)).reshape(b, s, self.heads * self.d)
    return {"q": q, "k": k, "v": v, "scores": scores, "probs": p, "context": out}


def float_ln(block: Any, t: np.ndarray, u: float) -> np.ndarray:
    """LayerNorm in float on the int32 sum t (units u), int8 output as the block's."""
    import qkernels as qk
    x = t.astype(np.float64) * u
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    ln = block.ln_module
    y = (x - mu) / np.sqrt(var + ln.eps) * ln.weight.detach().double().numpy() + \
        ln.bias.detach().double().numpy()
    steps = block.out.steps()
    return qk.quantize(y.astype(np.float32), steps, np.full(np.shape(steps), block.out.zero_point,
                                                             np.int32),
                       dtype=np.int8, axis=-1 if block.out.k is not None else None,
                       flavor="torch")


FQ_GROUPS = {"qkv_in": ("attention.self.query",), "ctx_in": ("attention.output.dense",),
             "ffn1_in": ("intermediate.dense",), "ffn2_in": ("output.dense",),
             "q_out": ("attention.self.query",), "k_out": ("attention.self.key",),
             "v_out": ("attention.self.value",),
             "ln_out": ("attention.output.LayerNorm", "output.LayerNorm", "embeddings.LayerNorm")}


def fake_quant(x: Any, lo: Any, hi: Any, mode: str, pct: float = 90.0) -> Any:
    """8-bit asymmetric fake quantization of ``x`` with the calibrated ``lo``/``hi`` (per tensor
    or per channel) or, ``mode="token"``, its own per-token range."""
    import torch
    if mode == "pow2":   # blocks.BlockCalibration.meta's factors
        amax = torch.maximum(lo.abs(), hi.abs())
        t = torch.quantile(amax.double(), pct / 100).float()
        k = torch.exp2(torch.floor(torch.log2(torch.clamp(amax / t, min=1.0))))
        lo, hi = (lo / k).min(), (hi / k).max()
    else:
        k = 1.0
    if mode == "token":
        lo, hi = x.amin(-1, keepdim=True), x.amax(-1, keepdim=True)
    lo, hi = torch.clamp(lo, max=0.0), torch.clamp(hi, min=0.0)
    sc = (hi - lo) / 255
    sc = torch.where(sc > 0, sc, torch.ones_like(sc))
    zp = torch.round(-lo / sc)
    return (torch.clamp(torch.round(x / (sc * k)) + zp, 0, 255) - zp) * sc * k


def fq_row(model: Any, cal: Any, ev: Any, ref: np.ndarray, mode: str, group: str) -> Dict:
    import copy

    import torch
    m2 = copy.deepcopy(model)
    rng: Dict[str, Any] = {}
    hs = []
    out = group.endswith("_out")
    per_channel = mode in ("chan", "pow2")
    for n, mod in m2.named_modules():
        if not (any(n.endswith(p) for p in FQ_GROUPS[group])
                and ("layer." in n or n.endswith("embeddings.LayerNorm"))):
            continue

        def cal_hook(mod: Any, a: Any, o: Any, n: str = n) -> None:
            t = (o if out else a[0]).detach()
            t = t.reshape(-1, t.shape[-1])
            lo, hi = (t.amin(0), t.amax(0)) if per_channel else (t.min(), t.max())
            rng[n] = (lo, hi) if n not in rng else (torch.minimum(rng[n][0], lo),
                                                   torch.maximum(rng[n][1], hi))
        hs.append((n, mod, mod.register_forward_hook(cal_hook)))
    MA.embed(m2, cal)
    for n, mod, h in hs:
        h.remove()
        if out:
            mod.register_forward_hook(lambda m, a, o, n=n: fake_quant(o, *rng[n], mode))
        else:
            mod.register_forward_pre_hook(
                lambda m, a, n=n: (fake_quant(a[0], *rng[n], mode),) + tuple(a[1:]))
    return MA.metrics(ref, MA.embed(m2, ev))


def w8_row(model: Any, ev: Any, ref: np.ndarray) -> Dict:
    import copy

    import torch
    m2 = copy.deepcopy(model)
    with torch.no_grad():
        for n, mod in m2.named_modules():
            if isinstance(mod, torch.nn.Linear) and n.startswith("encoder"):
                w = mod.weight
                sc = w.abs().amax(1, keepdim=True) / 127
                mod.weight.copy_(torch.round(w / sc).clamp(-127, 127) * sc)
    return MA.metrics(ref, MA.embed(m2, ev))


def main(argv: Sequence[str] = ()) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=800, help="evaluation sentences (first n lines)")
    ap.add_argument("--calib", type=int, default=200, help="calibration sentences (last lines)")
    ap.add_argument("--rows", default="all,only,softmax,ln,resid,geluout,gelu,w8,fq:tensor,"
                    "fq:pow2,fq:chan,fq:token", help="comma-separated rows (see above)")
    ap.add_argument("--groups", default=",".join(FQ_GROUPS), help="the fq rows' groups")
    a = ap.parse_args(list(argv) or None)
    import torch

    import qkernels as qk
    from qkernels.torch import TRANSFORMER_OPS, QuantConfig, swap
    from qkernels.torch import blocks as B
    from qkernels.torch import swapping as SW

    torch.set_num_threads(1)
    sents = MA.load_sentences()
    model, tok = MA.load_minilm()
    ev, cal = MA.batches(tok, sents[:a.n]), MA.batches(tok, sents[-a.calib:])
    ref = MA.embed(model, ev)
    rows = a.rows.split(",")

    def run(label: str, ops: Sequence[str] = TRANSFORMER_OPS) -> None:
        t0 = time.perf_counter()
        # the static block form (the study below was of it; its oracles patch its steps)
        with swap(model, cal, ops=ops, config=QuantConfig(token_rows=False)) as s:
            for m in s.values():   # the float LayerNorm oracle needs the module
                if getattr(m, "kind", None) == "residual_layernorm":
                    m.block.ln_module = m.original.LayerNorm
            e = MA.embed(model, ev)
        m = MA.metrics(ref, e)
        print(f"{label:34s} {m['cos_mean']:9.4f} {m['cos_min']:9.4f} {m['nn_agree']:9.3f} "
              f"{time.perf_counter() - t0:7.1f}", flush=True)

    print(f"all-MiniLM-L6-v2, {a.n} evaluation / {a.calib} calibration sentences")
    print(f"{'variant':34s} {'cos mean':>9s} {'cos min':>9s} {'NN agree':>9s} {'time s':>7s}")
    if "all" in rows:
        run("all integer")
    if "only" in rows:
        for kind in ("layernorm", "attention", "intermediate"):
            run("only LayerNorms (all 13)" if kind == "layernorm" else f"only {kind}", (kind,))
        # the two residual LayerNorm kinds are one block class: told apart by their dense's shape
        orig = B.block_kind

        for which in ("self-output", "output"):
            def kind_of(mod: Any, which: str = which) -> Any:
                k = orig(mod)
                if k == "residual_layernorm":
                    wide = mod.dense.in_features != mod.dense.out_features
                    if (which == "output") != wide:
                        return None
                return k
            with patched(B, "block_kind", kind_of):
                run(f"only residual LN ({which})", ("residual_layernorm",))
    def show(label: str, m: Dict) -> None:
        print(f"{label:34s} {m['cos_mean']:9.5f} {m['cos_min']:9.4f} {m['nn_agree']:9.3f}",
              flush=True)
    if "w8" in rows:
        show("W8 only (per-channel weights)", w8_row(model, ev, ref))
    for r in rows:
        if r.startswith("fq:"):
            for g in a.groups.split(","):
                show(f"fq {r[3:]} {g}", fq_row(model, cal, ev, ref, r[3:], g))
    if "softmax" in rows:
        with patched(B.Attention, "__call__", float_softmax_call):
            run("all, float softmax + P V")
    if "ln" in rows:
        orig_fwd = SW.IntegerBlock.forward

        def forward(self: Any, *args: Any, **kwargs: Any) -> Any:
            if self.kind != "residual_layernorm":
                return orig_fwd(self, *args, **kwargs)
            bl = self.block
            x, r = (args + tuple(kwargs.values()))[:2]
            x8, r8 = B.quant(x, bl.x), B.quant(r, bl.r)
            acc = qk.linear_int32(x8, bl.lin.packed, bl.bias, x_zero_point=bl.x.zero_point)
            aa = qk.requantize(acc, bl.m_acc, bl.sh_acc, scheme="single_round", dtype=np.int32,
                               axis=-1)
            rr = qk.requantize(r8.astype(np.int32) - np.int32(bl.r.zero_point), bl.m_r, bl.sh_r,
                               scheme="single_round", dtype=np.int32,
                               axis=None if bl.r.k is None else -1)
            t = aa.astype(np.int64) + rr
            u = float(bl.ptf.scale) / 2.0 ** B.RESIDUAL_BITS
            return B.dequant(float_ln(bl, t, u), bl.out)
        with patched(SW.IntegerBlock, "forward", forward):
            run("all, float LN on int32 sum")
    if "resid" in rows:
        # the LayerNorm outputs (the residual stream of a post-LN BERT) kept in float for the
        # residual adds; the Linear layers still read them quantized to int8 (exact LN)
        orig_fwd2 = SW.IntegerBlock.forward

        def fwd_res(self: Any, *args: Any, **kwargs: Any) -> Any:
            if self.kind not in ("residual_layernorm", "layernorm"):
                return orig_fwd2(self, *args, **kwargs)
            bl = self.block
            if self.kind == "layernorm":
                with torch.no_grad():
                    return self.original.forward(*args, **kwargs)
            x, r = (args + tuple(kwargs.values()))[:2]
            x8 = B.quant(x, bl.x)
            acc = qk.linear_int32(x8, bl.lin.packed, bl.bias, x_zero_point=bl.x.zero_point)
            z = acc.astype(np.float64) * bl.lin.acc_scale(bl.x.scale).astype(np.float64)
            t = torch.from_numpy(z).float() + r
            with torch.no_grad():
                return self.original.LayerNorm(t)
        with patched(SW.IntegerBlock, "forward", fwd_res):
            run("all, float LN + float residual")
    if "geluout" in rows:
        # GELU output not quantized (float GELU on the int32 accumulators) and the FFN output
        # Linear on it in float with its int8 weights; LayerNorm in float on the sum with the
        # int8 residual (compare with "all, float LN on int32 sum")
        orig_fwd3 = SW.IntegerBlock.forward

        def fwd_g(self: Any, *args: Any, **kwargs: Any) -> Any:
            bl = self.block
            if self.kind == "intermediate":
                x8 = B.quant(args[0] if args else kwargs["hidden_states"], bl.x)
                acc = qk.linear_int32(x8, bl.lin.packed, bl.bias, x_zero_point=bl.x.zero_point)
                z = acc.astype(np.float64) * bl.lin.acc_scale(bl.x.scale).astype(np.float64)
                return torch.nn.functional.gelu(torch.from_numpy(z)).float()
            if self.kind == "residual_layernorm" and bl.x.dtype == np.uint8:
                x, r = (args + tuple(kwargs.values()))[:2]
                r8 = B.quant(r, bl.r)
                xk = x.double().numpy() / (bl.x.k if bl.x.k is not None else 1.0)
                w = bl.lin.wq.astype(np.float64) * bl.lin.w_scale[:, None].astype(np.float64)
                z = xk @ w.T + bl.lin.bias
                t = z + B.dequant(r8, bl.r).double().numpy()
                with torch.no_grad():
                    return self.original.LayerNorm(torch.from_numpy(t).float())
            return orig_fwd3(self, *args, **kwargs)
        with patched(SW.IntegerBlock, "forward", fwd_g):
            run("all, float GELU output + FFN out")
    if "gelu" in rows:
        def gelu_call(self: Any, x8: np.ndarray, threads: int) -> np.ndarray:
            acc = qk.linear_int32(x8, self.lin.packed, self.bias, x_zero_point=self.x.zero_point,
                                  threads=threads)
            z = acc.astype(np.float64) * self.lin.acc_scale(self.x.scale).astype(np.float64)
            g = torch.nn.functional.gelu(torch.from_numpy(z)).numpy().astype(np.float32)
            st = self.out.steps()
            return qk.quantize(g, st, np.full(np.shape(st), self.out.zero_point, np.int32),
                               dtype=self.out.dtype, axis=-1 if self.out.k is not None else None,
                               flavor="torch")
        with patched(B.Intermediate, "__call__", gelu_call):
            run("all, float GELU")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
