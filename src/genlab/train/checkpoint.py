"""Checkpoints that survive a kill at any moment, and load without running code.

A checkpoint is one file, ``state.pt``: the exact bytes of the weights' safetensors file with
their SHA-256, the optimizer states, the step, the position in the epoch, the learning-rate
scale and every RNG state. ``model.safetensors`` beside it holds the same weight bytes for
everything that reads a run (eval, sample, export); resume reads the weights from
``state.pt``, so the two files never have to agree at the moment of a crash.

Writing: the current ``state.pt`` is first hard-linked to ``state.prev.pt`` (the previous good
checkpoint), then the new one is written to a temporary file, fsynced and renamed over it, and
only then is ``model.safetensors`` replaced the same way. A process killed at any point leaves
a complete ``state.pt`` (old or new) or, at worst, a complete ``state.prev.pt``.

Loading: ``torch.load(weights_only=True)`` (a state file that would need pickled code is not
a genlab checkpoint and is refused), the format version is checked, and the weight bytes must
match their recorded SHA-256; a damaged newest checkpoint falls back to the previous one with a
warning.
"""
from __future__ import annotations

import hashlib
import io
import os
import random
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import load_file, save

from ..errors import RunError
from ..io import atomic_write_bytes

WEIGHTS = "model.safetensors"
STATE = "state.pt"
PREVIOUS = "state.prev.pt"
FORMAT = 2  # 1: weights only in model.safetensors (genlab 0.1 before checkpoints held them)


class CheckpointError(RunError):
    pass


def weights_bytes(model: torch.nn.Module, step: int) -> bytes:
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    return save(tensors, metadata={"step": str(step), "format": "genlab"})


def save_weights(path: Path, model: torch.nn.Module, step: int) -> None:
    atomic_write_bytes(path, weights_bytes(model, step))


def compare_shapes(own: dict[str, list], stored: dict[str, list]) -> tuple[list, list, tuple | None]:
    """How stored parameter shapes differ from a model's (name -> shape lists): the model's
    names missing from the file, the file's names the model lacks, and the first parameter
    present in both with another shape as (name, stored shape, own shape), or None."""
    missing = [k for k in own if k not in stored]
    unexpected = [k for k in stored if k not in own]
    bad = next(((k, stored[k], own[k]) for k in own if k in stored and stored[k] != own[k]), None)
    return missing, unexpected, bad


