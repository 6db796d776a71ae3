"""PTF (power-of-two factor) quantization and integer LayerNorm (SPEC sections 6 and 7).

PTF quantizes the input of a LayerNorm with one scale ``s``, one zero point ``zp`` and a
per-channel exponent ``alpha[c]`` along the last axis (FQ-ViT, SOLE)::

    q = clamp(RNE(x / (s * 2^alpha[c])) + zp, 0, 255)      # uint8
    x_hat = (q - zp) * s * 2^alpha[c];   integer domain: (q - zp) << alpha[c]

The integer LayerNorm then works on the integers only: the float work (gamma, beta, output
scale, look-up tables) is done once by :func:`prepare_layernorm`, in C, so C test benches and
Python get the same bits. Methods: ``"exact"`` (exact sums, integer square root, dyadic
reciprocal) and ``"sole"`` (SOLE's AILayerNorm with 4-bit compressed squares, ``rounding``
``"round"`` as in the paper or ``"truncate"`` as the seed's C code).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import numpy as np

from . import _checks as C
from . import _core

ArrayLike = Any

#: Largest per-channel exponent the kernels accept (so (q - zp) << alpha fits in 16 bits).
MAX_ALPHA = 7
#: Largest channel count of the integer LayerNorm (int64 bounds, see qkernels.h).
MAX_CHANNELS = 32768
CALIBRATION_METHODS = ("seed", "fqvit")
LAYERNORM_METHODS = ("exact", "sole")
SOLE_ROUNDINGS = ("round", "truncate")
_METHOD_CODES = {("exact", None): 0, ("sole", "round"): 1, ("sole", "truncate"): 2}
_INT8 = np.dtype(np.int8)


def _choice(value: Any, allowed: Tuple[str, ...], name: str) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(repr(a) for a in allowed)}; "
                         f"got {value!r}")
    return value


def _k_param(K: Any) -> int:
    if isinstance(K, bool) or not isinstance(K, (int, np.integer)):
        raise TypeError(f"K must be an int, got {type(K).__name__}")
    if not 0 <= int(K) <= MAX_ALPHA:
        raise ValueError(f"K must be in 0..{MAX_ALPHA}, got {K}")
    return int(K)


def _alpha_array(alpha: ArrayLike, lo: int, hi: int, name: str = "alpha") -> np.ndarray:
    a = C.int_param(alpha, name, lo, hi)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one exponent per channel), got shape {a.shape}")
    return a


@dataclass(frozen=True)
class PTFParams:
    """PTF quantization parameters: ``scale`` (float32), per-channel ``alpha`` in 0..K, ``zero_point``.

    ``scale * 2^alpha[c]`` is the step of channel c. ``K`` is the largest exponent allowed.
    The seed's files use another convention (``S``, ``alpha_seed <= 0``); see :meth:`from_seed`
    and :meth:`to_seed`.

    Example:
        >>> import numpy as np, qkernels
        >>> p = qkernels.PTFParams(0.25, np.array([0, 1, 3], np.int32), 128)
        >>> p.to_seed()
        (2.0, 128, array([-3, -2,  0], dtype=int32))
        >>> qkernels.PTFParams.from_seed(*p.to_seed()) == p
        True
    """

    scale: float
    alpha: np.ndarray
    zero_point: int
    K: int = 3

    def __post_init__(self) -> None:
        K = _k_param(self.K)
        s = C.scale_param(self.scale, "scale")
        if s.ndim != 0:
            raise ValueError(f"scale must be a scalar (one scale per tensor), got shape {s.shape}")
        a = _alpha_array(self.alpha, 0, K, "alpha")
        zp = C.int_param(self.zero_point, "zero_point", 0, 255)
        if zp.ndim != 0:
            raise ValueError("zero_point must be a scalar")
        if not np.isfinite(np.ldexp(s, int(a.max()) if a.size else 0)):
            raise ValueError("scale * 2^max(alpha) overflows float32")
        a = a.copy()
        a.setflags(write=False)
        object.__setattr__(self, "scale", float(s))
        object.__setattr__(self, "alpha", a)
        object.__setattr__(self, "zero_point", int(zp))
        object.__setattr__(self, "K", K)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PTFParams):
            return NotImplemented
        return (self.scale == other.scale and self.zero_point == other.zero_point
                and self.K == other.K and np.array_equal(self.alpha, other.alpha))

    __hash__ = None  # type: ignore[assignment]

    @property
    def channels(self) -> int:
        return int(self.alpha.shape[0])

    @property
    def steps(self) -> np.ndarray:
        """The per-channel steps ``scale * 2^alpha`` as float32."""
        return np.ldexp(np.float32(self.scale), self.alpha).astype(np.float32)

    @classmethod
    def from_seed(cls, S: float, zero_point: int, alpha_seed: ArrayLike,
                  K: Optional[int] = None) -> "PTFParams":
        """From the seed's convention: step of channel c is ``S * 2^alpha_seed[c]``, alpha_seed <= 0.

        ``scale = S * 2^min(alpha_seed)`` (exact in float32), ``alpha = alpha_seed - min(alpha_seed)``;
        K defaults to max(3, the largest resulting alpha).
        """
        a = _alpha_array(alpha_seed, -MAX_ALPHA, 0, "alpha_seed").astype(np.int64)
        S32 = C.scale_param(S, "S")
        m = int(a.min()) if a.size else 0
        alpha = (a - m).astype(np.int32)
        if K is None:
            K = max(3, int(alpha.max()) if alpha.size else 0)
        return cls(float(np.ldexp(S32, m)), alpha, zero_point, K)

    def to_seed(self) -> Tuple[float, int, np.ndarray]:
        """``(S, zero_point, alpha_seed)`` with ``max(alpha_seed) == 0`` (the seed's files)."""
        m = int(self.alpha.max()) if self.alpha.size else 0
        S = float(np.ldexp(np.float32(self.scale), m))
        return S, self.zero_point, (self.alpha.astype(np.int32) - m)

    def quantize(self, x: ArrayLike) -> np.ndarray:
        """``ptf_quantize(x, self.scale, self.alpha, self.zero_point)``."""
        return ptf_quantize(x, self.scale, self.alpha, self.zero_point)

    def dequantize(self, q: ArrayLike) -> np.ndarray:
        """``ptf_dequantize(q, self.scale, self.alpha, self.zero_point)``."""
        return ptf_dequantize(q, self.scale, self.alpha, self.zero_point)


def _ptf_args(shape: Tuple[int, ...], scale: ArrayLike, alpha: ArrayLike,
              zero_point: ArrayLike) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = C.scale_param(scale, "scale")
    if s.ndim != 0:
        raise ValueError(f"scale must be a scalar (one scale per tensor), got shape {s.shape}")
    a = C.int_param(alpha, "alpha", 0, MAX_ALPHA)
    zp = C.int_param(zero_point, "zero_point", 0, 255)
    if zp.ndim != 0:
        raise ValueError(f"zero_point must be a scalar, got shape {zp.shape}")
    if a.ndim > 1 or (a.ndim == 1 and (len(shape) == 0 or a.shape[0] != shape[-1])):
        raise ValueError(f"alpha has shape {a.shape}; it must be a scalar or 1-D with one "
                         f"exponent per channel of the last axis "
                         f"({shape[-1] if shape else 'no axis'})")
    if not np.all(np.isfinite(np.ldexp(s, a))):
        raise ValueError("scale * 2^alpha overflows float32")
    return s, a, zp


def ptf_quantize(x: ArrayLike, scale: ArrayLike, alpha: ArrayLike, zero_point: ArrayLike, *,
                 out: Optional[np.ndarray] = None) -> np.ndarray:
    """PTF-quantize float data to uint8 with per-channel power-of-two factors (last axis).

    ``q = clamp(RNE(fl(x / fl(scale * 2^alpha[c]))) + zero_point, 0, 255)``: a float32
    division by an exact power-of-two multiple of the scale (FQ-ViT's ``(x / scale).round()``).

    Args:
        x: float data of shape (..., C); converted to float32 when it is not float32.
        scale: the tensor's scale (float32, finite, > 0).
        alpha: exponents in 0..7 (``MAX_ALPHA``), a scalar or shape (C,).
        zero_point: integer in 0..255.
        out: optional uint8 output of x's shape.

    Raises:
        ValueError: NaN in x (naming its index; ``out=`` may then be partly written), alpha or
            zero_point out of range, bad scale, alpha of the wrong length. +-inf saturate.

    Example:
        >>> import numpy as np, qkernels
        >>> x = np.array([[0.5, -3.0, 10.0]], np.float32)
        >>> qkernels.ptf_quantize(x, 0.25, np.array([0, 1, 3], np.int32), 128)
        array([[130, 122, 133]], dtype=uint8)
    """
    x = C.float_input(x, "x").astype(np.float32, copy=False)
    s, a, zp = _ptf_args(x.shape, scale, alpha, zero_point)
    C.check_out(out, x.shape, np.dtype(np.uint8))
    return C.run_ufunc(_core.ptf_quantize, (x, s, a, zp), out,
                       lambda: C.raise_nan(x, "x", partial_out=out is not None))


def ptf_dequantize(q: ArrayLike, scale: ArrayLike, alpha: ArrayLike,
                   zero_point: ArrayLike) -> np.ndarray:
    """Dequantize PTF uint8 data: ``fl(fl(scale * 2^alpha[c]) * (q - zero_point))`` as float32.

    Example:
        >>> import numpy as np, qkernels
        >>> q = np.array([[130, 122, 133]], np.uint8)
        >>> qkernels.ptf_dequantize(q, 0.25, np.array([0, 1, 3], np.int32), 128)
        array([[ 0.5, -3. , 10. ]], dtype=float32)
    """
    qa = np.asarray(q)
    if qa.dtype != np.uint8:
        raise TypeError(f"q must be a uint8 array, got dtype {qa.dtype}")
    s, a, zp = _ptf_args(qa.shape, scale, alpha, zero_point)
    return C.run_ufunc(_core.ptf_dequantize, (qa, s, a, zp), None,
                       lambda: None)


# ---------------------------------------------------------------------------------------------
# Calibration
# ---------------------------------------------------------------------------------------------
def _batches(x: Any) -> List[np.ndarray]:
    if isinstance(x, np.ndarray) or np.isscalar(x):
        items = [x]
    elif isinstance(x, (list, tuple)) and x and all(np.ndim(b) >= 1 for b in x) and \
            not all(np.isscalar(b) for b in x):
        items = list(x)
    elif isinstance(x, (list, tuple)):
        items = [np.asarray(x)]
    else:
        items = list(x)
    out = []
    for i, b in enumerate(items):
        a = C.float_input(b, f"x[{i}]" if len(items) > 1 else "x").astype(np.float64)
        if a.ndim < 1 or a.shape[-1] == 0:
            raise ValueError("x must have a non-empty last (channel) axis")
        if np.isnan(a).any():
            C.raise_nan(a, f"x[{i}]" if len(items) > 1 else "x")
        if not np.isfinite(a).all():
            raise ValueError("x contains +-inf; calibration needs finite data")
        out.append(a.reshape(-1, a.shape[-1]))
    if not out:
        raise ValueError("x: no calibration batches")
    if len({b.shape[1] for b in out}) != 1:
        raise ValueError("x: the calibration batches have different channel counts")
    return out


def ptf_calibrate(x: Union[ArrayLike, Iterable[ArrayLike]], *, method: str = "seed",
                  K: Optional[int] = None) -> PTFParams:
    """Choose PTF parameters from calibration data (one array or an iterable of batches).

    Methods (SPEC section 6), statistics over all batches, channels on the last axis:

    - ``"seed"``: ``S = max|x| / 127``, ``zp = 128``, per channel the largest power-of-two
      stretch that does not clip: ``alpha_seed[c] = -floor(log2(127 / (max|x_c| / S)))``; then
      ``scale = S * 2^min(alpha_seed)``, ``alpha = alpha_seed - min``. With ``K=None`` (the
      default) nothing limits the stretch, exactly as the seed's script computes it (only the
      kernel's own limit, ``MAX_ALPHA`` = 7, and all-zero channels get 0); an explicit ``K``
      limits it to ``-K`` (FQ-ViT's K = 3: a narrow channel may then clip).
    - ``"fqvit"`` (FQ-ViT ``PtfObserver``): ``scale8 = (max - min) / 255`` over all channels,
      ``zp = clamp(-round(min / scale8), 0, 255)``, ``scale = scale8 / 2^K``, and per channel
      the alpha in 0..K with the least squared error (may clip; ties go to the smaller alpha).
      FQ-ViT scores its last batch only; here the error is summed over every batch. ``K=None``
      is FQ-ViT's 3.

    Raises:
        ValueError: x holds NaN or +-inf, has no channels, or (``"seed"``) max|x| is so small
            that the scale ``S * 2^min(alpha_seed)`` is not a normal float32 (possible below
            ``127 * 2^(limit - 126)``: about 1.9e-34 with the default limit 7, 1.2e-35 with
            K = 3).

    Example:
        >>> import numpy as np, qkernels
        >>> x = np.array([[1, 2, 4, 8], [-0.5, -1, -2, -4]], np.float32)
        >>> qkernels.ptf_calibrate(x).alpha
        array([0, 1, 2, 3], dtype=int32)
    """
    _choice(method, CALIBRATION_METHODS, "method")
    limit = MAX_ALPHA if K is None else _k_param(K)
    batches = _batches(x)
    if method == "seed":
        amax_c = np.max([np.abs(b).max(axis=0) for b in batches], axis=0)
        amax = float(amax_c.max())
        S = np.float32(amax / 127.0) if amax > 0 else np.float32(1.0)
        # 127 / (max|x_c| / S) with S = max|x| / 127 is max|x| / max|x_c|: computed that way,
        # a channel exactly a power of two narrower gets its full stretch despite S's rounding
        ratio = np.full(amax_c.shape, np.inf)
        nz = amax_c > 0
        ratio[nz] = amax / amax_c[nz]
        with np.errstate(divide="ignore"):
            alpha_seed = np.where(ratio < 1, 0, -np.floor(np.log2(ratio)))
        alpha_seed[~nz] = 0 if K is None else -limit   # an all-zero channel: any step is exact
        alpha_seed = np.clip(alpha_seed, -limit, 0).astype(np.int32)
        amin = int(alpha_seed.min()) if alpha_seed.size else 0
        if not np.float32(np.ldexp(S, amin)) >= np.finfo(np.float32).tiny:
            raise ValueError(f"x: max|x| = {amax:.9g} is too small to calibrate: the PTF scale "
                             f"max|x| / 127 * 2^{amin} is not a normal float32 "
                             f"(a max|x| of {127 * 2.0 ** (limit - 126):.3g} or more always works)")
        k = limit if K is not None else int(max(3, -amin))
        return PTFParams.from_seed(float(S), 128, alpha_seed, K=k)
    K = 3 if K is None else limit
    xmin = min(float(b.min()) for b in batches)
    xmax = max(float(b.max()) for b in batches)
    scale8 = max((xmax - xmin) / 255.0, 2.0 ** -23)
    zp = int(np.clip(-np.round(xmin / scale8), 0, 255))
    s = np.float32(scale8 / 2.0 ** K)
    errs = np.zeros((K + 1, batches[0].shape[1]))
    for a in range(K + 1):
        step = float(np.ldexp(s, a))
        for b in batches:
            q = np.clip(np.rint(b / step) + zp, 0, 255)
            errs[a] += ((b - (q - zp) * step) ** 2).sum(axis=0)
    alpha = np.argmin(errs, axis=0).astype(np.int32)
    return PTFParams(float(s), alpha, zp, K)


def sqnr_db(ref: ArrayLike, approx: ArrayLike) -> float:
    """Signal-to-quantization-noise ratio ``10 log10(sum ref^2 / sum (ref - approx)^2)`` in dB.

    Example:
        >>> import qkernels
        >>> round(qkernels.sqnr_db([1.0, -2.0, 3.0], [1.0, -2.0, 3.1]), 2)
        31.46
    """
    r = np.asarray(ref, np.float64)
    d = r - np.asarray(approx, np.float64)
    noise = float((d * d).sum())
    sig = float((r * r).sum())
    return math.inf if noise == 0 else 10.0 * math.log10(sig / noise)


# ---------------------------------------------------------------------------------------------
# Integer LayerNorm
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class LayerNormParams:
    """Prepared parameters of the integer LayerNorm (made by :func:`prepare_layernorm`).

    Holds the integer gamma/beta (``G_i``, ``B_i`` for ``exact``; int8 ``gamma_q``/``beta_q``
    and the multipliers ``MG``/``MB`` for ``sole``), the inverse-square-root table, the output
    shift and the eps term: everything the integer kernel reads. See qkernels.h for the formulas.
    """

    ptf: PTFParams
    method: str
    rounding: Optional[str]
    out_scale: float
    out_zero_point: int
    eps: float
    gamma_int: np.ndarray
    beta_int: np.ndarray
    lut: np.ndarray
    shift: int
    eps_term: int
    gamma_multiplier: int
    beta_multiplier: int
    sole_gamma_scale: float = 0.0
    sole_beta_scale: float = 0.0
    _alpha_u8: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]

    @property
    def channels(self) -> int:
        return self.ptf.channels

    @property
    def method_code(self) -> int:
        return _METHOD_CODES[(self.method, self.rounding)]

    def __post_init__(self) -> None:
        # the kernel's arguments, formed once (a call is tens of microseconds: building this
        # tuple on every call was a visible part of it)
        object.__setattr__(self, "_argv", (
            self.method_code, self.ptf.zero_point, self.out_zero_point, self.shift,
            self.eps_term, self.gamma_multiplier, self.beta_multiplier, self._alpha_u8,
            self.gamma_int, self.beta_int, self.lut))

    def _args(self) -> tuple:
        return self._argv  # type: ignore[attr-defined]


