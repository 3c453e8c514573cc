"""Loss terms as small pure functions. Each returns one value per example (summed over
dimensions) unless its name says otherwise; callers average over the batch."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOG_2PI = math.log(2.0 * math.pi)


def flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


def bernoulli_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log p(x | logits) for a factorised Bernoulli (x may be grey levels in [0, 1]: the
    binary cross-entropy), summed over dimensions, per example. Computed from logits for
    stability."""
    return flat(F.binary_cross_entropy_with_logits(logits, x, reduction="none")).sum(1)


def gaussian_nll(mean: torch.Tensor, log_std: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log N(x; mean, exp(log_std)^2), summed over dimensions, per example."""
    log_std = log_std.expand_as(mean)
    z = (x - mean) * torch.exp(-log_std)
    return flat(0.5 * z * z + log_std + 0.5 * LOG_2PI).sum(1)


def gaussian_nll_last(mean: torch.Tensor, log_std: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """As :func:`gaussian_nll`, broadcasting, summed over the last dimension only."""
    z = (x - mean) * torch.exp(-log_std)
    return (0.5 * z * z + log_std + 0.5 * LOG_2PI).sum(-1)


def kl_normal_std_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL( N(mu, diag(exp(logvar))) || N(0, I) ) in closed form, per example:
    0.5 * sum(mu^2 + sigma^2 - log sigma^2 - 1)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0).sum(1)


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag(exp(logvar))), summed over the last dimension."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar)).sum(-1)


def log_std_normal(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * (LOG_2PI + z.pow(2)).sum(-1)


def sse(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Squared error summed over dimensions, per example."""
    return flat((recon - x).pow(2)).sum(1)
