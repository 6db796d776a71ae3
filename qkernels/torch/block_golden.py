"""The integers of one BERT / MiniLM encoder block, taken from a model run with
:func:`~qkernels.torch.swap` (``ops=TRANSFORMER_OPS``): what ``python -m qkernels collect
--block N`` writes (:mod:`qkernels.collect_block`), in the static form or, with
``token_rows=True`` (``--token-rows``), the token-rows form (``QuantConfig(token_rows=True)``).

The whole model is calibrated and swapped (every block integer, so block N's input is the
integer output of the blocks before it), run on real sentences, and the four swapped modules of
layer N (attention, attention output, intermediate, output) keep their integers. Their
parameters are read from the integer blocks (:mod:`qkernels.torch.blocks`), the block is
recomputed step by step (:func:`qkernels.collect_block.run_block`) and every tensor the
swapped modules kept must equal the recomputation: the files describe the arithmetic the
swapped model really ran, or nothing is written.

Example:
    >>> # g = collect_block(model, tokenizer, 0, calibration, sentences)
    >>> # write_block_dir("data/block0", g)
"""
from __future__ import annotations

from typing import Any, Dict, Sequence, Tuple

import numpy as np
import torch

from ..collect_block import FORM_ROWS, FORM_STATIC, OUTPUT, BlockError, BlockGolden, run_block
from . import blocks as B
from .config import QuantConfig
from .swapping import TRANSFORMER_OPS, swap

__all__ = ["collect_block", "encoder_layers"]

F32 = np.float32


def encoder_layers(model: torch.nn.Module) -> Sequence[str]:
    """Names of the model's BERT-style encoder layers (a module with ``attention.self``,
    ``attention.output``, ``intermediate`` and ``output`` children), in order."""
    names = []
    for n, m in model.named_modules():
        att = getattr(m, "attention", None)
        if att is not None and B.block_kind(getattr(att, "self", None) or torch.nn.Module()) \
                == "attention" and B.block_kind(getattr(att, "output", torch.nn.Module())) \
                == "residual_layernorm" and hasattr(m, "intermediate") and hasattr(m, "output"):
            names.append(n)
    return names


def _linear(prefix: str, lin: B.IntLinear, prepared: Any) -> Dict[str, np.ndarray]:
    ep = prepared.epilogue
    if ep.scheme_name != "double_round":
        raise BlockError(f"{prefix}: requantization {ep.scheme_name}; the block goldens expect "
                         f"double_round")
    n = lin.out_features
    return {f"{prefix}_weight": lin.wq, f"{prefix}_bias": _vec(ep.bias, n, np.int32),
            f"{prefix}_multiplier": _vec(ep.mult, n, np.int32),
            f"{prefix}_shift": _vec(ep.shift, n, np.int32)}


def _vec(v: Any, n: int, dt: Any) -> np.ndarray:
    a = np.zeros(n, dt) if v is None else np.asarray(v).astype(dt)
    return np.ascontiguousarray(np.broadcast_to(a.reshape(-1) if a.size > 1 else a.reshape(()),
                                                (n,)))


def _residual(r: str, bl: B.ResidualLayerNorm,
              mod: Any) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    ln = bl.ln
    c = ln.channels
    gamma, beta = _gamma_beta(mod, bl)
    p = {f"{r}_dense_weight": bl.lin.wq, f"{r}_dense_bias": _vec(bl.bias, c, np.int32),
         f"{r}_dense_multiplier": _vec(bl.m_acc, c, np.int32),
         f"{r}_dense_shift": _vec(bl.sh_acc, c, np.int32),
         f"{r}_residual_multiplier": _vec(bl.m_r, c, np.int32),
         f"{r}_residual_shift": _vec(bl.sh_r, c, np.int32),
         f"{r}_ptf_shift": _vec(bl.shift, c, np.int32),
         f"{r}_ln_alpha": np.asarray(ln.ptf.alpha, np.int32),
         f"{r}_ln_gamma": gamma, f"{r}_ln_beta": beta,
         f"{r}_ln_gamma_int": np.asarray(ln.gamma_int, np.int32),
         f"{r}_ln_beta_int": np.asarray(ln.beta_int, np.int64)}
    method = "exact" if ln.method == "exact" else f"sole_{ln.rounding}"
    if ln.method == "sole":
        p[f"{r}_ln_lut"] = np.asarray(ln.lut, np.uint32)
    s = {f"{r}_x_zero_point": int(bl.x.zero_point),
         f"{r}_residual_zero_point": int(bl.r.zero_point),
         f"{r}_ln_in_zero_point": int(ln.ptf.zero_point), f"{r}_ln_method": method,
         f"{r}_ln_in_scale": float(ln.ptf.scale), f"{r}_ln_eps": float(F32(ln.eps)),
         f"{r}_ln_out_scale": float(F32(ln.out_scale)),
         f"{r}_ln_out_zero_point": int(ln.out_zero_point), f"{r}_ln_shift": int(ln.shift),
         f"{r}_ln_eps_term": int(ln.eps_term),
         f"{r}_ln_gamma_multiplier": int(ln.gamma_multiplier),
         f"{r}_ln_beta_multiplier": int(ln.beta_multiplier)}
    return p, s


