"""Loss terms against torch.distributions and direct formulas."""
from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from genlab import losses


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


def test_kl_normal_std_normal_matches_torch_distributions(gen):
    mu = torch.randn(7, 5, generator=gen, dtype=torch.float64) * 2
    logvar = torch.randn(7, 5, generator=gen, dtype=torch.float64)
    sigma = torch.exp(0.5 * logvar)
    ref = kl_divergence(Normal(mu, sigma), Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(1)
    got = losses.kl_normal_std_normal(mu, logvar)
    assert got.shape == (7,)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def test_kl_is_zero_for_the_prior_itself():
    mu, logvar = torch.zeros(3, 4), torch.zeros(3, 4)
    assert torch.equal(losses.kl_normal_std_normal(mu, logvar), torch.zeros(3))


def test_bernoulli_nll_matches_direct_formula(gen):
    logits = torch.randn(6, 1, 4, 4, generator=gen, dtype=torch.float64) * 3
    x = torch.rand(6, 1, 4, 4, generator=gen, dtype=torch.float64)  # grey levels: cross-entropy
    x[0] = (x[0] > 0.5).double()  # and one binary image
    p = torch.sigmoid(logits)
    ref = -(x * p.log() + (1 - x) * (1 - p).log()).reshape(6, -1).sum(1)
    got = losses.bernoulli_nll(logits, x)
    assert got.shape == (6,)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)


def test_bernoulli_nll_is_stable_for_large_logits():
    # p = sigmoid(40) rounds to 1 in float32, the direct formula gives inf; the exact value is
    # -log(1 - sigmoid(40)) = 40 + log(1 + e^-40) for x = 0 and log(1 + e^-40) for x = 1.
    logits = torch.tensor([[40.0, 40.0]])
    x = torch.tensor([[0.0, 1.0]])
    got = losses.bernoulli_nll(logits, x)
    torch.testing.assert_close(got, torch.tensor([40.0 + 2 * math.log1p(math.exp(-40))]))


def test_gaussian_nll_matches_normal_log_prob(gen):
    mean = torch.randn(5, 3, 2, 2, generator=gen, dtype=torch.float64)
    log_std = torch.randn(3, 2, 2, generator=gen, dtype=torch.float64) * 0.5  # one per pixel, broadcast
    x = torch.randn(5, 3, 2, 2, generator=gen, dtype=torch.float64)
    ref = -Normal(mean, log_std.exp().expand_as(mean)).log_prob(x).reshape(5, -1).sum(1)
    got = losses.gaussian_nll(mean, log_std, x)
    assert got.shape == (5,)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def test_log_normal_matches_normal_log_prob(gen):
    z = torch.randn(4, 3, 6, generator=gen, dtype=torch.float64)
    mu = torch.randn(3, 6, generator=gen, dtype=torch.float64)
    logvar = torch.randn(3, 6, generator=gen, dtype=torch.float64)
    ref = Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)
    got = losses.log_normal(z, mu, logvar)
    assert got.shape == (4, 3)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def test_log_std_normal_matches_normal_log_prob(gen):
    z = torch.randn(4, 3, 6, generator=gen, dtype=torch.float64)
    ref = Normal(0.0, 1.0).log_prob(z).sum(-1)
    torch.testing.assert_close(losses.log_std_normal(z), ref, rtol=1e-12, atol=1e-12)
    # and log N(0; 0, I) in d dimensions is -d/2 log(2 pi)
    assert losses.log_std_normal(torch.zeros(1, 6)).item() == pytest.approx(-3 * math.log(2 * math.pi))


def test_sse_is_summed_squared_error(gen):
    a = torch.randn(3, 2, 5, generator=gen)
    b = torch.randn(3, 2, 5, generator=gen)
    ref = torch.stack([((a[i] - b[i]) ** 2).sum() for i in range(3)])
    torch.testing.assert_close(losses.sse(a, b), ref)
