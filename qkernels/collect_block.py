"""Goldens of one whole integer encoder block (``python -m qkernels collect --block N``): the
block's integer input, every intermediate integer tensor in execution order, every parameter,
and a manifest, in the project's export formats, so that a C or RTL bench tests the full block.

The block is a BERT / MiniLM encoder layer as :func:`qkernels.torch.swap` runs it with
``ops=TRANSFORMER_OPS`` (:mod:`qkernels.torch.blocks`), in either of its two forms (the folder's
``form``, in ``params.txt`` and ``manifest.json``):

- ``static`` (``QuantConfig(token_rows=False)``, ``collect --block N``): int8 activations with
  per-tensor scales, I-BERT's softmax and i-GELU, PTF uint8 LayerNorm inputs, int8 LayerNorms
  (:data:`STEPS`);
- ``token_rows`` (``QuantConfig(token_rows=True)``, ``collect --block N --token-rows``): the
  int16 residual stream and LayerNorms, every Linear on its input quantized to uint8 per token
  (``row_quantize``: the row's z / j / e), its int32 sums rescaled per row (``row_rescale``), the
  exp2 softmax (rowmax output) and ``P V`` renormalized by the row sums (``row_renorm``), the
  interp GELU on int32 (:data:`STEPS_ROWS`).

:mod:`qkernels.torch.block_golden` takes the integers and parameters from the swapped model.
This module holds what needs no torch:

- :data:`STEPS` / :data:`STEPS_ROWS` (:func:`steps`): the op order of each form (each step's
  inputs, outputs, parameters and the C library call that computes it), the single source of
  the manifest and of the C example's order;
- :func:`run_block`: the block recomputed step by step from the parameters with qkernels' public
  kernels (the C example, ``csrc/examples/block_golden.c``, makes the same steps with the C
  library);
- :func:`write_block_dir` / :func:`read_block_dir` / :func:`check_block_dir`: the folder.

Folder (``--out``, default ``data/block<N>``, ``data/block<N>_rows`` for token rows):
``<name>.txt`` for every tensor and parameter array (``# comment``, ``# shape``, the count, one
number a line: :func:`qkernels.io.format_array`), ``<name>.hex`` for every integer array
(``$readmemh``, :func:`qkernels.io.format_hex`), ``params.txt`` (the scalars, ``key value``;
``form`` names the form, absent means static), ``block.npz`` (every array), ``manifest.json``
(every file with its dtype, shape, kind and SHA-256, the form, the op order, the quantization of
each tensor, the error against the float block). ``docs/block_goldens.md`` lists every file of
both forms.

Example:
    >>> # python -m qkernels collect --block 0 --out data/block0
    >>> # python -m qkernels collect --block 0 --token-rows --out data/block0_rows
    >>> # python -m qkernels collect --check --out data/block0_rows
    >>> # build/block_golden data/block0_rows
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from . import io as qio
from .loaders import ModelError

__all__ = ["FORMAT", "STEPS", "STEPS_ROWS", "FORMS", "steps", "form_of", "BlockError",
           "BlockGolden", "run_block", "write_block_dir", "read_block_dir", "check_block_dir",
           "format_block_summary"]

FORMAT = "qkernels-block/1"
I32_MIN, I32_MAX = -2 ** 31, 2 ** 31 - 1
#: The residual adds and LayerNorms of a BERT layer: the attention output's and the MLP output's.
RESIDUALS = ("attn", "out")

#: The op order: (step, what it computes, inputs, outputs, parameters, the C library call).
#: ``{r}`` stands for each of RESIDUALS (the residual add + LayerNorm runs twice).
_RES_STEPS = [
    ("{r}_dense", "int32 sums of the dense Linear, + int32 bias",
     ["{r}_x"], ["{r}_dense_acc"], ["{r}_dense_weight", "{r}_dense_bias", "{r}_x_zero_point"],
     "qk_linear (QK_REQ_NONE, int32 out)"),
    ("{r}_dense_rq", "sums to the residual unit u = S_ptf / 2^4: single-round fixed point per "
     "channel, int32", ["{r}_dense_acc"], ["{r}_dense_rq"],
     ["{r}_dense_multiplier", "{r}_dense_shift"], "qk_requantize_s32_s32_single"),
    ("{r}_residual_rq", "the residual (r - r_zp) to the unit u, single-round per channel, int32",
     ["{r}_residual"], ["{r}_residual_rq"],
     ["{r}_residual_zero_point", "{r}_residual_multiplier", "{r}_residual_shift"],
     "qk_requantize_s32_s32_single"),
    ("{r}_add", "int32 residual add (exact in int64, saturated to int32)",
     ["{r}_dense_rq", "{r}_residual_rq"], ["{r}_sum"], [], "plain C (no library kernel)"),
    ("{r}_ptf", "PTF input of the LayerNorm: a rounding (half up) shift by alpha_c + 4 per "
     "channel, + zp, uint8", ["{r}_sum"], ["{r}_ln_input"],
     ["{r}_ptf_shift", "{r}_ln_in_zero_point"], "qk_requantize_s32_u8_shift_half_up"),
    ("{r}_layernorm", "integer LayerNorm on PTF input (prepared from the float parameters; the "
     "prepared integers are files too), int8", ["{r}_ln_input"], ["{r}_ln_output"],
     ["{r}_ln_alpha", "{r}_ln_gamma", "{r}_ln_beta", "{r}_ln_gamma_int", "{r}_ln_beta_int",
      "{r}_ln_in_scale", "{r}_ln_eps", "{r}_ln_out_scale", "{r}_ln_out_zero_point",
      "{r}_ln_method"], "qk_layernorm_prepare + qk_layernorm_ptf_u8_s8"),
]
STEPS: List[Tuple[str, str, List[str], List[str], List[str], str]] = [
    *[step for p, t in (("query", "q"), ("key", "k"), ("value", "v")) for step in (
        (f"{p}_acc", f"int32 sums of the {p} Linear, + int32 bias", ["x"], [f"{p}_acc"],
         [f"{p}_weight", f"{p}_bias", "x_zero_point"], "qk_linear (QK_REQ_NONE, int32 out)"),
        (f"{p}_linear", f"the {p} Linear requantized (double rounding per channel), int8, split "
         f"into heads (B, H, T, d)", ["x"], [t], [f"{p}_weight", f"{p}_bias", f"{p}_multiplier",
                                                 f"{p}_shift", "x_zero_point", f"{t}_zero_point"],
         "qk_linear (QK_REQ_DOUBLE, int8 out)"))],
    ("scores", "Q K^T per head, exact int32; masked keys set to INT32_MIN", ["q", "k", "mask"],
     ["scores"], ["q_zero_point", "k_zero_point"], "qk_bmm (QK_BMM_B_NK, QK_REQ_NONE)"),
    ("softmax", "integer softmax of the int32 scores (I-BERT i-exp), uint8 probabilities of "
     "scale 1/256", ["scores"], ["probs"],
     ["softmax_method", "softmax_x0", "softmax_b", "softmax_c", "softmax_m16", "softmax_e16"],
     "qk_softmax_u8"),
    ("pv", "P V per head, exact int32", ["probs", "v"], ["pv_acc"], ["v_zero_point"],
     "qk_bmm (QK_BMM_B_KN, QK_REQ_NONE)"),
    ("pv_renorm", "P V normalised by the integer row sums: t = floor((512 acc + s) / (2 s)), "
     "s = sum_j P_ij (round half up of 256 acc / s), int32 (only with pv_renorm 1)",
     ["pv_acc", "probs"], ["pv_renorm"], ["pv_renorm"], "qk_row_renorm"),
    ("context", "requantized (double rounding) to the context's int8, heads merged (B, T, C)",
     ["pv_renorm"], ["context"], ["pv_multiplier", "pv_shift", "context_zero_point"],
     "qk_requantize_s32_s8_double"),
    *[tuple(f.format(r="attn") if isinstance(f, str) else [g.format(r="attn") for g in f]
            for f in s) for s in _RES_STEPS],
    ("intermediate", "int32 sums of the intermediate Linear, + int32 bias", ["attn_ln_output"],
     ["intermediate_acc"], ["intermediate_weight", "intermediate_bias",
                            "intermediate_x_zero_point"], "qk_linear (QK_REQ_NONE, int32 out)"),
    ("gelu", "I-BERT i-GELU on the int32 sums, per-channel constants, uint8",
     ["intermediate_acc"], ["gelu"], ["gelu_b", "gelu_c", "gelu_shift", "gelu_multiplier",
                                      "gelu_rshift", "gelu_zero_point"], "qk_gelu_ibert"),
    *[tuple(f.format(r="out") if isinstance(f, str) else [g.format(r="out") for g in f]
            for f in s) for s in _RES_STEPS],
]
#: Tensors that are other tensors under a second name (the residual inputs).
ALIASES = {"attn_x": "context", "attn_residual": "x", "out_x": "gelu",
           "out_residual": "attn_ln_output"}
#: The block's integer output.
OUTPUT = "out_ln_output"

#: The forms of the block (``params.txt``'s ``form``; a folder without it is static).
FORM_STATIC, FORM_ROWS = "static", "token_rows"
FORMS = (FORM_STATIC, FORM_ROWS)


def _rows_step(src: str, c_in: str) -> Tuple[str, str, List[str], List[str], List[str], str]:
    """The per-token uint8 quantization of tensor ``src`` (token rows)."""
    return (f"{src}_rows", f"{src} quantized to uint8 per token, in integers: per row the range "
            f"code j (1..31), e from min(0, min d) and max(0, max d), the zero point z; x = "
            f"clamp(R(d) + z, 0, 255), R(d) ~ round(d 255 / ((j + 1) 2^e)) (fixed point, single "
            f"rounding)", [src], [f"{src}_rows", f"{src}_rows_z", f"{src}_rows_j", f"{src}_rows_e"],
            [], f"qk_row_quantize_{c_in}")


def _row_linear_steps(lin: str, src: str) -> List[Tuple[str, str, List[str], List[str], List[str],
                                                         str]]:
    """A Linear on the uint8 rows of ``src``: the int32 sums, then the per-row rescale."""
    return [(f"{lin}_acc", f"int32 sums of the {lin} Linear over the uint8 rows (zero point 0, "
             f"no bias)", [f"{src}_rows"], [f"{lin}_acc"], [f"{lin}_weight"],
             "qk_linear (QK_REQ_NONE, uint8 x, int32 out)"),
            (f"{lin}_rescaled", f"the sums less z_r wsum_c (int64), rescaled per row to int32 "
             f"units s_x 2^p s_w_c: (a M + 2^(30 - s)) >> (31 - s), M = rescale_multiplier[j_r], "
             f"s = rescale_shift[j_r] + e_r, saturated; + int32 bias, saturated",
             [f"{lin}_acc", f"{src}_rows_z", f"{src}_rows_j", f"{src}_rows_e"],
             [f"{lin}_rescaled"], [f"{lin}_wsum", f"{lin}_rescale_multiplier",
                                   f"{lin}_rescale_shift", f"{lin}_bias", f"{lin}_p"],
             "qk_row_rescale")]


_RES_STEPS_ROWS = [
    _rows_step("{r}_x", "s32"), *_row_linear_steps("{r}_dense", "{r}_x"),
    ("{r}_dense_rq", "rescaled sums to the residual unit u = S_ptf / 2^4: single-round fixed "
     "point per channel, int32", ["{r}_dense_rescaled"], ["{r}_dense_rq"],
     ["{r}_dense_multiplier", "{r}_dense_shift"], "qk_requantize_s32_s32_single"),
    ("{r}_residual_rq", "the int16 residual (r - r_zp) to the unit u, single-round per channel, "
     "int32", ["{r}_residual"], ["{r}_residual_rq"],
     ["{r}_residual_zero_point", "{r}_residual_multiplier", "{r}_residual_shift"],
     "qk_requantize_s32_s32_single"),
    ("{r}_add", "int32 residual add (exact in int64, saturated to int32)",
     ["{r}_dense_rq", "{r}_residual_rq"], ["{r}_sum"], [], "plain C (no library kernel)"),
    ("{r}_ln_in", "the LayerNorm's int16 input: a rounding (half up) shift of the sum by "
     "ln_in_shift, saturated to int16", ["{r}_sum"], ["{r}_ln_input"], ["{r}_ln_in_shift"],
     "qk_residual_add (dense_rq, residual_rq, the add and this shift in one pass, from "
     "<r>_dense_rescaled and <r>_residual; = qk_requantize_s32_s16_shift_half_up of the sum)"),
    ("{r}_layernorm", "integer LayerNorm, exact method, int16 in (no PTF: alpha 0, zero point 0, "
     "step ln_in_scale) and int16 out (prepared from the float parameters; the prepared "
     "integers are files too)", ["{r}_ln_input"], ["{r}_ln_output"],
     ["{r}_ln_gamma", "{r}_ln_beta", "{r}_ln_gamma_int", "{r}_ln_beta_int", "{r}_ln_in_scale",
      "{r}_ln_eps", "{r}_ln_out_scale", "{r}_ln_out_zero_point", "{r}_ln_method"],
     "qk_layernorm_prepare + qk_layernorm_s16_s16_exact"),
]


def _for(r: str, steps: List[Tuple[Any, ...]]) -> List[Tuple[str, str, List[str], List[str],
                                                          List[str], str]]:
    return [tuple(f.format(r=r) if isinstance(f, str) else [g.format(r=r) for g in f]
                  for f in s) for s in steps]   # type: ignore[misc]


#: The op order of the token-rows form (``QuantConfig(token_rows=True)``), as :data:`STEPS`.
STEPS_ROWS: List[Tuple[str, str, List[str], List[str], List[str], str]] = [
    _rows_step("x", "s16"),
    *[step for p, t in (("query", "q"), ("key", "k"), ("value", "v")) for step in (
        *_row_linear_steps(p, "x"),
        (f"{p}_linear", f"the {p} Linear's rescaled sums requantized per output channel (single "
         f"rounding) to int8, split into heads (B, H, T, d)", [f"{p}_rescaled"], [t],
         [f"{p}_multiplier", f"{p}_shift", f"{t}_zero_point"],
         "qk_row_rescale_requantize (the rescale and this output stage in one pass, from "
         f"{p}_acc; = qk_requantize_s32_s8_single per channel of {p}_rescaled)"))],
    ("scores", "Q K^T per head, exact int32; masked keys set to INT32_MIN", ["q", "k", "mask"],
     ["scores"], ["q_zero_point", "k_zero_point"], "qk_bmm (QK_BMM_B_NK, QK_REQ_NONE)"),
    ("softmax", "exp2 softmax of the int32 scores: the row's exponentials on the step 1/255 of "
     "the row maximum's (255 there), rounded, uint8, no division (d = max - x, z = RHU(d mult / "
     "2^shift), the 2^-f/1024 tables; 0 from d >= cap)", ["scores"], ["probs"],
     ["softmax_method", "softmax_mult", "softmax_shift", "softmax_cap", "softmax_table"],
     "qk_softmax_exp2"),
    ("pv", "P V per head, exact int32", ["probs", "v"], ["pv_acc"], ["v_zero_point"],
     "qk_bmm (QK_BMM_B_KN, QK_REQ_NONE)"),
    ("pv_renorm", "P V normalised by the integer row sums s = sum_j P_ij: t = floor((512 acc + "
     "s) / (2 s)) (round half up of 256 acc / s), int32", ["pv_acc", "probs"], ["pv_renorm"],
     [], "qk_row_renorm"),
    ("context", "requantized (single rounding) to the context's fine int32 step, heads merged "
     "(B, T, C)", ["pv_renorm"], ["context"], ["pv_multiplier", "pv_shift",
                                                "context_zero_point"],
     "qk_requantize_s32_s32_single"),
    *_for("attn", _RES_STEPS_ROWS),
    _rows_step("intermediate_x", "s16"), *_row_linear_steps("intermediate", "intermediate_x"),
    ("gelu", "interp GELU on the rescaled int32 sums (to the grid 2^-16 per channel, 96 "
     "quadratic segments of 1/16, to the output step), int32 at a fine step",
     ["intermediate_rescaled"], ["gelu"],
     ["gelu_in_multiplier", "gelu_in_rshift", "gelu_multiplier", "gelu_rshift", "gelu_table",
      "gelu_zero_point"], "qk_gelu_interp"),
    *_for("out", _RES_STEPS_ROWS),
]
#: The token-rows form's tensors under a second name.
ALIASES_ROWS = {"attn_x": "context", "attn_residual": "x", "intermediate_x": "attn_ln_output",
                "out_x": "gelu", "out_residual": "attn_ln_output"}


def form_of(scalars: Mapping[str, Any]) -> str:
    """The block's form from its scalars (``form``; absent: static, the folders written before
    the token-rows form). :class:`BlockError` for an unknown one."""
    f = str(scalars.get("form", FORM_STATIC))
    if f not in FORMS:
        raise BlockError(f"params.txt: form {f!r}; expected one of {', '.join(FORMS)}")
    return f


def steps(form: str = FORM_STATIC) -> List[Tuple[str, str, List[str], List[str], List[str], str]]:
    """The op order of ``form`` (:data:`STEPS` or :data:`STEPS_ROWS`).

    Example:
        >>> [s[0] for s in steps("token_rows")][:4]
        ['x_rows', 'query_acc', 'query_rescaled', 'query_linear']
    """
    return STEPS_ROWS if form == FORM_ROWS else STEPS


def aliases(form: str = FORM_STATIC) -> Dict[str, str]:
    """The tensors of ``form`` that are other tensors under a second name."""
    return ALIASES_ROWS if form == FORM_ROWS else ALIASES


class BlockError(ModelError):
    """A clear, user-facing error of the block goldens (bad block index, a file that does not
    reproduce, ...)."""


@dataclass
class BlockGolden:
    """One block's goldens: ``tensors`` (integers, execution order, the input first), ``params``
    (arrays), ``scalars`` (ints, floats, names) and ``info`` (model, sentences, quantization,
    errors) for the manifest."""

    tensors: Dict[str, np.ndarray]
    params: Dict[str, np.ndarray]
    scalars: Dict[str, Any]
    info: Dict[str, Any] = field(default_factory=dict)


def _ln_method(s: Mapping[str, Any], r: str) -> Tuple[str, str]:
    name = str(s[f"{r}_ln_method"])
    return ("exact", "round") if name == "exact" else ("sole", name.split("_", 1)[1])


def _softmax_params(s: Mapping[str, Any]) -> Any:
    import qkernels as qk

    m = str(s["softmax_method"])
    if m != "ibert":
        raise BlockError(f"softmax_method {m!r}: the block goldens support I-BERT's softmax "
                         f"(int32 scores) only")
    i64 = lambda k: np.int64(int(s[k]))  # noqa: E731
    return qk.SoftmaxParams("ibert", "uint8", None, np.float32(s["score_scale"]),
                            x0=i64("softmax_x0"), b=i64("softmax_b"), c=i64("softmax_c"),
                            m16=np.int32(int(s["softmax_m16"])), e16=np.int32(int(s["softmax_e16"])))


def _gelu_params(p: Mapping[str, np.ndarray], s: Mapping[str, Any]) -> Any:
    import qkernels as qk

    return qk.GeluParams("ibert", p["intermediate_acc_scale"], 0, p["gelu_out_scale"],
                         int(s["gelu_zero_point"]), np.dtype(np.uint8),
                         b=p["gelu_b"].astype(np.int64), c=p["gelu_c"].astype(np.int64),
                         shift=p["gelu_shift"].astype(np.int64),
                         multiplier=p["gelu_multiplier"].astype(np.int32),
                         rshift=p["gelu_rshift"].astype(np.int32))


def layernorm_params(p: Mapping[str, np.ndarray], s: Mapping[str, Any], r: str) -> Any:
    """The integer LayerNorm ``r`` prepared from the folder's float parameters (what the C
    example does with ``qk_layernorm_prepare``)."""
    import qkernels as qk

    m, rnd = _ln_method(s, r)
    ptf = qk.PTFParams(float(np.float32(s[f"{r}_ln_in_scale"])), p[f"{r}_ln_alpha"],
                       int(s[f"{r}_ln_in_zero_point"]), K=7)
    return qk.prepare_layernorm(ptf, p[f"{r}_ln_gamma"], p[f"{r}_ln_beta"], method=m,
                                rounding=rnd, out_scale=float(np.float32(s[f"{r}_ln_out_scale"])),
                                out_zero_point=int(s[f"{r}_ln_out_zero_point"]),
                                eps=float(np.float32(s[f"{r}_ln_eps"])))


def _residual(p: Mapping[str, np.ndarray], s: Mapping[str, Any], r: str, x: np.ndarray,
              res: np.ndarray, threads: Optional[int]) -> Dict[str, np.ndarray]:
    import qkernels as qk

    out = {}
    acc = qk.linear_int32(x, qk.pack_linear(p[f"{r}_dense_weight"]), p[f"{r}_dense_bias"],
                          x_zero_point=int(s[f"{r}_x_zero_point"]), threads=threads)
    out[f"{r}_dense_acc"] = acc
    a = qk.requantize(acc, p[f"{r}_dense_multiplier"], p[f"{r}_dense_shift"],
                      scheme="single_round", dtype=np.int32, axis=-1)
    out[f"{r}_dense_rq"] = a
    rr = qk.requantize(res.astype(np.int32) - np.int32(s[f"{r}_residual_zero_point"]),
                       p[f"{r}_residual_multiplier"], p[f"{r}_residual_shift"],
                       scheme="single_round", dtype=np.int32, axis=-1)
    out[f"{r}_residual_rq"] = rr
    t = np.clip(np.add(a, rr, dtype=np.int64), I32_MIN, I32_MAX).astype(np.int32)
    out[f"{r}_sum"] = t
    q = qk.requantize_shift(t, p[f"{r}_ptf_shift"], int(s[f"{r}_ln_in_zero_point"]),
                            rounding="half_up", dtype=np.uint8, axis=-1)
    out[f"{r}_ln_input"] = q
    out[f"{r}_ln_output"] = qk.ptf_layernorm(q, layernorm_params(p, s, r))
    return out


def run_block(p: Mapping[str, np.ndarray], s: Mapping[str, Any], x: np.ndarray,
              mask: np.ndarray, threads: Optional[int] = None) -> Dict[str, np.ndarray]:
    """The block's integers from its input ``x`` ((B, T, C): int8 static, int16 token rows), key
    mask ``mask`` (uint8 (B, T, T), 1: keep) and parameters, step by step in :func:`steps`
    order (the form from ``s``: :func:`form_of`) with qkernels' public kernels. Returns every
    tensor of the steps by name.

    Example:
        >>> # ints = run_block(params, scalars, tensors["x"], tensors["mask"])
    """
    import qkernels as qk

    if form_of(s) == FORM_ROWS:
        return _run_block_rows(p, s, x, mask, threads)
    b, t, c = x.shape
    h, d = int(s["heads"]), int(s["head_dim"])
    xz = int(s["x_zero_point"])
    out: Dict[str, np.ndarray] = {}

    def heads(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a.reshape(b, t, h, d).transpose(0, 2, 1, 3))
    for p_, n in (("query", "q"), ("key", "k"), ("value", "v")):
        w = qk.pack_linear(p[f"{p_}_weight"])
        out[f"{p_}_acc"] = qk.linear_int32(x, w, p[f"{p_}_bias"], x_zero_point=xz,
                                           threads=threads)
        lin = qk.prepare_qlinear(w, p[f"{p_}_bias"], x_dtype=np.int8, x_zero_point=xz,
                                 multiplier=p[f"{p_}_multiplier"], shift=p[f"{p_}_shift"],
                                 out_zero_point=int(s[f"{n}_zero_point"]), out_dtype=np.int8)
        out[n] = heads(lin(x, threads=threads))
    sc = qk.matmul_int32(out["q"], out["k"], a_zero_point=int(s["q_zero_point"]),
                         b_zero_point=int(s["k_zero_point"]), transpose_b=True, threads=threads)
    out["scores"] = np.where(mask[:, None] != 0, sc, np.int32(I32_MIN))
    pr = qk.qsoftmax(out["scores"], _softmax_params(s))
    out["probs"] = pr
    acc = qk.matmul_int32(pr, out["v"], b_zero_point=int(s["v_zero_point"]), threads=threads)
    out["pv_acc"] = acc
    if int(s["pv_renorm"]):
        out["pv_renorm"] = qk.transformer.row_renorm(acc, pr, threads=threads)
        acc = out["pv_renorm"]
    ctx = qk.requantize(acc, int(s["pv_multiplier"]), int(s["pv_shift"]),
                        int(s["context_zero_point"]), dtype=np.int8)
    out["context"] = np.ascontiguousarray(ctx.transpose(0, 2, 1, 3)).reshape(b, t, h * d)
    out.update(_residual(p, s, "attn", out["context"], x, threads))
    h1 = out["attn_ln_output"]
    acc = qk.linear_int32(h1, qk.pack_linear(p["intermediate_weight"]), p["intermediate_bias"],
                          x_zero_point=int(s["intermediate_x_zero_point"]), threads=threads)
    out["intermediate_acc"] = acc
    out["gelu"] = qk.qgelu(acc, _gelu_params(p, s))
    out.update(_residual(p, s, "out", out["gelu"], h1, threads))
    return out


# ---- the token-rows form -------------------------------------------------------------------------
def softmax_params_rows(p: Mapping[str, np.ndarray], s: Mapping[str, Any]) -> Any:
    """The exp2 softmax (rowmax output) of the token-rows block from the folder's constants."""
    import qkernels as qk

    if str(s["softmax_method"]) != "exp2":
        raise BlockError(f"softmax_method {s['softmax_method']!r}: the token-rows block goldens "
                         f"use the exp2 softmax")
    return qk.SoftmaxParams("exp2", "rowmax", None, np.asarray(np.float32(s["score_scale"])),
                            exp2_mult=int(s["softmax_mult"]), exp2_shift=int(s["softmax_shift"]),
                            exp2_cap=int(s["softmax_cap"]),
                            exp2_table=np.ascontiguousarray(p["softmax_table"], np.int32))


