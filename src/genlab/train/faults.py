"""Fault injection: train in a child process, SIGKILL it at random moments, resume, repeat.

``kill_and_resume`` proves the claim of the checkpoint module: a run killed at any moment
resumes from its last good checkpoint and ends with the weights of a run that never stopped.
The test suite runs it for an autoencoder, a VAE and a GAN; ``genlab bench fault-injection``
runs it longer. POSIX only (``os.fork``).
"""
from __future__ import annotations

import os
import random
import signal
import sys
import time
import traceback
from pathlib import Path


def _child(model: str, data: str, out: Path, steps: int, sets: dict, resume: bool, err_file: Path) -> None:
    """Runs in the forked child: train (or resume) to ``steps``, then leave without cleanup."""
    code = 0
    try:
        import torch

        torch.set_num_threads(1)  # a forked child must not use the parent's OpenMP pool
        import genlab

        if resume:
            genlab.train(out=out, resume=True, steps=steps, device="cpu", evaluate_at_end=False)
        else:
            genlab.train(model, data, out=out, steps=steps, set=sets, device="cpu", evaluate_at_end=False)
    except BaseException:  # noqa: BLE001 - reported to the parent through err_file
        err_file.write_text(traceback.format_exc())
        code = 1
    finally:
        os._exit(code)


def _spawn(*args) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)  # the child's warnings ("resuming from ...") are not the test's output
        _child(*args)
    return pid


def run_to_end(model: str, data: str, out: Path, steps: int, sets: dict) -> dict:
    """An uninterrupted run in a child process (the same process setup as the killed ones);
    returns its wall time split into start-up (before the first step) and seconds per step."""
    import json

    import tempfile

    import genlab

    with tempfile.TemporaryDirectory() as tmp:  # import and load everything once, before forking
        genlab.train(model, data, out=Path(tmp) / "warm", steps=1, set=sets, device="cpu", evaluate_at_end=False)
    err = Path(out).with_suffix(".err")
    t0 = time.perf_counter()
    pid = _spawn(model, data, Path(out), steps, sets, False, err)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"uninterrupted run failed:\n{err.read_text() if err.exists() else status}")
    total = time.perf_counter() - t0
    lines = [json.loads(x) for x in (Path(out) / "metrics.jsonl").read_text().splitlines() if x.strip()]
    train_s = max((r.get("time", 0.0) for r in lines), default=0.0)
    return {"seconds": total, "startup_s": max(total - train_s, 0.0), "step_s": train_s / max(steps, 1)}


def _logged_step(out: Path) -> int:
    """The last training step in ``out``'s metrics.jsonl (0 when there is none yet)."""
    try:
        lines = (out / "metrics.jsonl").read_bytes().splitlines()
    except OSError:
        return 0
    for line in reversed(lines):
        i = line.find(b'"step": ')
        if i >= 0 and line.endswith(b"}"):
            return int(line[i + 8:].split(b",")[0])
    return 0


def kill_and_resume(model: str, data: str, out: Path, steps: int, sets: dict, kills: int,
                    timing: dict, seed: int = 0, max_cycles: int = 200) -> dict:
    """Start training into ``out``; SIGKILL it ``kills`` times, resuming after each kill (a fresh
    start when no config.json was written yet); then let it finish. Every third kill (the first
    included) comes after a random delay within the attempt's start-up (``timing`` of
    :func:`run_to_end`): while it imports, loads data, reads its checkpoint. The others wait
    until metrics.jsonl shows a random target step, between half and all of ``steps / kills``
    steps past the furthest step logged so far, and kill after a further random fraction of a
    step: inside a step, a log write or a checkpoint write. So every kill lands before the run
    ends, however loaded the machine is (the run needs log_every=1). Returns the kill log: for
    each kill its kind, the seconds into the attempt, the step of the checkpoint it left, and
    whether it left a half-written temporary file. Raises when any attempt fails."""
    from . import checkpoint as ckpt

    rng = random.Random(seed)
    out = Path(out)
    err = out.with_suffix(".err")
    log = []
    for cycle in range(max_cycles):
        resume = (out / "config.json").is_file()
        pid = _spawn(model, data, out, steps, sets, resume, err)
        if len(log) < kills:
            done_steps = (log[-1]["checkpoint_step"] or 0) if log else 0
            chunk = max(1, steps // kills)
            kind = "start-up" if len(log) % 3 == 0 else "step"
            delay = rng.uniform(0, timing["startup_s"]) if kind == "start-up" else float("inf")
            # the killed attempt's lines past its checkpoint are still there until the resume truncates them
            target = min(steps - 1, max(_logged_step(out), done_steps) + rng.randint(max(1, chunk // 2), chunk))
            extra = rng.uniform(0, timing["step_s"])
            t0, done = time.perf_counter(), 0
            while time.perf_counter() - t0 < delay:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                if kind == "step" and _logged_step(out) >= target:
                    time.sleep(extra)
                    break
                time.sleep(0.002)
            if not done:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                state_step = None
                if ckpt.has_checkpoint(out):
                    try:
                        state_step = ckpt.load_state(out)["step"]
                    except Exception as e:  # noqa: BLE001 - the point of the exercise
                        raise RuntimeError(f"kill {len(log) + 1}: no loadable checkpoint after the kill ({e})") from None
                log.append({"kind": kind, "seconds": round(time.perf_counter() - t0, 4), "resume": resume,
                            "checkpoint_step": state_step, "temporaries": len(list(out.glob(".*.tmp"))) if out.is_dir() else 0})
                continue
        else:
            _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            raise RuntimeError(f"attempt {cycle + 1} (resume={resume}) failed with exit code {code}:\n"
                               f"{err.read_text() if err.exists() else ''}")
        return {"kills": log, "attempts": cycle + 1}  # finished (with fewer kills if the run was too short)
    raise RuntimeError(f"no finished run after {max_cycles} attempts")