def _gamma_beta(mod: Any, bl: B.ResidualLayerNorm) -> Tuple[np.ndarray, np.ndarray]:
    """The float gamma and beta the block prepared its LayerNorm with (the output's channel
    factors folded in, as blocks._ln_params does; the folder's check prepares the LayerNorm
    from them and compares the integers with the block's)."""
    ln = mod.LayerNorm
    c = int(ln.normalized_shape[0])
    g = ln.weight.detach().float().numpy() if ln.weight is not None else np.ones(c, F32)
    b = ln.bias.detach().float().numpy() if ln.bias is not None else np.zeros(c, F32)
    if bl.out.k is not None:
        g, b = g / bl.out.k, b / bl.out.k
    return np.asarray(g, F32), np.asarray(b, F32)


def _act(q: B.ActQ) -> Dict[str, Any]:
    d: Dict[str, Any] = {"scale": float(q.scale), "zero_point": int(q.zero_point),
                         "dtype": np.dtype(q.dtype).name}
    if q.k is not None:
        d["channel_factors"] = np.asarray(q.k, np.float64).tolist()   # powers of two
    return d


def _row_linear(prefix: str, rl: B.RowLinear) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    """A token-rows Linear's parameters: int8 weights, their row sums, the int32 bias in the
    rescaled units, the per-row rescale table and its ``p``."""
    n = rl.lin.out_features
    mt, st = rl.table
    return ({f"{prefix}_weight": rl.lin.wq, f"{prefix}_wsum": _vec(rl.wsum, n, np.int32),
             f"{prefix}_bias": _vec(rl.bias, n, np.int32),
             f"{prefix}_rescale_multiplier": np.asarray(mt, np.int32),
             f"{prefix}_rescale_shift": np.asarray(st, np.int32)},
            {f"{prefix}_p": int(rl.p)})


def _residual_rows(r: str, bl: B.ResidualLayerNorm,
                   mod: Any) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    """A token-rows residual add + int16 LayerNorm's parameters."""
    if bl.rows is None or not bl.wide:
        raise BlockError(f"{r}: the residual block is not in the token-rows form (int16 "
                         f"LayerNorm, per-token Linear input)")
    ln = bl.ln
    c = ln.channels
    gamma, beta = _gamma_beta(mod, bl)
    p, s = _row_linear(f"{r}_dense", bl.rows)
    p.update({f"{r}_dense_multiplier": _vec(bl.m_acc, c, np.int32),
              f"{r}_dense_shift": _vec(bl.sh_acc, c, np.int32),
              f"{r}_residual_multiplier": _vec(bl.m_r, c, np.int32),
              f"{r}_residual_shift": _vec(bl.sh_r, c, np.int32),
              f"{r}_ln_in_shift": _vec(bl.shift, c, np.int32),
              f"{r}_ln_gamma": gamma, f"{r}_ln_beta": beta,
              f"{r}_ln_gamma_int": np.asarray(ln.gamma_int, np.int32),
              f"{r}_ln_beta_int": np.asarray(ln.beta_int, np.int64)})
    s.update({f"{r}_residual_zero_point": int(bl.r.zero_point), f"{r}_ln_method": ln.method,
              f"{r}_ln_in_scale": float(F32(ln.ptf.scale)), f"{r}_ln_eps": float(F32(ln.eps)),
              f"{r}_ln_out_scale": float(F32(ln.out_scale)),
              f"{r}_ln_out_zero_point": int(ln.out_zero_point), f"{r}_ln_shift": int(ln.shift),
              f"{r}_ln_eps_term": int(ln.eps_term),
              f"{r}_ln_gamma_multiplier": int(ln.gamma_multiplier),
              f"{r}_ln_beta_multiplier": int(ln.beta_multiplier)})
    return p, s


