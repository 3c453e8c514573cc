"""Data sets: ``load_data(DataConfig)`` returns an in-memory :class:`Dataset`."""
from __future__ import annotations

import torch

from ..registry import DATASETS
from . import builtin  # noqa: F401  (registers the built-in data sets)
from . import toy  # noqa: F401  (registers the 2-D toy mixtures ring8, grid25)
from . import stacked  # noqa: F401  (registers stacked-mnist)
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


def keep_classes(ds: Dataset, classes: list[int]) -> Dataset:
    """``ds`` with only the examples whose label is in ``classes`` (train, test and val splits;
    labels keep their values, so class 3 stays 3)."""
    from ..errors import ConfigError

    if ds.train.y is None or ds.test.y is None:
        raise ConfigError(f"data.classes: {ds.name} has no labels to filter by")
    present = set(torch.unique(ds.train.y).tolist())
    missing = [c for c in classes if c not in present]
    if missing:
        raise ConfigError(f"data.classes: {ds.name} has no training examples of class {', '.join(map(str, missing))} "
                          f"(labels present: {', '.join(map(str, sorted(present)))})")
    wanted = torch.tensor(classes, dtype=ds.train.y.dtype)

    def pick(s: Split | None) -> Split | None:
        return None if s is None else s.subset(torch.nonzero(torch.isin(s.y, wanted)).flatten())

    ds.train, ds.test, ds.val = pick(ds.train), pick(ds.test), pick(ds.val)
    return ds


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
    if cfg.classes:  # after the limit: the classes of one training set, e.g. one run per class of it
        ds = keep_classes(ds, cfg.classes)
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
