"""Integer transformer blocks for :func:`~qkernels.torch.swap`: attention, GELU MLP, residual add
with LayerNorm, every op in integers on qkernels' kernels.

A Hugging Face BERT / MiniLM encoder layer is four modules, each swapped for one block here.
Two forms, chosen by ``QuantConfig.token_rows``.

Token rows (``token_rows=True``): the residual stream and the LayerNorm outputs are int16, the
attention context and the GELU output int32 (fine static steps), and every Linear reads its
input quantized to uint8 per token at run time, in integers
(:func:`qkernels.transformer.row_quantize`: the row's range code from its integer min / max, a
leading-zero count and a 32-entry multiplier table; the Linear's int32 sums less the row zero
point's term ``z_r sum_c W_c``, rescaled per row by :func:`~qkernels.transformer.row_rescale`
and requantized per output channel as before). Every Linear and matmul stays W8A8.

================  ==========================================================================
module            integer block, token rows (weights int8 symmetric per output channel;
                  every requantization fixed point)
================  ==========================================================================
BertSelfAttention ``x8 = row_quantize(h16)``; ``Q, K, V = requant(row_rescale(linear_int32(x8,
                  W) - z sum W) + b)`` (int8, symmetric); ``S = matmul_int32(Q_h, K_h^T)``
                  (masked keys int32's minimum); ``P = qsoftmax(S)`` (``exp2``: the row's
                  exponentials, rounded, the row maximum at 255; no division);
                  ``C = requant32(round(2^8 (P V) / sum_j P))`` (int32, fine step)
BertSelfOutput    ``acc = row_rescale(linear_int32(row_quantize(C32), W) - z sum W) + b``;
BertOutput        ``t = requant32(acc) + requant32(r16)`` in units ``u = S_ptf / 2^4``; one
                  rounding shift to int16; :func:`qkernels.ptf.layernorm_s16` (int16 out)
BertIntermediate  ``acc = row_rescale(linear_int32(row_quantize(h16), W) - z sum W) + b``;
                  ``qgelu(acc)`` (``interp``: the sums on the grid 2^-16, a 1025-entry
                  GELU table with linear interpolation; int32 out at a fine step)
================  ==========================================================================

The static form (``token_rows=False``, the default; what ``collect --block`` writes and
``csrc/examples/block_golden.c`` reproduces; ``x8``: int8/uint8 activations, per-tensor scale):

================  ==========================================================================
module            integer block, static
================  ==========================================================================
BertSelfAttention ``Q, K, V = requant(linear_int32(h8, W))`` (int8, symmetric);
                  ``S = matmul_int32(Q_h, K_h^T)`` per head (int32, scale ``sq sk / sqrt(d)``,
                  masked keys set to int32's minimum); ``P = qsoftmax(S)`` (I-BERT's i-exp on
                  the int32 scores: uint8 probabilities of scale 1/256);
                  ``C = qmatmul(P, V_h)`` (int8, fixed-point requantization)
BertSelfOutput    ``acc = linear_int32(C8, W)``; ``t = requant32(acc) + requant32(r8 - zr)`` in
BertOutput        int32 units ``u = S_ptf / 2^4``; the LayerNorm's PTF input
                  ``q = clamp(round(t / 2^(4 + alpha_c)) + 128)`` (a per-channel shift);
                  ``ptf_layernorm(q)`` (int8)
BertIntermediate  ``acc = linear_int32(h8, W)`` (int32, per-channel scale ``sh sw_c``);
                  ``qgelu(acc)`` (I-BERT's i-GELU on the int32 accumulators, uint8 out)
================  ==========================================================================

Calibration: forward hooks on the original modules record, while the user's ``calibrate``
runs the float model, the ranges of every tensor the blocks quantize (the activation observer of
the :class:`~qkernels.torch.QuantConfig`; symmetric int8 for Q, K, V) and the PTF parameters of
each LayerNorm input (:func:`qkernels.ptf_calibrate`, ``method="seed"``: per-channel
power-of-two factors up to 2^7, so the residual stream's outlier channels keep their range).

Example:
    >>> # with swap(minilm, [tokens], ops=TRANSFORMER_OPS) as s: out = minilm(**tokens)
"""
from __future__ import annotations

import weakref
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

import numpy as np
import torch

import qkernels as qk


__all__ = ["BLOCK_KINDS", "block_kind", "BlockCalibration"]

F32 = np.float32
I32_MIN = np.iinfo(np.int32).min
#: Extra bits of the residual sum below the PTF base step (the sum is exact in int32 units of
#: ``S_ptf / 2^RESIDUAL_BITS``; the PTF rounding is the only rounding after the two requants).
RESIDUAL_BITS = 4
#: The channel-range percentile under which LayerNorm output channels keep factor 1 (the wider
#: ones get power-of-two factors, see :meth:`BlockCalibration.meta`).
CHANNEL_PERCENTILE = 90.0
#: P V normalised by the integer probabilities' row sums (see Attention._pv_renorm).
SOFTMAX_RENORM = True
#: GELU outputs quantized with channel factors too (folded into BertOutput's dense weights).
GELU_FACTORS = True
#: The integer GELU of the blocks by form (qkernels.prepare_gelu's method on the int32 sums of the
#: FFN input Linear). Token rows: "interp", the sums on a 2^-16 grid and a 1025-entry table with
#: linear interpolation (MiniLM NN agreement 0.9325 -> 0.9613 with the exp2 softmax, 800
#: sentences, BENCHMARKS.md); static: I-BERT's i-GELU (the interp form raised its cosine but not
#: its NN agreement, and the static form is what collect --block writes).
GELU_METHOD = {"rows": "interp", "static": "ibert"}
#: The integer softmax of the blocks by form (qkernels.prepare_softmax's method). Token rows:
#: "exp2", the row's exponentials rounded on the step 1/255 of the row maximum (output
#: "rowmax"), P V normalised by the integer row sums; static: I-BERT's i-exp, floored uint8
#: probabilities, P V normalised by their row sums.
SOFTMAX_METHOD = {"rows": "exp2", "static": "ibert"}
#: The fine int32 step of a token-rows tensor (the attention context, the GELU output:
#: ``QuantConfig.token_rows``): its calibrated |max| over 2^FINE_BITS.
FINE_BITS = 18
#: The smallest int32 input scale the token-rows Intermediate gives i-GELU (its int64 bound).
GELU_MIN_SCALE = 2e-6
#: A 16-bit LayerNorm output's step: its calibrated |max| over 2^LN16_BITS (twice the range fits).
LN16_BITS = 14
#: The module kinds of a BERT encoder layer swapped as integer blocks.
BLOCK_KINDS = ("attention", "residual_layernorm", "intermediate", "encoder_block")
#: Also a block when swapped with them: a LayerNorm outside the blocks (float input, PTF).
_ALSO = ("layernorm",)


