"""qkernels.io.format_hex writes what Verilog's $readmemh reads: Icarus Verilog loads int8,
uint8, int16 and int32 arrays (extremes included), one value a word and 4 values packed a word,
and prints the same integers (the exported layers' files: tests/torch/test_export_hex_vs_iverilog.py)."""
import numpy as np
import pytest

from _hdl import HAVE_IVERILOG, SKIP_REASON, simulate
from qkernels.io import format_hex, read_hex

pytestmark = pytest.mark.skipif(not HAVE_IVERILOG, reason=SKIP_REASON)


def test_format_hex_words_through_the_simulator(tmp_path):
    rng = np.random.default_rng(0)
    for dt, bits in ((np.int8, 8), (np.uint8, 8), (np.int32, 32), (np.int16, 16)):
        info = np.iinfo(dt)
        a = rng.integers(info.min, info.max, 257, endpoint=True).astype(dt)
        a[:2] = (info.min, info.max)
        for per_word in (1, 4):
            f = tmp_path / f"{np.dtype(dt).name}_{per_word}.hex"
            f.write_text(format_hex(a, bits, per_word))
            got = simulate(tmp_path, f"t_{np.dtype(dt).name}_{per_word}", f.name, a.size, bits,
                            np.dtype(dt).kind == "i", per_word)
            assert np.array_equal(got, a.astype(np.int64)), (dt, per_word)
            back = read_hex(f.read_text(), bits, np.dtype(dt).kind == "i", per_word)[:a.size]
            assert np.array_equal(back, a.astype(np.int64))
