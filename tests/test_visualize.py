"""genlab.style.visualize and `genlab visualize`: activation maximisation from noise with jitter,
blur and clamping. Untrained ResNet-18 at 32-48 px and 20 Adam steps keep it fast; the
activations are checked with the hooks of ``genlab.transfer.inspect``, independently of the
``FeatureExtractor`` the code under test uses."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from genlab.cli import main
from genlab.errors import GenlabError
from genlab.style.visualize import gaussian_blur, roll, visualize_filter, visualize_layer
from genlab.transfer.backbones import build_backbone
from genlab.transfer.inspect import feature_maps, normalise


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    return build_backbone("resnet18", 1000, "none")


def _cli(capsys, *argv):
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    return (rc, *capsys.readouterr())


def _mean_act(bb, images, layer, channel):
    """Each image's mean activation of ``channel`` of ``layer``, by inspect's forward hooks."""
    return feature_maps(bb, normalise(bb, images), [layer])[layer][:, channel].mean(dim=(-2, -1))


# --- the regularisers -----------------------------------------------------------------------
def test_roll_is_exact_and_its_gradient_rolls_back():
    x = torch.arange(2 * 3 * 5 * 7, dtype=torch.float64).view(2, 3, 5, 7)
    dy, dx = 2, -3
    r = roll(x, dy, dx)
    for i in range(5):
        for j in range(7):
            assert torch.equal(r[..., (i + dy) % 5, (j + dx) % 7], x[..., i, j])
    assert torch.equal(roll(r, -dy, -dx), x)
    assert torch.equal(roll(x, 5, 7), x) and torch.equal(roll(x, 0, 0), x)
    # the gradient through the roll is the weights rolled back: "roll, step, roll back"
    w = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    v = x.clone().requires_grad_(True)
    (roll(v, dy, dx) * w).sum().backward()
    assert torch.equal(v.grad, roll(w, -dy, -dx))


def test_blur_preserves_the_mean_and_matches_scipy():
    from scipy.ndimage import gaussian_filter

    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 20, 17, generator=g, dtype=torch.float64)
    for sigma in (0.5, 1.5, 4.0, 12.0):  # 12: the kernel is wider than the image, cut to it
        b = gaussian_blur(x, sigma)
        assert b.shape == x.shape
        torch.testing.assert_close(b.mean(dim=(-2, -1)), x.mean(dim=(-2, -1)), rtol=0, atol=1e-12)
        assert float(b.var()) < float(x.var())
    # scipy's Gaussian with wrap-around borders and the same radius (int(3 sigma + 0.5) = ceil(3 sigma) here)
    want = gaussian_filter(x.numpy(), sigma=(0, 0, 1.5, 1.5), mode="wrap", truncate=3.0)
    np.testing.assert_allclose(gaussian_blur(x, 1.5).numpy(), want, rtol=0, atol=1e-12)
    const = torch.full((1, 3, 9, 9), 0.3, dtype=torch.float64)
    torch.testing.assert_close(gaussian_blur(const, 2.0), const)
    assert gaussian_blur(x, 0) is x


# --- activation maximisation ----------------------------------------------------------------
def test_the_target_activation_rises_from_the_noise(resnet18):
    img, h = visualize_filter(resnet18, "layer2", 3, size=48, steps=20, seed=0, device="cpu")
    assert img.shape == (1, 3, 48, 48) and 0 <= float(img.min()) and float(img.max()) <= 1
    assert len(h["activation"]) == h["steps"] == 20
    end = float(_mean_act(resnet18, img, "layer2", 3)[0])
    assert end == pytest.approx(h["end"], rel=1e-4, abs=1e-5)  # reported = measured independently
    # the initial noise of seed 0 (grey 0.5 + N(0, 0.02^2)), and fresh noise of another seed
    g = torch.Generator().manual_seed(0)
    x0 = (0.5 + 0.02 * torch.randn((1, 3, 48, 48), generator=g)).clamp(0, 1)
    start = float(_mean_act(resnet18, x0, "layer2", 3)[0])
    assert start == pytest.approx(h["start"], rel=1e-4, abs=1e-5)
    other = (0.5 + 0.02 * torch.randn((4, 3, 48, 48), generator=torch.Generator().manual_seed(7))).clamp(0, 1)
    assert end > start + 1.0
    assert end > float(_mean_act(resnet18, other, "layer2", 3).max()) + 1.0
    assert h["activation"][-1] > h["activation"][0]


def test_a_layer_grid_is_one_batch_with_every_filter_raised(resnet18):
    imgs, h = visualize_layer(resnet18, "layer1", 4, size=32, steps=20, device="cpu")
    assert imgs.shape == (4, 3, 32, 32) and h["filters"] == [0, 1, 2, 3]
    acts = feature_maps(resnet18, normalise(resnet18, imgs), ["layer1"])["layer1"].mean(dim=(-2, -1))
    ends = [float(acts[i, i]) for i in range(4)]  # image i, its own channel i
    assert ends == pytest.approx(h["end"], rel=1e-4, abs=1e-5)
    assert all(e > s for e, s in zip(h["end"], h["start"]))


def test_blur_every_step_smooths_the_result(resnet18):
    def tv(x):
        return float((x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean())

    sharp, _ = visualize_filter(resnet18, "layer1", 0, size=32, steps=10, blur_every=0, device="cpu")
    smooth, _ = visualize_filter(resnet18, "layer1", 0, size=32, steps=10, blur_every=1, blur_sigma=1.5,
                                 device="cpu")
    assert tv(smooth) < 0.7 * tv(sharp)


def test_bad_layer_and_filter_are_genlab_errors(resnet18):
    with pytest.raises(GenlabError, match="unknown layer 'layer9'"):
        visualize_filter(resnet18, "layer9", 0, size=32, steps=1)
    with pytest.raises(GenlabError, match="filter 64: layer 'layer1' of resnet18 has 64 channels"):
        visualize_filter(resnet18, "layer1", 64, size=32, steps=1)
    with pytest.raises(GenlabError, match="size"):
        visualize_filter(resnet18, "layer1", 0, size=8, steps=1)


# --- the command ----------------------------------------------------------------------------
def test_cli_writes_a_png_of_the_right_size(tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "f.png"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc, stdout, err = _cli(capsys, "visualize", "--backbone", "resnet18", "--random-weights", "--layer", "layer1",
                               "--filter", 5, "--size", 40, "--steps", 5, "--out", out)
    assert rc == 0, err
    assert stdout.split() == [str(out)]
    assert Image.open(out).size == (40, 40)
    assert "mean activation" in err and "->" in err and "untrained" in err
    grid = tmp_path / "g.png"
    rc, stdout, err = _cli(capsys, "visualize", "--backbone", "resnet18", "--random-weights", "--layer", "layer1",
                           "--filters", 4, "--size", 32, "--steps", 3, "--out", grid)
    assert rc == 0, err
    assert Image.open(grid).size == (2 * 33 + 1, 2 * 33 + 1)  # 2 x 2 tiles, 1 px between and around
    assert not list(tmp_path.glob(".*.tmp"))


def test_cli_bad_layer_is_one_line_exit_2(tmp_path, capsys):
    rc, stdout, err = _cli(capsys, "visualize", "--backbone", "vgg16", "--random-weights", "--layer", "block3_conv7",
                           "--out", tmp_path / "o.png")
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1, err
    assert "error" in lines[0] and "unknown layer 'block3_conv7'" in lines[0]
    assert stdout == "" and not (tmp_path / "o.png").exists()
