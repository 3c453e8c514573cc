"""torchrun: a 2-process CPU run (gloo) takes the same steps as a 1-process run on the same
global batch: an autoencoder, a VAE with dynamic binarisation (per-example noise), the style
network, and a GAN with two optimizers and BatchNorm (through `torchrun -m genlab train`)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import genlab

pytestmark = [pytest.mark.filterwarnings("ignore:random weights"),
              pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")]

HERE = Path(__file__).parent


def _torchrun(*args, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("GENLAB_DATA_ROOT", None)
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def _close(a: dict, b: dict, atol=1e-5, rtol=1e-4) -> str:
    """'' when every tensor agrees to floating-point tolerance, else the worst key."""
    assert a.keys() == b.keys()
    worst = max(a, key=lambda k: (a[k].float() - b[k].float()).abs().max().item() if a[k].numel() else 0)
    ok = all(torch.allclose(a[k].float(), b[k].float(), atol=atol, rtol=rtol) for k in a)
    return "" if ok else f"{worst}: max diff {(a[worst].float() - b[worst].float()).abs().max().item():.3g}"


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from PIL import Image

    d = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray((rng.random((20, 24, 3)) * 255).astype(np.uint8)).save(d / f"{i}.png")
    Image.fromarray((rng.random((24, 24, 3)) * 255).astype(np.uint8)).save(d.parent / "style.png")
    return d


def test_two_processes_match_one_on_the_same_global_batch(tmp_path, photos):
    common = {"train.log_every": 1, "train.checkpoint_every": 5}
    cases = {
        # 1437 training digits, batch 64: the last batch of the epoch (29) splits 15/14
        "ae": {"model": "ae", "data": "digits", "steps": 26, "batch_size": 64, "set": {"hidden": [32], "latent": 4, **common}},
        "vae": {"model": "vae", "data": "digits", "steps": 12, "batch_size": 64,
                "set": {"hidden": [32], "latent": 4, "data.binarize": "dynamic", **common}},
        # SGD here: the conv biases before InstanceNorm get gradients that are zero up to rounding,
        # which Adam's first steps (g / (|g| + eps)) blow up to +-lr in either run
        "style-net": {"model": "style-net", "data": f"folder:{photos}", "steps": 3, "batch_size": 4,
                      "set": {"style": str(photos.parent / "style.png"), "width": 8, "residual_blocks": 1,
                              "random_weights": True, "data.image_size": 16, "train.optimizer": "sgd",
                              "train.lr": 0.05, **common}},
    }
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    r = _torchrun(HERE / "ddp_worker.py", tmp_path / "cases.json", tmp_path / "two")
    assert r.returncode == 0, r.stderr[-3000:]
    for name, c in cases.items():
        one = genlab.train(c["model"], c["data"], out=tmp_path / "one" / name, steps=c["steps"],
                           batch_size=c["batch_size"], set=c["set"], device="cpu", evaluate_at_end=False)
        two = genlab.load_run(tmp_path / "two" / name)
        assert (msg := _close(one.model.state_dict(), two.model.state_dict())) == "", f"{name}: {msg}"
        # rank 0 alone wrote the run: one metrics line per step, losses close to the 1-process ones
        m1 = [r for r in one.metrics() if r["split"] == "train"]
        m2 = [r for r in two.metrics() if r["split"] == "train"]
        assert [r["step"] for r in m2] == list(range(1, c["steps"] + 1))
        assert np.allclose([r["loss"] for r in m1], [r["loss"] for r in m2], rtol=1e-3, atol=1e-5), name


def test_torchrun_genlab_train_gan_with_batchnorm_matches_one_process(tmp_path):
    # SGD: G's linear biases before BatchNorm have gradients that are zero up to rounding (see above)
    sets = {"g_hidden": [32, 32], "d_hidden": [16], "latent": 4, "train.log_every": 1, "train.threads": 1,
            "train.optimizer": "sgd", "train.lr": 0.05}
    args = ["--data", "digits", "--steps", "10", "--batch-size", "50", "--device", "cpu", "--quiet",
            "--set", *[f"{k}={json.dumps(v).replace(' ', '')}" for k, v in sets.items()]]
    r = _torchrun("-m", "genlab", "train", "gan", "--out", tmp_path / "two", *args)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines() == [str(tmp_path / "two")]  # rank 0 alone prints the run directory
    one = genlab.train("gan", "digits", out=tmp_path / "one", steps=10, batch_size=50, set=sets, device="cpu")
    two = genlab.load_run(tmp_path / "two")
    assert (msg := _close(one.model.state_dict(), two.model.state_dict())) == ""
    assert json.loads((tmp_path / "two" / "eval.json").read_text())["steps"] == 10
    assert two.config["train"]["batch_size"] == 50  # the global batch, as asked
