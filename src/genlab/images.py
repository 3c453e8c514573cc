"""Image grids and sample files."""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch

from .io import atomic_write, atomic_write_bytes


def to_unit(x: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    lo, hi = value_range
    if (lo, hi) == (0.0, 1.0):
        return x.clamp(0, 1)
    return ((x - lo) / max(hi - lo, 1e-12)).clamp(0, 1)


def to_mode(im, mode: str):
    """``im`` converted to ``mode`` ("L" or "RGB") as PIL converts it (RGBA and LA lose their
    alpha, P maps through its palette, CMYK is inverted), except that 16-bit grey ("I;16",
    "I;16B", ...) and 32-bit integer ("I") images are first scaled from 0..65535 to 0..255:
    PIL's own conversion clips them at 255, which turns most 16-bit images white."""
    from PIL import Image

    if im.mode == "I" or im.mode.startswith("I;16"):
        a = np.asarray(im).astype(np.float64)
        im = Image.fromarray(np.rint(np.clip(a, 0, 65535) / 257.0).astype(np.uint8))
    return im.convert(mode)


def pil_to_chw(im, mode: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """A PIL image as a uint8 (C, H, W) array in ``mode`` ("L" or "RGB"), resized (bilinear) to
    ``size`` = (width, height) when given and different."""
    from PIL import Image

    im = to_mode(im, mode)
    if size is not None and im.size != tuple(size):
        im = im.resize(tuple(size), Image.BILINEAR)
    a = np.asarray(im, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def grid_png(x: torch.Tensor, nrow: int | None = None, value_range=(0.0, 1.0), upscale: int = 0) -> bytes:
    """A PNG of a grid of images (N, C, H, W). Small images (digits are 8x8) are enlarged with
    nearest-neighbour so the grid is readable."""
    from PIL import Image
    from torchvision.utils import make_grid

    x = to_unit(x.detach().float().cpu(), value_range)
    nrow = nrow or max(1, int(math.ceil(math.sqrt(x.shape[0]))))
    g = make_grid(x, nrow=nrow, padding=1, pad_value=1.0)
    arr = (g.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    if arr.shape[2] == 1:
        arr = arr[:, :, 0]
    img = Image.fromarray(arr)
    if not upscale:
        upscale = max(1, 4 if x.shape[-1] <= 16 else 2 if x.shape[-1] <= 32 else 1)
    if upscale > 1:
        img = img.resize((img.width * upscale, img.height * upscale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def save_grid(path, x, nrow=None, value_range=(0.0, 1.0)) -> None:
    atomic_write_bytes(path, grid_png(x, nrow, value_range))


def save_npz(path, **arrays) -> None:
    atomic_write(Path(path), lambda f: np.savez_compressed(f, **arrays))