def _vector(v: ArrayLike, name: str, n: int) -> np.ndarray:
    a = np.asarray(v)
    if a.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a real array, got dtype {a.dtype}")
    a = a.astype(np.float32)
    if a.shape != (n,):
        raise ValueError(f"{name} has shape {a.shape}; it must have one value per channel "
                         f"({n},)")
    if not np.isfinite(a).all():
        bad = int(np.argmax(~np.isfinite(a)))
        raise ValueError(f"{name} is not finite at index {bad} ({a[bad]})")
    return np.ascontiguousarray(a)


def prepare_layernorm(params: PTFParams, gamma: ArrayLike, beta: ArrayLike, *,
                      method: str = "exact", rounding: str = "round",
                      out_scale: float, out_zero_point: int = 0,
                      eps: float = 1e-12) -> LayerNormParams:
    """Prepare the integer LayerNorm once (all float work; C's ``qk_layernorm_prepare``).

    Args:
        params: the PTF parameters of the input.
        gamma, beta: the LayerNorm's weight and bias, one per channel (float32, finite).
        method: ``"exact"`` or ``"sole"``.
        rounding: for ``"sole"``: ``"round"`` (SOLE paper) or ``"truncate"`` (the seed's C code).
        out_scale: the int8 output's scale (finite, > 0).
        out_zero_point: the int8 output's zero point in -128..127.
        eps: the LayerNorm's eps (>= 0), added as ``round(eps * C^2 / scale^2)`` integer units.

    Example:
        >>> import numpy as np, qkernels
        >>> p = qkernels.PTFParams(0.05, np.zeros(4, np.int32), 128)
        >>> ln = qkernels.prepare_layernorm(p, np.ones(4), np.zeros(4), out_scale=2 / 127)
        >>> qkernels.ptf_layernorm(np.array([[100, 120, 140, 160]], np.uint8), ln)
        array([[-85, -28,  28,  85]], dtype=int8)
    """
    if not isinstance(params, PTFParams):
        raise TypeError(f"params must be a PTFParams, got {type(params).__name__}")
    _choice(method, LAYERNORM_METHODS, "method")
    rnd: Optional[str] = None
    if method == "sole":
        rnd = _choice(rounding, SOLE_ROUNDINGS, "rounding")
    n = params.channels
    if not 1 <= n <= MAX_CHANNELS:
        raise ValueError(f"the LayerNorm needs 1..{MAX_CHANNELS} channels, got {n}")
    g = _vector(gamma, "gamma", n)
    b = _vector(beta, "beta", n)
    os_ = C.scale_param(out_scale, "out_scale")
    if os_.ndim != 0:
        raise ValueError("out_scale must be a scalar")
    ozp = C.int_param(out_zero_point, "out_zero_point", -128, 127)
    if ozp.ndim != 0:
        raise ValueError("out_zero_point must be a scalar")
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating, np.integer)):
        raise TypeError(f"eps must be a float, got {type(eps).__name__}")
    if not (math.isfinite(float(eps)) and float(eps) >= 0):
        raise ValueError(f"eps must be finite and >= 0, got {eps}")
    code = _METHOD_CODES[(method, rnd)]
    e_int = float(np.float32(eps)) * n * n / (params.scale * params.scale)
    if not e_int < 2.0 ** 60:
        raise ValueError(f"eps={eps} is too large for the input scale {params.scale:.6g}: "
                         f"eps * C^2 / scale^2 must stay below 2^60 integer units")
    try:
        d = _core._layernorm_prepare(code, params.scale, np.ascontiguousarray(params.alpha,
                                                                              np.int32),
                                     params.zero_point, g, b, float(eps), float(os_), int(ozp))
    except ValueError as exc:
        if "scale" not in str(exc):
            raise
        raise ValueError(f"out_scale={float(os_)} is too small for gamma/beta (the fixed-point "
                         f"output stage would overflow): {exc}") from None
    for k in ("gamma", "beta", "lut", "alpha"):
        d[k].setflags(write=False)
    return LayerNormParams(params, method, rnd, float(os_), int(ozp), float(eps), d["gamma"],
                           d["beta"], d["lut"], d["shift"], d["eps_term"],
                           d["gamma_multiplier"], d["beta_multiplier"],
                           float(np.float32(d["sole_gamma_scale"])),
                           float(np.float32(d["sole_beta_scale"])), d["alpha"])


