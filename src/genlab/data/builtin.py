"""Built-in data sets: digits (embedded), MNIST, Fashion-MNIST, CIFAR-10."""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ..registry import register_dataset
from .base import DataConfig, Dataset, Split


def stratified_split(y: np.ndarray | None, n: int, test_fraction: float, seed: int = 0, where: str = "data"):
    """Deterministic (train_idx, test_idx); stratified by label when every class can be."""
    from sklearn.model_selection import train_test_split

    if n < 2:
        raise DataError(f"{where}: expected at least 2 examples to make a train and a test split, found {n}")
    n_test = int(np.ceil(n * test_fraction))
    if n_test >= n:
        raise DataError(f"{where}: data.test_fraction={test_fraction} of {n} examples leaves no training examples")
    idx = np.arange(n)
    counts = np.unique(y, return_counts=True)[1] if y is not None else None
    strat = y if counts is not None and len(counts) > 1 and counts.min() >= 2 else None
    try:
        tr, te = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=strat)
    except ValueError:  # too few test examples to hold every class: split without strata
        tr, te = train_test_split(idx, test_size=test_fraction, random_state=seed)
    return np.sort(tr), np.sort(te)


@register_dataset("digits", "scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes); embedded, no file needed")
def load_digits(cfg: DataConfig) -> Dataset:
    from sklearn.datasets import load_digits as _load

    d = _load()
    x = d.images.astype(np.uint8)[:, None]  # (1797, 1, 8, 8), values 0..16
    y = d.target.astype(np.int64)
    tr, te = stratified_split(y, len(y), cfg.test_fraction)
    return Dataset(
        name="digits",
        train=Split(torch.from_numpy(x[tr]), torch.from_numpy(y[tr])),
        test=Split(torch.from_numpy(x[te]), torch.from_numpy(y[te])),
        scale=1.0 / 16.0,
        classes=[str(i) for i in range(10)],
        description="sklearn digits, 8x8, values 0..16 scaled to [0, 1]",
    )


# --- MNIST-style IDX files --------------------------------------------------------------
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find(raw: Path, stem: str) -> Path | None:
    for cand in (raw / stem, raw / (stem + ".gz")):
        if cand.is_file():
            return cand
    return None


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) as a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read IDX file ({e})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"{path}: expected {int(np.prod(dims))} values for shape {dims}, found {body.size} (truncated file?)")
    return body.reshape(dims)


def _check_root(root: Path, name: str, inside: str, cfg: DataConfig) -> None:
    """A data root that does not exist is named as such (not as a list of missing files)."""
    if not cfg.download and not root.is_dir():
        source = ("--data-root" if cfg.root else "$GENLAB_DATA_ROOT" if os.environ.get("GENLAB_DATA_ROOT")
                  else "the default ./data")
        raise DataError(f"{name}: data root {root} ({source}) is not a folder; point --data-root at the folder "
                        f"that holds {inside}, or pass --download")


def _load_idx_dataset(cfg: DataConfig, name: str, folder: str, tv_class: str, classes: list[str]) -> Dataset:
    root = Path(cfg.resolved_root()).expanduser()
    raw = root / folder / "raw"
    _check_root(root, name, f"{folder}/raw", cfg)
    stems = [s for pair in _IDX_FILES.values() for s in pair]
    missing = [s for s in stems if _find(raw, s) is None]
    if missing and cfg.download:
        import torchvision

        getattr(torchvision.datasets, tv_class)(str(root), train=True, download=True)
        getattr(torchvision.datasets, tv_class)(str(root), train=False, download=True)
        missing = [s for s in stems if _find(raw, s) is None]
    if missing:
        raise DataError(
            f"{name}: missing {', '.join(m + '[.gz]' for m in missing)} in {raw} "
            f"(set --data-root to the folder that holds {folder}/raw, or pass --download)"
        )
    splits = {}
    for split, (img, lab) in _IDX_FILES.items():
        x = read_idx(_find(raw, img))
        y = read_idx(_find(raw, lab)).astype(np.int64)
        if x.ndim != 3 or len(x) != len(y):
            raise DataError(f"{raw / img}: expected N x H x W images matching {len(y)} labels, got shape {x.shape}")
        splits[split] = Split(torch.from_numpy(x.copy())[:, None], torch.from_numpy(y))
    return Dataset(name=name, train=splits["train"], test=splits["test"], classes=classes,
                   description=f"{name} 28x28 grey, uint8 scaled to [0, 1]")


@register_dataset("mnist", "MNIST handwritten digits, 28x28, 60000 train / 10000 test (IDX files under DATA_ROOT/MNIST/raw)")
def load_mnist(cfg: DataConfig) -> Dataset:
    return _load_idx_dataset(cfg, "mnist", "MNIST", "MNIST", [str(i) for i in range(10)])


@register_dataset("fashion-mnist", "Fashion-MNIST clothing images, 28x28, 60000 / 10000 (DATA_ROOT/FashionMNIST/raw)")
def load_fashion(cfg: DataConfig) -> Dataset:
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    return _load_idx_dataset(cfg, "fashion-mnist", "FashionMNIST", "FashionMNIST", classes)


@register_dataset("cifar10", "CIFAR-10 colour images, 32x32, 50000 / 10000 (DATA_ROOT/cifar-10-batches-py, torchvision's layout)")
def load_cifar10(cfg: DataConfig) -> Dataset:
    import torchvision

    root = Path(cfg.resolved_root()).expanduser()
    folder = root / "cifar-10-batches-py"
    _check_root(root, "cifar10", "cifar-10-batches-py", cfg)
    needed = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]
    missing = [f for f in needed if not (folder / f).is_file()]
    if missing and not cfg.download:
        raise DataError(f"cifar10: missing {', '.join(missing)} in {folder} (set --data-root, or pass --download)")
    splits = {}
    for split in ("train", "test"):
        try:
            ds = torchvision.datasets.CIFAR10(str(root), train=split == "train", download=cfg.download)
        except RuntimeError as e:
            raise DataError(f"cifar10: {e} (looked in {folder})") from None
        x = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
        splits[split] = Split(x, torch.tensor(ds.targets, dtype=torch.int64))
    return Dataset(name="cifar10", train=splits["train"], test=splits["test"], classes=list(ds.classes),
                   description="CIFAR-10 32x32 RGB, uint8 scaled to [0, 1]")
