"""The compiled integer graph behind :class:`qkernels.torch.IntegerModel`: a flat list of steps
over numbered slots, each step a *kernel* whose parameters were derived and checked once, when
the graph was compiled.

A slot holds a plain array: integers for a quantized tensor (its scale, zero point and dtype are
static, in :attr:`Plan.metas`) or float32. A kernel is called ``kernel(threads, *inputs)`` and
returns the output array; ``threads`` is the caller's thread budget (``None``: the CPUs this
process may use), spent on chunks of the batch run at once or inside the conv / linear calls
(see :class:`Plan`). Results never depend on it.

The kernels run on qkernels' public API only: the prepared conv / linear calls
(:func:`qkernels.prepare_qconv2d`, :func:`qkernels.prepare_qlinear`), the C ops of
:mod:`qkernels.qops` and the keyword functions; the typed layers (:mod:`qkernels.torch.layers`)
build them.

Example:
    >>> import numpy as np
    >>> from qkernels.torch._runtime import Plan, QMeta, clamp_kernel
    >>> p = Plan(2, [0], 1, [(clamp_kernel(10, 20), (0,), 1, "clip")], {0: QMeta(0.1, 0, np.dtype(np.uint8))})
    >>> p.run([np.array([5, 15, 25], np.uint8)], None)
    array([10, 15, 20], dtype=uint8)
"""
from __future__ import annotations

import functools

import math
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

import qkernels as qk
from qkernels import _checks as C
from qkernels import qops, ufuncs
from qkernels.linear import PreparedQConv2d, PreparedQLinear, check_threads, default_threads

F32 = np.float32
Kernel = Callable[..., Any]

_Q8 = (np.dtype(np.uint8), np.dtype(np.int8))
# Thread grains (2 CPUs). A conv / linear call takes one thread per 500K multiply-accumulates
# (_split_threads: two threads from 1M). Measured on mobilenet_v2 at batch 1 (2026-12-07, each
# layer's minimum over 40 interleaved runs, one thread vs two; the machine was shared, minima
# stand for its quiet moments): the second thread paid from the smallest layers up -- depthwise
# 3x3 at 0.25M / 0.42M MACs 36 -> 27 us / 51 -> 35 us, 1x1 at 2.4M / 4.8M 20 -> 18 us /
# 43 -> 29 us, the 1.3M-MAC classifier 50 -> 48 us -- and the whole model's minimum went from
# 3.35 ms (grain 4M: every layer under 8M MACs on one thread, the helper asleep between the few
# split layers) to 2.46 ms (500K) and 2.53 ms (125K); its medians, with the second CPU mostly
# busy (load 3.3), went the other way, 4.81 / 5.02 / 5.26 ms (a layer waits for a helper
# preempted in its job), so the figure for a quiet machine is still to be taken. A batch is
# split into chunks run at once only when each chunk has 64M (measured at batch 32 on the
# reference models): the chunks' Python steps share the GIL, and on these small networks
# (0.24-0.53M MACs per image) a split batch of 32 ran up to 1.7x slower than one thread (resnet
# 0.63 vs 0.36 ms).
_MACS_PER_THREAD = 500_000
_MACS_PER_CHUNK = 64_000_000

__all__ = ["QMeta", "Plan", "Kernel", "ConvAdd", "default_threads", "check_threads", "per_sample"]


class QMeta(NamedTuple):
    """Static quantization parameters of an integer slot: scale, zero point, integer type and
    (when narrower than the type) the bit width."""

    scale: float
    zero_point: int
    dtype: np.dtype
    bits: Optional[int] = None

    def qrange(self) -> Tuple[int, int]:
        """The integer range [qmin, qmax]."""
        return C.qrange(np.dtype(self.dtype), bits=self.bits)


