"""Classification with autoencoders, the lecture's two methods, on MNIST and Fashion-MNIST.

- Method I: one ``ae`` (784-512-64, MSE), its 64-d codes of the training images as the
  features of a multinomial logistic regression (standardised, lbfgs, max_iter 2000), scored on
  the codes of the test images (``genlab.uses.classify_codes``).
- Method II: ten ``ae`` of the same shape, each trained on one class's training images; a test
  image goes to the class whose autoencoder reconstructs it with the smallest squared error
  summed over pixels (``genlab.uses.per_class_autoencoders``).
- Reference: the same logistic regression on the 784 raw pixels in [0, 1] (not standardised:
  that costs raw pixels about 2 points on MNIST).

All three see the same training images (the first ``limit`` of the 60000; ``--set limit=0``
for all of them) and are scored on the full 10000-image test split. One CPU thread for torch
(train.threads=1) and for scikit-learn's BLAS, so the defaults finish in about 5 minutes on a
busy 2-core machine.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

NAME = "ae-classification"
DESCRIPTION = ("MNIST + Fashion-MNIST test accuracy: AE codes + logistic regression (method I) vs one AE per "
               "class, smallest reconstruction error (method II) vs logistic regression on raw pixels")
SETTINGS = ("epochs", "limit", "hidden", "latent", "seed", "datasets")
FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}


def run(ctx) -> dict:
    import numpy as np
    import torch
    from threadpoolctl import threadpool_limits

    import genlab
    from genlab.data import DataConfig, load_data
    from genlab.uses import classify_codes, fit_score, per_class_autoencoders

    epochs = ctx.param("epochs", 10, quick=1)
    limit = ctx.param("limit", 20000, quick=2000)
    hidden = ctx.param("hidden", [512])
    latent = ctx.param("latent", 64)
    seed = ctx.param("seed", 0)
    datasets = ctx.param("datasets", "mnist,fashion-mnist")
    names = [d.strip() for d in datasets.split(",") if d.strip()]
    for d in names:
        if d not in FOLDERS:
            raise genlab.GenlabError(f"--set datasets: expected mnist and/or fashion-mnist, got {d!r}")
    roots = {d: ctx.need_mnist(FOLDERS[d]) for d in names}  # every data set checked before any work
    model_cfg = {"hidden": hidden, "latent": latent, "loss": "mse"}
    train_cfg = {"threads": 1}
    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)
    rows, results = [], {}
    try:
        with threadpool_limits(1), tempfile.TemporaryDirectory() as tmp:
            for d in names:
                data = {"name": d, "root": roots[d], "limit": limit}
                ds = load_data(DataConfig(**data))
                n_train = len(ds.train)

                ctx.log(f"{d}: logistic regression on the raw pixels of {n_train} images ...")
                xtr, ytr = ds.eval_inputs("train")
                xte, yte = ds.eval_inputs("test")
                raw = fit_score(xtr.reshape(len(xtr), -1).numpy(), ytr.numpy(), xte.reshape(len(xte), -1).numpy(),
                                yte.numpy(), "logreg", seed=seed, standardise=False)

                ctx.log(f"{d}: method I, training one ae ({epochs} epoch(s)) ...")
                t0 = time.perf_counter()
                r1 = genlab.train("ae", d, data_root=roots[d], out=Path(tmp) / d / "ae", epochs=epochs, batch_size=128,
                                  lr=1e-3, seed=seed, device="cpu", progress=ctx.progress,
                                  set={**model_cfg, **{f"train.{k}": v for k, v in train_cfg.items()}, "data.limit": limit})
                train1 = time.perf_counter() - t0
                m1 = classify_codes(r1, classifier="logreg", seed=seed)

                ctx.log(f"{d}: method II, training ten ae, one per class ({epochs} epoch(s) each) ...")
                m2 = per_class_autoencoders("ae", data, model_cfg, out=Path(tmp) / d / "per-class", train=train_cfg,
                                            epochs=epochs, batch_size=128, lr=1e-3, seed=seed, device="cpu",
                                            progress=ctx.progress, log=ctx.log)
                per_class_acc = (np.diag(np.array(m2["confusion"])) / np.array(m2["confusion"]).sum(1)).round(4).tolist()

                results[d] = {
                    "n_train": n_train, "n_test": raw["n_test"],
                    "raw_logreg": {k: raw[k] for k in ("accuracy", "seconds", "converged")},
                    "method_1": {"accuracy": m1["accuracy"], "train_seconds": round(train1, 2),
                                 "encode_seconds": m1["encode_seconds"], "classifier_seconds": m1["seconds"],
                                 "converged": m1["converged"], "code_size": m1["code_size"]},
                    "method_2": {"accuracy": m2["accuracy"], "train_seconds": m2["train_seconds"],
                                 "score_seconds": m2["score_seconds"], "confusion": m2["confusion"],
                                 "per_class_accuracy": per_class_acc, "n_train_per_class": m2["n_train"]},
                }
                rows += [
                    {"data": d, "method": "raw pixels + logreg (reference)", "features": int(xtr[0].numel()),
                     "epochs": "-", "test acc": round(raw["accuracy"], 4), "seconds": round(raw["seconds"], 1)},
                    {"data": d, "method": "I: ae codes + logreg", "features": m1["code_size"], "epochs": epochs,
                     "test acc": round(m1["accuracy"], 4),
                     "seconds": round(train1 + m1["encode_seconds"] + m1["seconds"], 1)},
                    {"data": d, "method": "II: 10 per-class ae, min recon error", "features": "-", "epochs": epochs,
                     "test acc": round(m2["accuracy"], 4),
                     "seconds": round(m2["train_seconds"] + m2["score_seconds"], 1)},
                ]
                ctx.log(f"{d}: raw {raw['accuracy']:.4f}, method I {m1['accuracy']:.4f}, method II {m2['accuracy']:.4f}")
    finally:
        torch.set_num_threads(threads_before)
    arch = f"784-{'-'.join(map(str, hidden))}-{latent} ReLU MLP autoencoder, linear code, sigmoid output, MSE"
    notes = [f"{d}: logistic regression did not converge in 2000 iterations ({w})"
             for d, r in results.items() for w, ok in (("raw pixels", r["raw_logreg"]["converged"]),
                                                        ("codes", r["method_1"]["converged"])) if not ok]
    return {
        "results": results, "epochs": epochs, "limit": limit, "table": rows, "notes": notes,
        "protocol": (f"{', '.join(names)}: the first {limit or 60000} training images (all classes; --set limit=0 for all "
                     f"60000), scored on the full 10000-image test split; pixels in [0, 1]. Method I: one {arch}, "
                     f"Adam lr 1e-3, batch 128, {epochs} epoch(s), seed {seed}; its codes (train and test) -> "
                     "StandardScaler + multinomial LogisticRegression (lbfgs, C=1, max_iter=2000). Method II: ten "
                     f"autoencoders of the same shape and training, each on one class's training images among the "
                     f"same {limit or 60000} (data.classes=[c], so about a tenth of the images and steps each); a test "
                     "image goes to the class whose autoencoder has the smallest squared reconstruction error summed "
                     "over pixels. Reference: the same logistic regression on the raw pixels in [0, 1], not standardised. One thread for torch "
                     "(train.threads=1) and for scikit-learn's BLAS; seconds are wall time of training + encoding + "
                     "fitting/scoring on this machine (shared, so they vary)."),
    }
