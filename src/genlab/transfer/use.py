"""Using a trained classifier: predictions for image files, and embeddings for export."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import DataError, GenlabError


def read_run_images(run, paths: list[str | Path]) -> torch.Tensor:
    """Image files prepared as the run's training images were: for a ``folder:`` data set the
    short side resized to ``data.image_size`` and a centred square cropped (as the folder loader
    does), otherwise resized to the data set's shape; values in [0, 1]."""
    from ..data.files import read_square
    from ..uses import read_images

    shape = tuple(run.config["shape"])
    if not paths:
        raise DataError("no image files given")
    if run.data_config.name.startswith("folder:") and len(shape) == 3:
        mode = "L" if shape[0] == 1 else "RGB"
        out = []
        for p in map(Path, paths):
            if not p.is_file():
                raise DataError(f"{p}: no such image file")
            out.append(read_square(p, shape[-1], mode))
        return torch.from_numpy(np.stack(out)).float() / 255.0
    return read_images(paths, shape, tuple(run.config["value_range"]))


def _classifier(run):
    model = run.model
    if not hasattr(model, "num_stages"):
        raise GenlabError(f"{run.path}: a {run.model_name} run; genlab predict needs a classifier run "
                          "(genlab train classifier ...)")
    return model


@torch.no_grad()
def predict(run, paths: list[str | Path], top: int = 1, batch_size: int = 64) -> list[dict]:
    """For each image file: the ``top`` most probable classes with their probabilities."""
    model = _classifier(run)
    k = model.config.num_classes
    if not 1 <= top <= k:
        raise GenlabError(f"--top: expected 1 to {k} (the run's classes), got {top}")
    x = read_run_images(run, paths)
    probs = torch.cat([model(x[i:i + batch_size]).softmax(1) for i in range(0, len(x), batch_size)])
    names = model.config.class_names or [str(i) for i in range(k)]
    p, idx = probs.topk(top, dim=1)
    return [{"file": str(path), "top": [{"class": names[j], "label": int(j), "prob": float(q)}
                                        for q, j in zip(p[r].tolist(), idx[r].tolist())]}
            for r, path in enumerate(paths)]


@torch.no_grad()
def embeddings(run, x: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """The features that feed the classifier's head, for images in [0, 1] (N, C, H, W)."""
    model = _classifier(run)
    return model.features(x, batch_size=batch_size).numpy().astype(np.float32)
