"""``python -m qkernels quantize``: calibrate and quantize a PyTorch model, run it integer-exact,
print the per-layer report, and (with --out) export every integer.

    python -m qkernels quantize --model reference:resnet --calib digits --out out/resnet
    python -m qkernels quantize --model mypkg.models:build --calib calib_dir/ --config cfg.yaml
    python -m qkernels quantize --model model.tflite --preset tflite --out out/model

A ``.tflite`` model (int8, converted by TFLite) is imported instead of quantized
(:func:`qkernels.torch.tflite.from_tflite`): ``--preset`` picks the runtime it reproduces
(tflite: LiteRT's reference kernels, default; tflite_xnnpack; cmsis_nn), ``--calib`` a .npy of
float NHWC sample inputs (default: random inputs over the int8 input range).
"""
from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import sys
import time
from typing import Any, List, Optional, Tuple

import numpy as np

DESCRIPTION = ("Calibrate and quantize a PyTorch model, run it integer-exact on qkernels, print "
               "the per-layer error report and (with --out) export every integer.")


class CliError(RuntimeError):
    """A user-facing error: printed as one ``error:`` line, exit code 2."""


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The ``quantize`` command's options."""
    from qkernels.presets import names

    ap.add_argument("--model", required=True,
                    help="reference:<name> (bundled reference network), module:factory (a "
                         "function returning an nn.Module), a .pt file saved with "
                         "torch.save(model), or an int8 .tflite model (imported, not quantized)")
    ap.add_argument("--calib", default="digits",
                    help="calibration data: 'digits' (scikit-learn's bundled digits), a folder "
                         "of .npy batches or one .npy file (default: digits)")
    ap.add_argument("--config", help="YAML file of a QuantConfig (examples/quant_config.yaml)")
    ap.add_argument("--preset", choices=names(), help="override the config's preset")
    ap.add_argument("--float", dest="float_modules", action="append", default=[], metavar="NAME",
                    help="keep a layer in float (module path, class name or node name); "
                         "repeatable")
    ap.add_argument("--batch", type=int, default=64, help="calibration batch size (default 64)")
    ap.add_argument("--out", help="export folder (integer parameters, goldens, JSON report)")
    ap.add_argument("--plots", action="store_true",
                    help="with --out: also plots/layer_errors.png (per-layer SQNR and cosine of "
                         "the integer and fake-quant runs; needs matplotlib)")


def load_calib(spec: str, batch: int) -> Tuple[List[np.ndarray], Optional[Tuple[np.ndarray, np.ndarray]]]:
    """Calibration batches, and held-out (x, labels) when the data set has them."""
    if batch < 1:
        raise CliError(f"--batch must be >= 1, got {batch}")
    if spec == "digits":
        from .reference_models import digits

        (xtr, _), (xte, yte) = digits()
        xtr = xtr.numpy()
        return [xtr[i:i + batch] for i in range(0, min(len(xtr), 8 * batch), batch)], \
            (xte.numpy(), yte.numpy())
    files = sorted(glob.glob(os.path.join(spec, "*.npy"))) if os.path.isdir(spec) else [spec]
    if not files or not all(os.path.exists(f) for f in files):
        raise CliError(f"no calibration data at {spec} (a directory of .npy files, a .npy file, "
                       "or 'digits')")
    arrays = []
    for f in files:
        try:
            a = np.load(f, allow_pickle=False)
        except Exception as exc:
            raise CliError(f"{f}: not a readable .npy file ({exc})") from None
        if a.dtype.kind not in "fiu":
            raise CliError(f"{f}: calibration data must be real numbers, got dtype {a.dtype}")
        arrays.append(np.asarray(a, np.float32))
    if len(arrays) == 1:
        a = arrays[0]
        arrays = [a[i:i + batch] for i in range(0, len(a), batch)]
    return arrays, None


def _check_input(model: Any, batch: np.ndarray, where: str) -> None:
    """One float forward pass on one sample, before any long work: a wrong shape names the data."""
    import torch

    try:
        with torch.no_grad():
            model(torch.from_numpy(np.ascontiguousarray(batch[:1], np.float32)))
    except Exception as exc:   # any model error: the user needs the data and the model's words
        raise CliError(f"--calib {where}: the model cannot take batches of shape "
                       f"{tuple(batch.shape)} ({type(exc).__name__}: "
                       f"{str(exc).splitlines()[0][:200]})") from None


