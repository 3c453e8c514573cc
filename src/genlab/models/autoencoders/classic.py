"""The classic regularised autoencoders of the lectures, all MLPs on flattened inputs:

- ``linear-ae``: linear encoder and decoder, squared error. Its optimum spans the same subspace as
  PCA with the same number of components (Baldi & Hornik 1989); ``benchmarks/linear_ae_pca.py``
  measures the principal angles.
- ``sparse-ae``: an (often over-complete) code with an L1 activity penalty or the KL sparsity
  penalty of Ng's notes, sum_j KL(rho || rho_hat_j), rho_hat_j the batch-mean activation.
- ``ksparse-ae``: Makhzani & Frey (2013): a linear code of which only the k largest units
  survive (alpha*k at encoding time), tied weights, and a k schedule against dead units.
- ``denoising-ae``: Vincent et al. (2008): the input is corrupted (Gaussian, masking, salt and
  pepper; fresh noise for every batch) and the loss compares the output with the clean input.
- ``contractive-ae``: Rifai et al. (2011): the squared Frobenius norm of the encoder's Jacobian
  as penalty; in closed form for one sigmoid layer, by autograd for deeper encoders.

Each adds its terms to the dict that ``loss`` returns, so metrics.jsonl shows the reconstruction
and the penalty separately.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ... import losses
from ...config import choice, field
from ...errors import ConfigError
from ...nn.blocks import mlp
from ...registry import register_model
from ..base import check_unit_range
from ...train.distributed import draw  # torchrun: per-example noise drawn for the global batch
from .ae import _AEBase, _check_sizes


class _MLPVariant(_AEBase):
    """An MLP autoencoder with hooks: ``corrupt`` (training input), ``code_train`` (the code
    used in training), ``penalty`` (terms added to the loss) and ``diagnostics`` (values only
    logged)."""

    def _build(self, hidden: list[int], latent: int, act: str, code_activation: str | None = None) -> None:
        self.encoder = nn.Sequential(nn.Flatten(), mlp([self.dim, *hidden, latent], act))
        self.decoder = mlp([latent, *reversed(hidden), self.dim], act)
        self._setup(code_activation)

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def code_train(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)

    def penalty(self, x: torch.Tensor, h: torch.Tensor) -> dict[str, torch.Tensor]:
        return {}

    def diagnostics(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        return {}

    def recon_loss(self, raw: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per-example reconstruction loss summed over pixels (as ``ae``)."""
        if self.config.loss == "bce":
            return losses.bernoulli_nll(raw, x)
        return losses.sse(torch.sigmoid(raw) if self.unit_range else raw, x)

    def loss(self, x):
        xin = self.corrupt(x)
        h = self.code_train(xin)
        rec = self.recon_loss(self.decode_raw(h), x).mean()
        out = {"loss": rec, "recon": rec}
        for k, v in self.penalty(xin, h).items():
            out["loss"] = out["loss"] + v
            out[k] = v
        with torch.no_grad():
            out.update(self.diagnostics(h))
        return out


# --------------------------------------------------------------------------- linear-ae
@dataclass
class LinearAEConfig:
    latent: int = field(30, "code size (the number of principal components it matches)")

    def validate(self) -> None:
        _check_sizes([], self.latent)


@register_model("linear-ae", "linear encoder and decoder with squared error: spans the PCA subspace (latent=N)")
class LinearAE(_MLPVariant):
    """x -> W_e x + b_e -> W_d z + b_d, squared error, no non-linearity anywhere (not even on the
    output): the global optimum reconstructs from the top-``latent`` principal subspace."""

    Config = LinearAEConfig
    name = "linear-ae"

    def __init__(self, config, shape, value_range=(0.0, 1.0)):
        super().__init__(config, shape, value_range)
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(self.dim, config.latent))
        self.decoder = nn.Linear(config.latent, self.dim)
        self.code_act = nn.Identity()

    def decode(self, z):
        return self.decode_raw(z)

    @torch.no_grad()
    def eval_batch(self, x):
        return self.recon_metrics(x, self.reconstruct(x))

    def recon_loss(self, raw, x):
        return losses.sse(raw, x)

    def decoder_basis(self) -> torch.Tensor:
        """The decoder's column space, (dim, latent): compare with PCA's components."""
        return self.decoder.weight.detach()


