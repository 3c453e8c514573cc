"""The pictures of a report as PNG bytes: reconstructions, samples, interpolations, curves.

Everything is deterministic and leaves the global RNG alone: fixed test images, samples and
latent points from seeded ``torch.Generator`` objects, posterior means. Image grids need image
data (N, C, H, W); for vector data they are skipped, and 2-D data (the toy mixtures ring8 and
grid25) get a scatter plot of samples instead.

The latent helpers (:func:`latent_size`, :func:`decode_latent`, :func:`latent_endpoints`,
:func:`latent_interpolation`, :func:`per_class_samples`) serve the report, ``genlab sample``
and the progress grids of a run alike.
"""
from __future__ import annotations

import contextlib
import json

import torch

from ..errors import GenlabError
from ..images import grid_png
from ..models.base import GenModel

SAMPLE_SEED = 0
N_SAMPLES = 64
N_RECON = 32
INTERP_ROWS = 8
INTERP_STEPS = 8
LATENT_INTERP_STEPS = 10  # decodings per row of a latent interpolation (ends included)
PER_CLASS = 10  # samples per class in the per-class grid
MAX_CLASS_ROWS = 50  # the per-class grid of the report shows at most this many classes
N_SCATTER = 2500  # samples in the scatter plot of 2-D data (PacGAN's number)


def has_encoder(model) -> bool:
    """An autoencoder-like model (a classifier's ``encode`` gives features, not codes to decode)."""
    return type(model).encode is not GenModel.encode and not getattr(model, "classifies", False)


def is_image_shape(shape) -> bool:
    return len(tuple(shape)) == 3


def is_conditional(model) -> bool:
    """A conditional generative model (cgan, cdcgan): samples for a requested class."""
    return bool(getattr(model, "uses_labels", False)) and hasattr(model, "sample_class")


def num_classes(model) -> int:
    return int(getattr(model.config, "classes", 0) or 0)


def class_name(c: int, names: list[str] | None) -> str:
    """``3`` or ``3 (cat)`` when the data set names its classes (and the name is not the number)."""
    if names and 0 <= c < len(names) and str(names[c]) != str(c):
        return f"{c} ({names[c]})"
    return str(c)


# ------------------------------------------------------------------------------ latent space
def latent_size(model) -> int | None:
    """The size of z of a generative model with a latent prior N(0, I): a GAN's ``latent``, a
    VAE's ``config.latent``; None for models without one (autoencoders)."""
    if not getattr(model, "generative", False):
        return None
    if hasattr(model, "generate"):
        return int(model.latent)
    if type(model).decode is not GenModel.decode:
        n = getattr(model.config, "latent", None)
        return int(n) if n else None
    return None


@contextlib.contextmanager
def _eval_mode(model):
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


