"""Plots from ``metrics.jsonl`` (loss curves; a GAN's losses, discriminator outputs, gradient
norms and quality checks) and scatter plots of 2-D samples, drawn with matplotlib's Agg canvas
(no pyplot, no global backend switch) and returned as PNG bytes."""
from __future__ import annotations

import io


def _positive_spread(values: list[float]) -> float:
    v = [x for x in values if x > 0]
    return max(v) / min(v) if v and len(v) == len(values) else 0.0


def loss_curves_png(records: list[dict], val_key: str | None = None, title: str = "") -> bytes | None:
    """Train loss against step, with the validation value ``val_key`` when the run has ``val``
    lines; for VAEs (train lines carrying ``kl``) a second axes shows the reconstruction term
    and the KL. Returns None when there are no train lines."""
    from matplotlib.figure import Figure

    train = [r for r in records if r.get("split") == "train" and "loss" in r]
    if not train:
        return None
    val = [r for r in records if r.get("split") == "val"]
    vae = all("kl" in r and "recon" in r for r in train)
    ncols = 2 if vae else 1
    fig = Figure(figsize=(4.4 * ncols, 3.1), dpi=100, layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]

    steps = [r["step"] for r in train]
    ax = axes[0]
    plotted = [r["loss"] for r in train]
    ax.plot(steps, plotted, color="C0", lw=1.2, label="train loss")
    if vae and any(abs(r.get("nelbo", r["loss"]) - r["loss"]) > 1e-6 * max(1.0, abs(r["loss"])) for r in train):
        ys = [r["nelbo"] for r in train]  # beta != 1: the loss is not the negative ELBO
        ax.plot(steps, ys, color="C2", lw=1.0, label="train nelbo")
        plotted += ys
    if val_key and val and all(val_key in r for r in val):
        ys = [r[val_key] for r in val]
        ax.plot([r["step"] for r in val], ys, color="C1", lw=1.2, marker="o" if len(val) < 30 else None,
                ms=3, label=f"val {val_key}")
        plotted += ys
    if _positive_spread(plotted) > 10:
        from matplotlib.ticker import FuncFormatter, LogLocator

        ax.set_yscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:g}")  # 0.5, 1, 2 rather than 5x10^-1
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        ax.yaxis.set_minor_formatter(plain)
    ax.set_xlabel("step")
    ax.set_ylabel("per image")
    ax.set_title("loss" if not title else f"{title}: loss", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)

    if vae:
        ax = axes[1]
        ax.plot(steps, [r["recon"] for r in train], color="C0", lw=1.2, label="train recon")
        ax.plot(steps, [r["kl"] for r in train], color="C3", lw=1.2, label="train KL")
        if val and all("nelbo" in r and "kl" in r for r in val):
            vs = [r["step"] for r in val]
            ax.plot(vs, [r["nelbo"] - r["kl"] for r in val], color="C0", lw=1.0, ls="--", label="val recon")
            ax.plot(vs, [r["kl"] for r in val], color="C3", lw=1.0, ls="--", label="val KL")
        ax.set_xlabel("step")
        ax.set_ylabel("nats per image")
        ax.set_title("reconstruction term and KL", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, frameon=False)

    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _save(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _series(rows: list[dict], key: str) -> tuple[list, list]:
    """(steps, values) of the rows that carry ``key`` (a GAN logs g_loss only in windows with a
    generator step)."""
    pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
    return [p[0] for p in pts], [p[1] for p in pts]


def _log_y(ax) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.set_yscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
    ax.yaxis.set_minor_formatter(plain)


def _finish(ax, title: str, ylabel: str) -> None:
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=8, frameon=False)


def quality_lines(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("split") == "quality" and isinstance(r.get("score"), (int, float))]


QUALITY_COVERAGE = {"modes_hit": "classes hit", "modes": "modes captured"}


