"""Statistical core of the evaluation metrics, as pure functions on feature arrays.

Every function takes torch tensors or numpy arrays of shape (N, D) (the features of N samples),
computes in float64 on the CPU and returns a Python float or a small dict of floats. Bad input
(fewer than 2 samples, mismatched dimensions, NaN/inf, k or splits too large for N, ...) raises
:class:`genlab.errors.GenlabError` with a one-line message naming the problem; no function
returns NaN. Randomness comes only from the ``seed`` argument (a local numpy Generator): nothing
global is seeded or changed.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy import special, stats

from ..errors import GenlabError

# Rows per block in the pairwise-distance loops of PRDC (bounds memory to CHUNK * N float64s).
CHUNK = 1024


# --------------------------------------------------------------------------- input checks

def _array(x, name: str) -> np.ndarray:
    """``x`` (tensor, array or nested list) as a float64 numpy array, without checks on shape."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise GenlabError(f"{name} is not a numeric array ({e})") from None


def _finite(a: np.ndarray, name: str) -> None:
    bad = int(a.size - np.isfinite(a).sum())
    if bad:
        raise GenlabError(f"{name} contains NaN or inf ({bad} of {a.size} values)")


def _features(x, name: str, min_n: int = 2) -> np.ndarray:
    """A finite float64 (N, D) array with N >= ``min_n`` and D >= 1."""
    a = _array(x, name)
    if a.ndim != 2:
        raise GenlabError(f"{name} must be a 2-D array of features (N, D), got shape {tuple(a.shape)}")
    if a.shape[0] < min_n:
        raise GenlabError(f"{name} has {a.shape[0]} sample(s); need at least {min_n}")
    if a.shape[1] < 1:
        raise GenlabError(f"{name} has 0 feature dimensions")
    _finite(a, name)
    return a


def _pair(a, b, names: tuple[str, str], min_n: int = 2) -> tuple[np.ndarray, np.ndarray]:
    a, b = _features(a, names[0], min_n), _features(b, names[1], min_n)
    if a.shape[1] != b.shape[1]:
        raise GenlabError(f"feature dimensions differ: {names[0]} has D={a.shape[1]}, {names[1]} has D={b.shape[1]}")
    return a, b


