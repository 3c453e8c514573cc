"""The MLP GAN: its losses against their formulas, Goodfellow's k-step schedule, packing, the
gradient penalty, the generator EMA, and an exact resume with two optimizers."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import genlab
from genlab.errors import ConfigError
from genlab.models.gans.gan import d_loss_fn, ema_decay, g_loss_fn, gradient_penalty
from genlab.train.engine import TrainConfig, Updater

SMALL = {"g_hidden": [32, 32], "d_hidden": [32, 32], "d_maxout": 3, "g_batchnorm": True, "r1": 0.0, "beta1": 0.8, "ema": 0.0}  # the class defaults, pinned: on ring8 a run would otherwise get the tuned 2-D set-up


def test_losses_equal_their_formulas():
    a_r, a_f = torch.tensor([2.0, -1.0, 0.3]), torch.tensor([-0.5, 1.5, 0.0])
    s = torch.sigmoid
    torch.testing.assert_close(d_loss_fn("bce", a_r, a_f), -(s(a_r).log().mean() + (1 - s(a_f)).log().mean()))
    torch.testing.assert_close(d_loss_fn("hinge", a_r, a_f), torch.relu(1 - a_r).mean() + torch.relu(1 + a_f).mean())
    torch.testing.assert_close(d_loss_fn("wasserstein", a_r, a_f), a_f.mean() - a_r.mean())
    torch.testing.assert_close(g_loss_fn("minimax", "bce", a_f), (1 - s(a_f)).log().mean())
    torch.testing.assert_close(g_loss_fn("nonsaturating", "bce", a_f), -s(a_f).log().mean())
    torch.testing.assert_close(g_loss_fn("ml", "bce", a_f), -0.5 * (s(a_f) / (1 - s(a_f))).mean())  # exp(logit) = D/(1-D)
    torch.testing.assert_close(g_loss_fn("nonsaturating", "hinge", a_f), -a_f.mean())


def test_the_minimax_loss_saturates_and_the_others_do_not():
    """When D rejects a sample (D(G(z)) = sigmoid(-8)), d loss / d logit is -sigmoid(a) ~ -3e-4
    for minimax, -(1 - sigmoid(a)) ~ -1 for the non-saturating loss (Goodfellow 2014, sec. 3)."""
    grads = {}
    for kind in ("minimax", "nonsaturating", "ml"):
        a = torch.tensor([-8.0], requires_grad=True)
        g_loss_fn(kind, "bce", a).backward()
        grads[kind] = a.grad.item()
    assert grads["minimax"] == pytest.approx(-torch.sigmoid(torch.tensor(-8.0)).item(), rel=1e-5)
    assert grads["nonsaturating"] == pytest.approx(-(1 - torch.sigmoid(torch.tensor(-8.0)).item()), rel=1e-5)
    assert grads["ml"] == pytest.approx(-0.5 * math.exp(-8.0), rel=1e-5)
    assert abs(grads["nonsaturating"]) > 1000 * abs(grads["minimax"])


def test_gradient_penalty_of_a_linear_critic_is_closed_form():
    w = torch.tensor([3.0, 4.0])  # ||w|| = 5: penalty (5 - 1)^2 = 16 at every point
    assert gradient_penalty(lambda x: x @ w, torch.randn(7, 2), torch.randn(7, 2)).item() == pytest.approx(16.0)


def _model(**kw):
    torch.manual_seed(0)
    return genlab.create_model("gan", shape=(2,), value_range=(-1.0, 1.0), **{**SMALL, **kw})


def _snap(module):
    return [p.detach().clone() for p in module.parameters()]


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


def assert_k_step_pattern(m, x, k: int = 3) -> None:
    """Through the engine's Updater: D changes every step, G exactly every k-th (and logs g_loss then)."""
    upd = Updater(m.make_optimizers(TrainConfig(lr=1e-3)), TrainConfig())
    for step in range(2 * k):
        g0, d0 = _snap(m.generator), _snap(m.discriminator)
        logs = m.train_step(x, None, upd, step, 2 * k)
        assert not _same(d0, _snap(m.discriminator))  # D learns every step
        g_moved = not _same(g0, _snap(m.generator))
        assert g_moved == ((step + 1) % k == 0) == ("g_loss" in logs)


