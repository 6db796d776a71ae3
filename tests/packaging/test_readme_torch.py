"""The README's PyTorch examples run as written."""
import pytest

from test_readme import readme_blocks

pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")
pytest.importorskip("sklearn", reason="scikit-learn (the digits data) is a test requirement")
pytestmark = [pytest.mark.torch, pytest.mark.filterwarnings("ignore::UserWarning")]


def test_readme_torch_blocks_run(capsys):
    blocks = readme_blocks(torch_blocks=True)
    assert blocks, "README lost its PyTorch example"
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    acc = float(capsys.readouterr().out.strip().splitlines()[-1])
    assert acc > 0.95
