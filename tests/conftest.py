"""Shared test set-up: markers, random generators, and the value sets used by many tests."""
import numpy as np
import pytest

def pytest_configure(config):
    config.addinivalue_line("markers", "torch: needs PyTorch (kept out of the sanitizer run)")
    config.addinivalue_line("markers", "onnx: needs onnx/onnxruntime (kept out of the sanitizer run)")


@pytest.fixture
def rng():
    return np.random.default_rng(20261123)
