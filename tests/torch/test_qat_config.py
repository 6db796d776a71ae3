"""The QAT pipeline's YAML configuration: the replaced tool's keys, defaults, and clear errors
(naming the key path) before anything trains."""
import os

import pytest

pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")
yaml = pytest.importorskip("yaml", reason="PyYAML is a test requirement (requirements-dev.txt)")

from qkernels.torch.qat.config import ConfigError, PipelineConfig, load_config  # noqa: E402

pytestmark = pytest.mark.torch
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL_EXAMPLE = """
quantization:
  weight:    {bitwidth: 4,  symmetric: true,  power_of_2: true}
  input:     {bitwidth: 8,  symmetric: false, power_of_2: true}
  output:    {bitwidth: 16, symmetric: false, power_of_2: true}
  bias:      {bitwidth: 32, symmetric: true,  power_of_2: true}
training:
  epochs: 20
  learning_rate: 0.0001
  weight_decay: 0.01
  batch_size: 64
  optimizer:
    type: "AdamW"
  scheduler:
    type: "CosineAnnealingLR"
  criterion: MSELoss
ptq:
  max_eval_batches: 100
  calibration_batches: 50
model:
  name: reference:mlp
data:
  dataset: digits
"""


def test_defaults():
    c = PipelineConfig.from_dict({})
    assert [c.quantization[k].bitwidth for k in ("weight", "input", "output", "bias")] == [8, 8, 8, 32]
    assert all(c.quantization[k].symmetric and c.quantization[k].power_of_2 for k in c.quantization)
    t = c.training
    assert (t.optimizer, t.scheduler, t.criterion) == ("AdamW", "StepLR", "CrossEntropyLoss")
    assert (c.qat.mode, c.qat.learn_scales, c.model, c.dataset) == ("weight_only", False,
                                                                   "reference:resnet", "digits")
    assert PipelineConfig.from_dict(c.to_dict()) == c   # the full layout round-trips


def test_the_tools_example_loads(tmp_path):
    p = tmp_path / "cfg.yaml"
    p.write_text(TOOL_EXAMPLE)
    c = load_config(str(p), {"training": {"epochs": 3}})
    q = c.quantization
    assert (q["weight"].bitwidth, q["input"].bitwidth, q["output"].bitwidth, q["bias"].bitwidth) == \
        (4, 8, 16, 32)
    assert not q["input"].symmetric and c.training.epochs == 3
    assert (c.training.scheduler, c.training.criterion) == ("CosineAnnealingLR", "MSELoss")
    assert (c.ptq.max_eval_batches, c.ptq.calibration_batches) == (100, 50)
    with pytest.raises(ConfigError, match=r"^quantization\.output\.bitwidth: 16: .*2\.\.8-bit"):
        c.check_deployable(final_ptq=True)
    c.check_deployable(final_ptq=False)   # weight-only QAT: no integer activations needed
    p.write_text("training: {learning_rate: 1e-4}\n")   # YAML 1.1 reads 1e-4 as a string
    assert load_config(str(p)).training.learning_rate == 1e-4


@pytest.mark.parametrize("name", sorted(n for n in os.listdir(os.path.join(ROOT, "examples"))
                                         if n.startswith("qat_")))
def test_shipped_configs_load(name):
    c = load_config(os.path.join(ROOT, "examples", name))
    assert c.quantization["weight"].power_of_2
    if "16" not in name:
        c.check_deployable(final_ptq=True)


@pytest.mark.parametrize("doc, message", [
    ({"trainig": {}}, r"^trainig: unknown key \(known here: model, data, quantization"),
    ({"training": {"optimizer": {"type": "Adamw"}}},
     r"^training\.optimizer\.type: must be one of AdamW, Adam, SGD; got 'Adamw'"),
    ({"training": {"optimizer": {"typ": "SGD"}}}, r"^training\.optimizer\.typ: unknown key"),
    ({"training": {"scheduler": {"type": "OneCycleLR"}}}, r"^training\.scheduler\.type: must be one of"),
    ({"training": {"criterion": "NLLLoss"}}, r"^training\.criterion: must be one of"),
    ({"training": {"epochs": "ten"}}, r"^training\.epochs: expected an integer, got str 'ten'"),
    ({"training": {"epochs": True}}, r"^training\.epochs: expected an integer, got bool"),
    ({"training": {"batch_size": 0}}, r"^training\.batch_size: 0 is out of range"),
    ({"training": {"learning_rate": "fast"}}, r"^training\.learning_rate: expected a number"),
    ({"training": {"learning_rate": 0}}, r"^training\.learning_rate: 0\.0 must be finite and > 0"),
    ({"training": {"weight_decay": -1}}, r"^training\.weight_decay: -1\.0 must be finite and >= 0"),
    ({"training": {"optimizer": "SGD"}}, r"^training\.optimizer: expected a mapping of type"),
    ({"quantization": {"weight": {"bitwidth": 4.5}}},
     r"^quantization\.weight\.bitwidth: expected an integer, got float"),
    ({"quantization": {"weight": {"bitwidth": 1}}}, r"^quantization\.weight\.bitwidth: 1 is out of range"),
    ({"quantization": {"weight": {"bitwidth": 12}}}, r"^quantization\.weight\.bitwidth: 12: .*2\.\.8-bit"),
    ({"quantization": {"input": {"power_of_2": False}}}, r"^quantization\.input\.power_of_2: false"),
    ({"quantization": {"input": {"power_of_2": "yes"}}},
     r"^quantization\.input\.power_of_2: expected true or false"),
    ({"quantization": {"weight": {"symmetric": False}}}, r"^quantization\.weight\.symmetric: false"),
    ({"quantization": {"bias": {"per_channel": True}}}, r"^quantization\.bias\.per_channel: unknown key"),
    ({"quantization": {"activation": {}}}, r"^quantization\.activation: unknown key"),
    ({"ptq": {"max_eval_batches": 0}}, r"^ptq\.max_eval_batches: 0 is out of range"),
    ({"qat": {"mode": "both"}}, r"^qat\.mode: must be one of weight_only, full"),
    ({"ptq": {"observer": "max"}}, r"^ptq\.observer: must be one of minmax, moving_average"),
    ({"model": "resnet"}, r"^model: expected a mapping of name"),
    ({"model": {"name": ""}}, r"^model\.name: expected a non-empty string"),
])
def test_errors_name_the_key(doc, message):
    with pytest.raises(ConfigError, match=message):
        PipelineConfig.from_dict(doc)


def test_bad_files(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("training: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(p))
    p.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(str(p))
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(tmp_path / "missing.yaml"))
