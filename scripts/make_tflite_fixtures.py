"""Make the TFLite reference data of tests/fixtures/tflite/ (run in a TensorFlow + LiteRT venv).

The project venv has no TensorFlow (it is a test oracle, not a dependency), so the reference data
the tests in ``make test`` compare with is made here, once, and committed:

    python3 -m venv /work/venvs/tflite
    /work/venvs/tflite/bin/pip install tensorflow-cpu==2.21.0 ai-edge-litert==2.3.0
    /work/venvs/tflite/bin/python scripts/make_tflite_fixtures.py [--out tests/fixtures/tflite]

For every case: a small Keras model converted by ``TFLiteConverter`` with full-integer
quantization (int8 in and out, per-channel weights, a random representative data set),
written as ``<case>.tflite``; ``<case>.npz`` holds how the int8 inputs were drawn (``seed``, ``batch``:
``numpy.random.default_rng(seed).integers(-128, 128, (batch,) + shape)`` for each input in turn,
uniform over the full range, and ``x_sha256`` of their bytes, which the tests check) and the
outputs of LiteRT's interpreter with the reference kernels (``BUILTIN_REF``: ``ref``),
with the default XNNPACK delegate (``AUTO``: stored as the elements that differ from ``ref``,
``xnn_idx`` / ``xnn_val``) and with the optimized built-ins without delegate
(``BUILTIN_WITHOUT_DEFAULT_DELEGATES``: ``opt_idx`` / ``opt_val``), and the ops each run executed
(``ops_ref``, ``ops_xnn``: ``DELEGATE`` where XNNPACK took the op). The ``quantize`` case has a
float input (the model's own QUANTIZE): its float inputs are stored too (``x0``, see
``float_inputs``: near-ties and values beyond the int32 range).

``*_tie`` cases rewrite a converted model's scales (and, for weighted layers, its weights) to
powers of two so that many accumulators land exactly on a rounding tie (acc * 2^-k with a
remainder of exactly one half): the rounding of every runtime shows there.

``tests/torch/test_tflite_vs_tflite.py`` compares qkernels with these files in ``make test``;
with ``QKERNELS_TFLITE_VENV`` (or /work/venvs/tflite) present, its live test re-runs this
script into a temporary folder with other seeds and compares with those too.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable, Dict, List, Sequence, Tuple

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402
from ai_edge_litert import interpreter as litert  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import litertutil as LU  # noqa: E402

keras = tf.keras
L = keras.layers

#: elements of every op's output per runtime (the issue asks for >= 10^5)
MIN_ELEMENTS = 100_000


# ---- the cases ----------------------------------------------------------------------------------
def _single(shape: Sequence[int], *layers: Any) -> keras.Model:
    x = keras.Input(shape)
    y = x
    for lay in layers:
        y = lay(y)
    return keras.Model(x, y)


def _two(shape: Sequence[int], merge: Any, scale2: float = 1.0) -> keras.Model:
    a, b = keras.Input(shape), keras.Input(shape)
    return keras.Model([a, b], merge([a, b]))


def _hard_swish() -> Any:
    return L.Lambda(lambda v: v * tf.nn.relu6(v + 3.0) / 6.0)


def _plain_cnn() -> keras.Model:
    x = keras.Input((16, 16, 3))
    y = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    y = L.MaxPooling2D(2)(y)
    y = L.Conv2D(16, 3, padding="same", activation="relu")(y)
    y = L.MaxPooling2D(2)(y)
    y = L.Flatten()(y)
    return keras.Model(x, L.Dense(10)(y))


def _dws_cnn() -> keras.Model:
    x = keras.Input((16, 16, 8))
    y = L.Conv2D(16, 3, strides=2, padding="same", activation="relu6")(x)
    y = L.DepthwiseConv2D(3, padding="same", activation="relu6")(y)
    y = L.Conv2D(32, 1, activation="relu6")(y)
    y = L.AveragePooling2D(2, padding="same")(y)
    y = L.DepthwiseConv2D(3, padding="same", activation="relu6")(y)
    y = L.GlobalAveragePooling2D()(y)
    y = L.Dense(10)(y)
    return keras.Model(x, L.Softmax()(y))


def _residual_cnn() -> keras.Model:
    x = keras.Input((16, 16, 8))
    a = L.Conv2D(16, 3, padding="same", activation="relu")(x)
    b = L.Conv2D(16, 3, padding="same")(a)
    y = L.ReLU()(L.Add()([a, b]))
    c = L.Conv2D(16, 3, padding="same")(y)
    y = L.Add()([y, c])
    y = L.GlobalAveragePooling2D()(y)
    return keras.Model(x, L.Dense(10)(y))


# name -> (builder, per-input float scale of the representative data, per_tensor_dense)
CASES: Dict[str, Tuple[Callable[[], keras.Model], Tuple[float, ...], bool]] = {
    "conv_same_relu": (lambda: _single((12, 12, 8), L.Conv2D(16, 3, padding="same",
                                                             activation="relu")), (1.0,), False),
    "conv_s2_valid": (lambda: _single((17, 17, 8), L.Conv2D(16, 3, strides=2)), (1.0,), False),
    "dw_m1_same": (lambda: _single((12, 12, 16), L.DepthwiseConv2D(3, padding="same")), (1.0,),
                   False),
    "dw_m2_s2_same_relu6": (lambda: _single((13, 13, 8), L.DepthwiseConv2D(
        3, strides=2, padding="same", depth_multiplier=2, activation="relu6")), (1.0,), False),
    "dense_pc": (lambda: _single((128,), L.Dense(64)), (1.0,), False),
    "dense_pc_relu": (lambda: _single((96,), L.Dense(48, activation="relu")), (2.0,), False),
    "dense_pt": (lambda: _single((128,), L.Dense(64)), (1.0,), True),
    "add": (lambda: _two((16, 16, 8), L.Add()), (1.0, 3.0), False),
    "mul": (lambda: _two((16, 16, 8), L.Multiply()), (1.0, 3.0), False),
    "avgpool_same": (lambda: _single((15, 15, 16), L.AveragePooling2D(3, strides=2,
                                                                      padding="same")), (1.0,),
                     False),
    "avgpool_valid": (lambda: _single((16, 16, 16), L.AveragePooling2D(2)), (1.0,), False),
    "maxpool_same": (lambda: _single((15, 15, 16), L.MaxPooling2D(3, strides=2,
                                                                  padding="same")), (1.0,), False),
    "maxpool_valid": (lambda: _single((16, 16, 16), L.MaxPooling2D(2)), (1.0,), False),
    "mean": (lambda: _single((8, 8, 32), L.GlobalAveragePooling2D()), (1.0,), False),
    "concat": (lambda: _two((8, 8, 16), L.Concatenate()), (1.0, 3.0), False),
    "reshape": (lambda: _single((4, 4, 8), L.Reshape((8, 16))), (1.0,), False),
    "softmax": (lambda: _single((10,), L.Softmax()), (3.0,), False),
    "softmax_wide": (lambda: _single((100,), L.Softmax()), (2.0,), False),
    "logistic": (lambda: _single((256,), L.Activation("sigmoid")), (4.0,), False),
    "tanh": (lambda: _single((256,), L.Activation("tanh")), (2.0,), False),
    "hard_swish": (lambda: _single((256,), _hard_swish()), (3.0,), False),
    "cnn_plain": (_plain_cnn, (1.0,), False),
    "cnn_dws": (_dws_cnn, (1.0,), False),
    "cnn_residual": (_residual_cnn, (1.0,), False),
    "quantize": (lambda: _single((256,), L.Reshape((16, 16))), (2.0,), False),
}
#: 16x8 cases (int16 activations, int8 weights, int64 bias: the converter's
#: EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8), int16 in and out, inputs
#: uniform over the whole int16 range; about 5 * 10^4 outputs each, 10^5 an op with its tie case
CASES16: Dict[str, Tuple[Callable[[], keras.Model], Tuple[float, ...], bool]] = {
    "conv16_same_relu": (lambda: _single((10, 10, 8), L.Conv2D(
        16, 3, padding="same", activation="relu", bias_initializer="random_normal")), (1.0,),
        False),
    "dw16_m2_s2_same": (lambda: _single((13, 13, 8), L.DepthwiseConv2D(
        3, strides=2, padding="same", depth_multiplier=2, bias_initializer="random_normal")),
        (1.0,), False),
    "dense16_pc": (lambda: _single((96,), L.Dense(48, bias_initializer="random_normal")),
                   (1.0,), False),
}
TIES16 = ("conv16_same_relu", "dw16_m2_s2_same", "dense16_pc")
#: int4-weight cases: TF 2.21's converter writes no INT4 tensors (its options have no 4-bit
#: weights; the deprecated StableHLO ``_experimental_quantization_options`` with
#: ``BIT_WIDTH_4`` weights still gives int8), so an int8 conversion is rewritten
#: (:func:`int4_rewrite`) and LiteRT runs the INT4 filters (``UnpackPackedIntToInt8``)
INT4 = {"conv4_same": "conv_same_relu", "dw4_m1_same": "dw_m1_same", "dense4_pc": "dense_pc"}
MIN_ELEMENTS16 = 50_000

#: cases with a float input (TFLite's QUANTIZE in the model): their inputs are stored (``x0``)
FLOAT_INPUT = ("quantize",)
#: cases whose converted model is rewritten to power-of-two scales (exact rounding ties)
TIES = ("conv_same_relu", "dw_m2_s2_same_relu6", "dense_pc", "dense_pt", "add", "mul",
        "mean")


def convert(model: keras.Model, scales: Sequence[float], per_tensor_dense: bool,
            seed: int, float_input: bool = False, int16: bool = False) -> bytes:
    rng = np.random.default_rng(seed)
    shapes = [tuple(i.shape[1:]) for i in model.inputs]

    def rep():
        for _ in range(64):
            yield [(rng.standard_normal((1,) + s) * sc).astype(np.float32)
                   for s, sc in zip(shapes, scales)]
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8 if int16 else
        tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    act = tf.int16 if int16 else tf.int8
    if not float_input:
        conv.inference_input_type = act
    conv.inference_output_type = act
    if per_tensor_dense:
        conv._experimental_disable_per_channel_quantization_for_dense_layers = True
    return conv.convert()


# ---- power-of-two rewrite (ties) -----------------------------------------------------------------
def tie_rewrite(tfl: bytes, seed: int, out_shifts: Tuple[int, int] = (2, 5)) -> bytes:
    """Scales rewritten to powers of two (activations 2^-4 .. 2^-2, weights 2^-5, biases their
    product), weights to small integers, so that requantization multipliers are exact powers of
    two and exact ties are common (outputs acc * 2^-k, k in ``range(*out_shifts)``; 16x8 cases
    5 .. 6, which keeps int16 outputs mostly unsaturated)."""
    from tensorflow.lite.tools import flatbuffer_utils as fu

    m = fu.convert_bytearray_to_object(bytearray(tfl))
    rng = np.random.default_rng(seed)
    sg = m.subgraphs[0]
    ops = {m.operatorCodes[op.opcodeIndex].builtinCode: op for op in sg.operators}
    from tensorflow.lite.python import schema_py_generated as S
    B = S.BuiltinOperator
    names = {v: k for k, v in vars(B).items() if not k.startswith("_")}
    act_scale: Dict[int, float] = {}
    for i in list(sg.inputs):
        act_scale[i] = 2.0 ** -4
    for k, t in enumerate(sg.tensors):
        q = t.quantization
        if q is None or q.scale is None or len(q.scale) == 0:
            continue
        buf = m.buffers[t.buffer].data if t.buffer < len(m.buffers) else None
        const = buf is not None and len(buf) > 0
        if const:
            continue
        if k not in act_scale:
            act_scale[k] = 2.0 ** -int(rng.integers(2, 5))
        q.scale = np.array([act_scale[k]], np.float32)
    for op in sg.operators:
        code = names.get(m.operatorCodes[op.opcodeIndex].builtinCode, "")
        if code not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        xin, w, b = op.inputs[0], op.inputs[1], op.inputs[2] if len(op.inputs) > 2 else -1
        wt = sg.tensors[w]
        n = len(wt.quantization.scale)
        wt.quantization.scale = np.full(n, 2.0 ** -5, np.float32)
        data = np.frombuffer(bytes(m.buffers[wt.buffer].data), np.int8).copy()
        data[:] = rng.integers(-3, 4, data.size)
        m.buffers[wt.buffer].data = np.frombuffer(data.tobytes(), np.uint8)
        if b >= 0:
            bt = sg.tensors[b]
            bt.quantization.scale = np.full(len(bt.quantization.scale),
                                            act_scale[xin] * 2.0 ** -5, np.float32)
        # output: acc * 2^-2 .. 2^-4 (exact ties on 1/4 .. 1/16 of the accumulators)
        out = op.outputs[0]
        act_scale[out] = act_scale[xin] * 2.0 ** -5 * 2.0 ** int(rng.integers(*out_shifts))
        sg.tensors[out].quantization.scale = np.array([act_scale[out]], np.float32)
    return bytes(fu.convert_object_to_bytearray(m))


def int4_rewrite(tfl: bytes, seed: int) -> bytes:
    """The weights of every CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED drawn uniformly from
    [-8, 7] and stored as TFLite INT4 (two a byte, low nibble first), their scales times 16
    (outputs in about the same range as before)."""
    from tensorflow.lite.python import schema_py_generated as S
    from tensorflow.lite.tools import flatbuffer_utils as fu

    m = fu.convert_bytearray_to_object(bytearray(tfl))
    rng = np.random.default_rng(seed)
    sg = m.subgraphs[0]
    names = {v: k for k, v in vars(S.BuiltinOperator).items() if not k.startswith("_")}
    for op in sg.operators:
        code = names.get(m.operatorCodes[op.opcodeIndex].builtinCode, "")
        if code not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        wt = sg.tensors[op.inputs[1]]
        n = int(np.prod(wt.shape))
        w4 = rng.integers(-8, 8, n + (n % 2)).astype(np.int64)
        packed = ((w4[0::2] & 0x0F) | ((w4[1::2] & 0x0F) << 4)).astype(np.uint8)
        m.buffers[wt.buffer].data = packed
        wt.type = S.TensorType.INT4
        wt.quantization.scale = (np.asarray(wt.quantization.scale, np.float32) * 16).astype(
            np.float32)
    return bytes(fu.convert_object_to_bytearray(m))


# ---- running the interpreter (scripts/litertutil.py, shared with the tests) ---------------------
RESOLVERS = LU.RESOLVERS
run = LU.run
make_inputs = LU.make_inputs
float_inputs = LU.float_inputs


def batch_for(tfl: bytes, n_in: int, shapes: List[Tuple[int, ...]], cnn: bool,
              float_in: bool = False, int16: bool = False) -> int:
    x = [np.zeros((1,) + s, np.float32 if float_in else np.int16 if int16 else np.int8)
         for s in shapes]
    y, _ = run(tfl, x, "ref")
    per = int(y.size)
    return 512 if cnn else max(1, -(-(MIN_ELEMENTS16 if int16 else MIN_ELEMENTS) // per))


def sparse(a: np.ndarray, ref: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    idx = np.flatnonzero(a.reshape(-1) != ref.reshape(-1)).astype(np.int32)
    return idx, a.reshape(-1)[idx]


def make_case(name: str, out_dir: str, seed: int, tie: bool) -> Dict[str, Any]:
    int16 = name in CASES16
    build, scales, pt = (CASES16[name] if int16 else CASES[INT4[name]] if name in INT4 else
                         CASES[name])
    tf.keras.utils.set_random_seed(seed)
    model = build()
    float_in = name in FLOAT_INPUT
    tfl = convert(model, scales, pt, seed, float_in, int16)
    if name in INT4:
        tfl = int4_rewrite(tfl, seed)
    if tie:
        tfl = tie_rewrite(tfl, seed, (5, 7) if int16 else (2, 5))
        name = name + "_tie"
    shapes = [tuple(int(d) for d in i.shape[1:]) for i in model.inputs]
    batch = batch_for(tfl, len(shapes), shapes, name.startswith("cnn"), float_in, int16)
    xs = ([float_inputs(tfl, shapes[0], batch, seed + 1)] if float_in
          else make_inputs(shapes, batch, seed + 1, int16))
    outs, opsets = {}, {}
    for r in RESOLVERS:
        outs[r], opsets[r] = run(tfl, xs, r)
    import hashlib
    h = hashlib.sha256()
    for x in xs:
        h.update(np.ascontiguousarray(x).tobytes())
    arrays = {"seed": np.int64(seed + 1), "batch": np.int64(batch),
              "x_sha256": np.array(h.hexdigest()), "ref": outs["ref"]}
    for r in ("xnn", "opt"):
        arrays[f"{r}_idx"], arrays[f"{r}_val"] = sparse(outs[r], outs["ref"])
    if float_in:
        arrays["x0"] = xs[0]
    with open(os.path.join(out_dir, name + ".tflite"), "wb") as f:
        f.write(tfl)
    np.savez_compressed(os.path.join(out_dir, name + ".npz"), **arrays,
                        ops_ref=np.array(opsets["ref"]), ops_xnn=np.array(opsets["xnn"]))
    info = {"elements": int(outs["ref"].size), "xnn_differs": int(arrays["xnn_idx"].size),
            "opt_differs": int(arrays["opt_idx"].size), "ops_ref": opsets["ref"],
            "ops_xnn": opsets["xnn"]}
    print(f"{name:28s} {info['elements']:7d} elements; XNNPACK differs from the reference "
          f"kernels on {info['xnn_differs']}, optimized built-ins on {info['opt_differs']}; "
          f"ops {opsets['ref']} / with XNNPACK {opsets['xnn']}", flush=True)
    return info


def main(argv: Sequence[str] = ()) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests",
                                                  "fixtures", "tflite"))
    ap.add_argument("--only", nargs="*", help="case names (default: all)")
    ap.add_argument("--seed", type=int, default=1000, help="base seed (default 1000)")
    args = ap.parse_args(list(argv) or None)
    os.makedirs(args.out, exist_ok=True)
    summary = {"tensorflow": tf.__version__, "ai_edge_litert": litert.__name__,
               "numpy": np.__version__, "cases": {}}
    try:
        import ai_edge_litert
        summary["ai_edge_litert"] = getattr(ai_edge_litert, "__version__", "?")
    except Exception:  # pragma: no cover
        pass
    names = args.only or list(CASES) + list(CASES16) + list(INT4)
    path = os.path.join(args.out, "summary.json")
    if args.only and os.path.exists(path):      # the other cases' figures stay
        with open(path) as f:
            summary["cases"] = json.load(f)["cases"]
    for name in names:
        # a case's seed: its place in CASES (then CASES16)
        seed = args.seed + (list(CASES) + list(CASES16) + list(INT4)).index(name) * 17
        summary["cases"][name] = make_case(name, args.out, seed, False)
        if name in TIES or name in TIES16:
            summary["cases"][name + "_tie"] = make_case(name, args.out, seed, True)
    with open(path, "w") as f:
        json.dump(summary, f, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
