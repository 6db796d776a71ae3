"""An export describes exactly one model and loads back: IntegerModel.load(export) and pickle give
the same integers at every layer without the original PyTorch model; re-exporting with another
preset leaves only the new model's files; an interrupted export leaves the old one; files follow
the umask; a folder that is not an export is refused."""
import json
import os
import pickle
import stat

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")
pytest.importorskip("sklearn", reason="scikit-learn (the digits data) is a test requirement")

from qkernels.torch import IntegerModel, QuantConfig, TensorConfig, quantize_model  # noqa: E402
from qkernels.torch.reference_models import digits, load  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.filterwarnings("ignore::UserWarning")]

PRESETS = {
    "fbgemm": QuantConfig(),
    "tflite": QuantConfig(weight=TensorConfig(bits=8, symmetric=True, per_channel=True, signed=True),
                          activation=TensorConfig(bits=8, signed=True), preset="tflite"),
}


@pytest.fixture(scope="module")
def data():
    torch.set_num_threads(1)
    (xtr, _), (xte, _) = digits()
    return [xtr[:256]], xte.numpy()[:40]


def _same_integers(a, b, x):
    ta, tb = a.intermediates(x), b.intermediates(x)
    assert set(ta) == set(tb)
    for k in ta:
        va = ta[k].q if hasattr(ta[k], "q") else np.asarray(ta[k])
        vb = tb[k].q if hasattr(tb[k], "q") else np.asarray(tb[k])
        assert va.dtype == vb.dtype and np.array_equal(va, vb), k
    ya, yb = a(x), b(x)
    assert np.array_equal(ya.view(np.int32), yb.view(np.int32))


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("name", ["resnet", "mobilenetv2", "darknet"])
def test_load_of_export_and_pickle_give_the_same_integers(tmp_path, data, name, preset):
    calib, x = data
    im = quantize_model(load(name), calib, config=PRESETS[preset])
    im.export(str(tmp_path / "e"), x[:2])
    back = IntegerModel.load(str(tmp_path / "e"))
    assert back.reference is None and list(back.layers) == list(im.layers)
    _same_integers(im, back, x)
    again = pickle.loads(pickle.dumps(im))
    _same_integers(im, again, x)
    assert again.compare(x[:8])      # the pickled model keeps its float reference
    with pytest.raises(RuntimeError, match="reference"):
        back.compare(x[:8])


def test_reexport_leaves_one_model_and_interrupted_export_keeps_the_old(tmp_path, data, monkeypatch):
    calib, x = data
    out = tmp_path / "e"
    im_f = quantize_model(load("resnet"), calib, config=PRESETS["fbgemm"])
    im_t = quantize_model(load("resnet"), calib, config=PRESETS["tflite"])
    im_f.export(str(out), x[:2])
    assert (out / "layers" / "stem_0" / "requant_scale.txt").exists()
    im_t.export(str(out), x[:2])
    files = {os.path.relpath(os.path.join(r, f), out) for r, _, fs in os.walk(out) for f in fs}
    manifest = json.loads((out / "manifest.json").read_text())
    assert files == set(manifest["files"]) | {"manifest.json"}      # nothing stale
    assert not (out / "layers" / "stem_0" / "requant_scale.txt").exists()
    assert (out / "layers" / "stem_0" / "multiplier.txt").exists()
    assert json.loads((out / "report.json").read_text())["preset"] == "tflite"
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".e.")]   # no temp left

    from qkernels.torch import export as ex   # an export interrupted half-way

    def boom(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(ex, "_readme", boom)
    with pytest.raises(KeyboardInterrupt):
        im_f.export(str(out), x[:2])
    assert json.loads((out / "report.json").read_text())["preset"] == "tflite"   # untouched
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".e.")]


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_files_follow_the_umask(tmp_path, data, mask):
    calib, x = data
    im = quantize_model(load("mlp"), calib)
    old = os.umask(mask)
    try:
        im.export(str(tmp_path / "e"), x[:1])
    finally:
        os.umask(old)
    for root, dirs, files in os.walk(tmp_path / "e"):
        for f in files:
            assert stat.S_IMODE(os.stat(os.path.join(root, f)).st_mode) == 0o666 & ~mask, f
        for d in dirs:
            assert stat.S_IMODE(os.stat(os.path.join(root, d)).st_mode) == 0o777 & ~mask, d


def test_export_refuses_a_folder_that_is_not_an_export(tmp_path, data):
    calib, x = data
    im = quantize_model(load("mlp"), calib)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty and holds no qkernels export"):
        im.export(str(tmp_path / "mine"), x[:1])
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        im.export(str(tmp_path / "file"), x[:1])
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
