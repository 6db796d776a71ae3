"""Shared test set-up: markers and the random generator.

In the sanitizer run (`make sanitize`, QKERNELS_SANITIZED=1) the test modules marked `torch` or
`onnx` are not even imported: PyTorch and ONNX Runtime are large prebuilt libraries that are not
built with the sanitizers, and loading them under an LD_PRELOADed ASan runtime proves nothing about
our C code. The module marked `packaging` (it builds a normal wheel and runs it under another
NumPy) stays out too. Every other test module runs there against the sanitized extension.
"""
import os
import re

import numpy as np
import pytest

_RUNTIME_MARK = re.compile(r"^pytestmark\s*=.*pytest\.mark\.(torch|onnx|packaging)", re.M)


def pytest_ignore_collect(collection_path, config):
    if os.environ.get("QKERNELS_SANITIZED") != "1" or collection_path.suffix != ".py":
        return None
    try:
        text = collection_path.read_text()
    except OSError:
        return None
    return True if _RUNTIME_MARK.search(text) else None

def pytest_configure(config):
    config.addinivalue_line("markers", "torch: needs PyTorch (kept out of the sanitizer run)")
    config.addinivalue_line("markers", "onnx: needs onnx/onnxruntime (kept out of the sanitizer run)")
    config.addinivalue_line("markers", "packaging: builds and runs a normal wheel (kept out of the sanitizer run)")


@pytest.fixture
def rng():
    return np.random.default_rng(20261123)


@pytest.fixture
def engine(request):
    """PyTorch's quantized engine set to the test's parameter (parametrize it with
    ``indirect=True``), and put back afterwards."""
    import torch
    old = torch.backends.quantized.engine
    torch.backends.quantized.engine = request.param
    yield request.param
    torch.backends.quantized.engine = old
