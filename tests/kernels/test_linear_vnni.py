"""The AVX512-VNNI linear path (csrc/operators/linear_vnni.c, csrc/ukernels/linear_u8_avx512vnni.c:
6-row x 64-channel register tiles, rows read from x, fused output stage) on its edges: M and N off
the tile, K = 1, odd K, K > 4096, int8 and uint8 activations, weight zero points (the row-sum
term), per-tensor / per-channel, every preset, ReLU clamps, int32 output. Checked against exact
references where there is one, against threads=2, and bit for bit against processes forced to the
scalar C path and to the AVX2 int16 kernels (on CPUs without VNNI all three runs take the same path
and the test is trivially true)."""
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import qkernels

I8, U8 = np.int8, np.uint8
MS = (1, 5, 6, 7, 12, 13, 197)
NKS = ((1, 1), (15, 3), (16, 4), (17, 7), (48, 64), (64, 8), (65, 385), (130, 36), (200, 12),
       (9, 4100), (70, 4103))
PRESETS = ("fbgemm", "qnnpack", "onnxruntime", "tflite", "pow2")


def rand_q(rng, dtype, shape):
    info = np.iinfo(dtype)
    return rng.integers(int(info.min), int(info.max) + 1, shape).astype(dtype)


def _kwargs(preset, rng, n, per_channel):
    if preset == "pow2":
        return dict(x_scale=2.0 ** -5, w_scale=2.0 ** -7, out_scale=2.0 ** -2,
                    bias=rng.integers(-999, 999, n).astype(np.int32))
    b = rng.normal(0, 2, n).astype(np.float32) if preset in ("fbgemm", "qnnpack") else \
        rng.integers(-999, 999, n).astype(np.int32)
    ws = rng.uniform(0.001, 0.01, n).astype(np.float32) if per_channel else 0.004
    return dict(x_scale=0.02, w_scale=ws, out_scale=0.9, out_zero_point=3, bias=b)


def _cases():
    """(name, thunk) of every case; the thunks compute with the default thread count = 1."""
    rng = np.random.default_rng(2024)
    out = []
    for m in MS:
        for (n, k) in NKS:
            if m * k * n > 3_000_000:
                continue
            for preset in PRESETS:
                xt = I8 if preset == "tflite" else (U8 if (m + n) % 3 else I8)
                if preset in ("fbgemm", "qnnpack"):
                    xt = U8
                wt = U8 if preset == "onnxruntime" and n % 2 else I8
                per_channel = preset != "pow2" and (m + k) % 2 == 0
                x = rand_q(rng, xt, (m, k))
                w = rand_q(rng, wt, (n, k)) if wt == U8 else rng.integers(-127, 128, (n, k)).astype(I8)
                kw = _kwargs(preset, rng, n, per_channel)
                if wt == U8:
                    kw["w_zero_point"] = int(rng.integers(0, 256))
                xzp = int(rand_q(rng, xt, ()))
                relu = (m * n) % 4 == 1
                if relu:
                    kw["act_min"] = kw.get("out_zero_point", 0)
                out.append((f"{preset}-{m}x{k}x{n}-{np.dtype(xt).name}-{np.dtype(wt).name}"
                            f"-pc{int(per_channel)}-relu{int(relu)}",
                            lambda x=x, w=w, kw=kw, xzp=xzp, preset=preset:
                            qkernels.qlinear(x, w, x_zero_point=xzp, preset=preset, **kw)))
            # int32 output with zero points on both sides (the row-sum term)
            xt = U8 if k % 2 else I8
            x = rand_q(rng, xt, (m, k))
            w = rand_q(rng, U8, (n, k))
            wzp = rand_q(rng, U8, (n,))
            xzp = int(rand_q(rng, xt, ()))
            out.append((f"int32-{m}x{k}x{n}",
                        lambda x=x, w=w, wzp=wzp, xzp=xzp:
                        qkernels.linear_int32(x, w, x_zero_point=xzp, w_zero_point=wzp)))
    return out


def _fingerprint():
    return {name: hashlib.sha256(np.ascontiguousarray(f()).tobytes()).hexdigest() for name, f in _cases()}


SCRIPT = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import qkernels
import test_linear_vnni as T
print(json.dumps({"isa": qkernels.show_config("dicts")["simd"]["chosen"], "h": T._fingerprint()}))
"""


@pytest.mark.parametrize("simd", ["scalar", "avx2"])
def test_vnni_linear_equals_other_paths(simd):
    here = os.path.dirname(os.path.abspath(__file__))
    helpers = os.path.dirname(here)   # tests/: the helper modules
    pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(qkernels.__file__)))
    env_pp = os.environ.get("PYTHONPATH")
    env = dict(os.environ, QKERNELS_SIMD=simd,
               PYTHONPATH=os.pathsep.join([pkg_root, helpers] + ([env_pp] if env_pp else [])))
    r = subprocess.run([sys.executable, "-c", SCRIPT, here], capture_output=True, text=True,
                       env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    other = json.loads(r.stdout.strip().splitlines()[-1])
    if simd == "scalar":
        assert other["isa"] == "scalar"
    mine = _fingerprint()
    assert len(mine) > 300
    bad = [k for k in mine if other["h"][k] != mine[k]]
    assert not bad, bad[:10]


@pytest.mark.parametrize("m", MS)
def test_vnni_linear_int32_exact_and_threads(m):
    rng = np.random.default_rng(m)
    for (n, k) in NKS:
        for xt, wt in ((U8, I8), (I8, I8), (U8, U8), (I8, U8)):
            x = rand_q(rng, xt, (m, k))
            w = rand_q(rng, wt, (n, k)) if wt == U8 else rng.integers(-127, 128, (n, k)).astype(I8)
            xzp = int(rand_q(rng, xt, ()))
            wzp = rand_q(rng, wt, (n,)) if wt == U8 else np.zeros(n, I8)
            bias = rng.integers(-9999, 9999, n).astype(np.int32)
            ref = (x.astype(np.int64) - xzp) @ (w.astype(np.int64) - wzp.astype(np.int64)[:, None]).T + bias
            p = qkernels.pack_linear(w, w_zero_point=wzp)
            for t in (1, 2, 3):
                got = qkernels.linear_int32(x, p, bias, x_zero_point=xzp, threads=t)
                np.testing.assert_array_equal(got, ref.astype(np.int32))


@pytest.mark.parametrize("preset", PRESETS)
def test_vnni_linear_threads_do_not_change_bits(preset):
    rng = np.random.default_rng(5)
    for (m, k, n) in ((197, 384, 130), (13, 1536, 200), (7, 33, 65), (1, 4, 1)):
        xt = I8 if preset == "tflite" else U8
        x = rand_q(rng, xt, (m, k))
        w = rng.integers(-127, 128, (n, k)).astype(I8)
        kw = _kwargs(preset, rng, n, preset != "pow2")
        p = qkernels.pack_linear(w, w_scale=kw.pop("w_scale"))
        outs = [qkernels.qlinear(x, p, x_zero_point=1, preset=preset, threads=t, **kw)
                for t in (1, 2, 3, 8)]
        for o in outs[1:]:
            np.testing.assert_array_equal(o, outs[0])