def gelu_params_rows(p: Mapping[str, np.ndarray], s: Mapping[str, Any]) -> Any:
    """The interp GELU of the token-rows block from the folder's constants."""
    import qkernels as qk

    if str(s["gelu_method"]) != "interp":
        raise BlockError(f"gelu_method {s['gelu_method']!r}: the token-rows block goldens use "
                         f"the interp GELU")
    i32 = lambda k: np.ascontiguousarray(p[k], np.int32)  # noqa: E731
    return qk.GeluParams("interp", np.asarray(p["intermediate_rescaled_scale"], np.float32), 0,
                         float(np.float32(s["gelu_out_scale"])), int(s["gelu_zero_point"]),
                         np.dtype(np.int32), x_dtype=np.dtype(np.int32),
                         multiplier=i32("gelu_multiplier"), rshift=i32("gelu_rshift"),
                         in_multiplier=i32("gelu_in_multiplier"),
                         in_rshift=i32("gelu_in_rshift"), table=i32("gelu_table"))


def layernorm_params_rows(p: Mapping[str, np.ndarray], s: Mapping[str, Any], r: str) -> Any:
    """The 16-bit LayerNorm ``r`` of the token-rows block prepared from the folder's float
    parameters (exact method, alpha 0, zero point 0: what the C example does with
    ``qk_layernorm_prepare``)."""
    import qkernels as qk

    if str(s[f"{r}_ln_method"]) != "exact":
        raise BlockError(f"{r}_ln_method {s[f'{r}_ln_method']!r}: the token-rows block's int16 "
                         f"LayerNorm is the exact method")
    c = int(np.asarray(p[f"{r}_ln_gamma"]).size)
    ptf = qk.PTFParams(float(np.float32(s[f"{r}_ln_in_scale"])), np.zeros(c, np.int32), 0)
    return qk.prepare_layernorm(ptf, p[f"{r}_ln_gamma"], p[f"{r}_ln_beta"], method="exact",
                                out_scale=float(np.float32(s[f"{r}_ln_out_scale"])),
                                out_zero_point=int(s[f"{r}_ln_out_zero_point"]),
                                eps=float(np.float32(s[f"{r}_ln_eps"])))


