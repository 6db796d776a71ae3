"""The power-of-two PTQ -> QAT -> PTQ pipeline on the reference models: the three steps,
--no-final-ptq, learned scales deployed exactly, integer == fake quant, the JSON report (every
shift read back equals the shift the integer kernels use), the command line."""
import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")
pytest.importorskip("sklearn", reason="scikit-learn (the digits data) is a test requirement")
pytest.importorskip("yaml", reason="PyYAML is a test requirement (requirements-dev.txt)")

import qkernels as qk  # noqa: E402
from qkernels.torch import layers as Ly  # noqa: E402
from qkernels.torch.qat import load_config, load_data, run_qat  # noqa: E402
from qkernels.torch.qat.report import write_json  # noqa: E402
from qkernels.torch.reference_models import load  # noqa: E402

from _util import QAT_REPORT_KEYS as TOOL_KEYS  # noqa: E402

pytestmark = pytest.mark.torch


def _cfg(**over):
    base = {"training": {"epochs": 1, "learning_rate": 1e-3, "weight_decay": 0.0},
            "ptq": {"max_eval_batches": 2, "calibration_batches": 2}}
    for k, v in over.items():
        base[k] = {**base.get(k, {}), **v}
    return load_config(None, base)


@pytest.fixture(scope="module")
def data():
    torch.set_num_threads(1)   # as the other torch tests: no oversubscription on a shared machine
    return load_data("digits")


def _is_pow2(v):
    return all(math.frexp(float(s))[0] == 0.5 for s in np.ravel(v))


@pytest.fixture(scope="module")
def full_resnet(data):
    """Full QAT with learned scales, W4A4 per-channel, one epoch."""
    cfg = _cfg(quantization={"weight": {"bitwidth": 4, "per_channel": True},
                             "input": {"bitwidth": 4, "symmetric": False},
                             "output": {"bitwidth": 4, "symmetric": False}},
               qat={"mode": "full", "learn_scales": True, "scale_learning_rate": 0.05})
    return run_qat(cfg, load("resnet"), data)


def test_three_steps_weight_only(data):
    cfg = _cfg(training={"epochs": 2})
    res = run_qat(cfg, load("mlp"), data)
    r, im = res.report, res.integer_model
    assert list(r) == TOOL_KEYS
    assert r["quantization_type"] == "PTQ → Weight-Only QAT → Final PTQ Pipeline"
    assert r["pipeline_steps"] == ["Step 1: PTQ for weight/bias initialization",
                                   "Step 2: Weight-only QAT training",
                                   "Step 3: Final PTQ for input/output quantization"]
    assert r["config"] == {k: {"bitwidth": b, "symmetric": True, "power_of_2": True}
                           for k, b in (("weight", 8), ("input", 8), ("output", 8), ("bias", 32))}
    assert len(res.history) == 2
    assert r["qat_best_accuracy"] == pytest.approx(max(h.accuracy for h in res.history), abs=1e-4)
    assert r["total_improvement"] == pytest.approx(r["final_accuracy"] - r["initial_accuracy"])
    assert im.preset.name == "pow2" and im.mode == "static"
    assert not any(q.enabled for q in res.qat_model.quantizers.values())   # activations float
    # step 3 calibrated the activations on the trained model; the weights are the trained ones
    for name, L in res.qat_model.layers.items():
        folded = im.graph_module.get_submodule(res.qat_model.targets[name])
        folded = folded[0] if isinstance(folded, torch.nn.Sequential) else folded   # LinearReLU
        assert torch.equal(folded.weight, L.weight.detach())
        np.testing.assert_array_equal(im.layers[name].w_scale, L.weight_q.scale(L.weight).numpy())
        np.testing.assert_array_equal(
            qk.dequantize(im.layers[name].w_int, im.layers[name].w_scale, 0, axis=0),
            L.quantized_weight().detach().numpy())
    details = r["final_quantization_details"]
    assert set(details) == {f"{m}.{t}" for m in ("fc1", "fc2", "fc3")
                            for t in ("weight", "bias", "input", "output")} | {"x.output", "flatten.output"}
    for k, d in details.items():
        assert list(d) == ["scale", "power_of_2", "hardware_op", "bitwidth"]
        e = int(round(math.log2(d["scale"])))
        assert d["scale"] == 2.0 ** e and d["power_of_2"] == f"2^({e})"
        assert d["hardware_op"] == (f"x >> {-e}" if e < 0 else f"x << {e}" if e > 0 else "x")
        assert d["bitwidth"] == (32 if k.endswith(".bias") else 8)
    k = r["qkernels"]
    assert k["integer_exact_accuracy"] == pytest.approx(r["final_accuracy"])
    assert k["evaluated_samples"] == 128


