"""Presets: the integer arithmetic of one runtime's quantized conv / linear layers, as data.

A :class:`Preset` says everything that decides the output bits of ``qlinear`` / ``qconv2d`` once
the int32 accumulator ``sum (x - x_zp)(w - w_zp)`` is known (SPEC.md section 5): which operand
types the runtime takes, how it adds the bias (in float, or as int32 with scale
``x_scale * w_scale``), how it requantizes (a float scale, a fixed-point multiplier rounded once
or twice, or a plain shift), how it derives that scale or multiplier from the float scales, and
its rounding. The built-in presets each reproduce one runtime bit for bit:

==============  ==============================  ==========  ======================================
preset          activations / weights           bias        requantization
==============  ==============================  ==========  ======================================
fbgemm          uint8 / int8                    float       fp32 ``fl(fl(xs*ws)/os)`` (PyTorch
                                                            fbgemm / x86)
qnnpack         uint8 / int8                    float ->    fp32 ``fl(fl(ws*xs) * fl(1/os))``
                                                int32       (QNNPACK)
onnxruntime     uint8 or int8 / int8 or uint8   int32       fp32 ``fl(fl(xs*ws)/os)``
tflite          int8 / int8 symmetric           int32       conv / depthwise: fixed point, double
                                                            rounding; fully connected: fp64
                                                            ``round((double)acc * xs*ws/os)``
                                                            (LiteRT's reference kernels)
tflite_xnnpack  int8 / int8 symmetric           int32       fp32 ``fl(fl(xs*ws)/os)``, round half
                                                            to even (the XNNPACK delegate)
tflite_         int8 / int8 symmetric           int32       fixed point: SRDHM, then a shift
optimized                                                   rounding ties toward +inf (LiteRT's
                                                            optimized built-ins on x86)
cmsis_nn        int8 / int8 symmetric           int32       fixed point, double rounding, every
                                                            op (CMSIS-NN, TFLite Micro)
pow2            any / any, power-of-two scales  int32       shift, round half up
==============  ==============================  ==========  ======================================

The accumulator is the exact sum. ONNX Runtime (MLAS) and PyTorch (FBGEMM) compute exactly that
wherever their uint8 x int8 kernels use VNNI (``vpdpbusd``) or run on ARM; on an x86 CPU without
AVX512-VNNI / AVX-VNNI they multiply with ``vpmaddubsw``, which saturates each pair of adjacent
raw products ``x[2i] w[2i] + x[2i+1] w[2i+1]`` to int16, so their outputs differ from the exact
sum where such a pair exceeds 32767 (uint8 activations above 127 against large weights). Both
runtimes' remedy is ``reduce_range`` (activations in [0, 127]: ``2 * 127 * 128 < 2^15``), the
default of PyTorch's x86 / fbgemm qconfigs; on that range the presets equal them on every CPU
(tests/_ort.py pins what ORT computes on the full range on such CPUs).

A runtime whose fully-connected kernel rounds differently from its convolutions says so with
``Preset.linear`` (a preset of its own for ``qlinear``; :meth:`Preset.for_op`).

int16 activations with int8 weights (TFLite's 16x8 mode, CMSIS-NN's s16 kernels; int64 sums and
bias, :mod:`qkernels.linear16`) requantize as ``Preset.s16_conv`` / ``s16_linear`` say: the
three TFLite presets ``"reduced"`` (conv, depthwise: the int64 MultiplyByQuantizedMultiplier)
and ``"fp64"`` (fully connected), ``cmsis_nn`` ``"reduced_cmsis"`` (arm_nn_requantize_s64) for
every op; the other presets take no int16.

A user's own accelerator is one more ``Preset``, passed wherever a preset name is accepted
(``qlinear(..., preset=p)``, ``qconv2d``, ``QuantConfig(preset=p)``, the export):

    >>> import numpy as np, qkernels
    >>> from qkernels.presets import Preset
    >>> acc = Preset("my_npu", x_dtypes=("int8",), w_dtypes=("int8",), requant="shift",
    ...              bias="int32", rounding="half_even")
    >>> x = np.array([[3, -5]], np.int8); w = np.array([[2, 2]], np.int8)
    >>> qkernels.qlinear(x, w, np.int32([1]), x_scale=0.5, w_scale=0.25, out_scale=0.5,
    ...                  preset=acc)       # acc = -4 + 1 = -3; -3 * 2^-2 = -0.75 -> -1 (half even)
    array([[-1]], dtype=int8)

:func:`get` turns a name or a ``Preset`` into a ``Preset``; :meth:`Preset.epilogue` derives the
exact operands of the C output stage (:class:`Epilogue`) for one layer, and
:meth:`Preset.matmul_epilogue` for a product of two activations (``qkernels.qmatmul``: each batch
item, e.g. each attention head, is the per-tensor case).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np

from . import _checks as C
from . import _core
from ._elementwise import FLAVORS

__all__ = ["Preset", "Epilogue", "PRESETS", "SCHEMES", "ROUNDINGS", "TFLITE_RUNTIMES", "get",
           "names"]

#: Requantization schemes of the C output stage, by name, with their numbers in the public C enum
#: ``qk_requant_scheme`` (csrc/include/qkernels.h).
SCHEME_CODES: Dict[str, int] = {
    "none": _core.REQ_NONE, "fp32": _core.REQ_FP32, "double_round": _core.REQ_DOUBLE,
    "single_round": _core.REQ_SINGLE, "shift_half_up": _core.REQ_SHIFT_HALF_UP,
    "shift_half_even": _core.REQ_SHIFT_HALF_EVEN, "shift_half_away": _core.REQ_SHIFT_HALF_AWAY,
    "shift_floor": _core.REQ_SHIFT_FLOOR, "fp64": _core.REQ_FP64,
    "double_round_half_up": _core.REQ_DOUBLE_HALF_UP,
    "reduced": _core.REQ_REDUCED, "reduced_cmsis": _core.REQ_REDUCED_CMSIS,
}
SCHEME_NAMES: Dict[int, str] = {v: k for k, v in SCHEME_CODES.items()}
#: Fixed-point schemes (``scheme=`` of qlinear / qconv2d).
SCHEMES = ("double_round", "single_round", "double_round_half_up")
#: Roundings of the ``shift`` requantization (``rounding=``).
ROUNDINGS = ("half_up", "half_even", "half_away", "floor")

#: The LiteRT kernels a preset's non-conv ops can follow (:attr:`Preset.tflite_runtime`).
TFLITE_RUNTIMES = ("reference", "xnnpack", "optimized")
_REQUANTS = ("fp32", "double_round", "single_round", "double_round_half_up", "shift", "fp64")
#: Requantizations of int16 activations x int8 weights (int64 sums; ``Preset.s16_conv`` /
#: ``s16_linear``): "reduced" (TFLite's int64 MultiplyByQuantizedMultiplier), "reduced_cmsis"
#: (CMSIS-NN arm_nn_requantize_s64), "fp64" (TFLite's FullyConnected in double).
S16_SCHEMES = ("reduced", "reduced_cmsis", "fp64")
_BIASES = ("float", "quantize", "int32")


@dataclass(frozen=True)
class Preset:
    """One runtime's conv / linear arithmetic (see the module docstring).

    Attributes:
        name: the preset's name (used in messages, memo keys and exports).
        x_dtypes, w_dtypes: activation and weight types the runtime takes ("uint8", "int8").
        requant: "fp32" (float scale, round half to even), "double_round" / "single_round"
            (fixed-point M0 and shift, SPEC.md section 4), "double_round_half_up" (SRDHM, then
            the right shift rounds ties toward +inf: TFLite's optimized kernels), "fp64" (``RHAZ((double)acc * s)``
            with ``s = (double)xs * (double)ws / (double)os``, TFLite's reference
            FullyConnected) or "shift" (power-of-two scales only).
        bias: "float" (a float bias added to the float-converted accumulator, FBGEMM: per channel
            ``fl(b / fl(xs*ws))``, per tensor ``b * fl(1.0 / (double)fl(xs*ws))``), "quantize"
            (a float bias quantized to int32 with scale ``fl(xs*ws)``, ``quantize_per_tensor``
            rounding, QNNPACK) or "int32" (an int32 bias given by the caller).
        fp32_scale: for requant "fp32": "divide" ``fl(fl(xs*ws)/os)`` (FBGEMM, ONNX Runtime) or
            "reciprocal" ``fl(fl(ws*xs) * fl(1/os))`` (PyTorch QNNPACK).
        symmetric_weights: weight zero points must be 0 (TFLite).
        rounding: the default rounding of requant "shift" (one of :data:`ROUNDINGS`).
        out_dtype: default output type, or None for the activation type.
        reduce_range: the runtime's activations use 7 bits ([0, 127]); a calibration hint for
            quantizers (FBGEMM without VNNI), not enforced by the kernels.
        bias_bits: width of the integer bias register (saturating), 2..32.
        multiplier_product: how a fixed-point preset forms ``xs * ws`` for per-tensor weights:
            "double" (``(double)xs * (double)ws / os``, as per channel: TFLite's int8 conv and
            depthwise, CMSIS-NN) or "float" (``(double)fl(xs * ws) / os``: TFLite's uint8
            kernels and per-tensor optimized FullyConnected, ``GetQuantizedConvolutionMultipler``).
        linear: the preset of fully-connected layers when the runtime's FC kernel differs from
            its convolutions (e.g. ``tflite``: fp64 FC, double-rounding conv); None: this one.
        s16_conv, s16_linear: the requantization of int16 activations x int8 weights (TFLite's
            16x8 mode, CMSIS-NN's s16 kernels; int64 sums and bias) for conv / depthwise and for
            fully connected, one of :data:`S16_SCHEMES`, or None where the runtime has no such
            kernel (``qconv2d`` / ``qlinear`` then refuse int16 ``x``).
        quantize_flavor: the runtime's float -> integer QUANTIZE rounding, a
            :func:`qkernels.quantize` flavor (``tflite``: "tflite", half away from zero of
            ``x / s``; ``tflite_xnnpack``: "pt2e", half to even of ``x * fl(1/s)``); used where a
            front end quantizes model inputs as the runtime does (:mod:`qkernels.torch.tflite`).
        tflite_runtime: the LiteRT kernels whose arithmetic a model's other ops follow (ADD,
            MUL, pooling, MEAN, CONCATENATION, SOFTMAX, LOGISTIC, TANH, HARD_SWISH, fused
            activation clamps, :mod:`qkernels.tflite_ops`): "reference" (the reference kernels),
            "xnnpack" (the XNNPACK delegate), "optimized" (the optimized built-ins); None: the
            front end's own (PyTorch's quantized ops in :func:`qkernels.torch.quantize_model`).
        source: where the arithmetic was read (documentation).
    """

    name: str
    x_dtypes: Tuple[str, ...]
    w_dtypes: Tuple[str, ...]
    requant: str
    bias: str
    fp32_scale: str = "divide"
    symmetric_weights: bool = False
    rounding: str = "half_up"
    out_dtype: Optional[str] = None
    reduce_range: bool = False
    bias_bits: int = 32
    multiplier_product: str = "double"
    linear: Optional["Preset"] = None
    quantize_flavor: str = "torch"
    tflite_runtime: Optional[str] = None
    s16_conv: Optional[str] = None
    s16_linear: Optional[str] = None
    source: str = ""
    _x: Tuple[np.dtype, ...] = field(init=False, repr=False, compare=False)
    _w: Tuple[np.dtype, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("Preset.name must be a non-empty string")
        for attr, allowed in (("requant", _REQUANTS), ("bias", _BIASES),
                              ("fp32_scale", ("divide", "reciprocal")), ("rounding", ROUNDINGS),
                              ("multiplier_product", ("double", "float")),
                              ("quantize_flavor", FLAVORS)):
            if getattr(self, attr) not in allowed:
                raise ValueError(f"Preset.{attr} must be one of {', '.join(allowed)}; got "
                                 f"{getattr(self, attr)!r}")
        for attr in ("s16_conv", "s16_linear"):
            if getattr(self, attr) not in S16_SCHEMES + (None,):
                raise ValueError(f"Preset.{attr} must be one of {', '.join(S16_SCHEMES)} or None; "
                                 f"got {getattr(self, attr)!r}")
        types = {}
        for attr in ("x_dtypes", "w_dtypes"):
            v = getattr(self, attr)
            if isinstance(v, str):
                v = (v,)
            dts = tuple(np.dtype(t) for t in v)
            if not dts or any(d not in (np.uint8, np.int8) for d in dts):
                raise ValueError(f"Preset.{attr} must name uint8 and/or int8; got {v!r}")
            object.__setattr__(self, attr, tuple(d.name for d in dts))
            types[attr] = dts
        if self.tflite_runtime not in TFLITE_RUNTIMES + (None,):
            raise ValueError(f"Preset.tflite_runtime must be one of {', '.join(TFLITE_RUNTIMES)} "
                             f"or None; got {self.tflite_runtime!r}")
        if self.out_dtype is not None and np.dtype(self.out_dtype) not in (np.uint8, np.int8):
            raise ValueError(f"Preset.out_dtype must be uint8, int8 or None; got {self.out_dtype!r}")
        if not 2 <= int(self.bias_bits) <= 32:
            raise ValueError(f"Preset.bias_bits must be in 2..32; got {self.bias_bits}")
        if self.linear is not None and not isinstance(self.linear, Preset):
            raise TypeError(f"Preset.linear must be a Preset or None; got {self.linear!r}")
        object.__setattr__(self, "_x", types["x_dtypes"])
        object.__setattr__(self, "_w", types["w_dtypes"])

    # -- what the bridge and the export ask ---------------------------------------------------
    @property
    def takes_float_bias(self) -> bool:
        """The layer's bias is given in float (bias "float" or "quantize"), else int32."""
        return self.bias != "int32"

    @property
    def fixed_point(self) -> bool:
        """Requantization by a fixed-point multiplier (double or single rounding)."""
        return self.requant in SCHEMES

    def for_op(self, op: str) -> "Preset":
        """The preset of one kind of layer: ``linear`` (fully connected) or ``conv`` (conv and
        depthwise); :attr:`linear` for fully-connected layers when it is set.

        Example:
            >>> from qkernels import presets
            >>> presets.get("tflite").for_op("linear").requant, presets.get("tflite").requant
            ('fp64', 'double_round')
        """
        if op not in ("linear", "conv"):
            raise ValueError(f"op must be 'linear' or 'conv'; got {op!r}")
        return self.linear if op == "linear" and self.linear is not None else self

    def default_out_dtype(self, x_dtype: Any) -> np.dtype:
        """The output type when the caller names none."""
        return np.dtype(self.out_dtype) if self.out_dtype is not None else np.dtype(x_dtype)

    def check_operands(self, x_dtype: np.dtype, w_dtype: np.dtype, w_zero_point: np.ndarray) -> None:
        """Refuse operand types the runtime does not take (naming the argument)."""
        if np.dtype(x_dtype) not in self._x:
            raise TypeError(f"x must be {' or '.join(self.x_dtypes)} for preset {self.name!r}, "
                            f"got {np.dtype(x_dtype)}")
        if np.dtype(w_dtype) not in self._w:
            raise TypeError(f"w must be {' or '.join(self.w_dtypes)} for preset {self.name!r}, "
                            f"got {np.dtype(w_dtype)}")
        if self.symmetric_weights and (np.asarray(w_zero_point) != 0).any():
            raise ValueError(f"w_zero_point must be 0 for preset {self.name!r} (symmetric weights)")

    def quantize_bias(self, bias: Optional[np.ndarray], x_scale: Any, w_scale: Any,
                      bits: Optional[int] = None) -> Optional[np.ndarray]:
        """A float bias in the form this preset's layer takes: unchanged for float-bias presets,
        else ``RNE(bias / (x_scale * w_scale))`` (in double) saturated to ``bits`` (default
        :attr:`bias_bits`) signed bits, as int32 (how TFLite's converter, ONNX Runtime's
        quantizer and shift hardware store it)."""
        if bias is None or self.takes_float_bias:
            return bias
        s = np.float64(np.float32(x_scale)) * np.asarray(w_scale, np.float64)
        lim = 2 ** (int(self.bias_bits if bits is None else bits) - 1)
        return np.clip(np.rint(np.asarray(bias, np.float64) / s), -lim, lim - 1).astype(np.int32)

    def epilogue(self, n: int, per_channel_w: bool, x_scale: Any, w_scale: Any, out_scale: Any,
                 bias: Any = None, scheme: Optional[str] = None,
                 rounding: Optional[str] = None) -> "Epilogue":
        """The output stage of a layer with ``n`` output channels: every operand of the C
        epilogue, derived from the float scales as this runtime derives them.

        ``scheme`` overrides a fixed-point preset's rounding ("double_round" / "single_round");
        ``rounding`` a shift preset's. Raises ValueError / TypeError naming the argument.
        """
        xs = C.scale_param(_need(x_scale, "x_scale", self.name), "x_scale")
        if xs.ndim != 0:
            raise ValueError(f"x_scale must be a scalar (per-tensor activations); got shape {xs.shape}")
        ws = _scale_vector(_need(w_scale, "w_scale", self.name), n, "w_scale")
        os_ = C.scale_param(_need(out_scale, "out_scale", self.name), "out_scale")
        if os_.ndim != 0:
            raise ValueError(f"out_scale must be a scalar; got shape {os_.shape}")
        xs, os_ = np.float32(xs), np.float32(os_)
        e, xw = self._requant(n, per_channel_w, xs, ws, os_, scheme, rounding,
                              ("x_scale", "w_scale", "out_scale"), (x_scale, w_scale, out_scale))
        if self.bias == "float":
            fb = float_bias(bias, n, self.name)
            if fb is not None:
                with np.errstate(over="ignore", under="ignore"):
                    if per_channel_w:
                        e.fbias = (fb / xw).astype(np.float32)                  # AVX2 per channel
                    else:
                        rcp = np.float32(1.0 / np.float64(xw[0]))               # fl(1.0/(double)s)
                        e.fbias = (fb * rcp).astype(np.float32)
                if not np.isfinite(e.fbias).all():
                    raise ValueError("bias / (x_scale * w_scale) overflows float32")
        elif self.bias == "quantize":
            fb = float_bias(bias, n, self.name)
            if fb is not None:   # torch.quantize_per_tensor / _per_channel(bias, xs * ws, 0, qint32)
                from ._elementwise import quantize
                bs = xw if per_channel_w else np.float32(xw[0])
                e.bias = quantize(fb, bs, 0, dtype=np.int32, flavor="torch")
        else:
            e.bias = int32_bias(bias, n, self.name)
        return e

    def matmul_epilogue(self, n: int, a_scale: Any, b_scale: Any, out_scale: Any,
                        scheme: Optional[str] = None,
                        rounding: Optional[str] = None) -> "Epilogue":
        """The output stage of a product of two activations (attention's ``Q K^T`` and ``P V``,
        :func:`qkernels.qmatmul`) over ``n`` batch items: each item is the per-tensor case of
        :meth:`epilogue`, ``a`` in the place of ``x`` and ``b`` of ``w``, with its own scales
        (scalars, or ``n`` values: per head). TFLite's ``BATCH_MATMUL`` takes
        ``(double)fl(a_scale * b_scale) / out_scale``, as its per-tensor conv. No bias.

        Example:
            >>> from qkernels import presets
            >>> e = presets.get("onnxruntime").matmul_epilogue(2, 0.5, [0.25, 0.5], 1.0)
            >>> e.scheme_name, e.scale.tolist()
            ('fp32', [0.125, 0.25])
        """
        sa = _scale_vector(_need(a_scale, "a_scale", self.name), n, "a_scale", "one per batch item")
        sb = _scale_vector(_need(b_scale, "b_scale", self.name), n, "b_scale", "one per batch item")
        so = _scale_vector(_need(out_scale, "out_scale", self.name), n, "out_scale",
                           "one per batch item")
        # TFLite's BATCH_MATMUL: GetQuantizedConvolutionMultipler, the product in float32
        return self._requant(n, False, sa, sb, so, scheme, rounding,
                             ("a_scale", "b_scale", "out_scale"), (a_scale, b_scale, out_scale),
                             product="float")[0]

    def _requant(self, n: int, per_channel_w: bool, xs: Any, ws: np.ndarray, os_: Any,
                 scheme: Optional[str], rounding: Optional[str],
                 names: Tuple[str, str, str], given: Tuple[Any, Any, Any],
                 product: Optional[str] = None) -> Tuple["Epilogue", np.ndarray]:
        """The requantization of :meth:`epilogue` (scheme, scale or multiplier and shift) for
        float32 scales ``xs``, ``ws``, ``os_`` (scalars or length ``n``, named ``names`` in
        errors; ``given``: the caller's values, shown by the range checks of ``_checks``;
        ``product``: how a fixed-point multiplier forms ``xs * ws`` per tensor, when the op fixes
        it instead of the preset's ``multiplier_product``); returns it with ``fl(xs * ws)``."""
        nx, nw, no = names
        if scheme is not None and not (self.fixed_point or self.requant == "fp64"):
            raise ValueError(f"scheme= applies to fixed-point requantization (tflite, or explicit "
                             f"multiplier/shift); preset {self.name!r} requantizes with "
                             f"{self.requant}" + ("; use rounding=" if self.requant == "shift" else ""))
        if rounding is not None and self.requant != "shift":
            raise ValueError(f"rounding= applies to shift requantization (pow2); preset "
                             f"{self.name!r} requantizes with {self.requant}")
        with np.errstate(over="ignore", under="ignore"):
            xw = (xs * ws).astype(np.float32)                                   # fl(in_s * w_s)
        e = Epilogue()
        if self.requant == "fp32":
            if not (np.isfinite(xw).all() and (xw > 0).all()):
                raise ValueError(f"{nx} * {nw} is not a positive finite float32")
            e.scheme = SCHEME_CODES["fp32"]
            with np.errstate(over="ignore", under="ignore"):
                if self.fp32_scale == "divide":
                    e.scale = (xw / os_).astype(np.float32)                     # fl(fl(xs*ws)/os)
                else:
                    e.scale = (xw * np.float32(np.float32(1.0) / os_)).astype(np.float32)
            C.requant_scale(e.scale, *given)
        elif self.fixed_point or self.requant == "fp64":
            with np.errstate(over="ignore"):   # an overflow is refused below, naming the scales
                if per_channel_w or (product or self.multiplier_product) == "double":
                    # TFLite PopulateConvolutionQuantizationParams, FullyConnected per channel and
                    # its reference kernels: (double)xs * (double)ws[c] / (double)os
                    real = np.float64(xs) * ws.astype(np.float64) / np.float64(os_)
                else:   # GetQuantizedConvolutionMultipler: (double)fl(in_s * w_s) / out_s
                    real = np.broadcast_to(xw.astype(np.float64) / np.asarray(os_, np.float64),
                                           (n,))
            if scheme is None and self.requant == "fp64":
                e.scheme = SCHEME_CODES["fp64"]
                e.scale = np.ascontiguousarray(real, np.float64)
                if not (np.isfinite(e.scale).all() and (e.scale > 0).all()):
                    raise ValueError(f"the requantization scale {nx} * {nw} / {no} is not a "
                                     f"positive finite number ({nx}={xs}, {no}={os_})")
            else:
                from ._elementwise import quantize_multiplier
                C.requant_multiplier(real, *given)
                e.mult, e.shift = (np.ascontiguousarray(a, np.int32)
                                   for a in quantize_multiplier(real))
                e.scheme = SCHEME_CODES[_choice(scheme or self.requant, SCHEMES, "scheme")]
        else:   # shift
            for name, v in ((nx, np.atleast_1d(xs)), (nw, ws), (no, np.atleast_1d(os_))):
                bad = ~_is_pow2(v)
                if bad.any():
                    val = np.format_float_positional(np.float32(v[int(np.argmax(bad))]))
                    raise ValueError(f"preset {self.name!r} needs power-of-two scales; {name}={val} "
                                     f"is not a power of two")
            sh = _exp2(os_) - _exp2(xs) - _exp2(ws)   # acc * 2^-(sh)
            if (sh < -31).any() or (sh > 31).any():
                raise ValueError(f"{self.name} shift {no} / ({nx} * {nw}) = "
                                 f"2^{int(sh.max())} is outside [-31, 31]")
            e.shift = np.ascontiguousarray(np.broadcast_to(sh, (n,)), np.int32)
            e.scheme = SCHEME_CODES["shift_" + _choice(rounding or self.rounding, ROUNDINGS, "rounding")]
        return e, xw


