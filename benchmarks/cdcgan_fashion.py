"""Conditional DCGAN on Fashion-MNIST: does the generator draw the class it is asked for?
1000 samples of each of the 10 classes are classified by the shipped `fashion-cnn`; the
accuracy per class is compared with the classifier's own accuracy on the real test images of
that class (the ceiling a perfect generator of test-like images would meet). The issue's
target: >= 90% for every class. Also FID and KID (fashion-cnn features) of 10000 samples with
uniform labels against the 10000 test images.

The default set-up (projection discriminator with an AC-GAN head of weight 3, lazy R1 with gamma
1 every 8 D steps, generator EMA 0.999, batch 64, 8000 steps) is the one that met the target on
seed 0: every class >= 97.5%, FID 7.40. Without R1 (`--set r1=0`) FID is 4.31 but shirts reach
only 87.7% (see the README)."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

NAME = "cdcgan-fashion"
DESCRIPTION = "conditional DCGAN on Fashion-MNIST: fashion-cnn accuracy on 1000 samples per requested class, FID/KID (fashion-cnn)"
SETTINGS = ("steps", "batch", "ema", "ema_warmup", "ema_bn", "conditioning", "aux_weight", "threads", "seed", "per_class", "r1", "r1_every")


def run(ctx) -> dict:
    import numpy as np
    import torch

    import genlab
    from genlab.metrics import core
    from genlab.metrics.api import featurise
    from genlab.metrics.extractors import get_extractor

    root = ctx.need_mnist("FashionMNIST")
    steps = ctx.param("steps", 8000, quick=20)
    batch = ctx.param("batch", 64)
    ema = ctx.param("ema", 0.999, quick=0.0)
    ema_warmup = ctx.param("ema_warmup", False)
    ema_bn = ctx.param("ema_bn", 0)
    cond = ctx.param("conditioning", "projection")
    aux = ctx.param("aux_weight", 3.0)
    threads = ctx.param("threads", 1)
    seed = ctx.param("seed", 0)
    per_class = ctx.param("per_class", 1000, quick=50)
    r1, r1_every = ctx.param("r1", 1.0), ctx.param("r1_every", 8)
    sets = {"ema": ema, "ema_warmup": ema_warmup, "ema_bn": ema_bn, "conditioning": cond, "aux_weight": aux, "r1": r1, "r1_every": r1_every,  # lazy R1 (see dcgan-mnist)
            "train.threads": threads, "train.log_every": 100, "train.checkpoint_every": 0}
    if ctx.quick:
        sets["data.limit"] = 2000
    ext = get_extractor("fashion-cnn")
    with tempfile.TemporaryDirectory() as tmp:
        r = genlab.train("cdcgan", "fashion-mnist", data_root=root, out=Path(tmp) / "run", steps=steps, batch_size=batch,
                         seed=seed, set=sets, progress=ctx.progress)
        train_s = json.loads((r.path / "eval.json").read_text())["train_seconds"]
        model, data = r.model, r.data(root)
        names = data.classes
        g = torch.Generator().manual_seed(1)
        acc, grid = [], []
        for c in range(10):
            x = model.sample_class(per_class, c, generator=g).cpu()
            _, lg = featurise(x, ext, logits=True, use_cache=False)
            acc.append(float((lg.argmax(1) == c).mean()))
            grid.append(x[:10])
        xr, yr = data.eval_inputs("test")
        fr, lr = featurise(xr.cpu(), ext, logits=True)
        real_acc = [float((lr.argmax(1)[yr.numpy() == c] == c).mean()) for c in range(10)]
        xs = model.sample(10000 if not ctx.quick else 500, generator=torch.Generator().manual_seed(2)).cpu()
        fs, _ = featurise(xs, ext, logits=False, use_cache=False)
        fid = core.frechet_distance(fr, fs)
        kid = core.kernel_inception_distance(fr, fs, seed=0)
        fig = ctx.figure("cdcgan-fashion-per-class.png", torch.cat(grid), nrow=10)
    rows = [{"class": f"{c} {names[c]}", "fashion-cnn accuracy on samples": f"{100 * acc[c]:.1f}%",
             "on real test images": f"{100 * real_acc[c]:.1f}%"} for c in range(10)]
    rows.append({"class": "mean", "fashion-cnn accuracy on samples": f"{100 * np.mean(acc):.1f}%",
                 "on real test images": f"{100 * np.mean(real_acc):.1f}%"})
    rows.append({"class": f"FID / KID x 1e3 (10k samples vs test)", "fashion-cnn accuracy on samples":
                 f"{fid:.2f} / {1e3 * kid['kid_mean']:.1f} +- {1e3 * kid['kid_std']:.1f}", "on real test images": "-"})
    return {
        "aux_weight": aux, "conditioning": cond, "r1": r1, "r1_every": r1_every, "accuracy": acc, "real_accuracy": real_acc, "min_accuracy": min(acc), "mean_accuracy": float(np.mean(acc)),
        "fid": fid, "kid_mean": kid["kid_mean"], "kid_std": kid["kid_std"], "classes": names, "steps": steps,
        "train_seconds": train_s, "cpu_minutes": round(train_s * threads / 60, 1), "figure": fig, "table": rows,
        "protocol": (f"Fashion-MNIST {'first 2000' if ctx.quick else '60000'} training images with labels, in [0, 1]; "
                     f"genlab `cdcgan` at 28 px (dcgan networks, label one-hot to z, {cond} discriminator"
                     f"{f', AC-GAN auxiliary classifier weight {aux}' if aux else ''}), "
                     f"{'generator EMA ' + str(ema) + (' with a warm-up' if ema_warmup else '') + (f', its BatchNorm statistics recomputed from {ema_bn} samples' if ema_bn else '') if ema else 'no EMA'}, non-saturating loss, Adam 2e-4, beta1 0.5, "
                     f"{f'lazy R1 gamma {r1:g} every {r1_every} D steps, ' if r1 else ''}"
                     f"batch {batch}, {steps} steps, seed {seed}, {threads} torch thread(s). Per class: {per_class} samples "
                     "(seed 1) classified by the shipped fashion-cnn, accuracy = share predicted as the requested class; "
                     "reference: fashion-cnn's accuracy on that class's 1000 real test images. FID/KID: fashion-cnn "
                     "features of 10000 samples (uniform labels, seed 2) against the 10000 test images"),
    }
