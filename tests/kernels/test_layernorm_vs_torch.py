"""Integer LayerNorm vs torch.nn.functional.layer_norm on the real DeiT-small block-0 input.

Thresholds were set from the first honest measurement (seed PTF, K=3, int8 output with
out_scale = max|reference| / 127, eps 1e-12):
    exact          28.14 dB, max|err| 0.050, |dmu|/sigma 3.5e-4, var rel. err 0.10 %
    sole round     27.64 dB, max|err| 0.143, |dmu|/sigma 3.5e-4, var rel. err 1.87 %
    sole truncate  22.13 dB, max|err| 0.405, |dmu|/sigma 3.5e-4, var rel. err 11.0 %
"""
import numpy as np
import pytest

import qkernels as qk
from ptf_data import load_deit

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch", reason="PyTorch is a test requirement (requirements-dev.txt)")

LIMITS = {  # (min SQNR dB, max |err|, max mean |dmu|/sigma, max mean var rel. err)
    "exact": (27.8, 0.06, 1e-3, 0.003),
    "sole/round": (27.3, 0.16, 1e-3, 0.025),
    "sole/truncate": (21.8, 0.45, 1e-3, 0.13),
}


def test_deit_layernorm_errors_vs_torch():
    x, gamma, beta = load_deit()
    ref = torch.nn.functional.layer_norm(torch.from_numpy(x), (x.shape[-1],),
                                         torch.from_numpy(gamma), torch.from_numpy(beta),
                                         1e-12).numpy()
    # our float golden is the same LayerNorm
    np.testing.assert_allclose(qk.layernorm_reference(x, gamma, beta), ref, atol=2e-5)
    p = qk.ptf_calibrate(x, method="seed")
    q = p.quantize(x)
    out_scale = float(np.abs(ref).max()) / 127
    res = {}
    for method, rounding in [("exact", "round"), ("sole", "round"), ("sole", "truncate")]:
        ln = qk.prepare_layernorm(p, gamma, beta, method=method, rounding=rounding,
                                  out_scale=out_scale, eps=1e-12)
        y = qk.ptf_layernorm(q, ln)
        e = qk.layernorm_errors(y, ln, q, x, gamma, beta)
        e["sqnr_torch"] = qk.sqnr_db(ref, (y.astype(np.float64) - ln.out_zero_point) * out_scale)
        name = method if method == "exact" else f"sole/{rounding}"
        res[name] = e
        print(f"\n{name:14s} SQNR {e['sqnr_torch']:.2f} dB  max|err| {e['max_abs_err']:.4f}  "
              f"|dmu|/sigma {e['dmean_over_sigma']:.2e}  var rel err {e['var_rel_err']:.4f}")
    floor = qk.sqnr_db(ref, np.clip(np.round(ref / out_scale), -128, 127) * out_scale)
    print(f"int8 output quantization alone: {floor:.2f} dB")
    for name, (sq, mx, dmu, dvar) in LIMITS.items():
        e = res[name]
        assert abs(e["sqnr_torch"] - e["sqnr_db"]) < 0.05
        assert e["sqnr_torch"] >= sq, name
        assert e["max_abs_err"] <= mx, name
        assert e["dmean_over_sigma"] <= dmu, name
        assert e["var_rel_err"] <= dvar, name
    assert res["exact"]["sqnr_torch"] > res["sole/round"]["sqnr_torch"] > \
        res["sole/truncate"]["sqnr_torch"]
    assert res["exact"]["var_rel_err"] < res["sole/round"]["var_rel_err"] < \
        res["sole/truncate"]["var_rel_err"]
    assert res["sole/truncate"]["var_rel_err"] > 0.08  # SPEC: ~10 % with truncation
    assert floor > res["exact"]["sqnr_torch"]