@torch.no_grad()
def decode_latent(model, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """The model's output for latent points ``z`` (N x latent, any device): ``G(z)`` of a GAN
    (its EMA generator when it has one; with labels ``y`` for a conditional model), the decoder's
    mean of a VAE. Evaluated in eval mode (BatchNorm statistics fixed), returned on the CPU."""
    device = next(model.parameters()).device
    with _eval_mode(model):
        z = z.to(device)
        if hasattr(model, "generate"):
            out = model.generate(z, ema=True, y=None if y is None else torch.as_tensor(y).long().to(device))
        else:
            out = model.decode(z)
    return out.reshape(z.shape[0], *model.shape).contiguous().cpu()


def latent_endpoints(latent: int, rows: int, seed: int = SAMPLE_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """``rows`` pairs of points drawn from N(0, I): ``z = randn(2, rows, latent)`` with a
    ``torch.Generator`` seeded ``seed``; returns ``(z[0], z[1])``."""
    z = torch.randn(2, rows, latent, generator=torch.Generator().manual_seed(seed))
    return z[0], z[1]


def row_labels(model, rows: int, label: int | None = None) -> torch.Tensor | None:
    """Labels of the rows of a conditional model's interpolation: ``label`` in every row, else
    row i gets class i mod classes; None for unconditional models."""
    if not is_conditional(model):
        return None
    if label is not None:
        return torch.full((rows,), int(label), dtype=torch.long)
    return torch.arange(rows, dtype=torch.long) % max(1, num_classes(model))


def latent_line(z0: torch.Tensor, z1: torch.Tensor, steps: int = LATENT_INTERP_STEPS) -> torch.Tensor:
    """The ``steps`` evenly spaced points from ``z0[i]`` to ``z1[i]`` (ends included), row after
    row: (rows * steps, latent)."""
    t = torch.linspace(0, 1, steps).view(1, steps, 1)
    return ((1 - t) * z0[:, None].float() + t * z1[:, None].float()).reshape(z0.shape[0] * steps, -1)


@torch.no_grad()
def latent_interpolation(model, z0: torch.Tensor, z1: torch.Tensor, steps: int = LATENT_INTERP_STEPS,
                         y: torch.Tensor | None = None) -> torch.Tensor:
    """Decodings of ``steps`` evenly spaced points on each line from ``z0[i]`` to ``z1[i]``
    (ends included: column 0 decodes ``z0``, the last ``z1``); ``y`` (one label per row) keeps
    a conditional model's label fixed along a row. Returns (rows, steps, *shape) on the CPU."""
    rows = z0.shape[0]
    yy = None if y is None else torch.as_tensor(y).long().view(rows, 1).expand(rows, steps).reshape(-1)
    x = decode_latent(model, latent_line(z0, z1, steps), yy)
    return x.view(rows, steps, *model.shape)


def require_latent(model, what: str = "--interpolate") -> int:
    n = latent_size(model)
    if n is None:
        kind = "not generative" if not getattr(model, "generative", False) else "without a latent prior"
        raise GenlabError(f"{what}: {model.name} has no latent space to interpolate in ({kind}); "
                          "use a GAN (gan, dcgan, cgan, cdcgan, wgan-gp) or a VAE (vae, conv-vae)")
    return n


@torch.no_grad()
def per_class_samples(model, k: int, seed: int = SAMPLE_SEED, classes=None) -> tuple[torch.Tensor, torch.Tensor]:
    """A conditional model's samples, ``k`` per class (rows: classes 0..classes-1, or ``classes``):
    row c is ``model.sample_class(k, c, generator)`` with a generator seeded ``seed`` for every
    row, so column j holds the same noise z in every row and only the label changes.
    Returns (x of len(classes) * k samples, their labels), on the CPU."""
    if not is_conditional(model):
        raise GenlabError(f"--per-class: {model.name} is not a conditional model; per-class samples need "
                          "cgan or cdcgan (trained with labels)")
    cs = list(range(num_classes(model))) if classes is None else [int(c) for c in classes]
    xs = [model.sample_class(k, c, generator=torch.Generator().manual_seed(seed)).cpu() for c in cs]
    y = torch.tensor(cs, dtype=torch.long).repeat_interleave(k)
    return torch.cat(xs).contiguous(), y


# ------------------------------------------------------------------------------ image grids
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


@torch.no_grad()
def latent_interpolation_png(model, value_range, rows: int = INTERP_ROWS, steps: int = LATENT_INTERP_STEPS,
                             seed: int = SAMPLE_SEED, upscale: int = 0) -> bytes:
    """Rows of decodings along lines between pairs of prior draws (:func:`latent_endpoints`);
    a conditional model keeps row i's label at class i mod classes."""
    z0, z1 = latent_endpoints(require_latent(model, "interpolation"), rows, seed)
    x = latent_interpolation(model, z0, z1, steps, row_labels(model, rows))
    return grid_png(x.reshape(-1, *model.shape), nrow=steps, value_range=value_range, upscale=upscale)


@torch.no_grad()
def per_class_png(model, value_range, k: int = PER_CLASS, seed: int = SAMPLE_SEED, classes=None,
                  upscale: int = 0) -> bytes:
    """One row of ``k`` samples per class (:func:`per_class_samples`)."""
    x, _ = per_class_samples(model, k, seed, classes)
    return grid_png(x, nrow=k, value_range=value_range, upscale=upscale)


# ------------------------------------------------------------------------------ 2-D data
@torch.no_grad()
def scatter_png(model, data_name: str, data=None, n: int = N_SCATTER, seed: int = SAMPLE_SEED) -> bytes:
    """``n`` samples of a model of 2-D data over the mixture's means (ring8, grid25), or over the
    test points of other 2-D data; a conditional model's samples are coloured by label."""
    from ..data.toy import MIXTURES
    from .plots import scatter2d_png

    g = torch.Generator().manual_seed(seed)
    if is_conditional(model) and hasattr(model, "sample_labeled"):
        x, y = model.sample_labeled(n, generator=g)
        y = y.cpu()
    else:
        x, y = model.sample(n, generator=g), None
    x = x.reshape(n, -1).float().cpu()
    mix = MIXTURES.get(data_name)
    stats, ref = None, None
    if mix is not None:
        from ..metrics.modes import mixture_mode_coverage

        stats = mixture_mode_coverage(x, mix.means, mix.std)
    elif data is not None:
        ref = data.eval_inputs("test")[0].reshape(-1, 2).float().cpu()[:n]
    return scatter2d_png(x, means=None if mix is None else mix.means, std=None if mix is None else mix.std,
                         labels=y, ref=ref, stats=stats)


# ------------------------------------------------------------------------------ all figures
def is_gan_log(records: list[dict]) -> bool:
    """Train lines of a GAN (they carry d_loss instead of loss)."""
    return any(r.get("split") == "train" and "d_loss" in r for r in records)


def read_best(run) -> dict | None:
    """``best.json`` of a run trained with train.quality_every (step, score, metric), or None."""
    p = run.path / "best.json"
    if not p.is_file():
        return None
    try:
        best = json.loads(p.read_text())
    except (json.JSONDecodeError, OSError):
        return None
    return best if isinstance(best, dict) and "step" in best else None


def report_figures(run, data, records: list[dict] | None = None) -> dict[str, bytes]:
    """The figures of ``run``'s report: ``curves`` (when metrics.jsonl has train lines: the
    loss curves, or for GANs the losses, D's outputs, gradient norms and the quality checks),
    ``quality`` (quality checks of a non-GAN run), ``scatter`` (generative models of 2-D data),
    ``reconstructions`` (image data, models with an encoder), ``samples`` (generative models),
    ``per_class`` (conditional models) and ``interpolation`` (generative models: between
    posterior means with an encoder, else between prior draws). Drawn under a forked RNG."""
    with torch.random.fork_rng(devices=[]):
        return _report_figures(run, data, records)


def _report_figures(run, data, records):
    from .plots import gan_curves_png, loss_curves_png, quality_png

    model = run.model
    figs: dict[str, bytes] = {}
    records = run.metrics() if records is None else records
    best = read_best(run)
    if is_gan_log(records):
        critic = run.config.get("model_config", {}).get("d_loss", "bce") != "bce"
        curves = gan_curves_png(records, best=best, critic=critic)
    else:
        curves = loss_curves_png(records, val_key=val_key_for(run, records))
        q = quality_png(records, best=best)
        if q is not None:
            figs["quality"] = q
    if curves is not None:
        figs["curves"] = curves
    generative = getattr(model, "generative", False)
    if not is_image_shape(data.shape):
        if generative and tuple(data.shape) == (2,):
            figs["scatter"] = scatter_png(model, run.data_config.name, data)
        return figs
    vr = tuple(data.value_range)
    x, y = data.eval_inputs("test")
    x = x.cpu()
    if has_encoder(model):
        figs["reconstructions"] = reconstructions_png(model, x[:N_RECON], vr)
    if generative:
        figs["samples"] = samples_png(model, vr)
        if is_conditional(model) and num_classes(model) > 0:
            figs["per_class"] = per_class_png(model, vr, classes=range(min(num_classes(model), MAX_CLASS_ROWS)))
        if has_encoder(model):
            if hasattr(model, "interpolate") and x.shape[0] >= 2:
                x0, x1 = interpolation_pairs(x, y)
                figs["interpolation"] = interpolation_png(model, x0, x1, vr)
        elif latent_size(model) is not None:
            figs["interpolation"] = latent_interpolation_png(model, vr)
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
