"""qkernels.io.format_hex's whole-array path (one value a word at the storage width) writes the
words of the formula in its module docstring: two's complement at the width, zero-padded, one a
line; other widths and packed words keep the general path (the simulator test:
test_hexmem_vs_iverilog.py)."""
import numpy as np

from qkernels.io import format_hex, read_hex


def _words(a, bits):
    mask = (1 << bits) - 1
    return "".join(format(int(x) & mask, f"0{(bits + 3) // 4}x") + "\n" for x in a.reshape(-1))


def test_storage_width_words_equal_the_formula():
    rng = np.random.default_rng(0)
    for dt in (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64):
        info = np.iinfo(dt)
        a = rng.integers(info.min, info.max, (13, 7), endpoint=True, dtype=dt)
        a.flat[:3] = (info.min, info.max, 0)
        bits = 8 * np.dtype(dt).itemsize
        assert format_hex(a) == _words(a, bits), dt
        assert format_hex(a[:, ::2]) == _words(a[:, ::2], bits), dt   # a strided view
        if bits < 64:
            np.testing.assert_array_equal(read_hex(format_hex(a), bits, info.min < 0),
                                          a.reshape(-1).astype(np.int64))
    assert format_hex(np.zeros(0, np.int8)) == ""
    # a narrower width than the storage goes through the general path (and its range check)
    assert format_hex(np.int8([-1, 3]), 4) == "f\n3\n"
