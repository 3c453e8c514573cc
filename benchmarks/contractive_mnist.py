"""Contractive autoencoder then supervised fine-tuning (Rifai et al. 2011, "Contractive
Auto-Encoders", Table 2: CAE with 1000 hidden units, fine-tuned: 1.14% MNIST test error)."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

NAME = "contractive-mnist"
DESCRIPTION = "MNIST: contractive AE (1000 sigmoid units) pretraining then fine-tuning vs the same net from scratch; paper 1.14%"
SETTINGS = ("epochs", "finetune_epochs", "lam")
PAPER = 1.14


def run(ctx) -> dict:
    import copy

    import torch

    import genlab
    from _ae_common import finetune

    root = ctx.need_mnist()
    epochs = ctx.param("epochs", 10, quick=1)
    ft_epochs = ctx.param("finetune_epochs", 10, quick=1)
    lam = ctx.param("lam", 0.1)
    limit = {"data.limit": 6000} if ctx.quick else {}
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        run_ = genlab.train("contractive-ae", "mnist", data_root=root, out=Path(tmp) / "cae", epochs=epochs, batch_size=128,
                            lr=1e-3, seed=0, progress=ctx.progress,
                            set={"latent": 1000, "lam": lam, "loss": "bce", "train.schedule": "cosine", "train.threads": 1, **limit})
        ev = json.loads((run_.path / "eval.json").read_text())
        ds = run_._data
        m = run_.model
        enc = torch.nn.Sequential(copy.deepcopy(m.encoder), torch.nn.Sigmoid())
        pre = finetune(enc, 1000, ds, ft_epochs, lr=1e-3)
        torch.manual_seed(1)
        fresh = genlab.create_model("contractive-ae", shape=ds.shape, latent=1000)
        scratch = finetune(torch.nn.Sequential(fresh.encoder, torch.nn.Sigmoid()), 1000, ds, ft_epochs, lr=1e-3)
    rows = [
        {"network 784-1000-10 (sigmoid)": f"CAE pretrained ({epochs} ep, lam {lam}) + fine-tuned ({ft_epochs} ep)",
         "test error %": pre["error_pct"], "paper %": PAPER, "seconds": round(ev["train_seconds"] + pre["seconds"], 1)},
        {"network 784-1000-10 (sigmoid)": f"from scratch ({ft_epochs} ep)", "test error %": scratch["error_pct"],
         "paper %": "-", "seconds": scratch["seconds"]},
    ]
    return {
        "error_pretrained_pct": pre["error_pct"], "error_scratch_pct": scratch["error_pct"], "epochs": epochs,
        "finetune_epochs": ft_epochs, "lam": lam, "pretrain_seconds": ev["train_seconds"],
        "table": rows,
        "protocol": (f"MNIST {'first 6000 train images, ' if ctx.quick else '60000 train / '}10000 test, pixels in [0, 1]. "
                     f"contractive-ae: 784-1000 sigmoid code (closed-form Jacobian penalty, lam = {lam}), sigmoid "
                     f"output, cross-entropy loss, Adam 1e-3 cosine, batch 128, {epochs} epochs, seed 0. Fine-tuning: "
                     f"its encoder + a linear 10-way head, cross-entropy, Adam 1e-3 cosine, batch 128, {ft_epochs} "
                     "epochs, all weights trained; the baseline trains the same network from random weights with the "
                     "same settings. No validation split, no early stopping: the last epoch is reported"),
    }
