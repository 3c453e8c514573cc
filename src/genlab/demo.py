"""``genlab demo``: the project's main job on embedded data, in about a minute on 2 CPU cores.

It trains a VAE and an autoencoder of the same size on scikit-learn's 8x8 digits, evaluates both
on the test split, writes each run's report and an index page comparing them::

    OUT/vae-digits/        a run directory (report.html inside)
    OUT/ae-digits/
    OUT/index.html         links, a metrics table, VAE samples, interpolation and curves

Running it again replaces the two run directories (only directories holding a run of the
expected model are ever deleted). ``write_readme_figures`` saves the README's pictures.
"""
from __future__ import annotations

import json
import math
import shutil
import sys
import time
from pathlib import Path

from .errors import ConfigError, RunError
from .io import atomic_write_bytes, atomic_write_text

DATA = "digits"
DEMO_EPOCHS = 200
BATCH_SIZE = 64
VAL_FRACTION = 0.1
SEED = 0
GRIDS_PER_RUN = 8  # progress grids in each run's samples/ folder
ARCH = {"model.hidden": [256, 128], "model.latent": 4}  # 4: the sharpest samples on digits
# (model, run folder, extra settings): the same MLP for both, so the table compares objectives.
MODELS = [
    ("vae", "vae-digits", {}),
    ("ae", "ae-digits", {}),
]
COMPARE = ["nelbo", "kl", "bce", "sse", "mse", "psnr"]


def _log(msg: str) -> None:
    print(f"genlab demo: {msg}", file=sys.stderr, flush=True)


def _previous_run(run_dir: Path, model: str) -> bool:
    """True when ``run_dir`` holds a run an earlier demo left (to be replaced), False when it
    is absent or an empty folder; raises for anything else, which the demo never deletes."""
    if not run_dir.exists():
        return False
    if not run_dir.is_dir():
        raise ConfigError(f"--out: {run_dir} is a file, not a demo run directory; move it away or choose another --out")
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        if any(run_dir.iterdir()):
            raise ConfigError(f"--out: {run_dir} exists and is not a genlab run (no config.json); "
                              "the demo will not delete it; move it away or choose another --out")
        return False
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise RunError(f"{cfg_path}: unreadable ({e}); the demo will not delete {run_dir}") from None
    data = cfg.get("data", {}).get("name") if isinstance(cfg.get("data"), dict) else None
    if cfg.get("model") != model or data != DATA:
        raise ConfigError(f"--out: {run_dir} holds a {cfg.get('model')!r} run on {data!r}, not the demo's "
                          f"{model!r} on {DATA!r}; the demo will not delete it; choose another --out")
    return True


def _steps_per_epoch() -> int:
    from .data import DataConfig, load_data

    n = len(load_data(DataConfig(name=DATA, val_fraction=VAL_FRACTION)).train)
    return math.ceil(n / BATCH_SIZE)


