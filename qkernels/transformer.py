"""Integer transformer kernels: attention's batched matmul, integer softmax, integer GELU.

Each kernel is integer-only C (``csrc/operators/bmm.c``, ``csrc/elementwise/softmax.c``,
``csrc/elementwise/gelu.c``; the arithmetic is stated in ``csrc/include/qkernels.h``). The float work happens once, when the
parameters are prepared (:func:`prepare_softmax`, :func:`prepare_gelu`, or inside
:func:`qmatmul` for the requantization), exactly as the source each method cites.

* :func:`qmatmul` / :func:`matmul_int32`: int8 x int8 batched matmul of two activations (``Q K^T``
  with ``transpose_b=True``, ``P V``), exact int32 sums, per-tensor or per-head parameters, and the
  requantization of a runtime (:mod:`qkernels.presets`): ``onnxruntime`` (``QLinearMatMul``: fp32
  scale, the FBGEMM / ONNX Runtime formula), ``tflite`` (``BATCH_MATMUL``: fixed point, double or
  single rounding), ``pow2`` (shifts), a :class:`~qkernels.presets.Preset` of your own, or
  ``torch`` (``torch.ops.quantized.matmul``).
* :func:`qsoftmax`: I-BERT's i-exp (Kim et al. 2021, Algorithms 1-3), SOLE's E2Softmax (Wang et
  al., ICCAD 2023) and a 256-entry exponent table; uint8 probabilities of scale 1/256, or SOLE's
  log2 form; and ``exp2`` (qkernels' own): the row's exponentials as ``2^-z`` from two 32-entry
  tables, rounded on the step 1/255 of the row maximum (``output="rowmax"``, no division).
* :func:`qgelu`: I-BERT's i-GELU (second-order polynomial erf), a 256-entry table, and ``interp``
  (qkernels' own): int32 sums on a 2^-16 grid, ``max(x, 0) - h(|x|)`` in 96 quadratic segments.

What was read for each method (the public code and descriptions, via the project's search tools):
I-BERT's ``IntSoftmax`` / ``IntGELU`` / ``QuantAct`` / ``batch_frexp`` in
``kssteven418/I-BERT fairseq/quantization/utils/quant_modules.py`` and its Hugging Face port
``transformers/models/ibert/quant_modules.py`` (their float32 parameter formulas are reproduced
bit for bit: ``scalar / tensor`` is ``fl(fl(1/t) * fl(scalar))`` in PyTorch); FQ-ViT's
``QIntSoftmax`` (``megvii-research/FQ-ViT models/ptq/layers.py``, the same i-exp); for SOLE,
the paper itself could not be retrieved with the tools: its Log2Exp (``-floor(x + x>>1 - x>>4)``,
4-bit) is as quoted by a review of the paper (themoonlight.io), and its ALDivision (leading one
of the sum, the bit below it choosing the constant 0.818 or 0.568) as in the public C model
``BillyYehYeh/Nonlinear_Project Csim/Softmax.h``. Check those two steps against the paper's
Algorithm 1 before relying on SOLE-exact goldens; ``rounding="round"`` is the alternative reading
of Log2Exp's bracket.
"""
from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from typing import Any, Optional, Tuple, Union

import numpy as np

from . import _checks as C
from . import _core
from . import presets as P
from .linear import _explicit_epilogue, _finish, _out_range, _q8_input, _threads
from .presets import Epilogue, PresetLike

ArrayLike = Any
DTypeLike = Any

#: The preset names qmatmul takes: the presets of a requantized integer product, and "torch"
#: (PyTorch's float path). A :class:`~qkernels.presets.Preset` object is taken too.
MATMUL_PRESETS = ("onnxruntime", "tflite", "pow2", "torch")
SOFTMAX_METHODS = ("ibert", "sole", "lut", "exp2")
SOFTMAX_OUTPUTS = ("uint8", "log2", "rowmax")
SOLE_ROUNDINGS = ("floor", "round")
GELU_METHODS = ("ibert", "lut", "interp")
#: method="interp": the int32 input requantized to the grid 2^-GELU_GRID_BITS, gelu(x) = max(x, 0)
#: - h(|x|) with h(t) = t Q(t) in GELU_SEGMENTS quadratic segments of 2^(GELU_SEGMENT_BITS -
#: GELU_GRID_BITS) on [0, 6) (qkernels.h, qk_gelu_interp).
GELU_GRID_BITS = 16
GELU_SEGMENT_BITS = 12
GELU_SEGMENTS = 96
#: method="exp2": the fraction bits of z = (max - x) S log2(e) (2^-f, Q15, as the product of two
#: 32-entry tables) (qkernels.h, qk_softmax_exp2).
EXP2_FRAC_BITS = 10
#: Scale of the uint8 softmax output (I-BERT's output_bit = 8, TFLite's uint8 softmax).
SOFTMAX_OUT_SCALE = 1.0 / 256.0
#: SOLE's ALDivision constants (1 / (1 + f) for f < 1/2 and f >= 1/2) and their 8-bit forms.
SOLE_CONSTANTS = (0.818, 0.568)
SOLE_CONSTANTS_Q8 = (209, 145)

_F32 = np.float32
_choice = P._choice
# (min, max) of the 8-bit types (np.iinfo costs microseconds a call)
_R8 = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127)}


def _rhaz_mantissa(ratio: np.ndarray, bits: int) -> Tuple[np.ndarray, np.ndarray]:
    """I-BERT's batch_frexp: ratio = mant 2^ex, M = RHAZ(mant 2^bits), E = bits - ex (M < 2^bits)."""
    mant, ex = np.frexp(np.asarray(ratio, np.float64))
    m = np.floor(mant * 2.0 ** bits + 0.5)   # exact: mant * 2^bits is a double, >= 2^(bits-1)
    top = m >= 2.0 ** bits
    m = np.where(top, 2.0 ** (bits - 1), m)
    ex = np.where(top, ex + 1, ex)
    return m.astype(np.int64), (bits - ex).astype(np.int64)


def _scales(v: ArrayLike, name: str) -> np.ndarray:
    s = C.scale_param(v, name)
    return np.asarray(s, np.float32)


# ---------------------------------------------------------------------------------------------
# Batched matmul of two activations
# ---------------------------------------------------------------------------------------------
def _q8(x: Any, name: str) -> np.ndarray:
    a = _q8_input(x, name)
    if a.ndim < 2:
        raise ValueError(f"{name} must have at least 2 dimensions (..., rows, cols); got shape "
                         f"{a.shape}")
    return a


def _operands(a: Any, b: Any, transpose_b: bool) -> Tuple[np.ndarray, np.ndarray, Tuple[int, ...],
                                                            int, int, int]:
    a = _q8(a, "a")
    b = _q8(b, "b")
    if not isinstance(transpose_b, (bool, np.bool_)):
        raise TypeError(f"transpose_b must be a bool, got {type(transpose_b).__name__}")
    m, k = a.shape[-2:]
    bk, n = (b.shape[-1], b.shape[-2]) if transpose_b else b.shape[-2:]
    if bk != k:
        raise ValueError(f"a has K = {k} (last dimension) but b has K = {bk} "
                         f"({'last' if transpose_b else 'second to last'} dimension"
                         f"{', transpose_b=True' if transpose_b else ''})")
    try:
        batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(f"the batch dimensions of a {a.shape[:-2]} and b {b.shape[:-2]} do not "
                         f"broadcast") from None
    return a, b, tuple(batch), int(m), int(k), int(n)


def _flat(v: Any, batch: Tuple[int, ...], name: str) -> Any:
    """A scalar as it is, else the values of a per-batch-item (e.g. per-head) parameter in batch
    order, one per item (not checked here: the consumer checks them and names them)."""
    p = np.asarray(v)
    if p.ndim == 0:
        return v
    try:
        return np.ascontiguousarray(np.broadcast_to(p, batch).reshape(-1))
    except ValueError:
        raise ValueError(f"{name} of shape {p.shape} does not broadcast to the batch shape "
                         f"{batch} (a scalar, or one value per batch item, e.g. per head)") from None


def _zero_points(v: Any, batch: Tuple[int, ...], name: str, dtype: np.dtype) -> np.ndarray:
    """A zero point (scalar or per batch item) as one int32 per batch item, checked."""
    p = C.int_param(_flat(v, batch, name), name, *_R8[dtype])
    if p.ndim == 0:   # per tensor: the common case, without broadcasting machinery
        return np.full(math.prod(batch), p, np.int32)
    return p.astype(np.int32)


def _run_bmm(a: np.ndarray, b: np.ndarray, transpose_b: bool, batch: Tuple[int, ...], m: int,
             k: int, n: int, za: np.ndarray, zb: np.ndarray, odt: np.dtype, ep: Epilogue,
             ozp: int, lo: int, hi: int, overflow: str, threads: Optional[int],
             out: Optional[np.ndarray]) -> np.ndarray:
    """qk_bmm over the broadcast batch (the C call raises its own errors)."""
    nb = math.prod(batch)
    bshape = batch + ((n, k) if transpose_b else (k, n))
    if a.shape[:-2] != batch:
        a = np.broadcast_to(a, batch + (m, k))
    if b.shape[:-2] != batch:
        b = np.broadcast_to(b, bshape)
    a3 = np.ascontiguousarray(a).reshape(nb, m, k)
    b3 = np.ascontiguousarray(b).reshape((nb,) + bshape[-2:])
    shape = batch + (m, n)
    C.check_out(out, shape, odt)
    y = out if (out is not None and out.flags.c_contiguous) else np.empty(shape, odt)
    wrap = _choice(overflow, ("raise", "wrap"), "overflow") == "wrap"
    _core._bmm(a3, b3, za, zb, 0 if transpose_b else 1, y.reshape(nb, m, n), *ep.args(), ozp, lo,
               hi, int(wrap), _threads(threads, float(nb) * m * n * k))
    return _finish(y, out)


