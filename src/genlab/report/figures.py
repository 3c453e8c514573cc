"""The pictures of a report as PNG bytes: reconstructions, samples, interpolations, curves.

Everything is deterministic: fixed test images, samples from a fixed seed, posterior means.
Image grids need image data (N, C, H, W); for vector data they are skipped.
"""
from __future__ import annotations

import torch

from ..images import grid_png
from ..models.base import GenModel

SAMPLE_SEED = 0
N_SAMPLES = 64
N_RECON = 32
INTERP_ROWS = 8
INTERP_STEPS = 8


def has_encoder(model) -> bool:
    return type(model).encode is not GenModel.encode


def is_image_shape(shape) -> bool:
    return len(tuple(shape)) == 3


@torch.no_grad()
def reconstructions_png(model, x: torch.Tensor, value_range, per_row: int = 16, upscale: int = 0) -> bytes:
    """Rows of test images, each followed by a row of their reconstructions."""
    per_row = max(1, min(per_row, x.shape[0]))
    x = x[: (x.shape[0] // per_row) * per_row]
    recon = model.reconstruct(x)
    rows = []
    for i in range(0, x.shape[0], per_row):
        rows += [x[i:i + per_row], recon[i:i + per_row]]
    return grid_png(torch.cat(rows), nrow=per_row, value_range=value_range, upscale=upscale)


@torch.no_grad()
def samples_png(model, value_range, n: int = N_SAMPLES, seed: int = SAMPLE_SEED, upscale: int = 0) -> bytes:
    g = torch.Generator().manual_seed(seed)
    x = model.sample(n, generator=g)
    return grid_png(x, nrow=8, value_range=value_range, upscale=upscale)


def interpolation_pairs(x: torch.Tensor, y: torch.Tensor | None, rows: int = INTERP_ROWS):
    """(x0, x1): ``rows`` pairs of test images. With labels, each pair joins two different
    classes (class i to class i+3), else consecutive blocks of the split."""
    rows = min(rows, x.shape[0] // 2)
    if y is not None and rows > 0:
        y = y.cpu()
        classes = sorted(int(c) for c in torch.unique(y))
        k = len(classes)
        if k >= 2:
            where = {c: torch.nonzero(y == c).flatten().tolist() for c in classes}
            a, b = [], []
            for i in range(rows):
                ca, cb = classes[i % k], classes[(i + min(3, k - 1)) % k]
                ia, ib = where[ca], where[cb]
                a.append(ia[(i // k) % len(ia)])
                b.append(ib[(i // k + 1) % len(ib)] if ca == cb else ib[(i // k) % len(ib)])
            return x[a], x[b]
    return x[:rows], x[rows:2 * rows]


@torch.no_grad()
def interpolation_png(model, x0: torch.Tensor, x1: torch.Tensor, value_range, steps: int = INTERP_STEPS,
                      upscale: int = 0) -> bytes:
    """One row per pair: the first image, ``steps`` decodings along the line between the two
    posterior means (ends included), the second image."""
    mid = model.interpolate(x0, x1, steps=steps)  # (rows, steps, C, H, W)
    rows = torch.cat([x0[:, None], mid, x1[:, None]], dim=1)
    return grid_png(rows.reshape(-1, *x0.shape[1:]), nrow=steps + 2, value_range=value_range, upscale=upscale)


def report_figures(run, data, records: list[dict] | None = None) -> dict[str, bytes]:
    """The figures of ``run``'s report: ``curves`` (when metrics.jsonl has train lines),
    ``reconstructions`` (image data, models with an encoder), ``samples`` (generative models)
    and ``interpolation`` (generative models with an encoder)."""
    from .plots import loss_curves_png

    model = run.model
    figs: dict[str, bytes] = {}
    records = run.metrics() if records is None else records
    curves = loss_curves_png(records, val_key=val_key_for(run, records))
    if curves is not None:
        figs["curves"] = curves
    if not is_image_shape(data.shape):
        return figs
    vr = tuple(data.value_range)
    x, y = data.eval_inputs("test")
    x = x.cpu()
    if has_encoder(model):
        figs["reconstructions"] = reconstructions_png(model, x[:N_RECON], vr)
    if getattr(model, "generative", False):
        figs["samples"] = samples_png(model, vr)
        if has_encoder(model) and hasattr(model, "interpolate") and x.shape[0] >= 2:
            x0, x1 = interpolation_pairs(x, y)
            figs["interpolation"] = interpolation_png(model, x0, x1, vr)
    return figs


def val_key_for(run, records: list[dict]) -> str | None:
    """Which validation value matches the train loss: the negative ELBO for VAEs, else the
    reconstruction loss the model was trained with (sse for loss=mse, bce for loss=bce)."""
    val = [r for r in records if r.get("split") == "val"]
    if not val:
        return None
    if "nelbo" in val[0]:
        return "nelbo"
    return "bce" if run.config.get("model_config", {}).get("loss") == "bce" else "sse"
