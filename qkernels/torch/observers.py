"""Observers that need PyTorch: PyTorch's own ``HistogramObserver`` behind qkernels' interface.

``TorchHistogramObserver`` feeds the batches to ``torch.ao.quantization.HistogramObserver`` and
takes the clipping range its L2 search (``_non_linear_param_search``) picks; the range becomes a
scale and zero point through :func:`qkernels.choose_qparams`, PyTorch's own rule, so the result
equals ``HistogramObserver.calculate_qparams()`` (and power-of-two snapping can be applied on top).

Example:
    >>> import numpy as np
    >>> from qkernels.torch.observers import TorchHistogramObserver
    >>> obs = TorchHistogramObserver(dtype=np.uint8)
    >>> obs.update(np.random.default_rng(0).standard_normal(10_000).astype(np.float32))
    >>> p = obs.calculate_qparams(); 0 < float(p.scale) < 0.05
    True
"""
from __future__ import annotations

from typing import Any, Tuple

import numpy as np
import torch

from .. import _checks as C
from ..observers import Observer

__all__ = ["TorchHistogramObserver"]


class TorchHistogramObserver(Observer):
    """PyTorch's ``HistogramObserver`` (per tensor, ``bins`` histogram bins, default 2048).

    Args:
        bins: histogram bins of the PyTorch observer.
        dtype, symmetric, reduce_range, narrow_range, bits, power_of_two: as for every
            :class:`qkernels.Observer`; 8-bit storage types only (PyTorch's observer is quint8 /
            qint8).
    """

    def __init__(self, bins: int = 2048, **kw: Any) -> None:
        super().__init__(**kw)
        if self.axis is not None:
            raise ValueError("TorchHistogramObserver is per tensor; use axis=None")
        if self.dtype not in (np.dtype(np.uint8), np.dtype(np.int8)):
            raise ValueError(f"dtype must be uint8 or int8 for PyTorch's HistogramObserver; got "
                             f"{self.dtype}")
        lo, hi = C.qrange(self.dtype, bits=self.bits, narrow_range=self.narrow_range,
                          reduce_range=self.reduce_range)
        self._torch = torch.ao.quantization.HistogramObserver(
            bins=int(bins), dtype=torch.quint8 if self.dtype == np.uint8 else torch.qint8,
            qscheme=torch.per_tensor_symmetric if self.symmetric else torch.per_tensor_affine,
            quant_min=lo, quant_max=hi)

    def update(self, x: Any) -> None:
        a = self._prepare(x)
        self._torch(torch.from_numpy(np.ascontiguousarray(a)))
        self.batches += 1

    def range(self) -> Tuple[np.ndarray, np.ndarray]:
        """The clipping range PyTorch's L2 search chose, float32."""
        mn, mx = self._torch._non_linear_param_search()
        return (np.array([float(mn)], np.float32), np.array([float(mx)], np.float32))
