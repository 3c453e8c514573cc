"""style-net (Johnson et al. 2016): the transformation network's shape and output range, the
perceptual loss recomputed by hand with genlab.style.nst's functions, the frozen loss network kept
out of the optimizer and the saved weights, reloading a run, and the command line. Untrained
(seeded) loss networks, 32 px images and narrow transformation networks keep it fast."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import genlab
from genlab.errors import GenlabError
from genlab.models import create_model
from genlab.style.features import FeatureExtractor
from genlab.style.net import TransformNet
from genlab.style.nst import PRESETS, build_style_backbone, content_loss, gram, load_image, style_loss, tv_loss

pytestmark = pytest.mark.filterwarnings("ignore:random weights")
SMALL = {"width": 8, "residual_blocks": 2, "random_weights": True}


def _png(path, h, w, seed):
    from PIL import Image

    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("style-net")
    photos = root / "photos"
    photos.mkdir()
    for i in range(6):
        _png(photos / f"{i}.png", 20 + 4 * i, 40 - 2 * i, i)
    return {"root": root, "photos": photos, "style": _png(root / "style.png", 24, 40, 99)}


@pytest.fixture(scope="module")
def trained(files):
    """A run trained 4 steps through genlab.train, with its own copy of the style image."""
    style = files["root"] / "style-copy.png"
    style.write_bytes(files["style"].read_bytes())
    run = genlab.train("style-net", f"folder:{files['photos']}", out=files["root"] / "run", steps=4, batch_size=2,
                       lr=1e-2, device="cpu", set={"style": str(style), **SMALL})
    return run, style


def _cli(capsys, *argv):
    from genlab.cli import main

    capsys.readouterr()
    rc = main([str(a) for a in argv])
    return (rc, *capsys.readouterr())


# --- the transformation network -----------------------------------------------------------------
@pytest.mark.parametrize("upsample", ["resize", "transposed"])
def test_network_keeps_the_size_and_the_unit_range(upsample):
    torch.manual_seed(0)
    net = TransformNet(width=8, blocks=5, upsample=upsample)
    norms = [m for m in net.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert len(norms) == 3 + 2 * 5 + 2 and all(m.affine for m in norms)  # every conv but the last
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert sum(isinstance(m, nn.ReflectionPad2d) for m in net.modules()) == 3 + 2 * 5 + (2 if upsample == "resize" else 0) + 1
    for h, w in ((32, 32), (36, 44), (37, 45)):
        x = torch.rand(2, 3, h, w) * 4 - 2  # far outside [0, 1]: the output is still inside
        with torch.no_grad():
            y = net(x)
        assert y.shape == (2, 3, h, w)
        assert float(y.min()) >= 0 and float(y.max()) <= 1


def test_paper_width_has_the_papers_size():
    net = TransformNet()  # width 32, 5 residual blocks: ~1.68M parameters as in Johnson et al.
    assert 1.6e6 < sum(p.numel() for p in net.parameters()) < 1.75e6


# --- the loss --------------------------------------------------------------------------------------
def test_loss_is_the_weighted_sum_recomputed_by_hand(files):
    cw, sw, tw = 2.0, 3e5, 0.5
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="random weights"):
        m = create_model("style-net", shape=(3, 32, 32), style=str(files["style"]), content_weight=cw,
                         style_weight=sw, tv_weight=tw, style_size=40, **SMALL)
        m.init_weights()
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    out = m.loss(x)

    p = PRESETS["lite0"]
    ext = FeatureExtractor(build_style_backbone("efficientnet_lite0", random_weights=True, seed=0),
                           list(p.content_layers + p.style_layers), pool=p.pool)
    with torch.no_grad():
        y = m.net(x)
        fy, fx = ext(y), ext(x)
        fs = ext(load_image(files["style"]))  # 24x40: the longer side is already style_size
        content = sum(content_loss(fy[n], fx[n], normalize=True) for n in p.content_layers)
        style = style_loss([gram(fy[n]) for n in p.style_layers], [gram(fs[n]) for n in p.style_layers],
                           list(p.style_layer_weights))
        tv = tv_loss(y, "mean")
    for key, want in (("content", cw * content), ("style", sw * style), ("tv", tw * tv)):
        torch.testing.assert_close(out[key], want, rtol=1e-5, atol=0)
        assert float(want) > 0
    torch.testing.assert_close(out["loss"].detach(), cw * content + sw * style + tw * tv, rtol=1e-5, atol=0)
    per = m.eval_batch(x)  # per image: their mean is the batch loss
    assert per["loss"].shape == (3,)
    for key in ("loss", "content", "style", "tv"):
        torch.testing.assert_close(per[key].mean(), out[key].detach(), rtol=1e-5, atol=0)


def test_loss_network_is_frozen_and_not_a_submodule(files):
    m = create_model("style-net", shape=(3, 32, 32), style=str(files["style"]), **SMALL)
    ext = m.loss_network()
    loss_params = list(ext.parameters())
    assert loss_params and not any(p.requires_grad for p in loss_params)
    assert not ext.backbone.training
    mine = {id(p) for p in m.parameters()}
    assert not any(id(p) in mine for p in loss_params)
    assert all(k.startswith("net.") for k in m.state_dict())
    m.loss(torch.rand(2, 3, 32, 32))["loss"].backward()
    assert all(p.grad is None for p in loss_params)
    assert all(p.grad is not None for p in m.parameters())


def test_adam_steps_on_one_image_lower_the_loss(files):
    torch.manual_seed(0)
    m = create_model("style-net", shape=(3, 32, 32), style=str(files["style"]), **SMALL)
    x = load_image(files["photos"] / "3.png")[..., :32, :32]
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    with torch.no_grad():
        before = float(m.loss(x)["loss"])
    for _ in range(30):
        opt.zero_grad()
        m.loss(x)["loss"].backward()
        opt.step()
    with torch.no_grad():
        after = float(m.loss(x)["loss"])
    assert after < before, (before, after)


def test_style_image_is_needed_to_train(files, tmp_path):
    with pytest.raises(GenlabError, match="no such file"):
        genlab.train("style-net", f"folder:{files['photos']}", out=tmp_path / "r", steps=1,
                     set={"style": str(tmp_path / "missing.jpg"), **SMALL})
    with pytest.raises(GenlabError, match="name the style image"):
        genlab.train("style-net", f"folder:{files['photos']}", out=tmp_path / "r", steps=1, set=SMALL)
    assert not (tmp_path / "r").exists()


# --- training through the engine, saving, reloading ------------------------------------------------
def test_training_updates_the_transformer_only(trained, files):
    run, _ = trained
    m = run.model
    torch.manual_seed(0)  # the run's seed: the same initial transformer
    m0 = create_model("style-net", shape=(3, 32, 32), style=str(files["style"]), **SMALL)
    before, after = m0.state_dict(), m.state_dict()
    assert before.keys() == after.keys()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert "net.tail.1.weight" in changed and len(changed) > 0.8 * len(before)
    fresh = build_style_backbone("efficientnet_lite0", random_weights=True, seed=0).state_dict()
    got = m.loss_network().backbone.state_dict()
    assert got.keys() == fresh.keys() and all(torch.equal(got[k], fresh[k]) for k in fresh)
    assert all(p.grad is None for p in m.loss_network().parameters())

    saved = load_file(str(run.path / "model.safetensors"))
    assert saved.keys() == after.keys()  # the transformer only, no loss network
    state = torch.load(run.path / "state.pt", weights_only=False)
    n_opt = sum(len(g["params"]) for g in state["optimizer"]["param_groups"])
    assert n_opt == len(list(m.parameters())) == len(list(m.net.parameters()))
    cfg = json.loads((run.path / "config.json").read_text())["model_config"]
    assert cfg["style"] == str(trained[1].resolve())
    # lite0: the preset's content and tv weights, the network's own style weight (stylize: 1e6), written out
    assert (cfg["content_weight"], cfg["style_weight"], cfg["tv_weight"]) == (1.0, 2e5, 10.0)
    ev = json.loads((run.path / "eval.json").read_text())
    assert ev["loss"] > 0 and ev["n"] == 2
    metrics = [r for r in run.metrics() if r.get("split") == "train"]
    assert metrics and {"loss", "content", "style", "tv"} <= metrics[-1].keys()


def test_reloaded_run_stylises_like_the_trained_model_without_the_style_image(trained):
    run, style = trained
    x = torch.rand(1, 3, 37, 45, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        want = run.model(x)
    style.unlink(missing_ok=True)  # neither the style image nor the loss network is needed to stylise
    again = genlab.load_run(run.path).model
    with torch.no_grad():
        got = again(x)
    assert got.shape == (1, 3, 37, 45)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert again._loss is None


# --- data -------------------------------------------------------------------------------------------
def test_flat_folder_is_one_class(files):
    from genlab.data import DataConfig, load_data

    ds = load_data(DataConfig(name=f"folder:{files['photos']}", image_size=16))
    assert ds.shape == (3, 16, 16) and ds.classes == ["photos"]
    assert len(ds.train) + len(ds.test) == 6 and set(ds.train.y.tolist()) == {0}


# --- command line -----------------------------------------------------------------------------------
def test_cli_stylize_net_keeps_the_input_size(trained, tmp_path, capsys):
    from PIL import Image

    run, _ = trained
    img = _png(tmp_path / "img.png", 37, 45, 7)
    out = tmp_path / "o.png"
    rc, stdout, err = _cli(capsys, "stylize", "--net", run.path, img, "--out", out, "--device", "cpu")
    assert rc == 0, err
    assert stdout.split() == [str(out)] and "ms" in err and "45x37" in err
    assert Image.open(out).size == (45, 37) and Image.open(out).mode == "RGB"
    assert not list(tmp_path.glob(".*.tmp"))

    two = _png(tmp_path / "two.jpg", 20, 30, 8)
    rc, stdout, err = _cli(capsys, "stylize", "--net", run.path, img, two, "--out", tmp_path / "styled",
                           "--size", 24, "--device", "cpu")
    assert rc == 0, err
    assert stdout.split() == [str(tmp_path / "styled" / "img.png"), str(tmp_path / "styled" / "two.png")]
    assert Image.open(tmp_path / "styled" / "img.png").size == (24, 20)  # 45x37 with the longer side at 24
    assert Image.open(tmp_path / "styled" / "two.png").size == (24, 16)


def test_cli_stylize_net_errors(trained, tmp_path, capsys):
    run, _ = trained
    img = _png(tmp_path / "img.png", 16, 16, 7)
    for argv in (("--net", run.path, img, "--out", tmp_path / "o.png", "--steps", 5),  # an option of the other mode
                 ("--net", run.path, img, img, "--out", tmp_path / "o.png"),  # two images, one file
                 ("--net", run.path, img, "--out", img),  # would overwrite the input
                 ("--net", tmp_path, img, "--out", tmp_path / "o.png"),  # not a run
                 (img, "--out", tmp_path / "o.png")):  # CONTENT STYLE mode needs two images
        rc, _, err = _cli(capsys, "stylize", *argv)
        assert rc == 2 and len(err.strip().splitlines()) == 1 and "error" in err, (argv, err)
    assert not (tmp_path / "o.png").exists()


def test_cli_train_style_errors(files, tmp_path, capsys):
    rc, _, err = _cli(capsys, "train", "style-net", "--style", tmp_path / "missing.jpg", "--data",
                      f"folder:{files['photos']}", "--out", tmp_path / "r", "--steps", 1)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "missing.jpg" in err and "no such file" in err
    rc, _, err = _cli(capsys, "train", "vae", "--style", files["style"], "--out", tmp_path / "r", "--steps", 1)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "only the style-net model" in err
    assert not (tmp_path / "r").exists()
