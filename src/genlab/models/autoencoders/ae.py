"""Deterministic autoencoders: ``ae`` (MLP) and ``conv-ae``."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ... import losses
from ...config import choice, field
from ...errors import ConfigError
from ...nn.blocks import ConvDecoder, ConvEncoder, activation, mlp
from ...registry import register_model
from ..base import GenModel, check_unit_range


def _check_sizes(hidden: list[int], latent: int, name: str = "hidden") -> None:
    if latent < 1:
        raise ConfigError(f"latent: expected a positive code size, got {latent}")
    if any(h < 1 for h in hidden):
        raise ConfigError(f"{name}: expected positive layer sizes, got {hidden}")


@dataclass
class AEConfig:
    hidden: list[int] = field([400], "hidden layer sizes of the encoder; the decoder mirrors them")
    latent: int = field(20, "code size")
    activation: str = field("relu", "hidden activation (relu, tanh, elu, gelu, leaky_relu, ...)")
    code_activation: str = field("identity", "activation on the code (identity gives a linear code)")
    loss: str = choice("mse", ("mse", "bce"), "reconstruction loss, summed over pixels")

    def validate(self) -> None:
        _check_sizes(self.hidden, self.latent)


class _AEBase(GenModel):
    """Shared by the MLP and conv autoencoders: the encoder/decoder differ, the objective not."""

    def _setup(self, code_activation: str | None = None) -> None:
        if self.config.loss == "bce":
            check_unit_range(self, "loss=bce")
        self.code_act = activation(code_activation or self.config.code_activation)

    def encode(self, x):
        return self.code_act(self.encoder(x))

    def decode_raw(self, z):
        """Decoder output before the output non-linearity (logits for data in [0, 1])."""
        return self.decoder(z).view(-1, *self.shape)

    def decode(self, z):
        out = self.decode_raw(z)
        return torch.sigmoid(out) if self.unit_range else out

    @torch.no_grad()
    def eval_batch(self, x):
        raw = self.decode_raw(self.encode(x))
        if self.unit_range:
            return self.recon_metrics(x, torch.sigmoid(raw), logits=raw)
        return self.recon_metrics(x, raw)

    def loss(self, x):
        raw = self.decode_raw(self.encode(x))
        if self.config.loss == "bce":
            rec = losses.bernoulli_nll(raw, x)
        else:
            rec = losses.sse(torch.sigmoid(raw) if self.unit_range else raw, x)
        rec = rec.mean()
        return {"loss": rec, "recon": rec}


@register_model("ae", "MLP autoencoder (hidden=[...], latent=N, loss mse|bce)")
class AE(_AEBase):
    """Undercomplete MLP autoencoder: x -> hidden... -> code -> mirrored hidden... -> x_hat."""

    Config = AEConfig
    name = "ae"

    def __init__(self, config, shape, value_range=(0.0, 1.0)):
        super().__init__(config, shape, value_range)
        c = config
        self.encoder = nn.Sequential(nn.Flatten(), mlp([self.dim, *c.hidden, c.latent], c.activation))
        self.decoder = mlp([c.latent, *reversed(c.hidden), self.dim], c.activation)
        self._setup()


@dataclass
class ConvAEConfig:
    channels: list[int] = field([32, 64], "channels of the stride-2 conv layers (each halves H and W)")
    latent: int = field(16, "code size")
    activation: str = field("relu", "hidden activation")
    code_activation: str = field("identity", "activation on the code")
    batchnorm: bool = field(False, "BatchNorm after each conv layer")
    loss: str = choice("mse", ("mse", "bce"), "reconstruction loss, summed over pixels")

    def validate(self) -> None:
        _check_sizes(self.channels, self.latent, "channels")


@register_model("conv-ae", "convolutional autoencoder (channels=[...], latent=N)")
class ConvAE(_AEBase):
    """Convolutional autoencoder: stride-2 convs down, a linear code, transposed convs up."""

    Config = ConvAEConfig
    name = "conv-ae"

    def __init__(self, config, shape, value_range=(0.0, 1.0)):
        super().__init__(config, shape, value_range)
        c = config
        self.encoder = ConvEncoder(self.shape, c.channels, c.latent, c.activation, c.batchnorm)
        self.decoder = ConvDecoder(self.shape, c.channels, c.latent, c.activation, c.batchnorm)
        self._setup()
