"""genlab.style.attack and `genlab attack`: FGSM against its closed form on a linear model, the
L-infinity and [0, 1] constraints, eps = 0, PGD at least as strong as FGSM on a trained
classifier, a model left untouched, and the command's files and errors."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import genlab
from genlab.cli import main
from genlab.style.attack import accuracy_under_attack, fgsm, pgd


@pytest.fixture(scope="module")
def clf_run(tmp_path_factory):
    """A small-cnn classifier trained 60 steps on digits (shared; tests must not modify it)."""
    return genlab.train("classifier", "digits", out=tmp_path_factory.mktemp("runs") / "clf", steps=60, batch_size=64,
                        lr=1.0, device="cpu", set={"backbone": "small-cnn", "weights": "none", "strategy": "finetune",
                                                   "optimizer": "adadelta"})


@pytest.fixture(scope="module")
def test_batch(clf_run):
    x, y = clf_run.data().eval_inputs("test")
    return x[:64], y[:64]


def _cli(capsys, *argv):
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    return (rc, *capsys.readouterr())


class Logistic(nn.Module):
    """Binary logistic regression as two logits (0, w.x + b): the loss gradient is known."""

    def __init__(self, w: torch.Tensor, b: float):
        super().__init__()
        self.w, self.b = nn.Parameter(w.clone()), nn.Parameter(torch.tensor(b))

    def forward(self, x):
        z = x.flatten(1) @ self.w + self.b
        return torch.stack([torch.zeros_like(z), z], 1)


# --- the attacks ----------------------------------------------------------------------------
def test_fgsm_of_a_logistic_model_is_the_closed_form():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(1 * 4 * 4, generator=g)
    w[w.abs() < 1e-3] = 0.5  # no zero weights: every sign is +-1
    model = Logistic(w, 0.1)
    x = torch.rand(6, 1, 4, 4, generator=g)
    y = torch.tensor([0, 1, 0, 1, 1, 0])
    eps = 0.1
    # d CE / dx = (sigmoid(z) - y) * w: y = 1 lowers the logit (against w), y = 0 raises it (along w)
    direction = torch.where(y.view(-1, 1, 1, 1) == 1, -1.0, 1.0) * w.sign().view(1, 1, 4, 4)
    want = (x + eps * direction).clamp(0, 1)
    assert torch.equal(fgsm(model, x, y, eps), want)


def test_fgsm_of_a_multiclass_linear_model_is_the_closed_form():
    g = torch.Generator().manual_seed(1)
    lin = nn.Linear(12, 5)
    model = nn.Sequential(nn.Flatten(), lin)
    x = torch.rand(8, 3, 2, 2, generator=g)
    y = torch.randint(0, 5, (8,), generator=g)
    with torch.no_grad():
        p = torch.softmax(lin(x.flatten(1)), 1)
        grad = (p - nn.functional.one_hot(y, 5).float()) @ lin.weight  # W^T (p - e_y), per example
    want = (x + 0.05 * grad.sign().view_as(x)).clamp(0, 1)
    assert torch.equal(fgsm(model, x, y, 0.05), want)


@pytest.mark.parametrize("method", ["fgsm", "pgd"])
def test_the_result_stays_in_the_ball_and_in_0_1(clf_run, test_batch, method):
    x, y = test_batch
    for eps in (0.05, 0.3):
        adv = fgsm(clf_run.model, x, y, eps) if method == "fgsm" else pgd(clf_run.model, x, y, eps, steps=5,
                                                                           alpha=0.2)
        assert float((adv - x).abs().max()) <= eps + 1e-6
        assert float(adv.min()) >= 0 and float(adv.max()) <= 1
        assert float((adv - x).abs().max()) > eps / 2  # it did move


def test_eps_0_changes_nothing(clf_run, test_batch):
    x, y = test_batch
    assert torch.equal(fgsm(clf_run.model, x, y, 0.0), x)
    assert torch.equal(pgd(clf_run.model, x, y, 0.0, steps=3), x)
    for method in ("fgsm", "pgd"):
        r = accuracy_under_attack(clf_run, method, [0.0], n=64, steps=2)["results"][0]
        assert r["attacked_accuracy"] == r["clean_accuracy"]


def test_pgd_is_at_least_as_strong_as_fgsm_and_eps_03_breaks_the_model(clf_run):
    f = accuracy_under_attack(clf_run, "fgsm", [0.1, 0.3], n=100)
    p = accuracy_under_attack(clf_run, "pgd", [0.1, 0.3], n=100, steps=10)
    clean = f["clean_accuracy"]
    assert clean == p["clean_accuracy"] and clean > 0.8
    for rf, rp in zip(f["results"], p["results"]):
        assert rp["attacked_accuracy"] <= rf["attacked_accuracy"]
    assert f["results"][0]["attacked_accuracy"] < clean
    assert f["results"][1]["attacked_accuracy"] < clean / 3 and p["results"][1]["attacked_accuracy"] < clean / 3
    assert p["results"][1]["alpha"] == pytest.approx(2.5 * 0.3 / 10)


def test_the_model_is_left_as_it_was(clf_run, test_batch):
    model = clf_run.model
    x, y = test_batch
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = list(model.parameters())
    params[0].requires_grad_(False)  # a mix of flags, to see each restored
    flags = [p.requires_grad for p in params]
    grads = [None if p.grad is None else p.grad.clone() for p in params]  # whatever training left there
    seen = []
    handle = model.register_forward_pre_hook(lambda m, _inp: seen.append(
        (m.training, any(p.requires_grad for p in m.parameters()))))
    model.train()
    try:
        fgsm(model, x, y, 0.1)
        pgd(model, x, y, 0.1, steps=3)
        accuracy_under_attack(clf_run, "pgd", [0.1], n=32, steps=2)
        assert seen and all(s == (False, False) for s in seen)  # eval mode, no parameter gradient, every call
        assert model.training
        assert [p.requires_grad for p in params] == flags
        assert all((g is None and p.grad is None) or (g is not None and torch.equal(g, p.grad))
                   for g, p in zip(grads, params))  # no gradient reached the parameters
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    finally:
        handle.remove()
        params[0].requires_grad_(True)
        model.eval()


# --- the command ----------------------------------------------------------------------------
def test_cli_writes_the_table_the_curve_and_the_examples(clf_run, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "atk"
    rc, stdout, err = _cli(capsys, "attack", clf_run.path, "--method", "pgd", "--eps", "0,0.2", "--steps", 3,
                           "--n", 40, "--out", out, "--json")
    assert rc == 0, err
    res = json.loads(stdout)
    assert [r["eps"] for r in res["results"]] == [0.0, 0.2] and res["n"] == 40 and res["method"] == "pgd"
    assert res["results"][0]["attacked_accuracy"] == res["results"][0]["clean_accuracy"] == res["clean_accuracy"]
    files = [out / "accuracy-vs-eps.png", out / "examples.png"]
    assert res["files"] == [str(f) for f in files]
    assert all(Image.open(f).size[0] > 100 for f in files)
    assert not list(out.glob(".*.tmp"))
    rc, stdout, err = _cli(capsys, "attack", clf_run.path, "--method", "fgsm", "--eps", "0.1", "--n", 20,
                           "--out", tmp_path / "t")
    assert rc == 0, err
    lines = stdout.strip().splitlines()
    assert lines[1].split() == ["eps", "clean_accuracy", "attacked_accuracy"] and lines[3].split()[0] == "0.1"
    assert lines[-2:] == [str(tmp_path / "t" / "accuracy-vs-eps.png"), str(tmp_path / "t" / "examples.png")]


def test_cli_a_non_classifier_run_exits_2(tmp_path, capsys):
    ae = genlab.train("ae", "digits", out=tmp_path / "ae", steps=5, device="cpu", set={"hidden": [16], "latent": 4})
    rc, stdout, err = _cli(capsys, "attack", ae.path, "--method", "fgsm", "--eps", "0.1", "--out", tmp_path / "o")
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1, err
    assert "error" in lines[0] and "ae run" in lines[0] and "classifier" in lines[0]
    assert stdout == "" and not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv,needle", [(["--method", "fgsm", "--eps", "0.1,x"], "'x' is not a number"),
                                         (["--method", "fgsm", "--eps", "-0.1"], ">= 0"),
                                         (["--method", "fgsm", "--eps", "0.1", "--steps", "3"], "--steps")])
def test_cli_bad_arguments_exit_2(clf_run, tmp_path, capsys, argv, needle):
    rc, _, err = _cli(capsys, "attack", clf_run.path, *argv, "--out", tmp_path / "o")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and needle in err, err
