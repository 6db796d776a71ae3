"""Power-of-two fake quantization for training, with straight-through estimators.

Forward, every quantizer computes exactly what ``qkernels.fake_quantize`` (PyTorch's
``fake_quantize_per_tensor_affine``) and the integer kernels compute for a power-of-two scale
``s = 2**e``: ``q = clamp(RNE(x / s) + zp, qmin, qmax)``, ``y = (q - zp) * s`` (dividing by a power
of two is exact in float32, so the multiply-by-reciprocal and divide flavours agree bit for bit).

Backward (straight-through estimators): ``dy/dx = 1`` inside the clamping range and 0 outside;
a learned scale is parameterized by its log2, ``e = ceil(u)`` (TQT, Jain et al. 2020, "Trained
Quantization Thresholds for Accurate and Efficient Fixed-Point Inference of Deep Neural
Networks") or ``e = round(u)`` (LSQ, Esser et al. 2020, with the learned step snapped to a power
of two), with the rounding passed straight through, so that

    dy/du = s ln2 (RNE(x/s) - x/s)   inside the range,   s ln2 (qmin - zp) or s ln2 (qmax - zp) outside

the TQT threshold gradient (the range-precision trade-off: clipped values push the scale up,
rounding error pushes it down). ``s`` itself is always an exact power of two.

Example:
    >>> import torch
    >>> from qkernels.torch.qat.fake_quant import fake_quantize_pow2
    >>> fake_quantize_pow2(torch.tensor([0.3, -1.7, 9.0]), torch.tensor(0.25), 0, -8, 7)
    tensor([ 0.2500, -1.7500,  1.7500])
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import nn

__all__ = ["VALUE_ROUNDINGS", "round_ste", "round_half_up_ste", "ceil_ste", "fake_quantize_pow2",
           "pow2_ceil_scale", "MSE_CANDIDATES", "WeightQuantizer", "ActQuantizer", "bias_fake_quant"]

_EPS32 = 2.0 ** -23   # the observers' minimum scale (torch.finfo(float32).eps)


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round half to even forward, identity backward."""
    return x + (torch.round(x) - x).detach()


def ceil_ste(x: torch.Tensor) -> torch.Tensor:
    """Ceil forward, identity backward."""
    return x + (torch.ceil(x) - x).detach()


def round_half_up_ste(x: torch.Tensor) -> torch.Tensor:
    """``floor(x + 1/2)`` forward (the rounding of ``(acc + 2**(n-1)) >> n``), identity backward."""
    return x + (torch.floor(x + 0.5) - x).detach()


#: How a fake quantizer rounds, after the integer op it stands for:
#: "half_even": ``RNE(x / s) + zp`` (PyTorch's vectorized quantize: quantized add, LeakyReLU;
#: PyTorch's fake quantization); "half_even_zp": ``RNE(x / s + zp)``, the zero point added before
#: rounding (FBGEMM's quantize of the model input and of cat, the quantized average pools);
#: "half_up": ``floor(x / s + 1/2) + zp``, the pow2 preset's requantizing shift
#: ``(acc + 2**(n-1)) >> n`` of a conv / linear output. They differ only at exact ties, which
#: power-of-two scales make frequent.
VALUE_ROUNDINGS = ("half_even", "half_even_zp", "half_up")


def fake_quantize_pow2(x: torch.Tensor, scale: torch.Tensor, zero_point: "torch.Tensor | int",
                       qmin: int, qmax: int, rounding: str = "half_even") -> torch.Tensor:
    """``(clamp(round(x / s) + zp, qmin, qmax) - zp) * s`` with straight-through rounding (``scale``
    a power of two, broadcastable to x; gradients flow to x inside the range and to ``scale``);
    ``rounding`` one of :data:`VALUE_ROUNDINGS`."""
    if rounding == "half_even":
        q = round_ste(x / scale) + zero_point
    elif rounding == "half_even_zp":
        q = round_ste(x / scale + zero_point)
    elif rounding == "half_up":
        q = round_half_up_ste(x / scale) + zero_point
    else:
        raise ValueError(f"rounding must be one of {', '.join(VALUE_ROUNDINGS)}; got {rounding!r}")
    return (torch.clamp(q, qmin, qmax) - zero_point) * scale


