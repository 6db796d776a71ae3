"""qkernels.torch.swap(..., ops=TRANSFORMER_OPS) on torchvision's ViT: each EncoderBlock (pre-
LayerNorm, nn.MultiheadAttention, GELU MLP, two residual adds) as one integer block, the final
LayerNorm integer; against the float model. A small ViT of torchvision's own class (2 blocks,
hidden 64) keeps the test fast; scripts/vit_accuracy.py runs vit_b_16."""
import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")

from qkernels.torch import TRANSFORMER_OPS, IntegerBlock, swap  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
import vit_accuracy as VA  # noqa: E402


@pytest.fixture(scope="module")
def vit():
    try:
        tv = VA.import_torchvision()
    except ImportError as exc:
        pytest.fail(f"torchvision is a test requirement (requirements-zoo.txt): {exc}")
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    m = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=64,
                          mlp_dim=128, num_classes=10).eval()
    VA.untrained_fixups(m)
    with torch.no_grad():   # torchvision zero-initialises the head: give it weights
        m.heads.head.weight.normal_(0, 0.1)
    return m, tv


def test_vit_integer_blocks_vs_float(vit):
    m, _ = vit
    torch.manual_seed(1)
    cal = [torch.randn(4, 3, 32, 32) for _ in range(4)]
    x = torch.randn(8, 3, 32, 32)
    originals = dict(m.named_modules())
    c, cls, sw = VA.encoder_cosines(m, cal, x)
    kinds = sorted(getattr(v, "kind", type(v.original).__name__) for v in sw.values())
    assert kinds == ["Linear", "encoder_block", "encoder_block", "layernorm"], kinds
    assert all(originals[n] is mod for n, mod in m.named_modules())
    # measured (this seed): encoder output cosine 0.9997..0.9998 over the 8 images, class
    # token 0.9997..0.9999; module SQNR 37.1 / 38.8 (blocks), 37.4 (the final LayerNorm, int8;
    # 79.7 int16 in and out with QuantConfig(token_rows=True)), 41.3 (head)
    assert c.min() >= 0.999 and cls.min() >= 0.998, (c, cls)
    for v in sw.values():
        top = 90 if getattr(v, "kind", "") == "layernorm" else 60
        assert 30 < v.report()["sqnr_db"] < top, (v.name, v.report()["sqnr_db"])


def test_vit_residual_stream_is_exact_between_blocks(vit):
    m, _ = vit
    torch.manual_seed(2)
    cal = [torch.randn(4, 3, 32, 32)]
    with torch.no_grad(), swap(m, cal, ops=TRANSFORMER_OPS) as sw:
        b0, b1 = sw["encoder.layers.encoder_layer_0"], sw["encoder.layers.encoder_layer_1"]
        assert isinstance(b0, IntegerBlock) and b0.block.u == b1.block.u
        b0.keep = b1.keep = True
        m(torch.randn(3, 3, 32, 32))
        # block 1 starts from block 0's int32 stream exactly (dequantize then quantize: lossless)
        assert b0.last["out"].dtype == np.int32
        assert np.array_equal(b0.last["out"], b1.last["x"])
        assert 0 < np.abs(b1.last["x"]).max() < 2 ** 24
        with pytest.raises(ValueError, match="batch, sequence, hidden"):
            b0(torch.zeros(3, 64))