class Epilogue:
    """The operands of the C output stage of one conv / linear layer (``qk_epilogue``).

    Attributes:
        scheme: the ``qk_requant_scheme`` number (:data:`SCHEME_CODES`); ``scheme_name`` names it.
        bias: int32 bias (or None), in accumulator units (scale ``x_scale * w_scale``).
        fbias: float bias already divided by ``x_scale * w_scale`` (FBGEMM), or None.
        scale: requantization scale per output channel: float32 (fp32 scheme), float64 (fp64
            scheme), or None.
        mult, shift: int32 M0 and shift per output channel (fixed point), or the shift (pow2).
    """

    __slots__ = ("scheme", "bias", "fbias", "scale", "mult", "shift")

    def __init__(self) -> None:
        self.scheme = SCHEME_CODES["none"]
        self.bias = self.fbias = self.scale = self.mult = self.shift = None

    @property
    def scheme_name(self) -> str:
        return SCHEME_NAMES[self.scheme]

    def args(self) -> tuple:
        """(scheme, bias, fbias, scale, mult, shift): the order the C call takes them."""
        return (self.scheme, self.bias, self.fbias, self.scale, self.mult, self.shift)

    def arrays(self) -> Dict[str, np.ndarray]:
        """The operands that are set, by their export names (requant_scale, float_bias,
        multiplier, shift, bias)."""
        out = {}
        for key, val in (("requant_scale", self.scale), ("float_bias", self.fbias),
                         ("multiplier", self.mult), ("shift", self.shift), ("bias", self.bias)):
            if val is not None:
                out[key] = np.asarray(val)
        return out

    def copy(self) -> "Epilogue":
        """A copy owning its arrays (a memo entry never sees a caller's later in-place change)."""
        c = Epilogue()
        c.scheme = self.scheme
        for k in ("bias", "fbias", "scale", "mult", "shift"):
            v = getattr(self, k)
            setattr(c, k, None if v is None else np.array(v, copy=True))
        return c


