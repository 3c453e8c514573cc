"""The training engine: seeding, exact resume, metrics, atomic files, divergence, evaluation."""
from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest
import torch

import genlab
from genlab.data.base import Dataset
from genlab.errors import ConfigError, GenlabError, RunError
from genlab.evaluate import evaluate
from genlab.io import atomic_write, atomic_write_json, read_jsonl
from genlab.train import checkpoint as ckpt

from conftest import TINY_MLP, state_dicts_equal, train_tiny

N_TRAIN = 1437  # digits training split with test_fraction 0.2


def weights(run) -> dict:
    """The weights as stored on disk (a fresh load of the run directory)."""
    return genlab.load_run(run.path).model.state_dict()


# --- seeding --------------------------------------------------------------------------------
def test_same_seed_gives_identical_weights_and_different_seed_does_not(tmp_path):
    a = train_tiny("vae", tmp_path / "a", steps=15, seed=3, evaluate_at_end=False)
    b = train_tiny("vae", tmp_path / "b", steps=15, seed=3, evaluate_at_end=False)
    c = train_tiny("vae", tmp_path / "c", steps=15, seed=4, evaluate_at_end=False)
    wa, wb, wc = weights(a), weights(b), weights(c)
    assert state_dicts_equal(wa, wb)
    assert not any(torch.equal(wa[k], wc[k]) for k in wa if wa[k].numel() > 1)
    # what is on disk is what train() returned
    assert state_dicts_equal(wa, a.model.state_dict())


def test_training_moves_the_weights_and_lowers_the_loss(tmp_path):
    run = train_tiny("ae", tmp_path / "r", steps=60, set={"train.lr": 3e-3, "train.log_every": 10},
                     evaluate_at_end=False)
    losses = [r["loss"] for r in run.metrics() if r["split"] == "train"]
    assert losses[-1] < 0.8 * losses[0]


def test_epochs_give_the_right_number_of_steps(tmp_path):
    run = genlab.train("ae", "digits", out=tmp_path / "r", epochs=2, batch_size=256, set=TINY_MLP,
                       device="cpu")
    per_epoch = math.ceil(N_TRAIN / 256)
    ev = json.loads((run.path / "eval.json").read_text())
    assert ev["steps"] == 2 * per_epoch
    epochs = [r for r in run.metrics() if r["split"] == "epoch"]
    assert [r["step"] for r in epochs] == [per_epoch, 2 * per_epoch]
    assert ckpt.load_state(run.path)["step"] == 2 * per_epoch


# --- exact resume ----------------------------------------------------------------------------
RESUME_CASES = {
    "ae": ("ae", {}),
    "vae-dynamic": ("vae", {"data.binarize": "dynamic"}),
}


