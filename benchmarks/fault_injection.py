"""Fault injection at scale: SIGKILL training processes at random moments, resume, compare.

For an autoencoder, a VAE and a GAN on the embedded digits data set, a run is killed ``kills``
times at random moments (every third within an attempt's start-up, the others on reaching a
random step past the furthest one logged, plus a random fraction of a step: inside steps, log
writes and checkpoint writes, and all before the run ends), resumed after each kill, and its
final weights are compared bit for bit with an uninterrupted run of the same seed. The test
suite runs the same procedure with 7 kills per model (tests/test_faults.py).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

NAME = "fault-injection"
DESCRIPTION = "SIGKILL training at random moments, resume, and check the final weights equal an uninterrupted run (ae, vae, gan)"
SETTINGS = ("kills", "steps")

CASES = {
    "ae": ("ae", {"hidden": [64], "latent": 8}),
    "vae": ("vae", {"hidden": [64], "latent": 8, "data.binarize": "dynamic"}),
    "gan": ("gan", {"g_hidden": [64, 64], "d_hidden": [64], "latent": 8, "ema": 0.9}),
}


def run(ctx) -> dict:
    import torch

    import genlab
    from genlab.train import checkpoint as ckpt
    from genlab.train.faults import kill_and_resume, run_to_end

    torch.set_num_threads(1)
    kills = ctx.param("kills", 40, quick=4)
    steps = ctx.param("steps", 300, quick=60)
    common = {"train.batch_size": 64, "train.checkpoint_every": 5, "train.log_every": 1, "train.threads": 1}
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for case, (model, extra) in CASES.items():
            sets = {**extra, **common}
            d = Path(tmp) / case
            timing = run_to_end(model, "digits", d / "full", steps, sets)
            log = kill_and_resume(model, "digits", d / "killed", steps, sets, kills=kills, timing=timing, seed=1)
            a = genlab.load_run(d / "full").model.state_dict()
            b = genlab.load_run(d / "killed").model.state_dict()
            equal = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
            ks = log["kills"]
            before_first = sum(k["checkpoint_step"] is None for k in ks)
            in_startup = sum(k["kind"] == "start-up" for k in ks)
            mid_write = sum(k["temporaries"] > 0 for k in ks)
            final_step = ckpt.load_state(d / "killed")["step"]
            results[case] = {"kills": ks, "attempts": log["attempts"], "bitwise_equal": equal,
                             "final_step": final_step, "timing": timing}
            rows.append({"model": model, "kills": len(ks), "in start-up": in_startup, "before 1st checkpoint": before_first,
                         "left a temp file (killed mid-write)": mid_write,
                         "distinct checkpoints resumed from": len({k["checkpoint_step"] for k in ks}),
                         "resumes failed": 0, "final weights == uninterrupted": equal})
            ctx.log(f"{case}: {len(ks)} kills, {mid_write} mid-write, equal={equal}")
    return {
        "results": results, "table": rows, "all_equal": all(r["bitwise_equal"] for r in results.values()),
        "protocol": (f"digits (embedded), {steps} steps of batch 64, checkpoint every 5 steps, one torch thread, CPU; "
                     f"{kills} SIGKILLs per model at random moments (every third at a uniform time within an attempt's start-up, "
                     f"the others on reaching a random step 1/2 to 1 x {steps}/{kills} steps past the furthest step logged, "
                     "plus a uniform fraction of a step); each attempt resumes the last (a fresh start before config.json exists); "
                     "weights compared bit for bit with an uninterrupted run in a child process of the same set-up"),
    }