def rows(cfg: Any) -> bool:
    """The config's ``token_rows`` (False when the config has none)."""
    return bool(getattr(cfg, "token_rows", False))


def block_kind(mod: torch.nn.Module) -> Optional[str]:
    """Which integer block replaces ``mod`` (None: not a transformer block), by structure:
    attention has ``query``/``key``/``value`` Linears and ``num_attention_heads``; a residual
    LayerNorm has ``dense`` and ``LayerNorm`` and a two-argument forward; an intermediate has
    ``dense`` and ``intermediate_act_fn`` (GELU)."""
    lin, ln = torch.nn.Linear, torch.nn.LayerNorm
    if all(isinstance(getattr(mod, n, None), lin) for n in ("query", "key", "value")) \
            and hasattr(mod, "num_attention_heads") and hasattr(mod, "attention_head_size"):
        return "attention"
    if isinstance(getattr(mod, "dense", None), lin) and isinstance(getattr(mod, "LayerNorm", None),
                                                                   ln):
        return "residual_layernorm"
    if isinstance(getattr(mod, "dense", None), lin) and hasattr(mod, "intermediate_act_fn"):
        return "intermediate"
    if isinstance(getattr(mod, "self_attention", None), torch.nn.MultiheadAttention) \
            and isinstance(getattr(mod, "ln_1", None), ln) and isinstance(getattr(mod, "ln_2", None), ln) \
            and isinstance(getattr(mod, "mlp", None), torch.nn.Sequential):
        return "encoder_block"
    if isinstance(mod, ln) and len(mod.normalized_shape) == 1:
        return "layernorm"
    return None