def _ln_input(q: ArrayLike, channels: int) -> np.ndarray:
    qa = np.asarray(q)
    if qa.dtype != np.uint8:
        raise TypeError(f"q must be a uint8 array (PTF-quantized), got dtype {qa.dtype}")
    if qa.ndim < 1 or qa.shape[-1] != channels:
        raise ValueError(f"q has shape {qa.shape}; its last axis must have {channels} channels "
                         f"(the length of gamma and alpha)")
    return np.ascontiguousarray(qa)


def ptf_layernorm(q: ArrayLike, params: Union[PTFParams, LayerNormParams],
                  gamma: Optional[ArrayLike] = None, beta: Optional[ArrayLike] = None, *,
                  method: Optional[str] = None, rounding: str = "round",
                  out_scale: Optional[float] = None, out_zero_point: int = 0,
                  eps: float = 1e-12, out: Optional[np.ndarray] = None,
                  threads: Optional[int] = None) -> np.ndarray:
    """Integer LayerNorm over the last axis of PTF uint8 data, int8 output (SPEC section 7).

    Either pass prepared :class:`LayerNormParams` (then gamma, beta, method and out_scale stay
    unset), or :class:`PTFParams` with gamma, beta, ``out_scale`` and the options of
    :func:`prepare_layernorm` (prepared on every call). The kernel is integer-only C and
    releases the GIL. ``threads`` (default: the CPUs this process may use) splits the tokens
    between threads when the call has at least 24576 tokens x channels; the result does not
    depend on it.

    Example:
        >>> import numpy as np, qkernels
        >>> p = qkernels.PTFParams(0.05, np.zeros(4, np.int32), 128)
        >>> q = np.array([[100, 120, 140, 160]], np.uint8)
        >>> qkernels.ptf_layernorm(q, p, np.ones(4), np.zeros(4), method="sole", out_scale=2 / 127)
        array([[-85, -28,  28,  85]], dtype=int8)
    """
    if isinstance(params, LayerNormParams):
        if gamma is not None or beta is not None or method is not None or out_scale is not None:
            raise ValueError("with prepared LayerNormParams, gamma, beta, method and out_scale "
                             "must not be given (they are already in the parameters)")
        prep = params
    elif isinstance(params, PTFParams):
        if gamma is None or beta is None:
            raise ValueError("gamma and beta are required with PTFParams")
        if out_scale is None:
            raise ValueError("out_scale is required with PTFParams")
        prep = prepare_layernorm(params, gamma, beta, method=method or "exact",
                                 rounding=rounding, out_scale=out_scale,
                                 out_zero_point=out_zero_point, eps=eps)
    else:
        raise TypeError(f"params must be PTFParams or LayerNormParams, got "
                        f"{type(params).__name__}")
    nt = C.threads(threads)
    qa = _ln_input(q, prep.channels)
    if out is None:
        res = np.empty(qa.shape, np.int8)
    else:
        C.check_out(out, qa.shape, _INT8)
        res = C.kernel_out(out, qa.shape, np.int8, qa)
    _core._layernorm_run(qa, *prep._args(), res, nt)
    if out is not None and res is not out:
        out[...] = res
        return out
    return res


