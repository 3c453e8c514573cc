"""genlab.style: layer names, losses, the early-stopping extractor, the optimisation loop, colour
preservation, multi-scale and the `genlab stylize` command. Untrained networks and 32 px images
keep it fast; every expected value is computed here independently of the code under test."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genlab.errors import GenlabError
from genlab.style import (FeatureExtractor, content_loss, gram, optimize_input, rgb_to_yiq, style_loss, stylize,
                          tv_loss, use_avg_pool, vgg_layer_names)
from genlab.transfer.backbones import build_backbone


@pytest.fixture(scope="module")
def vgg16():
    torch.manual_seed(0)
    return build_backbone("vgg16", 1000, "none")


def _features_only(name: str):
    """A random VGG whose ``features`` are real and whose classifier stays on the meta device (never
    allocated, and any attempt to run it would fail): quick to build, and proof the extractor
    never reaches it."""
    with torch.device("meta"):
        bb = build_backbone(name, 1000, "none")
    bb.net.features.to_empty(device="cpu")
    g = torch.Generator().manual_seed(1)
    for m in bb.net.features:
        if isinstance(m, nn.Conv2d):
            m.weight.data.normal_(0, (2 / (9 * m.in_channels)) ** 0.5, generator=g)
            m.bias.data.normal_(0, 0.1, generator=g)
    return bb


def _input(bb, x):
    return (x - torch.tensor(bb.mean).view(1, 3, 1, 1)) / torch.tensor(bb.std).view(1, 3, 1, 1)


def _images(h=32, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, h, w, generator=g), torch.rand(1, 3, h, w, generator=g)


# --- layer names ----------------------------------------------------------------------------
def test_keras_and_gatys_names_on_vgg16(vgg16):
    names = vgg_layer_names(vgg16.net)
    assert names["block2_conv2"] == names["relu2_2"] == "features.8" and names["conv2_2"] == "features.7"
    assert names["block5_conv3"] == "features.29" and names["block1_pool"] == "features.4"
    x = torch.rand(1, 3, 32, 32)
    ext = FeatureExtractor(vgg16, ["block2_conv2", "conv2_2", "block5_conv3"])
    with torch.no_grad():
        got = ext(x)
        h = _input(vgg16, x)
        conv22 = vgg16.net.features[:8](h)  # conv1_1 ... pool1, conv2_1, relu, conv2_2
        assert isinstance(vgg16.net.features[7], nn.Conv2d)
        torch.testing.assert_close(got["conv2_2"], conv22)  # the conv output, not overwritten by its ReLU
        torch.testing.assert_close(got["block2_conv2"], F.relu(conv22))
        torch.testing.assert_close(got["block5_conv3"], F.relu(vgg16.net.features[:29](h)))
    ext.remove()


def test_gatys_names_on_vgg19():
    bb = _features_only("vgg19")
    names = vgg_layer_names(bb.net)
    assert names["conv4_2"] == "features.21" and names["relu4_2"] == "features.22"
    assert names["block5_conv4"] == "features.35" and names["conv5_4"] == "features.34"
    assert names["conv1_1"] == "features.0"
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        got = FeatureExtractor(bb, ["conv4_2", "relu4_2"])(x)
        conv42 = bb.net.features[:22](_input(bb, x))
        assert isinstance(bb.net.features[21], nn.Conv2d)
        torch.testing.assert_close(got["conv4_2"], conv42)
        torch.testing.assert_close(got["relu4_2"], F.relu(conv42))


def test_average_pooling_swap_changes_the_pooling_only():
    bb = _features_only("vgg19")
    before = [(n, type(m), m) for n, m in bb.net.features.named_children()]
    params = {n: p for n, p in bb.net.features.named_parameters()}
    assert use_avg_pool(bb.net.features) == 5
    after = dict(bb.net.features.named_children())
    for n, t, m in before:
        if t is nn.MaxPool2d:
            assert isinstance(after[n], nn.AvgPool2d)
            assert (after[n].kernel_size, after[n].stride) == (m.kernel_size, m.stride)
        else:
            assert after[n] is m
    assert all(p is params[n] for n, p in bb.net.features.named_parameters())
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():  # pool1 is now a 2x2 mean
        got = FeatureExtractor(bb, ["pool1"])(x)["pool1"]
        torch.testing.assert_close(got, F.avg_pool2d(bb.net.features[:4](_input(bb, x)), 2))


def test_unknown_layer_suggests_a_name(vgg16):
    with pytest.raises(GenlabError, match=r"unknown layer 'block2_conv9'.*did you mean 'block2_conv2'"):
        FeatureExtractor(vgg16, ["block2_conv9"])


def test_extractor_stops_after_the_last_layer(vgg16):
    calls = {"features.8": 0, "features.10": 0, "classifier.0": 0}
    handles = [vgg16.net.get_submodule(n).register_forward_hook(
        lambda *_, n=n: calls.__setitem__(n, calls[n] + 1)) for n in calls]
    ext = FeatureExtractor(vgg16, ["block1_conv2", "block2_conv2"])
    try:
        out = ext(torch.rand(1, 3, 32, 32))
        assert list(out) == ["block1_conv2", "block2_conv2"] and out["block2_conv2"].shape == (1, 128, 16, 16)
        ext(torch.rand(1, 3, 32, 32), ["block1_conv2"])  # a subset stops even earlier
    finally:
        for h in handles:
            h.remove()
        ext.remove()
    assert calls == {"features.8": 1, "features.10": 0, "classifier.0": 0}


# --- losses -------------------------------------------------------------------------------
def test_gram_matches_numpy():
    f = torch.randn(2, 5, 4, 3, dtype=torch.float64)
    a = f.numpy().reshape(2, 5, 12)
    expected = np.einsum("nci,ndi->ncd", a, a) / (5 * 4 * 3)
    np.testing.assert_allclose(gram(f).numpy(), expected, rtol=1e-12)


def test_style_and_content_losses_by_hand():
    f, p = torch.randn(1, 4, 3, 3), torch.randn(1, 4, 3, 3)
    assert float(style_loss([gram(f)], [gram(f.clone())], [1.0])) == 0.0
    g1, g2 = gram(f), gram(p)
    expected = 0.3 * float(((g1 - g2) ** 2).sum()) / 16 + 0.7 * 0.0
    assert float(style_loss([g1, g1], [g2, g1], [0.3, 0.7])) == pytest.approx(expected, rel=1e-6)
    d = (f - p).numpy()
    assert float(content_loss(f, p)) == pytest.approx(0.5 * float((d ** 2).sum()), rel=1e-6)
    assert float(content_loss(f, p, normalize=True)) == pytest.approx(0.5 * float((d ** 2).mean()), rel=1e-6)


def test_tv_loss_on_a_ramp():
    h, w, a, b = 5, 7, 0.1, 0.03
    i, j = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    x = (a * j + b * i).expand(1, 3, h, w)
    expected = 3 * (a ** 2 * h * (w - 1) + b ** 2 * (h - 1) * w)
    assert float(tv_loss(x)) == pytest.approx(expected, rel=1e-12)
    assert float(tv_loss(x, "mean")) == pytest.approx(expected / (3 * h * w), rel=1e-12)


# --- optimisation ---------------------------------------------------------------------------
def test_optimize_input_clamps_and_stops():
    target = torch.tensor([2.0, -1.0, 0.5])
    for opt in ("lbfgs", "adam"):
        res = optimize_input(torch.zeros(3), lambda x: (((x - target) ** 2).sum(), {}), steps=200, optimizer=opt,
                             lr=0.05 if opt == "adam" else None, clamp=(0.0, 1.0))
        torch.testing.assert_close(res.x, torch.tensor([1.0, 0.0, 0.5]), atol=2e-3, rtol=0)
        assert len(res.history["total"]) == res.evaluations <= 200
    res = optimize_input(torch.zeros(3), lambda x: (((x - target) ** 2).sum(), {}), steps=50, optimizer="adam",
                         callback=lambda i, x, parts: i == 4)
    assert res.evaluations == 5


def test_lbfgs_does_not_depend_on_the_loss_scale():
    diag, target = torch.logspace(0, 2, 50, dtype=torch.float64), torch.linspace(-1, 1, 50, dtype=torch.float64)
    runs = [optimize_input(torch.zeros(50, dtype=torch.float64),
                           lambda x, c=c: (c * (diag * (x - target) ** 2).sum(), {}), steps=30).history["total"]
            for c in (1.0, 1e-8)]
    np.testing.assert_allclose(np.array(runs[1]) / 1e-8, runs[0], rtol=1e-6)
    assert runs[0][-1] < 1e-5 * runs[0][0]


@pytest.mark.parametrize("optimizer,steps", [("adam", 20), ("lbfgs", 10)])
def test_stylize_lowers_the_loss(vgg16, optimizer, steps):
    c, s = _images()
    img, h = stylize(c, s, backbone=vgg16, optimizer=optimizer, steps=steps, init="content")
    assert img.shape == (1, 3, 32, 32) and 0 <= float(img.min()) and float(img.max()) <= 1
    assert len(h["total"]) == h["evaluations"] == steps
    assert h["content"][0] == 0.0  # init=content: no content loss at the start
    assert h["final"]["total"] < h["total"][0] and h["total"][-1] < h["total"][0]
    for i in range(steps):
        assert h["total"][i] == pytest.approx(h["content"][i] + h["style"][i] + h["tv"][i], rel=1e-5)


def test_preserve_color_keeps_the_content_chroma(vgg16):
    c, s = _images(seed=3)
    img, _ = stylize(c, s, backbone=vgg16, steps=4, preserve_color=True, init="noise", style_weight=1e8)
    assert not torch.allclose(img, c, atol=1e-3)  # the luminance did change
    yiq_r, yiq_c = rgb_to_yiq(img.double()), rgb_to_yiq(c.double())
    assert float((yiq_r[:, 1:] - yiq_c[:, 1:]).abs().max()) < 1e-5
    assert 0 <= float(img.min()) and float(img.max()) <= 1


def test_two_scales_give_the_requested_size(vgg16):
    c, s = torch.rand(1, 3, 40, 60), torch.rand(1, 3, 25, 25)
    img, h = stylize(c, s, backbone=vgg16, steps=2, scales=2, size=48)
    assert img.shape == (1, 3, 32, 48)
    assert h["sizes"] == [[16, 24], [32, 48]] and h["scale_starts"] == [0, 2] and h["evaluations"] == 4


def test_untrained_weights_need_the_explicit_flag():
    with pytest.raises(GenlabError, match="random_weights"):
        stylize(*_images(), weights="none", steps=1)


# --- command line ---------------------------------------------------------------------------
def _pngs(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for name, shape in (("c.png", (40, 48, 3)), ("s.png", (30, 30, 3))):
        Image.fromarray((rng.random(shape) * 255).astype(np.uint8)).save(tmp_path / name)
        paths.append(tmp_path / name)
    return paths


def _cli(capsys, *argv):
    from genlab.cli import main

    capsys.readouterr()
    rc = main([str(a) for a in argv])
    return (rc, *capsys.readouterr())


def test_cli_stylize_writes_three_files(tmp_path, capsys):
    from PIL import Image

    c, s = _pngs(tmp_path)
    out = tmp_path / "o.png"
    rc, stdout, err = _cli(capsys, "stylize", c, s, "--out", out, "--preset", "lectures", "--random-weights",
                           "--size", 32, "--steps", 3)
    assert rc == 0, err
    files = [out, tmp_path / "o-loss.png", tmp_path / "o-panel.png"]
    assert stdout.split() == [str(f) for f in files]
    assert Image.open(out).size == (32, 27)  # 48x40 with the longer side at 32
    assert Image.open(files[2]).height == 27 and all(f.stat().st_size > 0 for f in files)
    assert "meaningless" in err and "s/iteration" in err and "final loss" in err
    assert not list(tmp_path.glob(".*.tmp"))


def test_cli_stylize_missing_weights_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    c, s = _pngs(tmp_path)
    rc, _, err = _cli(capsys, "stylize", c, s, "--out", tmp_path / "o.png", "--size", 32, "--steps", 3)
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "vgg16-397923af.pth" in err and "--weights" in err and "--download" in err and "--preset lite0" in err
    assert not (tmp_path / "o.png").exists()


def test_cli_stylize_unknown_layer(tmp_path, capsys):
    c, s = _pngs(tmp_path)
    rc, _, err = _cli(capsys, "stylize", c, s, "--out", tmp_path / "o.png", "--random-weights", "--size", 32,
                      "--steps", 1, "--style-layers", "block1_conv2,block3_conv7")
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "error" in err and "unknown layer 'block3_conv7'" in err and "did you mean 'block3_conv" in err
