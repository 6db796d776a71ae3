"""qkernels.qops.qavg_pool2d (the C kernel behind the integer model's AvgPool2d, csrc/elementwise/
qops.c) == PyTorch's quantized avg_pool2d (fbgemm engine), every element, on NCHW tensors
(``avg_pool2d_out_frame``) and channels-last ones (``qavg_pool2d_nhwc_kernel``: its vector
channels round relative to the zero point), over kernel sizes, strides, paddings, ceil_mode,
count_include_pad and divisor_override; 2x2 windows and even divisors make exact ties common.
The same cases again at every SIMD level against the NumPy reference are in
test_qops_vs_reference.py."""
import itertools
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")
from qkernels import qops  # noqa: E402
from qkernels.torch.qarith import torch_pool_vec_width  # noqa: E402

pytestmark = pytest.mark.torch
F = torch.nn.functional


@pytest.fixture(autouse=True)
def _fbgemm():
    old = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    yield
    torch.backends.quantized.engine = old


@pytest.mark.parametrize("tdt", [torch.quint8, torch.qint8], ids=["uint8", "int8"])
def test_qavg_pool2d_equals_torch(tdt):
    rng = np.random.default_rng(11)
    vw = torch_pool_vec_width()
    mismatches = total = cases = 0
    for k, s, p, ceil, cip, div in itertools.product(
            (2, 3, (3, 2), (1, 3)), (None, 1, (2, 1)), (0, 1), (False, True), (True, False),
            (None, 2)):
        if max(np.atleast_1d(p)) > min(np.atleast_1d(k)) // 2:
            continue
        for shape in ((1, 20, 12, 12), (2, 17, 5, 5), (1, 3, 7, 9)):
            x = torch.from_numpy((rng.standard_normal(shape) * rng.uniform(0.5, 4))
                                 .astype(np.float32))
            zp = int(rng.integers(0, 256)) if tdt == torch.quint8 else int(rng.integers(-128, 128))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                qx = torch.quantize_per_tensor(x, 0.03, zp, tdt)
            q = qx.int_repr().numpy()
            for cl in (False, True):
                tx = qx.contiguous(memory_format=torch.channels_last) if cl else qx
                ref = F.avg_pool2d(tx, k, s, p, ceil, cip, div).int_repr().numpy()
                got = qops.qavg_pool2d(q, zp, k, s, p, ceil, cip, div, vec_width=vw if cl else 0)
                assert got.shape == ref.shape and got.dtype == q.dtype
                mismatches += int(np.sum(got != ref))
                total += ref.size
                cases += 1
    assert cases > 250 and total > 200_000
    assert mismatches == 0, f"{mismatches} of {total}"


def test_qavg_pool2d_ties_follow_the_layout():
    """A 2x2 window with sum - 4 zp = 4k + 2 is an exact tie: the NCHW kernel rounds
    fl(acc / 4 + zp) to even, the channels-last vector channels RNE(acc / 4) + zp; both ==
    PyTorch, and they differ (the zero point is odd)."""
    vw = torch_pool_vec_width()
    if not vw:
        pytest.skip("PyTorch runs no vector kernel on this CPU (ATEN_CPU_CAPABILITY default)")
    q = np.full((1, vw, 2, 2), 3, np.uint8)
    q[..., 0, 0] = 5                       # sum - 4 * 3 = 2: 0.5 above the zero point
    qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(q), 0.1, 3)
    ref_nchw = F.avg_pool2d(qx, 2).int_repr().numpy()
    ref_nhwc = F.avg_pool2d(qx.contiguous(memory_format=torch.channels_last), 2).int_repr().numpy()
    assert np.array_equal(qops.qavg_pool2d(q, 3, 2), ref_nchw)
    assert np.array_equal(qops.qavg_pool2d(q, 3, 2, vec_width=vw), ref_nhwc)
    assert (ref_nchw == 4).all() and (ref_nhwc == 3).all()    # 3.5 -> 4; 3 + RNE(0.5) = 3


@pytest.mark.parametrize("tdt", [torch.quint8, torch.qint8], ids=["uint8", "int8"])
def test_qavg_pool2d_inception_3x3_same_equals_torch(tdt):
    """Inception's pool (3x3, stride 1, padding 1, count_include_pad) on its plane sizes (35x35,
    17x17, 8x8) and on planes 1 and 2 wide (the first and last column of a row are the same or
    neighbours: the straight-line border sums of the stacked-planes path), both layouts, zero
    points across the range: == PyTorch."""
    rng = np.random.default_rng(19)
    vw = torch_pool_vec_width()
    total = 0
    for shape in ((1, 6, 35, 35), (2, 5, 17, 17), (3, 40, 8, 8), (2, 7, 9, 2), (2, 7, 6, 1),
                  (1, 300, 3, 3)):
        for zp in ((0, 255, int(rng.integers(1, 255))) if tdt == torch.quint8 else
                   (-128, 127, int(rng.integers(-127, 127)))):
            x = torch.from_numpy((rng.standard_normal(shape) * 3).astype(np.float32))
            qx = torch.quantize_per_tensor(x, 0.02, zp, tdt)
            q = qx.int_repr().numpy()
            for cl in (False, True):
                tx = qx.contiguous(memory_format=torch.channels_last) if cl else qx
                ref = F.avg_pool2d(tx, 3, 1, 1).int_repr().numpy()
                got = qops.qavg_pool2d(q, zp, 3, 1, 1, vec_width=vw if cl else 0)
                assert np.array_equal(got, ref), (shape, zp, cl)
                total += ref.size
    assert total > 60_000