def explicit_epilogue(n: int, multiplier: Any, shift: Any, scheme: Optional[str],
                      bias: Any) -> Epilogue:
    """The output stage for a caller's own fixed-point M0 and shift (per tensor or per channel)
    and int32 bias: ``scheme`` double_round (default) or single_round."""
    e = Epilogue()
    sch = _choice(scheme or "double_round", SCHEMES, "scheme")
    m = C.int_param(multiplier, "multiplier", 0, (1 << 31) - 1)
    sh = C.int_param(shift, "shift", -31, 30)
    e.mult = _vec_i32(m, n, "multiplier")
    e.shift = _vec_i32(sh, n, "shift")
    e.scheme = SCHEME_CODES[sch]
    e.bias = int32_bias(bias, n, "explicit multiplier/shift")
    return e


PRESETS: Dict[str, Preset] = {p.name: p for p in (
    Preset("fbgemm", x_dtypes=("uint8",), w_dtypes=("int8",), requant="fp32", bias="float",
           out_dtype="uint8", reduce_range=True,
           source="FBGEMM include/fbgemm/OutputProcessing-inl.h (ReQuantizeOutput), "
                  "PyTorch aten/src/ATen/native/quantized/cpu/qlinear.cpp"),
    Preset("qnnpack", x_dtypes=("uint8",), w_dtypes=("int8",), requant="fp32", bias="quantize",
           fp32_scale="reciprocal", out_dtype="uint8",
           source="PyTorch aten/src/ATen/native/quantized/cpu/qlinear.cpp (QNNPACK path), "
                  "qnnpack requantization"),
    Preset("onnxruntime", x_dtypes=("uint8", "int8"), w_dtypes=("int8", "uint8"), requant="fp32",
           bias="int32", source="onnxruntime core/mlas/lib/qgemm.cpp, QLinearConv"),
    Preset("tflite", x_dtypes=("int8",), w_dtypes=("int8",), requant="double_round", bias="int32",
           symmetric_weights=True, out_dtype="int8", quantize_flavor="tflite",
           tflite_runtime="reference", s16_conv="reduced", s16_linear="fp64",
           linear=Preset("tflite", x_dtypes=("int8",), w_dtypes=("int8",), requant="fp64",
                         bias="int32", symmetric_weights=True, out_dtype="int8",
                         quantize_flavor="tflite", tflite_runtime="reference",
                         s16_conv="reduced", s16_linear="fp64",
                         source="LiteRT tflite/kernels/internal/reference/integer_ops/"
                                "fully_connected.h (requant in double, round())"),
           source="LiteRT (TFLite) reference kernels, default build (TFLITE_SINGLE_ROUNDING=0): "
                  "reference/integer_ops/conv.h, depthwise_conv.h (MultiplyByQuantizedMultiplier, "
                  "double rounding; multipliers from kernel_util.cc "
                  "PopulateConvolutionQuantizationParams); FullyConnected: fully_connected.h "
                  "round((double)acc * xs*ws/os) (since 2025-04, 'do requant in float'); "
                  "16x8 (int64 bias): ConvPerChannel / DepthwiseConvPerChannel<int64> with the "
                  "int64 MultiplyByQuantizedMultiplier (common.cc), FullyConnected in double"),
    Preset("tflite_xnnpack", x_dtypes=("int8",), w_dtypes=("int8",), requant="fp32",
           bias="int32", symmetric_weights=True, out_dtype="int8", quantize_flavor="pt2e",
           tflite_runtime="xnnpack",
           s16_conv="reduced", s16_linear="fp64",
           source="XNNPACK (LiteRT's default delegate): src/operators/convolution-nhwc.c, "
                  "fully-connected-nc.c (scale fl(fl(xs*ws)/os)); qs8-qc8w gemm / dwconv "
                  "fp32 requantization (cvtps2dq, round half to even); 16x8 ops are not "
                  "delegated (measured): the built-ins run them as the reference kernels"),
    Preset("tflite_optimized", x_dtypes=("int8",), w_dtypes=("int8",),
           requant="double_round_half_up", bias="int32", symmetric_weights=True, out_dtype="int8",
           quantize_flavor="pt2e", tflite_runtime="optimized", s16_conv="reduced",
           s16_linear="fp64",
           linear=Preset("tflite_optimized", x_dtypes=("int8",), w_dtypes=("int8",),
                         requant="double_round_half_up", bias="int32", symmetric_weights=True,
                         out_dtype="int8", quantize_flavor="pt2e", multiplier_product="float",
                         tflite_runtime="optimized", s16_conv="reduced", s16_linear="fp64",
                         source="LiteRT optimized_integer_ops FullyConnected (x86)"),
           source="LiteRT (TFLite) optimized built-in kernels on x86 "
                  "(OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES): conv, depthwise and fully "
                  "connected requantize with SRDHM then a rounding shift whose ties go toward "
                  "+inf (NEON vqrdmulh / vrshl through NEON_2_SSE), not the reference kernels' "
                  "RoundingDivideByPOT (ties away from zero); QUANTIZE rounds x * fl(1/s) half to "
                  "even (measured against LiteRT 2.3.0); 16x8 with an int64 bias falls back to "
                  "the reference kernels (conv.cc, depthwise_conv.cc, fully_connected.cc)"),
    Preset("cmsis_nn", x_dtypes=("int8",), w_dtypes=("int8",), requant="double_round",
           bias="int32", symmetric_weights=True, out_dtype="int8", quantize_flavor="tflite",
           s16_conv="reduced_cmsis", s16_linear="reduced_cmsis",
           source="CMSIS-NN arm_nn_requantize (default: double rounding; "
                  "CMSIS_NN_USE_SINGLE_ROUNDING: scheme='single_round'), arm_convolve_s8, "
                  "arm_depthwise_conv_s8, arm_fully_connected_s8; TFLite Micro reference kernels; "
                  "s16 (int64 bias): arm_convolve_s16, arm_depthwise_conv_s16, "
                  "arm_fully_connected_s16 with arm_nn_requantize_s64 (REDUCE_MULTIPLIER)"),
    Preset("pow2", x_dtypes=("uint8", "int8"), w_dtypes=("int8", "uint8"), requant="shift",
           bias="int32", rounding="half_up", source="power-of-two hardware: (acc + 2^(n-1)) >> n"),
)}


