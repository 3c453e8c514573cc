"""The classic autoencoders (linear, sparse, k-sparse, denoising, contractive) against closed
forms and independent computations."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.linalg import subspace_angles

import genlab
from genlab.errors import ConfigError
from genlab.models.autoencoders.classic import corrupt, jacobian_frobenius_sq, keep_top_k


def _lowrank_npz(tmp_path, n=1200, dim=20, seed=0):
    """Points near a 3-D subspace of R^20 with a clear spectral gap (stds 3, 2, 1.5, noise 0.1)."""
    r = np.random.default_rng(seed)
    basis = np.linalg.qr(r.normal(size=(dim, 3)))[0]
    x = (r.normal(size=(n, 3)) * [3.0, 2.0, 1.5]) @ basis.T + 0.1 * r.normal(size=(n, dim)) + 0.5
    p = tmp_path / "lowrank.npz"
    np.savez(p, x=x.astype(np.float32))
    return p


# --------------------------------------------------------------------------- linear-ae
def test_linear_ae_finds_the_pca_subspace(tmp_path):
    from sklearn.decomposition import PCA

    p = _lowrank_npz(tmp_path)
    run = genlab.train("linear-ae", f"npz:{p}", out=tmp_path / "run", steps=1500, lr=1e-2, batch_size=100,
                       set={"latent": 3, "train.schedule": "cosine"})
    ds = run._data
    xtr = ds.eval_inputs("train")[0].numpy()
    xte = ds.eval_inputs("test")[0].numpy()
    pca = PCA(3).fit(xtr)
    angles = np.degrees(subspace_angles(run.model.decoder_basis().numpy(), pca.components_.T))
    assert angles.max() < 2.0
    pca_mse = float(((pca.inverse_transform(pca.transform(xte)) - xte) ** 2).mean())
    assert run.evaluate("test")["mse"] == pytest.approx(pca_mse, rel=0.02)


def test_linear_ae_is_linear():
    m = genlab.create_model("linear-ae", shape=(1, 4, 4), latent=3)
    a, b = torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4)
    with torch.no_grad():
        zero = m.reconstruct(torch.zeros(2, 1, 4, 4))
        lhs = m.reconstruct(2 * a - b) - zero
        rhs = 2 * (m.reconstruct(a) - zero) - (m.reconstruct(b) - zero)
    torch.testing.assert_close(lhs, rhs)  # affine: no sigmoid on the output


# --------------------------------------------------------------------------- sparse-ae
def test_sparse_kl_penalty_equals_bernoulli_kl():
    torch.manual_seed(0)
    m = genlab.create_model("sparse-ae", shape=(1, 8, 8), latent=100, rho=0.05, beta=3.0)
    x = torch.rand(32, 1, 8, 8)
    out = m.loss(x)
    rho_hat = m.encode(x).mean(0)
    want = 3.0 * torch.distributions.kl_divergence(
        torch.distributions.Bernoulli(probs=torch.full_like(rho_hat, 0.05)), torch.distributions.Bernoulli(probs=rho_hat)).sum()
    torch.testing.assert_close(out["sparsity"], want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["loss"], out["recon"] + out["sparsity"])


def _train(name, tmp_path, tag, steps=300, **kw):
    return genlab.train(name, "digits", out=tmp_path / tag, steps=steps, lr=3e-3, set=kw, evaluate_at_end=False)


def _last(run, key):
    return [r for r in run.metrics() if key in r][-1][key]


def test_sparse_kl_drives_mean_activation_to_rho(tmp_path):
    sparse = _train("sparse-ae", tmp_path, "kl", latent=100, rho=0.05, beta=3.0)
    free = _train("sparse-ae", tmp_path, "free", latent=100, rho=0.05, beta=0.0)
    assert _last(sparse, "mean_activation") < 0.1 < _last(free, "mean_activation")


def test_sparse_l1_silences_units(tmp_path):
    sparse = _train("sparse-ae", tmp_path, "l1", latent=100, penalty="l1", l1_weight=0.5)
    free = _train("sparse-ae", tmp_path, "l1free", latent=100, penalty="l1", l1_weight=0.0)
    assert _last(sparse, "active_share") < 0.5 * _last(free, "active_share")


# --------------------------------------------------------------------------- ksparse-ae
def test_keep_top_k_keeps_exactly_the_k_largest():
    z = torch.randn(50, 40)
    out = keep_top_k(z, 7)
    assert ((out != 0).sum(1) == 7).all()
    kth = z.sort(1, descending=True).values[:, 6:7]
    torch.testing.assert_close(out, torch.where(z >= kth, z, torch.zeros_like(z)))


def test_ksparse_codes_and_gradients():
    torch.manual_seed(0)
    m = genlab.create_model("ksparse-ae", shape=(1, 8, 8), latent=60, k=5, alpha=2.0, k_start=0)
    x = torch.rand(1, 1, 8, 8)
    assert int((m.encode(x) != 0).sum()) == 10  # alpha * k at encoding time
    m.loss(x)["loss"].backward()
    z = m.linear_code(x).detach()[0]
    kept = z >= z.sort(descending=True).values[4]
    rows = m.enc.weight.grad.abs().sum(1)
    assert (rows[~kept] == 0).all() and (rows[kept] > 0).all()  # only the kept units learn from this image
    with torch.no_grad():  # tied weights: the decoder is W^T
        h = keep_top_k(m.linear_code(x), 5)
        torch.testing.assert_close(m.decode_raw(h).flatten(1), h @ m.enc.weight + m.dec_bias)


def test_ksparse_k_schedule_is_a_function_of_the_step():
    m = genlab.create_model("ksparse-ae", shape=(1, 8, 8), latent=200, k=20, k_start=100, k_schedule=0.5)
    for step, want in ((0, 100), (250, 60), (500, 20), (900, 20)):
        m.set_step(step, 1000)
        assert m.k_now == want


# --------------------------------------------------------------------------- denoising-ae
@pytest.mark.parametrize("noise", ["mask", "salt-pepper", "gaussian"])
def test_corruption_statistics(noise):
    x = torch.full((200, 1000), 0.5)
    g = torch.Generator().manual_seed(0)
    level = 0.3 if noise != "gaussian" else 0.1
    xn = corrupt(x, noise, level, (0.0, 1.0), g)
    n = x.numel()
    tol = 4 * math.sqrt(level * (1 - level) / n)  # four binomial standard errors
    if noise == "mask":
        assert set(xn.unique().tolist()) == {0.0, 0.5}
        assert abs((xn == 0).float().mean().item() - level) < tol
    elif noise == "salt-pepper":
        assert abs((xn != 0.5).float().mean().item() - level) < tol
        assert abs((xn == 1).float().mean().item() - level / 2) < tol
    else:
        assert (xn - x).std().item() == pytest.approx(level, rel=0.01)
        assert abs((xn - x).mean().item()) < 4 * level / math.sqrt(n)


def test_denoising_loss_compares_with_the_clean_input():
    torch.manual_seed(0)
    m = genlab.create_model("denoising-ae", shape=(1, 8, 8), hidden=[16], latent=4, noise="mask", level=0.5)
    x = torch.rand(8, 1, 8, 8)
    torch.manual_seed(1)
    out = m.loss(x)
    torch.manual_seed(1)
    xn = corrupt(x, "mask", 0.5, (0.0, 1.0))
    want = ((torch.sigmoid(m.decode_raw(m.encode(xn))) - x) ** 2).flatten(1).sum(1).mean()
    torch.testing.assert_close(out["loss"], want)


def test_denoising_beats_the_noisy_input(tmp_path):
    run = genlab.train("denoising-ae", "digits", out=tmp_path / "dae", steps=600, lr=3e-3,
                       set={"hidden": [64], "latent": 16, "noise": "mask", "level": 0.5})
    ev = run.evaluate("test")
    assert ev["psnr"] > ev["psnr_noisy"] + 3.0
    assert run.evaluate("test") == ev  # the evaluation's noise is fixed by its seed


# --------------------------------------------------------------------------- contractive-ae
def _explicit_jacobian_norm(f, x):
    return torch.stack([torch.autograd.functional.jacobian(lambda v: f(v.unsqueeze(0)).squeeze(0), xi).pow(2).sum()
                        for xi in x])


def test_contractive_closed_form_equals_autograd():
    torch.manual_seed(0)
    m = genlab.create_model("contractive-ae", shape=(1, 8, 8), latent=30)
    x = torch.rand(6, 64)
    torch.testing.assert_close(m.jacobian_penalty(x), _explicit_jacobian_norm(m.encode, x), rtol=1e-5, atol=1e-7)
    deep = genlab.create_model("contractive-ae", shape=(1, 8, 8), latent=7, hidden=[12])
    torch.testing.assert_close(deep.jacobian_penalty(x), _explicit_jacobian_norm(deep.encode, x), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(jacobian_frobenius_sq(deep.encode, x), _explicit_jacobian_norm(deep.encode, x), rtol=1e-5, atol=1e-7)


def test_contractive_penalty_contracts(tmp_path):
    weak = _train("contractive-ae", tmp_path, "weak", latent=50, lam=0.0)
    strong = _train("contractive-ae", tmp_path, "strong", latent=50, lam=1.0)
    x = weak._data.eval_inputs("test")[0]
    with torch.no_grad():
        assert strong.model.jacobian_penalty(x).mean() < 0.5 * weak.model.jacobian_penalty(x).mean()


# --------------------------------------------------------------------------- configs
@pytest.mark.parametrize("name,kw,field", [
    ("sparse-ae", {"rho": 1.5}, "rho"),
    ("ksparse-ae", {"latent": 10, "k": 20}, "k"),
    ("ksparse-ae", {"latent": 100, "k": 20, "k_start": 10}, "k_start"),
    ("ksparse-ae", {"alpha": 0.5}, "alpha"),
    ("denoising-ae", {"noise": "mask", "level": 1.2}, "level"),
    ("denoising-ae", {"noise": "blur"}, "noise"),
    ("contractive-ae", {"lam": -1}, "lam"),
    ("linear-ae", {"latent": 0}, "latent"),
])
def test_bad_configs_name_the_field(name, kw, field):
    with pytest.raises(ConfigError, match=f"^model {name}.{field}:"):
        genlab.create_model(name, shape=(1, 8, 8), **kw)
