"""Activations narrower than their storage (4 bits in int8): every integer op saturates to the
bit range, as the fake-quant run does (PyTorch's quantized add and LeakyReLU saturate to int8
only: a residual add of 4-bit activations went up to 9, two steps from fake quant)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")
pytest.importorskip("sklearn", reason="scikit-learn (the digits data) is a test requirement")

from qkernels.torch import QuantConfig, TensorConfig, quantize_model  # noqa: E402
from qkernels.torch import layers as Ly  # noqa: E402
from qkernels.torch.reference_models import digits, load  # noqa: E402

pytestmark = pytest.mark.torch

W4A4 = QuantConfig(weight=TensorConfig(bits=4, symmetric=True, per_channel=True, signed=True,
                                       power_of_two="ceil"),
                   activation=TensorConfig(bits=4, symmetric=True, signed=True, power_of_two="ceil"),
                   preset="pow2")


@pytest.mark.parametrize("name", ["mobilenetv2", "resnet", "darknet"])
def test_sub_byte_activations_stay_in_range(name):
    (xtr, _), (xte, _) = digits()
    im = quantize_model(load(name), [xtr[i:i + 64] for i in range(0, 256, 64)], config=W4A4)
    x = xte[:96].numpy()
    got = im.intermediates(x)
    ref = im._compile(reference=True)   # every layer through its keyword-API / NumPy path
    raw = {}
    ref.run([x], 1, raw)
    im._plan = None
    saturating = 0
    for name_, L in im.layers.items():
        if L.out is None:
            continue
        lo, hi = L.out.qrange()
        assert (lo, hi) == (-8, 7), name_
        q = got[name_].q
        assert q.min() >= lo and q.max() <= hi, (name_, q.min(), q.max())
        np.testing.assert_array_equal(raw[name_], q, err_msg=name_)   # both paths saturate
        saturating += isinstance(L, (Ly.AddLayer, Ly.LeakyReLULayer))
    assert saturating > 0
    for r in im.compare(x[:32]):
        if r.op in ("add", "LeakyReLU"):
            assert r.steps_diff_vs_fake_quant <= 1, r


def test_saturation_in_the_layer_and_its_export():
    """A 4-bit add whose exact sum leaves [-8, 7] is clamped; the export says so (qmin / qmax)."""
    from qkernels.torch._runtime import QMeta

    m4 = QMeta(0.5, 0, np.dtype(np.int8), 4)
    add = Ly.AddLayer("add", ("a", "b"), m4, a=m4, b=m4)
    a = np.int8([[7, -8, 3, 1]])
    b = np.int8([[7, -8, -3, 1]])
    want = np.int8([[7, -8, 0, 2]])
    np.testing.assert_array_equal(add.kernel()(1, a, b), want)
    np.testing.assert_array_equal(add.reference_kernel()(1, a, b), want)
    assert add.params()["qmin"] == -8 and add.params()["qmax"] == 7
    leaky = Ly.LeakyReLULayer("lr", ("a",), QMeta(0.25, 0, np.dtype(np.int8), 4), x=m4, slope=0.1)
    np.testing.assert_array_equal(leaky.kernel()(1, a), np.int8([[7, -2, 6, 2]]))
    m8 = QMeta(0.5, 0, np.dtype(np.int8))
    assert "qmin" not in Ly.AddLayer("add", ("a", "b"), m8, a=m8, b=m8).params()
