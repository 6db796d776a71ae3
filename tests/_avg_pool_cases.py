"""The average-pooling cases of tests/kernels/test_qops_vs_reference.py, importable without
PyTorch (the SIMD-level runs import this in subprocesses)."""
import itertools

import numpy as np

from qkernels import qops

DTYPES = (np.uint8, np.int8)


def _q(rng, shape, dt):
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, shape, endpoint=True).astype(dt)


def _zp(rng, dt):
    info = np.iinfo(dt)
    return int(rng.integers(info.min, info.max, endpoint=True))


def avg_pool_cases():
    """(geometry, shape) pairs for qavg_pool2d: kernel, stride, padding, ceil_mode,
    count_include_pad, divisor_override, over planes narrower and wider than 16 (the AVX-512
    narrow path), "same" 3x3 / 5x5 windows (the stacked-planes path) and the rest."""
    geos = list(itertools.product((3, 2, (3, 2), 5, (1, 3)), (None, 1, 2, (2, 1)), (0, 1, 2),
                                  (False, True), (True, False), (None, 2, -3)))
    shapes = ((1, 20, 12, 12), (2, 17, 5, 5), (1, 5, 25, 25), (1, 3, 7, 33), (1, 4, 1, 3),
              (1, 6, 17, 16), (1, 3, 6, 2))
    for (k, s, p, ceil, cip, div), shape in itertools.product(geos, shapes):
        kk, pp = np.broadcast_to(k, 2), np.broadcast_to(p, 2)
        if pp[0] > kk[0] // 2 or pp[1] > kk[1] // 2:
            continue
        if shape[2] + 2 * pp[0] < kk[0] or shape[3] + 2 * pp[1] < kk[1]:
            continue
        yield (k, s, p, ceil, cip, div), shape


def avg_pool_outputs(seed):
    """qavg_pool2d on every case (random integers and zero points from ``seed``, both layouts'
    formulas): name -> (input, zero point, geometry, vec_width, output)."""
    rng = np.random.default_rng(seed)
    out = {}
    for n, (geo, shape) in enumerate(avg_pool_cases()):
        dt = DTYPES[n % 2]
        x, zp = _q(rng, shape, dt), _zp(rng, dt)
        vw = (0, 8, 16)[n % 3]
        out[str(n)] = (x, zp, geo, vw, qops.qavg_pool2d(x, zp, *geo, vec_width=vw))
    return out
