"""The VAE's likelihood bounds against the closed form of a linear-Gaussian model.

With hidden=[] the MLP VAE is linear: p(z) = N(0, I), p(x|z) = N(Wz + b, s^2 I), so
log p(x) = log N(x; b, W W^T + s^2 I) exactly, the posterior is Gaussian with covariance
(I + W^T W / s^2)^-1 and mean Sigma W^T (x - b) / s^2, and the ELBO of any Gaussian q has a
closed form. W is built with orthogonal columns so the exact posterior is diagonal and the
VAE's encoder can represent it.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.distributions import MultivariateNormal

import genlab

D, L, S = 6, 2, 0.5  # data dimension, latent dimension, decoder std


class LinearGaussian:
    def __init__(self, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(D, L, generator=g, dtype=torch.float64))
        self.W = q * torch.tensor([2.0, 0.7], dtype=torch.float64)  # orthogonal columns
        self.b = torch.randn(D, generator=g, dtype=torch.float64)
        self.cov_x = self.W @ self.W.T + S**2 * torch.eye(D, dtype=torch.float64)
        self.post_cov = torch.linalg.inv(torch.eye(L, dtype=torch.float64) + self.W.T @ self.W / S**2)
        self.A = self.post_cov @ self.W.T / S**2  # posterior mean = A (x - b)

    def sample_x(self, n: int, seed: int = 1) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        chol = torch.linalg.cholesky(self.cov_x)
        return self.b + torch.randn(n, D, generator=g, dtype=torch.float64) @ chol.T

    def log_px(self, x: torch.Tensor) -> torch.Tensor:
        return MultivariateNormal(self.b, self.cov_x).log_prob(x)

    def elbo(self, x, mu, var) -> torch.Tensor:
        """E_q[log p(x|z)] - KL(q || p(z)) for q = N(mu, diag(var)), in closed form."""
        mean_x = mu @ self.W.T + self.b
        log_lik = -0.5 * (((x - mean_x) ** 2).sum(1) / S**2 + D * math.log(2 * math.pi * S**2))
        trace = (var * (self.W**2).sum(0)).sum(1) / S**2  # E ||W (z - mu)||^2 / s^2
        kl = 0.5 * (mu**2 + var - var.log() - 1).sum(1)
        return log_lik - 0.5 * trace - kl

    def model(self, mean_offset: float = 0.0, var_scale: float = 1.0):
        """A genlab VAE holding this linear-Gaussian decoder and an encoder that is the exact
        posterior (offset 0, scale 1) or a deliberately wrong Gaussian: its mean shifted by
        ``mean_offset`` posterior standard deviations, its variance scaled by ``var_scale``."""
        m = genlab.create_model("vae", shape=(D,), hidden=[], latent=L, decoder="gaussian", decoder_std=S).double()
        m.log_std.fill_(math.log(S))  # the buffer was made in float32: give it full precision
        dec = nn.Linear(L, D).double()
        enc = nn.Linear(D, 2 * L).double()
        with torch.no_grad():
            dec.weight.copy_(self.W)
            dec.bias.copy_(self.b)
            enc.weight.zero_()
            enc.weight[:L] = self.A
            enc.bias[:L] = -self.A @ self.b + mean_offset * torch.diagonal(self.post_cov).sqrt()
            enc.bias[L:] = torch.log(torch.diagonal(self.post_cov) * var_scale)
        m.decoder, m.encoder = dec, enc
        m.eval()
        return m

    def q(self, x, mean_offset=0.0, var_scale=1.0):
        mu = (x - self.b) @ self.A.T + mean_offset * torch.diagonal(self.post_cov).sqrt()
        var = (torch.diagonal(self.post_cov) * var_scale).expand_as(mu)
        return mu, var


@pytest.fixture(scope="module")
def lg():
    return LinearGaussian()


def test_posterior_is_diagonal(lg):
    # the premise of the other tests: with orthogonal columns the exact posterior is diagonal
    off = lg.post_cov - torch.diag(torch.diagonal(lg.post_cov))
    assert off.abs().max() < 1e-12


def test_log_std_buffer_is_the_fixed_decoder_std(lg):
    m = lg.model()
    torch.testing.assert_close(m.log_std, torch.full((D,), math.log(S), dtype=torch.float64))


def test_exact_posterior_makes_every_one_sample_bound_exact(lg):
    """With q = p(z|x), log p(x, z) - log q(z|x) = log p(x) for every z."""
    m = lg.model()
    x = lg.sample_x(16)
    exact = lg.log_px(x)
    torch.manual_seed(0)
    for _ in range(3):
        torch.testing.assert_close(m.iwae_log_likelihood(x, 1), exact, rtol=0, atol=1e-9)
    # k samples decoded in chunks of 3: still exact, so the chunks line up with their examples
    torch.testing.assert_close(m.iwae_log_likelihood(x, 7, chunk=3), exact, rtol=0, atol=1e-9)


def test_exact_posterior_elbo_equals_log_px_in_closed_form(lg):
    # a check of the reference itself: at the exact posterior the ELBO is tight
    x = lg.sample_x(16)
    mu, var = lg.q(x)
    torch.testing.assert_close(lg.elbo(x, mu, var), lg.log_px(x), rtol=0, atol=1e-9)


def test_one_sample_bound_averages_to_the_elbo(lg):
    off, scale, reps = 0.3, 1.6, 4000
    m = lg.model(off, scale)
    x = lg.sample_x(5)
    mu, var = lg.q(x, off, scale)
    elbo = lg.elbo(x, mu, var)
    log_px = lg.log_px(x)
    assert (log_px - elbo).min() > 0.05  # the wrong encoder leaves a real gap to close

    torch.manual_seed(0)
    draws = m.iwae_log_likelihood(x.repeat(reps, 1), 1).view(reps, -1)
    se = draws.std(0) / math.sqrt(reps)
    assert ((draws.mean(0) - elbo).abs() < 5 * se + 1e-6).all()

    # the training loss is the same bound: its nelbo and kl average to -ELBO and the closed-form KL
    torch.manual_seed(1)
    out = m.loss(x.repeat(reps, 1))
    kl = 0.5 * (mu**2 + var - var.log() - 1).sum(1)
    assert out["kl"].item() == pytest.approx(kl.mean().item(), rel=1e-9)
    assert out["nelbo"].item() == pytest.approx(-elbo.mean().item(), abs=5 * se.max().item() + 1e-3)

    # and the evaluation values per example
    torch.manual_seed(2)
    ev = m.eval_batch(x.repeat(reps, 1))
    torch.testing.assert_close(ev["kl"].view(reps, -1)[0], kl)
    nelbo = ev["nelbo"].view(reps, -1)
    assert ((nelbo.mean(0) + elbo).abs() < 5 * nelbo.std(0) / math.sqrt(reps) + 1e-6).all()


def test_iwae_tightens_towards_log_px(lg):
    off, scale = 0.3, 1.6
    m = lg.model(off, scale)
    x = lg.sample_x(8)
    mu, var = lg.q(x, off, scale)
    elbo, log_px = lg.elbo(x, mu, var), lg.log_px(x)
    torch.manual_seed(0)
    k2000 = m.iwae_log_likelihood(x, 2000)
    assert (k2000 - log_px).abs().max() < 0.05
    assert (k2000 > elbo).all()
    # on average over examples the bound grows with k and stays below log p(x)
    torch.manual_seed(1)
    reps = 200
    xr = x.repeat(reps, 1)
    k1 = m.iwae_log_likelihood(xr, 1).mean()
    k10 = m.iwae_log_likelihood(xr, 10).mean()
    assert k1 < k10 < k2000.mean() + 1e-3
    assert k10 < log_px.mean()


def test_iwae_accepts_float32_and_is_finite():
    m = genlab.create_model("vae", shape=(1, 8, 8), **{"hidden": [16], "latent": 3})
    x = torch.rand(4, 1, 8, 8)
    out = m.iwae_log_likelihood(x, 5)
    assert out.shape == (4,) and torch.isfinite(out).all()


def test_samples_follow_the_prior_through_the_decoder(lg):
    """sample() decodes z ~ N(0, I): for the linear decoder the sample mean is b and the
    covariance W W^T (sample() returns the decoder mean, without the pixel noise)."""
    m = lg.model().float()
    n = 20000
    x = m.sample(n, generator=torch.Generator().manual_seed(0)).double()
    assert x.shape == (n, D)
    torch.testing.assert_close(x.mean(0), lg.b, rtol=0, atol=0.05)
    cov = torch.cov(x.T)
    torch.testing.assert_close(cov, lg.W @ lg.W.T, rtol=0, atol=0.1)
    a, b, c = (m.sample(7, generator=torch.Generator().manual_seed(sd)) for sd in (0, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_sample_works_for_a_float64_model(lg):
    # iwae_log_likelihood draws its noise in the model's dtype; sample() must do the same
    m = lg.model()
    x = m.sample(4, generator=torch.Generator().manual_seed(0))
    assert x.dtype == torch.float64 and x.shape == (4, D)


def test_kl_weight_beta_scales_only_the_kl_term():
    x = torch.rand(32, 1, 8, 8)
    torch.manual_seed(3)
    m1 = genlab.create_model("vae", shape=(1, 8, 8), hidden=[16], latent=3, beta=1.0)
    m4 = genlab.create_model("vae", shape=(1, 8, 8), hidden=[16], latent=3, beta=4.0)
    m4.load_state_dict(m1.state_dict())
    torch.manual_seed(0)
    o1 = m1.loss(x)
    torch.manual_seed(0)
    o4 = m4.loss(x)
    assert o1["nelbo"].item() == pytest.approx(o4["nelbo"].item(), rel=1e-6)
    assert (o4["loss"] - o1["loss"]).item() == pytest.approx(3 * o1["kl"].item(), rel=1e-4)
