"""scripts/profile_zoo.py (issue 19's per-layer profile, qkernels beside OpenVINO) on a tiny model:
the grouping of qkernels' plan steps by kind (convs by window / stride / depthwise, the conv with
its residual add fused, pools, cat, quantize), their MACs against the float model's, the stepped
run's output against the model's; OpenVINO's nodes mapped to the same kinds through the ONNX nodes
they fused (synthetic nodes here; the real OpenVINO only when it is installed, which it is not in
the project's .venv: OpenVINO is a benchmark peer, never a dependency)."""
import importlib.util
import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")   # a test requirement (requirements-dev.txt): CI has it
nn = torch.nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
import bench_zoo  # noqa: E402
import benchutil  # noqa: E402
import profile_zoo as pz  # noqa: E402


class Tiny(nn.Module):
    """Every kind the profile names: 7x7/2 stem, max pool, 3x3, a residual add, 1x1/2,
    depthwise 3x3 (stride 1 and 2), two branches concatenated, global pooling, a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 7, 2, 3), nn.ReLU())
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.c3 = nn.Sequential(nn.Conv2d(8, 8, 3, 1, 1), nn.ReLU())
        self.c3b = nn.Conv2d(8, 8, 3, 1, 1)
        self.down = nn.Conv2d(8, 16, 1, 2)
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, 1, 1, groups=16), nn.ReLU())
        self.dw2 = nn.Conv2d(16, 16, 3, 2, 1, groups=16)
        self.b1 = nn.Conv2d(16, 8, 1)
        self.b2 = nn.Conv2d(16, 8, 3, 1, 1)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: "torch.Tensor") -> "torch.Tensor":
        x = self.pool(self.stem(x))
        x = torch.relu(self.c3b(self.c3(x)) + x)
        x = self.dw2(self.dw(self.down(x)))
        x = torch.cat([self.b1(x), self.b2(x)], 1)
        return self.fc(torch.flatten(self.gap(x), 1))


@pytest.fixture(scope="module")
def tiny():
    from qkernels.torch import from_torch_quantized

    torch.manual_seed(0)
    torch.backends.quantized.engine = "fbgemm"
    fm = Tiny().eval()
    xcal = torch.randn(4, 3, 32, 32)
    tq = bench_zoo.torch_quantized(fm, xcal)
    return fm, xcal, tq, from_torch_quantized(tq, engine="fbgemm")


def test_plan_steps_kinds_and_macs(tiny):
    fm, xcal, _, im = tiny
    x = xcal[:2].numpy()
    steps = benchutil.plan_steps(im, x)
    kinds = [s.kind for s in steps]
    assert kinds[0] == "quantize" and kinds[-1] == "dequantize"
    for k in ("conv 7x7 s2", "max pool", "conv 3x3 +add", "conv 1x1 s2", "depthwise 3x3",
              "depthwise 3x3 s2", "conv 1x1", "global avg pool", "linear"):
        assert kinds.count(k) == 1, (k, kinds)
    assert kinds.count("conv 3x3") == 2, kinds        # c3 and the cat's branch b2
    assert "cat" in kinds
    # the fused step is named after the add and runs c3b, which left the plan
    fused = steps[kinds.index("conv 3x3 +add")]
    assert fused.layer != fused.name and fused.layer in im.layers
    assert type(im.layers[fused.name]).__name__ == "AddLayer"
    assert fused.layer not in {s.name for s in steps}
    # conv + linear MACs: the float model's, per image, times the batch
    assert sum(s.macs for s in steps) == 2 * bench_zoo.count_macs(fm, xcal)
    assert all((s.macs > 0) == bool(s.layer) for s in steps)
    conv = steps[kinds.index("conv 3x3")]
    assert conv.shape == (2, 8, 8, 8) and conv.macs == 2 * 8 * 8 * 8 * 8 * 9


def test_stepped_run_is_the_forward(tiny):
    _, xcal, _, im = tiny
    x = xcal.numpy()
    im(x)
    env, times = benchutil.run_plan_steps(im._plan, [x], 1)
    assert len(times) == len(im._plan.steps) and all(t >= 0 for t in times)
    y = env[im._plan.output]
    assert np.array_equal(y, im(x)) and y.dtype == np.float32


def test_conv_kind():
    assert benchutil.conv_kind(3, 3, 1, 1, 64) == "conv 3x3"
    assert benchutil.conv_kind(3, 3, 2, 96, 96) == "depthwise 3x3 s2"
    assert benchutil.conv_kind(3, 3, 1, 4, 64) == "grouped 3x3"
    assert benchutil.conv_kind(1, 7, 1, 1, 64) == "conv 1x7"


@pytest.fixture(scope="module")
def tiny_qdq(tiny, tmp_path_factory):
    pytest.importorskip("onnxruntime.quantization")   # a test requirement: CI has it
    fm, xcal, _, _ = tiny
    return bench_zoo.onnx_qdq(fm, xcal.numpy(), str(tmp_path_factory.mktemp("qdq")), "tiny")


def test_onnx_ops_conv_kinds(tiny_qdq):
    ops = pz.onnx_ops(tiny_qdq)
    convs = sorted(o.kind for o in ops.values() if o.op_type == "Conv")
    # each conv under its node name and its output name
    assert sorted(set(convs)) == sorted({"conv 7x7 s2", "conv 3x3", "conv 1x1 s2",
                                         "depthwise 3x3", "depthwise 3x3 s2", "conv 1x1"})
    assert any(o.op_type == "Concat" for o in ops.values())


def test_classify_ov_node():
    ops = {"/c/Conv": pz.OnnxOp("Conv", "conv 3x3"), "/add/Add": pz.OnnxOp("Add", ""),
           "/p/MaxPool": pz.OnnxOp("MaxPool", ""), "x_QuantizeLinear": pz.OnnxOp("QuantizeLinear", ""),
           "/cat/Concat": pz.OnnxOp("Concat", ""), "/fc/Gemm": pz.OnnxOp("Gemm", "")}
    c = pz.classify_ov_node
    assert c("/c/Conv/WithoutBiases", "Convolution", ["/c/Conv/WithoutBiases", "Multiply_9",
                                                      "/c/Conv"], ops) == ("conv 3x3", "/c/Conv")
    assert c("/c/Conv/WithoutBiases", "Convolution",
             ["/c/Conv", "/add/Add", "/r_QuantizeLinear"], ops) == ("conv 3x3 +add", "/c/Conv")
    assert c("/p/MaxPool", "Pooling", ["/p/MaxPool"], ops) == ("max pool", "")
    assert c("x_QuantizeLinear", "Subgraph", ["x_QuantizeLinear"], ops) == ("quantize", "")
    assert c("/cat/Concat", "Concatenation", [], ops) == ("cat", "")
    assert c("/fc/Gemm/WithoutBiases/DequantizationMultiply", "FullyConnected",
             ["/fc/Gemm/WithoutBiases/DequantizationMultiply", "/fc/Gemm"], ops) == ("linear", "")
    assert c("x_abcd_acdb_/c/Conv", "Reorder", [], ops) == ("reorder (layout)", "")
    # a FullyConnected is the linear whatever it fused (here the output's QuantizeLinear only)
    assert c("/fc/Gemm/WithoutBiases", "FullyConnected", ["/fc/Gemm/WithoutBiases",
                                                          "y_QuantizeLinear"], ops) == ("linear", "")
    # an output name ("y": the model output's DequantizeLinear), a copy's "_1" suffix
    ops2 = dict(ops, y=pz.OnnxOp("DequantizeLinear", ""),
                **{"/cat_output_0_QuantizeLinear": pz.OnnxOp("QuantizeLinear", "")})
    assert c("y", "Subgraph", ["Convert_1", "Subtract_2", "y"], ops2) == ("dequantize", "")
    assert c("/cat_output_0_QuantizeLinear_1", "Subgraph", [], ops2) == ("quantize", "")
    # nodes of OpenVINO's own transformations (the subsampling before a strided 1x1 conv)
    assert c("MaxPool_38581", "Pooling", [], ops) == ("Pooling (OpenVINO's own)", "")
    assert c("y", "Subgraph", ["Convert_1", "Subtract_2"], ops) == ("Subgraph (OpenVINO's own)", "")


def _ov(name, kind, shape, conv="c"):
    return pz.OVNode(name, kind, conv if kind.startswith(("conv", "depthwise")) else "", shape,
                     "Convolution", "jit")


def test_pair_convs_by_kind_and_shape_in_order():
    S = benchutil.PlanStep
    steps = [S(0, "q", "quantize", "", (1, 3, 8, 8), 0),
             S(1, "a", "conv 3x3", "a", (1, 8, 8, 8), 10),
             S(2, "b", "conv 3x3 +add", "b0", (1, 8, 8, 8), 10),
             S(3, "c", "conv 1x1 s2", "c", (1, 16, 4, 4), 5),
             S(4, "d", "conv 3x3", "d", (1, 8, 8, 8), 10)]
    ov = [_ov("A", "conv 3x3", (1, 8, 8, 8)), _ov("C", "conv 1x1 s2", (1, 16, 4, 4)),
          _ov("B", "conv 3x3 +add", (1, 8, 8, 8)), _ov("D", "conv 3x3", (1, 8, 8, 8)),
          _ov("P", "max pool", (1, 8, 4, 4))]
    assert pz.pair_convs(steps, ov) == {1: "A", 2: "B", 3: "C", 4: "D"}


def test_render_groups_both_sides():
    S = benchutil.PlanStep
    steps = [S(0, "q", "quantize", "", (1, 3, 8, 8), 0),
             S(1, "a", "conv 3x3", "a", (1, 8, 8, 8), 2_000_000),
             S(2, "b", "conv 3x3", "b", (1, 8, 8, 8), 2_000_000),
             S(3, "p", "max pool", "", (1, 8, 4, 4), 0)]
    ov = {n.name: n for n in [_ov("A", "conv 3x3", (1, 8, 8, 8)),
                              _ov("B", "conv 3x3", (1, 8, 8, 8)),
                              _ov("R", "reorder (layout)", (1, 3, 8, 8))]}
    p = pz.Profile("m", 1, 1, 3, steps, [0.1, 0.02, 0.03, 0.05], 0.25, 1, ov,
                   {"A": 0.01, "B": 0.02, "R": 0.04}, 0.08, "")
    rows = {r[0]: r[1:] for r in pz.kind_rows(p)}
    assert rows["conv 3x3"][:2] == (2, pytest.approx(0.05)) and rows["conv 3x3"][2:4] == (
        2, pytest.approx(0.03)) and rows["conv 3x3"][4] == 4_000_000
    assert rows["quantize"][2] == 0 and rows["reorder (layout)"][:2] == (0, 0.0)
    text = "\n".join(pz.render(p, peak=100.0, top=5))
    # 4 MMAC in 0.05 ms = 80 GMAC/s, 80% of the 100 GMAC/s peak; the whole forward 0.25 vs
    # steps 0.20: +0.05 ms outside the steps
    assert "| conv 3x3 | 2 | 0.05 | 2 | 0.03 | +0.02 | 80 | 80% |" in text
    assert "+0.05 ms" in text and "2 paired" in text
    assert "| a | conv 3x3 | 8x8x8 | 2.0 | 0.020 | 100 | 100% | 0.010 | 200 | jit |" in text
    assert "CPU time" not in text
    text = "\n".join(pz.render(p._replace(cpu_whole_ms=0.4, cpu_steps_ms=0.3, proc_ms=0.4,
                                          ov_proc_ms=0.1), peak=100.0, top=5))
    assert "whole forward 0.40 ms, steps 0.30 ms, outside the steps +0.10 ms (+25.0%)" in text
    assert "qkernels 0.40 ms, OpenVINO 0.10 ms (4.00x)" in text


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                    reason="OpenVINO is a benchmark peer, not installed in this venv "
                           "(scripts/bench_zoo.py's docstring says how to make its venv)")
def test_profile_with_openvino(tiny, tiny_qdq):
    import openvino as ov

    fm, xcal, tq, im = tiny
    zm = bench_zoo.ZooModel(fm, xcal, xcal, tq, im, tiny_qdq)
    p = pz.profile("tiny", zm, 1, 1, 3, ov.Core(), "f32", pz.onnx_ops(tiny_qdq))
    assert p.ov_ms and p.ov_whole_ms > 0 and p.qk_whole_ms > 0
    ov_kinds = {n.kind for n in p.ov.values()}
    assert {"conv 7x7 s2", "conv 1x1 s2", "depthwise 3x3"} <= ov_kinds
    pairs = pz.pair_convs(p.steps, list(p.ov.values()))
    convs = [s for s in p.steps if s.macs and s.kind != "linear"]
    assert sum(1 for s in convs if s.index in pairs) == len(convs)