# --------------------------------------------------------------------------- sparse-ae
@dataclass
class SparseAEConfig:
    latent: int = field(1000, "code units; more than the inputs makes it over-complete")
    hidden: list[int] = field([], "hidden layers between input and code (the decoder mirrors them)")
    activation: str = field("relu", "activation of the hidden layers")
    penalty: str = choice("kl", ("kl", "l1"), "kl: beta * sum_j KL(rho || mean activation of unit j), code through a sigmoid; l1: l1_weight * sum |h|, code through a ReLU")
    rho: float = field(0.05, "target mean activation of each code unit (penalty=kl)")
    beta: float = field(3.0, "weight of the KL sparsity term (penalty=kl)")
    l1_weight: float = field(0.1, "weight of the L1 activity term, per example (penalty=l1)")
    loss: str = choice("mse", ("mse", "bce"), "reconstruction loss, summed over pixels")

    def validate(self) -> None:
        _check_sizes(self.hidden, self.latent)
        if not 0.0 < self.rho < 1.0:
            raise ConfigError(f"rho: expected a target activation in (0, 1), got {self.rho}")
        if self.beta < 0 or self.l1_weight < 0:
            raise ConfigError("beta: beta and l1_weight must be non-negative")


@register_model("sparse-ae", "sparse autoencoder, KL (rho, beta) or L1 penalty on the code; works over-complete (latent=1000)")
class SparseAE(_MLPVariant):
    Config = SparseAEConfig
    name = "sparse-ae"

    def __init__(self, config, shape, value_range=(0.0, 1.0)):
        super().__init__(config, shape, value_range)
        self._build(config.hidden, config.latent, config.activation,
                    "sigmoid" if config.penalty == "kl" else "relu")

    def penalty(self, x, h):
        c = self.config
        if c.penalty == "kl":
            return {"sparsity": c.beta * kl_bernoulli(c.rho, h.mean(0)).sum()}
        return {"sparsity": c.l1_weight * h.abs().sum(1).mean()}

    def diagnostics(self, h):
        return {"mean_activation": h.mean(), "active_share": (h > (0.1 if self.config.penalty == "kl" else 0)).float().mean()}


def kl_bernoulli(rho: float, rho_hat: torch.Tensor) -> torch.Tensor:
    """KL(Bernoulli(rho) || Bernoulli(rho_hat)), elementwise; rho_hat clamped away from 0 and 1."""
    q = rho_hat.clamp(1e-6, 1 - 1e-6)
    return rho * torch.log(rho / q) + (1 - rho) * torch.log((1 - rho) / (1 - q))


# --------------------------------------------------------------------------- ksparse-ae
@dataclass
class KSparseAEConfig:
    latent: int = field(1000, "code units")
    k: int = field(25, "units kept per example in training")
    alpha: float = field(3.0, "at encoding time keep alpha*k units (the paper's features)")
    k_start: int = field(100, "the schedule starts at this k and decreases linearly to k (0: no schedule); large k early keeps units from dying")
    k_schedule: float = field(0.5, "share of training steps over which k decreases to its final value")
    tied: bool = field(True, "decoder weight = encoder weight transposed, as in the paper")
    loss: str = choice("mse", ("mse", "bce"), "reconstruction loss, summed over pixels")

    def validate(self) -> None:
        _check_sizes([], self.latent)
        if not 1 <= self.k <= self.latent:
            raise ConfigError(f"k: expected 1..latent ({self.latent}), got {self.k}")
        if self.alpha < 1:
            raise ConfigError(f"alpha: expected >= 1, got {self.alpha}")
        if self.k_start and not self.k <= self.k_start <= self.latent:
            raise ConfigError(f"k_start: expected 0 or a value in k..latent ({self.k}..{self.latent}), got {self.k_start}")
        if not 0.0 <= self.k_schedule <= 1.0:
            raise ConfigError(f"k_schedule: expected a share in [0, 1], got {self.k_schedule}")


def keep_top_k(z: torch.Tensor, k: int) -> torch.Tensor:
    """Zero all but the ``k`` largest entries of each row (ties broken by topk's order)."""
    if k >= z.shape[1]:
        return z
    idx = z.topk(k, dim=1).indices
    return torch.zeros_like(z).scatter(1, idx, z.gather(1, idx))