def ptf_layernorm_stats(q: ArrayLike, params: LayerNormParams) -> Tuple[np.ndarray, np.ndarray]:
    """The mean and variance each token's integer LayerNorm works with, in float units.

    ``mean = scale * S1 / C`` and ``var = scale^2 * D / C^2`` with the integer S1 and D of the
    method (exact sums for ``exact``, compressed squares for ``sole``); eps not included.
    Returns float64 arrays of shape q.shape[:-1].

    Example:
        >>> import numpy as np, qkernels
        >>> p = qkernels.PTFParams(0.05, np.zeros(4, np.int32), 128)
        >>> ln = qkernels.prepare_layernorm(p, np.ones(4), np.zeros(4), out_scale=2 / 127)
        >>> m, v = qkernels.ptf_layernorm_stats(np.array([[100, 120, 140, 160]], np.uint8), ln)
        >>> round(float(m[0]), 6), round(float(v[0]), 6)
        (0.1, 1.25)
    """
    if not isinstance(params, LayerNormParams):
        raise TypeError(f"params must be LayerNormParams, got {type(params).__name__}")
    qa = _ln_input(q, params.channels)
    tokens = qa.size // params.channels
    buf = np.empty(2 * tokens, np.int64)
    _core._layernorm_stats(qa, *params._args(), buf)
    n = params.channels
    s = params.ptf.scale
    mean = s * buf[:tokens].astype(np.float64) / n
    var = s * s * buf[tokens:].astype(np.float64) / (n * n)
    return mean.reshape(qa.shape[:-1]), var.reshape(qa.shape[:-1])