def _kw(extra):
    return dict(set={**extra, "train.batch_size": 256, "train.log_every": 2}, evaluate_at_end=False)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Each resume case trained 14 steps in one go (6 steps per epoch), checkpointing every 4."""
    out = {}
    for name, (model, extra) in RESUME_CASES.items():
        kw = _kw({**extra, "train.checkpoint_every": 4})
        out[name] = train_tiny(model, tmp_path_factory.mktemp("full") / name, steps=14, **kw)
    return out


@pytest.mark.parametrize("k", [4, 6])  # 6: stop exactly at an epoch boundary
@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resume_is_exact(tmp_path, uninterrupted, case, k):
    model, extra = RESUME_CASES[case]
    part = train_tiny(model, tmp_path / "r", steps=k, **_kw(extra))
    assert ckpt.load_state(part.path)["step"] == k
    resumed = genlab.train(out=part.path, resume=True, steps=14, device="cpu", evaluate_at_end=False)
    assert state_dicts_equal(weights(resumed), weights(uninterrupted[case]))
    assert resumed.config["train"]["steps"] == 14
    # metrics: one line per (split, step), steps increasing, up to step 14
    recs = resumed.metrics()
    keys = Counter((r["split"], r["step"]) for r in recs)
    assert max(keys.values()) == 1
    train_steps = [r["step"] for r in recs if r["split"] == "train"]
    assert train_steps == sorted(train_steps) and train_steps[-1] == 14


class Crash(Exception):
    pass


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resume_after_a_crash_is_exact(tmp_path, monkeypatch, uninterrupted, case):
    """Crash in step 11 (after the checkpoint at step 8), resume: same weights, and the metric
    lines written after the checkpoint are replaced rather than duplicated."""
    model, extra = RESUME_CASES[case]
    real_prepare = Dataset.prepare
    calls = {"n": 0}

    def crashing_prepare(self, x, train):
        if train:
            calls["n"] += 1
            if calls["n"] == 11:
                raise Crash("power cut")
        return real_prepare(self, x, train)

    monkeypatch.setattr(Dataset, "prepare", crashing_prepare)
    with pytest.raises(Crash):
        train_tiny(model, tmp_path / "r", steps=14, **_kw({**extra, "train.checkpoint_every": 4}))
    assert ckpt.load_state(tmp_path / "r")["step"] == 8
    assert max(r["step"] for r in read_jsonl(tmp_path / "r" / "metrics.jsonl")) == 10
    monkeypatch.setattr(Dataset, "prepare", real_prepare)

    resumed = genlab.train(out=tmp_path / "r", resume=True, device="cpu", evaluate_at_end=False)
    full = uninterrupted[case]
    assert state_dicts_equal(weights(resumed), weights(full))
    recs = resumed.metrics()
    assert max(Counter((r["split"], r["step"]) for r in recs).values()) == 1
    # checkpoints fall on logging steps here, so every logged training loss matches as well
    ours = {r["step"]: r["loss"] for r in recs if r["split"] == "train"}
    ref = {r["step"]: r["loss"] for r in full.metrics() if r["split"] == "train"}
    assert ours == ref


def test_resume_rejects_model_changes_and_non_runs(tmp_path):
    run = train_tiny("ae", tmp_path / "r", steps=2, evaluate_at_end=False)
    with pytest.raises(ConfigError) as e:
        genlab.train(out=run.path, resume=True, set=["latent=5"])
    assert "resum" in str(e.value)
    with pytest.raises(RunError) as e:
        genlab.train(out=tmp_path / "nothing", resume=True)
    assert "nothing" in str(e.value)


def test_a_kill_between_the_state_and_the_weights_file_resumes_from_the_state(tmp_path, uninterrupted):
    """state.pt is written before model.safetensors; a kill between the two leaves older
    weights beside a newer state. Resume takes the weights inside the state (verified by their
    checksum), makes model.safetensors agree again and ends where an uninterrupted run ends."""
    model, extra = RESUME_CASES["ae"]
    part = train_tiny(model, tmp_path / "r", steps=8, **_kw({**extra, "train.checkpoint_every": 4}))
    old = train_tiny(model, tmp_path / "old", steps=4, **_kw({**extra, "train.checkpoint_every": 4}))
    (part.path / ckpt.WEIGHTS).write_bytes((old.path / ckpt.WEIGHTS).read_bytes())  # the kill
    resumed = genlab.train(out=part.path, resume=True, steps=14, device="cpu", evaluate_at_end=False)
    assert state_dicts_equal(weights(resumed), weights(uninterrupted["ae"]))


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, uninterrupted, capfd):
    model, extra = RESUME_CASES["ae"]
    part = train_tiny(model, tmp_path / "r", steps=8, **_kw({**extra, "train.checkpoint_every": 4}))
    assert ckpt.read_state(part.path / ckpt.PREVIOUS)["step"] == 4  # the checkpoint before the last
    raw = bytearray((part.path / ckpt.STATE).read_bytes())
    state = ckpt.read_state(part.path / ckpt.STATE)
    i = bytes(raw).index(state["weights"][-64:])  # flip one bit inside the stored weights
    raw[i + 10] ^= 1
    (part.path / ckpt.STATE).write_bytes(bytes(raw))
    with pytest.raises(RunError, match="checksum"):
        ckpt.read_state(part.path / ckpt.STATE)
    assert ckpt.load_state(part.path)["step"] == 4
    assert "previous checkpoint (step 4)" in capfd.readouterr().err
    resumed = genlab.train(out=part.path, resume=True, steps=14, device="cpu", evaluate_at_end=False)
    assert state_dicts_equal(weights(resumed), weights(uninterrupted["ae"]))


class _Gadget:
    pass


def test_a_state_file_that_needs_pickled_code_is_refused(tmp_path):
    run = train_tiny("ae", tmp_path / "r", steps=2, evaluate_at_end=False)
    torch.save({"step": 2, "payload": _Gadget()}, run.path / ckpt.STATE)  # an object: pickled code
    (run.path / ckpt.PREVIOUS).unlink(missing_ok=True)
    with pytest.raises(RunError) as e:
        genlab.train(out=run.path, resume=True, steps=4)
    assert "pickled code" in str(e.value) and str(run.path / ckpt.STATE) in str(e.value)


def test_a_checkpoint_from_a_newer_genlab_is_refused(tmp_path):
    run = train_tiny("ae", tmp_path / "r", steps=2, evaluate_at_end=False)
    state = ckpt.read_state(run.path / ckpt.STATE)
    torch.save({**state, "format": ckpt.FORMAT + 1}, run.path / ckpt.STATE)
    with pytest.raises(RunError, match=f"format {ckpt.FORMAT + 1} is newer"):
        ckpt.read_state(run.path / ckpt.STATE)


def test_resume_before_the_first_checkpoint_starts_from_step_0(tmp_path, uninterrupted):
    """A run killed after writing config.json but before its first checkpoint has nothing
    to lose: --resume trains it from the start, and ends where an uninterrupted run ends."""
    model, extra = RESUME_CASES["ae"]
    part = train_tiny(model, tmp_path / "r", steps=2, **_kw(extra))
    for name in (ckpt.STATE, ckpt.PREVIOUS, ckpt.WEIGHTS, "metrics.jsonl"):
        (part.path / name).unlink(missing_ok=True)
    resumed = genlab.train(out=part.path, resume=True, steps=14, device="cpu", evaluate_at_end=False)
    assert state_dicts_equal(weights(resumed), weights(uninterrupted["ae"]))


@pytest.mark.parametrize("fail_on", [1, 2, 3])  # the link to state.prev.pt, state.pt, model.safetensors
def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch, capsys, fail_on):
    import errno
    import os

    from genlab.cli import main

    run = train_tiny("ae", tmp_path / "r", steps=4, set={"train.checkpoint_every": 2}, evaluate_at_end=False)
    before = {n: (run.path / n).read_bytes() for n in (ckpt.STATE, ckpt.WEIGHTS)}
    calls = {"n": 0}
    real_write, real_replace = ckpt.atomic_write_bytes, os.replace

    def full(*args):
        calls["n"] += 1
        if calls["n"] == fail_on:
            raise OSError(errno.ENOSPC, "No space left on device")

    def write(path, data):
        full()
        real_write(path, data)

    def replace(a, b):
        if str(b).endswith(ckpt.PREVIOUS):
            full()
        real_replace(a, b)

    monkeypatch.setattr(ckpt, "atomic_write_bytes", write)
    monkeypatch.setattr(ckpt.os, "replace", replace)
    rc = main(["train", "ae", "--out", str(run.path), "--resume", "--steps", "6", "--set", "train.checkpoint_every=1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "No space left on device" in err[0] and "previous checkpoint is kept" in err[0] and "step 5" in err[0]
    monkeypatch.undo()
    # whatever failed, a complete checkpoint at step 4 (or the new one at 5) loads and resumes
    step = ckpt.load_state(run.path)["step"]
    assert step in (4, 5) if fail_on == 3 else step == 4
    if fail_on < 3:
        assert (run.path / ckpt.STATE).read_bytes() == before[ckpt.STATE]
        assert (run.path / ckpt.WEIGHTS).read_bytes() == before[ckpt.WEIGHTS]
    genlab.train(out=run.path, resume=True, steps=6, device="cpu", evaluate_at_end=False)
    assert ckpt.load_state(run.path)["step"] == 6


def test_state_files_load_with_weights_only(tmp_path):
    """Run directories hold no code: every .pt in a run loads with torch.load(weights_only=True)."""
    run = train_tiny("vae", tmp_path / "r", steps=6, set={"train.checkpoint_every": 2})
    pts = list(run.path.rglob("*.pt"))
    assert {p.name for p in pts} >= {ckpt.STATE, ckpt.PREVIOUS}
    for p in pts:
        torch.load(p, weights_only=True)


def test_out_that_holds_a_run_is_refused(tmp_path):
    train_tiny("ae", tmp_path / "r", steps=1, evaluate_at_end=False)
    before = (tmp_path / "r" / "model.safetensors").read_bytes()
    with pytest.raises(ConfigError) as e:
        train_tiny("ae", tmp_path / "r", steps=1)
    assert str(tmp_path / "r") in str(e.value)
    assert (tmp_path / "r" / "model.safetensors").read_bytes() == before


# --- files -------------------------------------------------------------------------------------
def test_run_directory_contents_and_no_temporary_files(tmp_path):
    run = train_tiny("vae", tmp_path / "r", steps=14, set={"train.checkpoint_every": 3, "data.val_fraction": 0.1})
    names = {p.name for p in run.path.iterdir()}
    assert {"config.json", "model.safetensors", "state.pt", "metrics.jsonl", "eval.json", "samples"} <= names
    assert not [p for p in run.path.rglob("*") if p.name.endswith(".tmp")]
    assert list((run.path / "samples").glob("*.png"))
    # a validation line per epoch end, with the evaluation keys
    vals = [r for r in run.metrics() if r["split"] == "val"]
    assert vals and {"nelbo", "kl", "mse"} <= set(vals[0])
    assert all(r["n"] == round(0.1 * N_TRAIN) for r in vals)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    p = tmp_path / "f.json"
    atomic_write_json(p, {"a": 1})

    def torn(f):
        f.write(b'{"a": 2, "b": ')
        raise Crash("disk full")

    with pytest.raises(Crash):
        atomic_write(p, torn)
    assert json.loads(p.read_text()) == {"a": 1}
    assert [q.name for q in tmp_path.iterdir()] == ["f.json"]


def test_read_jsonl_ignores_a_torn_last_line(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "lo')
    assert read_jsonl(p) == [{"step": 1}, {"step": 2}]


# --- divergence ----------------------------------------------------------------------------------
def test_infinite_loss_raises_naming_the_step(tmp_path):
    # squared errors of values near 1e20 overflow float32 at once
    x = np.full((40, 4), 1e20, np.float32)
    x[::2] *= -1
    np.savez(tmp_path / "big.npz", x=x)
    with pytest.raises(GenlabError) as e:
        genlab.train("ae", f"npz:{tmp_path / 'big.npz'}", out=tmp_path / "r", steps=5, set=TINY_MLP, device="cpu")
    assert "step 1" in str(e.value) and "inf" in str(e.value)


def test_nan_loss_raises_naming_the_step_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    from genlab.models.autoencoders.ae import _AEBase

    real_loss = _AEBase.loss
    calls = {"n": 0}

    def loss(self, x):
        calls["n"] += 1
        out = real_loss(self, x)
        if calls["n"] == 5:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(_AEBase, "loss", loss)
    with pytest.raises(GenlabError) as e:
        train_tiny("ae", tmp_path / "r", steps=10, set={"train.checkpoint_every": 2})
    assert "step 5" in str(e.value) and "nan" in str(e.value)
    assert ckpt.load_state(tmp_path / "r")["step"] == 4


# --- evaluation ------------------------------------------------------------------------------------
def test_evaluate_is_deterministic_and_leaves_the_global_rng_alone(vae_run):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    r1 = vae_run.evaluate("test", iwae_k=5)
    r2 = vae_run.evaluate("test", iwae_k=5)
    assert torch.equal(torch.get_rng_state(), before)
    assert r1 == r2
    # the seed is what makes it repeatable: another seed gives another Monte-Carlo estimate
    r3 = vae_run.evaluate("test", iwae_k=5, seed=1)
    assert r3["nelbo"] != r1["nelbo"] and r3["mse"] == r1["mse"] and r3["kl"] == r1["kl"]


def test_evaluate_restores_training_mode(vae_run):
    m = vae_run.model
    m.train()
    evaluate(m, vae_run.data(), "test")
    assert m.training
    m.eval()


def test_eval_json_is_reproduced_from_the_saved_run(tmp_path):
    """eval.json is computed at the end of training; a fresh load of the run directory (weights
    from model.safetensors, the fixed binarised test set) must give the same numbers."""
    run = train_tiny("vae", tmp_path / "r", steps=10, set={"data.binarize": "dynamic"})
    saved = json.loads((run.path / "eval.json").read_text())
    again = genlab.load_run(run.path).evaluate("test")
    for k, v in again.items():
        assert saved[k] == pytest.approx(v, rel=1e-12, abs=1e-12), k


def test_run_sample_is_seeded(vae_run):
    a, b, c = vae_run.sample(6, seed=1), vae_run.sample(6, seed=1), vae_run.sample(6, seed=2)
    assert a.shape == (6, 1, 8, 8) and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1


@pytest.mark.parametrize("option,value", [("lr", 0.5), ("batch_size", 7), ("seed", 9)])
def test_resume_does_not_silently_ignore_training_options(tmp_path, option, value):
    """train(resume=True, lr=...) must either apply the option or refuse it; today the value is
    dropped without a word (the run continues with the old one)."""
    run = train_tiny("ae", tmp_path / "r", steps=2, evaluate_at_end=False)
    old = run.config["train"][option]
    assert old != value
    try:
        resumed = genlab.train(out=run.path, resume=True, steps=3, evaluate_at_end=False, **{option: value})
    except ConfigError as e:
        assert option in str(e)
    else:
        assert resumed.config["train"][option] == value


def test_tensorboard_logs_the_metrics_when_installed(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard not installed (optional: pip install genlab[tensorboard])")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train_tiny("vae", tmp_path / "run", steps=30)
    ea = EventAccumulator(str(tmp_path / "run" / "tb"))
    ea.Reload()
    losses = [e.value for e in ea.Scalars("train/loss")]
    logged = [r["loss"] for r in genlab.load_run(tmp_path / "run").metrics() if r.get("split") == "train"]
    assert losses == pytest.approx(logged, rel=1e-6)


def _poison(monkeypatch, at_calls, how="loss"):
    """Make the autoencoder's loss (or only its gradient) NaN on the given calls of loss()."""
    from genlab.models.autoencoders.ae import _AEBase

    real_loss = _AEBase.loss
    calls = {"n": 0}

    def loss(self, x):
        calls["n"] += 1
        out = real_loss(self, x)
        if calls["n"] in at_calls:
            p = next(self.parameters())
            if how == "loss":
                out["loss"] = out["loss"] * float("nan")
            else:  # the value stays finite, its gradient is 0 * inf = nan
                out["loss"] = out["loss"] + torch.sqrt((p * 0).sum())
        return out

    monkeypatch.setattr(_AEBase, "loss", loss)
    return calls


