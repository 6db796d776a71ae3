"""PyTorch bridge (optional dependency: ``pip install qkernels[torch]``).

Quantize a float model and run it integer-exact, or run a model PyTorch quantized itself, on
qkernels' kernels; both give an :class:`IntegerModel` with the same ``__call__``, ``compare``,
``intermediates`` and ``export``:

    >>> from qkernels.torch import quantize_model, QuantConfig, TensorConfig, IntegerModel
    >>> from qkernels.torch import from_torch_quantized

or swap a live model's PyTorch-quantized modules for integer ones in place, without tracing
(:func:`swap`, a context manager; works where ``torch.fx`` cannot trace, e.g. Hugging Face BERT):

    >>> from qkernels.torch import swap

Where things live: :mod:`~qkernels.torch.config` (QuantConfig, TensorConfig),
:mod:`~qkernels.torch.ops` (the op table: one entry per supported op),
:mod:`~qkernels.torch.layers` (the typed integer layers), :mod:`~qkernels.torch.model`
(IntegerModel and its references), :mod:`~qkernels.torch.qarith` (PyTorch's quantized arithmetic
in NumPy), :mod:`~qkernels.torch.quantize` and :mod:`~qkernels.torch.convert` (the two front
ends), :mod:`~qkernels.torch.swapping` (the module swap), :mod:`~qkernels.torch.export` (files
for test benches), :mod:`~qkernels.torch.reference_models` (small networks trained on
scikit-learn's digits).
"""
try:
    import torch as _torch  # noqa: F401
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise ImportError("qkernels.torch needs PyTorch: pip install 'qkernels[torch]' "
                      f"({_exc})", name="torch") from _exc

from .config import QuantConfig, TensorConfig
from .convert import from_torch_quantized
from .model import IntegerModel, LayerReport
from .qarith import QTensor
from .quantize import quantize_model
from .swapping import TRANSFORMER_OPS, IntegerBlock, IntegerModule, swap

__all__ = ["IntegerBlock", "IntegerModel", "IntegerModule", "LayerReport", "QTensor", "QuantConfig",
           "TensorConfig", "TRANSFORMER_OPS", "from_torch_quantized", "quantize_model", "swap"]
