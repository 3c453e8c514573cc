"""Data sets: ``load_data(DataConfig)`` returns an in-memory :class:`Dataset`."""
from __future__ import annotations

import torch

from ..registry import DATASETS
from . import builtin  # noqa: F401  (registers the built-in data sets)
from .base import DataConfig, Dataset, Split
from .files import load_folder, load_npz

__all__ = ["DataConfig", "Dataset", "Split", "load_data", "DATASETS"]


def keep_labels(y: torch.Tensor | None, per_class: int, name: str) -> torch.Tensor:
    """Labels with all but ``per_class`` examples of each class set to -1 (a fixed choice, seed 0)."""
    from ..errors import ConfigError

    if y is None:
        raise ConfigError(f"data.labels_per_class: {name} has no labels")
    g = torch.Generator().manual_seed(0)
    out = torch.full_like(y, -1)
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        if len(idx) < per_class:
            raise ConfigError(f"data.labels_per_class: class {c} of {name} has {len(idx)} training examples, fewer than {per_class}")
        pick = idx[torch.randperm(len(idx), generator=g)[:per_class]]
        out[pick] = c
    return out


def load_data(cfg: DataConfig) -> Dataset:
    name = cfg.name
    if name.startswith("folder:"):
        ds = load_folder(name[len("folder:"):], cfg)
    elif name.startswith("npz:"):
        ds = load_npz(name[len("npz:"):], cfg)
    else:
        ds = DATASETS.get(name)(cfg)
    if cfg.limit:
        ds.train = ds.train.subset(torch.arange(min(cfg.limit, len(ds.train))))
    if cfg.val_fraction > 0:
        n = len(ds.train)
        n_val = max(1, int(round(n * cfg.val_fraction)))
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
        ds.val = ds.train.subset(perm[:n_val].sort().values)
        ds.train = ds.train.subset(perm[n_val:].sort().values)
    if cfg.labels_per_class:
        ds.train = Split(ds.train.x, keep_labels(ds.train.y, cfg.labels_per_class, ds.name))
    ds.binarize = cfg.binarize
    ds.threshold = cfg.threshold
    if cfg.binarize != "none" and ds.value_range != (0.0, 1.0):
        from ..errors import ConfigError

        raise ConfigError(f"data.binarize: {ds.name} has values in {ds.value_range}, binarisation needs [0, 1]")
    return ds
