"""Linear autoencoder = PCA (Baldi & Hornik 1989) and the deep autoencoder against PCA
(Hinton & Salakhutdinov 2006) on MNIST.

- A linear autoencoder with a 30-unit code, trained by gradient descent on squared error, should
  reach the test error of PCA-30 and span the same subspace (principal angles near 0).
- Hinton & Salakhutdinov, "Reducing the dimensionality of data with neural networks", Science
  2006: the average squared error per MNIST test image is 13.87 for PCA-30 and 3.00 for a
  784-1000-500-250-30 autoencoder (RBM-pretrained, then fine-tuned). genlab trains the same shape
  from random initialisation with Adam; the target is to beat PCA-30 by at least 2x.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

NAME = "linear-ae-pca"
DESCRIPTION = "MNIST code size 30: linear AE vs PCA-30 (test error, principal angles) and the 784-1000-500-250-30 AE vs Hinton & Salakhutdinov 2006"
SETTINGS = ("linear_epochs", "deep_epochs")
PAPER_PCA, PAPER_AE = 13.87, 3.00


def run(ctx) -> dict:
    import numpy as np
    from scipy.linalg import subspace_angles

    import genlab
    from _ae_common import arrays, pca_fit, pca_sse

    root = ctx.need_mnist()
    lin_epochs = ctx.param("linear_epochs", 30, quick=1)
    deep_epochs = ctx.param("deep_epochs", 30, quick=1)
    limit = {"data.limit": 6000} if ctx.quick else {}
    with tempfile.TemporaryDirectory() as tmp:
        lin = genlab.train("linear-ae", "mnist", data_root=root, out=Path(tmp) / "lin", epochs=lin_epochs, batch_size=128,
                           lr=1e-3, seed=0, progress=ctx.progress,
                           set={"latent": 30, "train.schedule": "cosine", "train.threads": 1, **limit})
        ds = lin._data
        xtr, _ = arrays(ds, "train")
        xte, _ = arrays(ds, "test")
        pca = pca_fit(xtr, 30)
        pca_err = pca_sse(pca, xte)
        lin_ev = json.loads((lin.path / "eval.json").read_text())
        angles = np.degrees(subspace_angles(lin.model.decoder_basis().double().numpy(), pca.components_.T))
        deep = genlab.train("ae", "mnist", data_root=root, out=Path(tmp) / "deep", epochs=deep_epochs, batch_size=128,
                            lr=1e-3, seed=0, progress=ctx.progress,
                            set={"hidden": [1000, 500, 250], "latent": 30, "activation": "relu", "loss": "bce",
                                 "train.schedule": "cosine", "train.threads": 1, **limit})
        deep_ev = json.loads((deep.path / "eval.json").read_text())
        # Hinton & Salakhutdinov's Figure 2 layout: test images, deep AE, linear AE, PCA-30
        import torch

        x = ds.eval_inputs("test")[0][:12]
        with torch.no_grad():
            pca_rec = torch.from_numpy(pca.inverse_transform(pca.transform(xte[:12]))).float().view_as(x)
            fig = ctx.figure("ae-vs-pca-mnist.png", torch.cat([x, deep.model.reconstruct(x), lin.model.reconstruct(x), pca_rec]), nrow=12)
    lin_sse, deep_sse = lin_ev["sse"], deep_ev["sse"]
    rows = [
        {"model": "PCA-30 (scikit-learn, exact)", "test SSE per image": round(pca_err, 3), "paper": PAPER_PCA, "train s": "-"},
        {"model": f"linear-ae, code 30, {lin_epochs} epochs", "test SSE per image": round(lin_sse, 3),
         "paper": "= PCA", "train s": round(lin_ev["train_seconds"], 1)},
        {"model": f"ae 784-1000-500-250-30, {deep_epochs} epochs", "test SSE per image": round(deep_sse, 3),
         "paper": PAPER_AE, "train s": round(deep_ev["train_seconds"], 1)},
    ]
    return {
        "pca_sse": pca_err, "linear_sse": lin_sse, "linear_over_pca": lin_sse / pca_err,
        "principal_angles_deg": {"max": float(angles.max()), "median": float(np.median(angles)),
                                 "n_under_10deg": int((angles < 10).sum())},
        "deep_sse": deep_sse, "pca_over_deep": pca_err / deep_sse,
        "linear_train_seconds": lin_ev["train_seconds"], "deep_train_seconds": deep_ev["train_seconds"],
        "table": rows, "figure": fig,
        "protocol": (f"MNIST {'first 6000 train images, ' if ctx.quick else '60000 train / '}10000 test, pixels in [0, 1]; "
                     "test SSE = squared error summed over the 784 pixels, mean over test images. PCA-30 fitted on the "
                     f"training images. linear-ae: linear 784-30-784, squared error, Adam 1e-3 cosine, batch 128, "
                     f"{lin_epochs} epochs; principal angles between its decoder's column space and the PCA subspace. "
                     f"Deep ae: 784-1000-500-250-30-250-500-1000-784, ReLU, sigmoid output, cross-entropy loss, random "
                     f"initialisation (no RBM pretraining), Adam 1e-3 cosine, batch 128, {deep_epochs} epochs, seed 0, "
                     "one thread"),
    }