@register_model("ksparse-ae", "k-sparse autoencoder (Makhzani & Frey 2013): latent=1000, k=25, alpha=3, k schedule")
class KSparseAE(_MLPVariant):
    """z = W x + b; keep the k largest units of z (support); x_hat = W^T z_k + b'. Gradients flow
    only through the kept units. ``encode`` keeps alpha*k units, as the paper's features."""

    Config = KSparseAEConfig
    name = "ksparse-ae"

    def __init__(self, config, shape, value_range=(0.0, 1.0)):
        super().__init__(config, shape, value_range)
        c = config
        self.enc = nn.Linear(self.dim, c.latent)
        self.dec_bias = nn.Parameter(torch.zeros(self.dim))
        self.dec = None if c.tied else nn.Linear(c.latent, self.dim, bias=False)
        self.code_act = nn.Identity()
        if c.loss == "bce":
            check_unit_range(self, "loss=bce")
        self.k_now = c.k_start or c.k

    def set_step(self, step: int, total: int) -> None:
        c = self.config
        if not c.k_start:
            return
        span = max(1, int(round(c.k_schedule * total)))
        frac = min(1.0, step / span)
        self.k_now = int(round(c.k_start + (c.k - c.k_start) * frac))

    def linear_code(self, x):
        return self.enc(x.reshape(x.shape[0], -1))

    def encode(self, x):
        return keep_top_k(self.linear_code(x), int(round(self.config.alpha * self.config.k)))

    def code_train(self, x):
        return keep_top_k(self.linear_code(x), self.k_now if self.training else self.config.k)

    def decode_raw(self, z):
        w = self.enc.weight if self.dec is None else self.dec.weight.t()  # (latent, dim)
        return (z @ w + self.dec_bias).view(-1, *self.shape)

    def reconstruct(self, x):
        """Reconstruction from the k-sparse code (the training objective's code)."""
        return self.decode(keep_top_k(self.linear_code(x), self.config.k))

    @torch.no_grad()
    def eval_batch(self, x):
        raw = self.decode_raw(keep_top_k(self.linear_code(x), self.config.k))
        if self.unit_range:
            return self.recon_metrics(x, torch.sigmoid(raw), logits=raw)
        return self.recon_metrics(x, raw)

    def diagnostics(self, h):
        return {"k": torch.tensor(float(self.k_now))}


# --------------------------------------------------------------------------- denoising-ae
@dataclass
class DenoisingAEConfig:
    hidden: list[int] = field([500], "hidden layer sizes of the encoder; the decoder mirrors them")
    latent: int = field(128, "code size")
    activation: str = field("relu", "hidden activation")
    code_activation: str = field("identity", "activation on the code")
    noise: str = choice("mask", ("mask", "gaussian", "salt-pepper"), "corruption: mask (a share of inputs set to the minimum), gaussian (additive, clipped to the data range), salt-pepper (a share set to min or max at random)")
    level: float = field(0.5, "share of inputs corrupted (mask, salt-pepper; the lectures use 0.3-0.5) or the noise std (gaussian, in data units)")
    loss: str = choice("mse", ("mse", "bce"), "reconstruction loss against the clean input, summed over pixels")

    def validate(self) -> None:
        _check_sizes(self.hidden, self.latent)
        if self.noise in ("mask", "salt-pepper") and not 0.0 <= self.level < 1.0:
            raise ConfigError(f"level: noise={self.noise} takes a share in [0, 1), got {self.level}")
        if self.noise == "gaussian" and self.level < 0:
            raise ConfigError(f"level: the Gaussian noise std must be >= 0, got {self.level}")


def corrupt(x: torch.Tensor, noise: str, level: float, value_range: tuple[float, float],
            generator: torch.Generator | None = None) -> torch.Tensor:
    """A corrupted copy of ``x``: ``mask`` sets each value to the range's minimum with
    probability ``level``; ``salt-pepper`` sets it to the minimum or the maximum (half each)
    with probability ``level``; ``gaussian`` adds N(0, level^2), clipped to the range."""
    lo, hi = value_range
    if noise == "gaussian":
        noise = draw(lambda m: torch.randn((m, *x.shape[1:]), generator=generator, device=x.device, dtype=x.dtype),
                     x.shape[0])
        return (x + level * noise).clamp(lo, hi)
    u = draw(lambda m: torch.rand((m, *x.shape[1:]), generator=generator, device=x.device, dtype=x.dtype), x.shape[0])
    if noise == "mask":
        return torch.where(u < level, torch.full_like(x, lo), x)
    if noise == "salt-pepper":
        hit = u < level
        salt = u < level / 2  # within the hit share: half salt, half pepper
        return torch.where(hit, torch.where(salt, torch.full_like(x, hi), torch.full_like(x, lo)), x)
    raise ConfigError(f"noise: expected mask, gaussian or salt-pepper, got {noise!r}")


