"""PyTorch bridge (optional dependency: ``pip install qkernels[torch]``).

``qkernels.torch.reference_models`` holds the small reference networks trained on scikit-learn's
digits (see ``scripts/train_reference_models.py``); model quantization builds on them.
"""
