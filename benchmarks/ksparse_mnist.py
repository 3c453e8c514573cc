"""k-sparse autoencoder features for classification (Makhzani & Frey 2013, "k-Sparse
Autoencoders", Table 2): 1000 hidden units, k = 25, features with alpha*k = 75 units, logistic
regression on them: 1.35% test error; on raw pixels: 7.20% (the paper's figures, trained for
many more epochs than here)."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

NAME = "ksparse-mnist"
DESCRIPTION = "MNIST: logistic regression on k-sparse AE features (1000 hidden, k=25, alpha=3) vs raw pixels; paper 1.35% / 7.20%"
SETTINGS = ("epochs",)
PAPER_KSPARSE, PAPER_RAW = 1.35, 7.20


def run(ctx) -> dict:
    import torch

    import genlab
    from _ae_common import arrays, encode_all, logreg_error

    root = ctx.need_mnist()
    epochs = ctx.param("epochs", 20, quick=1)
    limit = {"data.limit": 6000} if ctx.quick else {}
    with tempfile.TemporaryDirectory() as tmp:
        run_ = genlab.train("ksparse-ae", "mnist", data_root=root, out=Path(tmp) / "ks", epochs=epochs, batch_size=128,
                            lr=1e-3, seed=0, progress=ctx.progress,
                            set={"latent": 1000, "k": 25, "alpha": 3.0, "k_start": 100, "k_schedule": 0.5,
                                 "loss": "mse", "train.schedule": "cosine", "train.threads": 1, **limit})
        ev = json.loads((run_.path / "eval.json").read_text())
        ds = run_._data
        xtr, ytr = arrays(ds, "train")
        xte, yte = arrays(ds, "test")
        m = run_.model
        ftr = encode_all(m, ds.eval_inputs("train")[0])
        fte = encode_all(m, ds.eval_inputs("test")[0])
        dead = int((torch.from_numpy(ftr) != 0).sum(0).eq(0).sum())
        # the paper's Figure 1: filters (rows of W) of the most used units, each scaled to its own range
        use = (torch.from_numpy(ftr) != 0).sum(0)
        w = m.enc.weight.detach()[use.argsort(descending=True)[:100]]
        w = (w - w.min(1, keepdim=True).values) / (w.max(1, keepdim=True).values - w.min(1, keepdim=True).values + 1e-12)
        fig = ctx.figure("ksparse-filters-mnist.png", w.view(-1, *ds.shape), nrow=20)
    feat = logreg_error(ftr, ytr, fte, yte)
    raw = logreg_error(xtr, ytr, xte, yte, standardise=False)
    rows = [
        {"features": "raw pixels (784)", "LR test error %": raw["error_pct"], "paper %": PAPER_RAW, "LR s": raw["seconds"]},
        {"features": f"k-sparse AE, 1000 units, 75 kept, {epochs} epochs", "LR test error %": feat["error_pct"],
         "paper %": PAPER_KSPARSE, "LR s": feat["seconds"]},
    ]
    return {
        "error_ksparse_pct": feat["error_pct"], "error_raw_pct": raw["error_pct"], "epochs": epochs,
        "train_seconds": ev["train_seconds"], "test_sse": ev["sse"], "dead_units": dead,
        "table": rows, "figure": fig,
        "protocol": (f"MNIST {'first 6000 train images, ' if ctx.quick else '60000 train / '}10000 test, pixels in [0, 1]. "
                     "ksparse-ae: 784-1000 linear code, top-k support, tied weights, sigmoid output, squared error; "
                     f"k falls linearly from 100 to 25 over the first half of training; Adam 1e-3 cosine, batch 128, "
                     f"{epochs} epochs ({ev['train_seconds']:.0f} s), seed 0. Features: the codes with alpha*k = 75 "
                     f"units kept ({dead} of 1000 units never active on the training set). Classifier: scikit-learn "
                     "LogisticRegression (lbfgs, C = 1, up to 300 iterations) on standardised features, fitted on "
                     "the training split, scored on the test split; the raw-pixel row is the same classifier on the "
                     "pixels in [0, 1], not standardised"),
    }
