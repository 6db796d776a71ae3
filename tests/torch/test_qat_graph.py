"""QAT on a graph with the other integer ops (BatchNorm folded, LeakyReLU, torch.cat, AvgPool2d,
F.avg_pool2d, functional ReLU, flatten), symmetric and affine activations: the fake-quant model
and the integer run agree element for element, before and after training."""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")
pytest.importorskip("yaml", reason="PyYAML is a test requirement (requirements-dev.txt)")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from qkernels.torch.qat import load_config, quant_config, run_qat  # noqa: E402
from qkernels.torch.qat.pipeline import _integer_vs_qat, simulation_model  # noqa: E402
from qkernels.torch.quantize import quantize_model  # noqa: E402

pytestmark = pytest.mark.torch


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.LeakyReLU(0.1)
        self.a = nn.Conv2d(8, 8, 1, bias=False)
        self.pool = nn.AvgPool2d(3, 1, 1)
        self.c2 = nn.Conv2d(16, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x):
        y = self.act(self.bn(self.c1(x)))
        y = torch.cat([self.a(y), self.pool(y)], 1)
        y = F.avg_pool2d(torch.relu(self.c2(y)), 2)
        return self.fc(torch.flatten(y, 1))


def _net():
    torch.manual_seed(0)
    net = Net().eval()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.2, 0.2)
        net.bn.running_var.uniform_(0.5, 2.0)
        net.bn.weight.uniform_(0.5, 1.5)
    return net


def _data():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(320, 1, 8, 8, generator=g)
    y = (x[:, 0, :4].mean((1, 2)) * 5).long().clamp(0, 4)
    return (x[:256], y[:256]), (x[256:], y[256:])


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("symmetric", [True, False])
def test_fake_quant_is_the_integer_run(bits, symmetric):
    cfg = load_config(None, {"quantization": {
        "weight": {"bitwidth": bits, "per_channel": True},
        "input": {"bitwidth": bits, "symmetric": symmetric},
        "output": {"bitwidth": bits, "symmetric": symmetric}}})
    x = _data()[0][0]
    im = quantize_model(_net(), [x[:64], x[64:128]], config=quant_config(cfg))
    rows = _integer_vs_qat(im, simulation_model(im, bits, True, 32), x[:64].numpy())
    assert len(rows) >= 10
    for r in rows:
        assert r["fraction_differing"] == 0, r


def test_trained_user_graph_deploys_exactly():
    cfg = load_config(None, {
        "quantization": {"weight": {"bitwidth": 4, "per_channel": True},
                         "input": {"bitwidth": 4, "symmetric": False},
                         "output": {"bitwidth": 8, "symmetric": False}},
        "training": {"epochs": 2, "learning_rate": 3e-3, "batch_size": 32},
        "ptq": {"calibration_batches": 2}, "qat": {"mode": "full", "learn_scales": True}})
    res = run_qat(cfg, _net(), _data())   # raises if the integer model is not what QAT trained
    k = res.report["qkernels"]
    assert all(r["fraction_differing"] == 0 for r in k["integer_vs_fake_quant"])
    assert k["integer_exact_accuracy"] == pytest.approx(res.report["final_accuracy"], abs=1e-4)
    out = [n for n in res.integer_model.graph_module.graph.nodes if n.op == "output"][0]
    assert res.integer_model.tensor_configs[out.args[0].name].bits == 8   # the output config
    assert res.integer_model.layers["c1"].out.bits == 4
    assert {"c1.weight", "c1.bias", "a.weight", "cat.output", "pool.output"} <= \
        set(res.report["final_quantization_details"])
    assert "a.bias" not in res.report["final_quantization_details"]
    bn = res.qat_model.deployable(_net()).bn   # folded into c1: the identity now
    assert bn.eps == 0 and torch.all(bn.running_var == 1) and torch.all(bn.weight == 1)
    assert np.all(np.isfinite(res.integer_model(_data()[1][0].numpy())))
