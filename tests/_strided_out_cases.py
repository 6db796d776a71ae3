"""The cases of tests/kernels/test_conv2d_strided_out.py, importable without PyTorch (the
SIMD-level runs import this in subprocesses): each conv path of qk_conv2d (qk__conv_path) run
contiguous and written into a channel slice of a larger array (``runner_into``)."""
import numpy as np

import qkernels as qk

# (name, x shape, w shape, stride, padding, groups, preset): every algorithm of qk_conv2d
CASES = (
    ("tiles 3x3 cq8", (3, 8, 9, 11), (20, 8, 3, 3), 1, 1, 1, "fbgemm"),
    ("tiles 3x3 not cq8", (2, 3, 10, 10), (17, 3, 3, 3), 1, 1, 1, "fbgemm"),
    ("tiles 1x1 in place", (3, 16, 9, 9), (24, 16, 1, 1), 1, 0, 1, "fbgemm"),
    ("tiles 5x5 unfused", (2, 8, 12, 12), (13, 8, 5, 5), 1, 2, 1, "qnnpack"),
    ("tiles stride 2, small ow", (2, 8, 9, 9), (16, 8, 3, 3), 2, 1, 1, "fbgemm"),
    ("1x1 gemm", (3, 32, 5, 5), (40, 32, 1, 1), 1, 0, 1, "fbgemm"),
    ("1x1 gemm strided", (2, 32, 8, 8), (20, 32, 1, 1), 2, 0, 1, "qnnpack"),
    ("wide", (4, 3, 6, 6), (10, 3, 3, 3), 1, 1, 1, "fbgemm"),
    ("depthwise", (3, 12, 10, 10), (12, 1, 3, 3), 1, 1, 12, "fbgemm"),
    ("depthwise unfused", (2, 12, 9, 9), (12, 1, 3, 3), 2, 1, 12, "qnnpack"),
    ("direct (mostly padding)", (2, 2, 3, 3), (5, 2, 3, 3), 50, 200, 1, "fbgemm"),
)


def strided_outputs(seed):
    """name -> (contiguous output, the same conv written into channels [c0, c0 + n) of a
    (N, n + 7, oh, ow) array filled with 77 beforehand: the whole array)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, xs, ws, stride, pad, groups, preset in CASES:
        x = rng.integers(0, 256, xs).astype(np.uint8)
        w = rng.integers(-127, 128, ws).astype(np.int8)
        n = ws[0]
        conv = qk.prepare_qconv2d(w, rng.normal(0, 50, n).astype(np.float32), x_dtype=np.uint8,
                                  x_scale=0.02, x_zero_point=int(rng.integers(0, 256)),
                                  w_scale=rng.uniform(0.002, 0.01, n).astype(np.float32),
                                  out_scale=0.5, out_zero_point=int(rng.integers(0, 40)),
                                  out_dtype=np.uint8, stride=stride, padding=pad, groups=groups,
                                  preset=preset)
        ref = conv(x, threads=1)
        for t in (1, 2):
            buf = np.full((xs[0], n + 7) + ref.shape[2:], 77, np.uint8)
            c0 = 3
            y = conv.runner_into(xs)(x, buf[:, c0:c0 + n], t)
            assert y.base is buf or y.base is buf.base
            out[f"{name} t{t}"] = (ref, buf, c0)
    return out
