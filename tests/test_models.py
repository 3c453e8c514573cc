"""Model shapes and objectives: MLP and conv autoencoders and VAEs."""
from __future__ import annotations

import math

import pytest
import torch

import genlab
from genlab.errors import ConfigError

CONV = {"channels": [4, 8], "latent": 3}
MLP = {"hidden": [16], "latent": 3}


@pytest.mark.parametrize("name", ["conv-ae", "conv-vae"])
@pytest.mark.parametrize("shape,channels", [((1, 8, 8), [4, 8]), ((3, 32, 32), [4, 8, 8]), ((1, 28, 28), [4, 8])])
def test_conv_models_reconstruct_to_the_input_shape(name, shape, channels):
    torch.manual_seed(0)
    m = genlab.create_model(name, shape=shape, channels=channels, latent=3)
    x = torch.rand(5, *shape)
    r = m.reconstruct(x)
    assert r.shape == x.shape
    assert r.min() >= 0 and r.max() <= 1  # a sigmoid on data in [0, 1]
    assert m.encode(x).shape == (5, 3)
    out = m.loss(x)
    assert out["loss"].shape == () and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)
    if m.generative:
        assert m.sample(4).shape == (4, *shape)
        assert m.iwae_log_likelihood(x, 3).shape == (5,)


@pytest.mark.parametrize("name", ["ae", "vae"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 4, 4), (7,)])
def test_mlp_models_reconstruct_to_the_input_shape(name, shape):
    m = genlab.create_model(name, shape=shape, **MLP)
    x = torch.rand(4, *shape)
    assert m.reconstruct(x).shape == x.shape
    assert torch.isfinite(m.loss(x)["loss"])


@pytest.mark.parametrize("name", ["conv-ae", "conv-vae"])
def test_conv_models_refuse_sizes_that_do_not_halve(name):
    with pytest.raises(ConfigError) as e:
        genlab.create_model(name, shape=(1, 28, 28), channels=[4, 8, 8], latent=3)
    msg = str(e.value)
    assert msg.startswith("channels") and "28" in msg


@pytest.mark.parametrize("name", ["conv-ae", "conv-vae"])
def test_conv_models_refuse_vector_data(name):
    with pytest.raises(ConfigError) as e:
        genlab.create_model(name, shape=(64,), **CONV)
    assert "(64,)" in str(e.value)


def test_conv_batchnorm_and_parameter_count():
    m = genlab.create_model("conv-ae", shape=(1, 8, 8), channels=[4, 8], latent=3, batchnorm=True)
    x = torch.rand(6, 1, 8, 8)
    assert m.reconstruct(x).shape == x.shape
    # encoder: conv 1->4 (4x4), BN(4), conv 4->8, BN(8), linear 8*2*2 -> 3
    enc = (1 * 4 * 16 + 4) + 2 * 4 + (4 * 8 * 16 + 8) + 2 * 8 + (32 * 3 + 3)
    # decoder: linear 3 -> 8*2*2, convT 8->4, BN(4), convT 4->1
    dec = (3 * 32 + 32) + (8 * 4 * 16 + 4) + 2 * 4 + (4 * 1 * 16 + 1)
    assert sum(p.numel() for p in m.parameters()) == enc + dec


def test_ae_losses_match_their_definitions():
    torch.manual_seed(0)
    x = torch.rand(8, 1, 8, 8)
    mse = genlab.create_model("ae", shape=(1, 8, 8), **MLP)
    bce = genlab.create_model("ae", shape=(1, 8, 8), loss="bce", **MLP)
    bce.load_state_dict(mse.state_dict())
    with torch.no_grad():
        r = mse.reconstruct(x)
        assert mse.loss(x)["loss"].item() == pytest.approx(((r - x) ** 2).sum((1, 2, 3)).mean().item(), rel=1e-5)
        direct = -(x * r.log() + (1 - x) * (1 - r).log()).sum((1, 2, 3)).mean()
        assert bce.loss(x)["loss"].item() == pytest.approx(direct.item(), rel=1e-4)


def test_ae_on_unbounded_data_outputs_raw_values():
    m = genlab.create_model("ae", shape=(5,), value_range=(-10.0, 10.0), **MLP)
    with torch.no_grad():
        for p in m.decoder.parameters():
            p.fill_(3.0)  # a decoder whose outputs are far above 1
    r = m.reconstruct(torch.zeros(2, 5))
    assert r.min() > 1  # no sigmoid when the data are not in [0, 1]
    with pytest.raises(ConfigError):
        genlab.create_model("ae", shape=(5,), value_range=(-10.0, 10.0), loss="bce", **MLP)


def test_code_activation_bounds_the_code():
    m = genlab.create_model("ae", shape=(1, 8, 8), code_activation="tanh", **MLP)
    with torch.no_grad():
        for p in m.encoder.parameters():
            p.mul_(100)
    z = m.encode(torch.rand(16, 1, 8, 8))
    assert z.abs().max() <= 1


def test_eval_batch_psnr_uses_the_value_range():
    """psnr = 10 log10(range^2 / mse) per image, with range = hi - lo of the data."""
    torch.manual_seed(0)
    m = genlab.create_model("ae", shape=(6,), value_range=(-1.0, 1.0), **MLP)
    x = torch.rand(5, 6) * 2 - 1
    out = m.eval_batch(x)
    with torch.no_grad():
        mse = ((m.reconstruct(x) - x) ** 2).mean(1)
    torch.testing.assert_close(out["mse"], mse)
    torch.testing.assert_close(out["sse"], mse * 6)
    torch.testing.assert_close(out["psnr"], 10 * torch.log10(4 / mse))
    assert "bce" not in out  # no cross-entropy outside [0, 1]


def test_vae_interpolation_ends_at_the_two_reconstructions():
    m = genlab.create_model("vae", shape=(1, 8, 8), **MLP)
    x0, x1 = torch.rand(3, 1, 8, 8), torch.rand(3, 1, 8, 8)
    path = m.interpolate(x0, x1, steps=5)
    assert path.shape == (3, 5, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(path[:, 0], m.reconstruct(x0))
        torch.testing.assert_close(path[:, -1], m.reconstruct(x1))
        mid = m.decode((m.encode(x0) + m.encode(x1)) / 2)
    torch.testing.assert_close(path[:, 2], mid)


def test_vae_learned_decoder_std_is_a_parameter():
    m = genlab.create_model("vae", shape=(4,), decoder="gaussian", **MLP)
    assert any(p is m.log_std for p in m.parameters())
    x = torch.randn(3, 4)
    with torch.no_grad():
        m.log_std.fill_(math.log(2.0))
        mu, _ = m.posterior(x)
        raw = m.decode_raw(mu)
        # -log N(x; raw, 2^2) summed over the 4 pixels
        ref = (0.5 * ((x - raw) / 2) ** 2 + math.log(2.0) + 0.5 * math.log(2 * math.pi)).sum(1)
        torch.testing.assert_close(m.nll(raw, x), ref)


def test_autoencoder_cannot_sample():
    m = genlab.create_model("ae", shape=(1, 8, 8), **MLP)
    with pytest.raises(genlab.GenlabError) as e:
        m.sample(3)
    assert "ae" in str(e.value)
