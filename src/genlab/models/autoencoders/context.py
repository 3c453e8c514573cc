"""Context encoder (Pathak et al., 2016): a conv encoder-decoder that inpaints a square hole.

The input is the image with a square region (the hole) replaced by a fill value; the decoder
predicts the whole image, and the objective weights the hole heavily and the context lightly:

    loss = sum_{hole} (x_hat - x)^2 + overlap_weight * sum_{context} (x_hat - x)^2   (per image, batch mean)

Only the hole has to be invented; the small context term keeps the decoder's output near the
input elsewhere, so that the pasted-in hole joins its surroundings. (The paper's decoder
predicts only the hole plus a thin overlapping band, weighted 10x; its 0.001 is the weight of
the adversarial term. Here the decoder predicts the full image and ``overlap_weight`` weights
every context pixel.) The inpainted image is the composite: the context copied from the input,
the hole from the decoder.

Masks: ``centre`` cuts the same square out of the middle of every image; ``random`` cuts a
square of the same size at a uniformly random position per image, drawn from the torch global
RNG at every training batch (so it is part of the engine's exact-resume state). Evaluation
always uses the centre hole, whatever the training mask, so that numbers are deterministic and
comparable between models.

Fill: ``zero`` puts 0 in the hole; ``mean`` puts the per-pixel mean of the training images seen
so far (a buffer updated after each training batch, so an image never sees its own pixels in the
fill; it starts at the middle of the data's value range and after one epoch is the training-set
mean image; it is saved with the weights and used unchanged at evaluation).

Adversarial term (``adversarial`` > 0, off by default): a conv discriminator D learns to tell
real images from inpainted composites, and the encoder-decoder is pushed to fool it. The engine
has one optimizer, so the two-player game runs through a gradient-reversal layer (as in
domain-adversarial training): the composite passes through a function that is the identity
forward and multiplies the gradient by ``-adversarial`` backward, and the loss adds D's
cross-entropy ``L_D = -log D(x) - log(1 - D(x_hat))``. D's parameters descend L_D; the
encoder-decoder's parameters receive ``-adversarial * dL_D/dx_hat``, i.e. they ascend D's loss:
the minimax game of Goodfellow et al. with weight ``adversarial`` on the generator's side. D is
part of the model, so its weights and Adam state are checkpointed and resume exactly. The
logged ``loss`` then includes L_D (logged on its own as ``adv_d``); ``hole_sse`` stays the
inpainting objective.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ... import losses
from ...config import choice, field
from ...errors import ConfigError
from ...nn.blocks import ConvDecoder, ConvEncoder
from ...registry import register_model
from ..base import GenModel
from ...train.distributed import draw  # torchrun: per-example noise drawn for the global batch
from .ae import _check_sizes


@dataclass
class ContextEncoderConfig:
    channels: list[int] = field([32, 64], "channels of the stride-2 conv layers (each halves H and W)")
    latent: int = field(256, "bottleneck size between encoder and decoder")
    activation: str = field("relu", "hidden activation")
    batchnorm: bool = field(False, "BatchNorm after each conv layer")
    mask: str = choice("centre", ("centre", "random"), "training hole: centre square, or a square at a random position per image and batch (evaluation always uses the centre)")
    mask_size: float = field(0.5, "side of the square hole as a fraction of the image side (0.5: a 14x14 hole in 28x28 images)")
    fill: str = choice("mean", ("mean", "zero"), "value put in the hole: the per-pixel training mean (running, saved with the weights) or 0")
    overlap_weight: float = field(0.001, "weight of the squared error on the context (outside the hole); the hole has weight 1")
    adversarial: float = field(0.0, "weight of the adversarial term on the encoder-decoder (0: off); a discriminator is then trained alongside through a gradient-reversal layer")

    def validate(self) -> None:
        _check_sizes(self.channels, self.latent, "channels")
        if not 0.0 < self.mask_size < 1.0:
            raise ConfigError(f"mask_size: expected a fraction of the image side in (0, 1), got {self.mask_size}")
        if not self.overlap_weight >= 0.0:
            raise ConfigError(f"overlap_weight: expected a non-negative weight, got {self.overlap_weight}")
        if not self.adversarial >= 0.0:
            raise ConfigError(f"adversarial: expected a non-negative weight, got {self.adversarial}")


class _ReverseGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


def reverse_grad(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity forward; the gradient is multiplied by ``-scale`` on the way back."""
    return _ReverseGrad.apply(x, scale)


