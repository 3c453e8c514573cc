"""The stacked trainer (K ``gan`` models as one set of stacked tensors) against K separate models
trained by ``GAN.train_step``: the same batches and noise must give the same weights."""
from __future__ import annotations

import pytest
import torch

from genlab.errors import ConfigError
from genlab.models.gans.stacked import StackedGAN, StackedTrainer, build_seed_models, train_stacked
from genlab.train.engine import TrainConfig, Updater, epoch_order

SMALL = {"g_hidden": [16, 16], "d_hidden": [12, 12], "d_maxout": 3, "g_batchnorm": True}


def _state(m) -> dict:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (the stacked trainer's GPU path)")
PACGAN_SHAPE = {}  # BatchNorm in G, maxout in D, non-saturating loss


@pytest.mark.parametrize("extra, device, graph", [
    (PACGAN_SHAPE, "cpu", False),
    ({"g_batchnorm": False, "d_maxout": 0, "pack": 2, "d_steps": 2, "g_loss": "minimax", "d_lr": 3e-4}, "cpu", False),
    ({"d_loss": "hinge", "beta1": 0.5}, "cpu", False),
    pytest.param(PACGAN_SHAPE, "cuda", False, marks=CUDA),
    pytest.param(PACGAN_SHAPE, "cuda", True, marks=CUDA),  # warm-up steps, the capture, then replays
])
def test_a_stacked_step_equals_k_separate_gan_train_steps(extra, device, graph):
    cfg = {**SMALL, **extra}
    data_names, seeds = ["ring8", "grid25", "ring8"], [0, 1, 2]
    bs, lr, steps = 100, 1e-3, 7
    ref, datasets = build_seed_models(cfg, data_names, seeds)
    models, _ = build_seed_models(cfg, data_names, seeds)
    for a, b in zip(ref, models):  # the same construction gives the same initial weights
        assert all(torch.equal(x, y) for x, y in zip(_state(a).values(), _state(b).values()))
    n = len(datasets[0].train)
    # the noise each model draws at each step: D's, then G's (on a generator step)
    d_steps = cfg.get("d_steps", 1)
    noise = [[(torch.randn(bs, 2), torch.randn(bs, 2)) for _ in seeds] for _ in range(steps)]
    tc = TrainConfig(batch_size=bs, lr=lr)
    for j, (m, ds, s) in enumerate(zip(ref, datasets, seeds)):
        m.train()
        up = Updater(m.make_optimizers(tc), tc)
        order = epoch_order(n, s, 0)
        for t in range(steps):
            queue = list(noise[t][j])
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(torch, "randn", lambda *a, **k: queue.pop(0))
                m.train_step(ds.train.x[order[t * bs:(t + 1) * bs]], None, up, t, steps)
            assert len(queue) == (0 if (t + 1) % d_steps == 0 else 1)  # one draw per update
    stack = StackedGAN(models).to(device).train()
    data = torch.stack([ds.train.x for ds in datasets]).to(device)
    tr = StackedTrainer(stack, data, seeds, bs, lr)
    # the noise comes from two fixed buffers, filled before each step: a captured CUDA graph
    # reads them at every replay
    z = torch.zeros(2, len(seeds), bs, 2, device=device)
    draws = []  # the stacked trainer's draws in this step: D's noise first, then G's

    def stacked_noise():
        draws.append(None)
        return z[len(draws) - 1]

    tr.noise = stacked_noise
    init = [_state(m) for m in models]
    for t in range(steps):
        draws.clear()
        for i in range(2):
            z[i].copy_(torch.stack([noise[t][j][i] for j in range(len(seeds))]))
        tr.step(graph=graph)
        if not graph:
            assert len(draws) == (2 if (t + 1) % d_steps == 0 else 1)
    assert (tr.graph is not None) == graph
    stack.cpu()
    stack.write_back(models)
    # A bias just before a BatchNorm has zero gradient in exact arithmetic (the normalisation
    # subtracts it again): Adam turns its rounding noise (~1e-9) into steps of up to lr, so it and
    # the running mean it feeds can only agree to steps * lr. Everything else agrees to float32.
    gen = ref[0].generator
    noisy = {f"generator.{i}.bias" for i in range(len(gen) - 1) if isinstance(gen[i + 1], torch.nn.BatchNorm1d)}
    noisy |= {f"generator.{i + 1}.running_mean" for i in range(len(gen) - 1) if isinstance(gen[i + 1], torch.nn.BatchNorm1d)}
    for a, b in zip(ref, models):
        sa, sb = _state(a), _state(b)
        assert sa.keys() == sb.keys()
        for k in sa:
            if k in noisy:
                assert (sb[k] - sa[k]).abs().max() <= steps * lr, k
            else:
                torch.testing.assert_close(sb[k], sa[k], atol=1e-6, rtol=1e-5, msg=f"{k} after {steps} steps ({extra})")
    for m, st in zip(models, init):  # and they did train
        assert not torch.equal(_state(m)["generator.0.weight"], st["generator.0.weight"])


def test_write_back_round_trips_and_eval_mode_samples_agree():
    models, _ = build_seed_models(SMALL, ["grid25", "grid25"], [3, 4])
    for m in models:  # running statistics away from their initial values
        bn = [b for b in m.generator.modules() if isinstance(b, torch.nn.BatchNorm1d)]
        for b in bn:
            b.running_mean.normal_()
            b.running_var.uniform_(0.5, 2)
    stack = StackedGAN(models).eval()
    fresh, _ = build_seed_models(SMALL, ["grid25", "grid25"], [7, 8])
    stack.write_back(fresh)
    z = torch.randn(2, 50, 2)
    for j, (m, f) in enumerate(zip(models, fresh)):
        a, b = _state(m), _state(f)
        assert all(torch.equal(a[k], b[k]) for k in a if not k.endswith("num_batches_tracked"))
        m.eval()
        torch.testing.assert_close(stack.generate(z)[j], m.generate(z[j]), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(stack.critic(z)[j], m.critic(z[j]), atol=1e-6, rtol=1e-5)


def test_train_stacked_resumes_from_its_state_file_exactly(tmp_path):
    kw = dict(steps=40, batch_size=100, lr=1e-3, device="cpu", log_every=20, log=lambda msg: None)
    whole = train_stacked(SMALL, ["ring8", "grid25"], [0, 1], **kw)
    state = tmp_path / "state.pt"
    first = train_stacked(SMALL, ["ring8", "grid25"], [0, 1], state_path=state, save_every=20, stop_after=0, **kw)
    assert first["steps"] == 20 and not first["finished"] and state.is_file()
    second = train_stacked(SMALL, ["ring8", "grid25"], [0, 1], state_path=state, save_every=20, **kw)
    assert second["steps"] == 40 and second["steps_this_call"] == 20 and second["finished"]
    for a, b in zip(whole["models"], second["models"]):
        sa, sb = _state(a), _state(b)
        assert all(torch.equal(sa[k], sb[k]) for k in sa), "a resumed run must continue exactly"
    # another run's state is refused, by name
    with pytest.raises(ConfigError, match="state_path"):
        train_stacked(SMALL, ["ring8", "grid25"], [0, 2], state_path=state, **kw)
    # the trained models sample as genlab models do
    x = whole["models"][0].sample(10, generator=torch.Generator().manual_seed(0))
    assert x.shape == (10, 2) and torch.isfinite(x).all()


def test_train_stacked_evaluates_along_the_way_without_changing_the_run(tmp_path):
    from genlab.run import mixture_metrics

    kw = dict(batch_size=100, lr=1e-3, device="cpu", log_every=20, log=lambda msg: None)
    data, seeds = ["ring8", "grid25"], [0, 1]

    def evaluate(models, step):
        return [mixture_metrics(m, d, n=500) for m, d in zip(models, data)]

    plain = train_stacked(SMALL, data, seeds, steps=40, **kw)
    short = train_stacked(SMALL, data, seeds, steps=20, **kw)  # the reference for step 20
    state = tmp_path / "state.pt"
    first = train_stacked(SMALL, data, seeds, steps=40, state_path=state, save_every=20, stop_after=0, eval_every=10,
                          evaluate=evaluate, **kw)
    assert [h["step"] for h in first["history"]] == [0, 10, 20]
    second = train_stacked(SMALL, data, seeds, steps=40, state_path=state, eval_every=10, evaluate=evaluate, **kw)
    assert [h["step"] for h in second["history"]] == [0, 10, 20, 30, 40], "the history goes on over a resume"
    # evaluating draws nothing from the training's random streams: the same weights as without it
    for a, b in zip(plain["models"], second["models"]):
        sa, sb = _state(a), _state(b)
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # each entry scores the models as they were at that step
    at = {h["step"]: h["value"] for h in second["history"]}
    assert at[20] == [mixture_metrics(m, d, n=500) for m, d in zip(short["models"], data)]
    assert at[40] == [mixture_metrics(m, d, n=500) for m, d in zip(plain["models"], data)]
    assert at[0] != at[40]
    with pytest.raises(ConfigError, match="eval_every"):
        train_stacked(SMALL, data, seeds, steps=40, eval_every=10, **kw)


@pytest.mark.parametrize("change, field", [({"r1": 1.0}, "r1"), ({"ema": 0.999}, "ema"), ({"mbstd": True}, "mbstd")])
def test_unsupported_fields_are_named(change, field):
    models, _ = build_seed_models({**SMALL, **change}, ["ring8"], [0])
    with pytest.raises(ConfigError, match=f"^{field}: not supported"):
        StackedGAN(models)


def test_a_batch_that_does_not_divide_the_data_is_refused():
    with pytest.raises(ConfigError, match="batch_size: .*divides the 100000"):
        train_stacked(SMALL, ["ring8"], [0], steps=1, batch_size=300, lr=1e-3, device="cpu")


def test_gan_mixtures_runs_its_paper_arm_on_the_stacked_engine_and_scores_as_genlab_does():
    from genlab.bench import run_benchmark
    from genlab.errors import GenlabError
    from genlab.models.gans.gan import PACGAN_MODEL
    from genlab.run import mixture_metrics

    res = run_benchmark("gan-mixtures", quick=True, echo=False, params={"engine": "stacked", "arms": ["paper"]})
    row = res["results"]["ring8-pack1"]
    assert res["engine"] == "stacked" and row["steps"] == 100 and row["stacked"]["models"] == 1
    assert "wall min/seed" in res["table"][0] and "100 steps per seed" in res["protocol"]
    # the same training by the library, scored by the function that writes a run's eval.json
    out = train_stacked({**PACGAN_MODEL, "pack": 1}, ["ring8"], [0], steps=100, batch_size=100, lr=1e-4,
                        device="cpu", log=lambda msg: None)
    ev = mixture_metrics(out["models"][0], "ring8")
    assert row["per_seed"][0]["modes"] == ev["modes"]
    assert row["per_seed"][0]["high_quality"] == pytest.approx(ev["high_quality"])
    assert row["per_seed"][0]["reverse_kl"] == pytest.approx(ev["reverse_kl"])
    # the training curve (every 50 steps in a quick run) ends at the scored models
    curve = res["curve"][1]["ring8"]
    assert [c["step"] for c in curve] == [0, 50, 100]
    assert curve[-1]["modes"][0] == ev["modes"] and curve[-1]["reverse_kl"][0] == pytest.approx(ev["reverse_kl"])
    with pytest.raises(GenlabError, match="curve_every: needs engine=stacked"):
        run_benchmark("gan-mixtures", quick=True, echo=False, params={"curve_every": 10})
    with pytest.raises(GenlabError, match="engine: unknown engine 'fast'"):
        run_benchmark("gan-mixtures", quick=True, echo=False, params={"engine": "fast"})
    with pytest.raises(GenlabError, match="stop_after: needs engine=stacked and state=DIR"):
        run_benchmark("gan-mixtures", quick=True, echo=False, params={"engine": "stacked", "stop_after": 5})


def test_stop_after_stops_within_1000_steps_of_the_time_whatever_save_every_is(tmp_path):
    out = train_stacked(SMALL, ["ring8"], [0], steps=2500, batch_size=100, lr=1e-3, device="cpu", log=lambda m: None,
                        state_path=tmp_path / "s.pt", save_every=10**6, stop_after=0)
    assert out["steps"] == 1000 and not out["finished"]
    assert torch.load(tmp_path / "s.pt", weights_only=False)["trainer"]["step"] == 1000