def test_k_discriminator_steps_per_generator_step():
    assert_k_step_pattern(_model(d_steps=3), torch.randn(16, 2), k=3)


def test_pack_groups_samples_and_drops_the_remainder():
    m = _model(pack=4)
    assert m.discriminator(torch.randn(12, 2)).shape == (3,)
    assert m.discriminator(torch.randn(14, 2)).shape == (3,)
    assert m.discriminator.net[0].lin.in_features == 8  # four 2-D samples side by side


def test_ema_follows_its_formula():
    m = _model(ema=0.9)
    upd = Updater(m.make_optimizers(TrainConfig(lr=1e-2)), TrainConfig())
    old = _snap(m.g_ema)
    m.train_step(torch.randn(16, 2), None, upd, 0, 1)
    for e, o, p in zip(m.g_ema.parameters(), old, m.generator.parameters()):
        torch.testing.assert_close(e, 0.9 * o + 0.1 * p)


def test_ema_warmup_ramps_the_decay_as_tensorflow_num_updates_does():
    """With ema_warmup the average follows e <- d_n e + (1 - d_n) p with d_n = min(ema, (1 + n) /
    (10 + n)) after n generator updates; with d_steps=2, n counts generator updates only."""
    m = _model(ema=0.95, ema_warmup=True, d_steps=2)
    upd = Updater(m.make_optimizers(TrainConfig(lr=1e-2)), TrainConfig())
    e = [p.detach().clone() for p in m.generator.parameters()]
    decays = []
    for step in range(12):
        m.train_step(torch.randn(16, 2), None, upd, step, 12)
        if (step + 1) % 2 == 0:
            n = (step + 1) // 2
            d = min(0.95, (1 + n) / (10 + n))
            decays.append(d)
            e = [d * a + (1 - d) * p.detach() for a, p in zip(e, m.generator.parameters())]
    for a, b in zip(m.g_ema.parameters(), e):
        torch.testing.assert_close(a, b)
    assert decays[0] == pytest.approx(2 / 11) and decays[-1] == pytest.approx(7 / 16)  # n = 1 and n = 6
    # ema_decay: capped at ema, and plain ema without a warm-up
    assert ema_decay(0.999, 100) == pytest.approx(101 / 110) and ema_decay(0.999, 10**6) == 0.999
    assert ema_decay(0.999) == 0.999


