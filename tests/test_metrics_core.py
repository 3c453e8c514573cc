"""The statistical core of the metrics (genlab.metrics), each checked against something
independent: a direct scipy/sklearn computation, a closed form, or a hand-worked case."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.spatial.distance import pdist
from scipy.stats import entropy
from sklearn.metrics.pairwise import polynomial_kernel, rbf_kernel

from genlab.errors import GenlabError
from genlab.metrics import (
    classifier_two_sample_test,
    frechet_distance,
    frechet_distance_from_stats,
    inception_score,
    kernel_inception_distance,
    mmd_test,
    precision_recall_density_coverage,
)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def unbiased_mmd2(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    """Unbiased MMD^2 from the three kernel matrices, off-diagonal means by masks."""
    off = lambda k: k[~np.eye(len(k), dtype=bool)].mean()  # noqa: E731
    return float(off(kxx) + off(kyy) - 2 * kxy.mean())


# ----------------------------------------------------------------------------- FID

def test_fid_matches_scipy_sqrtm():
    r = rng(1)
    a = r.normal(size=(300, 16))
    b = r.normal(0.3, 1.0, size=(250, 16)) @ r.normal(size=(16, 16)) * 0.5
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ref = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-6)
    # torch input (float32 values) gives the float64 result on the same values
    ta, tb = torch.from_numpy(a).float(), torch.from_numpy(b).float()
    assert frechet_distance(ta, tb) == pytest.approx(frechet_distance(ta.double().numpy(), tb.double().numpy()), rel=1e-12)


def test_fid_closed_form_for_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, -1.0, 2.0]), np.array([1.0, 1.0, 0.5, 0.0])
    a, b = np.array([1.0, 2.0, 0.5, 4.0]), np.array([1.0, 0.5, 2.0, 0.25])
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance_from_stats(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)
    # the distance is invariant under a common rotation: exercises non-diagonal covariances
    q, _ = np.linalg.qr(rng(2).normal(size=(4, 4)))
    got = frechet_distance_from_stats(q @ mu1, q @ np.diag(a) @ q.T, q @ mu2, q @ np.diag(b) @ q.T)
    assert got == pytest.approx(expected, rel=1e-9)


def test_fid_from_large_samples_approaches_closed_form():
    r = rng(3)
    mu2, a, b = np.array([1.0, 0.0, 0.0, 0.5]), np.array([1.0, 2.0, 0.5, 1.0]), np.array([1.0, 0.5, 0.5, 3.0])
    x = r.normal(size=(20000, 4)) * np.sqrt(a)
    y = mu2 + r.normal(size=(20000, 4)) * np.sqrt(b)
    expected = (mu2 ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()  # about 2.29
    assert frechet_distance(x, y) == pytest.approx(expected, abs=0.1)


def test_fid_of_a_set_with_itself_is_zero():
    a = rng(4).normal(size=(200, 16))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    wide = rng(5).normal(size=(10, 32))  # N < D: singular covariance
    assert frechet_distance(wide, wide) < 1e-6 * np.trace(np.cov(wide, rowvar=False))


def test_fid_constant_features_are_finite():
    c = np.ones((6, 3))
    assert frechet_distance(c, c) == 0.0
    assert frechet_distance(c, c + np.array([1.0, 2.0, 0.0])) == pytest.approx(5.0, rel=1e-12)
    x = rng(6).normal(size=(50, 3))
    assert frechet_distance(c, x) == pytest.approx(
        ((x.mean(0) - 1) ** 2).sum() + np.trace(np.cov(x, rowvar=False)), rel=1e-9)


# ----------------------------------------------------------------------------- KID

def test_kid_single_full_subset_equals_direct_mmd():
    r = rng(7)
    x, y = r.normal(size=(120, 10)), r.normal(0.2, 1.1, size=(120, 10))
    k = lambda u, v: polynomial_kernel(u, v, degree=3, gamma=1 / 10, coef0=1)  # noqa: E731
    ref = unbiased_mmd2(k(x, x), k(y, y), k(x, y))
    out = kernel_inception_distance(x, y, subsets=1, subset_size=120)
    assert out["kid_mean"] == pytest.approx(ref, rel=1e-10)
    assert out["kid_std"] == 0.0 and out["subset_size"] == 120


def test_kid_same_distribution_near_zero_shift_positive():
    r = rng(8)
    x, y = r.normal(size=(2000, 8)), r.normal(size=(2000, 8))
    same = kernel_inception_distance(x, y, subsets=50, subset_size=100, seed=1)
    assert abs(same["kid_mean"]) < 3 * same["kid_std"] / math.sqrt(50)
    shifted = kernel_inception_distance(x, y + 0.5, subsets=50, subset_size=100, seed=1)
    assert shifted["kid_mean"] > 3 * shifted["kid_std"] / math.sqrt(50)
    assert shifted["kid_mean"] > 10 * abs(same["kid_mean"])


def test_kid_subset_size_falls_back_to_smaller_set():
    r = rng(9)
    out = kernel_inception_distance(r.normal(size=(50, 4)), r.normal(size=(80, 4)), subsets=3)
    assert out["subset_size"] == 50 and math.isfinite(out["kid_mean"])


# ----------------------------------------------------------------------------- IS

def test_is_uniform_one_hot_equals_number_of_classes():
    c, splits = 10, 5
    labels = np.arange(c * splits * 3) % c  # every split holds each class equally often
    probs = np.eye(c)[labels]
    out = inception_score(probs, splits=splits, from_logits=False)
    assert out["is_mean"] == pytest.approx(c, rel=1e-12) and out["is_std"] == pytest.approx(0.0, abs=1e-12)
    out = inception_score(torch.from_numpy(50.0 * probs), splits=splits)  # logits of near one-hot softmax
    assert out["is_mean"] == pytest.approx(c, rel=1e-9)


def test_is_soft_predictions_analytic():
    # Each row puts 0.7 on its class, the rest spread evenly; classes uniform in every split, so
    # p(y) is uniform and IS = exp(log C - H(row)) = C exp(-H(row)).
    c = 4
    row = np.full(c, 0.1)
    row[0] = 0.7
    probs = np.stack([np.roll(row, i % c) for i in range(c * 6)])
    out = inception_score(probs, splits=2, from_logits=False)
    assert out["is_mean"] == pytest.approx(c * math.exp(-entropy(row)), rel=1e-12)


def test_is_identical_predictions_is_one_and_bounds():
    probs = np.tile(rng(10).dirichlet(np.ones(7)), (40, 1))
    assert inception_score(probs, splits=4, from_logits=False)["is_mean"] == pytest.approx(1.0, abs=1e-12)
    logits = rng(11).normal(size=(100, 7)) * 3
    out = inception_score(logits, splits=10)
    assert 1.0 <= out["is_mean"] <= 7.0


# ----------------------------------------------------------------------------- PRDC

def test_prdc_hand_worked_1d():
    # real 0,1,2,3 with k=1: radii 1; fake 0.5 and 10: radii 9.5.
    out = precision_recall_density_coverage(np.array([[0.0], [1], [2], [3]]), np.array([[0.5], [10.0]]), k=1)
    # precision: 0.5 in a real ball, 10 not -> 1/2; recall: all reals within 9.5 of 0.5 -> 1;
    # density: 0.5 lies in the balls of 0 and 1, 10 in none -> (2 + 0) / (1 * 2) = 1;
    # coverage: nearest fake (0.5) within r=1 of reals 0 and 1 only -> 2/4.
    assert out == pytest.approx({"precision": 0.5, "recall": 1.0, "density": 1.0, "coverage": 0.5})


def test_prdc_fake_equals_real():
    x = rng(12).normal(size=(300, 5))
    out = precision_recall_density_coverage(x, torch.from_numpy(x), k=5)
    # every point is in its own ball; each ball holds itself and exactly k others, so density = (k+1)/k
    assert out == pytest.approx({"precision": 1.0, "recall": 1.0, "density": 6 / 5, "coverage": 1.0})


def test_prdc_dropped_modes_lower_recall_not_precision():
    r = rng(13)
    angles = 2 * np.pi * np.arange(8) / 8
    centres = 5 * np.stack([np.cos(angles), np.sin(angles)], 1)
    real = np.concatenate([c + 0.3 * r.normal(size=(100, 2)) for c in centres])
    fake = np.concatenate([c + 0.3 * r.normal(size=(100, 2)) for c in centres[::2]])
    out = precision_recall_density_coverage(real, fake, k=5)
    assert abs(out["recall"] - 0.5) < 0.15
    assert abs(out["coverage"] - 0.5) < 0.15
    assert out["precision"] > 0.8


# ----------------------------------------------------------------------------- two-sample tests

ALPHA, REPEATS = 0.05, 40
MAX_FPR = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / REPEATS)


def test_mmd_statistic_matches_direct_computation():
    r = rng(14)
    x, y = r.normal(size=(60, 3)), r.normal(0.3, 1.0, size=(45, 3))
    sigma = np.median(pdist(np.concatenate([x, y])))
    k = lambda u, v: rbf_kernel(u, v, gamma=1 / (2 * sigma ** 2))  # noqa: E731
    out = mmd_test(x, y, n_permutations=50)
    assert out["bandwidth"] == pytest.approx(sigma, rel=1e-9)
    assert out["mmd2"] == pytest.approx(unbiased_mmd2(k(x, x), k(y, y), k(x, y)), rel=1e-9)
    assert 1 / 51 <= out["p_value"] <= 1.0
    fixed = mmd_test(x, y, n_permutations=10, bandwidth=2.0)
    k2 = lambda u, v: rbf_kernel(u, v, gamma=1 / 8)  # noqa: E731
    assert fixed["mmd2"] == pytest.approx(unbiased_mmd2(k2(x, x), k2(y, y), k2(x, y)), rel=1e-9)


@pytest.mark.parametrize("test", [
    lambda x, y, s: mmd_test(x, y, n_permutations=100, seed=s),
    lambda x, y, s: classifier_two_sample_test(x, y, seed=s),
], ids=["mmd", "c2st"])
def test_false_positive_rate_and_power(test):
    rejections = 0
    for i in range(REPEATS):
        r = rng(100 + i)
        rejections += test(r.normal(size=(100, 2)), r.normal(size=(100, 2)), i)["p_value"] <= ALPHA
    assert rejections / REPEATS <= MAX_FPR
    r = rng(200)
    x, y = r.normal(size=(200, 2)), r.normal(size=(200, 2)) + np.array([1.0, 0.0])
    assert test(x, y, 0)["p_value"] < ALPHA


def test_c2st_accuracy_and_unequal_sizes():
    r = rng(15)
    x, y = r.normal(size=(300, 2)), r.normal(size=(150, 2)) + 3.0
    out = classifier_two_sample_test(x, y)
    assert out["n_test"] == 150 and out["accuracy"] > 0.95 and out["p_value"] < 1e-20


# ----------------------------------------------------------------------------- bad input

ONE, TWO = np.zeros((1, 3)), rng(16).normal(size=(10, 3))
NAN = TWO.copy()
NAN[2, 1] = np.nan


@pytest.mark.parametrize("call, words", [
    (lambda: frechet_distance(ONE, TWO), "1 sample"),
    (lambda: frechet_distance(TWO, TWO[:, :2]), "dimensions differ"),
    (lambda: frechet_distance(NAN, TWO), "NaN"),
    (lambda: frechet_distance(TWO[0], TWO), "2-D"),
    (lambda: frechet_distance_from_stats(np.zeros(2), -np.eye(2), np.zeros(2), np.eye(2)), "positive semi-definite"),
    (lambda: frechet_distance_from_stats(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3)), "dimensions differ"),
    (lambda: kernel_inception_distance(TWO, NAN), "NaN"),
    (lambda: kernel_inception_distance(TWO, TWO[:, :1]), "dimensions differ"),
    (lambda: inception_score(TWO, splits=11), "splits"),
    (lambda: inception_score(np.full((4, 3), 0.5), splits=2, from_logits=False), "sum to 1"),
    (lambda: precision_recall_density_coverage(TWO, TWO, k=10), "k=10"),
    (lambda: precision_recall_density_coverage(TWO, TWO[:4], k=4), "too large"),
    (lambda: precision_recall_density_coverage(ONE, TWO), "1 sample"),
    (lambda: mmd_test(TWO, ONE), "1 sample"),
    (lambda: mmd_test(np.ones((5, 2)), np.ones((5, 2))), "bandwidth"),
    (lambda: mmd_test(TWO, TWO, bandwidth=-1), "bandwidth"),
    (lambda: classifier_two_sample_test(TWO, NAN), "NaN"),
    (lambda: classifier_two_sample_test(TWO, TWO, test_fraction=1.0), "test_fraction"),
])
def test_bad_input_raises_one_line_genlab_error(call, words):
    with pytest.raises(GenlabError) as e:
        call()
    msg = str(e.value)
    assert words in msg and "\n" not in msg