def layernorm_reference(x: ArrayLike, gamma: ArrayLike, beta: ArrayLike,
                        eps: float = 1e-12) -> np.ndarray:
    """Float64 LayerNorm over the last axis (biased variance), the float golden of the files.

    Example:
        >>> import numpy as np, qkernels
        >>> qkernels.layernorm_reference(np.array([[1.0, 3.0]]), np.ones(2), np.zeros(2))
        array([[-1.,  1.]])
    """
    a = np.asarray(x, np.float64)
    mu = a.mean(axis=-1, keepdims=True)
    var = a.var(axis=-1, keepdims=True)
    return (a - mu) / np.sqrt(var + eps) * np.asarray(gamma, np.float64) + \
        np.asarray(beta, np.float64)


def layernorm_errors(y_int: ArrayLike, ln: LayerNormParams, q: ArrayLike,
                     x: ArrayLike, gamma: ArrayLike, beta: ArrayLike) -> Dict[str, float]:
    """Error metrics of an integer LayerNorm output against the float LayerNorm of ``x``.

    Returns ``sqnr_db`` and ``max_abs_err`` of the dequantized output, and the mean over tokens
    of ``|d mean| / sigma`` and ``|var_int / var - 1|`` of the statistics the kernel used.

    Example:
        >>> import numpy as np, qkernels
        >>> x = np.random.default_rng(1).normal(size=(8, 64)).astype(np.float32)
        >>> p = qkernels.ptf_calibrate(x)
        >>> ln = qkernels.prepare_layernorm(p, np.ones(64), np.zeros(64), out_scale=5 / 127)
        >>> q = p.quantize(x)
        >>> e = qkernels.layernorm_errors(qkernels.ptf_layernorm(q, ln), ln, q, x, np.ones(64), np.zeros(64))
        >>> e["sqnr_db"] > 25
        True
    """
    xa = np.asarray(x, np.float64)
    ref = layernorm_reference(xa, gamma, beta, ln.eps)
    y = (np.asarray(y_int, np.float64) - ln.out_zero_point) * ln.out_scale
    mean, var = ptf_layernorm_stats(q, ln)
    mu_ref = xa.mean(axis=-1)
    var_ref = xa.var(axis=-1)
    sigma = np.sqrt(var_ref + ln.eps)
    return {
        "sqnr_db": sqnr_db(ref, y),
        "max_abs_err": float(np.abs(ref - y).max()) if y.size else 0.0,
        "dmean_over_sigma": float(np.mean(np.abs(mean - mu_ref) / sigma)),
        "var_rel_err": float(np.mean(np.abs(var / np.where(var_ref > 0, var_ref, 1) - 1))),
    }


