"""`genlab bench`: the registry of benchmarks and the quick versions that need little time."""
from __future__ import annotations

import json
import math

import pytest

from genlab.bench import format_table, list_benchmarks
from genlab.cli import main


def test_bench_list_names_every_benchmark_the_issue_asks_for(capsys):
    assert main(["bench", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("vae-mnist", "vae-mnist-speed", "vae-iwae-mnist", "setup-times", "metrics-baselines", "fid-speed",
                 "linear-ae-pca", "ksparse-mnist", "contractive-mnist", "denoising-mnist", "ae-838", "context-encoder-fashion",
                 "ae-classification", "stacked-pretraining-mnist", "gan-mixtures", "dcgan-speed", "dcgan-mnist", "gan-losses"):
        assert name in out
    assert all(desc for _, desc in list_benchmarks())


def test_unknown_benchmark_is_a_one_line_error(capsys):
    assert main(["bench", "vae-mnst"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "vae-mnst" in err[0] and "vae-mnist" in err[0]


def test_benchmark_without_data_says_where_it_looked(tmp_path, capsys):
    assert main(["bench", "vae-mnist", "--quick", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "MNIST" in err


def test_format_table_aligns_columns():
    text = format_table([{"a": 1, "bb": 2.5}, {"a": "long value", "bb": 3}])
    lines = text.splitlines()
    assert len(lines) == 4 and len({len(line) for line in lines}) == 1
    assert lines[2].startswith("1 ") and "2.5" in lines[2]


@pytest.mark.data
def test_vae_mnist_quick_prints_one_json_object(data_root, capsys):
    assert main(["bench", "vae-mnist", "--quick", "--json", "--data-root", str(data_root)]) == 0
    res = json.loads(capsys.readouterr().out)
    # one epoch on 12800 images: the loss is finite and already far below the loss of an
    # untrained model (784 * log 2 = 543 nats for p = 0.5 everywhere)
    assert math.isfinite(res["test_loss"]) and res["test_loss"] < 784 * math.log(2) / 2
    assert res["kl"] > 0 and res["quick"] is True and res["protocol"]


@pytest.mark.data
def test_vae_iwae_quick_bound_is_below_the_elbo(data_root, capsys):
    assert main(["bench", "vae-iwae-mnist", "--quick", "--json", "--data-root", str(data_root)]) == 0
    res = json.loads(capsys.readouterr().out)
    # the k-sample bound is at least as tight as the one-sample ELBO (up to Monte-Carlo noise)
    assert res["nll_iwae"] <= res["nelbo"] + 0.5
    assert res["k"] == 50


def test_bench_set_rejects_settings_the_benchmark_does_not_take(capsys):
    # checked before anything runs, so no data set is needed
    assert main(["bench", "vae-iwae-mnist", "--set", "epoch=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "epoch" in err[0] and "epochs" in err[0] and "k" in err[0]
