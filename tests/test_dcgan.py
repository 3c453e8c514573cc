"""dcgan, cgan and cdcgan: the DCGAN geometry at 28/32/64 px for every up-sampling kind, the
parameter count of the pytorch example, the output mapping, Goodfellow's k-step schedule, the
projection discriminator against its formula, conditional sampling, training, exact resume,
and errors that name the field."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import genlab
from genlab.errors import ConfigError
from genlab.models import create_model
from genlab.nn.upsample import Upsample2x
from genlab.train.engine import TrainConfig, Updater

TINY = {"g_width": 8, "d_width": 8, "latent": 16}


pytestmark = pytest.mark.usefixtures("one_thread")


def _model(name="dcgan", shape=(1, 28, 28), value_range=(0.0, 1.0), **kw):
    torch.manual_seed(0)
    return create_model(name, shape=shape, value_range=value_range, **{**(TINY if name != "cgan" else {}), **kw})


# ------------------------------------------------------------------------------ geometry
@pytest.mark.parametrize("upsample", ["transposed", "pixelshuffle", "resize"])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size,base,steps", [(28, 7, 2), (32, 4, 3), (64, 4, 4)])
def test_generator_and_discriminator_geometry(size, base, steps, channels, upsample):
    m = _model(shape=(channels, size, size), upsample=upsample)
    z = torch.randn(3, 16)
    first = m.generator.net[0](z[:, :, None, None])
    assert first.shape == (3, 8 * 2 ** (steps - 1), base, base)  # g_width * 2^(steps-1) channels at base x base
    ups = [u for u in m.generator.modules() if isinstance(u, Upsample2x)]
    assert len(ups) == steps and all(u.kind == upsample for u in ups)
    x = m.sample(5, generator=torch.Generator().manual_seed(0))
    assert x.shape == (5, channels, size, size) and x.is_contiguous()
    convs = [c for c in m.discriminator.features if isinstance(c, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8 * 2 ** i for i in range(steps)]
    assert m.discriminator.phi(x).shape == (5, 8 * 2 ** (steps - 1), base, base)
    assert m.discriminator.head.kernel_size == (base, base)
    assert m.critic(x).shape == (5,)


def test_image_size_is_checked_against_the_data():
    assert _model(shape=(1, 32, 32), image_size=32).image_size == 32
    with pytest.raises(ConfigError, match=r"^image_size: 32 does not match the data's 28x28 images"):
        _model(shape=(1, 28, 28), image_size=32)
    for shape in [(1, 8, 8), (3, 32, 28), (1, 48, 48)]:
        with pytest.raises(ConfigError, match=rf"^image_size: dcgan makes square images of 28, 32 or 64 px, the data's images are {shape[1]}x{shape[2]}"):
            _model(shape=shape)
    with pytest.raises(ConfigError, match=r"^image_size: .*data has shape \(2,\)"):
        _model(shape=(2,))


def test_image_size_mismatch_through_train_names_image_size(tmp_path):
    with pytest.raises(ConfigError, match=r"^image_size: .*8x8"):
        genlab.train("dcgan", "digits", out=tmp_path / "r", steps=1, set=TINY)
    assert not (tmp_path / "r").exists()


def test_parameters_are_those_of_the_pytorch_example_plus_three_biases():
    """At 64 px the example's G has bias-free convolutions with BatchNorm (2 numbers per channel)
    between them; genlab adds a bias to G's output layer and to D's first and last layers."""
    nz, ngf, ndf, nc = 16, 4, 4, 3
    m = _model(shape=(nc, 64, 64), latent=nz, g_width=ngf, d_width=ndf)
    g_chain = [nz, 8 * ngf, 4 * ngf, 2 * ngf, ngf, nc]
    g_ref = sum(a * b * 16 for a, b in zip(g_chain, g_chain[1:])) + 2 * sum(g_chain[1:-1])
    d_chain = [nc, ndf, 2 * ndf, 4 * ndf, 8 * ndf, 1]
    d_ref = sum(a * b * 16 for a, b in zip(d_chain, d_chain[1:])) + 2 * sum(d_chain[2:-1])
    count = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    assert count(m.generator) == g_ref + nc
    assert count(m.discriminator) == d_ref + ndf + 1


def test_dcgan_initialisation():
    m = _model(shape=(1, 64, 64), g_width=16, d_width=16)
    big = m.generator.net[0].weight  # 16 x 128 x 4 x 4
    assert big.std().item() == pytest.approx(0.02, rel=0.05) and abs(big.mean().item()) < 1e-3
    bns = [b for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)]
    w = torch.cat([b.weight.detach() for b in bns])
    assert w.mean().item() == pytest.approx(1.0, abs=0.01) and w.std().item() == pytest.approx(0.02, rel=0.2)
    assert all(b.bias.abs().max() == 0 for b in bns)
    biased = [c for c in m.modules() if isinstance(c, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and c.bias is not None]
    assert len(biased) == 3 and all(c.bias.abs().max() == 0 for c in biased)


@pytest.mark.parametrize("value_range", [(0.0, 1.0), (-1.0, 1.0), (0.0, 255.0), (-3.0, 5.0)])
def test_output_is_sigmoid_on_unit_data_else_tanh_scaled_to_the_range(value_range):
    m = _model(shape=(3, 32, 32), value_range=value_range).eval()
    z = torch.randn(4, 16)
    raw = m.generator(z)
    lo, hi = value_range
    want = torch.sigmoid(raw) if value_range == (0.0, 1.0) else lo + (hi - lo) * (torch.tanh(raw) + 1) / 2
    torch.testing.assert_close(m.generate(z), want)
    x = m.sample(64, generator=torch.Generator().manual_seed(1))
    assert x.min() >= lo and x.max() <= hi


def test_pack_stacks_images_along_channels_and_mbstd_adds_one():
    m = _model(shape=(3, 28, 28), pack=4, mbstd=True)
    assert m.discriminator.features[0].in_channels == 12
    assert m.discriminator.head.in_channels == 2 * 8 + 1
    x = torch.rand(14, 3, 28, 28)
    assert m.critic(x).shape == (3,)  # 14 // 4 packs, the remainder dropped
    # the first pack is images 0..3 side by side: D of a pack only depends on its own images
    a = m.eval().critic(x[:4])
    x2 = x.clone()
    x2[5] = 0
    torch.testing.assert_close(m.critic(x2[:4]), a)


# ------------------------------------------------------------------------------ training
def test_k_discriminator_steps_per_generator_step():
    from test_gan import assert_k_step_pattern

    assert_k_step_pattern(_model(d_steps=3), torch.rand(8, 1, 28, 28), k=3)


def test_dcgan_defaults_are_the_papers_optimizer():
    m = _model()
    opts = m.make_optimizers(TrainConfig(lr=1e-3))
    for o in opts.values():
        assert o.param_groups[0]["lr"] == 2e-4 and o.param_groups[0]["betas"] == (0.5, 0.999)
    opts = _model(g_lr=0.0, d_lr=0.0).make_optimizers(TrainConfig(lr=1e-3))
    assert opts["g"].param_groups[0]["lr"] == 1e-3


def test_wgan_gp_step_through_the_conv_critic():
    m = _model(d_loss="wasserstein", gp=10.0, d_batchnorm=False, spectral_norm=True, ema=0.5)
    upd = Updater(m.make_optimizers(TrainConfig()), TrainConfig())
    logs = m.train_step(torch.rand(6, 1, 28, 28), None, upd, 0, 1)
    assert torch.isfinite(logs["gp"]) and logs["gp"] >= 0 and "g_loss" in logs
    assert not any(isinstance(b, torch.nn.BatchNorm2d) for b in m.discriminator.modules())


# ------------------------------------------------------------------------------ conditional
def test_projection_discriminator_equals_its_formula():
    """D(x, y) = psi(phi(x)) + <embed(y), phi(x)>, psi the final convolution over the whole map."""
    m = _model("cdcgan", shape=(1, 32, 32), classes=5).eval()
    d = m.discriminator
    with torch.no_grad():  # a non-zero bias and embedding, so that every term counts
        d.head.bias.fill_(0.3)
        d.embed.weight.normal_()
    x, y = torch.rand(6, 1, 32, 32), torch.tensor([0, 1, 2, 3, 4, 2])
    h = d.features(x).flatten(1)  # phi(x): 32 channels x 4 x 4
    psi = h @ d.head.weight.flatten() + d.head.bias
    want = psi + (d.embed.weight[y] * h).sum(1)
    torch.testing.assert_close(m.critic(x, y), want)
    # the label enters only through the inner product
    torch.testing.assert_close(m.critic(x, (y + 1) % 5) - m.critic(x, y),
                               ((d.embed.weight[(y + 1) % 5] - d.embed.weight[y]) * h).sum(1))


def test_concat_discriminator_sees_one_hot_label_channels():
    m = _model("cdcgan", shape=(3, 28, 28), classes=4, conditioning="concat").eval()
    d = m.discriminator
    assert d.features[0].in_channels == 3 + 4 and d.embed is None
    x, y = torch.rand(5, 3, 28, 28), torch.tensor([0, 3, 1, 2, 3])
    planes = F.one_hot(y, 4).float()[:, :, None, None].expand(-1, -1, 28, 28)
    want = d.head(d.features(torch.cat([x, planes], 1))).flatten()
    torch.testing.assert_close(m.critic(x, y), want)


@pytest.mark.parametrize("name,shape", [("cdcgan", (1, 28, 28)), ("cgan", (1, 4, 4))])
def test_conditional_samples_are_g_of_the_requested_labels(name, shape):
    kw = {"g_hidden": [16], "d_hidden": [16], "latent": 8} if name == "cgan" else {}
    m = _model(name, shape=shape, classes=3, **kw)
    x = m.sample_class(4, 2, generator=torch.Generator().manual_seed(5))
    z = torch.randn(4, m.latent, generator=torch.Generator().manual_seed(5))
    m.eval()
    zy = torch.cat([z, F.one_hot(torch.full((4,), 2), 3).float()], 1)
    raw = m.generator.net(zy[:, :, None, None] if name == "cdcgan" else zy)
    torch.testing.assert_close(x, m._out(raw).reshape(x.shape))
    assert not torch.allclose(m.sample_class(4, 0, generator=torch.Generator().manual_seed(5)), x)
    # uniform labels, drawn after the noise: the same images as asking for those labels
    x_u, y_u = m.sample_labeled(3000, generator=torch.Generator().manual_seed(7))
    counts = torch.bincount(y_u, minlength=3)
    assert counts.min() > 900 and counts.max() < 1100  # 1000 +- 3 std
    x_l = m.sample(3000, generator=torch.Generator().manual_seed(7), labels=y_u)
    torch.testing.assert_close(x_u, x_l)
    with pytest.raises(ConfigError, match="^classes:"):
        m.sample_class(2, 3)


def _halves_npz(tmp_path, n=240, labels=2, seed=0):
    """28x28 uint8 images: class c is bright in the c-th vertical stripe of `labels`, dark elsewhere."""
    r = np.random.default_rng(seed)
    y = np.arange(n) % labels
    x = r.integers(0, 40, size=(n, 28, 28))
    w = 28 // labels
    for i, c in enumerate(y):
        x[i, :, c * w:(c + 1) * w] += 200
    p = tmp_path / f"stripes{labels}.npz"
    np.savez(p, x=x.astype(np.uint8), y=y.astype(np.int64))
    return p


def test_cdcgan_trains_and_resumes_exactly(tmp_path):
    p = _halves_npz(tmp_path)
    kw = dict(batch_size=32, set={**TINY, "classes": 2, "train.checkpoint_every": 4, "train.log_every": 2})
    whole = genlab.train("cdcgan", f"npz:{p}", out=tmp_path / "whole", steps=8, **kw)
    genlab.train("cdcgan", f"npz:{p}", out=tmp_path / "part", steps=4, **kw)
    resumed = genlab.train(out=tmp_path / "part", resume=True, steps=8)
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    rec = [r for r in whole.metrics() if r.get("split") == "train"]
    assert rec and all(k in rec[-1] for k in ("d_loss", "g_loss", "d_real", "d_fake", "grad_norm_d", "grad_norm_g"))
    ev = whole.evaluate("test", sample_metrics=False)
    assert 0.0 <= ev["d_real"] <= 1.0


@pytest.mark.parametrize("conditioning", ["projection", "concat"])
def test_cdcgan_learns_to_draw_the_requested_class(tmp_path, conditioning):
    """Class 0 is bright on the left, class 1 on the right: after a short training the samples
    asked for each class are brighter on that class's side (a G that ignored its label could not
    pass for both classes; after 40 steps neither variant does yet)."""
    p = _halves_npz(tmp_path, n=512)
    run = genlab.train("cdcgan", f"npz:{p}", out=tmp_path / "r", steps=120, batch_size=64, evaluate_at_end=False,
                       set={**TINY, "classes": 2, "conditioning": conditioning, "train.checkpoint_every": 0})
    m = run.model
    for c in (0, 1):
        x = m.sample_class(64, c, generator=torch.Generator().manual_seed(c))
        left, right = x[..., :14].mean((1, 2, 3)), x[..., 14:].mean((1, 2, 3))
        own, other = (left, right) if c == 0 else (right, left)
        assert (own > other).float().mean() >= 0.9


def test_labels_beyond_classes_name_classes(tmp_path):
    p = _halves_npz(tmp_path, labels=4)
    with pytest.raises(ConfigError, match=r"^classes: the data has label 3, but classes=3"):
        genlab.train("cdcgan", f"npz:{p}", out=tmp_path / "r", steps=1, batch_size=240, set={**TINY, "classes": 3})
    m = _model("cdcgan", classes=3)
    upd = Updater(m.make_optimizers(TrainConfig()), TrainConfig())
    with pytest.raises(ConfigError, match=r"^classes: .*got -1"):
        m.train_step(torch.rand(2, 1, 28, 28), torch.tensor([0, -1]), upd, 0, 1)


def test_conditional_models_need_labelled_data(tmp_path):
    p = tmp_path / "nolabels.npz"
    np.savez(p, x=np.zeros((20, 28, 28), np.uint8))
    with pytest.raises(ConfigError, match="needs labels"):
        genlab.train("cdcgan", f"npz:{p}", out=tmp_path / "r", steps=1, set=TINY)


@pytest.mark.parametrize("name,kw,field", [
    ("dcgan", {"image_size": 30}, "image_size"),
    ("dcgan", {"g_width": 0}, "g_width"),
    ("dcgan", {"d_width": 0}, "d_width"),
    ("dcgan", {"latent": 0}, "latent"),
    ("dcgan", {"upsample": "bilinear"}, "upsample"),
    ("dcgan", {"beta1": 1.0}, "beta1"),
    ("dcgan", {"g_loss": "ml", "d_loss": "hinge"}, "g_loss"),
    ("cdcgan", {"classes": 0}, "classes"),
    ("cdcgan", {"conditioning": "film"}, "conditioning"),
    ("cdcgan", {"pack": 2}, "pack"),
    ("cdcgan", {"aux_weight": -1.0}, "aux_weight"),
    ("cdcgan", {"aux_weight": 1.0, "conditioning": "concat", "pack": 2}, "aux_weight"),
    ("cgan", {"classes": -1}, "classes"),
    ("cgan", {"d_steps": 0}, "d_steps"),
])
def test_bad_configs_name_the_field(name, kw, field):
    with pytest.raises(ConfigError, match=f"^model {name}.{field}:"):
        create_model(name, shape=(1, 28, 28), **kw)
    if kw == {"pack": 2}:  # packing works with label channels
        assert create_model(name, shape=(1, 28, 28), conditioning="concat", aux_weight=0.0, **TINY, **kw).critic(
            torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])).shape == (2,)


@pytest.mark.parametrize("name,shape,kw", [("gan", (1, 28, 28), {"g_hidden": [16], "d_hidden": [16]}),
                                           ("dcgan", (1, 28, 28), {}), ("cdcgan", (1, 28, 28), {})])
def test_reconstruct_leaves_the_global_rng_alone(name, shape, kw):
    """The sample grids at the end of a run call reconstruct; drawing from the global RNG there
    would shift the noise of a resumed run (the exact-resume test above fails without this)."""
    m = create_model(name, shape=shape, **{**(TINY if name != "gan" else {}), **kw})
    data = torch.rand(3, *shape)
    before = torch.get_rng_state()
    x = m.reconstruct(data)
    assert x.shape == (3, *shape) and torch.equal(torch.get_rng_state(), before)


def test_acgan_auxiliary_terms_are_cross_entropies_of_the_class_head():
    """aux_weight adds w * CE(class head on real images, labels) to D's loss and w * CE(class head
    on the samples, requested labels) to G's, against the same step without the head's terms."""
    import torch.nn.functional as F

    m = _model("cdcgan", classes=3, aux_weight=0.5)
    d = m.discriminator
    x, y = torch.rand(6, 1, 28, 28), torch.tensor([0, 1, 2, 2, 1, 0])
    got = {}
    torch.manual_seed(5)
    logs = m.train_step(x, y, lambda name, loss: got.setdefault(name, loss.detach()), 0, 1)
    # the same step by hand: the same noise, drawn in the same order
    torch.manual_seed(5)
    with torch.no_grad():
        fake = m.generate(torch.randn(6, m.latent), y=y)
        ce_real = F.cross_entropy(d.classify(d.phi(x, y)).flatten(1), y)
        ld = F.softplus(-d(x, y)).mean() + F.softplus(d(fake, y)).mean() + 0.5 * ce_real
        fake2 = m.generate(torch.randn(6, m.latent), y=y)
        ce_fake = F.cross_entropy(d.classify(d.phi(fake2, y)).flatten(1), y)
        lg = F.softplus(-d(fake2, y)).mean() + 0.5 * ce_fake
    assert logs["aux_d"].item() == pytest.approx(ce_real.item(), rel=1e-5)
    assert logs["aux_g"].item() == pytest.approx(ce_fake.item(), rel=1e-5)
    assert got["d"].item() == pytest.approx(ld.item(), rel=1e-5)
    assert got["g"].item() == pytest.approx(lg.item(), rel=1e-5)
    assert d.classify.out_channels == 3 and _model("cdcgan", classes=3, aux_weight=0.0).discriminator.classify is None
