"""Where images for a metric come from: ``genlab metrics --real SRC --fake SRC``.

SRC is one of
- a run directory (it holds config.json): ``n`` samples are drawn from the model with ``seed``;
- a data set with its split, ``NAME:SPLIT`` (``mnist:test``, ``fashion-mnist:train``,
  ``digits:test``), read from ``data_root``;
- an ``.npz`` file with array ``x`` (N x C x H x W or N x H x W; uint8 is divided by 255,
  floats must already be in [0, 1]), as ``genlab sample --out FILE.npz`` writes;
- a folder of images (PNG, JPEG, ...), directly inside it or in class subfolders.

Every source gives a float tensor (N, C, H, W) in [0, 1] (or (N, D) vectors); when it holds
more than ``n`` images a fixed random subset of ``n`` (numpy seed ``seed``) is used.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import DataError, GenlabError


def _subset(x: torch.Tensor, n: int | None, seed: int) -> torch.Tensor:
    if n is None or x.shape[0] <= n:
        return x
    idx = np.sort(np.random.default_rng(seed).choice(x.shape[0], n, replace=False))
    return x[torch.from_numpy(idx)]


def _from_array(a: np.ndarray, where: str) -> torch.Tensor:
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim == 4 and a.shape[1] not in (1, 3) and a.shape[3] in (1, 3):
        a = a.transpose(0, 3, 1, 2)
    if a.ndim not in (2, 4):
        raise DataError(f"{where}: expected N x C x H x W images (or N x H x W, N x D), got shape {a.shape}")
    if a.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(a)).float() / 255.0
    x = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    if not torch.isfinite(x).all():
        raise DataError(f"{where}: holds NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise DataError(f"{where}: float values span [{lo:.3g}, {hi:.3g}]; expected images in [0, 1] (or uint8)")
    return x.clamp(0, 1)


def _read_images(folder: Path, image_size: int | None) -> torch.Tensor:
    from ..data.files import IMAGE_EXTS, open_image

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())
    if not files:
        raise DataError(f"{folder}: no images ({', '.join(sorted(IMAGE_EXTS))}) in it or its subfolders")
    arrays, sizes, modes = [], set(), set()
    for p in files:
        im = open_image(p, None)  # grey files stay grey
        modes.add(im.mode)
        arrays.append(im)
        sizes.add(im.size)
    mode = "L" if modes == {"L"} else "RGB"
    if image_size is None and len(sizes) > 1:
        raise DataError(f"{folder}: images have {len(sizes)} different sizes (e.g. {sorted(sizes)[:2]}); pass --image-size")
    from ..images import pil_to_chw

    size = None if image_size is None else (image_size, image_size)
    out = [pil_to_chw(im, mode, size) for im in arrays]
    return torch.from_numpy(np.stack(out)).float() / 255.0


def load_source(spec: str, n: int | None = None, seed: int = 0, data_root: str | None = None,
                image_size: int | None = None) -> tuple[torch.Tensor, dict]:
    """(images in [0, 1], info) for a source spec; info names what was read."""
    p = Path(spec).expanduser()
    if p.is_dir() and (p / "config.json").is_file():
        from ..run import load_run

        run = load_run(p)
        if not getattr(run.model, "generative", False):
            raise GenlabError(f"{spec}: a {run.model_name} run cannot sample; use a generative run, images or a data set")
        count = n or 10000
        with torch.no_grad():
            x = torch.cat([run.sample(min(1000, count - i), seed=seed + i) for i in range(0, count, 1000)])
        lo, hi = map(float, run.config["value_range"])
        if (lo, hi) != (0.0, 1.0):
            x = (x - lo) / (hi - lo)
        return x.clamp(0, 1), {"kind": "run", "path": str(p), "model": run.model_name, "data": run.data_config.name}
    if p.is_dir():
        return _subset(_read_images(p, image_size), n, seed), {"kind": "folder", "path": str(p)}
    if p.suffix == ".npz":
        from ..data.files import npz_array, open_npz

        z = open_npz(p, spec)
        return _subset(_from_array(npz_array(z, "x", spec), f"{spec}: array 'x'"), n, seed), {"kind": "npz", "path": str(p)}
    if ":" in spec and not p.exists():
        name, _, split = spec.rpartition(":")
        if split not in ("train", "test"):
            raise GenlabError(f"{spec}: expected NAME:SPLIT with SPLIT train or test (e.g. mnist:test)")
        from ..data import DataConfig, load_data

        cfg = DataConfig(name=name, root=data_root or "")
        ds = load_data(cfg)
        x = ds.as_float(ds.split(split).x)
        lo, hi = ds.value_range
        if (lo, hi) != (0.0, 1.0):
            x = ((x - lo) / (hi - lo)).clamp(0, 1)
        return _subset(x, n, seed), {"kind": "dataset", "name": name, "split": split}
    raise GenlabError(f"{spec}: not a run directory, image folder, .npz file or NAME:SPLIT data set (e.g. mnist:test)")