def _quality_axes(ax, quality: list[dict], best: dict | None) -> None:
    """The periodic quality score against step (``score_name``: fid or reverse_kl; lower is
    better), the best step marked, and the modes covered on a second y axis."""
    name = quality[-1].get("score_name", "score")
    steps, scores = _series(quality, "score")
    ax.plot(steps, scores, color="C0", lw=1.2, marker="o" if len(steps) < 40 else None, ms=3, label=name)
    if best is not None and isinstance(best.get("score"), (int, float)):
        ax.axvline(best["step"], color="C2", lw=0.9, ls="--")
        ax.plot([best["step"]], [best["score"]], marker="*", ms=11, color="C2", ls="none",
                label=f"best: step {best['step']}")
    if _positive_spread(scores) > 10:
        _log_y(ax)
    _finish(ax, f"sample quality: {name} (lower is better)", name)
    for key, label in QUALITY_COVERAGE.items():
        s, v = _series(quality, key)
        if s:
            ax2 = ax.twinx()
            ax2.plot(s, v, color="C1", lw=1.0, ls=":", marker="s" if len(s) < 40 else None, ms=2.5)
            top = max([r.get("num_modes", 0) for r in quality] + v + [1])
            ax2.set_ylim(-0.03 * top, 1.05 * top)
            ax2.set_ylabel(label, color="C1", fontsize=9)
            ax2.tick_params(axis="y", colors="C1", labelsize=8)
            break


def quality_png(records: list[dict], best: dict | None = None) -> bytes | None:
    """The quality checks of ``train.quality_every`` alone (models other than GANs); None
    without quality lines."""
    from matplotlib.figure import Figure

    quality = quality_lines(records)
    if not quality:
        return None
    fig = Figure(figsize=(4.8, 3.1), dpi=100, layout="constrained")
    _quality_axes(fig.subplots(), quality, best)
    return _save(fig)


def gan_curves_png(records: list[dict], best: dict | None = None, critic: bool = False) -> bytes | None:
    """A GAN's training: D and G losses (and the gradient penalty), D's mean outputs on real
    and generated data with its accuracy, the gradient norms of both networks (when logged), and
    the quality checks (when the run has ``quality`` lines) with the best step marked.
    ``critic``: D outputs raw scores (hinge, wasserstein) rather than probabilities. None
    without train lines."""
    from matplotlib.figure import Figure

    train = [r for r in records if r.get("split") == "train" and "d_loss" in r]
    if not train:
        return None
    quality = quality_lines(records)
    grads = any("grad_norm_d" in r or "grad_norm_g" in r for r in train)
    panels = ["loss", "d"] + (["grad"] if grads else []) + (["quality"] if quality else [])
    ncols = min(2, len(panels))
    nrows = (len(panels) + ncols - 1) // ncols
    fig = Figure(figsize=(4.6 * ncols, 3.1 * nrows), dpi=100, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).flatten()
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    for ax, panel in zip(axes, panels):
        if panel == "loss":
            for key, label, color, ls in (("d_loss", "D loss", "C3", "-"), ("g_loss", "G loss", "C0", "-"),
                                          ("gp", "gradient penalty", "C4", "--"), ("r1", "R1 penalty", "C5", "--")):
                s, v = _series(train, key)
                if s:
                    ax.plot(s, v, color=color, lw=1.2, ls=ls, label=label)
            _finish(ax, "losses (mean over each logging window)", "loss")
        elif panel == "d":
            what = "critic" if critic else "D"
            for key, label, color in (("d_real", f"mean {what}(x), real", "C2"),
                                      ("d_fake", f"mean {what}(G(z)), generated", "C1")):
                s, v = _series(train, key)
                if s:
                    ax.plot(s, v, color=color, lw=1.2, label=label)
            s, v = _series(train, "d_acc")
            if critic:
                if s:
                    ax2 = ax.twinx()
                    ax2.plot(s, v, color="0.4", lw=1.0, ls=":", label="D accuracy")
                    ax2.set_ylim(-0.02, 1.02)
                    ax2.set_ylabel("D accuracy (dotted)", fontsize=9)
                _finish(ax, "critic's mean scores", "critic output")
            else:
                if s:
                    ax.plot(s, v, color="0.4", lw=1.0, ls=":", label="D accuracy")
                ax.axhline(0.5, color="0.6", lw=0.7)
                ax.set_ylim(-0.02, 1.02)
                _finish(ax, "discriminator outputs", "probability")
        elif panel == "grad":
            vals = []
            for key, label, color in (("grad_norm_d", "D", "C3"), ("grad_norm_g", "G", "C0")):
                s, v = _series(train, key)
                if s:
                    ax.plot(s, v, color=color, lw=1.2, label=label)
                    vals += v
            if _positive_spread(vals) > 10:
                _log_y(ax)
            _finish(ax, "gradient norms (before clipping)", "global L2 norm")
        else:
            _quality_axes(ax, quality, best)
    return _save(fig)


