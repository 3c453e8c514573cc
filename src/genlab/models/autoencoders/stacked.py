"""``stacked-ae``: greedy layer-wise pretraining of a stacked (denoising) autoencoder, then
supervised fine-tuning of the encoder stack with a linear classifier head (Bengio et al.,
"Greedy Layer-Wise Training of Deep Networks", 2006; Vincent et al., denoising autoencoders,
2008) -- all in one ``genlab train stacked-ae DATA`` run.

Why one run, and how it fits the engine's single optimizer
-----------------------------------------------------------
The engine owns one optimizer over all parameters and calls ``set_step(step, total)`` before
every step. The model turns the step into a *phase*, a function of the step alone (so an exact
resume needs no extra state)::

    steps [0, P/L)        pretrain layer 1   (encoder 1 + its own decoder 1, on the pixels)
    steps [P/L, 2P/L)     pretrain layer 2   (encoder 2 + decoder 2, on layer-1 codes)
    ...
    steps [P, total)      fine-tune          (all encoders + linear head, cross-entropy)

with ``P = round(pretrain_share * total)`` split evenly across the L layers (phases scale with
the run's length: resuming with more steps re-plans them, as it does a cosine schedule). In a pretraining
phase the codes of the layers below are computed under ``no_grad`` and the layers above and
the head are not used, so their gradients stay ``None``: the engine zeroes gradients with
``set_to_none=True`` and Adam/AdamW/SGD skip parameters whose gradient is ``None`` (no moment
update, no weight decay), so every other parameter is left bit for bit as it was. Decoders get
no gradient while fine-tuning. Adam keeps a step count per parameter, so the bias correction
of a layer that starts training late is right; its moments carry over from pretraining into
fine-tuning (see the layer losses below).

Labels: the model sets ``uses_labels = True``. Pretraining uses every training image, labelled
or not (``y`` is ignored). Fine-tuning forwards only the labelled items of the batch
(``y >= 0``, see ``data.labels_per_class``) and averages the cross-entropy over them; a batch
without any labelled item gives a zero loss that is connected to no parameter, so the step
changes nothing. With 100 labels per class of MNIST's 60000 images a batch of 128 holds about
two labelled items: each fine-tuning step then costs a forward/backward of ~2 items (cheap),
one pass over the data is one pass over the labelled set in ~470 small-batch updates, and the
phase lengths (``pretrain_share`` and the run's epochs) set how many such passes fine-tuning
gets. This keeps one data set, one run directory and one engine, at the price of a small
effective fine-tuning batch (``train.batch_size`` x labelled share), which is the regime of the
classic work (stochastic updates of a few examples).

``pretrain=false`` trains the same network from scratch on the labels (every step is
fine-tuning): the baseline that pretraining is compared with.

Layer losses: a layer whose input lies in [0, 1] (the pixels of data in [0, 1], or the codes
of a sigmoid layer) is trained with the cross-entropy of its reconstruction (decoder output as
logits), otherwise with the squared error; both averaged over the layer's units and the batch.
Per unit, not summed as in ``ae``: the optimizer's state of a pretrained layer carries over
into fine-tuning, and Adam's second-moment estimates from a loss summed over 784 pixels are so
far above those of the cross-entropy's gradients that they throttle fine-tuning for thousands
of steps. Measured (MNIST, 784-200-100, one pretraining epoch per layer, three fine-tuning
epochs): 9.6% test accuracy with the summed loss -- the codes stay saturated and the head
cannot learn -- against 78% with the per-unit loss (77% with Adam's state reset instead).

With ``noise=mask`` a share ``noise_level`` of the layer's input units is set to 0 (masking
noise; the target is the clean input), drawn from torch's global RNG so it is part of the
exact-resume state.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ... import losses
from ...config import choice, field
from ...errors import ConfigError
from ...nn.blocks import activation
from ...registry import register_model
from ..base import GenModel
from ...train.distributed import draw  # torchrun: per-example noise drawn for the global batch


@dataclass
class StackedAEConfig:
    hidden: list[int] = field([256, 128], "sizes of the stacked layers; each is pretrained as its own autoencoder")
    activation: str = choice("sigmoid", ("sigmoid", "relu"), "layer activation (sigmoid as in the classic work)")
    noise: str = choice("none", ("none", "mask"), "input corruption while pretraining a layer: none, or mask (denoising)")
    noise_level: float = field(0.3, "share of a layer's input units set to 0 by noise=mask")
    pretrain: bool = field(True, "greedy layer-wise pretraining first; false: train the same network from scratch on the labels")
    pretrain_share: float = field(0.5, "share of the run's steps spent pretraining, split evenly across the layers")
    classes: int = field(10, "number of classes; labels must be 0..classes-1 (-1: unlabelled)")

    def validate(self) -> None:
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ConfigError(f"hidden: expected a non-empty list of positive layer sizes, got {self.hidden}")
        if not 0.0 <= self.noise_level < 1.0:
            raise ConfigError(f"noise_level: expected a share in [0, 1), got {self.noise_level}")
        if not 0.0 <= self.pretrain_share < 1.0:
            raise ConfigError(f"pretrain_share: expected a share in [0, 1) (fine-tuning needs steps), got {self.pretrain_share}")
        if self.classes < 2:
            raise ConfigError(f"classes: expected at least 2 classes, got {self.classes}")


@register_model("stacked-ae", "stacked (denoising) autoencoder: greedy layer-wise pretraining, then a "
                              "fine-tuned classifier (hidden=[...], noise=none|mask, pretrain=true|false)")
class StackedAE(GenModel):
    """Encoder layers ``x -> h1 -> ... -> hL``, one decoder per layer (``hk -> h(k-1)``) and a
    linear head ``hL -> class logits``. See the module docstring for the training phases."""

    Config = StackedAEConfig
    name = "stacked-ae"
    uses_labels = True

    def __init__(self, config: StackedAEConfig, shape, value_range=(0.0, 1.0)):
        super().__init__(config, shape, value_range)
        sizes = [self.dim, *config.hidden]
        self.encoders = nn.ModuleList(nn.Linear(sizes[i], sizes[i + 1]) for i in range(len(config.hidden)))
        self.decoders = nn.ModuleList(nn.Linear(sizes[i + 1], sizes[i]) for i in range(len(config.hidden)))
        self.head = nn.Linear(sizes[-1], config.classes)
        self.act = activation(config.activation)
        self.layers = len(config.hidden)
        self.phase = self.layers  # fine-tuning unless set_step says otherwise

    # --- phases: a function of the step alone ---------------------------------------------
    def pretrain_ends(self, total: int) -> list[int]:
        """The step at which each layer's pretraining ends (exclusive); the last one is where
        fine-tuning starts. All 0 with ``pretrain=false``."""
        share = self.config.pretrain_share if self.config.pretrain else 0.0
        return [round(total * share * (k + 1) / self.layers) for k in range(self.layers)]

    def phase_at(self, step: int, total: int) -> int:
        """0..L-1: pretraining that layer; L: fine-tuning."""
        for k, end in enumerate(self.pretrain_ends(total)):
            if step < end:
                return k
        return self.layers

    def set_step(self, step: int, total: int) -> None:
        self.phase = self.phase_at(step, total)

    # --- the network ------------------------------------------------------------------------
    def layer_input(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """The input of layer ``k`` (0-based): the flattened data for k = 0, else the codes of
        layer k-1. ``layer_input(x, L)`` is the top code."""
        h = x.reshape(x.shape[0], -1)
        for enc in self.encoders[:k]:
            h = self.act(enc(h))
        return h

    def _bounded(self, k: int) -> bool:
        """Whether layer k's input lies in [0, 1]: its decoder then outputs logits."""
        return self.unit_range if k == 0 else self.config.activation == "sigmoid"

    def _decoded(self, k: int, raw: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(raw) if self._bounded(k) else raw

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer_input(x, self.layers)

    def _decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        """Down the decoder stack; the bottom decoder's output before its non-linearity."""
        for k in range(self.layers - 1, 0, -1):
            z = self._decoded(k, self.decoders[k](z))
        return self.decoders[0](z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self._decoded(0, self._decode_raw(z)).view(-1, *self.shape)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encode(x))

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class indices."""
        return self.logits(x).argmax(1)

    # --- objectives -------------------------------------------------------------------------
    def corrupt(self, h: torch.Tensor) -> torch.Tensor:
        """Masking noise: each unit set to 0 with probability ``noise_level``."""
        if self.config.noise == "none" or self.config.noise_level == 0:
            return h
        u = draw(lambda m: torch.rand(m, *h.shape[1:], device=h.device, dtype=h.dtype), h.shape[0])
        return h * (u >= self.config.noise_level).to(h.dtype)

    def pretrain_loss(self, x: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
        """Reconstruction loss of layer k alone: the layers below are fixed feature maps."""
        with torch.no_grad():
            target = self.layer_input(x, k)
        raw = self.decoders[k](self.act(self.encoders[k](self.corrupt(target))))
        if self._bounded(k):
            rec = losses.bernoulli_nll(raw, target)
        else:
            rec = losses.sse(raw, target)
        rec = rec.mean() / target.shape[1]  # per unit: on the scale of the fine-tuning loss (module docstring)
        return {"loss": rec, "recon": rec, "phase": rec.new_tensor(k + 1.0)}

    def _check_labels(self, y: torch.Tensor) -> None:
        if y.numel() and int(y.max()) >= self.config.classes:
            top = int(y.max())
            raise ConfigError(f"classes: the data has label {top}, the model {self.config.classes} classes; set classes={top + 1}")

    def finetune_loss(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Mean cross-entropy over the labelled items (y >= 0) of the batch."""
        self._check_labels(y)
        keep = y >= 0
        xl, yl = x[keep], y[keep]
        phase = x.new_tensor(self.layers + 1.0)
        if yl.numel() == 0:
            # zero, with a grad_fn for the engine's backward, yet tied to no parameter: every
            # gradient stays None and the optimizer step changes nothing
            zero = torch.zeros((), dtype=x.dtype, device=x.device, requires_grad=True) * 1.0
            return {"loss": zero, "xent": zero.detach(), "labelled": x.new_tensor(0.0), "phase": phase}
        xent = F.cross_entropy(self.logits(xl), yl)
        return {"loss": xent, "xent": xent, "labelled": x.new_tensor(float(yl.numel())), "phase": phase}

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Phase by phase: layer k's reconstruction loss, or the fine-tuning cross-entropy.
        Logged terms: recon (pretraining; per unit), xent and labelled (fine-tuning: the
        number of labelled items in the batch; xent is 0 for a batch without any), and phase
        (1..L while pretraining that layer, L+1 while fine-tuning)."""
        if self.phase < self.layers:
            return self.pretrain_loss(x, self.phase)
        return self.finetune_loss(x, y)

    @torch.no_grad()
    def eval_batch(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per example: accuracy (1 correct, 0 wrong), xent (cross-entropy, nats) -- NaN for an
        unlabelled item (y = -1) -- and the reconstruction metrics of the whole stack
        (encoders up, decoders down)."""
        self._check_labels(y)
        z = self.encode(x)
        logits = self.head(z)
        known = y >= 0
        yc = y.clamp_min(0)
        nan = torch.full_like(logits[:, 0], float("nan"))
        acc = torch.where(known, (logits.argmax(1) == yc).to(x.dtype), nan)
        xent = torch.where(known, F.cross_entropy(logits, yc, reduction="none"), nan)
        raw = self._decode_raw(z).view(-1, *self.shape)
        out = self.recon_metrics(x, self._decoded(0, raw), logits=raw if self.unit_range else None)
        out.update(accuracy=acc, xent=xent)
        return out
