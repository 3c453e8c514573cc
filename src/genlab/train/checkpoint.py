"""Checkpoints: weights in safetensors, everything else needed for an exact resume beside them.

``model.safetensors`` holds the weights (and the step in its metadata); ``state.pt`` holds the
optimizer state, the step, the position in the epoch and the RNG states. Both are written
atomically (temporary file, fsync, rename); the step recorded in each must agree on load.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save

from ..errors import RunError
from ..io import atomic_save_torch, atomic_write_bytes

WEIGHTS = "model.safetensors"
STATE = "state.pt"


def save_weights(path: Path, model: torch.nn.Module, step: int) -> None:
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, save(tensors, metadata={"step": str(step), "format": "genlab"}))


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
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise RunError(f"{path}: weights do not fit the model in config.json (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return int(meta.get("step", -1))


def save_checkpoint(run_dir: Path, model, state: dict) -> None:
    # weights first, then the state that names their step: a crash in between leaves a state
    # whose step disagrees with the weights, which load_checkpoint reports.
    save_weights(run_dir / WEIGHTS, model, state["step"])
    atomic_save_torch(run_dir / STATE, state)


def load_state(run_dir: Path) -> dict:
    p = Path(run_dir) / STATE
    if not p.is_file():
        raise RunError(f"{p}: no training state to resume from")
    try:
        return torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:
        raise RunError(f"{p}: unreadable training state ({e})") from None


def load_checkpoint(run_dir: Path, model) -> dict:
    state = load_state(run_dir)
    step = load_weights(Path(run_dir) / WEIGHTS, model)
    if step != state["step"]:
        raise RunError(
            f"{run_dir}: {WEIGHTS} is at step {step} but {STATE} at step {state['step']} (interrupted while saving?)"
        )
    return state
