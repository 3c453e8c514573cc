"""Mode coverage of generated samples: from a classifier's predictions (:func:`mode_coverage`),
or from the known means of a mixture of Gaussians (:func:`mixture_mode_coverage`).

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


# Rows per block when measuring sample-to-mean distances (bounds memory to CHUNK * K float64s).
CHUNK = 65536
HISTOGRAMS = ("high_quality", "all")


def mixture_mode_coverage(samples, means, std: float, threshold: float = 3.0,
                          histogram: str = "high_quality") -> dict:
    """Mode coverage of samples from a generator trained on a mixture of K isotropic Gaussians
    with known ``means`` (K, D) and common ``std``, as VEEGAN (Srivastava et al. 2017) and
    PacGAN (Lin et al. 2018) score their 2-D ring and grid experiments.

    Each sample (row of ``samples``, (N, D)) is assigned its nearest mean (Euclidean distance;
    ties go to the lower index). It is *high quality* when that distance is at most
    ``threshold`` standard deviations (``threshold * std``; 3 in both papers). A mode is
    *captured* when at least one high-quality sample has it as nearest mean.

    ``reverse_kl`` is KL(q || p) = sum_k q_k log(q_k K) in nats, where q is the histogram of the
    nearest modes and p the true, uniform distribution over the K modes. The direction is the
    one PacGAN calls reverse: generated distribution first, as its released Stacked-MNIST code
    computes it (``KLD(p_generated, uniform)``). It is 0 for a generator that hits every mode
    equally often, log(K / m) for one that spreads its samples evenly over m modes, and at most
    log K; unlike KL(p || q) it stays finite when modes are missed. Which samples q counts is a
    choice: PacGAN's released 2-D code builds its per-mode histogram from the high-quality
    samples only (a sample farther than 3 std from every mean gets no mode) and scores that
    histogram against the uniform one, so that is the default here; ``histogram="all"``
    counts every sample at its nearest mode instead. With no high-quality samples the default
    histogram is empty and ``reverse_kl`` is defined as log K, the value of total collapse onto
    one mode (never NaN).

    Returns {"modes", "num_modes", "high_quality", "reverse_kl", "max_kl"}: the number of modes
    captured, K, the share of high-quality samples, the reverse KL and its maximum log K.
    """
    x = _as_float64(samples, "samples")
    m = _as_float64(means, "means")
    if m.ndim != 2 or m.shape[0] < 1 or m.shape[1] < 1:
        raise GenlabError(f"mixture mode coverage: means must be a (K, D) array with K >= 1, got shape {m.shape}")
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] != m.shape[1]:
        raise GenlabError(f"mixture mode coverage: samples must be an (N, {m.shape[1]}) array with N >= 1 "
                          f"(the dimension of the means), got shape {x.shape}")
    for a, name in ((x, "samples"), (m, "means")):
        if not np.isfinite(a).all():
            raise GenlabError(f"mixture mode coverage: {name} contain NaN or inf")
    sd, thr = _positive(std, "std"), _positive(threshold, "threshold")
    if histogram not in HISTOGRAMS:
        raise GenlabError(f"mixture mode coverage: histogram must be one of {', '.join(HISTOGRAMS)}, got {histogram!r}")
    k = m.shape[0]
    nearest = np.empty(len(x), dtype=np.int64)
    dist = np.empty(len(x), dtype=np.float64)
    for i in range(0, len(x), CHUNK):
        d2 = ((x[i:i + CHUNK, None, :] - m[None]) ** 2).sum(-1)
        nearest[i:i + CHUNK] = d2.argmin(1)
        dist[i:i + CHUNK] = np.sqrt(d2[np.arange(len(d2)), nearest[i:i + CHUNK]])
    good = dist <= thr * sd
    counts = np.bincount(nearest[good] if histogram == "high_quality" else nearest, minlength=k)
    if counts.sum() == 0:
        kl = math.log(k)
    else:
        q = counts[counts > 0] / counts.sum()
        kl = max(float((q * np.log(q * k)).sum()), 0.0)
    return {"modes": int(np.unique(nearest[good]).size), "num_modes": int(k),
            "high_quality": float(good.mean()), "reverse_kl": kl, "max_kl": math.log(k)}


def _as_float64(a, name: str) -> np.ndarray:
    from .core import _array

    return _array(a, f"mixture mode coverage: {name}")


def _positive(v, name: str) -> float:
    from .core import _positive_float

    return _positive_float(v, f"mixture mode coverage: {name}")


def stacked_mnist_coverage(samples, extractor, threshold: float = 0.9, batch: int = 2000) -> dict:
    """Mode coverage of Stacked-MNIST samples (N, 3, H, W) in [0, 1], the protocol of VEEGAN
    (Srivastava et al. 2017) and PacGAN (Lin et al. 2018): each channel is classified by the
    digit classifier ``extractor`` (e.g. ``get_extractor("mnist-cnn")``), the three predicted
    digits a, b, c name the sample's mode 100 a + 10 b + c, a mode is hit when at least one
    sample has it, and ``kl_to_uniform`` is KL(histogram of the 1000 modes || uniform) in nats,
    the direction of PacGAN's released code (finite when modes are missed; at most log 1000).

    ``high_quality`` is the share of samples whose three channels all get a top probability of
    at least ``threshold``; ``modes_high_quality`` counts the modes hit by those samples alone
    (a stricter count than the papers'). ``channel_kl`` holds the KL to uniform of each
    channel's digit histogram (0 for a generator whose every channel is balanced).

    Returns {"modes", "num_modes", "kl_to_uniform", "high_quality", "modes_high_quality",
    "channel_kl", "n"}."""
    x = samples if isinstance(samples, torch.Tensor) else torch.as_tensor(np.asarray(samples))
    if x.dim() != 4 or x.shape[1] != 3 or x.shape[0] < 1:
        raise GenlabError(f"stacked-MNIST coverage needs (N, 3, H, W) images with N >= 1, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise GenlabError("stacked-MNIST coverage: the samples contain NaN or inf")
    if not 0.0 < threshold < 1.0:
        raise GenlabError(f"stacked-MNIST coverage: threshold must be in (0, 1), got {threshold}")
    x = x.detach().float().cpu()
    n = x.shape[0]
    probs = []
    with torch.no_grad():
        for ch in range(3):
            parts = [extractor.features_and_logits(x[i:i + batch, ch:ch + 1].contiguous())[1].double()
                     for i in range(0, n, batch)]
            probs.append(torch.softmax(torch.cat(parts), 1).numpy())
    pred = np.stack([p.argmax(1) for p in probs], 1)  # (N, 3)
    conf = np.stack([p.max(1) for p in probs], 1)
    modes = 100 * pred[:, 0] + 10 * pred[:, 1] + pred[:, 2]
    good = (conf >= threshold).all(1)

    def kl(labels: np.ndarray, k: int) -> float:
        q = np.bincount(labels, minlength=k).astype(np.float64) / len(labels)
        q = q[q > 0]
        return max(float((q * np.log(q * k)).sum()), 0.0)

    return {"modes": int(np.unique(modes).size), "num_modes": 1000, "kl_to_uniform": kl(modes, 1000),
            "high_quality": float(good.mean()), "modes_high_quality": int(np.unique(modes[good]).size),
            "channel_kl": [kl(pred[:, c], 10) for c in range(3)], "n": int(n)}