def test_a_nan_gradient_with_a_finite_loss_stops_naming_the_gradient(tmp_path, monkeypatch):
    _poison(monkeypatch, {3}, how="grad")
    with pytest.raises(GenlabError) as e:
        train_tiny("ae", tmp_path / "r", steps=6, set={"train.checkpoint_every": 2})
    assert "gradient norm" in str(e.value) and "step 3" in str(e.value) and "nan" in str(e.value)
    state = ckpt.load_state(tmp_path / "r")
    assert state["step"] == 2
    model = genlab.load_run(tmp_path / "r").model
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())


def test_on_nan_rollback_goes_back_with_a_lower_learning_rate(tmp_path, monkeypatch):
    _poison(monkeypatch, {5})  # loss() call 5 is step 5
    run = train_tiny("ae", tmp_path / "r", steps=8, evaluate_at_end=False,
                     set={"train.checkpoint_every": 3, "train.on_nan": "rollback", "train.lr": 1e-3,
                          "train.log_every": 1})
    state = ckpt.load_state(run.path)
    assert state["step"] == 8 and state["rollbacks"] == 1 and state["lr_scale"] == 0.5
    recs = run.metrics()
    warn = [r for r in recs if r["split"] == "warning"]
    assert len(warn) == 1 and warn[0]["step"] == 3 and warn[0]["diverged_at"] == 4
    train = [r for r in recs if r["split"] == "train"]
    assert [r["step"] for r in train] == list(range(1, 9))  # the lines of steps 4 were replaced
    assert [r.get("lr") for r in train][3:] == [5e-4] * 5
    # the same run without the NaN but with lr halved from step 3 on: same weights
    monkeypatch.undo()
    a = train_tiny("ae", tmp_path / "a", steps=3, evaluate_at_end=False, set={"train.lr": 1e-3, "train.checkpoint_every": 3})
    st = ckpt.read_state(a.path / ckpt.STATE)
    torch.save({**st, "lr_scale": 0.5, "weights": torch.frombuffer(bytearray(st["weights"]), dtype=torch.uint8)},
               a.path / ckpt.STATE)
    b = genlab.train(out=a.path, resume=True, steps=8, device="cpu", evaluate_at_end=False)
    assert state_dicts_equal(weights(b), weights(run))


