"""Variational autoencoders: ``vae`` (MLP) and ``conv-vae``.

Gaussian encoder q(z|x) = N(mu(x), diag(sigma^2(x))), standard normal prior, Bernoulli or
Gaussian decoder. The objective is the negative ELBO with the KL term weighted by ``beta``
(beta = 1: the VAE; beta > 1: beta-VAE):

    loss = E_q[-log p(x|z)] + beta * KL(q(z|x) || N(0, I))      (per image, batch mean)

The KL is the closed form 0.5 * sum(mu^2 + sigma^2 - log sigma^2 - 1); the expectation uses one
reparameterised sample z = mu + sigma * eps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ... import losses
from ...config import choice, field
from ...errors import ConfigError
from ...nn.blocks import ConvDecoder, ConvEncoder, mlp
from ...registry import register_model
from ..base import GenModel, check_unit_range
from ...train.distributed import draw  # torchrun: per-example noise drawn for the global batch
from .ae import _check_sizes


@dataclass
class VAEConfig:
    hidden: list[int] = field([400], "hidden layer sizes of the encoder; the decoder mirrors them")
    latent: int = field(20, "latent dimension")
    activation: str = field("relu", "hidden activation (relu, tanh, ...)")
    decoder: str = choice("bernoulli", ("bernoulli", "gaussian"), "p(x|z): Bernoulli (BCE, data in [0,1]) or Gaussian")
    decoder_std: float = field(0.0, "Gaussian decoder: fixed std, or 0 to learn one log-std per pixel")
    beta: float = field(1.0, "weight of the KL term (1: VAE, >1: beta-VAE)")

    def validate(self, sizes: str = "hidden") -> None:
        _check_sizes(getattr(self, sizes), self.latent, sizes)
        if self.beta < 0:
            raise ConfigError(f"beta: expected a non-negative weight, got {self.beta}")
        if self.decoder_std < 0:
            raise ConfigError(f"decoder_std: expected 0 (learned) or a positive std, got {self.decoder_std}")


class _VAEBase(GenModel):
    generative = True

    def _setup(self) -> None:
        c = self.config
        if c.decoder == "bernoulli":
            check_unit_range(self, "decoder=bernoulli")
        elif c.decoder_std == 0.0:
            self.log_std = nn.Parameter(torch.zeros(*self.shape))
        else:
            self.register_buffer("log_std", torch.full(self.shape, math.log(c.decoder_std)))

    # --- q(z|x) and p(x|z) ----------------------------------------------------------------
    def posterior(self, x):
        h = self.encoder(x)
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar

    def encode(self, x):
        """The posterior mean: the deterministic code used for reconstructions and plots."""
        return self.posterior(x)[0]

    def decode_raw(self, z):
        return self.decoder(z).view(-1, *self.shape)

    def decode(self, z):
        """The mean of p(x|z)."""
        raw = self.decode_raw(z)
        return torch.sigmoid(raw) if self.config.decoder == "bernoulli" else raw

    def nll(self, raw, x):
        """-log p(x|z) per example from the raw decoder output."""
        if self.config.decoder == "bernoulli":
            return losses.bernoulli_nll(raw, x)
        return losses.gaussian_nll(raw, self.log_std, x)

    @staticmethod
    def reparameterize(mu, logvar):
        eps = draw(lambda m: torch.randn(m, *mu.shape[1:], device=mu.device, dtype=mu.dtype), mu.shape[0])
        return mu + torch.exp(0.5 * logvar) * eps

    def terms(self, x):
        """Per-example reconstruction NLL and KL with one posterior sample."""
        mu, logvar = self.posterior(x)
        z = self.reparameterize(mu, logvar)
        return self.nll(self.decode_raw(z), x), losses.kl_normal_std_normal(mu, logvar)

    def loss(self, x):
        rec, kl = self.terms(x)
        rec, kl = rec.mean(), kl.mean()
        return {"loss": rec + self.config.beta * kl, "recon": rec, "kl": kl, "nelbo": rec + kl}

    # --- generation -------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n, generator=None):
        p = next(self.parameters())
        z = torch.randn(n, self.config.latent, generator=generator, device="cpu").to(p.device, p.dtype)
        return self.decode(z)

    @torch.no_grad()
    def interpolate(self, x0, x1, steps=8):
        """Decode ``steps`` points on the line between the posterior means of x0 and x1
        (each a batch of the same size); returns (batch, steps, C, H, W)."""
        z0, z1 = self.encode(x0), self.encode(x1)
        t = torch.linspace(0, 1, steps, device=z0.device).view(1, steps, 1)
        z = (1 - t) * z0[:, None] + t * z1[:, None]
        return self.decode(z.reshape(-1, z.shape[-1])).view(x0.shape[0], steps, *self.shape)

    # --- evaluation --------------------------------------------------------------------------
    @torch.no_grad()
    def eval_batch(self, x):
        """Reconstruction metrics from the posterior mean; nelbo and kl with one posterior
        sample (one encoder pass serves both)."""
        mu, logvar = self.posterior(x)
        raw = self.decode_raw(mu)
        if self.config.decoder == "bernoulli":
            out = self.recon_metrics(x, torch.sigmoid(raw), logits=raw)
        else:
            out = self.recon_metrics(x, raw)
        kl = losses.kl_normal_std_normal(mu, logvar)
        out["nelbo"] = self.nll(self.decode_raw(self.reparameterize(mu, logvar)), x) + kl
        out["kl"] = kl
        return out

    @torch.no_grad()
    def iwae_log_likelihood(self, x, k: int, chunk: int = 0):
        """The importance-weighted lower bound on log p(x) with k samples (Burda et al. 2016):
        log (1/k) sum_i p(x, z_i) / q(z_i|x),  z_i ~ q(z|x). Returns one value per example.
        ``chunk`` bounds how many samples are decoded at once (0: automatic)."""
        mu, logvar = self.posterior(x)
        b = x.shape[0]
        chunk = chunk or max(1, 2_000_000 // max(1, b * self.dim))
        logw = []
        for start in range(0, k, chunk):
            m = min(chunk, k - start)
            eps = torch.randn(m, *mu.shape, device=mu.device, dtype=mu.dtype)
            z = mu + torch.exp(0.5 * logvar) * eps  # (m, b, L)
            raw = self.decode_raw(z.reshape(m * b, -1)).view(m, b, -1)
            xf = x.reshape(1, b, -1)  # broadcast over the m samples instead of copying x
            if self.config.decoder == "bernoulli":
                log_px = -(torch.nn.functional.softplus(raw) - xf * raw).sum(-1)
            else:
                log_px = -losses.gaussian_nll_last(raw, self.log_std.reshape(1, 1, -1), xf)
            logw.append(log_px + losses.log_std_normal(z) - losses.log_normal(z, mu, logvar))
        logw = torch.cat(logw, 0)
        return torch.logsumexp(logw, 0) - math.log(k)


@register_model("vae", "MLP variational autoencoder (hidden=[...], latent=N, decoder bernoulli|gaussian, beta)")
class VAE(_VAEBase):
    """MLP VAE; the defaults are the pytorch/examples MNIST VAE (784-400-20, ReLU, Bernoulli)."""

    Config = VAEConfig
    name = "vae"

    def __init__(self, config, shape, value_range=(0.0, 1.0)):
        super().__init__(config, shape, value_range)
        c = config
        self.encoder = nn.Sequential(nn.Flatten(), mlp([self.dim, *c.hidden, 2 * c.latent], c.activation))
        self.decoder = mlp([c.latent, *reversed(c.hidden), self.dim], c.activation)
        self._setup()


@dataclass
class ConvVAEConfig:
    channels: list[int] = field([32, 64], "channels of the stride-2 conv layers (each halves H and W)")
    latent: int = field(16, "latent dimension")
    activation: str = field("relu", "hidden activation")
    batchnorm: bool = field(False, "BatchNorm after each conv layer")
    decoder: str = choice("bernoulli", ("bernoulli", "gaussian"), "p(x|z): Bernoulli or Gaussian")
    decoder_std: float = field(0.0, "Gaussian decoder: fixed std, or 0 to learn one log-std per pixel")
    beta: float = field(1.0, "weight of the KL term (1: VAE, >1: beta-VAE)")

    def validate(self) -> None:
        VAEConfig.validate(self, "channels")  # the same checks, with `channels` for `hidden`


@register_model("conv-vae", "convolutional VAE (channels=[...], latent=N, decoder, beta)")
class ConvVAE(_VAEBase):
    """Convolutional VAE: stride-2 conv encoder to (mu, log sigma^2), transposed-conv decoder."""

    Config = ConvVAEConfig
    name = "conv-vae"

    def __init__(self, config, shape, value_range=(0.0, 1.0)):
        super().__init__(config, shape, value_range)
        c = config
        self.encoder = ConvEncoder(self.shape, c.channels, 2 * c.latent, c.activation, c.batchnorm)
        self.decoder = ConvDecoder(self.shape, c.channels, c.latent, c.activation, c.batchnorm)
        self._setup()
