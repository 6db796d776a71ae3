"""Module swap: run a live model's modules integer-exact on qkernels, in place, without tracing.

:func:`swap` replaces the supported modules of a model (found by walking ``named_modules``, never
by ``torch.fx``) with :class:`IntegerModule` objects and puts the originals back when its ``with``
block ends. The user's script, hooks (a swapped module's hooks fire on its stand-in), tokenizer
and pipeline run unchanged; each swapped module computes with qkernels' kernels. This works on
models ``torch.fx`` cannot trace (Hugging Face BERT / MiniLM, ViT).

Each swapped module's integer layer is built through the op table (:mod:`qkernels.torch.ops`),
the same entries :func:`~qkernels.torch.from_torch_quantized` uses, from the module and the
quantization of the input it is called with (a static module's input parameters are those of the
tensor it receives; its layer is built on the first call with them and kept).

A PyTorch-quantized model (``quantize_dynamic``, or an eager ``convert``-ed model) is swapped as it
is: dynamic ``nnqd.Linear`` (float in, float out) and static ``nnq.Linear`` / ``nnq.Conv2d``
(quantized tensors in and out) run on qkernels with the engine's preset and equal PyTorch element
for element (``tests/torch/test_swap_vs_torch.py``).

Example:
    >>> import torch
    >>> from qkernels.torch import swap
    >>> net = torch.nn.Sequential(torch.nn.Linear(8, 4))
    >>> qnet = torch.ao.quantization.quantize_dynamic(net, {torch.nn.Linear}, dtype=torch.qint8)
    >>> x = torch.randn(3, 8)
    >>> with swap(qnet, compare=True) as swapped:
    ...     y = qnet(x)
    >>> sorted(swapped), type(qnet[0]).__name__
    (['0'], 'Linear')
    >>> bool(torch.equal(y, qnet(x))), swapped["0"].report()["mismatches"]
    (True, 0)
"""
from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, Callable, Dict, Iterator, Optional, Sequence, Tuple

import numpy as np
import torch

import qkernels as qk
from qkernels.linear import check_threads

from . import blocks as B
from . import layers as Ly
from . import ops as O
from ._runtime import QMeta, default_threads

__all__ = ["IntegerModule", "IntegerBlock", "swap", "SWAPPED_OPS", "FLOAT_OPS", "TRANSFORMER_OPS"]

F32 = np.float32
#: The op-table entries :func:`swap` replaces in a PyTorch-quantized model by default.
SWAPPED_OPS = ("linear_dynamic", "linear", "conv2d")
#: The modules :func:`swap` calibrates and replaces in a float model (``calibrate=`` given).
FLOAT_OPS = ("linear", "layernorm")
#: A float transformer swapped whole: its encoder blocks (:mod:`qkernels.torch.blocks`: attention,
#: residual add + LayerNorm, GELU MLP) and the Linear / LayerNorm modules outside them.
TRANSFORMER_OPS = B.BLOCK_KINDS + FLOAT_OPS
_HOOK_DICTS = ("_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_forward_hooks",
               "_forward_hooks_with_kwargs", "_forward_hooks_always_called")
_NP = {torch.quint8: np.uint8, torch.qint8: np.int8, torch.qint32: np.int32}


