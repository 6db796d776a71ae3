"""Small reference networks for the digits data set (8x8 grey images, 10 classes).

Four architectures that exercise what real quantized networks contain: a Darknet-19-style stack
(3x3 / 1x1 convolutions, BatchNorm, LeakyReLU, max pooling), a ResNet-style network (residual adds,
a strided 1x1 downsample), a MobileNetV2-style network (inverted residuals, depthwise convolutions,
ReLU6) and an MLP. Trained weights: ``qkernels/torch/models/<name>.pt``, shipped in the package
(``scripts/train_reference_models.py`` made them).

Example:
    >>> import torch
    >>> from qkernels.torch.reference_models import build
    >>> net = build("resnet").eval()
    >>> net(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
"""
from __future__ import annotations

import os
from typing import Callable, Dict, Tuple

import numpy as np
import torch
from torch import nn

# the trained weights shipped in the package (QKERNELS_MODEL_DIR points elsewhere)
MODEL_DIR = os.environ.get("QKERNELS_MODEL_DIR") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "models")


def conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout))


class DarknetTiny(nn.Module):
    """Darknet-19 in miniature: conv-BN-LeakyReLU(0.1) blocks, 1x1 bottlenecks, max pooling."""

    def __init__(self) -> None:
        super().__init__()
        act = lambda: nn.LeakyReLU(0.1)  # noqa: E731
        self.features = nn.Sequential(
            conv_bn(1, 16, 3), act(), nn.MaxPool2d(2),                     # 8 -> 4
            conv_bn(16, 32, 3), act(), conv_bn(32, 16, 1), act(), conv_bn(16, 32, 3), act(),
            nn.MaxPool2d(2),                                               # 4 -> 2
            conv_bn(32, 64, 3), act(), conv_bn(64, 10, 1), act())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(self.pool(self.features(x)))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(y + self.down(x))


class ResNetTiny(nn.Module):
    """ResNet-style: a stem, two basic blocks (one strided, with a 1x1 downsample), avgpool, FC."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.layer1 = BasicBlock(16, 16, 1)
        self.layer2 = BasicBlock(16, 32, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.layer2(self.layer1(self.stem(x))))))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.block = nn.Sequential(
            conv_bn(cin, mid, 1), nn.ReLU6(),
            conv_bn(mid, mid, 3, stride, groups=mid), nn.ReLU6(),   # depthwise
            conv_bn(mid, cout, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_res else y


class MobileNetV2Tiny(nn.Module):
    """MobileNetV2-style: inverted residuals with depthwise 3x3 convolutions and ReLU6."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn(1, 16, 3), nn.ReLU6())
        self.blocks = nn.Sequential(InvertedResidual(16, 16, 1, 4), InvertedResidual(16, 24, 2, 4),
                                    InvertedResidual(24, 24, 1, 4))
        self.head = nn.Sequential(conv_bn(24, 64, 1), nn.ReLU6())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(0.1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.flatten(self.pool(self.head(self.blocks(self.stem(x)))))))


class MLP(nn.Module):
    """Three linear layers with ReLU on the flattened 8x8 image."""

    def __init__(self) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(64, 128)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Linear(128, 64)
        self.relu2 = nn.ReLU()
        self.fc3 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.relu2(self.fc2(self.relu1(self.fc1(self.flatten(x))))))


MODELS: Dict[str, Callable[[], nn.Module]] = {
    "darknet": DarknetTiny, "resnet": ResNetTiny, "mobilenetv2": MobileNetV2Tiny, "mlp": MLP}


def build(name: str) -> nn.Module:
    """A fresh (untrained) reference model by name: darknet, resnet, mobilenetv2 or mlp."""
    if name not in MODELS:
        raise ValueError(f"unknown reference model {name!r}; choose from {', '.join(MODELS)}")
    return MODELS[name]()


def load(name: str, directory: str = MODEL_DIR) -> nn.Module:
    """A trained reference model in eval mode, from ``qkernels/torch/models/<name>.pt``."""
    path = os.path.join(directory, f"{name}.pt")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: run `python scripts/train_reference_models.py` "
                                "in the source tree, or set QKERNELS_MODEL_DIR to the folder of the "
                                ".pt files")
    net = build(name)
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net.eval()


def digits(seed: int = 0) -> Tuple[Tuple[torch.Tensor, torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]:
    """scikit-learn's digits (bundled, offline) as ((x_train, y_train), (x_test, y_test)): N x 1 x 8 x 8
    float32 in [0, 1], a fixed stratified 80/20 split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    y = d.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), bool)
    for c in range(10):
        idx = np.flatnonzero(y == c)
        test[rng.choice(idx, size=len(idx) // 5, replace=False)] = True
    t = torch.from_numpy
    return (t(x[~test]), t(y[~test])), (t(x[test]), t(y[test]))


def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((net(x).argmax(1) == y).float().mean())