def scatter2d_png(x, means=None, std: float | None = None, labels=None, ref=None, stats: dict | None = None) -> bytes:
    """2-D samples ``x`` (N x 2) as dots over the mixture ``means`` (K x 2; red crosses, with
    circles of 3 ``std``, the high-quality radius) or over reference points ``ref``; ``labels``
    colour the samples by class. The view spans the means and the bulk of the samples."""
    import numpy as np
    from matplotlib.figure import Figure

    x = np.asarray(x, dtype=np.float64).reshape(-1, 2)
    fig = Figure(figsize=(4.6, 4.6), dpi=100, layout="constrained")
    ax = fig.subplots()
    if ref is not None:
        r = np.asarray(ref, dtype=np.float64).reshape(-1, 2)
        ax.scatter(r[:, 0], r[:, 1], s=3, color="0.75", lw=0, label="test data")
    if labels is not None:
        ax.scatter(x[:, 0], x[:, 1], s=3, c=np.asarray(labels) % 10, cmap="tab10", vmin=0, vmax=9, lw=0, alpha=0.6)
    else:
        ax.scatter(x[:, 0], x[:, 1], s=3, color="C0", lw=0, alpha=0.5, label="samples")
    pts = [] if ref is None else [np.percentile(np.asarray(ref, dtype=np.float64).reshape(-1, 2), [1, 99], axis=0)]
    if len(x):
        pts.append(np.percentile(x, [1, 99], axis=0))
    if means is not None:
        m = np.asarray(means, dtype=np.float64)
        if std:
            from matplotlib.patches import Circle

            for c in m:
                ax.add_patch(Circle(tuple(c), 3 * std, fill=False, color="C3", lw=0.6, alpha=0.8))
        ax.scatter(m[:, 0], m[:, 1], marker="x", s=30, color="C3", lw=1.2, label="mixture means")
        pts.append(m)
    box = np.concatenate(pts) if pts else np.zeros((1, 2))
    lo, hi = box.min(0), box.max(0)
    mid, half = (lo + hi) / 2, 0.56 * max(float((hi - lo).max()), 1e-6)  # a square view, 12% margin
    ax.set_xlim(mid[0] - half, mid[0] + half)
    ax.set_ylim(mid[1] - half, mid[1] + half)
    ax.set_aspect("equal", adjustable="box")
    title = f"{len(x)} samples"
    if stats:
        title += f": {stats['modes']} of {stats['num_modes']} modes, high quality {stats['high_quality']:.2f}"
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=8, frameon=False, loc="upper right")
    return _save(fig)


def confusion_png(confusion: list[list[int]], names: list[str]) -> bytes:
    """A confusion matrix (rows: true class, columns: predicted), each row shaded by its share
    of the true class (recall on the diagonal) and labelled with its count."""
    import numpy as np
    from matplotlib.figure import Figure

    cm = np.asarray(confusion, dtype=np.int64)
    k = len(cm)
    share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    side = min(2.0 + 0.45 * k, 11.0)
    fig = Figure(figsize=(side + 1.2, side), dpi=100, layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    if k <= 30:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7 if k > 12 else 8,
                            color="white" if share[i, j] > 0.5 else "black")
    labels = [n if len(n) <= 12 else n[:11] + "." for n in names]
    ax.set_xticks(range(k), labels, rotation=60 if k > 5 else 0, ha="right" if k > 5 else "center", fontsize=8)
    ax.set_yticks(range(k), labels, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.colorbar(im, ax=ax, shrink=0.8, label="share of the true class")
    return _save(fig)
