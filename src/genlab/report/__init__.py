"""Self-contained HTML reports of a run: ``write_report(run)`` writes ``RUN_DIR/report.html``.

The page holds the test metrics (each key explained), the configuration, loss curves from
``metrics.jsonl``, test images above their reconstructions and, for generative models, samples
from a fixed seed and interpolations between test images. Images are embedded as base64 PNG
data URIs and the CSS is inline, so the file can be mailed or archived on its own.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from .. import __version__
from ..errors import RunError
from ..io import atomic_write_text
from . import html as H
from .figures import INTERP_STEPS, N_SAMPLES, SAMPLE_SEED, report_figures

__all__ = ["write_report", "render_report", "test_metrics", "report_figures", "METRIC_HELP"]

METRIC_HELP = {
    "nll_iwae": "importance-weighted bound on -log p(x), nats per image (k = iwae_k samples); tighter than nelbo",
    "nelbo": "negative ELBO, nats per image (one posterior sample): an upper bound on -log p(x)",
    "kl": "KL(q(z|x) || p(z)), nats per image: how much the code says about the image",
    "bce": "binary cross-entropy of the reconstruction, per image, summed over pixels (nats; data in [0, 1])",
    "sse": "squared error of the reconstruction, per image, summed over pixels",
    "mse": "mean squared error of the reconstruction, per pixel",
    "psnr": "peak signal-to-noise ratio of the reconstruction, dB, mean over images (higher is better)",
    "ssim": "structural similarity of reconstruction and image (Wang et al. 2004; 11x11 Gaussian window, sigma 1.5), mean over images; 1 is identical (higher is better)",
    "n": "test images evaluated",
    "iwae_k": "importance samples behind nll_iwae",
}
METRIC_ORDER = ["nll_iwae", "nelbo", "kl", "bce", "sse", "mse", "psnr", "ssim", "n", "iwae_k"]
TRAINING_KEYS = ("train_seconds", "steps")


def test_metrics(run, data=None, data_root: str | None = None) -> dict:
    """The run's test metrics: ``eval.json`` when training wrote it, else computed now."""
    p = run.path / "eval.json"
    if p.is_file():
        try:
            return json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise RunError(f"{p}: not valid JSON ({e}); delete it to recompute the metrics") from None
    from ..evaluate import evaluate

    return evaluate(run.model, data if data is not None else run.data(data_root), "test")


def _metrics_table(metrics: dict) -> str:
    keys = [k for k in METRIC_ORDER if k in metrics]
    keys += sorted(k for k in metrics if k not in keys and k not in TRAINING_KEYS)
    rows = [(k, H.fmt(metrics[k]), METRIC_HELP.get(k, "")) for k in keys]
    return H.table(["metric", "value", "meaning"], rows, num_cols=[1], note_cols=[2])


def _config_tables(run) -> str:
    cfg = run.config
    parts = []
    for title, section in (("model", cfg.get("model_config", {})), ("training", cfg.get("train", {})),
                           ("data", cfg.get("data", {}))):
        rows = [(k, json.dumps(v) if isinstance(v, (list, dict, bool)) or v is None else v)
                for k, v in section.items()]
        parts.append(f"<div><h3>{H.esc(title)}</h3>{H.table(['field', 'value'], rows)}</div>")
    return '<div class="tables">' + "".join(parts) + "</div>"


def _training_summary(run, metrics: dict, records: list[dict]) -> str:
    train = [r for r in records if r.get("split") == "train"]
    bits = []
    steps = metrics.get("steps", train[-1]["step"] if train else None)
    if steps is not None:
        bits.append(f"{steps} steps")
    if train and "epoch" in train[-1]:
        bits.append(f"{train[-1]['epoch']:g} epochs")
    if "train_seconds" in metrics:
        bits.append(f"{metrics['train_seconds']:.1f} s")
    speeds = [r["examples_per_s"] for r in train if "examples_per_s" in r]
    if speeds:
        speeds = sorted(speeds)
        bits.append(f"median {speeds[len(speeds) // 2]:,.0f} examples/s")
    if train:
        bits.append(f"final train loss {H.fmt(train[-1]['loss'])}")
    return "Training: " + ", ".join(bits) + "." if bits else ""