def names() -> Tuple[str, ...]:
    """The built-in preset names."""
    return tuple(PRESETS)


PresetLike = Union[str, Preset]


def get(preset: PresetLike, name: str = "preset") -> Preset:
    """The :class:`Preset` named ``preset`` (a built-in name), or ``preset`` itself.

    Example:
        >>> from qkernels import presets
        >>> presets.get("tflite").requant
        'double_round'
    """
    if isinstance(preset, Preset):
        return preset
    if isinstance(preset, str) and preset in PRESETS:
        return PRESETS[preset]
    raise ValueError(f"{name} must be one of {', '.join(repr(a) for a in PRESETS)} or a "
                     f"qkernels.presets.Preset; got {preset!r}")


# ---- argument checks of the derivation ---------------------------------------------------------
def _choice(value: Any, allowed: Tuple[str, ...], name: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(repr(a) for a in allowed)}; "
                         f"got {value!r}")
    return value


def _need(v: Any, name: str, preset: str) -> Any:
    if v is None:
        raise TypeError(f"{name} is required for preset {preset!r} (or pass multiplier= and "
                        f"shift=)")
    return v


def _scale_vector(s: Any, n: int, name: str, what: str = "one per output channel") -> np.ndarray:
    v = C.scale_param(s, name)
    if v.ndim == 0:
        return np.full(n, v, np.float32)
    if v.shape != (n,):
        raise ValueError(f"{name} has shape {v.shape}; it must be a scalar or have length {n} "
                         f"({what})")
    return np.ascontiguousarray(v, np.float32)


