"""Models by name, sized from the dataset's input shape and class count.

Built-in models are factories ``(input_shape, num_classes, **model_kwargs) -> nn.Module`` registered
in ``MODELS``; a new one is one ``register_model`` line.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from trainables.registry import Registry

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}
MODELS = Registry("model")


def register_model(name: str, factory: Callable) -> Callable:
    """Make ``config["model"] = name`` build ``factory(input_shape, num_classes, **model_kwargs)``."""
    return MODELS.register(name, factory)


def build_model(name: str, input_shape, num_classes: int, **kwargs) -> nn.Module:
    """Return a freshly initialised model.

    name: ``mlp`` (kwargs ``hidden=(128,)``, ``activation="relu"|"tanh"``), ``lenet`` (LeNet-5 with
        padded convolutions, so 8x8 digits fit), ``cnn1d`` (two strided 1D convolutions for
        (C, L) signals such as MNIST-1D, kwarg ``channels=32``) or ``wrn-16-1`` (the wide ResNet
        of the FDS paper's CIFAR-10 experiments, pre-activation blocks with BatchNorm), or any
        registered name.
    input_shape: one example's shape, (D,) or (C, H, W).
    """
    factory = MODELS.lookup(name)
    input_shape = tuple(int(s) for s in input_shape)
    if num_classes is None or num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes} (built-in models classify; "
                         f"for regression bring your own model)")
    return factory(input_shape, num_classes, **kwargs)


def _images(name, input_shape):
    if len(input_shape) != 3:
        raise ValueError(f"model {name!r} needs image inputs (C, H, W); got shape {input_shape}")


class MLP(nn.Sequential):
    """Flatten, then fully connected layers with one activation between them."""

    def __init__(self, in_features: int, num_classes: int, hidden=(128,), activation: str = "relu"):
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}")
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, int(h)), ACTIVATIONS[activation]()]
            width = int(h)
        layers.append(nn.Linear(width, num_classes))
        super().__init__(*layers)


class CNN1D(nn.Sequential):
    """Conv1d(C->c, k5, s2), ReLU, Conv1d(c->c, k5, s2), ReLU, Linear -> classes: about 7.6k
    parameters on MNIST-1D (c = 32, length 40)."""

    def __init__(self, input_shape, num_classes: int, channels: int = 32):
        if len(input_shape) != 2:
            raise ValueError(f"model 'cnn1d' needs signal inputs (C, L); got shape {tuple(input_shape)}")
        c, length = input_shape
        for _ in range(2):
            length = (length - 5) // 2 + 1
        if length < 1:
            raise ValueError(f"model 'cnn1d' needs signals of length >= 13; got {input_shape[1]}")
        super().__init__(nn.Conv1d(c, channels, 5, stride=2), nn.ReLU(),
                         nn.Conv1d(channels, channels, 5, stride=2), nn.ReLU(), nn.Flatten(),
                         nn.Linear(channels * length, num_classes))


class LeNet(nn.Module):
    """LeNet-5: two 5x5 convolutions with pooling, then 120-84-classes."""

    def __init__(self, input_shape, num_classes: int):
        super().__init__()
        c, h, w = input_shape
        self.features = nn.Sequential(
            nn.Conv2d(c, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
        flat = 16 * (h // 4) * (w // 4)
        self.classifier = nn.Sequential(
            nn.Linear(flat, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


class _Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(cin), nn.BatchNorm2d(cout)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.shortcut = (nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
                         if stride != 1 or cin != cout else None)

    def forward(self, x):
        o = torch.relu(self.bn1(x))
        y = self.conv2(torch.relu(self.bn2(self.conv1(o))))
        return y + (self.shortcut(o) if self.shortcut is not None else x)


class WideResNet(nn.Module):
    """Zagoruyko & Komodakis' WRN-depth-width (pre-activation basic blocks)."""

    def __init__(self, in_channels: int, num_classes: int, depth: int = 16, width: int = 1):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * width, 32 * width, 64 * width]
        layers = [nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)]
        for g in range(3):
            for i in range(n):
                layers.append(_Block(widths[g] if i == 0 else widths[g + 1], widths[g + 1],
                                     (1 if g == 0 else 2) if i == 0 else 1))
        layers += [nn.BatchNorm2d(widths[3]), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(widths[3], num_classes)

    def forward(self, x):
        return self.fc(self.body(x))


register_model("mlp", lambda shape, classes, **kw: MLP(math.prod(shape), classes, **kw))
register_model("cnn1d", lambda shape, classes, **kw: CNN1D(shape, classes, **kw))
register_model("lenet", lambda shape, classes, **kw: _images("lenet", shape) or LeNet(shape, classes, **kw))
register_model("wrn-16-1", lambda shape, classes, **kw: _images("wrn-16-1", shape)
               or WideResNet(shape[0], classes, depth=16, width=1, **kw))