def command(args: argparse.Namespace) -> int:
    """Run the ``quantize`` command."""
    import torch

    from qkernels.loaders import ModelError, load_torch_model

    from .._progress import progress
    from .config import QuantConfig
    from .quantize import quantize_model

    torch.set_num_threads(1)
    if args.model.endswith(".tflite"):
        return _import_tflite(args)
    try:
        cfg = QuantConfig.from_yaml(args.config) if args.config else QuantConfig()
        from dataclasses import replace
        if args.preset:
            cfg = replace(cfg, preset=args.preset)
        if args.float_modules:
            cfg = replace(cfg, float_modules=tuple(cfg.float_modules) + tuple(args.float_modules))
        if args.out and os.path.exists(args.out) and not os.path.isdir(args.out):
            raise CliError(f"--out {args.out}: exists and is not a folder")
        if args.plots and not args.out:
            raise CliError("--plots writes into the export folder: give --out too")
        if args.plots and importlib.util.find_spec("matplotlib") is None:
            raise CliError("--plots needs matplotlib: pip install 'qkernels[plot]'")
        model = load_torch_model(args.model)
        calib, held_out = load_calib(args.calib, args.batch)
        _check_input(model, calib[0], args.calib)
    except (ModelError, CliError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    t0 = time.time()
    try:
        im = quantize_model(model, progress(calib, "calibrating"), config=cfg)
    except (NotImplementedError, TypeError, ValueError, RuntimeError) as exc:
        print(f"error: {args.model}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    print(f"quantized {args.model} ({cfg.preset_name}, W{cfg.weight.bits}A{cfg.activation.bits}, "
          f"{'per-channel' if cfg.weight.per_channel else 'per-tensor'} weights, {cfg.mode}) in "
          f"{time.time() - t0:.1f}s")
    x_eval = held_out[0] if held_out else calib[0]
    print_report(im, x_eval[:64], held_out)
    if args.out:
        paths = im.export(args.out, x_eval[:1], plots=args.plots, eval_data=held_out)
        print(f"exported {len(paths)} files to {args.out}")
        for p in paths:
            if p.endswith(".png"):
                print(f"picture: {p}")
    return 0


def _import_tflite(args: argparse.Namespace) -> int:
    """``--model x.tflite``: import (no calibration), run the sample, export with --out."""
    from qkernels.io.tflite import read_model

    from .tflite import TFLITE_PRESETS, from_tflite

    preset = args.preset or "tflite"
    try:
        if preset not in TFLITE_PRESETS:
            raise CliError(f"--preset {preset}: a .tflite model runs with one of "
                           f"{', '.join(TFLITE_PRESETS)}")
        if not os.path.exists(args.model):
            raise CliError(f"{args.model}: not found")
        if args.out and os.path.exists(args.out) and not os.path.isdir(args.out):
            raise CliError(f"--out {args.out}: exists and is not a folder")
        im = from_tflite(args.model, preset=preset)
        m = read_model(args.model)
        t = m.tensors[m.inputs[0]]
        if args.calib != "digits":
            x = load_calib(args.calib, args.batch)[0][0]
        else:
            q = np.random.default_rng(0).integers(-128, 128, (4,) + t.shape[1:])
            x = ((q - int(t.zero_point[0])) * np.float32(t.scale[0])).astype(np.float32)
        y = im(x)
    except (CliError, ValueError, NotImplementedError, OSError, TypeError) as exc:
        print(f"error: {args.model}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    print(f"imported {args.model} ({preset}, {len(im.layers)} layers, no calibration: the "
          f"model's own scales and zero points)")
    for name, L in im.layers.items():
        print(f"  {name:<24} {L.op}")
    print(f"output {tuple(np.shape(y))} on {len(x)} sample inputs")
    if args.out:
        paths = im.export(args.out, x[:1])
        print(f"exported {len(paths)} files to {args.out}")
    return 0


def print_report(im: Any, x: np.ndarray, held_out: Optional[Tuple[np.ndarray, np.ndarray]]) -> None:
    """Accuracies (when labels are known) and the per-layer table of ``im.compare``."""
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