def test_no_final_ptq_is_weight_only(data):
    res = run_qat(_cfg(quantization={"weight": {"bitwidth": 4}}), load("mlp"), data,
                  final_ptq=False)
    r, im = res.report, res.integer_model
    assert im.mode == "weight_only"
    assert r["quantization_type"] == "PTQ → Weight-Only QAT" and len(r["pipeline_steps"]) == 2
    assert set(r["final_quantization_details"]) == {"fc1.weight", "fc2.weight", "fc3.weight"}
    assert r["final_quantization_details"]["fc1.weight"]["bitwidth"] == 4
    fq = im.reference.fq_modules
    for name, L in res.qat_model.layers.items():
        w = L.weight_q(L.weight).detach().numpy()    # what QAT ended with, fake-quantized
        m = fq[name][0] if isinstance(fq[name], torch.nn.Sequential) else fq[name]
        np.testing.assert_array_equal(m.weight.detach().numpy(), w)
    y = im(data[1][0][:8].numpy())   # the weight-only model runs those weights, float activations
    np.testing.assert_array_equal(y, res.qat_model.eval()(data[1][0][:8]).detach().numpy())
    # the tool's mixed example: 16-bit outputs train weight-only without the final PTQ
    cfg16 = _cfg(quantization={"weight": {"bitwidth": 4}, "output": {"bitwidth": 16}})
    res16 = run_qat(cfg16, load("mlp"), data, final_ptq=False)
    assert res16.integer_model.mode == "weight_only"
    assert res16.report["qkernels"]["ptq_integer_exact_accuracy"] is None


def test_low_bit_weight_only_recommends_full_qat(data):
    """Weight-only QAT then a final PTQ of 4-bit activations is where the replaced tool's steps do
    not recover (docs/qat_results.md): the run says so and names the options that do."""
    from qkernels.torch.qat.pipeline import weight_only_advice

    a4 = {"weight": {"bitwidth": 4}, "input": {"bitwidth": 4}, "output": {"bitwidth": 4}}
    cfg = _cfg(quantization=a4)
    assert "--full --learn-scales" in weight_only_advice(cfg)
    assert weight_only_advice(cfg, final_ptq=False) is None           # float activations
    assert weight_only_advice(_cfg(quantization=a4, qat={"mode": "full"})) is None
    assert weight_only_advice(_cfg(quantization={"output": {"bitwidth": 4}})) is not None
    assert weight_only_advice(_cfg(quantization={"weight": {"bitwidth": 4}})) is None   # A8
    with pytest.warns(UserWarning, match="qat.mode: full, qat.learn_scales: true"):
        run_qat(_cfg(quantization=a4, training={"epochs": 0}), load("mlp"), data)


def test_full_qat_learned_scales_are_deployed_exactly(full_resnet):
    res = full_resnet
    im, qat = res.integer_model, res.qat_model
    fixed = qat.fixed_qparams()
    for name, L in qat.layers.items():
        s = L.weight_q.scale(L.weight).detach().numpy()
        assert L.weight_q.log2_scale is not None and _is_pow2(s)
        np.testing.assert_array_equal(im.layers[name].w_scale, s)
    for name in qat.calibrated:
        assert im.qparams[name] == fixed[name] and _is_pow2(fixed[name][0])
    assert any(q.log2_scale is not None for q in qat.quantizers.values())
    assert "learned power-of-two scales" in res.report["quantization_type"]


def test_integer_equals_fake_quant(full_resnet, data):
    """The integer run of the QAT result against the QAT model (the fake-quant model it trained):
    every quantized tensor within one step, and the same predictions."""
    res = full_resnet
    k = res.report["qkernels"]
    rows = k["integer_vs_fake_quant"]
    assert {r["node"] for r in rows} >= set(res.integer_model.compute_layers())
    for r in rows:
        assert r["max_steps"] <= 1, r
        assert r["fraction_differing"] <= 0.01, r
    assert k["integer_exact_accuracy"] == pytest.approx(k["qat_model_accuracy"])
    assert res.report["final_accuracy"] == pytest.approx(k["integer_exact_accuracy"])
    for r in k["integer_vs_pytorch_fake_quant"]:   # PyTorch's fake quant rounds ties to even
        assert r["max_steps"] <= 1, r


