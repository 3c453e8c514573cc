"""Shared fixtures for the genlab test suite.

The suite must stay fast on a small, shared CPU: torch is limited to one thread (with two
threads on a busy 2-core machine the OpenMP spin-waits make tiny models ~100x slower), models are
tiny (hidden=[32], latent=4) and training runs a few steps on the embedded ``digits`` data set.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# Small settings shared by the tests that train.
TINY_MLP = {"hidden": [32], "latent": 4}


def _has_mnist(root: Path) -> bool:
    raw = root / "MNIST" / "raw"
    return all((raw / s).is_file() or (raw / (s + ".gz")).is_file() for s in MNIST_FILES)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The folder holding MNIST/raw (torchvision layout): $GENLAB_DATA_ROOT, else the
    ``shared/data`` folder beside the repository. Skips the test when MNIST is not there."""
    env = os.environ.get("GENLAB_DATA_ROOT")
    root = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    if not _has_mnist(root):
        pytest.skip(f"MNIST not found in {root / 'MNIST' / 'raw'} (set GENLAB_DATA_ROOT to the folder holding MNIST/raw)")
    return root


@pytest.fixture
def one_thread():
    """One torch thread for the test, whatever an earlier training run set (train.threads)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _no_env_data_root(monkeypatch, request):
    """Tests that do not ask for real data must not depend on the caller's $GENLAB_DATA_ROOT."""
    if "data_root" not in request.fixturenames:
        monkeypatch.delenv("GENLAB_DATA_ROOT", raising=False)


def train_tiny(model: str, out: Path, *, steps: int = 20, set: dict | None = None, **kw):
    import genlab

    cfg = dict(TINY_MLP) if model in ("ae", "vae") else {"channels": [4, 8], "latent": 4}
    cfg.update(set or {})
    return genlab.train(model, "digits", out=out, steps=steps, set=cfg, device="cpu", **kw)


@pytest.fixture(scope="session")
def ae_run(tmp_path_factory):
    """A tiny MLP autoencoder trained 20 steps on digits (shared; tests must not modify it)."""
    return train_tiny("ae", tmp_path_factory.mktemp("runs") / "ae")


@pytest.fixture(scope="session")
def vae_run(tmp_path_factory):
    """A tiny MLP VAE trained 40 steps on digits (shared; tests must not modify it)."""
    return train_tiny("vae", tmp_path_factory.mktemp("runs") / "vae", steps=40)


def state_dicts_equal(a: dict, b: dict) -> bool:
    """Bitwise equality of two state dicts (same keys, torch.equal on every tensor)."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