def layernorm_s16(x: ArrayLike, params: LayerNormParams, *,
                  threads: Optional[int] = None) -> np.ndarray:
    """The integer LayerNorm (method ``"exact"``) on int16 input, int16 output: the residual
    stream at 16 bits (no PTF decode), the output at 16 bits.

    ``params`` from :func:`prepare_layernorm` with ``PTFParams(in_scale, zeros, 0)`` (alpha 0,
    zero point 0: ``in_scale`` is the int16 input's step) and the int16 output's ``out_scale``
    and zero point 0. Per row, the exact method of qkernels.h with ``x_i`` the int16 values
    (``|x_i| <= 2^15``, the kernel's bound): ``S1 = sum x_i``, ``S2 = sum x_i^2``, ``D = C S2 -
    S1^2 + E``; ``j = floor((61 - bitlen(D)) / 2)``, ``R = isqrt(D << 2j)``, ``M = (2^61 +
    floor(R / 2)) // R``; ``v_i = C x_i - S1``, ``z_i = (v_i M + 2^(44 - j)) >> (45 - j)``
    (``z_i = 0`` when ``D = 0``); ``y_i = clamp(((z_i G_i + B_i + 2^(F-1)) >> F), -32768,
    32767)`` (int64 throughout: ``|v_i M| < 2^57``, ``|z_i G_i| < 2^54``). The same integers as
    ``qk_layernorm_ptf_u8_s8_exact`` computes before its int8 clamp. The kernel is C
    (``qk_layernorm_s16_s16_exact``); ``threads`` splits the rows (same integers).

    Example:
        >>> import numpy as np, qkernels
        >>> p = qkernels.PTFParams(0.01, np.zeros(4, np.int32), 0)
        >>> ln = qkernels.prepare_layernorm(p, np.ones(4), np.zeros(4), out_scale=2 / 32767)
        >>> qkernels.ptf.layernorm_s16(np.array([[100, 120, 140, 160]], np.int16), ln)
        array([[-21981,  -7327,   7327,  21981]], dtype=int16)
    """
    if not isinstance(params, LayerNormParams) or params.method != "exact":
        raise TypeError("params must be LayerNormParams of method 'exact'")
    if int(params.ptf.zero_point) != 0 or np.any(np.asarray(params.ptf.alpha) != 0) or \
            int(params.out_zero_point) != 0:
        raise ValueError("layernorm_s16 needs params prepared with alpha 0, input zero point 0 "
                         "and output zero point 0")
    xa = np.asarray(x)
    if xa.dtype != np.int16:
        raise TypeError(f"x must be an int16 array, got dtype {xa.dtype}")
    n = params.channels
    if xa.ndim < 1 or xa.shape[-1] != n:
        raise ValueError(f"x has shape {xa.shape}; its last axis must have {n} channels")
    xa = np.ascontiguousarray(xa)
    y = np.empty(xa.shape, np.int16)
    _core._layernorm_s16_run(xa, *params._args(), y, C.threads(threads))
    return y