def _row_quantize(out: Dict[str, np.ndarray], src: str, d: np.ndarray,
                  threads: Optional[int]) -> None:
    import qkernels as qk

    xq, z, j, e = qk.transformer.row_quantize(d, threads=threads)
    out[f"{src}_rows"], out[f"{src}_rows_z"] = xq, z
    out[f"{src}_rows_j"], out[f"{src}_rows_e"] = j, e


def _row_linear(p: Mapping[str, np.ndarray], out: Dict[str, np.ndarray], lin: str, src: str,
                threads: Optional[int]) -> np.ndarray:
    import qkernels as qk

    acc = qk.linear_int32(out[f"{src}_rows"], qk.pack_linear(p[f"{lin}_weight"]),
                          x_zero_point=0, threads=threads)
    out[f"{lin}_acc"] = acc
    table = (p[f"{lin}_rescale_multiplier"], p[f"{lin}_rescale_shift"])
    v = qk.transformer.row_rescale(acc, out[f"{src}_rows_j"], out[f"{src}_rows_e"], table,
                                   z=out[f"{src}_rows_z"], wsum=p[f"{lin}_wsum"],
                                   bias=p[f"{lin}_bias"], threads=threads)
    out[f"{lin}_rescaled"] = v
    return v


def _residual_rows(p: Mapping[str, np.ndarray], s: Mapping[str, Any], r: str, x: np.ndarray,
                   res: np.ndarray, threads: Optional[int]) -> Dict[str, np.ndarray]:
    import qkernels as qk

    out: Dict[str, np.ndarray] = {}
    _row_quantize(out, f"{r}_x", x, threads)
    v = _row_linear(p, out, f"{r}_dense", f"{r}_x", threads)
    a = qk.requantize(v, p[f"{r}_dense_multiplier"], p[f"{r}_dense_shift"],
                      scheme="single_round", dtype=np.int32, axis=-1)
    out[f"{r}_dense_rq"] = a
    rr = qk.requantize(res.astype(np.int32) - np.int32(s[f"{r}_residual_zero_point"]),
                       p[f"{r}_residual_multiplier"], p[f"{r}_residual_shift"],
                       scheme="single_round", dtype=np.int32, axis=-1)
    out[f"{r}_residual_rq"] = rr
    t = np.clip(np.add(a, rr, dtype=np.int64), I32_MIN, I32_MAX).astype(np.int32)
    out[f"{r}_sum"] = t
    q = qk.requantize_shift(t, p[f"{r}_ln_in_shift"], 0, rounding="half_up", dtype=np.int16,
                            axis=-1)
    out[f"{r}_ln_input"] = q
    out[f"{r}_ln_output"] = qk.ptf.layernorm_s16(q, layernorm_params_rows(p, s, r),
                                                 threads=threads)
    return out


