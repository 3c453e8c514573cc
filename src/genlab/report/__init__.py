"""Self-contained HTML reports of a run: ``write_report(run)`` writes ``RUN_DIR/report.html``.

The page holds the warnings of training (collapse warnings in ``metrics.jsonl``), the test
metrics (each key explained, with which direction is better), the configuration, training
curves from ``metrics.jsonl`` (loss curves; for GANs the D and G losses, D's outputs, gradient
norms and the quality checks with the best step), test images above their reconstructions
(models with an encoder) and, for generative models, samples from a fixed seed, a per-class
grid (conditional models), interpolations (between test images' posterior means, or between
prior draws for GANs) and, on 2-D data, a scatter plot of samples over the mixture's means.
Images are embedded as base64 PNG data URIs and the CSS is inline, so the file can be mailed or
archived on its own.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from .. import __version__
from ..errors import RunError
from ..io import atomic_write_text
from . import html as H
from .figures import (INTERP_STEPS, LATENT_INTERP_STEPS, MAX_CLASS_ROWS, N_SAMPLES, N_SCATTER, PER_CLASS, SAMPLE_SEED,
                      class_name, has_encoder, is_conditional, num_classes, read_best, report_figures)

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
    "n": "test examples (images) evaluated",
    "iwae_k": "importance samples behind nll_iwae",
    # sample quality of generative models (mnist / fashion-mnist: features of the shipped classifier)
    "fid": "Frechet distance between Gaussians fitted to the classifier features of samples and test images (lower is better; 0: same mean and covariance)",
    "kid_mean": "kernel inception distance: unbiased MMD^2 with a cubic polynomial kernel on the same features, mean over subsets (lower is better; about 0 when the samples match the data)",
    "kid_std": "standard deviation of KID over the subsets",
    "is_mean": "inception score exp(E KL(p(y|x) || p(y))) with the shipped classifier, mean over splits (higher is better; at most the number of classes)",
    "is_std": "standard deviation of the inception score over the splits",
    "modes_hit": "classes with at least one confidently classified sample (top probability >= 0.9) (higher is better)",
    "high_quality": "share of samples classified confidently (classifier, >= 0.9) or, on toy mixtures, within 3 std of the nearest mean (higher is better)",
    "kl_to_uniform": "KL(histogram of predicted classes || uniform), nats: 0 when every class is equally frequent, log(classes) when all samples are one class; on stacked-mnist over the 1000 digit triples (lower is better)",
    "modes_high_quality": "stacked-mnist: digit triples hit by confidently classified samples alone, a stricter count than modes (higher is better)",
    "channel_kl": "stacked-mnist: KL(digit histogram || uniform) of each of the three channels, nats (lower is better)",
    "n_samples": "generated samples behind the sample-quality metrics",
    "extractor": "feature extractor (classifier) behind FID, KID, IS and mode coverage",
    # toy mixtures (ring8, grid25), the PacGAN protocol
    "modes": "modes covered: mixture components with at least one high-quality sample (within 3 std of its mean); on stacked-mnist the digit triples predicted for at least one sample (higher is better)",
    "num_modes": "modes of the data: the mixture's components (1000 digit triples on stacked-mnist)",
    "reverse_kl": "KL(q || p) of the histogram q of high-quality samples over the modes against the uniform mixture weights p, nats; log(num_modes) when no sample is high quality (lower is better)",
    # classifiers
    "accuracy": "share of test images whose most probable class is the true one (higher is better)",
    "xent": "cross-entropy of the predicted class probabilities, nats per image (lower is better)",
    # GANs
    "d_real": "mean D(x) on the test data (a probability for d_loss=bce, a raw critic score otherwise): a diagnostic of the discriminator, not a score of the samples",
}
METRIC_ORDER = ["accuracy", "xent", "nll_iwae", "nelbo", "kl", "bce", "sse", "mse", "psnr", "ssim",
                "fid", "kid_mean", "kid_std", "is_mean", "is_std", "modes_hit", "modes", "num_modes",
                "high_quality", "modes_high_quality", "kl_to_uniform", "channel_kl", "reverse_kl", "d_real", "n", "n_samples", "iwae_k", "extractor"]
LOWER_IS_BETTER = ("xent", "nll_iwae", "nelbo", "bce", "sse", "mse", "fid", "kid_mean", "kl_to_uniform", "channel_kl", "reverse_kl")
HIGHER_IS_BETTER = ("accuracy", "psnr", "ssim", "is_mean", "modes_hit", "modes", "modes_high_quality", "high_quality")
TRAINING_KEYS = ("train_seconds", "steps")
CLASSIFICATION_KEYS = ("per_class", "confusion", "class_names")  # shown in their own section


def test_metrics(run, data=None, data_root: str | None = None) -> dict:
    """The run's test metrics: ``eval.json`` when training wrote it, else computed now. A run
    opened with ``best=True`` (the weights kept by ``train.quality_every``) is always evaluated
    now, with the sample metrics of ``Run.evaluate`` (eval.json holds the last weights')."""
    if getattr(run, "best", False):
        return run.evaluate("test", root=data_root or None)
    p = run.path / "eval.json"
    if p.is_file():
        try:
            return json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise RunError(f"{p}: not valid JSON ({e}); delete it to recompute the metrics") from None
    from ..evaluate import evaluate
    from ..run import mixture_metrics

    data = data if data is not None else run.data(data_root)
    out = evaluate(run.model, data, "test")
    out.update(mixture_metrics(run.model, run.data_config.name))
    if getattr(run.model, "classifies", False):
        from ..transfer.classifier import classification_report

        out.update(classification_report(run.model, data, "test"))
    return out


def _metrics_table(metrics: dict) -> str:
    keys = [k for k in METRIC_ORDER if k in metrics]
    keys += sorted(k for k in metrics if k not in keys and k not in TRAINING_KEYS and k not in CLASSIFICATION_KEYS)
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


def _last(train: list[dict], key: str):
    return next((r[key] for r in reversed(train) if isinstance(r.get(key), (int, float))), None)


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
    if train and _last(train, "loss") is not None:
        bits.append(f"final train loss {H.fmt(_last(train, 'loss'))}")
    what = "critic" if run.config.get("model_config", {}).get("d_loss", "bce") != "bce" else "D"
    for key, label in (("d_loss", "final D loss"), ("g_loss", "G loss"), ("d_real", f"mean {what}(x)"),
                       ("d_fake", f"mean {what}(G(z))")):
        if train and _last(train, key) is not None:
            bits.append(f"{label} {H.fmt(_last(train, key))}")
    return "Training: " + ", ".join(bits) + "." if bits else ""


def _direction(metrics: dict) -> str:
    """Which way is better for the metrics present (FID, KID, KL and errors lower; IS, modes,
    high_quality, psnr and ssim higher)."""
    lower = [k for k in LOWER_IS_BETTER if k in metrics]
    higher = [k for k in HIGHER_IS_BETTER if k in metrics]
    parts = []
    if lower:
        parts.append("lower is better for " + ", ".join(lower))
    if higher:
        parts.append("higher is better for " + ", ".join(higher))
    if not parts:
        return ""
    out = "; ".join(parts)
    out = out[0].upper() + out[1:] + "."
    if "d_real" in metrics:
        out += " d_real describes the discriminator, not the samples."
    return out


def warning_lines(records: list[dict]) -> list[dict]:
    """The ``warning`` lines of metrics.jsonl (collapse warnings of the quality checks), in order."""
    return [r for r in records if r.get("split") == "warning" and r.get("warning")]


def _warnings_section(records: list[dict]) -> list[str]:
    warns = warning_lines(records)
    if not warns:
        return []
    items = "".join(f"<li>{H.esc(r['warning'])}</li>" for r in warns)
    n = len(warns)
    return ['<h2 id="warnings">Warnings</h2>',
            '<div style="border-left: 4px solid #d9822b; background: #fff7ed; padding: 0.4em 1em; margin: 0.6em 0;">'
            f"<p>Training logged {n} warning{'s' if n != 1 else ''} (metrics.jsonl, split \"warning\"):</p>"
            f"<ul>{items}</ul></div>"]


def _best_sentence(run, records: list[dict]) -> str:
    best = read_best(run)
    quality = [r for r in records if r.get("split") == "quality"]
    if best is None and not quality:
        return ""
    out = f"{len(quality)} sample-quality checks (train.quality_every)"
    if best is not None:
        metric = best.get("metric", "score")
        score = best.get("score")
        val = f" = {H.fmt(score)}" if isinstance(score, (int, float)) else ""
        out += f"; the best, {metric}{val}, at step {best['step']}: its weights are best.safetensors (--best)"
    return out + "."


def render_report(run, metrics: dict, figures: dict[str, bytes], records: list[dict], data=None) -> str:
    """The report's HTML from the pieces (see :func:`write_report`); ``data`` (the run's data
    set) names the classes of a per-class grid."""
    cfg = run.config
    data_name = run.data_config.name
    model = run.model
    title = f"{run.model_name} on {data_name}"
    shape = "x".join(str(s) for s in cfg["shape"])
    params = cfg.get("num_params")
    gan = hasattr(model, "generate") and not has_encoder(model)
    image_data = len(cfg["shape"]) == 3
    sub = [f"run <code>{H.esc(run.path.resolve())}</code>",
           f"data shape {H.esc(shape)}"]
    if params is not None:
        sub.append(f"{params:,} parameters")
    sub.append(f"genlab {H.esc(cfg.get('genlab_version', __version__))}, report written {time.strftime('%Y-%m-%d %H:%M')}")
    body = [f"<h1>{H.esc(title)}</h1>", f'<p class="sub">{" &middot; ".join(sub)}</p>']
    body += _warnings_section(records)

    if getattr(run, "best", False):
        source = "the best weights of the quality checks (best.safetensors), computed for this report"
    else:
        source = "eval.json, written at the end of training" if (run.path / "eval.json").is_file() else "computed for this report"
    what = "images" if image_data else "examples"
    intro = f"On the test split ({metrics.get('n', '?')} {what}; {source})."
    if "n_samples" in metrics:
        intro += f" Sample-quality metrics from {metrics['n_samples']} generated samples."
    direction = _direction(metrics)
    body += ["<h2>Test metrics</h2>", f"<p>{H.esc(intro + (' ' + direction if direction else ''))}</p>",
             _metrics_table(metrics)]

    if "confusion" in metrics:
        body += _classification_section(run, metrics, figures)

    body.append("<h2>Training</h2>")
    summary = _training_summary(run, metrics, records)
    if summary:
        body.append(f"<p>{H.esc(summary)}</p>")
    best = _best_sentence(run, records)
    if best:
        body.append(f"<p>{H.esc(best)}</p>")
    if "curves" in figures:
        if any(r.get("split") == "train" and "d_loss" in r for r in records):
            critic = cfg.get("model_config", {}).get("d_loss", "bce") != "bce"
            cap = ("GAN training against optimizer step (means over each logging window): the discriminator's and "
                   "generator's losses (and the gradient or R1 penalty when used); ")
            cap += ("the critic's mean score on real and generated data, with D's accuracy (dotted); " if critic else
                    "D's mean probability on real data, D(x), and on generated data, D(G(z)), with its accuracy "
                    "(dotted; 0.5: D cannot tell them apart); ")
            cap += "the gradient norms of both networks before clipping"
            if any(r.get("split") == "quality" for r in records):
                cap += "; the periodic sample-quality score (lower is better), the best step starred, with the modes covered (dotted, right axis)"
        else:
            cap = "Training loss (mean over each logging window) against optimizer step"
            cap += "; validation after each epoch" if any(r.get("split") == "val" for r in records) else ""
            if "kl" in next((r for r in records if r.get("split") == "train"), {}):
                cap += ". Right: the two terms of the negative ELBO, the reconstruction term -log p(x|z) and the KL"
        body.append(H.figure(figures["curves"], "training curves", H.esc(cap + ".")))
    else:
        body.append("<p>No training metrics (metrics.jsonl is missing or empty).</p>")
    if "quality" in figures:
        body.append(H.figure(figures["quality"], "sample quality during training",
                             "Periodic sample-quality checks (train.quality_every; lower is better), the best step "
                             "starred, with the modes covered (dotted, right axis)."))

    if not image_data and "scatter" not in figures:
        body += ["<h2>Images</h2>",
                 f"<p>The data are vectors of {H.esc(shape)} values, not images: no image grids.</p>"]
    if "scatter" in figures:
        from ..data.toy import MIXTURES

        over = (f"the {MIXTURES[data_name].num_modes} means of the {data_name} mixture (crosses; circles: 3 std, "
                "the high-quality radius)" if data_name in MIXTURES else "the test data (grey)")
        colour = ", coloured by the requested class" if is_conditional(model) else ""
        body += ["<h2>Samples</h2>",
                 H.figure(figures["scatter"], "samples over the data's modes",
                          H.esc(f"{N_SCATTER} samples (seed {SAMPLE_SEED}){colour} over {over}. A model that "
                                "covers every mode puts a cluster on each; mode collapse leaves modes empty."))]
    scale = 1.5 if image_data and max(cfg["shape"][1:]) <= 16 else 1.0
    if "reconstructions" in figures:
        body += ["<h2>Reconstructions</h2>",
                 H.figure(figures["reconstructions"], "test images and reconstructions",
                          "Test images (odd rows) above their reconstructions (even rows)"
                          + (", decoded from the posterior mean." if getattr(model, "generative", False) else "."),
                          grid=True, scale=scale)]
    if "samples" in figures:
        if gan:
            ema = " (the moving average of G's weights)" if cfg.get("model_config", {}).get("ema") else ""
            labels = ", with labels drawn uniformly" if is_conditional(model) else ""
            cap = f"{N_SAMPLES} samples G(z){ema}: z drawn from N(0, I) with seed {SAMPLE_SEED}{labels}."
        else:
            cap = f"{N_SAMPLES} samples: z drawn from the prior with seed {SAMPLE_SEED}, shown as the decoder's mean."
        body += ["<h2>Samples</h2>", H.figure(figures["samples"], "samples", H.esc(cap), grid=True, scale=scale)]
    if "per_class" in figures:
        names = _class_names(run, data)
        k = num_classes(model)
        shown = min(k, MAX_CLASS_ROWS)
        rows = ", ".join(class_name(c, names) for c in range(shown))
        more = f" (the first {shown} of {k} classes)" if shown < k else ""
        body += ["<h2>Samples per class</h2>",
                 H.figure(figures["per_class"], f"samples per class, one row per class: {rows}",
                          H.esc(f"One row of {PER_CLASS} samples per class{more}, top to bottom: {rows}. Column j uses "
                                f"the same z in every row (seed {SAMPLE_SEED}); only the label changes."),
                          grid=True, scale=scale)]
    if "interpolation" in figures:
        if has_encoder(model):
            cap = (f"Each row: a test image, {INTERP_STEPS} decodings of evenly spaced points on the "
                   "line between its posterior mean and that of a second test image (ends included), "
                   "then the second image.")
        else:
            cap = (f"Each row: G at {LATENT_INTERP_STEPS} evenly spaced points on the line between two latent "
                   f"points z0 and z1 drawn from N(0, I) (seed {SAMPLE_SEED}; ends included: the first column "
                   "is G(z0), the last G(z1)).")
            if is_conditional(model):
                cap += " The label is fixed along each row: row i has class i mod classes."
        body += ["<h2>Interpolation</h2>",
                 H.figure(figures["interpolation"], "latent interpolation", H.esc(cap), grid=True, scale=scale)]

    body += ["<h2>Configuration</h2>", _config_tables(run)]
    return H.page(f"genlab report: {title}", "\n".join(body))


def _classification_section(run, metrics: dict, figures: dict[str, bytes]) -> list[str]:
    """How the classifier was made (backbone, weights, strategy and why) and how it does per
    class: precision, recall, F1 and the confusion matrix."""
    mc = run.config.get("model_config", {})
    strategy = mc.get("chosen_strategy") or mc.get("strategy", "?")
    how = (f"Backbone {mc.get('backbone', '?')}, weights: {run.config.get('weights_source', mc.get('weights', '?'))}. "
           f"Strategy {strategy}")
    if mc.get("strategy") == "auto" and mc.get("strategy_reason"):
        how += f", chosen by auto: a {mc['strategy_reason']}"
    out = ["<h2>Classification</h2>", f"<p>{H.esc(how + '.')}</p>"]
    rows = [(r["class"], H.fmt(r["precision"]), H.fmt(r["recall"]), H.fmt(r["f1"]), r["support"])
            for r in metrics.get("per_class", [])]
    if rows:
        out.append(H.table(["class", "precision", "recall", "F1", "test images"], rows, num_cols=[1, 2, 3, 4]))
    if "confusion" in figures:
        out.append(H.figure(figures["confusion"], "confusion matrix",
                            "Confusion matrix on the test split: row = true class, column = predicted class; the "
                            "number is the count of test images, the shade the share of the true class (the "
                            "diagonal is each class's recall)."))
    return out


def _class_names(run, data=None) -> list[str] | None:
    data = data if data is not None else getattr(run, "_data", None)
    return list(data.classes) if data is not None and data.classes else None


def write_report(run, out: str | Path | None = None, data_root: str | None = None) -> Path:
    """Write ``run``'s HTML report to ``out`` (default ``RUN_DIR/report.html``, or
    ``RUN_DIR/report-best.html`` for a run opened with ``best=True``), atomically, and
    return its path. ``data_root`` says where the data set lives if not where it was trained.

    A missing data set raises the data set's :class:`~genlab.errors.DataError`: the test images
    are needed for the reconstructions (and the metrics when ``eval.json`` is absent)."""
    if isinstance(run, (str, Path)):
        from ..run import load_run

        run = load_run(run)
    out = Path(out) if out is not None else run.path / ("report-best.html" if getattr(run, "best", False) else "report.html")
    data = run.data(data_root)
    metrics = test_metrics(run, data, data_root)
    records = run.metrics()
    figures = report_figures(run, data, records)
    if "confusion" in metrics:
        from .plots import confusion_png

        figures["confusion"] = confusion_png(metrics["confusion"], metrics.get("class_names") or
                                             [str(i) for i in range(len(metrics["confusion"]))])
    atomic_write_text(out, render_report(run, metrics, figures, records, data))
    return out
