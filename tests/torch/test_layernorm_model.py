"""quantize_model with LayerNorm: the integer LayerNorm of qkernels (PTF-quantized input, FQ-ViT
style) inside a small transformer-like block (Linear -> LayerNorm -> Linear)."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")

import qkernels as qk  # noqa: E402
from qkernels.io import read_array  # noqa: E402
from qkernels.torch import QuantConfig, TensorConfig, quantize_model  # noqa: E402
from qkernels.torch.layers import LayerNormLayer  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]


class _Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(32, 48)
        self.ln = torch.nn.LayerNorm(48)
        self.fc2 = torch.nn.Linear(48, 16)

    def forward(self, x):
        return self.fc2(self.ln(self.fc1(x)))


def _block():
    torch.manual_seed(0)
    net = _Block().eval()
    with torch.no_grad():   # inter-channel variation of the LayerNorm input (what PTF is for)
        net.fc1.weight[::6] *= 8.0
        net.fc1.bias.uniform_(-1, 1)
        net.ln.weight.uniform_(0.5, 1.5)
        net.ln.bias.uniform_(-0.2, 0.2)
    return net


def _data():
    rng = np.random.default_rng(0)
    calib = [torch.from_numpy(rng.standard_normal((8, 10, 32)).astype(np.float32)) for _ in range(8)]
    x = torch.from_numpy(rng.standard_normal((16, 10, 32)).astype(np.float32))
    return calib, x


def _ln_node(im):
    return next(n for n in im.graph_module.graph.nodes
                if isinstance(im.layers.get(n.name), LayerNormLayer))


@pytest.mark.parametrize("method", ["exact", "sole"])
def test_layernorm_block_int_equals_ptf_kernels(method):
    calib, x = _data()
    net = _block()
    im = quantize_model(net, calib, config=QuantConfig(layernorm=method))
    node = _ln_node(im)
    ln = im.layers[node.name].ln
    assert ln.method == method
    raw = im.intermediates(x)
    # the int run's LayerNorm output == the PTF kernels applied directly to its integer input,
    # with parameters prepared here independently from the float model and the calibration data
    with torch.no_grad():
        h_cal = [net.fc1(b).numpy().reshape(-1, 48) for b in calib]
    ptf = qk.ptf_calibrate(h_cal, method="fqvit")
    assert ptf == ln.ptf
    s, z = im.qparams[node.name]
    ln2 = qk.prepare_layernorm(ptf, net.ln.weight.detach().numpy(), net.ln.bias.detach().numpy(),
                               method=method, out_scale=s, out_zero_point=z - 128,
                               eps=net.ln.eps)
    xin = raw[node.args[0].name]
    q_ptf = qk.ptf_quantize(qk.dequantize(xin.q, np.float32(xin.scale), xin.zero_point),
                            ptf.scale, ptf.alpha, ptf.zero_point)
    direct = qk.ptf_layernorm(q_ptf, ln2)
    got = raw[node.name]
    assert got.q.dtype == np.uint8 and got.zero_point == z
    np.testing.assert_array_equal(got.q.astype(np.int16) - 128, direct)
    # accuracy: integer vs float, at the LayerNorm and at the output
    tf = {}
    im.reference.run(x, "float", tf)
    ln_sqnr = qk.sqnr_db(tf[node.name], got.dequantize())
    out_sqnr = qk.sqnr_db(im.float_reference(x), im(x))
    rep = {r.name: r for r in im.compare(x)}
    assert node.name in rep and rep[node.name].op == "LayerNorm"
    assert abs(rep[node.name].sqnr_db - ln_sqnr) < 1e-6
    # measured: LayerNorm 30.5 dB (exact) / 28.9 dB (sole), output 30.5 / 28.9 dB. The exact
    # method lands on the fake-quant (float LayerNorm) result at every element here; SOLE's
    # compressed squares move 15% of them, by up to 4 steps
    limit = 29.5 if method == "exact" else 27.5
    assert ln_sqnr > limit and out_sqnr > limit, (ln_sqnr, out_sqnr)
    assert rep[node.name].cosine > 0.99
    if method == "exact":
        assert rep[node.name].steps_diff_vs_fake_quant <= 1.0


def test_layernorm_block_export_and_modes(tmp_path):
    calib, x = _data()
    net = _block()
    im = quantize_model(net, calib)
    node = _ln_node(im)
    im.export(str(tmp_path), x[:2])
    d = tmp_path / "layers" / node.name
    ln = im.layers[node.name].ln
    np.testing.assert_array_equal(read_array(str(d / "lut.txt")), ln.lut)
    np.testing.assert_array_equal(read_array(str(d / "gamma_int.txt")), ln.gamma_int)
    np.testing.assert_array_equal(read_array(str(d / "alpha.txt")), ln.ptf.alpha)
    q_in = read_array(str(d / "input.txt")).astype(np.uint8)
    out = read_array(str(d / "output.txt"))
    np.testing.assert_array_equal(qk.ptf_layernorm(q_in.reshape(-1, 48), ln).reshape(out.shape), out)
    report = json.load(open(tmp_path / "report.json"))
    assert report["layers"][node.name]["kind"] == "layernorm"
    # dynamic and weight-only modes keep the LayerNorm in float
    for mode, limit in (("dynamic", 26), ("weight_only", 40)):   # measured 28.4 / 45.6 dB
        imf = quantize_model(net, calib, config=QuantConfig(mode=mode))
        assert not any(isinstance(L, LayerNormLayer) for L in imf.layers.values())
        assert qk.sqnr_db(imf.float_reference(x), imf(x)) > limit
    with pytest.raises(ValueError, match="activation.bits=16"):   # 8-bit integer kernels
        quantize_model(net, calib, config=QuantConfig(activation=TensorConfig(bits=16)))