def _rows_parameters(att: B.Attention, inter: B.Intermediate, bl: Dict[str, Any],
                     mods: Dict[str, Any], subs: Dict[str, str],
                     x: np.ndarray) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    """Every parameter of the token-rows block (:data:`qkernels.collect_block.STEPS_ROWS`)."""
    if att.rows is None or inter.rows is None:
        raise BlockError("the attention / intermediate blocks are not in the token-rows form")
    sm = att.softmax
    if sm.method != "exp2" or inter.gelu.method != "interp":
        raise BlockError(f"softmax {sm.method} / GELU {inter.gelu.method}: the token-rows "
                         f"block goldens describe the exp2 softmax and the interp GELU")
    params: Dict[str, np.ndarray] = {}
    scalars: Dict[str, Any] = {
        "form": FORM_ROWS, "batch": int(x.shape[0]), "tokens": int(x.shape[1]),
        "hidden": int(x.shape[2]), "heads": att.heads, "head_dim": att.d,
        "intermediate": int(inter.lin.out_features)}
    for (p_, t), (rl, m, sh) in zip((("query", "q"), ("key", "k"), ("value", "v")), att.rows):
        pp, ss = _row_linear(p_, rl)
        n = rl.lin.out_features
        pp[f"{p_}_multiplier"] = _vec(m, n, np.int32)
        pp[f"{p_}_shift"] = _vec(sh, n, np.int32)
        params.update(pp)
        scalars.update(ss)
    scalars.update({
        "q_zero_point": int(att.q.zero_point), "k_zero_point": int(att.k.zero_point),
        "v_zero_point": int(att.v.zero_point), "score_scale": float(F32(att.score_scale)),
        "softmax_method": sm.method, "softmax_mult": int(sm.exp2_mult),
        "softmax_shift": int(sm.exp2_shift), "softmax_cap": int(sm.exp2_cap),
        "pv_renorm": 1, "pv_multiplier": int(att.rn_mult), "pv_shift": int(att.rn_shift),
        "context_zero_point": int(att.out.zero_point)})
    params["softmax_table"] = np.asarray(sm.exp2_table, np.int32)
    for r in ("attn", "out"):
        p, s = _residual_rows(r, bl[r], mods[subs[r]])
        params.update(p)
        scalars.update(s)
        if r == "attn":
            pp, ss = _row_linear("intermediate", inter.rows)
            params.update(pp)
            scalars.update(ss)
            gp = inter.gelu
            n = inter.lin.out_features
            params.update(intermediate_rescaled_scale=_vec(gp.x_scale, n, F32),
                          gelu_in_multiplier=_vec(gp.in_multiplier, n, np.int32),
                          gelu_in_rshift=_vec(gp.in_rshift, n, np.int32),
                          gelu_multiplier=_vec(gp.multiplier, n, np.int32),
                          gelu_rshift=_vec(gp.rshift, n, np.int32),
                          gelu_table=np.asarray(gp.table, np.int32))
            if np.ndim(gp.out_scale) != 0:
                raise BlockError("the interp GELU has per-channel output steps; the token-rows "
                                 "block goldens expect one")
            scalars.update(gelu_method=gp.method, gelu_out_scale=float(F32(gp.out_scale)),
                           gelu_zero_point=int(gp.out_zero_point))
    return params, scalars


