"""Reports on a data-generation run: the loss history as CSV, a PNG grid of generated images
beside real ones and a PNG of the per-layer alignment loss (matplotlib, an optional extra:
``pip install qkernels[plot]``), and the statistics tables of the results file."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .engine import DataGenResult


def history_csv(res: DataGenResult) -> str:
    """One row per iteration (0 = before the first step): the alignment loss of every layer
    over all images, then the mean total / BatchNorm / output loss of the step."""
    lines = ["iteration," + ",".join(res.layers) + ",loss,bn_loss,output_loss"]
    for i in range(len(res.history[res.layers[0]])):
        extra = ["", "", ""] if i == 0 else [f"{res.loss[i - 1]:.6g}", f"{res.bn_loss[i - 1]:.6g}",
                                             f"{res.out_loss[i - 1]:.6g}"]
        lines.append(",".join([str(i)] + [f"{res.history[n][i]:.6g}" for n in res.layers] + extra))
    return "\n".join(lines) + "\n"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _tile(images: np.ndarray, cols: int, lo: float, hi: float) -> np.ndarray:
    n, c, h, w = images.shape
    rows = -(-n // cols)
    x = np.clip((images - lo) / max(hi - lo, 1e-12), 0, 1)
    if c not in (1, 3):
        x = x[:, :1]
        c = 1
    out = np.ones((rows * (h + 1) - 1, cols * (w + 1) - 1, c), np.float32)
    for k in range(n):
        r, q = divmod(k, cols)
        out[r * (h + 1):r * (h + 1) + h, q * (w + 1):q * (w + 1) + w] = x[k].transpose(1, 2, 0)
    return out[..., 0] if c == 1 else out


def save_grid(path: str, generated: np.ndarray, real: Optional[np.ndarray] = None, *,
              n: int = 32, cols: int = 8, lo_hi: Tuple[float, float] = (0.0, 1.0),
              title: str = "") -> None:
    """A PNG of the first ``n`` generated images (left) and ``n`` real ones (right), shown on
    the valid input range ``lo_hi``."""
    plt = _plt()
    panels = [("generated", generated[:n])] + ([("real", real[:n])] if real is not None else [])
    rows = -(-min(n, max(len(p[1]) for p in panels)) // cols)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2 * rows / cols + 0.9),
                             squeeze=False)
    for ax, (name, imgs) in zip(axes[0], panels):
        ax.imshow(_tile(np.asarray(imgs, np.float32), cols, *lo_hi), cmap="gray", vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_title(f"{name} ({imgs.shape[1]}x{imgs.shape[2]}x{imgs.shape[3]})")
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def save_loss_plot(path: str, res: DataGenResult, title: str = "") -> None:
    """A PNG of the alignment loss of every layer (all images pooled) against the iteration."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for n in res.layers:
        ax.plot(np.maximum(res.history[n], 1e-12), label=n, lw=1.2)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("BatchNorm alignment loss (L2 square)")
    ax.set_title(title or "alignment loss per layer, all images")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def layer_stats(model: Any, x: np.ndarray, layer_types: Tuple[type, ...]) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """Per aligned layer: the per-channel mean and std of its input over ``x`` (whole set)."""
    import torch

    from .losses import moments

    acts: Dict[str, List[Any]] = {}
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, layer_types):
            hooks.append(m.register_forward_pre_hook(
                lambda mod, inp, name=name: acts.setdefault(name, []).append(moments(inp[0], False))))
    with torch.no_grad():
        model.eval()(torch.as_tensor(x))
    for h in hooks:
        h.remove()
    out = {}
    for name, [(m, q)] in acts.items():
        out[name] = (m.numpy(), np.sqrt(np.maximum(q.numpy() - m.numpy() ** 2, 0)))
    return out


def stats_table(model: Any, sets: Dict[str, np.ndarray], layer_types: Tuple[type, ...]) -> List[str]:
    """Markdown rows: per BatchNorm layer, the mean over channels of |mean - running_mean| and
    of |std - sqrt(running_var)|, relative to the mean stored std, for each image set."""
    per_set = {k: layer_stats(model, v, layer_types) for k, v in sets.items()}
    rows = ["| layer | channels | " + " | ".join(f"{k}: mean err / std err" for k in sets) + " |",
            "|---|---:|" + "---:|" * len(sets)]
    for name, m in model.named_modules():
        if not isinstance(m, layer_types):
            continue
        rm = m.running_mean.numpy()
        rs = np.sqrt(m.running_var.numpy())
        scale = float(rs.mean())
        cells = []
        for k in sets:
            mu, sd = per_set[k][name]
            cells.append(f"{np.abs(mu - rm).mean() / scale:.3f} / {np.abs(sd - rs).mean() / scale:.3f}")
        rows.append(f"| {name} | {rm.size} | " + " | ".join(cells) + " |")
    return rows
