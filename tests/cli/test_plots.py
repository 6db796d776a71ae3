"""--plots: the quantize command writes plots/layer_errors.png into its export, collect writes
ptf_channels.png; both are real PNG images of a sensible size, and the commands print their paths."""
import struct

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="matplotlib is a test requirement (requirements-dev.txt)")
pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")
pytest.importorskip("sklearn", reason="scikit-learn (the digits data) is a test requirement")

from qkernels.cli import main  # noqa: E402

pytestmark = pytest.mark.torch


def _png_size(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    w, h = struct.unpack(">II", data[16:24])
    return w, h, len(data)


def test_quantize_plots(tmp_path, capsys):
    out = tmp_path / "e"
    assert main(["quantize", "--model", "reference:resnet", "--out", str(out), "--plots"]) == 0
    printed = capsys.readouterr().out
    png = out / "plots" / "layer_errors.png"
    assert f"picture: {png}" in printed
    w, h, n = _png_size(png)
    assert 500 <= w <= 3000 and 400 <= h <= 2000 and n > 20_000
    import json
    assert "plots/layer_errors.png" in json.loads((out / "manifest.json").read_text())["files"]
    assert main(["quantize", "--model", "reference:resnet", "--plots"]) == 2
    assert "--plots writes into the export folder" in capsys.readouterr().err


def test_collect_plots(tmp_path, capsys):
    rng = np.random.default_rng(0)
    d = tmp_path / "npy"
    d.mkdir()
    x = rng.standard_normal((40, 64)).astype(np.float32)
    x[:, 3] *= 9
    np.save(d / "ln_input.npy", x)
    np.save(d / "gamma.npy", np.ones(64, np.float32))
    np.save(d / "beta.npy", np.zeros(64, np.float32))
    out = tmp_path / "q"
    assert main(["collect", "--from-npy", str(d), "--out", str(out), "--plots", "--quiet"]) == 0
    assert f"picture: {out / 'ptf_channels.png'}" in capsys.readouterr().out
    w, h, n = _png_size(out / "ptf_channels.png")
    assert 600 <= w <= 3000 and 300 <= h <= 2000 and n > 10_000
