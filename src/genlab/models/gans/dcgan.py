"""``dcgan``, ``cgan`` and ``cdcgan``: the convolutional GAN of Radford et al. (2016) and the
conditional GANs of Mirza & Osindero (2014) and Miyato & Koyama (2018).

All three play the game of :mod:`genlab.models.gans.gan` (its losses, ``d_steps``, packing,
minibatch standard deviation, spectral norm, gradient penalty, generator EMA and its
``train_step``); they only bring other networks.

``dcgan`` follows the pytorch/examples DCGAN, which is the 64 px case:

- G: ``z`` (a 1x1 map with ``latent`` channels) -> 4x4 transposed convolution to 4x4 with
  ``g_width * 8`` channels, then stride-2 up-sampling blocks that halve the channels
  (BatchNorm + ReLU after each but the last) to 32x32 with ``g_width`` channels and finally to
  64x64 with the data's channel count. ``upsample`` picks the 2x block
  (:func:`genlab.nn.upsample.make_upsample`): ``transposed`` (4x4, stride 2, DCGAN),
  ``pixelshuffle`` (3x3 convolution + PixelShuffle) or ``resize`` (nearest + 3x3 convolution).
- D: 4x4 stride-2 convolutions doubling the channels from ``d_width`` (LeakyReLU 0.2, BatchNorm
  from the second layer on) down to 4x4, then a 4x4 convolution to one logit.
- Other sizes change only the number of 2x blocks: 32 px has three (4 -> 8 -> 16 -> 32, first
  map ``g_width * 4`` channels), 28 px starts at 7x7 and has two (7 -> 14 -> 28, ``g_width * 2``);
  D mirrors G, its last convolution spans the 4x4 (7x7) map. ``image_size`` must equal the
  data's H and W (0: take them, when they are 28, 32 or 64).
- Weights as in DCGAN: convolutions (and label embeddings) N(0, 0.02), BatchNorm scales
  N(1, 0.02), biases 0. Convolutions followed by BatchNorm have no bias (it would be cancelled);
  the three that are not (G's output layer, D's first and last layers) keep one, the only
  difference to the example's parameters (1 + d_width + 1 numbers).
- Output: for data in [0, 1] a sigmoid of G's last layer (as ``gan``); for any other range
  ``[lo, hi]`` (e.g. [-1, 1], the example's normalisation) ``lo + (hi - lo) (tanh(a) + 1) / 2``,
  which is ``tanh`` itself on [-1, 1].
- ``pack`` stacks ``pack`` images along the channels (PacGAN's DCGAN), ``mbstd`` appends the
  batch's mean feature standard deviation as one constant channel to D's last feature map
  (ProGAN), ``spectral_norm`` normalises every convolution of D (and its label embedding).
- Both networks keep their weights and activations in channels-last order (NHWC), which
  oneDNN's CPU convolutions run about 25-35% faster than NCHW; samples come back contiguous.

Conditional models (``uses_labels``: trained on the data set's labels; ``classes`` labels
0..classes-1): G gets the one-hot label concatenated to ``z`` (a first linear layer of a one-hot
vector is a learned label embedding). ``cgan`` (MLP) also concatenates it to D's input;
``cdcgan`` conditions D by projection (``conditioning=projection``, Miyato & Koyama 2018:
``D(x, y) = psi(phi(x)) + <embed(y), phi(x)>`` with ``phi(x)`` D's last feature map, flattened,
and ``psi`` the final convolution) or by ``classes`` constant one-hot channels concatenated to
the image (``conditioning=concat``). Training gives each batch's fakes the real batch's labels.
``aux_weight`` adds the auxiliary classifier of AC-GAN (Odena et al. 2017) to ``cdcgan``: a
linear class head on ``phi(x)``, trained with cross-entropy on the real images' labels, and a
generator term, the same weight times the cross-entropy of that head on the samples with their
requested labels: G is pushed towards samples that D's classifier reads as the requested class.
``sample(n, generator, labels=None)`` draws labels uniformly unless given;
``sample_class(n, c)`` draws ``n`` samples of class ``c``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...config import choice, field
from ...errors import ConfigError
from ...nn.upsample import UPSAMPLE_KINDS, make_upsample
from ...registry import register_model
from .gan import GAN, GameConfig, GANConfig, _Discriminator, mlp_generator

# image side -> (side of G's first map, number of 2x up-sampling blocks)
GEOMETRY = {28: (7, 2), 32: (4, 3), 64: (4, 4)}


# ------------------------------------------------------------------------------ configs
@dataclass
class ConvNetsConfig:
    """The two convolutional networks of ``dcgan`` (and ``cdcgan``)."""

    image_size: int = field(0, "image side: 28, 32 or 64, equal to the data's H and W (0: the data's size)")
    latent: int = field(100, "size of z (DCGAN's nz)")
    g_width: int = field(64, "generator base channels (ngf): the last hidden map has g_width, each earlier one twice as many")
    d_width: int = field(64, "discriminator base channels (ndf): the first map has d_width, each later one twice as many")
    upsample: str = choice("transposed", UPSAMPLE_KINDS, "G's 2x up-sampling: transposed (4x4 stride-2, DCGAN), pixelshuffle (conv + PixelShuffle) or resize (nearest + conv)")
    g_batchnorm: bool = field(True, "BatchNorm in the generator's hidden layers")
    d_batchnorm: bool = field(True, "BatchNorm in the discriminator from its second layer (DCGAN); a per-example gradient penalty (gp) assumes none")

    def validate(self) -> None:
        if self.image_size not in (0, *GEOMETRY):
            raise ConfigError(f"image_size: expected 28, 32 or 64 (or 0: the data's size), got {self.image_size}")
        for name in ("latent", "g_width", "d_width"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: expected a positive integer, got {getattr(self, name)}")


@dataclass
class DCGANConfig(GameConfig, ConvNetsConfig):
    g_lr: float = field(2e-4, "generator learning rate (DCGAN: 2e-4; 0: train.lr)")
    d_lr: float = field(2e-4, "discriminator learning rate (DCGAN: 2e-4; 0: train.lr)")
    beta1: float = field(0.5, "Adam beta1 of both optimizers (DCGAN: 0.5)")

    def validate(self) -> None:
        ConvNetsConfig.validate(self)
        GameConfig.validate(self)


def _validate_classes(c) -> None:
    if c.classes < 1:
        raise ConfigError(f"classes: expected a positive number of classes, got {c.classes}")


@dataclass
class CGANConfig(GANConfig):
    classes: int = field(10, "number of classes: labels 0..classes-1")

    def validate(self) -> None:
        super().validate()
        _validate_classes(self)


@dataclass
class CDCGANConfig(DCGANConfig):
    classes: int = field(10, "number of classes: labels 0..classes-1")
    conditioning: str = choice("projection", ("projection", "concat"), "how D sees the label: projection (Miyato & Koyama 2018) or one-hot channels concatenated to the image")
    aux_weight: float = field(3.0, "AC-GAN auxiliary classifier (Odena et al. 2017): D also predicts the class of real images, G is rewarded when D predicts the requested class of its samples; weight of both cross-entropies (0: off; on Fashion-MNIST 1 lifts the fashion-cnn accuracy of samples from 80% to 90% at 3000 steps, 3 reaches 97.8% at 8000)")

    def validate(self) -> None:
        super().validate()
        _validate_classes(self)
        if self.conditioning == "projection" and self.pack > 1:
            raise ConfigError(f"pack: a projection discriminator judges one image and its label; use pack=1 or conditioning=concat (got pack={self.pack})")
        if self.aux_weight < 0:
            raise ConfigError(f"aux_weight: expected a non-negative weight, got {self.aux_weight}")
        if self.aux_weight and self.pack > 1:
            raise ConfigError(f"aux_weight: the auxiliary classifier labels single images; with pack={self.pack} set aux_weight=0")


# ------------------------------------------------------------------------------ networks
def dcgan_init(m: nn.Module) -> None:
    """DCGAN's initialisation (use with ``module.apply``): convolution, linear and embedding
    weights N(0, 0.02), BatchNorm scales N(1, 0.02), biases 0."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if getattr(m, "bias", None) is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def _drop_bias(block: nn.Module) -> None:
    """Remove the biases of ``block``'s convolutions (a BatchNorm follows and would cancel them)."""
    for m in block.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.bias is not None:
            m.register_parameter("bias", None)


