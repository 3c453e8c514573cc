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


def open_image(p: Path, mode: str | None):
    """The image file ``p`` decoded in full and converted to ``mode`` ("L" or "RGB"; see
    :func:`genlab.images.to_mode`; None: "L" for grey files, 1-bit to 16-bit, else "RGB"), as a
    PIL image; otherwise a DataError naming the file and why: missing, a folder, not an image,
    truncated or corrupt, too large, or of a mode that cannot be converted. A truncated file is
    never padded with grey (PIL's LOAD_TRUNCATED_IMAGES stays False)."""
    import warnings

    from PIL import Image

    with warnings.catch_warnings():  # PIL's UserWarnings (corrupt EXIF, ...): the file loads or is an error
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return _open_image(p, mode)


def _truncated(e: Exception) -> bool:
    return isinstance(e, EOFError) or "truncat" in str(e).lower()


def _open_image(p: Path, mode: str | None):
    from PIL import Image, UnidentifiedImageError

    from ..images import to_mode

    try:
        im = Image.open(p)
    except FileNotFoundError:
        raise DataError(f"{p}: no such image file") from None
    except IsADirectoryError:
        raise DataError(f"{p}: a folder, not an image file") from None
    except UnidentifiedImageError:
        raise DataError(f"{p}: not an image (no format the image library reads)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataError(f"{p}: image too large ({e})") from None
    except Exception as e:  # PermissionError, a header cut short or broken (SyntaxError, struct.error, ...)
        what = "truncated image" if _truncated(e) else "cannot read image"
        raise DataError(f"{p}: {what} ({type(e).__name__}: {e})") from None
    with im:
        try:
            im.load()  # decode now: a truncated file fails here, not later
        except Exception as e:  # OSError "image file is truncated", SyntaxError "broken PNG file", EOFError, ...
            what = "truncated image" if _truncated(e) else "corrupt image"
            raise DataError(f"{p}: {what} ({type(e).__name__}: {e})") from None
        if mode is None:
            mode = "L" if im.mode in ("1", "L", "I") or im.mode.startswith("I;16") else "RGB"
        try:
            return to_mode(im, mode)
        except Exception as e:  # e.g. LAB has no conversion to RGB
            raise DataError(f"{p}: cannot convert an image of mode {im.mode} to {mode} ({e})") from None


def read_square(p: Path, size: int, mode: str) -> np.ndarray:
    """An image file as a uint8 (C, size, size) array: converted to ``mode`` ("L" or "RGB"), the
    short side resized to ``size`` (bilinear), then a centred square cropped. An unreadable file
    raises a DataError naming it (see :func:`open_image`)."""
    from PIL import Image

    im = open_image(p, mode)
    w, h = im.size
    s = size / min(w, h)
    im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR)
    w, h = im.size
    left, top = (w - size) // 2, (h - size) // 2
    a = np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _image_files(folder: Path, recursive: bool) -> list[Path]:
    """The image files of ``folder`` (by extension; hidden files such as macOS's ``._x.png`` left out)."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")
                  and p.is_file())


def _read_files(files: list[Path], size: int, mode: str, bad_images: str, skipped: list[tuple[Path, str]]
                ) -> list[np.ndarray]:
    out = []
    for p in files:
        try:
            out.append(read_square(p, size, mode))
        except DataError as e:
            if bad_images != "skip":
                raise DataError(f"{e} (data.bad_images=skip leaves unreadable images out)") from None
            reason = str(e).removeprefix(f"{p}: ").split(" (")[0]  # "truncated image", "not an image", ...
            skipped.append((p, reason))
    return out


def _read_folder(root: Path, size: int, grayscale: bool, flat_name: str | None = None,
                 bad_images: str = "fail", skipped: list[tuple[Path, str]] | None = None
                 ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images and labels of ``root``: one class per subfolder; without subfolders, the images
    directly in ``root`` as one class named ``flat_name`` (default: the folder's name). An
    unreadable image raises a DataError naming it, or with ``bad_images="skip"`` is left out and
    appended to ``skipped`` as (path, reason). A class subfolder without images is a DataError."""
    skipped = [] if skipped is None else skipped
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    mode = "L" if grayscale else "RGB"
    if not classes:
        files = _image_files(root, recursive=False)
        if not files:
            raise DataError(f"{root}: expected one subfolder per class (e.g. {root}/cats/001.png) or images "
                            "directly in it, found neither")
        xs = _read_files(files, size, mode, bad_images, skipped)
        if not xs:
            raise DataError(f"{root}: none of its {len(files)} image files could be read (e.g. {skipped[0][0]}: {skipped[0][1]})")
        return np.stack(xs), np.zeros(len(xs), dtype=np.int64), [flat_name or root.resolve().name or "images"]
    xs, ys = [], []
    for ci, cname in enumerate(classes):
        files = _image_files(root / cname, recursive=True)
        if not files:  # a class without examples; dropping it instead would shift the labels after it
            raise DataError(f"{root / cname}: class folder without images ({', '.join(sorted(IMAGE_EXTS))}); "
                            "add images or remove the folder")
        got = _read_files(files, size, mode, bad_images, skipped)
        if not got:
            raise DataError(f"{root / cname}: none of the class's {len(files)} image files could be read "
                            f"(e.g. {skipped[-1][0].name}: {skipped[-1][1]})")
        xs += got
        ys += [ci] * len(got)
    return np.stack(xs), np.asarray(ys, dtype=np.int64), classes


