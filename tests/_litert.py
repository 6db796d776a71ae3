"""LiteRT's interpreter (``ai-edge-litert``, a test requirement: requirements-dev.txt) for the
tests that run it live. ``litert_or_skip()`` skips, saying why, where the package is not
installed (it has no wheel for this platform or Python); with ``QKERNELS_REQUIRE_LITERT=1``
(set by CI, .ci/run) a missing interpreter fails the test instead; the sanitizer run (make
sanitize) leaves LiteRT out, as it does PyTorch and ONNX Runtime. The running itself is the
fixture script's (scripts/litertutil.py)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "scripts"))
from litertutil import float_inputs, make_inputs, run  # noqa: E402,F401


def litert_or_skip() -> None:
    if os.environ.get("QKERNELS_SANITIZED") == "1":
        pytest.skip("the sanitizer run: LiteRT is a prebuilt library, not built with the "
                    "sanitizers (as PyTorch and ONNX Runtime are kept out); make test runs it")
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError as e:
        if os.environ.get("QKERNELS_REQUIRE_LITERT") == "1":
            pytest.fail(f"QKERNELS_REQUIRE_LITERT=1 (CI) but LiteRT's interpreter cannot be "
                        f"imported: {e}; requirements-dev.txt installs ai-edge-litert")
        pytest.skip(f"ai-edge-litert is not installed ({e}): requirements-dev.txt installs it "
                    "where it has a wheel (Python >= 3.10, not Intel macOS)")
