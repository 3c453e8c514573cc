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

Two arms (``--set arms=[...]``):

- ``paper``: the PacGAN networks and optimiser above, passed explicitly (``PACGAN_MODEL``), for
  GAN and PacGAN``m`` (``packs``), ``epochs`` epochs per seed;
- ``tuned``: ``genlab train gan --data DATA --seed S`` with nothing else, i.e. genlab's defaults
  for the 2-D mixtures (``MIXTURE_MODEL_DEFAULTS``, ``MIXTURE_TRAIN_DEFAULTS``: 256-wide nets
  without BatchNorm or maxout, R1 2, EMA 0.999, batch 256, lr 5e-4 on a cosine schedule,
  20000 steps; ``steps`` shortens it), scored by the same protocol against the issue's targets.

Two engines for the paper arm (``--set engine=...``):

- ``runs`` (default): one ``genlab.train`` run per seed and data set, ``workers`` at a time, one
  CPU thread each;
- ``stacked``: every seed and data set of one packing trained at once as one set of stacked
  tensors (``genlab.models.gans.stacked``: the same networks, initial weights, data order and
  updates, each model exactly its own; only the noise stream differs), on ``device`` (auto: CUDA
  when there is one, where each step is replayed as a CUDA graph). ``state=DIR`` keeps a
  resumable state there and ``stop_after=MINUTES`` saves and stops within 1000 steps after that long, so
  the 400000-step protocol can be split over several calls of the same command;
  ``curve_every=N`` scores every model by the same protocol every N steps and draws the training
  curve (mean +- std over seeds against steps, ``gan-mixtures-paper-curve.png``). On this 2-core
  CPU stacking gains little (20 models on 2 threads: 15.3 ms per model-step, about what two
  one-thread ``runs`` workers give); it is meant for a GPU, where a step of one small model
  leaves the device idle.
