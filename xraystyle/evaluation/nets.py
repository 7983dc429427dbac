"""Classifier architectures trained by ``xraystyle classifier train``.

Each net maps a ``(B, 1, S, S)`` [-1, 1] batch to ``(logits (B, K), features (B, F))``.

- ``densenet121``: torchxrayvision's DenseNet-121 (``weights=None``), the architecture of its
  pretrained models; for GPUs.
- ``resnet50``: torchvision's ResNet-50 with a one-channel stem, as torchxrayvision builds
  its ResNet (``xrv.models.ResNet`` cannot be built without fetching weights).
- ``small``: four conv blocks, for CPU and tests (a few seconds at 32-64 px).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError

ARCHS = ("densenet121", "resnet50", "small")


class _XrvDenseNet(nn.Module):
    def __init__(self, n_out: int):
        super().__init__()
        import torchxrayvision as xrv

        self.net = xrv.models.DenseNet(weights=None, num_classes=n_out)

    def forward(self, x):
        feats = self.net.features2(x)
        return self.net.classifier(feats), feats


class _ResNet50(nn.Module):
    def __init__(self, n_out: int):
        super().__init__()
        import torchvision

        self.net = torchvision.models.resnet50(num_classes=n_out, weights=None)
        self.net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)

    def forward(self, x):
        m = self.net
        h = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        h = m.layer4(m.layer3(m.layer2(m.layer1(h))))
        feats = torch.flatten(m.avgpool(h), 1)
        return m.fc(feats), feats


class SmallCNN(nn.Module):
    """conv-BN-ReLU x2 per block, four blocks (16..128 channels), global average pooling."""

    def __init__(self, n_out: int, width: int = 16):
        super().__init__()
        layers, c_in = [], 1
        for i in range(4):
            c = width * 2**i
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                       nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            if i < 3:
                layers.append(nn.MaxPool2d(2))
            c_in = c
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, n_out)

    def forward(self, x):
        feats = self.trunk(x).mean(dim=(2, 3))
        return self.head(feats), feats


def build_classifier_net(arch: str, n_out: int) -> nn.Module:
    if arch == "densenet121":
        return _XrvDenseNet(n_out)
    if arch == "resnet50":
        return _ResNet50(n_out)
    if arch == "small":
        return SmallCNN(n_out)
    raise ConfigError(f"unknown classifier arch {arch!r}: expected one of {', '.join(ARCHS)}")