def _to_numpy(x: Any) -> Tuple[np.ndarray, Optional[QMeta]]:
    """A module's tensor argument as integers and their quantization, or float32 (meta None)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"a swapped module takes tensors; got {type(x).__name__}")
    if x.is_quantized:
        if x.qscheme() not in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            raise NotImplementedError(f"a swapped module takes per-tensor quantized inputs; got "
                                      f"{x.qscheme()}")
        q = x.int_repr().contiguous().numpy()
        return q, QMeta(float(x.q_scale()), int(x.q_zero_point()), np.dtype(_NP[x.dtype]))
    if x.dtype != torch.float32:
        raise TypeError(f"a swapped module takes float32 or quantized tensors; got {x.dtype}")
    return x.detach().contiguous().numpy(), None


def _to_torch(y: np.ndarray, meta: Optional[QMeta]) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(y))
    if meta is None:
        return t
    return torch._make_per_tensor_quantized_tensor(t, float(meta.scale), int(meta.zero_point))


def _float(t: torch.Tensor) -> np.ndarray:
    return (t.dequantize() if t.is_quantized else t).detach().numpy().astype(np.float64)


class IntegerModule(torch.nn.Module):
    """A module swapped in by :func:`swap`: computes ``original``'s op with qkernels.

    ``build(in_meta)`` makes the integer layer (:mod:`qkernels.torch.layers`) for an input of
    quantization ``in_meta`` (None: float); layers are kept by input quantization. A module
    swapped into a float model (``float_boundary``) quantizes its float input with ``in_quant``
    (``quantize_per_tensor``'s arithmetic; None: the layer takes float32, e.g. LayerNorm's PTF),
    runs its integer layer and returns the output dequantized: integer-exact inside, float at its
    boundary. With ``compare=True`` each call also runs the original module on the same input and
    accumulates the integer-vs-PyTorch figures that :meth:`report` returns.

    Example:
        >>> # with swap(qmodel, compare=True) as swapped: qmodel(x)
        >>> # swapped["encoder.layer.0.attention.self.query"].report()["mismatches"]  -> 0
    """

    def __init__(self, name: str, original: torch.nn.Module,
                 build: Callable[[Optional[QMeta]], Ly.Layer], threads: Optional[int] = None,
                 compare: bool = False, in_quant: Optional[QMeta] = None,
                 float_boundary: bool = False) -> None:
        super().__init__()
        self.name = name
        # kept out of the module tree: the original is not a child of its stand-in
        self.__dict__["original"] = original
        # the original's hooks fire on its stand-in (the same dicts: hooks added meanwhile too)
        for k in _HOOK_DICTS:
            if hasattr(original, k):
                setattr(self, k, getattr(original, k))
        self._build = build
        self._layers: Dict[Optional[QMeta], Tuple[Ly.Layer, Any]] = {}
        self.threads = threads
        # the thread budget, resolved once per module (not a CPU-affinity query per call)
        self._t = default_threads() if threads is None else threads
        self.compare = compare
        self.in_quant = in_quant
        self.float_boundary = float_boundary
        self.calls = 0
        self._stats = {"values": 0, "mismatches": 0, "max_abs_diff": 0.0, "sig": 0.0, "err": 0.0}

    def layer(self, in_meta: Optional[QMeta]) -> Ly.Layer:
        """The integer layer this module runs for inputs quantized as ``in_meta``."""
        if in_meta not in self._layers:
            L = self._build(in_meta)
            self._layers[in_meta] = (L, L.kernel())
        return self._layers[in_meta][0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, meta = _to_numpy(x)
        if self.in_quant is not None and meta is None:
            meta = self.in_quant
            a = qk.quantize(a, F32(meta.scale), meta.zero_point, dtype=meta.dtype, bits=meta.bits,
                            flavor="torch")
        self.layer(meta)
        L, kernel = self._layers[meta]
        q = kernel(self._t, a)
        if self.float_boundary and L.out is not None:
            y = torch.from_numpy(qk.dequantize(q, F32(L.out.scale), L.out.zero_point))
        else:
            y = _to_torch(q, L.out)
        self.__dict__["calls"] += 1   # not Module.__setattr__ (its Parameter checks are slow)
        if self.compare:
            with torch.no_grad():
                # forward(), not __call__: the shared hooks fire once a call, on the stand-in
                self._accumulate(y, self.original.forward(x))
        return y

    def _accumulate(self, y: torch.Tensor, ref: torch.Tensor) -> None:
        s = self._stats
        if y.is_quantized and ref.is_quantized:
            a, b = y.int_repr().numpy(), ref.int_repr().numpy()
        else:
            a, b = _float(y), _float(ref)
        s["values"] += a.size
        s["mismatches"] += int(np.count_nonzero(a != b))
        fa, fb = _float(y), _float(ref)
        d = fa - fb
        if d.size:
            s["max_abs_diff"] = max(s["max_abs_diff"], float(np.abs(d).max()))
        s["sig"] += float(np.sum(fb * fb))
        s["err"] += float(np.sum(d * d))

    def report(self) -> Dict[str, Any]:
        """Integer vs the original module over the calls made with ``compare=True``: values
        compared, mismatches (integers for quantized outputs, floats otherwise), the largest
        absolute difference and the SQNR in dB (inf when equal)."""
        s = self._stats
        sqnr = float("inf") if s["err"] == 0 else float(10 * np.log10(s["sig"] / s["err"])) \
            if s["sig"] > 0 else float("-inf")
        return {"name": self.name, "op": type(self.original).__name__, "calls": self.calls,
                "values": s["values"], "mismatches": s["mismatches"],
                "max_abs_diff": s["max_abs_diff"], "sqnr_db": sqnr}

    def extra_repr(self) -> str:
        return f"{self.name!r}, integer {type(self.original).__name__} on qkernels"


def _quantized_builder(ctx: O.QuantizedContext, spec: O.OpSpec, name: str,
                       mod: torch.nn.Module) -> Callable[[Optional[QMeta]], Ly.Layer]:
    def build(in_meta: Optional[QMeta]) -> Ly.Layer:
        return spec.from_quantized(ctx, name, mod, (O.Value("x", in_meta),), {})
    return build


def _set(model: torch.nn.Module, name: str, mod: torch.nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    owner = model.get_submodule(parent) if parent else model
    setattr(owner, leaf, mod)


class IntegerBlock(IntegerModule):
    """A transformer block swapped in by :func:`swap` (``ops`` with :data:`TRANSFORMER_OPS`):
    one of :mod:`qkernels.torch.blocks`' integer blocks in place of a BertSelfAttention
    (``kind="attention"``), a BertSelfOutput / BertOutput (``"residual_layernorm"``) or a
    BertIntermediate (``"intermediate"``). It takes the original's arguments, quantizes its
    float inputs with the calibrated parameters (the producer's output quantization: lossless),
    runs the block's kernels and returns the output dequantized (attention: ``(context, None)``,
    as the SDPA path of Hugging Face returns no weights). ``last`` keeps the integer tensors of
    the last call when ``keep=True``.

    Example:
        >>> # with swap(minilm, [tokens], ops=TRANSFORMER_OPS, compare=True) as s: minilm(**tokens)
        >>> # s["encoder.layer.0.attention.self"].report()["sqnr_db"]
    """

    def __init__(self, name: str, original: torch.nn.Module, kind: str, block: Any,
                 threads: Optional[int] = None, compare: bool = False,
                 carry: Optional[B.Carry] = None) -> None:
        super().__init__(name, original, lambda m: None, threads, compare)  # type: ignore
        self.kind = kind
        self.block = block
        self.keep = False
        self.last: Dict[str, np.ndarray] = {}
        # the swap's integer tensors behind the blocks' float outputs (one per swap)
        self.__dict__["carry"] = B.Carry() if carry is None else carry
        if kind == "encoder_block":   # the int32 residual stream's quantization
            self.__dict__["stream"] = B.ActQ(float(block.u), 0, np.dtype(np.int32))

    def forward(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        t = default_threads() if self.threads is None else self.threads
        bl = self.block
        cy = self.carry
        if self.kind == "attention":
            h = args[0] if args else kwargs["hidden_states"]
            mask = args[1] if len(args) > 1 else kwargs.get("attention_mask")
            if h.dim() != 3:
                raise ValueError(f"{self.name}: attention takes (batch, sequence, hidden); got "
                                 f"shape {tuple(h.shape)}")
            x8 = cy.quant(h, bl.x)
            ints = bl(x8, B.keep_mask(mask), t)
            ints["x"] = x8
            y: Any = (cy.dequant(ints["context"], bl.out), None)
        elif self.kind == "residual_layernorm":
            x, r = (args + tuple(kwargs.values()))[:2]
            x8, r8 = cy.quant(x, bl.x), cy.quant(r, bl.r)
            q = bl.ptf_input(x8, r8, t)
            out = qk.ptf_layernorm(q, bl.ln)
            ints = {"x": x8, "residual": r8, "ln_input": q, "out": out}
            y = cy.dequant(out, bl.out)
        elif self.kind == "encoder_block":
            x = args[0] if args else kwargs["input"]
            if x.dim() != 3:
                raise ValueError(f"{self.name}: an encoder block takes (batch, sequence, "
                                 f"hidden); got shape {tuple(x.shape)}")
            ints = bl(cy.quant(x, self.stream), t)
            y = cy.dequant(ints["out"], self.stream)
        elif self.kind == "layernorm":
            x = args[0] if args else kwargs["input"]
            q = bl.ptf.quantize(x.detach().float().contiguous().numpy())
            out = qk.ptf_layernorm(q, bl.ln)
            ints = {"ln_input": q, "out": out}
            y = cy.dequant(out, bl.out)
        else:
            x8 = cy.quant(args[0] if args else kwargs["hidden_states"], bl.x)
            out = bl(x8, t)
            ints = {"x": x8, "out": out}
            y = cy.dequant(out, bl.out)
        if self.keep:
            self.__dict__["last"] = ints
        self.__dict__["calls"] += 1
        if self.compare:
            with torch.no_grad():
                ref = self.original.forward(*args, **kwargs)
            first = (lambda v: v[0] if isinstance(v, tuple) else v)
            self._accumulate(first(y), first(ref))
        return y


class _Node:
    """What the op table's float builders read of a graph node: its name."""

    def __init__(self, name: str) -> None:
        self.name = name


