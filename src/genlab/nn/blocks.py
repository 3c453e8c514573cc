"""Building blocks shared by the model families: MLP stacks and conv encoders/decoders."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError

ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "softplus": nn.Softplus,
    "identity": nn.Identity,
}


def activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ConfigError(f"activation: expected one of {', '.join(ACTIVATIONS)}, got {name!r}") from None


def mlp(sizes: list[int], act: str, final_act: str | None = None) -> nn.Sequential:
    """Linear layers ``sizes[0] -> ... -> sizes[-1]`` with ``act`` between them."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(activation(act))
    if final_act:
        layers.append(activation(final_act))
    return nn.Sequential(*layers)


def conv_geometry(shape: tuple[int, ...], channels: list[int]) -> tuple[int, int]:
    """Spatial size after ``len(channels)`` stride-2 convolutions; each must halve exactly."""
    if len(shape) != 3:
        raise ConfigError(f"model: conv models need images (C x H x W), the data has shape {tuple(shape)}; use an MLP model")
    _, h, w = shape
    k = 2 ** len(channels)
    if h % k or w % k:
        raise ConfigError(
            f"channels: {len(channels)} stride-2 layers need H and W divisible by {k}, the images are {h}x{w}; "
            f"use fewer layers (e.g. channels={channels[:-1]}) or resize the data"
        )
    return h // k, w // k


class ConvEncoder(nn.Module):
    """Stride-2 4x4 convolutions (each halves H and W), then a linear map to ``out``."""

    def __init__(self, shape, channels: list[int], out: int, act: str = "relu", batchnorm: bool = False):
        super().__init__()
        c = shape[0]
        h, w = conv_geometry(shape, channels)
        layers: list[nn.Module] = []
        for ch in channels:
            layers.append(nn.Conv2d(c, ch, 4, 2, 1))
            if batchnorm:
                layers.append(nn.BatchNorm2d(ch))
            layers.append(activation(act))
            c = ch
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c * h * w, out)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


class ConvDecoder(nn.Module):
    """The mirror of :class:`ConvEncoder`: linear map, then 4x4 stride-2 transposed convs."""

    def __init__(self, shape, channels: list[int], latent: int, act: str = "relu", batchnorm: bool = False):
        super().__init__()
        out_c = shape[0]
        self.h, self.w = conv_geometry(shape, channels)
        rev = list(reversed(channels))
        self.c0 = rev[0]
        self.head = nn.Sequential(nn.Linear(latent, self.c0 * self.h * self.w), activation(act))
        layers: list[nn.Module] = []
        c = self.c0
        for ch in rev[1:]:
            layers.append(nn.ConvTranspose2d(c, ch, 4, 2, 1))
            if batchnorm:
                layers.append(nn.BatchNorm2d(ch))
            layers.append(activation(act))
            c = ch
        layers.append(nn.ConvTranspose2d(c, out_c, 4, 2, 1))
        self.features = nn.Sequential(*layers)

    def forward(self, z):
        return self.features(self.head(z).view(-1, self.c0, self.h, self.w))


def numel(shape) -> int:
    return int(math.prod(shape))
