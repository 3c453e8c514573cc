"""``stacked-mnist``: three MNIST digits as the red, green and blue channels of one 28x28 image,
1000 modes (Metz et al. 2017; Srivastava et al. 2017 "VEEGAN"; Lin et al. 2018 "PacGAN").

The protocol of those papers: 128000 training images, each channel an MNIST training digit drawn
at random (here from a fixed seed, so every load gives the same images); the label of an image
is its mode ``100 * red digit + 10 * green digit + blue digit``. A generator is scored on 26000
samples: each channel is classified by a digit classifier (genlab's shipped ``mnist-cnn``), the
three predictions name the sample's mode, and the scores are the number of modes hit (of 1000)
and the KL of the mode histogram to the uniform one
(:func:`genlab.metrics.modes.stacked_mnist_coverage`).

The test split is 10000 images stacked the same way from the MNIST test digits.
"""
from __future__ import annotations

import numpy as np
import torch

from ..registry import register_dataset
from .base import DataConfig, Dataset, Split

N_TRAIN = 128_000
N_TEST = 10_000
SEED = 0


def stack_digits(x: np.ndarray, y: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images of three channels, each an independent uniform draw from ``x`` (N, 1, H, W)
    with labels ``y``; returns (n, 3, H, W) uint8 images and their modes 100 a + 10 b + c."""
    idx = rng.integers(0, len(x), size=(n, 3))
    images = x[idx, 0]  # (n, 3, H, W)
    modes = (100 * y[idx[:, 0]] + 10 * y[idx[:, 1]] + y[idx[:, 2]]).astype(np.int64)
    return np.ascontiguousarray(images), modes


@register_dataset("stacked-mnist", "three MNIST digits as RGB channels, 28x28, 1000 modes (label 100r+10g+b); 128000 train / 10000 test, drawn with a fixed seed from DATA_ROOT/MNIST/raw")
def load_stacked_mnist(cfg: DataConfig) -> Dataset:
    from .builtin import load_mnist

    m = load_mnist(cfg)
    rng_train, rng_test = (np.random.default_rng(s) for s in np.random.SeedSequence(SEED).spawn(2))
    n_train = cfg.limit if cfg.limit and cfg.limit < N_TRAIN else N_TRAIN  # don't build what data.limit drops
    xtr, ytr = stack_digits(m.train.x.numpy(), m.train.y.numpy(), n_train, rng_train)
    xte, yte = stack_digits(m.test.x.numpy(), m.test.y.numpy(), N_TEST, rng_test)
    return Dataset(
        name="stacked-mnist",
        train=Split(torch.from_numpy(xtr), torch.from_numpy(ytr)),
        test=Split(torch.from_numpy(xte), torch.from_numpy(yte)),
        classes=[f"{k:03d}" for k in range(1000)],
        description="stacked MNIST: 3 MNIST digits as RGB channels, 28x28, uint8 scaled to [0, 1], 1000 modes",
    )
