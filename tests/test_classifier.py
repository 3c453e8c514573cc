"""The transfer-learning classifier: strategies, freezing, learning rates, the linear probe,
predictions and the CLI, each checked against an independent computation."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import genlab
from genlab.cli import main
from genlab.models import create_model
from genlab.train import TrainConfig
from genlab.transfer.classifier import auto_strategy

pytestmark = pytest.mark.usefixtures("one_thread")


def small(**kw):
    cfg = {"backbone": "small-cnn", "weights": "none", "num_classes": 10, "strategy": "finetune", **kw}
    return create_model("classifier", shape=(1, 8, 8), **cfg)


def resnet(strategy, **kw):
    torch.manual_seed(0)
    return create_model("classifier", shape=(3, 32, 32), backbone="resnet18", weights="none", num_classes=3,
                        image_size=32, strategy=strategy, **kw)


def test_auto_rule_follows_the_lectures():
    assert auto_strategy(10, 5)[0] == "linear-probe"          # very small: only the head
    assert auto_strategy(49.9, 5)[0] == "linear-probe"
    assert auto_strategy(50, 5)[0] == "freeze:4"              # small: freeze most, train the last stage
    assert auto_strategy(499, 5)[0] == "freeze:4"
    assert auto_strategy(500, 5)[0] == "freeze:1"             # large: freeze the stem only
    assert auto_strategy(100, 5, (10, 20))[0] == "freeze:1"   # thresholds are settings
    assert "very small" in auto_strategy(3, 5)[1]


def test_inputs_are_adapted_to_the_backbone():
    m = resnet("finetune")
    x = torch.rand(2, 1, 28, 28)
    ref = F.interpolate(x.repeat(1, 3, 1, 1), size=(32, 32), mode="bilinear", align_corners=False)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(m.prepare_input(x), (ref - mean) / std)


def test_frozen_stages_get_no_gradient_and_keep_batchnorm_statistics():
    m = resnet("freeze:2")  # stem and layer1 frozen
    opt = m.make_optimizers(TrainConfig(lr=0.1, optimizer="sgd"))["main"]
    m.train()
    stem_bn, l1_bn, l3_bn = m.backbone.stages()[0][1][0], None, None
    bns = {name: [mod for mm in mods for mod in mm.modules() if isinstance(mod, torch.nn.BatchNorm2d)]
           for name, mods in m.backbone.stages()}
    names = [n for n, _ in m.backbone.stages()]
    frozen_bn = bns[names[0]] + bns[names[1]]
    live_bn = bns[names[3]]
    assert frozen_bn and live_bn and all(not b.training for b in frozen_bn) and all(b.training for b in live_bn)
    before = [b.running_mean.clone() for b in frozen_bn] + [b.running_mean.clone() for b in live_bn]
    frozen_w = [p.clone() for _, mods in m.backbone.stages()[:2] for mm in mods for p in mm.parameters()]
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    out = m.train_step(x, y, lambda name, loss: (opt.zero_grad(), loss.backward(), opt.step()), 0, 10)
    assert torch.isfinite(out["loss"])
    after_frozen = [p for _, mods in m.backbone.stages()[:2] for mm in mods for p in mm.parameters()]
    assert all(p.grad is None for p in after_frozen)                       # no backward pass reached them
    assert all(torch.equal(a, b) for a, b in zip(frozen_w, after_frozen))
    for b, old in zip(frozen_bn, before[:len(frozen_bn)]):
        assert torch.equal(b.running_mean, old)                            # inference mode: statistics kept
    assert any(not torch.equal(b.running_mean, old) for b, old in zip(live_bn, before[len(frozen_bn):]))


def test_discriminative_rates_decay_by_stage():
    m = resnet("discriminative", lr_decay=0.5)
    opt = m.make_optimizers(TrainConfig(lr=0.1))["main"]
    stage_params = [{id(p) for mm in mods for p in mm.parameters()} for _, mods in m.backbone.stages()]
    s = len(stage_params)
    for grp in opt.param_groups:
        ids = {id(p) for p in grp["params"]}
        if grp["name"] == "head":
            assert grp["lr"] == pytest.approx(0.1)
        else:
            i = next(k for k, sp in enumerate(stage_params) if ids == sp)
            assert grp["lr"] == pytest.approx(0.1 * 0.5 ** (s - i))
            assert grp["base_lr"] == grp["lr"]  # the engine's schedule scales each group from its own rate
    covered = sum(len(g["params"]) for g in opt.param_groups)
    assert covered == len(list(m.parameters()))


def test_gradual_unfreezes_from_the_top():
    m = small(strategy="gradual")  # two stages: conv, dense
    total = 9  # three phases of three steps
    assert [m.frozen_at(t, total) for t in range(9)] == [2, 2, 2, 1, 1, 1, 0, 0, 0]
    m.set_step(3, total)
    conv, dense = (mods for _, mods in m.backbone.stages())
    assert all(not p.requires_grad for mm in conv for p in mm.parameters())
    assert all(p.requires_grad for mm in dense for p in mm.parameters())


def test_train_and_evaluate_report_agrees_with_predictions(tmp_path):
    r = genlab.train("classifier", "digits", out=tmp_path / "r", steps=60, batch_size=64, lr=1.0,
                     set={"backbone": "small-cnn", "weights": "none", "strategy": "finetune", "optimizer": "adadelta"})
    ev = json.loads((r.path / "eval.json").read_text())
    x, y = r.data().eval_inputs("test")
    with torch.no_grad():
        pred = r.model(x).argmax(1)
    acc = float((pred == y).float().mean())
    assert ev["accuracy"] == pytest.approx(acc)
    assert acc > 0.5                                     # 10 classes: chance is 0.1
    cm = np.array(ev["confusion"])
    assert cm.sum() == len(y) and np.trace(cm) == int((pred == y).sum())
    for c, row in enumerate(ev["per_class"]):
        tp = int(((pred == c) & (y == c)).sum())
        assert row["recall"] == pytest.approx(tp / max(int((y == c).sum()), 1))
        assert row["precision"] == pytest.approx(tp / max(int((pred == c).sum()), 1))
    cfg = json.loads((r.path / "config.json").read_text())
    assert cfg["model_config"]["num_classes"] == 10 and cfg["weights_source"] == "random init"


def test_freeze_keeps_the_source_runs_layers(tmp_path):
    base = {"backbone": "small-cnn", "optimizer": "adadelta"}
    src = genlab.train("classifier", "digits", out=tmp_path / "src", steps=20, batch_size=64, lr=1.0,
                       set={**base, "weights": "none", "strategy": "finetune", "data.classes": [0, 1, 2, 3, 4]})
    dst = genlab.train("classifier", "digits", out=tmp_path / "dst", steps=20, batch_size=64, lr=1.0,
                       set={**base, "weights": str(src.path), "strategy": "freeze:1", "data.classes": [5, 6, 7, 8, 9]})
    s, d = src.model.backbone, dst.model.backbone
    (_, s_conv), (_, s_dense) = s.stages()
    (_, d_conv), (_, d_dense) = d.stages()
    for a, b in zip((p for m in s_conv for p in m.parameters()), (p for m in d_conv for p in m.parameters())):
        assert torch.equal(a, b)                         # frozen: bit for bit the source's
    assert any(not torch.equal(a, b) for a, b in zip((p for m in s_dense for p in m.parameters()),
                                                      (p for m in d_dense for p in m.parameters())))
    assert "run" in json.loads((dst.path / "config.json").read_text())["weights_source"]


def test_linear_probe_logreg_equals_scikit_learn(tmp_path):
    from sklearn.linear_model import LogisticRegression

    torch.manual_seed(0)
    r = genlab.train("classifier", "digits", out=tmp_path / "p",
                     set={"backbone": "small-cnn", "weights": "none", "strategy": "linear-probe", "probe_head": "logreg"})
    m = r.model
    xtr, ytr = r.data().eval_inputs("train")
    xte, _ = r.data().eval_inputs("test")
    with torch.no_grad():
        ftr, fte = m.encode(xtr).double().numpy(), m.encode(xte).double().numpy()
        probs = m(xte).softmax(1).numpy()
    ref = LogisticRegression(C=1.0, max_iter=2000).fit(ftr, ytr.numpy())
    np.testing.assert_allclose(probs, ref.predict_proba(fte), atol=1e-4)


def test_auto_picks_linear_probe_for_ten_labels_and_says_why(tmp_path, capsys):
    src = genlab.train("classifier", "digits", out=tmp_path / "src", steps=10, batch_size=64,
                       set={"backbone": "small-cnn", "weights": "none", "strategy": "finetune"})
    rc = main(["train", "classifier", "--data", "digits", "--backbone", "small-cnn", "--weights", str(src.path),
               "--labels-per-class", "10", "--out", str(tmp_path / "a"), "-q"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "strategy auto: linear-probe" in err and "very small" in err
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())["model_config"]
    assert cfg["strategy"] == "auto" and cfg["chosen_strategy"] == "linear-probe" and "10 labelled" in cfg["strategy_reason"]
    # without pretrained weights there is nothing to transfer: auto trains every layer
    assert main(["train", "classifier", "--data", "digits", "--weights", "none", "--labels-per-class", "10",
                 "--steps", "2", "--out", str(tmp_path / "b"), "-q"]) == 0
    assert "strategy auto: finetune" in capsys.readouterr().err


def test_predict_and_features_cli(tmp_path, capsys):
    from PIL import Image

    r = genlab.train("classifier", "digits", out=tmp_path / "r", steps=30, batch_size=64, lr=1.0,
                     set={"backbone": "small-cnn", "weights": "none", "strategy": "finetune", "optimizer": "adadelta"})
    x, _ = r.data().eval_inputs("test")
    files = []
    for i in range(3):
        p = tmp_path / f"d{i}.png"
        Image.fromarray((x[i, 0].numpy() * 255).round().astype(np.uint8)).save(p)
        files.append(str(p))
    capsys.readouterr()
    assert main(["predict", str(r.path), *files, "--top", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    with torch.no_grad():  # the files hold the images at 8 bits
        probs = r.model((x[:3] * 255).round() / 255).softmax(1)
    for i, row in enumerate(out["predictions"]):
        ps = [t["prob"] for t in row["top"]]
        assert ps == sorted(ps, reverse=True) and len(ps) == 3
        assert row["top"][0]["label"] == int(probs[i].argmax())          
        assert ps[0] == pytest.approx(float(probs[i].max()), abs=1e-5)
    assert main(["predict", str(r.path), files[0], "--top", "11"]) == 2
    assert "--top" in capsys.readouterr().err
    assert main(["features", str(r.path), "--out", str(tmp_path / "f.npz")]) == 0
    z = np.load(tmp_path / "f.npz")
    assert z["z"].shape == (len(x), 128) and len(z["y"]) == len(x)
    with torch.no_grad():
        np.testing.assert_allclose(z["z"], r.model.encode(x).numpy(), atol=1e-5)


def test_bad_input_is_one_line(tmp_path, capsys):
    assert main(["train", "classifier", "--data", "digits", "--strategy", "freeze:9", "--backbone", "small-cnn",
                 "--weights", "none", "--out", str(tmp_path / "x")]) == 2
    assert "freeze:9" in capsys.readouterr().err
    assert main(["train", "classifier", "--data", "digits", "--strategy", "half", "--out", str(tmp_path / "y")]) == 2
    assert "strategy" in capsys.readouterr().err
    assert main(["train", "vae", "--data", "digits", "--backbone", "resnet18"]) == 2
    assert "--backbone" in capsys.readouterr().err
    assert main(["train", "classifier", "--data", "digits", "--backbone", "small-cnn", "--weights",
                 str(tmp_path / "nope.pth"), "--strategy", "finetune", "--out", str(tmp_path / "z")]) == 2
    assert "nope.pth" in capsys.readouterr().err


def test_inception_trains_its_auxiliary_head():
    torch.manual_seed(0)
    m = create_model("classifier", shape=(3, 32, 32), backbone="inception_v3", weights="none", num_classes=3,
                     strategy="finetune", aux_weight=0.4)  # resized to its 299 px inside
    m.train()
    x, y = torch.rand(2, 3, 32, 32), torch.tensor([0, 2])
    torch.manual_seed(1)
    out = m.loss(x, y)
    assert out["loss"].item() == pytest.approx(out["xent"].item() + 0.4 * out["aux_xent"].item(), rel=1e-5)
    m.eval()
    with torch.no_grad():
        assert m(x).shape == (2, 3)   # no auxiliary output at prediction time


def test_report_and_eval_of_a_classifier(tmp_path, capsys):
    r = genlab.train("classifier", "digits", out=tmp_path / "r", steps=20, batch_size=64, lr=1.0,
                     set={"backbone": "small-cnn", "weights": "none", "strategy": "freeze:1", "optimizer": "adadelta"})
    assert main(["report", str(r.path)]) == 0
    html = (r.path / "report.html").read_text()
    assert "<h2>Classification</h2>" in html and "confusion matrix" in html and "Strategy freeze:1" in html
    assert html.count("<tr>") >= 10 + 1                      # a row per class in the per-class table
    assert "Reconstructions" not in html                      # a classifier does not reconstruct
    capsys.readouterr()
    assert main(["eval", str(r.path)]) == 0
    out = capsys.readouterr().out
    ev = json.loads((r.path / "eval.json").read_text())
    assert f"{ev['accuracy']:.6g}" in out and "precision" in out and "confusion" not in out


def test_list_backbones(capsys):
    assert main(["list", "backbones"]) == 0
    out = capsys.readouterr().out
    for name in ("small-cnn", "resnet18", "inception_v3", "efficientnet_lite0", "vgg16_bn", "mobilenet_v3_small"):
        assert name in out


def test_a_folder_of_images_in_one_command(tmp_path, capsys):
    """The practitioner's case: a folder with one subfolder per class, trained, then predicted."""
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "shapes"
    for name, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        (root / name).mkdir(parents=True)
        for i in range(12):
            a = rng.integers(0, 60, (40, 50, 3)).astype(np.uint8)     # noise, a different size per file
            a[10:30, 12:38] = colour
            Image.fromarray(a).save(root / name / f"{i}.png")
    rc = main(["train", "classifier", "--data", f"folder:{root}", "--backbone", "resnet18", "--weights", "none",
               "--strategy", "finetune", "--steps", "15", "--batch-size", "16", "--set", "image_size=32",
               "data.image_size=32", "--out", str(tmp_path / "r"), "-q"])
    assert rc == 0
    ev = json.loads((tmp_path / "r" / "eval.json").read_text())
    assert ev["class_names"] == ["blue", "red"] and ev["accuracy"] == 1.0      # colour alone separates them
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "r"), str(root / "red" / "0.png"), str(root / "blue" / "3.png")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split(": ")[1].startswith("red") and lines[1].split(": ")[1].startswith("blue")


def test_gradual_run_resumes_exactly(tmp_path, monkeypatch):
    """A classifier run that crashes and is resumed (here gradual unfreezing: the frozen set
    changes with the step) ends with the same weights, bit for bit, as one that never stopped."""
    from safetensors.torch import load_file

    from genlab.data import Dataset

    sets = {"backbone": "small-cnn", "weights": "none", "strategy": "gradual", "train.checkpoint_every": 4}
    genlab.train("classifier", "digits", out=tmp_path / "a", steps=12, batch_size=32, set=sets)
    real, calls = Dataset.prepare, {"n": 0}

    def crashing(self, x, train):
        calls["n"] += train
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return real(self, x, train)

    monkeypatch.setattr(Dataset, "prepare", crashing)
    with pytest.raises(KeyboardInterrupt):
        genlab.train("classifier", "digits", out=tmp_path / "b", steps=12, batch_size=32, set=sets)
    monkeypatch.setattr(Dataset, "prepare", real)
    genlab.train(out=tmp_path / "b", resume=True)    # from the checkpoint at step 4, in phase 2 of 3
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