def test_ema_bn_recomputes_the_ema_generators_batchnorm_statistics_from_its_own_batches():
    """ema_bn=N: before the EMA generator samples, its BatchNorm running statistics become the
    average over chunks of N noise samples of its own batch mean and unbiased variance (the live
    G's statistics belong to other weights); the reference collects each BatchNorm's inputs by
    hooks and computes them with numpy."""
    from torch import nn

    m = _model(ema=0.9, ema_bn=1200)
    upd = Updater(m.make_optimizers(TrainConfig(lr=1e-2)), TrainConfig())
    for step in range(5):
        m.train_step(torch.randn(16, 2), None, upd, step, 5)
    bns = [b for b in m.g_ema.modules() if isinstance(b, nn.BatchNorm1d)]
    live = [b for b in m.generator.modules() if isinstance(b, nn.BatchNorm1d)]
    assert bns and bool(m.ema_bn_stale)
    assert not torch.equal(bns[0].running_mean, live[0].running_mean), "with ema_bn the live statistics are not copied"
    # the reference: the EMA generator's own batches, the chunks (500, 500, 200) of the same noise
    import copy

    ref_g = copy.deepcopy(m.g_ema).train()
    seen = {i: [] for i in range(len(bns))}
    ref_bns = [b for b in ref_g.modules() if isinstance(b, nn.BatchNorm1d)]
    for i, b in enumerate(ref_bns):
        b.register_forward_hook(lambda mod, inp, out, i=i: seen[i].append(inp[0].detach().double().numpy()))
    rng = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for size in (500, 500, 200):
            ref_g(torch.randn(size, m.latent, generator=rng))
    rng_before = torch.get_rng_state()
    m.sample(10, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), rng_before), "recomputing must not draw from the global RNG"
    assert not bool(m.ema_bn_stale)
    for i, b in enumerate(bns):
        mean = np.mean([a.mean(0) for a in seen[i]], axis=0)
        var = np.mean([a.var(0, ddof=1) for a in seen[i]], axis=0)
        np.testing.assert_allclose(b.running_mean.numpy(), mean, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(b.running_var.numpy(), var, rtol=1e-4, atol=1e-5)
        assert b.momentum == live[i].momentum, "the momentum is restored"
    # a G update makes them stale again; the flag travels with the model's state
    m.train_step(torch.randn(16, 2), None, upd, 5, 6)
    assert bool(m.ema_bn_stale) and "ema_bn_stale" in m.state_dict()
    with pytest.raises(ConfigError, match="ema_bn: .*needs ema > 0"):
        _model(ema_bn=100)


def test_ema_bn_draws_uniform_labels_for_a_conditional_generator():
    m = genlab.create_model("cgan", shape=(1, 8, 8), value_range=(0.0, 1.0), **{**SMALL, "classes": 3, "latent": 4,
                                                                              "ema": 0.5, "ema_bn": 300})
    x, y = m.sample_labeled(6, generator=torch.Generator().manual_seed(0), labels=2)
    assert x.shape == (6, 1, 8, 8) and (y == 2).all() and not bool(m.ema_bn_stale)
    bn = next(b for b in m.g_ema.modules() if isinstance(b, torch.nn.BatchNorm1d))
    assert int(bn.num_batches_tracked) == 1 and not torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))


def test_resume_with_two_optimizers_is_exact(tmp_path):
    # constant lr: a cosine schedule (the ring8 default) is laid over the run's length, which the resume extends
    kw = dict(steps=40, batch_size=50, lr=1e-3, set={**SMALL, "data.limit": 1000, "train.checkpoint_every": 20,
                                                   "train.schedule": "constant"})
    whole = genlab.train("gan", "ring8", out=tmp_path / "whole", **kw)
    part = genlab.train("gan", "ring8", out=tmp_path / "part", **{**kw, "steps": 20})
    resumed = genlab.train(out=tmp_path / "part", resume=True, steps=40)
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert part is not None


def test_train_reports_mode_coverage_on_ring8(tmp_path):
    run = genlab.train("gan", "ring8", out=tmp_path / "r", steps=30, batch_size=50, set={**SMALL, "data.limit": 1000})
    ev = run.evaluate("test")
    assert ev["num_modes"] == 8 and 0 <= ev["modes"] <= 8 and 0.0 <= ev["high_quality"] <= 1.0
    assert 0.0 <= ev["reverse_kl"] <= math.log(8) + 1e-12


@pytest.mark.parametrize("kw,field", [
    ({"g_loss": "minimax", "d_loss": "hinge"}, "g_loss"),
    ({"d_steps": 0}, "d_steps"),
    ({"pack": 0}, "pack"),
    ({"ema": 1.0}, "ema"),
    ({"gp": -1.0}, "gp"),
    ({"beta1": 1.5}, "beta1"),
])
def test_bad_configs_name_the_field(kw, field):
    with pytest.raises(ConfigError, match=f"^model gan.{field}:"):
        genlab.create_model("gan", shape=(2,), **kw)


def test_wgan_gp_has_the_papers_defaults_and_trains(tmp_path):
    import numpy as np

    m = genlab.create_model("wgan-gp", shape=(1, 28, 28), g_width=4, d_width=4)
    c = m.config
    assert (c.d_loss, c.gp, c.d_steps, c.d_batchnorm, c.g_lr, c.beta1, c.beta2) == ("wasserstein", 10.0, 5, False, 1e-4, 0.0, 0.9)
    assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in m.discriminator.modules())
    p = tmp_path / "img.npz"
    np.savez(p, x=(np.random.default_rng(0).random((64, 28, 28)) * 255).astype(np.uint8))
    run = genlab.train("wgan-gp", f"npz:{p}", out=tmp_path / "w", steps=10, batch_size=16, set={"g_width": 4, "d_width": 4})
    logs = [r for r in run.metrics() if r.get("split") == "train"]
    assert "gp" in logs[-1] and "g_loss" in logs[-1]