def one_hot(y: torch.Tensor, classes: int, dtype: torch.dtype) -> torch.Tensor:
    return F.one_hot(y.long(), classes).to(dtype)


class ConvGenerator(nn.Module):
    """``z`` (N x latent) [and labels] -> raw images (N x C x S x S), see the module docstring."""

    def __init__(self, latent: int, out_ch: int, image_size: int, width: int, upsample: str,
                 batchnorm: bool = True, classes: int = 0):
        super().__init__()
        base, steps = GEOMETRY[image_size]
        self.classes = classes
        ch = width * 2 ** (steps - 1)
        layers: list[nn.Module] = [nn.ConvTranspose2d(latent + classes, ch, base, 1, 0, bias=not batchnorm)]
        layers += ([nn.BatchNorm2d(ch)] if batchnorm else []) + [nn.ReLU(inplace=True)]
        for i in range(steps):
            last = i == steps - 1
            out = out_ch if last else ch // 2
            up = make_upsample(upsample, ch, out)
            if batchnorm and not last:
                _drop_bias(up)
            layers.append(up)
            if not last:
                layers += ([nn.BatchNorm2d(out)] if batchnorm else []) + [nn.ReLU(inplace=True)]
            ch = out
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)
        self.to(memory_format=torch.channels_last)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.classes:
            z = torch.cat([z, one_hot(y, self.classes, z.dtype)], 1)
        return self.net(z[:, :, None, None])