def collect_block(model: torch.nn.Module, tokenizer: Any, block: int,
                  calibration: Sequence[str], sentences: Sequence[str], *,
                  model_name: str = "", threads: int = 1,
                  token_rows: bool = False) -> BlockGolden:
    """Calibrate and swap ``model`` (a Hugging Face BERT / MiniLM) on the ``calibration``
    sentences (one at a time), run it on ``sentences`` (one padded batch) and return the
    goldens of encoder layer ``block`` (negative counts from the end), in the static form or,
    with ``token_rows``, the token-rows form (``QuantConfig(token_rows=True)``)."""
    layers = encoder_layers(model)
    if not layers:
        raise BlockError("the model has no BERT-style encoder layers (attention.self, "
                         "attention.output, intermediate, output): --block supports BERT / "
                         "MiniLM text models")
    if not -len(layers) <= block < len(layers):
        raise BlockError(f"block {block} is out of range; the model has {len(layers)} encoder "
                         f"layers (0..{len(layers) - 1})")
    name = layers[block]
    if not sentences:
        raise BlockError("give at least one sentence")
    subs = {"attention": f"{name}.attention.self", "attn": f"{name}.attention.output",
            "intermediate": f"{name}.intermediate", "out": f"{name}.output"}
    cal = [dict(tokenizer(s, return_tensors="pt")) for s in calibration]
    enc = dict(tokenizer(list(sentences), padding=True, return_tensors="pt"))
    # the block form: the folder and csrc/examples/block_golden.c describe either step by step
    cfg = QuantConfig(token_rows=bool(token_rows))
    with torch.no_grad(), swap(model, cal, ops=TRANSFORMER_OPS, threads=threads,
                               config=cfg) as sw:
        missing = [m for m in subs.values() if m not in sw]
        if missing:
            raise BlockError(f"{', '.join(missing)}: not swapped (never called while "
                             f"calibrating)")
        for m in subs.values():
            sw[m].keep = True
        model(**enc)
        last = {k: sw[m].last for k, m in subs.items()}
        bl = {k: sw[m].block for k, m in subs.items()}
    # the chain is integer at every boundary inside the block
    links = (("attn", "x", "attention", "context"), ("attn", "residual", "attention", "x"),
             ("intermediate", "x", "attn", "out"), ("out", "x", "intermediate", "out"),
             ("out", "residual", "attn", "out"))
    for a, ka, b_, kb in links:
        if not np.array_equal(last[a][ka], last[b_][kb]):
            raise BlockError(f"{subs[a]} input {ka!r} is not the integer output of {subs[b_]}: "
                             f"the block boundary is not lossless")
    att, inter = bl["attention"], bl["intermediate"]
    mods = dict(model.named_modules())
    tensors: Dict[str, np.ndarray] = {"x": last["attention"]["x"]}
    keep = enc["attention_mask"].numpy().astype(np.uint8)          # (B, T): the keys kept
    t = keep.shape[1]
    tensors["mask"] = np.ascontiguousarray(np.broadcast_to(keep[:, None, :],
                                                           (keep.shape[0], t, t)))
    if token_rows:
        params, scalars = _rows_parameters(att, inter, bl, mods, subs, tensors["x"])
    else:
        params, scalars = _static_parameters(att, inter, bl, mods, subs, tensors["x"], t)
    ints = run_block(params, scalars, tensors["x"], tensors["mask"])
    kept = {("attention", "q"): "q", ("attention", "k"): "k", ("attention", "v"): "v",
            ("attention", "scores"): "scores", ("attention", "probs"): "probs",
            ("attention", "context"): "context", ("attn", "ln_input"): "attn_ln_input",
            ("attn", "out"): "attn_ln_output", ("intermediate", "out"): "gelu",
            ("out", "ln_input"): "out_ln_input", ("out", "out"): OUTPUT}
    for (k, key), n in kept.items():
        if last[k][key].dtype != ints[n].dtype or not np.array_equal(last[k][key], ints[n]):
            bad = int(np.count_nonzero(last[k][key] != ints[n]))
            raise BlockError(f"{subs[k]}: {n} of the swapped block differs from the step-by-step "
                             f"recomputation in {bad} of {ints[n].size} values (dtype "
                             f"{last[k][key].dtype} vs {ints[n].dtype}; the block's arithmetic "
                             f"changed: update qkernels/collect_block.py)")
    tensors.update(ints)
    return BlockGolden(tensors, params, scalars,
                       _info(mods, name, enc, keep, tensors, att, inter, bl, layers, block,
                             model_name, sentences, calibration, len(kept), token_rows))


