"""quantize_model gives a concatenation and the inputs it can calibrate one observer (PyTorch FX's
``OUTPUT_SHARE_OBSERVER_WITH_INPUT`` for cat, TFLite's CONCATENATION rule): those inputs are
quantized once, to the concatenation's parameters, and the concatenation copies their integers;
the other inputs (a pooling op that keeps its input's parameters, a ``fixed_qparams`` entry) are
requantized."""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")
nn = torch.nn

from qkernels.torch import QuantConfig, quantize_model  # noqa: E402
from qkernels.torch import layers as Ly  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.filterwarnings("ignore::UserWarning")]


class Branches(nn.Module):
    """An Inception-style block: conv branches of other ranges, a cat of cats through a float
    FloatFunctional (torchvision's quantizable Inception), a max-pool branch; a branch that feeds
    a cat and an add, and one that feeds two cats."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.b = nn.Conv2d(3, 8, 1)
        self.c = nn.Conv2d(3, 4, 3, padding=1)
        self.d = nn.Conv2d(3, 4, 1)
        self.ff = torch.ao.nn.quantized.FloatFunctional()
        self.pool = nn.MaxPool2d(3, 1, 1)
        self.e = nn.Conv2d(3, 3, 1)
        self.f = nn.Conv2d(27, 3, 1)
        with torch.no_grad():   # other ranges
            self.b.weight.mul_(0.25)
            self.d.weight.mul_(3.0)
            self.e.weight.mul_(2.0)

    def forward(self, x):
        a = self.relu(self.a(x))
        inner = self.ff.cat([self.c(x), self.d(x)], 1)
        y = torch.cat([a, self.b(x), inner, self.pool(x)], 1)
        e = self.e(x)
        return self.f(y) + e, torch.cat([e, a], 1)


def _model():
    torch.manual_seed(0)
    return Branches().eval()


def _data(seed=1, n=4):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(8, 3, 12, 12, generator=g) for _ in range(n)]


def _meta(im, name):
    m = im.layers[name].out
    return m.scale, m.zero_point


def _find(im, cls):
    return [n for n, L in im.layers.items() if isinstance(L, cls)]


@pytest.mark.parametrize("preset", ["fbgemm", "qnnpack"])
def test_branches_take_the_concatenations_parameters(preset):
    calib = _data()
    im = quantize_model(_model(), calib, config=QuantConfig(preset=preset))
    assert sorted(_find(im, Ly.CatLayer)) == ["cat", "cat_1", "cat_2"]
    assert im.layers["cat"].inputs == ("c", "d")
    assert im.layers["cat_1"].inputs == ("a", "b", "ff_activation_post_process", "pool")
    assert im.layers["cat_2"].inputs == ("e", "a")
    shared = _meta(im, "cat_1")
    # the branches, the inner cat (through the FloatFunctional's Identity), a branch that also
    # feeds an add (e), the second cat (a feeds both): one set of parameters
    for name in ("a", "b", "c", "d", "cat", "ff_activation_post_process", "e", "cat_2"):
        assert _meta(im, name) == shared, name
    assert im.layers["add"].inputs == ("f", "e")
    # the max-pool keeps its input's parameters and is requantized
    assert _meta(im, "pool") == _meta(im, "x") != shared
    # one observer saw every member's output: the range is theirs together (min / max)
    obs = QuantConfig(preset=preset).activation.observer_for()
    tf = {}
    for xb in calib:
        im.reference.run(xb.numpy(), "float", tf)
        for name in ("cat_1", "e"):
            obs.update(tf[name])
    p = obs.calculate_qparams()
    assert shared == (float(np.asarray(p.scale).reshape(-1)[0]),
                      int(np.asarray(p.zero_point).reshape(-1)[0]))
    # the shared inputs' integers are copied, the pooled ones requantized
    x = _data(seed=2, n=1)[0].numpy()
    r = im.intermediates(x)
    q = r["cat_1"].q
    assert np.array_equal(q[:, :8], r["a"].q)
    assert np.array_equal(q[:, 8:16], r["b"].q)
    assert np.array_equal(q[:, 16:24], r["cat"].q)
    assert not np.array_equal(q[:, 24:], r["pool"].q)
    assert np.array_equal(r["cat_2"].q, np.concatenate([r["e"].q, r["a"].q], 1))


def test_a_fixed_input_keeps_its_parameters():
    calib = _data()
    im0 = quantize_model(_model(), calib)
    s, z = _meta(im0, "a")
    im = quantize_model(_model(), calib, fixed_qparams={"a": (s / 2, z)})
    assert _meta(im, "a") == (s / 2, z)
    assert im.layers["cat_1"].in_metas[0].scale == s / 2 != im.layers["cat_1"].out.scale
    assert im.layers["cat_2"].in_metas[1].scale == s / 2
    # the others still share; without a, nothing links the two cats' groups
    assert _meta(im, "b") == _meta(im, "c") == _meta(im, "cat") == _meta(im, "cat_1")
    assert _meta(im, "e") == _meta(im, "cat_2") != _meta(im, "cat_1")


@pytest.mark.parametrize("preset", ["fbgemm", "qnnpack"])
def test_integer_run_agrees_with_fake_quant(preset):
    calib = _data()
    im = quantize_model(_model(), calib, config=QuantConfig(preset=preset))
    x = _data(seed=3, n=1)[0].numpy()
    for r in im.compare(x):
        assert r.steps_diff_vs_fake_quant <= 1.0, r
