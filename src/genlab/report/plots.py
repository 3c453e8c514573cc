"""Loss curves from ``metrics.jsonl``, drawn with matplotlib's Agg canvas (no pyplot, no global
backend switch) and returned as PNG bytes."""
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
