"""The context encoder: hole masks, the inpainting objective, the composite, training, errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import genlab
from genlab.errors import ConfigError

TINY = {"channels": [4, 8], "latent": 8}


def model(shape=(1, 16, 16), **cfg):
    torch.manual_seed(0)
    return genlab.create_model("context-encoder", shape=shape, **{**TINY, **cfg})


def box(n, h, w, top, left, side):
    """A hole mask built by slicing, independent of the model's arithmetic."""
    m = torch.zeros(n, 1, h, w, dtype=torch.bool)
    m[:, :, top:top + side, left:left + side] = True
    return m


# --- masks ----------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,size,top,side", [
    ((1, 16, 16), 0.5, 4, 8),
    ((1, 28, 28), 0.5, 7, 14),  # the Fashion-MNIST benchmark's 14x14 hole
    ((3, 8, 8), 0.25, 3, 2),
    ((1, 8, 8), 0.3, 3, 2),  # 2.4 rounds to 2; (8 - 2) // 2 = 3
])
def test_centre_mask_has_the_expected_pixels(shape, size, top, side):
    m = model(shape, mask_size=size, channels=[4])
    x = torch.rand(3, *shape)
    hole = m.mask(x)
    assert hole.dtype == torch.bool and hole.shape == (3, 1, *shape[1:])
    assert torch.equal(hole, box(3, shape[1], shape[2], top, top, side))
    assert int(hole[0].sum()) == side * side
    # evaluation uses the centre hole even when training draws random ones
    assert torch.equal(model(shape, mask_size=size, channels=[4], mask="random").mask(x, train=False), hole)


def test_random_masks_are_squares_of_the_same_size_drawn_from_the_global_rng():
    m = model(mask="random")
    x = torch.rand(64, 1, 16, 16)
    torch.manual_seed(1)
    a = m.mask(x, train=True)
    b = m.mask(x, train=True)
    torch.manual_seed(1)
    assert torch.equal(m.mask(x, train=True), a)  # a function of the global RNG state
    assert not torch.equal(a, b)  # fresh positions at each call (each batch)
    for hole in a[:, 0]:
        rows, cols = hole.nonzero(as_tuple=True)
        top, left = int(rows.min()), int(cols.min())
        assert torch.equal(hole, box(1, 16, 16, top, left, 8)[0, 0])
    tops = {int(h[0].nonzero()[:, 0].min()) for h in a}
    assert len(tops) > 3  # positions vary between images


# --- objective -------------------------------------------------------------------------------
def test_loss_is_hole_sse_plus_weighted_context_sse():
    m = model(fill="zero", overlap_weight=0.1)
    x = torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    hole = box(6, 16, 16, 4, 4, 8)
    masked = x.clone()
    masked[:, :, 4:12, 4:12] = 0.0
    with torch.no_grad():
        out = m.decode(m.encode(masked))
        sq = (out - x) ** 2
        hole_sse = sq[:, :, 4:12, 4:12].sum((1, 2, 3))
        context_sse = sq.sum((1, 2, 3)) - hole_sse
        terms = m.loss(x)
    assert torch.equal(m.predict(x, hole), out)
    assert terms["hole_sse"].item() == pytest.approx(hole_sse.mean().item(), rel=1e-5)
    assert terms["context_sse"].item() == pytest.approx(context_sse.mean().item(), rel=1e-5)
    assert terms["loss"].item() == pytest.approx((hole_sse + 0.1 * context_sse).mean().item(), rel=1e-5)


def test_mean_fill_is_the_running_mean_of_earlier_training_batches():
    m = model()
    a, b = torch.rand(5, 1, 16, 16), torch.rand(3, 1, 16, 16)
    hole = box(1, 16, 16, 4, 4, 8)
    assert torch.all(m.fill_hole(a[:1], hole)[hole] == 0.5)  # the middle of [0, 1] before training
    m.train()
    m.loss(a)
    # the batch's own pixels enter the fill only after its loss: no leak into its input
    torch.testing.assert_close(m.fill_hole(b[:1], hole)[0, 0, 4:12, 4:12], a.mean(0)[0, 4:12, 4:12])
    m.loss(b)
    torch.testing.assert_close(m.fill_mean, torch.cat([a, b]).mean(0))
    m.eval()
    m.loss(a)  # evaluation leaves the fill alone
    torch.testing.assert_close(m.fill_mean, torch.cat([a, b]).mean(0))
    assert m.fill_count.item() == 8