def test_quality_checks_keep_the_best_weights_and_leave_the_resume_exact(tmp_path):
    from genlab.train.checkpoint import load_weights

    kw = dict(steps=40, batch_size=50, lr=1e-3,
              set={**SMALL, "data.limit": 1000, "train.checkpoint_every": 20, "train.quality_every": 10,
                   "train.schedule": "constant"})
    whole = genlab.train("gan", "ring8", out=tmp_path / "whole", **kw)
    q = [r for r in whole.metrics() if r.get("split") == "quality"]
    assert [r["step"] for r in q] == [10, 20, 30, 40]
    best = json.loads((tmp_path / "whole" / "best.json").read_text())
    assert best["score"] == min(r["score"] for r in q) and best["metric"] == "reverse_kl"
    assert best["step"] == min(q, key=lambda r: r["score"])["step"]
    m = genlab.create_model("gan", shape=(2,), **SMALL)
    assert load_weights(tmp_path / "whole" / "best.safetensors", m) == best["step"]
    genlab.train("gan", "ring8", out=tmp_path / "part", **{**kw, "steps": 20})
    resumed = genlab.train(out=tmp_path / "part", resume=True, steps=40)
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)  # the checks sample under a forked RNG


def test_quality_samples_sets_the_size_of_each_check(tmp_path):
    kw = dict(steps=20, batch_size=50, set={**SMALL, "data.limit": 1000, "train.quality_every": 10})
    default = genlab.train("gan", "ring8", out=tmp_path / "a", **kw)
    assert {r["n_samples"] for r in default.metrics() if r.get("split") == "quality"} == {2500}  # PacGAN's count
    more = genlab.train("gan", "ring8", out=tmp_path / "b", **{**kw, "set": {**kw["set"], "train.quality_samples": 300}})
    q = [r for r in more.metrics() if r.get("split") == "quality"]
    assert [r["n_samples"] for r in q] == [300, 300]
    with pytest.raises(ConfigError, match="quality_samples: expected 0"):
        genlab.train("gan", "ring8", out=tmp_path / "c", **{**kw, "set": {**kw["set"], "train.quality_samples": -5}})


def test_a_collapse_is_logged_as_a_warning(tmp_path, capsys):
    from genlab.data import DataConfig, load_data
    from genlab.train.engine import fit

    m = genlab.create_model("gan", shape=(2,), **SMALL)
    ds = load_data(DataConfig(name="ring8", limit=200))
    scores = iter([3.0, 1.0, 2.0])
    fit(m, ds, TrainConfig(steps=6, batch_size=50, quality_every=2), tmp_path, progress=False,
        quality=lambda model: {"score": next(scores), "collapse": "1 of 8 modes"})
    recs = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs if r["split"] == "warning"] == [2, 4, 6]
    assert "diversity collapsed (1 of 8 modes)" in capsys.readouterr().err
    assert json.loads((tmp_path / "best.json").read_text())["step"] == 4