def _run_calibration(model: torch.nn.Module, calibrate: Any) -> int:
    """Runs ``calibrate(model)`` (a callable) or the model on each batch of an iterable (a
    tensor, a tuple of positional arguments or a dict of keyword arguments); returns the count."""
    with torch.no_grad():
        if callable(calibrate):
            calibrate(model)
            return 1
        n = 0
        for b in calibrate:
            if isinstance(b, Mapping):   # keyword arguments (a tokenizer's BatchEncoding too)
                model(**b)
            elif isinstance(b, (tuple, list)):
                model(*b)
            else:
                model(b if isinstance(b, torch.Tensor) else torch.from_numpy(np.asarray(b, F32)))
            n += 1
        return n


def _float_targets(model: torch.nn.Module, ops: Sequence[str]) -> Dict[str, torch.nn.Module]:
    types = tuple(t for o, t in (("linear", torch.nn.Linear), ("layernorm", torch.nn.LayerNorm))
                  if o in ops)
    found: Dict[str, torch.nn.Module] = {}
    for name, mod in model.named_modules():
        if name and isinstance(mod, types) and not isinstance(mod, IntegerModule):
            if isinstance(mod, torch.nn.LayerNorm) and len(mod.normalized_shape) != 1:
                raise NotImplementedError(f"module {name}: LayerNorm over "
                                          f"{tuple(mod.normalized_shape)}; the integer LayerNorm "
                                          "normalizes the last axis only")
            found[name] = mod
    return found


