"""DCGAN on MNIST (28 px) within a CPU budget: FID and KID with the shipped `mnist-cnn`
extractor against the MNIST train/test baseline (`genlab bench metrics-baselines`: FID 0.18),
Inception Score, and the predicted-digit histogram's KL to uniform (target <= 0.02), on 10000
samples against the 10000 test images. The issue asks for training that fits in 15 minutes on
this 2-core CPU; the sample grid goes to the README.

The default set-up (batch 64, 6000 steps, lazy R1 with gamma 1 every 8 D steps, no EMA) was
chosen by single runs on seed 0 with 1 thread each, scored by the same protocol (see the README):
R1 takes the digit-histogram KL from 0.094 to 0.025-0.031, twice the updates at half the batch
from 0.025 to 0.020, and an EMA of 0.999 over so short a run raises it again (0.035-0.088)."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

NAME = "dcgan-mnist"
DESCRIPTION = "DCGAN on MNIST 28 px in about 15 minutes on 2 threads: FID/KID/IS (mnist-cnn, 10k samples vs test) and digit-histogram KL"
SETTINGS = ("steps", "threads", "seed", "ema", "ema_warmup", "ema_bn", "pack", "batch", "g_width", "d_width", "r1", "r1_every", "lr", "schedule")


def run(ctx) -> dict:
    import torch

    import genlab

    root = ctx.need_mnist()
    steps = ctx.param("steps", 6000, quick=20)
    threads = ctx.param("threads", 2)
    seed = ctx.param("seed", 0)
    ema = ctx.param("ema", 0.0)
    ema_warmup = ctx.param("ema_warmup", False)
    ema_bn = ctx.param("ema_bn", 0)
    pack = ctx.param("pack", 1)
    batch = ctx.param("batch", 64)
    g_width, d_width = ctx.param("g_width", 64), ctx.param("d_width", 64)
    r1, r1_every = ctx.param("r1", 1.0), ctx.param("r1_every", 8)
    lr, schedule = ctx.param("lr", 2e-4), ctx.param("schedule", "constant")
    sets = {"train.threads": threads, "train.log_every": 100, "train.checkpoint_every": 0, "ema": ema, "ema_warmup": ema_warmup, "ema_bn": ema_bn, "pack": pack,
            "g_width": g_width, "d_width": d_width, "r1": r1, "r1_every": r1_every, "g_lr": lr, "d_lr": lr,
            "train.lr": lr, "train.schedule": schedule}
    if ctx.quick:
        sets["data.limit"] = 2000
    with tempfile.TemporaryDirectory() as tmp:
        run_ = genlab.train("dcgan", "mnist", data_root=root, out=Path(tmp) / "run", steps=steps, batch_size=batch,
                            seed=seed, set=sets, progress=ctx.progress)
        train_s = json.loads((run_.path / "eval.json").read_text())["train_seconds"]
        ev = run_.evaluate("test", root=root, sample_n=2000 if ctx.quick else 10000)
        fig = ctx.figure("dcgan-mnist-samples.png", run_.sample(100, seed=0), nrow=10)
        logs = [r for r in run_.metrics() if r.get("split") == "train"]
    n_par = sum(p.numel() for p in run_.model.parameters())
    rows = [{"what": "FID (mnist-cnn), 10k samples vs test", "genlab dcgan": round(ev["fid"], 2), "MNIST train vs test": 0.18},
            {"what": "KID x 1e3", "genlab dcgan": f"{1e3 * ev['kid_mean']:.1f} +- {1e3 * ev['kid_std']:.1f}", "MNIST train vs test": "0.09 +- 6.2"},
            {"what": "Inception Score (mnist-cnn)", "genlab dcgan": round(ev["is_mean"], 2), "MNIST train vs test": "9.82 (test set)"},
            {"what": "digits hit / KL of digit histogram to uniform", "genlab dcgan": f"{ev['modes_hit']} / {ev['kl_to_uniform']:.4f}",
             "MNIST train vs test": "10 / ~0 (target KL <= 0.02)"},
            {"what": "training", "genlab dcgan": f"{steps} steps, {train_s / 60:.1f} min", "MNIST train vs test": "-"}]
    return {
        "fid": ev["fid"], "kid_mean": ev["kid_mean"], "kid_std": ev["kid_std"], "is_mean": ev["is_mean"],
        "modes_hit": ev["modes_hit"], "kl_to_uniform": ev["kl_to_uniform"], "high_quality": ev["high_quality"],
        "steps": steps, "batch": batch, "ema": ema, "ema_warmup": ema_warmup, "ema_bn": ema_bn, "r1": r1, "r1_every": r1_every, "lr": lr, "schedule": schedule, "pack": pack, "g_width": g_width, "d_width": d_width, "train_seconds": train_s, "threads": threads, "params": n_par,
        "final_d_real": logs[-1].get("d_real"), "final_d_fake": logs[-1].get("d_fake"), "figure": fig, "table": rows,
        "protocol": (f"MNIST {'first 2000' if ctx.quick else '60000'} training images in [0, 1]; genlab `dcgan` at 28 px "
                     f"(pytorch/examples architecture from a 7x7 start, latent 100, g_width {g_width}, d_width {d_width}, transposed "
                     f"convolutions, non-saturating loss, Adam {lr:g} ({schedule}), beta1 0.5, N(0, 0.02) init)"
                     f"{f', lazy R1 gamma {r1:g} every {r1_every} D steps' if r1 else ''}"
                     f"{f', generator EMA {ema}' + (' with a warm-up' if ema_warmup else '') + (f', its BatchNorm statistics recomputed from {ema_bn} samples' if ema_bn else '') if ema else ''}{f', pack={pack}' if pack > 1 else ''}, batch {batch}, "
                     f"{steps} steps, seed {seed}, {threads} torch thread(s). Metrics on {ev.get('n_samples')} samples "
                     "(seed 0) against the 10000 test images with the shipped mnist-cnn: FID, KID (100 subsets of 1000), "
                     "IS (10 splits), digits predicted, KL of the predicted-digit histogram to uniform"),
    }
