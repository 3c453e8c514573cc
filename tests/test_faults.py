"""Fault injection: training processes SIGKILLed at random moments resume and end exactly where
an uninterrupted run ends (an autoencoder, a VAE and a GAN; 7 kills each, 21 in all)."""
from __future__ import annotations

import os

import pytest

import genlab
from genlab.train import checkpoint as ckpt
from genlab.train.faults import kill_and_resume, run_to_end

from conftest import state_dicts_equal

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fault injection forks training processes (POSIX)")

COMMON = {"train.batch_size": 64, "train.checkpoint_every": 3, "train.log_every": 1, "train.threads": 1}
CASES = {
    "ae": ("ae", {"hidden": [32], "latent": 4}),
    "vae": ("vae", {"hidden": [32], "latent": 4, "data.binarize": "dynamic"}),
    "gan": ("gan", {"g_hidden": [32, 32], "d_hidden": [32], "latent": 8, "ema": 0.9}),
}
STEPS = 90
KILLS = 7


@pytest.mark.parametrize("case", list(CASES))
def test_random_sigkills_resume_to_the_uninterrupted_weights(tmp_path, case):
    model, extra = CASES[case]
    sets = {**extra, **COMMON}
    timing = run_to_end(model, "digits", tmp_path / "full", STEPS, sets)
    log = kill_and_resume(model, "digits", tmp_path / "killed", STEPS, sets, kills=KILLS,
                          timing=timing, seed=sum(map(ord, case)))
    assert len(log["kills"]) == KILLS, f"the run finished after {len(log['kills'])} kills; make it longer"
    full = genlab.load_run(tmp_path / "full").model.state_dict()
    killed = genlab.load_run(tmp_path / "killed").model.state_dict()
    assert state_dicts_equal(killed, full)
    assert ckpt.load_state(tmp_path / "killed")["step"] == STEPS
    # the metric log was rebuilt without duplicates: one training line per step
    train = [r["step"] for r in genlab.load_run(tmp_path / "killed").metrics() if r["split"] == "train"]
    assert train == list(range(1, STEPS + 1))
    # the kills landed at different moments: before any checkpoint and between several
    steps = [k["checkpoint_step"] for k in log["kills"]]
    assert len(set(steps)) >= 3, log