def _warn_skipped(spec: str, skipped: list[tuple[Path, str]]) -> None:
    if skipped:
        import sys

        names = ", ".join(f"{p} ({reason})" for p, reason in skipped)
        print(f"genlab: warning: {spec}: skipped {len(skipped)} unreadable image file"
              f"{'s' if len(skipped) > 1 else ''} (data.bad_images=skip): {names}", file=sys.stderr)


def load_folder(path: str, cfg: DataConfig) -> Dataset:
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"folder:{path}: no such directory")
    skipped: list[tuple[Path, str]] = []
    if (root / "train").is_dir() and (root / "test").is_dir():
        name = root.resolve().name or "images"  # flat train/ and test/: one class named after the data folder
        xtr, ytr, classes = _read_folder(root / "train", cfg.image_size, cfg.grayscale, name, cfg.bad_images, skipped)
        xte, yte, classes_te = _read_folder(root / "test", cfg.image_size, cfg.grayscale, name, cfg.bad_images, skipped)
        if classes_te != classes:
            raise DataError(f"{root}: train/ and test/ have different class subfolders ({classes} vs {classes_te})")
        _warn_skipped(f"folder:{path}", skipped)
    else:
        x, y, classes = _read_folder(root, cfg.image_size, cfg.grayscale, None, cfg.bad_images, skipped)
        _warn_skipped(f"folder:{path}", skipped)
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
    """An .npz holding an array ``x`` (no pickles), or a DataError naming ``spec``. Read its
    arrays with :func:`npz_array`."""
    if not p.is_file():
        raise DataError(f"{spec}: no such file")
    try:
        z = np.load(p, allow_pickle=False)
    except Exception as e:  # OSError, ValueError (a pickle), zipfile.BadZipFile, EOFError, ...
        raise DataError(f"{spec}: not a readable .npz file ({type(e).__name__}: {e})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise DataError(f"{spec}: a single .npy array, not an .npz archive; save it with np.savez(FILE, x=array)")
    if "x" not in z.files:
        raise DataError(f"{spec}: expected an array named 'x' (found: {', '.join(z.files) or 'none'})")
    return z


def npz_array(z, name: str, spec: str) -> np.ndarray:
    """Array ``name`` of an opened .npz, or a DataError naming it: an array of Python objects is
    refused (reading it would unpickle), as is a damaged member."""
    try:
        return z[name]
    except ValueError as e:
        if "allow_pickle" in str(e) or "pickle" in str(e):
            raise DataError(f"{spec}: array {name!r} holds Python objects (dtype object); genlab reads numeric "
                            "arrays only and never unpickles") from None
        raise DataError(f"{spec}: array {name!r} cannot be read ({e})") from None
    except Exception as e:  # a damaged zip member: BadZipFile, zlib.error, EOFError, ...
        raise DataError(f"{spec}: array {name!r} cannot be read ({type(e).__name__}: {e})") from None


def _check_numeric(a: np.ndarray, where: str) -> None:
    if a.dtype == np.bool_ or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise DataError(f"{where} has dtype {a.dtype}; expected uint8, integer or float")


def _labels(a: np.ndarray, n: int, where: str, of: str) -> np.ndarray:
    """Class labels: a 1-D array of ``n`` non-negative whole numbers."""
    if a.ndim != 1:
        raise DataError(f"{where} has shape {a.shape}; expected one label per row of {of}, shape ({n},)")
    if len(a) != n:
        raise DataError(f"{where} has {len(a)} entries, {of} has {n}")
    _check_numeric(a, where)
    if np.issubdtype(a.dtype, np.floating) and not (np.isfinite(a).all() and (a == np.round(a)).all()):
        raise DataError(f"{where}: expected whole-number class labels, found fractions, NaN or infinities")
    if len(a) and (a.min() < 0 or a.max() >= 2**31):
        raise DataError(f"{where}: expected class labels 0, 1, 2, ..., found values from {a.min()} to {a.max()}")
    return a.astype(np.int64)


def load_npz(path: str, cfg: DataConfig) -> Dataset:
    p = Path(path).expanduser()
    spec = f"npz:{path}"
    z = open_npz(p, spec)

    def images(name: str) -> np.ndarray:
        a = npz_array(z, name, spec)
        _check_numeric(a, f"{p}: array {name!r}")
        a = _as_images(a, f"{p}: array {name!r}")
        if 0 in a.shape[1:]:
            raise DataError(f"{p}: array {name!r} has shape {a.shape}; an example cannot be empty")
        return a

    x = images("x")
    y = _labels(npz_array(z, "y", spec), len(x), f"{p}: array 'y'", "'x'") if "y" in z.files else None
    if "y_test" in z.files and "x_test" not in z.files:
        raise DataError(f"{p}: array 'y_test' without 'x_test'; save the test images as x_test, or drop y_test")
    if "x_test" in z.files:
        xte = images("x_test")
        if xte.shape[1:] != x.shape[1:]:
            raise DataError(f"{p}: array 'x_test' holds examples of shape {xte.shape[1:]}, 'x' of shape {x.shape[1:]}")
        if (xte.dtype == np.uint8) != (x.dtype == np.uint8):
            raise DataError(f"{p}: array 'x_test' has dtype {xte.dtype}, 'x' {x.dtype}; both uint8 (0..255) or "
                            "neither, so that both are scaled alike")
        yte = (_labels(npz_array(z, "y_test", spec), len(xte), f"{p}: array 'y_test'", "'x_test'")
               if "y_test" in z.files else None)
        for name, a in (("x", x), ("x_test", xte)):
            if len(a) == 0:
                raise DataError(f"{p}: array {name!r} holds no examples")
        xtr, ytr = x, y
    else:
        tr, te = stratified_split(y, len(x), cfg.test_fraction, where=spec)
        xtr, xte = x[tr], x[te]
        ytr, yte = (None, None) if y is None else (y[tr], y[te])
    if x.dtype == np.uint8:
        scale, vr = 1.0 / 255.0, (0.0, 1.0)
    else:
        with np.errstate(over="ignore", invalid="ignore"):  # beyond float32's range -> inf, refused below
            xtr, xte = xtr.astype(np.float32), xte.astype(np.float32)
        for name, a in (("x", xtr), ("x_test" if "x_test" in z.files else "x", xte)):
            if not np.isfinite(a).all():
                raise DataError(f"{p}: array {name!r} holds NaN or infinite values (or values beyond float32's range)")
        lo, hi = float(xtr.min()), float(xtr.max())
        scale, vr = 1.0, (lo, hi)
    t = lambda a: None if a is None else torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    return Dataset(name=spec, train=Split(t(xtr), t(ytr)), test=Split(t(xte), t(yte)),
                   scale=scale, value_range=vr, description=f"arrays from {p}")