def _positive_int(v, name: str, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise GenlabError(f"{name} must be an integer >= {minimum}, got {v!r}")
    return int(v)


def _positive_float(v, name: str) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        f = float("nan")
    if not (math.isfinite(f) and f > 0):
        raise GenlabError(f"{name} must be a finite number > 0, got {v!r}")
    return f


# --------------------------------------------------------------------------- FID

def _covariance(name: str, s: np.ndarray, d: int) -> np.ndarray:
    if s.shape != (d, d):
        raise GenlabError(f"{name} must have shape ({d}, {d}) to match the mean, got {tuple(s.shape)}")
    _finite(s, name)
    scale = max(float(np.abs(s).max()), 1e-300)
    if float(np.abs(s - s.T).max()) > 1e-6 * scale:
        raise GenlabError(f"{name} is not symmetric")
    return 0.5 * (s + s.T)


def _psd_sqrt(s: np.ndarray, name: str) -> np.ndarray:
    """Symmetric square root of a PSD matrix by eigendecomposition (tiny negative eigenvalues,
    from rounding, are clipped to 0; clearly negative ones are an error)."""
    w, v = np.linalg.eigh(s)
    if w.size and w.min() < -1e-6 * max(float(np.abs(w).max()), 1e-300):
        raise GenlabError(f"{name} is not positive semi-definite (eigenvalue {w.min():.3g})")
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance_from_stats(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2):

        d^2 = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2})

    (Dowson & Landau 1982; used as FID by Heusel et al. 2017, "GANs trained by a two time-scale
    update rule converge to a local Nash equilibrium"). Tr((S1 S2)^{1/2}) is the sum of the square
    roots of the eigenvalues of S1 S2, which equal those of the symmetric PSD matrix
    S1^{1/2} S2 S1^{1/2}; they are computed with ``eigvalsh`` in float64, tiny negative ones from
    rounding clipped to 0. This avoids ``scipy.linalg.sqrtm`` on the non-symmetric S1 S2 (complex
    parts, failure on singular covariances). A result below 0 by rounding is returned as 0.0.
    """
    mu1, mu2 = _array(mu1, "mu1"), _array(mu2, "mu2")
    if mu1.ndim != 1 or mu2.ndim != 1:
        raise GenlabError(f"mu1 and mu2 must be 1-D vectors, got shapes {tuple(mu1.shape)} and {tuple(mu2.shape)}")
    if mu1.shape != mu2.shape:
        raise GenlabError(f"feature dimensions differ: mu1 has D={mu1.shape[0]}, mu2 has D={mu2.shape[0]}")
    _finite(mu1, "mu1")
    _finite(mu2, "mu2")
    d = mu1.shape[0]
    s1 = _covariance("sigma1", _array(sigma1, "sigma1"), d)
    s2 = _covariance("sigma2", _array(sigma2, "sigma2"), d)
    r1 = _psd_sqrt(s1, "sigma1")
    _psd_sqrt(s2, "sigma2")  # only to check that sigma2 is PSD
    m = r1 @ s2 @ r1
    tr_sqrt = float(np.sqrt(np.clip(np.linalg.eigvalsh(0.5 * (m + m.T)), 0.0, None)).sum())
    diff = mu1 - mu2
    value = float(diff @ diff) + float(np.trace(s1)) + float(np.trace(s2)) - 2.0 * tr_sqrt
    return max(value, 0.0)


def feature_stats(feat, name: str = "features") -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of (N, D) features, with the unbiased 1/(N-1)
    normalisation (``np.cov``, as in the reference TTUR/pytorch-fid implementations)."""
    a = _features(feat, name)
    return a.mean(0), np.atleast_2d(np.cov(a, rowvar=False))


def frechet_distance(feat_a, feat_b) -> float:
    """Fréchet (Inception) distance between two sets of features (N_a, D) and (N_b, D): the
    Gaussian fits of :func:`feature_stats` (covariance normalised by N-1) compared by
    :func:`frechet_distance_from_stats`. Heusel et al. 2017. Constant features are fine (zero
    covariance): two identical constant sets give 0.0."""
    a, b = _pair(feat_a, feat_b, ("feat_a", "feat_b"))
    return frechet_distance_from_stats(*feature_stats(a), *feature_stats(b))


# --------------------------------------------------------------------------- KID

def _polynomial_mmd2(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef: float) -> float:
    """Unbiased MMD^2 with k(u, v) = (gamma u.v + coef)^degree, same size m for x and y."""
    m = x.shape[0]
    kxx = (gamma * (x @ x.T) + coef) ** degree
    kyy = (gamma * (y @ y.T) + coef) ** degree
    kxy = (gamma * (x @ y.T) + coef) ** degree
    off = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(off - 2.0 * kxy.mean())


def kernel_inception_distance(feat_a, feat_b, subsets: int = 100, subset_size: int = 1000, degree: int = 3,
                              gamma: float | None = None, coef: float = 1.0, seed: int = 0) -> dict:
    """Kernel Inception Distance (Bińkowski et al. 2018, "Demystifying MMD GANs"): the unbiased
    estimate of MMD^2 with the polynomial kernel k(x, y) = (gamma x.y + coef)^degree,
    gamma = 1/D by default,

        MMD^2_u = sum_{i!=j} k(x_i,x_j)/(m(m-1)) + sum_{i!=j} k(y_i,y_j)/(m(m-1)) - 2 sum_{i,j} k(x_i,y_j)/m^2,

    computed on ``subsets`` pairs of random subsets of ``subset_size`` rows drawn without
    replacement from each set (numpy Generator seeded by ``seed``).

    Rule for small sets: when min(N_a, N_b) < subset_size, the subset size used is
    min(N_a, N_b) (no error); it is returned as ``subset_size``. With subsets=1 and
    subset_size >= N_a = N_b the result is the MMD^2_u of the full sets (no randomness).

    Returns {"kid_mean", "kid_std", "subset_size"}: mean and standard deviation (ddof=0, as in
    torch-fidelity) over the subsets. The estimate is unbiased, so it can be slightly negative.
    """
    a, b = _pair(feat_a, feat_b, ("feat_a", "feat_b"))
    subsets = _positive_int(subsets, "subsets")
    m = min(_positive_int(subset_size, "subset_size", 2), a.shape[0], b.shape[0])
    degree = _positive_int(degree, "degree")
    gamma = 1.0 / a.shape[1] if gamma is None else _positive_float(gamma, "gamma")
    coef = float(coef)
    if not math.isfinite(coef) or coef < 0:
        raise GenlabError(f"coef must be a finite number >= 0, got {coef!r}")
    rng = np.random.default_rng(seed)
    values = np.empty(subsets)
    for i in range(subsets):
        x = a[rng.choice(a.shape[0], m, replace=False)]
        y = b[rng.choice(b.shape[0], m, replace=False)]
        values[i] = _polynomial_mmd2(x, y, degree, gamma, coef)
    return {"kid_mean": float(values.mean()), "kid_std": float(values.std()), "subset_size": m}


# --------------------------------------------------------------------------- IS

def inception_score(logits_or_probs, splits: int = 10, from_logits: bool = True) -> dict:
    """Inception Score (Salimans et al. 2016, "Improved techniques for training GANs"):

        IS = exp( E_x KL( p(y|x) || p(y) ) ),   p(y) = E_x p(y|x),

    computed on each of ``splits`` contiguous parts of the N rows (rows
    [i N / splits, (i+1) N / splits), as in the original code), with p(y) the mean over the part.
    Input: (N, C) logits (``from_logits=True``, softmax in float64) or probabilities (rows in
    [0, 1] summing to 1 within 1e-3, then renormalised); 0 log 0 = 0.
    Returns {"is_mean", "is_std"} (std with ddof=0 over the splits, as the original code).
    Bounds: 1 <= IS <= C.
    """
    splits = _positive_int(splits, "splits")
    p = _features(logits_or_probs, "logits" if from_logits else "probs", min_n=1)
    n = p.shape[0]
    if n < splits:
        raise GenlabError(f"inception score needs at least as many samples as splits: N={n} < splits={splits}")
    if from_logits:
        p = np.exp(special.log_softmax(p, axis=1))
    else:
        if p.min() < 0 or p.max() > 1:
            raise GenlabError("probs must lie in [0, 1] (pass from_logits=True for logits)")
        sums = p.sum(1)
        if np.abs(sums - 1.0).max() > 1e-3:
            raise GenlabError(f"probs rows must sum to 1 (a row sums to {sums[np.argmax(np.abs(sums - 1))]:.4g}); "
                              "pass from_logits=True for logits")
        p = p / sums[:, None]
    scores = []
    for i in range(splits):
        part = p[i * n // splits:(i + 1) * n // splits]
        py = part.mean(0, keepdims=True)
        kl = special.rel_entr(part, py).sum(1).mean()
        scores.append(math.exp(kl))
    return {"is_mean": float(np.mean(scores)), "is_std": float(np.std(scores))}


# --------------------------------------------------------------------------- PRDC

def _kth_nn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row to its k-th nearest neighbour in x, the row itself excluded
    (the (k+1)-th smallest distance, the row's own 0 being the first)."""
    out = [torch.cdist(x[i:i + CHUNK], x).kthvalue(k + 1, dim=1).values for i in range(0, x.shape[0], CHUNK)]
    return torch.cat(out)


def precision_recall_density_coverage(real, fake, k: int = 5) -> dict:
    """Precision and recall of Kynkäänniemi et al. 2019 ("Improved precision and recall metric
    for assessing generative models") and density and coverage of Naeem et al. 2020 ("Reliable
    fidelity and diversity metrics for generative models"), on k-NN balls in feature space.

    With r(x) the Euclidean distance from x to its k-th nearest neighbour in its own set (itself
    excluded) and B(x) the closed ball of radius r(x) around x, for real X (N) and fake Y (M):

        precision = 1/M sum_j 1[ Y_j in some B(X_i) ]
        recall    = 1/N sum_i 1[ X_i in some B(Y_j) ]
        density   = 1/(kM) sum_j sum_i 1[ Y_j in B(X_i) ]
        coverage  = 1/N sum_i 1[ the nearest Y_j to X_i lies in B(X_i) ]

    Balls are closed (<=), as in the papers' definitions (the clovaai/prdc code uses <, which
    differs only on ties). Needs 1 <= k < N and k < M. Distances are computed in float64 on
    features centred on the real mean (exact 0 for identical rows), in blocks of rows.
    Returns {"precision", "recall", "density", "coverage"}.
    """
    r, f = _pair(real, fake, ("real", "fake"))
    k = _positive_int(k, "k")
    for name, a in (("real", r), ("fake", f)):
        if k >= a.shape[0]:
            raise GenlabError(f"k={k} is too large for {name} with N={a.shape[0]} samples (need k < N)")
    centre = r.mean(0)
    x, y = torch.from_numpy(r - centre), torch.from_numpy(f - centre)
    rx, ry = _kth_nn_radii(x, k), _kth_nn_radii(y, k)
    # Each ball test uses distances with the ball's centre as the row operand, blocked as in
    # _kth_nn_radii, so that when fake equals real the distances are bitwise those that gave the
    # radii (the matmul-based cdist is not bitwise symmetric) and ties at the radius are exact.
    in_real_balls = torch.zeros(y.shape[0], dtype=torch.float64)  # per fake point: number of real balls
    covered = torch.zeros(x.shape[0], dtype=torch.bool)
    for i in range(0, x.shape[0], CHUNK):
        d = torch.cdist(x[i:i + CHUNK], y)
        inside = d <= rx[i:i + CHUNK, None]
        in_real_balls += inside.sum(0).to(torch.float64)
        covered[i:i + CHUNK] = inside.any(1)  # the nearest fake point is inside iff any is
    recalled = torch.zeros(x.shape[0], dtype=torch.bool)
    for j in range(0, y.shape[0], CHUNK):
        recalled |= (torch.cdist(y[j:j + CHUNK], x) <= ry[j:j + CHUNK, None]).any(0)
    as_float = lambda t: float(t.to(torch.float64).mean())  # noqa: E731
    return {"precision": as_float(in_real_balls > 0), "recall": as_float(recalled),
            "density": float(in_real_balls.mean()) / k, "coverage": as_float(covered)}


# --------------------------------------------------------------------------- two-sample tests

def mmd_test(x, y, n_permutations: int = 200, seed: int = 0, bandwidth: float | None = None) -> dict:
    """Kernel two-sample test (Gretton et al. 2012, "A kernel two-sample test") with the
    Gaussian kernel k(u, v) = exp(-||u - v||^2 / (2 bandwidth^2)) and the unbiased statistic

        MMD^2_u = sum_{i!=j} k(x_i,x_j)/(n(n-1)) + sum_{i!=j} k(y_i,y_j)/(m(m-1)) - 2 sum_{i,j} k(x_i,y_j)/(nm).

    ``bandwidth=None``: median heuristic, the median Euclidean distance between distinct points
    of the pooled sample (an error if it is 0, e.g. for mostly identical rows).
    p-value by permutation of the pooled sample (``n_permutations`` random relabellings, numpy
    Generator seeded by ``seed``), with the +1 correction that keeps the test valid:
    p = (1 + #{perm: MMD^2_u >= observed}) / (1 + n_permutations).
    Returns {"mmd2", "p_value", "bandwidth"}.
    """
    a, b = _pair(x, y, ("x", "y"))
    n_permutations = _positive_int(n_permutations, "n_permutations")
    n, m = a.shape[0], b.shape[0]
    z = torch.from_numpy(np.concatenate([a, b]) - a.mean(0))
    d = torch.cdist(z, z)
    if bandwidth is None:
        iu = np.triu_indices(n + m, k=1)
        bandwidth = float(np.median(d.numpy()[iu]))
        if not bandwidth > 0:
            raise GenlabError("median-heuristic bandwidth is 0 (most pooled rows are identical); pass bandwidth")
    else:
        bandwidth = _positive_float(bandwidth, "bandwidth")
    kern = torch.exp(-d.pow(2) / (2.0 * bandwidth ** 2))
    kern.fill_diagonal_(0.0)  # the unbiased statistic leaves out i == j

    # Statistic for many labellings at once: rows of `ind` are 1 for the points labelled x.
    rng = np.random.default_rng(seed)
    labels = np.zeros((n_permutations + 1, n + m))
    labels[0, :n] = 1.0
    for p in range(1, n_permutations + 1):
        labels[p, rng.permutation(n + m)[:n]] = 1.0
    ind = torch.from_numpy(labels)
    k_ind = ind @ kern  # (P, n+m)
    total = kern.sum()
    sxx = (k_ind * ind).sum(1)
    sxy = (k_ind * (1.0 - ind)).sum(1)
    syy = total - sxx - 2.0 * sxy
    mmd2 = sxx / (n * (n - 1)) + syy / (m * (m - 1)) - 2.0 * sxy / (n * m)
    observed = mmd2[0]
    p_value = (1.0 + float((mmd2[1:] >= observed).sum())) / (1.0 + n_permutations)
    return {"mmd2": float(observed), "p_value": p_value, "bandwidth": bandwidth}


def classifier_two_sample_test(x, y, seed: int = 0, test_fraction: float = 0.5) -> dict:
    """Classifier two-sample test (Lopez-Paz & Oquab 2017, "Revisiting classifier two-sample
    tests"): a standardised logistic regression (scikit-learn) is fitted on one part of the
    pooled, labelled sample to tell x from y and scored on the held-out ``test_fraction``
    (stratified split seeded by ``seed``). Under H0 the classifier's predictions do not depend
    on the held-out labels, so the number correct is (at most as spread as) Binomial(n_test, 0.5);
    the p-value is the one-sided binomial test of it against 0.5 (``scipy.stats.binomtest``,
    alternative="greater").

    Unequal sizes: the larger sample is subsampled (seeded) to the size of the smaller one, so
    that chance accuracy is exactly 0.5 and the binomial test is valid.
    Returns {"accuracy", "p_value", "n_test"}.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    a, b = _pair(x, y, ("x", "y"))
    tf = float(test_fraction) if isinstance(test_fraction, (int, float)) else float("nan")
    if not 0.0 < tf < 1.0:
        raise GenlabError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    rng = np.random.default_rng(seed)
    n = min(a.shape[0], b.shape[0])
    a = a[np.sort(rng.choice(a.shape[0], n, replace=False))] if a.shape[0] > n else a
    b = b[np.sort(rng.choice(b.shape[0], n, replace=False))] if b.shape[0] > n else b
    data, labels = np.concatenate([a, b]), np.repeat([0, 1], n)
    n_test = int(math.ceil(2 * n * tf))
    if n_test < 2 or 2 * n - n_test < 2:
        raise GenlabError(f"classifier two-sample test: {n} samples per set are too few for "
                          f"test_fraction={tf} (need at least 2 per class in the training and test parts)")
    x_tr, x_te, y_tr, y_te = train_test_split(data, labels, test_size=n_test, stratify=labels,
                                              random_state=int(rng.integers(2 ** 31)))
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    clf.fit(x_tr, y_tr)
    correct = int((clf.predict(x_te) == y_te).sum())
    p_value = float(stats.binomtest(correct, len(y_te), 0.5, alternative="greater").pvalue)
    return {"accuracy": correct / len(y_te), "p_value": p_value, "n_test": len(y_te)}
