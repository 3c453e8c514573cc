"""Evaluation metrics: the statistical core, as pure functions on feature arrays (N, D).

FID, KID, Inception Score, precision/recall/density/coverage and two two-sample tests (MMD with
a permutation p-value, classifier two-sample test). See :mod:`genlab.metrics.core`.
"""
from .core import (
    classifier_two_sample_test,
    feature_stats,
    frechet_distance,
    frechet_distance_from_stats,
    inception_score,
    kernel_inception_distance,
    mmd_test,
    precision_recall_density_coverage,
)
from .extractors import EXTRACTORS, Extractor, get_extractor, list_extractors, register_extractor  # noqa: F401

__all__ = [
    "classifier_two_sample_test",
    "feature_stats",
    "frechet_distance",
    "frechet_distance_from_stats",
    "inception_score",
    "kernel_inception_distance",
    "mmd_test",
    "precision_recall_density_coverage",
]