def test_best_weights_through_the_cli(tmp_path, capsys):
    from genlab.cli import main
    from genlab.run import load_run

    kw = dict(steps=20, batch_size=50, set={**SMALL, "data.limit": 500, "train.quality_every": 10})
    genlab.train("gan", "ring8", out=tmp_path / "q", **kw)
    best = json.loads((tmp_path / "q" / "best.json").read_text())
    m = load_run(tmp_path / "q", best=True).model
    ref = genlab.create_model("gan", shape=(2,), **SMALL)
    from genlab.train.checkpoint import load_weights

    assert load_weights(tmp_path / "q" / "best.safetensors", ref) == best["step"]
    for a, b in zip(m.state_dict().values(), ref.state_dict().values()):
        assert torch.equal(a, b)
    assert main(["sample", str(tmp_path / "q"), "--best", "--n", "16", "--out", str(tmp_path / "s.npz")]) == 0
    # the report of the best weights scores them, not the last weights of eval.json
    from genlab.report import test_metrics
    from genlab.run import mixture_metrics

    got = test_metrics(load_run(tmp_path / "q", best=True))
    assert got["reverse_kl"] == mixture_metrics(m, "ring8")["reverse_kl"]
    assert main(["report", str(tmp_path / "q"), "--best"]) == 0
    assert (tmp_path / "q" / "report-best.html").is_file() and not (tmp_path / "q" / "report.html").exists()
    genlab.train("gan", "ring8", out=tmp_path / "plain", steps=5, batch_size=50, set={**SMALL, "data.limit": 500})
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "plain"), "--best"]) == 2
    assert "best.safetensors: not found" in capsys.readouterr().err


def test_r1_penalty_of_a_linear_discriminator_is_closed_form():
    """With no hidden layer D(x) = w.x + b, so grad_x D = w at every real point: R1 = ||w||^2 and
    the discriminator's loss grows by gamma/2 ||w||^2 against the same step without it."""
    losses = {}
    for gamma in (0.0, 3.0):
        m = _model(d_hidden=[], d_maxout=0, r1=gamma)
        w = m.discriminator.net[0].weight.detach().flatten()
        got = {}
        torch.manual_seed(1)
        logs = m.train_step(torch.randn(16, 2), None, lambda name, loss: got.setdefault(name, loss.detach()), 1, 10)
        losses[gamma] = got["d"]
        if gamma:
            assert logs["r1"].item() == pytest.approx(float(w @ w), rel=1e-6)
    assert (losses[3.0] - losses[0.0]).item() == pytest.approx(1.5 * float(w @ w), rel=1e-5)


def test_lazy_r1_applies_the_penalty_every_r1_every_steps_with_that_weight():
    """r1_every=4: on steps 0, 4, 8, ... the loss grows by 4 * gamma/2 ||w||^2 (the same pull on
    average); on the steps between there is no penalty, and the loss equals that of r1=0."""
    gamma, every = 3.0, 4
    for step in (0, 1, 3, 4, 8):
        losses = {}
        for g in (0.0, gamma):
            m = _model(d_hidden=[], d_maxout=0, r1=g, r1_every=every)
            w = m.discriminator.net[0].weight.detach().flatten()
            got = {}
            torch.manual_seed(1)
            logs = m.train_step(torch.randn(16, 2), None, lambda name, loss: got.setdefault(name, loss.detach()), step, 10)
            losses[g] = got["d"]
        extra = (losses[gamma] - losses[0.0]).item()
        if step % every == 0:
            assert extra == pytest.approx(every * gamma / 2 * float(w @ w), rel=1e-5)
            assert logs["r1"].item() == pytest.approx(float(w @ w), rel=1e-6)
        else:
            assert extra == 0.0 and "r1" not in logs
    with pytest.raises(ConfigError, match="r1_every"):
        _model(r1_every=0)


# --- the tuned 2-D set-up: defaults of gan on ring8/grid25 only, explicit values win ----------
def test_gan_on_a_mixture_gets_the_tuned_train_defaults_unless_given():
    from genlab.models.gans.gan import MIXTURE_TRAIN_DEFAULTS
    from genlab.run import new_run_config

    _, t, _, _ = new_run_config("gan", "grid25", None, [])
    assert (t.batch_size, t.lr, t.schedule, t.steps) == (256, 5e-4, "cosine", 20000) == tuple(MIXTURE_TRAIN_DEFAULTS.values())
    plain = TrainConfig()
    _, t, _, _ = new_run_config("gan", "ring8", None, [("train.lr", 1e-3)], cli={"epochs": 3, "batch_size": 64})
    assert (t.batch_size, t.lr, t.epochs, t.steps) == (64, 1e-3, 3, plain.steps)  # a given length drops the default steps
    _, t, _, _ = new_run_config("gan", "ring8", None, [("train.epochs", 2)])
    assert (t.epochs, t.steps, t.batch_size) == (2, plain.steps, 256)
    _, t, _, _ = new_run_config("gan", "ring8", None, [("train.schedule", "constant")])
    assert (t.schedule, t.lr) == ("constant", 5e-4)
    from genlab.models.gans.gan import PACGAN_TRAIN  # the paper's training, as the benches pass it

    _, t, _, _ = new_run_config("gan", "grid25", None, list(PACGAN_TRAIN.items()), cli={"epochs": 5})
    assert (t.batch_size, t.lr, t.schedule, t.epochs) == (100, 1e-4, "constant", 5)
    for model, data in (("gan", "digits"), ("cgan", "ring8"), ("ae", "grid25")):
        _, t, _, _ = new_run_config(model, data, None, [])
        assert (t.batch_size, t.lr, t.steps, t.epochs, t.schedule) == (
            plain.batch_size, plain.lr, plain.steps, plain.epochs, plain.schedule), model


