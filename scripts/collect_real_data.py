#!/usr/bin/env python
"""Collect real LayerNorm inputs, PTF-quantize them, run the integer LayerNorm and write
data/quantized/ (SPEC section 8). The seed's entry point: ``python -m qkernels collect``; see --help.

    python scripts/collect_real_data.py                     # embedded MiniLM, first LayerNorm
    python scripts/collect_real_data.py --layer all --out data/quantized_all
    python scripts/collect_real_data.py --from-npy ../shared/data/deit-small-ln0
    python scripts/collect_real_data.py --model facebook/deit-small-patch16-224 --image cat.jpg
    python scripts/collect_real_data.py --check             # re-read and validate data/quantized
    python scripts/collect_real_data.py --block 0           # a whole integer encoder block:
    python scripts/collect_real_data.py --check --out data/block0   # data/block0, validated
    python scripts/collect_real_data.py --block 0 --token-rows   # the token-rows block form:
    python scripts/collect_real_data.py --check --out data/block0_rows   # data/block0_rows
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from qkernels.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["collect", *sys.argv[1:]]))