def test_report_shifts_are_the_kernels(full_resnet, data, tmp_path):
    """Read the JSON back: every layer's shift is the one the integer kernels use (the layer's
    pow2 epilogue), and requantizing that layer's exact int32 accumulators with it reproduces the
    layer's integer output."""
    res = full_resnet
    im = res.integer_model
    path = tmp_path / "report.json"
    write_json(str(path), res.report)
    layers = json.loads(path.read_text())["qkernels"]["layers"]
    compute = im.compute_layers()
    assert set(layers) == set(compute)
    x = data[1][0][:16].numpy()
    raw = im.intermediates(x)
    for name, L in compute.items():
        j = layers[name]
        e = L.epilogue()
        assert e.scheme_name == "shift_half_up" and j["shift"] == e.shift.tolist(), name
        assert j["output_exponent"] - j["input_exponent"] - np.array(j["weight_exponent"]) == \
            pytest.approx(np.array(j["shift"]))
        xin = raw[L.inputs[0]]
        xz = int(L.x.zero_point)
        if isinstance(L, Ly.Conv2dLayer):
            acc = qk.conv2d_int32(xin.q, L.w_int, stride=L.stride, padding=L.padding,
                                  dilation=L.dilation, groups=L.groups, x_zero_point=xz)
            axis = 1
        else:
            acc = qk.linear_int32(xin.q, L.w_int, x_zero_point=xz)
            axis = acc.ndim - 1
        if e.bias is not None:
            acc = (acc + e.bias.reshape((-1,) + (1,) * (acc.ndim - 1 - axis))).astype(np.int32)
        y = qk.requantize_shift(acc, np.array(j["shift"], np.int32), int(L.out.zero_point),
                                axis=axis, dtype=raw[name].q.dtype, qmin=j["act_min"],
                                qmax=j["act_max"])
        np.testing.assert_array_equal(y, raw[name].q, err_msg=name)
        # the hardware op spelled out per channel: the same shift, the same rounding constant
        ops = [f"(acc + {1 << (int(n) - 1)}) >> {int(n)}" if n > 0 else
               (f"acc << {-int(n)}" if n < 0 else "acc") for n in np.atleast_1d(e.shift)]
        assert j["hardware_op"] == ops, name
    d = json.loads(path.read_text())["final_quantization_details"]
    for name in compute:   # bias scale = input scale * weight scale, 32 bits
        t = layers[name]["module"]
        if f"{t}.bias" in d:
            assert np.all(np.log2(d[f"{t}.bias"]["scale"]) == np.array(
                layers[name]["bias_scale_exponent"]))

    def shift_of(op):   # "x >> 9" -> -9, "x << 2" -> 2, "x" -> 0
        return 0 if op == "x" else (-1 if ">>" in op else 1) * int(op.split()[-1])
    # every tensor's scale and shift are the integer model's: weights, layer inputs and outputs,
    # every other quantized tensor
    seen = set()
    for name, L in compute.items():
        t = layers[name]["module"]
        for key, scale in ((f"{t}.weight", L.w_scale), (f"{t}.input", L.x.scale),
                           (f"{t}.output", L.out.scale)):
            entry = d[key]
            want = np.broadcast_to(np.asarray(scale, np.float64),
                                   np.shape(entry["scale"])).tolist()
            assert entry["scale"] == want, key
            ops = np.atleast_1d(entry["hardware_op"])
            assert [shift_of(o) for o in ops] == np.log2(np.atleast_1d(want)).astype(int).tolist()
            seen.add(key)
    for name, L in im.layers.items():
        if name not in compute and L.out is not None:
            entry = d[f"{name}.output"]
            assert entry["scale"] == float(L.out.scale)
            assert shift_of(entry["hardware_op"]) == int(np.log2(float(L.out.scale)))
            seen.add(f"{name}.output")
    assert set(d) - seen == {k for k in d if k.endswith(".bias")}
