"""Power-of-two quantization-aware training: the PTQ -> QAT -> PTQ pipeline, deployable
integer-exact (``quantize_model`` with the pow2 preset).

    from qkernels.torch.qat import load_config, load_data, run_qat
    res = run_qat(load_config("examples/qat_pow2_8bit.yaml"), model, load_data("digits"))
    res.integer_model(x)                    # integer-exact, the scales QAT ended with
    res.report["final_quantization_details"]

From the shell: ``python -m qkernels qat --config cfg.yaml [--no-final-ptq] [--epochs N]`` and
``python -m qkernels ptq --config cfg.yaml``.
"""
from .config import ConfigError, PipelineConfig, load_config
from .fake_quant import ActQuantizer, WeightQuantizer, fake_quantize_pow2
from .model import QATModel, build_qat_model
from .pipeline import PipelineResult, load_data, quant_config, run_ptq, run_qat

__all__ = ["ConfigError", "PipelineConfig", "load_config", "ActQuantizer", "WeightQuantizer",
           "fake_quantize_pow2", "QATModel", "build_qat_model", "PipelineResult",
           "load_data", "quant_config", "run_ptq", "run_qat"]
