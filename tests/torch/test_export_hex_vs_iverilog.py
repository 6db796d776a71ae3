"""The .hex files of an export are what Verilog's $readmemh reads: Icarus Verilog loads the
weights, int32 bias, fixed-point multipliers / shifts and golden input / output of exported layers
and prints the same integers as the .txt files and model.npz."""
import numpy as np
import pytest

from qkernels.io import read_array

torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")
pytest.importorskip("sklearn", reason="scikit-learn (the digits data) is a test requirement")

from _hdl import HAVE_IVERILOG, SKIP_REASON, simulate  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.skipif(not HAVE_IVERILOG, reason=SKIP_REASON)]


def test_exported_layer_hex_files_read_by_the_simulator(tmp_path):
    from qkernels.torch import QuantConfig, TensorConfig, quantize_model
    from qkernels.torch.reference_models import digits, load

    torch.set_num_threads(1)
    (xtr, _), (xte, _) = digits()
    cfg = QuantConfig(weight=TensorConfig(bits=8, symmetric=True, per_channel=True, signed=True),
                      activation=TensorConfig(bits=8, signed=True), preset="tflite")
    im = quantize_model(load("resnet"), [xtr[:256]], config=cfg)
    out = tmp_path / "e"
    im.export(str(out), xte[:1].numpy())
    checked = 0
    for layer in ("stem_0", "layer1_conv1", "fc"):
        d = out / "layers" / layer
        for key in ("weights", "bias", "multiplier", "shift", "input", "output"):
            txt = d / f"{key}.txt"
            if not txt.exists():
                continue
            ref = np.asarray(read_array(str(txt))).astype(np.int64).reshape(-1)
            npz = np.load(out / "model.npz")[f"{layer}/{key}"]
            bits = np.iinfo(npz.dtype).bits
            got = simulate(tmp_path, f"{layer}_{key}", str(d / f"{key}.hex"), ref.size, bits,
                            npz.dtype.kind == "i")
            assert np.array_equal(got, ref), (layer, key)
            assert np.array_equal(got, npz.astype(np.int64).reshape(-1))
            checked += ref.size
    assert checked > 1000
