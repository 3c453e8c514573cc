"""``gan``: the MLP GAN of Goodfellow et al. (2014), with every option of the lectures.

The game: D learns to tell real from generated samples, G learns to fool D. One engine step
takes one batch of real data and makes one discriminator update; every ``d_steps``-th step also
makes one generator update (Goodfellow's algorithm with k = ``d_steps``: k discriminator steps,
each on a fresh minibatch, per generator step).

Losses, with D's output a logit ``a`` (D(x) = sigmoid(a)):

- ``d_loss=bce``: -log D(x) - log(1 - D(G(z))) = softplus(-a_real) + softplus(a_fake);
  ``hinge``: relu(1 - a_real) + relu(1 + a_fake); ``wasserstein``: a_fake - a_real (a critic;
  pair it with ``gp`` > 0, the gradient penalty of WGAN-GP, or with spectral norm).
- ``g_loss`` (with bce): ``minimax`` minimises log(1 - D(G(z))) = -softplus(a_fake), the
  original saturating game whose gradient -sigmoid(a_fake) vanishes when D rejects the
  samples; ``nonsaturating`` minimises -log D(G(z)) = softplus(-a_fake); ``ml`` minimises
  -exp(a_fake) / 2, Goodfellow's (2014b) maximum-likelihood cost (its expected gradient is that
  of KL(p_data || p_G) when D is optimal). With hinge or wasserstein the generator minimises
  -a_fake.

Remedies against collapse: ``pack`` (PacGAN: D judges ``pack`` samples at once), ``mbstd``
(the standard deviation over the batch as an extra D input), ``spectral_norm`` on D, and an
exponential moving average of G's weights for sampling (``ema``; ``ema_warmup`` ramps its decay
up, so that a short run's average does not keep its first weights). ``r1`` adds the zero-centred
gradient penalty on real data of Mescheder et al. (2018), ``r1/2 E||grad_x D(x)||^2``, which
damps the oscillation of the game around its equilibrium; ``r1_every=N`` applies it lazily
(StyleGAN2), on every N-th discriminator step with weight ``N * r1``. On MNIST it is what
balances the DCGAN's digits (digit-histogram KL 0.094 without it, 0.025 with gamma 1 every 8
steps, after 3000 steps of 128; see `genlab bench dcgan-mnist`).
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...config import choice, field
from ...errors import ConfigError
from ...nn.blocks import activation
from ...registry import register_model
from ..base import GenModel
from ...train.distributed import draw  # torchrun: per-example noise drawn for the global batch


class Maxout(nn.Module):
    """A linear layer to ``out * pieces`` units and the maximum over each unit's pieces."""

    def __init__(self, n_in: int, n_out: int, pieces: int):
        super().__init__()
        self.lin, self.n_out, self.pieces = nn.Linear(n_in, n_out * pieces), n_out, pieces

    def forward(self, x):
        return self.lin(x).view(x.shape[0], self.n_out, self.pieces).max(-1).values