def test_on_nan_rollback_gives_up_after_max_rollbacks(tmp_path, monkeypatch):
    _poison(monkeypatch, set(range(3, 100)))
    with pytest.raises(GenlabError) as e:
        train_tiny("ae", tmp_path / "r", steps=8, evaluate_at_end=False,
                   set={"train.on_nan": "rollback", "train.max_rollbacks": 2})
    assert "after 2 rollbacks" in str(e.value) and "loss became nan" in str(e.value)
    assert ckpt.load_state(tmp_path / "r")["step"] == 0
    warn = [r for r in read_jsonl(tmp_path / "r" / "metrics.jsonl") if r["split"] == "warning"]
    assert [w["diverged_at"] for w in warn] == [2, 0]  # calls 3.. are NaN: step 3, then step 1
    assert "x0.25" in warn[1]["warning"]


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_signal_writes_a_checkpoint_and_resume_is_exact(tmp_path, sig, uninterrupted):
    """genlab train in a subprocess gets SIGTERM/SIGINT mid-run: it finishes the step, writes a
    checkpoint, says so in one line and exits 128+signal; --resume ends where an uninterrupted
    run ends."""
    import signal
    import subprocess
    import sys
    import time

    model, extra = RESUME_CASES["ae"]
    out = tmp_path / "r"
    sets = [f"{k}={v}" for k, v in {**TINY_MLP, **extra, "train.batch_size": 256, "train.log_every": 1,
                                     "train.checkpoint_every": 4, "train.threads": 1}.items()]
    sets = [s.replace(" ", "") for s in sets]
    # a slow data set keeps the process in training long enough to be signalled mid-run
    code = ("import time, sys; from genlab.data.base import Dataset; real = Dataset.prepare\n"
            "def slow(self, x, train):\n    time.sleep(0.2); return real(self, x, train)\n"
            "Dataset.prepare = slow\nfrom genlab.cli import main; sys.exit(main(sys.argv[1:]))\n")
    p = subprocess.Popen([sys.executable, "-c", code, "train", "ae", "--data", "digits", "--out", str(out),
                          "--steps", "14", "--device", "cpu", "--set", *sets],
                         stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while time.time() - t0 < 60:
        lines = read_jsonl(out / "metrics.jsonl")
        if any(r.get("step", 0) >= 5 for r in lines):
            break
        time.sleep(0.05)
    p.send_signal(getattr(signal, sig))
    err = p.stderr.read()
    rc = p.wait(60)
    assert rc == 128 + getattr(signal, sig), err
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert sig in last and "checkpoint written" in last and "--resume" in last
    step = ckpt.load_state(out)["step"]
    assert 5 <= step < 14 and step % 4 != 0  # the signal's own checkpoint, not a periodic one
    resumed = genlab.train(out=out, resume=True, device="cpu", evaluate_at_end=False)
    assert state_dicts_equal(weights(resumed), weights(uninterrupted["ae"]))


# --- mixed precision and torch.compile (made for CUDA; they must run on the CPU) ---------------
def test_bf16_autocast_trains_close_to_float32(tmp_path):
    kw = dict(steps=10, evaluate_at_end=False)
    full = train_tiny("ae", tmp_path / "f", set={"train.log_every": 1}, **kw)
    half = train_tiny("ae", tmp_path / "h", set={"train.log_every": 1, "train.amp": "bf16"}, **kw)
    lf = [r["loss"] for r in full.metrics() if r["split"] == "train"]
    lh = [r["loss"] for r in half.metrics() if r["split"] == "train"]
    assert lf != lh  # autocast really ran in bf16 ...
    assert np.allclose(lf, lh, rtol=2e-2)  # ... and bf16 keeps about 3 significant digits
    wf, wh = weights(full), weights(half)
    assert all(v.dtype == torch.float32 for v in wh.values())  # the weights stay float32
    assert max((wf[k] - wh[k]).abs().max().item() for k in wf) < 1e-2


@pytest.mark.parametrize("model", ["ae", "gan"])
def test_fp16_with_a_gradient_scaler_resumes_exactly(tmp_path, model):
    sets = {"train.amp": "fp16", "train.checkpoint_every": 3, "train.batch_size": 64}
    if model == "gan":
        sets.update({"g_hidden": [16], "d_hidden": [16], "latent": 4})
    go = (lambda out, steps: genlab.train("gan", "digits", out=out, steps=steps, set=sets, device="cpu",
                                          evaluate_at_end=False)) if model == "gan" else \
        (lambda out, steps: train_tiny(model, out, steps=steps, set=sets, evaluate_at_end=False))
    full = go(tmp_path / "full", 8)
    state = ckpt.load_state(full.path)
    assert state["scaler"]["scale"] > 1  # the scaler's state is part of the checkpoint
    part = go(tmp_path / "part", 5)
    resumed = genlab.train(out=part.path, resume=True, steps=8, device="cpu", evaluate_at_end=False)
    assert state_dicts_equal(weights(resumed), weights(full))


def test_compile_keeps_the_weights_and_the_checkpoint_layout(tmp_path):
    """train.compile compiles each network in place; with the eager backend (no code generation,
    so the test stays fast) the arithmetic is unchanged: same weights, same state-dict keys."""
    plain = train_tiny("ae", tmp_path / "p", steps=6, evaluate_at_end=False)
    comp = train_tiny("ae", tmp_path / "c", steps=6, evaluate_at_end=False,
                      set={"train.compile": True, "train.compile_backend": "eager"})
    assert state_dicts_equal(weights(comp), weights(plain))


def test_amp_and_compile_flags_reach_the_config(tmp_path, capsys):
    from genlab.cli import main

    rc = main(["train", "ae", "--data", "digits", "--steps", "2", "--out", str(tmp_path / "r"), "--amp",
               "--compile", "--set", "hidden=[16]", "latent=2", "train.compile_backend=eager", "--device", "cpu"])
    assert rc == 0
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())["train"]
    assert cfg["amp"] == "bf16" and cfg["compile"] is True


def test_quality_checks_do_not_change_the_training_steps(tmp_path, data_root):
    """The stacked-mnist quality probe builds the mnist-cnn classifier; building it must not draw
    from training's RNG: a run with train.quality_every takes the same steps as one without."""
    kw = dict(steps=6, device="cpu", evaluate_at_end=False, data_root=str(data_root))
    s = {"g_width": 8, "d_width": 8, "train.batch_size": 32, "data.limit": 2000}
    a = genlab.train("dcgan", "stacked-mnist", out=tmp_path / "a", set={**s, "train.quality_every": 0}, **kw)
    b = genlab.train("dcgan", "stacked-mnist", out=tmp_path / "b", set={**s, "train.quality_every": 3}, **kw)
    assert state_dicts_equal(weights(a), weights(b))
    assert len([r for r in b.metrics() if r["split"] == "quality"]) == 2
