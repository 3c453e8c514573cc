"""Baselines that anchor every later sample-quality figure: FID and KID between the train and
test sets of MNIST (mnist-cnn features) and Fashion-MNIST (fashion-cnn), 10k vs 10k, and the
Inception Score of the MNIST test set under mnist-cnn."""
from __future__ import annotations

NAME = "metrics-baselines"
DESCRIPTION = "FID/KID between train and test (10k vs 10k) of MNIST (mnist-cnn) and Fashion-MNIST (fashion-cnn); IS of MNIST test"


def run(ctx) -> dict:
    from genlab.metrics.api import compute_metrics

    root = ctx.need_mnist()
    ctx.need_mnist("FashionMNIST")
    n = 2000 if ctx.quick else 10000
    rows, res = [], {}
    for data, ext in (("mnist", "mnist-cnn"), ("fashion-mnist", "fashion-cnn")):
        ctx.log(f"{data}: train vs test with {ext} ...")
        r = compute_metrics(f"{data}:test", f"{data}:train", metrics=("fid", "kid", "is"), extractor=ext, n=n,
                            seed=0, data_root=root, use_cache=False)
        t = compute_metrics(f"{data}:test", f"{data}:test", metrics=("is",), extractor=ext, n=n, seed=0,
                            data_root=root, use_cache=False)
        res[data] = {"fid": r["fid"], "kid_mean": r["kid_mean"], "kid_std": r["kid_std"],
                     "is_train": r["is_mean"], "is_test": t["is_mean"], "is_test_std": t["is_std"]}
        rows.append({"data set": data, "extractor": ext, "FID train/test": round(r["fid"], 4),
                     "KID x1e3": f"{r['kid_mean'] * 1e3:.3f} +- {r['kid_std'] * 1e3:.3f}",
                     "IS (test)": f"{t['is_mean']:.3f} +- {t['is_std']:.3f}"})
    return {**res, "n": n, "table": rows,
            "protocol": (f"{n} test images vs a seeded random {n} of the training images (numpy seed 1); features "
                         "from genlab's shipped classifiers (penultimate 128-d layer; logits for IS); FID with the "
                         "N-1 covariance; KID: 100 subsets of 1000, cubic polynomial kernel; IS: 10 splits")}
