"""Activations narrower than their storage (4 bits in int8): every integer op saturates to the
bit range, as the fake-quant run does (the quantized add and LeakyReLU saturated to int8 only)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")
pytest.importorskip("sklearn", reason="scikit-learn (the digits data) is a test requirement")

from torch import fx  # noqa: E402

from qkernels.torch.convert import QTensor  # noqa: E402
from qkernels.torch.quantize import QuantConfig, TensorConfig, quantize_model  # noqa: E402
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
    raw = {}
    im._run(x, "int", raw, raw=True)
    checked = 0
    for node in im.graph_module.graph.nodes:
        v = raw.get(node.name)
        if not isinstance(v, QTensor):
            continue
        lo, hi = im._tc(node.name).qrange()
        assert lo >= -8 and hi <= 7
        assert v.q.min() >= lo and v.q.max() <= hi, (node.name, v.q.min(), v.q.max())
        checked += 1
        if node.op == "call_function" or (node.op == "call_module" and isinstance(
                im.graph_module.get_submodule(node.target), torch.nn.LeakyReLU)):
            # the interpreted path (fallback kernels) saturates the same way
            args = fx.node.map_arg(node.args, lambda n: raw[n.name])
            r = im._step(node, args, {}, "int", None, im._fq_out)
            np.testing.assert_array_equal(getattr(r, "q", r), v.q)
    assert checked > 5
    for r in im.compare(x[:32]):
        if r.op in ("add", "LeakyReLU"):
            assert r.steps_diff_vs_fake_quant <= 1, r