def load_tensors_into(model: torch.nn.Module, tensors: dict, where: str) -> None:
    """Load ``tensors`` into ``model``; a mismatch names the parameter and both shapes, or the
    missing and unexpected keys."""
    missing, unexpected, bad = compare_shapes({k: list(v.shape) for k, v in model.state_dict().items()},
                                              {k: list(v.shape) for k, v in tensors.items()})
    if bad:
        raise RunError(f"{where}: weights do not fit the model in config.json: {bad[0]} has shape "
                       f"{tuple(bad[1])} in the file, {tuple(bad[2])} in the model")
    if missing or unexpected:
        raise RunError(f"{where}: weights do not fit the model in config.json (missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.load_state_dict(tensors, strict=True)


def load_weights(path: Path, model: torch.nn.Module) -> int:
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: weights file not found (was the run trained to its first checkpoint?)")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except Exception as e:  # safetensors raises several types for a damaged file
        raise RunError(f"{path}: not a readable safetensors file ({e})") from None
    load_tensors_into(model, tensors, str(path))
    return int(meta.get("step", -1))


# --- RNG states ------------------------------------------------------------------------------
def rng_state(device: torch.device) -> dict:
    """Every random stream training may draw from: torch's (CPU and the device's), NumPy's
    global one and Python's; stored as tensors and plain values, so loading needs no pickle."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    st = {"torch": torch.get_rng_state(),
          "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                    "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
          "python": {"version": py_state[0], "state": list(py_state[1]), "gauss_next": py_state[2]}}
    if device.type == "cuda":
        st["cuda"] = torch.cuda.get_rng_state(device)
    return st


def set_rng_state(st: dict, device: torch.device) -> None:
    torch.set_rng_state(st["torch"])
    if "numpy" in st:
        n = st["numpy"]
        np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                             n["cached_gaussian"]))
    if "python" in st:
        p = st["python"]
        random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))
    if device.type == "cuda" and "cuda" in st:
        torch.cuda.set_rng_state(st["cuda"], device)


# --- checkpoints -----------------------------------------------------------------------------
def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def save_checkpoint(run_dir: Path, model, state: dict) -> None:
    """Write ``state`` (step, optimizers, rng, ...) with the model's weights as one checkpoint.
    A weight that is NaN or infinite is never written: that raises instead."""
    run_dir = Path(run_dir)
    for k, v in model.state_dict().items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise CheckpointError(f"{run_dir}: parameter {k} is not finite at step {state['step']}; "
                                  "the checkpoint was not written (the previous one is kept)")
    wb = weights_bytes(model, state["step"])
    # the weight bytes as a uint8 tensor: stored raw in torch's zip (a bytes object would be
    # pickled as text with protocol 2)
    full = {**state, "format": FORMAT, "weights": torch.frombuffer(bytearray(wb), dtype=torch.uint8),
            "weights_sha256": hashlib.sha256(wb).hexdigest()}
    buf = io.BytesIO()
    torch.save(full, buf)
    cur = run_dir / STATE
    try:
        if cur.is_file():  # keep the last good checkpoint until the new one is complete
            tmp = run_dir / f".{PREVIOUS}.link.tmp"
            if tmp.exists():
                tmp.unlink()
            try:
                os.link(cur, tmp)
            except OSError:  # a file system without hard links: copy
                tmp.write_bytes(cur.read_bytes())
            os.replace(tmp, run_dir / PREVIOUS)
        atomic_write_bytes(cur, buf.getvalue())
        atomic_write_bytes(run_dir / WEIGHTS, wb)
    except OSError as e:
        raise CheckpointError(f"{run_dir}: could not write the checkpoint of step {state['step']} "
                              f"({e.strerror or e}); the previous checkpoint is kept") from None
    _fsync_dir(run_dir)


def read_state(path: Path) -> dict:
    """One checkpoint file, verified: readable without pickled code, a known format, weight
    bytes that match their checksum."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no training state to resume from") from None
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            msg = "it needs pickled code to load, which genlab never writes and refuses to run"
        raise CheckpointError(f"{path}: unreadable training state ({msg})") from None
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(f"{path}: not a genlab training state (no 'step' field)")
    fmt = state.get("format", 1)
    if fmt > FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {fmt} is newer than this genlab reads ({FORMAT}); "
                              "upgrade genlab")
    if fmt >= 2:
        wb = state.get("weights")
        wb = wb.numpy().tobytes() if isinstance(wb, torch.Tensor) and wb.dtype == torch.uint8 else None
        if wb is None or hashlib.sha256(wb).hexdigest() != state.get("weights_sha256"):
            raise CheckpointError(f"{path}: the weights in the checkpoint do not match their checksum (damaged file)")
        state["weights"] = wb
    return state


def load_state(run_dir: Path) -> dict:
    """The newest verified checkpoint of ``run_dir`` (state.pt, else state.prev.pt)."""
    run_dir = Path(run_dir)
    try:
        return read_state(run_dir / STATE)
    except CheckpointError as first:
        if (run_dir / PREVIOUS).is_file():
            try:
                state = read_state(run_dir / PREVIOUS)
            except CheckpointError:
                raise first from None
            print(f"genlab: warning: {first}; resuming from the previous checkpoint (step {state['step']})",
                  file=sys.stderr)
            return state
        raise


def has_checkpoint(run_dir: Path) -> bool:
    return (Path(run_dir) / STATE).is_file() or (Path(run_dir) / PREVIOUS).is_file()


def load_checkpoint(run_dir: Path, model) -> dict:
    """Load the newest good checkpoint's weights into ``model`` and return its state. Format 1
    (weights in model.safetensors only) is still read: the step in both files must agree."""
    run_dir = Path(run_dir)
    state = load_state(run_dir)
    if state.get("format", 1) >= 2:
        try:
            tensors = load_safetensors_bytes(state["weights"])
        except Exception as e:
            raise CheckpointError(f"{run_dir / STATE}: weights not readable ({e})") from None
        load_tensors_into(model, tensors, str(run_dir / STATE))
        return state
    step = load_weights(run_dir / WEIGHTS, model)
    if step != state["step"]:
        raise CheckpointError(
            f"{run_dir}: {WEIGHTS} is at step {step} but {STATE} at step {state['step']} (interrupted while saving?)"
        )
    return state


def clean_temporaries(run_dir: Path) -> None:
    """Remove temporary files a killed process left behind (``.NAME.XXXX.tmp``)."""
    for p in Path(run_dir).glob(".*.tmp"):
        try:
            p.unlink()
        except OSError:
            pass