class ConvDiscriminator(nn.Module):
    """Images [and labels] -> one logit per image (per pack of ``pack`` images).

    ``phi(x)``: the stride-2 convolutions (and the ``mbstd`` channel); ``head`` (``psi``): the
    final convolution over the whole last map; with ``conditioning="projection"`` the logit adds
    ``<embed(y), phi(x)>`` over the flattened map."""

    def __init__(self, shape, image_size: int, width: int, batchnorm: bool = True, pack: int = 1,
                 mbstd: bool = False, spectral_norm: bool = False, classes: int = 0,
                 conditioning: str = "none", aux_classes: int = 0):
        super().__init__()
        base, steps = GEOMETRY[image_size]
        self.pack, self.mbstd, self.classes = pack, mbstd, classes
        self.concat = conditioning == "concat"
        in_ch = (shape[0] + (classes if self.concat else 0)) * pack
        layers: list[nn.Module] = []
        for i in range(steps):
            out = width * 2 ** i
            bn = batchnorm and i > 0
            layers.append(nn.Conv2d(in_ch, out, 4, 2, 1, bias=not bn))
            layers += ([nn.BatchNorm2d(out)] if bn else []) + [nn.LeakyReLU(0.2, inplace=True)]
            in_ch = out
        self.features = nn.Sequential(*layers)
        feat = in_ch + (1 if mbstd else 0)
        self.head = nn.Conv2d(feat, 1, base, 1, 0)
        self.embed = nn.Embedding(classes, feat * base * base) if conditioning == "projection" else None
        # AC-GAN: class logits from the last feature map (a linear map of phi(x))
        self.classify = nn.Conv2d(feat, aux_classes, base, 1, 0) if aux_classes else None
        self.apply(dcgan_init)
        self.to(memory_format=torch.channels_last)
        if spectral_norm:
            for m in list(self.modules()):
                if isinstance(m, (nn.Conv2d, nn.Embedding)):
                    nn.utils.parametrizations.spectral_norm(m)

    def phi(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """D's last feature map (N' x feat x base x base), after label channels and packing."""
        if self.concat:
            lab = one_hot(y, self.classes, x.dtype)[:, :, None, None].expand(-1, -1, *x.shape[2:])
            x = torch.cat([x, lab], 1)
        if self.pack > 1:
            n = (x.shape[0] // self.pack) * self.pack
            x = x[:n].reshape(n // self.pack, -1, *x.shape[2:])
        h = self.features(x.contiguous(memory_format=torch.channels_last))
        if self.mbstd:
            s = h.std(0, unbiased=False).mean() if h.shape[0] > 1 else h.new_zeros(())
            h = torch.cat([h, s.expand(h.shape[0], 1, *h.shape[2:])], 1)
        return h

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, with_classes: bool = False):
        """The logits; with ``with_classes`` also the auxiliary classifier's class logits."""
        h = self.phi(x, y)
        a = self.head(h).flatten()
        if self.embed is not None:
            a = a + (self.embed(y.long()) * h.flatten(1)).sum(1)
        if with_classes:
            return a, self.classify(h).flatten(1)
        return a


class _OneHotInput(nn.Module):
    """``net(cat[input flattened, one_hot(y)])``: the label concatenated to an MLP's input."""

    def __init__(self, net: nn.Module, classes: int):
        super().__init__()
        self.net, self.classes = net, classes

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        return self.net(torch.cat([x, one_hot(y, self.classes, x.dtype)], 1))


# ------------------------------------------------------------------------------ models
def image_geometry(name: str, image_size: int, shape) -> int:
    """The image side ``image_size`` names, checked against the data's shape."""
    if len(shape) != 3:
        raise ConfigError(f"image_size: {name} needs images (C x H x W), the data has shape {tuple(shape)}; use gan/cgan for vectors")
    _, h, w = shape
    fits = h == w and h in GEOMETRY
    if image_size and fits and image_size != h:
        raise ConfigError(f"image_size: {image_size} does not match the data's {h}x{w} images; set image_size={h} (or 0)")
    if not fits or (image_size and image_size != h):
        raise ConfigError(f"image_size: {name} makes square images of 28, 32 or 64 px, the data's images are {h}x{w}; "
                          "resize them (e.g. data.image_size=32 for folder: data)")
    return h


@register_model("dcgan", "convolutional GAN (Radford 2016; the pytorch example at 64 px): image_size 28|32|64, latent, g_width, d_width, upsample, and every option of gan; "
                "on stacked-mnist the fields left unset take the tuned set-up (pack=2, lazy R1 r1=1 r1_every=8, ema=0; batch 128, 16000 steps)")
class DCGAN(GAN):
    Config = DCGANConfig
    name = "dcgan"

    def latent_size(self) -> int:
        return self.config.latent

    @property
    def image_size(self) -> int:
        return image_geometry(self.name, self.config.image_size, self.shape)

    def build_generator(self) -> nn.Module:
        c = self.config
        return ConvGenerator(self.latent, self.shape[0], self.image_size, c.g_width, c.upsample, c.g_batchnorm,
                             classes=getattr(c, "classes", 0))

    def build_discriminator(self) -> nn.Module:
        c = self.config
        return ConvDiscriminator(self.shape, self.image_size, c.d_width, c.d_batchnorm, c.pack, c.mbstd, c.spectral_norm,
                                 classes=getattr(c, "classes", 0), conditioning=getattr(c, "conditioning", "none"),
                                 aux_classes=getattr(c, "classes", 0) if getattr(c, "aux_weight", 0.0) else 0)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return super().sample(n, generator).contiguous()  # the networks compute in channels-last order

    def _out(self, raw: torch.Tensor) -> torch.Tensor:
        if self.unit_range:
            return torch.sigmoid(raw)
        lo, hi = self.value_range
        if (lo, hi) == (-1.0, 1.0):
            return torch.tanh(raw)
        return lo + (hi - lo) * 0.5 * (torch.tanh(raw) + 1)


class _Conditional:
    """What makes a GAN conditional: labels in training, sampling and evaluation."""

    uses_labels = True

    def check_labels(self, y: torch.Tensor) -> None:
        k = self.config.classes
        if y.numel() == 0:
            return
        lo, hi = int(y.min()), int(y.max())
        if lo < 0:
            raise ConfigError(f"classes: {self.name} needs a label in 0..{k - 1} for every example, got {lo} "
                              "(unlabelled examples? leave data.labels_per_class at 0)")
        if hi >= k:
            raise ConfigError(f"classes: the data has label {hi}, but classes={k} allows 0..{k - 1}; set classes={hi + 1} or more")

    def train_step(self, x, y, update, step, total):
        if y is None:
            raise ConfigError(f"classes: {self.name} is conditional and trains on labelled data; this batch has no labels")
        self.check_labels(y)
        return super().train_step(x, y, update, step, total)

    @torch.no_grad()
    def sample_labeled(self, n: int, generator: torch.Generator | None = None,
                       labels=None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` samples and their labels: ``labels`` (one label, or ``n``), else uniform draws
        from ``generator`` (after the noise)."""
        was = self.training
        self.eval()
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent, generator=generator)
        if labels is None:
            y = torch.randint(self.config.classes, (n,), generator=generator)
        else:
            y = torch.as_tensor(labels, dtype=torch.long).cpu()
            if y.dim() == 0:
                y = y.expand(n)
            if tuple(y.shape) != (n,):
                raise ConfigError(f"labels: expected one label or {n}, got shape {tuple(y.shape)}")
            self.check_labels(y)
        x = self.generate(z.to(device), ema=True, y=y.to(device)).contiguous()
        self.train(was)
        return x, y

    def sample(self, n: int, generator: torch.Generator | None = None, labels=None) -> torch.Tensor:
        return self.sample_labeled(n, generator, labels)[0]

    def sample_class(self, n: int, c: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` samples of class ``c``."""
        return self.sample(n, generator, labels=c)

    @torch.no_grad()
    def eval_batch(self, x, y=None):
        """D's view of the real test data with their labels (see ``gan``)."""
        if self.config.pack != 1 or self.config.mbstd or y is None:
            return {}
        self.check_labels(y)
        a = self.critic(x, y)
        return {"d_real": torch.sigmoid(a) if self.config.d_loss == "bce" else a}


@register_model("cgan", "conditional MLP GAN (Mirza & Osindero 2014): one-hot label concatenated to z and to D's input; classes, and every option of gan")
class CGAN(_Conditional, GAN):
    Config = CGANConfig
    name = "cgan"

    def build_generator(self) -> nn.Module:
        k = self.config.classes
        return _OneHotInput(mlp_generator(self.latent + k, self.dim, self.config), k)

    def build_discriminator(self) -> nn.Module:
        k = self.config.classes
        return _OneHotInput(_Discriminator(self.dim + k, self.config), k)


@register_model("cdcgan", "conditional DCGAN: label concatenated to z; D by projection (Miyato & Koyama 2018) or label channels (conditioning); classes, and every option of dcgan")
class CDCGAN(_Conditional, DCGAN):
    Config = CDCGANConfig
    name = "cdcgan"


@dataclass
class WGANGPConfig(DCGANConfig):
    """The defaults of Gulrajani et al. (2017), Algorithm 1: a critic without BatchNorm (the
    gradient penalty is per example), lambda = 10, n_critic = 5, Adam 1e-4 with betas (0, 0.9)."""

    d_loss: str = choice("wasserstein", ("bce", "hinge", "wasserstein"), "discriminator loss (WGAN-GP: wasserstein, the critic)")
    gp: float = field(10.0, "gradient-penalty weight lambda (WGAN-GP: 10)")
    d_steps: int = field(5, "critic updates per generator update, n_critic (WGAN-GP: 5)")
    d_batchnorm: bool = field(False, "BatchNorm in the critic (off: the gradient penalty is per example)")
    g_lr: float = field(1e-4, "generator learning rate (WGAN-GP: 1e-4)")
    d_lr: float = field(1e-4, "critic learning rate (WGAN-GP: 1e-4)")
    beta1: float = field(0.0, "Adam beta1 (WGAN-GP: 0)")
    beta2: float = field(0.9, "Adam beta2 (WGAN-GP: 0.9)")


@register_model("wgan-gp", "WGAN-GP (Gulrajani et al. 2017): the dcgan networks with a critic, gradient penalty 10, n_critic 5, Adam 1e-4 (0, 0.9)")
class WGANGP(DCGAN):
    Config = WGANGPConfig
    name = "wgan-gp"