def pow2_ceil_scale(amax: torch.Tensor, qmax_abs: int) -> torch.Tensor:
    """``2**ceil(log2(max(amax / qmax_abs, 2**-23)))``, exactly as
    ``qkernels.choose_qparams(..., symmetric=True, power_of_two="ceil")`` computes it (float32
    division, exact exponent from frexp)."""
    base = torch.clamp(amax.detach().float() / float(qmax_abs), min=_EPS32)
    m, e = torch.frexp(base)
    e = torch.where(m == 0.5, e - 1, e)
    return torch.ldexp(torch.ones_like(base), e)


#: How many power-of-two scales the MSE initialization tries: the min-max one (no clipping) and
#: the next finer ones, each halving the step and clipping more.
MSE_CANDIDATES = 4


def _exponent(u: torch.Tensor, rounding: str) -> torch.Tensor:
    return ceil_ste(u) if rounding == "ceil" else round_ste(u)


def _log2_init(scale: torch.Tensor, rounding: str) -> torch.Tensor:
    """The log2 parameter whose rounding gives exactly log2(scale) (mid-interval for ceil)."""
    e = torch.log2(scale.detach().double()).round()
    return (e - 0.5 if rounding == "ceil" else e).float()


class WeightQuantizer(nn.Module):
    """Symmetric power-of-two fake quantization of a conv / linear weight (zero point 0).

    ``learn=False``: the scale follows the weights, ``2**ceil(log2(max|w| / qmax))`` per channel or
    per tensor (the pow2 min-max observer, Brevitas's fixed-point weight quantizer).
    ``learn=True``: a trained log2 scale per channel or per tensor, initialized from ``init_scale``.
    """

    def __init__(self, bits: int, per_channel: bool, out_channels: int, learn: bool = False,
                 init_scale: Optional[torch.Tensor] = None, rounding: str = "ceil") -> None:
        super().__init__()
        self.qmin, self.qmax = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        self.bits, self.per_channel, self.rounding = bits, per_channel, rounding
        self.log2_scale: Optional[nn.Parameter] = None
        if learn:
            if init_scale is None:
                raise ValueError("a learned weight scale needs init_scale")
            n = out_channels if per_channel else 1
            s = torch.as_tensor(init_scale, dtype=torch.float32).reshape(-1)
            if s.numel() not in (1, n):
                raise ValueError(f"init_scale: {n} scale(s) expected, got {s.numel()}")
            self.log2_scale = nn.Parameter(_log2_init(s.expand(n).clone(), rounding))

    def scale(self, w: torch.Tensor) -> torch.Tensor:
        """The current scale: shape (C,) per channel, () per tensor; always a power of two."""
        if self.log2_scale is not None:
            s = torch.exp2(_exponent(self.log2_scale, self.rounding))
            return s if self.per_channel else s.reshape(())
        amax = w.detach().abs().flatten(1).amax(1) if self.per_channel else w.detach().abs().max()
        return pow2_ceil_scale(amax, min(self.qmax, -self.qmin))

    def quantize_at(self, w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """``w`` fake-quantized at scale ``s`` (shape (C,) per channel, () per tensor)."""
        if s.dim():
            s = s.reshape((-1,) + (1,) * (w.dim() - 1))
        return fake_quantize_pow2(w, s, 0, self.qmin, self.qmax)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.quantize_at(w, self.scale(w))

    @torch.no_grad()
    def init_mse(self, w: torch.Tensor) -> None:
        """Start the learned scale (per channel or per tensor) at the power of two, among the
        min-max one and the :data:`MSE_CANDIDATES` - 1 finer ones, with the least squared
        quantization error of ``w``."""
        if self.log2_scale is None:
            raise ValueError("init_mse needs a learned scale (learn=True)")
        amax = w.abs().flatten(1).amax(1) if self.per_channel else w.abs().max()
        smax = pow2_ceil_scale(amax, min(self.qmax, -self.qmin))
        dims = tuple(range(1, w.dim())) if self.per_channel else tuple(range(w.dim()))
        errs = torch.stack([((self.quantize_at(w, smax * 2.0 ** -j) - w) ** 2).sum(dims)
                            for j in range(MSE_CANDIDATES)])
        s = smax * torch.exp2(-errs.argmin(0).float())   # the first (coarsest) of equal errors
        self.log2_scale.copy_(_log2_init(s.reshape(-1), self.rounding).expand_as(self.log2_scale))


class ActQuantizer(nn.Module):
    """Power-of-two fake quantization of an activation, initialized from calibrated
    ``(scale, zero_point)``. Symmetric (signed, zero point 0) or affine (unsigned): an affine
    quantizer keeps the lowest representable value ``(qmin - zp0) * s0`` of its calibration and
    re-derives its zero point from it when a learned scale moves (as ``choose_qparams`` does from
    the observed minimum).

    ``forward(x, rounding)`` rounds as the integer op at that point does (:data:`VALUE_ROUNDINGS`),
    so QAT trains on the integer model's own rounding of exact ties; ``enabled=False`` passes
    values through (weight-only QAT)."""

    def __init__(self, scale: float, zero_point: int, qmin: int, qmax: int, learn: bool = False,
                 rounding: str = "ceil") -> None:
        super().__init__()
        if not (math.isfinite(scale) and scale > 0 and math.frexp(scale)[0] == 0.5):
            raise ValueError(f"scale must be a positive power of two, got {scale}")
        self.qmin, self.qmax, self.rounding = int(qmin), int(qmax), rounding
        self.enabled = True
        self.register_buffer("init_scale", torch.tensor(float(scale)))
        self.register_buffer("min_value", torch.tensor(float((qmin - zero_point) * scale)))
        self.affine = zero_point != 0
        self.log2_scale: Optional[nn.Parameter] = (
            nn.Parameter(_log2_init(torch.tensor(float(scale)), rounding)) if learn else None)

    def scale(self) -> torch.Tensor:
        if self.log2_scale is not None:
            return torch.exp2(_exponent(self.log2_scale, self.rounding))
        return self.init_scale

    def zero_point(self, s: torch.Tensor) -> torch.Tensor:
        if not self.affine:
            return torch.zeros((), dtype=torch.float32)
        return torch.clamp(self.qmin - torch.round(self.min_value / s.detach()), self.qmin, self.qmax)

    def qparams(self) -> Tuple[float, int]:
        """The (scale, zero point) the integer model gets."""
        with torch.no_grad():
            s = self.scale()
            return float(s), int(self.zero_point(s))

    def forward(self, x: torch.Tensor, rounding: str = "half_even") -> torch.Tensor:
        if not self.enabled:
            return x
        s = self.scale()
        return fake_quantize_pow2(x, s, self.zero_point(s), self.qmin, self.qmax, rounding)

    def mse_candidates(self) -> torch.Tensor:
        """The scales :meth:`init_mse` chooses among: the calibrated one (min-max or the PTQ's
        observer) and the :data:`MSE_CANDIDATES` - 1 finer powers of two."""
        return self.init_scale * torch.exp2(-torch.arange(MSE_CANDIDATES, dtype=torch.float32))

    @torch.no_grad()
    def squared_errors(self, x: torch.Tensor, rounding: str = "half_even") -> torch.Tensor:
        """The summed squared quantization error of ``x`` at each of :meth:`mse_candidates`."""
        out = []
        for s in self.mse_candidates():
            y = fake_quantize_pow2(x, s, self.zero_point(s), self.qmin, self.qmax, rounding)
            out.append(((y - x).double() ** 2).sum())
        return torch.stack(out)

    @torch.no_grad()
    def init_mse(self, errors: torch.Tensor) -> None:
        """Start the learned scale at the candidate with the least error (``errors``: summed
        :meth:`squared_errors` over the calibration batches)."""
        if self.log2_scale is None:
            raise ValueError("init_mse needs a learned scale (learn=True)")
        s = self.mse_candidates()[int(errors.argmin())]
        self.log2_scale.copy_(_log2_init(s, self.rounding))


def bias_fake_quant(b: torch.Tensor, x_scale: torch.Tensor, w_scale: torch.Tensor, bits: int
                    ) -> torch.Tensor:
    """The integer bias of the pow2 preset, ``clamp(RNE(b / (s_x s_w)), +-2**(bits-1))``, dequantized
    (scales detached: the bias follows them, it does not train them)."""
    s = (x_scale.detach() * w_scale.detach()).reshape(-1)
    lim = 1 << (bits - 1)
    return torch.clamp(round_ste(b / s), -lim, lim - 1) * s