@register_model("context-encoder", "inpainting conv encoder-decoder, Pathak et al. 2016 (mask=centre|random, mask_size=0.5)")
class ContextEncoder(GenModel):
    """Conv encoder-decoder trained to fill a square hole from its context."""

    Config = ContextEncoderConfig
    name = "context-encoder"

    def __init__(self, config: ContextEncoderConfig, shape, value_range=(0.0, 1.0)):
        super().__init__(config, shape, value_range)
        c = config
        if len(self.shape) != 3:
            raise ConfigError(f"data: context-encoder inpaints images (C x H x W), the data has shape {self.shape}; use an image data set")
        _, h, w = self.shape
        self.side = int(c.mask_size * min(h, w) + 0.5)  # round half up
        if not 1 <= self.side < min(h, w):
            raise ConfigError(
                f"mask_size: {c.mask_size} gives a {self.side}x{self.side} hole in {h}x{w} images; "
                f"expected a hole of 1 to {min(h, w) - 1} pixels a side"
            )
        self.encoder = ConvEncoder(self.shape, c.channels, c.latent, c.activation, c.batchnorm)
        self.decoder = ConvDecoder(self.shape, c.channels, c.latent, c.activation, c.batchnorm)
        # the discriminator: the encoder's conv stack down to one logit (only when adversarial > 0)
        self.disc = ConvEncoder(self.shape, c.channels, 1, "leaky_relu", False) if c.adversarial > 0 else None
        mid = 0.5 * (self.value_range[0] + self.value_range[1])
        self.register_buffer("fill_mean", torch.full(self.shape, mid))
        self.register_buffer("fill_count", torch.zeros((), dtype=torch.float64))

    # --- the hole ---------------------------------------------------------------------------
    def mask(self, x: torch.Tensor, train: bool = False) -> torch.Tensor:
        """The boolean hole mask of shape (N, 1, H, W), True inside the hole (it broadcasts over
        channels). ``train`` with mask=random draws one position per image from the global RNG;
        otherwise (and always in evaluation) the centre square."""
        n, (_, h, w), s = x.shape[0], self.shape, self.side
        if train and self.config.mask == "random":
            top = draw(lambda m: torch.randint(0, h - s + 1, (m,), device=x.device), n)
            left = draw(lambda m: torch.randint(0, w - s + 1, (m,), device=x.device), n)
        else:
            top = torch.full((n,), (h - s) // 2, device=x.device)
            left = torch.full((n,), (w - s) // 2, device=x.device)
        rows = torch.arange(h, device=x.device)[None, :]
        cols = torch.arange(w, device=x.device)[None, :]
        in_rows = (rows >= top[:, None]) & (rows < top[:, None] + s)  # (N, H)
        in_cols = (cols >= left[:, None]) & (cols < left[:, None] + s)  # (N, W)
        return (in_rows[:, :, None] & in_cols[:, None, :])[:, None]

    def fill_hole(self, x: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        """The encoder's input: ``x`` with the hole replaced by the fill value."""
        fill = self.fill_mean if self.config.fill == "mean" else torch.zeros((), device=x.device, dtype=x.dtype)
        return torch.where(hole, fill.to(x.dtype), x)

    @torch.no_grad()
    def _update_fill_mean(self, x: torch.Tensor) -> None:
        """Fold a training batch into the running per-pixel mean (an exact cumulative mean)."""
        n = x.shape[0]
        total = self.fill_count + n
        self.fill_mean += (x.mean(0) - self.fill_mean) * (n / total).to(self.fill_mean.dtype)
        self.fill_count.copy_(total)

    # --- encoder, decoder, inpainting ---------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The bottleneck code of ``x`` as given (mask it first with ``fill_hole`` to get the code
        the inpainting uses)."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        out = self.decoder(z).view(-1, *self.shape)
        return torch.sigmoid(out) if self.unit_range else out

    def predict(self, x: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        """The decoder's full-image output for ``x`` with ``hole`` cut out."""
        return self.decode(self.encode(self.fill_hole(x, hole)))

    def inpaint(self, x: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        """The composite: context pixels from ``x`` exactly, hole pixels from the decoder."""
        return torch.where(hole, self.predict(x, hole), x)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The inpainted image of ``x`` with the centre hole cut out."""
        return self.inpaint(x, self.mask(x, train=False))

    # --- objective and evaluation ---------------------------------------------------------------
    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Hole SSE + overlap_weight * context SSE, per image, batch mean. Uses the training mask
        (random positions for mask=random); in train mode the batch then joins the fill mean."""
        hole = self.mask(x, train=True)
        pred = self.predict(x, hole)
        sq = (pred - x) ** 2
        hole_sse = losses.flat(sq * hole).sum(1)
        context_sse = losses.flat(sq * ~hole).sum(1)
        if self.training:
            self._update_fill_mean(x)
        out = {"hole_sse": hole_sse.mean(), "context_sse": context_sse.mean()}
        out["loss"] = out["hole_sse"] + self.config.overlap_weight * out["context_sse"]
        if self.disc is not None:
            comp = torch.where(hole, pred, x)
            d_real = self.disc(x).flatten()
            d_fake = self.disc(reverse_grad(comp, self.config.adversarial)).flatten()
            bce = torch.nn.functional.binary_cross_entropy_with_logits
            out["adv_d"] = bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake))
            out["loss"] = out["loss"] + out["adv_d"]
        return out

    @torch.no_grad()
    def eval_batch(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per image, with the centre hole: hole_mse and hole_psnr (over the hole pixels of the
        inpainted image, PSNR with the data's value range), plus the usual reconstruction metrics
        of the composite (context from the input, hole from the decoder)."""
        hole = self.mask(x, train=False)
        comp = self.inpaint(x, hole)
        hole_px = self.shape[0] * self.side * self.side
        out = self.recon_metrics(x, comp)
        out["hole_mse"] = losses.flat((comp - x) ** 2 * hole).sum(1) / hole_px
        rng = self.value_range[1] - self.value_range[0]
        out["hole_psnr"] = 10.0 * torch.log10(rng * rng / out["hole_mse"].clamp_min(1e-10))
        return out

    def extra_repr(self) -> str:
        c = self.config
        return f"data shape={self.shape}, hole={self.side}x{self.side} ({c.mask}), fill={c.fill}"