def matmul_int32(a: ArrayLike, b: ArrayLike, *, a_zero_point: ArrayLike = 0,
                 b_zero_point: ArrayLike = 0, transpose_b: bool = False, overflow: str = "raise",
                 threads: Optional[int] = None, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Exact int32 batched matmul of two 8-bit activations, no requantization.

    ``y[..., i, j] = sum_k (a[..., i, k] - a_zp) * (b[..., k, j] - b_zp)`` (``b[..., j, k]`` with
    ``transpose_b=True``, as ``Q K^T``). Batch dimensions broadcast; zero points are scalars or
    one per batch item (per head). The worst case ``K * max|a - a_zp| * max|b - b_zp|`` is checked
    before running (with b's own sums when the type range alone exceeds int32):
    :class:`~qkernels.AccumulatorOverflowError`, or ``overflow="wrap"``. Also the gufunc
    ``qkernels.ufuncs.matmul_int32`` with signature ``(m,k),(k,n),(),()->(m,n)``.

    Example:
        >>> import numpy as np, qkernels
        >>> a = np.array([[[1, 2], [3, 4]]], np.int8)
        >>> qkernels.matmul_int32(a, a, transpose_b=True)
        array([[[ 5, 11],
                [11, 25]]], dtype=int32)
    """
    a, b, batch, m, k, n = _operands(a, b, transpose_b)
    za = _zero_points(a_zero_point, batch, "a_zero_point", a.dtype)
    zb = _zero_points(b_zero_point, batch, "b_zero_point", b.dtype)
    return _run_bmm(a, b, bool(transpose_b), batch, m, k, n, za, zb, np.dtype(np.int32),
                    Epilogue(), 0, 0, 0, overflow, threads, out)


def _matmul_preset(preset: Any) -> Any:
    """"torch", or the Preset of a name of MATMUL_PRESETS (or a Preset object itself)."""
    if isinstance(preset, P.Preset) or (isinstance(preset, str) and preset == "torch"):
        return preset
    if not isinstance(preset, str) or preset not in MATMUL_PRESETS:
        raise ValueError(f"preset must be one of {', '.join(repr(p) for p in MATMUL_PRESETS)} or "
                         f"a qkernels.presets.Preset; got {preset!r}")
    return P.get(preset)


def qmatmul(a: ArrayLike, b: ArrayLike, *, a_scale: ArrayLike, b_scale: ArrayLike,
            out_scale: ArrayLike, a_zero_point: ArrayLike = 0, b_zero_point: ArrayLike = 0,
            out_zero_point: int = 0, transpose_b: bool = False,
            preset: PresetLike = "onnxruntime", out_dtype: DTypeLike = None,
            act_min: Optional[int] = None, act_max: Optional[int] = None,
            multiplier: Optional[ArrayLike] = None, shift: Optional[ArrayLike] = None,
            scheme: Optional[str] = None, rounding: Optional[str] = None,
            overflow: str = "raise", threads: Optional[int] = None,
            out: Optional[np.ndarray] = None) -> np.ndarray:
    """Quantized batched matmul of two activations (attention's ``Q K^T`` and ``P V``).

    ``acc = sum_k (a - a_zp)(b - b_zp)`` exact in int32 (SPEC section 5), then per batch item the
    requantization of a preset (:meth:`qkernels.presets.Preset.matmul_epilogue`: each batch item
    is the per-tensor case of a layer, ``a`` in the place of its activations, ``b`` of its
    weights):

    ============  =========================================================================
    preset        requantization of acc (``sa, sb, so``: a_scale, b_scale, out_scale)
    ============  =========================================================================
    onnxruntime   ``clamp(RNE(fl(fl(acc) * fl(fl(sa*sb)/so))) + out_zp)``: ``QLinearMatMul``
                  (ONNX Runtime MLAS), the fp32 scheme of FBGEMM
    tflite        double_round (``scheme="single_round"``) with M0, shift of
                  ``(double)fl(sa*sb) / (double)so`` (TFLite ``BATCH_MATMUL``:
                  ``GetQuantizedConvolutionMultipler``); int8 output by default
    pow2          every scale a power of two: ``acc / 2^(log2 so - log2 sa - log2 sb)``
                  rounded by ``rounding`` (half_up by default, half_even, half_away, floor)
    a Preset      your own :class:`~qkernels.presets.Preset`: its requantization (its
                  operand types and bias are a layer's, not applied here)
    torch         ``torch.ops.quantized.matmul`` (x86: dequantize, float matmul,
                  ``quantize_per_tensor``): ``RNE(fma(fl(acc * fl(sa*sb)), fl(1/so), out_zp))``;
                  bit-exact while PyTorch's float matmul is exact (power-of-two ``sa``, ``sb``
                  and ``K max|a-a_zp| max|b-b_zp| < 2^24``); with other scales PyTorch's own
                  float rounding moves about 7 outputs in 10^6 by one (12x128x64x128, measured);
                  both inputs of one dtype, the output too
    ============  =========================================================================

    ``multiplier=`` / ``shift=`` (M0 and the TFLite shift) replace the preset (double_round, or
    ``scheme="single_round"``). Scales and zero points are scalars or arrays that broadcast to the
    batch shape ``a.shape[:-2]``: per head, shape ``(H,)`` for ``(H, M, K)`` inputs and
    ``(1, H)`` or ``(B, H)`` for ``(B, H, M, K)``. ``transpose_b=True`` takes ``b`` as
    ``(..., N, K)`` (``K`` for ``Q K^T``); else ``(..., K, N)`` (``V`` for ``P V``). The output
    type defaults to the preset's (``a``'s for onnxruntime and pow2).

    Raises:
        AccumulatorOverflowError: the int32 sums can overflow (``overflow="wrap"`` wraps).
        TypeError / ValueError: wrong dtypes or shapes, bad scales or zero points (named).

    Example:
        >>> import numpy as np, qkernels
        >>> q = np.array([[[10, -20], [30, 40]]], np.int8)
        >>> qkernels.qmatmul(q, q, transpose_b=True, a_scale=0.05, b_scale=0.05, out_scale=0.5)
        array([[[ 3, -3],
                [-3, 13]]], dtype=int8)
    """
    pr = _matmul_preset(preset)
    a, b, batch, m, k, n = _operands(a, b, transpose_b)
    za = _zero_points(a_zero_point, batch, "a_zero_point", a.dtype)
    zb = _zero_points(b_zero_point, batch, "b_zero_point", b.dtype)
    if not isinstance(pr, P.Preset):
        return _qmatmul_torch(a, b, bool(transpose_b), batch, m, k, n, za, zb, a_scale, b_scale,
                              out_scale, out_zero_point, out_dtype, act_min, act_max, overflow,
                              threads, out)
    # the output type, zero point and clamp, checked as qlinear's
    odt, ozp, lo, hi = _out_range(pr, a.dtype, out_dtype, out_zero_point, act_min, act_max)
    nb = math.prod(batch)
    ep = _explicit_epilogue(nb, _flat(multiplier, batch, "multiplier"),
                            _flat(shift, batch, "shift"), scheme, rounding, None)
    if ep is None:
        ep = pr.matmul_epilogue(nb, _flat(a_scale, batch, "a_scale"),
                                _flat(b_scale, batch, "b_scale"),
                                _flat(out_scale, batch, "out_scale"), scheme, rounding)
    return _run_bmm(a, b, bool(transpose_b), batch, m, k, n, za, zb, odt, ep, ozp, lo, hi,
                    overflow, threads, out)


def _qmatmul_torch(a: np.ndarray, b: np.ndarray, transpose_b: bool, batch: Tuple[int, ...],
                   m: int, k: int, n: int, za: np.ndarray, zb: np.ndarray, a_scale: Any,
                   b_scale: Any, out_scale: Any, out_zero_point: Any, out_dtype: Any,
                   act_min: Any, act_max: Any, overflow: str, threads: Optional[int],
                   out: Optional[np.ndarray]) -> np.ndarray:
    """preset "torch": the exact sums, then PyTorch's float path (dequantize - matmul -
    quantize_per_tensor)."""
    if a.dtype != b.dtype:
        raise TypeError(f"preset 'torch' needs a and b of one dtype (torch.ops.quantized.matmul "
                        f"checks it); got {a.dtype} and {b.dtype}")
    if act_min is not None or act_max is not None:
        raise ValueError("preset 'torch' has no act_min/act_max (quantize_per_tensor clamps to "
                         "the dtype)")
    odt, ozp, _, _ = _out_range(P.get("onnxruntime"), a.dtype, out_dtype, out_zero_point, None,
                                None)
    if odt != a.dtype:
        raise TypeError("preset 'torch' writes a's dtype (torch.ops.quantized.matmul does)")
    shape = batch + (1, 1) if batch else ()
    sa, sb, so = (np.broadcast_to(_scales(_flat(v, batch, name), name), (math.prod(batch),))
                  .reshape(shape)
                  for v, name in ((a_scale, "a_scale"), (b_scale, "b_scale"),
                                  (out_scale, "out_scale")))
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        sab = (sa * sb).astype(np.float32)
    if not (np.isfinite(sab).all() and (sab > 0).all()):
        raise ValueError("a_scale * b_scale is not a positive finite float32")
    acc = _run_bmm(a, b, transpose_b, batch, m, k, n, za, zb, np.dtype(np.int32), Epilogue(), 0,
                   0, 0, overflow, threads, None)
    from ._elementwise import accumulator_to_float, quantize
    rc = accumulator_to_float(acc, sab, 0.0)             # fl(acc * fl(sa sb))
    if (so == so.reshape(-1)[0]).all():
        res = quantize(rc, float(so.reshape(-1)[0]), ozp, dtype=odt, flavor="torch")
    else:
        res = np.empty(rc.shape, odt)
        for i in np.ndindex(*batch):
            res[i] = quantize(rc[i], float(so[i]), ozp, dtype=odt, flavor="torch")
    C.check_out(out, res.shape, odt)
    return _finish(res, out)


# ---------------------------------------------------------------------------------------------
# Integer softmax
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class SoftmaxParams:
    """Prepared parameters of :func:`qsoftmax` (made by :func:`prepare_softmax`).

    Arrays have the shape of ``x_scale`` (a scalar, or per head / per row: they broadcast
    against the input's leading dimensions). ``ibert``: ``x0, b, c`` (int64) and ``m16, e16``
    (int32); ``sole``: ``sole_mult, sole_shift`` and ``sole_round`` (int32); ``lut``: ``lut``
    (uint32, ``shape + (256,)``); ``exp2`` (one scale): ``exp2_mult, exp2_shift, exp2_cap``
    (ints) and ``exp2_table`` (64 int32). See ``qkernels.h`` for the arithmetic.
    """

    method: str
    output: str
    rounding: Optional[str]
    x_scale: np.ndarray
    x0: Optional[np.ndarray] = None
    b: Optional[np.ndarray] = None
    c: Optional[np.ndarray] = None
    m16: Optional[np.ndarray] = None
    e16: Optional[np.ndarray] = None
    sole_mult: Optional[np.ndarray] = None
    sole_shift: Optional[np.ndarray] = None
    sole_round: Optional[np.ndarray] = None
    lut: Optional[np.ndarray] = None
    exp2_mult: int = 0
    exp2_shift: int = 0
    exp2_cap: int = 0
    exp2_table: Optional[np.ndarray] = None

    @property
    def out_scale(self) -> float:
        """Scale of the uint8 output: 1/256 (``output="rowmax"``: 1/255 of the row maximum's
        exponential, the row's own scale; normalise by the row sum)."""
        return SOFTMAX_OUT_SCALE if self.output != "rowmax" else 1.0 / 255.0


def _exp2_consts(s: float) -> Tuple[int, int, int, np.ndarray]:
    """method="exp2": ``z = RHU(d M / 2^E)`` ~ ``d S log2(e) 2^K``, the cap ``D`` (``d >= D``
    gives z >= 17 2^K, an exponential below 2^-17: output 0) and the two 32-entry Q15 tables of
    ``2^(-j/32)`` and ``2^(-j/1024)``."""
    k = EXP2_FRAC_BITS
    m, e = _rhaz_mantissa(np.float64(s) * math.log2(math.e) * 2.0 ** k, 31)
    m, e = int(m), int(e)
    if not 1 <= e <= 62:
        raise ValueError(f"x_scale={s:.6g} is outside the exp2 softmax's fixed-point range "
                         f"(x_scale log2(e) 2^{k} must be in [2^-31, 2^30))")
    cap = -((-(17 << (k + e))) // m)          # ceil(17 2^(K+E) / M)
    if cap > 2 ** 31 - 1:
        raise ValueError(f"x_scale={s:.6g} is too small for the exp2 softmax: a score difference "
                         f"of 2^31 steps must reach exp(-12) (x_scale above about 5.5e-9)")
    j = np.arange(32, dtype=np.float64)
    table = np.rint(32768.0 * np.exp2(-np.concatenate([j / 32, j / 1024]))).astype(np.int32)
    table.setflags(write=False)
    return m, e, cap, table


def _ibert_softmax_consts(s: np.ndarray) -> Tuple[np.ndarray, ...]:
    """I-BERT IntSoftmax's integer constants, in float32 exactly as its PyTorch code."""
    with np.errstate(over="ignore", divide="ignore"):
        inv = (_F32(1) / s).astype(np.float32)                              # reciprocal(S)
        x0 = np.floor(inv * _F32(-0.6931))                                   # x0 / S
        b = np.floor(inv * _F32(0.96963238 / 0.35815147))                    # coef[1] / S
        c = np.floor((_F32(1) / (s * s)).astype(np.float32) * _F32(1.0 / 0.35815147))
    return x0.astype(np.float64), b.astype(np.float64), c.astype(np.float64)


def prepare_softmax(x_scale: ArrayLike, *, method: str = "ibert", output: str = "uint8",
                    rounding: str = "floor") -> SoftmaxParams:
    """Prepare the integer softmax once (all float work; the kernel is integer-only).

    Methods (``x_scale`` is the scale of the integer input: int8/uint8 scores, or the int32
    accumulators of ``Q K^T`` with the ``1/sqrt(d)`` folded into the scale):

    - ``"ibert"`` (I-BERT, Algorithms 1-3): ``x0 = floor(-0.6931 / S)``, ``b``, ``c`` of the
      polynomial ``0.35815147 (r + b)^2 + 1`` (float32 as I-BERT's code), the exponent
      requantized to 16 bits (``QuantAct(16)`` calibrated on its maximum), then
      ``floor(V * floor(2^32 / sum V) / 2^24)``. Needs ``3.6e-5 <= x_scale <= 1.6``
      (``1 <= c < 2^31``).
    - ``"sole"`` (SOLE E2Softmax): ``k = -floor(1.4375 (x - max) S)`` by shifts and adds, 4 bits
      (``rounding="round"``: rounded instead of floored), ``V = 2^(16-k)``, the sum's leading
      one ``w`` and the bit below it pick ``0.818`` or ``0.568``: ``p = C 2^-(k + w - 16)``.
    - ``"lut"`` (8-bit input only): ``V = round(2^15 exp(-(max - x) S))`` from a 256-entry
      table, I-BERT's normalization with rounding.
    - ``"exp2"`` (``output="rowmax"``, one ``x_scale``): the row's exponentials scaled so the
      row maximum is 255, rounded: ``d = max - x``, ``z = RHU(d M / 2^E)`` (``M / 2^E ~ S log2(e)
      2^10``), ``f = z mod 2^10``, ``e = RHU(T[f >> 5] T[32 + f mod 32] / 2^15)`` with ``T[j] =
      RNE(2^15 2^(-j/32))``, ``T[32 + j] = RNE(2^15 2^(-j/1024))``, ``P = RHU(255 e / 2^(15 +
      floor(z / 2^10)))``; 0 where ``d >= cap`` (the exponential is below 2^-17). No division:
      ``P`` is ``exp(x - max)`` on the step 1/255, the row's probabilities up to the row's factor;
      the consumer normalises by the row sum (``P V / sum_j P``, exact and scale-free).

    ``output="uint8"``: probabilities of scale 1/256 (``out_scale``), 255 at most (a power of two:
    ``P V`` requantizes with a shift; only p = 1 saturates, to 255/256). ``output="log2"``
    (``sole`` only): the exponent ``e`` per element and the row's ALDivision bit.
    ``output="rowmax"`` (``exp2`` only): unnormalised uint8 exponentials, the row maximum 255.

    Example:
        >>> import qkernels
        >>> p = qkernels.prepare_softmax(0.05, method="ibert")
        >>> int(p.x0), int(p.b), int(p.c)
        (-14, 54, 1116)
    """
    _choice(method, SOFTMAX_METHODS, "method")
    _choice(output, SOFTMAX_OUTPUTS, "output")
    if output == "log2" and method != "sole":
        raise ValueError("output='log2' is SOLE's form (method='sole'); ibert and lut write "
                         "uint8 probabilities")
    if (output == "rowmax") != (method == "exp2"):
        raise ValueError("method='exp2' writes output='rowmax' (the row's exponentials, its "
                         "maximum at 255), and only it does")
    rnd = _choice(rounding, SOLE_ROUNDINGS, "rounding") if method == "sole" else None
    s = _scales(x_scale, "x_scale")
    if method == "exp2":
        if s.ndim != 0:
            raise ValueError("method 'exp2' takes one x_scale (a scalar)")
        m, e, cap, table = _exp2_consts(float(s))
        return SoftmaxParams("exp2", output, None, s, exp2_mult=m, exp2_shift=e, exp2_cap=cap,
                             exp2_table=table)
    if method == "ibert":
        x0, b, c = _ibert_softmax_consts(s)
        bad = ~((c >= 1) & (c <= 2.0 ** 31 - 1) & (-x0 * (-x0 + b) + c < 2.0 ** 32))
        if bad.any():
            v = s.reshape(-1)[int(np.argmax(bad.reshape(-1)))]
            raise ValueError(f"x_scale={float(v):.6g} is outside I-BERT's integer range: the "
                             f"polynomial constant c = floor(2.792 / x_scale^2) must be in "
                             f"[1, 2^31) (x_scale between about 3.6e-5 and 1.6)")
        m16, e16 = _rhaz_mantissa(32767.0 / (c * 2.0 ** 30), 31)
        return SoftmaxParams("ibert", output, None, s, x0=x0.astype(np.int64),
                             b=b.astype(np.int64), c=c.astype(np.int64),
                             m16=m16.astype(np.int32), e16=e16.astype(np.int32))
    if method == "sole":
        mant, ex = np.frexp(s.astype(np.float64))
        mult = np.floor(mant * 2.0 ** 30 + 0.5)
        shift = 14 - ex
        bad = (shift < 0) | (shift > 62)
        if bad.any():
            v = s.reshape(-1)[int(np.argmax(bad.reshape(-1)))]
            raise ValueError(f"x_scale={float(v):.6g} is outside SOLE's fixed-point range "
                             f"[2^-48, 2^14)")
        return SoftmaxParams("sole", output, rnd, s, sole_mult=mult.astype(np.int32),
                             sole_shift=shift.astype(np.int32),
                             sole_round=np.full(s.shape, 1 if rnd == "round" else 0, np.int32))
    d = np.arange(256, dtype=np.float64)
    lut = np.floor(32768.0 * np.exp(-d * s.astype(np.float64)[..., None]) + 0.5)
    return SoftmaxParams("lut", output, None, s, lut=lut.astype(np.uint32))


def _softmax_input(x: Any, params: SoftmaxParams) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype not in (np.uint8, np.int8, np.int32):
        raise TypeError(f"x must be a uint8, int8 or int32 array (quantized scores), got dtype "
                        f"{a.dtype}")
    if a.dtype == np.int32 and params.method == "lut":
        raise TypeError("method 'lut' indexes a 256-entry table: x must be uint8 or int8")
    if a.ndim < 1:
        raise ValueError("x must have at least one dimension (the softmax axis is the last)")
    if params.x_scale.ndim == 0:          # one set of parameters: every x fits (the fast check)
        return a
    lead = a.shape[:-1]
    try:
        b = np.broadcast_shapes(lead, params.x_scale.shape)
    except ValueError:
        b = None
    if b != lead:
        raise ValueError(f"the prepared parameters of shape {params.x_scale.shape} do not "
                         f"broadcast to the rows of x {lead}")
    return a


def qsoftmax(x: ArrayLike, params: SoftmaxParams, *,
             out: Optional[np.ndarray] = None) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
    """Integer softmax over the last axis (rows of ``x``), with prepared :class:`SoftmaxParams`.

    Returns uint8 probabilities of scale 1/256 (``output="uint8"``), or for SOLE's
    ``output="log2"`` a pair ``(exponent, row_bit)``: ``p = (0.568 if row_bit else 0.818) *
    2^-exponent``. Zero points do not matter (softmax is shift invariant). The kernel is
    integer-only C; 8-bit input evaluates the method's arithmetic once for each of the 256 row
    differences and looks it up (same integers).

    Example:
        >>> import numpy as np, qkernels
        >>> x = np.array([[10, 0, -10, -128]], np.int8)
        >>> qkernels.qsoftmax(x, qkernels.prepare_softmax(0.1))
        array([[169,  62,  23,   0]], dtype=uint8)
        >>> qkernels.qsoftmax(x, qkernels.prepare_softmax(0.1, method="exp2", output="rowmax"))
        array([[255,  94,  35,   0]], dtype=uint8)
    """
    if not isinstance(params, SoftmaxParams):
        raise TypeError(f"params must be SoftmaxParams (qkernels.prepare_softmax), got "
                        f"{type(params).__name__}")
    a = _softmax_input(x, params)
    if params.method == "exp2":
        C.check_out(out, a.shape, np.dtype(np.uint8))
        if a.size == 0:
            return np.empty(a.shape, np.uint8) if out is None else out
        y = out if (out is not None and out.flags.c_contiguous) else np.empty(a.shape, np.uint8)
        _core._softmax_exp2(np.ascontiguousarray(a), params.exp2_mult, params.exp2_shift,
                            params.exp2_cap, params.exp2_table, y)
        return _finish(y, out)
    if params.output == "log2":
        if out is not None:
            raise ValueError("out= is not supported with output='log2' (two outputs)")
        with np.errstate(invalid="raise"):
            return _core.softmax_sole_log2(a, params.sole_mult, params.sole_shift,
                                           params.sole_round)
    C.check_out(out, a.shape, np.dtype(np.uint8))
    if (params.method != "lut" and params.x_scale.ndim == 0 and a.size and a.flags.c_contiguous
            and (out is None or out.flags.c_contiguous)):
        # one set of parameters over a contiguous array: one kernel call (no gufunc loop)
        y = np.empty(a.shape, np.uint8) if out is None else out
        if params.method == "ibert":
            _core._softmax_run(a, 0, int(params.x0), int(params.b), int(params.c),
                               int(params.m16), int(params.e16), y)
        else:
            _core._softmax_run(a, 1, int(params.sole_mult), int(params.sole_shift),
                               int(params.sole_round), 0, 0, y)
        return y
    kw = {} if out is None else {"out": out}
    with np.errstate(invalid="raise"):
        if params.method == "ibert":
            return _core.softmax_ibert(a, params.x0, params.b, params.c, params.m16, params.e16,
                                       **kw)
        if params.method == "sole":
            return _core.softmax_sole(a, params.sole_mult, params.sole_shift, params.sole_round,
                                      **kw)
        return _core.softmax_lut(a, params.lut, **kw)


def softmax_dequantize(y: Union[np.ndarray, Tuple[np.ndarray, np.ndarray]],
                       params: SoftmaxParams) -> np.ndarray:
    """The float probabilities of a :func:`qsoftmax` result (float64; ``output="rowmax"``: the
    row's values over their sum).

    Example:
        >>> import numpy as np, qkernels
        >>> qkernels.softmax_dequantize(np.array([128, 64], np.uint8), qkernels.prepare_softmax(0.1))
        array([0.5 , 0.25])
    """
    if params.output == "log2":
        e, bit = y
        c = np.where(np.asarray(bit)[..., None] != 0, SOLE_CONSTANTS[1], SOLE_CONSTANTS[0])
        return c * np.ldexp(1.0, -np.asarray(e, np.int64))
    if params.output == "rowmax":
        v = np.asarray(y, np.float64)
        return v / v.sum(axis=-1, keepdims=True)
    return np.asarray(y, np.float64) * SOFTMAX_OUT_SCALE


# ---------------------------------------------------------------------------------------------
# Integer GELU
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class GeluParams:
    """Prepared parameters of :func:`qgelu` (made by :func:`prepare_gelu`).

    ``ibert``: per channel (or one value) ``b, c, shift`` (int64) and the output requantization
    ``multiplier, rshift`` (int32), with ``raw_scale`` the positive scale of I-BERT's integer
    output (before the requantization). ``lut``: the 256-byte ``table`` indexed by the input byte.
    ``interp``: per channel ``in_multiplier, in_rshift`` (to the 2^-16 grid) and ``multiplier,
    rshift`` (to the output), and the 3 x 96 int32 segment ``table``.
    """

    method: str
    x_scale: np.ndarray
    x_zero_point: int
    out_scale: Union[float, np.ndarray]
    out_zero_point: int
    out_dtype: np.dtype
    x_dtype: Optional[np.dtype] = None
    b: Optional[np.ndarray] = None
    c: Optional[np.ndarray] = None
    shift: Optional[np.ndarray] = None
    multiplier: Optional[np.ndarray] = None
    rshift: Optional[np.ndarray] = None
    raw_scale: Optional[np.ndarray] = None
    table: Optional[np.ndarray] = None
    in_multiplier: Optional[np.ndarray] = None
    in_rshift: Optional[np.ndarray] = None

    @property
    def channels(self) -> int:
        return int(self.x_scale.size)


# Below this |shift| = |floor(2^-14 / (-0.2888 S'^2))| (x_scale above ~2.9e-3) the i-GELU
# approximation degrades fast (SQNR vs GELU on normal inputs: 42 dB at x_scale 1e-3, |shift| 423;
# 40 dB at 2e-3, 106; 30 dB at 4e-3, 27; 8 dB at 0.016, 2): prepare_gelu warns.
_IBERT_GELU_MIN_SHIFT = 64


def _ibert_gelu_consts(s: np.ndarray) -> Tuple[np.ndarray, ...]:
    """I-BERT IntGELU's integer constants, float32 exactly as its PyTorch code."""
    with np.errstate(over="ignore", divide="ignore", under="ignore"):
        sp = (s / _F32(1.4142)).astype(np.float32)                    # scaling_factor / k
        sp2 = (sp * sp).astype(np.float32)
        b = np.floor((_F32(1) / sp).astype(np.float32) * _F32(-1.769))
        c = np.floor((_F32(1) / sp2).astype(np.float32) * _F32(1.0 / -0.2888))
        sig = ((sp2 * _F32(-0.2888)).astype(np.float32) * _F32(2.0 ** 14)).astype(np.float32)
        shift = np.floor((_F32(1) / sig).astype(np.float32))
        raw = ((s * sig).astype(np.float32) / _F32(2)).astype(np.float32)   # negative
    return b, c, shift, -raw


def prepare_gelu(x_scale: ArrayLike, *, method: str = "ibert", out_scale: float,
                 out_zero_point: int = 0, out_dtype: DTypeLike = np.int8,
                 x_zero_point: int = 0, x_dtype: DTypeLike = None) -> GeluParams:
    """Prepare the integer GELU once (all float work; the kernel is integer-only).

    - ``"ibert"`` (I-BERT's i-GELU, IntGELU): ``S' = S / 1.4142``, ``b = floor(-1.769 / S')``,
      ``c = floor(1 / (-0.2888 S'^2))``, ``sig = -0.2888 S'^2 2^14``, ``shift = floor(1/sig)``
      (float32 as I-BERT's code); per element ``L = floor(sign(x)((min(|x|, -b) + b)^2 + c) / 2^14)``,
      ``g = -x (L + shift)`` with the positive scale ``S |sig| / 2`` (``raw_scale``), then
      I-BERT's QuantAct requantization ``RNE(g M / 2^E) + out_zp`` (``M, E`` from
      ``raw_scale / out_scale``). ``x_scale`` may be per channel (an array along the last axis:
      a Linear's int32 accumulators with per-channel weights), and so may ``out_scale`` (an
      output step per channel, e.g. folded into the next Linear's weights). Input
      uint8/int8/int32.
    - ``"lut"``: ``table[q] = clamp(RNE(gelu((q - x_zp) S) / out_scale) + out_zp)`` for the 256
      values of ``x_dtype`` (uint8 or int8), exact erf GELU in double.
    - ``"interp"`` (int32 input, zero point 0; ``x_scale`` and ``out_scale`` per channel or one):
      ``gelu(x) = max(x, 0) - h(|x|)``, ``h(t) = t Q(t)`` (Q the normal tail) in 96 quadratic
      segments of 1/16 on [0, 6): ``u = clamp(RHU(x Mi / 2^Ei), +-(2^31 - 1))`` on the grid
      ``2^-16`` (``Mi / 2^Ei ~ S 2^16``), ``t = |u|``, ``i = t >> 12``, ``f = t mod 2^12``,
      ``w = floor(f (f - 2^12) / 2^12)``, ``h = A[i] + RHU((B[i] f + C[i] w) / 2^12)`` (0 from
      ``t = 6 2^16``), ``g = max(u, 0) - h``, ``y = clamp(RHU(g M / 2^E) + out_zp)`` (``M / 2^E
      ~ 2^-16 / out_scale``); ``A, B, C`` the quadratic through each segment's ends and middle
      (exact erfc in double, rounded). ``RHU(v / 2^e) = floor((v + 2^(e-1)) / 2^e)``. Error of
      ``g`` against GELU below ``4 2^-16`` before the output rounding. No gather: the tables sit
      in AVX-512 registers.

    Example:
        >>> import qkernels
        >>> p = qkernels.prepare_gelu(1e-3, out_scale=0.05)   # int32 sums of a Linear
        >>> int(p.b[0]), int(p.c[0]), int(p.shift[0])
        (-2502, -6925073, -423)
        >>> import numpy as np
        >>> g = qkernels.prepare_gelu(1e-3, method="interp", out_scale=0.05)
        >>> qkernels.qgelu(np.array([-3000, -1000, 0, 1000, 3000], np.int32), g)
        array([ 0, -3,  0, 17, 60], dtype=int8)
    """
    _choice(method, GELU_METHODS, "method")
    if method == "interp":
        return _prepare_gelu_interp(x_scale, out_scale, out_zero_point, out_dtype, x_zero_point,
                                    x_dtype)
    odt = _gelu_out_dtype(out_dtype)
    if method == "lut" and odt == np.int32:
        raise TypeError("method 'lut' writes 8-bit outputs (uint8 or int8)")
    os_ = _scales(out_scale, "out_scale")
    if os_.ndim != 0 and (method != "ibert" or os_.ndim != 1):
        raise ValueError("out_scale must be a scalar (or 1-D, one per channel, for method "
                         "'ibert')")
    oinfo = np.iinfo(odt)
    ozp = C._int_scalar(out_zero_point, "out_zero_point")
    if not oinfo.min <= ozp <= oinfo.max:
        raise ValueError(f"out_zero_point={ozp} is outside {odt} [{oinfo.min}, {oinfo.max}]")
    s = _scales(x_scale, "x_scale")
    xzp = C._int_scalar(x_zero_point, "x_zero_point")
    if method == "lut":
        if s.ndim != 0:
            raise ValueError("method 'lut' needs one x_scale (one table)")
        xdt = np.dtype(x_dtype if x_dtype is not None else np.int8)
        if xdt not in (np.uint8, np.int8):
            raise TypeError(f"x_dtype must be uint8 or int8 for method 'lut', got {xdt}")
        xinfo = np.iinfo(xdt)
        if not xinfo.min <= xzp <= xinfo.max:
            raise ValueError(f"x_zero_point={xzp} is outside {xdt} [{xinfo.min}, {xinfo.max}]")
        q = np.arange(256, dtype=np.uint8).view(xdt).astype(np.float64)
        v = (q - xzp) * float(s)
        g = 0.5 * v * (1.0 + np.array([math.erf(t / math.sqrt(2.0)) for t in v]))
        t = np.clip(np.rint(g / float(os_)) + ozp, oinfo.min, oinfo.max).astype(odt)
        table = np.ascontiguousarray(t)
        table.setflags(write=False)
        return GeluParams("lut", s, xzp, float(os_), ozp, odt, x_dtype=xdt, table=table)
    if x_dtype is not None:
        xdt = np.dtype(x_dtype)
        if xdt not in (np.uint8, np.int8, np.int32):
            raise TypeError(f"x_dtype must be uint8, int8 or int32, got {xdt}")
    if s.ndim > 1:
        raise ValueError(f"x_scale must be a scalar or 1-D (per channel), got shape {s.shape}")
    b, c, shift, raw = _ibert_gelu_consts(s)
    ok = ((b <= 0) & (b > -2.0 ** 30) & (c <= 0) & (c > -2.0 ** 60) & (np.abs(shift) < 2.0 ** 47)
          & np.isfinite(raw) & (raw > 0))
    if not ok.all():
        v = s.reshape(-1)[int(np.argmax(~ok.reshape(-1)))]
        raise ValueError(f"x_scale={float(v):.6g} is outside I-BERT's i-GELU integer range")
    coarse = np.abs(shift) < _IBERT_GELU_MIN_SHIFT
    if coarse.any():
        i = int(np.argmax(coarse.reshape(-1)))
        warnings.warn(
            f"x_scale={float(s.reshape(-1)[i]):.6g} is too coarse for I-BERT's i-GELU: its erf "
            f"polynomial keeps |shift| = {int(abs(shift.reshape(-1)[i]))} steps (< "
            f"{_IBERT_GELU_MIN_SHIFT}; SQNR against GELU falls from ~40 dB at x_scale 2e-3 to "
            f"30 dB at 4e-3 and below 0 dB at 0.03). I-BERT runs i-GELU on the int32 sums of the "
            f"Linear before it (x_scale ~1e-4..2e-3); for 8-bit inputs use method='lut'",
            UserWarning, stacklevel=2)
    if os_.ndim == 1 and (s.ndim != 1 or os_.size != s.size):
        raise ValueError(f"a per-channel out_scale ({os_.size} values) needs a per-channel "
                         f"x_scale of the same length; got x_scale of shape {s.shape}")
    mult, rsh = _rhaz_mantissa(raw.astype(np.float64) / os_.astype(np.float64), 31)
    bad = (rsh < 0) | (rsh > 126)
    if bad.any():
        raise ValueError("out_scale is out of range for the output requantization "
                         "(raw_scale / out_scale must be in [2^-95, 2^31))")
    vec = lambda a, t: np.ascontiguousarray(np.atleast_1d(a).astype(t))  # noqa: E731
    return GeluParams("ibert", s, xzp, float(os_) if os_.ndim == 0 else os_, ozp, odt,
                      x_dtype=None, b=vec(b, np.int64),
                      c=vec(c, np.int64), shift=vec(shift, np.int64),
                      multiplier=vec(mult, np.int32), rshift=vec(rsh, np.int32),
                      raw_scale=np.atleast_1d(raw).astype(np.float32))


def _gelu_out_dtype(out_dtype: DTypeLike) -> np.dtype:
    try:
        odt = np.dtype(out_dtype)
    except TypeError as exc:
        raise TypeError(f"out_dtype: not a dtype: {out_dtype!r}") from exc
    if odt not in (np.uint8, np.int8, np.int32):
        raise TypeError(f"out_dtype must be uint8, int8 or int32, got {odt}")
    return odt


@functools.lru_cache(maxsize=1)
def _gelu_interp_table() -> np.ndarray:
    """The 3 x 96 int32 segment constants A, B, C of method "interp" (a constant, made once)."""
    def h(t: float) -> float:            # t Q(t), Q the normal tail (exact erfc, double)
        return 0.5 * t * math.erfc(t / math.sqrt(2.0))
    d = 2.0 ** (GELU_SEGMENT_BITS - GELU_GRID_BITS)
    u = 2.0 ** GELU_GRID_BITS
    t = [i * d for i in range(GELU_SEGMENTS)]
    a = [h(v) * u for v in t]
    b = [(h(v + d) - h(v)) * u for v in t]
    c = [(2 * h(v) + 2 * h(v + d) - 4 * h(v + d / 2)) * u for v in t]
    out = np.rint(np.array([a, b, c], np.float64)).astype(np.int32).reshape(-1)
    out.setflags(write=False)
    return out


def _prepare_gelu_interp(x_scale: ArrayLike, out_scale: ArrayLike, out_zero_point: int,
                         out_dtype: DTypeLike, x_zero_point: int,
                         x_dtype: DTypeLike) -> GeluParams:
    odt = _gelu_out_dtype(out_dtype)
    if x_dtype is not None and np.dtype(x_dtype) != np.int32:
        raise TypeError(f"method 'interp' takes int32 input (a Linear's sums), got x_dtype "
                        f"{np.dtype(x_dtype)}; for 8-bit input use method='lut'")
    if C._int_scalar(x_zero_point, "x_zero_point") != 0:
        raise ValueError("method 'interp' takes int32 input with x_zero_point 0")
    oinfo = np.iinfo(odt)
    ozp = C._int_scalar(out_zero_point, "out_zero_point")
    if not oinfo.min <= ozp <= oinfo.max:
        raise ValueError(f"out_zero_point={ozp} is outside {odt} [{oinfo.min}, {oinfo.max}]")
    s = _scales(x_scale, "x_scale")
    os_ = _scales(out_scale, "out_scale")
    if s.ndim > 1 or os_.ndim > 1:
        raise ValueError("x_scale and out_scale must be scalars or 1-D (per channel)")
    if s.ndim == 1 and os_.ndim == 1 and s.size != os_.size:
        raise ValueError(f"x_scale ({s.size} channels) and out_scale ({os_.size}) differ in "
                         f"length")
    n = max(s.size if s.ndim else 1, os_.size if os_.ndim else 1)
    mi, ei = _rhaz_mantissa(np.broadcast_to(s.astype(np.float64), (n,)) * 2.0 ** GELU_GRID_BITS,
                            31)
    if ((ei < 1) | (ei > 62)).any():
        raise ValueError("x_scale is outside the interp GELU's range (x_scale 2^16 must be in "
                         "[2^-31, 2^30))")
    mo, eo = _rhaz_mantissa(2.0 ** -GELU_GRID_BITS / np.broadcast_to(os_.astype(np.float64),
                                                                      (n,)), 31)
    if ((eo < 1) | (eo > 62)).any():
        raise ValueError("out_scale is out of range for the interp GELU's output requantization "
                         "(2^-16 / out_scale must be in [2^-31, 2^30))")
    vec = lambda a: np.ascontiguousarray(a.astype(np.int32))  # noqa: E731
    return GeluParams("interp", s, 0, float(os_) if os_.ndim == 0 else os_, ozp, odt,
                      x_dtype=np.dtype(np.int32), multiplier=vec(mo), rshift=vec(eo),
                      in_multiplier=vec(mi), in_rshift=vec(ei), table=_gelu_interp_table())


def qgelu(x: ArrayLike, params: GeluParams, *, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Integer GELU with prepared :class:`GeluParams` (output of ``params.out_dtype``).

    Per-channel ``ibert`` parameters apply along the last axis. The kernel is integer-only C.

    Raises:
        TypeError / ValueError: a wrong input dtype, a last axis that does not match the
            per-channel parameters, or an int32 input whose scale makes ``x (L + shift)`` leave
            int64 (the message says which).

    Example:
        >>> import numpy as np, qkernels
        >>> p = qkernels.prepare_gelu(0.05, method="lut", out_scale=0.05)
        >>> qkernels.qgelu(np.array([-60, -20, 0, 20, 60], np.int8), p)
        array([ 0, -3,  0, 17, 60], dtype=int8)
    """
    if not isinstance(params, GeluParams):
        raise TypeError(f"params must be GeluParams (qkernels.prepare_gelu), got "
                        f"{type(params).__name__}")
    a = np.asarray(x)
    if params.method == "interp":
        return _qgelu_interp(a, params, out)
    if params.method == "lut":
        if a.dtype != params.x_dtype:
            raise TypeError(f"x must be {params.x_dtype} (the table was prepared for it), got "
                            f"{a.dtype}")
        C.check_out(out, a.shape, params.out_dtype)
        kw = {} if out is None else {"out": out}
        return _core.gelu_lut(a, params.table, **kw)
    if a.dtype not in (np.uint8, np.int8, np.int32):
        raise TypeError(f"x must be a uint8, int8 or int32 array, got dtype {a.dtype}")
    info = np.iinfo(a.dtype)
    if a.dtype != np.int32 and not info.min <= params.x_zero_point <= info.max:
        raise ValueError(f"x_zero_point={params.x_zero_point} is outside {a.dtype}")
    ch = params.channels
    if ch > 1 and (a.ndim < 1 or a.shape[-1] != ch):
        raise ValueError(f"x has shape {a.shape}; its last axis must have {ch} channels (the "
                         f"per-channel x_scale)")
    C.check_out(out, a.shape, params.out_dtype)
    oinfo = np.iinfo(params.out_dtype)
    y = out if (out is not None and out.flags.c_contiguous) else np.empty(a.shape, params.out_dtype)
    # one C call over the contiguous array (the parameters are checked once, not once a row as
    # the ufunc gelu_ibert's inner loops would); the kernel checks its parameters before it
    # writes anything, and a refusal is explained here (the int64 bound), not on every call
    try:
        _core._gelu_ibert(np.ascontiguousarray(a), params.b, params.c, params.shift,
                          params.multiplier, params.rshift, params.x_zero_point,
                          params.out_zero_point, int(oinfo.min), int(oinfo.max), y)
    except ValueError:
        _gelu_bound(params, a.dtype)
        raise
    return _finish(y, out)


def _qgelu_interp(a: np.ndarray, p: GeluParams, out: Optional[np.ndarray]) -> np.ndarray:
    if a.dtype != np.int32:
        raise TypeError(f"method 'interp' takes int32 input (a Linear's sums), got dtype "
                        f"{a.dtype}")
    ch = p.in_multiplier.size
    if ch > 1 and (a.ndim < 1 or a.shape[-1] != ch):
        raise ValueError(f"x has shape {a.shape}; its last axis must have {ch} channels (the "
                         f"per-channel scales)")
    C.check_out(out, a.shape, p.out_dtype)
    oinfo = np.iinfo(p.out_dtype)
    y = out if (out is not None and out.flags.c_contiguous) else np.empty(a.shape, p.out_dtype)
    if a.size:
        _core._gelu_interp(np.ascontiguousarray(a), p.in_multiplier, p.in_rshift, p.multiplier,
                           p.rshift, p.table, p.out_zero_point, int(oinfo.min), int(oinfo.max),
                           y)
    return _finish(y, out)


def _gelu_bound(p: GeluParams, xdt: np.dtype) -> None:
    """The kernel's int64 bound (qkernels.h), checked here to raise a message that says why."""
    info = np.iinfo(xdt)
    xmax = float(max(p.x_zero_point - int(info.min), int(info.max) - p.x_zero_point))
    if xdt == np.int32:
        xmax = 2.0 ** 31 + abs(p.x_zero_point)
    bb = -p.b.astype(np.float64)
    ymag = np.floor(np.maximum(bb * bb, -p.c.astype(np.float64)) / 2.0 ** 14) + 1
    mag = ymag + np.abs(p.shift.astype(np.float64)) + 1
    bad = mag > 2.0 ** 62 / xmax
    if bad.any():
        v = p.x_scale.reshape(-1)[int(np.argmax(bad))]
        raise ValueError(f"x_scale={float(v):.6g} is too small for {xdt} input: x * (L + shift) "
                         f"can leave int64 (I-BERT's i-GELU needs x_scale above about 1e-6 for "
                         f"int32 input)")


# ---- per-row (per-token) dynamic 8-bit quantization of an integer tensor ------------------------
#: Mantissa bits of the per-row range: the row's bound ``U = (j + 1) 2^e`` with ``j`` the top
#: ``ROW_MANT_BITS + 1`` bits of the row's integer maximum (``j`` in 1..31 for 4 bits).
ROW_MANT_BITS = 4
_ROW_J = np.arange(1 << (ROW_MANT_BITS + 1), dtype=np.float64)   # index j (0 unused)


def _row_table(ratio: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    from ._elementwise import quantize_multiplier
    m, sh = quantize_multiplier(ratio)
    return np.ascontiguousarray(m, np.int32), np.ascontiguousarray(sh, np.int32)


def _row_input(d: ArrayLike, name: str = "d") -> np.ndarray:
    """``d`` as a C-contiguous int16 / int32 array with a non-empty last axis (int8 / uint8
    widened to int16: the same values)."""
    a = np.asarray(d)
    if a.dtype not in (np.int8, np.uint8, np.int16, np.int32):
        raise TypeError(f"{name} must be an integer array (int8/uint8/int16/int32), got "
                        f"{a.dtype}")
    if a.ndim < 1 or a.shape[-1] == 0:
        raise ValueError(f"{name} must have a non-empty last axis, got shape {a.shape}")
    if a.dtype in (np.int8, np.uint8):
        a = a.astype(np.int16)
    return np.ascontiguousarray(a)


def row_range(d: ArrayLike) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The per-row range code of an integer tensor (rows: all axes but the last), integers only.

    ``lo_r = min(0, min_c d_rc)``, ``hi_r = max(0, max_c d_rc)`` (the range holds 0, as an
    asymmetric quantization's does); ``m_r = max(1, hi_r - lo_r)``; ``b = bitlen(m_r)`` (a
    leading-zero count); ``e_r = max(0, b - 1 - ROW_MANT_BITS)``; ``j_r = m_r >> e_r`` (1..31:
    the range's top 5 bits). The row's bound ``U_r = (j_r + 1) 2^e_r > hi_r - lo_r``. Returns
    ``(lo, j, e)`` as int64 / int32 / int32 arrays of shape ``d.shape[:-1] + (1,)``
    (broadcastable against ``d``). The kernel is C (``qk_row_range_s16`` / ``_s32``).

    Example:
        >>> import numpy as np, qkernels.transformer as T
        >>> lo, j, e = T.row_range(np.array([[3, -40], [1000, 7]], np.int32))
        >>> lo.ravel().tolist(), j.ravel().tolist(), e.ravel().tolist()
        ([-40, 0], [21, 31], [1, 5])
    """
    a = _row_input(d)
    shape = a.shape[:-1] + (1,)
    lo = np.empty(shape, np.int64)
    j = np.empty(shape, np.int32)
    e = np.empty(shape, np.int32)
    _core._row_range(a, lo, j, e)
    return lo, j, e


def row_quantize(d: ArrayLike, *, threads: Optional[int] = None
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-row (per-token) dynamic asymmetric uint8 quantization of an integer tensor, integer
    arithmetic only.

    With ``(lo, j, e) = row_range(d)``, ``(M_j, S_j) = quantize_multiplier(255 / (j + 1))`` (a
    32-entry table) and ``s = S_j - e``, each row gets the step ``U / 255`` units of ``d``
    (``U = (j + 1) 2^e``) and the zero point ``z = clamp(R(-lo), 0, 255)``, then ``x =
    clamp(R(d) + z, 0, 255)`` with ``R(v) = (v M_j + 2^(30 - s)) >> (31 - s)`` (fixed point,
    single rounding, int64 exact: :func:`qkernels.requantize` with one multiplier per row):
    ``x ~= round(d 255 / U) + z``. A Linear on ``x`` subtracts ``z sum_c W_c`` per row and
    :func:`row_rescale` undoes the step. One C pass a row (``qk_row_quantize_s16`` / ``_s32``:
    the range, the code, the quantization); ``threads`` splits the rows (same integers).

    Returns ``(x, z, j, e)``: ``x`` uint8 of ``d``'s shape, ``z`` (int32), ``j``, ``e`` per row.

    Example:
        >>> import numpy as np, qkernels.transformer as T
        >>> x, z, j, e = T.row_quantize(np.array([[3, -40], [1000, 7]], np.int32))
        >>> x.tolist(), z.ravel().tolist()
        ([[249, 0], [249, 2]], [232, 0])
    """
    a = _row_input(d)
    shape = a.shape[:-1] + (1,)
    x = np.empty(a.shape, np.uint8)
    z = np.empty(shape, np.int32)
    j = np.empty(shape, np.int32)
    e = np.empty(shape, np.int32)
    _core._row_quantize(a, x, z, j, e, C.threads(threads))
    return x, z, j, e


def row_rescale_params(p: int) -> Tuple[np.ndarray, np.ndarray]:
    """The 32-entry table of :func:`row_rescale`: ``quantize_multiplier((j + 1) / 255 / 2^p)``.

    Example:
        >>> import qkernels.transformer as T
        >>> m, s = T.row_rescale_params(0)
        >>> int(m[31]), int(s[31])
        (1077952576, -2)
    """
    if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or not 0 <= int(p) <= 24:
        raise ValueError(f"p must be an int in 0..24, got {p!r}")
    return _row_table((_ROW_J + 1.0) / 255.0 / 2.0 ** int(p))


@dataclass(frozen=True, eq=False)
class RowRescale:
    """A prepared :func:`row_rescale` (made by :func:`prepare_row_rescale`): the per-row rescale
    table, the per-column ``wsum`` / ``bias`` and the optional output stage, checked once; call it
    as ``rr(acc, j, e, z=None, threads=None)``."""

    channels: int
    mt: np.ndarray
    st: np.ndarray
    wsum: Optional[np.ndarray] = None
    bias: Optional[np.ndarray] = None
    out_multiplier: Optional[np.ndarray] = None
    out_shift: Optional[np.ndarray] = None
    out_zero_point: int = 0
    out_dtype: np.dtype = np.dtype(np.int32)

    def __call__(self, acc: ArrayLike, j: np.ndarray, e: np.ndarray,
                 z: Optional[np.ndarray] = None, *, threads: Optional[int] = None) -> np.ndarray:
        a = acc if type(acc) is np.ndarray and acc.dtype == np.int32 else \
            C.int32_input(acc, "acc")   # no silent wrap: values outside int32 are refused
        if a.ndim < 1 or a.shape[-1] != self.channels:
            raise ValueError(f"acc has shape {a.shape}; its last axis must have "
                             f"{self.channels} columns")
        a = np.ascontiguousarray(a)
        rows = a.size // self.channels

        def per_row(v: Any, name: str) -> np.ndarray:
            r = np.ascontiguousarray(v, np.int32).reshape(-1)
            if r.size != rows:
                raise ValueError(f"{name} must have one value per row of acc ({rows}), got "
                                 f"{r.size}")
            return r

        if (z is None) != (self.wsum is None):
            raise ValueError("z and wsum go together (the zero point's term z sum_c W_c)")
        y = np.empty(a.shape, self.out_dtype)
        _core._row_rescale(a, None if z is None else per_row(z, "z"), self.wsum,
                           per_row(j, "j"), per_row(e, "e"), self.mt, self.st, self.bias,
                           self.out_multiplier, self.out_shift, self.out_zero_point, y,
                           C.threads(threads))
        return y


def prepare_row_rescale(table: Tuple[np.ndarray, np.ndarray], channels: int, *,
                        wsum: Optional[ArrayLike] = None, bias: Optional[ArrayLike] = None,
                        out_multiplier: Optional[ArrayLike] = None,
                        out_shift: Optional[ArrayLike] = None, out_zero_point: int = 0,
                        out_dtype: DTypeLike = np.int8) -> RowRescale:
    """:func:`row_rescale` with its per-column parameters checked once (``channels``: the sums'
    last axis). With ``out_multiplier`` and ``out_shift`` (one value or one per column) the
    rescaled int32 then goes through the Linear's output stage in the same pass:
    ``requantize(v, out_multiplier, out_shift, out_zero_point, scheme="single_round",
    dtype=out_dtype, axis=-1)`` (uint8 or int8).

    Example:
        >>> import numpy as np, qkernels.transformer as T
        >>> x, z, j, e = T.row_quantize(np.array([[3, -40], [1000, 7]], np.int32))
        >>> rr = T.prepare_row_rescale(T.row_rescale_params(0), 2, wsum=[2, 2],
        ...                            out_multiplier=1 << 30, out_shift=-2)
        >>> acc = x.astype(np.int32).sum(axis=1, keepdims=True).repeat(2, 1)   # W = ones
        >>> rr(acc, j, e, z).tolist()
        [[-5, -5], [126, 126]]
    """
    n = C._int_scalar(channels, "channels")
    if n < 1:
        raise ValueError(f"channels must be >= 1, got {n}")
    mt, st = (np.ascontiguousarray(t, np.int32) for t in table)
    if mt.shape != (32,) or st.shape != (32,):
        raise ValueError("table must be row_rescale_params(p): two arrays of 32 entries")

    def col(v: Any, name: str, lo: int, hi: int) -> Optional[np.ndarray]:
        if v is None:
            return None
        a = np.asarray(v)
        if a.dtype.kind not in "iu":
            raise TypeError(f"{name} must be integers, got dtype {a.dtype}")
        a = np.broadcast_to(a.astype(np.int64), (n,)) if a.ndim == 0 else \
            a.astype(np.int64).reshape(-1)
        if a.shape != (n,):
            raise ValueError(f"{name} must have one value per column ({n}), got shape "
                             f"{np.shape(v)}")
        if a.size and (a.min() < lo or a.max() > hi):
            raise ValueError(f"{name} must be in [{lo}, {hi}]")
        return np.ascontiguousarray(a, np.int32)

    if (out_multiplier is None) != (out_shift is None):
        raise ValueError("out_multiplier and out_shift go together (the output stage)")
    odt = np.dtype(np.int32)
    ozp = 0
    if out_multiplier is not None:
        odt = np.dtype(out_dtype)
        if odt not in (np.uint8, np.int8):
            raise TypeError(f"out_dtype must be uint8 or int8, got {odt}")
        ozp = C._int_scalar(out_zero_point, "out_zero_point")
        info = np.iinfo(odt)
        if not info.min <= ozp <= info.max:
            raise ValueError(f"out_zero_point={ozp} is outside {odt}")
    i32 = (-2 ** 31, 2 ** 31 - 1)
    return RowRescale(n, mt, st, col(wsum, "wsum", *i32), col(bias, "bias", *i32),
                      col(out_multiplier, "out_multiplier", 0, 2 ** 31 - 1),
                      col(out_shift, "out_shift", -31, 30), ozp, odt)


class LinearRows:
    """A token-rows Linear in one C operator (made by :func:`prepare_linear_rows`): the uint8
    rows' int32 sums ``linear_int32(x, W)`` with the :class:`RowRescale` pass fused into the
    GEMM's output stage (``qk_linear_rows``: each block of rows rescaled while its tiles are in
    cache, no int32 sums array). The same integers as ``rr(linear_int32(x, W), j, e, z)``; call
    it as ``lr(x, j, e, z=None, threads=None)`` with ``x`` uint8 (..., K), row_quantize's ``x``.
    """

    __slots__ = ("packed", "rescale", "_cap", "_args")

    def __init__(self, packed: Any, rescale: RowRescale) -> None:
        self.packed = packed
        self.rescale = rescale
        self._cap = packed._cap
        r = rescale
        self._args = (r.mt, r.st, r.bias, r.out_multiplier, r.out_shift, r.out_zero_point)

    def __call__(self, x: np.ndarray, j: np.ndarray, e: np.ndarray,
                 z: Optional[np.ndarray] = None, *, threads: Optional[int] = None) -> np.ndarray:
        k, n = self.packed.k, self.rescale.channels
        if type(x) is not np.ndarray or x.dtype != np.uint8:
            raise TypeError(f"x must be a uint8 array (row_quantize's x), got "
                            f"{getattr(x, 'dtype', type(x).__name__)}")
        if x.ndim < 1 or x.shape[-1] != k:
            raise ValueError(f"x has shape {x.shape}; its last axis must have {k} columns")
        x2 = np.ascontiguousarray(x).reshape(-1, k)
        rows = x2.shape[0]

        def per_row(v: Any, name: str) -> np.ndarray:
            r = np.ascontiguousarray(v, np.int32).reshape(-1)
            if r.size != rows:
                raise ValueError(f"{name} must have one value per row of x ({rows}), got "
                                 f"{r.size}")
            return r

        if (z is None) != (self.rescale.wsum is None):
            raise ValueError("z and wsum go together (the zero point's term z sum_c W_c)")
        y = np.empty(x.shape[:-1] + (n,), self.rescale.out_dtype)
        mt, st, bias, om, os_, ozp = self._args
        _core._linear_rows(self._cap, x2, None if z is None else per_row(z, "z"),
                           self.rescale.wsum, per_row(j, "j"), per_row(e, "e"), mt, st, bias,
                           om, os_, ozp, y, C.threads(threads))
        return y


def prepare_linear_rows(packed: Any, table: Tuple[np.ndarray, np.ndarray], *,
                        wsum: Optional[ArrayLike] = None, bias: Optional[ArrayLike] = None,
                        out_multiplier: Optional[ArrayLike] = None,
                        out_shift: Optional[ArrayLike] = None, out_zero_point: int = 0,
                        out_dtype: DTypeLike = np.int8) -> LinearRows:
    """A token-rows Linear, its sums and their :func:`row_rescale` in one C operator:
    ``prepare_row_rescale(table, N, wsum=..., ...)(linear_int32(x, W), j, e, z)`` to the bit, the
    rescale being the GEMM's output stage (no int32 sums array, one pass less over memory).
    ``packed``: :func:`qkernels.pack_linear`'s weights (N x K, zero point 0 or not); the other
    arguments those of :func:`prepare_row_rescale` (checked once, the same errors). The uint8
    rows' int32 accumulator bound is checked here (AccumulatorOverflowError).

    Example:
        >>> import numpy as np, qkernels, qkernels.transformer as T
        >>> w = np.ones((2, 2), np.int8)
        >>> lr = T.prepare_linear_rows(qkernels.pack_linear(w), T.row_rescale_params(0),
        ...                            wsum=w.sum(1, dtype=np.int32))
        >>> x, z, j, e = T.row_quantize(np.array([[3, -40], [1000, 7]], np.int32))
        >>> lr(x, j, e, z).tolist()
        [[-37, -37], [1008, 1008]]
    """
    from .linear import PackedLinear, _bound_check

    if not isinstance(packed, PackedLinear):
        raise TypeError(f"packed must be a PackedLinear (qkernels.pack_linear), got "
                        f"{type(packed).__name__}")
    rr = prepare_row_rescale(table, packed.out_channels, wsum=wsum, bias=bias,
                             out_multiplier=out_multiplier, out_shift=out_shift,
                             out_zero_point=out_zero_point, out_dtype=out_dtype)
    _bound_check(packed, np.dtype(np.uint8), 0, None, "raise")
    return LinearRows(packed, rr)


def row_rescale(acc: ArrayLike, j: np.ndarray, e: np.ndarray,
                table: Tuple[np.ndarray, np.ndarray], *, z: Optional[np.ndarray] = None,
                wsum: Optional[np.ndarray] = None, bias: Optional[np.ndarray] = None,
                threads: Optional[int] = None) -> np.ndarray:
    """A Linear's int32 sums over :func:`row_quantize`'s ``x``, with the row's zero point taken
    out (``acc - z sum_c W_c``), brought back to the units ``2^p`` of ``d`` (``table =
    row_rescale_params(p)``): ``clamp((acc M_j + 2^(30 - s)) >> (31 - s))`` to int32 with ``s =
    S_j + e`` (fixed point, single rounding, one multiplier per row): ``~= round(acc U / 255 /
    2^p) = round(sum_c W_c d_c / 2^p)`` up to the input's rounding. Saturates at int32's limits
    (the caller's ``p`` keeps calibrated ranges inside).

    Fused, one C pass over the sums (``qk_row_rescale``): with ``z`` (per row) and ``wsum``
    (``sum_c W_c`` per output column, int32) ``acc`` is the raw sums and ``acc - z wsum`` is
    formed in int64 (a value outside int32 raises); with ``bias`` (int32 per column) the result
    is ``clamp(rescaled + bias)`` to int32. ``threads`` splits the rows (same integers).
    :func:`prepare_row_rescale` checks the per-column parameters once (and adds the Linear's
    output stage).

    Example:
        >>> import numpy as np, qkernels.transformer as T
        >>> d = np.array([[3, -40], [1000, 7]], np.int32)
        >>> x, z, j, e = T.row_quantize(d)
        >>> T.row_rescale(x.astype(np.int32) - z, j, e, T.row_rescale_params(0)).tolist()
        [[3, -40], [1000, 8]]
    """
    a = C.int32_input(acc, "acc")   # no silent wrap: values outside int32 are refused
    if a.ndim < 1 or a.shape[-1] == 0:
        raise ValueError(f"acc must have a non-empty last axis, got shape {a.shape}")
    if (z is None) != (wsum is None):
        raise ValueError("z and wsum go together (the zero point's term z sum_c W_c)")
    n = a.shape[-1]
    for v, name in ((wsum, "wsum"), (bias, "bias")):
        if v is not None and np.size(v) != n:
            raise ValueError(f"{name} must have one value per column of acc ({n}), got "
                             f"{np.size(v)}")
    return prepare_row_rescale(table, n, wsum=wsum, bias=bias)(a, j, e, z, threads=threads)


def row_renorm(acc: ArrayLike, p: ArrayLike, *, threads: Optional[int] = None) -> np.ndarray:
    """The attention's ``P V`` normalized by the row sums of the integer probabilities: per row
    ``r`` (all axes but the last; ``acc``'s rows are ``p``'s rows), ``rs = sum_j p[r, j]``
    (int64) and ``t = floor((2^9 acc + rs) / (2 rs))`` as int32: ``round(2^8 acc / rs)``, half
    up, exactly floor division's integer. One C pass a row (``qk_row_renorm``: IEEE double
    division then floor on AVX-512 / AVX2 / scalar, exact as its comment shows; int64 division
    for rows summing to 2^40 or more); ``threads`` splits the rows (same integers).

    ``acc`` int32 (other integer dtypes when every value fits), ``p`` uint8 with ``acc``'s axes
    but the last. A row of ``p`` summing to 0 raises ValueError (a softmax row never does: its
    max maps to >= 1); a ``t`` outside int32 raises OverflowError (never within the blocks:
    ``|acc| <= 255 rs`` there).

    Example:
        >>> import numpy as np, qkernels.transformer as T
        >>> p = np.array([[200, 40, 0], [1, 0, 0]], np.uint8)
        >>> T.row_renorm(np.array([[480, -481], [3, -3]], np.int32), p).tolist()
        [[512, -513], [768, -768]]
    """
    a = acc if type(acc) is np.ndarray and acc.dtype == np.int32 else C.int32_input(acc, "acc")
    q = np.asarray(p)
    if q.dtype != np.uint8:
        raise TypeError(f"p must be a uint8 array (the probabilities), got dtype {q.dtype}")
    if a.ndim < 1 or q.ndim != a.ndim or q.shape[:-1] != a.shape[:-1]:
        raise ValueError(f"acc {a.shape} and p {q.shape} must have the same axes but the last "
                         f"(one row of acc per row of p)")
    if a.shape[-1] == 0 or q.shape[-1] == 0:
        raise ValueError(f"acc {a.shape} and p {q.shape} must have non-empty last axes")
    a = np.ascontiguousarray(a)
    y = np.empty(a.shape, np.int32)
    _core._row_renorm(a, np.ascontiguousarray(q), y, C.threads(threads))
    return y


# ---- the residual add of the integer transformer blocks -----------------------------------------
_RES_DTYPES = (np.dtype(np.uint8), np.dtype(np.int8), np.dtype(np.int16))


@dataclass(frozen=True, eq=False)
class ResidualAdd:
    """A prepared :func:`prepare_residual_add`: call it as ``ra(acc, r, threads=None)``.

    Per-column parameters (int32, ``channels`` each): ``acc_multiplier``, ``acc_shift``,
    ``r_multiplier``, ``r_shift``, ``out_shift``."""

    channels: int
    acc_multiplier: np.ndarray
    acc_shift: np.ndarray
    r_multiplier: np.ndarray
    r_shift: np.ndarray
    out_shift: np.ndarray
    r_dtype: np.dtype
    r_zero_point: int
    out_dtype: np.dtype
    out_zero_point: int

    def __call__(self, acc: ArrayLike, r: ArrayLike, *,
                 threads: Optional[int] = None) -> np.ndarray:
        a = np.ascontiguousarray(C.int32_input(acc, "acc"))
        rr = np.ascontiguousarray(r)
        if rr.dtype != self.r_dtype:
            raise TypeError(f"r must be {self.r_dtype} (as prepared), got {rr.dtype}")
        if a.shape != rr.shape:
            raise ValueError(f"acc and r must have one shape, got {a.shape} and {rr.shape}")
        if a.ndim < 1 or a.shape[-1] != self.channels:
            raise ValueError(f"acc has shape {a.shape}; its last axis must have "
                             f"{self.channels} channels")
        y = np.empty(a.shape, self.out_dtype)
        _core._residual_add(a, rr, self.r_zero_point, self.acc_multiplier, self.acc_shift,
                            self.r_multiplier, self.r_shift, self.out_shift,
                            self.out_zero_point, y, C.threads(threads))
        return y


def prepare_residual_add(acc_multiplier: ArrayLike, acc_shift: ArrayLike,
                         r_multiplier: ArrayLike, r_shift: ArrayLike, out_shift: ArrayLike, *,
                         channels: int, r_dtype: DTypeLike, r_zero_point: int = 0,
                         out_dtype: DTypeLike, out_zero_point: int = 0) -> ResidualAdd:
    """The residual add of the integer transformer blocks (a Linear's int32 sums plus the
    residual, brought to a LayerNorm's input), one C pass (``qk_residual_add``): per column c

    ``a = requantize(acc, M_a, s_a, single_round, int32)``,
    ``b = requantize(r - r_zp, M_r, s_r, single_round, int32)`` (``clamp32((v M + 2^(30 - s))
    >> (31 - s))``), ``t = clamp32(a + b)``, ``y = requantize_shift(t, out_shift, out_zp,
    rounding="half_up", dtype=out_dtype)``: the same integers as those four calls. Each parameter
    is one value or one per column (``channels``); ``r`` and ``y`` are uint8, int8 or int16.
    AVX-512 / AVX2 / scalar C, same integers.

    Example:
        >>> import numpy as np, qkernels.transformer as T
        >>> ra = T.prepare_residual_add(1 << 30, 0, 1 << 30, 1, 2, channels=2,
        ...                             r_dtype=np.int8, out_dtype=np.uint8, out_zero_point=128)
        >>> ra(np.array([[40, -40]], np.int32), np.array([[3, -3]], np.int8)).tolist()
        [[134, 122]]
    """
    n = C._int_scalar(channels, "channels")
    if n < 1:
        raise ValueError(f"channels must be >= 1, got {n}")

    def col(v: Any, name: str, lo: int, hi: int) -> np.ndarray:
        a = np.asarray(v)
        if a.dtype.kind not in "iu" and not (a.dtype == object):
            raise TypeError(f"{name} must be integers, got dtype {a.dtype}")
        a = np.broadcast_to(a.astype(np.int64), (n,)) if a.ndim == 0 else a.astype(np.int64)
        if a.shape != (n,):
            raise ValueError(f"{name} must be one value or {n} (one per channel), got shape "
                             f"{np.shape(v)}")
        if a.min() < lo or a.max() > hi:
            raise ValueError(f"{name} must be in [{lo}, {hi}]")
        return np.ascontiguousarray(a, np.int32)

    dts = []
    for v, name in ((r_dtype, "r_dtype"), (out_dtype, "out_dtype")):
        d = C.int_dtype(v, name)[0]
        if d not in _RES_DTYPES:
            raise TypeError(f"{name} must be uint8, int8 or int16, got {d}")
        dts.append(d)
    zps = []
    for v, d, name in ((r_zero_point, dts[0], "r_zero_point"),
                       (out_zero_point, dts[1], "out_zero_point")):
        z = C._int_scalar(v, name)
        info = np.iinfo(d)
        if not info.min <= z <= info.max:
            raise ValueError(f"{name}={z} is outside {d} [{info.min}, {info.max}]")
        zps.append(z)
    return ResidualAdd(n, col(acc_multiplier, "acc_multiplier", 0, 2 ** 31 - 1),
                       col(acc_shift, "acc_shift", -31, 30),
                       col(r_multiplier, "r_multiplier", 0, 2 ** 31 - 1),
                       col(r_shift, "r_shift", -31, 30), col(out_shift, "out_shift", -31, 31),
                       dts[0], zps[0], dts[1], zps[1])
