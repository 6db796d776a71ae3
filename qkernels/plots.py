"""Pictures a person would rather look at than read (matplotlib, an optional dependency:
``pip install qkernels[plot]``): every function writes one PNG and returns its path.

- :func:`plot_layer_errors`: per layer, the SQNR and cosine similarity of the integer run and of
  the fake-quant run against the float model (``IntegerModel.compare`` rows): where quantization
  hurts, and whether the integer kernels add anything to it.
- :func:`plot_ptf`: per channel of a LayerNorm input, the range of the data and the quantization
  step PTF chose for it (``scale * 2^alpha[c]``), with the alphas.
- :func:`plot_accuracy`: accuracy per training epoch (QAT), with the accuracies to beat as lines.

Example:
    >>> # from qkernels.plots import plot_layer_errors
    >>> # plot_layer_errors(im.compare(x), "out/layer_errors.png", title="resnet W8A8")
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

__all__ = ["plot_layer_errors", "plot_ptf", "plot_accuracy"]


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError("the plots need matplotlib: pip install 'qkernels[plot]'",
                          name="matplotlib") from exc
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt


def _save(fig: Any, path: str) -> str:
    import io as _io

    from .io import atomic_write_bytes

    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    fig.clf()
    _pyplot().close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _get(row: Any, key: str) -> float:
    v = row.get(key) if isinstance(row, dict) else getattr(row, key, float("nan"))
    return float("nan") if v is None else float(v)


def plot_layer_errors(rows: Sequence[Any], path: str, title: str = "") -> str:
    """Bars per layer: SQNR (dB) and cosine similarity against the float model, of the integer
    run and of the fake-quant run (rows: ``LayerReport`` objects or their dicts, as
    ``report.json`` holds them). Returns ``path``.

    Example:
        >>> # plot_layer_errors(im.compare(x_test[:64]), "layer_errors.png")
    """
    plt = _pyplot()
    if not rows:
        raise ValueError("plot_layer_errors: no layers to plot")
    names = [r["name"] if isinstance(r, dict) else r.name for r in rows]
    cap = 60.0
    s_int = [min(_get(r, "sqnr_db"), cap) for r in rows]
    s_fq = [min(_get(r, "fake_quant_sqnr_db"), cap) for r in rows]
    c_int = [_get(r, "cosine") for r in rows]
    c_fq = [_get(r, "fake_quant_cosine") for r in rows]
    x = np.arange(len(rows))
    width = 0.4
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(max(6.0, 0.42 * len(rows) + 2), 6.2), sharex=True)
    have_fq = not all(math.isnan(v) for v in s_fq)
    a1.bar(x - (width / 2 if have_fq else 0), s_int, width, label="integer vs float", color="#2b6cb0")
    if have_fq:
        a1.bar(x + width / 2, s_fq, width, label="fake-quant vs float", color="#ed8936")
    a1.set_ylabel(f"SQNR, dB (capped at {cap:.0f})")
    a1.grid(axis="y", alpha=0.3)
    a1.legend(loc="lower left", fontsize=8)
    a2.bar(x - (width / 2 if have_fq else 0), c_int, width, color="#2b6cb0")
    if have_fq:
        a2.bar(x + width / 2, c_fq, width, color="#ed8936")
    lo = min(v for v in c_int + c_fq if not math.isnan(v))
    a2.set_ylim(max(0.0, lo - 0.02), 1.0005)
    a2.set_ylabel("cosine similarity")
    a2.grid(axis="y", alpha=0.3)
    a2.set_xticks(x)
    a2.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
    fig.suptitle(title or "per-layer error against the float model")
    return _save(fig, path)


def plot_ptf(x: Any, params: Any, path: str, title: str = "", max_channels: Optional[int] = None) -> str:
    """Per channel of PTF-quantized data ``x`` (tokens x channels): the data's range (min / max)
    and the step ``scale * 2^alpha[c]`` PTF chose (log scale), with ``alpha`` underneath.
    ``params`` is a :class:`qkernels.PTFParams`. Returns ``path``.

    Example:
        >>> # p = qkernels.ptf_calibrate(x); plot_ptf(x, p, "ptf_channels.png")
    """
    plt = _pyplot()
    a = np.asarray(x, np.float64).reshape(-1, np.shape(x)[-1])
    alpha = np.asarray(params.alpha)
    if a.shape[1] != alpha.size:
        raise ValueError(f"plot_ptf: x has {a.shape[1]} channels, params {alpha.size}")
    c = a.shape[1] if max_channels is None else min(a.shape[1], int(max_channels))
    ch = np.arange(c)
    step = float(params.scale) * np.ldexp(1.0, alpha[:c])
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(10, 5.8), sharex=True,
                                 gridspec_kw={"height_ratios": [3, 1]})
    a1.fill_between(ch, a[:, :c].min(axis=0), a[:, :c].max(axis=0), step="mid", alpha=0.35,
                    color="#2b6cb0", label="data range (min..max)")
    lim = 127 * step
    a1.step(ch, lim, where="mid", color="#c53030", lw=0.9, label="PTF range, +-127 x step")
    a1.step(ch, -lim, where="mid", color="#c53030", lw=0.9)
    a1.set_ylabel("value")
    a1.legend(loc="upper right", fontsize=8)
    a1.grid(alpha=0.3)
    a2.bar(ch, alpha[:c], width=1.0, color="#ed8936")
    a2.set_ylabel("alpha")
    a2.set_xlabel("channel")
    a2.set_yticks(range(int(alpha.max()) + 1))
    fig.suptitle(title or f"PTF: scale {float(params.scale):.4g}, zero point {params.zero_point}")
    return _save(fig, path)


def plot_accuracy(epochs: Sequence[int], accuracy: Sequence[float], path: str,
                  lines: Optional[Dict[str, float]] = None, title: str = "") -> str:
    """Accuracy (%) per epoch of a training run, with horizontal lines for reference
    accuracies (``{"float": 98.9, "PTQ integer-exact": 80.6}``). Returns ``path``.

    Example:
        >>> # plot_accuracy([1, 2, 3], [91.0, 95.5, 97.2], "accuracy.png", {"float": 98.9})
    """
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(list(epochs), list(accuracy), marker="o", label="QAT (eval, fake-quant)")
    styles: List[Any] = ["--", ":", "-.", (0, (1, 3))]
    for i, (label, v) in enumerate((lines or {}).items()):
        ax.axhline(v, linestyle=styles[i % len(styles)], color=f"C{i + 1}",
                   label=f"{label} {v:.2f}%")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title or "accuracy per epoch")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)