@register_model("denoising-ae", "denoising autoencoder: noise=mask|gaussian|salt-pepper, level=0.5")
class DenoisingAE(_MLPVariant):
    """Trained to map a corrupted input to the clean one. ``eval_batch`` scores denoising: the
    keys without suffix compare the reconstruction of a corrupted test image with the clean one,
    ``*_noisy`` the corrupted input itself (the evaluation's fixed seed fixes the noise)."""

    Config = DenoisingAEConfig
    name = "denoising-ae"

    def __init__(self, config, shape, value_range=(0.0, 1.0)):
        super().__init__(config, shape, value_range)
        self._build(config.hidden, config.latent, config.activation)

    def corrupt(self, x, generator=None):
        return corrupt(x, self.config.noise, self.config.level, self.value_range, generator)

    def denoise(self, x):
        return self.reconstruct(x)

    @torch.no_grad()
    def eval_batch(self, x):
        xn = self.corrupt(x)
        raw = self.decode_raw(self.encode(xn))
        out = (self.recon_metrics(x, torch.sigmoid(raw), logits=raw) if self.unit_range
               else self.recon_metrics(x, raw))
        noisy = self.recon_metrics(x, xn)
        for k in ("mse", "psnr", "ssim"):
            if k in noisy:
                out[f"{k}_noisy"] = noisy[k]
        return out


# --------------------------------------------------------------------------- contractive-ae
@dataclass
class ContractiveAEConfig:
    latent: int = field(1000, "code units (sigmoid)")
    hidden: list[int] = field([], "hidden layers before the code; empty gives the closed-form penalty, otherwise autograd")
    activation: str = field("sigmoid", "activation of the hidden layers")
    lam: float = field(0.1, "weight of the contractive term ||dh/dx||_F^2, per example")
    loss: str = choice("bce", ("mse", "bce"), "reconstruction loss, summed over pixels (the paper: cross-entropy)")

    def validate(self) -> None:
        _check_sizes(self.hidden, self.latent)
        if self.lam < 0:
            raise ConfigError(f"lam: expected a non-negative weight, got {self.lam}")


def jacobian_frobenius_sq(f, x: torch.Tensor) -> torch.Tensor:
    """||d f(x_i) / d x_i||_F^2 for each row of ``x`` by autograd (differentiable, so it can be
    trained through): one reverse pass per output unit, vectorised with torch.func."""
    from torch.func import jacrev, vmap

    jac = vmap(jacrev(lambda v: f(v.unsqueeze(0)).squeeze(0)))(x)  # (N, latent, dim)
    return jac.pow(2).flatten(1).sum(1)


@register_model("contractive-ae", "contractive autoencoder (Rifai et al. 2011): sigmoid code, lam * ||J||_F^2")
class ContractiveAE(_MLPVariant):
    Config = ContractiveAEConfig
    name = "contractive-ae"

    def __init__(self, config, shape, value_range=(0.0, 1.0)):
        super().__init__(config, shape, value_range)
        if config.loss == "bce":
            check_unit_range(self, "loss=bce")
        self._build(config.hidden, config.latent, config.activation, "sigmoid")

    def jacobian_penalty(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """Per-example ||dh/dx||_F^2. One sigmoid layer h = s(Wx + b): dh_j/dx_i = h_j (1 - h_j) W_ji,
        so the norm is sum_j (h_j (1 - h_j))^2 sum_i W_ji^2 at the cost of one matrix product."""
        xf = x.reshape(x.shape[0], -1)
        if not self.config.hidden:
            if h is None:
                h = self.encode(x)
            w = self.encoder[1][0].weight  # (latent, dim)
            return (h * (1 - h)).pow(2) @ w.pow(2).sum(1)
        return jacobian_frobenius_sq(self.encode, xf)

    def penalty(self, x, h):
        return {"contractive": self.config.lam * self.jacobian_penalty(x, h).mean()}