"""
from __future__ import annotations

import json
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

NAME = "gan-mixtures"
DESCRIPTION = "PacGAN protocol on ring8 and grid25: modes, high-quality share, reverse KL for the paper's GAN and PacGAN4 and for genlab's tuned defaults, over seeds"
SETTINGS = ("arms", "epochs", "steps", "seeds", "packs", "datasets", "workers", "engine", "device", "state", "stop_after",
            "curve_every")
PAPER = {("ring8", 1): (6.3, None, 0.45), ("grid25", 1): (17.3, 94.8, 0.70), ("grid25", 4): (24.8, 93.6, 0.04)}
# the targets for genlab's best configuration: (modes at least, HQ % at least, rev-KL at most)
TARGETS = {"ring8": (8, None, 0.05), "grid25": (24.8, 95.0, 0.04)}


def _one(job: dict) -> dict:
    import torch

    import genlab
    from genlab.models.gans.gan import PACGAN_MODEL, PACGAN_TRAIN

    torch.set_num_threads(1)
    t0 = time.process_time()
    quiet = {"train.threads": 1, "train.log_every": 1000, "train.checkpoint_every": 0}
    with tempfile.TemporaryDirectory() as tmp:
        if job["arm"] == "paper":
            run = genlab.train("gan", job["data"], out=Path(tmp) / "run", epochs=job["epochs"], seed=job["seed"],
                               set={**PACGAN_MODEL, **PACGAN_TRAIN, "pack": job["pack"], **quiet})
        else:  # every model and train setting at genlab's default for the data
            run = genlab.train("gan", job["data"], out=Path(tmp) / "run", steps=job["steps"] or None, seed=job["seed"],
                               set=quiet)
        ev = json.loads((run.path / "eval.json").read_text())
        # seed 0's 2500 scored points (the ones eval.json scored: sample seed 0) for the figure
        pts = run.sample(2500, seed=0).reshape(2500, -1).tolist() if job["seed"] == 0 else None
        steps = max((r.get("step", 0) for r in run.metrics()), default=None)
    return {**job, **{k: ev[k] for k in ("modes", "high_quality", "reverse_kl")}, "steps_run": steps, "points": pts,
            "cpu_minutes": (time.process_time() - t0) / 60}


def _stacked(ctx, group: list[dict], steps: int, device: str, state: str, stop_after: float | None,
             curve_every: int = 0) -> dict:
    """The paper arm's jobs of one packing, trained at once by the stacked trainer, scored as
    ``genlab.train`` scores a run (``mixture_metrics``: 2500 samples of sample seed 0), and
    every ``curve_every`` steps by the same protocol (the training curve)."""
    import torch

    from genlab.models.gans.gan import PACGAN_MODEL, PACGAN_TRAIN
    from genlab.models.gans.stacked import train_stacked
    from genlab.run import mixture_metrics

    pack = group[0]["pack"]
    path = Path(state) / f"gan-mixtures-pack{pack}.pt" if state else None
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    keys = ("modes", "high_quality", "reverse_kl")
    out = train_stacked({**PACGAN_MODEL, "pack": pack}, [j["data"] for j in group], [j["seed"] for j in group],
                        steps=steps, batch_size=PACGAN_TRAIN["train.batch_size"], lr=PACGAN_TRAIN["train.lr"],
                        device=device, state_path=path, stop_after=None if stop_after is None else stop_after * 60,
                        eval_every=curve_every, log=ctx.log,
                        evaluate=lambda models, step: [{key: mixture_metrics(m, j["data"])[key] for key in keys}
                                                       for m, j in zip(models, group)])
    k = len(group)
    results = []
    for j, m in zip(group, out["models"]):
        ev = mixture_metrics(m, j["data"])
        pts = m.sample(2500, generator=torch.Generator().manual_seed(0)).reshape(2500, -1).tolist() if j["seed"] == 0 else None
        results.append({**j, **{key: ev[key] for key in keys}, "steps_run": out["steps"],
                        "points": pts, "cpu_minutes": out["cpu_seconds"] / 60 / k})
    return {"results": results, "finished": out["finished"], "steps": out["steps"], "models": k, "device": out["device"],
            "graph": out["graph"], "graph_error": out["graph_error"], "wall_minutes": out["seconds"] / 60, "wall_minutes_per_seed": out["seconds"] / 60 / k,
            "cpu_minutes": out["cpu_seconds"] / 60, "steps_this_call": out["steps_this_call"],
            "curve": _curve(group, out["history"])}


def _curve(group: list[dict], history: list[dict]) -> dict:
    """The training curve of one packing: for each data set, each evaluated step's mean and std
    over seeds of modes, high quality (%) and reverse KL, and the per-seed values."""
    import numpy as np

    curve = {}
    for d in dict.fromkeys(j["data"] for j in group):
        idx = [i for i, j in enumerate(group) if j["data"] == d]
        rows = []
        for h in history:
            v = [h["value"][i] for i in idx]
            modes = np.array([x["modes"] for x in v], float)
            hq = 100 * np.array([x["high_quality"] for x in v])
            kl = np.array([x["reverse_kl"] for x in v])
            rows.append({"step": h["step"], "modes": [float(modes.mean()), float(modes.std())],
                         "high_quality_pct": [float(hq.mean()), float(hq.std())],
                         "reverse_kl": [float(kl.mean()), float(kl.std())], "per_seed_modes": modes.tolist()})
        curve[d] = rows
    return curve


def _meets(d: str, modes, hq, kl) -> dict:
    """The issue's targets for the tuned arm: ring8 8/8 modes in every seed and rev-KL <= 0.05
    in every seed; grid25 mean modes >= 24.8, mean HQ >= 95%, mean rev-KL <= 0.04."""
    t_modes, t_hq, t_kl = TARGETS[d]
    if d == "ring8":
        return {"modes": bool((modes >= t_modes).all()), "reverse_kl": bool((kl <= t_kl).all())}
    return {"modes": bool(modes.mean() >= t_modes), "high_quality": bool(hq.mean() >= t_hq),
            "reverse_kl": bool(kl.mean() <= t_kl)}


def run(ctx) -> dict:
    import numpy as np

    arms = ctx.param("arms", ["paper", "tuned"], quick=["paper", "tuned"])
    epochs = ctx.param("epochs", 5, quick=1)
    steps = ctx.param("steps", 0, quick=100)
    seeds = ctx.param("seeds", 10, quick=1)
    packs = ctx.param("packs", [1, 4], quick=[1])
    datasets = ctx.param("datasets", ["ring8", "grid25"], quick=["ring8"])
    workers = ctx.param("workers", 2)
    engine = ctx.param("engine", "runs")
    device = ctx.param("device", "auto")
    state = ctx.param("state", "")
    stop_after = ctx.param("stop_after", 0)
    curve_every = ctx.param("curve_every", 0, quick=50 if engine == "stacked" else 0)
    from genlab.errors import GenlabError

    if engine not in ("runs", "stacked"):
        raise GenlabError(f"--set engine: unknown engine {engine!r}; expected runs or stacked")
    if curve_every and engine != "stacked":
        raise GenlabError("--set curve_every: needs engine=stacked, which scores the paper arm's models along the way")
    if curve_every < 0:
        raise GenlabError(f"--set curve_every: expected a number of steps >= 0, got {curve_every}")
    if stop_after and not (engine == "stacked" and state):
        raise GenlabError("--set stop_after: needs engine=stacked and state=DIR, where the run's state is kept for the next call")
    unknown = sorted(set(arms) - {"paper", "tuned"})
    if unknown:
        raise GenlabError(f"--set arms: unknown arm {unknown[0]!r}; expected paper and/or tuned")
    jobs = []
    for d in datasets:
        if "paper" in arms:
            jobs += [{"arm": "paper", "data": d, "pack": p, "seed": s, "epochs": epochs} for p in packs for s in range(seeds)]
        if "tuned" in arms:
            jobs += [{"arm": "tuned", "data": d, "pack": 1, "seed": s, "steps": steps} for s in range(seeds)]
    if ctx.quick:
        for j in jobs:
            if j["arm"] == "paper":
                j["epochs"] = 1
    stacked_runs = {}
    t_start = time.perf_counter()
    if engine == "stacked":
        paper = [j for j in jobs if j["arm"] == "paper"]
        jobs = [j for j in jobs if j["arm"] != "paper"]
        for p in dict.fromkeys(j["pack"] for j in paper):
            group = [j for j in paper if j["pack"] == p]
            steps_p = 100 if ctx.quick else group[0]["epochs"] * 1000
            # stop_after counts over all packings: each gets the minutes the ones before left
            left = max(stop_after - (time.perf_counter() - t_start) / 60, 0.0) if stop_after else None
            stacked_runs[p] = _stacked(ctx, group, steps_p, device, state, left, curve_every)
        if not all(r["finished"] for r in stacked_runs.values()):
            done = {p: r["steps"] for p, r in stacked_runs.items()}
            return {"finished": False, "steps_done": done, "state": state,
                    "curve": {p: r["curve"] for p, r in stacked_runs.items()},
                    "protocol": f"stopped after stop_after={stop_after} min at steps {done} (by packing); the state is in "
                                f"{state}: run the same command again to go on"}
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(_one, jobs))
    results = [r for sr in stacked_runs.values() for r in sr["results"]] + results
    rows, summary = [], {}
    for d in datasets:
        for arm, p in [("paper", p) for p in packs if "paper" in arms] + ([("tuned", 1)] if "tuned" in arms else []):
            rs = [r for r in results if r["data"] == d and r["pack"] == p and r["arm"] == arm]
            modes = np.array([r["modes"] for r in rs], float)
            hq = np.array([r["high_quality"] for r in rs]) * 100
            kl = np.array([r["reverse_kl"] for r in rs])
            cpu = float(np.mean([r["cpu_minutes"] for r in rs]))
            stacked = arm == "paper" and p in stacked_runs
            key = f"{d}-pack{p}" if arm == "paper" else f"{d}-tuned"
            summary[key] = {"modes": [float(modes.mean()), float(modes.std())], "high_quality_pct": [float(hq.mean()), float(hq.std())],
                            "reverse_kl": [float(kl.mean()), float(kl.std())], "cpu_minutes_per_seed": cpu,
                            "steps": rs[0]["steps_run"],
                            **({"stacked": {k: v for k, v in stacked_runs[p].items() if k != "results"}} if stacked else {}),
                            "per_seed": [{k: r[k] for k in ("seed", "modes", "high_quality", "reverse_kl", "cpu_minutes")} for r in rs]}
            if arm == "paper":
                paper = PAPER.get((d, p))
                ref = "paper: " + ("-" if paper is None else ", ".join("-" if v is None else str(v) for v in paper))
                name = "GAN" if p == 1 else f"PacGAN{p}"
            else:
                met = _meets(d, modes, hq, kl)
                summary[key]["targets_met"] = met
                t = TARGETS[d]
                ref = ("target: 8/8 modes and rev-KL <= 0.05 in every seed" if d == "ring8" else
                       f"target: >= {t[0]} modes, >= {t[1]}% HQ, rev-KL <= {t[2]}") + (
                       " (met)" if all(met.values()) else " (missed: " + ", ".join(k for k, v in met.items() if not v) + ")")
                name = "genlab defaults"
            rows.append({"data": d, "set-up": name, "steps": rs[0]["steps_run"], "seeds": len(rs),
                         "modes": f"{modes.mean():.1f} +- {modes.std():.1f}" + (f" (min {modes.min():.0f})" if arm == "tuned" else ""),
                         "high quality %": f"{hq.mean():.1f} +- {hq.std():.1f}",
                         "reverse KL": f"{kl.mean():.3f} +- {kl.std():.3f}" + (f" (max {kl.max():.3f})" if arm == "tuned" else ""),
                         "reference (modes, HQ %, KL)": ref,
                         **({"wall min/seed": round(stacked_runs[p]["wall_minutes_per_seed"], 2)} if stacked
                            else {"CPU min/seed": round(cpu, 1)})})
    paper_steps = next(iter(stacked_runs.values()))["steps"] if stacked_runs else epochs * 1000
    from genlab.bench import device_name

    where = device_name()  # what genlab.train's default device gave each job
    from genlab.models.gans.gan import MIXTURE_MODEL_DEFAULTS as tm, MIXTURE_TRAIN_DEFAULTS as tt
    fig = _plot(ctx, results, datasets)
    curves = {p: r["curve"] for p, r in stacked_runs.items() if any(r["curve"].values())}
    curve_fig = _plot_curve(ctx, curves) if curves else None
    return {
        "results": summary, "device": where if engine == "runs" else device_name(device), "engine": engine, "arms": arms, "epochs": epochs, "seeds": seeds, "table": rows, "figure": fig,
        **({"curve": curves, "curve_figure": curve_fig} if curves else {}),
        "protocol": (f"{', '.join(datasets)} (100000 training points, the mixtures of VEEGAN/PacGAN); seeds 0..{seeds - 1}; "
                     "2500 samples scored per seed (high quality: within 3 std of the nearest mean; a mode is captured "
                     "by one high-quality sample; reverse KL of the high-quality mode histogram to uniform); mean +- std "
                     "over seeds. "
                     + (f"paper arm: the PacGAN set-up passed explicitly: z in R^2, G 4x400 ReLU+BatchNorm, D 3x200 maxout "
                        f"(5 pieces), non-saturating loss, batch 100, Adam lr 1e-4, beta1 0.8; {paper_steps / 1000:g} epoch(s) = "
                        f"{paper_steps} steps per seed (the paper: 400 epochs = 400000 steps). " if "paper" in arms else "")
                     + (f"tuned arm: `genlab train gan --data DATA --seed S` with no other option: z in R^2, G "
                        f"{_layers(tm['g_hidden'])} ReLU, D {_layers(tm['d_hidden'])} LeakyReLU 0.2, no BatchNorm or "
                        f"maxout, non-saturating loss, R1 {tm['r1']:g}, EMA {tm['ema']} of G for sampling, Adam lr "
                        f"{tt['lr']:g} ({tt['schedule']} schedule), betas ({tm['beta1']}, 0.999), batch {tt['batch_size']}, {steps or tt['steps']} "
                        "steps. " if "tuned" in arms else "")
                     + (f"CPU minutes are process CPU time per seed, one thread, {workers} seed(s) at a time; "
                        f"training on {where}" if engine == "runs" or "tuned" in arms else "")
                     + ("; " if engine == "stacked" and "tuned" in arms else "")
                     + (f"paper arm on the stacked engine: the {len(datasets) * seeds} model(s) of each packing trained at "
                        f"once on {device_name(device)} (CUDA graph: {', '.join(str(r['graph']) for r in stacked_runs.values())}); "
                        "wall minutes per seed are the run's wall time over its models" if engine == "stacked" else "")),
    }


def _plot_curve(ctx, curves: dict) -> str | None:
    """Modes, high quality and reverse KL against training steps (mean +- std over seeds), one
    line per data set and packing, the paper's 400000-step figures dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    if ctx.quick:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for (key, label, idx), ax in zip((("modes", "modes captured", 0), ("high_quality_pct", "high quality (%)", 1),
                                      ("reverse_kl", "reverse KL to uniform", 2)), axes):
        for p, by_data in curves.items():
            for d, rows in by_data.items():
                steps = np.array([r["step"] for r in rows])
                m = np.array([r[key][0] for r in rows])
                s = np.array([r[key][1] for r in rows])
                name = f"{d}, {'GAN' if p == 1 else f'PacGAN{p}'}"
                line, = ax.plot(steps, m, marker="o", ms=3, label=f"{name} ({len(rows[0]['per_seed_modes'])} seeds)")
                ax.fill_between(steps, m - s, m + s, color=line.get_color(), alpha=0.2)
                ref = PAPER.get((d, p))
                if ref is not None and ref[idx] is not None:
                    ax.axhline(ref[idx], color=line.get_color(), ls="--", lw=1)
        ax.set_xlabel("training steps")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("PacGAN set-up, mean +- std over seeds; dashed: the paper's figure after 400000 steps", fontsize=9)
    fig.tight_layout()
    return ctx.plot("gan-mixtures-paper-curve.png", fig)