class Plan:
    """Steps ``(kernel, input slots, output slot, node name)`` run in order over a slot list.

    ``inputs``: the slots the call's inputs go to; ``output``: the output slot, or a callable
    ``f(env) -> value`` for a structured output; ``metas``: slot -> :class:`QMeta` for the
    integer slots (float slots are absent).

    With a thread budget of 2 or more, a plan whose kernels all work image by image (each kernel
    says so with ``kernel.per_sample = True``) runs the batch in up to ``threads`` chunks at once,
    one thread per chunk (the kernels release the GIL), when each chunk has at least 4 images and
    5M multiply-accumulates; otherwise each conv / linear kernel gets the budget (and takes one
    thread per 4M multiply-accumulates of its own). The outputs are the same integers.

    ``trace_steps`` (default: ``steps``): the steps of a run that keeps every node's value (a
    plan whose ``steps`` fuse two nodes into one kernel, e.g. a conv and the add after it, keeps
    the unfused steps here: the same outputs, and every intermediate).
    """

    __slots__ = ("n_slots", "inputs", "output", "steps", "trace_steps", "metas", "names",
                 "per_sample", "_pool")

    def __init__(self, n_slots: int, inputs: Sequence[int], output: Any,
                 steps: List[Tuple[Kernel, Tuple[int, ...], int, str]],
                 metas: Dict[int, QMeta],
                 trace_steps: Optional[List[Tuple[Kernel, Tuple[int, ...], int, str]]] = None
                 ) -> None:
        steps, n_slots = place_cats(steps, n_slots, inputs)
        self.n_slots = n_slots
        self.inputs = tuple(inputs)
        self.output = output
        self.steps = steps
        self.trace_steps = steps if trace_steps is None else trace_steps
        self.metas = metas
        # node name -> its slot (the cat buffers' steps, named "", are no node)
        self.names = {name: out for _, _, out, name in self.trace_steps if name}
        made_by = {out: ins for _, ins, out, _ in steps}
        self.per_sample = (len(self.inputs) == 1 and isinstance(output, int)
                           and bool(made_by.get(output)) and
                           all(getattr(k, "per_sample", False) for k, _, _, _ in steps))
        self._pool: Any = None

    def run(self, inputs: Sequence[Any], threads: Optional[int],
            trace: Optional[Dict[str, Any]] = None) -> Any:
        """Run the steps; returns the output slot's value (integers stay integers: the caller
        dequantizes with :attr:`metas`). ``trace`` collects ``node name -> slot value``."""
        t = default_threads() if threads is None else threads
        if t > 1 and trace is None and self.per_sample:
            x = inputs[0]
            if hasattr(x, "detach"):
                x = x.detach().numpy()
            n = x.shape[0] if isinstance(x, np.ndarray) and x.ndim >= 2 else 0
            chunks = min(t, n // 4, n * self.macs_per_image() // _MACS_PER_CHUNK)
            if chunks > 1:
                return self._run_chunks(x, chunks, max(1, t // chunks))
        return self._run(inputs, t, trace)

    def macs_per_image(self) -> int:
        """Multiply-accumulates per image of the conv / linear kernels (``kernel.macs``; a conv
        kernel knows it after its first call)."""
        return sum(getattr(k, "macs", 0) for k, _, _, _ in self.steps)

    def _run(self, inputs: Sequence[Any], t: int, trace: Optional[Dict[str, Any]]) -> Any:
        env: List[Any] = [None] * self.n_slots
        for slot, v in zip(self.inputs, inputs):
            env[slot] = v
        for k, ins, out, name in (self.steps if trace is None else self.trace_steps):
            if len(ins) == 1:
                env[out] = k(t, env[ins[0]])
            else:
                env[out] = k(t, *[env[i] for i in ins])
            if trace is not None and name:
                trace[name] = env[out]
        o = self.output
        return env[o] if isinstance(o, int) else o(env)

    def _run_chunks(self, x: np.ndarray, chunks: int, t: int) -> np.ndarray:
        from concurrent.futures import ThreadPoolExecutor

        parts = np.array_split(x, chunks)
        if self._pool is None or self._pool._max_workers < chunks - 1:
            self._pool = ThreadPoolExecutor(max_workers=chunks - 1,
                                            thread_name_prefix="qkernels-plan")
        futures = [self._pool.submit(self._run, (p,), t, None) for p in parts[1:]]
        try:
            outs = [self._run((parts[0],), t, None)] + [f.result() for f in futures]
        except Exception:
            for f in futures:
                f.cancel()
            # the error again, from the whole batch (its message indexes the whole input)
            return self._run((x,), t, None)
        return np.concatenate(outs, axis=0)


def per_sample(kernel: Kernel) -> Kernel:
    """Mark a kernel as working image by image along axis 0 (the batch may be split)."""
    kernel.per_sample = True  # type: ignore[attr-defined]
    return kernel


def _split_threads(t: int, macs: int) -> int:
    """The threads a conv / linear call of ``macs`` multiply-accumulates takes out of a budget
    of ``t``: one per ``_MACS_PER_THREAD`` (the measurements are at its definition)."""
    return max(1, min(t, macs // _MACS_PER_THREAD))


# ---- conv / linear -----------------------------------------------------------------------------
class ConvAdd(NamedTuple):
    """PyTorch's quantized add (``relu``: add_relu) of a conv's output and another tensor, to be
    fused into the conv's call (:func:`conv2d_kernel`): the conv output's scale, the
    other operand's parameters, the add's output parameters, and ``fallback(x, y)`` (the add
    kernel) for an operand the fused call does not take."""

    conv_scale: float
    other: QMeta
    out_scale: float
    out_zero_point: int
    relu: bool
    fallback: Kernel


def conv2d_kernel(conv: PreparedQConv2d, add: Optional[ConvAdd] = None,
                  channel0: Optional[int] = None) -> Kernel:
    """A prepared conv as a kernel (x: NCHW of ``conv.x_dtype``). ``qk_conv2d`` chooses the
    algorithm (1x1 as a GEMM over the pixels, a batch of small images as one wide image, tiles),
    in C, for every caller.

    With ``add``: the kernel is ``kernel(t, x, other)``, the conv followed by the quantized add
    of its output and ``other`` in one C call (``qk_conv2d_add``: the add, with
    :func:`qkernels.qops.qadd`'s arithmetic, runs over the output right after the conv wrote it,
    on the call's threads; no intermediate array, one step less): the same bits as the two
    kernels one after the other, which run instead when ``other`` is not an array of the conv
    output's shape and dtype).

    With ``channel0`` (not with ``add``): ``kernel(t, x, buf)`` writes its output into channels
    ``channel0 .. + out_channels`` of the NCHW array ``buf`` (a concatenation's output, see
    :func:`place_cats`) and returns that slice. ``kernel.conv`` is the prepared conv."""
    if channel0 is not None and add is not None:
        raise ValueError("a conv writing into a concatenation takes no fused add")
    p = conv.packed
    xdt = conv.x_dtype
    n = p.out_channels
    into = channel0 is not None
    c0 = int(channel0 or 0)
    # (input shape, thread budget) -> (runner, threads, output shape): the per-call work is a
    # dict lookup
    runs: Dict[Tuple[Tuple[int, ...], int], Tuple[Any, int, Tuple[int, ...]]] = {}

    def get(x: np.ndarray, t: int) -> Tuple[Any, int, Tuple[int, ...]]:
        if x.dtype != xdt:
            raise TypeError(f"conv input has dtype {x.dtype}, expected {xdt}")
        g = runs.get((x.shape, t))
        if g is None:
            ohw = conv._geometry(x.shape)[1]
            macs = ohw[0] * ohw[1] * p.out_channels * p.k
            kernel.macs = macs  # type: ignore[attr-defined]
            if len(runs) >= 64:      # a bounded cache (many shapes or budgets: rebuilt)
                runs.clear()
            if add is not None:
                run = conv.add_runner(x.shape, add.conv_scale, add.other.scale,
                                      add.other.zero_point, add.out_scale, add.out_zero_point,
                                      add.relu)
            else:
                run = conv.runner_into(x.shape) if into else conv.runner(x.shape)
            g = runs[(x.shape, t)] = (run, _split_threads(t, macs * x.shape[0]),
                                      (x.shape[0], n) + ohw)
        return g

    if into:
        def kernel(t: int, x: np.ndarray, buf: np.ndarray) -> np.ndarray:
            run, nt, _ = get(x, t)
            return run(x if x.flags.c_contiguous else np.ascontiguousarray(x),
                       buf[:, c0:c0 + n], nt)
    elif add is None:
        def kernel(t: int, x: np.ndarray) -> np.ndarray:  # type: ignore[misc]
            run, nt, _ = get(x, t)
            return run(x if x.flags.c_contiguous else np.ascontiguousarray(x), nt)
    else:
        odt, plain = conv.out_dtype, conv2d_kernel(conv)

        def kernel(t: int, x: np.ndarray, other: np.ndarray) -> np.ndarray:  # type: ignore[misc]
            run, nt, shape = get(x, t)
            if not isinstance(other, np.ndarray) or other.dtype != odt or other.shape != shape:
                return add.fallback(t, plain(t, x), other)
            return run(x if x.flags.c_contiguous else np.ascontiguousarray(x),
                       other if other.flags.c_contiguous else np.ascontiguousarray(other), nt)
    kernel.conv = conv  # type: ignore[attr-defined]
    return per_sample(kernel)


def linear_kernel(lin: PreparedQLinear) -> Kernel:
    """A prepared linear as a kernel (x: (..., K) of ``lin.x_dtype``)."""
    n, k = lin.packed.out_channels, lin.packed.k
    xdt = lin.x_dtype
    run = lin.runner()

    def kernel(t: int, x: np.ndarray) -> np.ndarray:
        if x.dtype != xdt or x.ndim < 1 or x.shape[-1] != k:
            return lin(x)   # raises the keyword API's error
        x2 = x if x.ndim == 2 and x.flags.c_contiguous else np.ascontiguousarray(x.reshape(-1, k))
        y = run(x2, _split_threads(t, x2.shape[0] * n * k))
        return y if x.ndim == 2 else y.reshape(x.shape[:-1] + (n,))
    kernel.macs = n * k  # type: ignore[attr-defined]
    return per_sample(kernel)


def dynamic_linear_kernel(packed: Any, w_scale: Any, bias: Optional[np.ndarray],
                          quantize_input: Callable[[np.ndarray], Any], relu: bool,
                          act_max: Optional[float]) -> Kernel:
    """PyTorch's dynamic Linear as a kernel (float32 x (..., K) in, float32 out): the input
    quantized per call by ``quantize_input`` (a QTensor: q, scale, zero_point), then one C call
    with the float output stage fused into the GEMM (``qkernels.linear_float_runner``:
    ``fmaf(acc, fl(x_scale * w_scale[o]), bias[o])``), then ReLU / the ReLU6 clamp."""
    n, k = packed.out_channels, packed.k
    run = qk.linear_float_runner(packed, bias)
    ws = np.ascontiguousarray(np.broadcast_to(np.asarray(w_scale, np.float32), (n,)))
    hi = None if act_max is None else np.float32(act_max)
    f32, zero = np.float32, np.float32(0)

    def kernel(t: int, x: Any) -> np.ndarray:
        xq = quantize_input(x)
        q = xq.q
        x2 = q if q.ndim == 2 and q.flags.c_contiguous else np.ascontiguousarray(q.reshape(-1, k))
        y = run(x2, int(xq.zero_point), f32(xq.scale) * ws,
                _split_threads(t, x2.shape[0] * n * k))
        if q.ndim != 2:
            y = y.reshape(q.shape[:-1] + (n,))
        if relu:
            np.maximum(y, zero, out=y)
        return y if hi is None else np.minimum(y, hi, out=y)
    kernel.macs = n * k  # type: ignore[attr-defined]
    return kernel


# ---- elementwise and pooling -----------------------------------------------------------------
def add_kernel(a: QMeta, b: QMeta, out_scale: float, out_zero_point: int, relu: bool,
               fallback: Callable[[np.ndarray, np.ndarray], np.ndarray],
               engine: str = "fbgemm") -> Kernel:
    """PyTorch's quantized add (add_relu) with the arithmetic of ``engine``; ``fallback(a, b)``
    (the NumPy reference) handles what the C op does not (broadcasting, other dtypes)."""
    sa, za, sb, zb = float(a.scale), int(a.zero_point), float(b.scale), int(b.zero_point)
    so, zo, r = float(out_scale), int(out_zero_point), bool(relu)
    qadd = functools.partial(qops.qadd, engine=engine)
    c_ok = a.dtype == b.dtype and a.dtype in _Q8

    def kernel(t: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        if c_ok and x.shape == y.shape and x.flags.c_contiguous and y.flags.c_contiguous:
            return qadd(x, y, sa, za, sb, zb, so, zo, r, threads=t)
        return fallback(x, y)
    return per_sample(kernel)


def mul_kernel(a: QMeta, b: QMeta, out_scale: float, out_zero_point: int, relu: bool,
               fallback: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Kernel:
    """PyTorch's quantized mul (mul_relu): the C op (:func:`qkernels.qops.qmul`) on 8-bit
    tensors of one dtype with ``y`` the shape of ``x`` or ``(N, C, 1, 1)`` of an NCHW ``x`` (the
    squeeze-excitation scale), either operand order; ``fallback(x, y)`` (the NumPy reference)
    for any other broadcast, dtype, or a multiplier the C op refuses (above 2^15)."""
    sa, za, sb, zb = float(a.scale), int(a.zero_point), float(b.scale), int(b.zero_point)
    so, zo, r = float(out_scale), int(out_zero_point), bool(relu)
    f = np.float32
    c_ok = (a.dtype == b.dtype and a.dtype in _Q8 and
            f(f(f(sa) * f(sb)) * f(f(1) / f(so))) <= 2.0 ** 15)
    op = qops.qmul

    def per_plane(big: np.ndarray, small: np.ndarray) -> bool:
        return (big.ndim == small.ndim >= 2 and big.shape[:2] == small.shape[:2] and
                all(d == 1 for d in small.shape[2:]))

    def kernel(t: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        if c_ok and x.dtype == y.dtype == a.dtype:
            if x.shape == y.shape or per_plane(x, y):
                return op(x, y, sa, za, sb, zb, so, zo, r)
            if per_plane(y, x):        # a product commutes (c and m alike): the plane first
                return op(y, x, sb, zb, sa, za, so, zo, r)
        return fallback(x, y)
    return per_sample(kernel)


def leaky_relu_kernel(x_meta: QMeta, slope: float, out_scale: float, out_zero_point: int,
                      fallback: Callable[[np.ndarray], np.ndarray]) -> Kernel:
    sx, zx, so, zo, sl = float(x_meta.scale), int(x_meta.zero_point), float(out_scale), \
        int(out_zero_point), float(slope)
    op = qops.qleaky_relu
    if x_meta.dtype not in _Q8:
        return per_sample(lambda t, x: fallback(x))
    return per_sample(lambda t, x: op(x, sx, zx, sl, so, zo))


def clamp_kernel(lo: int, hi: int) -> Kernel:
    """Integer clamp to [lo, hi] (quantized ReLU / ReLU6 / Hardtanh)."""
    lo, hi = int(lo), int(hi)
    op = qops.qclamp

    def kernel(t: int, x: np.ndarray) -> np.ndarray:
        if x.dtype in _Q8:
            return op(x, lo, hi)
        return np.clip(x, lo, hi)
    return per_sample(kernel)


def max_pool2d_kernel(kernel_size: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool,
                      fallback: Callable[[np.ndarray], np.ndarray]) -> Kernel:
    """Integer max pooling (PyTorch's output size rule)."""
    pool = qops.MaxPool2d(kernel_size, stride, padding, dilation, ceil_mode)

    def kernel(t: int, x: np.ndarray) -> np.ndarray:
        if x.dtype not in _Q8 or x.ndim != 4:
            return fallback(x)
        return pool(x)
    kernel.keeps_channels = True  # type: ignore[attr-defined]
    return per_sample(kernel)


def avg_pool2d_kernel(kernel_size: Any, stride: Any, padding: Any, ceil_mode: bool,
                      count_include_pad: bool, divisor_override: Optional[int], zero_point: int,
                      vec_width: int, fallback: Callable[[np.ndarray], np.ndarray]) -> Kernel:
    """PyTorch's quantized avg_pool2d (fbgemm / x86 arithmetic) in C (:class:`qkernels.qops.
    AvgPool2d`; ``vec_width`` > 0: PyTorch's channels-last kernel and its vector width);
    ``fallback`` (the NumPy op) for other dtypes and for what the C op refuses (windows of more
    than 2^22 taps, bad geometry: the NumPy op raises its own error)."""
    try:
        pool = qops.AvgPool2d(kernel_size, stride, padding, ceil_mode, count_include_pad,
                              divisor_override, vec_width=vec_width)
    except ValueError:
        return per_sample(lambda t, x: fallback(x))
    zp = int(zero_point)

    def kernel(t: int, x: np.ndarray) -> np.ndarray:
        if x.dtype not in _Q8 or x.ndim != 4:
            return fallback(x)
        return pool(x, zp)
    return per_sample(kernel)


def adaptive_avg_pool2d_kernel(output_size: Any,
                               fallback: Callable[[np.ndarray], np.ndarray],
                               zero_point: Optional[int] = None) -> Kernel:
    """RNE(sum / count) over PyTorch's adaptive windows, in C when every window has the same
    power-of-two size (where PyTorch's float steps give exactly that); with ``zero_point`` (the
    tensor's), a 1x1 output of any plane size in C too (:func:`qkernels.qops.qglobal_avg_pool2d`:
    PyTorch's channels-last steps, the squeeze-excitation pooling); ``fallback`` (the NumPy op
    with PyTorch's float steps) otherwise."""
    if isinstance(output_size, int):
        oh, ow = output_size, output_size
    else:
        oh, ow = output_size
    op, glob = qops.qadaptive_avg_pool2d, qops.qglobal_avg_pool2d

    def kernel(t: int, x: np.ndarray) -> np.ndarray:
        if x.dtype not in _Q8 or x.ndim != 4:
            return fallback(x)
        h = x.shape[2] if oh is None else oh
        w = x.shape[3] if ow is None else ow
        if x.shape[2] % h or x.shape[3] % w:
            return fallback(x)
        k = (x.shape[2] // h) * (x.shape[3] // w)
        if k & (k - 1):
            if h == w == 1 and zero_point is not None and k * 255 <= 2 ** 31 - 1:
                return glob(x, zero_point)
            return fallback(x)
        return op(x, (h, w))
    return per_sample(kernel)


def quantize_kernel(meta: QMeta, qmin: int, qmax: int) -> Kernel:
    """Float input (array or tensor) -> integers, ``qkernels.quantize(flavor="torch")`` per
    tensor (the raw ufunc ``qkernels.ufuncs.quantize_torch_<type>``, parameters checked here
    once): FBGEMM's one-rounding quantize for 8-bit outputs, the scalar one otherwise."""
    dt, code = C.int_dtype(meta.dtype)
    uf = getattr(ufuncs, f"quantize_torch_{code}")
    s = F32(meta.scale)
    C.scale_param(s, "scale")
    zp = C.int_param(meta.zero_point, "zero_point", qmin, qmax)
    args = (s, np.int32(zp), np.int32(qmin), np.int32(qmax))

    def kernel(t: int, x: Any) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            x = x.detach().numpy() if hasattr(x, "detach") else np.asarray(x, F32)
        if x.dtype != F32:
            x = x.astype(F32)
        with np.errstate(invalid="raise"):
            try:
                return uf(x, *args)
            except FloatingPointError:
                pass
        C.raise_nan(x, "x")
        raise RuntimeError("quantize reported an error that could not be located")
    return per_sample(kernel)


def dequantize_kernel(meta: QMeta) -> Kernel:
    """``fl(s * (q - zp))`` (Tensor.dequantize): the raw ufunc ``qkernels.ufuncs.dequantize`` on
    integers of the slot's type, parameters checked here once (any other input goes through
    :func:`qkernels.dequantize` and its checks)."""
    dt = np.dtype(meta.dtype)
    info = np.iinfo(dt)
    s = F32(meta.scale)
    C.scale_param(s, "scale")
    zp = np.int32(C.int_param(meta.zero_point, "zero_point", int(info.min), int(info.max)))
    uf, dq = ufuncs.dequantize, qk.dequantize

    def kernel(t: int, q: Any) -> np.ndarray:
        if isinstance(q, np.ndarray) and q.dtype == dt:
            return uf(q, s, zp)
        return dq(q, s, int(zp))
    return per_sample(kernel)


def cat_kernel(in_metas: Sequence[QMeta], dim: int, out: QMeta,
               fallback: Callable[..., np.ndarray]) -> Kernel:
    """PyTorch's ``quantized::cat`` with its parameters derived once: the inputs already on the
    output's scale and zero point copied, the others requantized by :func:`dequantize_kernel`
    and :func:`quantize_kernel` (``fl(s * (q - zp))``, then ``quantize_per_tensor`` to the
    output's parameters and bit range), all into one concatenation. ``fallback(*qs)`` (the
    NumPy op, which raises its errors) for inputs of another dtype.

    On 8-bit integers that requantization is a function of the byte alone: it runs as a table of
    its 256 outputs (:class:`qkernels.qops.Lookup`, one C pass), the table made once by the same
    two kernels, so the same bytes (inception_v3 at batch 1: cat_3 84 -> 56 us, cat_11 86 ->
    49 us)."""
    dt = np.dtype(out.dtype)
    so, zo = F32(out.scale), int(out.zero_point)
    lo, hi = out.qrange()
    q_out = quantize_kernel(out, lo, hi)

    def requant(m: QMeta) -> Callable[[int, np.ndarray], np.ndarray]:
        dq = dequantize_kernel(m)
        if dt not in _Q8:
            return lambda t, q: q_out(t, dq(t, q))
        every = np.arange(int(np.iinfo(dt).min), int(np.iinfo(dt).max) + 1).astype(dt)
        lut = qops.Lookup(q_out(1, dq(1, every)), dt)   # entry q - qmin: q's output
        return lambda t, q: lut(q)

    steps = [None if F32(m.scale) == so and int(m.zero_point) == zo else requant(m)
             for m in in_metas]
    n = len(steps)

    def kernel(t: int, *qs: np.ndarray) -> np.ndarray:
        if len(qs) != n or any(q.dtype != dt for q in qs):
            return fallback(*qs)
        return np.concatenate([q if rq is None else rq(t, q) for q, rq in zip(qs, steps)],
                              axis=dim)
    # what place_cats needs: (axis, output dtype, each input's requantization or None, fallback)
    kernel.cat = (dim, dt, steps, fallback)  # type: ignore[attr-defined]
    return kernel


def _cat_fill_kernel(dt: np.dtype, parts: List[Tuple[int, Optional[int], Any]],
                     fallback: Callable[..., np.ndarray]) -> Kernel:
    """The rest of a concatenation written in place: ``kernel(t, buf, *qs)`` copies (or
    requantizes) each ``qs[j]`` into its channels of ``buf``; ``parts`` lists every input in
    order as (first channel, index into qs or None for an input its conv wrote already,
    requantization or None)."""
    own = [(c0, j, rq) for c0, j, rq in parts if j is not None]

    def kernel(t: int, buf: np.ndarray, *qs: np.ndarray) -> np.ndarray:
        if any(q.dtype != dt or q.ndim != 4 for q in qs):    # the original op and its errors
            ends = [c for c, _, _ in parts[1:]] + [buf.shape[1]]
            return fallback(*[buf[:, c0:end] if j is None else qs[j]
                              for (c0, j, _), end in zip(parts, ends)])
        for c0, j, rq in own:
            q = qs[j]
            buf[:, c0:c0 + q.shape[1]] = q if rq is None else rq(t, q)
        return buf
    return kernel


def _cat_buffer_kernel(conv: PreparedQConv2d, channels: int, dt: np.dtype) -> Kernel:
    """The output array of a concatenation along the channels whose first-written input is
    this conv's output: ``kernel(t, x)`` with x the conv's input (the batch and plane size)."""
    def kernel(t: int, x: np.ndarray) -> np.ndarray:
        oh, ow = conv._geometry(x.shape)[1]
        return np.empty((x.shape[0], channels, oh, ow), dt)
    return per_sample(kernel)


def place_cats(steps: List[Tuple[Kernel, Tuple[int, ...], int, str]], n_slots: int,
               inputs: Sequence[int]) -> Tuple[List[Tuple[Kernel, Tuple[int, ...], int, str]], int]:
    """Concatenations along the channels (``cat_kernel``, NCHW, axis 1) written in place: each
    input made by a conv (``conv2d_kernel``) on the concatenation's own scale, zero point and
    dtype and read by nothing else is written by that conv straight into its channels of the
    output array (``qk_conv2d_strided``: images a batch stride apart), which a step allocated
    just before the first such conv; the concatenation step then copies (or requantizes) only
    its other inputs. Applies where every input's channel count is known from the steps (convs,
    channel-keeping pools, concatenations); returns the new steps and slot count. The same
    integers (tests/torch/test_place_cats.py)."""
    made = {out: (k, ins) for k, ins, out, _ in steps}
    uses: Dict[int, int] = {}
    for _, ins, _, _ in steps:
        for i in ins:
            uses[i] = uses.get(i, 0) + 1
    chans: Dict[int, int] = {}

    def channels(slot: int) -> Optional[int]:
        if slot in chans:
            return chans[slot]
        m = made.get(slot)
        c: Optional[int] = None
        if m is not None:
            k, ins = m
            if hasattr(k, "conv"):
                c = int(k.conv.packed.out_channels)
            elif getattr(k, "keeps_channels", False) and len(ins) == 1:
                c = channels(ins[0])
            elif hasattr(k, "cat") and k.cat[0] == 1:
                cs = [channels(i) for i in ins]
                c = None if any(v is None for v in cs) else sum(cs)  # type: ignore[arg-type]
        chans[slot] = c  # type: ignore[assignment]
        return c

    order = {out: i for i, (_, _, out, _) in enumerate(steps)}
    before: Dict[int, Tuple[Kernel, Tuple[int, ...], int, str]] = {}  # step index -> alloc
    new: Dict[int, Tuple[Kernel, Tuple[int, ...], int, str]] = {}     # step index -> rewritten
    for ci, (k, ins, out, name) in enumerate(steps):
        cat = getattr(k, "cat", None)
        if cat is None or cat[0] != 1 or len(set(ins)) != len(ins) or out in inputs:
            continue
        dim, dt, rqs, fallback = cat
        cs = [channels(i) for i in ins]
        if any(c is None for c in cs):
            continue
        offs = [sum(cs[:j]) for j in range(len(ins))]   # type: ignore[arg-type]
        placed = [j for j, i in enumerate(ins)
                  if rqs[j] is None and uses.get(i) == 1 and i not in inputs and
                  hasattr(made.get(i, (None,))[0], "conv") and
                  made[i][0].conv.out_dtype == dt and order[i] not in new and
                  len(made[i][1]) == 1]
        if not placed:
            continue
        buf = n_slots
        n_slots += 1
        first = min(placed, key=lambda j: order[ins[j]])
        fk = made[ins[first]][0]
        before[order[ins[first]]] = (_cat_buffer_kernel(fk.conv, sum(cs), dt),  # type: ignore
                                     made[ins[first]][1], buf, "")
        for j in placed:
            pk, pins = made[ins[j]]
            si = order[ins[j]]
            new[si] = (conv2d_kernel(pk.conv, channel0=offs[j]), (pins[0], buf), ins[j], steps[si][3])
        rest = [j for j in range(len(ins)) if j not in placed]
        parts = [(offs[j], rest.index(j) if j in rest else None, rqs[j])
                 for j in range(len(ins))]
        new[ci] = (_cat_fill_kernel(dt, parts, fallback), (buf,) + tuple(ins[j] for j in rest),
                   out, name)
    if not new:
        return steps, n_slots
    res = []
    for i, st in enumerate(steps):
        if i in before:
            res.append(before[i])
        res.append(new.get(i, st))
    return res, n_slots


def flatten_kernel(start: int, end: int) -> Kernel:
    def kernel(t: int, x: np.ndarray) -> np.ndarray:
        shape = x.shape
        a, b = start % len(shape), end % len(shape)
        return x.reshape(shape[:a] + (math.prod(shape[a:b + 1]),) + shape[b + 1:])
    return per_sample(kernel) if start >= 1 else kernel


def identity_kernel() -> Kernel:
    return per_sample(lambda t, x: x)
