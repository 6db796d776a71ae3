"""The YAML configuration of the power-of-two PTQ -> QAT -> PTQ pipeline.

The keys are those of the power-of-two quantizer this pipeline replaces, checked before anything
runs (an unknown key or a wrong type is a :class:`ConfigError` naming the key path, e.g.
``training.optimizer.type``), plus a few of ours (marked "ours" below)::

    model:
      name: reference:resnet      # reference:<name> | module:factory | model.pt (as `quantize --model`)
    data:
      dataset: digits             # digits | module:factory returning ((x_train, y_train), (x_test, y_test))
    quantization:                 # every scale a power of two; requantization is a shift (pow2 preset)
      weight: {bitwidth: 8, symmetric: true, power_of_2: true, per_channel: false}   # per_channel: ours
      input:  {bitwidth: 8, symmetric: true, power_of_2: true}    # every activation a layer reads
      output: {bitwidth: 8, symmetric: true, power_of_2: true}    # the tensors the model returns
      bias:   {bitwidth: 32, symmetric: true, power_of_2: true}   # int32 at scale s_in * s_w
    training:
      epochs: 10
      learning_rate: 0.0001
      weight_decay: 0.01
      batch_size: 64
      seed: 0                                       # ours
      optimizer: {type: AdamW, momentum: 0.9}       # AdamW | Adam | SGD (momentum: SGD only)
      scheduler: {type: StepLR, step_size: 10, gamma: 0.1}   # StepLR | CosineAnnealingLR
      criterion: CrossEntropyLoss                   # CrossEntropyLoss | MSELoss (one-hot targets)
    ptq:
      max_eval_batches: null        # batches of the held-out set evaluated (null: all)
      calibration_batches: 8        # training batches the activation ranges are calibrated on
      observer: minmax              # ours: minmax | moving_average | percentile | mse | entropy
                                    #   | histogram | mode (the activation range observer)
    qat:                            # ours
      mode: weight_only             # weight_only (the tool's step 2) | full (activations too)
      learn_scales: false           # TQT: train log2 of every scale (powers of two stay powers of two)
      scale_learning_rate: 0.01     # learning rate of the log2 scales
      scale_rounding: ceil          # ceil (TQT) | round (LSQ-style) of the learned log2 scale
      scale_init: mse               # learned scales start from: mse (the power-of-two scale with
                                    #   the least squared error on the weights / calibration
                                    #   batches) | ptq (the PTQ's min-max / observer scales)

``symmetric: true`` activations are signed with zero point 0; ``symmetric: false`` ones unsigned
with a zero point. Weights are symmetric (the integer kernels take zero-point-0 weights).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

from ..config import OBSERVERS, read_yaml

__all__ = ["ConfigError", "TensorSpec", "TrainingSpec", "PTQSpec", "QATSpec", "PipelineConfig",
           "load_config"]

OPTIMIZERS = ("AdamW", "Adam", "SGD")
SCHEDULERS = ("StepLR", "CosineAnnealingLR")
CRITERIA = ("CrossEntropyLoss", "MSELoss")
QAT_MODES = ("weight_only", "full")
ROUNDINGS = ("ceil", "round")
SCALE_INITS = ("mse", "ptq")
TENSORS = ("weight", "input", "output", "bias")
#: the widest activation the integer conv / linear kernels read and write
MAX_ACT_BITS = 8


class ConfigError(ValueError):
    """A bad pipeline configuration; the message starts with the key path."""


@dataclass(frozen=True)
class TensorSpec:
    """How one kind of tensor is quantized (``quantization.<kind>``)."""

    bitwidth: int = 8
    symmetric: bool = True
    power_of_2: bool = True
    per_channel: bool = False


@dataclass(frozen=True)
class TrainingSpec:
    epochs: int = 10
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    batch_size: int = 64
    seed: int = 0
    optimizer: str = "AdamW"
    momentum: float = 0.9
    scheduler: str = "StepLR"
    step_size: int = 10
    gamma: float = 0.1
    criterion: str = "CrossEntropyLoss"


@dataclass(frozen=True)
class PTQSpec:
    max_eval_batches: Optional[int] = None
    calibration_batches: int = 8
    observer: str = "minmax"


@dataclass(frozen=True)
class QATSpec:
    mode: str = "weight_only"
    learn_scales: bool = False
    scale_learning_rate: float = 0.01
    scale_rounding: str = "ceil"
    scale_init: str = "mse"


def _default_quantization() -> Dict[str, TensorSpec]:
    return {"weight": TensorSpec(8), "input": TensorSpec(8), "output": TensorSpec(8),
            "bias": TensorSpec(32)}


@dataclass(frozen=True)
class PipelineConfig:
    """The whole pipeline configuration (see the module docstring for the YAML form).

    Example:
        >>> cfg = PipelineConfig.from_dict({"quantization": {"weight": {"bitwidth": 4}},
        ...                                 "training": {"epochs": 3}})
        >>> cfg.quantization["weight"].bitwidth, cfg.training.epochs, cfg.training.optimizer
        (4, 3, 'AdamW')
    """

    model: str = "reference:resnet"
    dataset: str = "digits"
    quantization: Dict[str, TensorSpec] = field(default_factory=_default_quantization)
    training: TrainingSpec = field(default_factory=TrainingSpec)
    ptq: PTQSpec = field(default_factory=PTQSpec)
    qat: QATSpec = field(default_factory=QATSpec)

    @staticmethod
    def from_dict(d: Optional[Mapping[str, Any]]) -> "PipelineConfig":
        """Check every key and type of ``d`` (a parsed YAML document) and fill in the defaults.

        Raises:
            ConfigError: an unknown key, a wrong type or a value out of range; the message
                names the key path (``training.optimizer.type: ...``).
        """
        d = _section(d, "", ("model", "data", "quantization", "training", "ptq", "qat"))
        model = _section(d.get("model"), "model", ("name",))
        data = _section(d.get("data"), "data", ("dataset",))
        quant = _section(d.get("quantization"), "quantization", TENSORS)
        q = _default_quantization()
        for kind in TENSORS:
            keys = ("bitwidth", "symmetric", "power_of_2") + (("per_channel",) if kind == "weight" else ())
            t = _section(quant.get(kind), f"quantization.{kind}", keys)
            base = q[kind]
            q[kind] = TensorSpec(
                bitwidth=_int(t, "bitwidth", f"quantization.{kind}", base.bitwidth,
                              (2, 32 if kind == "bias" else 16)),
                symmetric=_bool(t, "symmetric", f"quantization.{kind}", base.symmetric),
                power_of_2=_bool(t, "power_of_2", f"quantization.{kind}", base.power_of_2),
                per_channel=_bool(t, "per_channel", f"quantization.{kind}", base.per_channel))
            where = f"quantization.{kind}"
            if not q[kind].power_of_2:
                raise ConfigError(f"{where}.power_of_2: false is not supported: this pipeline gives "
                                  "power-of-two scales (requantization is a bit shift, preset pow2)")
            if kind in ("weight", "bias") and not q[kind].symmetric:
                raise ConfigError(f"{where}.symmetric: false is not supported: the integer kernels "
                                  f"take {kind}s with zero point 0")
            if kind == "weight" and q[kind].bitwidth > 8:
                raise ConfigError(f"{where}.bitwidth: {q[kind].bitwidth}: the integer conv / linear "
                                  "kernels take 2..8-bit weights")
        tr = _section(d.get("training"), "training",
                      ("epochs", "learning_rate", "weight_decay", "batch_size", "seed", "optimizer",
                       "scheduler", "criterion"))
        opt = _section(tr.get("optimizer"), "training.optimizer", ("type", "momentum"))
        sch = _section(tr.get("scheduler"), "training.scheduler", ("type", "step_size", "gamma"))
        b = TrainingSpec()
        training = TrainingSpec(
            epochs=_int(tr, "epochs", "training", b.epochs, (0, None)),
            learning_rate=_float(tr, "learning_rate", "training", b.learning_rate, positive=True),
            weight_decay=_float(tr, "weight_decay", "training", b.weight_decay),
            batch_size=_int(tr, "batch_size", "training", b.batch_size, (1, None)),
            seed=_int(tr, "seed", "training", b.seed, (0, None)),
            optimizer=_choice(opt, "type", "training.optimizer", b.optimizer, OPTIMIZERS),
            momentum=_float(opt, "momentum", "training.optimizer", b.momentum),
            scheduler=_choice(sch, "type", "training.scheduler", b.scheduler, SCHEDULERS),
            step_size=_int(sch, "step_size", "training.scheduler", b.step_size, (1, None)),
            gamma=_float(sch, "gamma", "training.scheduler", b.gamma, positive=True),
            criterion=_choice(tr, "criterion", "training", b.criterion, CRITERIA))
        p = _section(d.get("ptq"), "ptq", ("max_eval_batches", "calibration_batches", "observer"))
        ptq = PTQSpec(max_eval_batches=_int(p, "max_eval_batches", "ptq", None, (1, None), True),
                      calibration_batches=_int(p, "calibration_batches", "ptq", 8, (1, None)),
                      observer=_choice(p, "observer", "ptq", "minmax", OBSERVERS))
        a = _section(d.get("qat"), "qat", ("mode", "learn_scales", "scale_learning_rate",
                                           "scale_rounding", "scale_init"))
        qb = QATSpec()
        qat = QATSpec(mode=_choice(a, "mode", "qat", qb.mode, QAT_MODES),
                      learn_scales=_bool(a, "learn_scales", "qat", qb.learn_scales),
                      scale_learning_rate=_float(a, "scale_learning_rate", "qat",
                                                 qb.scale_learning_rate, positive=True),
                      scale_rounding=_choice(a, "scale_rounding", "qat", qb.scale_rounding, ROUNDINGS),
                      scale_init=_choice(a, "scale_init", "qat", qb.scale_init, SCALE_INITS))
        return PipelineConfig(model=_str(model, "name", "model", PipelineConfig.model),
                              dataset=_str(data, "dataset", "data", PipelineConfig.dataset),
                              quantization=q, training=training, ptq=ptq, qat=qat)

    def check_deployable(self, final_ptq: bool = True) -> None:
        """Raise :class:`ConfigError` when an integer model with quantized activations is needed
        (the final PTQ, or ``qat.mode: full``, whose activation scales start from a PTQ) and the
        activations are wider than the integer conv / linear kernels carry."""
        if not final_ptq and self.qat.mode != "full":
            return
        for kind in ("input", "output"):
            bits = self.quantization[kind].bitwidth
            if bits > MAX_ACT_BITS:
                raise ConfigError(
                    f"quantization.{kind}.bitwidth: {bits}: the integer conv / linear kernels read "
                    f"and write 2..{MAX_ACT_BITS}-bit activations, so the final integer model "
                    f"(step 3) cannot have {bits}-bit {kind}s; use a bitwidth <= {MAX_ACT_BITS}, "
                    "or --no-final-ptq with qat.mode weight_only (weights only)")

    def to_dict(self) -> Dict[str, Any]:
        """The configuration as plain data, in the YAML layout (every default filled in)."""
        t = self.training
        return {
            "model": {"name": self.model}, "data": {"dataset": self.dataset},
            "quantization": {k: ({kk: vv for kk, vv in asdict(v).items()
                                  if kk != "per_channel" or k == "weight"})
                             for k, v in self.quantization.items()},
            "training": {"epochs": t.epochs, "learning_rate": t.learning_rate,
                         "weight_decay": t.weight_decay, "batch_size": t.batch_size, "seed": t.seed,
                         "optimizer": {"type": t.optimizer, "momentum": t.momentum},
                         "scheduler": {"type": t.scheduler, "step_size": t.step_size,
                                       "gamma": t.gamma},
                         "criterion": t.criterion},
            "ptq": asdict(self.ptq), "qat": asdict(self.qat)}


def load_config(path: Optional[str] = None, overrides: Optional[Mapping[str, Any]] = None
                ) -> PipelineConfig:
    """Read and check a YAML configuration (None: the defaults); ``overrides`` is a nested dict
    merged over the file's content (e.g. ``{"training": {"epochs": 3}}`` from ``--epochs 3``).

    Example:
        >>> load_config(None, {"qat": {"mode": "full"}}).qat.mode
        'full'
    """
    data: Any = {}
    if path is not None:
        try:
            data = read_yaml(path)
        except OSError as exc:
            raise ConfigError(f"cannot read the configuration {path}: {exc}") from exc
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections, got "
                              f"{type(data).__name__}")
    return PipelineConfig.from_dict(_merge(data, overrides or {}))


def _merge(a: Mapping[str, Any], b: Mapping[str, Any]) -> Dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def _path(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _section(v: Any, where: str, keys: Tuple[str, ...]) -> Dict[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise ConfigError(f"{where or 'the configuration'}: expected a mapping of "
                          f"{', '.join(keys)}; got {type(v).__name__} {v!r}")
    unknown = [k for k in v if k not in keys]
    if unknown:
        raise ConfigError(f"{_path(where, str(unknown[0]))}: unknown key (known here: "
                          f"{', '.join(keys)})")
    return dict(v)


def _int(d: Mapping[str, Any], key: str, where: str, default: Optional[int],
         bounds: Tuple[int, Optional[int]], nullable: bool = False) -> Any:
    if key not in d or (nullable and d[key] is None):
        return default
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"{_path(where, key)}: expected an integer, got {type(v).__name__} {v!r}")
    lo, hi = bounds
    if v < lo or (hi is not None and v > hi):
        raise ConfigError(f"{_path(where, key)}: {v} is out of range "
                          f"[{lo}, {'inf' if hi is None else hi}]")
    return v


def _float(d: Mapping[str, Any], key: str, where: str, default: float, positive: bool = False) -> float:
    if key not in d:
        return default
    v = d[key]
    if isinstance(v, str):   # YAML 1.1 reads 1e-4 (no dot) as a string
        try:
            v = float(v)
        except ValueError:
            raise ConfigError(f"{_path(where, key)}: expected a number, got the string {v!r}") from None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"{_path(where, key)}: expected a number, got {type(v).__name__} {v!r}")
    v = float(v)
    if v != v or v in (float("inf"), float("-inf")) or v < 0 or (positive and v == 0):
        raise ConfigError(f"{_path(where, key)}: {v} must be finite and "
                          f"{'> 0' if positive else '>= 0'}")
    return v


def _bool(d: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
    if key not in d:
        return default
    if not isinstance(d[key], bool):
        raise ConfigError(f"{_path(where, key)}: expected true or false, got "
                          f"{type(d[key]).__name__} {d[key]!r}")
    return d[key]


def _str(d: Mapping[str, Any], key: str, where: str, default: str) -> str:
    if key not in d:
        return default
    if not isinstance(d[key], str) or not d[key]:
        raise ConfigError(f"{_path(where, key)}: expected a non-empty string, got "
                          f"{type(d[key]).__name__} {d[key]!r}")
    return d[key]


def _choice(d: Mapping[str, Any], key: str, where: str, default: str, choices: Tuple[str, ...]) -> str:
    v = _str(d, key, where, default)
    if v not in choices:
        raise ConfigError(f"{_path(where, key)}: must be one of {', '.join(choices)}; got {v!r}")
    return v
