"""Wall time of FID on 10k vs 10k MNIST images with mnist-cnn, features included."""
from __future__ import annotations

import time

NAME = "fid-speed"
DESCRIPTION = "seconds for FID of 10k vs 10k MNIST images with mnist-cnn, features included (target < 10 s)"


def run(ctx) -> dict:
    import numpy as np
    import scipy.linalg

    from genlab.metrics import core
    from genlab.metrics.api import featurise
    from genlab.metrics.extractors import get_extractor
    from genlab.metrics.sources import load_source

    root = ctx.need_mnist()
    n = 2000 if ctx.quick else 10000
    xr, _ = load_source("mnist:test", n, 0, root)
    xf, _ = load_source("mnist:train", n, 1, root)
    ext = get_extractor("mnist-cnn")
    ext.features(xr[:10])  # warm-up
    reps = 1 if ctx.quick else 3
    total, feat, stat = [], [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        fr, _ = featurise(xr, ext, logits=False, use_cache=False)
        ff, _ = featurise(xf, ext, logits=False, use_cache=False)
        t1 = time.perf_counter()
        fid = core.frechet_distance(fr, ff)
        t2 = time.perf_counter()
        total.append(t2 - t0)
        feat.append(t1 - t0)
        stat.append(t2 - t1)
    # reference for the statistics step: the common scipy.linalg.sqrtm formulation, same features
    t0 = time.perf_counter()
    mu1, s1 = fr.mean(0), np.cov(fr, rowvar=False)
    mu2, s2 = ff.mean(0), np.cov(ff, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    ref_fid = float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))
    t_ref = time.perf_counter() - t0
    med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    rows = [{"step": "features, 2 x %d images" % n, "seconds": round(med(feat), 3)},
            {"step": "FID from features (eigvalsh)", "seconds": round(med(stat), 4)},
            {"step": "total", "seconds": round(med(total), 3)},
            {"step": "reference: FID from features by scipy sqrtm", "seconds": round(t_ref, 4)}]
    return {"seconds": med(total), "feature_seconds": med(feat), "stat_seconds": med(stat),
            "scipy_sqrtm_seconds": t_ref, "fid": fid, "fid_scipy": ref_fid,
            "relative_difference": abs(fid - ref_fid) / max(abs(ref_fid), 1e-12), "table": rows,
            "protocol": f"MNIST test (first {n} by seeded subset) vs {n} training images, mnist-cnn 128-d features on "
                        f"the CPU with torch's threads, no cache; median of {reps}; the scipy sqrtm reference runs once "
                        "on the same features"}
