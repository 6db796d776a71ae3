"""ONNX Runtime sessions of one node, built in the test (the test modules import onnx and
onnxruntime first, with pytest.importorskip): ort_session is the benchmarks' builder
(scripts/benchutil.py), one thread by default."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "scripts"))
from benchutil import ort_session  # noqa: E402,F401
