"""python -m qkernels qat / ptq: a user's model and data, the reference models, config errors
before any training (one error: line, exit code 2)."""
import json
import os

import pytest

pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")
pytest.importorskip("sklearn", reason="scikit-learn (the digits data) is a test requirement")
pytest.importorskip("yaml", reason="PyYAML is a test requirement (requirements-dev.txt)")

from _util import QAT_REPORT_KEYS as TOOL_KEYS  # noqa: E402

pytestmark = pytest.mark.torch
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_cli_qat_user_model_and_data(tmp_path, monkeypatch, capsys):
    """python -m qkernels qat with a module:factory model and data set: report, curve, plain
    progress lines (stderr is not a terminal)."""
    from qkernels.cli import main

    (tmp_path / "userpkg_qat.py").write_text(
        "import torch\n"
        "def build():\n"
        "    torch.manual_seed(0)\n"
        "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 32),\n"
        "                               torch.nn.ReLU(), torch.nn.Linear(32, 3))\n"
        "def data():\n"
        "    g = torch.Generator().manual_seed(1)\n"
        "    x = torch.rand(300, 1, 4, 4, generator=g)\n"
        "    y = (x.flatten(1)[:, :3].argmax(1))\n"
        "    return (x[:240], y[:240]), (x[240:], y[240:])\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("model: {name: 'userpkg_qat:build'}\ndata: {dataset: 'userpkg_qat:data'}\n"
                   "training: {epochs: 3, learning_rate: 0.01, batch_size: 32}\n"
                   "qat: {mode: full, learn_scales: true}\n")
    out = tmp_path / "out"
    assert main(["qat", "--config", str(cfg), "--out", str(out)]) == 0
    cap = capsys.readouterr()
    for e in (1, 2, 3):
        assert f"epoch {e}/3  loss " in cap.err and "accuracy" in cap.err
    rep = json.loads((out / "report.json").read_text())
    assert list(rep) == TOOL_KEYS and rep["qkernels"]["qat_mode"] == "full"
    assert set(rep["final_quantization_details"]) >= {"1.weight", "1.bias", "3.output"}
    png = (out / "accuracy.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert "integer-exact" in cap.out


def test_cli_ptq(tmp_path, capsys):
    from qkernels.cli import main

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("quantization: {weight: {bitwidth: 8, per_channel: true}}\n"
                   "ptq: {max_eval_batches: 2, calibration_batches: 2}\n")
    assert main(["ptq", "--config", str(cfg), "--model", "reference:mlp",
                 "--out", str(tmp_path / "o")]) == 0
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert list(rep) == TOOL_KEYS and rep["quantization_type"] == "PTQ"
    assert rep["qat_best_accuracy"] is None and len(rep["pipeline_steps"]) == 2
    assert isinstance(rep["final_quantization_details"]["fc1.weight"]["scale"], list)  # per channel
    assert not (tmp_path / "o" / "accuracy.png").exists()
    out = capsys.readouterr().out
    assert "integer-exact" in out and "fc1" in out


def test_cli_reports_config_errors_before_training(tmp_path, capsys):
    from qkernels.cli import main

    p = tmp_path / "bad.yaml"
    p.write_text("training:\n  optimizer:\n    type: Adamw\n")
    assert main(["qat", "--config", str(p), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "error: training.optimizer.type: must be one of AdamW, Adam, SGD" in err
    assert "epoch" not in err and not (tmp_path / "o").exists()
    # the tool's example (16-bit outputs): only weight-only QAT without the final PTQ
    mixed = os.path.join(ROOT, "examples", "qat_pow2_mixed_4_8_16_32.yaml")
    assert main(["qat", "--config", mixed, "--out", str(tmp_path / "o")]) == 2
    assert "quantization.output.bitwidth: 16" in capsys.readouterr().err