def _run_block_rows(p: Mapping[str, np.ndarray], s: Mapping[str, Any], x: np.ndarray,
                    mask: np.ndarray, threads: Optional[int]) -> Dict[str, np.ndarray]:
    """:func:`run_block` of the token-rows form (:data:`STEPS_ROWS`): each step one public
    kernel (the Linears' output stages and the residual add unfused: the swapped blocks run them
    fused, so the comparison with the swapped model checks the fused passes too)."""
    import qkernels as qk

    b, t, c = x.shape
    h, d = int(s["heads"]), int(s["head_dim"])
    out: Dict[str, np.ndarray] = {}

    def heads(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a.reshape(b, t, h, d).transpose(0, 2, 1, 3))
    _row_quantize(out, "x", x, threads)
    for p_, n in (("query", "q"), ("key", "k"), ("value", "v")):
        v = _row_linear(p, out, p_, "x", threads)
        out[n] = heads(qk.requantize(v, p[f"{p_}_multiplier"], p[f"{p_}_shift"],
                                     int(s[f"{n}_zero_point"]), scheme="single_round",
                                     dtype=np.int8, axis=-1))
    sc = qk.matmul_int32(out["q"], out["k"], a_zero_point=int(s["q_zero_point"]),
                         b_zero_point=int(s["k_zero_point"]), transpose_b=True, threads=threads)
    out["scores"] = np.where(mask[:, None] != 0, sc, np.int32(I32_MIN))
    pr = qk.qsoftmax(out["scores"], softmax_params_rows(p, s))
    out["probs"] = pr
    out["pv_acc"] = qk.matmul_int32(pr, out["v"], b_zero_point=int(s["v_zero_point"]),
                                    threads=threads)
    out["pv_renorm"] = qk.transformer.row_renorm(out["pv_acc"], pr, threads=threads)
    ctx = qk.requantize(out["pv_renorm"], int(s["pv_multiplier"]), int(s["pv_shift"]),
                        int(s["context_zero_point"]), scheme="single_round", dtype=np.int32)
    out["context"] = np.ascontiguousarray(ctx.transpose(0, 2, 1, 3)).reshape(b, t, h * d)
    out.update(_residual_rows(p, s, "attn", out["context"], x, threads))
    _row_quantize(out, "intermediate_x", out["attn_ln_output"], threads)
    v = _row_linear(p, out, "intermediate", "intermediate_x", threads)
    out["gelu"] = qk.qgelu(v, gelu_params_rows(p, s))
    out.update(_residual_rows(p, s, "out", out["gelu"], out["attn_ln_output"], threads))
    return out


