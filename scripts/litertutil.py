"""Running a .tflite model in LiteRT's interpreter (``ai-edge-litert``, no TensorFlow), shared by
scripts/make_tflite_fixtures.py (which makes the committed fixtures) and the tests that run the
interpreter live on them (tests/_litert.py).

The three runtimes qkernels' TFLite presets reproduce are three op resolvers of one interpreter:
``ref`` (the reference kernels, ``BUILTIN_REF``: preset ``tflite``), ``xnn`` (the default XNNPACK
delegate, ``AUTO``: ``tflite_xnnpack``) and ``opt`` (the optimized built-ins without a delegate,
``BUILTIN_WITHOUT_DEFAULT_DELEGATES``: ``tflite_optimized``).

Example:
    >>> # out, ops = run(open("model.tflite", "rb").read(), [x_int8], "ref")
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

#: resolver name -> the OpResolverType member
RESOLVERS = {"ref": "BUILTIN_REF", "xnn": "AUTO", "opt": "BUILTIN_WITHOUT_DEFAULT_DELEGATES"}


def interpreter(tfl: bytes, resolver: str = "ref") -> "object":
    """A one-thread LiteRT interpreter of ``tfl`` with the named resolver (``RESOLVERS``)."""
    from ai_edge_litert import interpreter as litert
    kind = getattr(litert.OpResolverType, RESOLVERS[resolver])
    return litert.Interpreter(model_content=tfl, experimental_op_resolver_type=kind,
                              num_threads=1)


def run(tfl: bytes, inputs: Sequence[np.ndarray], resolver: str) -> Tuple[np.ndarray, List[str]]:
    """(the first output, the names of the ops the run executed: ``DELEGATE`` where XNNPACK took
    them) of ``tfl`` on ``inputs`` (batch resized to theirs)."""
    it = interpreter(tfl, resolver)
    for d, x in zip(it.get_input_details(), inputs):
        it.resize_tensor_input(d["index"], list(x.shape))
    it.allocate_tensors()
    for d, x in zip(it.get_input_details(), inputs):
        it.set_tensor(d["index"], x)
    it.invoke()
    out = it.get_tensor(it.get_output_details()[0]["index"]).copy()
    ops = [o["op_name"] for o in it._get_ops_details()]
    return out, ops


def make_inputs(shapes: Sequence[Tuple[int, ...]], batch: int, seed: int,
                int16: bool = False) -> List[np.ndarray]:
    """int8 (or, with ``int16``, int16) inputs uniform over the full range:
    ``default_rng(seed).integers(min, max + 1, (batch,) + shape)`` for each input in turn."""
    rng = np.random.default_rng(seed)
    if int16:
        return [rng.integers(-32768, 32768, (batch,) + tuple(s)).astype(np.int16) for s in shapes]
    return [rng.integers(-128, 128, (batch,) + tuple(s)).astype(np.int8) for s in shapes]


def float_inputs(tfl: bytes, shape: Tuple[int, ...], batch: int, seed: int) -> np.ndarray:
    """Float inputs of a model whose first op is QUANTIZE (s: the scale of its int8 output): a
    third uniform over 130 steps of s either side of 0, two thirds within 2 ulps of the rounding
    ties ``(k + 1/2) s``, and at the start the values whose ``x / s`` is beyond the int32 range
    (+-inf, +-3e38, +-s 2^31, +-s 2^32) and a few others (+-s 2^30, +-0, the range's ends)."""
    it = interpreter(tfl)
    s = np.float32(next(d["quantization"][0] for d in it.get_tensor_details()
                        if d["dtype"] == np.int8 and d["quantization"][0] > 0))
    rng = np.random.default_rng(seed)
    n = batch * int(np.prod(shape))
    u = (rng.uniform(-130, 130, n // 3) * s).astype(np.float32)
    k = rng.integers(-140, 140, n - u.size).astype(np.float32)
    near = ((k + np.float32(0.5)) * s).astype(np.float32)
    steps = rng.integers(-2, 3, near.size)
    for _ in range(2):
        near = np.where(steps > 0, np.nextafter(near, np.float32(np.inf)), near)
        near = np.where(steps < 0, np.nextafter(near, np.float32(-np.inf)), near)
        steps = steps - np.sign(steps)
    x = np.concatenate([u, near]).astype(np.float32)
    rng.shuffle(x)
    special = np.array([np.inf, -np.inf, 3e38, -3e38, s * 2.0 ** 31, -s * 2.0 ** 31,
                        s * 2.0 ** 32, -s * 2.0 ** 32, s * 2.0 ** 30, -s * 2.0 ** 30,
                        0.0, -0.0, 127.5 * s, -128.5 * s], np.float32)
    x[:special.size] = special
    return x.reshape((batch,) + tuple(shape))
