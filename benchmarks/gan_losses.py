"""The three generator losses of the lectures from one initialisation: minimax
(log(1 - D(G(z))), saturating), non-saturating (-log D(G(z))) and maximum likelihood
(-exp(logit) / 2). Goodfellow et al. (2014) argue that early in training, when D rejects the
samples easily, the minimax loss gives the generator almost no gradient. The benchmark logs the
generator's gradient norm over the first steps and the final outcome, on ring8 (the MLP `gan`)
and on MNIST (`dcgan`)."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

NAME = "gan-losses"
DESCRIPTION = "minimax vs non-saturating vs ML generator loss from one initialisation: early gradient norm of G and outcome (ring8, MNIST)"
SETTINGS = ("ring_steps", "mnist_steps", "seed")
LOSSES = ("minimax", "nonsaturating", "ml")


def _curve(run, key="grad_norm_g"):
    return [(r["step"], r[key]) for r in run.metrics() if r.get("split") == "train" and key in r]


def run(ctx) -> dict:
    import numpy as np

    import genlab
    from genlab.models.gans.gan import PACGAN_MODEL, PACGAN_TRAIN

    ring_steps = ctx.param("ring_steps", 3000, quick=60)
    mnist_steps = ctx.param("mnist_steps", 300, quick=10)
    seed = ctx.param("seed", 0)
    root = ctx.need_mnist()
    out, rows, curves = {}, [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for loss in LOSSES:
            r = genlab.train("gan", "ring8", out=Path(tmp) / f"ring-{loss}", steps=ring_steps, seed=seed,
                             set={**PACGAN_MODEL, **PACGAN_TRAIN, "g_loss": loss, "train.threads": 1,
                                  "train.log_every": 10, "train.checkpoint_every": 0})
            ev = json.loads((r.path / "eval.json").read_text())
            c = _curve(r)
            curves[f"ring8 {loss}"] = c
            early = float(np.median([v for s, v in c if s <= 200]))
            out[f"ring8_{loss}"] = {"early_grad_norm_g": early, **{k: ev[k] for k in ("modes", "high_quality", "reverse_kl")}}
            rows.append({"data": "ring8 (gan)", "g_loss": loss, "median |grad G|, steps 1-200": f"{early:.3g}",
                         "outcome": f"{ev['modes']} modes, HQ {100 * ev['high_quality']:.1f}%, rev-KL {ev['reverse_kl']:.2f}",
                         "steps": ring_steps})
        for loss in LOSSES:
            sets = {"g_loss": loss, "train.threads": 2, "train.log_every": 5, "train.checkpoint_every": 0}
            if ctx.quick:
                sets["data.limit"] = 2000
            r = genlab.train("dcgan", "mnist", data_root=root, out=Path(tmp) / f"mnist-{loss}", steps=mnist_steps,
                             batch_size=128, seed=seed, set=sets)
            ev = r.evaluate("test", root=root, sample_n=2000)
            c = _curve(r)
            curves[f"mnist {loss}"] = c
            early = float(np.median([v for s, v in c if s <= 50]))
            out[f"mnist_{loss}"] = {"early_grad_norm_g": early, "fid_2k": ev["fid"], "modes_hit": ev["modes_hit"],
                                    "kl_to_uniform": ev["kl_to_uniform"]}
            rows.append({"data": "MNIST (dcgan)", "g_loss": loss, "median |grad G|, steps 1-200": f"{early:.3g} (steps 1-50)",
                         "outcome": f"FID {ev['fid']:.1f} (2k samples), {ev['modes_hit']} digits, KL {ev['kl_to_uniform']:.2f}",
                         "steps": mnist_steps})
    fig = None
    if not ctx.quick:
        fig = _plot(curves)
    return {"results": out, "curves": curves, "figure": fig, "table": rows,
            "protocol": (f"Same seed ({seed}) and so the same initial weights for the three losses. ring8: genlab `gan` "
                         f"with the PacGAN networks (PACGAN_MODEL: G 4x400 ReLU+BN, D 3x200 maxout), batch 100, Adam 1e-4 beta1 0.8, {ring_steps} steps, outcome on 2500 "
                         f"samples. MNIST: `dcgan` defaults at 28 px, batch 128, {mnist_steps} steps, FID/digits on 2000 "
                         "samples with mnist-cnn. |grad G| is the global gradient norm of the generator's loss, logged "
                         "every 10 (ring8) or 5 (MNIST) steps, averaged over each logging window")}


def _plot(curves) -> str:
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genlab.bench import REPO_ROOT

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, data in zip(axes, ("ring8", "mnist")):
        for name, c in curves.items():
            if name.startswith(data) and c:
                s, v = zip(*c)
                ax.plot(s, v, label=name.split(" ", 1)[1])
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("generator gradient norm")
        ax.set_title({"ring8": "ring8, MLP gan", "mnist": "MNIST, dcgan"}[data])
        ax.legend()
    fig.tight_layout()
    d = Path(os.environ.get("GENLAB_BENCH_FIGURES") or (REPO_ROOT / "benchmarks" / "results" / "figures"))
    d.mkdir(parents=True, exist_ok=True)
    from genlab.io import atomic_write_bytes
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(d / "gan-losses-grad-norm.png", buf.getvalue())
    return str((d / "gan-losses-grad-norm.png").relative_to(REPO_ROOT))