def _static_parameters(att: B.Attention, inter: B.Intermediate, bl: Dict[str, Any],
                       mods: Dict[str, Any], subs: Dict[str, str], x: np.ndarray,
                       t: int) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    """Every parameter of the static block (:data:`qkernels.collect_block.STEPS`)."""
    tensors = {"x": x}
    params: Dict[str, np.ndarray] = {}
    amod = mods[subs["attention"]]
    for p_, prep in (("query", att.lq), ("key", att.lk), ("value", att.lv)):
        params.update(_linear(p_, B.IntLinear(getattr(amod, p_), att.x.k), prep))
    renorm = bool(B.SOFTMAX_RENORM)
    sm = att.softmax
    scalars: Dict[str, Any] = {
        "form": FORM_STATIC, "batch": int(tensors["x"].shape[0]), "tokens": t,
        "hidden": int(tensors["x"].shape[2]),
        "heads": att.heads, "head_dim": att.d, "intermediate": int(inter.lin.out_features),
        "x_zero_point": int(att.x.zero_point), "q_zero_point": int(att.q.zero_point),
        "k_zero_point": int(att.k.zero_point), "v_zero_point": int(att.v.zero_point),
        "score_scale": float(F32(att.score_scale)), "softmax_method": sm.method,
        "softmax_x0": int(sm.x0), "softmax_b": int(sm.b), "softmax_c": int(sm.c),
        "softmax_m16": int(sm.m16), "softmax_e16": int(sm.e16), "pv_renorm": int(renorm),
        "pv_multiplier": int(att.rn_mult if renorm else att.pv_mult),
        "pv_shift": int(att.rn_shift if renorm else att.pv_shift),
        "context_zero_point": int(att.out.zero_point)}
    for r in ("attn", "out"):
        p, s = _residual(r, bl[r], mods[subs[r]])
        params.update(p)
        scalars.update(s)
        if r == "attn":
            params["intermediate_weight"] = inter.lin.wq
            params["intermediate_bias"] = _vec(inter.bias, inter.lin.out_features, np.int32)
            gp = inter.gelu
            n = inter.lin.out_features
            params.update(intermediate_acc_scale=_vec(gp.x_scale, n, F32),
                          gelu_out_scale=_vec(gp.out_scale, n, F32),
                          gelu_b=_vec(gp.b, n, np.int64), gelu_c=_vec(gp.c, n, np.int64),
                          gelu_shift=_vec(gp.shift, n, np.int64),
                          gelu_multiplier=_vec(gp.multiplier, n, np.int32),
                          gelu_rshift=_vec(gp.rshift, n, np.int32))
            scalars.update(intermediate_x_zero_point=int(inter.x.zero_point),
                           gelu_zero_point=int(gp.out_zero_point))
    return params, scalars


def _info(mods: Dict[str, Any], name: str, enc: Dict[str, Any],
          keep: np.ndarray, tensors: Dict[str, np.ndarray], att: B.Attention,
          inter: B.Intermediate, bl: Dict[str, Any], layers: Sequence[str], block: int,
          model_name: str, sentences: Sequence[str], calibration: Sequence[str], verified: int,
          token_rows: bool) -> Dict[str, Any]:
    """The manifest's description: the model, the sentences, the error of the block against
    the float layer, the quantization of each tensor."""
    # the error of the block against the float layer on the same (dequantized) input
    x_f = B.dequant(tensors["x"], att.x)
    mask4 = (1.0 - enc["attention_mask"][:, None, None, :].float()) * torch.finfo(torch.float32).min
    with torch.no_grad():
        ref = mods[name](x_f, attention_mask=mask4)
    ref = (ref[0] if isinstance(ref, tuple) else ref).numpy().astype(np.float64)
    got = B.dequant(tensors[OUTPUT], bl["out"].out).numpy().astype(np.float64)
    sel = keep.astype(bool)          # padded positions carry no meaning
    r_, g_ = ref[sel], got[sel]
    err = r_ - g_
    probs = ({"scale": "1/255 of the row maximum's exponential (the row's own scale; P V is "
                       "divided by the row sum)", "zero_point": 0, "dtype": "uint8"}
             if token_rows else {"scale": 1.0 / 256, "zero_point": 0, "dtype": "uint8"})
    return {"model": model_name, "block": block if block >= 0 else len(layers) + block,
            "module": name, "sentences": list(sentences),
            "form": FORM_ROWS if token_rows else FORM_STATIC,
            "calibration_sentences": len(calibration), "verified_against_swap": verified,
            "float_error": {"sqnr_db": float(10 * np.log10(np.sum(r_ ** 2) / np.sum(err ** 2))),
                            "max_abs_err": float(np.abs(err).max()),
                            "cosine": float(np.sum(r_ * g_) / np.sqrt(np.sum(r_ ** 2) *
                                                                      np.sum(g_ ** 2))),
                            "tokens": int(sel.sum())},
            "quantization": {"x": _act(att.x), "q": _act(att.q), "k": _act(att.k),
                             "v": _act(att.v), "context": _act(att.out),
                             "attn_ln_output": _act(bl["attn"].out), "gelu": _act(inter.out),
                             "out_ln_output": _act(bl["out"].out), "probs": probs}}
