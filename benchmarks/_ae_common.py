"""Helpers shared by the autoencoder benchmarks: MNIST as arrays, PCA, a logistic-regression
probe and supervised fine-tuning of an encoder. References are computed in the same run."""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def arrays(ds, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) float64 inputs in [0, 1] and int labels of a split."""
    x, y = ds.eval_inputs(split)
    return x.reshape(x.shape[0], -1).cpu().double().numpy(), y.cpu().numpy()


def pca_fit(x_train: np.ndarray, k: int):
    """scikit-learn PCA with the exact eigendecomposition of the covariance (n >> d)."""
    from sklearn.decomposition import PCA

    return PCA(k, svd_solver="covariance_eigh").fit(x_train)


def pca_sse(pca, x: np.ndarray) -> float:
    """Mean over images of the squared error summed over pixels."""
    r = pca.inverse_transform(pca.transform(x))
    return float(((r - x) ** 2).sum(1).mean())


def logreg_error(f_train, y_train, f_test, y_test, C: float = 1.0, max_iter: int = 300, standardise: bool = True) -> dict:
    """Test error (%) of a multinomial logistic regression (lbfgs) on standardised features, or on
    the features as they are (``standardise=False``: raw pixels, where dividing the nearly
    constant border pixels by their tiny spread only adds noise)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    t = time.perf_counter()
    clf = make_pipeline(*([StandardScaler()] if standardise else []), LogisticRegression(C=C, max_iter=max_iter))
    clf.fit(f_train, y_train)
    return {"error_pct": round(100.0 * (1.0 - clf.score(f_test, y_test)), 2), "seconds": round(time.perf_counter() - t, 1),
            "iterations": int(clf[-1].n_iter_.max())}


@torch.no_grad()
def encode_all(model, x: torch.Tensor, batch: int = 2000) -> np.ndarray:
    model.eval()
    return torch.cat([model.encode(x[i:i + batch]) for i in range(0, len(x), batch)]).double().numpy()


def finetune(encoder: nn.Module, code_size: int, ds, epochs: int, lr: float = 1e-3, batch: int = 128,
             seed: int = 0) -> dict:
    """Supervised fine-tuning: ``encoder`` (images -> codes) + a new linear head, cross-entropy,
    Adam with a cosine schedule; every parameter trains. Returns the test error (%) and time."""
    torch.manual_seed(seed)
    net = nn.Sequential(encoder, nn.Linear(code_size, 10))
    x, y = ds.eval_inputs("train")
    xt, yt = ds.eval_inputs("test")
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    steps = epochs * ((len(x) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(seed)
    t = time.perf_counter()
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch):
            idx = perm[i:i + batch]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    with torch.no_grad():
        pred = torch.cat([net(xt[i:i + 2000]).argmax(1) for i in range(0, len(xt), 2000)])
    return {"error_pct": round(100.0 * (pred != yt).float().mean().item(), 2), "seconds": round(time.perf_counter() - t, 1),
            "epochs": epochs}