def test_reconstruct_keeps_the_context_exactly_and_fills_the_hole():
    m = model()
    x = torch.rand(4, 1, 16, 16)
    r = m.reconstruct(x)
    hole = box(4, 16, 16, 4, 4, 8)
    assert r.shape == x.shape
    assert torch.equal(r[~hole], x[~hole])
    assert torch.equal(r[hole], m.predict(x, hole)[hole])
    assert not torch.equal(r[hole], x[hole])


def test_eval_batch_scores_the_hole_of_the_composite():
    m = model((1, 16, 16))
    x = torch.rand(4, 1, 16, 16)
    vals = m.eval_batch(x)
    r = m.reconstruct(x)
    hole_mse = ((r - x) ** 2)[:, :, 4:12, 4:12].mean((1, 2, 3))
    torch.testing.assert_close(vals["hole_mse"], hole_mse)
    torch.testing.assert_close(vals["hole_psnr"], 10 * torch.log10(1.0 / hole_mse))
    # the composite's whole-image error is the hole's error spread over all pixels
    torch.testing.assert_close(vals["mse"], hole_mse * 64 / 256)
    assert set(vals) >= {"sse", "psnr", "ssim", "bce"}
    assert all(v.shape == (4,) for v in vals.values())


# --- training ---------------------------------------------------------------------------------
def gradients(n: int, rng: np.random.Generator) -> np.ndarray:
    """16x16 linear ramps, horizontal or vertical, random level and slope: the hole is
    determined by its context, but not by the mean image."""
    u = np.linspace(0.0, 1.0, 16)
    level = rng.uniform(0.25, 0.75, (n, 1, 1))
    slope = rng.uniform(-0.5, 0.5, (n, 1, 1))
    ramp = np.where(rng.random((n, 1, 1)) < 0.5, u[None, :, None], u[None, None, :])
    return np.clip(255 * (level + slope * (ramp - 0.5)), 0, 255).astype(np.uint8)


def test_training_inpaints_better_than_the_mean_image(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "ramps.npz", x=gradients(512, rng), x_test=gradients(128, rng))
    run = genlab.train("context-encoder", f"npz:{tmp_path / 'ramps.npz'}", out=tmp_path / "run", steps=150,
                       batch_size=64, device="cpu", set={"channels": [8, 16], "latent": 16})
    ev = json.loads((run.path / "eval.json").read_text())
    ds = run.data()
    mean = ds.as_float(ds.train.x).mean(0)
    x, _ = ds.eval_inputs("test")
    baseline = ((mean - x)[:, :, 4:12, 4:12] ** 2).mean().item()
    assert ev["hole_mse"] < 0.25 * baseline
    assert ev["hole_psnr"] > 10 * np.log10(1 / baseline) + 6


def test_digits_run_saves_the_training_mean_as_fill(tmp_path):
    # digits: 1437 training images, batch 128 -> 12 steps are exactly one epoch
    run = genlab.train("context-encoder", "digits", out=tmp_path / "run", steps=12, device="cpu",
                       set={**TINY, "mask": "random", "mask_size": 0.5})
    ds = run.data()
    loaded = genlab.load_run(run.path).model
    assert loaded.fill_count.item() == len(ds.train)
    torch.testing.assert_close(loaded.fill_mean, ds.as_float(ds.train.x).mean(0))
    ev = json.loads((run.path / "eval.json").read_text())
    assert np.isfinite(ev["hole_psnr"]) and ev["hole_mse"] > 0


