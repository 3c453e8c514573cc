"""`genlab inspect`: first-layer filters and feature maps, each checked against a computation done
by hand here (the layers called one by one, the weights normalised with numpy)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from genlab.cli import main
from genlab.errors import GenlabError
from genlab.transfer.backbones import build_backbone
from genlab.transfer.inspect import (channel_maps, feature_maps, first_layer_filters, list_layers,
                                     resolve_layers)


@pytest.fixture(scope="module")
def r18():
    torch.manual_seed(0)
    return build_backbone("resnet18", 10, weights="none")


@pytest.fixture
def img_file(tmp_path):
    rng = np.random.default_rng(0)
    p = tmp_path / "img.png"
    Image.fromarray((rng.random((30, 40, 3)) * 255).astype(np.uint8)).save(p)
    return p


def run_cli(capsys, *argv):
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    return (rc, *capsys.readouterr())


def assert_one_line_error(rc, err, *needles):
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0], err
    for n in needles:
        assert str(n) in lines[0], (n, lines[0])


# --- the API ----------------------------------------------------------------------------------
def test_feature_maps_equal_the_layers_called_by_hand(r18):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 32, 32)
    net = r18.net
    r18.train()  # feature_maps must switch to eval mode itself (BatchNorm's running statistics)
    maps = feature_maps(r18, x, ["layer1", "layer2.0.conv1", "stem"])
    assert r18.training  # ... and give the mode back
    r18.eval()
    with torch.no_grad():
        stem = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        l1 = net.layer1(stem)
        c = net.layer2[0].conv1(l1)
    r18.train()
    assert list(maps) == ["layer1", "layer2.0.conv1", "stem"]
    assert maps["stem"].shape == (2, 64, 8, 8) and maps["layer2.0.conv1"].shape == (2, 128, 4, 4)
    torch.testing.assert_close(maps["stem"], stem)
    torch.testing.assert_close(maps["layer1"], l1)
    torch.testing.assert_close(maps["layer2.0.conv1"], c)


def test_resolve_layers_stages_modules_and_unknown_names(r18):
    got = resolve_layers(r18, ["stem", "layer3", "layer2.0.conv1"])
    assert [n for n, _ in got] == ["stem", "layer3", "layer2.0.conv1"]
    assert got[0][1] is r18.net.maxpool and got[1][1] is r18.net.layer3 and got[2][1] is r18.net.layer2[0].conv1
    with pytest.raises(GenlabError, match=r"unknown layer 'layr2'.*did you mean 'layer2'"):
        resolve_layers(r18, ["layr2"])
    lines = list_layers(r18)
    assert lines[0].split()[0] == "stem" and "stage:" in lines[0]
    assert any(ln.split() == ["layer4.1.conv2", "Conv2d"] for ln in lines)


def test_first_layer_filters_normalised_per_filter(r18):
    f = first_layer_filters(r18)
    assert f.shape == (64, 3, 7, 7)
    flat = f.flatten(1)
    torch.testing.assert_close(flat.min(1).values, torch.zeros(64))
    torch.testing.assert_close(flat.max(1).values, torch.ones(64))
    # filter 5 is a - with positive slope - affine map of its raw weights (fitted by least squares)
    w = r18.net.conv1.weight.detach()[5].flatten().double().numpy()
    slope, icpt = np.polyfit(w, f[5].flatten().double().numpy(), 1)
    assert slope > 0
    np.testing.assert_allclose(slope * w + icpt, f[5].flatten().double().numpy(), atol=1e-6)
    np.testing.assert_allclose(slope, 1 / (w.max() - w.min()), rtol=1e-5)


def test_channel_maps_vectors_and_constant_channels():
    act = torch.zeros(3, 4, 4)
    act[1] = torch.arange(16.0).view(4, 4)
    m = channel_maps("x", act, 16)
    assert m.shape == (3, 1, 4, 4) and m[0].eq(0).all() and m[1].max() == 1 and m[1].min() == 0
    v = channel_maps("fc", torch.tensor([2.0, 4.0, 3.0]), 2)  # a vector: normalised together
    assert v.flatten().tolist() == [0.0, 1.0]


# --- the command ------------------------------------------------------------------------------
def test_cli_backbone_writes_filters_input_and_feature_maps(tmp_path, img_file, capsys):
    from genlab.data.files import read_square

    out = tmp_path / "d"
    torch.manual_seed(3)
    rc, stdout, err = run_cli(capsys, "inspect", "--backbone", "resnet18", "--weights", "none", img_file,
                              "--layers", "layer1,stem", "--panel", "--out", out)
    assert rc == 0, err
    names = ["filters.png", "input.png", "features-layer1.png", "features-stem.png", "panel.png"]
    assert stdout.split() == [str(out / n) for n in names]
    size = {n: Image.open(out / n).size for n in names}
    assert size["filters.png"] == (8 * (49 + 1) + 1,) * 2  # 64 filters, 7x7 enlarged 7 times, 1 px gaps
    assert size["input.png"] == (224, 224)
    assert size["features-layer1.png"] == size["features-stem.png"] == (4 * (56 + 1) + 1,) * 2  # 16 maps 56x56
    assert Image.open(out / "panel.png").size[0] > 800 and Image.open(out / "filters.png").mode == "RGB"
    # the first tile of features-stem.png is channel 0 of the stem's output, min-max normalised
    torch.manual_seed(3)
    bb = build_backbone("resnet18", 1000, "none").eval()
    x = torch.from_numpy(read_square(img_file, 224, "RGB").copy()).float()[None] / 255
    x = (x - torch.tensor(bb.mean).view(1, 3, 1, 1)) / torch.tensor(bb.std).view(1, 3, 1, 1)
    with torch.no_grad():
        a = bb.net.maxpool(bb.net.relu(bb.net.bn1(bb.net.conv1(x))))[0, 0].numpy()
    want = (a - a.min()) / (a.max() - a.min()) * 255
    tile = np.asarray(Image.open(out / "features-stem.png").convert("L"), dtype=float)[1:57, 1:57]
    assert np.abs(tile - want).max() <= 1.0


def test_cli_list_layers_and_errors(tmp_path, img_file, capsys):
    rc, stdout, _ = run_cli(capsys, "inspect", "--backbone", "resnet18", "--list-layers")
    assert rc == 0
    lines = stdout.splitlines()
    assert lines[0].startswith("stem") and any(ln.startswith("layer4.1.conv2 ") for ln in lines)

    out = tmp_path / "d"
    rc, _, err = run_cli(capsys, "inspect", "--backbone", "resnet18", "--weights", "none", img_file,
                         "--layers", "layer1,layer9", "--out", out)
    assert_one_line_error(rc, err, "layer9", "did you mean")
    assert not out.exists()  # nothing written before the names are checked
    rc, _, err = run_cli(capsys, "inspect", "--backbone", "resnet18", "--weights", "none", tmp_path / "no.png",
                         "--out", out)
    assert_one_line_error(rc, err, "no.png")
    rc, _, err = run_cli(capsys, "inspect", "--out", out)
    assert_one_line_error(rc, err, "RUN_DIR", "--backbone")
    rc, _, err = run_cli(capsys, "inspect", tmp_path, img_file, "--backbone", "resnet18", "--out", out)
    assert_one_line_error(rc, err, "not both")
    rc, _, err = run_cli(capsys, "inspect", "--backbone", "small-cnn", "--out", out)
    assert_one_line_error(rc, err, "small-cnn", "no pretrained weights")


def test_cli_classifier_run(tmp_path, capsys):
    import genlab

    run = genlab.train("classifier", "digits", out=tmp_path / "r", steps=5, device="cpu",
                       set={"backbone": "small-cnn", "weights": "none", "strategy": "finetune"})
    img = tmp_path / "digit.png"
    Image.fromarray((np.arange(64).reshape(8, 8) * 4).astype(np.uint8)).save(img)
    out = tmp_path / "d"
    rc, stdout, err = run_cli(capsys, "inspect", run.path, img, "--channels", "9", "--out", out)
    assert rc == 0, err
    assert stdout.split() == [str(out / n) for n in
                              ("filters.png", "input.png", "features-conv.png", "features-dense.png")]
    f = np.asarray(Image.open(out / "filters.png").convert("RGB"))  # one input channel: grey filters
    assert (f[..., 0] == f[..., 1]).all() and (f[..., 1] == f[..., 2]).all()
    assert Image.open(out / "input.png").size == (8 * 4,) * 2  # the 8x8 digit, enlarged 4 times
    # conv: 32 maps of 12x12 (28 px input), 9 shown, enlarged 4 times; dense: 9 values as 1x1 maps
    assert Image.open(out / "features-conv.png").size == (3 * (48 + 1) + 1,) * 2
    assert Image.open(out / "features-dense.png").size == (3 * (48 + 1) + 1,) * 2
    rc, stdout, _ = run_cli(capsys, "inspect", run.path, "--list-layers")
    assert rc == 0 and stdout.splitlines()[0].split()[:2] == ["conv", "stage:"]
