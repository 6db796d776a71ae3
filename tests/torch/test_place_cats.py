"""Concatenations written in place (qkernels/torch/_runtime.py ``place_cats``: the convs on the
concatenation's own parameters write straight into their channels of its output, through
``qk_conv2d_strided``; the other inputs copied or requantized into theirs) == PyTorch's
quantized model, and == the same plan with every concatenation a copy, at batch 1 and 3,
1 and 2 threads; what is placed and what is not."""
import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _util import FBGEMM_U8S8_SATURATES, fx_quantized  # noqa: E402

from qkernels.torch import _runtime as rt  # noqa: E402
from qkernels.torch import from_torch_quantized  # noqa: E402

pytestmark = [pytest.mark.torch,
              pytest.mark.filterwarnings("ignore:All inputs of this cat operator")]
nn = torch.nn


class Block(nn.Module):
    """A stem conv, then Inception-like: 1x1 / 1x1 -> 3x3 / max pool / avg pool -> 1x1 branches concatenated;
    then a second concatenation of a conv output that is read by an add too (not placed), of
    the first concatenation (placed: it is not a conv) and of a conv (placed)."""

    def __init__(self) -> None:
        super().__init__()
        r = nn.ReLU
        self.stem = nn.Conv2d(3, 8, 3)
        self.b1 = nn.Sequential(nn.Conv2d(8, 6, 1), r())
        self.b2 = nn.Sequential(nn.Conv2d(8, 4, 1), r(), nn.Conv2d(4, 5, 3, padding=1), r())
        self.b3 = nn.MaxPool2d(3, 1, 1)
        self.b4 = nn.Sequential(nn.AvgPool2d(3, 1, 1), nn.Conv2d(8, 3, 1), r())
        self.c1 = nn.Conv2d(22, 7, 3, padding=1)
        self.c2 = nn.Conv2d(22, 4, 1)

    def forward(self, x):
        x = self.stem(x)
        y = torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)
        a = self.c1(y)
        z = torch.cat([a, y, self.c2(y)], 1)
        return z.mean((2, 3)) + a.mean((2, 3)).sum(1, keepdim=True)


@pytest.fixture(scope="module")
def models():
    old = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    try:
        torch.manual_seed(0)
        q, _ = fx_quantized(Block(), "fbgemm", (3, 3, 13, 11), 4)
        im = from_torch_quantized(q, engine="fbgemm")
        yield q, im
    finally:
        torch.backends.quantized.engine = old


def _placed(im):
    plan = im._plan if im._plan is not None else im._compile()
    return plan, [n for _, _, _, n in plan.steps if not n]


def test_place_cats_equals_pytorch_and_the_copies(models, monkeypatch):
    q, im = models
    plan, buffers = _placed(im)
    assert len(buffers) == 2          # both concatenations write in place
    g = torch.Generator().manual_seed(5)
    xs = [torch.randn(b, 3, 13, 11, generator=g) * 2 for b in (1, 3, 3)]
    if FBGEMM_U8S8_SATURATES:
        # On an x86 CPU without AVX512-VNNI FBGEMM saturates each pair of uint8 x int8 products
        # to int16 (tests/_util.py; pinned by test_swap_vs_torch.py::
        # test_fbgemm_u8s8_pair_saturation) and is exact only for uint8 inputs in [0, 127]: the
        # range reduce_range gives the calibrated values, not the inputs beyond them (these,
        # twice the calibration's spread, reach 179 already at the stem). There the inputs are
        # the calibration batches (fx_quantized's, seed 4), so every activation is in [0, 127].
        gc = torch.Generator().manual_seed(4)
        torch.randn(3, 3, 13, 11, generator=gc)
        cal = [torch.randn(3, 3, 13, 11, generator=gc) for _ in range(2)]
        xs = [cal[0][:1], cal[0], cal[1]]
    with torch.no_grad():
        refs = [q(x).numpy() for x in xs]
    got = [[im(x.numpy(), threads=t) for x in xs] for t in (1, 2)]
    traces = im.intermediates(xs[1].numpy())
    monkeypatch.setattr(rt, "place_cats", lambda steps, n, inputs: (steps, n))
    im._plan = None
    assert not _placed(im)[1]
    copies = [im(x.numpy(), threads=1) for x in xs]
    copy_traces = im.intermediates(xs[1].numpy())
    im._plan = None
    if FBGEMM_U8S8_SATURATES:
        # (128, PyTorch's rounding of a calibrated maximum, still cannot saturate: a pair is
        # within 2 * 128 * [-128, 127] = [-32768, 32512])
        assert all(int(np.asarray(v.q).max()) <= 128 for v in traces.values() if hasattr(v, "q"))
    for r, c, a, b in zip(refs, copies, got[0], got[1]):
        assert np.array_equal(a, r) and np.array_equal(b, r) and np.array_equal(c, r)
    assert set(traces) == set(copy_traces)
    for k in traces:           # every layer's integers, the placed convs' slices included
        assert np.array_equal(np.asarray(traces[k].q if hasattr(traces[k], "q") else traces[k]),
                              np.asarray(copy_traces[k].q if hasattr(copy_traces[k], "q")
                                         else copy_traces[k])), k


def test_place_cats_what_is_placed(models):
    """The first concatenation: its three convs on the concatenation's parameters write in
    place, the max pool is copied; the second: the conv read by the add too is copied, the
    other conv placed."""
    _, im = models
    plan, _ = _placed(im)
    fills = [(ins, name) for k, ins, _, name in plan.steps if name.startswith("cat")]
    assert len(fills) == 2
    into = [name for k, ins, _, name in plan.steps if len(ins) == 2 and hasattr(k, "conv")]
    assert len(into) == 4, into
    (ins1, _), (ins2, _) = fills
    assert len(ins1) == 2 and len(ins2) == 3     # the buffer + what is copied