# ---- calibration ------------------------------------------------------------------------------
class BlockCalibration:
    """Observers on the tensors of the blocks found in a model, filled by forward hooks while
    the float model runs; then :meth:`blocks` makes the integer blocks.

    ``observer()`` makes an activation observer (the config's); Q, K and V get symmetric int8
    MinMax observers.
    """

    def __init__(self, targets: Dict[str, Tuple[str, torch.nn.Module]],
                 observer: Callable[[], qk.Observer], softmax: Optional[str] = None) -> None:
        self.targets = targets
        self.softmax = softmax
        self.observer = observer
        self.obs: Dict[str, qk.Observer] = {}
        self.rows: Dict[str, List[np.ndarray]] = {}
        self.handles: List[Any] = []

    def _see(self, key: str, t: torch.Tensor, sym: bool = False) -> None:
        if key not in self.obs:
            self.obs[key] = qk.MinMaxObserver(dtype=np.int8, symmetric=True) if sym \
                else qk.MinMaxObserver(dtype=np.uint8, axis=-1)
        self.obs[key].update(t.detach().float().numpy())

    def attach(self) -> None:
        for name, (kind, mod) in self.targets.items():
            if kind == "attention":
                self.handles.append(mod.register_forward_pre_hook(
                    lambda m, a, k, n=name: self._see(n + ":x", a[0] if a else
                                                      k["hidden_states"]), with_kwargs=True))
                for p in ("query", "key", "value"):
                    self.handles.append(getattr(mod, p).register_forward_hook(
                        lambda m, a, o, n=name, p=p: self._see(f"{n}:{p}", o, sym=True)))
                self.handles.append(mod.register_forward_hook(
                    lambda m, a, o, n=name: self._see(n + ":out", o[0] if isinstance(o, tuple)
                                                      else o)))
            elif kind == "residual_layernorm":
                def pre(m: Any, a: Tuple, n: str = name) -> None:
                    self._see(n + ":x", a[0])
                    self._see(n + ":r", a[1])
                self.handles.append(mod.register_forward_pre_hook(pre))

                def ln_in(m: Any, a: Tuple, o: Any, n: str = name) -> None:
                    x = a[0].detach().float().numpy()
                    self.rows.setdefault(n, []).append(x.reshape(-1, x.shape[-1]))
                    self._see(n + ":out", o)
                self.handles.append(mod.LayerNorm.register_forward_hook(ln_in))
            elif kind == "encoder_block":
                self._attach_vit(name, mod)
            elif kind == "layernorm":
                def ln_rows(m: Any, a: Tuple, o: Any, n: str = name) -> None:
                    x = a[0].detach().float().numpy()
                    self.rows.setdefault(n, []).append(x.reshape(-1, x.shape[-1]))
                    self._see(n + ":x", a[0])
                    self._see(n + ":out", o)
                self.handles.append(mod.register_forward_hook(ln_rows))
            else:
                self.handles.append(mod.register_forward_pre_hook(
                    lambda m, a, n=name: self._see(n + ":x", a[0])))
                self.handles.append(mod.register_forward_hook(
                    lambda m, a, o, n=name: self._see(n + ":out", o)))

    def _attach_vit(self, name: str, mod: torch.nn.Module) -> None:
        """torchvision's EncoderBlock: its residual stream, both LayerNorms' inputs and outputs,
        the attention's Q, K, V and context (recomputed in float from the block's own weights:
        nn.MultiheadAttention calls no submodule), the GELU's output."""
        mha = mod.self_attention

        def block_io(m: Any, a: Tuple, o: Any) -> None:
            self._see(name + ":x", a[0])
            self._see(name + ":y", o)
        self.handles.append(mod.register_forward_hook(block_io))
        for ln in ("ln_1", "ln_2"):
            def ln_rows(m: Any, a: Tuple, o: Any, k: str = f"{name}:{ln}") -> None:
                x = a[0].detach().float().numpy()
                self.rows.setdefault(k, []).append(x.reshape(-1, x.shape[-1]))
                self._see(k, o)
            self.handles.append(getattr(mod, ln).register_forward_hook(ln_rows))

        def attn(m: Any, a: Tuple, o: Any) -> None:
            x = a[0].detach().float()
            e, h = mha.embed_dim, mha.num_heads
            qkv = torch.nn.functional.linear(x, mha.in_proj_weight, mha.in_proj_bias)
            for i, p in enumerate(("query", "key", "value")):
                self._see(f"{name}:{p}", qkv[..., i * e:(i + 1) * e], sym=True)
            sh = lambda t: t.reshape(*t.shape[:2], h, e // h).transpose(1, 2)  # noqa: E731
            q, k, v = (sh(qkv[..., i * e:(i + 1) * e]) for i in range(3))
            ctx = torch.softmax(q @ k.transpose(-1, -2) * (e // h) ** -0.5, -1) @ v
            self._see(name + ":context", ctx.transpose(1, 2).reshape(x.shape))
        self.handles.append(mha.register_forward_hook(attn))
        self.handles.append(mod.mlp[1].register_forward_hook(
            lambda m, a, o: self._see(name + ":gelu", o)))

    def residual_unit(self) -> float:
        """One power-of-two unit for every encoder block's int32 residual stream: the largest
        observed |x| takes 2^23 units (float32 holds the dequantized stream exactly)."""
        amax = max((float(max(np.abs(o.min_val).max(), np.abs(o.max_val).max()))
                    for k, o in self.obs.items() if k.endswith(":x") or k.endswith(":y")),
                   default=1.0)
        return float(2.0 ** np.floor(np.log2(max(amax, 1e-30) / 2 ** 23)))

    def detach(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def fine(self, key: str) -> ActQ:
        """The int32 quantization of tensor ``key`` at a fine static step (a dynamic-row
        tensor's boundary, see ``QuantConfig.token_rows``): zero point 0, ``scale = amax /
        2^FINE_BITS`` (float32) with ``amax`` the largest observed ``|x|``. A deterministic
        function of the observed range: producer and consumer get the same."""
        o = self.obs[key]
        amax = max(float(np.abs(np.asarray(o.min_val)).max()),
                   float(np.abs(np.asarray(o.max_val)).max()), 1e-30)
        return ActQ(float(F32(amax / 2.0 ** FINE_BITS)), 0, np.dtype(np.int32))

    def fine16(self, key: str) -> ActQ:
        """The int16 quantization of a LayerNorm output ``key`` (``QuantConfig.token_rows``, the
        residual stream at 16 bits): zero point 0, ``scale = amax / 2^LN16_BITS`` (float32),
        twice the observed range inside int16."""
        o = self.obs[key]
        amax = max(float(np.abs(np.asarray(o.min_val)).max()),
                   float(np.abs(np.asarray(o.max_val)).max()), 1e-30)
        return ActQ(float(F32(amax / 2.0 ** LN16_BITS)), 0, np.dtype(np.int16))

    def ln_out(self, key: str, cfg: Any) -> ActQ:
        """A LayerNorm output's (or a reader's) quantization: int16 (:meth:`fine16`) when
        ``QuantConfig.token_rows`` and the LayerNorm method is ``"exact"``, else int8 with channel
        factors."""
        if rows(cfg) and getattr(cfg, "layernorm", "exact") == "exact":
            return self.fine16(key)
        return self.meta(key, factors=True)

    def meta(self, key: str, dtype: Any = np.int8, factors: bool = False) -> ActQ:
        """The calibrated quantization of tensor ``key`` as ``dtype`` (an affine uint8 range
        moved to int8 keeps its scale, zero point - 128). ``factors=True``: per-channel
        power-of-two factors ``k_c = 2^floor(log2(max(1, amax_c / T)))`` with ``T`` the
        ``CHANNEL_PERCENTILE``-th percentile of the channels' ``amax_c``, the range that of
        ``x_c / k_c`` (a deterministic function of the observed ranges: producer and consumer of
        a tensor get the same)."""
        o = self.obs[key]
        mn, mx = np.asarray(o.min_val, np.float64), np.asarray(o.max_val, np.float64)
        k = None
        if o.axis is not None:
            if factors:
                amax = np.maximum(np.abs(mn), np.abs(mx))
                t = max(float(np.percentile(amax, CHANNEL_PERCENTILE)), 1e-30)
                k = np.exp2(np.floor(np.log2(np.maximum(1.0, amax / t)))).astype(F32)
                mn, mx = mn / k, mx / k
            mn, mx = np.float32(mn.min()), np.float32(mx.max())
        p = qk.choose_qparams(mn.reshape(()), mx.reshape(()), dtype=o.dtype,
                              symmetric=o.symmetric)
        s = float(np.asarray(p.scale).reshape(-1)[0])
        z = int(np.asarray(p.zero_point).reshape(-1)[0])
        dt = np.dtype(dtype)
        if o.dtype == np.uint8 and dt == np.int8:
            z -= 128
        elif o.dtype == np.int8 and dt == np.uint8:
            z += 128
        return ActQ(s, z, dt, k)

    def seen(self, name: str) -> bool:
        return name + ":x" in self.obs

    def block(self, name: str, cfg: Any) -> Any:
        """The integer block of target ``name`` from what was observed."""
        kind, mod = self.targets[name]
        if kind == "attention":
            return Attention(mod, self.ln_out(name + ":x", cfg),
                             self.meta(name + ":query"),
                             self.meta(name + ":key"), self.meta(name + ":value"),
                             self.fine(name + ":out") if rows(cfg) else
                             self.meta(name + ":out"), softmax=self.softmax)
        if kind == "residual_layernorm":
            ptf = qk.ptf_calibrate(self.rows.pop(name), method="seed")
            gelu_in = isinstance(getattr(mod.dense, "in_features", None), int) and \
                mod.dense.in_features != mod.dense.out_features
            x = self.fine(name + ":x") if rows(cfg) else \
                self.meta(name + ":x", np.uint8 if gelu_in else np.int8,
                          factors=GELU_FACTORS and gelu_in)
            return ResidualLayerNorm(mod.dense, mod.LayerNorm, x,
                                     self.ln_out(name + ":r", cfg), ptf,
                                     self.ln_out(name + ":out", cfg),
                                     method=getattr(cfg, "layernorm", "exact"))
        if kind == "encoder_block":
            return EncoderBlock(mod, self, name, method=getattr(cfg, "layernorm", "exact"))
        if kind == "layernorm":
            ptf = qk.ptf_calibrate(self.rows.pop(name), method="seed")
            return LayerNorm(mod, ptf, self.ln_out(name + ":out", cfg),
                             method=getattr(cfg, "layernorm", "exact"))
        return Intermediate(mod.dense, self.ln_out(name + ":x", cfg),
                            self.fine(name + ":out") if rows(cfg) else
                            self.meta(name + ":out", np.uint8, factors=GELU_FACTORS))


# ---- the integer pieces ------------------------------------------------------------------------
class IntLinear:
    """An ``nn.Linear`` with int8 weights, symmetric per output channel (``s_c = max|w_c|/127``),
    and its bias as int32 in the accumulator's units (``round(b / (s_x s_c))``)."""

    def __init__(self, lin: torch.nn.Linear, k: Optional[np.ndarray] = None) -> None:
        w = lin.weight.detach().float().numpy()
        if k is not None:   # input channel c quantized with step s_x k_c: W[:, c] k_c
            w = w * k[None, :]
        amax = np.abs(w).max(axis=1)
        self.w_scale = np.where(amax > 0, amax / 127.0, 1.0).astype(F32)
        self.wq = qk.quantize(w, self.w_scale, np.zeros(w.shape[0], np.int32), dtype=np.int8,
                              axis=0, qmin=-127, qmax=127)
        self.bias = None if lin.bias is None else lin.bias.detach().float().numpy()
        self.packed = qk.pack_linear(self.wq)
        self.out_features = int(w.shape[0])

    def acc_scale(self, x_scale: float) -> np.ndarray:
        """The per-channel scale of the int32 accumulators (float32 ``s_x s_c``)."""
        return (F32(x_scale) * self.w_scale).astype(F32)

    def int_bias(self, x_scale: float) -> Optional[np.ndarray]:
        if self.bias is None:
            return None
        b = np.rint(self.bias.astype(np.float64) / self.acc_scale(x_scale).astype(np.float64))
        return np.clip(b, -2 ** 31, 2 ** 31 - 1).astype(np.int32)

    def int32(self, x: ActQ, bias: Optional[np.ndarray]) -> qk.PreparedQLinear:
        """The int32 accumulators ``linear_int32(x8, W, bias)`` of input ``x``, checked once."""
        return qk.prepare_linear_int32(self.packed, bias, x_dtype=x.dtype,
                                       x_zero_point=x.zero_point)

    def prepared(self, x: ActQ, out: ActQ) -> qk.PreparedQLinear:
        """The fused int8 linear ``requant(acc)`` to ``out`` (TFLite's fixed point, double
        rounding, per-channel multipliers)."""
        m, sh = qk.quantize_multiplier(self.acc_scale(x.scale).astype(np.float64) / out.scale)
        return qk.prepare_qlinear(self.packed, self.int_bias(x.scale), x_dtype=x.dtype,
                                  x_zero_point=x.zero_point, multiplier=m, shift=sh,
                                  out_zero_point=out.zero_point, out_dtype=out.dtype)


class RowLinear:
    """An :class:`IntLinear` on a dynamic-row input (``QuantConfig.token_rows``): ``x`` int32 at a
    fine static step ``s_x`` (zero point 0), quantized to uint8 per row by
    :func:`qkernels.transformer.row_quantize` (step ``U_r / 255``, zero point ``z_r``; done once
    per input, shared by the Linears reading it), the int8 Linear's sums less ``z_r sum_c W_c``
    (int32, exact), rescaled per row (:func:`~qkernels.transformer.row_rescale`) to int32 in
    units ``s_x 2^p s_w_c`` (``p``: the smallest shift that keeps ``|sum_c W_c d_c| / 2^p``
    below 2^30 for ``|d| < 2^(FINE_BITS + 1)`` (``2^15`` for int16 input), and no finer than
    ``min_scale``), plus the bias in those units. ``acc_scale``: those units (float32, per
    output channel)."""

    def __init__(self, lin: torch.nn.Linear, x: ActQ, min_scale: float = 0.0) -> None:
        self.lin = IntLinear(lin)
        wq = self.lin.wq.astype(np.int64)
        self.wsum = wq.sum(axis=1).astype(np.int32)
        l1 = float(np.abs(wq).sum(axis=1).max(initial=1))
        bits = 15 if x.dtype == np.int16 else FINE_BITS + 1
        p = np.ceil(np.log2(l1) + bits - 30)
        if min_scale > 0:   # units no finer than min_scale (the consumer's bound)
            low = float(F32(x.scale)) * float(self.lin.w_scale.min())
            p = max(p, np.ceil(np.log2(min_scale / low)))
        self.p = int(min(max(0, p), 24))
        self.table = qk.transformer.row_rescale_params(self.p)
        unit = F32(F32(x.scale) * F32(2.0 ** self.p))
        self.acc_scale = (unit * self.lin.w_scale).astype(F32)
        self.bias = None if self.lin.bias is None else np.clip(
            np.rint(self.lin.bias.astype(np.float64) / self.acc_scale.astype(np.float64)),
            I32_MIN, 2 ** 31 - 1).astype(np.int32)
        # the uint8 rows' int32 sums (zero point 0: the row zero points are taken out after),
        # and the rescale (zero point term, per-row step, bias) in one pass, checked once
        self.sums = self.lin.int32(ActQ(1.0, 0, np.dtype(np.uint8)), None)
        n = self.lin.out_features
        self.rescale = qk.transformer.prepare_row_rescale(self.table, n, wsum=self.wsum,
                                                          bias=self.bias)
        # the same two steps as one C operator (the rescale as the GEMM's output stage): what
        # the blocks run (:meth:`rescaled`); __call__ keeps the pair, step by step
        self.fused = qk.transformer.prepare_linear_rows(self.lin.packed, self.table,
                                                        wsum=self.wsum, bias=self.bias)
        self.out_stage: Optional[qk.transformer.RowRescale] = None
        self.out_fused: Optional[qk.transformer.LinearRows] = None

    def fuse_output(self, multiplier: np.ndarray, shift: np.ndarray, zero_point: int) -> None:
        """The Linear's int8 output stage ``requantize(rescaled, multiplier, shift, zero_point,
        scheme="single_round", axis=-1)`` fused into the rescale pass (:meth:`output`)."""
        self.out_stage = qk.transformer.prepare_row_rescale(
            self.table, self.lin.out_features, wsum=self.wsum, bias=self.bias,
            out_multiplier=multiplier, out_shift=shift, out_zero_point=zero_point,
            out_dtype=np.int8)
        self.out_fused = qk.transformer.prepare_linear_rows(
            self.lin.packed, self.table, wsum=self.wsum, bias=self.bias,
            out_multiplier=multiplier, out_shift=shift, out_zero_point=zero_point,
            out_dtype=np.int8)

    def __call__(self, rq: Tuple[np.ndarray, ...], threads: int) -> Dict[str, np.ndarray]:
        """``rq = row_quantize(x)``: the rescaled int32 (``"rescaled"``): the sums less ``z_r
        sum_c W_c``, rescaled per row, plus the bias (saturating), in one pass over the sums
        (:func:`~qkernels.transformer.prepare_row_rescale`)."""
        xq, z, j, e = rq
        return {"rescaled": self.rescale(self.sums(xq, threads=threads), j, e, z,
                                         threads=threads)}

    def rescaled(self, rq: Tuple[np.ndarray, ...], threads: int) -> np.ndarray:
        """:meth:`__call__`'s ``"rescaled"``, the same integers, in one C operator
        (:func:`~qkernels.transformer.prepare_linear_rows`: the rescale is the GEMM's output
        stage, no int32 sums array in between)."""
        xq, z, j, e = rq
        return self.fused(xq, j, e, z, threads=threads)

    def output(self, rq: Tuple[np.ndarray, ...], threads: int) -> np.ndarray:
        """The int8 output of :meth:`fuse_output`'s stage (zero point term, per-row rescale,
        bias, per-channel requantization) as the GEMM's output stage; the same integers as
        :meth:`output_pair`."""
        xq, z, j, e = rq
        assert self.out_fused is not None, "fuse_output first"
        return self.out_fused(xq, j, e, z, threads=threads)

    def output_pair(self, rq: Tuple[np.ndarray, ...], threads: int) -> np.ndarray:
        """:meth:`output` step by step: the int32 sums, then one pass over them."""
        xq, z, j, e = rq
        assert self.out_stage is not None, "fuse_output first"
        return self.out_stage(self.sums(xq, threads=threads), j, e, z, threads=threads)


def row_inputs(x: np.ndarray, threads: int = 1) -> Tuple[np.ndarray, ...]:
    """``row_quantize(x)`` of a dynamic-row tensor: ``(x8, z, j, e)``."""
    return qk.transformer.row_quantize(x, threads=threads)


class ActQ(NamedTuple):
    """The quantization of an activation: per tensor (``k`` None), or with per-channel
    power-of-two factors ``k`` on the last axis (channel c has the step ``scale * k[c]``: the
    PTF form, used for LayerNorm outputs whose few outlier channels would otherwise set one
    coarse step for all)."""

    scale: float
    zero_point: int
    dtype: np.dtype
    k: Optional[np.ndarray] = None

    def steps(self) -> Any:
        """float32 step(s): a scalar, or one per channel (exact: ``k`` are powers of two)."""
        return F32(self.scale) if self.k is None else (F32(self.scale) * self.k).astype(F32)


def quant(t: torch.Tensor, m: ActQ) -> np.ndarray:
    x = t.detach().float().contiguous().numpy()
    if m.k is None:
        return qk.quantize(x, F32(m.scale), m.zero_point, dtype=m.dtype, flavor="torch")
    return qk.quantize(x, m.steps(), np.full(m.k.shape, m.zero_point, np.int32), dtype=m.dtype,
                       axis=-1, flavor="torch")


def dequant(q: np.ndarray, m: ActQ) -> torch.Tensor:
    if m.k is None:
        return torch.from_numpy(qk.dequantize(q, F32(m.scale), m.zero_point))
    return torch.from_numpy(qk.dequantize(q, m.steps(), np.full(m.k.shape, m.zero_point,
                                                                 np.int32), axis=-1))


def same_quantization(a: ActQ, b: ActQ) -> bool:
    """``a`` and ``b`` quantize alike (scale, zero point, dtype and channel factors equal)."""
    if a is b:
        return True
    if a.scale != b.scale or a.zero_point != b.zero_point or np.dtype(a.dtype) != np.dtype(b.dtype):
        return False
    if a.k is None or b.k is None:
        return a.k is None and b.k is None
    return bool(np.array_equal(a.k, b.k))


class Carry:
    """The integer tensors behind the float outputs of one swap's blocks, so that a block whose
    input is another block's output takes that integer tensor instead of quantizing the float
    one again (the call path only: ``quant(dequant(q, m), m) == q`` exactly, as every block
    boundary is lossless; see the module docstring).

    :meth:`dequant` returns the float output and remembers ``q`` under it; :meth:`quant` gives
    back the remembered ``q`` when it is handed that same tensor object, unmodified since
    (``Tensor._version``), to quantize with the same parameters (:func:`same_quantization`), and
    otherwise quantizes (:func:`quant`). An entry goes when its tensor is freed.

    Example:
        >>> # c = Carry(); y = c.dequant(q, m); c.quant(y, m) is q  -> True
    """

    def __init__(self) -> None:
        self._by_id: Dict[int, Tuple[Any, int, ActQ, np.ndarray]] = {}
        # (id(producer's ActQ), id(consumer's)) -> (both, kept so that the ids stay theirs,
        # the answer)
        self._same: Dict[Tuple[int, int], Tuple[ActQ, ActQ, bool]] = {}
        self._dq: Dict[Tuple[int, str], Tuple[ActQ, qk.PreparedElementwise]] = {}

    def _forget(self, key: int, ref: Any) -> None:
        e = self._by_id.get(key)
        if e is not None and e[0] is ref:
            del self._by_id[key]

    def _dequantizer(self, q: np.ndarray, m: ActQ) -> qk.PreparedElementwise:
        """:func:`dequant` for ``m`` and ``q``'s dtype, prepared once."""
        key = (id(m), q.dtype.str)
        e = self._dq.get(key)
        if e is None:
            if m.k is None:
                prep = qk.prepare_dequantize(F32(m.scale), m.zero_point, dtype=q.dtype)
            else:
                prep = qk.prepare_dequantize(m.steps(), np.full(m.k.shape, m.zero_point, np.int32),
                                             dtype=q.dtype, channels=len(m.k))
            e = self._dq[key] = (m, prep)    # m kept: its id stays its own
        return e[1]

    def dequant(self, q: np.ndarray, m: ActQ) -> torch.Tensor:
        t = torch.from_numpy(self._dequantizer(q, m)(q))   # dequant(q, m)
        key = id(t)
        ref = weakref.ref(t, lambda r, key=key: self._forget(key, r))
        self._by_id[key] = (ref, t._version, m, q)
        return t

    def quant(self, t: torch.Tensor, m: ActQ) -> np.ndarray:
        e = self._by_id.get(id(t))
        if e is not None and e[0]() is t and e[1] == t._version:
            pair = (id(e[2]), id(m))
            known = self._same.get(pair)
            if known is None:
                known = self._same[pair] = (e[2], m, same_quantization(e[2], m))
            if known[2]:
                return e[3]
        return quant(t, m)


class ResidualLayerNorm:
    """``LayerNorm(dense(x) + r)`` in integers (BertSelfOutput / BertOutput).

    The dense accumulators (per-channel units ``s_x s_c``) and the residual ``r - zr`` (units
    ``s_r``) are requantized (fixed point, single rounding) to int32 in the common unit
    ``u = S / 2^RESIDUAL_BITS`` (``S``: the LayerNorm input's PTF base scale) and added; a
    per-channel rounding shift by ``RESIDUAL_BITS + alpha_c`` gives the PTF uint8 input of the
    integer LayerNorm (:func:`qkernels.ptf_layernorm`, int8 out)."""

    def __init__(self, dense: torch.nn.Linear, ln: torch.nn.LayerNorm, x: ActQ, r: ActQ,
                 ptf: qk.PTFParams, out: ActQ, method: str = "exact") -> None:
        self.x, self.r, self.ptf, self.out = x, r, ptf, out
        u = np.float64(ptf.scale) / 2.0 ** RESIDUAL_BITS
        self.rows: Optional[RowLinear] = None
        if x.dtype in (np.int16, np.int32):   # dynamic rows
            self.rows = RowLinear(dense, x)
            self.lin, self.bias, acc_scale = self.rows.lin, self.rows.bias, self.rows.acc_scale
        else:
            self.lin = IntLinear(dense, x.k)
            self.bias = self.lin.int_bias(x.scale)
            acc_scale = self.lin.acc_scale(x.scale)
        self.m_acc, self.sh_acc = qk.quantize_multiplier(acc_scale.astype(np.float64) / u)
        self.m_r, self.sh_r = qk.quantize_multiplier(np.asarray(r.steps(), np.float64) / u)
        self.wide = out.dtype == np.int16
        if self.wide:   # the sum to int16 by one shift, the 16-bit LayerNorm
            self.shift = np.int32(max(0, ln16_shift(ptf, RESIDUAL_BITS)))
            self.ln = _ln_params(ln, qk.PTFParams(float(u * 2.0 ** int(self.shift)),
                                                  np.zeros(ptf.channels, np.int32), 0), out,
                                 "exact")
        else:
            self.shift = (ptf.alpha.astype(np.int32) + RESIDUAL_BITS)
            self.ln = _ln_params(ln, ptf, out, method)
        # the constants of ptf_input's steps, checked once
        self.acc = None if self.rows is not None else self.lin.int32(x, self.bias)
        # requantize(acc, m_acc, sh_acc, single_round, int32, axis=-1) + requantize(r - zr, m_r,
        # sh_r, single_round, int32), saturated, then requantize_shift(t, shift, zp, half_up) to
        # the LayerNorm's input: one pass (qkernels.transformer.prepare_residual_add)
        self._res = qk.transformer.prepare_residual_add(
            self.m_acc, self.sh_acc, self.m_r, self.sh_r, self.shift, channels=len(self.m_acc),
            r_dtype=r.dtype, r_zero_point=r.zero_point,
            out_dtype=np.int16 if self.wide else np.uint8,
            out_zero_point=0 if self.wide else ptf.zero_point)

    def ptf_input(self, x8: np.ndarray, r8: np.ndarray, threads: int) -> np.ndarray:
        if self.rows is not None:
            acc = self.rows.rescaled(row_inputs(x8, threads), threads)
        else:
            acc = self.acc(x8, threads=threads)
        # |a|, |rr| < 2^30 for any calibrated range below 2^(30 - 4 - 7) steps: int32 sum
        return self._res(acc, r8, threads=threads)

    def norm(self, q: np.ndarray, threads: int) -> np.ndarray:
        """The integer LayerNorm of the LayerNorm input ``q`` (PTF uint8 -> int8, or int16 ->
        int16: :func:`qkernels.ptf.layernorm_s16`)."""
        if self.wide:
            return qk.ptf.layernorm_s16(q, self.ln, threads=threads)
        return qk.ptf_layernorm(q, self.ln, threads=threads)

    def __call__(self, x8: np.ndarray, r8: np.ndarray, threads: int) -> np.ndarray:
        return self.norm(self.ptf_input(x8, r8, threads), threads)


def add_sat32(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``clamp(a + b)`` to int32 for two int32 arrays (``b`` may broadcast to ``a``: a
    per-channel bias): the int32 sum when the operands' ranges cannot overflow (the
    calibrated case), else through int64."""
    if int(a.max(initial=0)) + int(b.max(initial=0)) <= 2 ** 31 - 1 and \
            int(a.min(initial=0)) + int(b.min(initial=0)) >= I32_MIN:
        return np.add(a, b, dtype=np.int32)
    return np.clip(np.add(a, b, dtype=np.int64), I32_MIN, 2 ** 31 - 1).astype(np.int32)


def ln16_shift(ptf: qk.PTFParams, extra: int) -> int:
    """The shift (possibly negative: finer) taking a LayerNorm input in units ``ptf.scale /
    2^extra`` to int16 units with the range the PTF parameters cover (``255 2^max(alpha)`` base
    steps) just inside 2^15: ``extra + bitlen(255 2^max(alpha)) - 15``."""
    top = 255 * 2 ** int(np.asarray(ptf.alpha).max(initial=0))
    return int(extra + int(top).bit_length() - 15)


def _ln_params(ln: torch.nn.LayerNorm, ptf: qk.PTFParams, out: ActQ,
               method: str) -> qk.LayerNormParams:
    """The integer LayerNorm of ``ln`` on PTF input ``ptf``, int8 output ``out`` (its channel
    factors folded into gamma and beta)."""
    c = int(ln.normalized_shape[0])
    gamma = ln.weight.detach().float().numpy() if ln.weight is not None else np.ones(c, F32)
    beta = ln.bias.detach().float().numpy() if ln.bias is not None else np.zeros(c, F32)
    if out.k is not None:   # output channel c with step s_out k_c: gamma_c / k_c
        gamma, beta = gamma / out.k, beta / out.k
    return qk.prepare_layernorm(ptf, gamma, beta, method=method, out_scale=out.scale,
                                out_zero_point=out.zero_point, eps=float(ln.eps))


class LayerNorm:
    """A LayerNorm whose input is float (the embeddings' LayerNorm): the input PTF-quantized
    (:func:`qkernels.ptf_quantize`, the model's input quantization), the integer LayerNorm."""

    def __init__(self, ln: torch.nn.LayerNorm, ptf: qk.PTFParams, out: ActQ,
                 method: str = "exact") -> None:
        self.ptf, self.out = ptf, out
        self.wide = out.dtype == np.int16
        if self.wide:   # the float input quantized to int16 (step: the PTF range over 2^15)
            self.in_scale = float(F32(ptf.scale * 2.0 ** (ln16_shift(ptf, 0))))
            self.ln = _ln_params(ln, qk.PTFParams(self.in_scale,
                                                  np.zeros(ptf.channels, np.int32), 0), out,
                                 "exact")
        else:
            self.ln = _ln_params(ln, ptf, out, method)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """The model's input quantization: PTF uint8, or int16 (``flavor="torch"``)."""
        if self.wide:
            return qk.quantize(x, F32(self.in_scale), 0, dtype=np.int16, flavor="torch")
        return self.ptf.quantize(x)

    def norm(self, q: np.ndarray, threads: int) -> np.ndarray:
        if self.wide:
            return qk.ptf.layernorm_s16(q, self.ln, threads=threads)
        return qk.ptf_layernorm(q, self.ln, threads=threads)

    def __call__(self, x: np.ndarray, threads: int) -> np.ndarray:
        return self.norm(self.quantize(x), threads)


class Intermediate:
    """``GELU(dense(x))`` in integers (BertIntermediate): int32 accumulators, then the integer
    GELU on them with the per-channel accumulator scale (``method``: :data:`GELU_METHOD` of the
    form, I-BERT's i-GELU static with uint8 out, the interpolated table for token rows with int32
    out)."""

    def __init__(self, dense: torch.nn.Linear, x: ActQ, out: ActQ,
                 method: Optional[str] = None) -> None:
        self.x, self.out = x, out
        if method is None:
            method = GELU_METHOD["rows" if x.dtype in (np.int16, np.int32) else "static"]
        self.rows: Optional[RowLinear] = None
        if x.dtype in (np.int16, np.int32):   # dynamic rows
            # i-GELU on int32 needs its input scale above ~1e-6 (qkernels.transformer)
            self.rows = RowLinear(dense, x, min_scale=GELU_MIN_SCALE)
            self.lin, self.bias, acc_scale = self.rows.lin, self.rows.bias, self.rows.acc_scale
        else:
            self.lin = IntLinear(dense, x.k)
            self.bias = self.lin.int_bias(x.scale)
            acc_scale = self.lin.acc_scale(x.scale)
        # the int32 accumulators of the static form, their constants checked once
        self.acc = None if self.rows is not None else self.lin.int32(x, self.bias)
        self.gelu = qk.prepare_gelu(acc_scale, method=method,
                                    out_scale=out.steps() if out.k is not None else out.scale,
                                    out_zero_point=out.zero_point,
                                    out_dtype=out.dtype)

    def __call__(self, x8: np.ndarray, threads: int) -> np.ndarray:
        if self.rows is not None:
            acc = self.rows.rescaled(row_inputs(x8, threads), threads)
        else:
            acc = self.acc(x8, threads=threads)
        return qk.qgelu(acc, self.gelu)


def keep_mask(mask: Optional[torch.Tensor]) -> Optional[np.ndarray]:
    """A Hugging Face attention mask (None, boolean keep-mask, or additive float with large
    negative values at masked keys) as a boolean keep-mask broadcastable to (B, H, S, S)."""
    if mask is None:
        return None
    m = mask.detach()
    if m.dtype == torch.bool:
        k = m.numpy()
    else:
        k = (m.float() > torch.finfo(torch.float32).min / 2).numpy()
    if k.all():
        return None
    return k


def renorm_floor(acc: np.ndarray, p: np.ndarray, threads: int = 1) -> np.ndarray:
    """``floor((2^9 acc + rs) / (2 rs))`` as int32, ``rs`` the row sums of the uint8 ``p`` (rows
    of ``acc``): ``round(2^8 acc / rs)`` half up, floor division's exact integer (C:
    :func:`qkernels.transformer.row_renorm`, IEEE double division then floor, exact because the
    numerator and denominator are integers below 2^53 in magnitude and a quotient below an
    integer n is below it by at least 1/(2 rs), more than half an ulp of n; int64 division for
    rows summing to 2^40 or more). A row of zeros has no sum: ValueError naming ``p`` (the
    softmax's rows never are: a row's max maps to >= 1). Within the blocks ``|acc| <= 255 rs``,
    so ``t`` fits int32 (a ``t`` outside raises OverflowError, never a wrapped value).
    ``threads`` splits the rows (same integers).

    Example:
        >>> import numpy as np
        >>> renorm_floor(np.array([[480, -481]], np.int32), np.array([[200, 40]], np.uint8))
        array([[ 512, -513]], dtype=int32)
    """
    return qk.transformer.row_renorm(acc, p, threads=threads)


class Attention:
    """Self-attention in integers (BertSelfAttention): see the module docstring."""

    def __init__(self, mod: torch.nn.Module, x: ActQ, q: ActQ, k: ActQ, v: ActQ, out: ActQ,
                 softmax: Optional[str] = None) -> None:
        if isinstance(mod, torch.nn.MultiheadAttention):
            self.heads = int(mod.num_heads)
            self.d = int(mod.embed_dim) // self.heads
            e = int(mod.embed_dim)
            lins = []
            for i in range(3):
                lin = torch.nn.Linear(e, e)
                with torch.no_grad():
                    lin.weight.copy_(mod.in_proj_weight[i * e:(i + 1) * e])
                    lin.bias.copy_(mod.in_proj_bias[i * e:(i + 1) * e])
                lins.append(lin)
        else:
            self.heads = int(mod.num_attention_heads)
            self.d = int(mod.attention_head_size)
            lins = [mod.query, mod.key, mod.value]
        self.x, self.q, self.k, self.v, self.out = x, q, k, v, out
        if softmax is None:
            softmax = SOFTMAX_METHOD["rows" if x.dtype in (np.int16, np.int32) else "static"]
        self.rows: Optional[List[Tuple[RowLinear, Any, Any]]] = None
        if x.dtype in (np.int16, np.int32):   # dynamic rows: rescaled sums, per-channel requant
            self.rows = []
            for lin, o in zip(lins, (q, k, v)):
                rl = RowLinear(lin, x)
                m, sh = qk.quantize_multiplier(rl.acc_scale.astype(np.float64) / o.scale)
                rl.fuse_output(m, sh, o.zero_point)   # requantize(.., single_round, int8)
                self.rows.append((rl, m, sh))
        else:
            self.lq = IntLinear(lins[0], x.k).prepared(x, q)
            self.lk = IntLinear(lins[1], x.k).prepared(x, k)
            self.lv = IntLinear(lins[2], x.k).prepared(x, v)
        scaling = float(getattr(mod, "scaling", self.d ** -0.5))
        self.score_scale = float(F32(F32(q.scale) * F32(k.scale)) * F32(scaling))
        self.softmax = qk.prepare_softmax(self.score_scale, method=softmax,
                                          output="rowmax" if softmax == "exp2" else "uint8")
        m, sh = qk.quantize_multiplier(np.float64(F32(qk.transformer.SOFTMAX_OUT_SCALE *
                                                      v.scale)) / out.scale)
        self.pv_mult, self.pv_shift = int(m), int(sh)
        m, sh = qk.quantize_multiplier(np.float64(F32(v.scale)) / 256.0 / out.scale)
        self.rn_mult, self.rn_shift = int(m), int(sh)
        self._rq_ctx = qk.prepare_requantize(
            self.rn_mult, self.rn_shift, out.zero_point,
            scheme="single_round" if out.dtype == np.int32 else "double_round", dtype=out.dtype)

    def _pv_renorm(self, p: np.ndarray, v: np.ndarray, threads: int) -> np.ndarray:
        """``P V`` normalised by the row sums of the integer probabilities (I-BERT's floored
        uint8 probabilities sum to 0.94..0.98, a bias of the context's magnitude): ``t =
        round(2^8 acc / sum_j P_ij)`` (round half up, exact: :func:`renorm_floor`), then the
        fixed-point requantization of ``t`` (unit ``s_v / 2^8``) to the context's int8."""
        acc = qk.matmul_int32(p, v, b_zero_point=self.v.zero_point, threads=threads)
        return self._rq_ctx(renorm_floor(acc, p, threads))   # rn_mult, rn_shift, out's zero point

    def _heads(self, t: np.ndarray, b: int, s: int) -> np.ndarray:
        return np.ascontiguousarray(t.reshape(b, s, self.heads, self.d).transpose(0, 2, 1, 3))

    def __call__(self, x8: np.ndarray, keep: Optional[np.ndarray],
                 threads: int) -> Dict[str, np.ndarray]:
        b, s = x8.shape[0], x8.shape[1]
        if self.rows is not None:
            rq = row_inputs(x8, threads)
            q, k, v = (self._heads(rl.output(rq, threads), b, s) for rl, _, _ in self.rows)
        else:
            q = self._heads(self.lq(x8, threads=threads), b, s)
            k = self._heads(self.lk(x8, threads=threads), b, s)
            v = self._heads(self.lv(x8, threads=threads), b, s)
        scores = qk.matmul_int32(q, k, a_zero_point=self.q.zero_point,
                                 b_zero_point=self.k.zero_point, transpose_b=True,
                                 threads=threads)
        if keep is not None:
            scores = np.where(np.broadcast_to(keep, scores.shape), scores, np.int32(I32_MIN))
        p = qk.qsoftmax(scores, self.softmax)
        if SOFTMAX_RENORM or self.softmax.output == "rowmax":
            ctx = self._pv_renorm(p, v, threads)
        else:
            ctx = qk.qmatmul(p, v, a_scale=qk.transformer.SOFTMAX_OUT_SCALE,
                             b_scale=self.v.scale, out_scale=self.out.scale,
                             b_zero_point=self.v.zero_point, out_zero_point=self.out.zero_point,
                             out_dtype=self.out.dtype, multiplier=self.pv_mult,
                             shift=self.pv_shift, threads=threads)
        out = np.ascontiguousarray(ctx.transpose(0, 2, 1, 3)).reshape(b, s, self.heads * self.d)
        return {"q": q, "k": k, "v": v, "scores": scores, "probs": p, "context": out}


class EncoderBlock:
    """torchvision's ViT ``EncoderBlock`` (pre-LayerNorm) in integers.

    The residual stream is int32 in one power-of-two unit ``u`` for all blocks
    (:meth:`BlockCalibration.residual_unit`): ``x = RNE(x_float / u)`` at the first block (the
    model's input quantization), then exact from block to block (``x u`` is exact in float32).
    ``ln_1`` / ``ln_2``: the PTF input is a per-channel rounding shift of the stream (the PTF
    base scale is ``u 2^m``), the integer LayerNorm (int8, channel factors). Attention as
    :class:`Attention` (Q, K, V from ``in_proj``), ``out_proj``'s int32 sums requantized to ``u``
    (fixed point, single rounding) and added; the MLP: ``fc1`` into i-GELU (uint8, channel
    factors), ``fc2``'s sums requantized to ``u`` and added."""

    def __init__(self, mod: torch.nn.Module, cal: BlockCalibration, name: str,
                 method: str = "exact") -> None:
        u = cal.residual_unit()
        self.u = u
        self.ptf, self.ln = [], []
        for i, ln in enumerate((mod.ln_1, mod.ln_2)):
            p = qk.ptf_calibrate(cal.rows.pop(f"{name}:ln_{i + 1}"), method="seed")
            m = max(int(np.ceil(np.log2(p.scale / u))), 0)
            ptf = qk.PTFParams(float(u * 2.0 ** m), p.alpha, p.zero_point, p.K)
            out = cal.meta(f"{name}:ln_{i + 1}", factors=True)
            self.ptf.append((ptf, (ptf.alpha.astype(np.int32) + m)))
            self.ln.append((_ln_params(ln, ptf, out, method), out))
        x1 = self.ln[0][1]
        ctx = cal.meta(name + ":context")
        self.attn = Attention(mod.self_attention, x1, cal.meta(name + ":query"),
                              cal.meta(name + ":key"), cal.meta(name + ":value"), ctx,
                              softmax=cal.softmax)
        self.out_proj = IntLinear(mod.self_attention.out_proj)
        self.out_bias = self.out_proj.int_bias(ctx.scale)
        self.out_acc = self.out_proj.int32(ctx, self.out_bias)
        self.ctx = ctx
        self.m_o, self.sh_o = qk.quantize_multiplier(
            self.out_proj.acc_scale(ctx.scale).astype(np.float64) / u)
        x2 = self.ln[1][1]
        self.fc1 = Intermediate(mod.mlp[0], x2, cal.meta(name + ":gelu", np.uint8,
                                                          factors=GELU_FACTORS))
        g = self.fc1.out
        self.fc2 = IntLinear(mod.mlp[3], g.k)
        self.fc2_bias = self.fc2.int_bias(g.scale)
        self.fc2_acc = self.fc2.int32(g, self.fc2_bias)
        self.m_2, self.sh_2 = qk.quantize_multiplier(
            self.fc2.acc_scale(g.scale).astype(np.float64) / u)
        # the requantizations, their constants checked once: the LayerNorms' PTF inputs, the
        # two sums requantized to u
        self._to_ptf = [qk.prepare_requantize_shift(shift, ptf.zero_point, rounding="half_up",
                                                    dtype=np.uint8, channels=len(shift))
                        for ptf, shift in self.ptf]
        self._rq_o = qk.prepare_requantize(self.m_o, self.sh_o, scheme="single_round",
                                           dtype=np.int32, channels=len(self.m_o))
        self._rq_2 = qk.prepare_requantize(self.m_2, self.sh_2, scheme="single_round",
                                           dtype=np.int32, channels=len(self.m_2))

    def _ln(self, i: int, x: np.ndarray, threads: int) -> np.ndarray:
        # requantize_shift(x, shift, zp, half_up, uint8, axis=-1), then the integer LayerNorm
        return qk.ptf_layernorm(self._to_ptf[i](x), self.ln[i][0], threads=threads)

    @staticmethod
    def _add(x: np.ndarray, acc: np.ndarray, rq: qk.PreparedElementwise) -> np.ndarray:
        """``x + requantize(acc, m, sh, single_round, int32, axis=-1)`` (``rq``), saturated."""
        return add_sat32(x, rq(acc))

    def __call__(self, x: np.ndarray, threads: int) -> Dict[str, np.ndarray]:
        """``x``: the int32 residual stream (units ``u``); returns the block's integers."""
        h1 = self._ln(0, x, threads)
        a = self.attn(h1, None, threads)
        acc = self.out_acc(a["context"], threads=threads)
        x1 = self._add(x, acc, self._rq_o)
        h2 = self._ln(1, x1, threads)
        g = self.fc1(h2, threads)
        acc2 = self.fc2_acc(g, threads=threads)
        y = self._add(x1, acc2, self._rq_2)
        return {"x": x, "ln_1": h1, "context": a["context"], "x1": x1, "ln_2": h2, "gelu": g,
                "out": y}
