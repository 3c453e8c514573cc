"""2-D toy mixtures of Gaussians for mode-collapse experiments (VEEGAN, Srivastava et al. 2017;
PacGAN, Lin et al. 2018): ``ring8`` and ``grid25``.

Each is an equal-weight mixture of isotropic Gaussians; a point's label is the index of the
component it was drawn from. The splits are drawn once from fixed seeds, so every load gives the
same points. :data:`MIXTURES` holds the parameters, for :func:`genlab.metrics.modes.mixture_mode_coverage`:

    m = MIXTURES["grid25"]
    mixture_mode_coverage(samples, m.means, m.std)
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch

from ..registry import register_dataset
from .base import DataConfig, Dataset, Split

# Split sizes: 100000 training points (PacGAN's num_sample); 2500 test points, the number of
# generated samples PacGAN scores its 2-D metrics on.
N_TRAIN = 100_000
N_TEST = 2_500
SEED = 0  # the train and test splits come from two streams spawned from this seed


@dataclass(frozen=True, eq=False)
class Mixture:
    """Equal-weight mixture of K isotropic Gaussians N(means[k], std^2 I) in D dimensions."""

    means: np.ndarray  # (K, D) float64
    std: float

    @property
    def num_modes(self) -> int:
        return int(self.means.shape[0])

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` points (float32, (n, D)) and their component labels (int64, (n,))."""
        y = rng.integers(0, self.num_modes, size=n, dtype=np.int64)
        x = self.means[y] + self.std * rng.standard_normal((n, self.means.shape[1]))
        return x.astype(np.float32), y


def _ring(k: int, radius: float) -> np.ndarray:
    a = 2 * math.pi * np.arange(k) / k
    return radius * np.stack([np.cos(a), np.sin(a)], 1)


MIXTURES: dict[str, Mixture] = {
    # 8 modes on the unit circle at angles 2*pi*i/8, std 0.01
    "ring8": Mixture(_ring(8, 1.0), 0.01),
    # 25 modes on the grid {-4,-2,0,2,4}^2 (label 5*i + j for the mean (x_i, x_j)), std 0.05
    "grid25": Mixture(np.array(list(itertools.product(range(-4, 5, 2), repeat=2)), dtype=np.float64), 0.05),
}


def load_mixture(name: str) -> Dataset:
    m = MIXTURES[name]
    rng_train, rng_test = (np.random.default_rng(s) for s in np.random.SeedSequence(SEED).spawn(2))
    xtr, ytr = m.sample(N_TRAIN, rng_train)
    xte, yte = m.sample(N_TEST, rng_test)
    return Dataset(
        name=name,
        train=Split(torch.from_numpy(xtr), torch.from_numpy(ytr)),
        test=Split(torch.from_numpy(xte), torch.from_numpy(yte)),
        scale=1.0,
        value_range=(float(xtr.min()), float(xtr.max())),
        classes=[str(k) for k in range(m.num_modes)],
        description=f"{name}: {m.num_modes} Gaussians (std {m.std}) in 2-D, float32 points, label = component",
    )


@register_dataset("ring8", "8 Gaussians (std 0.01) on the unit circle, 2-D points; 100000 train / 2500 test, label = component (VEEGAN/PacGAN 2D-ring)")
def load_ring8(cfg: DataConfig) -> Dataset:
    return load_mixture("ring8")


@register_dataset("grid25", "25 Gaussians (std 0.05) on the grid {-4,-2,0,2,4}^2, 2-D points; 100000 train / 2500 test, label = component (VEEGAN/PacGAN 2D-grid)")
def load_grid25(cfg: DataConfig) -> Dataset:
    return load_mixture("grid25")