def _block_targets(model: torch.nn.Module,
                   ops: Sequence[str]) -> Dict[str, Tuple[str, torch.nn.Module]]:
    """The model's transformer blocks of the kinds in ``ops`` (outermost first; a block inside
    another is not taken twice)."""
    found: Dict[str, Tuple[str, torch.nn.Module]] = {}
    for name, mod in model.named_modules():
        if not name or isinstance(mod, IntegerModule):
            continue
        kind = B.block_kind(mod)
        if kind == "layernorm" and not any(k in ops for k in B.BLOCK_KINDS):
            continue   # alone, a LayerNorm is FLOAT_OPS' (per-tensor output) swap
        if kind is None or kind not in ops or any(name.startswith(p + ".") for p in found):
            continue
        found[name] = (kind, mod)
    return found


def _calibrated(model: torch.nn.Module, calibrate: Any, cfg: Any, ops: Sequence[str],
                threads: Optional[int], compare: bool) -> Dict[str, IntegerModule]:
    """Observers on the inputs and outputs of the model's nn.Linear / nn.LayerNorm modules while
    ``calibrate`` runs, then one IntegerModule a module (float at its boundary)."""
    from .quantize import quantize_weights

    blocks = _block_targets(model, ops)
    targets = {n: m for n, m in _float_targets(model, ops).items()
               if n not in blocks and not any(n.startswith(b + ".") for b in blocks)}
    act = cfg.activation
    obs = {n: (act.observer_for(), act.observer_for()) for n in targets}
    bcal = B.BlockCalibration(blocks, act.observer_for)
    rows: Dict[str, list] = {n: [] for n, m in targets.items() if isinstance(m, torch.nn.LayerNorm)}

    def hook(name: str) -> Callable[..., None]:
        def record(mod: torch.nn.Module, args: Tuple, out: Any) -> None:
            x = args[0].detach().numpy()
            obs[name][0].update(x)
            obs[name][1].update(out.detach().numpy())
            if name in rows:
                rows[name].append(x.reshape(-1, x.shape[-1]).astype(F32))
        return record
    handles = [m.register_forward_hook(hook(n)) for n, m in targets.items()]
    bcal.attach()
    try:
        seen = _run_calibration(model, calibrate)
    finally:
        for h in handles:
            h.remove()
        bcal.detach()
    if seen == 0:
        raise ValueError("calibrate is empty: give at least one batch")

    def meta(o: qk.Observer) -> QMeta:
        p = o.calculate_qparams()
        return QMeta(float(np.asarray(p.scale).reshape(-1)[0]),
                     int(np.asarray(p.zero_point).reshape(-1)[0]), act.dtype(), act.qbits())
    swapped: Dict[str, IntegerModule] = {}
    carry = B.Carry()   # block to block: the integer tensors behind the float outputs
    for name, (kind, mod) in blocks.items():
        if bcal.seen(name):
            swapped[name] = IntegerBlock(name, mod, kind, bcal.block(name, cfg), threads, compare,
                                         carry=carry)
    for name, mod in targets.items():
        if not obs[name][0].batches:   # never called while calibrating: it stays float
            continue
        xm, om = meta(obs[name][0]), meta(obs[name][1])
        if isinstance(mod, torch.nn.LayerNorm):
            # the float input PTF-quantized directly (per-channel power-of-two factors: the
            # residual stream's outlier channels keep their resolution)
            c = int(mod.normalized_shape[0])
            gamma = mod.weight.detach().numpy().astype(F32) if mod.weight is not None \
                else np.ones(c, F32)
            beta = mod.bias.detach().numpy().astype(F32) if mod.bias is not None \
                else np.zeros(c, F32)
            kz = om.zero_point - 128 if om.dtype == np.uint8 else om.zero_point
            ln = qk.prepare_layernorm(qk.ptf_calibrate(rows[name], method="fqvit"), gamma, beta,
                                      method=cfg.layernorm, out_scale=om.scale, out_zero_point=kz,
                                      eps=float(mod.eps))
            L = Ly.LayerNormLayer(name, (name + ":input",), om, x=None, ln=ln, gamma=gamma,
                                  beta=beta)
            swapped[name] = IntegerModule(name, mod, lambda m, L=L: L, threads, compare,
                                          float_boundary=True)
            continue
        W = quantize_weights(mod, cfg, name, name + ":input")
        ctx = O.FloatContext(cfg, lambda n, om=om: om, {name: W}, {},
                             None if cfg.bias is None else cfg.bias.bits)

        def build(in_meta: Optional[QMeta], ctx: Any = ctx, name: str = name,
                  mod: torch.nn.Module = mod) -> Ly.Layer:
            return O.by_name("linear").from_float(ctx, _Node(name), mod,
                                                  (O.Value(name + ":input", in_meta),), {})
        swapped[name] = IntegerModule(name, mod, build, threads, compare, in_quant=xm,
                                      float_boundary=True)
    return swapped