# ---------------------------------------------------------------------------------------------
# The folder
# ---------------------------------------------------------------------------------------------
def _kind(name: str, g: BlockGolden) -> str:
    if name in ("x", "mask"):
        return "input"
    if name == OUTPUT:
        return "output"
    return "intermediate" if name in g.tensors else "parameter"


def _scalar_text(v: Any) -> Any:
    if isinstance(v, (float, np.floating)):
        return float(np.float32(v))
    return v


def write_block_dir(d: Union[str, Path], g: BlockGolden, hex_files: bool = True) -> List[str]:
    """Write the folder (see the module docstring); returns the file names written."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    written: List[str] = []
    files: Dict[str, Any] = {}

    def put(name: str, text: Union[str, bytes]) -> str:
        if isinstance(text, bytes):
            qio.atomic_write_bytes(d / name, text)
        else:
            qio.atomic_write_text(d / name, text)
        written.append(name)
        return hashlib.sha256(text if isinstance(text, bytes) else text.encode()).hexdigest()

    arrays = {**g.tensors, **g.params}
    for name, a in arrays.items():
        a = np.asarray(a)
        entry = {"file": f"{name}.txt", "dtype": a.dtype.name, "shape": list(a.shape),
                 "kind": _kind(name, g),
                 "sha256": put(f"{name}.txt", qio.format_array(a, f"block {name} {a.dtype.name}"))}
        if hex_files and a.dtype.kind in "iu":
            entry["hex"] = f"{name}.hex"
            entry["hex_sha256"] = put(f"{name}.hex", qio.format_hex(a))
        files[name] = entry
    sc = {k: _scalar_text(v) for k, v in g.scalars.items()}
    files["params"] = {"file": "params.txt", "kind": "scalars",
                       "sha256": put("params.txt", qio.format_params(sc))}
    buf = __import__("io").BytesIO()
    np.savez_compressed(buf, **arrays)
    files["npz"] = {"file": "block.npz", "kind": "all arrays",
                    "sha256": put("block.npz", buf.getvalue())}
    form = form_of(g.scalars)
    renorm = form == FORM_ROWS or int(g.scalars["pv_renorm"])
    skip = {} if renorm else {"pv_renorm": "pv_acc"}   # P V requantized from its sums
    al = aliases(form)
    ops = [{"step": n, "computes": what, "inputs": [skip.get(i, al.get(i, i)) for i in ins],
            "outputs": outs, "params": ps, "c_call": call}
           for n, what, ins, outs, ps, call in steps(form) if n not in skip]
    manifest = {"format": FORMAT, "form": form, **g.info, "input": "x", "output": OUTPUT,
                "tensors": list(g.tensors), "ops": ops, "scalars": sc, "files": files}
    put("manifest.json", json.dumps(manifest, indent=1, default=qio.json_default) + "\n")
    return written


def is_block_dir(d: Union[str, Path]) -> bool:
    """True when ``d`` holds a block golden folder (its manifest names :data:`FORMAT`)."""
    m = Path(d) / "manifest.json"
    if not m.is_file():
        return False
    try:
        return json.loads(m.read_text()).get("format") == FORMAT
    except (ValueError, OSError, AttributeError):
        return False


def _parse_scalar(v: str) -> Any:
    try:
        return int(v)
    except ValueError:
        pass
    try:
        return float(v)
    except ValueError:
        return v


def read_block_dir(d: Union[str, Path]) -> BlockGolden:
    """Read a folder back from its text files (the manifest names them, their dtypes and
    shapes); :class:`~qkernels.io.FormatError` or :class:`BlockError` naming the file for
    anything that does not match."""
    d = Path(d)
    try:
        man = json.loads((d / "manifest.json").read_text())
    except FileNotFoundError:
        raise BlockError(f"{d / 'manifest.json'}: file not found") from None
    except ValueError as exc:
        raise BlockError(f"{d / 'manifest.json'}: not JSON ({exc})") from None
    if man.get("format") != FORMAT:
        raise BlockError(f"{d / 'manifest.json'}: format {man.get('format')!r}, expected "
                         f"{FORMAT!r}")
    sc = {k: _parse_scalar(v) for k, v in qio.read_params(d / "params.txt").items()}
    tensors: Dict[str, np.ndarray] = {}
    params: Dict[str, np.ndarray] = {}
    for name, f in man["files"].items():
        if "dtype" not in f:
            continue
        path = d / f["file"]
        if not path.is_file():
            raise BlockError(f"{path}: file not found (manifest.json lists it)")
        a = qio.read_array(path, np.dtype(f["dtype"]))
        if list(a.shape) != list(f["shape"]):
            raise BlockError(f"{path}: shape {list(a.shape)}, manifest.json says {f['shape']}")
        (params if f["kind"] == "parameter" else tensors)[name] = a
    return BlockGolden(tensors, params, sc, {k: v for k, v in man.items()
                                             if k not in ("files", "scalars")})


def _first_diff(a: np.ndarray, b: np.ndarray) -> Tuple[int, Any, Any, int]:
    bad = np.flatnonzero(a.reshape(-1) != b.reshape(-1))
    i = int(bad[0])
    return i, a.reshape(-1)[i], b.reshape(-1)[i], int(bad.size)


def check_block(g: BlockGolden, where: str = "") -> Dict[str, int]:
    """Recompute the block from ``g``'s input and parameters (:func:`run_block`) and compare
    every tensor; also that the prepared LayerNorm integers are the folder's (token rows: and
    the other prepared constants, :func:`_check_prepared_rows`). Raises
    :class:`BlockError` at the first difference (the file, the flat index and the line:
    values start on line 4); returns ``{tensor: values}``."""
    p, s = g.params, g.scalars
    form = form_of(s)
    if form == FORM_ROWS:
        _check_prepared_rows(p, s, where)
    for r in RESIDUALS:
        ln = (layernorm_params_rows if form == FORM_ROWS else layernorm_params)(p, s, r)
        for k, v in (("gamma_int", ln.gamma_int), ("beta_int", ln.beta_int)):
            if not np.array_equal(p[f"{r}_ln_{k}"], v):
                i, a, b_, n = _first_diff(p[f"{r}_ln_{k}"], np.asarray(v))
                raise BlockError(f"{where}{r}_ln_{k}.txt:{i + 4}: {n} prepared "
                                 f"integers differ (file {a}, prepared from the float "
                                 f"parameters {b_})")
        for k in ("shift", "eps_term", "gamma_multiplier", "beta_multiplier"):
            if int(s[f"{r}_ln_{k}"]) != int(getattr(ln, k)):
                raise BlockError(f"{where}params.txt: {r}_ln_{k} {s[f'{r}_ln_{k}']}, prepared "
                                 f"from the float parameters {getattr(ln, k)}")
    try:
        got = run_block(p, s, g.tensors["x"], g.tensors["mask"])
    except (ValueError, TypeError, KeyError) as exc:
        raise BlockError(f"{where}the files do not make a computable block: "
                         f"{type(exc).__name__}: {exc}") from None
    counts = {}
    for name, a in g.tensors.items():
        if name in ("x", "mask"):
            continue
        if name not in got:
            raise BlockError(f"{where}{name}.txt: not a tensor of the block")
        if a.shape != got[name].shape or not np.array_equal(a, got[name]):
            if a.shape != got[name].shape:
                raise BlockError(f"{where}{name}.txt: shape {a.shape}, the block computes "
                                 f"{got[name].shape}")
            i, fa, ka, n = _first_diff(a, got[name])
            raise BlockError(f"{where}{name}.txt:{i + 4}: {n} values differ; first at flat "
                             f"index {i}: file {fa}, kernels {ka}")
        counts[name] = int(a.size)
    missing = [n for n in got if n not in g.tensors]
    if missing:
        raise BlockError(f"{where}missing tensor files: {', '.join(missing)}")
    return counts


def _check_prepared_rows(p: Mapping[str, np.ndarray], s: Mapping[str, Any], where: str) -> None:
    """The token-rows constants that are functions of other files: each Linear's ``wsum`` (the
    row sums of its weights) and per-row rescale table (``row_rescale_params(p)``), the exp2
    softmax's constants (``prepare_softmax(score_scale)``), the interp GELU's
    (``prepare_gelu(intermediate_rescaled_scale, out_scale=gelu_out_scale)``)."""
    import qkernels as qk

    def same(name: str, file: np.ndarray, want: Any, what: str) -> None:
        want = np.asarray(want)
        if file.shape != want.shape or not np.array_equal(file, want):
            if file.shape != want.shape:
                raise BlockError(f"{where}{name}.txt: shape {file.shape}, {what} has "
                                 f"{want.shape}")
            i, a, b_, n = _first_diff(file, want)
            raise BlockError(f"{where}{name}.txt:{i + 4}: {n} values differ from {what} (file "
                             f"{a}, {what} {b_})")
    for lin in ("query", "key", "value", "attn_dense", "intermediate", "out_dense"):
        w = p[f"{lin}_weight"].astype(np.int64)
        same(f"{lin}_wsum", p[f"{lin}_wsum"], w.sum(axis=1), f"the row sums of {lin}_weight")
        try:
            mt, st = qk.transformer.row_rescale_params(int(s[f"{lin}_p"]))
        except ValueError as exc:
            raise BlockError(f"{where}params.txt: {lin}_p: {exc}") from None
        what = f"row_rescale_params({lin}_p = {int(s[f'{lin}_p'])})"
        same(f"{lin}_rescale_multiplier", p[f"{lin}_rescale_multiplier"], mt, what)
        same(f"{lin}_rescale_shift", p[f"{lin}_rescale_shift"], st, what)
    sm = qk.prepare_softmax(float(np.float32(s["score_scale"])), method="exp2", output="rowmax")
    for k in ("mult", "shift", "cap"):
        if int(s[f"softmax_{k}"]) != int(getattr(sm, f"exp2_{k}")):
            raise BlockError(f"{where}params.txt: softmax_{k} {s[f'softmax_{k}']}, prepared from "
                             f"score_scale {getattr(sm, f'exp2_{k}')}")
    same("softmax_table", p["softmax_table"], sm.exp2_table, "the exp2 softmax's table")
    gp = qk.prepare_gelu(p["intermediate_rescaled_scale"], method="interp",
                         out_scale=float(np.float32(s["gelu_out_scale"])),
                         out_zero_point=int(s["gelu_zero_point"]), out_dtype=np.int32)
    n = p["intermediate_rescaled_scale"].size
    for k in ("in_multiplier", "in_rshift", "multiplier", "rshift"):
        same(f"gelu_{k}", p[f"gelu_{k}"], np.broadcast_to(getattr(gp, k), (n,)),
             "prepare_gelu(intermediate_rescaled_scale, method='interp')")
    same("gelu_table", p["gelu_table"], gp.table, "the interp GELU's table")


def check_block_dir(d: Union[str, Path]) -> Dict[str, Any]:
    """``--check`` of a block folder: every file the manifest lists exists with its SHA-256,
    the text files read back (dtypes, shapes), ``block.npz`` holds the same arrays, and the
    block recomputed from the input and parameters with qkernels' kernels gives every
    intermediate and the output bit for bit. Raises :class:`BlockError` (the file named)."""
    d = Path(d)
    if not (d / "manifest.json").is_file():
        raise BlockError(f"{d / 'manifest.json'}: file not found")
    man = json.loads((d / "manifest.json").read_text())
    for name, f in man.get("files", {}).items():   # first the cheap part: every file unchanged
        for key, sha in (("file", "sha256"), ("hex", "hex_sha256")):
            if key not in f:
                continue
            path = d / f[key]
            if not path.is_file():
                raise BlockError(f"{path}: file not found (manifest.json lists it)")
            if hashlib.sha256(path.read_bytes()).hexdigest() != f[sha]:
                raise BlockError(f"{path}: SHA-256 differs from manifest.json (the file changed "
                                 f"after it was written)")
    try:
        g = read_block_dir(d)
    except qio.FormatError as exc:
        raise BlockError(str(exc)) from None
    counts = check_block(g, f"{d}/")
    arrays = {**g.tensors, **g.params}
    for name, f in man["files"].items():
        if "hex" in f and (d / f["hex"]).read_text() != qio.format_hex(arrays[name]):
            raise BlockError(f"{d / f['hex']}: the integers differ from {f['file']}")
    with np.load(d / "block.npz") as z:
        for name, a in arrays.items():
            if name not in z.files or not np.array_equal(z[name], a):
                raise BlockError(f"{d / 'block.npz'}: array {name} differs from {name}.txt")
    return {"tensors": len(counts), "values": sum(counts.values()),
            "shape": list(g.tensors["x"].shape), "block": man.get("block"),
            "form": form_of(g.scalars)}


def format_block_summary(g: BlockGolden) -> str:
    """What was written: the block, the input, each tensor's shape, the error vs float."""
    i = g.info
    x = g.tensors["x"]
    L = [f"encoder block {i.get('block')} of {i.get('model')}: {i.get('module')}, "
         f"{form_of(g.scalars).replace('_', ' ')} form",
         f"input: {len(i.get('sentences', []))} sentences, x {tuple(x.shape)} {x.dtype.name}; "
         f"calibrated on {i.get('calibration_sentences')} sentences",
         f"{len(g.tensors)} integer tensors in op order, {len(g.params)} parameter arrays, "
         f"{len(g.scalars)} scalars"]
    for n, a in g.tensors.items():
        L.append(f"  {n:20s} {a.dtype.name:6s} {'x'.join(map(str, a.shape))}")
    e = i.get("float_error")
    if e:
        L.append(f"block output vs the float block on the same (dequantized) input: SQNR "
                 f"{e['sqnr_db']:.2f} dB, max abs err {e['max_abs_err']:.4f}, cosine "
                 f"{e['cosine']:.5f}")
    L.append(f"the swapped model's integers equal the step-by-step recomputation "
             f"({i.get('verified_against_swap', 0)} tensors compared, 0 differ)")
    return "\n".join(L)
