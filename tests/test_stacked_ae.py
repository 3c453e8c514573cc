"""stacked-ae: phases as a function of the step, greedy layer-wise pretraining that touches one
layer at a time, and fine-tuning on the labelled items only."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import genlab
from genlab.data import DataConfig, Dataset, load_data
from genlab.errors import ConfigError
from genlab.train.engine import TrainConfig, fit, make_optimizer

from conftest import state_dicts_equal

TINY = {"hidden": [16, 8]}


def tiny(**kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return genlab.create_model("stacked-ae", shape=(1, 8, 8), **{**TINY, **kw})


def params_of(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_phases_are_a_function_of_the_step():
    m = tiny(hidden=[16, 8, 4], pretrain_share=0.6)  # 100 steps: 60 pretraining, 20 per layer
    assert m.pretrain_ends(100) == [20, 40, 60]
    phases = [m.phase_at(s, 100) for s in range(100)]
    assert phases == [0] * 20 + [1] * 20 + [2] * 20 + [3] * 40
    m.set_step(39, 100)
    assert m.phase == 1
    scratch = tiny(pretrain=False)
    assert scratch.pretrain_ends(100) == [0, 0] and scratch.phase_at(0, 100) == 2
    assert tiny().phase == 2  # without set_step the model fine-tunes


def test_pretraining_step_leaves_every_other_layer_bit_identical(tmp_path):
    """Through the real engine (AdamW with weight decay, gradient clipping): a snapshot after
    each step; in layer k's phase only encoder k and decoder k change; fine-tuning never
    changes a decoder."""
    data = load_data(DataConfig())
    m = tiny(noise="mask")
    cfg = TrainConfig(steps=12, batch_size=64, optimizer="adamw", weight_decay=0.1, grad_clip=1.0,
                      sample_every=1, device="cpu")  # pretrain_share 0.5: layer 0 steps 0-2, layer 1 steps 3-5
    snaps = [params_of(m)]
    fit(m, data, cfg, tmp_path / "run", progress=False, on_epoch_end=lambda model, e, s: snaps.append(params_of(model)))
    assert len(snaps) == 13
    groups = {"enc0": "encoders.0.", "dec0": "decoders.0.", "enc1": "encoders.1.", "dec1": "decoders.1.", "head": "head."}

    def changed(a: dict, b: dict) -> set[str]:
        return {g for g, pre in groups.items() if any(not torch.equal(a[k], b[k]) for k in a if k.startswith(pre))}

    expected = [{"enc0", "dec0"}] * 3 + [{"enc1", "dec1"}] * 3 + [{"enc0", "enc1", "head"}] * 6
    assert [changed(snaps[i], snaps[i + 1]) for i in range(12)] == expected


def test_layer_two_is_pretrained_on_layer_one_codes():
    m = tiny()
    x = torch.rand(10, 1, 8, 8)
    seen = []
    m.encoders[1].register_forward_hook(lambda mod, inp, out: seen.append(inp[0].detach()))
    m.set_step(3, 12)  # pretrain_share 0.5 of 12 steps: layer 0 in steps 0-2, layer 1 in steps 3-5
    assert m.phase == 1
    out = m.loss(x, torch.full((10,), -1))  # pretraining ignores labels
    assert set(out) == {"loss", "recon", "phase"} and out["phase"].item() == 2
    assert torch.equal(seen[0], torch.sigmoid(m.encoders[0](x.flatten(1))).detach())
    # the layer's target is its clean input, the codes (sigmoid codes: a cross-entropy)
    h = seen[0]
    direct = F.binary_cross_entropy_with_logits(m.decoders[1](torch.sigmoid(m.encoders[1](h))), h)  # per unit
    assert out["loss"].item() == pytest.approx(direct.item(), rel=1e-5)


def test_masking_noise_zeroes_a_share_of_the_layer_input():
    m = tiny(hidden=[400, 8], noise="mask", noise_level=0.3)
    x = torch.rand(50, 1, 8, 8)
    seen = []
    m.encoders[1].register_forward_hook(lambda mod, inp, out: seen.append(inp[0].detach()))
    m.set_step(3, 12)
    m.loss(x, torch.zeros(50, dtype=torch.long))
    codes = m.layer_input(x, 1).detach()
    kept = seen[0] != 0
    assert torch.equal(seen[0][kept], codes[kept])  # kept units are the clean codes
    assert 1 - kept.float().mean().item() == pytest.approx(0.3, abs=0.02)


def test_finetuning_loss_is_the_cross_entropy_of_the_labelled_items_only():
    m = tiny()
    x = torch.rand(8, 1, 8, 8)
    y = torch.tensor([3, -1, 0, -1, 9, -1, -1, 5])
    out = m.loss(x, y)  # phase: fine-tuning
    keep = y >= 0
    direct = F.cross_entropy(m.logits(x[keep]), y[keep])
    assert out["loss"].item() == pytest.approx(direct.item(), rel=1e-6)
    assert out["labelled"].item() == 4 and out["phase"].item() == 3
    x2 = x.clone()
    x2[~keep] = torch.rand_like(x2[~keep])  # the unlabelled items do not matter
    assert torch.equal(m.loss(x2, y)["loss"], out["loss"])


def test_a_batch_without_labels_gives_a_zero_loss_and_changes_nothing():
    m = tiny()
    opt = make_optimizer(m, TrainConfig(optimizer="adamw", weight_decay=0.1))
    before = params_of(m)
    out = m.loss(torch.rand(6, 1, 8, 8), torch.full((6,), -1))
    assert out["loss"].item() == 0.0 and out["loss"].grad_fn is not None
    opt.zero_grad(set_to_none=True)
    out["loss"].backward()
    assert all(p.grad is None for p in m.parameters())
    opt.step()
    assert state_dicts_equal(params_of(m), before)


def test_eval_batch_and_predict():
    m = tiny()
    x = torch.rand(5, 1, 8, 8)
    y = torch.tensor([1, 2, 3, 4, -1])
    vals = m.eval_batch(x, y)
    pred = m.predict(x)
    assert pred.shape == (5,) and pred.dtype == torch.long
    assert torch.equal(vals["accuracy"][:4], (pred[:4] == y[:4]).float())
    assert torch.allclose(vals["xent"][:4], F.cross_entropy(m.logits(x[:4]), y[:4], reduction="none"))
    assert vals["accuracy"][4].isnan() and vals["xent"][4].isnan()  # unlabelled: no score
    assert {"mse", "bce", "psnr"} <= set(vals) and m.reconstruct(x).shape == x.shape


def test_training_on_digits_is_far_above_chance(tmp_path):
    run = genlab.train("stacked-ae", "digits", out=tmp_path / "run", steps=500, lr=1e-2, device="cpu",
                       set={"hidden": [64, 32], "noise": "mask"})
    ev = json.loads((run.path / "eval.json").read_text())
    assert ev["accuracy"] > 0.8  # chance: 0.1
    recs = [r for r in run.metrics() if r["split"] == "train"]
    assert {r["phase"] for r in recs} >= {1.0, 2.0, 3.0}


def test_few_labels_scratch_baseline_trains(tmp_path):
    run = genlab.train("stacked-ae", "digits", out=tmp_path / "run", steps=120, lr=1e-2, device="cpu",
                       set={"hidden": [32], "pretrain": False, "data.labels_per_class": 20})
    recs = [r for r in run.metrics() if r["split"] == "train"]
    assert all(r["phase"] == 2.0 for r in recs)
    assert 0 < recs[-1]["labelled"] < 128  # 200 of 1437 images keep their label
    assert json.loads((run.path / "eval.json").read_text())["accuracy"] > 0.5


class Crash(Exception):
    pass


def test_resume_after_a_crash_across_phases_is_exact(tmp_path, monkeypatch):
    """20 steps (layer 0: steps 0-4, layer 1: 5-9, fine-tuning: 10-19), checkpoints every 4,
    a crash in step 11: resuming from step 8 crosses into fine-tuning and ends bit-identical."""
    kw = dict(steps=20, device="cpu", evaluate_at_end=False,
              set={"hidden": [16, 8], "noise": "mask", "data.labels_per_class": 30, "train.checkpoint_every": 4})
    whole = genlab.train("stacked-ae", "digits", out=tmp_path / "whole", **kw)
    real_prepare = Dataset.prepare
    calls = {"n": 0}

    def crashing_prepare(self, x, train):
        calls["n"] += train
        if calls["n"] == 11:
            raise Crash("power cut")
        return real_prepare(self, x, train)

    monkeypatch.setattr(Dataset, "prepare", crashing_prepare)
    with pytest.raises(Crash):
        genlab.train("stacked-ae", "digits", out=tmp_path / "part", **kw)
    monkeypatch.setattr(Dataset, "prepare", real_prepare)
    resumed = genlab.train(out=tmp_path / "part", resume=True, device="cpu", evaluate_at_end=False)
    assert state_dicts_equal(resumed.model.state_dict(), whole.model.state_dict())


@pytest.mark.parametrize("sets,name", [
    ({"hidden": []}, "hidden"), ({"hidden": [8, 0]}, "hidden"), ({"noise_level": 1.0}, "noise_level"),
    ({"pretrain_share": 1.0}, "pretrain_share"), ({"classes": 1}, "classes"), ({"activation": "tanh"}, "activation"),
    ({"noise": "gaussian"}, "noise"),
])
def test_bad_config_names_the_field(sets, name):
    with pytest.raises(ConfigError) as e:
        genlab.create_model("stacked-ae", shape=(1, 8, 8), **{**TINY, **sets})
    assert str(e.value).startswith(f"model stacked-ae.{name}:")


def test_labels_beyond_the_classes_are_a_config_error():
    m = tiny(classes=3)
    with pytest.raises(ConfigError) as e:
        m.loss(torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 7]))
    assert str(e.value).startswith("classes") and "7" in str(e.value)
