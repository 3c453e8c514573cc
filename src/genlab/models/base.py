"""The model interface the engine drives. A model owns its objective: ``loss(x)`` returns a dict
of batch-mean terms whose ``"loss"`` entry is minimised; the engine never knows which kind of
model it trains."""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .. import losses
from ..config import from_dict
from ..errors import ConfigError, GenlabError
from ..metrics.image import ssim
from ..registry import MODELS


class GenModel(nn.Module):
    Config: type = None  # the model's config dataclass
    name: str = ""
    generative: bool = False

    def __init__(self, config: Any, shape: tuple[int, ...], value_range: tuple[float, float] = (0.0, 1.0)):
        super().__init__()
        self.config = config
        self.shape = tuple(int(s) for s in shape)
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.dim = int(math.prod(self.shape))

    @property
    def unit_range(self) -> bool:
        """Data in [0, 1]: decoders output logits and a sigmoid maps them to pixel values."""
        return self.value_range[0] >= 0.0 and self.value_range[1] <= 1.0

    # --- what every model provides -------------------------------------------------------
    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise GenlabError(f"{self.name} has no encoder")

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        raise GenlabError(f"{self.name} has no decoder")

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        raise GenlabError(f"{self.name} is not a generative model: it cannot sample (try vae or conv-vae)")

    @torch.no_grad()
    def eval_batch(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-example evaluation values for a batch; ``evaluate`` averages them over a split."""
        return self.recon_metrics(x, self.reconstruct(x))

    def recon_metrics(self, x: torch.Tensor, recon: torch.Tensor, logits: torch.Tensor | None = None) -> dict:
        """mse: squared error per pixel; sse: squared error summed over pixels; bce: binary
        cross-entropy summed over pixels (data in [0, 1] only; from ``logits`` when the
        reconstruction is their sigmoid, else from the clamped reconstruction); psnr:
        10 log10(range^2 / mse) per image, range = the data set's value range; ssim: structural
        similarity per image (:func:`genlab.metrics.image.ssim`, 11x11 Gaussian window), only for
        images of at least 11x11 pixels, on values shifted to [0, range] (SSIM's luminance term
        assumes non-negative intensities; data in [-1, 1] is scored as in [0, 2])."""
        sse = losses.sse(recon, x)
        out = {"sse": sse, "mse": sse / self.dim}
        if logits is not None:
            out["bce"] = losses.bernoulli_nll(logits, x)
        elif self.unit_range:
            p = recon.clamp(1e-7, 1 - 1e-7)
            out["bce"] = -losses.flat(x * p.log() + (1 - x) * (1 - p).log()).sum(1)
        rng = self.value_range[1] - self.value_range[0]
        out["psnr"] = 10.0 * torch.log10(rng * rng / out["mse"].clamp_min(1e-10))
        if len(self.shape) == 3 and min(self.shape[1:]) >= 11:
            lo = self.value_range[0]
            out["ssim"] = ssim(recon.reshape(-1, *self.shape) - lo, x.reshape(-1, *self.shape) - lo, data_range=rng)
        return out

    def extra_repr(self) -> str:
        return f"data shape={self.shape}"


def model_config_class(name: str) -> type:
    return MODELS.get(name).Config


def create_model(name: str, shape: tuple[int, ...] = (1, 28, 28), value_range=(0.0, 1.0), **config: Any) -> GenModel:
    """Build a registered model: ``create_model("vae", shape=(1, 28, 28), latent=20)``."""
    cls = MODELS.get(name)
    cfg = from_dict(cls.Config, config, where=f"model {name}")
    return cls(cfg, shape, value_range)


def check_unit_range(model: GenModel, what: str) -> None:
    if not model.unit_range:
        raise ConfigError(
            f"{what}: needs data in [0, 1], the data set's values span {model.value_range}; use a gaussian/mse setting"
        )