def _vec_i32(a: np.ndarray, n: int, name: str) -> np.ndarray:
    if a.ndim == 0:
        return np.full(n, int(a), np.int32)
    if a.shape != (n,):
        raise ValueError(f"{name} has shape {a.shape}; it must be a scalar or have length {n}")
    return np.ascontiguousarray(a, np.int32)


def int32_bias(bias: Any, n: int, what: str) -> Optional[np.ndarray]:
    """An int32 bias of length n (or None), checked."""
    if bias is None:
        return None
    b = np.asarray(bias)
    if b.dtype.kind not in "iu":
        raise TypeError(f"bias must be an int32 array for preset {what!r} (quantized with scale "
                        f"x_scale * w_scale, zero point 0); got dtype {b.dtype}")
    if b.shape != (n,):
        raise ValueError(f"bias has shape {b.shape}; it must have length {n} (out channels)")
    if b.size and (b.min() < -(1 << 31) or b.max() > (1 << 31) - 1):
        raise ValueError("bias has values outside int32")
    return np.ascontiguousarray(b, np.int32)


def float_bias(bias: Any, n: int, what: str) -> Optional[np.ndarray]:
    """A finite float32 bias of length n (or None), checked."""
    if bias is None:
        return None
    b = np.asarray(bias)
    if b.dtype.kind != "f":
        raise TypeError(f"bias must be a float array for preset {what!r} (PyTorch keeps the "
                        f"bias in float); got dtype {b.dtype}")
    if b.shape != (n,):
        raise ValueError(f"bias has shape {b.shape}; it must have length {n} (out channels)")
    b = b.astype(np.float32)
    if not np.isfinite(b).all():
        raise ValueError("bias must be finite")
    return b


def _is_pow2(s: np.ndarray) -> np.ndarray:
    m, _ = np.frexp(s.astype(np.float64))
    return m == 0.5


def _exp2(v: Any) -> np.ndarray:
    return np.frexp(np.float64(v))[1].astype(np.int64) - 1
