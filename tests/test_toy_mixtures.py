"""The 2-D toy mixtures (ring8, grid25) and their mode metric (mixture_mode_coverage), checked
against the stated parameters, closed forms and hand-worked cases."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from genlab.data import DataConfig, load_data
from genlab.data.toy import MIXTURES
from genlab.errors import GenlabError
from genlab.metrics.modes import mixture_mode_coverage

# The parameters as the papers state them, written out independently of genlab.data.toy.
EXPECTED = {
    "ring8": ([[math.cos(2 * math.pi * i / 8), math.sin(2 * math.pi * i / 8)] for i in range(8)], 0.01),
    "grid25": ([[a, b] for a, b in itertools.product([-4, -2, 0, 2, 4], repeat=2)], 0.05),
}
# P(|Z| <= 3) for Z ~ N(0, I_2): |Z|^2 is chi-square with 2 dof, i.e. exponential with mean 2.
P_WITHIN_3 = 1 - math.exp(-4.5)


@pytest.fixture(scope="module", params=["ring8", "grid25"])
def toy(request):
    return request.param, load_data(DataConfig(name=request.param))


def nearest(x: np.ndarray, means: np.ndarray) -> np.ndarray:
    return np.argmin(((x[:, None, :] - means[None]) ** 2).sum(-1), 1)


# ----------------------------------------------------------------------------- data sets

def test_mixture_parameters_are_as_stated(toy):
    name, _ = toy
    means, std = EXPECTED[name]
    np.testing.assert_allclose(MIXTURES[name].means, np.array(means), atol=1e-12)
    assert MIXTURES[name].std == std and MIXTURES[name].num_modes == len(means)


def test_toy_data_set_layout(toy):
    name, ds = toy
    k = len(EXPECTED[name][0])
    assert ds.shape == (2,) and not ds.is_image and ds.scale == 1.0
    assert ds.train.x.dtype == torch.float32 and ds.train.y.dtype == torch.int64
    assert len(ds.train) == 100_000 and len(ds.test) == 2_500
    assert ds.num_classes == k and ds.classes == [str(i) for i in range(k)]
    assert ds.value_range == (ds.train.x.min().item(), ds.train.x.max().item())
    x, y = ds.eval_inputs("test")
    assert torch.equal(x, ds.test.x) and torch.equal(y, ds.test.y)  # float data: no scaling


def test_components_have_the_stated_means_stds_and_weights(toy):
    name, ds = toy
    means, std = np.array(EXPECTED[name][0]), EXPECTED[name][1]
    x, y = ds.train.x.numpy().astype(np.float64), ds.train.y.numpy()
    k, n = len(means), len(y)
    counts = np.bincount(y, minlength=k)
    assert len(counts) == k
    # equal weights: each count is Binomial(n, 1/k), within 5 standard deviations
    assert np.all(np.abs(counts - n / k) <= 5 * math.sqrt(n * (1 / k) * (1 - 1 / k)))
    for c in range(k):
        xc = x[y == c]
        nc = len(xc)
        # sample mean: standard error std / sqrt(n_c); sample std: about std / sqrt(2 n_c)
        assert np.all(np.abs(xc.mean(0) - means[c]) <= 5 * std / math.sqrt(nc)), (name, c)
        assert np.all(np.abs(xc.std(0, ddof=1) - std) <= 5 * std / math.sqrt(2 * (nc - 1))), (name, c)
    # the coordinates within a component are uncorrelated (isotropic Gaussian)
    r = np.corrcoef((x - means[y]).T)[0, 1]
    assert abs(r) <= 5 / math.sqrt(n)


def test_labels_are_the_nearest_mean(toy):
    name, ds = toy
    means = np.array(EXPECTED[name][0])
    for s in (ds.train, ds.test):
        np.testing.assert_array_equal(nearest(s.x.numpy().astype(np.float64), means), s.y.numpy())


def test_toy_data_is_deterministic_and_honours_limit(toy):
    name, ds = toy
    again = load_data(DataConfig(name=name))
    assert torch.equal(again.train.x, ds.train.x) and torch.equal(again.train.y, ds.train.y)
    assert torch.equal(again.test.x, ds.test.x) and torch.equal(again.test.y, ds.test.y)
    # the test split is a separate draw, not a copy of the start of the training split
    assert not torch.equal(ds.test.x, ds.train.x[:len(ds.test)])
    small = load_data(DataConfig(name=name, limit=1000))
    assert torch.equal(small.train.x, ds.train.x[:1000]) and torch.equal(small.test.x, ds.test.x)


# ----------------------------------------------------------------------------- metric

def test_closed_form_of_the_high_quality_share():
    # independent check of 1 - exp(-9/2) against scipy's chi-square(2) CDF at 3^2
    assert P_WITHIN_3 == pytest.approx(stats.chi2.cdf(9.0, df=2), rel=1e-12)
    assert P_WITHIN_3 == pytest.approx(0.98889, abs=1e-5)


def test_samples_from_the_true_mixture_score_as_the_closed_forms(toy):
    name, ds = toy
    m = MIXTURES[name]
    k, n = m.num_modes, len(ds.train)
    r = mixture_mode_coverage(ds.train.x, m.means, m.std)
    assert r["modes"] == k and r["num_modes"] == k
    # each point is 3 std from its own mean with probability 1 - exp(-4.5): binomial error
    assert abs(r["high_quality"] - P_WITHIN_3) <= 5 * math.sqrt(P_WITHIN_3 * (1 - P_WITHIN_3) / n)
    # uniform mode histogram: 2 n_hq KL(q || uniform) is the G statistic, ~ chi-square(k - 1)
    n_hq = r["high_quality"] * n
    assert 0.0 <= r["reverse_kl"] <= stats.chi2.ppf(1 - 1e-6, k - 1) / (2 * n_hq)
    assert r["max_kl"] == pytest.approx(math.log(k), rel=1e-15)
    # torch float32 input scores as the same values in numpy float64
    assert mixture_mode_coverage(ds.train.x.numpy().astype(np.float64), m.means, m.std) == r


def offsets(n: int, radius: float, seed: int) -> np.ndarray:
    """n points spread uniformly in angle at distances up to ``radius`` from the origin."""
    g = np.random.default_rng(seed)
    a, d = g.uniform(0, 2 * math.pi, n), radius * g.uniform(0, 1, n)
    return np.stack([d * np.cos(a), d * np.sin(a)], 1)


@pytest.mark.parametrize("name,keep,expected", [("ring8", [0, 1, 2, 3], math.log(2)),  # K/2 modes: log 2
                                                ("ring8", [1, 3, 5, 7], math.log(2)),
                                                ("grid25", [0, 6, 12, 18, 24], math.log(5))])
def test_samples_from_some_modes_give_log_k_over_m(name, keep, expected):
    m = MIXTURES[name]
    per = 300  # the same number of samples at each kept mode, all within 2 std of it
    x = np.repeat(m.means[keep], per, 0) + offsets(per * len(keep), 2 * m.std, seed=len(keep))
    for histogram in ("high_quality", "all"):
        r = mixture_mode_coverage(x, m.means, m.std, histogram=histogram)
        assert r["modes"] == len(keep) and r["high_quality"] == 1.0
        assert r["reverse_kl"] == pytest.approx(expected, rel=1e-12)


def test_samples_far_away_capture_nothing():
    m = MIXTURES["grid25"]
    x = np.full((50, 2), 100.0) + offsets(50, 1.0, seed=3)
    r = mixture_mode_coverage(x, m.means, m.std)
    assert r == {"modes": 0, "num_modes": 25, "high_quality": 0.0, "reverse_kl": math.log(25), "max_kl": math.log(25)}
    # counting every sample: all sit nearest to (4, 4), a histogram on one mode, KL = log K too
    assert mixture_mode_coverage(x, m.means, m.std, histogram="all")["reverse_kl"] == pytest.approx(math.log(25), rel=1e-12)


def test_hand_worked_mixed_case_and_threshold_boundary():
    means, std = np.array([[0.0, 0.0], [4.0, 0.0]]), 0.5  # threshold 3 std = 1.5
    x = np.array([[0.0, 0.0], [0.0, 1.5], [-1.5, 0.0],  # mode 0, the last two exactly 3 std away
                  [4.0, 0.0],                           # mode 1
                  [2.1, 0.0], [2.2, 0.0],               # nearest mode 1 at 1.9 and 1.8: low quality
                  [0.0, 1.5 + 1e-9]])                   # just beyond 3 std of mode 0: low quality
    r = mixture_mode_coverage(x, means, std)
    assert r["modes"] == 2 and r["high_quality"] == pytest.approx(4 / 7, rel=1e-15)
    # high-quality histogram (3, 1): KL = 3/4 log(3/4 * 2) + 1/4 log(1/4 * 2)
    assert r["reverse_kl"] == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), rel=1e-12)
    # every sample: histogram (4, 3)
    r_all = mixture_mode_coverage(x, means, std, histogram="all")
    assert r_all["reverse_kl"] == pytest.approx(4 / 7 * math.log(8 / 7) + 3 / 7 * math.log(6 / 7), rel=1e-12)
    assert r_all["modes"] == 2 and r_all["high_quality"] == r["high_quality"]
    # a wider threshold makes all but the two points near 2 high quality; then all of them
    assert mixture_mode_coverage(x, means, std, threshold=3.0 + 1e-6)["high_quality"] == pytest.approx(5 / 7)
    assert mixture_mode_coverage(x, means, std, threshold=4.0)["high_quality"] == 1.0


def test_one_mode_only_is_total_collapse():
    m = MIXTURES["ring8"]
    x = np.repeat(m.means[5:6], 40, 0) + offsets(40, m.std, seed=4)
    r = mixture_mode_coverage(x, m.means, m.std)
    assert r["modes"] == 1 and r["reverse_kl"] == pytest.approx(math.log(8), rel=1e-12) == r["max_kl"]


@pytest.mark.parametrize("samples,means,std,kw,words", [
    (np.zeros(10), np.zeros((3, 2)), 0.1, {}, "samples must be an (N, 2)"),
    (np.zeros((10, 3)), np.zeros((3, 2)), 0.1, {}, "got shape (10, 3)"),
    (np.zeros((0, 2)), np.zeros((3, 2)), 0.1, {}, "N >= 1"),
    (np.zeros((10, 2)), np.zeros(2), 0.1, {}, "means must be a (K, D)"),
    (np.zeros((10, 2)), np.zeros((0, 2)), 0.1, {}, "K >= 1"),
    (np.full((10, 2), np.nan), np.zeros((3, 2)), 0.1, {}, "samples contain NaN"),
    (np.zeros((10, 2)), np.zeros((3, 2)), 0.0, {}, "std must be a finite number > 0"),
    (np.zeros((10, 2)), np.zeros((3, 2)), -1.0, {}, "std must be"),
    (np.zeros((10, 2)), np.zeros((3, 2)), 0.1, {"threshold": 0}, "threshold must be"),
    (np.zeros((10, 2)), np.zeros((3, 2)), 0.1, {"histogram": "good"}, "histogram must be one of high_quality, all"),
    ([["a", "b"]], np.zeros((3, 2)), 0.1, {}, "samples is not a numeric array"),
])
def test_bad_input_is_a_one_line_error(samples, means, std, kw, words):
    with pytest.raises(GenlabError) as e:
        mixture_mode_coverage(samples, means, std, **kw)
    assert words in str(e.value) and "\n" not in str(e.value)