@dataclass
class GameConfig:
    """The options of the adversarial game that every GAN of genlab shares (``gan``, ``dcgan``
    and their conditional variants); each model adds the fields of its two networks."""

    g_loss: str = choice("nonsaturating", ("nonsaturating", "minimax", "ml"), "generator loss (bce only): nonsaturating -log D(G(z)), minimax log(1 - D(G(z))), ml -exp(logit)/2")
    d_loss: str = choice("bce", ("bce", "hinge", "wasserstein"), "discriminator loss")
    d_steps: int = field(1, "discriminator updates per generator update (Goodfellow's k)")
    g_lr: float = field(0.0, "generator learning rate (0: train.lr)")
    d_lr: float = field(0.0, "discriminator learning rate (0: train.lr)")
    beta1: float = field(0.8, "Adam beta1 of both optimizers (PacGAN: 0.8; DCGAN: 0.5)")
    beta2: float = field(0.999, "Adam beta2 of both optimizers")
    pack: int = field(1, "PacGAN packing: D sees this many samples at once (1: off)")
    mbstd: bool = field(False, "append the batch's mean feature standard deviation to D's input")
    spectral_norm: bool = field(False, "spectral normalisation of D's layers")
    gp: float = field(0.0, "gradient-penalty weight (WGAN-GP: 10 with d_loss=wasserstein); 0: off")
    r1: float = field(0.0, "weight gamma of the zero-centred R1 penalty on real data, gamma/2 E||grad_x D(x)||^2 (Mescheder et al. 2018); 0: off")
    r1_every: int = field(1, "lazy R1 (StyleGAN2, Karras et al. 2020): the penalty on every r1_every-th discriminator step only, weighted r1 * r1_every so that its average pull is unchanged; the double backward it needs then costs 1/r1_every as much")
    ema: float = field(0.0, "decay of an exponential moving average of G's weights used for sampling (e.g. 0.999; 0: off)")
    ema_bn: int = field(0, "recompute the EMA generator's BatchNorm statistics from this many noise samples (and uniform labels) before it samples, as SWA's update_bn does: its weights are an average, and the live G's running statistics, which it copies otherwise, belong to other weights; 0: copy them")
    ema_warmup: bool = field(False, "ramp the EMA's decay up as min(ema, (1 + n) / (10 + n)) after n generator updates (TensorFlow's ExponentialMovingAverage with num_updates), so that the first, poor weights leave the average quickly; off: the decay is ema from the first update")

    def validate(self) -> None:
        if self.d_loss != "bce" and self.g_loss != "nonsaturating":
            raise ConfigError(f"g_loss: {self.g_loss} is a loss for d_loss=bce; with {self.d_loss} the generator minimises -D(G(z))")
        for name in ("d_steps", "pack", "r1_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: expected a positive integer, got {getattr(self, name)}")
        for name in ("g_lr", "d_lr", "gp", "r1"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: expected a non-negative value, got {getattr(self, name)}")
        for name in ("beta1", "beta2", "ema"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name}: expected a value in [0, 1), got {getattr(self, name)}")
        if self.ema_bn < 0:
            raise ConfigError(f"ema_bn: expected a number of noise samples >= 0, got {self.ema_bn}")
        if self.ema_bn and not self.ema:
            raise ConfigError(f"ema_bn: recomputes the EMA generator's BatchNorm statistics; it needs ema > 0 (e.g. ema=0.999), got ema={self.ema}")


@dataclass
class MLPNetsConfig:
    """The two MLPs of ``gan`` (and ``cgan``)."""

    latent: int = field(0, "size of z (0: 2 for 2-D data, as in PacGAN, else 100)")
    g_hidden: list[int] = field([400, 400, 400, 400], "generator hidden layers (ReLU, BatchNorm)")
    g_batchnorm: bool = field(True, "BatchNorm in the generator's hidden layers")
    d_hidden: list[int] = field([200, 200, 200], "discriminator hidden layers")
    d_maxout: int = field(5, "maxout pieces per discriminator unit (0 or 1: LeakyReLU 0.2 instead)")

    def validate(self) -> None:
        if self.latent < 0:
            raise ConfigError(f"latent: expected 0 (automatic) or a positive size, got {self.latent}")
        if any(h < 1 for h in self.g_hidden + self.d_hidden):
            raise ConfigError("g_hidden: layer sizes must be positive")
        if self.d_maxout < 0:
            raise ConfigError(f"d_maxout: expected 0 or a number of pieces, got {self.d_maxout}")


@dataclass
class GANConfig(GameConfig, MLPNetsConfig):  # fields: the networks' first, then the game's
    def validate(self) -> None:
        MLPNetsConfig.validate(self)
        GameConfig.validate(self)


# ------------------------------------------------------------------------------ losses
def d_loss_fn(kind: str, a_real: torch.Tensor, a_fake: torch.Tensor) -> torch.Tensor:
    if kind == "bce":
        return F.softplus(-a_real).mean() + F.softplus(a_fake).mean()
    if kind == "hinge":
        return F.relu(1 - a_real).mean() + F.relu(1 + a_fake).mean()
    return a_fake.mean() - a_real.mean()


def g_loss_fn(kind: str, d_kind: str, a_fake: torch.Tensor) -> torch.Tensor:
    if d_kind != "bce":
        return -a_fake.mean()
    if kind == "minimax":
        return -F.softplus(a_fake).mean()  # log(1 - sigmoid(a))
    if kind == "ml":
        return -0.5 * torch.exp(a_fake).mean()
    return F.softplus(-a_fake).mean()  # -log sigmoid(a)


def ema_decay(ema: float, updates: int | None = None) -> float:
    """The EMA's decay at a generator update: ``ema``, or with a warm-up (``updates``: the
    generator updates so far, this one included) min(ema, (1 + n) / (10 + n)), which is 0.18 at
    the first update, 0.91 at the 100th and reaches 0.999 at about the 9000th."""
    return ema if updates is None else min(ema, (1 + updates) / (10 + updates))


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP: E[(||grad_x critic(x_hat)|| - 1)^2] on random interpolates x_hat."""
    eps = draw(lambda m: torch.rand(m, *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype), real.shape[0])
    xh = (eps * real + (1 - eps) * fake).requires_grad_(True)
    g, = torch.autograd.grad(critic(xh).sum(), xh, create_graph=True)
    return ((g.flatten(1).norm(dim=1) - 1) ** 2).mean()


def mlp_generator(n_in: int, dim: int, c) -> nn.Sequential:
    """The MLP generator: ``c.g_hidden`` ReLU layers (with BatchNorm when ``c.g_batchnorm``), then
    a linear map to ``dim`` outputs (raw: the model maps them to the data's range)."""
    layers: list[nn.Module] = []
    for h in c.g_hidden:
        layers += [nn.Linear(n_in, h)] + ([nn.BatchNorm1d(h)] if c.g_batchnorm else []) + [activation("relu")]
        n_in = h
    layers.append(nn.Linear(n_in, dim))
    return nn.Sequential(*layers)


class _Discriminator(nn.Module):
    def __init__(self, dim: int, c: GANConfig):
        super().__init__()
        self.pack, self.mbstd = c.pack, c.mbstd
        n_in = dim * c.pack + (1 if c.mbstd else 0)
        layers: list[nn.Module] = []
        for h in c.d_hidden:
            if c.d_maxout > 1:
                layers.append(Maxout(n_in, h, c.d_maxout))
            else:
                layers += [nn.Linear(n_in, h), nn.LeakyReLU(0.2)]
            n_in = h
        layers.append(nn.Linear(n_in, 1))
        if c.spectral_norm:
            for m in list(layers):
                lin = m.lin if isinstance(m, Maxout) else m
                if isinstance(lin, nn.Linear):
                    nn.utils.parametrizations.spectral_norm(lin)
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One logit per group of ``pack`` consecutive samples (a short remainder is dropped)."""
        x = x.flatten(1)
        n = (x.shape[0] // self.pack) * self.pack
        x = x[:n].reshape(n // self.pack, -1)
        if self.mbstd:
            s = x.std(0, unbiased=False).mean() if x.shape[0] > 1 else x.new_zeros(())
            x = torch.cat([x, s.expand(x.shape[0], 1)], 1)
        return self.net(x).flatten()


# The tuned set-up of ``gan`` on the 2-D mixtures (ring8, grid25), measured by `genlab bench
# gan-mixtures` over 10 seeds: narrower nets without BatchNorm or maxout, the R1 penalty (weight
# 2: on grid25 seed 1 at 20000 steps and lr 2e-4, 0.1 gave 68% high quality, 0.5 81%, 2 and 5
# 92-93%), an EMA of G, Adam beta1 0.5, batch 256, lr 5e-4 on a cosine schedule for 20000 steps
# (96%; a constant 5e-4 or 3e-4 dipped to 37-84% on the way, a constant 2e-4 was stable but slower).
# New runs get these where the user set nothing; the class defaults stay the PacGAN networks.
MIXTURE_MODEL_DEFAULTS = {"g_hidden": [256, 256, 256], "g_batchnorm": False, "d_hidden": [256, 256, 256],
                          "d_maxout": 0, "r1": 2.0, "beta1": 0.5, "ema": 0.999}
MIXTURE_TRAIN_DEFAULTS = {"batch_size": 256, "lr": 5e-4, "schedule": "cosine", "steps": 20000}
# The PacGAN paper's 2-D networks and optimiser (Lin et al. 2018, appendix): G 4x400 ReLU+BN, D
# 3x200 maxout with 5 pieces, Adam beta1 0.8, no penalty or EMA; train with batch 100, lr 1e-4
# and a constant schedule (PACGAN_TRAIN). Passing both explicitly on ring8/grid25 turns the tuned
# set-up off (the training defaults fill only what is not given: a cosine schedule otherwise).
PACGAN_MODEL = {"g_hidden": [400, 400, 400, 400], "g_batchnorm": True, "d_hidden": [200, 200, 200],
                "d_maxout": 5, "r1": 0.0, "beta1": 0.8, "ema": 0.0}
PACGAN_TRAIN = {"train.batch_size": 100, "train.lr": 1e-4, "train.schedule": "constant"}  # as --set items
# The tuned set-up of ``dcgan`` on Stacked MNIST, measured by `genlab bench stacked-mnist` (10
# seeds on a GPU: 1000 of 1000 modes in each, KL to uniform 0.082 +- 0.006): PacGAN's packing of
# 2, lazy R1 (gamma 1 every 8 D steps), no EMA, batch 128 for 16000 steps. On seed 0, batch 64
# gave 0.096, widths 128 0.103 and a cosine schedule 0.137; without R1, with an EMA, 0.127.
STACKED_MODEL_DEFAULTS = {"pack": 2, "r1": 1.0, "r1_every": 8, "ema": 0.0}
STACKED_TRAIN_DEFAULTS = {"batch_size": 128, "steps": 16000}


def _tuned_for(cls, data_name) -> tuple[str, dict, dict] | None:
    """(what, model fields, training fields) of the tuned set-up of this model on this data set,
    or None: ``gan`` on ring8/grid25, ``dcgan`` on stacked-mnist (not their subclasses)."""
    from ...data.toy import MIXTURES

    if cls.name == "gan" and data_name in MIXTURES:
        return "the tuned 2-D set-up", MIXTURE_MODEL_DEFAULTS, MIXTURE_TRAIN_DEFAULTS
    if cls.name == "dcgan" and data_name == "stacked-mnist":
        return "the tuned Stacked MNIST set-up", STACKED_MODEL_DEFAULTS, STACKED_TRAIN_DEFAULTS
    return None


@register_model("gan", "MLP GAN (Goodfellow 2014): g_loss minimax|nonsaturating|ml, d_loss bce|hinge|wasserstein, d_steps, pack, gp, ema; "
                "its field defaults are PacGAN's networks, but on ring8/grid25 the fields left unset take the tuned 2-D "
                "set-up (3x256 nets without BatchNorm or maxout, r1=2, ema=0.999, beta1=0.5; batch 256, lr 5e-4 cosine, "
                "20000 steps)")
class GAN(GenModel):
    Config = GANConfig
    name = "gan"
    generative = True
    uses_labels = False

    def __init__(self, config: GANConfig, shape, value_range=(0.0, 1.0)):
        super().__init__(config, shape, value_range)
        c = config
        self.latent = self.latent_size()
        self.generator = self.build_generator()
        self.discriminator = self.build_discriminator()
        self.g_ema = None
        if c.ema:
            self.g_ema = copy.deepcopy(self.generator)
            for p in self.g_ema.parameters():
                p.requires_grad_(False)
            if c.ema_bn:  # set by a G update, cleared when the statistics are recomputed; saved with the model
                self.register_buffer("ema_bn_stale", torch.ones((), dtype=torch.bool))

    @classmethod
    def train_defaults(cls, data_name: str | None) -> dict:
        """``gan`` on ring8/grid25: batch 256, lr 5e-4 on a cosine schedule, 20000 steps (the
        tuned 2-D set-up, ``MIXTURE_TRAIN_DEFAULTS``); ``dcgan`` on stacked-mnist: batch 128,
        16000 steps (``STACKED_TRAIN_DEFAULTS``)."""
        tuned = _tuned_for(cls, data_name)
        return dict(tuned[2]) if tuned else {}

    @classmethod
    def prepare_config(cls, cfg: dict, data) -> tuple[dict, str | None]:
        """``gan`` on ring8/grid25 and ``dcgan`` on stacked-mnist: the tuned networks and game
        (``MIXTURE_MODEL_DEFAULTS``, ``STACKED_MODEL_DEFAULTS``) for every field the user left
        unset; a message names them."""
        tuned = _tuned_for(cls, getattr(data, "name", None))
        if not tuned:
            return cfg, None
        what, model_defaults, train_defaults = tuned
        filled = {k: v for k, v in model_defaults.items() if k not in cfg}
        if not filled:
            return cfg, None
        def shown(d):  # as --set would take them
            return " ".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in d.items())

        shown, train = shown(filled), shown(train_defaults)
        return {**cfg, **filled}, (f"{cls.name} on {data.name}: {what} {shown}, and for training {train} where "
                                   "not given (set a field to override it)")

    # --- the two networks: subclasses (dcgan, the conditional models) override these ---------
    def latent_size(self) -> int:
        return self.config.latent or (2 if self.dim == 2 else 100)

    def build_generator(self) -> nn.Module:
        """``G(z)`` (or ``G(z, y)`` for a conditional model): raw outputs, mapped by ``_out``."""
        return mlp_generator(self.latent, self.dim, self.config)

    def build_discriminator(self) -> nn.Module:
        """``D(x)`` (or ``D(x, y)``): one logit per example, or per pack of ``pack`` examples."""
        return _Discriminator(self.dim, self.config)

    # --- generation ------------------------------------------------------------------------
    def _out(self, raw: torch.Tensor) -> torch.Tensor:
        x = raw.view(-1, *self.shape)
        return torch.sigmoid(x) if self.unit_range and self.dim > 2 else x

    def generate(self, z: torch.Tensor, ema: bool = False, y: torch.Tensor | None = None) -> torch.Tensor:
        """G's samples for noise ``z`` (and labels ``y``, conditional models only)."""
        g = self.g_ema if (ema and self.g_ema is not None) else self.generator
        if g is self.g_ema and not torch.compiler.is_compiling():  # an export calls fresh_ema_bn first
            self.fresh_ema_bn()
        return self._out(g(z) if y is None else g(z, y))

    def fresh_ema_bn(self) -> None:
        """With ``ema_bn``: recompute the EMA generator's BatchNorm statistics if a G update has
        changed its weights since they were last computed (a no-op otherwise)."""
        if getattr(self, "ema_bn_stale", None) is not None and bool(self.ema_bn_stale):
            self.recompute_ema_bn()

    @torch.no_grad()
    def recompute_ema_bn(self, chunk: int = 500) -> None:
        """Set the EMA generator's BatchNorm running statistics to the average over ``ema_bn``
        noise samples, in chunks of ``chunk``, of its own batch statistics (each chunk's mean
        and unbiased variance, as ``torch.optim.swa_utils.update_bn``); conditional models draw
        uniform labels. The noise comes from a generator of its own, seeded 0: the global RNG,
        and with it an exact resume, is untouched."""
        g = self.g_ema
        bns = [m for m in g.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if bns:
            device = next(g.parameters()).device
            momenta = [m.momentum for m in bns]
            for m in bns:
                m.reset_running_stats()
                m.momentum = None  # a cumulative average over the chunks
            was = g.training
            g.train()
            rng = torch.Generator().manual_seed(0)
            n = self.config.ema_bn
            for i in range(0, n, chunk):
                b = min(chunk, n - i)
                z = torch.randn(b, self.latent, generator=rng).to(device)
                if self.uses_labels:
                    g(z, torch.randint(self.config.classes, (b,), generator=rng).to(device))
                else:
                    g(z)
            g.train(was)
            for m, mom in zip(bns, momenta):
                m.momentum = mom
        self.ema_bn_stale.fill_(False)

    def critic(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """D's logits for ``x`` (and labels ``y``, conditional models only)."""
        return self.discriminator(x) if y is None else self.discriminator(x, y)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        was = self.training
        self.eval()
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent, generator=generator).to(device)
        x = self.generate(z, ema=True)
        self.train(was)
        return x

    def reconstruct(self, x):
        """A GAN has no encoder; evaluation shows samples instead, drawn without touching the
        global RNG (the sample grids at the end of a run would otherwise shift the noise of a
        resumed run and break the exact resume)."""
        with torch.random.fork_rng(devices=[]):
            return self.sample(x.shape[0])

    # --- training --------------------------------------------------------------------------
    def make_optimizers(self, cfg) -> dict:
        from ...train.engine import make_optimizer

        c = self.config
        betas = (c.beta1, c.beta2)
        return {"d": make_optimizer(self.discriminator, cfg, lr=c.d_lr or cfg.lr, betas=betas),
                "g": make_optimizer(self.generator, cfg, lr=c.g_lr or cfg.lr, betas=betas)}

    def loss(self, x):
        raise ConfigError("gan: trained by its own train_step (two optimizers); use genlab.train")

    def train_step(self, x: torch.Tensor, y, update, step: int, total: int) -> dict:
        """One discriminator update on the batch ``x`` against as many fresh samples, and every
        ``d_steps``-th step one generator update on fresh noise. A conditional model
        (``uses_labels``) gets the batch's labels ``y`` and gives its fakes the same labels, so
        that real and fake batches have one label distribution; an unconditional one ignores ``y``."""
        c = self.config
        y = y if self.uses_labels else None
        n = x.shape[0]
        device = x.device
        logs: dict[str, torch.Tensor] = {}
        # discriminator
        z = lambda: draw(lambda m: torch.randn(m, self.latent, device=device), n)  # noqa: E731
        with torch.no_grad():
            fake = self.generate(z(), y=y)
        with_r1 = bool(c.r1) and step % c.r1_every == 0
        if with_r1:
            x = x.detach().requires_grad_(True)
        aux = getattr(c, "aux_weight", 0.0)
        if aux:  # AC-GAN: D's class head learns the real labels
            a_real, cls_real = self.discriminator(x, y, with_classes=True)
        else:
            a_real = self.critic(x, y)
        a_fake = self.critic(fake, y)
        ld = d_loss_fn(c.d_loss, a_real, a_fake)
        if aux:
            ce = F.cross_entropy(cls_real, y.long())
            ld = ld + aux * ce
            logs["aux_d"] = ce.detach()
        if with_r1:
            g, = torch.autograd.grad(a_real.sum(), x, create_graph=True)
            r1 = g.flatten(1).pow(2).sum(1).mean()
            ld = ld + 0.5 * c.r1 * c.r1_every * r1
            logs["r1"] = r1.detach()
            x = x.detach()
        if c.gp:
            m = (n // c.pack) * c.pack
            ym = None if y is None else y[:m]
            gp = gradient_penalty(lambda t: self.critic(t, ym), x[:m], fake[:m])
            ld = ld + c.gp * gp
            logs["gp"] = gp.detach()
        update("d", ld)
        logs["d_loss"] = ld.detach()
        if c.d_loss == "bce":
            logs["d_real"] = torch.sigmoid(a_real).mean().detach()  # mean D(x)
            logs["d_fake"] = torch.sigmoid(a_fake).mean().detach()  # mean D(G(z))
        else:
            logs["d_real"], logs["d_fake"] = a_real.mean().detach(), a_fake.mean().detach()
        logs["d_acc"] = 0.5 * ((a_real > 0).float().mean() + (a_fake < 0).float().mean()).detach()
        # generator, every d_steps-th step
        if (step + 1) % c.d_steps == 0:
            for p in self.discriminator.parameters():
                p.requires_grad_(False)
            fake = self.generate(z(), y=y)
            if aux:  # AC-GAN: G is rewarded when D's class head reads the requested label
                a, cls_fake = self.discriminator(fake, y, with_classes=True)
                ce = F.cross_entropy(cls_fake, y.long())
                lg = g_loss_fn(c.g_loss, c.d_loss, a) + aux * ce
                logs["aux_g"] = ce.detach()
            else:
                lg = g_loss_fn(c.g_loss, c.d_loss, self.critic(fake, y))
            update("g", lg)
            for p in self.discriminator.parameters():
                p.requires_grad_(True)
            logs["g_loss"] = lg.detach()
            if self.g_ema is not None:
                with torch.no_grad():
                    decay = ema_decay(c.ema, (step + 1) // c.d_steps if c.ema_warmup else None)
                    for pe, p in zip(self.g_ema.parameters(), self.generator.parameters()):
                        pe.lerp_(p, 1 - decay)
                    if c.ema_bn:  # recomputed for the averaged weights when next sampled
                        self.ema_bn_stale.fill_(True)
                    else:
                        for be, b in zip(self.g_ema.buffers(), self.generator.buffers()):
                            be.copy_(b)
        return logs

    @torch.no_grad()
    def eval_batch(self, x):
        """D's view of the real test data: d_real = D(x) per example (a probability for bce);
        nothing when D judges packs or batch statistics rather than single examples. The
        sample-quality metrics come from ``Run.evaluate``."""
        if self.config.pack != 1 or self.config.mbstd:
            return {}
        a = self.critic(x)
        return {"d_real": torch.sigmoid(a) if self.config.d_loss == "bce" else a}