def _train_one(model: str, run_dir: Path, extra: dict, epochs: int, progress: bool):
    from .run import train

    sample_every = max(1, epochs * _steps_per_epoch() // GRIDS_PER_RUN)
    settings = {**ARCH, **extra, "data.val_fraction": VAL_FRACTION, "train.threads": 1,
                "train.sample_every": sample_every}
    return train(model, DATA, out=run_dir, set=settings, epochs=epochs, batch_size=BATCH_SIZE,
                 seed=SEED, device="cpu", progress=progress)


def _eval(run) -> dict:
    return json.loads((run.path / "eval.json").read_text())


def _summary_table(rows: list[tuple[str, dict, dict]]) -> str:
    cols = ["params", "train_s"] + COMPARE
    lines = [f"{'model':<6}" + "".join(f"{c:>10}" for c in cols)]
    for name, cfg, ev in rows:
        vals = [f"{cfg.get('num_params', 0):,}", f"{ev.get('train_seconds', float('nan')):.1f}"]
        vals += [f"{ev[k]:.4g}" if k in ev else "-" for k in COMPARE]
        lines.append(f"{name:<6}" + "".join(f"{v:>10}" for v in vals))
    return "\n".join(lines)


def _comparison_note(evs: dict) -> str:
    vae, ae = evs["vae"].get("sse"), evs["ae"].get("sse")
    if vae is None or ae is None:
        return ""
    if ae < vae:
        return (f"The autoencoder reconstructs better (squared error {ae:.3g} against {vae:.3g}): it spends its "
                "code on reconstruction alone, while the VAE pays for each nat of code in KL and in return "
                "can sample.")
    return f"The VAE reconstructs as well as the autoencoder (squared error {vae:.3g} against {ae:.3g}) and can also sample."


def _index_html(out: Path, runs: list, figs: dict[str, dict[str, bytes]], epochs: int, seconds: float) -> str:
    from .report import METRIC_HELP
    from .report import html as H

    vae = next(r for r in runs if r.model_name == "vae")
    evs = {r.model_name: _eval(r) for r in runs}
    n_test = evs["vae"].get("n", "?")
    data = vae.data()
    n_train, n_val = len(data.train), (len(data.val) if data.val is not None else 0)

    links = "".join(
        f'<li><a href="{H.esc(r.path.name)}/report.html">{H.esc(r.model_name)}</a>: '
        f'{H.esc(r.path.name)}/ ({r.config.get("num_params", 0):,} parameters)</li>' for r in runs)
    rows = []
    for k in COMPARE:
        if any(k in evs[r.model_name] for r in runs):
            rows.append([k] + [H.fmt(evs[r.model_name][k]) if k in evs[r.model_name] else "–" for r in runs]
                        + [METRIC_HELP.get(k, "")])
    rows.append(["parameters"] + [f"{r.config.get('num_params', 0):,}" for r in runs] + ["weights and biases"])
    rows.append(["train seconds"] + [f"{evs[r.model_name].get('train_seconds', float('nan')):.1f}" for r in runs]
                + [f"{epochs} epochs each, batch {BATCH_SIZE}, one CPU thread"])
    table = H.table(["metric"] + [r.model_name for r in runs] + ["meaning"], rows,
                    num_cols=range(1, len(runs) + 1), note_cols=[len(runs) + 1])

    v, a = figs["vae"], figs["ae"]
    hidden = ARCH["model.hidden"]
    body = [
        "<h1>genlab demo: a VAE and an autoencoder on digits</h1>",
        f'<p class="sub">output <code>{H.esc(out.resolve())}</code> &middot; {seconds:.0f} s in all &middot; '
        f"written {time.strftime('%Y-%m-%d %H:%M')}</p>",
        "<p>Both models are the same MLP (64 &rarr; "
        + " &rarr; ".join(str(h) for h in hidden) + f" &rarr; code of {ARCH['model.latent']} and back), trained "
        f"for {epochs} epochs with Adam on scikit-learn's 8x8 handwritten digits ({n_train} training, {n_val} "
        f"validation, {n_test} test images, pixel values scaled to [0, 1]). The VAE maximises the ELBO with a "
        "Bernoulli decoder; the autoencoder minimises the squared reconstruction error. "
        "Reproduce with <code>genlab demo --out DIR</code>.</p>",
        f"<h2>Reports</h2><ul>{links}</ul>",
        "<h2>Test metrics</h2>",
        "<p>Lower is better except psnr. nelbo and kl exist only for the VAE: the autoencoder has no "
        "likelihood. " + _comparison_note(evs) + "</p>",
        table,
    ]
    if "samples" in v:
        body += ["<h2>VAE samples</h2>",
                 H.figure(v["samples"], "VAE samples", "64 samples from the prior (seed 0), decoder means.",
                          grid=True, scale=1.5)]
    if "interpolation" in v:
        body += ["<h2>VAE interpolation</h2>",
                 H.figure(v["interpolation"], "VAE latent interpolation",
                          "Each row: a test image, 8 decodings along the line between its posterior mean and "
                          "that of another digit's image, then that image.", grid=True, scale=1.5)]
    if "curves" in v:
        body += ["<h2>VAE training curves</h2>",
                 H.figure(v["curves"], "VAE loss curves",
                          "Left: training loss (negative ELBO) and validation negative ELBO per epoch. "
                          "Right: its two terms, reconstruction and KL.")]
    if "reconstructions" in v and "reconstructions" in a:
        body += ["<h2>Reconstructions</h2>",
                 '<div class="row">',
                 H.figure(v["reconstructions"], "VAE reconstructions", "VAE: test images above their reconstructions.",
                          grid=True),
                 H.figure(a["reconstructions"], "AE reconstructions", "Autoencoder: the same test images.", grid=True),
                 "</div>"]
    if "curves" in a:
        body += ["<h2>Autoencoder training curve</h2>",
                 H.figure(a["curves"], "AE loss curve",
                          "Training loss (squared error per image) and validation squared error.")]
    return H.page("genlab demo", "\n".join(body))


def run_demo(out: str | Path = "demo-out", epochs: int | None = None, progress: bool = False,
             figures_dir: str | Path | None = None) -> Path:
    """Train, evaluate and report a VAE and an autoencoder on ``digits``; return ``OUT/index.html``.

    ``epochs`` overrides the demo's own (200 each); ``figures_dir`` also writes the README's
    pictures there (see :func:`write_readme_figures`)."""
    import torch

    from .report import report_figures, write_report

    if epochs is not None and epochs < 1:
        raise ConfigError(f"--epochs: expected a positive number of epochs, got {epochs}")
    epochs = epochs or DEMO_EPOCHS
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out: {out} is a file; the demo needs a folder")
    stale = [out / folder for model, folder, _ in MODELS if _previous_run(out / folder, model)]
    for run_dir in stale:  # only once both folders passed the check
        _log(f"replacing the previous demo run in {run_dir}")
        shutil.rmtree(run_dir)

    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    runs, rows, figs = [], [], {}
    try:
        for model, folder, extra in MODELS:
            _log(f"training {model} on {DATA} for {epochs} epochs -> {out / folder}")
            run = _train_one(model, out / folder, extra, epochs, progress)
            write_report(run)
            figs[model] = report_figures(run, run.data())
            runs.append(run)
            rows.append((model, run.config, _eval(run)))
    finally:
        torch.set_num_threads(threads)  # the runs use one thread (small matrices); give the rest back
    seconds = time.perf_counter() - t0
    index = out / "index.html"
    atomic_write_text(index, _index_html(out, runs, figs, epochs, seconds))
    if figures_dir is not None:
        write_readme_figures(figures_dir, out)
    print(_summary_table(rows), file=sys.stderr)
    _log(f"{seconds:.0f} s; open {index}")
    return index


README_FIGURES = {
    "vae-samples.png": ("vae", "samples"),
    "vae-interpolation.png": ("vae", "interpolation"),
    "vae-reconstructions.png": ("vae", "reconstructions"),
    "ae-reconstructions.png": ("ae", "reconstructions"),
    "vae-loss-curves.png": ("vae", "curves"),
}


def write_readme_figures(out_dir: str | Path = "docs/images", demo_out: str | Path = "demo-out") -> list[Path]:
    """Save the README's pictures (small PNGs) from the demo's runs in ``demo_out`` to
    ``out_dir``; returns their paths. Run ``genlab demo`` first."""
    from .report import figures as F
    from .report.plots import loss_curves_png
    from .run import load_run

    demo_out, out_dir = Path(demo_out), Path(out_dir)
    runs = {}
    for model, folder, _ in MODELS:
        if not (demo_out / folder / "config.json").is_file():
            raise RunError(f"{demo_out / folder}: no demo run there; run `genlab demo --out {demo_out}` first")
        runs[model] = load_run(demo_out / folder)
    written = []
    for name, (model, kind) in README_FIGURES.items():
        run = runs[model]
        data = run.data()
        vr = tuple(data.value_range)
        x, y = data.eval_inputs("test")
        up = 6 if max(data.shape[1:]) <= 16 else 0  # 8x8 digits: 48 px each
        if kind == "samples":
            png = F.samples_png(run.model, vr, upscale=up)
        elif kind == "interpolation":
            x0, x1 = F.interpolation_pairs(x, y)
            png = F.interpolation_png(run.model, x0, x1, vr, upscale=up)
        elif kind == "reconstructions":
            png = F.reconstructions_png(run.model, x[:F.N_RECON], vr, upscale=4 if up else 0)
        else:
            records = run.metrics()
            png = loss_curves_png(records, val_key=F.val_key_for(run, records))
        path = out_dir / name
        atomic_write_bytes(path, png)
        written.append(path)
    return written
