"""``python -m qkernels quantize``: calibrate and quantize a PyTorch model, run it integer-exact,
print the per-layer report, and (with --out) export every integer.

    python -m qkernels quantize --model reference:resnet --calib digits --out out/resnet
    python -m qkernels quantize --model mypkg.models:build --calib calib_dir/ --config cfg.yaml

--model: ``reference:<name>`` (a bundled reference model), ``module:factory`` (a function that
returns an nn.Module) or a ``.pt`` file saved with ``torch.save(model)``.
--calib: ``digits`` (scikit-learn's bundled digits) or a directory of ``.npy`` batches / one ``.npy``.
"""
from __future__ import annotations

import argparse
import glob
import importlib
import os
import sys
import time
from typing import Any, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np


def _progress(items: Sequence[Any], label: str) -> Iterator[Any]:
    """A text progress bar on stderr (no dependency)."""
    n = len(items)
    t0 = time.time()
    for i, it in enumerate(items, 1):
        yield it
        done = int(30 * i / max(n, 1))
        sys.stderr.write(f"\r{label} [{'#' * done}{'.' * (30 - done)}] {i}/{n} "
                         f"{time.time() - t0:5.1f}s")
        sys.stderr.flush()
    sys.stderr.write("\n")


def load_model(spec: str) -> Any:
    import torch

    if spec.startswith("reference:"):
        from .reference_models import load

        return load(spec.split(":", 1)[1])
    if spec.endswith(".pt") or spec.endswith(".pth"):
        if not os.path.exists(spec):
            raise SystemExit(f"error: model file {spec} not found")
        obj = torch.load(spec, map_location="cpu", weights_only=False)
        if not isinstance(obj, torch.nn.Module):
            raise SystemExit(f"error: {spec} holds a {type(obj).__name__}, not a whole model: save "
                             "it with torch.save(model) or use --model module:factory")
        return obj.eval()
    if ":" in spec:
        mod, fn = spec.split(":", 1)
        try:
            factory = getattr(importlib.import_module(mod), fn)
        except (ImportError, AttributeError) as exc:
            raise SystemExit(f"error: cannot load {spec}: {exc}") from exc
        return factory().eval()
    raise SystemExit(f"error: --model {spec!r}: use reference:<name>, module:factory or a .pt file")


def load_calib(spec: str, batch: int) -> Tuple[List[np.ndarray], Optional[Tuple[np.ndarray, np.ndarray]]]:
    """Calibration batches, and held-out (x, labels) when the data set has them."""
    if spec == "digits":
        from .reference_models import digits

        (xtr, _), (xte, yte) = digits()
        xtr = xtr.numpy()
        return [xtr[i:i + batch] for i in range(0, min(len(xtr), 8 * batch), batch)], (xte.numpy(), yte.numpy())
    files = sorted(glob.glob(os.path.join(spec, "*.npy"))) if os.path.isdir(spec) else [spec]
    if not files or not all(os.path.exists(f) for f in files):
        raise SystemExit(f"error: no calibration data at {spec} (a directory of .npy files, a "
                         ".npy file, or 'digits')")
    arrays = [np.load(f).astype(np.float32) for f in files]
    if len(arrays) == 1:
        a = arrays[0]
        arrays = [a[i:i + batch] for i in range(0, len(a), batch)]
    return arrays, None


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m qkernels", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("quantize", help="quantize a PyTorch model and run it integer-exact")
    q.add_argument("--model", required=True)
    q.add_argument("--calib", default="digits")
    q.add_argument("--config", help="YAML file of a QuantConfig (weight/activation/preset/mode)")
    q.add_argument("--preset", help="override the config's preset")
    q.add_argument("--batch", type=int, default=64)
    q.add_argument("--out", help="export directory (integer parameters, goldens, JSON report)")
    from .qat.cli import register as register_qat   # ptq, qat

    register_qat(sub, load_model)
    args = ap.parse_args(argv)
    if getattr(args, "run", None) is not None:
        return args.run(args)

    import torch

    from .quantize import QuantConfig, quantize_model

    torch.set_num_threads(1)
    cfg = QuantConfig.from_yaml(args.config) if args.config else QuantConfig()
    if args.preset:
        from dataclasses import replace

        cfg = replace(cfg, preset=args.preset)
    model = load_model(args.model)
    calib, held_out = load_calib(args.calib, args.batch)
    t0 = time.time()
    im = quantize_model(model, _progress(calib, "calibrating"), config=cfg)
    print(f"quantized {args.model} ({cfg.preset}, W{cfg.weight.bits}A{cfg.activation.bits}, "
          f"{'per-channel' if cfg.weight.per_channel else 'per-tensor'} weights, {cfg.mode}) in "
          f"{time.time() - t0:.1f}s")
    x_eval = held_out[0] if held_out else calib[0]
    print_report(im, x_eval[:64], held_out)
    if args.out:
        paths = im.export(args.out, x_eval[:1])
        print(f"exported {len(paths)} files to {args.out}")
    return 0


def print_report(im: Any, x: np.ndarray, held_out: Optional[Tuple[np.ndarray, np.ndarray]]) -> None:
    if held_out is not None:
        xs, ys = held_out
        accs = [float(np.mean(np.asarray(f(xs)).argmax(1) == ys)) * 100
                for f in (im.float_reference, im.fake_quant, im)]
        print(f"accuracy on {len(ys)} held-out samples: float {accs[0]:.2f}%  fake-quant "
              f"{accs[1]:.2f}%  integer-exact {accs[2]:.2f}%")
    rows = im.compare(x)
    w = max(len(r.name) for r in rows)
    print(f"  {'layer':<{w}}  {'op':<18} {'SQNR dB':>8} {'max err':>8} {'cosine':>8} "
          f"{'int-fq steps':>12} {'% differ':>8}")
    for r in rows:
        print(f"  {r.name:<{w}}  {r.op[:18]:<18} {r.sqnr_db:8.2f} {r.max_abs_err:8.4f} "
              f"{r.cosine:8.5f} {r.steps_diff_vs_fake_quant:12.0f} {100 * r.frac_diff_vs_fake_quant:8.2f}")
