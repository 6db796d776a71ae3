"""What :func:`qkernels.torch.quantize_model` does: :class:`TensorConfig` per kind of tensor and
:class:`QuantConfig` for the whole model, with their dict / YAML form.

A config file (YAML) names the fields of :class:`QuantConfig`; each tensor kind is a mapping of
:class:`TensorConfig` fields (see ``examples/quant_config.yaml`` for every key):

.. code-block:: yaml

    preset: tflite               # fbgemm, qnnpack, onnxruntime, tflite, pow2
    mode: static                 # static, dynamic, weight_only
    weight: {bits: 8, symmetric: true, per_channel: true, signed: true}
    activation: {bits: 8, signed: true, observer: minmax}
    float_modules: [head]

Every value is checked when the config is made: an unknown key or a value of the wrong type is a
``ValueError`` naming the key (``weight.bits``), before any calibration starts.

Example:
    >>> from qkernels.torch.config import QuantConfig
    >>> QuantConfig.from_dict({"weight": {"bits": 4}, "preset": "tflite"}).weight.bits
    4
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np

import qkernels as qk
from qkernels import presets as P

__all__ = ["TensorConfig", "QuantConfig", "OBSERVERS"]

#: Calibration observers by name (``TensorConfig.observer``).
OBSERVERS = ("minmax", "moving_average", "percentile", "mse", "entropy", "mode", "histogram", "l2")
_MODES = ("static", "dynamic", "weight_only")
_LAYERNORMS = ("exact", "sole")


def _observer_class(name: str) -> Any:
    if name == "histogram":
        from .observers import TorchHistogramObserver
        return TorchHistogramObserver
    return {"minmax": qk.MinMaxObserver, "moving_average": qk.MovingAverageMinMaxObserver,
            "percentile": qk.PercentileObserver, "mse": qk.MSEObserver,
            "entropy": qk.EntropyObserver, "mode": qk.PowerOfTwoModeObserver,
            "l2": qk.L2RangeObserver}[name]


def _check_type(where: str, value: Any, typ: Any, what: str) -> None:
    ok = isinstance(value, typ) and not (typ in (int, (int,)) and isinstance(value, bool))
    if not ok:
        raise ValueError(f"{where} must be {what}; got {value!r} ({type(value).__name__})")


@dataclass(frozen=True)
class TensorConfig:
    """How one kind of tensor is quantized.

    Attributes:
        bits: 2..16 (int8/uint8 storage up to 8 bits, int16/uint16 above; a bias config may
            use up to 32 bits, int32 storage).
        symmetric: symmetric (zero point 0) or affine.
        per_channel: one scale per output channel (weights) instead of per tensor.
        signed: signed integers (int8) or unsigned (uint8).
        power_of_two: None, "ceil" or "round" (scales snapped to powers of two).
        observer: minmax, moving_average, percentile, mse, entropy, histogram (PyTorch's
            ``HistogramObserver``), l2 (:class:`qkernels.L2RangeObserver`: the range with the
            least expected squared error on the grid it makes) or mode (power-of-two mode).

    Example:
        >>> TensorConfig(bits=4, symmetric=True, signed=True).qrange()
        (-8, 7)
    """

    bits: int = 8
    symmetric: bool = False
    per_channel: bool = False
    signed: bool = False
    power_of_two: Optional[str] = None
    observer: str = "minmax"

    def __post_init__(self) -> None:
        self.check()

    def check(self, where: str = "TensorConfig") -> None:
        """Check every field (ValueError naming ``where.field``)."""
        _check_type(f"{where}.bits", self.bits, int, "an int in 2..32")
        if not 2 <= self.bits <= 32:
            raise ValueError(f"{where}.bits must be in 2..32; got {self.bits}")
        for k in ("symmetric", "per_channel", "signed"):
            _check_type(f"{where}.{k}", getattr(self, k), (bool, np.bool_), "true or false")
        if self.power_of_two not in (None, "ceil", "round"):
            raise ValueError(f"{where}.power_of_two must be null, 'ceil' or 'round'; got "
                             f"{self.power_of_two!r}")
        if self.observer not in OBSERVERS:
            raise ValueError(f"{where}.observer must be one of {', '.join(OBSERVERS)}; got "
                             f"{self.observer!r}")

    def dtype(self) -> np.dtype:
        """The storage type (int8 / uint8 up to 8 bits, 16-bit types up to 16, int32 above)."""
        if self.bits <= 8:
            return np.dtype(np.int8 if self.signed else np.uint8)
        if self.bits <= 16:
            return np.dtype(np.int16 if self.signed else np.uint16)
        return np.dtype(np.int32)

    def qbits(self) -> Optional[int]:
        """``bits`` when narrower than the storage type (the ``bits=`` of the kernels), else None."""
        return self.bits if self.bits < self.dtype().itemsize * 8 else None

    def qrange(self) -> Tuple[int, int]:
        """The integer range [qmin, qmax] of this config."""
        return qk._checks.qrange(self.dtype(), bits=self.qbits())

    def observer_for(self, axis: Optional[int] = None) -> qk.Observer:
        """A new calibration observer for this config (``axis``: per-channel)."""
        kw: Dict[str, Any] = dict(dtype=self.dtype(), symmetric=self.symmetric, bits=self.qbits(),
                                  power_of_two=self.power_of_two)
        if self.observer in ("percentile", "mse", "entropy", "histogram", "l2"):
            if axis is not None:
                raise ValueError(f"the {self.observer} observer is per tensor")
            return _observer_class(self.observer)(**kw)
        if self.observer == "mode":
            kw["power_of_two"] = "ceil"
            kw["symmetric"] = True
        return _observer_class(self.observer)(axis=axis, **kw)


@dataclass(frozen=True)
class QuantConfig:
    """What quantize_model does (defaults: W8A8 static, per-channel symmetric int8 weights,
    affine uint8 activations, the fbgemm preset).

    Attributes:
        weight, activation: :class:`TensorConfig` for weights and for activations (inputs and
            outputs of every layer).
        input, output: :class:`TensorConfig` of the model's input and of the tensors it returns
            (None: ``activation``). ``output`` applies to conv / linear / LayerNorm / float-kept
            layers that produce a model output (others keep the activation storage type).
        bias: :class:`TensorConfig` of the integer bias (presets that add an int32 bias with
            scale ``x_scale * w_scale``: tflite, pow2, onnxruntime): ``bits`` (up to 32, signed)
            saturates it, as hardware with a narrower bias register does. None: the preset's
            ``bias_bits`` (32 for the built-in ones).
        preset: a built-in preset name (fbgemm, qnnpack, onnxruntime, tflite, pow2) or a
            :class:`qkernels.presets.Preset` (the arithmetic of conv / linear).
        mode: "static" (calibrated activations), "dynamic" (like
            ``torch.ao.quantization.quantize_dynamic``: each conv/linear quantizes its input per
            call from the runtime min / max, integer accumulators, float output; float between
            layers) or "weight_only" (float activations).
        layernorm: the integer LayerNorm method, "exact" or "sole" (SOLE's AILayerNorm); its input
            is PTF-quantized (FQ-ViT, ``qkernels.ptf_calibrate(method="fqvit")``).
        float_modules: layers kept in float, each named by its module path (``"head"`` also
            covers ``"head.0"``), its class name (``"GELU"``) or its graph node name (for
            functions, e.g. ``"sigmoid"``). In the integer run their input is dequantized, the
            float op runs, and its output is quantized with calibrated parameters (PyTorch's
            DeQuantStub / QuantStub pair).
        token_rows: transformer blocks (``swap(..., ops=TRANSFORMER_OPS)``, BERT / MiniLM):
            True carries the LayerNorm outputs and the residual stream in int16 (the
            16-bit integer LayerNorm, :func:`qkernels.ptf.layernorm_s16`; ``layernorm="exact"``
            only), the attention context and the GELU output in int32, and quantizes every
            Linear's input to 8 bits per token at run time in integers
            (:func:`qkernels.transformer.row_quantize`): the more accurate form (MiniLM on 800
            sentences: cosine 0.9967, nearest-neighbour agreement 0.932) at about twice the
            time (its per-row steps run in NumPy, not yet in C); False (default): the static
            form (int8 / uint8 activations with per-channel power-of-two factors, PTF uint8
            LayerNorm inputs; cosine 0.9932, NN 0.907), the form ``collect --block`` writes.

    Dynamic mode with the default uint8 affine activations and the fbgemm preset is PyTorch's
    fbgemm ``quantized::linear_dynamic`` (reduce_range [0, 127], its ChooseQuantizationParams);
    with per-tensor weights (``per_channel=False``) it equals ``quantize_dynamic(model,
    {nn.Linear}, dtype=torch.qint8)`` bit for bit, with per-channel weights
    ``per_channel_dynamic_qconfig``. Other activation configs (bits, symmetric, power of two) use
    :func:`qkernels.choose_qparams` on the runtime range and have no PyTorch counterpart.

    Example:
        >>> QuantConfig.w4a8().weight.bits, QuantConfig().preset
        (4, 'fbgemm')
    """

    weight: TensorConfig = field(default_factory=lambda: TensorConfig(
        bits=8, symmetric=True, per_channel=True, signed=True))
    activation: TensorConfig = field(default_factory=TensorConfig)
    preset: Union[str, P.Preset] = "fbgemm"
    mode: str = "static"
    layernorm: str = "exact"
    float_modules: Tuple[str, ...] = ()
    input: Optional[TensorConfig] = None
    output: Optional[TensorConfig] = None
    bias: Optional[TensorConfig] = None
    token_rows: bool = False

    def __post_init__(self) -> None:
        for k in ("weight", "activation", "input", "output", "bias"):
            v = getattr(self, k)
            if v is None and k in ("weight", "activation"):
                raise ValueError(f"{k} must be a TensorConfig; got None")
            if v is not None and not isinstance(v, TensorConfig):
                raise ValueError(f"{k} must be a TensorConfig (a mapping of bits, symmetric, ...); "
                                 f"got {v!r}")
        P.get(self.preset, "preset")
        if self.mode not in _MODES:
            raise ValueError(f"mode must be 'static', 'dynamic' or 'weight_only'; got {self.mode!r}")
        if self.layernorm not in _LAYERNORMS:
            raise ValueError(f"layernorm must be 'exact' or 'sole'; got {self.layernorm!r}")
        if not isinstance(self.token_rows, bool):
            raise ValueError(f"token_rows must be True or False; got {self.token_rows!r}")
        fm = self.float_modules
        if isinstance(fm, str) or not all(isinstance(m, str) for m in fm):
            raise ValueError(f"float_modules must be a list of names; got {fm!r}")
        object.__setattr__(self, "float_modules", tuple(fm))

    @property
    def preset_obj(self) -> P.Preset:
        """The :class:`qkernels.presets.Preset` of ``preset``."""
        return P.get(self.preset)

    @property
    def preset_name(self) -> str:
        return self.preset_obj.name

    @staticmethod
    def w8a8_pow2() -> "QuantConfig":
        """Power-of-two scales everywhere and the pow2 preset (shift-only hardware)."""
        return QuantConfig(weight=TensorConfig(bits=8, symmetric=True, per_channel=True, signed=True,
                                               power_of_two="ceil"),
                           activation=TensorConfig(bits=8, symmetric=True, signed=True,
                                                   power_of_two="ceil"),
                           preset="pow2")

    @staticmethod
    def w4a8() -> "QuantConfig":
        """4-bit per-channel symmetric weights, 8-bit activations."""
        return QuantConfig(weight=TensorConfig(bits=4, symmetric=True, per_channel=True, signed=True))

    @staticmethod
    def from_dict(d: Dict[str, Any]) -> "QuantConfig":
        """From a plain dict (e.g. a YAML file): {"weight": {...}, "activation": {...}, ...}.

        Raises ValueError naming the key for unknown keys and wrong types."""
        if not isinstance(d, dict):
            raise ValueError(f"a quantization config must be a mapping of keys; got "
                             f"{type(d).__name__}")
        known = {f.name for f in fields(QuantConfig)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(sorted(map(str, unknown)))} (known: "
                             f"{', '.join(sorted(known))})")
        base = QuantConfig()
        kw: Dict[str, Any] = {}
        for k in ("weight", "activation", "input", "output", "bias"):
            if d.get(k) is None:
                continue
            v = d[k]
            if not isinstance(v, dict):
                raise ValueError(f"{k} must be a mapping of {', '.join(_TC_FIELDS)}; got {v!r}")
            bad = set(v) - set(_TC_FIELDS)
            if bad:
                raise ValueError(f"{k}: unknown key(s) {', '.join(sorted(map(str, bad)))} (known: "
                                 f"{', '.join(_TC_FIELDS)})")
            start = getattr(base, k) if k in ("weight", "activation") else \
                TensorConfig(bits=32, symmetric=True, signed=True) if k == "bias" else TensorConfig()
            merged = {f: v.get(f, getattr(start, f)) for f in _TC_FIELDS}
            try:
                tc = TensorConfig.__new__(TensorConfig)
                for f, val in merged.items():
                    object.__setattr__(tc, f, val)
                tc.check(k)
            except ValueError:
                raise
            kw[k] = tc
        for k in ("preset", "mode", "layernorm"):
            if k in d:
                _check_type(k, d[k], (str, P.Preset), "a string")
                kw[k] = d[k]
        if "token_rows" in d:
            _check_type("token_rows", d["token_rows"], (bool,), "true or false")
            kw["token_rows"] = d["token_rows"]
        if "float_modules" in d:
            fm = d["float_modules"] or ()
            if isinstance(fm, str) or not isinstance(fm, (list, tuple)):
                raise ValueError(f"float_modules must be a list of names; got {fm!r}")
            kw["float_modules"] = tuple(str(m) for m in fm)
        return replace(base, **kw)

    @staticmethod
    def from_yaml(path: str) -> "QuantConfig":
        """Read a YAML file (needs PyYAML: ``pip install qkernels[yaml]``); errors name the file."""
        data = read_yaml(path)
        try:
            return QuantConfig.from_dict(data or {})
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc


def read_yaml(path: str) -> Any:
    """The content of a YAML file (``safe_load``); a syntax error is a ValueError naming
    ``file:line:column``. Needs PyYAML.

    Example:
        >>> # read_yaml("examples/quant_config.yaml")["preset"]
    """
    try:
        import yaml
    except ImportError as exc:   # pragma: no cover - depends on the environment
        raise ImportError("reading a YAML config needs PyYAML: pip install pyyaml") from exc
    with open(path) as f:
        try:
            return yaml.safe_load(f)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ValueError(f"{where}: not valid YAML: {problem}") from None


_TC_FIELDS = tuple(f.name for f in fields(TensorConfig))
