"""The README's Python examples run as written (the PyTorch ones in test_readme_torch.py)."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def readme_blocks(torch_blocks: bool):
    """The ```python blocks of README.md that use qkernels.torch (or those that do not)."""
    text = open(os.path.join(ROOT, "README.md")).read()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    return [b for b in blocks if ("qkernels.torch" in b) == torch_blocks]


def test_readme_python_blocks_run(capsys):
    blocks = readme_blocks(torch_blocks=False)
    assert len(blocks) >= 3, "README lost its python examples"
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert "2^(" in out and "SIMD path" in out