def test_gan_on_a_mixture_gets_the_tuned_networks_for_unset_fields(tmp_path, capsys):
    from genlab.models.gans.gan import MIXTURE_MODEL_DEFAULTS, PACGAN_MODEL

    run = genlab.train("gan", "grid25", out=tmp_path / "t", steps=2, batch_size=32,
                       set={"d_hidden": [8], "data.limit": 64}, evaluate_at_end=False)
    err = capsys.readouterr().err
    got = json.loads((tmp_path / "t" / "config.json").read_text())["model_config"]
    assert got["d_hidden"] == [8]  # given: kept
    for k, v in MIXTURE_MODEL_DEFAULTS.items():
        if k != "d_hidden":
            assert got[k] == v, k
            assert f"{k}=" in err
    assert "d_hidden=" not in err and len(err.strip().splitlines()) == 1
    assert run.model.g_ema is not None and not any(isinstance(m, torch.nn.BatchNorm1d) for m in run.model.generator)
    # the PacGAN fields given explicitly: no tuned default is left to fill, and no message
    genlab.train("gan", "ring8", out=tmp_path / "p", steps=2, batch_size=32, set={**PACGAN_MODEL, "data.limit": 64},
                 evaluate_at_end=False)
    assert "tuned" not in capsys.readouterr().err
    got = json.loads((tmp_path / "p" / "config.json").read_text())["model_config"]
    assert {k: got[k] for k in PACGAN_MODEL} == PACGAN_MODEL
    assert PACGAN_MODEL == {k: v for k, v in genlab.create_model("gan", shape=(2,)).config.__dict__.items() if k in PACGAN_MODEL}
    # other data: the class defaults
    genlab.train("gan", "digits", out=tmp_path / "d", steps=1, batch_size=32, set={"data.limit": 64}, evaluate_at_end=False)
    assert "tuned" not in capsys.readouterr().err
    got = json.loads((tmp_path / "d" / "config.json").read_text())["model_config"]
    assert {k: got[k] for k in PACGAN_MODEL} == PACGAN_MODEL


def test_maxout_takes_each_units_largest_piece_and_passes_the_gradient_to_it_alone():
    from genlab.models.gans.gan import Maxout

    torch.manual_seed(0)
    m = Maxout(4, 3, 5)
    x = torch.randn(6, 4)
    pre = (x @ m.lin.weight.detach().T + m.lin.bias.detach()).numpy().reshape(6, 3, 5)  # unit u: pieces 5u..5u+4
    y = m(x)
    np.testing.assert_allclose(y.detach().numpy(), pre.max(-1), rtol=1e-6, atol=1e-6)
    w = torch.randn(6, 3)
    (y * w).sum().backward()
    # d/d(bias): the upstream gradient at each unit's arg-max piece, zero at the other pieces
    want = np.zeros((6, 3, 5))
    np.put_along_axis(want, pre.argmax(-1)[..., None], w.numpy()[..., None], -1)
    np.testing.assert_allclose(m.lin.bias.grad.numpy(), want.sum(0).reshape(-1), rtol=1e-6, atol=1e-6)
