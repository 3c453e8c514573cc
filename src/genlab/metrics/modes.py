"""Mode coverage from a classifier's predictions on generated samples.

Following the Stacked-MNIST protocol of the mode-collapse literature (Metz et al. 2017,
Srivastava et al. 2017 "VEEGAN", Lin et al. 2018 "PacGAN"): each sample is assigned the mode
(class) its classifier predicts; a sample is "high quality" when the classifier's top
probability is at least ``threshold``; the modes hit are the classes with at least one
high-quality sample; the histogram of predicted modes is compared with the uniform
distribution by KL(histogram || uniform) in nats (0 when every mode is equally frequent,
log(C) when all samples fall in one mode).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import GenlabError


def mode_coverage(logits, threshold: float = 0.9, num_modes: int | None = None) -> dict:
    """Returns {"modes_hit", "num_modes", "high_quality", "kl_to_uniform"} for (N, C) logits."""
    if isinstance(logits, torch.Tensor):
        logits = logits.detach().to("cpu", torch.float64).numpy()
    a = np.asarray(logits, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 2:
        raise GenlabError(f"mode coverage needs (N, C) classifier logits with N >= 1, C >= 2; got shape {a.shape}")
    if not np.isfinite(a).all():
        raise GenlabError("mode coverage: the logits contain NaN or inf")
    if not 0.0 < threshold < 1.0:
        raise GenlabError(f"mode coverage: threshold must be in (0, 1), got {threshold}")
    c = num_modes or a.shape[1]
    p = np.exp(a - a.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    pred, conf = p.argmax(1), p.max(1)
    good = conf >= threshold
    hist = np.bincount(pred, minlength=c).astype(np.float64) / len(pred)
    nz = hist > 0
    kl = float((hist[nz] * np.log(hist[nz] * c)).sum())
    return {"modes_hit": int(np.unique(pred[good]).size), "num_modes": int(c),
            "high_quality": float(good.mean()), "kl_to_uniform": max(kl, 0.0),
            "max_kl": math.log(c)}