def _layers(hidden: list[int]) -> str:
    return f"{len(hidden)}x{hidden[0]}" if len(set(hidden)) == 1 else "-".join(map(str, hidden))


def _plot(ctx, results: list[dict], datasets: list[str]) -> str | None:
    """Seed 0's 2500 scored samples of every set-up on each data set, the mixture's means marked
    and the share within 3 std (high quality) in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from genlab.data.toy import MIXTURES

    cols = [r for r in results if r["seed"] == 0 and r["points"] is not None]
    setups = list(dict.fromkeys((r["arm"], r["pack"]) for r in cols))
    if not cols or ctx.quick:
        return None
    fig, axes = plt.subplots(len(datasets), len(setups), figsize=(3.3 * len(setups), 3.3 * len(datasets)), squeeze=False)
    for i, d in enumerate(datasets):
        means = np.asarray(MIXTURES[d].means)
        for j, (arm, p) in enumerate(setups):
            ax = axes[i][j]
            r = next((r for r in cols if r["data"] == d and (r["arm"], r["pack"]) == (arm, p)), None)
            ax.scatter(means[:, 0], means[:, 1], s=40, facecolors="none", edgecolors="tab:red", linewidths=1)
            if r is not None:
                x = np.asarray(r["points"])
                ax.scatter(x[:, 0], x[:, 1], s=1.5, alpha=0.5, color="tab:blue")
                name = ("genlab defaults" if arm == "tuned" else ("GAN" if p == 1 else f"PacGAN{p}") + " (paper set-up)")
                ax.set_title(f"{d}, {name}\n{r['steps_run']} steps: {r['modes']} modes, HQ {100 * r['high_quality']:.1f}%",
                             fontsize=8)
            lim = 1.3 * float(np.abs(means).max())
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal")
            ax.tick_params(labelsize=6)
    fig.tight_layout()
    # the paper arm alone gets its own file: a long paper run must not replace the README's
    # figure of genlab's defaults
    return ctx.plot("gan-mixtures-samples.png" if any(a == "tuned" for a, _ in setups) else "gan-mixtures-paper-samples.png", fig)