def test_resume_with_random_masks_is_exact(tmp_path):
    kw = dict(device="cpu", evaluate_at_end=False, set={**TINY, "mask": "random", "train.batch_size": 256})
    full = genlab.train("context-encoder", "digits", out=tmp_path / "full", steps=10, **kw)
    genlab.train("context-encoder", "digits", out=tmp_path / "part", steps=4, **kw)
    part = genlab.train(out=tmp_path / "part", resume=True, steps=10, device="cpu", evaluate_at_end=False)
    a, b = load_file(str(full.path / "model.safetensors")), load_file(str(part.path / "model.safetensors"))
    assert a.keys() == b.keys() and "fill_mean" in a and all(torch.equal(a[k], b[k]) for k in a)


# --- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [0.0, 1.0, -0.5, 1.5])
def test_mask_size_outside_the_unit_interval_is_refused(size):
    with pytest.raises(ConfigError) as e:
        model(mask_size=size)
    assert "mask_size" in str(e.value) and "(0, 1)" in str(e.value)


@pytest.mark.parametrize("size,shape", [(0.97, (1, 8, 8)), (0.05, (1, 8, 8))])
def test_mask_size_that_leaves_no_hole_or_no_context_is_refused(size, shape):
    with pytest.raises(ConfigError) as e:
        model(shape, mask_size=size)
    assert str(e.value).startswith("mask_size") and "8x8" in str(e.value)


def test_vector_data_is_refused(tmp_path):
    with pytest.raises(ConfigError) as e:
        model((64,))
    assert str(e.value).startswith("data") and "(64,)" in str(e.value)
    np.savez(tmp_path / "v.npz", x=np.random.default_rng(0).random((20, 6), dtype=np.float32))
    with pytest.raises(ConfigError) as e:
        genlab.train("context-encoder", f"npz:{tmp_path / 'v.npz'}", out=tmp_path / "run", steps=1, device="cpu")
    assert "(6,)" in str(e.value)


@pytest.mark.parametrize("field,value", [("overlap_weight", -1.0), ("fill", "noise"), ("mask", "left")])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ConfigError) as e:
        model(**{field: value})
    assert field in str(e.value)


def test_adversarial_term_is_a_minimax_game_through_gradient_reversal():
    """D's parameters get dL_D; the encoder-decoder gets d(hole + w*context)/dθ - λ dL_D/dθ."""
    from genlab.models.autoencoders.context import reverse_grad

    torch.manual_seed(0)
    lam = 0.3
    m = genlab.create_model("context-encoder", shape=(1, 16, 16), channels=[8, 8], latent=16, adversarial=lam, fill="zero")
    assert genlab.create_model("context-encoder", shape=(1, 16, 16), channels=[8, 8], latent=16).disc is None
    x = torch.rand(6, 1, 16, 16)
    out = m.loss(x)
    gen = list(m.encoder.parameters()) + list(m.decoder.parameters())
    got_g = torch.autograd.grad(out["loss"], gen + list(m.disc.parameters()))
    # the same quantities without the reversal layer, by hand
    hole = m.mask(x, train=False)
    pred = m.predict(x, hole)
    sq = (pred - x) ** 2
    rec = (sq * hole).flatten(1).sum(1).mean() + m.config.overlap_weight * (sq * ~hole).flatten(1).sum(1).mean()
    comp = torch.where(hole, pred, x)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    d_real, d_fake = m.disc(x).flatten(), m.disc(comp).flatten()
    l_d = bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake))
    torch.testing.assert_close(out["adv_d"], l_d)
    want_g = [a - lam * b for a, b in zip(torch.autograd.grad(rec, gen, retain_graph=True),
                                           torch.autograd.grad(l_d, gen, retain_graph=True))]
    want_d = torch.autograd.grad(l_d, list(m.disc.parameters()))
    for a, b in zip(got_g, want_g + list(want_d)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    v = torch.randn(3, requires_grad=True)
    (reverse_grad(v, 2.0) * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    torch.testing.assert_close(v.grad, torch.tensor([-2.0, -4.0, -6.0]))