@contextlib.contextmanager
def swap(model: torch.nn.Module, calibrate: Any = None, *, config: Any = None,
         ops: Optional[Sequence[str]] = None, engine: Optional[str] = None,
         threads: Optional[int] = None,
         compare: bool = False) -> Iterator[Dict[str, IntegerModule]]:
    """Swap ``model``'s modules for qkernels' integer modules, in place, for the duration of a
    ``with`` block; yields ``{module name: IntegerModule}`` and puts the original modules back on
    exit (also when the block raises).

    Two kinds of model:

    - a PyTorch-quantized model (``calibrate`` None): its quantized modules run on qkernels and
      equal PyTorch element for element. ``ops`` names the op-table entries to swap (default
      :data:`SWAPPED_OPS`: dynamic Linear, static Linear and Conv2d, with their fused ReLU
      forms). ``engine`` is the quantized engine the model runs with (default
      ``torch.backends.quantized.engine``: ``fbgemm``/``x86`` or ``qnnpack``), which picks the
      conv / linear preset.
    - a float model with ``calibrate`` (a callable ``calibrate(model)`` that runs the user's own
      pipeline, or an iterable of batches: tensors, argument tuples or keyword dicts): observers
      on the inputs and outputs of its ``nn.Linear`` and ``nn.LayerNorm`` modules (``ops``:
      :data:`FLOAT_OPS`) calibrate while it runs, then each is swapped for an integer module
      configured by ``config`` (a :class:`~qkernels.torch.QuantConfig`, static mode; default W8A8,
      the fbgemm preset, the exact integer LayerNorm on PTF): the input quantized with its
      calibrated parameters, the integer Linear / LayerNorm, the output dequantized.

    - a float transformer with ``calibrate`` and ``ops=TRANSFORMER_OPS``: its encoder blocks
      are swapped whole for the integer blocks of :mod:`qkernels.torch.blocks` (Hugging Face
      BertSelfAttention, BertSelfOutput / BertOutput, BertIntermediate; torchvision's ViT
      EncoderBlock; a LayerNorm outside them), every op inside in integers; Linear and
      LayerNorm modules outside the blocks as above. Block boundaries are lossless (each
      block's input quantization is its producer's output quantization).

    ``threads`` is the kernels' thread count (None: chosen by size). ``compare=True`` runs each
    original module beside its stand-in and keeps the figures of :meth:`IntegerModule.report`
    (integer vs the original: 0 mismatches for a PyTorch-quantized model, the quantization error
    for a float one).

    Nothing is traced: the model's own ``forward`` runs, so models ``torch.fx`` cannot trace
    (Hugging Face BERT / MiniLM) are swapped as well.

    Example:
        >>> # qmodel = quantize_dynamic(minilm, {torch.nn.Linear}, dtype=torch.qint8)
        >>> # with swap(qmodel): out = qmodel(**tokens)   # == PyTorch's, element for element
        >>> # with swap(minilm, [tokens]) as s: out = minilm(**tokens)   # calibrated, then integer
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    allowed = SWAPPED_OPS if calibrate is None else TRANSFORMER_OPS
    ops = (SWAPPED_OPS if calibrate is None else FLOAT_OPS) if ops is None else ops
    if isinstance(ops, str) or not all(isinstance(o, str) for o in ops):
        raise TypeError("ops must be a sequence of op-table names, e.g. ('linear_dynamic',)")
    unknown = [o for o in ops if o not in allowed]
    if unknown:
        where = "in a PyTorch-quantized model" if calibrate is None else "after calibration"
        raise ValueError(f"ops: {unknown[0]!r} cannot be swapped {where}; choose from "
                         f"{', '.join(allowed)}")
    threads = None if threads is None else check_threads(threads)
    found: Dict[str, IntegerModule] = {}
    if calibrate is not None:
        from .config import QuantConfig

        cfg = config or QuantConfig()
        if not isinstance(cfg, QuantConfig):
            raise TypeError(f"config must be a QuantConfig, got {type(cfg).__name__}")
        if cfg.mode != "static":
            raise ValueError(f"config.mode must be 'static' for a calibrated swap; got "
                             f"{cfg.mode!r}")
        found = _calibrated(model, calibrate, cfg, ops, threads, compare)
    else:
        if config is not None:
            raise ValueError("config applies to a calibrated swap (give calibrate=); a "
                             "PyTorch-quantized model carries its own quantization")
        engine = engine or torch.backends.quantized.engine
        if engine not in ("fbgemm", "x86", "qnnpack"):
            raise ValueError(f"engine must be fbgemm, x86 or qnnpack; got {engine!r}")
        ctx = O.QuantizedContext(engine)
        for name, mod in model.named_modules():
            if not name or isinstance(mod, IntegerModule):
                continue
            spec = O.find_module(mod, quantized=True)
            if spec is None or spec.name not in ops:
                continue
            if any(name.startswith(p + ".") for p in found):
                continue
            found[name] = IntegerModule(name, mod, _quantized_builder(ctx, spec, name, mod),
                                        threads, compare)
    done = []
    try:
        for name, im in found.items():
            _set(model, name, im)
            done.append(name)
        yield found
    finally:
        for name in reversed(done):
            _set(model, name, found[name].original)
