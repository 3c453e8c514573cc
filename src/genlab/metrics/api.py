"""``compute_metrics``: one entry point for every sample-quality metric, as the CLI's
``genlab metrics --real SRC --fake SRC`` (torch-fidelity's ``calculate_metrics`` is the model).

Features of each source come from one extractor (see :mod:`genlab.metrics.extractors`). The
features (and classifier logits) of a source are cached on disk under a key made from the
extractor, its weights and a SHA-256 of the images themselves, so a real set is featurised
once; the cache lives in ``$GENLAB_CACHE`` or ``~/.cache/genlab/features``.
"""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import GenlabError
from . import core
from .modes import mode_coverage

METRICS = ("fid", "kid", "is", "pr", "mmd", "c2st", "modes")
DEFAULT_METRICS = ("fid", "kid")
NEEDS_LOGITS = {"is", "modes"}


def cache_dir() -> Path:
    return Path(os.environ.get("GENLAB_CACHE") or Path.home() / ".cache" / "genlab" / "features")


def _key(x: torch.Tensor, extractor) -> str:
    h = hashlib.sha256()
    h.update(f"{extractor.name}|{getattr(extractor, 'weights_sha256', '')}|{tuple(x.shape)}".encode())
    h.update(np.ascontiguousarray(x.numpy(), dtype=np.float32).tobytes())
    return h.hexdigest()[:32]


def featurise(x: torch.Tensor, extractor, logits: bool, use_cache: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """(features, logits or None) of images ``x``; read from / written to the cache."""
    from ..io import atomic_write

    path = cache_dir() / f"{_key(x, extractor)}.npz" if use_cache else None
    if path is not None and path.is_file():
        try:
            z = np.load(path)
            if not logits or "logits" in z.files:
                return z["features"], (z["logits"] if logits else None)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry: recompute and overwrite it
    if logits:  # one pass for both
        f, lg = extractor.features_and_logits(x)
        feats, lg = f.double().numpy(), lg.double().numpy()
    else:
        feats, lg = extractor.features(x).double().numpy(), None
    if path is not None:
        arrays = {"features": feats.astype(np.float32)}
        if lg is not None:
            arrays["logits"] = lg.astype(np.float32)
        try:
            atomic_write(path, lambda f: np.savez(f, **arrays))
        except OSError:
            pass  # a read-only cache folder must not stop the metric
    return feats, lg


def default_extractor(*infos: dict) -> str:
    """mnist-cnn for MNIST, fashion-cnn for Fashion-MNIST (from either source's data set)."""
    names = {i.get("name") or i.get("data") for i in infos}
    if "fashion-mnist" in names:
        return "fashion-cnn"
    if "mnist" in names:
        return "mnist-cnn"
    raise GenlabError("--extractor: no default for these sources; name one (mnist-cnn, fashion-cnn, "
                      "inception-v3, pixels, tv:MODEL:LAYER; see `genlab list extractors`)")


def compute_metrics(real: str, fake: str, metrics=DEFAULT_METRICS, extractor: str | None = None,
                    n: int | None = 10000, seed: int = 0, data_root: str | None = None,
                    image_size: int | None = None, use_cache: bool = True, device: str = "cpu") -> dict:
    """Compare the images of ``real`` and ``fake`` (sources as in :func:`load_source`)."""
    from .extractors import get_extractor
    from .sources import load_source

    metrics = tuple(metrics)
    bad = [m for m in metrics if m not in METRICS]
    if bad or not metrics:
        raise GenlabError(f"--metrics: unknown {', '.join(bad) or '(none given)'}; choose from {','.join(METRICS)}")
    t0 = time.perf_counter()
    xr, info_r = load_source(real, n, seed, data_root, image_size)
    xf, info_f = load_source(fake, n, seed + 1, data_root, image_size)
    name = extractor or default_extractor(info_r, info_f)
    ext = get_extractor(name, device=device)
    need_logits = bool(NEEDS_LOGITS & set(metrics))
    if need_logits and not ext.num_classes:
        raise GenlabError(f"--metrics {','.join(sorted(NEEDS_LOGITS & set(metrics)))}: needs a classifier extractor "
                          f"(mnist-cnn, fashion-cnn, inception-v3); {name} has no classes")
    t1 = time.perf_counter()
    fr, _ = featurise(xr, ext, logits=False, use_cache=use_cache)
    ff, lf = featurise(xf, ext, logits=need_logits, use_cache=use_cache)
    t_feat = time.perf_counter() - t1
    out: dict = {"extractor": name, "n_real": int(fr.shape[0]), "n_fake": int(ff.shape[0]),
                 "real": real, "fake": fake, "seed": seed}
    for m in metrics:
        if m == "fid":
            out["fid"] = core.frechet_distance(fr, ff)
        elif m == "kid":
            out.update(core.kernel_inception_distance(fr, ff, seed=seed))
        elif m == "is":
            out.update(core.inception_score(lf, splits=min(10, lf.shape[0])))
        elif m == "pr":
            out.update(core.precision_recall_density_coverage(fr, ff))
        elif m == "mmd":
            r = core.mmd_test(fr, ff, seed=seed)
            out.update({"mmd2": r["mmd2"], "mmd_p_value": r["p_value"], "mmd_bandwidth": r["bandwidth"]})
        elif m == "c2st":
            r = core.classifier_two_sample_test(fr, ff, seed=seed)
            out.update({"c2st_accuracy": r["accuracy"], "c2st_p_value": r["p_value"]})
        elif m == "modes":
            out.update(mode_coverage(lf))
    out["feature_seconds"] = round(t_feat, 3)
    out["seconds"] = round(time.perf_counter() - t0, 3)
    return out