def render_report(run, metrics: dict, figures: dict[str, bytes], records: list[dict]) -> str:
    """The report's HTML from the pieces (see :func:`write_report`)."""
    cfg = run.config
    data_name = run.data_config.name
    model = run.model
    title = f"{run.model_name} on {data_name}"
    shape = "x".join(str(s) for s in cfg["shape"])
    params = cfg.get("num_params")
    sub = [f"run <code>{H.esc(run.path.resolve())}</code>",
           f"data shape {H.esc(shape)}"]
    if params is not None:
        sub.append(f"{params:,} parameters")
    sub.append(f"genlab {H.esc(cfg.get('genlab_version', __version__))}, report written {time.strftime('%Y-%m-%d %H:%M')}")
    body = [f"<h1>{H.esc(title)}</h1>", f'<p class="sub">{" &middot; ".join(sub)}</p>']

    source = "eval.json, written at the end of training" if (run.path / "eval.json").is_file() else "computed for this report"
    body += ["<h2>Test metrics</h2>",
             f"<p>On the test split ({metrics.get('n', '?')} images; {source}). Lower is better except psnr and ssim.</p>",
             _metrics_table(metrics)]

    body.append("<h2>Training</h2>")
    summary = _training_summary(run, metrics, records)
    if summary:
        body.append(f"<p>{H.esc(summary)}</p>")
    if "curves" in figures:
        cap = "Training loss (mean over each logging window) against optimizer step"
        cap += "; validation after each epoch" if any(r.get("split") == "val" for r in records) else ""
        if "kl" in next((r for r in records if r.get("split") == "train"), {}):
            cap += ". Right: the two terms of the negative ELBO, the reconstruction term -log p(x|z) and the KL"
        body.append(H.figure(figures["curves"], "loss curves", H.esc(cap + ".")))
    else:
        body.append("<p>No training metrics (metrics.jsonl is missing or empty).</p>")

    image_data = len(cfg["shape"]) == 3
    if not image_data:
        body += ["<h2>Images</h2>",
                 f"<p>The data are vectors of {H.esc(shape)} values, not images: no image grids.</p>"]
    scale = 1.5 if image_data and max(cfg["shape"][1:]) <= 16 else 1.0
    if "reconstructions" in figures:
        body += ["<h2>Reconstructions</h2>",
                 H.figure(figures["reconstructions"], "test images and reconstructions",
                          "Test images (odd rows) above their reconstructions (even rows)"
                          + (", decoded from the posterior mean." if getattr(model, "generative", False) else "."),
                          grid=True, scale=scale)]
    if "samples" in figures:
        body += ["<h2>Samples</h2>",
                 H.figure(figures["samples"], "samples",
                          f"{N_SAMPLES} samples: z drawn from the prior with seed {SAMPLE_SEED}, "
                          "shown as the decoder's mean.", grid=True, scale=scale)]
    if "interpolation" in figures:
        body += ["<h2>Interpolation</h2>",
                 H.figure(figures["interpolation"], "latent interpolation",
                          f"Each row: a test image, {INTERP_STEPS} decodings of evenly spaced points on the "
                          "line between its posterior mean and that of a second test image (ends included), "
                          "then the second image.", grid=True, scale=scale)]

    body += ["<h2>Configuration</h2>", _config_tables(run)]
    return H.page(f"genlab report: {title}", "\n".join(body))


def write_report(run, out: str | Path | None = None, data_root: str | None = None) -> Path:
    """Write ``run``'s HTML report to ``out`` (default ``RUN_DIR/report.html``), atomically, and
    return its path. ``data_root`` says where the data set lives if not where it was trained.

    A missing data set raises the data set's :class:`~genlab.errors.DataError`: the test images
    are needed for the reconstructions (and the metrics when ``eval.json`` is absent)."""
    if isinstance(run, (str, Path)):
        from ..run import load_run

        run = load_run(run)
    out = Path(out) if out is not None else run.path / "report.html"
    data = run.data(data_root)
    metrics = test_metrics(run, data)
    records = run.metrics()
    figures = report_figures(run, data, records)
    atomic_write_text(out, render_report(run, metrics, figures, records))
    return out
