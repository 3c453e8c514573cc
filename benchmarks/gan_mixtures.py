"""Mode collapse on the 2-D mixtures, the PacGAN protocol (Lin et al. 2018, Table 1).

Generator: z in R^2, 4 x 400 ReLU + BatchNorm; discriminator: 3 x 200 maxout units with 5
pieces; batch 100; Adam lr 1e-4, beta1 0.8; 2500 samples scored: a sample is high quality
within 3 standard deviations of its nearest mean, a mode is captured by at least one
high-quality sample, reverse KL of the mode histogram to uniform. The paper trains 400 epochs
of 100000 points (400000 steps) and reports the mean and std over 10 seeds:

    GAN ring8  6.3 modes, rev-KL 0.45 | GAN grid25 17.3 modes, 94.8% HQ, rev-KL 0.70
    PacGAN4 grid25 24.8 modes, 93.6% HQ, rev-KL 0.04

On a 2-core CPU one step takes about 38 ms (one thread), so the full protocol is about 4 hours
per seed; ``--set epochs=N seeds=S`` sets the budget and the table says what was run.
"""
from __future__ import annotations

import json
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

NAME = "gan-mixtures"
DESCRIPTION = "PacGAN protocol on ring8 and grid25: modes, high-quality share, reverse KL for GAN and PacGAN4 over seeds"
SETTINGS = ("epochs", "seeds", "packs", "datasets", "workers")
PAPER = {("ring8", 1): (6.3, None, 0.45), ("grid25", 1): (17.3, 94.8, 0.70), ("grid25", 4): (24.8, 93.6, 0.04)}


def _one(job: dict) -> dict:
    import torch

    import genlab

    torch.set_num_threads(1)
    t0 = time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        run = genlab.train("gan", job["data"], out=Path(tmp) / "run", epochs=job["epochs"], batch_size=100, lr=1e-4,
                           seed=job["seed"], set={"pack": job["pack"], "train.threads": 1, "train.log_every": 1000,
                                                  "train.checkpoint_every": 0})
        ev = json.loads((run.path / "eval.json").read_text())
    return {**job, **{k: ev[k] for k in ("modes", "high_quality", "reverse_kl")}, "cpu_minutes": (time.process_time() - t0) / 60}


def run(ctx) -> dict:
    import numpy as np

    epochs = ctx.param("epochs", 5, quick=1)
    seeds = ctx.param("seeds", 3, quick=1)
    packs = ctx.param("packs", [1, 4], quick=[1])
    datasets = ctx.param("datasets", ["ring8", "grid25"], quick=["ring8"])
    workers = ctx.param("workers", 2)
    jobs = [{"data": d, "pack": p, "seed": s, "epochs": epochs} for d in datasets for p in packs for s in range(seeds)]
    if ctx.quick:
        for j in jobs:
            j["epochs"] = 1
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(_one, jobs))
    rows, summary = [], {}
    for d in datasets:
        for p in packs:
            rs = [r for r in results if r["data"] == d and r["pack"] == p]
            modes = np.array([r["modes"] for r in rs], float)
            hq = np.array([r["high_quality"] for r in rs]) * 100
            kl = np.array([r["reverse_kl"] for r in rs])
            cpu = float(np.mean([r["cpu_minutes"] for r in rs]))
            paper = PAPER.get((d, p))
            key = f"{d}-pack{p}"
            summary[key] = {"modes": [float(modes.mean()), float(modes.std())], "high_quality_pct": [float(hq.mean()), float(hq.std())],
                            "reverse_kl": [float(kl.mean()), float(kl.std())], "cpu_minutes_per_seed": cpu,
                            "per_seed": [{k: r[k] for k in ("seed", "modes", "high_quality", "reverse_kl")} for r in rs]}
            rows.append({"data": d, "D": "GAN" if p == 1 else f"PacGAN{p}", "seeds": len(rs),
                         "modes": f"{modes.mean():.1f} +- {modes.std():.1f}", "high quality %": f"{hq.mean():.1f} +- {hq.std():.1f}",
                         "reverse KL": f"{kl.mean():.2f} +- {kl.std():.2f}",
                         "paper (modes, HQ %, KL)": "-" if paper is None else ", ".join("-" if v is None else str(v) for v in paper),
                         "CPU min/seed": round(cpu, 1)})
    steps = epochs * 1000
    return {
        "results": summary, "epochs": epochs, "steps": steps, "seeds": seeds, "table": rows,
        "protocol": (f"{', '.join(datasets)} (100000 training points, the mixtures of VEEGAN/PacGAN), genlab `gan` defaults: "
                     "z in R^2, G 4x400 ReLU+BatchNorm, D 3x200 maxout (5 pieces), non-saturating loss, batch 100, Adam "
                     f"lr 1e-4, beta1 0.8; {epochs} epoch(s) = {steps} steps per seed (the paper: 400 epochs = 400000 "
                     f"steps); seeds 0..{seeds - 1}; 2500 samples scored per seed (high quality: within 3 std of the nearest "
                     "mean; reverse KL of the high-quality mode histogram to uniform); mean +- std over seeds; CPU minutes "
                     f"are process CPU time per seed, one thread, {workers} seed(s) at a time"),
    }
