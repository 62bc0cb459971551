"""PyTorch twins of the library's models, for the eager-mode throughput baseline.

Same layers, widths and parameter counts as :mod:`jaxunlearn.models` (10
classes: LeNet-5 61,706; MLP 535,818; ResNet-18 11,173,962; VGG-16-BN
14,728,266; WRN-16-4 2,748,890), in the plain ``torch.nn`` form that
PyTorch unlearning libraries train. Inputs are NCHW. Convs use the same
Kaiming-normal (fan_out) init as the flax models; the rest keeps PyTorch's
defaults, which does not change the cost of a training step.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
import torch.nn.functional as F

# The flax model's input (H, W, C) for each registered name; NCHW here.
INPUT_SHAPES = {"mlp": (1, 28, 28), "lenet5": (1, 28, 28), "resnet18": (3, 32, 32),
                "vgg16": (3, 32, 32), "wide_resnet": (3, 32, 32)}

VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
             512, 512, 512, "M", 512, 512, 512, "M")


def _conv3x3(cin: int, cout: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
  return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=bias)


def _kaiming_convs(module: nn.Module) -> None:
  for m in module.modules():
    if isinstance(m, nn.Conv2d):
      nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


class MLP(nn.Module):
  """ReLU MLP on flattened inputs; hidden widths (512, 256) by default."""

  def __init__(self, num_classes: int = 10, in_features: int = 784,
               hidden: tuple[int, ...] = (512, 256)):
    super().__init__()
    widths = (in_features, *hidden)
    self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
    self.out = nn.Linear(widths[-1], num_classes)

  def forward(self, x):
    x = x.flatten(1)
    for layer in self.hidden:
      x = F.relu(layer(x))
    return self.out(x)


class LeNet5(nn.Module):
  """LeNet-5 with ReLU and max pooling; first conv padded as flax's SAME."""

  def __init__(self, num_classes: int = 10, in_channels: int = 1):
    super().__init__()
    self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=2)
    self.conv2 = nn.Conv2d(6, 16, 5)
    self.fc1 = nn.Linear(16 * 5 * 5, 120)
    self.fc2 = nn.Linear(120, 84)
    self.fc3 = nn.Linear(84, num_classes)

  def forward(self, x):
    x = F.max_pool2d(F.relu(self.conv1(x)), 2)
    x = F.max_pool2d(F.relu(self.conv2(x)), 2)
    x = x.flatten(1)
    x = F.relu(self.fc1(x))
    x = F.relu(self.fc2(x))
    return self.fc3(x)


class BasicBlock(nn.Module):
  """ResNet v1 basic block with a 1x1 conv + BN projection on reshape."""

  def __init__(self, cin: int, cout: int, stride: int):
    super().__init__()
    self.conv1 = _conv3x3(cin, cout, stride)
    self.bn1 = nn.BatchNorm2d(cout)
    self.conv2 = _conv3x3(cout, cout)
    self.bn2 = nn.BatchNorm2d(cout)
    self.shortcut = nn.Sequential()
    if stride != 1 or cin != cout:
      self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                    nn.BatchNorm2d(cout))

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    return F.relu(self.shortcut(x) + y)


class ResNet18(nn.Module):
  """CIFAR ResNet-18: 3x3 stride-1 stem, no max pool, global average pool."""

  def __init__(self, num_classes: int = 10, stage_sizes=(2, 2, 2, 2), num_filters: int = 64):
    super().__init__()
    self.stem = _conv3x3(3, num_filters)
    self.bn = nn.BatchNorm2d(num_filters)
    blocks, cin = [], num_filters
    for stage, num_blocks in enumerate(stage_sizes):
      cout = num_filters * 2**stage
      for block in range(num_blocks):
        blocks.append(BasicBlock(cin, cout, 2 if stage > 0 and block == 0 else 1))
        cin = cout
    self.blocks = nn.Sequential(*blocks)
    self.fc = nn.Linear(cin, num_classes)
    _kaiming_convs(self)

  def forward(self, x):
    x = F.relu(self.bn(self.stem(x)))
    x = self.blocks(x)
    return self.fc(x.mean(dim=(2, 3)))


class VGG16(nn.Module):
  """CIFAR VGG-16-BN: 3x3 convs with bias + BN + ReLU, one Linear head."""

  def __init__(self, num_classes: int = 10, cfg=VGG16_CFG):
    super().__init__()
    layers, cin = [], 3
    for v in cfg:
      if v == "M":
        layers.append(nn.MaxPool2d(2))
      else:
        layers += [_conv3x3(cin, v, bias=True), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
        cin = v
    self.features = nn.Sequential(*layers)
    self.fc = nn.Linear(cin, num_classes)
    _kaiming_convs(self)

  def forward(self, x):
    return self.fc(self.features(x).flatten(1))


class WideBlock(nn.Module):
  """Pre-activation wide basic block; the projection reads the activated input."""

  def __init__(self, cin: int, cout: int, stride: int):
    super().__init__()
    self.bn1 = nn.BatchNorm2d(cin)
    self.conv1 = _conv3x3(cin, cout, stride)
    self.bn2 = nn.BatchNorm2d(cout)
    self.conv2 = _conv3x3(cout, cout)
    self.shortcut = None
    if stride != 1 or cin != cout:
      self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)

  def forward(self, x):
    out = F.relu(self.bn1(x))
    y = self.conv2(F.relu(self.bn2(self.conv1(out))))
    return (x if self.shortcut is None else self.shortcut(out)) + y


class WideResNet(nn.Module):
  """WRN-depth-width; defaults are WRN-16-4."""

  def __init__(self, num_classes: int = 10, depth: int = 16, width: int = 4):
    super().__init__()
    if depth < 10 or (depth - 4) % 6:
      raise ValueError(f"WideResNet depth must be >= 10 with (depth - 4) % 6 == 0, got {depth}")
    per_group = (depth - 4) // 6
    self.stem = _conv3x3(3, 16)
    blocks, cin = [], 16
    for group, base in enumerate((16, 32, 64)):
      for block in range(per_group):
        blocks.append(WideBlock(cin, base * width, 2 if group > 0 and block == 0 else 1))
        cin = base * width
    self.blocks = nn.Sequential(*blocks)
    self.bn = nn.BatchNorm2d(cin)
    self.fc = nn.Linear(cin, num_classes)
    _kaiming_convs(self)

  def forward(self, x):
    x = F.relu(self.bn(self.blocks(self.stem(x))))
    return self.fc(x.mean(dim=(2, 3)))


MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP, "lenet5": LeNet5, "resnet18": ResNet18, "vgg16": VGG16,
    "wide_resnet": WideResNet}


def get_model(name: str, num_classes: int = 10) -> nn.Module:
  """The PyTorch twin of ``jaxunlearn.models.get_model(name, num_classes)``."""
  if name not in MODELS:
    raise ValueError(f"no PyTorch twin of model {name!r}; choose one of: {', '.join(MODELS)}")
  return MODELS[name](num_classes=num_classes)


def param_count(model: nn.Module) -> int:
  """Trainable parameters (BN running statistics are buffers, not counted)."""
  return sum(p.numel() for p in model.parameters() if p.requires_grad)
