"""In-memory data sets: one tensor per split, batched by indexing.

MNIST-sized data lives as a single uint8 tensor (on the training device once ``to`` is called);
a batch is ``x[idx].float() * scale``. No per-image PIL work happens in the training loop.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
import torch

from ..config import choice, field
from ..errors import ConfigError


@dataclass
class DataConfig:
    """Which data set and how to prepare it (the `data.*` fields of --set)."""

    name: str = field("digits", "registry name, or folder:PATH / npz:PATH")
    root: str = field("", "folder holding MNIST/, FashionMNIST/, cifar-10-batches-py/ (default: $GENLAB_DATA_ROOT or ./data)")
    val_fraction: float = field(0.0, "share of the training split held out for validation (fixed permutation, seed 0)")
    binarize: str = choice("none", ("none", "dynamic", "fixed"), "binarise pixels: none, dynamic (Bernoulli sample per batch; test set sampled once with seed 0), fixed threshold")
    threshold: float = field(0.5, "threshold for binarize=fixed")
    image_size: int = field(32, "side length images from folder:PATH are resized to")
    grayscale: bool = field(False, "folder:PATH images as one channel")
    bad_images: str = choice("fail", ("fail", "skip"), "folder:PATH files that cannot be read (truncated, corrupt, not an image): fail names the first, skip leaves them out with a warning naming each")
    test_fraction: float = field(0.2, "test share for data sets without their own test split (digits, folder:, npz:)")
    limit: int = field(0, "use only the first N training examples (0: all)")
    classes: list[int] = field([], "keep only the examples of these class labels (e.g. [3] or [0,1]) in every split, labels unchanged, after data.limit; empty: all")
    labels_per_class: int = field(0, "keep the labels of only N training examples per class (chosen with seed 0), mark the rest -1 (unlabelled); 0: all labels")
    download: bool = field(False, "allow torchvision to download a missing data set")

    def validate(self) -> None:
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction: expected a value in [0, 1), got {self.val_fraction}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(f"test_fraction: expected a value in (0, 1), got {self.test_fraction}")
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"threshold: expected a value in (0, 1), got {self.threshold}")
        if self.image_size < 4:
            raise ConfigError(f"image_size: expected at least 4, got {self.image_size}")
        if self.labels_per_class < 0:
            raise ConfigError(f"labels_per_class: expected 0 or a positive count, got {self.labels_per_class}")
        if self.limit < 0:
            raise ConfigError(f"limit: expected 0 or a positive count, got {self.limit}")
        if any(c < 0 for c in self.classes):
            raise ConfigError(f"classes: expected non-negative class labels, got {self.classes}")
        if len(set(self.classes)) != len(self.classes):
            raise ConfigError(f"classes: each label at most once, got {self.classes}")

    def resolved_root(self) -> str:
        return self.root or os.environ.get("GENLAB_DATA_ROOT", "") or "data"


@dataclass
class Split:
    x: torch.Tensor  # uint8 (N, C, H, W) images, or float32 (N, D) / (N, C, H, W)
    y: torch.Tensor | None = None  # int64 labels

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, idx: torch.Tensor) -> "Split":
        return Split(self.x[idx], None if self.y is None else self.y[idx])

    def to(self, device: torch.device | str) -> "Split":
        return Split(self.x.to(device), None if self.y is None else self.y.to(device))


@dataclass
class Dataset:
    """A data set in memory. ``scale`` maps stored values to model values (uint8/255 -> [0, 1])."""

    name: str
    train: Split
    test: Split
    scale: float = 1.0 / 255.0
    value_range: tuple[float, float] = (0.0, 1.0)
    classes: list[str] | None = None
    val: Split | None = None
    binarize: str = "none"
    threshold: float = 0.5
    description: str = ""
    _fixed_eval: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    @property
    def num_classes(self) -> int:
        if self.classes:
            return len(self.classes)
        if self.train.y is None:
            return 0
        return int(self.train.y.max().item()) + 1

    def split(self, name: str) -> Split:
        if name == "train":
            return self.train
        if name == "test":
            return self.test
        if name == "val":
            if self.val is None:
                raise ConfigError("data.val_fraction: the run has no validation split; set data.val_fraction > 0")
            return self.val
        raise ConfigError(f"split: expected train, val or test, got {name!r}")

    def to(self, device: torch.device | str) -> "Dataset":
        d = dataclasses.replace(self, train=self.train.to(device), test=self.test.to(device),
                                val=None if self.val is None else self.val.to(device))
        d._fixed_eval = {}
        return d

    # -- turning stored values into model inputs -------------------------------------------
    def as_float(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.scale != 1.0:
            x = x * self.scale
        return x

    def prepare(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        """Stored batch -> model input, with binarisation. Dynamic binarisation draws from the
        global RNG during training (so it is part of the exact-resume state)."""
        x = self.as_float(x)
        if self.binarize == "fixed":
            return (x > self.threshold).to(x.dtype)
        if self.binarize == "dynamic" and train:
            return torch.bernoulli(x)
        return x

    def eval_inputs(self, split: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The whole split as model inputs. With dynamic binarisation the split is sampled once
        with a fixed seed (0), so every evaluation sees the same binary images."""
        s = self.split(split)
        if split not in self._fixed_eval:
            x = self.as_float(s.x)
            if self.binarize == "fixed":
                x = (x > self.threshold).to(x.dtype)
            elif self.binarize == "dynamic":
                g = torch.Generator(device="cpu").manual_seed(0)
                x = torch.bernoulli(x.cpu(), generator=g).to(x.device)
            self._fixed_eval[split] = x
        return self._fixed_eval[split], s.y
