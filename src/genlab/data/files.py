"""Bring your own data: ``folder:PATH`` (one subfolder per class, or a flat folder of images: one
class named after the folder, for unlabelled images such as style-net's content photos) and
``npz:PATH``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .base import DataConfig, Dataset, Split
from .builtin import stratified_split

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def read_square(p: Path, size: int, mode: str) -> np.ndarray:
    """An image file as a uint8 (C, size, size) array: converted to ``mode`` ("L" or "RGB"), the
    short side resized to ``size`` (bilinear), then a centred square cropped. An unreadable file
    raises a DataError naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(p) as im:
            im = im.convert(mode)
            w, h = im.size
            s = size / min(w, h)
            im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR)
            w, h = im.size
            left, top = (w - size) // 2, (h - size) // 2
            a = np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"{p}: cannot read image ({e})") from None
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _read_folder(root: Path, size: int, grayscale: bool, flat_name: str | None = None
                 ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images and labels of ``root``: one class per subfolder; without subfolders, the images
    directly in ``root`` as one class named ``flat_name`` (default: the folder's name)."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    mode = "L" if grayscale else "RGB"
    if not classes:
        files = sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")
                       and p.suffix.lower() in IMAGE_EXTS)
        if not files:
            raise DataError(f"{root}: expected one subfolder per class (e.g. {root}/cats/001.png) or images "
                            "directly in it, found neither")
        return (np.stack([read_square(p, size, mode) for p in files]), np.zeros(len(files), dtype=np.int64),
                [flat_name or root.resolve().name or "images"])
    xs, ys = [], []
    for ci, cname in enumerate(classes):
        files = sorted(p for p in (root / cname).rglob("*") if p.suffix.lower() in IMAGE_EXTS)
        for p in files:
            xs.append(read_square(p, size, mode))
            ys.append(ci)
    if not xs:
        raise DataError(f"{root}: no images ({', '.join(sorted(IMAGE_EXTS))}) in its class subfolders")
    return np.stack(xs), np.asarray(ys, dtype=np.int64), classes


def load_folder(path: str, cfg: DataConfig) -> Dataset:
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"folder:{path}: no such directory")
    if (root / "train").is_dir() and (root / "test").is_dir():
        name = root.resolve().name or "images"  # flat train/ and test/: one class named after the data folder
        xtr, ytr, classes = _read_folder(root / "train", cfg.image_size, cfg.grayscale, name)
        xte, yte, classes_te = _read_folder(root / "test", cfg.image_size, cfg.grayscale, name)
        if classes_te != classes:
            raise DataError(f"{root}: train/ and test/ have different class subfolders ({classes} vs {classes_te})")
    else:
        x, y, classes = _read_folder(root, cfg.image_size, cfg.grayscale)
        tr, te = stratified_split(y, len(y), cfg.test_fraction, where=f"folder:{path}")
        xtr, ytr, xte, yte = x[tr], y[tr], x[te], y[te]
    return Dataset(name=f"folder:{path}", train=Split(torch.from_numpy(xtr), torch.from_numpy(ytr)),
                   test=Split(torch.from_numpy(xte), torch.from_numpy(yte)), classes=classes,
                   description=f"image folder {root}, {cfg.image_size}x{cfg.image_size}")


def _as_images(x: np.ndarray, where: str) -> np.ndarray:
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        if x.shape[1] in (1, 3, 4):
            return x
        if x.shape[3] in (1, 3, 4):
            return x.transpose(0, 3, 1, 2)
        raise DataError(f"{where}: 4-D array of shape {x.shape} is neither N x C x H x W nor N x H x W x C with C in 1, 3, 4")
    if x.ndim == 2:
        return x
    raise DataError(f"{where}: expected 2-D (N x D), 3-D (N x H x W) or 4-D images, got shape {x.shape}")


def open_npz(p: Path, spec: str):
    """An .npz holding an array ``x`` (no pickles), or a DataError naming ``spec``."""
    if not p.is_file():
        raise DataError(f"{spec}: no such file")
    try:
        z = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{spec}: not a readable .npz file ({e})") from None
    if "x" not in z.files:
        raise DataError(f"{spec}: expected an array named 'x' (found: {', '.join(z.files) or 'none'})")
    return z


def load_npz(path: str, cfg: DataConfig) -> Dataset:
    p = Path(path).expanduser()
    z = open_npz(p, f"npz:{path}")
    x = _as_images(z["x"], f"{p}: array 'x'")
    y = z["y"].astype(np.int64) if "y" in z.files else None
    if y is not None and len(y) != len(x):
        raise DataError(f"{p}: array 'y' has {len(y)} entries, 'x' has {len(x)}")
    if "x_test" in z.files:
        xte = _as_images(z["x_test"], f"{p}: array 'x_test'")
        yte = z["y_test"].astype(np.int64) if "y_test" in z.files else None
        xtr, ytr = x, y
    else:
        tr, te = stratified_split(y, len(x), cfg.test_fraction, where=f"npz:{path}")
        xtr, xte = x[tr], x[te]
        ytr, yte = (None, None) if y is None else (y[tr], y[te])
    if x.dtype == np.uint8:
        scale, vr = 1.0 / 255.0, (0.0, 1.0)
    elif np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer):
        xtr, xte = xtr.astype(np.float32), xte.astype(np.float32)
        if not np.isfinite(xtr).all():
            raise DataError(f"{p}: array 'x' holds NaN or infinite values")
        lo, hi = float(xtr.min()), float(xtr.max())
        scale, vr = 1.0, (lo, hi)
    else:
        raise DataError(f"{p}: array 'x' has dtype {x.dtype}; expected uint8, integer or float")
    t = lambda a: None if a is None else torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    return Dataset(name=f"npz:{path}", train=Split(t(xtr), t(ytr)), test=Split(t(xte), t(yte)),
                   scale=scale, value_range=vr, description=f"arrays from {p}")
