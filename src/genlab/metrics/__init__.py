"""Evaluation metrics.

- :mod:`genlab.metrics.core`: FID, KID, Inception Score, precision/recall/density/coverage and two
  two-sample tests (MMD with a permutation p-value, classifier two-sample test), as pure
  functions on feature arrays (N, D).
- :mod:`genlab.metrics.image`: SSIM per image pair.
- :mod:`genlab.metrics.extractors`: the feature-extractor registry; :mod:`genlab.metrics.api`:
  :func:`compute_metrics` on sources (runs, folders, .npz files, data sets).

The names below load their module on first use (PEP 562), so importing one metric does not pay
for scipy and torchvision.
"""
from __future__ import annotations

import importlib

_LAZY = {
    **{name: "core" for name in (
        "classifier_two_sample_test", "feature_stats", "frechet_distance", "frechet_distance_from_stats",
        "inception_score", "kernel_inception_distance", "mmd_test", "precision_recall_density_coverage",
    )},
    **{name: "extractors" for name in (
        "EXTRACTORS", "Extractor", "get_extractor", "list_extractors", "register_extractor",
    )},
    "ssim": "image",
    "compute_metrics": "api",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
